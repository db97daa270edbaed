//! Harness for the end-to-end tests: builds and starts the real `aisemble-cp` and
//! `aisemble-agent` binaries as processes (so tests can `kill -9` them), talks to them over real
//! HTTP and real mutual-TLS QUIC on loopback, and reads their structured logs.
//!
//! The tests themselves are in `src/tests/`.

pub mod bins;
pub mod fake_agent;
pub mod http;
pub mod process;
pub mod quic;
pub mod wait;

#[cfg(test)]
mod tests;
