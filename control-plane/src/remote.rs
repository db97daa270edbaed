//! A client of a running control plane's HTTP API, for the CLI commands that talk to one
//! (`aisemble-cp dashboard`, `aisemble-cp report`). It only does HTTP and classifies failures;
//! what the answers mean is for [`crate::tui`] and [`crate::reports`].

use std::time::Duration;

use serde_json::Value;

/// Env var holding the API token when `--token` is not given.
pub const ENV_TOKEN: &str = "AISEMBLE_TOKEN";

/// The control plane the CLI talks to by default (`serve`'s default HTTP address).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Why a request to the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL given is not usable.
    #[error("invalid control plane URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// No connection, or no answer in time.
    #[error("control plane at {url} unreachable: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The transport's error.
        reason: String,
    },
    /// 401 or 403: the token is missing, unknown or lacks the role.
    #[error(
        "token refused by the control plane ({status}): {message} (give a viewer token with --token or AISEMBLE_TOKEN)"
    )]
    Refused {
        /// HTTP status.
        status: u16,
        /// The API's error message.
        message: String,
    },
    /// Any other non-success status.
    #[error("{path}: HTTP {status}: {message}")]
    Status {
        /// The request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The API's error message.
        message: String,
    },
    /// The body is not the JSON expected.
    #[error("{path}: unexpected response: {reason}")]
    Decode {
        /// The request path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client cannot be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// A control plane's API, with a bearer token.
#[derive(Debug, Clone)]
pub struct Remote {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Remote {
    /// A client for `url` (`http://host:port`, or https behind a proxy).
    ///
    /// # Errors
    /// A URL that is not http(s), or no usable HTTP client.
    pub fn new(url: &str, token: Option<String>, timeout: Duration) -> Result<Self, RemoteError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| RemoteError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(RemoteError::Url {
                url: url.to_owned(),
                reason: "the scheme must be http or https".into(),
            });
        }
        let http = crate::alerts::notify::http_client(timeout)
            .map_err(|e| RemoteError::Client(e.to_string()))?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET path` as JSON; `Ok(None)` on 404 (an endpoint this control plane does not have).
    ///
    /// # Errors
    /// Unreachable, token refused, another error status, or a body that is not JSON.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request.
    pub async fn get(&self, path: &str) -> Result<Option<Value>, RemoteError> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| RemoteError::Unreachable {
            url: self.base.clone(),
            reason: error_chain(&e.without_url()),
        })?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| RemoteError::Unreachable {
                url: self.base.clone(),
                reason: error_chain(&e.without_url()),
            })?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let message = || {
            json.as_ref()
                .and_then(|j| j["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect())
        };
        match status {
            200..=299 => json.map(Some).ok_or_else(|| RemoteError::Decode {
                path: path.to_owned(),
                reason: "the body is not JSON".into(),
            }),
            404 => Ok(None),
            401 | 403 => Err(RemoteError::Refused {
                status,
                message: message(),
            }),
            _ => Err(RemoteError::Status {
                path: path.to_owned(),
                status,
                message: message(),
            }),
        }
    }

    /// `GET path`, requiring it to exist.
    ///
    /// # Errors
    /// As [`Remote::get`], and 404 as [`RemoteError::Status`].
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn get_required(&self, path: &str) -> Result<Value, RemoteError> {
        self.get(path).await?.ok_or_else(|| RemoteError::Status {
            path: path.to_owned(),
            status: 404,
            message: "this control plane has no such endpoint (is it an older version?)".into(),
        })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        // reqwest repeats its cause in its own message at times: keep each part once.
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
