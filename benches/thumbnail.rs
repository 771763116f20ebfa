//! Thumbnail benchmarks: one keyframe decoded with a fresh OpenH264 decoder, converted to RGB,
//! optionally scaled, and encoded as a quality-80 JPEG, which is what a request for a keyframe
//! nobody has asked about yet costs.
//!
//! - `thumbnail/720p/full`, `thumbnail/720p/320`: the IDR picture of `fixtures/key-720p.flv`
//!   (testsrc2, High, 20 KB), at full size and at `?width=320`.
//! - `thumbnail/1080p/full`, `thumbnail/1080p/320`: the same for `fixtures/key-1080p.flv` (36 KB).
//! - `thumbnail/{720p,1080p}/decode`: the decode to RGB alone; the rest of `full` is the JPEG
//!   encoder, the rest of `320` the scaling (and a small JPEG).
//!
//! testsrc2 compresses well; a camera's keyframe of 100-300 KB costs more to entropy-decode.
//! `cargo bench --bench thumbnail -- --quick` is the short run.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};

use tally::codec::parse_avcc;
use tally::flv::{self, TagKind, VideoTag};
use tally::media::VideoConfig;
use tally::thumbnail::{decode, render};

/// The configuration from the first sequence header, and the first keyframe after it.
fn keyframe(file: &'static [u8]) -> (VideoConfig, Bytes) {
    let mut config = None;
    for tag in flv::file_tags(Bytes::from_static(file)).expect("FLV") {
        let tag = tag.expect("tag");
        if tag.kind != TagKind::Video {
            continue;
        }
        match flv::parse_video(&tag.body).expect("video tag") {
            VideoTag::AvcSequenceHeader(record) => config = Some(parse_avcc(record).expect("avcC")),
            VideoTag::AvcNalu {
                keyframe: true,
                data,
                ..
            } => return (config.expect("sequence header first"), data),
            _ => {}
        }
    }
    panic!("no keyframe in the fixture")
}

fn thumbnails(c: &mut Criterion) {
    let fixtures: [(&str, &'static [u8]); 2] = [
        ("720p", include_bytes!("../fixtures/key-720p.flv")),
        ("1080p", include_bytes!("../fixtures/key-1080p.flv")),
    ];
    let mut group = c.benchmark_group("thumbnail");
    for (name, file) in fixtures {
        let (config, data) = keyframe(file);
        group.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| decode(black_box(&config), black_box(&data)).expect("decodes"))
        });
        for (label, width) in [("full", None), ("320", Some(320))] {
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| render(black_box(&config), black_box(&data), width).expect("renders"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, thumbnails);
criterion_main!(benches);
