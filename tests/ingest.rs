//! End to end over real sockets, with no external tools: our own publisher pushes the committed
//! fixtures to a server on 127.0.0.1:0, and the playlist and segments are fetched over HTTP and
//! checked with independent parsers (m3u8-rs, the `mp4` crate).

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::*;
use tally::rtmp::client::{ClientError, PublishOptions, Publisher};
use tally::Server;

async fn publish(server: &Server, key: &str, fixture: &str, options: PublishOptions) {
    let mut publisher = Publisher::connect(server.rtmp_addr, APP, key, options)
        .await
        .expect("publish accepted");
    publisher
        .send_tags(&fixture_tags(fixture))
        .await
        .expect("tags sent");
    publisher.finish().await.expect("clean stop");
}

/// Publishes a whole fixture to `camera` and waits until its last segment is listed.
async fn publish_all(server: &Server, key: &str, camera: &str, fixture: &str) {
    publish(server, key, fixture, PublishOptions::default()).await;
    wait_offline(server, camera).await;
}

/// Waits until the camera's publisher is gone (its last segment is then listed).
async fn wait_offline(server: &Server, camera: &str) {
    let camera = server
        .registry
        .camera(EVENT, camera)
        .expect("camera exists");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while camera.is_live() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publisher never went offline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn published_once(
    options: PublishOptions,
    fixture: &str,
) -> (m3u8_rs::MediaPlaylist, Parsed) {
    let server = start().await;
    publish(&server, KEY_A, fixture, options).await;
    wait_offline(&server, "cam1").await;
    let (_, playlist) = wait_for_playlist(&server, "cam1", |_| true).await;
    let (init, segments) = fetch_media(&server, "cam1", &playlist).await;
    let parsed = parse_fmp4(&init, &segments);
    server.shutdown().await;
    (playlist, parsed)
}

fn runs(parsed: &Parsed, track_id: u32) -> Vec<&TrackRun> {
    parsed
        .runs
        .iter()
        .filter(|r| r.track_id == track_id)
        .collect()
}

/// Decode time just past a run's last sample.
fn run_end(run: &TrackRun) -> u64 {
    run.base_dts + run.durations.iter().map(|&d| u64::from(d)).sum::<u64>()
}

/// Each track's runs follow each other with no gap and no overlap.
fn assert_gapless(parsed: &Parsed, track_id: u32) {
    for pair in runs(parsed, track_id).windows(2) {
        assert_eq!(
            pair[1].base_dts,
            run_end(pair[0]),
            "track {track_id} continues exactly"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_of_the_fixture_is_packaged() {
    let tags = fixture_tags("cam-a.flv");
    let (video_frames, audio_frames) = count_frames(&tags);
    let (playlist, parsed) = published_once(PublishOptions::default(), "cam-a.flv").await;

    assert_eq!(playlist.target_duration, 3);
    assert!(playlist.segments.len() >= 3, "6 s at a 2 s target");
    assert_eq!(
        parsed.tracks,
        vec![
            (1, 90_000, "vide".to_string()),
            (2, 48_000, "soun".to_string())
        ]
    );
    assert_eq!((parsed.width, parsed.height), (Some(320), Some(240)));
    assert_eq!(parsed.sample_rate, Some(48_000));

    let video = runs(&parsed, 1);
    let audio = runs(&parsed, 2);
    assert_eq!(
        video.iter().map(|r| r.sizes.len()).sum::<usize>(),
        video_frames
    );
    assert_eq!(
        audio.iter().map(|r| r.sizes.len()).sum::<usize>(),
        audio_frames
    );
    // Sample sizes are the FLV payloads minus their 5- and 2-byte tag headers.
    let flv_video: Vec<u32> = tags
        .iter()
        .filter_map(|t| match tally::flv::parse_video(&t.body) {
            Ok(tally::flv::VideoTag::AvcNalu { data, .. }) => Some(data.len() as u32),
            _ => None,
        })
        .collect();
    let mp4_video: Vec<u32> = video.iter().flat_map(|r| r.sizes.iter().copied()).collect();
    assert_eq!(mp4_video, flv_video);
    // B-frames: composition offsets are present and vary.
    assert!(video.iter().flat_map(|r| &r.cts).any(|&c| c > 0));
    // Every segment starts with a sync sample.
    for run in &video {
        assert_eq!(
            run.flags[0] & 0x0001_0000,
            0,
            "first sample is a sync sample"
        );
    }
    assert_gapless(&parsed, 1);
    assert_gapless(&parsed, 2);
    // Audio and video start (are presented) within one frame of each other.
    let v0 = (video[0].base_dts as f64 + f64::from(video[0].cts[0])) / 90_000.0;
    let a0 = audio[0].base_dts as f64 / 48_000.0;
    assert!((v0 - a0).abs() <= 1.0 / 30.0, "video {v0} vs audio {a0}");
    // EXTINF adds up to the video media time.
    let media: f64 = video
        .iter()
        .flat_map(|r| &r.durations)
        .map(|&d| f64::from(d))
        .sum::<f64>()
        / 90_000.0;
    let listed: f64 = playlist
        .segments
        .iter()
        .map(|s| f64::from(s.duration))
        .sum();
    assert!(
        (media - listed).abs() < 0.001 * playlist.segments.len() as f64,
        "{media} vs {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_stream_variations_deliver_the_same_media() {
    let (_, baseline) = published_once(PublishOptions::default(), "cam-a.flv").await;
    let sizes = |p: &Parsed| -> Vec<(u32, Vec<u32>)> {
        p.runs
            .iter()
            .map(|r| (r.track_id, r.sizes.clone()))
            .collect()
    };
    let durations =
        |p: &Parsed| -> Vec<u32> { p.runs.iter().flat_map(|r| r.durations.clone()).collect() };
    let variations = [
        (
            "interleaved chunks, 2- and 3-byte csids, extended timestamps repeated on type 3",
            PublishOptions {
                chunk_size: 128,
                audio_csid: 64,
                video_csid: 65_599,
                interleave: true,
                timestamp_offset: 0xFF_FF00,
                repeat_extended_timestamp: true,
                ..Default::default()
            },
        ),
        (
            "extended timestamps not repeated on type 3 (some librtmp builds)",
            PublishOptions {
                chunk_size: 128,
                audio_csid: 320,
                video_csid: 63,
                interleave: true,
                timestamp_offset: 0xFF_FF00,
                repeat_extended_timestamp: false,
                ..Default::default()
            },
        ),
        (
            "OBS: audio and video share csid 4",
            PublishOptions {
                chunk_size: 4096,
                audio_csid: 4,
                video_csid: 4,
                ..Default::default()
            },
        ),
        (
            "set chunk size 2^31-1",
            PublishOptions {
                chunk_size: 0x7FFF_FFFF,
                ..Default::default()
            },
        ),
        (
            "aggregate messages",
            PublishOptions {
                aggregate: 8,
                ..Default::default()
            },
        ),
        (
            "32-bit timestamp wrap mid-stream",
            PublishOptions {
                timestamp_offset: u32::MAX - 2_000,
                ..Default::default()
            },
        ),
    ];
    for (name, options) in variations {
        let (playlist, parsed) = published_once(options, "cam-a.flv").await;
        assert_eq!(
            sizes(&parsed),
            sizes(&baseline),
            "{name}: same samples in the same segments"
        );
        assert_eq!(
            durations(&parsed),
            durations(&baseline),
            "{name}: same timing"
        );
        assert!(
            playlist.segments.iter().all(|s| !s.discontinuity),
            "{name}: no spurious discontinuity"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_publishers_are_refused_and_harm_no_one() {
    let server = start().await;
    let code = |r: Result<Publisher, ClientError>| match r {
        Err(ClientError::Refused(code)) => code,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("publish should be refused"),
    };
    let bad_key = Publisher::connect(
        server.rtmp_addr,
        APP,
        "no-such-key",
        PublishOptions::default(),
    )
    .await;
    assert_eq!(code(bad_key), "NetStream.Publish.BadName");
    let bad_app =
        Publisher::connect(server.rtmp_addr, "other", KEY_A, PublishOptions::default()).await;
    assert_eq!(code(bad_app), "NetConnection.Connect.Rejected");

    // A live camera refuses a second publisher, and the first carries on.
    let mut first = Publisher::connect(server.rtmp_addr, APP, KEY_A, PublishOptions::default())
        .await
        .unwrap();
    let second = Publisher::connect(server.rtmp_addr, APP, KEY_A, PublishOptions::default()).await;
    assert_eq!(code(second), "NetStream.Publish.BadName");

    // Garbage instead of a handshake, and garbage after one: both closed.
    // The second completes a plain handshake, then opens a chunk stream with a type-3 header.
    let after_handshake: Vec<u8> = [vec![3u8], vec![0u8; 1536 * 2], vec![0xC5; 64]].concat();
    for garbage in [b"GET / HTTP/1.1\r\n\r\n".to_vec(), after_handshake] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(server.rtmp_addr)
            .await
            .unwrap();
        socket.write_all(&garbage).await.unwrap();
        let mut sink = vec![0u8; 8192];
        let closed = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match socket.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "server closes a connection that sends garbage"
        );
    }

    // A publisher that vanishes mid-GOP: its partial segment is listed, the camera frees up.
    let tags = fixture_tags("cam-b.flv");
    let mut vanishing = Publisher::connect(server.rtmp_addr, APP, KEY_B, PublishOptions::default())
        .await
        .unwrap();
    vanishing
        .send_tags(&tags[..tags.len() * 2 / 3])
        .await
        .unwrap();
    drop(vanishing);
    wait_offline(&server, "cam2").await;
    let (_, cam2) = wait_for_playlist(&server, "cam2", |_| true).await;
    let listed: f32 = cam2.segments.iter().map(|s| s.duration).sum();
    assert!(
        listed > 3.0,
        "the media before the cut is kept ({listed} s)"
    );

    first.send_tags(&fixture_tags("cam-a.flv")).await.unwrap();
    first.finish().await.unwrap();
    wait_offline(&server, "cam1").await;
    let (_, playlist) = wait_for_playlist(&server, "cam1", |_| true).await;
    let (init, segments) = fetch_media(&server, "cam1", &playlist).await;
    let parsed = parse_fmp4(&init, &segments);
    let (video_frames, _) = count_frames(&fixture_tags("cam-a.flv"));
    assert_eq!(
        runs(&parsed, 1)
            .iter()
            .map(|r| r.sizes.len())
            .sum::<usize>(),
        video_frames
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_continues_the_playlist_after_a_discontinuity() {
    let server = start().await;
    publish_all(&server, KEY_A, "cam1", "cam-a.flv").await;
    let (_, before) = wait_for_playlist(&server, "cam1", |_| true).await;
    publish_all(&server, KEY_A, "cam1", "cam-a.flv").await;
    let (text, after) = wait_for_playlist(&server, "cam1", |p| {
        p.segments.iter().any(|s| s.discontinuity)
    })
    .await;
    check_successive(&before, &after);
    assert_eq!(
        after.segments.iter().filter(|s| s.discontinuity).count(),
        1,
        "{text}"
    );
    // Same encoder settings: one init segment serves both sessions.
    assert_eq!(text.matches("#EXT-X-MAP").count(), 1, "{text}");
    let (init, segments) = fetch_media(&server, "cam1", &after).await;
    let parsed = parse_fmp4(&init, &segments);
    // Output time keeps rising across the reconnect: no run overlaps the one before it.
    for track in [1, 2] {
        for pair in runs(&parsed, track).windows(2) {
            let end = run_end(pair[0]);
            assert!(
                pair[1].base_dts >= end,
                "track {track}: {} starts before {end}",
                pair[1].base_dts
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_codec_configuration_gets_a_new_init_segment() {
    let server = start().await;
    publish_all(&server, KEY_A, "cam1", "cam-a.flv").await;
    publish_all(&server, KEY_A, "cam1", "cam-b.flv").await;
    let (text, playlist) = wait_for_playlist(&server, "cam1", |p| {
        p.segments.iter().any(|s| s.discontinuity)
    })
    .await;
    let maps: Vec<&m3u8_rs::MediaSegment> = playlist
        .segments
        .iter()
        .filter(|s| s.map.is_some())
        .collect();
    assert_eq!(maps.len(), 2, "{text}");
    assert!(
        maps[1].discontinuity,
        "the new EXT-X-MAP starts at the discontinuity"
    );
    let split = playlist
        .segments
        .iter()
        .position(|s| s.discontinuity)
        .unwrap();
    let mut dims = Vec::new();
    for part in [&playlist.segments[..split], &playlist.segments[split..]] {
        let init = get(&resolve(
            &server,
            "cam1",
            &part[0].map.as_ref().unwrap().uri,
        ))
        .await
        .body;
        let mut media = Vec::new();
        for s in part {
            media.push(get(&resolve(&server, "cam1", &s.uri)).await.body);
        }
        let parsed = parse_fmp4(&init, &media);
        dims.push((parsed.width, parsed.height, parsed.sample_rate));
    }
    assert_eq!(
        dims,
        vec![
            (Some(320), Some(240), Some(48_000)),
            (Some(640), Some(360), Some(44_100))
        ]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_audio_is_dropped_and_video_kept() {
    let tags = fixture_tags("mp3-audio.flv");
    let (video_frames, _) = count_frames(&tags);
    let (_, parsed) = published_once(PublishOptions::default(), "mp3-audio.flv").await;
    assert_eq!(parsed.tracks, vec![(1, 90_000, "vide".to_string())]);
    assert_eq!(
        runs(&parsed, 1)
            .iter()
            .map(|r| r.sizes.len())
            .sum::<usize>(),
        video_frames
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_streams_cut_on_audio() {
    let (_, audio_frames) = count_frames(&fixture_tags("audio-only.flv"));
    let (playlist, parsed) = published_once(PublishOptions::default(), "audio-only.flv").await;
    assert_eq!(parsed.tracks, vec![(2, 48_000, "soun".to_string())]);
    assert_eq!(
        runs(&parsed, 2)
            .iter()
            .map(|r| r.sizes.len())
            .sum::<usize>(),
        audio_frames
    );
    assert!(playlist.segments.len() >= 2);
    assert!((playlist.segments[0].duration - 2.0).abs() < 0.05);
    assert_gapless(&parsed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_contract() {
    let server = start().await;
    let not_live = get(&playlist_url(&server, "cam1")).await;
    assert_eq!(not_live.status, 404, "no playlist before the first segment");
    assert_eq!(get(&playlist_url(&server, "nope")).await.status, 404);
    assert_eq!(
        get(&format!("http://{}/hls/nope/cam1.m3u8", server.http_addr))
            .await
            .status,
        404
    );

    publish_all(&server, KEY_A, "cam1", "cam-a.flv").await;
    let fetched = get(&playlist_url(&server, "cam1")).await;
    assert_eq!(
        fetched.headers["content-type"],
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(fetched.headers["access-control-allow-origin"], "*");
    assert_eq!(fetched.headers["cache-control"], "public, max-age=1");
    let playlist = check_playlist(std::str::from_utf8(&fetched.body).unwrap());

    let init_url = resolve(
        &server,
        "cam1",
        &playlist.segments[0].map.as_ref().unwrap().uri,
    );
    let init = get(&init_url).await;
    assert_eq!(init.headers["content-type"], "video/mp4");
    assert!(init.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let seg_url = resolve(&server, "cam1", &playlist.segments[1].uri);
    let whole = get(&seg_url).await;
    assert_eq!(whole.headers["content-type"], "video/iso.segment");
    assert_eq!(
        whole.headers["content-length"],
        whole.body.len().to_string().as_str()
    );
    assert_eq!(&whole.body[4..8], b"moof");

    let client = reqwest::Client::new();
    let head = client.head(&seg_url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        whole.body.len().to_string().as_str()
    );
    let ranged = client
        .get(&seg_url)
        .header("Range", "bytes=100-1099")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 100-1099/{}", whole.body.len()).as_str()
    );
    assert_eq!(ranged.bytes().await.unwrap(), whole.body.slice(100..1100));
    let tail = client
        .get(&seg_url)
        .header("Range", "bytes=-16")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tail.bytes().await.unwrap(),
        whole.body.slice(whole.body.len() - 16..)
    );
    let beyond = client
        .get(&seg_url)
        .header("Range", format!("bytes={}-", whole.body.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);

    let stale = seg_url.replace(".m4s", "0.m4s");
    assert_eq!(get(&stale).await.status, 404);
    let other_stamp = seg_url.replacen("/cam1/", "/cam1/0", 1);
    assert_eq!(
        get(&other_stamp).await.status,
        404,
        "a URI from another server start is not served"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_port_requires_the_token() {
    let server = start().await;
    let url = format!("http://{}/api/health", server.control_addr);
    let client = reqwest::Client::new();
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Bytes = anonymous.bytes().await.unwrap();
    assert!(std::str::from_utf8(&body).unwrap().contains("\"error\""));
    let wrong = client
        .get(&url)
        .bearer_auth("test-token-124")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = client
        .get(&url)
        .bearer_auth("test-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    server.shutdown().await;
}
