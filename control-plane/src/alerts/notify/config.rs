//! Receiver configs as they appear in an Alertmanager config file (`receivers:`), with
//! Alertmanager's field names, and [`build`], which turns one into its notifiers.
//!
//! Two stages: the raw file types here only deserialize (unknown fields are refused); building
//! resolves secrets (inline, `*_file`, `*_env`), parses URLs and addresses and reads CA files, so
//! that every problem surfaces when the config is loaded, naming the receiver and the field, and
//! never the secret itself.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::Deserialize;

use super::{
    Notifier, NotifyError, SecretUrl, alertmanager::AlertmanagerNotifier, email::EmailNotifier,
    slack::SlackNotifier, webhook::WebhookNotifier,
};

/// One receiver: a name and its integrations.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// The receiver's name, referenced by routes. Required.
    pub name: String,
    /// Slack incoming webhooks.
    #[serde(default)]
    pub slack_configs: Vec<SlackConfig>,
    /// Email over SMTP.
    #[serde(default)]
    pub email_configs: Vec<EmailConfig>,
    /// Generic webhooks receiving Alertmanager's webhook payload.
    #[serde(default)]
    pub webhook_configs: Vec<WebhookConfig>,
    /// External Alertmanagers to forward alerts to (our extension).
    #[serde(default)]
    pub alertmanager_configs: Vec<AlertmanagerForwardConfig>,
}

/// `slack_configs[]`: a Slack incoming webhook.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The webhook URL. Exactly one of `api_url`, `api_url_file`, `api_url_env` is required.
    #[serde(default)]
    pub api_url: Option<Secret>,
    /// A file holding the webhook URL (surrounding whitespace is ignored).
    #[serde(default)]
    pub api_url_file: Option<PathBuf>,
    /// An environment variable holding the webhook URL (our extension).
    #[serde(default)]
    pub api_url_env: Option<String>,
    /// Channel or user to post to. Default: the webhook's own channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// Name to post as. Default: the webhook's.
    #[serde(default)]
    pub username: Option<String>,
    /// Emoji to post with, e.g. `:rotating_light:`. Default: the webhook's.
    #[serde(default)]
    pub icon_emoji: Option<String>,
    /// The attachment's title (plain text). Default: `[FIRING:2] HighCpu (node-1 warning)`.
    #[serde(default)]
    pub title: Option<String>,
    /// The attachment's text (plain text). Default: each alert's summary, description and labels.
    #[serde(default)]
    pub text: Option<String>,
    /// Notify when alerts resolve. Default `true`.
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

/// `email_configs[]`: email over SMTP.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients, comma-separated (`a@example.com, B <b@example.com>`). Required.
    pub to: String,
    /// Sender address. Required.
    pub from: String,
    /// SMTP server as `host:port`; port 465 means TLS from the first byte. Required.
    pub smarthost: String,
    /// User to authenticate as (AUTH PLAIN or LOGIN). Default: no authentication.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// Password. With `auth_username`, exactly one of `auth_password`, `auth_password_file`,
    /// `auth_password_env` is required.
    #[serde(default)]
    pub auth_password: Option<Secret>,
    /// A file holding the password (surrounding whitespace is ignored).
    #[serde(default)]
    pub auth_password_file: Option<PathBuf>,
    /// An environment variable holding the password (our extension).
    #[serde(default)]
    pub auth_password_env: Option<String>,
    /// Require STARTTLS; when `false`, mail goes in plain text. Default `true`.
    #[serde(default = "yes")]
    pub require_tls: bool,
    /// How the SMTP server's certificate is verified. Default: against the system's roots.
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    /// The name sent in EHLO. Default `localhost`.
    #[serde(default = "localhost")]
    pub hello: String,
    /// Notify when alerts resolve. Default `false`, as Alertmanager.
    #[serde(default)]
    pub send_resolved: bool,
}

/// `tls_config` of an email config.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificates to trust instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate and host name. Dangerous: for tests and lab setups only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `webhook_configs[]`: a generic webhook receiving Alertmanager's webhook payload (version 4).
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL to POST to. Exactly one of `url`, `url_file`, `url_env` is required.
    #[serde(default)]
    pub url: Option<Secret>,
    /// A file holding the URL (surrounding whitespace is ignored).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// An environment variable holding the URL (our extension).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Notify when alerts resolve. Default `true`.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Most alerts per payload; the rest are counted in `truncatedAlerts`. Default `0` = all.
    #[serde(default)]
    pub max_alerts: u64,
}

/// `alertmanager_configs[]` (our extension): forward alerts to an external Alertmanager's
/// `POST /api/v2/alerts`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerForwardConfig {
    /// Base URL of the Alertmanager, e.g. `http://127.0.0.1:9093`. Required.
    pub url: String,
}

/// A secret value from a config file: `Debug` and `Display` print `<secret>`.
#[derive(Deserialize, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Where `*_env` secrets are read from: the process environment in production, a map in tests.
pub trait EnvSource: Send + Sync + fmt::Debug {
    /// The variable's value; `Ok(None)` when unset.
    ///
    /// # Errors
    /// When the variable is set but unusable (not Unicode).
    fn var(&self, name: &str) -> Result<Option<String>, String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Result<Option<String>, String> {
        match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err("value is not unicode".to_owned()),
        }
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Result<Option<String>, String> {
        Ok(self.get(name).cloned())
    }
}

/// Everything building notifiers needs besides the config.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The HTTP client every HTTP integration shares (see [`super::http_client`]).
    pub http: reqwest::Client,
    /// Where `*_env` secrets come from. Default: the process environment.
    pub env: Arc<dyn EnvSource>,
    /// For alerts forwarded to an Alertmanager while firing: `endsAt` = now + this. The
    /// caller must forward firing alerts again before it passes (Prometheus uses 4 × its
    /// resend delay), or Alertmanager resolves them. Default 3 minutes.
    pub forward_firing_for: Duration,
    /// How long one SMTP exchange may take. Default 30 seconds.
    pub smtp_timeout: Duration,
}

impl BuildContext {
    /// The defaults, with `http` for the HTTP integrations.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            env: Arc::new(ProcessEnv),
            forward_firing_for: Duration::from_secs(180),
            smtp_timeout: Duration::from_secs(30),
        }
    }
}

/// Builds every integration of `receiver`, in config order: Slack, email, webhook,
/// Alertmanager; secrets from the process environment.
///
/// # Errors
/// The first invalid field or unresolvable secret, naming the receiver and the field.
pub fn build(
    receiver: &ReceiverConfig,
    http: &reqwest::Client,
) -> Result<Vec<Arc<dyn Notifier>>, NotifyError> {
    build_with(receiver, &BuildContext::new(http.clone()))
}

/// [`build`] with everything it needs spelled out.
///
/// # Errors
/// As [`build`].
pub fn build_with(
    receiver: &ReceiverConfig,
    ctx: &BuildContext,
) -> Result<Vec<Arc<dyn Notifier>>, NotifyError> {
    let name = receiver.name.as_str();
    if name.trim().is_empty() {
        return Err(NotifyError::Config {
            receiver: name.to_owned(),
            field: "name".to_owned(),
            message: "must not be empty".to_owned(),
        });
    }
    let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
    for (idx, slack) in receiver.slack_configs.iter().enumerate() {
        let field = Field::new(name, format!("slack_configs[{idx}]"));
        let secret = one_secret(
            &field,
            ["api_url", "api_url_file", "api_url_env"],
            (&slack.api_url, &slack.api_url_file, &slack.api_url_env),
            &*ctx.env,
        )?;
        let url = field.url(&secret, "api_url")?;
        notifiers.push(Arc::new(SlackNotifier::new(
            slack.clone(),
            url,
            ctx.http.clone(),
        )));
    }
    for (idx, email) in receiver.email_configs.iter().enumerate() {
        let field = Field::new(name, format!("email_configs[{idx}]"));
        let password = match &email.auth_username {
            None => {
                if email.auth_password.is_some()
                    || email.auth_password_file.is_some()
                    || email.auth_password_env.is_some()
                {
                    return Err(field.config("auth_username", "is required with a password"));
                }
                None
            }
            Some(_) => Some(one_secret(
                &field,
                ["auth_password", "auth_password_file", "auth_password_env"],
                (
                    &email.auth_password,
                    &email.auth_password_file,
                    &email.auth_password_env,
                ),
                &*ctx.env,
            )?),
        };
        notifiers.push(Arc::new(EmailNotifier::new(
            &field,
            email,
            password,
            ctx.smtp_timeout,
        )?));
    }
    for (idx, webhook) in receiver.webhook_configs.iter().enumerate() {
        let field = Field::new(name, format!("webhook_configs[{idx}]"));
        let secret = one_secret(
            &field,
            ["url", "url_file", "url_env"],
            (&webhook.url, &webhook.url_file, &webhook.url_env),
            &*ctx.env,
        )?;
        let url = field.url(&secret, "url")?;
        notifiers.push(Arc::new(WebhookNotifier::new(
            webhook.clone(),
            url,
            ctx.http.clone(),
        )));
    }
    for (idx, forward) in receiver.alertmanager_configs.iter().enumerate() {
        let field = Field::new(name, format!("alertmanager_configs[{idx}]"));
        let base = field.url(&Secret::new(forward.url.clone()), "url")?;
        let mut url = base.expose().clone();
        let path = format!("{}/api/v2/alerts", url.path().trim_end_matches('/'));
        url.set_path(&path);
        notifiers.push(Arc::new(AlertmanagerNotifier::new(
            SecretUrl::new(url),
            ctx.http.clone(),
            ctx.forward_firing_for,
        )));
    }
    Ok(notifiers)
}

/// A receiver name and the path of one of its integrations, for error messages.
#[derive(Debug)]
pub(crate) struct Field {
    receiver: String,
    prefix: String,
}

impl Field {
    fn new(receiver: &str, prefix: String) -> Self {
        Self {
            receiver: receiver.to_owned(),
            prefix,
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// A config error about field `name` of this integration.
    pub(crate) fn config(&self, name: &str, message: &str) -> NotifyError {
        NotifyError::Config {
            receiver: self.receiver.clone(),
            field: self.path(name),
            message: message.to_owned(),
        }
    }

    fn secret(&self, name: &str, message: String) -> NotifyError {
        NotifyError::Secret {
            receiver: self.receiver.clone(),
            field: self.path(name),
            message,
        }
    }

    /// Parses an http(s) URL; errors never include the value.
    fn url(&self, secret: &Secret, name: &str) -> Result<SecretUrl, NotifyError> {
        let url = reqwest::Url::parse(secret.expose())
            .map_err(|e| self.config(name, &format!("not a valid url ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.config(name, "must be an http or https url with a host"));
        }
        Ok(SecretUrl::new(url))
    }
}

/// Resolves a secret given inline, in a file or in an environment variable: exactly one of the
/// three must be set.
fn one_secret(
    field: &Field,
    names: [&str; 3],
    (inline, file, env_name): (&Option<Secret>, &Option<PathBuf>, &Option<String>),
    env: &dyn EnvSource,
) -> Result<Secret, NotifyError> {
    let [inline_name, file_name, env_field] = names;
    match (inline, file, env_name) {
        (Some(secret), None, None) => Ok(secret.clone()),
        (None, Some(path), None) => read_secret_file(path).map_err(|m| field.secret(file_name, m)),
        (None, None, Some(var)) => match env.var(var) {
            Ok(Some(value)) if !value.trim().is_empty() => Ok(Secret::new(value.trim())),
            Ok(_) => Err(field.secret(
                env_field,
                format!("environment variable {var} is not set or empty"),
            )),
            Err(message) => {
                Err(field.secret(env_field, format!("environment variable {var}: {message}")))
            }
        },
        (None, None, None) => Err(field.config(
            inline_name,
            &format!("one of {inline_name}, {file_name}, {env_field} is required"),
        )),
        _ => Err(field.config(
            inline_name,
            &format!("only one of {inline_name}, {file_name}, {env_field} may be set"),
        )),
    }
}

fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(value))
}

fn yes() -> bool {
    true
}

fn localhost() -> String {
    "localhost".to_owned()
}
