//! The agent registry: every agent ever seen (persisted in sled) and the live session of each
//! connected one (its connection, for revocation and supersession, and its command channel).
//!
//! Identity is the certificate's name; what an agent says in Hello (host name, labels, version)
//! is recorded but never replaces it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard, PoisonError},
};

use aisemble_shared::wire::{BufferStats, Command, Hello, MonitoringState};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::now_ms;

/// What the registry remembers about an agent. Persisted as JSON in the `agents` tree (an
/// internal format, kept readable for debugging).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AgentRecord {
    /// Certificate name.
    pub name: String,
    /// First connection (ms since the Unix epoch).
    pub first_seen_ms: i64,
    /// Last Hello, batch or status (ms since the Unix epoch).
    pub last_seen_ms: i64,
    /// Agent version from Hello.
    pub version: String,
    /// Host name from Hello (informational).
    pub hostname: String,
    /// Static labels from Hello.
    pub labels: BTreeMap<String, String>,
    /// Journal depth and evictions, as last reported.
    pub buffer: BufferRecord,
    /// The agent's journal id.
    pub journal_id: u64,
    /// Whether the agent should collect.
    pub monitoring: MonitoringRecord,
    /// Serial of the certificate last used (hex).
    pub certificate_serial: String,
}

/// Journal state as last reported.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferRecord {
    /// Records not yet acknowledged.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Records evicted unsent, ever.
    pub dropped_records: u64,
}

/// Persisted monitoring state.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MonitoringRecord {
    /// Collecting.
    #[default]
    Running,
    /// Paused by an operator.
    Paused,
}

impl From<MonitoringRecord> for MonitoringState {
    fn from(record: MonitoringRecord) -> Self {
        match record {
            MonitoringRecord::Running => Self::Running,
            MonitoringRecord::Paused => Self::Paused,
        }
    }
}

impl From<BufferStats> for BufferRecord {
    fn from(stats: BufferStats) -> Self {
        Self {
            records: stats.records,
            bytes: stats.bytes,
            dropped_records: stats.dropped_records,
        }
    }
}

/// A live session's handles.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// Distinguishes sessions of the same agent.
    pub generation: u64,
    /// Certificate serial (big-endian bytes).
    pub serial: Vec<u8>,
    /// The QUIC connection.
    pub connection: quinn::Connection,
    /// Commands to send down.
    pub commands: mpsc::Sender<Command>,
    /// Cancelled when the session task has finished (its last commit is acknowledged or failed).
    pub finished: CancellationToken,
    /// When it connected.
    pub connected_since_ms: i64,
}

/// An agent as the API shows it.
#[derive(Debug, Clone)]
pub struct AgentView {
    /// Persisted record.
    pub record: AgentRecord,
    /// Connected now.
    pub connected: bool,
    /// Since when (ms), if connected.
    pub connected_since_ms: Option<i64>,
    /// Remote address, if connected.
    pub remote: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    agents: BTreeMap<String, AgentRecord>,
    dirty: Vec<String>,
    /// Forgotten agents whose records are still to be removed from the tree.
    forgotten: Vec<String>,
    live: HashMap<String, LiveSession>,
    next_generation: u64,
}

/// Why an agent cannot be forgotten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgetError {
    /// No agent of that name was ever seen.
    #[error("no agent named {0:?}")]
    Unknown(String),
    /// The agent is connected: it would be registered again at once.
    #[error(
        "agent {0:?} is connected; stop it, or revoke its certificate (POST /ops/agents/{0}/revoke), first"
    )]
    Connected(String),
}

/// Every agent, persisted and live.
#[derive(Debug)]
pub struct Registry {
    tree: sled::Tree,
    state: Mutex<State>,
    /// One [`Registry::persist`] at a time, so a removal is never overtaken by an older write of
    /// the same record.
    persisting: Mutex<()>,
}

impl Registry {
    /// Loads the registry from its tree. Blocking.
    ///
    /// # Errors
    /// When sled fails; undecodable records are skipped with a warning.
    pub fn open(tree: sled::Tree) -> Result<Self, sled::Error> {
        let mut agents = BTreeMap::new();
        for entry in tree.iter() {
            let (key, value) = entry?;
            match serde_json::from_slice::<AgentRecord>(&value) {
                Ok(record) => {
                    agents.insert(record.name.clone(), record);
                }
                Err(error) => {
                    warn!(key = %String::from_utf8_lossy(&key), %error, "Skipping an undecodable agent record.")
                }
            }
        }
        Ok(Self {
            tree,
            state: Mutex::new(State {
                agents,
                ..State::default()
            }),
            persisting: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new live session; returns its generation and the session it supersedes.
    pub fn connect(
        &self,
        name: &str,
        session: impl FnOnce(u64) -> LiveSession,
    ) -> (u64, Option<LiveSession>) {
        let mut state = self.lock();
        state.next_generation += 1;
        let generation = state.next_generation;
        let previous = state.live.insert(name.to_owned(), session(generation));
        (generation, previous)
    }

    /// Removes a live session if it is still the current one.
    pub fn disconnect(&self, name: &str, generation: u64) {
        let mut state = self.lock();
        if state
            .live
            .get(name)
            .is_some_and(|s| s.generation == generation)
        {
            state.live.remove(name);
        }
    }

    /// Records a Hello; returns the agent's monitoring state.
    pub fn hello(&self, name: &str, hello: &Hello, serial_hex: &str) -> MonitoringState {
        let now = now_ms();
        let mut state = self.lock();
        let record = state
            .agents
            .entry(name.to_owned())
            .or_insert_with(|| AgentRecord {
                name: name.to_owned(),
                first_seen_ms: now,
                last_seen_ms: now,
                version: String::new(),
                hostname: String::new(),
                labels: BTreeMap::new(),
                buffer: BufferRecord::default(),
                journal_id: 0,
                monitoring: MonitoringRecord::Running,
                certificate_serial: String::new(),
            });
        record.last_seen_ms = now;
        record.version.clone_from(&hello.agent_version);
        record.hostname.clone_from(&hello.hostname);
        record.labels = hello
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        record.buffer = hello.buffer.into();
        record.journal_id = hello.journal_id;
        serial_hex.clone_into(&mut record.certificate_serial);
        let monitoring = record.monitoring.into();
        state.dirty.push(name.to_owned());
        monitoring
    }

    /// Records activity and the journal state an agent reported.
    pub fn seen(&self, name: &str, buffer: BufferStats) {
        let mut state = self.lock();
        if let Some(record) = state.agents.get_mut(name) {
            record.last_seen_ms = now_ms();
            record.buffer = buffer.into();
            state.dirty.push(name.to_owned());
        }
    }

    /// Sets the monitoring state of agents (all when `names` is empty) and sends the command to
    /// the connected ones; returns the names affected.
    pub fn set_monitoring(&self, names: &[String], paused: bool, command_id: u64) -> Vec<String> {
        let action = if paused {
            aisemble_shared::wire::Action::PauseMonitoring
        } else {
            aisemble_shared::wire::Action::ResumeMonitoring
        };
        let mut state = self.lock();
        let targets: Vec<String> = if names.is_empty() {
            state.agents.keys().cloned().collect()
        } else {
            names
                .iter()
                .filter(|n| state.agents.contains_key(*n))
                .cloned()
                .collect()
        };
        for name in &targets {
            if let Some(record) = state.agents.get_mut(name) {
                record.monitoring = if paused {
                    MonitoringRecord::Paused
                } else {
                    MonitoringRecord::Running
                };
            }
            if let Some(live) = state.live.get(name) {
                // A full channel means the session is stuck; the state still applies at its next
                // Welcome.
                let _ = live.commands.try_send(Command {
                    id: command_id,
                    action: action.clone(),
                });
            }
        }
        state.dirty.extend(targets.iter().cloned());
        targets
    }

    /// Live sessions whose certificate serial satisfies `revoked`.
    pub fn sessions_matching(&self, revoked: impl Fn(&[u8]) -> bool) -> Vec<(String, LiveSession)> {
        self.lock()
            .live
            .iter()
            .filter(|(_, s)| revoked(&s.serial))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }

    /// Every live session.
    pub fn live_sessions(&self) -> Vec<LiveSession> {
        self.lock().live.values().cloned().collect()
    }

    /// Connected agents.
    pub fn connected_count(&self) -> usize {
        self.lock().live.len()
    }

    /// How many agents are connected, and how many there are (what [`Registry::list`] would
    /// show, without copying every record).
    pub fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        let connected = state
            .agents
            .keys()
            .filter(|name| state.live.contains_key(*name))
            .count();
        (connected, state.agents.len())
    }

    /// Forgets a disconnected agent (a host taken out of the fleet): it leaves the inventory and
    /// the fleet's health, its stored series stay until retention, and it is registered anew if it
    /// ever connects again. Removed from disk by the next [`Registry::persist`].
    ///
    /// # Errors
    /// When the agent is unknown or connected.
    pub fn forget(&self, name: &str) -> Result<AgentRecord, ForgetError> {
        let mut state = self.lock();
        if state.live.contains_key(name) {
            return Err(ForgetError::Connected(name.to_owned()));
        }
        let record = state
            .agents
            .remove(name)
            .ok_or_else(|| ForgetError::Unknown(name.to_owned()))?;
        state.forgotten.push(name.to_owned());
        Ok(record)
    }

    /// The live session of one agent, if connected.
    pub fn live(&self, name: &str) -> Option<LiveSession> {
        self.lock().live.get(name).cloned()
    }

    /// Every agent.
    pub fn list(&self) -> Vec<AgentView> {
        let state = self.lock();
        state
            .agents
            .values()
            .map(|record| view(&state, record))
            .collect()
    }

    /// One agent.
    pub fn get(&self, name: &str) -> Option<AgentView> {
        let state = self.lock();
        state.agents.get(name).map(|record| view(&state, record))
    }

    /// Writes changed records. Blocking.
    ///
    /// # Errors
    /// When sled fails; the records stay dirty for the next attempt.
    pub fn persist(&self) -> Result<usize, sled::Error> {
        let _one_at_a_time = self
            .persisting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (dirty, forgotten, records) = {
            let mut state = self.lock();
            let forgotten = std::mem::take(&mut state.forgotten);
            let mut dirty = std::mem::take(&mut state.dirty);
            dirty.sort();
            dirty.dedup();
            let records: Vec<(String, Vec<u8>)> = dirty
                .iter()
                .filter_map(|n| state.agents.get(n))
                .filter_map(|r| {
                    serde_json::to_vec(r)
                        .ok()
                        .map(|json| (r.name.clone(), json))
                })
                .collect();
            (dirty, forgotten, records)
        };
        let mut batch = sled::Batch::default();
        for name in &forgotten {
            batch.remove(name.as_bytes());
        }
        for (name, json) in &records {
            batch.insert(name.as_bytes(), json.as_slice());
        }
        if let Err(error) = self.tree.apply_batch(batch) {
            let mut state = self.lock();
            state.dirty.extend(dirty);
            state.forgotten.extend(forgotten);
            return Err(error);
        }
        Ok(records.len())
    }
}

fn view(state: &State, record: &AgentRecord) -> AgentView {
    let live = state.live.get(&record.name);
    AgentView {
        record: record.clone(),
        connected: live.is_some(),
        connected_since_ms: live.map(|l| l.connected_since_ms),
        remote: live.map(|l| l.connection.remote_address().to_string()),
    }
}

#[cfg(test)]
mod tests;
