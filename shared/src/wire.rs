//! Messages exchanged between an agent and the control plane.
//!
//! One QUIC connection per agent (ALPN [`ALPN`], mutual TLS) carries one long-lived bidirectional
//! stream opened by the agent. The agent speaks [`AgentMessage`]s, the control plane
//! [`ControlMessage`]s; each is one frame of [`crate::codec`]. The exchange:
//!
//! ```text
//! agent                                   control plane
//!   Hello ------------------------------->  (identity = certificate name, never Hello)
//!         <-------------------------------  Welcome { stored_upto, monitoring } | Refuse
//!   Batch { records seq a..=b } ---------->  store durably, then
//!         <-------------------------------  Ack { upto: b }     (cumulative)
//!         <-------------------------------  Command { id, action }   (any time)
//!   CommandResult { id } ----------------->
//! ```
//!
//! Journal records travel as the exact bytes the agent journaled ([`crate::codec::encode_record`]),
//! so neither side re-encodes them. Only these types derive `Serialize`/`Deserialize`; new
//! variants are only ever appended so older peers still decode what they know.

use serde::{Deserialize, Serialize};

/// QUIC application protocol of the telemetry connection.
pub const ALPN: &[u8] = b"aisemble/1";

/// Protocol version this build speaks; carried in every frame's envelope.
pub const PROTOCOL_VERSION: u16 = 1;

/// Oldest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// QUIC application close and stream reset codes, so each side logs why the other hung up.
pub mod close_code {
    /// Orderly close (shutdown, session over).
    pub const NORMAL: u32 = 0;
    /// A message out of order or not allowed in this state.
    pub const PROTOCOL_VIOLATION: u32 = 1;
    /// A frame's length prefix exceeds the receiver's maximum.
    pub const FRAME_TOO_LARGE: u32 = 2;
    /// A frame could not be decoded, or the stream ended inside a frame.
    pub const BAD_FRAME: u32 = 3;
    /// The peer speaks an unsupported protocol version.
    pub const INCOMPATIBLE_VERSION: u32 = 4;
    /// The agent's certificate was revoked.
    pub const REVOKED: u32 = 5;
    /// A newer connection of the same agent replaced this one.
    pub const SUPERSEDED: u32 = 6;
    /// The control plane is shutting down.
    pub const SHUTTING_DOWN: u32 = 7;
    /// The receiver failed internally (storage); reconnect later.
    pub const INTERNAL: u32 = 8;
    /// The peer did not complete the opening exchange in time.
    pub const TIMEOUT: u32 = 9;

    /// A short name for logs and metric labels.
    pub fn name(code: u64) -> &'static str {
        match code {
            0 => "normal",
            1 => "protocol_violation",
            2 => "frame_too_large",
            3 => "bad_frame",
            4 => "incompatible_version",
            5 => "revoked",
            6 => "superseded",
            7 => "shutting_down",
            8 => "internal",
            9 => "timeout",
            _ => "unknown",
        }
    }
}

/// A message from an agent to the control plane.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AgentMessage {
    /// First message on the stream.
    Hello(Hello),
    /// Journal records, in sequence order.
    Batch(Batch),
    /// The outcome of a [`Command`].
    CommandResult(CommandResult),
    /// Buffer statistics while there is nothing to send.
    Status(BufferStats),
}

/// A message from the control plane to an agent.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ControlMessage {
    /// The session is accepted.
    Welcome(Welcome),
    /// The session is refused; the control plane closes the connection after sending it.
    Refuse(Refuse),
    /// Every record with a sequence number up to and including `upto` is durably stored.
    Ack(Ack),
    /// Work for the agent.
    Command(Command),
}

/// Opens a session.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The agent's build version.
    pub agent_version: String,
    /// The host's name as the operating system reports it (informational only).
    pub hostname: String,
    /// Static labels from the agent's config.
    pub labels: Vec<Label>,
    /// Random id of the agent's journal, fixed when the journal is created. Sequence numbers are
    /// unique per (agent, journal): a new journal (reinstalled host) restarts them.
    pub journal_id: u64,
    /// The journal's state when connecting.
    pub buffer: BufferStats,
}

/// Accepts a session.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The control plane's build version.
    pub server_version: String,
    /// The identity the control plane assigned: the name in the agent's certificate.
    pub agent_id: String,
    /// Highest sequence number of this agent already stored; the agent may drop up to it.
    pub stored_upto: Option<u64>,
    /// Whether the agent should collect.
    pub monitoring: MonitoringState,
    /// Largest frame the control plane accepts.
    pub max_frame_bytes: u32,
}

/// Refuses a session.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    /// Machine-readable reason.
    pub code: RefuseCode,
    /// Human-readable explanation, for the agent's log.
    pub message: String,
}

/// Why a session was refused.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseCode {
    /// The agent speaks a protocol version the control plane does not.
    IncompatibleVersion,
    /// The agent's certificate has been revoked.
    Revoked,
    /// The agent broke the protocol (for instance, a batch before Hello).
    ProtocolViolation,
    /// The control plane is shutting down; reconnect later.
    ShuttingDown,
}

/// Whether an agent collects (`POST /ops/monitoring/start|stop`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MonitoringState {
    /// Collect at the configured interval.
    #[default]
    Running,
    /// Keep the connection, collect nothing.
    Paused,
}

/// Consecutive journal records.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Sequence number of the first record.
    pub first_seq: u64,
    /// Sequence number of the last record.
    pub last_seq: u64,
    /// How `payload` is compressed.
    pub compression: Compression,
    /// `Vec<JournalEntry>` encoded by [`crate::codec::encode_entries`], then compressed.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The journal's state when the batch was read.
    pub buffer: BufferStats,
}

/// Compression of a batch payload.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Stored as is.
    None,
    /// zstd frame.
    Zstd,
}

/// One journal record inside a batch payload.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Sequence number assigned by the agent's journal.
    pub seq: u64,
    /// The record exactly as journaled (see [`crate::codec::encode_record`]).
    #[serde(with = "serde_bytes")]
    pub record: Vec<u8>,
}

/// Cumulative acknowledgement.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Highest sequence number durably stored.
    pub upto: u64,
}

/// The state of an agent's journal.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferStats {
    /// Records waiting for an acknowledgement.
    pub records: u64,
    /// Their encoded size.
    pub bytes: u64,
    /// Records evicted unsent because the journal was full, since the journal was created.
    pub dropped_records: u64,
}

/// Work sent down to an agent.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Chosen by the control plane; echoed in [`CommandResult`].
    pub id: u64,
    /// What to do.
    pub action: Action,
}

/// A command's action.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Stop collecting until resumed; the connection stays up.
    PauseMonitoring,
    /// Resume collecting.
    ResumeMonitoring,
}

/// The outcome of a command.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// The command's id.
    pub id: u64,
    /// `Ok(detail)` or `Err(reason)`.
    pub outcome: Result<String, String>,
}

/// What an agent journals: one record per collection tick (and later per log batch or event).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Record {
    /// Samples taken at one instant.
    Metrics(MetricRecord),
    /// Things that happened (a health check changed state), at one instant.
    Events(EventRecord),
    /// Log lines read from files or pushed by applications, in the order they were read.
    Logs(LogRecord),
}

/// Log lines journaled together (one batch of a file's new lines, or of pushed lines).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The lines, each with its own timestamp.
    pub entries: Vec<LogEntry>,
}

/// One log line (SPEC §8). The host is the agent's certificate name, set by the control plane.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Milliseconds since the Unix epoch: the line's own timestamp when it has one, else when
    /// the agent read it.
    pub timestamp_ms: i64,
    /// Severity.
    pub level: LogLevel,
    /// The service the line belongs to (configured per file, or given by the pusher).
    pub service: String,
    /// The message text.
    pub message: String,
    /// Structured fields other than the ones above, as the text of one JSON object (`""` when
    /// there are none). Text, because the codec cannot carry arbitrary JSON values.
    pub context: String,
    /// Trace id, when the line carries one.
    pub trace_id: Option<String>,
    /// Request id, when the line carries one.
    pub request_id: Option<String>,
}

/// A log line's severity, from least to most severe. Lowercase in JSON (the codec encodes the
/// variant's index, not its name).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info` (also what a line without a recognisable level gets).
    Info,
    /// `warn` / `warning`.
    Warn,
    /// `error`.
    Error,
    /// `critical` / `fatal` / `panic`.
    Critical,
}

impl LogLevel {
    /// Every level, least severe first.
    pub const ALL: [Self; 6] = [
        Self::Trace,
        Self::Debug,
        Self::Info,
        Self::Warn,
        Self::Error,
        Self::Critical,
    ];

    /// The level's lowercase name, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }

    /// Reads a level name the way log libraries spell them (case-insensitive; `warning`,
    /// `err`, `fatal`, `panic`, `crit`, `emerg` and `alert` included).
    pub fn parse(name: &str) -> Option<Self> {
        let lower = name.trim().to_ascii_lowercase();
        Some(match lower.as_str() {
            "trace" | "trc" => Self::Trace,
            "debug" | "dbg" => Self::Debug,
            "info" | "inf" | "information" | "notice" => Self::Info,
            "warn" | "warning" | "wrn" => Self::Warn,
            "error" | "err" | "eror" => Self::Error,
            "critical" | "crit" | "fatal" | "panic" | "emerg" | "emergency" | "alert" => {
                Self::Critical
            }
            _ => return None,
        })
    }

    /// Whether the line counts as an error (the `error` retention class and error rates).
    pub fn is_error(self) -> bool {
        self >= Self::Error
    }
}

/// Events observed at one instant.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// What happened.
    pub events: Vec<Event>,
}

/// Something that happened on a host.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A health check went from up to down or back (or reported its first result).
    CheckStateChanged(CheckStateChange),
}

/// A health check's change of state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CheckStateChange {
    /// The check's configured name.
    pub check: String,
    /// `http`, `tcp`, `postgres`, `redis` or `exec`.
    pub kind: String,
    /// The state before, `None` for a check's first result.
    pub was_up: Option<bool>,
    /// The state now.
    pub up: bool,
    /// Failed runs in a row, this one included (0 when up).
    pub consecutive_failures: u64,
    /// Why the run failed, when it did.
    pub error: Option<String>,
    /// The check's configured labels.
    pub labels: Vec<Label>,
}

/// Samples taken at one instant.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MetricRecord {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// One value per series.
    pub samples: Vec<Sample>,
}

/// One value of one series. The `host` label is set by the control plane from the certificate.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels other than the name, in any order.
    pub labels: Vec<Label>,
    /// The value.
    pub value: f64,
}

/// A label pair.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value.
    pub value: String,
}

impl Label {
    /// Builds a label pair.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl Sample {
    /// A sample without labels.
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Self {
            name: name.into(),
            labels: Vec::new(),
            value,
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push(Label::new(name, value));
        self
    }
}

/// A [`Record`] decoded without copying its strings (same encoding), for the control plane's
/// ingest path; see [`crate::codec::decode_record_borrowed`].
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RecordRef<'a> {
    /// Samples taken at one instant.
    Metrics(#[serde(borrow)] MetricRecordRef<'a>),
    /// Events: rare, so decoded into owned values.
    Events(EventRecord),
    /// Log lines: stored as they are, so decoded into owned values.
    Logs(LogRecord),
}

/// A borrowed [`MetricRecord`].
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct MetricRecordRef<'a> {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// One value per series.
    #[serde(borrow)]
    pub samples: Vec<SampleRef<'a>>,
}

/// A borrowed [`Sample`].
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct SampleRef<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Labels other than the name.
    #[serde(borrow)]
    pub labels: Vec<LabelRef<'a>>,
    /// The value.
    pub value: f64,
}

/// A borrowed [`Label`].
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRef<'a> {
    /// Label name.
    pub name: &'a str,
    /// Label value.
    pub value: &'a str,
}

/// A borrowed [`JournalEntry`].
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalEntryRef<'a> {
    /// Sequence number.
    pub seq: u64,
    /// The record as journaled.
    #[serde(borrow)]
    pub record: &'a [u8],
}

impl<'a> From<&'a Sample> for SampleRef<'a> {
    fn from(sample: &'a Sample) -> Self {
        Self {
            name: &sample.name,
            labels: sample
                .labels
                .iter()
                .map(|l| LabelRef {
                    name: &l.name,
                    value: &l.value,
                })
                .collect(),
            value: sample.value,
        }
    }
}

/// QUIC application protocol of an enrollment connection: an agent without a certificate yet
/// (`aisemble-agent enroll`) trades a one-time token and a CSR for one, on the same port as
/// telemetry. The exchange, one frame each way per step, on one bidirectional stream:
///
/// ```text
/// agent                                   control plane
///   EnrollRequest::Discover { token_id } ->
///         <-------------------------------  EnrollResponse::Ca { ca_pem, mac } | Refused
///   (trust the CA: its fingerprint is the one given, or the mac proves the server knows the
///    token; check the TLS certificate the server presented against it; only then:)
///   EnrollRequest::Enroll { token, .. } -->
///         <-------------------------------  EnrollResponse::Issued { cert_pem } | Refused
/// ```
pub const ENROLL_ALPN: &[u8] = b"aisemble-enroll/1";

/// Prefix of every enrollment token: `asbe_<id>.<secret>` (API tokens are `asb_`).
pub const ENROLLMENT_TOKEN_PREFIX: &str = "asbe_";

/// The public id of an enrollment token, if `token` has the shape of one.
pub fn enrollment_token_id(token: &str) -> Option<&str> {
    let (id, secret) = token
        .strip_prefix(ENROLLMENT_TOKEN_PREFIX)?
        .split_once('.')?;
    (!id.is_empty() && !secret.is_empty()).then_some(id)
}

/// A message from an enrolling agent.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnrollRequest {
    /// Asks for the CA, naming the token by its public id only (the secret is not sent until the
    /// agent trusts the server).
    Discover {
        /// The token's public id (the part before the dot).
        token_id: String,
    },
    /// Trades the whole token and a certificate signing request for a certificate.
    Enroll {
        /// The whole token.
        token: String,
        /// The agent name asked for (the CSR's common name).
        name: String,
        /// PKCS#10 request, PEM.
        csr_pem: String,
    },
}

/// A message from the control plane to an enrolling agent.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnrollResponse {
    /// The CA certificate, and HMAC-SHA256 over its DER keyed with the SHA-256 of the token:
    /// proof that the server holds the token, for an agent given no CA fingerprint.
    Ca {
        /// CA certificate, PEM.
        ca_pem: String,
        /// HMAC-SHA256(key = SHA-256(token), message = CA DER).
        mac: Vec<u8>,
    },
    /// The signed certificate.
    Issued {
        /// The agent's certificate, PEM.
        cert_pem: String,
        /// The name it was issued to.
        name: String,
    },
    /// No certificate; the connection closes after this.
    Refused {
        /// Human-readable reason (unknown, expired or used token, name taken, bad CSR).
        reason: String,
    },
}

/// Most data bytes in one [`TaskMessage::Data`] frame: small enough to interleave with telemetry,
/// large enough that framing costs nothing.
pub const TASK_DATA_BYTES: usize = 256 << 10;

/// The first frame on a bidirectional stream the control plane opens on an agent's connection:
/// a backup or a restore, each on its own stream so bulk data never waits behind (or delays) the
/// telemetry stream.
///
/// ```text
/// backup:  control plane  TaskRequest::Backup ------------------------>  agent
///                         <---- (Entry, Data*, EntryEnd)*, Done | Failed
/// restore: control plane  TaskRequest::Restore, (Entry, Data*, EntryEnd)*, Done --> agent
///                         <---------------------------------- Done | Failed
/// ```
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskRequest {
    /// Read a source and send it.
    Backup(BackupTask),
    /// Receive a snapshot and put it in place.
    Restore(RestoreTask),
}

/// Read a backup source.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BackupTask {
    /// The run's id (for the agent's log).
    pub id: u64,
    /// The job's name.
    pub job: String,
    /// What to read.
    pub source: BackupSource,
}

/// What a backup reads on the host.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackupSource {
    /// Files and directories (recursively), minus those matching an exclude glob.
    Paths {
        /// Absolute paths.
        paths: Vec<String>,
        /// Glob patterns matched against each absolute path (`**/*.tmp`, `/var/cache/**`).
        excludes: Vec<String>,
    },
    /// A command's standard output, stored as one file (`pg_dump`, `tar -c`, …).
    Command {
        /// Program and arguments (no shell).
        argv: Vec<String>,
        /// The file name the output is stored under.
        file_name: String,
    },
    /// A PostgreSQL database, through the host's `pg_dump` (custom format).
    Postgres {
        /// Connection string (`postgresql://user@127.0.0.1:5432/db`).
        url: String,
    },
    /// A Redis server's dataset, through the host's `redis-cli --rdb`.
    Redis {
        /// Server URL (`redis://127.0.0.1:6379`).
        url: String,
    },
}

/// Put a snapshot in place on the host.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RestoreTask {
    /// The run's id.
    pub id: u64,
    /// The snapshot's id (for the agent's log).
    pub snapshot: String,
    /// Absolute directory the snapshot's files go under. It is staged beside itself and switched
    /// into place only when every file arrived with its recorded hash.
    pub target: String,
    /// Entries that follow.
    pub entries: u64,
    /// Their data bytes.
    pub bytes: u64,
}

/// A message on a task stream, in either direction.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskMessage {
    /// An entry's metadata; a file's data follows in `Data` frames, then `EntryEnd`.
    Entry(FileEntry),
    /// Part of the current file's content.
    Data {
        /// At most [`TASK_DATA_BYTES`].
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The current file is complete; its content's SHA-256, so the receiver can check that what
    /// it got is what was read (backup) or recorded (restore).
    EntryEnd {
        /// 32 bytes; empty when the sender could not read the file to its end (an I/O error
        /// mid-file): the receiver drops the entry, and a backup counts it as skipped.
        #[serde(with = "serde_bytes")]
        sha256: Vec<u8>,
    },
    /// Everything was sent (from the sender) or put in place and verified (from the agent).
    Done(TaskSummary),
    /// The task failed; nothing more follows.
    Failed {
        /// Why.
        reason: String,
    },
}

/// What a task moved.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskSummary {
    /// Entries (files, directories, links).
    pub entries: u64,
    /// File content bytes.
    pub bytes: u64,
    /// Entries skipped because they could not be read (backup) or files re-read and found equal
    /// to the manifest after the switch (restore).
    pub skipped_or_verified: u64,
}

/// A file-system entry of a backup.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative path, `/`-separated, never `..` or absolute (a backed-up `/etc/hosts` is
    /// `etc/hosts`; a command's output is its `file_name`).
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Unix permission bits.
    pub mode: u32,
    /// Modification time, ms since the Unix epoch.
    pub mtime_ms: i64,
    /// Size when read began (files).
    pub size: u64,
}

/// Kinds of entries a backup keeps.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file; its content follows.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, with its target.
    Symlink(String),
}

/// Whether `path` is a safe relative entry path: not empty, not absolute, no `.`, `..` or empty
/// components, no NUL. Both ends check it: the agent before writing anything, the control plane
/// before storing a manifest.
pub fn is_safe_entry_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}
