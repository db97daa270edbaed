//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"regex"`,
//! `name!~"regex"` (values quoted or bare; regexes anchored), as routes, inhibition rules and
//! silences use them.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer};

use super::state::LabelMap;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchType {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        }
    }
}

/// One matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub kind: MatchType,
    /// Value or regex source.
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.kind == other.kind && self.value == other.value
    }
}

/// Why a matcher does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad matcher {text:?}: {reason}")]
pub struct MatcherError {
    /// The text.
    pub text: String,
    /// Why.
    pub reason: String,
}

impl Matcher {
    /// A matcher from parts.
    ///
    /// # Errors
    /// An invalid regex.
    pub fn new(name: &str, kind: MatchType, value: &str) -> Result<Self, MatcherError> {
        let regex = match kind {
            MatchType::Regex | MatchType::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$")).map_err(|e| MatcherError {
                    text: format!("{name}{}{value:?}", kind.as_str()),
                    reason: e.to_string(),
                })?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
            value: value.to_owned(),
            regex,
        })
    }

    /// Parses `name="value"` and the other forms.
    ///
    /// # Errors
    /// When the text is not a matcher.
    pub fn parse(text: &str) -> Result<Self, MatcherError> {
        let bad = |reason: &str| MatcherError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        let name_end = trimmed
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| bad("expected an operator (=, !=, =~, !~)"))?;
        let name = &trimmed[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("expected a label name"));
        }
        let rest = trimmed[name_end..].trim_start();
        let (kind, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchType::Regex, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchType::NotRegex, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchType::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchType::Equal, v)
        } else {
            return Err(bad("expected an operator (=, !=, =~, !~)"));
        };
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('"') {
            let inner = inner
                .strip_suffix('"')
                .ok_or_else(|| bad("unterminated quoted value"))?;
            unescape(inner).ok_or_else(|| bad("bad escape in value"))?
        } else {
            value.to_owned()
        };
        Self::new(name, kind, &value)
    }

    /// Whether `labels` satisfy this matcher (a missing label is "").
    pub fn matches(&self, labels: &LabelMap) -> bool {
        let value = labels.get(&self.name).map_or("", String::as_str);
        match (self.kind, &self.regex) {
            (MatchType::Equal, _) => value == self.value,
            (MatchType::NotEqual, _) => value != self.value,
            (MatchType::Regex, Some(re)) => re.is_match(value),
            (MatchType::NotRegex, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.kind.as_str(), self.value)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Whether every matcher matches.
pub fn all_match(matchers: &[Matcher], labels: &LabelMap) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Parses `{a="b", c=~"d"}` or `a="b", c=~"d"` (a comma-separated list; commas inside quotes
/// are part of the value).
///
/// # Errors
/// The first matcher that does not parse.
pub fn parse_list(text: &str) -> Result<Vec<Matcher>, MatcherError> {
    let inner = text.trim();
    let inner = inner
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(inner);
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                current.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => {
                if !current.trim().is_empty() {
                    out.push(Matcher::parse(&current)?);
                }
                current.clear();
            }
            c => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        out.push(Matcher::parse(&current)?);
    }
    Ok(out)
}

fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matchers_parse_and_match_like_alertmanager() {
        let l = labels(&[("severity", "critical"), ("host", "db-1")]);
        for (text, expected) in [
            ("severity=\"critical\"", true),
            ("severity=critical", true),
            ("severity = \"warning\"", false),
            ("severity!=warning", true),
            ("host=~\"db-.*\"", true),
            ("host=~db", false),
            ("host!~\"web-.*\"", true),
            ("missing=\"\"", true),
            ("missing!=\"\"", false),
        ] {
            let m = Matcher::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(m.matches(&l), expected, "{text}");
        }
        assert!(Matcher::parse("=x").is_err());
        assert!(Matcher::parse("a~x").is_err());
        assert!(Matcher::parse("a=~\"(\"").is_err());
        assert!(Matcher::parse("a=\"x").is_err());
        let list = parse_list("{a=\"x,y\", b=~\"z\"}").expect("parses");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].value, "x,y");
        assert_eq!(list[1].to_string(), "b=~\"z\"");
    }
}
