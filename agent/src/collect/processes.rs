//! Number of processes: the numeric entries of `/proc` (cheaper than loading every process).

use std::path::PathBuf;

use aisemble_shared::{metrics, wire::Sample};

use super::{CollectError, Collector};

/// Counts processes.
#[derive(Debug)]
pub struct Processes {
    proc_dir: PathBuf,
}

impl Processes {
    /// Counts the processes under `proc_dir` (normally `/proc`).
    pub fn new(proc_dir: impl Into<PathBuf>) -> Self {
        Self {
            proc_dir: proc_dir.into(),
        }
    }
}

impl Collector for Processes {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let read_error = |source| CollectError::Read {
            path: self.proc_dir.display().to_string(),
            source,
        };
        let mut count = 0u64;
        for entry in std::fs::read_dir(&self.proc_dir).map_err(read_error)? {
            // Processes exit while we list; a vanished entry is not an error.
            let Ok(entry) = entry else { continue };
            if entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
            {
                count += 1;
            }
        }
        out.push(Sample::new(metrics::SYSTEM_PROCESSES, count as f64));
        Ok(())
    }
}
