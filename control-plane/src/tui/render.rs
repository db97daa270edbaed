//! Drawing: `render(frame, &snapshot, &ui)` lays out the five panes and draws them. Pure (a
//! function of its inputs; no I/O), so tests draw into ratatui's `TestBackend`.
//!
//! Layout: a title line; system status beside the alerts; the services pane across; log stats
//! beside backups; a help line. The focused pane has a highlighted border and scrolls with j/k.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Paragraph, Wrap},
};

use super::{
    snapshot::{Section, Snapshot},
    status,
    ui::{Pane, UiState},
};

/// Draws everything.
pub fn render(frame: &mut Frame<'_>, snapshot: &Snapshot, ui: &UiState) {
    let [title, top, middle, bottom, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(35),
        Constraint::Fill(1),
        Constraint::Percentage(20),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [status_area, alerts_area] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(top);
    let [logs_area, backups_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);

    frame.render_widget(Paragraph::new(title_line(snapshot, ui)), title);
    pane(frame, ui, Pane::Status, status_area, status_lines(snapshot));
    pane(frame, ui, Pane::Alerts, alerts_area, alert_lines(snapshot));
    pane(frame, ui, Pane::Services, middle, service_lines(snapshot));
    pane(
        frame,
        ui,
        Pane::Logs,
        logs_area,
        section_lines(&snapshot.logs, "Log stats", "/ops/logs/stats"),
    );
    pane(
        frame,
        ui,
        Pane::Backups,
        backups_area,
        section_lines(&snapshot.backups, "Backups", "/ops/backups/status"),
    );
    frame.render_widget(
        Paragraph::new(Line::styled(
            " Tab/←→ pane · j/k ↑↓ scroll · r refresh · q quit",
            Style::new().fg(Color::DarkGray),
        )),
        help,
    );
}

fn pane(frame: &mut Frame<'_>, ui: &UiState, which: Pane, area: Rect, lines: Vec<Line<'static>>) {
    let focused = ui.focus == which;
    let border = if focused {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::Gray)
    };
    let block = Block::bordered()
        .title(format!(" {} ", which.title()))
        .border_style(border);
    // Clamp the scroll so that j past the end does not scroll into emptiness.
    let max = u16::try_from(lines.len().saturating_sub(1)).unwrap_or(u16::MAX);
    let paragraph = Paragraph::new(lines)
        .block(block)
        .wrap(Wrap { trim: false })
        .scroll((ui.scroll(which).min(max), 0));
    frame.render_widget(paragraph, area);
}

fn level_style(level: status::Level) -> Style {
    match level {
        status::Level::Healthy => Style::new().fg(Color::Green),
        status::Level::Warning => Style::new().fg(Color::Yellow),
        status::Level::Critical => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

fn title_line(snapshot: &Snapshot, ui: &UiState) -> Line<'static> {
    let level = status::assess(snapshot).level;
    let mut spans = vec![
        Span::styled(" Ai-semble Ops ", Style::new().add_modifier(Modifier::BOLD)),
        Span::styled(format!("[{}] ", level.as_str()), level_style(level)),
        Span::raw(format!(
            "{} · updated {}",
            snapshot.url,
            clock(snapshot.fetched_at_ms)
        )),
    ];
    if let Some(error) = &ui.last_error {
        spans.push(Span::styled(
            format!(" · refresh failed: {error}"),
            Style::new().fg(Color::Red),
        ));
    }
    Line::from(spans)
}

/// `HH:MM:SS` UTC.
fn clock(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn health_style(status: &str) -> Style {
    match status {
        "healthy" => Style::new().fg(Color::Green),
        "degraded" => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Red),
    }
}

fn pct(v: Option<(f64, f64)>) -> String {
    v.map_or("n/a".into(), |(avg, max)| {
        format!("avg {avg:.1}% max {max:.1}%")
    })
}

fn status_lines(s: &Snapshot) -> Vec<Line<'static>> {
    let f = &s.fleet;
    let mut lines = vec![
        Line::from(vec![
            Span::raw("Fleet: "),
            Span::styled(f.status.clone(), health_style(&f.status)),
            Span::raw("  health: "),
            Span::styled(f.health.clone(), health_style(&f.health)),
        ]),
        Line::raw(format!(
            "Agents: {}/{} connected   Checks: {}/{} up",
            f.agents_connected,
            f.agents_total,
            f.checks_total.saturating_sub(f.checks_down),
            f.checks_total
        )),
        Line::raw(format!("CPU:    {}", pct(f.cpu))),
        Line::raw(format!("Memory: {}", pct(f.memory))),
        Line::raw(format!("Disk:   {}", pct(f.disk))),
        Line::raw(format!(
            "Cost this month: {}",
            f.cost_this_month_usd
                .map_or("n/a".into(), |c| format!("{c:.2} USD"))
        )),
        Line::raw(format!(
            "Control plane {} up {}",
            f.version,
            f.uptime_seconds.map_or("n/a".into(), duration)
        )),
    ];
    for c in &f.components {
        let mut spans = vec![
            Span::raw(format!("  {:<8} ", c.name)),
            Span::styled(c.status.clone(), health_style(&c.status)),
        ];
        if let Some(reason) = &c.reason {
            spans.push(Span::raw(format!(" ({reason})")));
        }
        lines.push(Line::from(spans));
    }
    for a in f.agent_health.iter().filter(|a| a.status != "healthy") {
        lines.push(Line::from(vec![
            Span::raw(format!("  {} ", a.id)),
            Span::styled(a.status.clone(), health_style(&a.status)),
            Span::raw(format!(": {}", a.reasons.join("; "))),
        ]));
    }
    lines
}

fn duration(seconds: f64) -> String {
    let s = seconds as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{}h", s / 86_400, s / 3600 % 24),
    }
}

fn severity_style(severity: &str) -> Style {
    match severity {
        "critical" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        "warning" => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Blue),
    }
}

fn alert_lines(s: &Snapshot) -> Vec<Line<'static>> {
    let count = |severity: &str| s.firing(severity).count();
    let mut lines = vec![Line::raw(format!(
        "Firing: {} critical · {} warning · {} info",
        count("critical"),
        count("warning"),
        count("info")
    ))];
    if s.alerts.is_empty() {
        lines.push(Line::styled(
            "No alerts pending or firing.",
            Style::new().fg(Color::Green),
        ));
    }
    for a in &s.alerts {
        let mut spans = vec![
            Span::styled(
                format!("{:<8} ", a.severity.to_uppercase()),
                severity_style(&a.severity),
            ),
            Span::raw(format!("{:<7} ", a.state)),
            Span::styled(a.name.clone(), Style::new().add_modifier(Modifier::BOLD)),
        ];
        if !a.host.is_empty() {
            spans.push(Span::raw(format!(" on {}", a.host)));
        }
        if a.muted {
            spans.push(Span::styled(" (muted)", Style::new().fg(Color::DarkGray)));
        }
        if !a.summary.is_empty() {
            spans.push(Span::raw(format!(" — {}", a.summary)));
        }
        lines.push(Line::from(spans));
    }
    lines
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("n/a".into(), f)
}

fn service_lines(s: &Snapshot) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if s.hosts.is_empty() {
        lines.push(Line::raw(
            "No agents yet: issue a certificate with `aisemble-cp certs issue-agent NAME`.",
        ));
    }
    for h in &s.hosts {
        let state = if h.connected {
            Span::styled("up  ", Style::new().fg(Color::Green))
        } else {
            Span::styled(
                "DOWN",
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            )
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:<20} ", h.name),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            state,
            Span::raw(format!(
                "  cpu {}  mem {}  disk {}  req/s {}  inf/s {}  v{}",
                opt(h.cpu, |v| format!("{v:.1}%")),
                opt(h.memory, |v| format!("{v:.1}%")),
                h.fullest_disk
                    .as_ref()
                    .map_or("n/a".into(), |(m, p)| format!("{m} {p:.1}%")),
                opt(h.requests_per_second, |v| format!("{v:.2}")),
                opt(h.inferences_per_second, |v| format!("{v:.2}")),
                h.version
            )),
        ]));
        for c in &h.checks {
            let mut spans = vec![
                Span::raw(format!("    check {} ({}) ", c.name, c.kind)),
                if c.up {
                    Span::styled("up", Style::new().fg(Color::Green))
                } else {
                    Span::styled("DOWN", Style::new().fg(Color::Red))
                },
                Span::raw(format!(
                    " {}",
                    opt(c.duration_seconds, |d| format!("{:.0}ms", d * 1000.0))
                )),
            ];
            if let Some(error) = &c.error {
                spans.push(Span::raw(format!(": {error}")));
            }
            lines.push(Line::from(spans));
        }
        for v in &h.services {
            lines.push(Line::raw(format!(
                "    service {}: {:.2} req/s, success {}, p95 {}",
                v.service,
                v.requests_per_second,
                opt(v.success_rate, |r| format!("{:.1}%", r * 100.0)),
                opt(v.p95_seconds, |p| format!("{p:.3}s"))
            )));
        }
        for m in &h.models {
            lines.push(Line::raw(format!(
                "    model {}: {:.2} inf/s, success {}, p95 {}",
                m.model,
                m.per_second,
                opt(m.success_rate, |r| format!("{:.1}%", r * 100.0)),
                opt(m.p95_seconds, |p| format!("{p:.3}s"))
            )));
        }
    }
    lines
}

fn section_lines(section: &Section, what: &str, path: &str) -> Vec<Line<'static>> {
    match section {
        Section::NotAvailable => vec![
            Line::styled(
                format!("{what}: not available on this control plane yet"),
                Style::new().fg(Color::Yellow),
            ),
            Line::styled(
                format!("(GET {path} answered 404)"),
                Style::new().fg(Color::DarkGray),
            ),
        ],
        Section::Fail(error) => vec![Line::styled(
            format!("{what}: request failed: {error}"),
            Style::new().fg(Color::Red),
        )],
        Section::Available(items) if items.is_empty() => vec![Line::raw(format!("{what}: none"))],
        Section::Available(items) => items
            .iter()
            .map(|(k, v)| Line::raw(format!("{k}: {v}")))
            .collect(),
    }
}
