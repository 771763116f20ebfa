//! Frames back into FLV tag bodies (FLV spec v10.1 E.4.2.1, E.4.3.1, E.4.4), the inverse of
//! [`crate::flv::parse_video`] and [`crate::flv::parse_audio`]: what an RTMP publisher sends.
//!
//! Pure: no I/O, no clocks. Timestamps go from the track's clock to RTMP milliseconds here, once.

use bytes::{BufMut, Bytes, BytesMut};
use rml_amf0::Amf0Value;

use crate::media::{rescale, AudioConfig, Frame, Track, VideoConfig};

/// FrameType 1 (keyframe) | CodecID 7 (AVC).
const AVC_KEYFRAME: u8 = 0x17;
/// FrameType 2 (inter frame) | CodecID 7 (AVC).
const AVC_INTER: u8 = 0x27;
/// AVCPacketType 0: AVCDecoderConfigurationRecord.
const AVC_SEQUENCE_HEADER: u8 = 0;
/// AVCPacketType 1: NAL units.
const AVC_NALU: u8 = 1;
/// SoundFormat 10 (AAC), 44 kHz, 16-bit, stereo: the spec says AAC always uses these bits, and
/// the AudioSpecificConfig is authoritative.
const AAC_HEADER: u8 = 0xAF;
/// AACPacketType 0: AudioSpecificConfig.
const AAC_SEQUENCE_HEADER: u8 = 0;
/// AACPacketType 1: a raw AAC frame.
const AAC_RAW: u8 = 1;
/// CompositionTime is a signed 24-bit field.
const CTS_MIN: i32 = -(1 << 23);
const CTS_MAX: i32 = (1 << 23) - 1;
/// `videocodecid` and `audiocodecid` in `onMetaData`.
const CODEC_ID_AVC: f64 = 7.0;
const CODEC_ID_AAC: f64 = 10.0;

/// `[0x17][0][0,0,0][avcC]`: the decoder configuration, sent before the first picture and
/// whenever it changes.
pub fn video_sequence_header(config: &VideoConfig) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + config.avcc.len());
    out.put_slice(&[AVC_KEYFRAME, AVC_SEQUENCE_HEADER, 0, 0, 0]);
    out.put_slice(&config.avcc);
    out.freeze()
}

/// `[0x17|0x27][1][cts, signed 24-bit ms][AVCC NAL units]`. A composition time outside the
/// 24-bit range (over 2 hours) is clamped.
pub fn video_frame(keyframe: bool, cts_ms: i32, payload: &[u8]) -> Bytes {
    let cts = cts_ms.clamp(CTS_MIN, CTS_MAX);
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.put_u8(if keyframe { AVC_KEYFRAME } else { AVC_INTER });
    out.put_u8(AVC_NALU);
    out.put_slice(&cts.to_be_bytes()[1..]);
    out.put_slice(payload);
    out.freeze()
}

/// `[0xAF][0][AudioSpecificConfig]`.
pub fn audio_sequence_header(config: &AudioConfig) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + config.asc.len());
    out.put_slice(&[AAC_HEADER, AAC_SEQUENCE_HEADER]);
    out.put_slice(&config.asc);
    out.freeze()
}

/// `[0xAF][1][raw AAC frame]`.
pub fn audio_frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + payload.len());
    out.put_slice(&[AAC_HEADER, AAC_RAW]);
    out.put_slice(payload);
    out.freeze()
}

/// An `onMetaData` script body (`["onMetaData", {...}]`, as in an FLV file; the publisher wraps
/// it in `@setDataFrame`) describing the tracks in force.
pub fn metadata(video: Option<&VideoConfig>, audio: Option<&AudioConfig>) -> Bytes {
    let mut pairs: Vec<(&str, Amf0Value)> = vec![(
        "encoder",
        Amf0Value::Utf8String(concat!("tally ", env!("CARGO_PKG_VERSION")).into()),
    )];
    if let Some(video) = video {
        pairs.extend([
            ("width", Amf0Value::Number(f64::from(video.width))),
            ("height", Amf0Value::Number(f64::from(video.height))),
            ("videocodecid", Amf0Value::Number(CODEC_ID_AVC)),
        ]);
    }
    if let Some(audio) = audio {
        pairs.extend([
            ("audiocodecid", Amf0Value::Number(CODEC_ID_AAC)),
            (
                "audiosamplerate",
                Amf0Value::Number(f64::from(audio.sample_rate)),
            ),
            (
                "audiochannels",
                Amf0Value::Number(f64::from(audio.channels)),
            ),
            ("stereo", Amf0Value::Boolean(audio.channels >= 2)),
        ]);
    }
    let values = vec![
        Amf0Value::Utf8String("onMetaData".into()),
        crate::rtmp::message::object(&pairs),
    ];
    Bytes::from(rml_amf0::serialize(&values).expect("AMF0 of numbers and strings serialises"))
}

/// A frame's decode time in milliseconds, from its track's clock.
pub fn dts_ms(frame: &Frame) -> i64 {
    rescale(frame.dts, frame.track.timescale(), 1000)
}

/// Presentation minus decode time in milliseconds, rounded as the two instants are, so that
/// `dts_ms + cts_ms` is the rounded presentation time.
pub fn cts_ms(frame: &Frame) -> i32 {
    let scale = frame.track.timescale();
    let pts = rescale(frame.pts(), scale, 1000);
    (pts - rescale(frame.dts, scale, 1000)) as i32
}

/// The tag body of a media frame (not its sequence header).
pub fn frame_body(frame: &Frame, payload: &[u8]) -> Bytes {
    match frame.track {
        Track::Video(_) => video_frame(frame.keyframe, cts_ms(frame), payload),
        Track::Audio(_) => audio_frame(payload),
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Instant};

    use super::*;
    use crate::codec::{parse_asc, parse_avcc};
    use crate::flv::{self, parse_audio, parse_script, parse_video, AudioTag, ScriptTag, VideoTag};
    use crate::media::VIDEO_TIMESCALE;

    const CAM_A: &[u8] = include_bytes!("../../fixtures/cam-a.flv");

    fn cam_a() -> Vec<flv::Tag> {
        flv::file_tags(Bytes::from_static(CAM_A))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn configs() -> (VideoConfig, AudioConfig) {
        let tags = cam_a();
        let mut video = None;
        let mut audio = None;
        for tag in &tags {
            match tag.kind {
                flv::TagKind::Video => {
                    if let Ok(VideoTag::AvcSequenceHeader(r)) = parse_video(&tag.body) {
                        video.get_or_insert(parse_avcc(r).unwrap());
                    }
                }
                flv::TagKind::Audio => {
                    if let Ok(AudioTag::AacSequenceHeader(a)) = parse_audio(&tag.body) {
                        audio.get_or_insert(parse_asc(a).unwrap());
                    }
                }
                flv::TagKind::Script => {}
            }
        }
        (video.unwrap(), audio.unwrap())
    }

    #[test]
    fn video_bytes_are_exact() {
        assert_eq!(
            &video_frame(true, 0, &[0, 0, 0, 1, 0x65])[..],
            &[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]
        );
        assert_eq!(&video_frame(false, 80, &[9])[..], &[0x27, 1, 0, 0, 80, 9]);
        assert_eq!(
            &video_frame(false, -2, &[])[..],
            &[0x27, 1, 0xff, 0xff, 0xfe]
        );
        // Clamped to the 24-bit field rather than wrapped into a wrong sign.
        assert_eq!(
            &video_frame(false, 1 << 24, &[])[..],
            &[0x27, 1, 0x7f, 0xff, 0xff]
        );
        assert_eq!(&audio_frame(&[1, 2])[..], &[0xaf, 1, 1, 2]);
    }

    #[test]
    fn sequence_headers_round_trip_through_the_parsers() {
        let (video, audio) = configs();
        let body = video_sequence_header(&video);
        assert_eq!(&body[..5], &[0x17, 0, 0, 0, 0]);
        let VideoTag::AvcSequenceHeader(record) = parse_video(&body).unwrap() else {
            panic!("not a sequence header")
        };
        assert_eq!(parse_avcc(record).unwrap(), video);

        let body = audio_sequence_header(&audio);
        assert_eq!(&body[..2], &[0xaf, 0]);
        let AudioTag::AacSequenceHeader(asc) = parse_audio(&body).unwrap() else {
            panic!("not a sequence header")
        };
        assert_eq!(parse_asc(asc).unwrap(), audio);
    }

    /// Every media tag of the fixture, parsed and rebuilt, is byte-identical to the original.
    #[test]
    fn fixture_media_tags_rebuild_byte_for_byte() {
        let mut checked = (0, 0);
        for tag in cam_a() {
            match tag.kind {
                flv::TagKind::Video => match parse_video(&tag.body).unwrap() {
                    VideoTag::AvcNalu {
                        keyframe,
                        composition_time_ms,
                        data,
                    } => {
                        let rebuilt = video_frame(keyframe, composition_time_ms, &data);
                        assert_eq!(rebuilt, tag.body, "at {} ms", tag.timestamp_ms);
                        checked.0 += 1;
                    }
                    VideoTag::AvcSequenceHeader(record) => {
                        let config = parse_avcc(record).unwrap();
                        assert_eq!(video_sequence_header(&config), tag.body);
                    }
                    _ => {}
                },
                flv::TagKind::Audio => match parse_audio(&tag.body).unwrap() {
                    AudioTag::AacRaw(raw) => {
                        assert_eq!(audio_frame(&raw), tag.body);
                        checked.1 += 1;
                    }
                    AudioTag::AacSequenceHeader(asc) => {
                        let config = parse_asc(asc).unwrap();
                        assert_eq!(audio_sequence_header(&config), tag.body);
                    }
                },
                flv::TagKind::Script => {}
            }
        }
        assert_eq!(checked, (180, 283));
    }

    #[test]
    fn metadata_round_trips_through_the_script_parser() {
        let (video, audio) = configs();
        let ScriptTag::Metadata(meta) =
            parse_script(&metadata(Some(&video), Some(&audio))).unwrap()
        else {
            panic!("not onMetaData")
        };
        assert_eq!(meta.width, Some(320.0));
        assert_eq!(meta.height, Some(240.0));
        assert_eq!(meta.video_codec_id, Some(7.0));
        assert_eq!(meta.audio_codec_id, Some(10.0));
        assert_eq!(meta.audio_sample_rate, Some(48_000.0));
        assert!(meta.encoder.unwrap().starts_with("tally"));

        let ScriptTag::Metadata(video_only) = parse_script(&metadata(Some(&video), None)).unwrap()
        else {
            panic!("not onMetaData")
        };
        assert_eq!(video_only.audio_codec_id, None);
    }

    #[test]
    fn milliseconds_from_track_clocks() {
        let (video, audio) = configs();
        let frame = |track: Track, dts: i64, cts_offset: i32| Frame {
            track,
            dts,
            cts_offset,
            keyframe: false,
            discontinuity: false,
            payload: Bytes::from_static(&[1, 2, 3]),
            arrival: Instant::now(),
        };
        let v = Track::Video(Arc::new(video));
        // 1 s + 1 frame at 30 fps in 90 kHz; B-frame offset of 2 frames.
        let f = frame(v.clone(), i64::from(VIDEO_TIMESCALE) + 3000, 6000);
        assert_eq!((dts_ms(&f), cts_ms(&f)), (1033, 67));
        // cts is the difference of the rounded instants: 1033 + 67 = round(1100.0).
        let f = frame(v, 3003, 3003);
        assert_eq!((dts_ms(&f), cts_ms(&f)), (33, 34));
        let a = Track::Audio(Arc::new(audio));
        let f = frame(a, 48_000 + 1024, 0);
        assert_eq!((dts_ms(&f), cts_ms(&f)), (1021, 0));
        assert_eq!(&frame_body(&f, &f.payload)[..], &[0xaf, 1, 1, 2, 3]);
    }
}
