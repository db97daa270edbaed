//! `aisemble-cp dashboard --mode status`: the fleet's state as one level, for scripts and cron,
//! with the exit codes of a Nagios plugin (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
//!
//! The level is the worst of:
//! - **critical** — an agent disconnected; a health check failing (the comprehensive health's
//!   `unhealthy`); a `critical` alert firing and not silenced or inhibited.
//! - **warning** — a `warning` alert firing and not muted; a control plane component not
//!   healthy; an agent `degraded` (monitoring paused).
//! - **healthy** — none of these.
//!
//! Pending alerts, `info` alerts and muted alerts do not raise the level (they are listed).
//! When the control plane cannot be asked (unreachable, token refused), the caller exits with
//! [`EXIT_UNKNOWN`]. Pure.

use std::fmt::Write as _;

use super::snapshot::Snapshot;

/// Exit code when the control plane is unreachable or refuses the token.
pub const EXIT_UNKNOWN: u8 = 3;

/// The fleet's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing wrong.
    Healthy,
    /// Something to look at.
    Warning,
    /// Something down.
    Critical,
}

impl Level {
    /// The exit code: 0, 1 or 2.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Healthy => 0,
            Self::Warning => 1,
            Self::Critical => 2,
        }
    }

    /// `OK`, `WARNING` or `CRITICAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
        }
    }
}

/// The level and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The worst finding.
    pub level: Level,
    /// Every finding, worst first.
    pub reasons: Vec<(Level, String)>,
}

/// Assesses a snapshot.
pub fn assess(snapshot: &Snapshot) -> Assessment {
    let mut reasons: Vec<(Level, String)> = Vec::new();
    for host in snapshot.hosts.iter().filter(|h| !h.connected) {
        reasons.push((Level::Critical, format!("agent {} disconnected", host.name)));
    }
    for agent in &snapshot.fleet.agent_health {
        let level = match agent.status.as_str() {
            "unhealthy" => Level::Critical,
            "degraded" => Level::Warning,
            _ => continue,
        };
        // Disconnection is already listed from the inventory.
        for reason in agent
            .reasons
            .iter()
            .filter(|r| !r.starts_with("disconnected"))
        {
            reasons.push((level, format!("agent {}: {reason}", agent.id)));
        }
    }
    for component in snapshot
        .fleet
        .components
        .iter()
        .filter(|c| c.status != "healthy")
    {
        reasons.push((
            Level::Warning,
            format!(
                "component {} {}{}",
                component.name,
                component.status,
                component
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        ));
    }
    for alert in &snapshot.alerts {
        if alert.state != "firing" || alert.muted {
            continue;
        }
        let level = match alert.severity.as_str() {
            "critical" => Level::Critical,
            "warning" => Level::Warning,
            _ => continue,
        };
        reasons.push((level, alert_line(alert)));
    }
    // Stable: within a level, findings keep their order (hosts, components, alerts).
    reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
    Assessment {
        level: reasons.first().map_or(Level::Healthy, |r| r.0),
        reasons,
    }
}

fn alert_line(alert: &super::snapshot::AlertRow) -> String {
    let mut line = format!("alert {} ({}) {}", alert.name, alert.severity, alert.state);
    if !alert.host.is_empty() {
        let _ = write!(line, " on {}", alert.host);
    }
    if !alert.summary.is_empty() {
        let _ = write!(line, ": {}", alert.summary);
    }
    line
}

/// The plain-text summary: one status line, then one line per finding, then what was muted or
/// pending.
pub fn summary(snapshot: &Snapshot, assessment: &Assessment) -> String {
    let f = &snapshot.fleet;
    let count = |severity: &str| snapshot.firing(severity).count();
    let mut out = format!(
        "AISEMBLE {} - {}/{} agents connected, checks {}/{} up, alerts firing: {} critical, {} warning ({})\n",
        assessment.level.as_str(),
        f.agents_connected,
        f.agents_total,
        f.checks_total.saturating_sub(f.checks_down),
        f.checks_total,
        count("critical"),
        count("warning"),
        snapshot.url,
    );
    for (level, reason) in &assessment.reasons {
        let _ = writeln!(out, "  {:<8} {reason}", level.as_str());
    }
    for alert in snapshot
        .alerts
        .iter()
        .filter(|a| a.muted || a.state != "firing")
    {
        let why = if a_muted(alert) { "muted" } else { "pending" };
        let _ = writeln!(out, "  {why:<8} {}", alert_line(alert));
    }
    out
}

fn a_muted(alert: &super::snapshot::AlertRow) -> bool {
    alert.muted && alert.state == "firing"
}
