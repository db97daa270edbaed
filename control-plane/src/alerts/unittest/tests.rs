use std::path::PathBuf;

use super::*;

#[test]
fn expanding_notation_matches_promtool() {
    let some = |v: &[f64]| v.iter().map(|v| Some(*v)).collect::<Vec<_>>();
    assert_eq!(
        expand_values("-2+4x3").expect("ok"),
        some(&[-2.0, 2.0, 6.0, 10.0])
    );
    assert_eq!(
        expand_values("1-2x4").expect("ok"),
        some(&[1.0, -1.0, -3.0, -5.0, -7.0])
    );
    assert_eq!(expand_values("1x4").expect("ok"), some(&[1.0; 5]));
    assert_eq!(
        expand_values("1e3 2.5e-1").expect("ok"),
        some(&[1000.0, 0.25])
    );
    assert_eq!(
        expand_values("1e2+1e1x2").expect("ok"),
        some(&[100.0, 110.0, 120.0])
    );
    let values = expand_values("1 _x3 stale _ Inf -Inf").expect("ok");
    assert_eq!(values.len(), 8);
    assert_eq!(values[0], Some(1.0));
    assert!(values[1..4].iter().all(Option::is_none));
    assert!(values[4].is_some_and(crate::query::is_stale_marker));
    assert_eq!(values[5], None);
    assert_eq!(values[6..], [Some(f64::INFINITY), Some(f64::NEG_INFINITY)]);
    assert!(values.len() == 8 && expand_values("1+x").is_err());
    assert!(expand_values("abc").is_err());
}

#[test]
fn durations_print_like_prometheus() {
    assert_eq!(format_duration(0), "0s");
    assert_eq!(format_duration(90_000), "1m30s");
    assert_eq!(format_duration(3_600_000), "1h");
    assert_eq!(format_duration(86_400_000 + 1_500), "1d1s500ms");
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

const RULES: &str = r#"
groups:
  - name: g
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: InstanceDown
        expr: up == 0
        for: 2m
        labels:
          severity: critical
        annotations:
          summary: '{{ $labels.instance }} down ({{ $value }})'
"#;

#[test]
fn a_passing_and_a_failing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rules.yml", RULES);
    let good = write(
        dir.path(),
        "good_test.yml",
        r#"
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="api", instance="a"}'
        values: '1 1 0 0 0 0'
      - series: 'up{job="api", instance="b"}'
        values: '1x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: InstanceDown
        exp_alerts: []
      - eval_time: 4m30s
        alertname: InstanceDown
        exp_alerts:
          - exp_labels: {severity: critical, job: api, instance: a}
            exp_annotations: {summary: 'a down (0)'}
    promql_expr_test:
      - expr: job:up:sum
        eval_time: 5m
        exp_samples:
          - labels: 'job:up:sum{job="api"}'
            value: 1
      - expr: ALERTS{alertstate="firing"}
        eval_time: 4m
        exp_samples:
          - labels: 'ALERTS{alertname="InstanceDown", alertstate="firing", instance="a", job="api", severity="critical"}'
            value: 1
"#,
    );
    let report = run_files(std::slice::from_ref(&good));
    assert!(report.passed, "{}", report.combined());
    assert_eq!(
        report.combined(),
        format!("Unit Testing:  {}\n  SUCCESS\n\n", good.display())
    );

    let bad = write(
        dir.path(),
        "bad_test.yml",
        r#"
rule_files: [rules.yml]
tests:
  - input_series:
      - series: 'up{job="api", instance="a"}'
        values: '0x5'
    alert_rule_test:
      - eval_time: 5m
        alertname: InstanceDown
        exp_alerts:
          - exp_labels: {severity: warning, job: api, instance: a}
    promql_expr_test:
      - expr: up
        eval_time: 1m
        exp_samples:
          - labels: 'up{job="api", instance="a"}'
            value: 2
"#,
    );
    let report = run_files(std::slice::from_ref(&bad));
    assert!(!report.passed);
    let stderr = report.stream(Stream::Stderr);
    assert!(
        stderr.starts_with("  FAILED:\n    alertname: InstanceDown, time: 5m, \n        exp:[\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "Labels:{alertname=\"InstanceDown\", instance=\"a\", job=\"api\", severity=\"warning\"}"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("    expr: \"up\", time: 1m,\n        exp: {__name__=\"up\", instance=\"a\", job=\"api\"} 2E+00\n        got: {__name__=\"up\", instance=\"a\", job=\"api\"} 0E+00"), "{stderr}");
}

/// The repository's suite (`tests/rules/*_test.yml`): each file must pass here and in promtool,
/// the oracle; files under `tests/rules/failing/` must fail in both, with promtool's output.
#[test]
fn repository_suite_agrees_with_promtool() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/rules");
    let files = glob_path(&root.join("*_test.yml"));
    assert!(
        files.len() >= 25,
        "expected at least 25 rule unit-test files in {}",
        root.display()
    );
    let promtool = which("promtool")
        .expect("promtool is required (Debian package `prometheus`; .ci/run installs it)");
    for file in &files {
        let ours = run_files(std::slice::from_ref(file));
        assert!(ours.passed, "{}:\n{}", file.display(), ours.combined());
        let theirs = std::process::Command::new(&promtool)
            .args(["test", "rules"])
            .arg(file)
            .output()
            .expect("running promtool");
        assert!(
            theirs.status.success(),
            "promtool fails {}:\n{}",
            file.display(),
            String::from_utf8_lossy(&theirs.stderr)
        );
    }
    // Deliberately failing files: both fail; where the failure is a comparison (not a parse
    // error, whose wording is each parser's own), our output is promtool's, byte for byte.
    let repo = root.join("../..").canonicalize().expect("repository root");
    let failing = glob_path(&repo.join("tests/rules/failing/*_test.yml"));
    assert!(failing.len() >= 4);
    for file in failing {
        let recorded =
            std::fs::read_to_string(file.with_extension("yml.out")).expect("recorded output");
        let code = std::fs::read_to_string(file.with_extension("yml.code")).expect("recorded code");
        assert_eq!(code.trim(), "1", "{}", file.display());
        let ours = run_files(std::slice::from_ref(&file));
        assert!(!ours.passed, "{} must fail", file.display());
        // promtool ran from the repository root with relative paths.
        let combined = ours.combined().replace(&format!("{}/", repo.display()), "");
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("bad_") {
            assert!(combined.contains("  FAILED:\n"), "{combined}");
        } else {
            assert_eq!(combined, recorded, "{}", file.display());
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
