//! The crate's one error type.

use std::{io, path::PathBuf};

use aisemble_shared::ids::AgentIdError;

/// Everything that can go wrong in this crate.
///
/// Messages are lowercase, name the file involved and do not repeat their source error: print
/// the chain (`{:#}` with anyhow) to see it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PKI directory holds no CA yet.
    #[error(
        "no CA in {}; run `aisemble-cp certs init` or start the control plane once",
        dir.display()
    )]
    NotInitialized {
        /// The PKI directory.
        dir: PathBuf,
    },
    /// One file of a key/certificate pair exists and the other does not.
    #[error(
        "{} exists but {} is missing; restore it or move both aside to start over",
        present.display(),
        missing.display()
    )]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// Reading a file or directory failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Creating or writing a file or directory failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file does not hold the PEM item expected (certificate or private key).
    #[error("cannot read a {what} from {}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected: "certificate" or "private key".
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A file holds PEM but no certificate.
    #[error("no certificate in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate or key file could not be understood (bad DER, unsupported key).
    #[error("invalid {what} in {}: {reason}", path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What the file should hold.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A private key does not belong to the certificate beside it.
    #[error("{} does not hold the private key of the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The index of issued certificates could not be parsed.
    #[error("cannot parse the certificate index {}", path.display())]
    Index {
        /// The index file (`issued.json`).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The index of issued certificates holds a value that makes no sense.
    #[error("corrupt entry in the certificate index {}: {reason}", path.display())]
    IndexEntry {
        /// The index file (`issued.json`).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An agent name is not a valid agent id.
    #[error("invalid agent name")]
    InvalidName(#[from] AgentIdError),
    /// A server name is neither a valid DNS name nor an IP address.
    #[error("invalid server name {name:?}: expected a DNS name or an IP address")]
    InvalidServerName {
        /// The name as given.
        name: String,
    },
    /// A validity period ends before it starts or is outside what X.509 can encode.
    #[error("invalid validity period: {reason}")]
    InvalidValidity {
        /// What is wrong.
        reason: &'static str,
    },
    /// rcgen refused to generate a key or certificate.
    #[error("cannot generate the {what}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A certificate signing request could not be parsed or its signature is wrong.
    #[error("invalid certificate signing request")]
    Csr(#[source] rcgen::Error),
    /// The common name of a certificate signing request is not the expected agent name.
    #[error("certificate signing request is for {found:?}, expected {expected:?}")]
    CsrNameMismatch {
        /// The agent name the request should carry.
        expected: String,
        /// The common name it carries, if any.
        found: Option<String>,
    },
    /// No certificate was ever issued to this agent name.
    #[error("no certificate was issued to agent {name:?}")]
    UnknownAgent {
        /// The agent name.
        name: String,
    },
    /// A peer's certificate chain is empty or its leaf is not a valid agent certificate.
    #[error("invalid peer certificate: {reason}")]
    PeerCertificate {
        /// What is wrong.
        reason: String,
    },
    /// rustls refused to build a TLS configuration (for instance a key that does not match).
    #[error("cannot build the TLS configuration")]
    Tls(#[from] rustls::Error),
    /// rustls refused to build a certificate verifier (for instance an unusable CA).
    #[error("cannot build the certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}
