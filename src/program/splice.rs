//! The program splicer: follows one camera at a time, cuts to another at that camera's next video
//! keyframe, and rebases every frame onto one continuous program timeline.
//!
//! Pure: frames in, program events out; no clocks, no I/O. The rule, as MediaMTX does it when a
//! source is replaced: program time keeps moving forward. The cut keyframe lands one frame
//! duration after the last program video frame, and the target's audio is anchored so program
//! audio continues without a hole or an overlap while staying within half an AAC frame of lip
//! sync. Each camera keeps its own spacing after the cut (`out = in + offset`).
//!
//! A discontinuity from the active camera (a reconnect or a timestamp jump) is handled as an
//! automatic cut to the same camera at its next keyframe.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::media::{
    rescale, AudioConfig, Frame, Track, VideoConfig, AAC_FRAME_SAMPLES, VIDEO_TIMESCALE,
};

/// Seconds of the target's audio kept while a switch is pending: the anchor frame sits near the
/// keyframe's time, so older audio can never be chosen.
const AUDIO_BUFFER_SECONDS: i64 = 2;
/// Hard cap on buffered audio frames, in case timestamps stop advancing (2 s at 96 kHz is 188).
const AUDIO_BUFFER_FRAMES: usize = 256;
/// Program dts of the very first cut: headroom so audio anchored half a frame earlier stays
/// above zero (tfdt is unsigned).
const FIRST_PROGRAM_DTS: i64 = VIDEO_TIMESCALE as i64;
/// Video frame duration assumed until two frames have been emitted (30 fps).
const DEFAULT_VIDEO_STEP: i64 = 3000;

/// When a cut tells the packager to write EXT-X-DISCONTINUITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscontinuityPolicy {
    /// Never: timestamps are continuous, and hls.js plays through best without one.
    Never,
    /// Only when the target's codec configuration differs by value from the program's.
    OnConfigChange,
    /// At every cut, for strict players.
    Always,
}

/// What the program emits, in order.
#[derive(Debug, Clone)]
pub enum ProgramEvent {
    /// A cut: comes right before the target's keyframe, so the packager can start a new segment
    /// (and a new init segment when the configuration changed).
    Splice { discontinuity: bool },
    /// A program frame: rebased timestamps, the source's payload, track config and arrival.
    Frame(Frame),
}

/// A completed cut.
#[derive(Debug, Clone, PartialEq)]
pub struct Switched {
    /// The camera on program before the cut; `None` at the first cut or after `drop_active`.
    pub from: Option<String>,
    /// The camera now on program (equal to `from` when the active camera re-anchored).
    pub to: String,
    /// Program dts (90 kHz) of the cut keyframe.
    pub program_dts: i64,
    /// When the target's keyframe arrived (copied from K.arrival).
    pub keyframe_arrival: Instant,
    /// Audio lip-sync error at this cut, seconds. 0 when no audio of the target was anchored at
    /// the cut (none buffered yet: it anchors on its next audio frame, within the same bound).
    pub lip_sync_error: f64,
}

/// How the target's audio is placed on program time.
#[derive(Debug, Clone, Copy)]
enum Anchor {
    /// Continue program audio from `end` (ticks at `rate`): the first frame lip-synced no earlier
    /// than half a frame before `end` is placed exactly at `end`.
    Continue { end: i64, rate: u32 },
    /// No program audio to continue: place audio by lip sync alone, from half a frame before
    /// `from` (program video ticks).
    LipSync { from: i64 },
}

/// The active camera's audio mapping.
#[derive(Debug, Clone, Copy)]
enum AudioSync {
    /// No cut yet: nothing to map to.
    Unset,
    /// Looking for the anchor frame; frames before it are dropped.
    Waiting(Anchor),
    /// Added to the camera's audio dts (ticks at `rate`) to get program dts.
    Locked { offset: i64, rate: u32 },
}

/// Splices cameras into one program. Feed it every frame of the active and pending cameras.
#[derive(Debug)]
pub struct Splicer {
    /// Decides the `Splice` event's discontinuity flag.
    policy: DiscontinuityPolicy,
    /// The camera on program; `None` before the first cut and after `drop_active`.
    active: Option<String>,
    /// The camera to cut to at its next keyframe; equal to `active` when it re-anchors.
    pending: Option<String>,
    /// The active camera's timeline broke while another camera was pending: its frames cannot be
    /// rebased until it re-anchors, so they are dropped.
    stale_active: bool,
    /// Recent audio of the pending camera, oldest first: the anchor frame is usually at or just
    /// before its keyframe. Reused across switches so a switch allocates nothing new.
    audio: VecDeque<Frame>,
    /// Added to the active camera's video dts to get program dts.
    video_offset: i64,
    /// How the active camera's audio maps to program time.
    audio_sync: AudioSync,
    /// Last program video dts: the next cut lands one frame after it. `None` before the first cut.
    last_video: Option<i64>,
    /// Duration of the last program video frame (difference of the last two dts).
    video_step: i64,
    /// Where program video presentation ends (latest pts + one frame): a cut never presents its
    /// keyframe before this, or players would see two pictures at one instant.
    presented_end: Option<i64>,
    /// Last program audio dts and its timescale: program audio ends one AAC frame later.
    last_audio: Option<(i64, u32)>,
    /// The active camera emitted audio since its cut. If not, continuing from older program audio
    /// would leave the target out of sync, so the next cut anchors by lip sync alone.
    audio_since_cut: bool,
    /// Configurations in force on the program, for `OnConfigChange`.
    video_config: Option<Arc<VideoConfig>>,
    audio_config: Option<Arc<AudioConfig>>,
}

impl Splicer {
    pub fn new(policy: DiscontinuityPolicy) -> Self {
        Splicer {
            policy,
            active: None,
            pending: None,
            stale_active: false,
            audio: VecDeque::new(),
            video_offset: 0,
            audio_sync: AudioSync::Unset,
            last_video: None,
            presented_end: None,
            video_step: DEFAULT_VIDEO_STEP,
            last_audio: None,
            audio_since_cut: false,
            video_config: None,
            audio_config: None,
        }
    }

    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    /// The camera the program cuts to at its next keyframe; the active camera itself while it
    /// re-anchors after a discontinuity.
    pub fn pending(&self) -> Option<&str> {
        self.pending.as_deref()
    }

    /// Requests a switch to `camera` at its next keyframe; replaces a pending one. Returns false
    /// when `camera` is already active and nothing is pending (nothing to do).
    ///
    /// Requesting the active camera while another is pending cancels that switch (the program
    /// stays where it is) and returns true; requesting the pending camera again keeps its
    /// buffered audio.
    pub fn request(&mut self, camera: &str) -> bool {
        if self.pending.as_deref() == Some(camera) {
            return true;
        }
        if self.active.as_deref() == Some(camera) && !self.stale_active {
            self.audio.clear();
            return self.pending.take().is_some();
        }
        self.pending = Some(camera.to_owned());
        self.audio.clear();
        true
    }

    /// Drops the pending switch. A re-anchor of the active camera is not the operator's to
    /// cancel: without it the active camera's frames cannot be rebased.
    pub fn cancel(&mut self) {
        if self.stale_active && self.active.is_some() {
            if self.pending != self.active {
                self.pending = self.active.clone();
                self.audio.clear();
            }
        } else {
            self.pending = None;
            self.audio.clear();
        }
    }

    /// The active camera is gone (failover): nothing is emitted until a requested camera cuts in.
    pub fn drop_active(&mut self) {
        if self.pending.is_some() && self.pending == self.active {
            self.pending = None;
            self.audio.clear();
        }
        self.active = None;
        self.stale_active = false;
    }

    /// Feeds one frame from `camera`; appends what the program emits to `out` and returns the
    /// switch it completed, if any (including the active camera re-anchoring, `from == to`).
    pub fn push(
        &mut self,
        camera: &str,
        frame: &Frame,
        out: &mut Vec<ProgramEvent>,
    ) -> Option<Switched> {
        if self.pending.as_deref() == Some(camera) {
            return self.push_pending(frame, out);
        }
        if self.active.as_deref() != Some(camera) || self.stale_active {
            return None;
        }
        if frame.discontinuity {
            // Its timeline broke: the offsets no longer apply until it re-anchors at a keyframe.
            self.stale_active = true;
            if self.pending.is_none() {
                self.pending = self.active.clone();
                self.audio.clear();
                return self.push_pending(frame, out);
            }
            return None;
        }
        match &frame.track {
            Track::Video(config) => {
                let dts = frame.dts + self.video_offset;
                // Defensive: program decode time must rise even if a source steps back.
                if dts < 0 || self.last_video.is_some_and(|last| dts <= last) {
                    return None;
                }
                self.emit_video(frame, config, dts, out);
            }
            Track::Audio(_) => {
                self.push_audio(frame, out);
            }
        }
        None
    }

    /// A frame of the pending camera: buffer audio, wait for a keyframe, cut on it.
    fn push_pending(&mut self, frame: &Frame, out: &mut Vec<ProgramEvent>) -> Option<Switched> {
        match &frame.track {
            Track::Audio(config) => {
                // Only one contiguous run of audio can be anchored: restart after a break.
                let broken = self.audio.back().is_some_and(|last| {
                    frame.dts <= last.dts || last.track.timescale() != config.sample_rate
                });
                if frame.discontinuity || broken {
                    self.audio.clear();
                }
                self.audio.push_back(frame.clone());
                let horizon = AUDIO_BUFFER_SECONDS * i64::from(config.sample_rate);
                while let Some(front) = self.audio.front() {
                    if self.audio.len() <= AUDIO_BUFFER_FRAMES && frame.dts - front.dts <= horizon {
                        break;
                    }
                    self.audio.pop_front();
                }
                None
            }
            Track::Video(config) if frame.keyframe => Some(self.cut(frame, config, out)),
            Track::Video(_) => None,
        }
    }

    /// Makes the pending camera active at its keyframe `k`.
    fn cut(
        &mut self,
        k: &Frame,
        config: &Arc<VideoConfig>,
        out: &mut Vec<ProgramEvent>,
    ) -> Switched {
        let to = self.pending.take().expect("cut only with a pending camera");
        let from = self.active.replace(to.clone());
        self.stale_active = false;

        // One frame after the last decoded frame; later only when the target's B-frame delay is
        // shorter than the outgoing camera's, so that presentation does not overlap either.
        let program_dts = match (self.last_video, self.presented_end) {
            (Some(last), Some(shown)) => {
                (last + self.video_step).max(shown - i64::from(k.cts_offset))
            }
            (Some(last), None) => last + self.video_step,
            _ => FIRST_PROGRAM_DTS,
        };
        let discontinuity = self.last_video.is_some()
            && match self.policy {
                DiscontinuityPolicy::Never => false,
                DiscontinuityPolicy::Always => true,
                DiscontinuityPolicy::OnConfigChange => self.config_changed(config),
            };
        out.push(ProgramEvent::Splice { discontinuity });
        self.video_offset = program_dts - k.dts;
        self.emit_video(k, config, program_dts, out);

        let anchor = match self.last_audio {
            Some((last, rate)) if self.audio_since_cut => Anchor::Continue {
                end: last + i64::from(AAC_FRAME_SAMPLES),
                rate,
            },
            _ => Anchor::LipSync { from: program_dts },
        };
        self.audio_sync = AudioSync::Waiting(anchor);
        self.audio_since_cut = false;
        let mut lip_sync_error = 0.0;
        // Taken out and put back so the buffer's allocation is reused.
        let mut buffered = std::mem::take(&mut self.audio);
        for frame in buffered.drain(..) {
            if let Some(error) = self.push_audio(&frame, out) {
                lip_sync_error = error;
            }
        }
        self.audio = buffered;

        Switched {
            from,
            to,
            program_dts,
            keyframe_arrival: k.arrival,
            lip_sync_error,
        }
    }

    /// Whether the target's configuration differs by value from the program's. The target's
    /// audio configuration is known only if some of its audio was buffered; audio appearing where
    /// the program had none counts as a change.
    fn config_changed(&self, video: &Arc<VideoConfig>) -> bool {
        let video_changed = self.video_config.as_deref() != Some(&**video);
        let audio_changed = match self.audio.back().map(|f| &f.track) {
            Some(Track::Audio(audio)) => self.audio_config.as_deref() != Some(&**audio),
            _ => false,
        };
        video_changed || audio_changed
    }

    fn emit_video(
        &mut self,
        frame: &Frame,
        config: &Arc<VideoConfig>,
        dts: i64,
        out: &mut Vec<ProgramEvent>,
    ) {
        if let Some(last) = self.last_video {
            self.video_step = dts - last;
        }
        self.last_video = Some(dts);
        let shown = dts + i64::from(frame.cts_offset.max(0)) + self.video_step;
        self.presented_end = Some(self.presented_end.map_or(shown, |end| end.max(shown)));
        if !self
            .video_config
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, config))
        {
            self.video_config = Some(config.clone());
        }
        out.push(ProgramEvent::Frame(rebased(frame, dts)));
    }

    /// Maps an audio frame of the active camera onto the program, anchoring it if needed.
    /// Returns the lip-sync error when this frame is the anchor.
    fn push_audio(&mut self, frame: &Frame, out: &mut Vec<ProgramEvent>) -> Option<f64> {
        let Track::Audio(config) = &frame.track else {
            return None;
        };
        let rate = config.sample_rate;
        if rate == 0 {
            return None;
        }
        if let AudioSync::Locked { rate: locked, .. } = self.audio_sync {
            if locked != rate {
                // The camera's sample rate changed: its ticks no longer match the offset.
                self.audio_sync = AudioSync::Waiting(match self.last_audio {
                    Some((last, rate)) => Anchor::Continue {
                        end: last + i64::from(AAC_FRAME_SAMPLES),
                        rate,
                    },
                    None => Anchor::LipSync {
                        from: self.last_video.unwrap_or(FIRST_PROGRAM_DTS),
                    },
                });
            }
        }
        let mut anchored = None;
        let offset = match self.audio_sync {
            AudioSync::Unset => return None,
            AudioSync::Locked { offset, .. } => offset,
            AudioSync::Waiting(anchor) => {
                let (offset, error) = self.anchor(anchor, frame.dts, rate)?;
                self.audio_sync = AudioSync::Locked { offset, rate };
                anchored = Some(error);
                offset
            }
        };
        let dts = frame.dts + offset;
        // Defensive: a source stepping back must not overlap audio already on the program.
        let overlaps = self
            .last_audio
            .is_some_and(|(last, last_rate)| dts <= rescale(last, last_rate, rate));
        if dts < 0 || overlaps {
            return anchored;
        }
        self.last_audio = Some((dts, rate));
        self.audio_since_cut = true;
        if !self
            .audio_config
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, config))
        {
            self.audio_config = Some(config.clone());
        }
        out.push(ProgramEvent::Frame(rebased(frame, dts)));
        anchored
    }

    /// Whether an audio frame at `dts` (ticks at `rate`) is the anchor under `anchor`; if so, its
    /// offset to program time and the resulting lip-sync error in seconds.
    ///
    /// Times are compared exactly, as integers in units of 1 / (2 · 90000 · rate) s.
    fn anchor(&self, anchor: Anchor, dts: i64, rate: u32) -> Option<(i64, f64)> {
        let v = i128::from(VIDEO_TIMESCALE);
        let r = i128::from(rate);
        let half_frame = i128::from(AAC_FRAME_SAMPLES) * v;
        // Where video puts this frame: its time plus the video offset.
        let synced = 2 * (i128::from(dts) * v + i128::from(self.video_offset) * r);
        let lip_offset = rescale(self.video_offset, VIDEO_TIMESCALE, rate);
        let error = |offset: i64| {
            let units = (i128::from(offset) * v - i128::from(self.video_offset) * r).abs();
            units as f64 / (v * r) as f64
        };
        match anchor {
            Anchor::Continue {
                end,
                rate: end_rate,
            } => {
                let end = rescale(end, end_rate, rate);
                let end_units = 2 * i128::from(end) * v;
                if synced < end_units - half_frame {
                    return None;
                }
                if synced - end_units > half_frame {
                    // The target's audio resumes later than program audio ends (it had a gap):
                    // placing it at the end would desync it, so keep sync and leave the hole.
                    return Some((lip_offset, error(lip_offset)));
                }
                let offset = end - dts;
                Some((offset, error(offset)))
            }
            Anchor::LipSync { from } => {
                let program = dts + lip_offset;
                if 2 * i128::from(program) * v < 2 * i128::from(from) * r - half_frame {
                    return None;
                }
                // Never overlap audio left from before a camera without audio.
                let end = self.last_audio.map(|(last, last_rate)| {
                    rescale(last + i64::from(AAC_FRAME_SAMPLES), last_rate, rate)
                });
                if end.is_some_and(|end| program < end) {
                    return None;
                }
                Some((lip_offset, error(lip_offset)))
            }
        }
    }
}

/// The frame at program time `dts`; the packager learns of splices from `ProgramEvent::Splice`.
fn rebased(frame: &Frame, dts: i64) -> Frame {
    Frame {
        dts,
        discontinuity: false,
        ..frame.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    const V: i64 = VIDEO_TIMESCALE as i64;

    /// A synthetic camera: video and AAC on its own timeline, arriving in real time.
    #[derive(Clone)]
    struct Source {
        name: &'static str,
        /// First payload byte of its frames, so output can be traced back.
        tag: u8,
        video: Arc<VideoConfig>,
        audio: Option<Arc<AudioConfig>>,
        video_step: i64,
        gop: i64,
        video_start: i64,
        /// Wall time of its first frame, seconds.
        wall_start: f64,
        /// Audio arrives this much later than video of the same time.
        audio_delay: f64,
        /// Seconds of its own time before its audio begins.
        audio_from: f64,
        /// From this wall time on, dts jump by this many 90 kHz ticks (first frame flagged).
        jump: Option<(f64, i64)>,
    }

    fn video_config(width: u16) -> Arc<VideoConfig> {
        Arc::new(VideoConfig {
            avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f]),
            width,
            height: 720,
            profile: 0x64,
            compatibility: 0,
            level: 0x1f,
            nal_length_size: 4,
        })
    }

    fn audio_config(sample_rate: u32) -> Arc<AudioConfig> {
        Arc::new(AudioConfig {
            asc: Bytes::from_static(&[0x12, 0x10]),
            object_type: 2,
            sample_rate,
            channels: 2,
        })
    }

    fn source(name: &'static str, tag: u8, fps: i64, rate: u32, start: i64, wall: f64) -> Source {
        Source {
            name,
            tag,
            video: video_config(if fps == 30 { 1280 } else { 1920 }),
            audio: Some(audio_config(rate)),
            video_step: V / fps,
            gop: fps,
            video_start: start,
            wall_start: wall,
            audio_delay: 0.0,
            audio_from: 0.0,
            jump: None,
        }
    }

    /// 30 fps, 48 kHz.
    fn cam_a() -> Source {
        source("a", b'a', 30, 48_000, 5_000_000, 0.0)
    }

    /// 25 fps, 44.1 kHz.
    fn cam_b() -> Source {
        source("b", b'b', 25, 44_100, 123_456, 0.013)
    }

    /// 30 fps, 48 kHz, another picture size.
    fn cam_c() -> Source {
        let mut c = source("c", b'c', 30, 48_000, 42_000, 0.2);
        c.video = video_config(640);
        c
    }

    /// Same configurations as `a` by value, in new `Arc`s, on another timeline.
    fn cam_a2() -> Source {
        source("a2", b'x', 30, 48_000, 77_000, 0.1)
    }

    struct Input {
        wall: f64,
        camera: &'static str,
        frame: Frame,
    }

    fn payload(tag: u8, video: bool, dts: i64) -> Bytes {
        let mut bytes = vec![tag, if video { b'v' } else { b's' }];
        bytes.extend_from_slice(&dts.to_le_bytes());
        Bytes::from(bytes)
    }

    /// Where an output frame came from: camera tag, video or not, input dts.
    fn origin(frame: &Frame) -> (u8, bool, i64) {
        let p = &frame.payload;
        let dts = i64::from_le_bytes(p[2..10].try_into().unwrap());
        (p[0], p[1] == b'v', dts)
    }

    /// Every source's frames for `seconds` of wall time, merged in arrival order.
    fn feed(sources: &[Source], seconds: f64, base: Instant) -> Vec<Input> {
        let mut inputs = Vec::new();
        for s in sources {
            let jumped = |wall: f64| s.jump.filter(|&(at, _)| wall >= at).map_or(0, |j| j.1);
            let mut push = |wall: f64, frame: Frame| {
                inputs.push(Input {
                    wall,
                    camera: s.name,
                    frame,
                })
            };
            for i in 0.. {
                let wall = s.wall_start + (i * s.video_step) as f64 / V as f64;
                if wall >= seconds {
                    break;
                }
                let dts = s.video_start + i * s.video_step + jumped(wall);
                push(
                    wall,
                    Frame {
                        track: Track::Video(s.video.clone()),
                        dts,
                        // B-frame style reordering, restarting at each IDR as encoders do (the
                        // IDR carries the whole reorder delay).
                        cts_offset: [2, 0, 1][(i % s.gop) as usize % 3] * s.video_step as i32,
                        keyframe: i % s.gop == 0,
                        discontinuity: false,
                        payload: payload(s.tag, true, dts),
                        arrival: base + Duration::from_secs_f64(wall),
                    },
                );
            }
            let Some(audio) = &s.audio else { continue };
            let rate = audio.sample_rate;
            let start = rescale(s.video_start, VIDEO_TIMESCALE, rate);
            for j in 0.. {
                let own = (j * 1024) as f64 / f64::from(rate);
                let wall = s.wall_start + s.audio_delay + own;
                if wall >= seconds {
                    break;
                }
                if own < s.audio_from {
                    continue;
                }
                let dts = start + j * 1024 + rescale(jumped(wall), VIDEO_TIMESCALE, rate);
                push(
                    wall,
                    Frame {
                        track: Track::Audio(audio.clone()),
                        dts,
                        cts_offset: 0,
                        keyframe: true,
                        discontinuity: false,
                        payload: payload(s.tag, false, dts),
                        arrival: base + Duration::from_secs_f64(wall),
                    },
                );
            }
        }
        inputs.sort_by(|x, y| x.wall.total_cmp(&y.wall));
        for s in sources {
            if let Some((at, _)) = s.jump {
                let first = inputs
                    .iter_mut()
                    .find(|i| i.camera == s.name && i.wall >= at);
                first.expect("frames after the jump").frame.discontinuity = true;
            }
        }
        inputs
    }

    enum Act {
        Request(&'static str),
        Cancel,
        DropActive,
    }

    struct Run {
        events: Vec<ProgramEvent>,
        /// Each completed switch with the index of its `Splice` in `events`.
        switches: Vec<(usize, Switched)>,
        /// What each `Request` returned.
        requested: Vec<bool>,
        splicer: Splicer,
    }

    /// Feeds `inputs`, applying each act before the first frame arriving at or after its time.
    fn run(policy: DiscontinuityPolicy, inputs: &[Input], acts: &[(f64, Act)]) -> Run {
        let mut splicer = Splicer::new(policy);
        let (mut events, mut switches, mut requested) = (Vec::new(), Vec::new(), Vec::new());
        let mut acts = acts.iter().peekable();
        for input in inputs {
            while let Some((_, act)) = acts.next_if(|(at, _)| *at <= input.wall) {
                match act {
                    Act::Request(camera) => requested.push(splicer.request(camera)),
                    Act::Cancel => splicer.cancel(),
                    Act::DropActive => splicer.drop_active(),
                }
            }
            let before = events.len();
            if let Some(switched) = splicer.push(input.camera, &input.frame, &mut events) {
                assert!(matches!(events[before], ProgramEvent::Splice { .. }));
                switches.push((before, switched));
            }
        }
        Run {
            events,
            switches,
            requested,
            splicer,
        }
    }

    fn half_frame(rate: u32) -> f64 {
        0.5 * 1024.0 / f64::from(rate)
    }

    /// Program segments: from one `Splice` to the next.
    #[derive(Debug)]
    struct Segment {
        tag: u8,
        discontinuity: bool,
        video_offset: i64,
        /// Index of its keyframe K in `events`.
        k: usize,
    }

    /// Checks the splice rule on a whole program and returns its segments:
    /// every segment comes from one camera and starts with a `Splice` and that camera's keyframe
    /// (its config `Arc` untouched); video dts contiguous, each step the previous frame's
    /// duration, starting at 90000; audio contiguous (or, with `holes`, never overlapping), across
    /// rate changes by rescaling the program audio end; every audio frame within half an AAC
    /// frame of lip sync; no discontinuity flags; arrivals preserved; switch reports right.
    fn check(run: &Run, sources: &[Source], inputs: &[Input], holes: bool) -> Vec<Segment> {
        let by_tag = |tag: u8| sources.iter().find(|s| s.tag == tag).unwrap();
        let arrivals: HashMap<(u8, bool, i64), Instant> = inputs
            .iter()
            .map(|i| (origin(&i.frame), i.frame.arrival))
            .collect();
        let mut segments: Vec<Segment> = Vec::new();
        let mut last_video: Option<(i64, u8)> = None;
        let mut presented_end: Option<i64> = None;
        let mut last_audio: Option<(i64, u32)> = None;
        for (index, event) in run.events.iter().enumerate() {
            let frame = match event {
                ProgramEvent::Splice { discontinuity } => {
                    let Some(ProgramEvent::Frame(k)) = run.events.get(index + 1) else {
                        panic!("splice at {index} not followed by a frame");
                    };
                    let (tag, video, input) = origin(k);
                    assert!(
                        video && k.keyframe,
                        "splice at {index} not followed by a keyframe"
                    );
                    let Track::Video(config) = &k.track else {
                        unreachable!()
                    };
                    assert!(Arc::ptr_eq(config, &by_tag(tag).video));
                    segments.push(Segment {
                        tag,
                        discontinuity: *discontinuity,
                        video_offset: k.dts - input,
                        k: index + 1,
                    });
                    continue;
                }
                ProgramEvent::Frame(frame) => frame,
            };
            let segment = segments.last().expect("a splice before any frame");
            let (tag, video, input) = origin(frame);
            assert_eq!(tag, segment.tag, "event {index} from another camera");
            assert!(!frame.discontinuity);
            assert_eq!(frame.arrival, arrivals[&(tag, video, input)]);
            assert!(frame.dts >= 0);
            match &frame.track {
                Track::Video(config) => {
                    assert!(Arc::ptr_eq(config, &by_tag(tag).video));
                    assert_eq!(frame.dts - input, segment.video_offset, "event {index}");
                    let step = |t: u8| by_tag(t).video_step;
                    match last_video {
                        // Within a camera: its own spacing. At a cut: one frame after the last
                        // decoded frame, or later only so its presentation starts where the
                        // program's ends.
                        Some((last, last_tag)) if last_tag == tag && segment.k != index => {
                            assert_eq!(
                                frame.dts - last,
                                step(tag),
                                "video spacing at event {index}"
                            )
                        }
                        Some((last, last_tag)) => {
                            let shown = presented_end.unwrap() - i64::from(frame.cts_offset);
                            assert_eq!(
                                frame.dts,
                                (last + step(last_tag)).max(shown),
                                "cut not contiguous at event {index}"
                            )
                        }
                        None => assert_eq!(frame.dts, 90_000),
                    }
                    if let Some((last, _)) = last_video {
                        assert!(frame.dts > last, "decode time rises at event {index}");
                    }
                    let shown = frame.dts + i64::from(frame.cts_offset) + step(tag);
                    presented_end = Some(presented_end.map_or(shown, |e| e.max(shown)));
                    last_video = Some((frame.dts, tag));
                }
                Track::Audio(config) => {
                    assert!(Arc::ptr_eq(config, by_tag(tag).audio.as_ref().unwrap()));
                    let rate = config.sample_rate;
                    let program = frame.dts as f64 / f64::from(rate);
                    let synced =
                        input as f64 / f64::from(rate) + segment.video_offset as f64 / V as f64;
                    assert!(
                        (program - synced).abs() <= half_frame(rate) + 1e-9,
                        "audio at event {index} off lip sync by {} s",
                        program - synced
                    );
                    if let Some((last, last_rate)) = last_audio {
                        let end = rescale(last + 1024, last_rate, rate);
                        if holes {
                            assert!(frame.dts >= end, "audio overlap at event {index}");
                        } else {
                            assert_eq!(frame.dts, end, "audio not contiguous at event {index}");
                        }
                    }
                    last_audio = Some((frame.dts, rate));
                }
            }
        }
        assert_eq!(segments.len(), run.switches.len());
        for (segment, (index, switched)) in segments.iter().zip(&run.switches) {
            assert_eq!(segment.k, index + 1);
            let ProgramEvent::Frame(k) = &run.events[segment.k] else {
                unreachable!()
            };
            assert_eq!(switched.to, by_tag(segment.tag).name);
            assert_eq!(switched.program_dts, k.dts);
            assert_eq!(switched.keyframe_arrival, k.arrival);
            let rate = by_tag(segment.tag)
                .audio
                .as_ref()
                .map_or(48_000, |a| a.sample_rate);
            assert!(switched.lip_sync_error <= half_frame(rate) + 1e-12);
            // When the anchor came from the buffer (right after K, arrived before it), the
            // report is its error; otherwise it is 0.
            if let Some(ProgramEvent::Frame(f)) = run.events.get(segment.k + 1) {
                let (_, video, input) = origin(f);
                if !video && f.arrival < k.arrival {
                    let rate = f64::from(f.track.timescale());
                    let synced = input as f64 / rate + segment.video_offset as f64 / V as f64;
                    let error = (f.dts as f64 / rate - synced).abs();
                    assert!(
                        (switched.lip_sync_error - error).abs() < 1e-9,
                        "{switched:?} {error}"
                    );
                }
            }
        }
        segments
    }

    fn frames(run: &Run) -> impl Iterator<Item = &Frame> {
        run.events.iter().filter_map(|e| match e {
            ProgramEvent::Frame(f) => Some(f),
            ProgramEvent::Splice { .. } => None,
        })
    }

    fn k_frame(run: &Run, segment: &Segment) -> Frame {
        let ProgramEvent::Frame(k) = &run.events[segment.k] else {
            unreachable!()
        };
        k.clone()
    }

    #[test]
    fn first_request_starts_at_the_next_keyframe_at_one_second() {
        let sources = [cam_a(), cam_b()];
        let inputs = feed(&sources, 3.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Always,
            &inputs,
            &[(0.5, Act::Request("a"))],
        );
        assert_eq!(run.requested, [true]);
        assert!(matches!(
            run.events[0],
            ProgramEvent::Splice {
                discontinuity: false
            }
        ));
        let segments = check(&run, &sources, &inputs, false);
        assert_eq!(segments.len(), 1);
        let k = k_frame(&run, &segments[0]);
        // a's keyframes are at 0 s, 1 s, ...: the one after the request.
        assert_eq!(origin(&k), (b'a', true, 5_000_000 + 30 * 3000));
        assert_eq!(k.dts, 90_000);
        let (index, switched) = &run.switches[0];
        assert_eq!((*index, switched.from.as_deref()), (0, None));
        assert_eq!(switched.program_dts, 90_000);
        // No audio before the first cut: anchored by lip sync, the first frame within half a
        // frame of K.
        let first_audio = frames(&run).find(|f| !f.track.is_video()).unwrap();
        assert!(first_audio.dts_seconds() >= 1.0 - half_frame(48_000));
        assert!(first_audio.dts_seconds() < 1.0 + half_frame(48_000));
        assert_eq!(run.splicer.active(), Some("a"));
        assert_eq!(run.splicer.pending(), None);
        // No b frame at all: it was never requested.
        assert!(frames(&run).all(|f| f.payload[0] == b'a'));
    }

    #[test]
    fn switch_mid_gop_cuts_at_the_targets_next_keyframe() {
        let sources = [cam_a(), cam_b()];
        let inputs = feed(&sources, 5.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Never,
            &inputs,
            &[(0.0, Act::Request("a")), (2.37, Act::Request("b"))],
        );
        let segments = check(&run, &sources, &inputs, false);
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[0].tag, b'a');
        assert_eq!(segments[1].tag, b'b');

        // b's keyframes arrive at 0.013 + n s: the first after 2.37 s is its 75th frame.
        let k = k_frame(&run, &segments[1]);
        assert_eq!(origin(&k), (b'b', true, 123_456 + 75 * 3600));
        // Every a video frame that arrived before K is on program, the last one right before it.
        let a_video: Vec<i64> = frames(&run)
            .filter(|f| f.track.is_video() && f.payload[0] == b'a')
            .map(|f| f.dts)
            .collect();
        assert_eq!(a_video.len(), 91); // a's frames at 0 .. 3.0 s
        let last_a = *a_video.last().unwrap();
        assert_eq!(last_a, 90_000 + 90 * 3000);
        assert_eq!(k.dts, last_a + 3000);
        let (_, switched) = &run.switches[1];
        assert_eq!(switched.from.as_deref(), Some("a"));
        assert_eq!(switched.to, "b");
        assert_eq!(switched.program_dts, last_a + 3000);
        assert!(switched.lip_sync_error > 0.0);

        // Right after K: the buffered b audio from the anchor on, at exactly the program audio
        // end rescaled to 44.1 kHz, then b's frames as they come.
        let a_audio_end = frames(&run)
            .filter(|f| !f.track.is_video() && f.payload[0] == b'a')
            .map(|f| f.dts + 1024)
            .last()
            .unwrap();
        let ProgramEvent::Frame(f) = &run.events[segments[1].k + 1] else {
            panic!("audio expected after K")
        };
        let (tag, video, _) = origin(f);
        assert!(tag == b'b' && !video);
        assert_eq!(f.dts, rescale(a_audio_end, 48_000, 44_100));
        assert!(f.arrival <= k.arrival, "the anchor came from the buffer");
        // From K on, only b: no a video or audio after the cut.
        assert!(run.events[segments[1].k..].iter().all(|e| match e {
            ProgramEvent::Frame(f) => f.payload[0] == b'b',
            ProgramEvent::Splice { .. } => false,
        }));
    }

    #[test]
    fn back_and_forth_keeps_one_continuous_timeline() {
        let sources = [cam_a(), cam_b()];
        let inputs = feed(&sources, 9.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Never,
            &inputs,
            &[
                (0.0, Act::Request("a")),
                (2.37, Act::Request("b")),
                (4.6, Act::Request("a")),
                (6.2, Act::Request("b")),
            ],
        );
        assert_eq!(run.requested, [true; 4]);
        let segments = check(&run, &sources, &inputs, false);
        let tags: Vec<u8> = segments.iter().map(|s| s.tag).collect();
        assert_eq!(tags, b"abab");
        let hops: Vec<(Option<&str>, &str)> = run
            .switches
            .iter()
            .map(|(_, s)| (s.from.as_deref(), s.to.as_str()))
            .collect();
        assert_eq!(
            hops,
            [
                (None, "a"),
                (Some("a"), "b"),
                (Some("b"), "a"),
                (Some("a"), "b")
            ]
        );
        for (_, switched) in &run.switches[1..] {
            assert!(switched.lip_sync_error > 0.0);
        }
        // Program time tracks wall time: each cut moves it by less than a frame.
        let video: Vec<&Frame> = frames(&run).filter(|f| f.track.is_video()).collect();
        let (first, last) = (video[0], video[video.len() - 1]);
        let span = (last.dts - first.dts) as f64 / V as f64;
        let wall = (last.arrival - first.arrival).as_secs_f64();
        assert!((span - wall).abs() < 3.0 / 25.0, "{span} vs {wall}");
    }

    #[test]
    fn a_request_replaced_while_pending_drops_the_old_target() {
        let sources = [cam_a(), cam_b(), cam_c()];
        let inputs = feed(&sources, 5.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Never,
            &inputs,
            &[
                (0.0, Act::Request("a")),
                (2.37, Act::Request("b")),
                (2.5, Act::Request("c")),
            ],
        );
        let segments = check(&run, &sources, &inputs, false);
        let tags: Vec<u8> = segments.iter().map(|s| s.tag).collect();
        assert_eq!(tags, b"ac");
        assert!(frames(&run).all(|f| f.payload[0] != b'b'));
        // c's keyframes arrive at 0.2 + n s.
        assert_eq!(
            origin(&k_frame(&run, &segments[1])),
            (b'c', true, 42_000 + 90 * 3000)
        );
        assert_eq!(run.switches[1].1.from.as_deref(), Some("a"));
        assert_eq!(run.splicer.active(), Some("c"));
    }

    #[test]
    fn pending_state_replacement_and_buffer_reset() {
        let mut splicer = Splicer::new(DiscontinuityPolicy::Never);
        let inputs = feed(&[cam_b()], 0.5, Instant::now());
        assert!(splicer.request("b"));
        let mut out = Vec::new();
        for input in inputs.iter().filter(|i| !i.frame.track.is_video()) {
            assert!(splicer.push(input.camera, &input.frame, &mut out).is_none());
        }
        assert!(out.is_empty());
        assert!(!splicer.audio.is_empty());
        // Re-requesting the pending camera keeps its audio; another request drops it.
        assert!(splicer.request("b"));
        assert!(!splicer.audio.is_empty());
        assert!(splicer.request("c"));
        assert_eq!(splicer.pending(), Some("c"));
        assert!(splicer.audio.is_empty());
        splicer.cancel();
        assert_eq!((splicer.active(), splicer.pending()), (None, None));
    }

    #[test]
    fn cancel_keeps_the_program_on_the_active_camera() {
        let sources = [cam_a(), cam_b()];
        let inputs = feed(&sources, 5.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Never,
            &inputs,
            &[
                (0.0, Act::Request("a")),
                (2.37, Act::Request("b")),
                (2.5, Act::Cancel),
            ],
        );
        let segments = check(&run, &sources, &inputs, false);
        assert_eq!(segments.len(), 1);
        assert!(frames(&run).all(|f| f.payload[0] == b'a'));
        // No a frame lost: all of them from the first keyframe on.
        let a_video = frames(&run).filter(|f| f.track.is_video()).count();
        assert_eq!(a_video, 150);
        assert_eq!(run.splicer.pending(), None);
        assert!(run.splicer.audio.is_empty());
    }

    #[test]
    fn requesting_the_active_camera_does_nothing_or_cancels() {
        let sources = [cam_a(), cam_b()];
        let inputs = feed(&sources, 5.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Always,
            &inputs,
            &[
                (0.0, Act::Request("a")),
                (2.0, Act::Request("a")),
                (2.37, Act::Request("b")),
                (2.5, Act::Request("a")),
            ],
        );
        // Nothing to do; then a pending switch to b called off by asking for a again.
        assert_eq!(run.requested, [true, false, true, true]);
        let segments = check(&run, &sources, &inputs, false);
        assert_eq!(segments.len(), 1);
        assert_eq!(frames(&run).filter(|f| f.track.is_video()).count(), 150);
        assert_eq!(run.splicer.pending(), None);
    }

    fn policy_run(policy: DiscontinuityPolicy) -> Vec<bool> {
        let sources = [cam_a(), cam_b(), cam_a2()];
        let inputs = feed(&sources, 9.0, Instant::now());
        let run = run(
            policy,
            &inputs,
            &[
                (0.0, Act::Request("a")),
                (2.37, Act::Request("b")),
                (4.6, Act::Request("a")),
                (6.2, Act::Request("a2")),
            ],
        );
        let segments = check(&run, &sources, &inputs, false);
        let tags: Vec<u8> = segments.iter().map(|s| s.tag).collect();
        assert_eq!(tags, b"abax");
        segments.iter().map(|s| s.discontinuity).collect()
    }

    #[test]
    fn discontinuity_policy() {
        assert_eq!(
            policy_run(DiscontinuityPolicy::Never),
            [false, false, false, false]
        );
        assert_eq!(
            policy_run(DiscontinuityPolicy::Always),
            [false, true, true, true]
        );
        // a -> b and b -> a change configurations; a -> a2 only their Arcs.
        assert_eq!(
            policy_run(DiscontinuityPolicy::OnConfigChange),
            [false, true, true, false]
        );
    }

    #[test]
    fn drop_active_emits_nothing_until_the_next_cut() {
        let sources = [cam_a(), cam_b()];
        let inputs = feed(&sources, 5.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Never,
            &inputs,
            &[
                (0.0, Act::Request("a")),
                (2.0, Act::DropActive),
                (2.6, Act::Request("b")),
            ],
        );
        let segments = check(&run, &sources, &inputs, false);
        let tags: Vec<u8> = segments.iter().map(|s| s.tag).collect();
        assert_eq!(tags, b"ab");
        // Nothing between the drop and the cut: a stops at its frames before 2.0 s.
        let k = k_frame(&run, &segments[1]);
        let before_cut = &run.events[..segments[1].k - 1];
        let base = inputs[0].frame.arrival;
        assert!(before_cut.iter().all(|e| match e {
            ProgramEvent::Frame(f) => f.arrival < base + Duration::from_secs(2),
            ProgramEvent::Splice { .. } => true,
        }));
        // Continuous anyway: K one frame after a's last (1.9667 s), at program 1.9667 + 1/30 s.
        assert_eq!(k.dts, 90_000 + 59 * 3000 + 3000);
        assert_eq!(run.switches[1].1.from, None);
        assert_eq!(run.switches[1].1.to, "b");
        assert_eq!(run.splicer.active(), Some("b"));
    }

    #[test]
    fn discontinuity_from_the_active_camera_reanchors_at_its_next_keyframe() {
        let mut a = cam_a();
        a.jump = Some((2.5, 7_000_000));
        let sources = [a, cam_b()];
        let inputs = feed(&sources, 5.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::OnConfigChange,
            &inputs,
            &[(0.0, Act::Request("a"))],
        );
        let segments = check(&run, &sources, &inputs, false);
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[1].tag, b'a');
        // Same configuration: no discontinuity needed.
        assert!(!segments[1].discontinuity);
        // a's last frame before the jump is its 74th (2.4667 s); the next keyframe is at 3.0 s.
        let k = k_frame(&run, &segments[1]);
        assert_eq!(origin(&k), (b'a', true, 5_000_000 + 90 * 3000 + 7_000_000));
        assert_eq!(k.dts, 90_000 + 74 * 3000 + 3000);
        let (_, switched) = &run.switches[1];
        assert_eq!(
            (switched.from.as_deref(), switched.to.as_str()),
            (Some("a"), "a")
        );
        assert!(switched.lip_sync_error <= half_frame(48_000));
        assert_eq!(run.splicer.pending(), None);
    }

    #[test]
    fn discontinuity_while_another_switch_is_pending_holds_the_active_camera() {
        let mut a = cam_a();
        a.jump = Some((2.5, 7_000_000));
        let sources = [a, cam_b()];
        let inputs = feed(&sources, 5.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Never,
            &inputs,
            &[(0.0, Act::Request("a")), (2.37, Act::Request("b"))],
        );
        let segments = check(&run, &sources, &inputs, false);
        let tags: Vec<u8> = segments.iter().map(|s| s.tag).collect();
        assert_eq!(tags, b"ab");
        // a is held from the jump; b cuts in one frame after a's last frame before it.
        let k = k_frame(&run, &segments[1]);
        assert_eq!(k.dts, 90_000 + 74 * 3000 + 3000);
    }

    #[test]
    fn late_audio_is_anchored_when_it_arrives() {
        // b's audio arrives 150 ms behind its video: nothing buffered is late enough at the cut.
        let mut b = cam_b();
        b.audio_delay = 0.15;
        let sources = [cam_a(), b];
        let inputs = feed(&sources, 5.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Never,
            &inputs,
            &[(0.0, Act::Request("a")), (2.37, Act::Request("b"))],
        );
        check(&run, &sources, &inputs, false);
        assert_eq!(run.switches[1].1.lip_sync_error, 0.0);
        assert!(frames(&run).any(|f| !f.track.is_video() && f.payload[0] == b'b'));
    }

    #[test]
    fn audio_after_a_gap_keeps_lip_sync() {
        // b has no audio for its first 4 s: continuing from the program's end would desync it.
        let mut b = cam_b();
        b.audio_from = 4.0;
        let sources = [cam_a(), b];
        let inputs = feed(&sources, 6.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Never,
            &inputs,
            &[(0.0, Act::Request("a")), (2.37, Act::Request("b"))],
        );
        check(&run, &sources, &inputs, true);
        let b_audio: Vec<&Frame> = frames(&run)
            .filter(|f| !f.track.is_video() && f.payload[0] == b'b')
            .collect();
        assert!(!b_audio.is_empty());
        // Within a tick of lip sync (checked in `check`) and after a hole of about 1 s.
        let a_end = frames(&run)
            .filter(|f| !f.track.is_video() && f.payload[0] == b'a')
            .map(|f| (f.dts + 1024) as f64 / 48_000.0)
            .last()
            .unwrap();
        assert!(b_audio[0].dts_seconds() - a_end > 0.9);
    }

    #[test]
    fn audio_after_a_video_only_camera_anchors_by_lip_sync() {
        let mut v = cam_c();
        v.audio = None;
        let sources = [cam_a(), v, cam_b()];
        let inputs = feed(&sources, 7.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Never,
            &inputs,
            &[
                (0.0, Act::Request("a")),
                (2.37, Act::Request("c")),
                (4.6, Act::Request("b")),
            ],
        );
        let segments = check(&run, &sources, &inputs, true);
        let tags: Vec<u8> = segments.iter().map(|s| s.tag).collect();
        assert_eq!(tags, b"acb");
        assert_eq!(run.switches[1].1.lip_sync_error, 0.0);
        // b's first audio: lip-synced to K within half a frame, leaving a hole after a's audio.
        let k = k_frame(&run, &segments[2]);
        let first = frames(&run)
            .find(|f| !f.track.is_video() && f.payload[0] == b'b')
            .unwrap();
        let k_time = k.dts_seconds();
        assert!(first.dts_seconds() >= k_time - half_frame(44_100));
        assert!(first.dts_seconds() < k_time + 2.0 * half_frame(44_100));
    }

    #[test]
    fn pending_audio_is_bounded_to_two_seconds() {
        let mut splicer = Splicer::new(DiscontinuityPolicy::Never);
        assert!(splicer.request("b"));
        let mut out = Vec::new();
        for input in feed(&[cam_b()], 10.0, Instant::now()) {
            if !input.frame.track.is_video() {
                splicer.push(input.camera, &input.frame, &mut out);
            }
        }
        assert!(out.is_empty());
        let span = splicer.audio.back().unwrap().dts - splicer.audio.front().unwrap().dts;
        assert!(span <= 2 * 44_100);
        assert!(span > 2 * 44_100 - 1024);
    }

    #[test]
    fn pending_audio_restarts_after_a_break() {
        let mut splicer = Splicer::new(DiscontinuityPolicy::Never);
        assert!(splicer.request("b"));
        let mut out = Vec::new();
        let audio: Vec<Frame> = feed(&[cam_b()], 0.5, Instant::now())
            .into_iter()
            .filter(|i| !i.frame.track.is_video())
            .map(|i| i.frame)
            .collect();
        for frame in &audio[..10] {
            splicer.push("b", frame, &mut out);
        }
        assert_eq!(splicer.audio.len(), 10);
        // A reconnect a little later on its timeline: the old run cannot be anchored with it.
        let mut jumped = audio[10].clone();
        jumped.dts += 5 * 1024;
        jumped.discontinuity = true;
        splicer.push("b", &jumped, &mut out);
        assert_eq!(splicer.audio.len(), 1);
        // A step back, flagged or not, restarts too.
        splicer.push("b", &audio[11], &mut out);
        assert_eq!(splicer.audio.len(), 1);
        // So does a new sample rate.
        let mut resampled = audio[12].clone();
        resampled.track = Track::Audio(audio_config(48_000));
        splicer.push("b", &resampled, &mut out);
        assert_eq!(splicer.audio.len(), 1);
        assert!(out.is_empty());
    }

    #[test]
    fn frames_from_other_cameras_are_ignored() {
        let sources = [cam_a(), cam_b(), cam_c()];
        let inputs = feed(&sources, 3.0, Instant::now());
        let run = run(
            DiscontinuityPolicy::Never,
            &inputs,
            &[(0.0, Act::Request("a"))],
        );
        check(&run, &sources, &inputs, false);
        assert!(frames(&run).all(|f| f.payload[0] == b'a'));
        // And nothing at all before any request.
        let mut splicer = Splicer::new(DiscontinuityPolicy::Never);
        let mut out = Vec::new();
        for input in &inputs {
            assert!(splicer.push(input.camera, &input.frame, &mut out).is_none());
        }
        assert!(out.is_empty());
    }
}
