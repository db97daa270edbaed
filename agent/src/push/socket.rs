//! Newline-delimited events on a Unix socket, applied per line, fire-and-forget like statsd.
//!
//! A good line gets no answer. A bad line gets `{"error":"line N: ..."}` (N counts every line of
//! the connection from 1) and the connection continues. A client that half-closes its side gets
//! `{"accepted":N,"rejected":M}` before the agent closes. Replies are written without waiting: a
//! client that never reads cannot stall the agent, and replies beyond [`MAX_PENDING_REPLIES`]
//! bytes are dropped (the summary still counts them).
//!
//! Log lines are queued for the journal after each read's metric events are applied (reading
//! waits while the log batcher is behind). While monitoring is paused they are dropped, and the
//! summary counts them as `"dropped"` (present only when some were).
//!
//! Bounded: lines longer than [`MAX_LINE_BYTES`] are refused and skipped, and at most
//! [`MAX_SOCKET_CONNECTIONS`] connections are served at once (more wait to be accepted).

use std::{
    io,
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use aisemble_shared::wire::LogEntry;
use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::Semaphore,
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, debug_span, warn};

use super::{Aggregator, MAX_LINE_BYTES, MAX_SOCKET_CONNECTIONS, event, lock};
use crate::{
    logs::{Handed, LogSender},
    status::now_ms,
};

/// Bytes read at a time.
const READ_CHUNK: usize = 16 << 10;

/// Replies held for a client that does not read them.
pub(crate) const MAX_PENDING_REPLIES: usize = 64 << 10;

/// How long the final summary may take to write.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound socket; its file is removed when this is dropped.
#[derive(Debug)]
pub(crate) struct SocketListener {
    listener: UnixListener,
    file: SocketFile,
}

impl SocketListener {
    /// Binds `path` with mode 0660, replacing a stale socket file left by a previous run.
    pub(crate) async fn bind(path: &Path) -> anyhow::Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                anyhow::ensure!(
                    meta.file_type().is_socket(),
                    "the path exists and is not a socket; remove it or choose another push.socket"
                );
                anyhow::ensure!(
                    UnixStream::connect(path).await.is_err(),
                    "another process is listening on it; stop it or choose another push.socket"
                );
                std::fs::remove_file(path).context("removing the stale socket file")?;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).context("inspecting the path"),
        }
        let listener = UnixListener::bind(path)?;
        let file = SocketFile(path.to_owned());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .context("setting the socket's mode to 0660")?;
        Ok(Self { listener, file })
    }

    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.file.0
    }

    /// Accepts and serves connections until `shutdown`, then closes them and removes the file.
    pub(crate) async fn serve(
        self,
        aggregator: Arc<Mutex<Aggregator>>,
        logs: LogSender,
        shutdown: CancellationToken,
    ) {
        let permits = Arc::new(Semaphore::new(MAX_SOCKET_CONNECTIONS));
        let mut connections = JoinSet::new();
        let mut n_connections = 0u64;
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => permit,
                () = shutdown.cancelled() => break,
            };
            // The semaphore is never closed.
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, usually: wait instead of spinning.
                    warn!(%error, "Accepting a push socket connection failed; retrying.");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            };
            n_connections += 1;
            let aggregator = Arc::clone(&aggregator);
            let logs = logs.clone();
            let shutdown = shutdown.clone();
            let span = debug_span!("push_connection", connection = n_connections);
            connections.spawn(
                async move {
                    tokio::select! {
                        result = serve_connection(stream, &aggregator, &logs) => {
                            if let Err(error) = result {
                                debug!(%error, "Push socket connection ended.");
                            }
                        }
                        () = shutdown.cancelled() => {}
                    }
                    drop(permit);
                }
                .instrument(span),
            );
            while connections.try_join_next().is_some() {}
        }
        connections.join_all().await;
        drop(self);
    }
}

/// Removes the socket file on drop.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One connection's state.
#[derive(Debug, Default)]
struct Connection {
    /// Lines read so far (blank ones too).
    n_lines: u64,
    n_accepted: u64,
    n_rejected: u64,
    /// Log lines dropped while monitoring was paused.
    n_dropped: u64,
    /// In the middle of an over-long line: discard up to the next newline.
    skipping: bool,
    /// Replies not yet written.
    replies: Vec<u8>,
}

async fn serve_connection(
    mut stream: UnixStream,
    aggregator: &Mutex<Aggregator>,
    logs: &LogSender,
) -> io::Result<()> {
    let mut conn = Connection::default();
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            break;
        }
        let mut start = 0;
        if conn.skipping {
            match buf.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    conn.skipping = false;
                    start = end + 1;
                }
                None => buf.clear(),
            }
        }
        if let Some(end) = buf[start..].iter().rposition(|b| *b == b'\n') {
            let end = start + end;
            let lines = conn.apply_lines(&buf[start..end], aggregator);
            conn.send_logs(lines, aggregator, logs).await;
            start = end + 1;
        }
        buf.drain(..start);
        if buf.capacity() > 2 * READ_CHUNK && buf.len() < READ_CHUNK / 2 {
            // After a long line: give the memory back.
            buf.shrink_to(READ_CHUNK);
        }
        if buf.len() > MAX_LINE_BYTES {
            conn.n_lines += 1;
            conn.refuse(format!("longer than {MAX_LINE_BYTES} bytes"));
            lock(aggregator).count_rejected(1);
            conn.skipping = true;
            buf.clear();
        }
        conn.write_replies(&stream)?;
    }
    // The client half-closed: apply a last line without its newline, then answer and close.
    if !conn.skipping && !buf.is_empty() {
        let lines = conn.apply_lines(&buf, aggregator);
        conn.send_logs(lines, aggregator, logs).await;
    }
    let mut summary = serde_json::json!({
        "accepted": conn.n_accepted,
        "rejected": conn.n_rejected,
    });
    if conn.n_dropped > 0 {
        summary["dropped"] = conn.n_dropped.into();
    }
    conn.replies
        .extend_from_slice(summary.to_string().as_bytes());
    conn.replies.push(b'\n');
    let write = async {
        stream.write_all(&conn.replies).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(SUMMARY_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

impl Connection {
    /// Parses `lines` (newline-separated, without the last newline), then applies the good metric
    /// events under one lock, each on its own; returns the good log lines.
    fn apply_lines(&mut self, lines: &[u8], aggregator: &Mutex<Aggregator>) -> Vec<LogEntry> {
        let received_ms = now_ms();
        let mut events = Vec::new();
        let mut log_lines = Vec::new();
        let mut n_bad = 0;
        for line in lines.split(|b| *b == b'\n') {
            self.n_lines += 1;
            if line.len() > MAX_LINE_BYTES {
                n_bad += 1;
                self.refuse(format!("longer than {MAX_LINE_BYTES} bytes"));
                continue;
            }
            match event::parse_line(line) {
                Ok(Some(event::Pushed::Metric(event))) => events.push((self.n_lines, event)),
                Ok(Some(event::Pushed::Log(line))) => log_lines.push(line.into_entry(received_ms)),
                Ok(None) => {}
                Err(message) => {
                    n_bad += 1;
                    self.refuse(message);
                }
            }
        }
        let mut refused = Vec::new();
        {
            let mut aggregator = lock(aggregator);
            aggregator.count_rejected(n_bad);
            for (line_no, event) in &events {
                match aggregator.apply_one(event) {
                    Ok(()) => self.n_accepted += 1,
                    Err(refusal) => refused.push((*line_no, refusal)),
                }
            }
        }
        for (line_no, refusal) in refused {
            self.refuse_line(line_no, refusal.to_string());
        }
        log_lines
    }

    /// Queues good log lines for the journal.
    async fn send_logs(
        &mut self,
        lines: Vec<LogEntry>,
        aggregator: &Mutex<Aggregator>,
        logs: &LogSender,
    ) {
        let n_lines = lines.len() as u64;
        if n_lines == 0 {
            return;
        }
        match logs.send(lines).await {
            Handed::Queued => {
                self.n_accepted += n_lines;
                lock(aggregator).count_accepted(n_lines);
            }
            Handed::Paused => self.n_dropped += n_lines,
            Handed::Stopping => {
                self.n_rejected += n_lines;
                lock(aggregator).count_rejected(n_lines);
            }
        }
    }

    /// Refuses the current line.
    fn refuse(&mut self, message: String) {
        self.refuse_line(self.n_lines, message);
    }

    fn refuse_line(&mut self, line_no: u64, message: String) {
        self.n_rejected += 1;
        if self.replies.len() < MAX_PENDING_REPLIES {
            let reply = serde_json::json!({ "error": format!("line {line_no}: {message}") });
            self.replies.extend_from_slice(reply.to_string().as_bytes());
            self.replies.push(b'\n');
        }
    }

    /// Writes what the socket takes now, without waiting.
    fn write_replies(&mut self, stream: &UnixStream) -> io::Result<()> {
        let mut written = 0;
        while written < self.replies.len() {
            match stream.try_write(&self.replies[written..]) {
                Ok(n) => written += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        self.replies.drain(..written);
        Ok(())
    }
}
