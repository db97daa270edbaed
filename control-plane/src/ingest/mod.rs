//! The QUIC ingest server: accepts agents' mutual-TLS connections (client certificates required
//! and verified against our CA, revocation checked at handshake and for live connections) and
//! runs one [`session`] per connection.
//!
//! The same endpoint also accepts enrollment connections (ALPN `aisemble-enroll/1`), which is
//! why the TLS layer lets a client without a certificate finish the handshake: such a client
//! gets [`enroll`] and nothing else; on the telemetry ALPN it is refused at once, counted and
//! logged like a handshake refusal.
//!
//! Refused handshakes are classified from the TLS alert the server sent (no certificate, unknown
//! CA, expired, revoked, ...), logged with the peer's address, and counted in
//! `aisemble_ingest_rejected_total{reason}`. Nothing a peer sends can stop the accept loop.

mod enroll;
pub mod session;

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use aisemble_certs::{Pki, RevocationList, tls::ClientAuth};
use aisemble_shared::wire::{ALPN, ENROLL_ALPN, close_code};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument as _, info, info_span, warn};

use crate::{
    enroll::EnrollmentTokens,
    registry::Registry,
    store::Store,
    telemetry::{Telemetry, reject},
};

/// What every session needs.
#[derive(Debug)]
pub struct IngestContext {
    /// Where batches go.
    pub store: Store,
    /// Agents.
    pub registry: Arc<Registry>,
    /// Own metrics.
    pub telemetry: Telemetry,
    /// Largest frame accepted.
    pub max_frame_bytes: u32,
    /// Revoked certificate serials, shared with the TLS verifier.
    pub revocations: Arc<RwLock<RevocationList>>,
    /// The CA, which signs enrolling agents' CSRs.
    pub pki: Arc<Pki>,
    /// Enrollment tokens.
    pub enrollment: EnrollmentTokens,
    /// Enrollment connections served at once; more are closed at once, so that clients without
    /// a certificate cannot hold many tasks (each may take up to 20 s).
    pub enrollment_slots: Arc<tokio::sync::Semaphore>,
    /// Enrollment connections accepted per second (all clients together), so that clients
    /// without a certificate cannot flood the audit log or the blocking pool.
    pub enrollment_rate: crate::api::RateLimits,
}

/// Enrollment connections served at once.
pub const ENROLLMENT_SLOTS: usize = 32;
/// Enrollment connections accepted per second, and in a burst.
pub const ENROLLMENT_RATE: (u32, u32) = (20, 100);

/// How often the revocation index is checked for changes (`certs revoke` from the CLI).
const REVOCATION_POLL: Duration = Duration::from_millis(500);

/// Builds the QUIC server configuration for `pki`.
///
/// # Errors
/// When the PKI material is unusable.
pub fn server_config(
    pki: &Pki,
    revocations: Arc<RwLock<RevocationList>>,
) -> anyhow::Result<quinn::ServerConfig> {
    let tls = aisemble_certs::tls::server_config(
        pki.ca_der(),
        pki.server_chain().to_vec(),
        pki.server_key(),
        revocations,
        ClientAuth::Optional,
        &[ALPN, ENROLL_ALPN],
    )?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
            30_000,
        ))))
        .max_concurrent_bidi_streams(2u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((2u32 << 20).into())
        .receive_window((4u32 << 20).into())
        .send_window(1 << 20);
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Binds the QUIC endpoint, with a large UDP receive buffer so bursts from many agents are not
/// dropped by the kernel.
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(address: SocketAddr, config: quinn::ServerConfig) -> anyhow::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(address)?;
    let socket2 = socket2::SockRef::from(&socket);
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket2.set_recv_buffer_size(16 << 20);
    let _ = socket2.set_send_buffer_size(4 << 20);
    let runtime =
        quinn::default_runtime().ok_or_else(|| anyhow::anyhow!("no async runtime for QUIC"))?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        runtime,
    )?)
}

/// Accepts connections until `shutdown`, then closes every session and waits for them.
///
/// # Cancel safety
/// Stop it with `shutdown`; sessions are tracked and awaited.
pub async fn serve(
    endpoint: quinn::Endpoint,
    pki: Arc<Pki>,
    context: Arc<IngestContext>,
    shutdown: CancellationToken,
) {
    let tasks = TaskTracker::new();
    tasks.spawn(watch_revocations(
        pki,
        Arc::clone(&context),
        shutdown.clone(),
    ));
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shutdown.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        let context = Arc::clone(&context);
        let remote = incoming.remote_address();
        let span = info_span!("agent", %remote, agent = tracing::field::Empty);
        tasks.spawn(handle(incoming, context).instrument(span));
    }
    for session in context.registry.live_sessions() {
        session.connection.close(
            close_code::SHUTTING_DOWN.into(),
            b"control plane shutting down",
        );
    }
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        warn!("Sessions did not finish within 5s of shutdown.");
    }
    endpoint.close(
        close_code::SHUTTING_DOWN.into(),
        b"control plane shutting down",
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

async fn handle(incoming: quinn::Incoming, context: Arc<IngestContext>) {
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            let reason = classify(&error);
            context.telemetry.reject(reason);
            warn!(reason, %error, "Refused a connection at the handshake.");
            return;
        }
    };
    let enrolling = connection
        .handshake_data()
        .and_then(|any| any.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
        .is_some_and(|alpn| alpn == ENROLL_ALPN);
    if enrolling {
        let slot = context
            .enrollment_rate
            .check("enrollment")
            .ok()
            .and_then(|()| {
                Arc::clone(&context.enrollment_slots)
                    .try_acquire_owned()
                    .ok()
            });
        match slot {
            Some(_slot) => enroll::run(connection, context).await,
            None => {
                context
                    .telemetry
                    .enrollments
                    .with_label_values(&["busy"])
                    .inc();
                warn!("Too many enrollments; refused one.");
                connection.close(close_code::SHUTTING_DOWN.into(), b"busy, retry later");
            }
        }
        return;
    }
    let chain = connection.peer_identity().and_then(|any| {
        any.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
            .ok()
    });
    let identity = match chain.map(|c| aisemble_certs::tls::peer_identity(&c)) {
        Some(Ok(identity)) => identity,
        Some(Err(error)) => {
            context.telemetry.reject(reject::BAD_CERTIFICATE);
            warn!(%error, "Refused a certificate without a usable agent identity.");
            connection.close(
                close_code::PROTOCOL_VIOLATION.into(),
                b"certificate has no agent identity",
            );
            return;
        }
        None => {
            let reason = reject::NO_CLIENT_CERTIFICATE;
            context.telemetry.reject(reason);
            warn!(reason, "Refused a connection at the handshake.");
            connection.close(
                close_code::PROTOCOL_VIOLATION.into(),
                b"no client certificate",
            );
            return;
        }
    };
    tracing::Span::current().record("agent", identity.name.as_str());
    // The verifier already refused revoked certificates; this closes the window between a
    // handshake and a revocation that lands during it.
    let revoked = context
        .revocations
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .is_revoked(&identity.serial);
    if revoked {
        context.telemetry.reject(reject::REVOKED);
        warn!("Refused a revoked certificate after the handshake.");
        connection.close(close_code::REVOKED.into(), b"certificate revoked");
        return;
    }
    session::run(connection, identity, context).await;
}

/// The rejection reason of a failed handshake, from the TLS alert carried in the QUIC error.
fn classify(error: &quinn::ConnectionError) -> &'static str {
    const CRYPTO: u64 = 0x100;
    match error {
        quinn::ConnectionError::TransportError(transport) => match u64::from(transport.code) {
            code if code == CRYPTO + 116 => reject::NO_CLIENT_CERTIFICATE,
            code if code == CRYPTO + 48 => reject::UNKNOWN_CA,
            code if code == CRYPTO + 45 => reject::EXPIRED,
            code if code == CRYPTO + 44 => reject::REVOKED,
            code if code == CRYPTO + 120 => reject::ALPN,
            code if (CRYPTO + 42..=CRYPTO + 51).contains(&code) => reject::BAD_CERTIFICATE,
            _ => reject::HANDSHAKE,
        },
        _ => reject::HANDSHAKE,
    }
}

/// Reloads the revocation list when the index changes, and disconnects revoked live sessions.
async fn watch_revocations(
    pki: Arc<Pki>,
    context: Arc<IngestContext>,
    shutdown: CancellationToken,
) {
    let mut seen: Option<SystemTime> = pki.index_modified();
    let mut ticker = tokio::time::interval(REVOCATION_POLL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let modified = pki.index_modified();
        if modified == seen {
            continue;
        }
        seen = modified;
        let pki_for_read = Arc::clone(&pki);
        let list = match tokio::task::spawn_blocking(move || pki_for_read.revocation_list()).await {
            Ok(Ok(list)) => list,
            Ok(Err(error)) => {
                warn!(%error, "Cannot reload the revocation list; keeping the previous one.");
                continue;
            }
            Err(_) => continue,
        };
        apply_revocations(&context, list);
    }
}

/// Installs a revocation list and closes live sessions it revokes.
pub fn apply_revocations(context: &IngestContext, list: RevocationList) {
    *context
        .revocations
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = list.clone();
    for (name, session) in context
        .registry
        .sessions_matching(|serial| list.is_revoked(serial))
    {
        info!(agent = %name, "Certificate revoked; disconnecting the agent.");
        context.telemetry.reject(reject::REVOKED);
        session
            .connection
            .close(close_code::REVOKED.into(), b"certificate revoked");
    }
}
