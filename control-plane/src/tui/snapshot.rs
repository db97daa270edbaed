//! A [`Snapshot`] of the fleet, fetched from a control plane's API in one round of requests.
//!
//! [`fetch`] does the HTTP; [`Snapshot::from_parts`] turns the JSON answers into typed values
//! once, at the edge (missing or odd fields become `None` or are skipped, never a panic), so the
//! renderer and the status assessment work on plain data.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde_json::Value;

use crate::remote::{Remote, RemoteError};

/// Hosts whose details (checks, services, models) are fetched; beyond this the services pane
/// lists inventory only, to keep one refresh bounded.
pub const MAX_DETAILED_HOSTS: usize = 64;

/// What one refresh fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The control plane's URL.
    pub url: String,
    /// When it was fetched (ms).
    pub fetched_at_ms: i64,
    /// Fleet summary.
    pub fleet: Fleet,
    /// Every host, connected or not.
    pub hosts: Vec<HostRow>,
    /// Pending and firing alerts, critical first, firing before pending.
    pub alerts: Vec<AlertRow>,
    /// `GET /ops/logs/stats`.
    pub logs: Section,
    /// `GET /ops/backups/status`.
    pub backups: Section,
}

/// An optional endpoint's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Section {
    /// Its figures, flattened to `key: value` lines.
    Available(Vec<(String, String)>),
    /// The endpoint answered 404: this control plane does not have it.
    NotAvailable,
    /// The request failed otherwise.
    Fail(String),
}

/// The fleet summary (`/ops/status`, `/ops/health/comprehensive`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fleet {
    /// `/ops/status`' status: `healthy` or `degraded`.
    pub status: String,
    /// `/ops/health/comprehensive`' status: `healthy`, `degraded` or `unhealthy`.
    pub health: String,
    /// Control plane version.
    pub version: String,
    /// Control plane uptime.
    pub uptime_seconds: Option<f64>,
    /// Agents known.
    pub agents_total: u64,
    /// Agents connected.
    pub agents_connected: u64,
    /// Health checks known.
    pub checks_total: u64,
    /// Health checks failing.
    pub checks_down: u64,
    /// Fleet CPU % (average, max).
    pub cpu: Option<(f64, f64)>,
    /// Fleet memory % (average, max).
    pub memory: Option<(f64, f64)>,
    /// Fleet disk % (average, max).
    pub disk: Option<(f64, f64)>,
    /// Estimated model cost this month.
    pub cost_this_month_usd: Option<f64>,
    /// Components of the control plane.
    pub components: Vec<Component>,
    /// Every agent's health with reasons.
    pub agent_health: Vec<AgentHealth>,
}

/// A control plane component.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Name (`store`, `ingest`, `api`).
    pub name: String,
    /// `healthy` or `degraded`.
    pub status: String,
    /// Why not healthy.
    pub reason: Option<String>,
}

/// One agent's health.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentHealth {
    /// Agent name.
    pub id: String,
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: String,
    /// Why not healthy.
    pub reasons: Vec<String>,
}

/// One host in the services pane.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostRow {
    /// Name.
    pub name: String,
    /// Connected now.
    pub connected: bool,
    /// Agent version.
    pub version: String,
    /// Latest CPU %.
    pub cpu: Option<f64>,
    /// Latest memory %.
    pub memory: Option<f64>,
    /// Fullest disk: mount and %.
    pub fullest_disk: Option<(String, f64)>,
    /// Requests per second over 5 minutes, all services (PromQL).
    pub requests_per_second: Option<f64>,
    /// Inferences per second over 5 minutes, all models (PromQL).
    pub inferences_per_second: Option<f64>,
    /// Health checks.
    pub checks: Vec<CheckRow>,
    /// Services.
    pub services: Vec<ServiceRow>,
    /// Models.
    pub models: Vec<ModelRow>,
}

/// A health check's latest result.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    /// Check name.
    pub name: String,
    /// Kind (`http`, `tcp`...).
    pub kind: String,
    /// Passing.
    pub up: bool,
    /// Last run's duration.
    pub duration_seconds: Option<f64>,
    /// The failure, when down.
    pub error: Option<String>,
}

/// A service's figures over the view window.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    /// Service.
    pub service: String,
    /// Requests per second.
    pub requests_per_second: f64,
    /// 2xx/3xx share.
    pub success_rate: Option<f64>,
    /// p95 latency.
    pub p95_seconds: Option<f64>,
}

/// A model's figures over the view window.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    /// Model.
    pub model: String,
    /// Inferences per second.
    pub per_second: f64,
    /// Success share.
    pub success_rate: Option<f64>,
    /// p95 latency.
    pub p95_seconds: Option<f64>,
}

/// A pending or firing alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// Alert name.
    pub name: String,
    /// Severity label (`critical`, `warning`, `info`, or empty).
    pub severity: String,
    /// `firing` or `pending`.
    pub state: String,
    /// Host label, if any.
    pub host: String,
    /// Summary annotation.
    pub summary: String,
    /// Silenced or inhibited.
    pub muted: bool,
}

/// The raw answers of one refresh.
#[derive(Debug, Clone)]
pub struct Parts {
    /// `/ops/status`.
    pub status: Value,
    /// `/ops/health/comprehensive`.
    pub health: Value,
    /// `/ops/agents`.
    pub agents: Value,
    /// `/ops/agents/{id}` per agent.
    pub details: BTreeMap<String, Value>,
    /// `/ops/alerts`.
    pub alerts: Value,
    /// `/api/v1/query` of requests per second by host.
    pub requests_by_host: Value,
    /// `/api/v1/query` of inferences per second by host.
    pub inferences_by_host: Value,
    /// `/ops/logs/stats` (`None`: 404).
    pub logs: Result<Option<Value>, String>,
    /// `/ops/backups/status` (`None`: 404).
    pub backups: Result<Option<Value>, String>,
}

impl Default for Parts {
    /// Every answer empty and both optional endpoints absent.
    fn default() -> Self {
        Self {
            status: Value::Null,
            health: Value::Null,
            agents: Value::Null,
            details: BTreeMap::new(),
            alerts: Value::Null,
            requests_by_host: Value::Null,
            inferences_by_host: Value::Null,
            logs: Ok(None),
            backups: Ok(None),
        }
    }
}

const REQUESTS_BY_HOST: &str = "sum by (host) (rate(aisemble_requests_total[5m]))";
const INFERENCES_BY_HOST: &str = "sum by (host) (rate(aisemble_model_inference_total[5m]))";

/// Fetches everything the dashboard shows.
///
/// # Errors
/// When a required endpoint fails (unreachable, token refused, error status); the optional ones
/// (logs, backups) and per-host details degrade to what the panes say.
///
/// # Cancel safety
/// Cancel-safe: dropping the future abandons the requests.
pub async fn fetch(remote: &Remote, now_ms: i64) -> Result<Snapshot, RemoteError> {
    // The first request alone: an unreachable server or a refused token fails fast, once.
    let status = remote.get_required("/ops/status").await?;
    let (requests_path, inferences_path) =
        (query_path(REQUESTS_BY_HOST), query_path(INFERENCES_BY_HOST));
    let (health, agents, alerts, requests, inferences, logs, backups) = tokio::join!(
        remote.get_required("/ops/health/comprehensive"),
        remote.get_required("/ops/agents"),
        remote.get_required("/ops/alerts?history=0"),
        remote.get_required(&requests_path),
        remote.get_required(&inferences_path),
        remote.get("/ops/logs/stats"),
        remote.get("/ops/backups/status"),
    );
    let agents = agents?;
    let names: Vec<String> = agents["agents"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|a| a["id"].as_str().map(str::to_owned))
                .take(MAX_DETAILED_HOSTS)
                .collect()
        })
        .unwrap_or_default();
    let details = join_all(names.iter().map(|name| async move {
        let path = format!("/ops/agents/{}", path_segment(name));
        (name.clone(), remote.get(&path).await)
    }))
    .await;
    let mut detail_map = BTreeMap::new();
    for (name, result) in details {
        match result {
            Ok(Some(v)) => {
                detail_map.insert(name, v);
            }
            // A host removed between the two requests.
            Ok(None) => {}
            Err(e @ RemoteError::Refused { .. }) => return Err(e),
            // One host's details failing leaves its inventory row.
            Err(_) => {}
        }
    }
    let optional = |r: Result<Option<Value>, RemoteError>| match r {
        Err(e @ (RemoteError::Refused { .. } | RemoteError::Unreachable { .. })) => Err(e),
        Err(e) => Ok(Err(e.to_string())),
        Ok(v) => Ok(Ok(v)),
    };
    let parts = Parts {
        status,
        health: health?,
        agents,
        details: detail_map,
        alerts: alerts?,
        requests_by_host: requests?,
        inferences_by_host: inferences?,
        logs: optional(logs)?,
        backups: optional(backups)?,
    };
    Ok(Snapshot::from_parts(remote.url(), now_ms, &parts))
}

fn query_path(query: &str) -> String {
    let encoded = serde_urlencoded::to_string([("query", query)]).unwrap_or_default();
    format!("/api/v1/query?{encoded}")
}

/// Agent names are `[A-Za-z0-9._-]` (the certificate's rules), but escape anything else anyway.
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn avg_max(v: &Value) -> Option<(f64, f64)> {
    Some((v["avg"].as_f64()?, v["max"].as_f64()?))
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// `{"data":{"result":[{"metric":{"host":..},"value":[t,"v"]}]}}` → host → value.
fn by_host(v: &Value) -> BTreeMap<String, f64> {
    array(&v["data"]["result"])
        .iter()
        .filter_map(|r| {
            let host = r["metric"]["host"].as_str()?.to_owned();
            let value = r["value"][1].as_str()?.parse::<f64>().ok()?;
            value.is_finite().then_some((host, value))
        })
        .collect()
}

/// An optional endpoint's JSON as `key: value` lines, nested objects as `a.b`.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) => out.push((prefix.to_owned(), format!("{} items", items.len()))),
        other => out.push((prefix.to_owned(), text(other))),
    }
}

fn section(r: &Result<Option<Value>, String>) -> Section {
    match r {
        Ok(Some(v)) => {
            let mut lines = Vec::new();
            flatten("", v, &mut lines);
            Section::Available(lines)
        }
        Ok(None) => Section::NotAvailable,
        Err(e) => Section::Fail(e.clone()),
    }
}

/// The log-stats pane: the day's totals, levels seen, the busiest services.
fn log_stats_section(r: &Result<Option<Value>, String>) -> Section {
    let Ok(Some(v)) = r else {
        return section(r);
    };
    let mut lines = vec![
        ("lines (24h)".to_owned(), text(&v["total"])),
        ("errors".to_owned(), text(&v["errors"])),
        (
            "error rate".to_owned(),
            v["error_rate"]
                .as_f64()
                .map_or_else(|| "n/a".to_owned(), |r| format!("{:.1}%", r * 100.0)),
        ),
    ];
    if let Some(levels) = v["by_level"].as_object() {
        let seen: Vec<String> = levels
            .iter()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(level, n)| format!("{level} {}", text(n)))
            .collect();
        lines.push(("levels".to_owned(), seen.join(", ")));
    }
    if let Some(services) = v["by_service"].as_object() {
        let mut busiest: Vec<(&String, u64)> = services
            .iter()
            .map(|(name, n)| (name, n.as_u64().unwrap_or(0)))
            .collect();
        busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (name, n) in busiest.into_iter().take(5) {
            lines.push((format!("service {name}"), n.to_string()));
        }
    }
    Section::Available(lines)
}

/// The backups pane: the repository, runs going on, the last check, then each job's last run,
/// success rate and next run (failed last runs first).
fn backups_section(r: &Result<Option<Value>, String>) -> Section {
    let Ok(Some(v)) = r else {
        return section(r);
    };
    let repo = &v["repository"];
    let mut lines = vec![(
        "repository".to_owned(),
        format!(
            "{} snapshots, {} stored",
            text(&repo["snapshots"]),
            repo["stored_bytes"]
                .as_u64()
                .map_or_else(|| "n/a".to_owned(), |b| bytesize::ByteSize(b).to_string()),
        ),
    )];
    let running = v["running"].as_array().map_or(0, Vec::len);
    if running > 0 {
        lines.push(("running".to_owned(), running.to_string()));
    }
    let check = &v["last_check"];
    lines.push((
        "last check".to_owned(),
        if check.is_null() {
            "never".to_owned()
        } else {
            format!("{} {}", text(&check["state"]), text(&check["finished_at"]))
        },
    ));
    let mut jobs: Vec<&Value> = v["jobs"]
        .as_array()
        .map(|j| j.iter().collect())
        .unwrap_or_default();
    jobs.sort_by_key(|j| (j["last_run"]["state"] != "failed", text(&j["spec"]["name"])));
    if jobs.is_empty() {
        lines.push(("jobs".to_owned(), "none".to_owned()));
    }
    for job in jobs {
        let last = &job["last_run"];
        let last = if last.is_null() {
            "never run".to_owned()
        } else {
            format!("{} {}", text(&last["state"]), text(&last["started_at"]))
        };
        let rate = job["success_rate"]
            .as_f64()
            .map_or_else(|| "n/a".to_owned(), |r| format!("{:.0}%", r * 100.0));
        let next = match job["next_run"].as_str() {
            Some(next) => format!(", next {next}"),
            None => String::new(),
        };
        lines.push((
            format!("job {}", text(&job["spec"]["name"])),
            format!("{last}, {rate} ok{next}"),
        ));
    }
    Section::Available(lines)
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 0,
        "warning" => 1,
        "info" => 2,
        _ => 3,
    }
}

impl Snapshot {
    /// The typed snapshot of one refresh's answers. Pure.
    pub fn from_parts(url: &str, fetched_at_ms: i64, parts: &Parts) -> Self {
        let s = &parts.status;
        let h = &parts.health;
        let fleet = Fleet {
            status: text(&s["status"]),
            health: text(&h["status"]),
            version: text(&s["version"]),
            uptime_seconds: s["uptime_seconds"].as_f64(),
            agents_total: s["agents"]["total"].as_u64().unwrap_or(0),
            agents_connected: s["agents"]["connected"].as_u64().unwrap_or(0),
            checks_total: s["checks"]["total"].as_u64().unwrap_or(0),
            checks_down: array(&s["checks"]["down"]).len() as u64,
            cpu: avg_max(&s["resources"]["cpu_usage_percent"]),
            memory: avg_max(&s["resources"]["memory_usage_percent"]),
            disk: avg_max(&s["resources"]["disk_usage_percent"]),
            cost_this_month_usd: s["cost_this_month_usd"].as_f64(),
            components: h["components"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(name, c)| Component {
                            name: name.clone(),
                            status: text(&c["status"]),
                            reason: c["reason"].as_str().map(str::to_owned),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            agent_health: array(&h["agents"])
                .iter()
                .map(|a| AgentHealth {
                    id: text(&a["id"]),
                    status: text(&a["status"]),
                    reasons: array(&a["reasons"]).iter().map(text).collect(),
                })
                .collect(),
        };
        let requests = by_host(&parts.requests_by_host);
        let inferences = by_host(&parts.inferences_by_host);
        let hosts = array(&parts.agents["agents"])
            .iter()
            .map(|a| {
                let name = text(&a["id"]);
                let r = &a["resources"];
                let detail = parts.details.get(&name);
                let views = detail.map(|d| &d["views"]);
                HostRow {
                    connected: a["connected"].as_bool().unwrap_or(false),
                    version: text(&a["version"]),
                    cpu: r["cpu_usage_percent"].as_f64(),
                    memory: r["memory_usage_percent"].as_f64(),
                    fullest_disk: r["fullest_disk"]["usage_percent"]
                        .as_f64()
                        .map(|p| (text(&r["fullest_disk"]["mount"]), p)),
                    requests_per_second: requests.get(&name).copied(),
                    inferences_per_second: inferences.get(&name).copied(),
                    checks: detail
                        .map(|d| {
                            array(&d["checks"])
                                .iter()
                                .map(|c| CheckRow {
                                    name: text(&c["check"]),
                                    kind: text(&c["kind"]),
                                    up: c["up"].as_bool().unwrap_or(false),
                                    duration_seconds: c["duration_seconds"].as_f64(),
                                    error: c["error"].as_str().map(str::to_owned),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    services: views
                        .map(|v| {
                            array(&v["services"])
                                .iter()
                                .map(|s| ServiceRow {
                                    service: text(&s["service"]),
                                    requests_per_second: s["requests_per_second"]
                                        .as_f64()
                                        .unwrap_or(0.0),
                                    success_rate: s["success_rate"].as_f64(),
                                    p95_seconds: s["latency_seconds"]["p95"].as_f64(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    models: views
                        .map(|v| {
                            array(&v["models"])
                                .iter()
                                .map(|m| ModelRow {
                                    model: text(&m["model"]),
                                    per_second: m["throughput_per_second"].as_f64().unwrap_or(0.0),
                                    success_rate: m["success_rate"].as_f64(),
                                    p95_seconds: m["latency_seconds"]["p95"].as_f64(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    name,
                }
            })
            .collect();
        let mut alerts: Vec<AlertRow> = array(&parts.alerts["alerts"])
            .iter()
            .filter(|a| matches!(a["state"].as_str(), Some("firing" | "pending")))
            .map(|a| AlertRow {
                name: text(&a["name"]),
                severity: text(&a["severity"]),
                state: text(&a["state"]),
                host: text(&a["host"]),
                summary: text(&a["annotations"]["summary"]),
                muted: a["muted"].as_bool().unwrap_or(false),
            })
            .collect();
        // The API already sorts critical first; sort again so the panes never depend on it.
        alerts.sort_by(|a, b| {
            (
                severity_rank(&a.severity),
                a.state != "firing",
                &a.name,
                &a.host,
            )
                .cmp(&(
                    severity_rank(&b.severity),
                    b.state != "firing",
                    &b.name,
                    &b.host,
                ))
        });
        Self {
            url: url.to_owned(),
            fetched_at_ms,
            fleet,
            hosts,
            alerts,
            logs: log_stats_section(&parts.logs),
            backups: backups_section(&parts.backups),
        }
    }

    /// Firing alerts of a severity that are not silenced or inhibited.
    pub fn firing(&self, severity: &str) -> impl Iterator<Item = &AlertRow> {
        self.alerts
            .iter()
            .filter(move |a| a.state == "firing" && a.severity == severity && !a.muted)
    }
}
