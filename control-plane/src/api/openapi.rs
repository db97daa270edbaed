//! `GET /openapi.json`: the API described (OpenAPI 3.1), generated from the handlers'
//! `#[utoipa::path]` annotations and their typed bodies.
//!
//! What every authenticated route shares is added here, from the route table in `mod.rs` rather
//! than by hand on each handler: the bearer security requirement, the role in `x-required-role`
//! and the description, and the 401, 403 and 429 responses with the error envelope. The
//! document is unauthenticated, like Prometheus' own: it is no secret (it is in the source) and
//! clients read it before they have a token.

use std::sync::Arc;

use axum::{
    Extension,
    http::header,
    response::{IntoResponse, Response},
};
use utoipa::{
    OpenApi,
    openapi::{
        self, ContentBuilder, Ref, ResponseBuilder,
        header::Header,
        schema::{ObjectBuilder, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

use super::{
    Access, alerts, backups, enrollment,
    error::{ErrorBody, ErrorDetail},
    logs, ops, prom, reports, schema,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ai-semble Ops control plane",
        description = "Fleet operations API. Errors are `{\"error\":{\"code\",\"message\",\"request_id\"}}` \
            (the Prometheus API under `/api/v1` keeps Prometheus' error format for its own 400s). \
            Send `Authorization: Bearer <token>`; each operation's `x-required-role` names the \
            least role it needs (`viewer` < `operator` < `admin`; `none`: no token). \
            Each token is rate limited (429 with `Retry-After`).",
        license(name = "Apache-2.0"),
    ),
    paths(
        ops::health,
        serve,
        super::metrics,
        dashboard,
        dashboard_asset,
        ops::status,
        ops::agents,
        ops::agent,
        ops::health_comprehensive,
        ops::metrics_query,
        ops::monitoring_start,
        ops::monitoring_stop,
        ops::revoke,
        ops::forget,
        enrollment::create_token,
        prom::instant_query,
        prom::instant_query_post,
        prom::range_query,
        prom::range_query_post,
        prom::series,
        prom::series_post,
        prom::labels,
        prom::labels_post,
        prom::label_values,
        alerts::prometheus_rules,
        alerts::prometheus_alerts,
        alerts::list,
        alerts::rules,
        alerts::put_rules,
        alerts::silences,
        alerts::post_silence,
        alerts::delete_silence,
        reports::report,
        logs::search,
        logs::stats,
        logs::export,
        logs::audit,
        logs::audit_verify,
        logs::cleanup,
        backups::status,
        backups::put_job,
        backups::delete_job,
        backups::manual,
        backups::snapshots,
        backups::restore,
        backups::check,
    ),
    components(schemas(ErrorBody, ErrorDetail, alerts::RuleProblem, schema::EventDoc)),
    tags(
        (name = "ops", description = "Fleet status, agents, health, queries, monitoring, revocation."),
        (name = "alerts", description = "Alerts, rules and silences."),
        (name = "prometheus", description = "The Prometheus HTTP API subset Grafana uses."),
        (name = "logs", description = "Agents' log lines and the hash-chained audit log."),
        (name = "backups", description = "Backup jobs, runs, snapshots, restores and repository checks."),
    ),
)]
struct ApiDoc;

/// `GET /` (documented here; `dashboard.rs` serves it).
#[utoipa::path(get, path = "/", tag = "ops",
    responses((status = 200, description = "The web dashboard.", content_type = "text/html", body = String)))]
#[allow(dead_code)]
fn dashboard() {}

/// `GET /assets/{file}`: the dashboard's scripts, styles and icons (documented here;
/// `dashboard.rs` serves them, gzip-encoded when asked, with ETags).
#[utoipa::path(get, path = "/assets/{file}", tag = "ops",
    params(("file" = String, Path, description = "Asset name, e.g. `app.js`.")),
    responses(
        (status = 200, description = "The asset.", body = String),
        (status = 304, description = "Not modified (`If-None-Match`)."),
        (status = 404, description = "No such asset.", body = ErrorBody),
    ))]
#[allow(dead_code)]
fn dashboard_asset() {}

/// The rendered document, shared by every request.
#[derive(Debug, Clone)]
pub(super) struct Rendered(Arc<str>);

impl Rendered {
    /// Renders the document for these routes.
    pub(super) fn new(access: &[(&'static str, &'static str, Access)]) -> Self {
        let json = document(access).to_json().unwrap_or_default();
        Self(json.into())
    }
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object)))]
pub(super) async fn serve(Extension(Rendered(json)): Extension<Rendered>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}

/// The document, with each route's access from the route table.
pub(super) fn document(access: &[(&'static str, &'static str, Access)]) -> openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("asb_…")
                    .description(Some(
                        "An API token from `aisemble-cp token create --role viewer|operator|admin`.",
                    ))
                    .build(),
            ),
        );
    }
    let error = |description: &str| {
        ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
    };
    for &(method, path, access) in access {
        let Some(item) = doc.paths.paths.get_mut(path) else {
            continue;
        };
        let operation = match method {
            "GET" => item.get.as_mut(),
            "POST" => item.post.as_mut(),
            "PUT" => item.put.as_mut(),
            "DELETE" => item.delete.as_mut(),
            _ => None,
        };
        let Some(operation) = operation else {
            continue;
        };
        let mut extensions = operation.extensions.take().unwrap_or_default();
        extensions.insert("x-required-role".into(), access.as_str().into());
        operation.extensions = Some(extensions);
        let Access::Token(role) = access else {
            // An empty requirement: no authentication.
            operation.security = Some(vec![SecurityRequirement::default()]);
            continue;
        };
        operation.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        let note = format!(
            "Requires a bearer token with role `{}` or higher.",
            role.as_str()
        );
        operation.description = Some(match operation.description.take() {
            Some(text) if !text.is_empty() => format!("{text}\n\n{note}"),
            _ => note,
        });
        let responses = &mut operation.responses.responses;
        responses
            .entry("401".into())
            .or_insert_with(|| error("No or invalid token.").build().into());
        responses.entry("403".into()).or_insert_with(|| {
            error(&format!("The token's role is below `{}`.", role.as_str()))
                .build()
                .into()
        });
        responses.entry("429".into()).or_insert_with(|| {
            error("The token's rate limit is spent; retry after `Retry-After` seconds.")
                .header(
                    "Retry-After",
                    Header::new(ObjectBuilder::new().schema_type(Type::Integer)),
                )
                .build()
                .into()
        });
        if method != "GET" && method != "DELETE" {
            responses
                .entry("413".into())
                .or_insert_with(|| error("The body is over the 1 MiB limit.").build().into());
        }
    }
    doc
}

#[cfg(test)]
mod tests;

/// The HTTP method of an operation, for the tests' walk over the document.
#[cfg(test)]
fn methods(item: &openapi::PathItem) -> Vec<(openapi::HttpMethod, &openapi::path::Operation)> {
    use openapi::HttpMethod;
    [
        (HttpMethod::Get, item.get.as_ref()),
        (HttpMethod::Post, item.post.as_ref()),
        (HttpMethod::Put, item.put.as_ref()),
        (HttpMethod::Delete, item.delete.as_ref()),
        (HttpMethod::Patch, item.patch.as_ref()),
        (HttpMethod::Head, item.head.as_ref()),
    ]
    .into_iter()
    .filter_map(|(m, o)| o.map(|o| (m, o)))
    .collect()
}
