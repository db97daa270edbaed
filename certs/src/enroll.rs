//! The cryptography of enrollment (`aisemble-agent enroll`): the agent's key pair and CSR, the
//! proof that a server holds the agent's token, and the TLS client that talks to a control plane
//! whose CA the agent does not have yet.
//!
//! The agent connects trusting nothing, only recording the chain the server presents. Before it
//! sends its token it decides whether to trust the CA the server then sends: either its SHA-256
//! equals the fingerprint the operator gave, or the server proved it knows the token by an
//! HMAC over the CA keyed with the token's SHA-256 (which the control plane stores; the token
//! itself never travelled). Then the recorded chain must verify against that CA for the server
//! name dialled; only then does the token leave the host.

use std::{
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use hmac::{Hmac, Mac as _};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls12_signature, verify_tls13_signature},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};

use crate::{AgentBundle, Error, files, tls};

type HmacSha256 = Hmac<Sha256>;

/// The key of the CA proof: SHA-256 of the whole token (what the control plane stores).
pub fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// HMAC-SHA256 of the CA certificate (DER) under `key` ([`token_key`]).
pub fn ca_proof(key: &[u8; 32], ca_der: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; were it to refuse one, an empty proof never verifies.
    let Ok(mut mac) = <HmacSha256 as hmac::Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(ca_der);
    mac.finalize().into_bytes().to_vec()
}

/// Whether `proof` is [`ca_proof`] of `ca_der` under `key`, compared in constant time.
pub fn verify_ca_proof(key: &[u8; 32], ca_der: &[u8], proof: &[u8]) -> bool {
    let Ok(mut mac) = <HmacSha256 as hmac::Mac>::new_from_slice(key) else {
        return false;
    };
    mac.update(ca_der);
    mac.verify_slice(proof).is_ok()
}

/// SHA-256 of a certificate's DER, lowercase hex: the form `certs init` prints and
/// `--ca-fingerprint` takes (colons and case are ignored by [`fingerprint_matches`]).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Whether `given` (hex, any case, colons allowed) is the SHA-256 fingerprint of `der`.
pub fn fingerprint_matches(given: &str, der: &[u8]) -> bool {
    let normalized: String = given
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    normalized == fingerprint(der)
}

/// A fresh key pair and a CSR for the agent `name`: (key PEM, CSR PEM).
///
/// # Errors
/// When key generation or signing the request fails.
pub fn agent_csr(name: &str) -> Result<(String, String), Error> {
    let key = KeyPair::generate().map_err(|source| Error::Generate {
        what: "agent key",
        source,
    })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|source| Error::Generate {
            what: "certificate signing request",
            source,
        })?;
    Ok((key.serialize_pem(), csr))
}

/// Writes what enrollment produced into `out_dir` (created with mode 0700 if needed): `ca.pem`,
/// `agent.pem` and `agent.key` (mode 0600), each replaced atomically, key first.
///
/// # Errors
/// On I/O errors; the error names the file.
pub fn write_bundle(
    out_dir: &Path,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<AgentBundle, Error> {
    files::create_private_dir(out_dir)?;
    let bundle = AgentBundle {
        ca: out_dir.join("ca.pem"),
        cert: out_dir.join("agent.pem"),
        key: out_dir.join("agent.key"),
    };
    files::write_atomic(&bundle.key, key_pem.as_bytes(), files::PRIVATE)?;
    files::write_atomic(&bundle.cert, cert_pem.as_bytes(), files::PUBLIC)?;
    files::write_atomic(&bundle.ca, ca_pem.as_bytes(), files::PUBLIC)?;
    Ok(bundle)
}

/// The chain a server presented during an enrollment handshake, leaf first.
#[derive(Debug, Clone, Default)]
pub struct PresentedChain(Arc<Mutex<Option<Vec<CertificateDer<'static>>>>>);

impl PresentedChain {
    /// What was recorded (nothing before the handshake).
    pub fn get(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The TLS configuration of `aisemble-agent enroll`: TLS 1.3, no client certificate, `alpn`,
/// accepting whatever chain the server presents (the handshake signature is still checked with
/// the presented key) and recording it for [`verify_presented`].
///
/// # Errors
/// When rustls refuses the protocol versions (never with the built-in provider).
pub fn enrollment_client_config(alpn: &[u8]) -> Result<(ClientConfig, PresentedChain), Error> {
    let presented = PresentedChain::default();
    let verifier = Arc::new(RecordingVerifier {
        presented: presented.clone(),
        provider: tls::provider(),
    });
    let mut config = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config.enable_early_data = false;
    config.resumption = rustls::client::Resumption::disabled();
    Ok((config, presented))
}

/// Verifies the recorded `chain` against `ca` for `server_name`, as the telemetry connection
/// will (webpki, ServerAuth, validity now).
///
/// # Errors
/// [`Error::Tls`] naming what is wrong when the chain does not verify.
pub fn verify_presented(
    ca: &CertificateDer<'static>,
    chain: &[CertificateDer<'static>],
    server_name: &ServerName<'static>,
    now: UnixTime,
) -> Result<(), Error> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or(Error::Tls(rustls::Error::NoCertificatesPresented))?;
    tls::server_verifier(ca)?.verify_server_cert(leaf, intermediates, server_name, &[], now)?;
    Ok(())
}

/// Accepts any server chain and records it; checks the handshake signature against the
/// presented leaf so the session is bound to the key that chain certifies.
#[derive(Debug)]
struct RecordingVerifier {
    presented: PresentedChain,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self
            .presented
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(chain);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
