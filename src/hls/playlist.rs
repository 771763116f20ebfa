//! Live media playlist text. Pure: a view of the listed segments in, RFC 8216bis text out.

use chrono::{DateTime, Utc};
use m3u8_rs::{Map, MediaPlaylist, MediaSegment};

/// EXT-X-MAP outside I-frame playlists needs protocol version 6; 7 is what fMP4 HLS commonly
/// declares and every player we target accepts.
pub const VERSION: usize = 7;

/// One listed segment as the playlist needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub uri: String,
    /// Exact duration in seconds.
    pub duration: f64,
    pub discontinuity: bool,
    /// Starts with a keyframe; EXT-X-INDEPENDENT-SEGMENTS is written only when all listed do.
    pub independent: bool,
    /// URI of the init segment this segment needs.
    pub map_uri: String,
    pub program_date_time: DateTime<Utc>,
}

/// Everything the playlist text depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct View<'a> {
    /// Fixed for the life of the playlist; every EXTINF rounds to at most this.
    pub target_duration: u64,
    pub media_sequence: u64,
    /// Discontinuities that have left the window (RFC 8216bis 4.4.3.3).
    pub discontinuity_sequence: u64,
    pub entries: &'a [Entry],
    pub ended: bool,
}

pub fn render(view: &View<'_>) -> String {
    let mut previous_map: Option<&str> = None;
    let segments = view
        .entries
        .iter()
        .map(|entry| {
            // EXT-X-MAP before the first listed segment and wherever the init changes.
            let map = (previous_map != Some(entry.map_uri.as_str())).then(|| Map {
                uri: entry.map_uri.clone(),
                ..Default::default()
            });
            previous_map = Some(&entry.map_uri);
            MediaSegment {
                uri: entry.uri.clone(),
                duration: entry.duration as f32,
                discontinuity: entry.discontinuity,
                map,
                program_date_time: Some(entry.program_date_time.fixed_offset()),
                ..Default::default()
            }
        })
        .collect();
    let playlist = MediaPlaylist {
        version: Some(VERSION),
        target_duration: view.target_duration,
        media_sequence: view.media_sequence,
        discontinuity_sequence: view.discontinuity_sequence,
        independent_segments: !view.entries.is_empty()
            && view.entries.iter().all(|e| e.independent),
        end_list: view.ended,
        segments,
        ..Default::default()
    };
    let mut text = Vec::with_capacity(128 + 160 * view.entries.len());
    playlist
        .write_to(&mut text)
        .expect("writing to a Vec cannot fail");
    String::from_utf8(text).expect("m3u8-rs writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(seq: u64, discontinuity: bool, map: &str) -> Entry {
        Entry {
            uri: format!("cam1/x-{seq}.m4s"),
            duration: 2.0,
            discontinuity,
            independent: true,
            map_uri: map.to_string(),
            program_date_time: Utc.with_ymd_and_hms(2026, 11, 21, 18, 0, 0).unwrap()
                + chrono::Duration::seconds(2 * seq as i64),
        }
    }

    #[test]
    fn golden_with_discontinuity_and_new_map() {
        let entries = [
            entry(7, false, "cam1/x-init0.mp4"),
            entry(8, true, "cam1/x-init1.mp4"),
        ];
        let text = render(&View {
            target_duration: 3,
            media_sequence: 7,
            discontinuity_sequence: 2,
            entries: &entries,
            ended: false,
        });
        assert_eq!(
            text,
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:2
#EXT-X-MAP:URI=\"cam1/x-init0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T18:00:14.000Z
#EXTINF:2,
cam1/x-7.m4s
#EXT-X-MAP:URI=\"cam1/x-init1.mp4\"
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T18:00:16.000Z
#EXTINF:2,
cam1/x-8.m4s
"
        );
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs parses it");
        assert_eq!(parsed.segments.len(), 2);
        assert!(parsed.segments[1].discontinuity);
    }

    #[test]
    fn not_independent_when_a_listed_segment_starts_mid_gop() {
        let mut entries = vec![entry(0, false, "m"), entry(1, false, "m")];
        entries[1].independent = false;
        let text = render(&View {
            target_duration: 3,
            media_sequence: 0,
            discontinuity_sequence: 0,
            entries: &entries,
            ended: true,
        });
        assert!(!text.contains("INDEPENDENT-SEGMENTS"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(text.matches("#EXT-X-MAP").count(), 1);
    }
}
