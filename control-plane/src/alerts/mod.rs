//! Alerting: rules, evaluation, routing and notification.
//!
//! - [`rules`] parses and validates Prometheus rule files; [`template`] (with [`gofmt`]) renders
//!   label and annotation templates as Go does.
//! - [`state`] is the pure alert state machine of one rule; [`group`] evaluates a group at one
//!   instant over any [`crate::query::SeriesSource`].
//! - [`route`], [`matcher`], [`silence`] and [`dispatch`] are Alertmanager's routing tree,
//!   matchers, silences, inhibition, aggregation groups and notification log, pure.
//! - [`unittest`] runs promtool's rule unit-test files (`aisemble-cp rules test`).

pub mod config;
pub mod dispatch;
pub mod engine;
pub mod gofmt;
pub mod group;
pub mod manager;
pub mod matcher;
pub mod notify;
pub mod persist;
pub mod route;
pub mod rules;
pub mod silence;
pub mod state;
pub mod template;
pub mod unittest;
