//! `/health` and the `/ops` endpoints of this version: fleet status, agent inventory, the PromQL
//! query endpoint, monitoring start/stop, and revocation.

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
    store::now_ms,
};
use aisemble_shared::metrics as names;

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

/// `GET /ops/agents/{id}`.
pub(super) async fn agent(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let agent = state
        .registry
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no agent named {id:?}")))?;
    Ok(Json(agent_json(&state, &agent)))
}

fn summary(values: &[f64]) -> Json_ {
    if values.is_empty() {
        return Json_::Null;
    }
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let avg = values.iter().sum::<f64>() / values.len() as f64;
    json!({"avg": avg, "max": max, "hosts": values.len()})
}

/// `GET /ops/status`.
pub(super) async fn status(State(state): State<AppState>) -> Json<Json_> {
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
    Json(json!({
        "status": status,
        "version": aisemble_shared::VERSION,
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
    }))
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
