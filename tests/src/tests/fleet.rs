use std::time::Duration;

use super::{connected, tempdir};
use crate::{
    http::metric_value,
    process::{Agent, ControlPlane},
    wait,
};

/// Two agents with certificates from `certs issue-agent` stream to one `serve`; each series carries
/// its agent's certificate name as `host`; the Prometheus API sees both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_stream_to_one_control_plane() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();
    let _alpha = Agent::start(&cp.issue_agent("alpha", &dir.path().join("alpha"), "1s", "16MiB"));
    let _beta = Agent::start(&cp.issue_agent("beta", &dir.path().join("beta"), "1s", "16MiB"));
    connected(&api, "alpha").await;
    connected(&api, "beta").await;
    wait::until(Duration::from_secs(30), "CPU of both hosts", || async {
        let text = api.metrics().await.ok()?;
        let both = ["alpha", "beta"].iter().all(|h| {
            text.contains(&format!(
                "aisemble_system_cpu_usage_percent{{host=\"{h}\"}}"
            ))
        });
        (both && metric_value(&text, "aisemble_agents_connected") == Some(2.0)).then_some(())
    })
    .await;

    let (status, series) = api
        .get("/api/v1/series?match[]=aisemble_system_uptime_seconds")
        .await
        .expect("series");
    assert_eq!(status, 200);
    let mut hosts: Vec<&str> = series["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|s| s["host"].as_str())
        .collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["alpha", "beta"]);
    let (_, values) = api.get("/api/v1/label/host/values").await.expect("values");
    assert_eq!(values["data"], serde_json::json!(["alpha", "beta"]));
    let (_, instant) = api
        .get("/api/v1/query?query=aisemble_system_memory_usage_percent")
        .await
        .expect("query");
    assert_eq!(instant["data"]["resultType"], "vector");
    assert_eq!(instant["data"]["result"].as_array().map(Vec::len), Some(2));
    let (_, status) = api.get("/ops/status").await.expect("status");
    assert_eq!(status["agents"]["connected"], 2);
    let (code, unsupported) = api
        .get(&format!(
            "/api/v1/query?query={}",
            crate::http::urlencode("topk(1, aisemble_system_cpu_usage_percent)")
        ))
        .await
        .expect("query");
    assert_eq!(code, 400);
    assert_eq!(unsupported["status"], "error");
    let (code, per_host) = api
        .get(&format!(
            "/api/v1/query?query={}",
            crate::http::urlencode("count by (host) (aisemble_system_uptime_seconds)")
        ))
        .await
        .expect("query");
    assert_eq!(code, 200, "{per_host}");
    assert_eq!(per_host["data"]["result"].as_array().map(Vec::len), Some(2));
}
