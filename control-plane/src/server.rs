//! Wires the control plane together: PKI, tokens, store, registry, the QUIC ingest server and
//! the HTTP API; and stops them in order. `serve`, `quickstart` and the tests all start it here.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock, atomic::AtomicU64},
    time::{Duration, Instant},
};

use aisemble_certs::Pki;
use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::{
    alerts::{engine::Alerting, manager::RuleManager, persist::AlertStore},
    api::{self, AppState},
    auth::{Auth, Role},
    backup::Backups,
    config::{HttpTls, Settings},
    enroll::EnrollmentTokens,
    ingest::{self, IngestContext},
    read_pool::ReadPool,
    registry::Registry,
    store::{Store, StoreOptions},
    telemetry::Telemetry,
    usage::MonthUsage,
};

/// Log and audit reads at once (`read_pool`): two keep a search answering during an export
/// while leaving ingest its share of a small host's cores.
const READER_THREADS: usize = 2;

/// How often changed agent records are written.
const REGISTRY_PERSIST: Duration = Duration::from_secs(5);

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    /// Bound HTTP address.
    pub http: SocketAddr,
    /// `http` or `https`.
    pub http_scheme: &'static str,
    /// Bound QUIC address.
    pub quic: SocketAddr,
    /// The admin token created on first start (shown once).
    pub first_admin_token: Option<String>,
    /// Handlers' state (store, registry, PKI, tokens).
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Opens the PKI in `<data_dir>/pki`, creating the CA and server certificate on first use.
///
/// # Errors
/// When the directory cannot be created or the files are damaged.
pub fn open_pki(settings: &Settings) -> anyhow::Result<(Pki, bool)> {
    let dir = settings.data_dir.join("pki");
    Pki::open_or_init(&dir, &settings.server_names)
        .with_context(|| format!("opening the PKI in {}", dir.display()))
}

impl ControlPlane {
    /// Starts everything; returns once both listeners are bound.
    ///
    /// # Errors
    /// When the data directory, PKI, store or a listen address is unusable.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        let started = Instant::now();
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "creating the data directory {}",
                settings.data_dir.display()
            )
        })?;
        let blocking_settings = settings.clone();
        let (pki, auth, first_admin_token, store) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let (pki, created) = open_pki(&blocking_settings)?;
            if created {
                info!(fingerprint = %pki.ca_fingerprint_sha256(), "Created the certificate authority.");
            }
            let auth = Auth::open(&blocking_settings.data_dir).context("opening the token file")?;
            let first_admin_token = if auth.is_empty() {
                let (_, token) = auth.create(Role::Admin, "admin").context("creating the admin token")?;
                Some(token)
            } else {
                None
            };
            let options = StoreOptions {
                retention: blocking_settings.retention,
                checkpoint_interval: blocking_settings.checkpoint_interval,
                checkpoint_wal_bytes: StoreOptions::default().checkpoint_wal_bytes,
                cache_capacity: blocking_settings.cache_bytes,
                log_retention: blocking_settings.log_retention,
            };
            let store_dir = blocking_settings.data_dir.join("store");
            let store = Store::open(&store_dir, options).with_context(|| format!("opening the store in {}", store_dir.display()))?;
            Ok((pki, auth, first_admin_token, store))
        })
        .await??;
        let registry = Arc::new(
            Registry::open(store.open_tree("agents")?).context("loading the agent registry")?,
        );
        let revocations = Arc::new(RwLock::new(pki.revocation_list()?));
        let telemetry = Telemetry::new();
        let pki = Arc::new(pki);
        let ingest = Arc::new(IngestContext {
            store: store.clone(),
            registry: Arc::clone(&registry),
            telemetry: telemetry.clone(),
            max_frame_bytes: settings.max_frame_bytes,
            revocations: Arc::clone(&revocations),
            pki: Arc::clone(&pki),
            enrollment: EnrollmentTokens::new(&settings.data_dir),
            enrollment_slots: Arc::new(tokio::sync::Semaphore::new(ingest::ENROLLMENT_SLOTS)),
            enrollment_rate: api::RateLimits::new(
                ingest::ENROLLMENT_RATE.0,
                ingest::ENROLLMENT_RATE.1,
            ),
        });

        let endpoint = ingest::bind(settings.quic, ingest::server_config(&pki, revocations)?)
            .with_context(|| format!("binding QUIC on {}", settings.quic))?;
        let quic = endpoint.local_addr()?;
        let listener = tokio::net::TcpListener::bind(settings.http)
            .await
            .with_context(|| format!("binding HTTP on {}", settings.http))?;
        let http = listener.local_addr()?;

        let alert_store = AlertStore::open(&store).context("opening the alert state")?;
        let mut alerting_settings = settings.alerting.clone();
        alerting_settings.external_url.get_or_insert_with(|| {
            let scheme = if settings.http_tls == HttpTls::Off {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{http}")
        });
        let month_usage = MonthUsage::default();
        let manager = {
            let (store, month_usage, registry, settings) = (
                store.clone(),
                month_usage.clone(),
                Arc::clone(&registry),
                alerting_settings.clone(),
            );
            tokio::task::spawn_blocking(move || {
                RuleManager::open(store, month_usage, registry, settings, alert_store)
            })
            .await?
            .context("opening the alert rules")?
        };
        let (alerting, alerting_tasks) = {
            let (settings, registry) = (alerting_settings, telemetry.registry().clone());
            tokio::task::spawn_blocking(move || Alerting::open(manager, &settings, &registry))
                .await?
                .context("loading the alert routing")?
        };
        let backups = {
            let (data_dir, repository, registry, store) = (
                settings.data_dir.clone(),
                settings.backup_repository.clone(),
                Arc::clone(&registry),
                store.clone(),
            );
            tokio::task::spawn_blocking(move || {
                Backups::open(&data_dir, &repository, registry, store)
            })
            .await?
            .with_context(|| {
                format!(
                    "opening the backup repository {}",
                    settings.backup_repository.display()
                )
            })?
        };
        let state = AppState {
            store: store.clone(),
            registry: Arc::clone(&registry),
            telemetry,
            auth: Arc::new(auth),
            pki: Arc::clone(&pki),
            ingest: Arc::clone(&ingest),
            metrics_require_token: settings.metrics_require_token,
            limits: Arc::new(api::RateLimits::new(
                settings.rate_limit_per_second,
                settings.rate_limit_burst,
            )),
            started,
            command_ids: Arc::new(AtomicU64::new(0)),
            alerting,
            status_cache: Arc::default(),
            month_usage,
            public_address: Arc::from(settings.public_address.as_str()),
            backups: backups.clone(),
            readers: ReadPool::start(READER_THREADS).context("starting the reader threads")?,
        };
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(ingest::serve(
            endpoint,
            Arc::clone(&pki),
            ingest,
            shutdown.clone(),
        )));
        let router = api::router(state.clone());
        let http_shutdown = shutdown.clone();
        let tls = match &settings.http_tls {
            HttpTls::Off => None,
            HttpTls::OwnCertificate => Some((pki.server_chain().to_vec(), pki.server_key())),
            HttpTls::Files { cert, key } => Some((
                aisemble_certs::tls::load_certs(cert)
                    .with_context(|| format!("reading http.tls_cert {}", cert.display()))?,
                aisemble_certs::tls::load_key(key)
                    .with_context(|| format!("reading http.tls_key {}", key.display()))?,
            )),
        };
        let http_scheme = if tls.is_some() { "https" } else { "http" };
        match tls {
            None => tasks.push(tokio::spawn(async move {
                let server = axum::serve(listener, router)
                    .with_graceful_shutdown(http_shutdown.cancelled_owned());
                if let Err(error) = server.await {
                    error!(%error, "HTTP server failed.");
                }
            })),
            Some((chain, key)) => {
                let config = api::tls::server_config(chain, key)
                    .context("configuring TLS for the HTTP API")?;
                let listener = api::tls::TlsListener::new(listener, config)?;
                tasks.push(tokio::spawn(async move {
                    let server = axum::serve(listener, router)
                        .with_graceful_shutdown(http_shutdown.cancelled_owned());
                    if let Err(error) = server.await {
                        error!(%error, "HTTPS server failed.");
                    }
                }));
            }
        }
        tasks.push(tokio::spawn(alerting_tasks.run(shutdown.clone())));
        tasks.push(tokio::spawn(backups.run_scheduler(shutdown.clone())));
        tasks.push(tokio::spawn(persist_registry(
            Arc::clone(&registry),
            shutdown.clone(),
        )));
        info!(%http, http_scheme, %quic, data_dir = %settings.data_dir.display(), "Control plane started.");
        Ok(Self {
            http,
            http_scheme,
            quic,
            first_admin_token,
            state,
            shutdown,
            tasks,
        })
    }

    /// A token that cancels when the control plane stops.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, closes agent sessions, finishes HTTP requests, writes a final checkpoint.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let registry = Arc::clone(&self.state.registry);
        let store = self.state.store.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = registry.persist();
            store.shutdown();
        })
        .await;
        info!("Control plane stopped.");
    }
}

async fn persist_registry(registry: Arc<Registry>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(REGISTRY_PERSIST);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let registry = Arc::clone(&registry);
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || registry.persist()).await {
            error!(%error, "Cannot persist agent records; retrying.");
        }
    }
}
