//! The control plane and agents as child processes, with their output captured line by line.

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{bins::binaries, http::Api};

/// Lines a child wrote, collected by a reader thread.
#[derive(Debug, Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn capture(reader: impl std::io::Read + Send + 'static) -> Self {
        let lines = Self::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                sink.0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
            }
        });
        lines
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// JSON log events so far (non-JSON lines skipped).
    pub fn events(&self) -> Vec<Value> {
        self.all()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a line containing `needle`; returns it.
    ///
    /// # Panics
    /// After `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.all().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no line containing {needle:?} within {timeout:?}; got:\n{}",
                self.all().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Sends `signal` to one process (never through a `kill` command: see `signal_group`).
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Sends `signal` to the process group led by `leader`. Not `kill -SIG -PGID`: procps-ng 4.0.2
/// parses that as pid -1 and signals every process on the machine (the CI runner included).
pub fn signal_group(leader: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(leader)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

fn terminate(child: &mut Child) {
    signal(child.id(), rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tail(name: &str, lines: &Lines) {
    let all = lines.all();
    let start = all.len().saturating_sub(80);
    eprintln!(
        "----- last lines of {name} -----\n{}",
        all[start..].join("\n")
    );
}

/// Runs `aisemble-cp ARGS`; returns (exit code, stdout, stderr).
pub fn run_cp(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(&binaries().control_plane)
        .args(args)
        .output()
        .expect("running aisemble-cp");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A control plane process.
#[derive(Debug)]
pub struct ControlPlane {
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Bound HTTP address.
    pub http: SocketAddr,
    /// Whether the API is served over HTTPS (`[http] tls = true`).
    pub https: bool,
    /// Bound QUIC address.
    pub quic: SocketAddr,
    /// An admin token.
    pub token: String,
    child: Option<Child>,
    /// Standard output.
    pub stdout: Lines,
    /// Standard error (JSON logs).
    pub stderr: Lines,
    quickstart: bool,
    config: Option<PathBuf>,
}

fn field<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix).map(str::trim)
}

impl ControlPlane {
    /// `aisemble-cp serve` on ephemeral loopback ports.
    pub fn serve(data_dir: &Path) -> Self {
        Self::spawn(data_dir, "127.0.0.1:0", "127.0.0.1:0", None, false, None)
    }

    /// `aisemble-cp serve --config FILE` on ephemeral loopback ports.
    pub fn serve_with_config(data_dir: &Path, config: &Path) -> Self {
        Self::spawn(
            data_dir,
            "127.0.0.1:0",
            "127.0.0.1:0",
            None,
            false,
            Some(config.to_owned()),
        )
    }

    /// `aisemble-cp quickstart` on ephemeral loopback ports.
    pub fn quickstart(data_dir: &Path) -> Self {
        Self::spawn(data_dir, "127.0.0.1:0", "127.0.0.1:0", None, true, None)
    }

    fn spawn(
        data_dir: &Path,
        http: &str,
        quic: &str,
        token: Option<String>,
        quickstart: bool,
        config: Option<PathBuf>,
    ) -> Self {
        let mut command = Command::new(&binaries().control_plane);
        command.arg(if quickstart { "quickstart" } else { "serve" });
        if let Some(config) = &config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .args([
                "--http",
                http,
                "--quic",
                quic,
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(data_dir)
            .env(
                "RUST_LOG",
                "aisemble_control_plane=debug,aisemble_agent=info",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting aisemble-cp");
        let stdout = Lines::capture(child.stdout.take().expect("stdout"));
        let stderr = Lines::capture(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut http, mut quic_addr, mut first_token, mut session_token) =
            (None, None, None, None);
        let mut https = false;
        while Instant::now() < deadline && (http.is_none() || quic_addr.is_none()) {
            for line in stdout.all() {
                if let Some(v) = field(&line, "Dashboard and API: http://") {
                    http = v.trim_end_matches('/').parse().ok();
                }
                if let Some(v) = field(&line, "Dashboard and API: https://") {
                    http = v.trim_end_matches('/').parse().ok();
                    https = true;
                }
                if let Some(v) = field(&line, "QUIC ingest for agents:") {
                    quic_addr = v.parse().ok();
                }
                if let Some(v) = field(&line, "Admin API token (shown once, stored hashed):") {
                    first_token = Some(v.to_owned());
                }
                if let Some(v) = field(&line, "Admin API token for this session:") {
                    session_token = Some(v.to_owned());
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                tail("aisemble-cp", &stderr);
                panic!(
                    "aisemble-cp exited early with {status}: {}",
                    stdout.all().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (Some(http), Some(quic)) = (http, quic_addr) else {
            tail("aisemble-cp", &stderr);
            panic!("aisemble-cp did not report its addresses");
        };
        let token = session_token
            .or(first_token)
            .or(token)
            .expect("an admin token (first start prints one)");
        Self {
            data_dir: data_dir.to_owned(),
            http,
            https,
            quic,
            token,
            child: Some(child),
            stdout,
            stderr,
            quickstart,
            config,
        }
    }

    /// An API client with the admin token.
    pub fn api(&self) -> Api {
        Api::new(self.http, &self.token)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// Starts again on the same data directory and ports (after `kill9` or `terminate`).
    pub fn restart(&mut self) {
        self.kill9();
        let next = Self::spawn(
            &self.data_dir,
            &self.http.to_string(),
            &self.quic.to_string(),
            Some(self.token.clone()),
            self.quickstart,
            self.config.clone(),
        );
        *self = next;
    }

    /// Runs `aisemble-cp ARGS --data-dir <dir>`; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(&binaries().control_plane)
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .expect("running aisemble-cp");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Creates an API token with `token create --role ROLE`; returns it.
    ///
    /// # Panics
    /// When the command fails.
    pub fn create_token(&self, role: &str, name: &str) -> String {
        let (code, stdout, stderr) = self.cli(&["token", "create", "--role", role, "--name", name]);
        assert_eq!(code, 0, "token create failed: {stdout}{stderr}");
        stdout
            .lines()
            .find_map(|l| l.split_whitespace().find(|w| w.starts_with("asb_")))
            .expect("a token in the output")
            .to_owned()
    }

    /// Issues a certificate with `certs issue-agent` and writes an `agent.toml` for a test agent
    /// (loopback address, `localhost` as server name, given interval and journal cap) in `dir`.
    pub fn issue_agent(&self, name: &str, dir: &Path, interval: &str, max_bytes: &str) -> PathBuf {
        let address = format!("127.0.0.1:{}", self.quic.port());
        let out = dir.to_str().expect("utf-8 path");
        let (code, stdout, stderr) = self.cli(&[
            "certs",
            "issue-agent",
            name,
            "--out",
            out,
            "--address",
            &address,
        ]);
        assert_eq!(code, 0, "issue-agent failed: {stdout}{stderr}");
        for file in ["ca.pem", "agent.pem", "agent.key", "agent.toml"] {
            assert!(dir.join(file).exists(), "{file} missing");
        }
        let config = dir.join("agent.toml");
        let text = std::fs::read_to_string(&config).expect("agent.toml");
        let text = text
            .replace(
                "[control_plane]",
                "[control_plane]\nserver_name = \"localhost\"",
            )
            .replace("[agent]", "[agent]\ndata_dir = \"journal\"");
        let text = format!(
            "{text}\n[collect]\ninterval = \"{interval}\"\n\n[buffer]\nmax_bytes = \"{max_bytes}\"\n"
        );
        std::fs::write(&config, text).expect("writing agent.toml");
        config
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tail("aisemble-cp stdout", &self.stdout);
            tail("aisemble-cp", &self.stderr);
        }
        self.kill9();
    }
}

/// An agent process.
#[derive(Debug)]
pub struct Agent {
    /// Its config file.
    pub config: PathBuf,
    child: Option<Child>,
    /// Standard error (JSON logs), across restarts.
    pub stderr: Lines,
    restarts: Vec<Lines>,
}

impl Agent {
    /// `aisemble-agent run --config <config>`, logging every journaled record.
    pub fn start(config: &Path) -> Self {
        let (child, stderr) = Self::spawn(config);
        Self {
            config: config.to_owned(),
            child: Some(child),
            stderr,
            restarts: Vec::new(),
        }
    }

    fn spawn(config: &Path) -> (Child, Lines) {
        let mut child = Command::new(&binaries().agent)
            .args(["run", "--log-format", "json", "--config"])
            .arg(config)
            .env("RUST_LOG", "aisemble_agent=trace")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting aisemble-agent");
        let stderr = Lines::capture(child.stderr.take().expect("stderr"));
        (child, stderr)
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// Starts again with the same config (after `kill9` or `terminate`).
    pub fn restart(&mut self) {
        self.kill9();
        let (child, stderr) = Self::spawn(&self.config);
        self.restarts
            .push(std::mem::replace(&mut self.stderr, stderr));
        self.child = Some(child);
    }

    /// `(seq, timestamp_ms)` of every record the agent journaled, across restarts.
    pub fn journaled(&self) -> Vec<(u64, i64)> {
        self.restarts
            .iter()
            .chain(std::iter::once(&self.stderr))
            .flat_map(Lines::events)
            .filter(|e| e["message"] == "Record journaled.")
            .filter_map(|e| Some((e["seq"].as_u64()?, e["timestamp_ms"].as_i64()?)))
            .collect()
    }

    /// Resident memory in KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tail(
                &format!("aisemble-agent {}", self.config.display()),
                &self.stderr,
            );
        }
        self.kill9();
    }
}
