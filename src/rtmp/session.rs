//! One publisher's RTMP session after the handshake: commands, protocol control and media.
//!
//! Synchronous and socket-free: messages in, reply bytes appended to an output buffer, frames
//! pushed into the camera. The command order follows OBS (connect, releaseStream, FCPublish,
//! createStream, _checkbw, publish, then @setDataFrame onMetaData; FCUnpublish and deleteStream
//! on stop), which ffmpeg and librtmp also follow.

use std::{collections::HashSet, sync::Arc};

use bytes::{Bytes, BytesMut};
use rml_amf0::Amf0Value;

use super::chunk::{ChunkDecoder, ChunkEncoder, RawMessage};
use super::message::{self, type_id, Command, ControlMessage, UserControlEvent};
use crate::camera::{ClaimError, Publishing};
use crate::codec;
use crate::config::redact_key;
use crate::flv::{self, AudioTag, ScriptTag, TagKind, VideoTag};
use crate::media::{AudioConfig, Frame, Track, VideoConfig};
use crate::registry::Registry;

/// Chunk size we send with; larger chunks mean fewer headers for our (small) replies.
pub const OUT_CHUNK_SIZE: u32 = 4096;
/// Acknowledgement window we ask the peer to use, and the default for ours.
pub const WINDOW_ACK_SIZE: u32 = 2_500_000;
/// The message stream id `createStream` hands out.
const STREAM_ID: u32 = 1;
/// Chunk stream for onStatus on the media stream, as servers conventionally use.
const STATUS_CSID: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("chunk stream: {0}")]
    Chunk(#[from] super::chunk::ChunkError),
    #[error("message: {0}")]
    Message(#[from] message::MessageError),
    #[error("publish refused: {0}")]
    Refused(String),
}

/// What the connection should do after a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Send what is buffered, then close: the peer was refused or said goodbye.
    Close,
    /// The peer asked to publish: decide (the `on_publish` webhook), then call
    /// [`Session::finish_publish`] or [`Session::refuse_publish`]. Messages after the publish
    /// command stay in the input buffer until then.
    Authorize(PublishRequest),
}

/// A publish waiting for authorization, as the encoder asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The stream name without its query string: the stream key.
    pub name: String,
    /// The query string after `?` in the name (OBS and ffmpeg users put tokens there), raw.
    pub args: String,
    /// The publish type (`live`, `record`, `append`); `live` when the encoder sent none.
    pub kind: String,
}

/// What the encoder said about itself in `connect`, for webhooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectInfo {
    /// `flashVer`: the encoder's name and version.
    pub flash_ver: String,
    /// `swfUrl`, usually empty for encoders.
    pub swf_url: String,
    /// `tcUrl`: the server URL the encoder was configured with.
    pub tc_url: String,
    /// `pageUrl`, usually empty for encoders.
    pub page_url: String,
}

/// One connection's RTMP state after the handshake.
pub struct Session {
    /// Where a publish looks its stream key up.
    registry: Arc<Registry>,
    /// The RTMP application we accept (`rtmp://host/<app>/<key>`).
    app: String,
    /// Connection number, non-zero; the camera remembers which session holds it.
    id: u64,
    /// Reassembles the peer's chunks into messages.
    decoder: ChunkDecoder,
    /// Chunks our replies.
    encoder: ChunkEncoder,
    /// Replies waiting to be written to the socket.
    pub out: BytesMut,
    /// `connect` succeeded: commands on the media stream are now accepted.
    connected: bool,
    /// What `connect` told us about the encoder.
    connect_info: ConnectInfo,
    /// A publish command was handed out as [`Flow::Authorize`] and not yet decided.
    authorizing: bool,
    /// The camera held while publishing.
    publishing: Option<Publishing>,
    /// The RTMP timestamp (ms) of the newest audio or video message.
    timestamp: u32,
    /// The video configuration in force, from the last AVC sequence header.
    video: Option<Arc<VideoConfig>>,
    /// The audio configuration in force, from the last AAC sequence header.
    audio: Option<Arc<AudioConfig>>,
    /// Unsupported things already logged this session: log once, not per frame.
    refused: HashSet<String>,
    /// Bytes received, for the peer's acknowledgement window.
    received: u64,
    /// `received` when we last acknowledged.
    acked: u64,
    /// The acknowledgement window the peer asked for.
    peer_window: u32,
    /// Frames dropped because they arrived before their codec's sequence header.
    pub dropped_frames: u64,
    /// Stream metadata was logged this session.
    metadata_logged: bool,
}

impl Session {
    pub fn new(registry: Arc<Registry>, app: &str, id: u64) -> Self {
        Session {
            registry,
            app: app.to_string(),
            id,
            decoder: ChunkDecoder::new(),
            encoder: ChunkEncoder::new(),
            out: BytesMut::with_capacity(8192),
            connected: false,
            connect_info: ConnectInfo::default(),
            authorizing: false,
            publishing: None,
            timestamp: 0,
            video: None,
            audio: None,
            refused: HashSet::new(),
            received: 0,
            acked: 0,
            peer_window: WINDOW_ACK_SIZE,
            dropped_frames: 0,
            metadata_logged: false,
        }
    }

    pub fn is_publishing(&self) -> bool {
        self.publishing.is_some()
    }

    /// The camera being published.
    pub fn camera(&self) -> Option<&Arc<crate::camera::Camera>> {
        self.publishing.as_ref().map(|p| p.camera())
    }

    /// What `connect` told us about the encoder.
    pub fn connect_info(&self) -> &ConnectInfo {
        &self.connect_info
    }

    /// The RTMP application this session accepts.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The RTMP timestamp (ms) of the newest audio or video message.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The camera being published, as `event/camera`.
    pub fn camera_label(&self) -> Option<&str> {
        self.publishing.as_ref().map(|p| p.camera().label.as_str())
    }

    /// Decodes and handles every complete message in `input`, stopping early at anything but
    /// [`Flow::Continue`] (the rest stays in `input`; call again with `fresh` 0 to go on).
    pub fn receive(&mut self, input: &mut BytesMut, fresh: usize) -> Result<Flow, SessionError> {
        self.received += fresh as u64;
        if self.received - self.acked >= u64::from(self.peer_window) {
            self.acked = self.received;
            self.send(
                ControlMessage::Acknowledgement {
                    sequence: self.received as u32,
                }
                .to_message(),
            );
        }
        while let Some(msg) = self.decoder.decode(input)? {
            match self.handle(msg)? {
                Flow::Continue => {}
                flow => return Ok(flow),
            }
        }
        Ok(Flow::Continue)
    }

    fn send(&mut self, msg: RawMessage) {
        self.encoder.encode(&msg, &mut self.out);
    }

    fn send_command(&mut self, command: Command, stream_id: u32) {
        let mut msg = command.to_message(stream_id);
        if stream_id != 0 {
            msg.csid = STATUS_CSID;
        }
        self.send(msg);
    }

    fn handle(&mut self, msg: RawMessage) -> Result<Flow, SessionError> {
        match msg.type_id {
            type_id::SET_CHUNK_SIZE
            | type_id::ABORT
            | type_id::ACKNOWLEDGEMENT
            | type_id::USER_CONTROL
            | type_id::WINDOW_ACK_SIZE
            | type_id::SET_PEER_BANDWIDTH => {
                self.control(ControlMessage::parse(msg.type_id, &msg.payload)?)?;
                Ok(Flow::Continue)
            }
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                self.command(Command::parse(msg.type_id, &msg.payload)?)
            }
            type_id::DATA_AMF0 => {
                self.script(&msg.payload);
                Ok(Flow::Continue)
            }
            type_id::DATA_AMF3 => {
                // AMF3 data is a 0x00 marker then AMF0.
                if msg.payload.len() > 1 {
                    self.script(&msg.payload[1..]);
                }
                Ok(Flow::Continue)
            }
            type_id::AUDIO => {
                self.timestamp = msg.timestamp;
                self.audio(msg.timestamp, &msg.payload);
                Ok(Flow::Continue)
            }
            type_id::VIDEO => {
                self.timestamp = msg.timestamp;
                self.video(msg.timestamp, &msg.payload);
                Ok(Flow::Continue)
            }
            type_id::AGGREGATE => {
                self.timestamp = msg.timestamp;
                self.aggregate(msg.timestamp, msg.payload);
                Ok(Flow::Continue)
            }
            other => {
                tracing::debug!(type_id = other, "ignoring RTMP message type");
                Ok(Flow::Continue)
            }
        }
    }

    fn control(&mut self, control: ControlMessage) -> Result<(), SessionError> {
        match control {
            ControlMessage::SetChunkSize(size) => self.decoder.set_chunk_size(size)?,
            ControlMessage::Abort { csid } => self.decoder.abort(csid),
            ControlMessage::WindowAckSize(size) => self.peer_window = size.max(1),
            ControlMessage::UserControl(UserControlEvent::PingRequest(time)) => self.send(
                ControlMessage::UserControl(UserControlEvent::PingResponse(time)).to_message(),
            ),
            _ => {}
        }
        Ok(())
    }

    fn command(&mut self, command: Command) -> Result<Flow, SessionError> {
        let tx = command.transaction_id;
        match command.name.as_str() {
            "connect" => self.connect(&command),
            "createStream" => {
                self.reply(
                    tx,
                    Amf0Value::Null,
                    vec![Amf0Value::Number(f64::from(STREAM_ID))],
                );
                Ok(Flow::Continue)
            }
            "releaseStream" | "FCPublish" | "_checkbw" => {
                if tx != 0.0 {
                    self.reply(tx, Amf0Value::Null, vec![Amf0Value::Undefined]);
                }
                Ok(Flow::Continue)
            }
            "publish" => self.publish(&command),
            "FCUnpublish" | "deleteStream" | "closeStream" => {
                if let Some(label) = self.camera_label() {
                    tracing::info!(camera = label, "publisher stopped");
                }
                self.publishing = None;
                Ok(Flow::Continue)
            }
            "play" | "play2" => {
                self.on_status(
                    "error",
                    "NetStream.Play.Failed",
                    "tally serves playback over HLS only",
                );
                Ok(Flow::Close)
            }
            other => {
                tracing::debug!(command = other, "ignoring RTMP command");
                Ok(Flow::Continue)
            }
        }
    }

    fn reply(&mut self, tx: f64, object: Amf0Value, args: Vec<Amf0Value>) {
        let command = Command {
            name: "_result".into(),
            transaction_id: tx,
            object,
            args,
        };
        self.send_command(command, 0);
    }

    fn on_status(&mut self, level: &str, code: &str, description: &str) {
        let command = Command {
            name: "onStatus".into(),
            transaction_id: 0.0,
            object: Amf0Value::Null,
            args: vec![message::status(level, code, description)],
        };
        self.send_command(command, STREAM_ID);
    }

    fn connect(&mut self, command: &Command) -> Result<Flow, SessionError> {
        let property = |name: &str| match &command.object {
            Amf0Value::Object(props) => match props.get(name) {
                Some(Amf0Value::Utf8String(value)) => value.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let app = property("app");
        self.connect_info = ConnectInfo {
            flash_ver: property("flashVer"),
            swf_url: property("swfUrl"),
            tc_url: property("tcUrl"),
            page_url: property("pageUrl"),
        };
        // Some clients send "live/" or "live?token=..."; the application is what precedes them.
        let app_name = app.split(['?', '/']).next().unwrap_or_default();
        if app_name != self.app {
            tracing::warn!(app = %app_name, "connect refused: unknown application");
            let error = Command {
                name: "_error".into(),
                transaction_id: command.transaction_id,
                object: Amf0Value::Null,
                args: vec![message::status(
                    "error",
                    "NetConnection.Connect.Rejected",
                    &format!(
                        "unknown application; publish to rtmp://HOST/{}/STREAM_KEY",
                        self.app
                    ),
                )],
            };
            self.send_command(error, 0);
            return Ok(Flow::Close);
        }
        self.send(ControlMessage::WindowAckSize(WINDOW_ACK_SIZE).to_message());
        self.send(
            ControlMessage::SetPeerBandwidth {
                size: WINDOW_ACK_SIZE,
                limit: 2,
            }
            .to_message(),
        );
        self.send(ControlMessage::SetChunkSize(OUT_CHUNK_SIZE).to_message());
        self.encoder.set_chunk_size(OUT_CHUNK_SIZE);
        let properties = message::object(&[
            ("fmsVer", Amf0Value::Utf8String("FMS/3,0,1,123".into())),
            ("capabilities", Amf0Value::Number(31.0)),
        ]);
        let mut info = message::status(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        if let Amf0Value::Object(map) = &mut info {
            map.insert("objectEncoding".into(), Amf0Value::Number(0.0));
        }
        self.reply(command.transaction_id, properties, vec![info]);
        self.connected = true;
        Ok(Flow::Continue)
    }

    /// Checks a publish command and hands it out for authorization.
    fn publish(&mut self, command: &Command) -> Result<Flow, SessionError> {
        let name = match command.args.first() {
            Some(Amf0Value::Utf8String(name)) => name.as_str(),
            _ => "",
        };
        // OBS and ffmpeg may append "?query" to the key.
        let (key, args) = name.split_once('?').unwrap_or((name, ""));
        let kind = match command.args.get(1) {
            Some(Amf0Value::Utf8String(kind)) if !kind.is_empty() => kind.clone(),
            _ => "live".to_string(),
        };
        if !self.connected {
            return Err(SessionError::Refused("publish before connect".into()));
        }
        if self.publishing.is_some() || self.authorizing {
            return Err(SessionError::Refused(
                "second publish on one connection".into(),
            ));
        }
        self.authorizing = true;
        Ok(Flow::Authorize(PublishRequest {
            name: key.to_string(),
            args: args.to_string(),
            kind,
        }))
    }

    /// Refuses the publish being authorized: `NetStream.Publish.BadName`, then close.
    pub fn refuse_publish(&mut self, description: &str) -> Flow {
        self.authorizing = false;
        self.on_status("error", "NetStream.Publish.BadName", description);
        Flow::Close
    }

    /// Goes on with the publish being authorized, as stream key `key` (the name the encoder
    /// sent, or the one the webhook renamed it to): looks the camera up and claims it.
    pub fn finish_publish(&mut self, key: &str) -> Flow {
        self.authorizing = false;
        let Some(camera) = self.registry.by_key(key) else {
            tracing::warn!(key = %redact_key(key), "publish refused: unknown stream key");
            self.on_status("error", "NetStream.Publish.BadName", "unknown stream key");
            return Flow::Close;
        };
        match camera.claim(self.id) {
            Ok(publishing) => {
                tracing::info!(camera = %camera.label, key = %redact_key(key), "publisher live");
                self.send(
                    ControlMessage::UserControl(UserControlEvent::StreamBegin(STREAM_ID))
                        .to_message(),
                );
                self.on_status("status", "NetStream.Publish.Start", "Publishing.");
                self.publishing = Some(publishing);
                Flow::Continue
            }
            Err(ClaimError::AlreadyLive) => {
                tracing::warn!(camera = %camera.label, key = %redact_key(key), "publish refused: camera already has a publisher");
                self.on_status(
                    "error",
                    "NetStream.Publish.BadName",
                    "stream key already publishing",
                );
                Flow::Close
            }
        }
    }

    /// Logs a refusal once per session.
    fn refuse(&mut self, what: String) {
        if self.refused.insert(what.clone()) {
            let camera = self.camera_label().unwrap_or("-").to_string();
            tracing::warn!(camera = %camera, "refusing {what}; the track is dropped");
        }
    }

    fn script(&mut self, payload: &[u8]) {
        match flv::parse_script(payload) {
            Ok(ScriptTag::Metadata(meta)) => {
                let avc = matches!(meta.video_codec_id, Some(id) if id == 7.0);
                if let Some(publishing) = &self.publishing {
                    if avc {
                        publishing.expect_video();
                    }
                    // Some muxers (GStreamer's flvmux) repeat metadata: log it once.
                    if std::mem::replace(&mut self.metadata_logged, true) {
                        return;
                    }
                    tracing::info!(
                        camera = %publishing.camera().label,
                        encoder = meta.encoder.as_deref().unwrap_or("-"),
                        width = meta.width.unwrap_or_default(),
                        height = meta.height.unwrap_or_default(),
                        fps = meta.framerate.unwrap_or_default(),
                        "stream metadata"
                    );
                }
            }
            Ok(ScriptTag::Other(_)) => {}
            Err(e) => self.refuse(format!("script data ({e})")),
        }
    }

    fn video(&mut self, timestamp: u32, payload: &Bytes) {
        if self.publishing.is_none() {
            return;
        }
        match flv::parse_video(payload) {
            Ok(VideoTag::AvcSequenceHeader(record)) => {
                if self.video.as_ref().is_some_and(|v| v.avcc == record) {
                    return; // a repeated header is not a new configuration
                }
                match codec::parse_avcc(record) {
                    Ok(config) => {
                        let label = self.camera_label().unwrap_or("-");
                        tracing::info!(
                            camera = label,
                            codec = config.codec_string(),
                            width = config.width,
                            height = config.height,
                            "video configuration"
                        );
                        self.video = Some(Arc::new(config));
                        if let Some(p) = &self.publishing {
                            p.expect_video();
                        }
                    }
                    Err(e) => self.refuse(format!("AVC sequence header ({e})")),
                }
            }
            Ok(VideoTag::AvcNalu {
                keyframe,
                composition_time_ms,
                data,
            }) => {
                let Some(config) = self.video.clone() else {
                    self.dropped_frames += 1;
                    return;
                };
                if data.is_empty() {
                    return;
                }
                let publishing = self.publishing.as_ref().expect("checked above");
                let stamp =
                    publishing.with_ingest(|i| i.timeline.video(timestamp, composition_time_ms));
                publishing.push(Frame {
                    track: Track::Video(config),
                    dts: stamp.dts,
                    cts_offset: composition_time_ms.saturating_mul(90),
                    keyframe,
                    discontinuity: stamp.discontinuity,
                    payload: data,
                    arrival: std::time::Instant::now(),
                });
            }
            Ok(VideoTag::AvcEndOfSequence | VideoTag::Command) => {}
            Err(e) => self.refuse(format!("video: {e}")),
        }
    }

    fn audio(&mut self, timestamp: u32, payload: &Bytes) {
        if self.publishing.is_none() {
            return;
        }
        match flv::parse_audio(payload) {
            Ok(AudioTag::AacSequenceHeader(asc)) => {
                if self.audio.as_ref().is_some_and(|a| a.asc == asc) {
                    return;
                }
                match codec::parse_asc(asc) {
                    Ok(config) => {
                        let label = self.camera_label().unwrap_or("-");
                        tracing::info!(
                            camera = label,
                            codec = config.codec_string(),
                            sample_rate = config.sample_rate,
                            channels = config.channels,
                            "audio configuration"
                        );
                        self.audio = Some(Arc::new(config));
                    }
                    Err(e) => self.refuse(format!("AAC sequence header ({e})")),
                }
            }
            Ok(AudioTag::AacRaw(data)) => {
                let Some(config) = self.audio.clone() else {
                    self.dropped_frames += 1;
                    return;
                };
                let publishing = self.publishing.as_ref().expect("checked above");
                let rate = config.sample_rate;
                let stamp = publishing.with_ingest(|i| i.timeline.audio(timestamp, rate));
                publishing.push(Frame {
                    track: Track::Audio(config),
                    dts: stamp.dts,
                    cts_offset: 0,
                    keyframe: true,
                    discontinuity: stamp.discontinuity,
                    payload: data,
                    arrival: std::time::Instant::now(),
                });
            }
            Err(e) => self.refuse(format!("audio: {e}")),
        }
    }

    /// An aggregate message is FLV tags back to back; their timestamps are relative to the
    /// first one and rebased onto the message's own.
    fn aggregate(&mut self, timestamp: u32, payload: Bytes) {
        let mut base: Option<u32> = None;
        for tag in flv::tags(payload) {
            let tag = match tag {
                Ok(tag) => tag,
                Err(e) => {
                    self.refuse(format!("aggregate message ({e})"));
                    return;
                }
            };
            let first = *base.get_or_insert(tag.timestamp_ms);
            let ts = timestamp.wrapping_add(tag.timestamp_ms.wrapping_sub(first));
            match tag.kind {
                TagKind::Audio => self.audio(ts, &tag.body),
                TagKind::Video => self.video(ts, &tag.body),
                TagKind::Script => self.script(&tag.body),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::ChunkEncoder;

    /// The peer asks for acknowledgements every `window` bytes: once that many have arrived, the
    /// session acknowledges with the running byte count (RTMP 5.4.3).
    #[tokio::test]
    async fn acknowledges_each_window_of_received_bytes() {
        let store = Arc::new(crate::store::Store::open_in_memory().unwrap());
        let writer = crate::program::actor::store_writer(store);
        let config = crate::config::Config::default();
        let registry = Arc::new(Registry::new(&config, writer, &[], &[]));
        let mut session = Session::new(registry, "live", 1);
        let mut encoder = ChunkEncoder::new();

        let mut wire = BytesMut::new();
        encoder.encode(&ControlMessage::WindowAckSize(1000).to_message(), &mut wire);
        let fresh = wire.len();
        session.receive(&mut wire, fresh).unwrap();
        assert!(session.out.is_empty(), "nothing to acknowledge yet");

        // 1500 bytes of a message type the session ignores.
        let filler = RawMessage {
            csid: 8,
            timestamp: 0,
            type_id: 30,
            stream_id: 0,
            payload: Bytes::from(vec![0u8; 1500]),
        };
        let mut wire = BytesMut::new();
        encoder.encode(&filler, &mut wire);
        let total = (fresh + wire.len()) as u32;
        let fresh = wire.len();
        session.receive(&mut wire, fresh).unwrap();

        let mut decoder = ChunkDecoder::new();
        let mut out = session.out.split();
        let ack = decoder
            .decode(&mut out)
            .unwrap()
            .expect("an acknowledgement");
        assert_eq!(
            ControlMessage::parse(ack.type_id, &ack.payload).unwrap(),
            ControlMessage::Acknowledgement { sequence: total }
        );
    }
}
