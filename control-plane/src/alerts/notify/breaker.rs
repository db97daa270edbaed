//! A circuit breaker for one integration, as a pure state machine: no clocks, no I/O; the caller
//! passes `now` in and reports each delivery's outcome.
//!
//! Closed: every delivery goes through; `threshold` consecutive failures open it. Open: every
//! delivery is refused until `open_for` has passed. Then half-open: the next delivery is let
//! through as the one trial (all others are refused while it runs); its success closes the
//! breaker, its failure opens it again for `open_for`.

use std::time::{Duration, Instant};

/// What the breaker is doing, as exported in `aisemble_notifier_circuit_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Deliveries go through.
    Closed,
    /// Deliveries are refused.
    Open,
    /// One trial delivery may go through (or is running).
    HalfOpen,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge_value(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// Whether a delivery may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead (closed).
    Allow,
    /// Go ahead as the trial delivery of a half-open breaker; report its outcome (or
    /// [`CircuitBreaker::on_abandon`] if it is cancelled).
    Probe,
    /// Fail fast without trying.
    Reject {
        /// When a trial will be allowed; `None` while a trial is running.
        retry_at: Option<Instant>,
    },
}

/// The breaker of one integration.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed { n_failures: u32 },
    Open { until: Instant },
    Probing,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` consecutive failures (at least 1) and stays
    /// open for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            phase: Phase::Closed { n_failures: 0 },
        }
    }

    /// Whether a delivery starting at `now` may go ahead. A [`Decision::Probe`] reserves the
    /// trial: later calls are refused until its outcome is reported.
    pub fn allow(&mut self, now: Instant) -> Decision {
        match self.phase {
            Phase::Closed { .. } => Decision::Allow,
            Phase::Open { until } if now >= until => {
                self.phase = Phase::Probing;
                Decision::Probe
            }
            Phase::Open { until } => Decision::Reject {
                retry_at: Some(until),
            },
            Phase::Probing => Decision::Reject { retry_at: None },
        }
    }

    /// A delivery succeeded: the breaker closes and the failure count restarts.
    pub fn on_success(&mut self, _now: Instant) {
        self.phase = Phase::Closed { n_failures: 0 };
    }

    /// A delivery failed (after all its retries): counts towards opening when closed, opens
    /// again when it was the trial.
    pub fn on_failure(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed { n_failures } if n_failures + 1 < self.threshold => {
                self.phase = Phase::Closed {
                    n_failures: n_failures + 1,
                };
            }
            Phase::Closed { .. } | Phase::Probing => {
                self.phase = Phase::Open {
                    until: now.checked_add(self.open_for).unwrap_or(now),
                };
            }
            // A delivery that started before the breaker opened: it is already open.
            Phase::Open { .. } => {}
        }
    }

    /// The trial was cancelled before it had an outcome: the next delivery may be the trial.
    pub fn on_abandon(&mut self, now: Instant) {
        if self.phase == Phase::Probing {
            self.phase = Phase::Open { until: now };
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now >= until => BreakerState::HalfOpen,
            Phase::Open { .. } => BreakerState::Open,
            Phase::Probing => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures counted while closed.
    pub fn n_failures(&self) -> u32 {
        match self.phase {
            Phase::Closed { n_failures } => n_failures,
            Phase::Open { .. } | Phase::Probing => self.threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(60);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    /// Runs `steps` against a fresh breaker (threshold 3) and checks the state after each.
    #[track_caller]
    fn check(steps: &[(u64, Step, BreakerState)]) {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(3, OPEN_FOR);
        for (idx, &(secs, step, expected)) in steps.iter().enumerate() {
            let now = at(t0, secs);
            match step {
                Step::Allow(decision) => {
                    let got = breaker.allow(now);
                    let got = match got {
                        Decision::Reject { retry_at } => {
                            Expect::Reject(retry_at.map(|t| t.duration_since(t0).as_secs()))
                        }
                        Decision::Allow => Expect::Allow,
                        Decision::Probe => Expect::Probe,
                    };
                    assert_eq!(got, decision, "step {idx}: decision");
                }
                Step::Success => breaker.on_success(now),
                Step::Failure => breaker.on_failure(now),
                Step::Abandon => breaker.on_abandon(now),
                Step::Look => {}
            }
            assert_eq!(breaker.state(now), expected, "step {idx}: state");
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        Allow,
        Probe,
        Reject(Option<u64>),
    }

    #[derive(Debug, Clone, Copy)]
    enum Step {
        Allow(Expect),
        Success,
        Failure,
        Abandon,
        Look,
    }

    use BreakerState::{Closed, HalfOpen, Open};
    use Step::{Abandon, Failure, Look, Success};

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        check(&[
            (0, Step::Allow(Expect::Allow), Closed),
            (0, Failure, Closed),
            (1, Failure, Closed),
            (2, Failure, Open),
            (3, Step::Allow(Expect::Reject(Some(62))), Open),
            (61, Look, Open),
            (62, Look, HalfOpen),
        ]);
    }

    #[test]
    fn a_success_resets_the_count() {
        check(&[
            (0, Failure, Closed),
            (1, Failure, Closed),
            (2, Success, Closed),
            (3, Failure, Closed),
            (4, Failure, Closed),
            (5, Step::Allow(Expect::Allow), Closed),
            (5, Failure, Open),
        ]);
    }

    #[test]
    fn half_open_lets_exactly_one_trial_through() {
        check(&[
            (0, Failure, Closed),
            (0, Failure, Closed),
            (0, Failure, Open),
            (60, Step::Allow(Expect::Probe), HalfOpen),
            (61, Step::Allow(Expect::Reject(None)), HalfOpen),
            (70, Step::Allow(Expect::Reject(None)), HalfOpen),
            (71, Success, Closed),
            (72, Step::Allow(Expect::Allow), Closed),
        ]);
    }

    #[test]
    fn a_failed_trial_opens_again_for_the_full_duration() {
        check(&[
            (0, Failure, Closed),
            (0, Failure, Closed),
            (0, Failure, Open),
            (65, Step::Allow(Expect::Probe), HalfOpen),
            (66, Failure, Open),
            (100, Step::Allow(Expect::Reject(Some(126))), Open),
            (126, Step::Allow(Expect::Probe), HalfOpen),
            (127, Success, Closed),
        ]);
    }

    #[test]
    fn an_abandoned_trial_frees_the_next_one() {
        check(&[
            (0, Failure, Closed),
            (0, Failure, Closed),
            (0, Failure, Open),
            (60, Step::Allow(Expect::Probe), HalfOpen),
            (61, Abandon, HalfOpen),
            (62, Step::Allow(Expect::Probe), HalfOpen),
            (63, Failure, Open),
        ]);
    }

    #[test]
    fn late_failures_of_earlier_deliveries_keep_the_open_period() {
        check(&[
            (0, Failure, Closed),
            (0, Failure, Closed),
            (10, Failure, Open),
            (50, Failure, Open),
            (70, Step::Allow(Expect::Probe), HalfOpen),
        ]);
    }

    #[test]
    fn gauge_values_and_a_zero_threshold() {
        assert_eq!(
            [Closed, Open, HalfOpen].map(BreakerState::gauge_value),
            [0, 1, 2]
        );
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new(0, OPEN_FOR);
        breaker.on_failure(t0);
        assert_eq!(breaker.state(t0), Open, "threshold 0 acts as 1");
        assert_eq!(breaker.n_failures(), 1);
    }
}
