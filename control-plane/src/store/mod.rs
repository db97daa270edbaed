//! The embedded time-series store: series, samples, retention and the durable ingest path, on
//! sled. Like Prometheus' TSDB in miniature: a write-ahead log, an in-memory head of
//! Gorilla-compressed chunks, and persisted chunks in one sled tree per UTC day.
//!
//! Write path: an agent session decodes a batch and resolves its series
//! ([`resolve::SeriesResolver`]), then [`Store::submit`]s it. One writer thread group-commits
//! whatever is queued: it appends the batches' payloads (exactly as the agents sent them) and the
//! agents' new watermarks to the WAL in one atomic sled batch, flushes, appends the samples to
//! the head, and only then completes the submissions, so an acknowledgement always means
//! "durable". There is no per-sample disk write.
//!
//! A checkpoint thread cuts the head in rounds: each second it seals the open chunks of the next
//! slice of series and writes, per series and UTC day, one value holding everything since that
//! series' previous cut, so that one round covers every series once per `checkpoint_interval` at
//! an even pace (four times faster while the WAL exceeds `checkpoint_wal_bytes`; a shutdown
//! finishes the round at once).
//! When a round ends it records the WAL position applied when the round began, which the round
//! has now fully written, and truncates the WAL up to it. The
//! WAL lives in its own sled database (`wal/`) so that its per-commit flush never waits for a
//! checkpoint's writes to the chunk database (`chunks/`). On open, the store loads the series
//! index and replays the WAL after the checkpoint. A sample can then exist both in a persisted
//! group and in the head; queries merge by timestamp, so that overlap never shows. Retention
//! drops whole day trees.
//!
//! Dedup: the WAL holds each agent's watermark (journal id, highest stored sequence number),
//! updated atomically with the batch; sessions skip records at or below it.

mod events;
mod head;
mod index;
mod labels;
mod persist;
mod resolve;

pub mod chunk;

use events::EventLog;

use crate::logs::{AuditLog, CleanupReport, LogRetention, LogStore, RecordLogs};
pub use events::{RecordEvents, StoredEvent};
pub use head::{AppendOutcome, Series};
pub use index::SeriesId;
pub use labels::{LabelPair, Labels};
pub use persist::{WalEntry, Watermark};
pub use resolve::{DecodeError, DecodedBatch, SeriesResolver};

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use promql_parser::label::Matcher;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use head::{day_of, segment_start};
use index::Index;
use persist::{chunk_key, wal_key, watermark_key};

/// The WAL writer name of the control plane's own series (rule outputs, `ALERTS`, per-agent
/// `aisemble_agent_up`): not a valid agent name, so no certificate can claim it.
pub const LOCAL_WRITER: &str = "@control-plane";

/// How the store behaves.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Samples older than this are deleted (whole days at a time). Default 15 days.
    pub retention: Duration,
    /// How often the head is written to the day trees and the WAL truncated. Default 60 s.
    /// `Duration::MAX`: only on demand ([`Store::checkpoint_now`], shutdown), for tests that
    /// drive checkpoints themselves.
    pub checkpoint_interval: Duration,
    /// Checkpoint rounds go four times faster while the WAL has grown by more than this since
    /// the last completed round. Default 1 GiB.
    pub checkpoint_wal_bytes: u64,
    /// sled's page cache. Default 64 MiB (sled's own default is 1 GiB).
    pub cache_capacity: u64,
    /// How long log lines and audit entries are kept.
    pub log_retention: LogRetention,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(15 * 86_400),
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_wal_bytes: 1 << 30,
            cache_capacity: 64 << 20,
            log_retention: LogRetention::default(),
        }
    }
}

/// Why the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// sled failed (disk full, I/O error, corruption).
    #[error("storage: {0}")]
    Storage(String),
    /// The writer thread is gone (the store is shutting down).
    #[error("the store is shutting down")]
    Closed,
}

impl From<crate::logs::LogStoreError> for StoreError {
    fn from(error: crate::logs::LogStoreError) -> Self {
        Self::Storage(error.to_string())
    }
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        Self::Storage(error.to_string())
    }
}

/// A batch ready to commit.
#[derive(Debug)]
pub struct CommitBatch {
    /// What the WAL keeps: the payload exactly as received, and whose it is.
    pub wal: WalEntry,
    /// Decoded samples of the new records.
    pub samples: Vec<(Arc<Series>, i64, f64)>,
    /// Events of the new records.
    pub events: Vec<RecordEvents>,
    /// Log lines of the new records.
    pub logs: Vec<RecordLogs>,
}

/// What a commit stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Samples appended.
    pub appended: u64,
    /// Samples older than their series' latest (refused, as Prometheus does).
    pub out_of_order: u64,
    /// Samples identical to their series' latest (already stored; ignored).
    pub duplicates: u64,
}

/// A submitted commit; resolves once the batch is durable and applied.
#[derive(Debug)]
pub struct PendingCommit(oneshot::Receiver<Result<CommitOutcome, StoreError>>);

impl PendingCommit {
    /// Waits for the commit.
    ///
    /// # Errors
    /// When the WAL write failed or the store shut down.
    ///
    /// # Cancel safety
    /// Dropping it does not undo the commit.
    pub async fn wait(self) -> Result<CommitOutcome, StoreError> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }
}

/// A selected series and its samples in the requested range.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// Labels.
    pub labels: Labels,
    /// `(timestamp ms, value)` in time order, no duplicate timestamps.
    pub samples: Vec<(i64, f64)>,
}

/// Counters for `/metrics` and `/ops/status`.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Samples appended since start.
    pub samples_appended: AtomicU64,
    /// Samples refused as out of order since start.
    pub samples_out_of_order: AtomicU64,
    /// Batches committed since start.
    pub batches_committed: AtomicU64,
    /// Failed commits since start.
    pub commit_errors: AtomicU64,
    /// Completed checkpoints since start.
    pub checkpoints: AtomicU64,
    /// Failed checkpoints since start.
    pub checkpoint_errors: AtomicU64,
    /// Persisted chunk groups read by queries since start.
    pub chunk_groups_read: AtomicU64,
}

enum WriterMessage {
    Commit(
        Box<CommitBatch>,
        oneshot::Sender<Result<CommitOutcome, StoreError>>,
    ),
}

enum CheckpointMessage {
    Shutdown(oneshot::Sender<()>),
}

/// A checkpoint round: cuts every series once, a slice per tick.
#[derive(Debug)]
struct Round {
    /// WAL position applied when the round started: covered once the round completes.
    started_upto: u64,
    /// Next series to cut.
    cursor: usize,
    /// Groups written so far.
    groups: usize,
    started: Instant,
}

impl Round {
    fn starting(started_upto: u64) -> Self {
        Self {
            started_upto,
            cursor: 0,
            groups: 0,
            started: Instant::now(),
        }
    }
}

struct Inner {
    /// Series definitions, chunk trees, the checkpoint marker, the agent registry.
    db: sled::Db,
    /// The write-ahead log and agents' watermarks.
    wal_db: sled::Db,
    wal: sled::Tree,
    meta: sled::Tree,
    series_tree: sled::Tree,
    events: EventLog,
    logs: LogStore,
    audit: AuditLog,
    days: RwLock<BTreeMap<i64, sled::Tree>>,
    /// Day trees from this day on hold no chunk group that spans a segment boundary; earlier
    /// ones were written by a version that grouped by day only.
    segmented_from_day: i64,
    index: Arc<RwLock<Index>>,
    watermarks: Mutex<HashMap<String, Watermark>>,
    applied_wal_seq: AtomicU64,
    /// WAL bytes written since the last checkpoint started.
    wal_bytes: AtomicU64,
    persisted_series: AtomicU64,
    /// The checkpoint round in progress.
    round: Mutex<Round>,
    counters: StoreCounters,
    options: StoreOptions,
}

/// The control plane's own writer: its sequence numbers and series cache.
#[derive(Debug)]
struct LocalWriter {
    next_seq: u64,
    resolver: SeriesResolver,
}

/// The store. Clones share it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    local: Arc<tokio::sync::Mutex<LocalWriter>>,
    writer: flume::Sender<WriterMessage>,
    checkpointer: flume::Sender<CheckpointMessage>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("series", &self.series_count())
            .finish_non_exhaustive()
    }
}

const CHECKPOINT_KEY: &[u8] = b"checkpoint";
const SEGMENTED_FROM_DAY_KEY: &[u8] = b"segmented-from-day";
const WAL_CACHE_BYTES: u64 = 16 << 20;
/// How often the checkpoint thread wakes to cut its next slice of series.
const CHECKPOINT_TICK: Duration = Duration::from_secs(1);
const MAX_GROUP: usize = 256;
const WRITER_QUEUE: usize = 1024;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Prometheus' staleness marker: a NaN with this exact bit pattern ends a series; the series has
/// no current value after it.
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// Whether `v` is [`STALE_NAN`] (not any NaN: a series may hold real NaNs).
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN.to_bits()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens (or creates) the store in `path`, loads the index and replays the WAL. Blocking.
    ///
    /// # Errors
    /// When sled cannot open the directory (locked by another process, permissions, corrupt).
    pub fn open(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let started = Instant::now();
        // Two databases: flushing the WAL after every commit group must not wait for a
        // checkpoint's large chunk writes, which sled would flush together in one database.
        let db = sled::Config::new()
            .path(path.join("chunks"))
            .cache_capacity(options.cache_capacity)
            .flush_every_ms(Some(1000))
            .open()?;
        let wal_db = sled::Config::new()
            .path(path.join("wal"))
            .cache_capacity(WAL_CACHE_BYTES)
            .flush_every_ms(Some(1000))
            .open()?;
        let wal = wal_db.open_tree("wal")?;
        let meta = db.open_tree("meta")?;
        let series_tree = db.open_tree("series")?;
        let events = EventLog::new(db.open_tree("events")?);
        let logs = LogStore::open(db.clone())?;
        let audit = AuditLog::open(db.open_tree("audit")?)?;

        let mut index = Index::default();
        for entry in series_tree.iter() {
            let (key, value) = entry?;
            let (Some(id), Some(pairs)) = (
                <[u8; 4]>::try_from(key.as_ref())
                    .ok()
                    .map(u32::from_be_bytes),
                persist::decode_labels(&value),
            ) else {
                warn!("Skipping an undecodable series definition.");
                continue;
            };
            let pairs = pairs
                .iter()
                .map(|(n, v)| LabelPair {
                    name: index.intern(n),
                    value: index.intern(v),
                })
                .collect();
            index.insert(SeriesId(id), Labels::new(pairs));
        }
        let persisted_series = index.len() as u64;

        let mut days = BTreeMap::new();
        for name in db.tree_names() {
            if let Some(day) = persist::parse_day_tree_name(&name) {
                days.insert(day, db.open_tree(&name)?);
            }
        }

        let mut watermarks = HashMap::new();
        for entry in wal.scan_prefix(b"a") {
            let (key, value) = entry?;
            if let (Ok(agent), Some(mark)) =
                (std::str::from_utf8(&key[1..]), Watermark::decode(&value))
            {
                watermarks.insert(agent.to_owned(), mark);
            }
        }
        let segmented_from_day = match meta.get(SEGMENTED_FROM_DAY_KEY)? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(i64::from_be_bytes)
                .unwrap_or(i64::MAX),
            None => {
                // A store written before groups were segmented: its days, the current one
                // included, are read from their start. Were this marker lost, a later open would
                // only read more than it needs.
                let day = days.keys().next_back().map_or(i64::MIN, |last| last + 1);
                meta.insert(SEGMENTED_FROM_DAY_KEY, &day.to_be_bytes())?;
                day
            }
        };
        let checkpoint = meta
            .get(CHECKPOINT_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);

        let inner = Arc::new(Inner {
            db,
            wal_db,
            wal,
            meta,
            series_tree,
            events,
            logs,
            audit,
            days: RwLock::new(days),
            segmented_from_day,
            index: Arc::new(RwLock::new(index)),
            watermarks: Mutex::new(watermarks),
            applied_wal_seq: AtomicU64::new(checkpoint),
            wal_bytes: AtomicU64::new(0),
            persisted_series: AtomicU64::new(persisted_series),
            round: Mutex::new(Round::starting(checkpoint)),
            counters: StoreCounters::default(),
            options,
        });
        let replayed = inner.replay(checkpoint)?;
        info!(
            series = inner.index.read().map_or(0, |i| i.len()),
            replayed_batches = replayed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Store opened."
        );

        let (writer, writer_rx) = flume::bounded(WRITER_QUEUE);
        let (checkpointer, checkpoint_rx) = flume::unbounded();
        let writer_inner = Arc::clone(&inner);
        let checkpoint_inner = Arc::clone(&inner);
        let spawn_error =
            |e: std::io::Error| StoreError::Storage(format!("starting a store thread: {e}"));
        let threads = vec![
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer_inner.run_writer(&writer_rx))
                .map_err(spawn_error)?,
            std::thread::Builder::new()
                .name("store-checkpoint".into())
                .spawn(move || checkpoint_inner.run_checkpointer(&checkpoint_rx))
                .map_err(spawn_error)?,
        ];
        let local = LocalWriter {
            next_seq: lock(&inner.watermarks)
                .get(LOCAL_WRITER)
                .map_or(1, |w| w.upto + 1),
            resolver: SeriesResolver::for_writer(Arc::clone(&inner.index), LOCAL_WRITER),
        };
        Ok(Self {
            inner,
            local: Arc::new(tokio::sync::Mutex::new(local)),
            writer,
            checkpointer,
            threads: Arc::new(Mutex::new(threads)),
        })
    }

    /// The shared series index (for session resolvers).
    pub fn index(&self) -> Arc<RwLock<Index>> {
        Arc::clone(&self.inner.index)
    }

    /// A resolver for one agent's samples.
    pub fn resolver(&self, agent: &str) -> SeriesResolver {
        SeriesResolver::new(self.index(), agent)
    }

    /// The stored watermark of an agent.
    pub fn watermark(&self, agent: &str) -> Option<Watermark> {
        lock(&self.inner.watermarks).get(agent).copied()
    }

    /// Queues a batch for the writer; await the returned [`PendingCommit`] for durability. Batches
    /// of one agent must be submitted in order, one `submit` completing before the next starts.
    ///
    /// # Errors
    /// When the store is shutting down.
    ///
    /// # Cancel safety
    /// If cancelled before it completes, the batch was not queued.
    pub async fn submit(&self, batch: CommitBatch) -> Result<PendingCommit, StoreError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send_async(WriterMessage::Commit(Box::new(batch), done))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(PendingCommit(wait))
    }

    /// Writes the control plane's own samples at `t` (ms), with exactly the labels given
    /// (`__name__` included), through the WAL like an agent's batch: durable once the returned
    /// commit completes, replayed after a crash, deduplicated by sequence number.
    ///
    /// # Errors
    /// When the store is shutting down or the samples do not encode.
    ///
    /// # Cancel safety
    /// If cancelled before it completes, nothing was queued.
    pub async fn write_local(
        &self,
        t: i64,
        samples: &[(Vec<(String, String)>, f64)],
    ) -> Result<PendingCommit, StoreError> {
        use aisemble_shared::{
            codec,
            wire::{Compression, JournalEntry, MetricRecord, Record, Sample},
        };
        let record = Record::Metrics(MetricRecord {
            timestamp_ms: t,
            samples: samples
                .iter()
                .map(|(labels, v)| {
                    let name = labels
                        .iter()
                        .find(|(k, _)| k == aisemble_shared::metrics::METRIC_NAME_LABEL)
                        .map_or("", |(_, v)| v.as_str());
                    labels
                        .iter()
                        .filter(|(k, _)| k != aisemble_shared::metrics::METRIC_NAME_LABEL)
                        .fold(Sample::new(name, *v), |s, (k, v)| s.with_label(k, v))
                })
                .collect(),
        });
        let encode = |e: codec::CodecError| StoreError::Storage(format!("encoding: {e}"));
        let mut local = self.local.lock().await;
        let seq = local.next_seq;
        let payload = codec::encode_entries(
            &[JournalEntry {
                seq,
                record: codec::encode_record(&record).map_err(encode)?,
            }],
            Compression::Zstd,
        )
        .map_err(encode)?;
        let decoded = local
            .resolver
            .decode_batch(&payload, Compression::Zstd, seq, seq, seq)
            .map_err(|e| StoreError::Storage(format!("decoding own batch: {e}")))?;
        let pending = self
            .submit(CommitBatch {
                wal: WalEntry {
                    agent: LOCAL_WRITER.into(),
                    journal_id: 1,
                    first_new_seq: seq,
                    last_seq: seq,
                    compression: Compression::Zstd,
                    payload,
                },
                samples: decoded.samples,
                events: Vec::new(),
                logs: Vec::new(),
            })
            .await?;
        local.next_seq = seq + 1;
        Ok(pending)
    }

    /// Series matching every matcher, with their samples in `[mint, maxt]`. Blocking (reads sled).
    ///
    /// # Errors
    /// When sled fails to read.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        let selected = self.selected(matchers);
        let days = self.days_between(mint, maxt);
        let mut out = Vec::with_capacity(selected.len());
        // Series selected together usually hold as many samples each: size by the last one.
        let mut expected_len = 0;
        for series in selected {
            let samples = self.samples_of(&series, &days, mint, maxt, expected_len)?;
            expected_len = samples.len();
            if !samples.is_empty() {
                out.push(SeriesSamples {
                    labels: series.labels.clone(),
                    samples,
                });
            }
        }
        Ok(out)
    }

    /// Each series matching every matcher with its latest sample in `[mint, maxt]` (staleness
    /// markers included), as a one-sample series. Blocking. Reads no chunk for a series whose
    /// newest sample, kept in memory, is in the range: an instant query at the present.
    ///
    /// # Errors
    /// When sled fails.
    pub fn select_latest(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        let selected = self.selected(matchers);
        let mut days: Option<Vec<(sled::Tree, i64)>> = None;
        let mut out = Vec::with_capacity(selected.len());
        for series in selected {
            let latest = match series.last() {
                Some((t, v)) if t <= maxt => (t >= mint).then_some((t, v)),
                // Nothing in memory yet (after a restart), or a query into the past.
                _ => {
                    let days = days.get_or_insert_with(|| self.days_between(mint, maxt));
                    self.samples_of(&series, days, mint, maxt, 0)?.pop()
                }
            };
            if let Some(sample) = latest {
                out.push(SeriesSamples {
                    labels: series.labels.clone(),
                    samples: vec![sample],
                });
            }
        }
        Ok(out)
    }

    /// The series matching every matcher, as handles for [`Store::samples`].
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<Arc<Series>> {
        self.selected(matchers)
    }

    /// One series' samples in `[mint, maxt]`, persisted and in memory, in time order. Blocking.
    ///
    /// # Errors
    /// When sled fails to read.
    pub fn samples(
        &self,
        series: &Series,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        let days = self.days_between(mint, maxt);
        self.samples_of(series, &days, mint, maxt, 0)
    }

    fn selected(&self, matchers: &[Matcher]) -> Vec<Arc<Series>> {
        let index = read(&self.inner.index);
        index
            .select(matchers)
            .into_iter()
            .filter_map(|id| index.series(id).cloned())
            .collect()
    }

    /// The day trees of `[mint, maxt]`, each with the earliest chunk group key worth reading:
    /// no group spans a segment boundary (in days written so), so a group that starts before
    /// `mint`'s segment ends before `mint`.
    fn days_between(&self, mint: i64, maxt: i64) -> Vec<(sled::Tree, i64)> {
        read(&self.inner.days)
            .range(day_of(mint)..=day_of(maxt))
            .map(|(day, tree)| {
                let from = if *day >= self.inner.segmented_from_day {
                    segment_start(mint)
                } else {
                    i64::MIN
                };
                (tree.clone(), from)
            })
            .collect()
    }

    /// One series' samples in `[mint, maxt]`, persisted and in memory, in time order.
    fn samples_of(
        &self,
        series: &Series,
        days: &[(sled::Tree, i64)],
        mint: i64,
        maxt: i64,
        capacity: usize,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        let mut samples = Vec::with_capacity(capacity);
        // Persisted chunks first; anything from the head's earliest chunk on is in memory.
        let persisted_until = series.head_min_t().map_or(maxt, |t| (t - 1).min(maxt));
        let mut n_groups = 0;
        if persisted_until >= mint {
            for (tree, from) in days {
                let range = chunk_key(series.id.0, *from)..=chunk_key(series.id.0, persisted_until);
                for entry in tree.range(range) {
                    let (_, value) = entry?;
                    n_groups += 1;
                    let Some((max_t, chunks)) = persist::parse_chunk_group(&value) else {
                        continue;
                    };
                    if max_t < mint {
                        continue;
                    }
                    for bytes in chunks {
                        if let Ok(iter) = chunk::decode(bytes) {
                            samples.extend(
                                iter.map_while(Result::ok)
                                    .filter(|(t, _)| *t >= mint && *t <= persisted_until),
                            );
                        }
                    }
                }
            }
        }
        if n_groups > 0 {
            self.inner
                .counters
                .chunk_groups_read
                .fetch_add(n_groups, Ordering::Relaxed);
        }
        series.samples(mint, maxt, &mut samples);
        samples.sort_by_key(|(t, _)| *t);
        samples.dedup_by_key(|(t, _)| *t);
        Ok(samples)
    }

    /// Label sets of the series matching every matcher.
    pub fn series(&self, matchers: &[Matcher]) -> Vec<Labels> {
        let index = read(&self.inner.index);
        index
            .select(matchers)
            .into_iter()
            .filter_map(|id| index.series(id).map(|s| s.labels.clone()))
            .collect()
    }

    /// Latest sample of every series written since this process started, if at or after `since`
    /// and not a staleness marker (an ended series has no latest value).
    pub fn latest(&self, since: i64) -> Vec<(Labels, i64, f64)> {
        let all: Vec<Arc<Series>> = read(&self.inner.index).all().to_vec();
        all.iter()
            .filter_map(|s| {
                s.last()
                    .filter(|(t, v)| *t >= since && !is_stale_marker(*v))
                    .map(|(t, v)| (s.labels.clone(), t, v))
            })
            .collect()
    }

    /// Latest in-memory sample of the series matching every matcher, if at or after `since` and
    /// not a staleness marker.
    pub fn latest_matching(&self, matchers: &[Matcher], since: i64) -> Vec<(Labels, i64, f64)> {
        let index = read(&self.inner.index);
        index
            .select(matchers)
            .into_iter()
            .filter_map(|id| index.series(id))
            .filter_map(|s| {
                s.last()
                    .filter(|(t, v)| *t >= since && !is_stale_marker(*v))
                    .map(|(t, v)| (s.labels.clone(), t, v))
            })
            .collect()
    }

    /// The latest values of the series matching every matcher whose latest sample is at or
    /// after `since` and not a staleness marker.
    pub fn latest_values(&self, matchers: &[Matcher], since: i64) -> Vec<f64> {
        let index = read(&self.inner.index);
        index
            .select(matchers)
            .into_iter()
            .filter_map(|id| index.series(id)?.last())
            .filter(|(t, v)| *t >= since && !is_stale_marker(*v))
            .map(|(_, v)| v)
            .collect()
    }

    /// Every label name.
    pub fn label_names(&self) -> Vec<String> {
        read(&self.inner.index).label_names()
    }

    /// Every value of a label.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        read(&self.inner.index).label_values(name)
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        read(&self.inner.index).len()
    }

    /// Counters.
    pub fn counters(&self) -> &StoreCounters {
        &self.inner.counters
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0) + self.inner.wal_db.size_on_disk().unwrap_or(0)
    }

    /// A sled tree for other durable state (agent registry), in the same database.
    ///
    /// # Errors
    /// When sled fails.
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.inner.db.open_tree(name)?)
    }

    /// The newest `limit` events (health-check state changes), newest first, of one agent or of
    /// all. Blocking (reads sled).
    pub fn events(&self, agent: Option<&str>, limit: usize) -> Vec<StoredEvent> {
        self.inner.events.recent(agent, limit)
    }

    /// Agents' log lines.
    pub fn logs(&self) -> &LogStore {
        &self.inner.logs
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// Applies the log retention as of `now_ms` (lines younger than `older_than`, when given, go
    /// too; the audit log keeps its own retention whatever is asked). Returns what went from the
    /// log store and how many audit entries went. Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn cleanup_logs(
        &self,
        now_ms: i64,
        older_than: Option<Duration>,
    ) -> Result<(CleanupReport, u64), StoreError> {
        self.inner.cleanup_logs(now_ms, older_than)
    }

    /// Runs a checkpoint now and waits for it (tests, shutdown). Blocking.
    ///
    /// # Errors
    /// When writing fails.
    pub fn checkpoint_now(&self) -> Result<(), StoreError> {
        self.inner.checkpoint()
    }

    /// Drops day trees older than the retention, as of `now_ms`. Blocking.
    ///
    /// # Errors
    /// When sled fails.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.inner.apply_retention(now_ms)
    }

    /// Stops the writer after the queued commits, writes a final checkpoint and flushes. Blocking.
    pub fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self
            .checkpointer
            .send(CheckpointMessage::Shutdown(done))
            .is_ok()
        {
            let _ = wait.blocking_recv();
        }
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        // The writer ends when every sender is gone; sessions hold clones, so do not join it.
        for thread in threads
            .into_iter()
            .filter(|t| t.thread().name() == Some("store-checkpoint"))
        {
            let _ = thread.join();
        }
        let _ = self.inner.db.flush();
        let _ = self.inner.wal_db.flush();
    }
}

impl Inner {
    fn replay(&self, checkpoint: u64) -> Result<u64, StoreError> {
        let mut resolvers: HashMap<String, SeriesResolver> = HashMap::new();
        let mut replayed = 0;
        let mut last = checkpoint;
        let mut stale = sled::Batch::default();
        for entry in self.wal.scan_prefix(b"w") {
            let (key, value) = entry?;
            let Some(seq) = persist::wal_seq(&key) else {
                continue;
            };
            if seq <= checkpoint {
                // Left over from a truncation interrupted by a crash.
                stale.remove(key);
                continue;
            }
            last = seq;
            let Some(entry) = WalEntry::decode(&value) else {
                error!(wal_seq = seq, "Skipping an undecodable WAL entry.");
                continue;
            };
            let resolver = resolvers.entry(entry.agent.clone()).or_insert_with(|| {
                SeriesResolver::for_writer(Arc::clone(&self.index), &entry.agent)
            });
            match resolver.decode_batch(
                &entry.payload,
                entry.compression,
                0,
                entry.last_seq,
                entry.first_new_seq,
            ) {
                Ok(batch) => {
                    self.apply(&batch.samples);
                    if let Err(error) = self.events.insert(&entry.agent, &batch.events) {
                        error!(wal_seq = seq, %error, "Could not store replayed events.");
                    }
                    if let Err(error) = self.logs.insert(&entry.agent, &batch.logs) {
                        error!(wal_seq = seq, %error, "Could not store replayed log lines.");
                    }
                    replayed += 1;
                }
                Err(error) => {
                    error!(wal_seq = seq, agent = %entry.agent, %error, "Skipping an undecodable WAL batch.")
                }
            }
        }
        self.wal.apply_batch(stale)?;
        self.applied_wal_seq.store(last, Ordering::Release);
        Ok(replayed)
    }

    fn apply(&self, samples: &[(Arc<Series>, i64, f64)]) -> CommitOutcome {
        let mut outcome = CommitOutcome::default();
        for (series, t, v) in samples {
            match series.append(*t, *v) {
                AppendOutcome::Appended => outcome.appended += 1,
                AppendOutcome::OutOfOrder => outcome.out_of_order += 1,
                AppendOutcome::Duplicate => outcome.duplicates += 1,
            }
        }
        self.counters
            .samples_appended
            .fetch_add(outcome.appended, Ordering::Relaxed);
        self.counters
            .samples_out_of_order
            .fetch_add(outcome.out_of_order, Ordering::Relaxed);
        outcome
    }

    fn run_writer(&self, queue: &flume::Receiver<WriterMessage>) {
        let mut wal_seq = self.applied_wal_seq.load(Ordering::Acquire);
        while let Ok(first) = queue.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            self.commit_group(&mut wal_seq, group);
        }
    }

    fn commit_group(&self, wal_seq: &mut u64, group: Vec<WriterMessage>) {
        let mut batch = sled::Batch::default();
        let mut marks = HashMap::new();
        for WriterMessage::Commit(commit, _) in &group {
            *wal_seq += 1;
            let entry = &commit.wal;
            let encoded = entry.encode();
            self.wal_bytes
                .fetch_add(encoded.len() as u64, Ordering::Relaxed);
            batch.insert(&wal_key(*wal_seq), encoded);
            let mark = Watermark {
                journal_id: entry.journal_id,
                upto: entry.last_seq,
            };
            batch.insert(watermark_key(&entry.agent), &mark.encode());
            marks.insert(entry.agent.clone(), mark);
        }
        let durable = self
            .wal
            .apply_batch(batch)
            .and_then(|()| self.wal_db.flush().map(|_| ()));
        if let Err(error) = durable {
            error!(%error, batches = group.len(), "WAL write failed; batches not acknowledged.");
            self.counters
                .commit_errors
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            let error = StoreError::from(error);
            for WriterMessage::Commit(_, done) in group {
                let _ = done.send(Err(error.clone()));
            }
            return;
        }
        lock(&self.watermarks).extend(marks);
        for WriterMessage::Commit(commit, done) in group {
            let outcome = self.apply(&commit.samples);
            // The WAL already holds these events; a failure here is repaired by replay.
            if let Err(error) = self.events.insert(&commit.wal.agent, &commit.events) {
                error!(agent = %commit.wal.agent, %error, "Could not store events.");
            }
            if let Err(error) = self.logs.insert(&commit.wal.agent, &commit.logs) {
                error!(agent = %commit.wal.agent, %error, "Could not store log lines.");
            }
            self.counters
                .batches_committed
                .fetch_add(1, Ordering::Relaxed);
            let _ = done.send(Ok(outcome));
        }
        self.applied_wal_seq.store(*wal_seq, Ordering::Release);
    }

    fn run_checkpointer(&self, control: &flume::Receiver<CheckpointMessage>) {
        let mut last_retention: Option<Instant> = None;
        loop {
            let shutdown = match control.recv_timeout(CHECKPOINT_TICK) {
                Ok(CheckpointMessage::Shutdown(done)) => Some(done),
                Err(flume::RecvTimeoutError::Timeout) => None,
                Err(flume::RecvTimeoutError::Disconnected) => return,
            };
            // Each tick cuts the next slice of series, so a round covers every series once per
            // interval at an even pace instead of in one burst. A WAL over its budget quickens
            // the pace fourfold; a shutdown finishes the round at once.
            let ticks = (self.options.checkpoint_interval.as_millis() / CHECKPOINT_TICK.as_millis())
                .max(1) as usize;
            let behind =
                self.wal_bytes.load(Ordering::Relaxed) >= self.options.checkpoint_wal_bytes;
            let step = match (shutdown.is_some(), behind) {
                (true, _) => None,
                (false, true) => Some((ticks / 4).max(1)),
                (false, false) => Some(ticks),
            };
            if shutdown.is_none() && self.options.checkpoint_interval == Duration::MAX {
                continue;
            }
            if let Err(error) = self.checkpoint_step(step) {
                self.counters
                    .checkpoint_errors
                    .fetch_add(1, Ordering::Relaxed);
                error!(%error, "Checkpoint failed; the WAL keeps the data and the next one retries.");
            }
            if let Some(done) = shutdown {
                let _ = done.send(());
                return;
            }
            if last_retention.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                last_retention = Some(Instant::now());
                if let Err(error) = self.apply_retention(now_ms()) {
                    error!(%error, "Retention failed.");
                }
            }
        }
    }

    fn day_tree(&self, day: i64) -> Result<sled::Tree, StoreError> {
        if let Some(tree) = read(&self.days).get(&day) {
            return Ok(tree.clone());
        }
        let tree = self.db.open_tree(persist::day_tree_name(day))?;
        write(&self.days).insert(day, tree.clone());
        Ok(tree)
    }

    /// Cuts the next slice of series (`1/ticks` of them, or all the rest when `ticks` is None)
    /// and, when the round reaches the last series, records the round's WAL position and
    /// truncates the WAL up to it: every sample applied before the round started has then been
    /// written by one of its slices.
    fn checkpoint_step(&self, ticks: Option<usize>) -> Result<(), StoreError> {
        let mut round = lock(&self.round);
        let all: Vec<Arc<Series>> = read(&self.index).all().to_vec();
        let slice = ticks.map_or(all.len(), |t| all.len().div_ceil(t).max(1));
        let end = (round.cursor + slice).min(all.len());
        self.write_series_definitions(&all)?;
        let groups = self.write_groups(&all[round.cursor.min(end)..end])?;
        round.groups += groups;
        round.cursor = end;
        if round.cursor < all.len() {
            return Ok(());
        }
        let upto = round.started_upto;
        self.db.flush()?;
        self.meta.insert(CHECKPOINT_KEY, &upto.to_be_bytes())?;
        self.db.flush()?;
        let mut truncate = sled::Batch::default();
        let mut n_wal = 0usize;
        for key in self.wal.range(wal_key(0)..=wal_key(upto)).keys() {
            truncate.remove(key?);
            n_wal += 1;
        }
        self.wal.apply_batch(truncate)?;
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        info!(
            groups = round.groups,
            wal_entries = n_wal,
            wal_upto = upto,
            elapsed_ms = round.started.elapsed().as_millis() as u64,
            "Checkpoint written."
        );
        *round = Round::starting(self.applied_wal_seq.load(Ordering::Acquire));
        self.wal_bytes.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// A whole round now (tests, shutdown): a fresh round is started first so that it covers
    /// everything applied so far.
    fn checkpoint(&self) -> Result<(), StoreError> {
        *lock(&self.round) = Round::starting(self.applied_wal_seq.load(Ordering::Acquire));
        self.checkpoint_step(None)
    }

    fn write_series_definitions(&self, all: &[Arc<Series>]) -> Result<(), StoreError> {
        let persisted = self.persisted_series.load(Ordering::Acquire) as usize;
        if persisted >= all.len() {
            return Ok(());
        }
        let mut definitions = sled::Batch::default();
        for series in &all[persisted..] {
            let pairs = series.labels.iter().map(|p| (&*p.name, &*p.value));
            definitions.insert(&series.id.0.to_be_bytes(), persist::encode_labels(pairs));
        }
        self.series_tree.apply_batch(definitions)?;
        // Definitions must be durable before any chunk group that refers to them.
        self.db.flush()?;
        self.persisted_series
            .store(all.len() as u64, Ordering::Release);
        Ok(())
    }

    /// Cuts the series and writes one value per series and segment: everything since its previous
    /// cut. On failure the cut chunks stay in memory (sealed) and are written by a later step.
    fn write_groups(&self, series: &[Arc<Series>]) -> Result<usize, StoreError> {
        let mut per_day: BTreeMap<i64, sled::Batch> = BTreeMap::new();
        let mut released = Vec::new();
        let mut n_groups = 0usize;
        for series in series {
            let chunks = series.cut();
            let Some(last) = chunks.last() else { continue };
            released.push((Arc::clone(series), last.min_t));
            // The head seals chunks at segment boundaries, so each group stays within one.
            for group in chunks.chunk_by(|a, b| segment_start(a.min_t) == segment_start(b.min_t)) {
                let (first, last) = (&group[0], &group[group.len() - 1]);
                let value =
                    persist::chunk_group_value(last.max_t, group.iter().map(|c| &c.bytes[..]));
                per_day
                    .entry(day_of(first.min_t))
                    .or_default()
                    .insert(&chunk_key(series.id.0, first.min_t), value);
                n_groups += 1;
            }
        }
        for (day, batch) in per_day {
            self.day_tree(day)?.apply_batch(batch)?;
        }
        for (series, min_t) in released {
            series.release_sealed(min_t);
        }
        Ok(n_groups)
    }

    fn apply_retention(&self, now_ms: i64) -> Result<usize, StoreError> {
        let retention_ms = i64::try_from(self.options.retention.as_millis()).unwrap_or(i64::MAX);
        let oldest_kept = day_of(now_ms.saturating_sub(retention_ms));
        let expired: Vec<i64> = read(&self.days)
            .range(..oldest_kept)
            .map(|(day, _)| *day)
            .collect();
        for day in &expired {
            self.db.drop_tree(persist::day_tree_name(*day))?;
            write(&self.days).remove(day);
        }
        if !expired.is_empty() {
            info!(days = expired.len(), "Retention removed expired days.");
        }
        let expired_events = self.events.expire(now_ms.saturating_sub(retention_ms))?;
        if expired_events > 0 {
            info!(events = expired_events, "Retention removed expired events.");
        }
        let (logs, audit) = self.cleanup_logs(now_ms, None)?;
        if logs.days_dropped + logs.lines_removed + audit > 0 {
            info!(
                log_days = logs.days_dropped,
                log_lines = logs.lines_removed,
                audit_entries = audit,
                "Retention removed expired log lines."
            );
        }
        Ok(expired.len())
    }

    fn cleanup_logs(
        &self,
        now_ms: i64,
        older_than: Option<Duration>,
    ) -> Result<(CleanupReport, u64), StoreError> {
        let before = |keep: Duration| now_ms.saturating_sub(crate::query::duration_ms(keep));
        let asked = |keep: Duration| before(older_than.map_or(keep, |asked| keep.min(asked)));
        let retention = self.options.log_retention;
        let report = self
            .logs
            .cleanup(asked(retention.general), asked(retention.error))?;
        let audit = self.audit.cleanup(before(retention.audit))?;
        Ok((report, audit))
    }
}

#[cfg(test)]
mod tests;
