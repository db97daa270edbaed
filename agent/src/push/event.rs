//! The push event format: JSON objects with a `type` field, parsed from bytes without copying
//! their strings (label values borrow the body unless they contain escapes) and checked once, at
//! the edge, into [`Event`]s the aggregator can apply without further checks.
//!
//! One flat struct receives every event type, so that serde reads an object in one pass (an
//! internally tagged enum would buffer each object first); fields that do not belong to the
//! event's type are then refused by hand, as unknown fields are by serde.
//!
//! Metric events ([`Event`]) go to the aggregator; log events ([`LogLine`]) go to the log batcher
//! as lines. [`Pushed`] is either.

use std::{borrow::Cow, fmt};

use aisemble_shared::wire::{LogEntry, LogLevel};
use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeSeed, SeqAccess, Visitor},
};

/// Longest label value accepted (model, provider, service, kind, name), in bytes.
pub const MAX_LABEL_BYTES: usize = 128;

/// Longest log `message`, and longest log `context` as JSON text, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;

/// One checked pushed event: a metric event for the aggregator, or a log line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pushed<'a> {
    /// Aggregated into series.
    Metric(Event<'a>),
    /// Journaled as a line.
    Log(LogLine<'a>),
}

/// A checked log event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogLine<'a> {
    /// Severity (`info` when not given).
    pub(crate) level: LogLevel,
    /// Service.
    pub(crate) service: Cow<'a, str>,
    /// The text.
    pub(crate) message: Cow<'a, str>,
    /// Milliseconds since the epoch, when given.
    pub(crate) timestamp_ms: Option<i64>,
    /// A JSON object's text, or empty.
    pub(crate) context: String,
    /// Trace id, when given.
    pub(crate) trace_id: Option<Cow<'a, str>>,
    /// Request id, when given.
    pub(crate) request_id: Option<Cow<'a, str>>,
}

impl LogLine<'_> {
    /// The journaled entry; `received_ms` is its time when it carries none.
    pub(crate) fn into_entry(self, received_ms: i64) -> LogEntry {
        LogEntry {
            timestamp_ms: self.timestamp_ms.unwrap_or(received_ms),
            level: self.level,
            service: self.service.into_owned(),
            message: self.message.into_owned(),
            context: self.context,
            trace_id: self.trace_id.map(Cow::into_owned),
            request_id: self.request_id.map(Cow::into_owned),
        }
    }
}

/// One checked event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event<'a> {
    /// One model inference.
    Inference(Inference<'a>),
    /// One request served by a service.
    Request {
        /// Service label.
        service: Cow<'a, str>,
        /// HTTP status class.
        class: StatusClass,
        /// Latency in seconds.
        seconds: f64,
    },
    /// Open connections of a service, now.
    Connections {
        /// Service label.
        service: Cow<'a, str>,
        /// Open connections.
        active: f64,
    },
    /// One application error.
    Error {
        /// Service label.
        service: Cow<'a, str>,
        /// Error kind label.
        kind: Cow<'a, str>,
    },
    /// A circuit breaker's state, now.
    CircuitBreaker {
        /// Breaker name label.
        name: Cow<'a, str>,
        /// Its state.
        state: BreakerState,
    },
}

/// A checked inference event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Inference<'a> {
    /// Model label.
    pub(crate) model: Cow<'a, str>,
    /// Provider label (`unknown` when not given).
    pub(crate) provider: Cow<'a, str>,
    /// Whether the inference succeeded.
    pub(crate) outcome: Outcome,
    /// Latency in seconds.
    pub(crate) seconds: f64,
    /// Time spent queued, in seconds, when reported.
    pub(crate) queue_seconds: Option<f64>,
    /// Prompt tokens, when reported.
    pub(crate) tokens_in: Option<u64>,
    /// Generated tokens, when reported.
    pub(crate) tokens_out: Option<u64>,
    /// Estimated cost in US dollars, when reported.
    pub(crate) cost_usd: Option<f64>,
}

/// The outcome of an inference.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Answered.
    Success,
    /// Failed.
    Failure,
}

/// A circuit breaker state; the gauge's value is the discriminant.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BreakerState {
    /// Passing calls.
    Closed = 0,
    /// Refusing calls.
    Open = 1,
    /// Letting trial calls through.
    HalfOpen = 2,
}

/// An HTTP status class, `1xx` to `5xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusClass(u8);

impl StatusClass {
    /// The label values, by [`StatusClass::idx`].
    pub(crate) const LABELS: [&'static str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

    /// The class of a status code in `100..=599`.
    fn of(status: u16) -> Option<Self> {
        (100..=599)
            .contains(&status)
            .then(|| Self(u8::try_from(status / 100 - 1).unwrap_or(0)))
    }

    /// Index into [`StatusClass::LABELS`].
    pub(crate) fn idx(self) -> usize {
        usize::from(self.0)
    }
}

/// Why a body was refused: the 1-based index of the bad event (none when the problem is not one
/// event's) and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyError {
    /// 1-based index of the bad event.
    pub(crate) event: Option<usize>,
    /// Events read before the problem.
    pub(crate) n_read: usize,
    /// What is wrong, naming the field.
    pub(crate) message: String,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.event {
            Some(idx) => write!(f, "event {idx}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Parses a whole HTTP body: a JSON array of events, or one or more events separated by
/// whitespace (a single object, or NDJSON). `ndjson` (from the Content-Type) skips the array
/// check.
///
/// # Errors
/// The first bad event, by index; nothing is returned for a body with a bad event.
pub(crate) fn parse_body(body: &[u8], ndjson: bool) -> Result<Vec<Pushed<'_>>, BodyError> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err(BodyError {
            event: None,
            n_read: 0,
            message: "empty body; send a JSON object, a JSON array of objects or NDJSON".into(),
        });
    };
    let mut events = Vec::new();
    if !ndjson && body[first] == b'[' {
        let mut de = serde_json::Deserializer::from_slice(body);
        if let Err(error) = (EventSeq { out: &mut events }).deserialize(&mut de) {
            // A problem inside the array is the next event's.
            return Err(BodyError {
                event: Some(events.len() + 1),
                n_read: events.len(),
                message: describe(&error),
            });
        }
        if let Err(error) = de.end() {
            return Err(BodyError {
                event: None,
                n_read: events.len(),
                message: format!("after the array: {}", describe(&error)),
            });
        }
    } else {
        let stream = serde_json::Deserializer::from_slice(body).into_iter::<Pushed<'_>>();
        for event in stream {
            match event {
                Ok(event) => events.push(event),
                Err(error) => {
                    return Err(BodyError {
                        event: Some(events.len() + 1),
                        n_read: events.len(),
                        message: describe(&error),
                    });
                }
            }
        }
    }
    Ok(events)
}

/// Parses one line of the socket protocol; `None` for a blank line.
///
/// # Errors
/// What is wrong with the event, naming the field.
pub(crate) fn parse_line(line: &[u8]) -> Result<Option<Pushed<'_>>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(line)
        .map(Some)
        .map_err(|error| describe(&error))
}

/// A serde_json error as a message: data errors (missing or unknown field, wrong type, our own
/// checks) without the position, which names nothing useful; syntax errors with it.
fn describe(error: &serde_json::Error) -> String {
    let mut message = error.to_string();
    if error.is_data()
        && let Some(at) = message.rfind(" at line ")
    {
        message.truncate(at);
    }
    message
}

/// Reads an array of events into `out`, so that on error the caller knows how many were read.
struct EventSeq<'v, 'a> {
    out: &'v mut Vec<Pushed<'a>>,
}

impl<'de> DeserializeSeed<'de> for EventSeq<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventSeq<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of event objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(event) = seq.next_element::<Pushed<'de>>()? {
            self.out.push(event);
        }
        Ok(())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pushed<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawEvent::deserialize(deserializer)?
            .check()
            .map_err(de::Error::custom)
    }
}

/// A label value: borrowed from the input unless it holds escapes.
#[derive(Debug)]
struct LabelValue<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for LabelValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelVisitor;

        impl<'de> Visitor<'de> for LabelVisitor {
            type Value = LabelValue<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LabelValue(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LabelValue(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(LabelValue(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(LabelVisitor)
    }
}

/// Event types.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum EventType {
    Inference,
    Request,
    Connections,
    Error,
    CircuitBreaker,
    Log,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Inference => "inference",
            Self::Request => "request",
            Self::Connections => "connections",
            Self::Error => "error",
            Self::CircuitBreaker => "circuit_breaker",
            Self::Log => "log",
        }
    }
}

/// Every field of every event type, as sent.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, expecting = "an event object")]
struct RawEvent<'a> {
    #[serde(rename = "type")]
    kind_of_event: EventType,
    #[serde(default, borrow)]
    model: Option<LabelValue<'a>>,
    #[serde(default, borrow)]
    provider: Option<LabelValue<'a>>,
    #[serde(default)]
    outcome: Option<Outcome>,
    #[serde(default)]
    duration_ms: Option<f64>,
    #[serde(default)]
    queue_ms: Option<f64>,
    #[serde(default)]
    tokens_in: Option<u64>,
    #[serde(default)]
    tokens_out: Option<u64>,
    #[serde(default)]
    cost_usd: Option<f64>,
    #[serde(default, borrow)]
    service: Option<LabelValue<'a>>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    active: Option<f64>,
    #[serde(default, borrow)]
    kind: Option<LabelValue<'a>>,
    #[serde(default, borrow)]
    name: Option<LabelValue<'a>>,
    #[serde(default)]
    state: Option<BreakerState>,
    #[serde(default, borrow)]
    level: Option<LabelValue<'a>>,
    #[serde(default, borrow)]
    message: Option<LabelValue<'a>>,
    #[serde(default)]
    timestamp: Option<Timestamp>,
    #[serde(default)]
    context: Option<Context>,
    #[serde(default, borrow)]
    trace_id: Option<LabelValue<'a>>,
    #[serde(default, borrow)]
    request_id: Option<LabelValue<'a>>,
}

impl<'a> RawEvent<'a> {
    /// Checks the fields against the event's type.
    fn check(self) -> Result<Pushed<'a>, String> {
        let ty = self.kind_of_event;
        let present = [
            ("model", self.model.is_some()),
            ("provider", self.provider.is_some()),
            ("outcome", self.outcome.is_some()),
            ("duration_ms", self.duration_ms.is_some()),
            ("queue_ms", self.queue_ms.is_some()),
            ("tokens_in", self.tokens_in.is_some()),
            ("tokens_out", self.tokens_out.is_some()),
            ("cost_usd", self.cost_usd.is_some()),
            ("service", self.service.is_some()),
            ("status", self.status.is_some()),
            ("active", self.active.is_some()),
            ("kind", self.kind.is_some()),
            ("name", self.name.is_some()),
            ("state", self.state.is_some()),
            ("level", self.level.is_some()),
            ("message", self.message.is_some()),
            ("timestamp", self.timestamp.is_some()),
            ("context", self.context.is_some()),
            ("trace_id", self.trace_id.is_some()),
            ("request_id", self.request_id.is_some()),
        ];
        let allowed: &[&str] = match ty {
            EventType::Inference => &[
                "model",
                "provider",
                "outcome",
                "duration_ms",
                "queue_ms",
                "tokens_in",
                "tokens_out",
                "cost_usd",
            ],
            EventType::Request => &["service", "status", "duration_ms"],
            EventType::Connections => &["service", "active"],
            EventType::Error => &["service", "kind"],
            EventType::CircuitBreaker => &["name", "state"],
            EventType::Log => &[
                "level",
                "service",
                "message",
                "timestamp",
                "context",
                "trace_id",
                "request_id",
            ],
        };
        if let Some((field, _)) = present
            .iter()
            .find(|(field, is_present)| *is_present && !allowed.contains(field))
        {
            return Err(format!(
                "unknown field `{field}` for type `{}`, expected one of `{}`",
                ty.as_str(),
                allowed.join("`, `")
            ));
        }
        Ok(Pushed::Metric(match ty {
            EventType::Inference => Event::Inference(Inference {
                model: label("model", self.model)?,
                provider: match self.provider {
                    Some(provider) => label("provider", Some(provider))?,
                    None => Cow::Borrowed("unknown"),
                },
                outcome: required("outcome", self.outcome)?,
                seconds: milliseconds("duration_ms", required("duration_ms", self.duration_ms)?)?,
                queue_seconds: self
                    .queue_ms
                    .map(|ms| milliseconds("queue_ms", ms))
                    .transpose()?,
                tokens_in: self.tokens_in,
                tokens_out: self.tokens_out,
                cost_usd: self
                    .cost_usd
                    .map(|usd| non_negative("cost_usd", usd))
                    .transpose()?,
            }),
            EventType::Request => {
                let status = required("status", self.status)?;
                Event::Request {
                    service: label("service", self.service)?,
                    class: StatusClass::of(status).ok_or_else(|| {
                        format!("`status` {status} is not an HTTP status (100 to 599)")
                    })?,
                    seconds: milliseconds(
                        "duration_ms",
                        required("duration_ms", self.duration_ms)?,
                    )?,
                }
            }
            EventType::Connections => Event::Connections {
                service: label("service", self.service)?,
                active: non_negative("active", required("active", self.active)?)?,
            },
            EventType::Error => Event::Error {
                service: label("service", self.service)?,
                kind: label("kind", self.kind)?,
            },
            EventType::CircuitBreaker => Event::CircuitBreaker {
                name: label("name", self.name)?,
                state: required("state", self.state)?,
            },
            EventType::Log => return self.check_log().map(Pushed::Log),
        }))
    }

    /// Checks a log event's fields (the others are already refused).
    fn check_log(self) -> Result<LogLine<'a>, String> {
        let level = match self.level {
            None => LogLevel::Info,
            Some(LabelValue(name)) => LogLevel::parse(&name).ok_or_else(|| {
                format!(
                    "`level` {name:?} is not a log level; use trace, debug, info, warn, error \
                     or critical"
                )
            })?,
        };
        let message = required("message", self.message)?.0;
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(format!(
                "`message` is longer than {MAX_MESSAGE_BYTES} bytes ({})",
                message.len()
            ));
        }
        let context = self.context.map_or_else(String::new, |c| c.0);
        if context.len() > MAX_MESSAGE_BYTES {
            return Err(format!(
                "`context` is longer than {MAX_MESSAGE_BYTES} bytes as JSON ({})",
                context.len()
            ));
        }
        Ok(LogLine {
            level,
            service: label("service", self.service)?,
            message,
            timestamp_ms: self.timestamp.map(|t| t.0),
            context,
            trace_id: optional_id("trace_id", self.trace_id)?,
            request_id: optional_id("request_id", self.request_id)?,
        })
    }
}

/// A log event's `timestamp`: a Unix time in seconds, milliseconds, microseconds or nanoseconds
/// (told by its size), or an RFC 3339 string with an offset; as milliseconds since the epoch.
#[derive(Debug)]
struct Timestamp(i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;

        const PROBLEM: &str = "`timestamp` must be a Unix time (a number >= 0) or an RFC 3339 \
                               time with an offset (\"2024-05-01T12:00:00.123Z\")";

        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Unix time or an RFC 3339 string")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_f64(v as f64)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.visit_f64(v as f64)
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                crate::logs::epoch_ms(v)
                    .map(Timestamp)
                    .ok_or_else(|| E::custom(format!("{PROBLEM}, not {v}")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                crate::logs::rfc3339_ms(v)
                    .map(Timestamp)
                    .ok_or_else(|| E::custom(format!("{PROBLEM}, not {v:?}")))
            }
        }

        deserializer.deserialize_any(TimestampVisitor)
    }
}

/// A log event's `context`: a JSON object, kept as its text.
#[derive(Debug)]
struct Context(String);

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Object(object) if object.is_empty() => Ok(Self(String::new())),
            object @ serde_json::Value::Object(_) => Ok(Self(object.to_string())),
            _ => Err(de::Error::custom("`context` must be a JSON object")),
        }
    }
}

fn required<T>(field: &str, value: Option<T>) -> Result<T, String> {
    value.ok_or_else(|| format!("missing field `{field}`"))
}

fn label<'a>(field: &str, value: Option<LabelValue<'a>>) -> Result<Cow<'a, str>, String> {
    let value = required(field, value)?.0;
    if value.is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    if value.len() > MAX_LABEL_BYTES {
        return Err(format!(
            "`{field}` is longer than {MAX_LABEL_BYTES} bytes ({})",
            value.len()
        ));
    }
    Ok(value)
}

/// An optional identifier: empty means absent; at most [`MAX_LABEL_BYTES`].
fn optional_id<'a>(
    field: &str,
    value: Option<LabelValue<'a>>,
) -> Result<Option<Cow<'a, str>>, String> {
    match value {
        Some(LabelValue(value)) if value.len() > MAX_LABEL_BYTES => Err(format!(
            "`{field}` is longer than {MAX_LABEL_BYTES} bytes ({})",
            value.len()
        )),
        Some(LabelValue(value)) if !value.is_empty() => Ok(Some(value)),
        _ => Ok(None),
    }
}

fn non_negative(field: &str, value: f64) -> Result<f64, String> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(format!("`{field}` must be a number >= 0, not {value}"))
    }
}

fn milliseconds(field: &str, ms: f64) -> Result<f64, String> {
    non_negative(field, ms).map(|ms| ms / 1000.0)
}
