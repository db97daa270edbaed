//! Alerting end to end: a scripted agent's CPU crosses a threshold over real mTLS QUIC; the
//! control plane's rules fire; Slack (a local HTTP server), a webhook and a real SMTP server
//! (aiosmtpd) each get exactly one notification, and one when it resolves. Silences and
//! inhibition mute; a receiver answering 500 is retried, circuit-broken and recovers; alerts are
//! forwarded to a real `prometheus-alertmanager`; a restart neither loses a `for` nor repeats a
//! notification.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::tempdir;
use crate::{
    fake_agent::{FakeAgent, now_ms},
    http::metric_value,
    process::ControlPlane,
    wait,
};

/// A local HTTP receiver: records every request body; answers with `status`.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let receiver = Self {
            addr: listener.local_addr().expect("addr"),
            bodies: Arc::new(Mutex::new(Vec::new())),
            status: Arc::new(AtomicU16::new(200)),
        };
        let shared = receiver.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    // Read the head, then Content-Length bytes of body.
                    let (head_end, length) = loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = &buf[head_end..(head_end + length).min(buf.len())];
                    let status = shared.status.load(Ordering::SeqCst);
                    if let Ok(json) = serde_json::from_slice::<Value>(body) {
                        let mut json = json;
                        if let Some(map) = json.as_object_mut() {
                            map.insert("_status".into(), json!(status));
                        }
                        shared.bodies.lock().expect("lock").push(json);
                    }
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        receiver
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn all(&self) -> Vec<Value> {
        self.bodies.lock().expect("lock").clone()
    }

    /// Requests answered with 200.
    fn delivered(&self) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|b| b["_status"] == 200)
            .collect()
    }
}

/// A real SMTP server (aiosmtpd under Debian's python3) writing each message as a JSON line.
struct Smtp {
    port: u16,
    out: PathBuf,
    child: Child,
}

impl Smtp {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let out = dir.join("smtp.jsonl");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../control-plane/src/alerts/notify/testdata/smtp_server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("aiosmtpd is required (Debian package python3-aiosmtpd; .ci/run installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        match reader.next() {
            Some(Ok(line)) if line.contains("ready") => {}
            other => panic!("the SMTP server did not start: {other:?}"),
        }
        Self { port, out, child }
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A control plane with `rules` (one rule file) and `routing` (an Alertmanager config) and a
/// fast evaluation interval.
fn control_plane(dir: &Path, rules: &str, routing: &str, extra: &str) -> ControlPlane {
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).expect("rules dir");
    std::fs::write(rules_dir.join("test.yml"), rules).expect("rules");
    std::fs::write(dir.join("alertmanager.yml"), routing).expect("routing");
    let config = dir.join("cp.toml");
    std::fs::write(
        &config,
        format!(
            "[alerting]\nrules_dir = {:?}\nalertmanager_config = {:?}\nevaluation_interval = \"500ms\"\n{extra}",
            rules_dir.display().to_string(),
            dir.join("alertmanager.yml").display().to_string()
        ),
    )
    .expect("config");
    ControlPlane::serve_with_config(&dir.join("data"), &config)
}

const CPU_RULES: &str = r#"
groups:
  - name: e2e
    rules:
      - alert: HighCpu
        expr: aisemble_system_cpu_usage_percent > 80
        for: 2s
        labels:
          severity: warning
        annotations:
          summary: 'CPU on {{ $labels.host }} at {{ $value }}%'
      - alert: HighCpu
        expr: aisemble_system_cpu_usage_percent > 95
        for: 2s
        labels:
          severity: critical
        annotations:
          summary: 'CPU on {{ $labels.host }} at {{ $value }}% (critical)'
"#;

/// Sends `cpu` every 200 ms from `agent` until `stop`.
fn keep_sending(
    mut agent: FakeAgent,
    cpu: Arc<Mutex<f64>>,
    stop: tokio_util_like::Stop,
) -> tokio::task::JoinHandle<FakeAgent> {
    tokio::spawn(async move {
        while !stop.stopped() {
            let value = *cpu.lock().expect("lock");
            agent
                .send(
                    now_ms(),
                    &[("aisemble_system_cpu_usage_percent", &[], value)],
                )
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        agent
    })
}

mod tokio_util_like {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    /// A stop flag for the sender tasks.
    #[derive(Clone, Default)]
    pub(super) struct Stop(Arc<AtomicBool>);

    impl Stop {
        pub(super) fn stop(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
        pub(super) fn stopped(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }
}

fn firing(bodies: &[Value]) -> usize {
    bodies.iter().filter(|b| b["status"] == "firing").count()
}

fn resolved(bodies: &[Value]) -> usize {
    bodies.iter().filter(|b| b["status"] == "resolved").count()
}

fn slack_firing(bodies: &[Value]) -> usize {
    bodies
        .iter()
        .filter(|b| {
            b["attachments"][0]["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("[FIRING"))
        })
        .count()
}

fn slack_resolved(bodies: &[Value]) -> usize {
    bodies
        .iter()
        .filter(|b| {
            b["attachments"][0]["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("[RESOLVED"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_per_receiver_when_firing_and_when_resolved() {
    let dir = tempdir();
    let slack = Receiver::start().await;
    let webhook = Receiver::start().await;
    let smtp = Smtp::start(dir.path());
    let routing = format!(
        r#"
route:
  receiver: team
  group_by: [alertname, host]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: team
    slack_configs:
      - api_url: '{}'
        channel: '#ops'
    email_configs:
      - to: 'oncall@example.com'
        from: 'aisemble@example.com'
        smarthost: '127.0.0.1:{}'
        require_tls: false
        send_resolved: true
    webhook_configs:
      - url: '{}'
"#,
        slack.url("/slack"),
        smtp.port,
        webhook.url("/hook")
    );
    let cp = control_plane(dir.path(), CPU_RULES, &routing, "");
    let api = cp.api();
    let cpu = Arc::new(Mutex::new(40.0));
    let stop = tokio_util_like::Stop::default();
    let agent = FakeAgent::connect(&cp, "gpu-1", dir.path()).await;
    let sender = keep_sending(agent, Arc::clone(&cpu), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        slack.all().is_empty() && webhook.all().is_empty(),
        "nothing fires below 80 %"
    );

    let breach = Instant::now();
    *cpu.lock().expect("lock") = 90.0;
    wait::until(
        Duration::from_secs(20),
        "a firing notification on Slack",
        || async { (slack_firing(&slack.delivered()) >= 1).then_some(()) },
    )
    .await;
    let latency = breach.elapsed();
    wait::until(
        Duration::from_secs(20),
        "firing webhook and email",
        || async {
            (firing(&webhook.delivered()) >= 1 && !smtp.messages().is_empty()).then_some(())
        },
    )
    .await;
    // for (2 s) + evaluation (0.5 s) + group_wait (1 s), plus slack for the 2-core CI machine.
    assert!(
        latency < Duration::from_secs(8),
        "breach to notification took {latency:?}"
    );
    // Several group intervals later, still exactly one of each.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(slack_firing(&slack.delivered()), 1, "{:#?}", slack.all());
    assert_eq!(firing(&webhook.delivered()), 1, "{:#?}", webhook.all());
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:#?}");

    // What each got.
    let slack_body = &slack.delivered()[0];
    let attachment = &slack_body["attachments"][0];
    assert_eq!(attachment["color"], "warning");
    assert_eq!(slack_body["channel"], "#ops");
    assert!(
        attachment["title_link"]
            .as_str()
            .is_some_and(|l| l.starts_with(&format!("http://{}", cp.http))),
        "{slack_body}"
    );
    assert!(
        attachment["text"]
            .as_str()
            .is_some_and(|t| t.contains("CPU on gpu-1 at 90%")),
        "{slack_body}"
    );
    let hook = &webhook.delivered()[0];
    assert_eq!(hook["version"], "4");
    assert_eq!(hook["receiver"], "team");
    assert_eq!(
        hook["groupLabels"],
        json!({"alertname": "HighCpu", "host": "gpu-1"})
    );
    assert_eq!(hook["alerts"][0]["labels"]["severity"], "warning");
    assert_eq!(hook["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        hook["groupKey"]
            .as_str()
            .is_some_and(|k| k.contains("alertname=\"HighCpu\"")),
        "{hook}"
    );
    assert!(
        mails[0]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("FIRING") && s.contains("HighCpu")),
        "{mails:?}"
    );
    assert_eq!(mails[0]["rcpt_tos"], json!(["oncall@example.com"]));

    // The fleet view shows it firing.
    let (code, alerts) = api.get("/ops/alerts?state=firing").await.expect("alerts");
    assert_eq!(code, 200);
    let firing_now = alerts["alerts"].as_array().expect("alerts");
    assert_eq!(firing_now.len(), 1, "{alerts}");
    assert_eq!(firing_now[0]["host"], "gpu-1");
    assert_eq!(firing_now[0]["severity"], "warning");

    // Resolution: one resolved notification each.
    *cpu.lock().expect("lock") = 30.0;
    wait::until(
        Duration::from_secs(20),
        "resolved notifications",
        || async {
            (slack_resolved(&slack.delivered()) == 1
                && resolved(&webhook.delivered()) == 1
                && smtp.messages().len() == 2)
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(slack_resolved(&slack.delivered()), 1);
    assert_eq!(slack.delivered().len(), 2, "{:#?}", slack.all());
    assert_eq!(webhook.delivered().len(), 2, "{:#?}", webhook.all());
    assert_eq!(smtp.messages().len(), 2);
    let resolved_hook = &webhook.delivered()[1];
    assert_eq!(resolved_hook["alerts"][0]["status"], "resolved");
    assert_ne!(resolved_hook["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    // History has the alert with its start and end.
    let (_, alerts) = api.get("/ops/alerts?history=10").await.expect("alerts");
    let history = alerts["history"].as_array().expect("history");
    assert!(
        history
            .iter()
            .any(|h| h["name"] == "HighCpu" && h["host"] == "gpu-1" && h["ends_at"].is_string()),
        "{alerts}"
    );
    stop.stop();
    let _ = sender.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_and_inhibition_mute() {
    let dir = tempdir();
    let webhook = Receiver::start().await;
    let routing = format!(
        r#"
route:
  receiver: team
  group_by: [alertname, host, severity]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs:
      - url: '{}'
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [alertname, host]
"#,
        webhook.url("/hook")
    );
    let cp = control_plane(dir.path(), CPU_RULES, &routing, "");
    let api = cp.api();
    // A silence for one host, by an operator.
    let (code, body) = api
        .post(
            "/ops/silences",
            &json!({"matchers": [{"name": "host", "value": "quiet-1", "isRegex": false, "isEqual": true}],
                    "duration": "1h", "createdBy": "test", "comment": "maintenance"}),
        )
        .await
        .expect("silence");
    assert_eq!(code, 200, "{body}");
    let silence_id = body["silenceID"].as_str().expect("id").to_owned();

    let stop = tokio_util_like::Stop::default();
    let quiet_cpu = Arc::new(Mutex::new(90.0));
    let hot_cpu = Arc::new(Mutex::new(97.0));
    let quiet = keep_sending(
        FakeAgent::connect(&cp, "quiet-1", dir.path()).await,
        Arc::clone(&quiet_cpu),
        stop.clone(),
    );
    let hot = keep_sending(
        FakeAgent::connect(&cp, "hot-1", dir.path()).await,
        Arc::clone(&hot_cpu),
        stop.clone(),
    );

    // hot-1 is above both thresholds: only the critical one is sent, the warning is inhibited.
    wait::until(
        Duration::from_secs(20),
        "the critical notification",
        || async { (!webhook.delivered().is_empty()).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent = webhook.delivered();
    let sent_alerts: Vec<(String, String)> = sent
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["labels"]["host"].as_str().unwrap_or("").to_owned(),
                a["labels"]["severity"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sent_alerts,
        [("hot-1".to_owned(), "critical".to_owned())],
        "{sent:#?}"
    );

    // The fleet view shows all three firing, with why two are muted.
    let (_, view) = api.get("/ops/alerts").await.expect("alerts");
    let alerts = view["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 3, "{view}");
    assert_eq!(alerts[0]["severity"], "critical", "critical first: {view}");
    let find = |host: &str, severity: &str| {
        alerts
            .iter()
            .find(|a| a["host"] == host && a["severity"] == severity)
            .cloned()
            .unwrap_or_else(|| panic!("{host}/{severity} in {view}"))
    };
    assert_eq!(
        find("quiet-1", "warning")["silenced_by"],
        json!([silence_id])
    );
    assert_eq!(
        find("hot-1", "warning")["inhibited_by"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(find("hot-1", "critical")["muted"], false);
    let (_, filtered) = api
        .get("/ops/alerts?severity=warning&host=quiet-1")
        .await
        .expect("alerts");
    assert_eq!(
        filtered["alerts"].as_array().map(Vec::len),
        Some(1),
        "{filtered}"
    );

    // Expiring the silence lets its alert through.
    let (code, _) = api
        .delete(&format!("/ops/silences/{silence_id}"))
        .await
        .expect("expire");
    assert_eq!(code, 200);
    wait::until(
        Duration::from_secs(10),
        "the unsilenced notification",
        || async {
            webhook
                .delivered()
                .iter()
                .any(|b| b["alerts"][0]["labels"]["host"] == "quiet-1")
                .then_some(())
        },
    )
    .await;
    let (_, silences) = api.get("/ops/silences").await.expect("silences");
    assert_eq!(silences[0]["status"]["state"], "expired", "{silences}");
    stop.stop();
    let _ = (quiet.await, hot.await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_circuit_broken_and_recovers() {
    let dir = tempdir();
    let flaky = Receiver::start().await;
    flaky.status.store(500, Ordering::SeqCst);
    let routing = format!(
        r#"
route:
  receiver: flaky
  group_by: [alertname, host]
  group_wait: 500ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: flaky
    webhook_configs:
      - url: '{}'
"#,
        flaky.url("/hook")
    );
    let cp = control_plane(
        dir.path(),
        CPU_RULES,
        &routing,
        "notification_retry_for = \"1s\"\ncircuit_breaker_open_for = \"4s\"\n",
    );
    let api = cp.api();
    let stop = tokio_util_like::Stop::default();
    let sender = keep_sending(
        FakeAgent::connect(&cp, "gpu-2", dir.path()).await,
        Arc::new(Mutex::new(90.0)),
        stop.clone(),
    );
    let gauge = "aisemble_notifier_circuit_state{integration=\"webhook\",receiver=\"flaky\"}";
    wait::until(Duration::from_secs(40), "the breaker to open", || async {
        let text = api.metrics().await.ok()?;
        (metric_value(&text, gauge) == Some(1.0)).then_some(())
    })
    .await;
    let attempts = flaky.all().len();
    assert!(attempts >= 6, "retried before opening: {attempts} attempts");
    // Open: nothing reaches the receiver.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let while_open = flaky.all().len();
    assert!(
        while_open <= attempts + 1,
        "{attempts} → {while_open} while open"
    );
    // The receiver recovers; after open_for the trial goes through and the breaker closes.
    flaky.status.store(200, Ordering::SeqCst);
    wait::until(
        Duration::from_secs(20),
        "a delivered notification",
        || async { (!flaky.delivered().is_empty()).then_some(()) },
    )
    .await;
    wait::until(Duration::from_secs(10), "the breaker to close", || async {
        let text = api.metrics().await.ok()?;
        (metric_value(&text, gauge) == Some(0.0)).then_some(())
    })
    .await;
    let text = api.metrics().await.expect("metrics");
    assert!(
        metric_value(
            &text,
            "aisemble_notifications_failed_total{integration=\"webhook\",receiver=\"flaky\"}"
        )
        .is_some_and(|v| v >= 5.0),
        "{text}"
    );
    stop.stop();
    let _ = sender.await;
}

/// The Alertmanager binary from Debian's `prometheus-alertmanager`.
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_forwarded_to_a_real_alertmanager() {
    assert!(
        Path::new(ALERTMANAGER).exists(),
        "{ALERTMANAGER} is required (Debian package prometheus-alertmanager; .ci/run installs it)"
    );
    let dir = tempdir();
    let am_port = free_port();
    std::fs::write(
        dir.path().join("am-own.yml"),
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .expect("am config");
    let mut alertmanager = Command::new(ALERTMANAGER)
        .arg(format!(
            "--config.file={}",
            dir.path().join("am-own.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("am-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus-alertmanager");
    let client = crate::http::client();
    let am = format!("http://127.0.0.1:{am_port}");
    wait::until(Duration::from_secs(20), "Alertmanager ready", || async {
        client
            .get(format!("{am}/-/ready"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let routing = format!(
        r#"
route:
  receiver: upstream
  group_by: [alertname, host]
  group_wait: 500ms
  group_interval: 1s
receivers:
  - name: upstream
    alertmanager_configs:
      - url: '{am}'
"#
    );
    let cp = control_plane(dir.path(), CPU_RULES, &routing, "");
    let stop = tokio_util_like::Stop::default();
    let sender = keep_sending(
        FakeAgent::connect(&cp, "gpu-3", dir.path()).await,
        Arc::new(Mutex::new(91.0)),
        stop.clone(),
    );
    let found: Value = wait::until(
        Duration::from_secs(30),
        "the alert in Alertmanager's /api/v2/alerts",
        || async {
            let alerts: Value = client
                .get(format!("{am}/api/v2/alerts"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            alerts
                .as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == "HighCpu" && a["labels"]["host"] == "gpu-3")
                .cloned()
        },
    )
    .await;
    assert_eq!(found["labels"]["severity"], "warning");
    assert_eq!(found["status"]["state"], "active", "{found}");
    assert!(
        found["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("gpu-3")),
        "{found}"
    );
    assert!(
        found["generatorURL"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://")),
        "{found}"
    );
    stop.stop();
    let _ = sender.await;
    let _ = alertmanager.kill();
    let _ = alertmanager.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_for_timers_and_does_not_repeat_notifications() {
    let dir = tempdir();
    let webhook = Receiver::start().await;
    let rules = r#"
groups:
  - name: restart
    rules:
      - alert: SlowBurn
        expr: aisemble_system_cpu_usage_percent > 80
        for: 12s
        labels:
          severity: warning
"#;
    let routing = format!(
        r#"
route:
  receiver: team
  group_by: [alertname, host]
  group_wait: 500ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs:
      - url: '{}'
"#,
        webhook.url("/hook")
    );
    let mut cp = control_plane(dir.path(), rules, &routing, "");
    let cpu = Arc::new(Mutex::new(90.0));
    let stop = tokio_util_like::Stop::default();
    let breach = Instant::now();
    let sender = keep_sending(
        FakeAgent::connect(&cp, "gpu-4", dir.path()).await,
        Arc::clone(&cpu),
        stop.clone(),
    );
    // Pending for a few seconds, then the control plane dies and comes back.
    wait::until(Duration::from_secs(10), "SlowBurn pending", || async {
        let (_, view) = cp.api().get("/ops/alerts?state=pending").await.ok()?;
        (view["alerts"].as_array()?.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.stop();
    let _ = sender.await;
    cp.restart();
    let stop = tokio_util_like::Stop::default();
    let sender = keep_sending(
        FakeAgent::connect(&cp, "gpu-4", dir.path()).await,
        Arc::clone(&cpu),
        stop.clone(),
    );
    wait::until(
        Duration::from_secs(30),
        "the firing notification",
        || async { (firing(&webhook.delivered()) == 1).then_some(()) },
    )
    .await;
    let fired_after = breach.elapsed();
    // The `for` kept counting through the restart: it fired 12 s after the breach (plus group
    // wait and evaluation), not 12 s after the restart.
    assert!(
        fired_after >= Duration::from_secs(12),
        "fired early: {fired_after:?}"
    );
    assert!(
        fired_after < Duration::from_secs(12 + 5),
        "the `for` restarted: {fired_after:?}"
    );

    // Restart while firing: no second notification.
    stop.stop();
    let _ = sender.await;
    cp.restart();
    let stop = tokio_util_like::Stop::default();
    let sender = keep_sending(
        FakeAgent::connect(&cp, "gpu-4", dir.path()).await,
        Arc::clone(&cpu),
        stop.clone(),
    );
    wait::until(
        Duration::from_secs(20),
        "the alert firing again after the restart",
        || async {
            let (_, view) = cp.api().get("/ops/alerts?state=firing").await.ok()?;
            (view["alerts"].as_array()?.len() == 1).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        firing(&webhook.delivered()),
        1,
        "a restart repeated the notification: {:#?}",
        webhook.all()
    );
    // And its resolution is still notified, once.
    *cpu.lock().expect("lock") = 10.0;
    wait::until(
        Duration::from_secs(20),
        "the resolved notification",
        || async { (resolved(&webhook.delivered()) == 1).then_some(()) },
    )
    .await;
    stop.stop();
    let _ = sender.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_validated_swapped_and_checked_from_the_cli() {
    let dir = tempdir();
    let cp = control_plane(
        dir.path(),
        CPU_RULES,
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
        "",
    );
    let api = cp.api();
    let (code, rules) = api.get("/ops/alerts/rules").await.expect("rules");
    assert_eq!(code, 200);
    assert_eq!(
        rules["groups"][0]["rules"].as_array().map(Vec::len),
        Some(2),
        "{rules}"
    );
    // A bad file is refused whole, with positions, and the rules in force stay.
    let client = crate::http::client();
    let url = format!("http://{}/ops/alerts/rules?file=extra.yml", cp.http);
    let bad = "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n      - alert: B\n        expr: topk(2, y)\n";
    let response = client
        .put(&url)
        .bearer_auth(&cp.token)
        .body(bad)
        .send()
        .await
        .expect("put");
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await.expect("json");
    let details = body["error"]["details"].as_array().expect("details");
    assert_eq!(details.len(), 2, "{body}");
    assert_eq!(
        (details[0]["line"].as_u64(), details[0]["column"].as_u64()),
        (Some(5), Some(15)),
        "{body}"
    );
    // A good one is in force at once.
    let good = "groups:\n  - name: extra\n    rules:\n      - alert: Always\n        expr: vector(1)\n        labels: {severity: info}\n";
    let response = client
        .put(&url)
        .bearer_auth(&cp.token)
        .body(good)
        .send()
        .await
        .expect("put");
    assert_eq!(
        response.status().as_u16(),
        200,
        "{:?}",
        response.text().await
    );
    wait::until(Duration::from_secs(10), "the new rule firing", || async {
        let (_, view) = api.get("/ops/alerts?state=firing").await.ok()?;
        view["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["name"] == "Always")
            .then_some(())
    })
    .await;
    // A viewer may read but not write.
    let (code, stdout, _) = cp.cli(&["token", "create", "--role", "viewer", "--name", "v"]);
    assert_eq!(code, 0);
    let viewer = stdout
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("asb_")))
        .expect("token")
        .to_owned();
    // (The server picks new tokens up within a second.)
    let status = wait::until(Duration::from_secs(5), "the viewer token known", || async {
        let response = client
            .put(&url)
            .bearer_auth(&viewer)
            .body(good)
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16()).filter(|s| *s != 401)
    })
    .await;
    assert_eq!(status, 403);
    // The CLI checks and tests files like promtool.
    let rules_file = dir.path().join("rules/test.yml");
    let (code, stdout, _) =
        crate::process::run_cp(&["rules", "check", rules_file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("SUCCESS: 2 rules found"), "{stdout}");
    let bad_file = dir.path().join("bad.yml");
    std::fs::write(&bad_file, bad).expect("write");
    let (code, _, stderr) =
        crate::process::run_cp(&["rules", "check", bad_file.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("5:15: group \"x\", rule 1, \"A\": could not parse expression"),
        "{stderr}"
    );
}
