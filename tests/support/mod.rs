//! Shared by the integration and interop tests: a server on 127.0.0.1:0, HTTP helpers, the
//! playlist rule checker and an fMP4 reader built on the independent `mp4` crate.
#![allow(dead_code)]

use std::{io::Cursor, net::SocketAddr, path::PathBuf, time::Duration};

use bytes::Bytes;
use tally::{
    config::{CameraConfig, Config, EventConfig},
    flv::{self, Tag},
    Server,
};

pub const APP: &str = "live";
pub const EVENT: &str = "demo";
pub const KEY_A: &str = "test-key-camera-a";
pub const KEY_B: &str = "test-key-camera-b";
pub const KEY_C: &str = "test-key-camera-c";

pub fn fixture(name: &str) -> Bytes {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

pub fn fixture_tags(name: &str) -> Vec<Tag> {
    flv::file_tags(fixture(name))
        .expect("fixture is FLV")
        .collect::<Result<_, _>>()
        .expect("fixture tags parse")
}

pub fn test_config() -> Config {
    let mut config = Config::default();
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.rtmp.listen = local;
    config.http.listen = local;
    config.control.listen = local;
    config.control.token = "test-token-123".into();
    config.store.path = fresh_store_path();
    config.events = vec![EventConfig {
        id: EVENT.into(),
        name: "Test event".into(),
        cameras: vec![
            CameraConfig {
                id: "cam1".into(),
                name: "A".into(),
                stream_key: KEY_A.into(),
            },
            CameraConfig {
                id: "cam2".into(),
                name: "B".into(),
                stream_key: KEY_B.into(),
            },
            CameraConfig {
                id: "cam3".into(),
                name: "C".into(),
                stream_key: KEY_C.into(),
            },
        ],
    }];
    config.validate().expect("test config is valid");
    config
}

/// A store file of its own for each server a test starts.
pub fn fresh_store_path() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir()
        .join(format!("tally-test-{}-{n}", std::process::id()))
        .join("tally.db")
}

pub async fn start() -> Server {
    start_with(test_config()).await
}

pub async fn start_with(config: Config) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("tally=debug")
        .with_test_writer()
        .try_init();
    Server::start(config).await.expect("server starts")
}

pub struct Fetched {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

pub async fn get(url: &str) -> Fetched {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    Fetched {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body"),
    }
}

pub fn playlist_url(server: &Server, rendition: &str) -> String {
    format!("http://{}/hls/{EVENT}/{rendition}.m3u8", server.http_addr)
}

/// Polls the playlist until `ready` holds for its parsed form; panics after 20 s (a hang, not a
/// timing assertion).
pub async fn wait_for_playlist(
    server: &Server,
    rendition: &str,
    ready: impl Fn(&m3u8_rs::MediaPlaylist) -> bool,
) -> (String, m3u8_rs::MediaPlaylist) {
    let url = playlist_url(server, rendition);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let fetched = get(&url).await;
        if fetched.status == 200 {
            let text = String::from_utf8(fetched.body.to_vec()).expect("utf-8 playlist");
            let playlist = check_playlist(&text);
            if ready(&playlist) {
                return (text, playlist);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "playlist {url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Parses with m3u8-rs and checks our own rules on one playlist snapshot.
pub fn check_playlist(text: &str) -> m3u8_rs::MediaPlaylist {
    let playlist = m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("m3u8-rs rejects the playlist: {e:?}\n{text}"));
    assert!(
        playlist.version.unwrap_or(0) >= 6,
        "EXT-X-MAP needs version >= 6:\n{text}"
    );
    assert!(
        !playlist.segments.is_empty(),
        "a served playlist lists segments"
    );
    assert!(
        playlist.segments[0].map.is_some(),
        "the first segment is under an EXT-X-MAP:\n{text}"
    );
    for segment in &playlist.segments {
        let rounded = segment.duration.round() as u64;
        assert!(
            rounded <= playlist.target_duration,
            "EXTINF {} > TARGETDURATION {}:\n{text}",
            segment.duration,
            playlist.target_duration
        );
        assert!(segment.duration > 0.0);
        assert!(
            !segment.uri.contains("://") && !segment.uri.starts_with('/'),
            "relative URIs"
        );
        assert!(
            segment.program_date_time.is_some(),
            "every segment has PROGRAM-DATE-TIME"
        );
        for key in [KEY_A, KEY_B, KEY_C] {
            assert!(!segment.uri.contains(key), "stream key leaked into a URI");
        }
    }
    for key in [KEY_A, KEY_B, KEY_C] {
        assert!(!text.contains(key), "stream key leaked into the playlist");
    }
    playlist
}

/// Checks the rules that relate two successive snapshots of one playlist.
pub fn check_successive(old: &m3u8_rs::MediaPlaylist, new: &m3u8_rs::MediaPlaylist) {
    assert_eq!(
        old.target_duration, new.target_duration,
        "TARGETDURATION never changes"
    );
    assert!(
        new.media_sequence >= old.media_sequence,
        "MEDIA-SEQUENCE never decreases"
    );
    let removed = (new.media_sequence - old.media_sequence) as usize;
    let removed_discontinuities = old
        .segments
        .iter()
        .take(removed)
        .filter(|s| s.discontinuity)
        .count() as u64;
    assert_eq!(
        new.discontinuity_sequence,
        old.discontinuity_sequence + removed_discontinuities,
        "DISCONTINUITY-SEQUENCE counts the discontinuities that left the window"
    );
    // Segments still listed keep their URI, duration and tags.
    for (a, b) in old.segments.iter().skip(removed).zip(&new.segments) {
        assert_eq!(a.uri, b.uri);
        assert_eq!(a.discontinuity, b.discontinuity);
    }
}

pub fn resolve(server: &Server, rendition: &str, uri: &str) -> String {
    let _ = rendition;
    format!("http://{}/hls/{EVENT}/{uri}", server.http_addr)
}

/// One track's samples of one fragment, as the independent `mp4` crate reads them.
#[derive(Debug, Clone)]
pub struct TrackRun {
    pub track_id: u32,
    pub base_dts: u64,
    pub durations: Vec<u32>,
    pub sizes: Vec<u32>,
    pub cts: Vec<i32>,
    pub flags: Vec<u32>,
}

#[derive(Debug)]
pub struct Parsed {
    /// (track id, timescale, handler) per track of the init segment.
    pub tracks: Vec<(u32, u32, String)>,
    pub width: Option<u16>,
    pub height: Option<u16>,
    pub sample_rate: Option<u32>,
    pub runs: Vec<TrackRun>,
}

/// Reads an init segment followed by media segments with the `mp4` crate.
pub fn parse_fmp4(init: &[u8], segments: &[Bytes]) -> Parsed {
    let mut all = init.to_vec();
    for s in segments {
        all.extend_from_slice(s);
    }
    let size = all.len() as u64;
    let reader =
        mp4::Mp4Reader::read_header(Cursor::new(all), size).expect("mp4 crate reads the fMP4");
    assert!(reader.moov.mvex.is_some(), "init has mvex");
    let mut parsed = Parsed {
        tracks: vec![],
        width: None,
        height: None,
        sample_rate: None,
        runs: vec![],
    };
    for trak in &reader.moov.traks {
        assert!(trak.edts.is_none(), "no edit list");
        let id = trak.tkhd.track_id;
        let handler = trak.mdia.hdlr.handler_type.to_string();
        parsed.tracks.push((id, trak.mdia.mdhd.timescale, handler));
        if let Some(avc1) = &trak.mdia.minf.stbl.stsd.avc1 {
            parsed.width = Some(avc1.width);
            parsed.height = Some(avc1.height);
        }
        if let Some(mp4a) = &trak.mdia.minf.stbl.stsd.mp4a {
            parsed.sample_rate = Some(mp4a.samplerate.value() as u32);
        }
    }
    for moof in &reader.moofs {
        for traf in &moof.trafs {
            let trun = traf.trun.as_ref().expect("traf has trun");
            assert_eq!(
                trun.version, 1,
                "trun version 1 (signed composition offsets)"
            );
            parsed.runs.push(TrackRun {
                track_id: traf.tfhd.track_id,
                base_dts: traf.tfdt.as_ref().expect("tfdt").base_media_decode_time,
                durations: trun.sample_durations.clone(),
                sizes: trun.sample_sizes.clone(),
                cts: trun.sample_cts.iter().map(|&c| c as i32).collect(),
                flags: trun.sample_flags.clone(),
            });
        }
    }
    parsed
}

/// Fetches the init and every listed segment of a playlist.
pub async fn fetch_media(
    server: &Server,
    rendition: &str,
    playlist: &m3u8_rs::MediaPlaylist,
) -> (Bytes, Vec<Bytes>) {
    let map = playlist.segments[0].map.as_ref().unwrap();
    let init = get(&resolve(server, rendition, &map.uri)).await;
    assert_eq!(init.status, 200);
    let mut segments = Vec::new();
    for segment in &playlist.segments {
        let fetched = get(&resolve(server, rendition, &segment.uri)).await;
        assert_eq!(fetched.status, 200, "{}", segment.uri);
        segments.push(fetched.body);
    }
    (init.body, segments)
}

/// Counts (video, audio) media frames in FLV tags, excluding sequence headers.
pub fn count_frames(tags: &[Tag]) -> (usize, usize) {
    let video = tags
        .iter()
        .filter(|t| matches!(flv::parse_video(&t.body), Ok(flv::VideoTag::AvcNalu { .. })))
        .count();
    let audio = tags
        .iter()
        .filter(|t| {
            t.kind == flv::TagKind::Audio
                && matches!(flv::parse_audio(&t.body), Ok(flv::AudioTag::AacRaw(_)))
        })
        .count();
    (video, audio)
}

/// Whether an interop tool is installed; missing tools fail under CI and skip loudly elsewhere.
pub fn require_tool(name: &str) -> bool {
    let found = std::process::Command::new(name)
        .arg("-version")
        .output()
        .is_ok()
        || std::process::Command::new(name)
            .arg("--version")
            .output()
            .is_ok();
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is required for this interop test (CI=true); .ci/run installs it");
        }
        eprintln!("SKIPPED: {name} is not installed; run bash .ci/run to install interop tools");
    }
    found
}

/// The fixture's tags repeated `loops` times on one continuous timeline, as a camera that keeps
/// shooting: later rounds skip the metadata and sequence headers, video keeps its frame spacing
/// across the loop point (the period is the video duration plus one frame) and audio that would
/// overlap the previous round is skipped. A steady cadence matters: a step at each loop makes
/// ffmpeg guess a slightly wrong frame rate and round two pictures onto one timestamp.
pub fn looped_tags(fixture: &str, loops: u32) -> Vec<Tag> {
    let tags = fixture_tags(fixture);
    let pictures: Vec<u32> = tags
        .iter()
        .filter(|t| matches!(flv::parse_video(&t.body), Ok(flv::VideoTag::AvcNalu { .. })))
        .map(|t| t.timestamp_ms)
        .collect();
    let (first, last) = (pictures[0], *pictures.last().expect("fixture has video"));
    let spacing = f64::from(last - first) / (pictures.len() - 1) as f64;
    let period = (f64::from(last) + spacing).round() as u32;
    let mut out = Vec::with_capacity(tags.len() * loops as usize);
    let mut last_audio: Option<u32> = None;
    for round in 0..loops {
        for tag in &tags {
            let video = flv::parse_video(&tag.body);
            let header = tag.kind == flv::TagKind::Script
                || matches!(video, Ok(flv::VideoTag::AvcSequenceHeader(_)))
                || matches!(
                    flv::parse_audio(&tag.body),
                    Ok(flv::AudioTag::AacSequenceHeader(_))
                );
            let end_of_sequence = matches!(video, Ok(flv::VideoTag::AvcEndOfSequence));
            if (round > 0 && header) || end_of_sequence {
                continue;
            }
            let mut tag = tag.clone();
            tag.timestamp_ms += round * period;
            if tag.kind == flv::TagKind::Audio && !header {
                if last_audio.is_some_and(|last| tag.timestamp_ms < last + 20) {
                    continue;
                }
                last_audio = Some(tag.timestamp_ms);
            }
            out.push(tag);
        }
    }
    out
}

/// Publishes a fixture in real time, looped `loops` times, until done or aborted (abort the
/// handle to "pull the cable": the socket closes without a goodbye).
pub async fn publish_live(
    server: &Server,
    key: &str,
    fixture: &str,
    loops: u32,
) -> tokio::task::JoinHandle<()> {
    use tally::rtmp::client::{PublishOptions, Publisher};
    let options = PublishOptions {
        realtime: true,
        ..Default::default()
    };
    let mut publisher = Publisher::connect(server.rtmp_addr, APP, key, options)
        .await
        .expect("publish accepted");
    let tags = looped_tags(fixture, loops);
    tokio::spawn(async move {
        publisher.send_tags(&tags).await.expect("tags sent");
        publisher.finish().await.expect("clean stop");
    })
}
