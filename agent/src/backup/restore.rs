//! Restores a snapshot on the task's own thread: everything is written into a staging directory
//! beside the target, each file checked against the hash the control plane recorded, and only
//! then switched into place (an atomic exchange when the target exists, a rename when it does
//! not); the switched files are read back and compared once more. Any failure before the switch
//! removes the staging directory and leaves the target as it was.

use std::{
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
    time::{Duration, UNIX_EPOCH},
};

use aisemble_shared::wire::{EntryKind, RestoreTask, TaskMessage, TaskSummary, is_safe_entry_path};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Receives the snapshot from `rx`, stages, verifies, switches, verifies again.
pub(super) fn run(
    task: &RestoreTask,
    mut rx: mpsc::Receiver<TaskMessage>,
) -> Result<TaskSummary, String> {
    let target = PathBuf::from(&task.target);
    if !target.is_absolute() || target.parent().is_none() {
        return Err(format!(
            "{}: the restore target must be an absolute directory other than /",
            task.target
        ));
    }
    if let Ok(meta) = fs::symlink_metadata(&target)
        && !meta.is_dir()
    {
        return Err(format!("{}: exists and is not a directory", task.target));
    }
    let staging = sibling(&target, &format!("aisemble-restore-{}", task.id))?;
    let parent = target
        .parent()
        .ok_or_else(|| format!("{}: no parent directory", task.target))?;
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    fs::create_dir(&staging).map_err(|e| format!("creating {}: {e}", staging.display()))?;
    let staged = stage(&staging, &mut rx);
    let files = match staged {
        Ok(files) => files,
        Err(reason) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(reason);
        }
    };
    if let Err(reason) = switch(&staging, &target) {
        let _ = fs::remove_dir_all(&staging);
        return Err(reason);
    }
    let mut summary = TaskSummary {
        entries: files.entries,
        bytes: files.bytes,
        skipped_or_verified: 0,
    };
    for (path, expected) in &files.hashes {
        let on_disk = hash_file(&target.join(path))
            .map_err(|e| format!("verifying {path} after the switch: {e}"))?;
        if &on_disk != expected {
            return Err(format!("{path} differs from the manifest after the switch"));
        }
        summary.skipped_or_verified += 1;
    }
    Ok(summary)
}

/// `.<name>.<suffix>` beside `target`, on the same file system so the switch is a rename.
fn sibling(target: &Path, suffix: &str) -> Result<PathBuf, String> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: no usable directory name", target.display()))?;
    Ok(target.with_file_name(format!(".{name}.{suffix}")))
}

/// What was staged: counts and each file's recorded hash.
struct Staged {
    entries: u64,
    bytes: u64,
    hashes: Vec<(String, Vec<u8>)>,
}

/// An open file being written.
struct Open {
    path: String,
    file: fs::File,
    hasher: Sha256,
    mode: u32,
    mtime_ms: i64,
}

fn stage(staging: &Path, rx: &mut mpsc::Receiver<TaskMessage>) -> Result<Staged, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut staged = Staged {
        entries: 0,
        bytes: 0,
        hashes: Vec::new(),
    };
    let mut open: Option<Open> = None;
    // Directory modes are applied last: a read-only directory would refuse its own contents.
    let mut dir_modes = Vec::new();
    loop {
        let Some(message) = rx.blocking_recv() else {
            return Err("the control plane stopped sending before the end".into());
        };
        match message {
            TaskMessage::Entry(entry) => {
                if open.is_some() {
                    return Err("an entry began inside a file".into());
                }
                if !is_safe_entry_path(&entry.path) {
                    return Err(format!("refusing the entry path {:?}", entry.path));
                }
                let path = staging.join(&entry.path);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| format!("creating {}: {e}", parent.display()))?;
                }
                staged.entries += 1;
                match entry.kind {
                    EntryKind::Dir => {
                        fs::create_dir_all(&path)
                            .map_err(|e| format!("creating {}: {e}", entry.path))?;
                        dir_modes.push((path, entry.mode));
                    }
                    EntryKind::Symlink(link) => {
                        std::os::unix::fs::symlink(&link, &path)
                            .map_err(|e| format!("linking {}: {e}", entry.path))?;
                    }
                    EntryKind::File => {
                        let file = fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&path)
                            .map_err(|e| format!("creating {}: {e}", entry.path))?;
                        open = Some(Open {
                            path: entry.path,
                            file,
                            hasher: Sha256::new(),
                            mode: entry.mode,
                            mtime_ms: entry.mtime_ms,
                        });
                    }
                    other => return Err(format!("unsupported entry kind {other:?}")),
                }
            }
            TaskMessage::Data { bytes } => {
                let Some(current) = open.as_mut() else {
                    return Err("data outside a file".into());
                };
                current.hasher.update(&bytes);
                current
                    .file
                    .write_all(&bytes)
                    .map_err(|e| format!("writing {}: {e}", current.path))?;
                staged.bytes += bytes.len() as u64;
            }
            TaskMessage::EntryEnd { sha256 } => {
                let Some(current) = open.take() else {
                    return Err("a file ended that never began".into());
                };
                let got = current.hasher.finalize().to_vec();
                if got != sha256 {
                    return Err(format!(
                        "{}: content does not match its recorded SHA-256",
                        current.path
                    ));
                }
                current
                    .file
                    .sync_all()
                    .map_err(|e| format!("writing {}: {e}", current.path))?;
                let modified = UNIX_EPOCH
                    + Duration::from_millis(u64::try_from(current.mtime_ms).unwrap_or(0));
                let _ = current.file.set_modified(modified);
                fs::set_permissions(
                    staging.join(&current.path),
                    fs::Permissions::from_mode(current.mode & 0o7777),
                )
                .map_err(|e| format!("setting the mode of {}: {e}", current.path))?;
                staged.hashes.push((current.path, got));
            }
            TaskMessage::Done(expected) => {
                if open.is_some() {
                    return Err("the snapshot ended inside a file".into());
                }
                if expected.entries != staged.entries || expected.bytes != staged.bytes {
                    return Err(format!(
                        "expected {} entries and {} bytes, received {} and {}",
                        expected.entries, expected.bytes, staged.entries, staged.bytes
                    ));
                }
                for (path, mode) in dir_modes.into_iter().rev() {
                    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777));
                }
                // The staging directory itself takes the target's usual mode.
                return Ok(staged);
            }
            TaskMessage::Failed { reason } => {
                return Err(format!("the control plane gave up: {reason}"));
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
}

/// Puts `staging` where `target` is. An existing target is exchanged atomically (renameat2
/// `RENAME_EXCHANGE`, so there is no instant without one or the other) and the old contents,
/// now at `staging`, removed.
fn switch(staging: &Path, target: &Path) -> Result<(), String> {
    if fs::symlink_metadata(target).is_err() {
        return fs::rename(staging, target)
            .map_err(|e| format!("moving the restore into {}: {e}", target.display()));
    }
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        staging,
        rustix::fs::CWD,
        target,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(|e| format!("switching {} into place: {e}", target.display()))?;
    fs::remove_dir_all(staging).map_err(|e| {
        format!(
            "removing the replaced contents at {}: {e}",
            staging.display()
        )
    })
}

fn hash_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hasher.finalize().to_vec());
        }
        hasher.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aisemble_shared::wire::FileEntry;

    fn file(path: &str, content: &[u8]) -> Vec<TaskMessage> {
        vec![
            TaskMessage::Entry(FileEntry {
                path: path.into(),
                kind: EntryKind::File,
                mode: 0o640,
                mtime_ms: 1_600_000_000_000,
                size: content.len() as u64,
            }),
            TaskMessage::Data {
                bytes: content.to_vec(),
            },
            TaskMessage::EntryEnd {
                sha256: Sha256::digest(content).to_vec(),
            },
        ]
    }

    fn restore(target: &Path, messages: Vec<TaskMessage>) -> Result<TaskSummary, String> {
        let (tx, rx) = mpsc::channel(messages.len() + 1);
        for m in messages {
            tx.try_send(m).expect("room");
        }
        drop(tx);
        let task = RestoreTask {
            id: 7,
            snapshot: "s".into(),
            target: target.to_string_lossy().into_owned(),
            entries: 0,
            bytes: 0,
        };
        run(&task, rx)
    }

    fn done(entries: u64, bytes: u64) -> TaskMessage {
        TaskMessage::Done(TaskSummary {
            entries,
            bytes,
            skipped_or_verified: 0,
        })
    }

    #[test]
    fn staged_files_replace_the_target_only_when_every_hash_matches() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("conf");
        fs::create_dir(&target).expect("mkdir");
        fs::write(target.join("old.txt"), b"old").expect("write");

        // A corrupted file: nothing changes, and no staging directory is left behind.
        let mut bad = file("etc/a.conf", b"alpha");
        if let TaskMessage::Data { bytes } = &mut bad[1] {
            bytes[0] ^= 1;
        }
        bad.push(done(1, 5));
        let error = restore(&target, bad).expect_err("hash mismatch");
        assert!(error.contains("SHA-256"), "{error}");
        assert_eq!(fs::read(target.join("old.txt")).expect("old kept"), b"old");
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "staging removed"
        );

        // A stream that stops early, a path escaping the target, and wrong totals: the same.
        let mut short = file("a", b"x");
        short.truncate(2);
        assert!(restore(&target, short).is_err());
        let mut escape = file("../escape", b"x");
        escape.push(done(1, 1));
        assert!(
            restore(&target, escape)
                .expect_err("refused")
                .contains("refusing")
        );
        assert!(!dir.path().join("escape").exists());
        let mut totals = file("a", b"x");
        totals.push(done(2, 1));
        assert!(restore(&target, totals).is_err());
        assert_eq!(fs::read(target.join("old.txt")).expect("old kept"), b"old");

        // A good stream: switched in, old contents gone, modes and links kept, verified.
        let mut good = file("etc/a.conf", b"alpha");
        good.extend(file("etc/b.conf", &vec![7u8; 300_000]));
        good.push(TaskMessage::Entry(FileEntry {
            path: "etc/link".into(),
            kind: EntryKind::Symlink("a.conf".into()),
            mode: 0o777,
            mtime_ms: 0,
            size: 0,
        }));
        good.push(done(3, 300_005));
        let summary = restore(&target, good).expect("restored");
        assert_eq!(
            summary.skipped_or_verified, 2,
            "both files re-read and verified"
        );
        assert_eq!(fs::read(target.join("etc/a.conf")).expect("a"), b"alpha");
        assert_eq!(fs::read(target.join("etc/link")).expect("link"), b"alpha");
        assert!(!target.join("old.txt").exists());
        let mode = fs::metadata(target.join("etc/a.conf"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no leftovers"
        );

        // A target that does not exist yet is created by the switch.
        let fresh = dir.path().join("new/deeper");
        let mut one = file("f", b"1");
        one.push(done(1, 1));
        restore(&fresh, one).expect("restored");
        assert_eq!(fs::read(fresh.join("f")).expect("f"), b"1");
    }
}
