//! Frames in, segments in a rendition out: the segmenter's policy, the fMP4 writer and the store,
//! run inline on the publisher's task so a segment is listed the moment its closing keyframe
//! arrives.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use metrics::Counter;

use super::segmenter::{SegmentMedia, Segmenter};
use super::store::{Rendition, Segment};
use crate::fmp4::{self, Fmp4Error, Run};
use crate::media::{AudioConfig, Frame, Track, VideoConfig, VIDEO_TIMESCALE};

#[derive(Debug)]
pub struct Packager {
    segmenter: Segmenter,
    rendition: Arc<Rendition>,
    /// Wall-clock time of a timeline instant (90 kHz), for EXT-X-PROGRAM-DATE-TIME; re-anchored at
    /// every discontinuity.
    anchor: Option<(i64, DateTime<Utc>)>,
    /// The video configuration of the last frame, to spot a change of configuration.
    video: Option<Arc<VideoConfig>>,
    /// The audio configuration in force. A segment that happens to hold no audio (a publisher
    /// gone right after a keyframe) still gets an init with the audio track: dropping the track
    /// for one segment would be a track change for players.
    audio: Option<Arc<AudioConfig>>,
    /// `tally_segments_total` of this rendition; a no-op until [`Packager::counted`].
    segments: Counter,
}

impl Packager {
    pub fn new(rendition: Arc<Rendition>, target: Duration) -> Self {
        Packager {
            segmenter: Segmenter::new(target),
            rendition,
            anchor: None,
            video: None,
            audio: None,
            segments: Counter::noop(),
        }
    }

    /// Counts the segments this packager lists as `event`'s `rendition` (a camera id, or
    /// `program`).
    pub fn counted(mut self, event: &str, rendition: &str) -> Self {
        self.segments = crate::telemetry::segments(event, rendition);
        self
    }

    pub fn rendition(&self) -> &Arc<Rendition> {
        &self.rendition
    }

    /// A packager for an event's program: cuts where the switcher splices.
    pub fn for_program(rendition: Arc<Rendition>, target: Duration) -> Self {
        let mut packager = Packager::new(rendition, target);
        packager.segmenter = packager.segmenter.without_config_discontinuities();
        packager.segmenter.expect_video();
        packager
    }

    /// Ends the open segment at a camera cut; see [`Segmenter::splice`].
    pub fn splice(&mut self, discontinuity: bool) -> Result<Option<Arc<Segment>>, Fmp4Error> {
        self.segmenter
            .splice(discontinuity)
            .map(|media| self.store(media))
            .transpose()
    }

    /// See [`Segmenter::expect_video`].
    pub fn expect_video(&mut self) {
        self.segmenter.expect_video();
    }

    /// Segments cut without a keyframe so far (keyframe interval above TARGETDURATION).
    pub fn forced_cuts(&self) -> u64 {
        self.segmenter.forced_cuts
    }

    /// Feeds a frame that arrived at `now`; returns the segment it completed, if any.
    pub fn push(
        &mut self,
        mut frame: Frame,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<Segment>>, Fmp4Error> {
        if frame.discontinuity {
            // A new source may bring other tracks.
            self.audio = None;
        }
        if let Track::Audio(config) = &frame.track {
            self.audio = Some(config.clone());
        }
        if let Track::Video(config) = &frame.track {
            let changed = self
                .video
                .as_ref()
                .is_some_and(|last| !Arc::ptr_eq(last, config) && **last != **config);
            if changed && frame.keyframe {
                // Decoders that keep one context across EXT-X-MAP changes need the new SPS/PPS.
                frame.payload = crate::codec::with_parameter_sets(config, &frame.payload);
            }
            self.video = Some(config.clone());
        }
        let time = crate::media::rescale(frame.dts, frame.track.timescale(), VIDEO_TIMESCALE);
        let reanchor = frame.discontinuity || self.anchor.is_none();
        let closed = self.segmenter.push(frame);
        let segment = closed.map(|media| self.store(media)).transpose()?;
        if reanchor {
            self.anchor = Some((time, now));
        }
        Ok(segment)
    }

    /// Closes the open segment (the publisher left) and lists it.
    pub fn flush(&mut self) -> Result<Option<Arc<Segment>>, Fmp4Error> {
        self.segmenter
            .flush()
            .map(|media| self.store(media))
            .transpose()
    }

    fn store(&mut self, media: SegmentMedia) -> Result<Arc<Segment>, Fmp4Error> {
        let video = media.video.as_ref();
        let audio = media.audio.as_ref();
        let video_config = video.map(|v| &v.config).or(self.video.as_ref());
        let audio_config = audio.map(|a| &a.config).or(self.audio.as_ref());
        let init = self.rendition.init_for(video_config, audio_config, || {
            fmp4::init_segment(video_config.map(|v| &**v), audio_config.map(|a| &**a))
        })?;
        let sequence = self.rendition.next_sequence();
        let fragment = fmp4::fragment(
            // mfhd sequence numbers are 32-bit and only need to increase within a session.
            (sequence as u32).wrapping_add(1),
            video.map(|v| Run {
                base_dts: v.base_dts.max(0) as u64,
                samples: &v.samples,
            }),
            audio.map(|a| Run {
                base_dts: a.base_dts.max(0) as u64,
                samples: &a.samples,
            }),
        )?;
        let (anchor_time, anchor_wall) = self.anchor.unwrap_or((media.start, Utc::now()));
        let offset_us = (media.start - anchor_time) * 1_000_000 / i64::from(VIDEO_TIMESCALE);
        let program_date_time = anchor_wall + chrono::Duration::microseconds(offset_us);
        let segment = self.rendition.append(
            media.duration,
            media.discontinuity,
            media.independent,
            init,
            program_date_time,
            vec![fragment],
        );
        self.segments.increment(1);
        Ok(segment)
    }
}
