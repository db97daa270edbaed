//! `/metrics`: the control plane's own metrics, per-agent families, and the latest value of every
//! fleet series (within the 5-minute lookback), in Prometheus text format 0.0.4.

use std::{collections::BTreeMap, fmt::Write as _};

use aisemble_shared::metrics::{self, METRIC_NAME_LABEL, MetricKind};

use super::AppState;
use crate::{query::LOOKBACK, store::now_ms};

/// Renders the whole exposition.
pub(super) fn render(state: &AppState) -> Vec<u8> {
    let telemetry = &state.telemetry;
    telemetry
        .agents_connected
        .set(state.registry.connected_count() as i64);
    telemetry
        .store_series
        .set(state.store.series_count() as i64);
    telemetry
        .store_disk_bytes
        .set(state.store.size_on_disk() as i64);
    let mut out = Vec::with_capacity(64 << 10);
    telemetry.render(&mut out);
    let mut text = String::with_capacity(64 << 10);

    let agents = state.registry.list();
    family(
        &mut text,
        "aisemble_agent_buffer_depth",
        "gauge",
        "Records in the agent's journal not yet acknowledged.",
    );
    for agent in &agents {
        let _ = writeln!(
            text,
            "aisemble_agent_buffer_depth{{agent=\"{}\"}} {}",
            escape(&agent.record.name),
            agent.record.buffer.records
        );
    }
    family(
        &mut text,
        "aisemble_agent_buffer_dropped_total",
        "counter",
        "Records the agent evicted unsent because its journal was full.",
    );
    for agent in &agents {
        let _ = writeln!(
            text,
            "aisemble_agent_buffer_dropped_total{{agent=\"{}\"}} {}",
            escape(&agent.record.name),
            agent.record.buffer.dropped_records
        );
    }
    family(
        &mut text,
        "aisemble_agent_up",
        "gauge",
        "1 when the agent has a live session.",
    );
    for agent in &agents {
        let _ = writeln!(
            text,
            "aisemble_agent_up{{agent=\"{}\"}} {}",
            escape(&agent.record.name),
            u8::from(agent.connected)
        );
    }

    // Fleet series grouped by family, families in name order, series in label order.
    let since = now_ms() - LOOKBACK.as_millis() as i64;
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (labels, _, value) in state.store.latest(since) {
        let name = labels.metric_name();
        // The control plane's own series are query-only: alert state, and the per-host
        // agent_up that the gauge above already shows per agent.
        if matches!(name, "ALERTS" | "ALERTS_FOR_STATE" | "aisemble_agent_up")
            || crate::query::is_stale_marker(value)
        {
            continue;
        }
        let family_name = metrics::fleet_metric(name)
            .map_or(name, |m| m.name)
            .to_owned();
        let mut line = String::with_capacity(128);
        line.push_str(name);
        line.push('{');
        let mut first = true;
        for pair in labels.iter().filter(|p| &*p.name != METRIC_NAME_LABEL) {
            if !first {
                line.push(',');
            }
            first = false;
            let _ = write!(line, "{}=\"{}\"", pair.name, escape(&pair.value));
        }
        let _ = write!(line, "}} {}", format_value(value));
        families.entry(family_name).or_default().push(line);
    }
    for (name, mut lines) in families {
        let (kind, help) = match metrics::fleet_metric(&name) {
            Some(info) => (info.kind.as_str(), info.help),
            None => (MetricKind::Gauge.as_str(), "Metric reported by an agent."),
        };
        let kind = if name.ends_with("_total") && kind == "gauge" {
            "counter"
        } else {
            kind
        };
        family(&mut text, &name, kind, help);
        lines.sort();
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
    }
    out.extend_from_slice(text.as_bytes());
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value for the text format.
pub(super) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Formats a sample value as Prometheus does.
pub(super) fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        value.to_string()
    }
}
