//! Breach → notification latency (`scripts/bench-alert-latency`): a CPU value crosses 80 %
//! and the time until a webhook receives the firing notification is measured, for
//!
//! 1. Ai-semble: an agent (scripted, real mTLS QUIC) → control plane rule `for: 5s`, evaluation
//!    every 1 s, route `group_wait: 1s`;
//! 2. Prometheus + Alertmanager (Debian's packages) scraping the same value from an exporter,
//!    with their fastest settings (scrape and evaluation every 1 s, `group_wait: 1s`);
//! 3. Prometheus + Alertmanager with their defaults (scrape and evaluation every 1 min,
//!    `group_wait: 30s`), once.
//!
//! Both rule sets say `for: 5s`, so the floor is 5 s + group_wait.
#![allow(clippy::print_stdout)] // A benchmark prints its results.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser;
use integration_tests::{
    fake_agent::{FakeAgent, now_ms},
    process::ControlPlane,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

#[derive(Parser, Debug)]
#[command(about = "Breach-to-notification latency: Ai-semble vs Prometheus + Alertmanager")]
struct Cli {
    /// Trials per fast setup.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Skip the (slow, minutes) run with Prometheus' and Alertmanager's defaults.
    #[arg(long)]
    skip_defaults: bool,
}

/// Records the arrival time of the first firing notification for each host.
#[derive(Clone, Default)]
struct Webhook {
    firing: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Webhook {
    async fn start(&self) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Some(body) = read_request(stream).await {
                        let arrived = Instant::now();
                        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
                            return;
                        };
                        if json["status"] != "firing" {
                            return;
                        }
                        for alert in json["alerts"].as_array().into_iter().flatten() {
                            if let Some(host) = alert["labels"]["host"].as_str() {
                                shared
                                    .firing
                                    .lock()
                                    .map(|mut m| {
                                        m.entry(host.to_owned()).or_insert(arrived);
                                    })
                                    .ok();
                            }
                        }
                    }
                });
            }
        });
        Ok(addr)
    }

    async fn wait_for(&self, host: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(at) = self.firing.lock().ok().and_then(|m| m.get(host).copied()) {
                return Some(at);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

/// Reads one HTTP request, answers 200, returns the body.
async fn read_request(mut stream: tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, length) = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await;
    Some(buf[head_end..(head_end + length).min(buf.len())].to_vec())
}

/// A Prometheus text exporter serving `bench_cpu{host}` from a shared map.
async fn exporter(values: Arc<Mutex<HashMap<String, f64>>>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let values = Arc::clone(&values);
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                let _ = stream.read(&mut chunk).await;
                let mut body = String::from("# TYPE bench_cpu gauge\n");
                if let Ok(values) = values.lock() {
                    for (host, v) in values.iter() {
                        body.push_str(&format!("bench_cpu{{host=\"{host}\"}} {v}\n"));
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn summary(name: &str, latencies: &[Duration]) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        println!("{name}: no notification arrived");
        return;
    }
    let s = |d: Duration| d.as_secs_f64();
    println!(
        "{name}: median {:.2} s, min {:.2} s, max {:.2} s ({} trials)",
        s(sorted[sorted.len() / 2]),
        s(sorted[0]),
        s(sorted[sorted.len() - 1]),
        sorted.len()
    );
}

async fn ours(dir: &Path, trials: usize) -> anyhow::Result<Vec<Duration>> {
    let webhook = Webhook::default();
    let hook = webhook.start().await?;
    std::fs::create_dir_all(dir.join("rules"))?;
    std::fs::write(
        dir.join("rules/bench.yml"),
        "groups:\n  - name: bench\n    rules:\n      - alert: HighCpu\n        expr: aisemble_system_cpu_usage_percent > 80\n        for: 5s\n",
    )?;
    std::fs::write(
        dir.join("am.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, host]\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: 'http://{hook}/'\n"
        ),
    )?;
    std::fs::write(
        dir.join("cp.toml"),
        format!(
            "[alerting]\nrules_dir = {:?}\nalertmanager_config = {:?}\nevaluation_interval = \"1s\"\n",
            dir.join("rules").display().to_string(),
            dir.join("am.yml").display().to_string()
        ),
    )?;
    let cp = ControlPlane::serve_with_config(&dir.join("data"), &dir.join("cp.toml"));
    let mut latencies = Vec::new();
    for trial in 0..trials {
        let host = format!("bench-{trial}");
        let mut agent = FakeAgent::connect(&cp, &host, dir).await;
        for _ in 0..10 {
            agent
                .send(
                    now_ms(),
                    &[("aisemble_system_cpu_usage_percent", &[], 50.0)],
                )
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let breach = Instant::now();
        let mut arrived = None;
        while breach.elapsed() < Duration::from_secs(30) {
            agent
                .send(
                    now_ms(),
                    &[("aisemble_system_cpu_usage_percent", &[], 90.0)],
                )
                .await;
            if let Some(at) = webhook.wait_for(&host, Duration::from_millis(200)).await {
                arrived = Some(at);
                break;
            }
        }
        agent.close();
        if let Some(at) = arrived {
            latencies.push(at - breach);
        }
    }
    Ok(latencies)
}

#[allow(clippy::too_many_arguments)]
async fn prometheus(
    dir: &Path,
    trials: usize,
    scrape: &str,
    evaluation: &str,
    group_wait: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    std::fs::create_dir_all(dir)?;
    let webhook = Webhook::default();
    let hook = webhook.start().await?;
    let values = Arc::new(Mutex::new(HashMap::new()));
    let exporter = exporter(Arc::clone(&values)).await?;
    let (prom_port, am_port) = (free_port()?, free_port()?);
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: bench\n    rules:\n      - alert: HighCpu\n        expr: bench_cpu > 80\n        for: 5s\n",
    )?;
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: {scrape}\n  evaluation_interval: {evaluation}\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\nscrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: ['{exporter}']\n"
        ),
    )?;
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, host]\n  group_wait: {group_wait}\n  group_interval: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: 'http://{hook}/'\n"
        ),
    )?;
    let _alertmanager = Killed(
        Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus-alertmanager (Debian package prometheus-alertmanager)")?,
    );
    let _prometheus = Killed(
        Command::new("/usr/bin/prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus (Debian package prometheus)")?,
    );
    let client = integration_tests::http::client();
    for url in [
        format!("http://127.0.0.1:{prom_port}/-/ready"),
        format!("http://127.0.0.1:{am_port}/-/ready"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while client
            .get(&url)
            .send()
            .await
            .map_or(true, |r| !r.status().is_success())
        {
            anyhow::ensure!(Instant::now() < deadline, "{url} not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut latencies = Vec::new();
    for trial in 0..trials {
        let host = format!("bench-{trial}");
        values
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .insert(host.clone(), 50.0);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let breach = Instant::now();
        values
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .insert(host.clone(), 90.0);
        if let Some(at) = webhook.wait_for(&host, timeout).await {
            latencies.push(at - breach);
        }
    }
    Ok(latencies)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = tempfile::tempdir()?;
    println!(
        "rule: CPU > 80 for 5s; notification to a local webhook; breach = first sample above 80"
    );
    let ours = ours(&dir.path().join("ours"), cli.trials).await?;
    summary("Ai-semble (evaluation 1s, group_wait 1s)", &ours);
    let fast = prometheus(
        &dir.path().join("prom-fast"),
        cli.trials,
        "1s",
        "1s",
        "1s",
        Duration::from_secs(60),
    )
    .await?;
    summary(
        "Prometheus + Alertmanager, fastest (scrape 1s, evaluation 1s, group_wait 1s)",
        &fast,
    );
    let median = |v: &[Duration]| -> Option<f64> {
        let mut v = v.to_vec();
        v.sort();
        v.get(v.len() / 2).map(Duration::as_secs_f64)
    };
    if let (Some(a), Some(b)) = (median(&ours), median(&fast)) {
        println!(
            "ratio (Prometheus + Alertmanager fastest / Ai-semble), medians: {:.2}×",
            b / a
        );
    }
    if !cli.skip_defaults {
        let defaults = prometheus(
            &dir.path().join("prom-default"),
            1,
            "1m",
            "1m",
            "30s",
            Duration::from_secs(300),
        )
        .await?;
        summary(
            "Prometheus + Alertmanager, defaults (scrape 1m, evaluation 1m, group_wait 30s)",
            &defaults,
        );
        if let (Some(a), Some(b)) = (median(&ours), median(&defaults)) {
            println!("ratio (defaults / Ai-semble): {:.1}×", b / a);
        }
    }
    Ok(())
}
