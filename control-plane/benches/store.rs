//! Reads from a store that has run for a day: 1,000 cost counters (one per host) sampled every
//! 10 s from midnight to 23:59:50 UTC yesterday, checkpointed every minute as the background rounds
//! do (1,440 chunk groups per series). Prints, over 20 runs each (p50, p99):
//! - a 5-minute window at the day's end across all 1,000 series (what `rate(…[5m])` in a rule or a
//!   dashboard reads), with the chunk groups it took;
//! - the whole day across all series (what every `/ops/status` refresh read for the month's cost
//!   before it was kept incrementally);
//! - the month's usage: its first read, and a read after one more sample per series.
//!
//! `cargo bench -p aisemble-control-plane --bench store`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use aisemble_control_plane::{
    store::{Store, StoreOptions, now_ms},
    usage::MonthUsage,
};
use aisemble_shared::metrics as names;
use promql_parser::label::{MatchOp, Matcher};

const HOSTS: usize = 1_000;
const STEP_MS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;
const RUNS: usize = 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("store"),
        StoreOptions {
            checkpoint_interval: Duration::MAX,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let day_start = (now_ms() / DAY_MS - 1) * DAY_MS;
    let row = |host: usize, value: f64| {
        (
            vec![
                (
                    "__name__".to_owned(),
                    names::MODEL_COST_USD_TOTAL.to_owned(),
                ),
                ("host".to_owned(), format!("host-{host:04}")),
                ("provider".to_owned(), format!("provider-{}", host % 3)),
                ("model".to_owned(), format!("model-{}", host % 7)),
            ],
            value,
        )
    };
    let write = |t: i64| {
        let rows: Vec<_> = (0..HOSTS)
            .map(|host| row(host, (t - day_start) as f64 / 1e6 + host as f64))
            .collect();
        let store = store.clone();
        async move {
            store
                .write_local(t, &rows)
                .await
                .unwrap()
                .wait()
                .await
                .unwrap()
        }
    };
    let loading = Instant::now();
    let end = day_start + DAY_MS - STEP_MS;
    runtime.block_on(async {
        let mut t = day_start;
        while t <= end {
            write(t).await;
            if (t + STEP_MS) % 60_000 == 0 {
                store.checkpoint_now().unwrap();
            }
            t += STEP_MS;
        }
        store.checkpoint_now().unwrap();
    });
    println!(
        "loaded {HOSTS} series × {} samples, checkpointed each minute, in {:.0} s",
        DAY_MS / STEP_MS,
        loading.elapsed().as_secs_f64()
    );

    let matchers = [Matcher::new(
        MatchOp::Equal,
        "__name__",
        names::MODEL_COST_USD_TOTAL,
    )];
    let groups = || store.counters().chunk_groups_read.load(Ordering::Relaxed);
    let before = groups();
    let window = time(|| {
        let selected = store.select(&matchers, end - 300_000, end).unwrap();
        assert_eq!(selected.len(), HOSTS);
    });
    report("5-minute window, 1,000 series", &window);
    println!(
        "  chunk groups read per series: {:.1}",
        (groups() - before) as f64 / (RUNS * HOSTS) as f64
    );
    let day = time(|| {
        let selected = store.select(&matchers, day_start, end).unwrap();
        assert_eq!(selected.len(), HOSTS);
    });
    report("whole day, 1,000 series", &day);

    let mut first = Vec::new();
    for _ in 0..RUNS {
        let usage = MonthUsage::default();
        let started = Instant::now();
        usage.read(&store, None, end).unwrap();
        first.push(started.elapsed());
    }
    report("month usage, first read (a day of samples)", &first);
    let usage = MonthUsage::default();
    usage.read(&store, None, end).unwrap();
    let mut next = Vec::new();
    let mut t = end;
    for _ in 0..RUNS {
        t += STEP_MS;
        runtime.block_on(write(t));
        let started = Instant::now();
        usage.read(&store, None, t).unwrap();
        next.push(started.elapsed());
    }
    report("month usage, each later read", &next);
    store.shutdown();
}

fn time(mut f: impl FnMut()) -> Vec<Duration> {
    f();
    (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect()
}

fn report(what: &str, times: &[Duration]) {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    println!("{what}: p50 {:.2} ms, p99 {:.2} ms", at(0.5), at(0.99));
}
