//! Backups (SPEC §9): jobs, the scheduler, runs, the repository.
//!
//! Pure cores: `chunker.rs` (content-defined chunks), `jobs.rs` (validation, the guide's
//! defaults, cron, retention), `repo.rs` (the on-disk layout, dedup, verification) and
//! `transfer.rs` (frames ⇄ chunks and manifests). This file is the driver: a backup opens a
//! stream on the agent's own connection (`TaskRequest::Backup`) and a thread stores what
//! arrives; a restore checks every chunk first, then streams the snapshot to the agent, which
//! stages, verifies and switches it; `check` reads the whole repository. Every run is recorded
//! (`backup-runs.json`), and each backup's outcome is written as series through the store's own
//! writer (`aisemble_backup_last_run_success{job,host}` and friends), so alert rules and reports
//! see them like any metric.
//!
//! Runs hold the repository's gate for reading; pruning (after retention forgets snapshots)
//! takes it for writing, so it never deletes the chunks of a backup still being written.

pub mod chunker;
pub mod jobs;
pub mod repo;
pub mod transfer;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use aisemble_shared::{
    codec::{self, DEFAULT_MAX_FRAME_BYTES, FrameDecoder},
    wire::{BackupTask, RestoreTask, TaskMessage, TaskRequest},
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use utoipa::ToSchema;

use crate::{json_file, registry::Registry, reports::text::rfc3339, store::Store, store::now_ms};
use jobs::{Job, JobSpec, Retention};
use repo::{CheckReport, Repository, Snapshot};
use transfer::SnapshotMeta;

/// Runs kept in `backup-runs.json`.
const RUNS_KEPT: usize = 1000;
/// Longest silence of an agent during a task before the run fails.
const TASK_IDLE: Duration = Duration::from_secs(300);
/// Frames between a stream and its repository thread.
const CHANNEL_FRAMES: usize = 8;

/// Why a backup request was refused.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The job is not valid.
    #[error("{0}")]
    Invalid(String),
    /// No such job.
    #[error("no backup job {0:?}")]
    NoJob(String),
    /// No such snapshot.
    #[error("no snapshot {0:?}")]
    NoSnapshot(String),
    /// No such agent.
    #[error("no agent {0:?}")]
    NoAgent(String),
    /// The same job is already running on that agent.
    #[error("{0}")]
    Busy(String),
    /// The repository or a state file failed.
    #[error("{0}")]
    Storage(String),
}

/// What a run does.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Read a source into a snapshot.
    Backup,
    /// Put a snapshot back on a host.
    Restore,
    /// Verify the repository.
    Check,
}

/// Where a run is.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Going on.
    Running,
    /// Done, and everything checked out.
    Succeeded,
    /// Stopped; `detail` says why.
    Failed,
}

/// One run, as recorded.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
pub struct RunRecord {
    /// Increasing id.
    pub id: u64,
    /// Backup, restore or check.
    pub kind: RunKind,
    /// Running, succeeded or failed.
    pub state: RunState,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// The job (backups and restores).
    #[serde(default)]
    pub job: Option<String>,
    /// The agent (backups and restores).
    #[serde(default)]
    pub agent: Option<String>,
    /// The snapshot made (backup) or restored (restore).
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Where a restore went.
    #[serde(default)]
    pub target: Option<String>,
    /// Start, ms since the Unix epoch.
    pub started_ms: i64,
    /// Start, RFC 3339.
    pub started_at: String,
    /// End, RFC 3339.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Seconds it took.
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    /// Entries moved.
    #[serde(default)]
    pub entries: u64,
    /// Content bytes moved (or read, for a check).
    #[serde(default)]
    pub bytes: u64,
    /// Compressed bytes a backup added to the repository.
    #[serde(default)]
    pub added_bytes: u64,
    /// Entries a backup left out because the agent could not read them.
    #[serde(default)]
    pub skipped: u64,
    /// What happened, in words (the error, for a failed run).
    #[serde(default)]
    pub detail: String,
}

/// `backup-runs.json`.
#[derive(Serialize, Deserialize, Debug, Default)]
struct RunLog {
    next_id: u64,
    runs: Vec<RunRecord>,
}

/// A snapshot without its entries, as listed.
#[derive(Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct SnapshotSummary {
    /// Id.
    pub id: String,
    /// Job.
    pub job: String,
    /// Agent it was read on.
    pub agent: String,
    /// What was read.
    pub source: String,
    /// When reading began, RFC 3339.
    pub time: String,
    /// Start, ms since the Unix epoch.
    pub started_ms: i64,
    /// Seconds from start to the manifest.
    pub duration_seconds: f64,
    /// Entries.
    pub entries: u64,
    /// Content bytes.
    pub bytes: u64,
    /// Compressed bytes it added to the repository.
    pub added_bytes: u64,
    /// Entries the agent could not read, left out (the agent's log names them).
    pub skipped: u64,
}

impl SnapshotSummary {
    fn of(s: &Snapshot) -> Self {
        Self {
            id: s.id.clone(),
            job: s.job.clone(),
            agent: s.agent.clone(),
            source: s.source.clone(),
            time: rfc3339(s.started_ms),
            started_ms: s.started_ms,
            duration_seconds: (s.finished_ms - s.started_ms).max(0) as f64 / 1000.0,
            entries: s.entries.len() as u64,
            bytes: s.bytes,
            added_bytes: s.added_bytes,
            skipped: s.skipped,
        }
    }
}

/// One job's state.
#[derive(Serialize, Debug, Clone, ToSchema)]
pub struct JobStatus {
    /// The job as written.
    pub spec: JobSpec,
    /// What it reads, in words.
    pub source: String,
    /// The effective schedule (cron, UTC), if any.
    pub schedule: Option<String>,
    /// The effective retention, if any.
    pub retention: Option<Retention>,
    /// Next scheduled run, RFC 3339.
    pub next_run: Option<String>,
    /// The latest run on any agent.
    pub last_run: Option<RunRecord>,
    /// The end of the latest successful run, RFC 3339.
    pub last_success: Option<String>,
    /// Finished runs recorded.
    pub runs: u64,
    /// Share of finished runs that succeeded, 0..1; none before the first.
    pub success_rate: Option<f64>,
    /// Snapshots kept.
    pub snapshots: u64,
}

/// The repository in figures.
#[derive(Serialize, Debug, Clone, ToSchema)]
pub struct RepositoryStatus {
    /// Its directory.
    pub path: String,
    /// Snapshots.
    pub snapshots: u64,
    /// Chunk files.
    pub chunks: u64,
    /// Their size on disk (compressed).
    pub stored_bytes: u64,
    /// Content bytes of all snapshots (before dedup and compression).
    pub snapshot_bytes: u64,
}

/// Backups at a glance (`/ops/status`; the whole picture is `GET /ops/backups/status`).
#[derive(Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct BackupSummary {
    /// Jobs defined.
    pub jobs: usize,
    /// `job on host` of every job whose latest run on that host failed.
    pub failing: Vec<String>,
    /// Runs going on.
    pub running: usize,
    /// Snapshots in the repository.
    pub snapshots: u64,
    /// The end of the latest successful backup, RFC 3339.
    pub last_success: Option<String>,
}

/// `GET /ops/backups/status`.
#[derive(Serialize, Debug, Clone, ToSchema)]
pub struct BackupStatus {
    /// Every job.
    pub jobs: Vec<JobStatus>,
    /// Runs going on.
    pub running: Vec<RunRecord>,
    /// The latest runs, newest first (50).
    pub recent_runs: Vec<RunRecord>,
    /// The latest repository check.
    pub last_check: Option<RunRecord>,
    /// The repository.
    pub repository: RepositoryStatus,
}

/// The backup service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Backups(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    repo: Repository,
    jobs_path: PathBuf,
    runs_path: PathBuf,
    jobs: Mutex<BTreeMap<String, Job>>,
    runs: Mutex<RunLog>,
    catalog: Mutex<Vec<SnapshotSummary>>,
    usage: Mutex<(u64, u64)>,
    running: Mutex<HashSet<(String, String)>>,
    next_due: Mutex<HashMap<String, i64>>,
    gate: tokio::sync::RwLock<()>,
    registry: Arc<Registry>,
    store: Store,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn storage(e: impl std::fmt::Display) -> BackupError {
    BackupError::Storage(e.to_string())
}

impl From<json_file::FileError> for BackupError {
    fn from(error: json_file::FileError) -> Self {
        storage(error)
    }
}

impl Backups {
    /// Opens the repository (creating it) and loads jobs and runs. Blocking.
    ///
    /// # Errors
    /// When the repository or a state file cannot be read.
    pub fn open(
        data_dir: &Path,
        repository: &Path,
        registry: Arc<Registry>,
        store: Store,
    ) -> Result<Self, BackupError> {
        let repo = Repository::open_or_init(repository).map_err(storage)?;
        let jobs_path = data_dir.join("backup-jobs.json");
        let runs_path = data_dir.join("backup-runs.json");
        let (specs, _) =
            json_file::read::<Vec<JobSpec>>(&jobs_path, "backup jobs").map_err(storage)?;
        let mut jobs = BTreeMap::new();
        for spec in specs {
            let name = spec.name.clone();
            match Job::new(spec) {
                Ok(job) => {
                    jobs.insert(name, job);
                }
                Err(error) => warn!(job = %name, %error, "Ignoring an invalid backup job."),
            }
        }
        let (mut runs, _) =
            json_file::read::<RunLog>(&runs_path, "backup runs").map_err(storage)?;
        let now = now_ms();
        for run in &mut runs.runs {
            if run.state == RunState::Running {
                run.state = RunState::Failed;
                run.finished_at = Some(rfc3339(now));
                run.detail = "the control plane stopped during the run".into();
            }
        }
        let (snapshots, problems) = repo.snapshots().map_err(storage)?;
        for problem in problems {
            warn!(%problem, "A snapshot manifest cannot be read.");
        }
        let usage = repo.usage().map_err(storage)?;
        Ok(Self(Arc::new(Inner {
            jobs: Mutex::new(jobs),
            runs: Mutex::new(runs),
            catalog: Mutex::new(snapshots.iter().map(SnapshotSummary::of).collect()),
            usage: Mutex::new(usage),
            running: Mutex::default(),
            next_due: Mutex::default(),
            gate: tokio::sync::RwLock::new(()),
            repo,
            jobs_path,
            runs_path,
            registry,
            store,
        })))
    }

    /// Creates or replaces a job; returns whether it is new. Blocking (writes the jobs file).
    ///
    /// # Errors
    /// `Invalid` naming the field, or `Storage`.
    pub fn put_job(&self, spec: JobSpec) -> Result<bool, BackupError> {
        let job = Job::new(spec).map_err(|e| BackupError::Invalid(e.to_string()))?;
        let name = job.spec.name.clone();
        let saved = job.spec.clone();
        let (_, created, _) = json_file::modify(
            &self.0.jobs_path,
            "backup jobs",
            |specs: &mut Vec<JobSpec>| -> Result<bool, BackupError> {
                let before = specs.len();
                specs.retain(|s| s.name != saved.name);
                let created = specs.len() == before;
                specs.push(saved);
                specs.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(created)
            },
        )?;
        lock(&self.0.jobs).insert(name.clone(), job);
        lock(&self.0.next_due).remove(&name);
        info!(job = %name, created, "Backup job saved.");
        Ok(created)
    }

    /// Deletes a job: it is no longer scheduled or listed. Runs going on finish; its snapshots
    /// stay, restorable. Blocking (writes the jobs file).
    ///
    /// # Errors
    /// `NoJob`, or `Storage`.
    pub fn delete_job(&self, name: &str) -> Result<(), BackupError> {
        json_file::modify(
            &self.0.jobs_path,
            "backup jobs",
            |specs: &mut Vec<JobSpec>| -> Result<(), BackupError> {
                let before = specs.len();
                specs.retain(|s| s.name != name);
                if specs.len() == before {
                    return Err(BackupError::NoJob(name.to_owned()));
                }
                Ok(())
            },
        )?;
        lock(&self.0.jobs).remove(name);
        lock(&self.0.next_due).remove(name);
        info!(job = %name, "Backup job deleted.");
        Ok(())
    }

    /// Starts the job on its agents (or on `only` of them); returns the runs started.
    ///
    /// # Errors
    /// `NoJob`, `NoAgent` for a named agent that is not known, `Busy` when it is running on every
    /// target already.
    pub fn start_backup(
        &self,
        name: &str,
        only: Option<&[String]>,
        trigger: &str,
    ) -> Result<Vec<u64>, BackupError> {
        let job = lock(&self.0.jobs)
            .get(name)
            .cloned()
            .ok_or_else(|| BackupError::NoJob(name.to_owned()))?;
        let known: Vec<String> = self
            .0
            .registry
            .list()
            .into_iter()
            .map(|a| a.record.name)
            .collect();
        let all = job.targets(&known);
        let targets = match only {
            Some(agents) if !agents.is_empty() => {
                if let Some(unknown) = agents.iter().find(|a| !known.contains(a)) {
                    return Err(BackupError::NoAgent(unknown.clone()));
                }
                if let Some(other) = agents.iter().find(|a| !all.contains(a)) {
                    return Err(BackupError::Invalid(format!(
                        "agents: {other} is not one of {name}'s agents"
                    )));
                }
                agents.to_vec()
            }
            _ => all,
        };
        let mut started = Vec::new();
        let mut busy = Vec::new();
        for agent in targets {
            if !lock(&self.0.running).insert((name.to_owned(), agent.clone())) {
                busy.push(agent);
                continue;
            }
            let run = self.begin(RunKind::Backup, trigger, |r| {
                r.job = Some(name.to_owned());
                r.agent = Some(agent.clone());
            });
            started.push(run.id);
            let (this, job) = (self.clone(), job.clone());
            tokio::spawn(async move { this.backup_run(job, agent, run).await });
        }
        if started.is_empty() && !busy.is_empty() {
            return Err(BackupError::Busy(format!(
                "{name} is still running on {}",
                busy.join(", ")
            )));
        }
        Ok(started)
    }

    /// Starts a restore of `snapshot` into `target` on `agent` (default: the agent it came from).
    ///
    /// # Errors
    /// `NoSnapshot`, `NoAgent`, or `Invalid` for a target that is not an absolute directory.
    pub fn start_restore(
        &self,
        snapshot: &str,
        agent: Option<&str>,
        target: &str,
    ) -> Result<RunRecord, BackupError> {
        let summary = lock(&self.0.catalog)
            .iter()
            .find(|s| s.id == snapshot)
            .cloned()
            .ok_or_else(|| BackupError::NoSnapshot(snapshot.to_owned()))?;
        let agent = agent.unwrap_or(&summary.agent).to_owned();
        if self.0.registry.get(&agent).is_none() {
            return Err(BackupError::NoAgent(agent));
        }
        let path = Path::new(target);
        if !path.is_absolute() || path.parent().is_none() || target.contains('\0') {
            return Err(BackupError::Invalid(
                "target: an absolute directory other than /".into(),
            ));
        }
        let run = self.begin(RunKind::Restore, "manual", |r| {
            r.job = Some(summary.job.clone());
            r.agent = Some(agent.clone());
            r.snapshot = Some(summary.id.clone());
            r.target = Some(target.to_owned());
        });
        let (this, record) = (self.clone(), run.clone());
        tokio::spawn(async move { this.restore_run(agent, record).await });
        Ok(run)
    }

    /// Starts a repository check (with `read_data`, every chunk is read and hashed).
    pub fn start_check(&self, read_data: bool) -> RunRecord {
        let run = self.begin(RunKind::Check, "manual", |_| {});
        let (this, record) = (self.clone(), run.clone());
        tokio::spawn(async move { this.check_run(read_data, record).await });
        run
    }

    /// Snapshots, oldest first, optionally of one job and/or agent.
    pub fn snapshots(&self, job: Option<&str>, agent: Option<&str>) -> Vec<SnapshotSummary> {
        lock(&self.0.catalog)
            .iter()
            .filter(|s| job.is_none_or(|j| s.job == j) && agent.is_none_or(|a| s.agent == a))
            .cloned()
            .collect()
    }

    /// One run.
    pub fn run(&self, id: u64) -> Option<RunRecord> {
        lock(&self.0.runs).runs.iter().find(|r| r.id == id).cloned()
    }

    /// The figures `/ops/status` and the health view need, without copying the run log.
    pub fn summary(&self) -> BackupSummary {
        let jobs = lock(&self.0.jobs);
        let runs = lock(&self.0.runs);
        let mut latest: BTreeMap<(&str, &str), &RunRecord> = BTreeMap::new();
        let mut running = 0;
        let mut last_success: Option<&String> = None;
        for run in &runs.runs {
            if run.state == RunState::Running {
                running += 1;
                continue;
            }
            let (Some(job), Some(agent)) = (run.job.as_deref(), run.agent.as_deref()) else {
                continue;
            };
            if run.kind != RunKind::Backup || !jobs.contains_key(job) {
                continue;
            }
            // Runs are in id order, so the last one seen is the latest.
            latest.insert((job, agent), run);
            if run.state == RunState::Succeeded {
                last_success = run.finished_at.as_ref().max(last_success);
            }
        }
        BackupSummary {
            jobs: jobs.len(),
            failing: latest
                .iter()
                .filter(|(_, run)| run.state == RunState::Failed)
                .map(|((job, agent), _)| format!("{job} on {agent}"))
                .collect(),
            running,
            snapshots: lock(&self.0.catalog).len() as u64,
            last_success: last_success.cloned(),
        }
    }

    /// Everything `GET /ops/backups/status` shows.
    pub fn status(&self, now: i64) -> BackupStatus {
        let runs = lock(&self.0.runs).runs.clone();
        let catalog = lock(&self.0.catalog).clone();
        let jobs: Vec<JobStatus> = lock(&self.0.jobs)
            .values()
            .map(|job| {
                let name = job.spec.name.as_str();
                let of_job: Vec<&RunRecord> = runs
                    .iter()
                    .filter(|r| r.kind == RunKind::Backup && r.job.as_deref() == Some(name))
                    .collect();
                let finished: Vec<&&RunRecord> = of_job
                    .iter()
                    .filter(|r| r.state != RunState::Running)
                    .collect();
                let succeeded = finished
                    .iter()
                    .filter(|r| r.state == RunState::Succeeded)
                    .count();
                JobStatus {
                    spec: job.spec.clone(),
                    source: job.describe_source(),
                    schedule: job.schedule.as_ref().map(|(text, _)| text.clone()),
                    retention: job.retention,
                    next_run: job.next_run_after(now).map(rfc3339),
                    last_run: of_job.last().map(|r| (*r).clone()),
                    last_success: of_job
                        .iter()
                        .rev()
                        .find(|r| r.state == RunState::Succeeded)
                        .and_then(|r| r.finished_at.clone()),
                    runs: finished.len() as u64,
                    success_rate: (!finished.is_empty())
                        .then(|| succeeded as f64 / finished.len() as f64),
                    snapshots: catalog.iter().filter(|s| s.job == name).count() as u64,
                }
            })
            .collect();
        let (chunks, stored_bytes) = *lock(&self.0.usage);
        BackupStatus {
            jobs,
            running: runs
                .iter()
                .filter(|r| r.state == RunState::Running)
                .cloned()
                .collect(),
            recent_runs: runs.iter().rev().take(50).cloned().collect(),
            last_check: runs
                .iter()
                .rev()
                .find(|r| r.kind == RunKind::Check && r.state != RunState::Running)
                .cloned(),
            repository: RepositoryStatus {
                path: self.0.repo.root().display().to_string(),
                snapshots: catalog.len() as u64,
                chunks,
                stored_bytes,
                snapshot_bytes: catalog.iter().map(|s| s.bytes).sum(),
            },
        }
    }

    /// Starts scheduled jobs when due until `shutdown`. Runs missed while the control plane was
    /// down are not made up (as with cron); the next one is.
    pub async fn run_scheduler(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let now = now_ms();
            let due: Vec<String> = {
                let jobs = lock(&self.0.jobs);
                let mut next_due = lock(&self.0.next_due);
                jobs.values()
                    .filter_map(|job| {
                        let name = &job.spec.name;
                        let at = *next_due
                            .entry(name.clone())
                            .or_insert_with(|| job.next_run_after(now).unwrap_or(i64::MAX));
                        (at <= now).then(|| {
                            next_due
                                .insert(name.clone(), job.next_run_after(now).unwrap_or(i64::MAX));
                            name.clone()
                        })
                    })
                    .collect()
            };
            for name in due {
                match self.start_backup(&name, None, "schedule") {
                    Ok(runs) => info!(job = %name, runs = runs.len(), "Scheduled backup started."),
                    Err(error) => warn!(job = %name, %error, "Scheduled backup not started."),
                }
            }
        }
    }

    /// Records a new run.
    fn begin(&self, kind: RunKind, trigger: &str, fill: impl FnOnce(&mut RunRecord)) -> RunRecord {
        let now = now_ms();
        let mut log = lock(&self.0.runs);
        log.next_id = log.next_id.max(log.runs.last().map_or(0, |r| r.id)) + 1;
        let mut run = RunRecord {
            id: log.next_id,
            kind,
            state: RunState::Running,
            trigger: trigger.to_owned(),
            job: None,
            agent: None,
            snapshot: None,
            target: None,
            started_ms: now,
            started_at: rfc3339(now),
            finished_at: None,
            duration_seconds: None,
            entries: 0,
            bytes: 0,
            added_bytes: 0,
            skipped: 0,
            detail: String::new(),
        };
        fill(&mut run);
        log.runs.push(run.clone());
        let excess = log.runs.len().saturating_sub(RUNS_KEPT);
        log.runs.drain(..excess);
        run
    }

    /// Records how a run ended and writes the run log.
    async fn finish(&self, mut run: RunRecord, outcome: Result<String, String>) -> RunRecord {
        let now = now_ms();
        run.finished_at = Some(rfc3339(now));
        run.duration_seconds = Some((now - run.started_ms).max(0) as f64 / 1000.0);
        match outcome {
            Ok(detail) => {
                run.state = RunState::Succeeded;
                run.detail = detail;
            }
            Err(reason) => {
                run.state = RunState::Failed;
                run.detail = reason;
            }
        }
        match run.state {
            RunState::Failed => {
                warn!(run = run.id, kind = ?run.kind, job = ?run.job, agent = ?run.agent, detail = %run.detail, "Backup run failed.")
            }
            _ => {
                info!(run = run.id, kind = ?run.kind, job = ?run.job, agent = ?run.agent, bytes = run.bytes, detail = %run.detail, "Backup run succeeded.")
            }
        }
        {
            let mut log = lock(&self.0.runs);
            if let Some(slot) = log.runs.iter_mut().find(|r| r.id == run.id) {
                *slot = run.clone();
            }
        }
        let this = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let runs = {
                let log = lock(&this.0.runs);
                RunLog {
                    next_id: log.next_id,
                    runs: log.runs.clone(),
                }
            };
            json_file::modify(&this.0.runs_path, "backup runs", |stored: &mut RunLog| {
                *stored = runs;
                Ok::<(), json_file::FileError>(())
            })
        })
        .await;
        if let Ok(Err(error)) = written {
            warn!(%error, "Cannot write the backup run log.");
        }
        run
    }

    async fn backup_run(self, job: Job, agent: String, mut run: RunRecord) {
        let key = (job.spec.name.clone(), agent.clone());
        let outcome = {
            let _reading = self.0.gate.read().await;
            self.backup_transfer(&job, &agent, &mut run).await
        };
        lock(&self.0.running).remove(&key);
        let success = outcome.is_ok();
        let run = self.finish(run, outcome).await;
        if success {
            self.apply_retention(&job, &agent).await;
        }
        self.write_metrics(&job.spec.name, &agent, &run).await;
    }

    async fn backup_transfer(
        &self,
        job: &Job,
        agent: &str,
        run: &mut RunRecord,
    ) -> Result<String, String> {
        let live = self
            .0
            .registry
            .live(agent)
            .ok_or_else(|| format!("{agent} is not connected"))?;
        let (mut send, recv) = live
            .connection
            .open_bi()
            .await
            .map_err(|e| format!("opening a stream to {agent}: {e}"))?;
        let request = TaskRequest::Backup(BackupTask {
            id: run.id,
            job: job.spec.name.clone(),
            source: job.source.clone(),
        });
        write_frame(&mut send, &request).await?;

        let (tx, mut rx) = mpsc::channel(CHANNEL_FRAMES);
        let meta = SnapshotMeta {
            job: job.spec.name.clone(),
            agent: agent.to_owned(),
            source: job.describe_source(),
            started_ms: run.started_ms,
        };
        let this = self.clone();
        let storing = tokio::task::spawn_blocking(move || {
            transfer::store_stream(&this.0.repo, &meta, &mut rx, now_ms)
        });
        let mut frames = Frames::new(recv);
        let received = async {
            loop {
                let message: TaskMessage = frames.next(TASK_IDLE).await?;
                let last = matches!(message, TaskMessage::Done(_) | TaskMessage::Failed { .. });
                if tx.send(message).await.is_err() || last {
                    return Ok::<(), String>(());
                }
            }
        }
        .await;
        drop(tx);
        let stored = storing
            .await
            .map_err(|e| format!("the repository thread failed: {e}"))?;
        let _ = send.finish();
        let snapshot = match (received, stored) {
            (_, Ok(snapshot)) => snapshot,
            (Err(stream), Err(_)) => return Err(stream),
            (_, Err(reason)) => return Err(reason),
        };
        run.snapshot = Some(snapshot.id.clone());
        run.entries = snapshot.entries.len() as u64;
        run.bytes = snapshot.bytes;
        run.added_bytes = snapshot.added_bytes;
        run.skipped = snapshot.skipped;
        lock(&self.0.catalog).push(SnapshotSummary::of(&snapshot));
        {
            let mut usage = lock(&self.0.usage);
            usage.0 += snapshot.added_chunks;
            usage.1 += snapshot.added_bytes;
        }
        let skipped = match snapshot.skipped {
            0 => String::new(),
            1 => format!("; 1 entry could not be read and is not in it ({agent}'s log names it)"),
            n => format!(
                "; {n} entries could not be read and are not in it ({agent}'s log names them)"
            ),
        };
        Ok(format!(
            "snapshot {}: {} entries, {} bytes, {} new chunks ({} bytes stored){skipped}",
            snapshot.id,
            snapshot.entries.len(),
            snapshot.bytes,
            snapshot.added_chunks,
            snapshot.added_bytes
        ))
    }

    /// Forgets what the job's retention lets go on this agent, then prunes unreferenced chunks
    /// (with the gate held for writing, so no backup is mid-way).
    async fn apply_retention(&self, job: &Job, agent: &str) {
        let forget = {
            let catalog = lock(&self.0.catalog);
            let mine: Vec<(&str, i64)> = catalog
                .iter()
                .filter(|s| s.job == job.spec.name && s.agent == agent)
                .map(|s| (s.id.as_str(), s.started_ms))
                .collect();
            jobs::to_forget(&mine, job.retention, now_ms())
        };
        if forget.is_empty() {
            return;
        }
        let _writing = self.0.gate.write().await;
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            for id in &forget {
                this.0.repo.forget(id).map_err(|e| e.to_string())?;
                lock(&this.0.catalog).retain(|s| &s.id != id);
            }
            let pruned = this.0.repo.prune().map_err(|e| e.to_string())?;
            *lock(&this.0.usage) = this.0.repo.usage().map_err(|e| e.to_string())?;
            Ok::<_, String>((forget.len(), pruned))
        })
        .await;
        match result {
            Ok(Ok((forgotten, (chunks, bytes)))) => {
                info!(job = %job.spec.name, agent, forgotten, chunks, bytes, "Retention applied and the repository pruned.");
            }
            Ok(Err(error)) => warn!(job = %job.spec.name, %error, "Retention failed."),
            Err(error) => warn!(job = %job.spec.name, %error, "Retention failed."),
        }
    }

    /// Writes the run's outcome as series, through the store's own writer.
    async fn write_metrics(&self, job: &str, agent: &str, run: &RunRecord) {
        let labels = |name: &str| {
            vec![
                ("__name__".to_owned(), name.to_owned()),
                ("job".to_owned(), job.to_owned()),
                ("host".to_owned(), agent.to_owned()),
            ]
        };
        let ok = run.state == RunState::Succeeded;
        let end = now_ms();
        let mut samples = vec![
            (
                labels("aisemble_backup_last_run_success"),
                if ok { 1.0 } else { 0.0 },
            ),
            (
                labels("aisemble_backup_last_run_timestamp_seconds"),
                end as f64 / 1000.0,
            ),
            (
                labels("aisemble_backup_last_run_duration_seconds"),
                run.duration_seconds.unwrap_or(0.0),
            ),
        ];
        if ok {
            samples.push((
                labels("aisemble_backup_last_success_timestamp_seconds"),
                end as f64 / 1000.0,
            ));
            samples.push((labels("aisemble_backup_last_size_bytes"), run.bytes as f64));
            samples.push((
                labels("aisemble_backup_last_skipped_entries"),
                run.skipped as f64,
            ));
        }
        match self.0.store.write_local(end, &samples).await {
            Ok(pending) => {
                if let Err(error) = pending.wait().await {
                    warn!(%error, "Cannot record the backup's series.");
                }
            }
            Err(error) => warn!(%error, "Cannot record the backup's series."),
        }
    }

    async fn restore_run(self, agent: String, mut run: RunRecord) {
        let outcome = {
            let _reading = self.0.gate.read().await;
            self.restore_transfer(&agent, &mut run).await
        };
        self.finish(run, outcome).await;
    }

    async fn restore_transfer(&self, agent: &str, run: &mut RunRecord) -> Result<String, String> {
        let id = run.snapshot.clone().unwrap_or_default();
        let target = run.target.clone().unwrap_or_default();
        let this = self.clone();
        let snapshot = tokio::task::spawn_blocking(move || {
            let snapshot = this.0.repo.snapshot(&id).map_err(|e| e.to_string())?;
            transfer::verify_snapshot(&this.0.repo, &snapshot)
                .map_err(|e| format!("integrity check failed, the target was not touched: {e}"))?;
            Ok::<_, String>(snapshot)
        })
        .await
        .map_err(|e| e.to_string())??;
        let live = self
            .0
            .registry
            .live(agent)
            .ok_or_else(|| format!("{agent} is not connected; the target was not touched"))?;
        let (mut send, recv) = live
            .connection
            .open_bi()
            .await
            .map_err(|e| format!("opening a stream to {agent}: {e}"))?;
        let files: Vec<_> = snapshot.entries.iter().collect();
        let request = TaskRequest::Restore(RestoreTask {
            id: run.id,
            snapshot: snapshot.id.clone(),
            target: target.clone(),
            entries: files.len() as u64,
            bytes: snapshot.bytes,
        });
        write_frame(&mut send, &request).await?;

        let (tx, mut rx) = mpsc::channel(CHANNEL_FRAMES);
        let this = self.clone();
        let reading = tokio::task::spawn_blocking(move || {
            let _ = transfer::send_snapshot(&this.0.repo, &snapshot, &tx);
        });
        let mut frames = Frames::new(recv);
        // Send until the snapshot is out, unless the agent answers first (it failed early).
        let reply = {
            let sending = async {
                while let Some(message) = rx.recv().await {
                    if write_frame(&mut send, &message).await.is_err() {
                        break;
                    }
                }
                let _ = send.finish();
                std::future::pending::<()>().await;
            };
            tokio::select! {
                reply = frames.next::<TaskMessage>(TASK_IDLE) => reply,
                () = sending => unreachable_pending(),
            }
        };
        drop(rx);
        let _ = reading.await;
        match reply? {
            TaskMessage::Done(summary) => {
                run.entries = summary.entries;
                run.bytes = summary.bytes;
                Ok(format!(
                    "{} entries, {} bytes restored into {target} on {agent}; {} files re-read and verified",
                    summary.entries, summary.bytes, summary.skipped_or_verified
                ))
            }
            TaskMessage::Failed { reason } => Err(format!("{agent}: {reason}")),
            other => Err(format!("unexpected {other:?} from {agent}")),
        }
    }

    async fn check_run(self, read_data: bool, mut run: RunRecord) {
        let outcome = {
            let _reading = self.0.gate.read().await;
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.0.repo.check(read_data))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        };
        let outcome = outcome.and_then(|report: CheckReport| {
            run.entries = report.chunks_read;
            run.bytes = report.bytes_read;
            let summary = format!(
                "{} snapshots, {} chunks{}",
                report.snapshots,
                report.chunks,
                if read_data {
                    format!(", {} read and hashed", report.chunks_read)
                } else {
                    " (present; data not read)".into()
                }
            );
            if report.errors.is_empty() {
                Ok(format!("no errors: {summary}"))
            } else {
                let shown: Vec<&str> = report.errors.iter().take(10).map(String::as_str).collect();
                Err(format!(
                    "{} errors in {summary}: {}",
                    report.errors.len(),
                    shown.join("; ")
                ))
            }
        });
        self.finish(run, outcome).await;
    }
}

/// `sending` never completes (it parks once sent), so its arm cannot be taken.
fn unreachable_pending() -> Result<TaskMessage, String> {
    Err("the restore stream ended".into())
}

async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    message: &T,
) -> Result<(), String> {
    let frame = codec::encode_frame(message, DEFAULT_MAX_FRAME_BYTES).map_err(|e| e.to_string())?;
    send.write_all(&frame)
        .await
        .map_err(|e| format!("sending to the agent: {e}"))
}

/// Decodes frames from an agent's task stream.
struct Frames {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl Frames {
    fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES),
        }
    }

    async fn next<T: serde::de::DeserializeOwned>(&mut self, idle: Duration) -> Result<T, String> {
        loop {
            if let Some(body) = self
                .decoder
                .next_frame()
                .map_err(|e| format!("bad frame from the agent: {e}"))?
            {
                return codec::decode_frame(&body)
                    .map_err(|e| format!("bad frame from the agent: {e}"));
            }
            let chunk = tokio::time::timeout(idle, self.recv.read_chunk(64 << 10, true))
                .await
                .map_err(|_| format!("the agent sent nothing for {}s", idle.as_secs()))?
                .map_err(|e| format!("the agent's stream failed: {e}"))?;
            match chunk {
                Some(chunk) => self.decoder.push(&chunk.bytes),
                None => return Err("the agent's stream ended early".into()),
            }
        }
    }
}
