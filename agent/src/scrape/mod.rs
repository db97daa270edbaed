//! Scraping local Prometheus text endpoints (inference servers: vLLM, TGI, Triton) and mapping
//! their families into `aisemble_*` names; each scrape is journaled as one record.
//!
//! Each `[[scrape]]` target runs in its own task on its own interval (a slow or hanging target
//! delays no other), with one HTTP client and a timeout of at most the interval. A scrape fetches
//! the body (at most 16 MiB, else the scrape fails), parsing it line by line as it arrives
//! (`parse.rs`), maps it (`mapping.rs`, pure; on a blocking thread when large) and journals one
//! `Record::Metrics` holding the mapped series plus the target's own series, labelled
//! `target="<name>"`:
//!
//! | series | value |
//! | --- | --- |
//! | `aisemble_scrape_up` | 1 when the scrape succeeded, else 0 |
//! | `aisemble_scrape_duration_seconds` | fetch, parse and mapping time |
//! | `aisemble_scrape_samples` | mapped series kept (0 on failure) |
//!
//! A failed scrape (connection refused, timeout, non-2xx status, oversized or non-UTF-8 body)
//! journals only those three series, with `up` 0; the first failure of a streak is logged as a
//! warning, the rest at debug level, and the recovery at info level. Nothing is scraped while
//! monitoring is paused. This module never adds a `host` label (the control plane sets it).
//!
//! # Mapping
//!
//! A rule (`[[scrape.map]]` or a preset row) matches a family by its exposed name (`from`; for a
//! histogram or summary the family without `_bucket`/`_sum`/`_count`) and writes it as `to`:
//!
//! - labels: `drop_labels` are removed (series that then coincide are **summed**, bucket by
//!   bucket for histograms), `rename_labels` renamed (a renamed label wins over a source label of
//!   the same name), `add_labels` set, then the target's `labels` set on every kept series
//!   (they win over scraped labels). A scraped `host` label becomes `exported_host`. Label names
//!   that are not valid Prometheus names are left out (logged at debug level).
//! - values: multiplied by `scale`. For a histogram, `_sum` and the bucket bounds (`le`) are
//!   scaled and the counts are not, so a microsecond histogram scaled by `0.000001` is a
//!   consistent seconds histogram. For a summary, quantile values and `_sum` are scaled.
//! - shape: a counter, gauge or untyped sample becomes `to`; a histogram becomes `to_bucket{le}`,
//!   `to_sum`, `to_count`; a summary becomes `to{quantile}`, `to_sum`, `to_count`. `le` and
//!   `quantile` are written as Prometheus's Go client writes them (`0.1`, `1`, `1e+06`, `+Inf`),
//!   whatever the server wrote (`1.0`).
//! - precedence: if any `[[scrape.map]]` rule names a family, the user's rules for it apply and
//!   the preset's do not (nor the preset's label renames: a user rule changes only what it says).
//!   Every rule naming a family applies, so one family can feed several outputs.
//! - families no rule names: dropped (`unmapped = "drop"`, the default) or kept as
//!   `prefix + name` with every character outside `[A-Za-z0-9_]` made `_`
//!   (`unmapped = "prefix"`: `vllm:gpu_cache_usage_perc` → `aisemble_scraped_vllm_gpu_cache_usage_perc`),
//!   labels kept (with the preset's label renames).
//!
//! # Presets
//!
//! `preset = "vllm"` (vLLM's `/metrics`; every rule, and passed-through families, rename
//! `model_name` → `model`):
//!
//! | from | to |
//! | --- | --- |
//! | `vllm:e2e_request_latency_seconds` (histogram) | `aisemble_model_inference_duration_seconds` |
//! | `vllm:request_queue_time_seconds` (histogram) | `aisemble_model_queue_duration_seconds` |
//! | `vllm:time_to_first_token_seconds` (histogram) | `aisemble_model_time_to_first_token_seconds` |
//! | `vllm:prompt_tokens_total` | `aisemble_model_tokens_total{direction="in"}` |
//! | `vllm:generation_tokens_total` | `aisemble_model_tokens_total{direction="out"}` |
//! | `vllm:request_success_total` (drop `finished_reason`, summed) | `aisemble_model_inference_total{outcome="success"}` |
//! | `vllm:num_requests_running` | `aisemble_model_requests_running` |
//! | `vllm:num_requests_waiting` | `aisemble_model_queue_depth` |
//!
//! `preset = "tgi"` (text-generation-inference; it has no model label: set
//! `labels = { model = "..." }`):
//!
//! | from | to |
//! | --- | --- |
//! | `tgi_request_duration` (histogram, seconds) | `aisemble_model_inference_duration_seconds` |
//! | `tgi_request_queue_duration` (histogram, seconds) | `aisemble_model_queue_duration_seconds` |
//! | `tgi_request_success` | `aisemble_model_inference_total{outcome="success"}` |
//! | `tgi_request_failure` (drop `err`, summed) | `aisemble_model_inference_total{outcome="failure"}` |
//! | `tgi_request_input_length` (histogram, tokens) | `aisemble_model_request_input_tokens` |
//! | `tgi_request_generated_tokens` (histogram, tokens) | `aisemble_model_request_output_tokens` |
//! | `tgi_queue_size` | `aisemble_model_queue_depth` |
//!
//! `preset = "triton"` (Triton Inference Server; labels `model` and `version` are kept):
//!
//! | from | to |
//! | --- | --- |
//! | `nv_inference_request_success` | `aisemble_model_inference_total{outcome="success"}` |
//! | `nv_inference_request_success` | `aisemble_model_inference_duration_seconds_count` |
//! | `nv_inference_request_success` | `aisemble_model_queue_duration_seconds_count` |
//! | `nv_inference_request_failure` (drop `reason`, summed) | `aisemble_model_inference_total{outcome="failure"}` |
//! | `nv_inference_request_duration_us` (× 0.000001) | `aisemble_model_inference_duration_seconds_sum` |
//! | `nv_inference_queue_duration_us` (× 0.000001) | `aisemble_model_queue_duration_seconds_sum` |
//! | `nv_inference_pending_request_count` | `aisemble_model_queue_depth` |
//!
//! Triton exports cumulative microsecond counters, not histograms: the two durations become
//! `_sum`/`_count` pairs without buckets, so `rate(x_sum[5m]) / rate(x_count[5m])` gives the
//! mean latency and `histogram_quantile` has nothing to work on. Triton adds a request's duration
//! and queue time to those counters only when the request succeeds, so the successful-request
//! counter is the matching `_count` (not `nv_inference_count`, which counts batch items, nor
//! `nv_inference_exec_count`, which counts batches). Triton counts a batched request once in
//! `nv_inference_request_success`, so `aisemble_model_inference_total` counts requests.

mod mapping;
mod parse;
mod presets;

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use aisemble_shared::{
    config::{ConfigError, MappingConfig, ScrapeConfig},
    metrics::{self, HOST_LABEL, is_valid_label_name, is_valid_metric_name},
    wire::{MetricRecord, MonitoringState, Record, Sample},
};
use tokio::{sync::watch, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::sink::RecordSink;

use self::mapping::{Mapped, Mapper, Rule, Unmapped};
pub use self::presets::{Preset, UnknownPreset};

pub use crate::schedule::DEFAULT_TIMEOUT;
/// Default `prefix` for passed-through families.
pub const DEFAULT_PREFIX: &str = "aisemble_scraped_";
/// Largest body read; a bigger one fails the scrape.
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// The series of bodies larger than this are mapped on a blocking thread (parsing happens as the
/// body arrives, a chunk at a time).
const BLOCKING_MAP_BYTES: usize = 64 << 10;
/// The text format only: the parser does not read OpenMetrics.
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// A checked scrape target.
#[derive(Debug, Clone)]
pub struct ScrapeSpec {
    /// Unique name (the `target` label).
    pub name: String,
    /// The endpoint (http or https).
    pub url: reqwest::Url,
    /// Time between scrapes.
    pub interval: Duration,
    /// Longest a fetch may take (at most `interval`).
    pub timeout: Duration,
    /// The built-in mapping, if any.
    pub preset: Option<Preset>,
    mapper: Arc<Mapper>,
    max_body_bytes: usize,
}

impl ScrapeSpec {
    /// Checks one `[[scrape]]` entry.
    ///
    /// # Errors
    /// A one-line error naming the key (`scrape.NAME.preset`) and the fix.
    pub fn from_config(
        path: &Path,
        config: &ScrapeConfig,
        default_interval: Duration,
    ) -> Result<Self, ConfigError> {
        let name = config.name.as_str();
        if name.trim().is_empty() {
            return Err(ConfigError::new(
                path,
                Some("scrape.name"),
                "is empty",
                "give each [[scrape]] entry a name (it becomes the `target` label)",
            ));
        }
        let error = |key: &str, message: String, hint: &str| {
            ConfigError::new(
                path,
                Some(format!("scrape.{name}.{key}").as_str()),
                message,
                hint,
            )
        };

        let url = reqwest::Url::parse(&config.url).map_err(|e| {
            error(
                "url",
                format!("{:?} is not a URL ({e})", config.url),
                "write it like \"http://127.0.0.1:8000/metrics\"",
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(error(
                "url",
                format!("{:?} is not an http or https URL", config.url),
                "write it like \"http://127.0.0.1:8000/metrics\"",
            ));
        }

        // Any non-zero interval: a scrape has no lower bound of its own.
        let (interval, timeout) = crate::schedule::resolve(
            config.interval,
            config.timeout,
            default_interval,
            Duration::from_millis(1),
        )
        .map_err(|e| error(e.key, e.message, e.hint))?;

        let preset = match config.preset.as_deref() {
            None => None,
            Some(value) => Preset::parse(value).map_err(|UnknownPreset| {
                error(
                    "preset",
                    format!("unknown preset {value:?}"),
                    &format!("use one of {}", quoted_list(Preset::NAMES)),
                )
            })?,
        };

        let prefix = config.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
        if !is_valid_metric_name(prefix) {
            return Err(error(
                "prefix",
                format!("{prefix:?} does not start a valid metric name"),
                "use letters, digits and `_`, not starting with a digit, like \"aisemble_scraped_\"",
            ));
        }
        let unmapped = match config.unmapped.as_deref() {
            None | Some("drop") => Unmapped::Drop,
            Some("prefix") => Unmapped::Prefix(prefix.to_owned()),
            Some(other) => {
                return Err(error(
                    "unmapped",
                    format!("unknown value {other:?}"),
                    "use \"drop\" or \"prefix\"",
                ));
            }
        };

        let mut labels = Vec::with_capacity(config.labels.len());
        for (label, value) in &config.labels {
            check_output_label(label).map_err(|(message, hint)| error("labels", message, hint))?;
            labels.push((label.clone(), value.clone()));
        }

        let mut rules = Vec::with_capacity(config.map.len());
        for (idx, map) in config.map.iter().enumerate() {
            rules.push(check_rule(map).map_err(|(key, message, hint)| {
                error(
                    &format!("map.{key}"),
                    format!("rule {} (from {:?}): {message}", idx + 1, map.from),
                    hint,
                )
            })?);
        }

        Ok(Self {
            name: name.to_owned(),
            url,
            interval,
            timeout,
            preset,
            mapper: Arc::new(Mapper::new(rules, preset, unmapped, labels)),
            max_body_bytes: MAX_BODY_BYTES,
        })
    }
}

/// Scrapes every target until `shutdown` (none while `monitoring` is paused), journaling through `sink`.
pub fn spawn_all(
    specs: Vec<ScrapeSpec>,
    sink: RecordSink,
    monitoring: watch::Receiver<MonitoringState>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    crate::schedule::spawn_each(specs, "scrape", move |spec| {
        let span = info_span!("scrape", target = %spec.name);
        run_target(spec, sink.clone(), monitoring.clone(), shutdown.clone()).instrument(span)
    })
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    /// The request failed (connection, TLS, timeout inside the client).
    #[error("request failed: {0}")]
    Request(String),
    /// The fetch took longer than the timeout.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The endpoint answered with a non-2xx status.
    #[error("status {0}")]
    Status(u16),
    /// The body is larger than the limit.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not UTF-8 text.
    #[error("body is not UTF-8 text")]
    NotUtf8,
    /// The blocking parse task failed.
    #[error("parse task failed: {0}")]
    Task(String),
}

/// Scrapes `spec` every interval until `shutdown`.
async fn run_target(
    spec: ScrapeSpec,
    sink: RecordSink,
    monitoring: watch::Receiver<MonitoringState>,
    shutdown: CancellationToken,
) {
    let client = match crate::http_client::client_for(&spec.url, None, spec.timeout) {
        Ok(client) => client,
        Err(error) => {
            error!(%error, "Cannot build the scrape's HTTP client; not scraping this target.");
            return;
        }
    };
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut streak = Streak::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if *monitoring.borrow() == MonitoringState::Paused {
            continue;
        }
        let timestamp_ms = crate::status::now_ms();
        let started = Instant::now();
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            result = scrape_once(&client, &spec) => result,
        };
        let duration = started.elapsed();
        let samples = match result {
            Ok(mapped) => {
                if !mapped.invalid_labels.is_empty() {
                    debug!(labels = ?mapped.invalid_labels, "Invalid label names left out of scraped series.");
                }
                let failures = streak.succeed();
                if failures > 0 {
                    info!(failures, "Scrape recovered.");
                }
                own_series(&spec.name, true, duration, mapped.samples)
            }
            Err(error) => {
                if streak.fail() {
                    warn!(%error, url = %spec.url, "Scrape failed; reporting aisemble_scrape_up 0 until it recovers.");
                } else {
                    debug!(%error, "Scrape failed again.");
                }
                own_series(&spec.name, false, duration, Vec::new())
            }
        };
        let record = Record::Metrics(MetricRecord {
            timestamp_ms,
            samples,
        });
        if let Err(error) = sink.append(record).await {
            warn!(%error, "Journaling a scrape failed.");
        }
    }
}

/// Fetches, parses and maps one scrape.
async fn scrape_once(client: &reqwest::Client, spec: &ScrapeSpec) -> Result<Mapped, ScrapeError> {
    let (series, n_bytes) =
        tokio::time::timeout(spec.timeout, fetch(client, &spec.url, spec.max_body_bytes))
            .await
            .map_err(|_| ScrapeError::Timeout(spec.timeout))??;
    let mapper = Arc::clone(&spec.mapper);
    if n_bytes > BLOCKING_MAP_BYTES {
        tokio::task::spawn_blocking(move || mapper.map(&series))
            .await
            .map_err(|e| ScrapeError::Task(e.to_string()))
    } else {
        Ok(mapper.map(&series))
    }
}

/// The series of a 2xx response of at most `limit` bytes, parsed line by line as the body
/// arrives (so it is never held whole), and the body's length.
async fn fetch(
    client: &reqwest::Client,
    url: &reqwest::Url,
    limit: usize,
) -> Result<(Vec<parse::Series>, usize), ScrapeError> {
    let request_error = |e: reqwest::Error| ScrapeError::Request(error_chain(&e));
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, ACCEPT)
        .send()
        .await
        .map_err(request_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(ScrapeError::Status(status.as_u16()));
    }
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ScrapeError::TooLarge(limit));
    }
    let mut lines = LineSplitter::default();
    let mut n_bytes = 0;
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        n_bytes += chunk.len();
        if n_bytes > limit {
            return Err(ScrapeError::TooLarge(limit));
        }
        lines.feed(&chunk)?;
    }
    Ok((lines.finish()?, n_bytes))
}

/// Cuts a body arriving in chunks into lines for the [`parse::Parser`]; only a line cut by a
/// chunk boundary is copied.
#[derive(Debug, Default)]
struct LineSplitter {
    parser: parse::Parser,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Parses the complete lines of `chunk`.
    fn feed(&mut self, mut chunk: &[u8]) -> Result<(), ScrapeError> {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            let (line, rest) = (&chunk[..end], &chunk[end + 1..]);
            if self.partial.is_empty() {
                self.parser.line(utf8(line)?);
            } else {
                self.partial.extend_from_slice(line);
                self.parser.line(utf8(&self.partial)?);
                self.partial.clear();
            }
            chunk = rest;
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// Parses the last line (one without a line break) and returns every series.
    fn finish(mut self) -> Result<Vec<parse::Series>, ScrapeError> {
        if !self.partial.is_empty() {
            self.parser.line(utf8(&self.partial)?);
        }
        Ok(self.parser.finish())
    }
}

/// A line of the body as text. A line break never occurs inside a UTF-8 sequence, so a body is
/// UTF-8 exactly when each of its lines is.
fn utf8(line: &[u8]) -> Result<&str, ScrapeError> {
    std::str::from_utf8(line).map_err(|_| ScrapeError::NotUtf8)
}

/// `samples` plus the target's own series.
fn own_series(target: &str, up: bool, duration: Duration, mut samples: Vec<Sample>) -> Vec<Sample> {
    let kept = samples.len() as f64;
    samples.extend(
        [
            Sample::new(metrics::SCRAPE_UP, if up { 1.0 } else { 0.0 }),
            Sample::new(metrics::SCRAPE_DURATION_SECONDS, duration.as_secs_f64()),
            Sample::new(metrics::SCRAPE_SAMPLES, kept),
        ]
        .map(|s| s.with_label("target", target)),
    );
    samples
}

/// Consecutive failures, so that a failing target warns once per streak.
#[derive(Debug, Default)]
struct Streak {
    failures: u64,
}

impl Streak {
    /// Counts a failure; true when it starts a streak.
    fn fail(&mut self) -> bool {
        self.failures += 1;
        self.failures == 1
    }

    /// Ends the streak; returns how many failures it had.
    fn succeed(&mut self) -> u64 {
        std::mem::take(&mut self.failures)
    }
}

/// A `labels`, `add_labels` or `rename_labels` target: a valid label name other than `host`.
fn check_output_label(label: &str) -> Result<(), (String, &'static str)> {
    if label == HOST_LABEL {
        return Err((
            "`host` is set by the control plane from the agent's certificate".into(),
            "remove it or use another label name",
        ));
    }
    if !is_valid_label_name(label) {
        return Err((
            format!("{label:?} is not a valid label name"),
            "use letters, digits and `_`, not starting with a digit or `__`",
        ));
    }
    Ok(())
}

/// Checks one `[[scrape.map]]` rule; errors are `(key, message, hint)`.
fn check_rule(map: &MappingConfig) -> Result<Rule, (&'static str, String, &'static str)> {
    if !is_valid_metric_name(&map.from) {
        return Err((
            "from",
            "is not a valid metric family name".into(),
            "write the family as the server exposes it, like \"vllm:num_requests_running\"",
        ));
    }
    if !is_valid_metric_name(&map.to) {
        return Err((
            "to",
            format!("{:?} is not a valid metric name", map.to),
            "use letters, digits, `_` and `:`, not starting with a digit",
        ));
    }
    let mut rename_labels = Vec::with_capacity(map.rename_labels.len());
    for (from, to) in &map.rename_labels {
        check_output_label(to).map_err(|(message, hint)| ("rename_labels", message, hint))?;
        rename_labels.push((from.clone(), to.clone()));
    }
    let mut add_labels = Vec::with_capacity(map.add_labels.len());
    for (label, value) in &map.add_labels {
        check_output_label(label).map_err(|(message, hint)| ("add_labels", message, hint))?;
        add_labels.push((label.clone(), value.clone()));
    }
    let scale = map.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale <= 0.0 {
        return Err((
            "scale",
            format!("{scale} is not a positive number"),
            "write a factor like 0.000001 (microseconds to seconds)",
        ));
    }
    Ok(Rule {
        from: map.from.clone(),
        to: map.to.clone(),
        rename_labels,
        drop_labels: map.drop_labels.clone(),
        add_labels,
        scale,
    })
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders an error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests;
