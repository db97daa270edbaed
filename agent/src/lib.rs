//! The Ai-semble Ops host agent.
//!
//! Collectors measure the host; every record goes into the sled journal first (where it gets its
//! sequence number); the uplink streams the journal to the control plane over mutual-TLS QUIC and
//! deletes only what the control plane acknowledged as stored. `main.rs` is glue: config,
//! tracing, signals.

pub mod backup;
pub mod checks;
pub mod collect;
pub mod config;
pub mod enroll;
pub mod http_client;
pub mod journal;
pub mod logs;
pub mod push;
pub mod run;
pub mod schedule;
pub mod scrape;
pub mod sink;
pub mod status;
pub mod tls;
pub mod uplink;

pub use config::Settings;
pub use run::run;
