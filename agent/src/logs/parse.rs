//! Log lines into [`LogEntry`]s: JSON lines (known fields taken out, the rest kept as context) and
//! plain text (level from a leading or bracketed level word, or `level=`; timestamp from a leading
//! RFC 3339 time). Pure: the time the line was read is passed in; no I/O, no clocks.
//!
//! Nothing is dropped here: a line that is not a JSON object is read as plain text, and a known
//! field whose value cannot be used (a level nobody spells, a timestamp that is not one) stays in
//! the context under its own name.

use aisemble_shared::{
    config::LogFormat,
    wire::{LogEntry, LogLevel},
};
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Longest `service`, trace id or request id taken from a line; longer values stay in the context.
pub(crate) const MAX_FIELD_BYTES: usize = 128;

/// JSON field names, in order of preference, for each part of an entry.
const TIMESTAMP_KEYS: [&str; 4] = ["timestamp", "time", "ts", "@timestamp"];
const LEVEL_KEYS: [&str; 3] = ["level", "severity", "lvl"];
const MESSAGE_KEYS: [&str; 2] = ["message", "msg"];
const SERVICE_KEYS: [&str; 1] = ["service"];
const TRACE_ID_KEYS: [&str; 2] = ["trace_id", "traceId"];
const REQUEST_ID_KEYS: [&str; 2] = ["request_id", "requestId"];

/// logfmt keys that carry a plain line's level.
const LOGFMT_LEVEL_KEYS: [&str; 3] = ["level", "lvl", "severity"];

/// Reads one line (without its newline) of a file of `format` whose lines belong to `service`.
pub(crate) fn parse_line(format: LogFormat, line: &str, service: &str, read_ms: i64) -> LogEntry {
    match format {
        LogFormat::Json => parse_json(line, service, read_ms),
        _ => parse_plain(line, service, read_ms),
    }
}

/// A JSON line: an object's known fields become the entry's, the others its context. Anything
/// else (not JSON, or JSON that is not an object) is read as plain text.
pub(crate) fn parse_json(line: &str, service: &str, read_ms: i64) -> LogEntry {
    let Ok(mut object) = serde_json::from_str::<Map<String, Value>>(line) else {
        return parse_plain(line, service, read_ms);
    };
    let timestamp_ms = take(&mut object, &TIMESTAMP_KEYS, json_timestamp).unwrap_or(read_ms);
    let level = take(&mut object, &LEVEL_KEYS, json_level).unwrap_or(LogLevel::Info);
    let message = take(&mut object, &MESSAGE_KEYS, json_text).unwrap_or_default();
    let service = take(&mut object, &SERVICE_KEYS, json_field).unwrap_or_else(|| service.into());
    let trace_id = take(&mut object, &TRACE_ID_KEYS, json_field);
    let request_id = take(&mut object, &REQUEST_ID_KEYS, json_field);
    let context = if object.is_empty() {
        String::new()
    } else {
        Value::Object(object).to_string()
    };
    LogEntry {
        timestamp_ms,
        level,
        service,
        message,
        context,
        trace_id,
        request_id,
    }
}

/// A plain line: the message is the whole line; the level is read from it when it says one
/// (info otherwise); the timestamp is a leading RFC 3339 time with its offset, else `read_ms`.
pub(crate) fn parse_plain(line: &str, service: &str, read_ms: i64) -> LogEntry {
    LogEntry {
        timestamp_ms: leading_timestamp(line).unwrap_or(read_ms),
        level: plain_level(line).unwrap_or(LogLevel::Info),
        service: service.into(),
        message: line.into(),
        context: String::new(),
        trace_id: None,
        request_id: None,
    }
}

/// Milliseconds since the epoch of an RFC 3339 time (`2024-05-01T12:00:00.5Z`, `… 12:00:00+02:00`;
/// the separator may be a space). A time without an offset is not taken: its zone is unknown.
pub(crate) fn rfc3339_ms(text: &str) -> Option<i64> {
    let time = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Milliseconds since the epoch of a Unix time whose unit is told by its size: seconds below
/// 1e11 (until the year 5138), milliseconds below 1e14, microseconds below 1e17, else nanoseconds.
pub(crate) fn epoch_ms(value: f64) -> Option<i64> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let ms = if value < 1e11 {
        value * 1e3
    } else if value < 1e14 {
        value
    } else if value < 1e17 {
        value / 1e3
    } else {
        value / 1e6
    };
    // Below 2^63 ms by construction (value / 1e6 of an f64 below 1.8e308 may not be: check).
    (ms < 9.2e18).then_some(ms as i64)
}

/// Removes and converts the first of `keys` whose value `convert` accepts.
fn take<T>(
    object: &mut Map<String, Value>,
    keys: &[&str],
    convert: impl Fn(&Value) -> Option<T>,
) -> Option<T> {
    let (key, converted) = keys
        .iter()
        .find_map(|key| object.get(*key).and_then(&convert).map(|c| (*key, c)))?;
    object.remove(key);
    Some(converted)
}

fn json_timestamp(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => epoch_ms(number.as_f64()?),
        Value::String(text) => rfc3339_ms(text).or_else(|| epoch_ms(text.trim().parse().ok()?)),
        _ => None,
    }
}

/// A level name, or a pino/bunyan level number (10 trace … 60 fatal).
fn json_level(value: &Value) -> Option<LogLevel> {
    match value {
        Value::String(name) => LogLevel::parse(name),
        Value::Number(number) => Some(match number.as_u64()? {
            10 => LogLevel::Trace,
            20 => LogLevel::Debug,
            30 => LogLevel::Info,
            40 => LogLevel::Warn,
            50 => LogLevel::Error,
            60 => LogLevel::Critical,
            _ => return None,
        }),
        _ => None,
    }
}

/// A message: a string as it is, any other value as its JSON text.
fn json_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A short identifier (service, trace or request id): a non-empty string or a number.
fn json_field(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => return None,
    };
    (!text.is_empty() && text.len() <= MAX_FIELD_BYTES).then_some(text)
}

/// A leading RFC 3339 time, bare or in brackets: `2024-05-01T12:00:00Z msg`,
/// `[2024-05-01 12:00:00.123+02:00] msg`.
fn leading_timestamp(line: &str) -> Option<i64> {
    let text = line.trim_start();
    let text = text.strip_prefix('[').unwrap_or(text);
    let bytes = text.as_bytes();
    // `YYYY-MM-DD` and a separator, then the time up to a space or the closing bracket.
    let is_date = bytes.len() > 19
        && bytes[10].is_ascii()
        && bytes[..10].iter().enumerate().all(|(idx, b)| {
            if idx == 4 || idx == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !is_date {
        return None;
    }
    let end = text[11..]
        .find(|c: char| c.is_whitespace() || c == ']')
        .map_or(text.len(), |idx| idx + 11);
    rfc3339_ms(&text[..end])
}

/// The level a plain line states: a `level=`/`lvl=`/`severity=` pair anywhere; the first word
/// after any leading timestamp or number words (`ERROR …`, `2024-05-01 12:00:00 WARN …`,
/// `ERROR:root:…`); or a bracketed word among the first few (`[main] [warn] …`).
fn plain_level(line: &str) -> Option<LogLevel> {
    if let Some(level) = logfmt_level(line) {
        return Some(level);
    }
    let mut leading = true;
    for word in line.split_whitespace().take(6) {
        if leading && word.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let bracketed = word.starts_with(['[', '<', '(']);
        if leading || bracketed {
            let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            let bare = bare.split([':', '|', ']', '>', ')']).next().unwrap_or(bare);
            if let Some(level) = LogLevel::parse(bare) {
                return Some(level);
            }
        }
        leading = false;
    }
    None
}

fn logfmt_level(line: &str) -> Option<LogLevel> {
    line.split_whitespace().find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        LOGFMT_LEVEL_KEYS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
            .then(|| LogLevel::parse(value.trim_matches('"')))
            .flatten()
    })
}
