//! One rule-evaluation cycle: 1,000 alerting rules over 10,000 series (1,000 hosts × 10
//! metrics, 5 minutes of 10-second samples each) in the real store. Prints the cycle time
//! (p50, p99, max over 20 cycles) for a quiet fleet and for an alert storm.
//!
//! `cargo bench -p aisemble-control-plane --bench rules`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aisemble_control_plane::{
    alerts::{
        group::{GroupRuntime, Overlay, eval_group},
        rules::parse_rule_file,
        state::EvalContext,
    },
    query::eval::SelectionCache,
    store::{Store, StoreOptions, now_ms},
};

const HOSTS: usize = 1_000;
const METRICS: usize = 10;
const RULES: usize = 1_000;
const STEP_MS: i64 = 10_000;
const SAMPLES: i64 = 31;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("store"),
        StoreOptions {
            checkpoint_interval: Duration::from_secs(3600),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let end = now_ms() - now_ms() % STEP_MS;
    let loading = Instant::now();
    runtime.block_on(async {
        for step in 0..SAMPLES {
            let t = end - (SAMPLES - 1 - step) * STEP_MS;
            let mut rows = Vec::with_capacity(HOSTS * METRICS);
            for host in 0..HOSTS {
                for metric in 0..METRICS {
                    let value = ((host * 7 + metric * 13 + step as usize) % 100) as f64;
                    rows.push((
                        vec![
                            ("__name__".to_owned(), format!("bench_metric_{metric}")),
                            ("host".to_owned(), format!("host-{host:04}")),
                            ("rack".to_owned(), format!("rack-{:02}", host / 100)),
                        ],
                        value,
                    ));
                }
            }
            store
                .write_local(t, &rows)
                .await
                .unwrap()
                .wait()
                .await
                .unwrap();
        }
    });
    println!(
        "loaded {} series × {SAMPLES} samples in {:.1} s",
        store.series_count(),
        loading.elapsed().as_secs_f64()
    );

    // A quiet fleet (a few dozen alerts) and an alert storm (a quarter of all series breach,
    // every alert re-templated and re-written each cycle).
    // `BENCH_SCENARIO=quiet` (or `storm`) runs one, for profiling.
    let only = std::env::var("BENCH_SCENARIO").ok();
    let wanted = |scenario: &str| only.as_deref().is_none_or(|o| o == scenario);
    if wanted("quiet") {
        evaluate_cycles(&store, end, "quiet", |_| 98);
    }
    if wanted("storm") {
        evaluate_cycles(&store, end, "storm", |n| 50 + n % 45);
    }
    store.shutdown();
}

/// Evaluates 1,000 rules 21 times (the first is warm-up) and prints the cycle times.
fn evaluate_cycles(store: &Store, end: i64, scenario: &str, threshold_of: impl Fn(usize) -> usize) {
    // Rules: each metric × rack pair gets ten rules of five shapes; every rule reads 100 series
    // (one rack) or, for the fleet-wide aggregations, 1,000.
    let mut text = String::from("groups:\n");
    for g in 0..10 {
        text.push_str(&format!("  - name: group-{g}\n    rules:\n"));
        for i in 0..RULES / 10 {
            let n = g * (RULES / 10) + i;
            let metric = n % METRICS;
            let rack = (n / METRICS) % 10;
            let threshold = threshold_of(n);
            let expr = match n % 5 {
                0 => format!("bench_metric_{metric}{{rack=\"rack-{rack:02}\"}} > {threshold}"),
                1 => format!(
                    "avg_over_time(bench_metric_{metric}{{rack=\"rack-{rack:02}\"}}[5m]) > {threshold}"
                ),
                2 => format!(
                    "max_over_time(bench_metric_{metric}{{rack=\"rack-{rack:02}\"}}[2m]) > {threshold}"
                ),
                3 => format!(
                    "sum by (rack) (bench_metric_{metric}) > {}",
                    threshold * 100
                ),
                _ => format!(
                    "rate(bench_metric_{metric}{{rack=\"rack-{rack:02}\"}}[5m]) > 0.{threshold}"
                ),
            };
            text.push_str(&format!(
                "      - alert: Bench{n}\n        expr: '{expr}'\n        for: 1m\n        labels:\n          severity: warning\n        annotations:\n          summary: '{{{{ $labels.host }}}} at {{{{ $value }}}}'\n"
            ));
        }
    }
    let groups = parse_rule_file("bench.yml", &text).unwrap();
    let n_rules: usize = groups.iter().map(|g| g.rules.len()).sum();
    let mut runtimes: Vec<GroupRuntime> = vec![GroupRuntime::default(); groups.len()];
    let context = EvalContext::default();
    let mut cycles = Vec::new();
    let mut alerts = 0;
    for cycle in 0..21 {
        let started = Instant::now();
        let mut samples = 0;
        let overlay = Overlay::new(store);
        let mut cache = SelectionCache::default();
        for (group, runtime) in groups.iter().zip(&mut runtimes) {
            let output = eval_group(
                group,
                runtime,
                &overlay,
                end + cycle * 1000,
                &context,
                &mut cache,
            );
            assert!(output.errors.is_empty(), "{:?}", output.errors);
            samples += output.samples.len();
        }
        let elapsed = started.elapsed();
        if cycle > 0 {
            cycles.push(elapsed);
        }
        alerts = samples / 2;
    }
    cycles.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{scenario}: {n_rules} rules over {} series: cycle p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({alerts} alerts pending/firing)",
        store.series_count(),
        ms(cycles[cycles.len() / 2]),
        ms(cycles[cycles.len() * 99 / 100]),
        ms(cycles[cycles.len() - 1]),
    );
}
