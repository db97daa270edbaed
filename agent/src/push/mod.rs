//! The local push endpoint: applications report inference and request events over loopback HTTP
//! or a Unix socket; the agent aggregates them into counters and histograms and journals series
//! at each collection tick, never one record per event. Log events (`"type":"log"`) are not
//! aggregated: each is a log line, handed to the log batcher (`crate::logs`), which journals them
//! in batches with file lines.
//!
//! - `event.rs`: the event format, parsed from bytes with borrowed strings and checked once.
//! - `aggregate.rs`: the pure [`Aggregator`] (cumulative counters, gauges, histograms), bounded
//!   by `max_keys`.
//! - `http.rs`: `POST /v1/events` (one object, an array, or NDJSON; atomic per body) and
//!   `GET /health`, on a loopback address only: the endpoint has no authentication.
//! - `socket.rs`: newline-delimited events on a Unix socket, applied per line.
//!
//! Bodies and lines are parsed before the aggregator's lock is taken; the lock is then held once
//! per body (or per read of socket lines) and never across an `.await`. [`PushCollector`] copies
//! the values under the lock and builds samples after releasing it.
//!
//! `aisemble_agent_push_events_total{result="rejected"}` counts events not applied: each bad
//! socket line; for a refused HTTP body, the events read up to and including the bad one (reading
//! stops there), or all of them when a new key would exceed `max_keys`; 1 for a body over
//! `max_body`; log events the stopping agent no longer takes. `result="accepted"` counts metric
//! events applied and log events queued for the journal. Log events dropped while monitoring is
//! paused are neither: `aisemble_agent_log_lines_dropped_total{reason="paused"}` counts them.
//!
//! Bounded memory: `max_keys` keys; at most 4 HTTP bodies buffered at once, 64 HTTP and 64 socket
//! connections, idle HTTP connections closed after 30 s, socket lines of at most 64 KiB.

mod aggregate;
mod event;
mod http;
mod socket;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use aisemble_shared::{
    config::{ConfigError, PushSection},
    wire::Sample,
};
use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    collect::{CollectError, Collector},
    logs::LogSender,
};

pub use aggregate::{Aggregator, BUCKETS};
pub use event::{MAX_LABEL_BYTES, MAX_MESSAGE_BYTES};

/// Default `push.max_keys`.
pub const DEFAULT_MAX_KEYS: usize = 1000;

/// Default `push.max_body`: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 << 20;

/// Longest line accepted on the Unix socket.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// Most Unix socket connections served at once; further clients wait to be accepted.
pub const MAX_SOCKET_CONNECTIONS: usize = 64;

/// Checked `[push]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSettings {
    /// Loopback HTTP address.
    pub listen: Option<SocketAddr>,
    /// Unix socket path (absolute, or relative to the working directory).
    pub socket: Option<PathBuf>,
    /// Most distinct keys kept.
    pub max_keys: usize,
    /// Largest accepted HTTP body, in bytes.
    pub max_body: usize,
}

impl PushSettings {
    /// Checks `[push]`; `None` when neither `listen` nor `socket` is set. A relative `socket` is
    /// relative to the config file's directory.
    ///
    /// # Errors
    /// A one-line error naming the key and the fix.
    pub fn from_config(path: &Path, section: &PushSection) -> Result<Option<Self>, ConfigError> {
        if section.listen.is_none() && section.socket.is_none() {
            return Ok(None);
        }
        let error = |key: &str, message: String, hint: &str| {
            ConfigError::new(path, Some(key), message, hint)
        };
        let listen = match &section.listen {
            None => None,
            Some(listen) => Some(parse_loopback(listen).map_err(|message| {
                error(
                    "push.listen",
                    message,
                    "use a loopback address such as \"127.0.0.1:9465\" or \"[::1]:9465\" \
                     (the endpoint has no authentication), or a Unix socket (push.socket)",
                )
            })?),
        };
        let socket = section.socket.as_ref().map(|socket| {
            if socket.is_absolute() {
                socket.clone()
            } else {
                path.parent().unwrap_or(Path::new(".")).join(socket)
            }
        });
        let max_keys = section.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if max_keys == 0 {
            return Err(error(
                "push.max_keys",
                "must be at least 1".into(),
                "remove it for the default (1000)",
            ));
        }
        let max_body = match section.max_body {
            None => DEFAULT_MAX_BODY,
            Some(size) => usize::try_from(size.0)
                .ok()
                .filter(|bytes| (1024..=1 << 30).contains(bytes))
                .ok_or_else(|| {
                    error(
                        "push.max_body",
                        format!("{size} is outside 1KiB..1GiB"),
                        "remove it for the default (\"4MiB\")",
                    )
                })?,
        };
        Ok(Some(Self {
            listen,
            socket,
            max_keys,
            max_body,
        }))
    }
}

/// Parses `HOST:PORT` with a loopback IP or `localhost` as the host.
fn parse_loopback(listen: &str) -> Result<SocketAddr, String> {
    let listen = listen.trim();
    let addr = match listen.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => match listen.rsplit_once(':') {
            Some(("localhost", port)) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("{listen:?} has no valid port"))?;
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            }
            _ => return Err(format!("{listen:?} is not IP:PORT")),
        },
    };
    if !addr.ip().is_loopback() {
        return Err(format!("{listen:?} is not a loopback address"));
    }
    Ok(addr)
}

/// Emits the aggregator's series at each collection tick.
#[derive(Debug)]
pub struct PushCollector {
    aggregator: Arc<Mutex<Aggregator>>,
}

impl PushCollector {
    /// A collector over `aggregator`.
    pub fn new(aggregator: Arc<Mutex<Aggregator>>) -> Self {
        Self { aggregator }
    }
}

impl Collector for PushCollector {
    fn name(&self) -> &'static str {
        "push"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        // Copy under the lock, build samples (many small allocations) after releasing it.
        let snapshot = lock(&self.aggregator).snapshot();
        snapshot.write_samples(out);
        Ok(())
    }
}

/// Serves the push endpoints until `shutdown`.
///
/// # Errors
/// When a listener cannot be bound.
///
/// # Cancel safety
/// Stop it through `shutdown`, which also removes the socket file. Dropping the future closes the
/// listeners and socket connections and removes the socket file too; HTTP connections already
/// accepted then live until their client closes them or they idle out.
pub async fn serve(
    settings: PushSettings,
    aggregator: Arc<Mutex<Aggregator>>,
    logs: LogSender,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    bind(&settings)
        .await?
        .serve(aggregator, logs, shutdown)
        .await;
    Ok(())
}

/// Binds the configured listeners (so that a caller can learn the HTTP port when it asked for
/// port 0).
///
/// # Errors
/// When the address is taken, the socket path is in use or not a socket, or its directory is
/// missing.
///
/// # Cancel safety
/// Dropping the future closes whatever it had bound (and removes a socket file it created).
pub async fn bind(settings: &PushSettings) -> anyhow::Result<Listeners> {
    let http = match settings.listen {
        None => None,
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the push endpoint to {addr}"))?,
        ),
    };
    let socket = match &settings.socket {
        None => None,
        Some(path) => Some(
            socket::SocketListener::bind(path)
                .await
                .with_context(|| format!("binding the push socket {}", path.display()))?,
        ),
    };
    Ok(Listeners {
        http,
        socket,
        max_body: settings.max_body,
        http_limits: http::Limits::default(),
    })
}

/// Bound push listeners, not yet serving.
#[derive(Debug)]
pub struct Listeners {
    http: Option<tokio::net::TcpListener>,
    socket: Option<socket::SocketListener>,
    max_body: usize,
    http_limits: http::Limits,
}

impl Listeners {
    /// The bound HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown`: stops accepting, closes idle HTTP connections, finishes requests
    /// in progress, closes socket connections and removes the socket file.
    ///
    /// # Cancel safety
    /// As [`serve`].
    pub async fn serve(
        self,
        aggregator: Arc<Mutex<Aggregator>>,
        logs: LogSender,
        shutdown: CancellationToken,
    ) {
        let http_addr = self.http_addr();
        let socket_path = self.socket.as_ref().map(|s| s.path().to_owned());
        info!(http = ?http_addr, socket = ?socket_path, "Push endpoint listening.");
        let http = async {
            if let Some(listener) = self.http {
                let aggregator = Arc::clone(&aggregator);
                let (max_body, limits) = (self.max_body, self.http_limits);
                let logs = logs.clone();
                http::serve(
                    listener,
                    aggregator,
                    logs,
                    max_body,
                    limits,
                    shutdown.clone(),
                )
                .await;
            }
        };
        let socket = async {
            if let Some(listener) = self.socket {
                listener
                    .serve(Arc::clone(&aggregator), logs.clone(), shutdown.clone())
                    .await;
            }
        };
        tokio::join!(http, socket);
        info!("Push endpoint stopped.");
    }
}

/// Locks the aggregator. A panic while it was held leaves counts that are at worst partly
/// applied, which is better than losing the endpoint.
fn lock(aggregator: &Mutex<Aggregator>) -> std::sync::MutexGuard<'_, Aggregator> {
    aggregator.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
