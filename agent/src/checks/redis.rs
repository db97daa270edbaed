//! `kind = "redis"`: up when `PING` answers `PONG`; then `INFO` gives `used_memory`, `maxmemory`
//! and `connected_clients` as series of their own.
//!
//! Each run opens its own connection (a check must notice a server that restarted or stopped), so
//! `AUTH` and `SELECT` from the URL happen at every run, in the crate. The crate's own connect and
//! response timeouts are off: the run's timeout covers the whole exchange. An `INFO` that fails
//! (renamed by the operator, say) leaves the figures out but does not fail the check: `PING` is
//! what readiness means.

use aisemble_shared::metrics;
use tracing::debug;

use super::{CheckError, io_error, state::Detail};

/// A checked `redis` target.
#[derive(Debug, Clone)]
pub(super) struct RedisTarget {
    /// Parsed from the URL; its `Debug` hides the password.
    pub(super) client: ::redis::Client,
}

impl RedisTarget {
    /// Connects, sends `PING` and `INFO`.
    pub(super) async fn probe(&self, details: &mut Vec<Detail>) -> Result<(), CheckError> {
        let config = ::redis::AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(error)?;
        let pong: String = ::redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(error)?;
        if pong != "PONG" {
            return Err(CheckError::Failed(format!(
                "PING answered {pong:?}, expected \"PONG\""
            )));
        }
        match ::redis::cmd("INFO")
            .query_async::<String>(&mut connection)
            .await
        {
            Ok(info) => details.extend(info_details(&info)),
            Err(error) => debug!(%error, "Redis INFO failed; its figures are left out."),
        }
        Ok(())
    }
}

/// The figures of an `INFO` reply (`key:value` lines) that become series.
pub(super) fn info_details(info: &str) -> Vec<Detail> {
    let wanted = [
        ("used_memory", metrics::CHECK_REDIS_USED_MEMORY_BYTES),
        ("maxmemory", metrics::CHECK_REDIS_MAXMEMORY_BYTES),
        ("connected_clients", metrics::CHECK_REDIS_CONNECTED_CLIENTS),
    ];
    let mut details = Vec::with_capacity(wanted.len());
    for line in info.lines() {
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let Some(&(_, name)) = wanted.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        if let Ok(value) = value.trim().parse::<f64>() {
            details.push(Detail { name, value });
        }
    }
    details
}

/// The error text of a failed connect or command.
fn error(error: ::redis::RedisError) -> CheckError {
    if let Some(io) = super::find_io(&error) {
        return io_error(io);
    }
    if error.is_connection_refusal() {
        return CheckError::Refused;
    }
    // The crate words a refused AUTH as "Password authentication failed - AuthenticationFailed".
    if error.kind() == ::redis::ErrorKind::AuthenticationFailed {
        return CheckError::Failed(match error.detail() {
            Some(detail) => format!("authentication failed: {detail}"),
            None => "authentication failed".to_owned(),
        });
    }
    CheckError::Failed(error.to_string())
}
