//! Evaluating one rule group at one instant: every rule in order over a series source, each
//! seeing the series the rules before it wrote at that instant (as Prometheus commits each rule's
//! output before the next rule runs), and a staleness marker for every series a rule wrote last
//! time but not this time. Shared by the rule manager (over the store) and `rules test` (over
//! in-memory series). Blocking (reads the source).

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use promql_parser::label::Matcher;

use super::{
    rules::{Rule, RuleGroup, RuleKind},
    state::{AlertingRuleState, EvalContext, LabelMap, OutputSample, RuleEvalError},
};
use crate::{
    query::{
        InstantSample, QueryError, SeriesSource, Value,
        eval::{Evaluator, SelectionCache},
        memory::MemorySeries,
    },
    store::{LabelPair, Labels, SeriesSamples, StoreError},
};

/// Prometheus' staleness marker.
pub const STALE_NAN: f64 = crate::store::STALE_NAN;

/// The runtime state of one rule.
#[derive(Debug, Clone, Default)]
pub struct RuleRuntime {
    /// Alerts (alerting rules only).
    pub alerts: AlertingRuleState,
    /// Series written by the previous evaluation (for staleness markers).
    pub previous_series: HashSet<Labels>,
    /// The last evaluation's error, if any.
    pub last_error: Option<String>,
    /// When it was last evaluated (ms).
    pub last_evaluation: Option<i64>,
    /// How long that took (seconds).
    pub evaluation_seconds: f64,
}

/// The runtime state of a group: one entry per rule, in order.
#[derive(Debug, Clone, Default)]
pub struct GroupRuntime {
    /// Per rule.
    pub rules: Vec<RuleRuntime>,
}

/// What one evaluation of a group wrote.
#[derive(Debug, Default)]
pub struct GroupOutput {
    /// Samples at the evaluation time: recorded series, `ALERTS`, `ALERTS_FOR_STATE`, markers.
    pub samples: Vec<OutputSample>,
    /// Rules that failed, by index.
    pub errors: Vec<(usize, String)>,
}

/// Evaluates `group` at `ts` (ms) over `overlay` (the source plus what earlier groups wrote at
/// this instant), adding what it writes to the overlay. `cache` holds the selections made at
/// `ts` so far; pass the same one to every group evaluated at `ts` over the same overlay.
pub fn eval_group(
    group: &RuleGroup,
    runtime: &mut GroupRuntime,
    overlay: &Overlay<'_>,
    ts: i64,
    context: &EvalContext,
    cache: &mut SelectionCache,
) -> GroupOutput {
    runtime
        .rules
        .resize_with(group.rules.len(), RuleRuntime::default);
    let mut output = GroupOutput::default();
    for (idx, rule) in group.rules.iter().enumerate() {
        let started = std::time::Instant::now();
        let state = &mut runtime.rules[idx];
        let result = eval_rule(rule, state, overlay, ts, group.limit, context, cache);
        state.last_evaluation = Some(ts);
        state.evaluation_seconds = started.elapsed().as_secs_f64();
        let samples = match result {
            Ok(samples) => {
                state.last_error = None;
                samples
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                output.errors.push((idx, error));
                Vec::new()
            }
        };
        let current: HashSet<Labels> = samples.iter().map(|s| s.labels.clone()).collect();
        let mut markers: Vec<OutputSample> = state
            .previous_series
            .difference(&current)
            .map(|labels| OutputSample {
                labels: labels.clone(),
                v: STALE_NAN,
            })
            .collect();
        markers.sort_by(|a, b| a.labels.cmp(&b.labels));
        state.previous_series = current;
        let written: Vec<&OutputSample> = samples.iter().chain(&markers).collect();
        if !written.is_empty() {
            overlay.record(ts, &written);
            let names: HashSet<&str> = written.iter().map(|s| s.labels.metric_name()).collect();
            cache.invalidate(&names);
        }
        output.samples.extend(samples);
        output.samples.extend(markers);
    }
    output
}

fn eval_rule(
    rule: &Rule,
    state: &mut RuleRuntime,
    source: &dyn SeriesSource,
    ts: i64,
    limit: usize,
    context: &EvalContext,
    cache: &mut SelectionCache,
) -> Result<Vec<OutputSample>, String> {
    let result = query_vector(source, rule, ts, cache).map_err(|e| e.to_string())?;
    match rule.kind {
        RuleKind::Alerting => state
            .alerts
            .eval(rule, ts, &result, limit, context)
            .map_err(|e: RuleEvalError| e.to_string()),
        RuleKind::Recording => {
            let mut out: Vec<OutputSample> = Vec::with_capacity(result.len());
            let mut seen = HashSet::with_capacity(result.len());
            for sample in result {
                let mut labels: LabelMap = sample
                    .labels
                    .iter()
                    .map(|p| (p.name.to_string(), p.value.to_string()))
                    .collect();
                labels.insert("__name__".into(), rule.name.clone());
                for (name, value, _) in &rule.labels {
                    if value.is_empty() {
                        labels.remove(name);
                    } else {
                        labels.insert(name.clone(), value.clone());
                    }
                }
                let labels = to_labels(&labels);
                if !seen.insert(labels.clone()) {
                    return Err(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    );
                }
                out.push(OutputSample {
                    labels,
                    v: sample.v,
                });
            }
            if limit > 0 && out.len() > limit {
                return Err(format!(
                    "exceeded limit of {limit} with {} series",
                    out.len()
                ));
            }
            Ok(out)
        }
    }
}

/// The rule's expression at `ts` as an instant vector (a scalar becomes one unlabelled sample).
fn query_vector(
    source: &dyn SeriesSource,
    rule: &Rule,
    ts: i64,
    cache: &mut SelectionCache,
) -> Result<Vec<InstantSample>, QueryError> {
    let mut evaluator = Evaluator::with_cache(source, ts, ts, std::mem::take(cache));
    let value = evaluator.eval(&rule.expr, ts);
    *cache = evaluator.into_cache();
    match value? {
        Value::Vector(samples) => Ok(samples),
        Value::Scalar(t, v) => Ok(vec![InstantSample {
            labels: Labels::new(Vec::new()),
            t,
            v,
        }]),
        _ => Err(QueryError::BadData(
            "rule result is not a vector or scalar".into(),
        )),
    }
}

/// A label map as store labels.
pub fn to_labels(map: &LabelMap) -> Labels {
    Labels::new(
        map.iter()
            .map(|(k, v)| LabelPair {
                name: Arc::from(k.as_str()),
                value: Arc::from(v.as_str()),
            })
            .collect(),
    )
}

/// A source plus what rules have written at the instant being evaluated (Prometheus commits each
/// rule's output before the next rule reads).
pub struct Overlay<'a> {
    base: &'a dyn SeriesSource,
    extra: Mutex<MemorySeries>,
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay").finish_non_exhaustive()
    }
}

impl<'a> Overlay<'a> {
    /// Nothing written yet.
    pub fn new(base: &'a dyn SeriesSource) -> Self {
        Self {
            base,
            extra: Mutex::new(MemorySeries::new()),
        }
    }

    fn record(&self, ts: i64, samples: &[&OutputSample]) {
        let mut extra = self.extra.lock().unwrap_or_else(PoisonError::into_inner);
        for sample in samples {
            extra.append(&sample.labels, ts, sample.v);
        }
    }
}

impl SeriesSource for Overlay<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        let base = self.base.select(matchers, mint, maxt)?;
        let extra = self
            .extra
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .select(matchers, mint, maxt)?;
        Ok(merge(base, extra))
    }

    fn select_latest(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        let base = self.base.select_latest(matchers, mint, maxt)?;
        let extra = self
            .extra
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .select_latest(matchers, mint, maxt)?;
        let mut merged = merge(base, extra);
        for series in &mut merged {
            let keep_from = series.samples.len().saturating_sub(1);
            series.samples.drain(..keep_from);
        }
        Ok(merged)
    }
}

/// The source's series with what rules wrote added: samples of the same series merged in time
/// order, new series appended, all sorted by labels.
fn merge(mut base: Vec<SeriesSamples>, extra: Vec<SeriesSamples>) -> Vec<SeriesSamples> {
    if extra.is_empty() {
        return base;
    }
    let mut by_labels: BTreeMap<Labels, usize> = base
        .iter()
        .enumerate()
        .map(|(i, s)| (s.labels.clone(), i))
        .collect();
    for series in extra {
        match by_labels.get(&series.labels) {
            Some(&i) => {
                let samples = &mut base[i].samples;
                samples.extend(series.samples);
                samples.sort_by_key(|(t, _)| *t);
                samples.dedup_by_key(|(t, _)| *t);
            }
            None => {
                by_labels.insert(series.labels.clone(), base.len());
                base.push(series);
            }
        }
    }
    base.sort_by(|a, b| a.labels.cmp(&b.labels));
    base
}
