//! One agent session: the opening exchange, then batches in, acknowledgements and commands out.
//!
//! ```text
//! agent: Hello ──► version checked (Refuse on mismatch) ──► Welcome { stored_upto, monitoring }
//! agent: Batch ──► decode + resolve series (blocking pool) ──► Store::submit ──► (durable) ──► Ack
//! ```
//!
//! Batches are pipelined: up to [`MAX_PENDING`] are committing while the next is decoded, and
//! acknowledgements go out in order as commits complete. A record at or below the agent's stored
//! watermark is never stored again. A bad frame closes this connection with a reason code and is
//! counted; it never affects other sessions. One session per agent: a new connection with the
//! same identity supersedes the old one, after the old one has finished its commits.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use aisemble_certs::tls::PeerIdentity;
use aisemble_shared::{
    codec::{self, CodecError, FrameDecoder},
    wire::{
        AgentMessage, Batch, ControlMessage, Hello, MonitoringState, Refuse, RefuseCode, Welcome,
        close_code,
    },
};
use futures_util::{StreamExt as _, stream::FuturesOrdered};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::IngestContext;
use crate::{
    registry::LiveSession,
    store::{CommitBatch, CommitOutcome, SeriesResolver, StoreError, WalEntry, now_ms},
    telemetry::reject,
};

/// Batches committing at once per session.
pub const MAX_PENDING: usize = 4;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const SUPERSEDE_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CHUNK: usize = 256 << 10;

type Commit =
    Pin<Box<dyn Future<Output = Result<(u64, CommitOutcome, Instant), StoreError>> + Send>>;

/// How a session ended badly: the close code, the counted reason, and the log message.
#[derive(Debug)]
struct Failure {
    code: u32,
    reason: Option<&'static str>,
    message: String,
}

impl Failure {
    fn new(code: u32, reason: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    fn from_codec(error: &CodecError) -> Self {
        match error {
            CodecError::TooLarge { .. } => Self::new(
                close_code::FRAME_TOO_LARGE,
                Some(reject::FRAME_TOO_LARGE),
                error.to_string(),
            ),
            CodecError::UnsupportedVersion { .. } => Self::new(
                close_code::INCOMPATIBLE_VERSION,
                Some(reject::VERSION),
                error.to_string(),
            ),
            _ => Self::new(
                close_code::BAD_FRAME,
                Some(reject::BAD_FRAME),
                error.to_string(),
            ),
        }
    }
}

/// Runs a session to its end; never panics on peer input.
pub async fn run(
    connection: quinn::Connection,
    identity: PeerIdentity,
    context: Arc<IngestContext>,
) {
    let name = identity.name.to_string();
    let (commands_tx, commands) = mpsc::channel(16);
    let finished = CancellationToken::new();
    let _finished_guard = finished.clone().drop_guard();
    let (generation, previous) = context.registry.connect(&name, |generation| LiveSession {
        generation,
        serial: identity.serial.clone(),
        connection: connection.clone(),
        commands: commands_tx,
        finished: finished.clone(),
        connected_since_ms: now_ms(),
    });
    if let Some(previous) = previous {
        info!("A new connection supersedes the agent's previous one.");
        previous.connection.close(
            close_code::SUPERSEDED.into(),
            b"superseded by a newer connection",
        );
        // Its in-flight commits decide the watermark this session resumes from.
        if tokio::time::timeout(SUPERSEDE_TIMEOUT, previous.finished.cancelled())
            .await
            .is_err()
        {
            warn!("The superseded session did not finish in time.");
        }
    }

    let mut session = Session {
        name: name.clone(),
        identity,
        context: Arc::clone(&context),
        connection: connection.clone(),
    };
    match session.run(commands).await {
        Ok(()) => debug!("Session ended."),
        Err(failure) => {
            if let Some(reason) = failure.reason {
                context.telemetry.reject(reason);
            }
            warn!(reason = failure.reason.unwrap_or("connection"), error = %failure.message, "Session closed.");
            connection.close(failure.code.into(), failure.message.as_bytes());
        }
    }
    context.registry.disconnect(&name, generation);
}

struct Session {
    name: String,
    identity: PeerIdentity,
    context: Arc<IngestContext>,
    connection: quinn::Connection,
}

impl Session {
    async fn run(
        &mut self,
        mut commands: mpsc::Receiver<aisemble_shared::wire::Command>,
    ) -> Result<(), Failure> {
        let max_frame = self.context.max_frame_bytes;
        let (mut send, mut recv) =
            match tokio::time::timeout(HELLO_TIMEOUT, self.connection.accept_bi()).await {
                Err(_) => {
                    return Err(Failure::new(
                        close_code::TIMEOUT,
                        Some(reject::TIMEOUT),
                        "no stream opened in time",
                    ));
                }
                Ok(Err(error)) => {
                    return Err(Failure::new(
                        close_code::NORMAL,
                        None,
                        format!("connection: {error}"),
                    ));
                }
                Ok(Ok(streams)) => streams,
            };
        let mut decoder = FrameDecoder::new(max_frame);

        let body =
            match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut recv, &mut decoder)).await {
                Err(_) => {
                    return Err(Failure::new(
                        close_code::TIMEOUT,
                        Some(reject::TIMEOUT),
                        "no Hello in time",
                    ));
                }
                Ok(Err(failure)) => return Err(failure),
                Ok(Ok(None)) => {
                    return Err(Failure::new(
                        close_code::PROTOCOL_VIOLATION,
                        Some(reject::PROTOCOL),
                        "stream ended before Hello",
                    ));
                }
                Ok(Ok(Some(body))) => body,
            };
        let hello = match codec::decode_frame::<AgentMessage>(&body) {
            Ok(AgentMessage::Hello(hello)) => hello,
            Ok(_) => {
                self.refuse(
                    &mut send,
                    RefuseCode::ProtocolViolation,
                    "the first message must be Hello",
                )
                .await;
                return Err(Failure::new(
                    close_code::PROTOCOL_VIOLATION,
                    Some(reject::PROTOCOL),
                    "first message was not Hello",
                ));
            }
            Err(error @ CodecError::UnsupportedVersion { .. }) => {
                self.refuse(
                    &mut send,
                    RefuseCode::IncompatibleVersion,
                    &error.to_string(),
                )
                .await;
                return Err(Failure::from_codec(&error));
            }
            Err(error) => return Err(Failure::from_codec(&error)),
        };
        let mut next_new = self.welcome(&mut send, &hello).await?;
        let journal_id = hello.journal_id;

        let mut resolver = Some(self.context.store.resolver(&self.name));
        let mut pending: FuturesOrdered<Commit> = FuturesOrdered::new();
        let mut stream_done = false;
        loop {
            if stream_done && pending.is_empty() {
                return Ok(());
            }
            tokio::select! {
                biased;
                Some(done) = pending.next(), if !pending.is_empty() => {
                    let (upto, outcome, started) = done.map_err(|error| {
                        Failure::new(close_code::INTERNAL, None, format!("storing a batch failed: {error}"))
                    })?;
                    self.context.telemetry.ingest_samples.inc_by(outcome.appended);
                    self.context.telemetry.ingest_batches.inc();
                    if outcome.duplicates > 0 {
                        self.context.telemetry.ingest_rejected.with_label_values(&[reject::DUPLICATE]).inc_by(outcome.duplicates);
                    }
                    if outcome.out_of_order > 0 {
                        self.context.telemetry.ingest_rejected.with_label_values(&[reject::OUT_OF_ORDER]).inc_by(outcome.out_of_order);
                    }
                    write(&mut send, &ControlMessage::Ack(aisemble_shared::wire::Ack { upto }), max_frame).await?;
                    self.context.telemetry.ingest_commit_seconds.observe(started.elapsed().as_secs_f64());
                }
                Some(command) = commands.recv() => {
                    write(&mut send, &ControlMessage::Command(command), max_frame).await?;
                }
                frame = read_frame(&mut recv, &mut decoder), if !stream_done && pending.len() < MAX_PENDING => {
                    let Some(body) = frame? else {
                        // The agent finished its stream: acknowledge what is pending, then end.
                        stream_done = true;
                        continue;
                    };
                    match codec::decode_frame::<AgentMessage>(&body).map_err(|e| Failure::from_codec(&e))? {
                        AgentMessage::Batch(batch) => {
                            let started = Instant::now();
                            if let Some(commit) = self.batch(batch, journal_id, &mut next_new, &mut resolver).await? {
                                pending.push_back(Box::pin(async move {
                                    let (upto, pending) = commit;
                                    let outcome = match pending {
                                        Some(pending) => pending.wait().await?,
                                        None => CommitOutcome::default(),
                                    };
                                    Ok((upto, outcome, started))
                                }));
                            }
                        }
                        AgentMessage::Status(stats) => self.context.registry.seen(&self.name, stats),
                        AgentMessage::CommandResult(result) => match result.outcome {
                            Ok(detail) => info!(command = result.id, %detail, "Agent applied a command."),
                            Err(error) => warn!(command = result.id, %error, "Agent could not apply a command."),
                        },
                        AgentMessage::Hello(_) => {
                            return Err(Failure::new(close_code::PROTOCOL_VIOLATION, Some(reject::PROTOCOL), "second Hello"));
                        }
                        _ => {
                            return Err(Failure::new(close_code::PROTOCOL_VIOLATION, Some(reject::PROTOCOL), "unknown message"));
                        }
                    }
                }
            }
        }
    }

    /// Sends Welcome; returns the first sequence number that is new to the store.
    async fn welcome(&self, send: &mut quinn::SendStream, hello: &Hello) -> Result<u64, Failure> {
        let serial_hex = hex::encode(&self.identity.serial);
        let monitoring: MonitoringState =
            self.context.registry.hello(&self.name, hello, &serial_hex);
        // Sequence numbers are per journal: a new journal (reinstalled host) starts over.
        let stored = self
            .context
            .store
            .watermark(&self.name)
            .filter(|w| w.journal_id == hello.journal_id)
            .map(|w| w.upto);
        let welcome = ControlMessage::Welcome(Welcome {
            server_version: aisemble_shared::VERSION.to_owned(),
            agent_id: self.name.clone(),
            stored_upto: stored,
            monitoring,
            max_frame_bytes: self.context.max_frame_bytes,
        });
        write(send, &welcome, self.context.max_frame_bytes).await?;
        info!(
            version = %hello.agent_version,
            hostname = %hello.hostname,
            backlog = hello.buffer.records,
            stored_upto = stored.unwrap_or(0),
            "Agent connected."
        );
        Ok(stored.map_or(0, |s| s + 1))
    }

    /// Validates and decodes a batch and submits its new records. Returns the sequence number to
    /// acknowledge and the pending commit (none when every record was stored before).
    async fn batch(
        &self,
        batch: Batch,
        journal_id: u64,
        next_new: &mut u64,
        resolver: &mut Option<SeriesResolver>,
    ) -> Result<Option<(u64, Option<crate::store::PendingCommit>)>, Failure> {
        if batch.first_seq > batch.last_seq || batch.last_seq == 0 {
            return Err(Failure::new(
                close_code::PROTOCOL_VIOLATION,
                Some(reject::PROTOCOL),
                "batch with an empty sequence range",
            ));
        }
        self.context.registry.seen(&self.name, batch.buffer);
        if batch.last_seq < *next_new {
            // Sent again after a reconnect; already stored.
            return Ok(Some((batch.last_seq, None)));
        }
        let first_new = (*next_new).max(batch.first_seq);
        let Some(mut owned) = resolver.take() else {
            return Err(Failure::new(close_code::INTERNAL, None, "resolver lost"));
        };
        let Batch {
            first_seq,
            last_seq,
            compression,
            payload,
            ..
        } = batch;
        let decoded = tokio::task::spawn_blocking(move || {
            let decoded = owned.decode_batch(&payload, compression, first_seq, last_seq, first_new);
            (owned, decoded, payload)
        })
        .await;
        let (owned, decoded, payload) = decoded.map_err(|e| {
            Failure::new(close_code::INTERNAL, None, format!("decoder failed: {e}"))
        })?;
        *resolver = Some(owned);
        let decoded = decoded.map_err(|error| {
            Failure::new(
                close_code::BAD_FRAME,
                Some(reject::BAD_FRAME),
                error.to_string(),
            )
        })?;
        if decoded.invalid_samples > 0 {
            self.context
                .telemetry
                .ingest_rejected
                .with_label_values(&[reject::BAD_SAMPLE])
                .inc_by(decoded.invalid_samples);
        }
        let commit = CommitBatch {
            wal: WalEntry {
                agent: self.name.clone(),
                journal_id,
                first_new_seq: first_new,
                last_seq,
                compression,
                payload,
            },
            samples: decoded.samples,
            events: decoded.events,
            logs: decoded.logs,
        };
        let pending =
            self.context.store.submit(commit).await.map_err(|error| {
                Failure::new(close_code::SHUTTING_DOWN, None, error.to_string())
            })?;
        *next_new = last_seq + 1;
        Ok(Some((last_seq, Some(pending))))
    }

    async fn refuse(&self, send: &mut quinn::SendStream, code: RefuseCode, message: &str) {
        let refuse = ControlMessage::Refuse(Refuse {
            code,
            message: message.to_owned(),
        });
        if write(send, &refuse, self.context.max_frame_bytes)
            .await
            .is_ok()
        {
            let _ = send.finish();
            // Give the frame a moment to leave before the connection is closed.
            let _ = tokio::time::timeout(Duration::from_millis(200), send.stopped()).await;
        }
    }
}

async fn write(
    send: &mut quinn::SendStream,
    message: &ControlMessage,
    max_frame: u32,
) -> Result<(), Failure> {
    let frame = codec::encode_frame(message, max_frame)
        .map_err(|error| Failure::new(close_code::INTERNAL, None, error.to_string()))?;
    send.write_all(&frame)
        .await
        .map_err(|error| Failure::new(close_code::NORMAL, None, format!("sending: {error}")))
}

/// The next frame body, `None` at a clean end of stream. Cancel-safe: partial frames stay in
/// `decoder` and `read_chunk` is cancel-safe.
async fn read_frame(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<Option<bytes::Bytes>, Failure> {
    loop {
        if let Some(body) = decoder.next_frame().map_err(|e| Failure::from_codec(&e))? {
            return Ok(Some(body));
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => decoder.push(&chunk.bytes),
            Ok(None) if decoder.pending_bytes() == 0 => return Ok(None),
            Ok(None) => {
                return Err(Failure::new(
                    close_code::BAD_FRAME,
                    Some(reject::BAD_FRAME),
                    "stream ended inside a frame",
                ));
            }
            Err(quinn::ReadError::ConnectionLost(error)) => {
                return Err(Failure::new(
                    close_code::NORMAL,
                    None,
                    format!("connection lost: {error}"),
                ));
            }
            Err(error) => {
                return Err(Failure::new(
                    close_code::BAD_FRAME,
                    Some(reject::BAD_FRAME),
                    format!("reading: {error}"),
                ));
            }
        }
    }
}
