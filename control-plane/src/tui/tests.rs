use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend};
use serde_json::json;

use super::{
    snapshot::{Parts, Section, Snapshot},
    status::{self, Level},
    ui::{Action, Pane, UiState},
};

fn parts() -> Parts {
    Parts {
        status: json!({
            "status": "healthy", "version": "0.1.0", "uptime_seconds": 3700,
            "agents": {"total": 2, "connected": 2, "disconnected": 0},
            "checks": {"total": 1, "up": 1, "down": []},
            "resources": {"cpu_usage_percent": {"avg": 12.5, "max": 20.0, "hosts": 2},
                          "memory_usage_percent": null, "disk_usage_percent": {"avg": 40.0, "max": 50.0, "hosts": 2}},
            "cost_this_month_usd": 1.25,
        }),
        health: json!({
            "status": "healthy",
            "components": {"store": {"status": "healthy"}, "api": {"status": "healthy"}},
            "agents": [{"id": "gpu-1", "status": "healthy", "reasons": []},
                       {"id": "gpu-2", "status": "healthy", "reasons": []}],
        }),
        agents: json!({"agents": [
            {"id": "gpu-1", "connected": true, "version": "0.1.0",
             "resources": {"cpu_usage_percent": 20.0, "memory_usage_percent": 30.0,
                           "fullest_disk": {"mount": "/", "usage_percent": 50.0}}},
            {"id": "gpu-2", "connected": true, "version": "0.1.0", "resources": {}},
        ]}),
        details: [(
            "gpu-1".to_owned(),
            json!({"checks": [{"check": "api", "kind": "http", "up": true, "duration_seconds": 0.012}],
                   "views": {"services": [{"service": "chat", "requests_per_second": 3.0, "success_rate": 0.99,
                                           "latency_seconds": {"p95": 0.2}}],
                             "models": [{"model": "llama", "throughput_per_second": 0.5, "success_rate": 1.0,
                                         "latency_seconds": {"p95": 1.5}}]}}),
        )]
        .into_iter()
        .collect(),
        alerts: json!({"alerts": [
            {"name": "Resolved", "state": "inactive", "severity": "critical"},
            {"name": "HighCpu", "state": "firing", "severity": "warning", "host": "gpu-1",
             "annotations": {"summary": "CPU high"}, "muted": false},
            {"name": "DiskCritical", "state": "pending", "severity": "critical", "host": "gpu-2"},
        ]}),
        requests_by_host: json!({"data": {"result": [{"metric": {"host": "gpu-1"}, "value": [1, "3.5"]}]}}),
        inferences_by_host: json!({"data": {"result": []}}),
        logs: Ok(None),
        backups: Err("HTTP 500".into()),
    }
}

fn snapshot() -> Snapshot {
    Snapshot::from_parts("http://cp:8080", 0, &parts())
}

#[test]
fn parts_become_a_typed_snapshot() {
    let s = snapshot();
    assert_eq!(s.fleet.agents_connected, 2);
    assert_eq!(s.fleet.cpu, Some((12.5, 20.0)));
    assert_eq!(s.fleet.memory, None);
    assert_eq!(s.hosts.len(), 2);
    let gpu1 = &s.hosts[0];
    assert_eq!(gpu1.requests_per_second, Some(3.5));
    assert_eq!(gpu1.fullest_disk, Some(("/".to_owned(), 50.0)));
    assert_eq!(gpu1.checks[0].name, "api");
    assert_eq!(gpu1.services[0].p95_seconds, Some(0.2));
    assert_eq!(gpu1.models[0].model, "llama");
    // Inactive alerts dropped; critical (pending) sorts before warning (firing).
    let names: Vec<&str> = s.alerts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["DiskCritical", "HighCpu"]);
    assert_eq!(s.logs, Section::NotAvailable);
    assert!(matches!(s.backups, Section::Fail(_)));
    // Garbage never panics: everything becomes empty.
    let empty = Snapshot::from_parts("u", 0, &Parts::default());
    assert!(empty.hosts.is_empty() && empty.alerts.is_empty());
}

#[track_caller]
fn check_level(parts: &Parts, expected: Level) {
    let s = Snapshot::from_parts("u", 0, parts);
    let assessment = status::assess(&s);
    assert_eq!(
        assessment.level,
        expected,
        "{}",
        status::summary(&s, &assessment)
    );
}

#[test]
fn status_levels_follow_the_fleet() {
    // A firing warning; the critical one only pending.
    check_level(&parts(), Level::Warning);

    let mut healthy = parts();
    healthy.alerts = json!({"alerts": []});
    check_level(&healthy, Level::Healthy);

    // A muted warning does not count.
    let mut muted = parts();
    muted.alerts["alerts"][1]["muted"] = json!(true);
    check_level(&muted, Level::Healthy);

    let mut critical = healthy.clone();
    critical.alerts = json!({"alerts": [{"name": "X", "state": "firing", "severity": "critical"}]});
    check_level(&critical, Level::Critical);

    let mut down = healthy.clone();
    down.agents["agents"][1]["connected"] = json!(false);
    check_level(&down, Level::Critical);

    let mut check_down = healthy.clone();
    check_down.health["agents"][0] = json!({"id": "gpu-1", "status": "unhealthy", "reasons": ["check api (http) down: refused"]});
    check_level(&check_down, Level::Critical);

    let mut degraded = healthy.clone();
    degraded.health["components"]["store"] =
        json!({"status": "degraded", "reason": "3 WAL commits failed since start"});
    check_level(&degraded, Level::Warning);

    let mut paused = healthy;
    paused.health["agents"][0] =
        json!({"id": "gpu-1", "status": "degraded", "reasons": ["monitoring paused"]});
    check_level(&paused, Level::Warning);
}

#[test]
fn summary_is_one_status_line_then_reasons() {
    let s = snapshot();
    let text = status::summary(&s, &status::assess(&s));
    let mut lines = text.lines();
    let first = lines.next().expect("a line");
    assert!(
        first.starts_with("AISEMBLE WARNING - 2/2 agents connected"),
        "{text}"
    );
    assert!(
        text.contains("WARNING  alert HighCpu (warning) firing on gpu-1: CPU high"),
        "{text}"
    );
    assert!(text.contains("pending  alert DiskCritical"), "{text}");
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn keys_move_focus_scroll_refresh_and_quit() {
    let mut ui = UiState::default();
    assert_eq!(ui.focus, Pane::Status);
    for (code, focus) in [
        (KeyCode::Tab, Pane::Alerts),
        (KeyCode::Right, Pane::Services),
        (KeyCode::Tab, Pane::Logs),
        (KeyCode::Tab, Pane::Backups),
        (KeyCode::Tab, Pane::Status),
        (KeyCode::Left, Pane::Backups),
        (KeyCode::BackTab, Pane::Logs),
    ] {
        assert_eq!(ui.handle_key(key(code)), Action::Redraw);
        assert_eq!(ui.focus, focus, "after {code:?}");
    }
    ui.handle_key(key(KeyCode::Char('j')));
    ui.handle_key(key(KeyCode::Char('j')));
    ui.handle_key(key(KeyCode::Char('k')));
    assert_eq!(ui.scroll(Pane::Logs), 1);
    assert_eq!(ui.scroll(Pane::Status), 0);
    ui.handle_key(key(KeyCode::Char('k')));
    ui.handle_key(key(KeyCode::Char('k')));
    assert_eq!(ui.scroll(Pane::Logs), 0);
    assert_eq!(ui.handle_key(key(KeyCode::Char('r'))), Action::Refresh);
    assert_eq!(ui.handle_key(key(KeyCode::Char('q'))), Action::Quit);
    assert_eq!(
        ui.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
}

fn draw(snapshot: &Snapshot, ui: &UiState) -> String {
    let mut terminal = Terminal::new(TestBackend::new(140, 40)).expect("terminal");
    terminal
        .draw(|frame| super::render(frame, snapshot, ui))
        .expect("draws");
    let buffer = terminal.backend().buffer();
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn renders_five_panes_with_the_data() {
    let screen = draw(&snapshot(), &UiState::default());
    for needle in [
        "System status",
        "Alerts",
        "Services",
        "Log stats",
        "Backups",
        "[WARNING]",
        "Agents: 2/2 connected",
        "HighCpu",
        "gpu-1",
        "service chat: 3.00 req/s",
        "model llama",
        "check api (http) up 12ms",
        "not available on this control plane yet",
        "request failed: HTTP 500",
        "q quit",
    ] {
        assert!(
            screen.contains(needle),
            "{needle:?} not on screen:\n{screen}"
        );
    }
    // Scrolling the services pane moves its first host out of view.
    let mut ui = UiState::default();
    ui.handle_key(key(KeyCode::Tab));
    ui.handle_key(key(KeyCode::Tab));
    for _ in 0..4 {
        ui.handle_key(key(KeyCode::Char('j')));
    }
    let scrolled = draw(&snapshot(), &ui);
    assert!(!scrolled.contains("cpu 20.0%"), "{scrolled}");
    // A tiny terminal does not panic.
    let mut small = Terminal::new(TestBackend::new(10, 5)).expect("terminal");
    small
        .draw(|frame| super::render(frame, &snapshot(), &UiState::default()))
        .expect("draws");
}

#[test]
fn log_stats_show_totals_levels_and_busiest_services() {
    let mut parts = parts();
    parts.logs = Ok(Some(json!({
        "total": 10, "errors": 3, "error_rate": 0.3,
        "by_level": {"trace": 0, "debug": 0, "info": 7, "warn": 0, "error": 2, "critical": 1},
        "by_service": {"api": 8, "worker": 2},
    })));
    let s = Snapshot::from_parts("u", 0, &parts);
    let Section::Available(lines) = &s.logs else {
        panic!("{:?}", s.logs);
    };
    let text: Vec<String> = lines.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    assert_eq!(
        text,
        [
            "lines (24h): 10",
            "errors: 3",
            "error rate: 30.0%",
            "levels: critical 1, error 2, info 7",
            "service api: 8",
            "service worker: 2",
        ]
    );
}
