//! A [`Report`] as plain text for a terminal or an email: the checklist first, then one section
//! per item. Pure.

use std::fmt::Write as _;

use super::{Report, Trend};

/// Renders the report.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, report);
    out
}

fn write_report(out: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(
        out,
        "Ai-semble Ops {} report, {} to {}",
        r.period,
        rfc3339(r.start_ms),
        rfc3339(r.end_ms)
    )?;
    writeln!(out)?;
    if r.findings.is_empty() {
        writeln!(out, "Checklist: all items ok.")?;
    } else {
        writeln!(out, "Needs attention ({}):", r.findings.len())?;
        for f in &r.findings {
            writeln!(out, "  [!] {f}")?;
        }
    }

    writeln!(out, "\nHosts ({}):", r.hosts.len())?;
    for h in &r.hosts {
        writeln!(
            out,
            "  {:<24} {:<5} uptime {}",
            h.host,
            if h.up { "up" } else { "DOWN" },
            h.uptime_share
                .map_or("n/a".to_owned(), |s| format!("{:.2}%", s * 100.0))
        )?;
    }

    writeln!(
        out,
        "\nServices (error rate, p95 latency; now vs previous window):"
    )?;
    if r.services.is_empty() {
        writeln!(out, "  no request data in the window")?;
    }
    for s in &r.services {
        writeln!(
            out,
            "  {:<24} {:>10.0} req  errors {}  p95 {}",
            s.service,
            s.requests,
            percent_trend(&s.error_rate),
            seconds_trend(&s.p95_latency_seconds)
        )?;
    }

    writeln!(
        out,
        "\nModels (failure rate, p95 latency; now vs previous window):"
    )?;
    if r.models.is_empty() {
        writeln!(out, "  no inference data in the window")?;
    }
    for m in &r.models {
        let provider = if m.provider.is_empty() {
            "unknown"
        } else {
            &m.provider
        };
        writeln!(
            out,
            "  {:<24} {:>10.0} inf  failures {}  p95 {}",
            format!("{provider}/{}", m.model),
            m.inferences,
            percent_trend(&m.failure_rate),
            seconds_trend(&m.p95_latency_seconds)
        )?;
    }

    writeln!(out, "\nDisks (linear fit over the window):")?;
    if r.disks.is_empty() {
        writeln!(out, "  no disk data in the window")?;
    }
    for d in &r.disks {
        let forecast = match (d.growth_percent_per_day, d.days_until_full) {
            (None, _) => "no forecast (needs an hour of samples)".to_owned(),
            (Some(g), None) => format!("{g:+.2} pt/day  not filling"),
            (Some(g), Some(days)) => format!("{g:+.2} pt/day  full in {days:.1} days"),
        };
        writeln!(
            out,
            "  {:<32} {:>5.1}%  {forecast}",
            format!("{}:{}", d.host, d.mount),
            d.usage_percent,
        )?;
    }

    writeln!(out, "\nBackups:")?;
    writeln!(out, "  {}", r.backups.note)?;
    for j in &r.backups.jobs {
        writeln!(
            out,
            "  {:<24} {:<24} {}",
            j.job,
            j.host,
            if j.last_run_success { "ok" } else { "FAILED" }
        )?;
    }

    writeln!(out, "\nSecurity:")?;
    if r.security.firing.is_empty() {
        writeln!(out, "  no security alerts firing")?;
    }
    for a in &r.security.firing {
        writeln!(
            out,
            "  [{}] {} on {}: {}",
            a.severity, a.name, a.host, a.summary
        )?;
    }
    if r.security.refused_connections.is_empty() {
        writeln!(
            out,
            "  no agent connections refused since the control plane started"
        )?;
    } else {
        let list: Vec<String> = r
            .security
            .refused_connections
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            out,
            "  agent connections refused since start: {}",
            list.join(", ")
        )?;
    }

    writeln!(out, "\nCertificates (soonest expiry first):")?;
    if r.certificates.is_empty() {
        writeln!(out, "  none issued")?;
    }
    for c in &r.certificates {
        writeln!(
            out,
            "  {:<24} serial {:<20} expires {} ({:.0} days) {}",
            c.name,
            c.serial_hex,
            rfc3339(c.not_after_ms),
            c.days_left,
            c.status
        )?;
    }

    writeln!(out, "\nInference cost:")?;
    writeln!(
        out,
        "  this month so far: {:.2} USD",
        r.cost.month_to_date_total_usd
    )?;
    for l in &r.cost.month_to_date {
        writeln!(
            out,
            "    {:<32} {:>10.2} USD",
            format!("{}/{}", l.provider, l.model),
            l.usd
        )?;
    }
    writeln!(
        out,
        "  in this window: {}",
        usd_trend(&r.cost.window_total_usd)
    )?;
    for l in &r.cost.window {
        writeln!(
            out,
            "    {:<32} {:>10.2} USD",
            format!("{}/{}", l.provider, l.model),
            l.usd
        )?;
    }
    Ok(())
}

fn previous<F: Fn(f64) -> String>(t: &Trend, f: F) -> String {
    match (t.now, t.previous) {
        (Some(now), Some(before)) => format!("{} (was {})", f(now), f(before)),
        (Some(now), None) => format!("{} (new)", f(now)),
        (None, Some(before)) => format!("n/a (was {})", f(before)),
        (None, None) => "n/a".to_owned(),
    }
}

fn percent_trend(t: &Trend) -> String {
    previous(t, |v| format!("{:.2}%", v * 100.0))
}

fn seconds_trend(t: &Trend) -> String {
    previous(t, |v| format!("{v:.3}s"))
}

fn usd_trend(t: &Trend) -> String {
    previous(t, |v| format!("{v:.2} USD"))
}

/// Milliseconds since the epoch as RFC 3339 (UTC, seconds).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}
