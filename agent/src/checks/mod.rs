//! Health checks: each configured check runs on its own schedule with its own timeout; results
//! become `aisemble_check_*` samples and state changes become events, both journaled.
//!
//! SKELETON: interface only, filled in by the checks work.

use std::{path::Path, time::Duration};

use aisemble_shared::wire::MonitoringState;
use aisemble_shared::{
    config::{CheckConfig, ConfigError},
    wire::Label,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::sink::RecordSink;

/// A checked, ready-to-run health check.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// Unique name (the `check` label).
    pub name: String,
    /// How often it runs.
    pub interval: Duration,
    /// How long one run may take.
    pub timeout: Duration,
    /// Extra labels on its series.
    pub labels: Vec<Label>,
}

impl CheckSpec {
    /// Checks one `[[checks]]` entry of the config file at `path`.
    ///
    /// # Errors
    /// A one-line error naming the key (`checks.NAME.url`) and the fix.
    pub fn from_config(
        path: &Path,
        config: &CheckConfig,
        default_interval: Duration,
    ) -> Result<Self, ConfigError> {
        let _ = (path, config, default_interval);
        Err(ConfigError::new(
            path,
            Some("checks"),
            "not implemented",
            "",
        ))
    }
}

/// Runs every check until `shutdown` (none while `monitoring` is paused), journaling results through `sink`.
pub fn spawn_all(
    specs: Vec<CheckSpec>,
    sink: RecordSink,
    monitoring: watch::Receiver<MonitoringState>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let _ = (specs, sink, monitoring);
    tokio::spawn(async move { shutdown.cancelled().await })
}
