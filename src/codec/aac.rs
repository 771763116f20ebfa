//! The AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), as carried by an FLV AAC sequence
//! header. Only the leading fields are read; anything after them (such as the backward-compatible
//! SBR signalling ffmpeg appends) is kept verbatim in the config but not interpreted.

use bytes::Bytes;

use super::CodecError;
use crate::media::AudioConfig;

/// audioObjectType of AAC-LC, the only profile tally packages.
const AOT_AAC_LC: u8 = 2;
/// audioObjectType value meaning "6 more bits follow, add 32".
const AOT_ESCAPE: u8 = 31;
/// samplingFrequencyIndex value meaning "an explicit 24-bit frequency follows".
const FREQUENCY_ESCAPE: u8 = 0xf;

/// Sampling frequencies for samplingFrequencyIndex 0..=12; 13 and 14 are reserved.
const SAMPLING_FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Channels for channelConfiguration 1..=7 (index 0 unused: 0 means "see the PCE").
const CHANNELS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 8];

/// Parses an AudioSpecificConfig, accepting AAC-LC with 1024-sample frames only.
///
/// `channels` is the channel count the configuration implies (configuration 7 is 8 channels).
pub fn parse_asc(asc: Bytes) -> Result<AudioConfig, CodecError> {
    let mut bits = Bits::new(&asc);
    let mut object_type = bits.read(5, "audioObjectType")? as u8;
    if object_type == AOT_ESCAPE {
        object_type = 32 + bits.read(6, "audioObjectTypeExt")? as u8;
    }
    if object_type != AOT_AAC_LC {
        return Err(CodecError::UnsupportedAudioObjectType(object_type));
    }
    let index = bits.read(4, "samplingFrequencyIndex")? as u8;
    let sample_rate = if index == FREQUENCY_ESCAPE {
        match bits.read(24, "samplingFrequency")? {
            0 => return Err(CodecError::BadSamplingFrequency(0)),
            hz => hz,
        }
    } else {
        *SAMPLING_FREQUENCIES
            .get(usize::from(index))
            .ok_or(CodecError::BadSamplingFrequencyIndex(index))?
    };
    let configuration = bits.read(4, "channelConfiguration")? as u8;
    let channels = match CHANNELS.get(usize::from(configuration)) {
        Some(&n) if n > 0 => n,
        _ => return Err(CodecError::UnsupportedChannelConfiguration(configuration)),
    };
    // GASpecificConfig: frameLengthFlag 1 would make every frame 960 samples, not 1024.
    if bits.read(1, "frameLengthFlag")? == 1 {
        return Err(CodecError::UnsupportedFrameLength);
    }
    Ok(AudioConfig {
        asc,
        object_type,
        sample_rate,
        channels,
    })
}

/// MSB-first bit reader over a byte slice, enough for the fixed-width ASC fields.
struct Bits<'a> {
    /// The AudioSpecificConfig bytes.
    data: &'a [u8],
    /// Bits consumed so far.
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    /// Reads `n` (at most 32) bits, naming `field` if the data ends first.
    fn read(&mut self, n: usize, field: &'static str) -> Result<u32, CodecError> {
        let end = self.pos + n;
        if end > self.data.len() * 8 {
            return Err(CodecError::Truncated {
                field,
                expected: end.div_ceil(8),
                actual: self.data.len(),
            });
        }
        let mut value = 0u32;
        for bit in self.pos..end {
            let byte = self.data.get(bit / 8).copied().unwrap_or(0);
            value = (value << 1) | u32::from((byte >> (7 - bit % 8)) & 1);
        }
        self.pos = end;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::hex;

    fn parse(s: &str) -> Result<AudioConfig, CodecError> {
        parse_asc(Bytes::from(hex(s)))
    }

    #[test]
    fn cam_a_asc() {
        // fixtures/cam-a.flv: AAC-LC, index 3 (48 kHz), stereo, then ffmpeg's sync extension
        // 0x2b7 announcing no SBR.
        let asc = Bytes::from(hex("119056e500"));
        let config = parse_asc(asc.clone()).unwrap();
        assert_eq!(
            config,
            AudioConfig {
                asc,
                object_type: 2,
                sample_rate: 48_000,
                channels: 2
            }
        );
        assert_eq!(config.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn cam_b_asc() {
        // fixtures/cam-b.flv: AAC-LC, index 4 (44.1 kHz), mono.
        let config = parse("120856e500").unwrap();
        assert_eq!((config.sample_rate, config.channels), (44_100, 1));
        // A bare two-byte ASC, as most RTMP encoders send.
        assert_eq!(parse("1210").unwrap().sample_rate, 44_100);
        assert_eq!(parse("1210").unwrap().channels, 2);
    }

    #[test]
    fn explicit_frequency() {
        // 00010 1111 <24 bits: 0x00bb80 = 48000> 0010 0 00
        // = 0001 0111 1000 0000 0101 1101 1100 0000 0001 0000
        let config = parse("17805dc010").unwrap();
        assert_eq!((config.sample_rate, config.channels), (48_000, 2));
        assert_eq!(
            parse("1780000010"),
            Err(CodecError::BadSamplingFrequency(0))
        );
    }

    #[test]
    fn refusals_name_the_field() {
        // HE-AAC (5) and Main (1).
        assert_eq!(
            parse("2b92"),
            Err(CodecError::UnsupportedAudioObjectType(5))
        );
        assert_eq!(
            parse("0990"),
            Err(CodecError::UnsupportedAudioObjectType(1))
        );
        // Escape: 11111 000010 => 34.
        assert_eq!(
            parse("f840"),
            Err(CodecError::UnsupportedAudioObjectType(34))
        );
        // Index 13 is reserved.
        assert_eq!(
            parse("1690"),
            Err(CodecError::BadSamplingFrequencyIndex(13))
        );
        // channelConfiguration 0 (PCE) and 8.
        assert_eq!(
            parse("1180"),
            Err(CodecError::UnsupportedChannelConfiguration(0))
        );
        assert_eq!(
            parse("11c0"),
            Err(CodecError::UnsupportedChannelConfiguration(8))
        );
        // 7 is 7.1: eight channels.
        assert_eq!(parse("11b8").unwrap().channels, 8);
        // frameLengthFlag set: 960-sample frames.
        assert_eq!(parse("1194"), Err(CodecError::UnsupportedFrameLength));
    }

    #[test]
    fn truncation_names_the_field() {
        assert_eq!(
            parse(""),
            Err(CodecError::Truncated {
                field: "audioObjectType",
                expected: 1,
                actual: 0
            })
        );
        assert_eq!(
            parse("11"),
            Err(CodecError::Truncated {
                field: "samplingFrequencyIndex",
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(
            parse("1780"),
            Err(CodecError::Truncated {
                field: "samplingFrequency",
                expected: 5,
                actual: 2
            })
        );
        assert_eq!(
            parse("f8"),
            Err(CodecError::Truncated {
                field: "audioObjectTypeExt",
                expected: 2,
                actual: 1
            })
        );
    }
}
