//! Alerting: rules, evaluation, routing and notification.

pub mod notify;
