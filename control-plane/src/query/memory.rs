//! Series held in memory: the input of a rule unit test (`aisemble-cp rules test`), and what
//! rules wrote at the instant being evaluated. Appends are in time order per series; selection
//! scans the selector's metric name (everything for a selector without one) and sorts.

use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxBuildHasher;

use promql_parser::label::Matcher;

use super::SeriesSource;
use crate::store::{LabelPair, Labels, SeriesSamples, StoreError};

/// The series of one metric name, by label set.
type NamedSeries = HashMap<Labels, Vec<(i64, f64)>, FxBuildHasher>;

/// Series and their samples, in memory.
#[derive(Debug, Default, Clone)]
pub struct MemorySeries {
    // Hashed: an alert storm appends tens of thousands of `ALERTS` series per instant, and
    // appends far outnumber selections.
    by_name: BTreeMap<String, NamedSeries>,
}

impl MemorySeries {
    /// No series.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one sample; a sample not after the series' latest is ignored (as the store refuses
    /// out-of-order samples).
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) {
        let name = labels.metric_name();
        let series = match self.by_name.get_mut(name) {
            Some(series) => series,
            None => self.by_name.entry(name.to_owned()).or_default(),
        };
        let samples = match series.get_mut(labels) {
            Some(samples) => samples,
            None => series.entry(labels.clone()).or_default(),
        };
        if samples.last().is_none_or(|(last, _)| *last < t) {
            samples.push((t, v));
        }
    }

    /// Labels from `(name, value)` pairs (`__name__` included when it is one of them).
    pub fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(
            pairs
                .iter()
                .map(|(n, v)| LabelPair {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
        )
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

impl SeriesSource for MemorySeries {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        let named = matchers.iter().find(|m| {
            m.name == aisemble_shared::metrics::METRIC_NAME_LABEL
                && matches!(m.op, promql_parser::label::MatchOp::Equal)
        });
        let buckets: Vec<&NamedSeries> = match named {
            Some(m) => self.by_name.get(&m.value).into_iter().collect(),
            None => self.by_name.values().collect(),
        };
        let mut out: Vec<SeriesSamples> = buckets
            .iter()
            .flat_map(|series| series.iter())
            .filter(|(labels, _)| {
                matchers
                    .iter()
                    .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
            })
            .filter_map(|(labels, samples)| {
                let from = samples.partition_point(|(t, _)| *t < mint);
                let to = samples.partition_point(|(t, _)| *t <= maxt);
                (from < to).then(|| SeriesSamples {
                    labels: labels.clone(),
                    samples: samples[from..to].to_vec(),
                })
            })
            .collect();
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}
