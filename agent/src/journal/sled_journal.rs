//! The journal on sled 0.34.
//!
//! Layout: one sled database (at the path given to [`SledJournal::open`]) with one tree, so that
//! every change is a single atomic `apply_batch`:
//!
//! | key | value |
//! | --- | --- |
//! | `r` + seq (u64 big-endian, so byte order is numeric order) | encoded record |
//! | `m:last_seq` | u64 BE: highest sequence number assigned |
//! | `m:dropped` | u64 BE: records evicted unsent, ever |
//! | `m:id` | u64 BE: random journal id, written at creation |
//!
//! Durability: every append is flushed before it returns (sled's `flush` writes its buffers and
//! calls `sync_file_range`), so a record survives `kill -9` of the agent. sled's background flusher
//! fsyncs every 5 s, the window a power loss can cost; more often would wake an idle agent for
//! nothing (every 500 ms, sled's default, doubled the agent's CPU at a 10 s interval). Depth counters live in memory, rebuilt by one scan on open.
//! sled's page cache is capped small (`cache_capacity`) because its default is 1 GiB.

use std::{path::Path, sync::Mutex};

use aisemble_shared::wire::{BufferStats, JournalEntry};

use super::{Appended, Journal, JournalError};

const RECORD_PREFIX: u8 = b'r';
const LAST_SEQ_KEY: &[u8] = b"m:last_seq";
const DROPPED_KEY: &[u8] = b"m:dropped";
const ID_KEY: &[u8] = b"m:id";
const CACHE_CAPACITY_BYTES: u64 = 1 << 20;

/// A journal in a sled database on disk.
#[derive(Debug)]
pub struct SledJournal {
    id: u64,
    db: sled::Db,
    tree: sled::Tree,
    cap_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone, Copy)]
struct State {
    records: u64,
    bytes: u64,
    dropped: u64,
    last_seq: u64,
}

fn record_key(seq: u64) -> [u8; 9] {
    let mut key = [RECORD_PREFIX; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn seq_of(key: &[u8]) -> Result<u64, JournalError> {
    match key {
        [RECORD_PREFIX, rest @ ..] => rest
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| JournalError::Corrupt(format!("record key of {} bytes", key.len()))),
        _ => Err(JournalError::Corrupt("record key without prefix".into())),
    }
}

fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<u64, JournalError> {
    match tree.get(key)? {
        None => Ok(0),
        Some(value) => value
            .as_ref()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| {
                JournalError::Corrupt(format!("{} is not a u64", String::from_utf8_lossy(key)))
            }),
    }
}

impl SledJournal {
    /// Opens (or creates) the journal at `path`, holding at most `cap_bytes` of records.
    ///
    /// # Errors
    /// When the database cannot be opened (another process holds it, permissions, corruption).
    pub fn open(path: &Path, cap_bytes: u64) -> Result<Self, JournalError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .mode(sled::Mode::LowSpace)
            .flush_every_ms(Some(5000))
            .open()?;
        let tree = db.open_tree("journal")?;
        let id = match read_u64(&tree, ID_KEY)? {
            0 => {
                let id = super::new_journal_id().max(1);
                tree.insert(ID_KEY, &id.to_be_bytes())?;
                db.flush()?;
                id
            }
            id => id,
        };
        let mut state = State {
            dropped: read_u64(&tree, DROPPED_KEY)?,
            last_seq: read_u64(&tree, LAST_SEQ_KEY)?,
            ..State::default()
        };
        for entry in tree.scan_prefix([RECORD_PREFIX]) {
            let (key, value) = entry?;
            state.records += 1;
            state.bytes += value.len() as u64;
            state.last_seq = state.last_seq.max(seq_of(&key)?);
        }
        Ok(Self {
            id,
            db,
            tree,
            cap_bytes,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // State is a copy updated only after sled succeeded; a poisoned lock still holds a
        // consistent value.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes the database occupies on disk (sled amplifies: typically 2-3x the records' bytes).
    ///
    /// # Errors
    /// When sled cannot stat its files.
    pub fn size_on_disk(&self) -> Result<u64, JournalError> {
        Ok(self.db.size_on_disk()?)
    }
}

impl Journal for SledJournal {
    fn append(&self, record: &[u8]) -> Result<Appended, JournalError> {
        let size = record.len() as u64;
        if size > self.cap_bytes {
            return Err(JournalError::RecordTooLarge {
                size,
                cap: self.cap_bytes,
            });
        }
        let mut state = self.lock();
        let mut next = *state;
        let mut batch = sled::Batch::default();
        let mut evicted = 0;
        if next.bytes + size > self.cap_bytes {
            for entry in self.tree.scan_prefix([RECORD_PREFIX]) {
                if next.bytes + size <= self.cap_bytes {
                    break;
                }
                let (key, value) = entry?;
                batch.remove(key);
                next.bytes -= value.len() as u64;
                next.records -= 1;
                evicted += 1;
            }
            next.dropped += evicted;
            batch.insert(DROPPED_KEY, &next.dropped.to_be_bytes());
        }
        next.last_seq += 1;
        next.records += 1;
        next.bytes += size;
        batch.insert(&record_key(next.last_seq), record);
        batch.insert(LAST_SEQ_KEY, &next.last_seq.to_be_bytes());
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        *state = next;
        Ok(Appended {
            seq: next.last_seq,
            evicted,
        })
    }

    fn read_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let start = record_key(after.saturating_add(1));
        let end = [RECORD_PREFIX + 1];
        let mut out = Vec::new();
        let mut bytes = 0;
        for entry in self.tree.range(&start[..]..&end[..]) {
            let (key, value) = entry?;
            if out.len() >= max_records || (!out.is_empty() && bytes + value.len() > max_bytes) {
                break;
            }
            bytes += value.len();
            out.push(JournalEntry {
                seq: seq_of(&key)?,
                record: value.to_vec(),
            });
        }
        Ok(out)
    }

    fn ack(&self, upto: u64) -> Result<u64, JournalError> {
        let mut state = self.lock();
        let mut next = *state;
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for entry in self.tree.range(record_key(0)..=record_key(upto)) {
            let (key, value) = entry?;
            batch.remove(key);
            next.bytes -= value.len() as u64;
            next.records -= 1;
            removed += 1;
        }
        if removed > 0 {
            self.tree.apply_batch(batch)?;
            *state = next;
        }
        Ok(removed)
    }

    fn stats(&self) -> BufferStats {
        let state = self.lock();
        BufferStats {
            records: state.records,
            bytes: state.bytes,
            dropped_records: state.dropped,
        }
    }

    fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    fn id(&self) -> u64 {
        self.id
    }
}

#[cfg(test)]
mod tests;
