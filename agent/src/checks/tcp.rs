//! `kind = "tcp"`: up when a TCP connection to `HOST:PORT` is established; nothing is sent.

use tokio::net::TcpStream;

use super::{CheckError, io_error};

/// A checked `tcp` target.
#[derive(Debug, Clone)]
pub(super) struct TcpTarget {
    /// `HOST:PORT`, resolved at every run so that a moved name is followed.
    pub(super) address: String,
}

impl TcpTarget {
    /// Connects once, then closes the connection.
    pub(super) async fn probe(&self) -> Result<(), CheckError> {
        // Dropping the stream closes it: the target sees a connect and a close, as with `nc -z`.
        TcpStream::connect(self.address.as_str())
            .await
            .map(drop)
            .map_err(|error| io_error(&error))
    }
}
