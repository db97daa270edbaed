//! The agent's live status, shared by its tasks and mirrored to `<data_dir>/status.json` for
//! `aisemble-agent status` (a separate process: sled allows one process per journal).
//!
//! The JSON file is an external format read by operators' scripts, so this is the one agent
//! type besides the wire types that derives `Serialize`.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use aisemble_shared::wire::{BufferStats, MonitoringState};
use serde::{Deserialize, Serialize};

/// State of the uplink connection.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Dialling or in the opening exchange.
    Connecting,
    /// Session established.
    Connected,
    /// Waiting before the next attempt.
    Disconnected,
    /// The agent is shutting down or has stopped.
    Stopped,
}

/// What `status.json` holds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// Process id of the running agent.
    pub pid: u32,
    /// Agent name.
    pub agent: String,
    /// Agent version.
    pub version: String,
    /// Control plane address.
    pub control_plane: String,
    /// Uplink state.
    pub connection: ConnectionState,
    /// Why the last connection attempt or session failed.
    pub last_error: Option<String>,
    /// Highest sequence number the control plane acknowledged.
    pub last_ack_seq: Option<u64>,
    /// When (ms since the Unix epoch).
    pub last_ack_at_ms: Option<i64>,
    /// Journal depth and evictions.
    pub buffer: BufferReport,
    /// Collecting or paused.
    pub monitoring: String,
    /// When this report was written (ms since the Unix epoch).
    pub updated_at_ms: i64,
}

/// Journal state in the status report.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferReport {
    /// Records waiting for an acknowledgement.
    pub records: u64,
    /// Their size in bytes.
    pub bytes: u64,
    /// Records evicted because the journal was full, ever.
    pub dropped_records: u64,
}

impl From<BufferStats> for BufferReport {
    fn from(stats: BufferStats) -> Self {
        Self {
            records: stats.records,
            bytes: stats.bytes,
            dropped_records: stats.dropped_records,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The live status, updated by the uplink and the collector.
#[derive(Debug)]
pub struct Status {
    report: Mutex<StatusReport>,
    path: PathBuf,
    /// What was last written, and when: unchanged reports are rewritten only every
    /// [`REWRITE_UNCHANGED`], to keep an idle agent idle.
    written: Mutex<Option<(StatusReport, std::time::Instant)>>,
}

/// How often an unchanged status is rewritten (its `updated_at_ms` shows the agent is alive).
const REWRITE_UNCHANGED: std::time::Duration = std::time::Duration::from_secs(10);

impl Status {
    /// A status for a starting agent, mirrored to `path`.
    pub fn new(path: PathBuf, agent: &str, control_plane: &str) -> Self {
        let report = StatusReport {
            pid: std::process::id(),
            agent: agent.to_owned(),
            version: aisemble_shared::VERSION.to_owned(),
            control_plane: control_plane.to_owned(),
            connection: ConnectionState::Connecting,
            last_error: None,
            last_ack_seq: None,
            last_ack_at_ms: None,
            buffer: BufferReport::default(),
            monitoring: "running".into(),
            updated_at_ms: now_ms(),
        };
        Self {
            report: Mutex::new(report),
            path,
            written: Mutex::new(None),
        }
    }

    /// Applies a change.
    pub fn update(&self, change: impl FnOnce(&mut StatusReport)) {
        let mut report = self
            .report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut report);
    }

    /// Records a connection state, and the error that caused it if any.
    pub fn set_connection(&self, state: ConnectionState, error: Option<String>) {
        self.update(|r| {
            r.connection = state;
            if error.is_some() || state == ConnectionState::Connected {
                r.last_error = error;
            }
        });
    }

    /// Records an acknowledgement.
    pub fn set_acked(&self, seq: u64) {
        self.update(|r| {
            r.last_ack_seq = Some(seq);
            r.last_ack_at_ms = Some(now_ms());
        });
    }

    /// Records the monitoring state.
    pub fn set_monitoring(&self, state: MonitoringState) {
        self.update(|r| {
            r.monitoring = match state {
                MonitoringState::Running => "running".into(),
                MonitoringState::Paused => "paused".into(),
            }
        });
    }

    /// A copy of the report with fresh buffer figures.
    pub fn snapshot(&self, buffer: BufferStats) -> StatusReport {
        let mut report = self
            .report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        report.buffer = buffer.into();
        report.updated_at_ms = now_ms();
        report
    }

    /// Writes the report atomically (temporary file, then rename). Blocking.
    ///
    /// # Errors
    /// When the data directory is not writable.
    pub fn write(&self, buffer: BufferStats) -> std::io::Result<()> {
        let report = self.snapshot(buffer);
        write_report(&self.path, &report)?;
        *self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((report, std::time::Instant::now()));
        Ok(())
    }

    /// Writes the report if it changed, or if the last write is older than 10 s. Blocking.
    ///
    /// # Errors
    /// When the data directory is not writable.
    pub fn write_if_changed(&self, buffer: BufferStats) -> std::io::Result<()> {
        let report = self.snapshot(buffer);
        let unchanged = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(last, at)| {
                at.elapsed() < REWRITE_UNCHANGED
                    && StatusReport {
                        updated_at_ms: 0,
                        ..last.clone()
                    } == StatusReport {
                        updated_at_ms: 0,
                        ..report.clone()
                    }
            });
        if unchanged {
            return Ok(());
        }
        self.write(buffer)
    }
}

fn write_report(path: &Path, report: &StatusReport) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Reads a status file.
///
/// # Errors
/// When it is missing or not a status report.
pub fn read_report(path: &Path) -> std::io::Result<StatusReport> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

/// Whether process `pid` exists (Linux: `/proc/<pid>`).
pub fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}
