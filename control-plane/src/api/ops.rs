//! `/health` and the `/ops` endpoints of this version: fleet status, agent inventory with health
//! checks and service/model views, comprehensive health, the PromQL query endpoint, monitoring
//! start/stop, and revocation.
//!
//! Response bodies are typed (`Serialize` + `ToSchema`), so `/openapi.json` describes exactly
//! what is sent. Their fields are in alphabetical order: the bodies were built with `json!`
//! (sorted keys) before, and stay byte for byte the same.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
};
use promql_parser::label::{MatchOp, Matcher};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    error::{ApiError, ErrorBody},
    prom,
    schema::{StoredEventDoc, ViewsDoc},
};
use crate::{
    ingest,
    query::{self, LOOKBACK},
    registry::{AgentView, ForgetError, MonitoringRecord},
    store::{Store, StoredEvent, now_ms},
    usage::MonthUsage,
    views::{self, ModelView, ServiceView, UsageView, Views},
};
use aisemble_shared::metrics as names;
use aisemble_shared::wire::Event;

/// `GET /health` body.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct Health {
    /// Always `aisemble-control-plane`.
    #[schema(example = "aisemble-control-plane")]
    service: &'static str,
    /// Always `healthy` while the process serves requests.
    #[schema(example = "healthy")]
    status: &'static str,
    /// The control plane's version.
    version: &'static str,
}

/// `GET /health`: liveness.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "The process is up.", body = Health)))]
pub(super) async fn health() -> Json<Health> {
    Json(Health {
        service: "aisemble-control-plane",
        status: "healthy",
        version: aisemble_shared::VERSION,
    })
}

fn since() -> i64 {
    now_ms() - LOOKBACK.as_millis() as i64
}

/// The fullest filesystem of a host.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct FullestDisk {
    /// Its mount point.
    mount: Option<String>,
    /// Percent used.
    usage_percent: f64,
}

/// Latest resource figures of a host (absent figures are `null`).
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct Resources {
    cpu_usage_percent: Option<f64>,
    fullest_disk: Option<FullestDisk>,
    load1: Option<f64>,
    memory_usage_percent: Option<f64>,
    uptime_seconds: Option<f64>,
}

/// An agent's journal as it last reported it.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct BufferView {
    /// Bytes not yet acknowledged.
    bytes: u64,
    /// Records evicted unsent, ever.
    dropped_records: u64,
    /// Records not yet acknowledged.
    records: u64,
}

/// Whether an agent collects.
#[derive(Serialize, Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum MonitoringState {
    /// Collecting and sending.
    Running,
    /// Stopped through `POST /ops/monitoring/stop`.
    Paused,
}

/// One agent in the inventory.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct AgentSummary {
    buffer: BufferView,
    /// Serial of its current certificate.
    certificate_serial: String,
    /// Connected now.
    connected: bool,
    /// Since when (ms since the Unix epoch), if connected.
    connected_since_ms: Option<i64>,
    first_seen_ms: i64,
    /// Host name the agent reported.
    hostname: String,
    /// Its name: the certificate's, and its `host` label.
    id: String,
    labels: BTreeMap<String, String>,
    last_seen_ms: i64,
    monitoring: MonitoringState,
    /// Remote address, if connected.
    remote: Option<String>,
    resources: Resources,
    /// Highest journal sequence number stored, for its current journal.
    stored_upto: Option<u64>,
    /// Agent version.
    version: String,
}

/// `GET /ops/agents` body.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct AgentList {
    agents: Vec<AgentSummary>,
}

/// `GET /ops/agents/{id}` body: the inventory entry plus health checks, recent events and the
/// host's service and model views.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct AgentDetail {
    #[serde(flatten)]
    summary: AgentSummary,
    #[serde(flatten)]
    details: HostDetails,
}

/// Checks, recent events and views of a host or the fleet.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct HostDetails {
    checks: Vec<CheckView>,
    /// Newest first, at most 50.
    #[schema(value_type = Vec<StoredEventDoc>)]
    events: Vec<StoredEvent>,
    #[schema(value_type = ViewsDoc)]
    views: Views,
}

/// The fleet-wide checks and views behind `/ops/status`, computed off the request path.
///
/// Computing them reads every series of the window (a second or more for 1,000 hosts), so
/// requests are served the latest result while one refresh at a time runs in the background
/// (stale-while-revalidate): a result is refreshed once it is [`REFRESH_AFTER`] old and served
/// until it is [`SERVE_AT_MOST`] old. Other windows than the default are computed per request.
#[derive(Debug, Default)]
pub(crate) struct StatusCache {
    latest: Mutex<Option<(Instant, Arc<HostDetails>)>>,
    refreshing: AtomicBool,
}

/// Age at which the cached fleet details are recomputed in the background.
const REFRESH_AFTER: Duration = Duration::from_secs(2);
/// Age beyond which a request waits for fresh fleet details rather than be served old ones.
const SERVE_AT_MOST: Duration = Duration::from_secs(30);

impl StatusCache {
    fn cached(&self) -> Option<(Instant, Arc<HostDetails>)> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn store(&self, details: &Arc<HostDetails>) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), Arc::clone(details)));
    }

    async fn fleet_details(
        self: &Arc<Self>,
        store: &Store,
        month: &MonthUsage,
        window: i64,
    ) -> Result<Arc<HostDetails>, ApiError> {
        let month = month.clone();
        let compute = move |store: Store| {
            let month = month.clone();
            async move {
                tokio::task::spawn_blocking(move || host_details(&store, &month, None, window))
                    .await
                    .map_err(ApiError::internal)?
                    .map(Arc::new)
            }
        };
        if window != views::DEFAULT_WINDOW_MS {
            return compute(store.clone()).await;
        }
        if let Some((at, details)) = self.cached()
            && at.elapsed() < SERVE_AT_MOST
        {
            if at.elapsed() >= REFRESH_AFTER && !self.refreshing.swap(true, Ordering::AcqRel) {
                let (cache, store, compute) = (Arc::clone(self), store.clone(), compute.clone());
                tokio::spawn(async move {
                    match compute(store).await {
                        Ok(fresh) => cache.store(&fresh),
                        Err(error) => tracing::warn!(?error, "Cannot refresh the fleet status."),
                    }
                    cache.refreshing.store(false, Ordering::Release);
                });
            }
            return Ok(details);
        }
        let fresh = compute(store.clone()).await?;
        self.store(&fresh);
        Ok(fresh)
    }
}

/// Latest CPU %, memory % and fullest disk % of an agent, from the head.
fn resources(state: &AppState, agent: &str) -> Resources {
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
        .map(|(labels, _, v)| FullestDisk {
            mount: labels.get("mount").map(str::to_owned),
            usage_percent: *v,
        });
    Resources {
        cpu_usage_percent: single(names::SYSTEM_CPU_USAGE_PERCENT),
        fullest_disk: fullest,
        load1: single(names::SYSTEM_LOAD1),
        memory_usage_percent: single(names::SYSTEM_MEMORY_USAGE_PERCENT),
        uptime_seconds: single(names::SYSTEM_UPTIME_SECONDS),
    }
}

fn agent_summary(state: &AppState, agent: &AgentView) -> AgentSummary {
    let record = &agent.record;
    AgentSummary {
        buffer: BufferView {
            bytes: record.buffer.bytes,
            dropped_records: record.buffer.dropped_records,
            records: record.buffer.records,
        },
        certificate_serial: record.certificate_serial.clone(),
        connected: agent.connected,
        connected_since_ms: agent.connected_since_ms,
        first_seen_ms: record.first_seen_ms,
        hostname: record.hostname.clone(),
        id: record.name.clone(),
        labels: record.labels.clone(),
        last_seen_ms: record.last_seen_ms,
        monitoring: match record.monitoring {
            MonitoringRecord::Running => MonitoringState::Running,
            MonitoringRecord::Paused => MonitoringState::Paused,
        },
        remote: agent.remote.clone(),
        resources: resources(state, &record.name),
        stored_upto: state
            .store
            .watermark(&record.name)
            .filter(|w| w.journal_id == record.journal_id)
            .map(|w| w.upto),
        version: record.version.clone(),
    }
}

/// A health check's latest result on one host.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct CheckView {
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
    labels: BTreeMap<String, String>,
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
#[derive(Deserialize, Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WindowParams {
    /// Window of rates and quantiles: seconds or a Prometheus duration (`5m`). Default `5m`.
    #[param(example = "5m")]
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
fn host_details(
    store: &Store,
    month: &MonthUsage,
    host: Option<&str>,
    window: i64,
) -> Result<HostDetails, ApiError> {
    let mut events = store.events(host, 200);
    let checks = checks(store, host, &events);
    let views = views::compute(store, month, host, now_ms(), window).map_err(ApiError::internal)?;
    events.truncate(50);
    Ok(HostDetails {
        checks,
        events,
        views,
    })
}

/// `GET /ops/agents`: the inventory.
#[utoipa::path(get, path = "/ops/agents", tag = "ops",
    responses((status = 200, description = "Every agent ever seen.", body = AgentList)))]
pub(super) async fn agents(State(state): State<AppState>) -> Json<AgentList> {
    let agents = state
        .registry
        .list()
        .iter()
        .map(|a| agent_summary(&state, a))
        .collect();
    Json(AgentList { agents })
}

/// `GET /ops/agents/{id}[?window=5m]`: inventory plus health checks, their recent state changes,
/// and the host's service and model views.
#[utoipa::path(get, path = "/ops/agents/{id}", tag = "ops",
    params(("id" = String, Path, description = "Agent name", example = "node-a"), WindowParams),
    responses(
        (status = 200, description = "The agent.", body = AgentDetail),
        (status = 400, description = "Bad `window`.", body = ErrorBody),
        (status = 404, description = "No such agent.", body = ErrorBody),
    ))]
pub(super) async fn agent(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<WindowParams>,
) -> Result<Json<AgentDetail>, ApiError> {
    let window = window_ms(&params)?;
    let agent = state
        .registry
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no agent named {id:?}")))?;
    let summary = agent_summary(&state, &agent);
    let (store, month) = (state.store.clone(), state.month_usage.clone());
    let details =
        tokio::task::spawn_blocking(move || host_details(&store, &month, Some(&id), window))
            .await
            .map_err(ApiError::internal)??;
    Ok(Json(AgentDetail { summary, details }))
}

/// `healthy`, `degraded` or `unhealthy`.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum HealthState {
    /// Nothing wrong.
    Healthy,
    /// Working, with a reason to look.
    Degraded,
    /// Not working.
    Unhealthy,
}

/// A component's health; which figures it has depends on the component.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct ComponentHealth {
    /// Agents connected now (ingest).
    #[serde(skip_serializing_if = "Option::is_none")]
    connected_agents: Option<usize>,
    /// Why it is not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Series stored (store, when healthy).
    #[serde(skip_serializing_if = "Option::is_none")]
    series: Option<usize>,
    status: HealthState,
}

/// The control plane's own components.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct Components {
    api: ComponentHealth,
    /// The alert rule evaluator.
    evaluator: ComponentHealth,
    ingest: ComponentHealth,
    /// Alert notification integrations (their circuit breakers) and routing.
    notifiers: ComponentHealth,
    /// The backup scheduler and the latest run of each job.
    scheduler: ComponentHealth,
    store: ComponentHealth,
}

/// One agent's health.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct AgentHealth {
    /// Its checks.
    checks: Vec<CheckView>,
    id: String,
    /// Why it is not healthy (empty when it is).
    reasons: Vec<String>,
    status: HealthState,
}

/// Longest time without an evaluation round before the evaluator counts as stalled.
const EVALUATOR_STALL_MS: i64 = 60_000;

/// `GET /ops/health/comprehensive` body.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct ComprehensiveHealth {
    agents: Vec<AgentHealth>,
    components: Components,
    /// The worst of everything.
    status: HealthState,
}

/// `GET /ops/health/comprehensive`: every component and every agent, with a reason for anything
/// not healthy.
#[utoipa::path(get, path = "/ops/health/comprehensive", tag = "ops",
    responses((status = 200, description = "Components and agents.", body = ComprehensiveHealth)))]
pub(super) async fn health_comprehensive(
    State(state): State<AppState>,
) -> Json<ComprehensiveHealth> {
    let store = state.store.clone();
    let (events, checks) = tokio::task::spawn_blocking(move || {
        let events = store.events(None, 1000);
        let checks = checks(&store, None, &events);
        (events, checks)
    })
    .await
    .unwrap_or_default();
    drop(events);
    let commit_errors = state.store.counters().commit_errors.load(Ordering::Relaxed);
    let component = |status| ComponentHealth {
        connected_agents: None,
        reason: None,
        series: None,
        status,
    };
    let degraded_if = |reasons: Vec<String>, bad: HealthState| ComponentHealth {
        status: if reasons.is_empty() {
            HealthState::Healthy
        } else {
            bad
        },
        reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        ..component(HealthState::Healthy)
    };
    let evaluator = {
        let snapshot = state.alerting.manager.snapshot();
        let mut reasons: Vec<String> = snapshot.load_errors.clone();
        if snapshot.failing_rules > 0 {
            reasons.push(format!(
                "{} rules failed their last evaluation",
                snapshot.failing_rules
            ));
        }
        let stalled = match snapshot.last_round_ms {
            Some(at) => (crate::store::now_ms() - at) > EVALUATOR_STALL_MS,
            None => state.started.elapsed().as_millis() as i64 > EVALUATOR_STALL_MS,
        };
        if stalled {
            degraded_if(
                vec![format!(
                    "no evaluation round for over {} s",
                    EVALUATOR_STALL_MS / 1000
                )],
                HealthState::Unhealthy,
            )
        } else {
            degraded_if(reasons, HealthState::Degraded)
        }
    };
    let notifiers = {
        let mut reasons: Vec<String> = state
            .alerting
            .integrations()
            .into_iter()
            .filter(|i| i.circuit != "closed")
            .map(|i| format!("{}/{}: circuit {}", i.receiver, i.integration, i.circuit))
            .collect();
        reasons.extend(
            state
                .alerting
                .routing_error()
                .map(|e| format!("routing: {e}")),
        );
        degraded_if(reasons, HealthState::Degraded)
    };
    let scheduler = degraded_if(
        state
            .backups
            .summary()
            .failing
            .into_iter()
            .map(|f| format!("backup {f} failed its latest run"))
            .collect(),
        HealthState::Degraded,
    );
    let components = Components {
        api: component(HealthState::Healthy),
        evaluator,
        notifiers,
        scheduler,
        ingest: ComponentHealth {
            connected_agents: Some(state.registry.connected_count()),
            ..component(HealthState::Healthy)
        },
        store: if commit_errors == 0 {
            ComponentHealth {
                series: Some(state.store.series_count()),
                ..component(HealthState::Healthy)
            }
        } else {
            ComponentHealth {
                reason: Some(format!("{commit_errors} WAL commits failed since start")),
                ..component(HealthState::Degraded)
            }
        },
    };
    let mut worst = [
        &components.store,
        &components.evaluator,
        &components.notifiers,
        &components.scheduler,
    ]
    .iter()
    .map(|c| c.status)
    .max()
    .unwrap_or(HealthState::Healthy);
    let agents: Vec<AgentHealth> = state
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
            let mine: Vec<CheckView> = checks.iter().filter(|c| &c.host == name).cloned().collect();
            for check in mine.iter().filter(|c| !c.up) {
                reasons.push(format!(
                    "check {} ({}) down: {}",
                    check.check,
                    check.kind,
                    check.error.as_deref().unwrap_or("failing")
                ));
            }
            let status = if !agent.connected || mine.iter().any(|c| !c.up) {
                HealthState::Unhealthy
            } else if reasons.is_empty() {
                HealthState::Healthy
            } else {
                HealthState::Degraded
            };
            worst = worst.max(status);
            AgentHealth {
                checks: mine,
                id: name.clone(),
                reasons,
                status,
            }
        })
        .collect();
    Json(ComprehensiveHealth {
        agents,
        components,
        status: worst,
    })
}

/// A figure over the hosts that report it.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct FleetFigure {
    avg: f64,
    /// Hosts reporting it.
    hosts: usize,
    max: f64,
}

fn summary(values: &[f64]) -> Option<FleetFigure> {
    if values.is_empty() {
        return None;
    }
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let avg = values.iter().sum::<f64>() / values.len() as f64;
    Some(FleetFigure {
        avg,
        hosts: values.len(),
        max,
    })
}

/// Agent counts.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct AgentCounts {
    connected: usize,
    disconnected: usize,
    total: usize,
}

/// Health checks across the fleet.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct CheckCounts {
    /// The checks that are down.
    down: Vec<CheckView>,
    total: usize,
    up: usize,
}

/// Latest resource figures across the fleet (`null` when no host reports one).
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct FleetResources {
    cpu_usage_percent: Option<FleetFigure>,
    disk_usage_percent: Option<FleetFigure>,
    memory_usage_percent: Option<FleetFigure>,
}

/// Ingest counters since start.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct IngestCounts {
    batches_total: u64,
    samples_total: u64,
}

/// Store figures.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct StoreFigures {
    disk_bytes: u64,
    series: usize,
}

/// `GET /ops/status` body.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct FleetStatus {
    agents: AgentCounts,
    /// Pending and firing alerts by severity, then state (`{"critical":{"firing":1}}`).
    #[schema(value_type = BTreeMap<String, BTreeMap<String, usize>>)]
    alerts: BTreeMap<String, BTreeMap<&'static str, usize>>,
    backups: crate::backup::BackupSummary,
    checks: CheckCounts,
    cost_this_month_usd: f64,
    ingest: IngestCounts,
    #[schema(value_type = Vec<super::schema::ModelViewDoc>)]
    models: Vec<ModelView>,
    resources: FleetResources,
    #[schema(value_type = Vec<super::schema::ServiceViewDoc>)]
    services: Vec<ServiceView>,
    /// `healthy`, or `degraded` while an agent is disconnected or a check is down.
    status: HealthState,
    store: StoreFigures,
    uptime_seconds: u64,
    #[schema(value_type = Vec<super::schema::UsageViewDoc>)]
    usage_this_month: Vec<UsageView>,
    version: &'static str,
    window_seconds: f64,
}

/// `GET /ops/status[?window=5m]`: the fleet summary.
#[utoipa::path(get, path = "/ops/status", tag = "ops", params(WindowParams),
    responses(
        (status = 200, description = "Fleet summary.", body = FleetStatus),
        (status = 400, description = "Bad `window`.", body = ErrorBody),
    ))]
pub(super) async fn status(
    State(state): State<AppState>,
    Query(params): Query<WindowParams>,
) -> Result<Json<FleetStatus>, ApiError> {
    let window = window_ms(&params)?;
    let details = state
        .status_cache
        .fleet_details(&state.store, &state.month_usage, window)
        .await?;
    let (connected, total) = state.registry.counts();
    let latest = |metric: &str| -> Vec<f64> {
        state
            .store
            .latest_values(&[Matcher::new(MatchOp::Equal, "__name__", metric)], since())
    };
    let telemetry = &state.telemetry;
    let views = details.views.clone();
    let total_checks = details.checks.len();
    let down: Vec<CheckView> = details.checks.iter().filter(|c| !c.up).cloned().collect();
    let status = if connected == total && down.is_empty() {
        HealthState::Healthy
    } else {
        HealthState::Degraded
    };
    let mut alerts: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for alert in state
        .alerting
        .manager
        .snapshot()
        .alerts()
        .filter(|a| a.state != "inactive")
    {
        let severity = alert
            .labels
            .get("severity")
            .cloned()
            .unwrap_or_else(|| "none".into());
        *alerts
            .entry(severity)
            .or_default()
            .entry(alert.state)
            .or_default() += 1;
    }
    Ok(Json(FleetStatus {
        agents: AgentCounts {
            connected,
            disconnected: total - connected,
            total,
        },
        alerts,
        backups: state.backups.summary(),
        checks: CheckCounts {
            total: total_checks,
            up: total_checks - down.len(),
            down,
        },
        cost_this_month_usd: views.cost_this_month_usd,
        ingest: IngestCounts {
            batches_total: telemetry.ingest_batches.get(),
            samples_total: telemetry.ingest_samples.get(),
        },
        models: views.models,
        resources: FleetResources {
            cpu_usage_percent: summary(&latest(names::SYSTEM_CPU_USAGE_PERCENT)),
            disk_usage_percent: summary(&latest(names::SYSTEM_DISK_USAGE_PERCENT)),
            memory_usage_percent: summary(&latest(names::SYSTEM_MEMORY_USAGE_PERCENT)),
        },
        services: views.services,
        status,
        store: StoreFigures {
            disk_bytes: state.store.size_on_disk(),
            series: state.store.series_count(),
        },
        uptime_seconds: state.started.elapsed().as_secs(),
        usage_this_month: views.usage_this_month,
        version: aisemble_shared::VERSION,
        window_seconds: views.window_seconds,
    }))
}

/// Parameters of `GET /ops/metrics/query`: `query` plus `time`, or `start`, `end` and `step`.
#[derive(Deserialize, Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct QueryParams {
    /// PromQL expression.
    #[param(example = "aisemble_system_cpu_usage_percent")]
    query: String,
    /// Instant query time: Unix seconds or RFC 3339. Default now.
    time: Option<String>,
    /// Range query start: Unix seconds or RFC 3339 (with `end` and `step`).
    start: Option<String>,
    /// Range query end.
    end: Option<String>,
    /// Range query step: seconds or a duration (`15s`).
    step: Option<String>,
}

/// `GET /ops/metrics/query` body.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct MetricsQueryResult {
    data: prom::QueryData,
}

/// `GET /ops/metrics/query`: instant or range query, Prometheus result shapes.
#[utoipa::path(get, path = "/ops/metrics/query", tag = "ops", params(QueryParams),
    responses(
        (status = 200, description = "The result.", body = MetricsQueryResult),
        (status = 400, description = "Bad or unsupported query, bad time or step.", body = ErrorBody),
    ))]
pub(super) async fn metrics_query(
    State(state): State<AppState>,
    Query(params): Query<QueryParams>,
) -> Result<Json<MetricsQueryResult>, ApiError> {
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
    Ok(Json(MetricsQueryResult {
        data: prom::QueryData::from(value),
    }))
}

/// Body of `POST /ops/monitoring/start|stop`; no body (or an empty list) means the whole fleet.
#[derive(Deserialize, Debug, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MonitoringRequest {
    /// Agent names.
    #[serde(default)]
    agents: Vec<String>,
}

/// Result of `POST /ops/monitoring/start|stop`.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct MonitoringResult {
    /// The agents the command went to.
    agents: Vec<String>,
    /// The state they are in now.
    monitoring: MonitoringState,
}

async fn set_monitoring(
    state: &AppState,
    body: &Bytes,
    paused: bool,
) -> Result<Json<MonitoringResult>, ApiError> {
    let request: MonitoringRequest = if body.iter().all(u8::is_ascii_whitespace) {
        MonitoringRequest::default()
    } else {
        super::error::parse_json(body).map_err(|e| {
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
    Ok(Json(MonitoringResult {
        agents: affected,
        monitoring: if paused {
            MonitoringState::Paused
        } else {
            MonitoringState::Running
        },
    }))
}

/// `POST /ops/monitoring/start`: resume collection fleet-wide or on the named agents.
#[utoipa::path(post, path = "/ops/monitoring/start", tag = "ops",
    request_body(content = Option<MonitoringRequest>, description = "Agents; none for the whole fleet."),
    responses(
        (status = 200, description = "Sent.", body = MonitoringResult),
        (status = 400, description = "Body is not the JSON described.", body = ErrorBody),
        (status = 404, description = "An agent is unknown.", body = ErrorBody),
    ))]
pub(super) async fn monitoring_start(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<MonitoringResult>, ApiError> {
    set_monitoring(&state, &body, false).await
}

/// `POST /ops/monitoring/stop`: pause collection fleet-wide or on the named agents.
#[utoipa::path(post, path = "/ops/monitoring/stop", tag = "ops",
    request_body(content = Option<MonitoringRequest>, description = "Agents; none for the whole fleet."),
    responses(
        (status = 200, description = "Sent.", body = MonitoringResult),
        (status = 400, description = "Body is not the JSON described.", body = ErrorBody),
        (status = 404, description = "An agent is unknown.", body = ErrorBody),
    ))]
pub(super) async fn monitoring_stop(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<MonitoringResult>, ApiError> {
    set_monitoring(&state, &body, true).await
}

/// Result of `DELETE /ops/agents/{id}`.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct Forgotten {
    agent: String,
    /// When it was last heard from (ms since the Unix epoch).
    last_seen_ms: i64,
}

/// `DELETE /ops/agents/{id}`: takes a disconnected agent out of the fleet (a decommissioned host):
/// it leaves the inventory and the fleet's health, and every series of the host (its
/// `aisemble_agent_up` included) ends with a staleness marker, as Prometheus ends a removed
/// target's, so its alerts (AgentMissing too) resolve at the next evaluation instead of lingering
/// for the lookback. Its stored samples and logs stay until retention; its certificate stays valid
/// unless revoked, and it is registered anew if it connects again.
#[utoipa::path(delete, path = "/ops/agents/{id}", tag = "ops",
    params(("id" = String, Path, description = "Agent name", example = "gpu-node-07")),
    responses(
        (status = 200, description = "Forgotten.", body = Forgotten),
        (status = 404, description = "No such agent.", body = ErrorBody),
        (status = 409, description = "The agent is connected.", body = ErrorBody),
    ))]
pub(super) async fn forget(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Forgotten>, ApiError> {
    let record = state.registry.forget(&id).map_err(|error| match error {
        ForgetError::Unknown(_) => ApiError::not_found(error.to_string()),
        ForgetError::Connected(_) => ApiError::conflict(error.to_string()),
    })?;
    let registry = std::sync::Arc::clone(&state.registry);
    tokio::task::spawn_blocking(move || registry.persist())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    // Written after the agent left the registry, so no later `aisemble_agent_up` sample for it
    // can follow these; and it is disconnected, so none of its own either.
    let stale: Vec<(Vec<(String, String)>, f64)> = state
        .store
        .matching(&[Matcher::new(MatchOp::Equal, "host", &id)])
        .iter()
        .map(|series| {
            let labels = series
                .labels
                .iter()
                .map(|p| (p.name.to_string(), p.value.to_string()))
                .collect();
            (labels, crate::store::STALE_NAN)
        })
        .collect();
    if !stale.is_empty() {
        match state.store.write_local(now_ms(), &stale).await {
            Ok(pending) => pending.wait().await.map_err(ApiError::internal)?,
            Err(error) => return Err(ApiError::internal(error)),
        };
    }
    tracing::info!(agent = %id, series = stale.len(), "Agent removed from the fleet through the API.");
    Ok(Json(Forgotten {
        agent: id,
        last_seen_ms: record.last_seen_ms,
    }))
}

/// Result of `POST /ops/agents/{id}/revoke`.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct Revoked {
    agent: String,
    /// Serials of the certificates revoked.
    revoked_serials: Vec<String>,
}

/// `POST /ops/agents/{id}/revoke`: revokes every certificate issued to the agent and disconnects it.
#[utoipa::path(post, path = "/ops/agents/{id}/revoke", tag = "ops",
    params(("id" = String, Path, description = "Agent name", example = "gpu-node-07")),
    responses(
        (status = 200, description = "Revoked and disconnected.", body = Revoked),
        (status = 400, description = "Not a valid agent name.", body = ErrorBody),
        (status = 404, description = "No certificate was issued to that name.", body = ErrorBody),
    ))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
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
        // Found by schemathesis: a name no certificate can carry was a 500.
        Err(aisemble_certs::Error::InvalidName(error)) => {
            return Err(ApiError::bad_request(format!(
                "{id:?} is not a valid agent name: {error}"
            )));
        }
        Err(aisemble_certs::Error::UnknownAgent { .. }) => {
            return Err(ApiError::not_found(format!(
                "no certificate issued to {id:?}"
            )));
        }
        Err(error) => return Err(ApiError::internal(error)),
    };
    ingest::apply_revocations(&state.ingest, list);
    tracing::info!(agent = %id, serials = serials.len(), "Agent revoked through the API.");
    Ok(Json(Revoked {
        agent: id,
        revoked_serials: serials,
    }))
}
