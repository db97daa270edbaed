//! The web dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over WebDriver by fantoccini, against a real control plane fed by
//! two scripted agents over real mutual-TLS QUIC. The operator signs in with a token, sees both
//! hosts, watches an alert appear without a reload, filters by severity, silences an alert (and
//! is refused with a viewer token), is sent back to sign-in on a 401, reads the log counts and
//! narrows a log search by text, level, service and trace id. Screenshots go to
//! `target/test-artifacts/`.
//!
//! Also, over plain HTTP: the first load (the page and every asset it references, gzipped) stays
//! within 300 KB, with content types, ETags and 304 revalidation.

use std::{
    io::Read as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aisemble_shared::wire::{LogEntry, LogLevel};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::tempdir;
use crate::{
    fake_agent::{FakeAgent, now_ms},
    http::client,
    process::{Agent, ControlPlane},
    wait,
};

/// The first-load budget from the issue: page plus assets, as transferred.
const FIRST_LOAD_BUDGET_BYTES: usize = 300 * 1024;

const RULES: &str = r#"
groups:
  - name: dashboard
    rules:
      - alert: HighCpu
        expr: aisemble_system_cpu_usage_percent > 80
        for: 1s
        labels:
          severity: warning
        annotations:
          summary: 'CPU on {{ $labels.host }} at {{ $value }}%'
      - alert: HighMemory
        expr: aisemble_system_memory_usage_percent > 90
        for: 1s
        labels:
          severity: critical
        annotations:
          summary: 'Memory on {{ $labels.host }} at {{ $value }}%'
"#;

/// `target/test-artifacts/` (from the test executable, `target/<profile>/deps/…`, so it follows
/// `CARGO_TARGET_DIR`).
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target directory");
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("creating target/test-artifacts");
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// chromedriver on a loopback port, and one browser session through it.
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Self {
        let port = free_port();
        // Its own process group, so that Drop can end chromedriver and the Chromium it started
        // even when the test fails before closing the session.
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "chromedriver is required (Debian packages chromium and chromium-driver; \
                 .ci/run installs them)",
            );
        let url = format!("http://127.0.0.1:{port}");
        let http = client();
        wait::until(Duration::from_secs(30), "chromedriver ready", || async {
            let body: Value = http
                .get(format!("{url}/status"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (body["value"]["ready"] == true).then_some(())
        })
        .await;
        let profile = tempfile::Builder::new()
            .prefix("aisemble-chromium-")
            .tempdir()
            .expect("profile dir");
        // As root in a container Chromium needs --no-sandbox; /dev/shm is small here, hence
        // --disable-dev-shm-usage; there is no GPU.
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--window-size=1440,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let session = tokio::time::timeout(
            Duration::from_secs(90),
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&url),
        )
        .await
        .expect("a browser session within 90 s")
        .expect("chromedriver starts Chromium");
        Self {
            client: Some(session),
            driver,
            _profile: profile,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    async fn js(&self, script: &str) -> Value {
        self.client()
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something other than `null`/`false`.
    async fn until(&self, timeout: Duration, what: &str, script: &str) -> Value {
        wait::until(timeout, what, || async {
            let value = self.js(script).await;
            (!value.is_null() && value != json!(false)).then_some(value)
        })
        .await
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client().screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = artifacts_dir().join(name);
        std::fs::write(&path, png).expect("writing the screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Replaces the text of the input at `css` with `text`.
    async fn type_into(&self, css: &str, text: &str) {
        let input = self
            .client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("typing");
    }

    /// Clicks the element at `css` as a user would.
    async fn click(&self, css: &str) {
        self.client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .expect("click");
    }

    async fn sign_in(&self, token: &str) {
        self.until(
            Duration::from_secs(20),
            "the sign-in form",
            "return !document.querySelector('#login').hidden",
        )
        .await;
        self.type_into("#token-input", token).await;
        self.click("#login-submit").await;
        self.until(
            Duration::from_secs(20),
            "signed in",
            "return document.querySelector('#login').hidden && !document.querySelector('#view').hidden",
        )
        .await;
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        crate::process::signal_group(self.driver.id(), rustix::process::Signal::KILL);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Sends CPU, memory and disk from `agent` every 300 ms until `stop`.
fn keep_sending(
    mut agent: FakeAgent,
    values: Arc<Mutex<(f64, f64)>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let (cpu, memory) = *values.lock().expect("lock");
            agent
                .send(
                    now_ms(),
                    &[
                        ("aisemble_system_cpu_usage_percent", &[], cpu),
                        ("aisemble_system_memory_usage_percent", &[], memory),
                        (
                            "aisemble_system_disk_usage_percent",
                            &[("mount", "/")],
                            42.0,
                        ),
                    ],
                )
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        agent.close();
    })
}

/// What gpu-1 logged: two errors of one trace, a warning and an info line, a minute before `now`.
fn log_lines(now: i64) -> Vec<LogEntry> {
    let line = |t: i64, level, service: &str, message: &str, trace: Option<&str>| LogEntry {
        timestamp_ms: now - t,
        level,
        service: service.into(),
        message: message.into(),
        context: String::new(),
        trace_id: trace.map(Into::into),
        request_id: None,
    };
    vec![
        line(
            60_000,
            LogLevel::Error,
            "api",
            "upstream timeout after 30s",
            Some("trace-7f3a"),
        ),
        line(50_000, LogLevel::Info, "api", "GET /v1/chat 200", None),
        line(40_000, LogLevel::Warn, "worker", "queue depth 900", None),
        line(
            30_000,
            LogLevel::Error,
            "api",
            "connection reset by peer",
            Some("trace-7f3a"),
        ),
    ]
}

/// Waits until the log search shows `expected`, rows as "host service message", newest first.
async fn expect_log_rows(browser: &Browser, expected: &[&str]) {
    browser
        .until(
            Duration::from_secs(20),
            &format!("log rows {expected:?}"),
            &format!(
                "const rows = [...document.querySelectorAll('#logs-body table.logs tbody tr')]
                   .map(r => [...r.children].slice(2).map(c => c.firstChild.textContent).join(' '));
                 return JSON.stringify(rows) === {:?};",
                serde_json::to_string(expected).expect("json")
            ),
        )
        .await;
}

/// The alert rows on screen: `[name, host, severity, state, text]`.
const ALERT_ROWS: &str = "return [...document.querySelectorAll('#alerts-table tbody tr[data-alert]')]
    .map(r => [r.dataset.alert, r.dataset.host, r.dataset.severity, r.dataset.state, r.textContent]);";

fn rows(value: &Value) -> Vec<Vec<String>> {
    value
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|cells| {
                            cells
                                .iter()
                                .map(|c| c.as_str().unwrap_or_default().to_owned())
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_dashboard_in_a_real_browser() {
    let dir = tempdir();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).expect("rules dir");
    std::fs::write(rules_dir.join("dashboard.yml"), RULES).expect("rules");
    let config = dir.path().join("cp.toml");
    std::fs::write(
        &config,
        format!(
            "[alerting]\nrules_dir = {:?}\nevaluation_interval = \"500ms\"\n",
            rules_dir.display().to_string()
        ),
    )
    .expect("config");
    let cp = ControlPlane::serve_with_config(&dir.path().join("data"), &config);
    let base = format!("http://{}", cp.http);

    let stop = Arc::new(AtomicBool::new(false));
    let gpu1 = Arc::new(Mutex::new((40.0, 50.0)));
    let gpu2 = Arc::new(Mutex::new((30.0, 60.0)));
    let mut gpu1_agent = FakeAgent::connect(&cp, "gpu-1", dir.path()).await;
    gpu1_agent.send_logs(log_lines(now_ms())).await;
    let stop_gpu2 = Arc::new(AtomicBool::new(false));
    let gpu1_sender = keep_sending(gpu1_agent, Arc::clone(&gpu1), Arc::clone(&stop));
    let gpu2_sender = keep_sending(
        FakeAgent::connect(&cp, "gpu-2", dir.path()).await,
        Arc::clone(&gpu2),
        Arc::clone(&stop_gpu2),
    );

    let browser = Browser::start().await;
    let client = browser.client();
    client
        .goto(&format!("{base}/"))
        .await
        .expect("open the page");

    // A wrong token is refused on the sign-in form itself.
    browser.sign_in_expecting_error("asb_not-a-token").await;

    // Sign in; the fleet shows both hosts up, with values and sparklines.
    browser.sign_in(&cp.token).await;
    let hosts = browser
        .until(
            Duration::from_secs(30),
            "both hosts up in the fleet table",
            "const rows = [...document.querySelectorAll('#fleet-table tbody tr[data-host]')];
             const up = rows.filter(r => r.dataset.state === 'up' && r.textContent.includes('%'));
             return up.length === 2 ? rows.map(r => r.dataset.host) : null;",
        )
        .await;
    assert_eq!(hosts, json!(["gpu-1", "gpu-2"]));
    browser
        .until(
            Duration::from_secs(20),
            "sparklines and the summary tiles",
            "return document.querySelectorAll('#fleet-table svg.spark').length >= 6
                && document.querySelector('#fleet-summary').textContent.includes('2 / 2')",
        )
        .await;
    browser.screenshot("dashboard-fleet.png").await;

    // To the alerts view, by the navigation (no page load): nothing firing yet.
    browser.js("window.__noReloadMark = 42; return true").await;
    browser.click("nav a[data-route='alerts']").await;
    browser
        .until(
            Duration::from_secs(20),
            "the empty alert list",
            "return document.querySelector('#alerts-table td.empty')?.textContent.includes('No alerts')",
        )
        .await;

    // Breach: a warning on gpu-1 and a critical on gpu-2 appear while the page stays loaded.
    *gpu1.lock().expect("lock") = (90.0, 50.0);
    *gpu2.lock().expect("lock") = (30.0, 95.0);
    let shown = browser
        .until(
            Duration::from_secs(40),
            "both alerts firing on the page",
            &format!(
                "const rows = (() => {{ {ALERT_ROWS} }})();
                 return rows.filter(r => r[3] === 'firing').length === 2 ? rows : null;"
            ),
        )
        .await;
    let shown = rows(&shown);
    assert_eq!(
        shown[0][..4],
        ["HighMemory", "gpu-2", "critical", "firing"],
        "critical first: {shown:?}"
    );
    assert_eq!(
        shown[1][..4],
        ["HighCpu", "gpu-1", "warning", "firing"],
        "{shown:?}"
    );
    assert!(shown[0][4].contains("Memory on gpu-2 at 95%"), "{shown:?}");
    assert_eq!(
        browser.js("return window.__noReloadMark").await,
        json!(42),
        "the alert appeared without a reload"
    );
    browser
        .until(
            Duration::from_secs(10),
            "the firing badge in the navigation",
            "const b = document.querySelector('#alert-badge'); return !b.hidden && b.textContent === '2'",
        )
        .await;

    // Filter by severity: only the critical one, and the filter is in the URL.
    client
        .find(Locator::Css("#filter-severity"))
        .await
        .expect("severity filter")
        .select_by_value("critical")
        .await
        .expect("choose critical");
    let filtered = browser
        .until(
            Duration::from_secs(20),
            "only critical alerts listed",
            &format!(
                "if (!location.hash.includes('severity=critical')) return null;
                 const rows = (() => {{ {ALERT_ROWS} }})();
                 return rows.length === 1 && rows.every(r => r[2] === 'critical') ? rows : null;"
            ),
        )
        .await;
    assert_eq!(rows(&filtered)[0][..2], ["HighMemory", "gpu-2"]);
    let screenshot = browser.screenshot("dashboard.png").await;
    assert!(
        std::fs::metadata(&screenshot)
            .expect("screenshot written")
            .len()
            > 10_000,
        "a real rendering, not a blank image"
    );

    // Silence it as admin: the POST goes through and the row shows it silenced.
    browser.silence_first_alert("admin").await;
    browser
        .until(
            Duration::from_secs(20),
            "the alert shown as silenced",
            "return !document.querySelector('#silence-dialog').open
                && document.querySelector('#alerts-table tbody tr[data-alert]')?.textContent.includes('silenced')",
        )
        .await;
    let (_, silences) = cp.api().get("/ops/silences").await.expect("silences");
    let silence = &silences[0];
    assert_eq!(silence["createdBy"], "admin", "{silences}");
    let matchers = silence["matchers"].to_string();
    assert!(
        matchers.contains("HighMemory") && matchers.contains("gpu-2"),
        "{matchers}"
    );

    // A viewer token may look but not silence: the API's 403 is shown in the dialog.
    let (code, stdout, stderr) =
        cp.cli(&["token", "create", "--role", "viewer", "--name", "viewer"]);
    assert_eq!(code, 0, "{stderr}");
    let viewer = stdout
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("asb_")))
        .expect("a viewer token")
        .to_owned();
    browser.click("#logout").await;
    // The server picks up new tokens within a second; retry the sign-in until it does.
    wait::until(
        Duration::from_secs(10),
        "the viewer token accepted",
        || async { browser.try_sign_in(&viewer).await.then_some(()) },
    )
    .await;
    client
        .goto(&format!("{base}/#/alerts?severity=warning"))
        .await
        .expect("alerts view");
    browser
        .until(
            Duration::from_secs(20),
            "the warning listed for the viewer",
            "return document.querySelector('#alerts-table tbody tr[data-alert=HighCpu] button[data-silence]') !== null",
        )
        .await;
    browser.silence_first_alert("viewer").await;
    let error = browser
        .until(
            Duration::from_secs(10),
            "the role error in the dialog",
            "const t = document.querySelector('#silence-error').textContent; return t ? t : null",
        )
        .await;
    let error = error.as_str().unwrap_or_default();
    assert!(
        error.contains("viewer") && error.contains("operator"),
        "{error}"
    );
    browser
        .js("document.querySelector('#silence-cancel').click(); return true")
        .await;

    // A token that stops working (revoked, rotated) sends the page back to sign-in.
    browser
        .js("localStorage.setItem('aisemble-token', 'asb_revoked'); return true")
        .await;
    let message = browser
        .until(
            Duration::from_secs(15),
            "back at sign-in after a 401",
            "return !document.querySelector('#login').hidden && document.querySelector('#login-error').textContent",
        )
        .await;
    assert!(
        message.as_str().is_some_and(|m| m.contains("refused")),
        "{message}"
    );

    // Host detail: the hour's charts, drawn from /api/v1/query_range.
    browser.sign_in(&cp.token).await;
    client
        .goto(&format!("{base}/#/host/gpu-1"))
        .await
        .expect("host view");
    let charts = browser
        .until(
            Duration::from_secs(30),
            "the host's charts",
            "const c = [...document.querySelectorAll('#host-charts .chart')];
             return c.length === 6 ? c.map(x => [x.querySelector('h3').textContent, !!x.querySelector('svg path.line, svg circle')]) : null",
        )
        .await;
    assert_eq!(charts[0], json!(["CPU", true]), "CPU is charted: {charts}");
    assert_eq!(charts[1], json!(["Memory", true]), "{charts}");
    assert!(
        browser
            .js("return document.querySelector('#host-alerts').textContent")
            .await
            .as_str()
            .is_some_and(|t| t.contains("HighCpu")),
        "the host's own alert is listed"
    );
    browser.screenshot("dashboard-host.png").await;

    // Logs: the last day's counts, then searches narrowed by text and level, by a service picked
    // from the counts, and by trace id.
    client.goto(&format!("{base}/#/logs")).await.expect("pane");
    browser
        .until(
            Duration::from_secs(20),
            "the log counts",
            "const s = document.querySelector('#logs-stats'); return s && s.textContent.includes('4 lines') && s.textContent.includes('2 errors') && s.querySelector('svg rect.bar.errors') !== null",
        )
        .await;
    browser.type_into("#logs-text", "timeout").await;
    browser
        .js("document.querySelector('#logs-level').value = 'error'; return true")
        .await;
    browser.click("#logs-form button[type=submit]").await;
    expect_log_rows(&browser, &["gpu-1 api upstream timeout after 30s"]).await;
    browser.screenshot("dashboard-logs.png").await;
    browser.type_into("#logs-text", "").await;
    browser
        .js("document.querySelector('#logs-level').value = ''; return true")
        .await;
    browser
        .click("#logs-stats button[data-service='worker']")
        .await;
    expect_log_rows(&browser, &["gpu-1 worker queue depth 900"]).await;
    browser.type_into("#logs-service", "").await;
    browser.type_into("#logs-trace", "trace-7f3a").await;
    browser.click("#logs-form button[type=submit]").await;
    expect_log_rows(
        &browser,
        &[
            "gpu-1 api connection reset by peer",
            "gpu-1 api upstream timeout after 30s",
        ],
    )
    .await;

    // Backups: the view answers (this fleet has no jobs; the backups test below runs one).
    client
        .goto(&format!("{base}/#/backups"))
        .await
        .expect("pane");
    let text = browser
        .until(
            Duration::from_secs(20),
            "the backups pane",
            "const t = document.querySelector('#backup-jobs'); return t ? t.textContent : null",
        )
        .await;
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains("No backup jobs yet")),
        "{text}"
    );

    // A decommissioned host: gpu-2 goes away, and the admin removes it from the fleet. Its
    // critical alert ends with its series, and the fleet's word follows the alerts.
    let fleet_word = "return document.querySelector('#fleet-summary .tile .value')?.textContent";
    client
        .goto(&format!("{base}/#/fleet"))
        .await
        .expect("fleet");
    browser
        .until(
            Duration::from_secs(20),
            "the fleet critical while gpu-2's memory alert fires",
            &format!("{fleet_word} === 'critical'"),
        )
        .await;
    stop_gpu2.store(true, Ordering::SeqCst);
    gpu2_sender.await.expect("sender");
    client
        .goto(&format!("{base}/#/host/gpu-2"))
        .await
        .expect("host");
    browser
        .until(
            Duration::from_secs(20),
            "the remove button of a disconnected host",
            "return !document.querySelector('#host-actions').hidden",
        )
        .await;
    browser.js("window.confirm = () => true; return true").await;
    browser.click("#host-remove").await;
    browser
        .until(
            Duration::from_secs(20),
            "the fleet without gpu-2",
            "const rows = [...document.querySelectorAll('#fleet-table tbody tr[data-host]')].map(r => r.dataset.host);
             return location.hash === '#/fleet' && JSON.stringify(rows) === '[\"gpu-1\"]'",
        )
        .await;
    browser
        .until(
            Duration::from_secs(20),
            "gpu-2's alert resolved: gpu-1's CPU warning is the worst left",
            &format!("{fleet_word} === 'warning'"),
        )
        .await;

    // The theme toggle switches and is remembered.
    browser
        .js("document.querySelector('#theme-toggle').click(); return true")
        .await;
    let theme = browser
        .js("return [document.documentElement.dataset.theme, localStorage.getItem('aisemble-theme')]")
        .await;
    assert!(
        theme == json!(["dark", "dark"]) || theme == json!(["light", "light"]),
        "{theme}"
    );
    browser.screenshot("dashboard-theme.png").await;

    browser.close().await;
    stop.store(true, Ordering::SeqCst);
    gpu1_sender.await.expect("sender");
}

impl Browser {
    /// Signs in; whether the page accepted the token.
    async fn try_sign_in(&self, token: &str) -> bool {
        self.type_into("#token-input", token).await;
        self.js("document.querySelector('#login-submit').click(); return true")
            .await;
        wait::until(Duration::from_secs(10), "the sign-in answer", || async {
            let state = self
                .js(
                    "return document.querySelector('#login-submit').disabled ? null
                     : document.querySelector('#login').hidden ? 'in'
                     : document.querySelector('#login-error').textContent ? 'refused' : null",
                )
                .await;
            state.as_str().map(|s| s == "in")
        })
        .await
    }

    async fn sign_in_expecting_error(&self, token: &str) {
        self.until(
            Duration::from_secs(20),
            "the sign-in form",
            "return !document.querySelector('#login').hidden",
        )
        .await;
        assert!(!self.try_sign_in(token).await, "a bad token is refused");
        let error = self
            .js("return document.querySelector('#login-error').textContent")
            .await;
        assert!(
            error.as_str().is_some_and(|e| e.contains("invalid token")),
            "{error}"
        );
    }

    /// Opens the silence dialog on the first listed alert and submits it as `author`.
    async fn silence_first_alert(&self, author: &str) {
        self.js(
            "document.querySelector('#alerts-table button[data-silence]').click(); return true",
        )
        .await;
        self.until(
            Duration::from_secs(5),
            "the silence dialog",
            "return document.querySelector('#silence-dialog').open",
        )
        .await;
        self.type_into("#silence-author", author).await;
        self.click("#silence-submit").await;
    }
}

/// The page and every asset it references, as a browser's first visit fetches them (gzip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_load_is_small_cached_and_compressed() {
    let dir = tempdir();
    let cp = ControlPlane::serve(dir.path());
    let base = format!("http://{}", cp.http);
    let http = client();
    let fetch = |path: String, etag: Option<String>| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let mut request = http
                .get(&url)
                .header("accept-encoding", "gzip, deflate, br");
            if let Some(etag) = etag {
                request = request.header("if-none-match", etag);
            }
            let response = request.send().await.expect("GET");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.expect("body").to_vec();
            (status, headers, body)
        }
    };
    let header = |headers: &reqwest::header::HeaderMap, name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    // The header bytes count too: status line, each "name: value\r\n", the blank line.
    let transferred = |headers: &reqwest::header::HeaderMap, body: &[u8]| {
        17 + headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + 2
            + body.len()
    };

    // The page needs no token (it holds no data); the data does.
    let (status, headers, body) = fetch("/".into(), None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&headers, "content-encoding"), "gzip");
    assert!(header(&headers, "content-security-policy").contains("script-src 'self'"));
    let mut total = transferred(&headers, &body);
    let mut html = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut html)
        .expect("gzip HTML");
    let (code, _) = crate::http::Api::new(cp.http, "")
        .get("/ops/status")
        .await
        .expect("status");
    assert_eq!(code, 401, "the API behind the page needs a token");

    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            let url = &rest[..rest.find('"').expect("closing quote")];
            if !url.starts_with('#') && !assets.contains(&url.to_owned()) {
                assets.push(url.to_owned());
            }
        }
    }
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "{assets:?}"
    );
    for asset in &assets {
        assert!(
            asset.starts_with("/assets/"),
            "{asset} is not served from this binary"
        );
        let (status, headers, body) = fetch(asset.clone(), None).await;
        assert_eq!(status, 200, "{asset}");
        let expected = match asset.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?}"),
        };
        assert_eq!(header(&headers, "content-type"), expected, "{asset}");
        if asset.ends_with(".js") || asset.ends_with(".css") {
            assert_eq!(header(&headers, "content-encoding"), "gzip", "{asset}");
        }
        assert_eq!(header(&headers, "cache-control"), "no-cache", "{asset}");
        let etag = header(&headers, "etag");
        assert!(etag.starts_with('"'), "{asset}: etag {etag:?}");
        total += transferred(&headers, &body);
        // A second visit revalidates: 304, no body.
        let (status, _, body) = fetch(asset.clone(), Some(etag)).await;
        assert_eq!((status, body.len()), (304, 0), "{asset}");
    }
    eprintln!(
        "first load: {total} bytes ({:.1} KB) for the page and {} assets, gzip",
        total as f64 / 1024.0,
        assets.len()
    );
    assert!(
        total <= FIRST_LOAD_BUDGET_BYTES,
        "first load is {total} bytes, over the {FIRST_LOAD_BUDGET_BYTES} budget"
    );
    let (status, _, _) = fetch("/assets/missing.js".into(), None).await;
    assert_eq!(status, 404);
}

/// Backups from the browser: a job's "Run now" makes a snapshot on a real agent, the snapshot's
/// "Restore…" dialog puts it back into a new directory on that agent, and the page shows both
/// runs succeed without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_run_and_restore_from_the_browser() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();
    let _agent = Agent::start(&cp.issue_agent("gpu-1", &dir.path().join("agent"), "1s", "64MiB"));
    super::connected(&api, "gpu-1").await;
    let src = dir.path().join("models");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("adapter.safetensors"), vec![7u8; 300_000]).expect("write");
    let (status, body) = api
        .post(
            "/ops/backups/jobs",
            &json!({"name": "models", "class": "models", "agents": ["gpu-1"],
                    "source": {"type": "paths", "paths": [src]}}),
        )
        .await
        .expect("post");
    assert_eq!(status, 201, "{body}");

    let browser = Browser::start().await;
    let base = format!("http://{}", cp.http);
    browser.client().goto(&base).await.expect("page");
    browser.sign_in(&cp.token).await;
    browser
        .client()
        .goto(&format!("{base}/#/backups"))
        .await
        .expect("pane");
    browser
        .until(
            Duration::from_secs(20),
            "the job row",
            "return document.querySelector('tr[data-job=\"models\"]') !== null",
        )
        .await;
    let schedule = browser
        .js("return document.querySelector('tr[data-job=\"models\"]').textContent")
        .await;
    assert!(
        schedule.as_str().is_some_and(|t| t.contains("0 1 * * 0")),
        "the models class runs Sundays at 01:00: {schedule}"
    );
    browser.click("button[data-run-job=\"models\"]").await;
    browser
        .until(
            Duration::from_secs(30),
            "a snapshot row",
            "return document.querySelector('#backup-snapshots tr[data-snapshot]') !== null",
        )
        .await;
    browser.screenshot("dashboard-backups.png").await;

    browser
        .click("#backup-snapshots button[data-restore]")
        .await;
    browser
        .until(
            Duration::from_secs(10),
            "the restore dialog",
            "return document.querySelector('#restore-dialog').open && document.querySelector('#restore-agent').value === 'gpu-1'",
        )
        .await;
    let target = dir.path().join("restored");
    browser
        .type_into("#restore-path", target.to_str().expect("utf-8"))
        .await;
    browser.click("#restore-submit").await;
    let state = browser
        .until(
            Duration::from_secs(30),
            "the restore run finished",
            "const r = [...document.querySelectorAll('#backup-runs tr[data-run]')].find((tr) => tr.children[1].textContent === 'restore'); return r && r.dataset.state !== 'running' ? r.dataset.state : null",
        )
        .await;
    assert_eq!(state, "succeeded");
    let restored = target
        .join(src.strip_prefix("/").expect("absolute"))
        .join("adapter.safetensors");
    assert_eq!(
        std::fs::read(restored).expect("restored file"),
        vec![7u8; 300_000]
    );

    // The fleet view's summary carries the backups too.
    browser.click("nav a[data-route='fleet']").await;
    browser
        .until(
            Duration::from_secs(20),
            "the backups tile",
            "const t = document.querySelector('#fleet-summary'); return t && t.textContent.includes('1 snapshot') && t.textContent.includes('last success')",
        )
        .await;

    // Delete the job (the confirmation accepted); its snapshot stays in the list.
    browser.click("nav a[data-route='backups']").await;
    browser
        .until(
            Duration::from_secs(20),
            "the job row again",
            "return document.querySelector('button[data-delete-job=\"models\"]') !== null",
        )
        .await;
    browser.js("window.confirm = () => true; return null").await;
    browser.click("button[data-delete-job=\"models\"]").await;
    browser
        .until(
            Duration::from_secs(20),
            "the job gone and its snapshot kept",
            "return document.querySelector('tr[data-job=\"models\"]') === null && document.querySelector('#backup-snapshots tr[data-snapshot]') !== null",
        )
        .await;
    let (_, status) = api.get("/ops/backups/status").await.expect("status");
    assert_eq!(status["jobs"], json!([]), "{status}");
    browser.close().await;
}
