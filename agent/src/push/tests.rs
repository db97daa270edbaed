use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use aisemble_shared::{
    codec::decode_record,
    config::PushSection,
    units::ByteSize,
    wire::{LogEntry, LogLevel, MonitoringState, Record, Sample},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

use super::{
    Aggregator, MAX_LINE_BYTES, PushCollector, PushSettings,
    event::{self, Event},
};
use crate::{
    collect::Collector as _,
    journal::{Journal, MemoryJournal},
    sink::RecordSink,
};

// ---- Parsing ----------------------------------------------------------------------------------

/// Parses `body` as an HTTP body; checks the number of events or the error message.
#[track_caller]
fn check_body(body: &str, ndjson: bool, expected: Result<usize, &str>) {
    let parsed = event::parse_body(body.as_bytes(), ndjson)
        .map(|events| events.len())
        .map_err(|error| error.to_string());
    assert_eq!(
        parsed.as_ref().copied().map_err(String::as_str),
        expected,
        "body: {body}"
    );
}

const INFERENCE: &str = r#"{"type":"inference","model":"llama-3-8b","provider":"local","duration_ms":123.4,"queue_ms":5,"outcome":"success","tokens_in":512,"tokens_out":128,"cost_usd":0.0012}"#;
const REQUEST: &str = r#"{"type":"request","service":"api","status":200,"duration_ms":12}"#;
const CONNECTIONS: &str = r#"{"type":"connections","service":"api","active":17}"#;
const ERROR: &str = r#"{"type":"error","service":"api","kind":"timeout"}"#;
const BREAKER: &str = r#"{"type":"circuit_breaker","name":"payments","state":"half_open"}"#;

#[test]
fn bodies_in_every_shape_parse() {
    let all = [INFERENCE, REQUEST, CONNECTIONS, ERROR, BREAKER];
    check_body(&format!("[{}]", all.join(",")), false, Ok(5));
    check_body(&format!(" \n[{}]\n", all.join(",\n")), false, Ok(5));
    check_body(&all.join("\n"), true, Ok(5));
    check_body(&(all.join("\r\n") + "\r\n"), false, Ok(5));
    check_body(INFERENCE, false, Ok(1));
    check_body("[]", false, Ok(0));
}

#[test]
fn bad_events_are_named_by_index_and_field() {
    let missing_model = r#"{"type":"inference","outcome":"success","duration_ms":1}"#;
    check_body(
        &format!("[{REQUEST},{REQUEST},{missing_model},{REQUEST}]"),
        false,
        Err("event 3: missing field `model`"),
    );
    check_body(
        &format!("{REQUEST}\n{missing_model}\n"),
        true,
        Err("event 2: missing field `model`"),
    );
    check_body(
        r#"{"type":"request","service":"api","status":200}"#,
        false,
        Err("event 1: missing field `duration_ms`"),
    );
    check_body(
        r#"{"type":"request","service":"api","status":700,"duration_ms":1}"#,
        false,
        Err("event 1: `status` 700 is not an HTTP status (100 to 599)"),
    );
    check_body(
        r#"{"type":"inference","model":"m","outcome":"success","duration_ms":-1}"#,
        false,
        Err("event 1: `duration_ms` must be a number >= 0, not -1"),
    );
    check_body(
        r#"{"type":"inference","model":"m","outcome":"ok","duration_ms":1}"#,
        false,
        Err("event 1: unknown variant `ok`, expected `success` or `failure`"),
    );
    check_body(
        r#"{"type":"metric","name":"x"}"#,
        false,
        Err(
            "event 1: unknown variant `metric`, expected one of `inference`, `request`, \
             `connections`, `error`, `circuit_breaker`, `log`",
        ),
    );
    check_body(
        r#"{"service":"api","kind":"x"}"#,
        false,
        Err("event 1: missing field `type`"),
    );
    check_body(
        r#"{"type":"error","service":"","kind":"x"}"#,
        false,
        Err("event 1: `service` is empty"),
    );
    let long = "m".repeat(129);
    check_body(
        &format!(r#"{{"type":"error","service":"{long}","kind":"x"}}"#),
        false,
        Err("event 1: `service` is longer than 128 bytes (129)"),
    );
    check_body(
        "[1]",
        false,
        Err("event 1: invalid type: integer `1`, expected an event object"),
    );
    check_body(
        &format!("[{REQUEST},"),
        false,
        Err("event 2: EOF while parsing a value at line 1 column 66"),
    );
    check_body(
        &format!("[{REQUEST}] x"),
        false,
        Err("after the array: trailing characters at line 1 column 68"),
    );
    check_body(
        "  \n",
        false,
        Err("empty body; send a JSON object, a JSON array of objects or NDJSON"),
    );
}

#[test]
fn unknown_fields_are_refused() {
    let typo = r#"{"type":"inference","modle":"m","outcome":"success","duration_ms":1}"#;
    let error = event::parse_body(typo.as_bytes(), false).expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("event 1: unknown field `modle`, expected one of"),
        "{error}"
    );
    // A field of another event type is unknown for this one.
    check_body(
        r#"{"type":"request","service":"api","status":200,"duration_ms":1,"model":"m"}"#,
        false,
        Err(
            "event 1: unknown field `model` for type `request`, expected one of `service`, \
             `status`, `duration_ms`",
        ),
    );
}

#[test]
fn labels_borrow_the_body_unless_escaped() {
    let events = event::parse_body(
        br#"[{"type":"error","service":"api","kind":"t\u0069meout"}]"#,
        false,
    )
    .expect("parses");
    let event::Pushed::Metric(Event::Error { service, kind }) = &events[0] else {
        panic!("not an error event: {events:?}");
    };
    assert!(matches!(service, std::borrow::Cow::Borrowed("api")));
    assert!(matches!(kind, std::borrow::Cow::Owned(k) if k == "timeout"));
}

const LOG: &str = r#"{"type":"log","level":"error","service":"api","message":"upstream timed out","timestamp":"2024-05-01T12:00:00.250Z","context":{"route":"/v1/chat","attempt":2},"trace_id":"4bf92f3577b34da6","request_id":"req-1"}"#;

/// Parses one log event line; the entry it journals (received at `received_ms`) or the error.
#[track_caller]
fn check_log(line: &str, received_ms: i64, expected: Result<LogEntry, &str>) {
    let parsed = match event::parse_line(line.as_bytes()) {
        Ok(Some(event::Pushed::Log(log))) => Ok(log.into_entry(received_ms)),
        Ok(other) => panic!("not a log event: {other:?}"),
        Err(message) => Err(message),
    };
    assert_eq!(
        parsed.as_ref().map_err(String::as_str),
        expected.as_ref().map_err(|e| *e),
        "line: {line}"
    );
}

fn log_entry(level: LogLevel, message: &str, timestamp_ms: i64) -> LogEntry {
    LogEntry {
        timestamp_ms,
        level,
        service: "api".into(),
        message: message.into(),
        context: String::new(),
        trace_id: None,
        request_id: None,
    }
}

#[test]
fn log_events_become_entries() {
    check_log(
        LOG,
        1,
        Ok(LogEntry {
            context: r#"{"attempt":2,"route":"/v1/chat"}"#.into(),
            trace_id: Some("4bf92f3577b34da6".into()),
            request_id: Some("req-1".into()),
            ..log_entry(LogLevel::Error, "upstream timed out", 1_714_564_800_250)
        }),
    );
    // Only service and message are required: info, received now, no context or ids.
    check_log(
        r#"{"type":"log","service":"api","message":"started"}"#,
        42,
        Ok(log_entry(LogLevel::Info, "started", 42)),
    );
    // Unix times in seconds (fractions too) and milliseconds; level names as libraries spell them.
    check_log(
        r#"{"type":"log","service":"api","message":"m","level":"WARNING","timestamp":1714564800.5}"#,
        0,
        Ok(log_entry(LogLevel::Warn, "m", 1_714_564_800_500)),
    );
    check_log(
        r#"{"type":"log","service":"api","message":"m","level":"fatal","timestamp":1714564800250,"context":{},"trace_id":""}"#,
        0,
        Ok(log_entry(LogLevel::Critical, "m", 1_714_564_800_250)),
    );
}

#[test]
fn bad_log_events_are_refused_naming_the_field() {
    check_log(
        r#"{"type":"log","service":"api"}"#,
        0,
        Err("missing field `message`"),
    );
    check_log(
        r#"{"type":"log","message":"m"}"#,
        0,
        Err("missing field `service`"),
    );
    check_log(
        r#"{"type":"log","service":"api","message":"m","level":"loud"}"#,
        0,
        Err("`level` \"loud\" is not a log level; use trace, debug, info, warn, error or critical"),
    );
    check_log(
        r#"{"type":"log","service":"api","message":"m","timestamp":"yesterday"}"#,
        0,
        Err(
            "`timestamp` must be a Unix time (a number >= 0) or an RFC 3339 time with an offset (\"2024-05-01T12:00:00.123Z\"), not \"yesterday\"",
        ),
    );
    check_log(
        r#"{"type":"log","service":"api","message":"m","timestamp":-5}"#,
        0,
        Err(
            "`timestamp` must be a Unix time (a number >= 0) or an RFC 3339 time with an offset (\"2024-05-01T12:00:00.123Z\"), not -5",
        ),
    );
    check_log(
        r#"{"type":"log","service":"api","message":"m","context":"route=/"}"#,
        0,
        Err("`context` must be a JSON object"),
    );
    check_log(
        r#"{"type":"log","service":"api","message":"m","model":"x"}"#,
        0,
        Err(
            "unknown field `model` for type `log`, expected one of `level`, `service`, `message`, `timestamp`, `context`, `trace_id`, `request_id`",
        ),
    );
    check_log(
        &format!(
            r#"{{"type":"log","service":"api","message":"{}"}}"#,
            "m".repeat(super::MAX_MESSAGE_BYTES + 1)
        ),
        0,
        Err("`message` is longer than 65536 bytes (65537)"),
    );
    check_log(
        &format!(
            r#"{{"type":"log","service":"api","message":"m","trace_id":"{}"}}"#,
            "t".repeat(129)
        ),
        0,
        Err("`trace_id` is longer than 128 bytes (129)"),
    );
    // Log fields belong to log events only.
    check_body(
        r#"{"type":"error","service":"api","kind":"x","message":"m"}"#,
        false,
        Err("event 1: unknown field `message` for type `error`, expected one of `service`, `kind`"),
    );
}

// ---- Aggregation ------------------------------------------------------------------------------

/// Applies NDJSON `lines` (all must be good) and returns every series as `name{l="v",…}` → value,
/// labels sorted.
fn aggregate(max_keys: usize, lines: &[&str]) -> (Aggregator, BTreeMap<String, f64>) {
    let mut aggregator = Aggregator::with_max_keys(max_keys);
    for line in lines {
        let event = metric(line);
        aggregator.apply_one(&event).expect("fits");
    }
    let series = series(&aggregator);
    (aggregator, series)
}

/// A good metric event line, parsed.
fn metric(line: &str) -> Event<'_> {
    match event::parse_line(line.as_bytes()) {
        Ok(Some(event::Pushed::Metric(event))) => event,
        other => panic!("not a metric event: {other:?}"),
    }
}

fn series(aggregator: &Aggregator) -> BTreeMap<String, f64> {
    let mut samples = Vec::new();
    aggregator.snapshot().write_samples(&mut samples);
    to_map(&samples)
}

fn to_map(samples: &[Sample]) -> BTreeMap<String, f64> {
    let mut map = BTreeMap::new();
    for sample in samples {
        let mut labels: Vec<_> = sample
            .labels
            .iter()
            .map(|l| format!("{}=\"{}\"", l.name, l.value))
            .collect();
        labels.sort();
        let key = format!("{}{{{}}}", sample.name, labels.join(","));
        assert!(
            map.insert(key.clone(), sample.value).is_none(),
            "duplicate series {key}"
        );
    }
    map
}

#[track_caller]
fn check_series(series: &BTreeMap<String, f64>, expected: &[(&str, f64)]) {
    for (key, value) in expected {
        match series.get(*key) {
            Some(actual) => assert!(
                (actual - value).abs() < 1e-9,
                "{key}: {actual}, expected {value}"
            ),
            None => panic!("{key} missing; have:\n{series:#?}"),
        }
    }
}

fn inference(model: &str, duration_ms: f64) -> String {
    format!(
        r#"{{"type":"inference","model":"{model}","outcome":"success","duration_ms":{duration_ms}}}"#
    )
}

#[test]
fn durations_land_in_their_buckets() {
    // le is inclusive: 5 ms is in le="0.005".
    let durations = [1.0, 5.0, 7.0, 100.0, 1000.0, 61_000.0];
    let lines: Vec<String> = durations.iter().map(|ms| inference("m", *ms)).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (_, series) = aggregate(10, &lines);
    let bucket = |le: &str| {
        format!(
            "aisemble_model_inference_duration_seconds_bucket{{le=\"{le}\",model=\"m\",provider=\"unknown\"}}"
        )
    };
    let expected = [
        ("0.005", 2.0),
        ("0.01", 3.0),
        ("0.025", 3.0),
        ("0.05", 3.0),
        ("0.1", 4.0),
        ("0.25", 4.0),
        ("0.5", 4.0),
        ("1", 5.0),
        ("2.5", 5.0),
        ("5", 5.0),
        ("10", 5.0),
        ("30", 5.0),
        ("60", 5.0),
        ("+Inf", 6.0),
    ];
    let expected: Vec<(String, f64)> = expected.iter().map(|(le, n)| (bucket(le), *n)).collect();
    let expected: Vec<(&str, f64)> = expected.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    check_series(&series, &expected);
    check_series(
        &series,
        &[
            (
                "aisemble_model_inference_duration_seconds_count{model=\"m\",provider=\"unknown\"}",
                6.0,
            ),
            (
                "aisemble_model_inference_duration_seconds_sum{model=\"m\",provider=\"unknown\"}",
                0.001 + 0.005 + 0.007 + 0.1 + 1.0 + 61.0,
            ),
        ],
    );
    let n_buckets = series.keys().filter(|k| k.contains("_bucket{")).count();
    assert_eq!(n_buckets, 14);
}

#[test]
fn histograms_are_cumulative_and_inf_equals_count() {
    let mut lines = Vec::new();
    for idx in 0..500u32 {
        let ms = f64::from(idx * idx % 97_003) / 7.0;
        lines.push(inference(["a", "b", "c"][idx as usize % 3], ms));
        lines.push(format!(
            r#"{{"type":"request","service":"s{}","status":{},"duration_ms":{ms}}}"#,
            idx % 2,
            100 + idx % 500
        ));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (_, series) = aggregate(10, &lines);
    let mut n_histograms = 0;
    for (key, count) in series.iter().filter(|(k, _)| k.contains("_count{")) {
        n_histograms += 1;
        let family = key.split("_count{").next().expect("has a name");
        let labels = &key[key.find('{').expect("has labels") + 1..key.len() - 1];
        let mut previous = 0.0;
        for le in super::aggregate::BUCKETS
            .iter()
            .map(ToString::to_string)
            .chain(["+Inf".to_owned()])
        {
            let mut parts: Vec<String> = labels.split(',').map(str::to_owned).collect();
            parts.push(format!("le=\"{le}\""));
            parts.sort();
            let bucket = format!("{family}_bucket{{{}}}", parts.join(","));
            let value = *series
                .get(&bucket)
                .unwrap_or_else(|| panic!("{bucket} missing"));
            assert!(value >= previous, "{bucket} = {value} < {previous}");
            previous = value;
        }
        assert_eq!(previous, *count, "{family}{{{labels}}}: +Inf != _count");
    }
    assert_eq!(n_histograms, 5, "three models and two services");
}

#[test]
fn inference_counters_tokens_and_cost_add_up() {
    let (_, series) = aggregate(
        10,
        &[
            INFERENCE,
            INFERENCE,
            r#"{"type":"inference","model":"llama-3-8b","provider":"local","duration_ms":50,"outcome":"failure","tokens_in":10}"#,
            r#"{"type":"inference","model":"gpt","duration_ms":1,"outcome":"success"}"#,
        ],
    );
    let labels = "model=\"llama-3-8b\",provider=\"local\"";
    check_series(
        &series,
        &[
            (
                "aisemble_model_inference_total{model=\"llama-3-8b\",outcome=\"success\",provider=\"local\"}",
                2.0,
            ),
            (
                "aisemble_model_inference_total{model=\"llama-3-8b\",outcome=\"failure\",provider=\"local\"}",
                1.0,
            ),
            (
                &format!("aisemble_model_tokens_total{{direction=\"in\",{labels}}}"),
                1034.0,
            ),
            (
                &format!("aisemble_model_tokens_total{{direction=\"out\",{labels}}}"),
                256.0,
            ),
            (
                &format!("aisemble_model_cost_usd_total{{{labels}}}"),
                0.0024,
            ),
            (
                &format!("aisemble_model_queue_duration_seconds_count{{{labels}}}"),
                2.0,
            ),
            (
                &format!("aisemble_model_queue_duration_seconds_sum{{{labels}}}"),
                0.01,
            ),
            (
                &format!("aisemble_model_inference_duration_seconds_sum{{{labels}}}"),
                0.2968,
            ),
            (
                "aisemble_model_inference_total{model=\"gpt\",outcome=\"failure\",provider=\"unknown\"}",
                0.0,
            ),
            ("aisemble_agent_push_events_total{result=\"accepted\"}", 4.0),
            ("aisemble_agent_push_events_total{result=\"rejected\"}", 0.0),
        ],
    );
    // What a model never reported is not invented.
    let gpt: Vec<&String> = series.keys().filter(|k| k.contains("\"gpt\"")).collect();
    assert!(
        gpt.iter()
            .all(|k| !k.contains("tokens") && !k.contains("cost") && !k.contains("queue"))
    );
}

#[test]
fn requests_count_by_status_class_and_errors_by_kind() {
    let request = |status: u16| {
        format!(r#"{{"type":"request","service":"api","status":{status},"duration_ms":3}}"#)
    };
    let lines = [
        request(200),
        request(204),
        request(301),
        request(404),
        request(503),
        request(100),
        ERROR.to_owned(),
        ERROR.to_owned(),
        r#"{"type":"error","service":"api","kind":"http_5xx"}"#.to_owned(),
        CONNECTIONS.to_owned(),
        r#"{"type":"connections","service":"api","active":3}"#.to_owned(),
        BREAKER.to_owned(),
        r#"{"type":"circuit_breaker","name":"search","state":"open"}"#.to_owned(),
        r#"{"type":"circuit_breaker","name":"db","state":"closed"}"#.to_owned(),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (aggregator, series) = aggregate(10, &lines);
    check_series(
        &series,
        &[
            (
                "aisemble_requests_total{service=\"api\",status=\"1xx\"}",
                1.0,
            ),
            (
                "aisemble_requests_total{service=\"api\",status=\"2xx\"}",
                2.0,
            ),
            (
                "aisemble_requests_total{service=\"api\",status=\"3xx\"}",
                1.0,
            ),
            (
                "aisemble_requests_total{service=\"api\",status=\"4xx\"}",
                1.0,
            ),
            (
                "aisemble_requests_total{service=\"api\",status=\"5xx\"}",
                1.0,
            ),
            (
                "aisemble_request_duration_seconds_count{service=\"api\"}",
                6.0,
            ),
            (
                "aisemble_errors_total{kind=\"http_4xx\",service=\"api\"}",
                1.0,
            ),
            (
                "aisemble_errors_total{kind=\"http_5xx\",service=\"api\"}",
                2.0,
            ),
            (
                "aisemble_errors_total{kind=\"timeout\",service=\"api\"}",
                2.0,
            ),
            ("aisemble_active_connections{service=\"api\"}", 3.0),
            ("aisemble_circuit_breaker_state{name=\"payments\"}", 2.0),
            ("aisemble_circuit_breaker_state{name=\"search\"}", 1.0),
            ("aisemble_circuit_breaker_state{name=\"db\"}", 0.0),
        ],
    );
    // api, (api, timeout), three breakers.
    assert_eq!(aggregator.n_keys(), 5);
}

#[test]
fn key_limit_refuses_new_keys_but_not_existing_ones() {
    let parse = metric;
    let (mut aggregator, _) = aggregate(2, &[&inference("a", 1.0), REQUEST]);
    let refusal = aggregator
        .apply_one(&parse(&inference("b", 1.0)))
        .expect_err("a third key");
    assert_eq!(
        refusal.to_string(),
        "too many distinct models/services (limit 2); raise push.max_keys"
    );
    aggregator
        .apply_one(&parse(&inference("a", 2.0)))
        .expect("existing model");
    aggregator
        .apply_one(&parse(REQUEST))
        .expect("existing service");
    // http_4xx/http_5xx belong to the service's key.
    aggregator
        .apply_one(&parse(
            r#"{"type":"error","service":"api","kind":"http_4xx"}"#,
        ))
        .expect("existing service");
    // A batch is applied whole or not at all.
    let a3 = inference("a", 3.0);
    let batch = [parse(&a3), parse(REQUEST), parse(ERROR)];
    let refusal = aggregator.apply_all(&batch).expect_err("a new error kind");
    assert_eq!(refusal.idx, 2);
    assert_eq!(aggregator.n_keys(), 2);
    assert_eq!((aggregator.n_accepted(), aggregator.n_rejected()), (5, 4));
    check_series(
        &series(&aggregator),
        &[
            (
                "aisemble_model_inference_total{model=\"a\",outcome=\"success\",provider=\"unknown\"}",
                2.0,
            ),
            (
                "aisemble_requests_total{service=\"api\",status=\"2xx\"}",
                2.0,
            ),
        ],
    );
    // Duplicates of one new key count once.
    let mut aggregator = Aggregator::with_max_keys(1);
    let (x1, x2) = (inference("x", 1.0), inference("x", 2.0));
    let batch = [parse(&x1), parse(&x2)];
    aggregator.apply_all(&batch).expect("one key");
    assert_eq!(aggregator.n_keys(), 1);
}

// ---- Settings ---------------------------------------------------------------------------------

#[test]
fn settings_accept_loopback_only() {
    let path = Path::new("/etc/aisemble/agent.toml");
    let section = |listen: Option<&str>, socket: Option<&str>| PushSection {
        listen: listen.map(str::to_owned),
        socket: socket.map(Into::into),
        ..PushSection::default()
    };
    assert_eq!(
        PushSettings::from_config(path, &section(None, None)),
        Ok(None)
    );
    let settings =
        PushSettings::from_config(path, &section(Some("localhost:9465"), Some("push.sock")))
            .expect("valid")
            .expect("enabled");
    assert_eq!(
        settings.listen,
        Some("127.0.0.1:9465".parse().expect("addr"))
    );
    assert_eq!(
        settings.socket.as_deref(),
        Some(Path::new("/etc/aisemble/push.sock"))
    );
    assert_eq!((settings.max_keys, settings.max_body), (1000, 4 << 20));
    assert!(
        PushSettings::from_config(path, &section(Some("[::1]:9465"), None))
            .expect("valid")
            .is_some()
    );
    let error = PushSettings::from_config(path, &section(Some("0.0.0.0:9465"), None))
        .expect_err("not loopback");
    assert_eq!(
        error.to_string(),
        "/etc/aisemble/agent.toml: key `push.listen`: \"0.0.0.0:9465\" is not a loopback address; \
         use a loopback address such as \"127.0.0.1:9465\" or \"[::1]:9465\" (the endpoint has no \
         authentication), or a Unix socket (push.socket)"
    );
    let zero_keys = PushSection {
        max_keys: Some(0),
        ..section(Some("127.0.0.1:1"), None)
    };
    assert_eq!(
        PushSettings::from_config(path, &zero_keys)
            .expect_err("zero")
            .key
            .as_deref(),
        Some("push.max_keys")
    );
    let tiny_body = PushSection {
        max_body: Some(ByteSize(10)),
        ..section(Some("127.0.0.1:1"), None)
    };
    assert!(PushSettings::from_config(path, &tiny_body).is_err());
}

// ---- Endpoints --------------------------------------------------------------------------------

/// A running endpoint on an ephemeral port and a temp-dir socket, with a log pipeline journaling
/// into memory.
struct Endpoint {
    aggregator: Arc<Mutex<Aggregator>>,
    url: String,
    socket: std::path::PathBuf,
    journal: Arc<MemoryJournal>,
    monitoring: watch::Sender<MonitoringState>,
    logs: crate::logs::Logs,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Endpoint {
    async fn start(max_keys: usize, max_body: usize) -> Self {
        Self::start_with(max_keys, max_body, super::http::Limits::default()).await
    }

    async fn start_with(max_keys: usize, max_body: usize, limits: super::http::Limits) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("push.sock");
        let settings = PushSettings {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            socket: Some(socket.clone()),
            max_keys,
            max_body,
        };
        let aggregator = Arc::new(Mutex::new(Aggregator::new(&settings)));
        let journal = Arc::new(MemoryJournal::new(64 << 20));
        let sink = RecordSink::new(
            Arc::clone(&journal) as Arc<dyn Journal>,
            watch::channel(0).0,
        );
        let (monitoring, monitoring_rx) = watch::channel(MonitoringState::Running);
        let shutdown = CancellationToken::new();
        let logs = crate::logs::spawn_with(
            Vec::new(),
            dir.path().join("log-positions.json"),
            crate::logs::Options::quick(),
            sink,
            monitoring_rx,
            shutdown.clone(),
        );
        let mut listeners = super::bind(&settings).await.expect("binds");
        listeners.http_limits = limits;
        let url = format!("http://{}", listeners.http_addr().expect("http"));
        let task = tokio::spawn(listeners.serve(
            Arc::clone(&aggregator),
            logs.sender.clone(),
            shutdown.clone(),
        ));
        Self {
            aggregator,
            url,
            socket,
            journal,
            monitoring,
            logs,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// Every log line journaled so far, record by record.
    fn log_records(&self) -> Vec<Vec<LogEntry>> {
        self.journal
            .read_after(0, usize::MAX, usize::MAX)
            .expect("reads")
            .iter()
            .filter_map(
                |entry| match decode_record(&entry.record).expect("decodes") {
                    Record::Logs(logs) => Some(logs.entries),
                    _ => None,
                },
            )
            .collect()
    }

    /// Waits until `n` log lines are journaled; returns them.
    async fn wait_for_lines(&self, n: usize) -> Vec<LogEntry> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<LogEntry> = self.log_records().into_iter().flatten().collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n} lines journaled in time; have {lines:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn post(&self, body: impl Into<String>, content_type: &str) -> (u16, serde_json::Value) {
        let client = crate::http_client::client(None, Duration::from_secs(5)).expect("client");
        let response = client
            .post(format!("{}/v1/events", self.url))
            .header("content-type", content_type)
            .body(body.into())
            .send()
            .await
            .expect("sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    fn series(&self) -> BTreeMap<String, f64> {
        let mut samples = Vec::new();
        PushCollector::new(Arc::clone(&self.aggregator))
            .collect(&mut samples)
            .expect("collects");
        to_map(&samples)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops promptly")
            .expect("did not panic");
        tokio::time::timeout(Duration::from_secs(5), self.logs.task)
            .await
            .expect("log pipeline stops promptly")
            .expect("did not panic");
        assert!(!self.socket.exists(), "socket file removed");
    }
}

#[tokio::test]
async fn http_accepts_arrays_ndjson_and_single_objects() {
    let endpoint = Endpoint::start(100, 1 << 20).await;
    let json = "application/json";
    assert_eq!(
        endpoint
            .post(format!("[{INFERENCE},{REQUEST},{REQUEST}]"), json)
            .await,
        (200, serde_json::json!({ "accepted": 3 }))
    );
    assert_eq!(
        endpoint
            .post(format!("{INFERENCE}\n{ERROR}\n"), "application/x-ndjson")
            .await,
        (200, serde_json::json!({ "accepted": 2 }))
    );
    // NDJSON without its Content-Type is recognized too.
    assert_eq!(
        endpoint
            .post(format!("{CONNECTIONS}\n{BREAKER}"), json)
            .await,
        (200, serde_json::json!({ "accepted": 2 }))
    );
    assert_eq!(
        endpoint.post(INFERENCE, json).await,
        (200, serde_json::json!({ "accepted": 1 }))
    );

    // One bad event refuses the whole body.
    let missing_model = r#"{"type":"inference","outcome":"success","duration_ms":1}"#;
    assert_eq!(
        endpoint
            .post(format!("[{REQUEST},{INFERENCE},{missing_model}]"), json)
            .await,
        (
            400,
            serde_json::json!({ "error": "event 3: missing field `model`" })
        )
    );
    let typo = r#"{"type":"request","service":"api","stauts":200,"duration_ms":1}"#;
    let (status, answer) = endpoint.post(format!("{REQUEST}\n{typo}"), json).await;
    assert_eq!(status, 400);
    let message = answer["error"].as_str().expect("message");
    assert!(
        message.starts_with("event 2: unknown field `stauts`"),
        "{message}"
    );

    let client = crate::http_client::client(None, Duration::from_secs(5)).expect("client");
    let health = client
        .get(format!("{}/health", endpoint.url))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status().as_u16(), 200);

    let labels = "model=\"llama-3-8b\",provider=\"local\"";
    check_series(
        &endpoint.series(),
        &[
            (
                "aisemble_model_inference_total{model=\"llama-3-8b\",outcome=\"success\",provider=\"local\"}",
                3.0,
            ),
            (
                &format!(
                    "aisemble_model_inference_duration_seconds_bucket{{le=\"0.25\",{labels}}}"
                ),
                3.0,
            ),
            (
                &format!("aisemble_model_inference_duration_seconds_bucket{{le=\"0.1\",{labels}}}"),
                0.0,
            ),
            (
                &format!("aisemble_model_tokens_total{{direction=\"in\",{labels}}}"),
                1536.0,
            ),
            (
                "aisemble_requests_total{service=\"api\",status=\"2xx\"}",
                2.0,
            ),
            (
                "aisemble_request_duration_seconds_bucket{le=\"0.025\",service=\"api\"}",
                2.0,
            ),
            (
                "aisemble_errors_total{kind=\"timeout\",service=\"api\"}",
                1.0,
            ),
            ("aisemble_active_connections{service=\"api\"}", 17.0),
            ("aisemble_circuit_breaker_state{name=\"payments\"}", 2.0),
            ("aisemble_agent_push_events_total{result=\"accepted\"}", 8.0),
            // The refused bodies: events read up to and including the bad one.
            ("aisemble_agent_push_events_total{result=\"rejected\"}", 5.0),
        ],
    );
    endpoint.stop().await;
}

#[tokio::test]
async fn http_refuses_large_bodies_and_new_keys_beyond_the_limit() {
    let endpoint = Endpoint::start(2, 1024).await;
    let big = format!("[{}]", vec![REQUEST; 20].join(","));
    assert!(big.len() > 1024);
    let (status, answer) = endpoint.post(big, "application/json").await;
    assert_eq!(status, 413);
    assert_eq!(
        answer["error"],
        "body larger than push.max_body (1024 bytes); send smaller batches or raise push.max_body"
    );

    let json = "application/json";
    assert_eq!(
        endpoint.post(format!("[{REQUEST},{ERROR}]"), json).await,
        (200, serde_json::json!({ "accepted": 2 }))
    );
    assert_eq!(
        endpoint.post(format!("[{REQUEST},{BREAKER}]"), json).await,
        (
            400,
            serde_json::json!({
                "error": "event 2: too many distinct models/services (limit 2); raise push.max_keys"
            })
        )
    );
    check_series(
        &endpoint.series(),
        &[
            (
                "aisemble_requests_total{service=\"api\",status=\"2xx\"}",
                1.0,
            ),
            ("aisemble_agent_push_events_total{result=\"rejected\"}", 3.0),
        ],
    );
    endpoint.stop().await;
}

#[tokio::test]
async fn http_connections_are_capped_and_idle_ones_closed() {
    let idle_timeout = Duration::from_millis(300);
    let limits = super::http::Limits {
        max_connections: 1,
        idle_timeout,
    };
    let endpoint = Endpoint::start_with(100, 1 << 20, limits).await;
    let addr = endpoint.url.trim_start_matches("http://");
    let mut idle = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    // Let the server accept it: it now holds the only slot.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    assert_eq!(
        endpoint.post(REQUEST, "application/json").await,
        (200, serde_json::json!({ "accepted": 1 }))
    );
    assert!(
        started.elapsed() >= idle_timeout - Duration::from_millis(100),
        "served only once the idle connection was closed"
    );
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut byte))
        .await
        .expect("closed by the server");
    assert_eq!(read.expect("clean close"), 0);
    endpoint.stop().await;
}

/// Sends `input` on the socket, half-closes, and returns the replies.
async fn socket_exchange(path: &Path, input: &[u8]) -> String {
    let mut stream = tokio::net::UnixStream::connect(path)
        .await
        .expect("connects");
    stream.write_all(input).await.expect("writes");
    stream.shutdown().await.expect("half-closes");
    let mut replies = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut replies))
        .await
        .expect("answers promptly")
        .expect("reads");
    replies
}

#[tokio::test]
async fn socket_applies_lines_and_answers_bad_ones() {
    let endpoint = Endpoint::start(100, 1 << 20).await;
    let input = format!(
        "{INFERENCE}\n{{\"type\":\"inference\"}}\n\n{REQUEST}\r\n{{\"type\":\"nope\"}}\n{REQUEST}"
    );
    let replies = socket_exchange(&endpoint.socket, input.as_bytes()).await;
    let replies: Vec<serde_json::Value> = replies
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(
        replies,
        [
            serde_json::json!({ "error": "line 2: missing field `model`" }),
            serde_json::json!({
                "error": "line 5: unknown variant `nope`, expected one of `inference`, `request`, \
                          `connections`, `error`, `circuit_breaker`, `log`"
            }),
            serde_json::json!({ "accepted": 3, "rejected": 2 }),
        ]
    );

    // An over-long line is refused and skipped; the next one still counts.
    let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
    input.push(b'\n');
    input.extend_from_slice(REQUEST.as_bytes());
    input.push(b'\n');
    let replies = socket_exchange(&endpoint.socket, &input).await;
    assert_eq!(
        replies,
        format!(
            "{{\"error\":\"line 1: longer than {MAX_LINE_BYTES} bytes\"}}\n\
             {{\"accepted\":1,\"rejected\":1}}\n"
        )
    );

    check_series(
        &endpoint.series(),
        &[
            (
                "aisemble_requests_total{service=\"api\",status=\"2xx\"}",
                3.0,
            ),
            ("aisemble_agent_push_events_total{result=\"accepted\"}", 4.0),
            ("aisemble_agent_push_events_total{result=\"rejected\"}", 3.0),
        ],
    );
    endpoint.stop().await;
}

#[tokio::test]
async fn http_log_events_are_journaled_as_one_record_with_the_metric_events_applied() {
    let mut endpoint = Endpoint::start(100, 1 << 20).await;
    let second = r#"{"type":"log","service":"worker","message":"job done","level":"debug"}"#;
    assert_eq!(
        endpoint
            .post(format!("[{LOG},{REQUEST},{second}]"), "application/json")
            .await,
        (200, serde_json::json!({ "accepted": 3 }))
    );
    let lines = endpoint.wait_for_lines(2).await;
    assert_eq!(
        endpoint.log_records().len(),
        1,
        "one record for the body's lines"
    );
    assert_eq!(
        (
            lines[0].message.as_str(),
            lines[0].level,
            lines[0].timestamp_ms
        ),
        ("upstream timed out", LogLevel::Error, 1_714_564_800_250)
    );
    assert_eq!(lines[0].trace_id.as_deref(), Some("4bf92f3577b34da6"));
    assert_eq!(
        (
            lines[1].service.as_str(),
            lines[1].message.as_str(),
            lines[1].level
        ),
        ("worker", "job done", LogLevel::Debug)
    );

    // A bad log event refuses the whole body, metric events included.
    let bad = r#"{"type":"log","service":"api"}"#;
    assert_eq!(
        endpoint
            .post(format!("[{REQUEST},{bad}]"), "application/json")
            .await,
        (
            400,
            serde_json::json!({ "error": "event 2: missing field `message`" })
        )
    );

    // Paused: log events are dropped (and said so), metric events still count.
    endpoint.monitoring.send_replace(MonitoringState::Paused);
    assert_eq!(
        endpoint
            .post(format!("{LOG}\n{REQUEST}\n{LOG}"), "application/x-ndjson")
            .await,
        (
            200,
            serde_json::json!({
                "accepted": 1,
                "dropped": 2,
                "warning": "monitoring is paused by the control plane; log lines are not collected",
            })
        )
    );
    endpoint.monitoring.send_replace(MonitoringState::Running);
    assert_eq!(
        endpoint.post(LOG, "application/json").await,
        (200, serde_json::json!({ "accepted": 1 }))
    );
    let lines = endpoint.wait_for_lines(3).await;
    assert_eq!(lines.len(), 3, "the paused lines were not journaled");

    check_series(
        &endpoint.series(),
        &[
            (
                "aisemble_requests_total{service=\"api\",status=\"2xx\"}",
                2.0,
            ),
            ("aisemble_agent_push_events_total{result=\"accepted\"}", 5.0),
            ("aisemble_agent_push_events_total{result=\"rejected\"}", 2.0),
        ],
    );
    let mut samples = Vec::new();
    endpoint
        .logs
        .collector
        .collect(&mut samples)
        .expect("collects");
    check_series(
        &to_map(&samples),
        &[
            ("aisemble_agent_log_lines_total{source=\"push\"}", 3.0),
            ("aisemble_agent_log_lines_total{source=\"file\"}", 0.0),
            (
                "aisemble_agent_log_lines_dropped_total{reason=\"paused\"}",
                2.0,
            ),
        ],
    );
    endpoint.stop().await;
}

#[tokio::test]
async fn socket_log_lines_are_journaled_and_paused_ones_counted() {
    let endpoint = Endpoint::start(100, 1 << 20).await;
    let input = format!(
        "{LOG}\n{{\"type\":\"log\",\"service\":\"api\",\"message\":\"m\",\"level\":\"loud\"}}\n{REQUEST}\n{LOG}\n"
    );
    let replies = socket_exchange(&endpoint.socket, input.as_bytes()).await;
    assert_eq!(
        replies,
        "{\"error\":\"line 2: `level` \\\"loud\\\" is not a log level; use trace, debug, info, warn, error or critical\"}\n\
         {\"accepted\":3,\"rejected\":1}\n"
    );
    let lines = endpoint.wait_for_lines(2).await;
    assert!(
        lines.iter().all(|l| l.message == "upstream timed out"),
        "{lines:?}"
    );

    endpoint.monitoring.send_replace(MonitoringState::Paused);
    let replies = socket_exchange(&endpoint.socket, format!("{LOG}\n{REQUEST}\n").as_bytes()).await;
    assert_eq!(replies, "{\"accepted\":1,\"dropped\":1,\"rejected\":0}\n");
    let journal = Arc::clone(&endpoint.journal);
    endpoint.stop().await;
    let n_journaled = journal
        .read_after(0, usize::MAX, usize::MAX)
        .expect("reads")
        .iter()
        .map(
            |entry| match decode_record(&entry.record).expect("decodes") {
                Record::Logs(logs) => logs.entries.len(),
                _ => 0,
            },
        )
        .sum::<usize>();
    assert_eq!(n_journaled, 2, "the paused line was not journaled");
}

#[tokio::test]
async fn socket_replaces_a_stale_file_but_not_other_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("push.sock");
    // A socket file left behind by a process that is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("binds"));
    assert!(path.exists());
    let listener = super::socket::SocketListener::bind(&path)
        .await
        .expect("replaces the stale file");
    // In use: refused.
    let error = super::socket::SocketListener::bind(&path)
        .await
        .expect_err("in use");
    assert!(
        error.to_string().contains("another process is listening"),
        "{error:#}"
    );
    drop(listener);
    assert!(!path.exists(), "removed on drop");

    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").expect("writes");
    let error = super::socket::SocketListener::bind(&file)
        .await
        .expect_err("not a socket");
    assert!(error.to_string().contains("not a socket"), "{error:#}");
    assert!(file.exists());
}
