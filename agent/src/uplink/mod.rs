//! The uplink: one mutually-authenticated QUIC connection to the control plane that streams the
//! journal and receives acknowledgements and commands.
//!
//! The driver here owns the sockets and timers; the decisions live in [`window::SendWindow`] and
//! the journal. It reconnects with exponential backoff and jitter, resumes after whatever the
//! control plane says it already stored, and after an outage sends the backlog as fast as the
//! window allows while the collector keeps appending new records behind it.

pub mod window;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use aisemble_shared::{
    codec::{self, DEFAULT_MAX_FRAME_BYTES, FrameDecoder},
    wire::{
        Action, AgentMessage, Batch, CommandResult, Compression, ControlMessage, Hello, Label,
        MonitoringState, RefuseCode, close_code,
    },
};
use backon::BackoffBuilder;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    journal::Journal,
    status::{ConnectionState, Status},
};
use window::{SendWindow, WindowError, WindowLimits};

/// How the uplink connects and batches.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// `HOST:PORT` of the control plane, resolved at every attempt.
    pub address: String,
    /// Name verified in the server certificate.
    pub server_name: String,
    /// TLS client configuration (our certificate, the CA).
    pub client: quinn::ClientConfig,
    /// Host name reported in Hello.
    pub hostname: String,
    /// Static labels reported in Hello.
    pub labels: Vec<Label>,
    /// In-flight limits.
    pub limits: WindowLimits,
    /// Most records per batch.
    pub batch_max_records: usize,
    /// About the most uncompressed record bytes per batch.
    pub batch_max_bytes: usize,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl UplinkConfig {
    /// Defaults for batching and backoff around a connection target.
    pub fn new(address: String, server_name: String, client: quinn::ClientConfig) -> Self {
        Self {
            address,
            server_name,
            client,
            hostname: sysinfo::System::host_name().unwrap_or_default(),
            labels: Vec::new(),
            limits: WindowLimits::default(),
            batch_max_records: 1024,
            batch_max_bytes: 1 << 20,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("resolving {address}: {reason}")]
    Resolve { address: String, reason: String },
    #[error("opening a local UDP socket: {0}")]
    Bind(std::io::Error),
    #[error("connecting: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("sending: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("receiving: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("bad frame from the control plane: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("the control plane closed the stream")]
    StreamEnded,
    #[error("refused by the control plane ({code:?}): {message}")]
    Refused { code: RefuseCode, message: String },
    #[error("protocol violation by the control plane: {0}")]
    Protocol(String),
    #[error("no Welcome within {0:?}")]
    WelcomeTimeout(Duration),
    #[error("journal: {0}")]
    Journal(String),
}

impl From<WindowError> for SessionError {
    fn from(error: WindowError) -> Self {
        Self::Protocol(error.to_string())
    }
}

/// Everything the uplink task needs.
#[derive(Debug)]
pub struct Uplink {
    config: UplinkConfig,
    journal: Arc<dyn Journal>,
    new_records: watch::Receiver<u64>,
    monitoring: watch::Sender<MonitoringState>,
    status: Arc<Status>,
}

const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

impl Uplink {
    /// Assembles an uplink; [`Uplink::run`] drives it.
    pub fn new(
        config: UplinkConfig,
        journal: Arc<dyn Journal>,
        new_records: watch::Receiver<u64>,
        monitoring: watch::Sender<MonitoringState>,
        status: Arc<Status>,
    ) -> Self {
        Self {
            config,
            journal,
            new_records,
            monitoring,
            status,
        }
    }

    /// Connects, streams and reconnects until `shutdown` is cancelled; then closes the connection
    /// cleanly. Never returns an error: every failure is logged and retried.
    ///
    /// # Cancel safety
    /// Use `shutdown` to stop it; dropping the future loses nothing either (the journal keeps
    /// every unacknowledged record), but skips the orderly close.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut endpoints = Endpoints::default();
        let mut backoff = self.backoff();
        loop {
            self.status
                .set_connection(ConnectionState::Connecting, None);
            let mut established = false;
            let result = tokio::select! {
                result = self.session(&mut endpoints, &mut established) => result,
                () = shutdown.cancelled() => break,
            };
            if established {
                backoff = self.backoff();
            }
            let delay = match &result {
                Err(SessionError::Refused {
                    code: RefuseCode::Revoked | RefuseCode::IncompatibleVersion,
                    ..
                }) => self.config.max_backoff,
                _ => backoff.next().unwrap_or(self.config.max_backoff),
            };
            if let Err(error) = result {
                warn!(%error, retry_in = ?delay, "Uplink session ended; reconnecting.");
                self.status
                    .set_connection(ConnectionState::Disconnected, Some(error.to_string()));
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => break,
            }
        }
        self.status.set_connection(ConnectionState::Stopped, None);
        endpoints.close().await;
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(self.config.max_backoff)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    async fn session(
        &mut self,
        endpoints: &mut Endpoints,
        established: &mut bool,
    ) -> Result<(), SessionError> {
        let address = resolve(&self.config.address).await?;
        let endpoint = endpoints.for_address(address)?;
        let connection = endpoint
            .connect_with(
                self.config.client.clone(),
                address,
                &self.config.server_name,
            )?
            .await?;
        let result = self.stream(&connection, established).await;
        let (code, reason): (u32, &[u8]) = match &result {
            Err(SessionError::Codec(_)) => (close_code::BAD_FRAME, b"bad frame"),
            Err(SessionError::Protocol(_)) => {
                (close_code::PROTOCOL_VIOLATION, b"protocol violation")
            }
            _ => (close_code::NORMAL, b"agent closing"),
        };
        connection.close(code.into(), reason);
        result
    }

    async fn stream(
        &mut self,
        connection: &quinn::Connection,
        established: &mut bool,
    ) -> Result<(), SessionError> {
        let (mut send, recv) = connection.open_bi().await?;
        let mut max_frame = DEFAULT_MAX_FRAME_BYTES;
        let hello = AgentMessage::Hello(Hello {
            agent_version: aisemble_shared::VERSION.to_owned(),
            hostname: self.config.hostname.clone(),
            labels: self.config.labels.clone(),
            journal_id: self.journal.id(),
            buffer: self.journal.stats(),
        });
        send.write_all(&codec::encode_frame(&hello, max_frame)?)
            .await?;

        let (frames_tx, mut frames) = mpsc::channel(64);
        let reader = tokio::spawn(read_frames(recv, frames_tx));
        let _abort_reader = AbortOnDrop(reader);

        let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, frames.recv()).await {
            Err(_) => return Err(SessionError::WelcomeTimeout(WELCOME_TIMEOUT)),
            Ok(None) => return Err(connection_end(connection)),
            Ok(Some(frame)) => match frame? {
                ControlMessage::Welcome(welcome) => welcome,
                ControlMessage::Refuse(refuse) => {
                    return Err(SessionError::Refused {
                        code: refuse.code,
                        message: refuse.message,
                    });
                }
                other => {
                    return Err(SessionError::Protocol(format!(
                        "expected Welcome, got {other:?}"
                    )));
                }
            },
        };
        *established = true;
        // Backup and restore tasks arrive on streams the control plane opens; they end with
        // the session.
        let _tasks = AbortOnDrop(tokio::spawn(crate::backup::serve(connection.clone())));
        max_frame = welcome.max_frame_bytes.min(DEFAULT_MAX_FRAME_BYTES);
        let resume_after = welcome.stored_upto.unwrap_or(0);
        if resume_after > 0 {
            self.ack_journal(resume_after).await?;
        }
        self.monitoring.send_replace(welcome.monitoring);
        self.status.set_monitoring(welcome.monitoring);
        self.status.set_connection(ConnectionState::Connected, None);
        info!(
            agent = %welcome.agent_id,
            server_version = %welcome.server_version,
            resume_after,
            backlog = self.journal.stats().records,
            "Connected to the control plane."
        );

        let mut window = SendWindow::new(resume_after, self.config.limits);
        let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while window.has_room() {
                let Some((last_seq, bytes)) =
                    self.next_batch(window.next_after(), max_frame).await?
                else {
                    break;
                };
                send.write_all(&bytes).await?;
                window.on_sent(last_seq, bytes.len());
            }
            tokio::select! {
                changed = self.new_records.changed() => {
                    // The sender lives as long as the agent; if it is gone we are shutting down.
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                frame = frames.recv() => {
                    let Some(frame) = frame else { return Err(connection_end(connection)) };
                    match frame? {
                        ControlMessage::Ack(ack) => {
                            if let Some(upto) = window.on_ack(ack.upto)? {
                                self.ack_journal(upto).await?;
                            }
                        }
                        ControlMessage::Command(command) => {
                            let outcome = self.apply(&command.action);
                            let reply = AgentMessage::CommandResult(CommandResult { id: command.id, outcome });
                            send.write_all(&codec::encode_frame(&reply, max_frame)?).await?;
                        }
                        ControlMessage::Refuse(refuse) => {
                            return Err(SessionError::Refused { code: refuse.code, message: refuse.message });
                        }
                        other => return Err(SessionError::Protocol(format!("unexpected {other:?}"))),
                    }
                }
                _ = status_tick.tick() => {
                    if window.in_flight() == 0 {
                        let status = AgentMessage::Status(self.journal.stats());
                        send.write_all(&codec::encode_frame(&status, max_frame)?).await?;
                    }
                }
            }
        }
    }

    /// Reads the next batch after `after` from the journal and encodes it as a frame; returns
    /// the batch's last sequence number and the frame.
    async fn next_batch(
        &self,
        after: u64,
        max_frame: u32,
    ) -> Result<Option<(u64, Vec<u8>)>, SessionError> {
        let journal = Arc::clone(&self.journal);
        let (max_records, max_bytes) = (self.config.batch_max_records, self.config.batch_max_bytes);
        tokio::task::spawn_blocking(move || {
            let mut entries = journal
                .read_after(after, max_records, max_bytes)
                .map_err(|error| SessionError::Journal(error.to_string()))?;
            loop {
                let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                    return Ok(None);
                };
                let last_seq = last.seq;
                let batch = AgentMessage::Batch(Batch {
                    first_seq: first.seq,
                    last_seq,
                    compression: Compression::Zstd,
                    payload: codec::encode_entries(&entries, Compression::Zstd)?,
                    buffer: journal.stats(),
                });
                match codec::encode_frame(&batch, max_frame) {
                    Ok(frame) => return Ok(Some((last_seq, frame))),
                    // Incompressible records over the frame limit: halve the batch and retry.
                    Err(_) if entries.len() > 1 => entries.truncate(entries.len() / 2),
                    Err(error) => return Err(error.into()),
                }
            }
        })
        .await
        .map_err(|error| SessionError::Journal(error.to_string()))?
    }

    async fn ack_journal(&self, upto: u64) -> Result<(), SessionError> {
        let journal = Arc::clone(&self.journal);
        tokio::task::spawn_blocking(move || journal.ack(upto))
            .await
            .map_err(|error| SessionError::Journal(error.to_string()))?
            .map_err(|error| SessionError::Journal(error.to_string()))?;
        self.status.set_acked(upto);
        debug!(upto, "Acknowledged.");
        Ok(())
    }

    fn apply(&self, action: &Action) -> Result<String, String> {
        let state = match action {
            Action::PauseMonitoring => MonitoringState::Paused,
            Action::ResumeMonitoring => MonitoringState::Running,
            other => return Err(format!("unsupported command {other:?}")),
        };
        self.monitoring.send_replace(state);
        self.status.set_monitoring(state);
        info!(?state, "Monitoring state changed by the control plane.");
        Ok(format!("{state:?}"))
    }
}

/// The error to report when the control plane's side of the stream went away.
fn connection_end(connection: &quinn::Connection) -> SessionError {
    match connection.close_reason() {
        Some(error) => SessionError::Connection(error),
        None => SessionError::StreamEnded,
    }
}

/// Reads frames until the stream ends or fails; each decoded message (or the error that ended
/// the stream) goes to `out`.
async fn read_frames(
    mut recv: quinn::RecvStream,
    out: mpsc::Sender<Result<ControlMessage, SessionError>>,
) {
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    loop {
        let frame = match decoder.next_frame() {
            Ok(Some(body)) => {
                codec::decode_frame::<ControlMessage>(&body).map_err(SessionError::from)
            }
            Ok(None) => match recv.read_chunk(64 << 10, true).await {
                Ok(Some(chunk)) => {
                    decoder.push(&chunk.bytes);
                    continue;
                }
                Ok(None) if decoder.pending_bytes() == 0 => return,
                Ok(None) => Err(SessionError::Codec(codec::CodecError::Decode {
                    what: "frame",
                    reason: "stream ended inside a frame".into(),
                })),
                Err(error) => Err(error.into()),
            },
            Err(error) => Err(error.into()),
        };
        let failed = frame.is_err();
        if out.send(frame).await.is_err() || failed {
            return;
        }
    }
}

async fn resolve(address: &str) -> Result<SocketAddr, SessionError> {
    let error = |reason: String| SessionError::Resolve {
        address: address.to_owned(),
        reason,
    };
    let mut addresses = tokio::net::lookup_host(address)
        .await
        .map_err(|e| error(e.to_string()))?;
    addresses.next().ok_or_else(|| error("no addresses".into()))
}

/// One client endpoint per address family, made on first use and kept across reconnections.
#[derive(Debug, Default)]
struct Endpoints {
    v4: Option<quinn::Endpoint>,
    v6: Option<quinn::Endpoint>,
}

impl Endpoints {
    fn for_address(&mut self, address: SocketAddr) -> Result<&quinn::Endpoint, SessionError> {
        let (slot, bind) = match address {
            SocketAddr::V4(_) => (&mut self.v4, SocketAddr::from(([0, 0, 0, 0], 0))),
            SocketAddr::V6(_) => (&mut self.v6, SocketAddr::from(([0u16; 8], 0))),
        };
        if slot.is_none() {
            *slot = Some(quinn::Endpoint::client(bind).map_err(SessionError::Bind)?);
        }
        slot.as_ref()
            .ok_or_else(|| SessionError::Bind(std::io::Error::other("endpoint missing")))
    }

    /// Waits (briefly) for close frames to reach the control plane.
    async fn close(self) {
        for endpoint in [self.v4, self.v6].into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        }
    }
}

/// Aborts a spawned task when the owner goes away, so no reader outlives its session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for AbortOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AbortOnDrop")
    }
}
