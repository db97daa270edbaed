//! The log store: agents' log lines in sled, one tree per retention class and UTC day, keyed by
//! time so a search reads only its range, newest or oldest first; and hourly counts kept as lines
//! arrive, so stats never rescan lines.
//!
//! Lines arrive in journal records, so they share the samples' durability: the WAL holds the
//! payload, and applying it (after the WAL flush, or on replay after a crash) inserts each line
//! under a key made of its timestamp, the record's sequence number, the line's position and the
//! agent. Re-applying the same WAL entry finds the same keys, so a line is stored, and counted,
//! once.

use std::{
    collections::BTreeMap,
    ops::{Bound, ControlFlow},
    sync::{PoisonError, RwLock},
    time::{Duration, Instant},
};

use aisemble_shared::wire::{LogEntry, LogLevel};
use serde::{Deserialize, Serialize};

use super::{filter::LogFilter, stored};
use crate::logs::stored::StoredLogRef;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// Most services (and hosts) counted by name per hour; the rest are counted as `(other)`, so a
/// misbehaving pusher cannot grow the hourly counts without bound.
pub const MAX_NAMES_PER_HOUR: usize = 500;

/// How long lines are kept, per class (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    /// Lines below `error`. Default 30 days.
    pub general: Duration,
    /// `error` and `critical` lines. Default 30 days.
    pub error: Duration,
    /// The audit log. Default 90 days.
    pub audit: Duration,
}

impl Default for LogRetention {
    fn default() -> Self {
        Self {
            general: Duration::from_secs(30 * 86_400),
            error: Duration::from_secs(30 * 86_400),
            audit: Duration::from_secs(90 * 86_400),
        }
    }
}

/// A retention class: each has its own trees, so each can be kept for its own time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Below `error`.
    General,
    /// `error` and above.
    Error,
}

impl Class {
    /// Both classes.
    pub const ALL: [Self; 2] = [Self::General, Self::Error];

    /// The class of a level.
    pub fn of(level: LogLevel) -> Self {
        if level.is_error() {
            Self::Error
        } else {
            Self::General
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::General => "general",
            Self::Error => "error",
        }
    }
}

/// Lines of one journal record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordLogs {
    /// The record's sequence number.
    pub seq: u64,
    /// The lines.
    pub entries: Vec<LogEntry>,
}

/// Counts of one hour's lines.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct HourCounts {
    /// Lines.
    pub total: u64,
    /// Lines per level, in [`LogLevel::ALL`] order.
    pub by_level: [u64; 6],
    /// Lines per service.
    pub by_service: BTreeMap<String, u64>,
    /// Lines per host.
    pub by_host: BTreeMap<String, u64>,
}

impl HourCounts {
    /// Error and critical lines.
    pub fn errors(&self) -> u64 {
        LogLevel::ALL
            .iter()
            .zip(self.by_level)
            .filter(|(level, _)| level.is_error())
            .map(|(_, n)| n)
            .sum()
    }

    fn count(&mut self, level: LogLevel, service: &str, host: &str) {
        self.total += 1;
        if let Some(slot) = LogLevel::ALL.iter().position(|l| *l == level) {
            self.by_level[slot] += 1;
        }
        bump(&mut self.by_service, service, 1);
        bump(&mut self.by_host, host, 1);
    }

    /// Adds `other`'s counts (names past [`MAX_NAMES_PER_HOUR`] go to `(other)`).
    pub fn merge(&mut self, other: &Self) {
        self.total += other.total;
        for (mine, theirs) in self.by_level.iter_mut().zip(other.by_level) {
            *mine += theirs;
        }
        for (name, n) in &other.by_service {
            bump(&mut self.by_service, name, *n);
        }
        for (name, n) in &other.by_host {
            bump(&mut self.by_host, name, *n);
        }
    }
}

fn bump(map: &mut BTreeMap<String, u64>, name: &str, n: u64) {
    if let Some(count) = map.get_mut(name) {
        *count += n;
    } else if map.len() < MAX_NAMES_PER_HOUR {
        map.insert(name.to_owned(), n);
    } else {
        *map.entry("(other)".to_owned()).or_default() += n;
    }
}

/// How a scan ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Lines read (matching or not).
    pub scanned: u64,
    /// The visitor stopped the scan.
    pub stopped: bool,
    /// The deadline stopped the scan.
    pub timed_out: bool,
    /// When the visitor stopped the scan: the key of the line it stopped on, so a later scan
    /// can go on after it (`resume_after`).
    pub stopped_at: Option<Vec<u8>>,
}

/// What a cleanup removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Day trees dropped whole.
    pub days_dropped: u64,
    /// Lines removed from the day the cutoff falls in.
    pub lines_removed: u64,
    /// Hourly counts removed.
    pub hours_removed: u64,
}

/// Why the log store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("log store: {0}")]
pub struct LogStoreError(String);

impl From<sled::Error> for LogStoreError {
    fn from(error: sled::Error) -> Self {
        Self(error.to_string())
    }
}

/// The log trees of one sled database.
#[derive(Debug)]
pub struct LogStore {
    db: sled::Db,
    days: RwLock<BTreeMap<(i64, Class), sled::Tree>>,
    hours: sled::Tree,
}

/// A tree's entries in one direction.
type Entries = Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>>;

fn tree_name(class: Class, day: i64) -> String {
    format!("logs.{}.{day}", class.name())
}

fn parse_tree_name(name: &[u8]) -> Option<(i64, Class)> {
    let name = std::str::from_utf8(name).ok()?.strip_prefix("logs.")?;
    let (class, day) = name.split_once('.')?;
    let class = Class::ALL.into_iter().find(|c| c.name() == class)?;
    Some((day.parse().ok()?, class))
}

/// Timestamps sort as unsigned big-endian bytes once the sign bit is flipped.
fn time_key(timestamp_ms: i64) -> [u8; 8] {
    ((timestamp_ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn line_key(timestamp_ms: i64, seq: u64, index: usize, agent: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(18 + agent.len());
    key.extend_from_slice(&time_key(timestamp_ms));
    key.extend_from_slice(&seq.to_be_bytes());
    key.extend_from_slice(&(index.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    key.extend_from_slice(agent.as_bytes());
    key
}

fn day_of(timestamp_ms: i64) -> i64 {
    timestamp_ms.div_euclid(DAY_MS)
}

/// The start of the hour of `timestamp_ms` (saturating: an agent's or a client's time can be
/// anything).
fn hour_of(timestamp_ms: i64) -> i64 {
    timestamp_ms.div_euclid(HOUR_MS).saturating_mul(HOUR_MS)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl LogStore {
    /// The log trees of `db`. Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn open(db: sled::Db) -> Result<Self, LogStoreError> {
        let mut days = BTreeMap::new();
        for name in db.tree_names() {
            if let Some(id) = parse_tree_name(&name) {
                days.insert(id, db.open_tree(&name)?);
            }
        }
        let hours = db.open_tree("logs.hours")?;
        Ok(Self {
            db,
            days: RwLock::new(days),
            hours,
        })
    }

    fn tree(&self, day: i64, class: Class) -> Result<sled::Tree, LogStoreError> {
        if let Some(tree) = read(&self.days).get(&(day, class)) {
            return Ok(tree.clone());
        }
        let tree = self.db.open_tree(tree_name(class, day))?;
        write(&self.days).insert((day, class), tree.clone());
        Ok(tree)
    }

    /// Stores `agent`'s lines; returns how many were new (a line already stored, when a WAL
    /// entry is replayed, is neither stored again nor counted again). Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn insert(&self, agent: &str, records: &[RecordLogs]) -> Result<u64, LogStoreError> {
        let mut hours: BTreeMap<i64, HourCounts> = BTreeMap::new();
        let mut new = 0;
        for record in records {
            for (index, entry) in record.entries.iter().enumerate() {
                let tree = self.tree(day_of(entry.timestamp_ms), Class::of(entry.level))?;
                let key = line_key(entry.timestamp_ms, record.seq, index, agent);
                let value = stored::encode(agent, entry);
                if tree.insert(key, value)?.is_none() {
                    new += 1;
                    hours.entry(hour_of(entry.timestamp_ms)).or_default().count(
                        entry.level,
                        &entry.service,
                        agent,
                    );
                }
            }
        }
        // One writer thread inserts, so read-modify-write of an hour's counts does not race.
        for (hour, counts) in hours {
            let key = time_key(hour);
            let mut stored = self
                .hours
                .get(key)?
                .and_then(|v| serde_json::from_slice::<HourCounts>(&v).ok())
                .unwrap_or_default();
            stored.merge(&counts);
            self.hours
                .insert(key, serde_json::to_vec(&stored).unwrap_or_default())?;
        }
        Ok(new)
    }

    /// Visits the lines `filter` matches, newest first (or oldest first), until `visit` breaks
    /// or `deadline` passes; with `resume_after` (a previous outcome's `stopped_at`), only the
    /// lines after that one in the scan's order. Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn scan(
        &self,
        filter: &LogFilter,
        newest_first: bool,
        deadline: Option<Instant>,
        resume_after: Option<&[u8]>,
        mut visit: impl FnMut(StoredLogRef<'_>) -> ControlFlow<()>,
    ) -> Result<ScanOutcome, LogStoreError> {
        let mut outcome = ScanOutcome::default();
        if filter.end_ms < filter.start_ms {
            return Ok(outcome);
        }
        // Keys start with the line's time, so a resumed scan skips whole days before (or,
        // newest first, after) the line it resumes from.
        let resume_day = resume_after
            .and_then(|key| key.get(..8)?.try_into().ok())
            .map(|time: [u8; 8]| day_of((u64::from_be_bytes(time) ^ (1 << 63)) as i64));
        let classes: Vec<Class> = Class::ALL
            .into_iter()
            .filter(|class| {
                LogLevel::ALL
                    .iter()
                    .any(|level| Class::of(*level) == *class && filter.wants_level(*level))
            })
            .collect();
        let (first_day, last_day) = (day_of(filter.start_ms), day_of(filter.end_ms));
        let days: Vec<i64> = {
            let trees = read(&self.days);
            let mut days: Vec<i64> = trees
                .keys()
                .filter(|(day, class)| {
                    (first_day..=last_day).contains(day) && classes.contains(class)
                })
                .map(|(day, _)| *day)
                .collect();
            days.dedup();
            days
        };
        let ordered: Box<dyn Iterator<Item = &i64>> = if newest_first {
            Box::new(days.iter().rev())
        } else {
            Box::new(days.iter())
        };
        let mut lower = Bound::Included(time_key(filter.start_ms).to_vec());
        let mut upper = match filter.end_ms.checked_add(1) {
            Some(end) => Bound::Excluded(time_key(end).to_vec()),
            None => Bound::Unbounded,
        };
        if let Some(key) = resume_after {
            if newest_first {
                upper = Bound::Excluded(key.to_vec());
            } else {
                lower = Bound::Excluded(key.to_vec());
            }
        }
        for day in ordered {
            let resumed_past = resume_day.is_some_and(|resume| {
                if newest_first {
                    *day > resume
                } else {
                    *day < resume
                }
            });
            if resumed_past {
                continue;
            }
            let trees: Vec<sled::Tree> = {
                let all = read(&self.days);
                classes
                    .iter()
                    .filter_map(|class| all.get(&(*day, *class)).cloned())
                    .collect()
            };
            let mut iters: Vec<std::iter::Peekable<Entries>> = trees
                .iter()
                .map(|tree| {
                    let range = tree.range::<Vec<u8>, _>((lower.clone(), upper.clone()));
                    let iter: Entries = if newest_first {
                        Box::new(range.rev())
                    } else {
                        Box::new(range)
                    };
                    iter.peekable()
                })
                .collect();
            // Merge the classes' trees of the day by key, which is time first.
            loop {
                let mut pick: Option<(usize, sled::IVec)> = None;
                for (i, iter) in iters.iter_mut().enumerate() {
                    match iter.peek() {
                        Some(Ok((key, _))) => {
                            let better = pick.as_ref().is_none_or(|(_, best)| {
                                if newest_first { key > best } else { key < best }
                            });
                            if better {
                                pick = Some((i, key.clone()));
                            }
                        }
                        Some(Err(_)) => {
                            pick = Some((i, sled::IVec::default()));
                            break;
                        }
                        None => {}
                    }
                }
                let Some((i, _)) = pick else { break };
                let Some(next) = iters[i].next() else { break };
                let (key, value) = next?;
                outcome.scanned += 1;
                if outcome.scanned.is_multiple_of(4096)
                    && deadline.is_some_and(|d| Instant::now() >= d)
                {
                    outcome.timed_out = true;
                    return Ok(outcome);
                }
                let Some(log) = StoredLogRef::decode(&value) else {
                    continue;
                };
                if filter.matches(&log) && visit(log).is_break() {
                    outcome.stopped = true;
                    outcome.stopped_at = Some(key.to_vec());
                    return Ok(outcome);
                }
            }
        }
        Ok(outcome)
    }

    /// The hourly counts of the hours overlapping `[start_ms, end_ms]`, oldest first. Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn hours(
        &self,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<(i64, HourCounts)>, LogStoreError> {
        let mut out = Vec::new();
        if end_ms < start_ms {
            return Ok(out);
        }
        let range = time_key(hour_of(start_ms))..=time_key(end_ms);
        for item in self.hours.range(range) {
            let (key, value) = item?;
            let Ok(bytes) = <[u8; 8]>::try_from(key.as_ref()) else {
                continue;
            };
            let hour = (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64;
            if let Ok(counts) = serde_json::from_slice::<HourCounts>(&value) {
                out.push((hour, counts));
            }
        }
        Ok(out)
    }

    /// Removes lines older than their class's cutoff (milliseconds since the epoch), and the
    /// hourly counts of hours older than both cutoffs (whose lines are all gone). Whole days go as whole trees. Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn cleanup(
        &self,
        general_cutoff: i64,
        error_cutoff: i64,
    ) -> Result<CleanupReport, LogStoreError> {
        let mut report = CleanupReport::default();
        let cutoff_of = |class: Class| match class {
            Class::General => general_cutoff,
            Class::Error => error_cutoff,
        };
        let trees: Vec<((i64, Class), sled::Tree)> = read(&self.days)
            .iter()
            .map(|(id, tree)| (*id, tree.clone()))
            .collect();
        for ((day, class), tree) in trees {
            let cutoff = cutoff_of(class);
            if day.saturating_add(1).saturating_mul(DAY_MS) <= cutoff {
                self.db.drop_tree(tree_name(class, day))?;
                write(&self.days).remove(&(day, class));
                report.days_dropped += 1;
            } else if day == day_of(cutoff) {
                let mut batch = sled::Batch::default();
                for item in tree.range(..time_key(cutoff)) {
                    let (key, _) = item?;
                    batch.remove(key);
                    report.lines_removed += 1;
                }
                tree.apply_batch(batch)?;
            }
        }
        let mut batch = sled::Batch::default();
        let hours_cutoff = general_cutoff.min(error_cutoff);
        for item in self.hours.range(..time_key(hour_of(hours_cutoff))) {
            let (key, _) = item?;
            batch.remove(key);
            report.hours_removed += 1;
        }
        self.hours.apply_batch(batch)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
