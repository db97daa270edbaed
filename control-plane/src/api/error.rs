//! API errors: `{"error":{"code","message","request_id"}}` with the right status.
//!
//! Handlers return [`ApiError`]; its response carries the error in an extension, and the
//! [`render`] middleware writes the JSON body with the request's `X-Request-ID`. Client faults
//! (4xx) are not logged; internal faults are logged once here, with a generic message to the
//! client.

use std::time::Duration;

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response outside the Prometheus API (SPEC §10).
#[derive(Serialize, Debug, ToSchema)]
pub(crate) struct ErrorBody {
    /// The error.
    pub(crate) error: ErrorDetail,
}

/// What went wrong. Fields in alphabetical order, as the body has always had them.
#[derive(Serialize, Debug, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Machine-readable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `payload_too_large`, `unprocessable_entity`, `too_many_requests`,
    /// `service_unavailable`, `internal`.
    #[schema(example = "bad_request")]
    pub(crate) code: String,
    /// Structured detail where a route documents it (e.g. every problem of a refused rule file,
    /// with line and column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) details: Option<serde_json::Value>,
    /// Human-readable message; names the parameter or field at fault.
    pub(crate) message: String,
    /// The request's `X-Request-ID`.
    pub(crate) request_id: String,
}

/// An error to return to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`bad_request`, `not_found`, ...).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Structured detail (e.g. every problem of a refused rule file with its position).
    pub details: Option<serde_json::Value>,
    /// `Retry-After` (whole seconds) of a 429.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 500; the detail is logged, not returned.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "Internal error serving a request.");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; see the control plane's log".into(),
            details: None,
            retry_after: None,
        }
    }

    /// 409: the request conflicts with work going on (a backup still running).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 422: well-formed but invalid (a rule file that does not validate, a bad silence).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "unprocessable_entity",
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 429: the token's rate limit is spent; retry after `wait`.
    pub fn too_many_requests(wait: Duration) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too_many_requests",
            message: format!(
                "rate limit of this token exceeded; retry in {} ms",
                wait.as_millis().max(1)
            ),
            details: None,
            retry_after: Some(wait),
        }
    }

    /// Adds structured detail to the body.
    #[must_use]
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Parses a JSON body; the error names the field at fault (`createdBy: invalid type: ...`), which
/// serde_json's own message does not for a wrong type.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "" | "." => e.into_inner().to_string(),
            _ => format!("{path}: {}", e.into_inner()),
        }
    })?;
    // Trailing characters after the value are an error, as in `serde_json::from_slice`.
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Fills in error bodies with the request id, and turns every other error response that is not
/// JSON (axum's rejections of bad query strings and paths, 405, the body limit's 413, the
/// timeout's 503) into the same format. Headers of the original response are kept.
pub(super) async fn render(request: Request, next: Next) -> Response {
    let request_id = super::request_id_of(request.headers()).to_owned();
    let response = next.run(request).await;
    let error = response.extensions().get::<ApiError>().cloned();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    let (parts, body) = response.into_parts();
    let error = match error {
        Some(error) => error,
        None if (status.is_client_error() || status.is_server_error()) && !is_json => {
            let bytes = axum::body::to_bytes(body, 64 << 10)
                .await
                .unwrap_or_default();
            let code = match status {
                StatusCode::UNPROCESSABLE_ENTITY => "unprocessable_entity",
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
                s if s.is_server_error() => "internal",
                _ => "bad_request",
            };
            let message = match (status, String::from_utf8_lossy(&bytes).trim()) {
                (StatusCode::PAYLOAD_TOO_LARGE, _) => {
                    format!("request body over the {} byte limit", super::BODY_LIMIT)
                }
                (StatusCode::SERVICE_UNAVAILABLE, "") => format!(
                    "request timed out after {} s",
                    super::REQUEST_TIMEOUT.as_secs()
                ),
                (_, "") => status.canonical_reason().unwrap_or("error").to_owned(),
                (_, text) => text.to_owned(),
            };
            ApiError {
                status,
                code,
                message,
                details: None,
                retry_after: None,
            }
        }
        None => return Response::from_parts(parts, body),
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: error.code.to_owned(),
            details: error.details,
            message: error.message,
            request_id: request_id.clone(),
        },
    };
    let text = serde_json::to_string(&body).unwrap_or_default();
    let mut out = Response::from_parts(parts, Body::from(text));
    *out.status_mut() = error.status;
    let headers = out.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", id);
    }
    if error.status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(wait) = error.retry_after {
        // Whole seconds, rounded up: a client waiting this long finds a token in the bucket.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    out
}
