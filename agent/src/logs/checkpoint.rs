//! Saved file positions: `<data_dir>/log-positions.json`, one (device, inode, offset) per
//! configured path, written atomically (temporary file, fsync, rename, fsync of the directory).
//!
//! The batcher is the only writer, and it moves a position only after the lines before it are in
//! the journal, so a restart resumes after the last journaled line: nothing is lost, and what is
//! read twice is at most what was journaled after the last save (saves are at most a second
//! apart; a clean stop saves last).
//!
//! Format (version 1):
//! `{"version":1,"files":[{"path":"/var/log/api.log","dev":2049,"ino":131,"offset":5120}]}`.
//! A file that cannot be read as this is reported and ignored (every file then starts as if seen
//! for the first time); positions of paths no longer configured are forgotten.

use std::{
    collections::BTreeMap,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::tail::{FileId, Position};

const VERSION: u32 = 1;

/// The positions, by configured path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoints {
    path: PathBuf,
    files: BTreeMap<PathBuf, Position>,
}

/// The file's layout.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct SavedFile {
    version: u32,
    files: Vec<SavedPosition>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct SavedPosition {
    path: PathBuf,
    dev: u64,
    ino: u64,
    offset: u64,
}

impl Checkpoints {
    /// No positions, to be saved at `path`.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            files: BTreeMap::new(),
        }
    }

    /// Reads the positions saved at `path` for the paths in `configured`. Blocking. A missing
    /// file means none; an unreadable one is returned as the problem, with no positions.
    pub(crate) fn load(path: &Path, configured: &[PathBuf]) -> (Self, Option<String>) {
        let mut checkpoints = Self::new(path.to_owned());
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return (checkpoints, None),
            Err(error) => return (checkpoints, Some(error.to_string())),
        };
        let saved: SavedFile = match serde_json::from_slice(&bytes) {
            Ok(saved) => saved,
            Err(error) => return (checkpoints, Some(error.to_string())),
        };
        if saved.version != VERSION {
            return (
                checkpoints,
                Some(format!("unknown version {}", saved.version)),
            );
        }
        for file in saved.files {
            if configured.contains(&file.path) {
                let position = Position {
                    id: FileId {
                        dev: file.dev,
                        ino: file.ino,
                    },
                    offset: file.offset,
                };
                checkpoints.files.insert(file.path, position);
            }
        }
        (checkpoints, None)
    }

    /// The position saved for `file`.
    pub(crate) fn get(&self, file: &Path) -> Option<Position> {
        self.files.get(file).copied()
    }

    /// Moves `file`'s position; true when it changed.
    pub(crate) fn set(&mut self, file: &Path, position: Position) -> bool {
        match self.files.get_mut(file) {
            Some(old) if *old == position => false,
            Some(old) => {
                *old = position;
                true
            }
            None => {
                self.files.insert(file.to_owned(), position);
                true
            }
        }
    }

    /// Writes the positions atomically. Blocking.
    ///
    /// # Errors
    /// When the data directory is not writable, or a path is not UTF-8 (JSON cannot hold it).
    pub(crate) fn save(&self) -> io::Result<()> {
        let saved = SavedFile {
            version: VERSION,
            files: self
                .files
                .iter()
                .map(|(path, position)| SavedPosition {
                    path: path.clone(),
                    dev: position.id.dev,
                    ino: position.id.ino,
                    offset: position.offset,
                })
                .collect(),
        };
        let json = serde_json::to_vec(&saved).map_err(io::Error::other)?;
        let mut tmp_name = self.path.clone().into_os_string();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path)?;
        // The rename is durable once the directory is.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}
