//! Enrollment tokens (`aisemble-cp enroll-token create`, `POST /ops/enrollment/tokens`): one-time
//! tokens with an expiry, stored hashed in `<data_dir>/enrollment-tokens.json`, that an agent
//! trades with a CSR for a certificate (`aisemble-agent enroll`, see `ingest::enroll`).
//!
//! A token is `asbe_<id>.<secret>`: the id is public (an agent names it before it trusts the
//! server), the secret is 32 random bytes. A token may be bound to one agent name; an unbound one
//! enrolls whatever name the agent asks for, unless that name holds a valid certificate (taking
//! over a live agent's name needs a token bound to it, so an admin decided). Redeeming is checked
//! and recorded under the file's lock, so a token enrolls once even if two agents race with it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use aisemble_shared::{ids::AgentId, wire::ENROLLMENT_TOKEN_PREFIX};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::json_file::{self, FileError};

/// The file's kind, for error messages.
const WHAT: &str = "enrollment token";

pub use aisemble_shared::wire::enrollment_token_id as token_id;

/// How long a token is valid when the caller does not say.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Longest lifetime a token may be given.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);

/// Whether `ttl` is a lifetime a token may be given: more than zero, at most [`MAX_TTL`].
///
/// # Errors
/// A sentence saying why not.
pub fn check_ttl(ttl: Duration) -> Result<(), String> {
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(format!(
            "{} is not a token lifetime: give more than 0s and at most 30d",
            humantime::format_duration(ttl)
        ));
    }
    Ok(())
}

/// How long used and expired tokens stay listed before they are dropped from the file.
const KEEP_SPENT: i64 = 7 * 86_400_000;

/// A stored enrollment token (never the token itself).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    /// Public id: the part of the token between the prefix and the dot.
    pub id: String,
    /// SHA-256 of the whole token, hex. Also the key of the CA proof an agent checks.
    pub sha256: String,
    /// The only agent name it enrolls, if bound.
    pub agent: Option<String>,
    /// Who created it (token name, or `cli`).
    pub created_by: String,
    /// Creation time (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// Expiry (ms since the Unix epoch).
    pub expires_at_ms: i64,
    /// When it was redeemed, and by which agent name.
    pub used: Option<Redemption>,
}

impl EnrollmentToken {
    /// The key of the CA proof ([`aisemble_certs::enroll::ca_proof`]): the token's SHA-256,
    /// which the agent computes from the token it holds. `None` for a damaged record.
    pub fn proof_key(&self) -> Option<[u8; 32]> {
        <[u8; 32]>::try_from(hex::decode(&self.sha256).ok()?).ok()
    }
}

/// A token's one use.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The agent name the certificate was issued to.
    pub agent: String,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct TokenFile {
    version: u32,
    tokens: Vec<EnrollmentToken>,
}

/// Why a token was not redeemed. The messages go to the enrolling agent.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No such token.
    #[error("unknown enrollment token")]
    Unknown,
    /// Past its expiry.
    #[error("enrollment token expired")]
    Expired,
    /// Already redeemed.
    #[error("enrollment token already used (by {0})")]
    Used(String),
    /// Bound to another name.
    #[error("enrollment token is for agent {bound:?}, not {asked:?}")]
    OtherName {
        /// The name it is bound to.
        bound: String,
        /// The name asked for.
        asked: String,
    },
    /// The name holds a valid certificate and the token is not bound to it.
    #[error(
        "agent name {0:?} already has a valid certificate; revoke it first, or use a token created for that name"
    )]
    NameTaken(String),
    /// The agent name is not a valid name.
    #[error("{0}")]
    BadName(String),
    /// The certificate could not be made (bad CSR and the like).
    #[error("{0}")]
    Signing(String),
    /// The token file is unusable.
    #[error("enrollment is unavailable: {0}")]
    File(#[from] FileError),
}

/// The enrollment token store.
#[derive(Debug)]
pub struct EnrollmentTokens {
    path: PathBuf,
}

impl EnrollmentTokens {
    /// The store in `data_dir` (the file is created on the first token).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("enrollment-tokens.json"),
        }
    }

    /// Creates a token valid for `ttl` (see [`check_ttl`]) from `now_ms`, optionally bound to
    /// `agent`; returns its record and the token itself (shown once, never stored). Blocking.
    ///
    /// # Errors
    /// When the file cannot be written or the system has no randomness.
    pub fn create(
        &self,
        ttl: Duration,
        agent: Option<&AgentId>,
        created_by: &str,
        now_ms: i64,
    ) -> Result<(EnrollmentToken, String), FileError> {
        let random = |n: usize| {
            let mut bytes = vec![0u8; n];
            getrandom::fill(&mut bytes)
                .map(|()| bytes)
                .map_err(|e| FileError::io(&self.path, std::io::Error::other(e.to_string())))
        };
        let id = hex::encode(random(6)?);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random(32)?);
        let token = format!("{ENROLLMENT_TOKEN_PREFIX}{id}.{secret}");
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let record = EnrollmentToken {
            id,
            sha256: hex::encode(Sha256::digest(token.as_bytes())),
            agent: agent.map(ToString::to_string),
            created_by: created_by.to_owned(),
            created_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            used: None,
        };
        let added = record.clone();
        json_file::modify(&self.path, WHAT, |file: &mut TokenFile| {
            file.version = 1;
            file.tokens
                .retain(|t| t.expires_at_ms.saturating_add(KEEP_SPENT) > now_ms);
            file.tokens.push(added);
            Ok::<(), FileError>(())
        })?;
        Ok((record, token))
    }

    /// Every stored token. Blocking.
    ///
    /// # Errors
    /// When the file exists but cannot be read.
    pub fn list(&self) -> Result<Vec<EnrollmentToken>, FileError> {
        Ok(json_file::read::<TokenFile>(&self.path, WHAT)?.0.tokens)
    }

    /// The token with public id `id`, if it could still be redeemed at `now_ms`. Blocking.
    ///
    /// # Errors
    /// [`Refusal`] saying why not.
    pub fn usable(&self, id: &str, now_ms: i64) -> Result<EnrollmentToken, Refusal> {
        let tokens = self.list()?;
        let token = tokens
            .into_iter()
            .find(|t| t.id == id)
            .ok_or(Refusal::Unknown)?;
        check_usable(&token, now_ms)?;
        Ok(token)
    }

    /// Redeems `token` for the agent name `asked` at `now_ms`: checks it, lets `sign` make the
    /// certificate (told whether the token is bound to the name, which `sign` needs to decide
    /// whether a name with a valid certificate may be taken over), and records the use only if
    /// `sign` succeeded. Blocking.
    ///
    /// # Errors
    /// [`Refusal`] saying why; the token is then unchanged.
    pub fn redeem<T>(
        &self,
        token: &str,
        asked: &str,
        now_ms: i64,
        sign: impl FnOnce(&AgentId, bool) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let name = AgentId::parse(asked).map_err(|e| Refusal::BadName(e.to_string()))?;
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        let (_, signed, _) = json_file::modify(&self.path, WHAT, |file: &mut TokenFile| {
            let record = file
                .tokens
                .iter_mut()
                .find(|t| t.sha256 == hash)
                .ok_or(Refusal::Unknown)?;
            check_usable(record, now_ms)?;
            let bound = match &record.agent {
                Some(bound) if bound != name.as_str() => {
                    return Err(Refusal::OtherName {
                        bound: bound.clone(),
                        asked: name.to_string(),
                    });
                }
                Some(_) => true,
                None => false,
            };
            let signed = sign(&name, bound)?;
            record.used = Some(Redemption {
                at_ms: now_ms,
                agent: name.to_string(),
            });
            Ok(signed)
        })?;
        Ok(signed)
    }
}

fn check_usable(token: &EnrollmentToken, now_ms: i64) -> Result<(), Refusal> {
    if let Some(used) = &token.used {
        return Err(Refusal::Used(used.agent.clone()));
    }
    if token.expires_at_ms <= now_ms {
        return Err(Refusal::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn name(text: &str) -> AgentId {
        AgentId::parse(text).expect("agent name")
    }

    #[test]
    fn a_token_enrolls_once_before_it_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = EnrollmentTokens::new(dir.path());
        let now = 1_000_000;
        let (record, token) = tokens.create(HOUR, None, "cli", now).expect("creates");
        assert_eq!(token_id(&token), Some(record.id.as_str()));
        let text =
            std::fs::read_to_string(dir.path().join("enrollment-tokens.json")).expect("the file");
        assert!(!text.contains(&token), "the token itself is never stored");
        assert_eq!(
            tokens.usable(&record.id, now).map(|t| t.sha256).ok(),
            Some(record.sha256.clone())
        );
        assert!(matches!(tokens.usable("nope", now), Err(Refusal::Unknown)));

        // A failed signing leaves the token unused.
        let failed = tokens.redeem(&token, "gpu-1", now, |_, _| {
            Err::<(), _>(Refusal::Signing("bad CSR".to_owned()))
        });
        assert!(matches!(failed, Err(Refusal::Signing(_))));
        let signed = tokens
            .redeem(&token, "gpu-1", now + 1, |agent, bound| {
                Ok((agent.to_string(), bound))
            })
            .expect("redeems");
        assert_eq!(signed, ("gpu-1".to_owned(), false));
        let again = tokens.redeem(&token, "gpu-2", now + 2, |_, _| Ok(()));
        assert!(matches!(again, Err(Refusal::Used(ref by)) if by == "gpu-1"));
        assert!(matches!(
            tokens.usable(&record.id, now + 2),
            Err(Refusal::Used(_))
        ));
        let listed = tokens.list().expect("lists");
        assert_eq!(
            listed[0].used,
            Some(Redemption {
                at_ms: now + 1,
                agent: "gpu-1".to_owned()
            })
        );

        // Expiry, a wrong token, a bad name.
        let (_, late) = tokens.create(HOUR, None, "cli", now).expect("creates");
        let expired = tokens.redeem(&late, "gpu-3", now + 3_600_000, |_, _| Ok(()));
        assert!(matches!(expired, Err(Refusal::Expired)));
        let wrong = tokens.redeem(&format!("{late}x"), "gpu-3", now, |_, _| Ok(()));
        assert!(matches!(wrong, Err(Refusal::Unknown)));
        let bad = tokens.redeem(&late, "not a name!", now, |_, _| Ok(()));
        assert!(matches!(bad, Err(Refusal::BadName(_))));
    }

    #[test]
    fn a_bound_token_enrolls_only_its_name_and_spent_tokens_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = EnrollmentTokens::new(dir.path());
        let now = 5_000_000;
        let (_, token) = tokens
            .create(HOUR, Some(&name("db-1")), "admin", now)
            .expect("creates");
        let other = tokens.redeem(&token, "db-2", now, |_, _| Ok(()));
        assert!(matches!(other, Err(Refusal::OtherName { .. })));
        let bound = tokens
            .redeem(&token, "db-1", now, |_, bound| Ok(bound))
            .expect("redeems");
        assert!(bound, "sign learns that the token was made for this name");

        // A week after expiry, the next creation drops the spent token from the file.
        assert_eq!(tokens.list().expect("lists").len(), 1);
        let later = now + 3_600_000 + KEEP_SPENT + 1;
        tokens.create(HOUR, None, "cli", later).expect("creates");
        let listed = tokens.list().expect("lists");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].created_at_ms, later);
    }

    #[test]
    fn token_ids_are_read_only_from_well_formed_tokens() {
        assert_eq!(token_id("asbe_0a1b.secret"), Some("0a1b"));
        assert_eq!(token_id("asbe_.secret"), None);
        assert_eq!(token_id("asbe_0a1b."), None);
        assert_eq!(token_id("asb_0a1b.secret"), None);
        assert_eq!(token_id("asbe_0a1b"), None);
    }
}
