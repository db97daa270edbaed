use std::path::Path;

use aisemble_shared::config::{AgentConfigFile, parse_toml};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The documented example files parse, and their values are the defaults they claim.
#[test]
fn example_configs_parse_and_show_the_defaults() {
    let path = repo("agent/agent.example.toml");
    let text = std::fs::read_to_string(&path).expect("agent example");
    let agent: AgentConfigFile = parse_toml(&path, &text, "example").expect("agent example parses");
    let minimal: AgentConfigFile = parse_toml(
        &path,
        "[control_plane]\naddress = \"cp.example.com:7443\"\n",
        "x",
    )
    .expect("minimal");
    assert_eq!(agent, minimal, "the example's values are the defaults");

    let output = std::process::Command::new(&crate::bins::binaries().control_plane)
        .arg("check-config")
        .arg(repo("control-plane/control-plane.example.toml"))
        .output()
        .expect("check-config");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("HTTP 127.0.0.1:8080, QUIC 0.0.0.0:7443"),
        "{stdout}"
    );
}

/// The commented-out `[[checks]]`, `[[scrape]]` and `[push]` examples of `agent.example.toml`,
/// uncommented, are valid configurations.
#[test]
fn commented_agent_examples_are_valid() {
    let path = repo("agent/agent.example.toml");
    let text = std::fs::read_to_string(&path).expect("agent example");
    let start = text
        .find("# [[checks]]")
        .expect("the example documents checks");
    let uncommented: String = text[start..]
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        // Only TOML: tables and `key = value` lines; prose and alternatives (`# # shell = true`)
        // stay out.
        .filter(|line| {
            line.starts_with('[')
                || line.split_once(" = ").is_some_and(|(key, _)| {
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
        })
        .map(|line| format!("{line}\n"))
        .collect();
    // The example's CA file does not exist here; the check loads it at config time.
    let uncommented = uncommented.replace(
        "/etc/aisemble/internal-ca.pem",
        "/etc/ssl/certs/ca-certificates.crt",
    );
    let file: AgentConfigFile = parse_toml(
        &path,
        &format!("[control_plane]\naddress = \"cp:7443\"\n{uncommented}"),
        "example",
    )
    .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert_eq!(file.checks.len(), 5, "one example per check kind");
    let interval = std::time::Duration::from_secs(10);
    for check in &file.checks {
        aisemble_agent::checks::CheckSpec::from_config(&path, check, interval)
            .unwrap_or_else(|e| panic!("check example {}: {e}", check.name));
    }
    assert!(!file.scrape.is_empty(), "the example documents scraping");
    for scrape in &file.scrape {
        aisemble_agent::scrape::ScrapeSpec::from_config(&path, scrape, interval)
            .unwrap_or_else(|e| panic!("scrape example {}: {e}", scrape.name));
    }
    assert!(
        aisemble_agent::push::PushSettings::from_config(&path, &file.push)
            .expect("push example")
            .is_some(),
        "the example documents the push endpoint"
    );
}
