//! The repository side of a task stream, on a thread of its own (chunking, hashing and file I/O
//! never run on the runtime): [`store_stream`] turns an agent's backup frames into chunks and a
//! manifest; [`verify_snapshot`] reads back every chunk a restore needs before anything is sent;
//! [`send_snapshot`] turns a manifest back into frames.

use aisemble_shared::wire::{
    EntryKind, FileEntry, TASK_DATA_BYTES, TaskMessage, TaskSummary, is_safe_entry_path,
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{
    chunker::Chunker,
    repo::{ManifestEntry, Repository, Snapshot},
};

/// What a backup is of, for its manifest.
#[derive(Debug, Clone)]
pub struct SnapshotMeta {
    /// The job.
    pub job: String,
    /// The agent.
    pub agent: String,
    /// The source in words.
    pub source: String,
    /// When the run began.
    pub started_ms: i64,
}

/// A file being received.
struct Receiving {
    entry: ManifestEntry,
    chunker: Chunker,
    hasher: Sha256,
}

/// Stores the frames of one backup; returns the manifest written, or why there is none. Chunks
/// already stored by a failed run stay until pruned (they are content-addressed: the next run
/// reuses them).
pub fn store_stream(
    repo: &Repository,
    meta: &SnapshotMeta,
    rx: &mut mpsc::Receiver<TaskMessage>,
    now_ms: impl Fn() -> i64,
) -> Result<Snapshot, String> {
    let mut snapshot = Snapshot {
        id: super::repo::random_id(),
        job: meta.job.clone(),
        agent: meta.agent.clone(),
        source: meta.source.clone(),
        started_ms: meta.started_ms,
        finished_ms: 0,
        bytes: 0,
        added_bytes: 0,
        chunks: 0,
        added_chunks: 0,
        entries: Vec::new(),
        skipped: 0,
    };
    let mut current: Option<Receiving> = None;
    let store = |snapshot: &mut Snapshot, file: &mut ManifestEntry, chunk: &[u8]| {
        let (id, added) = repo.put_chunk(chunk).map_err(|e| e.to_string())?;
        snapshot.chunks += 1;
        if added > 0 {
            snapshot.added_chunks += 1;
            snapshot.added_bytes += added;
        }
        file.chunks.push(id);
        Ok::<(), String>(())
    };
    loop {
        let Some(message) = rx.blocking_recv() else {
            return Err("the agent's stream ended before the backup was complete".into());
        };
        match message {
            TaskMessage::Entry(FileEntry {
                path,
                kind,
                mode,
                mtime_ms,
                size: _,
            }) => {
                if current.is_some() {
                    return Err("the agent began an entry inside a file".into());
                }
                if !is_safe_entry_path(&path) {
                    return Err(format!("the agent sent an unsafe path {path:?}"));
                }
                let (kind_name, target) = match kind {
                    EntryKind::File => ("file", None),
                    EntryKind::Dir => ("dir", None),
                    EntryKind::Symlink(target) => ("symlink", Some(target)),
                    other => return Err(format!("unsupported entry kind {other:?}")),
                };
                let entry = ManifestEntry {
                    path,
                    kind: kind_name.into(),
                    target,
                    mode,
                    mtime_ms,
                    size: 0,
                    sha256: String::new(),
                    chunks: Vec::new(),
                };
                if kind_name == "file" {
                    current = Some(Receiving {
                        entry,
                        chunker: Chunker::new(),
                        hasher: Sha256::new(),
                    });
                } else {
                    snapshot.entries.push(entry);
                }
            }
            TaskMessage::Data { bytes } => {
                let Some(file) = current.as_mut() else {
                    return Err("the agent sent data outside a file".into());
                };
                file.hasher.update(&bytes);
                file.entry.size += bytes.len() as u64;
                for chunk in file.chunker.push(&bytes) {
                    store(&mut snapshot, &mut file.entry, &chunk)?;
                }
            }
            TaskMessage::EntryEnd { sha256 } => {
                let Some(Receiving {
                    mut entry,
                    chunker,
                    hasher,
                }) = current.take()
                else {
                    return Err("the agent ended a file that never began".into());
                };
                if sha256.is_empty() {
                    // The agent could not read the file to its end: keep no part of it. Its
                    // chunks stored so far stay until pruned.
                    continue;
                }
                for chunk in chunker.finish() {
                    store(&mut snapshot, &mut entry, &chunk)?;
                }
                let got = hasher.finalize().to_vec();
                if got != sha256 {
                    return Err(format!(
                        "{}: what arrived does not match the SHA-256 the agent read",
                        entry.path
                    ));
                }
                entry.sha256 = hex::encode(got);
                snapshot.bytes += entry.size;
                snapshot.entries.push(entry);
            }
            TaskMessage::Done(summary) => {
                if current.is_some() {
                    return Err("the backup ended inside a file".into());
                }
                if summary.entries != snapshot.entries.len() as u64
                    || summary.bytes != snapshot.bytes
                {
                    return Err(format!(
                        "the agent sent {} entries and {} bytes but {} and {} arrived",
                        summary.entries,
                        summary.bytes,
                        snapshot.entries.len(),
                        snapshot.bytes
                    ));
                }
                snapshot.skipped = summary.skipped_or_verified;
                snapshot.finished_ms = now_ms();
                repo.save_snapshot(&snapshot).map_err(|e| e.to_string())?;
                return Ok(snapshot);
            }
            TaskMessage::Failed { reason } => return Err(reason),
            other => return Err(format!("unexpected {other:?} from the agent")),
        }
    }
}

/// Reads and hashes every chunk of `snapshot`, and checks each file's chunks against its own
/// SHA-256 and size: the restore's integrity check, before anything reaches the agent.
pub fn verify_snapshot(repo: &Repository, snapshot: &Snapshot) -> Result<(), String> {
    for entry in &snapshot.entries {
        if !is_safe_entry_path(&entry.path) {
            return Err(format!("unsafe path {:?} in the manifest", entry.path));
        }
        if entry.kind != "file" {
            continue;
        }
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        for id in &entry.chunks {
            let bytes = repo
                .read_chunk(id)
                .map_err(|e| format!("{}: {e}", entry.path))?;
            size += bytes.len() as u64;
            hasher.update(&bytes);
        }
        if size != entry.size || hex::encode(hasher.finalize()) != entry.sha256 {
            return Err(format!(
                "{}: its chunks do not add up to the recorded size and SHA-256",
                entry.path
            ));
        }
    }
    Ok(())
}

/// The stream is gone.
#[derive(Debug)]
pub struct Gone;

/// Sends a snapshot's entries and content as frames, then `Done` with the totals.
///
/// # Errors
/// `Ok(Err)` when the repository fails mid-way (a `Failed` frame has been sent), `Err(Gone)`
/// when the receiver went away.
pub fn send_snapshot(
    repo: &Repository,
    snapshot: &Snapshot,
    tx: &mpsc::Sender<TaskMessage>,
) -> Result<Result<TaskSummary, String>, Gone> {
    let send = |m: TaskMessage| tx.blocking_send(m).map_err(|_| Gone);
    let mut summary = TaskSummary::default();
    for entry in &snapshot.entries {
        let kind = match (entry.kind.as_str(), &entry.target) {
            ("dir", _) => EntryKind::Dir,
            ("symlink", Some(target)) => EntryKind::Symlink(target.clone()),
            ("file", _) => EntryKind::File,
            (other, _) => {
                let reason = format!("{}: unknown kind {other:?} in the manifest", entry.path);
                send(TaskMessage::Failed {
                    reason: reason.clone(),
                })?;
                return Ok(Err(reason));
            }
        };
        let is_file = kind == EntryKind::File;
        send(TaskMessage::Entry(FileEntry {
            path: entry.path.clone(),
            kind,
            mode: entry.mode,
            mtime_ms: entry.mtime_ms,
            size: entry.size,
        }))?;
        summary.entries += 1;
        if !is_file {
            continue;
        }
        for id in &entry.chunks {
            let bytes = match repo.read_chunk(id) {
                Ok(bytes) => bytes,
                Err(error) => {
                    let reason = format!("{}: {error}", entry.path);
                    send(TaskMessage::Failed {
                        reason: reason.clone(),
                    })?;
                    return Ok(Err(reason));
                }
            };
            summary.bytes += bytes.len() as u64;
            for piece in bytes.chunks(TASK_DATA_BYTES) {
                send(TaskMessage::Data {
                    bytes: piece.to_vec(),
                })?;
            }
        }
        let sha256 = hex::decode(&entry.sha256).unwrap_or_default();
        send(TaskMessage::EntryEnd { sha256 })?;
    }
    send(TaskMessage::Done(summary))?;
    Ok(Ok(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            job: "j".into(),
            agent: "node-1".into(),
            source: "paths /etc".into(),
            started_ms: 1,
        }
    }

    fn file_frames(path: &str, content: &[u8]) -> Vec<TaskMessage> {
        let mut frames = vec![TaskMessage::Entry(FileEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o600,
            mtime_ms: 5,
            size: content.len() as u64,
        })];
        frames.extend(
            content
                .chunks(TASK_DATA_BYTES)
                .map(|c| TaskMessage::Data { bytes: c.to_vec() }),
        );
        frames.push(TaskMessage::EntryEnd {
            sha256: Sha256::digest(content).to_vec(),
        });
        frames
    }

    fn store(repo: &Repository, frames: Vec<TaskMessage>) -> Result<Snapshot, String> {
        let (tx, mut rx) = mpsc::channel(frames.len() + 1);
        for f in frames {
            tx.try_send(f).expect("room");
        }
        drop(tx);
        store_stream(repo, &meta(), &mut rx, || 2)
    }

    #[test]
    fn a_backup_is_stored_deduplicated_and_read_back_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::open_or_init(dir.path()).expect("repo");
        let mut x = 88_172_645_463_325_252u64;
        let big: Vec<u8> = (0..9_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut frames = file_frames("srv/model.bin", &big);
        frames.push(TaskMessage::Entry(FileEntry {
            path: "srv".into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            mtime_ms: 0,
            size: 0,
        }));
        frames.extend(file_frames("srv/small.conf", b"a = 1\n"));
        frames.push(TaskMessage::Done(TaskSummary {
            entries: 3,
            bytes: big.len() as u64 + 6,
            skipped_or_verified: 0,
        }));
        let first = store(&repo, frames.clone()).expect("stored");
        assert!(
            first.chunks >= 3 && first.added_chunks == first.chunks,
            "{first:?}"
        );
        assert!(verify_snapshot(&repo, &first).is_ok());
        let second = store(&repo, frames).expect("stored again");
        assert_eq!(second.added_chunks, 0, "nothing new the second time");
        assert_eq!(second.added_bytes, 0);
        assert_ne!(first.id, second.id);

        // Back out as frames: the same bytes, the same hashes, then the totals.
        let (tx, mut rx) = mpsc::channel(1024);
        let summary = match send_snapshot(&repo, &second, &tx) {
            Ok(Ok(summary)) => summary,
            _ => panic!("sent"),
        };
        drop(tx);
        assert_eq!((summary.entries, summary.bytes), (3, big.len() as u64 + 6));
        let mut content = Vec::new();
        while let Some(m) = rx.blocking_recv() {
            if let TaskMessage::Data { bytes } = m {
                assert!(bytes.len() <= TASK_DATA_BYTES);
                content.extend(bytes);
            }
        }
        assert_eq!(&content[..big.len()], &big[..]);
        assert_eq!(&content[big.len()..], b"a = 1\n");

        // A damaged chunk fails the restore's check before anything is sent.
        let id = &second.entries[0].chunks[1];
        std::fs::write(dir.path().join("data").join(&id[..2]).join(id), b"garbage").expect("write");
        let error = verify_snapshot(&repo, &second).expect_err("damaged");
        assert!(error.contains("srv/model.bin"), "{error}");
    }

    #[test]
    fn bad_streams_store_no_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::open_or_init(dir.path()).expect("repo");
        let mut wrong_hash = file_frames("a", b"xyz");
        wrong_hash[2] = TaskMessage::EntryEnd {
            sha256: vec![0; 32],
        };
        wrong_hash.push(TaskMessage::Done(TaskSummary::default()));
        assert!(
            store(&repo, wrong_hash)
                .expect_err("hash")
                .contains("SHA-256")
        );
        let mut unsafe_path = file_frames("../../etc/passwd", b"x");
        unsafe_path.push(TaskMessage::Done(TaskSummary::default()));
        assert!(
            store(&repo, unsafe_path)
                .expect_err("path")
                .contains("unsafe")
        );
        let cut_short = file_frames("a", b"xyz");
        assert!(store(&repo, cut_short).is_err());
        let mut failed = file_frames("a", b"xyz");
        failed.push(TaskMessage::Failed {
            reason: "pg_dump exited 1".into(),
        });
        assert_eq!(
            store(&repo, failed).expect_err("failed"),
            "pg_dump exited 1"
        );
        let mut totals = file_frames("a", b"xyz");
        totals.push(TaskMessage::Done(TaskSummary {
            entries: 1,
            bytes: 4,
            skipped_or_verified: 0,
        }));
        assert!(store(&repo, totals).is_err());
        assert!(repo.snapshots().expect("list").0.is_empty());
    }

    #[test]
    fn a_file_the_agent_could_not_read_to_its_end_is_left_out_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::open_or_init(dir.path()).expect("repo");
        let mut frames = file_frames("srv/ok.conf", b"a = 1\n");
        let mut cut = file_frames("srv/bad.bin", b"the first half");
        if let Some(TaskMessage::EntryEnd { sha256 }) = cut.last_mut() {
            sha256.clear();
        }
        frames.extend(cut);
        frames.push(TaskMessage::Done(TaskSummary {
            entries: 1,
            bytes: 6,
            skipped_or_verified: 1,
        }));
        let snapshot = store(&repo, frames).expect("stored");
        let paths: Vec<&str> = snapshot.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["srv/ok.conf"]);
        assert_eq!((snapshot.bytes, snapshot.skipped), (6, 1));
        assert!(verify_snapshot(&repo, &snapshot).is_ok());
    }
}
