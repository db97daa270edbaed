//! Forwarding to an external Alertmanager: `POST {url}/api/v2/alerts` with the group's alerts as
//! Prometheus sends them (`[{labels, annotations, startsAt, endsAt, generatorURL}]`).
//!
//! Resolved alerts carry their resolution time as `endsAt`. Firing alerts carry `endsAt` = now +
//! a time to live ([`super::BuildContext::forward_firing_for`]), as Prometheus does: the caller
//! must forward them again before then, or Alertmanager resolves them by itself.
//!
//! The payload types are a serialization boundary of their own (Alertmanager's API), private
//! here.

use std::{future::Future, pin::Pin, time::Duration, time::SystemTime};

use serde::Serialize;

use super::{
    AlertInfo, AlertStatus, LabelSet, Notification, Notifier, NotifyError, SecretUrl, post_json,
    rfc3339,
};

/// One `alertmanager_config`.
#[derive(Debug)]
pub(crate) struct AlertmanagerNotifier {
    url: SecretUrl,
    http: reqwest::Client,
    firing_for: Duration,
}

impl AlertmanagerNotifier {
    pub(crate) fn new(url: SecretUrl, http: reqwest::Client, firing_for: Duration) -> Self {
        Self {
            url,
            http,
            firing_for,
        }
    }

    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let now = SystemTime::now();
        let alerts: Vec<PostableAlert<'_>> = notification
            .alerts
            .iter()
            .map(|a| postable(a, now, self.firing_for))
            .collect();
        if alerts.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&alerts).map_err(|e| NotifyError::Message(e.to_string()))?;
        post_json(&self.http, self.url.expose(), body).await
    }
}

impl Notifier for AlertmanagerNotifier {
    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>> {
        Box::pin(self.send(notification))
    }
}

/// Alertmanager's `postableAlert`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct PostableAlert<'a> {
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
}

fn postable(alert: &AlertInfo, now: SystemTime, firing_for: Duration) -> PostableAlert<'_> {
    let ends_at = match alert.status {
        AlertStatus::Firing => now.checked_add(firing_for).unwrap_or(now),
        AlertStatus::Resolved => alert.ends_at.unwrap_or(now),
    };
    PostableAlert {
        labels: &alert.labels,
        annotations: &alert.annotations,
        starts_at: rfc3339(alert.starts_at),
        ends_at: rfc3339(ends_at),
        generator_url: &alert.generator_url,
    }
}
