use std::{
    fs::OpenOptions,
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use aisemble_shared::{
    codec::decode_record,
    config::{LogFileConfig, LogFormat, StartAt},
    wire::{LogEntry, LogLevel, MonitoringState, Record},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    LogFileSpec, MAX_LINE_BYTES, Options,
    batch::{Batch, BatchLimits, Batcher, Mark, Source, entry_bytes},
    checkpoint::Checkpoints,
    parse::{epoch_ms, parse_json, parse_plain, rfc3339_ms},
    tail::{Change, Chunk, FileId, FileTail, Position, READ_BUDGET, Start, change, start},
};
use crate::{
    collect::Collector as _,
    journal::{Journal, MemoryJournal},
    sink::RecordSink,
};

// ---- Parsing ----------------------------------------------------------------------------------

const READ_MS: i64 = 1_000;

/// 2024-05-01T12:00:00Z.
const MAY_1: i64 = 1_714_564_800_000;

fn entry(level: LogLevel, message: &str, timestamp_ms: i64) -> LogEntry {
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

#[track_caller]
fn check_json(line: &str, expected: LogEntry) {
    assert_eq!(parse_json(line, "api", READ_MS), expected, "line: {line}");
}

#[track_caller]
fn check_plain(line: &str, level: LogLevel, timestamp_ms: i64) {
    assert_eq!(
        parse_plain(line, "api", READ_MS),
        entry(level, line, timestamp_ms),
        "line: {line}"
    );
}

#[test]
fn json_lines_give_their_fields_and_keep_the_rest_as_context() {
    check_json(
        r#"{"timestamp":"2024-05-01T12:00:00.250Z","level":"error","message":"upstream timed out","service":"gateway","trace_id":"abc","request_id":"r-1","route":"/v1/chat","attempt":2}"#,
        LogEntry {
            service: "gateway".into(),
            context: r#"{"attempt":2,"route":"/v1/chat"}"#.into(),
            trace_id: Some("abc".into()),
            request_id: Some("r-1".into()),
            ..entry(LogLevel::Error, "upstream timed out", MAY_1 + 250)
        },
    );
    // Other spellings: time/ts/@timestamp, severity/lvl, msg, traceId/requestId.
    check_json(
        r#"{"ts":1714564800.5,"lvl":"WARNING","msg":"slow","traceId":"t","requestId":7}"#,
        LogEntry {
            trace_id: Some("t".into()),
            request_id: Some("7".into()),
            ..entry(LogLevel::Warn, "slow", MAY_1 + 500)
        },
    );
    check_json(
        r#"{"@timestamp":"2024-05-01T14:00:00+02:00","severity":"critical","message":"down"}"#,
        entry(LogLevel::Critical, "down", MAY_1),
    );
    check_json(
        r#"{"time":1714564800000,"level":50,"msg":"pino error"}"#,
        entry(LogLevel::Error, "pino error", MAY_1),
    );
    // No fields it knows: read time, info, everything in the context.
    check_json(
        r#"{"event":"started","port":8080}"#,
        LogEntry {
            context: r#"{"event":"started","port":8080}"#.into(),
            ..entry(LogLevel::Info, "", READ_MS)
        },
    );
    // A known field with a value it cannot use stays in the context; a later spelling is taken.
    check_json(
        r#"{"time":"yesterday","ts":1714564800,"level":"loud","message":{"a":1}}"#,
        LogEntry {
            context: r#"{"level":"loud","time":"yesterday"}"#.into(),
            ..entry(LogLevel::Info, r#"{"a":1}"#, MAY_1)
        },
    );
}

#[test]
fn lines_that_are_not_json_objects_are_kept_as_plain_text() {
    for line in [
        "not json",
        "{\"cut\":",
        "[1,2]",
        "\"text\"",
        "ERROR {broken",
    ] {
        let parsed = parse_json(line, "api", READ_MS);
        assert_eq!(parsed.message, line);
        assert_eq!(parsed.context, "");
    }
    assert_eq!(
        parse_json("ERROR {broken", "api", READ_MS).level,
        LogLevel::Error
    );
}

#[test]
fn plain_lines_state_their_level_and_time() {
    check_plain("all good", LogLevel::Info, READ_MS);
    check_plain("ERROR connection refused", LogLevel::Error, READ_MS);
    check_plain("[warn] disk at 81%", LogLevel::Warn, READ_MS);
    check_plain("WARN: retrying", LogLevel::Warn, READ_MS);
    check_plain("ERROR:root:boom", LogLevel::Error, READ_MS);
    check_plain(
        "2024-05-01T12:00:00Z ERROR upstream timed out",
        LogLevel::Error,
        MAY_1,
    );
    check_plain(
        "[2024-05-01 14:00:00.125+02:00] [main] [debug] tick",
        LogLevel::Debug,
        MAY_1 + 125,
    );
    // A time without an offset is not taken (its zone is unknown); its level still is.
    check_plain(
        "2024-05-01 12:00:00,123 CRITICAL out of memory",
        LogLevel::Critical,
        READ_MS,
    );
    check_plain(
        "time=2024-05-01T12:00:00Z level=error msg=\"boom\"",
        LogLevel::Error,
        READ_MS,
    );
    check_plain("msg=hi lvl=\"debug\"", LogLevel::Debug, READ_MS);
    // A level word inside the message does not count.
    check_plain(
        "user reported an error in checkout",
        LogLevel::Info,
        READ_MS,
    );
    check_plain("12345 worker info: ok", LogLevel::Info, READ_MS);
    check_plain("2024-05-01 is not a time", LogLevel::Info, READ_MS);
    check_plain("2024-05-01Tü", LogLevel::Info, READ_MS);
}

#[test]
fn timestamps() {
    assert_eq!(rfc3339_ms("2024-05-01T12:00:00Z"), Some(MAY_1));
    assert_eq!(rfc3339_ms("2024-05-01t12:00:00.001z"), Some(MAY_1 + 1));
    assert_eq!(rfc3339_ms("2024-05-01T12:00:00"), None);
    assert_eq!(rfc3339_ms("soon"), None);
    assert_eq!(epoch_ms(1_714_564_800.0), Some(MAY_1));
    assert_eq!(epoch_ms(1_714_564_800_000.0), Some(MAY_1));
    assert_eq!(epoch_ms(1_714_564_800_000_000.0), Some(MAY_1));
    assert_eq!(epoch_ms(1_714_564_800_000_000_000.0), Some(MAY_1));
    assert_eq!(epoch_ms(-1.0), None);
    assert_eq!(epoch_ms(f64::NAN), None);
    assert_eq!(epoch_ms(f64::MAX), None);
}

// ---- Rotation decisions -----------------------------------------------------------------------

const A: FileId = FileId { dev: 1, ino: 10 };
const B: FileId = FileId { dev: 1, ino: 11 };

fn at(id: FileId, offset: u64) -> Position {
    Position { id, offset }
}

#[test]
fn where_a_newly_opened_file_is_read_from() {
    use StartAt::{Beginning, End};
    // A saved position in this file: resume, unless the file is now shorter (truncated).
    assert_eq!(start(Some(at(A, 50)), A, 80, true, End), Start::At(50));
    assert_eq!(start(Some(at(A, 50)), A, 50, true, End), Start::At(50));
    assert_eq!(start(Some(at(A, 50)), A, 20, true, End), Start::At(0));
    // In another file: rotated while away.
    assert_eq!(
        start(Some(at(A, 50)), B, 80, true, End),
        Start::Rotated(at(A, 50))
    );
    // None saved: start_at for a file there at startup, the beginning for one that appears later.
    assert_eq!(start(None, A, 80, true, End), Start::At(80));
    assert_eq!(start(None, A, 80, true, Beginning), Start::At(0));
    assert_eq!(start(None, A, 80, false, End), Start::At(0));
}

#[test]
fn what_happened_to_the_open_file() {
    assert_eq!(change(A, 100, 100, Some(A)), Change::Same);
    assert_eq!(change(A, 150, 100, Some(A)), Change::Same);
    assert_eq!(change(A, 40, 100, Some(A)), Change::Truncated);
    assert_eq!(change(A, 100, 100, Some(B)), Change::Rotated);
    assert_eq!(change(A, 100, 100, None), Change::Rotated);
}

// ---- Batching ---------------------------------------------------------------------------------

fn line(n: usize) -> LogEntry {
    entry(LogLevel::Info, &format!("line {n}"), 0)
}

fn limits() -> BatchLimits {
    BatchLimits::with_delay(Duration::from_secs(1))
}

#[test]
fn a_batch_is_due_at_500_lines_256_kib_or_1_s_after_its_first_line() {
    let t0 = Instant::now();
    let mut batcher = Batcher::new(limits());
    assert_eq!(batcher.deadline(), None);
    assert!(!batcher.is_due(t0));
    batcher.push(t0, line(0), Source::Push, None);
    let later = t0 + Duration::from_millis(300);
    batcher.push(later, line(1), Source::Push, None);
    // The first line sets the deadline.
    assert_eq!(batcher.deadline(), Some(t0 + Duration::from_secs(1)));
    assert!(!batcher.is_due(t0 + Duration::from_millis(999)));
    assert!(batcher.is_due(t0 + Duration::from_secs(1)));
    let batch = batcher.take();
    assert_eq!((batch.entries.len(), batch.n_push, batch.n_file), (2, 2, 0));
    assert!(batcher.is_empty());
    assert_eq!(batcher.deadline(), None);

    for n in 0..499 {
        batcher.push(t0, line(n), Source::Push, None);
    }
    assert!(!batcher.is_full());
    batcher.push(t0, line(499), Source::Push, None);
    assert!(batcher.is_full() && batcher.is_due(t0));
    assert_eq!(batcher.take().entries.len(), 500);

    let big = entry(LogLevel::Info, &"x".repeat(100 << 10), 0);
    batcher.push(t0, big.clone(), Source::Push, None);
    batcher.push(t0, big.clone(), Source::Push, None);
    assert!(!batcher.is_full(), "{} bytes", 2 * entry_bytes(&big));
    batcher.push(t0, big, Source::Push, None);
    assert!(batcher.is_full());
    assert_eq!(batcher.take().entries.len(), 3);

    // A small journal gets small records.
    assert_eq!(BatchLimits::for_journal(64 << 10).max_bytes, 16 << 10);
    assert_eq!(BatchLimits::for_journal(512 << 20).max_bytes, 256 << 10);
}

#[test]
fn positions_are_handed_back_with_their_lines() {
    let t0 = Instant::now();
    let mut batcher = Batcher::new(limits());
    // Nothing pending: a position may be saved at once.
    let mark = Mark {
        file: 0,
        position: at(A, 10),
    };
    assert_eq!(batcher.mark(mark), Some(mark));
    batcher.push(t0, line(1), Source::File(0), Some(at(A, 17)));
    batcher.push(t0, line(2), Source::File(0), Some(at(A, 24)));
    batcher.push(t0, line(3), Source::Push, None);
    batcher.push(t0, line(4), Source::File(1), Some(at(B, 7)));
    // Held: a line is pending.
    assert_eq!(
        batcher.mark(Mark {
            file: 1,
            position: at(B, 9),
        }),
        None
    );
    batcher.push(t0, line(5), Source::File(0), Some(at(A, 31)));
    let Batch {
        entries,
        marks,
        n_file,
        n_push,
    } = batcher.take();
    assert_eq!((entries.len(), n_file, n_push), (5, 4, 1));
    // The last position of each run of one file's lines.
    assert_eq!(
        marks,
        [
            Mark {
                file: 0,
                position: at(A, 24)
            },
            Mark {
                file: 1,
                position: at(B, 9)
            },
            Mark {
                file: 0,
                position: at(A, 31)
            },
        ]
    );
}

// ---- Checkpoints ------------------------------------------------------------------------------

#[test]
fn positions_are_saved_and_loaded_for_configured_files_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("log-positions.json");
    let (api, worker) = (PathBuf::from("/var/log/api.log"), PathBuf::from("/w.log"));
    let (empty, problem) = Checkpoints::load(&path, std::slice::from_ref(&api));
    assert_eq!(
        (empty.get(&api), problem),
        (None, None),
        "no file: no positions"
    );

    let mut checkpoints = Checkpoints::new(path.clone());
    assert!(checkpoints.set(&api, at(A, 5)));
    assert!(!checkpoints.set(&api, at(A, 5)), "unchanged");
    assert!(checkpoints.set(&api, at(A, 9)));
    assert!(checkpoints.set(&worker, at(B, 1)));
    checkpoints.save().expect("saves");
    assert!(!dir.path().join("log-positions.json.tmp").exists());

    let (loaded, problem) = Checkpoints::load(&path, &[api.clone(), worker.clone()]);
    assert_eq!((loaded, problem), (checkpoints, None));
    let (loaded, _) = Checkpoints::load(&path, std::slice::from_ref(&api));
    assert_eq!(
        (loaded.get(&api), loaded.get(&worker)),
        (Some(at(A, 9)), None)
    );

    for bad in ["{", "{\"version\":2,\"files\":[]}", "[]"] {
        std::fs::write(&path, bad).expect("writes");
        let (loaded, problem) = Checkpoints::load(&path, std::slice::from_ref(&api));
        assert_eq!(loaded.get(&api), None);
        assert!(problem.is_some(), "{bad}: a problem is reported");
    }
}

// ---- Tailing real files -----------------------------------------------------------------------

fn spec(path: &Path, start_at: StartAt) -> LogFileSpec {
    LogFileSpec {
        path: path.to_owned(),
        service: "app".into(),
        format: LogFormat::Plain,
        start_at,
    }
}

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opens")
        .write_all(text.as_bytes())
        .expect("writes");
}

/// Polls `tail` once: its messages, and `last` moved to where it got to.
fn poll(tail: &mut FileTail, last: &mut Option<Position>) -> Vec<String> {
    let mut buf = Vec::new();
    let chunk = tail.poll(READ_MS, &mut buf);
    assert!(chunk.error.is_none(), "{:?}", chunk.error);
    assert_eq!(chunk.entries.len(), chunk.ends.len());
    if let Some(end) = chunk.end.or(chunk.ends.last().copied()) {
        *last = Some(end);
    }
    messages(&chunk)
}

fn messages(chunk: &Chunk) -> Vec<String> {
    chunk.entries.iter().map(|e| e.message.clone()).collect()
}

/// Rename rotation (with a late write to the old file), copytruncate, a restart from the saved
/// position, and a rotation while stopped: every line exactly once, in order.
#[test]
fn tailing_follows_rotation_and_resumes_from_the_saved_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.log");
    append(&path, "one\ntwo\n");
    let mut last = None;
    let mut tail = FileTail::new(spec(&path, StartAt::Beginning), None);
    assert_eq!(poll(&mut tail, &mut last), ["one", "two"]);
    let id = last.expect("a position").id;
    assert_eq!(last, Some(at(id, 8)));

    // A line is taken once its newline is there.
    append(&path, "thr");
    assert!(poll(&mut tail, &mut last).is_empty());
    assert_eq!(
        last,
        Some(at(id, 8)),
        "the position stays at the line's start"
    );
    append(&path, "ee\n\n");
    assert_eq!(
        poll(&mut tail, &mut last),
        ["three"],
        "blank lines are skipped"
    );

    // Rename rotation: the old file's last lines first (one written after the rename, one without
    // a newline), then the new file from its start.
    std::fs::rename(&path, dir.path().join("app.log.1")).expect("renames");
    append(&dir.path().join("app.log.1"), "four\nfour and a half");
    append(&path, "five\n");
    assert_eq!(
        poll(&mut tail, &mut last),
        ["four", "four and a half", "five"]
    );
    let new_id = last.expect("a position").id;
    assert_ne!(new_id, id);
    assert_eq!(last, Some(at(new_id, 5)));

    // copytruncate: copied away, truncated, written again.
    std::fs::copy(&path, dir.path().join("app.log.2")).expect("copies");
    OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("opens")
        .set_len(0)
        .expect("truncates");
    append(&path, "six\n");
    assert_eq!(poll(&mut tail, &mut last), ["six"]);
    assert!(poll(&mut tail, &mut last).is_empty());

    // A restart resumes at the saved position.
    append(&path, "seven\n");
    let mut tail = FileTail::new(spec(&path, StartAt::End), last);
    assert_eq!(poll(&mut tail, &mut last), ["seven"]);

    // Rotated while the agent was stopped: the old file (found by its inode) from the saved
    // position, then the new one.
    append(&path, "eight\n");
    std::fs::rename(&path, dir.path().join("app.log.3")).expect("renames");
    append(&path, "nine\n");
    let mut tail = FileTail::new(spec(&path, StartAt::End), last);
    assert_eq!(poll(&mut tail, &mut last), ["eight", "nine"]);
    assert!(poll(&mut tail, &mut last).is_empty());
}

#[test]
fn start_at_applies_to_files_there_at_startup_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = dir.path().join("old.log");
    append(&old, "before the agent\n");
    let mut last = None;
    let mut tail = FileTail::new(spec(&old, StartAt::End), None);
    assert!(poll(&mut tail, &mut last).is_empty());
    assert_eq!(
        last.map(|p| p.offset),
        Some(17),
        "the end is a position to save"
    );
    append(&old, "after\n");
    assert_eq!(poll(&mut tail, &mut last), ["after"]);

    // Not there at startup: when it appears, all of it is new.
    let new = dir.path().join("new.log");
    let mut last = None;
    let mut tail = FileTail::new(spec(&new, StartAt::End), None);
    assert!(poll(&mut tail, &mut last).is_empty());
    assert_eq!(last, None);
    append(&new, "first\nsecond\n");
    assert_eq!(poll(&mut tail, &mut last), ["first", "second"]);

    // Deleted and recreated.
    std::fs::remove_file(&new).expect("removes");
    assert!(poll(&mut tail, &mut last).is_empty());
    append(&new, "third\n");
    assert_eq!(poll(&mut tail, &mut last), ["third"]);
}

#[test]
fn long_lines_are_truncated_and_reads_are_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.log");
    let long = "é".repeat(MAX_LINE_BYTES); // two bytes each
    append(&path, &format!("{long}\nshort\n"));
    let mut tail = FileTail::new(spec(&path, StartAt::Beginning), None);
    let mut buf = Vec::new();
    let mut chunks = Vec::new();
    loop {
        let chunk = tail.poll(READ_MS, &mut buf);
        let more = chunk.more;
        chunks.push(chunk);
        if !more {
            break;
        }
    }
    let entries: Vec<&LogEntry> = chunks.iter().flat_map(|c| &c.entries).collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].message.len(), MAX_LINE_BYTES);
    assert!(entries[0].message.chars().all(|c| c == 'é'));
    assert_eq!(entries[1].message, "short");
    assert_eq!(chunks.iter().map(|c| c.n_truncated).sum::<u64>(), 1);
    // 2 x 64 KiB of é: more than one poll's budget.
    assert!(chunks.len() > 1 && chunks.len() <= 2 * MAX_LINE_BYTES / READ_BUDGET + 2);
    let end = chunks.iter().rev().find_map(|c| c.end).expect("position");
    assert_eq!(end.offset, (2 * MAX_LINE_BYTES + 7) as u64);

    // Many lines: the budget ends a poll (and says so) mid-file, at a line boundary.
    let many = dir.path().join("many.log");
    let lines: String = (0..20_000).map(|n| format!("line {n:05}\n")).collect();
    append(&many, &lines);
    let mut tail = FileTail::new(spec(&many, StartAt::Beginning), None);
    let first = tail.poll(READ_MS, &mut buf);
    assert!(first.more);
    assert_eq!(first.entries.len(), READ_BUDGET / 11);
    let mut n_lines = first.entries.len();
    loop {
        let chunk = tail.poll(READ_MS, &mut buf);
        n_lines += chunk.entries.len();
        if !chunk.more {
            break;
        }
    }
    assert_eq!(n_lines, 20_000);
}

#[test]
fn unreadable_paths_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut tail = FileTail::new(spec(dir.path(), StartAt::Beginning), None);
    let chunk = tail.poll(READ_MS, &mut Vec::new());
    assert!(chunk.error.is_some(), "a directory is not a log file");
    assert!(chunk.is_empty());
}

// ---- The pipeline: tailer, batcher, journal, positions ------------------------------------------

struct Pipeline {
    journal: Arc<MemoryJournal>,
    monitoring: watch::Sender<MonitoringState>,
    logs: super::Logs,
    shutdown: CancellationToken,
}

impl Pipeline {
    fn start(files: Vec<LogFileSpec>, positions: &Path, journal: &Arc<MemoryJournal>) -> Self {
        let sink = RecordSink::new(Arc::clone(journal) as Arc<dyn Journal>, watch::channel(0).0);
        let (monitoring, monitoring_rx) = watch::channel(MonitoringState::Running);
        let shutdown = CancellationToken::new();
        let logs = super::spawn_with(
            files,
            positions.to_owned(),
            Options::quick(),
            sink,
            monitoring_rx,
            shutdown.clone(),
        );
        Self {
            journal: Arc::clone(journal),
            monitoring,
            logs,
            shutdown,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.logs.task)
            .await
            .expect("stops promptly")
            .expect("did not panic");
    }
}

/// The journaled lines' messages, in journal order, and the number of records.
fn journaled(journal: &MemoryJournal) -> (Vec<String>, usize) {
    let mut messages = Vec::new();
    let mut n_records = 0;
    for entry in journal
        .read_after(0, usize::MAX, usize::MAX)
        .expect("reads")
    {
        if let Record::Logs(logs) = decode_record(&entry.record).expect("decodes") {
            n_records += 1;
            messages.extend(logs.entries.into_iter().map(|e| e.message));
        }
    }
    (messages, n_records)
}

async fn wait_for_lines(journal: &MemoryJournal, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (messages, _) = journaled(journal);
        if messages.len() >= n {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "{n} lines journaled in time; have {messages:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lines(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("line {n}")).collect()
}

fn write_lines(path: &Path, range: std::ops::RangeInclusive<u32>) {
    let text: String = range.map(|n| format!("line {n}\n")).collect();
    append(path, &text);
}

/// Through the real tasks: rotation, copytruncate, pause, a clean restart (exactly once), then a
/// crash (abort, so the last positions may be unsaved) and a restart: nothing lost.
#[tokio::test]
async fn every_line_is_journaled_once_across_rotation_pause_and_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.log");
    let positions = dir.path().join("log-positions.json");
    let journal = Arc::new(MemoryJournal::new(64 << 20));
    let files = vec![spec(&path, StartAt::Beginning)];
    write_lines(&path, 1..=3);

    let pipeline = Pipeline::start(files.clone(), &positions, &journal);
    assert_eq!(wait_for_lines(&journal, 3).await, lines(1..=3));
    let (_, n_records) = journaled(&journal);
    assert_eq!(n_records, 1, "lines are batched");

    std::fs::rename(&path, dir.path().join("app.log.1")).expect("renames");
    write_lines(&path, 4..=5);
    assert_eq!(wait_for_lines(&journal, 5).await, lines(1..=5));

    std::fs::copy(&path, dir.path().join("app.log.2")).expect("copies");
    OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("opens")
        .set_len(0)
        .expect("truncates");
    write_lines(&path, 6..=6);
    assert_eq!(wait_for_lines(&journal, 6).await, lines(1..=6));

    // Paused: nothing is read; on resume, what was written meanwhile is.
    pipeline.monitoring.send_replace(MonitoringState::Paused);
    tokio::time::sleep(Duration::from_millis(50)).await;
    write_lines(&path, 7..=7);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(journaled(&journal).0.len(), 6, "not read while paused");
    pipeline.monitoring.send_replace(MonitoringState::Running);
    assert_eq!(wait_for_lines(&journal, 7).await, lines(1..=7));

    let mut pipeline = pipeline;
    let mut samples = Vec::new();
    pipeline
        .logs
        .collector
        .collect(&mut samples)
        .expect("collects");
    let file_lines = samples
        .iter()
        .find(|s| s.name == "aisemble_agent_log_lines_total" && s.labels[0].value == "file")
        .map(|s| s.value);
    assert_eq!(file_lines, Some(7.0));
    pipeline.stop().await;
    assert!(positions.exists(), "positions saved on stop");

    // A clean restart: only what is new.
    write_lines(&path, 8..=9);
    let pipeline = Pipeline::start(files.clone(), &positions, &journal);
    assert_eq!(wait_for_lines(&journal, 9).await, lines(1..=9));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(journaled(&pipeline.journal).0, lines(1..=9), "exactly once");

    // A crash right after journaling: the restart may read the last lines again, loses none.
    write_lines(&path, 10..=10);
    wait_for_lines(&journal, 10).await;
    pipeline.logs.task.abort();
    let _ = pipeline.logs.task.await;
    write_lines(&path, 11..=11);
    let pipeline = Pipeline::start(files, &positions, &journal);
    wait_for_lines(&journal, 11).await;
    pipeline.stop().await;
    let (messages, _) = journaled(&journal);
    for line in lines(1..=11) {
        assert!(messages.contains(&line), "{line} lost: {messages:?}");
    }
}

// ---- Config -----------------------------------------------------------------------------------

fn config(path: &str, service: &str) -> LogFileConfig {
    LogFileConfig {
        path: path.into(),
        service: service.into(),
        ..LogFileConfig::default()
    }
}

#[track_caller]
fn check_error(entries: &[LogFileConfig], expected: &str) {
    let error = LogFileSpec::resolve_all(Path::new("/etc/aisemble/agent.toml"), entries)
        .expect_err("refused");
    assert_eq!(error.to_string(), expected);
}

#[test]
fn logs_entries_are_checked() {
    let specs = LogFileSpec::resolve_all(
        Path::new("/etc/aisemble/agent.toml"),
        &[
            config("/var/log/api.log", " api "),
            config("worker.log", "worker"),
        ],
    )
    .expect("valid");
    assert_eq!(
        specs,
        [
            LogFileSpec {
                path: "/var/log/api.log".into(),
                service: "api".into(),
                format: LogFormat::Plain,
                start_at: StartAt::End,
            },
            LogFileSpec {
                path: "/etc/aisemble/worker.log".into(),
                service: "worker".into(),
                format: LogFormat::Plain,
                start_at: StartAt::End,
            },
        ]
    );
    check_error(
        &[config("", "api")],
        "/etc/aisemble/agent.toml: key `logs[0].path`: is empty; name the file, like path = \
         \"/var/log/api.log\"",
    );
    check_error(
        &[
            config("/var/log/a.log", "a"),
            config("/var/log/*.log", "api"),
        ],
        "/etc/aisemble/agent.toml: key `logs[1].path`: \"/var/log/*.log\" is a pattern; patterns \
         are not supported; add one [[logs]] entry per file",
    );
    check_error(
        &[config("/tmp", "api")],
        "/etc/aisemble/agent.toml: key `logs[0].path`: /tmp is a directory; name a file in it \
         (one [[logs]] entry per file)",
    );
    check_error(
        &[config("/var/log/a.log", "  ")],
        "/etc/aisemble/agent.toml: key `logs[0].service`: is empty; name the service the file \
         belongs to, like service = \"api\"",
    );
    check_error(
        &[config("/var/log/a.log", &"s".repeat(129))],
        "/etc/aisemble/agent.toml: key `logs[0].service`: is longer than 128 bytes (129); use a \
         shorter name",
    );
    check_error(
        &[config("/var/log/a.log", "a"), config("/var/log/a.log", "b")],
        "/etc/aisemble/agent.toml: key `logs[1].path`: /var/log/a.log is already tailed by \
         logs[0]; keep one [[logs]] entry per file (two would journal every line twice)",
    );
}

/// The commented-out `[[logs]]` examples of `agent.example.toml`, uncommented, are valid.
#[test]
fn the_example_entries_are_valid() {
    let text = include_str!("../../agent.example.toml");
    let start = text
        .find("# [[logs]]")
        .expect("the example documents [[logs]]");
    let uncommented: String = text[start..]
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|line| line.starts_with('[') || line.split_once(" = ").is_some())
        .map(|line| format!("{line}\n"))
        .collect();
    let path = Path::new("/etc/aisemble/agent.toml");
    let file: aisemble_shared::config::AgentConfigFile = aisemble_shared::config::parse_toml(
        path,
        &format!("[control_plane]\naddress = \"cp:7443\"\n{uncommented}"),
        "example",
    )
    .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    let specs = LogFileSpec::resolve_all(path, &file.logs).expect("valid entries");
    let formats: Vec<LogFormat> = specs.iter().map(|s| s.format).collect();
    assert_eq!(formats, [LogFormat::Json, LogFormat::Plain]);
    assert_eq!(specs[0].start_at, StartAt::Beginning);
}
