//! System collectors: each one measures one thing and appends samples; none does network I/O.
//!
//! Collectors run on a blocking thread (they read `/proc` and call `statvfs`), once per
//! collection tick, and keep their state (previous counters, the `sysinfo` handles) between ticks.

use aisemble_shared::{config::CollectorKind, wire::Sample};

/// Why a collector produced nothing this tick. The agent logs it and carries on with the others.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Reading a kernel interface failed.
    #[error("reading {path}: {source}")]
    Read {
        /// What was read.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The platform does not offer this measurement.
    #[error("{0} is not available on this platform")]
    Unsupported(&'static str),
}

/// Measures one aspect of the host.
pub trait Collector: Send {
    /// Short name for logs (`cpu`, `disk`).
    fn name(&self) -> &'static str;

    /// Appends this tick's samples to `out`.
    ///
    /// # Errors
    /// When the measurement could not be taken this tick.
    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError>;
}
