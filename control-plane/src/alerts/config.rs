//! The routing configuration, in Alertmanager's file format: `global` (SMTP and Slack defaults),
//! `route` (the tree, with `matchers` or the older `match`/`match_re`), `receivers` and
//! `inhibit_rules`. An operator's `alertmanager.yml` loads unchanged as long as it uses the
//! Slack, email and webhook integrations; what this version does not do (notification templates,
//! time intervals, other integrations) is refused with the field named, never ignored.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::{
    dispatch::{InhibitRule, IntegrationSpec},
    matcher::{MatchType, Matcher},
    notify::ReceiverConfig,
    route::{GroupBy, Route, RouteTree},
    rules::parse_duration,
};

/// Alertmanager's defaults.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// See [`DEFAULT_GROUP_WAIT`].
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
/// See [`DEFAULT_GROUP_WAIT`].
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// A loaded routing configuration.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// The tree.
    pub tree: RouteTree,
    /// Inhibition rules.
    pub inhibit: Vec<InhibitRule>,
    /// Receivers, with global defaults applied.
    pub receivers: Vec<ReceiverConfig>,
}

impl RoutingConfig {
    /// Without a file: one receiver with no integrations (alerts are only shown), grouped by
    /// alert name and host, and a critical alert inhibits the warning of the same alert and
    /// host (SPEC §7).
    pub fn builtin() -> Self {
        let matcher = |v: &str| Matcher::new("severity", MatchType::Equal, v);
        let inhibit = match (matcher("critical"), matcher("warning")) {
            (Ok(source), Ok(target)) => vec![InhibitRule {
                source: vec![source],
                target: vec![target],
                equal: vec!["alertname".into(), "host".into()],
            }],
            _ => Vec::new(),
        };
        Self {
            tree: RouteTree::single(
                "default",
                GroupBy::Labels(vec!["alertname".into(), "host".into()]),
                [
                    DEFAULT_GROUP_WAIT,
                    DEFAULT_GROUP_INTERVAL,
                    DEFAULT_REPEAT_INTERVAL,
                ],
            ),
            inhibit,
            receivers: vec![ReceiverConfig {
                name: "default".into(),
                slack_configs: Vec::new(),
                email_configs: Vec::new(),
                webhook_configs: Vec::new(),
                alertmanager_configs: Vec::new(),
            }],
        }
    }

    /// Parses an Alertmanager configuration file's text.
    ///
    /// # Errors
    /// One line naming the problem (and its position for YAML errors).
    pub fn parse(file: &str, text: &str) -> Result<Self, String> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
            let position = e
                .location()
                .map(|l| format!("{}:{}: ", l.line(), l.column()))
                .unwrap_or_default();
            let message = e.to_string();
            format!(
                "{file}: {position}{}",
                message
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("invalid YAML")
                    .trim()
            )
        })?;
        let bad = |message: String| format!("{file}: {message}");
        if !raw.templates.is_empty() {
            return Err(bad("`templates`: custom notification templates are not supported; remove them (messages use built-in layouts)".into()));
        }
        if !raw.time_intervals.is_empty() || !raw.mute_time_intervals.is_empty() {
            return Err(bad(
                "`time_intervals`: time-based muting is not supported; use silences".into(),
            ));
        }
        let global = raw.global.unwrap_or_default();
        let mut receivers = Vec::new();
        for mut receiver in raw.receivers {
            let Some(map) = receiver.as_object_mut() else {
                return Err(bad("`receivers`: each receiver is a mapping".into()));
            };
            global.apply(map);
            let parsed: ReceiverConfig = serde_json::from_value(receiver.clone()).map_err(|e| {
                bad(format!(
                    "receiver {}: {e}",
                    receiver.get("name").and_then(|n| n.as_str()).unwrap_or("?")
                ))
            })?;
            if receivers
                .iter()
                .any(|r: &ReceiverConfig| r.name == parsed.name)
            {
                return Err(bad(format!("receiver {:?} is defined twice", parsed.name)));
            }
            receivers.push(parsed);
        }
        let Some(root) = raw.route else {
            return Err(bad(
                "`route` is required (at least `route: {receiver: NAME}`)".into(),
            ));
        };
        if !root.matchers.is_empty() || !root.match_equal.is_empty() || !root.match_re.is_empty() {
            return Err(bad("the root route must not have matchers".into()));
        }
        let Some(root_receiver) = &root.receiver else {
            return Err(bad("the root route needs a `receiver`".into()));
        };
        let defaults = Inherited {
            receiver: root_receiver.clone(),
            group_by: GroupBy::Labels(Vec::new()),
            timings: [
                DEFAULT_GROUP_WAIT,
                DEFAULT_GROUP_INTERVAL,
                DEFAULT_REPEAT_INTERVAL,
            ],
        };
        let mut tree = RouteTree { routes: Vec::new() };
        flatten(&root, &defaults, None, &mut tree).map_err(&bad)?;
        for route in &tree.routes {
            if !receivers.iter().any(|r| r.name == route.receiver) {
                return Err(bad(format!(
                    "route {} uses receiver {:?}, which is not defined",
                    route.key, route.receiver
                )));
            }
        }
        let mut inhibit = Vec::new();
        for (i, rule) in raw.inhibit_rules.into_iter().enumerate() {
            let source = matchers(
                &rule.source_matchers,
                &rule.source_match,
                &rule.source_match_re,
            )
            .map_err(|e| bad(format!("inhibit_rules[{i}]: {e}")))?;
            let target = matchers(
                &rule.target_matchers,
                &rule.target_match,
                &rule.target_match_re,
            )
            .map_err(|e| bad(format!("inhibit_rules[{i}]: {e}")))?;
            inhibit.push(InhibitRule {
                source,
                target,
                equal: rule.equal,
            });
        }
        Ok(Self {
            tree,
            inhibit,
            receivers,
        })
    }

    /// The integrations of each receiver, in the order notifiers are built (Slack, email,
    /// webhook, Alertmanager), named as [`super::notify::deliveries`] names them.
    pub fn integration_specs(&self) -> std::collections::HashMap<String, Vec<IntegrationSpec>> {
        self.receivers
            .iter()
            .map(|r| {
                let mut specs = Vec::new();
                for (i, c) in r.slack_configs.iter().enumerate() {
                    specs.push(IntegrationSpec::new("slack", i, c.send_resolved));
                }
                for (i, c) in r.email_configs.iter().enumerate() {
                    specs.push(IntegrationSpec::new("email", i, c.send_resolved));
                }
                for (i, c) in r.webhook_configs.iter().enumerate() {
                    specs.push(IntegrationSpec::new("webhook", i, c.send_resolved));
                }
                for i in 0..r.alertmanager_configs.len() {
                    // An Alertmanager resolves what it stops hearing about: resend firing
                    // alerts every minute, as Prometheus does.
                    let mut spec = IntegrationSpec::new("alertmanager", i, true);
                    spec.resend_every_ms = Some(60_000);
                    specs.push(spec);
                }
                (r.name.clone(), specs)
            })
            .collect()
    }
}

struct Inherited {
    receiver: String,
    group_by: GroupBy,
    timings: [Duration; 3],
}

fn flatten(
    raw: &RawRoute,
    parent: &Inherited,
    parent_key: Option<&str>,
    tree: &mut RouteTree,
) -> Result<usize, String> {
    if !raw.mute_time_intervals.is_empty() || !raw.active_time_intervals.is_empty() {
        return Err("route time intervals are not supported; use silences".into());
    }
    let matchers = matchers(&raw.matchers, &raw.match_equal, &raw.match_re)?;
    let rendered: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    let own = format!("{{{}}}", rendered.join(","));
    let key = match parent_key {
        None => own,
        Some(parent) => format!("{parent}/{own}"),
    };
    let duration = |field: &str,
                    value: &Option<String>,
                    default: Duration|
     -> Result<Duration, String> {
        match value {
            None => Ok(default),
            Some(text) => parse_duration(text).map_err(|e| format!("route {key}: {field}: {e}")),
        }
    };
    let group_by = match &raw.group_by {
        None => parent.group_by.clone(),
        Some(labels) if labels.iter().any(|l| l == "...") => GroupBy::All,
        Some(labels) => GroupBy::Labels(labels.clone()),
    };
    let timings = [
        duration("group_wait", &raw.group_wait, parent.timings[0])?,
        duration("group_interval", &raw.group_interval, parent.timings[1])?,
        duration("repeat_interval", &raw.repeat_interval, parent.timings[2])?,
    ];
    if timings[1].is_zero() || timings[2].is_zero() {
        return Err(format!(
            "route {key}: group_interval and repeat_interval must be greater than 0"
        ));
    }
    let inherited = Inherited {
        receiver: raw
            .receiver
            .clone()
            .unwrap_or_else(|| parent.receiver.clone()),
        group_by,
        timings,
    };
    let idx = tree.routes.len();
    tree.routes.push(Route {
        key: key.clone(),
        receiver: inherited.receiver.clone(),
        group_by: inherited.group_by.clone(),
        group_wait: timings[0],
        group_interval: timings[1],
        repeat_interval: timings[2],
        matchers,
        continue_matching: raw.continue_matching,
        children: Vec::new(),
    });
    for child in &raw.routes {
        let child_idx = flatten(child, &inherited, Some(&key), tree)?;
        tree.routes[idx].children.push(child_idx);
    }
    Ok(idx)
}

fn matchers(
    list: &[String],
    equal: &BTreeMap<String, String>,
    regex: &BTreeMap<String, String>,
) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::new();
    for text in list {
        out.extend(super::matcher::parse_list(text).map_err(|e| e.to_string())?);
    }
    for (name, value) in equal {
        out.push(Matcher::new(name, MatchType::Equal, value).map_err(|e| e.to_string())?);
    }
    for (name, value) in regex {
        out.push(Matcher::new(name, MatchType::Regex, value).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: Option<Global>,
    #[serde(default)]
    route: Option<RawRoute>,
    #[serde(default)]
    receivers: Vec<serde_json::Value>,
    #[serde(default)]
    inhibit_rules: Vec<RawInhibit>,
    #[serde(default)]
    templates: Vec<String>,
    #[serde(default)]
    time_intervals: Vec<serde_json::Value>,
    #[serde(default)]
    mute_time_intervals: Vec<serde_json::Value>,
}

/// `global:` defaults for receivers.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct Global {
    #[serde(default)]
    resolve_timeout: Option<String>,
    #[serde(default)]
    smtp_smarthost: Option<String>,
    #[serde(default)]
    smtp_from: Option<String>,
    #[serde(default)]
    smtp_hello: Option<String>,
    #[serde(default)]
    smtp_auth_username: Option<String>,
    #[serde(default)]
    smtp_auth_password: Option<String>,
    #[serde(default)]
    smtp_auth_password_file: Option<String>,
    #[serde(default)]
    smtp_require_tls: Option<bool>,
    #[serde(default)]
    slack_api_url: Option<String>,
    #[serde(default)]
    slack_api_url_file: Option<String>,
}

impl Global {
    /// Fills a receiver's integrations' unset fields from the globals, as Alertmanager does.
    fn apply(&self, receiver: &mut serde_json::Map<String, serde_json::Value>) {
        let _ = &self.resolve_timeout;
        let fill = |config: &mut serde_json::Value,
                    key: &str,
                    value: Option<serde_json::Value>,
                    unless: &[&str]| {
            if let (Some(map), Some(value)) = (config.as_object_mut(), value)
                && !map.contains_key(key)
                && !unless.iter().any(|u| map.contains_key(*u))
            {
                map.insert(key.to_owned(), value);
            }
        };
        let string = |v: &Option<String>| v.clone().map(serde_json::Value::String);
        if let Some(serde_json::Value::Array(configs)) = receiver.get_mut("email_configs") {
            for config in configs {
                fill(config, "smarthost", string(&self.smtp_smarthost), &[]);
                fill(config, "from", string(&self.smtp_from), &[]);
                fill(config, "hello", string(&self.smtp_hello), &[]);
                fill(
                    config,
                    "auth_username",
                    string(&self.smtp_auth_username),
                    &[],
                );
                fill(
                    config,
                    "auth_password",
                    string(&self.smtp_auth_password),
                    &["auth_password_file", "auth_password_env"],
                );
                fill(
                    config,
                    "auth_password_file",
                    string(&self.smtp_auth_password_file),
                    &["auth_password", "auth_password_env"],
                );
                fill(
                    config,
                    "require_tls",
                    self.smtp_require_tls.map(serde_json::Value::Bool),
                    &[],
                );
            }
        }
        if let Some(serde_json::Value::Array(configs)) = receiver.get_mut("slack_configs") {
            for config in configs {
                fill(
                    config,
                    "api_url",
                    string(&self.slack_api_url),
                    &["api_url_file", "api_url_env"],
                );
                fill(
                    config,
                    "api_url_file",
                    string(&self.slack_api_url_file),
                    &["api_url", "api_url_env"],
                );
            }
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    receiver: Option<String>,
    #[serde(default)]
    group_by: Option<Vec<String>>,
    #[serde(default)]
    group_wait: Option<String>,
    #[serde(default)]
    group_interval: Option<String>,
    #[serde(default)]
    repeat_interval: Option<String>,
    #[serde(default)]
    matchers: Vec<String>,
    #[serde(default, rename = "match")]
    match_equal: BTreeMap<String, String>,
    #[serde(default)]
    match_re: BTreeMap<String, String>,
    #[serde(default, rename = "continue")]
    continue_matching: bool,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    mute_time_intervals: Vec<String>,
    #[serde(default)]
    active_time_intervals: Vec<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawInhibit {
    #[serde(default)]
    source_matchers: Vec<String>,
    #[serde(default)]
    target_matchers: Vec<String>,
    #[serde(default)]
    source_match: BTreeMap<String, String>,
    #[serde(default)]
    source_match_re: BTreeMap<String, String>,
    #[serde(default)]
    target_match: BTreeMap<String, String>,
    #[serde(default)]
    target_match_re: BTreeMap<String, String>,
    #[serde(default)]
    equal: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::state::LabelMap;

    const CONFIG: &str = r#"
global:
  smtp_smarthost: 'smtp.example.com:587'
  smtp_from: 'alerts@example.com'
  resolve_timeout: 5m
route:
  receiver: team
  group_by: [alertname, host]
  group_wait: 10s
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
      group_wait: 1s
      continue: true
    - match_re: {service: 'db|cache'}
      receiver: dba
      group_by: ['...']
receivers:
  - name: team
    email_configs:
      - to: team@example.com
  - name: pager
    slack_configs:
      - api_url: 'https://hooks.slack.com/services/T/B/X'
        channel: '#pager'
    webhook_configs:
      - url: 'http://127.0.0.1:9/hook'
        send_resolved: false
  - name: dba
    alertmanager_configs:
      - url: 'http://127.0.0.1:9093'
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [alertname, host]
"#;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_alertmanager_config_loads() {
        let config = RoutingConfig::parse("am.yml", CONFIG).expect("loads");
        assert_eq!(config.tree.routes.len(), 3);
        let root = &config.tree.routes[0];
        assert_eq!(
            (root.receiver.as_str(), root.group_wait),
            ("team", Duration::from_secs(10))
        );
        assert_eq!(root.repeat_interval, DEFAULT_REPEAT_INTERVAL);
        let pager = &config.tree.routes[1];
        assert_eq!(pager.key, "{}/{severity=\"critical\"}");
        assert_eq!(pager.group_wait, Duration::from_secs(1));
        assert_eq!(pager.group_by, root.group_by, "inherited");
        assert_eq!(config.tree.routes[2].group_by, GroupBy::All);
        let critical_db = labels(&[("severity", "critical"), ("service", "db")]);
        assert_eq!(config.tree.matching(&critical_db), [1, 2]);
        assert_eq!(
            config.tree.matching(&labels(&[("severity", "warning")])),
            [0]
        );
        let team = &config.receivers[0];
        assert_eq!(
            team.email_configs[0].from, "alerts@example.com",
            "global default applied"
        );
        assert_eq!(team.email_configs[0].smarthost, "smtp.example.com:587");
        let specs = config.integration_specs();
        let pager: Vec<(String, bool)> = specs["pager"]
            .iter()
            .map(|s| (s.name(), s.send_resolved))
            .collect();
        assert_eq!(
            pager,
            [("slack".to_owned(), true), ("webhook".to_owned(), false)]
        );
        assert_eq!(specs["dba"][0].resend_every_ms, Some(60_000));
        assert_eq!(config.inhibit.len(), 1);
    }

    #[test]
    fn unsupported_or_wrong_configs_are_refused() {
        for (text, needle) in [
            (
                "route: {receiver: x}\nreceivers: [{name: team}]\n",
                "receiver \"x\", which is not defined",
            ),
            ("receivers: [{name: team}]\n", "`route` is required"),
            (
                "route: {receiver: team, matchers: ['a=b']}\nreceivers: [{name: team}]\n",
                "root route must not have matchers",
            ),
            (
                "route: {receiver: team}\nreceivers: [{name: team, pagerduty_configs: []}]\n",
                "receiver team: unknown field",
            ),
            (
                "route: {receiver: team}\nreceivers: [{name: team}]\ntemplates: ['x.tmpl']\n",
                "templates",
            ),
            (
                "route: {receiver: team, group_wait: soon}\nreceivers: [{name: team}]\n",
                "group_wait",
            ),
            (
                "route: {receiver: team, routes: [{matchers: ['a=~(']}]}\nreceivers: [{name: team}]\n",
                "bad matcher",
            ),
            (
                "route: {receiver: team}\nreceivers: [{name: team}, {name: team}]\n",
                "defined twice",
            ),
            ("route: [\n", "am.yml: "),
        ] {
            let error = RoutingConfig::parse("am.yml", text).expect_err(text);
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
