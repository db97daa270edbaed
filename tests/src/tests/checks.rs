//! Health checks end to end: an agent checks the machine's real PostgreSQL and Redis and a
//! test-owned Redis that the test stops and restarts; the control plane shows each check's state,
//! the error of a failing one, and the state-change events.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::{connected, tempdir};
use crate::{
    http::{Api, metric_value},
    process::{Agent, ControlPlane},
    wait,
};

/// The interval and timeout of the test-owned Redis check.
const INTERVAL_MS: i64 = 1000;
const TIMEOUT_MS: i64 = 500;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Redis server owned by the test, on its own port, keeping nothing on disk.
struct OwnRedis {
    child: Option<Child>,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see ../shared/services.md)");
        let redis = Self { child: Some(child) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn service_reachable(port: u16, what: &str) {
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "{what} is not running on 127.0.0.1:{port}; start it as ../shared/services.md says"
    );
}

fn check<'a>(agent: &'a Value, name: &str) -> Option<&'a Value> {
    agent["checks"]
        .as_array()?
        .iter()
        .find(|c| c["check"] == name)
}

/// Events of `check` in `agent`'s record, newest first.
fn events<'a>(agent: &'a Value, name: &str) -> Vec<&'a Value> {
    agent["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["event"]["CheckStateChanged"]["check"] == name)
                .collect()
        })
        .unwrap_or_default()
}

async fn record(api: &Api, name: &str) -> Option<Value> {
    api.agent(name).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_follow_real_services_going_down_and_up() {
    service_reachable(5432, "PostgreSQL");
    service_reachable(6379, "Redis");
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();
    let port = free_port();
    let mut own = OwnRedis::start(port);
    let config = cp.issue_agent("db-host", &dir.path().join("agent"), "1s", "16MiB");
    let mut text = std::fs::read_to_string(&config).expect("agent.toml");
    text.push_str(&format!(
        r#"
[[checks]]
name = "postgres"
kind = "postgres"
url = "postgres://postgres@127.0.0.1:5432/test"
interval = "1s"
timeout = "1s"
labels = {{ service = "db" }}

[[checks]]
name = "redis"
kind = "redis"
url = "redis://127.0.0.1:6379"
interval = "1s"
timeout = "1s"

[[checks]]
name = "cache"
kind = "redis"
url = "redis://127.0.0.1:{port}"
interval = "{INTERVAL_MS}ms"
timeout = "{TIMEOUT_MS}ms"
"#
    ));
    std::fs::write(&config, text).expect("writing agent.toml");
    let _agent = Agent::start(&config);
    connected(&api, "db-host").await;

    let all_up = wait::until(Duration::from_secs(30), "three checks up", || async {
        let agent = record(&api, "db-host").await?;
        ["postgres", "redis", "cache"]
            .iter()
            .all(|c| check(&agent, c).is_some_and(|c| c["up"] == true))
            .then_some(agent)
    })
    .await;
    let postgres = check(&all_up, "postgres").expect("postgres");
    assert_eq!(postgres["kind"], "postgres");
    assert_eq!(postgres["labels"]["service"], "db");
    assert_eq!(postgres["consecutive_failures"], 0.0);
    assert!(
        postgres["duration_seconds"]
            .as_f64()
            .is_some_and(|d| d > 0.0 && d < 1.0)
    );
    let metrics = api.metrics().await.expect("metrics");
    assert_eq!(
        metric_value(
            &metrics,
            "aisemble_check_up{check=\"redis\",host=\"db-host\",kind=\"redis\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric_value(
            &metrics,
            "aisemble_check_redis_used_memory_bytes{check=\"redis\",host=\"db-host\",kind=\"redis\"}"
        )
        .is_some_and(|v| v > 0.0),
        "Redis INFO figures are exported"
    );

    // Stop the test-owned Redis: down within one interval plus the timeout.
    own.stop();
    let stopped_at = now_ms();
    // The result sample and the state-change event are separate records: wait for both.
    let down = wait::until(Duration::from_secs(15), "cache down", || async {
        let agent = record(&api, "db-host").await?;
        let event = events(&agent, "cache")
            .into_iter()
            .any(|e| e["event"]["CheckStateChanged"]["up"] == false);
        (event && check(&agent, "cache").is_some_and(|c| c["up"] == false)).then_some(agent)
    })
    .await;
    let event = events(&down, "cache")
        .into_iter()
        .find(|e| e["event"]["CheckStateChanged"]["up"] == false)
        .expect("a down event")
        .clone();
    let change = &event["event"]["CheckStateChanged"];
    assert_eq!(change["was_up"], true);
    assert_eq!(change["consecutive_failures"], 1);
    let error = change["error"]
        .as_str()
        .expect("the event carries the error");
    assert!(!error.is_empty());
    let detected = event["timestamp_ms"].as_i64().expect("timestamp") - stopped_at;
    assert!(
        detected <= INTERVAL_MS + TIMEOUT_MS + 300,
        "down detected {detected} ms after the stop; at most interval + timeout expected"
    );
    assert_eq!(
        check(&down, "cache").and_then(|c| c["error"].as_str()),
        Some(error),
        "the check view shows the error"
    );
    // The other checks are unaffected, and failures count up.
    assert!(check(&down, "postgres").is_some_and(|c| c["up"] == true));
    wait::until(Duration::from_secs(10), "failures counting up", || async {
        let agent = record(&api, "db-host").await?;
        (check(&agent, "cache")?["consecutive_failures"].as_f64()? >= 3.0).then_some(())
    })
    .await;
    let (code, health) = api.get("/ops/health/comprehensive").await.expect("health");
    assert_eq!(code, 200);
    assert_eq!(health["status"], "unhealthy");
    let host = health["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == "db-host"))
        .expect("agent in health");
    assert_eq!(host["status"], "unhealthy");
    assert!(
        host["reasons"].as_array().is_some_and(|r| r
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains("cache")))),
        "{host}"
    );
    // The fleet figures are refreshed in the background: wait for this change to show.
    wait::until(
        Duration::from_secs(15),
        "the fleet status shows cache down",
        || async {
            let (_, status) = api.get("/ops/status").await.ok()?;
            (status["checks"]["down"][0]["check"] == "cache").then_some(())
        },
    )
    .await;

    // Restart it: back up, with an up event.
    let _own = OwnRedis::start(port);
    let up = wait::until(Duration::from_secs(15), "cache up again", || async {
        let agent = record(&api, "db-host").await?;
        let event = events(&agent, "cache")
            .first()
            .is_some_and(|e| e["event"]["CheckStateChanged"]["up"] == true);
        (event && check(&agent, "cache").is_some_and(|c| c["up"] == true)).then_some(agent)
    })
    .await;
    let latest = events(&up, "cache")[0]["event"]["CheckStateChanged"].clone();
    assert_eq!(latest["up"], true);
    assert_eq!(latest["was_up"], false);
    assert_eq!(
        check(&up, "cache").expect("cache")["consecutive_failures"],
        0.0
    );
}
