//! A media fragment: `moof` (`mfhd`, a `traf` per present track) + `mdat`.
//!
//! The `moof` is encoded once with placeholder data offsets; each `trun` position is noted as it
//! is written, and its `data_offset` patched once the `moof` size is known. The `mdat` box header
//! is written by hand after it; the samples stay the caller's `Bytes`.

use bytes::Bytes;
use mp4_atom::{BufMut, Encode, Mfhd, Tfdt, Tfhd, Trun, TrunEntry, TrunSamples};

use super::{
    encode_error, Fmp4Error, Fragment, Run, Sample, AUDIO_TRACK_ID, SAMPLE_FLAGS_NON_SYNC,
    SAMPLE_FLAGS_SYNC, VIDEO_TRACK_ID,
};

/// The `mdat` box header: 32-bit size, then type.
const MDAT_HEADER_LEN: usize = 8;
/// Where `data_offset` sits in a `trun` box: after size, type, version+flags and sample_count.
const TRUN_DATA_OFFSET_AT: usize = 16;
/// `moof` header plus `mfhd`.
const MOOF_FIXED_LEN: usize = 8 + 16;
/// `traf` header, `tfhd` (track ID only), version 1 `tfdt`, `trun` up to its first sample.
const TRAF_FIXED_LEN: usize = 8 + 16 + 20 + 20;
/// Per-sample `trun` bytes: duration, size, flags, and for video the composition offset.
const VIDEO_ENTRY_LEN: usize = 16;
const AUDIO_ENTRY_LEN: usize = 12;

/// Builds the `moof` + `mdat` of one fragment. A run with no samples counts as absent; at least
/// one track must have samples. `sequence_number` goes into `mfhd` (1, 2, 3, ... per stream).
pub fn fragment(
    sequence_number: u32,
    video: Option<Run<'_>>,
    audio: Option<Run<'_>>,
) -> Result<Fragment, Fmp4Error> {
    let tracks = [
        TrackRun::new(Kind::Video, video)?,
        TrackRun::new(Kind::Audio, audio)?,
    ];
    if tracks.iter().all(Option::is_none) {
        return Err(Fmp4Error::NoSamples);
    }

    let capacity = MOOF_FIXED_LEN
        + MDAT_HEADER_LEN
        + tracks
            .iter()
            .flatten()
            .map(TrackRun::traf_len)
            .sum::<usize>();
    let mut header = Vec::with_capacity(capacity);
    let mut trun_at = [0usize; 2];
    header
        .encode_atom(b"moof", |buf| {
            Mfhd { sequence_number }.encode(buf)?;
            for (track, at) in tracks.iter().flatten().zip(&mut trun_at) {
                *at = traf(buf, track)?;
            }
            Ok(())
        })
        .map_err(encode_error("moof"))?;

    // Offsets count from the start of the moof (default-base-is-moof): past the moof and the
    // mdat header, then past the samples of the runs before.
    let moof_len = header.len();
    let mut data_offset = moof_len + MDAT_HEADER_LEN;
    for (track, at) in tracks.iter().flatten().zip(trun_at) {
        debug_assert_eq!(&header[at + 4..at + 8], b"trun");
        let value = i32::try_from(data_offset).map_err(|_| Fmp4Error::TooLarge {
            what: "trun data offset",
            len: data_offset,
        })?;
        let field = at + TRUN_DATA_OFFSET_AT;
        header[field..field + 4].copy_from_slice(&value.to_be_bytes());
        data_offset += track.bytes;
    }

    let mdat_len = data_offset - moof_len;
    let mdat_size = u32::try_from(mdat_len).map_err(|_| Fmp4Error::TooLarge {
        what: "mdat size",
        len: mdat_len,
    })?;
    header.extend_from_slice(&mdat_size.to_be_bytes());
    header.extend_from_slice(b"mdat");

    let sample_count = tracks.iter().flatten().map(|t| t.run.samples.len()).sum();
    let mut payloads = Vec::with_capacity(sample_count);
    for track in tracks.iter().flatten() {
        payloads.extend(track.run.samples.iter().map(|sample| sample.data.clone()));
    }
    Ok(Fragment {
        header: Bytes::from(header),
        payloads,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
}

/// A non-empty run with its `trun` (data offset still a placeholder) and payload size.
struct TrackRun<'a> {
    kind: Kind,
    run: Run<'a>,
    trun: Trun,
    /// Sum of the sample sizes: how far the next run's data starts after this one's.
    bytes: usize,
}

impl<'a> TrackRun<'a> {
    /// `None` for an absent run or one with no samples.
    fn new(kind: Kind, run: Option<Run<'a>>) -> Result<Option<Self>, Fmp4Error> {
        let Some(run) = run.filter(|run| !run.samples.is_empty()) else {
            return Ok(None);
        };
        let mut bytes = 0;
        let mut entries = Vec::with_capacity(run.samples.len());
        for sample in run.samples {
            let len = sample.data.len();
            let size = u32::try_from(len).map_err(|_| Fmp4Error::TooLarge {
                what: "sample size",
                len,
            })?;
            bytes += len;
            entries.push(TrunEntry {
                duration: Some(sample.duration),
                size: Some(size),
                flags: Some(sample_flags(kind, sample)),
                cts: (kind == Kind::Video).then_some(i64::from(sample.cts_offset)),
            });
        }
        let trun = Trun {
            // Placeholder: sets the flag and reserves the field, patched once the moof is written.
            data_offset: Some(0),
            samples: TrunSamples::Explicit(entries),
        };
        Ok(Some(TrackRun {
            kind,
            run,
            trun,
            bytes,
        }))
    }

    fn track_id(&self) -> u32 {
        match self.kind {
            Kind::Video => VIDEO_TRACK_ID,
            Kind::Audio => AUDIO_TRACK_ID,
        }
    }

    /// The `traf` size, to reserve the header buffer once.
    fn traf_len(&self) -> usize {
        let entry = match self.kind {
            Kind::Video => VIDEO_ENTRY_LEN,
            Kind::Audio => AUDIO_ENTRY_LEN,
        };
        TRAF_FIXED_LEN + entry * self.run.samples.len()
    }
}

fn sample_flags(kind: Kind, sample: &Sample) -> u32 {
    if kind == Kind::Audio || sample.keyframe {
        SAMPLE_FLAGS_SYNC
    } else {
        SAMPLE_FLAGS_NON_SYNC
    }
}

/// Writes one `traf` and returns the position of its `trun` in `buf`.
fn traf(buf: &mut Vec<u8>, track: &TrackRun) -> mp4_atom::Result<usize> {
    let mut trun_at = 0;
    buf.encode_atom(b"traf", |buf| {
        Tfhd {
            track_id: track.track_id(),
            default_base_is_moof: true,
            ..Default::default()
        }
        .encode(buf)?;
        // mp4-atom writes tfdt as version 1 (64-bit).
        Tfdt {
            base_media_decode_time: track.run.base_dts,
        }
        .encode(buf)?;
        trun_at = buf.len();
        track.trun.encode(buf)
    })?;
    Ok(trun_at)
}
