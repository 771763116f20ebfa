//! The init segment: `ftyp` + `moov`, one function per box.
//!
//! `moov`
//! - `mvhd` (timescale 1000, duration 0, next track 3)
//! - `trak` per present track: `tkhd`, `mdia` (`mdhd`, `hdlr`, `minf` (`vmhd`|`smhd`, `dinf`,
//!   `stbl` (`stsd` with `avc1`+`avcC` or `mp4a`+`esds`, empty `stts` `stsc` `stsz` `stco`)))
//! - `mvex` with one `trex` per present track
//!
//! No `edts`: presentation timing lives in `tfdt` and the signed `trun` composition offsets.

use bytes::Bytes;
use mp4_atom::{
    esds, Audio, BufMut, Dinf, Dref, Encode, Esds, FixedPoint, Ftyp, Hdlr, Matrix, Mdhd, Mp4a,
    Mvex, Mvhd, Smhd, Stco, Stsc, Stsz, Stts, Tkhd, Trex, Url, Visual, Vmhd,
};

use super::{encode_error, Fmp4Error, AUDIO_TRACK_ID, VIDEO_TRACK_ID};
use crate::media::{AudioConfig, VideoConfig, VIDEO_TIMESCALE};

/// Timescale of `mvhd`; only durations use it, and they are all zero.
const MOVIE_TIMESCALE: u32 = 1000;
/// One past the highest track ID, whichever tracks are present.
const NEXT_TRACK_ID: u32 = 3;
/// The only sample description of each track, as referenced by `trex`.
const SAMPLE_DESCRIPTION_INDEX: u32 = 1;
/// Sample entries point at the first (self-contained) `dref` entry.
const DATA_REFERENCE_INDEX: u16 = 1;
/// `DecoderConfigDescriptor.objectTypeIndication` of MPEG-4 Audio (ISO/IEC 14496-1 table 5).
const OBJECT_TYPE_MPEG4_AUDIO: u8 = 0x40;
/// `DecoderConfigDescriptor.streamType` of an audio stream (ISO/IEC 14496-1 table 6).
const STREAM_TYPE_AUDIO: u8 = 0x05;
/// Bits per sample in the `mp4a` entry; informative for AAC.
const AUDIO_SAMPLE_SIZE: u16 = 16;

/// Builds the init segment for the tracks present (video is track 1, audio track 2).
pub fn init_segment(
    video: Option<&VideoConfig>,
    audio: Option<&AudioConfig>,
) -> Result<Bytes, Fmp4Error> {
    if video.is_none() && audio.is_none() {
        return Err(Fmp4Error::NoTracks);
    }
    let tracks = [video.map(Media::Video), audio.map(Media::Audio)];
    for media in tracks.iter().flatten() {
        media.validate()?;
    }

    let mut buf = Vec::with_capacity(1024);
    ftyp().encode(&mut buf).map_err(encode_error("ftyp"))?;
    buf.encode_atom(b"moov", |buf| {
        mvhd().encode(buf)?;
        for media in tracks.iter().flatten() {
            trak(buf, media)?;
        }
        mvex(&tracks).encode(buf)
    })
    .map_err(encode_error("moov"))?;
    Ok(Bytes::from(buf))
}

/// A present track with its configuration.
#[derive(Clone, Copy)]
enum Media<'a> {
    Video(&'a VideoConfig),
    Audio(&'a AudioConfig),
}

impl Media<'_> {
    fn validate(&self) -> Result<(), Fmp4Error> {
        let invalid = |field, reason| Err(Fmp4Error::InvalidConfig { field, reason });
        match self {
            Media::Video(config) if config.avcc.is_empty() => {
                invalid("avcC", "the AVCDecoderConfigurationRecord is empty")
            }
            Media::Audio(config) if config.asc.is_empty() => {
                invalid("esds", "the AudioSpecificConfig is empty")
            }
            Media::Audio(config) if config.sample_rate == 0 => {
                invalid("mdhd timescale", "the audio sample rate is zero")
            }
            _ => Ok(()),
        }
    }

    fn track_id(&self) -> u32 {
        match self {
            Media::Video(_) => VIDEO_TRACK_ID,
            Media::Audio(_) => AUDIO_TRACK_ID,
        }
    }

    fn timescale(&self) -> u32 {
        match self {
            Media::Video(_) => VIDEO_TIMESCALE,
            Media::Audio(config) => config.sample_rate,
        }
    }
}

fn ftyp() -> Ftyp {
    Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    }
}

fn mvhd() -> Mvhd {
    Mvhd {
        creation_time: 0,
        modification_time: 0,
        timescale: MOVIE_TIMESCALE,
        duration: 0,
        rate: 1.into(),
        volume: 1.into(),
        matrix: Matrix::default(),
        next_track_id: NEXT_TRACK_ID,
    }
}

fn trak(buf: &mut Vec<u8>, media: &Media) -> mp4_atom::Result<()> {
    buf.encode_atom(b"trak", |buf| {
        tkhd(media).encode(buf)?;
        mdia(buf, media)
    })
}

fn tkhd(media: &Media) -> Tkhd {
    let (volume, width, height) = match media {
        Media::Video(config) => (0, config.width, config.height),
        Media::Audio(_) => (1, 0, 0),
    };
    Tkhd {
        track_id: media.track_id(),
        enabled: true,
        in_movie: true,
        volume: volume.into(),
        matrix: Matrix::default(),
        width: width.into(),
        height: height.into(),
        ..Default::default()
    }
}

fn mdia(buf: &mut Vec<u8>, media: &Media) -> mp4_atom::Result<()> {
    buf.encode_atom(b"mdia", |buf| {
        mdhd(media).encode(buf)?;
        hdlr(media).encode(buf)?;
        minf(buf, media)
    })
}

fn mdhd(media: &Media) -> Mdhd {
    Mdhd {
        timescale: media.timescale(),
        language: "und".into(),
        ..Default::default()
    }
}

fn hdlr(media: &Media) -> Hdlr {
    let (handler, name) = match media {
        Media::Video(_) => (b"vide", "VideoHandler"),
        Media::Audio(_) => (b"soun", "SoundHandler"),
    };
    Hdlr {
        handler: handler.into(),
        name: name.into(),
    }
}

fn minf(buf: &mut Vec<u8>, media: &Media) -> mp4_atom::Result<()> {
    buf.encode_atom(b"minf", |buf| {
        match media {
            Media::Video(_) => Vmhd::default().encode(buf)?,
            Media::Audio(_) => Smhd::default().encode(buf)?,
        }
        dinf().encode(buf)?;
        stbl(buf, media)
    })
}

/// One `url ` entry with no location: the media data is in this file.
fn dinf() -> Dinf {
    Dinf {
        dref: Dref {
            entries: vec![Url::default().into()],
        },
    }
}

/// The sample description, then empty sample tables: every sample is in a fragment.
fn stbl(buf: &mut Vec<u8>, media: &Media) -> mp4_atom::Result<()> {
    buf.encode_atom(b"stbl", |buf| {
        stsd(buf, media)?;
        Stts::default().encode(buf)?;
        Stsc::default().encode(buf)?;
        Stsz::default().encode(buf)?;
        Stco::default().encode(buf)
    })
}

/// Written here rather than as `mp4_atom::Stsd`, whose `avc1` entry would re-encode the `avcC`
/// from parsed fields instead of carrying the received record verbatim.
fn stsd(buf: &mut Vec<u8>, media: &Media) -> mp4_atom::Result<()> {
    buf.encode_atom(b"stsd", |buf| {
        0u32.encode(buf)?; // version 0, flags 0
        1u32.encode(buf)?; // entry_count
        match media {
            Media::Video(config) => avc1(buf, config),
            Media::Audio(config) => mp4a(config).encode(buf),
        }
    })
}

fn avc1(buf: &mut Vec<u8>, config: &VideoConfig) -> mp4_atom::Result<()> {
    buf.encode_atom(b"avc1", |buf| {
        Visual {
            data_reference_index: DATA_REFERENCE_INDEX,
            width: config.width,
            height: config.height,
            ..Default::default()
        }
        .encode(buf)?;
        avcc(buf, &config.avcc)
    })
}

/// The AVCDecoderConfigurationRecord exactly as the encoder sent it.
fn avcc(buf: &mut Vec<u8>, record: &[u8]) -> mp4_atom::Result<()> {
    buf.encode_atom(b"avcC", |buf| {
        buf.append_slice(record);
        Ok(())
    })
}

fn mp4a(config: &AudioConfig) -> Mp4a {
    // The 16.16 field cannot hold rates above 65535 Hz; as ffmpeg does, write 0 there and let
    // the `mdhd` timescale and the AudioSpecificConfig carry the rate.
    let sample_rate = u16::try_from(config.sample_rate).unwrap_or(0);
    Mp4a {
        audio: Audio {
            data_reference_index: DATA_REFERENCE_INDEX,
            channel_count: config.channels.into(),
            sample_size: AUDIO_SAMPLE_SIZE,
            sample_rate: FixedPoint::new(sample_rate, 0),
        },
        esds: aac_esds(config),
        btrt: None,
        taic: None,
    }
}

fn aac_esds(config: &AudioConfig) -> Esds {
    Esds {
        es_desc: esds::EsDescriptor {
            es_id: AUDIO_TRACK_ID as u16,
            dec_config: esds::DecoderConfig {
                object_type_indication: OBJECT_TYPE_MPEG4_AUDIO,
                stream_type: STREAM_TYPE_AUDIO,
                // Non-empty `raw` is written verbatim; the parsed fields are then unused.
                dec_specific: Some(esds::DecoderSpecific {
                    profile: config.object_type,
                    chan_conf: config.channels,
                    raw: config.asc.to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        },
    }
}

fn mvex(tracks: &[Option<Media>]) -> Mvex {
    Mvex {
        mehd: None,
        trex: tracks
            .iter()
            .flatten()
            .map(|media| Trex {
                track_id: media.track_id(),
                default_sample_description_index: SAMPLE_DESCRIPTION_INDEX,
                ..Default::default()
            })
            .collect(),
    }
}
