//! The Prometheus HTTP API subset Grafana uses (`/api/v1/query`, `query_range`, `series`,
//! `labels`, `label/{name}/values`), with Prometheus' JSON shapes and error format, GET or
//! form-encoded POST.
//!
//! Parameters are read by hand from the query string and the form body (Prometheus allows both,
//! and repeated `match[]`); the OpenAPI document describes them with [`QueryForm`] and friends.

use std::collections::BTreeMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::{AppState, exposition::format_value};
use crate::{
    query::{self, QueryError, Value},
    store::{Labels, now_ms},
};

/// A Prometheus-format API error.
#[derive(Debug)]
pub(super) struct PromError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    fn bad_data(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }
}

impl From<QueryError> for PromError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::Store(_) => {
                tracing::error!(%error, "Query failed in the store.");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kind: "internal",
                    message: "storage error".into(),
                }
            }
            QueryError::Unsupported(_) => Self {
                status: StatusCode::BAD_REQUEST,
                kind: "bad_data",
                message: error.to_string(),
            },
            _ => Self::bad_data(error.to_string()),
        }
    }
}

/// Prometheus' error body (the Prometheus API keeps Prometheus' format).
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct PromErrorBody {
    /// The message.
    error: String,
    /// `bad_data` or `internal`.
    #[serde(rename = "errorType")]
    #[schema(example = "bad_data")]
    error_type: &'static str,
    /// Always `error`.
    #[schema(example = "error")]
    status: &'static str,
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(PromErrorBody {
                error: self.message,
                error_type: self.kind,
                status: "error",
            }),
        )
            .into_response()
    }
}

/// Prometheus' success envelope.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct PromSuccess<T> {
    data: T,
    /// Always `success`.
    #[schema(example = "success")]
    status: &'static str,
}

pub(super) fn success<T: Serialize>(data: T) -> Response {
    Json(PromSuccess {
        data,
        status: "success",
    })
    .into_response()
}

/// `[time in Unix seconds, value as a string]`, as Prometheus writes a sample.
#[derive(Serialize, Debug)]
pub(super) struct SamplePair(f64, String);

impl utoipa::PartialSchema for SamplePair {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, Type};
        ArrayBuilder::new()
            .description(Some(
                "[time in Unix seconds, value as a string (\"NaN\" and \"+Inf\" included)]",
            ))
            .prefix_items([
                ObjectBuilder::new().schema_type(Type::Number).build(),
                ObjectBuilder::new().schema_type(Type::String).build(),
            ])
            .items(ArrayItems::False)
            .min_items(Some(2))
            .max_items(Some(2))
            .build()
            .into()
    }
}

impl ToSchema for SamplePair {}

/// One series of an instant vector.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct VectorSample {
    #[schema(value_type = BTreeMap<String, String>)]
    metric: Labels,
    value: SamplePair,
}

/// One series of a range vector.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct MatrixSeries {
    #[schema(value_type = BTreeMap<String, String>)]
    metric: Labels,
    values: Vec<SamplePair>,
}

/// A query result in Prometheus' shape: `{"resultType": ..., "result": ...}`.
#[derive(Serialize, Debug, ToSchema)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub(crate) enum QueryData {
    /// A number at a time.
    Scalar(SamplePair),
    /// A string at a time.
    String(SamplePair),
    /// One sample per series.
    Vector(Vec<VectorSample>),
    /// Samples per series.
    Matrix(Vec<MatrixSeries>),
}

/// Query string and form body parameters, repeated keys kept.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(method: &Method, query: Option<String>, body: &Bytes) -> Result<Self, PromError> {
        let mut params: Vec<(String, String)> = match query {
            Some(q) => serde_urlencoded::from_str(&q)
                .map_err(|e| PromError::bad_data(format!("invalid query string: {e}")))?,
            None => Vec::new(),
        };
        if method == Method::POST && !body.is_empty() {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| PromError::bad_data(format!("invalid form body: {e}")))?;
            params.extend(form);
        }
        Ok(Self(params))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn time(&self, key: &str, default: i64) -> Result<i64, PromError> {
        self.get(key).map_or(Ok(default), |v| {
            parse_time(v)
                .map_err(|e| PromError::bad_data(format!("invalid parameter \"{key}\": {e}")))
        })
    }
}

/// A timestamp: Unix seconds (fractions allowed) or RFC 3339; returns milliseconds.
pub(super) fn parse_time(value: &str) -> Result<i64, String> {
    if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() {
            return Err(format!("cannot parse {value:?} to a valid timestamp"));
        }
        return Ok((seconds * 1000.0).round() as i64);
    }
    humantime::parse_rfc3339_weak(value)
        .map_err(|_| format!("cannot parse {value:?} to a valid timestamp"))
        .map(|t| match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        })
}

/// A duration: seconds (fractions allowed) or a Prometheus duration (`15s`, `1m`); returns ms.
pub(super) fn parse_duration(value: &str) -> Result<i64, String> {
    if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() {
            return Err(format!("cannot parse {value:?} to a valid duration"));
        }
        return Ok((seconds * 1000.0).round() as i64);
    }
    humantime::parse_duration(value)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("cannot parse {value:?} to a valid duration"))
}

fn label_map(labels: &Labels) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|p| (p.name.to_string(), p.value.to_string()))
        .collect()
}

fn pair(t: i64, value: String) -> SamplePair {
    SamplePair(t as f64 / 1000.0, value)
}

impl From<Value> for QueryData {
    fn from(value: Value) -> Self {
        match value {
            Value::Scalar(t, v) => Self::Scalar(pair(t, format_value(v))),
            Value::String(t, s) => Self::String(pair(t, s)),
            Value::Vector(samples) => Self::Vector(
                samples
                    .into_iter()
                    .map(|s| VectorSample {
                        value: pair(s.t, format_value(s.v)),
                        metric: s.labels,
                    })
                    .collect(),
            ),
            Value::Matrix(series) => Self::Matrix(
                series
                    .into_iter()
                    .map(|s| MatrixSeries {
                        values: s
                            .samples
                            .iter()
                            .map(|(t, v)| pair(*t, format_value(*v)))
                            .collect(),
                        metric: s.labels,
                    })
                    .collect(),
            ),
        }
    }
}

/// Parameters of an instant query (query string, or form body of a POST).
#[derive(Debug, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only: `Params` reads the same keys.
pub(super) struct QueryForm {
    /// PromQL expression.
    #[param(example = "up")]
    query: String,
    /// Evaluation time: Unix seconds or RFC 3339. Default now.
    time: Option<String>,
}

/// Parameters of a range query.
#[derive(Debug, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only.
pub(super) struct RangeForm {
    /// PromQL expression.
    #[param(example = "up")]
    query: String,
    /// Start: Unix seconds or RFC 3339.
    start: String,
    /// End: Unix seconds or RFC 3339.
    end: String,
    /// Resolution: seconds or a duration (`15s`).
    step: String,
}

/// Series selectors (`match[]`, repeatable; required for `series`).
#[derive(Debug, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only.
pub(super) struct MatchForm {
    /// Series selectors such as `up{job="x"}`.
    #[serde(rename = "match[]")]
    #[param(rename = "match[]")]
    matches: Option<Vec<String>>,
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, PromError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PromError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: e.to_string(),
        })?
        .map_err(PromError::from)
}

/// `GET /api/v1/query`: instant query.
#[utoipa::path(get, path = "/api/v1/query", tag = "prometheus", params(QueryForm),
    responses(
        (status = 200, description = "The result.", body = PromSuccess<QueryData>),
        (status = 400, description = "Bad or unsupported query or time.", body = PromErrorBody),
    ))]
pub(super) async fn instant_query(
    State(state): State<AppState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let result = async {
        let params = Params::parse(&method, q, &body)?;
        let text = params
            .get("query")
            .ok_or_else(|| PromError::bad_data("invalid parameter \"query\": empty query"))?;
        let expr = query::parse(text)?;
        let t = params.time("time", now_ms())?;
        let store = state.store.clone();
        let value = blocking(move || query::instant(&store, &expr, t)).await?;
        Ok::<_, PromError>(success(QueryData::from(value)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/v1/query_range`: range query.
#[utoipa::path(get, path = "/api/v1/query_range", tag = "prometheus", params(RangeForm),
    responses(
        (status = 200, description = "The result (a matrix).", body = PromSuccess<QueryData>),
        (status = 400, description = "Bad or unsupported query, bad times or step.", body = PromErrorBody),
    ))]
pub(super) async fn range_query(
    State(state): State<AppState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let result = async {
        let params = Params::parse(&method, q, &body)?;
        let text = params
            .get("query")
            .ok_or_else(|| PromError::bad_data("invalid parameter \"query\": empty query"))?;
        let expr = query::parse(text)?;
        let start = params
            .get("start")
            .ok_or_else(|| PromError::bad_data("invalid parameter \"start\": missing"))?;
        let end = params
            .get("end")
            .ok_or_else(|| PromError::bad_data("invalid parameter \"end\": missing"))?;
        let step = params
            .get("step")
            .ok_or_else(|| PromError::bad_data("invalid parameter \"step\": missing"))?;
        let start = parse_time(start)
            .map_err(|e| PromError::bad_data(format!("invalid parameter \"start\": {e}")))?;
        let end = parse_time(end)
            .map_err(|e| PromError::bad_data(format!("invalid parameter \"end\": {e}")))?;
        let step = parse_duration(step)
            .map_err(|e| PromError::bad_data(format!("invalid parameter \"step\": {e}")))?;
        let store = state.store.clone();
        let value = blocking(move || query::range(&store, &expr, start, end, step)).await?;
        Ok::<_, PromError>(success(QueryData::from(value)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

fn matcher_sets(params: &Params) -> Result<Vec<Vec<promql_parser::label::Matcher>>, PromError> {
    let mut sets = Vec::new();
    for text in params.all("match[]") {
        let expr = promql_parser::parser::parse(text)
            .map_err(|e| PromError::bad_data(format!("invalid match[] {text:?}: {e}")))?;
        let promql_parser::parser::Expr::VectorSelector(selector) = expr else {
            return Err(PromError::bad_data(format!(
                "invalid match[] {text:?}: must be a series selector"
            )));
        };
        sets.extend(query::selector_matchers(&selector));
    }
    Ok(sets)
}

/// `GET /api/v1/series`: series matching any `match[]`.
#[utoipa::path(get, path = "/api/v1/series", tag = "prometheus", params(MatchForm),
    responses(
        (status = 200, description = "Label sets.", body = PromSuccess<Vec<BTreeMap<String, String>>>),
        (status = 400, description = "No or bad `match[]`.", body = PromErrorBody),
    ))]
pub(super) async fn series(
    State(state): State<AppState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let result = async {
        let params = Params::parse(&method, q, &body)?;
        let sets = matcher_sets(&params)?;
        if sets.is_empty() {
            return Err(PromError::bad_data("no match[] parameter provided"));
        }
        let mut all: Vec<Labels> = Vec::new();
        for set in &sets {
            all.extend(state.store.series(set));
        }
        all.sort();
        all.dedup();
        Ok(success(all.iter().map(label_map).collect::<Vec<_>>()))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/v1/labels`: label names (of the series matching `match[]`, when given).
#[utoipa::path(get, path = "/api/v1/labels", tag = "prometheus", params(MatchForm),
    responses(
        (status = 200, description = "Label names.", body = PromSuccess<Vec<String>>),
        (status = 400, description = "Bad `match[]`.", body = PromErrorBody),
    ))]
pub(super) async fn labels(
    State(state): State<AppState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let result = async {
        let params = Params::parse(&method, q, &body)?;
        let sets = matcher_sets(&params)?;
        let names: Vec<String> = if sets.is_empty() {
            state.store.label_names()
        } else {
            let mut names: Vec<String> = sets
                .iter()
                .flat_map(|set| state.store.series(set))
                .flat_map(|l| l.iter().map(|p| p.name.to_string()).collect::<Vec<_>>())
                .collect();
            names.sort();
            names.dedup();
            names
        };
        Ok::<_, PromError>(success(names))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/v1/label/{name}/values`: a label's values.
#[utoipa::path(get, path = "/api/v1/label/{name}/values", tag = "prometheus",
    params(("name" = String, Path, description = "Label name")),
    responses((status = 200, description = "Values.", body = PromSuccess<Vec<String>>)))]
pub(super) async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    success(state.store.label_values(&name))
}

// The form-encoded POST twins of the GET routes above: same handlers, documented on their own
// because their parameters come in the body.

/// `POST /api/v1/query`: instant query, form-encoded.
#[utoipa::path(post, path = "/api/v1/query", tag = "prometheus",
    request_body(content = QueryForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The result.", body = PromSuccess<QueryData>),
        (status = 400, description = "Bad or unsupported query or time.", body = PromErrorBody),
    ))]
#[allow(dead_code)]
pub(super) fn instant_query_post() {}

/// `POST /api/v1/query_range`: range query, form-encoded.
#[utoipa::path(post, path = "/api/v1/query_range", tag = "prometheus",
    request_body(content = RangeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The result (a matrix).", body = PromSuccess<QueryData>),
        (status = 400, description = "Bad or unsupported query, bad times or step.", body = PromErrorBody),
    ))]
#[allow(dead_code)]
pub(super) fn range_query_post() {}

/// `POST /api/v1/series`: series matching any `match[]`, form-encoded.
#[utoipa::path(post, path = "/api/v1/series", tag = "prometheus",
    request_body(content = MatchForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Label sets.", body = PromSuccess<Vec<BTreeMap<String, String>>>),
        (status = 400, description = "No or bad `match[]`.", body = PromErrorBody),
    ))]
#[allow(dead_code)]
pub(super) fn series_post() {}

/// `POST /api/v1/labels`: label names, form-encoded.
#[utoipa::path(post, path = "/api/v1/labels", tag = "prometheus",
    request_body(content = MatchForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Label names.", body = PromSuccess<Vec<String>>),
        (status = 400, description = "Bad `match[]`.", body = PromErrorBody),
    ))]
#[allow(dead_code)]
pub(super) fn labels_post() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("NaN").is_err());
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("1m"), Ok(60_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert!(parse_duration("soon").is_err());
    }
}
