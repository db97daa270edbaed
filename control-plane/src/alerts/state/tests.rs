use std::sync::Arc;

use super::*;
use crate::{
    alerts::{group::to_labels, rules::parse_rule_file},
    query::InstantSample,
};

fn rule(yaml_rule: &str) -> Arc<Rule> {
    let text = format!("groups:\n  - name: g\n    rules:\n{yaml_rule}");
    let groups = parse_rule_file("t.yml", &text).unwrap_or_else(|e| panic!("{e:?}"));
    Arc::clone(&groups[0].rules[0])
}

fn sample(host: &str, v: f64) -> InstantSample {
    let labels: LabelMap = [("__name__", "cpu"), ("host", host)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    InstantSample {
        labels: to_labels(&labels),
        t: 0,
        v,
    }
}

/// Evaluates at each `(ts seconds, results)` and returns the state of host `a` after each.
fn run(rule: &Rule, steps: &[(i64, Vec<InstantSample>)]) -> Vec<Option<AlertState>> {
    let mut state = AlertingRuleState::default();
    steps
        .iter()
        .map(|(ts, samples)| {
            state
                .eval(rule, ts * 1000, samples, 0, &EvalContext::default())
                .expect("evaluates");
            state
                .current()
                .find(|a| a.labels.get("host").map(String::as_str) == Some("a"))
                .map(|a| a.state)
        })
        .collect()
}

#[test]
fn pending_fires_after_for_and_resolves() {
    let rule = rule("      - alert: HighCpu\n        expr: cpu > 80\n        for: 2m\n");
    let up = || vec![sample("a", 90.0)];
    let states = run(
        &rule,
        &[
            (0, up()),
            (60, up()),
            (119, up()),
            (120, up()),
            (180, vec![]),
            (240, up()),
        ],
    );
    use AlertState::*;
    assert_eq!(
        states,
        [
            Some(Pending),
            Some(Pending),
            Some(Pending),
            Some(Firing),
            None,
            Some(Pending)
        ]
    );
}

#[test]
fn a_pending_alert_that_clears_starts_over() {
    let rule = rule("      - alert: X\n        expr: cpu > 80\n        for: 1m\n");
    let mut state = AlertingRuleState::default();
    let ctx = EvalContext::default();
    state
        .eval(&rule, 0, &[sample("a", 90.0)], 0, &ctx)
        .expect("ok");
    state.eval(&rule, 30_000, &[], 0, &ctx).expect("ok");
    assert!(
        state.active.is_empty(),
        "pending alerts are dropped at once"
    );
    state
        .eval(&rule, 45_000, &[sample("a", 90.0)], 0, &ctx)
        .expect("ok");
    state
        .eval(&rule, 90_000, &[sample("a", 90.0)], 0, &ctx)
        .expect("ok");
    assert_eq!(
        state.current().next().map(|a| a.state),
        Some(AlertState::Pending)
    );
    assert_eq!(state.current().next().map(|a| a.active_at), Some(45_000));
}

#[test]
fn keep_firing_for_holds_then_resolves_and_resets() {
    let rule = rule("      - alert: X\n        expr: cpu > 80\n        keep_firing_for: 2m\n");
    let up = || vec![sample("a", 90.0)];
    use AlertState::*;
    let states = run(
        &rule,
        &[
            (0, up()),
            (60, vec![]),
            (120, vec![]),
            (179, vec![]),
            (180, vec![]),
        ],
    );
    assert_eq!(
        states,
        [Some(Firing), Some(Firing), Some(Firing), Some(Firing), None]
    );
    // Back before keep_firing_for ran out: the hold resets.
    let states = run(
        &rule,
        &[
            (0, up()),
            (60, vec![]),
            (120, up()),
            (200, vec![]),
            (319, vec![]),
        ],
    );
    assert_eq!(
        states,
        [
            Some(Firing),
            Some(Firing),
            Some(Firing),
            Some(Firing),
            Some(Firing)
        ]
    );
}

#[test]
fn resolved_alerts_are_kept_fifteen_minutes_then_dropped() {
    let rule = rule("      - alert: X\n        expr: cpu > 80\n");
    let mut state = AlertingRuleState::default();
    let ctx = EvalContext::default();
    state
        .eval(&rule, 0, &[sample("a", 90.0)], 0, &ctx)
        .expect("ok");
    state.eval(&rule, 60_000, &[], 0, &ctx).expect("ok");
    let resolved = state.active.values().next().expect("kept");
    assert_eq!(resolved.state, AlertState::Inactive);
    assert_eq!(resolved.resolved_at, Some(60_000));
    state
        .eval(&rule, 60_000 + RESOLVED_RETENTION_MS, &[], 0, &ctx)
        .expect("ok");
    assert_eq!(state.active.len(), 1, "kept for exactly the retention");
    state
        .eval(&rule, 60_001 + RESOLVED_RETENTION_MS, &[], 0, &ctx)
        .expect("ok");
    assert!(state.active.is_empty());
}

#[test]
fn labels_annotations_and_alerts_series() {
    let rule = rule(
        "      - alert: HighCpu\n        expr: cpu > 80\n        for: 1m\n        labels:\n          severity: '{{ if gt $value 95.0 }}critical{{ else }}warning{{ end }}'\n          empty: '{{ $labels.nope }}'\n        annotations:\n          summary: 'CPU on {{ $labels.host }} at {{ $value }}%'\n",
    );
    let mut state = AlertingRuleState::default();
    let out = state
        .eval(
            &rule,
            30_000,
            &[sample("a", 96.5), sample("b", 85.0)],
            0,
            &EvalContext::default(),
        )
        .expect("ok");
    let a = state
        .current()
        .find(|a| a.labels["host"] == "a")
        .expect("a");
    assert_eq!(a.labels["severity"], "critical");
    assert_eq!(a.labels["alertname"], "HighCpu");
    assert!(!a.labels.contains_key("empty"), "an empty label is dropped");
    assert!(!a.labels.contains_key("__name__"));
    assert_eq!(a.annotations["summary"], "CPU on a at 96.5%");
    let alerts: Vec<&OutputSample> = out
        .iter()
        .filter(|s| s.labels.get("__name__").unwrap_or("") == "ALERTS")
        .collect();
    assert_eq!(alerts.len(), 2);
    assert!(
        alerts
            .iter()
            .all(|s| s.labels.get("alertstate").unwrap_or("") == "pending" && s.v == 1.0)
    );
    let for_state = out
        .iter()
        .find(|s| {
            s.labels.get("__name__").unwrap_or("") == "ALERTS_FOR_STATE"
                && s.labels.get("host").unwrap_or("") == "b"
        })
        .expect("for state");
    assert_eq!(
        for_state.v, 30.0,
        "ALERTS_FOR_STATE holds active_at in seconds"
    );
}

#[test]
fn duplicates_and_limits_are_errors() {
    let rule =
        rule("      - alert: X\n        expr: cpu > 0\n        labels:\n          host: same\n");
    let mut state = AlertingRuleState::default();
    let ctx = EvalContext::default();
    assert_eq!(
        state.eval(&rule, 0, &[sample("a", 1.0), sample("b", 1.0)], 0, &ctx),
        Err(RuleEvalError::DuplicateLabels)
    );
    let rule = self::rule("      - alert: X\n        expr: cpu > 0\n");
    assert_eq!(
        state.eval(&rule, 0, &[sample("a", 1.0), sample("b", 1.0)], 1, &ctx),
        Err(RuleEvalError::Limit { limit: 1, count: 2 })
    );
    assert!(state.active.is_empty());
}

#[test]
fn fingerprints_are_prometheus_label_fingerprints() {
    // model.LabelSet{}.Fingerprint() is the FNV-1a offset basis.
    assert_eq!(fingerprint(&LabelMap::new()), "cbf29ce484222325");
    let a: LabelMap = [("alertname".to_owned(), "X".to_owned())].into();
    let b: LabelMap = [("alertname".to_owned(), "Y".to_owned())].into();
    assert_ne!(fingerprint(&a), fingerprint(&b));
    assert_eq!(fingerprint(&a).len(), 16);
}

/// Plain rule labels are derived once per result label set and reused; annotations are still
/// expanded with each evaluation's value, and labels templated on the value still follow it.
#[test]
fn reused_labels_keep_annotations_and_value_templates_current() {
    let plain = rule(
        "      - alert: X\n        expr: cpu > 80\n        labels:\n          severity: page\n        annotations:\n          summary: '{{ $labels.host }} at {{ $value }}'\n",
    );
    let templated = rule(
        "      - alert: Y\n        expr: cpu > 80\n        labels:\n          level: '{{ if gt $value 95.0 }}high{{ else }}low{{ end }}'\n",
    );
    let ctx = EvalContext::default();
    let (mut plain_state, mut templated_state) =
        (AlertingRuleState::default(), AlertingRuleState::default());
    for (ts, v) in [(0, 90.0), (60_000, 99.0), (120_000, 91.0)] {
        let samples = [sample("a", v), sample("b", v)];
        plain_state
            .eval(&plain, ts, &samples, 0, &ctx)
            .expect("evaluates");
        templated_state
            .eval(&templated, ts, &samples, 0, &ctx)
            .expect("evaluates");
        let alerts: Vec<&Alert> = plain_state.current().collect();
        assert_eq!(alerts.len(), 2);
        let a = alerts
            .iter()
            .find(|a| a.labels.get("host").map(String::as_str) == Some("a"))
            .expect("host a");
        assert_eq!(a.labels.get("severity").map(String::as_str), Some("page"));
        assert_eq!(a.labels.get("alertname").map(String::as_str), Some("X"));
        assert!(!a.labels.contains_key("__name__"));
        assert_eq!(
            a.annotations.get("summary").map(String::as_str),
            Some(format!("a at {v}").as_str())
        );
        assert_eq!(a.active_at, 0, "the same alert throughout");
        let levels: Vec<&str> = templated_state
            .current()
            .filter(|a| a.labels.get("host").map(String::as_str) == Some("a"))
            .filter_map(|a| a.labels.get("level").map(String::as_str))
            .collect();
        assert_eq!(levels, [if v > 95.0 { "high" } else { "low" }]);
    }
}
