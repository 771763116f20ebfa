//! `GET /metrics` on the control port, end to end: publish a fixture, play it, scrape.
//!
//! Metrics are process-wide and the tests of this binary run in parallel, so each test uses an
//! event id of its own and asserts on series labelled with it (or `>=` for unlabelled ones).

mod support;

use std::{collections::BTreeMap, time::Duration};

use support::*;
use tally::rtmp::client::Publisher;
use tally::Server;

const TOKEN: &str = "test-token-123";

/// One sample line of the text format: `name{k="v",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A deliberately small parser of the Prometheus text format: comments are skipped, label values
/// are unescaped (`\\`, `\"`, `\n`), and every other line must be a sample.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("sample has a value");
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            let mut key = String::new();
            loop {
                let (i, c) = chars.next().expect("labels close");
                match c {
                    '}' => {
                        rest = &inner[i + 1..];
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().expect("value closes").1 {
                                '"' => break,
                                '\\' => match chars.next().expect("escape").1 {
                                    'n' => value.push('\n'),
                                    other => value.push(other),
                                },
                                other => value.push(other),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            }
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line}: {e}"));
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut matching = samples.iter().filter(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    });
    let found = matching.next()?;
    assert!(
        matching.next().is_none(),
        "{name} {labels:?} names more than one series"
    );
    Some(found.value)
}

/// A server whose only event is `event` (with cam1..cam3 and the usual keys).
async fn start_event(event: &str) -> Server {
    let mut config = test_config();
    config.events[0].id = event.into();
    start_with(config).await
}

async fn scrape(server: &Server) -> (Fetched, Vec<Sample>) {
    let response = reqwest::Client::new()
        .get(format!("http://{}/metrics", server.control_addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET /metrics");
    let fetched = Fetched {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body"),
    };
    let text = std::str::from_utf8(&fetched.body).expect("utf-8 metrics");
    let samples = parse(text);
    (fetched, samples)
}

async fn wait_offline(server: &Server, event: &str, camera: &str) {
    let camera = server
        .registry
        .camera(event, camera)
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

#[tokio::test]
async fn metrics_count_ingest_segments_and_playback() {
    const EVENT_ID: &str = "metrics-e2e";
    let server = start_event(EVENT_ID).await;
    let tags = fixture_tags("cam-a.flv");
    let (video_frames, audio_frames) = count_frames(&tags);
    let payload: usize = tags
        .iter()
        .filter(|t| t.kind != tally::flv::TagKind::Script)
        .map(|t| t.body.len())
        .sum();

    let mut publisher = Publisher::connect(server.rtmp_addr, APP, KEY_A, Default::default())
        .await
        .expect("publish accepted");
    publisher.send_tags(&tags).await.expect("tags sent");
    publisher.finish().await.expect("clean stop");
    wait_offline(&server, EVENT_ID, "cam1").await;

    let base = format!("http://{}/hls/{EVENT_ID}", server.http_addr);
    let playlist = get(&format!("{base}/cam1.m3u8")).await;
    assert_eq!(playlist.status, 200);
    let text = String::from_utf8(playlist.body.to_vec()).expect("utf-8 playlist");
    let parsed = check_playlist(&text);
    let init = get(&format!(
        "{base}/{}",
        parsed.segments[0].map.as_ref().unwrap().uri
    ))
    .await;
    assert_eq!(init.status, 200);
    let segment = get(&format!("{base}/{}", parsed.segments[0].uri)).await;
    assert_eq!(segment.status, 200);
    assert_eq!(get(&format!("{base}/nope.m3u8")).await.status, 404);

    let (fetched, samples) = scrape(&server).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(
        fetched.headers["content-type"], "text/plain; version=0.0.4",
        "Prometheus text format"
    );
    let text = std::str::from_utf8(&fetched.body).unwrap();
    for (name, kind) in [
        ("tally_camera_frames_total", "counter"),
        ("tally_camera_bytes_total", "counter"),
        ("tally_camera_live", "gauge"),
        ("tally_segments_total", "counter"),
        ("tally_hls_requests_total", "counter"),
        ("tally_hls_bytes_total", "counter"),
        ("tally_process_cpu_seconds_total", "gauge"),
        ("tally_process_resident_memory_bytes", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "HELP for {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "TYPE {kind} for {name}:\n{text}"
        );
    }

    let cam1 = [("event", EVENT_ID), ("camera", "cam1")];
    let frames = |track| {
        value(
            &samples,
            "tally_camera_frames_total",
            &[cam1[0], cam1[1], ("track", track)],
        )
    };
    assert_eq!(frames("video"), Some(video_frames as f64));
    assert_eq!(frames("audio"), Some(audio_frames as f64));
    let bytes = value(&samples, "tally_camera_bytes_total", &cam1).expect("bytes");
    assert!(
        bytes > 0.0 && bytes <= payload as f64,
        "payload bytes {bytes} (FLV bodies {payload})"
    );
    assert_eq!(value(&samples, "tally_camera_live", &cam1), Some(0.0));
    assert_eq!(
        value(
            &samples,
            "tally_camera_live",
            &[("event", EVENT_ID), ("camera", "cam2")]
        ),
        Some(0.0),
        "a camera that never published is listed as not live"
    );
    assert_eq!(
        value(&samples, "tally_camera_bitrate_bits_per_second", &cam1),
        Some(0.0),
        "offline"
    );
    let interval = value(&samples, "tally_camera_keyframe_interval_seconds", &cam1)
        .expect("keyframe interval measured");
    assert!(interval > 0.0 && interval < 10.0, "{interval}");

    let segments = value(
        &samples,
        "tally_segments_total",
        &[("event", EVENT_ID), ("rendition", "cam1")],
    )
    .expect("segments counted");
    assert!(segments >= parsed.segments.len() as f64, "{segments}");

    // Process-wide: other tests of this binary may add to these, hence `>=`.
    let requests = |kind, status| {
        value(
            &samples,
            "tally_hls_requests_total",
            &[("kind", kind), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    assert!(requests("playlist", "200") >= 1.0);
    assert!(requests("playlist", "404") >= 1.0);
    assert!(requests("init", "200") >= 1.0);
    assert!(requests("segment", "200") >= 1.0);
    let served = |kind| value(&samples, "tally_hls_bytes_total", &[("kind", kind)]).unwrap_or(0.0);
    assert!(served("segment") >= segment.body.len() as f64);
    assert!(served("init") >= init.body.len() as f64);
    assert!(served("playlist") >= playlist.body.len() as f64);

    let cpu = value(&samples, "tally_process_cpu_seconds_total", &[]).expect("cpu");
    let memory = value(&samples, "tally_process_resident_memory_bytes", &[]).expect("memory");
    assert!(cpu > 0.0, "{cpu}");
    assert!(memory > 1e6, "{memory}");

    server.shutdown().await;
}

#[tokio::test]
async fn live_gauges_program_segments_and_switches() {
    const EVENT_ID: &str = "metrics-live";
    let server = start_event(EVENT_ID).await;
    let publishing = publish_live(&server, KEY_A, "cam-a.flv", 1).await;
    let program = format!("http://{}/hls/{EVENT_ID}/program.m3u8", server.http_addr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(&program).await.status != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "program never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // cam-a is 6 s long and the program's first segment closes after 2 s: still live.
    let (_, samples) = scrape(&server).await;
    let cam1 = [("event", EVENT_ID), ("camera", "cam1")];
    assert_eq!(value(&samples, "tally_camera_live", &cam1), Some(1.0));
    let bitrate = value(&samples, "tally_camera_bitrate_bits_per_second", &cam1).unwrap();
    assert!(
        (100_000.0..1_000_000.0).contains(&bitrate),
        "cam-a is ~360 kbit/s: {bitrate}"
    );
    let frame_rate = value(&samples, "tally_camera_frame_rate", &cam1).unwrap();
    assert!(
        (25.0..=35.0).contains(&frame_rate),
        "cam-a is 30 fps: {frame_rate}"
    );
    let interval = value(&samples, "tally_camera_keyframe_interval_seconds", &cam1).unwrap();
    assert!(
        (interval - 1.0).abs() < 0.05,
        "cam-a has a keyframe every 1 s: {interval}"
    );
    assert_eq!(
        value(
            &samples,
            "tally_switches_total",
            &[("event", EVENT_ID), ("reason", "auto")]
        ),
        Some(1.0),
        "cam1 went on program automatically"
    );
    let program_segments = value(
        &samples,
        "tally_segments_total",
        &[("event", EVENT_ID), ("rendition", "program")],
    )
    .expect("program segments counted");
    assert!(program_segments >= 1.0);

    publishing.await.expect("publisher finishes");
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_need_the_token() {
    let server = start_event("metrics-auth").await;
    let url = format!("http://{}/metrics", server.control_addr);
    assert_eq!(get(&url).await.status, 401);
    let wrong = reqwest::Client::new()
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(wrong.status().as_u16(), 401);
    let (fetched, _) = scrape(&server).await;
    assert_eq!(fetched.status, 200);
    server.shutdown().await;
}

#[test]
fn parser_reads_labels_and_escapes() {
    let samples = parse(
        "# HELP x help\n# TYPE x counter\n\
         x{a=\"1\",b=\"q\\\"uo,te}\"} 3\n\
         y 2.5\n\
         z{a=\"\"} 1e3\n",
    );
    assert_eq!(value(&samples, "x", &[("a", "1")]), Some(3.0));
    assert_eq!(samples[0].labels["b"], "q\"uo,te}");
    assert_eq!(value(&samples, "y", &[]), Some(2.5));
    assert_eq!(value(&samples, "z", &[("a", "")]), Some(1000.0));
}
