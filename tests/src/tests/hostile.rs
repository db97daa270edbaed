use std::{path::Path, time::Duration};

use aisemble_shared::{
    codec::FrameDecoder,
    wire::{AgentMessage, Batch, BufferStats, Compression, ControlMessage, RefuseCode, close_code},
};

use super::{connected, tempdir};
use crate::{
    process::{Agent, ControlPlane},
    quic, wait,
};

async fn hostile(
    cp: &ControlPlane,
    dir: &Path,
    name: &str,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
) {
    let bundle = dir.join(name);
    cp.issue_agent(name, &bundle, "1s", "1MiB");
    let config = quic::client_config(
        &bundle.join("ca.pem"),
        Some((&bundle.join("agent.pem"), &bundle.join("agent.key"))),
    );
    let (endpoint, connection) = quic::connect(cp.quic, config)
        .await
        .expect("a valid certificate connects");
    let (send, recv) = connection.open_bi().await.expect("stream");
    (endpoint, connection, send, recv)
}

async fn stored_upto(cp: &ControlPlane) -> u64 {
    cp.api()
        .agent("steady")
        .await
        .ok()
        .flatten()
        .and_then(|a| a["stored_upto"].as_u64())
        .unwrap_or(0)
}

/// A peer with a valid certificate sends garbage, an oversized length, a truncated frame, a wrong
/// protocol version and an undecodable batch: each time only its connection is closed, with the
/// reason code; a real agent keeps streaming; the control plane survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_only_their_connection() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();
    let _steady =
        Agent::start(&cp.issue_agent("steady", &dir.path().join("steady"), "500ms", "16MiB"));
    connected(&api, "steady").await;

    // Garbage: a well-formed length around bytes that decode to nothing.
    let (_e, connection, mut send, _recv) = hostile(&cp, dir.path(), "garbage").await;
    send.write_all(&[0, 0, 0, 6, 1, 0xfd, 0xff, 0xff, 0xff, 0xff])
        .await
        .expect("write");
    assert_eq!(
        quic::close_code(&connection).await,
        Some(u64::from(close_code::BAD_FRAME))
    );

    // A length prefix far above the maximum: refused before any body is read.
    let before = stored_upto(&cp).await;
    let (_e, connection, mut send, _recv) = hostile(&cp, dir.path(), "oversized").await;
    send.write_all(&(1u32 << 30).to_be_bytes())
        .await
        .expect("write");
    assert_eq!(
        quic::close_code(&connection).await,
        Some(u64::from(close_code::FRAME_TOO_LARGE))
    );

    // A frame cut short by the end of the stream.
    let (_e, connection, mut send, _recv) = hostile(&cp, dir.path(), "truncated").await;
    let frame = quic::frame(&quic::hello(7));
    send.write_all(&frame[..frame.len() - 3])
        .await
        .expect("write");
    send.finish().expect("finish");
    assert_eq!(
        quic::close_code(&connection).await,
        Some(u64::from(close_code::BAD_FRAME))
    );

    // A protocol version this control plane does not speak: a Refuse, then the close.
    let (_e, connection, mut send, mut recv) = hostile(&cp, dir.path(), "future").await;
    let mut frame = quic::frame(&quic::hello(7));
    frame[4] = 99; // the envelope's version varint
    send.write_all(&frame).await.expect("write");
    let mut decoder = FrameDecoder::new(1 << 20);
    match quic::read_message(&mut recv, &mut decoder)
        .await
        .expect("a refusal")
    {
        ControlMessage::Refuse(refuse) => {
            assert_eq!(refuse.code, RefuseCode::IncompatibleVersion);
            assert!(refuse.message.contains("99"), "{}", refuse.message);
        }
        other => panic!("expected Refuse, got {other:?}"),
    }
    assert_eq!(
        quic::close_code(&connection).await,
        Some(u64::from(close_code::INCOMPATIBLE_VERSION))
    );

    // A valid session whose batch payload is garbage.
    let (_e, connection, mut send, mut recv) = hostile(&cp, dir.path(), "liar").await;
    send.write_all(&quic::frame(&quic::hello(7)))
        .await
        .expect("hello");
    let mut decoder = FrameDecoder::new(1 << 20);
    assert!(matches!(
        quic::read_message(&mut recv, &mut decoder)
            .await
            .expect("welcome"),
        ControlMessage::Welcome(_)
    ));
    let batch = AgentMessage::Batch(Batch {
        first_seq: 1,
        last_seq: 3,
        compression: Compression::Zstd,
        payload: vec![1, 2, 3, 4, 5],
        buffer: BufferStats::default(),
    });
    send.write_all(&quic::frame(&batch)).await.expect("batch");
    assert_eq!(
        quic::close_code(&connection).await,
        Some(u64::from(close_code::BAD_FRAME))
    );

    // Counted by reason; the real agent kept streaming throughout.
    let text = api.metrics().await.expect("metrics");
    let count = |reason: &str| {
        crate::http::metric_value(
            &text,
            &format!("aisemble_ingest_rejected_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(
        count("bad_frame") >= 3.0,
        "bad_frame {}",
        count("bad_frame")
    );
    assert!(count("frame_too_large") >= 1.0);
    assert!(count("incompatible_version") >= 1.0);
    wait::until(
        Duration::from_secs(10),
        "steady keeps streaming",
        || async { (stored_upto(&cp).await > before + 3).then_some(()) },
    )
    .await;
    assert_eq!(
        api.agent("steady").await.expect("agent").expect("known")["connected"],
        true
    );
}
