//! `kind = "redis"`: up when `PING` answers `PONG`; then `INFO` gives `used_memory`, `maxmemory`
//! and `connected_clients` as series of their own.
//!
//! Each run opens its own connection (a check must notice a server that restarted or stopped) and
//! sends, in RESP2, `AUTH [user] password` when the URL has a password, `SELECT db` when it names
//! a database other than 0, then `PING` and `INFO`. The exchange is a handful of lines, so it is
//! spoken here rather than through a client library. The run's timeout covers the whole exchange.
//! An `INFO` that fails (renamed by the operator, say) leaves the figures out but does not fail
//! the check: `PING` is what readiness means.
//!
//! Replies are read with bounds: a line (simple string, error, length) of at most
//! [`MAX_LINE_BYTES`], a bulk string of at most [`MAX_BULK_BYTES`]; anything else from the server
//! fails the run with a message, never a panic.

use aisemble_shared::metrics;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};
use tracing::debug;

use super::{CheckError, io_error, state::Detail};

/// Longest reply line read.
const MAX_LINE_BYTES: usize = 64 << 10;
/// Largest bulk reply read (`INFO` is a few KiB).
const MAX_BULK_BYTES: usize = 1 << 20;
/// Redis' default port.
const DEFAULT_PORT: u16 = 6379;

/// A checked `redis` target, from a `redis://[user[:password]@]host[:port][/db]` URL.
#[derive(Clone)]
pub(super) struct RedisTarget {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: u32,
}

/// Why a `redis://` URL is not usable.
#[derive(Debug, thiserror::Error)]
pub(super) enum RedisUrlError {
    /// Not a URL at all.
    #[error("{0}")]
    Syntax(String),
    /// No host.
    #[error("no host")]
    NoHost,
    /// The path is not a database number.
    #[error("database {0:?} is not a number")]
    Database(String),
    /// A user name or password that is not UTF-8 once decoded.
    #[error("the user name or password is not UTF-8")]
    Credentials,
    /// Query parameters, which this check does not read.
    #[error("query parameters are not supported")]
    Query,
}

impl RedisTarget {
    /// Parses a `redis://[user[:password]@]host[:port][/db]` URL (the caller checked the scheme);
    /// the user name and password are percent-decoded.
    ///
    /// # Errors
    /// When the URL is not of that form.
    pub(super) fn parse(url: &str) -> Result<Self, RedisUrlError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| RedisUrlError::Syntax(e.to_string()))?;
        // An IPv6 host comes in brackets; a socket address wants it without.
        let host = parsed
            .host_str()
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
            .filter(|host| !host.is_empty())
            .ok_or(RedisUrlError::NoHost)?
            .to_owned();
        if parsed.query().is_some() {
            return Err(RedisUrlError::Query);
        }
        let path = parsed.path().trim_matches('/');
        let db = if path.is_empty() {
            0
        } else {
            path.parse()
                .map_err(|_| RedisUrlError::Database(path.to_owned()))?
        };
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| RedisUrlError::Credentials)
        };
        let username = Some(decode(parsed.username())?).filter(|u| !u.is_empty());
        let password = parsed.password().map(decode).transpose()?;
        Ok(Self {
            host,
            port: parsed.port().unwrap_or(DEFAULT_PORT),
            username,
            password,
            db,
        })
    }

    /// Connects, authenticates and selects the database if asked to, sends `PING` and `INFO`.
    ///
    /// # Cancel safety
    /// Dropping the future closes the connection.
    pub(super) async fn probe(&self, details: &mut Vec<Detail>) -> Result<(), CheckError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| io_error(&e))?;
        let mut connection = Connection {
            stream: BufReader::new(stream),
        };
        if let Some(password) = &self.password {
            let mut auth = vec!["AUTH"];
            auth.extend(self.username.as_deref());
            auth.push(password);
            match connection.command(&auth).await? {
                Reply::Error(message) => {
                    return Err(CheckError::Failed(format!(
                        "authentication failed: {message}"
                    )));
                }
                Reply::Simple(_) => {}
                other => return Err(unexpected("AUTH", &other)),
            }
        }
        if self.db != 0 {
            match connection
                .command(&["SELECT", &self.db.to_string()])
                .await?
            {
                Reply::Simple(_) => {}
                Reply::Error(message) => {
                    return Err(CheckError::Failed(format!(
                        "SELECT {} failed: {message}",
                        self.db
                    )));
                }
                other => return Err(unexpected("SELECT", &other)),
            }
        }
        match connection.command(&["PING"]).await? {
            Reply::Simple(pong) if pong == "PONG" => {}
            Reply::Error(message) => return Err(CheckError::Failed(message)),
            other => {
                return Err(CheckError::Failed(format!(
                    "PING answered {}, expected \"PONG\"",
                    other.describe()
                )));
            }
        }
        match connection.command(&["INFO"]).await {
            Ok(Reply::Bulk(info)) => details.extend(info_details(&String::from_utf8_lossy(&info))),
            Ok(other) => {
                debug!(reply = %other.describe(), "Redis INFO failed; its figures are left out.")
            }
            Err(error) => debug!(%error, "Redis INFO failed; its figures are left out."),
        }
        Ok(())
    }
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("db", &self.db)
            .finish()
    }
}

/// The figures of an `INFO` reply (`key:value` lines) that become series.
pub(super) fn info_details(info: &str) -> Vec<Detail> {
    let wanted = [
        ("used_memory", metrics::CHECK_REDIS_USED_MEMORY_BYTES),
        ("maxmemory", metrics::CHECK_REDIS_MAXMEMORY_BYTES),
        ("connected_clients", metrics::CHECK_REDIS_CONNECTED_CLIENTS),
    ];
    let mut details = Vec::with_capacity(wanted.len());
    for line in info.lines() {
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let Some(&(_, name)) = wanted.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        if let Ok(value) = value.trim().parse::<f64>() {
            details.push(Detail { name, value });
        }
    }
    details
}

/// A RESP2 reply, as far as this check reads them.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// `+text`.
    Simple(String),
    /// `-text`.
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$len` and the bytes.
    Bulk(Vec<u8>),
    /// `$-1` (or `*-1`).
    Null,
    /// `*n`: an array, whose elements are not read (no command here answers with one).
    Array(i64),
}

impl Reply {
    fn describe(&self) -> String {
        match self {
            Self::Simple(text) => format!("{text:?}"),
            Self::Error(text) => format!("error {text:?}"),
            Self::Integer(n) => format!("integer {n}"),
            Self::Bulk(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
            Self::Null => "nil".to_owned(),
            Self::Array(n) => format!("an array of {n}"),
        }
    }
}

/// One connection to the server.
#[derive(Debug)]
struct Connection<S> {
    stream: BufReader<S>,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Connection<S> {
    /// Sends `args` as a command and reads the reply.
    async fn command(&mut self, args: &[&str]) -> Result<Reply, CheckError> {
        let request = encode_command(args);
        let stream = self.stream.get_mut();
        stream.write_all(&request).await.map_err(|e| io_error(&e))?;
        stream.flush().await.map_err(|e| io_error(&e))?;
        read_reply(&mut self.stream).await
    }
}

/// `args` as a RESP array of bulk strings.
pub(super) fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply from `reader`.
pub(super) async fn read_reply(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> Result<Reply, CheckError> {
    let line = read_line(reader).await?;
    let (kind, text) = match line.split_first() {
        Some((&kind, text)) => (kind, String::from_utf8_lossy(text).into_owned()),
        None => return Err(protocol("an empty reply line")),
    };
    let number = |text: &str| {
        text.parse::<i64>()
            .map_err(|_| protocol(&format!("{:?} where a number was expected", text)))
    };
    match kind {
        b'+' => Ok(Reply::Simple(text)),
        b'-' => Ok(Reply::Error(text)),
        b':' => number(&text).map(Reply::Integer),
        b'*' => number(&text).map(|n| if n < 0 { Reply::Null } else { Reply::Array(n) }),
        b'$' => {
            let len = number(&text)?;
            let Ok(len) = usize::try_from(len) else {
                return Ok(Reply::Null);
            };
            if len > MAX_BULK_BYTES {
                return Err(protocol(&format!(
                    "a reply of {len} bytes (at most {MAX_BULK_BYTES} are read)"
                )));
            }
            let mut bulk = vec![0; len + 2];
            reader
                .read_exact(&mut bulk)
                .await
                .map_err(|e| io_error(&e))?;
            if !bulk.ends_with(b"\r\n") {
                return Err(protocol("a bulk reply not ended by CRLF"));
            }
            bulk.truncate(len);
            Ok(Reply::Bulk(bulk))
        }
        other => Err(protocol(&format!(
            "a reply starting with {:?}",
            char::from(other)
        ))),
    }
}

/// One CRLF-terminated line, without the CRLF, of at most [`MAX_LINE_BYTES`].
async fn read_line(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> Result<Vec<u8>, CheckError> {
    let mut line = Vec::new();
    let n_read = reader
        .take(MAX_LINE_BYTES as u64 + 2)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| io_error(&e))?;
    if n_read == 0 {
        return Err(CheckError::Failed("connection closed by the server".into()));
    }
    if !line.ends_with(b"\r\n") {
        return Err(if line.len() > MAX_LINE_BYTES {
            protocol(&format!("a reply line over {MAX_LINE_BYTES} bytes"))
        } else {
            CheckError::Failed("connection closed by the server".into())
        });
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

/// A reply this check cannot read.
fn protocol(what: &str) -> CheckError {
    CheckError::Failed(format!("not a Redis server? it sent {what}"))
}

/// A reply of a kind the command does not answer with.
fn unexpected(command: &str, reply: &Reply) -> CheckError {
    CheckError::Failed(format!("{command} answered {}", reply.describe()))
}
