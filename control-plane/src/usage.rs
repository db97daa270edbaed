//! This month's inference tokens and cost, kept incrementally.
//!
//! Each token and cost counter series' increase since the month's start is folded forward from the
//! samples stored since the previous read, so `/ops/status`, `/ops/agents/{id}` and the month's
//! cost series read seconds of samples per refresh instead of the whole month (which, on the 30th,
//! is a month of every counter of every host). The first read of a month, and the first after a
//! start, reads each series from the month's start once.
//!
//! [`Ledger`] is the pure core (samples in, totals out); [`MonthUsage`] keeps one over the store.
//! A counter's month starts from its last sample before midnight UTC on the 1st (looked up to
//! [`BASELINE_LOOKBACK_MS`] earlier) or, without one, from zero; a drop is a reset, as in
//! [`crate::views::increase`].

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError},
};

use aisemble_shared::metrics as names;
use promql_parser::label::{MatchOp, Matcher};

use crate::{
    store::{Labels, Store, StoreError},
    views::{UsageView, month_start_ms},
};

/// How far before the month's start a counter's baseline is looked for.
pub const BASELINE_LOOKBACK_MS: i64 = 86_400_000;

/// The month-to-date counters, shared by the API and the rule manager. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct MonthUsage(Arc<Mutex<Ledger>>);

impl MonthUsage {
    /// Folds in what the store holds up to `now`, then returns the month's usage by provider and
    /// model (of `host`, or the fleet) and its total cost. Blocking: reads the store. Concurrent
    /// callers wait for one another rather than read the same samples twice.
    ///
    /// # Errors
    /// When the store fails to read; the ledger keeps what it folded before the failure.
    pub fn read(
        &self,
        store: &Store,
        host: Option<&str>,
        now: i64,
    ) -> Result<(Vec<UsageView>, f64), StoreError> {
        let mut ledger = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ledger.start_month(month_start_ms(now));
        for name in [names::MODEL_TOKENS_TOTAL, names::MODEL_COST_USD_TOTAL] {
            for series in store.matching(&[Matcher::new(MatchOp::Equal, "__name__", name)]) {
                let mint = ledger.next_read_from(&series.labels);
                let samples = store.samples(&series, mint, now)?;
                ledger.fold(&series.labels, &samples);
            }
        }
        let usage = ledger.usage(host);
        // Not `sum()`: a float sum of nothing is -0.0, which the API and the dashboards would show.
        let cost = usage.iter().fold(0.0, |total, u| total + u.cost_usd);
        Ok((usage, cost))
    }
}

/// Month-to-date increases of counter series.
#[derive(Debug)]
pub struct Ledger {
    month_start: i64,
    counters: HashMap<Labels, Tally>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// The last sample folded in (the baseline before the month, or the month's latest).
    last: Option<(i64, f64)>,
    increase: f64,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            month_start: i64::MIN,
            counters: HashMap::new(),
        }
    }
}

impl Ledger {
    /// Starts over when `month_start` is another month than the one kept.
    pub fn start_month(&mut self, month_start: i64) {
        if self.month_start != month_start {
            self.month_start = month_start;
            self.counters.clear();
        }
    }

    /// Where the next read of a series starts: after its last folded sample, or, for a series
    /// not seen this month, early enough to find its baseline.
    pub fn next_read_from(&self, labels: &Labels) -> i64 {
        match self.counters.get(labels) {
            Some(Tally {
                last: Some((t, _)), ..
            }) => t.saturating_add(1),
            _ => self.month_start.saturating_sub(BASELINE_LOOKBACK_MS),
        }
    }

    /// Folds in a series' samples (time-ordered; those at or before the last one folded are
    /// skipped). Samples before the month only move the baseline; the month's are counted by
    /// [`crate::views::increase`], so resets are judged as everywhere else.
    pub fn fold(&mut self, labels: &Labels, samples: &[(i64, f64)]) {
        let tally = self.counters.get(labels).copied().unwrap_or_default();
        let after = tally.last.map_or(i64::MIN, |(t, _)| t);
        let new = &samples[samples.partition_point(|(t, _)| *t <= after)..];
        let last_value =
            |part: &[(i64, f64)]| part.iter().rev().find(|(_, v)| !v.is_nan()).copied();
        let Some(last) = last_value(new) else {
            return;
        };
        let (before, during) = new.split_at(new.partition_point(|(t, _)| *t < self.month_start));
        let baseline = last_value(before).or(tally.last).map(|(_, v)| v);
        self.counters.insert(
            labels.clone(),
            Tally {
                last: Some(last),
                increase: tally.increase + crate::views::increase(baseline, during),
            },
        );
    }

    /// The month's tokens and cost by provider and model, of `host` or of every host.
    pub fn usage(&self, host: Option<&str>) -> Vec<UsageView> {
        let mut usage: BTreeMap<(&str, &str), UsageView> = BTreeMap::new();
        for (labels, tally) in &self.counters {
            if host.is_some_and(|h| labels.get("host") != Some(h)) {
                continue;
            }
            let provider = labels.get("provider").unwrap_or("");
            let view = usage
                .entry((provider, labels.get("model").unwrap_or("")))
                .or_default();
            match (labels.get("__name__"), labels.get("direction")) {
                (Some(names::MODEL_TOKENS_TOTAL), Some("in")) => view.tokens_in += tally.increase,
                (Some(names::MODEL_TOKENS_TOTAL), Some("out")) => view.tokens_out += tally.increase,
                (Some(names::MODEL_COST_USD_TOTAL), _) => view.cost_usd += tally.increase,
                _ => {}
            }
        }
        usage
            .into_iter()
            .map(|((provider, model), view)| UsageView {
                provider: if provider.is_empty() {
                    "unknown".into()
                } else {
                    provider.to_owned()
                },
                model: model.to_owned(),
                ..view
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
