//! Packager benchmarks on a synthetic 1080p60 camera: 60 fps H.264 at ~12 Mbit/s (a 200 KB
//! keyframe every 2 s, 22 KB pictures between, B-frame composition offsets) with 48 kHz AAC,
//! interleaved by time as an encoder sends them.
//!
//! - `packager/throughput`, `packager/frames`: 10 s of media (5 segments at a 2 s target) through
//!   a fresh packager, in bytes/s and frames/s.
//! - `baseline/memcpy`: the same payload bytes copied once into a preallocated buffer, for scale.
//!   The packager copies no payload, so it should stay within a small factor of this.
//! - `packager/segment_close_latency`: only the `push` of the keyframe that closes a segment; it
//!   cuts, writes the fragment, appends to the store and renders the playlist before returning.
//!
//! `cargo bench --bench packager -- --quick` (criterion's quick mode: no warm-up, stops once the
//! estimate is stable) is the short run for CI.

use std::{hint::black_box, sync::Arc, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use chrono::Utc;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use tally::codec::parse_avcc;
use tally::hls::packager::Packager;
use tally::hls::segmenter::playlist_target_duration;
use tally::hls::store::Rendition;
use tally::media::{AudioConfig, Frame, Track, VideoConfig, AAC_FRAME_SAMPLES, VIDEO_TIMESCALE};

/// AVCDecoderConfigurationRecord from x264 (High, level 4.2, 1920x1080), captured with
/// `ffmpeg -f lavfi -i testsrc2=size=1920x1080:rate=60 -c:v libx264 -profile:v high -f flv`.
const AVCC_1080P_HIGH: &str = "0164002affe1001b6764002aacd940780227e5c044000003000400000301e03c\
                               60c65801000468ef8fcbfdf8f800";
/// AudioSpecificConfig: AAC-LC, 48 kHz, stereo.
const ASC_48K_STEREO: [u8; 2] = [0x11, 0x90];

const TARGET: Duration = Duration::from_secs(2);
const WINDOW: usize = 6;
const FPS: i64 = 60;
/// One picture at 60 fps in 90 kHz ticks.
const FRAME_TICKS: i64 = VIDEO_TIMESCALE as i64 / FPS;
/// A keyframe every 2 s: one per segment at the 2 s target.
const GOP: i64 = 2 * FPS;
/// Pictures per mini-GOP in decode order: a reference picture, then up to three B-pictures.
const MINI_GOP: i64 = 4;
const KEYFRAME_BYTES: usize = 200_000;
const PICTURE_BYTES: usize = 22_000;
const AUDIO_RATE: u32 = 48_000;
const AUDIO_BYTES: usize = 380;
/// Length of the synthetic stream in seconds.
const SECONDS: i64 = 10;

/// The synthetic stream, built once; every benchmark pushes clones of these frames (each clone
/// is two reference counts, never a payload copy).
struct Stream {
    frames: Vec<Frame>,
    /// Sum of all payload lengths: what `Throughput::Bytes` reports.
    payload_bytes: u64,
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn video_config() -> Arc<VideoConfig> {
    let config = parse_avcc(Bytes::from(hex(AVCC_1080P_HIGH))).expect("valid avcC");
    assert_eq!((config.width, config.height), (1920, 1080));
    assert_eq!(config.profile, 100, "High profile");
    Arc::new(config)
}

fn audio_config() -> Arc<AudioConfig> {
    let config = tally::codec::parse_asc(Bytes::copy_from_slice(&ASC_48K_STEREO)).expect("ASC");
    assert_eq!(config.sample_rate, AUDIO_RATE);
    Arc::new(config)
}

/// `len` bytes: `prefix`, then noise seeded by `seed`, so payloads are distinct allocations
/// with distinct contents.
fn payload(prefix: &[u8], len: usize, seed: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(len);
    buf.put_slice(prefix);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.put_u8(x as u8);
    }
    buf.freeze()
}

/// An AVCC picture of `len` bytes: one 4-byte length-prefixed IDR or non-IDR slice NAL unit.
fn picture(len: usize, keyframe: bool, seed: u64) -> Bytes {
    let mut prefix = ((len - 4) as u32).to_be_bytes().to_vec();
    prefix.push(if keyframe { 0x65 } else { 0x41 });
    payload(&prefix, len, seed)
}

/// Composition offset of the `index`th picture of a GOP in decode order, for a closed GOP of
/// I then mini-GOPs "P B B B" (decode order) shown as "B B B P": the keyframe shows one picture
/// late, a reference picture after the B-pictures it precedes, B-pictures at their decode time.
fn cts_offset(index: i64) -> i32 {
    if index == 0 {
        return FRAME_TICKS as i32;
    }
    let position = (index - 1) % MINI_GOP;
    let group_len = MINI_GOP.min(GOP - (index - position));
    let ticks = if position == 0 {
        group_len * FRAME_TICKS
    } else {
        0
    };
    ticks as i32
}

fn stream(seconds: i64) -> Stream {
    let (video, audio) = (video_config(), audio_config());
    let video_count = seconds * FPS;
    let audio_count = seconds * i64::from(AUDIO_RATE) / i64::from(AAC_FRAME_SAMPLES);
    let mut frames = Vec::with_capacity((video_count + audio_count) as usize);
    let (mut v, mut a) = (0, 0);
    while v < video_count || a < audio_count {
        let video_time = v * FRAME_TICKS;
        let audio_time =
            a * i64::from(AAC_FRAME_SAMPLES) * i64::from(VIDEO_TIMESCALE) / i64::from(AUDIO_RATE);
        if v < video_count && (video_time <= audio_time || a >= audio_count) {
            let keyframe = v % GOP == 0;
            let len = if keyframe {
                KEYFRAME_BYTES
            } else {
                PICTURE_BYTES
            };
            frames.push(Frame {
                track: Track::Video(video.clone()),
                dts: video_time,
                cts_offset: cts_offset(v % GOP),
                keyframe,
                discontinuity: false,
                payload: picture(len, keyframe, v as u64),
                arrival: std::time::Instant::now(),
            });
            v += 1;
        } else {
            frames.push(Frame {
                track: Track::Audio(audio.clone()),
                dts: a * i64::from(AAC_FRAME_SAMPLES),
                cts_offset: 0,
                keyframe: true,
                discontinuity: false,
                // 360..=400 bytes, ~146 kbit/s.
                payload: payload(&[], AUDIO_BYTES - 20 + (a as usize * 7) % 41, !(a as u64)),
                arrival: std::time::Instant::now(),
            });
            a += 1;
        }
    }
    let payload_bytes = frames.iter().map(|f| f.payload.len() as u64).sum();
    Stream {
        frames,
        payload_bytes,
    }
}

fn packager() -> Packager {
    let rendition = Rendition::new("cam1", "bench", playlist_target_duration(TARGET), WINDOW);
    Packager::new(Arc::new(rendition), TARGET)
}

/// Pushes every frame and flushes; the packager is returned so that criterion drops it (and
/// the rendition's segments) outside the timed region.
fn package_all(frames: &[Frame], mut packager: Packager) -> Packager {
    for frame in frames {
        // camera.rs stamps every push with the wall clock, so the benchmark does too.
        black_box(packager.push(frame.clone(), Utc::now()).expect("push"));
    }
    black_box(packager.flush().expect("flush"));
    packager
}

/// A packager fed everything before the keyframe at `TARGET`, and that keyframe.
fn primed(stream: &Stream) -> (Packager, Frame) {
    let target = (TARGET.as_secs_f64() * f64::from(VIDEO_TIMESCALE)) as i64;
    let closing = stream
        .frames
        .iter()
        .position(|f| f.keyframe && f.track.is_video() && f.dts == target)
        .expect("a keyframe at the target");
    let mut packager = packager();
    for frame in &stream.frames[..closing] {
        assert!(packager.push(frame.clone(), Utc::now()).unwrap().is_none());
    }
    (packager, stream.frames[closing].clone())
}

fn benches(c: &mut Criterion) {
    let stream = stream(SECONDS);
    let frames = &stream.frames;

    // Sanity, outside any timing: 5 segments come out and the last one is listed.
    let done = package_all(frames, packager());
    let snapshot = done.rendition().snapshot();
    assert_eq!(snapshot.next_sequence, (SECONDS / 2) as u64, "5 segments");
    let listed = String::from_utf8_lossy(&snapshot.playlist).into_owned();
    assert!(
        listed.contains(&done.rendition().segment_uri(4)),
        "{listed}"
    );
    drop(done);

    let mut group = c.benchmark_group("packager/throughput");
    group.throughput(Throughput::Bytes(stream.payload_bytes));
    group.bench_function("1080p60_10s", |b| {
        b.iter_batched(packager, |p| package_all(frames, p), BatchSize::SmallInput)
    });
    group.finish();

    let mut group = c.benchmark_group("packager/frames");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("1080p60_10s", |b| {
        b.iter_batched(packager, |p| package_all(frames, p), BatchSize::SmallInput)
    });
    group.finish();

    let mut group = c.benchmark_group("baseline/memcpy");
    group.throughput(Throughput::Bytes(stream.payload_bytes));
    let mut copy = Vec::with_capacity(stream.payload_bytes as usize);
    group.bench_function("1080p60_10s", |b| {
        b.iter(|| {
            copy.clear();
            for frame in frames {
                copy.extend_from_slice(&frame.payload);
            }
            black_box(copy.as_ptr());
        })
    });
    group.finish();
    drop(copy);

    // The close is measured alone; check once, untimed, that it lists the segment it returns.
    let (mut packager, closing) = primed(&stream);
    let segment = packager
        .push(closing, Utc::now())
        .unwrap()
        .expect("the keyframe closes a segment");
    let snapshot = packager.rendition().snapshot();
    let listed = String::from_utf8_lossy(&snapshot.playlist).into_owned();
    assert_eq!(snapshot.next_sequence, segment.sequence + 1);
    assert!(
        listed.contains(&packager.rendition().segment_uri(segment.sequence)),
        "{listed}"
    );

    let mut group = c.benchmark_group("packager/segment_close_latency");
    group.bench_function("1080p60_first_segment", |b| {
        b.iter_batched(
            || primed(&stream),
            |(mut packager, closing)| {
                let segment = packager.push(closing, Utc::now()).unwrap();
                (packager, segment)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(packager_benches, benches);
criterion_main!(packager_benches);
