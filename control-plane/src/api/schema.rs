//! OpenAPI schemas of bodies whose types live outside the API (the views, rule manager and
//! store types, and `shared`'s wire types): those crates and modules stay free of OpenAPI. Each
//! mirror here describes its type's JSON exactly; the tests below compare their fields with
//! what the real types serialize, so a change on either side fails here.

#![allow(dead_code)] // Schema-only types: never built, only described.

use std::collections::BTreeMap;

use utoipa::ToSchema;

/// Latency quantiles in seconds (`null` without data).
#[derive(ToSchema)]
#[schema(as = Quantiles)]
pub(super) struct QuantilesDoc {
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

/// One model's figures over the window.
#[derive(ToSchema)]
#[schema(as = ModelView)]
pub(super) struct ModelViewDoc {
    model: String,
    inferences: f64,
    failures: f64,
    success_rate: Option<f64>,
    throughput_per_second: f64,
    latency_seconds: QuantilesDoc,
    queue_seconds: QuantilesDoc,
}

/// One service's figures over the window.
#[derive(ToSchema)]
#[schema(as = ServiceView)]
pub(super) struct ServiceViewDoc {
    service: String,
    requests: f64,
    requests_per_second: f64,
    success_rate: Option<f64>,
    rate_4xx_per_second: f64,
    rate_5xx_per_second: f64,
    errors: BTreeMap<String, f64>,
    latency_seconds: QuantilesDoc,
    active_connections: Option<f64>,
}

/// Tokens and cost of one (provider, model) this month.
#[derive(ToSchema)]
#[schema(as = UsageView)]
pub(super) struct UsageViewDoc {
    provider: String,
    model: String,
    tokens_in: f64,
    tokens_out: f64,
    cost_usd: f64,
}

/// Service and model views of a host or the fleet.
#[derive(ToSchema)]
#[schema(as = Views)]
pub(super) struct ViewsDoc {
    window_seconds: f64,
    models: Vec<ModelViewDoc>,
    services: Vec<ServiceViewDoc>,
    usage_this_month: Vec<UsageViewDoc>,
    cost_this_month_usd: f64,
}

/// A label.
#[derive(ToSchema)]
#[schema(as = Label)]
pub(super) struct LabelDoc {
    name: String,
    value: String,
}

/// A health check's change of state.
#[derive(ToSchema)]
#[schema(as = CheckStateChange)]
pub(super) struct CheckStateChangeDoc {
    check: String,
    kind: String,
    /// `null` for a check's first result.
    was_up: Option<bool>,
    up: bool,
    consecutive_failures: u64,
    error: Option<String>,
    labels: Vec<LabelDoc>,
}

/// Something that happened on a host (one key: the kind of event).
#[derive(ToSchema)]
#[schema(as = Event)]
pub(super) enum EventDoc {
    /// A health check went up or down.
    CheckStateChanged(CheckStateChangeDoc),
}

/// An agent's event.
#[derive(ToSchema)]
#[schema(as = StoredEvent)]
pub(super) struct StoredEventDoc {
    agent: String,
    timestamp_ms: i64,
    event: EventDoc,
}

/// A matcher in Alertmanager's v2 JSON shape.
#[derive(ToSchema)]
#[schema(as = Matcher)]
#[allow(non_snake_case)] // Alertmanager's field names.
pub(super) struct MatcherDoc {
    name: String,
    value: String,
    /// Default `false`.
    isRegex: Option<bool>,
    /// Default `true` (`false`: negated).
    isEqual: Option<bool>,
}

/// An alert of a rule.
#[derive(ToSchema)]
#[schema(as = AlertView)]
pub(super) struct AlertViewDoc {
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// `pending`, `firing` or `inactive`.
    state: String,
    /// `null` when not a finite number.
    value: Option<f64>,
    active_at_ms: i64,
    fired_at_ms: Option<i64>,
    resolved_at_ms: Option<i64>,
    fingerprint: String,
    group: String,
    file: String,
}

/// A rule with its state.
#[derive(ToSchema)]
#[schema(as = RuleView)]
pub(super) struct RuleViewDoc {
    name: String,
    /// `alerting` or `recording`.
    r#type: String,
    query: String,
    duration: f64,
    keep_firing_for: f64,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// `ok`, `err` or `unknown`.
    health: String,
    last_error: Option<String>,
    state: String,
    evaluation_time: f64,
    last_evaluation_ms: Option<i64>,
    alerts: Vec<AlertViewDoc>,
}

/// A rule group with its rules.
#[derive(ToSchema)]
#[schema(as = GroupView)]
pub(super) struct GroupViewDoc {
    name: String,
    file: String,
    /// Seconds.
    interval: f64,
    rules: Vec<RuleViewDoc>,
}

#[cfg(test)]
mod tests;
