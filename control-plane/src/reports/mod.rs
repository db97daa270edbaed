//! Operations reports (`GET /ops/reports/{daily|weekly|monthly}`, `aisemble-cp report`): the
//! operations guide's daily, weekly and monthly checklists, computed from live data over the
//! report's window.
//!
//! Every figure comes from the control plane's own PromQL evaluator over a [`SeriesSource`] (the
//! store in production, [`crate::query::memory::MemorySeries`] in tests), evaluated at the end of
//! the window and, for trends, at the end of the previous window of the same length. What PromQL
//! this version does not evaluate (`predict_linear`) is done here by [`linear_fit`], the same
//! least-squares fit. The rest of the inputs (agents, alerts, certificates) are plain values the
//! caller reads, so [`compute`] does no I/O beyond the series source and reads no clock.
//!
//! The [`Report`] type is a serialization boundary of its own: the HTTP handler sends it as JSON,
//! and the CLI reads it back to print it as text ([`text::render`]).

pub mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::query::{self, QueryError, SeriesSource, Value};

const DAY_MS: i64 = 86_400_000;

/// Certificates expiring within this many days are flagged.
pub const CERT_WARN_DAYS: f64 = 30.0;

/// Disks forecast to fill within this many days are flagged.
pub const DISK_WARN_DAYS: f64 = 30.0;

/// Disk use above this percentage is flagged (the `DiskFilling` rule's threshold).
pub const DISK_WARN_PERCENT: f64 = 80.0;

/// A disk forecast needs samples spanning at least this long: a line through a few minutes of
/// data extrapolates noise into weeks.
pub const MIN_FIT_SPAN_MS: i64 = 3_600_000;

/// Error and failure rates above this share are flagged (the `HighErrorRate` rule's threshold).
pub const ERROR_RATE_WARN: f64 = 0.05;

/// Hosts seen up for less than this share of the window are flagged.
pub const UPTIME_WARN: f64 = 0.99;

/// A report's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The last 24 hours.
    Daily,
    /// The last 7 days.
    Weekly,
    /// The last 30 days.
    Monthly,
}

impl Period {
    /// `daily`, `weekly` or `monthly`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "daily" => Some(Self::Daily),
            "weekly" => Some(Self::Weekly),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }

    /// The period's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }

    /// The window's length in milliseconds.
    pub fn window_ms(self) -> i64 {
        match self {
            Self::Daily => DAY_MS,
            Self::Weekly => 7 * DAY_MS,
            Self::Monthly => 30 * DAY_MS,
        }
    }

    /// The window as a PromQL duration.
    fn promql(self) -> &'static str {
        match self {
            Self::Daily => "1d",
            Self::Weekly => "7d",
            Self::Monthly => "30d",
        }
    }
}

/// An agent as the registry knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInput {
    /// Name (`host` label).
    pub name: String,
    /// Connected now.
    pub connected: bool,
    /// Last seen (ms).
    pub last_seen_ms: i64,
}

/// A pending or firing alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertInput {
    /// Alert name.
    pub name: String,
    /// `firing` or `pending`.
    pub state: String,
    /// Labels (with `severity`, `host`, `category`...).
    pub labels: BTreeMap<String, String>,
    /// The `summary` annotation, if any.
    pub summary: Option<String>,
    /// When it started firing (ms).
    pub fired_at_ms: Option<i64>,
}

/// An issued, unrevoked certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateInput {
    /// Who it was issued to.
    pub name: String,
    /// Serial, hex.
    pub serial_hex: String,
    /// End of validity (ms).
    pub not_after_ms: i64,
}

/// Everything [`compute`] needs besides the series.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The period.
    pub period: Period,
    /// End of the window (ms).
    pub now_ms: i64,
    /// Agents.
    pub agents: Vec<AgentInput>,
    /// Current alerts.
    pub alerts: Vec<AlertInput>,
    /// Unrevoked certificates.
    pub certificates: Vec<CertificateInput>,
    /// Connections refused since the control plane started, by reason (bad or revoked
    /// certificates...).
    pub refused_connections: BTreeMap<String, u64>,
}

/// A report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
    /// Start of the window (ms).
    pub start_ms: i64,
    /// End of the window (ms).
    pub end_ms: i64,
    /// What needs an operator's attention, one line each; empty when all is well.
    pub findings: Vec<String>,
    /// Every host's health.
    pub hosts: Vec<HostHealth>,
    /// Error rate and p95 latency per service, this window against the previous one.
    pub services: Vec<ServiceTrend>,
    /// Failure rate and p95 latency per model, this window against the previous one.
    pub models: Vec<ModelTrend>,
    /// Disk use and forecast per host and mount.
    pub disks: Vec<DiskForecast>,
    /// Backup results.
    pub backups: Backups,
    /// Security alerts and refused connections.
    pub security: Security,
    /// Certificate expiry (the control plane's CA and server certificates, every unrevoked agent
    /// certificate), soonest first.
    pub certificates: Vec<CertificateExpiry>,
    /// Inference cost.
    pub cost: Cost,
}

/// One host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostHealth {
    /// Host name.
    pub host: String,
    /// Connected now.
    pub up: bool,
    /// Share of the window the agent was connected, as the control plane recorded it
    /// (`avg_over_time(aisemble_agent_up[window])`); `None` without samples.
    pub uptime_share: Option<f64>,
    /// Last seen (ms).
    pub last_seen_ms: i64,
}

/// A figure now and in the previous window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Trend {
    /// This window.
    pub now: Option<f64>,
    /// The window before.
    pub previous: Option<f64>,
    /// `now - previous`, when both are known.
    pub change: Option<f64>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceTrend {
    /// Service name.
    pub service: String,
    /// Requests in this window.
    pub requests: f64,
    /// `errors / requests`.
    pub error_rate: Trend,
    /// p95 request latency (seconds).
    pub p95_latency_seconds: Trend,
}

/// One model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelTrend {
    /// Provider (empty when not reported).
    pub provider: String,
    /// Model.
    pub model: String,
    /// Inferences in this window.
    pub inferences: f64,
    /// `failures / inferences`.
    pub failure_rate: Trend,
    /// p95 inference latency (seconds).
    pub p95_latency_seconds: Trend,
}

/// One filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DiskForecast {
    /// Host.
    pub host: String,
    /// Mount point.
    pub mount: String,
    /// Latest use (%).
    pub usage_percent: f64,
    /// Growth from the linear fit over the window, in percentage points per day; `None` with
    /// less than [`MIN_FIT_SPAN_MS`] of samples.
    pub growth_percent_per_day: Option<f64>,
    /// Days until 100% at that growth; `None` when not growing.
    pub days_until_full: Option<f64>,
}

/// Backup results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Backups {
    /// Whether this control plane has backup results to report.
    pub available: bool,
    /// Why not, or a summary.
    pub note: String,
    /// Per job and host: the share of runs in the window that succeeded.
    pub jobs: Vec<BackupJob>,
}

/// One backup job on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupJob {
    /// Job.
    pub job: String,
    /// Host.
    pub host: String,
    /// Whether the last run succeeded.
    pub last_run_success: bool,
}

/// Security findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Security {
    /// Firing alerts labelled `category="security"` (or `type="security"`).
    pub firing: Vec<AlertLine>,
    /// Agent connections refused since the control plane started, by reason (non-zero only).
    pub refused_connections: BTreeMap<String, u64>,
}

/// A firing alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertLine {
    /// Alert name.
    pub name: String,
    /// Severity label.
    pub severity: String,
    /// Host label.
    pub host: String,
    /// Summary annotation.
    pub summary: String,
}

/// One certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateExpiry {
    /// Issued to.
    pub name: String,
    /// Serial, hex.
    pub serial_hex: String,
    /// End of validity (ms).
    pub not_after_ms: i64,
    /// Days left (negative when expired).
    pub days_left: f64,
    /// `ok`, `expiring` (within [`CERT_WARN_DAYS`]) or `expired`.
    pub status: String,
}

/// Inference cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Cost {
    /// This calendar month so far (`aisemble_model_cost_month_to_date_usd`), by provider and
    /// model, largest first.
    pub month_to_date: Vec<CostLine>,
    /// Sum of `month_to_date`.
    pub month_to_date_total_usd: f64,
    /// In this window (`increase(aisemble_model_cost_usd_total[window])`), by provider and
    /// model, largest first.
    pub window: Vec<CostLine>,
    /// Sum of `window`, this window against the previous one.
    pub window_total_usd: Trend,
}

/// Cost of one provider and model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostLine {
    /// Provider (`unknown` when not reported).
    pub provider: String,
    /// Model.
    pub model: String,
    /// US dollars.
    pub usd: f64,
}

/// Builds the report for `inputs.period` ending at `inputs.now_ms`. Blocking (reads the series).
///
/// # Errors
/// When the series source fails (the queries themselves are constants of this module).
pub fn compute(source: &dyn SeriesSource, inputs: &Inputs) -> Result<Report, QueryError> {
    let period = inputs.period;
    let w = period.promql();
    let now = inputs.now_ms;
    let before = now - period.window_ms();
    let eval = |q: &str, t: i64| -> Result<Series, QueryError> {
        vector(query::instant(source, &query::parse(q)?, t)?)
    };
    let both =
        |q: &str| -> Result<(Series, Series), QueryError> { Ok((eval(q, now)?, eval(q, before)?)) };

    // Hosts: registry state now, uptime share from the control plane's own `aisemble_agent_up`.
    let uptime = by(
        &eval(&format!("avg_over_time(aisemble_agent_up[{w}])"), now)?,
        &["host"],
    );
    let hosts = inputs
        .agents
        .iter()
        .map(|a| HostHealth {
            host: a.name.clone(),
            up: a.connected,
            uptime_share: uptime.get(&vec![a.name.clone()]).copied(),
            last_seen_ms: a.last_seen_ms,
        })
        .collect();

    // Services: error rate as the HighErrorRate rule defines it, p95 as SlowResponses does.
    let requests = both(&format!(
        "sum by (service) (increase(aisemble_requests_total[{w}]))"
    ))?;
    let errors = both(&format!(
        "sum by (service) (increase(aisemble_errors_total[{w}]))"
    ))?;
    let latency = both(&format!(
        "histogram_quantile(0.95, sum by (service, le) (rate(aisemble_request_duration_seconds_bucket[{w}])))"
    ))?;
    let services = rate_trends(&["service"], &requests, &errors, &latency)
        .into_iter()
        .map(|(mut key, (n, rate, p95))| ServiceTrend {
            service: key.pop().unwrap_or_default(),
            requests: n,
            error_rate: rate,
            p95_latency_seconds: p95,
        })
        .collect();

    let inferences = both(&format!(
        "sum by (provider, model) (increase(aisemble_model_inference_total[{w}]))"
    ))?;
    let failures = both(&format!(
        "sum by (provider, model) (increase(aisemble_model_inference_total{{outcome=\"failure\"}}[{w}]))"
    ))?;
    let latency = both(&format!(
        "histogram_quantile(0.95, sum by (provider, model, le) (rate(aisemble_model_inference_duration_seconds_bucket[{w}])))"
    ))?;
    let models = rate_trends(&["provider", "model"], &inferences, &failures, &latency)
        .into_iter()
        .map(|(key, (n, rate, p95))| {
            let mut key = key.into_iter();
            ModelTrend {
                provider: key.next().unwrap_or_default(),
                model: key.next().unwrap_or_default(),
                inferences: n,
                failure_rate: rate,
                p95_latency_seconds: p95,
            }
        })
        .collect();

    // Disks: raw samples over the window, fitted like predict_linear.
    let raw = query::instant(
        source,
        &query::parse(&format!("aisemble_system_disk_usage_percent[{w}]"))?,
        now,
    )?;
    let mut disks: Vec<DiskForecast> = match raw {
        Value::Matrix(series) => series
            .iter()
            .filter_map(|s| {
                let samples: Vec<(i64, f64)> = s
                    .samples
                    .iter()
                    .copied()
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                let &(last_t, latest) = samples.last()?;
                let span = last_t - samples.first().map_or(last_t, |s| s.0);
                let fit = linear_fit(&samples, now).filter(|_| span >= MIN_FIT_SPAN_MS);
                Some(DiskForecast {
                    host: s.labels.get("host").unwrap_or("").to_owned(),
                    mount: s.labels.get("mount").unwrap_or("").to_owned(),
                    usage_percent: latest,
                    growth_percent_per_day: fit.map(|f| f.slope_per_second * 86_400.0),
                    days_until_full: fit.and_then(|f| days_until_full(f, 100.0)),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    disks.sort_by(|a, b| {
        let soon = |d: &DiskForecast| d.days_until_full.unwrap_or(f64::INFINITY);
        soon(a)
            .total_cmp(&soon(b))
            .then(b.usage_percent.total_cmp(&a.usage_percent))
    });

    // Backups: results exist only where something records `aisemble_backup_last_run_success`.
    let backup_runs = eval("aisemble_backup_last_run_success", now)?;
    let backups = if backup_runs.is_empty() {
        Backups {
            available: false,
            note: "none recorded: no backup job has run (create one with POST /ops/backups/jobs)"
                .into(),
            jobs: Vec::new(),
        }
    } else {
        let jobs: Vec<BackupJob> = backup_runs
            .iter()
            .map(|(labels, v)| BackupJob {
                job: labels.get("job").cloned().unwrap_or_default(),
                host: labels.get("host").cloned().unwrap_or_default(),
                last_run_success: *v >= 1.0,
            })
            .collect();
        let failed = jobs.iter().filter(|j| !j.last_run_success).count();
        Backups {
            available: true,
            note: format!("{} jobs, {failed} with a failed last run", jobs.len()),
            jobs,
        }
    };

    let security = Security {
        firing: inputs
            .alerts
            .iter()
            .filter(|a| a.state == "firing" && is_security(&a.labels))
            .map(alert_line)
            .collect(),
        refused_connections: inputs
            .refused_connections
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.clone(), *n))
            .collect(),
    };

    let mut certificates: Vec<CertificateExpiry> = inputs
        .certificates
        .iter()
        .map(|c| certificate_expiry(c, now))
        .collect();
    certificates.sort_by(|a, b| a.days_left.total_cmp(&b.days_left));

    let month_to_date = group_cost(&eval("aisemble_model_cost_month_to_date_usd", now)?);
    let window_cost = both(&format!("increase(aisemble_model_cost_usd_total[{w}])"))?;
    let window = group_cost(&window_cost.0);
    let total = |lines: &[CostLine]| lines.iter().map(|l| l.usd).sum::<f64>();
    let previous = group_cost(&window_cost.1);
    let cost = Cost {
        month_to_date_total_usd: total(&month_to_date) + 0.0,
        month_to_date,
        window_total_usd: trend(
            (!window.is_empty()).then(|| total(&window)),
            (!previous.is_empty()).then(|| total(&previous)),
        ),
        window,
    };

    let mut report = Report {
        period: period.as_str().to_owned(),
        start_ms: before,
        end_ms: now,
        findings: Vec::new(),
        hosts,
        services,
        models,
        disks,
        backups,
        security,
        certificates,
        cost,
    };
    report.findings = findings(&report, &inputs.alerts);
    Ok(report)
}

/// An instant vector's samples as label maps and values.
type Series = Vec<(BTreeMap<String, String>, f64)>;

/// An instant vector as label maps and values (NaN, as from 0/0, dropped).
fn vector(value: Value) -> Result<Series, QueryError> {
    match value {
        Value::Vector(samples) => Ok(samples
            .into_iter()
            .filter(|s| s.v.is_finite())
            .map(|s| {
                let labels = s
                    .labels
                    .iter()
                    .map(|p| (p.name.to_string(), p.value.to_string()))
                    .collect();
                (labels, s.v)
            })
            .collect()),
        Value::Scalar(_, v) => Ok(vec![(BTreeMap::new(), v)]),
        _ => Err(QueryError::BadData(
            "report query did not return an instant vector".into(),
        )),
    }
}

/// Values keyed by the given labels (absent labels are empty strings), summed on collision.
fn by(series: &[(BTreeMap<String, String>, f64)], keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for (labels, v) in series {
        let key = keys
            .iter()
            .map(|k| labels.get(*k).cloned().unwrap_or_default())
            .collect();
        *out.entry(key).or_insert(0.0) += v;
    }
    out
}

type RateTrend = (f64, Trend, Trend);

/// Per key: the count in this window, `bad / count` now against before, and p95 now against
/// before. Keys with no traffic in this window are left out.
fn rate_trends(
    keys: &[&str],
    counts: &(Series, Series),
    bad: &(Series, Series),
    p95: &(Series, Series),
) -> BTreeMap<Vec<String>, RateTrend> {
    let (counts_now, counts_before) = (by(&counts.0, keys), by(&counts.1, keys));
    let (bad_now, bad_before) = (by(&bad.0, keys), by(&bad.1, keys));
    let (p95_now, p95_before) = (by(&p95.0, keys), by(&p95.1, keys));
    counts_now
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(key, n)| {
            let rate_now = ratio(bad_now.get(key).copied(), *n);
            let rate_before = counts_before
                .get(key)
                .and_then(|d| ratio(bad_before.get(key).copied(), *d));
            (
                key.clone(),
                (
                    *n,
                    trend(rate_now, rate_before),
                    trend(p95_now.get(key).copied(), p95_before.get(key).copied()),
                ),
            )
        })
        .collect()
}

/// `numerator / denominator`, a missing numerator counting as 0; `None` without a denominator.
pub fn ratio(numerator: Option<f64>, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator.unwrap_or(0.0) / denominator)
}

/// A figure now against the previous window.
pub fn trend(now: Option<f64>, previous: Option<f64>) -> Trend {
    Trend {
        now,
        previous,
        change: now.zip(previous).map(|(n, p)| n - p),
    }
}

/// A least-squares line through samples, anchored at an evaluation time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearFit {
    /// Units per second.
    pub slope_per_second: f64,
    /// The line's value at the evaluation time.
    pub value_at_t: f64,
}

/// The least-squares fit of `samples` with time measured from `t_ms`, as Prometheus'
/// `deriv`/`predict_linear` compute it; `None` with fewer than two samples or no spread in time.
pub fn linear_fit(samples: &[(i64, f64)], t_ms: i64) -> Option<LinearFit> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let (mut sum_x, mut sum_y, mut sum_xy, mut sum_x2) = (0.0, 0.0, 0.0, 0.0);
    for &(t, v) in samples {
        // Seconds relative to the evaluation time keep the sums small (precision).
        let x = (t - t_ms) as f64 / 1000.0;
        sum_x += x;
        sum_y += v;
        sum_xy += x * v;
        sum_x2 += x * x;
    }
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    if var_x <= 0.0 {
        return None;
    }
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    Some(LinearFit {
        slope_per_second: slope,
        value_at_t: intercept,
    })
}

/// Days until the fitted line reaches `full`: 0 when already there, `None` when not growing.
pub fn days_until_full(fit: LinearFit, full: f64) -> Option<f64> {
    if fit.value_at_t >= full {
        return Some(0.0);
    }
    (fit.slope_per_second > 0.0).then(|| (full - fit.value_at_t) / fit.slope_per_second / 86_400.0)
}

/// Cost samples summed by provider and model (hosts together), largest first.
pub fn group_cost(series: &[(BTreeMap<String, String>, f64)]) -> Vec<CostLine> {
    let mut lines: Vec<CostLine> = by(series, &["provider", "model"])
        .into_iter()
        .map(|(key, usd)| {
            let mut key = key.into_iter();
            let provider = key.next().filter(|p| !p.is_empty());
            CostLine {
                provider: provider.unwrap_or_else(|| "unknown".into()),
                model: key.next().unwrap_or_default(),
                // -0.0 (a counter's reset arithmetic) prints as "-0.00".
                usd: usd + 0.0,
            }
        })
        .collect();
    lines.sort_by(|a, b| {
        b.usd
            .total_cmp(&a.usd)
            .then_with(|| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)))
    });
    lines
}

/// Whether an alert's labels mark it as a security alert.
pub fn is_security(labels: &BTreeMap<String, String>) -> bool {
    ["category", "type"]
        .iter()
        .any(|k| labels.get(*k).is_some_and(|v| v == "security"))
}

fn alert_line(alert: &AlertInput) -> AlertLine {
    AlertLine {
        name: alert.name.clone(),
        severity: alert.labels.get("severity").cloned().unwrap_or_default(),
        host: alert.labels.get("host").cloned().unwrap_or_default(),
        summary: alert.summary.clone().unwrap_or_default(),
    }
}

/// A certificate's days left at `now_ms` and its status.
pub fn certificate_expiry(cert: &CertificateInput, now_ms: i64) -> CertificateExpiry {
    let days_left = (cert.not_after_ms - now_ms) as f64 / DAY_MS as f64;
    let status = if days_left < 0.0 {
        "expired"
    } else if days_left < CERT_WARN_DAYS {
        "expiring"
    } else {
        "ok"
    };
    CertificateExpiry {
        name: cert.name.clone(),
        serial_hex: cert.serial_hex.clone(),
        not_after_ms: cert.not_after_ms,
        days_left,
        status: status.to_owned(),
    }
}

/// The checklist items that need attention.
fn findings(report: &Report, alerts: &[AlertInput]) -> Vec<String> {
    let mut out = Vec::new();
    for host in &report.hosts {
        if !host.up {
            out.push(format!("host {} is down", host.host));
        } else if let Some(share) = host.uptime_share.filter(|s| *s < UPTIME_WARN) {
            out.push(format!(
                "host {} was up {:.1}% of the window",
                host.host,
                share * 100.0
            ));
        }
    }
    for s in &report.services {
        if let Some(rate) = s.error_rate.now.filter(|r| *r > ERROR_RATE_WARN) {
            out.push(format!(
                "service {} error rate {:.1}%",
                s.service,
                rate * 100.0
            ));
        }
        if let (Some(now), Some(before)) =
            (s.p95_latency_seconds.now, s.p95_latency_seconds.previous)
            && before > 0.0
            && now > before * 1.5
        {
            out.push(format!(
                "service {} p95 latency rose from {before:.3}s to {now:.3}s",
                s.service
            ));
        }
    }
    for m in &report.models {
        if let Some(rate) = m.failure_rate.now.filter(|r| *r > ERROR_RATE_WARN) {
            out.push(format!(
                "model {} failure rate {:.1}%",
                m.model,
                rate * 100.0
            ));
        }
    }
    for d in &report.disks {
        if d.usage_percent > DISK_WARN_PERCENT {
            out.push(format!(
                "disk {} on {} is {:.1}% full",
                d.mount, d.host, d.usage_percent
            ));
        } else if let Some(days) = d.days_until_full.filter(|d| *d < DISK_WARN_DAYS) {
            out.push(format!(
                "disk {} on {} full in {days:.1} days at the current rate",
                d.mount, d.host
            ));
        }
    }
    if !report.backups.available {
        out.push(format!("backups: {}", report.backups.note));
    }
    for j in report.backups.jobs.iter().filter(|j| !j.last_run_success) {
        out.push(format!("backup {} on {} failed", j.job, j.host));
    }
    for a in &report.security.firing {
        out.push(format!("security alert {} firing on {}", a.name, a.host));
    }
    for c in report.certificates.iter().filter(|c| c.status != "ok") {
        out.push(format!(
            "certificate of {} (serial {}) {} ({:.0} days left)",
            c.name, c.serial_hex, c.status, c.days_left
        ));
    }
    let critical = alerts
        .iter()
        .filter(|a| {
            a.state == "firing" && a.labels.get("severity").is_some_and(|s| s == "critical")
        })
        .count();
    if critical > 0 {
        out.push(format!("{critical} critical alerts firing"));
    }
    out
}

#[cfg(test)]
mod tests;
