//! The one place actions are recorded for the audit trail (SPEC §8): [`append`], for enrollments
//! (`ingest::enroll`) and for API calls. Of those, every mutating call
//! (whatever its outcome), every `POST` that reads logs or the audit log (data access), and every
//! refused authentication or authorization (401, 403). Each goes into the hash-chained audit log
//! (`logs::audit`) and, with its hash, into the control plane's own log as a `tracing` event with
//! target `audit`: a copy outside the database to check the chain's head against.
//!
//! The Prometheus API's form-encoded `POST`s are queries, not changes, and are not recorded
//! unless refused.

use axum::{
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};

use super::AppState;
use crate::{
    auth::Identity,
    logs::AuditEvent,
    store::{Store, now_ms},
};

/// Appends `event` to the audit chain and waits for it (so a call's entry is in the log when
/// its response leaves), then emits it as a `tracing` event with target `audit`, its `seq` and
/// `hash`. Every audited action goes through here: API calls and enrollments.
pub(crate) async fn append(store: &Store, event: AuditEvent) {
    let chain = store.clone();
    let copy = event.clone();
    let appended = tokio::task::spawn_blocking(move || chain.audit().append(copy, now_ms()))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let (seq, hash) = match &appended {
        Ok(record) => (record.seq, record.hash.as_str()),
        Err(error) => {
            tracing::error!(%error, "Could not append to the audit log.");
            (0, "")
        }
    };
    tracing::info!(
        target: "audit",
        actor = event.actor,
        token_id = event.token_id,
        role = event.role,
        method = event.method,
        path = event.path,
        status = event.status,
        outcome = event.outcome,
        request_id = event.request_id,
        seq,
        hash,
        "Audited."
    );
}

/// Whether a call changes state.
fn mutating(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !path.starts_with("/api/v1/")
}

/// Middleware: emits the audit event after the response is made. The caller's identity is put
/// into the response by the auth middleware.
pub(super) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
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
        append(
            &state.store,
            AuditEvent {
                actor: actor.to_owned(),
                token_id: token_id.to_owned(),
                role: role.to_owned(),
                method: method.as_str().to_owned(),
                path,
                status,
                outcome: outcome.to_owned(),
                request_id,
            },
        )
        .await;
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
