use std::collections::BTreeSet;

use super::*;

const T0: i64 = 1_764_633_600_000; // 2025-12-02T00:00:00Z, a day boundary

fn open() -> (tempfile::TempDir, sled::Db, LogStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new().path(dir.path()).open().expect("sled");
    let store = LogStore::open(db.clone()).expect("open");
    (dir, db, store)
}

fn line(timestamp_ms: i64, level: LogLevel, service: &str, message: &str) -> LogEntry {
    LogEntry {
        timestamp_ms,
        level,
        service: service.into(),
        message: message.into(),
        context: String::new(),
        trace_id: None,
        request_id: None,
    }
}

fn everything() -> LogFilter {
    LogFilter {
        start_ms: i64::MIN,
        end_ms: i64::MAX - 1,
        ..LogFilter::default()
    }
}

fn messages(store: &LogStore, filter: &LogFilter, newest_first: bool) -> Vec<String> {
    let mut out = Vec::new();
    store
        .scan(filter, newest_first, None, None, |log| {
            out.push(log.message.into_owned());
            ControlFlow::Continue(())
        })
        .expect("scan");
    out
}

fn sample() -> Vec<RecordLogs> {
    vec![
        RecordLogs {
            seq: 1,
            entries: vec![
                line(T0 - 1_000, LogLevel::Info, "api", "before midnight"),
                line(T0 + 1_000, LogLevel::Error, "api", "db timeout"),
                line(T0 + 2_000, LogLevel::Info, "web", "GET /"),
            ],
        },
        RecordLogs {
            seq: 2,
            entries: vec![
                line(T0 + 3_000, LogLevel::Critical, "web", "out of memory"),
                line(T0 + 3_600_000, LogLevel::Warn, "api", "slow query"),
            ],
        },
    ]
}

#[test]
fn lines_come_back_in_time_order_across_days_and_classes() {
    let (_dir, _db, store) = open();
    assert_eq!(store.insert("node-1", &sample()).expect("insert"), 5);
    let all = messages(&store, &everything(), false);
    assert_eq!(
        all,
        [
            "before midnight",
            "db timeout",
            "GET /",
            "out of memory",
            "slow query"
        ]
    );
    let mut newest = all.clone();
    newest.reverse();
    assert_eq!(messages(&store, &everything(), true), newest);

    let errors = LogFilter {
        levels: BTreeSet::from([LogLevel::Error, LogLevel::Critical]),
        ..everything()
    };
    assert_eq!(
        messages(&store, &errors, true),
        ["out of memory", "db timeout"]
    );
    let window = LogFilter {
        start_ms: T0 + 1_000,
        end_ms: T0 + 3_000,
        services: vec!["web".into()],
        ..everything()
    };
    assert_eq!(messages(&store, &window, false), ["GET /", "out of memory"]);
}

#[test]
fn replaying_the_same_records_stores_and_counts_nothing_twice() {
    let (dir, db, store) = open();
    store.insert("node-1", &sample()).expect("insert");
    // The same records from another agent are other lines.
    assert_eq!(store.insert("node-2", &sample()[..1]).expect("insert"), 3);
    drop(store);
    let store = LogStore::open(db).expect("reopen");
    assert_eq!(store.insert("node-1", &sample()).expect("insert"), 0);
    assert_eq!(messages(&store, &everything(), false).len(), 8);

    let hours = store.hours(T0 - 3_600_000, T0 + 7_200_000).expect("hours");
    let total: u64 = hours.iter().map(|(_, c)| c.total).sum();
    assert_eq!(total, 8);
    let first_hour = &hours.iter().find(|(h, _)| *h == T0).expect("hour").1;
    assert_eq!(first_hour.total, 5);
    assert_eq!(first_hour.errors(), 3);
    assert_eq!(first_hour.by_service.get("web"), Some(&3));
    assert_eq!(first_hour.by_host.get("node-2"), Some(&2));
    drop(dir);
}

#[test]
fn a_visitor_and_a_deadline_stop_the_scan() {
    let (_dir, _db, store) = open();
    let many = RecordLogs {
        seq: 1,
        entries: (0..10_000)
            .map(|i| line(T0 + i, LogLevel::Info, "api", "x"))
            .collect(),
    };
    store.insert("node-1", &[many]).expect("insert");
    let mut seen = 0;
    let outcome = store
        .scan(&everything(), true, None, None, |_| {
            seen += 1;
            if seen == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("scan");
    assert!(outcome.stopped && !outcome.timed_out);
    assert_eq!(seen, 3);
    let outcome = store
        .scan(&everything(), true, Some(Instant::now()), None, |_| {
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert!(outcome.timed_out);
    assert!(outcome.scanned < 10_000);
}

/// Scans in pages of `page` lines, each resuming after the line the previous one stopped on.
fn messages_in_pages(
    store: &LogStore,
    filter: &LogFilter,
    newest_first: bool,
    page: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut resume: Option<Vec<u8>> = None;
    loop {
        let mut taken = 0;
        let outcome = store
            .scan(filter, newest_first, None, resume.as_deref(), |log| {
                out.push(log.message.into_owned());
                taken += 1;
                if taken == page {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .expect("scan");
        assert!(out.len() <= 100, "the scan does not move on");
        match outcome.stopped_at {
            Some(key) => resume = Some(key),
            None => return out,
        }
    }
}

#[test]
fn a_scan_resumes_after_the_line_it_stopped_on_in_either_order() {
    let (_dir, _db, store) = open();
    store.insert("node-1", &sample()).expect("insert");
    // Another agent's lines at the same instants: keys differ only after the time.
    store.insert("node-2", &sample()).expect("insert");
    let errors = LogFilter {
        levels: BTreeSet::from([LogLevel::Error, LogLevel::Critical]),
        ..everything()
    };
    for filter in [everything(), errors] {
        for newest_first in [false, true] {
            let whole = messages(&store, &filter, newest_first);
            for page in 1..=whole.len() + 1 {
                assert_eq!(
                    messages_in_pages(&store, &filter, newest_first, page),
                    whole,
                    "pages of {page}, newest first: {newest_first}"
                );
            }
        }
    }
}

#[test]
fn cleanup_drops_whole_days_and_trims_the_cutoff_day_per_class() {
    let (_dir, _db, store) = open();
    store.insert("node-1", &sample()).expect("insert");
    // General lines before T0 + 2.5 s go; error lines before T0 + 1.5 s go.
    let report = store.cleanup(T0 + 2_500, T0 + 1_500).expect("cleanup");
    assert_eq!(report.days_dropped, 1, "{report:?}");
    assert_eq!(report.lines_removed, 2, "{report:?}");
    assert_eq!(
        messages(&store, &everything(), false),
        ["out of memory", "slow query"]
    );
    // Hours before the earlier cutoff's hour are gone; the cutoff's own hour stays.
    assert_eq!(report.hours_removed, 1);
    assert!(
        store
            .hours(T0 - 3_600_000, T0 - 1)
            .expect("hours")
            .is_empty()
    );
}

#[test]
fn extreme_timestamps_are_stored_counted_and_cleaned_without_overflow() {
    let (_dir, _db, store) = open();
    let extremes = RecordLogs {
        seq: 1,
        entries: vec![
            line(i64::MIN, LogLevel::Error, "api", "the first instant"),
            line(i64::MAX, LogLevel::Info, "api", "the last instant"),
        ],
    };
    assert_eq!(store.insert("node-1", &[extremes]).expect("insert"), 2);
    let all = LogFilter {
        start_ms: i64::MIN,
        end_ms: i64::MAX,
        ..LogFilter::default()
    };
    assert_eq!(
        messages(&store, &all, false),
        ["the first instant", "the last instant"]
    );
    let total: u64 = store
        .hours(i64::MIN, i64::MAX)
        .expect("hours")
        .iter()
        .map(|(_, c)| c.total)
        .sum();
    assert_eq!(total, 2);
    store.cleanup(i64::MAX, i64::MAX).expect("cleanup");
    assert!(messages(&store, &all, false).len() <= 1);
}
