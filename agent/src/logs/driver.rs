//! The log pipeline's tasks: the tailer (polls each file on a blocking thread, hands its lines
//! on) and the batcher (collects lines from the tailer and the push endpoint, journals a record
//! when one is due, then moves and saves the file positions).
//!
//! On shutdown the tailer stops reading, and the batcher closes its channel, journals what was
//! queued and pending, and saves the positions last.

use std::{path::PathBuf, sync::Arc, time::Duration};

use aisemble_shared::wire::{LogEntry, LogRecord, MonitoringState, Record};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, trace, warn};

use super::{
    LogCounters, LogFileSpec, Options,
    batch::{Batch, Batcher, Mark, Source},
    checkpoint::Checkpoints,
    tail::{Chunk, FileTail},
};
use crate::{sink::RecordSink, status::now_ms};

/// Least time between two saves of the positions.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Lines on their way to the batcher.
#[derive(Debug)]
pub(crate) enum Input {
    /// A poll of the `[[logs]]` entry of this index.
    File(usize, Chunk),
    /// Pushed lines.
    Push(Vec<LogEntry>),
}

/// What the pipeline needs.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub(crate) files: Vec<LogFileSpec>,
    pub(crate) checkpoint_path: PathBuf,
    pub(crate) options: Options,
    pub(crate) sink: RecordSink,
    pub(crate) monitoring: watch::Receiver<MonitoringState>,
    pub(crate) counters: Arc<LogCounters>,
}

/// Loads the positions, then runs the tailer and the batcher until `shutdown`.
pub(crate) async fn run(
    pipeline: Pipeline,
    tx: mpsc::Sender<Input>,
    rx: mpsc::Receiver<Input>,
    shutdown: CancellationToken,
) {
    let Pipeline {
        files,
        checkpoint_path,
        options,
        sink,
        monitoring,
        counters,
    } = pipeline;
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    let load = {
        let (path, paths) = (checkpoint_path.clone(), paths.clone());
        tokio::task::spawn_blocking(move || Checkpoints::load(&path, &paths))
    };
    let checkpoints = match load.await {
        Ok((checkpoints, None)) => checkpoints,
        Ok((checkpoints, Some(problem))) => {
            warn!(
                path = %checkpoint_path.display(),
                problem,
                "Cannot read the saved log positions; files start as if seen for the first time."
            );
            checkpoints
        }
        Err(error) => {
            error!(%error, "Loading the saved log positions failed.");
            Checkpoints::new(checkpoint_path)
        }
    };
    let tails: Vec<FileTail> = files
        .into_iter()
        .map(|spec| {
            let saved = checkpoints.get(&spec.path);
            FileTail::new(spec, saved)
        })
        .collect();
    let tail_counters = Arc::clone(&counters);
    let tail_shutdown = shutdown.clone();
    let tailer = async move {
        if !tails.is_empty() {
            let counters = tail_counters;
            tail_files(
                tails,
                tx,
                monitoring,
                counters,
                options.poll_interval,
                tail_shutdown,
            )
            .await;
        }
    };
    let batcher = Batching {
        batcher: Batcher::new(options.batch),
        sink,
        checkpoints,
        paths,
        counters,
        dirty: false,
        saved_at: None,
        save_failed: false,
    };
    tokio::join!(tailer, batcher.run(rx, shutdown.clone()));
}

/// Polls every file each `poll_interval` (at once again while a file has more than one poll's
/// budget to read) and hands the lines on, until `shutdown`. Reads nothing while paused.
async fn tail_files(
    tails: Vec<FileTail>,
    tx: mpsc::Sender<Input>,
    monitoring: watch::Receiver<MonitoringState>,
    counters: Arc<LogCounters>,
    poll_interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tails: Vec<Option<FileTail>> = tails.into_iter().map(Some).collect();
    let mut errors: Vec<Option<String>> = vec![None; tails.len()];
    let mut buf = Some(Vec::new());
    loop {
        let mut more = false;
        if *monitoring.borrow() == MonitoringState::Running {
            for (idx, slot) in tails.iter_mut().enumerate() {
                let Some(mut tail) = slot.take() else {
                    continue;
                };
                let mut read_buf = buf.take().unwrap_or_default();
                let read_ms = now_ms();
                let polled = tokio::task::spawn_blocking(move || {
                    let chunk = tail.poll(read_ms, &mut read_buf);
                    (tail, read_buf, chunk)
                })
                .await;
                let (tail, read_buf, mut chunk) = match polled {
                    Ok(polled) => polled,
                    Err(error) => {
                        error!(%error, file = idx, "Tailing a log file failed; no longer tailing it.");
                        continue;
                    }
                };
                buf = Some(read_buf);
                let error = chunk.error.take().map(|e| e.to_string());
                if error.is_some() && error != errors[idx] {
                    warn!(
                        path = %tail.spec().path.display(),
                        error = error.as_deref().unwrap_or_default(),
                        "Cannot read the log file; retrying."
                    );
                }
                errors[idx] = error;
                *slot = Some(tail);
                LogCounters::add(&counters.truncated, chunk.n_truncated);
                more |= chunk.more;
                if chunk.is_empty() {
                    continue;
                }
                tokio::select! {
                    sent = tx.send(Input::File(idx, chunk)) => if sent.is_err() { return },
                    // Not yet journaled, so not yet saved: read again after the restart.
                    () = shutdown.cancelled() => return,
                }
            }
        }
        if more && !shutdown.is_cancelled() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(poll_interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The batcher task's state.
#[derive(Debug)]
struct Batching {
    batcher: Batcher,
    sink: RecordSink,
    checkpoints: Checkpoints,
    /// Path of each `[[logs]]` entry, by index.
    paths: Vec<PathBuf>,
    counters: Arc<LogCounters>,
    /// Positions moved since the last save.
    dirty: bool,
    saved_at: Option<Instant>,
    /// The last save failed (logged once until one succeeds).
    save_failed: bool,
}

impl Batching {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>, shutdown: CancellationToken) {
        loop {
            let deadline = self.batcher.deadline().map(Instant::from_std);
            let save_at = self.dirty.then(|| {
                self.saved_at
                    .map_or_else(Instant::now, |at| at + SAVE_INTERVAL)
            });
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => self.accept(input).await,
                    None => break,
                },
                () = at(deadline) => {
                    if self.batcher.is_due(Instant::now().into_std()) {
                        self.flush().await;
                    }
                }
                () = at(save_at) => self.save().await,
                () = shutdown.cancelled() => break,
            }
        }
        // Take what the sources queued before they saw the shutdown; later sends fail.
        rx.close();
        while let Ok(input) = rx.try_recv() {
            self.accept(input).await;
        }
        self.flush().await;
        if self.dirty {
            self.save().await;
        }
    }

    async fn accept(&mut self, input: Input) {
        match input {
            Input::File(file, chunk) => {
                for (entry, end) in chunk.entries.into_iter().zip(chunk.ends) {
                    let now = Instant::now().into_std();
                    self.batcher.push(now, entry, Source::File(file), Some(end));
                    if self.batcher.is_full() {
                        self.flush().await;
                    }
                }
                if let Some(position) = chunk.end
                    && let Some(mark) = self.batcher.mark(Mark { file, position })
                {
                    self.commit(&[mark]);
                }
            }
            Input::Push(entries) => {
                for entry in entries {
                    let now = Instant::now().into_std();
                    self.batcher.push(now, entry, Source::Push, None);
                    if self.batcher.is_full() {
                        self.flush().await;
                    }
                }
            }
        }
    }

    /// Journals the pending lines as one record, then moves their files' positions.
    async fn flush(&mut self) {
        if self.batcher.is_empty() {
            return;
        }
        let Batch {
            entries,
            marks,
            n_file,
            n_push,
        } = self.batcher.take();
        let n_lines = entries.len();
        match self.sink.append(Record::Logs(LogRecord { entries })).await {
            Ok(appended) => {
                trace!(seq = appended.seq, n_lines, "Log lines journaled.");
                LogCounters::add(&self.counters.file_lines, n_file);
                LogCounters::add(&self.counters.push_lines, n_push);
                self.commit(&marks);
            }
            Err(error) => {
                // The positions stay behind these lines; the next batch's move past them.
                error!(%error, n_lines, "Could not journal log lines; they are lost.");
                LogCounters::add(&self.counters.dropped_journal, n_lines as u64);
            }
        }
    }

    fn commit(&mut self, marks: &[Mark]) {
        for mark in marks {
            if let Some(path) = self.paths.get(mark.file) {
                self.dirty |= self.checkpoints.set(path, mark.position);
            }
        }
    }

    /// Writes the positions, on a blocking thread.
    async fn save(&mut self) {
        let snapshot = self.checkpoints.clone();
        self.saved_at = Some(Instant::now());
        self.dirty = false;
        let result = tokio::task::spawn_blocking(move || snapshot.save()).await;
        let error = match result {
            Ok(Ok(())) => {
                self.save_failed = false;
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        // Try again at the next interval.
        self.dirty = true;
        if !self.save_failed {
            warn!(%error, "Cannot save the log positions; retrying.");
            self.save_failed = true;
        }
    }
}

/// Waits until `deadline`, or forever when there is none.
async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
