use super::*;

#[track_caller]
fn errors(text: &str) -> Vec<String> {
    match parse_rule_file("r.yml", text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[track_caller]
fn refused(text: &str, needle: &str) {
    let errors = errors(text);
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "{needle:?} not in {errors:#?}"
    );
}

#[test]
fn a_prometheus_rule_file_loads() {
    let groups = parse_rule_file(
        "r.yml",
        r#"
groups:
  - name: resources
    interval: 30s
    limit: 10
    rules:
      - record: job:cpu:avg
        expr: avg by (job) (cpu)
        labels:
          team: infra
      - alert: HighCpu
        expr: job:cpu:avg > 80
        for: 5m
        keep_firing_for: 1m
        labels:
          severity: warning
          priority: 2
        annotations:
          summary: "CPU {{ $value }}"
  - name: other
    rules: []
"#,
    )
    .expect("loads");
    assert_eq!(groups.len(), 2);
    let g = &groups[0];
    assert_eq!(
        (g.name.as_str(), g.interval, g.limit),
        ("resources", Some(Duration::from_secs(30)), 10)
    );
    assert_eq!(g.rules[0].kind, RuleKind::Recording);
    let alert = &g.rules[1];
    assert_eq!(alert.kind, RuleKind::Alerting);
    assert_eq!(alert.hold, Duration::from_secs(300));
    assert_eq!(alert.keep_firing_for, Duration::from_secs(60));
    assert!(
        alert
            .labels
            .iter()
            .any(|(k, v, _)| k == "priority" && v == "2"),
        "numbers read as text"
    );
    assert_eq!(
        parse_rule_file("e.yml", "# nothing yet\n")
            .expect("empty")
            .len(),
        0
    );
}

#[test]
fn every_problem_is_reported_with_its_position() {
    let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n      - alert: B\n        expr: topk(3, x)\n      - record: bad-name\n        expr: x\n        for: 1m\n";
    let errors = errors(text);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0]
            .starts_with("r.yml: 5:15: group \"g\", rule 1, \"A\": could not parse expression"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("r.yml: 7:15: group \"g\", rule 2, \"B\": cannot evaluate"),
        "{}",
        errors[1]
    );
    assert!(errors[1].contains("topk"), "{}", errors[1]);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("invalid recording rule name: bad-name")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.contains(
            "r.yml: 10:14: group \"g\", rule 3, \"bad-name\": invalid field 'for' in recording rule"
        )),
        "{errors:#?}"
    );
}

#[test]
fn invalid_rules_are_refused() {
    let rule = |body: &str| format!("groups:\n  - name: g\n    rules:\n{body}");
    refused(
        &rule("      - alert: A\n        record: b\n        expr: x\n"),
        "only one of 'record' and 'alert'",
    );
    refused(
        &rule("      - expr: x\n"),
        "one of 'record' or 'alert' must be set",
    );
    refused(&rule("      - alert: A\n"), "field 'expr' must be set");
    refused(
        &rule("      - record: r\n        expr: x\n        annotations:\n          a: b\n"),
        "invalid field 'annotations' in recording rule",
    );
    refused(
        &rule("      - record: r\n        expr: x\n        keep_firing_for: 1m\n"),
        "invalid field 'keep_firing_for'",
    );
    refused(
        &rule("      - alert: A\n        expr: x\n        for: 5 minutes\n"),
        "not a valid duration",
    );
    refused(
        &rule("      - alert: A\n        expr: x\n        labels:\n          __name__: y\n"),
        "invalid label name: __name__",
    );
    refused(
        &rule("      - alert: A\n        expr: x\n        annotations:\n          bad-name: y\n"),
        "invalid annotation name: bad-name",
    );
    refused(
        &rule("      - alert: A\n        expr: x[5m]\n"),
        "instant vector or a scalar",
    );
    refused(
        &rule(
            "      - alert: A\n        expr: x\n        annotations:\n          s: '{{ nope }}'\n",
        ),
        "function \"nope\" not defined",
    );
    refused(
        &rule("      - alert: A\n        expr: x\n        unknown: 1\n"),
        "unknown",
    );
    refused(
        "groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n",
        "groupname: \"g\" is repeated",
    );
    refused(
        "groups:\n  - name: ''\n    rules: []\n",
        "Groupname must not be empty",
    );
    refused("groups: [", "r.yml: ");
    for (text, ms) in [
        ("0", 0),
        ("0m", 0),
        ("90s", 90_000),
        ("1h30m", 5_400_000),
        ("1w2d", 777_600_000),
        ("1s500ms", 1_500),
    ] {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(ms)),
            "{text}"
        );
    }
    for text in ["", "5", "m", "1m1h", "1x", "-1m", "1.5m", "1m1m"] {
        assert!(parse_duration(text).is_err(), "{text}");
    }
}
