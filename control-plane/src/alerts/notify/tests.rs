//! Notifier tests against real receivers on loopback: an axum server recording what Slack, a
//! webhook or an Alertmanager would receive, and a real SMTP server (aiosmtpd, run with Debian's
//! `/usr/bin/python3`) with STARTTLS and AUTH. No sleeps for correctness: conditions are polled
//! with deadlines.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, http::Uri};
use prometheus::Registry;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, ChildStdin, Command},
};

use super::*;

// ---------------------------------------------------------------------------------------------
// Fixtures.

const EXTERNAL_URL: &str = "http://127.0.0.1:8080/#alerts";

/// 2023-11-14T22:13:20Z plus `millis`.
fn t(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + millis)
}

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn alert(name: &str, host: &str, severity: &str, status: AlertStatus) -> AlertInfo {
    AlertInfo {
        status,
        labels: labels(&[("alertname", name), ("host", host), ("severity", severity)]),
        annotations: labels(&[
            ("summary", &format!("{name} on {host}")),
            ("description", &format!("{host} is not well")),
        ]),
        starts_at: t(500),
        ends_at: (status == AlertStatus::Resolved).then(|| t(60_000)),
        generator_url: format!("http://127.0.0.1:8080/graph?g0.expr={name}"),
        fingerprint: "0123456789abcdef".to_owned(),
    }
}

/// A notification grouped by `alertname`, common labels and annotations computed.
fn notification(alerts: Vec<AlertInfo>) -> Notification {
    let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    };
    let common_labels = common(alerts.iter().map(|a| &a.labels));
    let group_labels = common_labels
        .iter()
        .filter(|(k, _)| *k == "alertname")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Notification {
        receiver: "team".to_owned(),
        group_key: "{}:{alertname=\"HighCpu\"}".to_owned(),
        status,
        group_labels,
        common_annotations: common(alerts.iter().map(|a| &a.annotations)),
        common_labels,
        external_url: EXTERNAL_URL.to_owned(),
        alerts,
        truncated_alerts: 0,
    }
}

fn high_cpu(hosts: &[&str], status: AlertStatus) -> Notification {
    notification(
        hosts
            .iter()
            .map(|h| alert("HighCpu", h, "warning", status))
            .collect(),
    )
}

#[track_caller]
fn receiver(yaml: &str) -> ReceiverConfig {
    match serde_saphyr::from_str(yaml) {
        Ok(config) => config,
        Err(e) => panic!("parsing {yaml}: {e}"),
    }
}

fn test_http() -> reqwest::Client {
    http_client(Duration::from_secs(5)).expect("http client")
}

fn ctx_with_env(env: &[(&str, &str)]) -> BuildContext {
    BuildContext {
        env: Arc::new(
            env.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
        ),
        ..BuildContext::new(test_http())
    }
}

#[track_caller]
fn only(notifiers: Vec<Arc<dyn Notifier>>) -> Arc<dyn Notifier> {
    assert_eq!(notifiers.len(), 1, "{notifiers:?}");
    notifiers.into_iter().next().expect("one notifier")
}

fn build_one(yaml: &str) -> Arc<dyn Notifier> {
    only(build_with(&receiver(yaml), &ctx_with_env(&[])).expect("build"))
}

/// Polls `condition` every 10 ms until it holds or `within` passes.
async fn eventually(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A recording HTTP receiver.

#[derive(Debug, Clone)]
struct Request {
    path: String,
    body: Value,
}

#[derive(Debug)]
struct Recorder {
    requests: Mutex<Vec<Request>>,
    /// Statuses for the next requests; then `status`.
    script: Mutex<VecDeque<u16>>,
    status: Mutex<u16>,
    /// While false, requests wait (to observe a delivery in flight).
    gate: tokio::sync::watch::Sender<bool>,
}

/// The server task is aborted when this is dropped.
#[derive(Debug)]
struct HttpReceiver {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpReceiver {
    async fn start(script: &[u16], status: u16) -> Self {
        let recorder = Arc::new(Recorder {
            requests: Mutex::default(),
            script: Mutex::new(script.iter().copied().collect()),
            status: Mutex::new(status),
            gate: tokio::sync::watch::Sender::new(true),
        });
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&recorder));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            recorder,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.recorder.requests.lock().expect("lock").clone()
    }

    fn n_requests(&self) -> usize {
        self.recorder.requests.lock().expect("lock").len()
    }

    fn set_status(&self, status: u16) {
        *self.recorder.status.lock().expect("lock") = status;
    }

    fn hold(&self, hold: bool) {
        self.recorder.gate.send_replace(!hold);
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(State(recorder): State<Arc<Recorder>>, uri: Uri, body: Bytes) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    recorder.requests.lock().expect("lock").push(Request {
        path: uri.path().to_owned(),
        body,
    });
    let mut gate = recorder.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    let scripted = recorder.script.lock().expect("lock").pop_front();
    let status = scripted.unwrap_or_else(|| *recorder.status.lock().expect("lock"));
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

// ---------------------------------------------------------------------------------------------
// Pure helpers.

#[test]
fn titles_follow_alertmanager() {
    let two = high_cpu(&["node-1", "node-1"], AlertStatus::Firing);
    assert_eq!(two.title(), "[FIRING:2] HighCpu (node-1 warning)");
    let mixed = notification(vec![
        alert("HighCpu", "node-1", "warning", AlertStatus::Firing),
        alert("HighCpu", "node-2", "warning", AlertStatus::Resolved),
    ]);
    assert_eq!(mixed.title(), "[FIRING:1] HighCpu (warning)");
    let resolved = high_cpu(&["node-1"], AlertStatus::Resolved);
    assert_eq!(resolved.title(), "[RESOLVED] HighCpu (node-1 warning)");
    let mut bare = high_cpu(&["node-1"], AlertStatus::Firing);
    bare.common_labels = bare.group_labels.clone();
    assert_eq!(bare.title(), "[FIRING:1] HighCpu");
}

#[test]
fn times_are_written_as_go_writes_rfc3339_nano() {
    for (time, expected) in [
        (t(0), "2023-11-14T22:13:20Z"),
        (t(500), "2023-11-14T22:13:20.5Z"),
        (
            t(1) + Duration::from_nanos(20),
            "2023-11-14T22:13:20.00100002Z",
        ),
        (UNIX_EPOCH - Duration::from_secs(1), "1970-01-01T00:00:00Z"),
        (
            UNIX_EPOCH + Duration::from_secs(400_000_000_000),
            "9999-12-31T23:59:59Z",
        ),
    ] {
        assert_eq!(rfc3339(time), expected);
    }
}

#[test]
fn retryable_errors() {
    let http = |status| NotifyError::Http {
        status,
        body: String::new(),
    };
    for (error, retryable) in [
        (http(500), true),
        (http(503), true),
        (http(429), true),
        (http(400), false),
        (http(404), false),
        (NotifyError::Transport("refused".into()), true),
        (NotifyError::Timeout(Duration::from_secs(1)), true),
        (
            NotifyError::Smtp {
                message: "451".into(),
                permanent: false,
            },
            true,
        ),
        (
            NotifyError::Smtp {
                message: "535".into(),
                permanent: true,
            },
            false,
        ),
        (NotifyError::CircuitOpen { retry_in: None }, false),
        (NotifyError::Message("bad header".into()), false),
    ] {
        assert_eq!(error.retryable(), retryable, "{error}");
    }
    assert_eq!(
        http(502).to_string(),
        "server answered http 502",
        "no dangling colon without a body"
    );
}

#[test]
fn without_resolved_recomputes_common_labels() {
    let mixed = notification(vec![
        alert("HighCpu", "node-1", "warning", AlertStatus::Firing),
        alert("HighCpu", "node-2", "warning", AlertStatus::Resolved),
    ]);
    assert!(!mixed.common_labels.contains_key("host"));
    let firing = mixed.without_resolved().expect("one firing");
    assert_eq!(firing.alerts.len(), 1);
    assert_eq!(firing.common_labels["host"], "node-1");
    assert_eq!(firing.title(), "[FIRING:1] HighCpu (node-1 warning)");
    assert!(
        high_cpu(&["node-1"], AlertStatus::Resolved)
            .without_resolved()
            .is_none()
    );
}

#[test]
fn html_is_escaped() {
    assert_eq!(
        html_escape("<b a=\"1\">&'</b>"),
        "&lt;b a=&quot;1&quot;&gt;&amp;&#39;&lt;/b&gt;"
    );
}

// ---------------------------------------------------------------------------------------------
// Config and secrets.

#[test]
fn defaults_follow_alertmanager() {
    let config = receiver(
        "name: team\n\
         slack_configs: [{api_url: 'http://127.0.0.1:1/hook'}]\n\
         email_configs: [{to: a@example.com, from: b@example.com, smarthost: 'localhost:25'}]\n\
         webhook_configs: [{url: 'http://127.0.0.1:1/hook'}]\n",
    );
    assert!(config.slack_configs[0].send_resolved);
    let email = &config.email_configs[0];
    assert!(!email.send_resolved);
    assert!(email.require_tls);
    assert_eq!(email.hello, "localhost");
    assert!(config.webhook_configs[0].send_resolved);
    assert_eq!(config.webhook_configs[0].max_alerts, 0);
    assert!(config.alertmanager_configs.is_empty());
}

#[test]
fn unknown_fields_are_refused() {
    let result = serde_saphyr::from_str::<ReceiverConfig>(
        "name: team\nwebhook_configs: [{url: 'http://x/', http_config: {}}]\n",
    );
    let error = result.expect_err("unknown field");
    assert!(error.to_string().contains("http_config"), "{error}");
}

#[test]
fn debug_output_hides_secrets() {
    let config = receiver(
        "name: team\n\
         slack_configs: [{api_url: 'https://hooks.slack.com/services/T0/B0/SLACKTOKEN'}]\n\
         webhook_configs: [{url: 'https://example.com/hook?token=HOOKTOKEN'}]\n\
         email_configs:\n\
         - {to: a@example.com, from: b@example.com, smarthost: 'localhost:587',\n\
         \u{20}  auth_username: alice, auth_password: MAILPASSWORD}\n",
    );
    let config_debug = format!("{config:?}");
    let notifiers = build_with(&config, &ctx_with_env(&[])).expect("build");
    assert_eq!(notifiers.len(), 3);
    let notifiers_debug = format!("{notifiers:?}");
    for secret in ["SLACKTOKEN", "HOOKTOKEN", "MAILPASSWORD"] {
        assert!(!config_debug.contains(secret), "{config_debug}");
        assert!(!notifiers_debug.contains(secret), "{notifiers_debug}");
    }
    assert!(config_debug.contains("<secret>"));
    assert_eq!(Secret::new("x").to_string(), "<secret>");
}

#[tokio::test]
async fn url_secrets_resolve_from_a_file_and_the_environment() {
    let server = HttpReceiver::start(&[], 200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("slack_url");
    std::fs::write(&file, format!("{}\n", server.url("/from-file"))).expect("write");
    let config = receiver(&format!(
        "name: team\n\
         slack_configs: [{{api_url_file: '{}'}}]\n\
         webhook_configs: [{{url_env: HOOK_URL}}]\n",
        file.display()
    ));
    let ctx = ctx_with_env(&[("HOOK_URL", &server.url("/from-env"))]);
    let notifiers = build_with(&config, &ctx).expect("build");
    let alerts = high_cpu(&["node-1"], AlertStatus::Firing);
    for notifier in &notifiers {
        notifier.notify(&alerts).await.expect("delivered");
    }
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/from-file", "/from-env"]);
}

#[track_caller]
fn check_build_error(yaml: &str, field: &str, message_part: &str) {
    let error = build_with(&receiver(yaml), &ctx_with_env(&[])).expect_err("invalid");
    let (got_receiver, got_field, message) = match &error {
        NotifyError::Config {
            receiver,
            field,
            message,
        }
        | NotifyError::Secret {
            receiver,
            field,
            message,
        } => (receiver, field, message),
        other => panic!("not a config error: {other:?}"),
    };
    assert_eq!(got_receiver, "team", "{error}");
    assert_eq!(got_field, field, "{error}");
    assert!(message.contains(message_part), "{error}");
    assert!(!error.retryable());
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("receiver \"team\": {field}: ")),
        "{text}"
    );
}

#[test]
fn bad_configs_name_the_receiver_and_the_field() {
    check_build_error(
        "name: team\nslack_configs: [{api_url_file: /nonexistent/slack-url}]",
        "slack_configs[0].api_url_file",
        "/nonexistent/slack-url",
    );
    check_build_error(
        "name: team\nwebhook_configs: [{url_env: AISEMBLE_TEST_UNSET_VARIABLE}]",
        "webhook_configs[0].url_env",
        "AISEMBLE_TEST_UNSET_VARIABLE is not set",
    );
    check_build_error(
        "name: team\nslack_configs: [{channel: '#ops'}]",
        "slack_configs[0].api_url",
        "one of api_url, api_url_file, api_url_env is required",
    );
    check_build_error(
        "name: team\nwebhook_configs: [{url: 'http://x/', url_env: X}]",
        "webhook_configs[0].url",
        "only one of",
    );
    check_build_error(
        "name: team\nwebhook_configs: [{}, {url: 'ftp://SECRETHOST/'}]",
        "webhook_configs[0].url",
        "required",
    );
    check_build_error(
        "name: team\nwebhook_configs: [{url: 'not a url SECRET'}]",
        "webhook_configs[0].url",
        "not a valid url",
    );
    check_build_error(
        "name: team\nemail_configs: [{to: '', from: b@example.com, smarthost: 'h:25'}]",
        "email_configs[0].to",
        "at least one address",
    );
    check_build_error(
        "name: team\nemail_configs: [{to: a@example.com, from: b@example.com, smarthost: h}]",
        "email_configs[0].smarthost",
        "host:port",
    );
    check_build_error(
        "name: team\nemail_configs: [{to: a@example.com, from: b@example.com, smarthost: 'h:25',\n  auth_username: alice}]",
        "email_configs[0].auth_password",
        "required",
    );
    check_build_error(
        "name: team\nemail_configs: [{to: a@example.com, from: b@example.com, smarthost: 'h:25',\n  auth_password_env: AISEMBLE_TEST_UNSET_VARIABLE, auth_username: alice}]",
        "email_configs[0].auth_password_env",
        "not set",
    );
    check_build_error(
        "name: team\nemail_configs: [{to: a@example.com, from: b@example.com, smarthost: 'h:25',\n  tls_config: {ca_file: /nonexistent/ca.pem}}]",
        "email_configs[0].tls_config.ca_file",
        "/nonexistent/ca.pem",
    );
    // The error text never contains the URL.
    let error = build_with(
        &receiver("name: team\nwebhook_configs: [{url: 'not a url SECRET'}]"),
        &ctx_with_env(&[]),
    )
    .expect_err("invalid");
    assert!(!error.to_string().contains("SECRET"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Slack.

#[tokio::test]
async fn slack_posts_one_attachment_coloured_titled_and_linked() {
    let server = HttpReceiver::start(&[], 200).await;
    let slack = build_one(&format!(
        "name: team\n\
         slack_configs:\n\
         - api_url: '{}'\n\
         \u{20} channel: '#ops'\n\
         \u{20} username: aisemble\n\
         \u{20} icon_emoji: ':fire:'\n",
        server.url("/services/T0/B0/x")
    ));
    assert_eq!(slack.kind(), "slack");
    slack
        .notify(&high_cpu(&["node-1", "node-1"], AlertStatus::Firing))
        .await
        .expect("delivered");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/services/T0/B0/x");
    let body = &requests[0].body;
    assert_eq!(body["channel"], "#ops");
    assert_eq!(body["username"], "aisemble");
    assert_eq!(body["icon_emoji"], ":fire:");
    let attachments = body["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1);
    let attachment = &attachments[0];
    assert_eq!(attachment["color"], "warning");
    assert_eq!(attachment["title"], "[FIRING:2] HighCpu (node-1 warning)");
    assert_eq!(attachment["title_link"], EXTERNAL_URL);
    assert_eq!(
        attachment["fallback"],
        format!("[FIRING:2] HighCpu (node-1 warning) | {EXTERNAL_URL}")
    );
    let text = attachment["text"].as_str().expect("text");
    assert!(
        text.contains("*Alert:* HighCpu on node-1 - `warning`"),
        "{text}"
    );
    assert!(text.contains("*Description:* node-1 is not well"), "{text}");
    assert!(text.contains(" • *host:* `node-1`"), "{text}");
}

#[tokio::test]
async fn slack_colours_by_severity_and_status() {
    let server = HttpReceiver::start(&[], 200).await;
    let slack = build_one(&format!(
        "name: team\nslack_configs: [{{api_url: '{}', title: Custom, text: Plain}}]",
        server.url("/hook")
    ));
    let cases = [
        (vec![("critical", AlertStatus::Firing)], "danger"),
        (vec![("warning", AlertStatus::Firing)], "warning"),
        (vec![("info", AlertStatus::Firing)], "#439FE0"),
        (vec![("page", AlertStatus::Firing)], "#439FE0"),
        (
            vec![
                ("warning", AlertStatus::Firing),
                ("critical", AlertStatus::Firing),
            ],
            "danger",
        ),
        (
            vec![
                ("critical", AlertStatus::Resolved),
                ("info", AlertStatus::Firing),
            ],
            "#439FE0",
        ),
        (vec![("critical", AlertStatus::Resolved)], "good"),
    ];
    for (alerts, _) in &cases {
        let alerts = alerts
            .iter()
            .enumerate()
            .map(|(i, (severity, status))| alert("Disk", &format!("node-{i}"), severity, *status))
            .collect();
        slack
            .notify(&notification(alerts))
            .await
            .expect("delivered");
    }
    let requests = server.requests();
    assert_eq!(requests.len(), cases.len());
    for (request, (alerts, color)) in requests.iter().zip(&cases) {
        let attachment = &request.body["attachments"][0];
        assert_eq!(attachment["color"], *color, "{alerts:?}");
        assert_eq!(attachment["title"], "Custom");
        assert_eq!(attachment["text"], "Plain");
        assert!(request.body.get("channel").is_none());
    }
}

#[tokio::test]
async fn slack_without_send_resolved_skips_resolved_alerts() {
    let server = HttpReceiver::start(&[], 200).await;
    let slack = build_one(&format!(
        "name: team\nslack_configs: [{{api_url: '{}', send_resolved: false}}]",
        server.url("/hook")
    ));
    slack
        .notify(&high_cpu(&["node-1"], AlertStatus::Resolved))
        .await
        .expect("nothing to send is success");
    assert_eq!(server.n_requests(), 0);
    let mixed = notification(vec![
        alert("HighCpu", "node-1", "warning", AlertStatus::Firing),
        alert("HighCpu", "node-2", "critical", AlertStatus::Resolved),
    ]);
    slack.notify(&mixed).await.expect("delivered");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let attachment = &requests[0].body["attachments"][0];
    assert_eq!(attachment["title"], "[FIRING:1] HighCpu (node-1 warning)");
    assert_eq!(attachment["color"], "warning");
    assert!(
        !attachment["text"]
            .as_str()
            .expect("text")
            .contains("node-2")
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook.

#[tokio::test]
async fn webhook_sends_alertmanagers_payload() {
    let server = HttpReceiver::start(&[], 200).await;
    let webhook = build_one(&format!(
        "name: team\nwebhook_configs: [{{url: '{}'}}]",
        server.url("/alerts")
    ));
    assert_eq!(webhook.kind(), "webhook");
    let mut alerts = notification(vec![
        alert("HighCpu", "node-1", "warning", AlertStatus::Firing),
        alert("HighCpu", "node-2", "warning", AlertStatus::Resolved),
    ]);
    alerts.truncated_alerts = 2;
    webhook.notify(&alerts).await.expect("delivered");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let expected = json!({
        "receiver": "team",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HighCpu", "host": "node-1", "severity": "warning"},
                "annotations": {"summary": "HighCpu on node-1", "description": "node-1 is not well"},
                "startsAt": "2023-11-14T22:13:20.5Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:8080/graph?g0.expr=HighCpu",
                "fingerprint": "0123456789abcdef"
            },
            {
                "status": "resolved",
                "labels": {"alertname": "HighCpu", "host": "node-2", "severity": "warning"},
                "annotations": {"summary": "HighCpu on node-2", "description": "node-2 is not well"},
                "startsAt": "2023-11-14T22:13:20.5Z",
                "endsAt": "2023-11-14T22:14:20Z",
                "generatorURL": "http://127.0.0.1:8080/graph?g0.expr=HighCpu",
                "fingerprint": "0123456789abcdef"
            }
        ],
        "groupLabels": {"alertname": "HighCpu"},
        "commonLabels": {"alertname": "HighCpu", "severity": "warning"},
        "commonAnnotations": {},
        "externalURL": EXTERNAL_URL,
        "version": "4",
        "groupKey": "{}:{alertname=\"HighCpu\"}",
        "truncatedAlerts": 2
    });
    assert_eq!(requests[0].body, expected);
}

#[tokio::test]
async fn webhook_honours_max_alerts_and_send_resolved() {
    let server = HttpReceiver::start(&[], 200).await;
    let config = receiver(&format!(
        "name: team\n\
         webhook_configs:\n\
         - {{url: '{url}', max_alerts: 2}}\n\
         - {{url: '{url}', send_resolved: false}}\n",
        url = server.url("/alerts")
    ));
    let notifiers = build_with(&config, &ctx_with_env(&[])).expect("build");
    let three = high_cpu(&["a", "b", "c"], AlertStatus::Firing);
    notifiers[0].notify(&three).await.expect("delivered");
    let body = &server.requests()[0].body;
    assert_eq!(body["alerts"].as_array().expect("alerts").len(), 2);
    assert_eq!(body["truncatedAlerts"], 1);
    notifiers[1]
        .notify(&high_cpu(&["a"], AlertStatus::Resolved))
        .await
        .expect("nothing to send is success");
    assert_eq!(server.n_requests(), 1, "resolved-only sends nothing");
}

// ---------------------------------------------------------------------------------------------
// Alertmanager forwarding.

#[tokio::test]
async fn alertmanager_forward_posts_postable_alerts() {
    let server = HttpReceiver::start(&[], 200).await;
    let forward = build_one(&format!(
        "name: team\nalertmanager_configs: [{{url: '{}'}}]",
        server.url("/am/")
    ));
    assert_eq!(forward.kind(), "alertmanager");
    let alerts = notification(vec![
        alert("HighCpu", "node-1", "warning", AlertStatus::Firing),
        alert("HighCpu", "node-2", "warning", AlertStatus::Resolved),
    ]);
    let before = SystemTime::now();
    forward.notify(&alerts).await.expect("delivered");
    let after = SystemTime::now();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/am/api/v2/alerts");
    let posted = requests[0].body.as_array().expect("an array");
    assert_eq!(posted.len(), 2);
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    };
    for alert in posted {
        assert_eq!(
            keys(alert),
            [
                "annotations",
                "endsAt",
                "generatorURL",
                "labels",
                "startsAt"
            ]
        );
        assert_eq!(alert["startsAt"], "2023-11-14T22:13:20.5Z");
    }
    assert_eq!(posted[0]["labels"]["host"], "node-1");
    let ends_at =
        humantime::parse_rfc3339(posted[0]["endsAt"].as_str().expect("endsAt")).expect("rfc 3339");
    let ttl = Duration::from_secs(180);
    assert!(
        ends_at >= before + ttl - Duration::from_secs(1) && ends_at <= after + ttl,
        "firing endsAt is now + 3m: {:?}",
        posted[0]["endsAt"]
    );
    assert_eq!(posted[1]["endsAt"], "2023-11-14T22:14:20Z");
}

// ---------------------------------------------------------------------------------------------
// Delivery: retries, the breaker, metrics and logs.

fn fast_policy() -> DeliveryPolicy {
    DeliveryPolicy {
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        give_up_after: Duration::from_secs(5),
        breaker_threshold: 5,
        // Long enough that a loaded machine still sees the breaker open before it half-opens.
        breaker_open_for: Duration::from_secs(1),
    }
}

fn webhook_delivery(
    server: &HttpReceiver,
    policy: DeliveryPolicy,
) -> (Arc<Delivery>, NotifierMetrics, Registry) {
    let registry = Registry::new();
    let metrics = NotifierMetrics::register(&registry).expect("register");
    let config = receiver(&format!(
        "name: ops\nwebhook_configs: [{{url: '{}'}}]",
        server.url("/hooks/SECRETTOKEN")
    ));
    let mut deliveries = deliveries(&config, &ctx_with_env(&[]), &policy, &metrics).expect("build");
    assert_eq!(deliveries.len(), 1);
    let delivery = deliveries.pop().expect("one");
    assert_eq!(
        (delivery.receiver(), delivery.integration()),
        ("ops", "webhook")
    );
    (Arc::new(delivery), metrics, registry)
}

fn counts(metrics: &NotifierMetrics) -> (u64, u64, u64, i64) {
    let labels = ["ops", "webhook"];
    (
        metrics.notifications.with_label_values(&labels).get(),
        metrics
            .notifications_failed
            .with_label_values(&labels)
            .get(),
        metrics
            .latency_seconds
            .with_label_values(&labels)
            .get_sample_count(),
        metrics.circuit_state.with_label_values(&labels).get(),
    )
}

#[tokio::test]
async fn retries_server_errors_until_delivered() {
    let server = HttpReceiver::start(&[500, 503], 200).await;
    let (delivery, metrics, _registry) = webhook_delivery(&server, fast_policy());
    let alerts = high_cpu(&["node-1"], AlertStatus::Firing);
    delivery.deliver(&alerts).await.expect("delivered");
    assert_eq!(server.n_requests(), 3);
    assert_eq!(counts(&metrics), (1, 0, 3, 0));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = HttpReceiver::start(&[400], 200).await;
    let (delivery, metrics, _registry) = webhook_delivery(&server, fast_policy());
    let error = delivery
        .deliver(&high_cpu(&["node-1"], AlertStatus::Firing))
        .await
        .expect_err("400");
    assert!(
        matches!(error, NotifyError::Http { status: 400, .. }),
        "{error:?}"
    );
    assert_eq!(server.n_requests(), 1);
    assert_eq!(counts(&metrics), (1, 1, 1, 0));
    // 429 is retried.
    let server = HttpReceiver::start(&[429], 200).await;
    let (delivery, _metrics, _registry) = webhook_delivery(&server, fast_policy());
    delivery
        .deliver(&high_cpu(&["node-1"], AlertStatus::Firing))
        .await
        .expect("delivered after 429");
    assert_eq!(server.n_requests(), 2);
}

#[tokio::test]
async fn gives_up_when_the_budget_is_spent() {
    let server = HttpReceiver::start(&[], 500).await;
    let policy = DeliveryPolicy {
        give_up_after: Duration::from_millis(300),
        ..fast_policy()
    };
    let (delivery, metrics, _registry) = webhook_delivery(&server, policy);
    let started = std::time::Instant::now();
    let error = delivery
        .deliver(&high_cpu(&["node-1"], AlertStatus::Firing))
        .await
        .expect_err("always 500");
    assert!(started.elapsed() < Duration::from_secs(3), "bounded");
    assert!(
        matches!(error, NotifyError::Http { status: 500, .. }),
        "{error:?}"
    );
    let n = server.n_requests();
    assert!(n >= 3, "retried within the budget: {n} requests");
    let (total, failed, attempts, state) = counts(&metrics);
    assert_eq!((total, failed, attempts, state), (1, 1, n as u64, 0));
}

#[tokio::test]
async fn attempts_are_cut_off_at_the_budget() {
    let server = HttpReceiver::start(&[], 200).await;
    server.hold(true);
    let policy = DeliveryPolicy {
        give_up_after: Duration::from_millis(200),
        ..fast_policy()
    };
    let (delivery, _metrics, _registry) = webhook_delivery(&server, policy);
    let error = delivery
        .deliver(&high_cpu(&["node-1"], AlertStatus::Firing))
        .await
        .expect_err("held past the budget");
    assert!(matches!(error, NotifyError::Timeout(_)), "{error:?}");
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_recovers_through_a_trial() {
    let server = HttpReceiver::start(&[], 500).await;
    let policy = DeliveryPolicy {
        give_up_after: Duration::from_millis(60),
        ..fast_policy()
    };
    let (delivery, metrics, registry) = webhook_delivery(&server, policy);
    let alerts = high_cpu(&["node-1"], AlertStatus::Firing);
    for i in 1..=5 {
        let error = delivery.deliver(&alerts).await.expect_err("500");
        assert!(
            matches!(error, NotifyError::Http { status: 500, .. }),
            "{error:?}"
        );
        let expected = if i < 5 {
            BreakerState::Closed
        } else {
            BreakerState::Open
        };
        assert_eq!(delivery.circuit_state(), expected, "after {i} failures");
    }
    assert_eq!(counts(&metrics).3, 1, "gauge reads open");
    let mut text = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut text,
    )
    .expect("encode");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(
        text.contains(
            "aisemble_notifier_circuit_state{integration=\"webhook\",receiver=\"ops\"} 1"
        ),
        "{text}"
    );

    // Open: fails fast, no request.
    let n_requests = server.n_requests();
    let error = delivery.deliver(&alerts).await.expect_err("open");
    assert!(
        matches!(error, NotifyError::CircuitOpen { retry_in: Some(_) }),
        "{error:?}"
    );
    assert!(!error.retryable());
    assert_eq!(server.n_requests(), n_requests, "no request while open");
    assert_eq!(counts(&metrics).1, 6);

    // Half-open after open_for: one trial; it fails, so the breaker opens again.
    eventually(Duration::from_secs(5), "half-open", || {
        delivery.circuit_state() == BreakerState::HalfOpen
    })
    .await;
    delivery.deliver(&alerts).await.expect_err("trial fails");
    assert!(server.n_requests() > n_requests, "the trial was sent");
    assert_eq!(delivery.circuit_state(), BreakerState::Open);
    assert_eq!(counts(&metrics).3, 1);

    // Fixed server; the next trial is held in flight: gauge half-open, others fail fast.
    server.set_status(200);
    server.hold(true);
    eventually(Duration::from_secs(5), "half-open again", || {
        delivery.circuit_state() == BreakerState::HalfOpen
    })
    .await;
    let n_requests = server.n_requests();
    let trial = tokio::spawn({
        let (delivery, alerts) = (Arc::clone(&delivery), alerts.clone());
        async move { delivery.deliver(&alerts).await }
    });
    eventually(Duration::from_secs(5), "the trial in flight", || {
        server.n_requests() > n_requests
    })
    .await;
    assert_eq!(counts(&metrics).3, 2, "gauge reads half-open");
    let error = delivery.deliver(&alerts).await.expect_err("trial running");
    assert!(
        matches!(error, NotifyError::CircuitOpen { retry_in: None }),
        "{error:?}"
    );
    server.hold(false);
    trial.await.expect("join").expect("the trial succeeds");
    assert_eq!(delivery.circuit_state(), BreakerState::Closed);
    assert_eq!(counts(&metrics).3, 0, "gauge reads closed");
    delivery.deliver(&alerts).await.expect("closed again");
}

#[tokio::test]
async fn a_cancelled_trial_frees_the_next_one() {
    let server = HttpReceiver::start(&[], 400).await;
    let policy = DeliveryPolicy {
        breaker_threshold: 1,
        ..fast_policy()
    };
    let (delivery, _metrics, _registry) = webhook_delivery(&server, policy);
    let alerts = high_cpu(&["node-1"], AlertStatus::Firing);
    delivery.deliver(&alerts).await.expect_err("400");
    assert_eq!(delivery.circuit_state(), BreakerState::Open);
    server.hold(true);
    eventually(Duration::from_secs(5), "half-open", || {
        delivery.circuit_state() == BreakerState::HalfOpen
    })
    .await;
    let cancelled =
        tokio::time::timeout(Duration::from_millis(50), delivery.deliver(&alerts)).await;
    assert!(cancelled.is_err(), "the held trial is cancelled");
    server.set_status(200);
    server.hold(false);
    delivery
        .deliver(&alerts)
        .await
        .expect("the next delivery is the trial");
    assert_eq!(delivery.circuit_state(), BreakerState::Closed);
}

#[derive(Debug, Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn one_warning_per_failed_delivery_and_never_the_url() {
    // A global subscriber, not a thread-local one: tracing caches each callsite's interest
    // process-wide, and a callsite first hit on another test's thread (no subscriber there)
    // would stay disabled for a thread-local one. Lines are told apart by the receiver's name.
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "aisemble_control_plane=debug",
        ))
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("no other test installs a global subscriber");
    tracing::callsite::rebuild_interest_cache();

    let server = HttpReceiver::start(&[500, 500], 400).await;
    let registry = Registry::new();
    let metrics = NotifierMetrics::register(&registry).expect("register");
    let config = receiver(&format!(
        "name: logged-receiver\nwebhook_configs: [{{url: '{}'}}]",
        server.url("/hooks/SECRETTOKEN")
    ));
    let delivery = deliveries(&config, &ctx_with_env(&[]), &fast_policy(), &metrics)
        .expect("build")
        .pop()
        .expect("one");
    let error = delivery
        .deliver(&high_cpu(&["node-1"], AlertStatus::Firing))
        .await
        .expect_err("400 in the end");
    assert!(matches!(error, NotifyError::Http { status: 400, .. }));
    // A receiver that refuses connections: the transport error has no URL either.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let refused = build_one(&format!(
        "name: ops\nwebhook_configs: [{{url: 'http://127.0.0.1:{closed_port}/hooks/SECRETTOKEN'}}]"
    ));
    let error = refused
        .notify(&high_cpu(&["node-1"], AlertStatus::Firing))
        .await
        .expect_err("refused");
    assert!(
        matches!(error, NotifyError::Transport(_)) && error.retryable(),
        "{error:?}"
    );
    assert!(!error.to_string().contains("SECRETTOKEN"), "{error}");
    assert!(!format!("{error:?}").contains("SECRETTOKEN"), "{error:?}");

    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("receiver=logged-receiver"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    let warning = warnings[0];
    for part in [
        "integration=webhook",
        "n_attempts=3",
        "error=server answered http 400",
        "Notification delivery failed.",
    ] {
        assert!(warning.contains(part), "{part:?} in {warning}");
    }
    assert!(!text.contains("SECRETTOKEN"), "{text}");
}

#[test]
fn metrics_register_once_per_registry() {
    let registry = Registry::new();
    NotifierMetrics::register(&registry).expect("first");
    assert!(NotifierMetrics::register(&registry).is_err(), "names taken");
}

#[tokio::test]
async fn integration_names_are_unique_within_a_receiver() {
    let registry = Registry::new();
    let metrics = NotifierMetrics::register(&registry).expect("register");
    let config = receiver(
        "name: team\n\
         slack_configs: [{api_url: 'http://127.0.0.1:1/a'}, {api_url: 'http://127.0.0.1:1/b'}]\n\
         webhook_configs: [{url: 'http://127.0.0.1:1/c'}]\n\
         alertmanager_configs: [{url: 'http://127.0.0.1:1'}]\n",
    );
    let names: Vec<String> = deliveries(
        &config,
        &ctx_with_env(&[]),
        &DeliveryPolicy::default(),
        &metrics,
    )
    .expect("build")
    .iter()
    .map(|d| d.integration().to_owned())
    .collect();
    assert_eq!(names, ["slack", "slack[1]", "webhook", "alertmanager"]);
    assert_eq!(
        metrics
            .circuit_state
            .with_label_values(&["team", "slack[1]"])
            .get(),
        0,
        "series exist from the start"
    );
}

// ---------------------------------------------------------------------------------------------
// Email against a real SMTP server.

/// Debian's interpreter, which has python3-aiosmtpd (a pyenv `python3` on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

fn smtp_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/alerts/notify/testdata/smtp_server.py")
}

/// An aiosmtpd process; killed when dropped.
#[derive(Debug)]
struct SmtpServer {
    port: u16,
    out: PathBuf,
    _child: Child,
    _stdin: ChildStdin,
}

impl SmtpServer {
    async fn start(dir: &Path, tls: Option<&TestCerts>, auth: Option<(&str, &str)>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let out = dir.join(format!("mail-{port}.jsonl"));
        let stderr_path = dir.join(format!("smtp-{port}.log"));
        let mut command = Command::new(PYTHON);
        command
            .arg(smtp_script())
            .args(["--port", &port.to_string()])
            .arg("--out")
            .arg(&out);
        if let Some(certs) = tls {
            command
                .arg("--cert")
                .arg(&certs.server_cert)
                .arg("--key")
                .arg(&certs.server_key);
        }
        if let Some((user, password)) = auth {
            command.args(["--user", user, "--password", password]);
        }
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn /usr/bin/python3 (is python3-aiosmtpd installed?)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let ready = tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await;
        if !matches!(ready, Ok(Ok(_))) || line.trim() != "ready" {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("the SMTP server did not start ({ready:?}, {line:?}): {log}");
        }
        Self {
            port,
            out,
            _child: child,
            _stdin: stdin,
        }
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost, as PEM files.
#[derive(Debug)]
struct TestCerts {
    ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn test_certs(dir: &Path, name: &str) -> TestCerts {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test smtp ca"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let certs = TestCerts {
        ca_cert: dir.join(format!("{name}-ca.pem")),
        server_cert: dir.join(format!("{name}-server.pem")),
        server_key: dir.join(format!("{name}-server.key")),
    };
    std::fs::write(&certs.ca_cert, ca_cert.pem()).expect("write");
    std::fs::write(&certs.server_cert, cert.pem()).expect("write");
    std::fs::write(&certs.server_key, key.serialize_pem()).expect("write");
    certs
}

fn email_yaml(port: u16, extra: &str) -> String {
    format!(
        "name: mail\n\
         email_configs:\n\
         - to: 'ops@example.com, On Call <oncall@example.com>'\n\
         \u{20} from: 'Ai-semble <aisemble@example.com>'\n\
         \u{20} smarthost: '127.0.0.1:{port}'\n\
         {extra}"
    )
}

fn build_email(yaml: &str, env: &[(&str, &str)]) -> Arc<dyn Notifier> {
    let ctx = BuildContext {
        smtp_timeout: Duration::from_secs(10),
        ..ctx_with_env(env)
    };
    only(build_with(&receiver(yaml), &ctx).expect("build"))
}

#[tokio::test]
async fn email_over_starttls_with_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = test_certs(dir.path(), "good");
    let server = SmtpServer::start(dir.path(), Some(&certs), Some(("alice", "s3cret"))).await;
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "s3cret\n").expect("write");
    let email = build_email(
        &email_yaml(
            server.port,
            &format!(
                "\u{20} auth_username: alice\n\
                 \u{20} auth_password_file: '{}'\n\
                 \u{20} tls_config: {{ca_file: '{}'}}\n",
                password_file.display(),
                certs.ca_cert.display()
            ),
        ),
        &[],
    );
    assert_eq!(email.kind(), "email");
    let mut alerts = high_cpu(&["node-1"], AlertStatus::Firing);
    alerts.alerts[0]
        .annotations
        .insert("runbook".to_owned(), "<check> & restart".to_owned());
    email.notify(&alerts).await.expect("sent");
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert_eq!(message["subject"], "[FIRING:1] HighCpu (node-1 warning)");
    assert_eq!(message["mail_from"], "aisemble@example.com");
    assert_eq!(
        message["rcpt_tos"],
        json!(["ops@example.com", "oncall@example.com"])
    );
    assert_eq!(
        message["to"],
        "ops@example.com, On Call <oncall@example.com>"
    );
    assert_eq!(message["from"], "Ai-semble <aisemble@example.com>");
    assert_eq!(message["content_type"], "multipart/alternative");
    assert_eq!(message["tls"], true);
    assert_eq!(message["authenticated"], true);
    let text = message["text"].as_str().expect("text part");
    for part in [
        "[FIRING:1] HighCpu (node-1 warning)",
        EXTERNAL_URL,
        "Firing alerts (1):",
        "- HighCpu",
        "summary: HighCpu on node-1",
        "labels: alertname=HighCpu, host=node-1, severity=warning",
        "started: 2023-11-14T22:13:20.5Z",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    let html = message["html"].as_str().expect("html part");
    assert!(html.contains("<strong>HighCpu</strong>"), "{html}");
    assert!(
        html.contains("&lt;check&gt; &amp; restart"),
        "escaped: {html}"
    );
    assert!(
        html.contains(&format!("<a href=\"{EXTERNAL_URL}\">")),
        "{html}"
    );
}

#[tokio::test]
async fn email_with_a_wrong_password_is_a_permanent_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = test_certs(dir.path(), "good");
    let server = SmtpServer::start(dir.path(), Some(&certs), Some(("alice", "s3cret"))).await;
    let email = build_email(
        &email_yaml(
            server.port,
            &format!(
                "\u{20} auth_username: alice\n\
                 \u{20} auth_password_env: SMTP_PASSWORD\n\
                 \u{20} tls_config: {{ca_file: '{}'}}\n",
                certs.ca_cert.display()
            ),
        ),
        &[("SMTP_PASSWORD", "wrong")],
    );
    let error = email
        .notify(&high_cpu(&["node-1"], AlertStatus::Firing))
        .await
        .expect_err("wrong password");
    assert!(
        matches!(
            &error,
            NotifyError::Smtp {
                permanent: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.retryable());
    assert!(error.to_string().contains("535"), "{error}");
    assert!(!error.to_string().contains("wrong"), "{error}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn email_verifies_the_servers_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_certs = test_certs(dir.path(), "server");
    let other_ca = test_certs(dir.path(), "other");
    let server = SmtpServer::start(dir.path(), Some(&server_certs), None).await;
    let untrusted = build_email(
        &email_yaml(
            server.port,
            &format!(
                "\u{20} tls_config: {{ca_file: '{}'}}\n",
                other_ca.ca_cert.display()
            ),
        ),
        &[],
    );
    let alerts = high_cpu(&["node-1"], AlertStatus::Firing);
    let error = untrusted.notify(&alerts).await.expect_err("unknown CA");
    assert!(matches!(error, NotifyError::Smtp { .. }), "{error:?}");
    assert!(server.messages().is_empty());
    let insecure = build_email(
        &email_yaml(
            server.port,
            "\u{20} tls_config: {insecure_skip_verify: true}\n",
        ),
        &[],
    );
    insecure.notify(&alerts).await.expect("sent unverified");
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn email_in_plain_text_and_require_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = SmtpServer::start(dir.path(), None, None).await;
    // Default require_tls: the server offers no STARTTLS, so nothing is sent.
    let strict = build_email(&email_yaml(server.port, ""), &[]);
    let alerts = high_cpu(&["node-1"], AlertStatus::Firing);
    let error = strict.notify(&alerts).await.expect_err("no STARTTLS");
    assert!(!error.retryable(), "{error:?}");
    assert!(server.messages().is_empty());
    // require_tls: false; resolved alerts are skipped by default, then sent with send_resolved.
    let plain = build_email(&email_yaml(server.port, "\u{20} require_tls: false\n"), &[]);
    let resolved = high_cpu(&["node-1"], AlertStatus::Resolved);
    plain.notify(&resolved).await.expect("nothing to send");
    assert!(
        server.messages().is_empty(),
        "send_resolved defaults to false"
    );
    plain.notify(&alerts).await.expect("sent");
    let with_resolved = build_email(
        &email_yaml(
            server.port,
            "\u{20} require_tls: false\n\u{20} send_resolved: true\n",
        ),
        &[],
    );
    with_resolved.notify(&resolved).await.expect("sent");
    let messages = server.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(
        messages[0]["subject"],
        "[FIRING:1] HighCpu (node-1 warning)"
    );
    assert_eq!(messages[0]["tls"], false);
    assert_eq!(
        messages[1]["subject"],
        "[RESOLVED] HighCpu (node-1 warning)"
    );
    let text = messages[1]["text"].as_str().expect("text");
    assert!(text.contains("Resolved alerts (1):"), "{text}");
    assert!(text.contains("ended: 2023-11-14T22:14:20Z"), "{text}");
}
