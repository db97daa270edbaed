//! Events agents report (a health check going down or up), kept in the `events` tree.
//!
//! Events arrive in journal records, so they share the samples' durability: the WAL holds the
//! payload, and applying it (after the WAL flush, or on replay after a crash) inserts each event
//! under a key made of the agent, the record's timestamp and sequence number and the event's
//! position — re-applying the same WAL entry overwrites the same keys, so an event is stored once.
//! Values are JSON, readable with any sled tool.

use aisemble_shared::wire::Event;
use serde::Serialize;

use super::StoreError;

/// Events of one journal record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvents {
    /// The record's sequence number.
    pub seq: u64,
    /// The record's timestamp.
    pub timestamp_ms: i64,
    /// What happened.
    pub events: Vec<Event>,
}

/// An event as stored, with whose it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// The agent (its certificate name).
    pub agent: String,
    /// When the agent observed it.
    pub timestamp_ms: i64,
    /// What happened.
    pub event: Event,
}

/// The `events` tree.
#[derive(Debug, Clone)]
pub(super) struct EventLog {
    tree: sled::Tree,
}

fn key(agent: &str, seq: u64, timestamp_ms: i64, index: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(agent.len() + 19);
    key.extend_from_slice(agent.as_bytes());
    key.push(0);
    // Timestamps before 1970 sort first; flipping the sign bit keeps big-endian order.
    key.extend_from_slice(&((timestamp_ms as u64) ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key.extend_from_slice(&(index.min(u16::MAX as usize) as u16).to_be_bytes());
    key
}

fn parse(agent_and_rest: &[u8], value: &[u8]) -> Option<StoredEvent> {
    let split = agent_and_rest.iter().position(|b| *b == 0)?;
    let agent = std::str::from_utf8(&agent_and_rest[..split]).ok()?;
    let rest = &agent_and_rest[split + 1..];
    let ts = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?) ^ (1 << 63);
    Some(StoredEvent {
        agent: agent.to_owned(),
        timestamp_ms: ts as i64,
        event: serde_json::from_slice(value).ok()?,
    })
}

impl EventLog {
    pub(super) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// Stores one agent's events; idempotent.
    pub(super) fn insert(&self, agent: &str, records: &[RecordEvents]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for record in records {
            for (i, event) in record.events.iter().enumerate() {
                let value = serde_json::to_vec(event)
                    .map_err(|e| StoreError::Storage(format!("encoding an event: {e}")))?;
                batch.insert(key(agent, record.seq, record.timestamp_ms, i), value);
            }
        }
        Ok(self.tree.apply_batch(batch)?)
    }

    /// The newest `limit` events, newest first, of one agent or of all.
    pub(super) fn recent(&self, agent: Option<&str>, limit: usize) -> Vec<StoredEvent> {
        let decode = |entry: sled::Result<(sled::IVec, sled::IVec)>| {
            entry.ok().and_then(|(k, v)| parse(&k, &v))
        };
        match agent {
            Some(agent) => {
                let mut prefix = agent.as_bytes().to_vec();
                prefix.push(0);
                self.tree
                    .scan_prefix(prefix)
                    .rev()
                    .filter_map(decode)
                    .take(limit)
                    .collect()
            }
            None => {
                let mut all: Vec<StoredEvent> = self.tree.iter().filter_map(decode).collect();
                all.sort_by_key(|e| std::cmp::Reverse(e.timestamp_ms));
                all.truncate(limit);
                all
            }
        }
    }

    /// Removes events older than `oldest_kept_ms`; returns how many.
    pub(super) fn expire(&self, oldest_kept_ms: i64) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for entry in self.tree.iter() {
            let (k, v) = entry?;
            if parse(&k, &v).is_none_or(|e| e.timestamp_ms < oldest_kept_ms) {
                batch.remove(k);
                n += 1;
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use aisemble_shared::wire::CheckStateChange;

    use super::*;

    fn change(check: &str, up: bool) -> Event {
        Event::CheckStateChanged(CheckStateChange {
            check: check.into(),
            kind: "tcp".into(),
            was_up: Some(!up),
            up,
            consecutive_failures: u64::from(!up),
            error: (!up).then(|| "connection refused".into()),
            labels: vec![],
        })
    }

    #[test]
    fn insert_is_idempotent_and_recent_is_newest_first() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let log = EventLog::new(db.open_tree("events").expect("tree"));
        let records = vec![
            RecordEvents {
                seq: 1,
                timestamp_ms: 1_000,
                events: vec![change("db", false)],
            },
            RecordEvents {
                seq: 5,
                timestamp_ms: 2_000,
                events: vec![change("db", true), change("cache", false)],
            },
        ];
        log.insert("node-1", &records).expect("insert");
        log.insert("node-1", &records).expect("replayed insert");
        log.insert("node-10", &records[..1]).expect("insert");
        let mine = log.recent(Some("node-1"), 10);
        assert_eq!(mine.len(), 3, "{mine:?}");
        assert_eq!(mine[0].timestamp_ms, 2_000);
        assert_eq!(mine[2].event, change("db", false));
        assert!(mine.iter().all(|e| e.agent == "node-1"));
        assert_eq!(log.recent(None, 10).len(), 4);
        assert_eq!(log.recent(None, 1)[0].timestamp_ms, 2_000);
        assert_eq!(log.expire(1_500).expect("expire"), 2);
        assert_eq!(log.recent(None, 10).len(), 2);
    }
}
