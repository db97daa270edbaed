//! Scraping local Prometheus text endpoints (inference servers: vLLM, TGI, Triton) and mapping
//! their families into `aisemble_*` names; each scrape is journaled as one record.
//!
//! SKELETON: interface only, filled in by the scrape work.

use std::{path::Path, time::Duration};

use aisemble_shared::config::{ConfigError, ScrapeConfig};
use aisemble_shared::wire::MonitoringState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::sink::RecordSink;

/// A checked scrape target.
#[derive(Debug, Clone)]
pub struct ScrapeSpec {
    /// Unique name (the `target` label).
    pub name: String,
}

impl ScrapeSpec {
    /// Checks one `[[scrape]]` entry.
    ///
    /// # Errors
    /// A one-line error naming the key (`scrape.NAME.preset`) and the fix.
    pub fn from_config(
        path: &Path,
        config: &ScrapeConfig,
        default_interval: Duration,
    ) -> Result<Self, ConfigError> {
        let _ = (config, default_interval);
        Err(ConfigError::new(
            path,
            Some("scrape"),
            "not implemented",
            "",
        ))
    }
}

/// Scrapes every target until `shutdown` (none while `monitoring` is paused), journaling through `sink`.
pub fn spawn_all(
    specs: Vec<ScrapeSpec>,
    sink: RecordSink,
    monitoring: watch::Receiver<MonitoringState>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let _ = (specs, sink, monitoring);
    tokio::spawn(async move { shutdown.cancelled().await })
}
