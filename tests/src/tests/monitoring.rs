//! `POST /ops/monitoring/stop|start`: a paused agent stops sending samples within one interval,
//! stays paused across a reconnect, and resumes on start; the others never stop.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{connected, tempdir};
use crate::{
    http::Api,
    process::{Agent, ControlPlane},
    wait,
};

/// The newest stored sample time (ms) of the agent's uptime series.
async fn newest_sample(api: &Api, host: &str) -> Option<i64> {
    api.raw_timestamps(&format!(
        "aisemble_system_uptime_seconds{{host=\"{host}\"}}[1h]"
    ))
    .await
    .ok()?
    .remove(host)?
    .into_iter()
    .max()
}

/// Waits until a sample newer than `after` (ms since the epoch) is stored for `host`.
async fn sample_after(api: &Api, host: &str, after: i64, timeout: Duration) -> i64 {
    wait::until(
        timeout,
        &format!("a sample of {host} after {after}"),
        || async { newest_sample(api, host).await.filter(|t| *t > after) },
    )
    .await
}

fn now_ms() -> i64 {
    crate::fake_agent::now_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_stop_pauses_listed_agents_across_reconnects_and_start_resumes() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();
    let mut paused = Agent::start(&cp.issue_agent("paused", &dir.path().join("a"), "1s", "64MiB"));
    let _running = Agent::start(&cp.issue_agent("running", &dir.path().join("b"), "1s", "64MiB"));
    connected(&api, "paused").await;
    connected(&api, "running").await;
    let start = now_ms();
    sample_after(&api, "paused", start, Duration::from_secs(20)).await;
    sample_after(&api, "running", start, Duration::from_secs(20)).await;

    // Unknown agents are refused whole: nothing is paused.
    let (status, body) = api
        .post(
            "/ops/monitoring/stop",
            &json!({"agents": ["paused", "nobody"]}),
        )
        .await
        .expect("post");
    assert_eq!(status, 404, "{body}");
    let (status, body) = api
        .post("/ops/monitoring/stop", &json!({"agents": "paused"}))
        .await
        .expect("post");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("agents"),
        "{body}"
    );

    let (status, body) = api
        .post("/ops/monitoring/stop", &json!({"agents": ["paused"]}))
        .await
        .expect("post");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agents"], json!(["paused"]), "{body}");
    let stopped_at = now_ms();
    let record = api.agent("paused").await.expect("get").expect("known");
    assert_eq!(record["monitoring"], "paused", "{record}");
    let other = api.agent("running").await.expect("get").expect("known");
    assert_eq!(other["monitoring"], "running", "{other}");

    // Within one interval (1 s) plus what was already in flight, the samples stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let last = newest_sample(&api, "paused").await.expect("samples");
    assert!(
        last <= stopped_at + 1_500,
        "a sample taken {} ms after the stop",
        last - stopped_at
    );
    let checked = now_ms();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        newest_sample(&api, "paused").await,
        Some(last),
        "still paused"
    );
    sample_after(&api, "running", checked, Duration::from_secs(10)).await;

    // The state survives a reconnect: the restarted agent is told it is paused at once.
    paused.restart();
    wait::until(
        Duration::from_secs(30),
        "the paused agent reconnected",
        || async {
            let record = api.agent("paused").await.ok().flatten()?;
            (record["connected"] == true && record["connected_since_ms"].as_i64()? > checked)
                .then_some(())
        },
    )
    .await;
    let reconnected = Instant::now();
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(reconnected.elapsed())).await;
    assert_eq!(
        newest_sample(&api, "paused").await,
        Some(last),
        "paused after a reconnect"
    );
    assert_eq!(
        api.agent("paused").await.expect("get").expect("known")["monitoring"],
        "paused"
    );

    // Start with no body: fleet-wide.
    let (status, body) = api.post_empty("/ops/monitoring/start").await.expect("post");
    assert_eq!(status, 200, "{body}");
    let resumed = now_ms();
    let first = sample_after(&api, "paused", last, Duration::from_secs(10)).await;
    assert!(
        first >= resumed - 1_000,
        "resumed with fresh samples ({first} vs start at {resumed})"
    );
    assert_eq!(
        api.agent("paused").await.expect("get").expect("known")["monitoring"],
        "running"
    );
}
