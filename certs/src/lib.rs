//! The control plane's PKI: CA, issuing agent certificates, CSR signing, the revocation index,
//! PEM files, and the rustls configurations both ends use.
//!
//! - [`Pki`] owns one directory (`ca.pem`, `ca.key`, `server.pem`, `server.key`, `issued.json`):
//!   it creates the CA and server certificate on first use, issues agent certificates (with a fresh
//!   key, or from an agent's CSR), revokes them and lists them.
//! - [`RevocationList`] is the set of revoked serials a server checks on every handshake.
//! - [`enroll`] is the agent's side of enrollment: key pair and CSR, the CA proof, a TLS client
//!   that records the chain a not-yet-trusted server presents.
//! - [`tls`] builds the server and client `rustls` configurations (TLS 1.3, mutual
//!   authentication against our CA only, revocation, no 0-RTT) and reads PEM files.
//!
//! This crate contains no networking code and no async runtime. Its only crypto provider is ring,
//! passed explicitly to rustls; the process default provider is never used. Keys are written with
//! mode 0600 from the moment they exist, and every file is replaced atomically.

pub mod enroll;
mod error;
mod files;
mod index;
mod pki;
pub mod tls;

pub use error::Error;
pub use index::{IssuedEntry, RevocationList};
pub use pki::{AGENT_URI_PREFIX, AgentBundle, IssuedAgent, Pki, SignedAgent, Validity};

#[cfg(test)]
mod tests;
