//! promtool as the oracle: the same series go into a real store and into a promtool rule-unit-test
//! file; every expression is evaluated here, and the results are written as the test's expected
//! samples. `promtool test rules` (Debian's `prometheus` package) must agree.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use aisemble_shared::{
    codec,
    wire::{Compression, JournalEntry, MetricRecord, Record, Sample},
};

use super::{Value, instant, parse};
use crate::store::{CommitBatch, Store, StoreOptions, WalEntry};

const STEP_MS: i64 = 15_000;

/// `(metric name, labels, values every 15 s from 0)`.
type Input = Vec<(String, Vec<(&'static str, &'static str)>, Vec<f64>)>;

fn input() -> Input {
    let counter = |slope: f64, n: usize| (0..n).map(|i| i as f64 * slope).collect::<Vec<_>>();
    let mut reset = counter(5.0, 12);
    reset.extend(counter(7.0, 28));
    let buckets = |per_step: [f64; 4]| -> Vec<Vec<f64>> {
        per_step
            .iter()
            .map(|inc| (0..40).map(|i| i as f64 * inc).collect())
            .collect()
    };
    let mut out = vec![
        (
            "http_requests_total".into(),
            vec![("job", "api"), ("instance", "a"), ("code", "200")],
            counter(10.0, 40),
        ),
        (
            "http_requests_total".into(),
            vec![("job", "api"), ("instance", "b"), ("code", "200")],
            reset,
        ),
        (
            "http_requests_total".into(),
            vec![("job", "api"), ("instance", "a"), ("code", "500")],
            counter(1.0, 40),
        ),
        (
            "temperature".into(),
            vec![("room", "lab")],
            (0..40).map(|i| 20.0 + f64::from(i % 7) * 0.5).collect(),
        ),
        (
            "temperature".into(),
            vec![("room", "hall")],
            (0..40).map(|i| 18.0 - f64::from(i % 5)).collect(),
        ),
    ];
    // Values whose mean depends on how it is computed (Prometheus: incremental, compensated).
    out.push((
        "jitter".into(),
        vec![("job", "api")],
        (0..40)
            .map(|i| [1.0, 2.0, 4.0, 0.1, 0.7, 1.3, 0.3][i % 7])
            .collect(),
    ));
    for (le, values) in ["0.1", "0.5", "1", "+Inf"]
        .into_iter()
        .zip(buckets([3.0, 7.0, 9.0, 10.0]))
    {
        out.push((
            "latency_seconds_bucket".into(),
            vec![("job", "api"), ("le", le)],
            values,
        ));
    }
    out
}

/// Every supported construct. Sums here add at most two terms: float addition is commutative but
/// not associative, and Prometheus adds a function's output series in map order, so a sum of three
/// rates can differ from run to run in the last bit — on its side, not ours.
const EXPRESSIONS: &[&str] = &[
    "http_requests_total",
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[5m])",
    "increase(http_requests_total[2m])",
    "irate(http_requests_total[1m])",
    "delta(temperature[2m])",
    "idelta(temperature[1m])",
    "sum(rate(http_requests_total{code=\"200\"}[5m]))",
    "sum by (code) (rate(http_requests_total[5m]))",
    "sum without (instance) (http_requests_total)",
    "avg(temperature)",
    "min(temperature)",
    "max by (room) (temperature)",
    "count(http_requests_total)",
    "avg_over_time(temperature[2m])",
    "min_over_time(temperature[3m])",
    "max_over_time(temperature[3m])",
    "sum_over_time(temperature[1m])",
    "count_over_time(temperature[2m])",
    "last_over_time(temperature[2m])",
    "histogram_quantile(0.9, rate(latency_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(latency_seconds_bucket[5m])))",
    "temperature > 19",
    "temperature > bool 19",
    "-temperature",
    "temperature * 2 + 1",
    "2 ^ 3 - 1",
    "sum by (code) (rate(http_requests_total{code=\"500\"}[5m])) / on() sum(rate(http_requests_total{code=\"200\"}[5m]))",
    "rate(http_requests_total{code=\"500\"}[5m]) / ignoring(code) rate(http_requests_total{code=\"200\"}[5m])",
    "http_requests_total{instance=\"a\"} and on(code) http_requests_total{instance=\"b\"}",
    "temperature or vector(1)",
    "temperature unless temperature{room=\"lab\"}",
    "abs(-temperature)",
    "clamp_max(temperature, 19)",
    "clamp_min(temperature, 19)",
    "floor(temperature) + ceil(temperature)",
    "sqrt(temperature)",
    "scalar(sum(temperature))",
    "time()",
    "http_requests_total offset 1m",
    "temperature % 3",
    "avg_over_time(jitter[2m])",
    "avg_over_time(jitter[5m])",
    "absent(nonexistent{job=\"api\", job=\"x\", env=\"prod\"})",
    "absent(temperature)",
    "absent(sum(nonexistent))",
    "absent_over_time(nonexistent{room=\"lab\"}[1m])",
    "absent_over_time(temperature[1m])",
    "present_over_time(temperature[2m])",
    "changes(temperature[5m])",
    "resets(http_requests_total[10m])",
    "round(temperature * 1.3)",
    "round(jitter, 0.5)",
    "clamp(temperature, 17, 19.5)",
    "clamp(temperature, 20, 10)",
];

const EVAL_TIMES_MS: &[i64] = &[60_000, 300_000, 547_000];

async fn load(store: &Store) {
    let series = input();
    let steps = series.iter().map(|s| s.2.len()).max().unwrap_or(0);
    let entries: Vec<JournalEntry> = (0..steps)
        .map(|i| JournalEntry {
            seq: i as u64 + 1,
            record: codec::encode_record(&Record::Metrics(MetricRecord {
                timestamp_ms: i as i64 * STEP_MS,
                samples: series
                    .iter()
                    .filter_map(|(name, labels, values)| {
                        let value = *values.get(i)?;
                        Some(
                            labels
                                .iter()
                                .fold(Sample::new(name.clone(), value), |s, (k, v)| {
                                    s.with_label(*k, *v)
                                }),
                        )
                    })
                    .collect(),
            }))
            .expect("encodes"),
        })
        .collect();
    let payload = codec::encode_entries(&entries, Compression::Zstd).expect("encodes");
    let last = steps as u64;
    // The oracle has no `host` label: store under an agent whose name the query never shows…
    // except that the store always adds `host`. Expressions are compared without it.
    let decoded = store
        .resolver("oracle")
        .decode_batch(&payload, Compression::Zstd, 1, last, 1)
        .expect("decodes");
    store
        .submit(CommitBatch {
            wal: WalEntry {
                agent: "oracle".into(),
                journal_id: 1,
                first_new_seq: 1,
                last_seq: last,
                compression: Compression::Zstd,
                payload,
            },
            samples: decoded.samples,
            events: decoded.events,
            logs: Vec::new(),
        })
        .await
        .expect("queued")
        .wait()
        .await
        .expect("committed");
}

fn promtool_labels(labels: &crate::store::Labels) -> String {
    let mut out = String::new();
    out.push_str(labels.metric_name());
    out.push('{');
    let pairs: Vec<String> = labels
        .iter()
        .filter(|p| &*p.name != "__name__" && &*p.name != "host")
        .map(|p| format!("{}={:?}", p.name, &*p.value))
        .collect();
    out.push_str(&pairs.join(","));
    out.push('}');
    out
}

fn yaml_value(v: f64) -> String {
    if v.is_nan() {
        ".nan".into()
    } else if v == f64::INFINITY {
        ".inf".into()
    } else if v == f64::NEG_INFINITY {
        "-.inf".into()
    } else {
        format!("{v:?}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluator_agrees_with_promtool() {
    let promtool = which("promtool")
        .expect("promtool is required (Debian package `prometheus`; .ci/run installs it)");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        &dir.path().join("store"),
        StoreOptions {
            checkpoint_interval: Duration::from_secs(3600),
            ..StoreOptions::default()
        },
    )
    .expect("store");
    load(&store).await;

    let mut yaml = String::from(
        "rule_files: []\nevaluation_interval: 1m\ntests:\n  - interval: 15s\n    input_series:\n",
    );
    for (name, labels, values) in input() {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let values: Vec<String> = values.iter().map(|v| yaml_value(*v)).collect();
        let _ = writeln!(
            yaml,
            "      - series: '{name}{{{}}}'\n        values: '{}'",
            labels.join(","),
            values.join(" ")
        );
    }
    yaml.push_str("    promql_expr_test:\n");
    let mut evaluated = BTreeMap::new();
    for expr_text in EXPRESSIONS {
        let expr = parse(expr_text).unwrap_or_else(|e| panic!("{expr_text}: {e}"));
        for &t in EVAL_TIMES_MS {
            let value = instant(&store, &expr, t).unwrap_or_else(|e| panic!("{expr_text}: {e}"));
            let samples: Vec<(String, f64)> = match value {
                Value::Vector(samples) => samples
                    .iter()
                    .map(|s| (promtool_labels(&s.labels), s.v))
                    .collect(),
                Value::Scalar(_, v) => vec![("{}".into(), v)],
                other => panic!("{expr_text}: unexpected {other:?}"),
            };
            let _ = writeln!(
                yaml,
                "      - expr: '{}'\n        eval_time: {}s\n        exp_samples:",
                expr_text.replace('\'', "''"),
                t / 1000
            );
            if samples.is_empty() {
                yaml.truncate(yaml.len() - 1);
                yaml.push_str(" []\n");
            }
            for (labels, v) in &samples {
                let _ = writeln!(
                    yaml,
                    "          - labels: '{labels}'\n            value: {}",
                    yaml_value(*v)
                );
            }
            evaluated.insert((expr_text.to_string(), t), samples);
        }
    }
    let file = dir.path().join("oracle_test.yml");
    std::fs::write(&file, &yaml).expect("writing the test file");
    let output = std::process::Command::new(promtool)
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("running promtool");
    assert!(
        output.status.success(),
        "promtool disagrees with the evaluator:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Guard against a vacuous pass: most expressions give samples.
    let non_empty = evaluated.values().filter(|s| !s.is_empty()).count();
    assert!(non_empty > evaluated.len() * 3 / 4, "{evaluated:?}");
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .expect("shutdown");
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
