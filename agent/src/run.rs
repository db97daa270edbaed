//! The running agent: opens the journal, starts the collector loop, the uplink and the status
//! writer, and stops them in order on shutdown.

use std::{sync::Arc, time::Duration};

use aisemble_shared::wire::{MetricRecord, MonitoringState, Record};
use anyhow::Context as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, trace, warn};

use crate::{
    checks,
    collect::{self, Collector},
    config::Settings,
    journal::{Journal, SledJournal},
    push, scrape,
    sink::RecordSink,
    status::{Status, now_ms},
    tls,
    uplink::{Uplink, UplinkConfig},
};

const STATUS_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the agent until `shutdown` is cancelled.
///
/// # Errors
/// When the journal cannot be opened or the TLS files are unusable; later failures are logged and
/// retried instead.
///
/// # Cancel safety
/// Cancel through `shutdown`, which stops collection, closes the connection and flushes the
/// journal; dropping the future instead loses no journaled record.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "creating the data directory {}",
            settings.data_dir.display()
        )
    })?;
    let client = tls::client_config(&settings.tls).context("loading the TLS files")?;
    let journal_path = settings.journal_path();
    let cap = settings.max_buffer_bytes;
    let journal: Arc<dyn Journal> = Arc::new(
        tokio::task::spawn_blocking(move || SledJournal::open(&journal_path, cap))
            .await?
            .with_context(|| format!("opening the journal in {}", settings.data_dir.display()))?,
    );
    let status = Arc::new(Status::new(
        settings.status_path(),
        settings.name.as_str(),
        &settings.address,
    ));
    let (records_tx, records_rx) = watch::channel(journal.last_seq());
    let sink = RecordSink::new(Arc::clone(&journal), records_tx);
    let monitoring_path = settings.monitoring_path();
    let initial = read_monitoring(&monitoring_path).await;
    if initial == MonitoringState::Paused {
        info!("Monitoring is paused (as the control plane last said); not collecting.");
    }
    status.set_monitoring(initial);
    let (monitoring_tx, monitoring_rx) = watch::channel(initial);
    let monitoring_task = tokio::spawn(keep_monitoring(
        monitoring_path,
        monitoring_rx.clone(),
        shutdown.clone(),
    ));

    let collect::Built {
        mut collectors,
        unavailable,
    } = collect::build(&settings.collectors);
    for (kind, error) in unavailable {
        warn!(collector = ?kind, %error, "Collector unavailable on this host; running without it.");
    }
    info!(
        agent = %settings.name,
        control_plane = %settings.address,
        interval = ?settings.interval,
        backlog = journal.stats().records,
        "Agent started."
    );

    let mut uplink_config = UplinkConfig::new(
        settings.address.clone(),
        settings.server_name.clone(),
        client,
    );
    uplink_config.labels = settings.labels.clone();
    let uplink = Uplink::new(
        uplink_config,
        Arc::clone(&journal),
        records_rx,
        monitoring_tx,
        Arc::clone(&status),
    );

    // Checks, scrapes, log files and the push endpoint pause with collection: they stop on
    // `paused` (pushed log lines are dropped then, and counted).
    let sources = spawn_sources(&settings, &sink, &mut collectors, &monitoring_rx, &shutdown);

    let stop_uplink = CancellationToken::new();
    let uplink_task = tokio::spawn(uplink.run(stop_uplink.clone()));
    let status_task = tokio::spawn(write_status(
        Arc::clone(&status),
        Arc::clone(&journal),
        shutdown.clone(),
    ));
    collect_loop(
        collectors,
        settings.interval,
        sink,
        monitoring_rx,
        shutdown.clone(),
    )
    .await;

    info!("Shutting down.");
    for source in sources {
        if let Err(error) = source.await {
            error!(%error, "A source task failed.");
        }
    }
    stop_uplink.cancel();
    if let Err(error) = uplink_task.await {
        error!(%error, "Uplink task failed.");
    }
    let _ = status_task.await;
    let _ = monitoring_task.await;
    let stats = journal.stats();
    let last_status = Arc::clone(&status);
    tokio::task::spawn_blocking(move || last_status.write(stats)).await??;
    info!(backlog = stats.records, "Agent stopped.");
    Ok(())
}

/// The monitoring state last written by [`keep_monitoring`]; running when there is none.
async fn read_monitoring(path: &std::path::Path) -> MonitoringState {
    match tokio::fs::read_to_string(path).await {
        Ok(text) if text.trim() == "paused" => MonitoringState::Paused,
        _ => MonitoringState::Running,
    }
}

/// Writes every monitoring state the control plane sets, until shutdown.
async fn keep_monitoring(
    path: std::path::PathBuf,
    mut monitoring: watch::Receiver<MonitoringState>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = monitoring.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
        let state = *monitoring.borrow_and_update();
        let text = match state {
            MonitoringState::Paused => "paused\n",
            MonitoringState::Running => "running\n",
        };
        if let Err(error) = tokio::fs::write(&path, text).await {
            warn!(%error, path = %path.display(), "Cannot keep the monitoring state.");
        }
    }
}

/// Collects at every tick and appends one record to the journal, until shutdown.
async fn collect_loop(
    mut collectors: Vec<Box<dyn Collector>>,
    interval: Duration,
    sink: RecordSink,
    monitoring: watch::Receiver<MonitoringState>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    // After a stall (suspended VM), take one sample now rather than a burst of catch-up samples.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if *monitoring.borrow() == MonitoringState::Paused {
            continue;
        }
        let timestamp_ms = now_ms();
        let sink = sink.clone();
        let tick = tokio::task::spawn_blocking(move || {
            let mut samples = Vec::with_capacity(128);
            let failures = collect::collect_all(&mut collectors, &mut samples);
            let n_samples = samples.len();
            let record = Record::Metrics(MetricRecord {
                timestamp_ms,
                samples,
            });
            let appended = sink.append_blocking(&record);
            (collectors, failures, appended, n_samples)
        });
        let (returned, failures, appended, n_samples) = match tick.await {
            Ok(result) => result,
            Err(error) => {
                // A collector panicked: the collectors went down with the thread.
                error!(%error, "Collection failed; collectors lost, stopping collection.");
                return;
            }
        };
        collectors = returned;
        for (collector, error) in failures {
            warn!(collector, %error, "Collector failed this tick.");
        }
        match appended {
            Ok(appended) => {
                trace!(
                    seq = appended.seq,
                    timestamp_ms, n_samples, "Record journaled."
                );
            }
            Err(error) => error!(%error, "Could not journal this tick's samples."),
        }
    }
}

/// Starts health checks, scrapes, log tailing and the push endpoint; the push aggregator and the
/// log counters join `collectors`. They stop on `shutdown` or while monitoring is paused.
fn spawn_sources(
    settings: &Settings,
    sink: &RecordSink,
    collectors: &mut Vec<Box<dyn Collector>>,
    monitoring: &watch::Receiver<MonitoringState>,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if !settings.checks.is_empty() {
        tasks.push(checks::spawn_all(
            settings.checks.clone(),
            sink.clone(),
            monitoring.clone(),
            shutdown.clone(),
        ));
    }
    if !settings.scrapes.is_empty() {
        tasks.push(scrape::spawn_all(
            settings.scrapes.clone(),
            sink.clone(),
            monitoring.clone(),
            shutdown.clone(),
        ));
    }
    // Pushed log lines go through the same batcher as file lines, so it runs for either.
    let logs = (settings.push.is_some() || !settings.logs.is_empty()).then(|| {
        crate::logs::spawn(
            settings.logs.clone(),
            settings.log_positions_path(),
            settings.max_buffer_bytes,
            sink.clone(),
            monitoring.clone(),
            shutdown.clone(),
        )
    });
    let mut log_sender = None;
    if let Some(logs) = logs {
        collectors.push(Box::new(logs.collector));
        log_sender = Some(logs.sender);
        tasks.push(logs.task);
    }
    if let (Some(push_settings), Some(log_sender)) = (settings.push.clone(), log_sender) {
        let aggregator = Arc::new(std::sync::Mutex::new(push::Aggregator::new(&push_settings)));
        collectors.push(Box::new(push::PushCollector::new(Arc::clone(&aggregator))));
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = push::serve(push_settings, aggregator, log_sender, shutdown).await {
                error!(error = format!("{error:#}"), "Push endpoint stopped.");
            }
        }));
    }
    tasks
}

/// Mirrors the live status to `status.json` every second until shutdown.
async fn write_status(status: Arc<Status>, journal: Arc<dyn Journal>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(STATUS_WRITE_INTERVAL);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let stats = journal.stats();
        let status = Arc::clone(&status);
        match tokio::task::spawn_blocking(move || status.write_if_changed(stats)).await {
            Ok(Ok(())) => warned = false,
            Ok(Err(error)) if !warned => {
                warn!(%error, "Cannot write the status file.");
                warned = true;
            }
            _ => {}
        }
    }
}
