use std::time::Duration;

use super::{connected, tempdir};
use crate::{
    process::{Agent, ControlPlane},
    wait,
};

/// With the control plane unreachable, a full journal evicts its oldest records and counts them;
/// the agent keeps running in bounded memory; once connected the count shows on `/ops/agents` and
/// `aisemble_agent_buffer_dropped_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_evicts_oldest_counts_and_keeps_running() {
    let dir = tempdir();
    let mut cp = ControlPlane::serve(&dir.path().join("cp"));
    let config = cp.issue_agent("capped", &dir.path().join("capped"), "200ms", "64KiB");
    cp.terminate();
    let mut agent = Agent::start(&config);
    agent.stderr.wait_for(
        "Journal full; oldest records evicted.",
        Duration::from_secs(60),
    );
    let first_rss = agent.rss_kib().expect("rss");
    // Keep evicting for a while: memory must not grow with the number of evictions.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let second_rss = agent.rss_kib().expect("rss");
    assert!(
        agent.running(),
        "the agent keeps running with a full journal"
    );
    assert!(second_rss < 64 * 1024, "agent RSS {second_rss} KiB");
    assert!(
        second_rss < first_rss + 8 * 1024,
        "RSS grew from {first_rss} to {second_rss} KiB while evicting"
    );

    let status = std::process::Command::new(&crate::bins::binaries().agent)
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        status.status.code(),
        Some(1),
        "running but not connected: {text}"
    );
    assert!(text.contains("dropped"), "{text}");

    cp.restart();
    let api = cp.api();
    connected(&api, "capped").await;
    let dropped = wait::until(
        Duration::from_secs(20),
        "dropped count reported",
        || async {
            let record = api.agent("capped").await.ok().flatten()?;
            record["buffer"]["dropped_records"]
                .as_u64()
                .filter(|d| *d > 0)
        },
    )
    .await;
    let metric = api
        .metric("aisemble_agent_buffer_dropped_total{agent=\"capped\"}")
        .await
        .expect("metrics");
    assert!(
        metric.is_some_and(|m| m >= dropped as f64),
        "metric {metric:?} vs {dropped}"
    );
    // What the control plane shows is exactly what the agent evicted (the journal was new, so
    // the agent's eviction log lines add up to its persisted counter).
    let logged_evictions = || -> u64 {
        agent
            .stderr
            .events()
            .iter()
            .filter(|e| e["message"] == "Journal full; oldest records evicted.")
            .filter_map(|e| e["evicted"].as_u64())
            .sum()
    };
    wait::until(
        Duration::from_secs(20),
        "reported drops equal logged evictions",
        || async {
            let record = api.agent("capped").await.ok().flatten()?;
            let reported = record["buffer"]["dropped_records"].as_u64()?;
            (reported > 0 && reported == logged_evictions()).then_some(())
        },
    )
    .await;
    // After the outage the agent streams normally.
    let before = api.agent("capped").await.expect("agent").expect("known")["stored_upto"]
        .as_u64()
        .unwrap_or(0);
    wait::until(Duration::from_secs(20), "new records stored", || async {
        let record = api.agent("capped").await.ok().flatten()?;
        (record["stored_upto"].as_u64()? > before + 5).then_some(())
    })
    .await;
    let status = std::process::Command::new(&crate::bins::binaries().agent)
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .expect("status");
    assert_eq!(
        status.status.code(),
        Some(0),
        "connected: {}",
        String::from_utf8_lossy(&status.stdout)
    );
}
