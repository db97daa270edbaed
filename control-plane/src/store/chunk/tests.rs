#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use proptest::prelude::*;

/// Prometheus' staleness marker.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn bits_of(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
    samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

fn build(samples: &[(i64, f64)]) -> XorAppender {
    let mut a = XorAppender::new();
    for &(t, v) in samples {
        a.append(t, v).unwrap();
    }
    a
}

fn assert_roundtrip(samples: &[(i64, f64)]) {
    let bytes = encode(samples).unwrap();
    let decoded = decode_all(&bytes).unwrap();
    assert_eq!(bits_of(&decoded), bits_of(samples));
    let iterated: Vec<_> = decode(&bytes).unwrap().map(Result::unwrap).collect();
    assert_eq!(bits_of(&iterated), bits_of(samples));
}

/// Writes a raw bit stream behind a count header, for hand-made chunks.
fn raw_chunk(count: u16, fields: &[(u64, u32)]) -> Vec<u8> {
    let mut w = BitWriter {
        buf: count.to_be_bytes().to_vec(),
        free: 0,
    };
    for &(v, n) in fields {
        w.write(v, n);
    }
    w.buf
}

// ---------------------------------------------------------------- strategies

/// Gap to the next timestamp: mostly scrape-like, sometimes wild.
fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (prop::sample::select(vec![1_000u64, 10_000, 15_000, 60_000]), -50i64..=50)
            .prop_map(|(base, jitter)| base.saturating_add_signed(jitter)),
        4 => Just(10_000u64),
        1 => 1u64..=1 << 20,
        1 => 1u64..=1 << 44,
        1 => 1u64..=u64::MAX,
    ]
}

fn start() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -(1i64 << 45)..(1i64 << 45),
        1 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => (0i64..1_000_000).prop_map(|d| i64::MAX - d),
    ]
}

/// Strictly increasing timestamps; stops before overflowing `i64`.
fn timestamps(max: usize) -> impl Strategy<Value = Vec<i64>> {
    (start(), prop::collection::vec(gap(), 0..max)).prop_map(|(first, gaps)| {
        let mut out = vec![first];
        let mut t = first;
        for g in gaps {
            match t.checked_add_unsigned(g) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    })
}

#[derive(Debug, Clone)]
enum ValueGen {
    Bits(u64),
    Special(u64),
    Repeat,
    /// Small integer step of the previous value (gauge-like).
    Step(i8),
    /// Flip a low mantissa bit of the previous value.
    Nudge(u8),
}

fn value_gen() -> impl Strategy<Value = ValueGen> {
    let specials = vec![
        STALE_NAN,
        f64::NAN.to_bits(),
        0x7ff0_0000_0000_0001,
        0xfff8_0000_0000_0000,
        0xffff_ffff_ffff_ffff,
        0.0f64.to_bits(),
        (-0.0f64).to_bits(),
        f64::INFINITY.to_bits(),
        f64::NEG_INFINITY.to_bits(),
        1,
        0x000f_ffff_ffff_ffff,
        f64::MAX.to_bits(),
        f64::MIN.to_bits(),
        f64::MIN_POSITIVE.to_bits(),
        f64::EPSILON.to_bits(),
    ];
    prop_oneof![
        2 => any::<u64>().prop_map(ValueGen::Bits),
        1 => prop::sample::select(specials).prop_map(ValueGen::Special),
        3 => Just(ValueGen::Repeat),
        2 => any::<i8>().prop_map(ValueGen::Step),
        1 => (0u8..52).prop_map(ValueGen::Nudge),
    ]
}

fn values(gens: &[ValueGen]) -> Vec<f64> {
    let mut prev = 100.0f64;
    gens.iter()
        .map(|g| {
            prev = match *g {
                ValueGen::Bits(b) | ValueGen::Special(b) => f64::from_bits(b),
                ValueGen::Repeat => prev,
                ValueGen::Step(d) => prev + f64::from(d),
                ValueGen::Nudge(bit) => f64::from_bits(prev.to_bits() ^ (1 << bit)),
            };
            prev
        })
        .collect()
}

fn samples(max: usize) -> impl Strategy<Value = Vec<(i64, f64)>> {
    (timestamps(max), prop::collection::vec(value_gen(), max + 1))
        .prop_map(|(ts, gens)| ts.into_iter().zip(values(&gens)).collect())
}

#[derive(Debug, Clone)]
enum Damage {
    FlipBit(usize),
    SetByte(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    SetCount(u16),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => any::<usize>().prop_map(Damage::FlipBit),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::SetByte(i, b)),
        2 => any::<usize>().prop_map(Damage::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Damage::Extend),
        1 => any::<u16>().prop_map(Damage::SetCount),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    match d {
        Damage::FlipBit(i) if !bytes.is_empty() => {
            let i = i % (bytes.len() * 8);
            bytes[i / 8] ^= 0x80 >> (i % 8);
        }
        Damage::SetByte(i, b) if !bytes.is_empty() => {
            let n = bytes.len();
            bytes[i % n] = *b;
        }
        Damage::Truncate(n) => bytes.truncate(n % (bytes.len() + 1)),
        Damage::Extend(extra) => bytes.extend_from_slice(extra),
        Damage::SetCount(c) if bytes.len() >= 2 => bytes[..2].copy_from_slice(&c.to_be_bytes()),
        _ => {}
    }
}

/// Everything the decoder promises about input it did not write.
fn check_untrusted(bytes: &[u8]) {
    let all = decode_all(bytes);
    let iterated: Result<Vec<_>, _> = decode(bytes).and_then(|it| it.collect());
    assert_eq!(
        all.as_ref().map(|s| bits_of(s)),
        iterated.as_ref().map(|s| bits_of(s))
    );
    let resumed = XorAppender::from_bytes(bytes);
    match (&all, resumed) {
        (Ok(samples), Ok(mut a)) => {
            assert_eq!(
                samples.len(),
                usize::from(u16::from_be_bytes([bytes[0], bytes[1]]))
            );
            assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
            assert_eq!(a.len(), samples.len());
            assert_eq!(a.last_timestamp(), samples.last().map(|s| s.0));
            // An accepted chunk must be safely extendable.
            let next = samples.last().map_or(Some(0), |s| s.0.checked_add(1));
            if let (Some(t), false) = (next, a.len() == MAX_SAMPLES) {
                a.append(t, 1.5).unwrap();
                let mut expect = bits_of(samples);
                expect.push((t, 1.5f64.to_bits()));
                assert_eq!(bits_of(&decode_all(a.bytes()).unwrap()), expect);
            }
        }
        (Err(e1), Err(e2)) => assert_eq!(e1, &e2),
        (all, resumed) => panic!("decode_all {all:?} vs from_bytes {resumed:?}"),
    }
}

// ------------------------------------------------------------ property tests

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn roundtrip_is_bit_exact(s in samples(400)) {
        assert_roundtrip(&s);
        let a = build(&s);
        prop_assert_eq!(a.len(), s.len());
        prop_assert_eq!(a.is_empty(), s.is_empty());
        prop_assert_eq!(a.first_timestamp(), s.first().map(|x| x.0));
        prop_assert_eq!(a.last_timestamp(), s.last().map(|x| x.0));
        prop_assert_eq!(a.last_value().map(f64::to_bits), s.last().map(|x| x.1.to_bits()));
        prop_assert_eq!(a.bytes(), &encode(&s).unwrap()[..]);
    }

    #[test]
    fn bytes_decode_after_every_append(s in samples(60)) {
        let mut a = XorAppender::new();
        for (i, &(t, v)) in s.iter().enumerate() {
            a.append(t, v).unwrap();
            prop_assert_eq!(bits_of(&decode_all(a.bytes()).unwrap()), bits_of(&s[..=i]));
        }
    }

    #[test]
    fn resume_from_every_prefix_matches_uninterrupted(s in samples(120)) {
        let full = build(&s);
        let mut prefix = XorAppender::new();
        for k in 0..=s.len() {
            let mut resumed = XorAppender::from_bytes(prefix.bytes()).unwrap();
            prop_assert_eq!(resumed.len(), k);
            prop_assert_eq!(resumed.first_timestamp(), prefix.first_timestamp());
            prop_assert_eq!(resumed.last_timestamp(), prefix.last_timestamp());
            prop_assert_eq!(
                resumed.last_value().map(f64::to_bits),
                prefix.last_value().map(f64::to_bits)
            );
            for &(t, v) in &s[k..] {
                resumed.append(t, v).unwrap();
            }
            prop_assert_eq!(resumed.bytes(), full.bytes());
            if let Some(&(t, v)) = s.get(k) {
                prefix.append(t, v).unwrap();
            }
        }
    }

    #[test]
    fn out_of_order_is_refused_and_harmless(s in samples(50), back in 0u64..=u64::MAX, v: u64) {
        let mut a = build(&s);
        let before = a.bytes().to_vec();
        let last = s.last().unwrap().0;
        let got = last.saturating_sub_unsigned(back);
        prop_assert_eq!(
            a.append(got, f64::from_bits(v)),
            Err(AppendError::OutOfOrder { last, got })
        );
        prop_assert_eq!(a.bytes(), &before[..]);
        prop_assert_eq!(a.len(), s.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_untrusted(&bytes);
    }

    #[test]
    fn damaged_chunks_never_panic(
        s in samples(200),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let mut bytes = encode(&s).unwrap();
        for d in &damages {
            apply(&mut bytes, d);
        }
        check_untrusted(&bytes);
    }

    #[test]
    fn every_strict_prefix_is_rejected(s in samples(80)) {
        let bytes = encode(&s).unwrap();
        for n in 0..bytes.len() {
            prop_assert!(decode_all(&bytes[..n]).is_err(), "prefix {} of {}", n, bytes.len());
            prop_assert!(XorAppender::from_bytes(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn surplus_bytes_are_rejected_padding_is_ignored(s in samples(80), extra in 1usize..5, pad: u8) {
        let bytes = encode(&s).unwrap();
        let mut longer = bytes.clone();
        longer.extend(std::iter::repeat_n(0, extra));
        prop_assert_eq!(decode_all(&longer), Err(ChunkError::TrailingBytes { extra }));
        let last_err = decode(&longer).unwrap().last().unwrap();
        prop_assert_eq!(last_err, Err(ChunkError::TrailingBytes { extra }));

        // Garbage in the padding bits decodes the same, and resuming clears it.
        let a = build(&s);
        let mut padded = bytes.clone();
        let free = a.w.free;
        if free > 0 {
            *padded.last_mut().unwrap() |= pad & ((1u8 << free) - 1);
        }
        prop_assert_eq!(bits_of(&decode_all(&padded).unwrap()), bits_of(&s));
        let resumed = XorAppender::from_bytes(&padded).unwrap();
        prop_assert_eq!(resumed.bytes(), &bytes[..]);
    }
}

// ---------------------------------------------------------------- unit tests

#[test]
fn empty_chunk() {
    let bytes = encode(&[]).unwrap();
    assert_eq!(bytes, [0, 0]);
    assert!(decode_all(&bytes).unwrap().is_empty());
    assert_eq!(decode(&bytes).unwrap().count(), 0);
    let a = XorAppender::from_bytes(&bytes).unwrap();
    assert!(a.is_empty());
    assert_eq!(a.first_timestamp(), None);
    assert_eq!(a.last_timestamp(), None);
    assert_eq!(a.last_value(), None);
    assert_eq!(XorAppender::default().bytes(), [0, 0]);
}

#[test]
fn extreme_timestamps_roundtrip() {
    let cases: &[&[i64]] = &[
        &[i64::MIN, i64::MAX],
        &[i64::MIN, 0, i64::MAX],
        &[i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX],
        &[i64::MIN, i64::MAX - 1, i64::MAX],
        &[-1, 0, 1, i64::MAX],
        &[i64::MIN, -1, 0, 1, i64::MAX],
        &[-5_000, -4_000, -3_000, 1 << 62, (1 << 62) + 1],
    ];
    for ts in cases {
        let s: Vec<_> = ts.iter().map(|&t| (t, t as f64)).collect();
        assert_roundtrip(&s);
    }
}

#[test]
fn dod_bucket_boundaries_roundtrip() {
    let edges = [
        0i64,
        1,
        -1,
        (1 << 13) - 1,
        -(1 << 13),
        1 << 13,
        -(1 << 13) - 1,
        (1 << 16) - 1,
        -(1 << 16),
        1 << 16,
        -(1 << 16) - 1,
        (1 << 19) - 1,
        -(1 << 19),
        1 << 19,
        -(1 << 19) - 1,
        1 << 40,
    ];
    for dod in edges {
        // Base delta large enough that every negative dod stays positive.
        let base = 1i64 << 41;
        let ts = [0, base, 2 * base + dod, 3 * base + 2 * dod];
        let s: Vec<_> = ts.iter().map(|&t| (t, 0.0)).collect();
        assert_roundtrip(&s);
    }
}

#[test]
fn special_values_roundtrip_bit_exact() {
    let bits = [
        STALE_NAN,
        f64::NAN.to_bits(),
        0x7ff0_0000_0000_0001,
        0x7ff7_ffff_ffff_ffff,
        0xfff8_0000_0000_0001,
        0.0f64.to_bits(),
        (-0.0f64).to_bits(),
        f64::INFINITY.to_bits(),
        f64::NEG_INFINITY.to_bits(),
        1,
        0x8000_0000_0000_0001,
        0x000f_ffff_ffff_ffff,
        f64::MAX.to_bits(),
        f64::MIN_POSITIVE.to_bits(),
        u64::MAX,
        STALE_NAN,
        STALE_NAN,
        0,
    ];
    let s: Vec<_> = bits
        .iter()
        .enumerate()
        .map(|(i, &b)| (i as i64 * 15_000, f64::from_bits(b)))
        .collect();
    assert_roundtrip(&s);
    let a = build(&s);
    assert_eq!(a.last_value().map(f64::to_bits), Some(0));
}

#[test]
fn full_chunk() {
    let s: Vec<_> = (0..MAX_SAMPLES as i64)
        .map(|i| (i * 1_000, (i % 7) as f64))
        .collect();
    let mut a = build(&s);
    assert_eq!(a.len(), MAX_SAMPLES);
    assert_eq!(a.append(i64::MAX, 0.0), Err(AppendError::Full));
    assert_eq!(a.len(), MAX_SAMPLES);
    assert_eq!(bits_of(&decode_all(a.bytes()).unwrap()), bits_of(&s));

    let mut resumed = XorAppender::from_bytes(a.bytes()).unwrap();
    assert_eq!(resumed.append(i64::MAX, 0.0), Err(AppendError::Full));

    let mut too_many = s.clone();
    too_many.push((i64::MAX, 0.0));
    assert_eq!(encode(&too_many), Err(AppendError::Full));
}

#[test]
fn encode_reports_first_out_of_order_sample() {
    let s = [(10, 1.0), (20, 2.0), (20, 3.0), (5, 4.0)];
    assert_eq!(
        encode(&s),
        Err(AppendError::OutOfOrder { last: 20, got: 20 })
    );
}

#[test]
fn short_header_is_rejected() {
    for bytes in [&[][..], &[0][..]] {
        assert_eq!(
            decode_all(bytes),
            Err(ChunkError::MissingHeader { len: bytes.len() })
        );
        assert!(decode(bytes).is_err());
        assert!(XorAppender::from_bytes(bytes).is_err());
    }
}

#[test]
fn corrupt_streams_name_the_problem() {
    // Sample 0 at t=0 (varint 0), value 0; sample 1 at delta 1.
    let head: [(u64, u32); 3] = [(0, 8), (0, 64), (1, 8)];

    let reuse_without_window = raw_chunk(2, &[head[0], head[1], head[2], (0b10, 2), (0, 6)]);
    assert_eq!(
        decode_all(&reuse_without_window),
        Err(ChunkError::MissingWindow { index: 1 })
    );

    // 20 leading zeros with 50 significant bits: 70 > 64.
    let wide = raw_chunk(2, &[head[0], head[1], head[2], (0b11, 2), (20, 5), (50, 6)]);
    assert_eq!(
        decode_all(&wide),
        Err(ChunkError::BadWindow {
            index: 1,
            leading: 20,
            significant: 50
        })
    );

    let zero_delta = raw_chunk(2, &[head[0], head[1], (0, 8), (0, 1)]);
    assert_eq!(
        decode_all(&zero_delta),
        Err(ChunkError::NonIncreasing { index: 1, prev: 0 })
    );

    // t0 = i64::MAX (zigzag u64::MAX - 1), then any delta overflows.
    let mut fields = vec![];
    let mut x = u64::MAX - 1;
    while x >= 0x80 {
        fields.push(((x & 0x7f) | 0x80, 8));
        x >>= 7;
    }
    fields.extend([(x, 8), (0, 64), (1, 8), (0, 1)]);
    assert_eq!(
        decode_all(&raw_chunk(2, &fields)),
        Err(ChunkError::NonIncreasing {
            index: 1,
            prev: i64::MAX
        })
    );

    // dod bringing the delta to zero.
    let dod_to_zero = raw_chunk(
        3,
        &[head[0], head[1], head[2], (0, 1), (0b10, 2), (mask(14), 14)],
    );
    assert_eq!(
        decode_all(&dod_to_zero),
        Err(ChunkError::NonIncreasing { index: 2, prev: 1 })
    );

    let long_varint = raw_chunk(1, &[(0xff, 8); 11]);
    assert_eq!(
        decode_all(&long_varint),
        Err(ChunkError::BadVarint { index: 0 })
    );
    let big_tenth = raw_chunk(
        1,
        &[
            (0xff, 8),
            (0xff, 8),
            (0xff, 8),
            (0xff, 8),
            (0xff, 8),
            (0xff, 8),
            (0xff, 8),
            (0xff, 8),
            (0xff, 8),
            (0x02, 8),
            (0, 64),
        ],
    );
    assert_eq!(
        decode_all(&big_tenth),
        Err(ChunkError::BadVarint { index: 0 })
    );

    assert_eq!(
        decode_all(&[0, 3, 0]),
        Err(ChunkError::Truncated { index: 0, count: 3 })
    );
    assert_eq!(
        decode_all(&[0, 0, 0]),
        Err(ChunkError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn huge_count_on_tiny_input_allocates_little() {
    let bytes = [0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let d = Decoder::new(&bytes).unwrap();
    assert!(d.capacity_hint() <= 1);
    assert!(matches!(
        decode_all(&bytes),
        Err(ChunkError::Truncated { .. })
    ));
}

#[test]
fn errors_display() {
    let e = AppendError::OutOfOrder { last: 5, got: 3 };
    assert_eq!(
        e.to_string(),
        "timestamp 3 does not come after the chunk's last timestamp 5"
    );
    assert!(
        ChunkError::Truncated { index: 1, count: 2 }
            .to_string()
            .contains("sample 1 of 2")
    );
}

// ---------------------------------------------------------------------- size

/// Deterministic xorshift, so the size figures are stable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// An integer gauge (e.g. open connections, MiB in use) that moves by a
/// small step on roughly a third of the scrapes.
fn slow_gauge(n: usize, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = Rng(seed);
    let mut v = 4_096.0;
    (0..n)
        .map(|i| {
            let r = rng.next();
            if r.is_multiple_of(3) {
                v += ((r >> 8) % 7) as f64 - 3.0;
            }
            (1_700_000_000_000 + i as i64 * 10_000, v)
        })
        .collect()
}

fn bytes_per_sample(s: &[(i64, f64)]) -> f64 {
    encode(s).unwrap().len() as f64 / s.len() as f64
}

#[test]
fn size_slow_gauge_120_samples() {
    for seed in 1..=20 {
        let bps = bytes_per_sample(&slow_gauge(120, seed));
        assert!(bps <= 1.2, "seed {seed}: {bps:.3} bytes/sample");
    }
}

/// A gauge that moves every scrape by a multiple of 0.25 (e.g. a
/// temperature reading): short mantissas, so narrow XOR windows.
fn step_gauge(n: usize, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = Rng(seed);
    let mut v = 21.5;
    (0..n)
        .map(|i| {
            v += ((rng.next() % 5) as f64 - 2.0) * 0.25;
            (1_700_000_000_000 + i as i64 * 10_000, v)
        })
        .collect()
}

#[test]
fn size_step_gauge_120_samples() {
    for seed in 1..=20 {
        let bps = bytes_per_sample(&step_gauge(120, seed));
        assert!(bps <= 1.6, "seed {seed}: {bps:.3} bytes/sample");
    }
}

#[test]
#[allow(clippy::print_stdout)] // Prints the figures on purpose (`-- --nocapture`).
fn print_size_figures() {
    // Not an assertion: `cargo test print_size -- --nocapture` shows them.
    let avg = |f: fn(usize, u64) -> Vec<(i64, f64)>| {
        (1..=20)
            .map(|seed| bytes_per_sample(&f(120, seed)))
            .sum::<f64>()
            / 20.0
    };
    println!(
        "slow integer gauge, 120 × 10 s: {:.3} B/sample",
        avg(slow_gauge)
    );
    println!(
        "0.25-step gauge,    120 × 10 s: {:.3} B/sample",
        avg(step_gauge)
    );
}

#[test]
fn size_constant_value_regular_interval() {
    let s: Vec<_> = (0..120)
        .map(|i| (1_700_000_000_000 + i * 10_000, 42.0))
        .collect();
    let bytes = encode(&s).unwrap();
    // Header 2 + varint t0 (6) + raw v0 (8) + varint Δ (2) + 2 bits × 119.
    assert!(
        bytes.len() <= 2 + 6 + 8 + 2 + (119 * 2usize).div_ceil(8),
        "{}",
        bytes.len()
    );
    // In steady state each sample costs exactly two bits.
    let longer: Vec<_> = (0..1_120)
        .map(|i| (1_700_000_000_000 + i * 10_000, 42.0))
        .collect();
    assert_eq!(encode(&longer).unwrap().len() - bytes.len(), 1_000 * 2 / 8);
}

#[test]
fn size_counter_with_jitter() {
    // A monotonic counter scraped every 15 s ± a few ms.
    let mut rng = Rng(7);
    let mut v = 1_000_000.0;
    let s: Vec<_> = (0..120)
        .map(|i| {
            v += (rng.next() % 500) as f64;
            (1_700_000_000_000 + i * 15_000 + (rng.next() % 10) as i64, v)
        })
        .collect();
    let bps = bytes_per_sample(&s);
    assert!(bps <= 4.5, "{bps:.3} bytes/sample");
}
