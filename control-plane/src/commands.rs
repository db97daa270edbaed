//! The `aisemble-cp` subcommands other than the long-running server: certificates, API and
//! enrollment tokens,
//! config checks, and the quickstart's local agent. `main.rs` parses arguments and calls these.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use aisemble_certs::{Pki, Validity};
use aisemble_shared::config::agent_toml;
use anyhow::Context as _;

use crate::{
    auth::{Auth, Role},
    config::Settings,
    enroll::EnrollmentTokens,
    reports::text::rfc3339,
    server::open_pki,
};

/// `certs init`: creates the CA and server certificate (or reports the existing ones).
///
/// # Errors
/// When the PKI directory is unusable.
pub fn certs_init(settings: &Settings) -> anyhow::Result<String> {
    let (pki, created) = open_pki(settings)?;
    Ok(format!(
        "{} CA in {}\nCA fingerprint (SHA-256): {}\nServer certificate names: localhost, 127.0.0.1, ::1, {}",
        if created {
            "Created the"
        } else {
            "Using the existing"
        },
        pki.dir().display(),
        pki.ca_fingerprint_sha256(),
        settings.server_names.join(", ")
    ))
}

/// `certs issue-agent NAME --out DIR`: writes `ca.pem`, `agent.pem`, `agent.key` (0600) and
/// `agent.toml`.
///
/// # Errors
/// When the name is invalid or the files cannot be written.
pub fn certs_issue_agent(
    settings: &Settings,
    name: &str,
    out: &Path,
    address: Option<&str>,
    days: u64,
) -> anyhow::Result<String> {
    let (pki, _) = open_pki(settings)?;
    let validity = Validity::starting_now(Duration::from_secs(days * 86_400))?;
    let issued = pki.issue_agent(name, validity)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    pki.write_agent_bundle(&issued, out)?;
    let address = address.unwrap_or(&settings.public_address);
    let config = out.join("agent.toml");
    std::fs::write(
        &config,
        agent_toml("`aisemble-cp`", name, address, None, None, None),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    Ok(format!(
        "Issued a certificate for agent {name} (serial {}), valid until {}.\nWrote {dir}/ca.pem, {dir}/agent.pem, {dir}/agent.key and {dir}/agent.toml (control plane: {address}).\nOn the host: copy them to /etc/aisemble/ and run `aisemble-agent run --config /etc/aisemble/agent.toml`.",
        issued.serial_hex,
        humantime::format_rfc3339_seconds(issued.not_after),
        dir = out.display()
    ))
}

/// `certs revoke NAME`.
///
/// # Errors
/// When no certificate was issued to the name.
pub fn certs_revoke(settings: &Settings, name: &str) -> anyhow::Result<String> {
    let pki = Pki::open(&settings.data_dir.join("pki"))?;
    let serials = pki.revoke(name)?;
    Ok(format!(
        "Revoked {} certificate(s) of {name}: {}. A running control plane disconnects the agent within a second.",
        serials.len(),
        serials.join(", ")
    ))
}

/// `certs list`.
///
/// # Errors
/// When the index cannot be read.
pub fn certs_list(settings: &Settings) -> anyhow::Result<String> {
    let pki = Pki::open(&settings.data_dir.join("pki"))?;
    let mut out = format!("{:<24} {:<34} {:<22} STATUS\n", "NAME", "SERIAL", "EXPIRES");
    let now = SystemTime::now();
    for entry in pki.list()? {
        let status = match entry.revoked_at {
            Some(at) => format!("revoked {}", humantime::format_rfc3339_seconds(at)),
            None if entry.not_after < now => "expired".into(),
            None => "valid".into(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<34} {:<22} {status}",
            entry.name.as_str(),
            entry.serial_hex,
            humantime::format_rfc3339_seconds(entry.not_after).to_string()
        );
    }
    Ok(out)
}

/// `token create`.
///
/// # Errors
/// When the token file cannot be written.
pub fn token_create(settings: &Settings, role: Role, name: &str) -> anyhow::Result<String> {
    std::fs::create_dir_all(&settings.data_dir)?;
    let auth = Auth::open(&settings.data_dir)?;
    let (record, token) = auth.create(role, name)?;
    Ok(format!(
        "{token}\n# {} token {:?} (id {}); shown once, stored hashed.",
        role.as_str(),
        record.name,
        record.id
    ))
}

/// `token list`.
///
/// # Errors
/// When the token file cannot be read.
pub fn token_list(settings: &Settings) -> anyhow::Result<String> {
    let auth = Auth::open(&settings.data_dir)?;
    let mut out = format!("{:<14} {:<9} {:<24} CREATED\n", "ID", "ROLE", "NAME");
    for t in auth.list() {
        let created = SystemTime::UNIX_EPOCH + Duration::from_millis(t.created_at_ms.max(0) as u64);
        let _ = writeln!(
            out,
            "{:<14} {:<9} {:<24} {}",
            t.id,
            t.role.as_str(),
            t.name,
            humantime::format_rfc3339_seconds(created)
        );
    }
    Ok(out)
}

/// `token revoke ID|NAME`.
///
/// # Errors
/// When nothing matched or the file cannot be written.
pub fn token_revoke(settings: &Settings, id_or_name: &str) -> anyhow::Result<String> {
    let auth = Auth::open(&settings.data_dir)?;
    match auth.revoke(id_or_name)? {
        0 => anyhow::bail!("no token with id or name {id_or_name:?}"),
        n => Ok(format!("Revoked {n} token(s).")),
    }
}

/// Prepares the quickstart's local agent: a certificate for this host's name (reused across runs)
/// and an `agent.toml` in `<data_dir>/quickstart-agent`. Returns the config path.
///
/// # Errors
/// When the files cannot be written.
pub fn quickstart_agent_config(
    settings: &Settings,
    quic: std::net::SocketAddr,
) -> anyhow::Result<PathBuf> {
    let dir = settings.data_dir.join("quickstart-agent");
    let name = aisemble_shared::ids::AgentId::parse(&crate::config::local_hostname())
        .map_or_else(|_| "local".to_owned(), |id| id.to_string());
    let (pki, _) = open_pki(settings)?;
    let cert = dir.join("agent.pem");
    let reusable = pki.list()?.iter().any(|e| {
        e.name.as_str() == name
            && e.revoked_at.is_none()
            && e.not_after > SystemTime::now() + Duration::from_secs(86_400)
    }) && cert.exists()
        && dir.join("agent.key").exists();
    if !reusable {
        let issued = pki.issue_agent(&name, Validity::starting_now(Validity::AGENT_LIFETIME)?)?;
        std::fs::create_dir_all(&dir)?;
        pki.write_agent_bundle(&issued, &dir)?;
    }
    let loopback = if quic.is_ipv6() {
        format!("[::1]:{}", quic.port())
    } else {
        format!("127.0.0.1:{}", quic.port())
    };
    let config = dir.join("agent.toml");
    let mut text = agent_toml(
        "`aisemble-cp`",
        &name,
        &loopback,
        Some("localhost"),
        Some("journal"),
        Some("5s"),
    );
    text.push_str(&quickstart_logs_section());
    std::fs::write(&config, text)?;
    Ok(config)
}

/// The file, beside the quickstart agent's config, where `quickstart` writes the control plane's
/// own log (its local agent's included) as JSON lines, emptied at each start.
const QUICKSTART_LOG_FILE: &str = "control-plane.log";

/// Where `quickstart` writes the control plane's own log for its local agent to tail, so the
/// dashboard's Logs view shows the log pipeline at work from the first minute.
pub fn quickstart_log_path(settings: &Settings) -> PathBuf {
    settings
        .data_dir
        .join("quickstart-agent")
        .join(QUICKSTART_LOG_FILE)
}

fn quickstart_logs_section() -> String {
    format!(
        "\n# The control plane's own log, which quickstart writes as JSON lines.\n\
         [[logs]]\npath = \"{QUICKSTART_LOG_FILE}\"\nservice = \"aisemble-cp\"\n\
         format = \"json\"\nstart_at = \"beginning\"\n"
    )
}

/// `rules check`: each file's groups and rules, or every problem, as `promtool check rules`
/// prints them. Returns (stdout, stderr, all good).
pub fn rules_check(files: &[PathBuf]) -> (String, String, bool) {
    let (mut out, mut err, mut ok) = (String::new(), String::new(), true);
    for file in files {
        let _ = writeln!(out, "Checking {}", file.display());
        match crate::alerts::rules::load_rule_files(std::slice::from_ref(file)) {
            Ok(groups) => {
                let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
                let _ = writeln!(out, "  SUCCESS: {rules} rules found");
            }
            Err(errors) => {
                ok = false;
                let _ = writeln!(err, "  FAILED:");
                for error in errors {
                    let _ = writeln!(err, "{error}");
                }
            }
        }
        out.push('\n');
    }
    (out, err, ok)
}

/// The command an operator runs on a new host to enroll it with `token`.
pub fn enroll_command(public_address: &str, token: &str, ca_fingerprint: &str) -> String {
    format!(
        "aisemble-agent enroll --server {public_address} --token {token} --ca-fingerprint {ca_fingerprint}"
    )
}

/// `enroll-token create [--ttl 1h] [--agent NAME]`: a one-time token, printed once, with the
/// command that uses it.
///
/// # Errors
/// When the name is invalid, the PKI is not initialized or the token file cannot be written.
pub fn enroll_token_create(
    settings: &Settings,
    ttl: Duration,
    agent: Option<&str>,
) -> anyhow::Result<String> {
    crate::enroll::check_ttl(ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let agent = agent
        .map(aisemble_shared::ids::AgentId::parse)
        .transpose()
        .context("--agent")?;
    std::fs::create_dir_all(&settings.data_dir)?;
    let (pki, _) = open_pki(settings)?;
    let tokens = EnrollmentTokens::new(&settings.data_dir);
    let (record, token) = tokens.create(ttl, agent.as_ref(), "cli", crate::store::now_ms())?;
    Ok(format!(
        "{token}\n# enrollment token {} for {}, valid until {}; one use, shown once, stored hashed.\n# On the new host:\n#   {}",
        record.id,
        record.agent.as_deref().map_or_else(
            || "any new agent name".to_owned(),
            |a| format!("agent {a:?}")
        ),
        rfc3339(record.expires_at_ms),
        enroll_command(
            &settings.public_address,
            &token,
            &pki.ca_fingerprint_sha256()
        ),
    ))
}

/// `enroll-token list`: every token still on file, never the tokens themselves.
///
/// # Errors
/// When the token file cannot be read.
pub fn enroll_token_list(settings: &Settings) -> anyhow::Result<String> {
    let tokens = EnrollmentTokens::new(&settings.data_dir).list()?;
    let now = crate::store::now_ms();
    let mut out = format!("{:<14} {:<16} {:<22} STATE\n", "ID", "AGENT", "EXPIRES");
    for t in tokens {
        let state = match &t.used {
            Some(used) => format!("used by {}", used.agent),
            None if t.expires_at_ms <= now => "expired".to_owned(),
            None => "unused".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<14} {:<16} {:<22} {state}",
            t.id,
            t.agent.as_deref().unwrap_or("(any)"),
            rfc3339(t.expires_at_ms),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use aisemble_shared::config::{AgentConfigFile, LogFormat, StartAt, parse_toml};

    use aisemble_shared::config::agent_toml;

    #[test]
    fn written_agent_configs_parse() {
        let text = agent_toml(
            "`aisemble-cp`",
            "node-1",
            "cp.example.com:7443",
            Some("cp"),
            Some("journal"),
            Some("5s"),
        );
        let config: AgentConfigFile =
            parse_toml(Path::new("agent.toml"), &text, "x").expect("parses");
        assert_eq!(config.agent.name.as_deref(), Some("node-1"));
        assert_eq!(config.control_plane.address, "cp.example.com:7443");
        assert_eq!(config.control_plane.ca, Path::new("ca.pem"));
        let minimal: AgentConfigFile = parse_toml(
            Path::new("a"),
            &agent_toml("`aisemble-cp`", "n", "h:1", None, None, None),
            "x",
        )
        .expect("parses");
        assert_eq!(minimal.control_plane.server_name, None);
    }

    #[test]
    fn the_quickstart_agent_tails_the_control_planes_log_as_json() {
        let mut text = agent_toml("`aisemble-cp`", "n", "h:1", None, None, None);
        text.push_str(&super::quickstart_logs_section());
        let config: AgentConfigFile = parse_toml(Path::new("a"), &text, "x").expect("parses");
        let [source] = config.logs.as_slice() else {
            panic!("one log source: {:?}", config.logs);
        };
        assert_eq!(source.path, Path::new(super::QUICKSTART_LOG_FILE));
        assert_eq!(source.service, "aisemble-cp");
        assert_eq!(source.format, LogFormat::Json);
        assert_eq!(source.start_at, StartAt::Beginning);
    }
}
