use proptest::prelude::*;

use super::*;

fn bits(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
    samples.iter().map(|(t, v)| (*t, v.to_bits())).collect()
}

fn timestamps() -> impl Strategy<Value = Vec<i64>> {
    (
        any::<i64>().prop_map(|t| t / 4),
        prop::collection::vec(
            prop_oneof![
                4 => Just(10_000i64),
                4 => 9_990i64..10_010,
                2 => 1i64..5,
                1 => 1i64..(1 << 40),
            ],
            0..300,
        ),
    )
        .prop_map(|(start, gaps)| {
            let mut t = start;
            let mut out = vec![t];
            for gap in gaps {
                match t.checked_add(gap) {
                    Some(next) => t = next,
                    None => break,
                }
                out.push(t);
            }
            out
        })
}

fn values(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<u64>().prop_map(f64::from_bits),
            3 => (0u32..100).prop_map(f64::from),
            2 => Just(0.0),
            1 => Just(f64::from_bits(0x7ff0_0000_0000_0002)),
            1 => Just(-0.0),
            1 => Just(f64::INFINITY),
        ],
        n,
    )
}

fn series() -> impl Strategy<Value = Vec<(i64, f64)>> {
    timestamps().prop_flat_map(|ts| {
        let n = ts.len();
        values(n).prop_map(move |vs| ts.iter().copied().zip(vs).collect())
    })
}

proptest! {
    #[test]
    fn roundtrips_bit_exactly(samples in series()) {
        let encoded = encode(&samples).expect("encodes");
        let decoded = decode_all(&encoded).expect("decodes");
        prop_assert_eq!(bits(&decoded), bits(&samples));
    }

    #[test]
    fn resuming_appends_like_never_stopping(samples in series(), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(samples.len() + 1);
        let mut resumed = XorAppender::from_bytes(&encode(&samples[..cut]).expect("encodes")).expect("resumes");
        for &(t, v) in &samples[cut..] {
            resumed.append(t, v).expect("appends");
        }
        prop_assert_eq!(resumed.bytes(), &encode(&samples).expect("encodes")[..]);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_all(&bytes);
        let _ = XorAppender::from_bytes(&bytes);
    }

    #[test]
    fn corruption_never_panics(samples in series(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), cut in any::<prop::sample::Index>()) {
        let mut encoded = encode(&samples).expect("encodes");
        for (index, byte) in flips {
            let i = index.index(encoded.len());
            encoded[i] ^= byte;
        }
        let _ = decode_all(&encoded);
        let _ = XorAppender::from_bytes(&encoded);
        let cut = cut.index(encoded.len() + 1);
        let _ = decode_all(&encoded[..cut]);
    }
}

#[test]
fn refuses_out_of_order_and_huge_gaps() {
    let mut appender = XorAppender::new();
    appender.append(1000, 1.0).expect("first");
    assert_eq!(
        appender.append(1000, 1.0),
        Err(AppendError::OutOfOrder {
            last: 1000,
            got: 1000
        })
    );
    assert_eq!(
        appender.append(999, 1.0),
        Err(AppendError::OutOfOrder {
            last: 1000,
            got: 999
        })
    );
    let mut appender = XorAppender::new();
    appender.append(i64::MIN, 1.0).expect("first");
    assert_eq!(
        appender.append(i64::MAX, 1.0),
        Err(AppendError::GapTooLarge)
    );
    assert_eq!(decode_all(appender.bytes()).expect("decodes").len(), 1);
}

#[test]
fn regular_gauges_are_small() {
    let start = 1_700_000_000_000i64;
    let gauge: Vec<(i64, f64)> = (0..120)
        .map(|i| (start + i * 10_000, 40.0 + (i % 7) as f64 * 0.5))
        .collect();
    let size = encode(&gauge).expect("encodes").len();
    assert!(size <= 120 * 3, "{size} bytes for 120 samples");
    let constant: Vec<(i64, f64)> = (0..120).map(|i| (start + i * 10_000, 42.0)).collect();
    let size = encode(&constant).expect("encodes").len();
    assert!(
        size <= 2 + 8 + 8 + 2 + 30 + 4,
        "{size} bytes for 120 constant samples"
    );
}

#[test]
fn truncated_chunk_reports_truncation() {
    let samples: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, i as f64 * 1.5)).collect();
    let encoded = encode(&samples).expect("encodes");
    assert_eq!(
        decode_all(&encoded[..encoded.len() - 3]),
        Err(ChunkError::Truncated)
    );
    assert_eq!(decode_all(&[]), Err(ChunkError::Truncated));
}
