//! FLV SCRIPTDATA bodies (FLV spec v10.1 E.4.4): AMF0 values, of which tally reads only
//! `onMetaData`, and only as advice (the sequence headers are authoritative).

use std::collections::HashMap;
use std::io::Cursor;

use rml_amf0::Amf0Value;

use super::FlvError;

/// Handler name of the metadata call.
const ON_METADATA: &str = "onMetaData";
/// RTMP publishers wrap script data in this call so the server stores it for late joiners.
const SET_DATA_FRAME: &str = "@setDataFrame";
/// Nesting allowed in script data; real metadata nests at most 2 deep, and rml_amf0 recurses
/// once per level, so this bounds its stack use on hostile input.
const MAX_AMF0_DEPTH: usize = 16;

/// The `onMetaData` properties tally reads; every one is optional because encoders differ.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// `width` in pixels, as the encoder announces it; shown before the first picture arrives.
    pub width: Option<f64>,
    /// `height` in pixels, as the encoder announces it.
    pub height: Option<f64>,
    /// `framerate` (or `videoframerate`), frames per second; informs the segment target.
    pub framerate: Option<f64>,
    /// `videocodecid`: an FLV CodecID (7 = AVC), or an Enhanced-RTMP FourCC as a big-endian
    /// number (`hvc1` = 0x68766331); strings like `"avc1"` are mapped the same way.
    pub video_codec_id: Option<f64>,
    /// `audiocodecid`: an FLV SoundFormat (10 = AAC) or FourCC number, mapped like the video id.
    pub audio_codec_id: Option<f64>,
    /// `videodatarate` in kbit/s, for the operator's view of the feed.
    pub video_data_rate: Option<f64>,
    /// `audiodatarate` in kbit/s.
    pub audio_data_rate: Option<f64>,
    /// `audiosamplerate` in Hz.
    pub audio_sample_rate: Option<f64>,
    /// `encoder` string, to tell operators which software is publishing.
    pub encoder: Option<String>,
}

/// One script data tag, classified by its handler name.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptTag {
    /// `onMetaData`, bare (FLV files) or wrapped in `@setDataFrame` (RTMP publishers).
    Metadata(Metadata),
    /// Any other handler (e.g. `onCuePoint`), named so callers can log and ignore it.
    Other(String),
}

/// Parses a script data body: `["onMetaData", obj]` or `["@setDataFrame", "onMetaData", obj]`,
/// where `obj` is an AMF0 object or ECMA array.
pub fn parse_script(body: &[u8]) -> Result<ScriptTag, FlvError> {
    check_amf0(body)?;
    let values = rml_amf0::deserialize(&mut Cursor::new(body))
        .map_err(|e| FlvError::Invalid(format!("AMF0: {e}")))?;
    let mut values = values.into_iter();
    let mut name = match values.next() {
        Some(Amf0Value::Utf8String(name)) => name,
        _ => {
            return Err(FlvError::Invalid(
                "script data does not start with a handler name".into(),
            ))
        }
    };
    if name == SET_DATA_FRAME {
        name = match values.next() {
            Some(Amf0Value::Utf8String(name)) => name,
            _ => {
                return Err(FlvError::Invalid(
                    "@setDataFrame without a handler name".into(),
                ))
            }
        };
    }
    if name != ON_METADATA {
        return Ok(ScriptTag::Other(name));
    }
    match values.next() {
        Some(Amf0Value::Object(properties)) => Ok(ScriptTag::Metadata(metadata(&properties))),
        _ => Err(FlvError::Invalid(
            "onMetaData without an object or ECMA array".into(),
        )),
    }
}

fn metadata(properties: &HashMap<String, Amf0Value>) -> Metadata {
    let number = |key: &str| properties.get(key).and_then(as_number);
    Metadata {
        width: number("width"),
        height: number("height"),
        framerate: number("framerate").or_else(|| number("videoframerate")),
        video_codec_id: properties.get("videocodecid").and_then(as_codec_id),
        audio_codec_id: properties.get("audiocodecid").and_then(as_codec_id),
        video_data_rate: number("videodatarate"),
        audio_data_rate: number("audiodatarate"),
        audio_sample_rate: number("audiosamplerate"),
        encoder: match properties.get("encoder") {
            Some(Amf0Value::Utf8String(s)) => Some(s.clone()),
            _ => None,
        },
    }
}

/// A number, or a string holding one (some encoders send every property as a string).
fn as_number(value: &Amf0Value) -> Option<f64> {
    match value {
        Amf0Value::Number(n) => Some(*n),
        Amf0Value::Utf8String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A codec id: a number as is; the FMLE-era strings as their FLV ids; any other four-character
/// string as its FourCC number, which is how Enhanced RTMP writes `videocodecid`.
fn as_codec_id(value: &Amf0Value) -> Option<f64> {
    match value {
        Amf0Value::Utf8String(s) => match s.as_str() {
            "avc1" => Some(7.0),
            "mp4a" => Some(10.0),
            ".mp3" | "mp3" => Some(2.0),
            s => match <[u8; 4]>::try_from(s.as_bytes()) {
                Ok(fourcc) => Some(f64::from(u32::from_be_bytes(fourcc))),
                Err(_) => as_number(value),
            },
        },
        other => as_number(other),
    }
}

/// Walks the AMF0 values checking every length before rml_amf0 sees them: rml_amf0 zero-fills a
/// truncated string instead of failing, and recurses without limit on nested objects.
fn check_amf0(data: &[u8]) -> Result<(), FlvError> {
    let mut pos = 0;
    while let Some(&marker) = data.get(pos) {
        if marker == marker::OBJECT_END {
            // rml_amf0 stops reading here; so do we.
            break;
        }
        pos = check_value(data, pos, 0)?;
    }
    Ok(())
}

/// AMF0 type markers (AMF0 spec 2.1) that rml_amf0 understands.
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0a;
}

/// Checks the value at `pos`, returning the position after it.
fn check_value(data: &[u8], pos: usize, depth: usize) -> Result<usize, FlvError> {
    let marker = *data
        .get(pos)
        .ok_or(truncated("AMF0 marker", pos + 1, data))?;
    let pos = pos + 1;
    match marker {
        marker::NUMBER => need(data, pos, 8, "AMF0 number"),
        marker::BOOLEAN => need(data, pos, 1, "AMF0 boolean"),
        marker::STRING => {
            let len = read_u16(data, pos, "AMF0 string length")?;
            need(data, pos + 2, len, "AMF0 string")
        }
        marker::NULL | marker::UNDEFINED => Ok(pos),
        marker::OBJECT => check_properties(data, pos, depth + 1),
        marker::ECMA_ARRAY => {
            // The count is advisory (rml_amf0 ignores it too): the end marker is what counts.
            let pos = need(data, pos, 4, "AMF0 ECMA array count")?;
            check_properties(data, pos, depth + 1)
        }
        marker::STRICT_ARRAY => {
            check_depth(depth + 1)?;
            let mut pos = need(data, pos, 4, "AMF0 strict array count")?;
            let count = data
                .get(pos - 4..pos)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            // Each element takes at least one byte, so a huge count cannot loop for long.
            for _ in 0..count {
                if data.get(pos) == Some(&marker::OBJECT_END) {
                    // rml_amf0 ends the array early at an end marker, consuming it.
                    return Ok(pos + 1);
                }
                pos = check_value(data, pos, depth + 1)?;
            }
            Ok(pos)
        }
        other => Err(FlvError::Invalid(format!("AMF0 marker 0x{other:02x}"))),
    }
}

/// Checks object properties from `pos` through the empty-name end marker.
fn check_properties(data: &[u8], mut pos: usize, depth: usize) -> Result<usize, FlvError> {
    check_depth(depth)?;
    loop {
        let len = read_u16(data, pos, "AMF0 property name length")?;
        pos += 2;
        if len == 0 {
            return match data.get(pos) {
                Some(&marker::OBJECT_END) => Ok(pos + 1),
                Some(_) => Err(FlvError::Invalid("AMF0 empty property name".into())),
                None => Err(truncated("AMF0 object end marker", pos + 1, data)),
            };
        }
        pos = need(data, pos, len, "AMF0 property name")?;
        pos = check_value(data, pos, depth)?;
    }
}

fn check_depth(depth: usize) -> Result<(), FlvError> {
    if depth > MAX_AMF0_DEPTH {
        return Err(FlvError::Invalid(format!(
            "AMF0 nesting deeper than {MAX_AMF0_DEPTH}"
        )));
    }
    Ok(())
}

/// Returns `pos + len` if that many bytes are present.
fn need(data: &[u8], pos: usize, len: usize, what: &'static str) -> Result<usize, FlvError> {
    let end = pos + len;
    if end > data.len() {
        return Err(truncated(what, end, data));
    }
    Ok(end)
}

fn read_u16(data: &[u8], pos: usize, what: &'static str) -> Result<usize, FlvError> {
    match data.get(pos..pos + 2) {
        Some(b) => Ok(usize::from(u16::from_be_bytes([b[0], b[1]]))),
        None => Err(truncated(what, pos + 2, data)),
    }
}

fn truncated(what: &'static str, expected: usize, data: &[u8]) -> FlvError {
    FlvError::Truncated {
        what,
        expected,
        actual: data.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::hex;

    /// fixtures/cam-a.flv: ffmpeg's onMetaData, an ECMA array with no `encoder` (bitexact).
    const CAM_A_METADATA: &str = "
        02000a6f6e4d65746144617461080000000c00086475726174696f6e004018449ba5e353f8000577696474
        68004074000000000000000668656967687400406e000000000000000d766964656f646174617261746500
        40724f800000000000096672616d657261746500403e000000000000000c766964656f636f646563696400
        401c000000000000000d617564696f646174617261746500404f400000000000000f617564696f73616d70
        6c65726174650040e7700000000000000f617564696f73616d706c6573697a650040300000000000000006
        73746572656f0101000c617564696f636f6465636964004024000000000000000866696c6573697a650041
        12618c00000000000009";

    /// An FMLE-style RTMP publish: `@setDataFrame` wrapping onMetaData with codec ids as
    /// strings and an `encoder`.
    const FMLE_SET_DATA_FRAME: &str = "
        02000d40736574446174614672616d6502000a6f6e4d65746144617461080000
        000c00086475726174696f6e000000000000000000000866696c6553697a6500
        0000000000000000000577696474680040940000000000000006686569676874
        004086800000000000000c766964656f636f646563696402000461766331000d
        766964656f64617461726174650040a388000000000000096672616d65726174
        6500403df851eb851eb8000c617564696f636f64656369640200046d70346100
        0d617564696f6461746172617465004064000000000000000f617564696f7361
        6d706c65726174650040e7700000000000000d617564696f6368616e6e656c73
        0040000000000000000007656e636f64657202001f464d4c452f332e30202863
        6f6d70617469626c653b20464d53632f312e3029000009";

    #[test]
    fn ffmpeg_file_metadata() {
        let ScriptTag::Metadata(m) = parse_script(&hex(CAM_A_METADATA)).unwrap() else {
            panic!("not metadata")
        };
        assert_eq!(
            m,
            Metadata {
                width: Some(320.0),
                height: Some(240.0),
                framerate: Some(30.0),
                video_codec_id: Some(7.0),
                audio_codec_id: Some(10.0),
                video_data_rate: Some(300_000.0 / 1024.0),
                audio_data_rate: Some(62.5),
                audio_sample_rate: Some(48_000.0),
                encoder: None,
            }
        );
    }

    #[test]
    fn set_data_frame_as_rtmp_publishers_send_it() {
        let ScriptTag::Metadata(m) = parse_script(&hex(FMLE_SET_DATA_FRAME)).unwrap() else {
            panic!("not metadata")
        };
        assert_eq!((m.width, m.height), (Some(1280.0), Some(720.0)));
        assert_eq!(m.video_codec_id, Some(7.0));
        assert_eq!(m.audio_codec_id, Some(10.0));
        assert_eq!(m.framerate, Some(29.97));
        assert_eq!(
            m.encoder.as_deref(),
            Some("FMLE/3.0 (compatible; FMSc/1.0)")
        );
        // ffmpeg's RTMP muxer prefixes the file body with the @setDataFrame string.
        let mut wrapped = hex("02000d40736574446174614672616d65");
        wrapped.extend(hex(CAM_A_METADATA));
        assert_eq!(
            parse_script(&wrapped).unwrap(),
            parse_script(&hex(CAM_A_METADATA)).unwrap()
        );
    }

    #[test]
    fn codec_id_strings_and_fourcc_numbers() {
        let id = |v: Amf0Value| as_codec_id(&v);
        assert_eq!(
            id(Amf0Value::Utf8String("hvc1".into())),
            Some(1_752_589_105.0)
        );
        assert_eq!(
            id(Amf0Value::Number(1_752_589_105.0)),
            Some(1_752_589_105.0)
        );
        assert_eq!(id(Amf0Value::Utf8String(".mp3".into())), Some(2.0));
        assert_eq!(id(Amf0Value::Utf8String("7".into())), Some(7.0));
        assert_eq!(id(Amf0Value::Boolean(true)), None);
    }

    #[test]
    fn object_form_and_other_handlers() {
        // ["onMetaData", {width: 640}] with an AMF0 object rather than an ECMA array.
        let body = hex("02000a6f6e4d65746144617461 03 0005776964746800 4084000000000000 000009");
        let ScriptTag::Metadata(m) = parse_script(&body).unwrap() else {
            panic!("not metadata")
        };
        assert_eq!(m.width, Some(640.0));
        // ["onCuePoint", {}]
        let body = hex("02000a6f6e437565506f696e74 03 000009");
        assert_eq!(
            parse_script(&body),
            Ok(ScriptTag::Other("onCuePoint".into()))
        );
        // ["onMetaData", null]
        assert!(matches!(
            parse_script(&hex("02000a6f6e4d65746144617461 05")),
            Err(FlvError::Invalid(_))
        ));
        // A number where the handler name should be.
        assert!(matches!(
            parse_script(&hex("00 4084000000000000")),
            Err(FlvError::Invalid(_))
        ));
        assert!(matches!(parse_script(&[]), Err(FlvError::Invalid(_))));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let body = hex(CAM_A_METADATA);
        for len in 1..body.len() {
            assert!(
                parse_script(&body[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
        assert_eq!(
            parse_script(&body[..5]),
            Err(FlvError::Truncated {
                what: "AMF0 string",
                expected: 13,
                actual: 5
            })
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // ["x", {a: {a: {a: ...}}}] a thousand levels deep.
        let mut body = hex("02000178");
        for _ in 0..1000 {
            body.extend(hex("03 000161"));
        }
        body.extend(hex("05"));
        assert_eq!(
            parse_script(&body),
            Err(FlvError::Invalid("AMF0 nesting deeper than 16".into()))
        );
        let mut arrays = hex("02000178");
        for _ in 0..1000 {
            arrays.extend(hex("0a 00000001"));
        }
        assert!(matches!(parse_script(&arrays), Err(FlvError::Invalid(_))));
    }
}
