//! The batcher's pure core: log lines from every source wait here until one `Record::Logs` is
//! due, when [`BatchLimits::max_lines`] lines or about [`BatchLimits::max_bytes`] are pending, or
//! [`BatchLimits::max_delay`] after the first pending line. Time comes in as `now`; no I/O.
//!
//! File lines carry the position after them ([`Mark`]); a batch hands back the marks of its lines
//! so that the driver moves the saved positions only once the batch is journaled. A mark with no
//! line before it pending (blank lines, a file switch) can be saved at once.

use std::time::{Duration, Instant};

use aisemble_shared::wire::LogEntry;

use super::tail::Position;

/// Lines per record.
pub(crate) const MAX_LINES: usize = 500;

/// About this many bytes of lines per record.
pub(crate) const MAX_BYTES: usize = 256 << 10;

/// Longest a line waits for others.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(1);

/// When a batch is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchLimits {
    /// Lines.
    pub(crate) max_lines: usize,
    /// Estimated bytes (a record may pass it by one line).
    pub(crate) max_bytes: usize,
    /// Since the first pending line.
    pub(crate) max_delay: Duration,
}

impl BatchLimits {
    /// The defaults, with records kept to at most a quarter of a journal of `journal_cap` bytes
    /// (so that a small journal still takes them).
    pub(crate) fn for_journal(journal_cap: u64) -> Self {
        let quarter = usize::try_from(journal_cap / 4).unwrap_or(usize::MAX);
        Self {
            max_lines: MAX_LINES,
            max_bytes: MAX_BYTES.min(quarter).max(1),
            max_delay: MAX_DELAY,
        }
    }

    /// The defaults with another `max_delay` (tests).
    #[cfg(test)]
    pub(crate) fn with_delay(max_delay: Duration) -> Self {
        Self {
            max_delay,
            ..Self::for_journal(u64::MAX)
        }
    }
}

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The `[[logs]]` entry of this index.
    File(usize),
    /// The push endpoint.
    Push,
}

/// A position in the `[[logs]]` entry `file` that may be saved once the lines before it are
/// journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Index of the `[[logs]]` entry.
    pub(crate) file: usize,
    /// The position.
    pub(crate) position: Position,
}

/// Lines to journal as one record, and what to do once they are.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Batch {
    /// The lines, in the order they arrived.
    pub(crate) entries: Vec<LogEntry>,
    /// Positions to save after journaling, oldest first.
    pub(crate) marks: Vec<Mark>,
    /// Lines from files.
    pub(crate) n_file: u64,
    /// Lines pushed.
    pub(crate) n_push: u64,
}

/// Pending lines.
#[derive(Debug)]
pub(crate) struct Batcher {
    limits: BatchLimits,
    pending: Batch,
    bytes: usize,
    first_at: Option<Instant>,
}

impl Batcher {
    /// An empty batcher.
    pub(crate) fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            pending: Batch::default(),
            bytes: 0,
            first_at: None,
        }
    }

    /// Adds a line; a file line comes with the position after it.
    pub(crate) fn push(
        &mut self,
        now: Instant,
        entry: LogEntry,
        source: Source,
        end: Option<Position>,
    ) {
        self.first_at.get_or_insert(now);
        self.bytes += entry_bytes(&entry);
        self.pending.entries.push(entry);
        match source {
            Source::File(file) => {
                self.pending.n_file += 1;
                if let Some(position) = end {
                    self.hold(Mark { file, position });
                }
            }
            Source::Push => self.pending.n_push += 1,
        }
    }

    /// A position reached without a new line. Returned when no line is pending (it may be saved
    /// now); else held until the pending lines are journaled.
    pub(crate) fn mark(&mut self, mark: Mark) -> Option<Mark> {
        if self.pending.entries.is_empty() {
            return Some(mark);
        }
        self.hold(mark);
        None
    }

    /// Whether no line is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.entries.is_empty()
    }

    /// Whether the pending lines fill a record.
    pub(crate) fn is_full(&self) -> bool {
        self.pending.entries.len() >= self.limits.max_lines || self.bytes >= self.limits.max_bytes
    }

    /// When the pending lines are due however few they are.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.first_at.map(|first| first + self.limits.max_delay)
    }

    /// Whether a record is due at `now`.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.is_full() || self.deadline().is_some_and(|deadline| now >= deadline)
    }

    /// Takes every pending line and mark.
    pub(crate) fn take(&mut self) -> Batch {
        self.bytes = 0;
        self.first_at = None;
        std::mem::take(&mut self.pending)
    }

    /// Holds a mark; a later mark of the same file replaces the one before it when no other
    /// file's mark is in between (the usual case: a run of one file's lines).
    fn hold(&mut self, mark: Mark) {
        match self.pending.marks.last_mut() {
            Some(last) if last.file == mark.file => *last = mark,
            _ => self.pending.marks.push(mark),
        }
    }
}

/// About the bytes `entry` adds to an encoded record.
pub(crate) fn entry_bytes(entry: &LogEntry) -> usize {
    // The fixed fields and the strings' length prefixes.
    const OVERHEAD: usize = 32;
    OVERHEAD
        + entry.service.len()
        + entry.message.len()
        + entry.context.len()
        + entry.trace_id.as_ref().map_or(0, String::len)
        + entry.request_id.as_ref().map_or(0, String::len)
}
