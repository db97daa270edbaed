//! The PromQL evaluator: one expression at one instant, over series selected from the store.
//!
//! Semantics follow the Prometheus 2.x line Debian ships (promtool is the oracle): instant
//! selectors take the latest sample in `[t - 5m, t]` unless it is a staleness marker; range
//! selectors take `[t - range, t]`; `rate`/`increase`/`delta` extrapolate as Prometheus'
//! `extrapolatedRate`; `histogram_quantile` is Prometheus' `bucketQuantile`; arithmetic and
//! `bool` comparisons drop the metric name, filtering comparisons keep it; one-to-one vector
//! matching with `on`/`ignoring`. What is not listed in [`SUPPORTED_FUNCTIONS`] and
//! [`SUPPORTED_AGGREGATIONS`] is refused when parsing, never answered wrongly.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use aisemble_shared::metrics::METRIC_NAME_LABEL;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, VectorMatchCardinality,
    VectorSelector,
};

use super::SeriesSource;
use super::{
    InstantSample, LOOKBACK, QueryError, Value, duration_ms, effective_time, is_stale_marker,
    select,
};
use crate::store::{LabelPair, Labels, SeriesSamples};

/// Functions this version evaluates.
pub const SUPPORTED_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "histogram_quantile",
    "abs",
    "ceil",
    "floor",
    "sqrt",
    "exp",
    "ln",
    "clamp_min",
    "clamp_max",
    "time",
    "vector",
    "scalar",
    "absent",
    "absent_over_time",
    "present_over_time",
    "changes",
    "resets",
    "round",
    "clamp",
];

/// Aggregations this version evaluates.
pub const SUPPORTED_AGGREGATIONS: &[&str] = &["sum", "avg", "min", "max", "count"];

/// Binary operators this version evaluates.
pub const SUPPORTED_OPERATORS: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or", "unless",
];

/// One selector's series over an evaluator's time range, as selected from the source.
#[derive(Debug)]
pub struct Selection {
    series: Vec<SeriesSamples>,
    /// Per series: whether it holds a staleness marker (range selectors must then skip them).
    has_stale_markers: Vec<bool>,
    /// Each series' labels without the metric name, and whether they are still unique: computed
    /// on first use, since `rate`, `*_over_time` and arithmetic drop the name of every series.
    without_name: OnceLock<(Vec<Labels>, bool)>,
}

impl Selection {
    fn new(series: Vec<SeriesSamples>) -> Self {
        let has_stale_markers = series
            .iter()
            .map(|s| s.samples.iter().any(|(_, v)| is_stale_marker(*v)))
            .collect();
        Self {
            series,
            has_stale_markers,
            without_name: OnceLock::new(),
        }
    }

    fn without_name(&self) -> &(Vec<Labels>, bool) {
        self.without_name.get_or_init(|| {
            let dropped: Vec<Labels> = self.series.iter().map(|s| drop_name(&s.labels)).collect();
            let mut sorted: Vec<&Labels> = dropped.iter().collect();
            sorted.sort_unstable();
            let unique = sorted.windows(2).all(|w| w[0] != w[1]);
            (dropped, unique)
        })
    }
}

/// The samples of each selected series in a range selector's window, borrowed from the
/// selection; copied only for the rare window holding staleness markers (which range
/// selectors skip).
struct Windows {
    selection: Arc<Selection>,
    windows: Vec<(usize, Window)>,
}

enum Window {
    Borrowed(std::ops::Range<usize>),
    Filtered(Vec<(i64, f64)>),
}

impl Windows {
    fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Each non-empty window: its series' index in the selection, and its samples.
    fn iter(&self) -> impl Iterator<Item = (usize, &[(i64, f64)])> {
        self.windows.iter().map(|(i, window)| {
            let samples = match window {
                Window::Borrowed(range) => &self.selection.series[*i].samples[range.clone()],
                Window::Filtered(samples) => samples.as_slice(),
            };
            (*i, samples)
        })
    }

    fn labels(&self, i: usize) -> &Labels {
        &self.selection.series[i].labels
    }

    /// Series `i`'s labels without the metric name.
    fn labels_without_name(&self, i: usize) -> &Labels {
        &self.selection.without_name().0[i]
    }

    /// Whether the series' labels stay unique once the metric name is dropped (so a function's
    /// output over these windows needs no duplicate check).
    fn unique_without_name(&self) -> bool {
        self.selection.without_name().1
    }
}

/// Selections already made for one time range, by selector and window: shared by the steps of a
/// range query, and by the rules evaluated at one instant (many rules read the same series).
#[derive(Debug, Default)]
pub struct SelectionCache {
    entries: HashMap<String, (Option<String>, Arc<Selection>)>,
}

impl SelectionCache {
    /// Forgets selections that may include series of these metric names (written since), and
    /// those of selectors without a metric name.
    pub fn invalidate(&mut self, names: &std::collections::HashSet<&str>) {
        self.entries
            .retain(|_, (name, _)| name.as_deref().is_some_and(|n| !names.contains(n)));
    }
}

/// Evaluates expressions over one store, caching each selector's series across the steps of a
/// range query.
pub struct Evaluator<'s> {
    store: &'s dyn SeriesSource,
    start: i64,
    end: i64,
    cache: SelectionCache,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("cached_selectors", &self.cache.entries.len())
            .finish_non_exhaustive()
    }
}

impl<'s> Evaluator<'s> {
    /// An evaluator for instants in `[start, end]` (equal for an instant query).
    pub fn new(store: &'s dyn SeriesSource, start: i64, end: i64) -> Self {
        Self::with_cache(store, start, end, SelectionCache::default())
    }

    /// An evaluator reusing selections made for the same `[start, end]` over the same source.
    pub fn with_cache(
        store: &'s dyn SeriesSource,
        start: i64,
        end: i64,
        cache: SelectionCache,
    ) -> Self {
        Self {
            store,
            start,
            end,
            cache,
        }
    }

    /// Gives the selections back, for the next evaluator at the same instant.
    pub fn into_cache(self) -> SelectionCache {
        self.cache
    }

    /// The series of `selector` with samples covering every step, selected once.
    fn series(
        &mut self,
        selector: &VectorSelector,
        window: i64,
        instant_selector: bool,
    ) -> Result<Arc<Selection>, QueryError> {
        let a = effective_time(selector, self.start, self.start, self.end);
        let b = effective_time(selector, self.end, self.start, self.end);
        // An instant selector evaluated at one instant reads only each series' latest sample.
        let latest_only = instant_selector && a == b;
        let key = format!("{selector}\u{0}{window}\u{0}{latest_only}");
        if let Some((_, found)) = self.cache.entries.get(&key) {
            return Ok(Arc::clone(found));
        }
        // Staleness markers stay: an instant selector whose latest sample is one finds nothing;
        // range selectors skip them.
        let series = Arc::new(Selection::new(select(
            self.store,
            selector,
            a.min(b) - window,
            a.max(b),
            latest_only,
        )?));
        self.cache
            .entries
            .insert(key, (selector.name.clone(), Arc::clone(&series)));
        Ok(series)
    }

    /// Evaluates `expr` at `t`.
    pub fn eval(&mut self, expr: &Expr, t: i64) -> Result<Value, QueryError> {
        match expr {
            Expr::Paren(paren) => self.eval(&paren.expr, t),
            Expr::NumberLiteral(number) => Ok(Value::Scalar(t, number.val)),
            Expr::StringLiteral(string) => Ok(Value::String(t, string.val.clone())),
            Expr::VectorSelector(selector) => self.vector_selector(selector, t),
            Expr::MatrixSelector(matrix) => {
                let windows = self.matrix(matrix, t)?;
                Ok(Value::Matrix(
                    windows
                        .iter()
                        .map(|(i, samples)| SeriesSamples {
                            labels: windows.labels(i).clone(),
                            samples: samples.to_vec(),
                        })
                        .collect(),
                ))
            }
            Expr::Unary(unary) => match self.eval(&unary.expr, t)? {
                Value::Scalar(t, v) => Ok(Value::Scalar(t, -v)),
                Value::Vector(samples) => unique(
                    samples
                        .into_iter()
                        .map(|s| InstantSample {
                            labels: drop_name(&s.labels),
                            t: s.t,
                            v: -s.v,
                        })
                        .collect(),
                ),
                _ => Err(QueryError::BadData(
                    "unary minus needs a scalar or a vector".into(),
                )),
            },
            Expr::Call(call) => self.call(call, t),
            Expr::Aggregate(aggregate) => self.aggregate(aggregate, t),
            Expr::Binary(binary) => self.binary(binary, t),
            other => Err(QueryError::Unsupported(super::describe(other).into())),
        }
    }

    fn vector_selector(&mut self, selector: &VectorSelector, t: i64) -> Result<Value, QueryError> {
        let lookback = duration_ms(LOOKBACK);
        let series = self.series(selector, lookback, true)?;
        let at = effective_time(selector, t, self.start, self.end);
        Ok(Value::Vector(
            series
                .series
                .iter()
                .filter_map(|s| {
                    let (_, idx) = window_bounds(&s.samples, i64::MIN, at);
                    let (st, v) = *s.samples.get(idx.checked_sub(1)?)?;
                    (st >= at - lookback && !is_stale_marker(v)).then(|| InstantSample {
                        labels: s.labels.clone(),
                        t,
                        v,
                    })
                })
                .collect(),
        ))
    }

    /// Samples of each series in `[at - range, at]`.
    fn matrix(&mut self, matrix: &MatrixSelector, t: i64) -> Result<Windows, QueryError> {
        let range = duration_ms(matrix.range);
        let selection = self.series(&matrix.vs, range, false)?;
        let at = effective_time(&matrix.vs, t, self.start, self.end);
        let windows = selection
            .series
            .iter()
            .zip(&selection.has_stale_markers)
            .enumerate()
            .filter_map(|(i, (s, &stale))| {
                let (from, to) = window_bounds(&s.samples, at - range, at);
                if stale {
                    let kept: Vec<(i64, f64)> = s.samples[from..to]
                        .iter()
                        .filter(|(_, v)| !is_stale_marker(*v))
                        .copied()
                        .collect();
                    (!kept.is_empty()).then_some((i, Window::Filtered(kept)))
                } else {
                    (from < to).then_some((i, Window::Borrowed(from..to)))
                }
            })
            .collect();
        Ok(Windows { selection, windows })
    }

    fn vector_arg(&mut self, expr: &Expr, t: i64) -> Result<Vec<InstantSample>, QueryError> {
        match self.eval(expr, t)? {
            Value::Vector(v) => Ok(v),
            _ => Err(QueryError::BadData(format!(
                "expected an instant vector: {expr}"
            ))),
        }
    }

    fn scalar_arg(&mut self, expr: &Expr, t: i64) -> Result<f64, QueryError> {
        match self.eval(expr, t)? {
            Value::Scalar(_, v) => Ok(v),
            _ => Err(QueryError::BadData(format!("expected a scalar: {expr}"))),
        }
    }

    fn matrix_arg(&mut self, expr: &Expr, t: i64) -> Result<(Windows, i64), QueryError> {
        match expr {
            Expr::MatrixSelector(m) => Ok((self.matrix(m, t)?, duration_ms(m.range))),
            Expr::Paren(p) => self.matrix_arg(&p.expr, t),
            other => Err(QueryError::Unsupported(format!(
                "a range vector argument other than a selector ({other})"
            ))),
        }
    }

    fn call(&mut self, call: &Call, t: i64) -> Result<Value, QueryError> {
        let name = call.func.name;
        let args = &call.args.args;
        let arg = |i: usize| -> Result<&Expr, QueryError> {
            args.get(i)
                .map(|a| &**a)
                .ok_or_else(|| QueryError::BadData(format!("{name}: missing argument {}", i + 1)))
        };
        let over_time = |f: fn(&[(i64, f64)]) -> f64| f;
        let out: Vec<InstantSample> = match name {
            "time" => return Ok(Value::Scalar(t, t as f64 / 1000.0)),
            "vector" => {
                let v = self.scalar_arg(arg(0)?, t)?;
                vec![InstantSample {
                    labels: Labels::new(Vec::new()),
                    t,
                    v,
                }]
            }
            "scalar" => {
                let v = self.vector_arg(arg(0)?, t)?;
                let value = if v.len() == 1 { v[0].v } else { f64::NAN };
                return Ok(Value::Scalar(t, value));
            }
            "absent" | "absent_over_time" => {
                let (present, selector) = if name == "absent" {
                    let present = !self.vector_arg(arg(0)?, t)?.is_empty();
                    let selector = match strip_parens(arg(0)?) {
                        Expr::VectorSelector(vs) => Some(vs),
                        _ => None,
                    };
                    (present, selector)
                } else {
                    let present = !self.matrix_arg(arg(0)?, t)?.0.is_empty();
                    let selector = match strip_parens(arg(0)?) {
                        Expr::MatrixSelector(ms) => Some(&ms.vs),
                        _ => None,
                    };
                    (present, selector)
                };
                if present {
                    Vec::new()
                } else {
                    vec![InstantSample {
                        labels: selector.map_or_else(|| Labels::new(Vec::new()), absent_labels),
                        t,
                        v: 1.0,
                    }]
                }
            }
            "present_over_time" | "changes" | "resets" => {
                let (windows, _) = self.matrix_arg(arg(0)?, t)?;
                let out = windows
                    .iter()
                    .map(|(i, samples)| {
                        let v = match name {
                            "present_over_time" => 1.0,
                            "changes" => samples
                                .windows(2)
                                .filter(|w| {
                                    w[0].1 != w[1].1 && !(w[0].1.is_nan() && w[1].1.is_nan())
                                })
                                .count() as f64,
                            _ => samples.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64,
                        };
                        InstantSample {
                            labels: windows.labels_without_name(i).clone(),
                            t,
                            v,
                        }
                    })
                    .collect();
                return checked_unique(out, windows.unique_without_name());
            }
            "round" => {
                let vector = self.vector_arg(arg(0)?, t)?;
                let to_nearest = match args.get(1) {
                    Some(a) => self.scalar_arg(a, t)?,
                    None => 1.0,
                };
                // Prometheus: floor(v / to_nearest + 0.5) * to_nearest, via the inverse.
                let inverse = 1.0 / to_nearest;
                vector
                    .into_iter()
                    .map(|s| InstantSample {
                        labels: drop_name(&s.labels),
                        t,
                        v: (s.v * inverse + 0.5).floor() / inverse,
                    })
                    .collect()
            }
            "clamp" => {
                let vector = self.vector_arg(arg(0)?, t)?;
                let min = self.scalar_arg(arg(1)?, t)?;
                let max = self.scalar_arg(arg(2)?, t)?;
                if max < min {
                    Vec::new()
                } else {
                    vector
                        .into_iter()
                        .map(|s| InstantSample {
                            labels: drop_name(&s.labels),
                            t,
                            v: go_max(min, go_min(max, s.v)),
                        })
                        .collect()
                }
            }
            "rate" | "increase" | "delta" | "irate" | "idelta" => {
                let (windows, range) = self.matrix_arg(arg(0)?, t)?;
                let at = match arg(0)? {
                    Expr::MatrixSelector(m) => effective_time(&m.vs, t, self.start, self.end),
                    _ => t,
                };
                let out = windows
                    .iter()
                    .filter_map(|(i, samples)| {
                        let v = match name {
                            "rate" => extrapolated_rate(samples, at - range, at, true, true),
                            "increase" => extrapolated_rate(samples, at - range, at, true, false),
                            "delta" => extrapolated_rate(samples, at - range, at, false, false),
                            "irate" => instant_delta(samples, true),
                            _ => instant_delta(samples, false),
                        }?;
                        Some(InstantSample {
                            labels: windows.labels_without_name(i).clone(),
                            t,
                            v,
                        })
                    })
                    .collect();
                return checked_unique(out, windows.unique_without_name());
            }
            "avg_over_time" | "min_over_time" | "max_over_time" | "sum_over_time"
            | "count_over_time" | "last_over_time" => {
                let (windows, _) = self.matrix_arg(arg(0)?, t)?;
                let f = over_time(match name {
                    "avg_over_time" => |s| kahan_mean(s.iter().map(|p| p.1)),
                    "min_over_time" => |s| s.iter().map(|p| p.1).fold(f64::NAN, nan_min),
                    "max_over_time" => |s| s.iter().map(|p| p.1).fold(f64::NAN, nan_max),
                    "sum_over_time" => |s| s.iter().map(|p| p.1).sum(),
                    "count_over_time" => |s| s.len() as f64,
                    _ => |s| s.last().map_or(f64::NAN, |p| p.1),
                });
                // Only last_over_time keeps the metric name, as in Prometheus; selected series
                // are unique with it.
                let keep_name = name == "last_over_time";
                let out = windows
                    .iter()
                    .map(|(i, samples)| InstantSample {
                        labels: if keep_name {
                            windows.labels(i).clone()
                        } else {
                            windows.labels_without_name(i).clone()
                        },
                        t,
                        v: f(samples),
                    })
                    .collect();
                return checked_unique(out, keep_name || windows.unique_without_name());
            }
            "histogram_quantile" => {
                let q = self.scalar_arg(arg(0)?, t)?;
                let vector = self.vector_arg(arg(1)?, t)?;
                let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
                for sample in vector {
                    let Some(le) = sample.labels.get("le").and_then(parse_le) else {
                        continue;
                    };
                    let key = without(&sample.labels, &["le", METRIC_NAME_LABEL]);
                    groups.entry(key).or_default().push((le, sample.v));
                }
                groups
                    .into_iter()
                    .map(|(labels, buckets)| InstantSample {
                        labels,
                        t,
                        v: bucket_quantile(q, buckets),
                    })
                    .collect()
            }
            "abs" | "ceil" | "floor" | "sqrt" | "exp" | "ln" => {
                let f: fn(f64) -> f64 = match name {
                    "abs" => f64::abs,
                    "ceil" => f64::ceil,
                    "floor" => f64::floor,
                    "sqrt" => f64::sqrt,
                    "exp" => f64::exp,
                    _ => f64::ln,
                };
                self.vector_arg(arg(0)?, t)?
                    .into_iter()
                    .map(|s| InstantSample {
                        labels: drop_name(&s.labels),
                        t,
                        v: f(s.v),
                    })
                    .collect()
            }
            "clamp_min" | "clamp_max" => {
                let vector = self.vector_arg(arg(0)?, t)?;
                let bound = self.scalar_arg(arg(1)?, t)?;
                vector
                    .into_iter()
                    .map(|s| InstantSample {
                        labels: drop_name(&s.labels),
                        t,
                        v: if name == "clamp_min" {
                            go_max(bound, s.v)
                        } else {
                            go_min(bound, s.v)
                        },
                    })
                    .collect()
            }
            other => return Err(QueryError::Unsupported(format!("function {other}"))),
        };
        unique(out)
    }

    fn aggregate(&mut self, aggregate: &AggregateExpr, t: i64) -> Result<Value, QueryError> {
        let op = aggregate.op.to_string();
        let vector = self.vector_arg(&aggregate.expr, t)?;
        let excluded: Vec<&str> = match &aggregate.modifier {
            Some(LabelModifier::Exclude(without_labels)) => without_labels
                .labels
                .iter()
                .map(String::as_str)
                .chain([METRIC_NAME_LABEL])
                .collect(),
            _ => Vec::new(),
        };
        let modifier = &aggregate.modifier;
        // Groups found by the hash of their pairs, compared pair by pair: no label set is built
        // for a sample whose group exists.
        let mut groups: Vec<(Labels, Vec<f64>)> = Vec::new();
        let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
        for sample in vector {
            let hash = {
                let mut hasher = rustc_hash::FxHasher::default();
                for pair in group_pairs(&sample.labels, modifier, &excluded) {
                    std::hash::Hash::hash(pair, &mut hasher);
                }
                std::hash::Hasher::finish(&hasher)
            };
            let candidates = index.entry(hash).or_default();
            let found = candidates.iter().copied().find(|&g| {
                groups[g]
                    .0
                    .iter()
                    .eq(group_pairs(&sample.labels, modifier, &excluded))
            });
            let g = found.unwrap_or_else(|| {
                groups.push((
                    Labels::new(
                        group_pairs(&sample.labels, modifier, &excluded)
                            .cloned()
                            .collect(),
                    ),
                    Vec::new(),
                ));
                candidates.push(groups.len() - 1);
                groups.len() - 1
            });
            groups[g].1.push(sample.v);
        }
        Ok(Value::Vector(
            groups
                .into_iter()
                .map(|(labels, values)| {
                    let v = match op.as_str() {
                        "sum" => values.iter().sum(),
                        "avg" => incremental_mean(values.iter().copied()),
                        "min" => values.iter().copied().fold(f64::NAN, nan_min),
                        "max" => values.iter().copied().fold(f64::NAN, nan_max),
                        _ => values.len() as f64,
                    };
                    InstantSample { labels, t, v }
                })
                .collect(),
        ))
    }

    fn binary(&mut self, binary: &BinaryExpr, t: i64) -> Result<Value, QueryError> {
        let op = binary.op.to_string();
        let return_bool = binary.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&binary.lhs, t)?;
        let rhs = self.eval(&binary.rhs, t)?;
        let comparison = binary.op.is_comparison_operator();
        match (lhs, rhs) {
            (Value::Scalar(_, a), Value::Scalar(_, b)) => {
                let v = apply(&op, a, b)?;
                Ok(Value::Scalar(
                    t,
                    if comparison {
                        f64::from(u8::from(v == 1.0))
                    } else {
                        v
                    },
                ))
            }
            (Value::Vector(vector), Value::Scalar(_, s))
            | (Value::Scalar(_, s), Value::Vector(vector))
                if binary.op.is_set_operator() =>
            {
                let _ = (vector, s);
                Err(QueryError::BadData(format!(
                    "set operator {op} needs vectors on both sides"
                )))
            }
            (Value::Vector(vector), Value::Scalar(_, s)) => {
                scalar_vector(&op, vector, s, false, comparison, return_bool)
            }
            (Value::Scalar(_, s), Value::Vector(vector)) => {
                scalar_vector(&op, vector, s, true, comparison, return_bool)
            }
            (Value::Vector(lhs), Value::Vector(rhs)) => {
                let matching = binary.modifier.as_ref().and_then(|m| m.matching.as_ref());
                let signature = |labels: &Labels| match matching {
                    Some(LabelModifier::Include(on)) => only(labels, &on.labels),
                    Some(LabelModifier::Exclude(ignoring)) => {
                        let mut excluded: Vec<&str> =
                            ignoring.labels.iter().map(String::as_str).collect();
                        excluded.push(METRIC_NAME_LABEL);
                        without(labels, &excluded)
                    }
                    None => drop_name(labels),
                };
                if binary.op.is_set_operator() {
                    let right: std::collections::HashSet<Labels> =
                        rhs.iter().map(|s| signature(&s.labels)).collect();
                    return Ok(Value::Vector(match op.as_str() {
                        "and" => lhs
                            .into_iter()
                            .filter(|s| right.contains(&signature(&s.labels)))
                            .collect(),
                        "unless" => lhs
                            .into_iter()
                            .filter(|s| !right.contains(&signature(&s.labels)))
                            .collect(),
                        _ => {
                            let left: std::collections::HashSet<Labels> =
                                lhs.iter().map(|s| signature(&s.labels)).collect();
                            let mut out = lhs;
                            out.extend(
                                rhs.into_iter()
                                    .filter(|s| !left.contains(&signature(&s.labels))),
                            );
                            out
                        }
                    }));
                }
                let mut right: HashMap<Labels, InstantSample> = HashMap::new();
                for sample in rhs {
                    let key = signature(&sample.labels);
                    if right.insert(key.clone(), sample).is_some() {
                        return Err(QueryError::BadData(format!(
                            "found duplicate series for the match group {key} on the right hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side"
                        )));
                    }
                }
                let mut matched: std::collections::HashSet<Labels> =
                    std::collections::HashSet::new();
                let mut out = Vec::new();
                for sample in lhs {
                    let key = signature(&sample.labels);
                    let Some(other) = right.get(&key) else {
                        continue;
                    };
                    if !matched.insert(key.clone()) {
                        return Err(QueryError::BadData(format!(
                            "multiple matches for labels {key}: many-to-one matching must be explicit (group_left/group_right)"
                        )));
                    }
                    let v = apply(&op, sample.v, other.v)?;
                    if comparison && !return_bool && v != 1.0 {
                        continue;
                    }
                    let mut labels = if comparison && !return_bool {
                        sample.labels.clone()
                    } else {
                        drop_name(&sample.labels)
                    };
                    labels = match matching {
                        // Prometheus' resultMetric keeps only the `on` labels, even the metric
                        // name of a filtering comparison goes.
                        Some(LabelModifier::Include(on)) => only(&labels, &on.labels),
                        Some(LabelModifier::Exclude(ignoring)) => {
                            let excluded: Vec<&str> =
                                ignoring.labels.iter().map(String::as_str).collect();
                            without(&labels, &excluded)
                        }
                        None => labels,
                    };
                    let v = if comparison && !return_bool {
                        sample.v
                    } else {
                        v
                    };
                    out.push(InstantSample { labels, t, v });
                }
                unique(out)
            }
            _ => Err(QueryError::BadData(format!(
                "operator {op} needs scalars or instant vectors"
            ))),
        }
    }
}

/// Applies an arithmetic or comparison operator; comparisons give 1 or 0.
fn apply(op: &str, a: f64, b: f64) -> Result<f64, QueryError> {
    let truth = |x: bool| f64::from(u8::from(x));
    Ok(match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        "%" => a % b,
        "^" => a.powf(b),
        "==" => truth(a == b),
        "!=" => truth(a != b),
        ">" => truth(a > b),
        "<" => truth(a < b),
        ">=" => truth(a >= b),
        "<=" => truth(a <= b),
        other => return Err(QueryError::Unsupported(format!("operator {other}"))),
    })
}

fn scalar_vector(
    op: &str,
    vector: Vec<InstantSample>,
    scalar: f64,
    scalar_on_left: bool,
    comparison: bool,
    return_bool: bool,
) -> Result<Value, QueryError> {
    let filtering = comparison && !return_bool;
    let mut out = Vec::with_capacity(vector.len());
    for sample in vector {
        let (a, b) = if scalar_on_left {
            (scalar, sample.v)
        } else {
            (sample.v, scalar)
        };
        let v = apply(op, a, b)?;
        if filtering {
            if v == 1.0 {
                out.push(sample);
            }
            continue;
        }
        out.push(InstantSample {
            labels: drop_name(&sample.labels),
            t: sample.t,
            v,
        });
    }
    // A filter keeps a subset of the (unique) input series as they are.
    checked_unique(out, filtering)
}

/// The index range of the samples with timestamps in `[from, to]`.
fn window_bounds(samples: &[(i64, f64)], from: i64, to: i64) -> (usize, usize) {
    // A selection usually spans exactly the window: skip the searches then.
    let start = match samples.first() {
        Some((t, _)) if *t >= from => 0,
        _ => samples.partition_point(|(t, _)| *t < from),
    };
    let end = match samples.last() {
        Some((t, _)) if *t <= to => samples.len(),
        _ => samples.partition_point(|(t, _)| *t <= to),
    };
    (start, end.max(start))
}

/// [`unique`], unless the samples' labels are known to be unique already.
fn checked_unique(samples: Vec<InstantSample>, known_unique: bool) -> Result<Value, QueryError> {
    if known_unique {
        Ok(Value::Vector(samples))
    } else {
        unique(samples)
    }
}

/// Refuses a vector with two samples of the same labels (after a function dropped the names).
fn unique(samples: Vec<InstantSample>) -> Result<Value, QueryError> {
    let mut seen = std::collections::HashSet::with_capacity(samples.len());
    for sample in &samples {
        if !seen.insert(&sample.labels) {
            return Err(QueryError::BadData(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(Value::Vector(samples))
}

/// Go's `math.Max`: infinity wins, then NaN, then the larger (+0 over -0).
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: negative infinity wins, then NaN, then the smaller (-0 over +0).
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

fn strip_parens(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => strip_parens(&p.expr),
        other => other,
    }
}

/// Prometheus' labels for `absent(selector)`: the selector's equality matchers, except
/// `__name__` and names matched more than once.
fn absent_labels(selector: &VectorSelector) -> Labels {
    use promql_parser::label::MatchOp;
    let matchers = &selector.matchers.matchers;
    let pairs = matchers
        .iter()
        .filter(|m| m.name != METRIC_NAME_LABEL && matches!(m.op, MatchOp::Equal))
        .filter(|m| matchers.iter().filter(|o| o.name == m.name).count() == 1)
        .map(|m| LabelPair {
            name: m.name.as_str().into(),
            value: m.value.as_str().into(),
        })
        .collect();
    Labels::new(pairs)
}

/// The pairs of `labels` that make its aggregation group, in name order.
fn group_pairs<'a>(
    labels: &'a Labels,
    modifier: &'a Option<LabelModifier>,
    excluded: &'a [&str],
) -> impl Iterator<Item = &'a LabelPair> + 'a {
    labels.iter().filter(move |p| match modifier {
        None => false,
        Some(LabelModifier::Include(by)) => by.labels.iter().any(|k| **k == *p.name),
        Some(LabelModifier::Exclude(_)) => !excluded.contains(&&*p.name),
    })
}

fn drop_name(labels: &Labels) -> Labels {
    without(labels, &[METRIC_NAME_LABEL])
}

fn without(labels: &Labels, excluded: &[&str]) -> Labels {
    Labels::new(
        labels
            .iter()
            .filter(|p| !excluded.contains(&&*p.name))
            .cloned()
            .collect(),
    )
}

fn only(labels: &Labels, kept: &[String]) -> Labels {
    Labels::new(
        labels
            .iter()
            .filter(|p| kept.iter().any(|k| **k == *p.name))
            .cloned()
            .collect::<Vec<LabelPair>>(),
    )
}

/// Prometheus' `avg` aggregation: an incremental mean, each step divided first to avoid overflow.
fn incremental_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut n) = (0.0f64, 0.0f64);
    for v in values {
        n += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / n - mean / n;
    }
    if n == 0.0 { f64::NAN } else { mean }
}

/// Prometheus' `avg_over_time`: the incremental mean with Kahan-Neumaier compensation.
fn kahan_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut n, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for v in values {
        n += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        let increment = v / n - mean / n;
        let t = mean + increment;
        if mean.abs() >= increment.abs() {
            c += (mean - t) + increment;
        } else {
            c += (increment - t) + mean;
        }
        mean = t;
    }
    if n == 0.0 {
        f64::NAN
    } else if mean.is_infinite() {
        mean
    } else {
        mean + c
    }
}

// Prometheus' min/max: NaN only when every value is NaN.
fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b < a { b } else { a }
}
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b > a { b } else { a }
}

fn parse_le(value: &str) -> Option<f64> {
    match value {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

/// Prometheus' `extrapolatedRate`: the increase over `samples` (in `[range_start, range_end]`),
/// extrapolated towards the window's edges, per second when `is_rate`.
pub fn extrapolated_rate(
    samples: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first_t, first_v) = samples[0];
    let (last_t, last_v) = samples[samples.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut previous = first_v;
        for &(_, v) in &samples[1..] {
            if v < previous {
                result += previous;
            }
            previous = v;
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let average_gap = sampled / (samples.len() - 1) as f64;
    if is_counter && result > 0.0 && first_v >= 0.0 {
        // A counter cannot go below zero: do not extrapolate past where it would have been zero.
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average_gap * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average_gap / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average_gap / 2.0
    };
    // The same operation order as Prometheus (factor first), so results agree to the last bit.
    let mut factor = interval / sampled;
    if is_rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate`/`idelta`: from the last two samples.
fn instant_delta(samples: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    let [.., (t0, v0), (t1, v1)] = samples else {
        return None;
    };
    let mut delta = v1 - v0;
    if is_rate {
        if *v1 < *v0 {
            // Counter reset.
            delta = *v1;
        }
        let seconds = (t1 - t0) as f64 / 1000.0;
        if seconds == 0.0 {
            return None;
        }
        delta /= seconds;
    }
    Some(delta)
}

/// Prometheus' `bucketQuantile` over `(upper bound, cumulative count)` buckets.
pub fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets with the same bound, then force monotonic counts.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (bound, count) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for bucket in &mut merged {
        if bucket.1 > max {
            max = bucket.1;
        } else {
            bucket.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1]
        .iter()
        .position(|(_, count)| *count >= rank)
        .unwrap_or(merged.len() - 1);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let end = merged[b].0;
    let mut count = merged[b].1;
    let mut start = 0.0;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Whether this version can evaluate `expr`; the error names the first construct it cannot.
pub(super) fn check(expr: &Expr) -> Result<(), QueryError> {
    match expr {
        Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_) => Ok(()),
        Expr::Paren(paren) => check(&paren.expr),
        Expr::Unary(unary) => check(&unary.expr),
        Expr::Call(call) => {
            if !SUPPORTED_FUNCTIONS.contains(&call.func.name) {
                return Err(QueryError::Unsupported(format!(
                    "function {} (supported: {})",
                    call.func.name,
                    SUPPORTED_FUNCTIONS.join(", ")
                )));
            }
            call.args.args.iter().try_for_each(|a| check(a))
        }
        Expr::Aggregate(aggregate) => {
            let op = aggregate.op.to_string();
            if !SUPPORTED_AGGREGATIONS.contains(&op.as_str()) || aggregate.param.is_some() {
                return Err(QueryError::Unsupported(format!(
                    "aggregation {op} (supported: {})",
                    SUPPORTED_AGGREGATIONS.join(", ")
                )));
            }
            check(&aggregate.expr)
        }
        Expr::Binary(binary) => {
            let op = binary.op.to_string();
            if !SUPPORTED_OPERATORS.contains(&op.as_str()) {
                return Err(QueryError::Unsupported(format!("operator {op}")));
            }
            if let Some(modifier) = &binary.modifier {
                if matches!(
                    modifier.card,
                    VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_)
                ) {
                    return Err(QueryError::Unsupported(
                        "group_left/group_right (many-to-one matching)".into(),
                    ));
                }
                if modifier.fill_values.lhs.is_some() || modifier.fill_values.rhs.is_some() {
                    return Err(QueryError::Unsupported("fill modifiers".into()));
                }
            }
            check(&binary.lhs)?;
            check(&binary.rhs)
        }
        Expr::Subquery(_) => Err(QueryError::Unsupported("subqueries".into())),
        other => Err(QueryError::Unsupported(super::describe(other).into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // A counter growing 1/s, sampled every 15 s, in a 5-minute window ending at a sample:
        // Prometheus' rate is exactly 1 here only after extrapolation to the window start.
        let samples: Vec<(i64, f64)> = (0..=20).map(|i| (i * 15_000, i as f64 * 15.0)).collect();
        let rate = extrapolated_rate(&samples, 0, 300_000, true, true).expect("rate");
        assert!((rate - 1.0).abs() < 1e-9, "{rate}");
        // Window starts 7.5 s before the first sample (< 1.1 × 15 s): extrapolate fully.
        let increase =
            extrapolated_rate(&samples[1..], 7_500, 300_000, true, false).expect("increase");
        assert!((increase - (285.0 + 7.5)).abs() < 1e-9, "{increase}");
        // A reset counts the value before it.
        let reset = [(0, 10.0), (10_000, 20.0), (20_000, 5.0)];
        let increase = extrapolated_rate(&reset, 0, 20_000, true, false).expect("increase");
        // 20 - 10 + 20 (reset) - ... : raw 15 over 20 s sampled, zero-extrapolation clipped.
        assert!((increase - 15.0).abs() < 1e-9, "{increase}");
        assert_eq!(extrapolated_rate(&reset[..1], 0, 20_000, true, true), None);
    }

    #[test]
    fn bucket_quantile_matches_prometheus() {
        let buckets = vec![
            (0.1, 50.0),
            (0.5, 90.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(bucket_quantile(0.5, buckets.clone()), 0.1);
        assert!((bucket_quantile(0.95, buckets.clone()) - 0.75).abs() < 1e-12);
        assert!((bucket_quantile(0.25, buckets.clone()) - 0.05).abs() < 1e-12);
        assert_eq!(bucket_quantile(1.5, buckets.clone()), f64::INFINITY);
        assert_eq!(bucket_quantile(-1.0, buckets), f64::NEG_INFINITY);
        // Rank in the +Inf bucket: the highest finite bound.
        assert_eq!(
            bucket_quantile(0.99, vec![(1.0, 10.0), (f64::INFINITY, 100.0)]),
            1.0
        );
        assert!(
            bucket_quantile(0.5, vec![(1.0, 3.0)]).is_nan(),
            "no +Inf bucket"
        );
        assert!(bucket_quantile(0.5, vec![(1.0, 0.0), (f64::INFINITY, 0.0)]).is_nan());
    }
}
