//! In-crate tests: files on a temp dir, verification with webpki at a fixed time, and in-memory
//! TLS handshakes (no sockets).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{Arc, RwLock},
    thread,
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, Connection,
    ServerConnection, pki_types::ServerName as TlsServerName,
};
use rustls_pki_types::{CertificateDer, UnixTime, pem::PemObject};
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::{
    Error, IssuedAgent, Pki, RevocationList, Validity,
    tls::{self, RevocationCheck},
};

const ALPN: &[u8] = b"aisemble/1";
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn init(dir: &Path, names: &[&str]) -> (Pki, bool) {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    Pki::open_or_init(dir, &names).expect("open_or_init")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn der_of(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM")
}

fn expired() -> Validity {
    let now = SystemTime::now();
    Validity::new(now - 2 * DAY, now - DAY).expect("validity")
}

/// A fixed verification time: one hour from the start of the test.
fn fixed_now() -> UnixTime {
    let now = SystemTime::now() + HOUR;
    UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970"),
    )
}

/// Subject alternative names of a certificate as strings (`dns:…`, `ip:…`, `uri:…`).
fn sans(der: &CertificateDer<'_>) -> Vec<String> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).expect("parse");
    let Some(san) = x509.subject_alternative_name().expect("SAN extension") else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(s) => format!("dns:{s}"),
            GeneralName::URI(s) => format!("uri:{s}"),
            GeneralName::IPAddress(b) => match b.len() {
                4 => format!(
                    "ip:{}",
                    std::net::IpAddr::from(<[u8; 4]>::try_from(*b).expect("4"))
                ),
                _ => format!(
                    "ip:{}",
                    std::net::IpAddr::from(<[u8; 16]>::try_from(*b).expect("16"))
                ),
            },
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Pki>();
    check::<RevocationList>();
    check::<Error>();
}

#[test]
fn init_creates_private_files_and_reopens_the_same_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pki");
    let (pki, created) = init(&dir, &["cp.example.com"]);
    assert!(created);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("server.key")), 0o600);
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);
    assert_eq!(mode(&dir.join("server.pem")), 0o644);
    let fingerprint = pki.ca_fingerprint_sha256();
    assert_eq!(fingerprint.len(), 64);
    let server_pem = fs::read(dir.join("server.pem")).expect("server.pem");

    let (again, created) = init(&dir, &["cp.example.com"]);
    assert!(!created);
    assert_eq!(again.ca_fingerprint_sha256(), fingerprint);
    assert_eq!(
        fs::read(dir.join("server.pem")).expect("server.pem"),
        server_pem,
        "not re-issued"
    );

    let opened = Pki::open(&dir).expect("open");
    assert_eq!(opened.ca_fingerprint_sha256(), fingerprint);
    assert_eq!(opened.server_chain(), pki.server_chain());
    assert_eq!(opened.ca_pem(), pki.ca_pem());

    // No leftovers of atomic writes.
    let mut names: Vec<_> = fs::read_dir(&dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["ca.key", "ca.pem", "pki.lock", "server.key", "server.pem"]
    );
}

#[test]
fn ca_certificate_is_a_constrained_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(tmp.path(), &[]);
    let (_, ca) = x509_parser::parse_x509_certificate(pki.ca_der()).expect("parse");
    let cn = ca
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    assert_eq!(cn, Some("Ai-semble Ops CA"));
    let tmp2 = tempfile::tempdir().expect("tempdir");
    let (other, _) = init(tmp2.path(), &[]);
    let (_, other) = x509_parser::parse_x509_certificate(other.ca_der()).expect("parse");
    assert_ne!(
        ca.subject(),
        other.subject(),
        "each installation's CA has its own name"
    );
    let constraints = ca.basic_constraints().expect("ok").expect("present").value;
    assert!(constraints.ca);
    assert_eq!(constraints.path_len_constraint, Some(0));
    let usage = ca.key_usage().expect("ok").expect("present").value;
    assert!(usage.key_cert_sign() && usage.crl_sign() && usage.digital_signature());
    let lifetime = ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp();
    assert!(lifetime > 3649 * 86_400, "about ten years: {lifetime}");
    assert_eq!(ca.raw_serial().len(), 16);
}

#[test]
fn server_certificate_names_and_reissue() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (pki, _) = init(dir, &["cp.example.com", "10.1.2.3"]);
    let mut names = sans(&pki.server_chain()[0]);
    names.sort();
    assert_eq!(
        names,
        [
            "dns:cp.example.com",
            "dns:localhost",
            "ip:10.1.2.3",
            "ip:127.0.0.1",
            "ip:::1"
        ]
    );
    let verifier = tls::server_verifier(pki.ca_der()).expect("verifier");
    let verify = |pki: &Pki, name: &str| {
        use rustls::client::danger::ServerCertVerifier;
        let name = TlsServerName::try_from(name.to_owned()).expect("server name");
        verifier.verify_server_cert(&pki.server_chain()[0], &[], &name, &[], fixed_now())
    };
    for name in [
        "localhost",
        "127.0.0.1",
        "::1",
        "cp.example.com",
        "10.1.2.3",
    ] {
        assert!(verify(&pki, name).is_ok(), "{name}");
    }
    assert!(matches!(
        verify(&pki, "other.example.com"),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForNameContext { .. }
        ))
    ));

    // Asking for a subset keeps the certificate; a new name re-issues it (CA untouched).
    let ca_files = || {
        [
            fs::read(dir.join("ca.pem")).ok(),
            fs::read(dir.join("ca.key")).ok(),
        ]
    };
    let before = ca_files();
    let (same, _) = init(dir, &["10.1.2.3"]);
    assert_eq!(same.server_chain(), pki.server_chain());
    let (renewed, created) = init(dir, &["new.example.com"]);
    assert!(!created);
    assert_ne!(renewed.server_chain(), pki.server_chain());
    assert_eq!(ca_files(), before, "CA files untouched");
    assert_eq!(renewed.ca_fingerprint_sha256(), pki.ca_fingerprint_sha256());
    for name in ["cp.example.com", "10.1.2.3", "new.example.com", "localhost"] {
        assert!(verify(&renewed, name).is_ok(), "{name} after re-issue");
    }
    assert_eq!(mode(&dir.join("server.key")), 0o600);
    assert_eq!(
        Pki::open(dir).expect("open").server_chain(),
        renewed.server_chain()
    );
}

#[test]
fn unusable_server_files_are_reissued() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (pki, _) = init(dir, &[]);
    // A key that belongs to another certificate.
    fs::write(
        dir.join("server.key"),
        KeyPair::generate().expect("key").serialize_pem(),
    )
    .expect("write");
    assert!(matches!(Pki::open(dir), Err(Error::KeyMismatch { .. })));
    let (fixed, _) = init(dir, &[]);
    assert_ne!(fixed.server_chain(), pki.server_chain());
    Pki::open(dir).expect("consistent again");

    fs::remove_file(dir.join("server.key")).expect("remove");
    let err = Pki::open(dir).expect_err("no server key");
    assert!(err.to_string().contains("server.key is missing"), "{err}");
    init(dir, &[]);

    fs::write(dir.join("server.pem"), "garbage").expect("write");
    let err = Pki::open(dir).expect_err("garbage");
    assert!(err.to_string().contains("server.pem"), "{err}");
    init(dir, &[]);
    Pki::open(dir).expect("consistent again");
}

#[test]
fn bad_directories_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = Pki::open(&tmp.path().join("absent")).expect_err("absent");
    assert!(matches!(err, Error::NotInitialized { .. }));
    assert!(
        err.to_string().contains("run `aisemble-cp certs init`"),
        "{err}"
    );

    let dir = tmp.path().join("pki");
    init(&dir, &[]);
    fs::remove_file(dir.join("ca.key")).expect("remove");
    let err = Pki::open_or_init(&dir, &[]).expect_err("missing key");
    assert!(matches!(err, Error::Incomplete { .. }), "{err}");
    assert!(err.to_string().contains("ca.key is missing"), "{err}");

    let err = Pki::open_or_init(&tmp.path().join("other"), &["not a name".to_owned()])
        .expect_err("bad server name");
    assert!(matches!(err, Error::InvalidServerName { .. }), "{err}");
}

/// Outcome of a certificate verification, by class.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    UnknownIssuer,
    Expired,
    NotValidYet,
    Revoked,
    WrongPurpose,
    Other(String),
}

fn verdict<T>(result: Result<T, rustls::Error>) -> Verdict {
    use CertificateError as C;
    match result {
        Ok(_) => Verdict::Accept,
        Err(rustls::Error::InvalidCertificate(e)) => match e {
            C::UnknownIssuer => Verdict::UnknownIssuer,
            C::Expired | C::ExpiredContext { .. } => Verdict::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => Verdict::NotValidYet,
            C::Revoked => Verdict::Revoked,
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => Verdict::WrongPurpose,
            other => Verdict::Other(format!("{other:?}")),
        },
        Err(other) => Verdict::Other(format!("{other:?}")),
    }
}

/// Verifies `cert` as a client certificate with the verifier `server_config` uses.
#[track_caller]
fn check_client(pki: &Pki, cert: &CertificateDer<'_>, now: UnixTime, expected: Verdict) {
    let revocations: Arc<dyn RevocationCheck> =
        Arc::new(pki.revocation_list().expect("revocation list"));
    let verifier = tls::client_verifier(pki.ca_der(), revocations, tls::ClientAuth::Required)
        .expect("verifier");
    assert_eq!(
        verdict(verifier.verify_client_cert(cert, &[], now)),
        expected
    );
}

#[test]
fn client_chains_verify_with_webpki() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(&tmp.path().join("a"), &[]);
    let (other_ca, _) = init(&tmp.path().join("b"), &[]);
    let year = Validity::starting_now(Validity::AGENT_LIFETIME).expect("validity");

    let valid = pki.issue_agent("node-1", year).expect("issue");
    let foreign = other_ca.issue_agent("node-1", year).expect("issue");
    let old = pki.issue_agent("node-2", expired()).expect("issue");
    let revoked = pki.issue_agent("node-3", year).expect("issue");
    pki.revoke("node-3").expect("revoke");

    let now = fixed_now();
    let long_ago = UnixTime::since_unix_epoch(Duration::from_secs(1_000_000_000));
    check_client(&pki, &der_of(&valid.cert_pem), now, Verdict::Accept);
    check_client(
        &pki,
        &der_of(&foreign.cert_pem),
        now,
        Verdict::UnknownIssuer,
    );
    check_client(&pki, &der_of(&old.cert_pem), now, Verdict::Expired);
    check_client(
        &pki,
        &der_of(&valid.cert_pem),
        long_ago,
        Verdict::NotValidYet,
    );
    check_client(&pki, &der_of(&revoked.cert_pem), now, Verdict::Revoked);
    check_client(&pki, &pki.server_chain()[0], now, Verdict::WrongPurpose);
    // The CA itself is not a client certificate either.
    assert_ne!(
        verdict(
            tls::client_verifier(
                pki.ca_der(),
                Arc::new(RevocationList::default()),
                tls::ClientAuth::Required,
            )
            .expect("verifier")
            .verify_client_cert(pki.ca_der(), &[], now)
        ),
        Verdict::Accept
    );
}

#[test]
fn agent_certificate_contents() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(tmp.path(), &[]);
    let validity = Validity::starting_now(Validity::AGENT_LIFETIME).expect("validity");
    let issued = pki.issue_agent("gpu.worker_07", validity).expect("issue");
    assert_eq!(issued.name.as_str(), "gpu.worker_07");
    assert_eq!(
        (issued.not_before, issued.not_after),
        (validity.not_before(), validity.not_after())
    );
    let der = der_of(&issued.cert_pem);
    assert_eq!(sans(&der), ["uri:urn:aisemble:agent:gpu.worker_07"]);
    let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("parse");
    let cn = x509
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    assert_eq!(cn, Some("gpu.worker_07"));
    assert_eq!(hex::encode(x509.raw_serial()), issued.serial_hex);
    assert_eq!(x509.raw_serial().len(), 16);
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    };
    assert_eq!(
        x509.validity().not_before.timestamp().cast_unsigned(),
        secs(issued.not_before)
    );
    assert_eq!(
        x509.validity().not_after.timestamp().cast_unsigned(),
        secs(issued.not_after)
    );
    let mut seen = Vec::new();
    for ext in x509.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                assert!(!bc.ca);
                seen.push("basic_constraints");
            }
            ParsedExtension::KeyUsage(ku) => {
                assert!(ku.digital_signature() && !ku.key_cert_sign());
                seen.push("key_usage");
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(eku.client_auth && !eku.server_auth && !eku.any);
                seen.push("extended_key_usage");
            }
            ParsedExtension::AuthorityKeyIdentifier(_) => seen.push("authority_key_identifier"),
            _ => {}
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        [
            "authority_key_identifier",
            "basic_constraints",
            "extended_key_usage",
            "key_usage"
        ]
    );

    let identity = tls::peer_identity(&[der]).expect("identity");
    assert_eq!(identity.name.as_str(), "gpu.worker_07");
    assert_eq!(hex::encode(&identity.serial), issued.serial_hex);
    assert_eq!(identity.not_after, issued.not_after);

    for bad in ["", "-x", "a/b", "../etc", "a b"] {
        assert!(
            matches!(pki.issue_agent(bad, validity), Err(Error::InvalidName(_))),
            "{bad:?}"
        );
    }
    assert!(
        pki.list().expect("list").len() == 1,
        "refused names are not recorded"
    );
}

#[test]
fn revoke_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(tmp.path(), &[]);
    assert_eq!(pki.index_modified(), None);
    let year = Validity::starting_now(Validity::AGENT_LIFETIME).expect("validity");
    let first = pki.issue_agent("node-1", year).expect("issue");
    let second = pki.issue_agent("node-1", year).expect("issue");
    let bystander = pki.issue_agent("node-2", year).expect("issue");
    assert_ne!(first.serial_hex, second.serial_hex);
    assert!(pki.index_modified().is_some());
    assert_eq!(mode(&tmp.path().join("issued.json")), 0o644);

    let mut revoked = pki.revoke("node-1").expect("revoke");
    revoked.sort();
    let mut expected = vec![first.serial_hex.clone(), second.serial_hex.clone()];
    expected.sort();
    assert_eq!(revoked, expected);

    let third = pki.issue_agent("node-1", year).expect("issue");
    let list = pki.revocation_list().expect("revocation list");
    let serial = |issued: &IssuedAgent| hex::decode(&issued.serial_hex).expect("hex");
    assert_eq!(list.len(), 2);
    assert!(list.is_revoked(&serial(&first)));
    assert!(list.is_revoked(&serial(&second)));
    assert!(!list.is_revoked(&serial(&third)));
    assert!(!list.is_revoked(&serial(&bystander)));
    check_client(&pki, &der_of(&third.cert_pem), fixed_now(), Verdict::Accept);
    check_client(
        &pki,
        &der_of(&first.cert_pem),
        fixed_now(),
        Verdict::Revoked,
    );

    let entries = pki.list().expect("list");
    assert_eq!(entries.len(), 4);
    let state: Vec<_> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.revoked_at.is_some()))
        .collect();
    assert_eq!(
        state,
        [
            ("node-1", true),
            ("node-1", true),
            ("node-2", false),
            ("node-1", false)
        ]
    );

    assert_eq!(pki.revoke("node-1").expect("revoke"), [third.serial_hex]);
    assert_eq!(
        pki.revoke("node-1").expect("revoke again"),
        Vec::<String>::new()
    );
    assert!(matches!(
        pki.revoke("nobody"),
        Err(Error::UnknownAgent { .. })
    ));

    // The index is the documented JSON.
    let text = fs::read_to_string(tmp.path().join("issued.json")).expect("index");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(json["version"], 1);
    let entry = &json["certificates"][2];
    assert_eq!(entry["name"], "node-2");
    assert_eq!(entry["serial"], bystander.serial_hex.as_str());
    assert!(entry["revoked_at"].is_null());
    let not_after = entry["not_after"].as_str().expect("string");
    assert!(
        not_after.ends_with('Z') && not_after.contains('T'),
        "{not_after}"
    );
}

#[test]
fn revocation_list_ignores_leading_zeros() {
    let list = RevocationList::new([[0x00, 0x80, 0x01], [0x00, 0x00, 0x05]]);
    assert!(list.is_revoked(&[0x80, 0x01]));
    assert!(list.is_revoked(&[0x00, 0x80, 0x01]));
    assert!(list.is_revoked(&[0x05]));
    assert!(!list.is_revoked(&[0x01]));
    let live = RwLock::new(RevocationList::default());
    assert!(!RevocationCheck::is_revoked(&live, &[0x05]));
    *live.write().expect("lock") = list.clone();
    assert!(RevocationCheck::is_revoked(&live, &[0x05]));
}

#[test]
fn corrupt_index_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(tmp.path(), &[]);
    fs::write(tmp.path().join("issued.json"), "{not json").expect("write");
    let err = pki.list().expect_err("corrupt");
    assert!(err.to_string().contains("issued.json"), "{err}");
    let year = Validity::starting_now(Validity::AGENT_LIFETIME).expect("validity");
    assert!(
        pki.issue_agent("node-1", year).is_err(),
        "never overwrite a corrupt index"
    );
}

/// A CSR (PEM) for common name `cn` asking for everything an attacker would like.
fn greedy_csr(cn: &str) -> (KeyPair, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["evil.example.com".to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names.push(SanType::URI(
        "urn:aisemble:agent:admin".try_into().expect("uri"),
    ));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::Any,
    ];
    let pem = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    (key, pem)
}

#[test]
fn csr_signing_uses_only_the_public_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(tmp.path(), &[]);
    let year = Validity::starting_now(Validity::AGENT_LIFETIME).expect("validity");

    let (_, csr) = greedy_csr("node-7");
    let err = pki
        .sign_csr(&csr, "node-8", year)
        .expect_err("name mismatch");
    assert!(matches!(err, Error::CsrNameMismatch { .. }), "{err}");
    assert!(pki.list().expect("list").is_empty());

    let (key, csr) = greedy_csr("node-7");
    let signed = pki.sign_csr(&csr, "node-7", year).expect("sign");
    let der = der_of(&signed.cert_pem);
    assert_eq!(sans(&der), ["uri:urn:aisemble:agent:node-7"]);
    let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("parse");
    assert!(!x509.is_ca());
    let eku = x509
        .extended_key_usage()
        .expect("ok")
        .expect("present")
        .value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any);
    assert_eq!(
        x509.tbs_certificate.subject_pki.raw,
        rcgen::PublicKeyData::subject_public_key_info(&key)
    );
    check_client(&pki, &der, fixed_now(), Verdict::Accept);
    let entries = pki.list().expect("list");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].serial_hex, signed.serial_hex);

    assert!(matches!(
        pki.sign_csr("garbage", "node-7", year),
        Err(Error::Csr(_))
    ));
    // A request whose signature does not match its content.
    let mut tampered =
        rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .expect("csr")
            .as_ref()
            .to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &tampered)
    );
    assert!(matches!(
        pki.sign_csr(&tampered, "node-7", year),
        Err(Error::Csr(_))
    ));
}

#[test]
fn agent_bundle_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(&tmp.path().join("pki"), &[]);
    let issued = pki
        .issue_agent(
            "node-1",
            Validity::starting_now(Validity::AGENT_LIFETIME).expect("validity"),
        )
        .expect("issue");
    assert!(
        !format!("{issued:?}").contains("PRIVATE KEY"),
        "Debug hides the key"
    );
    let out = tmp.path().join("out/node-1");
    let bundle = pki.write_agent_bundle(&issued, &out).expect("bundle");
    assert_eq!(mode(&out), 0o700);
    assert_eq!(mode(&bundle.key), 0o600);
    assert_eq!(mode(&bundle.cert), 0o644);
    assert_eq!(bundle.ca, out.join("ca.pem"));
    assert_eq!(
        tls::load_certs(&bundle.ca).expect("ca"),
        [pki.ca_der().clone()]
    );
    let chain = tls::load_certs(&bundle.cert).expect("cert");
    let key = tls::load_key(&bundle.key).expect("key");
    tls::client_config(pki.ca_der(), chain, key, ALPN).expect("client config");

    let missing = tmp.path().join("nope.pem");
    let err = tls::load_certs(&missing).expect_err("missing");
    assert!(err.to_string().contains("nope.pem"), "{err}");
    let err = tls::load_key(&bundle.cert).expect_err("no key in a certificate file");
    assert!(err.to_string().contains("agent.pem"), "{err}");
    let err = tls::load_certs(&bundle.key).expect_err("no certificate in a key file");
    assert!(matches!(err, Error::NoCertificate { .. }), "{err}");
}

#[test]
fn peer_identity_rejects_non_agents() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(tmp.path(), &[]);
    assert!(matches!(
        tls::peer_identity(&[]),
        Err(Error::PeerCertificate { .. })
    ));
    // "Ai-semble Ops control plane" is not an agent name.
    assert!(tls::peer_identity(pki.server_chain()).is_err());
    assert!(tls::peer_identity(&[CertificateDer::from(vec![1, 2, 3])]).is_err());
}

#[test]
fn validity_is_checked() {
    let now = SystemTime::now();
    assert!(Validity::new(now, now).is_err());
    assert!(Validity::new(now, now - HOUR).is_err());
    assert!(Validity::new(SystemTime::UNIX_EPOCH - HOUR, now).is_err());
    assert!(Validity::new(now, now + Duration::from_secs(10_000 * 365 * 86_400)).is_err());
    let v = Validity::new(now, now + HOUR).expect("valid");
    let lag = now
        .duration_since(v.not_before())
        .expect("truncated, not rounded up");
    assert!(lag < Duration::from_secs(1));
}

#[test]
fn concurrent_writers_lose_no_entry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    init(&dir, &[]);
    let year = Validity::starting_now(Validity::AGENT_LIFETIME).expect("validity");
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let dir = dir.clone();
            thread::spawn(move || {
                // Each writer opens its own `Pki`, as the CLI and the server would.
                let pki = Pki::open(&dir).expect("open");
                for i in 0..20 {
                    pki.issue_agent(&format!("node-{t}-{i}"), year)
                        .expect("issue");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer panicked");
    }
    let entries = Pki::open(&dir).expect("open").list().expect("list");
    assert_eq!(entries.len(), 40);
    let mut serials: Vec<_> = entries.iter().map(|e| &e.serial_hex).collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 40);
}

// In-memory handshakes.

/// Moves everything `from` wants to send into `to`; records `to`'s first error. Returns whether
/// any bytes moved.
fn deliver(
    from: &mut Connection,
    to: &mut Connection,
    to_error: &mut Option<rustls::Error>,
) -> bool {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).expect("writing to a Vec");
    }
    if bytes.is_empty() {
        return false;
    }
    let mut rest = &bytes[..];
    while to_error.is_none() && !rest.is_empty() {
        if let Err(e) = to.read_tls(&mut rest) {
            *to_error = Some(rustls::Error::General(e.to_string()));
        } else if let Err(e) = to.process_new_packets() {
            *to_error = Some(e);
        }
    }
    true
}

struct Handshake {
    client: Connection,
    server: Connection,
    client_error: Option<rustls::Error>,
    server_error: Option<rustls::Error>,
}

fn handshake(client: ClientConfig, server: rustls::ServerConfig) -> Handshake {
    let name = TlsServerName::try_from("localhost").expect("server name");
    let mut client =
        Connection::from(ClientConnection::new(Arc::new(client), name).expect("client"));
    let mut server = Connection::from(ServerConnection::new(Arc::new(server)).expect("server"));
    let (mut client_error, mut server_error) = (None, None);
    for _ in 0..20 {
        let sent = deliver(&mut client, &mut server, &mut server_error);
        let received = deliver(&mut server, &mut client, &mut client_error);
        if !sent && !received {
            break;
        }
    }
    Handshake {
        client,
        server,
        client_error,
        server_error,
    }
}

fn agent_client(pki: &Pki, issued: &IssuedAgent) -> ClientConfig {
    let chain = vec![der_of(&issued.cert_pem)];
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
    tls::client_config(pki.ca_der(), chain, key, ALPN).expect("client config")
}

#[test]
fn mutual_tls_handshake_in_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(&tmp.path().join("a"), &[]);
    let (other_ca, _) = init(&tmp.path().join("b"), &[]);
    let year = Validity::starting_now(Validity::AGENT_LIFETIME).expect("validity");
    let issued = pki.issue_agent("node-1", year).expect("issue");
    let live = Arc::new(RwLock::new(pki.revocation_list().expect("revocation list")));
    let server_config = || {
        let revocations: Arc<dyn RevocationCheck> = live.clone();
        tls::server_config(
            pki.ca_der(),
            pki.server_chain().to_vec(),
            pki.server_key(),
            revocations,
            tls::ClientAuth::Required,
            &[ALPN],
        )
        .expect("server config")
    };

    let ok = handshake(agent_client(&pki, &issued), server_config());
    assert_eq!((ok.client_error, ok.server_error), (None, None));
    assert!(!ok.client.is_handshaking() && !ok.server.is_handshaking());
    assert_eq!(ok.server.alpn_protocol(), Some(ALPN));
    assert_eq!(
        ok.client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let identity = tls::peer_identity(ok.server.peer_certificates().expect("client certificate"))
        .expect("identity");
    assert_eq!(identity.name.as_str(), "node-1");
    assert_eq!(hex::encode(identity.serial), issued.serial_hex);

    // Revoked while the server runs: the next handshake is refused with certificate_revoked.
    pki.revoke("node-1").expect("revoke");
    *live.write().expect("lock") = pki.revocation_list().expect("revocation list");
    #[track_caller]
    fn refused(h: Handshake, server: CertificateError, alert: AlertDescription) {
        assert_eq!(
            h.server_error,
            Some(rustls::Error::InvalidCertificate(server))
        );
        assert_eq!(h.client_error, Some(rustls::Error::AlertReceived(alert)));
    }
    refused(
        handshake(agent_client(&pki, &issued), server_config()),
        CertificateError::Revoked,
        AlertDescription::CertificateRevoked,
    );
    let foreign = other_ca.issue_agent("node-1", year).expect("issue");
    refused(
        handshake(agent_client(&pki, &foreign), server_config()),
        CertificateError::UnknownIssuer,
        AlertDescription::UnknownCA,
    );
    let old = pki.issue_agent("node-2", expired()).expect("issue");
    let h = handshake(agent_client(&pki, &old), server_config());
    assert!(matches!(
        h.server_error,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext { .. }
        ))
    ));
    assert_eq!(
        h.client_error,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateExpired
        ))
    );

    // A client without a certificate is refused.
    let anonymous = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_webpki_verifier(tls::server_verifier(pki.ca_der()).expect("verifier"))
        .with_no_client_auth();
    let mut anonymous = anonymous;
    anonymous.alpn_protocols = vec![ALPN.to_vec()];
    let h = handshake(anonymous, server_config());
    assert_eq!(h.server_error, Some(rustls::Error::NoCertificatesPresented));

    // The agent refuses a server whose certificate comes from another CA.
    let fresh = pki.issue_agent("node-3", year).expect("issue");
    let impostor = {
        let revocations: Arc<dyn RevocationCheck> = Arc::new(RevocationList::default());
        tls::server_config(
            other_ca.ca_der(),
            other_ca.server_chain().to_vec(),
            other_ca.server_key(),
            revocations,
            tls::ClientAuth::Required,
            &[ALPN],
        )
        .expect("server config")
    };
    let h = handshake(agent_client(&pki, &fresh), impostor);
    assert_eq!(
        h.client_error,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    );
    assert_eq!(
        h.server_error,
        Some(rustls::Error::AlertReceived(AlertDescription::UnknownCA))
    );
}

#[test]
fn configs_are_tls13_without_early_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(tmp.path(), &[]);
    let issued = pki
        .issue_agent(
            "node-1",
            Validity::starting_now(Validity::AGENT_LIFETIME).expect("validity"),
        )
        .expect("issue");
    let client = agent_client(&pki, &issued);
    assert!(!client.enable_early_data);
    assert_eq!(client.alpn_protocols, [ALPN.to_vec()]);
    let server = tls::server_config(
        pki.ca_der(),
        pki.server_chain().to_vec(),
        pki.server_key(),
        Arc::new(RevocationList::default()),
        tls::ClientAuth::Required,
        &[ALPN],
    )
    .expect("server config");
    assert_eq!(server.max_early_data_size, 0);
    assert_eq!(server.alpn_protocols, [ALPN.to_vec()]);
    // No resumption: a resumed session would skip the (revocation-checking) certificate verifier.
    assert!(!server.session_storage.can_cache());
    assert_eq!(server.send_tls13_tickets, 0);
    // A key that does not belong to the chain is refused.
    let wrong_key = rustls_pki_types::PrivateKeyDer::from_pem_slice(
        KeyPair::generate().expect("key").serialize_pem().as_bytes(),
    )
    .expect("key");
    assert!(
        tls::client_config(
            pki.ca_der(),
            vec![der_of(&issued.cert_pem)],
            wrong_key,
            ALPN
        )
        .is_err()
    );
}

#[test]
fn enrollment_handshake_records_the_chain_and_proves_the_ca() {
    use crate::enroll;
    use aisemble_shared::wire::ENROLL_ALPN;

    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki, _) = init(&tmp.path().join("a"), &[]);
    let (other_ca, _) = init(&tmp.path().join("b"), &[]);
    let optional = || {
        tls::server_config(
            pki.ca_der(),
            pki.server_chain().to_vec(),
            pki.server_key(),
            Arc::new(RevocationList::default()),
            tls::ClientAuth::Optional,
            &[ALPN, ENROLL_ALPN],
        )
        .expect("server config")
    };

    // An agent without a certificate completes the handshake, and learns the presented chain.
    let (client, presented) = enroll::enrollment_client_config(ENROLL_ALPN).expect("client");
    assert!(presented.get().is_none());
    let h = handshake(client, optional());
    assert_eq!((h.client_error, h.server_error), (None, None));
    assert_eq!(h.server.alpn_protocol(), Some(ENROLL_ALPN));
    let chain = presented.get().expect("the chain was recorded");
    let name = TlsServerName::try_from("localhost").expect("server name");
    let now = UnixTime::now();
    enroll::verify_presented(pki.ca_der(), &chain, &name, now).expect("issued by our CA");
    assert!(enroll::verify_presented(other_ca.ca_der(), &chain, &name, now).is_err());
    let elsewhere = TlsServerName::try_from("cp.elsewhere.example").expect("server name");
    assert!(enroll::verify_presented(pki.ca_der(), &chain, &elsewhere, now).is_err());

    // A certificate that is presented is still verified when client auth is optional.
    let past = SystemTime::now() - Duration::from_secs(7 * 86_400);
    let stale = pki
        .issue_agent(
            "stale",
            Validity::new(past, past + Duration::from_secs(86_400)).expect("validity"),
        )
        .expect("issue");
    let h = handshake(agent_client(&pki, &stale), optional());
    assert!(matches!(
        h.server_error,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext { .. }
        ))
    ));

    // The CA proof: only the token's hash makes it, and only for this CA.
    let key = enroll::token_key("asbe_0123abcd.secret");
    let proof = enroll::ca_proof(&key, pki.ca_der());
    assert!(enroll::verify_ca_proof(&key, pki.ca_der(), &proof));
    assert!(!enroll::verify_ca_proof(&key, other_ca.ca_der(), &proof));
    let wrong = enroll::token_key("asbe_0123abcd.other");
    assert!(!enroll::verify_ca_proof(&wrong, pki.ca_der(), &proof));
    assert!(!enroll::verify_ca_proof(&key, pki.ca_der(), &proof[..16]));

    // Fingerprints as `certs init` prints them, with colons and in upper case too.
    let printed = pki.ca_fingerprint_sha256();
    assert!(enroll::fingerprint_matches(&printed, pki.ca_der()));
    let colons = printed
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    assert!(enroll::fingerprint_matches(&colons, pki.ca_der()));
    assert!(!enroll::fingerprint_matches(&printed, other_ca.ca_der()));

    // The agent's own CSR is signed for its name, and the key it kept matches.
    let (key_pem, csr_pem) = enroll::agent_csr("gpu-7").expect("csr");
    let year = Validity::starting_now(Validity::AGENT_LIFETIME).expect("validity");
    let signed = pki.sign_csr(&csr_pem, "gpu-7", year).expect("signed");
    let issued = IssuedAgent {
        name: signed.name.clone(),
        serial_hex: signed.serial_hex.clone(),
        cert_pem: signed.cert_pem.clone(),
        key_pem,
        not_before: signed.not_before,
        not_after: signed.not_after,
    };
    let h = handshake(agent_client(&pki, &issued), optional());
    assert_eq!((h.client_error, h.server_error), (None, None));

    // Re-enrollment keeps the new certificate and revokes the name's others.
    let (_, again) = enroll::agent_csr("gpu-7").expect("csr");
    let newer = pki.sign_csr(&again, "gpu-7", year).expect("signed");
    let revoked = pki
        .revoke_others("gpu-7", &newer.serial_hex)
        .expect("revokes");
    assert_eq!(revoked, [signed.serial_hex]);
    let live: Vec<_> = pki
        .list()
        .expect("list")
        .into_iter()
        .filter(|e| e.name.as_str() == "gpu-7" && e.revoked_at.is_none())
        .map(|e| e.serial_hex)
        .collect();
    assert_eq!(live, [newer.serial_hex]);
}
