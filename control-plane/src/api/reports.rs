//! `GET /ops/reports/{daily|weekly|monthly}`: the operations report over the last day, week or 30
//! days (see [`crate::reports`]). This handler only gathers the inputs (agents, alerts,
//! certificates, refusal counters) and runs the pure computation on a blocking thread.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{
    Json,
    extract::{Path, State},
};

use super::{
    AppState,
    error::{ApiError, ErrorBody},
};
use crate::{
    reports::{self, AgentInput, AlertInput, CertificateInput, Inputs, Period, Report},
    store::now_ms,
    telemetry::reject,
};

/// Every reason counted in `aisemble_ingest_rejected_total` that concerns who may connect.
const SECURITY_REASONS: [&str; 6] = [
    reject::NO_CLIENT_CERTIFICATE,
    reject::UNKNOWN_CA,
    reject::EXPIRED,
    reject::REVOKED,
    reject::BAD_CERTIFICATE,
    reject::ALPN,
];

/// `GET /ops/reports/{period}`.
#[utoipa::path(get, path = "/ops/reports/{period}", tag = "ops",
    params(("period" = String, Path, description = "`daily`, `weekly` or `monthly`", example = "daily")),
    responses(
        (status = 200, description = "The operations report over the last day, week or 30 days.", body = Report),
        (status = 404, description = "No such report period.", body = ErrorBody),
    ))]
pub(super) async fn report(
    State(state): State<AppState>,
    Path(period): Path<String>,
) -> Result<Json<Report>, ApiError> {
    let period = Period::parse(&period).ok_or_else(|| {
        ApiError::not_found(format!(
            "no report {period:?}: use daily, weekly or monthly"
        ))
    })?;
    let agents = state
        .registry
        .list()
        .iter()
        .map(|a| AgentInput {
            name: a.record.name.clone(),
            connected: a.connected,
            last_seen_ms: a.record.last_seen_ms,
        })
        .collect();
    let alerts = state
        .alerting
        .manager
        .snapshot()
        .alerts()
        .filter(|a| a.state != "inactive")
        .map(|a| AlertInput {
            name: a.name.clone(),
            state: a.state.to_owned(),
            labels: a.labels.clone(),
            summary: a.annotations.get("summary").cloned(),
            fired_at_ms: a.fired_at_ms,
        })
        .collect();
    let refused_connections = SECURITY_REASONS
        .iter()
        .map(|r| {
            (
                (*r).to_owned(),
                state
                    .telemetry
                    .ingest_rejected
                    .with_label_values(&[*r])
                    .get(),
            )
        })
        .collect();
    let pki = std::sync::Arc::clone(&state.pki);
    let store = state.store.clone();
    let now = now_ms();
    let report = tokio::task::spawn_blocking(move || {
        // The control plane's own CA and server certificates expire too, and matter most.
        let mut certificates: Vec<CertificateInput> = [
            ("control plane CA", Some(pki.ca_der())),
            ("control plane server", pki.server_chain().first()),
        ]
        .into_iter()
        .filter_map(|(name, der)| own_certificate(name, der?))
        .collect();
        certificates.extend(
            pki.list()
                .map_err(ApiError::internal)?
                .into_iter()
                .filter(|c| c.revoked_at.is_none())
                .map(|c| CertificateInput {
                    name: c.name.as_str().to_owned(),
                    serial_hex: c.serial_hex,
                    not_after_ms: ms(c.not_after),
                }),
        );
        let inputs = Inputs {
            period,
            now_ms: now,
            agents,
            alerts,
            certificates,
            refused_connections,
        };
        reports::compute(&store, &inputs).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(report?))
}

/// One of the control plane's own certificates; `None` if it does not parse (it was loaded and
/// used at start, so that would be a bug elsewhere, not a reason to fail the report).
fn own_certificate(name: &str, der: &[u8]) -> Option<CertificateInput> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(CertificateInput {
        name: name.to_owned(),
        // As the index writes serials: without leading zero bytes.
        serial_hex: hex::encode(
            cert.raw_serial()
                .iter()
                .skip_while(|b| **b == 0)
                .copied()
                .collect::<Vec<u8>>(),
        ),
        not_after_ms: cert.validity().not_after.timestamp().saturating_mul(1000),
    })
}

fn ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
