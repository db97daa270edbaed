//! `kind = "http"`: up when the URL answers with the expected status (default any 2xx) and, when
//! `body_contains` is set, a body holding that text.
//!
//! One client per check, built when the check starts (connections are reused between runs, as a
//! load balancer's health checker would). Redirects are not followed: a check tests the URL it
//! names. At most [`MAX_BODY_BYTES`] of the body are read; the text must be within them.

use std::{path::PathBuf, time::Duration};

use aisemble_shared::metrics;

use super::{CheckError, find_io, io_error, root_cause, state::Detail};

/// Most body read per run: enough for any health page, bounded against a runaway one.
pub(super) const MAX_BODY_BYTES: usize = 1 << 20;

/// A checked `http` target.
#[derive(Debug, Clone)]
pub(super) struct HttpTarget {
    /// The request method.
    pub(super) method: reqwest::Method,
    /// An http or https URL.
    pub(super) url: reqwest::Url,
    /// The status that means up; `None` means any 2xx.
    pub(super) expected_status: Option<u16>,
    /// Text the body must contain.
    pub(super) body_contains: Option<String>,
    /// Extra CA certificate (PEM) to trust, resolved against the config file's directory.
    pub(super) ca: Option<PathBuf>,
}

/// An `http` target with its client.
#[derive(Debug)]
pub(super) struct HttpProbe {
    target: HttpTarget,
    timeout: Duration,
    /// The client, or why it could not be built (then every run fails with that reason, so the
    /// problem shows as a down check rather than a check that silently never runs).
    client: Result<reqwest::Client, String>,
}

impl HttpProbe {
    /// Builds the client for `target`.
    pub(super) fn new(target: HttpTarget, timeout: Duration) -> Self {
        let client = crate::http_client::client_for(&target.url, target.ca.as_deref(), timeout)
            .map_err(|error| error.to_string());
        Self {
            target,
            timeout,
            client,
        }
    }

    /// Sends one request and judges the response.
    pub(super) async fn probe(&self, details: &mut Vec<Detail>) -> Result<(), CheckError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| CheckError::Setup(e.clone()))?;
        let request_error = |error: reqwest::Error| {
            if error.is_timeout() {
                CheckError::TimedOut(self.timeout)
            } else if let Some(io) = find_io(&error) {
                io_error(io)
            } else {
                CheckError::Failed(root_cause(&error))
            }
        };
        let mut response = client
            .request(self.target.method.clone(), self.target.url.clone())
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        details.push(Detail {
            name: metrics::CHECK_HTTP_STATUS_CODE,
            value: f64::from(status.as_u16()),
        });
        let status_ok = match self.target.expected_status {
            Some(expected) => status.as_u16() == expected,
            None => status.is_success(),
        };
        if !status_ok {
            return Err(CheckError::Status {
                status: status.as_u16(),
                expected: self
                    .target
                    .expected_status
                    .map_or_else(|| "2xx".to_owned(), |s| s.to_string()),
            });
        }

        // The body is read even when no text is asked for: the duration then covers the whole
        // response, and the connection can be reused.
        let mut body = Vec::new();
        while body.len() < MAX_BODY_BYTES {
            let Some(chunk) = response.chunk().await.map_err(request_error)? else {
                break;
            };
            let keep = chunk.len().min(MAX_BODY_BYTES - body.len());
            body.extend_from_slice(&chunk[..keep]);
        }
        if let Some(text) = &self.target.body_contains
            && !contains(&body, text.as_bytes())
        {
            return Err(CheckError::BodyMissing(text.clone()));
        }
        Ok(())
    }
}

/// Whether `needle` occurs in `haystack` (bytes, so a body need not be valid UTF-8).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
