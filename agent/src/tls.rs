//! The agent's TLS material: its certificate and key, and the CA it trusts, turned into a quinn
//! client configuration (via `aisemble_certs`, which owns the rustls settings).

use std::{path::PathBuf, sync::Arc, time::Duration};

use aisemble_shared::{ids::AgentId, wire::ALPN};

/// The three PEM files an agent needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate.
    pub ca: PathBuf,
    /// The agent's certificate.
    pub cert: PathBuf,
    /// The agent's private key.
    pub key: PathBuf,
}

/// The agent name in a certificate file (its common name).
///
/// # Errors
/// A one-line explanation when the file is unreadable or not an agent certificate.
pub fn certificate_name(cert: &std::path::Path) -> Result<AgentId, String> {
    let chain = aisemble_certs::tls::load_certs(cert).map_err(|e| e.to_string())?;
    aisemble_certs::tls::peer_identity(&chain)
        .map(|identity| identity.name)
        .map_err(|e| format!("{}: {e}", cert.display()))
}

/// Builds the QUIC client configuration: mutual TLS 1.3, our ALPN, keep-alives well inside the
/// idle timeout so a quiet but healthy connection is never dropped.
///
/// # Errors
/// When a file is unreadable or the key does not match the certificate.
pub fn client_config(files: &TlsFiles) -> Result<quinn::ClientConfig, aisemble_certs::Error> {
    let ca = aisemble_certs::tls::load_certs(&files.ca)?;
    let chain = aisemble_certs::tls::load_certs(&files.cert)?;
    let key = aisemble_certs::tls::load_key(&files.key)?;
    let ca = ca
        .into_iter()
        .next()
        .ok_or_else(|| aisemble_certs::Error::NoCertificate {
            path: files.ca.clone(),
        })?;
    let tls = aisemble_certs::tls::client_config(&ca, chain, key, ALPN)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|error| aisemble_certs::Error::Tls(rustls::Error::General(error.to_string())))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    // The control plane opens one stream per backup or restore task; a few more than the agent
    // runs at once, so a refusal can still be said in-band.
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(crate::backup::MAX_TASKS as u32 + 2));
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        20_000,
    ))));
    config.transport_config(Arc::new(transport));
    Ok(config)
}
