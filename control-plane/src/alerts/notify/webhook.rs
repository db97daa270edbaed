//! Generic webhooks: Alertmanager's webhook payload (version 4), field for field, so receivers
//! written for Alertmanager work unchanged.
//!
//! The payload types are a serialization boundary of their own (Alertmanager's JSON), private
//! here.

use std::{future::Future, pin::Pin};

use serde::Serialize;

use super::{
    AlertInfo, LabelSet, Notification, Notifier, NotifyError, SecretUrl, ZERO_TIME,
    config::WebhookConfig, post_json, rfc3339,
};

/// One `webhook_config`.
#[derive(Debug)]
pub(crate) struct WebhookNotifier {
    config: WebhookConfig,
    url: SecretUrl,
    http: reqwest::Client,
}

impl WebhookNotifier {
    pub(crate) fn new(config: WebhookConfig, url: SecretUrl, http: reqwest::Client) -> Self {
        Self { config, url, http }
    }

    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let filtered;
        let notification = if self.config.send_resolved {
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
        let body = serde_json::to_vec(&payload(notification, self.config.max_alerts))
            .map_err(|e| NotifyError::Message(e.to_string()))?;
        post_json(&self.http, self.url.expose(), body).await
    }
}

impl Notifier for WebhookNotifier {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>> {
        Box::pin(self.send(notification))
    }
}

/// Alertmanager's `WebhookMessage`: its template data plus version, group key and truncation.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    receiver: &'a str,
    status: &'static str,
    alerts: Vec<Alert<'a>>,
    group_labels: &'a LabelSet,
    common_labels: &'a LabelSet,
    common_annotations: &'a LabelSet,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    version: &'static str,
    group_key: &'a str,
    truncated_alerts: u64,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Alert<'a> {
    status: &'static str,
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
    fingerprint: &'a str,
}

/// The payload, with at most `max_alerts` alerts (0 = all); the rest are added to
/// `truncatedAlerts`.
fn payload(notification: &Notification, max_alerts: u64) -> Message<'_> {
    let keep = match usize::try_from(max_alerts) {
        Ok(0) | Err(_) => notification.alerts.len(),
        Ok(max) => max.min(notification.alerts.len()),
    };
    let dropped = (notification.alerts.len() - keep) as u64;
    Message {
        receiver: &notification.receiver,
        status: notification.status.as_str(),
        alerts: notification.alerts[..keep].iter().map(alert).collect(),
        group_labels: &notification.group_labels,
        common_labels: &notification.common_labels,
        common_annotations: &notification.common_annotations,
        external_url: &notification.external_url,
        version: "4",
        group_key: &notification.group_key,
        truncated_alerts: notification.truncated_alerts + dropped,
    }
}

fn alert(alert: &AlertInfo) -> Alert<'_> {
    Alert {
        status: alert.status.as_str(),
        labels: &alert.labels,
        annotations: &alert.annotations,
        starts_at: rfc3339(alert.starts_at),
        ends_at: alert.ends_at.map_or_else(|| ZERO_TIME.to_owned(), rfc3339),
        generator_url: &alert.generator_url,
        fingerprint: &alert.fingerprint,
    }
}
