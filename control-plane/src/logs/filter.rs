//! What a log search asks for, and whether a stored line matches: pure, so the store's scan and
//! the tests share one definition.

use std::collections::BTreeSet;

use aisemble_shared::wire::LogLevel;

use super::stored::StoredLogRef;

/// A search's conditions. Every given condition must hold; lists match any of their values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// First millisecond included.
    pub start_ms: i64,
    /// Last millisecond included.
    pub end_ms: i64,
    /// Levels wanted; empty: every level.
    pub levels: BTreeSet<LogLevel>,
    /// Services wanted; empty: every service.
    pub services: Vec<String>,
    /// Hosts wanted; empty: every host.
    pub hosts: Vec<String>,
    /// Words and `"quoted phrases"` that must all appear, ignoring ASCII case, in the message or
    /// the context.
    pub terms: Vec<String>,
    /// Exact trace id.
    pub trace_id: Option<String>,
    /// Exact request id.
    pub request_id: Option<String>,
}

impl LogFilter {
    /// Whether lines of this level can match.
    pub fn wants_level(&self, level: LogLevel) -> bool {
        self.levels.is_empty() || self.levels.contains(&level)
    }

    /// Whether `log` matches every condition.
    pub fn matches(&self, log: &StoredLogRef<'_>) -> bool {
        log.timestamp_ms >= self.start_ms
            && log.timestamp_ms <= self.end_ms
            && self.wants_level(log.level)
            && (self.services.is_empty() || self.services.iter().any(|s| *s == log.service))
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| *h == log.host))
            && self
                .trace_id
                .as_deref()
                .is_none_or(|id| log.trace_id.as_deref() == Some(id))
            && self
                .request_id
                .as_deref()
                .is_none_or(|id| log.request_id.as_deref() == Some(id))
            && self.terms.iter().all(|term| {
                contains_ignore_ascii_case(&log.message, term)
                    || log
                        .context
                        .is_some_and(|c| contains_ignore_ascii_case(c.get(), term))
            })
    }
}

/// Splits a full-text query into terms: whitespace separates words, double quotes keep a phrase
/// together. Empty terms are dropped.
pub fn parse_terms(query: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in query.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                if !current.is_empty() {
                    terms.push(std::mem::take(&mut current));
                }
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    terms.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        terms.push(current);
    }
    terms
}

/// Whether `needle` occurs in `haystack`, ignoring ASCII case (non-ASCII characters must match
/// exactly). Finds candidates by the needle's first byte in either case.
pub fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (hay, needle) = (haystack.as_bytes(), needle.as_bytes());
    let Some(&first) = needle.first() else {
        return true;
    };
    if needle.len() > hay.len() {
        return false;
    }
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let last_start = hay.len() - needle.len();
    let mut at = 0;
    while at <= last_start {
        let Some(offset) = memchr::memchr2(lower, upper, &hay[at..=last_start]) else {
            return false;
        };
        let start = at + offset;
        if hay[start..start + needle.len()].eq_ignore_ascii_case(needle) {
            return true;
        }
        at = start + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn line<'a>(
        message: &'a str,
        context: Option<&'a serde_json::value::RawValue>,
    ) -> StoredLogRef<'a> {
        StoredLogRef {
            timestamp_ms: 1_000,
            level: LogLevel::Error,
            host: Cow::Borrowed("node-1"),
            service: Cow::Borrowed("api"),
            message: Cow::Borrowed(message),
            context,
            trace_id: Some(Cow::Borrowed("abc")),
            request_id: None,
        }
    }

    #[test]
    fn terms_split_on_space_and_keep_quoted_phrases() {
        assert_eq!(
            parse_terms(r#" timeout  "connection reset" db"#),
            ["timeout", "connection reset", "db"]
        );
        assert!(parse_terms("   ").is_empty());
    }

    #[test]
    fn case_is_ignored_for_ascii_only() {
        assert!(contains_ignore_ascii_case(
            "Connection RESET by peer",
            "reset by"
        ));
        assert!(contains_ignore_ascii_case("abc", ""));
        assert!(!contains_ignore_ascii_case("ab", "abc"));
        assert!(!contains_ignore_ascii_case("aaab", "aac"));
        assert!(contains_ignore_ascii_case("xaaac", "aac"));
        assert!(contains_ignore_ascii_case("Größe", "größe"));
        assert!(!contains_ignore_ascii_case("GRÖSSE", "größe"));
    }

    #[test]
    fn every_condition_must_hold() {
        let context = serde_json::value::RawValue::from_string(r#"{"user":"Alice"}"#.into())
            .expect("valid json");
        let log = line("upstream timed out", Some(&context));
        let all = LogFilter {
            start_ms: 0,
            end_ms: i64::MAX,
            ..LogFilter::default()
        };
        assert!(all.matches(&log));
        let with = |f: fn(&mut LogFilter)| {
            let mut filter = all.clone();
            f(&mut filter);
            filter.matches(&log)
        };
        assert!(with(|f| f.terms = vec!["TIMED".into(), "alice".into()]));
        assert!(!with(|f| f.terms = vec!["timed".into(), "bob".into()]));
        assert!(with(|f| f.levels = [LogLevel::Warn, LogLevel::Error].into()));
        assert!(!with(|f| f.levels = [LogLevel::Info].into()));
        assert!(with(|f| f.services = vec!["web".into(), "api".into()]));
        assert!(!with(|f| f.hosts = vec!["node-2".into()]));
        assert!(with(|f| f.trace_id = Some("abc".into())));
        assert!(!with(|f| f.request_id = Some("abc".into())));
        assert!(!with(|f| f.start_ms = 1_001));
        assert!(!with(|f| f.end_ms = 999));
        assert!(with(|f| f.end_ms = 1_000));
    }
}
