//! Health checks: each configured check runs on its own schedule with its own timeout; results
//! become `aisemble_check_*` samples and state changes become events, both journaled.
//!
//! Every `[[checks]]` entry is checked once (`spec.rs`, [`CheckSpec::from_config`]: the kind's
//! required keys, no keys of other kinds, timeout at most the interval) and then runs in its own
//! task ([`spawn_all`]), so a hung target delays no other check and never the agent. A run is
//! bounded by the check's timeout as a whole (connect, request, reading); the kinds are in their
//! own files (`http`, `tcp`, `postgres`, `redis`, `exec`) and only say up or down, with an error
//! text, plus a few kind-specific figures.
//!
//! Each run journals one `Record::Metrics`, every series labelled `check`, `kind` and the
//! configured labels:
//!
//! | series | value |
//! | --- | --- |
//! | `aisemble_check_up` | 1 when the run succeeded, else 0 |
//! | `aisemble_check_duration_seconds` | how long the run took |
//! | `aisemble_check_consecutive_failures` | failed runs in a row (0 when up) |
//! | `aisemble_check_http_status_code` | `http`: the response's status, when one came |
//! | `aisemble_check_redis_used_memory_bytes`, `_maxmemory_bytes`, `_connected_clients` | `redis`: from `INFO` |
//!
//! When the state changes (the first result, up to down, down to up) the run also journals a
//! `Record::Events` with a `CheckStateChange` carrying the failing run's error, and logs it (warn
//! when down, info when up). The rules live in the pure `state` core. Nothing runs while
//! monitoring is paused. This module never adds a `host` label (the control plane sets it).

mod exec;
mod http;
mod postgres;
mod redis;
mod spec;
mod state;
mod tcp;

use std::time::{Duration, Instant};

use aisemble_shared::{
    units::HumanDuration,
    wire::{Event, EventRecord, MetricRecord, MonitoringState, Record},
};
use tokio::{sync::watch, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::sink::RecordSink;

pub use self::spec::{CheckSpec, DEFAULT_TIMEOUT, MIN_INTERVAL};
use self::{
    exec::ExecTarget,
    http::HttpProbe,
    postgres::PostgresTarget,
    redis::RedisTarget,
    spec::Target,
    state::{CheckState, Detail, Observation, Outcome},
    tcp::TcpTarget,
};

/// Runs every check until `shutdown` (none while `monitoring` is paused), journaling results
/// through `sink`. The returned task ends once every check's task has stopped.
pub fn spawn_all(
    specs: Vec<CheckSpec>,
    sink: RecordSink,
    monitoring: watch::Receiver<MonitoringState>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    crate::schedule::spawn_each(specs, "check", move |spec| {
        let span = info_span!("check", check = %spec.name, kind = spec.kind());
        run_check(spec, sink.clone(), monitoring.clone(), shutdown.clone()).instrument(span)
    })
}

/// Why a run failed; its `Display` is the error text of events and logs.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    /// The run did not finish within the check's timeout.
    #[error("timed out after {}", HumanDuration(*.0))]
    TimedOut(Duration),
    /// Nothing listens at the target's address.
    #[error("connection refused")]
    Refused,
    /// The HTTP status is not the expected one.
    #[error("status {status}, expected {expected}")]
    Status {
        /// What came.
        status: u16,
        /// What was expected (`2xx` or a code).
        expected: String,
    },
    /// The HTTP body lacks the configured text.
    #[error("body does not contain {0:?}")]
    BodyMissing(String),
    /// The command exited with a non-zero code.
    #[error("exit code {code}{}", with_stderr(.stderr))]
    Exit {
        /// The exit code.
        code: i32,
        /// The first line of its stderr.
        stderr: String,
    },
    /// The command was killed by a signal.
    #[error("killed by {}{}", signal_name(*.signal), with_stderr(.stderr))]
    Signal {
        /// The signal, when known.
        signal: Option<i32>,
        /// The first line of its stderr.
        stderr: String,
    },
    /// The command could not be started.
    #[error("cannot run {program:?}: {error}")]
    Spawn {
        /// The program.
        program: String,
        /// Why not.
        error: String,
    },
    /// The check could not be set up (an HTTP client with an unreadable CA file).
    #[error("{0}")]
    Setup(String),
    /// Any other failure, in words.
    #[error("{0}")]
    Failed(String),
}

/// A check's task: runs it every interval until `shutdown`.
async fn run_check(
    spec: CheckSpec,
    sink: RecordSink,
    monitoring: watch::Receiver<MonitoringState>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(spec.interval);
    // A run that overran (it cannot: timeout <= interval, but the journal may be slow) does not
    // cause a burst of catch-up runs.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut runner = Runner::new(spec);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if *monitoring.borrow() == MonitoringState::Paused {
            continue;
        }
        let timestamp_ms = crate::status::now_ms();
        let observation = tokio::select! {
            () = shutdown.cancelled() => return,
            observation = runner.run_once() => observation,
        };
        let metrics = Record::Metrics(MetricRecord {
            timestamp_ms,
            samples: observation.samples,
        });
        if let Err(error) = sink.append(metrics).await {
            warn!(%error, "Journaling a check's result failed.");
        }
        if let Some(change) = observation.change {
            let events = Record::Events(EventRecord {
                timestamp_ms,
                events: vec![Event::CheckStateChanged(change)],
            });
            if let Err(error) = sink.append(events).await {
                warn!(%error, "Journaling a check's change of state failed.");
            }
        }
    }
}

/// One check, ready to run: its probe (with any client built once) and its history.
#[derive(Debug)]
struct Runner {
    timeout: Duration,
    probe: Probe,
    state: CheckState,
}

/// A target with what it needs at run time.
#[derive(Debug)]
enum Probe {
    Http(HttpProbe),
    Tcp(TcpTarget),
    Postgres(PostgresTarget),
    Redis(RedisTarget),
    Exec(ExecTarget),
}

impl Runner {
    fn new(spec: CheckSpec) -> Self {
        let state = CheckState::new(&spec.name, spec.kind(), &spec.labels);
        let probe = match spec.target {
            Target::Http(target) => Probe::Http(HttpProbe::new(target, spec.timeout)),
            Target::Tcp(target) => Probe::Tcp(target),
            Target::Postgres(target) => Probe::Postgres(target),
            Target::Redis(target) => Probe::Redis(target),
            Target::Exec(target) => Probe::Exec(target),
        };
        Self {
            timeout: spec.timeout,
            probe,
            state,
        }
    }

    /// Runs the check once (bounded by its timeout) and takes the outcome into its history;
    /// logs a change of state.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the run (a command is killed) and leaves the history as it
    /// was.
    async fn run_once(&mut self) -> Observation {
        let started = Instant::now();
        let mut details = Vec::new();
        let result = tokio::time::timeout(self.timeout, self.probe.run(&mut details))
            .await
            .unwrap_or(Err(CheckError::TimedOut(self.timeout)));
        let outcome = Outcome {
            duration: started.elapsed(),
            result,
            details,
        };
        let observation = self.state.observe(&outcome);
        match (&outcome.result, &observation.change) {
            (Err(error), Some(_)) => warn!(
                %error,
                consecutive_failures = self.state.consecutive_failures(),
                "Check is down."
            ),
            (Ok(()), Some(change)) => info!(
                was_up = ?change.was_up,
                duration = ?outcome.duration,
                "Check is up."
            ),
            (Err(error), None) => debug!(
                %error,
                consecutive_failures = self.state.consecutive_failures(),
                "Check still down."
            ),
            (Ok(()), None) => {}
        }
        observation
    }
}

impl Probe {
    async fn run(&self, details: &mut Vec<Detail>) -> Result<(), CheckError> {
        match self {
            Self::Http(probe) => probe.probe(details).await,
            Self::Tcp(target) => target.probe().await,
            Self::Postgres(target) => target.probe().await,
            Self::Redis(target) => target.probe(details).await,
            Self::Exec(target) => target.probe().await,
        }
    }
}

/// Finds the I/O error behind `error`, if any (connect errors are several layers deep).
fn find_io<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = error.source();
    }
    None
}

/// The error text of an I/O error, in plain words for the common network failures.
fn io_error(error: &std::io::Error) -> CheckError {
    use std::io::ErrorKind;
    let text = match error.kind() {
        ErrorKind::ConnectionRefused => return CheckError::Refused,
        ErrorKind::ConnectionReset => "connection reset by peer",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::HostUnreachable => "host unreachable",
        ErrorKind::NetworkUnreachable => "network unreachable",
        ErrorKind::AddrNotAvailable => "address not available",
        ErrorKind::UnexpectedEof => "connection closed by the server",
        _ => return CheckError::Failed(error.to_string()),
    };
    CheckError::Failed(text.to_owned())
}

/// The innermost cause of `error`: the useful part of a wrapped client error (the TLS or HTTP
/// problem, not the layers that carried it).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// `signal 9`, or `a signal` when the number is unknown.
fn signal_name(signal: Option<i32>) -> String {
    signal.map_or_else(|| "a signal".to_owned(), |s| format!("signal {s}"))
}

/// `": line"` when there is a stderr line to quote.
fn with_stderr(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

#[cfg(test)]
mod tests;
