use std::collections::BTreeMap;

use super::*;
use crate::query::memory::MemorySeries;

const HOUR_MS: i64 = 3_600_000;

#[track_caller]
fn check_days_until_full(samples: &[(i64, f64)], t: i64, expected: Option<f64>) {
    let got = linear_fit(samples, t).and_then(|f| days_until_full(f, 100.0));
    match (got, expected) {
        (Some(g), Some(e)) => assert!((g - e).abs() < 1e-6, "got {g}, expected {e}"),
        (g, e) => assert_eq!(g, e),
    }
}

#[test]
fn days_until_full_follows_the_linear_fit() {
    // 50% now, growing 1 point per day: 50 days left.
    let day = DAY_MS;
    let growing: Vec<(i64, f64)> = (0..=24)
        .map(|h| (h * HOUR_MS, 49.0 + h as f64 / 24.0))
        .collect();
    check_days_until_full(&growing, day, Some(50.0));
    // Evaluated later than the last sample, the line is extrapolated to the evaluation time (as
    // predict_linear does): one more day has passed.
    check_days_until_full(&growing, 2 * day, Some(49.0));
    // Flat and shrinking disks are not filling.
    check_days_until_full(&[(0, 40.0), (day, 40.0)], day, None);
    check_days_until_full(&[(0, 60.0), (day, 40.0)], day, None);
    // Already full.
    check_days_until_full(&[(0, 99.0), (day, 100.0)], day, Some(0.0));
    // Too few samples, or no spread in time.
    check_days_until_full(&[(0, 40.0)], day, None);
    check_days_until_full(&[], day, None);
}

#[test]
fn linear_fit_is_least_squares() {
    // Noisy points around y = 2x + 1 (x in seconds): the fit recovers slope 2.
    let samples = [(0, 1.0), (1000, 3.2), (2000, 4.8), (3000, 7.1), (4000, 9.0)];
    let fit = linear_fit(&samples, 0).expect("fit");
    assert!((fit.slope_per_second - 1.99).abs() < 1e-9, "{fit:?}");
    assert!((fit.value_at_t - 1.04).abs() < 1e-9, "{fit:?}");
}

#[test]
fn trends_and_ratios() {
    assert_eq!(
        trend(Some(0.2), Some(0.1))
            .change
            .map(|c| (c * 100.0).round()),
        Some(10.0)
    );
    assert_eq!(trend(Some(0.2), None).change, None);
    assert_eq!(trend(None, Some(0.2)).previous, Some(0.2));
    assert_eq!(ratio(Some(5.0), 100.0), Some(0.05));
    // No errors recorded but requests seen: 0%, not unknown.
    assert_eq!(ratio(None, 100.0), Some(0.0));
    assert_eq!(ratio(Some(1.0), 0.0), None);
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn cost_is_grouped_by_provider_and_model_across_hosts() {
    let series = vec![
        (
            labels(&[("host", "a"), ("provider", "openai"), ("model", "gpt")]),
            2.0,
        ),
        (
            labels(&[("host", "b"), ("provider", "openai"), ("model", "gpt")]),
            3.0,
        ),
        (
            labels(&[
                ("host", "a"),
                ("provider", "anthropic"),
                ("model", "claude"),
            ]),
            7.5,
        ),
        (labels(&[("host", "a"), ("model", "local")]), 0.5),
    ];
    let lines = group_cost(&series);
    let got: Vec<(&str, &str, f64)> = lines
        .iter()
        .map(|l| (l.provider.as_str(), l.model.as_str(), l.usd))
        .collect();
    assert_eq!(
        got,
        [
            ("anthropic", "claude", 7.5),
            ("openai", "gpt", 5.0),
            ("unknown", "local", 0.5)
        ]
    );
}

#[test]
fn certificate_status() {
    let cert = |days: i64| CertificateInput {
        name: "n".into(),
        serial_hex: "01".into(),
        not_after_ms: days * DAY_MS,
    };
    assert_eq!(certificate_expiry(&cert(100), 0).status, "ok");
    assert_eq!(certificate_expiry(&cert(10), 0).status, "expiring");
    assert_eq!(certificate_expiry(&cert(-1), 0).status, "expired");
    assert!((certificate_expiry(&cert(10), 0).days_left - 10.0).abs() < 1e-9);
}

#[test]
fn security_alerts_are_recognized_by_label() {
    assert!(is_security(&labels(&[("category", "security")])));
    assert!(is_security(&labels(&[("type", "security")])));
    assert!(!is_security(&labels(&[("severity", "critical")])));
}

/// Two days of data for one host: a steadily growing disk, one service whose error rate doubled
/// and got slower, a model, costs, and the agent up all the time.
fn fleet() -> (MemorySeries, i64) {
    let mut s = MemorySeries::new();
    let now = 10 * DAY_MS;
    let start = now - 2 * DAY_MS;
    let step = 10 * 60 * 1000;
    let host = ("host", "gpu-1");
    let mut t = start;
    let (mut requests, mut errors, mut inferences, mut failures, mut cost) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut fast, mut slow, mut total) = (0.0, 0.0, 0.0);
    while t <= now {
        let second_day = t > now - DAY_MS;
        // 100 requests per step; 1% errors the first day, 2% the second.
        requests += 100.0;
        errors += if second_day { 2.0 } else { 1.0 };
        // Latency: all under 0.1 s the first day, all in (0.1, 1] the second.
        total += 100.0;
        if second_day {
            slow += 100.0;
        } else {
            fast += 100.0;
        }
        inferences += 10.0;
        failures += 1.0;
        cost += 0.25;
        let disk = 50.0 + (t - start) as f64 / DAY_MS as f64;
        for (name, extra, v) in [
            (
                "aisemble_system_disk_usage_percent",
                vec![("mount", "/")],
                disk,
            ),
            (
                "aisemble_requests_total",
                vec![("service", "api")],
                requests,
            ),
            ("aisemble_errors_total", vec![("service", "api")], errors),
            (
                "aisemble_request_duration_seconds_bucket",
                vec![("service", "api"), ("le", "0.1")],
                fast,
            ),
            (
                "aisemble_request_duration_seconds_bucket",
                vec![("service", "api"), ("le", "1")],
                fast + slow,
            ),
            (
                "aisemble_request_duration_seconds_bucket",
                vec![("service", "api"), ("le", "+Inf")],
                total,
            ),
            (
                "aisemble_model_inference_total",
                vec![
                    ("provider", "vllm"),
                    ("model", "llama"),
                    ("outcome", "success"),
                ],
                inferences - failures,
            ),
            (
                "aisemble_model_inference_total",
                vec![
                    ("provider", "vllm"),
                    ("model", "llama"),
                    ("outcome", "failure"),
                ],
                failures,
            ),
            (
                "aisemble_model_cost_usd_total",
                vec![("provider", "vllm"), ("model", "llama")],
                cost,
            ),
            (
                "aisemble_model_cost_month_to_date_usd",
                vec![("provider", "vllm"), ("model", "llama")],
                cost,
            ),
            ("aisemble_agent_up", vec![], 1.0),
        ] {
            let mut pairs = vec![("__name__", name), host];
            pairs.extend(extra);
            s.append(&MemorySeries::labels(&pairs), t, v);
        }
        t += step;
    }
    (s, now)
}

fn inputs(now: i64) -> Inputs {
    Inputs {
        period: Period::Daily,
        now_ms: now,
        agents: vec![
            AgentInput {
                name: "gpu-1".into(),
                connected: true,
                last_seen_ms: now,
            },
            AgentInput {
                name: "gone".into(),
                connected: false,
                last_seen_ms: now - DAY_MS,
            },
        ],
        alerts: vec![AlertInput {
            name: "SshBruteForce".into(),
            state: "firing".into(),
            labels: labels(&[
                ("severity", "critical"),
                ("category", "security"),
                ("host", "gpu-1"),
            ]),
            summary: Some("many failed logins".into()),
            fired_at_ms: Some(now),
        }],
        certificates: vec![CertificateInput {
            name: "gpu-1".into(),
            serial_hex: "ab".into(),
            not_after_ms: now + 5 * DAY_MS,
        }],
        refused_connections: [("revoked".to_owned(), 2), ("alpn_mismatch".to_owned(), 0)]
            .into_iter()
            .collect(),
    }
}

#[test]
fn daily_report_over_memory_series() {
    let (series, now) = fleet();
    let report = compute(&series, &inputs(now)).expect("report");
    assert_eq!(report.period, "daily");
    assert_eq!(report.end_ms - report.start_ms, DAY_MS);

    let hosts: Vec<(&str, bool, Option<f64>)> = report
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.up, h.uptime_share))
        .collect();
    assert_eq!(hosts, [("gpu-1", true, Some(1.0)), ("gone", false, None)]);

    let [api] = report.services.as_slice() else {
        panic!("one service: {:?}", report.services)
    };
    assert_eq!(api.service, "api");
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
    assert!(close(api.error_rate.now, 0.02), "{api:?}");
    assert!(close(api.error_rate.previous, 0.01), "{api:?}");
    let p95_now = api.p95_latency_seconds.now.expect("p95 now");
    let p95_before = api.p95_latency_seconds.previous.expect("p95 before");
    assert!(p95_before <= 0.1 && p95_now > 0.1, "{api:?}");

    let [llama] = report.models.as_slice() else {
        panic!("one model: {:?}", report.models)
    };
    assert_eq!(
        (llama.provider.as_str(), llama.model.as_str()),
        ("vllm", "llama")
    );
    assert!(close(llama.failure_rate.now, 0.1), "{llama:?}");

    let [disk] = report.disks.as_slice() else {
        panic!("one disk: {:?}", report.disks)
    };
    assert!(close(Some(disk.usage_percent), 52.0), "{disk:?}");
    assert!(close(disk.growth_percent_per_day, 1.0), "{disk:?}");
    assert!(close(disk.days_until_full, 48.0), "{disk:?}");

    assert!(!report.backups.available);
    assert_eq!(report.security.firing.len(), 1);
    assert_eq!(
        report.security.refused_connections,
        [("revoked".to_owned(), 2)].into_iter().collect()
    );
    assert_eq!(report.certificates[0].status, "expiring");

    // 144 steps a day at 0.25 USD.
    assert!(
        close(Some(report.cost.window_total_usd.now.expect("now")), 36.0),
        "{:?}",
        report.cost
    );
    assert!(
        close(Some(report.cost.month_to_date_total_usd), 72.25),
        "{:?}",
        report.cost
    );

    let findings = report.findings.join("\n");
    for needle in [
        "host gone is down",
        "p95 latency rose",
        "model llama failure rate 10.0%",
        "backups: none recorded",
        "security alert SshBruteForce",
        "certificate of gpu-1",
        "1 critical alerts firing",
    ] {
        assert!(findings.contains(needle), "{needle:?} not in:\n{findings}");
    }
    let text = text::render(&report);
    for needle in [
        "daily report",
        "gpu-1",
        "DOWN",
        "vllm/llama",
        "full in 48.0 days",
        "none recorded",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    // The JSON form reads back to the same report (the CLI's path); serde_json's float parsing
    // may differ in the last bit, which the text does not show.
    let json = serde_json::to_string(&report).expect("json");
    let back: Report = serde_json::from_str(&json).expect("parses");
    assert_eq!(text::render(&back), text);
    assert_eq!(back.findings, report.findings);
}

#[test]
fn no_disk_forecast_from_minutes_of_data() {
    let mut s = MemorySeries::new();
    let now = 10 * DAY_MS;
    let disk = MemorySeries::labels(&[
        ("__name__", "aisemble_system_disk_usage_percent"),
        ("host", "h"),
        ("mount", "/"),
    ]);
    s.append(&disk, now - 10 * 60 * 1000, 50.0);
    s.append(&disk, now, 60.0);
    let report = compute(&s, &inputs(now)).expect("report");
    let [d] = report.disks.as_slice() else {
        panic!("one disk: {:?}", report.disks)
    };
    assert_eq!((d.growth_percent_per_day, d.days_until_full), (None, None));
    assert!(text::render(&report).contains("no forecast"));
}
