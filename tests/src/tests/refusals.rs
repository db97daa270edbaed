use std::{
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use aisemble_certs::{Pki, Validity};

use super::{connected, tempdir};
use crate::{
    process::{Agent, ControlPlane},
    quic, wait,
};

/// Connects with the given identity and tries a Hello; the handshake is expected to fail.
async fn attempt(cp: &ControlPlane, ca: &Path, identity: Option<(&Path, &Path)>) {
    let config = quic::client_config(ca, identity);
    // TLS 1.3 lets the client finish before the server rejects its certificate, so the refusal
    // may surface at connect or only when using the stream; either way nothing may be accepted.
    if let Ok((_endpoint, connection)) = quic::connect(cp.quic, config).await
        && let Ok((mut send, mut recv)) = connection.open_bi().await
    {
        let _ = send.write_all(&quic::frame(&quic::hello(1))).await;
        let mut decoder = aisemble_shared::codec::FrameDecoder::new(1 << 20);
        assert!(
            quic::read_message(&mut recv, &mut decoder).await.is_err(),
            "a refused client got an answer"
        );
    }
}

async fn rejected(cp: &ControlPlane, reason: &str, at_least: f64) {
    let series = format!("aisemble_ingest_rejected_total{{reason=\"{reason}\"}}");
    let api = cp.api();
    wait::until(Duration::from_secs(10), &series, || async {
        api.metric(&series)
            .await
            .ok()
            .flatten()
            .filter(|v| *v >= at_least)
    })
    .await;
    wait::until(
        Duration::from_secs(10),
        &format!("a log line with reason {reason}"),
        || async {
            cp.stderr
                .events()
                .iter()
                .any(|e| {
                    e["message"] == "Refused a connection at the handshake."
                        && e["reason"] == reason
                })
                .then_some(())
        },
    )
    .await;
}

fn write_bundle(pki: &Pki, name: &str, validity: Validity, dir: &Path) {
    let issued = pki.issue_agent(name, validity).expect("issues");
    pki.write_agent_bundle(&issued, dir).expect("writes");
}

/// No client certificate, a certificate from another CA, an expired one and a revoked one are
/// all refused at the handshake, logged with the reason and counted per reason; revoking a
/// connected agent disconnects it within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_refused_and_revocation_disconnects_within_2s() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let pki = Pki::open(&cp.data_dir.join("pki")).expect("the control plane's PKI");
    let ca = cp.data_dir.join("pki/ca.pem");

    attempt(&cp, &ca, None).await;
    rejected(&cp, "no_client_certificate", 1.0).await;

    let (foreign, _) = Pki::open_or_init(&dir.path().join("foreign-ca"), &[]).expect("another CA");
    let foreign_dir = dir.path().join("foreign");
    write_bundle(
        &foreign,
        "intruder",
        Validity::starting_now(Duration::from_secs(3600)).expect("validity"),
        &foreign_dir,
    );
    attempt(
        &cp,
        &ca,
        Some((
            &foreign_dir.join("agent.pem"),
            &foreign_dir.join("agent.key"),
        )),
    )
    .await;
    rejected(&cp, "unknown_ca", 1.0).await;

    let expired_dir = dir.path().join("expired");
    let past = SystemTime::now() - Duration::from_secs(7 * 86_400);
    write_bundle(
        &pki,
        "stale",
        Validity::new(past, past + Duration::from_secs(86_400)).expect("validity"),
        &expired_dir,
    );
    attempt(
        &cp,
        &ca,
        Some((
            &expired_dir.join("agent.pem"),
            &expired_dir.join("agent.key"),
        )),
    )
    .await;
    rejected(&cp, "expired", 1.0).await;

    let revoked_dir = dir.path().join("revoked");
    write_bundle(
        &pki,
        "former",
        Validity::starting_now(Duration::from_secs(3600)).expect("validity"),
        &revoked_dir,
    );
    let (code, _, stderr) = cp.cli(&["certs", "revoke", "former"]);
    assert_eq!(code, 0, "{stderr}");
    // The server polls the index; give it a moment to load the new list.
    tokio::time::sleep(Duration::from_secs(1)).await;
    attempt(
        &cp,
        &ca,
        Some((
            &revoked_dir.join("agent.pem"),
            &revoked_dir.join("agent.key"),
        )),
    )
    .await;
    rejected(&cp, "revoked", 1.0).await;

    // A connected agent, revoked from the CLI, is disconnected within 2 s.
    let api = cp.api();
    let mut victim =
        Agent::start(&cp.issue_agent("victim", &dir.path().join("victim"), "1s", "16MiB"));
    connected(&api, "victim").await;
    let (code, _, stderr) = cp.cli(&["certs", "revoke", "victim"]);
    assert_eq!(code, 0, "{stderr}");
    let revoked_at = Instant::now();
    wait::until(Duration::from_secs(5), "victim disconnected", || async {
        api.agent("victim")
            .await
            .ok()
            .flatten()
            .filter(|a| a["connected"] == false)
    })
    .await;
    let elapsed = revoked_at.elapsed();
    assert!(
        elapsed <= Duration::from_secs(2),
        "disconnected after {elapsed:?}"
    );
    // It keeps trying and keeps being refused; the process itself stays up.
    rejected(&cp, "revoked", 3.0).await;
    assert!(
        victim.running(),
        "a refused agent keeps running and retrying"
    );
    assert!(
        cp.stderr
            .events()
            .iter()
            .any(|e| e["message"] == "Refused a connection at the handshake."
                && e["reason"] == "revoked"),
        "revoked handshakes are logged with their reason"
    );

    let list = cp.cli(&["certs", "list"]).1;
    assert!(
        list.lines()
            .any(|l| l.starts_with("victim") && l.contains("revoked")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("stale") && l.contains("expired")),
        "{list}"
    );
}
