//! Vocabulary shared by the agent and the control plane.
//!
//! Owns the wire protocol (message types and the one codec module that encodes them), the metric
//! names of SPEC §6, identifiers, and the config types both sides read or write. It performs no
//! I/O and reads no clock: time is always passed in.

pub mod codec;
pub mod config;
pub mod ids;
pub mod metrics;
pub mod units;
pub mod wire;

/// Version of this build, as reported in `Hello` and `Welcome`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
