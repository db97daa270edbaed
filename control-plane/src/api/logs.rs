//! `/ops/logs/*`: search, stats, streamed export and cleanup of agents' log lines, and the audit
//! log's search and verification (SPEC §8, §10). Every read of sled runs on the reader threads
//! (`read_pool`); an export is read there a chunk at a time, each resumed after the last line
//! sent, so it holds one chunk in memory and no thread while the client is slow.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::ControlFlow,
    sync::Arc,
    time::{Duration, Instant},
};

use aisemble_shared::wire::LogLevel;
use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState,
    alerts::rfc3339,
    error::{ApiError, ErrorBody, parse_json},
    prom::{parse_duration, parse_time},
};
use crate::{
    logs::{AuditRecord, HourCounts, LogFilter, StoredLogRef, Verification, parse_terms},
    store::{Store, now_ms},
};

/// Default lines per search.
pub(super) const DEFAULT_LIMIT: usize = 100;
/// Most lines per search.
pub(super) const MAX_LIMIT: usize = 10_000;
/// How long a search may read before it answers with what it found.
pub(super) const SEARCH_BUDGET: Duration = Duration::from_secs(10);
const HOUR_MS: i64 = 3_600_000;

/// What to look for. Every given condition must hold; lists match any of their values.
#[derive(Deserialize, Debug, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    /// Unix seconds or RFC 3339. Default: `end` minus one hour.
    #[serde(default)]
    #[schema(example = "2026-12-01T10:00:00Z")]
    start: Option<TimeInput>,
    /// Unix seconds or RFC 3339. Default: now.
    #[serde(default)]
    end: Option<TimeInput>,
    /// Levels (`trace`, `debug`, `info`, `warn`, `error`, `critical`). Default: all.
    #[serde(default)]
    #[schema(example = json!(["error", "critical"]))]
    levels: Vec<String>,
    /// Lines of at least this level.
    #[serde(default)]
    #[schema(example = "warn")]
    min_level: Option<String>,
    /// Services.
    #[serde(default)]
    services: Vec<String>,
    /// Hosts (agent names).
    #[serde(default)]
    hosts: Vec<String>,
    /// Full text: words and "quoted phrases" that must all appear (ASCII case ignored) in the
    /// message or the context.
    #[serde(default)]
    #[schema(example = "timeout \"connection reset\"")]
    query: Option<String>,
    /// Exact trace id.
    #[serde(default)]
    trace_id: Option<String>,
    /// Exact request id.
    #[serde(default)]
    request_id: Option<String>,
    /// Search: most lines returned, 1 to 10000, default 100. Export: most lines written,
    /// default all.
    #[serde(default)]
    limit: Option<u64>,
    /// Export only: `ndjson` (default) or `csv`.
    #[serde(default)]
    format: Option<ExportFormat>,
}

/// An export's format.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum ExportFormat {
    /// One JSON object per line, as search returns them.
    Ndjson,
    /// A header row, then `timestamp,level,host,service,message,trace_id,request_id,context`.
    Csv,
}

fn level(field: &str, name: &str) -> Result<LogLevel, ApiError> {
    LogLevel::parse(name).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "{field}: {name:?} is not a level (trace, debug, info, warn, error, critical)"
        ))
    })
}

/// A time in a JSON body: Unix seconds as a number (fractions allowed) or as text, or RFC 3339,
/// as the Prometheus API takes them.
#[derive(Deserialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub(super) enum TimeInput {
    /// Unix seconds.
    Seconds(f64),
    /// Unix seconds or RFC 3339, as text.
    Text(String),
}

fn time_field(field: &str, text: Option<&str>, default: i64) -> Result<i64, ApiError> {
    match text {
        None => Ok(default),
        Some(text) => {
            parse_time(text).map_err(|e| ApiError::unprocessable(format!("{field}: {e}")))
        }
    }
}

fn body_time(field: &str, input: Option<&TimeInput>, default: i64) -> Result<i64, ApiError> {
    match input {
        None => Ok(default),
        // JSON numbers are finite; a huge one saturates, as text does.
        Some(TimeInput::Seconds(seconds)) => Ok((seconds * 1000.0).round() as i64),
        Some(TimeInput::Text(text)) => time_field(field, Some(text), default),
    }
}

impl LogQuery {
    fn filter(&self, now: i64) -> Result<LogFilter, ApiError> {
        let end_ms = body_time("end", self.end.as_ref(), now)?;
        let start_ms = body_time("start", self.start.as_ref(), end_ms.saturating_sub(HOUR_MS))?;
        if start_ms > end_ms {
            return Err(ApiError::unprocessable("start: must not be after end"));
        }
        let mut levels = BTreeSet::new();
        for name in &self.levels {
            levels.insert(level("levels", name)?);
        }
        if let Some(min) = &self.min_level {
            let min = level("min_level", min)?;
            let at_least: BTreeSet<LogLevel> =
                LogLevel::ALL.into_iter().filter(|l| *l >= min).collect();
            levels = if levels.is_empty() {
                at_least
            } else {
                levels.intersection(&at_least).copied().collect()
            };
            if levels.is_empty() {
                return Err(ApiError::unprocessable(
                    "min_level: excludes every level listed in levels",
                ));
            }
        }
        Ok(LogFilter {
            start_ms,
            end_ms,
            levels,
            services: self.services.clone(),
            hosts: self.hosts.clone(),
            terms: self.query.as_deref().map(parse_terms).unwrap_or_default(),
            trace_id: self.trace_id.clone(),
            request_id: self.request_id.clone(),
        })
    }
}

/// A search's `limit`: default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`].
fn page_limit(limit: Option<u64>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::unprocessable(format!(
            "limit: {n} is outside 1..={MAX_LIMIT}"
        ))),
    }
}

pub(super) fn parse_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(body).map_err(|e| ApiError::unprocessable(format!("invalid {what}: {e}")))
}

/// One log line.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct LogLine {
    /// Structured fields of the line (a JSON object), when it has any.
    #[schema(value_type = Option<Object>)]
    context: Option<Box<RawValue>>,
    /// The agent that sent it.
    host: String,
    #[schema(value_type = String, example = "error")]
    level: LogLevel,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    service: String,
    /// RFC 3339, milliseconds.
    timestamp: String,
    /// Milliseconds since the Unix epoch.
    timestamp_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

impl From<StoredLogRef<'_>> for LogLine {
    fn from(log: StoredLogRef<'_>) -> Self {
        Self {
            context: log.context.map(ToOwned::to_owned),
            host: log.host.into_owned(),
            level: log.level,
            message: log.message.into_owned(),
            request_id: log.request_id.map(|s| s.into_owned()),
            service: log.service.into_owned(),
            timestamp: rfc3339(log.timestamp_ms),
            timestamp_ms: log.timestamp_ms,
            trace_id: log.trace_id.map(|s| s.into_owned()),
        }
    }
}

/// Result of a search.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct SearchResult {
    /// Matching lines, newest first.
    logs: Vec<LogLine>,
    /// Lines read to find them.
    scanned: u64,
    /// The search stopped at its 10 s budget: narrow the range or the conditions for the rest.
    timed_out: bool,
    /// More lines match than `limit`.
    truncated: bool,
}

/// `POST /ops/logs/search` (viewer): lines matching the conditions, newest first.
#[utoipa::path(post, path = "/ops/logs/search", tag = "logs",
    request_body(content = LogQuery, content_type = "application/json"),
    responses(
        (status = 200, description = "Matching lines, newest first.", body = SearchResult),
        (status = 422, description = "A bad condition; the message names the field.", body = ErrorBody),
    ))]
pub(super) async fn search(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<SearchResult>, ApiError> {
    let query: LogQuery = parse_body(&body, "search")?;
    if query.format.is_some() {
        return Err(ApiError::unprocessable("format: only for /ops/logs/export"));
    }
    let limit = page_limit(query.limit)?;
    let filter = query.filter(now_ms())?;
    let store = state.store.clone();
    state
        .readers
        .run(move || {
            let mut logs = Vec::new();
            let mut truncated = false;
            let deadline = Instant::now() + SEARCH_BUDGET;
            let outcome = store
                .logs()
                .scan(&filter, true, Some(deadline), None, |log| {
                    if logs.len() == limit {
                        truncated = true;
                        return ControlFlow::Break(());
                    }
                    logs.push(LogLine::from(log));
                    ControlFlow::Continue(())
                })
                .map_err(ApiError::internal)?;
            Ok(Json(SearchResult {
                logs,
                scanned: outcome.scanned,
                timed_out: outcome.timed_out,
                truncated,
            }))
        })
        .await
        .map_err(ApiError::internal)?
}

/// `start`/`end` of the stats.
#[derive(Deserialize, Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsParams {
    /// Unix seconds or RFC 3339. Default: `end` minus 24 hours.
    start: Option<String>,
    /// Unix seconds or RFC 3339. Default: now.
    end: Option<String>,
}

/// One hour's counts.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct HourStat {
    /// Error and critical lines.
    errors: u64,
    /// `errors / total` (0 without lines).
    error_rate: f64,
    /// The hour's start, RFC 3339.
    hour: String,
    total: u64,
}

/// Counts of the lines of whole hours.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct LogStats {
    /// Lines per host.
    by_host: BTreeMap<String, u64>,
    /// Lines per level (every level, zeros included).
    by_level: BTreeMap<String, u64>,
    /// Lines per service.
    by_service: BTreeMap<String, u64>,
    /// End of the last hour counted, RFC 3339.
    end: String,
    /// Error and critical lines.
    errors: u64,
    /// `errors / total` (0 without lines).
    error_rate: f64,
    /// Per hour, oldest first (hours without lines are left out).
    hourly: Vec<HourStat>,
    /// Start of the first hour counted, RFC 3339.
    start: String,
    total: u64,
}

fn rate(errors: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        errors as f64 / total as f64
    }
}

/// `GET /ops/logs/stats` (viewer): counts by level, service and host, and the error rate per
/// hour, from counts kept as lines arrive. Hours are counted whole: `start` and `end` widen to
/// the hours they fall in.
#[utoipa::path(get, path = "/ops/logs/stats", tag = "logs",
    params(StatsParams),
    responses(
        (status = 200, description = "Counts of the hours overlapping the range.", body = LogStats),
        (status = 422, description = "A bad time.", body = ErrorBody),
    ))]
pub(super) async fn stats(
    State(state): State<AppState>,
    Query(params): Query<StatsParams>,
) -> Result<Json<LogStats>, ApiError> {
    let end_ms = time_field("end", params.end.as_deref(), now_ms())?;
    let start_ms = time_field(
        "start",
        params.start.as_deref(),
        end_ms.saturating_sub(24 * HOUR_MS),
    )?;
    if start_ms > end_ms {
        return Err(ApiError::unprocessable("start: must not be after end"));
    }
    let store = state.store.clone();
    let hours = state
        .readers
        .run(move || store.logs().hours(start_ms, end_ms))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let mut sum = HourCounts::default();
    let hourly = hours
        .iter()
        .map(|(hour, counts)| {
            sum.merge(counts);
            HourStat {
                errors: counts.errors(),
                error_rate: rate(counts.errors(), counts.total),
                hour: rfc3339(*hour),
                total: counts.total,
            }
        })
        .collect();
    let by_level = LogLevel::ALL
        .iter()
        .zip(sum.by_level)
        .map(|(level, n)| (level.as_str().to_owned(), n))
        .collect();
    let errors = sum.errors();
    Ok(Json(LogStats {
        by_host: sum.by_host,
        by_level,
        by_service: sum.by_service,
        end: rfc3339(
            end_ms
                .div_euclid(HOUR_MS)
                .saturating_add(1)
                .saturating_mul(HOUR_MS),
        ),
        errors,
        error_rate: rate(errors, sum.total),
        hourly,
        start: rfc3339(start_ms.div_euclid(HOUR_MS).saturating_mul(HOUR_MS)),
        total: sum.total,
    }))
}

/// Bytes an export collects before handing a chunk to the connection. Each chunk is one job on
/// a reader thread that seeks to where the last one stopped; while the connection sends one
/// chunk, the next is read.
const EXPORT_CHUNK: usize = 256 << 10;

fn csv_field(out: &mut Vec<u8>, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

fn csv_row(out: &mut Vec<u8>, log: &StoredLogRef<'_>) {
    let fields = [
        rfc3339(log.timestamp_ms),
        log.level.as_str().to_owned(),
        log.host.to_string(),
        log.service.to_string(),
        log.message.to_string(),
        log.trace_id.as_deref().unwrap_or_default().to_owned(),
        log.request_id.as_deref().unwrap_or_default().to_owned(),
        log.context.map(|c| c.get().to_owned()).unwrap_or_default(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_field(out, field);
    }
    out.extend_from_slice(b"\r\n");
}

/// Where an export is: what it reads, and after which line it goes on.
#[derive(Debug)]
struct ExportPage {
    filter: Arc<LogFilter>,
    format: ExportFormat,
    /// The key of the last line sent.
    resume_after: Option<Vec<u8>>,
    /// Lines still to send (`limit`).
    remaining: u64,
    /// The CSV header is still to send.
    header: bool,
}

impl ExportPage {
    /// The next chunk of the export, and whether more follows. Blocking.
    fn read(&mut self, store: &Store) -> std::io::Result<(Bytes, bool)> {
        let mut chunk = Vec::with_capacity(EXPORT_CHUNK + 4096);
        if std::mem::take(&mut self.header) {
            chunk.extend_from_slice(
                b"timestamp,level,host,service,message,trace_id,request_id,context\r\n",
            );
        }
        let mut failed = false;
        let remaining = &mut self.remaining;
        let format = self.format;
        let scanned = store.logs().scan(
            &self.filter,
            false,
            None,
            self.resume_after.as_deref(),
            |log| {
                match format {
                    ExportFormat::Ndjson => {
                        if serde_json::to_writer(&mut chunk, &LogLine::from(log)).is_err() {
                            failed = true;
                            return ControlFlow::Break(());
                        }
                        chunk.push(b'\n');
                    }
                    ExportFormat::Csv => csv_row(&mut chunk, &log),
                }
                *remaining -= 1;
                if *remaining == 0 || chunk.len() >= EXPORT_CHUNK {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        let outcome = scanned.map_err(|error| std::io::Error::other(error.to_string()))?;
        if failed {
            return Err(std::io::Error::other("a line could not be written as JSON"));
        }
        let more = self.remaining > 0 && outcome.stopped_at.is_some();
        self.resume_after = outcome.stopped_at;
        Ok((Bytes::from(chunk), more))
    }
}

/// `POST /ops/logs/export` (viewer): every matching line, oldest first, streamed as NDJSON or
/// CSV (RFC 4180).
#[utoipa::path(post, path = "/ops/logs/export", tag = "logs",
    request_body(content = LogQuery, content_type = "application/json"),
    responses(
        (status = 200, description = "The lines, oldest first.", content(
            (String = "application/x-ndjson"),
            (String = "text/csv; charset=utf-8"),
        )),
        (status = 422, description = "A bad condition; the message names the field.", body = ErrorBody),
    ))]
pub(super) async fn export(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query: LogQuery = parse_body(&body, "export")?;
    let limit = match query.limit {
        Some(0) => return Err(ApiError::unprocessable("limit: must be at least 1")),
        Some(n) => n,
        None => u64::MAX,
    };
    let format = query.format.unwrap_or(ExportFormat::Ndjson);
    let filter = query.filter(now_ms())?;
    // One page (about one chunk) per job on the reader threads, resumed after the last line
    // sent: a client that reads slowly, or not at all, holds a connection and one chunk read
    // ahead, never a reader. Reading the next chunk while this one is sent keeps the reader and
    // the connection busy at once.
    let page = ExportPage {
        filter: Arc::new(filter),
        format,
        resume_after: None,
        remaining: limit,
        header: format == ExportFormat::Csv,
    };
    let readers = state.readers.clone();
    let store = state.store.clone();
    let read_page = move |mut page: ExportPage| {
        let store = store.clone();
        readers.submit(move || {
            let result = page.read(&store);
            (page, result)
        })
    };
    let first = read_page(page);
    let stream = futures_util::stream::unfold(Some(first), move |reading| {
        let read_page = read_page.clone();
        async move {
            match reading?.await {
                Ok((page, Ok((chunk, more)))) => Some((Ok(chunk), more.then(|| read_page(page)))),
                // The status is sent already: end the body with an error so the client sees a
                // broken transfer rather than a short file that looks complete.
                Ok((_, Err(error))) => Some((Err(error), None)),
                Err(error) => Some((Err(std::io::Error::other(error)), None)),
            }
        }
    });
    let (content_type, file) = match format {
        ExportFormat::Ndjson => ("application/x-ndjson", "logs.ndjson"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "logs.csv"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// What to look for in the audit log.
#[derive(Deserialize, Debug, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// Unix seconds or RFC 3339. Default: the beginning.
    #[serde(default)]
    start: Option<TimeInput>,
    /// Unix seconds or RFC 3339. Default: now.
    #[serde(default)]
    end: Option<TimeInput>,
    /// Token name.
    #[serde(default)]
    actor: Option<String>,
    /// `success`, `failure`, `unauthenticated` or `forbidden`.
    #[serde(default)]
    outcome: Option<String>,
    /// Text the path contains.
    #[serde(default)]
    #[schema(example = "/ops/silences")]
    path: Option<String>,
    /// Most entries, 1 to 10000, default 100.
    #[serde(default)]
    limit: Option<u64>,
}

/// One audit entry.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct AuditEntry {
    actor: String,
    /// SHA-256 of `prev_hash` and the entry's fields.
    hash: String,
    method: String,
    outcome: String,
    path: String,
    prev_hash: String,
    request_id: String,
    role: String,
    seq: u64,
    status: u16,
    /// RFC 3339.
    timestamp: String,
    token_id: String,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        let e = r.event;
        Self {
            actor: e.actor,
            hash: r.hash,
            method: e.method,
            outcome: e.outcome,
            path: e.path,
            prev_hash: r.prev_hash,
            request_id: e.request_id,
            role: e.role,
            seq: r.seq,
            status: e.status,
            timestamp: rfc3339(r.timestamp_ms),
            token_id: e.token_id,
        }
    }
}

/// Result of an audit search.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct AuditEntries {
    /// Newest first.
    entries: Vec<AuditEntry>,
    /// More entries match than `limit`.
    truncated: bool,
}

/// `POST /ops/logs/audit` (admin): the audit log, newest first.
#[utoipa::path(post, path = "/ops/logs/audit", tag = "logs",
    request_body(content = AuditQuery, content_type = "application/json"),
    responses(
        (status = 200, description = "Matching entries, newest first.", body = AuditEntries),
        (status = 422, description = "A bad condition; the message names the field.", body = ErrorBody),
    ))]
pub(super) async fn audit(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<AuditEntries>, ApiError> {
    let query: AuditQuery = parse_body(&body, "audit query")?;
    let end_ms = body_time("end", query.end.as_ref(), now_ms())?;
    let start_ms = body_time("start", query.start.as_ref(), i64::MIN)?;
    let limit = page_limit(query.limit)?;
    let store = state.store.clone();
    state
        .readers
        .run(move || {
            let mut entries = Vec::new();
            let mut truncated = false;
            store
                .audit()
                .scan_newest_first(|record| {
                    if record.timestamp_ms < start_ms {
                        return ControlFlow::Break(());
                    }
                    let wanted = record.timestamp_ms <= end_ms
                        && query
                            .actor
                            .as_deref()
                            .is_none_or(|a| a == record.event.actor)
                        && query
                            .outcome
                            .as_deref()
                            .is_none_or(|o| o == record.event.outcome)
                        && query
                            .path
                            .as_deref()
                            .is_none_or(|p| record.event.path.contains(p));
                    if !wanted {
                        return ControlFlow::Continue(());
                    }
                    if entries.len() == limit {
                        truncated = true;
                        return ControlFlow::Break(());
                    }
                    entries.push(AuditEntry::from(record));
                    ControlFlow::Continue(())
                })
                .map_err(ApiError::internal)?;
            Ok(Json(AuditEntries { entries, truncated }))
        })
        .await
        .map_err(ApiError::internal)?
}

/// A point of the chain.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct ChainLink {
    hash: String,
    seq: u64,
}

/// One thing wrong with the chain.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct ChainProblem {
    /// `modified`, `link`, `missing`, `reordered`, `unreadable` or `head`.
    kind: String,
    message: String,
    /// The entry where the chain breaks.
    seq: u64,
}

/// Result of verifying the audit log.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct AuditVerification {
    /// What the oldest kept entry links to (retention moves it forward).
    base: ChainLink,
    /// Entries checked.
    entries: u64,
    /// The recorded head: compare it with the hash the control plane logged for that entry.
    head: ChainLink,
    /// Problems, in chain order (at most 50).
    problems: Vec<ChainProblem>,
    /// No problem found.
    valid: bool,
}

impl From<Verification> for AuditVerification {
    fn from(v: Verification) -> Self {
        Self {
            base: ChainLink {
                hash: v.base.hash,
                seq: v.base.seq,
            },
            entries: v.entries,
            head: ChainLink {
                hash: v.head.hash,
                seq: v.head.seq,
            },
            problems: v
                .problems
                .into_iter()
                .map(|p| ChainProblem {
                    kind: p.kind.to_owned(),
                    message: p.message,
                    seq: p.seq,
                })
                .collect(),
            valid: v.valid,
        }
    }
}

/// `POST /ops/logs/audit/verify` (operator): checks every entry's hash and link, gaps and the
/// head; answers 200 either way, with `valid` and where the chain breaks.
#[utoipa::path(post, path = "/ops/logs/audit/verify", tag = "logs",
    responses((status = 200, description = "The verification.", body = AuditVerification)))]
pub(super) async fn audit_verify(
    State(state): State<AppState>,
) -> Result<Json<AuditVerification>, ApiError> {
    let store = state.store.clone();
    let verification = state
        .readers
        .run(move || store.audit().verify())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(verification.into()))
}

/// What to clean up.
#[derive(Deserialize, Debug, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CleanupRequest {
    /// Also remove log lines younger than their retention but older than this (`7d`; at least
    /// `1h`). The audit log always keeps its own retention.
    #[serde(default)]
    #[schema(example = "7d")]
    older_than: Option<String>,
}

/// What a cleanup removed.
#[derive(Serialize, Debug, ToSchema)]
pub(super) struct CleanupDone {
    /// Audit entries past the audit retention.
    audit_entries_removed: u64,
    /// Whole days of lines.
    days_dropped: u64,
    /// Hourly counts.
    hours_removed: u64,
    /// Lines of the day the cutoff falls in.
    lines_removed: u64,
}

/// `POST /ops/logs/cleanup` (admin): applies the retention now.
#[utoipa::path(post, path = "/ops/logs/cleanup", tag = "logs",
    request_body(content = CleanupRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What was removed.", body = CleanupDone),
        (status = 422, description = "A bad `older_than`.", body = ErrorBody),
    ))]
pub(super) async fn cleanup(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<CleanupDone>, ApiError> {
    let request: CleanupRequest = parse_body(&body, "cleanup")?;
    let older_than = match request.older_than.as_deref() {
        None => None,
        Some(text) => {
            let ms = parse_duration(text)
                .map_err(|e| ApiError::unprocessable(format!("older_than: {e}")))?;
            if ms < HOUR_MS {
                return Err(ApiError::unprocessable("older_than: must be at least 1h"));
            }
            Some(Duration::from_millis(ms as u64))
        }
    };
    let store = state.store.clone();
    let (report, audit) =
        tokio::task::spawn_blocking(move || store.cleanup_logs(now_ms(), older_than))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
    Ok(Json(CleanupDone {
        audit_entries_removed: audit,
        days_dropped: report.days_dropped,
        hours_removed: report.hours_removed,
        lines_removed: report.lines_removed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = Vec::new();
        csv_field(&mut out, "plain");
        out.push(b'|');
        csv_field(&mut out, "a,\"b\"\nc");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "plain|\"a,\"\"b\"\"\nc\""
        );
    }

    #[test]
    fn times_are_numbers_or_text() {
        let query: LogQuery =
            parse_json(br#"{"start": 1000.5, "end": "2000"}"#).expect("valid body");
        let filter = query.filter(0).expect("valid");
        assert_eq!((filter.start_ms, filter.end_ms), (1_000_500, 2_000_000));
        let query: LogQuery = parse_json(br#"{"end": "2026-12-01T00:00:01Z"}"#).expect("valid");
        assert_eq!(query.filter(0).expect("valid").end_ms, 1_796_083_201_000);
        assert!(parse_json::<LogQuery>(br#"{"start": true}"#).is_err());
    }

    #[test]
    fn min_level_and_levels_combine() {
        let query = LogQuery {
            levels: vec!["info".into(), "ERROR".into()],
            min_level: Some("warning".into()),
            ..LogQuery::default()
        };
        let filter = query.filter(1_000_000).expect("valid");
        assert_eq!(filter.levels, BTreeSet::from([LogLevel::Error]));
        assert_eq!(
            (filter.start_ms, filter.end_ms),
            (1_000_000 - HOUR_MS, 1_000_000)
        );
        let bad = LogQuery {
            levels: vec!["loud".into()],
            ..LogQuery::default()
        };
        assert!(bad.filter(0).is_err());
        let empty = LogQuery {
            levels: vec!["info".into()],
            min_level: Some("error".into()),
            ..LogQuery::default()
        };
        assert!(empty.filter(0).is_err());
    }
}
