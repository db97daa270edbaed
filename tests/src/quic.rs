//! Raw QUIC clients for tests that misbehave on purpose: no certificate, foreign certificates,
//! garbage frames, wrong versions.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use aisemble_shared::{
    codec::{self, DEFAULT_MAX_FRAME_BYTES, FrameDecoder},
    wire::{ALPN, AgentMessage, BufferStats, ControlMessage, Hello},
};

/// A client configuration trusting `ca`, presenting `identity` (certificate, key) if given.
///
/// # Panics
/// On unreadable files (test setup errors).
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> quinn::ClientConfig {
    let ca = aisemble_certs::tls::load_certs(ca).expect("CA").remove(0);
    let tls = match identity {
        Some((cert, key)) => aisemble_certs::tls::client_config(
            &ca,
            aisemble_certs::tls::load_certs(cert).expect("certificate"),
            aisemble_certs::tls::load_key(key).expect("key"),
            ALPN,
        )
        .expect("client config"),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).expect("root");
            let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
            tls.alpn_protocols = vec![ALPN.to_vec()];
            tls
        }
    };
    quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS"),
    ))
}

/// Connects and opens the session stream; a refused handshake shows up as an error here or on
/// the first read (TLS 1.3 clients finish before the server checks their certificate).
///
/// # Errors
/// When the connection or stream fails.
pub async fn connect(
    addr: SocketAddr,
    config: quinn::ClientConfig,
) -> anyhow::Result<(quinn::Endpoint, quinn::Connection)> {
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let connection = tokio::time::timeout(
        Duration::from_secs(10),
        endpoint.connect_with(config, addr, "localhost")?,
    )
    .await??;
    Ok((endpoint, connection))
}

/// A valid Hello.
pub fn hello(journal_id: u64) -> AgentMessage {
    AgentMessage::Hello(Hello {
        agent_version: "test".into(),
        hostname: "test".into(),
        labels: Vec::new(),
        journal_id,
        buffer: BufferStats::default(),
    })
}

/// Encodes a message as a frame.
///
/// # Panics
/// If encoding fails (it cannot for these messages).
pub fn frame(message: &AgentMessage) -> Vec<u8> {
    codec::encode_frame(message, DEFAULT_MAX_FRAME_BYTES).expect("encodes")
}

/// Reads the next control message, or the error that ended the stream.
///
/// # Errors
/// When the stream fails or ends.
pub async fn read_message(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> anyhow::Result<ControlMessage> {
    loop {
        if let Some(body) = decoder.next_frame()? {
            return Ok(codec::decode_frame(&body)?);
        }
        match tokio::time::timeout(Duration::from_secs(10), recv.read_chunk(64 << 10, true))
            .await??
        {
            Some(chunk) => decoder.push(&chunk.bytes),
            None => anyhow::bail!("stream ended"),
        }
    }
}

/// The application close code of a connection once it is closed, if the peer closed it.
pub async fn close_code(connection: &quinn::Connection) -> Option<u64> {
    match tokio::time::timeout(Duration::from_secs(10), connection.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => Some(close.error_code.into_inner()),
        _ => None,
    }
}
