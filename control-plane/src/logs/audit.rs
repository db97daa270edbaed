//! The tamper-evident audit log (SPEC §8): who did what, one entry per audited API call, each
//! entry holding the SHA-256 of the one before it, so changing, deleting or reordering entries
//! breaks the chain where it happened and [`AuditLog::verify`] says where.
//!
//! Layout (tree `audit`): `e` + sequence number (big-endian) → the entry as JSON; `h` → the
//! chain's head (last sequence number and hash), written in the same atomic batch as each entry,
//! so deleting the newest entries shows too; `b` → the base the oldest kept entry links to, moved
//! forward when retention removes old entries.
//!
//! What a chain cannot do: someone who can rewrite the whole database can rebuild a consistent
//! chain. Each entry's hash is therefore also written to the control plane's own log (target
//! `audit`), a copy outside the database to compare heads against.

use std::{
    ops::ControlFlow,
    sync::{Mutex, PoisonError},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::LogStoreError;

/// The hash the first entry links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Most problems a verification lists (it still checks every entry).
pub const MAX_PROBLEMS: usize = 50;

/// What happened, as the API layer describes it.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// The token's name (`""` when there was no valid token).
    pub actor: String,
    /// The token's id.
    pub token_id: String,
    /// The token's role, or `none`.
    pub role: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// `success`, `failure`, `unauthenticated` or `forbidden`.
    pub outcome: String,
    /// The request's id.
    pub request_id: String,
}

/// One entry of the chain, as stored. `hash` covers every other field.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Who did what, and how it went.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The previous entry's hash (or the base's).
    pub prev_hash: String,
    /// SHA-256 (hex) of the previous hash and this entry's other fields.
    pub hash: String,
}

impl AuditRecord {
    /// The hash this entry should have: SHA-256 over the previous hash and the entry's fields
    /// (each length-prefixed, so no two different entries hash the same bytes).
    pub fn expected_hash(&self) -> String {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        field(self.prev_hash.as_bytes());
        field(&self.seq.to_be_bytes());
        field(&self.timestamp_ms.to_be_bytes());
        let event = &self.event;
        for text in [
            &event.actor,
            &event.token_id,
            &event.role,
            &event.method,
            &event.path,
        ] {
            field(text.as_bytes());
        }
        field(&event.status.to_be_bytes());
        field(event.outcome.as_bytes());
        field(event.request_id.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// A link of the chain: a sequence number and the hash of its entry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ChainPoint {
    /// Sequence number (0: before the first entry).
    pub seq: u64,
    /// Hash.
    pub hash: String,
}

impl ChainPoint {
    fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// One thing wrong with the chain.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry where the chain breaks.
    pub seq: u64,
    /// `modified` (does not match its hash), `link` (does not link to the entry before it),
    /// `missing`, `reordered` (stored under another entry's number), `unreadable` or `head` (the
    /// chain does not end where its recorded head says).
    pub kind: &'static str,
    /// What was found.
    pub message: String,
}

/// The result of a verification.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// No problem found.
    pub valid: bool,
    /// Entries read.
    pub entries: u64,
    /// The chain's base (what the oldest kept entry links to).
    pub base: ChainPoint,
    /// The chain's recorded head.
    pub head: ChainPoint,
    /// Problems, in chain order (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
}

/// The audit log. Appends are serialized by one lock, which defines the chain's order.
#[derive(Debug)]
pub struct AuditLog {
    tree: sled::Tree,
    head: Mutex<ChainPoint>,
}

const HEAD: &[u8] = b"h";
const BASE: &[u8] = b"b";

fn entry_key(seq: u64) -> [u8; 9] {
    let mut key = [b'e'; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn point(tree: &sled::Tree, key: &[u8]) -> Result<Option<ChainPoint>, LogStoreError> {
    Ok(tree
        .get(key)?
        .and_then(|v| serde_json::from_slice::<ChainPoint>(&v).ok()))
}

impl AuditLog {
    /// The audit log in `tree`. Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn open(tree: sled::Tree) -> Result<Self, LogStoreError> {
        let head = match point(&tree, HEAD)? {
            Some(head) => head,
            None => point(&tree, BASE)?.unwrap_or_else(ChainPoint::genesis),
        };
        Ok(Self {
            tree,
            head: Mutex::new(head),
        })
    }

    /// Appends `event` at `timestamp_ms`; returns the stored entry. Blocking.
    ///
    /// # Errors
    /// When sled fails (the chain is then unchanged).
    pub fn append(
        &self,
        event: AuditEvent,
        timestamp_ms: i64,
    ) -> Result<AuditRecord, LogStoreError> {
        let mut head = self.head.lock().unwrap_or_else(PoisonError::into_inner);
        let mut record = AuditRecord {
            seq: head.seq.saturating_add(1),
            timestamp_ms,
            event,
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        record.hash = record.expected_hash();
        let next = ChainPoint {
            seq: record.seq,
            hash: record.hash.clone(),
        };
        let mut batch = sled::Batch::default();
        batch.insert(&entry_key(record.seq), json(&record));
        batch.insert(HEAD, json(&next));
        self.tree.apply_batch(batch)?;
        *head = next;
        Ok(record)
    }

    /// Visits entries newest first until `visit` breaks. Entries that do not decode are skipped
    /// (verification reports them). Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn scan_newest_first(
        &self,
        mut visit: impl FnMut(AuditRecord) -> ControlFlow<()>,
    ) -> Result<(), LogStoreError> {
        for item in self.tree.scan_prefix(b"e").rev() {
            let (_, value) = item?;
            if let Ok(record) = serde_json::from_slice::<AuditRecord>(&value)
                && visit(record).is_break()
            {
                break;
            }
        }
        Ok(())
    }

    /// Checks the whole chain: every entry's hash, every link, no gap, the head. Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn verify(&self) -> Result<Verification, LogStoreError> {
        // Appends wait, so the head read matches the entries read.
        let _appends = self.head.lock().unwrap_or_else(PoisonError::into_inner);
        let base = point(&self.tree, BASE)?.unwrap_or_else(ChainPoint::genesis);
        let head = point(&self.tree, HEAD)?.unwrap_or_else(|| base.clone());
        let mut problems = Vec::new();
        let mut problem = |seq: u64, kind: &'static str, message: String| {
            if problems.len() < MAX_PROBLEMS {
                problems.push(Problem { seq, kind, message });
            }
        };
        let mut previous = base.clone();
        let mut entries = 0;
        for item in self.tree.scan_prefix(b"e") {
            let (key, value) = item?;
            entries += 1;
            let Some(seq) = key
                .get(1..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
            else {
                problem(
                    previous.seq.saturating_add(1),
                    "unreadable",
                    "an entry key of the wrong length".into(),
                );
                continue;
            };
            let Ok(record) = serde_json::from_slice::<AuditRecord>(&value) else {
                problem(
                    seq,
                    "unreadable",
                    format!("entry {seq} is not a valid audit record"),
                );
                previous = ChainPoint {
                    seq,
                    hash: String::new(),
                };
                continue;
            };
            if seq != previous.seq.saturating_add(1) {
                let (first, last) = (previous.seq.saturating_add(1), seq.saturating_sub(1));
                let message = if last > first {
                    format!("entries {first} to {last} are missing")
                } else {
                    format!("entry {first} is missing")
                };
                problem(first, "missing", message);
            }
            if record.seq != seq {
                problem(
                    seq,
                    "reordered",
                    format!("the entry stored as {seq} says it is {}", record.seq),
                );
            } else if record.hash != record.expected_hash() {
                problem(
                    seq,
                    "modified",
                    format!("entry {seq} does not match its hash"),
                );
            } else if seq == previous.seq.saturating_add(1)
                && !previous.hash.is_empty()
                && record.prev_hash != previous.hash
            {
                problem(
                    seq,
                    "link",
                    format!(
                        "entry {seq} does not link to entry {}: that one was changed or replaced",
                        previous.seq
                    ),
                );
            }
            previous = ChainPoint {
                seq,
                hash: record.hash,
            };
        }
        if previous != head {
            problem(
                head.seq,
                "head",
                format!(
                    "the chain ends at entry {} but its recorded head is entry {}",
                    previous.seq, head.seq
                ),
            );
        }
        Ok(Verification {
            valid: problems.is_empty(),
            entries,
            base,
            head,
            problems,
        })
    }

    /// Removes entries older than `cutoff_ms` from the start of the chain and moves the base to
    /// the last one removed, in one atomic batch. Returns how many went. Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn cleanup(&self, cutoff_ms: i64) -> Result<u64, LogStoreError> {
        let _appends = self.head.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = sled::Batch::default();
        let mut base = None;
        let mut removed = 0;
        for item in self.tree.scan_prefix(b"e") {
            let (key, value) = item?;
            let Ok(record) = serde_json::from_slice::<AuditRecord>(&value) else {
                // Never remove what verification must be able to report.
                break;
            };
            if record.timestamp_ms >= cutoff_ms {
                break;
            }
            batch.remove(key);
            removed += 1;
            base = Some(ChainPoint {
                seq: record.seq,
                hash: record.hash,
            });
        }
        if let Some(base) = base {
            batch.insert(BASE, json(&base));
            self.tree.apply_batch(batch)?;
        }
        Ok(removed)
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Structs of strings and numbers always serialize.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> (tempfile::TempDir, sled::Db, AuditLog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        let log = AuditLog::open(db.open_tree("audit").expect("tree")).expect("open");
        (dir, db, log)
    }

    fn event(actor: &str, path: &str) -> AuditEvent {
        AuditEvent {
            actor: actor.into(),
            token_id: "t".into(),
            role: "admin".into(),
            method: "POST".into(),
            path: path.into(),
            status: 200,
            outcome: "success".into(),
            request_id: "r".into(),
        }
    }

    fn fill(log: &AuditLog, n: u64) {
        for i in 1..=n {
            log.append(event("alice", &format!("/ops/x/{i}")), i as i64 * 1000)
                .expect("append");
        }
    }

    fn kinds(v: &Verification) -> Vec<(u64, &'static str)> {
        v.problems.iter().map(|p| (p.seq, p.kind)).collect()
    }

    #[test]
    fn an_untouched_chain_verifies_and_survives_reopening() {
        let (dir, db, log) = log();
        assert!(log.verify().expect("verify").valid);
        fill(&log, 5);
        let v = log.verify().expect("verify");
        assert!(v.valid, "{v:?}");
        assert_eq!((v.entries, v.head.seq), (5, 5));
        drop(log);
        let reopened = AuditLog::open(db.open_tree("audit").expect("tree")).expect("open");
        let sixth = reopened
            .append(event("bob", "/ops/y"), 6000)
            .expect("append");
        assert_eq!(sixth.seq, 6);
        assert!(reopened.verify().expect("verify").valid);
        drop(dir);
    }

    #[test]
    fn a_changed_entry_is_found() {
        let (_dir, db, log) = log();
        fill(&log, 5);
        let tree = db.open_tree("audit").expect("tree");
        let mut record: AuditRecord =
            serde_json::from_slice(&tree.get(entry_key(3)).expect("get").expect("entry"))
                .expect("json");
        record.event.actor = "mallory".into();
        tree.insert(entry_key(3), json(&record)).expect("insert");
        assert_eq!(kinds(&log.verify().expect("verify")), [(3, "modified")]);

        // Re-hashing the changed entry breaks the next link instead.
        record.hash = record.expected_hash();
        tree.insert(entry_key(3), json(&record)).expect("insert");
        assert_eq!(kinds(&log.verify().expect("verify")), [(4, "link")]);
    }

    #[test]
    fn deleted_and_swapped_entries_are_found() {
        let (_dir, db, log) = log();
        fill(&log, 6);
        let tree = db.open_tree("audit").expect("tree");
        tree.remove(entry_key(2)).expect("remove");
        assert_eq!(kinds(&log.verify().expect("verify")), [(2, "missing")]);

        let (_dir, db, log) = self::log();
        fill(&log, 6);
        let tree = db.open_tree("audit").expect("tree");
        let four = tree.get(entry_key(4)).expect("get").expect("entry");
        let five = tree.get(entry_key(5)).expect("get").expect("entry");
        tree.insert(entry_key(4), five).expect("insert");
        tree.insert(entry_key(5), four).expect("insert");
        assert_eq!(
            kinds(&log.verify().expect("verify")),
            // Entry 6 links to the real entry 5, which is no longer where 5 is stored.
            [(4, "reordered"), (5, "reordered"), (6, "link")]
        );

        // Deleting the newest entry leaves the head pointing past the end.
        let (_dir, db, log) = self::log();
        fill(&log, 3);
        db.open_tree("audit")
            .expect("tree")
            .remove(entry_key(3))
            .expect("remove");
        assert_eq!(kinds(&log.verify().expect("verify")), [(3, "head")]);
    }

    #[test]
    fn retention_moves_the_base_and_the_rest_still_verifies() {
        let (_dir, _db, log) = log();
        fill(&log, 10);
        assert_eq!(log.cleanup(4500).expect("cleanup"), 4);
        let v = log.verify().expect("verify");
        assert!(v.valid, "{v:?}");
        assert_eq!((v.entries, v.base.seq, v.head.seq), (6, 4, 10));
        let mut newest = Vec::new();
        log.scan_newest_first(|r| {
            newest.push(r.seq);
            if newest.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("scan");
        assert_eq!(newest, [10, 9]);
    }
}
