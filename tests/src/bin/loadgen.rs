//! Load generator for the benchmarks in `scripts/`.
//!
//! `loadgen ingest`: N simulated agents, each its own QUIC connection with its own certificate
//! (issued from the control plane's CA), stream batches of synthetic samples at a fixed rate and
//! measure acknowledgement latency; the stored rate is read from the control plane's
//! `aisemble_ingest_samples_total`.
//!
//! With `--log-lines N`, each simulated agent also sends N log lines a second (one `Record::Logs`
//! per batch; 5 % errors, a JSON context, a trace id, and one line in 1,000 carrying the word
//! `needle`), which `scripts/bench-logs` then searches.
//!
//! `loadgen backlog`: fills an agent's journal with a backlog of real system samples at a fixed
//! interval in the past, as if the control plane had been unreachable.
#![allow(clippy::print_stdout)] // A benchmark prints its results.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aisemble_agent::journal::{Journal as _, SledJournal};
use aisemble_certs::{Pki, Validity};
use aisemble_shared::{
    codec::{self, FrameDecoder},
    wire::{
        ALPN, AgentMessage, Batch, BufferStats, Compression, ControlMessage, Hello, JournalEntry,
        LogEntry, LogLevel, LogRecord, MetricRecord, Record, Sample,
    },
};
use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Ai-semble Ops load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulated agents streaming to a control plane.
    Ingest {
        /// The control plane's data directory (its CA issues the agents' certificates).
        #[arg(long)]
        cp_data: PathBuf,
        /// Where certificates are cached between runs.
        #[arg(long)]
        certs: PathBuf,
        /// The control plane's QUIC address.
        #[arg(long)]
        quic: SocketAddr,
        /// The control plane's HTTP address (to read the stored-samples counter).
        #[arg(long)]
        http: SocketAddr,
        /// Simulated agents.
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// Series per agent.
        #[arg(long, default_value_t = 100)]
        series: usize,
        /// Send what a real host sends (system figures, four health checks, a service's and a
        /// model's counters and histograms: 83 series) instead of `--series` generic ones.
        #[arg(long)]
        fleet: bool,
        /// Samples per series per second.
        #[arg(long, default_value_t = 10)]
        rate: u64,
        /// Measurement length (after all agents connected and a warm-up).
        #[arg(long, default_value = "30s", value_parser = humantime_duration)]
        duration: Duration,
        /// Client endpoints (UDP sockets) the connections are spread over.
        #[arg(long, default_value_t = 8)]
        endpoints: usize,
        /// Log lines per agent per second, sent in each batch beside the samples.
        #[arg(long, default_value_t = 0)]
        log_lines: u64,
        /// Spread the agents' one-second ticks evenly over the second, as hosts started at
        /// different times send, instead of all agents sending in the same few milliseconds.
        #[arg(long)]
        spread: bool,
    },
    /// Fill an agent journal with a backlog.
    Backlog {
        /// The agent's journal directory (`<data_dir>/journal`).
        #[arg(long)]
        journal: PathBuf,
        /// Records.
        #[arg(long, default_value_t = 3600)]
        records: u64,
        /// Interval between records.
        #[arg(long, default_value = "1s", value_parser = humantime_duration)]
        interval: Duration,
    },
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    s.parse::<aisemble_shared::units::HumanDuration>()
        .map(|d| d.0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Backlog {
            journal,
            records,
            interval,
        } => backlog(&journal, records, interval),
        Command::Ingest {
            cp_data,
            certs,
            quic,
            http,
            agents,
            series,
            fleet,
            rate,
            duration,
            endpoints,
            log_lines,
            spread,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(ingest(Options {
                cp_data,
                certs,
                quic,
                http,
                agents,
                series,
                fleet,
                rate,
                duration,
                endpoints,
                log_lines,
                spread,
            }))
        }
    }
}

fn backlog(path: &std::path::Path, records: u64, interval: Duration) -> anyhow::Result<()> {
    let journal = SledJournal::open(path, 4 << 30).context("opening the journal")?;
    let aisemble_agent::collect::Built { mut collectors, .. } =
        aisemble_agent::collect::build(&aisemble_shared::config::CollectorKind::all());
    std::thread::sleep(Duration::from_millis(250));
    let mut samples = Vec::new();
    aisemble_agent::collect::collect_all(&mut collectors, &mut samples);
    let start = now_ms() - (records as i64) * interval.as_millis() as i64;
    for i in 0..records {
        let timestamp_ms = start + i as i64 * interval.as_millis() as i64;
        let record = Record::Metrics(MetricRecord {
            timestamp_ms,
            samples: samples.clone(),
        });
        journal.append(&codec::encode_record(&record)?)?;
    }
    let stats = journal.stats();
    println!(
        "backlog: {} records, {} bytes, {} samples each, last seq {}",
        stats.records,
        stats.bytes,
        samples.len(),
        journal.last_seq()
    );
    Ok(())
}

struct Options {
    cp_data: PathBuf,
    certs: PathBuf,
    quic: SocketAddr,
    http: SocketAddr,
    agents: usize,
    series: usize,
    fleet: bool,
    rate: u64,
    duration: Duration,
    endpoints: usize,
    log_lines: u64,
    spread: bool,
}

/// Issues (or reuses) one certificate per simulated agent.
fn certificates(options: &Options) -> anyhow::Result<Vec<quinn::ClientConfig>> {
    std::fs::create_dir_all(&options.certs)?;
    let pki = Pki::open(&options.cp_data.join("pki")).context("opening the control plane's PKI")?;
    let ca = pki.ca_der().clone();
    let mut configs = Vec::with_capacity(options.agents);
    for i in 0..options.agents {
        let name = format!("load-{i:05}");
        let dir = options.certs.join(&name);
        if !dir.join("agent.key").exists() {
            let issued = pki.issue_agent(
                &name,
                Validity::starting_now(Duration::from_secs(86_400 * 30))?,
            )?;
            pki.write_agent_bundle(&issued, &dir)?;
        }
        let chain = aisemble_certs::tls::load_certs(&dir.join("agent.pem"))?;
        let key = aisemble_certs::tls::load_key(&dir.join("agent.key"))?;
        let tls = aisemble_certs::tls::client_config(&ca, chain, key, ALPN)?;
        let mut config = quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
        ));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(5)));
        config.transport_config(Arc::new(transport));
        configs.push(config);
    }
    Ok(configs)
}

#[derive(Default)]
struct Stats {
    latencies_us: Mutex<Vec<u64>>,
    samples_sent: AtomicU64,
    lines_sent: AtomicU64,
    connected: AtomicU64,
    errors: AtomicU64,
}

async fn ingest(options: Options) -> anyhow::Result<()> {
    let setup = Instant::now();
    let configs = tokio::task::block_in_place(|| certificates(&options))?;
    println!(
        "certificates: {} ready in {:.1}s",
        configs.len(),
        setup.elapsed().as_secs_f64()
    );
    let endpoints: Vec<quinn::Endpoint> = (0..options.endpoints.max(1))
        .map(|_| quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))))
        .collect::<Result<_, _>>()?;
    let stats = Arc::new(Stats::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, config) in configs.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let (stats, measuring, stop) = (
            Arc::clone(&stats),
            Arc::clone(&measuring),
            Arc::clone(&stop),
        );
        let templates = if options.fleet {
            fleet_series()
        } else {
            generic_series(options.series)
        };
        let (quic, rate, log_lines) = (options.quic, options.rate, options.log_lines);
        let first_tick = if options.spread {
            Duration::from_secs(1) * i as u32 / options.agents.max(1) as u32
        } else {
            Duration::ZERO
        };
        tasks.push(tokio::spawn(async move {
            if let Err(error) = agent(
                i, endpoint, config, quic, templates, rate, log_lines, first_tick, &stats,
                &measuring, &stop,
            )
            .await
            {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("agent {i}: {error:#}");
            }
        }));
        // Stagger connections so the handshakes do not all land at once.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while stats.connected.load(Ordering::Relaxed) < options.agents as u64 {
        if stats.errors.load(Ordering::Relaxed) > 0 {
            anyhow::bail!("agents failed to connect");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "connected: {} agents in {:.1}s; warming up 10s",
        options.agents,
        setup.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(10)).await;

    let client = integration_tests::http::client();
    let stored = |text: String| aisemble_integration_metric(&text, "aisemble_ingest_samples_total");
    let metrics_url = format!("http://{}/metrics", options.http);
    let stored_before = stored(client.get(&metrics_url).send().await?.text().await?);
    let sent_before = stats.samples_sent.load(Ordering::Relaxed);
    let lines_before = stats.lines_sent.load(Ordering::Relaxed);
    stats.latencies_us.lock().map(|mut l| l.clear()).ok();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(options.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let stored_after = stored(client.get(&metrics_url).send().await?.text().await?);
    let sent_after = stats.samples_sent.load(Ordering::Relaxed);
    let lines_after = stats.lines_sent.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);

    let mut latencies = stats
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "offered:  {:.0} samples/s ({} agents x {} series x {}/s)",
        (sent_after - sent_before) as f64 / elapsed,
        options.agents,
        if options.fleet {
            fleet_series().len()
        } else {
            options.series
        },
        options.rate
    );
    println!(
        "stored:   {:.0} samples/s over {elapsed:.1}s",
        (stored_after - stored_before) / elapsed
    );
    println!(
        "ack latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} batches)",
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        latencies.len()
    );
    if options.log_lines > 0 {
        println!(
            "log lines: {:.0}/s offered and acknowledged ({} agents x {}/s), {} sent in all",
            (lines_after - lines_before) as f64 / elapsed,
            options.agents,
            options.log_lines,
            lines_after
        );
    }
    println!("errors:   {}", stats.errors.load(Ordering::Relaxed));
    for task in tasks {
        task.abort();
    }
    for endpoint in endpoints {
        endpoint.close(0u32.into(), b"done");
    }
    Ok(())
}

fn aisemble_integration_metric(text: &str, name: &str) -> f64 {
    integration_tests::http::metric_value(text, name).unwrap_or(0.0)
}

#[allow(clippy::too_many_arguments)]
async fn agent(
    index: usize,
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    quic: SocketAddr,
    templates: Vec<(Sample, Shape)>,
    rate: u64,
    log_lines: u64,
    first_tick: Duration,
    stats: &Stats,
    measuring: &AtomicBool,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let connection = endpoint.connect_with(config, quic, "localhost")?.await?;
    let (mut send, mut recv) = connection.open_bi().await?;
    let journal_id = 0x10ad_0000 + index as u64;
    let hello = AgentMessage::Hello(Hello {
        agent_version: "loadgen".into(),
        hostname: format!("load-{index}"),
        labels: Vec::new(),
        journal_id,
        buffer: BufferStats::default(),
    });
    send.write_all(&codec::encode_frame(
        &hello,
        codec::DEFAULT_MAX_FRAME_BYTES,
    )?)
    .await?;
    let mut decoder = FrameDecoder::new(codec::DEFAULT_MAX_FRAME_BYTES);
    let mut next_seq = match integration_tests::quic::read_message(&mut recv, &mut decoder).await? {
        ControlMessage::Welcome(welcome) => welcome.stored_upto.unwrap_or(0) + 1,
        other => anyhow::bail!("expected Welcome, got {other:?}"),
    };
    stats.connected.fetch_add(1, Ordering::Relaxed);

    let n_series = templates.len();
    let pending: Arc<Mutex<std::collections::VecDeque<(u64, Instant)>>> = Arc::default();
    let reader_pending = Arc::clone(&pending);
    let reader = async move {
        loop {
            if let ControlMessage::Ack(ack) =
                integration_tests::quic::read_message(&mut recv, &mut decoder).await?
            {
                {
                    let now = Instant::now();
                    let mut queue = reader_pending.lock().map_err(|_| anyhow::anyhow!("lock"))?;
                    while queue.front().is_some_and(|(last, _)| *last <= ack.upto) {
                        if let Some((_, sent)) = queue.pop_front()
                            && measuring.load(Ordering::Relaxed)
                        {
                            stats
                                .latencies_us
                                .lock()
                                .map_err(|_| anyhow::anyhow!("lock"))?
                                .push(now.duration_since(sent).as_micros() as u64);
                        }
                    }
                }
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };
    let writer = async move {
        // One batch per second per agent: `rate` records of all series.
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + first_tick,
            Duration::from_secs(1),
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut t = now_ms() - 1000;
        let mut step = 0u64;
        while !stop.load(Ordering::Relaxed) {
            ticker.tick().await;
            let first_seq = next_seq;
            let mut entries: Vec<JournalEntry> = (0..rate)
                .map(|r| {
                    t += (1000 / rate.max(1)) as i64;
                    step += 1;
                    let samples = templates
                        .iter()
                        .enumerate()
                        .map(|(i, (s, shape))| Sample {
                            value: shape.value(step, i),
                            ..s.clone()
                        })
                        .collect();
                    let record = Record::Metrics(MetricRecord {
                        timestamp_ms: t,
                        samples,
                    });
                    let seq = first_seq + r;
                    Ok(JournalEntry {
                        seq,
                        record: codec::encode_record(&record)?,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            next_seq += rate;
            if log_lines > 0 {
                let record = Record::Logs(LogRecord {
                    entries: (0..log_lines)
                        .map(|n| log_line(index, step * log_lines + n, t))
                        .collect(),
                });
                entries.push(JournalEntry {
                    seq: next_seq,
                    record: codec::encode_record(&record)?,
                });
                next_seq += 1;
            }
            let batch = AgentMessage::Batch(Batch {
                first_seq,
                last_seq: next_seq - 1,
                compression: Compression::Zstd,
                payload: codec::encode_entries(&entries, Compression::Zstd)?,
                buffer: BufferStats::default(),
            });
            let frame = codec::encode_frame(&batch, codec::DEFAULT_MAX_FRAME_BYTES)?;
            pending
                .lock()
                .map_err(|_| anyhow::anyhow!("lock"))?
                .push_back((next_seq - 1, Instant::now()));
            send.write_all(&frame).await?;
            stats
                .samples_sent
                .fetch_add(rate * n_series as u64, Ordering::Relaxed);
            stats.lines_sent.fetch_add(log_lines, Ordering::Relaxed);
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        result = reader => result,
        result = writer => result,
    }
}

/// The `n`th synthetic log line of agent `index`: an inference gateway's access log, 5 % errors,
/// one line in 1,000 with the word `needle`.
fn log_line(index: usize, n: u64, timestamp_ms: i64) -> LogEntry {
    const MODELS: [&str; 3] = ["llama-3-8b", "mistral-7b", "qwen2-72b"];
    let model = MODELS[(n % 3) as usize];
    let latency = 40 + (n * 7919) % 900;
    let (level, message) = match n % 20 {
        0 => (
            LogLevel::Error,
            format!(
                "upstream timeout after 30s calling {model} (attempt {})",
                n % 3 + 1
            ),
        ),
        1 | 2 => (
            LogLevel::Warn,
            format!(
                "slow request: {latency} ms for {model}, queue depth {}",
                n % 17
            ),
        ),
        _ => (
            LogLevel::Info,
            format!("POST /v1/chat/completions 200 in {latency} ms model={model}"),
        ),
    };
    let message = if n % 1_000 == 999 {
        format!("{message} needle")
    } else {
        message
    };
    LogEntry {
        timestamp_ms,
        level,
        service: if n.is_multiple_of(4) {
            "embedder"
        } else {
            "gateway"
        }
        .to_owned(),
        message,
        context: format!(
            r#"{{"latency_ms":{latency},"tokens":{},"user":"u{}"}}"#,
            n % 2048,
            n % 500
        ),
        trace_id: Some(format!("{index:08x}{n:024x}")),
        request_id: None,
    }
}

/// How a simulated series moves.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Up and down between 0 and 50.
    Gauge,
    /// A constant.
    Constant(f64),
    /// Grows by this much per sample.
    Counter(f64),
}

impl Shape {
    fn value(self, step: u64, index: usize) -> f64 {
        match self {
            Self::Gauge => ((step + index as u64) % 100) as f64 * 0.5,
            Self::Constant(v) => v,
            Self::Counter(per_step) => step as f64 * per_step,
        }
    }
}

/// Generic series: 10 metric names x n/10 label values, like a host with several devices.
fn generic_series(n: usize) -> Vec<(Sample, Shape)> {
    (0..n)
        .map(|s| {
            let sample = Sample::new(format!("loadgen_metric_{}", s % 10), 0.0)
                .with_label("device", format!("dev{}", s / 10));
            (sample, Shape::Gauge)
        })
        .collect()
}

/// What one real host sends: system figures, four health checks, one service and one model.
fn fleet_series() -> Vec<(Sample, Shape)> {
    use aisemble_shared::metrics as names;
    let mut out = Vec::new();
    let mut push = |sample: Sample, shape: Shape| out.push((sample, shape));
    for name in [
        names::SYSTEM_CPU_USAGE_PERCENT,
        names::SYSTEM_MEMORY_USAGE_PERCENT,
        names::SYSTEM_MEMORY_USED_BYTES,
        names::SYSTEM_LOAD1,
        names::SYSTEM_LOAD5,
        names::SYSTEM_LOAD15,
        names::SYSTEM_PROCESSES,
        names::SYSTEM_TCP_CONNECTIONS,
    ] {
        push(Sample::new(name, 0.0), Shape::Gauge);
    }
    push(
        Sample::new(names::SYSTEM_MEMORY_TOTAL_BYTES, 0.0),
        Shape::Constant(64e9),
    );
    push(
        Sample::new(names::SYSTEM_UPTIME_SECONDS, 0.0),
        Shape::Counter(1.0),
    );
    for mount in ["/", "/data"] {
        for name in [
            names::SYSTEM_DISK_USAGE_PERCENT,
            names::SYSTEM_DISK_USED_BYTES,
        ] {
            push(
                Sample::new(name, 0.0).with_label("mount", mount),
                Shape::Gauge,
            );
        }
        let total = Sample::new(names::SYSTEM_DISK_TOTAL_BYTES, 0.0).with_label("mount", mount);
        push(total, Shape::Constant(1e12));
    }
    for interface in ["eth0", "eth1"] {
        for name in [
            names::SYSTEM_NETWORK_RECEIVE_BYTES_TOTAL,
            names::SYSTEM_NETWORK_TRANSMIT_BYTES_TOTAL,
        ] {
            let sample = Sample::new(name, 0.0).with_label("interface", interface);
            push(sample, Shape::Counter(1e5));
        }
    }
    for check in ["postgres", "redis", "api-http", "gpu-tcp"] {
        let labelled = |name| Sample::new(name, 0.0).with_label("check", check);
        push(labelled(names::CHECK_UP), Shape::Constant(1.0));
        push(
            labelled(names::CHECK_DURATION_SECONDS),
            Shape::Constant(0.004),
        );
        push(
            labelled(names::CHECK_CONSECUTIVE_FAILURES),
            Shape::Constant(0.0),
        );
    }
    let histogram = |push: &mut dyn FnMut(Sample, Shape), base: &str, labels: &[(&str, &str)]| {
        let with = |mut sample: Sample| {
            for (name, value) in labels {
                sample = sample.with_label(*name, *value);
            }
            sample
        };
        let bounds = [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
        ];
        for (j, le) in bounds.iter().chain(&["+Inf"]).enumerate() {
            let bucket = with(Sample::new(format!("{base}_bucket"), 0.0)).with_label("le", *le);
            push(bucket, Shape::Counter((j + 1) as f64));
        }
        push(
            with(Sample::new(format!("{base}_count"), 0.0)),
            Shape::Counter(11.0),
        );
        push(
            with(Sample::new(format!("{base}_sum"), 0.0)),
            Shape::Counter(2.2),
        );
    };
    let service = [("service", "api")];
    for (status, per_step) in [("2xx", 10.0), ("4xx", 0.5), ("5xx", 0.1)] {
        let sample = Sample::new(names::REQUESTS_TOTAL, 0.0)
            .with_label("service", "api")
            .with_label("status", status);
        push(sample, Shape::Counter(per_step));
    }
    histogram(&mut push, names::REQUEST_DURATION_SECONDS, &service);
    let connections = Sample::new(names::ACTIVE_CONNECTIONS, 0.0).with_label("service", "api");
    push(connections, Shape::Gauge);
    let model = [("model", "llama-3-8b"), ("provider", "local")];
    let with_model = |name: &str| {
        Sample::new(name, 0.0)
            .with_label("model", "llama-3-8b")
            .with_label("provider", "local")
    };
    for (outcome, per_step) in [("success", 5.0), ("failure", 0.05)] {
        let sample = with_model(names::MODEL_INFERENCE_TOTAL).with_label("outcome", outcome);
        push(sample, Shape::Counter(per_step));
    }
    histogram(&mut push, names::MODEL_INFERENCE_DURATION_SECONDS, &model);
    histogram(&mut push, names::MODEL_QUEUE_DURATION_SECONDS, &model);
    for (direction, per_step) in [("in", 900.0), ("out", 300.0)] {
        let sample = with_model(names::MODEL_TOKENS_TOTAL).with_label("direction", direction);
        push(sample, Shape::Counter(per_step));
    }
    push(
        with_model(names::MODEL_COST_USD_TOTAL),
        Shape::Counter(0.002),
    );
    push(with_model(names::MODEL_REQUESTS_RUNNING), Shape::Gauge);
    push(with_model(names::MODEL_QUEUE_DEPTH), Shape::Gauge);
    let breaker = Sample::new(names::CIRCUIT_BREAKER_STATE, 0.0).with_label("service", "api");
    push(breaker, Shape::Constant(0.0));
    out
}
