//! Checks against real targets: the machine's PostgreSQL (127.0.0.1:5432) and Redis
//! (127.0.0.1:6379), a test-owned `redis-server`, raw-HTTP test servers, real commands; plus the
//! pure state core and config validation.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::Arc,
};

use aisemble_shared::{
    codec::decode_record,
    config::CheckConfig,
    metrics,
    wire::{CheckStateChange, Label, Sample},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use super::*;
use crate::journal::{Journal, MemoryJournal};

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL: &str = "redis://127.0.0.1:6379";

// ---------------------------------------------------------------------------------------------
// Helpers.

fn config(name: &str, kind: &str) -> CheckConfig {
    CheckConfig {
        name: name.into(),
        kind: kind.into(),
        ..CheckConfig::default()
    }
}

fn http(url: &str) -> CheckConfig {
    CheckConfig {
        url: Some(url.into()),
        ..config("web", "http")
    }
}

fn tcp(address: &str) -> CheckConfig {
    CheckConfig {
        address: Some(address.into()),
        ..config("port", "tcp")
    }
}

fn url_check(kind: &str, url: &str) -> CheckConfig {
    CheckConfig {
        url: Some(url.into()),
        ..config(kind, kind)
    }
}

fn exec(command: &[&str]) -> CheckConfig {
    CheckConfig {
        command: Some(command.iter().map(|&s| s.to_owned()).collect()),
        ..config("cmd", "exec")
    }
}

fn duration(text: &str) -> Option<HumanDuration> {
    Some(text.parse().expect("a duration"))
}

fn spec(config: &CheckConfig) -> CheckSpec {
    CheckSpec::from_config(
        Path::new("/etc/aisemble/agent.toml"),
        config,
        Duration::from_secs(10),
    )
    .expect("valid check config")
}

/// Runs `config` once (a fresh check, so the result is always a change of state).
async fn run_once(config: &CheckConfig) -> (Vec<Sample>, CheckStateChange) {
    let observation = Runner::new(spec(config)).run_once().await;
    let change = observation.change.expect("a first result is a change");
    (observation.samples, change)
}

/// Runs `config` once and returns its error text, failing the test if it was up.
async fn error_of(config: &CheckConfig) -> String {
    let (_, change) = run_once(config).await;
    assert!(!change.up, "{} should be down", config.name);
    change.error.expect("a down check has an error")
}

/// Runs `config` once and fails the test, with the check's error, if it was down.
async fn assert_up(config: &CheckConfig) -> Vec<Sample> {
    let (samples, change) = run_once(config).await;
    assert!(
        change.up,
        "{} should be up, failed with: {:?}",
        config.name, change.error
    );
    assert_eq!(change.error, None);
    assert_eq!(value(&samples, metrics::CHECK_UP), Some(1.0));
    samples
}

fn value(samples: &[Sample], name: &str) -> Option<f64> {
    samples.iter().find(|s| s.name == name).map(|s| s.value)
}

/// A port on which nothing listens.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    listener.local_addr().expect("local address").port()
}

/// Fails the test with a clear message when a service the tests need is not running.
fn require_service(port: u16, what: &str) {
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "{what} must run at 127.0.0.1:{port} for these tests (see ../shared/services.md)"
    );
}

fn sink() -> (RecordSink, Arc<MemoryJournal>) {
    let journal = Arc::new(MemoryJournal::new(64 << 20));
    let sink = RecordSink::new(
        Arc::clone(&journal) as Arc<dyn Journal>,
        watch::channel(0).0,
    );
    (sink, journal)
}

fn records(journal: &MemoryJournal) -> Vec<Record> {
    journal
        .read_after(0, usize::MAX, usize::MAX)
        .expect("reading the journal")
        .iter()
        .map(|entry| decode_record(&entry.record).expect("a decodable record"))
        .collect()
}

/// The metric records of check `name`.
fn metric_records<'a>(records: &'a [Record], name: &str) -> Vec<&'a MetricRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Metrics(m)
                if m.samples
                    .first()
                    .is_some_and(|s| s.labels.first() == Some(&Label::new("check", name))) =>
            {
                Some(m)
            }
            _ => None,
        })
        .collect()
}

/// The state changes of check `name`.
fn changes<'a>(records: &'a [Record], name: &str) -> Vec<&'a CheckStateChange> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Events(e) => Some(&e.events),
            _ => None,
        })
        .flatten()
        .filter_map(|e| match e {
            Event::CheckStateChanged(c) if c.check == name => Some(c),
            _ => None,
        })
        .collect()
}

/// Polls `journal` until `done` holds, for at most `limit`.
async fn wait_for(
    journal: &MemoryJournal,
    limit: Duration,
    what: &str,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let deadline = Instant::now() + limit;
    loop {
        let records = records(journal);
        if done(&records) {
            return records;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw HTTP/1.1 server: `/ok` → 200 `all ok`, `/fail` → 503, `/hang` → never answers,
/// anything else → 404. Stops (with every connection) when dropped.
struct HttpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            // Owned by this task, so aborting it drops (and aborts) every connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve_http(stream));
            }
        });
        Self { addr, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_http(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/ok" => ("200 OK", "all ok"),
        "/fail" => ("503 Service Unavailable", "overloaded"),
        "/hang" => return std::future::pending().await,
        _ => ("404 Not Found", ""),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A `redis-server` owned by the test, on its own port, keeping nothing on disk.
struct OwnRedis {
    child: Option<Child>,
}

impl OwnRedis {
    async fn start(port: u16) -> Self {
        Self::start_with(port, &[]).await
    }

    async fn start_with(port: u16, args: &[&str]) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH (see ../shared/services.md)");
        let redis = Self { child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        redis
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The pure state core.

fn outcome(result: Result<(), &str>) -> Outcome {
    Outcome {
        duration: Duration::from_millis(250),
        result: result.map_err(|e| CheckError::Failed(e.to_owned())),
        details: Vec::new(),
    }
}

/// A change of state as the tests spell it.
#[derive(Debug, PartialEq)]
struct Flip {
    was_up: Option<bool>,
    up: bool,
    error: Option<String>,
}

fn flip(was_up: Option<bool>, up: bool, error: Option<&str>) -> Option<Flip> {
    Some(Flip {
        was_up,
        up,
        error: error.map(str::to_owned),
    })
}

/// Feeds `results` to a fresh state; expects, per run, the consecutive failures and the change.
#[track_caller]
fn check_states(results: &[Result<(), &str>], expected: &[(u64, Option<Flip>)]) {
    let labels = [Label::new("service", "api")];
    let mut state = CheckState::new("api", "http", &labels);
    let mut seen = Vec::new();
    for result in results {
        let observation = state.observe(&outcome(*result));
        let failures = value(&observation.samples, metrics::CHECK_CONSECUTIVE_FAILURES);
        let failures = failures.expect("consecutive failures sample") as u64;
        if let Some(change) = &observation.change {
            assert_eq!(change.check, "api");
            assert_eq!(change.kind, "http");
            assert_eq!(change.labels, labels);
            assert_eq!(change.consecutive_failures, failures);
        }
        let change = observation
            .change
            .and_then(|c| flip(c.was_up, c.up, c.error.as_deref()));
        seen.push((failures, change));
    }
    assert_eq!(seen, expected);
}

#[test]
fn the_first_result_and_every_flip_are_changes() {
    check_states(
        &[
            Ok(()),
            Ok(()),
            Err("refused"),
            Err("refused"),
            Err("timed out"),
            Ok(()),
            Ok(()),
        ],
        &[
            (0, flip(None, true, None)),
            (0, None),
            (1, flip(Some(true), false, Some("refused"))),
            (2, None),
            (3, None),
            (0, flip(Some(false), true, None)),
            (0, None),
        ],
    );
    check_states(
        &[Err("boom"), Err("boom"), Ok(())],
        &[
            (1, flip(None, false, Some("boom"))),
            (2, None),
            (0, flip(Some(false), true, None)),
        ],
    );
}

#[test]
fn samples_carry_check_kind_and_labels_plus_details() {
    let mut state = CheckState::new("api", "http", &[Label::new("service", "api")]);
    let observation = state.observe(&Outcome {
        duration: Duration::from_millis(1500),
        result: Err(CheckError::Status {
            status: 503,
            expected: "2xx".into(),
        }),
        details: vec![Detail {
            name: metrics::CHECK_HTTP_STATUS_CODE,
            value: 503.0,
        }],
    });
    let expected_labels = vec![
        Label::new("check", "api"),
        Label::new("kind", "http"),
        Label::new("service", "api"),
    ];
    let got: Vec<_> = observation
        .samples
        .iter()
        .map(|s| (s.name.as_str(), s.value))
        .collect();
    assert_eq!(
        got,
        [
            (metrics::CHECK_UP, 0.0),
            (metrics::CHECK_DURATION_SECONDS, 1.5),
            (metrics::CHECK_CONSECUTIVE_FAILURES, 1.0),
            (metrics::CHECK_HTTP_STATUS_CODE, 503.0),
        ]
    );
    assert!(
        observation
            .samples
            .iter()
            .all(|s| s.labels == expected_labels)
    );
    assert_eq!(
        observation.change.and_then(|c| c.error).as_deref(),
        Some("status 503, expected 2xx")
    );
}

#[test]
fn error_texts() {
    let cases = [
        (
            CheckError::TimedOut(Duration::from_secs(1)),
            "timed out after 1s",
        ),
        (
            CheckError::TimedOut(Duration::from_millis(300)),
            "timed out after 300ms",
        ),
        (CheckError::Refused, "connection refused"),
        (
            CheckError::BodyMissing("ok".into()),
            "body does not contain \"ok\"",
        ),
        (
            CheckError::Exit {
                code: 1,
                stderr: "no such table".into(),
            },
            "exit code 1: no such table",
        ),
        (
            CheckError::Exit {
                code: 2,
                stderr: String::new(),
            },
            "exit code 2",
        ),
        (
            CheckError::Signal {
                signal: Some(9),
                stderr: String::new(),
            },
            "killed by signal 9",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
}

#[test]
fn redis_info_figures() {
    let info = "# Server\r\nredis_version:7.0.15\r\n# Clients\r\nconnected_clients:3\r\n\
                # Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:0\r\n";
    let got: Vec<_> = redis::info_details(info)
        .into_iter()
        .map(|d| (d.name, d.value))
        .collect();
    assert_eq!(
        got,
        [
            (metrics::CHECK_REDIS_CONNECTED_CLIENTS, 3.0),
            (metrics::CHECK_REDIS_USED_MEMORY_BYTES, 1_048_576.0),
            (metrics::CHECK_REDIS_MAXMEMORY_BYTES, 0.0),
        ]
    );
    assert!(redis::info_details("garbage\r\nused_memory:lots\r\n").is_empty());
}

#[track_caller]
fn check_reply(bytes: &[u8], expected: Result<redis::Reply, &str>) {
    let got = tokio_test_block_on(async {
        let mut reader = bytes;
        redis::read_reply(&mut reader).await
    });
    match (got, expected) {
        (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{bytes:?}"),
        (Err(got), Err(expected)) => assert!(
            got.to_string().contains(expected),
            "{bytes:?}: {got} lacks {expected:?}"
        ),
        (got, expected) => panic!("{bytes:?}: got {got:?}, expected {expected:?}"),
    }
}

fn tokio_test_block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[test]
fn redis_replies_are_read_with_bounds() {
    use redis::Reply;
    check_reply(b"+PONG\r\n", Ok(Reply::Simple("PONG".into())));
    check_reply(
        b"-WRONGPASS invalid username-password pair\r\n",
        Ok(Reply::Error(
            "WRONGPASS invalid username-password pair".into(),
        )),
    );
    check_reply(b":42\r\n", Ok(Reply::Integer(42)));
    check_reply(
        b"$12\r\nhello\r\nworld\r\n",
        Ok(Reply::Bulk(b"hello\r\nworld".to_vec())),
    );
    check_reply(b"$0\r\n\r\n", Ok(Reply::Bulk(Vec::new())));
    check_reply(b"$-1\r\n", Ok(Reply::Null));
    check_reply(b"*-1\r\n", Ok(Reply::Null));
    check_reply(b"*2\r\n", Ok(Reply::Array(2)));
    check_reply(b"", Err("connection closed by the server"));
    check_reply(b"+PON", Err("connection closed by the server"));
    check_reply(b"$5\r\nab", Err("connection closed by the server"));
    check_reply(b"$2\r\nabcd", Err("bulk reply not ended by CRLF"));
    check_reply(b"$99999999999\r\n", Err("at most"));
    check_reply(b"$x\r\n", Err("where a number was expected"));
    check_reply(b"HTTP/1.1 400 Bad Request\r\n", Err("not a Redis server?"));
    check_reply(b"\r\n", Err("an empty reply line"));
    let long = [b"+".as_slice(), &vec![b'a'; 70_000], b"\r\n"].concat();
    check_reply(&long, Err("reply line over"));

    assert_eq!(
        redis::encode_command(&["AUTH", "user", "p w"]),
        b"*3\r\n$4\r\nAUTH\r\n$4\r\nuser\r\n$3\r\np w\r\n"
    );
}

#[test]
fn redis_urls() {
    let parsed = |url: &str| format!("{:?}", spec(&url_check("redis", url)).target);
    assert_eq!(
        parsed("redis://127.0.0.1"),
        "Redis(RedisTarget { host: \"127.0.0.1\", port: 6379, username: None, password: None, db: 0 })"
    );
    assert_eq!(
        parsed("redis://app:s%40cret@cache.local:6380/3"),
        "Redis(RedisTarget { host: \"cache.local\", port: 6380, username: Some(\"app\"), \
         password: Some(\"<hidden>\"), db: 3 })"
    );
    assert_eq!(
        parsed("redis://[::1]:7000/"),
        "Redis(RedisTarget { host: \"::1\", port: 7000, username: None, password: None, db: 0 })"
    );
    for (url, needle) in [
        ("redis://", "no host"),
        ("redis://127.0.0.1/x", "database \"x\" is not a number"),
        ("redis://127.0.0.1?protocol=resp3", "query parameters"),
        ("redis://127.0.0.1:99999", "not a usable Redis URL"),
        ("redis://:%ff@127.0.0.1", "not UTF-8"),
    ] {
        check_error(url_check("redis", url), "checks.redis.url", needle);
    }
}

#[test]
fn host_port() {
    assert_eq!(
        spec::split_host_port("127.0.0.1:80"),
        Some(("127.0.0.1", 80))
    );
    assert_eq!(
        spec::split_host_port("db.internal:5432"),
        Some(("db.internal", 5432))
    );
    assert_eq!(spec::split_host_port("[::1]:8000"), Some(("::1", 8000)));
    for bad in [
        "127.0.0.1",
        ":80",
        "host:0",
        "host:99999",
        "::1:80",
        "[::1]",
        "host:http",
    ] {
        assert_eq!(spec::split_host_port(bad), None, "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Config validation.

/// Expects `config` to be refused naming `key` (`checks.NAME.KEY`) with `message` in the text.
#[track_caller]
fn check_error(config: CheckConfig, key: &str, message: &str) {
    let error = match CheckSpec::from_config(
        Path::new("/etc/aisemble/agent.toml"),
        &config,
        Duration::from_secs(10),
    ) {
        Ok(spec) => panic!("expected an error naming {key}, got {spec:?}"),
        Err(error) => error,
    };
    assert_eq!(error.key.as_deref(), Some(key), "{error}");
    assert!(
        error.message.contains(message),
        "{error:?} should say {message:?}"
    );
    assert!(!error.hint.is_empty(), "{error:?} has no hint");
    let line = error.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.contains(key), "{line}");
}

#[test]
fn config_errors_name_the_key() {
    let labels = |name: &str| BTreeMap::from([(name.to_owned(), "x".to_owned())]);
    check_error(config(" ", "tcp"), "checks.name", "is empty");
    check_error(
        config("x", "ping"),
        "checks.x.kind",
        "unknown kind \"ping\"",
    );
    // Required keys.
    check_error(
        config("web", "http"),
        "checks.web.url",
        "required for an http check",
    );
    check_error(
        config("port", "tcp"),
        "checks.port.address",
        "required for a tcp check",
    );
    check_error(
        config("postgres", "postgres"),
        "checks.postgres.url",
        "required",
    );
    check_error(config("redis", "redis"), "checks.redis.url", "required");
    check_error(
        config("cmd", "exec"),
        "checks.cmd.command",
        "required for an exec check",
    );
    // Keys of another kind.
    check_error(
        CheckConfig {
            address: Some("127.0.0.1:80".into()),
            ..http("http://127.0.0.1/")
        },
        "checks.web.address",
        "does not apply to an http check",
    );
    check_error(
        CheckConfig {
            shell: true,
            ..tcp("127.0.0.1:80")
        },
        "checks.port.shell",
        "does not apply to a tcp check",
    );
    check_error(
        CheckConfig {
            command: Some(vec!["true".into()]),
            ..url_check("redis", REDIS_URL)
        },
        "checks.redis.command",
        "does not apply",
    );
    check_error(
        CheckConfig {
            body_contains: Some("ok".into()),
            ..url_check("postgres", POSTGRES_URL)
        },
        "checks.postgres.body_contains",
        "does not apply",
    );
    check_error(
        CheckConfig {
            url: Some("http://x/".into()),
            ..exec(&["true"])
        },
        "checks.cmd.url",
        "does not apply",
    );
    // Interval and timeout.
    check_error(
        CheckConfig {
            interval: duration("1s"),
            timeout: duration("2s"),
            ..tcp("127.0.0.1:80")
        },
        "checks.port.timeout",
        "2s is longer than the interval, 1s",
    );
    check_error(
        CheckConfig {
            timeout: duration("0s"),
            ..tcp("127.0.0.1:80")
        },
        "checks.port.timeout",
        "is zero",
    );
    check_error(
        CheckConfig {
            interval: duration("10ms"),
            ..tcp("127.0.0.1:80")
        },
        "checks.port.interval",
        "shorter than 100ms",
    );
    // Labels.
    for reserved in ["host", "check", "kind"] {
        check_error(
            CheckConfig {
                labels: labels(reserved),
                ..tcp("127.0.0.1:80")
            },
            "checks.port.labels",
            &format!("`{reserved}` is set by"),
        );
    }
    for invalid in ["bad-name", "1st", "__x"] {
        check_error(
            CheckConfig {
                labels: labels(invalid),
                ..tcp("127.0.0.1:80")
            },
            "checks.port.labels",
            "not a valid label name",
        );
    }
    // URLs and addresses.
    check_error(
        http("ftp://127.0.0.1/x"),
        "checks.web.url",
        "not an http or https URL",
    );
    check_error(http("not a url"), "checks.web.url", "not a URL");
    check_error(
        url_check("postgres", "mysql://root@127.0.0.1/db"),
        "checks.postgres.url",
        "not a postgres:// or postgresql:// URL",
    );
    check_error(
        url_check("postgres", "postgres://127.0.0.1:5432/test"),
        "checks.postgres.url",
        "names no user",
    );
    check_error(
        url_check(
            "postgres",
            "postgres://postgres@127.0.0.1:5432/test?sslmode=require",
        ),
        "checks.postgres.url",
        "requires TLS",
    );
    check_error(
        url_check("redis", "http://127.0.0.1:6379"),
        "checks.redis.url",
        "not a redis:// URL",
    );
    check_error(tcp("127.0.0.1"), "checks.port.address", "not HOST:PORT");
    check_error(tcp("127.0.0.1:0"), "checks.port.address", "not HOST:PORT");
    // http keys.
    check_error(
        CheckConfig {
            method: Some("GE T".into()),
            ..http("http://127.0.0.1/")
        },
        "checks.web.method",
        "not an HTTP method",
    );
    check_error(
        CheckConfig {
            expected_status: Some(42),
            ..http("http://127.0.0.1/")
        },
        "checks.web.expected_status",
        "not an HTTP status code",
    );
    check_error(
        CheckConfig {
            body_contains: Some(String::new()),
            ..http("http://127.0.0.1/")
        },
        "checks.web.body_contains",
        "is empty",
    );
    check_error(
        CheckConfig {
            ca: Some(PathBuf::from("no-such-ca.pem")),
            ..http("https://127.0.0.1/")
        },
        "checks.web.ca",
        "no-such-ca.pem",
    );
    // exec keys.
    check_error(exec(&[]), "checks.cmd.command", "is empty");
    check_error(exec(&[""]), "checks.cmd.command", "is empty");
    check_error(
        CheckConfig {
            shell: true,
            ..exec(&["exit", "3"])
        },
        "checks.cmd.command",
        "must be one string with shell = true",
    );
}

#[test]
fn config_defaults() {
    let web = spec(&http("http://127.0.0.1:8080/healthz"));
    assert_eq!(web.name, "web");
    assert_eq!(web.kind(), "http");
    assert_eq!(web.interval, Duration::from_secs(10));
    assert_eq!(web.timeout, DEFAULT_TIMEOUT);
    assert!(web.labels.is_empty());
    let Target::Http(target) = &web.target else {
        panic!("an http target: {web:?}")
    };
    assert_eq!(target.method, reqwest::Method::GET);
    assert_eq!(target.expected_status, None);

    // A short interval caps the default timeout; labels keep the file's (sorted) order.
    let port = spec(&CheckConfig {
        interval: duration("2s"),
        labels: BTreeMap::from([
            ("service".to_owned(), "api".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]),
        ..tcp(" db.internal:5432 ")
    });
    assert_eq!(port.kind(), "tcp");
    assert_eq!(port.interval, Duration::from_secs(2));
    assert_eq!(port.timeout, Duration::from_secs(2));
    assert_eq!(
        port.labels,
        [Label::new("env", "prod"), Label::new("service", "api")]
    );

    let head = spec(&CheckConfig {
        method: Some("head".into()),
        expected_status: Some(204),
        ..http("https://127.0.0.1/")
    });
    let Target::Http(target) = &head.target else {
        panic!("an http target: {head:?}")
    };
    assert_eq!(target.method, reqwest::Method::HEAD);
    assert_eq!(
        spec(&url_check("postgres", "postgresql://u@h/db")).kind(),
        "postgres"
    );
    assert_eq!(spec(&url_check("redis", REDIS_URL)).kind(), "redis");
    let shell = spec(&CheckConfig {
        shell: true,
        timeout: duration("1s"),
        ..exec(&["exit 3"])
    });
    assert_eq!(
        (shell.kind(), shell.timeout),
        ("exec", Duration::from_secs(1))
    );
}

// ---------------------------------------------------------------------------------------------
// tcp.

#[tokio::test]
async fn tcp_up_and_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let address = listener.local_addr().expect("local address").to_string();
    let samples = assert_up(&tcp(&address)).await;
    assert_eq!(
        value(&samples, metrics::CHECK_CONSECUTIVE_FAILURES),
        Some(0.0)
    );
    assert!(value(&samples, metrics::CHECK_DURATION_SECONDS).is_some_and(|d| d < 1.0));

    let closed = format!("127.0.0.1:{}", closed_port());
    assert_eq!(error_of(&tcp(&closed)).await, "connection refused");
}

// ---------------------------------------------------------------------------------------------
// http.

#[tokio::test]
async fn http_status_and_body() {
    let server = HttpServer::start().await;

    let samples = assert_up(&http(&server.url("/ok"))).await;
    assert_eq!(
        value(&samples, metrics::CHECK_HTTP_STATUS_CODE),
        Some(200.0)
    );
    assert_up(&CheckConfig {
        body_contains: Some("ok".into()),
        ..http(&server.url("/ok"))
    })
    .await;
    assert_up(&CheckConfig {
        expected_status: Some(503),
        ..http(&server.url("/fail"))
    })
    .await;

    let fail = http(&server.url("/fail"));
    let (samples, change) = run_once(&fail).await;
    assert_eq!(change.error.as_deref(), Some("status 503, expected 2xx"));
    assert_eq!(value(&samples, metrics::CHECK_UP), Some(0.0));
    assert_eq!(
        value(&samples, metrics::CHECK_HTTP_STATUS_CODE),
        Some(503.0)
    );
    assert_eq!(
        error_of(&CheckConfig {
            expected_status: Some(201),
            ..http(&server.url("/ok"))
        })
        .await,
        "status 200, expected 201"
    );
    assert_eq!(
        error_of(&CheckConfig {
            body_contains: Some("healthy".into()),
            ..http(&server.url("/ok"))
        })
        .await,
        "body does not contain \"healthy\""
    );

    let closed = format!("http://127.0.0.1:{}/ok", closed_port());
    let (samples, change) = run_once(&http(&closed)).await;
    assert_eq!(change.error.as_deref(), Some("connection refused"));
    assert_eq!(value(&samples, metrics::CHECK_HTTP_STATUS_CODE), None);
}

#[tokio::test]
async fn a_hung_target_fails_at_its_timeout_while_other_checks_keep_their_schedule() {
    let server = HttpServer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let address = listener.local_addr().expect("local address").to_string();
    let hung = CheckConfig {
        name: "hung".into(),
        interval: duration("10s"),
        timeout: duration("1s"),
        ..http(&server.url("/hang"))
    };
    let port = CheckConfig {
        interval: duration("200ms"),
        ..tcp(&address)
    };
    let (sink, journal) = sink();
    let (_monitoring, monitoring) = watch::channel(MonitoringState::Running);
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = spawn_all(
        vec![spec(&hung), spec(&port)],
        sink,
        monitoring,
        shutdown.clone(),
    );

    let records = wait_for(
        &journal,
        Duration::from_secs(5),
        "the hung check's result",
        |r| !metric_records(r, "hung").is_empty(),
    )
    .await;
    let hung_run = metric_records(&records, "hung")[0];
    let took = value(&hung_run.samples, metrics::CHECK_DURATION_SECONDS).expect("duration");
    assert!(
        (1.0..1.5).contains(&took),
        "the hung run took {took}s; its timeout is 1s"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(value(&hung_run.samples, metrics::CHECK_UP), Some(0.0));
    let hung_change = changes(&records, "hung");
    assert_eq!(hung_change.len(), 1);
    assert_eq!(hung_change[0].error.as_deref(), Some("timed out after 1s"));

    // Meanwhile the tcp check ran every 200ms (at 0, 200, …, 1000 ms), each run journaled.
    let port_runs = metric_records(&records, "port");
    assert!(
        port_runs.len() >= 4,
        "only {} tcp runs during the 1s hang",
        port_runs.len()
    );
    assert!(
        port_runs
            .iter()
            .all(|r| value(&r.samples, metrics::CHECK_UP) == Some(1.0))
    );
    assert!(
        port_runs
            .windows(2)
            .all(|w| w[1].timestamp_ms - w[0].timestamp_ms >= 150),
        "runs keep their schedule"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("checks stop on shutdown")
        .expect("the checks task ends cleanly");
}

#[tokio::test]
async fn nothing_runs_while_paused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let address = listener.local_addr().expect("local address").to_string();
    let port = CheckConfig {
        interval: duration("100ms"),
        ..tcp(&address)
    };
    let (sink, journal) = sink();
    let (state, monitoring) = watch::channel(MonitoringState::Paused);
    let shutdown = CancellationToken::new();
    let task = spawn_all(vec![spec(&port)], sink, monitoring, shutdown.clone());

    // A negative can only be observed over time: three intervals without a run.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(records(&journal).is_empty(), "a check ran while paused");

    state.send_replace(MonitoringState::Running);
    let records = wait_for(
        &journal,
        Duration::from_secs(2),
        "a run after resuming",
        |r| !metric_records(r, "port").is_empty(),
    )
    .await;
    assert!(changes(&records, "port")[0].up);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("checks stop on shutdown")
        .expect("the checks task ends cleanly");
}

// ---------------------------------------------------------------------------------------------
// postgres.

#[tokio::test]
async fn postgres_ready_missing_database_and_refused() {
    require_service(
        5432,
        "PostgreSQL (trust auth, user postgres, database test)",
    );
    let samples = assert_up(&url_check("postgres", POSTGRES_URL)).await;
    assert!(value(&samples, metrics::CHECK_DURATION_SECONDS).is_some_and(|d| d > 0.0 && d < 1.0));

    let missing = url_check(
        "postgres",
        "postgres://postgres@127.0.0.1:5432/aisemble_no_such_database",
    );
    let error = error_of(&missing).await;
    assert!(
        error.starts_with("database does not exist: ")
            && error.contains("aisemble_no_such_database"),
        "{error}"
    );

    let nobody = url_check(
        "postgres",
        "postgres://aisemble_no_such_role@127.0.0.1:5432/test",
    );
    let error = error_of(&nobody).await;
    assert!(
        error.starts_with("authentication failed: ") && error.contains("aisemble_no_such_role"),
        "{error}"
    );

    let closed = format!("postgres://postgres@127.0.0.1:{}/test", closed_port());
    assert_eq!(
        error_of(&url_check("postgres", &closed)).await,
        "connection refused"
    );
}

// ---------------------------------------------------------------------------------------------
// redis.

#[tokio::test]
async fn redis_ping_and_info() {
    require_service(6379, "Redis");
    let samples = assert_up(&url_check("redis", REDIS_URL)).await;
    let used = value(&samples, metrics::CHECK_REDIS_USED_MEMORY_BYTES);
    assert!(used.is_some_and(|v| v > 0.0), "used_memory {used:?}");
    assert!(value(&samples, metrics::CHECK_REDIS_MAXMEMORY_BYTES).is_some_and(|v| v >= 0.0));
    let clients = value(&samples, metrics::CHECK_REDIS_CONNECTED_CLIENTS);
    assert!(
        clients.is_some_and(|v| v >= 1.0),
        "connected_clients {clients:?}"
    );
    let labels = &samples[0].labels;
    assert_eq!(
        labels,
        &[Label::new("check", "redis"), Label::new("kind", "redis")]
    );

    // The machine's Redis has no password, so any AUTH is refused.
    let wrong = url_check("redis", "redis://:wrong-password@127.0.0.1:6379");
    let error = error_of(&wrong).await;
    assert!(error.starts_with("authentication failed"), "{error}");

    let closed = format!("redis://127.0.0.1:{}", closed_port());
    assert_eq!(
        error_of(&url_check("redis", &closed)).await,
        "connection refused"
    );
}

#[tokio::test]
async fn redis_auth_and_select() {
    let port = closed_port();
    let _own = OwnRedis::start_with(port, &["--requirepass", "s3cret"]).await;
    for url in [
        format!("redis://:s3cret@127.0.0.1:{port}/1"),
        format!("redis://default:s3cret@127.0.0.1:{port}"),
    ] {
        let samples = assert_up(&url_check("redis", &url)).await;
        assert!(value(&samples, metrics::CHECK_REDIS_CONNECTED_CLIENTS).is_some_and(|v| v >= 1.0));
    }
    let wrong = error_of(&url_check(
        "redis",
        &format!("redis://:nope@127.0.0.1:{port}"),
    ))
    .await;
    assert!(
        wrong.starts_with("authentication failed: WRONGPASS"),
        "{wrong}"
    );
    let none = error_of(&url_check("redis", &format!("redis://127.0.0.1:{port}"))).await;
    assert!(none.starts_with("NOAUTH"), "{none}");
    let db = error_of(&url_check(
        "redis",
        &format!("redis://:s3cret@127.0.0.1:{port}/99"),
    ))
    .await;
    assert!(db.starts_with("SELECT 99 failed: ERR"), "{db}");
}

#[tokio::test]
async fn redis_stopped_and_restarted() {
    let port = closed_port();
    let mut own = OwnRedis::start(port).await;
    let mut runner = Runner::new(spec(&url_check(
        "redis",
        &format!("redis://127.0.0.1:{port}"),
    )));

    let first = runner.run_once().await;
    let change = first.change.expect("the first result is a change");
    assert!(change.up, "{:?}", change.error);
    assert_eq!(change.was_up, None);

    own.stop();
    for failures in 1..=3 {
        let run = runner.run_once().await;
        assert_eq!(value(&run.samples, metrics::CHECK_UP), Some(0.0));
        assert_eq!(
            value(&run.samples, metrics::CHECK_CONSECUTIVE_FAILURES),
            Some(failures as f64)
        );
        assert_eq!(
            value(&run.samples, metrics::CHECK_REDIS_USED_MEMORY_BYTES),
            None
        );
        if failures == 1 {
            let down = run.change.expect("going down is a change");
            assert_eq!((down.was_up, down.up), (Some(true), false));
            assert_eq!(down.consecutive_failures, 1);
            assert_eq!(down.error.as_deref(), Some("connection refused"));
        } else {
            assert!(run.change.is_none(), "still down is no change");
        }
    }

    let _own = OwnRedis::start(port).await;
    let up = runner.run_once().await;
    let change = up.change.expect("coming back is a change");
    assert_eq!((change.was_up, change.up), (Some(false), true));
    assert_eq!(change.consecutive_failures, 0);
    assert_eq!(change.error, None);
    assert_eq!(
        value(&up.samples, metrics::CHECK_CONSECUTIVE_FAILURES),
        Some(0.0)
    );
}

// ---------------------------------------------------------------------------------------------
// exec.

#[tokio::test]
async fn exec_exit_codes() {
    assert_up(&exec(&["true"])).await;
    assert_eq!(error_of(&exec(&["false"])).await, "exit code 1");
    assert_eq!(
        error_of(&exec(&[
            "sh",
            "-c",
            "echo 'first line' >&2; echo second >&2; exit 4"
        ]))
        .await,
        "exit code 4: first line"
    );
    assert_eq!(
        error_of(&CheckConfig {
            shell: true,
            ..exec(&["echo boom >&2; exit 3"])
        })
        .await,
        "exit code 3: boom"
    );
    assert_up(&CheckConfig {
        shell: true,
        ..exec(&["test 1 -eq 1 && true"])
    })
    .await;
    assert_eq!(
        error_of(&exec(&["/nonexistent/aisemble-check"])).await,
        "cannot run \"/nonexistent/aisemble-check\": not found"
    );
}

#[tokio::test]
async fn exec_timeout_kills_the_command() {
    let sleeper = CheckConfig {
        interval: duration("1s"),
        timeout: duration("300ms"),
        // An odd duration, so that the process can be found by its command line.
        ..exec(&["sleep", "10.4242"])
    };
    let started = Instant::now();
    let run = run_once(&sleeper);
    tokio::pin!(run);
    // Watch the command run, so that its absence afterwards means something.
    let mut seen_running = false;
    let (samples, change) = loop {
        tokio::select! {
            result = &mut run => break result,
            () = tokio::time::sleep(Duration::from_millis(20)) => seen_running |= sleeper_running(),
        }
    };
    let took = started.elapsed();
    assert_eq!(change.error.as_deref(), Some("timed out after 300ms"));
    assert!(took < Duration::from_millis(800), "took {took:?}");
    let recorded = value(&samples, metrics::CHECK_DURATION_SECONDS).expect("duration");
    assert!((0.3..0.8).contains(&recorded), "{recorded}");

    // kill_on_drop: no live `sleep 10.4242` is left (a killed child not yet reaped is a zombie,
    // whose command line is empty).
    assert!(seen_running, "the command was never seen running");
    let deadline = Instant::now() + Duration::from_secs(2);
    while sleeper_running() {
        assert!(
            Instant::now() < deadline,
            "the timed-out command is still running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn exec_timeout_kills_what_the_command_started() {
    // The shell starts `sleep` as a child of its own and waits for it; killing only the shell
    // would leave the sleep running.
    let shell = CheckConfig {
        interval: duration("1s"),
        timeout: duration("300ms"),
        shell: true,
        ..exec(&["sleep 10.4343 & wait"])
    };
    let run = run_once(&shell);
    tokio::pin!(run);
    let mut seen_running = false;
    let (_, change) = loop {
        tokio::select! {
            result = &mut run => break result,
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                seen_running |= running(b"sleep\x0010.4343\x00");
            }
        }
    };
    assert_eq!(change.error.as_deref(), Some("timed out after 300ms"));
    assert!(seen_running, "the grandchild was never seen running");
    let deadline = Instant::now() + Duration::from_secs(2);
    while running(b"sleep\x0010.4343\x00") {
        assert!(
            Instant::now() < deadline,
            "the command's own child is still running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether a process runs `sleep 10.4242`.
fn sleeper_running() -> bool {
    running(b"sleep\x0010.4242\x00")
}

/// Whether a process has exactly this command line (NUL-separated, as in `/proc/PID/cmdline`).
fn running(cmdline: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .flatten()
        .any(|entry| std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == cmdline))
}
