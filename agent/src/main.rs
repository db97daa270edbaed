//! `aisemble-agent`: glue only — arguments, config, tracing, signals. The work is in the library.
#![allow(clippy::print_stdout)] // A CLI prints its results.

use std::{path::PathBuf, process::ExitCode};

use aisemble_agent::{
    Settings,
    config::DEFAULT_CONFIG_PATH,
    enroll::{EnrollOptions, Trust},
    journal::{Journal as _, SledJournal},
    status::{ConnectionState, process_alive, read_report},
};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Exit code for a config file that cannot be used (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

#[derive(Parser, Debug)]
#[command(name = "aisemble-agent", version, about = "Ai-semble Ops host agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Collect and stream telemetry until SIGTERM or SIGINT.
    Run {
        /// Config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH, env = "AISEMBLE_AGENT_CONFIG")]
        config: PathBuf,
        /// Log format; `auto` is pretty on a terminal and JSON otherwise.
        #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
        log_format: LogFormat,
    },
    /// Check a config file (and the certificate files it names) and exit.
    CheckConfig {
        /// Config file.
        file: PathBuf,
    },
    /// Get a certificate from the control plane with a one-time token (`aisemble-cp enroll-token
    /// create`): makes a key pair here, writes ca.pem, agent.pem, agent.key and agent.toml.
    Enroll {
        /// The control plane's QUIC address (its `server.public_address`).
        #[arg(long, value_name = "HOST:PORT")]
        server: String,
        /// The one-time enrollment token.
        #[arg(long, env = "AISEMBLE_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// SHA-256 of the control plane's CA certificate (`aisemble-cp certs init` prints it).
        /// Without it, the control plane must prove that it holds the token.
        #[arg(long, value_name = "SHA256")]
        ca_fingerprint: Option<String>,
        /// Agent name to enroll [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// Name the control plane's certificate carries [default: the host part of --server].
        #[arg(long)]
        server_name: Option<String>,
        /// Directory for the certificate, key and config.
        #[arg(long, default_value = "/etc/aisemble")]
        out: PathBuf,
        /// Replace an existing agent.key.
        #[arg(long)]
        force: bool,
    },
    /// Show the local buffer depth, last acknowledgement and connection state.
    Status {
        /// Config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH, env = "AISEMBLE_AGENT_CONFIG")]
        config: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Auto,
    Json,
    Pretty,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_format } => run(config, log_format),
        Command::CheckConfig { file } => match Settings::load(&file) {
            Ok(settings) => {
                println!(
                    "{}: ok (agent {}, control plane {}, interval {:?})",
                    file.display(),
                    settings.name,
                    settings.address,
                    settings.interval
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Status { config } => status(&config),
        Command::Enroll {
            server,
            token,
            ca_fingerprint,
            name,
            server_name,
            out,
            force,
        } => enroll(EnrollOptions {
            server,
            server_name,
            token,
            ca_fingerprint,
            name: name.unwrap_or_else(|| {
                sysinfo::System::host_name().unwrap_or_else(|_| "localhost".to_owned())
            }),
            out_dir: out,
            force,
        }),
    }
}

fn enroll(options: EnrollOptions) -> ExitCode {
    // One blocking thread: the DNS lookup of --server.
    let Some(runtime) = runtime(1) else {
        return ExitCode::FAILURE;
    };
    eprintln!(
        "Enrolling {} with the control plane at {} ...",
        options.name, options.server
    );
    match runtime.block_on(aisemble_agent::enroll::enroll(&options)) {
        Ok(enrolled) => {
            let how = match enrolled.trust {
                Trust::Fingerprint => "its fingerprint matches --ca-fingerprint",
                Trust::TokenProof => "the control plane proved it holds the token",
            };
            println!(
                "Enrolled as {}. CA {} trusted: {how}.",
                enrolled.name, enrolled.ca_fingerprint
            );
            println!(
                "Wrote {}, {} and {} (mode 0600).",
                enrolled.bundle.ca.display(),
                enrolled.bundle.cert.display(),
                enrolled.bundle.key.display()
            );
            let (config, written) = &enrolled.config;
            if *written {
                println!("Wrote {}.", config.display());
            } else {
                println!(
                    "Kept the existing {}: check that it points at these files.",
                    config.display()
                );
            }
            println!(
                "Next: aisemble-agent run --config {} (or: systemctl restart aisemble-agent)",
                config.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: PathBuf, log_format: LogFormat) -> ExitCode {
    init_tracing(log_format);
    let settings = match Settings::load(&config) {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!(%error, "Cannot use the config file.");
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // A small agent: one thread for async work, two blocking threads for collection, journal
    // writes, status writes and DNS lookups. glibc gives every thread that allocates an arena of
    // its own and keeps what is freed there: with 4 blocking threads, each held 0.4-0.5 MiB of
    // freed memory after a few minutes of checks and scrapes (scripts/bench-checks: peak RSS
    // 1.1 MiB higher). The blocking work is short (a sled append, a /proc read, mapping a
    // scrape); the second thread is there so that one slow DNS lookup of a hostname target (a
    // resolver that does not answer holds its thread for the resolver's timeout, whatever the
    // check's own timeout) does not hold up collection and journal writes.
    let Some(runtime) = runtime(2) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
        let result = aisemble_agent::run(settings, shutdown.clone()).await;
        signals.abort();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Agent failed.");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A current-thread runtime with at most `max_blocking_threads` blocking threads; `None` (after
/// saying why) when it cannot be started.
fn runtime(max_blocking_threads: usize) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(max_blocking_threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            None
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers; stop the agent with SIGKILL.");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received."),
        _ = int.recv() => tracing::info!("SIGINT received."),
    }
    shutdown.cancel();
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("aisemble_agent=info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .init();
    }
}

/// `aisemble-agent status`: exit 0 connected, 1 running but not connected, 3 not running.
fn status(config: &std::path::Path) -> ExitCode {
    let settings = match Settings::load(config) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let report = read_report(&settings.status_path()).ok();
    let running = report
        .as_ref()
        .is_some_and(|r| process_alive(r.pid) && r.connection != ConnectionState::Stopped);
    if !running {
        println!("agent:        {} (not running)", settings.name);
        // Not running, so the journal is free to open and report on.
        match SledJournal::open(&settings.journal_path(), settings.max_buffer_bytes) {
            Ok(journal) => {
                let stats = journal.stats();
                println!(
                    "buffer:       {} records, {} bytes, {} dropped",
                    stats.records, stats.bytes, stats.dropped_records
                );
            }
            Err(error) => println!("buffer:       unavailable ({error})"),
        }
        if let Some(report) = report {
            print_ack(report.last_ack_seq, report.last_ack_at_ms);
        }
        return ExitCode::from(3);
    }
    let Some(report) = report else {
        return ExitCode::from(3);
    };
    println!(
        "agent:        {} (pid {}, version {})",
        report.agent, report.pid, report.version
    );
    println!("control plane: {}", report.control_plane);
    println!("connection:   {:?}", report.connection);
    if let Some(error) = &report.last_error {
        println!("last error:   {error}");
    }
    println!(
        "buffer:       {} records, {} bytes, {} dropped",
        report.buffer.records, report.buffer.bytes, report.buffer.dropped_records
    );
    print_ack(report.last_ack_seq, report.last_ack_at_ms);
    println!("monitoring:   {}", report.monitoring);
    if report.connection == ConnectionState::Connected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_ack(seq: Option<u64>, at_ms: Option<i64>) {
    match (seq, at_ms) {
        (Some(seq), Some(at_ms)) => {
            let ago = (aisemble_agent::status::now_ms() - at_ms).max(0) / 1000;
            println!("last ack:     seq {seq}, {ago}s ago");
        }
        _ => println!("last ack:     none yet"),
    }
}
