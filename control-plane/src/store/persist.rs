//! Byte layouts of what the store keeps in sled. Hand-written and versioned where they may
//! outlive a release; every decoder returns `None` on malformed bytes instead of panicking.
//!
//! | database / tree | key | value |
//! | --- | --- | --- |
//! | `wal/` `wal` | `w` + u64 BE WAL sequence | [`WalEntry`] |
//! | `wal/` `wal` | `a` + agent name | [`Watermark`]: journal id, highest stored agent sequence |
//! | `chunks/` `meta` | `checkpoint` | u64 BE: WAL sequence up to which chunks hold everything |
//! | `chunks/` `meta` | `segmented-from-day` | i64 BE: first day whose chunk groups each lie within one 10-minute segment |
//! | `chunks/` `series` | u32 BE series id | label pairs ([`encode_labels`]) |
//! | `chunks/` `chunks-<day>` | u32 BE series id + i64 min_t (sign-flipped BE) | chunk group: max_t, Gorilla chunks |

use aisemble_shared::wire::Compression;

/// Format byte of WAL entries.
const WAL_FORMAT_V1: u8 = 1;

/// One committed batch, as written to the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalEntry {
    /// Agent identity.
    pub agent: String,
    /// The agent's journal id.
    pub journal_id: u64,
    /// Records with a sequence number at or above this are new; older ones were stored before.
    pub first_new_seq: u64,
    /// The batch's last sequence number.
    pub last_seq: u64,
    /// Compression of `payload`.
    pub compression: Compression,
    /// The batch payload exactly as the agent sent it.
    pub payload: Vec<u8>,
}

/// Highest stored sequence number of an agent's journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// Which journal the sequence numbers belong to.
    pub journal_id: u64,
    /// Highest sequence number stored.
    pub upto: u64,
}

/// WAL key of an entry.
pub(super) fn wal_key(seq: u64) -> [u8; 9] {
    let mut key = [b'w'; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// WAL sequence of an entry key.
pub(super) fn wal_seq(key: &[u8]) -> Option<u64> {
    match key {
        [b'w', rest @ ..] => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

/// Key of an agent's watermark.
pub(super) fn watermark_key(agent: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(agent.len() + 1);
    key.push(b'a');
    key.extend_from_slice(agent.as_bytes());
    key
}

impl Watermark {
    /// 16 bytes: journal id, upto.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.journal_id.to_be_bytes());
        out[8..].copy_from_slice(&self.upto.to_be_bytes());
        out
    }

    /// Reads [`Watermark::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let (id, upto) = bytes.split_at(8);
        Some(Self {
            journal_id: u64::from_be_bytes(id.try_into().ok()?),
            upto: u64::from_be_bytes(upto.try_into().ok()?),
        })
    }
}

impl WalEntry {
    /// `format u8 | agent len u16 | agent | journal u64 | first_new u64 | last u64 | compression u8 | payload`.
    pub fn encode(&self) -> Vec<u8> {
        let agent = self.agent.as_bytes();
        let mut out = Vec::with_capacity(32 + agent.len() + self.payload.len());
        out.push(WAL_FORMAT_V1);
        out.extend_from_slice(&(agent.len() as u16).to_be_bytes());
        out.extend_from_slice(agent);
        out.extend_from_slice(&self.journal_id.to_be_bytes());
        out.extend_from_slice(&self.first_new_seq.to_be_bytes());
        out.extend_from_slice(&self.last_seq.to_be_bytes());
        out.push(match self.compression {
            Compression::Zstd => 1,
            _ => 0,
        });
        out.extend_from_slice(&self.payload);
        out
    }

    /// Reads [`WalEntry::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader(bytes);
        if reader.u8()? != WAL_FORMAT_V1 {
            return None;
        }
        let agent_len = usize::from(reader.u16()?);
        let agent = String::from_utf8(reader.take(agent_len)?.to_vec()).ok()?;
        let journal_id = reader.u64()?;
        let first_new_seq = reader.u64()?;
        let last_seq = reader.u64()?;
        let compression = match reader.u8()? {
            0 => Compression::None,
            1 => Compression::Zstd,
            _ => return None,
        };
        Some(Self {
            agent,
            journal_id,
            first_new_seq,
            last_seq,
            compression,
            payload: reader.0.to_vec(),
        })
    }
}

/// `u16 count`, then per pair `u16 len | name | u32 len | value`.
pub(super) fn encode_labels<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&(pairs.len() as u16).to_be_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Reads [`encode_labels`]'s output.
pub(super) fn decode_labels(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let mut reader = Reader(bytes);
    let count = reader.u16()?;
    let mut pairs = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name_len = usize::from(reader.u16()?);
        let name = std::str::from_utf8(reader.take(name_len)?).ok()?.to_owned();
        let value_len = reader.u32()? as usize;
        let value = std::str::from_utf8(reader.take(value_len)?)
            .ok()?
            .to_owned();
        pairs.push((name, value));
    }
    reader.0.is_empty().then_some(pairs)
}

/// Key of a chunk: series id, then its first timestamp, both ordered as unsigned big-endian.
pub(super) fn chunk_key(series: u32, min_t: i64) -> [u8; 12] {
    let mut key = [0; 12];
    key[..4].copy_from_slice(&series.to_be_bytes());
    key[4..].copy_from_slice(&((min_t as u64) ^ (1 << 63)).to_be_bytes());
    key
}

/// Series id and first timestamp of a chunk key.
#[cfg(test)]
pub(super) fn parse_chunk_key(key: &[u8]) -> Option<(u32, i64)> {
    let key: &[u8; 12] = key.try_into().ok()?;
    let series = u32::from_be_bytes(key[..4].try_into().ok()?);
    let min_t = (u64::from_be_bytes(key[4..].try_into().ok()?) ^ (1 << 63)) as i64;
    Some((series, min_t))
}

/// Value of a chunk group (the chunks of one series written by one checkpoint, within one day):
/// `max_t i64 | count u32 | (len u32 | chunk)*`.
pub(super) fn chunk_group_value<'a>(
    max_t: i64,
    chunks: impl ExactSizeIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&max_t.to_be_bytes());
    out.extend_from_slice(&(chunks.len() as u32).to_be_bytes());
    for chunk in chunks {
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// Last timestamp and the chunks of a chunk group value.
pub(super) fn parse_chunk_group(value: &[u8]) -> Option<(i64, Vec<&[u8]>)> {
    let mut reader = Reader(value);
    let max_t = reader.u64()? as i64;
    let count = reader.u32()? as usize;
    // Each chunk takes at least its 4-byte length: bounds the allocation by the input.
    let mut chunks = Vec::with_capacity(count.min(value.len() / 4));
    for _ in 0..count {
        let len = reader.u32()? as usize;
        chunks.push(reader.take(len)?);
    }
    reader.0.is_empty().then_some((max_t, chunks))
}

/// Name of the chunk tree of a UTC day.
pub(super) fn day_tree_name(day: i64) -> String {
    format!("chunks-{day}")
}

/// The day of a chunk tree name.
pub(super) fn parse_day_tree_name(name: &[u8]) -> Option<i64> {
    std::str::from_utf8(name)
        .ok()?
        .strip_prefix("chunks-")?
        .parse()
        .ok()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn wal_entries_roundtrip(agent in "[a-z0-9.-]{1,64}", journal_id: u64, first_new_seq: u64, last_seq: u64, zstd: bool, payload in prop::collection::vec(any::<u8>(), 0..100)) {
            let entry = WalEntry { agent, journal_id, first_new_seq, last_seq, compression: if zstd { Compression::Zstd } else { Compression::None }, payload };
            prop_assert_eq!(WalEntry::decode(&entry.encode()), Some(entry));
        }

        #[test]
        fn labels_roundtrip(pairs in prop::collection::vec(("[a-z_]{1,10}", ".{0,20}"), 0..8)) {
            let encoded = encode_labels(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            prop_assert_eq!(decode_labels(&encoded), Some(pairs));
        }

        #[test]
        fn chunk_keys_sort_like_their_numbers(a: (u32, i64), b: (u32, i64)) {
            prop_assert_eq!(chunk_key(a.0, a.1).cmp(&chunk_key(b.0, b.1)), a.cmp(&b));
            prop_assert_eq!(parse_chunk_key(&chunk_key(a.0, a.1)), Some(a));
        }

        #[test]
        fn decoders_survive_garbage(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = WalEntry::decode(&bytes);
            let _ = decode_labels(&bytes);
            let _ = Watermark::decode(&bytes);
            let _ = parse_chunk_group(&bytes);
            let _ = parse_chunk_key(&bytes);
        }
    }

    #[test]
    fn chunk_groups_roundtrip() {
        let chunks: [&[u8]; 3] = [b"abc", b"", b"defg"];
        let value = chunk_group_value(42, chunks.iter().copied());
        assert_eq!(parse_chunk_group(&value), Some((42, chunks.to_vec())));
        assert_eq!(parse_chunk_group(&value[..value.len() - 1]), None);
    }

    #[test]
    fn keys() {
        assert_eq!(wal_seq(&wal_key(42)), Some(42));
        assert_eq!(
            parse_day_tree_name(day_tree_name(20_000).as_bytes()),
            Some(20_000)
        );
        assert_eq!(parse_day_tree_name(b"series"), None);
        let w = Watermark {
            journal_id: 7,
            upto: 9,
        };
        assert_eq!(Watermark::decode(&w.encode()), Some(w));
    }
}
