//! Series held in memory: the input of a rule unit test (`aisemble-cp rules test`) and of the
//! evaluator's own tests. Appends are in time order per series; selection is a linear scan, which
//! is what a test's handful of series needs.

use promql_parser::label::Matcher;

use super::SeriesSource;
use crate::store::{LabelPair, Labels, SeriesSamples, StoreError};

/// Series and their samples, in memory.
#[derive(Debug, Default, Clone)]
pub struct MemorySeries {
    series: Vec<SeriesSamples>,
}

impl MemorySeries {
    /// No series.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one sample; a sample not after the series' latest is ignored (as the store refuses
    /// out-of-order samples).
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) {
        let idx = match self.series.binary_search_by(|s| s.labels.cmp(labels)) {
            Ok(idx) => idx,
            Err(idx) => {
                self.series.insert(
                    idx,
                    SeriesSamples {
                        labels: labels.clone(),
                        samples: Vec::new(),
                    },
                );
                idx
            }
        };
        let samples = &mut self.series[idx].samples;
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

    /// Every series, sorted by labels.
    pub fn all(&self) -> &[SeriesSamples] {
        &self.series
    }
}

impl SeriesSource for MemorySeries {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        Ok(self
            .series
            .iter()
            .filter(|s| {
                matchers
                    .iter()
                    .all(|m| m.is_match(s.labels.get(&m.name).unwrap_or("")))
            })
            .filter_map(|s| {
                let from = s.samples.partition_point(|(t, _)| *t < mint);
                let to = s.samples.partition_point(|(t, _)| *t <= maxt);
                (from < to).then(|| SeriesSamples {
                    labels: s.labels.clone(),
                    samples: s.samples[from..to].to_vec(),
                })
            })
            .collect())
    }
}
