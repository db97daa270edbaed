//! In-memory journal with the same contract as the sled one, for tests of the layers above.

use std::{collections::VecDeque, sync::Mutex};

use aisemble_shared::wire::{BufferStats, JournalEntry};

use super::{Appended, Journal, JournalError};

/// A journal that lives in memory only.
#[derive(Debug)]
pub struct MemoryJournal {
    id: u64,
    cap_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: VecDeque<(u64, Vec<u8>)>,
    bytes: u64,
    dropped: u64,
    last_seq: u64,
}

impl MemoryJournal {
    /// An empty journal holding at most `cap_bytes` of records.
    pub fn new(cap_bytes: u64) -> Self {
        Self {
            id: super::new_journal_id(),
            cap_bytes,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent (each update is a few
        // field writes), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Journal for MemoryJournal {
    fn append(&self, record: &[u8]) -> Result<Appended, JournalError> {
        let size = record.len() as u64;
        if size > self.cap_bytes {
            return Err(JournalError::RecordTooLarge {
                size,
                cap: self.cap_bytes,
            });
        }
        let mut state = self.lock();
        let mut evicted = 0;
        while state.bytes + size > self.cap_bytes {
            let Some((_, old)) = state.records.pop_front() else {
                break;
            };
            state.bytes -= old.len() as u64;
            state.dropped += 1;
            evicted += 1;
        }
        state.last_seq += 1;
        let seq = state.last_seq;
        state.records.push_back((seq, record.to_vec()));
        state.bytes += size;
        Ok(Appended { seq, evicted })
    }

    fn read_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let state = self.lock();
        let mut out = Vec::new();
        let mut bytes = 0;
        for (seq, record) in state.records.iter().filter(|(seq, _)| *seq > after) {
            if out.len() >= max_records || (!out.is_empty() && bytes + record.len() > max_bytes) {
                break;
            }
            bytes += record.len();
            out.push(JournalEntry {
                seq: *seq,
                record: record.clone(),
            });
        }
        Ok(out)
    }

    fn ack(&self, upto: u64) -> Result<u64, JournalError> {
        let mut state = self.lock();
        let mut removed = 0;
        while state.records.front().is_some_and(|(seq, _)| *seq <= upto) {
            if let Some((_, old)) = state.records.pop_front() {
                state.bytes -= old.len() as u64;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn stats(&self) -> BufferStats {
        let state = self.lock();
        BufferStats {
            records: state.records.len() as u64,
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
