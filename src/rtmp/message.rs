//! RTMP messages above the chunk layer: type ids, protocol control messages (spec §5.4),
//! user control events (§6.2) and AMF0 command messages (§7.1.1, §7.2).
//!
//! AMF0 itself is `rml_amf0`'s; this module only guards it (see [`decode_amf0`]) and shapes
//! its values into commands.

use std::collections::HashMap;
use std::io::Cursor;

use bytes::{BufMut, Bytes, BytesMut};
use rml_amf0::Amf0Value;

use super::chunk::RawMessage;

/// Message type ids (spec §5.4, §6.2, §7.1).
pub mod type_id {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// The usual chunk stream ids.
pub mod csid {
    /// Protocol control and user control messages must use csid 2 (spec §5.4).
    pub const PROTOCOL_CONTROL: u32 = 2;
    /// Commands, by convention (librtmp, ffmpeg, OBS).
    pub const COMMAND: u32 = 3;
}

/// User control event types (spec §6.2 / §7.1.7).
pub mod user_control {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// Set Peer Bandwidth limit types (spec §5.4.5).
pub mod bandwidth_limit {
    pub const HARD: u8 = 0;
    pub const SOFT: u8 = 1;
    pub const DYNAMIC: u8 = 2;
}

/// Deepest AMF0 object/array nesting handed to `rml_amf0`, which recurses once per level and
/// needs about 2-3 KiB of stack per level in debug builds: a few hundred levels, a few hundred
/// bytes of payload, overflow a 2 MiB tokio worker stack and abort the whole process. Real
/// commands and metadata nest two or three deep.
pub const MAX_AMF0_DEPTH: usize = 64;

/// Why a message payload cannot be understood.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    /// The payload is shorter than the named message or field needs.
    #[error("{message}: needs {expected} bytes, got {actual}")]
    Truncated {
        /// The message or field being read.
        message: &'static str,
        /// Bytes it needs.
        expected: usize,
        /// Bytes there were.
        actual: usize,
    },
    /// `rml_amf0` rejected the payload.
    #[error("AMF0: {0}")]
    Amf0(String),
    /// AMF0 containers nest deeper than [`MAX_AMF0_DEPTH`].
    #[error("AMF0 nesting deeper than {limit}")]
    Amf0TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The type id is not a protocol or user control message (1-6).
    #[error("message type {0} is not a protocol control message")]
    NotAControlMessage(u8),
    /// The type id is not a command message (17 or 20).
    #[error("not a command message")]
    NotACommand,
    /// A command's first value, the command name, is missing or not a string.
    #[error("command name is missing or not a string")]
    CommandNameNotString,
    /// A command's second value, the transaction id, is not a number.
    #[error("command {name}: transaction id is not a number")]
    TransactionIdNotNumber {
        /// The command name.
        name: String,
    },
}

/// Protocol control messages (types 1-3, 5, 6) and user control messages (type 4).
#[derive(Debug, Clone, PartialEq)]
pub enum ControlMessage {
    /// Type 1: the sender's new chunk size. Left unvalidated here; the chunk decoder checks it.
    SetChunkSize(u32),
    /// Type 2: drop the partial message on a chunk stream.
    Abort {
        /// The chunk stream whose partial message to drop.
        csid: u32,
    },
    /// Type 3: bytes received so far, sent each window.
    Acknowledgement {
        /// Total bytes received on the connection, wrapping at 2^32.
        sequence: u32,
    },
    /// Type 5: how many bytes the sender may receive between acknowledgements.
    WindowAckSize(u32),
    /// Type 6: limits the peer's output window.
    SetPeerBandwidth {
        /// Window size in bytes.
        size: u32,
        /// How to apply it: a [`bandwidth_limit`] value.
        limit: u8,
    },
    /// Type 4: a stream or ping event.
    UserControl(UserControlEvent),
}

/// User Control message events (spec §7.1.7).
#[derive(Debug, Clone, PartialEq)]
pub enum UserControlEvent {
    /// A stream (by message stream id) became functional.
    StreamBegin(u32),
    /// Playback of a stream is over.
    StreamEof(u32),
    /// No more data on a stream for now.
    StreamDry(u32),
    /// The client's buffer length for a stream.
    SetBufferLength {
        /// The message stream id.
        stream_id: u32,
        /// Buffer length in milliseconds.
        millis: u32,
    },
    /// The stream is a recorded one.
    StreamIsRecorded(u32),
    /// The sender's local time, to be echoed in a PingResponse.
    PingRequest(u32),
    /// The timestamp from a PingRequest.
    PingResponse(u32),
    /// Any other event (e.g. SWF verification, 0x1A/0x1B), kept raw.
    Other {
        /// The event type.
        event: u16,
        /// The event data after the type.
        data: Bytes,
    },
}

impl ControlMessage {
    /// Parses a type 1-6 message payload. Trailing bytes are ignored.
    pub fn parse(type_id: u8, payload: &[u8]) -> Result<Self, MessageError> {
        Ok(match type_id {
            type_id::SET_CHUNK_SIZE => Self::SetChunkSize(be32(payload, 0, "Set Chunk Size")?),
            type_id::ABORT => Self::Abort {
                csid: be32(payload, 0, "Abort chunk stream id")?,
            },
            type_id::ACKNOWLEDGEMENT => Self::Acknowledgement {
                sequence: be32(payload, 0, "Acknowledgement sequence number")?,
            },
            type_id::WINDOW_ACK_SIZE => {
                Self::WindowAckSize(be32(payload, 0, "Window Acknowledgement Size")?)
            }
            type_id::SET_PEER_BANDWIDTH => {
                let size = be32(payload, 0, "Set Peer Bandwidth window size")?;
                let limit = *payload.get(4).ok_or(MessageError::Truncated {
                    message: "Set Peer Bandwidth limit type",
                    expected: 5,
                    actual: payload.len(),
                })?;
                Self::SetPeerBandwidth { size, limit }
            }
            type_id::USER_CONTROL => Self::UserControl(UserControlEvent::parse(payload)?),
            other => return Err(MessageError::NotAControlMessage(other)),
        })
    }

    /// The message on csid 2, message stream 0, timestamp 0, as the spec requires.
    pub fn to_message(&self) -> RawMessage {
        let mut body = BytesMut::with_capacity(10);
        let type_id = match self {
            Self::SetChunkSize(size) => {
                body.put_u32(*size);
                type_id::SET_CHUNK_SIZE
            }
            Self::Abort { csid } => {
                body.put_u32(*csid);
                type_id::ABORT
            }
            Self::Acknowledgement { sequence } => {
                body.put_u32(*sequence);
                type_id::ACKNOWLEDGEMENT
            }
            Self::WindowAckSize(size) => {
                body.put_u32(*size);
                type_id::WINDOW_ACK_SIZE
            }
            Self::SetPeerBandwidth { size, limit } => {
                body.put_u32(*size);
                body.put_u8(*limit);
                type_id::SET_PEER_BANDWIDTH
            }
            Self::UserControl(event) => {
                event.write(&mut body);
                type_id::USER_CONTROL
            }
        };
        RawMessage {
            csid: csid::PROTOCOL_CONTROL,
            timestamp: 0,
            type_id,
            stream_id: 0,
            payload: body.freeze(),
        }
    }
}

impl UserControlEvent {
    /// Parses a User Control message body: a 16-bit event type, then event data.
    fn parse(payload: &[u8]) -> Result<Self, MessageError> {
        let event = match payload {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => {
                return Err(MessageError::Truncated {
                    message: "User Control event type",
                    expected: 2,
                    actual: payload.len(),
                })
            }
        };
        let stream = |what| be32(payload, 2, what);
        Ok(match event {
            user_control::STREAM_BEGIN => Self::StreamBegin(stream("StreamBegin stream id")?),
            user_control::STREAM_EOF => Self::StreamEof(stream("StreamEOF stream id")?),
            user_control::STREAM_DRY => Self::StreamDry(stream("StreamDry stream id")?),
            user_control::SET_BUFFER_LENGTH => Self::SetBufferLength {
                stream_id: stream("SetBufferLength stream id")?,
                millis: be32(payload, 6, "SetBufferLength buffer length")?,
            },
            user_control::STREAM_IS_RECORDED => {
                Self::StreamIsRecorded(stream("StreamIsRecorded stream id")?)
            }
            user_control::PING_REQUEST => Self::PingRequest(stream("PingRequest timestamp")?),
            user_control::PING_RESPONSE => Self::PingResponse(stream("PingResponse timestamp")?),
            event => Self::Other {
                event,
                data: Bytes::copy_from_slice(&payload[2..]),
            },
        })
    }

    /// Writes the event type and data.
    fn write(&self, body: &mut BytesMut) {
        let (event, a, b) = match self {
            Self::StreamBegin(id) => (user_control::STREAM_BEGIN, *id, None),
            Self::StreamEof(id) => (user_control::STREAM_EOF, *id, None),
            Self::StreamDry(id) => (user_control::STREAM_DRY, *id, None),
            Self::SetBufferLength { stream_id, millis } => {
                (user_control::SET_BUFFER_LENGTH, *stream_id, Some(*millis))
            }
            Self::StreamIsRecorded(id) => (user_control::STREAM_IS_RECORDED, *id, None),
            Self::PingRequest(time) => (user_control::PING_REQUEST, *time, None),
            Self::PingResponse(time) => (user_control::PING_RESPONSE, *time, None),
            Self::Other { event, data } => {
                body.put_u16(*event);
                body.put_slice(data);
                return;
            }
        };
        body.put_u16(event);
        body.put_u32(a);
        if let Some(b) = b {
            body.put_u32(b);
        }
    }
}

/// Reads the big-endian u32 at `at`, naming `what` if the payload is too short.
fn be32(payload: &[u8], at: usize, what: &'static str) -> Result<u32, MessageError> {
    match payload.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(MessageError::Truncated {
            message: what,
            expected: at + 4,
            actual: payload.len(),
        }),
    }
}

/// An RTMP command: name, transaction id, command object, then arguments (spec §7.1.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Command name, e.g. `connect`, `publish`, `_result`, `onStatus`.
    pub name: String,
    /// Matches a `_result`/`_error` to its request; 0 when no reply is expected.
    pub transaction_id: f64,
    /// The command object (connect's properties); often Null. Null if the sender omitted it.
    pub object: Amf0Value,
    /// The remaining values, e.g. publish's stream key and type.
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// Parses a type 20 (AMF0) command, or a type 17 (AMF3) command, which is one leading
    /// format byte then AMF0. A missing transaction id reads as 0 and a missing command object
    /// as Null, for lenient clients.
    pub fn parse(type_id: u8, payload: &[u8]) -> Result<Self, MessageError> {
        let amf0 = match type_id {
            type_id::COMMAND_AMF0 => payload,
            type_id::COMMAND_AMF3 => payload.get(1..).ok_or(MessageError::Truncated {
                message: "AMF3 command format byte",
                expected: 1,
                actual: 0,
            })?,
            _ => return Err(MessageError::NotACommand),
        };
        let mut values = decode_amf0(amf0)?.into_iter();
        let name = match values.next() {
            Some(Amf0Value::Utf8String(name)) => name,
            _ => return Err(MessageError::CommandNameNotString),
        };
        let transaction_id = match values.next() {
            Some(Amf0Value::Number(id)) => id,
            None => 0.0,
            Some(_) => return Err(MessageError::TransactionIdNotNumber { name }),
        };
        Ok(Command {
            name,
            transaction_id,
            object: values.next().unwrap_or(Amf0Value::Null),
            args: values.collect(),
        })
    }

    /// The command as an AMF0 command message on csid 3. Strings and keys longer than AMF0's
    /// 65535-byte limit (say, a peer's over-long stream key echoed in a description) are cut
    /// at a character boundary rather than failing or corrupting the output.
    pub fn to_message(&self, stream_id: u32) -> RawMessage {
        let mut values = Vec::with_capacity(3 + self.args.len());
        values.push(Amf0Value::Utf8String(self.name.clone()));
        values.push(Amf0Value::Number(self.transaction_id));
        values.push(self.object.clone());
        values.extend(self.args.iter().cloned());
        values.iter_mut().for_each(fit_amf0_strings);
        let payload = rml_amf0::serialize(&values)
            .expect("rml_amf0 only fails on strings over 65535 bytes, which were cut");
        RawMessage {
            csid: csid::COMMAND,
            timestamp: 0,
            type_id: type_id::COMMAND_AMF0,
            stream_id,
            payload: Bytes::from(payload),
        }
    }
}

/// Cuts strings and object keys to AMF0's 16-bit length (rml_amf0 errors on long strings and
/// silently truncates the length of long keys).
fn fit_amf0_strings(value: &mut Amf0Value) {
    match value {
        Amf0Value::Utf8String(s) => fit_str(s),
        Amf0Value::StrictArray(items) => items.iter_mut().for_each(fit_amf0_strings),
        Amf0Value::Object(map) => {
            if map.keys().any(|k| k.len() > usize::from(u16::MAX)) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(mut k, v)| {
                        fit_str(&mut k);
                        (k, v)
                    })
                    .collect();
            }
            map.values_mut().for_each(fit_amf0_strings);
        }
        Amf0Value::Number(_) | Amf0Value::Boolean(_) | Amf0Value::Null | Amf0Value::Undefined => {}
    }
}

/// Truncates `s` to at most 65535 bytes on a character boundary.
fn fit_str(s: &mut String) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

/// Decodes AMF0 values with `rml_amf0`, after checking their nesting depth (see
/// [`MAX_AMF0_DEPTH`]). Use this, not `rml_amf0::deserialize`, for anything a peer sent,
/// data messages (`@setDataFrame`/`onMetaData`) included.
pub fn decode_amf0(payload: &[u8]) -> Result<Vec<Amf0Value>, MessageError> {
    if amf0_depth_exceeds(payload, MAX_AMF0_DEPTH) {
        return Err(MessageError::Amf0TooDeep {
            limit: MAX_AMF0_DEPTH,
        });
    }
    rml_amf0::deserialize(&mut Cursor::new(payload)).map_err(|e| MessageError::Amf0(e.to_string()))
}

/// Whether the AMF0 containers in `data` nest deeper than `limit`, walking the same grammar as
/// `rml_amf0`'s recursive decoder without recursing or decoding. It only has to bound that
/// decoder's recursion: wherever the decoder would stop with an error, this stops with `false`.
fn amf0_depth_exceeds(data: &[u8], limit: usize) -> bool {
    /// What the decoder is inside: an object's property list or a strict array's items.
    enum Frame {
        /// Inside an object or ECMA array: key/value pairs until an empty key.
        Object,
        /// Inside a strict array, with this many items left.
        Array(u32),
    }
    let mut pos = 0usize;
    let mut stack: Vec<Frame> = Vec::new();
    let take = |pos: &mut usize, n: usize| -> Option<usize> {
        let at = *pos;
        *pos = pos.saturating_add(n);
        data.get(at..at.checked_add(n)?).map(|_| at)
    };
    loop {
        let marker = match stack.last_mut() {
            None => match data.get(pos) {
                None | Some(0x09) => return false,
                Some(&m) => {
                    pos += 1;
                    m
                }
            },
            Some(Frame::Object) => {
                let Some(at) = take(&mut pos, 2) else {
                    return false;
                };
                let label = usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
                if label == 0 {
                    // Empty key: the object end marker follows (anything else is an error).
                    stack.pop();
                    pos += 1;
                    continue;
                }
                pos = pos.saturating_add(label);
                match data.get(pos) {
                    None | Some(0x09) => return false,
                    Some(&m) => {
                        pos += 1;
                        m
                    }
                }
            }
            Some(Frame::Array(left)) => {
                if *left == 0 {
                    stack.pop();
                    continue;
                }
                *left -= 1;
                match data.get(pos) {
                    None | Some(0x09) => {
                        // The decoder ends the array early here.
                        pos = pos.saturating_add(1);
                        stack.pop();
                        continue;
                    }
                    Some(&m) => {
                        pos += 1;
                        m
                    }
                }
            }
        };
        match marker {
            0x00 => pos = pos.saturating_add(8),
            0x01 => pos = pos.saturating_add(1),
            0x02 => match take(&mut pos, 2) {
                Some(at) => {
                    let len = u16::from_be_bytes([data[at], data[at + 1]]);
                    pos = pos.saturating_add(usize::from(len));
                }
                None => return false,
            },
            0x05 | 0x06 => {}
            0x03 => stack.push(Frame::Object),
            0x08 => {
                if take(&mut pos, 4).is_none() {
                    return false;
                }
                stack.push(Frame::Object);
            }
            0x0A => match take(&mut pos, 4) {
                Some(at) => {
                    let count =
                        u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                    stack.push(Frame::Array(count));
                }
                None => return false,
            },
            _ => return false,
        }
        if stack.len() > limit {
            return true;
        }
    }
}

/// An AMF0 object from key/value pairs.
pub fn object(pairs: &[(&str, Amf0Value)]) -> Amf0Value {
    Amf0Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<HashMap<_, _>>(),
    )
}

/// The info object of an `onStatus` or `_error` reply: level (`status`/`error`/`warning`),
/// code (e.g. `NetStream.Publish.Start`) and a human-readable description.
pub fn status(level: &str, code: &str, description: &str) -> Amf0Value {
    object(&[
        ("level", Amf0Value::Utf8String(level.into())),
        ("code", Amf0Value::Utf8String(code.into())),
        ("description", Amf0Value::Utf8String(description.into())),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::chunk::{ChunkDecoder, ChunkEncoder};
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn string(s: &str) -> Amf0Value {
        Amf0Value::Utf8String(s.into())
    }

    #[test]
    fn control_messages_from_hex() {
        let cases = [
            (1, "00001000", ControlMessage::SetChunkSize(4096)),
            (2, "00000006", ControlMessage::Abort { csid: 6 }),
            (
                3,
                "0001e240",
                ControlMessage::Acknowledgement { sequence: 123_456 },
            ),
            (5, "004c4b40", ControlMessage::WindowAckSize(5_000_000)),
            (
                6,
                "004c4b40 02",
                ControlMessage::SetPeerBandwidth {
                    size: 5_000_000,
                    limit: bandwidth_limit::DYNAMIC,
                },
            ),
            (
                4,
                "0000 00000001",
                ControlMessage::UserControl(UserControlEvent::StreamBegin(1)),
            ),
            (
                4,
                "0001 00000001",
                ControlMessage::UserControl(UserControlEvent::StreamEof(1)),
            ),
            (
                4,
                "0002 00000001",
                ControlMessage::UserControl(UserControlEvent::StreamDry(1)),
            ),
            (
                4,
                "0003 00000001 00000bb8",
                ControlMessage::UserControl(UserControlEvent::SetBufferLength {
                    stream_id: 1,
                    millis: 3000,
                }),
            ),
            (
                4,
                "0004 00000001",
                ControlMessage::UserControl(UserControlEvent::StreamIsRecorded(1)),
            ),
            (
                4,
                "0006 00000d0f",
                ControlMessage::UserControl(UserControlEvent::PingRequest(0xd0f)),
            ),
            (
                4,
                "0007 00000d0f",
                ControlMessage::UserControl(UserControlEvent::PingResponse(0xd0f)),
            ),
            (
                4,
                "001a 01",
                ControlMessage::UserControl(UserControlEvent::Other {
                    event: 0x1a,
                    data: Bytes::from_static(&[1]),
                }),
            ),
        ];
        for (type_id, body, expected) in cases {
            let body = hex(body);
            assert_eq!(ControlMessage::parse(type_id, &body).unwrap(), expected);
            let message = expected.to_message();
            assert_eq!(
                (
                    message.csid,
                    message.stream_id,
                    message.timestamp,
                    message.type_id
                ),
                (2, 0, 0, type_id)
            );
            assert_eq!(message.payload[..], body[..], "{expected:?}");
        }
    }

    #[test]
    fn control_message_errors_name_the_field() {
        assert_eq!(
            ControlMessage::parse(1, &[0, 0, 16]),
            Err(MessageError::Truncated {
                message: "Set Chunk Size",
                expected: 4,
                actual: 3
            })
        );
        assert_eq!(
            ControlMessage::parse(6, &hex("004c4b40")),
            Err(MessageError::Truncated {
                message: "Set Peer Bandwidth limit type",
                expected: 5,
                actual: 4
            })
        );
        assert_eq!(
            ControlMessage::parse(4, &hex("0003 00000001")),
            Err(MessageError::Truncated {
                message: "SetBufferLength buffer length",
                expected: 10,
                actual: 6
            })
        );
        assert!(matches!(
            ControlMessage::parse(4, &[0]),
            Err(MessageError::Truncated { expected: 2, .. })
        ));
        assert_eq!(
            ControlMessage::parse(9, &[]),
            Err(MessageError::NotAControlMessage(9))
        );
        // Trailing bytes are tolerated.
        assert_eq!(
            ControlMessage::parse(5, &hex("00000100 ff")),
            Ok(ControlMessage::WindowAckSize(256))
        );
    }

    #[test]
    fn parse_create_stream_and_publish_from_hex() {
        // createStream(2, null), as ffmpeg and OBS send it.
        let create = hex("02000c 63726561746553747265616d 00 4000000000000000 05");
        assert_eq!(
            Command::parse(20, &create).unwrap(),
            Command {
                name: "createStream".into(),
                transaction_id: 2.0,
                object: Amf0Value::Null,
                args: vec![],
            }
        );
        // publish(5, null, "key1", "live")
        let publish =
            hex("020007 7075626c697368 00 4014000000000000 05 020004 6b657931 020004 6c697665");
        let command = Command::parse(20, &publish).unwrap();
        assert_eq!(command.name, "publish");
        assert_eq!(command.transaction_id, 5.0);
        assert_eq!(command.args, [string("key1"), string("live")]);
        // The same as an AMF3 command message: one leading 0x00.
        let mut amf3 = vec![0];
        amf3.extend_from_slice(&publish);
        assert_eq!(Command::parse(17, &amf3).unwrap(), command);
        // Serialization is byte-exact for values without objects (whose key order is unset).
        assert_eq!(command.to_message(1).payload[..], publish[..]);
    }

    #[test]
    fn parse_connect_from_hex() {
        // connect(1, {app: "live", tcUrl: "rtmp://h/live"}) with its object end marker.
        let connect = hex("020007 636f6e6e656374 00 3ff0000000000000 \
             03 0003 617070 020004 6c697665 \
                0005 746355726c 02000d 72746d703a2f2f682f6c697665 \
             000009");
        let command = Command::parse(20, &connect).unwrap();
        assert_eq!(command.name, "connect");
        assert_eq!(command.transaction_id, 1.0);
        assert_eq!(
            command.object,
            object(&[("app", string("live")), ("tcUrl", string("rtmp://h/live"))])
        );
        assert!(command.args.is_empty());
    }

    #[test]
    fn command_errors() {
        assert_eq!(Command::parse(18, &[]), Err(MessageError::NotACommand));
        assert!(matches!(
            Command::parse(17, &[]),
            Err(MessageError::Truncated { .. })
        ));
        assert_eq!(
            Command::parse(20, &[]),
            Err(MessageError::CommandNameNotString)
        );
        assert_eq!(
            Command::parse(20, &hex("00 3ff0000000000000")),
            Err(MessageError::CommandNameNotString)
        );
        assert_eq!(
            Command::parse(20, &hex("020001 61 05")),
            Err(MessageError::TransactionIdNotNumber { name: "a".into() })
        );
        assert!(matches!(
            Command::parse(20, &hex("020001 61 ee")),
            Err(MessageError::Amf0(_))
        ));
        // Lenient: name only.
        let bare = Command::parse(20, &hex("020001 61")).unwrap();
        assert_eq!((bare.transaction_id, bare.object), (0.0, Amf0Value::Null));
    }

    #[test]
    fn deep_amf0_nesting_is_refused_before_rml_amf0_recurses() {
        // 100k nested objects: enough to overflow any thread stack inside rml_amf0.
        let mut deep = hex("020001 61 00 3ff0000000000000");
        for _ in 0..100_000 {
            deep.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        }
        assert_eq!(
            Command::parse(20, &deep),
            Err(MessageError::Amf0TooDeep {
                limit: MAX_AMF0_DEPTH
            })
        );
        let mut arrays = Vec::new();
        for _ in 0..100_000 {
            arrays.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        assert_eq!(
            decode_amf0(&arrays),
            Err(MessageError::Amf0TooDeep {
                limit: MAX_AMF0_DEPTH
            })
        );
        let mut ecma = Vec::new();
        for _ in 0..100_000 {
            ecma.extend_from_slice(&[0x08, 0, 0, 0, 1, 0x00, 0x01, b'a']);
        }
        assert!(matches!(
            decode_amf0(&ecma),
            Err(MessageError::Amf0TooDeep { .. })
        ));

        // Nesting up to the limit, closed properly, still decodes.
        let mut ok = Vec::new();
        for _ in 0..MAX_AMF0_DEPTH {
            ok.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        ok.push(0x05);
        let mut value = decode_amf0(&ok).unwrap().remove(0);
        let mut depth = 0;
        while let Amf0Value::StrictArray(mut items) = value {
            depth += 1;
            value = items.remove(0);
        }
        assert_eq!((depth, value), (MAX_AMF0_DEPTH, Amf0Value::Null));
    }

    #[test]
    fn depth_walk_follows_rml_amf0_on_real_values() {
        let nested = Amf0Value::StrictArray(vec![
            Amf0Value::Number(1.5),
            Amf0Value::Boolean(true),
            string("x"),
            Amf0Value::Undefined,
            object(&[("k", object(&[("deeper", Amf0Value::StrictArray(vec![]))]))]),
        ]);
        let bytes = rml_amf0::serialize(&vec![nested.clone(), string("after")]).unwrap();
        // Array > object > object > array: four levels.
        assert!(!amf0_depth_exceeds(&bytes, 4));
        assert!(amf0_depth_exceeds(&bytes, 3));
        assert_eq!(decode_amf0(&bytes).unwrap(), [nested, string("after")]);
        // Truncations and garbage never panic the walker.
        let mut seed = 7u64;
        for cut in 0..bytes.len() {
            let _ = decode_amf0(&bytes[..cut]);
            for _ in 0..50 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut bad = bytes.clone();
                let i = seed as usize % bad.len();
                bad[i] = (seed >> 32) as u8;
                let _ = decode_amf0(&bad[..cut.max(1)]);
            }
        }
    }

    #[test]
    fn commands_roundtrip_through_the_chunk_layer() {
        let commands = [
            Command {
                name: "_result".into(),
                transaction_id: 1.0,
                object: object(&[
                    ("fmsVer", string("FMS/3,0,1,123")),
                    ("capabilities", Amf0Value::Number(31.0)),
                ]),
                args: vec![status(
                    "status",
                    "NetConnection.Connect.Success",
                    "Connection succeeded.",
                )],
            },
            Command {
                name: "onStatus".into(),
                transaction_id: 0.0,
                object: Amf0Value::Null,
                args: vec![status("status", "NetStream.Publish.Start", "Publishing.")],
            },
        ];
        let mut enc = ChunkEncoder::new();
        let mut buf = BytesMut::new();
        for c in &commands {
            enc.encode(&c.to_message(1), &mut buf);
        }
        let mut dec = ChunkDecoder::new();
        for c in &commands {
            let m = dec.decode(&mut buf).unwrap().unwrap();
            assert_eq!((m.csid, m.type_id, m.stream_id), (3, 20, 1));
            assert_eq!(&Command::parse(m.type_id, &m.payload).unwrap(), c);
        }
    }

    #[test]
    fn over_long_strings_are_cut_not_fatal() {
        let long = "é".repeat(40_000); // 80000 bytes
        let command = Command {
            name: "onStatus".into(),
            transaction_id: 0.0,
            object: Amf0Value::Null,
            args: vec![
                status("error", "NetStream.Publish.BadName", &long),
                object(&[(long.as_str(), Amf0Value::Null)]),
            ],
        };
        let parsed = Command::parse(20, &command.to_message(1).payload).unwrap();
        let Amf0Value::Object(info) = &parsed.args[0] else {
            panic!("not an object: {:?}", parsed.args[0]);
        };
        let Some(Amf0Value::Utf8String(description)) = info.get("description") else {
            panic!("no description");
        };
        assert_eq!(description.len(), 65_534); // 32767 two-byte characters
        let Amf0Value::Object(keyed) = &parsed.args[1] else {
            panic!("not an object");
        };
        assert!(keyed.keys().all(|k| k.len() == 65_534));
    }

    #[test]
    fn status_and_object_helpers() {
        let Amf0Value::Object(map) = status("error", "NetStream.Publish.BadName", "taken") else {
            panic!("status is an object");
        };
        assert_eq!(map.len(), 3);
        assert_eq!(map["level"], string("error"));
        assert_eq!(map["code"], string("NetStream.Publish.BadName"));
        assert_eq!(map["description"], string("taken"));
        assert_eq!(object(&[]), Amf0Value::Object(HashMap::new()));
    }
}
