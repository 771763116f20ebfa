//! Pure parsers for the codec configuration records that FLV sequence headers carry.
//!
//! - [`avc`]: the H.264 AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) and its first
//!   SPS, plus splitting AVCC length-prefixed payloads into NAL units.
//! - [`aac`]: the AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).
//!
//! Each parser validates its input once and returns the plain config structs of
//! [`crate::media`], keeping the original bytes verbatim for the fMP4 sample entries.

pub mod aac;
pub mod avc;

pub use aac::parse_asc;
pub use avc::{nal_units, parse_avcc, with_parameter_sets};

/// Why a codec configuration or payload was refused; variants name the spec field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The input ended inside `field`; sizes are in bytes.
    #[error("truncated at {field}: need {expected} bytes, have {actual}")]
    Truncated {
        /// The spec field being read when the data ran out.
        field: &'static str,
        /// Bytes needed to read that field.
        expected: usize,
        /// Bytes available.
        actual: usize,
    },
    /// ISO/IEC 14496-15 requires decoders to ignore records whose version is not 1.
    #[error("AVCDecoderConfigurationRecord configurationVersion {0} (only 1 is defined)")]
    UnsupportedConfigurationVersion(u8),
    /// lengthSizeMinusOne may only be 0, 1 or 3 (NAL length prefixes of 1, 2 or 4 bytes).
    #[error("AVCDecoderConfigurationRecord lengthSizeMinusOne {0} (must be 0, 1 or 3)")]
    LengthSizeMinusOne(u8),
    /// numOfSequenceParameterSets is 0, so there is no picture size to read.
    #[error("AVCDecoderConfigurationRecord has no sequence parameter set")]
    NoSps,
    /// The first SPS could not be parsed (h264-reader's description).
    #[error("sequence parameter set: {0}")]
    Sps(String),
    /// The cropped picture does not fit the 16-bit width/height of an fMP4 sample entry.
    #[error("picture size {width}x{height} exceeds 65535")]
    PictureTooLarge {
        /// Cropped width from the SPS.
        width: u32,
        /// Cropped height from the SPS.
        height: u32,
    },
    /// A NAL unit length prefix size other than 1 to 4 bytes was asked for.
    #[error("NAL unit length size {0} (must be 1 to 4)")]
    NalLengthSize(u8),
    /// audioObjectType other than 2 (AAC-LC): tally packages 1024-sample AAC-LC frames only.
    #[error("AudioSpecificConfig audioObjectType {0} (only 2, AAC-LC, is supported)")]
    UnsupportedAudioObjectType(u8),
    /// samplingFrequencyIndex 13 or 14, which are reserved.
    #[error("AudioSpecificConfig samplingFrequencyIndex {0} is reserved")]
    BadSamplingFrequencyIndex(u8),
    /// An explicit samplingFrequency of 0 Hz, unusable as a track timescale.
    #[error("AudioSpecificConfig samplingFrequency {0} Hz")]
    BadSamplingFrequency(u32),
    /// channelConfiguration 0 (layout in a program_config_element) or a value past 7.
    #[error("AudioSpecificConfig channelConfiguration {0} is not supported")]
    UnsupportedChannelConfiguration(u8),
    /// GASpecificConfig frameLengthFlag 1 means 960-sample frames; tally assumes 1024.
    #[error("GASpecificConfig frameLengthFlag 1 (960-sample frames) is not supported")]
    UnsupportedFrameLength,
}

/// Helpers shared by the parser tests in `codec` and `flv`.
#[cfg(test)]
pub(crate) mod test_support {
    /// Decodes a hex literal; whitespace is ignored so captures can be laid out readably.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// Fixed-seed xorshift64 bytes for fuzz-style tests: reproducible, no extra crate.
    pub(crate) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.max(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }
}
