//! H.264 in the AVCC framing used by FLV and MP4: the AVCDecoderConfigurationRecord
//! (ISO/IEC 14496-15 5.3.3.1) and length-prefixed NAL units.

use bytes::Bytes;
use h264_reader::avcc::{AvcDecoderConfigurationRecord, AvccError};
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};

use super::CodecError;
use crate::media::VideoConfig;

/// Offset of the first `sequenceParameterSetLength` in the record: after configurationVersion,
/// AVCProfileIndication, profile_compatibility, AVCLevelIndication, lengthSizeMinusOne and
/// numOfSequenceParameterSets.
const FIRST_SPS_LENGTH_OFFSET: usize = 6;

/// Validates an AVCDecoderConfigurationRecord and reads what packaging needs from it.
///
/// `record` is kept verbatim in [`VideoConfig::avcc`]; profile, compatibility and level come
/// from the record (they are what the `avcC` box and the codec string must agree with), the
/// picture size from the first SPS after frame cropping.
pub fn parse_avcc(record: Bytes) -> Result<VideoConfig, CodecError> {
    let avcc = AvcDecoderConfigurationRecord::try_from(&record[..]).map_err(|e| match e {
        AvccError::NotEnoughData { expected, actual } => CodecError::Truncated {
            field: "AVCDecoderConfigurationRecord",
            expected,
            actual,
        },
        AvccError::UnsupportedConfigurationVersion(v) => {
            CodecError::UnsupportedConfigurationVersion(v)
        }
        other => CodecError::Sps(format!("{other:?}")),
    })?;
    let length_size_minus_one = avcc.length_size_minus_one();
    if length_size_minus_one == 2 {
        return Err(CodecError::LengthSizeMinusOne(length_size_minus_one));
    }
    if avcc.num_of_sequence_parameter_sets() == 0 {
        return Err(CodecError::NoSps);
    }
    // h264-reader 0.8 panics on an empty SPS (`RefNal::new` needs the header byte), and its
    // iterator would read the next field as the NAL header; the record is validated, so the
    // two length bytes are present.
    let first_sps_len = record
        .get(FIRST_SPS_LENGTH_OFFSET..FIRST_SPS_LENGTH_OFFSET + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    if first_sps_len == 0 {
        return Err(CodecError::Sps("sequenceParameterSetLength is 0".into()));
    }
    let sps_nal = match avcc.sequence_parameter_sets().next() {
        Some(Ok(nal)) => nal,
        Some(Err(e)) => return Err(CodecError::Sps(format!("{e:?}"))),
        None => return Err(CodecError::NoSps),
    };
    let sps = SeqParameterSet::from_bits(RefNal::new(sps_nal, &[], true).rbsp_bits())
        .map_err(|e| CodecError::Sps(format!("{e:?}")))?;
    let (width, height) = sps
        .pixel_dimensions()
        .map_err(|e| CodecError::Sps(format!("{e:?}")))?;
    let too_large = || CodecError::PictureTooLarge { width, height };
    Ok(VideoConfig {
        width: u16::try_from(width).map_err(|_| too_large())?,
        height: u16::try_from(height).map_err(|_| too_large())?,
        profile: u8::from(avcc.avc_profile_indication()),
        compatibility: u8::from(avcc.profile_compatibility()),
        level: avcc.avc_level_indication().level_idc(),
        nal_length_size: length_size_minus_one + 1,
        avcc: record,
    })
}

/// A keyframe with the configuration's SPS and PPS prepended in-band, each with its length
/// prefix. At a cut to another configuration, decoders that do not re-read the init segment
/// (ffmpeg's HLS reader) get the new parameter sets from the stream itself. One copy per cut,
/// never per frame. Returns the payload unchanged if it already starts with an SPS.
pub fn with_parameter_sets(config: &VideoConfig, payload: &Bytes) -> Bytes {
    let starts_with_sps = nal_units(payload, config.nal_length_size)
        .next()
        .and_then(Result::ok)
        .and_then(|nal| nal.first())
        .is_some_and(|header| header & 0x1f == 7);
    let Ok(record) = AvcDecoderConfigurationRecord::try_from(&config.avcc[..]) else {
        return payload.clone(); // validated when parsed; nothing to add if it somehow is not
    };
    if starts_with_sps {
        return payload.clone();
    }
    let sets: Vec<&[u8]> = record
        .sequence_parameter_sets()
        .chain(record.picture_parameter_sets())
        .filter_map(Result::ok)
        .collect();
    let size = usize::from(config.nal_length_size);
    let mut out =
        Vec::with_capacity(payload.len() + sets.iter().map(|s| s.len() + size).sum::<usize>());
    for set in sets {
        out.extend_from_slice(&(set.len() as u32).to_be_bytes()[4 - size..]);
        out.extend_from_slice(set);
    }
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Splits an AVCC payload (each NAL unit preceded by a `nal_length_size`-byte big-endian length)
/// into NAL units, borrowing from `data`.
///
/// A bad length prefix yields one error and ends the iteration: after it, unit boundaries are
/// unknowable. Zero-length units are yielded as empty slices, for the caller to skip.
pub fn nal_units(
    data: &[u8],
    nal_length_size: u8,
) -> impl Iterator<Item = Result<&[u8], CodecError>> {
    NalUnits {
        rest: data,
        nal_length_size,
        done: false,
    }
}

/// Iterator state for [`nal_units`].
struct NalUnits<'a> {
    /// The payload not yet split.
    rest: &'a [u8],
    /// Bytes in each length prefix, from the record's lengthSizeMinusOne.
    nal_length_size: u8,
    /// Set after an error so a broken payload reports once instead of forever.
    done: bool,
}

impl<'a> NalUnits<'a> {
    fn fail(&mut self, e: CodecError) -> Option<Result<&'a [u8], CodecError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8], CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        if !(1..=4).contains(&self.nal_length_size) {
            return self.fail(CodecError::NalLengthSize(self.nal_length_size));
        }
        let size = usize::from(self.nal_length_size);
        let Some((prefix, rest)) = self.rest.split_at_checked(size) else {
            return self.fail(CodecError::Truncated {
                field: "NALUnitLength",
                expected: size,
                actual: self.rest.len(),
            });
        };
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some((unit, rest)) = rest.split_at_checked(len) else {
            return self.fail(CodecError::Truncated {
                field: "NALUnit",
                expected: len,
                actual: rest.len(),
            });
        };
        self.rest = rest;
        Some(Ok(unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::hex;

    /// fixtures/cam-a.flv, first video tag after the 5-byte AVC header: x264 High@1.3, 320x240
    /// (15x20 macroblocks, no cropping).
    const CAM_A_AVCC: &str = "0164000dffe10019 6764000dacd94141fb0110000003001000000303c0f1429960
                              01000568ebecb22c fdf8f800";
    /// fixtures/cam-b.flv: High@3.0, 640x360 coded as 640x368 with 8 rows cropped at the bottom.
    const CAM_B_AVCC: &str = "0164001effe1001a 6764001eacd100a02ff97011000003000100000300320f162d12
                              01000568ebecb22c fdf8f800";

    #[test]
    fn cam_a_record() {
        let record = Bytes::from(hex(CAM_A_AVCC));
        let config = parse_avcc(record.clone()).unwrap();
        assert_eq!(
            config,
            VideoConfig {
                avcc: record,
                width: 320,
                height: 240,
                profile: 0x64,
                compatibility: 0,
                level: 0x0d,
                nal_length_size: 4,
            }
        );
        assert_eq!(config.codec_string(), "avc1.64000d");
    }

    #[test]
    fn cam_b_record_is_cropped() {
        let config = parse_avcc(Bytes::from(hex(CAM_B_AVCC))).unwrap();
        assert_eq!((config.width, config.height), (640, 360));
        assert_eq!(config.level, 30);
    }

    #[test]
    fn every_truncation_of_a_record_is_an_error() {
        let record = hex(CAM_A_AVCC);
        // The last 4 bytes are the optional High-profile extension, which may be absent.
        let pps_end = record.len() - 4;
        for len in 0..pps_end {
            let result = parse_avcc(Bytes::copy_from_slice(&record[..len]));
            assert!(result.is_err(), "prefix of {len} bytes parsed");
        }
        assert_eq!(
            parse_avcc(Bytes::copy_from_slice(&record[..3])),
            Err(CodecError::Truncated {
                field: "AVCDecoderConfigurationRecord",
                expected: 6,
                actual: 3
            })
        );
        assert!(parse_avcc(Bytes::copy_from_slice(&record[..pps_end])).is_ok());
    }

    #[test]
    fn record_field_errors() {
        let mut record = hex(CAM_A_AVCC);
        record[0] = 2;
        assert_eq!(
            parse_avcc(Bytes::from(record.clone())),
            Err(CodecError::UnsupportedConfigurationVersion(2))
        );
        record[0] = 1;
        record[4] = 0xfe; // lengthSizeMinusOne 2: a 3-byte prefix, not allowed
        assert_eq!(
            parse_avcc(Bytes::from(record.clone())),
            Err(CodecError::LengthSizeMinusOne(2))
        );
        // No SPS, no PPS.
        assert_eq!(
            parse_avcc(Bytes::from(hex("0164000dffe0 00"))),
            Err(CodecError::NoSps)
        );
        // One empty SPS whose "next byte" looks like an SPS header: h264-reader would panic.
        assert!(matches!(
            parse_avcc(Bytes::from(hex("0164000dffe1 0000 67 00"))),
            Err(CodecError::Truncated { .. }) | Err(CodecError::Sps(_))
        ));
        assert!(matches!(
            parse_avcc(Bytes::from(hex("0164000dffe1 0000 01 0001 68"))),
            Err(CodecError::Sps(_))
        ));
        // The SPS slot holds a PPS.
        assert!(matches!(
            parse_avcc(Bytes::from(hex("0164000dffe1 0005 68ebecb22c 00"))),
            Err(CodecError::Sps(_))
        ));
    }

    #[test]
    fn splits_length_prefixed_units() {
        let data = hex("00000002 0901  00000000  00000003 65b800");
        let units: Vec<_> = nal_units(&data, 4).collect();
        assert_eq!(
            units,
            vec![
                Ok(&[0x09, 0x01][..]),
                Ok(&[][..]),
                Ok(&[0x65, 0xb8, 0x00][..])
            ]
        );
        let data = hex("0002 0901 0001 67");
        let units: Vec<_> = nal_units(&data, 2).map(Result::unwrap).collect();
        assert_eq!(units, vec![&[0x09, 0x01][..], &[0x67][..]]);
        let data = hex("01 09 01 67");
        let units: Vec<_> = nal_units(&data, 1).map(Result::unwrap).collect();
        assert_eq!(units, vec![&[0x09][..], &[0x67][..]]);
    }

    #[test]
    fn bad_prefixes_report_once() {
        let data = hex("00000002 0901 000000");
        let units: Vec<_> = nal_units(&data, 4).collect();
        assert_eq!(
            units,
            vec![
                Ok(&[0x09, 0x01][..]),
                Err(CodecError::Truncated {
                    field: "NALUnitLength",
                    expected: 4,
                    actual: 3
                })
            ]
        );
        let data = hex("00000009 0901");
        let units: Vec<_> = nal_units(&data, 4).collect();
        assert_eq!(
            units,
            vec![Err(CodecError::Truncated {
                field: "NALUnit",
                expected: 9,
                actual: 2
            })]
        );
        let units: Vec<_> = nal_units(&data, 0).collect();
        assert_eq!(units, vec![Err(CodecError::NalLengthSize(0))]);
        assert_eq!(nal_units(&[], 0).count(), 0);
    }

    #[test]
    fn parameter_sets_are_prepended_once() {
        let config = parse_avcc(Bytes::from(hex(CAM_A_AVCC))).unwrap();
        // An IDR slice NAL unit (type 5) with a 4-byte length prefix.
        let payload = Bytes::from_static(&[0, 0, 0, 3, 0x65, 0x88, 0x84]);
        let with = with_parameter_sets(&config, &payload);
        let types: Vec<u8> = nal_units(&with, config.nal_length_size)
            .map(|n| n.unwrap()[0] & 0x1f)
            .collect();
        assert_eq!(types, vec![7, 8, 5], "SPS, PPS, then the frame");
        assert!(
            with.ends_with(&payload),
            "the frame itself follows unchanged"
        );
        assert_eq!(with_parameter_sets(&config, &with), with, "not added twice");
    }
}
