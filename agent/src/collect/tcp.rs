//! TCP connections by state, from `/proc/net/tcp` and `/proc/net/tcp6`.
//!
//! Every state is reported every tick (zeros included) so series do not appear and vanish.
//! Reading the text tables is linear in the number of sockets; for hosts with hundreds of
//! thousands of sockets, netlink `sock_diag` would be the faster source.

use std::path::PathBuf;

use aisemble_shared::{metrics, wire::Sample};

use super::{CollectError, Collector};

/// Kernel TCP states, indexed by their code in `/proc/net/tcp` (include/net/tcp_states.h).
const STATES: [&str; 12] = [
    "unknown",
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

/// Counts TCP sockets by state over IPv4 and IPv6.
#[derive(Debug)]
pub struct Tcp {
    tables: Vec<PathBuf>,
}

impl Tcp {
    /// Reads `<proc_dir>/net/tcp` and `<proc_dir>/net/tcp6`.
    pub fn new(proc_dir: impl Into<PathBuf>) -> Self {
        let proc_dir = proc_dir.into();
        Self {
            tables: vec![proc_dir.join("net/tcp"), proc_dir.join("net/tcp6")],
        }
    }
}

/// Adds the sockets of one `/proc/net/tcp`-format table to `counts`.
pub(crate) fn count_states(table: &str, counts: &mut [u64; STATES.len()]) {
    for line in table.lines().skip(1) {
        // Columns: sl local_address rem_address st ...; `st` is a hex state code.
        let Some(state) = line.split_whitespace().nth(3) else {
            continue;
        };
        if let Ok(code) = u8::from_str_radix(state, 16) {
            let index = usize::from(code);
            counts[if index < STATES.len() { index } else { 0 }] += 1;
        }
    }
}

impl Collector for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn collect(&mut self, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let mut counts = [0u64; STATES.len()];
        let mut read_any = false;
        for table in &self.tables {
            match std::fs::read_to_string(table) {
                Ok(text) => {
                    count_states(&text, &mut counts);
                    read_any = true;
                }
                // A kernel without IPv6 has no tcp6 table; that is not an error.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CollectError::Read {
                        path: table.display().to_string(),
                        source,
                    });
                }
            }
        }
        if !read_any {
            return Err(CollectError::Unsupported("TCP connection table"));
        }
        for (state, count) in STATES.iter().zip(counts).skip(1) {
            out.push(
                Sample::new(metrics::SYSTEM_TCP_CONNECTIONS, count as f64)
                    .with_label("state", *state),
            );
        }
        Ok(())
    }
}
