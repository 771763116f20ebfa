//! Pure FLV parsing (Adobe FLV spec v10.1, annex E): tag records, and the audio, video and script
//! tag bodies that RTMP messages carry unchanged. No I/O: every function takes bytes and returns
//! views (`Bytes` slices) of them.
//!
//! - [`tag`]: tag records, from an FLV file or an RTMP Aggregate message body.
//! - [`video`]: VIDEODATA; legacy AVC only.
//! - [`audio`]: AUDIODATA; AAC only.
//! - [`script`]: SCRIPTDATA; `onMetaData`, with or without `@setDataFrame`.
//!
//! Codec configuration records inside sequence headers are parsed by [`crate::codec`].

pub mod audio;
pub mod script;
pub mod tag;
pub mod video;

pub use audio::{parse_audio, AudioTag};
pub use script::{parse_script, Metadata, ScriptTag};
pub use tag::{file_tags, tags, Tag, TagKind, Tags};
pub use video::{parse_video, VideoTag};

/// Why FLV bytes were refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FlvError {
    /// The input ended inside `what`; sizes are in bytes from the start of the enclosing
    /// structure (tag record, tag body or AMF0 data).
    #[error("truncated {what}: need {expected} bytes, have {actual}")]
    Truncated {
        /// The spec structure being read when the data ran out.
        what: &'static str,
        /// Bytes needed to read it.
        expected: usize,
        /// Bytes available.
        actual: usize,
    },
    /// Well-formed, but a codec or feature tally does not package; the text names it, e.g.
    /// "audio codec MP3 (SoundFormat 2)", so a publisher can be told what to change.
    #[error("unsupported {0}")]
    Unsupported(String),
    /// Malformed: bad signature, reserved packet type, bad AMF0 and the like.
    #[error("invalid FLV: {0}")]
    Invalid(String),
}

/// Renders an Enhanced-RTMP FourCC for messages: as text when printable, else as hex.
fn fourcc_text(fourcc: &[u8]) -> String {
    if fourcc.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(fourcc).into_owned()
    } else {
        let hex: String = fourcc.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    }
}

/// Whole-file tests over the committed fixtures, plus no-panic sweeps of every parser.
#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::test_support::random_bytes;
    use crate::codec::{nal_units, parse_asc, parse_avcc, CodecError};

    const CAM_A: &[u8] = include_bytes!("../../fixtures/cam-a.flv");
    const CAM_B: &[u8] = include_bytes!("../../fixtures/cam-b.flv");
    const AUDIO_ONLY: &[u8] = include_bytes!("../../fixtures/audio-only.flv");
    const MP3_AUDIO: &[u8] = include_bytes!("../../fixtures/mp3-audio.flv");

    fn all_tags(file: &'static [u8]) -> Vec<Tag> {
        file_tags(Bytes::from_static(file))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn of_kind(tags: &[Tag], kind: TagKind) -> Vec<&Tag> {
        tags.iter().filter(|t| t.kind == kind).collect()
    }

    /// The config from the first video tag, which must be an AVC sequence header.
    fn video_config(tags: &[Tag]) -> crate::media::VideoConfig {
        let video = of_kind(tags, TagKind::Video);
        let VideoTag::AvcSequenceHeader(record) = parse_video(&video[0].body).unwrap() else {
            panic!("first video tag is not an AVC sequence header")
        };
        parse_avcc(record).unwrap()
    }

    /// The config from the first audio tag, which must be an AAC sequence header.
    fn audio_config(tags: &[Tag]) -> crate::media::AudioConfig {
        let audio = of_kind(tags, TagKind::Audio);
        let AudioTag::AacSequenceHeader(asc) = parse_audio(&audio[0].body).unwrap() else {
            panic!("first audio tag is not an AAC sequence header")
        };
        parse_asc(asc).unwrap()
    }

    #[test]
    fn cam_a_file() {
        let tags = all_tags(CAM_A);
        let video = of_kind(&tags, TagKind::Video);
        let audio = of_kind(&tags, TagKind::Audio);
        // 180 pictures plus the sequence header and end of sequence; 283 AAC frames plus the
        // sequence header.
        assert_eq!(video.len(), 182);
        assert_eq!(audio.len(), 284);
        assert_eq!(of_kind(&tags, TagKind::Script).len(), 1);
        assert!(matches!(
            parse_script(&tags[0].body).unwrap(),
            ScriptTag::Metadata(Metadata {
                width: Some(320.0),
                ..
            })
        ));

        let (v, a) = (video_config(&tags), audio_config(&tags));
        assert_eq!((v.width, v.height, v.nal_length_size), (320, 240, 4));
        assert_eq!(v.codec_string(), "avc1.64000d");
        assert_eq!((a.sample_rate, a.channels, a.object_type), (48_000, 2, 2));

        let mut keyframes = 0;
        let mut composition_times = Vec::new();
        for (i, tag) in video.iter().enumerate().skip(1) {
            match parse_video(&tag.body).unwrap() {
                VideoTag::AvcNalu {
                    keyframe,
                    composition_time_ms,
                    data,
                } => {
                    keyframes += usize::from(keyframe);
                    composition_times.push(composition_time_ms);
                    let units: Vec<_> = nal_units(&data, v.nal_length_size)
                        .collect::<Result<_, CodecError>>()
                        .unwrap();
                    let idr = units.iter().any(|u| u.first().map(|h| h & 0x1f) == Some(5));
                    assert_eq!(idr, keyframe, "at {} ms", tag.timestamp_ms);
                }
                VideoTag::AvcEndOfSequence => assert_eq!(i, video.len() - 1),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(keyframes, 6, "one IDR per second");
        assert_eq!(composition_times.len(), 180);
        assert!(composition_times.iter().any(|&c| c > 0), "B-frames");
        assert!(composition_times.iter().all(|&c| c >= 0));
        let timestamps: Vec<_> = video.iter().map(|t| t.timestamp_ms).collect();
        assert!(timestamps.windows(2).all(|w| w[0] <= w[1]));
        assert!(audio
            .iter()
            .skip(1)
            .all(|t| matches!(parse_audio(&t.body), Ok(AudioTag::AacRaw(_)))));
    }

    #[test]
    fn cam_b_file() {
        let tags = all_tags(CAM_B);
        let (v, a) = (video_config(&tags), audio_config(&tags));
        assert_eq!((v.width, v.height), (640, 360));
        assert_eq!((a.sample_rate, a.channels), (44_100, 1));
        let keyframes = of_kind(&tags, TagKind::Video)
            .iter()
            .filter(|t| {
                matches!(
                    parse_video(&t.body),
                    Ok(VideoTag::AvcNalu { keyframe: true, .. })
                )
            })
            .count();
        assert_eq!(keyframes, 3, "one IDR per 2 s over 6 s");
    }

    #[test]
    fn audio_only_file() {
        let tags = all_tags(AUDIO_ONLY);
        assert!(of_kind(&tags, TagKind::Video).is_empty());
        let audio = of_kind(&tags, TagKind::Audio);
        let a = audio_config(&tags);
        assert_eq!((a.sample_rate, a.channels), (48_000, 2));
        // 4 s of 1024-sample frames at 48 kHz is 187.5 frames; the encoder flushes one more.
        assert!((188..=190).contains(&(audio.len() - 1)), "{}", audio.len());
    }

    #[test]
    fn mp3_file_is_refused_naming_mp3() {
        let tags = all_tags(MP3_AUDIO);
        let audio = of_kind(&tags, TagKind::Audio);
        assert!(!audio.is_empty());
        for tag in audio {
            match parse_audio(&tag.body) {
                Err(FlvError::Unsupported(text)) => assert!(text.contains("MP3"), "{text}"),
                other => panic!("MP3 tag parsed as {other:?}"),
            }
        }
        // Its video is fine.
        let v = video_config(&tags);
        assert_eq!((v.width, v.height), (320, 240));
    }

    /// Runs every parser on `data`; the assertion is that none of them panics.
    fn feed_everything(data: &[u8]) {
        let bytes = Bytes::copy_from_slice(data);
        let _ = parse_video(&bytes);
        let _ = parse_audio(&bytes);
        let _ = parse_script(data);
        let _ = parse_avcc(bytes.clone());
        let _ = parse_asc(bytes.clone());
        for size in 0..=5 {
            let _ = nal_units(data, size).count();
        }
        let _ = tags(bytes.clone()).count();
        if let Ok(tags) = file_tags(bytes) {
            let _ = tags.count();
        }
    }

    #[test]
    fn every_prefix_of_real_tags_is_safe() {
        let tags = all_tags(CAM_A);
        // Metadata, both sequence headers, and the first few pictures and frames.
        for tag in tags.iter().take(12) {
            for len in 0..=tag.body.len().min(600) {
                feed_everything(&tag.body[..len]);
            }
        }
        let VideoTag::AvcSequenceHeader(record) = parse_video(&tags[1].body).unwrap() else {
            panic!("second tag is not the AVC sequence header")
        };
        for len in 0..=record.len() {
            feed_everything(&record[..len]);
        }
        for len in 0..=CAM_A.len().min(4096) {
            feed_everything(&CAM_A[..len]);
        }
    }

    #[test]
    fn random_and_mutated_bytes_are_safe() {
        for seed in 1..=300u64 {
            let noise = random_bytes(seed, (seed as usize * 7) % 200);
            feed_everything(&noise);
            // Tags whose first byte looks plausible, to get past the type checks.
            for first in [0x17, 0x27, 0xaf, 0x02, 0x09, 0x08, 0x01, 0x46] {
                let mut data = noise.clone();
                data.insert(0, first);
                feed_everything(&data);
            }
        }
        // Real sequence headers and metadata with bytes flipped: exercises the SPS and AMF0
        // parsers past their first checks.
        let tags = all_tags(CAM_B);
        for tag in tags.iter().take(3) {
            for seed in 1..=200u64 {
                let mut body = tag.body.to_vec();
                let noise = random_bytes(seed, 3);
                let at = usize::from(noise[0]) * body.len() / 256;
                body[at] ^= noise[1] | 1;
                feed_everything(&body);
                feed_everything(&body[5.min(body.len())..]);
                feed_everything(&body[2.min(body.len())..]);
            }
        }
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            FlvError::Unsupported("audio codec MP3 (SoundFormat 2)".into()).to_string(),
            "unsupported audio codec MP3 (SoundFormat 2)"
        );
        assert_eq!(fourcc_text(b"hvc1"), "hvc1");
        assert_eq!(fourcc_text(&[0, 1, 2, 0xff]), "0x000102ff");
    }
}
