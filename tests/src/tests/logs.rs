//! Logs and audit end to end: lines sent over real QUIC are searchable by every condition,
//! counted, exported as NDJSON and CSV, stored once across a crash and WAL replay, removed by
//! cleanup; and every audited call lands in a hash chain that verifies.

use aisemble_shared::wire::{LogEntry, LogLevel};
use serde_json::{Value, json};

use super::tempdir;
use crate::{
    fake_agent::{FakeAgent, now_ms},
    http::client,
    process::ControlPlane,
};

fn line(t: i64, level: LogLevel, service: &str, message: &str) -> LogEntry {
    LogEntry {
        timestamp_ms: t,
        level,
        service: service.into(),
        message: message.into(),
        context: String::new(),
        trace_id: None,
        request_id: None,
    }
}

fn messages(body: &Value) -> Vec<String> {
    body["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn export(cp: &ControlPlane, body: Value) -> (u16, String, String) {
    let response = client()
        .post(format!("http://{}/ops/logs/export", cp.http))
        .bearer_auth(&cp.token)
        .json(&body)
        .send()
        .await
        .expect("export");
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, kind, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_searched_counted_exported_kept_once_and_audited() {
    let dir = tempdir();
    let mut cp = ControlPlane::serve(&dir.path().join("cp"));
    let now = now_ms();
    let mut a = FakeAgent::connect(&cp, "node-a", dir.path()).await;
    let mut b = FakeAgent::connect(&cp, "node-b", dir.path()).await;
    let mut traced = line(
        now - 3_000,
        LogLevel::Error,
        "api",
        "upstream timed out after 30s",
    );
    traced.trace_id = Some("4bf92f3577b34da6".into());
    traced.context = r#"{"upstream":"db-1","attempt":3}"#.into();
    a.send_logs(vec![
        line(now - 5_000, LogLevel::Info, "api", "GET /v1/chat 200"),
        traced,
        line(
            now - 1_000,
            LogLevel::Warn,
            "worker",
            "queue depth 900, \"high\"",
        ),
    ])
    .await;
    b.send_logs(vec![
        line(
            now - 4_000,
            LogLevel::Critical,
            "api",
            "out of memory, restarting",
        ),
        line(now - 2 * 86_400_000, LogLevel::Info, "api", "two days ago"),
    ])
    .await;
    let api = cp.api();

    let search = |body: Value| {
        let api = api.clone();
        async move {
            let (status, body) = api.post("/ops/logs/search", &body).await.expect("search");
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    // Newest first; the default range is the last hour.
    let all = search(json!({})).await;
    assert_eq!(
        messages(&all),
        [
            "queue depth 900, \"high\"",
            "upstream timed out after 30s",
            "out of memory, restarting",
            "GET /v1/chat 200",
        ]
    );
    assert_eq!(all["truncated"], false);
    assert_eq!(all["logs"][1]["host"], "node-a");
    assert_eq!(all["logs"][1]["context"]["upstream"], "db-1");
    assert_eq!(all["logs"][1]["level"], "error");
    let old = search(json!({"start": (now - 3 * 86_400_000) / 1000, "limit": 1})).await;
    assert_eq!(messages(&old), ["queue depth 900, \"high\""]);
    assert_eq!(old["truncated"], true);
    let errors = search(json!({"min_level": "error"})).await;
    assert_eq!(
        messages(&errors),
        ["upstream timed out after 30s", "out of memory, restarting"]
    );
    let text = search(json!({"query": "TIMED \"after 30\" db-1"})).await;
    assert_eq!(messages(&text), ["upstream timed out after 30s"]);
    let by_host = search(json!({"hosts": ["node-b"], "services": ["api"]})).await;
    assert_eq!(messages(&by_host), ["out of memory, restarting"]);
    let by_trace = search(json!({"trace_id": "4bf92f3577b34da6"})).await;
    assert_eq!(messages(&by_trace), ["upstream timed out after 30s"]);
    let (status, bad) = api
        .post("/ops/logs/search", &json!({"levels": ["loud"]}))
        .await
        .expect("search");
    assert_eq!(status, 422);
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("levels")),
        "{bad}"
    );

    let (status, stats) = api.get("/ops/logs/stats").await.expect("stats");
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["total"], 4, "{stats}");
    assert_eq!(stats["errors"], 2);
    assert_eq!(stats["by_level"]["critical"], 1);
    assert_eq!(stats["by_service"]["api"], 3);
    assert_eq!(stats["by_host"]["node-b"], 1);

    let (status, kind, ndjson) = export(&cp, json!({"hosts": ["node-a"]})).await;
    assert_eq!(status, 200);
    assert_eq!(kind, "application/x-ndjson");
    let exported: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(exported.len(), 3);
    assert_eq!(exported[0]["message"], "GET /v1/chat 200", "oldest first");
    let (status, kind, csv) = export(&cp, json!({"format": "csv", "services": ["worker"]})).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "timestamp,level,host,service,message,trace_id,request_id,context"
    );
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(
        rows[1].contains(",warn,node-a,worker,\"queue depth 900, \"\"high\"\"\","),
        "{csv}"
    );

    // A crash before any checkpoint: the WAL is replayed, and no line is stored twice.
    a.close();
    b.close();
    cp.kill9();
    cp.restart();
    let api = cp.api();
    let (_, again) = api
        .post(
            "/ops/logs/search",
            &json!({"start": (now - 3 * 86_400_000) / 1000}),
        )
        .await
        .expect("search");
    assert_eq!(messages(&again).len(), 5, "{again}");
    let (_, stats) = api.get("/ops/logs/stats").await.expect("stats");
    assert_eq!(stats["total"], 4, "counted once: {stats}");

    // Cleanup removes lines older than asked.
    let (status, done) = api
        .post("/ops/logs/cleanup", &json!({"older_than": "1d"}))
        .await
        .expect("cleanup");
    assert_eq!(status, 200, "{done}");
    let removed =
        done["days_dropped"].as_u64().unwrap_or(0) + done["lines_removed"].as_u64().unwrap_or(0);
    assert!(removed >= 1, "{done}");
    let (_, after) = api
        .post(
            "/ops/logs/search",
            &json!({"start": (now - 3 * 86_400_000) / 1000}),
        )
        .await
        .expect("search");
    assert_eq!(messages(&after).len(), 4, "{after}");

    // The audit log holds the calls above, refused ones included, and verifies.
    let viewer = cp.create_token("viewer", "log-viewer");
    super::api::known(&cp, &viewer).await;
    let (status, _) = crate::http::Api::new(cp.http, &viewer)
        .post("/ops/logs/audit", &json!({}))
        .await
        .expect("audit");
    assert_eq!(status, 403);
    let (status, audit) = api
        .post("/ops/logs/audit", &json!({"limit": 1000}))
        .await
        .expect("audit");
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().expect("entries");
    assert!(
        entries.iter().any(|e| e["path"] == "/ops/logs/audit"
            && e["status"] == 403
            && e["actor"] == "log-viewer"),
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["path"] == "/ops/logs/cleanup" && e["outcome"] == "success"),
        "{audit}"
    );
    let seqs: Vec<u64> = entries.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] == w[1] + 1),
        "newest first, no gap: {seqs:?}"
    );
    let (status, verified) = api
        .post_empty("/ops/logs/audit/verify")
        .await
        .expect("verify");
    assert_eq!(status, 200);
    assert_eq!(verified["valid"], true, "{verified}");
    assert!(
        verified["entries"].as_u64().unwrap_or(0) >= 10,
        "{verified}"
    );
}

/// An export larger than one chunk is read a chunk at a time, each resumed after the last line
/// sent: every line once, oldest first, the CSV header once, and `limit` exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_export_comes_whole_in_order_and_stops_at_its_limit() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let mut agent = FakeAgent::connect(&cp, "node-c", dir.path()).await;
    let start = now_ms() - 60_000;
    // 3,000 lines of ~120 bytes (several 64 KiB chunks); ten share each millisecond, so a
    // resumed page must tell lines of one instant apart by the rest of their key.
    for batch in 0..3 {
        let lines = (0..1_000)
            .map(|i| {
                let n = batch * 1_000 + i;
                line(
                    start + n / 10,
                    LogLevel::Info,
                    "api",
                    &format!("line {n:04} {}", "x".repeat(100)),
                )
            })
            .collect();
        agent.send_logs(lines).await;
    }

    let (status, _, ndjson) = export(&cp, json!({})).await;
    assert_eq!(status, 200);
    let numbers: Vec<usize> = ndjson
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l).expect("json line");
            line["message"].as_str().expect("message")[5..9]
                .parse()
                .expect("number")
        })
        .collect();
    assert!(ndjson.len() > 4 * 64 * 1024, "{} bytes", ndjson.len());
    assert_eq!(numbers, (0..3_000).collect::<Vec<_>>());

    let (status, _, csv) = export(&cp, json!({"format": "csv", "limit": 2_500})).await;
    assert_eq!(status, 200);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 1 + 2_500);
    assert!(rows[0].starts_with("timestamp,"));
    assert_eq!(
        rows.iter().filter(|r| r.starts_with("timestamp,")).count(),
        1
    );
    assert!(rows[2_500].contains("line 2499 "), "{}", rows[2_500]);
}
