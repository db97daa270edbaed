//! Silences, as Alertmanager keeps them: matchers, a start and an end, who and why. A silence
//! mutes every alert all its matchers match while it is active; expiring one ends it now. They
//! are persisted (sled) and survive restarts; expired silences are kept for
//! [`EXPIRED_RETENTION_MS`] so the history stays visible, then dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    matcher::{MatchType, Matcher, MatcherError},
    state::LabelMap,
};

/// Expired silences are kept this long (Alertmanager's default data retention, 120 h).
pub const EXPIRED_RETENTION_MS: i64 = 120 * 3_600_000;

/// Where a silence is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    /// Starts in the future.
    Pending,
    /// Muting now.
    Active,
    /// Ended.
    Expired,
}

impl SilenceState {
    /// `pending`, `active`, `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Expired => "expired",
        }
    }
}

/// One silence.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    /// Random id.
    pub id: String,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Start (ms since the epoch).
    pub starts_at: i64,
    /// End (ms).
    pub ends_at: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Last change (ms).
    pub updated_at: i64,
}

impl Silence {
    /// Its state at `now`.
    pub fn state(&self, now: i64) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// Whether it mutes `labels` at `now`.
    pub fn mutes(&self, labels: &LabelMap, now: i64) -> bool {
        self.state(now) == SilenceState::Active && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Why a silence is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// No matchers, or only matchers that match everything.
    #[error("a silence needs at least one matcher that does not match the empty string")]
    MatchesEverything,
    /// A matcher does not parse.
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    /// End not after start.
    #[error("endsAt must be after startsAt")]
    EndBeforeStart,
    /// Ends in the past.
    #[error("endsAt is in the past")]
    EndInPast,
    /// No such silence.
    #[error("no silence with id {0:?}")]
    NotFound(String),
    /// Already expired.
    #[error("silence {0:?} has already expired")]
    AlreadyExpired(String),
}

/// The set of silences (pure: persistence is the caller's, through [`SilenceRecord`]).
#[derive(Debug, Clone, Default)]
pub struct Silences {
    by_id: BTreeMap<String, Silence>,
}

impl Silences {
    /// Validates and adds (or replaces, same id) a silence.
    ///
    /// # Errors
    /// Matchers that match everything, an end not after the start or in the past.
    pub fn upsert(&mut self, silence: Silence, now: i64) -> Result<(), SilenceError> {
        if !silence
            .matchers
            .iter()
            .any(|m| !m.matches(&LabelMap::new()))
        {
            return Err(SilenceError::MatchesEverything);
        }
        if silence.ends_at <= silence.starts_at {
            return Err(SilenceError::EndBeforeStart);
        }
        if silence.ends_at <= now {
            return Err(SilenceError::EndInPast);
        }
        self.by_id.insert(silence.id.clone(), silence);
        Ok(())
    }

    /// Ends a silence now (a pending one ends before it starts).
    ///
    /// # Errors
    /// Unknown or already expired.
    pub fn expire(&mut self, id: &str, now: i64) -> Result<Silence, SilenceError> {
        let silence = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_owned()))?;
        match silence.state(now) {
            SilenceState::Expired => Err(SilenceError::AlreadyExpired(id.to_owned())),
            SilenceState::Pending => {
                silence.starts_at = now;
                silence.ends_at = now;
                silence.updated_at = now;
                Ok(silence.clone())
            }
            SilenceState::Active => {
                silence.ends_at = now;
                silence.updated_at = now;
                Ok(silence.clone())
            }
        }
    }

    /// Ids of the silences muting `labels` now.
    pub fn muting(&self, labels: &LabelMap, now: i64) -> Vec<String> {
        self.by_id
            .values()
            .filter(|s| s.mutes(labels, now))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Every silence, newest first.
    pub fn list(&self) -> Vec<&Silence> {
        let mut all: Vec<&Silence> = self.by_id.values().collect();
        all.sort_by(|a, b| b.starts_at.cmp(&a.starts_at).then(a.id.cmp(&b.id)));
        all
    }

    /// One silence.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.by_id.get(id)
    }

    /// Drops silences expired longer than [`EXPIRED_RETENTION_MS`]; returns their ids.
    pub fn gc(&mut self, now: i64) -> Vec<String> {
        let old: Vec<String> = self
            .by_id
            .values()
            .filter(|s| now - s.ends_at > EXPIRED_RETENTION_MS)
            .map(|s| s.id.clone())
            .collect();
        for id in &old {
            self.by_id.remove(id);
        }
        old
    }
}

/// A silence as persisted and as the API shows it (Alertmanager's v2 shape).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SilenceRecord {
    /// Id.
    pub id: String,
    /// Matchers.
    pub matchers: Vec<MatcherRecord>,
    /// Start (ms).
    pub starts_at_ms: i64,
    /// End (ms).
    pub ends_at_ms: i64,
    /// Author.
    pub created_by: String,
    /// Comment.
    pub comment: String,
    /// Last change (ms).
    pub updated_at_ms: i64,
}

/// A matcher in Alertmanager's v2 JSON shape.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MatcherRecord {
    /// Label name.
    pub name: String,
    /// Value or regex.
    pub value: String,
    /// Regex match.
    #[serde(default)]
    pub is_regex: bool,
    /// Equality (false: negated).
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl MatcherRecord {
    /// From a matcher.
    pub fn from_matcher(m: &Matcher) -> Self {
        Self {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: matches!(m.kind, MatchType::Regex | MatchType::NotRegex),
            is_equal: matches!(m.kind, MatchType::Equal | MatchType::Regex),
        }
    }

    /// To a matcher.
    ///
    /// # Errors
    /// An invalid regex.
    pub fn to_matcher(&self) -> Result<Matcher, MatcherError> {
        let kind = match (self.is_regex, self.is_equal) {
            (false, true) => MatchType::Equal,
            (false, false) => MatchType::NotEqual,
            (true, true) => MatchType::Regex,
            (true, false) => MatchType::NotRegex,
        };
        Matcher::new(&self.name, kind, &self.value)
    }
}

impl SilenceRecord {
    /// From a silence.
    pub fn from_silence(s: &Silence) -> Self {
        Self {
            id: s.id.clone(),
            matchers: s.matchers.iter().map(MatcherRecord::from_matcher).collect(),
            starts_at_ms: s.starts_at,
            ends_at_ms: s.ends_at,
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
            updated_at_ms: s.updated_at,
        }
    }

    /// To a silence.
    ///
    /// # Errors
    /// An invalid regex.
    pub fn to_silence(&self) -> Result<Silence, MatcherError> {
        Ok(Silence {
            id: self.id.clone(),
            matchers: self
                .matchers
                .iter()
                .map(MatcherRecord::to_matcher)
                .collect::<Result<_, _>>()?,
            starts_at: self.starts_at_ms,
            ends_at: self.ends_at_ms,
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
            updated_at: self.updated_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(id: &str, matchers: &str, start: i64, end: i64) -> Silence {
        Silence {
            id: id.into(),
            matchers: super::super::matcher::parse_list(matchers).expect("matchers"),
            starts_at: start,
            ends_at: end,
            created_by: "ops".into(),
            comment: "maintenance".into(),
            updated_at: start,
        }
    }

    #[test]
    fn silences_mute_while_active_and_expire() {
        let mut silences = Silences::default();
        let labels: LabelMap = [
            ("alertname".into(), "HighCpu".into()),
            ("host".into(), "a".into()),
        ]
        .into();
        silences
            .upsert(silence("s1", "alertname=HighCpu", 100, 200), 50)
            .expect("ok");
        silences
            .upsert(silence("s2", "host=b", 100, 200), 50)
            .expect("ok");
        assert!(silences.muting(&labels, 99).is_empty(), "pending");
        assert_eq!(silences.muting(&labels, 100), ["s1"]);
        assert!(
            silences.muting(&labels, 200).is_empty(),
            "expired at ends_at"
        );
        let expired = silences.expire("s1", 150).expect("expires");
        assert_eq!(expired.ends_at, 150);
        assert!(silences.muting(&labels, 151).is_empty());
        assert_eq!(
            silences.expire("s1", 160),
            Err(SilenceError::AlreadyExpired("s1".into()))
        );
        assert_eq!(
            silences.expire("nope", 160),
            Err(SilenceError::NotFound("nope".into()))
        );
        assert_eq!(silences.gc(150 + EXPIRED_RETENTION_MS + 1), ["s1"]);
        assert_eq!(silences.list().len(), 1);
    }

    #[test]
    fn bad_silences_are_refused() {
        let mut silences = Silences::default();
        assert_eq!(
            silences.upsert(silence("a", "x=~\".*\"", 0, 10), 0),
            Err(SilenceError::MatchesEverything)
        );
        assert_eq!(
            silences.upsert(silence("a", "x=y", 10, 10), 0),
            Err(SilenceError::EndBeforeStart)
        );
        assert_eq!(
            silences.upsert(silence("a", "x=y", 0, 10), 20),
            Err(SilenceError::EndInPast)
        );
    }

    #[test]
    fn records_round_trip() {
        let s = silence("a", "x=y, z!~\"w.*\"", 0, 10);
        let record = SilenceRecord::from_silence(&s);
        assert_eq!(record.to_silence().expect("valid"), s);
    }
}
