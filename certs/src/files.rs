//! File helpers: atomic writes with the final mode set at creation, private directories and the
//! PKI directory lock.
//!
//! Every write goes to a fresh temporary file in the target's directory, created with its final
//! mode (keys are never readable by others, not even for a moment), is synced, and is then
//! renamed over the target. Readers therefore see the old or the new content, never a mix.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use crate::Error;

/// Mode of files holding private keys.
pub(crate) const PRIVATE: u32 = 0o600;
/// Mode of files anyone on the host may read (certificates, the index).
pub(crate) const PUBLIC: u32 = 0o644;

/// Creates `dir` and missing parents with mode 0700; an existing directory is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })
}

/// Replaces `path` with `contents` atomically; the file has `mode` from its creation on.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let dir = parent(path);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(source));
    }
    // Make the rename itself durable.
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

/// Reads a UTF-8 file; `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Whether `path` exists; errors other than "not found" count as existing so that the caller
/// reads it and reports the real problem.
pub(crate) fn exists(path: &Path) -> bool {
    !matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// An advisory lock on the PKI directory (`flock` on a lock file), released on drop.
///
/// Serializes the writers of one PKI directory, in this process or another (the CLI and a
/// running control plane): CA and server certificate creation and every index update.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Name of the lock file inside the PKI directory.
    pub(crate) const FILE: &str = "pki.lock";

    /// Blocks until this process holds the exclusive lock of `dir`.
    pub(crate) fn exclusive(dir: &Path) -> Result<Self, Error> {
        Self::acquire(dir, File::lock)
    }

    /// Blocks until this process holds a shared lock of `dir` (readers that need two files to
    /// match, such as a certificate and its key).
    pub(crate) fn shared(dir: &Path) -> Result<Self, Error> {
        Self::acquire(dir, File::lock_shared)
    }

    fn acquire(dir: &Path, lock: fn(&File) -> io::Result<()>) -> Result<Self, Error> {
        let path = dir.join(Self::FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE)
            .open(&path)
            .map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        lock(&file).map_err(|source| Error::Write { path, source })?;
        Ok(Self { _file: file })
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}
