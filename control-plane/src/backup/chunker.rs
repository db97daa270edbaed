//! Content-defined chunking of a stream (FastCDC 2020), fed in whatever pieces the network
//! delivers: the same bytes always give the same chunks, so unchanged data (and data shifted by
//! an insertion) dedups against earlier snapshots.

use fastcdc::v2020::FastCDC;

/// Smallest chunk, except a stream's last.
pub const MIN_CHUNK: usize = 256 << 10;
/// Average chunk.
pub const AVG_CHUNK: usize = 1 << 20;
/// Largest chunk.
pub const MAX_CHUNK: usize = 4 << 20;

/// Buffered bytes before cutting: enough that every cut but the last is final.
const CUT_AT: usize = 2 * MAX_CHUNK;

/// Cuts one stream (one file) into chunks.
#[derive(Debug, Default)]
pub struct Chunker {
    pending: Vec<u8>,
}

impl Chunker {
    /// A chunker for a new stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns the chunks that are now final.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() < CUT_AT {
            return Vec::new();
        }
        self.cut(false)
    }

    /// Ends the stream; returns the remaining chunks.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.cut(true)
    }

    /// Bytes held, not yet in a chunk.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn cut(&mut self, at_end: bool) -> Vec<Vec<u8>> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let cuts: Vec<(usize, usize)> =
            FastCDC::new(&self.pending, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
                .map(|c| (c.offset, c.length))
                .collect();
        // Without the end of the stream, the last cut is only where the bytes ran out.
        let keep = if at_end {
            cuts.len()
        } else {
            cuts.len().saturating_sub(1)
        };
        let chunks: Vec<Vec<u8>> = cuts[..keep]
            .iter()
            .map(|&(offset, length)| self.pending[offset..offset + length].to_vec())
            .collect();
        let consumed: usize = chunks.iter().map(Vec::len).sum();
        self.pending.drain(..consumed);
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize, seed: u64) -> Vec<u8> {
        // xorshift: incompressible, repeatable.
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn chunk_in_pieces(bytes: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut chunker = Chunker::new();
        let mut out = Vec::new();
        for part in bytes.chunks(piece.max(1)) {
            out.extend(chunker.push(part));
        }
        out.extend(chunker.finish());
        out
    }

    #[test]
    fn chunks_are_bounded_and_cover_the_stream() {
        let bytes = data(20 << 20, 7);
        let chunks = chunk_in_pieces(&bytes, 256 << 10);
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        for c in &chunks[..chunks.len() - 1] {
            assert!((MIN_CHUNK..=MAX_CHUNK).contains(&c.len()), "{}", c.len());
        }
        assert_eq!(chunks.concat(), bytes);
        assert!(chunk_in_pieces(&[], 10).is_empty());
        assert_eq!(chunk_in_pieces(b"tiny", 1), vec![b"tiny".to_vec()]);
    }

    #[test]
    fn an_insertion_changes_only_the_chunks_around_it() {
        let before = data(12 << 20, 3);
        let mut after = before.clone();
        after.splice(5 << 20..5 << 20, b"inserted".iter().copied());
        let a = chunk_in_pieces(&before, 64 << 10);
        let b = chunk_in_pieces(&after, 64 << 10);
        let shared = b.iter().filter(|c| a.contains(c)).count();
        assert!(
            shared + 2 >= b.len(),
            "{shared} of {} chunks shared",
            b.len()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn the_pieces_the_network_delivers_do_not_change_the_chunks(piece in 1usize..3_000_000, seed in 1u64..1000) {
            let bytes = data(9 << 20, seed);
            let whole = chunk_in_pieces(&bytes, bytes.len());
            prop_assert_eq!(chunk_in_pieces(&bytes, piece), whole);
        }
    }
}
