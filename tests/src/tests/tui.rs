//! The terminal dashboard against a live control plane: a scripted agent streams over real mTLS
//! QUIC, a rule fires, the dashboard's snapshot is fetched over real HTTP and drawn into
//! ratatui's `TestBackend`; and `aisemble-cp dashboard --mode status` (the real binary) exits 0, 1,
//! 2 and 3 as the fleet goes healthy → warning → critical → unreachable.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aisemble_control_plane::{remote::Remote, tui};
use ratatui::{Terminal, backend::TestBackend};

use super::tempdir;
use crate::{
    fake_agent::{FakeAgent, now_ms},
    process::{ControlPlane, run_cp},
    wait,
};

const RULES: &str = r#"
groups:
  - name: e2e
    rules:
      - alert: CpuWarm
        expr: aisemble_system_cpu_usage_percent > 80
        labels:
          severity: warning
        annotations:
          summary: 'CPU on {{ $labels.host }} at {{ $value }}%'
      - alert: CpuMelting
        expr: aisemble_system_cpu_usage_percent > 95
        labels:
          severity: critical
        annotations:
          summary: 'CPU on {{ $labels.host }} at {{ $value }}% (critical)'
"#;

/// A control plane with [`RULES`] evaluated every 500 ms.
fn control_plane(dir: &Path) -> ControlPlane {
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).expect("rules dir");
    std::fs::write(rules_dir.join("e2e.yml"), RULES).expect("rules");
    let config = dir.join("cp.toml");
    std::fs::write(
        &config,
        format!(
            "[alerting]\nrules_dir = {:?}\nevaluation_interval = \"500ms\"\n",
            rules_dir.display().to_string()
        ),
    )
    .expect("config");
    ControlPlane::serve_with_config(&dir.join("data"), &config)
}

/// Sends the shared CPU value, plus request and inference counters, every 200 ms until stopped;
/// returns the agent so the test can close its connection.
struct Sender {
    cpu: Arc<Mutex<f64>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<FakeAgent>,
}

impl Sender {
    fn start(mut agent: FakeAgent, cpu: f64) -> Self {
        let cpu = Arc::new(Mutex::new(cpu));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared_cpu, shared_stop) = (Arc::clone(&cpu), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            let mut n = 0.0;
            while !shared_stop.load(Ordering::SeqCst) {
                n += 10.0;
                let value = *shared_cpu.lock().expect("lock");
                agent
                    .send(
                        now_ms(),
                        &[
                            ("aisemble_system_cpu_usage_percent", &[], value),
                            (
                                "aisemble_system_disk_usage_percent",
                                &[("mount", "/data")],
                                42.0,
                            ),
                            (
                                "aisemble_requests_total",
                                &[("service", "chat-api"), ("status", "2xx")],
                                n,
                            ),
                            (
                                "aisemble_model_inference_total",
                                &[("model", "llama-3"), ("outcome", "success")],
                                n / 2.0,
                            ),
                        ],
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            agent
        });
        Self { cpu, stop, task }
    }

    fn set(&self, cpu: f64) {
        *self.cpu.lock().expect("lock") = cpu;
    }

    async fn stop(self) -> FakeAgent {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("sender task")
    }
}

fn screen(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect()
        })
        .collect()
}

/// The rows of the pane whose top border carries `title`, clipped to that pane's columns.
fn pane(lines: &[String], title: &str) -> Vec<String> {
    let title = format!(" {title} ");
    let (top, start) = lines
        .iter()
        .enumerate()
        .find_map(|(y, l)| l.find(&title).map(|x| (y, x)))
        .unwrap_or_else(|| panic!("no pane {title:?}:\n{}", lines.join("\n")));
    // The border's corner is the last '┌' before the title.
    let chars: Vec<char> = lines[top].chars().collect();
    let title_col = lines[top][..start].chars().count();
    let left = (0..=title_col)
        .rev()
        .find(|&x| chars[x] == '┌')
        .unwrap_or(0);
    let right = (title_col..chars.len())
        .find(|&x| chars[x] == '┐')
        .unwrap_or(chars.len() - 1);
    lines[top + 1..]
        .iter()
        .take_while(|l| l.chars().nth(left) != Some('└'))
        .map(|l| l.chars().skip(left + 1).take(right - left - 1).collect())
        .collect()
}

#[track_caller]
fn assert_in(pane_lines: &[String], title: &str, needle: &str) {
    assert!(
        pane_lines.iter().any(|l| l.contains(needle)),
        "{needle:?} not in pane {title:?}:\n{}",
        pane_lines.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_dashboard_draws_a_live_fleet() {
    let dir = tempdir();
    let cp = control_plane(dir.path());
    let api = cp.api();
    let agent = FakeAgent::connect(&cp, "gpu-node-7", dir.path()).await;
    let sender = Sender::start(agent, 90.0);
    wait::until(Duration::from_secs(30), "CpuWarm firing", || async {
        let (_, body) = api.get("/ops/alerts?state=firing").await.ok()?;
        body["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["name"] == "CpuWarm")
            .then_some(())
    })
    .await;

    // A backup job whose agent cannot run it (a fake agent answers no task streams): the pane
    // shows it with its schedule's next run; a check of the empty repository succeeds.
    let (status, body) = api
        .post(
            "/ops/backups/jobs",
            &serde_json::json!({"name": "etc", "class": "system", "agents": ["gpu-node-7"],
                                "source": {"type": "paths", "paths": ["/etc/hostname"]}}),
        )
        .await
        .expect("post");
    assert_eq!(status, 201, "{body}");
    let (status, body) = api
        .post("/ops/backups/check", &serde_json::json!({}))
        .await
        .expect("post");
    assert_eq!(status, 202, "{body}");

    // A viewer token is enough for everything the dashboard reads.
    let (code, stdout, stderr) = cp.cli(&["token", "create", "--role", "viewer", "--name", "tui"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let viewer = stdout
        .split_whitespace()
        .find(|w| w.starts_with("asb_"))
        .expect("a token in the output")
        .to_owned();
    let remote = Remote::new(
        &format!("http://{}", cp.http),
        Some(viewer),
        Duration::from_secs(10),
    )
    .expect("client");
    // Wait until the service view has two request samples (a rate needs two).
    let snapshot = wait::until(Duration::from_secs(30), "a full snapshot", || async {
        let snapshot = tui::fetch(&remote, now_ms()).await.ok()?;
        let host = snapshot.hosts.iter().find(|h| h.name == "gpu-node-7")?;
        (!host.services.is_empty() && host.requests_per_second.is_some()).then_some(snapshot)
    })
    .await;
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("terminal");
    terminal
        .draw(|frame| tui::render(frame, &snapshot, &tui::UiState::default()))
        .expect("draws");
    let lines = screen(&terminal);

    let status = pane(&lines, "System status");
    assert_in(&status, "status", "Agents: 1/1 connected");
    assert_in(&status, "status", "store");

    let alerts = pane(&lines, "Alerts");
    assert_in(&alerts, "Alerts", "CpuWarm");
    assert_in(&alerts, "Alerts", "gpu-node-7");
    assert_in(&alerts, "Alerts", "Firing: 0 critical · 1 warning");

    let services = pane(&lines, "Services");
    assert_in(&services, "Services", "gpu-node-7");
    assert_in(&services, "Services", "cpu 90.0%");
    assert_in(&services, "Services", "/data 42.0%");
    assert_in(&services, "Services", "service chat-api");
    assert_in(&services, "Services", "model llama-3");

    let log_stats = pane(&lines, "Log stats");
    assert_in(&log_stats, "Log stats", "lines (24h)");
    let backups = pane(&lines, "Backups");
    assert_in(&backups, "Backups", "repository: 0 snapshots");
    assert_in(&backups, "Backups", "last check: succeeded");
    assert_in(&backups, "Backups", "job etc: never run, n/a ok, next ");
    assert_in(&backups, "Backups", "T02:00:00Z");
    assert!(lines[0].contains("[WARNING]"), "title line: {:?}", lines[0]);
    sender.stop().await.close();
}

/// `aisemble-cp dashboard --mode status` against `cp` with `token`.
async fn status(cp: &ControlPlane, token: &str) -> (i32, String, String) {
    let url = format!("http://{}", cp.http);
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || {
        run_cp(&[
            "dashboard",
            "--mode",
            "status",
            "--url",
            &url,
            "--token",
            &token,
        ])
    })
    .await
    .expect("runs")
}

/// Runs the status command until it exits with `code`; returns its stdout.
async fn status_until(cp: &ControlPlane, code: i32, what: &str) -> String {
    wait::until(Duration::from_secs(30), what, || async {
        let (got, stdout, _) = status(cp, &cp.token).await;
        (got == code).then_some(stdout)
    })
    .await
}

/// The result of an instant query.
async fn instant(cp: &ControlPlane, query: &str) -> Vec<serde_json::Value> {
    let query = crate::http::urlencode(query);
    let (_, body) = cp
        .api()
        .get(&format!("/api/v1/query?query={query}"))
        .await
        .expect("query");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_mode_exit_codes_follow_the_fleet() {
    let dir = tempdir();
    let mut cp = control_plane(dir.path());
    let agent = FakeAgent::connect(&cp, "edge-1", dir.path()).await;
    let sender = Sender::start(agent, 10.0);

    let healthy = status_until(&cp, 0, "exit 0 (healthy)").await;
    assert!(
        healthy.starts_with("AISEMBLE OK - 1/1 agents connected"),
        "{healthy}"
    );

    sender.set(90.0);
    let warning = status_until(&cp, 1, "exit 1 (warning firing)").await;
    assert!(warning.starts_with("AISEMBLE WARNING"), "{warning}");
    assert!(
        warning.contains("alert CpuWarm (warning) firing on edge-1"),
        "{warning}"
    );

    sender.set(99.0);
    let critical = status_until(&cp, 2, "exit 2 (critical firing)").await;
    assert!(
        critical.contains("alert CpuMelting (critical) firing"),
        "{critical}"
    );

    sender.set(10.0);
    status_until(&cp, 0, "exit 0 once the alerts resolve").await;

    // The agent goes away: critical.
    let agent = sender.stop().await;
    agent.close();
    let down = status_until(&cp, 2, "exit 2 (agent down)").await;
    assert!(down.contains("agent edge-1 disconnected"), "{down}");

    // Taken out of the fleet (a decommissioned host): healthy again, also after a restart, and its
    // `aisemble_agent_up` (what AgentMissing watches) ends at once rather than reading 0.
    const AGENT_UP: &str = "aisemble_agent_up{host=\"edge-1\"}";
    crate::wait::until(Duration::from_secs(20), "aisemble_agent_up 0", || async {
        instant(&cp, AGENT_UP)
            .await
            .first()
            .is_some_and(|r| r["value"][1] == "0")
            .then_some(())
    })
    .await;
    assert!(
        !instant(&cp, "{host=\"edge-1\"}").await.is_empty(),
        "the host's series are current before"
    );
    let (code, body) = cp.api().delete("/ops/agents/edge-1").await.expect("delete");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        instant(&cp, AGENT_UP).await,
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(
        instant(&cp, "{host=\"edge-1\"}").await,
        Vec::<serde_json::Value>::new(),
        "every series of the host ends"
    );
    // No stale value of it lingers in the fleet's figures.
    let (_, fleet) = cp.api().get("/ops/status").await.expect("status");
    assert_eq!(
        fleet["resources"]["cpu_usage_percent"]["hosts"],
        serde_json::Value::Null,
        "{fleet}"
    );
    assert_eq!(fleet["checks"]["total"], 0, "{fleet}");
    let (code, body) = cp.api().delete("/ops/agents/edge-1").await.expect("delete");
    assert_eq!(code, 404, "{body}");
    let empty = status_until(&cp, 0, "exit 0 once the host is removed").await;
    assert!(empty.contains("0/0 agents"), "{empty}");
    cp.terminate();
    cp.restart();
    let (_, agents) = cp.api().get("/ops/agents").await.expect("agents");
    assert_eq!(agents["agents"], serde_json::json!([]), "{agents}");

    // A refused token and an unreachable control plane: UNKNOWN (3) with a one-line error.
    let (code, stdout, stderr) = status(&cp, "asb_not-a-token").await;
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stderr.contains("token refused"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    cp.terminate();
    let (code, stdout, stderr) = status(&cp, &cp.token).await;
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // Usage errors are not confused with fleet states.
    let (code, _, _) = run_cp(&["dashboard", "--mode", "bogus"]);
    assert_eq!(code, 64);
}
