//! Enrollment end to end: tokens from the CLI and the API, a real `aisemble-agent enroll` over
//! QUIC, the enrolled agent streaming with its new certificate, and every way a token is refused.

use std::{os::unix::fs::PermissionsExt as _, path::Path, process::Command, time::Duration};

use serde_json::json;

use super::{connected, tempdir};
use crate::{
    bins::binaries,
    process::{Agent, ControlPlane},
    wait,
};

/// `aisemble-agent enroll ...`; returns (exit code, stdout, stderr).
fn enroll(
    cp: &ControlPlane,
    token: &str,
    name: &str,
    out: &Path,
    extra: &[&str],
) -> (i32, String, String) {
    let server = format!("127.0.0.1:{}", cp.quic.port());
    let output = Command::new(&binaries().agent)
        .args([
            "enroll", "--server", &server, "--token", token, "--name", name, "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .expect("running aisemble-agent enroll");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The word after `--ca-fingerprint` in a printed command.
fn fingerprint_in(text: &str) -> String {
    let mut words = text.split_whitespace();
    words
        .find(|w| *w == "--ca-fingerprint")
        .and_then(|_| words.next())
        .expect("a --ca-fingerprint in the output")
        .to_owned()
}

fn cli_token(cp: &ControlPlane, args: &[&str]) -> (String, String) {
    let mut all = vec!["enroll-token", "create"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = cp.cli(&all);
    assert_eq!(code, 0, "enroll-token create: {stdout}{stderr}");
    let token = stdout
        .split_whitespace()
        .find(|w| w.starts_with("asbe_"))
        .expect("a token in the output")
        .to_owned();
    (token, fingerprint_in(&stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_enroll_with_one_time_tokens_and_stream_with_their_certificate() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();

    // A CLI token and the CA fingerprint: the agent makes its key, gets a certificate, and runs.
    let (token, fingerprint) = cli_token(&cp, &["--ttl", "10m"]);
    let first = dir.path().join("first");
    let (code, stdout, stderr) = enroll(
        &cp,
        &token,
        "gpu-enrolled",
        &first,
        &["--ca-fingerprint", &fingerprint],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("its fingerprint matches"), "{stdout}");
    for file in ["ca.pem", "agent.pem", "agent.key", "agent.toml"] {
        assert!(first.join(file).exists(), "{file} missing");
    }
    let mode = std::fs::metadata(first.join("agent.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let config = first.join("agent.toml");
    let text = std::fs::read_to_string(&config).expect("agent.toml");
    assert!(text.contains("name = \"gpu-enrolled\""), "{text}");
    std::fs::write(
        &config,
        text.replace("[agent]", "[agent]\ndata_dir = \"journal\"")
            + "\n[collect]\ninterval = \"1s\"\n",
    )
    .expect("agent.toml");
    let _agent = Agent::start(&config);
    connected(&api, "gpu-enrolled").await;

    // The token is spent: the secret went over once.
    let (code, _, stderr) = enroll(&cp, &token, "gpu-again", &dir.path().join("again"), &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("already used"), "{stderr}");
    assert!(
        !dir.path().join("again/agent.key").exists(),
        "nothing written on refusal"
    );

    // An API token, without a fingerprint: the server proves it holds the token.
    let (status, created) = api
        .post("/ops/enrollment/tokens", &json!({"ttl": "5m"}))
        .await
        .expect("create");
    assert_eq!(status, 201, "{created}");
    let api_token = created["token"].as_str().expect("token").to_owned();
    assert_eq!(
        created["ca_fingerprint"].as_str(),
        Some(fingerprint.as_str())
    );
    assert!(
        created["command"]
            .as_str()
            .expect("command")
            .contains(&api_token)
    );
    // A wrong fingerprint is refused before the token leaves the host, so the token still works.
    let wrong = "00".repeat(32);
    let (code, _, stderr) = enroll(
        &cp,
        &api_token,
        "gpu-proof",
        &dir.path().join("proof"),
        &["--ca-fingerprint", &wrong],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("not trusting the control plane"),
        "{stderr}"
    );
    let (code, stdout, stderr) =
        enroll(&cp, &api_token, "gpu-proof", &dir.path().join("proof"), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("proved it holds the token"), "{stdout}");

    // A live agent's name needs a token made for that name.
    let (unbound, _) = cli_token(&cp, &[]);
    let (code, _, stderr) = enroll(
        &cp,
        &unbound,
        "gpu-enrolled",
        &dir.path().join("taken"),
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("already has a valid certificate"),
        "{stderr}"
    );
    let (bound, _) = cli_token(&cp, &["--agent", "gpu-enrolled"]);
    let (code, _, stderr) = enroll(&cp, &bound, "gpu-other", &dir.path().join("other"), &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("is for agent \"gpu-enrolled\""), "{stderr}");
    let (code, stdout, stderr) =
        enroll(&cp, &bound, "gpu-enrolled", &dir.path().join("taken"), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // ... and it revokes the name's previous certificate: the agent still using it is cut off.
    let revoked = "aisemble_ingest_rejected_total{reason=\"revoked\"}";
    wait::until(
        Duration::from_secs(10),
        "the old certificate revoked",
        || async {
            api.metric(revoked)
                .await
                .ok()
                .flatten()
                .filter(|v| *v >= 1.0)
        },
    )
    .await;
    // An existing identity is kept unless --force.
    let (code, _, stderr) = enroll(&cp, &unbound, "gpu-new", &first, &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--force"), "{stderr}");

    // Expired and made-up tokens.
    let (short, _) = cli_token(&cp, &["--ttl", "1s"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, _, stderr) = enroll(&cp, &short, "gpu-late", &dir.path().join("late"), &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("expired"), "{stderr}");
    let (code, _, stderr) = enroll(
        &cp,
        "asbe_feedbeef.made-up",
        "gpu-x",
        &dir.path().join("x"),
        &[],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown enrollment token"), "{stderr}");
    let (code, _, stderr) = enroll(&cp, "not-a-token", "gpu-x", &dir.path().join("x"), &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--token"), "{stderr}");

    // Counted, listed and audited.
    let issued = api
        .metric("aisemble_enrollments_total{result=\"issued\"}")
        .await
        .expect("metrics");
    assert_eq!(issued, Some(3.0));
    let (code, listing, _) = cp.cli(&["enroll-token", "list"]);
    assert_eq!(code, 0);
    assert!(listing.contains("used by gpu-enrolled"), "{listing}");
    assert!(listing.contains("expired"), "{listing}");
    let (status, audit) = api
        .post("/ops/logs/audit", &json!({"limit": 1000}))
        .await
        .expect("audit");
    assert_eq!(status, 200, "{audit}");
    let enrollments: Vec<_> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["method"] == "ENROLL")
        .collect();
    let succeeded = enrollments
        .iter()
        .filter(|e| e["outcome"] == "success")
        .count();
    assert_eq!(succeeded, 3, "{enrollments:?}");
    // Refused by the control plane: the spent, expired and made-up tokens (before the agent
    // named itself), the taken name and the other name. A wrong fingerprint, an existing key and
    // a malformed token are refused on the host and never reach it.
    let refused: Vec<_> = enrollments
        .iter()
        .filter(|e| e["outcome"] == "forbidden")
        .map(|e| e["path"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        refused,
        [
            "quic:enroll",
            "quic:enroll/gpu-enrolled",
            "quic:enroll/gpu-other",
            "quic:enroll",
            "quic:enroll",
        ]
        .into_iter()
        .rev()
        .collect::<Vec<_>>(),
        "newest first: {enrollments:?}"
    );
    let refused_count = api
        .metric("aisemble_enrollments_total{result=\"refused\"}")
        .await
        .expect("metrics");
    assert_eq!(refused_count, Some(5.0));
    // The same entries went to the process log, with their place in the chain.
    let logged = cp
        .stderr
        .events()
        .iter()
        .filter(|e| e["target"] == "audit" && e["method"] == "ENROLL")
        .filter(|e| e["seq"].as_u64().is_some_and(|seq| seq > 0))
        .count();
    assert_eq!(
        logged,
        enrollments.len(),
        "every enrollment entry is also logged"
    );
    let (status, verified) = api
        .post_empty("/ops/logs/audit/verify")
        .await
        .expect("verify");
    assert_eq!(status, 200);
    assert_eq!(verified["valid"], true, "{verified}");
}
