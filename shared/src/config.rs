//! Config files both sides read or write, and the one-line error reporting both binaries use.
//!
//! [`AgentConfigFile`] is the raw `agent.toml` (the agent reads it; the control plane writes one in
//! `certs issue-agent`). Every key has a documented default except `control_plane.address`.
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, de::DeserializeOwned};

use crate::units::{ByteSize, HumanDuration};

/// A config file that cannot be used, rendered as one line: `file:line:column: key: problem; fix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line and column of the offending text, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted key (`collect.interval`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// An error about a whole file or a key without a position.
    pub fn new(
        path: &Path,
        key: Option<&str>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            path: path.to_owned(),
            position: None,
            key: key.map(str::to_owned),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Parses TOML text into `T`, turning any error into a one-line [`ConfigError`] naming the file,
/// position and dotted key. `reference` names where every key is documented.
///
/// # Errors
/// When the text is not valid TOML or does not match `T`.
pub fn parse_toml<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    reference: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|error| {
        let message = error.message().trim().replace('\n', " ");
        let span = error.span();
        let position = span.as_ref().map(|s| line_column(text, s.start));
        let key = span.as_ref().and_then(|s| key_at(text, s.start, &message));
        let hint = if message.starts_with("unknown field") {
            format!("remove it or fix its spelling; every key is documented in {reference}")
        } else if message.starts_with("missing field") {
            format!("add it; see {reference}")
        } else {
            format!("see {reference}")
        };
        ConfigError {
            path: path.to_owned(),
            position,
            key,
            message,
            hint,
        }
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The dotted key at `offset`: the enclosing `[table]` plus the key on that line, if any.
fn key_at(text: &str, offset: usize, message: &str) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].split('\n').next().unwrap_or("");
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let trimmed = line.trim();
    let key = if trimmed.starts_with('[') {
        // The error is about the table itself (for instance, a missing field in it).
        let name = trimmed
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        return Some(match missing {
            Some(field) => format!("{name}.{field}"),
            None => name,
        });
    } else {
        trimmed
            .split('=')
            .next()
            .map(str::trim)
            .filter(|k| !k.is_empty())?
            .to_owned()
    };
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key,
    })
}

/// The raw `agent.toml`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfigFile {
    /// Who this agent is and where it keeps state.
    #[serde(default)]
    pub agent: AgentSection,
    /// Where to send telemetry, and the credentials. Required.
    pub control_plane: ControlPlaneSection,
    /// What to collect and how often.
    #[serde(default)]
    pub collect: CollectSection,
    /// The on-disk journal.
    #[serde(default)]
    pub buffer: BufferSection,
    /// Health checks (`[[checks]]`). Default none.
    #[serde(default)]
    pub checks: Vec<CheckConfig>,
    /// Local Prometheus endpoints to scrape (`[[scrape]]`). Default none.
    #[serde(default)]
    pub scrape: Vec<ScrapeConfig>,
    /// The local push endpoint for application events. Default: off.
    #[serde(default)]
    pub push: PushSection,
    /// Log files to tail (`[[logs]]`). Default none.
    #[serde(default)]
    pub logs: Vec<LogFileConfig>,
}

/// One `[[logs]]` entry: a log file the agent tails (across rotation) and journals line by line.
#[derive(Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LogFileConfig {
    /// The file (one file; no globs). Relative paths are relative to the config file. Required.
    pub path: PathBuf,
    /// The `service` of its lines (a JSON line's own `service` field wins). Required.
    pub service: String,
    /// How lines are read: `plain` (level guessed from a leading level word) or `json` (one
    /// object per line; a line that is not JSON is kept as plain text). Default `plain`.
    #[serde(default)]
    pub format: LogFormat,
    /// Where to begin in a file present at startup without a saved position: `end` (only lines
    /// written from now on) or `beginning`. Files that appear later, and files replaced by
    /// rotation, are read from their beginning. Default `end`.
    #[serde(default)]
    pub start_at: StartAt,
}

/// `logs.format`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Plain text lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// `logs.start_at`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StartAt {
    /// Skip what the file already holds.
    #[default]
    End,
    /// Read the file from its first byte.
    Beginning,
}

/// One `[[checks]]` entry. Which keys apply depends on `kind`; the agent refuses keys that do not
/// apply to the kind and names the missing ones.
#[derive(Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Unique name; the `check` label. Required.
    pub name: String,
    /// `http`, `tcp`, `postgres`, `redis` or `exec`. Required.
    pub kind: String,
    /// How often to run. Default: `collect.interval`.
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// How long a run may take before it counts as failed. Default `"5s"`, at most the interval.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Extra labels on the check's series (`service = "api"`). Default none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `http`: the URL; `postgres`: a connection URL (`postgres://user@host:5432/db`); `redis`: a
    /// `redis://host:port` URL.
    #[serde(default)]
    pub url: Option<String>,
    /// `http`: method. Default `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// `http`: the status that means up. Default: any 2xx.
    #[serde(default)]
    pub expected_status: Option<u16>,
    /// `http`: a substring the body must contain. Default: not checked.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// `http`: extra CA certificate (PEM) to trust for https. Default: the system roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `tcp`: `HOST:PORT` to connect to.
    #[serde(default)]
    pub address: Option<String>,
    /// `exec`: program and arguments, run without a shell (`["pg_isready", "-h", "db"]`).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// `exec`: run `command` (one string) through `/bin/sh -c`. Default false.
    #[serde(default)]
    pub shell: bool,
}

/// One `[[scrape]]` entry: a local Prometheus text endpoint (an inference server's `/metrics`).
#[derive(Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Unique name; the `target` label of the scrape's own series. Required.
    pub name: String,
    /// `http://127.0.0.1:8000/metrics`. Required.
    pub url: String,
    /// How often to scrape. Default: `collect.interval`.
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// Scrape timeout. Default `"5s"`, at most the interval.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Built-in mapping: `vllm`, `tgi`, `triton` or `none`. Default `none`.
    #[serde(default)]
    pub preset: Option<String>,
    /// Metrics no mapping matches: `drop` or `prefix` (kept, renamed with `prefix`). Default `drop`.
    #[serde(default)]
    pub unmapped: Option<String>,
    /// Prefix for passed-through metrics. Default `"aisemble_scraped_"`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Labels added to every scraped series (`model = "llama-3"` for servers that do not say).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra mappings, tried before the preset's.
    #[serde(default)]
    pub map: Vec<MappingConfig>,
}

/// One `[[scrape.map]]` rule: rename a scraped metric family and its labels.
#[derive(Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Source family name as exposed (for histograms, without `_bucket`/`_sum`/`_count`).
    pub from: String,
    /// Target family name.
    pub to: String,
    /// Source label → target label renames (`model_name = "model"`). Labels not listed are kept.
    #[serde(default)]
    pub rename_labels: BTreeMap<String, String>,
    /// Source labels to drop (series that then coincide are summed).
    #[serde(default)]
    pub drop_labels: Vec<String>,
    /// Labels to add (`outcome = "success"`).
    #[serde(default)]
    pub add_labels: BTreeMap<String, String>,
    /// Multiply values by this (`0.000001` turns microseconds into seconds). Default 1.
    #[serde(default)]
    pub scale: Option<f64>,
}

/// `[push]`: where applications report inference and request events.
#[derive(Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PushSection {
    /// Loopback HTTP address (`127.0.0.1:9465`) for `POST /v1/events`. Default: off.
    #[serde(default)]
    pub listen: Option<String>,
    /// Unix socket path for newline-delimited JSON events. Default: off.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Most distinct (model, provider) and service keys kept; events for new keys beyond it are
    /// refused. Default 1000.
    #[serde(default)]
    pub max_keys: Option<usize>,
    /// Largest accepted HTTP body. Default `"4MiB"`.
    #[serde(default)]
    pub max_body: Option<ByteSize>,
}

/// `[agent]`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Agent name; must equal the name in the certificate. Default: the host name.
    #[serde(default)]
    pub name: Option<String>,
    /// Journal and state directory. Default `/var/lib/aisemble`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Static labels reported to the control plane. Default none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            name: None,
            data_dir: default_data_dir(),
            labels: BTreeMap::new(),
        }
    }
}

/// `[control_plane]`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneSection {
    /// `HOST:PORT` of the control plane's QUIC endpoint. Required.
    pub address: String,
    /// Name to verify in the server certificate. Default: the host part of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// CA certificate (PEM). Default `/etc/aisemble/ca.pem`.
    #[serde(default = "default_ca")]
    pub ca: PathBuf,
    /// This agent's certificate (PEM). Default `/etc/aisemble/agent.pem`.
    #[serde(default = "default_cert")]
    pub cert: PathBuf,
    /// This agent's private key (PEM, mode 0600). Default `/etc/aisemble/agent.key`.
    #[serde(default = "default_key")]
    pub key: PathBuf,
}

/// `[collect]`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectSection {
    /// Collection interval. Default `"10s"`.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// System collectors to run. Default: all of them.
    #[serde(default = "CollectorKind::all")]
    pub collectors: Vec<CollectorKind>,
}

impl Default for CollectSection {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            collectors: CollectorKind::all(),
        }
    }
}

/// A system collector.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CollectorKind {
    /// CPU busy %.
    Cpu,
    /// Memory and swap.
    Memory,
    /// Filesystem usage per mount.
    Disk,
    /// Bytes, packets, errors per interface.
    Network,
    /// Load averages.
    Load,
    /// Uptime.
    Uptime,
    /// Process count.
    Processes,
    /// TCP connections by state.
    Tcp,
}

impl CollectorKind {
    /// Every collector.
    pub fn all() -> Vec<Self> {
        vec![
            Self::Cpu,
            Self::Memory,
            Self::Disk,
            Self::Network,
            Self::Load,
            Self::Uptime,
            Self::Processes,
            Self::Tcp,
        ]
    }
}

/// `[buffer]`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BufferSection {
    /// Journal cap; when reached the oldest records are evicted and counted. Default `"512MiB"`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
}

impl Default for BufferSection {
    fn default() -> Self {
        Self {
            max_bytes: default_max_bytes(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/aisemble")
}
fn default_ca() -> PathBuf {
    PathBuf::from("/etc/aisemble/ca.pem")
}
fn default_cert() -> PathBuf {
    PathBuf::from("/etc/aisemble/agent.pem")
}
fn default_key() -> PathBuf {
    PathBuf::from("/etc/aisemble/agent.key")
}
fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_max_bytes() -> ByteSize {
    ByteSize(512 << 20)
}

/// Quotes a string as a TOML basic string, for writing config files.
pub fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The text of an `agent.toml` pointing at `ca.pem`, `agent.pem` and `agent.key` beside it, as
/// `aisemble-cp certs issue-agent` and `aisemble-agent enroll` (`writer`) write it.
pub fn agent_toml(
    writer: &str,
    name: &str,
    address: &str,
    server_name: Option<&str>,
    data_dir: Option<&str>,
    interval: Option<&str>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Ai-semble Ops agent for {name}, written by {writer}."
    );
    let _ = writeln!(
        out,
        "# Every key is documented in agent/agent.example.toml. Relative paths are relative to this file."
    );
    let _ = writeln!(out, "\n[agent]\nname = {}", toml_string(name));
    if let Some(dir) = data_dir {
        let _ = writeln!(out, "data_dir = {}", toml_string(dir));
    }
    let _ = writeln!(out, "\n[control_plane]\naddress = {}", toml_string(address));
    if let Some(server_name) = server_name {
        let _ = writeln!(out, "server_name = {}", toml_string(server_name));
    }
    let _ = writeln!(
        out,
        "ca = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\""
    );
    if let Some(interval) = interval {
        let _ = writeln!(out, "\n[collect]\ninterval = {}", toml_string(interval));
    }
    out
}

#[cfg(test)]
mod tests;
