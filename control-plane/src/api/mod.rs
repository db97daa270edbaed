//! The HTTP API (axum): `/health`, `/metrics`, `/ops/*`, the Prometheus API under `/api/v1`, and
//! the web page at `/`.
//!
//! Every response carries `X-Request-ID` (taken from the request when present). Every `/ops` and
//! `/api/v1` route requires a bearer token of at least the route's role; `/metrics` does when
//! configured. Bodies are capped at 1 MiB and requests time out after 30 s.

mod alerts;
mod dashboard;
mod error;
mod exposition;
mod ops;
mod prom;
mod reports;

pub use error::ApiError;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aisemble_certs::Pki;
use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderName, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{
    alerts::engine::Alerting,
    auth::{Auth, Role},
    ingest::IngestContext,
    registry::Registry,
    store::Store,
    telemetry::Telemetry,
};

/// Everything handlers need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Series and samples.
    pub store: Store,
    /// Agents.
    pub registry: Arc<Registry>,
    /// Own metrics.
    pub telemetry: Telemetry,
    /// Tokens.
    pub auth: Arc<Auth>,
    /// CA and certificate index.
    pub pki: Arc<Pki>,
    /// Ingest state (revocation of live sessions).
    pub ingest: Arc<IngestContext>,
    /// Whether `/metrics` requires a viewer token.
    pub metrics_require_token: bool,
    /// Process start.
    pub started: Instant,
    /// Command id source.
    pub command_ids: Arc<AtomicU64>,
    /// Rules, alerts, silences, routing.
    pub alerting: Alerting,
}

impl AppState {
    /// A fresh id for a command sent to agents.
    pub fn next_command_id(&self) -> u64 {
        self.command_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

const BODY_LIMIT: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole API.
pub fn router(state: AppState) -> Router {
    let viewer = Router::new()
        .route("/ops/status", get(ops::status))
        .route("/ops/agents", get(ops::agents))
        .route("/ops/agents/{id}", get(ops::agent))
        .route("/ops/health/comprehensive", get(ops::health_comprehensive))
        .route("/ops/metrics/query", get(ops::metrics_query))
        .route(
            "/api/v1/query",
            get(prom::instant_query).post(prom::instant_query),
        )
        .route(
            "/api/v1/query_range",
            get(prom::range_query).post(prom::range_query),
        )
        .route("/api/v1/series", get(prom::series).post(prom::series))
        .route("/api/v1/labels", get(prom::labels).post(prom::labels))
        .route("/api/v1/label/{name}/values", get(prom::label_values))
        .route("/api/v1/rules", get(alerts::prometheus_rules))
        .route("/api/v1/alerts", get(alerts::prometheus_alerts))
        .route("/ops/alerts", get(alerts::list))
        .route("/ops/alerts/rules", get(alerts::rules))
        .route("/ops/silences", get(alerts::silences))
        .route("/ops/reports/{period}", get(reports::report))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Role::Viewer),
            require,
        ));
    let operator = Router::new()
        .route("/ops/monitoring/start", post(ops::monitoring_start))
        .route("/ops/monitoring/stop", post(ops::monitoring_stop))
        .route("/ops/silences", post(alerts::post_silence))
        .route(
            "/ops/silences/{id}",
            axum::routing::delete(alerts::delete_silence),
        )
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Role::Operator),
            require,
        ));
    let admin = Router::new()
        .route("/ops/agents/{id}/revoke", post(ops::revoke))
        .route("/ops/alerts/rules", axum::routing::put(alerts::put_rules))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Role::Admin),
            require,
        ));
    let metrics =
        if state.metrics_require_token {
            Router::new().route("/metrics", get(metrics)).route_layer(
                middleware::from_fn_with_state((state.clone(), Role::Viewer), require),
            )
        } else {
            Router::new().route("/metrics", get(metrics))
        };
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/health", get(ops::health))
        .route("/", get(dashboard::page))
        .merge(metrics)
        .merge(viewer)
        .merge(operator)
        .merge(admin)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), record_metrics))
        .layer(middleware::from_fn(error::render))
        .layer(TimeoutLayer::with_status_code(http::StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = tokio::task::spawn_blocking(move || exposition::render(&state))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Checks the bearer token against the route's role.
async fn require(
    State((state, role)): State<(AppState, Role)>,
    request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        return ApiError::unauthorized(
            "missing bearer token: send `Authorization: Bearer <token>`",
        )
        .into_response();
    };
    match state.auth.verify(token) {
        None => {
            tracing::warn!(path = %request.uri().path(), "Request with an invalid token.");
            ApiError::unauthorized("invalid token").into_response()
        }
        Some((name, have)) if have < role => ApiError::forbidden(format!(
            "token {name:?} has role {}; this needs {}",
            have.as_str(),
            role.as_str()
        ))
        .into_response(),
        Some(_) => next.run(request).await,
    }
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    state
        .telemetry
        .http_requests
        .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
        .inc();
    state
        .telemetry
        .http_duration_seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}
