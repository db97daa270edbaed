//! HTTP clients for health checks and scrapes: reqwest over rustls with the ring provider (the
//! only crypto provider in the build), trusting the system roots plus an optional extra CA.
//!
//! The system roots are read once per process, when the first client that may speak https is
//! built, and shared by every client (reading them parses every file of the system's certificate
//! store: a few hundred KiB read and freed per client otherwise). A client for a plain-http target
//! never reads them: redirects are not followed, so it never meets TLS.

use std::{
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use rustls::{ClientConfig, RootCertStore};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The extra CA file is unusable.
    #[error("CA file {path}: {message}")]
    Ca {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls or reqwest refused the configuration.
    #[error("building the HTTP client: {0}")]
    Build(String),
}

/// A client that trusts the system's roots and, when given, the CA certificates in `extra_ca`
/// (PEM). Requests time out after `timeout`; redirects are not followed (a check tests the URL it
/// names); no proxy from the environment is used (targets are local).
///
/// # Errors
/// When the CA file cannot be read or parsed, or the TLS configuration is refused.
pub fn client(
    extra_ca: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, HttpClientError> {
    build(true, extra_ca, timeout)
}

/// A client for requests to `url` only: as [`client`], but a plain-http `url` gets a client
/// without the system's roots (the extra CA is still read, so a bad file is reported either way).
///
/// # Errors
/// As [`client`].
pub fn client_for(
    url: &reqwest::Url,
    extra_ca: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, HttpClientError> {
    build(url.scheme() != "http", extra_ca, timeout)
}

fn build(
    system_roots: bool,
    extra_ca: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, HttpClientError> {
    let roots = match extra_ca {
        None if system_roots => Arc::clone(shared_system_roots()),
        None => Arc::new(RootCertStore::empty()),
        Some(path) => {
            let mut roots = if system_roots {
                RootCertStore::clone(shared_system_roots())
            } else {
                RootCertStore::empty()
            };
            let ca_error = |message: String| HttpClientError::Ca {
                path: path.display().to_string(),
                message,
            };
            let certs =
                aisemble_certs::tls::load_certs(path).map_err(|e| ca_error(e.to_string()))?;
            for cert in certs {
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
            Arc::new(roots)
        }
    };
    let tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpClientError::Build(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .map_err(|e| HttpClientError::Build(e.to_string()))
}

/// The system's roots, read on first use. Unreadable system roots leave an empty store:
/// plain-http and extra-CA targets still work.
fn shared_system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        Arc::new(roots)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_with_and_without_an_extra_ca() {
        assert!(client(None, Duration::from_secs(1)).is_ok());
        let missing = client(
            Some(Path::new("/nonexistent/ca.pem")),
            Duration::from_secs(1),
        );
        assert!(
            matches!(missing, Err(HttpClientError::Ca { .. })),
            "{missing:?}"
        );
    }

    #[test]
    fn a_plain_http_client_still_reads_the_extra_ca() {
        let url = reqwest::Url::parse("http://127.0.0.1:1/").expect("url");
        assert!(client_for(&url, None, Duration::from_secs(1)).is_ok());
        let missing = client_for(
            &url,
            Some(Path::new("/nonexistent/ca.pem")),
            Duration::from_secs(1),
        );
        assert!(
            matches!(missing, Err(HttpClientError::Ca { .. })),
            "{missing:?}"
        );
    }
}
