//! In-memory segments of one rendition (a camera or the program), with its current playlist.
//!
//! The publisher side appends segments under a short `std` mutex (never held across `.await`);
//! readers get `Arc`s and the rendered playlist from a `watch` channel, so serving a request never
//! waits on packaging. Segments stay fetchable for a window's length after they leave the
//! playlist, since players may still be fetching them. A segment is a list of fragments so that
//! LL-HLS parts can later be appended to an open segment.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::playlist::{self, Entry, View};
use crate::fmp4::Fragment;
use crate::media::{AudioConfig, VideoConfig};

/// An init segment (ftyp+moov) and the configurations it describes.
#[derive(Debug)]
pub struct Init {
    pub id: u32,
    pub bytes: Bytes,
    pub video: Option<Arc<VideoConfig>>,
    pub audio: Option<Arc<AudioConfig>>,
}

impl Init {
    /// Same codec configurations by value: a reconnecting encoder with unchanged settings keeps
    /// its init segment and needs no new EXT-X-MAP.
    pub fn describes(
        &self,
        video: Option<&Arc<VideoConfig>>,
        audio: Option<&Arc<AudioConfig>>,
    ) -> bool {
        self.video.as_deref() == video.map(|v| &**v) && self.audio.as_deref() == audio.map(|a| &**a)
    }
}

/// One media segment.
#[derive(Debug)]
pub struct Segment {
    pub sequence: u64,
    /// Exact duration in seconds (EXTINF).
    pub duration: f64,
    pub discontinuity: bool,
    pub independent: bool,
    pub init: Arc<Init>,
    pub program_date_time: DateTime<Utc>,
    /// moof+mdat pairs; one today, LL-HLS parts later.
    pub fragments: Vec<Fragment>,
}

impl Segment {
    pub fn len(&self) -> usize {
        self.fragments.iter().map(Fragment::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of the segment in order, without copying.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.fragments.iter().flat_map(|f| f.chunks())
    }
}

/// What readers see: the playlist text and the sequence range it lists.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Rendered playlist; empty until the first segment exists.
    pub playlist: Bytes,
    pub media_sequence: u64,
    /// Sequence number of the next segment to be appended.
    pub next_sequence: u64,
    pub ended: bool,
}

#[derive(Debug)]
struct State {
    /// Listed segments first, then (at the front) the ones kept for late fetches.
    segments: VecDeque<Arc<Segment>>,
    next_sequence: u64,
    discontinuity_sequence: u64,
    next_init_id: u32,
    ended: bool,
}

#[derive(Debug)]
pub struct Rendition {
    /// Relative URI prefix, e.g. `cam1` in `cam1/…-17.m4s`.
    name: String,
    /// Unique per server start, in every URI: segments are cached as immutable, so a URI must
    /// never name different bytes after a restart resets sequence numbers.
    stamp: String,
    target_duration: u64,
    window: usize,
    state: Mutex<State>,
    snapshot: watch::Sender<Snapshot>,
}

impl Rendition {
    pub fn new(name: &str, stamp: &str, target_duration: u64, window: usize) -> Self {
        Rendition {
            name: name.to_string(),
            stamp: stamp.to_string(),
            target_duration,
            window,
            state: Mutex::new(State {
                segments: VecDeque::new(),
                next_sequence: 0,
                discontinuity_sequence: 0,
                next_init_id: 0,
                ended: false,
            }),
            snapshot: watch::Sender::new(Snapshot::default()),
        }
    }

    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    pub fn segment_uri(&self, sequence: u64) -> String {
        format!("{}/{}-{sequence}.m4s", self.name, self.stamp)
    }

    pub fn init_uri(&self, id: u32) -> String {
        format!("{}/{}-init{id}.mp4", self.name, self.stamp)
    }

    /// Parses a file name under this rendition's folder into what it names.
    pub fn resolve(&self, file: &str) -> Option<Resource> {
        let rest = file.strip_prefix(&self.stamp)?.strip_prefix('-')?;
        if let Some(id) = rest
            .strip_prefix("init")
            .and_then(|r| r.strip_suffix(".mp4"))
        {
            let id: u32 = id.parse().ok()?;
            return self.init(id).map(Resource::Init);
        }
        let sequence: u64 = rest.strip_suffix(".m4s")?.parse().ok()?;
        self.segment(sequence).map(Resource::Segment)
    }

    /// A new init id for `bytes`, or the current one when it describes the same configurations.
    pub fn init_for(
        &self,
        video: Option<&Arc<VideoConfig>>,
        audio: Option<&Arc<AudioConfig>>,
        build: impl FnOnce() -> Result<Bytes, crate::fmp4::Fmp4Error>,
    ) -> Result<Arc<Init>, crate::fmp4::Fmp4Error> {
        let mut state = self.state.lock().expect("rendition lock");
        // Back to a configuration still in the store (a camera cut back in): reuse its init.
        if let Some(known) = state
            .segments
            .iter()
            .rev()
            .find(|s| s.init.describes(video, audio))
        {
            return Ok(known.init.clone());
        }
        let id = state.next_init_id;
        state.next_init_id += 1;
        Ok(Arc::new(Init {
            id,
            bytes: build()?,
            video: video.cloned(),
            audio: audio.cloned(),
        }))
    }

    /// The sequence number the next appended segment gets (its fMP4 `mfhd` sequence).
    pub fn next_sequence(&self) -> u64 {
        self.state.lock().expect("rendition lock").next_sequence
    }

    /// Appends a finished segment, retires old ones and publishes the new playlist.
    pub fn append(
        &self,
        duration: f64,
        discontinuity: bool,
        independent: bool,
        init: Arc<Init>,
        program_date_time: DateTime<Utc>,
        fragments: Vec<Fragment>,
    ) -> Arc<Segment> {
        let mut state = self.state.lock().expect("rendition lock");
        let segment = Arc::new(Segment {
            sequence: state.next_sequence,
            duration,
            // A new init segment is a new encoding: the tag is what strict players need.
            discontinuity,
            independent,
            init,
            program_date_time,
            fragments,
        });
        state.next_sequence += 1;
        state.ended = false;
        state.segments.push_back(segment.clone());
        // Count discontinuities that leave the listed window.
        let listed_from = state.segments.len().saturating_sub(self.window);
        if listed_from > 0 {
            let leaving = &state.segments[listed_from - 1];
            if leaving.discontinuity {
                state.discontinuity_sequence += 1;
            }
        }
        // Keep one more window's worth fetchable after it leaves the playlist.
        while state.segments.len() > 2 * self.window {
            state.segments.pop_front();
        }
        self.publish(&state);
        segment
    }

    /// Marks the rendition ended (EXT-X-ENDLIST) until another segment is appended.
    pub fn end(&self) {
        let mut state = self.state.lock().expect("rendition lock");
        state.ended = true;
        self.publish(&state);
    }

    fn publish(&self, state: &State) {
        let listed_from = state.segments.len().saturating_sub(self.window);
        let entries: Vec<Entry> = state
            .segments
            .iter()
            .skip(listed_from)
            .map(|s| Entry {
                uri: self.segment_uri(s.sequence),
                duration: s.duration,
                discontinuity: s.discontinuity,
                independent: s.independent,
                map_uri: self.init_uri(s.init.id),
                program_date_time: s.program_date_time,
            })
            .collect();
        let media_sequence = entries.first().map_or(state.next_sequence, |_| {
            state.segments[listed_from].sequence
        });
        let text = if entries.is_empty() {
            String::new()
        } else {
            playlist::render(&View {
                target_duration: self.target_duration,
                media_sequence,
                discontinuity_sequence: state.discontinuity_sequence,
                entries: &entries,
                ended: state.ended,
            })
        };
        self.snapshot.send_replace(Snapshot {
            playlist: Bytes::from(text),
            media_sequence,
            next_sequence: state.next_sequence,
            ended: state.ended,
        });
    }

    /// The current playlist and sequence range.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// Wakes when the playlist changes (for blocking reloads and tests).
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.subscribe()
    }

    pub fn segment(&self, sequence: u64) -> Option<Arc<Segment>> {
        let state = self.state.lock().expect("rendition lock");
        let first = state.segments.front()?.sequence;
        let index = usize::try_from(sequence.checked_sub(first)?).ok()?;
        state.segments.get(index).cloned()
    }

    pub fn init(&self, id: u32) -> Option<Bytes> {
        let state = self.state.lock().expect("rendition lock");
        state
            .segments
            .iter()
            .rev()
            .find(|s| s.init.id == id)
            .map(|s| s.init.bytes.clone())
    }
}

/// What a file name under a rendition resolves to.
#[derive(Debug)]
pub enum Resource {
    Init(Bytes),
    Segment(Arc<Segment>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rendition() -> Rendition {
        Rendition::new("cam1", "s", 3, 3)
    }

    fn append(r: &Rendition, discontinuity: bool, init_id: u32) -> Arc<Segment> {
        let init = Arc::new(Init {
            id: init_id,
            bytes: Bytes::from_static(b"init"),
            video: None,
            audio: None,
        });
        let start = Utc.with_ymd_and_hms(2026, 11, 21, 18, 0, 0).unwrap();
        let pdt = start + chrono::Duration::seconds(2 * r.next_sequence() as i64);
        let fragment = Fragment {
            header: Bytes::from_static(b"moof"),
            payloads: vec![Bytes::from_static(b"data")],
        };
        r.append(2.0, discontinuity, true, init, pdt, vec![fragment])
    }

    fn text(r: &Rendition) -> String {
        String::from_utf8(r.snapshot().playlist.to_vec()).unwrap()
    }

    #[test]
    fn window_slides_and_discontinuity_sequence_counts_what_left() {
        let r = rendition();
        assert!(
            r.snapshot().playlist.is_empty(),
            "no playlist before the first segment"
        );
        for (i, disc) in [false, true, false, false, true, false, false]
            .into_iter()
            .enumerate()
        {
            append(&r, disc, u32::from(disc) + i as u32 / 4);
        }
        // Segments 4, 5, 6 listed; the discontinuity of segment 1 has left the window.
        assert_eq!(
            text(&r),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:4
#EXT-X-DISCONTINUITY-SEQUENCE:1
#EXT-X-MAP:URI=\"cam1/s-init2.mp4\"
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T18:00:08.000Z
#EXTINF:2,
cam1/s-4.m4s
#EXT-X-MAP:URI=\"cam1/s-init1.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T18:00:10.000Z
#EXTINF:2,
cam1/s-5.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T18:00:12.000Z
#EXTINF:2,
cam1/s-6.m4s
"
        );
        append(&r, false, 1);
        append(&r, false, 1);
        let snapshot = r.snapshot();
        assert_eq!(snapshot.media_sequence, 6);
        assert!(
            text(&r).contains("#EXT-X-DISCONTINUITY-SEQUENCE:2"),
            "{}",
            text(&r)
        );
    }

    #[test]
    fn segments_stay_fetchable_for_a_window_after_leaving_the_playlist() {
        let r = rendition();
        for _ in 0..10 {
            append(&r, false, 0);
        }
        // Listed: 7, 8, 9. Kept for late fetches: 4, 5, 6.
        assert!(r.resolve("s-4.m4s").is_some());
        assert!(r.resolve("s-3.m4s").is_none());
        assert!(r.resolve("s-10.m4s").is_none());
        assert!(matches!(r.resolve("s-init0.mp4"), Some(Resource::Init(_))));
        assert!(
            r.resolve("other-5.m4s").is_none(),
            "another server start's URI"
        );
        assert!(r.resolve("s-x.m4s").is_none());
        assert_eq!(r.segment(9).unwrap().len(), 8);
    }

    #[test]
    fn ended_playlist_has_endlist_until_more_media() {
        let r = rendition();
        append(&r, false, 0);
        r.end();
        assert!(text(&r).ends_with("#EXT-X-ENDLIST\n"));
        append(&r, true, 0);
        assert!(!text(&r).contains("ENDLIST"));
    }
}
