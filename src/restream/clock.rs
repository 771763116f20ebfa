//! Output timestamps of one destination: source milliseconds to the milliseconds it sends.
//!
//! The rules, pure and testable:
//! - The first connection starts at 0 at its first keyframe.
//! - A later connection (after a reconnect) continues the same timeline: if the source moved on
//!   while we were away, the real gap is kept (as MediaMTX does: output time keeps moving); if
//!   the mapping would land at or before what was already sent (the reconnect resumed from a
//!   cached GOP), it is shifted to start one step after the last timestamp sent. So timestamps
//!   never go backwards, within a connection or across them.
//! - Within a connection each track only moves forward. A frame that would go backwards is
//!   dropped, except a video keyframe: that is the source starting over, and the timeline is
//!   re-anchored there (one step after the last timestamp sent).

/// Where a re-anchored keyframe lands after the last timestamp sent: about one frame at 30 fps.
pub const STEP_MS: i64 = 33;

/// The track a timestamp belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

/// The timestamp mapping of one destination, across its connections.
#[derive(Debug, Clone, Default)]
pub struct OutClock {
    /// Source minus output milliseconds; `None` before the first connection.
    offset: Option<i64>,
    /// The last output timestamp per track (video, audio) in the current connection.
    last: [Option<i64>; 2],
    /// The highest output timestamp ever sent, on any connection.
    high: Option<i64>,
}

impl OutClock {
    /// A new connection will start at the keyframe at `start_ms` (source time); returns the
    /// output timestamp it starts at (for `onMetaData` and the sequence headers).
    pub fn start_connection(&mut self, start_ms: i64) -> u32 {
        self.last = [None, None];
        let offset = match (self.offset, self.high) {
            (Some(offset), Some(high)) if start_ms - offset <= high => start_ms - (high + STEP_MS),
            (Some(offset), _) => offset,
            (None, _) => start_ms,
        };
        self.offset = Some(offset);
        (start_ms - offset).max(0) as u64 as u32
    }

    /// The output timestamp for a frame at `source_ms`, or `None` to drop it (it would go
    /// backwards on its track, or before 0). `start_connection` must have been called.
    pub fn map(&mut self, kind: Kind, source_ms: i64, keyframe: bool) -> Option<u32> {
        let slot = kind as usize;
        let mut out = source_ms - self.offset?;
        if self.last[slot].is_some_and(|last| out < last) {
            if !(kind == Kind::Video && keyframe) {
                return None;
            }
            let anchor = self.high.unwrap_or(0) + STEP_MS;
            self.offset = Some(source_ms - anchor);
            // The audio of the old timeline is ahead of the new one; let it start afresh.
            self.last = [None, None];
            out = anchor;
        }
        if out < 0 {
            return None;
        }
        self.last[slot] = Some(out);
        self.high = Some(self.high.map_or(out, |high| high.max(out)));
        // RTMP timestamps are 32-bit and wrap (after 49.7 days).
        Some(out as u64 as u32)
    }

    /// The highest output timestamp sent so far.
    pub fn high(&self) -> Option<i64> {
        self.high
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_connection_starts_at_zero() {
        let mut clock = OutClock::default();
        assert_eq!(clock.start_connection(5000), 0);
        assert_eq!(clock.map(Kind::Video, 5000, true), Some(0));
        // Audio a little before the keyframe would be negative: dropped.
        assert_eq!(clock.map(Kind::Audio, 4990, false), None);
        assert_eq!(clock.map(Kind::Audio, 5010, false), Some(10));
        assert_eq!(clock.map(Kind::Video, 5033, false), Some(33));
        assert_eq!(clock.high(), Some(33));
    }

    #[test]
    fn a_reconnect_after_a_gap_keeps_the_real_gap() {
        let mut clock = OutClock::default();
        clock.start_connection(1000);
        clock.map(Kind::Video, 1000, true);
        clock.map(Kind::Video, 2000, false);
        // Back 10 s later at a fresh keyframe.
        assert_eq!(clock.start_connection(12_000), 11_000);
        assert_eq!(clock.map(Kind::Video, 12_000, true), Some(11_000));
        assert_eq!(clock.map(Kind::Audio, 11_990, false), Some(10_990));
    }

    #[test]
    fn a_reconnect_into_a_cached_gop_continues_after_the_last_timestamp() {
        let mut clock = OutClock::default();
        clock.start_connection(0);
        for ms in [0, 33, 66, 100] {
            clock.map(Kind::Video, ms, ms == 0);
        }
        clock.map(Kind::Audio, 110, false);
        // The reconnect resumes from the GOP that started at 0: already sent.
        assert_eq!(clock.start_connection(0), 110 + STEP_MS as u32);
        assert_eq!(clock.map(Kind::Video, 0, true), Some(110 + STEP_MS as u32));
        assert_eq!(clock.map(Kind::Video, 33, false), Some(143 + 33));
        assert_eq!(clock.map(Kind::Audio, 5, false), Some(143 + 5));
    }

    #[test]
    fn within_a_connection_tracks_never_go_backwards() {
        let mut clock = OutClock::default();
        clock.start_connection(0);
        assert_eq!(clock.map(Kind::Video, 0, true), Some(0));
        assert_eq!(clock.map(Kind::Video, 100, false), Some(100));
        assert_eq!(
            clock.map(Kind::Video, 100, false),
            Some(100),
            "equal is fine"
        );
        assert_eq!(
            clock.map(Kind::Video, 50, false),
            None,
            "backwards: dropped"
        );
        assert_eq!(
            clock.map(Kind::Audio, 90, false),
            Some(90),
            "tracks are separate"
        );
        assert_eq!(clock.map(Kind::Audio, 80, false), None);
        // The source starts over at 0 with a keyframe: re-anchored after the last timestamp.
        assert_eq!(clock.map(Kind::Video, 0, true), Some(133));
        assert_eq!(clock.map(Kind::Audio, 10, false), Some(143));
        assert_eq!(clock.map(Kind::Video, 33, false), Some(166));
    }

    #[test]
    fn timestamps_wrap_at_32_bits() {
        let mut clock = OutClock::default();
        clock.start_connection(0);
        assert_eq!(clock.map(Kind::Video, 1 << 32, true), Some(0));
        assert_eq!(clock.map(Kind::Video, (1 << 32) + 5, false), Some(5));
    }

    #[test]
    fn a_frame_before_the_first_connection_is_dropped() {
        let mut clock = OutClock::default();
        assert_eq!(clock.map(Kind::Video, 0, true), None);
    }
}
