//! The Ai-semble Ops control plane.
pub mod alerts;
pub mod api;
pub mod auth;
pub mod commands;
pub mod config;
pub mod ingest;
pub mod query;
pub mod registry;
pub mod remote;
pub mod reports;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tui;
pub mod views;
