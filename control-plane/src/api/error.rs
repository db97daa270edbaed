//! API errors: `{"error":{"code","message","request_id"}}` with the right status.
//!
//! Handlers return [`ApiError`]; its response carries the error in an extension, and the
//! [`render`] middleware writes the JSON body with the request's `X-Request-ID`. Client faults
//! (4xx) are not logged; internal faults are logged once here, with a generic message to the
//! client.

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

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
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            details: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            details: None,
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
            details: None,
        }
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
            details: None,
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
        }
    }

    /// 422: well-formed but invalid (a rule file that does not validate, a bad silence).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "unprocessable_entity",
            message: message.into(),
            details: None,
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

/// Fills in error bodies with the request id, and turns axum's own rejections (bad JSON, bad
/// query strings) into the same format.
pub(super) async fn render(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let response = next.run(request).await;
    let error = response.extensions().get::<ApiError>().cloned();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let error = match error {
        Some(error) => error,
        // A rejection from an extractor: plain text with a 4xx status. Re-wrap it.
        None if response.status().is_client_error() && !is_json => {
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 64 << 10)
                .await
                .unwrap_or_default();
            let code = match status {
                StatusCode::UNPROCESSABLE_ENTITY => "unprocessable_entity",
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                _ => "bad_request",
            };
            let message = match String::from_utf8_lossy(&bytes).trim() {
                "" => status.canonical_reason().unwrap_or("error").to_owned(),
                text => text.to_owned(),
            };
            ApiError {
                status,
                code,
                message,
                details: None,
            }
        }
        None => return response,
    };
    let mut body = serde_json::json!({
        "error": { "code": error.code, "message": error.message, "request_id": request_id }
    });
    if let Some(details) = error.details {
        body["error"]["details"] = details;
    }
    let mut out = Response::new(Body::from(body.to_string()));
    *out.status_mut() = error.status;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        out.headers_mut().insert("x-request-id", id);
    }
    out
}
