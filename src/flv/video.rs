//! FLV VIDEODATA bodies (FLV spec v10.1 E.4.3.1): legacy AVC only; every other codec, and any
//! Enhanced-RTMP body, is refused with a message naming it.

use bytes::Bytes;

use super::{fourcc_text, FlvError};

/// Top bit of the first byte: Enhanced RTMP's IsExHeader (a FourCC codec follows).
const EX_HEADER: u8 = 0x80;
/// FrameType 1: a keyframe (for AVC, a seekable frame, i.e. an IDR picture).
const FRAME_TYPE_KEY: u8 = 1;
/// FrameType 5: video info/command frame, carrying no picture.
const FRAME_TYPE_COMMAND: u8 = 5;
/// CodecID 7: AVC.
const CODEC_AVC: u8 = 7;
/// FrameType/CodecID byte, AVCPacketType, CompositionTime (SI24).
const AVC_HEADER_LEN: usize = 5;
/// Enhanced RTMP VideoPacketTypes after which no FourCC immediately follows.
const EX_MULTITRACK: u8 = 6;
const EX_MOD_EX: u8 = 7;

/// What one FLV video tag carries, for the one codec tally packages (H.264).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// AVCPacketType 0: the AVCDecoderConfigurationRecord (a slice of the input), sent before the
    /// first picture and again whenever the encoder is reconfigured.
    AvcSequenceHeader(Bytes),
    /// AVCPacketType 1: one access unit.
    AvcNalu {
        /// FrameType 1: the picture is an IDR, where a segment may start.
        keyframe: bool,
        /// Presentation minus decode time in milliseconds (signed 24-bit); non-zero with B-frames.
        composition_time_ms: i32,
        /// AVCC length-prefixed NAL units, a slice of the input.
        data: Bytes,
    },
    /// AVCPacketType 2: the encoder ended the sequence; carries no picture.
    AvcEndOfSequence,
    /// FrameType 5: a video info/command frame; carries no picture.
    Command,
}

/// Parses the body of an FLV video tag (or an RTMP video message, which is the same bytes).
pub fn parse_video(body: &Bytes) -> Result<VideoTag, FlvError> {
    let Some(&first) = body.first() else {
        return Err(FlvError::Truncated {
            what: "VideoTagHeader",
            expected: 1,
            actual: 0,
        });
    };
    if first & EX_HEADER != 0 {
        return Err(enhanced_video(body));
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if codec_id != CODEC_AVC {
        return Err(FlvError::Unsupported(format!(
            "video codec {} (CodecID {codec_id})",
            video_codec_name(codec_id)
        )));
    }
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Command);
    }
    if !(1..=4).contains(&frame_type) {
        return Err(FlvError::Invalid(format!("video FrameType {frame_type}")));
    }
    let Some(header) = body.get(..AVC_HEADER_LEN) else {
        return Err(FlvError::Truncated {
            what: "AVCVIDEOPACKET header",
            expected: AVC_HEADER_LEN,
            actual: body.len(),
        });
    };
    match header[1] {
        0 => Ok(VideoTag::AvcSequenceHeader(body.slice(AVC_HEADER_LEN..))),
        1 => Ok(VideoTag::AvcNalu {
            keyframe: frame_type == FRAME_TYPE_KEY,
            // Sign-extend the 24-bit value: shift it to the top of an i32 and back.
            composition_time_ms: i32::from_be_bytes([header[2], header[3], header[4], 0]) >> 8,
            data: body.slice(AVC_HEADER_LEN..),
        }),
        2 => Ok(VideoTag::AvcEndOfSequence),
        other => Err(FlvError::Invalid(format!("AVCPacketType {other}"))),
    }
}

/// The refusal for an Enhanced RTMP video body, naming its FourCC where the layout has one.
fn enhanced_video(body: &[u8]) -> FlvError {
    let packet_type = body.first().map_or(0, |b| b & 0x0f);
    if packet_type == EX_MULTITRACK || packet_type == EX_MOD_EX {
        return FlvError::Unsupported(format!(
            "enhanced RTMP video (VideoPacketType {packet_type})"
        ));
    }
    match body.get(1..5) {
        Some(fourcc) => FlvError::Unsupported(format!(
            "enhanced RTMP video (FourCC {})",
            fourcc_text(fourcc)
        )),
        None => FlvError::Truncated {
            what: "enhanced video FourCC",
            expected: 5,
            actual: body.len(),
        },
    }
}

/// Names a legacy FLV CodecID for refusal messages.
fn video_codec_name(codec_id: u8) -> &'static str {
    match codec_id {
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video v2",
        // Not in the FLV spec; Chinese CDNs and some encoders use it for HEVC.
        12 => "legacy HEVC",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::hex;

    fn parse(s: &str) -> Result<VideoTag, FlvError> {
        parse_video(&Bytes::from(hex(s)))
    }

    #[test]
    fn sequence_header_is_the_record() {
        // fixtures/cam-a.flv, first video tag body.
        let body = Bytes::from(hex(
            "1700000000 0164000dffe10019 6764000dacd94141fb0110000003001000000303c0f1429960
             01000568ebecb22c fdf8f800",
        ));
        let VideoTag::AvcSequenceHeader(record) = parse_video(&body).unwrap() else {
            panic!("not a sequence header")
        };
        assert_eq!(record, body.slice(5..));
        assert_eq!(crate::codec::parse_avcc(record).unwrap().width, 320);
    }

    #[test]
    fn keyframe_and_b_frame_headers() {
        // fixtures/cam-a.flv: the IDR (cts 0x43 = 67 ms) starting with its x264 SEI, then a
        // P-frame with cts 0x85 = 133 ms (B-pyramid delays presentation).
        let idr = parse("1701000043 000002f10605ffffeddc").unwrap();
        assert_eq!(
            idr,
            VideoTag::AvcNalu {
                keyframe: true,
                composition_time_ms: 67,
                data: Bytes::from(hex("000002f10605ffffeddc")),
            }
        );
        let p = parse("2701000085 00000b51419a236c").unwrap();
        assert!(matches!(
            p,
            VideoTag::AvcNalu {
                keyframe: false,
                composition_time_ms: 133,
                ..
            }
        ));
        // The same header with a negative CompositionTime (-34 ms), as publishers that shift
        // B-frames before their decode time send.
        let negative = parse("2701ffffde 00000b51419a236c").unwrap();
        assert!(matches!(
            negative,
            VideoTag::AvcNalu {
                composition_time_ms: -34,
                ..
            }
        ));
        assert!(matches!(
            parse("2701800000").unwrap(),
            VideoTag::AvcNalu {
                composition_time_ms: -8_388_608,
                ..
            }
        ));
    }

    #[test]
    fn end_of_sequence_and_command() {
        assert_eq!(parse("1702000000").unwrap(), VideoTag::AvcEndOfSequence);
        assert_eq!(parse("5700").unwrap(), VideoTag::Command);
        assert_eq!(
            parse("1703000000"),
            Err(FlvError::Invalid("AVCPacketType 3".into()))
        );
        assert_eq!(
            parse("0701000000"),
            Err(FlvError::Invalid("video FrameType 0".into()))
        );
    }

    #[test]
    fn legacy_codecs_are_named() {
        for (byte, name) in [
            ("12", "Sorenson H.263 (CodecID 2)"),
            ("13", "Screen video (CodecID 3)"),
            ("14", "On2 VP6 (CodecID 4)"),
            ("15", "On2 VP6 with alpha (CodecID 5)"),
            ("16", "Screen video v2 (CodecID 6)"),
            ("1c", "legacy HEVC (CodecID 12)"),
            ("11", "JPEG (CodecID 1)"),
            ("1d", "unknown (CodecID 13)"),
        ] {
            assert_eq!(
                parse(&format!("{byte}00000000")),
                Err(FlvError::Unsupported(format!("video codec {name}"))),
            );
        }
    }

    #[test]
    fn enhanced_rtmp_is_refused_by_fourcc() {
        // IsExHeader | keyframe | SequenceStart, 'hvc1'; then CodedFrames 'av01'.
        assert_eq!(
            parse("90 68766331 0000"),
            Err(FlvError::Unsupported(
                "enhanced RTMP video (FourCC hvc1)".into()
            ))
        );
        assert_eq!(
            parse("a1 61763031"),
            Err(FlvError::Unsupported(
                "enhanced RTMP video (FourCC av01)".into()
            ))
        );
        assert_eq!(
            parse("96 00"),
            Err(FlvError::Unsupported(
                "enhanced RTMP video (VideoPacketType 6)".into()
            ))
        );
        assert_eq!(
            parse("90 6876"),
            Err(FlvError::Truncated {
                what: "enhanced video FourCC",
                expected: 5,
                actual: 3
            })
        );
    }

    #[test]
    fn truncated_headers() {
        assert_eq!(
            parse(""),
            Err(FlvError::Truncated {
                what: "VideoTagHeader",
                expected: 1,
                actual: 0
            })
        );
        for len in 1..5 {
            let body = Bytes::from(hex("2701000085")).slice(..len);
            assert_eq!(
                parse_video(&body),
                Err(FlvError::Truncated {
                    what: "AVCVIDEOPACKET header",
                    expected: 5,
                    actual: len
                })
            );
        }
    }
}
