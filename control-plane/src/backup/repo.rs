//! The backup repository: a local directory of content-addressed chunks and snapshot manifests,
//! in the spirit of restic's layout.
//!
//! ```text
//! <repo>/config.json              format version and chunker parameters
//! <repo>/data/ab/ab12…(64 hex)    one chunk: zstd of its bytes, named by the SHA-256 of the bytes
//! <repo>/snapshots/<id>.json      one manifest: every entry, its SHA-256 and its chunks
//! ```
//!
//! A chunk is written once (a second writer of the same bytes finds it and stores nothing), to a
//! temporary file that is synced and renamed, so a crash leaves either the whole chunk or none. A
//! manifest is written last, the same way, so a snapshot exists only when all its chunks do.
//! Reading a chunk always checks its hash. Every call here blocks (file I/O).

use std::{
    collections::HashSet,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chunker::{AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};

/// Repository format version.
const FORMAT: u32 = 1;
/// zstd level: fast, and most of the gain.
const ZSTD_LEVEL: i32 = 3;

/// Why the repository could not do something.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A chunk is missing, unreadable or not what its name says.
    #[error("chunk {id}: {reason}")]
    Chunk {
        /// Its hash.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A manifest or the config could not be parsed.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No such snapshot.
    #[error("no snapshot {0}")]
    NoSnapshot(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `config.json`.
#[derive(Serialize, Deserialize, Debug)]
struct RepoConfig {
    format: u32,
    id: String,
    chunker: String,
    min_chunk: usize,
    avg_chunk: usize,
    max_chunk: usize,
    compression: String,
}

/// One snapshot's manifest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct Snapshot {
    /// Random id, 16 hex digits.
    pub id: String,
    /// The job that made it.
    pub job: String,
    /// The agent it was read on.
    pub agent: String,
    /// What was read, in words.
    pub source: String,
    /// When reading began, ms since the Unix epoch.
    pub started_ms: i64,
    /// When the manifest was written.
    pub finished_ms: i64,
    /// Content bytes of all files.
    pub bytes: u64,
    /// Compressed bytes this snapshot added to the repository (the rest was already there).
    pub added_bytes: u64,
    /// Chunks referenced.
    pub chunks: u64,
    /// Chunks this snapshot added.
    pub added_chunks: u64,
    /// Every entry, in the order read.
    pub entries: Vec<ManifestEntry>,
    /// Entries the agent could not read (its log names them): not in this snapshot.
    #[serde(default)]
    pub skipped: u64,
}

/// One entry of a manifest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct ManifestEntry {
    /// Relative path (`etc/hosts`).
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    /// A link's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, ms since the Unix epoch.
    pub mtime_ms: i64,
    /// Content bytes.
    pub size: u64,
    /// SHA-256 of the content, hex (files).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// The content's chunks, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<String>,
}

/// What `check` found.
#[derive(Serialize, Debug, Clone, Default, PartialEq, utoipa::ToSchema)]
pub struct CheckReport {
    /// Snapshots read.
    pub snapshots: u64,
    /// Distinct chunks referenced.
    pub chunks: u64,
    /// Chunks whose content was read and hashed.
    pub chunks_read: u64,
    /// Uncompressed bytes read.
    pub bytes_read: u64,
    /// Every problem, one line each; empty when the repository is sound.
    pub errors: Vec<String>,
}

/// A local backup repository.
#[derive(Debug)]
pub struct Repository {
    root: PathBuf,
}

impl Repository {
    /// Opens the repository at `root`, creating it when the directory is absent or empty.
    ///
    /// # Errors
    /// When the directory cannot be created, or holds a repository of another format.
    pub fn open_or_init(root: &Path) -> Result<Self, RepoError> {
        let repo = Self {
            root: root.to_owned(),
        };
        let config_path = root.join("config.json");
        match fs::read(&config_path) {
            Ok(bytes) => {
                let config: RepoConfig =
                    serde_json::from_slice(&bytes).map_err(|e| RepoError::Format {
                        path: config_path.clone(),
                        reason: e.to_string(),
                    })?;
                if config.format != FORMAT
                    || (config.min_chunk, config.avg_chunk, config.max_chunk)
                        != (MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
                {
                    return Err(RepoError::Format {
                        path: config_path,
                        reason: format!(
                            "a repository of format {} with other chunker parameters; this build writes format {FORMAT}",
                            config.format
                        ),
                    });
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                for dir in ["data", "snapshots"] {
                    let path = root.join(dir);
                    fs::create_dir_all(&path).map_err(io(&path))?;
                }
                let config = RepoConfig {
                    format: FORMAT,
                    id: random_id(),
                    chunker: "fastcdc-2020".into(),
                    min_chunk: MIN_CHUNK,
                    avg_chunk: AVG_CHUNK,
                    max_chunk: MAX_CHUNK,
                    compression: format!("zstd-{ZSTD_LEVEL}"),
                };
                let json = serde_json::to_vec_pretty(&config).map_err(|e| RepoError::Format {
                    path: config_path.clone(),
                    reason: e.to_string(),
                })?;
                write_atomically(&config_path, &json)?;
            }
            Err(error) => return Err(io(&config_path)(error)),
        }
        Ok(repo)
    }

    /// The repository's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn chunk_path(&self, id: &str) -> PathBuf {
        self.root.join("data").join(&id[..2]).join(id)
    }

    /// Stores a chunk unless it is there already; returns its id and the bytes added (0 when it
    /// was there).
    ///
    /// # Errors
    /// When writing fails.
    pub fn put_chunk(&self, bytes: &[u8]) -> Result<(String, u64), RepoError> {
        let id = hex::encode(Sha256::digest(bytes));
        let path = self.chunk_path(&id);
        if path.exists() {
            return Ok((id, 0));
        }
        let compressed = zstd::bulk::compress(bytes, ZSTD_LEVEL).map_err(io(&path))?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        write_atomically(&path, &compressed)?;
        Ok((id, compressed.len() as u64))
    }

    /// A chunk's bytes, checked against its id.
    ///
    /// # Errors
    /// When it is missing, cannot be decompressed or does not hash to its id.
    pub fn read_chunk(&self, id: &str) -> Result<Vec<u8>, RepoError> {
        let chunk_error = |reason: String| RepoError::Chunk {
            id: id.to_owned(),
            reason,
        };
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(chunk_error("not a chunk id".into()));
        }
        let path = self.chunk_path(id);
        let compressed = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(chunk_error("missing".into()));
            }
            Err(error) => return Err(io(&path)(error)),
        };
        let bytes = zstd::bulk::decompress(&compressed, MAX_CHUNK)
            .map_err(|e| chunk_error(format!("cannot be decompressed: {e}")))?;
        if hex::encode(Sha256::digest(&bytes)) != id {
            return Err(chunk_error("content does not match its SHA-256".into()));
        }
        Ok(bytes)
    }

    /// Writes a manifest (last, after all its chunks).
    ///
    /// # Errors
    /// When writing fails.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), RepoError> {
        let path = self.snapshot_path(&snapshot.id)?;
        let json = serde_json::to_vec(snapshot).map_err(|e| RepoError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomically(&path, &json)
    }

    fn snapshot_path(&self, id: &str) -> Result<PathBuf, RepoError> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RepoError::NoSnapshot(id.to_owned()));
        }
        Ok(self.root.join("snapshots").join(format!("{id}.json")))
    }

    /// One snapshot.
    ///
    /// # Errors
    /// When it does not exist or cannot be parsed.
    pub fn snapshot(&self, id: &str) -> Result<Snapshot, RepoError> {
        let path = self.snapshot_path(id)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(RepoError::NoSnapshot(id.to_owned()));
            }
            Err(error) => return Err(io(&path)(error)),
        };
        serde_json::from_slice(&bytes).map_err(|e| RepoError::Format {
            path,
            reason: e.to_string(),
        })
    }

    /// Every snapshot, oldest first, and one line per manifest that could not be read.
    ///
    /// # Errors
    /// When the snapshots directory cannot be listed.
    pub fn snapshots(&self) -> Result<(Vec<Snapshot>, Vec<String>), RepoError> {
        let dir = self.root.join("snapshots");
        let mut snapshots = Vec::new();
        let mut problems = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            match self.snapshot(id) {
                Ok(snapshot) => snapshots.push(snapshot),
                Err(error) => problems.push(error.to_string()),
            }
        }
        snapshots.sort_by(|a, b| a.started_ms.cmp(&b.started_ms).then(a.id.cmp(&b.id)));
        Ok((snapshots, problems))
    }

    /// Deletes a manifest (its chunks stay until [`Repository::prune`]).
    ///
    /// # Errors
    /// When it cannot be removed.
    pub fn forget(&self, id: &str) -> Result<(), RepoError> {
        let path = self.snapshot_path(id)?;
        fs::remove_file(&path).map_err(io(&path))
    }

    /// Deletes chunks no manifest references, and leftover temporary files. Call only while no
    /// backup is writing (its chunks are not referenced yet). Returns chunks and bytes removed.
    ///
    /// # Errors
    /// When the manifests cannot all be read (deleting then could lose data) or I/O fails.
    pub fn prune(&self) -> Result<(u64, u64), RepoError> {
        let (snapshots, problems) = self.snapshots()?;
        if let Some(problem) = problems.first() {
            return Err(RepoError::Format {
                path: self.root.join("snapshots"),
                reason: format!("not pruning while a manifest is unreadable: {problem}"),
            });
        }
        let referenced: HashSet<&str> = snapshots
            .iter()
            .flat_map(|s| {
                s.entries
                    .iter()
                    .flat_map(|e| e.chunks.iter().map(String::as_str))
            })
            .collect();
        let (mut removed, mut bytes) = (0, 0);
        self.for_each_chunk_file(|path, name| {
            if !referenced.contains(name) {
                let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(path).map_err(io(path))?;
                removed += 1;
                bytes += size;
            }
            Ok(())
        })?;
        Ok((removed, bytes))
    }

    /// Chunk files and their total size on disk.
    ///
    /// # Errors
    /// When the data directory cannot be listed.
    pub fn usage(&self) -> Result<(u64, u64), RepoError> {
        let (mut chunks, mut bytes) = (0, 0);
        self.for_each_chunk_file(|path, _| {
            chunks += 1;
            bytes += fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            Ok(())
        })?;
        Ok((chunks, bytes))
    }

    fn for_each_chunk_file(
        &self,
        mut visit: impl FnMut(&Path, &str) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        let data = self.root.join("data");
        for prefix in fs::read_dir(&data).map_err(io(&data))? {
            let prefix = prefix.map_err(io(&data))?.path();
            if !prefix.is_dir() {
                continue;
            }
            for file in fs::read_dir(&prefix).map_err(io(&prefix))? {
                let path = file.map_err(io(&prefix))?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned)
                else {
                    continue;
                };
                if name.starts_with(".tmp-") {
                    // A write that never finished.
                    let _ = fs::remove_file(&path);
                    continue;
                }
                visit(&path, &name)?;
            }
        }
        Ok(())
    }

    /// Verifies the repository: every manifest parses, every referenced chunk exists and, with
    /// `read_data`, decompresses to bytes with its SHA-256 (like `restic check --read-data`).
    ///
    /// # Errors
    /// Only when the repository cannot be listed; what is wrong inside it is in the report.
    pub fn check(&self, read_data: bool) -> Result<CheckReport, RepoError> {
        let (snapshots, problems) = self.snapshots()?;
        let mut report = CheckReport {
            snapshots: snapshots.len() as u64,
            errors: problems,
            ..CheckReport::default()
        };
        let mut seen = HashSet::new();
        for snapshot in &snapshots {
            for entry in &snapshot.entries {
                for id in &entry.chunks {
                    if !seen.insert(id.as_str()) {
                        continue;
                    }
                    let problem = if read_data {
                        match self.read_chunk(id) {
                            Ok(bytes) => {
                                report.chunks_read += 1;
                                report.bytes_read += bytes.len() as u64;
                                None
                            }
                            Err(error) => Some(error.to_string()),
                        }
                    } else if id.len() == 64 && self.chunk_path(id).exists() {
                        None
                    } else {
                        Some(format!("chunk {id}: missing"))
                    };
                    if let Some(problem) = problem {
                        report.errors.push(format!(
                            "{problem} (snapshot {}, {})",
                            snapshot.id, entry.path
                        ));
                    }
                }
            }
        }
        report.chunks = seen.len() as u64;
        Ok(report)
    }
}

/// A new 16-hex-digit id.
pub fn random_id() -> String {
    let mut bytes = [0u8; 8];
    // getrandom fails only without an OS random source; then time still makes ids distinct.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_be_bytes();
    }
    hex::encode(bytes)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".tmp-{}", random_id()));
    let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, chunks: Vec<String>) -> Snapshot {
        Snapshot {
            id: id.into(),
            job: "j".into(),
            agent: "a".into(),
            source: "paths".into(),
            started_ms: 1,
            finished_ms: 2,
            bytes: 0,
            added_bytes: 0,
            chunks: chunks.len() as u64,
            added_chunks: 0,
            skipped: 0,
            entries: vec![ManifestEntry {
                path: "f".into(),
                kind: "file".into(),
                target: None,
                mode: 0o644,
                mtime_ms: 0,
                size: 0,
                sha256: String::new(),
                chunks,
            }],
        }
    }

    #[test]
    fn chunks_dedup_verify_and_prune() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::open_or_init(dir.path()).expect("init");
        let (a, added) = repo.put_chunk(&vec![1u8; 100_000]).expect("put");
        assert!(added > 0 && added < 1000, "compressed: {added}");
        assert_eq!(
            repo.put_chunk(&vec![1u8; 100_000]).expect("again").1,
            0,
            "dedup"
        );
        let (b, _) = repo.put_chunk(b"second").expect("put");
        assert_eq!(repo.read_chunk(&a).expect("read"), vec![1u8; 100_000]);
        repo.save_snapshot(&snapshot("00aa", vec![a.clone()]))
            .expect("save");
        assert_eq!(repo.snapshots().expect("list").0.len(), 1);
        assert!(repo.check(true).expect("check").errors.is_empty());

        // Reopening finds the same repository.
        drop(repo);
        let repo = Repository::open_or_init(dir.path()).expect("reopen");
        assert_eq!(repo.usage().expect("usage").0, 2);
        // b is referenced by nothing.
        assert_eq!(repo.prune().expect("prune").0, 1);
        assert!(matches!(repo.read_chunk(&b), Err(RepoError::Chunk { .. })));
        assert!(repo.read_chunk(&a).is_ok());

        // Corruption is found by reading, not by listing.
        let path = repo.chunk_path(&a);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).expect("write");
        assert!(repo.check(false).expect("check").errors.is_empty());
        let report = repo.check(true).expect("check");
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert!(report.errors[0].contains(&a) && report.errors[0].contains("snapshot 00aa"));
        fs::remove_file(&path).expect("rm");
        assert!(repo.check(false).expect("check").errors[0].contains("missing"));

        // Bad ids never touch the file system outside the repository.
        assert!(repo.read_chunk("../../etc/passwd").is_err());
        assert!(matches!(
            repo.snapshot("../x"),
            Err(RepoError::NoSnapshot(_))
        ));
        fs::write(dir.path().join("snapshots/ff.json"), b"{").expect("write");
        assert_eq!(
            repo.snapshots().expect("list").1.len(),
            1,
            "an unreadable manifest is reported"
        );
        assert!(
            repo.prune().is_err(),
            "no pruning past an unreadable manifest"
        );
    }
}
