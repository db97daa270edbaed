//! Identifiers: agent names (the identity carried in certificates) and journal sequence numbers.

use std::fmt;

/// The name of an agent: the common name of its certificate and the `host` label of its series.
///
/// Restricted to `[A-Za-z0-9._-]`, 1 to 64 characters, not starting with `.` or `-`, so that it is
/// safe as a file name, a label value and a certificate common name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(String);

/// Why a string is not a valid [`AgentId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentIdError {
    /// The name is empty.
    #[error("agent name is empty")]
    Empty,
    /// The name is longer than 64 characters.
    #[error("agent name is longer than 64 characters")]
    TooLong,
    /// The name contains a character outside `[A-Za-z0-9._-]` or starts with `.` or `-`.
    #[error(
        "agent name {0:?} may only contain letters, digits, '.', '_' and '-', and must not start with '.' or '-'"
    )]
    BadCharacter(String),
}

impl AgentId {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 64;

    /// Parses and validates an agent name.
    ///
    /// # Errors
    /// When the name is empty, too long or contains a disallowed character.
    pub fn parse(name: &str) -> Result<Self, AgentIdError> {
        if name.is_empty() {
            return Err(AgentIdError::Empty);
        }
        if name.len() > Self::MAX_LEN {
            return Err(AgentIdError::TooLong);
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !name.chars().all(allowed) || name.starts_with(['.', '-']) {
            return Err(AgentIdError::BadCharacter(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AgentId {
    type Err = AgentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A per-agent journal sequence number, assigned when a record is written to the agent's journal.
///
/// Sequence numbers only grow, across restarts too; the control plane deduplicates on
/// (agent, sequence number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeqNo(pub u64);

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(name: &str, ok: bool) {
        assert_eq!(AgentId::parse(name).is_ok(), ok, "{name:?}");
    }

    #[test]
    fn agent_names() {
        check("node-1", true);
        check("gpu.worker_07", true);
        check("", false);
        check("-x", false);
        check(".hidden", false);
        check("a/b", false);
        check("a b", false);
        check("ü", false);
        check(&"a".repeat(64), true);
        check(&"a".repeat(65), false);
    }
}
