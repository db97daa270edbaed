//! The HTTP API (axum): `/health`, `/metrics`, `/ops/*`, the Prometheus API under `/api/v1`, and
//! the web page at `/`.
//!
//! Every response carries `X-Request-ID` (taken from the request when present). Every `/ops` and
//! `/api/v1` route requires a bearer token of at least the route's role; `/metrics` does when
//! configured; `/health` and `/openapi.json` never do. [`routes`] is the one table of routes,
//! methods and roles: the router and the OpenAPI document (`openapi.rs`) are both built from it.
//! Each token has a rate limit (`ratelimit.rs`); bodies are capped at 1 MiB and requests time out
//! after 30 s; every mutating call and every refused token is recorded by `audit.rs`.

mod alerts;
pub(crate) mod audit;
mod backups;
mod dashboard;
mod enrollment;
mod error;
mod exposition;
mod logs;
mod openapi;
mod ops;
mod prom;
mod ratelimit;
mod reports;
mod schema;
pub mod tls;

pub use error::ApiError;
pub use ratelimit::RateLimits;

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
    handler::Handler,
    http::{HeaderName, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter, on},
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
    /// Per-token request rate limits.
    pub limits: Arc<RateLimits>,
    /// Process start.
    pub started: Instant,
    /// Command id source.
    pub command_ids: Arc<AtomicU64>,
    /// Rules, alerts, silences, routing.
    pub alerting: Alerting,
    /// The fleet-wide figures behind `/ops/status`.
    pub(crate) status_cache: Arc<ops::StatusCache>,
    /// This month's tokens and cost, kept incrementally (shared with the rule manager).
    pub month_usage: crate::usage::MonthUsage,
    /// The QUIC address agents dial (`server.public_address`), for enrollment commands.
    pub public_address: Arc<str>,
    /// Backup jobs, runs and the repository.
    pub backups: crate::backup::Backups,
    /// The threads that run log and audit reads.
    pub readers: crate::read_pool::ReadPool,
}

impl AppState {
    /// A fresh id for a command sent to agents.
    pub fn next_command_id(&self) -> u64 {
        self.command_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

const BODY_LIMIT: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: no token needed.
    Public,
    /// A bearer token of at least this role.
    Token(Role),
}

impl Access {
    /// `none`, `viewer`, `operator` or `admin`, as `x-required-role` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "none",
            Self::Token(role) => role.as_str(),
        }
    }
}

/// One route: the router and the OpenAPI document are both built from [`routes`], so the role a
/// route is documented with is the role it is served with.
struct Route {
    access: Access,
    method: &'static str,
    path: &'static str,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(access: Access, method: &'static str, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = match method {
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        _ => MethodFilter::GET,
    };
    Route {
        access,
        method,
        path,
        handler: on(filter, handler),
    }
}

/// Every route with its method and access.
fn routes(metrics_require_token: bool) -> Vec<Route> {
    use Access::{Public, Token};
    let viewer = Token(Role::Viewer);
    let operator = Token(Role::Operator);
    let admin = Token(Role::Admin);
    vec![
        route(Public, "GET", "/health", ops::health),
        route(Public, "GET", "/openapi.json", openapi::serve),
        route(Public, "GET", "/", dashboard::page),
        route(Public, "GET", "/assets/{file}", dashboard::asset),
        route(
            if metrics_require_token {
                viewer
            } else {
                Public
            },
            "GET",
            "/metrics",
            metrics,
        ),
        route(viewer, "GET", "/ops/status", ops::status),
        route(viewer, "GET", "/ops/agents", ops::agents),
        route(viewer, "GET", "/ops/agents/{id}", ops::agent),
        route(
            viewer,
            "GET",
            "/ops/health/comprehensive",
            ops::health_comprehensive,
        ),
        route(viewer, "GET", "/ops/metrics/query", ops::metrics_query),
        route(viewer, "GET", "/api/v1/query", prom::instant_query),
        route(viewer, "POST", "/api/v1/query", prom::instant_query),
        route(viewer, "GET", "/api/v1/query_range", prom::range_query),
        route(viewer, "POST", "/api/v1/query_range", prom::range_query),
        route(viewer, "GET", "/api/v1/series", prom::series),
        route(viewer, "POST", "/api/v1/series", prom::series),
        route(viewer, "GET", "/api/v1/labels", prom::labels),
        route(viewer, "POST", "/api/v1/labels", prom::labels),
        route(
            viewer,
            "GET",
            "/api/v1/label/{name}/values",
            prom::label_values,
        ),
        route(viewer, "GET", "/api/v1/rules", alerts::prometheus_rules),
        route(viewer, "GET", "/api/v1/alerts", alerts::prometheus_alerts),
        route(viewer, "GET", "/ops/alerts", alerts::list),
        route(viewer, "GET", "/ops/alerts/rules", alerts::rules),
        route(viewer, "GET", "/ops/silences", alerts::silences),
        route(viewer, "GET", "/ops/reports/{period}", reports::report),
        route(viewer, "POST", "/ops/logs/search", logs::search),
        route(viewer, "GET", "/ops/logs/stats", logs::stats),
        route(viewer, "POST", "/ops/logs/export", logs::export),
        route(
            operator,
            "POST",
            "/ops/logs/audit/verify",
            logs::audit_verify,
        ),
        route(admin, "POST", "/ops/logs/audit", logs::audit),
        route(admin, "POST", "/ops/logs/cleanup", logs::cleanup),
        route(
            operator,
            "POST",
            "/ops/monitoring/start",
            ops::monitoring_start,
        ),
        route(
            operator,
            "POST",
            "/ops/monitoring/stop",
            ops::monitoring_stop,
        ),
        route(operator, "POST", "/ops/silences", alerts::post_silence),
        route(
            operator,
            "DELETE",
            "/ops/silences/{id}",
            alerts::delete_silence,
        ),
        route(viewer, "GET", "/ops/backups/status", backups::status),
        route(viewer, "GET", "/ops/backups/snapshots", backups::snapshots),
        route(operator, "POST", "/ops/backups/jobs", backups::put_job),
        route(
            operator,
            "DELETE",
            "/ops/backups/jobs/{name}",
            backups::delete_job,
        ),
        route(operator, "POST", "/ops/backups/manual", backups::manual),
        route(operator, "POST", "/ops/backups/restore", backups::restore),
        route(operator, "POST", "/ops/backups/check", backups::check),
        route(admin, "POST", "/ops/agents/{id}/revoke", ops::revoke),
        route(admin, "DELETE", "/ops/agents/{id}", ops::forget),
        route(
            admin,
            "POST",
            "/ops/enrollment/tokens",
            enrollment::create_token,
        ),
        route(admin, "PUT", "/ops/alerts/rules", alerts::put_rules),
    ]
}

/// `(method, path, access)` of every documented route.
pub fn access_table(metrics_require_token: bool) -> Vec<(&'static str, &'static str, Access)> {
    routes(metrics_require_token)
        .into_iter()
        .map(|r| (r.method, r.path, r.access))
        .collect()
}

/// The request's `X-Request-ID` (set by the outermost layer when the client sent none), or "".
fn request_id_of(headers: &http::HeaderMap) -> &str {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let document = openapi::Rendered::new(&access_table(state.metrics_require_token));
    // One router per access level, each behind its own auth layer; axum merges the method
    // routers of a path that appears in several (GET /ops/silences is viewer, POST operator).
    let mut public = Router::new();
    let mut by_role: Vec<(Role, Router<AppState>)> = [Role::Viewer, Role::Operator, Role::Admin]
        .into_iter()
        .map(|role| (role, Router::new()))
        .collect();
    for Route {
        access,
        path,
        handler,
        ..
    } in routes(state.metrics_require_token)
    {
        match access {
            Access::Public => public = public.route(path, handler),
            Access::Token(role) => {
                for (have, router) in &mut by_role {
                    if *have == role {
                        *router = std::mem::take(router).route(path, handler);
                        break;
                    }
                }
            }
        }
    }
    let mut app = public;
    for (role, router) in by_role {
        app = app.merge(router.route_layer(middleware::from_fn_with_state(
            (state.clone(), role),
            require,
        )));
    }
    let request_id = HeaderName::from_static("x-request-id");
    // Outermost last. The error renderer wraps the body limit and the timeout so their 413 and
    // 503 carry the error envelope too; the audit sees every request's final status.
    app.fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), record_metrics))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), audit::record))
        .layer(middleware::from_fn(error::render))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request_id_of(request.headers());
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(axum::Extension(document))
        .with_state(state)
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Own metrics, per-agent buffer metrics and the latest value of every fleet series.",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
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

/// Checks the bearer token against the route's role, then the token's rate limit. The caller's
/// identity goes into the request (for handlers) and the response (for the audit record).
async fn require(
    State((state, role)): State<(AppState, Role)>,
    mut request: Request,
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
    let Some(identity) = state.auth.verify(token) else {
        return ApiError::unauthorized("invalid token").into_response();
    };
    let mut response = if identity.role < role {
        ApiError::forbidden(format!(
            "token {:?} has role {}; this needs {}",
            identity.name,
            identity.role.as_str(),
            role.as_str()
        ))
        .into_response()
    } else if let Err(retry_after) = state.limits.check(&identity.id) {
        ApiError::too_many_requests(retry_after).into_response()
    } else {
        request.extensions_mut().insert(identity.clone());
        next.run(request).await
    };
    response.extensions_mut().insert(identity);
    response
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
