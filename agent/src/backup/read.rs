//! Reads a backup source into task frames, on the task's own thread: files walked under each
//! path (minus excludes), or one command's standard output (`pg_dump`, `redis-cli --rdb`, …).

use std::{
    io::{self, Read},
    path::Path,
    process::{Command, Stdio},
    time::UNIX_EPOCH,
};

use aisemble_shared::wire::{
    BackupSource, EntryKind, FileEntry, TASK_DATA_BYTES, TaskMessage, TaskSummary,
};
use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::warn;

/// The stream is gone: stop reading.
struct Gone;

/// Reads `source` and sends its entries, then `Done` or `Failed`.
pub(super) fn run(source: &BackupSource, tx: &mpsc::Sender<TaskMessage>) {
    let result = match source {
        BackupSource::Paths { paths, excludes } => read_paths(paths, excludes, tx),
        BackupSource::Command { argv, file_name } => read_command(argv, file_name, tx),
        BackupSource::Postgres { url } => read_command(
            &[
                "pg_dump".into(),
                "--format=custom".into(),
                "--no-password".into(),
                format!("--dbname={url}"),
            ],
            "postgres.dump",
            tx,
        ),
        BackupSource::Redis { url } => read_command(
            &[
                "redis-cli".into(),
                "-u".into(),
                url.clone(),
                "--rdb".into(),
                "-".into(),
            ],
            "redis.rdb",
            tx,
        ),
        other => Ok(Err(format!("unsupported backup source {other:?}"))),
    };
    let last = match result {
        Err(Gone) => return,
        Ok(Ok(summary)) => TaskMessage::Done(summary),
        Ok(Err(reason)) => TaskMessage::Failed { reason },
    };
    let _ = tx.blocking_send(last);
}

fn send(tx: &mpsc::Sender<TaskMessage>, message: TaskMessage) -> Result<(), Gone> {
    tx.blocking_send(message).map_err(|_| Gone)
}

fn excludes_set(excludes: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for pattern in excludes {
        let glob = Glob::new(pattern).map_err(|e| format!("exclude {pattern:?}: {e}"))?;
        builder.add(glob);
    }
    builder.build().map_err(|e| format!("excludes: {e}"))
}

fn read_paths(
    paths: &[String],
    excludes: &[String],
    tx: &mpsc::Sender<TaskMessage>,
) -> Result<Result<TaskSummary, String>, Gone> {
    let excluded = match excludes_set(excludes) {
        Ok(set) => set,
        Err(reason) => return Ok(Err(reason)),
    };
    for root in paths {
        let path = Path::new(root);
        if !path.is_absolute() {
            return Ok(Err(format!("{root}: backup paths must be absolute")));
        }
        if let Err(error) = std::fs::symlink_metadata(path) {
            return Ok(Err(format!("{root}: {error}")));
        }
    }
    let mut summary = TaskSummary::default();
    let mut seen = std::collections::HashSet::new();
    for root in paths {
        let walk = walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| !excluded.is_match(entry.path()));
        for entry in walk {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    warn!(%error, "Skipping what cannot be read.");
                    summary.skipped_or_verified += 1;
                    continue;
                }
            };
            let Some(relative) = entry
                .path()
                .to_str()
                .map(|p| p.trim_start_matches('/').to_owned())
            else {
                warn!(path = %entry.path().display(), "Skipping a path that is not UTF-8.");
                summary.skipped_or_verified += 1;
                continue;
            };
            if relative.is_empty() || !seen.insert(relative.clone()) {
                continue;
            }
            match read_entry(entry.path(), relative, tx)? {
                Ok(bytes) => {
                    summary.entries += 1;
                    summary.bytes += bytes;
                }
                Err(error) => {
                    warn!(path = %entry.path().display(), %error, "Skipping what cannot be read.");
                    summary.skipped_or_verified += 1;
                }
            }
        }
    }
    Ok(Ok(summary))
}

/// Sends one entry (and a file's content); returns the content bytes sent.
fn read_entry(
    path: &Path,
    relative: String,
    tx: &mpsc::Sender<TaskMessage>,
) -> Result<io::Result<u64>, Gone> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(error) => return Ok(Err(error)),
    };
    let mtime_ms = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let file_type = metadata.file_type();
    let kind = if file_type.is_dir() {
        EntryKind::Dir
    } else if file_type.is_symlink() {
        match std::fs::read_link(path) {
            Ok(target) => match target.to_str() {
                Some(t) => EntryKind::Symlink(t.to_owned()),
                None => return Ok(Err(io::Error::other("link target is not UTF-8"))),
            },
            Err(error) => return Ok(Err(error)),
        }
    } else if file_type.is_file() {
        EntryKind::File
    } else {
        // Sockets, FIFOs and devices are not content.
        return Ok(Err(io::Error::other("not a file, directory or link")));
    };
    let is_file = kind == EntryKind::File;
    // Open before announcing, so an unreadable file is skipped rather than sent half-described.
    let file = if is_file {
        match std::fs::File::open(path) {
            Ok(f) => Some(f),
            Err(error) => return Ok(Err(error)),
        }
    } else {
        None
    };
    send(
        tx,
        TaskMessage::Entry(FileEntry {
            path: relative,
            kind,
            mode: metadata.permissions().mode() & 0o7777,
            mtime_ms,
            size: if is_file { metadata.len() } else { 0 },
        }),
    )?;
    let Some(file) = file else {
        return Ok(Ok(0));
    };
    match stream_content(file, tx)? {
        Ok((bytes, _)) => Ok(Ok(bytes)),
        // The entry is announced: end it, with what was read, so the stream stays well formed.
        Err(error) => Ok(Err(error)),
    }
}

/// Sends a reader's content as `Data` frames and an `EntryEnd`; returns bytes and hash. On a read
/// error the entry is still ended, with an empty hash so the receiver drops the part it got,
/// and the error returned.
fn stream_content(
    mut reader: impl Read,
    tx: &mpsc::Sender<TaskMessage>,
) -> Result<io::Result<(u64, Vec<u8>)>, Gone> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut failure = None;
    loop {
        let mut buffer = vec![0u8; TASK_DATA_BYTES];
        let mut filled = 0;
        while filled < buffer.len() {
            match reader.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if filled > 0 {
            buffer.truncate(filled);
            hasher.update(&buffer);
            total += filled as u64;
            send(tx, TaskMessage::Data { bytes: buffer })?;
        }
        if failure.is_some() || filled < TASK_DATA_BYTES {
            break;
        }
    }
    let sha256 = hasher.finalize().to_vec();
    send(
        tx,
        TaskMessage::EntryEnd {
            sha256: if failure.is_some() {
                Vec::new()
            } else {
                sha256.clone()
            },
        },
    )?;
    Ok(match failure {
        Some(error) => Err(error),
        None => Ok((total, sha256)),
    })
}

fn read_command(
    argv: &[String],
    file_name: &str,
    tx: &mpsc::Sender<TaskMessage>,
) -> Result<Result<TaskSummary, String>, Gone> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(Err("the command is empty".into()));
    };
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => return Ok(Err(format!("cannot run {program}: {error}"))),
    };
    // Read stderr on the side so a chatty command cannot fill its pipe and stall; keep the tail.
    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = err.read_to_end(&mut text);
            let tail = text.len().saturating_sub(2048);
            String::from_utf8_lossy(&text[tail..]).trim().to_owned()
        })
    });
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Ok(Err("no standard output".into()));
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let entry = TaskMessage::Entry(FileEntry {
        path: file_name.to_owned(),
        kind: EntryKind::File,
        mode: 0o600,
        mtime_ms: now_ms,
        size: 0,
    });
    let streamed = send(tx, entry).and_then(|()| stream_content(stdout, tx));
    let streamed = match streamed {
        Ok(result) => result,
        Err(Gone) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Gone);
        }
    };
    let status = child.wait();
    let stderr = stderr
        .and_then(|handle| handle.join().ok())
        .unwrap_or_default();
    Ok(match (streamed, status) {
        (Err(error), _) => Err(format!("reading {program}'s output: {error}")),
        (_, Err(error)) => Err(format!("waiting for {program}: {error}")),
        (Ok(_), Ok(status)) if !status.success() => Err(if stderr.is_empty() {
            format!("{program} failed ({status})")
        } else {
            format!("{program} failed ({status}): {stderr}")
        }),
        (Ok((bytes, _)), Ok(_)) => Ok(TaskSummary {
            entries: 1,
            bytes,
            skipped_or_verified: 0,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives `good` bytes, then fails as a disk read would.
    struct FailsMidway {
        good: Vec<u8>,
    }

    impl Read for FailsMidway {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good.is_empty() {
                return Err(io::Error::other("EIO"));
            }
            let n = buf.len().min(self.good.len());
            buf[..n].copy_from_slice(&self.good[..n]);
            self.good.drain(..n);
            Ok(n)
        }
    }

    fn frames(reader: impl Read) -> (bool, Vec<TaskMessage>) {
        let (tx, mut rx) = mpsc::channel(16);
        let ok = matches!(stream_content(reader, &tx), Ok(Ok(_)));
        drop(tx);
        let mut frames = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            frames.push(frame);
        }
        (ok, frames)
    }

    #[test]
    fn a_file_read_to_its_end_ends_with_its_hash() {
        let (ok, frames) = frames(&b"all of it"[..]);
        assert!(ok);
        assert_eq!(
            frames.last(),
            Some(&TaskMessage::EntryEnd {
                sha256: Sha256::digest(b"all of it").to_vec()
            })
        );
    }

    #[test]
    fn a_read_error_mid_file_ends_the_entry_with_no_hash() {
        let (ok, frames) = frames(FailsMidway {
            good: b"the first half".to_vec(),
        });
        assert!(!ok, "the error is returned");
        assert_eq!(
            frames,
            [
                TaskMessage::Data {
                    bytes: b"the first half".to_vec()
                },
                TaskMessage::EntryEnd { sha256: Vec::new() },
            ]
        );
    }
}
