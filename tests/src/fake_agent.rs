//! A scripted agent: real mutual-TLS QUIC, the real protocol (Hello, Batch, Ack), with a
//! certificate from the control plane's CA, but samples chosen by the test (a CPU value crossing
//! a threshold, a failure ratio). Tests of what the control plane does with the data use it; the
//! agent binary is tested on its own elsewhere.

use std::{path::Path, time::Duration};

use aisemble_shared::{
    codec::{self, FrameDecoder},
    wire::{
        AgentMessage, Batch, BufferStats, Compression, ControlMessage, JournalEntry, LogEntry,
        LogRecord, MetricRecord, Record, Sample,
    },
};

use crate::{process::ControlPlane, quic};

/// One sample to send: metric name, labels, value.
pub type TestSample<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// A connected scripted agent.
#[derive(Debug)]
pub struct FakeAgent {
    /// Its name (and `host` label).
    pub name: String,
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    next_seq: u64,
}

impl FakeAgent {
    /// Issues a certificate for `name` (files in `dir`), connects and says Hello.
    ///
    /// # Panics
    /// When the control plane refuses it (test setup errors).
    pub async fn connect(cp: &ControlPlane, name: &str, dir: &Path) -> Self {
        let bundle = dir.join(name);
        if !bundle.join("agent.pem").exists() {
            cp.issue_agent(name, &bundle, "1s", "1MiB");
        }
        let config = quic::client_config(
            &bundle.join("ca.pem"),
            Some((&bundle.join("agent.pem"), &bundle.join("agent.key"))),
        );
        let (endpoint, connection) = quic::connect(cp.quic, config).await.expect("connects");
        let (mut send, mut recv) = connection.open_bi().await.expect("stream");
        // A journal id of its own per connection: sequence numbers start again at 1.
        let journal_id = u64::from(std::process::id()) << 20 | u64::from(rand_u16());
        send.write_all(&quic::frame(&quic::hello(journal_id)))
            .await
            .expect("hello");
        let mut decoder = FrameDecoder::new(codec::DEFAULT_MAX_FRAME_BYTES);
        match quic::read_message(&mut recv, &mut decoder)
            .await
            .expect("welcome")
        {
            ControlMessage::Welcome(_) => {}
            other => panic!("{name}: expected Welcome, got {other:?}"),
        }
        Self {
            name: name.to_owned(),
            _endpoint: endpoint,
            connection,
            send,
            recv,
            decoder,
            next_seq: 1,
        }
    }

    /// Sends one record of samples `(name, labels, value)` stamped `t_ms`, and waits for its ack.
    ///
    /// # Panics
    /// When the control plane does not acknowledge it within 10 s.
    pub async fn send(&mut self, t_ms: i64, samples: &[TestSample<'_>]) {
        let record = Record::Metrics(MetricRecord {
            timestamp_ms: t_ms,
            samples: samples
                .iter()
                .map(|(name, labels, v)| {
                    labels
                        .iter()
                        .fold(Sample::new(*name, *v), |s, (k, v)| s.with_label(*k, *v))
                })
                .collect(),
        });
        self.send_record(&record).await;
    }

    /// Sends one record of log lines, and waits for its ack.
    ///
    /// # Panics
    /// When the control plane does not acknowledge it within 10 s.
    pub async fn send_logs(&mut self, entries: Vec<LogEntry>) {
        self.send_record(&Record::Logs(LogRecord { entries })).await;
    }

    /// Sends one record, and waits for its ack.
    ///
    /// # Panics
    /// When the control plane does not acknowledge it within 10 s.
    pub async fn send_record(&mut self, record: &Record) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let payload = codec::encode_entries(
            &[JournalEntry {
                seq,
                record: codec::encode_record(record).expect("encodes"),
            }],
            Compression::Zstd,
        )
        .expect("encodes");
        let batch = AgentMessage::Batch(Batch {
            first_seq: seq,
            last_seq: seq,
            compression: Compression::Zstd,
            payload,
            buffer: BufferStats::default(),
        });
        self.send
            .write_all(&quic::frame(&batch))
            .await
            .expect("batch");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: no ack for seq {seq}",
                self.name
            );
            match quic::read_message(&mut self.recv, &mut self.decoder)
                .await
                .expect("reply")
            {
                ControlMessage::Ack(ack) if ack.upto >= seq => return,
                _ => {}
            }
        }
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.connection.close(0u32.into(), b"done");
    }
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos & 0xffff) as u16
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
