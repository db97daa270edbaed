//! Inference and service metrics end to end: an agent scrapes a vLLM-style test server and takes
//! pushed events; the mapped series and the aggregated histograms arrive at the control plane,
//! whose views report exact counts and a p95 within the histogram's bucket error.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::{connected, tempdir};
use crate::{
    http::{Api, metric_value},
    process::{Agent, ControlPlane},
    wait,
};

/// What a vLLM server exposes (names and labels as vLLM 0.6+ writes them).
const VLLM_METRICS: &str = r#"# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B"} 7.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="meta-llama/Llama-3.1-8B"} 12345.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B"} 6789.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="stop",model_name="meta-llama/Llama-3.1-8B"} 40.0
vllm:request_success_total{finished_reason="length",model_name="meta-llama/Llama-3.1-8B"} 2.0
# HELP vllm:e2e_request_latency_seconds Histogram of end to end request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="0.3",model_name="meta-llama/Llama-3.1-8B"} 1.0
vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="meta-llama/Llama-3.1-8B"} 20.0
vllm:e2e_request_latency_seconds_bucket{le="5.0",model_name="meta-llama/Llama-3.1-8B"} 40.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="meta-llama/Llama-3.1-8B"} 42.0
vllm:e2e_request_latency_seconds_sum{model_name="meta-llama/Llama-3.1-8B"} 61.5
vllm:e2e_request_latency_seconds_count{model_name="meta-llama/Llama-3.1-8B"} 42.0
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",num_gpu_blocks="2048"} 1.0
"#;

/// Serves `VLLM_METRICS` on every request; returns the address.
async fn vllm_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                // One request per connection is enough for a scraper; read its head and answer.
                let _ = stream.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{VLLM_METRICS}",
                    VLLM_METRICS.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Bucket bounds the agent uses for inference latency (seconds), for the p95 error bound.
const BOUNDS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// 10,000 known durations in ms, spread over several buckets (deterministic).
fn durations() -> Vec<f64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..10_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // 1 ms .. 4 s, skewed towards short ones.
            let u = (state % 1_000_000) as f64 / 1_000_000.0;
            (1.0 + 4000.0 * u * u * u).round()
        })
        .collect()
}

async fn agent_views(api: &Api, name: &str) -> Option<Value> {
    let (code, body) = api
        .get(&format!("/ops/agents/{name}?window=1h"))
        .await
        .ok()?;
    (code == 200).then_some(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_and_pushed_inference_metrics_reach_the_control_plane() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();
    let vllm = vllm_server().await;
    let push_port = free_port();
    let config = cp.issue_agent("gpu-1", &dir.path().join("agent"), "1s", "16MiB");
    let mut text = std::fs::read_to_string(&config).expect("agent.toml");
    text.push_str(&format!(
        r#"
[[scrape]]
name = "vllm"
url = "http://{vllm}/metrics"
interval = "1s"
timeout = "1s"
preset = "vllm"

[push]
listen = "127.0.0.1:{push_port}"
"#
    ));
    std::fs::write(&config, text).expect("writing agent.toml");
    let _agent = Agent::start(&config);
    connected(&api, "gpu-1").await;

    // Scrape: the vLLM families arrive renamed, with `model` instead of `model_name`.
    let model = "meta-llama/Llama-3.1-8B";
    let metrics = wait::until(Duration::from_secs(30), "scraped series", || async {
        let text = api.metrics().await.ok()?;
        text.contains("aisemble_model_tokens_total").then_some(text)
    })
    .await;
    let series = |s: &str| metric_value(&metrics, s);
    assert_eq!(
        series("aisemble_scrape_up{host=\"gpu-1\",target=\"vllm\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        series(&format!(
            "aisemble_model_tokens_total{{direction=\"in\",host=\"gpu-1\",model=\"{model}\"}}"
        )),
        Some(12345.0)
    );
    assert_eq!(
        series(&format!(
            "aisemble_model_inference_total{{host=\"gpu-1\",model=\"{model}\",outcome=\"success\"}}"
        )),
        Some(42.0),
        "finished_reason dropped, its series summed"
    );
    assert_eq!(
        series(&format!(
            "aisemble_model_queue_depth{{host=\"gpu-1\",model=\"{model}\"}}"
        )),
        Some(7.0)
    );
    let (_, buckets) = api
        .get(&format!(
            "/api/v1/query?query={}",
            crate::http::urlencode(&format!(
                "aisemble_model_inference_duration_seconds_bucket{{model=\"{model}\"}}"
            ))
        ))
        .await
        .expect("query");
    let les: Vec<&str> = buckets["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .filter_map(|r| r["metric"]["le"].as_str())
        .collect();
    assert_eq!(les.len(), 4, "{buckets}");
    assert!(les.contains(&"+Inf"));
    assert!(
        !metrics.contains("vllm:") && !metrics.contains("cache_config_info"),
        "unmapped families are dropped by default"
    );

    // Push: 10,000 inference events with known durations, 1 in 10 failed.
    let durations = durations();
    let client = crate::http::client();
    for (batch_no, batch) in durations.chunks(1000).enumerate() {
        let events: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, ms)| {
                let n = batch_no * 1000 + i;
                json!({
                    "type": "inference",
                    "model": "chat-small",
                    "provider": "local",
                    "duration_ms": ms,
                    "outcome": if n % 10 == 0 { "failure" } else { "success" },
                    "tokens_in": 100,
                    "tokens_out": 20,
                    "cost_usd": 0.001,
                })
            })
            .collect();
        let response = client
            .post(format!("http://127.0.0.1:{push_port}/v1/events"))
            .json(&events)
            .send()
            .await
            .expect("push");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
    let bad = client
        .post(format!("http://127.0.0.1:{push_port}/v1/events"))
        .json(&json!([{"type": "inference", "duration_ms": 5, "outcome": "success"}]))
        .send()
        .await
        .expect("push");
    assert_eq!(bad.status(), 400);
    let message = bad.text().await.expect("body");
    assert!(message.contains("model"), "{message}");

    let view = wait::until(
        Duration::from_secs(30),
        "10,000 inferences stored",
        || async {
            let agent = agent_views(&api, "gpu-1").await?;
            let model = agent["views"]["models"]
                .as_array()?
                .iter()
                .find(|m| m["model"] == "chat-small")?
                .clone();
            (model["inferences"].as_f64()? >= 10_000.0).then_some((agent, model))
        },
    )
    .await;
    let (agent, model_view) = view;
    assert_eq!(model_view["inferences"], 10_000.0, "{model_view}");
    assert_eq!(model_view["failures"], 1_000.0);
    assert_eq!(model_view["success_rate"], 0.9);

    let mut sorted = durations.clone();
    sorted.sort_by(f64::total_cmp);
    let true_p95 = sorted[(0.95 * sorted.len() as f64).ceil() as usize - 1] / 1000.0;
    let upper = BOUNDS
        .iter()
        .copied()
        .find(|b| *b >= true_p95)
        .expect("within the buckets");
    let lower = BOUNDS
        .iter()
        .copied()
        .rev()
        .find(|b| *b < true_p95)
        .unwrap_or(0.0);
    let p95 = model_view["latency_seconds"]["p95"].as_f64().expect("p95");
    assert!(
        (lower..=upper).contains(&p95),
        "p95 {p95} outside the true p95's bucket ({lower}, {upper}] (true {true_p95})"
    );

    let usage = agent["views"]["usage_this_month"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["model"] == "chat-small"))
        .expect("usage of chat-small")
        .clone();
    assert_eq!(usage["provider"], "local");
    assert_eq!(usage["tokens_in"], 1_000_000.0);
    assert_eq!(usage["tokens_out"], 200_000.0);
    assert!((usage["cost_usd"].as_f64().expect("cost") - 10.0).abs() < 1e-6);

    // The same counts through the Prometheus API, exact.
    let (_, count) = api
        .get(&format!(
            "/api/v1/query?query={}",
            crate::http::urlencode(
                "aisemble_model_inference_duration_seconds_count{model=\"chat-small\"}"
            )
        ))
        .await
        .expect("query");
    assert_eq!(count["data"]["result"][0]["value"][1], "10000", "{count}");
    // And the quantile through PromQL, over the cumulative buckets.
    let (_, quantile) = api
        .get(&format!(
            "/api/v1/query?query={}",
            crate::http::urlencode(
                "histogram_quantile(0.95, sum by (le, model) (aisemble_model_inference_duration_seconds_bucket{model=\"chat-small\"}))"
            )
        ))
        .await
        .expect("query");
    let promql_p95: f64 = quantile["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{quantile}"));
    assert!(
        (lower..=upper).contains(&promql_p95),
        "PromQL p95 {promql_p95} outside ({lower}, {upper}]"
    );
    // The fleet figures are refreshed in the background: wait for the last events to show.
    wait::until(
        Duration::from_secs(15),
        "the fleet-wide view counts 10,000 inferences",
        || async {
            let (_, status) = api.get("/ops/status").await.ok()?;
            status["models"]
                .as_array()
                .is_some_and(|m| {
                    m.iter()
                        .any(|m| m["model"] == "chat-small" && m["inferences"] == 10_000.0)
                })
                .then_some(())
        },
    )
    .await;
}
