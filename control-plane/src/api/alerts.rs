//! Alerting endpoints: the fleet-wide alert view (`/ops/alerts`, with history), rules
//! (`GET/PUT /ops/alerts/rules`), silences (`/ops/silences`), and Prometheus' `/api/v1/rules` and
//! `/api/v1/alerts` for Grafana.

use std::collections::BTreeMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, error::ApiError};
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

/// One alert in `/ops/alerts`.
fn alert_json(state: &AppState, alert: &AlertView) -> Value {
    let (silenced_by, inhibited_by) = match alert.state {
        "firing" => state.alerting.muted_by(&alert.labels),
        _ => (Vec::new(), Vec::new()),
    };
    json!({
        "name": alert.name,
        "state": alert.state,
        "severity": alert.labels.get("severity"),
        "host": alert.labels.get("host"),
        "labels": alert.labels,
        "annotations": alert.annotations,
        "value": if alert.value.is_finite() { json!(alert.value) } else { json!(alert.value.to_string()) },
        "active_at": rfc3339(alert.active_at_ms),
        "fired_at": alert.fired_at_ms.map(rfc3339),
        "resolved_at": alert.resolved_at_ms.map(rfc3339),
        "fingerprint": alert.fingerprint,
        "silenced_by": silenced_by,
        "inhibited_by": inhibited_by,
        "muted": false,
        "group": alert.group,
        "file": alert.file,
    })
}

fn history_json(entry: &HistoryEntry) -> Value {
    json!({
        "name": entry.labels.get("alertname"),
        "severity": entry.labels.get("severity"),
        "host": entry.labels.get("host"),
        "labels": entry.labels,
        "annotations": entry.annotations,
        "active_at": rfc3339(entry.active_at),
        "starts_at": rfc3339(entry.starts_at),
        "ends_at": entry.ends_at.map(rfc3339),
        "fingerprint": entry.fingerprint,
    })
}

/// `GET /ops/alerts`: every pending, firing and recently resolved alert across the fleet,
/// critical first; `?severity=`, `?state=` (`firing`, `pending`, `resolved`), `?host=`,
/// `?label=name=value` or `?match=<matcher>` (repeatable), `?history=N` (past alerts, newest
/// first; default 50).
pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
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
    let rendered: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let mut v = alert_json(&state, a);
            let muted = v["silenced_by"].as_array().is_some_and(|x| !x.is_empty())
                || v["inhibited_by"].as_array().is_some_and(|x| !x.is_empty());
            v["muted"] = json!(muted);
            v
        })
        .collect();
    let store = state.alerting.manager.alert_store().clone();
    let history = tokio::task::spawn_blocking(move || store.history(history_limit.min(10_000)))
        .await
        .map_err(ApiError::internal)?;
    let history: Vec<Value> = history
        .iter()
        .filter(|h| matchers.iter().all(|m| m.matches(&h.labels)))
        .map(history_json)
        .collect();
    Ok(Json(json!({
        "alerts": rendered,
        "counts": counts,
        "history": history,
        "evaluated_at": snapshot.last_round_ms.map(rfc3339),
    })))
}

/// `GET /ops/alerts/rules`: the rule files (their text) and every group with its rules' state.
pub(super) async fn rules(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let manager = state.alerting.manager.clone();
    let files = tokio::task::spawn_blocking(move || {
        let dir = manager.rules_dir().to_path_buf();
        manager
            .rule_files()
            .into_iter()
            .map(|path| {
                let editable = path.parent() == Some(dir.as_path());
                json!({
                    "name": path.file_name().and_then(|n| n.to_str()),
                    "path": path.display().to_string(),
                    "editable": editable,
                    "content": std::fs::read_to_string(&path).unwrap_or_default(),
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(ApiError::internal)?;
    let snapshot = state.alerting.manager.snapshot();
    Ok(Json(json!({
        "files": files,
        "groups": snapshot.groups,
        "load_errors": snapshot.load_errors,
        "last_round_seconds": snapshot.last_round_seconds,
    })))
}

/// `PUT /ops/alerts/rules?file=NAME.yml` (admin): the body is a Prometheus rule file; it is
/// validated (every problem returned with its line and column), written atomically into the rules
/// directory, and in force at once.
pub(super) async fn put_rules(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
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
        Ok(rules) => Ok((
            StatusCode::OK,
            Json(json!({"file": file, "rules": rules, "status": "loaded"})),
        )
            .into_response()),
        Err(RulesUpdateError::Invalid(errors)) => {
            let details: Vec<Value> = errors
                .iter()
                .map(|e| json!({"line": e.line, "column": e.column, "message": e.message}))
                .collect();
            let summary: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Err(ApiError::unprocessable(format!(
                "the rule file is refused: {}",
                summary.join("; ")
            ))
            .with_details(json!(details)))
        }
        Err(RulesUpdateError::BadName(name)) => Err(ApiError::bad_request(
            RulesUpdateError::BadName(name).to_string(),
        )),
        Err(error @ RulesUpdateError::Io(_)) => Err(ApiError::internal(error)),
    }
}

fn silence_json(silence: &Silence, now: i64) -> Value {
    json!({
        "id": silence.id,
        "matchers": silence.matchers.iter().map(MatcherRecord::from_matcher).collect::<Vec<_>>(),
        "startsAt": rfc3339(silence.starts_at),
        "endsAt": rfc3339(silence.ends_at),
        "updatedAt": rfc3339(silence.updated_at),
        "createdBy": silence.created_by,
        "comment": silence.comment,
        "status": {"state": silence.state(now).as_str()},
    })
}

/// `GET /ops/silences`.
pub(super) async fn silences(State(state): State<AppState>) -> Json<Value> {
    let now = now_ms();
    Json(Value::Array(
        state
            .alerting
            .silences()
            .iter()
            .map(|s| silence_json(s, now))
            .collect(),
    ))
}

/// A silence to create: Alertmanager's `PostableSilence`, plus `duration` and string matchers.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PostSilence {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<MatcherInput>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    created_by: String,
    comment: String,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum MatcherInput {
    Text(String),
    Record(MatcherRecord),
}

/// `POST /ops/silences` (operator): `{"matchers":[{"name","value","isRegex","isEqual"}] or
/// ["alertname=\"X\""], "startsAt", "endsAt" or "duration", "createdBy", "comment"}`.
pub(super) async fn post_silence(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: PostSilence = serde_json::from_slice(&body)
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
        Ok(silence) => Ok((StatusCode::OK, Json(json!({"silenceID": silence.id}))).into_response()),
        Err(SilenceStoreError::Invalid(error)) => Err(ApiError::unprocessable(error.to_string())),
        Err(error @ SilenceStoreError::Storage(_)) => Err(ApiError::internal(error)),
    }
}

/// `DELETE /ops/silences/{id}` (operator): expires the silence now.
pub(super) async fn delete_silence(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let alerting = state.alerting.clone();
    let target = id.clone();
    let result = tokio::task::spawn_blocking(move || alerting.expire_silence(&target))
        .await
        .map_err(ApiError::internal)?;
    match result {
        Ok(silence) => Ok(Json(silence_json(&silence, now_ms()))),
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

/// `GET /api/v1/rules` (Prometheus' shape, for Grafana).
pub(super) async fn prometheus_rules(State(state): State<AppState>) -> Json<Value> {
    let snapshot = state.alerting.manager.snapshot();
    let groups: Vec<Value> = snapshot
        .groups
        .iter()
        .map(|g| {
            json!({
                "name": g.name,
                "file": g.file,
                "interval": g.interval,
                "rules": g.rules.iter().map(|r| {
                    let mut rule = json!({
                        "name": r.name,
                        "query": r.query,
                        "labels": r.labels,
                        "health": r.health,
                        "lastError": r.last_error.clone().unwrap_or_default(),
                        "evaluationTime": r.evaluation_time,
                        "lastEvaluation": r.last_evaluation_ms.map(rfc3339),
                        "type": if r.kind == "alerting" { "alerting" } else { "recording" },
                    });
                    if r.kind == "alerting" {
                        rule["duration"] = json!(r.duration);
                        rule["keepFiringFor"] = json!(r.keep_firing_for);
                        rule["annotations"] = json!(r.annotations);
                        rule["state"] = json!(r.state);
                        rule["alerts"] = json!(r.alerts.iter().filter(|a| a.state != "inactive").map(prometheus_alert).collect::<Vec<_>>());
                    }
                    rule
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({"status": "success", "data": {"groups": groups}}))
}

fn prometheus_alert(a: &AlertView) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state,
        "activeAt": rfc3339(a.active_at_ms),
        "value": crate::alerts::gofmt::format_e(a.value, 16, false, false),
    })
}

/// `GET /api/v1/alerts` (Prometheus' shape).
pub(super) async fn prometheus_alerts(State(state): State<AppState>) -> Json<Value> {
    let snapshot = state.alerting.manager.snapshot();
    let alerts: Vec<Value> = snapshot
        .alerts()
        .filter(|a| a.state != "inactive")
        .map(prometheus_alert)
        .collect();
    Json(json!({"status": "success", "data": {"alerts": alerts}}))
}
