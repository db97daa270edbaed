//! Backup jobs (pure): what an operator asks for (`POST /ops/backups/jobs`), validated once into
//! a [`Job`] with its parsed schedule; the guide's defaults per class; when a job runs next; which
//! snapshots its retention keeps.

use std::str::FromStr as _;

use aisemble_shared::{ids::AgentId, wire::BackupSource};
use chrono::{DateTime, TimeZone as _, Utc};
use croner::Cron;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const DAY_MS: i64 = 86_400_000;

/// A job as the operator writes it (and as `backup-jobs.json` keeps it).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique name: letters, digits, `-`, `_`, `.`.
    #[schema(example = "etc-config")]
    pub name: String,
    /// `system`, `logs`, `models` or `data`: the guide's schedule and retention when those are
    /// not given (system daily 02:00 keep 30 d; logs daily 03:00 keep 7 d; models Sundays 01:00
    /// keep 14 d; data daily 04:00 keep 14 d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "system")]
    pub class: Option<String>,
    /// Agent names, or `["*"]` for every known agent.
    #[schema(example = json!(["gpu-node-07"]))]
    pub agents: Vec<String>,
    /// What to read on each agent.
    pub source: SourceSpec,
    /// Five-field cron expression, UTC (`0 2 * * *`). Without one (and without a class), the
    /// job runs only when asked (`POST /ops/backups/manual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "0 2 * * *")]
    pub schedule: Option<String>,
    /// Which snapshots to keep, per agent; without one (and without a class), all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// What a job reads.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// Files and directories, recursively.
    Paths {
        /// Absolute paths.
        paths: Vec<String>,
        /// Globs matched against absolute paths (`**/*.tmp`).
        #[serde(default)]
        excludes: Vec<String>,
    },
    /// A command's standard output (no shell): `["pg_dumpall"]`, `["tar", "-C", "/srv", "-c", "."]`.
    Command {
        /// Program and arguments.
        command: Vec<String>,
        /// Stored as this file (default `<job>.out`).
        #[serde(default)]
        file_name: Option<String>,
    },
    /// A PostgreSQL database through `pg_dump --format=custom` on the host.
    Postgres {
        /// Connection string.
        url: String,
    },
    /// A Redis dataset through `redis-cli --rdb` on the host.
    Redis {
        /// Server URL.
        url: String,
    },
}

impl Default for SourceSpec {
    fn default() -> Self {
        Self::Paths {
            paths: Vec::new(),
            excludes: Vec::new(),
        }
    }
}

/// Snapshots to keep, per job and agent. A snapshot is kept when either rule keeps it; the newest
/// is always kept.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// The newest N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Those made in the last N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u32>,
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    /// As written.
    pub spec: JobSpec,
    /// The effective schedule (given, or the class's), parsed.
    pub schedule: Option<(String, Cron)>,
    /// The effective retention.
    pub retention: Option<Retention>,
    /// The source as agents receive it.
    pub source: BackupSource,
}

/// The guide's defaults: schedule and retention in days.
fn class_defaults(class: &str) -> Option<(&'static str, u32)> {
    match class {
        "system" => Some(("0 2 * * *", 30)),
        "logs" => Some(("0 3 * * *", 7)),
        "models" => Some(("0 1 * * 0", 14)),
        "data" => Some(("0 4 * * *", 14)),
        _ => None,
    }
}

/// Why a job was refused; the text names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct JobError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> JobError {
    JobError {
        field,
        reason: reason.into(),
    }
}

impl Job {
    /// Validates a spec.
    ///
    /// # Errors
    /// The first problem found, naming its field.
    pub fn new(spec: JobSpec) -> Result<Self, JobError> {
        let name_ok = !spec.name.is_empty()
            && spec.name.len() <= 64
            && spec
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(bad("name", "1 to 64 letters, digits, `-`, `_` or `.`"));
        }
        let defaults = match spec.class.as_deref() {
            None => None,
            Some(class) => Some(class_defaults(class).ok_or_else(|| {
                bad(
                    "class",
                    format!("{class:?} is not one of system, logs, models, data"),
                )
            })?),
        };
        if spec.agents.is_empty() {
            return Err(bad("agents", "name at least one agent, or \"*\" for all"));
        }
        for agent in &spec.agents {
            if agent != "*" {
                AgentId::parse(agent).map_err(|e| bad("agents", e.to_string()))?;
            }
        }
        let schedule_text = spec
            .schedule
            .as_deref()
            .or(defaults.map(|(schedule, _)| schedule));
        let schedule = match schedule_text {
            None => None,
            Some(text) => {
                let text = text.trim();
                if text.split_whitespace().count() != 5 {
                    return Err(bad(
                        "schedule",
                        format!("{text:?}: five fields (minute hour day month weekday), UTC"),
                    ));
                }
                let cron =
                    Cron::from_str(text).map_err(|e| bad("schedule", format!("{text:?}: {e}")))?;
                Some((text.to_owned(), cron))
            }
        };
        let retention = spec.retention.or(defaults.map(|(_, days)| Retention {
            keep_last: None,
            keep_days: Some(days),
        }));
        if let Some(r) = retention
            && (r.keep_last == Some(0) || r.keep_days == Some(0))
        {
            return Err(bad(
                "retention",
                "keep_last and keep_days must be at least 1",
            ));
        }
        let source = match &spec.source {
            SourceSpec::Paths { paths, excludes } => {
                if paths.is_empty() {
                    return Err(bad("source.paths", "name at least one path"));
                }
                if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
                    return Err(bad("source.paths", format!("{p:?} is not absolute")));
                }
                for pattern in excludes {
                    if pattern.is_empty() {
                        return Err(bad("source.excludes", "an empty pattern"));
                    }
                }
                BackupSource::Paths {
                    paths: paths.clone(),
                    excludes: excludes.clone(),
                }
            }
            SourceSpec::Command { command, file_name } => {
                if command.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(bad("source.command", "name the program to run"));
                }
                let file_name = file_name
                    .clone()
                    .unwrap_or_else(|| format!("{}.out", spec.name));
                if !aisemble_shared::wire::is_safe_entry_path(&file_name) {
                    return Err(bad("source.file_name", "a relative path without `..`"));
                }
                BackupSource::Command {
                    argv: command.clone(),
                    file_name,
                }
            }
            SourceSpec::Postgres { url } => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(bad("source.url", "a postgresql:// URL"));
                }
                BackupSource::Postgres { url: url.clone() }
            }
            SourceSpec::Redis { url } => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(bad("source.url", "a redis:// URL"));
                }
                BackupSource::Redis { url: url.clone() }
            }
        };
        Ok(Self {
            spec,
            schedule,
            retention,
            source,
        })
    }

    /// The first scheduled time strictly after `after_ms`, if the job has a schedule.
    pub fn next_run_after(&self, after_ms: i64) -> Option<i64> {
        let (_, cron) = self.schedule.as_ref()?;
        let after: DateTime<Utc> = Utc.timestamp_millis_opt(after_ms).single()?;
        cron.find_next_occurrence(&after, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The agents this job reads, given the agents known.
    pub fn targets(&self, known: &[String]) -> Vec<String> {
        if self.spec.agents.iter().any(|a| a == "*") {
            return known.to_vec();
        }
        self.spec.agents.clone()
    }

    /// What it reads, in words.
    pub fn describe_source(&self) -> String {
        match &self.spec.source {
            SourceSpec::Paths { paths, .. } => format!("paths {}", paths.join(", ")),
            SourceSpec::Command { command, .. } => format!("command {}", command.join(" ")),
            SourceSpec::Postgres { .. } => "postgres (pg_dump)".into(),
            SourceSpec::Redis { .. } => "redis (rdb)".into(),
        }
    }
}

/// The ids of `snapshots` (`(id, started_ms)` of one job and agent) that `retention` lets go
/// at `now_ms`.
pub fn to_forget(
    snapshots: &[(&str, i64)],
    retention: Option<Retention>,
    now_ms: i64,
) -> Vec<String> {
    let Some(retention) = retention else {
        return Vec::new();
    };
    let mut newest_first: Vec<&(&str, i64)> = snapshots.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(a.0)));
    newest_first
        .iter()
        .enumerate()
        .filter(|(index, s)| {
            let by_count = retention.keep_last.is_some_and(|n| *index < n as usize);
            let by_age = retention
                .keep_days
                .is_some_and(|days| now_ms - s.1 <= i64::from(days) * DAY_MS);
            *index > 0 && !by_count && !by_age
        })
        .map(|(_, s)| s.0.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Result<Job, String> {
        let spec: JobSpec = serde_json::from_value(json).map_err(|e| e.to_string())?;
        Job::new(spec).map_err(|e| e.to_string())
    }

    #[test]
    fn classes_give_the_guides_defaults_and_bad_jobs_name_their_field() {
        let job = spec(serde_json::json!({
            "name": "etc", "class": "system", "agents": ["node-1"],
            "source": {"type": "paths", "paths": ["/etc"], "excludes": ["**/*.tmp"]}
        }))
        .expect("valid");
        assert_eq!(
            job.schedule.as_ref().map(|s| s.0.as_str()),
            Some("0 2 * * *")
        );
        assert_eq!(job.retention.and_then(|r| r.keep_days), Some(30));
        // 2026-12-02T01:59:59Z → 02:00 the same day; 02:00 itself → the next day.
        let t = Utc
            .with_ymd_and_hms(2026, 12, 2, 1, 59, 59)
            .unwrap()
            .timestamp_millis();
        let two = Utc
            .with_ymd_and_hms(2026, 12, 2, 2, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(job.next_run_after(t), Some(two));
        assert_eq!(job.next_run_after(two), Some(two + DAY_MS));

        let models = spec(serde_json::json!({
            "name": "models", "class": "models", "agents": ["*"],
            "source": {"type": "paths", "paths": ["/models"]}
        }))
        .expect("valid");
        // Sunday 2026-12-06 01:00.
        let sunday = Utc
            .with_ymd_and_hms(2026, 12, 6, 1, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(models.next_run_after(t), Some(sunday));
        assert_eq!(models.targets(&["a".into(), "b".into()]), vec!["a", "b"]);

        let manual = spec(serde_json::json!({
            "name": "pg", "agents": ["db-1"], "source": {"type": "postgres", "url": "postgresql://127.0.0.1/test"}
        }))
        .expect("valid");
        assert!(manual.schedule.is_none() && manual.retention.is_none());
        assert_eq!(manual.next_run_after(t), None);

        for (body, field) in [
            (
                serde_json::json!({"name": "a b", "agents": ["x"], "source": {"type": "postgres", "url": "postgresql://h/d"}}),
                "name",
            ),
            (
                serde_json::json!({"name": "a", "class": "weekly", "agents": ["x"], "source": {"type": "postgres", "url": "postgresql://h/d"}}),
                "class",
            ),
            (
                serde_json::json!({"name": "a", "agents": [], "source": {"type": "postgres", "url": "postgresql://h/d"}}),
                "agents",
            ),
            (
                serde_json::json!({"name": "a", "agents": ["x"], "schedule": "every day", "source": {"type": "postgres", "url": "postgresql://h/d"}}),
                "schedule",
            ),
            (
                serde_json::json!({"name": "a", "agents": ["x"], "schedule": "0 61 * * *", "source": {"type": "postgres", "url": "postgresql://h/d"}}),
                "schedule",
            ),
            (
                serde_json::json!({"name": "a", "agents": ["x"], "retention": {"keep_last": 0}, "source": {"type": "postgres", "url": "postgresql://h/d"}}),
                "retention",
            ),
            (
                serde_json::json!({"name": "a", "agents": ["x"], "source": {"type": "paths", "paths": ["etc"]}}),
                "source.paths",
            ),
            (
                serde_json::json!({"name": "a", "agents": ["x"], "source": {"type": "command", "command": []}}),
                "source.command",
            ),
            (
                serde_json::json!({"name": "a", "agents": ["x"], "source": {"type": "command", "command": ["tar"], "file_name": "../x"}}),
                "source.file_name",
            ),
            (
                serde_json::json!({"name": "a", "agents": ["x"], "source": {"type": "redis", "url": "http://x"}}),
                "source.url",
            ),
        ] {
            let error = spec(body.clone()).expect_err(&body.to_string());
            assert!(error.starts_with(field), "{body}: {error}");
        }
        assert!(
            spec(serde_json::json!({"name": "a", "agents": ["x"], "source": {"type": "ftp"}}))
                .is_err()
        );
        assert!(spec(serde_json::json!({"name": "a", "agents": ["x"], "sched": "", "source": {"type": "redis", "url": "redis://h"}})).is_err());
    }

    #[test]
    fn retention_keeps_the_newest_the_last_n_and_the_recent_days() {
        let now = 100 * DAY_MS;
        let ids: Vec<String> = (0..10).map(|i| format!("{i:02}")).collect();
        let refs: Vec<(&str, i64)> = ids
            .iter()
            .zip(0..)
            .map(|(id, i)| (id.as_str(), now - i * DAY_MS))
            .collect();
        let keep = |keep_last, keep_days| {
            let mut forget = to_forget(
                &refs,
                Some(Retention {
                    keep_last,
                    keep_days,
                }),
                now,
            );
            forget.sort();
            forget
        };
        assert_eq!(
            keep(Some(3), None),
            ["03", "04", "05", "06", "07", "08", "09"]
        );
        assert_eq!(keep(None, Some(7)), ["08", "09"]);
        assert_eq!(keep(Some(9), Some(2)), ["09"]);
        assert!(to_forget(&refs, None, now).is_empty());
        // All older than the window: the newest stays anyway.
        let later = now + 365 * DAY_MS;
        let forget = to_forget(
            &refs,
            Some(Retention {
                keep_last: None,
                keep_days: Some(1),
            }),
            later,
        );
        assert_eq!(forget.len(), 9);
        assert!(!forget.contains(&"00".to_owned()));
    }
}
