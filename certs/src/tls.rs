//! The rustls configurations both ends use, the peer identity of a verified connection and PEM
//! file helpers.
//!
//! Both configurations are TLS 1.3 only, trust only the control plane's CA (never the platform
//! store), verify client certificates (required, or optional on the control plane so that an
//! agent can enroll) and have 0-RTT off. The crypto provider is ring, passed
//! explicitly: the process-wide default provider is never consulted, so it does not matter which
//! providers other crates enable.
//!
//! Verification failures keep rustls' own [`CertificateError`] variants, which rustls maps to
//! TLS alerts: an unknown issuer sends `unknown_ca`, an expired certificate
//! `certificate_expired`, a revoked one `certificate_revoked`.

use std::{
    fmt,
    path::Path,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, SystemTime},
};

use aisemble_shared::ids::AgentId;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
    client::WebPkiServerVerifier,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};
use x509_parser::extensions::GeneralName;

use crate::{Error, RevocationList, pki::AGENT_URI_PREFIX};

/// Answers whether a certificate serial number is revoked; consulted by the server on every
/// client handshake.
///
/// Implemented for [`RevocationList`] (fixed) and `RwLock<RevocationList>` (replace the list to
/// update a running server).
pub trait RevocationCheck: Send + Sync + fmt::Debug {
    /// Whether the certificate with this serial number (big-endian bytes) is revoked.
    fn is_revoked(&self, serial: &[u8]) -> bool;
}

/// Who is on the other end of a verified connection, read from its leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The agent name: the certificate's common name.
    pub name: AgentId,
    /// The certificate's serial number, big-endian, without leading zero bytes.
    pub serial: Vec<u8>,
    /// End of the certificate's validity.
    pub not_after: SystemTime,
}

/// Whether a client may complete the handshake without a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client presents a certificate issued by the CA.
    Required,
    /// A client without a certificate completes the handshake (to enroll); the application must
    /// then refuse it everything else. A certificate that is presented is verified as with
    /// `Required` (unknown CA, expired, revoked are still refused at the handshake).
    Optional,
}

/// The control plane's TLS configuration: serve `chain`/`key`, verify client certificates
/// against `ca` and `revocations` (required or not, per `client_auth`), and speak only `alpns`.
///
/// # Errors
/// When the CA certificate is unusable as a trust anchor or `key` does not match `chain`.
pub fn server_config(
    ca: &CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    revocations: Arc<dyn RevocationCheck>,
    client_auth: ClientAuth,
    alpns: &[&[u8]],
) -> Result<ServerConfig, Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_verifier(ca, revocations, client_auth)?)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpns.iter().map(|alpn| alpn.to_vec()).collect();
    config.max_early_data_size = 0;
    // A resumed TLS 1.3 session skips client certificate verification, so a revoked agent could
    // resume its way back in: every handshake is a full one.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// An agent's TLS configuration: trust only `ca`, authenticate with `chain`/`key`, speak only
/// `alpn`.
///
/// # Errors
/// When the CA certificate is unusable as a trust anchor or `key` does not match `chain`.
pub fn client_config(
    ca: &CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<ClientConfig, Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(server_verifier(ca)?)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    config.enable_early_data = false;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// The identity in a verified peer's certificate chain (leaf first), as rustls and quinn report
/// it.
///
/// # Errors
/// When the chain is empty, the leaf cannot be parsed, its common name is not a valid agent name,
/// or it carries an agent URI for another name.
pub fn peer_identity(chain: &[CertificateDer<'_>]) -> Result<PeerIdentity, Error> {
    let bad = |reason: String| Error::PeerCertificate { reason };
    let leaf = chain
        .first()
        .ok_or_else(|| bad("no certificate".to_owned()))?;
    let (_, x509) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| bad(format!("cannot parse: {e}")))?;
    let common_name = x509
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| bad("no common name".to_owned()))?;
    let name = AgentId::parse(common_name).map_err(|e| bad(e.to_string()))?;
    let sans = x509
        .subject_alternative_name()
        .map_err(|e| bad(format!("bad SAN: {e}")))?;
    for general_name in sans.iter().flat_map(|san| &san.value.general_names) {
        if let GeneralName::URI(uri) = general_name
            && let Some(uri_name) = uri.strip_prefix(AGENT_URI_PREFIX)
            && uri_name != name.as_str()
        {
            return Err(bad(format!(
                "common name {:?} but URI {uri:?}",
                name.as_str()
            )));
        }
    }
    let not_after = x509.validity().not_after.timestamp();
    let not_after = match u64::try_from(not_after) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH,
    };
    Ok(PeerIdentity {
        name,
        serial: crate::index::normalize_serial(x509.raw_serial()).to_vec(),
        not_after,
    })
}

/// Reads every certificate in a PEM file, in order.
///
/// # Errors
/// When the file cannot be read, is not PEM or holds no certificate; the error names the file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem_error = |source| Error::Pem {
        path: path.to_owned(),
        what: "certificate",
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
///
/// # Errors
/// When the file cannot be read or holds no private key; the error names the file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| Error::Pem {
        path: path.to_owned(),
        what: "private key",
        source,
    })
}

impl RevocationCheck for RevocationList {
    fn is_revoked(&self, serial: &[u8]) -> bool {
        RevocationList::is_revoked(self, serial)
    }
}

impl RevocationCheck for RwLock<RevocationList> {
    fn is_revoked(&self, serial: &[u8]) -> bool {
        // A writer that panicked cannot leave the list half-replaced: assignment is atomic.
        self.read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_revoked(serial)
    }
}

/// The one crypto provider of this project.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The verifier [`server_config`] uses: webpki against `ca` only, then the revocation check.
pub(crate) fn client_verifier(
    ca: &CertificateDer<'static>,
    revocations: Arc<dyn RevocationCheck>,
    client_auth: ClientAuth,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let builder = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider());
    let webpki = match client_auth {
        ClientAuth::Required => builder.build()?,
        ClientAuth::Optional => builder.allow_unauthenticated().build()?,
    };
    Ok(Arc::new(RevocationAwareVerifier {
        webpki,
        revocations,
    }))
}

/// The verifier [`client_config`] uses: webpki against `ca` only.
pub(crate) fn server_verifier(
    ca: &CertificateDer<'static>,
) -> Result<Arc<WebPkiServerVerifier>, Error> {
    Ok(WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider()).build()?)
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    Ok(Arc::new(roots))
}

/// Runs the webpki client verifier, then refuses revoked leaf certificates.
#[derive(Debug)]
struct RevocationAwareVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    revocations: Arc<dyn RevocationCheck>,
}

impl ClientCertVerifier for RevocationAwareVerifier {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Errors pass through unchanged so that rustls picks the matching alert.
        let verified = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        let (_, leaf) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| CertificateError::BadEncoding)?;
        if self.revocations.is_revoked(leaf.raw_serial()) {
            return Err(CertificateError::Revoked.into());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.webpki.requires_raw_public_keys()
    }
}
