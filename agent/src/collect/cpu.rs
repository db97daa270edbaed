//! CPU busy percentage across all cores, from `sysinfo` (which reads `/proc/stat`).

use std::time::Instant;

use aisemble_shared::{metrics, wire::Sample};
use sysinfo::{CpuRefreshKind, RefreshKind, System};

use super::{CollectError, Collector};

/// Busy % since the previous tick.
#[derive(Debug)]
pub struct Cpu {
    system: System,
    last_refresh: Instant,
}

impl Cpu {
    /// Takes the first reading; usage is reported from the next tick on.
    ///
    /// # Errors
    /// When the platform has no CPU statistics.
    pub fn new() -> Result<Self, CollectError> {
        let kind = RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing().with_usage());
        let system =
            System::new_with_specifics(kind).map_err(|_| CollectError::Unsupported("cpu usage"))?;
        Ok(Self {
            system,
            last_refresh: Instant::now(),
        })
    }
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        // Usage is a difference between two readings; closer than sysinfo's minimum the
        // difference is noise, so that tick reports nothing rather than a wrong number.
        if self.last_refresh.elapsed() < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            return Ok(());
        }
        self.system.refresh_cpu_usage();
        self.last_refresh = Instant::now();
        let usage = f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0);
        out.push(Sample::new(metrics::SYSTEM_CPU_USAGE_PERCENT, usage));
        Ok(())
    }
}
