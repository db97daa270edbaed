//! `/health` and the `/ops` endpoints of this version: fleet status, agent inventory with health
//! checks and service/model views, comprehensive health, the PromQL query endpoint, monitoring
//! start/stop, and revocation.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use promql_parser::label::{MatchOp, Matcher};
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use super::{AppState, error::ApiError, prom};
use crate::{
    ingest,
    query::{self, LOOKBACK},
    registry::{AgentView, MonitoringRecord},
    store::{Store, StoredEvent, now_ms},
    views,
};
use aisemble_shared::metrics as names;
use aisemble_shared::wire::Event;

/// `GET /health`.
pub(super) async fn health() -> Json<Json_> {
    Json(
        json!({"status": "healthy", "service": "aisemble-control-plane", "version": aisemble_shared::VERSION}),
    )
}

fn since() -> i64 {
    now_ms() - LOOKBACK.as_millis() as i64
}

/// Latest CPU %, memory % and fullest disk % of an agent, from the head.
fn resources(state: &AppState, agent: &str) -> Json_ {
    let latest = |metric: &str| {
        let matchers = [
            Matcher::new(MatchOp::Equal, "__name__", metric),
            Matcher::new(MatchOp::Equal, "host", agent),
        ];
        state.store.latest_matching(&matchers, since())
    };
    let single = |metric: &str| latest(metric).first().map(|(_, _, v)| *v);
    let disks = latest(names::SYSTEM_DISK_USAGE_PERCENT);
    let fullest = disks
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(labels, _, v)| json!({"mount": labels.get("mount"), "usage_percent": v}));
    json!({
        "cpu_usage_percent": single(names::SYSTEM_CPU_USAGE_PERCENT),
        "memory_usage_percent": single(names::SYSTEM_MEMORY_USAGE_PERCENT),
        "fullest_disk": fullest,
        "load1": single(names::SYSTEM_LOAD1),
        "uptime_seconds": single(names::SYSTEM_UPTIME_SECONDS),
    })
}

fn agent_json(state: &AppState, agent: &AgentView) -> Json_ {
    let record = &agent.record;
    json!({
        "id": record.name,
        "connected": agent.connected,
        "connected_since_ms": agent.connected_since_ms,
        "remote": agent.remote,
        "first_seen_ms": record.first_seen_ms,
        "last_seen_ms": record.last_seen_ms,
        "version": record.version,
        "hostname": record.hostname,
        "labels": record.labels,
        "buffer": {
            "records": record.buffer.records,
            "bytes": record.buffer.bytes,
            "dropped_records": record.buffer.dropped_records,
        },
        "monitoring": match record.monitoring { MonitoringRecord::Running => "running", MonitoringRecord::Paused => "paused" },
        "certificate_serial": record.certificate_serial,
        "stored_upto": state.store.watermark(&record.name).filter(|w| w.journal_id == record.journal_id).map(|w| w.upto),
        "resources": resources(state, &record.name),
    })
}

/// A health check's latest result on one host.
#[derive(Debug, Clone, serde::Serialize)]
struct CheckView {
    host: String,
    check: String,
    kind: String,
    up: bool,
    duration_seconds: Option<f64>,
    consecutive_failures: Option<f64>,
    last_run_ms: i64,
    /// The failing run's error, from the latest state-change event, when down.
    error: Option<String>,
    /// When the check entered its current state, when known.
    since_ms: Option<i64>,
    labels: std::collections::BTreeMap<String, String>,
}

/// Latest results of every check (on `host`, or fleet-wide), with the error of those down.
fn checks(store: &Store, host: Option<&str>, events: &[StoredEvent]) -> Vec<CheckView> {
    let matching = |metric: &str| {
        let mut matchers = vec![Matcher::new(MatchOp::Equal, "__name__", metric)];
        if let Some(host) = host {
            matchers.push(Matcher::new(MatchOp::Equal, "host", host));
        }
        store.latest_matching(&matchers, since())
    };
    let key = |labels: &crate::store::Labels| {
        (
            labels.get("host").unwrap_or("").to_owned(),
            labels.get("check").unwrap_or("").to_owned(),
        )
    };
    let durations: std::collections::HashMap<_, f64> = matching(names::CHECK_DURATION_SECONDS)
        .into_iter()
        .map(|(l, _, v)| (key(&l), v))
        .collect();
    let failures: std::collections::HashMap<_, f64> = matching(names::CHECK_CONSECUTIVE_FAILURES)
        .into_iter()
        .map(|(l, _, v)| (key(&l), v))
        .collect();
    let mut out: Vec<CheckView> = matching(names::CHECK_UP)
        .into_iter()
        .map(|(labels, t, v)| {
            let k = key(&labels);
            let up = v >= 1.0;
            // Events are newest first: the first one for this check is its current state.
            let change = events.iter().find_map(|e| match &e.event {
                Event::CheckStateChanged(c) if e.agent == k.0 && c.check == k.1 => {
                    Some((e.timestamp_ms, c))
                }
                _ => None,
            });
            let extra = labels
                .iter()
                .filter(|p| !matches!(&*p.name, "__name__" | "host" | "check" | "kind"))
                .map(|p| (p.name.to_string(), p.value.to_string()))
                .collect();
            CheckView {
                kind: labels.get("kind").unwrap_or("").to_owned(),
                up,
                duration_seconds: durations.get(&k).copied(),
                consecutive_failures: failures.get(&k).copied(),
                last_run_ms: t,
                error: change
                    .filter(|(_, c)| !up && !c.up)
                    .and_then(|(_, c)| c.error.clone()),
                since_ms: change.filter(|(_, c)| c.up == up).map(|(t, _)| t),
                labels: extra,
                host: k.0,
                check: k.1,
            }
        })
        .collect();
    out.sort_by(|a, b| (a.up, &a.host, &a.check).cmp(&(b.up, &b.host, &b.check)));
    out
}

/// `?window=5m` of the views endpoints.
#[derive(Deserialize, Debug, Default)]
pub(super) struct WindowParams {
    window: Option<String>,
}

fn window_ms(params: &WindowParams) -> Result<i64, ApiError> {
    params
        .window
        .as_deref()
        .map_or(Ok(views::DEFAULT_WINDOW_MS), |w| {
            prom::parse_duration(w)
                .map_err(|e| ApiError::bad_request(format!("window: {e}")))
                .and_then(|ms| {
                    if ms > 0 {
                        Ok(ms)
                    } else {
                        Err(ApiError::bad_request("window: must be positive"))
                    }
                })
        })
}

/// Checks, recent events and service/model views of one host or the fleet. Blocking.
fn host_details(store: &Store, host: Option<&str>, window: i64) -> Result<Json_, ApiError> {
    let events = store.events(host, 200);
    let checks = checks(store, host, &events);
    let views = views::compute(store, host, now_ms(), window).map_err(ApiError::internal)?;
    let events: Vec<&StoredEvent> = events.iter().take(50).collect();
    Ok(json!({"checks": checks, "events": events, "views": views}))
}

/// `GET /ops/agents`.
pub(super) async fn agents(State(state): State<AppState>) -> Json<Json_> {
    let agents: Vec<Json_> = state
        .registry
        .list()
        .iter()
        .map(|a| agent_json(&state, a))
        .collect();
    Json(json!({"agents": agents}))
}

/// `GET /ops/agents/{id}[?window=5m]`: inventory plus health checks, their recent state changes,
/// and the host's service and model views.
pub(super) async fn agent(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<WindowParams>,
) -> Result<Json<Json_>, ApiError> {
    let window = window_ms(&params)?;
    let agent = state
        .registry
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no agent named {id:?}")))?;
    let mut body = agent_json(&state, &agent);
    let store = state.store.clone();
    let details = tokio::task::spawn_blocking(move || host_details(&store, Some(&id), window))
        .await
        .map_err(ApiError::internal)??;
    if let (Some(body), Json_::Object(details)) = (body.as_object_mut(), details) {
        body.extend(details);
    }
    Ok(Json(body))
}

/// `GET /ops/health/comprehensive`: every component and every agent, with a reason for anything
/// not healthy.
pub(super) async fn health_comprehensive(State(state): State<AppState>) -> Json<Json_> {
    let store = state.store.clone();
    let (events, checks) = tokio::task::spawn_blocking(move || {
        let events = store.events(None, 1000);
        let checks = checks(&store, None, &events);
        (events, checks)
    })
    .await
    .unwrap_or_default();
    drop(events);
    let commit_errors = state
        .store
        .counters()
        .commit_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    let components = json!({
        "store": if commit_errors == 0 {
            json!({"status": "healthy", "series": state.store.series_count()})
        } else {
            json!({"status": "degraded", "reason": format!("{commit_errors} WAL commits failed since start")})
        },
        "ingest": {"status": "healthy", "connected_agents": state.registry.connected_count()},
        "api": {"status": "healthy"},
    });
    let mut worst = if commit_errors == 0 { 0 } else { 1 };
    let agents: Vec<Json_> = state
        .registry
        .list()
        .iter()
        .map(|agent| {
            let name = &agent.record.name;
            let mut reasons = Vec::new();
            if !agent.connected {
                reasons.push(format!(
                    "disconnected; last seen at {} ms",
                    agent.record.last_seen_ms
                ));
            }
            if agent.record.monitoring == MonitoringRecord::Paused {
                reasons.push("monitoring paused".to_owned());
            }
            let mine: Vec<&CheckView> = checks.iter().filter(|c| &c.host == name).collect();
            for check in mine.iter().filter(|c| !c.up) {
                reasons.push(format!(
                    "check {} ({}) down: {}",
                    check.check,
                    check.kind,
                    check.error.as_deref().unwrap_or("failing")
                ));
            }
            let status = if !agent.connected || mine.iter().any(|c| !c.up) {
                worst = 2;
                "unhealthy"
            } else if reasons.is_empty() {
                "healthy"
            } else {
                worst = worst.max(1);
                "degraded"
            };
            json!({
                "id": name,
                "status": status,
                "reasons": reasons,
                "checks": mine,
            })
        })
        .collect();
    let status = ["healthy", "degraded", "unhealthy"][worst];
    Json(json!({"status": status, "components": components, "agents": agents}))
}

fn summary(values: &[f64]) -> Json_ {
    if values.is_empty() {
        return Json_::Null;
    }
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let avg = values.iter().sum::<f64>() / values.len() as f64;
    json!({"avg": avg, "max": max, "hosts": values.len()})
}

/// `GET /ops/status[?window=5m]`.
pub(super) async fn status(
    State(state): State<AppState>,
    Query(params): Query<WindowParams>,
) -> Result<Json<Json_>, ApiError> {
    let window = window_ms(&params)?;
    let store = state.store.clone();
    let details = tokio::task::spawn_blocking(move || host_details(&store, None, window))
        .await
        .map_err(ApiError::internal)??;
    let agents = state.registry.list();
    let connected = agents.iter().filter(|a| a.connected).count();
    let latest = |metric: &str| -> Vec<f64> {
        state
            .store
            .latest_matching(&[Matcher::new(MatchOp::Equal, "__name__", metric)], since())
            .into_iter()
            .map(|(_, _, v)| v)
            .collect()
    };
    let telemetry = &state.telemetry;
    let status = if agents.is_empty() || connected == agents.len() {
        "healthy"
    } else {
        "degraded"
    };
    let checks = details["checks"].as_array().cloned().unwrap_or_default();
    let down: Vec<&Json_> = checks.iter().filter(|c| c["up"] == json!(false)).collect();
    let status = if down.is_empty() { status } else { "degraded" };
    Ok(Json(json!({
        "status": status,
        "version": aisemble_shared::VERSION,
        "checks": {"total": checks.len(), "up": checks.len() - down.len(), "down": down},
        "services": details["views"]["services"],
        "models": details["views"]["models"],
        "usage_this_month": details["views"]["usage_this_month"],
        "cost_this_month_usd": details["views"]["cost_this_month_usd"],
        "window_seconds": details["views"]["window_seconds"],
        "uptime_seconds": state.started.elapsed().as_secs(),
        "agents": {"total": agents.len(), "connected": connected, "disconnected": agents.len() - connected},
        "resources": {
            "cpu_usage_percent": summary(&latest(names::SYSTEM_CPU_USAGE_PERCENT)),
            "memory_usage_percent": summary(&latest(names::SYSTEM_MEMORY_USAGE_PERCENT)),
            "disk_usage_percent": summary(&latest(names::SYSTEM_DISK_USAGE_PERCENT)),
        },
        "ingest": {
            "samples_total": telemetry.ingest_samples.get(),
            "batches_total": telemetry.ingest_batches.get(),
        },
        "store": {
            "series": state.store.series_count(),
            "disk_bytes": state.store.size_on_disk(),
        },
    })))
}

/// Parameters of `GET /ops/metrics/query`: `query` plus `time`, or `start`, `end` and `step`.
#[derive(Deserialize, Debug)]
pub(super) struct QueryParams {
    query: String,
    time: Option<String>,
    start: Option<String>,
    end: Option<String>,
    step: Option<String>,
}

/// `GET /ops/metrics/query`: instant or range query, Prometheus result shapes.
pub(super) async fn metrics_query(
    State(state): State<AppState>,
    Query(params): Query<QueryParams>,
) -> Result<Response, ApiError> {
    let expr = query::parse(&params.query).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|v| prom::parse_time(v).map_err(|e| ApiError::bad_request(format!("{name}: {e}"))))
            .transpose()
    };
    let store = state.store.clone();
    let value = match (time("start", &params.start)?, time("end", &params.end)?) {
        (Some(start), Some(end)) => {
            let step = params
                .step
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("step is required with start and end"))?;
            let step = prom::parse_duration(step)
                .map_err(|e| ApiError::bad_request(format!("step: {e}")))?;
            tokio::task::spawn_blocking(move || query::range(&store, &expr, start, end, step)).await
        }
        (None, None) => {
            let t = time("time", &params.time)?.unwrap_or_else(now_ms);
            tokio::task::spawn_blocking(move || query::instant(&store, &expr, t)).await
        }
        _ => {
            return Err(ApiError::bad_request(
                "give both start and end (range query) or neither (instant query)",
            ));
        }
    };
    let value = value.map_err(ApiError::internal)?.map_err(|e| match e {
        query::QueryError::Store(e) => ApiError::internal(e),
        other => ApiError::bad_request(other.to_string()),
    })?;
    Ok(Json(json!({"data": prom::value_json(value)})).into_response())
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct MonitoringRequest {
    #[serde(default)]
    agents: Vec<String>,
}

async fn set_monitoring(
    state: &AppState,
    body: &Bytes,
    paused: bool,
) -> Result<Json<Json_>, ApiError> {
    let request: MonitoringRequest = if body.iter().all(u8::is_ascii_whitespace) {
        MonitoringRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid body: {e}; expected {{\"agents\": [\"name\", ...]}} or no body"
            ))
        })?
    };
    let unknown: Vec<&String> = request
        .agents
        .iter()
        .filter(|n| state.registry.get(n).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::not_found(format!("unknown agents: {unknown:?}")));
    }
    let id = state.next_command_id();
    let affected = state.registry.set_monitoring(&request.agents, paused, id);
    let registry = std::sync::Arc::clone(&state.registry);
    let _ = tokio::task::spawn_blocking(move || registry.persist()).await;
    Ok(Json(
        json!({"monitoring": if paused { "paused" } else { "running" }, "agents": affected}),
    ))
}

/// `POST /ops/monitoring/start`.
pub(super) async fn monitoring_start(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    set_monitoring(&state, &body, false).await
}

/// `POST /ops/monitoring/stop`.
pub(super) async fn monitoring_stop(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    set_monitoring(&state, &body, true).await
}

/// `POST /ops/agents/{id}/revoke`: revokes every certificate issued to the agent and disconnects it.
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let pki = std::sync::Arc::clone(&state.pki);
    let name = id.clone();
    let revoked = tokio::task::spawn_blocking(move || {
        pki.revoke(&name)
            .and_then(|serials| Ok((serials, pki.revocation_list()?)))
    })
    .await
    .map_err(ApiError::internal)?;
    let (serials, list) = match revoked {
        Ok(result) => result,
        Err(aisemble_certs::Error::UnknownAgent { .. }) => {
            return Err(ApiError::not_found(format!(
                "no certificate issued to {id:?}"
            )));
        }
        Err(error) => return Err(ApiError::internal(error)),
    };
    ingest::apply_revocations(&state.ingest, list);
    tracing::info!(agent = %id, serials = serials.len(), "Agent revoked through the API.");
    Ok(Json(json!({"agent": id, "revoked_serials": serials})))
}
