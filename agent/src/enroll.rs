//! `aisemble-agent enroll`: gets this host a certificate from the control plane with a one-time
//! token, without copying key material around. The key pair is made here and never leaves.
//!
//! ```text
//! connect (ALPN aisemble-enroll/1, no client certificate, server chain recorded, not trusted)
//! Discover { token id } ──► Ca { ca_pem, mac }
//! trust the CA: --ca-fingerprint matches it, or the mac proves the server holds the token
//! check the recorded server chain against that CA and the server name
//! Enroll { token, name, CSR } ──► Issued { cert_pem }      (the token leaves only now)
//! write ca.pem, agent.pem, agent.key (0600), and agent.toml if there is none
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use aisemble_certs::{AgentBundle, enroll as pki};
use aisemble_shared::{
    codec::{self, FrameDecoder},
    config::agent_toml,
    wire::{ENROLL_ALPN, EnrollRequest, EnrollResponse, close_code, enrollment_token_id},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject as _};

use crate::config::split_host_port;

/// The whole exchange must finish in this time.
const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_FRAME: u32 = 64 << 10;
const READ_CHUNK: usize = 64 << 10;

/// What `aisemble-agent enroll` was asked to do.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// The control plane's QUIC address, `HOST:PORT`.
    pub server: String,
    /// The name the server certificate must carry (default: the host part of `server`).
    pub server_name: Option<String>,
    /// The one-time token.
    pub token: String,
    /// SHA-256 of the CA certificate, as `aisemble-cp certs init` prints it.
    pub ca_fingerprint: Option<String>,
    /// The agent name to enroll.
    pub name: String,
    /// Where the files go.
    pub out_dir: PathBuf,
    /// Replace an existing `agent.key`.
    pub force: bool,
}

/// How the CA came to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Its fingerprint is the one given.
    Fingerprint,
    /// The server proved it holds the token.
    TokenProof,
}

/// What enrollment wrote.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The name in the certificate.
    pub name: String,
    /// The three PEM files.
    pub bundle: AgentBundle,
    /// `agent.toml`, and whether it was written now (an existing one is left alone).
    pub config: (PathBuf, bool),
    /// The CA's SHA-256 fingerprint.
    pub ca_fingerprint: String,
    /// How the CA came to be trusted.
    pub trust: Trust,
}

/// Why enrollment failed. Nothing is written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The token does not look like one.
    #[error("--token: not an enrollment token (they look like asbe_<id>.<secret>)")]
    BadToken,
    /// The server address is not `HOST:PORT` or does not resolve.
    #[error("--server {address}: {reason}")]
    Address {
        /// What was given.
        address: String,
        /// Why it is unusable.
        reason: String,
    },
    /// `agent.key` exists and `--force` was not given.
    #[error("{0} exists: this host already has an identity; pass --force to replace it")]
    Exists(PathBuf),
    /// The control plane could not be reached or the connection failed.
    #[error("connecting to {address}: {reason}")]
    Connect {
        /// The address dialled.
        address: String,
        /// What failed.
        reason: String,
    },
    /// The control plane is not the one the operator meant.
    #[error("not trusting the control plane: {0}")]
    Untrusted(String),
    /// The control plane refused.
    #[error("the control plane refused: {0}")]
    Refused(String),
    /// The control plane sent something unexpected.
    #[error("unexpected answer from the control plane: {0}")]
    Protocol(String),
    /// Key generation or writing the files failed.
    #[error(transparent)]
    Files(#[from] aisemble_certs::Error),
    /// Writing `agent.toml` failed.
    #[error("writing {path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Runs the enrollment exchange and writes the files.
///
/// # Errors
/// [`EnrollError`] saying what went wrong; nothing is written then.
pub async fn enroll(options: &EnrollOptions) -> Result<Enrolled, EnrollError> {
    let token_id = enrollment_token_id(&options.token).ok_or(EnrollError::BadToken)?;
    let key_path = options.out_dir.join("agent.key");
    if key_path.exists() && !options.force {
        return Err(EnrollError::Exists(key_path));
    }
    let address_error = |reason: &str| EnrollError::Address {
        address: options.server.clone(),
        reason: reason.to_owned(),
    };
    let host = split_host_port(&options.server).ok_or_else(|| address_error("not HOST:PORT"))?;
    let server_name = options
        .server_name
        .clone()
        .unwrap_or_else(|| host.to_owned());
    let tls_name = ServerName::try_from(server_name.clone())
        .map_err(|_| address_error("not a valid server name"))?;
    let remote = tokio::net::lookup_host(&options.server)
        .await
        .map_err(|e| address_error(&e.to_string()))?
        .next()
        .ok_or_else(|| address_error("no addresses"))?;
    let connect_error = |reason: String| EnrollError::Connect {
        address: remote.to_string(),
        reason,
    };

    let (tls, presented) = pki::enrollment_client_config(ENROLL_ALPN)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| connect_error(e.to_string()))?;
    let bind = match remote {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(|e| connect_error(e.to_string()))?;
    let client = quinn::ClientConfig::new(Arc::new(crypto));
    let exchange = async {
        let connection = endpoint
            .connect_with(client, remote, &server_name)
            .map_err(|e| connect_error(e.to_string()))?
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let result = talk(&connection, options, token_id, &tls_name, &presented).await;
        connection.close(close_code::NORMAL.into(), b"done");
        result
    };
    let result = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(connect_error(format!("no answer within {TIMEOUT:?}"))));
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    let Exchanged {
        ca_pem,
        ca_der,
        trust,
        cert_pem,
        key_pem,
        name,
    } = result?;

    let bundle = pki::write_bundle(&options.out_dir, &ca_pem, &cert_pem, &key_pem)?;
    let config = options.out_dir.join("agent.toml");
    let write_config = !config.exists();
    if write_config {
        let text = agent_toml(
            "`aisemble-agent enroll`",
            &name,
            &options.server,
            options.server_name.as_deref(),
            None,
            None,
        );
        write_new(&config, &text).map_err(|source| EnrollError::Config {
            path: config.clone(),
            source,
        })?;
    }
    Ok(Enrolled {
        name,
        bundle,
        config: (config, write_config),
        ca_fingerprint: pki::fingerprint(&ca_der),
        trust,
    })
}

/// What the exchange produced, before anything is written.
struct Exchanged {
    ca_pem: String,
    ca_der: Vec<u8>,
    trust: Trust,
    cert_pem: String,
    key_pem: String,
    name: String,
}

async fn talk(
    connection: &quinn::Connection,
    options: &EnrollOptions,
    token_id: &str,
    server_name: &ServerName<'static>,
    presented: &pki::PresentedChain,
) -> Result<Exchanged, EnrollError> {
    let connect_error = |reason: String| EnrollError::Connect {
        address: options.server.clone(),
        reason,
    };
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let mut decoder = FrameDecoder::new(MAX_FRAME);

    write(
        &mut send,
        &EnrollRequest::Discover {
            token_id: token_id.to_owned(),
        },
    )
    .await?;
    let (ca_pem, mac) = match read(&mut recv, &mut decoder).await? {
        EnrollResponse::Ca { ca_pem, mac } => (ca_pem, mac),
        EnrollResponse::Refused { reason } => return Err(EnrollError::Refused(reason)),
        other => return Err(EnrollError::Protocol(format!("{other:?}"))),
    };
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| EnrollError::Protocol(format!("the CA is not a PEM certificate: {e}")))?;
    let trust = match &options.ca_fingerprint {
        Some(given) if pki::fingerprint_matches(given, &ca) => Trust::Fingerprint,
        Some(_) => {
            return Err(EnrollError::Untrusted(format!(
                "its CA has fingerprint {}, not the one given with --ca-fingerprint",
                pki::fingerprint(&ca)
            )));
        }
        None if pki::verify_ca_proof(&pki::token_key(&options.token), &ca, &mac) => {
            Trust::TokenProof
        }
        None => {
            return Err(EnrollError::Untrusted(
                "it could not prove that it holds the token (is the address right?)".to_owned(),
            ));
        }
    };
    let chain = presented
        .get()
        .ok_or_else(|| EnrollError::Untrusted("it presented no certificate".to_owned()))?;
    pki::verify_presented(&ca, &chain, server_name, UnixTime::now()).map_err(|e| {
        EnrollError::Untrusted(format!(
            "its TLS certificate does not verify against its CA for {server_name:?}: {e}"
        ))
    })?;

    let (key_pem, csr_pem) = pki::agent_csr(&options.name)?;
    write(
        &mut send,
        &EnrollRequest::Enroll {
            token: options.token.clone(),
            name: options.name.clone(),
            csr_pem,
        },
    )
    .await?;
    let _ = send.finish();
    let (cert_pem, name) = match read(&mut recv, &mut decoder).await? {
        EnrollResponse::Issued { cert_pem, name } => (cert_pem, name),
        EnrollResponse::Refused { reason } => return Err(EnrollError::Refused(reason)),
        other => return Err(EnrollError::Protocol(format!("{other:?}"))),
    };
    // What came back must be a certificate for our name, from the CA we just trusted.
    let issued = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| EnrollError::Protocol(format!("the certificate is not PEM: {e}")))?;
    let identity = aisemble_certs::tls::peer_identity(std::slice::from_ref(&issued))
        .map_err(|e| EnrollError::Protocol(e.to_string()))?;
    if identity.name.as_str() != options.name || name != options.name {
        return Err(EnrollError::Protocol(format!(
            "a certificate for {:?}, not {:?}",
            identity.name.as_str(),
            options.name
        )));
    }
    Ok(Exchanged {
        ca_pem,
        ca_der: ca.to_vec(),
        trust,
        cert_pem,
        key_pem,
        name,
    })
}

async fn write(send: &mut quinn::SendStream, request: &EnrollRequest) -> Result<(), EnrollError> {
    let frame = codec::encode_frame(request, MAX_FRAME)
        .map_err(|e| EnrollError::Protocol(e.to_string()))?;
    send.write_all(&frame)
        .await
        .map_err(|e| EnrollError::Protocol(format!("sending: {e}")))
}

async fn read(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<EnrollResponse, EnrollError> {
    let protocol = |reason: String| EnrollError::Protocol(reason);
    loop {
        if let Some(body) = decoder.next_frame().map_err(|e| protocol(e.to_string()))? {
            return codec::decode_frame(&body).map_err(|e| protocol(e.to_string()));
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => decoder.push(&chunk.bytes),
            Ok(None) => return Err(protocol("the control plane closed the stream".to_owned())),
            Err(error) => return Err(protocol(format!("reading: {error}"))),
        }
    }
}

/// Writes a new file (never replacing one) with mode 0644.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
