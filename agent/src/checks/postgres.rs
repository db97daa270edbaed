//! `kind = "postgres"`: up when the server accepts a session and answers `SELECT 1`, which is
//! more than `pg_isready` tells (it also proves the role may log in and the database exists).
//!
//! A failure says why in the server's words, prefixed by what it means: `authentication failed`,
//! `database does not exist`, `not accepting connections` (starting up, shutting down, in
//! recovery), `too many connections`; `connection refused` when nothing listens. The connection is
//! driven inside the run's own future (not a spawned task), so a run that times out leaves
//! nothing behind.

use std::time::Duration;

use tokio_postgres::NoTls;

use super::{CheckError, find_io, io_error, root_cause};

/// How long a finished run waits for the server to take the goodbye (`Terminate`), so that the
/// server does not log an abrupt disconnect; the run's result is already known.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// A checked `postgres` target.
#[derive(Debug, Clone)]
pub(super) struct PostgresTarget {
    /// Parsed from the URL; its `Debug` hides the password.
    pub(super) config: tokio_postgres::Config,
}

impl PostgresTarget {
    /// Connects, runs `SELECT 1` and says goodbye.
    pub(super) async fn probe(&self) -> Result<(), CheckError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(error)?;
        let mut connection = std::pin::pin!(connection);
        let mut closed = false;
        let result = tokio::select! {
            biased;
            rows = client.simple_query("SELECT 1") => rows.map(drop).map_err(error),
            ended = &mut connection => {
                closed = true;
                Err(match ended {
                    Ok(()) => CheckError::Failed("the server closed the connection".into()),
                    Err(e) => error(e),
                })
            }
        };
        // Without a client, the connection sends `Terminate` and ends.
        drop(client);
        if !closed {
            let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
        }
        result
    }
}

/// The error text of a failed connect or query.
fn error(error: tokio_postgres::Error) -> CheckError {
    if let Some(db) = error.as_db_error() {
        // SQLSTATE codes: https://www.postgresql.org/docs/current/errcodes-appendix.html
        let meaning = match db.code().code() {
            "28P01" | "28000" => "authentication failed",
            "3D000" => "database does not exist",
            "57P03" | "57P01" | "57P02" => "not accepting connections",
            "53300" => "too many connections",
            _ => "server error",
        };
        return CheckError::Failed(format!("{meaning}: {}", db.message()));
    }
    if let Some(io) = find_io(&error) {
        return io_error(io);
    }
    CheckError::Failed(root_cause(&error))
}
