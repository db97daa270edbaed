//! The agent's settings: `agent.toml` parsed (see `aisemble_shared::config::AgentConfigFile`) and
//! resolved into checked, typed values. Every problem is reported as one line naming the file,
//! the key and the fix.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use aisemble_shared::{
    config::{AgentConfigFile, CollectorKind, ConfigError, parse_toml},
    ids::AgentId,
    metrics::is_valid_label_name,
    wire::Label,
};

/// Where every key of `agent.toml` is documented.
pub const REFERENCE: &str = "agent.example.toml (shipped in the agent/ directory)";

/// Default config path.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/aisemble/agent.toml";

/// Shortest collection interval: CPU usage needs 200 ms between readings.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Smallest journal cap: a few records.
const MIN_BUFFER_BYTES: u64 = 64 << 10;

/// Resolved agent settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Agent name; equals the certificate's name.
    pub name: AgentId,
    /// Journal and state directory.
    pub data_dir: PathBuf,
    /// Static labels reported in Hello.
    pub labels: Vec<Label>,
    /// `HOST:PORT` of the control plane.
    pub address: String,
    /// Name verified in the server certificate.
    pub server_name: String,
    /// CA, certificate and key files.
    pub tls: crate::tls::TlsFiles,
    /// Collection interval.
    pub interval: Duration,
    /// Collectors to run.
    pub collectors: Vec<CollectorKind>,
    /// Journal cap in bytes.
    pub max_buffer_bytes: u64,
    /// Health checks.
    pub checks: Vec<crate::checks::CheckSpec>,
    /// Local Prometheus endpoints to scrape.
    pub scrapes: Vec<crate::scrape::ScrapeSpec>,
    /// The push endpoint, when enabled.
    pub push: Option<crate::push::PushSettings>,
    /// Log files to tail.
    pub logs: Vec<crate::logs::LogFileSpec>,
}

impl Settings {
    /// Reads, parses and checks a config file, including the certificate files it names.
    ///
    /// # Errors
    /// Any problem, as one line naming the file, the key and the fix.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(
                path,
                None,
                format!("cannot read the config file: {error}"),
                format!("pass --config FILE, or create it from {REFERENCE}"),
            )
        })?;
        let file: AgentConfigFile = parse_toml(path, &text, REFERENCE)?;
        Self::resolve(path, file)
    }

    /// Checks a parsed file. Relative paths in it are relative to the file's directory.
    ///
    /// # Errors
    /// Any problem, as one line naming the file, the key and the fix.
    pub fn resolve(path: &Path, file: AgentConfigFile) -> Result<Self, ConfigError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let absolute = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let error = |key: &str, message: String, hint: &str| {
            ConfigError::new(path, Some(key), message, hint)
        };

        let address = file.control_plane.address.trim().to_owned();
        let host = split_host_port(&address).ok_or_else(|| {
            error(
                "control_plane.address",
                format!("{address:?} is not HOST:PORT"),
                "write it like \"cp.example.com:7443\" or \"[::1]:7443\"",
            )
        })?;
        let server_name = file
            .control_plane
            .server_name
            .clone()
            .unwrap_or_else(|| host.to_owned());

        let interval = file.collect.interval.0;
        if interval < MIN_INTERVAL {
            return Err(error(
                "collect.interval",
                format!(
                    "{} is shorter than the minimum of 200ms",
                    file.collect.interval
                ),
                "CPU usage needs 200ms between readings; raise the interval",
            ));
        }
        if file.buffer.max_bytes.0 < MIN_BUFFER_BYTES {
            return Err(error(
                "buffer.max_bytes",
                format!(
                    "{} is smaller than the minimum of 64KiB",
                    file.buffer.max_bytes
                ),
                "raise it; the default is \"512MiB\"",
            ));
        }
        let mut labels = Vec::with_capacity(file.agent.labels.len());
        for (name, value) in &file.agent.labels {
            if !is_valid_label_name(name) || name == aisemble_shared::metrics::HOST_LABEL {
                return Err(error(
                    &format!("agent.labels.{name}"),
                    "is not a valid label name (letters, digits and '_', not starting with a digit or '__', not `host`)".into(),
                    "rename the label",
                ));
            }
            labels.push(Label::new(name, value));
        }

        let tls = crate::tls::TlsFiles {
            ca: absolute(&file.control_plane.ca),
            cert: absolute(&file.control_plane.cert),
            key: absolute(&file.control_plane.key),
        };
        let cert_name = crate::tls::certificate_name(&tls.cert).map_err(|message| {
            error(
                "control_plane.cert",
                message,
                "point it at the agent.pem written by `aisemble-cp certs issue-agent`",
            )
        })?;
        for (key, file) in [
            ("control_plane.ca", &tls.ca),
            ("control_plane.key", &tls.key),
        ] {
            if let Err(io) = std::fs::File::open(file) {
                return Err(error(
                    key,
                    format!("cannot read {}: {io}", file.display()),
                    "point it at the file written by `aisemble-cp certs issue-agent`",
                ));
            }
        }
        let name = match &file.agent.name {
            None => cert_name,
            Some(name) => {
                let name = AgentId::parse(name).map_err(|e| {
                    error(
                        "agent.name",
                        e.to_string(),
                        "use the name given to `certs issue-agent`",
                    )
                })?;
                if name != cert_name {
                    return Err(error(
                        "agent.name",
                        format!("{name:?} differs from the name in the certificate, {cert_name:?}"),
                        "remove agent.name (it defaults to the certificate's name) or issue a certificate for this name",
                    ));
                }
                name
            }
        };

        let checks = each_once(
            path,
            "checks",
            &file.checks,
            |c| &c.name,
            |check| crate::checks::CheckSpec::from_config(path, check, interval),
        )?;
        let scrapes = each_once(
            path,
            "scrape",
            &file.scrape,
            |s| &s.name,
            |scrape| crate::scrape::ScrapeSpec::from_config(path, scrape, interval),
        )?;
        let push = crate::push::PushSettings::from_config(path, &file.push)?;
        let logs = crate::logs::LogFileSpec::resolve_all(path, &file.logs)?;

        Ok(Self {
            checks,
            scrapes,
            push,
            logs,
            name,
            data_dir: absolute(&file.agent.data_dir),
            labels,
            address,
            server_name,
            tls,
            interval,
            collectors: file.collect.collectors,
            max_buffer_bytes: file.buffer.max_bytes.0,
        })
    }

    /// Path of the journal database.
    pub fn journal_path(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    /// Path of the status file `aisemble-agent status` reads.
    pub fn status_path(&self) -> PathBuf {
        self.data_dir.join("status.json")
    }

    /// Path of the file that keeps the positions reached in each `[[logs]]` file.
    pub fn log_positions_path(&self) -> PathBuf {
        self.data_dir.join("log-positions.json")
    }

    /// Path of the file that keeps the last monitoring state the control plane set, so that a
    /// paused agent starts paused (before it can reach the control plane).
    pub fn monitoring_path(&self) -> PathBuf {
        self.data_dir.join("monitoring")
    }
}

/// The host part of `HOST:PORT` (brackets removed for IPv6), if the port is valid.
pub fn split_host_port(address: &str) -> Option<&str> {
    let (host, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// Resolves each `[[section]]` entry in order, refusing a name used twice
/// (`section.NAME: is defined twice`).
fn each_once<E, S>(
    path: &Path,
    section: &str,
    entries: &[E],
    name: impl Fn(&E) -> &String,
    mut resolve: impl FnMut(&E) -> Result<S, ConfigError>,
) -> Result<Vec<S>, ConfigError> {
    let mut seen: Vec<&str> = Vec::with_capacity(entries.len());
    let mut resolved = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry_name = name(entry).as_str();
        if seen.contains(&entry_name) {
            return Err(ConfigError::new(
                path,
                Some(&format!("{section}.{entry_name}")),
                "is defined twice",
                format!("give each [[{section}]] entry its own name"),
            ));
        }
        seen.push(entry_name);
        resolved.push(resolve(entry)?);
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_port() {
        assert_eq!(
            split_host_port("cp.example.com:7443"),
            Some("cp.example.com")
        );
        assert_eq!(split_host_port("[::1]:7443"), Some("::1"));
        assert_eq!(split_host_port("127.0.0.1:1"), Some("127.0.0.1"));
        assert_eq!(split_host_port("cp.example.com"), None);
        assert_eq!(split_host_port(":7443"), None);
        assert_eq!(split_host_port("cp:99999"), None);
    }
}
