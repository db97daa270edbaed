use proptest::prelude::*;

use super::*;
use crate::journal::MemoryJournal;

/// Reopens the journal at `path` after a `drop` in the same process.
///
/// sled releases its file lock only when its background flusher lets go of the last
/// reference, which can lag the `drop` by a few milliseconds (../shared/notes/stack.md);
/// the agent opens its journal once per process, so only these tests reopen in-process.
fn reopen(path: &std::path::Path, cap: u64) -> SledJournal {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledJournal::open(path, cap) {
            Ok(journal) => return journal,
            Err(error)
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(error) => panic!("reopens: {error}"),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Read {
        after_offset: u64,
        max_records: usize,
        max_bytes: usize,
    },
    Ack(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..300).prop_map(Op::Append),
        2 => (0u64..5, 1usize..20, 1usize..2000).prop_map(|(after_offset, max_records, max_bytes)| Op::Read { after_offset, max_records, max_bytes }),
        2 => (0u64..30).prop_map(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The sled journal behaves exactly like the in-memory model, across reopenings.
    #[test]
    fn sled_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let cap = 1500;
        let model = MemoryJournal::new(cap);
        let mut journal = Some(SledJournal::open(&path, cap).expect("opens"));
        let mut n = 0u8;
        for op in ops {
            let sled = journal.as_ref().expect("open");
            match op {
                Op::Append(len) => {
                    n = n.wrapping_add(1);
                    let record = vec![n; len];
                    prop_assert_eq!(sled.append(&record).expect("append"), model.append(&record).expect("append"));
                }
                Op::Read { after_offset, max_records, max_bytes } => {
                    let after = model.last_seq().saturating_sub(after_offset + 3);
                    prop_assert_eq!(
                        sled.read_after(after, max_records, max_bytes).expect("read"),
                        model.read_after(after, max_records, max_bytes).expect("read")
                    );
                }
                Op::Ack(back) => {
                    let upto = model.last_seq().saturating_sub(back);
                    prop_assert_eq!(sled.ack(upto).expect("ack"), model.ack(upto).expect("ack"));
                }
                Op::Reopen => {
                    drop(journal.take());
                    journal = Some(reopen(&path, cap));
                }
            }
            let sled = journal.as_ref().expect("open");
            prop_assert_eq!(sled.stats(), model.stats());
            prop_assert_eq!(sled.last_seq(), model.last_seq());
            prop_assert!(sled.stats().bytes <= cap);
        }
    }
}

#[test]
fn sequence_numbers_keep_growing_after_everything_is_acked_and_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal");
    {
        let journal = SledJournal::open(&path, 1 << 20).expect("opens");
        assert_eq!(journal.append(b"a").expect("append").seq, 1);
        assert_eq!(journal.append(b"b").expect("append").seq, 2);
        assert_eq!(journal.ack(2).expect("ack"), 2);
    }
    let id = reopen(&path, 1 << 20).id();
    let journal = reopen(&path, 1 << 20);
    assert_eq!(journal.id(), id, "the id is stable");
    assert_ne!(
        SledJournal::open(&dir.path().join("other"), 1 << 20)
            .expect("opens")
            .id(),
        id
    );
    assert_eq!(journal.stats().records, 0);
    assert_eq!(journal.append(b"c").expect("append").seq, 3);
}

#[test]
fn a_record_larger_than_the_cap_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = SledJournal::open(&dir.path().join("j"), 10).expect("opens");
    assert!(matches!(
        journal.append(&[0; 11]),
        Err(JournalError::RecordTooLarge { size: 11, cap: 10 })
    ));
    assert_eq!(journal.stats(), BufferStats::default());
}

#[test]
fn eviction_drops_oldest_first_and_counts_persistently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal");
    {
        let journal = SledJournal::open(&path, 100).expect("opens");
        for i in 0..10u8 {
            journal.append(&[i; 30]).expect("append");
        }
        let stats = journal.stats();
        assert_eq!(
            (stats.records, stats.bytes, stats.dropped_records),
            (3, 90, 7)
        );
        let kept: Vec<u64> = journal
            .read_after(0, 100, 1 << 20)
            .expect("read")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(kept, vec![8, 9, 10]);
    }
    let journal = reopen(&path, 100);
    assert_eq!(journal.stats().dropped_records, 7);
}
