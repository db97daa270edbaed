//! `aisemble-cp rules test`: promtool's rule unit-test files, run by this evaluator.
//!
//! The file format is promtool's (`rule_files`, `evaluation_interval`, `group_eval_order`,
//! `tests: - interval, name, external_labels, external_url, input_series, alert_rule_test,
//! promql_expr_test`), input series use the same expanding notation (`0+10x100`, `1-2x4`, `5x3`,
//! `_`, `_x3`, `stale`), and the output and exit codes are promtool's, so a CI job can run the
//! same files through both. Evaluation is promtool's: every group at every `evaluation_interval`
//! from 0 to the latest `eval_time`, seeing only samples up to that instant; an `alert_rule_test`
//! at `eval_time` compares the firing alerts of the evaluation at or just before it.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use promql_parser::{label::MatchOp, parser::Expr};
use serde::Deserialize;

use super::{
    group::{self, GroupRuntime, STALE_NAN},
    rules::{self, RuleGroup, RuleKind, parse_duration},
    state::{AlertState, EvalContext, LabelMap},
};
use crate::{
    query::{self, SeriesSource, Value, eval::SelectionCache, memory::MemorySeries},
    store::{SeriesSamples, StoreError},
};

/// Which stream a piece of output goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// What a run printed, in order (promtool interleaves stdout and stderr), and how it ended.
#[derive(Debug, Default)]
pub struct Report {
    /// Output pieces in the order promtool writes them.
    pub output: Vec<(Stream, String)>,
    /// Whether every file passed.
    pub passed: bool,
}

impl Report {
    fn out(&mut self, text: impl Into<String>) {
        self.output.push((Stream::Stdout, text.into()));
    }

    fn err(&mut self, text: impl Into<String>) {
        self.output.push((Stream::Stderr, text.into()));
    }

    /// Everything, as `2>&1` shows it.
    pub fn combined(&self) -> String {
        self.output.iter().map(|(_, t)| t.as_str()).collect()
    }

    /// One stream.
    pub fn stream(&self, stream: Stream) -> String {
        self.output
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, t)| t.as_str())
            .collect()
    }
}

/// Runs test files, printing as promtool does.
pub fn run_files(files: &[PathBuf]) -> Report {
    let mut report = Report {
        passed: true,
        ..Report::default()
    };
    for file in files {
        report.out(format!("Unit Testing:  {}\n", file.display()));
        let mut warnings = String::new();
        let result = run_file(file, &mut warnings);
        if !warnings.is_empty() {
            report.err(warnings);
        }
        match result {
            Ok(()) => report.out("  SUCCESS\n"),
            Err(errors) => {
                report.err("  FAILED:\n");
                for error in errors {
                    report.err(format!("{error}\n"));
                    report.out("\n");
                }
                report.passed = false;
            }
        }
        report.out("\n");
    }
    report
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpectedAlert>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ExpectedAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpectedSample>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ExpectedSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

fn run_file(path: &Path, warnings: &mut String) -> Result<(), Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let file: TestFile = serde_saphyr::from_str(&text).map_err(|e| {
        let message = e.to_string();
        vec![message.lines().next().unwrap_or("invalid YAML").to_owned()]
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rule_files = Vec::new();
    for pattern in &file.rule_files {
        let joined = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let matches = glob_path(&joined);
        if matches.is_empty() {
            let _ = writeln!(
                warnings,
                "  WARNING: no file match pattern {}",
                joined.display()
            );
        }
        rule_files.extend(matches);
    }
    let evaluation_interval = match &file.evaluation_interval {
        Some(text) => parse_duration(text).map_err(|e| vec![e])?,
        None => Duration::from_secs(60),
    };
    let evaluation_interval = if evaluation_interval.is_zero() {
        Duration::from_secs(60)
    } else {
        evaluation_interval
    };
    let mut order: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, name) in file.group_eval_order.iter().enumerate() {
        if order.insert(name, i).is_some() {
            return Err(vec![format!(
                "group name repeated in evaluation order: {name}"
            )]);
        }
    }
    let mut errors = Vec::new();
    for test in &file.tests {
        let groups = rules::load_rule_files(&rule_files)
            .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let mut groups = groups;
        groups.sort_by_key(|g| order.get(g.name.as_str()).copied().unwrap_or(0));
        errors.extend(run_test(test, &groups, evaluation_interval));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Files matching a path whose last component may hold `*` and `?`.
pub fn glob_path(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?', '[']) {
        return if pattern.exists() {
            vec![pattern.to_owned()]
        } else {
            Vec::new()
        };
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let regex = format!(
        "^{}$",
        regex::escape(name).replace("\\*", ".*").replace("\\?", ".")
    );
    let Ok(regex) = regex::Regex::new(&regex) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| regex.is_match(n)))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn run_test(test: &TestGroup, groups: &[RuleGroup], evaluation_interval: Duration) -> Vec<String> {
    let mut errors = Vec::new();
    let group_name = if test.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", test.name)
    };
    // As promtool: no `interval` is 0s, so every sample lands at 0 and only the first counts.
    let series_interval = match &test.interval {
        Some(text) => match parse_duration(text) {
            Ok(d) => d,
            Err(e) => return vec![e],
        },
        None => Duration::ZERO,
    };
    let mut memory = MemorySeries::new();
    for input in &test.input_series {
        if let Err(e) = load_series(&mut memory, input, query::duration_ms(series_interval)) {
            return vec![e];
        }
    }
    let mut alert_tests: BTreeMap<i64, Vec<&AlertTest>> = BTreeMap::new();
    for alert in &test.alert_rule_test {
        if alert.alertname.is_empty() {
            let suffix = if test.name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", test.name)
            };
            return vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{suffix}",
                alert.eval_time
            )];
        }
        match parse_duration(&alert.eval_time) {
            Ok(t) => alert_tests
                .entry(query::duration_ms(t))
                .or_default()
                .push(alert),
            Err(e) => return vec![e],
        }
    }
    let mut expr_tests = Vec::new();
    for expr in &test.promql_expr_test {
        match parse_duration(&expr.eval_time) {
            Ok(t) => expr_tests.push((query::duration_ms(t), expr)),
            Err(e) => return vec![e],
        }
    }
    let max_t = alert_tests
        .keys()
        .copied()
        .chain(expr_tests.iter().map(|(t, _)| *t))
        .max()
        .unwrap_or(0);
    let context = EvalContext {
        external_labels: test.external_labels.clone(),
        external_url: test.external_url.clone(),
    };
    let step = query::duration_ms(evaluation_interval);
    let mut runtimes: Vec<GroupRuntime> = vec![GroupRuntime::default(); groups.len()];
    let mut pending_alert_times: Vec<i64> = alert_tests.keys().copied().collect();
    pending_alert_times.reverse();
    let mut ts = 0;
    while ts <= max_t {
        let mut eval_errors = Vec::new();
        let mut written = Vec::new();
        {
            let view = Until {
                inner: &memory,
                until: ts,
            };
            let overlay = group::Overlay::new(&view);
            let mut cache = SelectionCache::default();
            for (group, runtime) in groups.iter().zip(runtimes.iter_mut()) {
                let output = group::eval_group(group, runtime, &overlay, ts, &context, &mut cache);
                for (idx, error) in output.errors {
                    eval_errors.push(format!(
                        "    rule: {}, time: {}, err: {error}",
                        group.rules[idx].name,
                        format_duration(ts)
                    ));
                }
                written.extend(output.samples);
            }
        }
        for sample in written {
            memory.append(&sample.labels, ts, sample.v);
        }
        if !eval_errors.is_empty() {
            errors.extend(eval_errors);
            return errors;
        }
        while let Some(&t) = pending_alert_times.last() {
            if !(ts <= t && t < ts + step) {
                break;
            }
            pending_alert_times.pop();
            for case in alert_tests.get(&t).into_iter().flatten() {
                let mut got: Vec<(LabelMap, LabelMap)> = Vec::new();
                for (group, runtime) in groups.iter().zip(&runtimes) {
                    for (rule, state) in group.rules.iter().zip(&runtime.rules) {
                        if rule.kind != RuleKind::Alerting || rule.name != case.alertname {
                            continue;
                        }
                        got.extend(
                            state
                                .alerts
                                .current()
                                .filter(|a| a.state == AlertState::Firing)
                                .map(|a| (a.labels.clone(), a.annotations.clone())),
                        );
                    }
                }
                let mut expected: Vec<(LabelMap, LabelMap)> = case
                    .exp_alerts
                    .iter()
                    .map(|a| {
                        let mut labels = a.exp_labels.clone();
                        labels.insert("alertname".into(), case.alertname.clone());
                        (labels, a.exp_annotations.clone())
                    })
                    .collect();
                got.sort_by(compare_alerts);
                expected.sort_by(compare_alerts);
                if got != expected {
                    errors.push(format!(
                        "{group_name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        case.alertname,
                        case.eval_time_display(),
                        indent(&alerts_string(&expected), "            "),
                        indent(&alerts_string(&got), "            ")
                    ));
                }
            }
        }
        ts += step;
    }
    // promtool loads samples step by step; after the loop, up to the last evaluation.
    let loaded_until = (max_t / step) * step;
    for (t, case) in expr_tests {
        let view = Until {
            inner: &memory,
            until: loaded_until,
        };
        let result = query::parse(&case.expr).and_then(|expr| evaluate(&view, &expr, t));
        let got = match result {
            Ok(samples) => samples,
            Err(error) => {
                errors.push(format!(
                    "    expr: {:?}, time: {}, err: {error}",
                    case.expr,
                    case.eval_time_display()
                ));
                continue;
            }
        };
        let mut expected = Vec::new();
        let mut bad = None;
        for sample in &case.exp_samples {
            match parse_series_labels(&sample.labels) {
                Ok(labels) => expected.push((labels, sample.value)),
                Err(e) => {
                    bad = Some(format!("labels {:?}: {e}", sample.labels));
                    break;
                }
            }
        }
        if let Some(error) = bad {
            errors.push(format!(
                "    expr: {:?}, time: {}, err: {error}",
                case.expr,
                case.eval_time_display()
            ));
            continue;
        }
        let mut got = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == expected.len()
            && got
                .iter()
                .zip(&expected)
                .all(|(g, e)| g.0 == e.0 && (g.1 == e.1 || (g.1.is_nan() && e.1.is_nan())));
        if !same {
            errors.push(format!(
                "    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                case.expr,
                case.eval_time_display(),
                samples_string(&expected),
                samples_string(&got)
            ));
        }
    }
    errors
}

impl AlertTest {
    fn eval_time_display(&self) -> String {
        parse_duration(&self.eval_time).map_or_else(
            |_| self.eval_time.clone(),
            |d| format_duration(query::duration_ms(d)),
        )
    }
}

impl ExprTest {
    fn eval_time_display(&self) -> String {
        parse_duration(&self.eval_time).map_or_else(
            |_| self.eval_time.clone(),
            |d| format_duration(query::duration_ms(d)),
        )
    }
}

fn evaluate(
    source: &dyn SeriesSource,
    expr: &Expr,
    t: i64,
) -> Result<Vec<(LabelMap, f64)>, query::QueryError> {
    match query::instant(source, expr, t)? {
        Value::Vector(samples) => Ok(samples
            .into_iter()
            .map(|s| {
                (
                    s.labels
                        .iter()
                        .map(|p| (p.name.to_string(), p.value.to_string()))
                        .collect(),
                    s.v,
                )
            })
            .collect()),
        Value::Scalar(_, v) => Ok(vec![(LabelMap::new(), v)]),
        _ => Err(query::QueryError::BadData(
            "rule result is not a vector or scalar".into(),
        )),
    }
}

/// Only samples up to `until`, as promtool loads them step by step.
struct Until<'a> {
    inner: &'a MemorySeries,
    until: i64,
}

impl SeriesSource for Until<'_> {
    fn select(
        &self,
        matchers: &[promql_parser::label::Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        self.inner.select(matchers, mint, maxt.min(self.until))
    }
}

fn compare_alerts(a: &(LabelMap, LabelMap), b: &(LabelMap, LabelMap)) -> std::cmp::Ordering {
    compare_label_maps(&a.0, &b.0).then_with(|| compare_label_maps(&a.1, &b.1))
}

/// Prometheus' `labels.Compare`: pairwise by name then value, then by length.
fn compare_label_maps(a: &LabelMap, b: &LabelMap) -> std::cmp::Ordering {
    for ((an, av), (bn, bv)) in a.iter().zip(b) {
        let order = an.cmp(bn).then_with(|| av.cmp(bv));
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// Prometheus' `labels.Labels.String()`: `{a="1", b="2"}`.
fn labels_string(labels: &LabelMap) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", super::gofmt::go_quote(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn alerts_string(alerts: &[(LabelMap, LabelMap)]) -> String {
    if alerts.is_empty() {
        return "[]".into();
    }
    let mut out = String::from("[\n");
    for (i, (labels, annotations)) in alerts.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        let body = format!(
            "\nLabels:{}\nAnnotations:{}",
            labels_string(labels),
            labels_string(annotations)
        );
        let _ = write!(out, "{i}:{}", indent(&body, "  "));
    }
    out.push_str("\n]");
    out
}

fn samples_string(samples: &[(LabelMap, f64)]) -> String {
    if samples.is_empty() {
        return "nil".into();
    }
    samples
        .iter()
        .map(|(labels, v)| format!("{} {}", labels_string(labels), format_value_e(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`.
fn format_value_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let text = format!("{v:E}");
    let (mantissa, exponent) = text.split_once('E').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    format!(
        "{mantissa}E{}{:02}",
        if exponent < 0 { '-' } else { '+' },
        exponent.abs()
    )
}

/// Go's `indentLines`: every line but the first gets `prefix`.
fn indent(text: &str, prefix: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str(prefix);
        }
        out.push_str(line);
        if i != lines.len() - 1 {
            out.push('\n');
        }
    }
    out
}

/// Prometheus' `model.Duration.String()`: `1h30m`, `5m`, `0s`.
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    if rest < 0 {
        out.push('-');
        rest = -rest;
    }
    for (unit, size) in [
        ("y", 365 * 86_400_000i64),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// Parses `metric{a="b"}` (or `{__name__="m", a="b"}`) into labels.
fn parse_series_labels(text: &str) -> Result<LabelMap, String> {
    if text.trim().is_empty() || text.trim() == "{}" {
        return Ok(LabelMap::new());
    }
    let expr = promql_parser::parser::parse(text)?;
    let Expr::VectorSelector(selector) = expr else {
        return Err(format!("{text:?} is not a series description"));
    };
    let mut labels = LabelMap::new();
    if let Some(name) = &selector.name {
        labels.insert("__name__".into(), name.clone());
    }
    for matcher in &selector.matchers.matchers {
        if !matches!(matcher.op, MatchOp::Equal) {
            return Err(format!("{text:?}: only `=` may describe a series"));
        }
        labels.insert(matcher.name.clone(), matcher.value.clone());
    }
    Ok(labels)
}

fn load_series(memory: &mut MemorySeries, input: &InputSeries, step_ms: i64) -> Result<(), String> {
    let labels = parse_series_labels(&input.series).map_err(|e| format!("parse error: {e}"))?;
    let labels = group::to_labels(&labels);
    let values = expand_values(&input.values).map_err(|e| format!("{:?}: {e}", input.values))?;
    for (i, value) in values.into_iter().enumerate() {
        if let Some(v) = value {
            memory.append(&labels, i as i64 * step_ms, v);
        }
    }
    Ok(())
}

/// Expands promtool's series notation into one optional value per step.
pub fn expand_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for item in text.split_whitespace() {
        if item == "_" {
            out.push(None);
            continue;
        }
        if item == "stale" {
            out.push(Some(STALE_NAN));
            continue;
        }
        if let Some(times) = item.strip_prefix("_x") {
            let n: usize = times
                .parse()
                .map_err(|_| format!("bad repetition {item:?}"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        let (start, rest) = split_number(item).ok_or_else(|| format!("bad value {item:?}"))?;
        if rest.is_empty() {
            out.push(Some(start));
            continue;
        }
        let (step, times) = if let Some(times) = rest.strip_prefix('x') {
            (0.0, times)
        } else {
            let (step, after) = split_number(rest).ok_or_else(|| format!("bad value {item:?}"))?;
            if !rest.starts_with(['+', '-']) {
                return Err(format!("bad value {item:?}"));
            }
            let times = after
                .strip_prefix('x')
                .ok_or_else(|| format!("bad value {item:?}"))?;
            (step, times)
        };
        let n: u64 = times
            .parse()
            .map_err(|_| format!("bad repetition {item:?}"))?;
        let mut value = start;
        out.push(Some(value));
        for _ in 0..n {
            value += step;
            out.push(Some(value));
        }
    }
    Ok(out)
}

/// A leading number (sign, digits, fraction, exponent, or Inf/NaN) and what follows it.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    for special in ["Inf", "inf", "NaN", "nan"] {
        if text[i..].starts_with(special) {
            let end = i + special.len();
            let value = match &text[..end] {
                s if s.ends_with("NaN") || s.ends_with("nan") => f64::NAN,
                s if s.starts_with('-') => f64::NEG_INFINITY,
                _ => f64::INFINITY,
            };
            return Some((value, &text[end..]));
        }
    }
    let digits_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
        let mut j = i + 1;
        if j < bytes.len() && matches!(bytes[j], b'+' | b'-') {
            j += 1;
        }
        let exponent_digits = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if j > exponent_digits {
            i = j;
        }
    }
    text[..i].parse().ok().map(|v| (v, &text[i..]))
}

#[cfg(test)]
mod tests;
