//! Memory and swap in use, from `sysinfo` (which reads `/proc/meminfo`).

use aisemble_shared::{metrics, wire::Sample};
use sysinfo::{MemoryRefreshKind, RefreshKind, System};

use super::{CollectError, Collector};

/// Memory used (total minus available), its percentage, and swap used.
#[derive(Debug)]
pub struct Memory {
    system: System,
}

impl Memory {
    /// # Errors
    /// When the platform has no memory statistics.
    pub fn new() -> Result<Self, CollectError> {
        let kind = RefreshKind::nothing().with_memory(MemoryRefreshKind::everything());
        let system = System::new_with_specifics(kind)
            .map_err(|_| CollectError::Unsupported("memory usage"))?;
        Ok(Self { system })
    }
}

impl Collector for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        self.system.refresh_memory();
        let total = self.system.total_memory();
        let used = self.system.used_memory();
        if total > 0 {
            out.push(Sample::new(
                metrics::SYSTEM_MEMORY_USAGE_PERCENT,
                used as f64 * 100.0 / total as f64,
            ));
        }
        out.push(Sample::new(metrics::SYSTEM_MEMORY_USED_BYTES, used as f64));
        out.push(Sample::new(
            metrics::SYSTEM_MEMORY_TOTAL_BYTES,
            total as f64,
        ));
        out.push(Sample::new(
            metrics::SYSTEM_SWAP_USED_BYTES,
            self.system.used_swap() as f64,
        ));
        Ok(())
    }
}
