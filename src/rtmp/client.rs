//! An RTMP publisher: tally's own client, used to push to other servers and, in tests, to publish
//! fixtures with the chunk-level variations real encoders produce (interleaved chunk streams,
//! 3-byte chunk stream ids, extended timestamps with and without the type-3 repeat).

use std::{net::SocketAddr, time::Duration};

use bytes::{Bytes, BytesMut};
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{timeout, Instant},
};

use super::chunk::{ChunkDecoder, ChunkEncoder, RawMessage};
use super::message::{self, type_id, Command, ControlMessage};
use crate::flv::{Tag, TagKind};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("refused by server: {0}")]
    Refused(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error(transparent)]
    Chunk(#[from] super::chunk::ChunkError),
    #[error(transparent)]
    Message(#[from] super::message::MessageError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How the publisher shapes its chunk stream.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Chunk size announced with Set Chunk Size (128 sends none).
    pub chunk_size: u32,
    /// Chunk stream ids for audio and video; equal ids mimic OBS (both on 4).
    pub audio_csid: u32,
    pub video_csid: u32,
    /// Interleave the chunks of the next audio message between a video message's chunks.
    pub interleave: bool,
    /// Added to every media timestamp; above 0xFFFFFF it forces extended timestamps.
    pub timestamp_offset: u32,
    /// Whether type-3 chunks repeat the extended timestamp (librtmp builds vary).
    pub repeat_extended_timestamp: bool,
    /// Send media in real time (paced by timestamps) instead of as fast as possible.
    pub realtime: bool,
    /// Pack this many tags into each Aggregate message (type 22); 0 sends one message per tag.
    pub aggregate: usize,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            chunk_size: 4096,
            audio_csid: 4,
            video_csid: 6,
            interleave: false,
            timestamp_offset: 0,
            repeat_extended_timestamp: true,
            realtime: false,
            aggregate: 0,
        }
    }
}

pub struct Publisher {
    socket: TcpStream,
    encoder: ChunkEncoder,
    decoder: ChunkDecoder,
    input: BytesMut,
    options: PublishOptions,
    stream_id: u32,
    next_tx: f64,
}

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

impl Publisher {
    /// Connects, handshakes and publishes `key` on `app`; returns once the server said
    /// `NetStream.Publish.Start`, or the server's refusal.
    pub async fn connect(
        addr: SocketAddr,
        app: &str,
        key: &str,
        options: PublishOptions,
    ) -> Result<Publisher, ClientError> {
        let mut socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let input = handshake(&mut socket).await?;
        let mut encoder = ChunkEncoder::new();
        encoder.set_repeat_extended_timestamp(options.repeat_extended_timestamp);
        let mut publisher = Publisher {
            socket,
            encoder,
            decoder: ChunkDecoder::new(),
            input,
            options,
            stream_id: 0,
            next_tx: 1.0,
        };
        let tc_url = format!("rtmp://{addr}/{app}");
        let connect = message::object(&[
            ("app", Amf0Value::Utf8String(app.into())),
            ("type", Amf0Value::Utf8String("nonprivate".into())),
            (
                "flashVer",
                Amf0Value::Utf8String("FMLE/3.0 (compatible; tally)".into()),
            ),
            ("tcUrl", Amf0Value::Utf8String(tc_url)),
        ]);
        publisher.command("connect", connect, vec![], 0).await?;
        publisher.expect_result("connect").await?;
        if publisher.options.chunk_size != 128 {
            let size = publisher.options.chunk_size;
            publisher
                .send(&ControlMessage::SetChunkSize(size).to_message())
                .await?;
            publisher.encoder.set_chunk_size(size);
        }
        let key_arg = vec![Amf0Value::Utf8String(key.into())];
        publisher
            .command("releaseStream", Amf0Value::Null, key_arg.clone(), 0)
            .await?;
        publisher
            .command("FCPublish", Amf0Value::Null, key_arg, 0)
            .await?;
        publisher
            .command("createStream", Amf0Value::Null, vec![], 0)
            .await?;
        let result = publisher.expect_result("createStream").await?;
        publisher.stream_id = match result.args.first() {
            Some(Amf0Value::Number(id)) => *id as u32,
            _ => 1,
        };
        let args = vec![
            Amf0Value::Utf8String(key.into()),
            Amf0Value::Utf8String("live".into()),
        ];
        let stream_id = publisher.stream_id;
        publisher
            .command("publish", Amf0Value::Null, args, stream_id)
            .await?;
        loop {
            let reply = publisher.next_command("publish").await?;
            if reply.name != "onStatus" {
                continue;
            }
            let code = status_code(&reply);
            if code == "NetStream.Publish.Start" {
                return Ok(publisher);
            }
            return Err(ClientError::Refused(code));
        }
    }

    async fn send(&mut self, msg: &RawMessage) -> Result<(), ClientError> {
        let mut out = BytesMut::new();
        self.encoder.encode(msg, &mut out);
        self.socket.write_all(&out).await?;
        Ok(())
    }

    async fn command(
        &mut self,
        name: &str,
        object: Amf0Value,
        args: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<(), ClientError> {
        let command = Command {
            name: name.into(),
            transaction_id: if name == "publish" { 0.0 } else { self.next_tx },
            object,
            args,
        };
        self.next_tx += 1.0;
        self.send(&command.to_message(stream_id)).await
    }

    async fn next_command(&mut self, waiting_for: &'static str) -> Result<Command, ClientError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            while let Some(msg) = self.decoder.decode(&mut self.input)? {
                match msg.type_id {
                    type_id::SET_CHUNK_SIZE => {
                        if let ControlMessage::SetChunkSize(size) =
                            ControlMessage::parse(msg.type_id, &msg.payload)?
                        {
                            self.decoder.set_chunk_size(size)?;
                        }
                    }
                    type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                        return Ok(Command::parse(msg.type_id, &msg.payload)?)
                    }
                    _ => {}
                }
            }
            let read = timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.socket.read_buf(&mut self.input),
            )
            .await
            .map_err(|_| ClientError::Timeout(waiting_for))??;
            if read == 0 {
                return Err(ClientError::Refused(format!(
                    "connection closed while waiting for {waiting_for}"
                )));
            }
        }
    }

    async fn expect_result(&mut self, waiting_for: &'static str) -> Result<Command, ClientError> {
        loop {
            let reply = self.next_command(waiting_for).await?;
            match reply.name.as_str() {
                "_result" => return Ok(reply),
                "_error" => return Err(ClientError::Refused(status_code(&reply))),
                _ => continue,
            }
        }
    }

    /// Sends media tags (audio, video, script) on the published stream.
    pub async fn send_tags(&mut self, tags: &[Tag]) -> Result<(), ClientError> {
        if self.options.aggregate > 0 {
            return self.send_aggregates(tags).await;
        }
        let started = Instant::now();
        let first_ts = tags.first().map_or(0, |t| t.timestamp_ms);
        let mut skip = vec![false; tags.len()];
        let mut out = BytesMut::new();
        for (i, tag) in tags.iter().enumerate() {
            if skip[i] {
                continue;
            }
            if self.options.realtime {
                let due = Duration::from_millis(u64::from(tag.timestamp_ms.wrapping_sub(first_ts)));
                tokio::time::sleep_until(started + due).await;
            }
            let msg = self.tag_message(tag);
            let chunks = self.encoder.encode_chunks(&msg);
            // Interleave: the next audio message's chunks go between this video message's chunks.
            let interleave =
                self.options.interleave && self.options.audio_csid != self.options.video_csid;
            let partner = (interleave && tag.kind == TagKind::Video && chunks.len() > 1)
                .then(|| (i + 1..tags.len()).find(|&j| tags[j].kind == TagKind::Audio && !skip[j]))
                .flatten()
                .filter(|&j| j <= i + 4);
            let partner_chunks = match partner {
                Some(j) => {
                    skip[j] = true;
                    let audio = self.tag_message(&tags[j]);
                    self.encoder.encode_chunks(&audio)
                }
                None => Vec::new(),
            };
            let mut partner_iter = partner_chunks.into_iter();
            for chunk in chunks {
                out.extend_from_slice(&chunk);
                if let Some(audio_chunk) = partner_iter.next() {
                    out.extend_from_slice(&audio_chunk);
                }
            }
            for rest in partner_iter {
                out.extend_from_slice(&rest);
            }
            if out.len() >= 64 * 1024 || self.options.realtime {
                self.socket.write_all(&out.split()).await?;
            }
        }
        self.socket.write_all(&out).await?;
        Ok(())
    }

    /// Sends tags packed into Aggregate messages: FLV tag records back to back, timestamps
    /// relative to the message's own.
    async fn send_aggregates(&mut self, tags: &[Tag]) -> Result<(), ClientError> {
        let mut out = BytesMut::new();
        for group in tags.chunks(self.options.aggregate) {
            let mut payload = BytesMut::new();
            for tag in group {
                let body = self.tag_message(tag).payload;
                let kind = match tag.kind {
                    TagKind::Audio => type_id::AUDIO,
                    TagKind::Video => type_id::VIDEO,
                    TagKind::Script => type_id::DATA_AMF0,
                };
                let ts = tag.timestamp_ms;
                payload.extend_from_slice(&[kind]);
                payload.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
                payload.extend_from_slice(&ts.to_be_bytes()[1..]);
                payload.extend_from_slice(&[(ts >> 24) as u8, 0, 0, 0]);
                payload.extend_from_slice(&body);
                payload.extend_from_slice(&(body.len() as u32 + 11).to_be_bytes());
            }
            let msg = RawMessage {
                csid: self.options.video_csid,
                timestamp: group[0]
                    .timestamp_ms
                    .wrapping_add(self.options.timestamp_offset),
                type_id: type_id::AGGREGATE,
                stream_id: self.stream_id,
                payload: payload.freeze(),
            };
            self.encoder.encode(&msg, &mut out);
        }
        self.socket.write_all(&out).await?;
        Ok(())
    }

    fn tag_message(&self, tag: &Tag) -> RawMessage {
        let (type_id, csid, body): (u8, u32, Bytes) = match tag.kind {
            TagKind::Audio => (type_id::AUDIO, self.options.audio_csid, tag.body.clone()),
            TagKind::Video => (type_id::VIDEO, self.options.video_csid, tag.body.clone()),
            TagKind::Script => (type_id::DATA_AMF0, 4, set_data_frame(&tag.body)),
        };
        RawMessage {
            csid,
            timestamp: tag.timestamp_ms.wrapping_add(self.options.timestamp_offset),
            type_id,
            stream_id: self.stream_id,
            payload: body,
        }
    }

    /// Says goodbye the way OBS does, then closes.
    pub async fn finish(mut self) -> Result<(), ClientError> {
        let key = vec![Amf0Value::Null];
        self.command("FCUnpublish", Amf0Value::Null, key, 0).await?;
        let id = f64::from(self.stream_id);
        self.command(
            "deleteStream",
            Amf0Value::Null,
            vec![Amf0Value::Number(id)],
            0,
        )
        .await?;
        self.socket.shutdown().await?;
        Ok(())
    }
}

/// FLV files store `onMetaData`; publishers send it wrapped as `@setDataFrame`.
fn set_data_frame(body: &Bytes) -> Bytes {
    let mut out = rml_amf0::serialize(&vec![Amf0Value::Utf8String("@setDataFrame".into())])
        .unwrap_or_default();
    out.extend_from_slice(body);
    Bytes::from(out)
}

fn status_code(command: &Command) -> String {
    command
        .args
        .iter()
        .find_map(|a| match a {
            Amf0Value::Object(map) => match map.get("code") {
                Some(Amf0Value::Utf8String(code)) => Some(code.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_else(|| command.name.clone())
}

async fn handshake(socket: &mut TcpStream) -> Result<BytesMut, ClientError> {
    let mut handshake = Handshake::new(PeerType::Client);
    let c0c1 = handshake
        .generate_outbound_p0_and_p1()
        .map_err(|e| ClientError::Handshake(format!("{e:?}")))?;
    socket.write_all(&c0c1).await?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = timeout(REPLY_TIMEOUT, socket.read(&mut buf))
            .await
            .map_err(|_| ClientError::Timeout("handshake"))??;
        if n == 0 {
            return Err(ClientError::Handshake(
                "server closed the connection".into(),
            ));
        }
        match handshake.process_bytes(&buf[..n]) {
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                socket.write_all(&response_bytes).await?;
            }
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => {
                socket.write_all(&response_bytes).await?;
                return Ok(BytesMut::from(&remaining_bytes[..]));
            }
            Err(e) => return Err(ClientError::Handshake(format!("{e:?}"))),
        }
    }
}
