//! Gorilla chunk encoding (Pelkonen et al., VLDB 2015), the scheme Prometheus' XOR chunks use.
//!
//! Layout: `u16` big-endian sample count, then a bit stream, most significant bit first:
//!
//! - sample 0: timestamp as a zigzag varint (in 8-bit groups), value as its raw 64 bits;
//! - sample 1: timestamp delta as an unsigned varint, value XOR-encoded;
//! - sample n ≥ 2: delta-of-delta `dod` of the timestamps: `0` if zero, else `10`+14 bits,
//!   `110`+17 bits, `1110`+20 bits (two's complement) or `1111`+64 bits; value XOR-encoded.
//!
//! XOR encoding against the previous value: `0` if equal; else `10` + the meaningful bits when
//! they fit the previous leading/trailing-zero window, or `11` + 5 bits of leading zeros + 6 bits
//! of meaningful-bit count (64 written as 0) + the meaningful bits.
//!
//! Values round-trip bit-exactly (NaN payloads such as Prometheus' staleness marker included).
//! Timestamps must strictly increase; a delta or delta-of-delta that does not fit `i64` is
//! refused. Decoding trusts nothing: the count bounds the work and every read is bounds-checked.

/// Most samples one chunk holds (the count is a `u16`).
pub const MAX_SAMPLES: usize = u16::MAX as usize;

const HEADER_BYTES: usize = 2;

/// Why a sample was not appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The timestamp is not after the previous one.
    #[error("timestamp {got} is not after the previous one, {last}")]
    OutOfOrder {
        /// Previous timestamp.
        last: i64,
        /// Offered timestamp.
        got: i64,
    },
    /// The chunk holds [`MAX_SAMPLES`].
    #[error("chunk is full")]
    Full,
    /// The gap from the previous timestamp does not fit the encoding.
    #[error("timestamp gap does not fit in 64 bits")]
    GapTooLarge,
}

/// Why bytes are not a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The bytes end before the stated number of samples.
    #[error("chunk truncated")]
    Truncated,
    /// A field holds an impossible value.
    #[error("chunk corrupt")]
    Corrupt,
}

/// Builds a chunk sample by sample; [`XorAppender::bytes`] is a valid chunk at any moment.
#[derive(Debug, Clone)]
pub struct XorAppender {
    bits: BitWriter,
    count: usize,
    first_t: i64,
    last_t: i64,
    last_delta: i64,
    last_v: u64,
    leading: u32,
    trailing: u32,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    /// An empty chunk.
    pub fn new() -> Self {
        Self {
            bits: BitWriter::new(),
            count: 0,
            first_t: 0,
            last_t: 0,
            last_delta: 0,
            last_v: 0,
            leading: u32::MAX,
            trailing: 0,
        }
    }

    /// Appends a sample.
    ///
    /// # Errors
    /// When `t` is not after the previous timestamp, the chunk is full, or the gap is too large.
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), AppendError> {
        if self.count >= MAX_SAMPLES {
            return Err(AppendError::Full);
        }
        let v = v.to_bits();
        match self.count {
            0 => {
                self.bits.write_varint(zigzag(t));
                self.bits.write(v, 64);
                self.first_t = t;
            }
            _ => {
                if t <= self.last_t {
                    return Err(AppendError::OutOfOrder {
                        last: self.last_t,
                        got: t,
                    });
                }
                let delta = t.checked_sub(self.last_t).ok_or(AppendError::GapTooLarge)?;
                if self.count == 1 {
                    self.bits.write_varint(delta as u64);
                } else {
                    let dod = delta
                        .checked_sub(self.last_delta)
                        .ok_or(AppendError::GapTooLarge)?;
                    self.write_dod(dod);
                }
                self.write_value(v);
                self.last_delta = delta;
            }
        }
        self.last_t = t;
        self.last_v = v;
        self.count += 1;
        self.bits.set_count(self.count as u16);
        Ok(())
    }

    fn write_dod(&mut self, dod: i64) {
        let fits = |bits: u32| {
            let bound = 1i64 << (bits - 1);
            (-bound + 1..bound).contains(&dod)
        };
        match dod {
            0 => self.bits.write(0, 1),
            _ if fits(14) => {
                self.bits.write(0b10, 2);
                self.bits.write(dod as u64 & mask(14), 14);
            }
            _ if fits(17) => {
                self.bits.write(0b110, 3);
                self.bits.write(dod as u64 & mask(17), 17);
            }
            _ if fits(20) => {
                self.bits.write(0b1110, 4);
                self.bits.write(dod as u64 & mask(20), 20);
            }
            _ => {
                self.bits.write(0b1111, 4);
                self.bits.write(dod as u64, 64);
            }
        }
    }

    fn write_value(&mut self, v: u64) {
        let xor = v ^ self.last_v;
        if xor == 0 {
            self.bits.write(0, 1);
            return;
        }
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros();
        if self.leading != u32::MAX && leading >= self.leading && trailing >= self.trailing {
            let significant = 64 - self.leading - self.trailing;
            self.bits.write(0b10, 2);
            self.bits.write(xor >> self.trailing, significant);
        } else {
            let significant = 64 - leading - trailing;
            self.bits.write(0b11, 2);
            self.bits.write(u64::from(leading), 5);
            self.bits.write(u64::from(significant % 64), 6);
            self.bits.write(xor >> trailing, significant);
            self.leading = leading;
            self.trailing = trailing;
        }
    }

    /// Samples appended.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no sample was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// First timestamp.
    pub fn first_timestamp(&self) -> Option<i64> {
        (self.count > 0).then_some(self.first_t)
    }

    /// Last timestamp.
    pub fn last_timestamp(&self) -> Option<i64> {
        (self.count > 0).then_some(self.last_t)
    }

    /// Last value.
    pub fn last_value(&self) -> Option<f64> {
        (self.count > 0).then_some(f64::from_bits(self.last_v))
    }

    /// The encoded chunk.
    pub fn bytes(&self) -> &[u8] {
        &self.bits.bytes
    }

    /// Resumes appending to an encoded chunk.
    ///
    /// # Errors
    /// When the bytes are not a valid chunk.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChunkError> {
        let mut iter = decode(bytes)?;
        let mut appender = Self::new();
        while let Some(sample) = iter.next() {
            let (t, v) = sample?;
            if appender.count == 0 {
                appender.first_t = t;
            }
            appender.last_t = t;
            appender.last_v = v.to_bits();
            appender.count += 1;
        }
        appender.last_delta = iter.delta;
        appender.leading = iter.leading;
        appender.trailing = iter.trailing;
        let used_bits = iter.bits.position;
        let mut out = bytes[..HEADER_BYTES + used_bits.div_ceil(8)].to_vec();
        if used_bits % 8 != 0
            && let Some(last) = out.last_mut()
        {
            // Clear padding so later writes can OR into it.
            *last &= !(0xffu8 >> (used_bits % 8));
        }
        appender.bits = BitWriter {
            bytes: out,
            bit: used_bits % 8,
        };
        Ok(appender)
    }
}

/// Encodes samples into one chunk.
///
/// # Errors
/// As [`XorAppender::append`].
pub fn encode(samples: &[(i64, f64)]) -> Result<Vec<u8>, AppendError> {
    let mut appender = XorAppender::new();
    for &(t, v) in samples {
        appender.append(t, v)?;
    }
    Ok(appender.bits.bytes)
}

/// Iterates a chunk's samples.
///
/// # Errors
/// When the header is missing.
pub fn decode(bytes: &[u8]) -> Result<ChunkIter<'_>, ChunkError> {
    let (header, stream) = bytes
        .split_first_chunk::<HEADER_BYTES>()
        .ok_or(ChunkError::Truncated)?;
    Ok(ChunkIter {
        bits: BitReader {
            bytes: stream,
            position: 0,
        },
        remaining: usize::from(u16::from_be_bytes(*header)),
        index: 0,
        t: 0,
        delta: 0,
        v: 0,
        leading: u32::MAX,
        trailing: 0,
        failed: false,
    })
}

/// Decodes a whole chunk.
///
/// # Errors
/// When the bytes are not a valid chunk.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    decode(bytes)?.collect()
}

/// Iterator over a chunk's samples; stops after the first error.
#[derive(Debug)]
pub struct ChunkIter<'a> {
    bits: BitReader<'a>,
    remaining: usize,
    index: usize,
    t: i64,
    delta: i64,
    v: u64,
    leading: u32,
    trailing: u32,
    failed: bool,
}

impl ChunkIter<'_> {
    fn next_sample(&mut self) -> Result<(i64, f64), ChunkError> {
        match self.index {
            0 => {
                self.t = unzigzag(self.bits.read_varint()?);
                self.v = self.bits.read(64)?;
            }
            _ => {
                let delta = if self.index == 1 {
                    i64::try_from(self.bits.read_varint()?).map_err(|_| ChunkError::Corrupt)?
                } else {
                    self.delta
                        .checked_add(self.read_dod()?)
                        .ok_or(ChunkError::Corrupt)?
                };
                self.t = self.t.checked_add(delta).ok_or(ChunkError::Corrupt)?;
                self.delta = delta;
                self.read_value()?;
            }
        }
        self.index += 1;
        Ok((self.t, f64::from_bits(self.v)))
    }

    fn read_dod(&mut self) -> Result<i64, ChunkError> {
        let mut prefix = 0;
        while prefix < 4 && self.bits.read(1)? == 1 {
            prefix += 1;
        }
        let width = match prefix {
            0 => return Ok(0),
            1 => 14,
            2 => 17,
            3 => 20,
            _ => return Ok(self.bits.read(64)? as i64),
        };
        Ok(sign_extend(self.bits.read(width)?, width))
    }

    fn read_value(&mut self) -> Result<(), ChunkError> {
        if self.bits.read(1)? == 0 {
            return Ok(());
        }
        if self.bits.read(1)? == 1 {
            self.leading = self.bits.read(5)? as u32;
            let significant = match self.bits.read(6)? as u32 {
                0 => 64,
                n => n,
            };
            if self.leading + significant > 64 {
                return Err(ChunkError::Corrupt);
            }
            self.trailing = 64 - self.leading - significant;
        } else if self.leading == u32::MAX {
            // Reusing a window that was never set.
            return Err(ChunkError::Corrupt);
        }
        let significant = 64 - self.leading - self.trailing;
        let bits = self.bits.read(significant)?;
        self.v ^= bits.checked_shl(self.trailing).unwrap_or(0);
        Ok(())
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 || self.failed {
            return None;
        }
        self.remaining -= 1;
        let sample = self.next_sample();
        self.failed = sample.is_err();
        Some(sample)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

fn sign_extend(value: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((value << shift) as i64) >> shift
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[derive(Debug, Clone)]
struct BitWriter {
    /// Header, then the stream; the last byte is partly filled when `bit != 0`.
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full, or there is none).
    bit: usize,
}

impl BitWriter {
    fn new() -> Self {
        let mut bytes = Vec::with_capacity(HEADER_BYTES + 160);
        bytes.extend_from_slice(&[0; HEADER_BYTES]);
        Self { bytes, bit: 0 }
    }

    fn set_count(&mut self, count: u16) {
        self.bytes[..HEADER_BYTES].copy_from_slice(&count.to_be_bytes());
    }

    /// Writes the low `n` bits of `value`, most significant first.
    fn write(&mut self, value: u64, mut n: u32) {
        while n > 0 {
            if self.bit == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.bit as u32;
            let take = free.min(n);
            let chunk = ((value >> (n - take)) & mask(take)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (free - take);
            }
            self.bit = (self.bit + take as usize) % 8;
            n -= take;
        }
    }

    fn write_varint(&mut self, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.write(u64::from(byte), 8);
                return;
            }
            self.write(u64::from(byte | 0x80), 8);
        }
    }
}

#[derive(Debug)]
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Bits consumed.
    position: usize,
}

impl BitReader<'_> {
    fn read(&mut self, mut n: u32) -> Result<u64, ChunkError> {
        if self.position + n as usize > self.bytes.len() * 8 {
            return Err(ChunkError::Truncated);
        }
        let mut out = 0u64;
        while n > 0 {
            let byte = self.bytes[self.position / 8];
            let used = (self.position % 8) as u32;
            let available = 8 - used;
            let take = available.min(n);
            let bits = (u64::from(byte) >> (available - take)) & mask(take);
            out = (out << take) | bits;
            self.position += take as usize;
            n -= take;
        }
        Ok(out)
    }

    fn read_varint(&mut self) -> Result<u64, ChunkError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.read(8)?;
            out |= (byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(ChunkError::Corrupt)
    }
}

#[cfg(test)]
mod tests;
