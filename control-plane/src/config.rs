//! The control plane's settings: built-in defaults, overridden by the config file, overridden by
//! command-line flags. Every key is documented in `control-plane/control-plane.example.toml`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use aisemble_shared::{
    config::{ConfigError, parse_toml},
    units::{ByteSize, HumanDuration},
};
use serde::Deserialize;

use crate::logs::LogRetention;

/// Where every key is documented.
pub const REFERENCE: &str = "control-plane.example.toml (shipped in the control-plane/ directory)";

/// The raw config file.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Addresses and state.
    #[serde(default)]
    pub server: ServerSection,
    /// Time-series storage.
    #[serde(default)]
    pub storage: StorageSection,
    /// Log lines and the audit log.
    #[serde(default)]
    pub logs: LogsSection,
    /// Agent connections.
    #[serde(default)]
    pub ingest: IngestSection,
    /// HTTP API.
    #[serde(default)]
    pub http: HttpSection,
    /// Alert rules, routing and notifications.
    #[serde(default)]
    pub alerting: AlertingSection,
    /// Backups.
    #[serde(default)]
    pub backups: BackupsSection,
}

/// `[backups]`.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupsSection {
    /// The repository directory (default `<data_dir>/backups`).
    pub repository: Option<PathBuf>,
}

/// `[alerting]`.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertingSection {
    /// Directory of Prometheus rule files (`*.yml`, `*.yaml`), editable through
    /// `PUT /ops/alerts/rules`. Default `<data_dir>/rules`, created with the default rules.
    pub rules_dir: Option<PathBuf>,
    /// More rule files (paths or `dir/*.yml` globs), read-only. Default none.
    pub rule_files: Option<Vec<String>>,
    /// How often rule groups without their own `interval` are evaluated. Default `"1s"`.
    pub evaluation_interval: Option<HumanDuration>,
    /// An Alertmanager configuration file (`route`, `receivers`, `inhibit_rules`) for routing
    /// and notifications. Default: none (alerts are only shown, critical inhibits warning).
    pub alertmanager_config: Option<PathBuf>,
    /// The URL notifications link to. Default `http://<server.http>`.
    pub external_url: Option<String>,
    /// Labels for templates (`$externalLabels`). Default none.
    pub external_labels: Option<std::collections::BTreeMap<String, String>>,
    /// How long one notification is retried (exponential backoff) before it counts as failed.
    /// Default `"2m"`.
    pub notification_retry_for: Option<HumanDuration>,
    /// Consecutive failed notifications that open an integration's circuit breaker. Default 5.
    pub circuit_breaker_threshold: Option<u32>,
    /// How long an open breaker refuses before letting one trial through. Default `"60s"`.
    pub circuit_breaker_open_for: Option<HumanDuration>,
}

/// `[server]`.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// State directory. Default `./aisemble-data`.
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address. Default `127.0.0.1:8080`.
    pub http: Option<String>,
    /// QUIC listen address. Default `0.0.0.0:7443`.
    pub quic: Option<String>,
    /// Names (DNS or IP) agents use to reach this server, put in its certificate besides
    /// localhost, 127.0.0.1 and ::1. Default: this host's name.
    pub server_names: Option<Vec<String>>,
    /// `HOST:PORT` written into the `agent.toml` of `certs issue-agent`. Default: the first
    /// server name and the QUIC port.
    pub public_address: Option<String>,
}

/// `[storage]`.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// How long samples are kept. Default `"15d"`.
    pub retention: Option<HumanDuration>,
    /// How often in-memory data is written to the chunk trees. Default `"60s"`.
    pub checkpoint_interval: Option<HumanDuration>,
    /// sled page cache. Default `"64MiB"`.
    pub cache: Option<ByteSize>,
}

/// `[logs]`: how long log lines and audit entries are kept (SPEC §8's retention classes).
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Lines below `error`. Default `"30d"`.
    pub retention_general: Option<HumanDuration>,
    /// `error` and `critical` lines. Default `"30d"`.
    pub retention_error: Option<HumanDuration>,
    /// The audit log. Default `"90d"`.
    pub retention_audit: Option<HumanDuration>,
}

/// `[ingest]`.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Largest frame accepted from an agent. Default `"8MiB"`.
    pub max_frame_bytes: Option<ByteSize>,
}

/// `[http]`: the HTTP API.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Require a viewer token for `/metrics`. Default `false`.
    pub metrics_require_token: Option<bool>,
    /// Requests per second each API token may make, on average. 0 turns limits off. Default 50.
    pub rate_limit_per_second: Option<u32>,
    /// Requests a token may make at once above the average rate. Default 100.
    pub rate_limit_burst: Option<u32>,
    /// Serve the API over HTTPS. Default `false`.
    pub tls: Option<bool>,
    /// Certificate chain (PEM) for HTTPS. Default: the control plane's own server certificate
    /// (`<data_dir>/pki`, signed by its CA, the one agents trust).
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`. Required with `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

/// How the HTTP API is served.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HttpTls {
    /// Plain HTTP.
    #[default]
    Off,
    /// HTTPS with the control plane's own server certificate.
    OwnCertificate,
    /// HTTPS with these PEM files.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
}

/// Flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--http`.
    pub http: Option<String>,
    /// `--quic`.
    pub quic: Option<String>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// State directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// QUIC listen address.
    pub quic: SocketAddr,
    /// Names for the server certificate.
    pub server_names: Vec<String>,
    /// Address written into issued agent configs.
    pub public_address: String,
    /// Sample retention.
    pub retention: Duration,
    /// Log and audit retention.
    pub log_retention: LogRetention,
    /// Backup repository directory.
    pub backup_repository: PathBuf,
    /// Checkpoint interval.
    pub checkpoint_interval: Duration,
    /// sled cache.
    pub cache_bytes: u64,
    /// Largest frame.
    pub max_frame_bytes: u32,
    /// Token required for `/metrics`.
    pub metrics_require_token: bool,
    /// Average requests per second per API token (0: unlimited).
    pub rate_limit_per_second: u32,
    /// Burst per API token.
    pub rate_limit_burst: u32,
    /// HTTPS or not.
    pub http_tls: HttpTls,
    /// Alerting.
    pub alerting: AlertingSettings,
}

/// Resolved `[alerting]`.
#[derive(Debug, Clone)]
pub struct AlertingSettings {
    /// Editable rule directory.
    pub rules_dir: PathBuf,
    /// Read-only rule files and globs.
    pub rule_files: Vec<PathBuf>,
    /// Default group interval.
    pub evaluation_interval: Duration,
    /// Alertmanager-format routing config.
    pub alertmanager_config: Option<PathBuf>,
    /// Link target of notifications; `None`: `http://` and the bound HTTP address.
    pub external_url: Option<String>,
    /// Template labels.
    pub external_labels: std::collections::BTreeMap<String, String>,
    /// Retry budget of one notification.
    pub notification_retry_for: Duration,
    /// Failures that open a breaker.
    pub circuit_breaker_threshold: u32,
    /// How long a breaker stays open.
    pub circuit_breaker_open_for: Duration,
}

impl Settings {
    /// Defaults, then the file (if any), then the flags.
    ///
    /// # Errors
    /// One line naming the file (or flag), the key and the fix.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let (file, source) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    ConfigError::new(
                        path,
                        None,
                        format!("cannot read the config file: {error}"),
                        format!("check the path; see {REFERENCE}"),
                    )
                })?;
                (
                    parse_toml::<ConfigFile>(path, &text, REFERENCE)?,
                    path.to_owned(),
                )
            }
            None => (ConfigFile::default(), PathBuf::from("(defaults)")),
        };
        Self::resolve(&source, file, overrides)
    }

    /// Resolves a parsed file with overrides.
    ///
    /// # Errors
    /// One line naming the key and the fix.
    pub fn resolve(
        source: &Path,
        file: ConfigFile,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let address = |key: &str, flag: &str, value: String| -> Result<SocketAddr, ConfigError> {
            value.parse().map_err(|_| {
                ConfigError::new(
                    source,
                    Some(key),
                    format!("{value:?} is not an IP:PORT address"),
                    format!("write it like \"127.0.0.1:8080\" (or pass {flag})"),
                )
            })
        };
        let http = address(
            "server.http",
            "--http",
            overrides
                .http
                .clone()
                .or(file.server.http)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
        )?;
        let quic = address(
            "server.quic",
            "--quic",
            overrides
                .quic
                .clone()
                .or(file.server.quic)
                .unwrap_or_else(|| "0.0.0.0:7443".into()),
        )?;
        let data_dir = overrides
            .data_dir
            .clone()
            .or(file.server.data_dir)
            .unwrap_or_else(|| PathBuf::from("./aisemble-data"));
        let hostname = local_hostname();
        let server_names = file
            .server
            .server_names
            .unwrap_or_else(|| vec![hostname.clone()]);
        if let Some(bad) = server_names
            .iter()
            .find(|n| n.is_empty() || n.contains(char::is_whitespace))
        {
            return Err(ConfigError::new(
                source,
                Some("server.server_names"),
                format!("{bad:?} is not a host name or IP"),
                "list DNS names or IP addresses",
            ));
        }
        let public_address = file.server.public_address.unwrap_or_else(|| {
            let host = server_names.first().cloned().unwrap_or(hostname);
            if host.contains(':') {
                format!("[{host}]:{}", quic.port())
            } else {
                format!("{host}:{}", quic.port())
            }
        });
        let frame = file.ingest.max_frame_bytes.map_or(
            aisemble_shared::codec::DEFAULT_MAX_FRAME_BYTES as u64,
            |b| b.0,
        );
        if !(64 << 10..=64 << 20).contains(&frame) {
            return Err(ConfigError::new(
                source,
                Some("ingest.max_frame_bytes"),
                format!("{} is outside 64KiB..=64MiB", ByteSize(frame)),
                "the default is \"8MiB\"",
            ));
        }
        let retention = file
            .storage
            .retention
            .map_or(Duration::from_secs(15 * 86_400), |d| d.0);
        if retention < Duration::from_secs(3600) {
            return Err(ConfigError::new(
                source,
                Some("storage.retention"),
                "is shorter than one hour",
                "the default is \"15d\"",
            ));
        }
        let defaults = LogRetention::default();
        let mut log_retention = defaults;
        for (key, given, slot) in [
            (
                "logs.retention_general",
                &file.logs.retention_general,
                &mut log_retention.general,
            ),
            (
                "logs.retention_error",
                &file.logs.retention_error,
                &mut log_retention.error,
            ),
            (
                "logs.retention_audit",
                &file.logs.retention_audit,
                &mut log_retention.audit,
            ),
        ] {
            if let Some(given) = given {
                if given.0 < Duration::from_secs(3600) {
                    return Err(ConfigError::new(
                        source,
                        Some(key),
                        "is shorter than one hour",
                        "give days, e.g. \"30d\"",
                    ));
                }
                *slot = given.0;
            }
        }
        // Paths in the file are relative to the file.
        let base = source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf);
        let relative = |p: PathBuf| match &base {
            Some(base) if p.is_relative() && source.exists() => base.join(p),
            _ => p,
        };
        let evaluation_interval = file
            .alerting
            .evaluation_interval
            .map_or(Duration::from_secs(1), |d| d.0);
        if evaluation_interval < Duration::from_millis(100) {
            return Err(ConfigError::new(
                source,
                Some("alerting.evaluation_interval"),
                "is shorter than 100ms",
                "the default is \"1s\"",
            ));
        }
        let http_tls = match (
            file.http.tls.unwrap_or(false),
            file.http.tls_cert,
            file.http.tls_key,
        ) {
            (false, None, None) => HttpTls::Off,
            (true, None, None) => HttpTls::OwnCertificate,
            (true, Some(cert), Some(key)) => HttpTls::Files {
                cert: relative(cert),
                key: relative(key),
            },
            (false, _, _) => {
                return Err(ConfigError::new(
                    source,
                    Some("http.tls"),
                    "tls_cert and tls_key are set but tls is not true",
                    "set `tls = true`, or remove tls_cert and tls_key",
                ));
            }
            (true, Some(_), None) | (true, None, Some(_)) => {
                return Err(ConfigError::new(
                    source,
                    Some("http.tls_cert"),
                    "tls_cert and tls_key go together",
                    "give both, or neither to use the control plane's own certificate",
                ));
            }
        };
        let rate_limit_per_second = file.http.rate_limit_per_second.unwrap_or(50);
        let rate_limit_burst = file.http.rate_limit_burst.unwrap_or(100);
        if rate_limit_per_second > 0 && rate_limit_burst == 0 {
            return Err(ConfigError::new(
                source,
                Some("http.rate_limit_burst"),
                "is 0 while rate_limit_per_second is not",
                "the default is 100; set rate_limit_per_second = 0 to turn limits off",
            ));
        }
        let alerting = AlertingSettings {
            rules_dir: file
                .alerting
                .rules_dir
                .map(&relative)
                .unwrap_or_else(|| data_dir.join("rules")),
            rule_files: file
                .alerting
                .rule_files
                .unwrap_or_default()
                .into_iter()
                .map(|p| relative(PathBuf::from(p)))
                .collect(),
            evaluation_interval,
            alertmanager_config: file.alerting.alertmanager_config.map(&relative),
            external_url: file.alerting.external_url,
            external_labels: file.alerting.external_labels.unwrap_or_default(),
            notification_retry_for: file
                .alerting
                .notification_retry_for
                .map_or(Duration::from_secs(120), |d| d.0),
            circuit_breaker_threshold: file.alerting.circuit_breaker_threshold.unwrap_or(5).max(1),
            circuit_breaker_open_for: file
                .alerting
                .circuit_breaker_open_for
                .map_or(Duration::from_secs(60), |d| d.0),
        };
        let backup_repository = file
            .backups
            .repository
            .unwrap_or_else(|| data_dir.join("backups"));
        Ok(Self {
            alerting,
            backup_repository,
            data_dir,
            http,
            quic,
            server_names,
            public_address,
            retention,
            log_retention,
            checkpoint_interval: file
                .storage
                .checkpoint_interval
                .map_or(Duration::from_secs(60), |d| d.0),
            cache_bytes: file.storage.cache.map_or(64 << 20, |b| b.0),
            max_frame_bytes: frame as u32,
            metrics_require_token: file.http.metrics_require_token.unwrap_or(false),
            rate_limit_per_second,
            rate_limit_burst,
            http_tls,
        })
    }
}

/// This host's name, or `localhost`.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let defaults =
            Settings::resolve(Path::new("x"), ConfigFile::default(), &Overrides::default())
                .expect("defaults");
        assert_eq!(defaults.http.to_string(), "127.0.0.1:8080");
        assert_eq!(defaults.quic.to_string(), "0.0.0.0:7443");
        assert_eq!(defaults.data_dir, PathBuf::from("./aisemble-data"));
        assert_eq!(defaults.retention, Duration::from_secs(15 * 86_400));
        assert_eq!(
            (defaults.rate_limit_per_second, defaults.rate_limit_burst),
            (50, 100)
        );
        assert_eq!(defaults.http_tls, HttpTls::Off);
        let file: ConfigFile = parse_toml(
            Path::new("cp.toml"),
            "[server]\nhttp = \"127.0.0.1:9000\"\nquic = \"127.0.0.1:9001\"\n",
            REFERENCE,
        )
        .expect("parses");
        let overrides = Overrides {
            http: Some("127.0.0.1:9100".into()),
            ..Overrides::default()
        };
        let settings = Settings::resolve(Path::new("cp.toml"), file, &overrides).expect("resolves");
        assert_eq!(settings.http.to_string(), "127.0.0.1:9100");
        assert_eq!(settings.quic.to_string(), "127.0.0.1:9001");
        assert!(settings.public_address.ends_with(":9001"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let overrides = Overrides {
            quic: Some("nowhere".into()),
            ..Overrides::default()
        };
        let error = Settings::resolve(Path::new("cp.toml"), ConfigFile::default(), &overrides)
            .expect_err("fails");
        assert!(error.to_string().contains("key `server.quic`"), "{error}");
        let error = parse_toml::<ConfigFile>(
            Path::new("cp.toml"),
            "[storage]\nretension = \"1d\"\n",
            REFERENCE,
        )
        .expect_err("fails");
        assert!(
            error
                .to_string()
                .starts_with("cp.toml:2:1: key `storage.retension`: unknown field"),
            "{error}"
        );
        let http = |text: &str| {
            let file: ConfigFile =
                parse_toml(Path::new("cp.toml"), text, REFERENCE).expect("parses");
            Settings::resolve(Path::new("cp.toml"), file, &Overrides::default())
        };
        let error = http("[http]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n").expect_err("fails");
        assert!(error.to_string().contains("key `http.tls`"), "{error}");
        let error = http("[http]\ntls = true\ntls_cert = \"c.pem\"\n").expect_err("fails");
        assert!(error.to_string().contains("key `http.tls_cert`"), "{error}");
        let error = http("[http]\nrate_limit_burst = 0\n").expect_err("fails");
        assert!(
            error.to_string().contains("key `http.rate_limit_burst`"),
            "{error}"
        );
        let settings = http("[http]\ntls = true\nrate_limit_per_second = 0\n").expect("resolves");
        assert_eq!(settings.http_tls, HttpTls::OwnCertificate);
        assert_eq!(settings.rate_limit_per_second, 0);
    }
}
