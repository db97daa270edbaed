//! The terminal dashboard (`aisemble-cp dashboard`): a client of a control plane's HTTP API.
//!
//! A pure core and a thin driver, so that everything but the terminal is testable:
//! - [`snapshot`] fetches one [`Snapshot`] over HTTP and types the answers;
//! - [`render::render`] draws a snapshot and a [`UiState`] into any ratatui frame (tests use
//!   `TestBackend`);
//! - [`ui`] maps keys to state changes and [`ui::Action`]s;
//! - [`status`] assesses a snapshot for `--mode status` (exit codes 0/1/2, 3 when the control
//!   plane cannot be asked);
//! - [`app`] is the driver: raw mode, the alternate screen, one event loop over keys, ticks and
//!   finished fetches.
//!
//! It never talks to the store or the agents: only to the API, with a viewer token.

pub mod app;
pub mod render;
pub mod snapshot;
pub mod status;
pub mod ui;

pub use render::render;
pub use snapshot::{Snapshot, fetch};
pub use ui::UiState;

#[cfg(test)]
mod tests;
