//! Recording: the program (and cameras) to fragmented MP4 files, over the control API, with real
//! publishers in real time. Files are checked with the independent `mp4` crate and decoded with
//! ffmpeg; a file read while it is being written stands in for a crash.

mod support;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use serde_json::{json, Value};
use support::*;
use tally::{config::Config, recording::scan, Server};
use tokio::time::{sleep, Instant};

const TOKEN: &str = "test-token-123";
/// Longest wait for anything the server does at once or within a second or two.
const HANG: Duration = Duration::from_secs(30);

/// Polls `$body` (an `Option`) every 100 ms until it is `Some`; panics after [`HANG`].
macro_rules! eventually {
    ($what:expr, $body:expr) => {{
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(value) = $body {
                break value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {}", $what);
            sleep(Duration::from_millis(100)).await;
        }
    }};
}

struct Api {
    /// Shared connection pool.
    client: reqwest::Client,
    /// `http://control/api/events/demo`
    base: String,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            client: reqwest::Client::new(),
            base: format!("http://{}/api/events/{EVENT}", server.control_addr),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        tokio::time::timeout(HANG, request.bearer_auth(TOKEN).send())
            .await
            .expect("an answer")
            .expect("a response")
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = self.send(request).await;
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.json(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.json(request).await
    }

    /// Downloads a recording; `range` is a `Range` header value.
    async fn download(&self, file: &str, range: Option<&str>) -> Fetched {
        let mut request = self.client.get(format!("{}/recordings/{file}", self.base));
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        let response = self.send(request).await;
        Fetched {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("body"),
        }
    }

    async fn switch(&self, camera: &str) {
        let (status, body) = self.post("/switch", json!({ "camera": camera })).await;
        assert_eq!(status, 200, "switch to {camera}: {body}");
    }

    async fn wait_active(&self, camera: &str) {
        eventually!(format!("{camera} on program"), {
            let (_, event) = self.get("").await;
            (event["active_camera"] == camera).then_some(())
        });
    }

    async fn wait_live(&self, camera: &str) {
        eventually!(format!("{camera} live"), {
            let (_, cam) = self.get(&format!("/cameras/{camera}")).await;
            (cam["status"] == "live").then_some(())
        });
    }
}

fn record_config(dir: &Path) -> Config {
    let mut config = test_config();
    config.record.dir = dir.to_path_buf();
    config
}

async fn run_tool(program: &str, args: &[&str]) -> std::process::Output {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} hung"))
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// `ffmpeg -v error -i FILE -f null -`: its stderr (empty when the file decodes cleanly).
async fn ffmpeg_errors(path: &Path) -> String {
    let path = path.display().to_string();
    let out = run_tool(
        "ffmpeg",
        &["-nostdin", "-v", "error", "-i", &path, "-f", "null", "-"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        out.status.success() || !stderr.is_empty(),
        "ffmpeg failed silently"
    );
    stderr
}

/// ffprobe's (width, height, sample rate, duration in seconds) of a file.
async fn probe(path: &Path) -> (u64, u64, u64, f64) {
    let path = path.display().to_string();
    let args = [
        "-v",
        "error",
        "-show_entries",
        "stream=codec_type,width,height,sample_rate:format=duration",
        "-of",
        "json",
        &path,
    ];
    let out = run_tool("ffprobe", &args).await;
    assert!(out.status.success(), "ffprobe {path}");
    let probe: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let streams = probe["streams"].as_array().expect("streams");
    let of = |kind: &str| streams.iter().find(|s| s["codec_type"] == kind).cloned();
    let video = of("video").expect("a video stream");
    let audio = of("audio").expect("an audio stream");
    (
        video["width"].as_u64().unwrap(),
        video["height"].as_u64().unwrap(),
        audio["sample_rate"].as_str().unwrap().parse().unwrap(),
        probe["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
    )
}

fn files_of<'a>(listing: &'a Value, source: &str) -> Vec<&'a Value> {
    listing["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["source"] == source)
        .collect()
}

/// Collects `on_record_done` calls: a tiny HTTP server that answers 200 and keeps each body.
async fn record_done_hook() -> (String, Arc<Mutex<Vec<String>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let kept = calls.clone();
    let app = axum::Router::new().route(
        "/done",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/done", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

/// Checks one downloaded recording with the `mp4` crate: one init, then fragments of about
/// `record.fragment` (1 s) each. Returns the video width.
fn check_with_mp4_crate(name: &str, bytes: &Bytes) -> u16 {
    let parsed = parse_fmp4(bytes, &[]);
    assert_eq!(parsed.tracks.len(), 2, "{name}: video and audio tracks");
    let video: Vec<&TrackRun> = parsed.runs.iter().filter(|r| r.track_id == 1).collect();
    assert!(!video.is_empty(), "{name}: fragments");
    assert_eq!(
        video[0].flags[0] & 0x0001_0000,
        0,
        "{name}: the file starts with a keyframe"
    );
    for (i, run) in video.iter().enumerate() {
        let seconds = run.durations.iter().map(|&d| f64::from(d)).sum::<f64>() / 90_000.0;
        assert!(
            seconds <= 1.1,
            "{name}: fragment {i} holds {seconds:.3} s, more than record.fragment"
        );
        if i > 0 {
            let previous = video[i - 1];
            let end = previous.base_dts
                + previous
                    .durations
                    .iter()
                    .map(|&d| u64::from(d))
                    .sum::<u64>();
            assert_eq!(
                run.base_dts, end,
                "{name}: fragment {i} follows the previous one"
            );
        }
    }
    parsed.width.expect("a video track")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_program_across_switches_and_every_camera() {
    let interop = require_tool("ffmpeg") && require_tool("ffprobe");
    let dir = tempfile::tempdir().unwrap();
    let mut config = record_config(dir.path());
    config.record.cameras = true;
    let (hook, calls) = record_done_hook().await;
    config.webhooks.on_record_done = hook;
    let server = start_with(config).await;
    let api = Api::new(&server);

    let (status, body) = api.get("/recording").await;
    assert_eq!((status, body["recording"].clone()), (200, json!(false)));

    let _cam1 = publish_live(&server, KEY_A, "cam-a.flv", 10).await;
    api.wait_active("cam1").await;
    let _cam3 = publish_live(&server, KEY_C, "cam-a.flv", 10).await;
    let _cam2 = publish_live(&server, KEY_B, "cam-b.flv", 10).await;
    api.wait_live("cam3").await;
    api.wait_live("cam2").await;

    let (status, started) = api.post("/recording/start", json!({})).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["recording"], true);
    assert_eq!(
        started["sources"],
        json!(["program", "cam1", "cam2", "cam3"])
    );
    let (status, again) = api.post("/recording/start", json!({})).await;
    assert_eq!(
        (status, &again["started_at"]),
        (200, &started["started_at"])
    );

    sleep(Duration::from_secs(3)).await;
    api.switch("cam3").await; // same configuration as cam1: same file
    sleep(Duration::from_secs(3)).await;
    let switched_to_cam2 = Instant::now();
    api.switch("cam2").await; // 640x360, 44.1 kHz: a new file
    sleep(Duration::from_secs(3)).await;

    let (_, live) = api.get("/recordings").await;
    assert_eq!(live["recording"], true);
    let in_progress = files_of(&live, "program")
        .into_iter()
        .filter(|f| f["status"] == "in_progress")
        .count();
    assert_eq!(in_progress, 1, "{live}");

    let (status, stopped) = api.post("/recording/stop", json!({})).await;
    let stopped_at = Instant::now();
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["recording"], false);
    assert_eq!(stopped["in_progress"], json!([]));
    assert_eq!(stopped["error"], Value::Null);

    let (status, listing) = api.get("/recordings").await;
    assert_eq!(status, 200);
    eprintln!("listing: {listing:#}");
    let program = files_of(&listing, "program");
    assert_eq!(program.len(), 2, "a new file at the cut to cam2: {listing}");
    for file in listing["files"].as_array().unwrap() {
        assert_eq!(file["status"], "complete");
        let name = file["file"].as_str().unwrap();
        let on_disk = std::fs::metadata(dir.path().join(EVENT).join(name)).unwrap();
        assert_eq!(file["size"].as_u64().unwrap(), on_disk.len(), "{name}");
        assert!(file["duration"].as_f64().unwrap() > 1.0, "{name}");
        assert!(file["started_at"].as_str().unwrap().ends_with('Z'));
    }
    // The first program file spans cam1 and cam3, from the start to the cut to cam2.
    let first = program[0]["duration"].as_f64().unwrap();
    let second = program[1]["duration"].as_f64().unwrap();
    let after_cut = (stopped_at - switched_to_cam2).as_secs_f64();
    assert!((5.0..8.5).contains(&first), "first program file: {first} s");
    assert!(
        second > after_cut - 1.5 && second < after_cut + 1.0,
        "second program file: {second} s, cut {after_cut:.2} s before the stop"
    );
    for camera in ["cam1", "cam2", "cam3"] {
        assert_eq!(files_of(&listing, camera).len(), 1, "{camera}: {listing}");
    }

    // Downloads: whole, ranges, HEAD; only listed names.
    for file in listing["files"].as_array().unwrap() {
        let name = file["file"].as_str().unwrap();
        let path = dir.path().join(EVENT).join(name);
        let disk = Bytes::from(std::fs::read(&path).unwrap());
        let whole = api.download(name, None).await;
        assert_eq!(whole.status, 200);
        assert_eq!(whole.body, disk, "{name}");
        assert_eq!(whole.headers["content-type"], "video/mp4");
        assert_eq!(whole.headers["accept-ranges"], "bytes");
        let part = api.download(name, Some("bytes=100-1099")).await;
        assert_eq!(part.status, 206);
        assert_eq!(part.body, disk.slice(100..1100));
        assert_eq!(
            part.headers["content-range"],
            format!("bytes 100-1099/{}", disk.len()).as_str()
        );
        let tail = api.download(name, Some("bytes=-10")).await;
        assert_eq!(
            (tail.status, tail.body.clone()),
            (206, disk.slice(disk.len() - 10..))
        );
        let past = api
            .download(name, Some(&format!("bytes={}-", disk.len())))
            .await;
        assert_eq!(past.status, 416);
        let head = api
            .send(api.client.head(format!("{}/recordings/{name}", api.base)))
            .await;
        assert_eq!(head.status(), 200);
        assert_eq!(
            head.headers()["content-length"],
            disk.len().to_string().as_str()
        );

        let width = check_with_mp4_crate(name, &disk);
        if name.starts_with("program") {
            let expected = if name == program[0]["file"] { 320 } else { 640 };
            assert_eq!(width, expected, "{name}");
        }
        if interop {
            let errors = ffmpeg_errors(&path).await;
            assert!(errors.is_empty(), "ffmpeg decoding {name}:\n{errors}");
            let (w, h, rate, seconds) = probe(&path).await;
            eprintln!("{name}: {w}x{h} {rate} Hz, {seconds:.3} s");
            assert_eq!(u64::from(width), w);
            assert!((seconds - file["duration"].as_f64().unwrap()).abs() < 0.2);
            if name == program[1]["file"] {
                assert_eq!((w, h, rate), (640, 360, 44_100));
            }
        }
    }
    for bad in [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "program-20000101T000000Z-001.mp4",
        ".tally-write-test",
    ] {
        let fetched = api.download(bad, None).await;
        assert_eq!(fetched.status, 404, "{bad}");
    }

    // on_record_done was called for every file.
    let names: Vec<String> = listing["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap().to_string())
        .collect();
    eventually!("on_record_done for every file", {
        let calls = calls.lock().unwrap().clone();
        names
            .iter()
            .all(|n| calls.iter().any(|c| c.contains(n.as_str())))
            .then_some(())
    });
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), names.len(), "{calls:?}");
    assert!(calls.iter().all(|c| c.starts_with("call=record_done")));

    let metrics = api
        .send(
            api.client
                .get(format!("http://{}/metrics", server.control_addr)),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("# HELP tally_recording_bytes_total"));
    assert!(metrics.contains("# HELP tally_recordings_active"));
    let written = metrics
        .lines()
        .find(|l| {
            l.starts_with("tally_recording_bytes_total")
                && l.contains("event=\"demo\"")
                && l.contains("source=\"program\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .expect("program bytes are counted");
    assert!(written > 0.0);
    server.shutdown().await;
}

/// Media seconds published on the program since the first keyframe a subscriber saw.
async fn watch_program(server: &Server) -> Arc<Mutex<(Option<i64>, i64)>> {
    let event = server.registry.event(EVENT).unwrap();
    let mut frames = event.program_frames.subscribe();
    let seen = Arc::new(Mutex::new((None, 0)));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if frame.track.is_video() {
                let mut seen = kept.lock().unwrap();
                if seen.0.is_none() && frame.keyframe {
                    seen.0 = Some(frame.dts);
                }
                seen.1 = frame.dts;
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_read_mid_write_plays_to_its_last_complete_fragment() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(record_config(dir.path())).await;
    let api = Api::new(&server);
    let _cam1 = publish_live(&server, KEY_A, "cam-a.flv", 10).await;
    api.wait_active("cam1").await;
    let published = watch_program(&server).await;
    let (status, started) = api.post("/recording/start", json!({})).await;
    assert_eq!(status, 200, "{started}");

    let mut figures = Vec::new();
    for wait_ms in [4300, 2700, 3150] {
        sleep(Duration::from_millis(wait_ms)).await;
        // The file as a crash would leave it: whatever is on disk right now.
        let (_, status) = api.get("/recording").await;
        let name = status["in_progress"][0]
            .as_str()
            .expect("a file in progress")
            .to_string();
        let bytes = std::fs::read(dir.path().join(EVENT).join(&name)).unwrap();
        let sent = {
            let (first, last) = *published.lock().unwrap();
            (last - first.expect("a keyframe")) as f64 / 90_000.0 + 1.0 / 30.0
        };
        let layout = scan::scan(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
        assert!(layout.fragments > 0);
        let crashed = tempfile::Builder::new().suffix(".mp4").tempfile().unwrap();
        std::fs::write(crashed.path(), &bytes[..layout.complete as usize]).unwrap();
        let errors = ffmpeg_errors(crashed.path()).await;
        assert!(errors.is_empty(), "ffmpeg on the crashed file:\n{errors}");
        let (_, _, _, decoded) = probe(crashed.path()).await;
        let torn = bytes.len() as u64 - layout.complete;
        eprintln!(
            "crash at {:.1} s: {} bytes on disk ({} past the last complete fragment), \
             {:.2} s of media on disk (ffprobe {decoded:.2} s), {sent:.2} s published: \
             a SIGKILL now loses {:.2} s",
            sent,
            bytes.len(),
            torn,
            layout.duration,
            sent - layout.duration
        );
        assert!((decoded - layout.duration).abs() < 0.1);
        figures.push(sent - layout.duration);
    }
    for lost in &figures {
        // At most the fragment being gathered (1 s) and a frame or two in flight; the program
        // subscriber here may also have started one GOP (1 s) before the recording.
        assert!(*lost >= 0.0 && *lost < 2.2, "lost {lost:.2} s");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_start_records_when_the_event_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = record_config(dir.path());
    config.record.auto_start = true;
    let server = start_with(config).await;
    let api = Api::new(&server);
    sleep(Duration::from_millis(1500)).await;
    let (_, status) = api.get("/recording").await;
    assert_eq!(status["recording"], false, "nothing is live yet");

    let _cam1 = publish_live(&server, KEY_A, "cam-a.flv", 10).await;
    api.wait_active("cam1").await;
    let listing = eventually!("a program file with media", {
        let (_, listing) = api.get("/recordings").await;
        let ready = listing["recording"] == true
            && files_of(&listing, "program")
                .iter()
                .any(|f| f["status"] == "in_progress" && f["size"].as_u64() > Some(0));
        ready.then_some(listing)
    });
    assert!(listing["started_at"].is_string());

    // A manual stop holds while the event stays live.
    let (status, stopped) = api.post("/recording/stop", json!({})).await;
    assert_eq!((status, &stopped["recording"]), (200, &json!(false)));
    sleep(Duration::from_millis(2500)).await;
    let (_, status) = api.get("/recording").await;
    assert_eq!(status["recording"], false);
    let (_, listing) = api.get("/recordings").await;
    assert!(files_of(&listing, "program")
        .iter()
        .all(|f| f["status"] == "complete"));
    server.shutdown().await;
}

/// The newest segment URI of the program playlist.
async fn newest_program_segment(server: &Server) -> String {
    let (_, playlist) = wait_for_playlist(server, "program", |p| !p.segments.is_empty()).await;
    playlist.segments.last().unwrap().uri.clone()
}

/// Waits until the program playlist lists a segment newer than `than`.
async fn program_grows_past(server: &Server, than: &str) {
    wait_for_playlist(server, "program", |p| {
        p.segments.last().is_some_and(|s| s.uri != than)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_folder_is_an_api_error_and_the_stream_carries_on() {
    // A regular file where the folder should be: no folder can be made in it, even by root.
    let not_a_dir = tempfile::NamedTempFile::new().unwrap();
    let mut config = record_config(not_a_dir.path());
    config.record.auto_start = true;
    let server = start_with(config).await;
    let api = Api::new(&server);
    let _cam1 = publish_live(&server, KEY_A, "cam-a.flv", 10).await;
    api.wait_active("cam1").await;
    let before = newest_program_segment(&server).await;

    let (status, body) = api.post("/recording/start", json!({})).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["recording"], false);
    let error = body["error"].as_str().expect("an error message");
    assert!(
        error.starts_with("record.dir: cannot write recordings to "),
        "{error}"
    );
    assert!(
        error.contains(&not_a_dir.path().display().to_string()),
        "{error}"
    );

    let (_, status) = api.get("/recording").await;
    assert_eq!(status["recording"], false);
    assert_eq!(status["error"], error);
    let (status, listing) = api.get("/recordings").await;
    assert_eq!(status, 200);
    assert_eq!(listing["files"], json!([]));
    assert_eq!(listing["error"], error);

    program_grows_past(&server, &before).await;
    server.shutdown().await;
}

/// Unmounts a test file system, even when the test fails.
struct Mounted(
    /// The mount point.
    PathBuf,
);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_recording_and_leaves_a_playable_file() {
    let dir = tempfile::tempdir().unwrap();
    // A 256 KiB tmpfs: needs root (CI and this container run as root). Elsewhere the same
    // failure is covered by the writer's unit tests, through a sink that fails its Nth write.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tally-test"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here; recording::writer::tests::\
             a_failed_write_stops_with_the_file_at_its_last_fragment covers a full disk"
        );
        return;
    }
    let _mount = Mounted(dir.path().to_path_buf());
    let server = start_with(record_config(dir.path())).await;
    let api = Api::new(&server);
    let _cam1 = publish_live(&server, KEY_A, "cam-a.flv", 10).await;
    api.wait_active("cam1").await;
    let (status, body) = api.post("/recording/start", json!({})).await;
    assert_eq!((status, &body["recording"]), (200, &json!(true)), "{body}");

    let status = eventually!("the recording to stop on a full disk", {
        let (_, status) = api.get("/recording").await;
        (status["recording"] == false).then_some(status)
    });
    let error = status["error"].as_str().expect("an error");
    assert!(error.contains("No space left on device"), "{error}");
    let (_, stopped) = api.post("/recording/stop", json!({})).await;
    assert_eq!(
        stopped["error"], error,
        "the stop answer shows the error too"
    );

    let before = newest_program_segment(&server).await;
    program_grows_past(&server, &before).await;

    let (_, listing) = api.get("/recordings").await;
    let files = files_of(&listing, "program");
    assert_eq!(files.len(), 1, "{listing}");
    assert_eq!(files[0]["status"], "complete");
    let path = dir
        .path()
        .join(EVENT)
        .join(files[0]["file"].as_str().unwrap());
    let bytes = std::fs::read(&path).unwrap();
    let layout = scan::scan(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
    assert_eq!(
        layout.complete,
        bytes.len() as u64,
        "the file ends after its last complete fragment"
    );
    assert!(layout.fragments >= 2, "{layout:?}");
    eprintln!(
        "disk full: {} bytes, {} fragments, {:.2} s kept; error: {error}",
        bytes.len(),
        layout.fragments,
        layout.duration
    );
    if require_tool("ffmpeg") {
        let errors = ffmpeg_errors(&path).await;
        assert!(
            errors.is_empty(),
            "ffmpeg on the file cut by a full disk:\n{errors}"
        );
    }
    server.shutdown().await;
}
