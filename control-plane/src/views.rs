//! Service and model views computed from stored series: latency quantiles from histogram buckets,
//! success and error rates, throughput, and (from [`crate::usage`]) token and cost totals for the
//! month.
//!
//! The pure part ([`increase`], [`histogram_quantile`], [`month_start_ms`]) follows Prometheus:
//! counters are cumulative and may reset; quantiles interpolate linearly inside the bucket that
//! holds the rank, as `histogram_quantile` does. [`compute`] reads the store (blocking) and builds
//! the JSON the `/ops` endpoints return.

use std::collections::BTreeMap;

use aisemble_shared::metrics as names;
use promql_parser::label::{MatchOp, Matcher};
use serde::Serialize;

use crate::{
    store::{SeriesSamples, Store, StoreError},
    usage::MonthUsage,
};

/// How far back the windowed figures (quantiles, rates) look by default.
pub const DEFAULT_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Increase of a counter over `samples` (time-ordered), from `baseline` (the last value before the
/// window, or `None` when the series started inside it, i.e. from 0). A drop is a reset: the
/// counter restarted from 0, so the new value counts whole.
pub fn increase(baseline: Option<f64>, samples: &[(i64, f64)]) -> f64 {
    let mut previous = baseline.unwrap_or(0.0);
    let mut total = 0.0;
    for &(_, value) in samples {
        if value.is_nan() {
            continue;
        }
        total += if value < previous {
            value
        } else {
            value - previous
        };
        previous = value;
    }
    total
}

/// The `q` quantile of a histogram given as cumulative `(upper bound, count)` buckets, as
/// Prometheus' `histogram_quantile` computes it. `None` without observations or a `+Inf` bucket.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    Some(crate::query::eval::bucket_quantile(q, buckets.to_vec())).filter(|v| !v.is_nan())
}

/// Midnight UTC of the first day of `now_ms`'s month.
pub fn month_start_ms(now_ms: i64) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    let days = now_ms.div_euclid(DAY_MS);
    let (year, month, _) = civil_from_days(days);
    days_from_civil(year, month, 1) * DAY_MS
}

// Howard Hinnant's algorithms (public domain), proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Latency quantiles in seconds.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Quantiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Quantiles {
    fn of(buckets: &BTreeMap<Bound, f64>) -> Self {
        let buckets: Vec<(f64, f64)> = buckets.iter().map(|(b, c)| (b.0, *c)).collect();
        Self {
            p50: histogram_quantile(0.5, &buckets),
            p95: histogram_quantile(0.95, &buckets),
            p99: histogram_quantile(0.99, &buckets),
        }
    }
}

/// A bucket bound, ordered (bounds are never NaN: unparsable `le` values are skipped).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound(f64);
impl Eq for Bound {}
impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One model's figures over the window.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ModelView {
    /// Model name.
    pub model: String,
    /// Inferences in the window.
    pub inferences: f64,
    /// Of which failed.
    pub failures: f64,
    /// `1 - failures / inferences`, when there were any.
    pub success_rate: Option<f64>,
    /// Inferences per second over the window.
    pub throughput_per_second: f64,
    /// Inference latency.
    pub latency_seconds: Quantiles,
    /// Queue time.
    pub queue_seconds: Quantiles,
}

/// One service's figures over the window.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ServiceView {
    /// Service name.
    pub service: String,
    /// Requests in the window.
    pub requests: f64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Share of requests that got a 2xx or 3xx.
    pub success_rate: Option<f64>,
    /// 4xx responses per second.
    pub rate_4xx_per_second: f64,
    /// 5xx responses per second.
    pub rate_5xx_per_second: f64,
    /// Errors in the window, by kind.
    pub errors: BTreeMap<String, f64>,
    /// Request latency.
    pub latency_seconds: Quantiles,
    /// Latest open connections, summed over hosts.
    pub active_connections: Option<f64>,
}

/// Tokens and cost of one (provider, model) this month.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct UsageView {
    /// Provider (`unknown` when not reported).
    pub provider: String,
    /// Model.
    pub model: String,
    /// Prompt tokens.
    pub tokens_in: f64,
    /// Generated tokens.
    pub tokens_out: f64,
    /// Estimated cost in US dollars.
    pub cost_usd: f64,
}

/// Everything the `/ops` endpoints show about services and models.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Views {
    /// Window of the quantiles and rates, in seconds.
    pub window_seconds: f64,
    /// Per model, by name.
    pub models: Vec<ModelView>,
    /// Per service, by name.
    pub services: Vec<ServiceView>,
    /// This month's tokens and cost, by provider and model.
    pub usage_this_month: Vec<UsageView>,
    /// This month's total cost in US dollars.
    pub cost_this_month_usd: f64,
}

/// Series of `name` (on `host` when given) with their samples in `(start, end]` and the baseline
/// value at or before `start` (looked up to `lookback` earlier).
fn windowed(
    store: &Store,
    name: &str,
    host: Option<&str>,
    start: i64,
    end: i64,
    lookback: i64,
) -> Result<Vec<(SeriesSamples, Option<f64>)>, StoreError> {
    let mut matchers = vec![Matcher::new(MatchOp::Equal, "__name__", name)];
    if let Some(host) = host {
        matchers.push(Matcher::new(MatchOp::Equal, "host", host));
    }
    Ok(store
        .select(&matchers, start.saturating_sub(lookback), end)?
        .into_iter()
        .map(|mut series| {
            let split = series.samples.partition_point(|(t, _)| *t <= start);
            let baseline = split.checked_sub(1).map(|i| series.samples[i].1);
            series.samples.drain(..split);
            (series, baseline)
        })
        .collect())
}

/// Increase of every series of `name`, grouped by the values of `group` labels.
fn increases_by(
    store: &Store,
    name: &str,
    host: Option<&str>,
    (start, end, lookback): (i64, i64, i64),
    group: &[&str],
) -> Result<BTreeMap<Vec<String>, f64>, StoreError> {
    let mut out = BTreeMap::new();
    for (series, baseline) in windowed(store, name, host, start, end, lookback)? {
        let key = group
            .iter()
            .map(|l| series.labels.get(l).unwrap_or("").to_owned())
            .collect();
        *out.entry(key).or_insert(0.0) += increase(baseline, &series.samples);
    }
    Ok(out)
}

/// Per `by`-label value, the window's increase of each bucket of histogram `family`.
fn bucket_increases(
    store: &Store,
    family: &str,
    by: &str,
    host: Option<&str>,
    range: (i64, i64, i64),
) -> Result<BTreeMap<String, BTreeMap<Bound, f64>>, StoreError> {
    let mut out: BTreeMap<String, BTreeMap<Bound, f64>> = BTreeMap::new();
    let grouped = increases_by(store, &format!("{family}_bucket"), host, range, &[by, "le"])?;
    for (key, value) in grouped {
        let [name, le] = key.as_slice() else { continue };
        let Ok(bound) = le.parse::<f64>() else {
            continue;
        };
        *out.entry(name.clone())
            .or_default()
            .entry(Bound(bound))
            .or_insert(0.0) += value;
    }
    Ok(out)
}

/// Computes the views over `[now - window, now]` for one host or the whole fleet, with the
/// month's usage from `month` (brought up to `now`). Blocking.
///
/// # Errors
/// When the store fails to read.
pub fn compute(
    store: &Store,
    month: &MonthUsage,
    host: Option<&str>,
    now: i64,
    window_ms: i64,
) -> Result<Views, StoreError> {
    let window_ms = window_ms.max(1);
    let range = (now - window_ms, now, window_ms);
    let seconds = window_ms as f64 / 1000.0;

    // Models.
    let latency = bucket_increases(
        store,
        names::MODEL_INFERENCE_DURATION_SECONDS,
        "model",
        host,
        range,
    )?;
    let queue = bucket_increases(
        store,
        names::MODEL_QUEUE_DURATION_SECONDS,
        "model",
        host,
        range,
    )?;
    let outcomes = increases_by(
        store,
        names::MODEL_INFERENCE_TOTAL,
        host,
        range,
        &["model", "outcome"],
    )?;
    let mut models: BTreeMap<String, ModelView> = BTreeMap::new();
    for (key, n) in &outcomes {
        let [model, outcome] = key.as_slice() else {
            continue;
        };
        let view = models.entry(model.clone()).or_default();
        view.inferences += n;
        if outcome == "failure" {
            view.failures += n;
        }
    }
    for model in latency.keys().chain(queue.keys()) {
        models.entry(model.clone()).or_default();
    }
    let models = models
        .into_iter()
        .map(|(model, mut view)| {
            if view.inferences == 0.0 {
                // A scraped server may expose latency without outcome counters.
                view.inferences = latency
                    .get(&model)
                    .and_then(|b| b.last_key_value().map(|(_, c)| *c))
                    .unwrap_or(0.0);
            }
            view.success_rate =
                (view.inferences > 0.0).then(|| 1.0 - view.failures / view.inferences);
            view.throughput_per_second = view.inferences / seconds;
            view.latency_seconds = latency.get(&model).map(Quantiles::of).unwrap_or_default();
            view.queue_seconds = queue.get(&model).map(Quantiles::of).unwrap_or_default();
            view.model = model;
            view
        })
        .collect();

    // Services.
    let latency = bucket_increases(
        store,
        names::REQUEST_DURATION_SECONDS,
        "service",
        host,
        range,
    )?;
    let requests = increases_by(
        store,
        names::REQUESTS_TOTAL,
        host,
        range,
        &["service", "status"],
    )?;
    let errors = increases_by(
        store,
        names::ERRORS_TOTAL,
        host,
        range,
        &["service", "kind"],
    )?;
    let mut services: BTreeMap<String, ServiceView> = BTreeMap::new();
    let mut ok: BTreeMap<String, f64> = BTreeMap::new();
    for (key, n) in &requests {
        let [service, status] = key.as_slice() else {
            continue;
        };
        let view = services.entry(service.clone()).or_default();
        view.requests += n;
        match status.chars().next() {
            Some('2' | '3') => *ok.entry(service.clone()).or_insert(0.0) += n,
            Some('4') => view.rate_4xx_per_second += n / seconds,
            Some('5') => view.rate_5xx_per_second += n / seconds,
            _ => {}
        }
    }
    for (key, n) in errors {
        if let [service, kind] = key.as_slice() {
            *services
                .entry(service.clone())
                .or_default()
                .errors
                .entry(kind.clone())
                .or_insert(0.0) += n;
        }
    }
    let mut connections = vec![Matcher::new(
        MatchOp::Equal,
        "__name__",
        names::ACTIVE_CONNECTIONS,
    )];
    if let Some(host) = host {
        connections.push(Matcher::new(MatchOp::Equal, "host", host));
    }
    for (labels, _, value) in store.latest_matching(&connections, now - window_ms) {
        let service = labels.get("service").unwrap_or("").to_owned();
        *services
            .entry(service)
            .or_default()
            .active_connections
            .get_or_insert(0.0) += value;
    }
    for service in latency.keys() {
        services.entry(service.clone()).or_default();
    }
    let services = services
        .into_iter()
        .map(|(service, mut view)| {
            view.requests_per_second = view.requests / seconds;
            view.success_rate = (view.requests > 0.0)
                .then(|| ok.get(&service).copied().unwrap_or(0.0) / view.requests);
            view.latency_seconds = latency.get(&service).map(Quantiles::of).unwrap_or_default();
            view.service = service;
            view
        })
        .collect();

    let (usage_this_month, cost_this_month_usd) = month.read(store, host, now)?;

    Ok(Views {
        window_seconds: seconds,
        models,
        services,
        usage_this_month,
        cost_this_month_usd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_fleet_costs_zero_not_minus_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), crate::store::StoreOptions::default()).expect("opens");
        let month = MonthUsage::default();
        let views =
            compute(&store, &month, None, 1_795_395_723_000, DEFAULT_WINDOW_MS).expect("views");
        assert!(views.usage_this_month.is_empty());
        assert_eq!(
            serde_json::to_string(&views.cost_this_month_usd).expect("json"),
            "0.0"
        );
        store.shutdown();
    }

    #[test]
    fn increase_handles_resets_and_births() {
        assert_eq!(increase(Some(10.0), &[(1, 12.0), (2, 15.0)]), 5.0);
        assert_eq!(increase(None, &[(1, 12.0), (2, 15.0)]), 15.0);
        // Reset between 15 and 3: the counter restarted, 3 new.
        assert_eq!(increase(Some(10.0), &[(1, 15.0), (2, 3.0), (3, 4.0)]), 9.0);
        assert_eq!(increase(Some(10.0), &[]), 0.0);
    }

    #[test]
    fn quantile_matches_prometheus_interpolation() {
        // 100 observations: 50 ≤ 0.1, 90 ≤ 0.5, 100 ≤ 1.
        let buckets = [
            (0.1, 50.0),
            (0.5, 90.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(histogram_quantile(0.5, &buckets), Some(0.1));
        // Rank 95 lies in (0.5, 1]: 0.5 + 0.5 * (95 - 90) / 10.
        assert_eq!(histogram_quantile(0.95, &buckets), Some(0.75));
        // Rank 25 in the first bucket: 0 + 0.1 * 25 / 50.
        assert_eq!(histogram_quantile(0.25, &buckets), Some(0.05));
        let overflow = [(1.0, 10.0), (f64::INFINITY, 100.0)];
        assert_eq!(histogram_quantile(0.99, &overflow), Some(1.0));
        assert_eq!(
            histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(
            histogram_quantile(0.5, &[(1.0, 3.0)]),
            None,
            "no +Inf bucket"
        );
    }

    #[test]
    fn month_start() {
        // 2026-11-23T01:02:03Z → 2026-11-01T00:00:00Z.
        assert_eq!(month_start_ms(1_795_395_723_000), 1_793_491_200_000);
        // 2024-02-29T12:00:00Z → 2024-02-01.
        assert_eq!(month_start_ms(1_709_208_000_000), 1_706_745_600_000);
        assert_eq!(month_start_ms(1_706_745_600_000), 1_706_745_600_000);
    }
}
