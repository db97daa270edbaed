//! Agent logs end to end: a real agent tails a JSON log file across a rename rotation and a clean
//! restart, and takes log events pushed over HTTP and its Unix socket; the control plane stores
//! every line once, with the agent's certificate name as its host.

use std::{io::Write as _, path::Path, time::Duration};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{connected, tempdir};
use crate::{
    fake_agent::now_ms,
    http::Api,
    process::{Agent, ControlPlane},
    wait,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("appending to the log file");
}

/// A JSON log line as an application writes it, timestamped now.
fn json_line(level: &str, msg: &str, extra: Value) -> String {
    let mut line = json!({ "ts": now_ms(), "level": level, "msg": msg });
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    format!("{line}\n")
}

/// The stored lines of `host` (all of the last hour), oldest first.
async fn stored(api: &Api, host: &str) -> Vec<Value> {
    let (status, body) = api
        .post(
            "/ops/logs/search",
            &json!({ "hosts": [host], "limit": 1000 }),
        )
        .await
        .expect("search");
    assert_eq!(status, 200, "{body}");
    let mut lines = body["logs"].as_array().cloned().unwrap_or_default();
    lines.sort_by_key(|l| l["timestamp_ms"].as_i64());
    lines
}

/// Waits until `host` has `n` stored lines (and checks it does not have more).
async fn wait_for_lines(api: &Api, host: &str, n: usize) -> Vec<Value> {
    let lines = wait::until(
        Duration::from_secs(30),
        &format!("{n} log lines of {host}"),
        || async {
            let lines = stored(api, host).await;
            (lines.len() >= n).then_some(lines)
        },
    )
    .await;
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert_eq!(lines.len(), n, "no line stored twice: {messages:?}");
    lines
}

fn messages(lines: &[Value]) -> Vec<&str> {
    let mut messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    messages.sort_unstable();
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailed_and_pushed_lines_are_stored_once_under_the_agents_name() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();
    let agent_dir = dir.path().join("agent");
    let config = cp.issue_agent("web-1", &agent_dir, "1s", "16MiB");
    let log = agent_dir.join("app.log");
    append(
        &log,
        &json_line("info", "before the agent started", json!({})),
    );
    let push_port = free_port();
    let mut text = std::fs::read_to_string(&config).expect("agent.toml");
    text.push_str(&format!(
        r#"
[push]
listen = "127.0.0.1:{push_port}"
socket = "push.sock"

[[logs]]
path = "app.log"
service = "web"
format = "json"
"#
    ));
    std::fs::write(&config, text).expect("writing agent.toml");
    let mut agent = Agent::start(&config);
    connected(&api, "web-1").await;
    // start_at = "end": what the file held is skipped, and that position is saved.
    let positions = agent_dir.join("journal").join("log-positions.json");
    wait::until(
        Duration::from_secs(30),
        "the saved log position",
        || async { positions.exists().then_some(()) },
    )
    .await;

    // File lines: JSON with context and a trace id, a line that is not JSON, then a rotation.
    append(
        &log,
        &json_line(
            "error",
            "db timeout",
            json!({ "trace_id": "trace-1", "user": "u1" }),
        ),
    );
    append(&log, "not json at all\n");
    std::fs::rename(&log, agent_dir.join("app.log.1")).expect("rotates");
    append(&log, &json_line("warn", "after rotation", json!({})));

    // Pushed lines, over HTTP (with a metric event in the same body) and the socket.
    let body = json!([
        {"type": "log", "service": "api", "level": "critical", "message": "pushed over http",
         "request_id": "req-9", "context": {"route": "/v1/chat"}},
        {"type": "request", "service": "api", "status": 200, "duration_ms": 12},
    ]);
    let response = crate::http::client()
        .post(format!("http://127.0.0.1:{push_port}/v1/events"))
        .json(&body)
        .send()
        .await
        .expect("push");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({ "accepted": 2 })
    );
    let mut socket = tokio::net::UnixStream::connect(agent_dir.join("push.sock"))
        .await
        .expect("connects");
    socket
        .write_all(
            b"{\"type\":\"log\",\"service\":\"api\",\"message\":\"pushed over the socket\"}\n",
        )
        .await
        .expect("writes");
    socket.shutdown().await.expect("half-closes");
    let mut reply = String::new();
    socket.read_to_string(&mut reply).await.expect("reads");
    assert_eq!(reply, "{\"accepted\":1,\"rejected\":0}\n");

    let lines = wait_for_lines(&api, "web-1", 5).await;
    assert_eq!(
        messages(&lines),
        [
            "after rotation",
            "db timeout",
            "not json at all",
            "pushed over http",
            "pushed over the socket",
        ]
    );
    assert!(lines.iter().all(|l| l["host"] == "web-1"), "{lines:?}");
    let line = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .cloned()
            .unwrap_or_default()
    };
    let db = line("db timeout");
    assert_eq!(
        (
            &db["level"],
            &db["service"],
            &db["trace_id"],
            &db["context"]
        ),
        (
            &json!("error"),
            &json!("web"),
            &json!("trace-1"),
            &json!({ "user": "u1" })
        )
    );
    assert_eq!(line("not json at all")["level"], "info");
    assert_eq!(line("after rotation")["level"], "warn");
    let pushed = line("pushed over http");
    assert_eq!(
        (&pushed["level"], &pushed["service"], &pushed["request_id"]),
        (&json!("critical"), &json!("api"), &json!("req-9"))
    );
    assert_eq!(pushed["context"], json!({ "route": "/v1/chat" }));

    // A clean restart resumes at the saved position: the new line, and nothing again.
    agent.terminate();
    append(&log, &json_line("info", "written while stopped", json!({})));
    agent.restart();
    connected(&api, "web-1").await;
    let lines = wait_for_lines(&api, "web-1", 6).await;
    assert!(
        messages(&lines).contains(&"written while stopped"),
        "{lines:?}"
    );
    // Let a few more polls and batches pass: still six.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored(&api, "web-1").await.len(), 6);

    // The agent's counters start again with it: one file line (written while it was stopped) and
    // none pushed since.
    wait::until(
        Duration::from_secs(30),
        "the restarted agent's log counters",
        || async {
            let series = |source: &str| {
                format!("aisemble_agent_log_lines_total{{host=\"web-1\",source=\"{source}\"}}")
            };
            let file = api.metric(&series("file")).await.ok().flatten()?;
            let push = api.metric(&series("push")).await.ok().flatten()?;
            (file == 1.0 && push == 0.0).then_some(())
        },
    )
    .await;
}
