//! Scheduled sources (health checks, scrape targets): their interval and timeout, with one set of
//! defaults and limits so both read and fail the same way, and [`spawn_each`], which runs one task
//! per source.

use std::{future::Future, time::Duration};

use aisemble_shared::units::HumanDuration;
use tokio::task::{JoinHandle, JoinSet};
use tracing::error;

/// Timeout when none is configured (capped at the interval).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `run(source)` as a task of its own for each of `sources` (so a hung one delays no other);
/// the returned task ends once all of them have. A task that panics is logged, naming `what`
/// (`check`, `scrape`), and the others go on.
pub fn spawn_each<T, F>(
    sources: Vec<T>,
    what: &'static str,
    mut run: impl FnMut(T) -> F + Send + 'static,
) -> JoinHandle<()>
where
    T: Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        for source in sources {
            tasks.spawn(run(source));
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                error!(%error, source = what, "Source task failed.");
            }
        }
    })
}

/// A configured interval or timeout that cannot be used: the key (`interval` or `timeout`), what
/// is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    /// `interval` or `timeout`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: &'static str,
}

/// Resolves `interval` (default `default_interval`, at least `min_interval`, never zero) and
/// `timeout` (default [`DEFAULT_TIMEOUT`] capped at the interval; never zero, at most the
/// interval).
///
/// # Errors
/// The first unusable value.
pub fn resolve(
    interval: Option<HumanDuration>,
    timeout: Option<HumanDuration>,
    default_interval: Duration,
    min_interval: Duration,
) -> Result<(Duration, Duration), ScheduleError> {
    let error = |key, message: String, hint| Err(ScheduleError { key, message, hint });
    let interval = interval.map_or(default_interval, |d| d.0);
    if interval.is_zero() {
        return error(
            "interval",
            "is zero".into(),
            "write a duration like \"10s\"",
        );
    }
    if interval < min_interval {
        return error(
            "interval",
            format!(
                "{} is shorter than {}",
                HumanDuration(interval),
                HumanDuration(min_interval)
            ),
            "write a duration like \"10s\"",
        );
    }
    let timeout = match timeout {
        None => DEFAULT_TIMEOUT.min(interval),
        Some(timeout) if timeout.0.is_zero() => {
            return error("timeout", "is zero".into(), "write a duration like \"2s\"");
        }
        Some(timeout) if timeout.0 > interval => {
            return error(
                "timeout",
                format!(
                    "{timeout} is longer than the interval, {}",
                    HumanDuration(interval)
                ),
                "make the timeout at most the interval",
            );
        }
        Some(timeout) => timeout.0,
    };
    Ok((interval, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);

    fn d(s: u64) -> Option<HumanDuration> {
        Some(HumanDuration::from_secs(s))
    }

    #[test]
    fn defaults_and_limits() {
        let ten = Duration::from_secs(10);
        assert_eq!(resolve(None, None, ten, MIN), Ok((ten, DEFAULT_TIMEOUT)));
        assert_eq!(
            resolve(d(2), None, ten, MIN),
            Ok((Duration::from_secs(2), Duration::from_secs(2))),
            "the default timeout is capped at the interval"
        );
        assert_eq!(
            resolve(d(1), d(2), ten, MIN).map_err(|e| e.key),
            Err("timeout")
        );
        assert_eq!(
            resolve(d(0), None, ten, MIN).map_err(|e| e.message),
            Err("is zero".into())
        );
        assert_eq!(
            resolve(None, d(0), ten, MIN).map_err(|e| e.key),
            Err("timeout")
        );
        let short = Some(HumanDuration(Duration::from_millis(50)));
        assert_eq!(
            resolve(short, None, ten, MIN).map_err(|e| e.key),
            Err("interval")
        );
    }
}
