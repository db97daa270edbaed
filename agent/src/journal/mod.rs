//! The agent's journal: a seq-numbered FIFO of encoded records that survives restarts and outages.
//!
//! Every collected record is appended here first; the uplink reads from it and deletes only what
//! the control plane acknowledged as durably stored. Sequence numbers are assigned on append and
//! only grow, across restarts too. The journal has a size cap on the records' encoded bytes: when
//! an append would exceed it, the oldest records are evicted first and counted in
//! `dropped_records` (persisted), because fresh metrics matter more than old ones.
//!
//! [`SledJournal`] is the on-disk implementation; [`MemoryJournal`] keeps the same contract in
//! memory for tests of the layers above.

mod memory;
mod sled_journal;

pub use memory::MemoryJournal;
pub use sled_journal::SledJournal;

use aisemble_shared::wire::{BufferStats, JournalEntry};

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The storage engine failed (disk full, corruption, permissions).
    #[error("journal storage: {0}")]
    Storage(#[from] sled::Error),
    /// A single record is larger than the whole journal may be.
    #[error("record of {size} bytes exceeds the journal cap of {cap} bytes")]
    RecordTooLarge {
        /// The record's size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The journal's files are damaged.
    #[error("journal is corrupt: {0}")]
    Corrupt(String),
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number assigned to the record.
    pub seq: u64,
    /// Records evicted to make room.
    pub evicted: u64,
}

/// A durable, capped FIFO of records.
pub trait Journal: Send + Sync + std::fmt::Debug + 'static {
    /// Appends a record and assigns its sequence number, evicting the oldest records when the cap
    /// would be exceeded. When this returns, the record survives a crash of the process.
    ///
    /// # Errors
    /// When the record alone exceeds the cap or storage fails.
    fn append(&self, record: &[u8]) -> Result<Appended, JournalError>;

    /// Records with a sequence number greater than `after`, in order, up to `max_records` and
    /// about `max_bytes` (always at least one record if any is available).
    ///
    /// # Errors
    /// When storage fails.
    fn read_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<JournalEntry>, JournalError>;

    /// Deletes every record with a sequence number up to and including `upto`; returns how many.
    ///
    /// # Errors
    /// When storage fails.
    fn ack(&self, upto: u64) -> Result<u64, JournalError>;

    /// Current depth and the eviction counter.
    fn stats(&self) -> BufferStats;

    /// Highest sequence number ever assigned (0 if none).
    fn last_seq(&self) -> u64;

    /// Random id fixed when the journal was created; sequence numbers are unique within it.
    fn id(&self) -> u64;
}

/// A fresh random journal id.
pub(crate) fn new_journal_id() -> u64 {
    // A failing OS random source leaves a time-derived id: still unique enough to tell two
    // journals of one agent apart, which is all the id is for.
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    })
}
