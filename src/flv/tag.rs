//! FLV tag records (FLV spec v10.1 E.4.1): `[11-byte header][body][4-byte PreviousTagSize]`,
//! either after an FLV file header or as the whole body of an RTMP Aggregate message.

use bytes::Bytes;

use super::FlvError;

/// TagType, Filter and reserved bits (1), DataSize (3), Timestamp (3), TimestampExtended (1),
/// StreamID (3).
const TAG_HEADER_LEN: usize = 11;
/// The PreviousTagSize that follows every tag body.
const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// Signature, Version, TypeFlags, DataOffset.
const FILE_HEADER_LEN: usize = 9;
/// The Filter bit: the body is encrypted (FLV 10 DRM), which tally cannot read.
const FILTER: u8 = 0x20;

/// Which kind of payload a tag carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// TagType 8.
    Audio,
    /// TagType 9.
    Video,
    /// TagType 18: AMF0 script data such as `onMetaData`.
    Script,
}

impl TagKind {
    /// The kind for a TagType, or `None` for types tally skips.
    fn from_tag_type(tag_type: u8) -> Option<Self> {
        match tag_type {
            8 => Some(TagKind::Audio),
            9 => Some(TagKind::Video),
            18 => Some(TagKind::Script),
            _ => None,
        }
    }
}

/// One FLV tag, its body borrowed from the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    /// Which parser the body is for.
    pub kind: TagKind,
    /// Milliseconds: the 24-bit Timestamp with TimestampExtended as its top 8 bits.
    pub timestamp_ms: u32,
    /// The tag body, a slice of the input (no copy).
    pub body: Bytes,
}

/// Iterator over tag records; see [`tags`].
#[derive(Debug, Clone)]
pub struct Tags {
    /// Records not yet read, a cheap slice of the caller's buffer.
    rest: Bytes,
    /// Set after a truncation error, so the iterator ends instead of reporting it forever.
    done: bool,
}

/// Iterates tag records with no file header: exactly the body of an RTMP Aggregate message
/// (type 22), and what follows the header in a file.
///
/// Unknown tag types are skipped. A tag with the Filter bit set yields an `Unsupported` error and
/// iteration continues after it. A truncated trailing record yields one error and ends. The final
/// PreviousTagSize may be absent (some servers omit it from aggregates); PreviousTagSize values
/// are not checked, since muxers disagree on whether they include the header.
pub fn tags(data: Bytes) -> Tags {
    Tags {
        rest: data,
        done: false,
    }
}

/// Checks an FLV file header (signature, version 1, DataOffset), skips PreviousTagSize0 and
/// iterates the tags that follow. The audio/video TypeFlags are ignored: they are often wrong.
pub fn file_tags(file: Bytes) -> Result<Tags, FlvError> {
    let Some(header) = file.get(..FILE_HEADER_LEN) else {
        return Err(FlvError::Truncated {
            what: "FLV header",
            expected: FILE_HEADER_LEN,
            actual: file.len(),
        });
    };
    if &header[..3] != b"FLV" {
        return Err(FlvError::Invalid(format!(
            "FLV signature {:?}",
            String::from_utf8_lossy(&header[..3])
        )));
    }
    if header[3] != 1 {
        return Err(FlvError::Invalid(format!("FLV version {}", header[3])));
    }
    let data_offset = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
    if data_offset < FILE_HEADER_LEN {
        return Err(FlvError::Invalid(format!(
            "FLV DataOffset {data_offset} is inside the 9-byte header"
        )));
    }
    let start = data_offset.saturating_add(PREVIOUS_TAG_SIZE_LEN);
    if file.len() < start {
        return Err(FlvError::Truncated {
            what: "FLV header and PreviousTagSize0",
            expected: start,
            actual: file.len(),
        });
    }
    Ok(tags(file.slice(start..)))
}

impl Tags {
    fn fail(&mut self, what: &'static str, expected: usize) -> Option<Result<Tag, FlvError>> {
        self.done = true;
        Some(Err(FlvError::Truncated {
            what,
            expected,
            actual: self.rest.len(),
        }))
    }
}

impl Iterator for Tags {
    type Item = Result<Tag, FlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done || self.rest.is_empty() {
                return None;
            }
            let Some(header) = self.rest.get(..TAG_HEADER_LEN) else {
                return self.fail("FLV tag header", TAG_HEADER_LEN);
            };
            let flags = header[0];
            let data_size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
            let timestamp_ms = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
            let body_end = TAG_HEADER_LEN + data_size;
            let record_end = match self.rest.len() {
                len if len < body_end => return self.fail("FLV tag body", body_end),
                len if len == body_end => body_end,
                len if len < body_end + PREVIOUS_TAG_SIZE_LEN => {
                    return self.fail("PreviousTagSize", body_end + PREVIOUS_TAG_SIZE_LEN)
                }
                _ => body_end + PREVIOUS_TAG_SIZE_LEN,
            };
            let record = self.rest.split_to(record_end);
            if flags & FILTER != 0 {
                return Some(Err(FlvError::Unsupported(
                    "encrypted FLV tag (Filter bit set)".into(),
                )));
            }
            let Some(kind) = TagKind::from_tag_type(flags & 0x1f) else {
                continue;
            };
            return Some(Ok(Tag {
                kind,
                timestamp_ms,
                body: record.slice(TAG_HEADER_LEN..body_end),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::hex;

    /// fixtures/cam-a.flv: the AAC sequence header tag, then the first raw AAC frame tag (at
    /// 46 ms) cut to a 4-byte body, as records with their PreviousTagSize.
    fn two_records() -> Vec<u8> {
        hex("08 000007 000000 00 000000 af00119056e500 00000012
             08 000004 00002e 00 000000 af012128 0000000f")
    }

    #[test]
    fn aggregate_body_without_file_header() {
        let tags: Vec<_> = tags(Bytes::from(two_records())).collect();
        assert_eq!(
            tags,
            vec![
                Ok(Tag {
                    kind: TagKind::Audio,
                    timestamp_ms: 0,
                    body: Bytes::from(hex("af00119056e500"))
                }),
                Ok(Tag {
                    kind: TagKind::Audio,
                    timestamp_ms: 46,
                    body: Bytes::from(hex("af012128"))
                }),
            ]
        );
    }

    #[test]
    fn extended_timestamp_is_the_top_byte() {
        let data = hex("09 000001 123456 78 000000 17 0000000c");
        let tag = tags(Bytes::from(data)).next().unwrap().unwrap();
        assert_eq!(tag.timestamp_ms, 0x7812_3456);
        assert_eq!(tag.kind, TagKind::Video);
    }

    #[test]
    fn unknown_types_are_skipped_and_filtered_tags_refused() {
        let mut data = hex("0f 000002 000000 00 000000 abcd 0000000d");
        data.extend(hex("28 000001 000000 00 000000 af 0000000c"));
        data.extend(two_records());
        let tags: Vec<_> = tags(Bytes::from(data)).collect();
        assert_eq!(tags.len(), 3);
        assert_eq!(
            tags[0],
            Err(FlvError::Unsupported(
                "encrypted FLV tag (Filter bit set)".into()
            ))
        );
        assert!(tags[1..].iter().all(Result::is_ok));
    }

    #[test]
    fn final_previous_tag_size_may_be_absent() {
        let mut data = two_records();
        data.truncate(data.len() - 4);
        assert_eq!(tags(Bytes::from(data)).filter(Result::is_ok).count(), 2);
    }

    #[test]
    fn truncated_trailing_record_is_one_error_then_end() {
        let data = two_records();
        let first_record = 11 + 7 + 4;
        for len in first_record + 1..data.len() - 4 {
            let items: Vec<_> = tags(Bytes::copy_from_slice(&data[..len])).collect();
            assert_eq!(items.len(), 2, "prefix {len}");
            assert!(items[0].is_ok());
            assert!(
                matches!(items[1], Err(FlvError::Truncated { .. })),
                "prefix {len}"
            );
        }
        let items: Vec<_> = tags(Bytes::copy_from_slice(&data[..first_record + 5])).collect();
        assert_eq!(
            items[1],
            Err(FlvError::Truncated {
                what: "FLV tag header",
                expected: 11,
                actual: 5
            })
        );
        let items: Vec<_> = tags(Bytes::copy_from_slice(&data[..first_record + 13])).collect();
        assert_eq!(
            items[1],
            Err(FlvError::Truncated {
                what: "FLV tag body",
                expected: 15,
                actual: 13
            })
        );
        let items: Vec<_> = tags(Bytes::copy_from_slice(&data[..data.len() - 2])).collect();
        assert_eq!(
            items[1],
            Err(FlvError::Truncated {
                what: "PreviousTagSize",
                expected: 19,
                actual: 17
            })
        );
        assert_eq!(tags(Bytes::new()).count(), 0);
    }

    #[test]
    fn file_header_checks() {
        // fixtures/cam-a.flv: "FLV", version 1, audio+video, DataOffset 9, PreviousTagSize0.
        let header = hex("464c5601 05 00000009 00000000");
        assert_eq!(file_tags(Bytes::from(header.clone())).unwrap().count(), 0);
        for len in 0..header.len() {
            assert!(matches!(
                file_tags(Bytes::copy_from_slice(&header[..len])),
                Err(FlvError::Truncated { .. })
            ));
        }
        let mut bad = header.clone();
        bad[0] = b'X';
        assert_eq!(
            file_tags(Bytes::from(bad)).err(),
            Some(FlvError::Invalid("FLV signature \"XLV\"".into()))
        );
        let mut bad = header.clone();
        bad[3] = 2;
        assert_eq!(
            file_tags(Bytes::from(bad)).err(),
            Some(FlvError::Invalid("FLV version 2".into()))
        );
        let mut bad = header.clone();
        bad[8] = 5;
        assert!(matches!(
            file_tags(Bytes::from(bad)),
            Err(FlvError::Invalid(_))
        ));
        // A larger DataOffset skips the extra header bytes.
        let mut long = hex("464c5601 05 0000000b abcd 00000000");
        long.extend(two_records());
        assert_eq!(file_tags(Bytes::from(long)).unwrap().count(), 2);
    }
}
