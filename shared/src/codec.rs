//! The one module that turns protocol values into bytes and back.
//!
//! Encoding is bincode 2.0.1 (pinned; see SPEC §3) in serde mode, varint integers, behind the
//! functions below so it can be swapped for another format in one place.
//!
//! Frame layout on the stream: `u32` big-endian length of the body, then the body:
//! `varint u16 protocol version` followed by the message. The length is checked against the
//! receiver's maximum before anything is allocated. Journal records carry their own format byte
//! because they outlive a process (they sit in sled across upgrades).
//!
//! Decoding never panics on any input; it returns [`CodecError`]. Decoding is also bounded: no
//! length prefix inside a body can make the decoder allocate more than [`DECODE_LIMIT_BYTES`].

use bytes::{Buf, Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use std::{borrow::Cow, cell::RefCell};

use serde::Deserialize;

use crate::wire::{
    Compression, JournalEntry, JournalEntryRef, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, Record,
    RecordRef,
};

/// Default largest frame body a receiver accepts.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 8 << 20;

/// Size of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Upper bound on what one decode may allocate, and on a decompressed batch payload.
pub const DECODE_LIMIT_BYTES: usize = 64 << 20;

/// Format byte that starts every journal record.
const RECORD_FORMAT_V1: u8 = 1;

/// zstd level for batch payloads: fast, and metric text compresses well even at 1.
const ZSTD_LEVEL: i32 = 1;

/// Why bytes could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The length prefix announces a body larger than the receiver accepts.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// Receiver's maximum.
        max: u32,
    },
    /// The frame body is empty.
    #[error("empty frame")]
    Empty,
    /// The envelope's protocol version is outside the supported range.
    #[error("protocol version {got} is not supported (supported: {min} to {max})")]
    UnsupportedVersion {
        /// Version in the envelope.
        got: u16,
        /// Oldest supported.
        min: u16,
        /// Newest supported.
        max: u16,
    },
    /// The bytes are not a valid encoding of the expected value.
    #[error("undecodable {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// Bytes were left over after the value.
    #[error("{extra} unexpected trailing bytes after {what}")]
    Trailing {
        /// What was decoded.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A journal record starts with an unknown format byte.
    #[error("unknown record format {0}")]
    RecordFormat(u8),
    /// A value could not be encoded (for instance, larger than the maximum frame).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A compressed payload is corrupt or decompresses past [`DECODE_LIMIT_BYTES`].
    #[error("bad compressed payload: {0}")]
    Decompress(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT_BYTES>()
}

fn encode_into<T: Serialize>(
    value: &T,
    out: &mut Vec<u8>,
    what: &'static str,
) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(|error| CodecError::Encode {
            what,
            reason: error.to_string(),
        })
}

fn decode_prefix<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<(T, usize), CodecError> {
    bincode::serde::decode_from_slice(bytes, config()).map_err(|error| CodecError::Decode {
        what,
        reason: error.to_string(),
    })
}

fn decode_exact_borrowed<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<T, CodecError> {
    let (value, used): (T, usize) = bincode::serde::borrow_decode_from_slice(bytes, config())
        .map_err(|error| CodecError::Decode {
            what,
            reason: error.to_string(),
        })?;
    match bytes.len() - used {
        0 => Ok(value),
        extra => Err(CodecError::Trailing { what, extra }),
    }
}

fn decode_exact<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, CodecError> {
    let (value, used) = decode_prefix(bytes, what)?;
    match bytes.len() - used {
        0 => Ok(value),
        extra => Err(CodecError::Trailing { what, extra }),
    }
}

/// Encodes `message` as a complete frame (length prefix, envelope, message).
///
/// # Errors
/// When the body would exceed `max_frame_bytes`.
pub fn encode_frame<T: Serialize>(
    message: &T,
    max_frame_bytes: u32,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    encode_into(&PROTOCOL_VERSION, &mut out, "frame envelope")?;
    encode_into(message, &mut out, "message")?;
    let body_len = out.len() - FRAME_HEADER_BYTES;
    match u32::try_from(body_len) {
        Ok(len) if len <= max_frame_bytes => {
            out[..FRAME_HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
            Ok(out)
        }
        _ => Err(CodecError::Encode {
            what: "message",
            reason: format!("{body_len} bytes exceed the maximum frame of {max_frame_bytes} bytes"),
        }),
    }
}

/// Reads a frame's length prefix; the caller then reads exactly that many body bytes.
///
/// # Errors
/// [`CodecError::TooLarge`] when the body would exceed `max_frame_bytes`, [`CodecError::Empty`]
/// for a zero length.
pub fn frame_body_len(
    header: [u8; FRAME_HEADER_BYTES],
    max_frame_bytes: u32,
) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(header);
    if len == 0 {
        return Err(CodecError::Empty);
    }
    if len > max_frame_bytes {
        return Err(CodecError::TooLarge {
            len: u64::from(len),
            max: max_frame_bytes,
        });
    }
    usize::try_from(len).map_err(|_| CodecError::TooLarge {
        len: u64::from(len),
        max: max_frame_bytes,
    })
}

/// The protocol version in a frame body's envelope, checked against the supported range.
///
/// # Errors
/// [`CodecError::UnsupportedVersion`], or [`CodecError::Decode`] when the envelope is garbage.
pub fn frame_version(body: &[u8]) -> Result<u16, CodecError> {
    let (version, _) = decode_prefix::<u16>(body, "frame envelope")?;
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Err(CodecError::UnsupportedVersion {
            got: version,
            min: MIN_PROTOCOL_VERSION,
            max: PROTOCOL_VERSION,
        });
    }
    Ok(version)
}

/// Decodes a frame body (everything after the length prefix).
///
/// # Errors
/// When the version is unsupported, or the body is not exactly one valid message.
pub fn decode_frame<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    if body.is_empty() {
        return Err(CodecError::Empty);
    }
    frame_version(body)?;
    let (_, envelope_len) = decode_prefix::<u16>(body, "frame envelope")?;
    decode_exact(&body[envelope_len..], "message")
}

/// Splits a byte stream into frame bodies, whatever chunks the transport delivers.
///
/// A length prefix above the maximum is reported as soon as its 4 bytes arrive, before the body
/// is buffered. After an error the decoder should be dropped (the stream is unusable).
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    max_frame_bytes: u32,
}

impl FrameDecoder {
    /// A decoder accepting bodies up to `max_frame_bytes`.
    pub fn new(max_frame_bytes: u32) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_frame_bytes,
        }
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete frame body, if one is buffered.
    ///
    /// # Errors
    /// When the next length prefix is zero or exceeds the maximum.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, CodecError> {
        let Some(header) = self.buffer.first_chunk::<FRAME_HEADER_BYTES>() else {
            return Ok(None);
        };
        let len = frame_body_len(*header, self.max_frame_bytes)?;
        if self.buffer.len() < FRAME_HEADER_BYTES + len {
            // Reserve once for the whole body instead of growing chunk by chunk.
            self.buffer
                .reserve(FRAME_HEADER_BYTES + len - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(FRAME_HEADER_BYTES);
        Ok(Some(self.buffer.split_to(len).freeze()))
    }

    /// Bytes buffered that do not yet form a frame (non-zero at end of stream = truncated frame).
    pub fn pending_bytes(&self) -> usize {
        self.buffer.len()
    }
}

/// Encodes a journal record: one format byte, then the record.
///
/// # Errors
/// Only if serialization itself fails, which the record types never do.
pub fn encode_record(record: &Record) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(1024);
    out.push(RECORD_FORMAT_V1);
    encode_into(record, &mut out, "record")?;
    Ok(out)
}

/// Decodes a journal record written by [`encode_record`].
///
/// # Errors
/// When the format byte is unknown or the bytes are not a record.
pub fn decode_record(bytes: &[u8]) -> Result<Record, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&RECORD_FORMAT_V1, rest)) => decode_exact(rest, "record"),
        Some((&other, _)) => Err(CodecError::RecordFormat(other)),
    }
}

/// Encodes journal entries as a batch payload.
///
/// # Errors
/// Only if serialization or compression fails.
pub fn encode_entries(
    entries: &[JournalEntry],
    compression: Compression,
) -> Result<Vec<u8>, CodecError> {
    let mut plain = Vec::with_capacity(entries.iter().map(|e| e.record.len() + 12).sum());
    encode_into(&entries, &mut plain, "batch entries")?;
    match compression {
        Compression::None => Ok(plain),
        Compression::Zstd => {
            zstd::bulk::compress(&plain, ZSTD_LEVEL).map_err(|error| CodecError::Encode {
                what: "batch payload",
                reason: error.to_string(),
            })
        }
    }
}

/// Decodes a batch payload written by [`encode_entries`].
///
/// # Errors
/// When decompression fails or exceeds [`DECODE_LIMIT_BYTES`], or the payload is not entries.
pub fn decode_entries(
    payload: &[u8],
    compression: Compression,
) -> Result<Vec<JournalEntry>, CodecError> {
    decode_exact(&decompress_payload(payload, compression)?, "batch entries")
}

/// The plain bytes of a batch payload: borrowed when uncompressed, else decompressed (with a
/// per-thread zstd context, reused across calls).
///
/// # Errors
/// When the payload is not a zstd frame, lacks its content size, or exceeds
/// [`DECODE_LIMIT_BYTES`].
pub fn decompress_payload(
    payload: &[u8],
    compression: Compression,
) -> Result<Cow<'_, [u8]>, CodecError> {
    match compression {
        Compression::None => Ok(Cow::Borrowed(payload)),
        Compression::Zstd => {
            // The frame header states the content size (zstd::bulk writes it); trust it only up
            // to the limit, so a small hostile payload cannot make us allocate much.
            let size = match zstd::zstd_safe::get_frame_content_size(payload) {
                Ok(Some(size)) if size <= DECODE_LIMIT_BYTES as u64 => size as usize,
                Ok(Some(size)) => {
                    return Err(CodecError::Decompress(format!(
                        "content of {size} bytes exceeds the limit of {DECODE_LIMIT_BYTES} bytes"
                    )));
                }
                Ok(None) => return Err(CodecError::Decompress("content size missing".into())),
                Err(_) => return Err(CodecError::Decompress("not a zstd frame".into())),
            };
            thread_local! {
                static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
            }
            DECOMPRESSOR.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| CodecError::Decompress(e.to_string()))?,
                    );
                }
                let decompressor = slot
                    .as_mut()
                    .ok_or_else(|| CodecError::Decompress("no context".into()))?;
                let plain = decompressor
                    .decompress(payload, size)
                    .map_err(|e| CodecError::Decompress(e.to_string()))?;
                // A frame may state a size smaller than its real content: that is corrupt.
                if plain.len() != size {
                    return Err(CodecError::Decompress("content size mismatch".into()));
                }
                Ok(Cow::Owned(plain))
            })
        }
    }
}

/// Decodes the entries of a plain payload (see [`decompress_payload`]) without copying records.
///
/// # Errors
/// When the bytes are not entries.
pub fn decode_entries_borrowed(plain: &[u8]) -> Result<Vec<JournalEntryRef<'_>>, CodecError> {
    decode_exact_borrowed(plain, "batch entries")
}

/// Decodes a journal record without copying its strings.
///
/// # Errors
/// When the format byte is unknown or the bytes are not a record.
pub fn decode_record_borrowed(bytes: &[u8]) -> Result<RecordRef<'_>, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&RECORD_FORMAT_V1, rest)) => decode_exact_borrowed(rest, "record"),
        Some((&other, _)) => Err(CodecError::RecordFormat(other)),
    }
}

#[cfg(test)]
mod tests;
