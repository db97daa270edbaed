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
