//! Checks the writers against two independent readers (the `mp4` crate and `mp4-atom`'s decoder)
//! and, when installed, against ffprobe/ffmpeg decoding real H.264/AAC samples.

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use mp4_atom::{Atom, Codec, Decode, DecodeAtom, Ftyp, Header, Mdat, Moof, Moov, TrunEntry};

use super::*;
use crate::media::{AudioConfig, VideoConfig, VIDEO_TIMESCALE};

/// avcC of a 320x240 High profile, level 1.3 stream (ffmpeg 5.1 + libx264, `-preset veryfast`),
/// including the High profile extension (chroma 4:2:0, 8-bit, no SPS extensions).
const AVCC_320X240_HIGH: &[u8] = &[
    0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41,
    0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99,
    0x60, 0x01, 0x00, 0x04, 0x68, 0xef, 0x8f, 0xcb, 0xfd, 0xf8, 0xf8, 0x00,
];
/// The SPS inside [`AVCC_320X240_HIGH`].
fn sps_320x240_high() -> &'static [u8] {
    &AVCC_320X240_HIGH[8..8 + 0x19]
}
/// AudioSpecificConfig of AAC-LC, 48 kHz, stereo from ffmpeg's `aac` encoder, with the explicit
/// "no SBR" sync extension (0x2b7) that makes it 5 bytes rather than 2.
const ASC_48K_STEREO: &[u8] = &[0x11, 0x90, 0x56, 0xe5, 0x00];

fn video_config() -> VideoConfig {
    VideoConfig {
        avcc: Bytes::from_static(AVCC_320X240_HIGH),
        width: 320,
        height: 240,
        profile: 0x64,
        compatibility: 0x00,
        level: 0x0d,
        nal_length_size: 4,
    }
}

fn audio_config() -> AudioConfig {
    AudioConfig {
        asc: Bytes::from_static(ASC_48K_STEREO),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
    }
}

/// Eight 30 fps pictures in decode order, I P B b b P B b, with B-frame composition offsets
/// relative to a zero-delay timeline: some are negative.
fn video_samples() -> Vec<Sample> {
    const CTS: [i32; 8] = [0, 9000, 0, -3000, -3000, 9000, 0, -3000];
    CTS.iter()
        .enumerate()
        .map(|(i, &cts_offset)| Sample {
            duration: 3000,
            cts_offset,
            keyframe: i == 0,
            data: Bytes::from(vec![i as u8; 100 + 37 * i]),
        })
        .collect()
}

fn audio_samples(count: usize) -> Vec<Sample> {
    (0..count)
        .map(|i| Sample {
            duration: 1024,
            // Ignored for audio: must not reach the trun.
            cts_offset: 77,
            keyframe: false,
            data: Bytes::from(vec![0xa0 + i as u8; 20 + i]),
        })
        .collect()
}

fn concat(samples: &[Sample]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| s.data.iter().copied())
        .collect()
}

fn expected_flags(sample: &Sample, video: bool) -> u32 {
    if !video || sample.keyframe {
        SAMPLE_FLAGS_SYNC
    } else {
        SAMPLE_FLAGS_NON_SYNC
    }
}

/// Body of the first box of type `kind` anywhere in `data`, found by its type bytes.
fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let at = data.windows(4).position(|w| w == kind)?;
    let size = u32::from_be_bytes(data[at - 4..at].try_into().unwrap()) as usize;
    Some(&data[at + 4..at - 4 + size])
}

fn mp4_reader(file: &[u8]) -> mp4::Mp4Reader<Cursor<&[u8]>> {
    mp4::Mp4Reader::read_header(Cursor::new(file), file.len() as u64).expect("mp4 crate reads it")
}

// ---------------------------------------------------------------------------------------------
// Init segment

#[test]
fn init_segment_reads_back_with_mp4_crate() {
    let init = init_segment(Some(&video_config()), Some(&audio_config())).unwrap();
    let reader = mp4_reader(&init);

    assert_eq!(reader.major_brand().to_string(), "iso6");
    assert_eq!(reader.minor_version(), 0);
    let brands: Vec<String> = reader
        .compatible_brands()
        .iter()
        .map(|b| b.to_string())
        .collect();
    assert_eq!(brands, ["iso6", "cmfc", "mp41"]);
    assert_eq!(reader.timescale(), 1000);
    assert_eq!(reader.moov.mvhd.duration, 0);
    assert_eq!(reader.moov.mvhd.next_track_id, 3);
    assert!(reader.moov.mvex.is_some());
    assert!(!reader.is_fragmented());

    let tracks = reader.tracks();
    assert_eq!(tracks.len(), 2);
    let video = &tracks[&VIDEO_TRACK_ID];
    assert_eq!(video.track_type().unwrap(), mp4::TrackType::Video);
    assert_eq!(video.box_type().unwrap().to_string(), "avc1");
    assert_eq!(video.timescale(), VIDEO_TIMESCALE);
    assert_eq!((video.width(), video.height()), (320, 240));
    assert_eq!(video.sequence_parameter_set().unwrap(), sps_320x240_high());

    let audio = &tracks[&AUDIO_TRACK_ID];
    assert_eq!(audio.track_type().unwrap(), mp4::TrackType::Audio);
    assert_eq!(audio.box_type().unwrap().to_string(), "mp4a");
    assert_eq!(audio.timescale(), 48_000);
    assert_eq!(
        audio.audio_profile().unwrap(),
        mp4::AudioObjectType::AacLowComplexity
    );
    assert_eq!(
        audio.sample_freq_index().unwrap(),
        mp4::SampleFreqIndex::Freq48000
    );
    assert_eq!(audio.channel_config().unwrap(), mp4::ChannelConfig::Stereo);

    for trak in &reader.moov.traks {
        assert!(trak.edts.is_none(), "no edit list");
        assert_eq!(trak.tkhd.flags & 0b11, 0b11, "enabled | in_movie");
        assert_eq!(trak.tkhd.duration, 0);
    }
    assert_eq!(reader.moov.traks[1].tkhd.volume.value(), 1);
}

#[test]
fn init_segment_decodes_with_mp4_atom() {
    let init = init_segment(Some(&video_config()), Some(&audio_config())).unwrap();
    let mut buf = &init[..];
    let ftyp = Ftyp::decode(&mut buf).unwrap();
    let moov = Moov::decode(&mut buf).unwrap();
    assert!(buf.is_empty(), "nothing after moov");

    assert_eq!(ftyp.major_brand, b"iso6".into());
    assert_eq!(ftyp.minor_version, 0);
    assert_eq!(
        ftyp.compatible_brands,
        [b"iso6".into(), b"cmfc".into(), b"mp41".into()]
    );

    assert_eq!(moov.mvhd.timescale, 1000);
    assert_eq!(moov.mvhd.duration, 0);
    assert_eq!(moov.mvhd.next_track_id, 3);
    assert_eq!(moov.trak.len(), 2);

    let video = &moov.trak[0];
    assert_eq!(video.tkhd.track_id, VIDEO_TRACK_ID);
    assert!(video.tkhd.enabled && video.tkhd.in_movie);
    assert_eq!(
        (video.tkhd.width, video.tkhd.height),
        (320.into(), 240.into())
    );
    assert!(video.edts.is_none());
    assert_eq!(video.mdia.mdhd.timescale, VIDEO_TIMESCALE);
    assert_eq!(video.mdia.mdhd.duration, 0);
    assert_eq!(video.mdia.hdlr.handler, b"vide".into());
    assert!(video.mdia.minf.vmhd.is_some());
    let stbl = &video.mdia.minf.stbl;
    assert!(stbl.stts.entries.is_empty() && stbl.stsc.entries.is_empty());
    assert!(stbl.stco.as_ref().unwrap().entries.is_empty());
    let [Codec::Avc1(avc1)] = &stbl.stsd.codecs[..] else {
        panic!("one avc1 entry, got {:?}", stbl.stsd.codecs);
    };
    assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
    assert_eq!(avc1.visual.data_reference_index, 1);
    assert_eq!(avc1.avcc.avc_profile_indication, 0x64);
    assert_eq!(avc1.avcc.sequence_parameter_sets, [sps_320x240_high()]);
    assert_eq!(
        find_box(&init, b"avcC").unwrap(),
        AVCC_320X240_HIGH,
        "avcC verbatim"
    );

    let audio = &moov.trak[1];
    assert_eq!(audio.tkhd.track_id, AUDIO_TRACK_ID);
    assert!(audio.tkhd.enabled && audio.tkhd.in_movie);
    assert_eq!(audio.tkhd.volume, 1.into());
    assert!(audio.edts.is_none());
    assert_eq!(audio.mdia.mdhd.timescale, 48_000);
    assert_eq!(audio.mdia.hdlr.handler, b"soun".into());
    assert!(audio.mdia.minf.smhd.is_some());
    let [Codec::Mp4a(mp4a)] = &audio.mdia.minf.stbl.stsd.codecs[..] else {
        panic!("one mp4a entry");
    };
    assert_eq!(mp4a.audio.channel_count, 2);
    assert_eq!(mp4a.audio.sample_size, 16);
    assert_eq!(mp4a.audio.sample_rate, 48_000.into());
    let dec_config = &mp4a.esds.es_desc.dec_config;
    assert_eq!(dec_config.object_type_indication, 0x40);
    assert_eq!(dec_config.stream_type, 0x05);
    assert_eq!(
        dec_config.dec_specific.as_ref().unwrap().raw,
        ASC_48K_STEREO
    );

    let trex = &moov.mvex.as_ref().unwrap().trex;
    let ids: Vec<_> = trex.iter().map(|t| t.track_id).collect();
    assert_eq!(ids, [VIDEO_TRACK_ID, AUDIO_TRACK_ID]);
    assert!(trex.iter().all(|t| t.default_sample_description_index == 1));

    assert!(find_box(&init, b"edts").is_none() && find_box(&init, b"elst").is_none());
}

#[test]
fn single_track_init_segments() {
    let video_only = init_segment(Some(&video_config()), None).unwrap();
    let reader = mp4_reader(&video_only);
    assert_eq!(
        reader.tracks().keys().copied().collect::<Vec<_>>(),
        [VIDEO_TRACK_ID]
    );
    assert_eq!(reader.moov.mvhd.next_track_id, 3);
    assert!(find_box(&video_only, b"mp4a").is_none());

    let audio_only = init_segment(None, Some(&audio_config())).unwrap();
    let reader = mp4_reader(&audio_only);
    assert_eq!(
        reader.tracks().keys().copied().collect::<Vec<_>>(),
        [AUDIO_TRACK_ID]
    );
    let moov = Moov::decode(&mut &audio_only[find_box(&audio_only, b"ftyp").unwrap().len() + 8..])
        .unwrap();
    assert_eq!(moov.trak.len(), 1);
    assert_eq!(moov.mvex.unwrap().trex[0].track_id, AUDIO_TRACK_ID);
}

#[test]
fn init_segment_rejects_missing_or_empty_configs() {
    assert!(matches!(init_segment(None, None), Err(Fmp4Error::NoTracks)));

    let mut video = video_config();
    video.avcc = Bytes::new();
    let err = init_segment(Some(&video), None).unwrap_err();
    assert!(
        matches!(err, Fmp4Error::InvalidConfig { field: "avcC", .. }),
        "{err}"
    );

    let mut audio = audio_config();
    audio.sample_rate = 0;
    assert!(matches!(
        init_segment(None, Some(&audio)),
        Err(Fmp4Error::InvalidConfig { .. })
    ));
}

#[test]
fn high_sample_rate_keeps_mdhd_timescale() {
    let mut audio = audio_config();
    audio.sample_rate = 96_000;
    let init = init_segment(None, Some(&audio)).unwrap();
    let moov = Moov::decode(&mut &init[find_box(&init, b"ftyp").unwrap().len() + 8..]).unwrap();
    assert_eq!(moov.trak[0].mdia.mdhd.timescale, 96_000);
}

// ---------------------------------------------------------------------------------------------
// Fragments

#[test]
fn fragment_reads_back_with_mp4_crate() {
    let video = video_samples();
    let audio = audio_samples(5);
    let init = init_segment(Some(&video_config()), Some(&audio_config())).unwrap();
    let frag = fragment(
        7,
        Some(Run {
            base_dts: (1 << 33) + 90_000,
            samples: &video,
        }),
        Some(Run {
            base_dts: 480_000,
            samples: &audio,
        }),
    )
    .unwrap();
    let file = [&init[..], &frag.to_bytes()].concat();
    let reader = mp4_reader(&file);

    assert_eq!(reader.moofs.len(), 1);
    let moof = &reader.moofs[0];
    assert_eq!(moof.mfhd.sequence_number, 7);
    assert_eq!(moof.trafs.len(), 2);

    let moof_start = init.len();
    let expected = [
        (VIDEO_TRACK_ID, (1 << 33) + 90_000, &video, true),
        (AUDIO_TRACK_ID, 480_000, &audio, false),
    ];
    for (traf, (track_id, base_dts, samples, is_video)) in moof.trafs.iter().zip(expected) {
        assert_eq!(traf.tfhd.track_id, track_id);
        assert_eq!(traf.tfhd.flags, 0x02_0000, "default-base-is-moof only");
        let tfdt = traf.tfdt.as_ref().unwrap();
        assert_eq!((tfdt.version, tfdt.base_media_decode_time), (1, base_dts));

        let trun = traf.trun.as_ref().unwrap();
        assert_eq!(trun.version, 1);
        assert_eq!(trun.sample_count as usize, samples.len());
        let durations: Vec<u32> = samples.iter().map(|s| s.duration).collect();
        let sizes: Vec<u32> = samples.iter().map(|s| s.data.len() as u32).collect();
        let flags: Vec<u32> = samples
            .iter()
            .map(|s| expected_flags(s, is_video))
            .collect();
        assert_eq!(trun.sample_durations, durations);
        assert_eq!(trun.sample_sizes, sizes);
        assert_eq!(trun.sample_flags, flags);
        if is_video {
            let cts: Vec<i32> = trun.sample_cts.iter().map(|&c| c as i32).collect();
            let expected: Vec<i32> = samples.iter().map(|s| s.cts_offset).collect();
            assert_eq!(cts, expected);
        } else {
            assert!(
                trun.sample_cts.is_empty(),
                "no composition offsets for audio"
            );
        }

        let start = moof_start + trun.data_offset.unwrap() as usize;
        let payload = concat(samples);
        assert_eq!(
            &file[start..start + payload.len()],
            payload,
            "data offset of track {track_id}"
        );
    }
}

#[test]
fn fragment_decodes_with_mp4_atom() {
    let video = video_samples();
    let audio = audio_samples(3);
    let frag = fragment(
        1,
        Some(Run {
            base_dts: 0,
            samples: &video,
        }),
        Some(Run {
            base_dts: 1024,
            samples: &audio,
        }),
    )
    .unwrap();
    let bytes = frag.to_bytes();
    let mut buf = &bytes[..];
    let moof = Moof::decode(&mut buf).unwrap();
    let mdat = Mdat::decode(&mut buf).unwrap();
    assert!(buf.is_empty());

    assert_eq!(moof.mfhd.sequence_number, 1);
    assert_eq!(moof.traf.len(), 2);
    for (traf, (track_id, base_dts, samples, is_video)) in moof
        .traf
        .iter()
        .zip([(1, 0, &video, true), (2, 1024, &audio, false)])
    {
        assert_eq!(traf.tfhd.track_id, track_id);
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.tfhd.base_data_offset, None);
        assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, base_dts);
        let [trun] = &traf.trun[..] else {
            panic!("one trun")
        };
        let entries: Vec<TrunEntry> = trun.samples.iter().collect();
        let expected: Vec<TrunEntry> = samples
            .iter()
            .map(|s| TrunEntry {
                duration: Some(s.duration),
                size: Some(s.data.len() as u32),
                flags: Some(expected_flags(s, is_video)),
                cts: is_video.then_some(s.cts_offset.into()),
            })
            .collect();
        assert_eq!(entries, expected);
    }
    assert_eq!(mdat.data, [concat(&video), concat(&audio)].concat());
}

/// Data offsets of each trun, read back with mp4-atom, and the moof length.
fn data_offsets(frag: &Fragment) -> (usize, Vec<i32>) {
    let moof_len = u32::from_be_bytes(frag.header[..4].try_into().unwrap()) as usize;
    let moof = Moof::decode(&mut &frag.header[..moof_len]).unwrap();
    let offsets = moof
        .traf
        .iter()
        .map(|t| t.trun[0].data_offset.unwrap())
        .collect();
    (moof_len, offsets)
}

#[test]
fn data_offsets_video_only_audio_only_and_both() {
    let video = video_samples();
    let audio = audio_samples(4);
    let single = audio_samples(1);
    let video_run = Run {
        base_dts: 0,
        samples: &video[..],
    };
    let video_bytes = concat(&video).len();
    let cases = [
        ("video only", Some(video_run), None, vec![0]),
        (
            "audio only",
            None,
            Some(Run {
                base_dts: 0,
                samples: &audio[..],
            }),
            vec![0],
        ),
        (
            "one audio sample",
            None,
            Some(Run {
                base_dts: 0,
                samples: &single[..],
            }),
            vec![0],
        ),
        (
            "both",
            Some(video_run),
            Some(Run {
                base_dts: 0,
                samples: &audio[..],
            }),
            vec![0, video_bytes],
        ),
    ];
    for (name, video_run, audio_run, after_mdat_header) in cases {
        let frag = fragment(3, video_run, audio_run).unwrap();
        let (moof_len, offsets) = data_offsets(&frag);
        let expected: Vec<i32> = after_mdat_header
            .iter()
            .map(|&skip| (moof_len + 8 + skip) as i32)
            .collect();
        assert_eq!(offsets, expected, "{name}");

        // The header is exactly moof + mdat header, and the mdat spans every payload.
        let payload_len: usize = frag.payloads.iter().map(Bytes::len).sum();
        assert_eq!(frag.header.len(), moof_len + 8, "{name}");
        assert_eq!(&frag.header[moof_len + 4..], b"mdat");
        let mdat_size = u32::from_be_bytes(frag.header[moof_len..moof_len + 4].try_into().unwrap());
        assert_eq!(mdat_size as usize, 8 + payload_len, "{name}");

        // And the mp4 crate agrees (incl. the single-sample run, written with first_sample_flags).
        let init = init_segment(Some(&video_config()), Some(&audio_config())).unwrap();
        let file = [&init[..], &frag.to_bytes()].concat();
        let reader = mp4_reader(&file);
        for traf in &reader.moofs[0].trafs {
            let trun = traf.trun.as_ref().unwrap();
            let start = init.len() + trun.data_offset.unwrap() as usize;
            let run = if traf.tfhd.track_id == VIDEO_TRACK_ID {
                video_run
            } else {
                audio_run
            };
            let payload = concat(run.unwrap().samples);
            assert_eq!(&file[start..start + payload.len()], payload, "{name}");
        }
    }
}

#[test]
fn empty_runs_count_as_absent() {
    let audio = audio_samples(2);
    let frag = fragment(
        1,
        Some(Run {
            base_dts: 0,
            samples: &[],
        }),
        Some(Run {
            base_dts: 0,
            samples: &audio,
        }),
    )
    .unwrap();
    let moof = Moof::decode(&mut &frag.to_bytes()[..]).unwrap();
    assert_eq!(moof.traf.len(), 1);
    assert_eq!(moof.traf[0].tfhd.track_id, AUDIO_TRACK_ID);

    let empty = Some(Run {
        base_dts: 0,
        samples: &[],
    });
    assert!(matches!(
        fragment(1, empty, empty),
        Err(Fmp4Error::NoSamples)
    ));
    assert!(matches!(fragment(1, None, None), Err(Fmp4Error::NoSamples)));
}

#[test]
fn fragment_keeps_payloads_without_copying() {
    let video = video_samples();
    let audio = audio_samples(2);
    let frag = fragment(
        9,
        Some(Run {
            base_dts: 0,
            samples: &video,
        }),
        Some(Run {
            base_dts: 0,
            samples: &audio,
        }),
    )
    .unwrap();

    let given: Vec<&Sample> = video.iter().chain(&audio).collect();
    assert_eq!(frag.payloads.len(), given.len());
    for (payload, sample) in frag.payloads.iter().zip(given) {
        assert_eq!(
            payload.as_ptr(),
            sample.data.as_ptr(),
            "same memory, not a copy"
        );
        assert_eq!(payload.len(), sample.data.len());
    }

    let chunks: Vec<&Bytes> = frag.chunks().collect();
    assert_eq!(chunks.len(), 1 + frag.payloads.len());
    assert_eq!(chunks[0], &frag.header);
    assert!(!frag.is_empty());
    assert_eq!(frag.len(), frag.to_bytes().len());
    assert_eq!(
        frag.to_bytes(),
        chunks
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// ffprobe / ffmpeg on real H.264 + AAC

/// A directory under the system temp dir, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("tally-fmp4-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tool_available(name: &str) -> bool {
    Command::new(name)
        .arg("-version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs a tool, asserting it succeeds and prints nothing on stderr; returns stdout.
fn run_quiet(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?} failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "{program} {args:?} reported: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A sample with its decode time, as read from the source file.
struct Timed {
    dts: u64,
    sample: Sample,
}

struct Source {
    video_config: VideoConfig,
    audio_config: AudioConfig,
    video: Vec<Timed>,
    audio: Vec<Timed>,
}

/// Reads the codec configurations with mp4-atom and the samples with the `mp4` crate from a
/// regular (non-fragmented) MP4. (The `mp4` crate cannot locate samples inside fragments.)
fn read_source(path: &Path) -> Source {
    let file = fs::read(path).unwrap();

    let mut rest = &file[..];
    let moov = loop {
        let header = Header::decode(&mut rest).unwrap();
        if header.kind == Moov::KIND {
            break Moov::decode_atom(&header, &mut rest).unwrap();
        }
        rest = &rest[header.size.unwrap()..];
    };
    let mut video_config = None;
    let mut audio_config = None;
    for trak in &moov.trak {
        match &trak.mdia.minf.stbl.stsd.codecs[..] {
            [Codec::Avc1(avc1)] => {
                let mut avcc = Vec::new();
                avc1.avcc.encode_body(&mut avcc).unwrap();
                video_config = Some(VideoConfig {
                    avcc: avcc.into(),
                    width: avc1.visual.width,
                    height: avc1.visual.height,
                    profile: avc1.avcc.avc_profile_indication,
                    compatibility: avc1.avcc.profile_compatibility,
                    level: avc1.avcc.avc_level_indication,
                    nal_length_size: avc1.avcc.length_size,
                });
            }
            [Codec::Mp4a(mp4a)] => {
                let asc = mp4a.esds.es_desc.dec_config.dec_specific.as_ref().unwrap();
                audio_config = Some(AudioConfig {
                    asc: asc.raw.clone().into(),
                    object_type: asc.profile,
                    sample_rate: trak.mdia.mdhd.timescale,
                    channels: mp4a.audio.channel_count as u8,
                });
            }
            other => panic!("unexpected sample entries {other:?}"),
        }
    }

    let mut reader = mp4::Mp4Reader::read_header(Cursor::new(&file), file.len() as u64).unwrap();
    let mut track_samples = |kind: mp4::TrackType| {
        let track_id = reader
            .tracks()
            .values()
            .find(|t| t.track_type().unwrap() == kind)
            .unwrap()
            .track_id();
        let count = reader.sample_count(track_id).unwrap();
        (1..=count)
            .map(|id| {
                let s = reader.read_sample(track_id, id).unwrap().unwrap();
                Timed {
                    dts: s.start_time,
                    sample: Sample {
                        duration: s.duration,
                        cts_offset: s.rendering_offset,
                        keyframe: s.is_sync,
                        data: s.bytes,
                    },
                }
            })
            .collect::<Vec<_>>()
    };
    let video = track_samples(mp4::TrackType::Video);
    let audio = track_samples(mp4::TrackType::Audio);
    Source {
        video_config: video_config.unwrap(),
        audio_config: audio_config.unwrap(),
        video,
        audio,
    }
}

/// (pts, dts, size) of each packet of one stream, from ffprobe.
fn probe_packets(path: &Path, stream_index: u32) -> Vec<(i64, i64, usize)> {
    let stdout = run_quiet(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts,dts,size",
            "-of",
            "csv=p=0",
            path.to_str().unwrap(),
        ],
    );
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[0].parse::<u32>().unwrap() == stream_index).then(|| {
                (
                    fields[1].parse().unwrap(),
                    fields[2].parse().unwrap(),
                    fields[3].parse().unwrap(),
                )
            })
        })
        .collect()
}

#[test]
fn ffprobe_decodes_real_h264_aac_fragments() {
    if !tool_available("ffprobe") || !tool_available("ffmpeg") {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("ffprobe/ffmpeg not installed, but CI=true requires this interop test");
        }
        eprintln!("SKIPPED: ffprobe not installed (ffprobe_decodes_real_h264_aac_fragments)");
        return;
    }
    let dir = ScratchDir::new("ffprobe");
    let clip = dir.0.join("clip.mp4");
    #[rustfmt::skip]
    run_quiet("ffmpeg", &[
        "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
        "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "30", "-sc_threshold", "0",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-shortest",
        "-video_track_timescale", "90000",
        clip.to_str().unwrap(),
    ]);
    let source = read_source(&clip);
    assert_eq!(source.video_config.profile, 0x64);
    assert!(source
        .video
        .iter()
        .any(|t| t.sample.cts_offset != source.video[0].sample.cts_offset));

    // As stored (non-negative offsets, pts delayed), then re-based so the first picture has pts
    // == dts and the B-frames before it in presentation order get negative offsets.
    for negative in [false, true] {
        let shift = if negative {
            source.video[0].sample.cts_offset
        } else {
            0
        };
        let video: Vec<Sample> = source
            .video
            .iter()
            .map(|t| Sample {
                cts_offset: t.sample.cts_offset - shift,
                ..t.sample.clone()
            })
            .collect();
        let audio: Vec<Sample> = source.audio.iter().map(|t| t.sample.clone()).collect();
        if negative {
            assert!(
                video.iter().any(|s| s.cts_offset < 0),
                "some negative offsets"
            );
        }

        // Two fragments, cut at the second keyframe (1 s) in both tracks.
        let cut = source
            .video
            .iter()
            .skip(1)
            .position(|t| t.sample.keyframe)
            .unwrap()
            + 1;
        let cut_dts = source.video[cut].dts;
        let audio_cut = source
            .audio
            .iter()
            .position(|t| t.dts * u64::from(VIDEO_TIMESCALE) >= cut_dts * 48_000)
            .unwrap();
        let fragments = [
            fragment(
                1,
                Some(Run {
                    base_dts: source.video[0].dts,
                    samples: &video[..cut],
                }),
                Some(Run {
                    base_dts: source.audio[0].dts,
                    samples: &audio[..audio_cut],
                }),
            )
            .unwrap(),
            fragment(
                2,
                Some(Run {
                    base_dts: cut_dts,
                    samples: &video[cut..],
                }),
                Some(Run {
                    base_dts: source.audio[audio_cut].dts,
                    samples: &audio[audio_cut..],
                }),
            )
            .unwrap(),
        ];

        let out = dir.0.join(format!("out-{negative}.mp4"));
        let mut file = fs::File::create(&out).unwrap();
        file.write_all(
            &init_segment(Some(&source.video_config), Some(&source.audio_config)).unwrap(),
        )
        .unwrap();
        for chunk in fragments.iter().flat_map(Fragment::chunks) {
            file.write_all(chunk).unwrap();
        }
        drop(file);

        // Decodes every packet without a single error or warning.
        run_quiet(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-i",
                out.to_str().unwrap(),
                "-f",
                "null",
                "-",
            ],
        );

        let expected_video: Vec<(i64, i64, usize)> = source
            .video
            .iter()
            .zip(&video)
            .map(|(t, s)| {
                let dts = t.dts as i64;
                (dts + i64::from(s.cts_offset), dts, s.data.len())
            })
            .collect();
        let probed_video = probe_packets(&out, 0);
        // With negative offsets ffmpeg's mov demuxer keeps every dts and raises every pts by the
        // largest negative offset (its `dts_shift`), so that pts >= dts; dts are exact either way.
        let pts_shift = -i64::from(video.iter().map(|s| s.cts_offset).min().unwrap().min(0));
        assert_eq!(pts_shift > 0, negative);
        let expected_video: Vec<_> = expected_video
            .iter()
            .map(|&(pts, dts, size)| (pts + pts_shift, dts, size))
            .collect();
        assert_eq!(
            probed_video, expected_video,
            "video packets (negative offsets: {negative})"
        );

        let expected_audio: Vec<(i64, i64, usize)> = source
            .audio
            .iter()
            .map(|t| (t.dts as i64, t.dts as i64, t.sample.data.len()))
            .collect();
        assert_eq!(probe_packets(&out, 1), expected_audio, "audio packets");
    }
}
