//! Load generator for the benchmarks in `scripts/`.
//!
//! `loadgen ingest`: N simulated agents, each its own QUIC connection with its own certificate
//! (issued from the control plane's CA), stream batches of synthetic samples at a fixed rate and
//! measure acknowledgement latency; the stored rate is read from the control plane's
//! `aisemble_ingest_samples_total`.
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
        MetricRecord, Record, Sample,
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
        /// Samples per series per second.
        #[arg(long, default_value_t = 10)]
        rate: u64,
        /// Measurement length (after all agents connected and a warm-up).
        #[arg(long, default_value = "30s", value_parser = humantime_duration)]
        duration: Duration,
        /// Client endpoints (UDP sockets) the connections are spread over.
        #[arg(long, default_value_t = 8)]
        endpoints: usize,
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
            rate,
            duration,
            endpoints,
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
                rate,
                duration,
                endpoints,
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
    rate: u64,
    duration: Duration,
    endpoints: usize,
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
        let (quic, series, rate) = (options.quic, options.series, options.rate);
        tasks.push(tokio::spawn(async move {
            if let Err(error) = agent(
                i, endpoint, config, quic, series, rate, &stats, &measuring, &stop,
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
    stats.latencies_us.lock().map(|mut l| l.clear()).ok();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(options.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let stored_after = stored(client.get(&metrics_url).send().await?.text().await?);
    let sent_after = stats.samples_sent.load(Ordering::Relaxed);
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
        options.series,
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
    n_series: usize,
    rate: u64,
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

    // Series: 10 metric names x n/10 label values, like a host with several devices.
    let templates: Vec<Sample> = (0..n_series)
        .map(|s| {
            Sample::new(format!("loadgen_metric_{}", s % 10), 0.0)
                .with_label("device", format!("dev{}", s / 10))
        })
        .collect();
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
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut t = now_ms() - 1000;
        let mut step = 0u64;
        while !stop.load(Ordering::Relaxed) {
            ticker.tick().await;
            let first_seq = next_seq;
            let entries: Vec<JournalEntry> = (0..rate)
                .map(|r| {
                    t += (1000 / rate.max(1)) as i64;
                    step += 1;
                    let samples = templates
                        .iter()
                        .enumerate()
                        .map(|(i, s)| Sample {
                            value: ((step + i as u64) % 100) as f64 * 0.5,
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
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        result = reader => result,
        result = writer => result,
    }
}
