//! The RTMP chunk stream layer (RTMP 1.0 spec §5.3): bytes in, messages out; messages in,
//! bytes out. Pure, no I/O.
//!
//! Written here because `rml_rtmp` 0.8 panics on interleaved chunk streams. Where the spec is
//! silent or real encoders disagree with it, this follows SRS and ffmpeg:
//!
//! - A type 3 chunk that starts a new message adds the csid's last delta; after a type 0 header
//!   that "delta" is the type 0 timestamp field itself (FMLE sends `ts 26` then `c4` for 52).
//! - A type 3 chunk on a csid whose last header used an extended timestamp may or may not repeat
//!   the 4-byte field (Adobe and ffmpeg do, some librtmp builds do not): the decoder peeks and
//!   consumes the 4 bytes only when they equal the stored extended value.
//! - librtmp opens csid 2 with a type 1 header (its first ping); that is accepted, with message
//!   stream 0 and a base timestamp of 0.
//!
//! The decoder never applies Set Chunk Size or Abort itself: the session reads them from the
//! returned messages and calls [`ChunkDecoder::set_chunk_size`] / [`ChunkDecoder::abort`] before
//! the next [`ChunkDecoder::decode`], which is why `decode` returns one message at a time.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Chunk size both directions start with (spec §5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size a Set Chunk Size may carry: 31 bits, the top bit must be 0.
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Largest message the 24-bit message length field can describe.
pub const MAX_MESSAGE_LEN: usize = 0xFF_FFFF;
/// Default cap on bytes held in partial messages across all csids of one decoder.
pub const MAX_BUFFERED: usize = 64 * 1024 * 1024;
/// Lowest chunk stream id a basic header can carry (0 and 1 select the 2- and 3-byte forms).
pub const MIN_CSID: u32 = 2;
/// Highest chunk stream id a basic header can carry (3-byte form: 64 + 0xFFFF).
pub const MAX_CSID: u32 = 65_599;

/// Timestamp field value that says "the real value follows in 4 extended bytes".
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// Declared lengths up to this are allocated up front; larger ones grow as chunks arrive, so a
/// peer cannot make us reserve 16 MiB per csid by sending one small chunk on each.
const PREALLOC_LIMIT: usize = 1024 * 1024;

/// One complete RTMP message reassembled from chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    /// Chunk stream the message came (or goes) on; header compression state is per csid.
    pub csid: u32,
    /// Absolute RTMP timestamp in milliseconds, 32-bit and wrapping.
    pub timestamp: u32,
    /// Message type id (see `message::type_id`).
    pub type_id: u8,
    /// Message stream id: 0 for the connection, otherwise a stream from `createStream`.
    pub stream_id: u32,
    /// Message body; a slice of the input buffer when the message arrived in one chunk.
    pub payload: Bytes,
}

/// Why a chunk stream cannot be decoded. Every error leaves the decoder out of sync with the
/// peer: the connection should be closed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChunkError {
    /// A csid must be opened with a type 0 message header (fmt 0) before it can be compressed.
    #[error("chunk stream {csid}: first chunk must have a type 0 message header")]
    FirstChunkNotType0 {
        /// The chunk stream id that had no header state yet.
        csid: u32,
    },
    /// A type 0, 1 or 2 header arrived while a message on the csid was still incomplete;
    /// continuation chunks must be type 3 (Abort first to drop a message).
    #[error("chunk stream {csid}: type {fmt} header in the middle of a message")]
    HeaderMidMessage {
        /// The chunk stream id with the partial message.
        csid: u32,
        /// The fmt field of the offending basic header.
        fmt: u8,
    },
    /// Set Chunk Size outside 1..=2^31-1.
    #[error("chunk size {0} outside 1..=2147483647")]
    InvalidChunkSize(u32),
    /// The message length field exceeds the decoder's per-message limit.
    #[error("message length {length} exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The declared message length.
        length: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Partial messages across all csids would hold more than the limit.
    #[error("partial messages would buffer more than {limit} bytes")]
    BufferedTooMuch {
        /// The configured limit.
        limit: usize,
    },
}

/// Per-csid header state on the receiving side: what later headers are compressed against.
#[derive(Debug, Default)]
struct InStream {
    /// Timestamp of the latest message started on this csid; continuations keep it.
    timestamp: u32,
    /// What a type 3 chunk starting a new message adds to `timestamp`.
    delta: u32,
    /// Message length that type 2 and 3 headers reuse.
    length: u32,
    /// Message type id that type 2 and 3 headers reuse.
    type_id: u8,
    /// Message stream id that type 1, 2 and 3 headers reuse.
    stream_id: u32,
    /// The latest type 0/1/2 header carried an extended timestamp, so type 3 chunks may
    /// repeat `delta` as 4 bytes.
    extended: bool,
    /// Payload received so far of a message spanning several chunks.
    partial: Option<Vec<u8>>,
}

/// The message header fields a type 0/1/2 chunk, or a type 3 chunk starting a message, sets.
#[derive(Debug, Clone, Copy)]
struct NewHeader {
    /// See [`InStream::timestamp`].
    timestamp: u32,
    /// See [`InStream::delta`].
    delta: u32,
    /// See [`InStream::length`].
    length: u32,
    /// See [`InStream::type_id`].
    type_id: u8,
    /// See [`InStream::stream_id`].
    stream_id: u32,
    /// See [`InStream::extended`].
    extended: bool,
}

/// A chunk whose header has been parsed but not yet consumed.
#[derive(Debug)]
struct ChunkHead {
    /// Chunk stream id from the basic header.
    csid: u32,
    /// Bytes of basic header, message header and extended timestamp.
    header_len: usize,
    /// Payload bytes this chunk carries.
    payload_len: usize,
    /// Length of the whole message the chunk belongs to.
    length: usize,
    /// Set when the chunk starts a message; `None` for a continuation.
    new: Option<NewHeader>,
}

/// Reassembles RTMP messages from a byte stream of interleaved chunks.
#[derive(Debug)]
pub struct ChunkDecoder {
    /// Largest chunk payload the peer sends; changed by its Set Chunk Size.
    chunk_size: u32,
    /// Header state per csid; created by the csid's first (type 0) header.
    streams: HashMap<u32, InStream>,
    /// Bytes allocated for partial messages across all csids, checked against `max_buffered`.
    buffered: usize,
    /// Largest message length accepted.
    max_message_len: usize,
    /// Cap on `buffered`, so a peer cannot exhaust memory with many half-sent messages.
    max_buffered: usize,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkDecoder {
    /// A decoder at chunk size 128, accepting messages up to 16 MiB and buffering at most
    /// [`MAX_BUFFERED`] bytes in partial messages.
    pub fn new() -> Self {
        Self::with_limits(MAX_MESSAGE_LEN, MAX_BUFFERED)
    }

    /// A decoder with tighter (or looser) bounds than [`ChunkDecoder::new`].
    pub fn with_limits(max_message_len: usize, max_buffered: usize) -> Self {
        ChunkDecoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            buffered: 0,
            max_message_len,
            max_buffered,
        }
    }

    /// Applies the peer's Set Chunk Size to chunks not yet decoded.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// The chunk size in force for incoming chunks.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes currently allocated for partial messages (for metrics and tests).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Abort Message (type 2): drops the partial message on `csid`, keeping its header state
    /// so the next message may still be compressed against it.
    pub fn abort(&mut self, csid: u32) {
        if let Some(partial) = self.streams.get_mut(&csid).and_then(|s| s.partial.take()) {
            self.buffered -= partial.capacity();
        }
    }

    /// Consumes whole chunks from `buf`; returns the next complete message, or Ok(None) when
    /// `buf` holds no complete chunk yet (nothing of a partial chunk is consumed). Call again
    /// until None. Apply a returned Set Chunk Size or Abort before calling again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some(head) = self.parse_head(buf)? else {
                return Ok(None);
            };
            if buf.len() < head.header_len + head.payload_len {
                return Ok(None);
            }
            if let Some(message) = self.consume(head, buf)? {
                return Ok(Some(message));
            }
        }
    }

    /// Parses the chunk header at the front of `buf` without consuming anything; `None` when
    /// the header is not all there yet.
    fn parse_head(&self, buf: &[u8]) -> Result<Option<ChunkHead>, ChunkError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3F {
            0 => match buf.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(None),
            },
            1 => match buf.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let state = self.streams.get(&csid);
        let partial_len = state.and_then(|s| s.partial.as_ref()).map(Vec::len);
        if fmt < 3 && partial_len.is_some() {
            return Err(ChunkError::HeaderMidMessage { csid, fmt });
        }
        // librtmp's first ping opens csid 2 with a type 1 header; treat it as relative to zero.
        let fresh = InStream::default();
        let prev = match state {
            Some(s) => s,
            None if fmt == 0 || (fmt == 1 && csid == 2) => &fresh,
            None => return Err(ChunkError::FirstChunkNotType0 { csid }),
        };

        let header = match fmt {
            0..=2 => {
                let fields = [11, 7, 3][usize::from(fmt)];
                let Some(h) = buf.get(pos..pos + fields) else {
                    return Ok(None);
                };
                pos += fields;
                let field = be24(&h[0..3]);
                let extended = field == EXTENDED_TIMESTAMP;
                let value = if extended {
                    let Some(ext) = buf.get(pos..pos + 4) else {
                        return Ok(None);
                    };
                    pos += 4;
                    u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]])
                } else {
                    field
                };
                let (length, type_id) = if fmt < 2 {
                    (be24(&h[3..6]), h[6])
                } else {
                    (prev.length, prev.type_id)
                };
                let stream_id = if fmt == 0 {
                    u32::from_le_bytes([h[7], h[8], h[9], h[10]])
                } else {
                    prev.stream_id
                };
                let timestamp = if fmt == 0 {
                    value
                } else {
                    prev.timestamp.wrapping_add(value)
                };
                Some(NewHeader {
                    timestamp,
                    delta: value,
                    length,
                    type_id,
                    stream_id,
                    extended,
                })
            }
            _ => {
                if prev.extended {
                    // Consume the repeated extended timestamp only if it is there: compare what
                    // has arrived so far, and wait only while it still could match.
                    let expect = prev.delta.to_be_bytes();
                    let seen = &buf[pos..buf.len().min(pos + 4)];
                    if seen != &expect[..seen.len()] {
                        // Not repeated: the bytes are payload.
                    } else if seen.len() < 4 {
                        return Ok(None);
                    } else {
                        pos += 4;
                    }
                }
                match partial_len {
                    Some(_) => None,
                    None => Some(NewHeader {
                        timestamp: prev.timestamp.wrapping_add(prev.delta),
                        ..NewHeader::from(prev)
                    }),
                }
            }
        };

        let (length, received) = match &header {
            Some(h) => (h.length as usize, 0),
            None => (prev.length as usize, partial_len.unwrap_or(0)),
        };
        if length > self.max_message_len {
            return Err(ChunkError::MessageTooLarge {
                length,
                limit: self.max_message_len,
            });
        }
        Ok(Some(ChunkHead {
            csid,
            header_len: pos,
            payload_len: (length - received).min(self.chunk_size as usize),
            length,
            new: header,
        }))
    }

    /// Consumes a chunk whose header and payload are all in `buf`; returns the message it
    /// completes, if any.
    fn consume(
        &mut self,
        head: ChunkHead,
        buf: &mut BytesMut,
    ) -> Result<Option<RawMessage>, ChunkError> {
        let partial = self
            .streams
            .get(&head.csid)
            .and_then(|s| s.partial.as_ref());
        let (received, capacity) = partial.map_or((0, 0), |p| (p.len(), p.capacity()));
        let length = head.length;
        let complete = received + head.payload_len == length;

        // Size the partial buffer before touching any state, so a refusal changes nothing.
        let mut grow_to = None;
        if !(complete && received == 0) {
            let needed = received + head.payload_len;
            if needed > capacity {
                let target = if received == 0 {
                    length.min(PREALLOC_LIMIT).max(needed)
                } else {
                    length.min(needed.max(capacity * 2))
                };
                if self.buffered - capacity + target > self.max_buffered {
                    return Err(ChunkError::BufferedTooMuch {
                        limit: self.max_buffered,
                    });
                }
                grow_to = Some(target);
            }
        }

        buf.advance(head.header_len);
        let state = self.streams.entry(head.csid).or_default();
        if let Some(h) = head.new {
            state.timestamp = h.timestamp;
            state.delta = h.delta;
            state.length = h.length;
            state.type_id = h.type_id;
            state.stream_id = h.stream_id;
            state.extended = h.extended;
        }
        let message = |state: &InStream, payload: Bytes| RawMessage {
            csid: head.csid,
            timestamp: state.timestamp,
            type_id: state.type_id,
            stream_id: state.stream_id,
            payload,
        };
        if complete && received == 0 {
            // Whole message in one chunk: hand out a slice of the input, no copy.
            let payload = buf.split_to(head.payload_len).freeze();
            return Ok(Some(message(state, payload)));
        }

        let partial = state.partial.get_or_insert_with(Vec::new);
        let before = partial.capacity();
        if let Some(target) = grow_to {
            partial.reserve_exact(target - partial.len());
        }
        partial.extend_from_slice(&buf[..head.payload_len]);
        buf.advance(head.payload_len);
        self.buffered = self.buffered - before + partial.capacity();
        if !complete {
            return Ok(None);
        }
        let payload = state.partial.take().unwrap_or_default();
        self.buffered -= payload.capacity();
        Ok(Some(message(state, Bytes::from(payload))))
    }
}

impl From<&InStream> for NewHeader {
    fn from(s: &InStream) -> Self {
        NewHeader {
            timestamp: s.timestamp,
            delta: s.delta,
            length: s.length,
            type_id: s.type_id,
            stream_id: s.stream_id,
            extended: s.extended,
        }
    }
}

/// Reads a 24-bit big-endian field.
fn be24(b: &[u8]) -> u32 {
    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
}

/// Per-csid header state on the sending side: what the next header is compressed against.
#[derive(Debug)]
struct OutStream {
    /// Timestamp of the latest message sent on this csid.
    timestamp: u32,
    /// Delta the peer will add for a type 3 header; `None` after a type 0 header, where
    /// decoders disagree (ffmpeg/SRS add the absolute timestamp, nginx adds 0), so the next
    /// message never goes out as type 3.
    delta: Option<u32>,
    /// Length of the latest message, reused by type 2 and 3 headers.
    length: u32,
    /// Type id of the latest message, reused by type 2 and 3 headers.
    type_id: u8,
    /// Message stream id of the latest message, reused by type 1, 2 and 3 headers.
    stream_id: u32,
}

/// Splits RTMP messages into chunks with compressed headers.
#[derive(Debug)]
pub struct ChunkEncoder {
    /// Largest chunk payload we send; announce a change with Set Chunk Size first.
    chunk_size: u32,
    /// Whether type 3 chunks repeat the extended timestamp (see `set_repeat_extended_timestamp`).
    repeat_extended_timestamp: bool,
    /// Header state per csid.
    streams: HashMap<u32, OutStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder at chunk size 128 that repeats extended timestamps on type 3 chunks.
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            repeat_extended_timestamp: true,
            streams: HashMap::new(),
        }
    }

    /// Sets the chunk size for messages encoded from now on, clamped to 1..=2^31-1. Send the
    /// Set Chunk Size message (with the old size) before any message encoded at the new one.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// The chunk size in force for outgoing chunks.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Whether type-3 chunks repeat the 4-byte extended timestamp (the spec and ffmpeg do; some
    /// librtmp builds don't). Default true.
    pub fn set_repeat_extended_timestamp(&mut self, repeat: bool) {
        self.repeat_extended_timestamp = repeat;
    }

    /// Writes every chunk of `msg` to `out`, compressing headers against the previous message
    /// on the same csid: type 0 the first time, on a stream id change or a timestamp going
    /// backwards; type 1 when length or type changes; type 2 when only the delta changes;
    /// type 3 when everything including the delta repeats.
    ///
    /// Panics if `msg.csid` is outside 2..=65599 or the payload exceeds 16 MiB - 1, which the
    /// wire format cannot express.
    pub fn encode(&mut self, msg: &RawMessage, out: &mut BytesMut) {
        self.write_chunks(msg, out, |_| {});
    }

    /// Same, but each chunk as its own Bytes, so a caller can interleave the chunks of messages
    /// on different csids (as encoders do with audio between the chunks of a large video
    /// message). Chunks of messages on the same csid must still go out in order.
    pub fn encode_chunks(&mut self, msg: &RawMessage) -> Vec<Bytes> {
        let mut all = BytesMut::new();
        let mut ends = Vec::new();
        self.write_chunks(msg, &mut all, |end| ends.push(end));
        let mut taken = 0;
        ends.into_iter()
            .map(|end| {
                let chunk = all.split_to(end - taken).freeze();
                taken = end;
                chunk
            })
            .collect()
    }

    /// Writes the chunks of `msg`, reporting the end offset (in `out`) of each chunk.
    fn write_chunks(
        &mut self,
        msg: &RawMessage,
        out: &mut BytesMut,
        mut chunk_end: impl FnMut(usize),
    ) {
        assert!(
            (MIN_CSID..=MAX_CSID).contains(&msg.csid),
            "RTMP chunk stream id {} outside 2..=65599",
            msg.csid
        );
        let length = msg.payload.len();
        assert!(
            length <= MAX_MESSAGE_LEN,
            "RTMP message of {length} bytes exceeds the 24-bit length field"
        );
        let length = length as u32;

        let (fmt, value) = match self.streams.get(&msg.csid) {
            Some(prev) if prev.stream_id == msg.stream_id && msg.timestamp >= prev.timestamp => {
                let delta = msg.timestamp - prev.timestamp;
                if prev.length != length || prev.type_id != msg.type_id {
                    (1, delta)
                } else if prev.delta == Some(delta) {
                    (3, delta)
                } else {
                    (2, delta)
                }
            }
            _ => (0, msg.timestamp),
        };
        self.streams.insert(
            msg.csid,
            OutStream {
                timestamp: msg.timestamp,
                delta: (fmt != 0).then_some(value),
                length,
                type_id: msg.type_id,
                stream_id: msg.stream_id,
            },
        );

        let extended = value >= EXTENDED_TIMESTAMP;
        let chunk_size = self.chunk_size as usize;
        let chunks = msg.payload.len().div_ceil(chunk_size).max(1);
        out.reserve(msg.payload.len() + 18 + (chunks - 1) * 7);

        let base = out.len();
        write_basic_header(out, fmt, msg.csid);
        if fmt < 3 {
            out.put_uint(u64::from(value.min(EXTENDED_TIMESTAMP)), 3);
            if fmt < 2 {
                out.put_uint(u64::from(length), 3);
                out.put_u8(msg.type_id);
                if fmt == 0 {
                    out.put_u32_le(msg.stream_id);
                }
            }
        }
        if extended && (fmt < 3 || self.repeat_extended_timestamp) {
            out.put_u32(value);
        }
        let mut rest = &msg.payload[..];
        loop {
            let take = rest.len().min(chunk_size);
            out.put_slice(&rest[..take]);
            rest = &rest[take..];
            chunk_end(out.len() - base);
            if rest.is_empty() {
                break;
            }
            write_basic_header(out, 3, msg.csid);
            if extended && self.repeat_extended_timestamp {
                out.put_u32(value);
            }
        }
    }
}

/// Writes the 1-, 2- or 3-byte basic header for `csid`.
fn write_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    let fmt = fmt << 6;
    match csid {
        2..=63 => out.put_u8(fmt | csid as u8),
        64..=319 => {
            out.put_u8(fmt);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            out.put_u8(fmt | 1);
            out.put_u16_le((csid - 64) as u16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses hex with optional whitespace into bytes.
    fn hex(s: &str) -> BytesMut {
        let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        assert_eq!(digits.len() % 2, 0, "odd hex digit count");
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect::<Vec<u8>>()[..]
            .into()
    }

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// Decodes everything `buf` holds.
    fn decode_all(
        dec: &mut ChunkDecoder,
        buf: &mut BytesMut,
    ) -> Result<Vec<RawMessage>, ChunkError> {
        let mut out = Vec::new();
        while let Some(m) = dec.decode(buf)? {
            out.push(m);
        }
        Ok(out)
    }

    fn decode_hex(s: &str) -> Vec<RawMessage> {
        let mut buf = hex(s);
        let out = decode_all(&mut ChunkDecoder::new(), &mut buf).unwrap();
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    /// Payload of `n` bytes counting up, so misplaced bytes show.
    fn counting(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    fn encode_all(enc: &mut ChunkEncoder, msgs: &[RawMessage]) -> BytesMut {
        let mut out = BytesMut::new();
        for m in msgs {
            enc.encode(m, &mut out);
        }
        out
    }

    fn roundtrip(chunk_size: u32, msgs: &[RawMessage]) {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(chunk_size);
        let mut buf = encode_all(&mut enc, msgs);
        let mut dec = ChunkDecoder::new();
        dec.set_chunk_size(chunk_size).unwrap();
        assert_eq!(decode_all(&mut dec, &mut buf).unwrap(), msgs);
        assert!(buf.is_empty());
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn basic_header_forms_and_boundaries() {
        // (csid, expected basic header of a type 0 chunk)
        let cases = [
            (2, "02"),
            (3, "03"),
            (63, "3f"),
            (64, "00 00"),
            (65, "00 01"),
            (319, "00 ff"),
            (320, "01 00 01"),
            (321, "01 01 01"),
            (65_598, "01 fe ff"),
            (65_599, "01 ff ff"),
        ];
        for (csid, basic) in cases {
            let m = msg(csid, 7, 8, 1, b"abc");
            let mut out = BytesMut::new();
            ChunkEncoder::new().encode(&m, &mut out);
            assert_eq!(out[..basic.len() / 3 + 1], hex(basic)[..], "csid {csid}");
            let mut dec = ChunkDecoder::new();
            assert_eq!(dec.decode(&mut out).unwrap(), Some(m));
        }
        // The 3-byte form may also name csids of the 2-byte range.
        let got = decode_hex("01 00 00  000000 000001 08 01000000  aa");
        assert_eq!(got, [msg(64, 0, 8, 1, &[0xaa])]);
    }

    #[test]
    fn spec_example_1_type_2_then_type_3() {
        // RTMP spec §5.3.2.1: audio, 32-byte messages 20 ms apart on csid 3, stream 12345.
        let p = "00".repeat(32);
        let got = decode_hex(&format!(
            "03 0003e8 000020 08 39300000 {p}  83 000014 {p}  c3 {p}  c3 {p}"
        ));
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [1000, 1020, 1040, 1060]);
        assert!(got.iter().all(|m| m.stream_id == 12345 && m.type_id == 8));
        assert!(got.iter().all(|m| m.payload.len() == 32));
    }

    #[test]
    fn spec_example_2_continuations_keep_timestamp() {
        // RTMP spec §5.3.2.2: a 307-byte video message at chunk size 128: type 0 + 2 type 3.
        let body = counting(307);
        let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let got = decode_hex(&format!(
            "04 0003e8 000133 09 01000000 {}  c4 {}  c4 {}",
            h(&body[..128]),
            h(&body[128..256]),
            h(&body[256..])
        ));
        assert_eq!(got, [msg(4, 1000, 9, 1, &body)]);
    }

    #[test]
    fn type_1_and_type_2_headers() {
        let got = decode_hex(
            "06 000064 000002 09 01000000 aabb \
             46 00000a 000001 08 cc \
             86 000005 dd \
             c6 ee",
        );
        assert_eq!(
            got,
            [
                msg(6, 100, 9, 1, &[0xaa, 0xbb]),
                msg(6, 110, 8, 1, &[0xcc]),
                msg(6, 115, 8, 1, &[0xdd]),
                msg(6, 120, 8, 1, &[0xee]),
            ]
        );
    }

    #[test]
    fn type_3_new_message_after_type_0_adds_the_type_0_timestamp() {
        // SRS's FMLE capture: an audio message at 26 then a bare `c4` means 52 (as ffmpeg).
        let got = decode_hex("04 00001a 000001 08 01000000 11  c4 22  c4 33");
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [26, 52, 78]);
    }

    #[test]
    fn deltas_accumulate_with_wrapping() {
        // Type 0 at 2^32 - 16 (extended), then type 2 +32 crosses zero, type 3 +32 again.
        let got = decode_hex(
            "04 ffffff 000001 08 01000000 fffffff0 01 \
             84 000020 02 \
             c4 03",
        );
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [0xFFFF_FFF0, 0x10, 0x30]);
        // Type 1 deltas near the top wrap the same way.
        let got = decode_hex("04 fffffe 000001 08 01000000 aa  44 ffffff 000001 08 ffffff00 bb");
        assert_eq!(got[1].timestamp, 0xFF_FFFEu32.wrapping_add(0xFFFF_FF00));
    }

    #[test]
    fn timestamps_crossing_2_pow_32_roundtrip() {
        let msgs: Vec<_> = (0..8u32)
            .map(|i| msg(4, 0xFFFF_FFC0u32.wrapping_add(i * 20), 8, 1, &counting(300)))
            .collect();
        for size in [1, 128, 4096] {
            roundtrip(size, &msgs);
        }
    }

    #[test]
    fn interleaved_chunk_streams() {
        // Video on csid 6 (300 bytes, 3 chunks) and two audio messages on csid 4 (150 bytes,
        // 2 chunks each), sent chunk by chunk in turn: what rml_rtmp 0.8 panics on.
        let video = msg(6, 40, 9, 1, &counting(300));
        let audio = [msg(4, 40, 8, 1, &[1; 150]), msg(4, 63, 8, 1, &[2; 150])];
        let mut enc = ChunkEncoder::new();
        let v = enc.encode_chunks(&video);
        let a: Vec<Bytes> = audio.iter().flat_map(|m| enc.encode_chunks(m)).collect();
        assert_eq!((v.len(), a.len()), (3, 4));
        let mut buf = BytesMut::new();
        for chunk in [&v[0], &a[0], &v[1], &a[1], &v[2], &a[2], &a[3]] {
            buf.extend_from_slice(chunk);
        }
        let got = decode_all(&mut ChunkDecoder::new(), &mut buf).unwrap();
        assert_eq!(got, [audio[0].clone(), video, audio[1].clone()]);
    }

    #[test]
    fn audio_and_video_share_one_csid() {
        // OBS sends both on csid 4: types and lengths change, header state carries over.
        let msgs = [
            msg(4, 0, 9, 1, &counting(500)),
            msg(4, 0, 8, 1, &counting(7)),
            msg(4, 21, 8, 1, &counting(7)),
            msg(4, 33, 9, 1, &counting(200)),
            msg(4, 43, 8, 1, &counting(7)),
            msg(4, 64, 8, 1, &counting(7)),
            msg(4, 85, 8, 1, &counting(7)),
            msg(4, 66, 9, 1, &counting(900)),
        ];
        roundtrip(128, &msgs);
        // And by hand: video type 0, audio type 1, audio type 3 (delta 0 after a type 1).
        let got = decode_hex("04 000000 000002 09 01000000 1718  44 000000 000001 08 af  c4 ae");
        assert_eq!(
            got,
            [
                msg(4, 0, 9, 1, &[0x17, 0x18]),
                msg(4, 0, 8, 1, &[0xaf]),
                msg(4, 0, 8, 1, &[0xae]),
            ]
        );
    }

    #[test]
    fn extended_timestamp_on_every_header_type() {
        let got = decode_hex(
            "05 ffffff 000001 09 01000000 01000000 aa \
             45 ffffff 000001 08 01000000 bb \
             85 ffffff 02000000 cc \
             c5 02000000 dd",
        );
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [0x0100_0000, 0x0200_0000, 0x0400_0000, 0x0600_0000]);
        assert_eq!(got[3].payload[..], [0xdd]);
    }

    #[test]
    fn extended_timestamp_repeated_on_continuations() {
        // Adobe/ffmpeg style: each type 3 continuation repeats the 4 bytes.
        let mut dec = ChunkDecoder::new();
        dec.set_chunk_size(1).unwrap();
        let mut buf =
            hex("04 ffffff 000003 09 01000000 12345678 aa  c4 12345678 bb  c4 12345678 cc");
        assert_eq!(
            decode_all(&mut dec, &mut buf).unwrap(),
            [msg(4, 0x1234_5678, 9, 1, &[0xaa, 0xbb, 0xcc])]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn extended_timestamp_not_repeated_on_continuations() {
        // librtmp style: continuations carry no extended field; payload bytes that differ from
        // the stored value (even ones sharing its first bytes) stay payload.
        let mut dec = ChunkDecoder::new();
        dec.set_chunk_size(4).unwrap();
        let mut buf = hex("04 ffffff 00000c 09 01000000 12345678 00010203 \
             c4 12345600 \
             c4 ffffffff");
        let got = decode_all(&mut dec, &mut buf).unwrap();
        assert_eq!(
            got,
            [msg(
                4,
                0x1234_5678,
                9,
                1,
                &hex("00010203 12345600 ffffffff")
            )]
        );
    }

    #[test]
    fn extended_timestamp_peek_waits_only_while_it_could_match() {
        let mut dec = ChunkDecoder::new();
        dec.set_chunk_size(2).unwrap();
        let mut buf = hex("04 ffffff 000004 09 01000000 12345678 aabb c4 1234");
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        // The type 3 chunk is still unconsumed: "1234" could be the start of the repeat.
        assert_eq!(buf[..], hex("c4 1234")[..]);
        buf.extend_from_slice(&hex("5678 ccdd"));
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(msg(4, 0x1234_5678, 9, 1, &hex("aabbccdd")))
        );

        // "1299" cannot be the repeat, so it is payload at once, without waiting.
        let mut dec = ChunkDecoder::new();
        dec.set_chunk_size(2).unwrap();
        let mut buf = hex("04 ffffff 000004 09 01000000 12345678 aabb c4 1299");
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(msg(4, 0x1234_5678, 9, 1, &hex("aabb1299")))
        );
    }

    #[test]
    fn extended_timestamps_roundtrip_with_and_without_repeat() {
        let msgs: Vec<_> = [
            0x00FF_FFFE,
            0x00FF_FFFF,
            0x0100_0000,
            0x0200_0000,
            0x0300_0000,
            0x0400_0000,
            5,
        ]
        .iter()
        .map(|&ts| msg(6, ts, 9, 1, &counting(1000)))
        .collect();
        for repeat in [true, false] {
            let mut enc = ChunkEncoder::new();
            enc.set_repeat_extended_timestamp(repeat);
            let mut buf = encode_all(&mut enc, &msgs);
            let got = decode_all(&mut ChunkDecoder::new(), &mut buf).unwrap();
            assert_eq!(got, msgs, "repeat {repeat}");
        }
    }

    #[test]
    fn encoder_repeats_extended_timestamp_only_when_asked() {
        let m = msg(4, 0x0100_0000, 9, 1, &[1, 2]);
        for (repeat, expect) in [
            (
                true,
                "04 ffffff 000002 09 01000000 01000000 01  c4 01000000 02",
            ),
            (false, "04 ffffff 000002 09 01000000 01000000 01  c4 02"),
        ] {
            let mut enc = ChunkEncoder::new();
            enc.set_chunk_size(1);
            enc.set_repeat_extended_timestamp(repeat);
            let mut out = BytesMut::new();
            enc.encode(&m, &mut out);
            assert_eq!(out, hex(expect));
        }
    }

    #[test]
    fn encoder_header_choice() {
        let mut enc = ChunkEncoder::new();
        let fmts: Vec<u8> = [
            msg(4, 0, 8, 1, b"aa"),   // first on csid: 0
            msg(4, 20, 8, 1, b"bb"),  // only delta changes (none known after type 0): 2
            msg(4, 40, 8, 1, b"cc"),  // same delta: 3
            msg(4, 50, 8, 1, b"dd"),  // new delta: 2
            msg(4, 60, 8, 1, b"eee"), // new length: 1
            msg(4, 60, 9, 1, b"eee"), // new type: 1
            msg(4, 59, 9, 1, b"eee"), // backwards: 0
            msg(4, 70, 9, 2, b"eee"), // new stream: 0
            msg(5, 70, 9, 2, b"eee"), // other csid: 0
        ]
        .iter()
        .map(|m| enc.encode_chunks(m)[0][0] >> 6)
        .collect();
        assert_eq!(fmts, [0, 2, 3, 2, 1, 1, 0, 0, 0]);
        let mut out = BytesMut::new();
        enc.encode(&msg(4, 90, 9, 2, b"eee"), &mut out);
        assert_eq!(out, hex("84 000014 656565"));
    }

    #[test]
    fn chunk_sizes_1_128_4096_and_max() {
        let msgs = [
            msg(3, 0, 20, 0, &counting(300)),
            msg(4, 10, 8, 1, &counting(1)),
            msg(6, 10, 9, 1, &counting(10_000)),
            msg(6, 50, 9, 1, &counting(128)),
            msg(6, 90, 9, 1, &counting(129)),
            msg(6, 130, 9, 1, &[]),
        ];
        for size in [1, 128, 4096, MAX_CHUNK_SIZE] {
            roundtrip(size, &msgs);
        }
        let mut enc = ChunkEncoder::new();
        for (size, chunks) in [(1, 10_000), (128, 79), (4096, 3), (MAX_CHUNK_SIZE, 1)] {
            enc.set_chunk_size(size);
            assert_eq!(enc.encode_chunks(&msgs[2]).len(), chunks, "size {size}");
        }
    }

    #[test]
    fn chunk_size_change_between_messages() {
        let mut enc = ChunkEncoder::new();
        let mut buf = BytesMut::new();
        let a = msg(6, 0, 9, 1, &counting(1000));
        let b = msg(6, 40, 9, 1, &counting(1000));
        enc.encode(&a, &mut buf);
        enc.set_chunk_size(4096);
        enc.encode(&b, &mut buf);
        let mut dec = ChunkDecoder::new();
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(a));
        dec.set_chunk_size(4096).unwrap();
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(b));
    }

    #[test]
    fn invalid_chunk_sizes() {
        let mut dec = ChunkDecoder::new();
        assert_eq!(dec.set_chunk_size(0), Err(ChunkError::InvalidChunkSize(0)));
        assert_eq!(
            dec.set_chunk_size(0x8000_0000),
            Err(ChunkError::InvalidChunkSize(0x8000_0000))
        );
        assert_eq!(dec.chunk_size(), DEFAULT_CHUNK_SIZE);
        assert_eq!(dec.set_chunk_size(MAX_CHUNK_SIZE), Ok(()));
        assert_eq!(dec.chunk_size(), MAX_CHUNK_SIZE);
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(0);
        assert_eq!(enc.chunk_size(), 1);
        enc.set_chunk_size(u32::MAX);
        assert_eq!(enc.chunk_size(), MAX_CHUNK_SIZE);
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let mut dec = ChunkDecoder::new();
        let mut enc = ChunkEncoder::new();
        let big = enc.encode_chunks(&msg(6, 0, 9, 1, &counting(1000)));
        let mut buf = BytesMut::from(&big[0][..]);
        buf.extend_from_slice(&big[1]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        assert!(dec.buffered() >= 256);
        dec.abort(6);
        assert_eq!(dec.buffered(), 0);
        dec.abort(6); // twice, and on unknown csids: harmless
        dec.abort(77);
        // The csid's header state survives: a type 2 header continues from it.
        let mut buf = hex("86 000028");
        buf.extend_from_slice(&counting(1000)[..128]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        // Without the abort, a new header mid-message is an error.
        let mut buf = hex("06 000000 000001 09 01000000 00");
        assert_eq!(
            dec.decode(&mut buf),
            Err(ChunkError::HeaderMidMessage { csid: 6, fmt: 0 })
        );
    }

    #[test]
    fn first_chunk_must_be_type_0() {
        for (bytes, csid) in [
            ("84 000014 aa", 4),
            ("c4", 4),
            ("45 000000 000001 08 aa", 5),
        ] {
            let mut buf = hex(bytes);
            assert_eq!(
                ChunkDecoder::new().decode(&mut buf),
                Err(ChunkError::FirstChunkNotType0 { csid })
            );
        }
        // Except librtmp's ping opening csid 2 with a type 1 header.
        let got = decode_hex("42 000000 000006 04 0006 00000d0f");
        assert_eq!(got, [msg(2, 0, 4, 0, &hex("0006 00000d0f"))]);
    }

    #[test]
    fn zero_length_messages() {
        let got = decode_hex("03 000005 000000 14 00000000  c3  c3  83 000001");
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [5, 10, 15, 16]);
        assert!(got.iter().all(|m| m.payload.is_empty()));
        let empties: Vec<_> = (0..4).map(|i| msg(3, i * 10, 20, 0, &[])).collect();
        roundtrip(128, &empties);
    }

    #[test]
    fn largest_message_and_limits() {
        let big = msg(6, 0, 9, 1, &counting(MAX_MESSAGE_LEN));
        roundtrip(4096, std::slice::from_ref(&big));

        let mut buf = hex("06 000000 000100 09 01000000");
        assert_eq!(
            ChunkDecoder::with_limits(255, MAX_BUFFERED).decode(&mut buf),
            Err(ChunkError::MessageTooLarge {
                length: 256,
                limit: 255
            })
        );
    }

    #[test]
    fn untrusted_lengths_allocate_incrementally() {
        // A 16 MiB message announced with one 128-byte chunk reserves at most 1 MiB.
        let mut dec = ChunkDecoder::new();
        let mut buf = hex("06 000000 ffffff 09 01000000");
        buf.extend_from_slice(&[0; 128]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(dec.buffered() <= PREALLOC_LIMIT, "{}", dec.buffered());
    }

    #[test]
    fn buffered_bytes_are_capped_across_csids() {
        let mut dec = ChunkDecoder::new();
        let mut result = Ok(None);
        for csid in 10..200u32 {
            let mut buf = BytesMut::new();
            write_basic_header(&mut buf, 0, csid);
            buf.extend_from_slice(&hex("000000 ffffff 09 01000000"));
            buf.extend_from_slice(&[0; 128]);
            let before = buf.len();
            result = dec.decode(&mut buf);
            if result.is_err() {
                // Refused before consuming anything.
                assert_eq!(buf.len(), before);
                break;
            }
        }
        assert_eq!(
            result,
            Err(ChunkError::BufferedTooMuch {
                limit: MAX_BUFFERED
            })
        );
        assert!(dec.buffered() <= MAX_BUFFERED);
    }

    #[test]
    fn partial_chunks_are_not_consumed() {
        let full = hex("04 000001 000003 08 01000000 aabbcc");
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(ChunkDecoder::new().decode(&mut buf).unwrap(), None);
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn single_chunk_payload_is_zero_copy() {
        let mut buf = hex("04 000001 000003 08 01000000 aabbcc 04 000002 000001 08 01000000 dd");
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let m = ChunkDecoder::new().decode(&mut buf).unwrap().unwrap();
        assert!(range.contains(&(m.payload.as_ptr() as usize)));
        assert_eq!(m.payload[..], [0xaa, 0xbb, 0xcc]);
    }

    /// Deterministic xorshift64, so fuzz failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random but valid message sequence: mixed csids (all three basic header forms), types,
    /// sizes, timestamps (including extended and wrapping ones) and stream ids.
    fn random_messages(rng: &mut Rng) -> Vec<RawMessage> {
        let csids = [2, 3, 4, 6, 63, 64, 319, 320, 65_599];
        let count = 1 + rng.below(12);
        let mut clock = rng.below(3) as u32 * 0x7FFF_FFFF;
        (0..count)
            .map(|_| {
                clock = clock.wrapping_add(match rng.below(4) {
                    0 => 0,
                    1 => rng.below(50) as u32,
                    2 => 0x00FF_FFFF + rng.below(3) as u32,
                    _ => rng.next() as u32,
                });
                let len = match rng.below(4) {
                    0 => 0,
                    1 => rng.below(10),
                    2 => rng.below(300),
                    _ => rng.below(3000),
                } as usize;
                let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                msg(
                    csids[rng.below(csids.len() as u64) as usize],
                    clock,
                    [8, 9, 18, 20][rng.below(4) as usize],
                    rng.below(3) as u32,
                    &payload,
                )
            })
            .collect()
    }

    /// Feeds `stream` in pieces of random size, decoding after each.
    fn feed_split(
        rng: &mut Rng,
        chunk_size: u32,
        stream: &[u8],
        max_piece: u64,
    ) -> (Vec<RawMessage>, Option<ChunkError>) {
        let mut dec = ChunkDecoder::new();
        dec.set_chunk_size(chunk_size).unwrap();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let n = (1 + rng.below(max_piece) as usize).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            match decode_all(&mut dec, &mut buf) {
                Ok(mut m) => got.append(&mut m),
                Err(e) => return (got, Some(e)),
            }
        }
        (got, None)
    }

    #[test]
    fn fuzz_valid_streams_split_and_truncated() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..400 {
            let msgs = random_messages(&mut rng);
            let chunk_size = [1, 7, 128, 4096, MAX_CHUNK_SIZE][rng.below(5) as usize];
            let mut enc = ChunkEncoder::new();
            enc.set_chunk_size(chunk_size);
            let stream = encode_all(&mut enc, &msgs);

            let mut dec = ChunkDecoder::new();
            dec.set_chunk_size(chunk_size).unwrap();
            let mut whole = stream.clone();
            assert_eq!(
                decode_all(&mut dec, &mut whole).unwrap(),
                msgs,
                "round {round}"
            );
            assert!(whole.is_empty());
            let (bytewise, err) = feed_split(&mut rng, chunk_size, &stream, 1);
            assert_eq!(
                (bytewise, err),
                (msgs.clone(), None),
                "round {round} bytewise"
            );
            let (split, err) = feed_split(&mut rng, chunk_size, &stream, 200);
            assert_eq!((split, err), (msgs.clone(), None), "round {round} split");

            // A truncated stream yields a prefix of the messages and no error.
            let cut = rng.below(stream.len() as u64 + 1) as usize;
            let (prefix, err) = feed_split(&mut rng, chunk_size, &stream[..cut], 64);
            assert_eq!(err, None);
            assert_eq!(prefix[..], msgs[..prefix.len()], "round {round} cut {cut}");

            // A corrupted stream may fail but must not panic.
            let mut bad = stream.to_vec();
            for _ in 0..1 + rng.below(4) {
                if !bad.is_empty() {
                    let i = rng.below(bad.len() as u64) as usize;
                    bad[i] = rng.next() as u8;
                }
            }
            let _ = feed_split(&mut rng, chunk_size, &bad, 64);
        }
    }

    #[test]
    fn fuzz_without_repeated_extended_timestamps() {
        let mut rng = Rng(0xDEAD_BEEF_1234_5678);
        for round in 0..200 {
            let msgs = random_messages(&mut rng);
            let mut enc = ChunkEncoder::new();
            enc.set_repeat_extended_timestamp(false);
            enc.set_chunk_size(64);
            let stream = encode_all(&mut enc, &msgs);
            let (whole, err) = feed_split(&mut rng, 64, &stream, stream.len() as u64 + 1);
            let (bytewise, err2) = feed_split(&mut rng, 64, &stream, 1);
            // Byte-at-a-time must decide exactly as whole-buffer decoding does; and with this
            // seed no payload happens to start with its csid's extended timestamp.
            assert_eq!((&whole, &err), (&bytewise, &err2), "round {round}");
            assert_eq!((whole, err), (msgs, None), "round {round}");
        }
    }

    #[test]
    fn fuzz_garbage_never_panics() {
        let mut rng = Rng(42);
        for _ in 0..5000 {
            let len = rng.below(600) as usize;
            // Bias towards small csids and header bytes so headers parse often.
            let garbage: Vec<u8> = (0..len)
                .map(|_| match rng.below(4) {
                    0 => rng.below(8) as u8,
                    1 => 0xC0 | rng.below(8) as u8,
                    _ => rng.next() as u8,
                })
                .collect();
            let chunk_size = [1, 128, MAX_CHUNK_SIZE][rng.below(3) as usize];
            let (whole, err) = feed_split(&mut rng, chunk_size, &garbage, len as u64 + 1);
            let (bytewise, err2) = feed_split(&mut rng, chunk_size, &garbage, 1);
            assert_eq!((whole, err), (bytewise, err2));
        }
    }
}
