//! The RTMP listener: one task per connection, capped by a semaphore, each in its own span.
//!
//! The webhooks of a publish run here, around the synchronous session: a publish command comes
//! out of the session as [`Flow::Authorize`], this connection's task awaits `on_publish` (and
//! nothing else waits for it), then hands the decision back. While live, a task of its own calls
//! `on_update`; when the publish ends, cleanly or not, `on_publish_done` goes out.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::BytesMut;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{oneshot, watch, Semaphore},
    task::JoinHandle,
    time::timeout,
};
use tracing::Instrument;

use super::session::{Flow, PublishRequest, Session};
use crate::config::redact_key;
use crate::registry::Registry;
use crate::webhook::{Publish, PublishDecision, UpdateOutcome, Webhooks};

/// Socket read size; a 1080p keyframe is a few hundred KB, so reads stay few.
const READ_BUF: usize = 64 * 1024;
/// Bytes buffered from a publisher whose publish waits for `on_publish`; past this we stop
/// reading and TCP pushes back.
const PENDING_LIMIT: usize = 1024 * 1024;

/// Why a connection ended other than by the peer's goodbye.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("no data for {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Session(#[from] super::session::SessionError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The application encoders publish to (`rtmp://HOST/<app>/<key>`).
    pub app: String,
    /// Simultaneous connections beyond this are refused at accept.
    pub max_connections: usize,
    /// A connection silent for this long is dropped; it also bounds the handshake.
    pub timeout: Duration,
    /// `on_publish`, `on_update` and `on_publish_done`.
    pub webhooks: Arc<Webhooks>,
}

pub async fn serve(listener: TcpListener, registry: Arc<Registry>, settings: Settings) {
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let ids = AtomicU64::new(1);
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "rtmp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits
            .clone()
            .try_acquire_owned()
            .map(crate::telemetry::RtmpConnection::new)
        else {
            tracing::warn!(%peer, "rtmp connection refused: max_connections reached");
            continue;
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let registry = registry.clone();
        let settings = settings.clone();
        let span = tracing::info_span!("rtmp", conn = id, %peer);
        tokio::spawn(
            async move {
                let _ = socket.set_nodelay(true);
                match connection(socket, peer, registry, &settings, id).await {
                    Ok(()) => tracing::debug!("connection closed"),
                    Err(ConnectionError::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::UnexpectedEof
                                | std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::BrokenPipe
                        ) =>
                    {
                        tracing::debug!("peer went away")
                    }
                    Err(e) => tracing::warn!(error = %e, "connection dropped"),
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Makes sure a read into `buf` has room for a good chunk.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_BUF / 4 {
        buf.reserve(READ_BUF);
    }
}

async fn read_some(
    socket: &mut TcpStream,
    buf: &mut BytesMut,
    limit: Duration,
) -> Result<usize, ConnectionError> {
    make_room(buf);
    let n = timeout(limit, socket.read_buf(buf))
        .await
        .map_err(|_| ConnectionError::Idle(limit))??;
    if n == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(n)
}

async fn handshake(socket: &mut TcpStream, limit: Duration) -> Result<BytesMut, ConnectionError> {
    let mut handshake = Handshake::new(PeerType::Server);
    let mut buf = BytesMut::with_capacity(READ_BUF);
    loop {
        read_some(socket, &mut buf, limit).await?;
        let input = buf.split();
        match handshake.process_bytes(&input) {
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
            Err(e) => return Err(ConnectionError::Handshake(format!("{e:?}"))),
        }
    }
}

async fn connection(
    mut socket: TcpStream,
    peer: SocketAddr,
    registry: Arc<Registry>,
    settings: &Settings,
    id: u64,
) -> Result<(), ConnectionError> {
    let buf = handshake(&mut socket, settings.timeout).await?;
    let session = Session::new(registry.clone(), &settings.app, id);
    let mut connection = Connection {
        socket,
        buf,
        session,
        live: None,
        settings,
        registry,
        id,
        peer,
    };
    let result = connection.run().await;
    let Connection { session, live, .. } = connection;
    // Frees the camera (and lists its last segment) before `on_publish_done` goes out.
    drop(session);
    if let Some(live) = live {
        live.finish(&settings.webhooks);
    }
    result
}

/// One connection after the handshake.
struct Connection<'a> {
    /// The peer's socket.
    socket: TcpStream,
    /// Bytes read and not yet decoded.
    buf: BytesMut,
    /// The RTMP state machine.
    session: Session,
    /// The publish under way, for its webhooks; `None` when not publishing.
    live: Option<Live>,
    /// The listener's settings.
    settings: &'a Settings,
    /// Where stream keys are looked up for the webhooks' `event` and `camera`.
    registry: Arc<Registry>,
    /// The connection number (`clientid` in webhooks).
    id: u64,
    /// The peer's address (`addr` in webhooks).
    peer: SocketAddr,
}

/// Why a live publisher is disconnected by us.
enum Ending {
    /// Its camera was deleted through the control API.
    Kicked,
    /// `on_update` answered with this status.
    Refused(u16),
}

impl Connection<'_> {
    async fn run(&mut self) -> Result<(), ConnectionError> {
        let mut fresh = self.buf.len();
        loop {
            let flow = self.session.receive(&mut self.buf, fresh);
            self.flush().await?;
            match flow? {
                Flow::Close => return self.close().await,
                Flow::Continue => {}
                Flow::Authorize(request) => {
                    let (flow, read) = self.authorize(request).await?;
                    self.flush().await?;
                    if flow == Flow::Close {
                        return self.close().await;
                    }
                    // Messages that followed the publish command are still buffered.
                    fresh = read;
                    continue;
                }
            }
            self.sync_live();
            fresh = match &mut self.live {
                Some(live) => {
                    live.clock
                        .store(self.session.timestamp(), Ordering::Relaxed);
                    tokio::select! {
                        read = read_some(&mut self.socket, &mut self.buf, self.settings.timeout) => read?,
                        ending = live.ending() => {
                            match ending {
                                Ending::Kicked => {
                                    tracing::info!("camera removed: disconnecting its publisher")
                                }
                                Ending::Refused(status) => tracing::warn!(
                                    camera = self.session.camera_label().unwrap_or("-"),
                                    status,
                                    "on_update refused the publisher: disconnecting it"
                                ),
                            }
                            return self.close().await;
                        }
                    }
                }
                None => read_some(&mut self.socket, &mut self.buf, self.settings.timeout).await?,
            };
        }
    }

    /// Writes the session's pending replies.
    async fn flush(&mut self) -> Result<(), ConnectionError> {
        if !self.session.out.is_empty() {
            let out = self.session.out.split();
            self.socket.write_all(&out).await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), ConnectionError> {
        self.socket.shutdown().await.ok();
        Ok(())
    }

    /// Asks `on_publish`, then finishes or refuses the publish. Meanwhile the socket is still
    /// read (up to [`PENDING_LIMIT`], without decoding), so a publisher that leaves is noticed
    /// and its call dropped. Returns the session's flow and the bytes read meanwhile.
    async fn authorize(
        &mut self,
        request: PublishRequest,
    ) -> Result<(Flow, usize), ConnectionError> {
        let known = self.registry.by_key(&request.name);
        let connect = self.session.connect_info();
        let mut publish = Publish {
            app: self.session.app().to_string(),
            flashver: connect.flash_ver.clone(),
            swfurl: connect.swf_url.clone(),
            tcurl: connect.tc_url.clone(),
            pageurl: connect.page_url.clone(),
            addr: self.peer.ip().to_canonical().to_string(),
            clientid: self.id,
            name: request.name,
            args: request.args,
            kind: request.kind,
            event: known.as_ref().map(|c| c.event.clone()).unwrap_or_default(),
            camera: known.as_ref().map(|c| c.id.clone()).unwrap_or_default(),
        };
        let webhooks = self.settings.webhooks.clone();
        let mut read = 0;
        let decision = {
            let call = webhooks.on_publish(&publish);
            tokio::pin!(call);
            loop {
                make_room(&mut self.buf);
                tokio::select! {
                    decision = &mut call => break decision,
                    n = self.socket.read_buf(&mut self.buf), if self.buf.len() < PENDING_LIMIT => {
                        match n? {
                            0 => return Err(std::io::Error::from(
                                std::io::ErrorKind::UnexpectedEof,
                            )
                            .into()),
                            n => read += n,
                        }
                    }
                }
            }
        };
        let flow = match decision {
            PublishDecision::Allow => self.session.finish_publish(&publish.name),
            PublishDecision::Rename(key) => self.session.finish_publish(&key),
            PublishDecision::Refuse(reason) => {
                tracing::warn!(key = %redact_key(&publish.name), "publish refused: {reason}");
                self.session.refuse_publish("refused by on_publish")
            }
        };
        if let Some(camera) = self.session.camera() {
            // Later calls keep the name the encoder sent (as nginx-rtmp) but name the camera
            // actually published, which a rename may have changed.
            publish.event = camera.event.clone();
            publish.camera = camera.id.clone();
            self.live = Some(Live::start(&webhooks, publish, camera.kicked()));
        }
        Ok((flow, read))
    }

    /// Ends the webhooks of a publish the session has stopped (`FCUnpublish`, `deleteStream`).
    fn sync_live(&mut self) {
        if !self.session.is_publishing() {
            if let Some(live) = self.live.take() {
                live.finish(&self.settings.webhooks);
            }
        }
    }
}

/// A live publish, as its webhooks see it.
struct Live {
    /// The fields of its webhook calls.
    publish: Arc<Publish>,
    /// Changes when its camera is deleted through the control API.
    kicked: watch::Receiver<u64>,
    /// The newest RTMP timestamp, for `on_update`'s `timestamp`.
    clock: Arc<AtomicU32>,
    /// Gets the status with which `on_update` refused the publisher.
    refused: Option<oneshot::Receiver<u16>>,
    /// The `on_update` task, aborted when the publish ends.
    updates: Option<JoinHandle<()>>,
}

impl Live {
    fn start(webhooks: &Arc<Webhooks>, publish: Publish, kicked: watch::Receiver<u64>) -> Live {
        let publish = Arc::new(publish);
        let clock = Arc::new(AtomicU32::new(0));
        let (refused, updates) = if webhooks.updates() {
            let (tx, rx) = oneshot::channel();
            let task = tokio::spawn(
                updates(webhooks.clone(), publish.clone(), clock.clone(), tx)
                    .instrument(tracing::Span::current()),
            );
            (Some(rx), Some(task))
        } else {
            (None, None)
        };
        Live {
            publish,
            kicked,
            clock,
            refused,
            updates,
        }
    }

    /// Resolves when the publisher must be disconnected. Cancel-safe.
    async fn ending(&mut self) -> Ending {
        let Live {
            kicked, refused, ..
        } = self;
        let refusal = async {
            match refused {
                Some(rx) => match rx.await {
                    Ok(status) => status,
                    Err(_) => {
                        *refused = None;
                        std::future::pending().await
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = kicked.changed() => Ending::Kicked,
            status = refusal => Ending::Refused(status),
        }
    }

    /// Stops `on_update` and sends `on_publish_done` from a task of its own.
    fn finish(self, webhooks: &Arc<Webhooks>) {
        if webhooks.config().on_publish_done.is_empty() {
            return;
        }
        let webhooks = webhooks.clone();
        let publish = self.publish.clone();
        tokio::spawn(
            async move { webhooks.publish_done(&publish).await }
                .instrument(tracing::Span::current()),
        );
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(task) = &self.updates {
            task.abort();
        }
    }
}

/// Calls `on_update` every `update_interval` (counted from the previous answer, as nginx-rtmp
/// does) until the backend refuses the publisher, which is then reported on `refused`.
async fn updates(
    webhooks: Arc<Webhooks>,
    publish: Arc<Publish>,
    clock: Arc<AtomicU32>,
    refused: oneshot::Sender<u16>,
) {
    let started = tokio::time::Instant::now();
    let interval = webhooks.config().update_interval;
    loop {
        tokio::time::sleep(interval).await;
        let time = started.elapsed().as_secs();
        let timestamp = clock.load(Ordering::Relaxed);
        if let UpdateOutcome::Disconnect(status) = webhooks.update(&publish, time, timestamp).await
        {
            let _ = refused.send(status);
            return;
        }
    }
}
