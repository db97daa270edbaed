//! Email over SMTP (lettre, rustls with the ring provider): one message per notification to all
//! recipients, with a plain-text and an HTML body (multipart/alternative), subject as
//! Alertmanager's (`[FIRING:1] HighCpu (node-1)`).
//!
//! As Alertmanager: STARTTLS is required unless `require_tls: false` (then plain text), port 465
//! means TLS from the first byte, AUTH (PLAIN, else LOGIN) when `auth_username` is set.

use std::{fmt, fmt::Write as _, future::Future, pin::Pin, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::{Certificate, CertificateStore, Tls, TlsParameters},
        extension::ClientId,
    },
};
use rustls_pki_types::{CertificateDer, pem::PemObject as _};

use super::{
    AlertInfo, AlertStatus, Notification, Notifier, NotifyError,
    config::{EmailConfig, Field, Secret, TlsConfig},
    error_chain, html_escape, rfc3339,
};

/// One `email_config`.
pub(crate) struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    smarthost: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    send_resolved: bool,
}

impl EmailNotifier {
    /// Parses addresses and the smarthost, reads the CA file and sets up the transport; nothing
    /// connects yet.
    pub(crate) fn new(
        field: &Field,
        config: &EmailConfig,
        password: Option<Secret>,
        timeout: Duration,
    ) -> Result<Self, NotifyError> {
        let to = config
            .to
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(|address| {
                address
                    .parse::<Mailbox>()
                    .map_err(|e| field.config("to", &format!("{address:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(field.config("to", "at least one address is required"));
        }
        let from = config
            .from
            .trim()
            .parse::<Mailbox>()
            .map_err(|e| field.config("from", &format!("{:?}: {e}", config.from)))?;
        let (host, port) = split_host_port(&config.smarthost).ok_or_else(|| {
            field.config(
                "smarthost",
                &format!("{:?}: expected host:port", config.smarthost),
            )
        })?;
        if config.hello.trim().is_empty() {
            return Err(field.config("hello", "must not be empty"));
        }
        let tls = if port == 465 {
            Tls::Wrapper(tls_parameters(field, host, config.tls_config.as_ref())?)
        } else if config.require_tls {
            Tls::Required(tls_parameters(field, host, config.tls_config.as_ref())?)
        } else {
            Tls::None
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .hello_name(ClientId::Domain(config.hello.clone()))
            .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&config.auth_username, password) {
            builder = builder
                .credentials(Credentials::new(user.clone(), password.expose().to_owned()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(Self {
            transport: builder.build(),
            smarthost: config.smarthost.clone(),
            from,
            to,
            send_resolved: config.send_resolved,
        })
    }

    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let filtered;
        let notification = if self.send_resolved {
            notification
        } else {
            match notification.without_resolved() {
                Some(firing) => {
                    filtered = firing;
                    &filtered
                }
                None => return Ok(()),
            }
        };
        let message = self.message(notification)?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| NotifyError::Smtp {
                permanent: e.is_permanent() || e.is_client(),
                message: error_chain(&e),
            })
    }

    fn message(&self, notification: &Notification) -> Result<Message, NotifyError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(notification.title());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                text_body(notification),
                html_body(notification),
            ))
            .map_err(|e| NotifyError::Message(e.to_string()))
    }
}

impl Notifier for EmailNotifier {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>> {
        Box::pin(self.send(notification))
    }
}

impl fmt::Debug for EmailNotifier {
    /// Leaves out the transport, which holds the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("smarthost", &self.smarthost)
            .field("from", &self.from.to_string())
            .field("n_to", &self.to.len())
            .field("send_resolved", &self.send_resolved)
            .finish_non_exhaustive()
    }
}

/// `host:port` or `[v6]:port`.
fn split_host_port(smarthost: &str) -> Option<(&str, u16)> {
    let (host, port) = smarthost.trim().rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().ok()?;
    (!host.is_empty() && port != 0).then_some((host, port))
}

fn tls_parameters(
    field: &Field,
    host: &str,
    config: Option<&TlsConfig>,
) -> Result<TlsParameters, NotifyError> {
    let mut builder = TlsParameters::builder(host.to_owned());
    if let Some(config) = config {
        if let Some(path) = &config.ca_file {
            let ca_error = |message: String| field.config("tls_config.ca_file", &message);
            let pem = std::fs::read(path)
                .map_err(|e| ca_error(format!("reading {}: {e}", path.display())))?;
            let n_certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_error(format!("{}: {e}", path.display())))?
                .len();
            if n_certs == 0 {
                return Err(ca_error(format!("{}: no certificates", path.display())));
            }
            let certificate = Certificate::from_pem(&pem)
                .map_err(|e| ca_error(format!("{}: {}", path.display(), error_chain(&e))))?;
            builder = builder
                .certificate_store(CertificateStore::None)
                .add_root_certificate(certificate);
        }
        if config.insecure_skip_verify {
            builder = danger::accept_any_certificate(builder);
        }
    }
    builder
        .build_rustls()
        .map_err(|e| field.config("tls_config", &error_chain(&e)))
}

/// Turning certificate verification off: only for `tls_config.insecure_skip_verify`.
mod danger {
    use lettre::transport::smtp::client::TlsParametersBuilder;

    /// Accepts any certificate for any name: anyone on the path can read the mail and the
    /// password.
    pub(super) fn accept_any_certificate(builder: TlsParametersBuilder) -> TlsParametersBuilder {
        tracing::warn!(
            "Email tls_config.insecure_skip_verify is set; the SMTP server's certificate is not verified."
        );
        builder
            .dangerous_accept_invalid_certs(true)
            .dangerous_accept_invalid_hostnames(true)
    }
}

fn alert_name(alert: &AlertInfo) -> &str {
    alert
        .labels
        .get("alertname")
        .map_or("alert", String::as_str)
}

fn labels_text(alert: &AlertInfo) -> String {
    alert
        .labels
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn text_body(notification: &Notification) -> String {
    let mut text = format!("{}\n\n", notification.title());
    if !notification.external_url.is_empty() {
        let _ = writeln!(
            text,
            "View in Ai-semble Ops: {}\n",
            notification.external_url
        );
    }
    for (status, heading) in [
        (AlertStatus::Firing, "Firing"),
        (AlertStatus::Resolved, "Resolved"),
    ] {
        let alerts: Vec<&AlertInfo> = notification
            .alerts
            .iter()
            .filter(|a| a.status == status)
            .collect();
        if alerts.is_empty() {
            continue;
        }
        let _ = writeln!(text, "{heading} alerts ({}):\n", alerts.len());
        for alert in alerts {
            let _ = writeln!(text, "- {}", alert_name(alert));
            for (name, value) in &alert.annotations {
                let _ = writeln!(text, "  {name}: {value}");
            }
            let _ = writeln!(text, "  labels: {}", labels_text(alert));
            let _ = writeln!(text, "  started: {}", rfc3339(alert.starts_at));
            if let Some(ends_at) = alert.ends_at {
                let _ = writeln!(text, "  ended: {}", rfc3339(ends_at));
            }
            if !alert.generator_url.is_empty() {
                let _ = writeln!(text, "  source: {}", alert.generator_url);
            }
            text.push('\n');
        }
    }
    if notification.truncated_alerts > 0 {
        let _ = writeln!(text, "… and {} more", notification.truncated_alerts);
    }
    text
}

fn html_body(notification: &Notification) -> String {
    let title = html_escape(&notification.title());
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body style=\"font-family: sans-serif\">\n<h2>{title}</h2>\n"
    );
    if !notification.external_url.is_empty() {
        let url = html_escape(&notification.external_url);
        let _ = writeln!(html, "<p><a href=\"{url}\">View in Ai-semble Ops</a></p>");
    }
    for (status, heading) in [
        (AlertStatus::Firing, "Firing"),
        (AlertStatus::Resolved, "Resolved"),
    ] {
        let alerts: Vec<&AlertInfo> = notification
            .alerts
            .iter()
            .filter(|a| a.status == status)
            .collect();
        if alerts.is_empty() {
            continue;
        }
        let _ = writeln!(html, "<h3>{heading} alerts ({})</h3>\n<ul>", alerts.len());
        for alert in alerts {
            let _ = write!(
                html,
                "<li><strong>{}</strong>",
                html_escape(alert_name(alert))
            );
            for (name, value) in &alert.annotations {
                let _ = write!(html, "<br>{}: {}", html_escape(name), html_escape(value));
            }
            let _ = write!(
                html,
                "<br>labels: <code>{}</code><br>started: {}",
                html_escape(&labels_text(alert)),
                rfc3339(alert.starts_at)
            );
            if let Some(ends_at) = alert.ends_at {
                let _ = write!(html, "<br>ended: {}", rfc3339(ends_at));
            }
            if !alert.generator_url.is_empty() {
                let _ = write!(
                    html,
                    "<br><a href=\"{}\">source</a>",
                    html_escape(&alert.generator_url)
                );
            }
            html.push_str("</li>\n");
        }
        html.push_str("</ul>\n");
    }
    if notification.truncated_alerts > 0 {
        let _ = writeln!(html, "<p>… and {} more</p>", notification.truncated_alerts);
    }
    html.push_str("</body></html>\n");
    html
}
