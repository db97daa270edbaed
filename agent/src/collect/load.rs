//! Load averages and uptime, from `sysinfo` (`/proc/loadavg`, `/proc/uptime`).

use aisemble_shared::{metrics, wire::Sample};
use sysinfo::System;

use super::{CollectError, Collector};

/// 1, 5 and 15-minute load averages.
#[derive(Debug, Default)]
pub struct Load;

impl Collector for Load {
    fn name(&self) -> &'static str {
        "load"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let load = System::load_average().map_err(|_| CollectError::Unsupported("load average"))?;
        out.push(Sample::new(metrics::SYSTEM_LOAD1, load.one));
        out.push(Sample::new(metrics::SYSTEM_LOAD5, load.five));
        out.push(Sample::new(metrics::SYSTEM_LOAD15, load.fifteen));
        Ok(())
    }
}

/// Seconds since boot.
#[derive(Debug, Default)]
pub struct Uptime;

impl Collector for Uptime {
    fn name(&self) -> &'static str {
        "uptime"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let uptime = System::uptime().map_err(|_| CollectError::Unsupported("uptime"))?;
        out.push(Sample::new(metrics::SYSTEM_UPTIME_SECONDS, uptime as f64));
        Ok(())
    }
}
