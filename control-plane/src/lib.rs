//! The Ai-semble Ops control plane.
pub mod store;
