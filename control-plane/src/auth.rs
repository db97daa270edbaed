//! API tokens: bearer tokens with a role, stored hashed (SHA-256) in `<data_dir>/tokens.json`.
//!
//! Tokens are 32 random bytes, so a fast hash is enough: nothing to brute-force. The file may be
//! changed by `aisemble-cp token create` while the server runs; the server reloads it when its
//! modification time changes (checked at most once a second). Writes go through [`json_file`].

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{
    json_file::{self, FileError},
    store::now_ms,
};

/// What a token may do; each role includes the ones before it.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also: monitoring start/stop, backups, silences.
    Operator,
    /// Also: rules, tokens, agents (revocation).
    Admin,
}

impl Role {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// Who presented a valid token: what the API's handlers, rate limits and audit records see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's short public id (rate limits are kept per id).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// A stored token (never the token itself).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Short public id (first characters of the hash).
    pub id: String,
    /// Who or what it is for.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// Creation time (ms since the Unix epoch).
    pub created_at_ms: i64,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct TokenFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// Why the token file could not be used.
pub type AuthError = FileError;

const WHAT: &str = "token";

/// The token store.
#[derive(Debug)]
pub struct Auth {
    path: PathBuf,
    cache: Mutex<Cache>,
}

#[derive(Debug)]
struct Cache {
    tokens: Vec<TokenRecord>,
    modified: Option<SystemTime>,
    checked: Instant,
}

const RELOAD_CHECK: Duration = Duration::from_secs(1);

impl Auth {
    /// Opens the token file in `data_dir` (absent means no tokens yet).
    ///
    /// # Errors
    /// When the file exists but cannot be read.
    pub fn open(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join("tokens.json");
        let (file, modified) = json_file::read::<TokenFile>(&path, WHAT)?;
        Ok(Self {
            path,
            cache: Mutex::new(Cache {
                tokens: file.tokens,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    /// Whether any token exists.
    pub fn is_empty(&self) -> bool {
        self.lock().tokens.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The identity behind a presented token.
    pub fn verify(&self, token: &str) -> Option<Identity> {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        let mut cache = self.lock();
        if cache.checked.elapsed() >= RELOAD_CHECK {
            cache.checked = Instant::now();
            if json_file::modified(&self.path) != cache.modified
                && let Ok((file, modified)) = json_file::read::<TokenFile>(&self.path, WHAT)
            {
                cache.tokens = file.tokens;
                cache.modified = modified;
            }
        }
        cache
            .tokens
            .iter()
            .find(|t| t.sha256 == hash)
            .map(|t| Identity {
                id: t.id.clone(),
                name: t.name.clone(),
                role: t.role,
            })
    }

    /// Creates a token; returns its record and the token itself (shown once, never stored).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn create(&self, role: Role, name: &str) -> Result<(TokenRecord, String), AuthError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| FileError::io(&self.path, std::io::Error::other(e.to_string())))?;
        let token = format!(
            "asb_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let sha256 = hex::encode(Sha256::digest(token.as_bytes()));
        let record = TokenRecord {
            id: sha256[..12].to_owned(),
            name: name.to_owned(),
            role,
            sha256,
            created_at_ms: now_ms(),
        };
        let added = record.clone();
        self.modify(move |tokens| tokens.push(added))?;
        Ok((record, token))
    }

    /// Removes tokens by id or name; returns how many.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn revoke(&self, id_or_name: &str) -> Result<usize, AuthError> {
        let mut removed = 0;
        self.modify(|tokens| {
            let before = tokens.len();
            tokens.retain(|t| t.id != id_or_name && t.name != id_or_name);
            removed = before - tokens.len();
        })?;
        Ok(removed)
    }

    /// Every token record.
    pub fn list(&self) -> Vec<TokenRecord> {
        self.lock().tokens.clone()
    }

    fn modify(&self, change: impl FnOnce(&mut Vec<TokenRecord>)) -> Result<(), AuthError> {
        let (file, (), modified) = json_file::modify(&self.path, WHAT, |file: &mut TokenFile| {
            file.version = 1;
            change(&mut file.tokens);
            Ok::<(), FileError>(())
        })?;
        let mut cache = self.lock();
        cache.tokens = file.tokens;
        cache.modified = modified;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_by_hash_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = Auth::open(dir.path()).expect("opens");
        assert!(auth.is_empty());
        let (record, token) = auth.create(Role::Operator, "ci").expect("creates");
        assert!(token.starts_with("asb_"));
        assert_eq!(
            auth.verify(&token),
            Some(Identity {
                id: record.id.clone(),
                name: "ci".to_owned(),
                role: Role::Operator
            })
        );
        assert_eq!(auth.verify("asb_wrong"), None);
        let text = std::fs::read_to_string(dir.path().join("tokens.json")).expect("file");
        assert!(!text.contains(&token), "the token itself is never stored");
        let reopened = Auth::open(dir.path()).expect("reopens");
        assert_eq!(
            reopened.verify(&token).map(|i| i.role),
            Some(Role::Operator)
        );
        assert_eq!(reopened.revoke(&record.id).expect("revokes"), 1);
        assert_eq!(reopened.verify(&token), None);
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }
}
