//! The control plane's PKI directory: the CA, the server certificate, agent certificates (issued
//! here with a fresh key, or signed from an agent's CSR) and the index of what was issued.
//!
//! Layout of the directory (mode 0700 when created here):
//!
//! | file | content | mode |
//! | --- | --- | --- |
//! | `ca.pem`, `ca.key` | self-signed CA, ECDSA P-256, 10 years, path length 0, unique name | 0644, 0600 |
//! | `server.pem`, `server.key` | server certificate (ServerAuth) for the QUIC endpoint, 825 days | 0644, 0600 |
//! | `issued.json` | index of agent certificates and their revocation, see the `index` module | 0644 |
//! | `pki.lock` | advisory lock serializing writers (CLI and running server) | 0600 |
//!
//! Invariants: the CA is created once and never replaced here; the server certificate is
//! derived material and is re-issued whenever it is missing, unreadable, not issued by this CA,
//! close to expiry or lacking a requested name; every certificate gets a random 16-byte serial
//! and explicit validity dates.

use std::{
    collections::BTreeSet,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use aisemble_shared::ids::AgentId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber, string::Ia5String,
};
use rustls::{client::danger::ServerCertVerifier, pki_types::ServerName as TlsServerName};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime, pem::PemObject,
};

use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName};

use crate::{
    Error, RevocationList,
    files::{self, DirLock},
    index::{self, IssuedEntry, Record},
    tls,
};

/// The control plane's PKI directory, loaded: the CA (able to sign) and the server certificate.
///
/// All methods take `&self`; writers to the directory (index updates) serialize through a file
/// lock, so several `Pki` values, in this process or another, may share one directory.
pub struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

/// Validity period of a certificate, at one-second resolution as X.509 stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// An agent certificate issued with a fresh key pair, as handed to an operator.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedAgent {
    /// The agent name: the certificate's common name.
    pub name: AgentId,
    /// Serial number, lowercase hex without leading zero bytes (as in `issued.json`).
    pub serial_hex: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM. Not shown by `Debug`.
    pub key_pem: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

/// An agent certificate signed from the agent's own certificate signing request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAgent {
    /// The agent name: the certificate's common name.
    pub name: AgentId,
    /// Serial number, lowercase hex without leading zero bytes (as in `issued.json`).
    pub serial_hex: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

/// Where [`Pki::write_agent_bundle`] put the agent's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentBundle {
    /// The CA certificate (`ca.pem`).
    pub ca: PathBuf,
    /// The agent certificate (`agent.pem`).
    pub cert: PathBuf,
    /// The agent's private key (`agent.key`, mode 0600).
    pub key: PathBuf,
}

/// URI subject alternative name of agent certificates: this prefix followed by the agent name.
pub const AGENT_URI_PREFIX: &str = "urn:aisemble:agent:";

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";
const CA_COMMON_NAME: &str = "Ai-semble Ops CA";
const CA_ORGANIZATION: &str = "Ai-semble Ops";
const SERVER_COMMON_NAME: &str = "Ai-semble Ops control plane";
/// Names every server certificate carries, so that local agents can always connect.
const DEFAULT_SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const CA_LIFETIME: Duration = Duration::from_secs(3650 * 86_400);
const SERVER_LIFETIME: Duration = Duration::from_secs(825 * 86_400);
/// A server certificate expiring sooner than this is re-issued by [`Pki::open_or_init`].
const SERVER_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
/// Certificates start a little in the past to tolerate clock skew between hosts.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Latest time X.509 (GeneralizedTime) can express: 9999-12-31T23:59:59Z.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

impl Pki {
    /// Opens the PKI in `dir`, creating the directory, the CA and the server certificate as
    /// needed. Returns whether the CA was created by this call.
    ///
    /// The server certificate names `server_names` (DNS names or IP addresses) plus `localhost`,
    /// `127.0.0.1` and `::1`. When an existing one lacks a requested name (or is unusable or
    /// expires within 30 days) it is re-issued with a new key, keeping the names it had; the CA
    /// is never replaced.
    ///
    /// # Errors
    /// On I/O errors, an invalid server name, a CA certificate without its key (or the other way
    /// round) and unreadable CA files.
    pub fn open_or_init(dir: &Path, server_names: &[String]) -> Result<(Self, bool), Error> {
        let mut wanted = BTreeSet::new();
        for name in DEFAULT_SERVER_NAMES
            .iter()
            .copied()
            .chain(server_names.iter().map(String::as_str))
        {
            wanted.insert(ServerName::parse(name)?);
        }
        files::create_private_dir(dir)?;
        let _lock = DirLock::exclusive(dir)?;
        let (ca, created) = match load_ca(dir)? {
            Some(ca) => (ca, false),
            None => (create_ca(dir)?, true),
        };
        let existing = if created {
            ServerFiles::Missing
        } else {
            load_server(dir)?
        };
        let (server_chain, server_key) = match existing {
            ServerFiles::Found(server) if server.usable(&ca.der, &wanted)? => {
                (server.chain, server.key)
            }
            ServerFiles::Found(server) => {
                wanted.extend(server.names);
                create_server(dir, &ca.issuer, &wanted)?
            }
            ServerFiles::Missing | ServerFiles::Invalid { .. } => {
                create_server(dir, &ca.issuer, &wanted)?
            }
        };
        let pki = Self {
            dir: dir.to_owned(),
            ca: ca.issuer,
            ca_der: ca.der,
            ca_pem: ca.pem,
            server_chain,
            server_key,
        };
        Ok((pki, created))
    }

    /// Opens an existing PKI without creating or re-issuing anything.
    ///
    /// # Errors
    /// [`Error::NotInitialized`] when `dir` holds no CA; otherwise on unreadable, missing or
    /// mismatched CA or server files.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        if !files::exists(&dir.join(CA_CERT)) && !files::exists(&dir.join(CA_KEY)) {
            return Err(Error::NotInitialized {
                dir: dir.to_owned(),
            });
        }
        let _lock = DirLock::shared(dir)?;
        let ca = load_ca(dir)?.ok_or_else(|| Error::NotInitialized {
            dir: dir.to_owned(),
        })?;
        let server = match load_server(dir)? {
            ServerFiles::Found(server) => server,
            ServerFiles::Missing => {
                let (cert, key) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
                let missing = if files::exists(&cert) { key } else { cert };
                return Err(Error::Incomplete {
                    present: dir.join(CA_CERT),
                    missing,
                });
            }
            ServerFiles::Invalid { path, what, reason } => {
                return Err(Error::InvalidFile { path, what, reason });
            }
        };
        let (cert_path, key_path) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
        // `load_server` never returns an empty chain.
        check_key_matches(&server.chain[0], &server.key_pair, &cert_path, &key_path)?;
        Ok(Self {
            dir: dir.to_owned(),
            ca: ca.issuer,
            ca_der: ca.der,
            ca_pem: ca.pem,
            server_chain: server.chain,
            server_key: server.key,
        })
    }

    /// Issues a certificate and a fresh key pair to the agent `name` and records it in the index.
    ///
    /// The certificate has common name `name`, the single subject alternative name
    /// `urn:aisemble:agent:<name>`, extended key usage ClientAuth and a random serial.
    ///
    /// # Errors
    /// When `name` is not a valid agent name, or on key generation or index I/O errors.
    pub fn issue_agent(&self, name: &str, validity: Validity) -> Result<IssuedAgent, Error> {
        let name = AgentId::parse(name)?;
        let key = KeyPair::generate().map_err(generate("agent key"))?;
        let (params, serial) = agent_params(&name, &validity)?;
        let cert = params
            .signed_by(&key, &self.ca)
            .map_err(generate("agent certificate"))?;
        let signed = self.record(name, &serial, &validity, cert.pem())?;
        Ok(IssuedAgent {
            name: signed.name,
            serial_hex: signed.serial_hex,
            cert_pem: signed.cert_pem,
            key_pem: key.serialize_pem(),
            not_before: signed.not_before,
            not_after: signed.not_after,
        })
    }

    /// Signs an agent's certificate signing request (PEM) and records it in the index.
    ///
    /// The request's signature is verified and its common name must be `name`. Only its public
    /// key is used: the certificate is built exactly as by [`Pki::issue_agent`], ignoring every
    /// extension the request asks for.
    ///
    /// # Errors
    /// When `name` is not a valid agent name, the request cannot be parsed, its signature is
    /// wrong or it is for another name, or on index I/O errors.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        name: &str,
        validity: Validity,
    ) -> Result<SignedAgent, Error> {
        let name = AgentId::parse(name)?;
        let request = CertificateSigningRequestParams::from_pem(csr_pem).map_err(Error::Csr)?;
        let found = request
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .and_then(dn_text);
        if found != Some(name.as_str()) {
            return Err(Error::CsrNameMismatch {
                expected: name.to_string(),
                found: found.map(str::to_owned),
            });
        }
        let (params, serial) = agent_params(&name, &validity)?;
        let fresh = CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        };
        let cert = fresh
            .signed_by(&self.ca)
            .map_err(generate("agent certificate"))?;
        self.record(name, &serial, &validity, cert.pem())
    }

    /// Writes `ca.pem`, `agent.pem` and `agent.key` (mode 0600) into `out_dir`, creating it
    /// with mode 0700 if needed. Existing files are replaced atomically.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn write_agent_bundle(
        &self,
        issued: &IssuedAgent,
        out_dir: &Path,
    ) -> Result<AgentBundle, Error> {
        crate::enroll::write_bundle(out_dir, &self.ca_pem, &issued.cert_pem, &issued.key_pem)
    }

    /// Revokes every certificate issued to `name` that is not revoked yet; returns their serials
    /// (hex). Certificates issued later are not affected.
    ///
    /// # Errors
    /// [`Error::UnknownAgent`] when no certificate was ever issued to `name`; index I/O errors.
    pub fn revoke(&self, name: &str) -> Result<Vec<String>, Error> {
        self.revoke_except(name, None)
    }

    /// Like [`Pki::revoke`], but keeps the certificate with serial `keep` (hex, as
    /// [`SignedAgent::serial_hex`]): re-enrollment replaces a name's identity with a new one.
    ///
    /// # Errors
    /// As [`Pki::revoke`].
    pub fn revoke_others(&self, name: &str, keep: &str) -> Result<Vec<String>, Error> {
        self.revoke_except(name, Some(keep))
    }

    fn revoke_except(&self, name: &str, keep: Option<&str>) -> Result<Vec<String>, Error> {
        let name = AgentId::parse(name)?;
        let now = OffsetDateTime::now_utc().truncate_to_second();
        index::update(&self.dir, |records| {
            let mut known = false;
            let mut revoked = Vec::new();
            for record in records.iter_mut().filter(|r| r.name == name.as_str()) {
                known = true;
                if record.revoked_at.is_none() && Some(record.serial.as_str()) != keep {
                    record.revoked_at = Some(now);
                    revoked.push(record.serial.clone());
                }
            }
            if !known {
                return Err(Error::UnknownAgent {
                    name: name.to_string(),
                });
            }
            Ok(revoked)
        })
    }

    /// Every agent certificate issued, oldest first.
    ///
    /// # Errors
    /// When the index cannot be read or parsed.
    pub fn list(&self) -> Result<Vec<IssuedEntry>, Error> {
        index::entries(&self.dir, index::load(&self.dir)?)
    }

    /// The serials of revoked certificates, as the index says now.
    ///
    /// # Errors
    /// When the index cannot be read or parsed.
    pub fn revocation_list(&self) -> Result<RevocationList, Error> {
        index::revocation_list(&self.dir, &index::load(&self.dir)?)
    }

    /// When the index last changed (`None` before the first certificate is issued); poll this
    /// and reload [`Pki::revocation_list`] when it moves.
    pub fn index_modified(&self) -> Option<SystemTime> {
        std::fs::metadata(self.dir.join(index::FILE))
            .and_then(|m| m.modified())
            .ok()
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The CA certificate, PEM (the content of `ca.pem`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Lowercase hex SHA-256 of the CA certificate's DER, for `aisemble-agent enroll --ca-fingerprint`.
    pub fn ca_fingerprint_sha256(&self) -> String {
        crate::enroll::fingerprint(self.ca_der.as_ref())
    }

    /// The server certificate chain, leaf first.
    pub fn server_chain(&self) -> &[CertificateDer<'static>] {
        &self.server_chain
    }

    /// The server certificate's private key.
    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        self.server_key.clone_key()
    }

    fn record(
        &self,
        name: AgentId,
        serial: &[u8],
        validity: &Validity,
        cert_pem: String,
    ) -> Result<SignedAgent, Error> {
        let serial_hex = hex::encode(index::normalize_serial(serial));
        index::update(&self.dir, |records| {
            records.push(Record {
                name: name.to_string(),
                serial: serial_hex.clone(),
                not_before: validity.not_before,
                not_after: validity.not_after,
                revoked_at: None,
            });
            Ok(())
        })?;
        Ok(SignedAgent {
            name,
            serial_hex,
            cert_pem,
            not_before: validity.not_before(),
            not_after: validity.not_after(),
        })
    }
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("ca_fingerprint_sha256", &self.ca_fingerprint_sha256())
            .finish_non_exhaustive()
    }
}

impl Validity {
    /// Default lifetime of agent certificates: one year.
    pub const AGENT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

    /// A validity period from `not_before` to `not_after`, truncated to whole seconds.
    ///
    /// # Errors
    /// When `not_after` is not after `not_before`, or either is before 1970 or after 9999.
    pub fn new(not_before: SystemTime, not_after: SystemTime) -> Result<Self, Error> {
        let (not_before, not_after) = (to_x509_time(not_before)?, to_x509_time(not_after)?);
        if not_after <= not_before {
            return Err(Error::InvalidValidity {
                reason: "not_after is not after not_before",
            });
        }
        Ok(Self {
            not_before,
            not_after,
        })
    }

    /// Valid for `lifetime` from now, starting five minutes ago to tolerate clock skew.
    ///
    /// # Errors
    /// When the end would be after 9999.
    pub fn starting_now(lifetime: Duration) -> Result<Self, Error> {
        let now = SystemTime::now();
        let start = now.checked_sub(BACKDATE).unwrap_or(now);
        let end = now.checked_add(lifetime).ok_or(Error::InvalidValidity {
            reason: "lifetime is too long",
        })?;
        Self::new(start, end)
    }

    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before.into()
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after.into()
    }
}

impl fmt::Debug for IssuedAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedAgent")
            .field("name", &self.name)
            .field("serial_hex", &self.serial_hex)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The CA as loaded or created.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// The server certificate and key as found on disk.
enum ServerFiles {
    /// Both or one of the files are missing.
    Missing,
    /// A file cannot be parsed.
    Invalid {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    /// Both files parse; the key may still not match the certificate.
    Found(Box<Server>),
}

struct Server {
    /// Leaf first; never empty.
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    key_pair: KeyPair,
    names: BTreeSet<ServerName>,
}

impl Server {
    /// Whether this certificate may be kept: issued by `ca_der`, its key matches, valid now and
    /// for 30 more days, and names every `wanted` name.
    fn usable(
        &self,
        ca_der: &CertificateDer<'static>,
        wanted: &BTreeSet<ServerName>,
    ) -> Result<bool, Error> {
        let (leaf, intermediates) = (&self.chain[0], &self.chain[1..]);
        if !spki_matches(leaf, &self.key_pair) {
            return Ok(false);
        }
        let verifier = tls::server_verifier(ca_der)?;
        let now = SystemTime::now();
        let later = now.checked_add(SERVER_RENEW_BEFORE).unwrap_or(now);
        let verifies = |name: &ServerName, at: SystemTime| {
            let Some(name) = name.to_tls() else {
                return false;
            };
            let since_epoch = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            let at = UnixTime::since_unix_epoch(since_epoch);
            verifier
                .verify_server_cert(leaf, intermediates, &name, &[], at)
                .is_ok()
        };
        let localhost = ServerName::Dns("localhost".to_owned());
        Ok(verifies(&localhost, later) && wanted.iter().all(|name| verifies(name, now)))
    }
}

/// A name the server certificate is valid for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ServerName {
    /// A DNS name, lowercase.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl ServerName {
    fn parse(name: &str) -> Result<Self, Error> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        match rustls_pki_types::DnsName::try_from(name) {
            Ok(dns) => Ok(Self::Dns(dns.as_ref().to_ascii_lowercase())),
            Err(_) => Err(Error::InvalidServerName {
                name: name.to_owned(),
            }),
        }
    }

    fn to_san(&self) -> Result<SanType, Error> {
        Ok(match self {
            Self::Dns(name) => SanType::DnsName(
                Ia5String::try_from(name.as_str()).map_err(generate("server certificate"))?,
            ),
            Self::Ip(ip) => SanType::IpAddress(*ip),
        })
    }

    fn to_tls(&self) -> Option<TlsServerName<'static>> {
        match self {
            Self::Dns(name) => TlsServerName::try_from(name.clone()).ok(),
            Self::Ip(ip) => Some(TlsServerName::IpAddress((*ip).into())),
        }
    }
}

fn load_ca(dir: &Path) -> Result<Option<Ca>, Error> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let Some((pem, key_pem)) = read_pair(&cert_path, &key_path)? else {
        return Ok(None);
    };
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|source| Error::Pem {
        path: cert_path.clone(),
        what: "certificate",
        source,
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(&key_path, "private key", e))?;
    check_key_matches(&der, &key, &cert_path, &key_path)?;
    let issuer = Issuer::from_ca_cert_der(&der, key)
        .map_err(|e| invalid(&cert_path, "CA certificate", e))?;
    Ok(Some(Ca { issuer, der, pem }))
}

fn create_ca(dir: &Path) -> Result<Ca, Error> {
    let key = KeyPair::generate().map_err(generate("CA key"))?;
    let (mut params, _serial) = base_params(CA_COMMON_NAME, &Validity::starting_now(CA_LIFETIME)?)?;
    // Every installation's CA needs its own name: webpki picks issuer candidates by name, so a
    // foreign certificate naming an issuer with our name fails as `BadSignature`
    // (`decrypt_error`) instead of `UnknownIssuer` (`unknown_ca`).
    let mut id = [0u8; 8];
    tls::provider()
        .secure_random
        .fill(&mut id)
        .map_err(|_| Error::Random)?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name.push(
        DnType::OrganizationalUnitName,
        format!("ca-{}", hex::encode(id)),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(generate("CA certificate"))?;
    // Key first: a crash in between leaves a key without a certificate, which `load_ca` reports
    // instead of silently making a new CA.
    files::write_atomic(
        &dir.join(CA_KEY),
        key.serialize_pem().as_bytes(),
        files::PRIVATE,
    )?;
    files::write_atomic(&dir.join(CA_CERT), cert.pem().as_bytes(), files::PUBLIC)?;
    Ok(Ca {
        pem: cert.pem(),
        der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    })
}

/// Reads the server files; I/O errors other than "not found" are errors.
fn load_server(dir: &Path) -> Result<ServerFiles, Error> {
    let (cert_path, key_path) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
    let (Some(pem), Some(key_pem)) = (
        files::read_optional(&cert_path)?,
        files::read_optional(&key_path)?,
    ) else {
        return Ok(ServerFiles::Missing);
    };
    let invalid = |path: &Path, what, reason: &dyn fmt::Display| ServerFiles::Invalid {
        path: path.to_owned(),
        what,
        reason: reason.to_string(),
    };
    let chain = match CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>()
    {
        Ok(chain) => chain,
        Err(e) => return Ok(invalid(&cert_path, "certificate", &e)),
    };
    let Some(leaf) = chain.first() else {
        return Ok(invalid(&cert_path, "certificate", &"no certificate found"));
    };
    let names = match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, x509)) => san_names(&x509),
        Err(e) => return Ok(invalid(&cert_path, "certificate", &e)),
    };
    let key = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) {
        Ok(key) => key,
        Err(e) => return Ok(invalid(&key_path, "private key", &e)),
    };
    let key_pair = match KeyPair::try_from(&key) {
        Ok(key_pair) => key_pair,
        Err(e) => return Ok(invalid(&key_path, "private key", &e)),
    };
    Ok(ServerFiles::Found(Box::new(Server {
        chain,
        key,
        key_pair,
        names,
    })))
}

fn create_server(
    dir: &Path,
    ca: &Issuer<'static, KeyPair>,
    names: &BTreeSet<ServerName>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let key = KeyPair::generate().map_err(generate("server key"))?;
    let sans = names
        .iter()
        .map(ServerName::to_san)
        .collect::<Result<_, _>>()?;
    let validity = Validity::starting_now(SERVER_LIFETIME)?;
    let (params, _serial) = leaf_params(
        SERVER_COMMON_NAME,
        sans,
        ExtendedKeyUsagePurpose::ServerAuth,
        &validity,
    )?;
    let cert = params
        .signed_by(&key, ca)
        .map_err(generate("server certificate"))?;
    files::write_atomic(
        &dir.join(SERVER_KEY),
        key.serialize_pem().as_bytes(),
        files::PRIVATE,
    )?;
    files::write_atomic(&dir.join(SERVER_CERT), cert.pem().as_bytes(), files::PUBLIC)?;
    let key_der = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
    Ok((vec![cert.der().clone()], key_der))
}

/// Both files' contents, `None` when both are missing, an error when only one is.
fn read_pair(cert: &Path, key: &Path) -> Result<Option<(String, String)>, Error> {
    match (files::read_optional(cert)?, files::read_optional(key)?) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::Incomplete {
            present: cert.to_owned(),
            missing: key.to_owned(),
        }),
        (None, Some(_)) => Err(Error::Incomplete {
            present: key.to_owned(),
            missing: cert.to_owned(),
        }),
    }
}

fn agent_params(
    name: &AgentId,
    validity: &Validity,
) -> Result<(CertificateParams, [u8; 16]), Error> {
    let uri = Ia5String::try_from(format!("{AGENT_URI_PREFIX}{name}"))
        .map_err(generate("agent certificate"))?;
    leaf_params(
        name.as_str(),
        vec![SanType::URI(uri)],
        ExtendedKeyUsagePurpose::ClientAuth,
        validity,
    )
}

/// Parameters of an end-entity certificate.
fn leaf_params(
    common_name: &str,
    sans: Vec<SanType>,
    eku: ExtendedKeyUsagePurpose,
    validity: &Validity,
) -> Result<(CertificateParams, [u8; 16]), Error> {
    let (mut params, serial) = base_params(common_name, validity)?;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    Ok((params, serial))
}

/// Parameters with only a common name, explicit validity and a random serial; rcgen's defaults
/// (a fixed common name, 1975 to 4096, serial derived from the key) are all overwritten.
fn base_params(
    common_name: &str,
    validity: &Validity,
) -> Result<(CertificateParams, [u8; 16]), Error> {
    let serial = random_serial()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok((params, serial))
}

/// 16 random bytes with the first in `1..=0x7f`: a positive integer whose DER encoding is exactly
/// these 16 bytes.
fn random_serial() -> Result<[u8; 16], Error> {
    let mut serial = [0u8; 16];
    tls::provider()
        .secure_random
        .fill(&mut serial)
        .map_err(|_| Error::Random)?;
    serial[0] = (serial[0] & 0x7f).max(1);
    Ok(serial)
}

fn check_key_matches(
    cert: &CertificateDer<'_>,
    key: &KeyPair,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), Error> {
    if spki_matches(cert, key) {
        Ok(())
    } else {
        Err(Error::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        })
    }
}

fn spki_matches(cert: &CertificateDer<'_>, key: &KeyPair) -> bool {
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, x509)) => x509.tbs_certificate.subject_pki.raw == key.subject_public_key_info(),
        Err(_) => false,
    }
}

fn san_names(x509: &X509Certificate<'_>) -> BTreeSet<ServerName> {
    let Ok(Some(san)) = x509.subject_alternative_name() else {
        return BTreeSet::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => ServerName::parse(dns).ok(),
            GeneralName::IPAddress(bytes) => {
                let v4 = <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from);
                let v6 = || <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from);
                v4.or_else(v6).map(ServerName::Ip)
            }
            _ => None,
        })
        .collect()
}

fn dn_text(value: &DnValue) -> Option<&str> {
    match value {
        DnValue::Utf8String(s) => Some(s),
        DnValue::PrintableString(s) => Some(s.as_str()),
        DnValue::Ia5String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Converts to the whole second, checking the range X.509 can encode.
fn to_x509_time(t: SystemTime) -> Result<OffsetDateTime, Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| Error::InvalidValidity {
            reason: "time before 1970",
        })?
        .as_secs();
    if secs > MAX_UNIX_SECS {
        return Err(Error::InvalidValidity {
            reason: "time after 9999",
        });
    }
    // In range after the check above.
    OffsetDateTime::from_unix_timestamp(secs.cast_signed()).map_err(|_| Error::InvalidValidity {
        reason: "time after 9999",
    })
}

fn generate(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |source| Error::Generate { what, source }
}

fn invalid(path: &Path, what: &'static str, reason: impl fmt::Display) -> Error {
    Error::InvalidFile {
        path: path.to_owned(),
        what,
        reason: reason.to_string(),
    }
}
