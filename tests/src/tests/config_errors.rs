use std::process::Command;

use super::tempdir;
use crate::bins::binaries;

fn check(binary: &std::path::Path, file: &std::path::Path) -> (i32, String) {
    let output = Command::new(binary)
        .arg("check-config")
        .arg(file)
        .output()
        .expect("runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[track_caller]
fn assert_one_line(stderr: &str, parts: &[&str]) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    for part in parts {
        assert!(
            lines[0].contains(part),
            "{part:?} missing from: {}",
            lines[0]
        );
    }
}

/// Unknown key, wrong type, missing file: one clear line naming the file, the key and the fix,
/// and exit code 78.
#[test]
fn bad_config_files_get_one_clear_line() {
    let dir = tempdir();
    let agent = &binaries().agent;

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(
        &unknown,
        "[control_plane]\naddress = \"cp:7443\"\n\n[collect]\nintervall = \"5s\"\n",
    )
    .expect("write");
    let (code, stderr) = check(agent, &unknown);
    assert_eq!(code, 78);
    assert_one_line(
        &stderr,
        &[
            "unknown.toml:5:1",
            "collect.intervall",
            "unknown field",
            "expected `interval`",
            "agent.example.toml",
        ],
    );

    let wrong_type = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong_type,
        "[control_plane]\naddress = \"cp:7443\"\n[buffer]\nmax_bytes = 512\n",
    )
    .expect("write");
    let (code, stderr) = check(agent, &wrong_type);
    assert_eq!(code, 78);
    assert_one_line(
        &stderr,
        &[
            "wrong.toml:4:13",
            "buffer.max_bytes",
            "invalid type",
            "\"512MiB\"",
        ],
    );

    let missing = dir.path().join("nope.toml");
    let (code, stderr) = check(agent, &missing);
    assert_eq!(code, 78);
    assert_one_line(
        &stderr,
        &["nope.toml", "cannot read", "No such file", "--config"],
    );

    let no_certs = dir.path().join("nocerts.toml");
    std::fs::write(
        &no_certs,
        "[control_plane]\naddress = \"cp:7443\"\ncert = \"missing.pem\"\n",
    )
    .expect("write");
    let (code, stderr) = check(agent, &no_certs);
    assert_eq!(code, 78);
    assert_one_line(
        &stderr,
        &[
            "nocerts.toml",
            "control_plane.cert",
            "missing.pem",
            "issue-agent",
        ],
    );

    let cp_unknown = dir.path().join("cp.toml");
    std::fs::write(&cp_unknown, "[storage]\nretension = \"30d\"\n").expect("write");
    let (code, stderr) = check(&binaries().control_plane, &cp_unknown);
    assert_eq!(code, 78);
    assert_one_line(
        &stderr,
        &[
            "cp.toml:2:1",
            "storage.retension",
            "unknown field",
            "control-plane.example.toml",
        ],
    );
}
