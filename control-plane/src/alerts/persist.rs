//! What alerting keeps on disk, in sled trees of the store's database: each rule's alerts (so
//! `for` timers and firing alerts survive a restart), the notification log (so nothing is
//! notified twice), silences, and the history of alerts that fired.
//!
//! Values are JSON: small, rare writes, and an operator can read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{
    dispatch::{NflogEntry, NflogKey},
    silence::{Silence, SilenceRecord},
    state::{Alert, AlertState, LabelMap},
};

/// History entries kept (the oldest are dropped).
pub const HISTORY_LIMIT: usize = 10_000;

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// sled failed.
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    /// A value did not encode.
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The alerting trees.
#[derive(Debug, Clone)]
pub struct AlertStore {
    state: sled::Tree,
    nflog: sled::Tree,
    silences: sled::Tree,
    history: sled::Tree,
}

/// One alert as persisted.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PersistedAlert {
    /// Labels.
    pub labels: LabelMap,
    /// Annotations at the last evaluation.
    pub annotations: LabelMap,
    /// `pending`, `firing`, `inactive`.
    pub state: String,
    /// Last value.
    pub value: f64,
    /// ms.
    pub active_at: i64,
    /// ms.
    pub fired_at: Option<i64>,
    /// ms.
    pub resolved_at: Option<i64>,
    /// ms.
    pub keep_firing_since: Option<i64>,
}

impl PersistedAlert {
    /// From an alert.
    pub fn from_alert(a: &Alert) -> Self {
        Self {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            state: a.state.as_str().into(),
            value: if a.value.is_finite() { a.value } else { 0.0 },
            active_at: a.active_at,
            fired_at: a.fired_at,
            resolved_at: a.resolved_at,
            keep_firing_since: a.keep_firing_since,
        }
    }

    /// To an alert.
    pub fn to_alert(&self) -> Alert {
        Alert {
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            state: match self.state.as_str() {
                "firing" => AlertState::Firing,
                "pending" => AlertState::Pending,
                _ => AlertState::Inactive,
            },
            value: self.value,
            active_at: self.active_at,
            fired_at: self.fired_at,
            resolved_at: self.resolved_at,
            keep_firing_since: self.keep_firing_since,
            scratch: Default::default(),
        }
    }

    /// The fields whose change must be written (not the value or annotations, which every
    /// evaluation refreshes).
    pub fn lifecycle(&self) -> (&str, i64, Option<i64>, Option<i64>, Option<i64>) {
        (
            &self.state,
            self.active_at,
            self.fired_at,
            self.resolved_at,
            self.keep_firing_since,
        )
    }
}

/// A fired alert, from when it started firing to when it resolved.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Label fingerprint.
    pub fingerprint: String,
    /// Labels.
    pub labels: LabelMap,
    /// Annotations when it started firing (updated when it resolves).
    pub annotations: LabelMap,
    /// When it became active (ms).
    pub active_at: i64,
    /// When it started firing (ms).
    pub starts_at: i64,
    /// When it resolved (ms).
    pub ends_at: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct NflogRecord {
    group_key: String,
    receiver: String,
    integration: String,
    entry: NflogEntry,
}

impl AlertStore {
    /// Opens the trees in the store's database.
    ///
    /// # Errors
    /// When sled fails.
    pub fn open(store: &crate::store::Store) -> Result<Self, crate::store::StoreError> {
        Ok(Self {
            state: store.open_tree("alerts_state")?,
            nflog: store.open_tree("alerts_nflog")?,
            silences: store.open_tree("alerts_silences")?,
            history: store.open_tree("alerts_history")?,
        })
    }

    /// The persisted alerts of a rule.
    pub fn rule_alerts(&self, rule_key: &str) -> Vec<PersistedAlert> {
        match self.state.get(rule_key.as_bytes()) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                warn!(%error, rule = rule_key, "Ignoring unreadable persisted alert state.");
                Vec::new()
            }),
            _ => Vec::new(),
        }
    }

    /// Writes (or, when empty, removes) the alerts of rules, and drops rules not in `keep`.
    ///
    /// # Errors
    /// When sled fails.
    pub fn write_rule_alerts(
        &self,
        changed: &[(String, Vec<PersistedAlert>)],
        keep: Option<&std::collections::HashSet<String>>,
    ) -> Result<(), PersistError> {
        let mut batch = sled::Batch::default();
        for (key, alerts) in changed {
            if alerts.is_empty() {
                batch.remove(key.as_bytes());
            } else {
                batch.insert(key.as_bytes(), serde_json::to_vec(alerts)?);
            }
        }
        if let Some(keep) = keep {
            for key in self.state.iter().keys().flatten() {
                if !std::str::from_utf8(&key).is_ok_and(|k| keep.contains(k)) {
                    batch.remove(key);
                }
            }
        }
        self.state.apply_batch(batch)?;
        self.state.flush()?;
        Ok(())
    }

    /// The notification log.
    pub fn nflog(&self) -> BTreeMap<NflogKey, NflogEntry> {
        self.nflog
            .iter()
            .values()
            .flatten()
            .filter_map(|v| serde_json::from_slice::<NflogRecord>(&v).ok())
            .map(|r| ((r.group_key, r.receiver, r.integration), r.entry))
            .collect()
    }

    /// Replaces the notification log, durably.
    ///
    /// # Errors
    /// When sled fails.
    pub fn write_nflog(&self, log: &BTreeMap<NflogKey, NflogEntry>) -> Result<(), PersistError> {
        let mut batch = sled::Batch::default();
        let mut keys = std::collections::HashSet::new();
        for ((group_key, receiver, integration), entry) in log {
            let key = format!("{receiver}\u{0}{integration}\u{0}{group_key}");
            let record = NflogRecord {
                group_key: group_key.clone(),
                receiver: receiver.clone(),
                integration: integration.clone(),
                entry: entry.clone(),
            };
            batch.insert(key.as_bytes(), serde_json::to_vec(&record)?);
            keys.insert(key.into_bytes());
        }
        for key in self.nflog.iter().keys().flatten() {
            if !keys.contains(key.as_ref()) {
                batch.remove(key);
            }
        }
        self.nflog.apply_batch(batch)?;
        self.nflog.flush()?;
        Ok(())
    }

    /// Every persisted silence.
    pub fn silences(&self) -> Vec<Silence> {
        self.silences
            .iter()
            .values()
            .flatten()
            .filter_map(|v| serde_json::from_slice::<SilenceRecord>(&v).ok())
            .filter_map(|r| r.to_silence().ok())
            .collect()
    }

    /// Writes a silence durably.
    ///
    /// # Errors
    /// When sled fails.
    pub fn put_silence(&self, silence: &Silence) -> Result<(), PersistError> {
        let record = SilenceRecord::from_silence(silence);
        self.silences
            .insert(silence.id.as_bytes(), serde_json::to_vec(&record)?)?;
        self.silences.flush()?;
        Ok(())
    }

    /// Removes silences.
    ///
    /// # Errors
    /// When sled fails.
    pub fn remove_silences(&self, ids: &[String]) -> Result<(), PersistError> {
        for id in ids {
            self.silences.remove(id.as_bytes())?;
        }
        Ok(())
    }

    /// Records that an alert started firing, or resolved.
    ///
    /// # Errors
    /// When sled fails.
    pub fn record_history(&self, entry: &HistoryEntry) -> Result<(), PersistError> {
        let key = history_key(entry.starts_at, &entry.fingerprint);
        self.history.insert(key, serde_json::to_vec(entry)?)?;
        while self.history.len() > HISTORY_LIMIT {
            match self.history.pop_min()? {
                Some(_) => {}
                None => break,
            }
        }
        Ok(())
    }

    /// The newest `limit` history entries, newest first.
    pub fn history(&self, limit: usize) -> Vec<HistoryEntry> {
        self.history
            .iter()
            .rev()
            .flatten()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .take(limit)
            .collect()
    }
}

fn history_key(starts_at: i64, fingerprint: &str) -> Vec<u8> {
    // Big-endian with the sign bit flipped: byte order is time order.
    let mut key = ((starts_at as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    key.extend_from_slice(fingerprint.as_bytes());
    key
}
