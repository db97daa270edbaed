//! A log line as the log store keeps it: one JSON object per line (readable with any sled
//! tool), read back borrowing the stored bytes so a search allocates only for what it returns.

use std::borrow::Cow;

use aisemble_shared::wire::{LogEntry, LogLevel};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Longest context object kept, in bytes; a longer one is replaced by a note saying so.
pub const MAX_CONTEXT_BYTES: usize = 16 << 10;

/// A stored line, borrowed from its bytes.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct StoredLogRef<'a> {
    /// Milliseconds since the Unix epoch.
    #[serde(rename = "t")]
    pub timestamp_ms: i64,
    /// Severity.
    #[serde(rename = "l")]
    pub level: LogLevel,
    /// The agent's certificate name.
    #[serde(rename = "h", borrow)]
    pub host: Cow<'a, str>,
    /// Service.
    #[serde(rename = "s", borrow)]
    pub service: Cow<'a, str>,
    /// Message.
    #[serde(rename = "m", borrow)]
    pub message: Cow<'a, str>,
    /// Structured fields: a JSON object, kept as its text.
    #[serde(rename = "c", borrow, default, skip_serializing_if = "Option::is_none")]
    pub context: Option<&'a RawValue>,
    /// Trace id.
    #[serde(
        rename = "tr",
        borrow,
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub trace_id: Option<Cow<'a, str>>,
    /// Request id.
    #[serde(
        rename = "rq",
        borrow,
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_id: Option<Cow<'a, str>>,
}

impl<'a> StoredLogRef<'a> {
    /// Reads a stored value; `None` when it is not one (a damaged value is skipped, not fatal).
    pub fn decode(bytes: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Encodes an agent's line for storage. The agent's context text is checked: anything other
/// than one JSON object (or a huge one) is kept as a string under `raw`, never dropped.
pub fn encode(host: &str, entry: &LogEntry) -> Vec<u8> {
    let checked;
    let context = match entry.context.trim() {
        "" => None,
        text if text.len() > MAX_CONTEXT_BYTES => {
            checked = RawValue::from_string(
                serde_json::json!({ "truncated": format!("context of {} bytes dropped", text.len()) })
                    .to_string(),
            )
            .ok();
            checked.as_deref()
        }
        text => match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) if raw.get().starts_with('{') => Some(raw),
            _ => {
                checked =
                    RawValue::from_string(serde_json::json!({ "raw": text }).to_string()).ok();
                checked.as_deref()
            }
        },
    };
    let stored = StoredLogRef {
        timestamp_ms: entry.timestamp_ms,
        level: entry.level,
        host: Cow::Borrowed(host),
        service: Cow::Borrowed(&entry.service),
        message: Cow::Borrowed(&entry.message),
        context,
        trace_id: entry.trace_id.as_deref().map(Cow::Borrowed),
        request_id: entry.request_id.as_deref().map(Cow::Borrowed),
    };
    // A struct of strings and numbers always serializes.
    serde_json::to_vec(&stored).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(context: &str) -> LogEntry {
        LogEntry {
            timestamp_ms: 42,
            level: LogLevel::Warn,
            service: "api".into(),
            message: "disk \"almost\" full\n".into(),
            context: context.into(),
            trace_id: Some("t1".into()),
            request_id: None,
        }
    }

    #[test]
    fn lines_round_trip_and_bad_context_is_kept_as_text() {
        let bytes = encode("node-1", &entry(r#"{"free": "2GiB", "n": [1, 2]}"#));
        let log = StoredLogRef::decode(&bytes).expect("decodes");
        assert_eq!(log.host, "node-1");
        assert_eq!(log.message, "disk \"almost\" full\n");
        assert_eq!(log.level, LogLevel::Warn);
        assert_eq!(log.trace_id.as_deref(), Some("t1"));
        let context: serde_json::Value =
            serde_json::from_str(log.context.expect("context").get()).expect("json");
        assert_eq!(context["n"][1], 2);

        for bad in ["not json", "[1,2]", "{\"a\":"] {
            let bytes = encode("node-1", &entry(bad));
            let log = StoredLogRef::decode(&bytes).expect("decodes");
            let context: serde_json::Value =
                serde_json::from_str(log.context.expect("context").get()).expect("json");
            assert_eq!(context["raw"], bad);
        }
        let log_bytes = encode("node-1", &entry(""));
        assert!(
            StoredLogRef::decode(&log_bytes)
                .expect("decodes")
                .context
                .is_none()
        );
        assert!(StoredLogRef::decode(b"garbage").is_none());
    }
}
