//! `POST /v1/events` and `GET /health` on the loopback listener.
//!
//! A body is one JSON object, a JSON array of objects, or NDJSON (Content-Type
//! `application/x-ndjson`, or any body not starting with `[`). It is applied whole or not at all:
//! the first bad event refuses the body with 400 naming its 1-based index and the field. Bodies
//! larger than `max_body` get 413.
//!
//! Metric events are applied to the aggregator; log events are then queued for the journal (the
//! answer waits while the log batcher is behind). While monitoring is paused, log events are
//! dropped: the answer says how many (`"dropped"`), and metric events in the body still count. A
//! stopping agent answers 503.
//!
//! Bounded: at most [`MAX_BODIES_IN_FLIGHT`] bodies are buffered at once, and at most
//! [`MAX_HTTP_CONNECTIONS`] connections are served (more wait to be accepted). A connection that
//! sends nothing for [`IDLE_TIMEOUT`] is closed, so idle keep-alive connections cannot hold every
//! slot. Reads are at most [`MAX_READ`] bytes, which keeps hyper's adaptive read buffer at about
//! 32 KiB per connection instead of growing towards 400 KiB (measured with 64 clients posting
//! 120 KiB bodies: ~280 KiB per connection without the cap).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, Request, State,
        rejection::{BytesRejection, FailedToBufferBody},
    },
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Aggregator, event, lock};
use crate::{
    logs::{Handed, LogSender},
    status::now_ms,
};

/// Bodies buffered and parsed at once.
pub(crate) const MAX_BODIES_IN_FLIGHT: usize = 4;

/// Connections served at once.
pub(crate) const MAX_HTTP_CONNECTIONS: usize = 64;

/// A connection that sends nothing for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest read from a connection. hyper's read buffer grows while reads fill it, up to ~400 KiB
/// per connection; reads of at most 16 KiB keep it at ~32 KiB.
const MAX_READ: usize = 16 << 10;

/// Connection limits (constants in production, small in tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// Closes a connection that sends nothing for this long.
    pub(crate) idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_HTTP_CONNECTIONS,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Shared by the handlers.
#[derive(Clone, Debug)]
struct AppState {
    aggregator: Arc<Mutex<Aggregator>>,
    logs: LogSender,
    max_body: usize,
    bodies: Arc<Semaphore>,
}

/// Serves HTTP on `listener` until `shutdown`, then lets requests in progress finish.
pub(crate) async fn serve(
    listener: TcpListener,
    aggregator: Arc<Mutex<Aggregator>>,
    logs: LogSender,
    max_body: usize,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let app = router(aggregator, logs, max_body);
    let listener = LimitedListener {
        inner: listener,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        idle_timeout: limits.idle_timeout,
    };
    // axum's serve only returns after the signal.
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
}

/// The push endpoint's routes.
fn router(aggregator: Arc<Mutex<Aggregator>>, logs: LogSender, max_body: usize) -> Router {
    let state = AppState {
        aggregator,
        logs,
        max_body,
        bodies: Arc::new(Semaphore::new(MAX_BODIES_IN_FLIGHT)),
    };
    Router::new()
        .route(
            "/v1/events",
            post(post_events)
                // Runs before the body is buffered by the handler's extractor.
                .layer(middleware::from_fn_with_state(state.clone(), limit_bodies)),
        )
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Errors of the push endpoint; all are the client's.
#[derive(Debug)]
enum PushError {
    /// The body is over `push.max_body`.
    TooLarge(usize),
    /// The body could not be read.
    Read(String),
    /// An event is bad, or would exceed `push.max_keys`.
    Invalid(String),
    /// The agent is stopping and takes no more log lines.
    Stopping,
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::TooLarge(max_body) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body larger than push.max_body ({max_body} bytes); send smaller batches \
                     or raise push.max_body"
                ),
            ),
            Self::Read(message) => (StatusCode::BAD_REQUEST, message),
            Self::Invalid(message) => (StatusCode::BAD_REQUEST, message),
            Self::Stopping => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent is stopping; send the log events again once it is back".into(),
            ),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Holds one of the [`MAX_BODIES_IN_FLIGHT`] permits while the body is buffered and applied.
async fn limit_bodies(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // The semaphore is never closed.
    let _permit = state.bodies.acquire().await;
    next.run(request).await
}

async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, PushError> {
    let body = match body {
        Ok(body) => body,
        Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
            lock(&state.aggregator).count_rejected(1);
            return Err(PushError::TooLarge(state.max_body));
        }
        Err(rejection) => return Err(PushError::Read(format!("reading the body: {rejection}"))),
    };
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/x-ndjson"));
    // Parse before taking the lock; apply under one lock.
    let pushed = match event::parse_body(&body, ndjson) {
        Ok(pushed) => pushed,
        Err(error) => {
            lock(&state.aggregator).count_rejected(error.n_read as u64 + 1);
            return Err(PushError::Invalid(error.to_string()));
        }
    };
    let n_events = pushed.len();
    let mut metrics = Vec::with_capacity(n_events);
    // The body index of each metric event, to name a refused one.
    let mut metric_idx = Vec::with_capacity(n_events);
    let mut lines = Vec::new();
    for (idx, item) in pushed.into_iter().enumerate() {
        match item {
            event::Pushed::Metric(event) => {
                metrics.push(event);
                metric_idx.push(idx);
            }
            event::Pushed::Log(line) => lines.push(line),
        }
    }
    let n_lines = lines.len() as u64;
    {
        let mut aggregator = lock(&state.aggregator);
        if let Err(refusal) = aggregator.apply_all(&metrics) {
            // The body is refused whole: its log events too.
            aggregator.count_rejected(n_lines);
            let idx = metric_idx.get(refusal.idx).copied().unwrap_or(refusal.idx);
            return Err(PushError::Invalid(format!("event {}: {refusal}", idx + 1)));
        }
    }
    if lines.is_empty() {
        return Ok(Json(serde_json::json!({ "accepted": n_events })));
    }
    let received_ms = now_ms();
    let entries = lines
        .into_iter()
        .map(|line| line.into_entry(received_ms))
        .collect();
    match state.logs.send(entries).await {
        Handed::Queued => {
            lock(&state.aggregator).count_accepted(n_lines);
            Ok(Json(serde_json::json!({ "accepted": n_events })))
        }
        Handed::Paused => Ok(Json(serde_json::json!({
            "accepted": metrics.len(),
            "dropped": n_lines,
            "warning": "monitoring is paused by the control plane; log lines are not collected",
        }))),
        Handed::Stopping => {
            lock(&state.aggregator).count_rejected(n_lines);
            Err(PushError::Stopping)
        }
    }
}

/// Accepts a connection only while fewer than the limit are open.
#[derive(Debug)]
struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            // The semaphore is never closed.
            return std::future::pending().await;
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let connection = LimitedConnection {
                        stream,
                        idle: Box::pin(tokio::time::sleep(self.idle_timeout)),
                        idle_timeout: self.idle_timeout,
                        _permit: permit,
                    };
                    return (connection, addr);
                }
                Err(error) => {
                    // Out of file descriptors, usually: wait instead of spinning.
                    warn!(%error, "Accepting a push HTTP connection failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding one of the listener's permits; it reads as closed (EOF) once the client
/// has sent nothing for the idle timeout.
#[derive(Debug)]
struct LimitedConnection {
    stream: TcpStream,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for LimitedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Small reads keep hyper's adaptive read buffer small (it grows while reads fill it).
        let dst = buf.initialize_unfilled_to(buf.remaining().min(MAX_READ));
        let mut limited = ReadBuf::new(dst);
        match Pin::new(&mut this.stream).poll_read(cx, &mut limited) {
            Poll::Ready(result) => {
                let n_read = limited.filled().len();
                buf.advance(n_read);
                let deadline = Instant::now() + this.idle_timeout;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(result)
            }
            // Idle too long: report end of stream, and hyper closes the connection.
            Poll::Pending if this.idle.as_mut().poll(cx).is_ready() => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
