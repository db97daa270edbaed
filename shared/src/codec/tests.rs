use proptest::prelude::*;

use super::*;
use crate::wire::{
    Ack, Action, AgentMessage, Batch, BufferStats, CheckStateChange, Command, CommandResult,
    ControlMessage, EnrollRequest, EnrollResponse, Event, EventRecord, Hello, Label, LogEntry,
    LogLevel, LogRecord, MetricRecord, MonitoringState, RecordRef, Refuse, RefuseCode, Sample,
    SampleRef, Welcome,
};

fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(message: &T) {
    let frame = encode_frame(message, DEFAULT_MAX_FRAME_BYTES).expect("encodes");
    let header: [u8; 4] = frame[..4].try_into().expect("header");
    let len = frame_body_len(header, DEFAULT_MAX_FRAME_BYTES).expect("length");
    assert_eq!(len, frame.len() - 4);
    let decoded: T = decode_frame(&frame[4..]).expect("decodes");
    assert_eq!(&decoded, message);
}

fn label() -> impl Strategy<Value = Label> {
    ("[a-z_]{1,12}", ".{0,16}").prop_map(|(name, value)| Label { name, value })
}

fn stats() -> impl Strategy<Value = BufferStats> {
    (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(records, bytes, dropped_records)| {
        BufferStats {
            records,
            bytes,
            dropped_records,
        }
    })
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        "[a-z_]{1,40}",
        prop::collection::vec(label(), 0..4),
        any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
    )
        .prop_map(|(name, labels, value)| Sample {
            name,
            labels,
            value,
        })
}

fn event() -> impl Strategy<Value = Event> {
    (
        ".{0,20}",
        prop::option::of(any::<bool>()),
        any::<bool>(),
        any::<u64>(),
        prop::option::of(".{0,40}"),
        prop::collection::vec(label(), 0..3),
    )
        .prop_map(|(check, was_up, up, consecutive_failures, error, labels)| {
            Event::CheckStateChanged(CheckStateChange {
                check,
                kind: "http".into(),
                was_up,
                up,
                consecutive_failures,
                error,
                labels,
            })
        })
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        4 => (any::<i64>(), prop::collection::vec(sample(), 0..20)).prop_map(
            |(timestamp_ms, samples)| {
                Record::Metrics(MetricRecord {
                    timestamp_ms,
                    samples,
                })
            }
        ),
        1 => (any::<i64>(), prop::collection::vec(event(), 0..4)).prop_map(
            |(timestamp_ms, events)| Record::Events(EventRecord {
                timestamp_ms,
                events
            })
        ),
        1 => prop::collection::vec(log_entry(), 0..6).prop_map(|entries| Record::Logs(LogRecord { entries })),
    ]
}

fn log_entry() -> impl Strategy<Value = LogEntry> {
    (
        any::<i64>(),
        prop::sample::select(LogLevel::ALL.to_vec()),
        ".{0,12}",
        ".{0,80}",
        ".{0,30}",
        prop::option::of("[0-9a-f]{0,32}"),
        prop::option::of(".{0,16}"),
    )
        .prop_map(
            |(timestamp_ms, level, service, message, context, trace_id, request_id)| LogEntry {
                timestamp_ms,
                level,
                service,
                message,
                context,
                trace_id,
                request_id,
            },
        )
}

fn agent_message() -> impl Strategy<Value = AgentMessage> {
    prop_oneof![
        (
            ".{0,20}",
            ".{0,20}",
            prop::collection::vec(label(), 0..4),
            stats()
        )
            .prop_map(
                |(agent_version, hostname, labels, buffer)| AgentMessage::Hello(Hello {
                    agent_version,
                    hostname,
                    labels,
                    journal_id: 7,
                    buffer
                })
            ),
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..300),
            stats(),
            any::<bool>()
        )
            .prop_map(
                |(first_seq, last_seq, payload, buffer, zstd)| AgentMessage::Batch(Batch {
                    first_seq,
                    last_seq,
                    compression: if zstd {
                        Compression::Zstd
                    } else {
                        Compression::None
                    },
                    payload,
                    buffer,
                })
            ),
        (any::<u64>(), any::<bool>(), ".{0,20}").prop_map(|(id, ok, text)| {
            AgentMessage::CommandResult(CommandResult {
                id,
                outcome: if ok { Ok(text) } else { Err(text) },
            })
        }),
        stats().prop_map(AgentMessage::Status),
    ]
}

fn control_message() -> impl Strategy<Value = ControlMessage> {
    prop_oneof![
        (
            ".{0,20}",
            "[a-z0-9-]{1,20}",
            any::<Option<u64>>(),
            any::<bool>(),
            any::<u32>()
        )
            .prop_map(
                |(server_version, agent_id, stored_upto, paused, max_frame_bytes)| {
                    ControlMessage::Welcome(Welcome {
                        server_version,
                        agent_id,
                        stored_upto,
                        monitoring: if paused {
                            MonitoringState::Paused
                        } else {
                            MonitoringState::Running
                        },
                        max_frame_bytes,
                    })
                }
            ),
        ".{0,40}".prop_map(|message| ControlMessage::Refuse(Refuse {
            code: RefuseCode::IncompatibleVersion,
            message
        })),
        any::<u64>().prop_map(|upto| ControlMessage::Ack(Ack { upto })),
        (any::<u64>(), any::<bool>()).prop_map(|(id, pause)| ControlMessage::Command(Command {
            id,
            action: if pause {
                Action::PauseMonitoring
            } else {
                Action::ResumeMonitoring
            },
        })),
    ]
}

proptest! {
    #[test]
    fn agent_messages_roundtrip(message in agent_message()) {
        roundtrip(&message);
    }

    #[test]
    fn control_messages_roundtrip(message in control_message()) {
        roundtrip(&message);
    }

    #[test]
    fn records_and_entries_roundtrip(records in prop::collection::vec(record(), 0..8), zstd in any::<bool>()) {
        let entries: Vec<JournalEntry> = records
            .iter()
            .enumerate()
            .map(|(i, r)| JournalEntry { seq: i as u64 + 1, record: encode_record(r).expect("encodes") })
            .collect();
        let compression = if zstd { Compression::Zstd } else { Compression::None };
        let payload = encode_entries(&entries, compression).expect("encodes");
        let decoded = decode_entries(&payload, compression).expect("decodes");
        prop_assert_eq!(&decoded, &entries);
        for (entry, record) in decoded.iter().zip(&records) {
            prop_assert_eq!(&decode_record(&entry.record).expect("record"), record);
        }
        // The borrowed decoders read the same bytes to the same values.
        let plain = decompress_payload(&payload, compression).expect("decompresses");
        let borrowed = decode_entries_borrowed(&plain).expect("decodes");
        prop_assert_eq!(borrowed.len(), entries.len());
        for ((entry, owned), record) in borrowed.iter().zip(&entries).zip(&records) {
            prop_assert_eq!(entry.seq, owned.seq);
            prop_assert_eq!(entry.record, &owned.record[..]);
            match (decode_record_borrowed(entry.record).expect("record"), record) {
                (RecordRef::Metrics(view), Record::Metrics(full)) => {
                    prop_assert_eq!(view.timestamp_ms, full.timestamp_ms);
                    let expected: Vec<SampleRef<'_>> = full.samples.iter().map(SampleRef::from).collect();
                    prop_assert_eq!(view.samples, expected);
                }
                (RecordRef::Events(view), Record::Events(full)) => prop_assert_eq!(&view, full),
                (RecordRef::Logs(view), Record::Logs(full)) => prop_assert_eq!(&view, full),
                (view, full) => prop_assert!(false, "{view:?} decoded from {full:?}"),
            }
        }
    }

    #[test]
    fn decoder_reassembles_frames_from_any_chunking(
        messages in prop::collection::vec(agent_message(), 1..6),
        cuts in prop::collection::vec(1usize..64, 1..40),
    ) {
        let stream: Vec<u8> = messages
            .iter()
            .flat_map(|m| encode_frame(m, DEFAULT_MAX_FRAME_BYTES).expect("encodes"))
            .collect();
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let mut decoded = Vec::new();
        let mut rest = &stream[..];
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().expect("cycle")).min(rest.len());
            decoder.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(body) = decoder.next_frame().expect("valid stream") {
                decoded.push(decode_frame::<AgentMessage>(&body).expect("decodes"));
            }
        }
        prop_assert_eq!(decoder.pending_bytes(), 0);
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame::<AgentMessage>(&bytes);
        let _ = decode_frame::<ControlMessage>(&bytes);
        let _ = decode_record(&bytes);
        let _ = decode_entries(&bytes, Compression::None);
        let _ = decode_entries(&bytes, Compression::Zstd);
        let _ = decode_entries_borrowed(&bytes);
        let _ = decode_record_borrowed(&bytes);
        if bytes.len() >= 4 {
            let _ = frame_body_len(bytes[..4].try_into().expect("4 bytes"), DEFAULT_MAX_FRAME_BYTES);
        }
    }

    #[test]
    fn corrupted_frames_never_panic(message in agent_message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut frame = encode_frame(&message, DEFAULT_MAX_FRAME_BYTES).expect("encodes");
        for (index, byte) in flips {
            let i = index.index(frame.len());
            frame[i] ^= byte;
        }
        let _ = decode_frame::<AgentMessage>(&frame[4..]);
        let truncated = &frame[4..frame.len() / 2 + 2];
        let _ = decode_frame::<AgentMessage>(truncated);
    }
}

#[test]
fn decoder_refuses_an_oversized_prefix_before_the_body_arrives() {
    let mut decoder = FrameDecoder::new(1024);
    decoder.push(&2048u32.to_be_bytes());
    assert_eq!(
        decoder.next_frame(),
        Err(CodecError::TooLarge {
            len: 2048,
            max: 1024
        })
    );
}

#[test]
fn oversized_length_is_refused_before_allocating() {
    let header = (DEFAULT_MAX_FRAME_BYTES + 1).to_be_bytes();
    assert_eq!(
        frame_body_len(header, DEFAULT_MAX_FRAME_BYTES),
        Err(CodecError::TooLarge {
            len: u64::from(DEFAULT_MAX_FRAME_BYTES) + 1,
            max: DEFAULT_MAX_FRAME_BYTES
        })
    );
    assert_eq!(
        frame_body_len([0; 4], DEFAULT_MAX_FRAME_BYTES),
        Err(CodecError::Empty)
    );
}

#[test]
fn future_version_is_refused_with_the_supported_range() {
    let mut body = Vec::new();
    encode_into(&(PROTOCOL_VERSION + 1), &mut body, "envelope").expect("encodes");
    encode_into(
        &AgentMessage::Status(BufferStats::default()),
        &mut body,
        "message",
    )
    .expect("encodes");
    assert_eq!(
        decode_frame::<AgentMessage>(&body),
        Err(CodecError::UnsupportedVersion {
            got: PROTOCOL_VERSION + 1,
            min: MIN_PROTOCOL_VERSION,
            max: PROTOCOL_VERSION
        })
    );
}

#[test]
fn huge_length_prefix_inside_a_body_is_bounded() {
    // A Vec length of u64::MAX inside a Batch payload must be refused, not allocated.
    let mut body = Vec::new();
    encode_into(&PROTOCOL_VERSION, &mut body, "envelope").expect("encodes");
    body.push(1); // variant Batch
    body.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert!(decode_frame::<AgentMessage>(&body).is_err());
}

#[test]
fn zstd_bomb_is_refused() {
    let entries = vec![JournalEntry {
        seq: 1,
        record: vec![0; DECODE_LIMIT_BYTES + 1],
    }];
    let payload = encode_entries(&entries, Compression::Zstd).expect("encodes");
    assert!(matches!(
        decode_entries(&payload, Compression::Zstd),
        Err(CodecError::Decompress(_))
    ));
}

#[test]
fn oversized_message_is_not_encoded() {
    let message = AgentMessage::Batch(Batch {
        first_seq: 1,
        last_seq: 1,
        compression: Compression::None,
        payload: vec![0; 2048],
        buffer: BufferStats::default(),
    });
    assert!(matches!(
        encode_frame(&message, 1024),
        Err(CodecError::Encode { .. })
    ));
}

#[test]
fn enrollment_messages_roundtrip() {
    roundtrip(&EnrollRequest::Discover {
        token_id: "3f9a1c2b".to_owned(),
    });
    roundtrip(&EnrollRequest::Enroll {
        token: "asbe_3f9a1c2b.secret".to_owned(),
        name: "gpu-7".to_owned(),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".to_owned(),
    });
    roundtrip(&EnrollResponse::Ca {
        ca_pem: "-----BEGIN CERTIFICATE-----".to_owned(),
        mac: vec![7; 32],
    });
    roundtrip(&EnrollResponse::Issued {
        cert_pem: "pem".to_owned(),
        name: "gpu-7".to_owned(),
    });
    roundtrip(&EnrollResponse::Refused {
        reason: "token expired".to_owned(),
    });
}

#[test]
fn task_messages_roundtrip() {
    use crate::wire::{
        BackupSource, BackupTask, EntryKind, FileEntry, RestoreTask, TaskMessage, TaskRequest,
        TaskSummary, is_safe_entry_path,
    };
    for source in [
        BackupSource::Paths {
            paths: vec!["/etc/nginx".into()],
            excludes: vec!["**/*.tmp".into()],
        },
        BackupSource::Command {
            argv: vec!["tar".into(), "-c".into()],
            file_name: "etc.tar".into(),
        },
        BackupSource::Postgres {
            url: "postgresql://127.0.0.1/test".into(),
        },
        BackupSource::Redis {
            url: "redis://127.0.0.1:6379".into(),
        },
    ] {
        roundtrip(&TaskRequest::Backup(BackupTask {
            id: 9,
            job: "config".into(),
            source,
        }));
    }
    roundtrip(&TaskRequest::Restore(RestoreTask {
        id: 10,
        snapshot: "ab12".into(),
        target: "/srv/restore".into(),
        entries: 3,
        bytes: 1 << 20,
    }));
    for kind in [
        EntryKind::File,
        EntryKind::Dir,
        EntryKind::Symlink("../x".into()),
    ] {
        roundtrip(&TaskMessage::Entry(FileEntry {
            path: "etc/hosts".into(),
            kind,
            mode: 0o644,
            mtime_ms: 1_700_000_000_000,
            size: 12,
        }));
    }
    roundtrip(&TaskMessage::Data {
        bytes: vec![0, 1, 255],
    });
    roundtrip(&TaskMessage::EntryEnd {
        sha256: vec![3; 32],
    });
    roundtrip(&TaskMessage::Done(TaskSummary {
        entries: 1,
        bytes: 2,
        skipped_or_verified: 3,
    }));
    roundtrip(&TaskMessage::Failed {
        reason: "pg_dump exited with 1".into(),
    });

    for good in ["etc/hosts", "a", "var/lib/x.db", "dir/.hidden"] {
        assert!(is_safe_entry_path(good), "{good}");
    }
    for bad in [
        "",
        "/etc/hosts",
        "../x",
        "a/../b",
        "a//b",
        "a/./b",
        "a/",
        "a\0b",
    ] {
        assert!(!is_safe_entry_path(bad), "{bad:?}");
    }
}
