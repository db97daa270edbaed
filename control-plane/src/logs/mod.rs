//! Logs and the audit trail (SPEC §8): agents' log lines (`store.rs`, with hourly counts for
//! stats), the search conditions (`filter.rs`, pure), the stored form of a line (`stored.rs`), and
//! the hash-chained audit log (`audit.rs`). Both live in the store's sled database; the HTTP API
//! (`api/logs.rs`) is their only reader.

pub mod audit;
pub mod filter;
pub mod store;
pub mod stored;

pub use audit::{AuditEvent, AuditLog, AuditRecord, Verification};
pub use filter::{LogFilter, parse_terms};
pub use store::{CleanupReport, HourCounts, LogRetention, LogStore, LogStoreError, RecordLogs};
pub use stored::StoredLogRef;
