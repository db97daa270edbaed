//! Filesystem usage per mount point, from `sysinfo` (`/proc/mounts` plus `statvfs`).

use std::collections::HashSet;

use aisemble_shared::{metrics, wire::Sample};
use sysinfo::{DiskRefreshKind, Disks};

use super::{CollectError, Collector};

/// Used %, used and total bytes of every real mounted filesystem.
#[derive(Debug)]
pub struct Disk {
    disks: Disks,
}

impl Disk {
    /// # Errors
    /// When the platform cannot list filesystems.
    pub fn new() -> Result<Self, CollectError> {
        let disks =
            Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
                .map_err(|_| CollectError::Unsupported("filesystem usage"))?;
        Ok(Self { disks })
    }
}

impl Collector for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        // Refreshing the list picks up new mounts and forgets unmounted ones.
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        let mut seen = HashSet::new();
        for disk in self.disks.iter() {
            let total = disk.total_space();
            let mount = disk.mount_point().to_string_lossy().into_owned();
            // Bind mounts list the same filesystem several times; the first mount wins.
            if total == 0 || !seen.insert(mount.clone()) {
                continue;
            }
            let used = total.saturating_sub(disk.available_space());
            let device = disk.name().to_string_lossy().into_owned();
            let fstype = disk.file_system().to_string_lossy().into_owned();
            let labelled = |name: &str, value: f64| {
                Sample::new(name, value)
                    .with_label("mount", mount.clone())
                    .with_label("device", device.clone())
                    .with_label("fstype", fstype.clone())
            };
            out.push(labelled(
                metrics::SYSTEM_DISK_USAGE_PERCENT,
                used as f64 * 100.0 / total as f64,
            ));
            out.push(labelled(metrics::SYSTEM_DISK_USED_BYTES, used as f64));
            out.push(labelled(metrics::SYSTEM_DISK_TOTAL_BYTES, total as f64));
        }
        Ok(())
    }
}
