//! Prometheus rule files: parsing and validation, once, into typed rules.
//!
//! The format is Prometheus' (`groups: - name, interval, limit, rules: - alert|record, expr, for,
//! keep_firing_for, labels, annotations`), so existing files load unchanged. Every problem in a
//! file is reported, each with its line and column; a file with any problem is refused whole. An
//! expression this version cannot evaluate is a load error, never a silent wrong answer.

use std::{collections::BTreeMap, fmt, path::Path, sync::Arc, time::Duration};

use aisemble_shared::metrics::{METRIC_NAME_LABEL, is_valid_label_name, is_valid_metric_name};
use promql_parser::parser::{Expr, value::ValueType};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use super::template::Template;
use crate::query;

/// A problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The file, as given.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// What is wrong, naming the group and rule.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            // promtool's layout: `file: line:column: message`.
            write!(
                f,
                "{}: {}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// Whether a rule alerts or records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// `alert:`.
    Alerting,
    /// `record:`.
    Recording,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The alert name or the recorded metric name.
    pub name: String,
    /// Alerting or recording.
    pub kind: RuleKind,
    /// The parsed expression.
    pub expr: Expr,
    /// The expression as written.
    pub expr_text: String,
    /// `for` (zero for recording rules).
    pub hold: Duration,
    /// `keep_firing_for`.
    pub keep_firing_for: Duration,
    /// Labels: name, template (as written), parsed template.
    pub labels: Vec<(String, String, Template)>,
    /// Annotations: name, template (as written), parsed template.
    pub annotations: Vec<(String, String, Template)>,
}

impl Rule {
    /// Identity across reloads: the same kind, name, expression, labels and `for` keep their
    /// alert state (Prometheus keys it by the rule's text the same way).
    pub fn identity(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v, _)| format!("{k}={v}"))
            .collect();
        format!(
            "{:?}\u{0}{}\u{0}{}\u{0}{}",
            self.kind,
            self.name,
            self.expr_text,
            labels.join("\u{1}")
        )
    }
}

/// A validated group.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    /// Group name.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// Its own evaluation interval, if set.
    pub interval: Option<Duration>,
    /// Most alerts (or series) one rule may produce; 0 = no limit.
    pub limit: usize,
    /// Rules, in file order (later rules see earlier recording rules' output).
    pub rules: Vec<Arc<Rule>>,
}

/// Parses and validates one rule file's text. `file` names it in errors.
///
/// # Errors
/// Every problem found, each with its position.
pub fn parse_rule_file(file: &str, text: &str) -> Result<Vec<RuleGroup>, Vec<RuleError>> {
    if is_blank_yaml(text) {
        return Ok(Vec::new());
    }
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| vec![yaml_error(file, &e)])?;
    let mut errors = Vec::new();
    let mut groups: Vec<RuleGroup> = Vec::new();
    for raw_group in raw.groups {
        let at = |s: &Spanned<String>, message: String| RuleError {
            file: file.to_owned(),
            line: s.referenced.line(),
            column: s.referenced.column(),
            message,
        };
        let name = raw_group.name.value.clone();
        if name.is_empty() {
            errors.push(at(&raw_group.name, "Groupname must not be empty".into()));
        }
        if groups.iter().any(|g| g.name == name) {
            errors.push(at(
                &raw_group.name,
                format!("groupname: \"{name}\" is repeated in the same file"),
            ));
        }
        let interval = match &raw_group.interval {
            None => None,
            Some(text) => match parse_duration(&text.value) {
                Ok(d) if d.is_zero() => None,
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(at(text, format!("group \"{name}\": interval: {e}")));
                    None
                }
            },
        };
        let mut rules = Vec::new();
        for (i, raw_rule) in raw_group.rules.into_iter().enumerate() {
            match validate_rule(file, &name, i + 1, raw_rule) {
                Ok(rule) => rules.push(Arc::new(rule)),
                Err(mut rule_errors) => errors.append(&mut rule_errors),
            }
        }
        groups.push(RuleGroup {
            name,
            file: file.to_owned(),
            interval,
            limit: usize::try_from(raw_group.limit.unwrap_or(0)).unwrap_or(usize::MAX),
            rules,
        });
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// Reads and parses rule files.
///
/// # Errors
/// Every problem in every file (unreadable files included).
pub fn load_rule_files(paths: &[impl AsRef<Path>]) -> Result<Vec<RuleGroup>, Vec<RuleError>> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => match parse_rule_file(&name, &text) {
                Ok(mut g) => groups.append(&mut g),
                Err(mut e) => errors.append(&mut e),
            },
            Err(error) => errors.push(RuleError {
                file: name,
                line: 0,
                column: 0,
                message: format!("cannot read the rule file: {error}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// A Prometheus duration (`30s`, `5m`, `1h30m`, `2d`, `1w`, `0s`, `0`): units in the order
/// y w d h m s ms, each at most once, as Prometheus' `model.ParseDuration` takes them.
///
/// # Errors
/// When the text is not one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("not a valid duration string: {text:?}");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = text;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        // "ms" before "m": the longest unit that matches.
        let unit_len = if rest.starts_with("ms") { 2 } else { 1 };
        let unit = rest.get(..unit_len).ok_or_else(bad)?;
        let idx = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(bad)?
            + next_unit;
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
        next_unit = idx + 1;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_millis(total))
}

fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    })
}

fn yaml_error(file: &str, error: &serde_saphyr::Error) -> RuleError {
    let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
    // The first line of the message; the rest is a source snippet.
    let message = error.to_string();
    let message = message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML")
        .trim()
        .trim_start_matches("error: ")
        .to_owned();
    RuleError {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}

fn validate_rule(
    file: &str,
    group: &str,
    index: usize,
    raw: Spanned<RawRule>,
) -> Result<Rule, Vec<RuleError>> {
    let location = raw.referenced;
    let raw = raw.value;
    let display_name = raw
        .alert
        .as_ref()
        .or(raw.record.as_ref())
        .map(|s| s.value.clone())
        .unwrap_or_default();
    let mut errors = Vec::new();
    let mut push = |line: u64, column: u64, message: String| {
        errors.push(RuleError {
            file: file.to_owned(),
            line,
            column,
            message: format!("group \"{group}\", rule {index}, \"{display_name}\": {message}"),
        });
    };
    let (kind, name) = match (&raw.alert, &raw.record) {
        (Some(_), Some(record)) => {
            push(
                record.referenced.line(),
                record.referenced.column(),
                "only one of 'record' and 'alert' must be set".into(),
            );
            return Err(errors);
        }
        (None, None) => {
            push(
                location.line(),
                location.column(),
                "one of 'record' or 'alert' must be set".into(),
            );
            return Err(errors);
        }
        (Some(alert), None) => {
            if alert.value.is_empty() {
                push(
                    alert.referenced.line(),
                    alert.referenced.column(),
                    "one of 'record' or 'alert' must be set".into(),
                );
            }
            (RuleKind::Alerting, alert.value.clone())
        }
        (None, Some(record)) => {
            if !is_valid_metric_name(&record.value) {
                push(
                    record.referenced.line(),
                    record.referenced.column(),
                    format!("invalid recording rule name: {}", record.value),
                );
            }
            (RuleKind::Recording, record.value.clone())
        }
    };
    let expr = match &raw.expr {
        None => {
            push(
                location.line(),
                location.column(),
                "field 'expr' must be set in rule".into(),
            );
            None
        }
        Some(text) if text.value.0.trim().is_empty() => {
            push(
                text.referenced.line(),
                text.referenced.column(),
                "field 'expr' must be set in rule".into(),
            );
            None
        }
        Some(text) => match query::parse(&text.value.0) {
            Ok(expr) => {
                let value_type = expr.value_type();
                if matches!(value_type, ValueType::Vector | ValueType::Scalar) {
                    Some(expr)
                } else {
                    push(
                        text.referenced.line(),
                        text.referenced.column(),
                        format!(
                            "expression must evaluate to an instant vector or a scalar, not a {value_type}"
                        ),
                    );
                    None
                }
            }
            Err(query::QueryError::Parse(e)) => {
                push(
                    text.referenced.line(),
                    text.referenced.column(),
                    format!("could not parse expression: {e}"),
                );
                None
            }
            Err(other) => {
                push(
                    text.referenced.line(),
                    text.referenced.column(),
                    format!("cannot evaluate this expression: {other}"),
                );
                None
            }
        },
    };
    let mut duration = |field: &str, value: &Option<Spanned<String>>| -> Duration {
        let Some(text) = value else {
            return Duration::ZERO;
        };
        if kind == RuleKind::Recording {
            push(
                text.referenced.line(),
                text.referenced.column(),
                format!("invalid field '{field}' in recording rule"),
            );
            return Duration::ZERO;
        }
        parse_duration(&text.value).unwrap_or_else(|e| {
            push(
                text.referenced.line(),
                text.referenced.column(),
                format!("{field}: {e}"),
            );
            Duration::ZERO
        })
    };
    let hold = duration("for", &raw.hold);
    let keep_firing_for = duration("keep_firing_for", &raw.keep_firing_for);
    let template_name = format!("__alert_{name}");
    let mut labels = Vec::new();
    for (key, value) in raw.labels.map(|l| l.value).unwrap_or_default() {
        if !is_valid_label_name(&key) || key == METRIC_NAME_LABEL {
            push(
                location.line(),
                location.column(),
                format!("invalid label name: {key}"),
            );
            continue;
        }
        match Template::parse(&template_name, &value.0) {
            Ok(template) => labels.push((key, value.0, template)),
            Err(e) => push(
                location.line(),
                location.column(),
                format!("label {key}: {e}"),
            ),
        }
    }
    let mut annotations = Vec::new();
    match raw.annotations {
        Some(a) if kind == RuleKind::Recording => push(
            a.referenced.line(),
            a.referenced.column(),
            "invalid field 'annotations' in recording rule".into(),
        ),
        Some(a) => {
            for (key, value) in a.value {
                if !is_valid_label_name(&key) {
                    push(
                        a.referenced.line(),
                        a.referenced.column(),
                        format!("invalid annotation name: {key}"),
                    );
                    continue;
                }
                match Template::parse(&template_name, &value.0) {
                    Ok(template) => annotations.push((key, value.0, template)),
                    Err(e) => push(
                        a.referenced.line(),
                        a.referenced.column(),
                        format!("annotation {key}: {e}"),
                    ),
                }
            }
        }
        None => {}
    }
    match expr {
        Some(expr) if errors.is_empty() => Ok(Rule {
            name,
            kind,
            expr,
            expr_text: raw.expr.map(|e| e.value.0).unwrap_or_default(),
            hold,
            keep_firing_for,
            labels,
            annotations,
        }),
        _ => Err(errors),
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    #[serde(default)]
    interval: Option<Spanned<String>>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    alert: Option<Spanned<String>>,
    #[serde(default)]
    record: Option<Spanned<String>>,
    #[serde(default)]
    expr: Option<Spanned<Scalar>>,
    #[serde(default, rename = "for")]
    hold: Option<Spanned<String>>,
    #[serde(default)]
    keep_firing_for: Option<Spanned<String>>,
    #[serde(default)]
    labels: Option<Spanned<BTreeMap<String, Scalar>>>,
    #[serde(default)]
    annotations: Option<Spanned<BTreeMap<String, Scalar>>>,
}

/// A YAML scalar read as text, as Go's YAML decoder gives a string field (`expr: 1`,
/// `priority: 2`).
#[derive(Debug, Clone, Default)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests;
