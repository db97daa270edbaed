//! Bytes, packets and errors per network interface, from `sysinfo` (`/sys/class/net`).

use aisemble_shared::{metrics, wire::Sample};
use sysinfo::Networks;

use super::{CollectError, Collector};

/// Cumulative counters per interface, since boot (Prometheus computes rates).
#[derive(Debug)]
pub struct Network {
    networks: Networks,
}

impl Network {
    /// # Errors
    /// When the platform cannot list interfaces.
    pub fn new() -> Result<Self, CollectError> {
        let networks = Networks::new_with_refreshed_list()
            .map_err(|_| CollectError::Unsupported("network statistics"))?;
        Ok(Self { networks })
    }
}

impl Collector for Network {
    fn name(&self) -> &'static str {
        "network"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        self.networks.refresh(true);
        for (interface, data) in self.networks.iter() {
            let interface = interface.to_string_lossy();
            let counters = [
                (
                    metrics::SYSTEM_NETWORK_RECEIVE_BYTES_TOTAL,
                    data.total_received(),
                ),
                (
                    metrics::SYSTEM_NETWORK_TRANSMIT_BYTES_TOTAL,
                    data.total_transmitted(),
                ),
                (
                    metrics::SYSTEM_NETWORK_RECEIVE_PACKETS_TOTAL,
                    data.total_packets_received(),
                ),
                (
                    metrics::SYSTEM_NETWORK_TRANSMIT_PACKETS_TOTAL,
                    data.total_packets_transmitted(),
                ),
                (
                    metrics::SYSTEM_NETWORK_RECEIVE_ERRORS_TOTAL,
                    data.total_errors_on_received(),
                ),
                (
                    metrics::SYSTEM_NETWORK_TRANSMIT_ERRORS_TOTAL,
                    data.total_errors_on_transmitted(),
                ),
            ];
            for (name, value) in counters {
                out.push(
                    Sample::new(name, value as f64).with_label("interface", interface.as_ref()),
                );
            }
        }
        Ok(())
    }
}
