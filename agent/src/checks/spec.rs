//! Checking a `[[checks]]` entry: the kind's required keys, no keys of other kinds, interval and
//! timeout, labels, and each kind's keys parsed (URLs, addresses, commands) into a [`CheckSpec`].
//!
//! Everything that can be wrong with an entry is found here, once, as a one-line error naming the
//! key, so that a check that starts can only fail because of its target.

use std::{path::Path, str::FromStr, time::Duration};

use aisemble_shared::{
    config::{CheckConfig, ConfigError},
    metrics::{HOST_LABEL, is_valid_label_name},
    wire::Label,
};

use super::{
    exec::ExecTarget, http::HttpTarget, postgres::PostgresTarget, redis::RedisTarget,
    tcp::TcpTarget,
};

pub use crate::schedule::DEFAULT_TIMEOUT;
/// Shortest `interval`: more often than ten times a second a check floods the journal and, for
/// most targets, its own logs.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Labels every check series carries from the check itself (or, for `host`, from the control
/// plane); configured labels may not use them.
const RESERVED_LABELS: [&str; 3] = [HOST_LABEL, "check", "kind"];

/// A checked, ready-to-run health check.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// Unique name (the `check` label).
    pub name: String,
    /// How often it runs.
    pub interval: Duration,
    /// How long one run may take.
    pub timeout: Duration,
    /// Extra labels on its series.
    pub labels: Vec<Label>,
    pub(super) target: Target,
}

/// What a check tests, with the keys of its kind.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Http(HttpTarget),
    Tcp(TcpTarget),
    Postgres(PostgresTarget),
    Redis(RedisTarget),
    Exec(ExecTarget),
}

/// The kinds, by their config name, with the kind-specific keys each takes (required key first).
const KINDS: [(&str, &[&str]); 5] = [
    (
        "http",
        &["url", "method", "expected_status", "body_contains", "ca"],
    ),
    ("tcp", &["address"]),
    ("postgres", &["url"]),
    ("redis", &["url"]),
    ("exec", &["command", "shell"]),
];

impl CheckSpec {
    /// Checks one `[[checks]]` entry of the config file at `path`.
    ///
    /// # Errors
    /// A one-line error naming the key (`checks.NAME.url`) and the fix.
    pub fn from_config(
        path: &Path,
        config: &CheckConfig,
        default_interval: Duration,
    ) -> Result<Self, ConfigError> {
        let name = config.name.trim();
        if name.is_empty() {
            return Err(ConfigError::new(
                path,
                Some("checks.name"),
                "is empty",
                "give each [[checks]] entry a name (it becomes the `check` label)",
            ));
        }
        let error = |key: &str, message: String, hint: &str| {
            ConfigError::new(
                path,
                Some(format!("checks.{name}.{key}").as_str()),
                message,
                hint,
            )
        };

        let kind = config.kind.trim();
        let Some(&(kind, kind_keys)) = KINDS.iter().find(|(k, _)| *k == kind) else {
            return Err(error(
                "kind",
                format!("unknown kind {kind:?}"),
                "use one of \"http\", \"tcp\", \"postgres\", \"redis\", \"exec\"",
            ));
        };
        for key in present_keys(config) {
            if !kind_keys.contains(&key) {
                return Err(error(
                    key,
                    format!("does not apply to {} {kind} check", article(kind)),
                    &format!(
                        "remove it; {} {kind} check takes {}",
                        article(kind),
                        kind_keys
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }

        let (interval, timeout) = crate::schedule::resolve(
            config.interval,
            config.timeout,
            default_interval,
            MIN_INTERVAL,
        )
        .map_err(|e| error(e.key, e.message, e.hint))?;

        let mut labels = Vec::with_capacity(config.labels.len());
        for (label, value) in &config.labels {
            if RESERVED_LABELS.contains(&label.as_str()) {
                return Err(error(
                    "labels",
                    format!("`{label}` is set by the agent or the control plane"),
                    "remove it or use another label name",
                ));
            }
            if !is_valid_label_name(label) {
                return Err(error(
                    "labels",
                    format!("{label:?} is not a valid label name"),
                    "use letters, digits and `_`, not starting with a digit or `__`",
                ));
            }
            labels.push(Label::new(label, value));
        }

        let missing = |key: &str, example: &str| {
            error(
                key,
                format!("is required for {} {kind} check", article(kind)),
                &format!("add it, like {key} = {example}"),
            )
        };
        let target = match kind {
            "http" => {
                let url = config
                    .url
                    .as_deref()
                    .ok_or_else(|| missing("url", HTTP_URL_EXAMPLE))?;
                Target::Http(http_target(path, config, url).map_err(|(k, m, h)| error(k, m, h))?)
            }
            "tcp" => {
                let address = config
                    .address
                    .as_deref()
                    .ok_or_else(|| missing("address", "\"127.0.0.1:8000\""))?
                    .trim();
                if split_host_port(address).is_none() {
                    return Err(error(
                        "address",
                        format!("{address:?} is not HOST:PORT"),
                        "write it like \"127.0.0.1:8000\", \"db.internal:5432\" or \"[::1]:8000\"",
                    ));
                }
                Target::Tcp(TcpTarget {
                    address: address.to_owned(),
                })
            }
            "postgres" => {
                let url = config
                    .url
                    .as_deref()
                    .ok_or_else(|| missing("url", POSTGRES_URL_EXAMPLE))?;
                Target::Postgres(postgres_target(url).map_err(|m| {
                    error("url", m, &format!("write it like {POSTGRES_URL_EXAMPLE}"))
                })?)
            }
            "redis" => {
                let url = config
                    .url
                    .as_deref()
                    .ok_or_else(|| missing("url", REDIS_URL_EXAMPLE))?
                    .trim();
                let hint = format!("write it like {REDIS_URL_EXAMPLE}");
                if !url.starts_with("redis://") {
                    return Err(error(
                        "url",
                        format!("{url:?} is not a redis:// URL"),
                        &hint,
                    ));
                }
                let target = RedisTarget::parse(url).map_err(|e| {
                    error(
                        "url",
                        format!("{url:?} is not a usable Redis URL ({e})"),
                        &hint,
                    )
                })?;
                Target::Redis(target)
            }
            _ => {
                let command = config
                    .command
                    .as_ref()
                    .ok_or_else(|| missing("command", "[\"pg_isready\", \"-q\"]"))?;
                if command
                    .first()
                    .is_none_or(|program| program.trim().is_empty())
                {
                    return Err(error(
                        "command",
                        "is empty".into(),
                        "name the program to run first, like [\"pg_isready\", \"-q\"]",
                    ));
                }
                if config.shell && command.len() != 1 {
                    return Err(error(
                        "command",
                        format!(
                            "must be one string with shell = true (it has {})",
                            command.len()
                        ),
                        "write the whole shell command as one string, like [\"pg_isready -q || exit 2\"]",
                    ));
                }
                Target::Exec(ExecTarget {
                    command: command.clone(),
                    shell: config.shell,
                })
            }
        };

        Ok(Self {
            name: name.to_owned(),
            interval,
            timeout,
            labels,
            target,
        })
    }

    /// The check's kind: `http`, `tcp`, `postgres`, `redis` or `exec` (the `kind` label).
    pub fn kind(&self) -> &'static str {
        match self.target {
            Target::Http(_) => "http",
            Target::Tcp(_) => "tcp",
            Target::Postgres(_) => "postgres",
            Target::Redis(_) => "redis",
            Target::Exec(_) => "exec",
        }
    }
}

const HTTP_URL_EXAMPLE: &str = "\"http://127.0.0.1:8080/healthz\"";
const POSTGRES_URL_EXAMPLE: &str = "\"postgres://monitor@127.0.0.1:5432/app\"";
const REDIS_URL_EXAMPLE: &str = "\"redis://127.0.0.1:6379\"";

/// `an http` and `an exec` check, but `a tcp` check.
fn article(kind: &str) -> &'static str {
    if matches!(kind, "http" | "exec") {
        "an"
    } else {
        "a"
    }
}

/// The kind-specific keys set in `config`.
fn present_keys(config: &CheckConfig) -> impl Iterator<Item = &'static str> {
    [
        ("url", config.url.is_some()),
        ("method", config.method.is_some()),
        ("expected_status", config.expected_status.is_some()),
        ("body_contains", config.body_contains.is_some()),
        ("ca", config.ca.is_some()),
        ("address", config.address.is_some()),
        ("command", config.command.is_some()),
        // `shell = false` is the default and cannot be told from an absent key.
        ("shell", config.shell),
    ]
    .into_iter()
    .filter_map(|(key, present)| present.then_some(key))
}

/// The `http` keys; errors are `(key, message, hint)`.
fn http_target(
    path: &Path,
    config: &CheckConfig,
    url: &str,
) -> Result<HttpTarget, (&'static str, String, &'static str)> {
    let url_hint = "write it like \"http://127.0.0.1:8080/healthz\"";
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| ("url", format!("{url:?} is not a URL ({e})"), url_hint))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err((
            "url",
            format!("{url:?} is not an http or https URL"),
            url_hint,
        ));
    }
    // Methods are case-sensitive in HTTP, but every standard one is upper case: `get` in a config
    // file means GET.
    let method = match config.method.as_deref() {
        None => reqwest::Method::GET,
        Some(method) => reqwest::Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                (
                    "method",
                    format!("{method:?} is not an HTTP method"),
                    "use GET, HEAD, POST or another method name",
                )
            })?,
    };
    if let Some(status) = config.expected_status
        && !(100..=599).contains(&status)
    {
        return Err((
            "expected_status",
            format!("{status} is not an HTTP status code"),
            "use a code from 100 to 599, like 200, or remove it to accept any 2xx",
        ));
    }
    if config.body_contains.as_deref() == Some("") {
        return Err((
            "body_contains",
            "is empty".into(),
            "give the text the body must contain, or remove the key",
        ));
    }
    // Relative to the config file's directory, like every path in it.
    let ca = config
        .ca
        .as_ref()
        .map(|ca| path.parent().unwrap_or(Path::new(".")).join(ca));
    if let Some(ca) = &ca {
        aisemble_certs::tls::load_certs(ca).map_err(|e| {
            (
                "ca",
                e.to_string(),
                "point it at a readable PEM file of CA certificates",
            )
        })?;
    }
    Ok(HttpTarget {
        method,
        url: parsed,
        expected_status: config.expected_status,
        body_contains: config.body_contains.clone(),
        ca,
    })
}

/// The `postgres` URL, parsed; the error is the message.
fn postgres_target(url: &str) -> Result<PostgresTarget, String> {
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!("{url:?} is not a postgres:// or postgresql:// URL"));
    }
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| format!("{url:?} is not a usable PostgreSQL URL ({e})"))?;
    if config.get_hosts().is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    if config.get_user().is_none() {
        return Err(format!("{url:?} names no user"));
    }
    // The check connects without TLS (there is no PostgreSQL TLS connector in the build):
    // `prefer` falls back to plain, `require` could never succeed.
    if !matches!(
        config.get_ssl_mode(),
        tokio_postgres::config::SslMode::Disable | tokio_postgres::config::SslMode::Prefer
    ) {
        return Err(format!(
            "{url:?} requires TLS, which the check does not support (use sslmode=disable or prefer)"
        ));
    }
    if config.get_application_name().is_none() {
        // So that an operator sees who holds the session in pg_stat_activity.
        config.application_name("aisemble-agent-check");
    }
    Ok(PostgresTarget { config })
}

/// `HOST:PORT` split, with the port checked (`[::1]:80` for IPv6).
pub(super) fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        (host, port)
    } else {
        let (host, port) = address.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then_some((host, port))
}
