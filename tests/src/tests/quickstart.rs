use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::tempdir;
use crate::{http::metric_value, process::ControlPlane, wait};

/// SPEC §4 / README: a fresh data directory, `aisemble-cp quickstart`, and within 30 s `/metrics`
/// shows the local agent's CPU with its host label and one connected agent; the exposition passes
/// `promtool check metrics`; the control plane's own log lines, tailed by the local agent, are
/// searchable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_streams_a_local_agent_within_30_seconds() {
    let dir = tempdir();
    // Building the binaries (a no-op in CI) is not part of the 30 s.
    crate::bins::binaries();
    let started = Instant::now();
    let cp = ControlPlane::quickstart(&dir.path().join("data"));
    let api = cp.api();
    let text = wait::until(
        Duration::from_secs(30).saturating_sub(started.elapsed()),
        "CPU series and one agent",
        || async {
            let text = api.metrics().await.ok()?;
            (text.contains("aisemble_system_cpu_usage_percent{host=\"")
                && metric_value(&text, "aisemble_agents_connected") == Some(1.0))
            .then_some(text)
        },
    )
    .await;

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's `prometheus` package (.ci/run does)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let output = promtool.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let (status, agents) = api.get("/ops/agents").await.expect("agents");
    assert_eq!(status, 200);
    let agents = agents["agents"].as_array().expect("list");
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["connected"], true);
    // The local agent tails the control plane's own log: the Logs view is not empty.
    let host = agents[0]["id"].as_str().expect("agent id").to_owned();
    let line = wait::until(
        Duration::from_secs(20),
        "the control plane's own log lines, stored",
        || async {
            let query = serde_json::json!({"services": ["aisemble-cp"], "query": "started"});
            let (_, found) = api.post("/ops/logs/search", &query).await.ok()?;
            found["logs"]
                .as_array()?
                .iter()
                .find(|l| l["message"] == "Control plane started.")
                .cloned()
        },
    )
    .await;
    assert_eq!(line["host"], host.as_str(), "{line}");
    assert_eq!(line["level"], "info", "{line}");
    let (status, health) = api.get("/health").await.expect("health");
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
    // Every response carries a request id; a client's own id is kept.
    let client = crate::http::client();
    let response = client
        .get(format!("http://{}/health", cp.http))
        .send()
        .await
        .expect("health");
    assert!(
        response
            .headers()
            .get("x-request-id")
            .is_some_and(|v| !v.is_empty())
    );
    let response = client
        .get(format!("http://{}/ops/agents", cp.http))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("agents");
    assert_eq!(response.status(), 401, "no token");
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-me-42")
    );
    let body: serde_json::Value = response.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(body["error"]["request_id"], "trace-me-42");
    let page = crate::http::client()
        .get(format!("http://{}/", cp.http))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("Ai-semble Ops"));

    // A later start cannot show the first token again (it is stored hashed): it prints a
    // session token, which replaces the previous session's; the first token stays valid.
    let first = cp.token.clone();
    let mut cp = cp;
    cp.restart();
    let second = cp.token.clone();
    assert_ne!(second, first, "a later start prints a session token");
    cp.restart();
    let third = cp.token.clone();
    assert_ne!(third, second);
    let status_with = |token: String| {
        let http = cp.http;
        async move {
            crate::http::Api::new(http, &token)
                .get("/ops/agents")
                .await
                .expect("agents")
                .0
        }
    };
    assert_eq!(status_with(first).await, 200, "the first admin token");
    assert_eq!(status_with(third).await, 200, "this session's token");
    assert_eq!(
        status_with(second).await,
        401,
        "the previous session's token"
    );
    let (code, listing, _) = cp.cli(&["token", "list"]);
    assert_eq!(code, 0);
    assert_eq!(
        listing.matches("quickstart").count(),
        1,
        "one session token at a time: {listing}"
    );
}
