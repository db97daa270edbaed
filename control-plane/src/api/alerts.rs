//! Alerting endpoints: the fleet-wide alert view (`/ops/alerts`, with history), rules
//! (`GET/PUT /ops/alerts/rules`), silences (`/ops/silences`), and Prometheus' `/api/v1/rules` and
//! `/api/v1/alerts` for Grafana.
//!
//! Bodies are typed for the OpenAPI document, with fields in alphabetical order (they were built
//! with `json!`, whose keys are sorted, and stay byte for byte the same).

use std::collections::BTreeMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    response::Response,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    error::{ApiError, ErrorBody},
    schema::{GroupViewDoc, MatcherDoc},
};
use crate::{
    alerts::{
        engine::SilenceStoreError,
        manager::{AlertView, RulesUpdateError},
        matcher::{Matcher, parse_list},
        persist::HistoryEntry,
        rules::parse_duration,
        silence::{MatcherRecord, Silence, SilenceError},
    },
    store::now_ms,
};

/// Severities, most urgent first.
const SEVERITY_ORDER: &[&str] = &["critical", "warning", "info"];

fn severity_rank(labels: &BTreeMap<String, String>) -> usize {
    labels
        .get("severity")
        .and_then(|s| SEVERITY_ORDER.iter().position(|o| o == s))
        .unwrap_or(SEVERITY_ORDER.len())
}

fn state_rank(state: &str) -> usize {
    match state {
        "firing" => 0,
        "pending" => 1,
        _ => 2,
    }
}

/// RFC 3339 in UTC, as Alertmanager shows times.
pub(super) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::unprocessable(format!(
                "{field}: {text:?} is not an RFC 3339 time (2026-12-01T10:00:00Z)"
            ))
        })?;
    Ok((parsed.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

/// An alert's value: a number, or `"NaN"`, `"inf"`, `"-inf"` as text.
#[derive(Serialize, Debug, ToSchema)]
#[serde(untagged)]
pub(super) enum AlertValue {
    /// A finite value.
    Number(f64),
    /// A value JSON has no number for.
    Text(String),
}

/// One alert in `/ops/alerts`.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct AlertItem {
    /// When its condition became true (RFC 3339).
    active_at: String,
    annotations: BTreeMap<String, String>,
    /// Rule file.
    file: String,
    fingerprint: String,
    /// When it started firing.
    fired_at: Option<String>,
    /// Rule group.
    group: String,
    /// Its `host` label.
    host: Option<String>,
    /// Ids of the alerts inhibiting it.
    inhibited_by: Vec<String>,
    labels: BTreeMap<String, String>,
    /// Silenced or inhibited.
    muted: bool,
    /// Alert name.
    name: String,
    /// When it resolved.
    resolved_at: Option<String>,
    /// Its `severity` label.
    severity: Option<String>,
    /// Ids of the silences muting it.
    silenced_by: Vec<String>,
    /// `pending`, `firing` or `inactive` (resolved).
    state: String,
    value: AlertValue,
}

/// A past alert.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct HistoryItem {
    active_at: String,
    annotations: BTreeMap<String, String>,
    /// When it resolved, if it has.
    ends_at: Option<String>,
    fingerprint: String,
    host: Option<String>,
    labels: BTreeMap<String, String>,
    name: Option<String>,
    severity: Option<String>,
    /// When it started firing.
    starts_at: String,
}

/// `GET /ops/alerts` body.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct AlertList {
    /// Critical first, then firing before pending, newest first.
    alerts: Vec<AlertItem>,
    /// Active alerts by severity and state.
    #[schema(value_type = BTreeMap<String, BTreeMap<String, usize>>)]
    counts: BTreeMap<String, BTreeMap<&'static str, usize>>,
    /// When rules were last evaluated.
    evaluated_at: Option<String>,
    /// Past alerts, newest first.
    history: Vec<HistoryItem>,
}

/// Filters of `GET /ops/alerts` (all repeatable).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only: the handler reads the raw query string.
pub(super) struct AlertFilters {
    /// Only this severity.
    severity: Option<Vec<String>>,
    /// `firing`, `pending` or `resolved` (comma-separated for several).
    state: Option<Vec<String>>,
    /// Only this host.
    host: Option<Vec<String>>,
    /// `name=value`.
    label: Option<Vec<String>>,
    /// An Alertmanager matcher, `alertname=~"High.*"`.
    #[param(rename = "match")]
    matcher: Option<Vec<String>>,
    /// How many past alerts (default 50, at most 10000).
    #[param(minimum = 0)]
    history: Option<u64>,
}

/// One alert in `/ops/alerts`.
fn alert_item(state: &AppState, alert: &AlertView) -> AlertItem {
    let (silenced_by, inhibited_by) = match alert.state {
        "firing" => state.alerting.muted_by(&alert.labels),
        _ => (Vec::new(), Vec::new()),
    };
    AlertItem {
        active_at: rfc3339(alert.active_at_ms),
        annotations: alert.annotations.clone(),
        file: alert.file.clone(),
        fingerprint: alert.fingerprint.clone(),
        fired_at: alert.fired_at_ms.map(rfc3339),
        group: alert.group.clone(),
        host: alert.labels.get("host").cloned(),
        muted: !silenced_by.is_empty() || !inhibited_by.is_empty(),
        inhibited_by,
        labels: alert.labels.clone(),
        name: alert.name.clone(),
        resolved_at: alert.resolved_at_ms.map(rfc3339),
        severity: alert.labels.get("severity").cloned(),
        silenced_by,
        state: alert.state.to_owned(),
        value: if alert.value.is_finite() {
            AlertValue::Number(alert.value)
        } else {
            AlertValue::Text(alert.value.to_string())
        },
    }
}

fn history_item(entry: &HistoryEntry) -> HistoryItem {
    HistoryItem {
        active_at: rfc3339(entry.active_at),
        annotations: entry.annotations.clone(),
        ends_at: entry.ends_at.map(rfc3339),
        fingerprint: entry.fingerprint.clone(),
        host: entry.labels.get("host").cloned(),
        labels: entry.labels.clone(),
        name: entry.labels.get("alertname").cloned(),
        severity: entry.labels.get("severity").cloned(),
        starts_at: rfc3339(entry.starts_at),
    }
}

/// `GET /ops/alerts`: every pending, firing and recently resolved alert across the fleet,
/// critical first; `?severity=`, `?state=` (`firing`, `pending`, `resolved`), `?host=`,
/// `?label=name=value` or `?match=<matcher>` (repeatable), `?history=N` (past alerts, newest
/// first; default 50).
#[utoipa::path(get, path = "/ops/alerts", tag = "alerts", params(AlertFilters),
    responses(
        (status = 200, description = "Alerts, counts and history.", body = AlertList),
        (status = 400, description = "A bad or unknown filter.", body = ErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<AlertList>, ApiError> {
    let pairs = query_pairs(query.as_deref())?;
    let mut matchers: Vec<Matcher> = Vec::new();
    let mut states: Vec<String> = Vec::new();
    let mut history_limit = 50usize;
    for (key, value) in &pairs {
        match key.as_str() {
            "severity" | "host" => matchers.push(
                Matcher::new(key, crate::alerts::matcher::MatchType::Equal, value)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ),
            "label" => {
                let Some((name, v)) = value.split_once('=') else {
                    return Err(ApiError::bad_request(format!(
                        "label: expected name=value, got {value:?}"
                    )));
                };
                matchers.push(
                    Matcher::new(name, crate::alerts::matcher::MatchType::Equal, v)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                );
            }
            "match" | "filter" => matchers
                .extend(parse_list(value).map_err(|e| ApiError::bad_request(e.to_string()))?),
            "state" => {
                for s in value.split(',') {
                    let s = match s {
                        "resolved" => "inactive",
                        "firing" | "pending" | "inactive" => s,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "state: {other:?} is not firing, pending or resolved"
                            )));
                        }
                    };
                    states.push(s.to_owned());
                }
            }
            "history" => {
                history_limit = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("history: {value:?} is not a number"))
                })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?} (severity, state, host, label, match, history)"
                )));
            }
        }
    }
    let snapshot = state.alerting.manager.snapshot();
    let mut alerts: Vec<&AlertView> = snapshot
        .alerts()
        .filter(|a| matchers.iter().all(|m| m.matches(&a.labels)))
        .filter(|a| states.is_empty() || states.iter().any(|s| s == a.state))
        .collect();
    alerts.sort_by(|a, b| {
        severity_rank(&a.labels)
            .cmp(&severity_rank(&b.labels))
            .then(state_rank(a.state).cmp(&state_rank(b.state)))
            .then(b.active_at_ms.cmp(&a.active_at_ms))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    let mut counts: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    for alert in snapshot.alerts().filter(|a| a.state != "inactive") {
        let severity = alert
            .labels
            .get("severity")
            .cloned()
            .unwrap_or_else(|| "none".into());
        *counts
            .entry(severity)
            .or_default()
            .entry(alert.state)
            .or_default() += 1;
    }
    let rendered: Vec<AlertItem> = alerts.iter().map(|a| alert_item(&state, a)).collect();
    let store = state.alerting.manager.alert_store().clone();
    let history = tokio::task::spawn_blocking(move || store.history(history_limit.min(10_000)))
        .await
        .map_err(ApiError::internal)?;
    let history: Vec<HistoryItem> = history
        .iter()
        .filter(|h| matchers.iter().all(|m| m.matches(&h.labels)))
        .map(history_item)
        .collect();
    Ok(Json(AlertList {
        alerts: rendered,
        counts,
        evaluated_at: snapshot.last_round_ms.map(rfc3339),
        history,
    }))
}

/// A rule file.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct RuleFile {
    /// Its text.
    content: String,
    /// In the rules directory, so `PUT /ops/alerts/rules` may replace it.
    editable: bool,
    /// File name.
    name: Option<String>,
    path: String,
}

/// `GET /ops/alerts/rules` body.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct RulesList {
    files: Vec<RuleFile>,
    #[schema(value_type = Vec<GroupViewDoc>)]
    groups: Vec<crate::alerts::manager::GroupView>,
    /// How long the last evaluation round took.
    last_round_seconds: f64,
    /// Why the latest rule files were refused (the previous rules stay in force).
    load_errors: Vec<String>,
}

/// `GET /ops/alerts/rules`: the rule files (their text) and every group with its rules' state.
#[utoipa::path(get, path = "/ops/alerts/rules", tag = "alerts",
    responses((status = 200, description = "Files and groups.", body = RulesList)))]
pub(super) async fn rules(State(state): State<AppState>) -> Result<Json<RulesList>, ApiError> {
    let manager = state.alerting.manager.clone();
    let files = tokio::task::spawn_blocking(move || {
        let dir = manager.rules_dir().to_path_buf();
        manager
            .rule_files()
            .into_iter()
            .map(|path| RuleFile {
                content: std::fs::read_to_string(&path).unwrap_or_default(),
                editable: path.parent() == Some(dir.as_path()),
                name: path.file_name().and_then(|n| n.to_str()).map(str::to_owned),
                path: path.display().to_string(),
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(ApiError::internal)?;
    let snapshot = state.alerting.manager.snapshot();
    Ok(Json(RulesList {
        files,
        groups: snapshot.groups.clone(),
        last_round_seconds: snapshot.last_round_seconds,
        load_errors: snapshot.load_errors.clone(),
    }))
}

/// `?file=` of `PUT /ops/alerts/rules`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only: the handler reads the raw query string.
pub(super) struct RuleFileName {
    /// File name in the rules directory, ending in `.yml` or `.yaml`. Default `rules.yml`.
    #[param(example = "my.yml")]
    file: Option<String>,
}

/// Result of `PUT /ops/alerts/rules`.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct RulesLoaded {
    file: String,
    /// Rules in the file.
    rules: usize,
    /// Always `loaded`.
    #[schema(example = "loaded")]
    status: &'static str,
}

/// A problem of a refused rule file (in `error.details` of the 422).
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct RuleProblem {
    column: u64,
    line: u64,
    message: String,
}

/// `PUT /ops/alerts/rules?file=NAME.yml` (admin): the body is a Prometheus rule file; it is
/// validated (every problem returned with its line and column), written atomically into the rules
/// directory, and in force at once.
#[utoipa::path(put, path = "/ops/alerts/rules", tag = "alerts", params(RuleFileName),
    request_body(content = String, content_type = "application/yaml",
        description = "A Prometheus rule file."),
    responses(
        (status = 200, description = "Written and in force.", body = RulesLoaded),
        (status = 400, description = "Bad file name, or not UTF-8.", body = ErrorBody),
        (status = 422, description = "Refused: `error.details` lists every problem (`RuleProblem`).", body = ErrorBody),
    ))]
pub(super) async fn put_rules(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Json<RulesLoaded>, ApiError> {
    let pairs = query_pairs(query.as_deref())?;
    let file = pairs
        .iter()
        .find(|(k, _)| k == "file")
        .map_or_else(|| "rules.yml".to_owned(), |(_, v)| v.clone());
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the rule file must be UTF-8 text"))?;
    let manager = state.alerting.manager.clone();
    let name = file.clone();
    let result = tokio::task::spawn_blocking(move || manager.put_rule_file(&name, &text))
        .await
        .map_err(ApiError::internal)?;
    match result {
        Ok(rules) => Ok(Json(RulesLoaded {
            file,
            rules,
            status: "loaded",
        })),
        Err(RulesUpdateError::Invalid(errors)) => {
            let details: Vec<RuleProblem> = errors
                .iter()
                .map(|e| RuleProblem {
                    column: e.column,
                    line: e.line,
                    message: e.message.clone(),
                })
                .collect();
            let summary: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Err(ApiError::unprocessable(format!(
                "the rule file is refused: {}",
                summary.join("; ")
            ))
            .with_details(serde_json::to_value(details).unwrap_or_default()))
        }
        Err(RulesUpdateError::BadName(name)) => Err(ApiError::bad_request(
            RulesUpdateError::BadName(name).to_string(),
        )),
        Err(error @ RulesUpdateError::Io(_)) => Err(ApiError::internal(error)),
    }
}

/// A silence's state now.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct SilenceStatus {
    /// `pending`, `active` or `expired`.
    #[schema(example = "active")]
    state: &'static str,
}

/// A silence, in Alertmanager's v2 shape.
#[derive(Serialize, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SilenceItem {
    comment: String,
    created_by: String,
    /// RFC 3339.
    ends_at: String,
    id: String,
    #[schema(value_type = Vec<MatcherDoc>)]
    matchers: Vec<MatcherRecord>,
    /// RFC 3339.
    starts_at: String,
    status: SilenceStatus,
    /// RFC 3339.
    updated_at: String,
}

fn silence_item(silence: &Silence, now: i64) -> SilenceItem {
    SilenceItem {
        comment: silence.comment.clone(),
        created_by: silence.created_by.clone(),
        ends_at: rfc3339(silence.ends_at),
        id: silence.id.clone(),
        matchers: silence
            .matchers
            .iter()
            .map(MatcherRecord::from_matcher)
            .collect(),
        starts_at: rfc3339(silence.starts_at),
        status: SilenceStatus {
            state: silence.state(now).as_str(),
        },
        updated_at: rfc3339(silence.updated_at),
    }
}

/// `GET /ops/silences`.
#[utoipa::path(get, path = "/ops/silences", tag = "alerts",
    responses((status = 200, description = "Every silence with its state.", body = Vec<SilenceItem>)))]
pub(super) async fn silences(State(state): State<AppState>) -> Json<Vec<SilenceItem>> {
    let now = now_ms();
    Json(
        state
            .alerting
            .silences()
            .iter()
            .map(|s| silence_item(s, now))
            .collect(),
    )
}

/// A silence to create: Alertmanager's `PostableSilence`, plus `duration` and string matchers.
#[derive(Deserialize, Debug, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PostSilence {
    /// The silence to replace; absent to create one.
    #[serde(default)]
    id: Option<String>,
    /// What it mutes: all must match.
    matchers: Vec<MatcherInput>,
    /// RFC 3339; default now.
    #[serde(default)]
    starts_at: Option<String>,
    /// RFC 3339; or give `duration`.
    #[serde(default)]
    ends_at: Option<String>,
    /// How long from `startsAt` (`2h`), when `endsAt` is absent.
    #[serde(default)]
    #[schema(example = "2h")]
    duration: Option<String>,
    /// Who made it; not empty.
    created_by: String,
    comment: String,
}

/// A matcher: Alertmanager's JSON object, or matcher text (`alertname="X"`).
#[derive(Deserialize, Debug, ToSchema)]
#[serde(untagged)]
enum MatcherInput {
    Text(String),
    #[schema(value_type = MatcherDoc)]
    Record(MatcherRecord),
}

/// Result of `POST /ops/silences`.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct SilenceCreated {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

/// `POST /ops/silences` (operator): `{"matchers":[{"name","value","isRegex","isEqual"}] or
/// ["alertname=\"X\""], "startsAt", "endsAt" or "duration", "createdBy", "comment"}`.
#[utoipa::path(post, path = "/ops/silences", tag = "alerts",
    request_body(content = PostSilence, content_type = "application/json"),
    responses(
        (status = 200, description = "Created or updated.", body = SilenceCreated),
        (status = 404, description = "No silence with the `id` to update.", body = ErrorBody),
        (status = 422, description = "Not a valid silence; the message names the field.", body = ErrorBody),
    ))]
pub(super) async fn post_silence(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<SilenceCreated>, ApiError> {
    let input: PostSilence = super::error::parse_json(&body)
        .map_err(|e| ApiError::unprocessable(format!("invalid silence: {e}")))?;
    let now = now_ms();
    let mut matchers = Vec::new();
    for m in &input.matchers {
        match m {
            MatcherInput::Text(text) => matchers
                .extend(parse_list(text).map_err(|e| ApiError::unprocessable(e.to_string()))?),
            MatcherInput::Record(record) => matchers.push(
                record
                    .to_matcher()
                    .map_err(|e| ApiError::unprocessable(e.to_string()))?,
            ),
        }
    }
    let starts_at = match &input.starts_at {
        Some(text) => parse_time("startsAt", text)?,
        None => now,
    };
    let ends_at = match (&input.ends_at, &input.duration) {
        (Some(text), _) => parse_time("endsAt", text)?,
        (None, Some(d)) => {
            starts_at
                + crate::query::duration_ms(
                    parse_duration(d)
                        .map_err(|e| ApiError::unprocessable(format!("duration: {e}")))?,
                )
        }
        (None, None) => return Err(ApiError::unprocessable("endsAt or duration is required")),
    };
    if input.created_by.trim().is_empty() {
        return Err(ApiError::unprocessable("createdBy must not be empty"));
    }
    let id = match input.id {
        Some(id) if state.alerting.silences().iter().any(|s| s.id == id) => id,
        Some(id) => {
            return Err(ApiError::not_found(format!(
                "no silence with id {id:?} to update"
            )));
        }
        None => new_id()?,
    };
    let silence = Silence {
        id,
        matchers,
        starts_at,
        ends_at,
        created_by: input.created_by,
        comment: input.comment,
        updated_at: now,
    };
    let alerting = state.alerting.clone();
    let stored = tokio::task::spawn_blocking(move || alerting.put_silence(silence))
        .await
        .map_err(ApiError::internal)?;
    match stored {
        Ok(silence) => Ok(Json(SilenceCreated {
            silence_id: silence.id,
        })),
        Err(SilenceStoreError::Invalid(error)) => Err(ApiError::unprocessable(error.to_string())),
        Err(error @ SilenceStoreError::Storage(_)) => Err(ApiError::internal(error)),
    }
}

/// `DELETE /ops/silences/{id}` (operator): expires the silence now.
#[utoipa::path(delete, path = "/ops/silences/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Silence id")),
    responses(
        (status = 200, description = "Expired.", body = SilenceItem),
        (status = 400, description = "Cannot be expired.", body = ErrorBody),
        (status = 404, description = "No such silence.", body = ErrorBody),
    ))]
pub(super) async fn delete_silence(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SilenceItem>, ApiError> {
    let alerting = state.alerting.clone();
    let target = id.clone();
    let result = tokio::task::spawn_blocking(move || alerting.expire_silence(&target))
        .await
        .map_err(ApiError::internal)?;
    match result {
        Ok(silence) => Ok(Json(silence_item(&silence, now_ms()))),
        Err(SilenceStoreError::Invalid(SilenceError::NotFound(_))) => {
            Err(ApiError::not_found(format!("no silence with id {id:?}")))
        }
        Err(SilenceStoreError::Invalid(error)) => Err(ApiError::bad_request(error.to_string())),
        Err(error) => Err(ApiError::internal(error)),
    }
}

fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&bytes[..4]),
        hex::encode(&bytes[4..6]),
        hex::encode(&bytes[6..8]),
        hex::encode(&bytes[8..10]),
        hex::encode(&bytes[10..])
    ))
}

/// An alert in Prometheus' shape.
#[derive(Serialize, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromAlert {
    active_at: String,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    state: String,
    /// The value as Go formats it.
    value: String,
}

/// A rule in Prometheus' shape; the alerting-only fields are absent on recording rules.
#[derive(Serialize, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    alerts: Option<Vec<PromAlert>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    /// `for`, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    evaluation_time: f64,
    /// `ok`, `err` or `unknown`.
    health: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_for: Option<f64>,
    labels: BTreeMap<String, String>,
    /// Empty when none.
    last_error: String,
    last_evaluation: Option<String>,
    name: String,
    query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    /// `alerting` or `recording`.
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A rule group in Prometheus' shape.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct PromGroup {
    file: String,
    /// Seconds.
    interval: f64,
    name: String,
    rules: Vec<PromRule>,
}

/// `data` of `GET /api/v1/rules`.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct PromGroups {
    groups: Vec<PromGroup>,
}

/// `data` of `GET /api/v1/alerts`.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct PromAlerts {
    alerts: Vec<PromAlert>,
}

/// `GET /api/v1/rules` (Prometheus' shape, for Grafana).
#[utoipa::path(get, path = "/api/v1/rules", tag = "prometheus",
    responses((status = 200, description = "Groups, rules and their alerts.",
        body = super::prom::PromSuccess<PromGroups>)))]
pub(super) async fn prometheus_rules(State(state): State<AppState>) -> Response {
    let snapshot = state.alerting.manager.snapshot();
    let groups: Vec<PromGroup> = snapshot
        .groups
        .iter()
        .map(|g| PromGroup {
            file: g.file.clone(),
            interval: g.interval,
            name: g.name.clone(),
            rules: g
                .rules
                .iter()
                .map(|r| {
                    let alerting = r.kind == "alerting";
                    PromRule {
                        alerts: alerting.then(|| {
                            r.alerts
                                .iter()
                                .filter(|a| a.state != "inactive")
                                .map(prometheus_alert)
                                .collect()
                        }),
                        annotations: alerting.then(|| r.annotations.clone()),
                        duration: alerting.then_some(r.duration),
                        evaluation_time: r.evaluation_time,
                        health: r.health.to_owned(),
                        keep_firing_for: alerting.then_some(r.keep_firing_for),
                        labels: r.labels.clone(),
                        last_error: r.last_error.clone().unwrap_or_default(),
                        last_evaluation: r.last_evaluation_ms.map(rfc3339),
                        name: r.name.clone(),
                        query: r.query.clone(),
                        state: alerting.then(|| r.state.to_owned()),
                        kind: if alerting { "alerting" } else { "recording" },
                    }
                })
                .collect(),
        })
        .collect();
    super::prom::success(PromGroups { groups })
}

fn prometheus_alert(a: &AlertView) -> PromAlert {
    PromAlert {
        active_at: rfc3339(a.active_at_ms),
        annotations: a.annotations.clone(),
        labels: a.labels.clone(),
        state: a.state.to_owned(),
        value: crate::alerts::gofmt::format_e(a.value, 16, false, false),
    }
}

/// `GET /api/v1/alerts` (Prometheus' shape).
#[utoipa::path(get, path = "/api/v1/alerts", tag = "prometheus",
    responses((status = 200, description = "Pending and firing alerts.",
        body = super::prom::PromSuccess<PromAlerts>)))]
pub(super) async fn prometheus_alerts(State(state): State<AppState>) -> Response {
    let snapshot = state.alerting.manager.snapshot();
    let alerts: Vec<PromAlert> = snapshot
        .alerts()
        .filter(|a| a.state != "inactive")
        .map(prometheus_alert)
        .collect();
    super::prom::success(PromAlerts { alerts })
}
