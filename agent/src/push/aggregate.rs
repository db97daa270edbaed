//! Cumulative aggregation of push events, as a Prometheus client library keeps it: counters,
//! gauges and histograms per label set, never one record per event. Pure: no I/O, no clocks.
//!
//! Memory is bounded by `max_keys`: a key is a (model, provider) pair, a service, a (service,
//! error kind) pair other than the `http_4xx`/`http_5xx` kinds every service has, or a circuit
//! breaker name; an event that would create a key beyond the limit is refused, while existing
//! keys keep aggregating. Keys are never forgotten (counters must not go back), so the set of
//! series only grows, up to the limit.
//!
//! Lookups do not allocate: each key is encoded into a reused scratch buffer (a table tag, then
//! each label value with its length) and looked up by that byte string.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use aisemble_shared::{
    metrics,
    wire::{Label, Sample},
};

use super::{
    PushSettings,
    event::{BreakerState, Event, Inference, Outcome, StatusClass},
};

/// Upper bounds of the latency histograms' buckets, in seconds (`+Inf` follows).
pub const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// [`BUCKETS`] as Prometheus formats `le`, then `+Inf`.
const LE: [&str; 14] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60",
    "+Inf",
];

/// Refusal of an event because it would create a key beyond `max_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// 0-based index of the refused event in what was applied.
    pub(crate) idx: usize,
    /// The limit.
    pub(crate) max_keys: usize,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many distinct models/services (limit {}); raise push.max_keys",
            self.max_keys
        )
    }
}

/// Aggregated events (pure; no I/O).
#[derive(Debug)]
pub struct Aggregator {
    max_keys: usize,
    models: Table<ModelSeries>,
    services: Table<ServiceSeries>,
    errors: Table<ErrorSeries>,
    breakers: Table<BreakerSeries>,
    accepted: u64,
    rejected: u64,
    /// Reused key buffer.
    scratch: Vec<u8>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::with_max_keys(super::DEFAULT_MAX_KEYS)
    }
}

impl Aggregator {
    /// An empty aggregator bounded by `settings`.
    pub fn new(settings: &PushSettings) -> Self {
        Self::with_max_keys(settings.max_keys)
    }

    /// An empty aggregator keeping at most `max_keys` keys.
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self {
            max_keys,
            models: Table::default(),
            services: Table::default(),
            errors: Table::default(),
            breakers: Table::default(),
            accepted: 0,
            rejected: 0,
            scratch: Vec::with_capacity(2 * 128 + 16),
        }
    }

    /// Keys held.
    pub fn n_keys(&self) -> usize {
        self.models.len() + self.services.len() + self.errors.len() + self.breakers.len()
    }

    /// Events applied so far.
    pub fn n_accepted(&self) -> u64 {
        self.accepted
    }

    /// Events refused so far.
    pub fn n_rejected(&self) -> u64 {
        self.rejected
    }

    /// Applies all of `events` or, when one would create a key beyond the limit, none of them
    /// (all are then counted as rejected).
    ///
    /// # Errors
    /// The first event that would exceed `max_keys`.
    pub(crate) fn apply_all(&mut self, events: &[Event<'_>]) -> Result<(), Refusal> {
        if let Err(idx) = self.check_capacity(events) {
            self.rejected += events.len() as u64;
            return Err(Refusal {
                idx,
                max_keys: self.max_keys,
            });
        }
        for event in events {
            self.apply(event);
        }
        self.accepted += events.len() as u64;
        Ok(())
    }

    /// Applies one event, or counts it as rejected.
    ///
    /// # Errors
    /// When it would create a key beyond `max_keys`.
    pub(crate) fn apply_one(&mut self, event: &Event<'_>) -> Result<(), Refusal> {
        self.apply_all(std::slice::from_ref(event))
    }

    /// Counts events taken elsewhere (log lines, queued for the journal).
    pub(crate) fn count_accepted(&mut self, n_events: u64) {
        self.accepted += n_events;
    }

    /// Counts events refused before they reached the aggregator (malformed input).
    pub(crate) fn count_rejected(&mut self, n_events: u64) {
        self.rejected += n_events;
    }

    /// A copy of the current values, taken under the lock; samples are built from it after the
    /// lock is released.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            models: self.models.entries.clone(),
            services: self.services.entries.clone(),
            errors: self.errors.entries.clone(),
            breakers: self.breakers.entries.clone(),
            accepted: self.accepted,
            rejected: self.rejected,
        }
    }

    /// The 0-based index of the first event that would create a key beyond the limit.
    fn check_capacity(&mut self, events: &[Event<'_>]) -> Result<(), usize> {
        let n_keys = self.n_keys();
        if n_keys.saturating_add(events.len()) <= self.max_keys {
            return Ok(());
        }
        // Near the limit: find the keys this batch would add (allocating only for new keys).
        let mut new_keys: HashSet<Box<[u8]>> = HashSet::new();
        for (idx, event) in events.iter().enumerate() {
            let table = encode_key(&mut self.scratch, event);
            let key = self.scratch.as_slice();
            let known = match table {
                Tag::Model => self.models.contains(key),
                Tag::Service => self.services.contains(key),
                Tag::Error => self.errors.contains(key),
                Tag::Breaker => self.breakers.contains(key),
            };
            if !known && !new_keys.contains(key) {
                if n_keys + new_keys.len() >= self.max_keys {
                    return Err(idx);
                }
                new_keys.insert(key.into());
            }
        }
        Ok(())
    }

    /// Applies one event whose key fits.
    fn apply(&mut self, event: &Event<'_>) {
        encode_key(&mut self.scratch, event);
        let key = self.scratch.as_slice();
        match event {
            Event::Inference(inference) => {
                let series = self.models.entry(key, || ModelSeries::new(inference));
                series.observe(inference);
            }
            Event::Request {
                service,
                class,
                seconds,
            } => {
                let series = self.services.entry(key, || ServiceSeries::new(service));
                series.requests[class.idx()] += 1;
                series.duration.observe(*seconds);
                match class.idx() {
                    3 => series.http_errors[0] += 1,
                    4 => series.http_errors[1] += 1,
                    _ => {}
                }
            }
            Event::Connections { service, active } => {
                let series = self.services.entry(key, || ServiceSeries::new(service));
                series.active = Some(*active);
            }
            Event::Error { service, kind } => match http_error_idx(kind) {
                Some(idx) => {
                    let series = self.services.entry(key, || ServiceSeries::new(service));
                    series.http_errors[idx] += 1;
                }
                None => {
                    let series = self.errors.entry(key, || ErrorSeries {
                        service: Arc::from(&**service),
                        kind: Arc::from(&**kind),
                        count: 0,
                    });
                    series.count += 1;
                }
            },
            Event::CircuitBreaker { name, state } => {
                let series = self.breakers.entry(key, || BreakerSeries {
                    name: Arc::from(&**name),
                    state: *state,
                });
                series.state = *state;
            }
        }
    }
}

/// The aggregator's values at one instant.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    models: Vec<ModelSeries>,
    services: Vec<ServiceSeries>,
    errors: Vec<ErrorSeries>,
    breakers: Vec<BreakerSeries>,
    accepted: u64,
    rejected: u64,
}

impl Snapshot {
    /// Appends every series: histograms as cumulative `_bucket{le}` plus `_sum` and `_count`;
    /// counters and histograms once their key exists (a request class, error kind, token
    /// direction, cost or queue histogram once reported); both inference outcomes always.
    pub(crate) fn write_samples(&self, out: &mut Vec<Sample>) {
        let names = HistogramNames::default();
        for model in &self.models {
            let labels = [("model", &*model.model), ("provider", &*model.provider)];
            for (idx, outcome) in ["success", "failure"].into_iter().enumerate() {
                out.push(sample(
                    metrics::MODEL_INFERENCE_TOTAL,
                    &labels,
                    Some(("outcome", outcome)),
                    model.inferences[idx] as f64,
                ));
            }
            model.duration.write_samples(&names.inference, &labels, out);
            if let Some(queue) = &model.queue {
                queue.write_samples(&names.queue, &labels, out);
            }
            for (direction, tokens) in [("in", model.tokens_in), ("out", model.tokens_out)] {
                if let Some(tokens) = tokens {
                    out.push(sample(
                        metrics::MODEL_TOKENS_TOTAL,
                        &labels,
                        Some(("direction", direction)),
                        tokens as f64,
                    ));
                }
            }
            if let Some(cost) = model.cost_usd {
                out.push(sample(metrics::MODEL_COST_USD_TOTAL, &labels, None, cost));
            }
        }
        for service in &self.services {
            let labels = [("service", &*service.service)];
            for (idx, count) in service.requests.iter().enumerate() {
                if *count > 0 {
                    out.push(sample(
                        metrics::REQUESTS_TOTAL,
                        &labels,
                        Some(("status", StatusClass::LABELS[idx])),
                        *count as f64,
                    ));
                }
            }
            if service.duration.count() > 0 {
                service.duration.write_samples(&names.request, &labels, out);
            }
            if let Some(active) = service.active {
                out.push(sample(metrics::ACTIVE_CONNECTIONS, &labels, None, active));
            }
            for (idx, count) in service.http_errors.iter().enumerate() {
                if *count > 0 {
                    out.push(sample(
                        metrics::ERRORS_TOTAL,
                        &labels,
                        Some(("kind", HTTP_ERROR_KINDS[idx])),
                        *count as f64,
                    ));
                }
            }
        }
        for error in &self.errors {
            out.push(sample(
                metrics::ERRORS_TOTAL,
                &[("service", &*error.service), ("kind", &*error.kind)],
                None,
                error.count as f64,
            ));
        }
        for breaker in &self.breakers {
            out.push(sample(
                metrics::CIRCUIT_BREAKER_STATE,
                &[("name", &*breaker.name)],
                None,
                f64::from(breaker.state as u8),
            ));
        }
        for (result, count) in [("accepted", self.accepted), ("rejected", self.rejected)] {
            out.push(sample(
                metrics::PUSH_EVENTS_TOTAL,
                &[],
                Some(("result", result)),
                count as f64,
            ));
        }
    }
}

/// The error kinds counted per service from request statuses.
const HTTP_ERROR_KINDS: [&str; 2] = ["http_4xx", "http_5xx"];

fn http_error_idx(kind: &str) -> Option<usize> {
    HTTP_ERROR_KINDS.iter().position(|k| *k == kind)
}

/// Which table a key belongs to; the first byte of an encoded key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Model = 1,
    Service = 2,
    Error = 3,
    Breaker = 4,
}

/// Encodes the key `event` aggregates under into `key`: the tag, then each label value after
/// its length (so that `("ab", "c")` and `("a", "bc")` differ).
fn encode_key(key: &mut Vec<u8>, event: &Event<'_>) -> Tag {
    let (tag, parts): (Tag, [&str; 2]) = match event {
        Event::Inference(inference) => (Tag::Model, [&inference.model, &inference.provider]),
        Event::Request { service, .. } | Event::Connections { service, .. } => {
            (Tag::Service, [service, ""])
        }
        Event::Error { service, kind } => match http_error_idx(kind) {
            Some(_) => (Tag::Service, [service, ""]),
            None => (Tag::Error, [service, kind]),
        },
        Event::CircuitBreaker { name, .. } => (Tag::Breaker, [name, ""]),
    };
    key.clear();
    key.push(tag as u8);
    for part in parts {
        // Label values are at most MAX_LABEL_BYTES long, far below u32::MAX.
        key.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_le_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    tag
}

/// Entries in insertion order, found by encoded key.
#[derive(Debug)]
struct Table<T> {
    index: HashMap<Box<[u8]>, usize>,
    entries: Vec<T>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            index: HashMap::new(),
            entries: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.index.contains_key(key)
    }

    /// The entry under `key`, created by `make` if absent.
    fn entry(&mut self, key: &[u8], make: impl FnOnce() -> T) -> &mut T {
        let idx = match self.index.get(key) {
            Some(&idx) => idx,
            None => {
                let idx = self.entries.len();
                self.entries.push(make());
                self.index.insert(key.into(), idx);
                idx
            }
        };
        &mut self.entries[idx]
    }
}

/// A latency histogram: per-bucket (not cumulative) counts, the last one `+Inf`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Histogram {
    counts: [u64; 14],
    sum: f64,
}

impl Histogram {
    /// Counts one observation, in seconds.
    pub(crate) fn observe(&mut self, seconds: f64) {
        let idx = BUCKETS.partition_point(|bound| *bound < seconds);
        self.counts[idx] += 1;
        self.sum += seconds;
    }

    /// Observations so far.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn write_samples(&self, names: &[String; 3], labels: &[(&str, &str)], out: &mut Vec<Sample>) {
        let mut cumulative = 0;
        for (count, le) in self.counts.iter().zip(LE) {
            cumulative += count;
            out.push(sample(
                &names[0],
                labels,
                Some(("le", le)),
                cumulative as f64,
            ));
        }
        out.push(sample(&names[1], labels, None, self.sum));
        out.push(sample(&names[2], labels, None, cumulative as f64));
    }
}

/// `_bucket`, `_sum` and `_count` names of the three histograms.
struct HistogramNames {
    inference: [String; 3],
    queue: [String; 3],
    request: [String; 3],
}

impl Default for HistogramNames {
    fn default() -> Self {
        let names =
            |family: &str| ["_bucket", "_sum", "_count"].map(|suffix| format!("{family}{suffix}"));
        Self {
            inference: names(metrics::MODEL_INFERENCE_DURATION_SECONDS),
            queue: names(metrics::MODEL_QUEUE_DURATION_SECONDS),
            request: names(metrics::REQUEST_DURATION_SECONDS),
        }
    }
}

fn sample(name: &str, labels: &[(&str, &str)], extra: Option<(&str, &str)>, value: f64) -> Sample {
    let mut all = Vec::with_capacity(labels.len() + 1);
    for (name, value) in labels.iter().copied().chain(extra) {
        all.push(Label::new(name, value));
    }
    Sample {
        name: name.to_owned(),
        labels: all,
        value,
    }
}

#[derive(Debug, Clone)]
struct ModelSeries {
    model: Arc<str>,
    provider: Arc<str>,
    /// By outcome: success, failure.
    inferences: [u64; 2],
    duration: Histogram,
    queue: Option<Histogram>,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
    cost_usd: Option<f64>,
}

impl ModelSeries {
    fn new(inference: &Inference<'_>) -> Self {
        Self {
            model: Arc::from(&*inference.model),
            provider: Arc::from(&*inference.provider),
            inferences: [0; 2],
            duration: Histogram::default(),
            queue: None,
            tokens_in: None,
            tokens_out: None,
            cost_usd: None,
        }
    }

    fn observe(&mut self, inference: &Inference<'_>) {
        let outcome_idx = match inference.outcome {
            Outcome::Success => 0,
            Outcome::Failure => 1,
        };
        self.inferences[outcome_idx] += 1;
        self.duration.observe(inference.seconds);
        if let Some(seconds) = inference.queue_seconds {
            self.queue.get_or_insert_default().observe(seconds);
        }
        if let Some(tokens) = inference.tokens_in {
            let total = self.tokens_in.get_or_insert(0);
            *total = total.saturating_add(tokens);
        }
        if let Some(tokens) = inference.tokens_out {
            let total = self.tokens_out.get_or_insert(0);
            *total = total.saturating_add(tokens);
        }
        if let Some(cost) = inference.cost_usd {
            *self.cost_usd.get_or_insert(0.0) += cost;
        }
    }
}

#[derive(Debug, Clone)]
struct ServiceSeries {
    service: Arc<str>,
    /// By status class, 1xx to 5xx.
    requests: [u64; 5],
    duration: Histogram,
    active: Option<f64>,
    /// `http_4xx`, `http_5xx`.
    http_errors: [u64; 2],
}

impl ServiceSeries {
    fn new(service: &str) -> Self {
        Self {
            service: Arc::from(service),
            requests: [0; 5],
            duration: Histogram::default(),
            active: None,
            http_errors: [0; 2],
        }
    }
}

#[derive(Debug, Clone)]
struct ErrorSeries {
    service: Arc<str>,
    kind: Arc<str>,
    count: u64,
}

#[derive(Debug, Clone)]
struct BreakerSeries {
    name: Arc<str>,
    state: BreakerState,
}
