//! Converts RTMP millisecond timestamps into track ticks, once, at the ingest edge.
//!
//! A camera keeps one `Timeline` across publisher sessions, so its output clock never goes back:
//! a reconnect or a timestamp jump re-anchors the input so output time resumes one frame after the
//! last output frame, and the first frame after the break is flagged as a discontinuity.
//! Audio time counts AAC samples (1024 per frame) and re-anchors to RTMP time only when the two
//! drift apart by more than `AUDIO_DRIFT_TOLERANCE_MS`, because RTMP's millisecond rounding would
//! otherwise jitter every frame duration.

use crate::media::{rescale, AAC_FRAME_SAMPLES, VIDEO_TIMESCALE};

/// Audio clock may drift from RTMP time by this much before it is re-anchored.
pub const AUDIO_DRIFT_TOLERANCE_MS: i64 = 50;
/// A forward step larger than this between consecutive timestamps is a jump, not a gap.
pub const FORWARD_JUMP_MS: i64 = 3_000;
/// Audio and video interleave loosely; only a step back larger than this is a jump.
pub const BACKWARD_JUMP_MS: i64 = 1_000;
/// Output time of a camera's first frame. Headroom so the other track's first frame, which may
/// carry a slightly earlier RTMP timestamp, never maps below zero (tfdt is unsigned).
pub const START_MS: i64 = 1_000;

/// Where a converted timestamp lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Decode time in the track's ticks.
    pub dts: i64,
    /// The first frame after a reconnect or a jump.
    pub discontinuity: bool,
}

#[derive(Debug, Default)]
pub struct Timeline {
    /// The last input timestamp, unwrapped to 64 bits; `None` before the first frame of a session.
    last_input_ms: Option<i64>,
    /// Added to unwrapped input milliseconds to get output milliseconds.
    offset_ms: i64,
    /// Output time (90 kHz) just past the last frame emitted, decoded or presented, where a
    /// re-anchored stream resumes: ticks, not milliseconds, so the new session never overlaps the
    /// old one by a rounding error.
    resume: Option<i64>,
    /// A reconnect or jump happened; the next frame carries the discontinuity flag.
    pending_discontinuity: bool,
    /// Last video output dts, to keep video decode time strictly increasing.
    last_video_dts: Option<i64>,
    /// Last video frame duration in 90 kHz ticks, to place the frame after a break one frame later.
    video_step: i64,
    /// Next audio dts by sample count, in the audio track's ticks.
    next_audio_dts: Option<i64>,
    /// Sample rate `next_audio_dts` is counted in; a change re-anchors.
    audio_rate: u32,
    /// Times the audio clock was re-anchored to RTMP time (drift beyond tolerance).
    pub audio_reanchors: u64,
}

impl Timeline {
    pub fn new() -> Self {
        Timeline {
            video_step: 3000,
            ..Default::default()
        }
    }

    /// A new publisher session starts: its timestamps are unrelated to the previous one's.
    pub fn restart(&mut self) {
        if self.resume.is_some() {
            self.pending_discontinuity = true;
        }
        self.last_input_ms = None;
    }

    /// Where output resumes, in whole milliseconds at or after the resume tick.
    fn resume_ms(&self) -> i64 {
        self.resume
            .map_or(START_MS, |ticks| (ticks + 89).div_euclid(90))
    }

    /// Maps an RTMP timestamp to output milliseconds, unwrapping 32-bit wrap and handling jumps.
    fn map(&mut self, rtmp_ms: u32) -> (i64, bool) {
        let input = match self.last_input_ms {
            // The shortest signed step from the last timestamp: this unwraps the 2^32 wrap.
            Some(last) => last + i64::from(rtmp_ms.wrapping_sub(last as u32) as i32),
            None => i64::from(rtmp_ms),
        };
        let jumped = match self.last_input_ms {
            None => {
                // First frame of a session: anchor so output resumes where the camera left off.
                self.offset_ms = self.resume_ms() - input;
                false
            }
            Some(last) if input - last > FORWARD_JUMP_MS || last - input > BACKWARD_JUMP_MS => {
                self.offset_ms = self.resume_ms() - input;
                true
            }
            Some(_) => false,
        };
        // The newest time seen, so loosely interleaved tracks do not look like jumps; a jump
        // starts over from the new time.
        self.last_input_ms = Some(match self.last_input_ms {
            Some(last) if !jumped => last.max(input),
            _ => input,
        });
        let discontinuity = jumped || std::mem::take(&mut self.pending_discontinuity);
        (input + self.offset_ms, discontinuity)
    }

    fn advance_resume(&mut self, end: i64) {
        self.resume = Some(self.resume.map_or(end, |r| r.max(end)));
    }

    /// Converts a video timestamp (RTMP time is the decode time) to 90 kHz ticks; `cts_ms` is the
    /// frame's composition offset, so a later session starts after everything presented.
    pub fn video(&mut self, rtmp_ms: u32, cts_ms: i32) -> Stamp {
        let (out_ms, discontinuity) = self.map(rtmp_ms);
        let mut dts = out_ms * i64::from(VIDEO_TIMESCALE / 1000);
        if let Some(last) = self.last_video_dts {
            if !discontinuity && dts > last {
                self.video_step = dts - last;
            }
            // Decode time must rise strictly; a publisher repeating a millisecond gets one tick.
            dts = dts.max(last + 1);
        }
        self.last_video_dts = Some(dts);
        let presented = dts + i64::from(cts_ms.max(0)) * 90;
        self.advance_resume(presented + self.video_step);
        Stamp { dts, discontinuity }
    }

    /// Converts an AAC frame's timestamp to ticks of `sample_rate`, counting samples.
    pub fn audio(&mut self, rtmp_ms: u32, sample_rate: u32) -> Stamp {
        let (out_ms, discontinuity) = self.map(rtmp_ms);
        let expected = rescale(out_ms, 1000, sample_rate);
        let tolerance = rescale(AUDIO_DRIFT_TOLERANCE_MS, 1000, sample_rate);
        let dts = match self.next_audio_dts {
            Some(next)
                if sample_rate == self.audio_rate && (expected - next).abs() <= tolerance =>
            {
                next
            }
            Some(_) => {
                self.audio_reanchors += 1;
                expected
            }
            None => expected,
        };
        // Never step back over audio already emitted: that would overlap samples.
        let dts = match self.next_audio_dts {
            Some(next) if sample_rate == self.audio_rate => dts.max(next),
            _ => dts,
        };
        self.audio_rate = sample_rate;
        let next = dts + i64::from(AAC_FRAME_SAMPLES);
        self.next_audio_dts = Some(next);
        self.advance_resume(rescale(next, sample_rate, VIDEO_TIMESCALE));
        Stamp { dts, discontinuity }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_converts_to_90khz_from_start_offset() {
        let mut t = Timeline::new();
        assert_eq!(t.video(5_000, 0).dts, START_MS * 90);
        assert_eq!(t.video(5_033, 0).dts, (START_MS + 33) * 90);
    }

    #[test]
    fn audio_counts_samples_despite_millisecond_rounding() {
        let mut t = Timeline::new();
        // 48 kHz AAC frames are 21.333 ms: RTMP rounds to 21 or 22.
        let rtmp = [0u32, 21, 43, 64, 85, 107, 128];
        let dts: Vec<i64> = rtmp.iter().map(|&ms| t.audio(ms, 48_000).dts).collect();
        for pair in dts.windows(2) {
            assert_eq!(pair[1] - pair[0], 1024);
        }
        assert_eq!(t.audio_reanchors, 0);
    }

    #[test]
    fn audio_reanchors_only_beyond_tolerance() {
        let mut t = Timeline::new();
        let first = t.audio(0, 48_000).dts;
        // 200 ms later than the counted 21 ms: a real gap in the source.
        let second = t.audio(221, 48_000).dts;
        assert_eq!(second - first, 221 * 48);
        assert_eq!(t.audio_reanchors, 1);
    }

    #[test]
    fn wrap_of_32_bit_time_is_continuous() {
        let mut t = Timeline::new();
        let a = t.video(u32::MAX - 10, 0).dts;
        let b = t.video(22, 0); // 33 ms later, across the wrap
        assert_eq!(b.dts - a, 33 * 90);
        assert!(!b.discontinuity);
    }

    #[test]
    fn backward_jump_is_a_discontinuity_and_time_keeps_rising() {
        let mut t = Timeline::new();
        t.video(10_000, 0);
        let last = t.video(10_033, 0).dts;
        let after = t.video(2_000, 0);
        assert!(after.discontinuity);
        assert_eq!(after.dts, last + 33 * 90, "resumes one frame later");
        let next = t.video(2_033, 0);
        assert!(!next.discontinuity);
        assert_eq!(next.dts - after.dts, 33 * 90);
    }

    #[test]
    fn forward_jump_is_a_discontinuity() {
        let mut t = Timeline::new();
        t.video(0, 0);
        let last = t.video(40, 0).dts;
        let jumped = t.video(60_000, 0);
        assert!(jumped.discontinuity);
        assert_eq!(jumped.dts, last + 40 * 90);
    }

    #[test]
    fn small_interleave_skew_is_not_a_jump() {
        let mut t = Timeline::new();
        t.video(1_000, 0);
        let a = t.audio(980, 44_100);
        assert!(!a.discontinuity);
        assert!(a.dts > 0);
    }

    #[test]
    fn reconnect_resumes_after_last_frame_of_either_track() {
        let mut t = Timeline::new();
        t.video(0, 0);
        t.video(33, 0);
        let last_audio = t.audio(40, 48_000).dts; // audio ends at 40 + 21.3 ms
        t.restart();
        let v = t.video(0, 0);
        assert!(v.discontinuity);
        let audio_end = rescale(last_audio + 1024, 48_000, 90_000);
        let video_end = (START_MS + 33) * 90 + 33 * 90;
        assert_eq!(v.dts, audio_end.max(video_end));
        let a = t.audio(0, 48_000);
        assert!(
            !a.discontinuity,
            "only the first frame after the break is flagged"
        );
        assert_eq!(a.dts, last_audio + 1024, "audio continues without a hole");
    }

    #[test]
    fn reconnect_starts_after_everything_presented() {
        let mut t = Timeline::new();
        t.video(0, 0);
        t.video(33, 100); // a reordered frame shown 100 ms after its decode time
        let last = t.video(67, 0).dts;
        t.restart();
        let first = t.video(0, 67).dts;
        assert_eq!(
            first,
            (START_MS + 33 + 100) * 90 + 33 * 90,
            "one frame after the last presented"
        );
        assert!(first > last);
    }

    #[test]
    fn repeated_video_millisecond_still_rises() {
        let mut t = Timeline::new();
        let a = t.video(100, 0).dts;
        let b = t.video(100, 0).dts;
        assert!(b > a);
    }
}
