//! PromQL evaluation over the store, for `/api/v1/query`, `/api/v1/query_range` and
//! `/ops/metrics/query`.
//!
//! Parsing is `promql-parser`'s. This version evaluates selectors: instant vector selectors
//! (latest sample within the 5-minute lookback, as Prometheus), range selectors (raw samples),
//! `offset` and `@`, number and string literals, parentheses. Anything else is refused with a
//! clear error before evaluation, never answered wrongly. Intervals are closed, `[t - range, t]`,
//! as in the Prometheus 2.x line that Debian ships (promtool is this project's oracle).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aisemble_shared::metrics::METRIC_NAME_LABEL;
use promql_parser::{
    label::{MatchOp, Matcher},
    parser::{AtModifier, Expr, Offset, VectorSelector},
};

use crate::store::{Labels, SeriesSamples, Store, StoreError};

/// Prometheus' default lookback for instant vector selectors.
pub const LOOKBACK: Duration = Duration::from_secs(300);

/// Most points one series may have in a range query (Prometheus' limit).
pub const MAX_POINTS: i64 = 11_000;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The text is not PromQL.
    #[error("parse error: {0}")]
    Parse(String),
    /// Valid PromQL this version does not evaluate.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Valid PromQL of the wrong type for this API.
    #[error("{0}")]
    BadData(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    /// Labels.
    pub labels: Labels,
    /// Timestamp (ms): the evaluation time.
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// An evaluated expression.
#[derive(Debug, Clone)]
pub enum Value {
    /// One sample per series.
    Vector(Vec<InstantSample>),
    /// Raw samples per series.
    Matrix(Vec<SeriesSamples>),
    /// A number.
    Scalar(i64, f64),
    /// A string.
    String(i64, String),
}

/// Parses a query and checks that this version can evaluate it.
///
/// # Errors
/// A parse error, or what is unsupported.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    let expr = promql_parser::parser::parse(query).map_err(QueryError::Parse)?;
    check_supported(&expr)?;
    Ok(expr)
}

fn check_supported(expr: &Expr) -> Result<(), QueryError> {
    match expr {
        Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_) => Ok(()),
        Expr::Paren(paren) => check_supported(&paren.expr),
        other => Err(QueryError::Unsupported(format!(
            "{} (this version evaluates selectors such as metric{{label=\"value\"}} and metric[5m]; functions, operators and aggregations arrive with the alert evaluator)",
            describe(other)
        ))),
    }
}

fn describe(expr: &Expr) -> &'static str {
    match expr {
        Expr::Aggregate(_) => "aggregation",
        Expr::Unary(_) => "unary expression",
        Expr::Binary(_) => "binary operator",
        Expr::Subquery(_) => "subquery",
        Expr::Call(_) => "function call",
        _ => "expression",
    }
}

/// The matchers of a selector, with its metric name as a `__name__` matcher.
pub fn selector_matchers(selector: &VectorSelector) -> Vec<Vec<Matcher>> {
    let base = |mut matchers: Vec<Matcher>| {
        if let Some(name) = &selector.name
            && !matchers.iter().any(|m| m.name == METRIC_NAME_LABEL)
        {
            matchers.push(Matcher::new(MatchOp::Equal, METRIC_NAME_LABEL, name));
        }
        matchers
    };
    let mut sets = vec![base(selector.matchers.matchers.clone())];
    sets.extend(
        selector
            .matchers
            .or_matchers
            .iter()
            .map(|set| base(set.clone())),
    );
    sets.retain(|set| !set.is_empty());
    sets
}

fn ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The evaluation time of a selector at query time `t`, after `@` and `offset`.
fn effective_time(selector: &VectorSelector, t: i64, start: i64, end: i64) -> i64 {
    let base = match &selector.at {
        None => t,
        Some(AtModifier::Start) => start,
        Some(AtModifier::End) => end,
        Some(AtModifier::At(time)) => ms(*time),
    };
    match &selector.offset {
        None => base,
        Some(Offset::Pos(d)) => base.saturating_sub(duration_ms(*d)),
        Some(Offset::Neg(d)) => base.saturating_add(duration_ms(*d)),
    }
}

/// Selects series matching any of the matcher sets (PromQL `or` inside braces), deduplicated.
fn select(
    store: &Store,
    selector: &VectorSelector,
    mint: i64,
    maxt: i64,
) -> Result<Vec<SeriesSamples>, QueryError> {
    let sets = selector_matchers(selector);
    let mut out: Vec<SeriesSamples> = Vec::new();
    for matchers in &sets {
        for series in store.select(matchers, mint, maxt)? {
            if !out.iter().any(|s| s.labels == series.labels) {
                out.push(series);
            }
        }
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// Evaluates at one instant. Blocking (reads the store).
///
/// # Errors
/// Unsupported expressions or store failures.
pub fn instant(store: &Store, expr: &Expr, t: i64) -> Result<Value, QueryError> {
    check_supported(expr)?;
    match expr {
        Expr::Paren(paren) => instant(store, &paren.expr, t),
        Expr::NumberLiteral(number) => Ok(Value::Scalar(t, number.val)),
        Expr::StringLiteral(string) => Ok(Value::String(t, string.val.clone())),
        Expr::VectorSelector(selector) => {
            let at = effective_time(selector, t, t, t);
            let series = select(store, selector, at - duration_ms(LOOKBACK), at)?;
            Ok(Value::Vector(
                series
                    .into_iter()
                    .filter_map(|s| {
                        let (_, v) = *s.samples.last()?;
                        // A NaN staleness marker ends a series, as in Prometheus.
                        (!is_stale_marker(v)).then_some(InstantSample {
                            labels: s.labels,
                            t,
                            v,
                        })
                    })
                    .collect(),
            ))
        }
        Expr::MatrixSelector(matrix) => {
            let at = effective_time(&matrix.vs, t, t, t);
            let series = select(store, &matrix.vs, at - duration_ms(matrix.range), at)?;
            Ok(Value::Matrix(series))
        }
        other => Err(QueryError::Unsupported(describe(other).into())),
    }
}

/// Evaluates at every step from `start` to `end`; returns one series per label set. Blocking.
///
/// # Errors
/// Range selectors (invalid for range queries, as in Prometheus), too many points, unsupported
/// expressions, store failures.
pub fn range(
    store: &Store,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Value, QueryError> {
    check_supported(expr)?;
    if step <= 0 {
        return Err(QueryError::BadData(
            "zero or negative query resolution step widths are not accepted".into(),
        ));
    }
    if end < start {
        return Err(QueryError::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    if (end - start) / step + 1 > MAX_POINTS {
        return Err(QueryError::BadData(format!(
            "exceeded maximum resolution of {MAX_POINTS} points per timeseries; try decreasing the query resolution (?step=XX)"
        )));
    }
    let steps = || (0..=(end - start) / step).map(move |i| start + i * step);
    match expr {
        Expr::Paren(paren) => range(store, &paren.expr, start, end, step),
        Expr::NumberLiteral(number) => Ok(Value::Matrix(vec![SeriesSamples {
            labels: Labels::new(Vec::new()),
            samples: steps().map(|t| (t, number.val)).collect(),
        }])),
        Expr::StringLiteral(_) => Err(QueryError::BadData(
            "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
        )),
        Expr::MatrixSelector(_) => Err(QueryError::BadData(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
        )),
        Expr::VectorSelector(selector) => {
            let lookback = duration_ms(LOOKBACK);
            let first = effective_time(selector, start, start, end).min(effective_time(selector, end, start, end));
            let last = effective_time(selector, start, start, end).max(effective_time(selector, end, start, end));
            let series = select(store, selector, first - lookback, last)?;
            let mut out = Vec::with_capacity(series.len());
            for s in series {
                let mut points = Vec::new();
                for t in steps() {
                    let at = effective_time(selector, t, start, end);
                    // Latest sample in [at - lookback, at].
                    let idx = s.samples.partition_point(|(st, _)| *st <= at);
                    if idx == 0 {
                        continue;
                    }
                    let (st, v) = s.samples[idx - 1];
                    if st >= at - lookback && !is_stale_marker(v) {
                        points.push((t, v));
                    }
                }
                if !points.is_empty() {
                    out.push(SeriesSamples { labels: s.labels, samples: points });
                }
            }
            Ok(Value::Matrix(out))
        }
        other => Err(QueryError::Unsupported(describe(other).into())),
    }
}

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == 0x7ff0_0000_0000_0002
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_constructs_are_refused_at_parse() {
        for query in ["rate(x[5m])", "sum(x)", "x + 1", "-x", "x[5m:1m]"] {
            assert!(
                matches!(parse(query), Err(QueryError::Unsupported(_))),
                "{query}"
            );
        }
        for query in [
            "x",
            "x{a=\"b\"}",
            "x[5m]",
            "(x)",
            "1",
            "\"s\"",
            "x offset 5m",
            "x @ 100",
        ] {
            assert!(parse(query).is_ok(), "{query}");
        }
        assert!(matches!(parse("x{"), Err(QueryError::Parse(_))));
    }

    #[test]
    fn selector_name_becomes_a_matcher() {
        let Expr::VectorSelector(selector) = parse("up{job=\"a\"}").expect("parses") else {
            panic!("selector")
        };
        let sets = selector_matchers(&selector);
        assert_eq!(sets.len(), 1);
        assert!(
            sets[0]
                .iter()
                .any(|m| m.name == "__name__" && m.value == "up")
        );
    }
}
