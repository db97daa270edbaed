//! `aisemble-cp`: glue only — arguments, settings, tracing, signals. The work is in the library.
#![allow(clippy::print_stdout)] // A CLI prints its results.

use std::{path::PathBuf, process::ExitCode};

use aisemble_control_plane::{
    auth::Role,
    commands,
    config::{Overrides, Settings},
    server::ControlPlane,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Exit code for an unusable config (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// Exit code for bad arguments of the remote commands (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(name = "aisemble-cp", version, about = "Ai-semble Ops control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct ServerArgs {
    /// Config file (see control-plane.example.toml); flags override it.
    #[arg(long, env = "AISEMBLE_CP_CONFIG")]
    config: Option<PathBuf>,
    /// State directory [default: ./aisemble-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    http: Option<String>,
    /// QUIC listen address for agents [default: 0.0.0.0:7443].
    #[arg(long)]
    quic: Option<String>,
    /// Log format; `auto` is pretty on a terminal and JSON otherwise.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
}

#[derive(Args, Debug, Clone)]
struct DataArgs {
    /// Config file.
    #[arg(long, env = "AISEMBLE_CP_CONFIG")]
    config: Option<PathBuf>,
    /// State directory [default: ./aisemble-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control plane.
    Serve(ServerArgs),
    /// Run the control plane plus one local agent, and print the dashboard URL and a token.
    Quickstart(ServerArgs),
    /// Manage the certificate authority and agent certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage one-time tokens with which new agents enroll (`aisemble-agent enroll`).
    #[command(subcommand)]
    EnrollToken(EnrollTokenCommand),
    /// Check or unit-test Prometheus rule files (promtool's formats and output).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Check a config file and exit.
    CheckConfig {
        /// Config file.
        file: PathBuf,
    },
    /// Terminal dashboard of a running control plane, or (`--mode status`) a one-shot summary
    /// for scripts: exit 0 healthy, 1 warning, 2 critical, 3 unreachable or token refused.
    Dashboard(DashboardArgs),
    /// Print a daily, weekly or monthly operations report from a running control plane
    /// (exit 3 when unreachable or the token is refused).
    Report(ReportArgs),
}

#[derive(Args, Debug, Clone)]
struct RemoteArgs {
    /// The control plane's HTTP API.
    #[arg(long, default_value = aisemble_control_plane::remote::DEFAULT_URL)]
    url: String,
    /// API token (viewer role is enough).
    #[arg(long, env = aisemble_control_plane::remote::ENV_TOKEN, hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args, Debug, Clone)]
struct DashboardArgs {
    /// `dashboard`: interactive terminal UI; `status`: one plain-text summary and an exit code.
    #[arg(long, value_enum, default_value_t = DashboardMode::Dashboard)]
    mode: DashboardMode,
    /// How often the interactive UI refreshes.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    refresh: std::time::Duration,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum DashboardMode {
    Dashboard,
    Status,
}

#[derive(Args, Debug, Clone)]
struct ReportArgs {
    /// Report period.
    #[arg(value_enum)]
    period: ReportPeriod,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ReportPeriod {
    Daily,
    Weekly,
    Monthly,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// Create the CA and the server certificate (done automatically on first start).
    Init(DataArgs),
    /// Issue an agent certificate and write ca.pem, agent.pem, agent.key and agent.toml.
    IssueAgent {
        /// Agent name (its identity and `host` label).
        name: String,
        /// Output directory [default: ./NAME].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Control plane HOST:PORT for the agent's config [default: server.public_address].
        #[arg(long)]
        address: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Revoke every certificate issued to an agent; a running control plane disconnects it.
    Revoke {
        /// Agent name.
        name: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List issued agent certificates.
    List(DataArgs),
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create an API token (printed once).
    Create {
        /// Role.
        #[arg(long, value_enum)]
        role: Role,
        /// Name for the token.
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List tokens (never the tokens themselves).
    List(DataArgs),
    /// Revoke tokens by id or name.
    Revoke {
        /// Token id or name.
        id: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand, Debug)]
enum EnrollTokenCommand {
    /// Create a one-time enrollment token (printed once, with the agent's command).
    Create {
        /// How long the token may be used ("30m", "1h", "7d"; at most 30 days).
        #[arg(long, default_value = "1h")]
        ttl: aisemble_shared::units::HumanDuration,
        /// Enroll only this agent name (needed to re-enroll a name that has a valid certificate).
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List enrollment tokens: id, agent, expiry, whether used (never the tokens themselves).
    List(DataArgs),
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Check rule files for syntax and PromQL this version can evaluate (like `promtool check rules`).
    Check {
        /// Rule files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run rule unit-test files (promtool's format, like `promtool test rules`).
    Test {
        /// Unit-test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Auto,
    Json,
    Pretty,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `dashboard --mode status` exits 1 and 2 for fleet states, so its usage errors must not
        // use clap's 2: they get sysexits' EX_USAGE, as STYLE asks.
        Err(error)
            if error.use_stderr()
                && std::env::args()
                    .nth(1)
                    .is_some_and(|c| c == "dashboard" || c == "report") =>
        {
            let _ = error.print();
            return ExitCode::from(EXIT_USAGE);
        }
        Err(error) => error.exit(),
    };
    match cli.command {
        Command::Dashboard(args) => remote::dashboard(args),
        Command::Report(args) => remote::report(args),
        Command::Serve(args) => run_server(args, false),
        Command::Quickstart(args) => run_server(args, true),
        Command::CheckConfig { file } => match Settings::load(Some(&file), &Overrides::default()) {
            Ok(settings) => {
                println!(
                    "{}: ok (HTTP {}, QUIC {}, data {})",
                    file.display(),
                    settings.http,
                    settings.quic,
                    settings.data_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Rules(RulesCommand::Check { files }) => {
            let (out, err, ok) = commands::rules_check(&files);
            print!("{out}");
            eprint!("{err}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Rules(RulesCommand::Test { files }) => {
            use aisemble_control_plane::alerts::unittest::{self, Stream};
            use std::io::Write as _;
            let report = unittest::run_files(&files);
            // In promtool's order, so that `2>&1` reads the same.
            for (stream, text) in &report.output {
                let _ = match stream {
                    Stream::Stdout => std::io::stdout()
                        .write_all(text.as_bytes())
                        .and_then(|()| std::io::stdout().flush()),
                    Stream::Stderr => std::io::stderr().write_all(text.as_bytes()),
                };
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Certs(command) => oneshot(
            match &command {
                CertsCommand::Init(data) | CertsCommand::List(data) => data.clone(),
                CertsCommand::IssueAgent { data, .. } | CertsCommand::Revoke { data, .. } => {
                    data.clone()
                }
            },
            |settings| match command {
                CertsCommand::Init(_) => commands::certs_init(settings),
                CertsCommand::IssueAgent {
                    name,
                    out,
                    address,
                    days,
                    ..
                } => {
                    let out = out.unwrap_or_else(|| PathBuf::from(&name));
                    commands::certs_issue_agent(settings, &name, &out, address.as_deref(), days)
                }
                CertsCommand::Revoke { name, .. } => commands::certs_revoke(settings, &name),
                CertsCommand::List(_) => commands::certs_list(settings),
            },
        ),
        Command::Token(command) => oneshot(
            match &command {
                TokenCommand::Create { data, .. }
                | TokenCommand::Revoke { data, .. }
                | TokenCommand::List(data) => data.clone(),
            },
            |settings| match command {
                TokenCommand::Create { role, name, .. } => {
                    commands::token_create(settings, role, &name)
                }
                TokenCommand::List(_) => commands::token_list(settings),
                TokenCommand::Revoke { id, .. } => commands::token_revoke(settings, &id),
            },
        ),
        Command::EnrollToken(command) => oneshot(
            match &command {
                EnrollTokenCommand::Create { data, .. } | EnrollTokenCommand::List(data) => {
                    data.clone()
                }
            },
            |settings| match command {
                EnrollTokenCommand::Create { ttl, agent, .. } => {
                    commands::enroll_token_create(settings, ttl.0, agent.as_deref())
                }
                EnrollTokenCommand::List(_) => commands::enroll_token_list(settings),
            },
        ),
    }
}

fn settings(config: Option<&PathBuf>, overrides: &Overrides) -> Result<Settings, ExitCode> {
    Settings::load(config.map(PathBuf::as_path), overrides).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn oneshot(data: DataArgs, run: impl FnOnce(&Settings) -> anyhow::Result<String>) -> ExitCode {
    let overrides = Overrides {
        data_dir: data.data_dir,
        ..Overrides::default()
    };
    let settings = match settings(data.config.as_ref(), &overrides) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match run(&settings) {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_server(args: ServerArgs, quickstart: bool) -> ExitCode {
    let overrides = Overrides {
        data_dir: args.data_dir.clone(),
        http: args.http.clone(),
        quic: args.quic.clone(),
    };
    let settings = match settings(args.config.as_ref(), &overrides) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    // quickstart's local agent tails a JSON copy of this process's log; the guard flushes it
    // when the process ends.
    let (log_copy, _flushes_on_exit) = if quickstart {
        match open_log_copy(&commands::quickstart_log_path(&settings)) {
            Ok((writer, guard)) => (Some(writer), Some(guard)),
            Err(error) => {
                eprintln!(
                    "warning: the local agent will not see the control plane's log: {error:#}"
                );
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    init_tracing(args.log_format, log_copy);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings, quickstart)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Control plane failed.");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings, quickstart: bool) -> anyhow::Result<()> {
    let control_plane = ControlPlane::start(settings.clone()).await?;
    let shutdown = control_plane.shutdown_token();
    let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
    let http = control_plane.http;
    if let Some(token) = &control_plane.first_admin_token {
        println!("Admin API token (shown once, stored hashed): {token}");
    }
    let agent = if quickstart {
        Some(start_local_agent(&settings, &control_plane).await?)
    } else {
        None
    };
    let scheme = control_plane.http_scheme;
    println!("Dashboard and API: {scheme}://{http}/");
    println!("Prometheus metrics: {scheme}://{http}/metrics");
    println!("QUIC ingest for agents: {}", control_plane.quic);
    println!("Press Ctrl-C to stop.");
    shutdown.cancelled().await;
    if let Some((task, stop)) = agent {
        stop.cancel();
        if let Ok(Err(error)) = task.await {
            tracing::error!(error = format!("{error:#}"), "Local agent failed.");
        }
    }
    signals.abort();
    control_plane.stop().await;
    Ok(())
}

/// The admin token each later quickstart makes for its session (the previous one is revoked).
#[cfg(feature = "embedded-agent")]
const QUICKSTART_TOKEN_NAME: &str = "quickstart";

#[cfg(feature = "embedded-agent")]
async fn start_local_agent(
    settings: &Settings,
    control_plane: &ControlPlane,
) -> anyhow::Result<(
    tokio::task::JoinHandle<anyhow::Result<()>>,
    CancellationToken,
)> {
    use anyhow::Context as _;
    let settings_for_files = settings.clone();
    let quic = control_plane.quic;
    let config = tokio::task::spawn_blocking(move || {
        commands::quickstart_agent_config(&settings_for_files, quic)
    })
    .await??;
    let agent_settings =
        aisemble_agent::Settings::load(&config).context("loading the quickstart agent's config")?;
    println!(
        "Local agent {} (config {}), streaming over mutual-TLS QUIC.",
        agent_settings.name,
        config.display()
    );
    // A first start has just printed its admin token. A later one cannot show that token
    // again, so it makes one for this session, replacing the previous session's.
    let token = match &control_plane.first_admin_token {
        Some(token) => token.clone(),
        None => {
            let auth = &control_plane.state.auth;
            auth.revoke(QUICKSTART_TOKEN_NAME)
                .context("revoking the previous quickstart token")?;
            let (_, token) = auth
                .create(Role::Admin, QUICKSTART_TOKEN_NAME)
                .context("creating a token")?;
            println!("Admin API token for this session: {token}");
            token
        }
    };
    println!(
        "Try: curl -H 'Authorization: Bearer {token}' http://{}/ops/agents",
        control_plane.http
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(aisemble_agent::run(agent_settings, stop.clone()));
    Ok((task, stop))
}

#[cfg(not(feature = "embedded-agent"))]
async fn start_local_agent(
    _: &Settings,
    _: &ControlPlane,
) -> anyhow::Result<(
    tokio::task::JoinHandle<anyhow::Result<()>>,
    CancellationToken,
)> {
    anyhow::bail!(
        "this build has no embedded agent (feature `embedded-agent`); run `serve` and an aisemble-agent instead"
    )
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers.");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received."),
        _ = int.recv() => tracing::info!("SIGINT received."),
    }
    shutdown.cancel();
}

/// Empties (or creates) `path` and returns a writer that appends to it off the async runtime.
fn open_log_copy(
    path: &std::path::Path,
) -> anyhow::Result<(
    tracing_appender::non_blocking::NonBlocking,
    tracing_appender::non_blocking::WorkerGuard,
)> {
    use anyhow::Context as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(tracing_appender::non_blocking(file))
}

/// Logs to stderr in `format`, and as JSON lines to `copy` when given.
fn init_tracing(format: LogFormat, copy: Option<tracing_appender::non_blocking::NonBlocking>) {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("aisemble_control_plane=info,aisemble_agent=info"));
    // The audit events (target `audit`) are the audit trail, not diagnostics: a RUST_LOG that
    // does not mention them must not filter them away.
    let filter = match "audit=info".parse() {
        Ok(audit) if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("audit")) => {
            filter.add_directive(audit)
        }
        _ => filter,
    };
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let copy = copy.map(|writer| {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
    });
    let registry = tracing_subscriber::registry().with(filter).with(copy);
    if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .init();
    }
}

/// `dashboard` and `report`: the commands that talk to a running control plane's API.
mod remote {
    use std::{io::IsTerminal as _, process::ExitCode, time::Duration};

    use aisemble_control_plane::{
        remote::{Remote, RemoteError},
        reports::{self, Report},
        store::now_ms,
        tui::{self, app::AppError, status},
    };
    use anyhow::Context as _;

    use super::{DashboardArgs, DashboardMode, ReportArgs, ReportFormat, ReportPeriod};

    /// Each request's timeout: a hung control plane is reported, not waited for.
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")
    }

    /// Unreachable, token refused, or an answer that does not tell the fleet's state: UNKNOWN
    /// (3) for scripts, distinct from the fleet's own 1 and 2.
    fn remote_failure(error: &RemoteError) -> ExitCode {
        eprintln!("error: {error}");
        ExitCode::from(status::EXIT_UNKNOWN)
    }

    pub(super) fn dashboard(args: DashboardArgs) -> ExitCode {
        let remote = match Remote::new(&args.remote.url, args.remote.token, TIMEOUT) {
            Ok(remote) => remote,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(super::EXIT_USAGE);
            }
        };
        let runtime = match runtime() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::FAILURE;
            }
        };
        match args.mode {
            DashboardMode::Status => match runtime.block_on(tui::fetch(&remote, now_ms())) {
                Ok(snapshot) => {
                    let assessment = status::assess(&snapshot);
                    print!("{}", status::summary(&snapshot, &assessment));
                    ExitCode::from(assessment.level.exit_code())
                }
                Err(error) => remote_failure(&error),
            },
            DashboardMode::Dashboard => {
                if !std::io::stdout().is_terminal() {
                    eprintln!(
                        "error: the interactive dashboard needs a terminal; use --mode status for scripts"
                    );
                    return ExitCode::from(super::EXIT_USAGE);
                }
                match runtime.block_on(tui::app::run(remote, args.refresh)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(AppError::Remote(error)) => remote_failure(&error),
                    Err(error) => {
                        eprintln!("error: {error}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    }

    pub(super) fn report(args: ReportArgs) -> ExitCode {
        let period = match args.period {
            ReportPeriod::Daily => "daily",
            ReportPeriod::Weekly => "weekly",
            ReportPeriod::Monthly => "monthly",
        };
        let remote = match Remote::new(&args.remote.url, args.remote.token, TIMEOUT) {
            Ok(remote) => remote,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(super::EXIT_USAGE);
            }
        };
        let path = format!("/ops/reports/{period}");
        let body = match runtime().map(|rt| rt.block_on(remote.get_required(&path))) {
            Ok(Ok(body)) => body,
            Ok(Err(error)) => return remote_failure(&error),
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::FAILURE;
            }
        };
        let text = match args.format {
            ReportFormat::Json => {
                serde_json::to_string_pretty(&body).context("formatting the report")
            }
            ReportFormat::Text => serde_json::from_value::<Report>(body)
                .context("reading the report (is the control plane another version?)")
                .map(|report| reports::text::render(&report)),
        };
        match text {
            Ok(text) => {
                println!("{}", text.trim_end());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}
