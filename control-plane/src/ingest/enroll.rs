//! One enrollment connection (ALPN `aisemble-enroll/1`, no client certificate): the agent names
//! its token's id and gets the CA with a proof that we hold the token; then it sends the token
//! and a CSR and gets a certificate for its name (see `shared::wire::ENROLL_ALPN`).
//!
//! Every outcome is counted (`aisemble_enrollments_total{result}`), logged and written to the
//! audit log. A bad frame, a slow peer or a refused token only ends this connection.

use std::{sync::Arc, time::Duration};

use aisemble_certs::{Validity, enroll::ca_proof};
use aisemble_shared::{
    codec::{self, FrameDecoder},
    ids::AgentId,
    wire::{EnrollRequest, EnrollResponse, close_code},
};
use tracing::{info, warn};

use super::IngestContext;
use crate::{enroll::Refusal, logs::audit::AuditEvent, store::now_ms};

/// The whole exchange must finish in this time.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest enrollment frame: a token and a CSR are well under this.
const MAX_FRAME: u32 = 64 << 10;
const READ_CHUNK: usize = 64 << 10;

/// Runs the exchange on the connection's first stream, then closes the connection.
pub(super) async fn run(connection: quinn::Connection, context: Arc<IngestContext>) {
    let remote = connection.remote_address();
    let outcome = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(&connection, &context)).await;
    let outcome = outcome.unwrap_or_else(|_| Err("enrollment timed out".to_owned()));
    match outcome {
        Ok(()) => {
            // Let the agent read the answer and close first.
            let _ = tokio::time::timeout(Duration::from_secs(2), connection.closed()).await;
        }
        Err(error) => {
            warn!(%remote, %error, "Enrollment connection failed.");
            connection.close(close_code::PROTOCOL_VIOLATION.into(), b"enrollment failed");
        }
    }
}

/// What happened to one `Enroll` request.
struct Outcome {
    asked: String,
    token_id: String,
    result: Result<String, String>,
}

async fn exchange(
    connection: &quinn::Connection,
    context: &Arc<IngestContext>,
) -> Result<(), String> {
    let (mut send, mut recv) = connection
        .accept_bi()
        .await
        .map_err(|e| format!("no stream: {e}"))?;
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    loop {
        let Some(request) = read(&mut recv, &mut decoder).await? else {
            return Ok(());
        };
        let (response, done) = match request {
            EnrollRequest::Discover { token_id } => (
                discover(context, token_id, connection.remote_address()).await,
                false,
            ),
            EnrollRequest::Enroll {
                token,
                name,
                csr_pem,
            } => {
                let outcome = enroll(context, token, name, csr_pem).await;
                let response = record(context, outcome, connection.remote_address()).await;
                (response, true)
            }
            _ => (
                EnrollResponse::Refused {
                    reason: "unknown request".to_owned(),
                },
                true,
            ),
        };
        let refused = matches!(response, EnrollResponse::Refused { .. });
        let frame = codec::encode_frame(&response, MAX_FRAME).map_err(|e| e.to_string())?;
        send.write_all(&frame)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        if done || refused {
            let _ = send.finish();
            return Ok(());
        }
    }
}

async fn discover(
    context: &Arc<IngestContext>,
    token_id: String,
    remote: std::net::SocketAddr,
) -> EnrollResponse {
    let tokens = Arc::clone(context);
    let id = token_id.clone();
    let found = tokio::task::spawn_blocking(move || tokens.enrollment.usable(&id, now_ms()))
        .await
        .unwrap_or_else(|_| Err(Refusal::Signing("internal error".to_owned())));
    let key = found.and_then(|token| {
        token
            .proof_key()
            .ok_or_else(|| Refusal::Signing("enrollment token record is damaged".to_owned()))
    });
    match key {
        Ok(key) => EnrollResponse::Ca {
            ca_pem: context.pki.ca_pem().to_owned(),
            mac: ca_proof(&key, context.pki.ca_der()),
        },
        // Refused before the agent named itself: audited under the token id alone.
        Err(refusal) => {
            let outcome = Outcome {
                asked: String::new(),
                token_id: loggable_id(&token_id),
                result: Err(refusal.to_string()),
            };
            record(context, outcome, remote).await
        }
    }
}

async fn enroll(
    context: &Arc<IngestContext>,
    token: String,
    asked: String,
    csr_pem: String,
) -> Outcome {
    let token_id = loggable_id(crate::enroll::token_id(&token).unwrap_or(""));
    let blocking = Arc::clone(context);
    let name = asked.clone();
    // What the agent asked for goes into logs and the audit log: keep it short.
    let asked: String = asked.chars().take(64).collect();
    let result = tokio::task::spawn_blocking(move || {
        let pki = &blocking.pki;
        blocking
            .enrollment
            .redeem(&token, &name, now_ms(), |agent, bound| {
                let held = holds_valid_certificate(pki, agent)?;
                if held && !bound {
                    return Err(Refusal::NameTaken(agent.to_string()));
                }
                let validity = Validity::starting_now(Validity::AGENT_LIFETIME)
                    .map_err(|e| Refusal::Signing(e.to_string()))?;
                let signed = pki
                    .sign_csr(&csr_pem, agent.as_str(), validity)
                    .map_err(|e| Refusal::Signing(e.to_string()))?;
                if held {
                    // A token made for this name replaces its identity, once the new certificate
                    // exists: the old ones (a reinstalled or lost host's) stop working, and the
                    // revocation watcher disconnects a session that still uses one.
                    let revoked = pki
                        .revoke_others(agent.as_str(), &signed.serial_hex)
                        .map_err(|e| Refusal::Signing(e.to_string()))?;
                    info!(agent = %agent, certificates = revoked.len(), "Re-enrollment revoked the name's previous certificates.");
                }
                Ok(signed.cert_pem)
            })
            .map_err(|refusal| refusal.to_string())
    })
    .await
    .unwrap_or_else(|_| Err("internal error".to_owned()));
    Outcome {
        asked,
        token_id,
        result,
    }
}

/// A token id as the client sent it, fit for logs and the audit log: ids are short hex, so
/// anything else is summarized rather than recorded.
fn loggable_id(id: &str) -> String {
    if !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id.to_owned()
    } else {
        "(malformed)".to_owned()
    }
}

fn holds_valid_certificate(pki: &aisemble_certs::Pki, agent: &AgentId) -> Result<bool, Refusal> {
    let now = std::time::SystemTime::now();
    let issued = pki.list().map_err(|e| Refusal::Signing(e.to_string()))?;
    Ok(issued
        .iter()
        .any(|e| e.name == *agent && e.revoked_at.is_none() && e.not_after > now))
}

/// Counts, logs and audits an outcome, and turns it into the answer.
async fn record(
    context: &Arc<IngestContext>,
    outcome: Outcome,
    remote: std::net::SocketAddr,
) -> EnrollResponse {
    let (status, label) = match &outcome.result {
        Ok(_) => (200, "issued"),
        Err(_) => (403, "refused"),
    };
    context
        .telemetry
        .enrollments
        .with_label_values(&[label])
        .inc();
    match &outcome.result {
        Ok(_) => {
            info!(agent = %outcome.asked, token = %outcome.token_id, %remote, "Enrolled an agent.")
        }
        Err(reason) => {
            warn!(agent = %outcome.asked, token = %outcome.token_id, %remote, reason, "Refused an enrollment.");
        }
    }
    let event = AuditEvent {
        actor: format!("enrollment token {}", outcome.token_id),
        token_id: outcome.token_id.clone(),
        role: "enrollment".to_owned(),
        method: "ENROLL".to_owned(),
        path: if outcome.asked.is_empty() {
            "quic:enroll".to_owned()
        } else {
            format!("quic:enroll/{}", outcome.asked)
        },
        status,
        outcome: if status == 200 {
            "success"
        } else {
            "forbidden"
        }
        .to_owned(),
        request_id: remote.to_string(),
    };
    crate::api::audit::append(&context.store, event).await;
    match outcome.result {
        Ok(cert_pem) => EnrollResponse::Issued {
            cert_pem,
            name: outcome.asked,
        },
        Err(reason) => EnrollResponse::Refused { reason },
    }
}

/// The next request, `None` when the agent finished its side.
async fn read(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<Option<EnrollRequest>, String> {
    loop {
        if let Some(body) = decoder.next_frame().map_err(|e| e.to_string())? {
            return codec::decode_frame(&body)
                .map(Some)
                .map_err(|e| e.to_string());
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => decoder.push(&chunk.bytes),
            Ok(None) if decoder.pending_bytes() == 0 => return Ok(None),
            Ok(None) => return Err("stream ended inside a frame".to_owned()),
            Err(error) => return Err(format!("reading: {error}")),
        }
    }
}
