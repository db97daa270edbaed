//! Log lines: tailing `[[logs]]` files and taking pushed `{"type":"log"}` events, journaled as
//! `Record::Logs` batches through the [`RecordSink`], never one record per line.
//!
//! - `parse.rs` (pure): a JSON or plain line into a `LogEntry`.
//! - `tail.rs`: one file across rename and copytruncate rotation, on a blocking thread, with the
//!   rotation decisions as pure functions.
//! - `batch.rs` (pure): when a batch is due (500 lines, ~256 KiB, or 1 s after its first line).
//! - `checkpoint.rs`: the saved positions (`<data_dir>/log-positions.json`).
//! - `driver.rs`: the tailer and batcher tasks.
//!
//! Delivery: a file position is saved only after the lines before it are journaled, so a restart
//! loses no line and reads again at most the lines journaled after the last save (saved at most a
//! second apart, and last on a clean stop, so a clean restart reads nothing twice): at least once.
//!
//! Pause: while the control plane has monitoring paused, files are not read (their positions stay,
//! so their lines are read on resume) and pushed log lines are dropped and counted
//! (`aisemble_agent_log_lines_dropped_total{reason="paused"}`), as other collection stops.
//!
//! Bounded memory: lines of at most 64 KiB (longer ones truncated and counted), at most 64 KiB
//! read per file per poll, a channel of [`CHANNEL_CAPACITY`] batches of lines between the sources
//! and the batcher (sources wait when it is full), and one pending record. Measured ad hoc with the
//! `agent` profile (a control plane on loopback acking): 3,000 lines/s (2,000 from a file, 1,000
//! pushed) for 60 s, RSS 10.8-11.9 MiB, peak 12.0 MiB (8.4 MiB without logs), ~1.7 % of a core;
//! reading a 30 MB, 200,000-line backlog takes ~3 s (~65,000 lines/s journaled and acknowledged)
//! and peaks at 17-19 MiB, most of it freed memory glibc keeps in the blocking threads' arenas
//! (15 MiB with `MALLOC_MMAP_THRESHOLD_=65536 MALLOC_ARENA_MAX=2`).

mod batch;
mod checkpoint;
mod driver;
mod parse;
mod tail;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aisemble_shared::{
    config::{ConfigError, LogFileConfig, LogFormat, StartAt},
    metrics,
    wire::{LogEntry, MonitoringState, Sample},
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::{
    collect::{CollectError, Collector},
    sink::RecordSink,
};

pub(crate) use parse::{epoch_ms, rfc3339_ms};
pub use tail::MAX_LINE_BYTES;

/// Batches of lines waiting for the batcher (a source waits while it is full).
pub const CHANNEL_CAPACITY: usize = 2;

/// How often files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Longest `service` of a `[[logs]]` entry, in bytes.
pub const MAX_SERVICE_BYTES: usize = 128;

/// A checked `[[logs]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileSpec {
    /// The file (absolute, or relative to the working directory).
    pub path: PathBuf,
    /// The `service` of its lines.
    pub service: String,
    /// How its lines are read.
    pub format: LogFormat,
    /// Where to begin in it when it is there at startup without a saved position.
    pub start_at: StartAt,
}

impl LogFileSpec {
    /// Checks every `[[logs]]` entry of the config file at `path`: paths relative to the file's
    /// directory, each file listed once.
    ///
    /// # Errors
    /// A one-line error naming the entry's key (`logs[1].service`) and the fix.
    pub fn resolve_all(path: &Path, entries: &[LogFileConfig]) -> Result<Vec<Self>, ConfigError> {
        let mut specs: Vec<Self> = Vec::with_capacity(entries.len());
        for (idx, entry) in entries.iter().enumerate() {
            let spec = Self::from_config(path, idx, entry)?;
            if let Some(first) = specs.iter().position(|s| s.path == spec.path) {
                return Err(ConfigError::new(
                    path,
                    Some(&format!("logs[{idx}].path")),
                    format!("{} is already tailed by logs[{first}]", spec.path.display()),
                    "keep one [[logs]] entry per file (two would journal every line twice)",
                ));
            }
            specs.push(spec);
        }
        Ok(specs)
    }

    /// Checks `[[logs]]` entry number `idx` (from 0) of the config file at `path`.
    ///
    /// # Errors
    /// A one-line error naming the key (`logs[0].path`) and the fix.
    pub fn from_config(
        path: &Path,
        idx: usize,
        entry: &LogFileConfig,
    ) -> Result<Self, ConfigError> {
        let error = |key: &str, message: String, hint: &str| {
            ConfigError::new(path, Some(&format!("logs[{idx}].{key}")), message, hint)
        };
        if entry.path.as_os_str().is_empty() {
            return Err(error(
                "path",
                "is empty".into(),
                "name the file, like path = \"/var/log/api.log\"",
            ));
        }
        let text = entry.path.to_string_lossy();
        if text.contains(['*', '?', '[']) {
            return Err(error(
                "path",
                format!("{text:?} is a pattern; patterns are not supported"),
                "add one [[logs]] entry per file",
            ));
        }
        let file = if entry.path.is_absolute() {
            entry.path.clone()
        } else {
            path.parent().unwrap_or(Path::new(".")).join(&entry.path)
        };
        if file.is_dir() {
            return Err(error(
                "path",
                format!("{} is a directory", file.display()),
                "name a file in it (one [[logs]] entry per file)",
            ));
        }
        let service = entry.service.trim();
        if service.is_empty() {
            return Err(error(
                "service",
                "is empty".into(),
                "name the service the file belongs to, like service = \"api\"",
            ));
        }
        if service.len() > MAX_SERVICE_BYTES {
            return Err(error(
                "service",
                format!(
                    "is longer than {MAX_SERVICE_BYTES} bytes ({})",
                    service.len()
                ),
                "use a shorter name",
            ));
        }
        Ok(Self {
            path: file,
            service: service.to_owned(),
            format: entry.format,
            start_at: entry.start_at,
        })
    }
}

/// The log pipeline's counters, exported by [`LogsCollector`].
#[derive(Debug, Default)]
pub struct LogCounters {
    file_lines: AtomicU64,
    push_lines: AtomicU64,
    truncated: AtomicU64,
    dropped_paused: AtomicU64,
    dropped_journal: AtomicU64,
}

impl LogCounters {
    /// Lines journaled from files.
    pub fn file_lines(&self) -> u64 {
        self.file_lines.load(Ordering::Relaxed)
    }

    /// Lines journaled from the push endpoint.
    pub fn push_lines(&self) -> u64 {
        self.push_lines.load(Ordering::Relaxed)
    }

    /// Lines cut to [`MAX_LINE_BYTES`].
    pub fn truncated(&self) -> u64 {
        self.truncated.load(Ordering::Relaxed)
    }

    /// Pushed lines dropped while monitoring was paused.
    pub fn dropped_paused(&self) -> u64 {
        self.dropped_paused.load(Ordering::Relaxed)
    }

    /// Lines lost because the journal refused their batch.
    pub fn dropped_journal(&self) -> u64 {
        self.dropped_journal.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Emits the log pipeline's counters at each collection tick.
#[derive(Debug)]
pub struct LogsCollector {
    counters: Arc<LogCounters>,
}

impl Collector for LogsCollector {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let c = &self.counters;
        for (source, n) in [("file", c.file_lines()), ("push", c.push_lines())] {
            out.push(Sample::new(metrics::LOG_LINES_TOTAL, n as f64).with_label("source", source));
        }
        out.push(Sample::new(
            metrics::LOG_LINES_TRUNCATED_TOTAL,
            c.truncated() as f64,
        ));
        for (reason, n) in [
            ("paused", c.dropped_paused()),
            ("journal", c.dropped_journal()),
        ] {
            out.push(
                Sample::new(metrics::LOG_LINES_DROPPED_TOTAL, n as f64)
                    .with_label("reason", reason),
            );
        }
        Ok(())
    }
}

/// What became of pushed lines handed to [`LogSender::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// Queued for the journal.
    Queued,
    /// Dropped (and counted): monitoring is paused.
    Paused,
    /// Not taken: the agent is stopping.
    Stopping,
}

/// Hands pushed log lines to the batcher.
#[derive(Debug, Clone)]
pub struct LogSender {
    tx: mpsc::Sender<driver::Input>,
    monitoring: watch::Receiver<MonitoringState>,
    counters: Arc<LogCounters>,
}

impl LogSender {
    /// Queues `entries` for the journal, waiting while the batcher is behind; drops them (counted)
    /// while monitoring is paused.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes drops the lines, none of them queued.
    pub async fn send(&self, entries: Vec<LogEntry>) -> Handed {
        if entries.is_empty() {
            return Handed::Queued;
        }
        if *self.monitoring.borrow() == MonitoringState::Paused {
            LogCounters::add(&self.counters.dropped_paused, entries.len() as u64);
            return Handed::Paused;
        }
        match self.tx.send(driver::Input::Push(entries)).await {
            Ok(()) => Handed::Queued,
            Err(_) => Handed::Stopping,
        }
    }
}

/// A running log pipeline.
#[derive(Debug)]
pub struct Logs {
    /// For the push endpoint.
    pub sender: LogSender,
    /// The counters, for the collector loop.
    pub collector: LogsCollector,
    /// Ends after `shutdown`, once the last lines are journaled and the positions saved.
    pub task: JoinHandle<()>,
}

/// How the pipeline runs (the defaults in production; shorter times in tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) poll_interval: Duration,
    pub(crate) batch: batch::BatchLimits,
}

impl Options {
    /// Short times for tests: files polled every 10 ms, lines batched for at most 50 ms.
    #[cfg(test)]
    pub(crate) fn quick() -> Self {
        Self {
            poll_interval: Duration::from_millis(10),
            batch: batch::BatchLimits::with_delay(Duration::from_millis(50)),
        }
    }
}

/// Starts tailing `files` and batching lines into the journal through `sink`, with positions
/// saved at `checkpoint_path` and records kept to what a journal of `journal_cap` bytes takes.
/// Files are not read, and pushed lines are dropped, while `monitoring` is paused.
pub fn spawn(
    files: Vec<LogFileSpec>,
    checkpoint_path: PathBuf,
    journal_cap: u64,
    sink: RecordSink,
    monitoring: watch::Receiver<MonitoringState>,
    shutdown: CancellationToken,
) -> Logs {
    let options = Options {
        poll_interval: POLL_INTERVAL,
        batch: batch::BatchLimits::for_journal(journal_cap),
    };
    spawn_with(files, checkpoint_path, options, sink, monitoring, shutdown)
}

pub(crate) fn spawn_with(
    files: Vec<LogFileSpec>,
    checkpoint_path: PathBuf,
    options: Options,
    sink: RecordSink,
    monitoring: watch::Receiver<MonitoringState>,
    shutdown: CancellationToken,
) -> Logs {
    let counters = Arc::new(LogCounters::default());
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let sender = LogSender {
        tx: tx.clone(),
        monitoring: monitoring.clone(),
        counters: Arc::clone(&counters),
    };
    let collector = LogsCollector {
        counters: Arc::clone(&counters),
    };
    let task = tokio::spawn(driver::run(
        driver::Pipeline {
            files,
            checkpoint_path,
            options,
            sink,
            monitoring,
            counters,
        },
        tx,
        rx,
        shutdown,
    ));
    Logs {
        sender,
        collector,
        task,
    }
}

#[cfg(test)]
mod tests;
