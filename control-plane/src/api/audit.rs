//! The one place API calls are recorded for the audit trail (SPEC §8): every mutating call
//! (whatever its outcome) and every refused authentication or authorization (401, 403), as a
//! structured `tracing` event with target `audit`. The hash-chained audit log, when it comes,
//! subscribes to these events; nothing else needs to change.
//!
//! The Prometheus API's form-encoded `POST`s are queries, not changes, and are not recorded
//! unless refused.

use axum::{extract::Request, http::Method, middleware::Next, response::Response};

use crate::auth::Identity;

/// Whether a call changes state.
fn mutating(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !path.starts_with("/api/v1/")
}

/// Middleware: emits the audit event after the response is made. The caller's identity is put
/// into the response by the auth middleware.
pub(super) async fn record(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = super::request_id_of(request.headers()).to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let refused = matches!(status, 401 | 403);
    if refused || mutating(&method, &path) {
        let identity = response.extensions().get::<Identity>();
        let actor = identity.map_or("", |i| i.name.as_str());
        let token_id = identity.map_or("", |i| i.id.as_str());
        let role = identity.map_or("none", |i| i.role.as_str());
        let outcome = match status {
            401 => "unauthenticated",
            403 => "forbidden",
            s if s < 400 => "success",
            _ => "failure",
        };
        tracing::info!(
            target: "audit",
            actor,
            token_id,
            role,
            method = %method,
            path,
            status,
            outcome,
            request_id,
            "API call audited."
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_not_mutations() {
        let check = |method: Method, path: &str, expected: bool| {
            assert_eq!(mutating(&method, path), expected, "{method} {path}");
        };
        check(Method::GET, "/ops/status", false);
        check(Method::POST, "/api/v1/query", false);
        check(Method::POST, "/ops/silences", true);
        check(Method::PUT, "/ops/alerts/rules", true);
        check(Method::DELETE, "/ops/silences/x", true);
        check(Method::POST, "/ops/agents/a/revoke", true);
    }
}
