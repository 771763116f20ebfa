//! A camera: its rendition, the frames it fans out, and the state of whoever publishes to it.
//!
//! A camera outlives its publishers. Its timeline and packager persist across reconnects, so a
//! reconnecting encoder continues the same playlist after a discontinuity. Only one publisher may
//! hold a camera at a time; the holder drives ingest under a short `std` mutex (never across an
//! `.await`), so a segment is packaged on the publisher's own task as soon as it closes.
//!
//! Metrics: the camera's handles ([`CameraMetrics`]) are built with it, so a frame costs two
//! atomic adds (bytes, frames); the measured gauges are set once per second of media.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use chrono::Utc;
use tokio::sync::watch;

use crate::fanout::Fanout;
use crate::hls::{packager::Packager, store::Rendition};
use crate::media::{Frame, Track, VIDEO_TIMESCALE};
use crate::telemetry::CameraMetrics;
use crate::timeline::Timeline;

/// What the camera measured of its source, from media timestamps (not wall time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Seconds between the last two keyframes.
    pub keyframe_interval: Option<f64>,
    /// Video frames per second over the last full second of media.
    pub frame_rate: Option<f64>,
    /// Bits per second (audio + video payload) over the last full second of media.
    pub bitrate: Option<u64>,
    pub width: Option<u16>,
    pub height: Option<u16>,
    /// RFC 6381 codec strings and the audio rate in force, for the API and switch warnings.
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub sample_rate: Option<u32>,
}

#[derive(Debug, Default)]
struct Meter {
    measured: Measured,
    last_keyframe: Option<i64>,
    window_start: Option<i64>,
    window_frames: u32,
    window_bytes: u64,
}

/// What one frame changed in a [`Meter`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Observed {
    /// The keyframe interval changed noticeably (worth one log line).
    interval_changed: bool,
    /// A keyframe interval, frame rate or bitrate was measured anew.
    remeasured: bool,
}

impl Meter {
    fn observe(&mut self, frame: &Frame) -> Observed {
        let time = crate::media::rescale(frame.dts, frame.track.timescale(), VIDEO_TIMESCALE);
        let start = *self.window_start.get_or_insert(time);
        self.window_bytes += frame.payload.len() as u64;
        let mut observed = Observed::default();
        if let Track::Audio(config) = &frame.track {
            if self.measured.sample_rate != Some(config.sample_rate) {
                self.measured.sample_rate = Some(config.sample_rate);
                self.measured.audio_codec = Some(config.codec_string());
            }
        }
        if let Track::Video(config) = &frame.track {
            self.window_frames += 1;
            if self.measured.width != Some(config.width) || frame.keyframe {
                self.measured.width = Some(config.width);
                self.measured.height = Some(config.height);
                self.measured.video_codec = Some(config.codec_string());
            }
            if frame.keyframe {
                if let Some(last) = self.last_keyframe {
                    let interval = (time - last) as f64 / f64::from(VIDEO_TIMESCALE);
                    let previous = self.measured.keyframe_interval;
                    observed.interval_changed =
                        previous.is_none_or(|p| (p - interval).abs() > 0.1 * p);
                    observed.remeasured = true;
                    self.measured.keyframe_interval = Some(interval);
                }
                self.last_keyframe = Some(time);
            }
        }
        let elapsed = time - start;
        if elapsed >= i64::from(VIDEO_TIMESCALE) {
            let seconds = elapsed as f64 / f64::from(VIDEO_TIMESCALE);
            self.measured.frame_rate =
                (self.window_frames > 0).then(|| f64::from(self.window_frames) / seconds);
            self.measured.bitrate = Some((self.window_bytes as f64 * 8.0 / seconds) as u64);
            self.window_start = Some(time);
            self.window_frames = 0;
            self.window_bytes = 0;
            observed.remeasured = true;
        }
        observed
    }
}

/// Ingest state, touched only by the camera's current publisher.
#[derive(Debug)]
pub struct Ingest {
    pub timeline: Timeline,
    packager: Packager,
    meter: Meter,
    target: Duration,
}

impl Ingest {
    /// Packages and fans out one frame. Errors are logged here: a bad segment must not end ingest.
    fn push(&mut self, frame: Frame, fanout: &Fanout, label: &str, metrics: &CameraMetrics) {
        metrics.bytes.increment(frame.payload.len() as u64);
        match frame.track {
            Track::Video(_) => metrics.video_frames.increment(1),
            Track::Audio(_) => metrics.audio_frames.increment(1),
        }
        let observed = self.meter.observe(&frame);
        if observed.remeasured {
            let measured = &self.meter.measured;
            metrics.bitrate.set(measured.bitrate.unwrap_or(0) as f64);
            metrics.frame_rate.set(measured.frame_rate.unwrap_or(0.0));
            if let Some(interval) = measured.keyframe_interval {
                metrics.keyframe_interval.set(interval);
            }
        }
        if observed.interval_changed {
            let interval = self.meter.measured.keyframe_interval.unwrap_or_default();
            if interval > self.target.as_secs_f64() * 1.5 {
                tracing::warn!(
                    camera = label,
                    keyframe_interval_s = format!("{interval:.2}"),
                    "keyframe interval exceeds the segment target; segments will be cut mid-GOP. \
                     Set the encoder's keyframe interval to {} s",
                    self.target.as_secs_f64()
                );
            } else {
                tracing::info!(
                    camera = label,
                    keyframe_interval_s = format!("{interval:.2}"),
                    "keyframe interval measured"
                );
            }
        }
        fanout.send(&frame);
        match self.packager.push(frame, Utc::now()) {
            Ok(Some(segment)) => {
                tracing::trace!(camera = label, sequence = segment.sequence, "segment")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(camera = label, error = %e, "packaging failed; segment dropped")
            }
        }
    }
}

#[derive(Debug)]
pub struct Camera {
    pub event: String,
    pub id: String,
    pub name: String,
    /// `event/camera`, for logs (never the stream key).
    pub label: String,
    pub rendition: Arc<Rendition>,
    pub fanout: Fanout,
    ingest: Mutex<Ingest>,
    /// Id of the publishing session, 0 when none. Claimed by compare-and-swap.
    publisher: AtomicU64,
    /// The event's "a camera changed state" counter, bumped when a publisher comes or goes, so
    /// the program (which watches it) never misses a change.
    changes: Arc<watch::Sender<u64>>,
    /// Bumped to make the current publisher's connection close (camera deleted).
    kick: watch::Sender<u64>,
    /// The newest video keyframe, kept after the publisher leaves: thumbnails decode it on demand.
    last_keyframe: Mutex<Option<Frame>>,
    /// Prometheus handles, built once so ingest never allocates label sets per frame.
    metrics: CameraMetrics,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClaimError {
    #[error("camera already has a live publisher")]
    AlreadyLive,
}

impl Camera {
    pub fn new(
        event: &str,
        id: &str,
        name: &str,
        rendition: Arc<Rendition>,
        target: Duration,
        changes: Arc<watch::Sender<u64>>,
    ) -> Self {
        Camera {
            event: event.to_string(),
            id: id.to_string(),
            name: name.to_string(),
            label: format!("{event}/{id}"),
            ingest: Mutex::new(Ingest {
                timeline: Timeline::new(),
                packager: Packager::new(rendition.clone(), target).counted(event, id),
                meter: Meter::default(),
                target,
            }),
            rendition,
            fanout: Fanout::labelled(event, id),
            publisher: AtomicU64::new(0),
            changes,
            kick: watch::Sender::new(0),
            last_keyframe: Mutex::new(None),
            metrics: CameraMetrics::new(event, id),
        }
    }

    /// `live` (publishing), `offline` (has published, not now) or `waiting` (never published).
    pub fn status(&self) -> &'static str {
        if self.is_live() {
            "live"
        } else if self.rendition.snapshot().next_sequence > 0 {
            "offline"
        } else {
            "waiting"
        }
    }

    /// The newest video keyframe this camera has sent, if any.
    pub fn last_keyframe(&self) -> Option<Frame> {
        self.last_keyframe.lock().expect("keyframe lock").clone()
    }

    /// Closes the current publisher's connection, if any.
    pub fn disconnect(&self) {
        self.kick.send_modify(|n| *n += 1);
    }

    /// Changes when the publisher must disconnect.
    pub fn kicked(&self) -> watch::Receiver<u64> {
        self.kick.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    pub fn is_live(&self) -> bool {
        self.publisher.load(Ordering::Acquire) != 0
    }

    pub fn measured(&self) -> Measured {
        self.ingest
            .lock()
            .expect("ingest lock")
            .meter
            .measured
            .clone()
    }

    /// Takes the camera for publishing session `session` (non-zero).
    pub fn claim(self: &Arc<Self>, session: u64) -> Result<Publishing, ClaimError> {
        debug_assert_ne!(session, 0);
        self.publisher
            .compare_exchange(0, session, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| ClaimError::AlreadyLive)?;
        self.ingest.lock().expect("ingest lock").timeline.restart();
        self.metrics.live.set(1.0);
        self.changed();
        Ok(Publishing {
            camera: self.clone(),
        })
    }
}

/// Proof of holding a camera; dropping it (publisher gone, cleanly or not) lists the partial
/// segment and frees the camera.
#[derive(Debug)]
pub struct Publishing {
    camera: Arc<Camera>,
}

impl Publishing {
    pub fn camera(&self) -> &Arc<Camera> {
        &self.camera
    }

    /// Runs `f` on the ingest state; for timestamp conversion and frame pushes.
    pub fn with_ingest<R>(&self, f: impl FnOnce(&mut Ingest) -> R) -> R {
        f(&mut self.camera.ingest.lock().expect("ingest lock"))
    }

    pub fn push(&self, frame: Frame) {
        let camera = &self.camera;
        if frame.keyframe && frame.track.is_video() {
            *camera.last_keyframe.lock().expect("keyframe lock") = Some(frame.clone());
        }
        self.with_ingest(|ingest| {
            ingest.push(frame, &camera.fanout, &camera.label, &camera.metrics)
        });
    }

    pub fn expect_video(&self) {
        self.with_ingest(|ingest| ingest.packager.expect_video());
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        let camera = &self.camera;
        {
            let mut ingest = camera.ingest.lock().expect("ingest lock");
            if let Err(e) = ingest.packager.flush() {
                tracing::error!(camera = %camera.label, error = %e, "packaging the last segment failed");
            }
        }
        camera.fanout.reset();
        camera.metrics.live.set(0.0);
        camera.metrics.bitrate.set(0.0);
        camera.metrics.frame_rate.set(0.0);
        camera.publisher.store(0, Ordering::Release);
        tracing::info!(camera = %camera.label, "publisher offline");
        camera.changed();
    }
}
