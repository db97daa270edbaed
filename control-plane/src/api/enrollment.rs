//! `POST /ops/enrollment/tokens` (admin): a one-time token with which a new host enrolls
//! (`aisemble-agent enroll`), the API twin of `aisemble-cp enroll-token create`.

use aisemble_shared::ids::AgentId;
use axum::{Extension, Json, body::Bytes, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AppState, error::ApiError, error::ErrorBody, logs::parse_body};
use crate::{
    auth::Identity,
    commands::enroll_command,
    enroll::{DEFAULT_TTL, check_ttl},
    reports::text::rfc3339,
    store::now_ms,
};

/// What token to make.
#[derive(Deserialize, Debug, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EnrollmentTokenRequest {
    /// How long it may be used (`30m`, `1h`, `7d`; default `1h`, at most `30d`).
    #[serde(default)]
    #[schema(example = "1h")]
    ttl: Option<String>,
    /// Enroll only this agent name. Needed to re-enroll a name that holds a valid certificate.
    #[serde(default)]
    #[schema(example = "gpu-node-07")]
    agent: Option<String>,
}

/// A new enrollment token; the token is shown only here.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct EnrollmentTokenCreated {
    /// The token (`asbe_<id>.<secret>`), for `aisemble-agent enroll --token`.
    token: String,
    /// Its public id.
    id: String,
    /// The only agent name it enrolls, if bound.
    agent: Option<String>,
    /// Expiry, RFC 3339.
    expires_at: String,
    /// SHA-256 of the CA certificate, for `--ca-fingerprint`.
    ca_fingerprint: String,
    /// The command to run on the new host.
    command: String,
}

/// `POST /ops/enrollment/tokens`: creates a one-time enrollment token.
#[utoipa::path(post, path = "/ops/enrollment/tokens", tag = "ops",
    request_body(content = EnrollmentTokenRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; the token is shown once.", body = EnrollmentTokenCreated),
        (status = 422, description = "A bad `ttl` or `agent`.", body = ErrorBody),
    ))]
pub(super) async fn create_token(
    State(state): State<AppState>,
    identity: Option<Extension<Identity>>,
    body: Bytes,
) -> Result<(StatusCode, Json<EnrollmentTokenCreated>), ApiError> {
    let request: EnrollmentTokenRequest = parse_body(&body, "enrollment token request")?;
    let ttl = match request.ttl.as_deref() {
        None => DEFAULT_TTL,
        Some(text) => {
            let ttl = humantime::parse_duration(text.trim())
                .map_err(|e| ApiError::unprocessable(format!("ttl: {e}")))?;
            check_ttl(ttl).map_err(|e| ApiError::unprocessable(format!("ttl: {e}")))?;
            ttl
        }
    };
    let agent = request
        .agent
        .as_deref()
        .map(AgentId::parse)
        .transpose()
        .map_err(|e| ApiError::unprocessable(format!("agent: {e}")))?;
    let created_by = identity.map_or_else(|| "api".to_owned(), |Extension(i)| i.name);
    let context = std::sync::Arc::clone(&state.ingest);
    let (record, token) = tokio::task::spawn_blocking(move || {
        context
            .enrollment
            .create(ttl, agent.as_ref(), &created_by, now_ms())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let ca_fingerprint = state.pki.ca_fingerprint_sha256();
    tracing::info!(id = %record.id, agent = ?record.agent, "Enrollment token created through the API.");
    Ok((
        StatusCode::CREATED,
        Json(EnrollmentTokenCreated {
            command: enroll_command(&state.public_address, &token, &ca_fingerprint),
            token,
            id: record.id,
            agent: record.agent,
            expires_at: rfc3339(record.expires_at_ms),
            ca_fingerprint,
        }),
    ))
}
