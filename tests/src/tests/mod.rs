//! End-to-end acceptance tests (telemetry pipeline; health checks and inference metrics; alerting;
//! the web dashboard in a real browser; the terminal dashboard and reports; the API's contract).
//! Every test starts real processes and talks real HTTP and mutual-TLS QUIC on loopback.

mod agent_logs;
mod alerts;
mod api;
mod backups;
mod checks;
mod config_errors;
mod dashboard;
mod enrollment;
mod examples;
mod fleet;
mod hostile;
mod inference;
mod journal_cap;
mod logs;
mod monitoring;
mod outage;
mod quickstart;
mod refusals;
mod reports;
mod tui;

use std::time::Duration;

use crate::{http::Api, process::Agent, wait};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("aisemble-it-")
        .tempdir()
        .expect("tempdir")
}

/// The agent record once the agent is connected.
async fn connected(api: &Api, name: &str) -> serde_json::Value {
    wait::until(
        Duration::from_secs(30),
        &format!("{name} connected"),
        || async {
            api.agent(name)
                .await
                .ok()
                .flatten()
                .filter(|a| a["connected"] == true)
        },
    )
    .await
}

/// Waits until the control plane has stored everything the agent journaled so far; returns the
/// journaled `(seq, timestamp)` pairs it waited for.
async fn drained(api: &Api, name: &str, agent: &Agent, timeout: Duration) -> Vec<(u64, i64)> {
    let journaled = agent.journaled();
    let last = journaled
        .iter()
        .map(|(seq, _)| *seq)
        .max()
        .expect("something journaled");
    wait::until(
        timeout,
        &format!("{name} stored up to seq {last}"),
        || async {
            let record = api.agent(name).await.ok().flatten()?;
            (record["stored_upto"].as_u64()? >= last).then_some(())
        },
    )
    .await;
    journaled
}

/// Asserts that the stored samples of `name`'s uptime series are exactly the journaled
/// timestamps (up to the last one journaled), and that the control plane saw no duplicate or
/// out-of-order sample.
async fn assert_exactly_once(api: &Api, name: &str, journaled: &[(u64, i64)]) {
    let mut expected: Vec<i64> = journaled.iter().map(|(_, t)| *t).collect();
    expected.sort_unstable();
    let mut seqs: Vec<u64> = journaled.iter().map(|(s, _)| *s).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        journaled.len(),
        "the agent journaled a sequence number twice"
    );
    let last = *expected.last().expect("journaled");
    let stored = api
        .raw_timestamps(&format!(
            "aisemble_system_uptime_seconds{{host=\"{name}\"}}[1h]"
        ))
        .await
        .expect("query")
        .remove(name)
        .unwrap_or_default();
    let stored: Vec<i64> = stored.into_iter().filter(|t| *t <= last).collect();
    let missing: Vec<&i64> = expected.iter().filter(|t| !stored.contains(t)).collect();
    let extra: Vec<&i64> = stored.iter().filter(|t| !expected.contains(t)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    assert_eq!(
        stored, expected,
        "stored timestamps differ from journaled ones"
    );
    let text = api.metrics().await.expect("metrics");
    for reason in ["duplicate_sample", "out_of_order_sample"] {
        let series = format!("aisemble_ingest_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(
            crate::http::metric_value(&text, &series),
            Some(0.0),
            "{series}"
        );
    }
}
