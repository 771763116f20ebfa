//! Cuts one source's frames into fMP4 fragments by time. Pure: frames in, fragment media out.
//!
//! Unlike an HLS segment, a fragment inside a file need not start at a keyframe: the samples of a
//! file are one run in decode order, and fragment boundaries only bound what a crash can lose.
//! So the caller cuts when a video frame arrives `record.fragment` after the fragment's start
//! (audio-only sources: an audio frame), and every sample duration is exact: a video sample
//! lasts until the next video frame, an audio sample until the next audio frame (one AAC frame
//! when none follows). Files do start at keyframes; the writer cuts those with
//! [`Fragmenter::take`] at a keyframe's decode time.

use std::sync::Arc;

use crate::fmp4::Sample;
use crate::hls::segmenter::TrackMedia;
use crate::media::{
    rescale, AudioConfig, Frame, Track, VideoConfig, AAC_FRAME_SAMPLES, VIDEO_TIMESCALE,
};

/// A video frame duration assumed when a lone frame ends a file (30 fps).
const DEFAULT_VIDEO_STEP: i64 = 3000;

/// The media of one fragment, ready for the fMP4 writer.
#[derive(Debug, Clone)]
pub struct FragmentMedia {
    /// Where the fragment's media starts (90 kHz, source timeline).
    pub start: i64,
    /// Where it ends (90 kHz): the next fragment's start, or the end of its last frame.
    pub end: i64,
    /// The video run, if the fragment has video samples.
    pub video: Option<TrackMedia<VideoConfig>>,
    /// The audio run, if the fragment has audio samples.
    pub audio: Option<TrackMedia<AudioConfig>>,
    /// Payload bytes (without box headers), for size accounting.
    pub bytes: usize,
}

/// Where [`Fragmenter::take`] ends a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Frames before this instant (90 kHz): video with an earlier decode time, audio that starts
    /// earlier. Later frames stay for the next fragment.
    Before(i64),
    /// Every frame. The last video frame lasts until the given instant when it is later, else as
    /// long as the frame before it.
    All(Option<i64>),
}

/// The frames of the fragment being gathered.
#[derive(Debug, Default)]
pub struct Fragmenter {
    /// Video frames in decode order.
    video: Vec<Frame>,
    /// Audio frames in decode order.
    audio: Vec<Frame>,
    /// Payload bytes held, so a size split can count media not yet written.
    bytes: usize,
}

/// A frame's decode time on the 90 kHz clock, whatever its track.
pub fn time_of(frame: &Frame) -> i64 {
    rescale(frame.dts, frame.track.timescale(), VIDEO_TIMESCALE)
}

impl Fragmenter {
    pub fn push(&mut self, frame: Frame) {
        self.bytes += frame.payload.len();
        match frame.track {
            Track::Video(_) => self.video.push(frame),
            Track::Audio(_) => self.audio.push(frame),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.video.is_empty() && self.audio.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Where the held media starts (90 kHz), if any is held.
    pub fn start(&self) -> Option<i64> {
        let video = self.video.first().map(|f| f.dts);
        let audio = self.audio.first().map(time_of);
        match (video, audio) {
            (Some(v), Some(a)) => Some(v.min(a)),
            (v, a) => v.or(a),
        }
    }

    /// The decode time and configuration of the last video keyframe held.
    pub fn last_keyframe(&self) -> Option<(i64, Arc<VideoConfig>)> {
        self.video
            .iter()
            .rev()
            .find(|f| f.keyframe)
            .and_then(|f| match &f.track {
                Track::Video(config) => Some((f.dts, config.clone())),
                Track::Audio(_) => None,
            })
    }

    /// The configurations of the held frames (the first frame's, per track).
    pub fn configs(&self) -> (Option<Arc<VideoConfig>>, Option<Arc<AudioConfig>>) {
        let video = self.video.first().and_then(|f| match &f.track {
            Track::Video(c) => Some(c.clone()),
            Track::Audio(_) => None,
        });
        let audio = self.audio.first().and_then(|f| match &f.track {
            Track::Audio(c) => Some(c.clone()),
            Track::Video(_) => None,
        });
        (video, audio)
    }

    /// Drops every held audio frame (their configuration is not the next file's).
    pub fn clear_audio(&mut self) {
        self.bytes -= self.audio.iter().map(|f| f.payload.len()).sum::<usize>();
        self.audio.clear();
    }

    pub fn clear(&mut self) {
        self.video.clear();
        self.audio.clear();
        self.bytes = 0;
    }

    /// Ends a fragment at `cut`; `None` when no frame falls in it.
    pub fn take(&mut self, cut: Cut) -> Option<FragmentMedia> {
        let start = self.start()?;
        // `video_until`: where the last video sample taken ends (the next video frame, or the cut).
        let (video, audio, end, video_until) = match cut {
            Cut::Before(end) => {
                let v = self.video.partition_point(|f| f.dts < end);
                let a = self.audio.partition_point(|f| time_of(f) < end);
                let rest_video = self.video.split_off(v);
                let rest_audio = self.audio.split_off(a);
                let video = std::mem::replace(&mut self.video, rest_video);
                let audio = std::mem::replace(&mut self.audio, rest_audio);
                let until = self.video.first().map_or(end, |f| f.dts);
                (video, audio, end, until)
            }
            Cut::All(until) => {
                let video = std::mem::take(&mut self.video);
                let audio = std::mem::take(&mut self.audio);
                let video_end = video.last().map(|last| match until {
                    Some(until) if until > last.dts => until,
                    _ => last.dts + step(&video),
                });
                let audio_end = audio
                    .last()
                    .map(|last| time_of(last) + audio_frame_ticks(last));
                let end = video_end.max(audio_end).unwrap_or(start);
                (video, audio, end, video_end.unwrap_or(end))
            }
        };
        if video.is_empty() && audio.is_empty() {
            return None;
        }
        let bytes: usize = video.iter().chain(&audio).map(|f| f.payload.len()).sum();
        self.bytes -= bytes;
        let audio_next = self.audio.first().map(|f| f.dts);
        let video_media = track(&video, |c| match c {
            Track::Video(c) => Some(c.clone()),
            Track::Audio(_) => None,
        })
        .map(|(config, base_dts)| TrackMedia {
            config,
            base_dts,
            samples: samples(&video, Some(video_until), step(&video)),
        });
        let audio_media = track(&audio, |c| match c {
            Track::Audio(c) => Some(c.clone()),
            Track::Video(_) => None,
        })
        .map(|(config, base_dts)| TrackMedia {
            config,
            base_dts,
            samples: samples(&audio, audio_next, i64::from(AAC_FRAME_SAMPLES)),
        });
        Some(FragmentMedia {
            start: start.min(end),
            end,
            video: video_media,
            audio: audio_media,
            bytes,
        })
    }
}

/// One AAC frame in 90 kHz ticks.
pub fn audio_frame_ticks(frame: &Frame) -> i64 {
    rescale(
        i64::from(AAC_FRAME_SAMPLES),
        frame.track.timescale(),
        VIDEO_TIMESCALE,
    )
}

/// The configuration and first decode time of a run, if it has frames.
fn track<C>(frames: &[Frame], config: impl Fn(&Track) -> Option<Arc<C>>) -> Option<(Arc<C>, i64)> {
    let first = frames.first()?;
    Some((config(&first.track)?, first.dts))
}

/// The typical frame duration of a run: the last difference of decode times.
fn step(frames: &[Frame]) -> i64 {
    match frames {
        [.., a, b] => (b.dts - a.dts).max(1),
        _ => DEFAULT_VIDEO_STEP,
    }
}

/// Frames to samples: each lasts until the next frame; the last until `next` (the track's next
/// decode time, in the track's clock) when that is later, else `fallback` ticks.
fn samples(frames: &[Frame], next: Option<i64>, fallback: i64) -> Vec<Sample> {
    frames
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let following = frames.get(i + 1).map(|f| f.dts).or(next);
            let duration = match following {
                Some(t) if t > frame.dts => t - frame.dts,
                _ => fallback,
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
mod tests {
    use super::*;
    use crate::hls::segmenter::tests::{audio, audio_config, stream, video, video_config};

    #[test]
    fn cut_before_keeps_later_frames_and_chains_durations() {
        let mut f = Fragmenter::default();
        for frame in stream(2.0, 30) {
            f.push(frame);
        }
        let held = f.bytes();
        let first = f.take(Cut::Before(90_000)).unwrap();
        assert_eq!((first.start, first.end), (0, 90_000));
        let video = first.video.as_ref().unwrap();
        assert_eq!(video.samples.len(), 30);
        assert!(video.samples.iter().all(|s| s.duration == 3000));
        let audio = first.audio.as_ref().unwrap();
        // 48 kHz frames starting before 1 s: 0..=46 (46 * 1920 = 88320 < 90000).
        assert_eq!(audio.samples.len(), 47);
        assert!(audio.samples.iter().all(|s| s.duration == 1024));
        assert_eq!(f.bytes() + first.bytes, held);
        assert_eq!(f.start(), Some(90_000));

        let rest = f.take(Cut::All(None)).unwrap();
        let video = rest.video.unwrap();
        assert_eq!(video.base_dts, 90_000);
        assert!(video.samples.iter().all(|s| s.duration == 3000));
        assert_eq!(rest.end, 180_000);
        assert!(f.is_empty());
        assert_eq!(f.bytes(), 0);
        assert!(f.take(Cut::All(None)).is_none());
    }

    #[test]
    fn the_last_video_frame_lasts_until_the_cut() {
        let (v, a) = (video_config(640), audio_config());
        let mut f = Fragmenter::default();
        f.push(video(&v, 0, true));
        f.push(audio(&a, 0));
        f.push(video(&v, 3000, false));
        // A splice: the next keyframe comes 4000 ticks later.
        let media = f.take(Cut::All(Some(7000))).unwrap();
        let durations: Vec<u32> = media
            .video
            .unwrap()
            .samples
            .iter()
            .map(|s| s.duration)
            .collect();
        assert_eq!(durations, vec![3000, 4000]);
        assert_eq!(media.end, 7000);
    }

    #[test]
    fn keyframes_and_configs_are_found() {
        let (v, a) = (video_config(640), audio_config());
        let mut f = Fragmenter::default();
        assert!(f.last_keyframe().is_none());
        f.push(video(&v, 0, true));
        f.push(video(&v, 3000, false));
        f.push(video(&v, 6000, true));
        f.push(audio(&a, 5));
        assert_eq!(f.last_keyframe().unwrap().0, 6000);
        let (video_cfg, audio_cfg) = f.configs();
        assert!(Arc::ptr_eq(&video_cfg.unwrap(), &v));
        assert!(Arc::ptr_eq(&audio_cfg.unwrap(), &a));
        f.clear_audio();
        assert_eq!(f.bytes(), 300);
    }
}
