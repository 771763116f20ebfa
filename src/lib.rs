//! tally: a live-streaming origin for multi-camera events. RTMP in, fMP4 HLS out of memory.
//!
//! # Layout
//! - [`config`]: configuration file, environment overrides and validation.
//! - [`media`]: the one frame type that flows everywhere, and codec configurations.
//! - [`flv`], [`codec`]: pure parsers for FLV tags, avcC/SPS and AAC AudioSpecificConfig.
//! - [`rtmp`]: the chunk layer and messages (pure), the ingest session, the listener, a client.
//! - [`timeline`]: RTMP milliseconds to track ticks, once, at the edge; jumps and reconnects.
//! - [`fmp4`]: pure CMAF box writers (init and media segments).
//! - [`hls`]: the cutting policy, playlist text, the in-memory store and the packager.
//! - [`camera`], [`registry`]: cameras, their publishers, and the lookups by key and by name.
//! - [`program`]: events, the pure splicer and the program actor (switching, failover).
//! - [`store`]: SQLite persistence of events, cameras, keys and the switch log.
//! - [`recording`]: fragmented MP4 recordings of the program and cameras.
//! - [`restream`]: pushing the program or a camera to RTMP(S) destinations.
//! - [`webhook`]: nginx-rtmp-compatible HTTP notifications.
//! - [`telemetry`]: Prometheus metrics.
//! - [`fanout`]: bounded fan-out of frames to consumers, resyncing at keyframes.
//! - [`http`]: playback routes; [`api`]: the token-protected control port.
//! - [`console`]: the operator console's static files, served on the control port.
//! - [`thumbnail`]: a camera's newest keyframe as a JPEG, decoded lazily and shared.

pub mod api;
pub mod camera;
pub mod codec;
pub mod config;
pub mod console;
pub mod fanout;
pub mod flv;
pub mod fmp4;
pub mod hls;
pub mod http;
pub mod media;
pub mod program;
pub mod recording;
pub mod registry;
pub mod restream;
pub mod rtmp;
pub mod store;
pub mod telemetry;
pub mod thumbnail;
pub mod timeline;
pub mod webhook;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::{net::TcpListener, task::JoinSet};

use config::Config;
use registry::Registry;

/// A running server: its bound addresses (useful when the config asked for port 0) and tasks.
pub struct Server {
    pub rtmp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub control_addr: SocketAddr,
    pub registry: Arc<Registry>,
    tasks: JoinSet<()>,
}

impl Server {
    /// Binds every listener, then serves in background tasks.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let (store, events, cameras) = open_store(&config).await?;
        let writer = program::actor::store_writer(store.clone());
        let registry = Arc::new(Registry::new(&config, writer, &events, &cameras));
        let rtmp = TcpListener::bind(config.rtmp.listen)
            .await
            .with_context(|| format!("rtmp.listen: binding {}", config.rtmp.listen))?;
        let http = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("http.listen: binding {}", config.http.listen))?;
        let control = TcpListener::bind(config.control.listen)
            .await
            .with_context(|| format!("control.listen: binding {}", config.control.listen))?;
        let (rtmp_addr, http_addr, control_addr) = (
            rtmp.local_addr()?,
            http.local_addr()?,
            control.local_addr()?,
        );

        let mut tasks = JoinSet::new();
        let metrics = telemetry::handle();
        let webhooks = webhook::Webhooks::new(&config.webhooks);
        let recorder = recording::Recorder::new(&config.record, registry.clone(), webhooks.clone());
        let restreamer =
            restream::Restreamer::new(&config.restream, registry.clone(), store.clone());
        let settings = rtmp::server::Settings {
            app: config.rtmp.app.clone(),
            max_connections: config.rtmp.max_connections,
            timeout: config.rtmp.timeout,
            webhooks: webhooks.clone(),
        };
        tasks.spawn(rtmp::server::serve(rtmp, registry.clone(), settings));
        let playback = http::Playback::new(
            registry.clone(),
            &config.http.cors_origin,
            config.hls.target_duration,
        );
        let playback = http::router(playback);
        tasks.spawn(async move {
            if let Err(e) = axum::serve(http, playback).await {
                tracing::error!(error = %e, "playback server stopped");
            }
        });
        let control_router = console::router().merge(api::router(api::Control {
            token: config.control.token.as_str().into(),
            registry: registry.clone(),
            store: store.clone(),
            rtmp_port: rtmp_addr.port(),
            http_port: http_addr.port(),
            app: config.rtmp.app.clone().into(),
            thumbnails: Arc::new(thumbnail::Thumbnails::new()),
            recorder,
            restreamer,
            webhooks,
            metrics,
        }));
        tasks.spawn(async move {
            if let Err(e) = axum::serve(control, control_router).await {
                tracing::error!(error = %e, "control server stopped");
            }
        });
        tracing::info!(%rtmp_addr, %http_addr, %control_addr, app = %config.rtmp.app, "tally listening");
        Ok(Server {
            rtmp_addr,
            http_addr,
            control_addr,
            registry,
            tasks,
        })
    }

    /// Stops every listener and connection.
    ///
    /// Program actors and publishers' tasks end with the runtime.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Opens the store, seeds the configured events and loads every event and camera. A corrupt or
/// unwritable store is an error that stops start-up.
async fn open_store(
    config: &Config,
) -> anyhow::Result<(
    Arc<store::Store>,
    Vec<store::EventRow>,
    Vec<store::CameraRow>,
)> {
    let path = config.store.path.clone();
    let seeds = config.events.clone();
    tokio::task::spawn_blocking(move || {
        let store = store::Store::open(&path).context("store.path")?;
        for event in &seeds {
            let cameras: Vec<(String, String, String)> = event
                .cameras
                .iter()
                .map(|c| (c.id.clone(), c.name.clone(), c.stream_key.clone()))
                .collect();
            store
                .seed_event(&event.id, &event.name, &cameras)
                .with_context(|| format!("seeding event {:?} from the configuration", event.id))?;
        }
        let events = store.events()?;
        let cameras = store.all_cameras()?;
        Ok((Arc::new(store), events, cameras))
    })
    .await?
}
