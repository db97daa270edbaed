//! The Prometheus text format into series grouped by family, through `prometheus-parse`.
//!
//! Pure: no I/O, no clocks. `prometheus-parse` 0.2.5 does the parsing; this module only adapts
//! its output:
//!
//! - Its name pattern (`\w+`) has no `:`, so lines of families such as `vllm:num_requests_running`
//!   would be ignored. Before parsing, the `:` of each metric name (on sample, `# HELP` and
//!   `# TYPE` lines; never in label values) is replaced by a token that does not occur in the body,
//!   and the token is turned back into `:` afterwards.
//! - It returns a histogram's buckets as one sample but its `_sum` and `_count` as separate untyped
//!   samples (likewise a summary's). They are joined again here using the `# TYPE` lines.
//! - Its label parser does not unescape values and splits on every `,` and `=`, so a label value
//!   holding `,`, `=`, `}` or an escaped `"` arrives cut or with its backslashes. Inference servers'
//!   model names and numbers do not; the limit is the crate's.
//!
//! Timestamps in the exposition are ignored: a scrape's samples carry the scrape's time.

use std::collections::{BTreeMap, HashMap};

use prometheus_parse::{LineInfo, SampleType, Scrape};

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

/// Parses an exposition in the Prometheus text format. Lines the parser does not understand are
/// skipped, as `prometheus-parse` does.
pub(crate) fn parse(text: &str) -> Vec<Series> {
    let token = colon_token(text);
    let mut types: HashMap<String, SampleType> = HashMap::new();
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let line = escape_name(line, &token);
            if line.trim_start().starts_with('#')
                && let LineInfo::Type {
                    metric_name,
                    metric_alias,
                    sample_type,
                } = LineInfo::parse(&line)
            {
                types.insert(metric_alias.unwrap_or(metric_name), sample_type);
            }
            line
        })
        .collect();
    // The iterator never yields an error, so neither does the parse; an empty scrape is the safe
    // reading should that ever change.
    let samples = Scrape::parse(lines.into_iter().map(Ok))
        .map(|scrape| scrape.samples)
        .unwrap_or_default();

    let mut out = Vec::new();
    // Histogram and summary series, keyed by (family, labels), to join their parts.
    let mut compound: BTreeMap<(String, Vec<(String, String)>), Value> = BTreeMap::new();
    for sample in samples {
        let labels = sorted_labels(&sample.labels);
        match sample.value {
            prometheus_parse::Value::Histogram(counts) => {
                let buckets = counts.iter().map(|b| (b.less_than, b.count)).collect();
                let entry = compound
                    .entry((sample.metric, labels))
                    .or_insert_with(empty_histogram);
                if let Value::Histogram { buckets: b, .. } = entry {
                    *b = buckets;
                }
            }
            prometheus_parse::Value::Summary(counts) => {
                let quantiles = counts.iter().map(|q| (q.quantile, q.count)).collect();
                let entry = compound
                    .entry((sample.metric, labels))
                    .or_insert_with(empty_summary);
                if let Value::Summary { quantiles: q, .. } = entry {
                    *q = quantiles;
                }
            }
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => {
                match compound_part(&sample.metric, &types) {
                    Some((family, part, kind)) => {
                        let entry = compound.entry((family.to_owned(), labels)).or_insert_with(
                            || match kind {
                                SampleType::Histogram => empty_histogram(),
                                _ => empty_summary(),
                            },
                        );
                        let (Value::Histogram { sum, count, .. }
                        | Value::Summary { sum, count, .. }) = entry
                        else {
                            continue;
                        };
                        match part {
                            Part::Sum => *sum = Some(value),
                            Part::Count => *count = Some(value),
                        }
                    }
                    None => out.push(Series {
                        family: sample.metric,
                        labels,
                        value: Value::Scalar(value),
                    }),
                }
            }
        }
    }
    out.extend(
        compound
            .into_iter()
            .map(|((family, labels), value)| Series {
                family,
                labels,
                value,
            }),
    );
    if text.contains(':') {
        for series in &mut out {
            if series.family.contains(&token) {
                series.family = series.family.replace(&token, ":");
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Sum,
    Count,
}

fn empty_histogram() -> Value {
    Value::Histogram {
        buckets: Vec::new(),
        sum: None,
        count: None,
    }
}

fn empty_summary() -> Value {
    Value::Summary {
        quantiles: Vec::new(),
        sum: None,
        count: None,
    }
}

/// `x_sum`/`x_count` of a family declared a histogram or summary: `(x, part, type)`.
fn compound_part<'a>(
    name: &'a str,
    types: &HashMap<String, SampleType>,
) -> Option<(&'a str, Part, SampleType)> {
    let (family, part) = if let Some(family) = name.strip_suffix("_sum") {
        (family, Part::Sum)
    } else {
        (name.strip_suffix("_count")?, Part::Count)
    };
    match types.get(family) {
        Some(kind @ (SampleType::Histogram | SampleType::Summary)) => Some((family, part, *kind)),
        _ => None,
    }
}

fn sorted_labels(labels: &prometheus_parse::Labels) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = labels
        .iter()
        .map(|(name, value)| (name.trim().to_owned(), value.clone()))
        .collect();
    out.sort();
    out
}

/// A run of word characters that does not occur in `text`, to stand for `:` in metric names.
fn colon_token(text: &str) -> String {
    (0u32..)
        .map(|n| format!("__aisemble_colon{n}__"))
        .find(|token| !text.contains(token.as_str()))
        // The range is unbounded and `text` is finite, so a free token is always found.
        .unwrap_or_default()
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// `line` with the `:` of its metric name (a sample line's or a `# HELP`/`# TYPE` line's) replaced
/// by `token`. Label values and help text are left alone.
fn escape_name(line: &str, token: &str) -> String {
    let name_start = match line.trim_start().strip_prefix('#') {
        Some(comment) => {
            let comment = comment.trim_start();
            let Some(rest) = comment
                .strip_prefix("HELP")
                .or_else(|| comment.strip_prefix("TYPE"))
                .filter(|rest| rest.starts_with(char::is_whitespace))
            else {
                return line.to_owned();
            };
            line.len() - rest.trim_start().len()
        }
        None => line.len() - line.trim_start().len(),
    };
    let name_len = line[name_start..]
        .find(|c: char| !is_name_char(c))
        .unwrap_or(line.len() - name_start);
    let name = &line[name_start..name_start + name_len];
    if !name.contains(':') {
        return line.to_owned();
    }
    let mut out = String::with_capacity(line.len() + token.len() * 2);
    out.push_str(&line[..name_start]);
    out.push_str(&name.replace(':', token));
    out.push_str(&line[name_start + name_len..]);
    out
}
