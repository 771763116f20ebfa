//! Bounded fan-out of a camera's frames to consumers (program switcher, recorders, restreamers).
//!
//! Frames are `Arc`/`Bytes` clones, never payload copies. Late joiners first get the current GOP,
//! taken under the same lock as the subscription so nothing is missed or doubled. A consumer that
//! lags behind the bounded channel loses frames, logs it (rate-limited) and resumes at the next
//! keyframe, so its output never carries a broken GOP; the publisher never waits for it. Frames
//! lost that way are counted in `tally_fanout_dropped_frames_total{event,source}`, under the
//! fan-out's labels ([`Fanout::labelled`]) or the subscriber's ([`Fanout::subscribe_as`]).

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

use metrics::Counter;
use tokio::sync::broadcast;

use crate::media::Frame;

/// Frames buffered per consumer: about 4 s of 60 fps video with its audio.
pub const CAPACITY: usize = 512;
/// A GOP longer than this is not cached for late joiners (they wait for the next keyframe).
const MAX_GOP_FRAMES: usize = 2048;
const LAG_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Fanout {
    sender: broadcast::Sender<Frame>,
    /// Frames since the last video keyframe; `None` while a GOP overflowed the cache.
    gop: Mutex<Option<Vec<Frame>>>,
    /// Where this source's lagging consumers count lost frames; a no-op when unlabelled.
    dropped: Counter,
}

impl Default for Fanout {
    /// An unlabelled fan-out: losses are logged, and counted only by subscribers made with
    /// [`Fanout::subscribe_as`].
    fn default() -> Self {
        Fanout {
            sender: broadcast::Sender::new(CAPACITY),
            gop: Mutex::new(None),
            dropped: Counter::noop(),
        }
    }
}

impl Fanout {
    /// A fan-out of `event`'s `source` (a camera id, or `program`): every subscriber counts its
    /// losses under those labels.
    pub fn labelled(event: &str, source: &str) -> Self {
        Fanout {
            dropped: crate::telemetry::dropped_frames(event, source),
            ..Fanout::default()
        }
    }

    pub fn send(&self, frame: &Frame) {
        let mut gop = self.gop.lock().expect("gop lock");
        if frame.track.is_video() && frame.keyframe {
            *gop = Some(Vec::with_capacity(256));
        }
        if let Some(frames) = gop.as_mut() {
            if frames.len() < MAX_GOP_FRAMES {
                frames.push(frame.clone());
            } else {
                *gop = None;
            }
        }
        // No receivers is not an error: nobody is consuming this camera right now.
        let _ = self.sender.send(frame.clone());
    }

    /// Forgets the cached GOP (the publisher left: its GOP must not start a later consumer).
    pub fn reset(&self) {
        *self.gop.lock().expect("gop lock") = None;
    }

    pub fn subscribe(&self) -> Subscriber {
        let gop = self.gop.lock().expect("gop lock");
        Subscriber {
            backlog: gop.clone().unwrap_or_default().into(),
            receiver: self.sender.subscribe(),
            resync: gop.is_none(),
            lost: 0,
            dropped: self.dropped.clone(),
            last_log: None,
        }
    }

    /// [`Fanout::subscribe`], counting this subscriber's losses as `event`'s `source` whatever
    /// the fan-out's own labels (for an unlabelled fan-out such as a test's or the program's).
    pub fn subscribe_as(&self, event: &str, source: &str) -> Subscriber {
        Subscriber {
            dropped: crate::telemetry::dropped_frames(event, source),
            ..self.subscribe()
        }
    }

    /// Only frames sent from now on, from the first one: a switch target must cut at its *next*
    /// keyframe, not a cached one.
    pub fn subscribe_live(&self) -> Subscriber {
        Subscriber {
            backlog: VecDeque::new(),
            receiver: self.sender.subscribe(),
            resync: false,
            lost: 0,
            dropped: self.dropped.clone(),
            last_log: None,
        }
    }

    pub fn consumers(&self) -> usize {
        self.sender.receiver_count()
    }
}

#[derive(Debug)]
pub struct Subscriber {
    backlog: VecDeque<Frame>,
    receiver: broadcast::Receiver<Frame>,
    /// Skipping until the next video keyframe, after a loss or when joining without a GOP.
    resync: bool,
    /// Frames this consumer lost to lag.
    pub lost: u64,
    /// The process-wide count of such losses for this source (`tally_fanout_dropped_frames_total`).
    dropped: Counter,
    last_log: Option<Instant>,
}

impl Subscriber {
    /// The next frame, or `None` when the camera is gone.
    pub async fn recv(&mut self) -> Option<Frame> {
        if let Some(frame) = self.backlog.pop_front() {
            return Some(frame);
        }
        loop {
            match self.receiver.recv().await {
                Ok(frame) => {
                    if self.resync {
                        if !(frame.track.is_video() && frame.keyframe) {
                            continue;
                        }
                        self.resync = false;
                    }
                    return Some(frame);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.lost += n;
                    self.dropped.increment(n);
                    self.resync = true;
                    if self
                        .last_log
                        .is_none_or(|t| t.elapsed() >= LAG_LOG_INTERVAL)
                    {
                        tracing::warn!(
                            lost = self.lost,
                            "consumer lagging; resyncing at next keyframe"
                        );
                        self.last_log = Some(Instant::now());
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::segmenter::tests::{audio, audio_config, video, video_config};

    #[tokio::test]
    async fn late_joiner_gets_current_gop_then_live_frames() {
        let fanout = Fanout::default();
        let (v, a) = (video_config(640), audio_config());
        fanout.send(&video(&v, 0, true));
        fanout.send(&video(&v, 3000, false));
        fanout.send(&video(&v, 6000, true));
        fanout.send(&audio(&a, 1));
        let mut sub = fanout.subscribe();
        fanout.send(&video(&v, 9000, false));
        let dts: Vec<i64> = [
            sub.recv().await.unwrap(),
            sub.recv().await.unwrap(),
            sub.recv().await.unwrap(),
        ]
        .iter()
        .map(|f| f.dts)
        .collect();
        assert_eq!(dts, vec![6000, 1024, 9000]);
    }

    #[tokio::test]
    async fn lagging_consumer_resyncs_at_keyframe() {
        let fanout = Fanout::default();
        let v = video_config(640);
        let mut sub = fanout.subscribe();
        // Overflow the bounded channel; keyframe every 100 frames.
        for i in 0..(CAPACITY as i64 + 150) {
            fanout.send(&video(&v, i * 3000, i % 100 == 0));
        }
        let first = sub.recv().await.unwrap();
        assert!(first.keyframe, "resumes on a keyframe, never mid-GOP");
        assert!(sub.lost > 0);
        assert!(fanout.consumers() == 1);
    }

    /// The value of `tally_fanout_dropped_frames_total` for one event and source, if rendered.
    fn dropped(event: &str, source: &str) -> Option<u64> {
        let series =
            format!("tally_fanout_dropped_frames_total{{event=\"{event}\",source=\"{source}\"}} ");
        let text = crate::telemetry::handle().render();
        let line = text.lines().find_map(|l| l.strip_prefix(&series))?;
        line.trim().parse().ok()
    }

    #[tokio::test]
    async fn losses_are_counted_under_the_source_labels() {
        let (labelled, plain) = (Fanout::labelled("fanout-test", "cam1"), Fanout::default());
        let v = video_config(640);
        let mut sub = labelled.subscribe();
        let mut named = plain.subscribe_as("fanout-test", "program");
        let mut uncounted = plain.subscribe();
        for i in 0..(CAPACITY as i64 + 150) {
            labelled.send(&video(&v, i * 3000, i % 100 == 0));
            plain.send(&video(&v, i * 3000, i % 100 == 0));
        }
        for sub in [&mut sub, &mut named, &mut uncounted] {
            assert!(sub.recv().await.unwrap().keyframe);
        }
        assert_eq!(dropped("fanout-test", "cam1"), Some(sub.lost));
        assert_eq!(dropped("fanout-test", "program"), Some(named.lost));
        assert!(
            uncounted.lost > 0,
            "an unlabelled subscriber still keeps its own count"
        );
    }
}
