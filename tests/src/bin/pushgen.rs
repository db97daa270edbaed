//! Load generator for the agent's push endpoint (`scripts/bench-push`).
//!
//! `pushgen --http 127.0.0.1:9465`: K connections each post batches of N events (a JSON array,
//! or NDJSON with `--ndjson`) back to back for the given duration and count the events the agent
//! answered as accepted.
//!
//! `pushgen --socket /run/aisemble/push.sock`: K Unix socket connections each write batches of N
//! newline-delimited events back to back, then half-close and read the agent's
//! `{"accepted":N,"rejected":M}` summary; the time includes the agent finishing every line.
//!
//! Events mix inference (varied models and providers, some failures, tokens, cost, queue time),
//! request (varied services and statuses), connection and error events. A few distinct bodies
//! are generated up front, so the generator itself spends almost nothing per event.
#![allow(clippy::print_stdout)] // A benchmark prints its results.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[derive(Parser, Debug)]
#[command(about = "Load generator for the agent's push endpoint")]
struct Cli {
    /// The agent's push HTTP address.
    #[arg(long, required_unless_present = "socket", conflicts_with = "socket")]
    http: Option<SocketAddr>,
    /// The agent's push socket.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Events per request (HTTP) or per write (socket).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime_duration)]
    duration: Duration,
    /// Distinct models (each with one of three providers).
    #[arg(long, default_value_t = 30)]
    models: usize,
    /// Distinct services.
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Send HTTP bodies as NDJSON instead of a JSON array.
    #[arg(long)]
    ndjson: bool,
    /// Runtime worker threads (1 leaves the other cores to the agent).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    s.parse::<aisemble_shared::units::HumanDuration>()
        .map(|d| d.0)
}

/// Distinct bodies generated up front and sent in turn.
const N_BODIES: usize = 8;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let ndjson = cli.ndjson || cli.socket.is_some();
    let bodies: Vec<Bytes> = (0..N_BODIES)
        .map(|_| body(&mut rng, &cli, ndjson))
        .collect();
    let mean_bytes = bodies.iter().map(Bytes::len).sum::<usize>() / bodies.len() / cli.batch;
    let started = Instant::now();
    let deadline = started + cli.duration;
    let mut tasks = tokio::task::JoinSet::new();
    let transport = if let Some(addr) = cli.http {
        // reqwest is built without a default crypto provider; plain HTTP still needs one set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(cli.connections)
            .timeout(Duration::from_secs(30))
            .build()?;
        let url = format!("http://{addr}/v1/events");
        let content_type = if ndjson {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        for idx in 0..cli.connections {
            tasks.spawn(post_loop(
                client.clone(),
                url.clone(),
                content_type,
                bodies.clone(),
                idx,
                deadline,
            ));
        }
        format!("HTTP ({})", if ndjson { "NDJSON" } else { "JSON arrays" })
    } else {
        let path = cli.socket.clone().context("--http or --socket")?;
        for idx in 0..cli.connections {
            tasks.spawn(socket_loop(path.clone(), bodies.clone(), idx, deadline));
        }
        "Unix socket".to_owned()
    };
    let mut accepted = 0;
    let mut rejected = 0;
    while let Some(counts) = tasks.join_next().await {
        let (a, r) = counts??;
        accepted += a;
        rejected += r;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{transport}: {accepted} events accepted, {rejected} rejected in {elapsed:.2} s = {:.0} events/s \
         ({} connections, {} events per batch, ~{mean_bytes} bytes per event)",
        accepted as f64 / elapsed,
        cli.connections,
        cli.batch,
    );
    anyhow::ensure!(rejected == 0, "the agent rejected events");
    Ok(())
}

/// Posts bodies back to back until `deadline`; returns (accepted, rejected) events.
async fn post_loop(
    client: reqwest::Client,
    url: String,
    content_type: &'static str,
    bodies: Vec<Bytes>,
    idx: usize,
    deadline: Instant,
) -> anyhow::Result<(u64, u64)> {
    let mut accepted = 0;
    let mut rejected = 0;
    let mut n = idx;
    while Instant::now() < deadline {
        let body = bodies[n % bodies.len()].clone();
        n += 1;
        let response = client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .context("posting events")?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.context("reading the answer")?;
        match answer["accepted"].as_u64() {
            Some(n) if status.is_success() => accepted += n,
            _ => {
                rejected += 1;
                eprintln!("refused ({status}): {answer}");
            }
        }
    }
    Ok((accepted, rejected))
}

/// Writes bodies back to back until `deadline`, then half-closes and reads the summary.
async fn socket_loop(
    path: PathBuf,
    bodies: Vec<Bytes>,
    idx: usize,
    deadline: Instant,
) -> anyhow::Result<(u64, u64)> {
    let mut stream = tokio::net::UnixStream::connect(&path)
        .await
        .with_context(|| format!("connecting to {}", path.display()))?;
    let (mut reader, mut writer) = stream.split();
    // Error lines come back while writing: read them concurrently so neither side stalls.
    let read = async {
        let mut replies = String::new();
        reader.read_to_string(&mut replies).await.map(|_| replies)
    };
    let write = async {
        let mut n = idx;
        while Instant::now() < deadline {
            writer.write_all(&bodies[n % bodies.len()]).await?;
            n += 1;
        }
        writer.shutdown().await
    };
    let (replies, written) = tokio::join!(read, write);
    written.context("writing events")?;
    let replies = replies.context("reading the summary")?;
    let summary = replies.lines().last().context("no summary")?;
    for line in replies.lines().filter(|l| l.contains("\"error\"")).take(3) {
        eprintln!("refused: {line}");
    }
    let summary: serde_json::Value = serde_json::from_str(summary).context("summary")?;
    let count = |key: &str| summary[key].as_u64().context("summary counts");
    Ok((count("accepted")?, count("rejected")?))
}

/// One body of `cli.batch` events.
fn body(rng: &mut Rng, cli: &Cli, ndjson: bool) -> Bytes {
    const PROVIDERS: [&str; 3] = ["local", "openai", "anthropic"];
    const STATUSES: [u16; 8] = [200, 200, 200, 201, 204, 304, 404, 503];
    let mut out = String::with_capacity(cli.batch * 200);
    if !ndjson {
        out.push('[');
    }
    for idx in 0..cli.batch {
        if idx > 0 && !ndjson {
            out.push(',');
        }
        let pick = rng.below(100);
        let model = rng.below(cli.models as u64);
        let service = rng.below(cli.services as u64);
        let ms = rng.below(3_000_000) as f64 / 1000.0;
        // Writing into a String cannot fail.
        let _ = if pick < 50 {
            let outcome = if rng.below(20) == 0 {
                "failure"
            } else {
                "success"
            };
            write!(
                out,
                r#"{{"type":"inference","model":"model-{model}","provider":"{}","duration_ms":{ms},"queue_ms":{},"outcome":"{outcome}","tokens_in":{},"tokens_out":{},"cost_usd":{}}}"#,
                PROVIDERS[model as usize % PROVIDERS.len()],
                rng.below(50_000) as f64 / 1000.0,
                rng.below(4096),
                rng.below(1024),
                rng.below(10_000) as f64 / 1e6,
            )
        } else if pick < 90 {
            write!(
                out,
                r#"{{"type":"request","service":"service-{service}","status":{},"duration_ms":{}}}"#,
                STATUSES[rng.below(STATUSES.len() as u64) as usize],
                ms / 10.0,
            )
        } else if pick < 95 {
            write!(
                out,
                r#"{{"type":"connections","service":"service-{service}","active":{}}}"#,
                rng.below(500)
            )
        } else {
            write!(
                out,
                r#"{{"type":"error","service":"service-{service}","kind":"{}"}}"#,
                ["timeout", "oom", "rate_limited"][rng.below(3) as usize]
            )
        };
        if ndjson {
            out.push('\n');
        }
    }
    if !ndjson {
        out.push(']');
    }
    Bytes::from(out)
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}
