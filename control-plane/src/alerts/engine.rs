//! Alerting, wired: the rule manager's alerts feed the dispatcher; the dispatcher's flushes are
//! delivered by the receivers' integrations (with retries and circuit breakers); the
//! notification log and silences are persisted. Also reloads the Alertmanager-format routing file
//! when it changes (a bad file leaves the previous routing in force).
//!
//! [`Alerting`] is what the HTTP API holds: the snapshot of rules and alerts, silences, and the
//! routing status.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{
    config::RoutingConfig,
    dispatch::{DispatchAlert, Dispatcher, FlushJob, InhibitRule, muted_by},
    manager::RuleManager,
    notify::{
        AlertInfo, AlertStatus, BuildContext, Delivery, DeliveryPolicy, Notification,
        NotifierMetrics, deliveries, http_client,
    },
    persist::AlertStore,
    silence::{Silence, SilenceError, Silences},
    state::LabelMap,
};
use crate::store::now_ms;

/// How often the routing file is checked for changes, and silences/log are garbage-collected.
const HOUSEKEEPING: Duration = Duration::from_secs(2);
/// How long a shutdown waits for deliveries in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One receiver integration's state, for `/ops/health/comprehensive` and the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IntegrationStatus {
    /// Receiver.
    pub receiver: String,
    /// Integration (`slack`, `email[1]`, …).
    pub integration: String,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
}

/// Deliveries by (receiver, integration).
type Deliveries = HashMap<(String, String), Arc<Delivery>>;

struct Routing {
    config: RoutingConfig,
    deliveries: Deliveries,
    file_stamp: Option<(SystemTime, u64)>,
    error: Option<String>,
}

struct Shared {
    silences: Mutex<Silences>,
    routing: RwLock<Routing>,
    dispatched: RwLock<Vec<DispatchAlert>>,
    persist: AlertStore,
    metrics: NotifierMetrics,
    config_path: Option<PathBuf>,
    external_url: String,
    policy: DeliveryPolicy,
}

/// Alerting as the API sees it. Cheap to clone.
#[derive(Clone)]
pub struct Alerting {
    /// Rules and their alerts.
    pub manager: RuleManager,
    shared: Arc<Shared>,
    wake: mpsc::Sender<()>,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// Tasks to run: the rule manager's loop and the dispatcher's.
pub struct AlertingTasks {
    manager: RuleManager,
    shared: Arc<Shared>,
    alerts: mpsc::Receiver<Vec<DispatchAlert>>,
    alerts_tx: mpsc::Sender<Vec<DispatchAlert>>,
    wake: mpsc::Receiver<()>,
    dispatcher: Dispatcher,
}

impl std::fmt::Debug for AlertingTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertingTasks").finish_non_exhaustive()
    }
}

impl Alerting {
    /// Loads silences, the notification log and the routing file. Blocking.
    ///
    /// # Errors
    /// An unusable routing file at startup (later changes that do not load are refused and
    /// logged, the running routing stays), or metrics that cannot register.
    pub fn open(
        manager: RuleManager,
        settings: &crate::config::AlertingSettings,
        metrics_registry: &prometheus::Registry,
    ) -> anyhow::Result<(Self, AlertingTasks)> {
        let persist = manager.alert_store().clone();
        let metrics = NotifierMetrics::register(metrics_registry)?;
        let policy = DeliveryPolicy {
            give_up_after: settings.notification_retry_for,
            breaker_threshold: settings.circuit_breaker_threshold,
            breaker_open_for: settings.circuit_breaker_open_for,
            ..DeliveryPolicy::default()
        };
        let config_path = settings.alertmanager_config.clone();
        let external_url = settings.external_url.clone().unwrap_or_default();
        let (config, stamp) = match &config_path {
            None => (RoutingConfig::builtin(), None),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                (
                    RoutingConfig::parse(&path.display().to_string(), &text)
                        .map_err(anyhow::Error::msg)?,
                    stamp(path),
                )
            }
        };
        let deliveries = build_deliveries(&config, &policy, &metrics)?;
        let mut silences = Silences::default();
        let now = now_ms();
        for silence in persist.silences() {
            if let Err(error) = silences.upsert(silence.clone(), i64::MIN) {
                warn!(%error, id = %silence.id, "Dropping an unusable persisted silence.");
            }
        }
        silences.gc(now);
        let mut dispatcher = Dispatcher::new(
            config.tree.clone(),
            config.inhibit.clone(),
            config.integration_specs(),
        );
        dispatcher.restore_nflog(persist.nflog());
        let shared = Arc::new(Shared {
            silences: Mutex::new(silences),
            routing: RwLock::new(Routing {
                config,
                deliveries,
                file_stamp: stamp,
                error: None,
            }),
            dispatched: RwLock::new(Vec::new()),
            persist,
            metrics,
            config_path,
            external_url,
            policy,
        });
        let (alerts_tx, alerts) = mpsc::channel(4);
        let (wake_tx, wake) = mpsc::channel(1);
        Ok((
            Self {
                manager: manager.clone(),
                shared: Arc::clone(&shared),
                wake: wake_tx,
            },
            AlertingTasks {
                manager,
                shared,
                alerts,
                alerts_tx,
                wake,
                dispatcher,
            },
        ))
    }

    /// Every silence, newest first.
    pub fn silences(&self) -> Vec<Silence> {
        lock(&self.shared.silences)
            .list()
            .into_iter()
            .cloned()
            .collect()
    }

    /// Adds or replaces a silence, durably. Blocking.
    ///
    /// # Errors
    /// An invalid silence; a storage failure is reported as [`SilenceStoreError::Storage`].
    pub fn put_silence(&self, silence: Silence) -> Result<Silence, SilenceStoreError> {
        let now = now_ms();
        lock(&self.shared.silences).upsert(silence.clone(), now)?;
        self.shared
            .persist
            .put_silence(&silence)
            .map_err(|e| SilenceStoreError::Storage(e.to_string()))?;
        let _ = self.wake.try_send(());
        Ok(silence)
    }

    /// Expires a silence now, durably. Blocking.
    ///
    /// # Errors
    /// Unknown or already expired; storage failures.
    pub fn expire_silence(&self, id: &str) -> Result<Silence, SilenceStoreError> {
        let expired = lock(&self.shared.silences).expire(id, now_ms())?;
        self.shared
            .persist
            .put_silence(&expired)
            .map_err(|e| SilenceStoreError::Storage(e.to_string()))?;
        let _ = self.wake.try_send(());
        Ok(expired)
    }

    /// Why an alert is muted now: silences, inhibiting alerts.
    pub fn muted_by(&self, labels: &LabelMap) -> (Vec<String>, Vec<String>) {
        let silences = lock(&self.shared.silences);
        let routing = read(&self.shared.routing);
        let alerts = read(&self.shared.dispatched);
        muted_by(
            labels,
            &silences,
            &routing.config.inhibit,
            alerts.iter(),
            now_ms(),
        )
    }

    /// The inhibition rules in force.
    pub fn inhibit_rules(&self) -> Vec<InhibitRule> {
        read(&self.shared.routing).config.inhibit.clone()
    }

    /// Each integration's circuit breaker.
    pub fn integrations(&self) -> Vec<IntegrationStatus> {
        let routing = read(&self.shared.routing);
        let mut out: Vec<IntegrationStatus> = routing
            .deliveries
            .values()
            .map(|d| IntegrationStatus {
                receiver: d.receiver().to_owned(),
                integration: d.integration().to_owned(),
                circuit: match d.circuit_state() {
                    super::notify::BreakerState::Closed => "closed",
                    super::notify::BreakerState::Open => "open",
                    super::notify::BreakerState::HalfOpen => "half_open",
                },
            })
            .collect();
        out.sort_by(|a, b| (&a.receiver, &a.integration).cmp(&(&b.receiver, &b.integration)));
        out
    }

    /// Why the latest routing file was refused, if it was.
    pub fn routing_error(&self) -> Option<String> {
        read(&self.shared.routing).error.clone()
    }
}

/// Why a silence change failed.
#[derive(Debug, thiserror::Error)]
pub enum SilenceStoreError {
    /// Refused.
    #[error(transparent)]
    Invalid(#[from] SilenceError),
    /// Not written.
    #[error("storage: {0}")]
    Storage(String),
}

impl AlertingTasks {
    /// Runs the rule manager and the dispatcher until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let manager = self
            .manager
            .clone()
            .run(self.alerts_tx.clone(), shutdown.clone());
        let dispatch = run_dispatcher(
            self.shared,
            self.alerts,
            self.wake,
            self.dispatcher,
            shutdown,
        );
        tokio::join!(manager, dispatch);
    }
}

async fn run_dispatcher(
    shared: Arc<Shared>,
    mut alerts: mpsc::Receiver<Vec<DispatchAlert>>,
    mut wake: mpsc::Receiver<()>,
    mut dispatcher: Dispatcher,
    shutdown: CancellationToken,
) {
    let mut in_flight: JoinSet<(FlushJob, Vec<String>)> = JoinSet::new();
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    loop {
        let deadline = dispatcher.next_deadline().map(|at| {
            tokio::time::Instant::now()
                + Duration::from_millis(u64::try_from((at - now_ms()).max(0)).unwrap_or(0))
        });
        tokio::select! {
            received = alerts.recv() => {
                let Some(received) = received else { break };
                *write(&shared.dispatched) = received.clone();
                dispatcher.ingest(received, now_ms());
            }
            Some(()) = wake.recv() => {}
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                match done {
                    Ok((job, succeeded)) => dispatcher.complete(&job, &succeeded, now_ms()),
                    Err(error) => error!(%error, "A notification task failed."),
                }
            }
            () = sleep_until(deadline) => {}
            _ = housekeeping.tick() => {
                let now = now_ms();
                dispatcher.gc(now);
                let expired = lock(&shared.silences).gc(now);
                if !expired.is_empty() {
                    let _ = shared.persist.remove_silences(&expired);
                }
                if let Some(reconfigured) = reload_routing(&shared).await {
                    dispatcher.reconfigure(reconfigured.0, reconfigured.1, reconfigured.2, now);
                }
            }
            () = shutdown.cancelled() => break,
        }
        let now = now_ms();
        let jobs = {
            let silences = lock(&shared.silences);
            dispatcher.poll(now, &silences)
        };
        for job in jobs {
            let routing = read(&shared.routing);
            let mut work = Vec::new();
            for integration in &job.integrations {
                let name = integration.integration.name();
                let delivery = routing
                    .deliveries
                    .get(&(job.receiver.clone(), name.clone()))
                    .cloned();
                let notification = (!integration.alerts.is_empty())
                    .then(|| notification(&job, &integration.alerts, &shared.external_url, now));
                work.push((name, delivery, notification));
            }
            drop(routing);
            in_flight.spawn(async move {
                let mut succeeded = Vec::new();
                for (name, delivery, notification) in work {
                    match (delivery, notification) {
                        // Nothing to send (resolved only, send_resolved off): log it as done.
                        (_, None) => succeeded.push(name),
                        (Some(delivery), Some(notification)) => {
                            if delivery.deliver(&notification).await.is_ok() {
                                succeeded.push(name);
                            }
                        }
                        (None, Some(_)) => {
                            warn!(receiver = %job.receiver, integration = %name, "No such integration; the routing changed.");
                        }
                    }
                }
                (job, succeeded)
            });
        }
        if let Some(log) = dispatcher.take_nflog_if_changed() {
            let log = log.clone();
            let persist = shared.persist.clone();
            let written = tokio::task::spawn_blocking(move || persist.write_nflog(&log)).await;
            if let Ok(Err(error)) = written {
                error!(%error, "Cannot persist the notification log; a restart may repeat notifications.");
            }
        }
    }
    // Let deliveries in flight finish (and be logged) before stopping.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, in_flight.join_next()).await {
        if let Ok((job, succeeded)) = done {
            dispatcher.complete(&job, &succeeded, now_ms());
        }
    }
    if let Some(log) = dispatcher.take_nflog_if_changed() {
        let log = log.clone();
        let persist = shared.persist.clone();
        let _ = tokio::task::spawn_blocking(move || persist.write_nflog(&log)).await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

type Reconfigured = (
    super::route::RouteTree,
    Vec<InhibitRule>,
    HashMap<String, Vec<super::dispatch::IntegrationSpec>>,
);

/// Reloads the routing file if it changed; a file that does not load is refused and logged.
async fn reload_routing(shared: &Arc<Shared>) -> Option<Reconfigured> {
    let path = shared.config_path.clone()?;
    let current = stamp(&path);
    if current == read(&shared.routing).file_stamp {
        return None;
    }
    let shared_for_load = Arc::clone(shared);
    let loaded =
        tokio::task::spawn_blocking(move || -> Result<(RoutingConfig, Deliveries), String> {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let config = RoutingConfig::parse(&path.display().to_string(), &text)?;
            let deliveries =
                build_deliveries(&config, &shared_for_load.policy, &shared_for_load.metrics)
                    .map_err(|e| e.to_string())?;
            Ok((config, deliveries))
        })
        .await
        .ok()?;
    let mut routing = write(&shared.routing);
    routing.file_stamp = current;
    match loaded {
        Ok((config, deliveries)) => {
            info!(
                receivers = config.receivers.len(),
                routes = config.tree.routes.len(),
                "Routing configuration reloaded."
            );
            let reconfigured = (
                config.tree.clone(),
                config.inhibit.clone(),
                config.integration_specs(),
            );
            routing.config = config;
            routing.deliveries = deliveries;
            routing.error = None;
            Some(reconfigured)
        }
        Err(message) => {
            error!(error = %message, "Refusing the new routing configuration; the previous one stays in force.");
            routing.error = Some(message);
            None
        }
    }
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn build_deliveries(
    config: &RoutingConfig,
    policy: &DeliveryPolicy,
    metrics: &NotifierMetrics,
) -> anyhow::Result<Deliveries> {
    let http = http_client(Duration::from_secs(10))?;
    let context = BuildContext::new(http);
    let mut out = HashMap::new();
    for receiver in &config.receivers {
        for delivery in deliveries(receiver, &context, policy, metrics)? {
            out.insert(
                (
                    delivery.receiver().to_owned(),
                    delivery.integration().to_owned(),
                ),
                Arc::new(delivery),
            );
        }
    }
    Ok(out)
}

fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The notification one integration gets for one flush.
fn notification(
    job: &FlushJob,
    alerts: &[DispatchAlert],
    external_url: &str,
    now: i64,
) -> Notification {
    let infos: Vec<AlertInfo> = alerts
        .iter()
        .map(|a| AlertInfo {
            status: if a.resolved(now) {
                AlertStatus::Resolved
            } else {
                AlertStatus::Firing
            },
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: system_time(a.starts_at),
            ends_at: a.ends_at.filter(|_| a.resolved(now)).map(system_time),
            generator_url: a.generator_url.clone(),
            fingerprint: a.fingerprint.clone(),
        })
        .collect();
    let common = |pick: fn(&AlertInfo) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
        let Some(first) = infos.first() else {
            return BTreeMap::new();
        };
        pick(first)
            .iter()
            .filter(|(k, v)| infos.iter().all(|a| pick(a).get(*k) == Some(*v)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    Notification {
        receiver: job.receiver.clone(),
        group_key: job.group_key.clone(),
        status: if infos.iter().any(|a| a.status == AlertStatus::Firing) {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        },
        group_labels: job.group_labels.clone(),
        common_labels: common(|a| &a.labels),
        common_annotations: common(|a| &a.annotations),
        external_url: format!("{}/#alerts", external_url.trim_end_matches('/')),
        truncated_alerts: 0,
        alerts: infos,
    }
}
