//! Small JSON state files that both the running server and the CLI change (`tokens.json`,
//! `enrollment-tokens.json`): read whole, changed under an advisory lock file, written to a
//! temporary file (mode 0600), synced and renamed into place, so a reader never sees half a file
//! and two writers never lose each other's change.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::{Serialize, de::DeserializeOwned};

/// Why a state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not what it should be.
    #[error("{path}: not a {what} file: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// The error.
        source: serde_json::Error,
    },
}

impl FileError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The file's content (`T::default()` when it does not exist) and modification time.
///
/// # Errors
/// When it exists but cannot be read or parsed.
pub fn read<T: DeserializeOwned + Default>(
    path: &Path,
    what: &'static str,
) -> Result<(T, Option<SystemTime>), FileError> {
    match File::open(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok((T::default(), None)),
        Err(source) => Err(FileError::io(path, source)),
        Ok(file) => {
            let modified = file.metadata().and_then(|m| m.modified()).ok();
            let parsed =
                serde_json::from_reader(std::io::BufReader::new(file)).map_err(|source| {
                    FileError::Format {
                        path: path.to_owned(),
                        what,
                        source,
                    }
                })?;
            Ok((parsed, modified))
        }
    }
}

/// The modification time, if the file exists.
pub fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads the file under its lock, applies `change`, and writes the result unless `change` fails.
/// Returns the new content, what `change` returned and the new modification time. Blocking.
///
/// # Errors
/// On I/O or format errors, or `change`'s own error (then nothing is written).
pub fn modify<T, R, E>(
    path: &Path,
    what: &'static str,
    change: impl FnOnce(&mut T) -> Result<R, E>,
) -> Result<(T, R, Option<SystemTime>), E>
where
    T: Serialize + DeserializeOwned + Default,
    E: From<FileError>,
{
    let lock_path = path.with_extension("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| FileError::io(&lock_path, e))?;
    lock.lock().map_err(|e| FileError::io(&lock_path, e))?;
    let (mut content, _) = read::<T>(path, what)?;
    let result = change(&mut content)?;
    let json = serde_json::to_vec_pretty(&content).map_err(|source| FileError::Format {
        path: path.to_owned(),
        what,
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    let mut out = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| FileError::io(&tmp, e))?;
    out.write_all(&json)
        .and_then(|()| out.sync_all())
        .map_err(|e| FileError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| FileError::io(path, e))?;
    let modified = modified(path);
    drop(lock);
    Ok((content, result, modified))
}
