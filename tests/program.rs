//! The program output across switches, end to end: our publisher pushes the fixtures in real time
//! to a server on 127.0.0.1:0, the operator switches over the control API, and the program is
//! checked three ways: frame by frame against each camera's fan-out (which frames, on what
//! timeline), as a playlist whose segments the independent `mp4` crate reads, and by ffmpeg.
//!
//! Every wait polls with a generous deadline and panics naming what it waited for; no assertion
//! is about how long something took (the switch timings are printed, not asserted).

mod support;

use std::{
    collections::HashMap,
    future::Future,
    io::Write,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde_json::{json, Value};
use support::*;
use tally::{
    config::Config,
    fanout::Fanout,
    flv::Tag,
    media::{rescale, Frame, AAC_FRAME_SAMPLES, VIDEO_TIMESCALE},
    program::{splice::DiscontinuityPolicy, Event},
    rtmp::client::{PublishOptions, Publisher},
    Server,
};
use tokio::{sync::watch, task::JoinHandle};

const TOKEN: &str = "test-token-123";
/// How long any wait may take before the test calls it a hang (not a timing assertion).
const HANG: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// Time on one camera before the next switch: a run of frames, and room for a keyframe.
const DWELL: Duration = Duration::from_millis(1500);
const V: i64 = VIDEO_TIMESCALE as i64;
const AAC: i64 = AAC_FRAME_SAMPLES as i64;

/// Polls `$check` (an expression giving `Option<T>`, may `.await`) until it is `Some`; panics
/// after `HANG` naming `$what`.
macro_rules! eventually {
    ($what:expr, $check:expr) => {{
        let deadline = tokio::time::Instant::now() + HANG;
        loop {
            if let Some(value) = $check {
                break value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {HANG:?} for {}",
                $what
            );
            tokio::time::sleep(POLL).await;
        }
    }};
}

fn key_of(camera: &str) -> &'static str {
    match camera {
        "cam1" => KEY_A,
        "cam2" => KEY_B,
        "cam3" => KEY_C,
        other => panic!("no camera {other} in the test event"),
    }
}

/// The fixture each camera publishes: cam2 is the camera with another configuration.
fn fixture_of(camera: &str) -> &'static str {
    if camera == "cam2" {
        "cam-b.flv"
    } else {
        "cam-a.flv"
    }
}

/// (width, height, sample rate) of a fixture.
fn geometry_of(camera: &str) -> (u16, u16, u32) {
    if camera == "cam2" {
        (640, 360, 44_100)
    } else {
        (320, 240, 48_000)
    }
}

fn config_with(window: usize, policy: DiscontinuityPolicy) -> Config {
    let mut config = test_config();
    config.hls.window = window;
    config.program.discontinuity = policy;
    config.program.failover_timeout = Duration::from_secs(1);
    config.validate().expect("valid test config");
    config
}

// ---------------------------------------------------------------------------------------------
// Control API

/// One row of the switch log: (from, to, reason).
type LogRow = (Option<String>, String, String);

struct Api {
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

    async fn send(&self, what: &str, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = tokio::time::timeout(HANG, request.bearer_auth(TOKEN).send())
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {HANG:?}"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("response body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.base);
        let (status, body) = self.send(&url, self.client.get(&url)).await;
        assert_eq!(status, 200, "GET {url}: {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let request = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(&url, request).await
    }

    async fn status(&self) -> String {
        let event = self.get("").await;
        event["status"].as_str().expect("status").to_string()
    }

    async fn switch_log(&self) -> Vec<LogRow> {
        let rows = self.get("/switches").await;
        rows.as_array()
            .expect("switch log is an array")
            .iter()
            .map(|row| {
                (
                    row["from"].as_str().map(String::from),
                    row["to"].as_str().expect("to").to_string(),
                    row["reason"].as_str().expect("reason").to_string(),
                )
            })
            .collect()
    }
}

fn row(from: Option<&str>, to: &str, reason: &str) -> LogRow {
    (from.map(String::from), to.to_string(), reason.to_string())
}

// ---------------------------------------------------------------------------------------------
// Recording fan-outs

/// Everything a fan-out delivers from now on, until stopped.
struct Recorder {
    stop: watch::Sender<bool>,
    task: JoinHandle<(Vec<Frame>, u64)>,
}

impl Recorder {
    fn start(fanout: &Fanout) -> Recorder {
        let mut frames = fanout.subscribe_live();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                tokio::select! {
                    biased;
                    frame = frames.recv() => match frame {
                        Some(frame) => out.push(frame),
                        None => break,
                    },
                    _ = stopped.changed() => break,
                }
            }
            (out, frames.lost)
        });
        Recorder { stop, task }
    }

    async fn finish(self, what: &str) -> Vec<Frame> {
        let _ = self.stop.send(true);
        let (frames, lost) = join(self.task).await;
        assert_eq!(lost, 0, "the {what} recorder lagged: frames lost");
        frames
    }
}

async fn join<T>(task: JoinHandle<T>) -> T {
    match task.await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("task failed: {e}"),
    }
}

/// One camera's frames as its fan-out delivered them, per track. A frame's index is its
/// position in its track's list.
struct Recording {
    camera: String,
    video: Vec<Frame>,
    audio: Vec<Frame>,
}

struct Recorded {
    program: Vec<Frame>,
    cameras: Vec<Recording>,
}

impl Recorded {
    fn camera(&self, id: &str) -> &Recording {
        self.cameras
            .iter()
            .find(|c| c.camera == id)
            .expect("recorded camera")
    }
}

// ---------------------------------------------------------------------------------------------
// Watching the program playlist

/// A program segment as first listed, with its bytes and what the `mp4` crate reads in it.
struct Listed {
    sequence: u64,
    /// The EXT-X-MAP in force for it.
    map_uri: String,
    discontinuity: bool,
    init: Bytes,
    body: Bytes,
    parsed: Parsed,
}

impl Listed {
    /// tfdt of the track's run (1 video, 2 audio).
    fn start(&self, track_id: u32) -> Option<i64> {
        self.parsed
            .runs
            .iter()
            .find(|r| r.track_id == track_id)
            .map(|r| r.base_dts as i64)
    }

    fn first_size(&self, track_id: u32) -> Option<u32> {
        let run = self.parsed.runs.iter().find(|r| r.track_id == track_id)?;
        run.sizes.first().copied()
    }
}

/// Every distinct playlist text seen, parsed, and every segment fetched as soon as listed.
#[derive(Default)]
struct Watched {
    texts: Vec<String>,
    playlists: Vec<m3u8_rs::MediaPlaylist>,
    segments: Vec<Listed>,
}

struct PlaylistWatch {
    stop: watch::Sender<bool>,
    task: JoinHandle<Watched>,
}

impl PlaylistWatch {
    fn start(server: &Server) -> PlaylistWatch {
        let (stop, stopped) = watch::channel(false);
        let base = format!("http://{}/hls/{EVENT}", server.http_addr);
        PlaylistWatch {
            stop,
            task: tokio::spawn(watch_playlist(base, stopped)),
        }
    }

    /// Takes one last look and returns everything seen.
    async fn finish(self) -> Watched {
        let _ = self.stop.send(true);
        join(self.task).await
    }
}

/// Polls the program playlist: each new text passes `check_playlist` and `check_successive`
/// against the one before, and each newly listed segment is fetched with its init and parsed.
async fn watch_playlist(base: String, mut stop: watch::Receiver<bool>) -> Watched {
    let mut watched = Watched::default();
    let mut inits: HashMap<String, Bytes> = HashMap::new();
    loop {
        let stopping = *stop.borrow_and_update();
        let fetched = get(&format!("{base}/program.m3u8")).await;
        if fetched.status == 200 {
            let text = String::from_utf8(fetched.body.to_vec()).expect("utf-8 playlist");
            if watched.texts.last() != Some(&text) {
                let playlist = check_playlist(&text);
                if let Some(previous) = watched.playlists.last() {
                    check_successive(previous, &playlist);
                }
                let mut map: Option<String> = None;
                for (i, segment) in playlist.segments.iter().enumerate() {
                    if let Some(m) = &segment.map {
                        map = Some(m.uri.clone());
                    }
                    let sequence = playlist.media_sequence + i as u64;
                    let next = watched.segments.last().map_or(0, |s| s.sequence + 1);
                    if sequence < next {
                        continue;
                    }
                    assert!(
                        watched.segments.is_empty() || sequence == next,
                        "segment {next} was never seen listed:\n{text}"
                    );
                    let map_uri = map.clone().expect("checked: the first segment has a map");
                    let init = match inits.get(&map_uri) {
                        Some(init) => init.clone(),
                        None => {
                            let init = get(&format!("{base}/{map_uri}")).await;
                            assert_eq!(init.status, 200, "init {map_uri}");
                            inits.insert(map_uri.clone(), init.body.clone());
                            init.body
                        }
                    };
                    let body = get(&format!("{base}/{}", segment.uri)).await;
                    assert_eq!(body.status, 200, "segment {}", segment.uri);
                    let parsed = parse_fmp4(&init, std::slice::from_ref(&body.body));
                    watched.segments.push(Listed {
                        sequence,
                        map_uri,
                        discontinuity: segment.discontinuity,
                        init,
                        body: body.body,
                        parsed,
                    });
                }
                watched.texts.push(text);
                watched.playlists.push(playlist);
            }
        }
        if stopping {
            return watched;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The scenario: a server, its publishers, and what the test records

/// An operator switch as the test made it.
struct Switch {
    camera: String,
    /// Just before the request was sent.
    requested: Instant,
    /// Just after the program actor showed it had taken the request up (pending or done): any
    /// keyframe of the target arriving after this must be seen by the switch.
    seen: Instant,
    report: Value,
}

struct Scenario {
    server: Server,
    api: Api,
    event: Arc<Event>,
    recorders: Vec<(String, Recorder)>,
    program: Option<Recorder>,
    playlist: PlaylistWatch,
    publishers: HashMap<String, JoinHandle<()>>,
}

impl Scenario {
    /// Starts the server and every recorder, before any publisher.
    async fn start(config: Config) -> Scenario {
        let server = start_with(config).await;
        let event = server.registry.event(EVENT).expect("event demo");
        let recorders = event
            .cameras()
            .iter()
            .map(|c| (c.id.clone(), Recorder::start(&c.fanout)))
            .collect();
        let program = Some(Recorder::start(&event.program_frames));
        let playlist = PlaylistWatch::start(&server);
        Scenario {
            api: Api::new(&server),
            server,
            event,
            recorders,
            program,
            playlist,
            publishers: HashMap::new(),
        }
    }

    /// Publishes the camera's fixture in real time, looped, and waits until the camera is live.
    async fn go_live(&mut self, camera: &str, loops: u32) {
        let handle = publish_live(&self.server, key_of(camera), fixture_of(camera), loops).await;
        self.publishers.insert(camera.to_string(), handle);
        self.wait_live(camera, true).await;
    }

    /// Publishes the first `until_ms` of the camera's fixture in real time, then keeps the
    /// connection open without sending anything: a camera that froze.
    async fn go_live_then_freeze(&mut self, camera: &str, until_ms: u32) {
        let options = PublishOptions {
            realtime: true,
            ..Default::default()
        };
        let mut publisher = Publisher::connect(self.server.rtmp_addr, APP, key_of(camera), options)
            .await
            .expect("publish accepted");
        let tags: Vec<Tag> = fixture_tags(fixture_of(camera))
            .into_iter()
            .filter(|t| t.timestamp_ms <= until_ms)
            .collect();
        let handle = tokio::spawn(async move {
            publisher.send_tags(&tags).await.expect("tags sent");
            // Hold the connection, silent, until aborted.
            std::future::pending::<()>().await;
            drop(publisher);
        });
        self.publishers.insert(camera.to_string(), handle);
        self.wait_live(camera, true).await;
    }

    /// Pulls the cable: the publisher's socket closes without a goodbye.
    fn pull_cable(&mut self, camera: &str) {
        self.publishers
            .remove(camera)
            .unwrap_or_else(|| panic!("{camera} has no publisher"))
            .abort();
    }

    async fn wait_live(&self, camera: &str, live: bool) {
        let camera = self.event.camera(camera).expect("camera exists");
        eventually!(
            format!("{} to be live={live}", camera.id),
            (camera.is_live() == live).then_some(())
        );
    }

    /// Resolves once the program actor has taken up a switch to `camera` (pending or already
    /// done). The state receiver is made now: call this before the action that causes the switch.
    fn taken_up(&self, camera: &str) -> impl Future<Output = Instant> + 'static {
        let mut state = self.event.watch_state();
        let camera = camera.to_string();
        async move {
            let taken = state.wait_for(|s| {
                s.pending.as_deref() == Some(camera.as_str())
                    || s.active.as_deref() == Some(camera.as_str())
            });
            tokio::time::timeout(HANG, taken)
                .await
                .unwrap_or_else(|_| panic!("the program never took up a switch to {camera}"))
                .expect("program actor alive");
            Instant::now()
        }
    }

    async fn wait_active(&self, camera: &str) {
        self.taken_up(camera).await;
        eventually!(
            format!("{camera} on program"),
            (self.event.state().active.as_deref() == Some(camera)).then_some(())
        );
    }

    /// Switches over the control API and waits for the 200 that says it is spliced.
    async fn switch(&self, camera: &str) -> Switch {
        let taken = self.taken_up(camera);
        let requested = Instant::now();
        let post = self.api.post("/switch", json!({ "camera": camera }));
        let ((status, report), seen) = tokio::join!(post, taken);
        assert_eq!(status, 200, "switch to {camera}: {report}");
        Switch {
            camera: camera.to_string(),
            requested,
            seen,
            report,
        }
    }

    /// Waits until the switch log has `n` rows; returns it.
    async fn wait_log(&self, n: usize) -> Vec<LogRow> {
        eventually!(format!("{n} rows in the switch log"), {
            let log = self.api.switch_log().await;
            (log.len() >= n).then_some(log)
        })
    }

    /// Waits (10 s at most: the actor reacts at once) for the event's status; on failure,
    /// returns the event as last seen.
    async fn reaches_status(&self, status: &str) -> Result<(), Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = self.api.get("").await;
            if event["status"] == status {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(event);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_status(&self, status: &str) {
        eventually!(
            format!("event status {status}"),
            (self.api.status().await == status).then_some(())
        );
    }

    async fn end(&self) {
        let (status, body) = self.api.post("/end", json!({})).await;
        assert_eq!(status, 200, "end: {body}");
        assert_eq!(body["status"], "ended");
    }

    /// Stops every recorder and returns what they saw.
    async fn stop_recording(&mut self) -> Recorded {
        let program = self
            .program
            .take()
            .expect("recording once")
            .finish("program")
            .await;
        let mut cameras = Vec::new();
        for (camera, recorder) in self.recorders.drain(..) {
            let (video, audio) = recorder
                .finish(&camera)
                .await
                .into_iter()
                .partition(|f| f.track.is_video());
            cameras.push(Recording {
                camera,
                video,
                audio,
            });
        }
        Recorded { program, cameras }
    }

    /// Stops the playlist watcher and every publisher; the server keeps serving.
    async fn finish(mut self) -> (Server, Watched) {
        let watched = self.playlist.finish().await;
        for (_, publisher) in self.publishers.drain() {
            publisher.abort();
        }
        (self.server, watched)
    }
}

// ---------------------------------------------------------------------------------------------
// Tracing program frames back to camera frames

/// A program frame and the camera frame it came from.
struct Sourced {
    camera: String,
    /// The camera frame's index in its track.
    index: usize,
    cam: Frame,
    prog: Frame,
}

impl Sourced {
    fn rate(&self) -> i64 {
        i64::from(self.prog.track.timescale())
    }
}

/// Finds each program frame's camera frame: the same payload `Bytes`, or, for the keyframe after
/// a cut to another configuration, a payload ending with the camera's (SPS and PPS prepended).
fn trace(recorded: &Recorded) -> Vec<Sourced> {
    let mut by_payload: HashMap<(usize, usize), (&str, usize, &Frame)> = HashMap::new();
    for recording in &recorded.cameras {
        for frames in [&recording.video, &recording.audio] {
            for (index, frame) in frames.iter().enumerate() {
                let key = (frame.payload.as_ptr() as usize, frame.payload.len());
                let old = by_payload.insert(key, (recording.camera.as_str(), index, frame));
                assert!(old.is_none(), "two camera frames share one payload");
            }
        }
    }
    recorded
        .program
        .iter()
        .map(|prog| {
            let key = (prog.payload.as_ptr() as usize, prog.payload.len());
            let found = by_payload.get(&key).copied().or_else(|| {
                let candidates: Vec<_> = by_payload
                    .values()
                    .filter(|(_, _, cam)| {
                        cam.track.is_video()
                            && prog.track.is_video()
                            && cam.keyframe
                            && prog.keyframe
                            && cam.arrival == prog.arrival
                            && prog.payload.len() > cam.payload.len()
                            && prog.payload.ends_with(&cam.payload)
                    })
                    .copied()
                    .collect();
                assert!(candidates.len() <= 1, "ambiguous keyframe in the program");
                candidates.first().copied()
            });
            let (camera, index, cam) = found.unwrap_or_else(|| {
                panic!(
                    "a program frame (dts {}, video {}) comes from no camera frame",
                    prog.dts,
                    prog.track.is_video()
                )
            });
            Sourced {
                camera: camera.to_string(),
                index,
                cam: cam.clone(),
                prog: prog.clone(),
            }
        })
        .collect()
}

/// A stretch of the program from one camera.
struct Run {
    camera: String,
    frames: Vec<Sourced>,
}

impl Run {
    fn video(&self) -> Vec<&Sourced> {
        self.frames
            .iter()
            .filter(|s| s.prog.track.is_video())
            .collect()
    }

    fn audio(&self) -> Vec<&Sourced> {
        self.frames
            .iter()
            .filter(|s| !s.prog.track.is_video())
            .collect()
    }

    /// The cut keyframe.
    fn k(&self) -> &Sourced {
        self.video()[0]
    }
}

fn runs(sourced: Vec<Sourced>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for s in sourced {
        match runs.last_mut() {
            Some(run) if run.camera == s.camera => run.frames.push(s),
            _ => runs.push(Run {
                camera: s.camera.clone(),
                frames: vec![s],
            }),
        }
    }
    runs
}

/// What the checks measured for one run.
struct RunFigures {
    camera: String,
    k_dts: i64,
    /// Ticks between `last + step` and the cut keyframe (presentation room); `None` at the start.
    gap: Option<i64>,
    /// Audio ticks between where program audio ended and the run's first audio.
    audio_hole: Option<i64>,
    /// |video offset - audio offset| in seconds: how far the run's audio moved against video.
    lip_sync: f64,
}

/// Checks the recorded program against the cameras' frames and the splice rule; returns the
/// runs (one per camera stretch, in `order`) and what was measured.
fn check_program(recorded: &Recorded, order: &[&str]) -> (Vec<Run>, Vec<RunFigures>) {
    let runs = runs(trace(recorded));
    let cameras: Vec<&str> = runs.iter().map(|r| r.camera.as_str()).collect();
    assert_eq!(
        cameras, order,
        "program runs follow the switches, no frame of a camera outside its run"
    );
    let mut figures = Vec::new();
    // Program-wide state the splice rule refers to.
    let mut last_video: Option<(i64, i64)> = None; // (dts, step into it)
    let mut presented_end: Option<i64> = None;
    let mut last_audio: Option<(i64, i64)> = None; // (dts, rate)
    for (r, run) in runs.iter().enumerate() {
        let first = &run.frames[0];
        assert!(
            first.prog.track.is_video() && first.prog.keyframe,
            "run {r} ({}) starts with a video keyframe",
            run.camera
        );
        let video = run.video();
        let k = video[0];
        let video_offset = k.prog.dts - k.cam.dts;
        for pair in video.windows(2) {
            assert_eq!(
                pair[1].index,
                pair[0].index + 1,
                "run {r} ({}): video frame {} follows {}: none skipped or repeated",
                run.camera,
                pair[1].index,
                pair[0].index
            );
        }
        for s in &video {
            assert_eq!(
                s.prog.dts - s.cam.dts,
                video_offset,
                "run {r} ({}): program video keeps the camera's spacing",
                run.camera
            );
            assert_eq!(
                (s.prog.cts_offset, s.prog.keyframe),
                (s.cam.cts_offset, s.cam.keyframe)
            );
        }
        let gap = match (last_video, presented_end) {
            (Some((last, step)), Some(shown)) => {
                let expected = (last + step).max(shown - i64::from(k.prog.cts_offset));
                assert_eq!(
                    k.prog.dts, expected,
                    "cut into run {r} ({}): K.dts = max(last {last} + step {step}, presented \
                     end {shown} - K's composition offset {})",
                    run.camera, k.prog.cts_offset
                );
                Some(k.prog.dts - (last + step))
            }
            _ => None,
        };
        for (i, s) in video.iter().enumerate() {
            let dts = s.prog.dts;
            let step = match last_video {
                Some((last, _)) => {
                    assert!(dts > last, "program video decode time rises strictly");
                    dts - last
                }
                None => video.get(i + 1).map_or(3000, |next| next.prog.dts - dts),
            };
            last_video = Some((dts, step));
            let shown = dts + i64::from(s.prog.cts_offset.max(0)) + step;
            presented_end = Some(presented_end.map_or(shown, |end| end.max(shown)));
        }

        let audio = run.audio();
        let (mut audio_hole, mut lip_sync) = (None, 0.0);
        if let Some(&f) = audio.first() {
            let rate = f.rate();
            let audio_offset = f.prog.dts - f.cam.dts;
            for pair in audio.windows(2) {
                assert_eq!(
                    pair[1].index,
                    pair[0].index + 1,
                    "run {r} ({}): audio frame {} follows {}: none skipped or repeated",
                    run.camera,
                    pair[1].index,
                    pair[0].index
                );
            }
            for s in &audio {
                assert_eq!(s.rate(), rate, "one audio rate per run");
                assert_eq!(
                    s.prog.dts - s.cam.dts,
                    audio_offset,
                    "run {r} ({}): program audio keeps the camera's spacing",
                    run.camera
                );
            }
            // Video and audio moved by the same time, within half an AAC frame (+ 1 tick).
            let units = (video_offset * rate - audio_offset * V).abs();
            lip_sync = units as f64 / (V * rate) as f64;
            assert!(
                units <= (AAC / 2 + 1) * V,
                "run {r} ({}): lip sync off by {:.3} ms",
                run.camera,
                lip_sync * 1000.0
            );
            if let Some((last, last_rate)) = last_audio {
                let end = rescale(last + AAC, last_rate as u32, rate as u32);
                let hole = f.prog.dts - end;
                assert!(
                    hole >= 0,
                    "cut into run {r} ({}): audio overlaps the program's by {} ticks",
                    run.camera,
                    -hole
                );
                if hole > 0 {
                    // Allowed only where the target's own audio starts or has a hole (it
                    // had none to continue with): then sync wins.
                    let audio = &recorded.camera(&run.camera).audio;
                    let resumes = f.index == 0 || f.cam.dts - audio[f.index - 1].dts > AAC;
                    assert!(
                        resumes,
                        "cut into run {r} ({}): a {hole}-tick audio hole though the camera's \
                         audio is contiguous there",
                        run.camera
                    );
                    assert_eq!(
                        f.prog.dts,
                        f.cam.dts + rescale(video_offset, VIDEO_TIMESCALE, rate as u32),
                        "after a hole in the camera's audio, its audio is placed by lip sync"
                    );
                }
                audio_hole = Some(hole);
            }
            let last = audio.last().expect("non-empty");
            last_audio = Some((last.prog.dts, rate));
        }
        figures.push(RunFigures {
            camera: run.camera.clone(),
            k_dts: k.prog.dts,
            gap,
            audio_hole,
            lip_sync,
        });
    }
    // Program audio never steps back, across rates too.
    let audio: Vec<&Frame> = recorded
        .program
        .iter()
        .filter(|f| !f.track.is_video())
        .collect();
    for pair in audio.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let (ra, rb) = (
            i64::from(a.track.timescale()),
            i64::from(b.track.timescale()),
        );
        assert!(a.dts * rb < b.dts * ra, "program audio time rises");
    }
    for f in &figures {
        println!(
            "run {}: K at program dts {} ({:.4} s), gap beyond last+step {}, audio hole {}, \
             lip sync {:.3} ms",
            f.camera,
            f.k_dts,
            f.k_dts as f64 / V as f64,
            f.gap.map_or("-".into(), |g| format!(
                "{g} ticks ({:.2} ms)",
                g as f64 / 90.0
            )),
            f.audio_hole.map_or("-".into(), |h| format!("{h} ticks")),
            f.lip_sync * 1000.0
        );
    }
    (runs, figures)
}

/// The cut keyframe is the target's first keyframe after the request: not one from before the
/// request (`requested`, when known), and no keyframe the actor could see was passed over.
fn check_first_keyframe(
    run: &Run,
    recording: &Recording,
    requested: Option<Instant>,
    seen: Instant,
) {
    let k = run.k();
    if let Some(requested) = requested {
        assert!(
            k.cam.arrival >= requested,
            "cut to {} on a keyframe that arrived before the request",
            run.camera
        );
    }
    if let Some(skipped) = recording.video[..k.index].iter().rev().find(|f| f.keyframe) {
        assert!(
            skipped.arrival < seen,
            "cut to {}: a keyframe that arrived after the switch was taken up was skipped",
            run.camera
        );
    }
}

/// The segment each run starts: its first video sample is the cut keyframe and its first audio
/// the run's first audio. Returns the segment's position in `segments`.
fn cut_segment(segments: &[Listed], run: &Run) -> usize {
    let k = run.k().prog.dts;
    let i = segments
        .iter()
        .position(|s| s.start(1) == Some(k))
        .unwrap_or_else(|| {
            let starts: Vec<_> = segments.iter().map(|s| s.start(1)).collect();
            panic!(
                "no segment starts at the cut to {} (dts {k}); video starts: {starts:?}",
                run.camera
            )
        });
    if let Some(a) = run.audio().first() {
        assert_eq!(
            segments[i].start(2),
            Some(a.prog.dts),
            "the cut to {} starts the segment's audio too",
            run.camera
        );
    }
    i
}

/// Each cut starts a segment, under an EXT-X-MAP that changes exactly when the configuration
/// does, with the target's geometry; a new configuration's keyframe carries its SPS and PPS.
/// Returns the cut segments' positions, one per run.
fn check_cut_segments(watched: &Watched, runs: &[Run]) -> Vec<usize> {
    let segments = &watched.segments;
    let mut cut_at = Vec::new();
    for (r, run) in runs.iter().enumerate() {
        let i = cut_segment(segments, run);
        let segment = &segments[i];
        let (width, height, rate) = geometry_of(&run.camera);
        assert_eq!(
            (segment.parsed.width, segment.parsed.height),
            (Some(width), Some(height)),
            "the cut to {} is under an init with its resolution",
            run.camera
        );
        assert_eq!(segment.parsed.sample_rate, Some(rate));
        if r > 0 && i > 0 {
            let changed = geometry_of(&run.camera) != geometry_of(&runs[r - 1].camera);
            let previous = &segments[i - 1];
            assert_eq!(
                segment.map_uri != previous.map_uri,
                changed,
                "cut {} -> {}: a new EXT-X-MAP exactly when the configuration changes",
                runs[r - 1].camera,
                run.camera
            );
            let k_size = run.k().cam.payload.len() as u32;
            let size = segment.first_size(1).expect("video sample");
            if changed {
                assert!(
                    size > k_size,
                    "new SPS/PPS in-band at a configuration change"
                );
            } else {
                assert_eq!(size, k_size, "the keyframe as sent when nothing changed");
            }
        }
        cut_at.push(i);
    }
    cut_at
}

/// Asserts the switch log, row by row.
fn check_log(log: &[LogRow], expected: &[LogRow]) {
    assert_eq!(log, expected, "switch log (from, to, reason)");
}

/// Asserts a switch's report against the cut it made; prints its timings.
fn check_report(switch: &Switch, previous: &str, run: &Run) {
    let report = &switch.report;
    assert_eq!(report["active_camera"], switch.camera.as_str());
    assert_eq!(report["previous_camera"], previous);
    let waited = report["waited_ms"].as_f64().expect("waited_ms");
    let added = report["added_ms"].as_f64().expect("added_ms");
    assert!(
        waited >= added && added >= 0.0,
        "waited {waited} ms >= added {added} ms >= 0"
    );
    let program_time = report["program_time"].as_f64().expect("program_time");
    assert_eq!(
        (program_time * V as f64).round() as i64,
        run.k().prog.dts,
        "program_time is the cut keyframe's program time"
    );
    println!(
        "switch {previous} -> {}: waited_ms {waited:.1}, added_ms {added:.3}",
        switch.camera
    );
}

// ---------------------------------------------------------------------------------------------
// External tools

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

/// ffprobe's (width, height, sample rate) of a segment with its init.
async fn probe_segment(segment: &Listed) -> (u64, u64, u64) {
    let mut file = tempfile::Builder::new()
        .suffix(".mp4")
        .tempfile()
        .expect("temp file");
    file.write_all(&segment.init).expect("write init");
    file.write_all(&segment.body).expect("write segment");
    let path = file.path().display().to_string();
    let args = [
        "-v",
        "error",
        "-show_entries",
        "stream=codec_type,width,height,sample_rate",
        "-of",
        "json",
        &path,
    ];
    let out = run_tool("ffprobe", &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffprobe on segment {}: {stderr}",
        segment.sequence
    );
    let probe: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let streams = probe["streams"].as_array().expect("streams");
    let of = |kind: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == kind)
            .unwrap_or_else(|| panic!("segment {} has {kind}", segment.sequence))
    };
    let (video, audio) = (of("video"), of("audio"));
    (
        video["width"].as_u64().expect("width"),
        video["height"].as_u64().expect("height"),
        audio["sample_rate"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("sample_rate"),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Starts cam1 alone (so it goes on program automatically), then the other cameras given.
async fn start_on_cam1(config: Config, others: &[&str]) -> Scenario {
    let mut scenario = Scenario::start(config).await;
    scenario.go_live("cam1", 3).await;
    scenario.wait_active("cam1").await;
    for camera in others {
        scenario.go_live(camera, 3).await;
    }
    scenario
}

/// Switches to each camera in turn, `dwell` after the previous switch.
async fn switch_through(scenario: &Scenario, cameras: &[&str], dwell: Duration) -> Vec<Switch> {
    let mut switches = Vec::new();
    for camera in cameras {
        tokio::time::sleep(dwell).await;
        switches.push(scenario.switch(camera).await);
    }
    switches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_splice_exactly_at_the_targets_keyframe() {
    let config = config_with(6, DiscontinuityPolicy::Never);
    let mut scenario = start_on_cam1(config, &["cam2", "cam3"]).await;
    let order = ["cam2", "cam3", "cam1", "cam2"];
    let switches = switch_through(&scenario, &order, DWELL).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Ending lists the last run's open segment.
    scenario.end().await;
    let recorded = scenario.stop_recording().await;
    let log = scenario.api.switch_log().await;
    let (server, watched) = scenario.finish().await;

    let (runs, _) = check_program(&recorded, &["cam1", "cam2", "cam3", "cam1", "cam2"]);
    for (i, switch) in switches.iter().enumerate() {
        let run = &runs[i + 1];
        let recording = recorded.camera(&run.camera);
        check_first_keyframe(run, recording, Some(switch.requested), switch.seen);
        check_report(switch, &runs[i].camera, run);
    }
    check_log(
        &log,
        &[
            row(None, "cam1", "auto"),
            row(Some("cam1"), "cam2", "operator"),
            row(Some("cam2"), "cam3", "operator"),
            row(Some("cam3"), "cam1", "operator"),
            row(Some("cam1"), "cam2", "operator"),
        ],
    );

    // The playlist: every snapshot passed check_playlist and check_successive while watched.
    assert!(watched.playlists.len() >= 2, "several snapshots");
    let target = watched.playlists[0].target_duration;
    assert!(watched
        .playlists
        .iter()
        .all(|p| p.target_duration == target));
    check_cut_segments(&watched, &runs);
    for text in &watched.texts {
        assert!(
            !text.contains("#EXT-X-DISCONTINUITY\n"),
            "policy never: no EXT-X-DISCONTINUITY:\n{text}"
        );
    }
    assert!(watched.segments.iter().all(|s| !s.discontinuity));
    println!(
        "{} program segments, {} playlist snapshots",
        watched.segments.len(),
        watched.texts.len()
    );
    server.shutdown().await;
}

/// cam1 -> cam3 (equal configurations) -> cam2 (another one) under `policy`; returns the
/// discontinuity flag of the segment each run starts and of all the others.
async fn policy_scenario(policy: DiscontinuityPolicy) -> (Vec<bool>, Vec<bool>) {
    let mut scenario = start_on_cam1(config_with(30, policy), &["cam3", "cam2"]).await;
    let switches = switch_through(&scenario, &["cam3", "cam2"], Duration::from_millis(1200)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    scenario.end().await;
    let recorded = scenario.stop_recording().await;
    let (server, watched) = scenario.finish().await;
    let (runs, _) = check_program(&recorded, &["cam1", "cam3", "cam2"]);
    check_report(&switches[0], "cam1", &runs[1]);
    check_report(&switches[1], "cam3", &runs[2]);
    let cut_at = check_cut_segments(&watched, &runs);
    let last = watched.playlists.last().expect("a playlist");
    assert_eq!(last.media_sequence, 0, "window 30 lists every segment");
    assert!(last.end_list, "ended");
    let cuts = cut_at.iter().map(|&i| watched.segments[i].discontinuity);
    let others = (0..watched.segments.len())
        .filter(|i| !cut_at.contains(i))
        .map(|i| watched.segments[i].discontinuity);
    let flags = (cuts.collect(), others.collect());
    println!(
        "{policy:?}: discontinuity at cuts (cam1, cam3, cam2) {:?}",
        flags.0
    );
    server.shutdown().await;
    flags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discontinuity_policies() {
    let (cuts, others) = policy_scenario(DiscontinuityPolicy::Always).await;
    assert_eq!(cuts, [false, true, true], "always: at every cut");
    assert!(others.iter().all(|d| !d), "only at cuts");
    let (cuts, others) = policy_scenario(DiscontinuityPolicy::OnConfigChange).await;
    assert_eq!(
        cuts,
        [false, false, true],
        "on_config_change: only the cut to another configuration"
    );
    assert!(others.iter().all(|d| !d), "only at cuts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_on_disconnect_and_on_silence() {
    let config = config_with(6, DiscontinuityPolicy::Never);
    let mut scenario = start_on_cam1(config, &["cam2"]).await;
    tokio::time::sleep(DWELL).await;

    // cam1's cable is pulled: the program goes on with cam2 at its next keyframe.
    let taken = scenario.taken_up("cam2");
    scenario.pull_cable("cam1");
    let cable_failover = taken.await;
    let log = scenario.wait_log(2).await;
    assert_eq!(log[1], row(Some("cam1"), "cam2", "failover"));
    scenario.wait_live("cam1", false).await;

    // cam1 returns and the operator takes it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    scenario.go_live("cam1", 2).await;
    let back = scenario.switch("cam1").await;

    // cam3 sends 1.2 s, then freezes with its connection open; it goes on program meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    scenario.go_live_then_freeze("cam3", 1200).await;
    let frozen = scenario.switch("cam3").await;
    let taken = scenario.taken_up("cam1");
    let silence_failover = taken.await;
    let log = scenario.wait_log(5).await;
    assert_eq!(log[4], row(Some("cam3"), "cam1", "failover"));
    assert!(
        scenario.event.camera("cam3").expect("cam3").is_live(),
        "cam3 failed over while still connected"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let recorded = scenario.stop_recording().await;

    let (runs, _) = check_program(&recorded, &["cam1", "cam2", "cam1", "cam3", "cam1"]);
    check_first_keyframe(&runs[1], recorded.camera("cam2"), None, cable_failover);
    check_first_keyframe(
        &runs[2],
        recorded.camera("cam1"),
        Some(back.requested),
        back.seen,
    );
    check_report(&back, "cam2", &runs[2]);
    check_first_keyframe(
        &runs[3],
        recorded.camera("cam3"),
        Some(frozen.requested),
        frozen.seen,
    );
    check_report(&frozen, "cam1", &runs[3]);
    check_first_keyframe(&runs[4], recorded.camera("cam1"), None, silence_failover);
    check_log(
        &log,
        &[
            row(None, "cam1", "auto"),
            row(Some("cam1"), "cam2", "failover"),
            row(Some("cam2"), "cam1", "operator"),
            row(Some("cam1"), "cam3", "operator"),
            row(Some("cam3"), "cam1", "failover"),
        ],
    );

    // Every camera drops. cam2 first; then cam1, the active one, so the program fails over to
    // the frozen cam3 and waits for a keyframe that never comes; then cam3. With no camera
    // live the event is paused, and no new segments appear.
    scenario.pull_cable("cam2");
    scenario.wait_live("cam2", false).await;
    let taken = scenario.taken_up("cam3");
    scenario.pull_cable("cam1");
    taken.await;
    scenario.pull_cable("cam3");
    for camera in ["cam1", "cam2", "cam3"] {
        scenario.wait_live(camera, false).await;
    }
    let paused = scenario.reaches_status("paused").await;
    let listed = scenario.event.program.snapshot().next_sequence;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        scenario.event.program.snapshot().next_sequence,
        listed,
        "no new segments with no camera live"
    );

    // A camera returns: live again, by an automatic switch.
    scenario.go_live("cam2", 1).await;
    scenario.wait_status("live").await;
    let log = scenario.wait_log(6).await;
    assert_eq!((log[5].1.as_str(), log[5].2.as_str()), ("cam2", "auto"));
    println!("resumed: {:?}", log[5]);
    let (server, watched) = scenario.finish().await;
    assert!(!watched.segments.is_empty());
    server.shutdown().await;
    if let Err(event) = paused {
        let cameras: Vec<String> = event["cameras"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {}", c["id"], c["status"]))
            .collect();
        panic!(
            "with no camera live (the failover target dropped before its keyframe) the event \
             never became paused: status {}, active {}, pending {}, cameras {cameras:?}",
            event["status"], event["active_camera"], event["pending_camera"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_the_program_across_switches() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let config = config_with(30, DiscontinuityPolicy::Never);
    let mut scenario = start_on_cam1(config, &["cam2"]).await;
    switch_through(&scenario, &["cam2", "cam1", "cam2"], DWELL).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    scenario.end().await;
    let recorded = scenario.stop_recording().await;
    let (server, watched) = scenario.finish().await;
    let (runs, _) = check_program(&recorded, &["cam1", "cam2", "cam1", "cam2"]);
    check_cut_segments(&watched, &runs);
    assert!(
        watched.playlists.last().expect("a playlist").end_list,
        "EXT-X-ENDLIST"
    );

    let url = playlist_url(&server, "program");
    let out = run_tool(
        "ffmpeg",
        &["-nostdin", "-v", "error", "-i", &url, "-f", "null", "-"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ffmpeg failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        stderr.trim().is_empty(),
        "ffmpeg complained decoding the program:\n{stderr}"
    );

    let first = watched.segments.first().expect("segments");
    let last = watched.segments.last().expect("segments");
    assert_eq!(probe_segment(first).await, (320, 240, 48_000));
    assert_eq!(probe_segment(last).await, (640, 360, 44_100));
    server.shutdown().await;
}
