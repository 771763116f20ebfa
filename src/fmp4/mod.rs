//! CMAF fragmented-MP4 box writers: the init segment (`ftyp` + `moov`) and media fragments
//! (`moof` + `mdat`) that HLS serves.
//!
//! Pure functions over plain data: no I/O, no clocks, no state. The segmenter decides what goes
//! into a fragment; this module only lays the bytes out.
//!
//! Layout:
//! - [`init_segment`] (`init.rs`): one `trak` per present track, video = track 1 (90 kHz),
//!   audio = track 2 (sample-rate clock); no edit lists, empty sample tables, `mvex`/`trex`.
//! - [`fragment`] (`fragment.rs`): one `traf` per present track with `tfhd` (default-base-is-moof),
//!   a version 1 `tfdt` and a version 1 `trun` (signed composition offsets). The `moof` is encoded
//!   once and each `trun` data offset patched in place once its size is known. The `mdat` holds all
//!   video samples then all audio samples, kept as the caller's [`Bytes`]: nothing is copied.
//!
//! Boxes are encoded with `mp4-atom`. Container boxes are opened with its `BufMut::encode_atom`
//! (write a zero size, run the closure, patch the size), which lets the `avcC` record be written
//! verbatim and the `trun` positions be noted as the `moof` is written.

mod fragment;
mod init;

#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

pub use fragment::fragment;
pub use init::init_segment;

/// Track ID of the video track in every init segment and fragment.
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track ID of the audio track in every init segment and fragment.
pub const AUDIO_TRACK_ID: u32 = 2;

/// Sample flags of a sync sample: `sample_depends_on = 2` (depends on no other sample).
pub const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;
/// Sample flags of a non-sync video sample: `sample_depends_on = 1`, `sample_is_non_sync_sample`.
pub const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;

#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    #[error("no track: an init segment needs a video or an audio configuration")]
    NoTracks,
    #[error("no samples: a fragment needs a video or an audio run with at least one sample")]
    NoSamples,
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    #[error("{what} is {len}, more than its MP4 field can hold")]
    TooLarge { what: &'static str, len: usize },
    #[error("encoding {0}: {1}")]
    Encode(&'static str, String),
}

/// One sample of a run, borrowing nothing: `data` is a refcounted slice of the received payload.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Decode duration in the track's timescale.
    pub duration: u32,
    /// Presentation minus decode time in the track's timescale; may be negative. Ignored for audio.
    pub cts_offset: i32,
    /// A sync sample (IDR picture). Ignored for audio: every audio sample is a sync sample.
    pub keyframe: bool,
    /// The sample as it goes into `mdat`: AVCC length-prefixed NAL units, or one raw AAC frame.
    pub data: Bytes,
}

/// The samples of one track in one fragment, starting at decode time `base_dts` in the track's
/// timescale.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// Decode time of the first sample; written to `tfdt`.
    pub base_dts: u64,
    /// The samples in decode order; durations chain them.
    pub samples: &'a [Sample],
}

/// A moof+mdat pair kept as a header plus the payload slices, so nothing is copied.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// The `moof` box followed by the 8-byte `mdat` box header.
    pub header: Bytes,
    /// The `mdat` body: every video sample, then every audio sample, as given.
    pub payloads: Vec<Bytes>,
}

impl Fragment {
    /// Total size in bytes of the `moof` and `mdat` boxes.
    pub fn len(&self) -> usize {
        self.header.len() + self.payloads.iter().map(Bytes::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.header.is_empty() && self.payloads.iter().all(Bytes::is_empty)
    }

    /// The bytes of the fragment in order: the header, then each payload.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.header).chain(self.payloads.iter())
    }

    /// One contiguous copy of the fragment, for tests and small consumers.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        for chunk in self.chunks() {
            out.extend_from_slice(chunk);
        }
        out.freeze()
    }
}

/// Maps an `mp4-atom` error to ours, naming the box being written.
fn encode_error(what: &'static str) -> impl FnOnce(mp4_atom::Error) -> Fmp4Error {
    move |err| Fmp4Error::Encode(what, err.to_string())
}
