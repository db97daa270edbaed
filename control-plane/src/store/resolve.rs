//! From batch payloads to series: decode an agent's journal records and map every sample to its
//! series, creating series on first sight.
//!
//! Each agent session keeps a [`SeriesResolver`] whose cache maps a sample's name and labels, as
//! the agent sends them, to the series, so the shared index is locked only for series not seen
//! before on this connection. The `host` label always comes from the agent's certificate: a
//! `host` label in the sample is dropped.

use std::{
    hash::{Hash, Hasher},
    sync::{Arc, RwLock},
};

use aisemble_shared::{
    codec,
    metrics::{HOST_LABEL, is_valid_label_name, is_valid_metric_name},
    wire::{Compression, LabelRef, RecordRef, SampleRef},
};
use hashbrown::{Equivalent, HashMap};

use super::{events::RecordEvents, head::Series, index::Index};
use crate::logs::RecordLogs;

/// Longest accepted metric name, label name or label value, and most labels per sample: bounds
/// what one hostile agent can make the index hold.
pub(super) const MAX_NAME_BYTES: usize = 256;
/// See [`MAX_NAME_BYTES`].
pub(super) const MAX_VALUE_BYTES: usize = 2048;
/// See [`MAX_NAME_BYTES`].
pub(super) const MAX_LABELS: usize = 32;

/// A decoded batch: samples mapped to series.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    /// `(series, timestamp ms, value)`.
    pub samples: Vec<(Arc<Series>, i64, f64)>,
    /// Samples refused for invalid names or too many labels.
    pub invalid_samples: u64,
    /// Records at or above `first_new_seq` that were decoded.
    pub records: u64,
    /// Events of those records.
    pub events: Vec<RecordEvents>,
    /// Log lines of those records.
    pub logs: Vec<RecordLogs>,
}

/// Why a payload is unusable.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload or a record does not decode.
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    /// Sequence numbers are not strictly increasing, or fall outside the batch's stated range.
    #[error("record sequence numbers out of order or outside {first}..={last}")]
    Sequence {
        /// Stated first.
        first: u64,
        /// Stated last.
        last: u64,
    },
}

/// Per-session sample → series cache over the shared index.
#[derive(Debug)]
pub struct SeriesResolver {
    index: Arc<RwLock<Index>>,
    /// The certificate's name, forced as `host`; `None` for the control plane's own writer,
    /// whose series carry the labels they were written with.
    host: Option<String>,
    cache: HashMap<CacheKey, Arc<Series>>,
}

#[derive(Debug, PartialEq, Eq)]
struct CacheKey {
    name: Box<str>,
    labels: Box<[(Box<str>, Box<str>)]>,
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(
            state,
            &self.name,
            self.labels.iter().map(|(n, v)| (&**n, &**v)),
        );
    }
}

/// Borrowed view of a sample, looked up without allocating.
struct SampleKey<'s, 'a>(&'s SampleRef<'a>);

impl Hash for SampleKey<'_, '_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(
            state,
            self.0.name,
            self.0.labels.iter().map(|l| (l.name, l.value)),
        );
    }
}

impl Equivalent<CacheKey> for SampleKey<'_, '_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        *key.name == *self.0.name
            && key.labels.len() == self.0.labels.len()
            && key
                .labels
                .iter()
                .zip(&self.0.labels)
                .all(|((n, v), l)| **n == *l.name && **v == *l.value)
    }
}

fn hash_parts<'a, H: Hasher>(
    state: &mut H,
    name: &str,
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) {
    name.hash(state);
    state.write_usize(labels.len());
    for (n, v) in labels {
        n.hash(state);
        v.hash(state);
    }
}

impl SeriesResolver {
    /// A resolver for one agent's samples.
    pub fn new(index: Arc<RwLock<Index>>, host: &str) -> Self {
        Self {
            index,
            host: Some(host.to_owned()),
            cache: HashMap::new(),
        }
    }

    /// The resolver for a WAL entry's writer: an agent's (host forced), or the control plane's
    /// own ([`super::LOCAL_WRITER`], labels kept).
    pub fn for_writer(index: Arc<RwLock<Index>>, writer: &str) -> Self {
        if writer == super::LOCAL_WRITER {
            Self {
                index,
                host: None,
                cache: HashMap::new(),
            }
        } else {
            Self::new(index, writer)
        }
    }

    /// The series of a sample, or `None` if the sample's names are invalid.
    pub fn resolve(&mut self, sample: &SampleRef<'_>) -> Option<Arc<Series>> {
        if let Some(series) = self.cache.get(&SampleKey(sample)) {
            return Some(Arc::clone(series));
        }
        if !valid(sample) {
            return None;
        }
        let mut pairs: Vec<(&str, &str)> = sample
            .labels
            .iter()
            .filter(|l| self.host.is_none() || l.name != HOST_LABEL)
            .map(|l| (l.name, l.value))
            .collect();
        if let Some(host) = &self.host {
            pairs.push((HOST_LABEL, host));
        }
        let series = {
            let mut index = self
                .index
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let labels = index.labels_for(sample.name, &pairs);
            index.get_or_create(labels).0
        };
        let key = CacheKey {
            name: sample.name.into(),
            labels: sample
                .labels
                .iter()
                .map(|l| (l.name.into(), l.value.into()))
                .collect(),
        };
        self.cache.insert(key, Arc::clone(&series));
        Some(series)
    }

    /// Decodes a batch payload and resolves every sample of the records with a sequence number at
    /// or above `first_new_seq`.
    ///
    /// # Errors
    /// When the payload or a record does not decode, or sequence numbers are inconsistent.
    pub fn decode_batch(
        &mut self,
        payload: &[u8],
        compression: Compression,
        first_seq: u64,
        last_seq: u64,
        first_new_seq: u64,
    ) -> Result<DecodedBatch, DecodeError> {
        let plain = codec::decompress_payload(payload, compression)?;
        let entries = codec::decode_entries_borrowed(&plain)?;
        let mut previous = None;
        for entry in &entries {
            if entry.seq < first_seq
                || entry.seq > last_seq
                || previous.is_some_and(|p| entry.seq <= p)
            {
                return Err(DecodeError::Sequence {
                    first: first_seq,
                    last: last_seq,
                });
            }
            previous = Some(entry.seq);
        }
        let mut out = DecodedBatch::default();
        for entry in entries.iter().filter(|e| e.seq >= first_new_seq) {
            out.records += 1;
            match codec::decode_record_borrowed(entry.record)? {
                RecordRef::Metrics(metrics) => {
                    out.samples.reserve(metrics.samples.len());
                    for sample in &metrics.samples {
                        match self.resolve(sample) {
                            Some(series) => {
                                out.samples
                                    .push((series, metrics.timestamp_ms, sample.value))
                            }
                            None => out.invalid_samples += 1,
                        }
                    }
                }
                RecordRef::Events(events) => out.events.push(RecordEvents {
                    seq: entry.seq,
                    timestamp_ms: events.timestamp_ms,
                    events: events.events,
                }),
                RecordRef::Logs(logs) => out.logs.push(RecordLogs {
                    seq: entry.seq,
                    entries: logs.entries,
                }),
                // Kinds a newer agent sends that this control plane does not store yet.
                _ => {}
            }
        }
        Ok(out)
    }
}

fn valid(sample: &SampleRef<'_>) -> bool {
    let label_ok = |l: &LabelRef<'_>| {
        l.name.len() <= MAX_NAME_BYTES
            && l.value.len() <= MAX_VALUE_BYTES
            && is_valid_label_name(l.name)
    };
    sample.name.len() <= MAX_NAME_BYTES
        && is_valid_metric_name(sample.name)
        && sample.labels.len() <= MAX_LABELS
        && sample.labels.iter().all(label_ok)
}

#[cfg(test)]
mod tests {
    use aisemble_shared::wire::{JournalEntry, MetricRecord, Record, Sample};

    use super::*;

    fn payload(records: &[(u64, i64, Vec<Sample>)]) -> Vec<u8> {
        let entries: Vec<JournalEntry> = records
            .iter()
            .map(|(seq, t, samples)| JournalEntry {
                seq: *seq,
                record: codec::encode_record(&Record::Metrics(MetricRecord {
                    timestamp_ms: *t,
                    samples: samples.clone(),
                }))
                .expect("encodes"),
            })
            .collect();
        codec::encode_entries(&entries, Compression::Zstd).expect("encodes")
    }

    #[test]
    fn resolves_with_the_certificate_host_and_caches() {
        let index = Arc::new(RwLock::new(Index::default()));
        let mut resolver = SeriesResolver::new(Arc::clone(&index), "node-1");
        let spoofed = Sample::new("cpu", 1.0)
            .with_label("host", "someone-else")
            .with_label("core", "0");
        let series = resolver.resolve(&SampleRef::from(&spoofed)).expect("valid");
        assert_eq!(series.labels.get("host"), Some("node-1"));
        assert_eq!(series.labels.get("core"), Some("0"));
        let again = resolver
            .resolve(&SampleRef::from(&spoofed))
            .expect("cached");
        assert!(Arc::ptr_eq(&series, &again));
        let mut other = SeriesResolver::new(Arc::clone(&index), "node-1");
        assert!(
            Arc::ptr_eq(
                &other.resolve(&SampleRef::from(&spoofed)).expect("valid"),
                &series
            ),
            "same labels, same series"
        );
        assert!(
            resolver
                .resolve(&SampleRef::from(&Sample::new("bad-name", 1.0)))
                .is_none()
        );
        assert!(
            resolver
                .resolve(&SampleRef::from(
                    &Sample::new("ok", 1.0).with_label("__bad", "x")
                ))
                .is_none()
        );
        assert_eq!(index.read().expect("lock").len(), 1);
    }

    #[test]
    fn decodes_only_new_records_and_checks_sequences() {
        let index = Arc::new(RwLock::new(Index::default()));
        let mut resolver = SeriesResolver::new(index, "a");
        let bytes = payload(&[
            (5, 1000, vec![Sample::new("x", 1.0)]),
            (6, 2000, vec![Sample::new("x", 2.0), Sample::new("y", 3.0)]),
        ]);
        let batch = resolver
            .decode_batch(&bytes, Compression::Zstd, 5, 6, 6)
            .expect("decodes");
        assert_eq!(batch.records, 1);
        assert_eq!(batch.samples.len(), 2);
        assert!(batch.samples.iter().all(|(_, t, _)| *t == 2000));
        assert!(matches!(
            resolver.decode_batch(&bytes, Compression::Zstd, 6, 6, 0),
            Err(DecodeError::Sequence { .. })
        ));
        assert!(matches!(
            resolver.decode_batch(b"junk", Compression::Zstd, 5, 6, 0),
            Err(DecodeError::Codec(_))
        ));
    }
}
