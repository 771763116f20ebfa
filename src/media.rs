//! The one frame type that flows from ingest through packaging, the program switcher and fan-out.
//!
//! Timestamps are in the track's own clock (90 kHz video, sample-rate audio), converted once at the
//! RTMP edge. Payloads are `Bytes` slices of the received message: cloning a frame never copies media.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;

/// Timescale of every video track: the MPEG 90 kHz clock, so that common frame rates are exact.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Samples in one AAC-LC frame; audio time advances by this much per frame.
pub const AAC_FRAME_SAMPLES: u32 = 1024;

/// H.264 decoder configuration, as carried by an FLV AVC sequence header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    /// The AVCDecoderConfigurationRecord exactly as received; written verbatim into `avcC`.
    pub avcc: Bytes,
    /// Coded picture size after cropping, from the first SPS.
    pub width: u16,
    pub height: u16,
    /// `profile_idc`, `constraint flags` and `level_idc` from the record, for the RFC 6381 codec string.
    pub profile: u8,
    pub compatibility: u8,
    pub level: u8,
    /// Bytes in each NAL unit length prefix (1, 2 or 4).
    pub nal_length_size: u8,
}

impl VideoConfig {
    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.compatibility, self.level
        )
    }
}

/// AAC decoder configuration, as carried by an FLV AAC sequence header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// The AudioSpecificConfig exactly as received; written verbatim into `esds`.
    pub asc: Bytes,
    /// Audio object type (2 = AAC-LC).
    pub object_type: u8,
    /// Sampling frequency in Hz; also the audio track's timescale.
    pub sample_rate: u32,
    /// Channel count (1 = mono, 2 = stereo; configuration 7 means 8 channels).
    pub channels: u8,
}

impl AudioConfig {
    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// Which track a frame belongs to, with the codec configuration in force for it. The `Arc` makes a
/// configuration change visible by pointer: a new `Arc` means a new init segment.
#[derive(Debug, Clone)]
pub enum Track {
    Video(Arc<VideoConfig>),
    Audio(Arc<AudioConfig>),
}

impl Track {
    pub fn is_video(&self) -> bool {
        matches!(self, Track::Video(_))
    }

    /// Ticks per second of this track's clock.
    pub fn timescale(&self) -> u32 {
        match self {
            Track::Video(_) => VIDEO_TIMESCALE,
            Track::Audio(config) => config.sample_rate,
        }
    }
}

/// One access unit: a video picture (AVCC length-prefixed NAL units) or one raw AAC frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub track: Track,
    /// Decode timestamp in the track's timescale.
    pub dts: i64,
    /// Presentation minus decode time in the track's timescale; negative is legal (CMAF trun v1).
    pub cts_offset: i32,
    /// A sync sample (IDR picture); audio frames are always sync samples.
    pub keyframe: bool,
    /// The first frame after a break in the source (reconnect or timestamp jump): the packager
    /// starts a new segment with a discontinuity here.
    pub discontinuity: bool,
    pub payload: Bytes,
    /// When ingest received it: what a switch waits for is measured from here.
    pub arrival: Instant,
}

impl Frame {
    /// Decode time in seconds, for comparing across tracks with different clocks.
    pub fn dts_seconds(&self) -> f64 {
        self.dts as f64 / self.track.timescale() as f64
    }

    /// Presentation timestamp in the track's timescale.
    pub fn pts(&self) -> i64 {
        self.dts + i64::from(self.cts_offset)
    }
}

/// Rescales `value` ticks from one clock to another, rounding to nearest, without overflow for
/// any timestamp a stream can reach.
pub fn rescale(value: i64, from: u32, to: u32) -> i64 {
    if from == to {
        return value;
    }
    let scaled = i128::from(value) * i128::from(to);
    let from = i128::from(from);
    let half = from / 2;
    (if scaled >= 0 {
        (scaled + half) / from
    } else {
        (scaled - half) / from
    }) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_to_nearest_both_signs() {
        assert_eq!(rescale(1, 1000, VIDEO_TIMESCALE), 90);
        assert_eq!(rescale(1024, 48_000, VIDEO_TIMESCALE), 1920);
        assert_eq!(rescale(1024, 44_100, 1000), 23);
        assert_eq!(rescale(-1024, 44_100, 1000), -23);
        assert_eq!(
            rescale(i64::from(u32::MAX) * 1000, 1000, 90_000),
            i64::from(u32::MAX) * 90_000
        );
    }

    #[test]
    fn codec_strings() {
        let v = VideoConfig {
            avcc: Bytes::new(),
            width: 1280,
            height: 720,
            profile: 0x64,
            compatibility: 0,
            level: 0x1f,
            nal_length_size: 4,
        };
        assert_eq!(v.codec_string(), "avc1.64001f");
        let a = AudioConfig {
            asc: Bytes::new(),
            object_type: 2,
            sample_rate: 48_000,
            channels: 2,
        };
        assert_eq!(a.codec_string(), "mp4a.40.2");
    }
}
