//! Parsed series → `aisemble_*` samples: rename families and labels, drop labels (summing the
//! series that then coincide), add labels, scale values, pass unmatched families through or drop
//! them.
//!
//! Pure: no I/O, no clocks, no logging (label names it had to drop are returned to the caller).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aisemble_shared::{
    metrics::{HOST_LABEL, is_valid_label_name},
    wire::{Label, Sample},
};

use super::{
    parse::{Series, Value},
    presets::Preset,
};

/// What a source `host` label is renamed to: the control plane owns `host`.
pub(crate) const EXPORTED_HOST_LABEL: &str = "exported_host";

/// One mapping rule (a checked `[[scrape.map]]` entry or a preset's row).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    /// Family as exposed (histograms and summaries without `_bucket`/`_sum`/`_count`).
    pub(crate) from: String,
    /// Output family.
    pub(crate) to: String,
    /// Source → output label renames.
    pub(crate) rename_labels: Vec<(String, String)>,
    /// Source labels removed; series that then coincide are summed.
    pub(crate) drop_labels: Vec<String>,
    /// Labels set on the output (over source labels of the same name).
    pub(crate) add_labels: Vec<(String, String)>,
    /// Factor for values (and for histogram bounds, so a unit change keeps buckets consistent).
    pub(crate) scale: f64,
}

/// What happens to families no rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unmapped {
    /// Leave them out.
    Drop,
    /// Keep them as `prefix + sanitized family`, labels kept.
    Prefix(String),
}

/// The mapping of one target: user rules, then the preset's, then the unmapped policy.
#[derive(Debug)]
pub(crate) struct Mapper {
    /// Rules by source family. A family named by any user rule gets only the user rules.
    rules: HashMap<String, Vec<Rule>>,
    unmapped: Unmapped,
    /// The preset's label renames, also applied to passed-through families.
    unmapped_renames: Vec<(String, String)>,
    /// The target's `labels`, set on every output series.
    labels: Vec<(String, String)>,
}

/// The output of one mapping.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    /// One sample per output series, in name and label order.
    pub(crate) samples: Vec<Sample>,
    /// Label names that are not valid Prometheus label names and were left out.
    pub(crate) invalid_labels: BTreeSet<String>,
}

impl Mapper {
    /// `user` rules take precedence over the `preset`'s, family by family.
    pub(crate) fn new(
        user: Vec<Rule>,
        preset: Option<Preset>,
        unmapped: Unmapped,
        labels: Vec<(String, String)>,
    ) -> Self {
        let mut rules: HashMap<String, Vec<Rule>> = HashMap::new();
        let mut unmapped_renames = Vec::new();
        if let Some(table) = preset.map(Preset::table) {
            unmapped_renames = owned_pairs(table.rename_labels);
            for row in table.rules {
                rules.entry(row.from.to_owned()).or_default().push(Rule {
                    from: row.from.to_owned(),
                    to: row.to.to_owned(),
                    rename_labels: owned_pairs(table.rename_labels),
                    drop_labels: row.drop_labels.iter().map(|&l| l.to_owned()).collect(),
                    add_labels: owned_pairs(row.add_labels),
                    scale: row.scale,
                });
            }
        }
        let mut user_rules: HashMap<String, Vec<Rule>> = HashMap::new();
        for rule in user {
            user_rules.entry(rule.from.clone()).or_default().push(rule);
        }
        rules.extend(user_rules);
        Self {
            rules,
            unmapped,
            unmapped_renames,
            labels,
        }
    }

    /// Maps one scrape's series.
    pub(crate) fn map(&self, series: &[Series]) -> Mapped {
        let mut out = Output::default();
        for s in series {
            match self.rules.get(&s.family) {
                Some(rules) => {
                    for rule in rules {
                        let labels = self.labels(
                            &s.labels,
                            &rule.rename_labels,
                            &rule.drop_labels,
                            &rule.add_labels,
                            &mut out.invalid_labels,
                        );
                        out.emit(&rule.to, &labels, &s.value, rule.scale);
                    }
                }
                None => {
                    if let Unmapped::Prefix(prefix) = &self.unmapped {
                        let name = format!("{prefix}{}", sanitize(&s.family));
                        let labels = self.labels(
                            &s.labels,
                            &self.unmapped_renames,
                            &[],
                            &[],
                            &mut out.invalid_labels,
                        );
                        out.emit(&name, &labels, &s.value, 1.0);
                    }
                }
            }
        }
        out.finish()
    }

    /// Output labels: source labels minus `drop`, renamed (a renamed label wins over a source
    /// label of the same name), then `add`, then the target's labels. A source `host` becomes
    /// `exported_host` unless renamed; invalid names are left out and reported.
    fn labels(
        &self,
        source: &[(String, String)],
        rename: &[(String, String)],
        drop: &[String],
        add: &[(String, String)],
        invalid: &mut BTreeSet<String>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut renamed = Vec::new();
        for (name, value) in source {
            if drop.contains(name) {
                continue;
            }
            if let Some((_, to)) = rename.iter().find(|(from, _)| from == name) {
                renamed.push((to, value));
                continue;
            }
            let name = if name == HOST_LABEL {
                EXPORTED_HOST_LABEL
            } else {
                name.as_str()
            };
            if is_valid_label_name(name) {
                out.insert(name.to_owned(), value.clone());
            } else {
                invalid.insert(name.to_owned());
            }
        }
        // Rename targets, added labels and target labels are checked when the config is loaded.
        for (name, value) in renamed {
            out.insert(name.clone(), value.clone());
        }
        for (name, value) in add.iter().chain(&self.labels) {
            out.insert(name.clone(), value.clone());
        }
        out
    }
}

/// Output series being summed.
#[derive(Debug, Default)]
struct Output {
    series: BTreeMap<(String, Vec<(String, String)>), f64>,
    invalid_labels: BTreeSet<String>,
}

impl Output {
    fn add(&mut self, name: String, labels: Vec<(String, String)>, value: f64) {
        *self.series.entry((name, labels)).or_insert(0.0) += value;
    }

    /// Emits `value` as Prometheus series of family `name`: a scalar as `name`; a histogram as
    /// `name_bucket{le}` (bounds scaled), `name_sum` (scaled), `name_count`; a summary as
    /// `name{quantile}` (scaled), `name_sum` (scaled), `name_count`.
    fn emit(&mut self, name: &str, labels: &BTreeMap<String, String>, value: &Value, scale: f64) {
        let flat = |extra: Option<(&str, String)>| -> Vec<(String, String)> {
            let mut all = labels.clone();
            if let Some((name, value)) = extra {
                all.insert(name.to_owned(), value);
            }
            all.into_iter().collect()
        };
        match value {
            Value::Scalar(v) => self.add(name.to_owned(), flat(None), v * scale),
            Value::Histogram {
                buckets,
                sum,
                count,
            } => {
                for &(bound, n) in buckets {
                    let le = format_float(scale_bound(bound, scale));
                    self.add(format!("{name}_bucket"), flat(Some(("le", le))), n);
                }
                self.emit_sum_count(name, flat(None), *sum, *count, scale);
            }
            Value::Summary {
                quantiles,
                sum,
                count,
            } => {
                for &(quantile, v) in quantiles {
                    let quantile = format_float(quantile);
                    self.add(
                        name.to_owned(),
                        flat(Some(("quantile", quantile))),
                        v * scale,
                    );
                }
                self.emit_sum_count(name, flat(None), *sum, *count, scale);
            }
        }
    }

    fn emit_sum_count(
        &mut self,
        name: &str,
        labels: Vec<(String, String)>,
        sum: Option<f64>,
        count: Option<f64>,
        scale: f64,
    ) {
        if let Some(sum) = sum {
            self.add(format!("{name}_sum"), labels.clone(), sum * scale);
        }
        if let Some(count) = count {
            self.add(format!("{name}_count"), labels, count);
        }
    }

    fn finish(self) -> Mapped {
        let samples = self
            .series
            .into_iter()
            .map(|((name, labels), value)| Sample {
                name,
                labels: labels
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                value,
            })
            .collect();
        Mapped {
            samples,
            invalid_labels: self.invalid_labels,
        }
    }
}

/// A histogram bound times `scale`, rounded to 15 significant digits so that `5000 × 1e-6` is
/// written `0.005` rather than `0.005000000000000001`.
fn scale_bound(bound: f64, scale: f64) -> f64 {
    if scale == 1.0 || !bound.is_finite() {
        return bound;
    }
    let scaled = bound * scale;
    format!("{scaled:.14e}").parse().unwrap_or(scaled)
}

/// Formats a bound or quantile as Prometheus's Go client does (`strconv.FormatFloat(v, 'g', -1,
/// 64)`): `0.1`, `1`, `2.5`, `1e+06`, `1e-05`, `+Inf`.
pub(crate) fn format_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip mantissa with the exponent after `e`.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if value != 0.0 && !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    } else {
        value.to_string()
    }
}

/// A family name made into a metric-name suffix: anything but `[A-Za-z0-9_]` becomes `_`
/// (`vllm:gpu_cache_usage_perc` → `vllm_gpu_cache_usage_perc`).
pub(crate) fn sanitize(family: &str) -> String {
    family
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn owned_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|&(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}
