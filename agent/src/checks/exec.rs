//! `kind = "exec"`: up when a command exits with code 0.
//!
//! The command runs without a shell (unless `shell = true`, then `/bin/sh -c`), with stdin and
//! stdout on `/dev/null` and stderr captured (the first [`MAX_STDERR_BYTES`] kept) for the error
//! text. The child leads a process group of its own, and when the run times out (the caller drops
//! this future) the whole group is killed with SIGKILL: the command and the processes it started (a
//! shell's children), unless they moved to another group or session. A command that ends in time
//! may leave background processes behind; they are not touched.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
};

use super::CheckError;

/// Captured stderr kept for the error text; the rest is read and discarded so the child never
/// blocks on a full pipe.
const MAX_STDERR_BYTES: usize = 4096;
/// How long to wait for stderr's end after the child exited: a background process the command
/// left behind may hold the pipe open forever.
const STDERR_GRACE: Duration = Duration::from_millis(100);
/// Longest stderr line quoted in the error text.
const MAX_ERROR_LINE_CHARS: usize = 200;

/// A checked `exec` target.
#[derive(Debug, Clone)]
pub(super) struct ExecTarget {
    /// Program and arguments; with `shell`, one string for `/bin/sh -c`.
    pub(super) command: Vec<String>,
    /// Run through `/bin/sh -c`.
    pub(super) shell: bool,
}

impl ExecTarget {
    /// Runs the command to its end.
    ///
    /// # Cancel safety
    /// Dropping the future kills the child.
    pub(super) async fn probe(&self) -> Result<(), CheckError> {
        let mut command = if self.shell {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").args(&self.command);
            command
        } else {
            let (program, args) = self
                .command
                .split_first()
                .ok_or_else(|| CheckError::Spawn {
                    program: String::new(),
                    error: "empty command".into(),
                })?;
            let mut command = Command::new(program);
            command.args(args);
            command
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let program = if self.shell {
            "/bin/sh"
        } else {
            self.command.first().map_or("", String::as_str)
        };
        let mut child = command.spawn().map_err(|error| CheckError::Spawn {
            program: program.to_owned(),
            error: match error.kind() {
                std::io::ErrorKind::NotFound => "not found".into(),
                std::io::ErrorKind::PermissionDenied => "permission denied".into(),
                _ => error.to_string(),
            },
        })?;

        // Declared after `child`, so dropped (killing the group) before `child` is.
        let mut group = KillGroupOnDrop(child.id());

        let mut stderr = Vec::new();
        let status = {
            let reader = read_bounded(child.stderr.take(), &mut stderr);
            tokio::pin!(reader);
            let mut stderr_done = false;
            let status = loop {
                tokio::select! {
                    // `Child::wait` is cancel safe, so polling it anew each turn loses nothing.
                    status = child.wait() => break status,
                    () = &mut reader, if !stderr_done => stderr_done = true,
                }
            };
            // Once the leader is reaped its number may be reused: the group is no longer ours to
            // kill. (Should waiting have failed, the group is killed as on a timeout.)
            if status.is_ok() {
                group.0 = None;
            }
            if !stderr_done {
                let _ = tokio::time::timeout(STDERR_GRACE, reader).await;
            }
            status
        }
        .map_err(|error| CheckError::Spawn {
            program: program.to_owned(),
            error: format!("waiting for it: {error}"),
        })?;

        if status.success() {
            return Ok(());
        }
        let stderr = first_line(&stderr);
        match status.code() {
            Some(code) => Err(CheckError::Exit { code, stderr }),
            None => Err(CheckError::Signal {
                signal: signal(status),
                stderr,
            }),
        }
    }
}

/// Kills a process group (by its leader's pid) with SIGKILL when dropped, while the leader has not
/// been reaped (so the group id cannot have been reused).
#[derive(Debug)]
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let pid = self
            .0
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // Fails only when the group is already gone.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Reads `pipe` to its end, keeping the first [`MAX_STDERR_BYTES`] in `out`.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>, out: &mut Vec<u8>) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let keep = n.min(MAX_STDERR_BYTES.saturating_sub(out.len()));
                out.extend_from_slice(&buf[..keep]);
            }
        }
    }
}

/// The first non-blank line of `stderr`, trimmed and cut to [`MAX_ERROR_LINE_CHARS`].
fn first_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    line.map_or_else(String::new, |line| {
        let mut cut: String = line.chars().take(MAX_ERROR_LINE_CHARS).collect();
        if cut.len() < line.len() {
            cut.push('…');
        }
        cut
    })
}

#[cfg(unix)]
fn signal(status: std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(not(unix))]
fn signal(_status: std::process::ExitStatus) -> Option<i32> {
    None
}
