use std::time::Duration;

use super::{assert_exactly_once, connected, drained, tempdir};
use crate::{
    process::{Agent, ControlPlane},
    wait,
};

async fn started(name: &str, dir: &std::path::Path) -> (ControlPlane, Agent) {
    let cp = ControlPlane::serve(&dir.join("cp"));
    let agent = Agent::start(&cp.issue_agent(name, &dir.join(name), "1s", "64MiB"));
    connected(&cp.api(), name).await;
    // A few records stored before trouble starts.
    wait::until(Duration::from_secs(20), "first records stored", || async {
        let record = cp.api().agent(name).await.ok().flatten()?;
        (record["stored_upto"].as_u64()? >= 3).then_some(())
    })
    .await;
    (cp, agent)
}

/// Kill -9 the control plane, keep it down 60 s, restart: every sample taken during the outage is
/// stored, none twice (exact timestamps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_down_for_60s_loses_nothing_and_duplicates_nothing() {
    let dir = tempdir();
    let (mut cp, agent) = started("outage", dir.path()).await;
    cp.kill9();
    let before = agent.journaled().len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let during = agent.journaled().len() - before;
    assert!(
        during >= 55,
        "the agent kept collecting during the outage ({during} records)"
    );
    cp.restart();
    let journaled = drained(&cp.api(), "outage", &agent, Duration::from_secs(30)).await;
    assert_exactly_once(&cp.api(), "outage", &journaled).await;
}

/// Kill -9 the agent while it replays its backlog, restart it: still exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_replay_loses_nothing_and_duplicates_nothing() {
    let dir = tempdir();
    let (mut cp, mut agent) = started("replayer", dir.path()).await;
    cp.kill9();
    tokio::time::sleep(Duration::from_secs(15)).await;
    cp.restart();
    // Kill the agent the moment its session is accepted: the replay is in flight.
    cp.stderr
        .wait_for("Agent connected.", Duration::from_secs(20));
    agent.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    agent.restart();
    let journaled = drained(&cp.api(), "replayer", &agent, Duration::from_secs(30)).await;
    assert_exactly_once(&cp.api(), "replayer", &journaled).await;
}

/// Kill -9 the control plane repeatedly while it ingests: still exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_killed_mid_ingest_loses_nothing_and_duplicates_nothing() {
    let dir = tempdir();
    let (mut cp, agent) = started("ingest", dir.path()).await;
    for offset_ms in [150u64, 480, 820] {
        // Land the kill at different points of the 1 s collect → send → commit → ack cycle.
        tokio::time::sleep(Duration::from_millis(1000 + offset_ms)).await;
        cp.kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        cp.restart();
        connected(&cp.api(), "ingest").await;
    }
    let journaled = drained(&cp.api(), "ingest", &agent, Duration::from_secs(30)).await;
    assert_exactly_once(&cp.api(), "ingest", &journaled).await;
}
