//! Notifications for alert groups: one [`Notifier`] per integration of a receiver (a Slack
//! incoming webhook, email over SMTP, a generic webhook with Alertmanager's payload, forwarding to
//! an external Alertmanager), built from Alertmanager-style receiver configs ([`config`]) and
//! driven by [`Delivery`] (retries with backoff, a circuit breaker per integration, metrics).
//!
//! This module knows nothing about rules, evaluation, grouping or silences: it is handed finished
//! [`Notification`]s. It never logs or prints a webhook URL or a password: they are secrets
//! ([`config::Secret`]), and transport errors are rendered without their URL.

mod alertmanager;
pub mod breaker;
pub mod config;
pub mod delivery;
mod email;
mod slack;
mod webhook;

use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rustls::{ClientConfig, RootCertStore};

pub use breaker::{BreakerState, CircuitBreaker, Decision};
pub use config::{
    AlertmanagerForwardConfig, BuildContext, EmailConfig, EnvSource, ProcessEnv, ReceiverConfig,
    Secret, SlackConfig, TlsConfig, WebhookConfig, build, build_with,
};
pub use delivery::{Delivery, DeliveryPolicy, NotifierMetrics, deliveries};

/// Label names to values, sorted by name (as Alertmanager's `SortedPairs`).
pub type LabelSet = BTreeMap<String, String>;

/// Whether an alert (or a group of alerts) is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    /// Active.
    Firing,
    /// No longer active.
    Resolved,
}

impl AlertStatus {
    /// `"firing"` or `"resolved"`, as in Alertmanager's payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert inside a notification (what Alertmanager's webhook calls an alert).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertInfo {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The alert's labels (`alertname`, `severity`, `host`, ...).
    pub labels: LabelSet,
    /// The alert's annotations (`summary`, `description`, ...).
    pub annotations: LabelSet,
    /// When the alert started firing.
    pub starts_at: SystemTime,
    /// When the alert was resolved; `Some` exactly when resolved.
    pub ends_at: Option<SystemTime>,
    /// Link to the rule's expression.
    pub generator_url: String,
    /// Identity of the alert's label set: 16 hex characters.
    pub fingerprint: String,
}

/// What one receiver is asked to deliver for one alert group (Alertmanager's "message").
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The receiver's name.
    pub receiver: String,
    /// Identity of the alert group (route and group labels).
    pub group_key: String,
    /// `Firing` if any alert is firing, else `Resolved`.
    pub status: AlertStatus,
    /// The labels the group is grouped by.
    pub group_labels: LabelSet,
    /// Labels every alert of the group has, with the same value.
    pub common_labels: LabelSet,
    /// Annotations every alert of the group has, with the same value.
    pub common_annotations: LabelSet,
    /// Link to the control plane's alerts view, e.g. `http://127.0.0.1:8080/#alerts`.
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<AlertInfo>,
    /// Alerts of the group left out of `alerts` by the caller.
    pub truncated_alerts: u64,
}

impl Notification {
    /// Firing alerts in `alerts`.
    pub fn n_firing(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count()
    }

    /// Resolved alerts in `alerts`.
    pub fn n_resolved(&self) -> usize {
        self.alerts.len() - self.n_firing()
    }

    /// Alertmanager's default title and email subject: `[FIRING:2] HighCpu (node-1 warning)`,
    /// that is the status, the number of firing alerts, the group labels' values and, in
    /// parentheses, the values of the common labels that are not group labels (both sorted by
    /// label name).
    pub fn title(&self) -> String {
        let mut title = match self.status {
            AlertStatus::Firing => format!("[FIRING:{}]", self.n_firing()),
            AlertStatus::Resolved => "[RESOLVED]".to_owned(),
        };
        for value in self.group_labels.values() {
            title.push(' ');
            title.push_str(value);
        }
        let extra: Vec<&str> = self
            .common_labels
            .iter()
            .filter(|(name, _)| !self.group_labels.contains_key(*name))
            .map(|(_, value)| value.as_str())
            .collect();
        if !extra.is_empty() {
            let _ = write!(title, " ({})", extra.join(" "));
        }
        title
    }

    /// The highest `severity` label among firing alerts (`None` when nothing fires).
    pub fn firing_severity(&self) -> Option<Severity> {
        self.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .map(|a| Severity::of(&a.labels))
            .max()
    }

    /// The notification as an integration with `send_resolved: false` sees it: without resolved
    /// alerts, common labels and annotations recomputed over the rest, as Alertmanager does.
    /// `None` when nothing fires (nothing is sent then).
    pub fn without_resolved(&self) -> Option<Notification> {
        let alerts: Vec<AlertInfo> = self
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .cloned()
            .collect();
        if alerts.is_empty() {
            return None;
        }
        if alerts.len() == self.alerts.len() {
            return Some(self.clone());
        }
        Some(Notification {
            status: AlertStatus::Firing,
            common_labels: common(alerts.iter().map(|a| &a.labels)),
            common_annotations: common(alerts.iter().map(|a| &a.annotations)),
            alerts,
            ..self.clone()
        })
    }
}

/// An alert's `severity` label, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Anything other than the three known values (including none).
    Other,
    /// `info`.
    Info,
    /// `warning`.
    Warning,
    /// `critical`.
    Critical,
}

impl Severity {
    /// The severity named by the `severity` label of `labels`.
    pub fn of(labels: &LabelSet) -> Self {
        match labels.get("severity").map(String::as_str) {
            Some("critical") => Self::Critical,
            Some("warning") => Self::Warning,
            Some("info") => Self::Info,
            _ => Self::Other,
        }
    }
}

/// Why a delivery failed; [`NotifyError::retryable`] tells the delivery loop whether to try again.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The server answered with a status other than 2xx.
    #[error("server answered http {status}{}", body_suffix(.body))]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body, for the log.
        body: String,
    },
    /// The request could not be sent or its answer not read (connect, TLS, reset). Never
    /// contains the URL.
    #[error("sending the request: {0}")]
    Transport(String),
    /// The SMTP exchange failed (connect, STARTTLS, authentication, a refused recipient).
    #[error("smtp: {message}")]
    Smtp {
        /// What the SMTP client reported.
        message: String,
        /// A permanent failure (5xx reply, bad client configuration): retrying cannot help.
        permanent: bool,
    },
    /// A receiver's config is invalid.
    #[error("receiver {receiver:?}: {field}: {message}")]
    Config {
        /// The receiver's name.
        receiver: String,
        /// The offending field, e.g. `slack_configs[0].api_url`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A secret (file or environment variable) could not be resolved.
    #[error("receiver {receiver:?}: {field}: {message}")]
    Secret {
        /// The receiver's name.
        receiver: String,
        /// The field naming the secret, e.g. `slack_configs[0].api_url_file`.
        field: String,
        /// What went wrong (never the secret's value).
        message: String,
    },
    /// The message could not be built from the notification (e.g. an invalid header value).
    #[error("building the message: {0}")]
    Message(String),
    /// The integration's circuit breaker is open: the delivery failed without being tried.
    #[error("circuit breaker open{}", retry_suffix(*.retry_in))]
    CircuitOpen {
        /// Time left until the breaker lets a trial delivery through; `None` while a trial runs.
        retry_in: Option<Duration>,
    },
    /// The delivery's time budget (this long) ran out during its first attempt.
    #[error("no answer within the delivery's time budget of {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

impl NotifyError {
    /// Whether trying again may succeed: HTTP 5xx and 429, transport errors and timeouts, and
    /// transient SMTP errors are; other 4xx, config and secret errors and an open breaker are not.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Http { status, .. } => *status >= 500 || *status == 429,
            Self::Transport(_) | Self::Timeout(_) => true,
            Self::Smtp { permanent, .. } => !permanent,
            Self::Config { .. }
            | Self::Secret { .. }
            | Self::Message(_)
            | Self::CircuitOpen { .. } => false,
        }
    }
}

fn retry_suffix(retry_in: Option<Duration>) -> String {
    match retry_in {
        // Whole milliseconds: humantime would print every nanosecond.
        Some(left) => format!(
            "; next trial in {}",
            humantime::format_duration(Duration::from_millis(left.as_millis() as u64))
        ),
        None => "; a trial delivery is running".to_owned(),
    }
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// One integration of a receiver (one `slack_config`, one `email_config`, ...).
pub trait Notifier: Send + Sync + fmt::Debug {
    /// `"slack"`, `"email"`, `"webhook"` or `"alertmanager"`.
    fn kind(&self) -> &'static str;

    /// Delivers `notification` once (no retries: [`Delivery`] retries).
    ///
    /// # Errors
    /// When the notification was not accepted; see [`NotifyError::retryable`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the attempt; the notification may or may not have arrived.
    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>>;
}

/// An HTTP client for notifiers: rustls with the ring provider, trusting the system's roots;
/// requests time out after `timeout`; redirects are not followed; proxies come from the
/// environment (`HTTPS_PROXY`, `NO_PROXY`), as for Alertmanager.
///
/// # Errors
/// When rustls or reqwest refuse the configuration.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, NotifyError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system roots leave an empty store: plain-http receivers still work.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| NotifyError::Transport(format!("tls configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "aisemble-control-plane/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|e| NotifyError::Transport(error_chain(&e.without_url())))
}

/// A URL that is a secret (Slack and webhook URLs carry their token): its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretUrl(reqwest::Url);

impl SecretUrl {
    pub(crate) fn new(url: reqwest::Url) -> Self {
        Self(url)
    }

    pub(crate) fn expose(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// How much of an error response body is kept for the log.
const MAX_ERROR_BODY: usize = 512;

/// POSTs `body` as JSON to `url` and maps the outcome: 2xx is success, anything else an error
/// carrying the status and the start of the body.
pub(crate) async fn post_json(
    http: &reqwest::Client,
    url: &reqwest::Url,
    body: Vec<u8>,
) -> Result<(), NotifyError> {
    let response = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(transport_error)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(NotifyError::Http {
        status: status.as_u16(),
        body: error_body(response).await,
    })
}

async fn error_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    // An unreadable error body is no more information than an empty one.
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    body.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&body).trim().to_owned()
}

/// A reqwest error as text, without the URL (which may be a secret).
pub(crate) fn transport_error(error: reqwest::Error) -> NotifyError {
    NotifyError::Transport(error_chain(&error.without_url()))
}

/// An error and its sources, joined by `": "`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Labels (or annotations) every set has with the same value.
fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> LabelSet {
    let Some(first) = sets.next() else {
        return LabelSet::new();
    };
    let mut common = first.clone();
    for set in sets {
        common.retain(|name, value| set.get(name) == Some(value));
    }
    common
}

/// Alertmanager's zero time (Go's `time.Time{}`), sent as `endsAt` of alerts still firing.
pub(crate) const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `t` in RFC 3339, UTC, as Go's `time.RFC3339Nano` writes it (fraction without trailing zeros,
/// none when whole). Times before 1970 or after 9999 are clamped.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    // 9999-12-31T23:59:59Z; humantime refuses later times and panics on earlier than the epoch.
    const MAX_SECS: u64 = 253_402_300_799;
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let clamped = if since_epoch.as_secs() > MAX_SECS {
        UNIX_EPOCH + Duration::from_secs(MAX_SECS)
    } else {
        UNIX_EPOCH + since_epoch
    };
    let mut text = String::new();
    if write!(text, "{}", humantime::format_rfc3339_nanos(clamped)).is_err() {
        return ZERO_TIME.to_owned();
    }
    // "2024-01-02T03:04:05.120000000Z" → "2024-01-02T03:04:05.12Z".
    if let Some(dot) = text.find('.') {
        let fraction = text[dot + 1..text.len() - 1]
            .trim_end_matches('0')
            .to_owned();
        text.truncate(dot);
        if !fraction.is_empty() {
            text.push('.');
            text.push_str(&fraction);
        }
        text.push('Z');
    }
    text
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
