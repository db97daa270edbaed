//! Slack incoming webhooks: one message with one attachment per notification, coloured by
//! severity and status, titled as Alertmanager titles it and linked to the alerts view.
//!
//! The payload types are a serialization boundary of their own (Slack's JSON), private here.

use std::{fmt::Write as _, future::Future, pin::Pin};

use serde::Serialize;

use super::{
    AlertStatus, Notification, Notifier, NotifyError, SecretUrl, Severity, config::SlackConfig,
    post_json,
};

/// Alerts listed in the text at most; the rest are counted.
const MAX_LISTED_ALERTS: usize = 20;

/// One `slack_config`.
#[derive(Debug)]
pub(crate) struct SlackNotifier {
    config: SlackConfig,
    url: SecretUrl,
    http: reqwest::Client,
}

impl SlackNotifier {
    pub(crate) fn new(config: SlackConfig, url: SecretUrl, http: reqwest::Client) -> Self {
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
        let body = serde_json::to_vec(&payload(&self.config, notification))
            .map_err(|e| NotifyError::Message(e.to_string()))?;
        post_json(&self.http, self.url.expose(), body).await
    }
}

impl Notifier for SlackNotifier {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>> {
        Box::pin(self.send(notification))
    }
}

#[derive(Serialize, Debug)]
struct Message<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon_emoji: Option<&'a str>,
    attachments: [Attachment<'a>; 1],
}

#[derive(Serialize, Debug)]
struct Attachment<'a> {
    color: &'static str,
    title: String,
    title_link: &'a str,
    text: String,
    fallback: String,
    mrkdwn_in: [&'static str; 3],
}

/// Slack's colour for a notification: resolved `good`, else by the highest firing severity.
pub(crate) fn color(notification: &Notification) -> &'static str {
    if notification.status == AlertStatus::Resolved {
        return "good";
    }
    match notification.firing_severity() {
        Some(Severity::Critical) => "danger",
        Some(Severity::Warning) => "warning",
        _ => "#439FE0",
    }
}

fn payload<'a>(config: &'a SlackConfig, notification: &'a Notification) -> Message<'a> {
    let title = config.title.clone().unwrap_or_else(|| notification.title());
    let text = config.text.clone().unwrap_or_else(|| text(notification));
    let fallback = format!("{title} | {}", notification.external_url);
    Message {
        channel: config.channel.as_deref(),
        username: config.username.as_deref(),
        icon_emoji: config.icon_emoji.as_deref(),
        attachments: [Attachment {
            color: color(notification),
            title,
            title_link: &notification.external_url,
            text,
            fallback,
            mrkdwn_in: ["fallback", "pretext", "text"],
        }],
    }
}

/// Each alert's summary, description and labels, in Slack's markdown.
fn text(notification: &Notification) -> String {
    let mut text = String::new();
    for alert in notification.alerts.iter().take(MAX_LISTED_ALERTS) {
        if !text.is_empty() {
            text.push('\n');
        }
        let name = alert
            .labels
            .get("alertname")
            .map_or("alert", String::as_str);
        let summary = alert
            .annotations
            .get("summary")
            .map_or(name, String::as_str);
        let _ = write!(text, "*Alert:* {summary}");
        if let Some(severity) = alert.labels.get("severity") {
            let _ = write!(text, " - `{severity}`");
        }
        if alert.status == AlertStatus::Resolved && notification.status == AlertStatus::Firing {
            text.push_str(" (resolved)");
        }
        text.push('\n');
        if let Some(description) = alert.annotations.get("description") {
            let _ = writeln!(text, "*Description:* {description}");
        }
        text.push_str("*Details:*\n");
        for (name, value) in &alert.labels {
            let _ = writeln!(text, " • *{name}:* `{value}`");
        }
    }
    let unlisted = notification.alerts.len().saturating_sub(MAX_LISTED_ALERTS) as u64
        + notification.truncated_alerts;
    if unlisted > 0 {
        let _ = writeln!(text, "\n… and {unlisted} more");
    }
    text
}
