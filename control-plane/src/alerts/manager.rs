//! The rule manager: loads rule files (and reloads them when they change), evaluates every group
//! on its interval over the store, writes what rules produce (`ALERTS`, `ALERTS_FOR_STATE`,
//! recorded series) through the store's own writer, keeps each rule's alert state on disk, and
//! hands the current alerts to the dispatcher.
//!
//! Evaluation runs on a blocking thread (it reads the store); the async loop only schedules,
//! writes and forwards. Before each round it also writes the series the control plane itself
//! knows: `aisemble_agent_up{host}` (1 while the agent is connected) and, every minute,
//! `aisemble_model_cost_month_to_date_usd{provider,model}`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, SystemTime},
};

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{
    dispatch::DispatchAlert,
    group::{self, GroupRuntime, RuleRuntime},
    persist::{AlertStore, HistoryEntry, PersistedAlert},
    rules::{self, RuleError, RuleGroup, RuleKind},
    state::{AlertState, EvalContext, LabelMap, OutputSample, fingerprint},
};
use crate::{
    config::AlertingSettings,
    query::{eval::SelectionCache, memory::MemorySeries},
    registry::Registry,
    store::{Store, now_ms},
    usage::MonthUsage,
};

/// The rule file shipped with the control plane, written into an empty rules directory.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.yml");

/// How often rule files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(2);
/// How often `aisemble_agent_up` is written.
const AGENT_UP_EVERY_MS: i64 = 5_000;
/// How often the month's cost is written.
const COST_EVERY_MS: i64 = 60_000;

/// An alert as the API shows it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct AlertView {
    /// Alert name.
    pub name: String,
    /// Labels.
    pub labels: LabelMap,
    /// Annotations.
    pub annotations: LabelMap,
    /// `pending`, `firing` or `inactive` (resolved).
    pub state: &'static str,
    /// The expression's latest value.
    pub value: f64,
    /// When the condition became true (ms).
    pub active_at_ms: i64,
    /// When it started firing (ms).
    pub fired_at_ms: Option<i64>,
    /// When it resolved (ms).
    pub resolved_at_ms: Option<i64>,
    /// Label fingerprint.
    pub fingerprint: String,
    /// Group.
    pub group: String,
    /// Rule file.
    pub file: String,
}

/// A rule as the API shows it.
#[derive(Serialize, Debug, Clone)]
pub struct RuleView {
    /// Alert or record name.
    pub name: String,
    /// `alerting` or `recording`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The expression.
    pub query: String,
    /// `for`, seconds.
    pub duration: f64,
    /// `keep_firing_for`, seconds.
    pub keep_firing_for: f64,
    /// Labels as written.
    pub labels: BTreeMap<String, String>,
    /// Annotations as written.
    pub annotations: BTreeMap<String, String>,
    /// `ok`, `err`, or `unknown` (not evaluated yet).
    pub health: &'static str,
    /// The last evaluation's error.
    pub last_error: Option<String>,
    /// The highest state of its alerts.
    pub state: &'static str,
    /// Seconds the last evaluation took.
    pub evaluation_time: f64,
    /// When it last ran (ms).
    pub last_evaluation_ms: Option<i64>,
    /// Its alerts.
    pub alerts: Vec<AlertView>,
}

/// A group as the API shows it.
#[derive(Serialize, Debug, Clone)]
pub struct GroupView {
    /// Name.
    pub name: String,
    /// File.
    pub file: String,
    /// Interval, seconds.
    pub interval: f64,
    /// Rules.
    pub rules: Vec<RuleView>,
}

/// What the API reads: refreshed after every round.
#[derive(Serialize, Debug, Clone, Default)]
pub struct Snapshot {
    /// Groups with their rules and alerts.
    pub groups: Vec<GroupView>,
    /// Why the latest rule files were refused (the previous rules stay in force).
    pub load_errors: Vec<String>,
    /// When the last round ran (ms).
    pub last_round_ms: Option<i64>,
    /// How long it took (seconds).
    pub last_round_seconds: f64,
    /// Rules whose last evaluation failed.
    pub failing_rules: usize,
}

impl Snapshot {
    /// Every pending, firing or recently resolved alert.
    pub fn alerts(&self) -> impl Iterator<Item = &AlertView> {
        self.groups
            .iter()
            .flat_map(|g| g.rules.iter().flat_map(|r| r.alerts.iter()))
    }
}

/// Why a rule file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesUpdateError {
    /// The file name is not `name.yml` or `name.yaml`.
    #[error("rule file names are letters, digits, '.', '_' or '-' ending in .yml or .yaml: {0:?}")]
    BadName(String),
    /// The file does not validate.
    #[error("the rule file is invalid")]
    Invalid(Vec<RuleError>),
    /// Writing failed.
    #[error("writing the rule file: {0}")]
    Io(#[from] std::io::Error),
}

struct LoadedGroup {
    group: RuleGroup,
    keys: Vec<String>,
    runtime: GroupRuntime,
    next_eval: i64,
}

struct Rules {
    groups: Vec<LoadedGroup>,
    fingerprint: Vec<(PathBuf, Option<SystemTime>, u64)>,
    load_errors: Vec<String>,
}

/// The rule manager. Cheap to clone.
#[derive(Clone)]
pub struct RuleManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    month_usage: MonthUsage,
    registry: Arc<Registry>,
    settings: AlertingSettings,
    persist: AlertStore,
    rules: Mutex<Rules>,
    snapshot: RwLock<Arc<Snapshot>>,
    reload: Notify,
}

impl std::fmt::Debug for RuleManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleManager")
            .field("rules_dir", &self.inner.settings.rules_dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RuleManager {
    /// Creates the rules directory with the default rules if it does not exist, and loads every
    /// rule file. Blocking.
    ///
    /// # Errors
    /// When the rules directory cannot be created. Invalid rule files are not an error: the
    /// manager starts without them and reports why.
    pub fn open(
        store: Store,
        month_usage: MonthUsage,
        registry: Arc<Registry>,
        settings: AlertingSettings,
        persist: AlertStore,
    ) -> std::io::Result<Self> {
        if !settings.rules_dir.exists() {
            std::fs::create_dir_all(&settings.rules_dir)?;
            std::fs::write(settings.rules_dir.join("default.yml"), DEFAULT_RULES)?;
            info!(dir = %settings.rules_dir.display(), "Wrote the default alert rules.");
        }
        let manager = Self {
            inner: Arc::new(Inner {
                store,
                month_usage,
                registry,
                settings,
                persist,
                rules: Mutex::new(Rules {
                    groups: Vec::new(),
                    fingerprint: Vec::new(),
                    load_errors: Vec::new(),
                }),
                snapshot: RwLock::new(Arc::new(Snapshot::default())),
                reload: Notify::new(),
            }),
        };
        manager.reload_if_changed(true);
        manager.refresh_snapshot(None, 0.0);
        Ok(manager)
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .inner
                .snapshot
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The persisted alert data (history, silences, notification log).
    pub fn alert_store(&self) -> &AlertStore {
        &self.inner.persist
    }

    /// The rule files in force: editable ones first.
    pub fn rule_files(&self) -> Vec<PathBuf> {
        rule_file_paths(&self.inner.settings)
    }

    /// The editable rules directory.
    pub fn rules_dir(&self) -> &Path {
        &self.inner.settings.rules_dir
    }

    /// Validates `text` as rule file `name` together with every other rule file, then writes it
    /// atomically into the rules directory and reloads. Blocking.
    ///
    /// # Errors
    /// A bad name, every problem of the file, or a write failure.
    pub fn put_rule_file(&self, name: &str, text: &str) -> Result<usize, RulesUpdateError> {
        let valid_name = !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && (name.ends_with(".yml") || name.ends_with(".yaml"));
        if !valid_name {
            return Err(RulesUpdateError::BadName(name.to_owned()));
        }
        let groups = rules::parse_rule_file(name, text).map_err(RulesUpdateError::Invalid)?;
        let dir = &self.inner.settings.rules_dir;
        std::fs::create_dir_all(dir)?;
        let target = dir.join(name);
        let temporary = dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, text)?;
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, &target)?;
        self.reload_if_changed(true);
        self.inner.reload.notify_one();
        Ok(groups.iter().map(|g| g.rules.len()).sum())
    }

    /// Reloads the rule files if any changed (or `force`). Invalid files leave the rules in
    /// force untouched. Blocking.
    pub fn reload_if_changed(&self, force: bool) -> bool {
        let paths = rule_file_paths(&self.inner.settings);
        let fingerprint: Vec<(PathBuf, Option<SystemTime>, u64)> = paths
            .iter()
            .map(|p| {
                let meta = std::fs::metadata(p).ok();
                (
                    p.clone(),
                    meta.as_ref().and_then(|m| m.modified().ok()),
                    meta.map_or(0, |m| m.len()),
                )
            })
            .collect();
        let mut rules = lock(&self.inner.rules);
        if !force && rules.fingerprint == fingerprint {
            return false;
        }
        rules.fingerprint = fingerprint;
        match rules::load_rule_files(&paths) {
            Err(errors) => {
                let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
                for message in &messages {
                    error!(error = %message, "Refusing the rule files; the previous rules stay in force.");
                }
                rules.load_errors = messages;
                false
            }
            Ok(groups) => {
                let mut old: HashMap<String, RuleRuntime> = HashMap::new();
                for loaded in rules.groups.drain(..) {
                    for (key, runtime) in loaded.keys.into_iter().zip(loaded.runtime.rules) {
                        old.insert(key, runtime);
                    }
                }
                let now = now_ms();
                let mut loaded_groups = Vec::new();
                let mut n_rules = 0;
                for group in groups {
                    let keys: Vec<String> = group
                        .rules
                        .iter()
                        .map(|r| rule_key(&group, &r.identity()))
                        .collect();
                    let runtime = GroupRuntime {
                        rules: keys
                            .iter()
                            .map(|key| {
                                old.remove(key)
                                    .unwrap_or_else(|| self.restored_runtime(key))
                            })
                            .collect(),
                    };
                    n_rules += keys.len();
                    let interval = self.interval_ms(&group);
                    loaded_groups.push(LoadedGroup {
                        group,
                        keys,
                        runtime,
                        next_eval: now - now.rem_euclid(interval),
                    });
                }
                info!(
                    groups = loaded_groups.len(),
                    rules = n_rules,
                    "Alert rules loaded."
                );
                rules.groups = loaded_groups;
                rules.load_errors.clear();
                true
            }
        }
    }

    fn restored_runtime(&self, key: &str) -> RuleRuntime {
        let mut runtime = RuleRuntime::default();
        for persisted in self.inner.persist.rule_alerts(key) {
            let alert = persisted.to_alert();
            runtime.alerts.active.insert(alert.labels.clone(), alert);
        }
        runtime
    }

    fn interval_ms(&self, group: &RuleGroup) -> i64 {
        crate::query::duration_ms(
            group
                .interval
                .unwrap_or(self.inner.settings.evaluation_interval),
        )
        .max(1)
    }

    /// Runs the evaluation loop until `shutdown`; current alerts go to `alerts` after every
    /// round.
    pub async fn run(self, alerts: mpsc::Sender<Vec<DispatchAlert>>, shutdown: CancellationToken) {
        let mut last_reload_check = tokio::time::Instant::now();
        let mut last_agent_up: Option<i64> = None;
        let mut last_cost: Option<i64> = None;
        loop {
            let now = now_ms();
            if last_agent_up.is_none_or(|at| now - at >= AGENT_UP_EVERY_MS) {
                last_agent_up = Some(now);
                self.write_agent_up(now).await;
            }
            if last_cost.is_none_or(|at| now - at >= COST_EVERY_MS) {
                last_cost = Some(now);
                self.write_month_cost(now).await;
            }
            let manager = self.clone();
            let round = tokio::task::spawn_blocking(move || manager.evaluate_due(now_ms())).await;
            match round {
                Ok(Some(round)) => {
                    for (ts, samples) in round.outputs {
                        self.write(ts, &samples).await;
                    }
                    let persist = self.inner.persist.clone();
                    let (changed, history) = (round.changed, round.history);
                    let keep = round.keys;
                    let written = tokio::task::spawn_blocking(move || {
                        for entry in &history {
                            persist.record_history(entry)?;
                        }
                        persist.write_rule_alerts(&changed, Some(&keep))
                    })
                    .await;
                    if let Ok(Err(error)) = written {
                        error!(%error, "Cannot persist alert state; a restart may repeat `for` waits.");
                    }
                    if alerts.send(round.alerts).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(error) => error!(%error, "Rule evaluation panicked."),
            }
            let next = self.next_evaluation();
            let wait = Duration::from_millis(u64::try_from((next - now_ms()).max(0)).unwrap_or(0))
                .min(RELOAD_CHECK);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.reload.notified() => {}
                () = shutdown.cancelled() => return,
            }
            if last_reload_check.elapsed() >= RELOAD_CHECK {
                last_reload_check = tokio::time::Instant::now();
                let manager = self.clone();
                let _ = tokio::task::spawn_blocking(move || manager.reload_if_changed(false)).await;
            }
        }
    }

    fn next_evaluation(&self) -> i64 {
        lock(&self.inner.rules)
            .groups
            .iter()
            .map(|g| g.next_eval)
            .min()
            .unwrap_or_else(|| now_ms() + 1_000)
    }

    /// Evaluates every group that is due at `now` (ms). Blocking.
    fn evaluate_due(&self, now: i64) -> Option<Round> {
        let started = std::time::Instant::now();
        let context = EvalContext {
            external_labels: self.inner.settings.external_labels.clone(),
            external_url: self.inner.settings.external_url.clone().unwrap_or_default(),
        };
        let mut rules = lock(&self.inner.rules);
        let mut outputs: BTreeMap<i64, Vec<OutputSample>> = BTreeMap::new();
        let mut evaluated = false;
        let mut history = Vec::new();
        let mut before: HashMap<String, Vec<PersistedAlert>> = HashMap::new();
        // Groups due at the same instant share what they select and see what earlier ones wrote.
        let store: &dyn crate::query::SeriesSource = &self.inner.store;
        let mut instants: HashMap<i64, (group::Overlay<'_>, SelectionCache)> = HashMap::new();
        for loaded in &mut rules.groups {
            if loaded.next_eval > now {
                continue;
            }
            let interval = crate::query::duration_ms(
                loaded
                    .group
                    .interval
                    .unwrap_or(self.inner.settings.evaluation_interval),
            )
            .max(1);
            let ts = loaded.next_eval;
            for (key, runtime) in loaded.keys.iter().zip(&loaded.runtime.rules) {
                before.insert(key.clone(), persisted(runtime));
            }
            let (overlay, cache) = instants
                .entry(ts)
                .or_insert_with(|| (group::Overlay::new(store), SelectionCache::default()));
            let output = group::eval_group(
                &loaded.group,
                &mut loaded.runtime,
                overlay,
                ts,
                &context,
                cache,
            );
            for (idx, error) in &output.errors {
                warn!(group = %loaded.group.name, rule = %loaded.group.rules[*idx].name, %error, "Rule evaluation failed.");
            }
            outputs.entry(ts).or_default().extend(output.samples);
            // The next aligned instant after now: rounds missed while busy are skipped.
            loaded.next_eval = (now - now.rem_euclid(interval)) + interval;
            evaluated = true;
        }
        drop(instants);
        if !evaluated {
            return None;
        }
        let mut changed = Vec::new();
        for loaded in &rules.groups {
            for (key, runtime) in loaded.keys.iter().zip(&loaded.runtime.rules) {
                let Some(previous) = before.get(key) else {
                    continue;
                };
                let current = persisted(runtime);
                let lifecycle = |a: &[PersistedAlert]| -> Vec<_> {
                    a.iter()
                        .map(|p| {
                            (
                                p.labels.clone(),
                                p.lifecycle().0.to_owned(),
                                p.lifecycle().1,
                                p.lifecycle().2,
                                p.lifecycle().3,
                                p.lifecycle().4,
                            )
                        })
                        .collect()
                };
                if lifecycle(previous) != lifecycle(&current) {
                    history.extend(history_changes(previous, &current));
                    changed.push((key.clone(), current));
                }
            }
        }
        let keys: HashSet<String> = rules
            .groups
            .iter()
            .flat_map(|g| g.keys.iter().cloned())
            .collect();
        let alerts = dispatch_alerts(
            &rules.groups,
            self.inner
                .settings
                .external_url
                .as_deref()
                .unwrap_or_default(),
        );
        drop(rules);
        let seconds = started.elapsed().as_secs_f64();
        self.refresh_snapshot(Some(now), seconds);
        Some(Round {
            outputs: outputs.into_iter().collect(),
            changed,
            history,
            keys,
            alerts,
        })
    }

    fn refresh_snapshot(&self, round_at: Option<i64>, seconds: f64) {
        let rules = lock(&self.inner.rules);
        let mut failing = 0;
        let groups = rules
            .groups
            .iter()
            .map(|loaded| GroupView {
                name: loaded.group.name.clone(),
                file: loaded.group.file.clone(),
                interval: self.interval_ms(&loaded.group) as f64 / 1000.0,
                rules: loaded
                    .group
                    .rules
                    .iter()
                    .zip(&loaded.runtime.rules)
                    .map(|(rule, runtime)| {
                        if runtime.last_error.is_some() {
                            failing += 1;
                        }
                        let alerts: Vec<AlertView> = runtime
                            .alerts
                            .active
                            .values()
                            .map(|a| AlertView {
                                name: rule.name.clone(),
                                labels: a.labels.clone(),
                                annotations: a.annotations.clone(),
                                state: a.state.as_str(),
                                value: a.value,
                                active_at_ms: a.active_at,
                                fired_at_ms: a.fired_at,
                                resolved_at_ms: a.resolved_at,
                                fingerprint: fingerprint(&a.labels),
                                group: loaded.group.name.clone(),
                                file: loaded.group.file.clone(),
                            })
                            .collect();
                        let state = runtime
                            .alerts
                            .active
                            .values()
                            .map(|a| a.state)
                            .max()
                            .unwrap_or(AlertState::Inactive);
                        RuleView {
                            name: rule.name.clone(),
                            kind: match rule.kind {
                                RuleKind::Alerting => "alerting",
                                RuleKind::Recording => "recording",
                            },
                            query: rule.expr_text.clone(),
                            duration: rule.hold.as_secs_f64(),
                            keep_firing_for: rule.keep_firing_for.as_secs_f64(),
                            labels: rule
                                .labels
                                .iter()
                                .map(|(k, v, _)| (k.clone(), v.clone()))
                                .collect(),
                            annotations: rule
                                .annotations
                                .iter()
                                .map(|(k, v, _)| (k.clone(), v.clone()))
                                .collect(),
                            health: match (&runtime.last_error, runtime.last_evaluation) {
                                (Some(_), _) => "err",
                                (None, Some(_)) => "ok",
                                (None, None) => "unknown",
                            },
                            last_error: runtime.last_error.clone(),
                            state: state.as_str(),
                            evaluation_time: runtime.evaluation_seconds,
                            last_evaluation_ms: runtime.last_evaluation,
                            alerts,
                        }
                    })
                    .collect(),
            })
            .collect();
        let previous = self.snapshot();
        let snapshot = Snapshot {
            groups,
            load_errors: rules.load_errors.clone(),
            last_round_ms: round_at.or(previous.last_round_ms),
            last_round_seconds: if round_at.is_some() {
                seconds
            } else {
                previous.last_round_seconds
            },
            failing_rules: failing,
        };
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
    }

    async fn write(&self, ts: i64, samples: &[OutputSample]) {
        if samples.is_empty() {
            return;
        }
        let rows: Vec<(Vec<(String, String)>, f64)> = samples
            .iter()
            .map(|s| {
                let pairs = s
                    .labels
                    .iter()
                    .map(|p| (p.name.to_string(), p.value.to_string()));
                (pairs.collect(), s.v)
            })
            .collect();
        match self.inner.store.write_local(ts, &rows).await {
            Ok(pending) => {
                if let Err(error) = pending.wait().await {
                    error!(%error, "Cannot store rule outputs.");
                }
            }
            Err(error) => error!(%error, "Cannot store rule outputs."),
        }
    }

    async fn write_agent_up(&self, now: i64) {
        let samples: Vec<OutputSample> = self
            .inner
            .registry
            .list()
            .into_iter()
            .map(|agent| OutputSample {
                labels: MemorySeries::labels(&[
                    ("__name__", "aisemble_agent_up"),
                    ("host", &agent.record.name),
                ]),
                v: if agent.connected { 1.0 } else { 0.0 },
            })
            .collect();
        self.write(now, &samples).await;
    }

    async fn write_month_cost(&self, now: i64) {
        let (store, month) = (self.inner.store.clone(), self.inner.month_usage.clone());
        let usage = tokio::task::spawn_blocking(move || month.read(&store, None, now)).await;
        let Ok(Ok((usage, _))) = usage else {
            return;
        };
        let samples: Vec<OutputSample> = usage
            .iter()
            .map(|u| OutputSample {
                labels: MemorySeries::labels(&[
                    ("__name__", "aisemble_model_cost_month_to_date_usd"),
                    ("provider", &u.provider),
                    ("model", &u.model),
                ]),
                v: u.cost_usd,
            })
            .collect();
        self.write(now, &samples).await;
    }
}

struct Round {
    outputs: Vec<(i64, Vec<OutputSample>)>,
    changed: Vec<(String, Vec<PersistedAlert>)>,
    history: Vec<HistoryEntry>,
    keys: HashSet<String>,
    alerts: Vec<DispatchAlert>,
}

fn persisted(runtime: &RuleRuntime) -> Vec<PersistedAlert> {
    runtime
        .alerts
        .active
        .values()
        .map(PersistedAlert::from_alert)
        .collect()
}

/// History entries for alerts that started firing or resolved between two states of a rule.
fn history_changes(before: &[PersistedAlert], after: &[PersistedAlert]) -> Vec<HistoryEntry> {
    let previous: HashMap<&LabelMap, &PersistedAlert> =
        before.iter().map(|a| (&a.labels, a)).collect();
    let mut out = Vec::new();
    for alert in after {
        let Some(fired_at) = alert.fired_at else {
            continue;
        };
        let was = previous.get(&alert.labels);
        let newly_firing = was.is_none_or(|w| w.fired_at != Some(fired_at));
        let newly_resolved =
            alert.resolved_at.is_some() && was.is_some_and(|w| w.resolved_at.is_none());
        if newly_firing || newly_resolved {
            out.push(HistoryEntry {
                fingerprint: fingerprint(&alert.labels),
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
                active_at: alert.active_at,
                starts_at: fired_at,
                ends_at: alert.resolved_at,
            });
        }
    }
    out
}

/// Firing alerts and resolved ones (within retention) that had fired, for the dispatcher.
fn dispatch_alerts(groups: &[LoadedGroup], external_url: &str) -> Vec<DispatchAlert> {
    let mut out = Vec::new();
    for loaded in groups {
        for (rule, runtime) in loaded.group.rules.iter().zip(&loaded.runtime.rules) {
            if rule.kind != RuleKind::Alerting {
                continue;
            }
            for alert in runtime.alerts.active.values() {
                let Some(fired_at) = alert.fired_at else {
                    continue;
                };
                out.push(DispatchAlert {
                    fingerprint: fingerprint(&alert.labels),
                    labels: alert.labels.clone(),
                    annotations: alert.annotations.clone(),
                    starts_at: fired_at,
                    ends_at: alert.resolved_at,
                    generator_url: format!(
                        "{}/#rules?rule={}",
                        external_url.trim_end_matches('/'),
                        rule.name
                    ),
                });
            }
        }
    }
    out
}

/// `sha256(file, group, rule identity)`: the key of a rule's persisted alerts.
fn rule_key(group: &RuleGroup, identity: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(group.file.as_bytes());
    hasher.update([0]);
    hasher.update(group.name.as_bytes());
    hasher.update([0]);
    hasher.update(identity.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// `*.yml`/`*.yaml` of the rules directory (sorted), then the configured extra files and globs.
fn rule_file_paths(settings: &AlertingSettings) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&settings.rules_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                !n.starts_with('.') && (n.ends_with(".yml") || n.ends_with(".yaml"))
            })
        })
        .collect();
    paths.sort();
    for pattern in &settings.rule_files {
        paths.extend(super::unittest::glob_path(pattern));
    }
    paths
}
