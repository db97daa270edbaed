//! Tailing one log file across rotation. Blocking (file reads and `stat`s): the driver runs each
//! poll on a blocking thread.
//!
//! A file is known by its (device, inode) and read from a byte offset; a [`Position`] is the three
//! together, and it only ever points at a line boundary (the start of the first line not yet
//! turned into an entry), so a saved position resumes at a whole line.
//!
//! Each poll first looks at what the path names now ([`change`]):
//! - the same file, as long as what was read or longer: read on;
//! - the same file, shorter (copytruncate): read it again from offset 0;
//! - another file, or none (rename or delete rotation): read the open file to its end, then open
//!   the file now at the path from its start.
//!
//! Where to begin in a newly opened file is [`start`]: at the saved position when it names that
//! file; in the file the saved position names, found among the path's directory's files by its
//! inode, when the path was rotated while the agent was away (then the new file from its start);
//! else at the end or the beginning (`start_at`) for a file present when the agent started, and at
//! the beginning for one that appears later.
//!
//! Bounded: at most [`READ_BUDGET`] bytes per poll (the driver polls again at once when that was
//! not enough) and lines of at most [`MAX_LINE_BYTES`] (the rest of a longer line is skipped and
//! the line counted as truncated).
//!
//! Known limits, as for other tailers that poll: lines a writer appends to a rotated file after
//! the tailer read it to its end are not read; a file truncated and written past the old offset
//! between two polls is not seen as truncated; files created and rotated away entirely between
//! two polls (or while monitoring is paused) are not read; a new file that reuses the inode of
//! the one a saved position names, while the agent is stopped, resumes at that offset.

use std::{
    fs::{File, Metadata},
    io::{self, Read as _, Seek as _, SeekFrom},
    os::unix::fs::MetadataExt as _,
    path::Path,
};

use aisemble_shared::{config::StartAt, wire::LogEntry};
use tracing::{debug, info, warn};

use super::{LogFileSpec, parse};

/// Longest line kept, in bytes; the rest of a longer line is skipped.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// Most bytes read from one file in one poll.
pub(crate) const READ_BUDGET: usize = 64 << 10;

/// Bytes read at a time.
const READ_CHUNK: usize = 64 << 10;

/// Most file switches (rotations) followed in one poll.
const MAX_SWITCHES_PER_POLL: usize = 4;

/// Most directory entries looked at to find a file rotated away while the agent was stopped.
const MAX_DIR_ENTRIES: usize = 10_000;

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    /// Device number.
    pub(crate) dev: u64,
    /// Inode number.
    pub(crate) ino: u64,
}

impl FileId {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A line boundary in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// The file.
    pub(crate) id: FileId,
    /// Bytes before the boundary.
    pub(crate) offset: u64,
}

/// Where to begin in the file a path names when the tailer opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// At this offset of that file.
    At(u64),
    /// The saved position is in another file (the path was rotated while the agent was away):
    /// finish that file from the saved offset if it can still be found, then this one from 0.
    Rotated(Position),
}

/// Decides where to begin in the file `current` (of `size` bytes) now at the path: `saved` is the
/// position saved for the path, `at_startup` whether the file is there as the agent starts.
pub(crate) fn start(
    saved: Option<Position>,
    current: FileId,
    size: u64,
    at_startup: bool,
    start_at: StartAt,
) -> Start {
    match saved {
        Some(saved) if saved.id == current && size >= saved.offset => Start::At(saved.offset),
        // Truncated while the agent was away: all of it is new.
        Some(saved) if saved.id == current => Start::At(0),
        Some(saved) => Start::Rotated(saved),
        None if at_startup && start_at == StartAt::End => Start::At(size),
        // A file that appears while the agent runs holds only new lines.
        None => Start::At(0),
    }
}

/// What happened to the open file since the last poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing, or it grew.
    Same,
    /// It is shorter than what was read: truncated in place (copytruncate).
    Truncated,
    /// The path names another file, or none: rotated by rename, or deleted.
    Rotated,
}

/// Compares the open file (`open`, now `open_size` bytes, read up to `read_offset`) with what the
/// path names now (`at_path`).
pub(crate) fn change(
    open: FileId,
    open_size: u64,
    read_offset: u64,
    at_path: Option<FileId>,
) -> Change {
    match at_path {
        Some(id) if id == open && open_size < read_offset => Change::Truncated,
        Some(id) if id == open => Change::Same,
        _ => Change::Rotated,
    }
}

/// What one poll of a file read.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// New lines, in file order.
    pub(crate) entries: Vec<LogEntry>,
    /// The position after each entry's line (same length as `entries`).
    pub(crate) ends: Vec<Position>,
    /// The position after everything this poll consumed (blank lines, file switches), when it
    /// moved since the last poll.
    pub(crate) end: Option<Position>,
    /// Lines cut to [`MAX_LINE_BYTES`].
    pub(crate) n_truncated: u64,
    /// The read budget ran out before the end of the file: poll again soon.
    pub(crate) more: bool,
    /// Why the poll stopped early, if it did.
    pub(crate) error: Option<io::Error>,
}

impl Chunk {
    /// Whether there is nothing to hand on.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.end.is_none()
    }
}

/// The tailing state of one configured file.
#[derive(Debug)]
pub(crate) struct FileTail {
    spec: LogFileSpec,
    /// The saved position, until the first file is opened.
    saved: Option<Position>,
    /// No poll has looked at the path yet.
    at_startup: bool,
    open: Option<OpenFile>,
    /// Where the last file read (rotated away, none at the path since) ended.
    closed_at: Option<Position>,
    /// The position last reported in a [`Chunk`].
    reported: Option<Position>,
    /// The path was missing at the last poll (logged once).
    missing: bool,
}

impl FileTail {
    /// Tails `spec`, resuming at `saved` when it is given.
    pub(crate) fn new(spec: LogFileSpec, saved: Option<Position>) -> Self {
        Self {
            spec,
            saved,
            at_startup: true,
            open: None,
            closed_at: None,
            reported: saved,
            missing: false,
        }
    }

    /// The configured file.
    pub(crate) fn spec(&self) -> &LogFileSpec {
        &self.spec
    }

    /// Reads what is new (up to [`READ_BUDGET`] bytes), following rotation. `read_ms` timestamps
    /// lines that carry no time of their own; `buf` is a reusable read buffer.
    pub(crate) fn poll(&mut self, read_ms: i64, buf: &mut Vec<u8>) -> Chunk {
        let mut chunk = Chunk::default();
        let mut budget = READ_BUDGET;
        if buf.len() != READ_CHUNK {
            buf.resize(READ_CHUNK, 0);
        }
        if let Err(error) = self.poll_into(&mut chunk, &mut budget, read_ms, buf) {
            chunk.error = Some(error);
        }
        let now = self
            .open
            .as_ref()
            .map(OpenFile::position)
            .or(self.closed_at);
        if now != self.reported {
            chunk.end = now;
            self.reported = now;
        }
        chunk
    }

    fn poll_into(
        &mut self,
        chunk: &mut Chunk,
        budget: &mut usize,
        read_ms: i64,
        buf: &mut [u8],
    ) -> io::Result<()> {
        for _ in 0..MAX_SWITCHES_PER_POLL {
            if self.open.is_none() && !self.open_path()? {
                return Ok(());
            }
            let Some(open) = self.open.as_mut() else {
                return Ok(());
            };
            if !open.draining {
                let at_path = match std::fs::metadata(&self.spec.path) {
                    Ok(meta) => Some(FileId::of(&meta)),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                    Err(error) => return Err(error),
                };
                let size = open.file.metadata()?.len();
                match change(open.id, size, open.read_offset, at_path) {
                    Change::Same => {}
                    Change::Truncated => {
                        info!(path = %self.spec.path.display(), "Log file truncated; reading it from its start.");
                        open.finish_line(&self.spec, read_ms, chunk);
                        open.file.seek(SeekFrom::Start(0))?;
                        open.read_offset = 0;
                        open.line_start = 0;
                    }
                    Change::Rotated => {
                        debug!(path = %self.spec.path.display(), "Log file rotated; finishing the old one.");
                        open.draining = true;
                    }
                }
            }
            let at_end = open.read_lines(&self.spec, read_ms, budget, buf, chunk)?;
            if !at_end {
                chunk.more = true;
                return Ok(());
            }
            if !open.draining {
                return Ok(());
            }
            // The rotated file is read to its end: its last line ends there, newline or not.
            open.finish_line(&self.spec, read_ms, chunk);
            self.closed_at = Some(open.position());
            self.open = None;
        }
        Ok(())
    }

    /// Opens the file at the path (or, after a rotation while the agent was away, the file the
    /// saved position names); false when there is none yet.
    fn open_path(&mut self) -> io::Result<bool> {
        let at_startup = std::mem::replace(&mut self.at_startup, false);
        let file = match File::open(&self.spec.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if let Some(saved) = self.saved.take()
                    && let Some(old) = find_rotated(&self.spec.path, saved)
                {
                    self.use_file(old, true);
                    return Ok(true);
                }
                if !self.missing {
                    info!(path = %self.spec.path.display(), "Log file not there yet; waiting for it.");
                    self.missing = true;
                }
                return Ok(false);
            }
            Err(error) => return Err(error),
        };
        self.missing = false;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let id = FileId::of(&meta);
        match start(
            self.saved.take(),
            id,
            meta.len(),
            at_startup,
            self.spec.start_at,
        ) {
            Start::At(offset) => self.use_file(OpenFile::new(file, id, offset)?, false),
            Start::Rotated(saved) => match find_rotated(&self.spec.path, saved) {
                // Finish the old file; the next open takes this one from its start.
                Some(old) => self.use_file(old, true),
                None => {
                    warn!(
                        path = %self.spec.path.display(),
                        "Log file replaced while the agent was stopped and the old one is gone; \
                         lines written to it after the saved position are lost."
                    );
                    self.use_file(OpenFile::new(file, id, 0)?, false);
                }
            },
        }
        Ok(true)
    }

    fn use_file(&mut self, mut open: OpenFile, draining: bool) {
        open.draining = draining;
        self.closed_at = None;
        self.open = Some(open);
    }
}

/// An open file and how far it was read.
#[derive(Debug)]
struct OpenFile {
    file: File,
    id: FileId,
    /// Bytes read from the file (complete lines and `partial`).
    read_offset: u64,
    /// Start of the first line not yet turned into an entry.
    line_start: u64,
    /// The start of a line whose newline has not been read yet (at most [`MAX_LINE_BYTES`]).
    partial: Vec<u8>,
    /// The pending line is longer than [`MAX_LINE_BYTES`]; what is beyond is skipped.
    overlong: bool,
    /// The path names another file now: read this one to its end, then close it.
    draining: bool,
}

impl OpenFile {
    fn new(mut file: File, id: FileId, offset: u64) -> io::Result<Self> {
        file.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            file,
            id,
            read_offset: offset,
            line_start: offset,
            partial: Vec::new(),
            overlong: false,
            draining: false,
        })
    }

    fn position(&self) -> Position {
        Position {
            id: self.id,
            offset: self.line_start,
        }
    }

    /// Reads and splits lines until the end of the file (true) or of the budget (false).
    fn read_lines(
        &mut self,
        spec: &LogFileSpec,
        read_ms: i64,
        budget: &mut usize,
        buf: &mut [u8],
        chunk: &mut Chunk,
    ) -> io::Result<bool> {
        loop {
            if *budget == 0 {
                return Ok(false);
            }
            let want = buf.len().min(*budget);
            let n_read = match self.file.read(&mut buf[..want]) {
                Ok(0) => return Ok(true),
                Ok(n_read) => n_read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            *budget -= n_read;
            let data = &buf[..n_read];
            let mut start = 0;
            while let Some(idx) = data[start..].iter().position(|b| *b == b'\n') {
                let end = start + idx;
                let line_end = self.read_offset + end as u64 + 1;
                self.emit(&data[start..end], line_end, spec, read_ms, chunk);
                start = end + 1;
            }
            self.keep(&data[start..]);
            self.read_offset += n_read as u64;
        }
    }

    /// Turns the pending line plus `tail` (the bytes before its newline) into an entry ending at
    /// `line_end`.
    fn emit(
        &mut self,
        tail: &[u8],
        line_end: u64,
        spec: &LogFileSpec,
        read_ms: i64,
        chunk: &mut Chunk,
    ) {
        let (entry, truncated) = if self.partial.is_empty() && !self.overlong {
            let kept = &tail[..tail.len().min(MAX_LINE_BYTES)];
            (line_entry(kept, spec, read_ms), kept.len() < tail.len())
        } else {
            self.keep(tail);
            let entry = line_entry(&self.partial, spec, read_ms);
            // After a long line, give its memory back.
            if self.partial.capacity() > 8 << 10 {
                self.partial = Vec::new();
            } else {
                self.partial.clear();
            }
            (entry, self.overlong)
        };
        self.overlong = false;
        self.line_start = line_end;
        if truncated {
            chunk.n_truncated += 1;
        }
        if let Some(entry) = entry {
            chunk.entries.push(entry);
            chunk.ends.push(self.position());
        }
    }

    /// Ends the pending line where the reading stopped (end of a rotated file, truncation).
    fn finish_line(&mut self, spec: &LogFileSpec, read_ms: i64, chunk: &mut Chunk) {
        if !self.partial.is_empty() || self.overlong {
            self.emit(&[], self.read_offset, spec, read_ms, chunk);
        }
    }

    /// Adds `bytes` to the pending line, up to [`MAX_LINE_BYTES`].
    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES - self.partial.len();
        if bytes.len() > room {
            self.overlong = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// One line's entry; none for a blank line.
fn line_entry(bytes: &[u8], spec: &LogFileSpec, read_ms: i64) -> Option<LogEntry> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let text = String::from_utf8_lossy(bytes);
    Some(parse::parse_line(
        spec.format,
        &text,
        &spec.service,
        read_ms,
    ))
}

/// The file `saved` names, among the regular files of `path`'s directory, opened at the saved
/// offset (or at 0 if it is now shorter).
fn find_rotated(path: &Path, saved: Position) -> Option<OpenFile> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.take(MAX_DIR_ENTRIES).flatten() {
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() || FileId::of(&meta) != saved.id {
            continue;
        }
        let file = File::open(entry.path()).ok()?;
        let meta = file.metadata().ok()?;
        if FileId::of(&meta) != saved.id {
            return None;
        }
        let offset = if meta.len() >= saved.offset {
            saved.offset
        } else {
            0
        };
        info!(
            path = %path.display(),
            rotated = %entry.path().display(),
            "Log file rotated while the agent was stopped; finishing the old one first."
        );
        return OpenFile::new(file, saved.id, offset).ok();
    }
    None
}
