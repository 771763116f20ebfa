//! FLV AUDIODATA bodies (FLV spec v10.1 E.4.2.1): AAC only; every other SoundFormat, and any
//! Enhanced-RTMP body, is refused with a message naming it.

use bytes::Bytes;

use super::{fourcc_text, FlvError};

/// SoundFormat 10: AAC.
const SOUND_FORMAT_AAC: u8 = 10;
/// SoundFormat 9: Enhanced RTMP's ExHeader (a FourCC codec follows).
const SOUND_FORMAT_EX_HEADER: u8 = 9;
/// SoundFormat/rate/size/type byte, AACPacketType.
const AAC_HEADER_LEN: usize = 2;
/// Enhanced RTMP AudioPacketTypes after which no FourCC immediately follows.
const EX_MULTITRACK: u8 = 5;
const EX_MOD_EX: u8 = 7;

/// What one FLV audio tag carries, for the one codec tally packages (AAC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// AACPacketType 0: the AudioSpecificConfig (a slice of the input).
    AacSequenceHeader(Bytes),
    /// AACPacketType 1: one raw AAC frame (a slice of the input).
    AacRaw(Bytes),
}

/// Parses the body of an FLV audio tag (or an RTMP audio message, which is the same bytes).
///
/// The rate/size/type bits are ignored for AAC, as the spec says: the AudioSpecificConfig is
/// authoritative.
pub fn parse_audio(body: &Bytes) -> Result<AudioTag, FlvError> {
    let Some(&first) = body.first() else {
        return Err(FlvError::Truncated {
            what: "AudioTagHeader",
            expected: 1,
            actual: 0,
        });
    };
    let sound_format = first >> 4;
    if sound_format == SOUND_FORMAT_EX_HEADER {
        return Err(enhanced_audio(body));
    }
    if sound_format != SOUND_FORMAT_AAC {
        return Err(FlvError::Unsupported(format!(
            "audio codec {} (SoundFormat {sound_format})",
            sound_format_name(sound_format)
        )));
    }
    let Some(&packet_type) = body.get(1) else {
        return Err(FlvError::Truncated {
            what: "AACAUDIODATA header",
            expected: AAC_HEADER_LEN,
            actual: body.len(),
        });
    };
    match packet_type {
        0 => Ok(AudioTag::AacSequenceHeader(body.slice(AAC_HEADER_LEN..))),
        1 => Ok(AudioTag::AacRaw(body.slice(AAC_HEADER_LEN..))),
        other => Err(FlvError::Invalid(format!("AACPacketType {other}"))),
    }
}

/// The refusal for an Enhanced RTMP audio body, naming its FourCC where the layout has one.
fn enhanced_audio(body: &[u8]) -> FlvError {
    let packet_type = body.first().map_or(0, |b| b & 0x0f);
    if packet_type == EX_MULTITRACK || packet_type == EX_MOD_EX {
        return FlvError::Unsupported(format!(
            "enhanced RTMP audio (SoundFormat 9, AudioPacketType {packet_type})"
        ));
    }
    match body.get(1..5) {
        Some(fourcc) => FlvError::Unsupported(format!(
            "enhanced RTMP audio (SoundFormat 9, FourCC {})",
            fourcc_text(fourcc)
        )),
        None => FlvError::Truncated {
            what: "enhanced audio FourCC",
            expected: 5,
            actual: body.len(),
        },
    }
}

/// Names an FLV SoundFormat for refusal messages.
fn sound_format_name(sound_format: u8) -> &'static str {
    match sound_format {
        0 => "Linear PCM, platform endian",
        1 => "ADPCM",
        2 => "MP3",
        3 => "Linear PCM, little endian",
        4 => "Nellymoser 16 kHz mono",
        5 => "Nellymoser 8 kHz mono",
        6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        11 => "Speex",
        14 => "MP3 8 kHz",
        15 => "device-specific sound",
        _ => "reserved",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::hex;

    fn parse(s: &str) -> Result<AudioTag, FlvError> {
        parse_audio(&Bytes::from(hex(s)))
    }

    #[test]
    fn aac_sequence_header_and_frame() {
        // fixtures/cam-a.flv: the AAC sequence header, then the start of the first raw frame.
        let AudioTag::AacSequenceHeader(asc) = parse("af00 119056e500").unwrap() else {
            panic!("not a sequence header")
        };
        assert_eq!(crate::codec::parse_asc(asc).unwrap().sample_rate, 48_000);
        assert_eq!(
            parse("af01 2128cffffff00098").unwrap(),
            AudioTag::AacRaw(Bytes::from(hex("2128cffffff00098")))
        );
        assert_eq!(
            parse("af02"),
            Err(FlvError::Invalid("AACPacketType 2".into()))
        );
    }

    #[test]
    fn other_sound_formats_are_named() {
        let cases = [
            (0, "Linear PCM, platform endian"),
            (1, "ADPCM"),
            (2, "MP3"),
            (3, "Linear PCM, little endian"),
            (4, "Nellymoser 16 kHz mono"),
            (5, "Nellymoser 8 kHz mono"),
            (6, "Nellymoser"),
            (7, "G.711 A-law"),
            (8, "G.711 mu-law"),
            (11, "Speex"),
            (12, "reserved"),
            (13, "reserved"),
            (14, "MP3 8 kHz"),
            (15, "device-specific sound"),
        ];
        for (format, name) in cases {
            let body = Bytes::from(vec![(format << 4) | 0x0f, 0xff, 0xfb]);
            assert_eq!(
                parse_audio(&body),
                Err(FlvError::Unsupported(format!(
                    "audio codec {name} (SoundFormat {format})"
                )))
            );
        }
    }

    #[test]
    fn mp3_tag_from_fixture() {
        // fixtures/mp3-audio.flv: MP3 44 kHz 16-bit stereo, then an MPEG audio frame header.
        assert_eq!(
            parse("2f fffb50640000018f"),
            Err(FlvError::Unsupported(
                "audio codec MP3 (SoundFormat 2)".into()
            ))
        );
    }

    #[test]
    fn enhanced_audio_is_refused_by_fourcc() {
        assert_eq!(
            parse("90 4f707573 00"),
            Err(FlvError::Unsupported(
                "enhanced RTMP audio (SoundFormat 9, FourCC Opus)".into()
            ))
        );
        assert_eq!(
            parse("95 00"),
            Err(FlvError::Unsupported(
                "enhanced RTMP audio (SoundFormat 9, AudioPacketType 5)".into()
            ))
        );
        assert_eq!(
            parse("90 4f"),
            Err(FlvError::Truncated {
                what: "enhanced audio FourCC",
                expected: 5,
                actual: 2
            })
        );
    }

    #[test]
    fn truncated_headers() {
        assert_eq!(
            parse(""),
            Err(FlvError::Truncated {
                what: "AudioTagHeader",
                expected: 1,
                actual: 0
            })
        );
        assert_eq!(
            parse("af"),
            Err(FlvError::Truncated {
                what: "AACAUDIODATA header",
                expected: 2,
                actual: 1
            })
        );
        // An empty AAC payload is a valid (if useless) frame, not a truncation.
        assert_eq!(parse("af01").unwrap(), AudioTag::AacRaw(Bytes::new()));
    }
}
