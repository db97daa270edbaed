//! The Prometheus text format (version 0.0.4) into series grouped by family.
//!
//! Pure: no I/O, no clocks. [`Parser`] takes one line at a time, so a scrape is parsed while its
//! body arrives and the body is never held whole.
//!
//! - Sample lines: `name{label="value",…} value [timestamp]`. Metric names are
//!   `[A-Za-z_:][A-Za-z0-9_:]*`; label values are unescaped (`\\`, `\"`, `\n`; any other escape is
//!   kept as written), so a value may hold `,`, `=`, `}` or `"`. Label names are taken as written
//!   (anything up to `=`) and judged by the mapping, which leaves out invalid ones and reports
//!   them. Values are floats, `NaN`, `+Inf`, `-Inf` (any case). Spaces and tabs separate tokens;
//!   a trailing `,` in the label set is allowed.
//! - `# TYPE name kind` declares histograms and summaries: their `name_bucket{le}` (histogram),
//!   `name{quantile}` (summary), `name_sum` and `name_count` samples are joined into one series
//!   per label set. A declaration applies to the lines after it, as in the format. Every other
//!   kind, and every family without a declaration, gives scalar series.
//! - `# HELP` lines and other comments are skipped; so is any line that does not parse (a bad
//!   name, an unterminated label value, a repeated label name, a value that is not a number, a
//!   bucket without a numeric `le`, a quantile sample without a numeric `quantile`).
//! - Timestamps in the exposition are ignored: a scrape's samples carry the scrape's time.
//!
//! Output order: scalar series in exposition order, then histogram and summary series by family
//! and labels.

use std::collections::{BTreeMap, HashMap};

/// One series of a scraped family (a histogram or summary series includes its `_sum`/`_count`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// Family name as exposed (`vllm:e2e_request_latency_seconds`, without `_bucket`).
    pub(crate) family: String,
    /// Labels sorted by name, without `le` (histograms) or `quantile` (summaries).
    pub(crate) labels: Vec<(String, String)>,
    /// The value or values.
    pub(crate) value: Value,
}

/// The value of a [`Series`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A counter, gauge or untyped sample.
    Scalar(f64),
    /// Cumulative buckets `(upper bound, count)` in exposition order, plus `_sum` and `_count`.
    Histogram {
        buckets: Vec<(f64, f64)>,
        sum: Option<f64>,
        count: Option<f64>,
    },
    /// Quantiles `(quantile, value)`, plus `_sum` and `_count`.
    Summary {
        quantiles: Vec<(f64, f64)>,
        sum: Option<f64>,
        count: Option<f64>,
    },
}

/// Parses a whole exposition in the Prometheus text format (scrapes use [`Parser`] as the body
/// arrives).
#[cfg(test)]
pub(crate) fn parse(text: &str) -> Vec<Series> {
    let mut parser = Parser::default();
    for line in text.lines() {
        parser.line(line);
    }
    parser.finish()
}

/// An exposition being parsed, line by line.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    /// Families declared histogram or summary so far.
    compound_kinds: HashMap<String, Compound>,
    /// Scalar series in exposition order.
    scalars: Vec<Series>,
    /// Histogram and summary series, keyed by (family, labels), to join their parts.
    compound: BTreeMap<(String, Vec<(String, String)>), Value>,
}

/// A family kind whose samples are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compound {
    Histogram,
    Summary,
}

/// Which part of a compound series a sample is.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// A bucket (with its `le`) or a quantile (with its `quantile`).
    Point(f64),
    Sum,
    Count,
}

impl Parser {
    /// Takes one line (without its line break; a trailing `\r` is ignored).
    pub(crate) fn line(&mut self, line: &str) {
        let line = line.trim_matches(is_blank);
        if let Some(comment) = line.strip_prefix('#') {
            self.comment(comment);
        } else if !line.is_empty() {
            // A line that does not parse is skipped.
            let _ = self.sample(line);
        }
    }

    /// The series read so far.
    pub(crate) fn finish(self) -> Vec<Series> {
        let mut out = self.scalars;
        out.extend(
            self.compound
                .into_iter()
                .map(|((family, labels), value)| Series {
                    family,
                    labels,
                    value,
                }),
        );
        out
    }

    /// A comment line after its `#`: only `TYPE` declarations matter.
    fn comment(&mut self, comment: &str) {
        let mut words = comment.split(is_blank).filter(|w| !w.is_empty());
        if words.next() != Some("TYPE") {
            return;
        }
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            return;
        };
        if !is_metric_name(name) {
            return;
        }
        match kind {
            "histogram" => {
                self.compound_kinds
                    .insert(name.to_owned(), Compound::Histogram);
            }
            "summary" => {
                self.compound_kinds
                    .insert(name.to_owned(), Compound::Summary);
            }
            // A family declared again as something else is no longer joined.
            _ => {
                self.compound_kinds.remove(name);
            }
        }
    }

    /// A sample line; `None` when it does not parse.
    fn sample(&mut self, line: &str) -> Option<()> {
        let name_len = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
        let name = &line[..name_len];
        if !is_metric_name(name) {
            return None;
        }
        let mut rest = &line[name_len..];
        let mut labels = Vec::new();
        if let Some(after_brace) = rest.trim_start_matches(is_blank).strip_prefix('{') {
            rest = parse_labels(after_brace, &mut labels)?;
        }
        // The value, then an optional timestamp (ignored).
        if !rest.starts_with(is_blank) {
            return None;
        }
        let mut tokens = rest.split(is_blank).filter(|t| !t.is_empty());
        let value = parse_float(tokens.next()?)?;
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        if labels.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return None;
        }

        let Some((family, kind, part)) = self.compound_part(name, &mut labels)? else {
            self.scalars.push(Series {
                family: name.to_owned(),
                labels,
                value: Value::Scalar(value),
            });
            return Some(());
        };
        let entry = self
            .compound
            .entry((family.to_owned(), labels))
            .or_insert_with(|| match kind {
                Compound::Histogram => Value::Histogram {
                    buckets: Vec::new(),
                    sum: None,
                    count: None,
                },
                Compound::Summary => Value::Summary {
                    quantiles: Vec::new(),
                    sum: None,
                    count: None,
                },
            });
        let (Value::Histogram {
            buckets: points,
            sum,
            count,
        }
        | Value::Summary {
            quantiles: points,
            sum,
            count,
        }) = entry
        else {
            // Compound entries are only ever histograms or summaries.
            return None;
        };
        match part {
            Part::Point(bound) => points.push((bound, value)),
            Part::Sum => *sum = Some(value),
            Part::Count => *count = Some(value),
        }
        Some(())
    }

    /// Whether `name` is part of a declared histogram or summary: `Some(Some((family, kind,
    /// part)))`, with the `le` or `quantile` label taken out of `labels`; `Some(None)` for a
    /// scalar; `None` for a bucket or quantile sample whose bound is missing or not a number.
    fn compound_part<'a>(
        &self,
        name: &'a str,
        labels: &mut Vec<(String, String)>,
    ) -> Option<Option<(&'a str, Compound, Part)>> {
        let declared = |family: &str| self.compound_kinds.get(family).copied();
        let candidates = [
            (name.strip_suffix("_bucket"), Some(Compound::Histogram)),
            (Some(name), Some(Compound::Summary)),
            (name.strip_suffix("_sum"), None),
            (name.strip_suffix("_count"), None),
        ];
        for (idx, (family, wanted)) in candidates.into_iter().enumerate() {
            let Some(family) = family else { continue };
            let Some(kind) = declared(family) else {
                continue;
            };
            if wanted.is_some_and(|wanted| wanted != kind) {
                continue;
            }
            let part = match idx {
                0 => Part::Point(take_bound(labels, "le")?),
                1 => Part::Point(take_bound(labels, "quantile")?),
                2 => Part::Sum,
                _ => Part::Count,
            };
            return Some(Some((family, kind, part)));
        }
        Some(None)
    }
}

/// Removes the label `name` from `labels` and parses its value as a float.
fn take_bound(labels: &mut Vec<(String, String)>, name: &str) -> Option<f64> {
    let idx = labels.iter().position(|(label, _)| label == name)?;
    let (_, value) = labels.remove(idx);
    parse_float(&value)
}

/// Parses the label set after its `{` into `labels`; returns the text after the `}`.
fn parse_labels<'a>(mut text: &'a str, labels: &mut Vec<(String, String)>) -> Option<&'a str> {
    loop {
        text = text.trim_start_matches(is_blank);
        if let Some(rest) = text.strip_prefix('}') {
            return Some(rest);
        }
        let name_end = text.find(['=', '}', ',', '"'])?;
        let name = text[..name_end].trim_matches(is_blank);
        if name.is_empty() || name.contains(is_blank) {
            return None;
        }
        text = text[name_end..].strip_prefix('=')?;
        text = text.trim_start_matches(is_blank).strip_prefix('"')?;
        let (value, rest) = parse_quoted(text)?;
        labels.push((name.to_owned(), value));
        text = rest.trim_start_matches(is_blank);
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return None;
        }
    }
}

/// The unescaped value of a quoted string whose opening `"` is already read, and the text after
/// its closing `"`; `None` when it is not terminated.
fn parse_quoted(text: &str) -> Option<(String, &str)> {
    let end = text.find(['"', '\\'])?;
    if text.as_bytes()[end] == b'"' {
        return Some((text[..end].to_owned(), &text[end + 1..]));
    }
    let mut value = String::with_capacity(text.len().min(256));
    let mut chars = text.char_indices();
    while let Some((idx, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[idx + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => value.push('\\'),
                '"' => value.push('"'),
                'n' => value.push('\n'),
                other => {
                    value.push('\\');
                    value.push(other);
                }
            },
            c => value.push(c),
        }
    }
    None
}

/// A sample value or bound: a float, or `NaN`, `+Inf`, `-Inf`, `Inf` in any case (Go's
/// `ParseFloat` spellings that Rust's parser also reads).
fn parse_float(text: &str) -> Option<f64> {
    text.parse().ok()
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_metric_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| !c.is_ascii_digit()) && name.chars().all(is_name_char)
}
