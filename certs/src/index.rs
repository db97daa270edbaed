//! `issued.json`: the index of agent certificates this CA issued, and the revocation list derived
//! from it.
//!
//! Format (version 1), one object:
//!
//! ```json
//! {"version": 1, "certificates": [
//!   {"name": "node-1", "serial": "4f0c…", "not_before": "2026-11-22T10:00:00Z",
//!    "not_after": "2027-11-22T10:05:00Z", "revoked_at": null}
//! ]}
//! ```
//!
//! `serial` is lowercase hex of the certificate's serial number without leading zero bytes.
//! Writers hold the PKI directory lock for the whole read-modify-write and replace the file
//! atomically, so readers need no lock.

use std::{collections::HashSet, path::Path, sync::Arc, time::SystemTime};

use aisemble_shared::ids::AgentId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    Error,
    files::{self, DirLock},
};

/// One certificate in the index of issued agent certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedEntry {
    /// The agent the certificate was issued to.
    pub name: AgentId,
    /// Serial number, lowercase hex without leading zero bytes.
    pub serial_hex: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<SystemTime>,
}

/// A set of revoked certificate serial numbers; cloning is cheap (one reference count).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationList {
    serials: Arc<HashSet<Box<[u8]>>>,
}

impl RevocationList {
    /// A list of the given serial numbers (big-endian bytes, as in the certificate).
    pub fn new<S: AsRef<[u8]>>(serials: impl IntoIterator<Item = S>) -> Self {
        let serials = serials
            .into_iter()
            .map(|s| Box::from(normalize_serial(s.as_ref())));
        Self {
            serials: Arc::new(serials.collect()),
        }
    }

    /// Whether the certificate with this serial number is revoked.
    ///
    /// Leading zero bytes are ignored, so the DER integer content (which gains a zero byte when
    /// the high bit is set) and the plain number compare equal.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.serials.contains(normalize_serial(serial))
    }

    /// Number of revoked serials.
    pub fn len(&self) -> usize {
        self.serials.len()
    }

    /// Whether no serial is revoked.
    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }
}

/// Name of the index file inside the PKI directory.
pub(crate) const FILE: &str = "issued.json";

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    certificates: Vec<Record>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) name: String,
    pub(crate) serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub(crate) revoked_at: Option<OffsetDateTime>,
}

/// Serial number bytes without leading zeros.
pub(crate) fn normalize_serial(serial: &[u8]) -> &[u8] {
    let start = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
    &serial[start..]
}

/// Reads every record; a missing file is an empty index.
pub(crate) fn load(dir: &Path) -> Result<Vec<Record>, Error> {
    let path = dir.join(FILE);
    let Some(text) = files::read_optional(&path)? else {
        return Ok(Vec::new());
    };
    let file: IndexFile = serde_json::from_str(&text).map_err(|source| Error::Index {
        path: path.clone(),
        source,
    })?;
    if file.version != VERSION {
        return Err(Error::IndexEntry {
            path,
            reason: format!("unsupported version {} (expected {VERSION})", file.version),
        });
    }
    Ok(file.certificates)
}

/// Runs `change` on the records under the directory lock and writes the result back.
pub(crate) fn update<T>(
    dir: &Path,
    change: impl FnOnce(&mut Vec<Record>) -> Result<T, Error>,
) -> Result<T, Error> {
    let _lock = DirLock::exclusive(dir)?;
    let mut certificates = load(dir)?;
    let out = change(&mut certificates)?;
    let file = IndexFile {
        version: VERSION,
        certificates,
    };
    let path = dir.join(FILE);
    let mut json = serde_json::to_vec_pretty(&file).map_err(|source| Error::Index {
        path: path.clone(),
        source,
    })?;
    json.push(b'\n');
    files::write_atomic(&path, &json, files::PUBLIC)?;
    Ok(out)
}

/// The public view of the records.
pub(crate) fn entries(dir: &Path, records: Vec<Record>) -> Result<Vec<IssuedEntry>, Error> {
    records
        .into_iter()
        .map(|r| {
            let name = AgentId::parse(&r.name).map_err(|e| corrupt(dir, e.to_string()))?;
            Ok(IssuedEntry {
                name,
                serial_hex: r.serial,
                not_before: r.not_before.into(),
                not_after: r.not_after.into(),
                revoked_at: r.revoked_at.map(SystemTime::from),
            })
        })
        .collect()
}

/// The revoked serials among the records.
pub(crate) fn revocation_list(dir: &Path, records: &[Record]) -> Result<RevocationList, Error> {
    let revoked = records.iter().filter(|r| r.revoked_at.is_some());
    let serials = revoked
        .map(|r| {
            hex::decode(&r.serial).map_err(|e| corrupt(dir, format!("serial {:?}: {e}", r.serial)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RevocationList::new(serials))
}

fn corrupt(dir: &Path, reason: String) -> Error {
    Error::IndexEntry {
        path: dir.join(FILE),
        reason,
    }
}
