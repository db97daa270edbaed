//! The one way records enter the journal: encode, append on a blocking thread, wake the uplink.
//!
//! Every producer (the collector loop, health checks, scrapes) holds a clone of [`RecordSink`], so
//! the journal's contract (sequence assigned on append, cap, eviction counting) and the uplink's
//! wake-up live in one place.

use std::sync::Arc;

use aisemble_shared::{codec, wire::Record};
use tokio::sync::watch;
use tracing::warn;

use crate::journal::{Appended, Journal, JournalError};

/// Why a record was not journaled.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The record does not encode.
    #[error("encoding the record: {0}")]
    Encode(#[from] codec::CodecError),
    /// The journal refused it.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The blocking append task failed.
    #[error("journal task failed: {0}")]
    Task(String),
}

/// Appends records to the journal and tells the uplink.
#[derive(Debug, Clone)]
pub struct RecordSink {
    journal: Arc<dyn Journal>,
    appended: Arc<watch::Sender<u64>>,
}

impl RecordSink {
    /// A sink over `journal`; `appended` receives each new highest sequence number.
    pub fn new(journal: Arc<dyn Journal>, appended: watch::Sender<u64>) -> Self {
        Self {
            journal,
            appended: Arc::new(appended),
        }
    }

    /// Journals `record` (on a blocking thread) and wakes the uplink.
    ///
    /// # Errors
    /// When the record cannot be encoded or journaled.
    pub async fn append(&self, record: Record) -> Result<Appended, SinkError> {
        let journal = Arc::clone(&self.journal);
        let appended = tokio::task::spawn_blocking(move || {
            let bytes = codec::encode_record(&record)?;
            Ok::<_, SinkError>(journal.append(&bytes)?)
        })
        .await
        .map_err(|e| SinkError::Task(e.to_string()))??;
        self.note(appended);
        Ok(appended)
    }

    /// Journals `record` on the calling thread (for callers already on a blocking thread).
    ///
    /// # Errors
    /// When the record cannot be encoded or journaled.
    pub fn append_blocking(&self, record: &Record) -> Result<Appended, SinkError> {
        let bytes = codec::encode_record(record)?;
        let appended = self.journal.append(&bytes)?;
        self.note(appended);
        Ok(appended)
    }

    /// A receiver of the highest appended sequence number.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    fn note(&self, appended: Appended) {
        if appended.evicted > 0 {
            warn!(
                evicted = appended.evicted,
                "Journal full; oldest records evicted."
            );
        }
        self.appended.send_replace(appended.seq);
    }
}
