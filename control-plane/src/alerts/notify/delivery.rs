//! The delivery driver for one integration: retries with exponential backoff and jitter within a
//! time budget, a [`CircuitBreaker`] per integration, one WARN log line per failed delivery, and
//! the notifier metrics (`aisemble_notifications_total`, `aisemble_notifications_failed_total`,
//! `aisemble_notification_latency_seconds`, `aisemble_notifier_circuit_state`).
//!
//! A delivery is one notification with all its attempts. Attempts stop at the first success, at
//! an error that is not retryable, or when the next attempt would start after the budget
//! ([`DeliveryPolicy::give_up_after`]); each attempt is cut off when the budget runs out. The
//! breaker counts deliveries, not attempts.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use backon::BackoffBuilder as _;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::time::Instant;

use super::{
    Notification, Notifier, NotifyError,
    breaker::{BreakerState, CircuitBreaker, Decision},
    config::{BuildContext, ReceiverConfig, build_with},
};

/// Timings of retries and of the circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Wait before the first retry; doubled for each further one (plus jitter). Default 500 ms.
    pub backoff_initial: Duration,
    /// Longest wait between two attempts. Default 30 s.
    pub backoff_max: Duration,
    /// Time budget of one delivery, all attempts included. Default 2 minutes.
    pub give_up_after: Duration,
    /// Consecutive failed deliveries that open the breaker. Default 5.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses deliveries before a trial. Default 60 s.
    pub breaker_open_for: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            give_up_after: Duration::from_secs(120),
            breaker_threshold: 5,
            breaker_open_for: Duration::from_secs(60),
        }
    }
}

/// The notifier metrics, registered once per registry and shared by every [`Delivery`].
#[derive(Debug, Clone)]
pub struct NotifierMetrics {
    /// Deliveries started (including those refused by an open breaker).
    pub notifications: IntCounterVec,
    /// Deliveries that failed (after all their attempts, or refused by an open breaker).
    pub notifications_failed: IntCounterVec,
    /// Duration of each attempt.
    pub latency_seconds: HistogramVec,
    /// Breaker state: 0 closed, 1 open, 2 half-open.
    pub circuit_state: IntGaugeVec,
}

impl NotifierMetrics {
    /// Creates the metrics and registers them on `registry`.
    ///
    /// # Errors
    /// When `registry` already holds metrics of these names.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = &["receiver", "integration"];
        let notifications = IntCounterVec::new(
            Opts::new(
                "aisemble_notifications_total",
                "Notifications the integration was asked to deliver.",
            ),
            labels,
        )?;
        let notifications_failed = IntCounterVec::new(
            Opts::new(
                "aisemble_notifications_failed_total",
                "Notifications not delivered: every attempt failed, or the circuit breaker was open.",
            ),
            labels,
        )?;
        let latency_seconds = HistogramVec::new(
            HistogramOpts::new(
                "aisemble_notification_latency_seconds",
                "Duration of each notification attempt.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            labels,
        )?;
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "aisemble_notifier_circuit_state",
                "Circuit breaker of the integration: 0 closed, 1 open, 2 half-open.",
            ),
            labels,
        )?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(notifications_failed.clone()))?;
        registry.register(Box::new(latency_seconds.clone()))?;
        registry.register(Box::new(circuit_state.clone()))?;
        Ok(Self {
            notifications,
            notifications_failed,
            latency_seconds,
            circuit_state,
        })
    }
}

/// One integration of one receiver with its retries, breaker and metrics.
#[derive(Debug)]
pub struct Delivery {
    receiver: String,
    integration: String,
    notifier: Arc<dyn Notifier>,
    policy: DeliveryPolicy,
    breaker: Mutex<CircuitBreaker>,
    metrics: Series,
}

/// The metric series of one integration.
#[derive(Debug)]
struct Series {
    notifications: prometheus::IntCounter,
    failed: prometheus::IntCounter,
    latency: prometheus::Histogram,
    state: prometheus::IntGauge,
}

impl Delivery {
    /// Wraps `notifier`, the integration named `integration` (e.g. `slack`) of `receiver`. Its
    /// series appear at once (counters 0, breaker closed).
    pub fn new(
        receiver: impl Into<String>,
        integration: impl Into<String>,
        notifier: Arc<dyn Notifier>,
        policy: DeliveryPolicy,
        metrics: &NotifierMetrics,
    ) -> Self {
        let (receiver, integration) = (receiver.into(), integration.into());
        let labels = [receiver.as_str(), integration.as_str()];
        let metrics_series = Series {
            notifications: metrics.notifications.with_label_values(&labels),
            failed: metrics.notifications_failed.with_label_values(&labels),
            latency: metrics.latency_seconds.with_label_values(&labels),
            state: metrics.circuit_state.with_label_values(&labels),
        };
        metrics_series.state.set(BreakerState::Closed.gauge_value());
        Self {
            breaker: Mutex::new(CircuitBreaker::new(
                policy.breaker_threshold,
                policy.breaker_open_for,
            )),
            receiver,
            integration,
            notifier,
            policy,
            metrics: metrics_series,
        }
    }

    /// The receiver's name.
    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// The integration's name (the `integration` label).
    pub fn integration(&self) -> &str {
        &self.integration
    }

    /// The breaker's state now.
    pub fn circuit_state(&self) -> BreakerState {
        self.lock_breaker().state(now())
    }

    /// Delivers `notification`, retrying within the policy's budget, unless the breaker is open.
    /// Logs one WARN when the delivery fails.
    ///
    /// # Errors
    /// [`NotifyError::CircuitOpen`] without trying when the breaker is open; else the last
    /// attempt's error.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the delivery; it then counts neither as success nor as
    /// failure (a trial delivery frees the trial for the next one).
    pub async fn deliver(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.metrics.notifications.inc();
        let decision = self.lock_breaker().allow(now());
        self.publish_state();
        if let Decision::Reject { retry_at } = decision {
            self.metrics.failed.inc();
            let error = NotifyError::CircuitOpen {
                retry_in: retry_at.map(|at| at.saturating_duration_since(now())),
            };
            tracing::warn!(
                receiver = %self.receiver,
                integration = %self.integration,
                group_key = %notification.group_key,
                %error,
                "Notification not delivered; circuit breaker open."
            );
            return Err(error);
        }
        let trial = TrialGuard {
            delivery: self,
            armed: decision == Decision::Probe,
        };
        let (result, n_attempts) = self.attempts(notification).await;
        trial.disarm();
        let state = {
            let mut breaker = self.lock_breaker();
            let now = now();
            match &result {
                Ok(()) => breaker.on_success(now),
                Err(_) => breaker.on_failure(now),
            }
            breaker.state(now)
        };
        self.metrics.state.set(state.gauge_value());
        match &result {
            Ok(()) if decision == Decision::Probe => tracing::info!(
                receiver = %self.receiver,
                integration = %self.integration,
                "Notifier recovered; circuit breaker closed."
            ),
            Ok(()) => {}
            Err(error) => {
                self.metrics.failed.inc();
                tracing::warn!(
                    receiver = %self.receiver,
                    integration = %self.integration,
                    group_key = %notification.group_key,
                    n_attempts,
                    circuit = state_name(state),
                    %error,
                    "Notification delivery failed."
                );
            }
        }
        result
    }

    /// Attempts until success, a permanent error or the end of the budget.
    async fn attempts(&self, notification: &Notification) -> (Result<(), NotifyError>, u32) {
        let start = Instant::now();
        // An absurd budget saturates at a year instead of overflowing.
        let deadline = start
            .checked_add(self.policy.give_up_after)
            .unwrap_or(start + Duration::from_secs(365 * 86_400));
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.policy.backoff_initial)
            .with_max_delay(self.policy.backoff_max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        let mut n_attempts = 0;
        let mut last_error = None;
        loop {
            n_attempts += 1;
            let started = Instant::now();
            let left = deadline.saturating_duration_since(started);
            let result = tokio::time::timeout(left, self.notifier.notify(notification)).await;
            self.metrics
                .latency
                .observe(started.elapsed().as_secs_f64());
            let error = match result {
                Ok(Ok(())) => return (Ok(()), n_attempts),
                Ok(Err(error)) if !error.retryable() => return (Err(error), n_attempts),
                Ok(Err(error)) => error,
                // Out of time: the previous attempt's error says more than "timed out".
                Err(_elapsed) => {
                    let error =
                        last_error.unwrap_or(NotifyError::Timeout(self.policy.give_up_after));
                    return (Err(error), n_attempts);
                }
            };
            // Jitter may take a delay past the maximum; the maximum stays the maximum.
            let delay = backoff
                .next()
                .unwrap_or(self.policy.backoff_max)
                .min(self.policy.backoff_max);
            if Instant::now() + delay >= deadline {
                return (Err(error), n_attempts);
            }
            tracing::debug!(
                receiver = %self.receiver,
                integration = %self.integration,
                attempt = n_attempts,
                retry_in = ?delay,
                %error,
                "Notification attempt failed; retrying."
            );
            last_error = Some(error);
            tokio::time::sleep(delay).await;
        }
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        // The breaker is plain data, consistent after any panic elsewhere.
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish_state(&self) {
        let state = self.lock_breaker().state(now());
        self.metrics.state.set(state.gauge_value());
    }
}

/// Builds every integration of `receiver` (see [`build_with`]) wrapped in a [`Delivery`]. The
/// integration label is the kind (`slack`, `email`, `webhook`, `alertmanager`), with `[i]`
/// appended for the i-th (i ≥ 1) integration of the same kind in the receiver: `slack`,
/// `slack[1]`.
///
/// # Errors
/// As [`build_with`].
pub fn deliveries(
    receiver: &ReceiverConfig,
    ctx: &BuildContext,
    policy: &DeliveryPolicy,
    metrics: &NotifierMetrics,
) -> Result<Vec<Delivery>, NotifyError> {
    let notifiers = build_with(receiver, ctx)?;
    let mut seen: Vec<&'static str> = Vec::new();
    Ok(notifiers
        .into_iter()
        .map(|notifier| {
            let kind = notifier.kind();
            let idx = seen.iter().filter(|k| **k == kind).count();
            seen.push(kind);
            let integration = if idx == 0 {
                kind.to_owned()
            } else {
                format!("{kind}[{idx}]")
            };
            Delivery::new(
                receiver.name.clone(),
                integration,
                notifier,
                policy.clone(),
                metrics,
            )
        })
        .collect())
}

/// Frees the trial of a half-open breaker when its delivery is dropped before an outcome.
struct TrialGuard<'a> {
    delivery: &'a Delivery,
    armed: bool,
}

impl TrialGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.delivery.lock_breaker().on_abandon(now());
            self.delivery.publish_state();
        }
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

fn state_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half-open",
    }
}
