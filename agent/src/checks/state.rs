//! The pure core of a health check: what one run's outcome becomes (samples, and an event when the
//! state changes), given the check's history.
//!
//! No I/O, no clocks: the run's duration comes in with its outcome, so every rule here is tested
//! without sockets or sleeps.

use std::time::Duration;

use aisemble_shared::{
    metrics,
    wire::{CheckStateChange, Label, Sample},
};

use super::CheckError;

/// What one run of a check found.
#[derive(Debug)]
pub(super) struct Outcome {
    /// How long the run took (at most about the timeout).
    pub(super) duration: Duration,
    /// `Ok` when the target is up, else why not.
    pub(super) result: Result<(), CheckError>,
    /// Kind-specific figures the run gathered (an HTTP status code, Redis memory), kept even
    /// when the run failed later on (a 503 still reports its status code).
    pub(super) details: Vec<Detail>,
}

/// One kind-specific figure of a run, written as its own series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Detail {
    /// Metric name (a constant of `aisemble_shared::metrics`).
    pub(super) name: &'static str,
    /// The value.
    pub(super) value: f64,
}

/// What an outcome turned into.
#[derive(Debug)]
pub(super) struct Observation {
    /// The run's series, labelled `check`, `kind` and the configured labels.
    pub(super) samples: Vec<Sample>,
    /// Set when the check's state changed (including its first result).
    pub(super) change: Option<CheckStateChange>,
}

/// A check's history: whether its last run was up and how many runs failed in a row.
#[derive(Debug)]
pub(super) struct CheckState {
    check: String,
    kind: &'static str,
    labels: Vec<Label>,
    /// Every sample carries these, in this order: `check`, `kind`, then the configured labels.
    sample_labels: Vec<Label>,
    last_up: Option<bool>,
    consecutive_failures: u64,
}

impl CheckState {
    /// A check that has not run yet.
    pub(super) fn new(check: &str, kind: &'static str, labels: &[Label]) -> Self {
        let mut sample_labels = Vec::with_capacity(labels.len() + 2);
        sample_labels.push(Label::new("check", check));
        sample_labels.push(Label::new("kind", kind));
        sample_labels.extend_from_slice(labels);
        Self {
            check: check.to_owned(),
            kind,
            labels: labels.to_vec(),
            sample_labels,
            last_up: None,
            consecutive_failures: 0,
        }
    }

    /// Failed runs in a row (0 after a successful run).
    pub(super) fn consecutive_failures(&self) -> u64 {
        self.consecutive_failures
    }

    /// Takes one run's outcome into the history.
    pub(super) fn observe(&mut self, outcome: &Outcome) -> Observation {
        let up = outcome.result.is_ok();
        self.consecutive_failures = if up {
            0
        } else {
            self.consecutive_failures.saturating_add(1)
        };
        let was_up = self.last_up.replace(up);
        let change = (was_up != Some(up)).then(|| CheckStateChange {
            check: self.check.clone(),
            kind: self.kind.to_owned(),
            was_up,
            up,
            consecutive_failures: self.consecutive_failures,
            error: outcome.result.as_ref().err().map(ToString::to_string),
            labels: self.labels.clone(),
        });

        let mut samples = Vec::with_capacity(3 + outcome.details.len());
        samples.push(self.sample(metrics::CHECK_UP, if up { 1.0 } else { 0.0 }));
        samples.push(self.sample(
            metrics::CHECK_DURATION_SECONDS,
            outcome.duration.as_secs_f64(),
        ));
        samples.push(self.sample(
            metrics::CHECK_CONSECUTIVE_FAILURES,
            self.consecutive_failures as f64,
        ));
        for detail in &outcome.details {
            samples.push(self.sample(detail.name, detail.value));
        }
        Observation { samples, change }
    }

    fn sample(&self, name: &str, value: f64) -> Sample {
        Sample {
            name: name.to_owned(),
            labels: self.sample_labels.clone(),
            value,
        }
    }
}
