//! Cutting policy: turns a camera's frames into segment media. Pure: frames in, segments out.
//!
//! - A segment starts on a video keyframe and is cut at the first keyframe at or after the target
//!   duration. Audio is split at the same instant, so each track stays gapless across segments.
//! - Long keyframe intervals (OBS "Simple" output sends one every 250 frames): a segment that
//!   reaches the playlist's fixed TARGETDURATION is cut on whatever frame arrives, so EXTINF never
//!   exceeds it. Such a segment's successor starts mid-GOP and is marked not independent; the
//!   playlist then drops EXT-X-INDEPENDENT-SEGMENTS while one is listed.
//! - A discontinuity (reconnect, timestamp jump) or a codec configuration change closes the
//!   segment at once; the next one carries the discontinuity (and, on a config change, new init).
//! - Streams without video cut on audio.

use std::{sync::Arc, time::Duration};

use crate::fmp4::Sample;
use crate::media::{
    rescale, AudioConfig, Frame, Track, VideoConfig, AAC_FRAME_SAMPLES, VIDEO_TIMESCALE,
};

/// The EXT-X-TARGETDURATION for a target: 1.5x rounded up, so keyframe jitter and intervals a
/// little over the target still fit, fixed for the life of the playlist.
pub fn playlist_target_duration(target: Duration) -> u64 {
    ((target.as_secs_f64() * 1.5).ceil() as u64).max(1)
}

/// A keyframe this close before the target still cuts: timestamps rounded to milliseconds
/// must not push a 2.000 s GOP to the next keyframe.
const CUT_TOLERANCE: i64 = 90 * 5;

/// The media of one finished segment, ready for the fMP4 writer.
#[derive(Debug, Clone)]
pub struct SegmentMedia {
    /// Start of the segment in 90 kHz ticks of the camera timeline.
    pub start: i64,
    /// Exact duration in seconds (the EXTINF value).
    pub duration: f64,
    /// Preceded by a break in the source or a new configuration.
    pub discontinuity: bool,
    /// Starts with a video keyframe (or has no video), so it decodes on its own.
    pub independent: bool,
    pub video: Option<TrackMedia<VideoConfig>>,
    pub audio: Option<TrackMedia<AudioConfig>>,
}

/// One track's samples in a segment.
#[derive(Debug, Clone)]
pub struct TrackMedia<C> {
    pub config: Arc<C>,
    /// Decode time of the first sample in the track's timescale (the fragment's tfdt).
    pub base_dts: i64,
    pub samples: Vec<Sample>,
}

#[derive(Debug)]
struct Open {
    start: i64,
    /// Presentation time of the first video frame, for judging keyframe spacing.
    start_pts: Option<i64>,
    discontinuity: bool,
    independent: bool,
    video: Vec<Frame>,
    audio: Vec<Frame>,
    video_config: Option<Arc<VideoConfig>>,
    audio_config: Option<Arc<AudioConfig>>,
}

#[derive(Debug)]
pub struct Segmenter {
    /// Cut at the first keyframe this far into a segment (90 kHz ticks).
    target: i64,
    /// Cut on any frame this far into a segment: the playlist's TARGETDURATION (90 kHz ticks).
    max: i64,
    open: Option<Open>,
    /// Video is expected (announced by metadata or seen), so segments wait for a keyframe.
    expect_video: bool,
    /// A keyframe has arrived since the start or the last discontinuity.
    video_synced: bool,
    /// The next segment opened carries a discontinuity.
    pending_discontinuity: bool,
    /// Audio that arrived before the first video keyframe, bounded to `max` of media.
    early_audio: Vec<Frame>,
    /// Segments cut without a keyframe because the keyframe interval exceeded TARGETDURATION.
    pub forced_cuts: u64,
    /// A new codec configuration marks a discontinuity. Cameras: always. The program decides
    /// per splice from its discontinuity policy, so it turns this off.
    discontinuity_on_new_config: bool,
}

fn audio_time(frame: &Frame) -> i64 {
    rescale(frame.dts, frame.track.timescale(), VIDEO_TIMESCALE)
}

impl Segmenter {
    pub fn new(target: Duration) -> Self {
        Segmenter {
            target: (target.as_secs_f64() * f64::from(VIDEO_TIMESCALE)) as i64,
            max: playlist_target_duration(target) as i64 * i64::from(VIDEO_TIMESCALE),
            open: None,
            expect_video: false,
            video_synced: false,
            pending_discontinuity: false,
            early_audio: Vec::new(),
            forced_cuts: 0,
            discontinuity_on_new_config: true,
        }
    }

    /// For the program output: configuration changes still cut (a new init segment is needed)
    /// but only [`Segmenter::splice`] marks discontinuities.
    pub fn without_config_discontinuities(mut self) -> Self {
        self.discontinuity_on_new_config = false;
        self
    }

    /// Ends the open segment where its media ends: the next frame starts a new segment, with a
    /// discontinuity if asked. The program calls this at every camera cut.
    pub fn splice(&mut self, discontinuity: bool) -> Option<SegmentMedia> {
        let closed = self
            .open
            .as_ref()
            .map(natural_end)
            .and_then(|end| self.close_at(end));
        self.early_audio.clear();
        self.pending_discontinuity |= discontinuity;
        closed
    }

    /// Tells the segmenter that video will come (onMetaData announced it), so audio waits for the
    /// first keyframe instead of starting an audio-only stream.
    pub fn expect_video(&mut self) {
        self.expect_video = true;
    }

    /// Feeds one frame; returns the segment it closed, if any.
    pub fn push(&mut self, frame: Frame) -> Option<SegmentMedia> {
        let mut closed = None;
        if frame.discontinuity {
            // The new frame's time may be anywhere: close where the old media ends.
            closed = self
                .open
                .as_ref()
                .map(natural_end)
                .and_then(|end| self.close_at(end));
            self.pending_discontinuity = true;
            self.video_synced = false;
        }
        match &frame.track {
            Track::Video(config) => {
                self.expect_video = true;
                if !self.video_synced {
                    if !frame.keyframe {
                        return closed; // undecodable until the first keyframe
                    }
                    self.video_synced = true;
                }
                if let Some(open) = &self.open {
                    let new_config = open
                        .video_config
                        .as_ref()
                        .is_none_or(|c| !Arc::ptr_eq(c, config));
                    // Keyframe spacing is judged on presentation time: encoders whose decode
                    // times start compressed (GStreamer's flvmux) space keyframes exactly in
                    // pts but not in dts. The hard limit stays on dts, which EXTINF measures.
                    let shown = open.start_pts.map_or(0, |start| frame.pts() - start);
                    let keyframe_cut = frame.keyframe && shown >= self.target - CUT_TOLERANCE;
                    let forced = frame.dts - open.start >= self.max;
                    if new_config || keyframe_cut || forced {
                        if forced && !frame.keyframe {
                            self.forced_cuts += 1;
                        }
                        debug_assert!(closed.is_none(), "one frame closes one segment");
                        closed = self.close_at(frame.dts);
                        self.pending_discontinuity |=
                            new_config && self.discontinuity_on_new_config;
                    }
                }
                if self.open.is_none() {
                    self.open_at(frame.dts, frame.keyframe);
                }
                let open = self.open.as_mut().expect("opened above");
                open.video_config = Some(config.clone());
                open.start_pts.get_or_insert(frame.pts());
                open.video.push(frame);
            }
            Track::Audio(config) => {
                if let Some(open) = &self.open {
                    let new_config = open
                        .audio_config
                        .as_ref()
                        .is_some_and(|c| !Arc::ptr_eq(c, config));
                    let audio_only = open.video_config.is_none();
                    let elapsed = audio_time(&frame) - open.start;
                    if new_config || (audio_only && elapsed >= self.target - CUT_TOLERANCE) {
                        closed = closed.or_else(|| self.close_at(audio_time(&frame)));
                        self.pending_discontinuity |=
                            new_config && self.discontinuity_on_new_config;
                    }
                }
                match &mut self.open {
                    Some(open) => {
                        open.audio_config = Some(config.clone());
                        open.audio.push(frame);
                    }
                    None if self.expect_video => {
                        self.early_audio.push(frame);
                        let newest = self.early_audio.last().map(audio_time).unwrap_or(0);
                        let max = self.max;
                        self.early_audio.retain(|f| newest - audio_time(f) <= max);
                    }
                    None => {
                        self.open_at(audio_time(&frame), true);
                        let open = self.open.as_mut().expect("opened above");
                        open.audio_config = Some(config.clone());
                        open.audio.push(frame);
                    }
                }
            }
        }
        closed
    }

    /// Closes the open segment at the end of its last frame (the publisher left).
    pub fn flush(&mut self) -> Option<SegmentMedia> {
        let end = natural_end(self.open.as_ref()?);
        self.early_audio.clear();
        self.video_synced = false;
        self.close_at(end)
    }

    fn open_at(&mut self, start: i64, independent: bool) {
        // Audio that waited for this keyframe: keep what overlaps it or comes after it, so audio
        // starts within one frame of video.
        let mut audio = std::mem::take(&mut self.early_audio);
        audio.retain(|f| {
            let end = f.dts + i64::from(AAC_FRAME_SAMPLES);
            rescale(end, f.track.timescale(), VIDEO_TIMESCALE) > start
        });
        let audio_config = audio.last().and_then(|f| match &f.track {
            Track::Audio(c) => Some(c.clone()),
            Track::Video(_) => None,
        });
        self.open = Some(Open {
            start,
            start_pts: None,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
            independent,
            video: Vec::new(),
            audio,
            video_config: None,
            audio_config,
        });
    }

    /// Closes the open segment at `end` (90 kHz). Audio from `end` on moves to the next segment.
    fn close_at(&mut self, end: i64) -> Option<SegmentMedia> {
        let mut open = self.open.take()?;
        let split = open.audio.partition_point(|f| audio_time(f) < end);
        if open.video_config.is_some() {
            // Audio at or past the cut belongs to the next segment; it waits with the early audio.
            self.early_audio = open.audio.split_off(split);
        }
        if open.video.is_empty() && open.audio.is_empty() {
            return None;
        }
        let video_end = end;
        let video = open.video_config.clone().and_then(|config| {
            let base_dts = open.video.first()?.dts;
            Some(TrackMedia {
                config,
                base_dts,
                samples: samples(&open.video, video_end, |_| estimated_duration(&open.video)),
            })
        });
        let audio = open.audio_config.clone().and_then(|config| {
            let base_dts = open.audio.first()?.dts;
            Some(TrackMedia {
                config,
                base_dts,
                samples: samples(&open.audio, i64::MAX, |_| i64::from(AAC_FRAME_SAMPLES)),
            })
        });
        let duration = (end - open.start).max(0) as f64 / f64::from(VIDEO_TIMESCALE);
        Some(SegmentMedia {
            start: open.start,
            duration,
            discontinuity: open.discontinuity,
            independent: open.independent,
            video,
            audio,
        })
    }
}

/// Where an open segment's media ends when nothing follows it: the end of its last frame.
fn natural_end(open: &Open) -> i64 {
    let video_end = open
        .video
        .last()
        .map(|last| last.dts + estimated_duration(&open.video));
    let audio_end = open.audio.last().map(|last| {
        let end = last.dts + i64::from(AAC_FRAME_SAMPLES);
        rescale(end, last.track.timescale(), VIDEO_TIMESCALE)
    });
    video_end.max(audio_end).unwrap_or(open.start)
}

/// Typical frame duration of a run, for the last frame when no successor exists.
fn estimated_duration(frames: &[Frame]) -> i64 {
    match frames {
        [.., a, b] => (b.dts - a.dts).max(1),
        _ => 3000, // one frame at 30 fps
    }
}

/// Frames to fMP4 samples: each lasts until the next; the last until `end` when that is later,
/// else a typical duration.
fn samples(frames: &[Frame], end: i64, fallback: impl Fn(&[Frame]) -> i64) -> Vec<Sample> {
    frames
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let next = frames.get(i + 1).map(|n| n.dts);
            let duration = match next {
                Some(next) => next - frame.dts,
                None if end != i64::MAX && end > frame.dts => end - frame.dts,
                None => fallback(frames),
            };
            Sample {
                duration: duration.clamp(0, i64::from(u32::MAX)) as u32,
                cts_offset: frame.cts_offset,
                keyframe: frame.keyframe,
                data: frame.payload.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;

    pub fn video_config(width: u16) -> Arc<VideoConfig> {
        Arc::new(VideoConfig {
            avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0]),
            width,
            height: width * 9 / 16,
            profile: 0x64,
            compatibility: 0,
            level: 0x1f,
            nal_length_size: 4,
        })
    }

    pub fn audio_config() -> Arc<AudioConfig> {
        Arc::new(AudioConfig {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate: 48_000,
            channels: 2,
        })
    }

    pub fn video(config: &Arc<VideoConfig>, dts: i64, keyframe: bool) -> Frame {
        Frame {
            track: Track::Video(config.clone()),
            dts,
            cts_offset: 6000,
            keyframe,
            discontinuity: false,
            payload: Bytes::from(vec![0u8; 100]),
            arrival: std::time::Instant::now(),
        }
    }

    pub fn audio(config: &Arc<AudioConfig>, index: i64) -> Frame {
        Frame {
            track: Track::Audio(config.clone()),
            dts: index * 1024,
            cts_offset: 0,
            keyframe: true,
            discontinuity: false,
            payload: Bytes::from(vec![0u8; 10]),
            arrival: std::time::Instant::now(),
        }
    }

    /// 30 fps video with a keyframe every `gop` frames and 48 kHz audio, interleaved by time.
    pub fn stream(seconds: f64, gop: i64) -> Vec<Frame> {
        let (v, a) = (video_config(1280), audio_config());
        let mut frames = Vec::new();
        let video_count = (seconds * 30.0) as i64;
        let audio_count = (seconds * 48_000.0 / 1024.0) as i64;
        let (mut i, mut j) = (0, 0);
        while i < video_count || j < audio_count {
            let vt = i * 3000;
            let at = j * 1024 * 90_000 / 48_000;
            if i < video_count && (vt <= at || j >= audio_count) {
                frames.push(video(&v, vt, i % gop == 0));
                i += 1;
            } else {
                frames.push(audio(&a, j));
                j += 1;
            }
        }
        frames
    }

    fn run(segmenter: &mut Segmenter, frames: Vec<Frame>) -> Vec<SegmentMedia> {
        let mut out: Vec<_> = frames
            .into_iter()
            .filter_map(|f| segmenter.push(f))
            .collect();
        out.extend(segmenter.flush());
        out
    }

    #[test]
    fn cuts_at_each_keyframe_at_target() {
        let mut s = Segmenter::new(Duration::from_secs(2));
        let segments = run(&mut s, stream(10.0, 60));
        assert_eq!(segments.len(), 5);
        for seg in &segments {
            assert!((seg.duration - 2.0).abs() < 1e-9, "{}", seg.duration);
            assert!(seg.independent);
            let video = seg.video.as_ref().unwrap();
            assert_eq!(video.samples.len(), 60);
            assert!(video.samples[0].keyframe);
            assert_eq!(
                video
                    .samples
                    .iter()
                    .map(|s| u64::from(s.duration))
                    .sum::<u64>(),
                180_000
            );
        }
        assert_eq!(s.forced_cuts, 0);
    }

    #[test]
    fn tracks_stay_gapless_across_cuts() {
        let mut s = Segmenter::new(Duration::from_secs(2));
        let segments = run(&mut s, stream(10.0, 60));
        let mut video_next = 0;
        let mut audio_next = 0;
        for seg in &segments {
            let v = seg.video.as_ref().unwrap();
            let a = seg.audio.as_ref().unwrap();
            assert_eq!(v.base_dts, video_next);
            assert_eq!(a.base_dts, audio_next);
            video_next += v.samples.iter().map(|s| i64::from(s.duration)).sum::<i64>();
            audio_next += a.samples.iter().map(|s| i64::from(s.duration)).sum::<i64>();
            // Audio starts within one AAC frame of the video cut.
            let audio_start = rescale(a.base_dts, 48_000, 90_000);
            assert!(
                (audio_start - v.base_dts).abs() < 1920,
                "{audio_start} vs {}",
                v.base_dts
            );
        }
    }

    #[test]
    fn long_keyframe_interval_forces_cuts_within_target_duration() {
        let mut s = Segmenter::new(Duration::from_secs(2));
        // OBS Simple mode: a keyframe every 250 frames (8.3 s at 30 fps).
        let segments = run(&mut s, stream(17.0, 250));
        let td = playlist_target_duration(Duration::from_secs(2)) as f64;
        assert_eq!(td, 3.0);
        for seg in &segments {
            assert!(seg.duration.round() <= td, "{}", seg.duration);
        }
        assert!(segments[0].independent);
        assert!(!segments[1].independent, "starts mid-GOP");
        assert!(s.forced_cuts >= 4);
        // The segment that begins at the second keyframe (frame 250) is independent again.
        assert!(segments
            .iter()
            .any(|seg| seg.start == 250 * 3000 && seg.independent));
    }

    #[test]
    fn waits_for_first_keyframe_and_trims_early_audio() {
        let mut s = Segmenter::new(Duration::from_secs(2));
        s.expect_video();
        let mut frames = stream(4.0, 60);
        // The publisher's first frames are not a keyframe: drop video before frame 60.
        frames.retain(|f| !(f.track.is_video() && f.dts < 60 * 3000 && f.dts > 0));
        frames.retain(|f| !(f.track.is_video() && f.dts == 0));
        let segments = run(&mut s, frames);
        let first = &segments[0];
        assert_eq!(first.start, 180_000);
        let a = first.audio.as_ref().unwrap();
        let audio_start = rescale(a.base_dts, 48_000, 90_000);
        assert!(audio_start <= 180_000 && 180_000 - audio_start < 1920);
    }

    #[test]
    fn discontinuity_closes_and_marks_next() {
        let mut s = Segmenter::new(Duration::from_secs(2));
        let mut frames = stream(3.0, 60);
        let mut more = stream(3.0, 60);
        let shift = 10 * 90_000;
        for f in &mut more {
            f.dts += if f.track.is_video() {
                shift
            } else {
                10 * 48_000
            };
        }
        more[0].discontinuity = true;
        frames.extend(more);
        let segments = run(&mut s, frames);
        let flagged: Vec<bool> = segments.iter().map(|s| s.discontinuity).collect();
        assert_eq!(flagged, vec![false, false, true, false]);
        assert!(
            (segments[1].duration - 1.0).abs() < 0.05,
            "{}",
            segments[1].duration
        );
    }

    #[test]
    fn keyframe_spacing_is_judged_on_presentation_time() {
        // GStreamer flvmux: decode times start compressed, presentation times are exact.
        let mut s = Segmenter::new(Duration::from_secs(2));
        let v = video_config(320);
        let mut frames = Vec::new();
        for i in 0..130i64 {
            let pts = i * 3000 + 540;
            let dts = if i < 60 { i * 2900 } else { i * 3000 - 5490 };
            let mut f = video(&v, dts, i % 60 == 0);
            f.cts_offset = (pts - dts) as i32;
            frames.push(f);
        }
        let segments = run(&mut s, frames);
        assert_eq!(s.forced_cuts, 0);
        assert!(segments.iter().all(|seg| seg.independent));
        assert_eq!(segments[0].video.as_ref().unwrap().samples.len(), 60);
    }

    #[test]
    fn new_video_config_closes_with_discontinuity() {
        let mut s = Segmenter::new(Duration::from_secs(2));
        let a = video_config(1280);
        let b = video_config(640);
        let mut frames: Vec<Frame> = (0..30).map(|i| video(&a, i * 3000, i == 0)).collect();
        frames.extend((30..90).map(|i| video(&b, i * 3000, i == 30)));
        let segments = run(&mut s, frames);
        assert_eq!(segments.len(), 2);
        assert!(segments[1].discontinuity);
        assert_eq!(segments[1].video.as_ref().unwrap().config.width, 640);
        assert!((segments[0].duration - 1.0).abs() < 1e-9);
    }

    #[test]
    fn splice_cuts_where_media_ends_and_policy_decides_the_tag() {
        let mut s = Segmenter::new(Duration::from_secs(2)).without_config_discontinuities();
        let (a, b) = (video_config(1280), video_config(640));
        let mut out: Vec<SegmentMedia> = (0..40)
            .filter_map(|i| s.push(video(&a, i * 3000, i % 30 == 0)))
            .collect();
        out.extend(s.splice(false));
        out.extend((40..100).filter_map(|i| s.push(video(&b, i * 3000, i % 30 == 10))));
        out.extend(s.flush());
        // [0, 1.333) ended by the splice before the target, then the new camera from its frame.
        assert_eq!(out.len(), 2);
        assert!((out[0].duration - 40.0 / 30.0).abs() < 1e-9);
        assert_eq!(out[1].start, 40 * 3000);
        assert!(
            out.iter().all(|seg| !seg.discontinuity),
            "config change alone marks nothing"
        );
        assert_eq!(out[1].video.as_ref().unwrap().config.width, 640);
        let mut s = Segmenter::new(Duration::from_secs(2)).without_config_discontinuities();
        s.push(video(&a, 0, true));
        s.splice(true);
        s.push(video(&b, 3000, true));
        assert!(s.flush().unwrap().discontinuity);
    }

    #[test]
    fn audio_only_cuts_on_audio() {
        let mut s = Segmenter::new(Duration::from_secs(2));
        let c = audio_config();
        let frames: Vec<Frame> = (0..500).map(|i| audio(&c, i)).collect();
        let segments = run(&mut s, frames);
        assert!(segments.len() >= 5);
        for seg in &segments[..segments.len() - 1] {
            assert!(seg.video.is_none());
            assert!((seg.duration - 2.0).abs() < 0.03, "{}", seg.duration);
        }
        let total: usize = segments
            .iter()
            .map(|s| s.audio.as_ref().unwrap().samples.len())
            .sum();
        assert_eq!(total, 500, "no audio frame lost or duplicated");
    }

    #[test]
    fn no_frame_lost_or_duplicated() {
        let mut s = Segmenter::new(Duration::from_secs(2));
        let frames = stream(9.5, 45);
        let (nv, na) = (
            frames.iter().filter(|f| f.track.is_video()).count(),
            frames.iter().filter(|f| !f.track.is_video()).count(),
        );
        let segments = run(&mut s, frames);
        let v: usize = segments
            .iter()
            .map(|s| s.video.as_ref().map_or(0, |t| t.samples.len()))
            .sum();
        let a: usize = segments
            .iter()
            .map(|s| s.audio.as_ref().map_or(0, |t| t.samples.len()))
            .sum();
        assert_eq!((v, a), (nv, na));
    }
}
