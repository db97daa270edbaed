//! The local push endpoint: applications report inference and request events over loopback HTTP
//! or a Unix socket; the agent aggregates them into counters and histograms and journals series
//! at each collection tick, never one record per event.
//!
//! SKELETON: interface only, filled in by the push work.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use aisemble_shared::{
    config::{ConfigError, PushSection},
    wire::Sample,
};
use tokio_util::sync::CancellationToken;

use crate::collect::{CollectError, Collector};

/// Checked `[push]` settings.
#[derive(Debug, Clone)]
pub struct PushSettings {}

impl PushSettings {
    /// Checks `[push]`; `None` when neither `listen` nor `socket` is set.
    ///
    /// # Errors
    /// A one-line error naming the key and the fix.
    pub fn from_config(path: &Path, section: &PushSection) -> Result<Option<Self>, ConfigError> {
        let _ = (path, section);
        Ok(None)
    }
}

/// Aggregated events (pure; no I/O).
#[derive(Debug, Default)]
pub struct Aggregator {}

impl Aggregator {
    /// An empty aggregator bounded by `settings`.
    pub fn new(settings: &PushSettings) -> Self {
        let _ = settings;
        Self {}
    }
}

/// Emits the aggregator's series at each collection tick.
#[derive(Debug)]
pub struct PushCollector {
    aggregator: Arc<Mutex<Aggregator>>,
}

impl PushCollector {
    /// A collector over `aggregator`.
    pub fn new(aggregator: Arc<Mutex<Aggregator>>) -> Self {
        Self { aggregator }
    }
}

impl Collector for PushCollector {
    fn name(&self) -> &'static str {
        "push"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let _ = (&self.aggregator, out);
        Ok(())
    }
}

/// Serves the push endpoints until `shutdown`.
///
/// # Errors
/// When a listener cannot be bound.
pub async fn serve(
    settings: PushSettings,
    aggregator: Arc<Mutex<Aggregator>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let _ = (settings, aggregator);
    shutdown.cancelled().await;
    Ok(())
}
