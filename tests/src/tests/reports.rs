//! Operations reports against a live control plane: a scripted agent sends half a day of disk,
//! request and cost samples over real mTLS QUIC; `GET /ops/reports/daily` and
//! `aisemble-cp report daily` (the real binary) report the host, the disk's days until full, the
//! service's error rate, the agent's certificate, the cost, and that no backups are recorded yet;
//! the weekly and monthly reports cover their longer windows.

use std::time::Duration;

use serde_json::Value;

use super::tempdir;
use crate::{
    fake_agent::{FakeAgent, now_ms},
    process::{ControlPlane, run_cp},
    wait,
};

const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_report_from_live_data() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();
    let mut agent = FakeAgent::connect(&cp, "db-1", dir.path()).await;
    let now = now_ms();
    // 12 hours ago to now, every 2 hours: the disk grows 1 point per hour (24 per day) from 60%,
    // 1000 requests per step of which 50 errors, 2 USD of inference per step.
    for step in 0..=6_i32 {
        let t = now - 12 * HOUR_MS + i64::from(step) * 2 * HOUR_MS;
        let n = f64::from(step);
        agent
            .send(
                t,
                &[
                    (
                        "aisemble_system_disk_usage_percent",
                        &[("mount", "/var/lib/postgresql")],
                        60.0 + 2.0 * n,
                    ),
                    (
                        "aisemble_requests_total",
                        &[("service", "orders"), ("status", "2xx")],
                        1000.0 * n,
                    ),
                    (
                        "aisemble_errors_total",
                        &[("service", "orders"), ("kind", "http")],
                        50.0 * n,
                    ),
                    (
                        "aisemble_model_cost_usd_total",
                        &[("provider", "openai"), ("model", "gpt-4o")],
                        2.0 * n,
                    ),
                ],
            )
            .await;
    }

    let (code, report) = wait::until(
        Duration::from_secs(30),
        "a report with the host",
        || async {
            let (code, report) = api.get("/ops/reports/daily").await.ok()?;
            report["hosts"]
                .as_array()?
                .iter()
                .any(|h| h["host"] == "db-1" && h["uptime_share"].is_number())
                .then_some((code, report))
        },
    )
    .await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["period"], "daily");
    assert_eq!(
        report["end_ms"].as_i64().unwrap_or(0) - report["start_ms"].as_i64().unwrap_or(0),
        24 * HOUR_MS
    );
    let host = find(&report["hosts"], "host", "db-1");
    assert_eq!(host["up"], true, "{host}");

    let disk = find(&report["disks"], "mount", "/var/lib/postgresql");
    assert!(close(&disk["usage_percent"], 72.0, 1e-9), "{disk}");
    assert!(close(&disk["growth_percent_per_day"], 24.0, 1e-6), "{disk}");
    // 28 points left at 24 a day, measured at report time (slightly after the last sample).
    assert!(close(&disk["days_until_full"], 28.0 / 24.0, 0.01), "{disk}");

    let orders = find(&report["services"], "service", "orders");
    assert!(close(&orders["error_rate"]["now"], 0.05, 1e-9), "{orders}");
    assert!(orders["error_rate"]["previous"].is_null(), "{orders}");

    let cert = find(&report["certificates"], "name", "db-1");
    assert_eq!(cert["status"], "ok", "{cert}");
    assert!(cert["days_left"].as_f64().unwrap_or(0.0) > 360.0, "{cert}");

    for own in ["control plane CA", "control plane server"] {
        let cert = find(&report["certificates"], "name", own);
        assert_eq!(cert["status"], "ok", "{cert}");
    }

    assert_eq!(report["backups"]["available"], false);
    let cost = find(&report["cost"]["window"], "model", "gpt-4o");
    assert_eq!(cost["provider"], "openai");
    // increase() over a day of samples that span 12 hours extrapolates as Prometheus does (to
    // half a step beyond the first sample): between the 12 USD sent and 14.
    let usd = cost["usd"].as_f64().unwrap_or(0.0);
    assert!((12.0..=14.0).contains(&usd), "{cost}");
    assert!(
        report["findings"].as_array().is_some_and(|f| f
            .iter()
            .any(|f| f.as_str().is_some_and(|f| f.contains("full in")))),
        "{report}"
    );

    // Weekly and monthly: the same checklist over 7 and 30 days, which hold all of this data.
    for (period, days) in [("weekly", 7), ("monthly", 30)] {
        let (code, longer) = api
            .get(&format!("/ops/reports/{period}"))
            .await
            .expect("request");
        assert_eq!(code, 200, "{longer}");
        assert_eq!(longer["period"], period);
        assert_eq!(
            longer["end_ms"].as_i64().unwrap_or(0) - longer["start_ms"].as_i64().unwrap_or(0),
            days * 24 * HOUR_MS,
            "{period}"
        );
        assert_eq!(find(&longer["hosts"], "host", "db-1")["up"], true);
        let orders = find(&longer["services"], "service", "orders");
        assert!(close(&orders["error_rate"]["now"], 0.05, 1e-9), "{orders}");
        let usd = find(&longer["cost"]["window"], "model", "gpt-4o")["usd"]
            .as_f64()
            .unwrap_or(0.0);
        assert!((12.0..=14.0).contains(&usd), "{period}: {usd}");
    }

    let (code, body) = api.get("/ops/reports/yearly").await.expect("request");
    assert_eq!(code, 404, "{body}");

    // The CLI: text, then JSON that matches the API's.
    let url = format!("http://{}", cp.http);
    let token = cp.token.clone();
    let run = move |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cp(&args)
        })
    };
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["report", "daily", "--url", &url]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let (code, stdout, stderr) = run(args(&["--token", &token])).await.expect("runs");
    assert_eq!(code, 0, "{stdout}{stderr}");
    for needle in [
        "Ai-semble Ops daily report",
        "db-1",
        "db-1:/var/lib/postgresql",
        "full in 1.2 days",
        "orders",
        "errors 5.00% (new)",
        "openai/gpt-4o",
        "no backup job has run",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
    }
    let (code, stdout, stderr) = run(args(&["--token", &token, "--format", "json"]))
        .await
        .expect("runs");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(json["period"], "daily");
    assert_eq!(find(&json["hosts"], "host", "db-1")["up"], true);

    let (code, _, stderr) = run(args(&["--token", "asb_wrong"])).await.expect("runs");
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("token refused"), "{stderr}");
    agent.close();
}

fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|x| x[key] == value))
        .unwrap_or_else(|| panic!("no {key}={value:?} in {list}"))
}

fn close(v: &Value, expected: f64, tolerance: f64) -> bool {
    v.as_f64()
        .is_some_and(|v| (v - expected).abs() <= tolerance)
}
