use std::time::Duration;

use aisemble_shared::{
    codec,
    wire::{Compression, JournalEntry, MetricRecord, Record, Sample},
};
use promql_parser::label::{MatchOp, Matcher};

use super::*;

const T0: i64 = 1_763_800_000_000;

fn options() -> StoreOptions {
    StoreOptions {
        checkpoint_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

fn payload(records: &[(u64, i64, f64)]) -> Vec<u8> {
    let entries: Vec<JournalEntry> = records
        .iter()
        .map(|(seq, t, v)| JournalEntry {
            seq: *seq,
            record: codec::encode_record(&Record::Metrics(MetricRecord {
                timestamp_ms: *t,
                samples: vec![
                    Sample::new("cpu", *v),
                    Sample::new("disk", *v * 2.0).with_label("mount", "/"),
                ],
            }))
            .expect("encodes"),
        })
        .collect();
    codec::encode_entries(&entries, Compression::Zstd).expect("encodes")
}

/// Commits records `seqs` of `agent` (one sample pair per record, at T0 + seq seconds).
async fn commit(store: &Store, agent: &str, seqs: std::ops::RangeInclusive<u64>) -> CommitOutcome {
    let records: Vec<(u64, i64, f64)> = seqs
        .clone()
        .map(|s| (s, T0 + s as i64 * 1000, s as f64))
        .collect();
    let payload = payload(&records);
    let mut resolver = store.resolver(agent);
    let decoded = resolver
        .decode_batch(&payload, Compression::Zstd, *seqs.start(), *seqs.end(), 0)
        .expect("decodes");
    let batch = CommitBatch {
        wal: WalEntry {
            agent: agent.to_owned(),
            journal_id: 1,
            first_new_seq: *seqs.start(),
            last_seq: *seqs.end(),
            compression: Compression::Zstd,
            payload,
        },
        samples: decoded.samples,
        events: decoded.events,
        logs: Vec::new(),
    };
    store
        .submit(batch)
        .await
        .expect("queued")
        .wait()
        .await
        .expect("committed")
}

fn cpu_of(store: &Store, host: &str) -> Vec<(i64, f64)> {
    let matchers = [
        Matcher::new(MatchOp::Equal, "__name__", "cpu"),
        Matcher::new(MatchOp::Equal, "host", host),
    ];
    let mut found = store
        .select(&matchers, i64::MIN, i64::MAX)
        .expect("selects");
    assert!(found.len() <= 1);
    found.pop().map(|s| s.samples).unwrap_or_default()
}

fn expected(seqs: std::ops::RangeInclusive<u64>) -> Vec<(i64, f64)> {
    seqs.map(|s| (T0 + s as i64 * 1000, s as f64)).collect()
}

async fn close(store: Store) {
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .expect("shutdown");
}

#[tokio::test]
async fn committed_batches_are_queryable_and_watermarked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), options()).expect("opens");
    let outcome = commit(&store, "a", 1..=10).await;
    assert_eq!(
        outcome,
        CommitOutcome {
            appended: 20,
            out_of_order: 0,
            duplicates: 0
        }
    );
    commit(&store, "b", 1..=3).await;
    assert_eq!(cpu_of(&store, "a"), expected(1..=10));
    assert_eq!(cpu_of(&store, "b"), expected(1..=3));
    assert_eq!(
        store.watermark("a"),
        Some(Watermark {
            journal_id: 1,
            upto: 10
        })
    );
    assert_eq!(store.series_count(), 4);
    assert_eq!(store.label_values("host"), vec!["a", "b"]);
    let disk = store
        .select(
            &[Matcher::new(MatchOp::Equal, "mount", "/")],
            T0 + 2000,
            T0 + 4000,
        )
        .expect("selects");
    assert_eq!(disk.len(), 2);
    assert_eq!(
        disk.iter()
            .find(|s| s.labels.get("host") == Some("a"))
            .expect("a")
            .samples,
        vec![(T0 + 2000, 4.0), (T0 + 3000, 6.0), (T0 + 4000, 8.0)]
    );
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_checkpoint_replays_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), options()).expect("opens");
        commit(&store, "a", 1..=200).await;
        // No checkpoint: everything is only in the WAL. Dropping without shutdown is a crash
        // as far as the store's files go (sled recovers what was flushed).
        drop(store);
    }
    let store = reopen(dir.path()).await;
    assert_eq!(cpu_of(&store, "a"), expected(1..=200));
    assert_eq!(store.watermark("a").map(|w| w.upto), Some(200));
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_persist_chunks_and_truncate_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), options()).expect("opens");
        commit(&store, "a", 1..=300).await;
        store.checkpoint_now().expect("checkpoint");
        commit(&store, "a", 301..=350).await;
        assert_eq!(cpu_of(&store, "a"), expected(1..=350));
        drop(store);
    }
    let store = reopen(dir.path()).await;
    assert_eq!(
        cpu_of(&store, "a"),
        expected(1..=350),
        "chunks + replayed WAL, no duplicates"
    );
    store.checkpoint_now().expect("checkpoint");
    commit(&store, "a", 351..=400).await;
    assert_eq!(cpu_of(&store, "a"), expected(1..=400));
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path(),
        StoreOptions {
            retention: Duration::from_secs(86_400),
            ..options()
        },
    )
    .expect("opens");
    commit(&store, "a", 1..=5).await;
    store.checkpoint_now().expect("checkpoint");
    assert_eq!(
        store
            .apply_retention(T0 + 86_400_000 / 2)
            .expect("retention"),
        0
    );
    assert_eq!(
        store
            .apply_retention(T0 + 3 * 86_400_000)
            .expect("retention"),
        1
    );
    // The head still holds the open chunk; the persisted copy is gone.
    store.checkpoint_now().expect("checkpoint");
    close(store).await;
}

/// Samples of `cpu` in `[mint, maxt]`, and how many persisted chunk groups the read took.
fn cpu_between(store: &Store, mint: i64, maxt: i64) -> (Vec<(i64, f64)>, u64) {
    let groups = || store.counters().chunk_groups_read.load(Ordering::Relaxed);
    let before = groups();
    let matchers = [Matcher::new(MatchOp::Equal, "__name__", "cpu")];
    let mut found = store.select(&matchers, mint, maxt).expect("selects");
    assert!(found.len() <= 1);
    let samples = found.pop().map(|s| s.samples).unwrap_or_default();
    (samples, groups() - before)
}

/// A checkpoint a minute, as the background rounds do: a day holds over a thousand groups per
/// series, and a window near the present reads those of its own segment onwards, not the day's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_reads_the_groups_of_its_segment_not_of_its_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), options()).expect("opens");
    for minute in 0..120 {
        commit(&store, "a", minute * 60 + 1..=minute * 60 + 60).await;
        store.checkpoint_now().expect("checkpoint");
    }
    let (all, n_all) = cpu_between(&store, i64::MIN, i64::MAX);
    assert_eq!(all, expected(1..=7200));
    assert!(n_all >= 120, "one group per checkpoint at least: {n_all}");
    for (from, to) in [(6901, 7200), (3000, 3299), (1, 1), (599, 601), (7200, 7200)] {
        let (samples, n_read) = cpu_between(&store, at_seq(from), at_seq(to));
        assert_eq!(samples, expected(from as u64..=to as u64), "[{from}, {to}]");
        // At most a segment (10 groups) before the window, the window's (5), and the splits.
        assert!(
            n_read <= 20,
            "[{from}, {to}] read {n_read} of {n_all} groups"
        );
    }
    close(store).await;
}

/// Days written before groups were cut at segment boundaries may hold a group that spans
/// several: a store without the marker reads every day it has, today's included, from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_written_before_segmenting_are_read_from_their_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), options()).expect("opens");
    commit(&store, "a", 1..=5).await;
    store.checkpoint_now().expect("checkpoint");
    // Yesterday, one group of an hour, as the day-only grouping wrote them.
    let start = (day_of(T0) - 1) * 86_400_000 + 3 * 3_600_000;
    let old: Vec<(i64, f64)> = (0..60).map(|i| (start + i * 60_000, i as f64)).collect();
    let mut chunk = chunk::XorAppender::new();
    for (t, v) in &old {
        chunk.append(*t, *v).expect("in order");
    }
    let id = {
        let index = read(&store.inner.index);
        index.select(&[Matcher::new(MatchOp::Equal, "__name__", "cpu")])[0]
    };
    store
        .inner
        .day_tree(day_of(start))
        .expect("day tree")
        .insert(
            chunk_key(id.0, start),
            persist::chunk_group_value(old[59].0, std::iter::once(chunk.bytes())),
        )
        .expect("inserts");
    let window = (start + 40 * 60_000, start + 45 * 60_000);
    let in_window: Vec<(i64, f64)> = old[40..=45].to_vec();
    // Such a group breaks the segmented days' invariant: read from the segment, it is missed.
    assert_eq!(cpu_between(&store, window.0, window.1).0, Vec::new());

    store
        .inner
        .meta
        .remove(SEGMENTED_FROM_DAY_KEY)
        .expect("removes");
    close(store).await;
    let store = reopen(dir.path()).await;
    assert_eq!(cpu_between(&store, window.0, window.1).0, in_window);
    commit(&store, "a", 6..=10).await;
    store.checkpoint_now().expect("checkpoint");
    assert_eq!(
        cpu_between(&store, at_seq(1), at_seq(10)).0,
        expected(1..=10)
    );
    close(store).await;
    let store = reopen(dir.path()).await;
    assert_eq!(
        cpu_between(&store, window.0, window.1).0,
        in_window,
        "the marker written at the upgrade stays"
    );
    close(store).await;
}

fn at_seq(seq: i64) -> i64 {
    T0 + seq * 1000
}

/// `select_latest` gives what `select` gives, cut to each series' last sample: from memory, from
/// persisted chunks after a restart (nothing in memory yet), and for ranges in the past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_latest_is_the_last_sample_select_finds() {
    let matchers = [Matcher::new(MatchOp::Equal, "__name__", "cpu")];
    let ranges = [
        (i64::MIN, i64::MAX),
        (T0 + 100_000, T0 + 150_500),
        (T0 + 5_000, T0 + 5_000),
        (T0 + 5_500, T0 + 5_900),
        (T0 + 290_000, T0 + 400_000),
        (i64::MIN, T0),
    ];
    let agree = |store: &Store| {
        let mut found = 0;
        for (mint, maxt) in ranges {
            let latest = store.select_latest(&matchers, mint, maxt).expect("selects");
            let mut expected = store.select(&matchers, mint, maxt).expect("selects");
            for series in &mut expected {
                series.samples = series.samples.last().copied().into_iter().collect();
            }
            assert_eq!(latest, expected, "[{mint}, {maxt}]");
            found += latest.len();
        }
        found
    };
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), options()).expect("opens");
        commit(&store, "a", 1..=300).await;
        commit(&store, "b", 1..=120).await;
        assert_eq!(agree(&store), 7);
        store.checkpoint_now().expect("checkpoint");
        assert_eq!(agree(&store), 7);
        close(store).await;
    }
    let store = reopen(dir.path()).await;
    assert_eq!(agree(&store), 7, "after a restart, from persisted chunks");
    commit(&store, "a", 301..=310).await;
    assert_eq!(agree(&store), 7);
    let latest = store
        .select_latest(&matchers, i64::MIN, i64::MAX)
        .expect("selects");
    assert_eq!(latest[0].samples, vec![(T0 + 310_000, 310.0)]);
    close(store).await;
}

async fn reopen(path: &std::path::Path) -> Store {
    // The old store's threads release the database asynchronously after the last handle drops.
    for _ in 0..100 {
        match Store::open(path, options()) {
            Ok(store) => return store,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("store did not reopen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_rounds_write_slices_and_truncate_only_when_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // No background rounds: this test steps the checkpoint itself.
        let manual = StoreOptions {
            checkpoint_interval: Duration::MAX,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), manual).expect("opens");
        for agent in ["a", "b", "c"] {
            commit(&store, agent, 1..=50).await;
        }
        let wal_entries = || store.inner.wal.scan_prefix(b"w").count();
        assert_eq!(wal_entries(), 3);
        // Six series, three ticks per round: two slices leave the round open.
        *lock(&store.inner.round) =
            Round::starting(store.inner.applied_wal_seq.load(Ordering::Acquire));
        store.inner.checkpoint_step(Some(3)).expect("slice 1");
        store.inner.checkpoint_step(Some(3)).expect("slice 2");
        assert_eq!(
            wal_entries(),
            3,
            "the WAL is kept until the round covers every series"
        );
        assert_eq!(store.inner.meta.get(CHECKPOINT_KEY).expect("meta"), None);
        // Data is whole while half of it is in chunk groups and half in the head.
        assert_eq!(cpu_of(&store, "a"), expected(1..=50));
        assert_eq!(cpu_of(&store, "c"), expected(1..=50));
        store.inner.checkpoint_step(Some(3)).expect("slice 3");
        assert_eq!(wal_entries(), 0, "a complete round truncates the WAL");
        commit(&store, "a", 51..=60).await;
        drop(store);
    }
    let store = reopen(dir.path()).await;
    assert_eq!(cpu_of(&store, "a"), expected(1..=60));
    assert_eq!(cpu_of(&store, "b"), expected(1..=50));
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_once_and_survive_a_crash() {
    use aisemble_shared::wire::{CheckStateChange, Event, EventRecord};
    let dir = tempfile::tempdir().expect("tempdir");
    let down = Event::CheckStateChanged(CheckStateChange {
        check: "db".into(),
        kind: "postgres".into(),
        was_up: Some(true),
        up: false,
        consecutive_failures: 1,
        error: Some("connection refused".into()),
        labels: vec![],
    });
    let entries = vec![
        JournalEntry {
            seq: 1,
            record: codec::encode_record(&Record::Metrics(MetricRecord {
                timestamp_ms: T0,
                samples: vec![Sample::new("cpu", 1.0)],
            }))
            .expect("encodes"),
        },
        JournalEntry {
            seq: 2,
            record: codec::encode_record(&Record::Events(EventRecord {
                timestamp_ms: T0 + 1,
                events: vec![down.clone()],
            }))
            .expect("encodes"),
        },
    ];
    let payload = codec::encode_entries(&entries, Compression::Zstd).expect("encodes");
    {
        let store = Store::open(dir.path(), options()).expect("opens");
        let decoded = store
            .resolver("a")
            .decode_batch(&payload, Compression::Zstd, 1, 2, 0)
            .expect("decodes");
        assert_eq!(decoded.events.len(), 1);
        let batch = CommitBatch {
            wal: WalEntry {
                agent: "a".into(),
                journal_id: 1,
                first_new_seq: 1,
                last_seq: 2,
                compression: Compression::Zstd,
                payload: payload.clone(),
            },
            samples: decoded.samples,
            events: decoded.events,
            logs: Vec::new(),
        };
        store
            .submit(batch)
            .await
            .expect("queued")
            .wait()
            .await
            .expect("committed");
        let events = store.events(Some("a"), 10);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, down);
        assert_eq!(events[0].timestamp_ms, T0 + 1);
        // Dropped without shutdown: the events are re-applied from the WAL, not duplicated.
        drop(store);
    }
    let store = reopen(dir.path()).await;
    let events = store.events(None, 10);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].agent, "a");
    close(store).await;
}

/// A series ended by a staleness marker has no latest value (status views, `/metrics`), while
/// `select` still returns the marker for PromQL's staleness handling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_series_has_no_latest_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), options()).expect("opens");
    let cpu = |host: &str| {
        vec![
            ("__name__".to_owned(), "cpu".to_owned()),
            ("host".to_owned(), host.to_owned()),
        ]
    };
    let write = |t: i64, rows: Vec<(Vec<(String, String)>, f64)>| {
        let store = store.clone();
        async move {
            store
                .write_local(t, &rows)
                .await
                .expect("queued")
                .wait()
                .await
                .expect("committed");
        }
    };
    write(T0, vec![(cpu("a"), 1.0), (cpu("b"), 2.0)]).await;
    write(T0 + 1000, vec![(cpu("a"), STALE_NAN), (cpu("b"), f64::NAN)]).await;
    let matchers = [Matcher::new(MatchOp::Equal, "__name__", "cpu")];
    let latest = store.latest_matching(&matchers, T0);
    assert_eq!(latest.len(), 1, "{latest:?}");
    assert_eq!(latest[0].0.get("host"), Some("b"));
    assert!(latest[0].2.is_nan(), "a real NaN is a value");
    assert_eq!(store.latest_values(&matchers, T0).len(), 1);
    assert_eq!(store.latest(T0).len(), 1);
    let selected = store.select(&matchers, T0, T0 + 1000).expect("selects");
    assert!(selected.iter().any(|s| s.labels.get("host") == Some("a")
        && s.samples.last().is_some_and(|(_, v)| is_stale_marker(*v))));
    close(store).await;
}
