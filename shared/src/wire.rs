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
