//! The state of one alerting rule's alerts, advanced by each evaluation: inactive → pending →
//! firing → resolved, with `for` and `keep_firing_for`, exactly as Prometheus' `AlertingRule.Eval`.
//! Pure: the evaluation time and the query result come in, the `ALERTS`/`ALERTS_FOR_STATE`
//! samples go out. No clocks, no I/O.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use rustc_hash::FxBuildHasher;

use super::{rules::Rule, template::TemplateData};
use crate::{
    query::InstantSample,
    store::{LabelPair, Labels},
};

/// A label set as alerts carry it.
pub type LabelMap = BTreeMap<String, String>;

/// Resolved alerts are kept (and reported as resolved) this long, as Prometheus does.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertState {
    /// Resolved (kept for [`RESOLVED_RETENTION_MS`]).
    Inactive,
    /// Condition true, `for` not elapsed yet.
    Pending,
    /// Condition true for `for` (or kept firing by `keep_firing_for`).
    Firing,
}

impl AlertState {
    /// `inactive`, `pending`, `firing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Pending => "pending",
            Self::Firing => "firing",
        }
    }
}

/// One alert: one label set of one alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The result's labels (without `__name__`), the rule's labels, and `alertname`.
    pub labels: LabelMap,
    /// Expanded annotations.
    pub annotations: LabelMap,
    /// State.
    pub state: AlertState,
    /// The latest value of the expression.
    pub value: f64,
    /// When the condition became true (ms).
    pub active_at: i64,
    /// When it started firing (ms).
    pub fired_at: Option<i64>,
    /// When it resolved (ms).
    pub resolved_at: Option<i64>,
    /// Since when `keep_firing_for` holds it (ms).
    pub keep_firing_since: Option<i64>,
    /// Derived per evaluation, not part of the alert's identity.
    pub(crate) scratch: Scratch,
}

/// What an evaluation derives from an alert and reuses on the next one: the `ALERTS` and
/// `ALERTS_FOR_STATE` label sets (rebuilt only when the state changes), and the last evaluation
/// whose result held the alert. Always equal, so alerts compare by what they say.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scratch {
    series: Option<(AlertState, Labels, Labels)>,
    seen_at: Option<i64>,
}

impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Alert {
    /// The `ALERTS` and `ALERTS_FOR_STATE` label sets of this alert in its current state.
    fn series_labels(&mut self) -> (Labels, Labels) {
        if let Some((state, alerts, for_state)) = &self.scratch.series
            && *state == self.state
        {
            return (alerts.clone(), for_state.clone());
        }
        let pairs = |name: &str, state: Option<AlertState>| {
            let mut pairs: Vec<LabelPair> = self
                .labels
                .iter()
                .map(|(n, v)| LabelPair {
                    name: Arc::from(n.as_str()),
                    value: Arc::from(v.as_str()),
                })
                .collect();
            pairs.push(LabelPair {
                name: Arc::from(aisemble_shared::metrics::METRIC_NAME_LABEL),
                value: Arc::from(name),
            });
            if let Some(state) = state {
                pairs.push(LabelPair {
                    name: Arc::from("alertstate"),
                    value: Arc::from(state.as_str()),
                });
            }
            // Ours go first: `Labels::new` keeps the first of duplicate names, and Prometheus
            // sets `__name__` and `alertstate` over any the alert carries.
            pairs.rotate_right(if state.is_some() { 2 } else { 1 });
            Labels::new(pairs)
        };
        let alerts = pairs("ALERTS", Some(self.state));
        let for_state = pairs("ALERTS_FOR_STATE", None);
        self.scratch.series = Some((self.state, alerts.clone(), for_state.clone()));
        (alerts, for_state)
    }
}

/// External context of an evaluation.
#[derive(Debug, Clone, Default)]
pub struct EvalContext {
    /// Labels of this control plane (`$externalLabels`).
    pub external_labels: LabelMap,
    /// Its URL (`$externalURL`).
    pub external_url: String,
}

/// Why an evaluation produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleEvalError {
    /// Two results gave the same labels once the rule's labels were applied.
    #[error("vector contains metrics with the same labelset after applying alert labels")]
    DuplicateLabels,
    /// More alerts than the group's `limit`.
    #[error("exceeded limit of {limit} with {count} alerts")]
    Limit {
        /// The limit.
        limit: usize,
        /// How many there were.
        count: usize,
    },
}

/// A sample a rule writes: `ALERTS`, `ALERTS_FOR_STATE`, or a recorded series.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSample {
    /// Labels, `__name__` included.
    pub labels: Labels,
    /// Value.
    pub v: f64,
}

/// The alerts of one alerting rule.
#[derive(Debug, Clone, Default)]
pub struct AlertingRuleState {
    /// Alerts by label set.
    pub active: BTreeMap<LabelMap, Alert>,
    /// The last evaluation's result label sets, each with the alert labels and the `$labels` it
    /// gave: reused while the rule's labels are plain text (they then follow from the result's
    /// labels alone), so a steady alert builds no label map per evaluation.
    derived: HashMap<Labels, (LabelMap, Arc<LabelMap>), FxBuildHasher>,
}

impl AlertingRuleState {
    /// Advances every alert of `rule` with the query result `samples` at `ts` (ms); returns the
    /// `ALERTS` and `ALERTS_FOR_STATE` samples to write at `ts`.
    ///
    /// # Errors
    /// Duplicate label sets, or more alerts than `limit` (then every alert is dropped, as in
    /// Prometheus).
    pub fn eval(
        &mut self,
        rule: &Rule,
        ts: i64,
        samples: &[InstantSample],
        limit: usize,
        context: &EvalContext,
    ) -> Result<Vec<OutputSample>, RuleEvalError> {
        // Everything is computed before the state changes: a duplicate label set leaves the
        // alerts as they were, as in Prometheus.
        let external_labels = Arc::new(context.external_labels.clone());
        let templated = !rule.labels.is_empty() || !rule.annotations.is_empty();
        let reuse = rule
            .labels
            .iter()
            .all(|(_, _, template)| template.is_plain());
        let mut previous = if reuse {
            std::mem::take(&mut self.derived)
        } else {
            HashMap::default()
        };
        let mut fresh: Vec<(&Labels, LabelMap, Arc<LabelMap>, LabelMap, f64)> =
            Vec::with_capacity(samples.len());
        for sample in samples {
            let derived = previous.remove(&sample.labels);
            let data = |template_labels: &Arc<LabelMap>| {
                Arc::new(TemplateData {
                    labels: Arc::clone(template_labels),
                    external_labels: Arc::clone(&external_labels),
                    external_url: context.external_url.clone(),
                    value: sample.v,
                })
            };
            let (labels, template_labels) = derived.unwrap_or_else(|| {
                let result_labels: LabelMap = sample
                    .labels
                    .iter()
                    .map(|p| (p.name.to_string(), p.value.to_string()))
                    .collect();
                let (mut labels, template_labels) = if templated {
                    (result_labels.clone(), Arc::new(result_labels))
                } else {
                    (result_labels, Arc::new(LabelMap::new()))
                };
                labels.remove(aisemble_shared::metrics::METRIC_NAME_LABEL);
                if !rule.labels.is_empty() {
                    let data = data(&template_labels);
                    for (name, _, template) in &rule.labels {
                        let value = template.expand(&data);
                        if value.is_empty() {
                            labels.remove(name);
                        } else {
                            labels.insert(name.clone(), value);
                        }
                    }
                }
                labels.insert("alertname".into(), rule.name.clone());
                (labels, template_labels)
            });
            let annotations = if rule.annotations.is_empty() {
                LabelMap::new()
            } else {
                let data = data(&template_labels);
                rule.annotations
                    .iter()
                    .map(|(name, _, template)| (name.clone(), template.expand(&data)))
                    .collect()
            };
            fresh.push((
                &sample.labels,
                labels,
                template_labels,
                annotations,
                sample.v,
            ));
        }
        let mut order: Vec<usize> = (0..fresh.len()).collect();
        order.sort_unstable_by(|&a, &b| fresh[a].1.cmp(&fresh[b].1));
        if order.windows(2).any(|w| fresh[w[0]].1 == fresh[w[1]].1) {
            return Err(RuleEvalError::DuplicateLabels);
        }
        for (result_labels, labels, template_labels, annotations, value) in fresh {
            match self.active.get_mut(&labels) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = value;
                    existing.annotations = annotations;
                    existing.scratch.seen_at = Some(ts);
                }
                _ => {
                    self.active.insert(
                        labels.clone(),
                        Alert {
                            labels: labels.clone(),
                            annotations,
                            state: AlertState::Pending,
                            value,
                            active_at: ts,
                            fired_at: None,
                            resolved_at: None,
                            keep_firing_since: None,
                            scratch: Scratch {
                                series: None,
                                seen_at: Some(ts),
                            },
                        },
                    );
                }
            }
            if reuse {
                self.derived
                    .insert(result_labels.clone(), (labels, template_labels));
            }
        }
        let mut out = Vec::with_capacity(self.active.len() * 2);
        let mut active_or_pending = 0;
        let mut removed = Vec::new();
        for (labels, alert) in &mut self.active {
            if alert.scratch.seen_at == Some(ts) {
                alert.keep_firing_since = None;
            } else {
                let mut keep_firing = false;
                if alert.state == AlertState::Firing && !rule.keep_firing_for.is_zero() {
                    let since = *alert.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts - since < crate::query::duration_ms(rule.keep_firing_for);
                }
                if alert.state == AlertState::Pending
                    || alert
                        .resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    removed.push(labels.clone());
                }
                if alert.state != AlertState::Inactive && !keep_firing {
                    alert.state = AlertState::Inactive;
                    alert.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            }
            active_or_pending += 1;
            if alert.state == AlertState::Pending
                && ts - alert.active_at >= crate::query::duration_ms(rule.hold)
            {
                alert.state = AlertState::Firing;
                alert.fired_at = Some(ts);
            }
            let (alerts, for_state) = alert.series_labels();
            out.push(OutputSample {
                labels: alerts,
                v: 1.0,
            });
            out.push(OutputSample {
                labels: for_state,
                v: (alert.active_at / 1000) as f64,
            });
        }
        for labels in removed {
            self.active.remove(&labels);
        }
        if limit > 0 && active_or_pending > limit {
            self.active.clear();
            return Err(RuleEvalError::Limit {
                limit,
                count: active_or_pending,
            });
        }
        Ok(out)
    }

    /// Alerts pending or firing (not resolved).
    pub fn current(&self) -> impl Iterator<Item = &Alert> {
        self.active.values().filter(|a| a.resolved_at.is_none())
    }
}

/// Prometheus' label fingerprint (FNV-1a 64 over sorted `name 0xff value 0xff`), as Alertmanager
/// shows it: 16 hex digits.
pub fn fingerprint(labels: &LabelMap) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    if labels.is_empty() {
        return format!("{OFFSET:016x}");
    }
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        feed(name.as_bytes());
        feed(&[0xff]);
        feed(value.as_bytes());
        feed(&[0xff]);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests;
