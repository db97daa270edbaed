//! PromQL evaluation over the store, for `/api/v1/query`, `/api/v1/query_range` and
//! `/ops/metrics/query`.
//!
//! Parsing is `promql-parser`'s; evaluation is [`eval`]'s: selectors (instant, with the 5-minute
//! lookback, and range, raw samples), `offset` and `@`, literals, the functions, aggregations and
//! operators listed there. Anything else is refused with a clear error before evaluation, never
//! answered wrongly. Intervals are closed, `[t - range, t]`, as in the Prometheus 2.x line that
//! Debian ships (promtool is this project's oracle). A range query evaluates the expression at
//! every step, selecting each selector's series from the store once.

pub mod eval;
pub mod memory;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aisemble_shared::metrics::METRIC_NAME_LABEL;
use promql_parser::{
    label::{MatchOp, Matcher},
    parser::{AtModifier, Expr, Offset, VectorSelector},
};

use crate::store::{Labels, SeriesSamples, Store, StoreError};

/// Where the evaluator reads series from: the store, or the in-memory series of a rule unit test
/// ([`memory::MemorySeries`]).
pub trait SeriesSource: Sync {
    /// Series matching every matcher, with their samples in `[mint, maxt]`, in time order.
    /// Blocking.
    ///
    /// # Errors
    /// When the backing storage fails.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError>;

    /// Series matching every matcher, each with only its latest sample in `[mint, maxt]`
    /// (what an instant selector reads at one instant). Blocking.
    ///
    /// # Errors
    /// When the backing storage fails.
    fn select_latest(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        let mut series = self.select(matchers, mint, maxt)?;
        for s in &mut series {
            let keep_from = s.samples.len().saturating_sub(1);
            s.samples.drain(..keep_from);
        }
        Ok(series)
    }
}

impl SeriesSource for Store {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        Store::select(self, matchers, mint, maxt)
    }

    fn select_latest(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        Store::select_latest(self, matchers, mint, maxt)
    }
}

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
    eval::check(&expr)?;
    Ok(expr)
}

pub(crate) fn describe(expr: &Expr) -> &'static str {
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

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The evaluation time of a selector at query time `t`, after `@` and `offset`.
pub(crate) fn effective_time(selector: &VectorSelector, t: i64, start: i64, end: i64) -> i64 {
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

/// Selects series matching any of the matcher sets (PromQL `or` inside braces), deduplicated;
/// with only each one's latest sample if `latest_only`.
pub(crate) fn select(
    store: &dyn SeriesSource,
    selector: &VectorSelector,
    mint: i64,
    maxt: i64,
    latest_only: bool,
) -> Result<Vec<SeriesSamples>, QueryError> {
    let sets = selector_matchers(selector);
    let mut out: Vec<SeriesSamples> = Vec::new();
    let mut seen: std::collections::HashSet<Labels> = std::collections::HashSet::new();
    for matchers in &sets {
        let selected = if latest_only {
            store.select_latest(matchers, mint, maxt)?
        } else {
            store.select(matchers, mint, maxt)?
        };
        if sets.len() == 1 {
            out = selected;
            break;
        }
        // Several `or` matcher sets may select the same series: keep it once.
        for series in selected {
            if seen.insert(series.labels.clone()) {
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
/// Unsupported expressions, type errors (as Prometheus reports them), store failures.
pub fn instant(store: &dyn SeriesSource, expr: &Expr, t: i64) -> Result<Value, QueryError> {
    eval::check(expr)?;
    eval::Evaluator::new(store, t, t).eval(expr, t)
}

/// Evaluates at every step from `start` to `end`; returns one series per label set. Blocking.
///
/// # Errors
/// Range or string expressions (invalid for range queries, as in Prometheus), too many points,
/// unsupported expressions, store failures.
pub fn range(
    store: &dyn SeriesSource,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Value, QueryError> {
    eval::check(expr)?;
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
    let mut evaluator = eval::Evaluator::new(store, start, end);
    let mut series: Vec<SeriesSamples> = Vec::new();
    let mut index: std::collections::HashMap<Labels, usize> = std::collections::HashMap::new();
    for i in 0..=(end - start) / step {
        let t = start + i * step;
        let points = match evaluator.eval(expr, t)? {
            Value::Vector(samples) => samples.into_iter().map(|s| (s.labels, s.v)).collect(),
            Value::Scalar(_, v) => vec![(Labels::new(Vec::new()), v)],
            Value::Matrix(_) => {
                return Err(QueryError::BadData(
                    "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
                ));
            }
            Value::String(..) => {
                return Err(QueryError::BadData(
                    "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
                ));
            }
        };
        for (labels, v) in points {
            let slot = *index.entry(labels.clone()).or_insert_with(|| {
                series.push(SeriesSamples {
                    labels,
                    samples: Vec::new(),
                });
                series.len() - 1
            });
            series[slot].samples.push((t, v));
        }
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Value::Matrix(series))
}

pub use crate::store::is_stale_marker;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_constructs_are_refused_at_parse() {
        for query in [
            "x[5m:1m]",
            "topk(3, x)",
            "quantile(0.9, x)",
            "label_replace(x, \"a\", \"b\", \"c\", \"d\")",
            "a * on(x) group_left b",
            "rate(x[5m:1m])",
        ] {
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
            "rate(x[5m])",
            "sum by (a) (x)",
            "x + 1",
            "-x",
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
            "a / on(b) c",
            "a > bool 1",
            "a and b",
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

#[cfg(test)]
mod oracle_tests;
