//! One destination's task: wait for a keyframe of the source, connect and publish, send
//! `onMetaData` and both sequence headers, then every frame; on failure wait (backoff) and do it
//! again. Enabling, disabling and deleting arrive over a `watch` channel.
//!
//! Each connection subscribes to the source afresh, so it starts at the source's current GOP
//! (its keyframe) and never mid-GOP. A codec configuration that changes (a cut to a camera with
//! another resolution) gets new sequence headers before its keyframe, and that keyframe carries
//! its SPS and PPS in-band as well, for servers that only pass the stream through.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use bytes::Bytes;
use metrics::{Counter, Gauge};
use serde_json::Value;
use tokio::{
    sync::{broadcast, watch},
    time::{interval_at, timeout, MissedTickBehavior},
};

use super::backoff::Backoff;
use super::clock::{Kind, OutClock};
use super::{flv_out, redact, State, Status, PROGRAM_SOURCE};
use crate::camera::Camera;
use crate::fanout::{Fanout, Subscriber};
use crate::flv::{Tag, TagKind};
use crate::media::{AudioConfig, Frame, Track, VideoConfig};
use crate::program::Event;
use crate::registry::Registry;
use crate::rtmp::client::{Endpoint, PublishOptions, Publisher};
use crate::store::DestinationRow;

/// How often rates, counters and liveness are refreshed.
const TICK: Duration = Duration::from_secs(1);
/// Connecting and publishing must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A write that cannot complete this long means the server stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a polite goodbye when the destination is disabled or deleted.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// Frames held while connecting; past this the subscription lags and resyncs.
const MAX_BUFFERED: usize = 1024;

/// The reconnect schedule.
#[derive(Debug, Clone)]
pub struct Settings {
    /// First wait after a failure.
    pub reconnect_min: Duration,
    /// Longest wait.
    pub reconnect_max: Duration,
    /// A connection up this long resets the schedule when it breaks.
    pub healthy: Duration,
}

/// How a session ended.
#[derive(Debug)]
enum Outcome {
    /// Disabled or deleted: the loop decides which.
    Stopped,
    /// The event is gone: the runner ends.
    Gone,
    /// Connecting or publishing failed.
    Failed {
        /// What went wrong, for the status and the log (never the key).
        error: String,
        /// How long the connection had been live (zero if it never was).
        up_for: Duration,
    },
}

fn failed(error: impl ToString, up_for: Duration) -> Outcome {
    Outcome::Failed {
        error: error.to_string(),
        up_for,
    }
}

/// Where the frames come from.
enum Source {
    /// The event's program.
    Program(Arc<Fanout>),
    /// One camera.
    Camera(Arc<Camera>),
}

impl Source {
    fn subscribe(&self) -> Subscriber {
        match self {
            Source::Program(fanout) => fanout.subscribe(),
            Source::Camera(camera) => camera.fanout.subscribe(),
        }
    }
}

/// The metrics of one destination.
struct Meters {
    /// `tally_restream_bytes_total`.
    bytes: Counter,
    /// `tally_restream_frames_total`.
    frames: Counter,
    /// `tally_restream_dropped_frames_total`.
    dropped: Counter,
    /// `tally_restream_live`: 1 while publishing.
    live: Gauge,
}

impl Meters {
    fn new(event: &str, destination: &str) -> Meters {
        let labels = [
            ("event", event.to_string()),
            ("destination", destination.to_string()),
        ];
        Meters {
            bytes: metrics::counter!("tally_restream_bytes_total", &labels),
            frames: metrics::counter!("tally_restream_frames_total", &labels),
            dropped: metrics::counter!("tally_restream_dropped_frames_total", &labels),
            live: metrics::gauge!("tally_restream_live", &labels),
        }
    }
}

/// One open connection and what it has been told.
struct Connection {
    /// The publishing client.
    publisher: Publisher,
    /// The video configuration whose sequence header went out last.
    video: Option<Arc<VideoConfig>>,
    /// The audio configuration whose sequence header went out last.
    audio: Option<Arc<AudioConfig>>,
}

/// Whether `sent` already describes `current` (same `Arc`, or an equal value).
fn same<T: PartialEq>(sent: &Option<Arc<T>>, current: &Arc<T>) -> bool {
    sent.as_ref()
        .is_some_and(|s| Arc::ptr_eq(s, current) || **s == **current)
}

pub struct Runner {
    /// Destination id, for notifications.
    id: i64,
    /// The event's id.
    event_id: String,
    /// Destination name, for logs, metrics and notifications.
    name: String,
    /// `program` or a camera id.
    source: String,
    /// The secret stream name; only ever given to the publisher.
    key: String,
    /// Where to connect.
    endpoint: Endpoint,
    /// The event this destination belongs to; not kept alive by us.
    event: Weak<Event>,
    /// To tell whether the event still exists (and is still the same one).
    registry: Arc<Registry>,
    /// The event's notification bus.
    bus: broadcast::Sender<Arc<str>>,
    /// Shared with the API.
    status: Arc<Mutex<Status>>,
    /// `true` to push; closed when the destination is deleted.
    enabled: watch::Receiver<bool>,
    /// Reconnect schedule.
    backoff: Backoff,
    /// Output timestamps across connections.
    clock: OutClock,
    /// Prometheus series.
    meters: Meters,
    /// Totals since start-up, copied into the status every tick.
    frames_sent: u64,
    /// Frames lost to lag or dropped by the clock.
    frames_dropped: u64,
    /// Bytes written on the wire.
    bytes: u64,
}

impl Runner {
    pub fn new(
        settings: Settings,
        row: &DestinationRow,
        endpoint: Endpoint,
        event: Weak<Event>,
        registry: Arc<Registry>,
        status: Arc<Mutex<Status>>,
        enabled: watch::Receiver<bool>,
    ) -> Runner {
        let bus = event
            .upgrade()
            .map(|e| e.bus.clone())
            .unwrap_or_else(|| broadcast::Sender::new(1));
        Runner {
            id: row.id,
            event_id: row.event.clone(),
            name: row.name.clone(),
            source: row.source.clone(),
            key: row.stream_key.clone(),
            endpoint,
            event,
            registry,
            bus,
            status,
            enabled,
            backoff: Backoff::new(
                settings.reconnect_min,
                settings.reconnect_max,
                settings.healthy,
            ),
            clock: OutClock::default(),
            meters: Meters::new(&row.event, &row.name),
            frames_sent: 0,
            frames_dropped: 0,
            bytes: 0,
        }
    }

    /// The event, if it still exists and is the one this destination was made for.
    fn event(&self) -> Option<Arc<Event>> {
        let event = self.event.upgrade()?;
        let current = self.registry.event(&self.event_id)?;
        Arc::ptr_eq(&event, &current).then_some(event)
    }

    /// Runs until the destination is deleted or its event goes away.
    pub async fn run(mut self) {
        loop {
            if self.enabled.has_changed().is_err() {
                break; // deleted
            }
            if !*self.enabled.borrow_and_update() {
                self.set_state(State::Disabled, None);
                tracing::info!("disabled");
                loop {
                    if self.enabled.changed().await.is_err() {
                        self.meters.live.set(0.0);
                        return;
                    }
                    if *self.enabled.borrow_and_update() {
                        break;
                    }
                }
                self.backoff.reset();
                continue;
            }
            if self.event().is_none() {
                break;
            }
            let error = self.status().error.clone();
            self.set_state(State::Connecting, error);
            match self.session().await {
                Outcome::Stopped => continue,
                Outcome::Gone => break,
                Outcome::Failed { error, up_for } => {
                    self.meters.live.set(0.0);
                    self.publish_counters(0);
                    let wait = self.backoff.failed(up_for);
                    tracing::warn!(
                        url = %self.endpoint.tc_url,
                        key = %redact(&self.key),
                        error = %error,
                        retry_in_ms = wait.as_millis() as u64,
                        "destination failed; retrying"
                    );
                    self.status().retries = self.backoff.failures();
                    self.set_state(State::Retrying, Some(error));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.enabled.changed() => {}
                    }
                }
            }
        }
        self.meters.live.set(0.0);
        tracing::info!("stopped");
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().expect("status lock")
    }

    /// Copies the counters into the status.
    fn publish_counters(&self, bytes_per_second: u64) {
        let mut status = self.status();
        status.frames_sent = self.frames_sent;
        status.frames_dropped = self.frames_dropped;
        status.bytes_per_second = bytes_per_second;
    }

    /// Sets the state (and error); announces it on the event's bus when either changed.
    fn set_state(&self, state: State, error: Option<String>) {
        let message = {
            let mut status = self.status();
            let changed = status.state != state || status.error != error;
            status.state = state;
            status.error = error;
            if state != State::Connecting {
                status.waiting_for_source = false;
            }
            if state != State::Live {
                status.live_since = None;
                status.bytes_per_second = 0;
            } else {
                status.retries = 0;
            }
            changed.then(|| self.message(&status))
        };
        if let Some(fields) = message {
            crate::program::notify(&self.bus, &self.event_id, "destination_status", fields);
        }
    }

    fn set_waiting(&self, waiting: bool) {
        let message = {
            let mut status = self.status();
            let changed = status.waiting_for_source != waiting;
            status.waiting_for_source = waiting;
            changed.then(|| self.message(&status))
        };
        if let Some(fields) = message {
            crate::program::notify(&self.bus, &self.event_id, "destination_status", fields);
        }
    }

    /// The `destination_status` fields: which destination, and its status.
    fn message(&self, status: &Status) -> Value {
        let mut fields = status.to_json();
        fields["destination"] = Value::from(self.id);
        fields["name"] = Value::from(self.name.as_str());
        fields
    }

    /// One connection, from waiting for a keyframe to the error that ends it.
    async fn session(&mut self) -> Outcome {
        let source = {
            let Some(event) = self.event() else {
                return Outcome::Gone;
            };
            if self.source == PROGRAM_SOURCE {
                Source::Program(event.program_frames.clone())
            } else {
                match event.camera(&self.source) {
                    Some(camera) => Source::Camera(camera),
                    None => {
                        return failed(
                            format!("source camera {:?} does not exist", self.source),
                            Duration::ZERO,
                        )
                    }
                }
            }
        };
        let mut frames = source.subscribe();
        let mut tick = interval_at(tokio::time::Instant::now() + TICK, TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

        // A keyframe to start from: the source's cached GOP, or its next keyframe.
        let first = loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(f) if f.track.is_video() && f.keyframe => break f,
                    Some(_) => continue,
                    None => return failed("the source went away", Duration::ZERO),
                },
                _ = self.enabled.changed() => return Outcome::Stopped,
                _ = tick.tick() => {
                    if self.event().is_none() {
                        return Outcome::Gone;
                    }
                    self.set_waiting(true);
                }
            }
        };
        self.set_waiting(false);

        // Connect; the source's frames queue up meanwhile.
        let mut buffered = VecDeque::from([first]);
        let (endpoint, key) = (self.endpoint.clone(), self.key.clone());
        let connect = timeout(
            CONNECT_TIMEOUT,
            Publisher::connect_url(&endpoint, &key, PublishOptions::default()),
        );
        tokio::pin!(connect);
        let publisher = loop {
            tokio::select! {
                result = &mut connect => match result {
                    Ok(Ok(publisher)) => break publisher,
                    Ok(Err(e)) => return failed(e, Duration::ZERO),
                    Err(_) => return failed("timed out connecting", Duration::ZERO),
                },
                frame = frames.recv(), if buffered.len() < MAX_BUFFERED => match frame {
                    Some(f) => buffered.push_back(f),
                    None => return failed("the source went away", Duration::ZERO),
                },
                _ = self.enabled.changed() => return Outcome::Stopped,
            }
        };
        let mut conn = Connection {
            publisher,
            video: None,
            audio: None,
        };

        // onMetaData and both sequence headers, then the keyframe.
        let start_ms = flv_out::dts_ms(&buffered[0]);
        let start = self.clock.start_connection(start_ms);
        let Track::Video(video) = buffered[0].track.clone() else {
            unreachable!("the first frame is a video keyframe")
        };
        let audio = buffered.iter().find_map(|f| match &f.track {
            Track::Audio(config) => Some(config.clone()),
            Track::Video(_) => None,
        });
        let metadata = flv_out::metadata(Some(&video), audio.as_deref());
        if let Err(e) = self.send(&mut conn, TagKind::Script, start, metadata).await {
            return failed(e, Duration::ZERO);
        }
        let header = flv_out::video_sequence_header(&video);
        if let Err(e) = self.send(&mut conn, TagKind::Video, start, header).await {
            return failed(e, Duration::ZERO);
        }
        conn.video = Some(video);
        if let Some(audio) = audio {
            let header = flv_out::audio_sequence_header(&audio);
            if let Err(e) = self.send(&mut conn, TagKind::Audio, start, header).await {
                return failed(e, Duration::ZERO);
            }
            conn.audio = Some(audio);
        }

        let live_since = Instant::now();
        self.status().live_since = Some(live_since);
        self.set_state(State::Live, None);
        self.meters.live.set(1.0);
        tracing::info!(
            url = %self.endpoint.tc_url,
            key = %redact(&self.key),
            "live"
        );
        let mut lost = 0;
        let outcome = self
            .pump(
                &mut conn,
                &source,
                &mut frames,
                buffered,
                &mut tick,
                &mut lost,
            )
            .await;
        self.count_lost(&frames, &mut lost);
        match outcome {
            Ok(ending) => {
                let _ = timeout(GOODBYE_TIMEOUT, conn.publisher.finish()).await;
                ending
            }
            Err(error) => failed(error, live_since.elapsed()),
        }
    }

    /// Adds the frames the subscription lost to lag since the last look.
    fn count_lost(&mut self, frames: &Subscriber, seen: &mut u64) {
        if frames.lost > *seen {
            let newly = frames.lost - *seen;
            *seen = frames.lost;
            self.frames_dropped += newly;
            self.meters.dropped.increment(newly);
        }
    }

    /// Sends the buffered frames, then every frame of the source, until the connection fails
    /// (`Err`) or the destination is stopped or its event is gone (`Ok`, to say goodbye).
    async fn pump(
        &mut self,
        conn: &mut Connection,
        source: &Source,
        frames: &mut Subscriber,
        mut buffered: VecDeque<Frame>,
        tick: &mut tokio::time::Interval,
        lost: &mut u64,
    ) -> Result<Outcome, String> {
        let (mut bytes_at_tick, mut tick_at) = (self.bytes, Instant::now());
        loop {
            if let Some(frame) = buffered.pop_front() {
                self.send_frame(conn, frame).await?;
                continue;
            }
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(frame) => self.send_frame(conn, frame).await?,
                    None => return Err("the source went away".into()),
                },
                incoming = conn.publisher.read_incoming() => {
                    incoming.map_err(|e| e.to_string())?;
                    timeout(WRITE_TIMEOUT, conn.publisher.send_replies())
                        .await
                        .map_err(|_| "timed out writing (the server stopped reading)".to_string())?
                        .map_err(|e| e.to_string())?;
                }
                _ = tick.tick() => {
                    self.count_lost(frames, lost);
                    let elapsed = tick_at.elapsed().as_secs_f64().max(0.001);
                    let rate = ((self.bytes - bytes_at_tick) as f64 / elapsed).round() as u64;
                    (bytes_at_tick, tick_at) = (self.bytes, Instant::now());
                    self.publish_counters(rate);
                    let Some(event) = self.event() else {
                        return Ok(Outcome::Gone);
                    };
                    if let Source::Camera(camera) = source {
                        let current = event.camera(&camera.id);
                        if !current.is_some_and(|c| Arc::ptr_eq(&c, camera)) {
                            return Err(format!("source camera {:?} was removed", camera.id));
                        }
                    }
                }
                _ = self.enabled.changed() => {
                    self.publish_counters(0);
                    return Ok(Outcome::Stopped);
                }
            }
        }
    }

    /// Sends one media frame, preceded by a sequence header when its configuration is new to
    /// this connection.
    async fn send_frame(&mut self, conn: &mut Connection, frame: Frame) -> Result<(), String> {
        let kind = if frame.track.is_video() {
            Kind::Video
        } else {
            Kind::Audio
        };
        let Some(ts) = self
            .clock
            .map(kind, flv_out::dts_ms(&frame), frame.keyframe)
        else {
            self.frames_dropped += 1;
            self.meters.dropped.increment(1);
            return Ok(());
        };
        let mut payload = frame.payload.clone();
        match &frame.track {
            Track::Video(config) if !same(&conn.video, config) => {
                if !frame.keyframe {
                    // A new configuration can only start at a keyframe.
                    self.frames_dropped += 1;
                    self.meters.dropped.increment(1);
                    return Ok(());
                }
                let header = flv_out::video_sequence_header(config);
                self.send(conn, TagKind::Video, ts, header).await?;
                conn.video = Some(config.clone());
                payload = crate::codec::with_parameter_sets(config, &payload);
                tracing::info!(
                    width = config.width,
                    height = config.height,
                    "new video configuration"
                );
            }
            Track::Audio(config) if !same(&conn.audio, config) => {
                let header = flv_out::audio_sequence_header(config);
                self.send(conn, TagKind::Audio, ts, header).await?;
                conn.audio = Some(config.clone());
            }
            _ => {}
        }
        let kind = if frame.track.is_video() {
            TagKind::Video
        } else {
            TagKind::Audio
        };
        self.send(conn, kind, ts, flv_out::frame_body(&frame, &payload))
            .await?;
        self.frames_sent += 1;
        self.meters.frames.increment(1);
        Ok(())
    }

    /// Writes one tag, bounded by [`WRITE_TIMEOUT`].
    async fn send(
        &mut self,
        conn: &mut Connection,
        kind: TagKind,
        timestamp_ms: u32,
        body: Bytes,
    ) -> Result<(), String> {
        let tag = Tag {
            kind,
            timestamp_ms,
            body,
        };
        let written = timeout(WRITE_TIMEOUT, conn.publisher.send_tag(&tag))
            .await
            .map_err(|_| "timed out writing (the server stopped reading)".to_string())?
            .map_err(|e| e.to_string())?;
        self.bytes += written as u64;
        self.meters.bytes.increment(written as u64);
        Ok(())
    }
}
