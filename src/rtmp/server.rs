//! The RTMP listener: one task per connection, capped by a semaphore, each in its own span.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::BytesMut;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::timeout,
};
use tracing::Instrument;

use super::session::{Flow, Session};
use crate::registry::Registry;

/// Socket read size; a 1080p keyframe is a few hundred KB, so reads stay few.
const READ_BUF: usize = 64 * 1024;

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
    pub app: String,
    pub max_connections: usize,
    /// A connection silent for this long is dropped; it also bounds the handshake.
    pub timeout: Duration,
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
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
                match connection(socket, registry, &settings, id).await {
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

async fn read_some(
    socket: &mut TcpStream,
    buf: &mut BytesMut,
    limit: Duration,
) -> Result<usize, ConnectionError> {
    if buf.capacity() - buf.len() < READ_BUF / 4 {
        buf.reserve(READ_BUF);
    }
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
    registry: Arc<Registry>,
    settings: &Settings,
    id: u64,
) -> Result<(), ConnectionError> {
    let mut buf = handshake(&mut socket, settings.timeout).await?;
    let mut session = Session::new(registry, &settings.app, id);
    let mut fresh = buf.len();
    // Fires when the camera being published is deleted through the control API.
    let mut kicked: Option<tokio::sync::watch::Receiver<u64>> = None;
    loop {
        let flow = session.receive(&mut buf, fresh);
        if !session.out.is_empty() {
            let out = session.out.split();
            socket.write_all(&out).await?;
        }
        match flow? {
            Flow::Close => {
                socket.shutdown().await.ok();
                return Ok(());
            }
            Flow::Continue => {}
        }
        if kicked.is_none() {
            kicked = session.camera().map(|c| c.kicked());
        }
        fresh = match &mut kicked {
            Some(kick) => tokio::select! {
                read = read_some(&mut socket, &mut buf, settings.timeout) => read?,
                _ = kick.changed() => {
                    tracing::info!("camera removed: disconnecting its publisher");
                    socket.shutdown().await.ok();
                    return Ok(());
                }
            },
            None => read_some(&mut socket, &mut buf, settings.timeout).await?,
        };
    }
}
