//! An RTMP publisher: tally's own client, used to push to other servers (restreaming, over
//! `rtmp://` or `rtmps://`) and, in tests, to publish fixtures with the chunk-level variations real
//! encoders produce (interleaved chunk streams, 3-byte chunk stream ids, extended timestamps with
//! and without the type-3 repeat).
//!
//! The connection is generic: plain TCP, or TLS over TCP (rustls, with the Mozilla roots of
//! `webpki-roots` as trust anchors) for `rtmps://`.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::{timeout, Instant},
};
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};

use super::chunk::{ChunkDecoder, ChunkEncoder, RawMessage};
use super::message::{self, type_id, Command, ControlMessage, UserControlEvent};
use crate::flv::{Tag, TagKind};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("refused by server: {0}")]
    Refused(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server closed the connection while we were publishing.
    #[error("server closed the connection")]
    Closed,
    /// The URL's host is not a name TLS can verify a certificate for.
    #[error("TLS: {0}")]
    Tls(String),
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
    /// Chunk stream id for video (see `audio_csid`).
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

/// A byte stream the publisher can run over: a `TcpStream`, or a TLS stream over one.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// Where to publish: an `rtmp://` or `rtmps://` URL taken apart. The stream name (the key) is
/// not part of it: it is a secret and travels separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `rtmps://`: TLS over TCP.
    pub tls: bool,
    /// Host name or IP address (without IPv6 brackets); also the TLS server name.
    pub host: String,
    /// TCP port: from the URL, else 1935 for `rtmp` and 443 for `rtmps`.
    pub port: u16,
    /// The application: the URL path without its leading and trailing slashes (may contain
    /// more slashes and a query string, which servers treat as part of it).
    pub app: String,
    /// The URL without a trailing slash, sent as `tcUrl` in `connect`.
    pub tc_url: String,
}

/// Why a publish URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the URL must start with rtmp:// or rtmps://")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL's port is not a number from 1 to 65535")]
    Port,
    #[error("the URL has no application path (e.g. rtmp://host/live)")]
    NoApp,
    #[error("the URL must not contain spaces or control characters")]
    Characters,
}

/// Default port of plain RTMP.
pub const RTMP_PORT: u16 = 1935;
/// Default port of RTMP over TLS.
pub const RTMPS_PORT: u16 = 443;

impl Endpoint {
    /// Parses `rtmp://host[:port]/app[/more]` or `rtmps://...`.
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Characters);
        }
        let (tls, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "rtmps://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(url, "rtmp://") {
            (false, rest)
        } else {
            return Err(UrlError::Scheme);
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        // No credentials in the authority: drop a `user@` part rather than send it anywhere.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or(UrlError::NoHost)?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let port = match port {
            None => {
                if tls {
                    RTMPS_PORT
                } else {
                    RTMP_PORT
                }
            }
            Some(text) => text
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or(UrlError::Port)?,
        };
        let app = path.trim_matches('/');
        if app.is_empty() {
            return Err(UrlError::NoApp);
        }
        Ok(Endpoint {
            tls,
            host: host.to_string(),
            port,
            app: app.to_string(),
            tc_url: url.trim_end_matches('/').to_string(),
        })
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The TLS settings for `rtmps://`: ring, the safe default protocol versions, and the Mozilla
/// roots from `webpki-roots`. Built once.
pub fn default_tls() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

pub struct Publisher {
    /// The connection: plain TCP, or TLS over TCP.
    socket: Box<dyn Transport>,
    /// Our chunk stream state (chunk size, last header per csid).
    encoder: ChunkEncoder,
    /// The server's chunk stream state, for its replies, pings and status messages.
    decoder: ChunkDecoder,
    /// Bytes read from the server and not yet decoded.
    input: BytesMut,
    /// How the chunk stream is shaped.
    options: PublishOptions,
    /// The message stream `createStream` gave us; media goes there.
    stream_id: u32,
    /// Transaction id of the next command.
    next_tx: f64,
    /// Control replies (ping responses) encoded by [`Publisher::read_incoming`] and not yet
    /// written: that call must stay cancel-safe, so it never writes.
    replies: BytesMut,
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
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let tc_url = format!("rtmp://{addr}/{app}");
        Self::publish_on(Box::new(socket), &tc_url, app, key, options).await
    }

    /// Connects to a parsed URL (TLS for `rtmps://`, trusting the `webpki-roots` anchors) and
    /// publishes `key` on its application.
    pub async fn connect_url(
        endpoint: &Endpoint,
        key: &str,
        options: PublishOptions,
    ) -> Result<Publisher, ClientError> {
        Self::connect_url_with_tls(endpoint, key, options, default_tls()).await
    }

    /// Same as [`Publisher::connect_url`], with other TLS settings (e.g. a private CA).
    pub async fn connect_url_with_tls(
        endpoint: &Endpoint,
        key: &str,
        options: PublishOptions,
        tls: Arc<ClientConfig>,
    ) -> Result<Publisher, ClientError> {
        let tcp = timeout(
            REPLY_TIMEOUT,
            TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
        )
        .await
        .map_err(|_| ClientError::Timeout("the TCP connection"))??;
        tcp.set_nodelay(true)?;
        let socket: Box<dyn Transport> = if endpoint.tls {
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|e| ClientError::Tls(format!("server name {:?}: {e}", endpoint.host)))?;
            let connector = tokio_rustls::TlsConnector::from(tls);
            let stream = timeout(REPLY_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| ClientError::Timeout("the TLS handshake"))?
                .map_err(|e| ClientError::Tls(e.to_string()))?;
            Box::new(stream)
        } else {
            Box::new(tcp)
        };
        Self::publish_on(socket, &endpoint.tc_url, &endpoint.app, key, options).await
    }

    /// Handshakes on an open connection, then `connect`, `createStream` and `publish`.
    async fn publish_on(
        mut socket: Box<dyn Transport>,
        tc_url: &str,
        app: &str,
        key: &str,
        options: PublishOptions,
    ) -> Result<Publisher, ClientError> {
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
            replies: BytesMut::new(),
        };
        let connect = message::object(&[
            ("app", Amf0Value::Utf8String(app.into())),
            ("type", Amf0Value::Utf8String("nonprivate".into())),
            (
                "flashVer",
                Amf0Value::Utf8String("FMLE/3.0 (compatible; tally)".into()),
            ),
            ("tcUrl", Amf0Value::Utf8String(tc_url.into())),
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
        let mut out = self.replies.split();
        self.encoder.encode(msg, &mut out);
        self.socket.write_all(&out).await?;
        self.socket.flush().await?;
        Ok(())
    }

    /// Sends one media tag (audio, video, or script data such as `onMetaData`, which goes out
    /// wrapped in `@setDataFrame`) and flushes it; returns the bytes written on the wire.
    pub async fn send_tag(&mut self, tag: &Tag) -> Result<usize, ClientError> {
        let msg = self.tag_message(tag);
        let mut out = self.replies.split();
        out.reserve(msg.payload.len() + 64);
        self.encoder.encode(&msg, &mut out);
        self.socket.write_all(&out).await?;
        self.socket.flush().await?;
        Ok(out.len())
    }

    /// Writes the replies [`Publisher::read_incoming`] queued (they also go out with the next
    /// tag).
    pub async fn send_replies(&mut self) -> Result<(), ClientError> {
        if self.replies.is_empty() {
            return Ok(());
        }
        let out = self.replies.split();
        self.socket.write_all(&out).await?;
        self.socket.flush().await?;
        Ok(())
    }

    /// Waits for the server to send something and handles it: chunk size changes, aborts, ping
    /// requests (a response is queued for [`Publisher::send_replies`]), status messages.
    /// Returns an error when the connection closes or the server reports an error on the
    /// stream. Cancel-safe (it only reads), so it can race media in a `select!`.
    pub async fn read_incoming(&mut self) -> Result<(), ClientError> {
        self.input.reserve(4096);
        let read = self.socket.read_buf(&mut self.input).await?;
        if read == 0 {
            return Err(ClientError::Closed);
        }
        while let Some(msg) = self.decoder.decode(&mut self.input)? {
            match msg.type_id {
                type_id::SET_CHUNK_SIZE | type_id::ABORT | type_id::USER_CONTROL => {
                    match ControlMessage::parse(msg.type_id, &msg.payload)? {
                        ControlMessage::SetChunkSize(size) => self.decoder.set_chunk_size(size)?,
                        ControlMessage::Abort { csid } => self.decoder.abort(csid),
                        ControlMessage::UserControl(UserControlEvent::PingRequest(time)) => {
                            let pong =
                                ControlMessage::UserControl(UserControlEvent::PingResponse(time));
                            self.encoder.encode(&pong.to_message(), &mut self.replies);
                        }
                        _ => {}
                    }
                }
                type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                    let command = Command::parse(msg.type_id, &msg.payload)?;
                    if command.name == "_error" || status_level(&command) == Some("error") {
                        return Err(ClientError::Refused(status_code(&command)));
                    }
                }
                _ => {}
            }
        }
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
                self.socket.flush().await?;
            }
        }
        self.socket.write_all(&out).await?;
        self.socket.flush().await?;
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
        self.socket.flush().await?;
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

/// The `level` of a status object (`status`, `warning` or `error`), if the command carries one.
fn status_level(command: &Command) -> Option<&str> {
    command.args.iter().find_map(|a| match a {
        Amf0Value::Object(map) => match map.get("level") {
            Some(Amf0Value::Utf8String(level)) => Some(level.as_str()),
            _ => None,
        },
        _ => None,
    })
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

async fn handshake(socket: &mut Box<dyn Transport>) -> Result<BytesMut, ClientError> {
    let mut handshake = Handshake::new(PeerType::Client);
    let c0c1 = handshake
        .generate_outbound_p0_and_p1()
        .map_err(|e| ClientError::Handshake(format!("{e:?}")))?;
    socket.write_all(&c0c1).await?;
    socket.flush().await?;
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
                socket.flush().await?;
            }
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => {
                socket.write_all(&response_bytes).await?;
                socket.flush().await?;
                return Ok(BytesMut::from(&remaining_bytes[..]));
            }
            Err(e) => return Err(ClientError::Handshake(format!("{e:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn urls_of_the_platforms() {
        let youtube = endpoint("rtmp://a.rtmp.youtube.com/live2");
        assert_eq!(
            youtube,
            Endpoint {
                tls: false,
                host: "a.rtmp.youtube.com".into(),
                port: 1935,
                app: "live2".into(),
                tc_url: "rtmp://a.rtmp.youtube.com/live2".into(),
            }
        );
        let facebook = endpoint("rtmps://live-api-s.facebook.com:443/rtmp/");
        assert!(facebook.tls);
        assert_eq!(
            (facebook.host.as_str(), facebook.port, facebook.app.as_str()),
            ("live-api-s.facebook.com", 443, "rtmp")
        );
        assert_eq!(facebook.tc_url, "rtmps://live-api-s.facebook.com:443/rtmp");
        let twitch = endpoint("rtmp://live.twitch.tv/app");
        assert_eq!((twitch.port, twitch.app.as_str()), (1935, "app"));
    }

    #[test]
    fn default_ports_and_explicit_ones() {
        assert_eq!(endpoint("rtmps://example.com/live").port, RTMPS_PORT);
        assert_eq!(endpoint("rtmp://example.com/live").port, RTMP_PORT);
        assert_eq!(endpoint("rtmp://example.com:19350/live").port, 19350);
        assert_eq!(endpoint("RTMPS://example.com:8443/live").port, 8443);
        let v6 = endpoint("rtmp://[::1]:1936/live");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1936));
        assert_eq!(endpoint("rtmp://[::1]/live").port, 1935);
        assert_eq!(endpoint("rtmp://127.0.0.1:1935/live").host, "127.0.0.1");
    }

    #[test]
    fn app_is_the_whole_path() {
        assert_eq!(endpoint("rtmp://h/live/").app, "live");
        assert_eq!(endpoint("rtmp://h/a/b/c").app, "a/b/c");
        assert_eq!(endpoint("rtmp://h/live?token=1").app, "live?token=1");
        // Credentials in the authority are not sent anywhere.
        assert_eq!(endpoint("rtmp://user:pw@h:1940/live").host, "h");
        assert_eq!(endpoint("rtmp://user:pw@h:1940/live").port, 1940);
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        let cases = [
            ("http://h/live", UrlError::Scheme),
            ("h/live", UrlError::Scheme),
            ("rtmp:///live", UrlError::NoHost),
            ("rtmp://:1935/live", UrlError::NoHost),
            ("rtmp://h:0/live", UrlError::Port),
            ("rtmp://h:65536/live", UrlError::Port),
            ("rtmp://h:abc/live", UrlError::Port),
            ("rtmp://h", UrlError::NoApp),
            ("rtmp://h/", UrlError::NoApp),
            ("rtmp://h//", UrlError::NoApp),
            ("rtmp://h/li ve", UrlError::Characters),
            ("rtmp://h/live\n", UrlError::Characters),
            ("rtmp://[::1/live", UrlError::NoHost),
        ];
        for (url, expected) in cases {
            assert_eq!(Endpoint::parse(url), Err(expected), "{url}");
        }
    }

    /// A publisher on one end of an in-memory pipe, as if `publish` had succeeded; the other
    /// end plays the server.
    fn piped() -> (Publisher, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let publisher = Publisher {
            socket: Box::new(ours),
            encoder: ChunkEncoder::new(),
            decoder: ChunkDecoder::new(),
            input: BytesMut::new(),
            options: PublishOptions::default(),
            stream_id: 1,
            next_tx: 1.0,
            replies: BytesMut::new(),
        };
        (publisher, theirs)
    }

    #[tokio::test]
    async fn pings_are_answered_without_writing_while_reading() {
        let (mut publisher, mut server) = piped();
        let mut encoder = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let ping = ControlMessage::UserControl(UserControlEvent::PingRequest(0x1234));
        encoder.encode(&ping.to_message(), &mut out);
        server.write_all(&out).await.unwrap();
        publisher.read_incoming().await.unwrap();
        assert!(!publisher.replies.is_empty(), "queued, not written");
        publisher.send_replies().await.unwrap();

        let mut received = BytesMut::new();
        server.read_buf(&mut received).await.unwrap();
        let msg = ChunkDecoder::new().decode(&mut received).unwrap().unwrap();
        assert_eq!(
            ControlMessage::parse(msg.type_id, &msg.payload).unwrap(),
            ControlMessage::UserControl(UserControlEvent::PingResponse(0x1234))
        );
    }

    #[tokio::test]
    async fn a_stream_error_or_a_close_ends_publishing() {
        let (mut publisher, mut server) = piped();
        let status = Command {
            name: "onStatus".into(),
            transaction_id: 0.0,
            object: Amf0Value::Null,
            args: vec![message::status(
                "error",
                "NetStream.Publish.BadName",
                "taken",
            )],
        };
        let mut out = BytesMut::new();
        ChunkEncoder::new().encode(&status.to_message(1), &mut out);
        server.write_all(&out).await.unwrap();
        // One read may not hold the whole message; it reports once the message is complete.
        let mut outcome = publisher.read_incoming().await;
        for _ in 0..8 {
            if outcome.is_err() {
                break;
            }
            outcome = publisher.read_incoming().await;
        }
        match outcome {
            Err(ClientError::Refused(code)) => assert_eq!(code, "NetStream.Publish.BadName"),
            other => panic!("expected the refusal, got {other:?}"),
        }
        drop(server);
        assert!(matches!(
            publisher.read_incoming().await,
            Err(ClientError::Closed)
        ));
    }

    #[tokio::test]
    async fn tags_go_out_as_chunked_messages_with_their_byte_count() {
        let (mut publisher, mut server) = piped();
        let tag = Tag {
            kind: TagKind::Video,
            timestamp_ms: 40,
            body: Bytes::from_static(&[0x17, 1, 0, 0, 0, 9, 9]),
        };
        let written = publisher.send_tag(&tag).await.unwrap();
        let mut received = BytesMut::new();
        server.read_buf(&mut received).await.unwrap();
        assert_eq!(written, received.len());
        let msg = ChunkDecoder::new().decode(&mut received).unwrap().unwrap();
        assert_eq!(
            (msg.type_id, msg.timestamp, msg.stream_id),
            (type_id::VIDEO, 40, 1)
        );
        assert_eq!(msg.payload, tag.body);
    }

    #[test]
    fn tls_settings_build_with_the_webpki_roots() {
        let config = default_tls();
        assert!(Arc::ptr_eq(&config, &default_tls()), "built once");
    }
}
