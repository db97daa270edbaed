//! Gorilla-style XOR chunk codec for `(timestamp_ms: i64, value: f64)` samples.
//!
//! The encoding follows the scheme of Facebook's Gorilla paper (VLDB 2015),
//! with the bucket sizes Prometheus uses for millisecond timestamps.
//!
//! # Format
//!
//! ```text
//! chunk    := count:u16be  stream
//! stream   := bits, most significant bit first, zero-padded to a whole byte
//! sample 0 := varint(zigzag(t0))  raw64(v0)
//! sample 1 := uvarint(t1 - t0)    xor(v1)
//! sample n := dod(Δn - Δn-1)      xor(vn)          (n ≥ 2, Δn = tn - tn-1)
//!
//! dod := '0'                          dod == 0
//!      | '10'   int14                 two's complement, [-2^13, 2^13)
//!      | '110'  int17                 [-2^16, 2^16)
//!      | '1110' int20                 [-2^19, 2^19)
//!      | '1111' int64                 anything else
//!
//! xor := '0'                          bit pattern equal to the previous value
//!      | '10'  bits[sig]              XOR fits the previous window: its
//!                                     `sig` meaningful bits only
//!      | '11'  lead:5 sig:6 bits[sig] new window; sig == 0 stands for 64
//! ```
//!
//! Varints are LEB128 (7 bits per byte, low group first, high bit set on every
//! byte but the last); their bytes go through the bit stream unchanged, and
//! they always happen to start byte-aligned.
//!
//! # Constraints and guarantees
//!
//! - At most [`MAX_SAMPLES`] (65535) samples per chunk, because the count is a
//!   `u16`. The count header is rewritten on every append, so
//!   [`XorAppender::bytes`] is a complete, decodable chunk at any moment.
//! - Timestamps must be strictly increasing; any `i64` is accepted. Deltas are
//!   kept as `u64` (a strictly positive difference of two `i64` always fits)
//!   and delta-of-deltas are computed modulo 2^64: the decoder reverses the
//!   same wrapping arithmetic, so even `i64::MIN` followed by `i64::MAX`
//!   round-trips and there is no overflow error to report.
//! - Values round-trip bit-exactly: they are handled as `u64` bit patterns, so
//!   NaN payloads (e.g. the Prometheus staleness marker `0x7ff0000000000002`),
//!   signed zeros, infinities and subnormals survive.
//! - Decoding never panics and never trusts the input for allocation: the
//!   count header caps the work at 65535 samples, and `decode_all` reserves no
//!   more samples than the byte length could possibly hold. Decoded timestamps
//!   are always strictly increasing; a stream that would break that is
//!   reported as corrupt, so a chunk accepted by [`XorAppender::from_bytes`]
//!   can always be appended to.
//! - Bits after the last sample are padding: their value is ignored (and
//!   cleared by `from_bytes`), but any whole byte after them is an error.
//!
//! The encoder deviates from the paper in one choice only the encoder makes:
//! it reuses the previous XOR window only when that is no more expensive than
//! opening a new one. A wide window inherited from one noisy sample would
//! otherwise tax every later sample; the decoder is indifferent to the choice.
//!
//! The layout mirrors Prometheus' XOR chunk but byte compatibility is not a
//! goal: bucket ranges here are plain two's complement (Prometheus shifts them
//! by one), so a foreign chunk may decode to wrong timestamps.

// The decoder runs on untrusted bytes: keep panicking constructs out of it by
// construction rather than by review.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// The codec reinterprets integers as bit patterns on purpose: `i64 <-> u64`
// casts are two's-complement views and narrowing casts keep masked bits.
#![allow(
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::cast_possible_truncation
)]

use std::iter::FusedIterator;

#[cfg(test)]
mod tests;

/// Most samples one chunk can hold (the count header is a `u16`).
pub const MAX_SAMPLES: usize = u16::MAX as usize;

/// Bytes before the bit stream: the big-endian sample count.
const HEADER_LEN: usize = 2;

/// A fresh appender reserves room for this many bytes: a typical 120-sample
/// chunk of a well-behaved series fits, so it rarely reallocates.
const DEFAULT_CAPACITY: usize = 256;

/// Bits of the first sample: the shortest varint (8) plus the raw value (64).
const MIN_FIRST_SAMPLE_BITS: usize = 72;

/// Longest LEB128 encoding of a `u64`.
const MAX_VARINT_BYTES: u32 = 10;

/// Error returned by [`XorAppender::append`] and [`encode`]; the chunk is left
/// unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The timestamp is not strictly greater than the chunk's last one.
    #[error("timestamp {got} does not come after the chunk's last timestamp {last}")]
    OutOfOrder {
        /// Last timestamp already in the chunk.
        last: i64,
        /// The refused sample's timestamp.
        got: i64,
    },
    /// The chunk already holds [`MAX_SAMPLES`] samples.
    #[error("chunk is full ({MAX_SAMPLES} samples)")]
    Full,
}

/// Error returned when decoding an encoded chunk.
///
/// `index` is the zero-based sample being decoded when the problem showed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Fewer bytes than the count header.
    #[error("chunk is {len} bytes long, shorter than its {HEADER_LEN}-byte header")]
    MissingHeader {
        /// Length of the input.
        len: usize,
    },
    /// The bit stream ends before the samples the header announces.
    #[error("chunk ends inside sample {index} of {count}")]
    Truncated {
        /// Sample being decoded.
        index: usize,
        /// Sample count from the header.
        count: usize,
    },
    /// A varint runs over 10 bytes or past 64 bits.
    #[error("sample {index}: timestamp varint is malformed")]
    BadVarint {
        /// Sample being decoded.
        index: usize,
    },
    /// The decoded delta is zero or carries the timestamp past `i64::MAX`.
    #[error("sample {index}: timestamp after {prev} does not increase within i64")]
    NonIncreasing {
        /// Sample being decoded.
        index: usize,
        /// Timestamp of the sample before it.
        prev: i64,
    },
    /// A value reuses the previous XOR window, but none was opened yet.
    #[error("sample {index}: value reuses an XOR window before any was set")]
    MissingWindow {
        /// Sample being decoded.
        index: usize,
    },
    /// A new XOR window is wider than 64 bits.
    #[error(
        "sample {index}: XOR window of {leading} leading and {significant} significant bits exceeds 64"
    )]
    BadWindow {
        /// Sample being decoded.
        index: usize,
        /// Leading-zero count read.
        leading: u32,
        /// Significant-bit count read.
        significant: u32,
    },
    /// Whole bytes follow the last sample's padding.
    #[error("{extra} unexpected bytes after the last sample")]
    TrailingBytes {
        /// Number of surplus bytes.
        extra: usize,
    },
}

/// The run of meaningful bits in the previous value XOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// Leading zeros, at most 31 (the field is 5 bits wide).
    lead: u32,
    /// Trailing zeros; `lead + trail <= 63`, so `sig() >= 1`.
    trail: u32,
}

impl Window {
    fn sig(self) -> u32 {
        64 - self.lead - self.trail
    }
}

/// Bit-level state shared by the appender and the decoder: what the next
/// sample is encoded relative to.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    count: u16,
    first_t: i64,
    t: i64,
    /// Previous delta, as `u64` because a positive `i64` difference may
    /// exceed `i64::MAX`.
    delta: u64,
    bits: u64,
    window: Option<Window>,
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

/// Whether `x` fits an `n`-bit two's-complement field.
fn fits(x: i64, n: u32) -> bool {
    let lim = 1i64 << (n - 1);
    -lim <= x && x < lim
}

fn mask(n: u32) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// Sign-extends the low `n` bits of `x` (`1 <= n <= 63`).
fn sign_extend(x: u64, n: u32) -> i64 {
    ((x << (64 - n)) as i64) >> (64 - n)
}

/// Appends bits to a byte vector whose last byte may be partly filled.
///
/// Bits land in the vector immediately (no pending register) so that the
/// bytes are a valid chunk between any two appends.
#[derive(Debug, Clone)]
struct BitWriter {
    buf: Vec<u8>,
    /// Unused low-order bits of the last byte, `0..=7`.
    free: u32,
}

impl BitWriter {
    /// Writes the low `n` bits of `value`, most significant first.
    /// Requires `1 <= n <= 64` and `value < 2^n`.
    fn write(&mut self, value: u64, n: u32) {
        debug_assert!((1..=64).contains(&n) && value & !mask(n) == 0);
        let free = self.free;
        if n <= free {
            if let Some(last) = self.buf.last_mut() {
                *last |= (value << (free - n)) as u8;
            }
            self.free = free - n;
            return;
        }
        let rest = n - free;
        if free > 0
            && let Some(last) = self.buf.last_mut()
        {
            // `value >> rest` is exactly the top `free` bits.
            *last |= (value >> rest) as u8;
        }
        // Left-align the remaining bits and copy the bytes they touch.
        let aligned = value << (64 - rest);
        let nbytes = rest.div_ceil(8);
        // Copying all eight bytes and cutting back is cheaper than a
        // variable-length copy.
        let keep = self.buf.len() + nbytes as usize;
        self.buf.extend_from_slice(&aligned.to_be_bytes());
        self.buf.truncate(keep);
        self.free = nbytes * 8 - rest;
    }

    fn write_varint(&mut self, mut x: u64) {
        loop {
            let group = x & 0x7f;
            x >>= 7;
            if x == 0 {
                self.write(group, 8);
                return;
            }
            self.write(group | 0x80, 8);
        }
    }
}

/// Incremental builder of one chunk.
///
/// Appending is O(1) amortized: each sample writes a few bits into a growable
/// buffer and rewrites the 2-byte count header.
#[derive(Debug, Clone)]
pub struct XorAppender {
    w: BitWriter,
    s: State,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    /// An empty chunk (count 0, no stream).
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// An empty chunk whose buffer reserves `bytes` bytes up front.
    #[must_use]
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(HEADER_LEN));
        buf.extend_from_slice(&[0; HEADER_LEN]);
        Self {
            w: BitWriter { buf, free: 0 },
            s: State::default(),
        }
    }

    /// Resumes appending to an encoded chunk.
    ///
    /// Decodes every sample to rebuild the encoder state, so it costs one
    /// full decode. Padding bits after the last sample are cleared.
    ///
    /// # Errors
    ///
    /// Any [`ChunkError`] the chunk decodes to; a chunk that decodes is
    /// always accepted.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChunkError> {
        let mut d = Decoder::new(bytes)?;
        while d.s.count < d.total {
            d.next_sample()?;
        }
        let used = d.finish()?;
        let mut buf = Vec::with_capacity(bytes.len().max(DEFAULT_CAPACITY));
        buf.extend_from_slice(bytes);
        let free = ((8 - used % 8) % 8) as u32;
        if free > 0
            && let Some(last) = buf.last_mut()
        {
            *last &= 0xffu8 << free;
        }
        Ok(Self {
            w: BitWriter { buf, free },
            s: d.s,
        })
    }

    /// Appends one sample.
    ///
    /// Fails, leaving the chunk unchanged, when `t` does not come strictly
    /// after the last timestamp or the chunk holds [`MAX_SAMPLES`] samples.
    ///
    /// # Errors
    ///
    /// [`AppendError::OutOfOrder`] or [`AppendError::Full`].
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), AppendError> {
        let bits = v.to_bits();
        match self.s.count {
            0 => {
                self.w.write_varint(zigzag(t));
                self.w.write(bits, 64);
                self.s.first_t = t;
            }
            u16::MAX => return Err(AppendError::Full),
            n => {
                if t <= self.s.t {
                    return Err(AppendError::OutOfOrder {
                        last: self.s.t,
                        got: t,
                    });
                }
                // Exact: `t > self.s.t`, so the true difference is in
                // `1..=u64::MAX`.
                let delta = (t as u64).wrapping_sub(self.s.t as u64);
                if n == 1 {
                    self.w.write_varint(delta);
                } else {
                    self.write_dod(delta.wrapping_sub(self.s.delta) as i64);
                }
                self.write_value(bits);
                self.s.delta = delta;
            }
        }
        self.s.t = t;
        self.s.bits = bits;
        self.s.count += 1;
        if let Some(header) = self.w.buf.first_chunk_mut::<HEADER_LEN>() {
            *header = self.s.count.to_be_bytes();
        }
        Ok(())
    }

    fn write_dod(&mut self, dod: i64) {
        // Prefix and payload go out in one write where they fit together.
        let d = dod as u64;
        if dod == 0 {
            self.w.write(0, 1);
        } else if fits(dod, 14) {
            self.w.write((0b10 << 14) | (d & mask(14)), 16);
        } else if fits(dod, 17) {
            self.w.write((0b110 << 17) | (d & mask(17)), 20);
        } else if fits(dod, 20) {
            self.w.write((0b1110 << 20) | (d & mask(20)), 24);
        } else {
            self.w.write(0b1111, 4);
            self.w.write(d, 64);
        }
    }

    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.s.bits;
        if xor == 0 {
            self.w.write(0, 1);
            return;
        }
        let lead = xor.leading_zeros().min(31);
        let trail = xor.trailing_zeros();
        let sig = 64 - lead - trail;
        if let Some(w) = self.s.window
            && lead >= w.lead
            && trail >= w.trail
            // Reuse costs 2 + w.sig() bits; a new window 13 + sig.
            && w.sig() <= sig + 11
        {
            let ws = w.sig();
            let payload = xor >> w.trail;
            if ws <= 62 {
                self.w.write((0b10 << ws) | payload, ws + 2);
            } else {
                self.w.write(0b10, 2);
                self.w.write(payload, ws);
            }
            return;
        }
        // 64 does not fit the 6-bit field; 0 is otherwise unused, so it
        // stands for 64.
        let header = (0b11 << 11) | (u64::from(lead) << 6) | u64::from(sig & 63);
        self.w.write(header, 13);
        self.w.write(xor >> trail, sig);
        self.s.window = Some(Window { lead, trail });
    }

    /// Number of samples in the chunk.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.s.count)
    }

    /// Whether the chunk holds no sample.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.s.count == 0
    }

    /// Timestamp of the first sample.
    #[must_use]
    pub fn first_timestamp(&self) -> Option<i64> {
        (self.s.count > 0).then_some(self.s.first_t)
    }

    /// Timestamp of the last sample.
    #[must_use]
    pub fn last_timestamp(&self) -> Option<i64> {
        (self.s.count > 0).then_some(self.s.t)
    }

    /// Value of the last sample, bit-exact.
    #[must_use]
    pub fn last_value(&self) -> Option<f64> {
        (self.s.count > 0).then(|| f64::from_bits(self.s.bits))
    }

    /// The encoded chunk so far; always decodable.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.w.buf
    }

    /// Gives up the encoded chunk without copying it.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.w.buf
    }
}

/// Encodes `samples` into one chunk.
///
/// # Errors
///
/// [`AppendError::Full`] for more than [`MAX_SAMPLES`] samples, or the error
/// of the first sample [`XorAppender::append`] refuses.
pub fn encode(samples: &[(i64, f64)]) -> Result<Vec<u8>, AppendError> {
    if samples.len() > MAX_SAMPLES {
        return Err(AppendError::Full);
    }
    // About two bytes per sample for ordinary series; grows if needed.
    let mut a = XorAppender::with_capacity(24 + samples.len() * 2);
    for &(t, v) in samples {
        a.append(t, v)?;
    }
    Ok(a.into_bytes())
}

/// Reads bits most significant first out of a byte slice.
///
/// `acc` holds the next bits left-aligned; its top `avail` bits are valid.
/// Bits below them are either zero or the stream's own following bits, so
/// re-reading overlapping bytes with OR is harmless (the branch-free refill
/// relies on that). Invariant: bits consumed = `8 * pos - avail`.
#[derive(Debug, Clone)]
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            acc: 0,
            avail: 0,
        }
    }

    /// Tops `acc` up to at least 56 valid bits, or to the end of the data.
    fn refill(&mut self) {
        if let Some(word) = self.data.get(self.pos..).and_then(<[u8]>::first_chunk::<8>) {
            self.acc |= u64::from_be_bytes(*word) >> self.avail;
            self.pos += ((63 - self.avail) >> 3) as usize;
            // Lands in 56..=63: exactly the whole bytes just taken.
            self.avail |= 0b11_1000;
        } else {
            while self.avail <= 56 {
                let Some(&byte) = self.data.get(self.pos) else {
                    break;
                };
                self.acc |= u64::from(byte) << (56 - self.avail);
                self.avail += 8;
                self.pos += 1;
            }
        }
    }

    /// Makes `n <= 56` bits available if the data has them.
    #[inline]
    fn fill(&mut self, n: u32) {
        if self.avail < n {
            self.refill();
        }
    }

    /// Drops `n` bits; requires `n <= avail` and `n < 64`.
    #[inline]
    fn skip(&mut self, n: u32) {
        self.acc <<= n;
        self.avail -= n;
    }

    /// Reads `1 <= n <= 56` bits, or `None` at the end of the data.
    #[inline]
    fn read(&mut self, n: u32) -> Option<u64> {
        self.fill(n);
        if self.avail < n {
            return None;
        }
        let v = self.acc >> (64 - n);
        self.skip(n);
        Some(v)
    }

    /// Reads `1 <= n <= 64` bits.
    #[inline]
    fn read_wide(&mut self, n: u32) -> Option<u64> {
        if n <= 56 {
            return self.read(n);
        }
        let hi = self.read(n - 32)?;
        let lo = self.read(32)?;
        Some((hi << 32) | lo)
    }

    fn bits_consumed(&self) -> usize {
        self.pos * 8 - self.avail as usize
    }
}

/// Decoding state machine shared by [`ChunkIter`], [`decode_all`] and
/// [`XorAppender::from_bytes`].
#[derive(Debug, Clone)]
struct Decoder<'a> {
    r: BitReader<'a>,
    /// Sample count from the header; `s.count` counts samples decoded.
    total: u16,
    s: State,
}

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, ChunkError> {
        let Some((header, data)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(ChunkError::MissingHeader { len: bytes.len() });
        };
        Ok(Self {
            r: BitReader::new(data),
            total: u16::from_be_bytes(*header),
            s: State::default(),
        })
    }

    /// Most samples the header and the length together allow: after the
    /// first, every sample takes at least two bits.
    fn capacity_hint(&self) -> usize {
        let bits = self.r.data.len() * 8;
        let possible = if bits < MIN_FIRST_SAMPLE_BITS {
            0
        } else {
            1 + (bits - MIN_FIRST_SAMPLE_BITS) / 2
        };
        usize::from(self.total).min(possible)
    }

    fn truncated(&self) -> ChunkError {
        ChunkError::Truncated {
            index: usize::from(self.s.count),
            count: usize::from(self.total),
        }
    }

    #[inline]
    fn read(&mut self, n: u32) -> Result<u64, ChunkError> {
        self.r.read(n).ok_or_else(|| self.truncated())
    }

    #[inline]
    fn read_wide(&mut self, n: u32) -> Result<u64, ChunkError> {
        self.r.read_wide(n).ok_or_else(|| self.truncated())
    }

    /// Fails with `Truncated` unless `n` bits are available (after a fill).
    #[inline]
    fn need(&self, n: u32) -> Result<(), ChunkError> {
        if self.r.avail < n {
            Err(self.truncated())
        } else {
            Ok(())
        }
    }

    fn read_varint(&mut self) -> Result<u64, ChunkError> {
        let mut x = 0u64;
        for i in 0..MAX_VARINT_BYTES {
            let byte = self.read(8)?;
            // The tenth byte may only carry bit 63.
            if i == MAX_VARINT_BYTES - 1 && byte > 1 {
                break;
            }
            x |= (byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err(ChunkError::BadVarint {
            index: usize::from(self.s.count),
        })
    }

    fn read_dod(&mut self) -> Result<i64, ChunkError> {
        self.r.fill(24);
        let acc = self.r.acc;
        // Bits past the data read as zero, so the count of leading ones is
        // never longer than the real prefix; `need` then checks the rest.
        match (!acc).leading_zeros() {
            0 => {
                self.need(1)?;
                self.r.skip(1);
                Ok(0)
            }
            1 => {
                self.need(16)?;
                self.r.skip(16);
                Ok(sign_extend((acc >> 48) & mask(14), 14))
            }
            2 => {
                self.need(20)?;
                self.r.skip(20);
                Ok(sign_extend((acc >> 44) & mask(17), 17))
            }
            3 => {
                self.need(24)?;
                self.r.skip(24);
                Ok(sign_extend((acc >> 40) & mask(20), 20))
            }
            _ => {
                self.need(4)?;
                self.r.skip(4);
                Ok(self.read_wide(64)? as i64)
            }
        }
    }

    fn read_value(&mut self) -> Result<u64, ChunkError> {
        self.r.fill(13);
        let acc = self.r.acc;
        if acc >> 63 == 0 {
            self.need(1)?;
            self.r.skip(1);
            return Ok(self.s.bits);
        }
        let (payload, trail) = if (acc >> 62) & 1 == 0 {
            self.need(2)?;
            self.r.skip(2);
            let Some(w) = self.s.window else {
                return Err(ChunkError::MissingWindow {
                    index: usize::from(self.s.count),
                });
            };
            (self.read_wide(w.sig())?, w.trail)
        } else {
            self.need(13)?;
            let lead = ((acc >> 57) & 31) as u32;
            let sig = match ((acc >> 51) & 63) as u32 {
                0 => 64,
                s => s,
            };
            if lead + sig > 64 {
                return Err(ChunkError::BadWindow {
                    index: usize::from(self.s.count),
                    leading: lead,
                    significant: sig,
                });
            }
            self.r.skip(13);
            let trail = 64 - lead - sig;
            self.s.window = Some(Window { lead, trail });
            (self.read_wide(sig)?, trail)
        };
        Ok(self.s.bits ^ (payload << trail))
    }

    /// Decodes the next sample; the caller checks `s.count < total`.
    fn next_sample(&mut self) -> Result<(i64, f64), ChunkError> {
        let (t, bits) = if self.s.count == 0 {
            let t = unzigzag(self.read_varint()?);
            let bits = self.read_wide(64)?;
            self.s.first_t = t;
            (t, bits)
        } else {
            let delta = if self.s.count == 1 {
                self.read_varint()?
            } else {
                self.s.delta.wrapping_add(self.read_dod()? as u64)
            };
            let prev = self.s.t;
            let t = match prev.checked_add_unsigned(delta) {
                Some(t) if delta != 0 => t,
                _ => {
                    return Err(ChunkError::NonIncreasing {
                        index: usize::from(self.s.count),
                        prev,
                    });
                }
            };
            self.s.delta = delta;
            (t, self.read_value()?)
        };
        self.s.t = t;
        self.s.bits = bits;
        self.s.count += 1;
        Ok((t, f64::from_bits(bits)))
    }

    /// After the last sample: rejects whole surplus bytes and returns the
    /// number of stream bits used.
    fn finish(&self) -> Result<usize, ChunkError> {
        let used = self.r.bits_consumed();
        let extra = self.r.data.len().saturating_sub(used.div_ceil(8));
        if extra > 0 {
            return Err(ChunkError::TrailingBytes { extra });
        }
        Ok(used)
    }
}

/// Iterator over the samples of an encoded chunk, from [`decode`].
///
/// Yields each sample in order, then one error if whole bytes follow the
/// last sample. After the first error it yields nothing more.
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    d: Decoder<'a>,
    done: bool,
}

impl ChunkIter<'_> {
    /// Sample count announced by the chunk header.
    #[must_use]
    pub fn header_count(&self) -> usize {
        usize::from(self.d.total)
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.d.s.count < self.d.total {
            let r = self.d.next_sample();
            self.done = r.is_err();
            return Some(r);
        }
        self.done = true;
        self.d.finish().err().map(Err)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        // One more than the samples left, for a possible trailing error.
        (0, Some(usize::from(self.d.total - self.d.s.count) + 1))
    }
}

impl FusedIterator for ChunkIter<'_> {}

/// Starts decoding a chunk; only the header is read here.
///
/// # Errors
///
/// [`ChunkError::MissingHeader`] when `bytes` is shorter than the header;
/// every other problem comes out of the iterator.
pub fn decode(bytes: &[u8]) -> Result<ChunkIter<'_>, ChunkError> {
    Ok(ChunkIter {
        d: Decoder::new(bytes)?,
        done: false,
    })
}

/// Decodes a whole chunk, failing on the first problem.
///
/// # Errors
///
/// The first [`ChunkError`] met, including surplus bytes after the last
/// sample.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let mut d = Decoder::new(bytes)?;
    let mut out = Vec::with_capacity(d.capacity_hint());
    while d.s.count < d.total {
        out.push(d.next_sample()?);
    }
    d.finish()?;
    Ok(out)
}
