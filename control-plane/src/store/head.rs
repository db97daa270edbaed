//! The in-memory part of each series: the open chunk being appended to, chunks sealed but not yet
//! written to disk, and the latest sample.
//!
//! A chunk is sealed when it holds [`MAX_CHUNK_SAMPLES`] samples, when a sample falls in another
//! segment ([`SEGMENT_MS`], ten minutes of UTC) than the chunk's first, and when a checkpoint cuts
//! the head ([`Series::cut`]): a checkpoint writes everything since the previous one, once, as one
//! value per series and segment. So every persisted chunk belongs to exactly one day tree (retention
//! drops whole trees), and a read of a recent window starts at its segment's start instead of the
//! day's (see `Store::samples_of`).
//! The writer thread is the only appender; queries read concurrently through the per-series mutex.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{
    chunk::{self, XorAppender},
    index::SeriesId,
    labels::Labels,
};

/// Samples per chunk, as Prometheus does: about 1.4 bytes per sample once compressed.
pub(super) const MAX_CHUNK_SAMPLES: usize = 120;

const DAY_MS: i64 = 86_400_000;

/// No chunk, and so no persisted chunk group, spans a boundary of these. A day is a whole number of
/// segments, so a segment lies within one day.
pub(super) const SEGMENT_MS: i64 = 600_000;

/// The UTC day (days since the Unix epoch) of a millisecond timestamp.
pub(super) fn day_of(t: i64) -> i64 {
    t.div_euclid(DAY_MS)
}

/// The start of the segment holding `t`.
pub(super) fn segment_start(t: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(SEGMENT_MS))
}

/// A series: identity plus its in-memory samples.
#[derive(Debug)]
pub struct Series {
    /// Store-local id.
    pub id: SeriesId,
    /// Label set (identity).
    pub labels: Labels,
    head: Mutex<MemSeries>,
}

/// An encoded chunk with its time range.
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    /// First sample's timestamp.
    pub min_t: i64,
    /// Last sample's timestamp.
    pub max_t: i64,
    /// Gorilla-encoded samples.
    pub bytes: Arc<[u8]>,
}

/// Why a sample was not appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored.
    Appended,
    /// Same timestamp and value as the latest sample: already stored, nothing to do.
    Duplicate,
    /// Older than the latest sample of the series (Prometheus refuses these too).
    OutOfOrder,
}

#[derive(Debug, Default)]
struct MemSeries {
    open: Option<XorAppender>,
    sealed: Vec<EncodedChunk>,
    last: Option<(i64, f64)>,
}

impl Series {
    /// An empty series.
    pub fn new(id: SeriesId, labels: Labels) -> Self {
        Self {
            id,
            labels,
            head: Mutex::new(MemSeries::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemSeries> {
        // Each update leaves MemSeries consistent before anything can panic, so a poisoned
        // lock still guards valid data.
        self.head.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a sample.
    pub fn append(&self, t: i64, v: f64) -> AppendOutcome {
        let mut head = self.lock();
        if let Some((last_t, last_v)) = head.last {
            if t < last_t {
                return AppendOutcome::OutOfOrder;
            }
            if t == last_t {
                return if last_v.to_bits() == v.to_bits() {
                    AppendOutcome::Duplicate
                } else {
                    AppendOutcome::OutOfOrder
                };
            }
        }
        let seal = head.open.as_ref().is_some_and(|open| {
            open.len() >= MAX_CHUNK_SAMPLES
                || open.first_timestamp().map(segment_start) != Some(segment_start(t))
        });
        if seal
            && let Some(open) = head.open.take()
            && let Some(chunk) = encoded(&open)
        {
            head.sealed.push(chunk);
        }
        let open = head.open.get_or_insert_with(XorAppender::new);
        if open.append(t, v).is_err() {
            // Unreachable given the ordering check above; refuse rather than corrupt.
            return AppendOutcome::OutOfOrder;
        }
        head.last = Some((t, v));
        AppendOutcome::Appended
    }

    /// The latest sample.
    pub fn last(&self) -> Option<(i64, f64)> {
        self.lock().last
    }

    /// Samples held in memory with `mint <= t <= maxt`, in time order.
    pub fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        let head = self.lock();
        let chunks = head.sealed.iter().map(|c| (c.min_t, c.max_t, &c.bytes[..]));
        let open = head
            .open
            .as_ref()
            .and_then(|o| Some((o.first_timestamp()?, o.last_timestamp()?, o.bytes())));
        for (min_t, max_t, bytes) in chunks.chain(open) {
            if max_t < mint || min_t > maxt {
                continue;
            }
            // Chunks in memory were encoded here, so they decode; a failure would be a bug, and
            // the samples decoded up to it are still returned.
            if let Ok(iter) = chunk::decode(bytes) {
                out.extend(
                    iter.map_while(Result::ok)
                        .filter(|(t, _)| *t >= mint && *t <= maxt),
                );
            }
        }
    }

    /// Earliest timestamp still held in memory. Persisted chunks starting at or after it are
    /// copies of what memory holds.
    pub fn head_min_t(&self) -> Option<i64> {
        let head = self.lock();
        head.sealed
            .first()
            .map(|c| c.min_t)
            .or_else(|| head.open.as_ref().and_then(XorAppender::first_timestamp))
    }

    /// Seals the open chunk and returns every sealed chunk, for a checkpoint to write; they stay
    /// in memory until [`Series::release_sealed`].
    pub fn cut(&self) -> Vec<EncodedChunk> {
        let mut head = self.lock();
        if let Some(open) = head.open.take()
            && let Some(chunk) = encoded(&open)
        {
            head.sealed.push(chunk);
        }
        head.sealed.clone()
    }

    /// Drops sealed chunks up to and including the one starting at `upto_min_t`, once written.
    pub fn release_sealed(&self, upto_min_t: i64) {
        self.lock().sealed.retain(|c| c.min_t > upto_min_t);
    }
}

fn encoded(open: &XorAppender) -> Option<EncodedChunk> {
    Some(EncodedChunk {
        min_t: open.first_timestamp()?,
        max_t: open.last_timestamp()?,
        bytes: Arc::from(open.bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Series {
        Series::new(SeriesId(0), Labels::new(Vec::new()))
    }

    #[test]
    fn appends_in_order_and_refuses_the_past() {
        let s = series();
        assert_eq!(s.append(1000, 1.0), AppendOutcome::Appended);
        assert_eq!(s.append(2000, 2.0), AppendOutcome::Appended);
        assert_eq!(s.append(2000, 2.0), AppendOutcome::Duplicate);
        assert_eq!(s.append(2000, 3.0), AppendOutcome::OutOfOrder);
        assert_eq!(s.append(1500, 3.0), AppendOutcome::OutOfOrder);
        let mut out = Vec::new();
        s.samples(0, i64::MAX, &mut out);
        assert_eq!(out, vec![(1000, 1.0), (2000, 2.0)]);
        assert_eq!(s.last(), Some((2000, 2.0)));
    }

    #[test]
    fn seals_at_the_sample_limit_and_at_midnight() {
        let s = series();
        for i in 0..(MAX_CHUNK_SAMPLES as i64 + 5) {
            s.append(i * 1000, i as f64);
        }
        let cut = s.cut();
        assert_eq!(
            cut.len(),
            2,
            "one full chunk, and the open one sealed by the cut"
        );
        assert_eq!(cut[0].max_t, (MAX_CHUNK_SAMPLES as i64 - 1) * 1000);
        assert_eq!(cut[1].min_t, MAX_CHUNK_SAMPLES as i64 * 1000);
        s.release_sealed(cut[1].min_t);
        assert!(s.cut().is_empty(), "nothing new since the last cut");
        s.append(10_000_000, 1.0);
        assert_eq!(s.cut().len(), 1);

        let s = series();
        s.append(DAY_MS - 1000, 1.0);
        s.append(DAY_MS, 2.0);
        assert_eq!(s.head_min_t(), Some(DAY_MS - 1000));
        let cut = s.cut();
        assert_eq!(
            (cut.len(), cut[0].max_t, cut[1].min_t),
            (2, DAY_MS - 1000, DAY_MS)
        );
        s.release_sealed(DAY_MS - 1000);
        assert_eq!(s.head_min_t(), Some(DAY_MS));
        let mut out = Vec::new();
        s.samples(i64::MIN, i64::MAX, &mut out);
        assert_eq!(out, vec![(DAY_MS, 2.0)]);

        // A segment boundary within a day seals too.
        let s = series();
        for t in [
            SEGMENT_MS - 2000,
            SEGMENT_MS - 1000,
            SEGMENT_MS,
            2 * SEGMENT_MS + 5,
        ] {
            s.append(t, 1.0);
        }
        let spans: Vec<(i64, i64)> = s.cut().iter().map(|c| (c.min_t, c.max_t)).collect();
        assert_eq!(
            spans,
            vec![
                (SEGMENT_MS - 2000, SEGMENT_MS - 1000),
                (SEGMENT_MS, SEGMENT_MS),
                (2 * SEGMENT_MS + 5, 2 * SEGMENT_MS + 5)
            ]
        );
        assert_eq!(DAY_MS % SEGMENT_MS, 0, "a segment never spans two days");
    }

    #[test]
    fn range_filtering() {
        let s = series();
        for i in 0..300 {
            s.append(i * 10, 0.0);
        }
        let mut out = Vec::new();
        s.samples(995, 2005, &mut out);
        assert_eq!(out.first().map(|x| x.0), Some(1000));
        assert_eq!(out.last().map(|x| x.0), Some(2000));
        assert_eq!(out.len(), 101);
    }
}
