//! The Prometheus HTTP API subset Grafana uses (`/api/v1/query`, `query_range`, `series`,
//! `labels`, `label/{name}/values`), with Prometheus' JSON shapes and error format, GET or
//! form-encoded POST.

use std::collections::BTreeMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value as Json_, json};

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

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"status": "error", "errorType": self.kind, "error": self.message})),
        )
            .into_response()
    }
}

fn success(data: Json_) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
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

fn labels_json(labels: &Labels) -> Json_ {
    let map: BTreeMap<&str, &str> = labels.iter().map(|p| (&*p.name, &*p.value)).collect();
    json!(map)
}

fn seconds(t: i64) -> Json_ {
    json!(t as f64 / 1000.0)
}

pub(crate) fn value_json(value: Value) -> Json_ {
    match value {
        Value::Scalar(t, v) => {
            json!({"resultType": "scalar", "result": [seconds(t), format_value(v)]})
        }
        Value::String(t, s) => json!({"resultType": "string", "result": [seconds(t), s]}),
        Value::Vector(samples) => json!({
            "resultType": "vector",
            "result": samples.iter().map(|s| json!({"metric": labels_json(&s.labels), "value": [seconds(s.t), format_value(s.v)]})).collect::<Vec<_>>(),
        }),
        Value::Matrix(series) => json!({
            "resultType": "matrix",
            "result": series.iter().map(|s| json!({
                "metric": labels_json(&s.labels),
                "values": s.samples.iter().map(|(t, v)| json!([seconds(*t), format_value(*v)])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    }
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

/// `GET|POST /api/v1/query`.
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
        Ok::<_, PromError>(success(value_json(value)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET|POST /api/v1/query_range`.
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
        Ok::<_, PromError>(success(value_json(value)))
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

/// `GET|POST /api/v1/series`.
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
        Ok(success(json!(
            all.iter().map(labels_json).collect::<Vec<_>>()
        )))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET|POST /api/v1/labels`.
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
        Ok::<_, PromError>(success(json!(names)))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/v1/label/{name}/values`.
pub(super) async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    success(json!(state.store.label_values(&name)))
}

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
