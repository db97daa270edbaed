//! System collectors: each measures one aspect of the host and appends samples; none does network
//! I/O.
//!
//! Collectors run on a blocking thread (they read `/proc` and call `statvfs`), once per collection
//! tick, and keep their state (the `sysinfo` handles, the previous CPU reading) between ticks.
//! Samples carry no `host` label: the control plane adds it from the agent's certificate.

mod cpu;
mod disk;
mod load;
mod memory;
mod network;
mod processes;
mod tcp;

pub use cpu::Cpu;
pub use disk::Disk;
pub use load::{Load, Uptime};
pub use memory::Memory;
pub use network::Network;
pub use processes::Processes;
pub use tcp::Tcp;

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
pub trait Collector: Send + std::fmt::Debug {
    /// Short name for logs (`cpu`, `disk`).
    fn name(&self) -> &'static str;

    /// Appends this tick's samples to `out`.
    ///
    /// # Errors
    /// When the measurement could not be taken this tick.
    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError>;
}

/// The collectors built from the config, and those the platform cannot offer.
#[derive(Debug, Default)]
pub struct Built {
    /// Ready to run.
    pub collectors: Vec<Box<dyn Collector>>,
    /// Left out, with the reason; the agent runs with the rest.
    pub unavailable: Vec<(CollectorKind, CollectError)>,
}

/// Builds the configured collectors.
pub fn build(kinds: &[CollectorKind]) -> Built {
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    let mut failed = Vec::new();
    let mut add = |kind, built: Result<Box<dyn Collector>, CollectError>| match built {
        Ok(collector) => collectors.push(collector),
        Err(error) => failed.push((kind, error)),
    };
    for &kind in kinds {
        match kind {
            CollectorKind::Cpu => add(kind, Cpu::new().map(|c| Box::new(c) as _)),
            CollectorKind::Memory => add(kind, Memory::new().map(|c| Box::new(c) as _)),
            CollectorKind::Disk => add(kind, Disk::new().map(|c| Box::new(c) as _)),
            CollectorKind::Network => add(kind, Network::new().map(|c| Box::new(c) as _)),
            CollectorKind::Load => add(kind, Ok(Box::new(Load))),
            CollectorKind::Uptime => add(kind, Ok(Box::new(Uptime))),
            CollectorKind::Processes => add(kind, Ok(Box::new(Processes::new("/proc")))),
            CollectorKind::Tcp => add(kind, Ok(Box::new(Tcp::new("/proc")))),
            _ => {}
        }
    }
    Built {
        collectors,
        unavailable: failed,
    }
}

/// Runs every collector once, appending to `out`; returns the failures of this tick.
pub fn collect_all(
    collectors: &mut [Box<dyn Collector>],
    out: &mut Vec<Sample>,
) -> Vec<(&'static str, CollectError)> {
    let mut failures = Vec::new();
    for collector in collectors.iter_mut() {
        if let Err(error) = collector.collect(out) {
            failures.push((collector.name(), error));
        }
    }
    failures
}

#[cfg(test)]
mod tests;
