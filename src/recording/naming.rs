//! Recording file names: `<source>-<UTC start>-<NNN>.mp4` under `record.dir/<event>/`, e.g.
//! `program-20261121T183000Z-001.mp4` or `cam1-20261121T183000Z-002.mp4`. Pure.
//!
//! `<source>` is `program` or the camera id, `<UTC start>` the wall-clock second the file was
//! opened (ISO 8601 basic format, so names sort by time), and `NNN` counts the files of one
//! recording of that source from 001 (a split or a new codec configuration opens the next). A
//! name is only ever parsed back from this exact form, so the download route can accept nothing
//! but names this module writes: no separators, no `..`, no other extension.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Every recording file ends so.
pub const EXTENSION: &str = ".mp4";
/// The start time's format: basic ISO 8601, UTC, to the second.
const STAMP: &str = "%Y%m%dT%H%M%SZ";
/// The source id of the program recording.
pub const PROGRAM: &str = crate::hls::PROGRAM;

/// What a recording file's name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    /// `program` or a camera id.
    pub source: String,
    /// When the file was opened, to the second.
    pub start: DateTime<Utc>,
    /// Position among the files of one recording of the source, from 1.
    pub index: u32,
}

/// Whether `id` is an event or camera id as the configuration allows them (`[A-Za-z0-9_-]{1,64}`),
/// and so safe as one path component.
pub fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The file name for a source's `index`th file of a recording, opened at `start`.
pub fn file_name(source: &str, start: DateTime<Utc>, index: u32) -> String {
    format!("{source}-{}-{index:03}{EXTENSION}", start.format(STAMP))
}

/// Reads a name written by [`file_name`]; anything else (another form, a path) is `None`.
pub fn parse(name: &str) -> Option<FileName> {
    let stem = name.strip_suffix(EXTENSION)?;
    let (rest, index) = stem.rsplit_once('-')?;
    let (source, stamp) = rest.rsplit_once('-')?;
    if !is_id(source) || index.len() < 3 || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let start = NaiveDateTime::parse_from_str(stamp, STAMP).ok()?.and_utc();
    let index = index.parse().ok()?;
    // One spelling per file: `001` and `0001` are not the same name.
    (file_name(source, start, index) == name).then(|| FileName {
        source: source.to_string(),
        start,
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_round_trip() {
        let start = Utc.with_ymd_and_hms(2026, 11, 21, 18, 30, 0).unwrap();
        let name = file_name("program", start, 1);
        assert_eq!(name, "program-20261121T183000Z-001.mp4");
        let parsed = parse(&name).unwrap();
        assert_eq!(
            parsed,
            FileName {
                source: "program".into(),
                start,
                index: 1
            }
        );
        let dashed = file_name("cam-2_b", start, 1234);
        assert_eq!(dashed, "cam-2_b-20261121T183000Z-1234.mp4");
        assert_eq!(parse(&dashed).unwrap().source, "cam-2_b");
        assert_eq!(parse(&dashed).unwrap().index, 1234);
    }

    #[test]
    fn only_our_names_parse() {
        for bad in [
            "",
            "program.mp4",
            "program-20261121T183000Z-001.m4s",
            "program-20261121T183000Z-01.mp4",
            "program-20261121T183000Z-0001.mp4",
            "program-20261321T183000Z-001.mp4",
            "../program-20261121T183000Z-001.mp4",
            "a/program-20261121T183000Z-001.mp4",
            "..-20261121T183000Z-001.mp4",
            "program-20261121T183000Z-001.mp4/",
            "-20261121T183000Z-001.mp4",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_are_single_safe_components() {
        assert!(is_id("demo"));
        assert!(is_id("cam_1-b"));
        assert!(!is_id(""));
        assert!(!is_id(".."));
        assert!(!is_id("a/b"));
        assert!(!is_id(&"x".repeat(65)));
    }
}
