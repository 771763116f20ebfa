//! Interop tests: real encoders publish over RTMP (ffmpeg's native RTMP client, GStreamer's
//! librtmp-based `rtmpsink` and its own `rtmp2sink`), and real tools read what tally serves
//! (ffmpeg's HLS demuxer, ffprobe). Every test asserts properties of the output, never timings.
//!
//! A missing tool fails the test under CI (`CI=true`) and skips it loudly elsewhere; see
//! `support::require_tool`. `bash .ci/run` installs the tools.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use bytes::Bytes;
use serde::Deserialize;
use support::{KEY_A, KEY_B};
use tally::Server;
use tokio::{
    io::AsyncReadExt,
    process::{Child, Command},
    task::JoinHandle,
};

/// How long any external process may run before the test calls it a hang (not a timing
/// assertion: the processes here take about ten seconds).
const HANG: Duration = Duration::from_secs(90);

/// How often a live playlist is polled while a publisher runs.
const POLL: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------------------------------------
// Processes

/// An external process whose stderr is drained in the background (so a chatty tool can never
/// block on a full pipe).
struct Running {
    what: String,
    child: Child,
    stderr: JoinHandle<String>,
}

/// What a finished process left behind.
struct Finished {
    status: ExitStatus,
    stderr: String,
}

fn spawn(program: &str, args: &[String]) -> Running {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let stderr = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = pipe.read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).into_owned()
    });
    Running {
        what: format!("{program} {}", args.join(" ")),
        child,
        stderr,
    }
}

impl Running {
    /// Waits for the process to exit; panics (killing it) if it hangs.
    async fn finish(mut self) -> Finished {
        let status = match tokio::time::timeout(HANG, self.child.wait()).await {
            Ok(status) => status.unwrap_or_else(|e| panic!("waiting for {}: {e}", self.what)),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!("{} did not exit within {HANG:?}", self.what);
            }
        };
        let stderr = self.stderr.await.expect("stderr reader");
        Finished { status, stderr }
    }

    /// Waits for a publisher to exit, asserts it succeeded and shows what it printed.
    async fn finish_ok(self) -> Finished {
        let what = self.what.clone();
        let finished = self.finish().await;
        assert!(
            finished.status.success(),
            "{what} failed ({}):\n{}",
            finished.status,
            finished.stderr
        );
        if !finished.stderr.is_empty() {
            println!("{what} stderr:\n{}", finished.stderr);
        }
        finished
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

async fn run(program: &str, args: &[String]) -> Finished {
    spawn(program, args).finish().await
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Runs `ffmpeg -v error -i INPUT [output options] -f null -` and asserts a zero exit status and
/// an empty stderr: not one decoder, demuxer or bitstream complaint.
async fn assert_decodes_cleanly(input: &str, output_options: &[&str]) {
    let mut args = strings(&["-nostdin", "-v", "error", "-i", input]);
    args.extend(strings(output_options));
    args.extend(strings(&["-f", "null", "-"]));
    let out = run("ffmpeg", &args).await;
    assert!(
        out.status.success(),
        "ffmpeg could not decode {input} ({}):\n{}",
        out.status,
        out.stderr
    );
    assert!(
        out.stderr.trim().is_empty(),
        "ffmpeg reported errors decoding {input}:\n{}",
        out.stderr
    );
}

/// Whether GStreamer has an element (`gst-inspect-1.0 NAME` exits 0).
async fn gst_has(element: &str) -> bool {
    Command::new("gst-inspect-1.0")
        .arg(element)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .is_ok_and(|s| s.success())
}

fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

// ---------------------------------------------------------------------------------------------
// Files

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tally-interop-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    /// Writes an init segment followed by media segments, as a player would concatenate them.
    fn concatenated(&self, name: &str, init: &Bytes, segments: &[Bytes]) -> PathBuf {
        let mut all = init.to_vec();
        for segment in segments {
            all.extend_from_slice(segment);
        }
        let path = self.0.join(name);
        std::fs::write(&path, all).expect("write scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// ffprobe

#[derive(Debug, Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    #[serde(default)]
    packets: Vec<ProbePacket>,
}

#[derive(Debug, Deserialize)]
struct ProbeStream {
    index: usize,
    codec_type: String,
    codec_name: String,
    width: Option<u32>,
    height: Option<u32>,
    sample_rate: Option<String>,
    time_base: String,
}

#[derive(Debug, Deserialize)]
struct ProbePacket {
    stream_index: usize,
    pts: Option<i64>,
    dts: Option<i64>,
}

impl ProbeStream {
    /// Seconds per tick of this stream's time base ("1/90000").
    fn tick(&self) -> f64 {
        let (num, den) = self
            .time_base
            .split_once('/')
            .expect("time_base is num/den");
        num.parse::<f64>().expect("time_base numerator")
            / den.parse::<f64>().expect("time_base denominator")
    }

    fn sample_rate(&self) -> Option<u32> {
        self.sample_rate
            .as_deref()
            .map(|r| r.parse().expect("sample_rate is a number"))
    }
}

impl Probe {
    fn stream(&self, kind: &str) -> &ProbeStream {
        let mut of_kind = self.streams.iter().filter(|s| s.codec_type == kind);
        let stream = of_kind
            .next()
            .unwrap_or_else(|| panic!("no {kind} stream: {self:?}"));
        assert!(of_kind.next().is_none(), "exactly one {kind} stream");
        stream
    }

    fn packets_of(&self, stream: &ProbeStream) -> impl Iterator<Item = &ProbePacket> {
        let index = stream.index;
        self.packets.iter().filter(move |p| p.stream_index == index)
    }

    /// The earliest presentation time of a stream, in seconds.
    fn first_pts(&self, stream: &ProbeStream) -> f64 {
        let ticks = self
            .packets_of(stream)
            .filter_map(|p| p.pts)
            .min()
            .unwrap_or_else(|| panic!("{} stream has packets with pts", stream.codec_type));
        ticks as f64 * stream.tick()
    }

    /// Whether some packet of the stream is presented at another time than it is decoded.
    fn reorders(&self, stream: &ProbeStream) -> bool {
        self.packets_of(stream)
            .any(|p| p.pts.is_some() && p.pts != p.dts)
    }
}

/// Runs ffprobe with `args` on `file`; asserts it succeeded and returns its output.
async fn run_ffprobe(args: &[&str], file: &Path) -> std::process::Output {
    let mut args = strings(args);
    args.push(file.display().to_string());
    let out = Command::new("ffprobe")
        .args(&args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(HANG, out)
        .await
        .expect("ffprobe hung")
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {} failed:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn ffprobe(file: &Path) -> Probe {
    let args = [
        "-v",
        "error",
        "-show_entries",
        "stream=index,codec_type,codec_name,width,height,sample_rate,time_base",
        "-show_entries",
        "packet=stream_index,pts,dts",
        "-of",
        "json",
    ];
    let out = run_ffprobe(&args, file).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "ffprobe complained about {}:\n{stderr}",
        file.display()
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

/// Asserts the codecs and geometry ffprobe sees; returns the probe for further checks.
async fn probe_expecting(file: &Path, width: u32, height: u32, sample_rate: u32) -> Probe {
    let probe = ffprobe(file).await;
    let video = probe.stream("video");
    let audio = probe.stream("audio");
    assert_eq!(video.codec_name, "h264");
    assert_eq!((video.width, video.height), (Some(width), Some(height)));
    assert_eq!(audio.codec_name, "aac");
    assert_eq!(audio.sample_rate(), Some(sample_rate));
    assert!(probe.packets_of(video).count() > 0, "video packets");
    assert!(probe.packets_of(audio).count() > 0, "audio packets");
    probe
}

/// Whether the first video packet of a file (an init plus one media segment) is a keyframe.
async fn starts_with_keyframe(file: &Path) -> bool {
    let args = [
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-read_intervals",
        "%+#1",
        "-show_entries",
        "packet=flags",
        "-of",
        "csv=p=0",
    ];
    let out = run_ffprobe(&args, file).await;
    let flags = String::from_utf8_lossy(&out.stdout);
    let first = flags
        .lines()
        .next()
        .unwrap_or_else(|| panic!("{} has video", file.display()));
    first.contains('K')
}

/// Which of the given segments (each with the init in force) begin with a video keyframe.
async fn keyframe_starts(scratch: &Scratch, init: &Bytes, segments: &[Bytes]) -> Vec<bool> {
    let mut starts = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let file = scratch.concatenated(
            &format!("single-{i}.mp4"),
            init,
            std::slice::from_ref(segment),
        );
        starts.push(starts_with_keyframe(&file).await);
    }
    starts
}

/// EXT-X-INDEPENDENT-SEGMENTS is a promise: every listed segment starts with a keyframe.
async fn check_independence(
    scratch: &Scratch,
    playlist: &m3u8_rs::MediaPlaylist,
    init: &Bytes,
    segments: &[Bytes],
) -> Vec<bool> {
    let starts = keyframe_starts(scratch, init, segments).await;
    if playlist.independent_segments {
        assert!(
            starts.iter().all(|&k| k),
            "EXT-X-INDEPENDENT-SEGMENTS, yet not every segment starts with a keyframe: {starts:?}"
        );
    }
    starts
}

// ---------------------------------------------------------------------------------------------
// Playlists

/// Polls a playlist until `publisher` exits, keeping every distinct snapshot (each one checked
/// with `check_playlist`), then takes one last snapshot after the exit.
async fn watch_while_publishing(
    server: &Server,
    rendition: &str,
    publisher: &mut Running,
) -> Vec<m3u8_rs::MediaPlaylist> {
    let url = support::playlist_url(server, rendition);
    let deadline = tokio::time::Instant::now() + HANG;
    let mut texts: Vec<String> = Vec::new();
    let mut snapshots = Vec::new();
    loop {
        let done = publisher.exited();
        let fetched = support::get(&url).await;
        if fetched.status == 200 {
            let text = String::from_utf8(fetched.body.to_vec()).expect("utf-8 playlist");
            if texts.last() != Some(&text) {
                snapshots.push(support::check_playlist(&text));
                texts.push(text);
            }
        }
        if done {
            return snapshots;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never exited",
            publisher.what
        );
        tokio::time::sleep(POLL).await;
    }
}

fn check_all_successive(snapshots: &[m3u8_rs::MediaPlaylist]) {
    for pair in snapshots.windows(2) {
        support::check_successive(&pair[0], &pair[1]);
    }
}

fn durations(playlist: &m3u8_rs::MediaPlaylist) -> Vec<f32> {
    playlist.segments.iter().map(|s| s.duration).collect()
}

/// The EXT-X-MAP URI in force for segment `index`: the last one at or before it.
fn map_in_force(playlist: &m3u8_rs::MediaPlaylist, index: usize) -> &str {
    playlist.segments[..=index]
        .iter()
        .rev()
        .find_map(|s| s.map.as_ref())
        .map(|m| m.uri.as_str())
        .expect("every segment is under an EXT-X-MAP")
}

/// Fetches segments `from..` and the init in force for them (all must share it, or their
/// concatenation would not be one valid file).
async fn fetch_from(
    server: &Server,
    rendition: &str,
    playlist: &m3u8_rs::MediaPlaylist,
    from: usize,
) -> (Bytes, Vec<Bytes>) {
    let map = map_in_force(playlist, from);
    let init = support::get(&support::resolve(server, rendition, map)).await;
    assert_eq!(init.status, 200, "{map}");
    let mut segments = Vec::new();
    for (i, segment) in playlist.segments.iter().enumerate().skip(from) {
        assert_eq!(
            map_in_force(playlist, i),
            map,
            "one init for segments {from}.."
        );
        let fetched = support::get(&support::resolve(server, rendition, &segment.uri)).await;
        assert_eq!(fetched.status, 200, "{}", segment.uri);
        segments.push(fetched.body);
    }
    (init.body, segments)
}

// ---------------------------------------------------------------------------------------------
// 1. ffmpeg publishing like OBS

fn ffmpeg_publisher(url: &str) -> Vec<String> {
    let mut args = strings(&[
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "10",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-profile:v",
        "high",
        "-bf",
        "3",
        "-g",
        "60",
        "-keyint_min",
        "60",
        "-sc_threshold",
        "0",
        "-b:v",
        "800k",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-ar",
        "48000",
        "-f",
        "flv",
    ]);
    args.push(url.to_string());
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_and_playlist_decodes_cleanly() {
    if !support::require_tool("ffmpeg") || !support::require_tool("ffprobe") {
        return;
    }
    let server = support::start().await;
    let scratch = Scratch::new("ffmpeg");
    let url = format!("rtmp://{}/{}/{KEY_A}", server.rtmp_addr, support::APP);
    let mut publisher = spawn("ffmpeg", &ffmpeg_publisher(&url));

    let (_, first) = support::wait_for_playlist(&server, "cam1", |p| p.segments.len() >= 3).await;

    // (a) ffmpeg's HLS demuxer plays the live playlist without a single complaint, while (c) the
    // playlist is polled until the publisher ends.
    let playlist_url = support::playlist_url(&server, "cam1");
    let (snapshots, ()) = tokio::join!(
        watch_while_publishing(&server, "cam1", &mut publisher),
        assert_decodes_cleanly(&playlist_url, &["-t", "4"]),
    );
    publisher.finish_ok().await;

    // (c) successive snapshots obey the live-playlist rules.
    let mut all = vec![first];
    all.extend(snapshots);
    assert!(
        all.len() >= 2,
        "the playlist changed while ffmpeg published"
    );
    check_all_successive(&all);
    let last = all.last().expect("snapshots");
    println!(
        "cam1: {} snapshots, final MEDIA-SEQUENCE {}, TARGETDURATION {}, EXTINF {:?}",
        all.len(),
        last.media_sequence,
        last.target_duration,
        durations(last)
    );

    // (b) the served media, concatenated, is one valid fragmented MP4 with the published codecs.
    let (init, segments) = support::fetch_media(&server, "cam1", last).await;
    // A fixed 2 s GOP (-g 60 -keyint_min 60 -sc_threshold 0 at 30 fps) matches the 2 s target:
    // every cut lands on a keyframe.
    assert!(
        last.independent_segments,
        "a 2 s GOP makes independent segments"
    );
    check_independence(&scratch, last, &init, &segments).await;
    let file = scratch.concatenated("cam1.mp4", &init, &segments);
    let probe = probe_expecting(&file, 640, 360, 48000).await;
    let video = probe.stream("video");
    let audio = probe.stream("audio");
    assert!(
        probe.reorders(video),
        "B-frames survive: some video packet has pts != dts"
    );
    let (video_start, audio_start) = (probe.first_pts(video), probe.first_pts(audio));
    println!(
        "first pts: video {video_start:.4} s, audio {audio_start:.4} s; {} video and {} audio packets",
        probe.packets_of(video).count(),
        probe.packets_of(audio).count()
    );
    assert!(
        (video_start - audio_start).abs() <= 1.0 / 30.0 + 1e-9,
        "audio and video start together (within one frame): video {video_start} s, audio {audio_start} s"
    );
    assert_decodes_cleanly(&file.display().to_string(), &[]).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. GStreamer: librtmp's rtmpsink, then a reconnect with rtmp2sink

/// The H.264 encoder for the GStreamer publishers and whether it makes B-frames; `None` means
/// skip (loudly; under CI this panics instead).
async fn gst_h264_encoder() -> Option<(Vec<&'static str>, bool)> {
    if gst_has("x264enc").await {
        return Some((
            vec![
                "x264enc",
                "key-int-max=60",
                "bframes=2",
                "speed-preset=veryfast",
            ],
            true,
        ));
    }
    if under_ci() {
        panic!("x264enc is required under CI=true; .ci/run must install gstreamer1.0-plugins-ugly");
    }
    if gst_has("openh264enc").await {
        eprintln!(
            "NOTE: x264enc is not installed (gstreamer1.0-plugins-ugly); publishing with \
             openh264enc instead, so this run has no B-frames"
        );
        return Some((vec!["openh264enc", "gop-size=60"], false));
    }
    eprintln!("SKIPPED: no GStreamer H.264 encoder (x264enc or openh264enc); run bash .ci/run");
    None
}

/// The first AAC encoder GStreamer has, or `None` (skip loudly; under CI this panics).
async fn gst_aac_encoder() -> Option<&'static str> {
    // avenc_aac: gstreamer1.0-libav; voaacenc: gstreamer1.0-plugins-bad; fdkaacenc: where built.
    for element in ["avenc_aac", "voaacenc", "fdkaacenc"] {
        if gst_has(element).await {
            return Some(element);
        }
    }
    if under_ci() {
        panic!("an AAC encoder is required under CI=true; .ci/run must install gstreamer1.0-libav");
    }
    eprintln!(
        "SKIPPED: no GStreamer AAC encoder (avenc_aac, voaacenc, fdkaacenc); run bash .ci/run"
    );
    None
}

/// `gst-launch-1.0 -q -e`: 10 s of a 320x240 ball and a 48 kHz tone, muxed to FLV into `sink`.
fn gst_publisher(video_encoder: &[&str], aac: &str, sink: &[String]) -> Vec<String> {
    let mut args = strings(&[
        "-q",
        "-e",
        "videotestsrc",
        "is-live=true",
        "num-buffers=300",
        "pattern=ball",
        "!",
        "video/x-raw,width=320,height=240,framerate=30/1",
        "!",
    ]);
    args.extend(strings(video_encoder));
    args.extend(strings(&[
        "!",
        "h264parse",
        "!",
        "flvmux",
        "name=mux",
        "streamable=true",
        // flvmux (an aggregator) must wait out the encoder's latency. With the default 0 a live
        // pipeline hands it late video whose timestamps it clamps to the audio already written,
        // so the FLV itself has duplicate and jittering timestamps (ffmpeg complains about a
        // file written straight from such a pipeline, before tally is involved).
        "latency=300000000",
        "!",
    ]));
    args.extend(sink.iter().cloned());
    args.extend(strings(&[
        "audiotestsrc",
        "is-live=true",
        "num-buffers=470",
        "!",
        "audio/x-raw,rate=48000,channels=2",
        "!",
        "audioconvert",
        "!",
        aac,
        "!",
        "aacparse",
        "!",
        "mux.",
    ]));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_rtmpsink_publishes() {
    if !support::require_tool("gst-launch-1.0")
        || !support::require_tool("gst-inspect-1.0")
        || !support::require_tool("ffmpeg")
        || !support::require_tool("ffprobe")
    {
        return;
    }
    let Some((h264, bframes)) = gst_h264_encoder().await else {
        return;
    };
    let Some(aac) = gst_aac_encoder().await else {
        return;
    };
    println!("GStreamer encoders: {} and {aac}", h264[0]);
    let server = support::start().await;
    let scratch = Scratch::new("gstreamer");
    let url = format!("rtmp://{}/{}/{KEY_B}", server.rtmp_addr, support::APP);

    // librtmp (rtmpsink), the RTMP stack OBS descends from.
    let sink = vec!["rtmpsink".to_string(), format!("location={url} live=1")];
    let mut librtmp = spawn("gst-launch-1.0", &gst_publisher(&h264, aac, &sink));
    let snapshots = watch_while_publishing(&server, "cam2", &mut librtmp).await;
    librtmp.finish_ok().await;
    assert!(
        !snapshots.is_empty(),
        "the cam2 playlist appeared while rtmpsink published"
    );
    check_all_successive(&snapshots);
    let (_, before) = support::wait_for_playlist(&server, "cam2", |_| true).await;
    check_all_successive(&[snapshots.last().cloned().expect("snapshot"), before.clone()]);
    println!("cam2 after rtmpsink: EXTINF {:?}", durations(&before));
    assert!(
        !before.segments.iter().any(|s| s.discontinuity),
        "one session, no discontinuity"
    );

    let (init, segments) = support::fetch_media(&server, "cam2", &before).await;
    let starts = check_independence(&scratch, &before, &init, &segments).await;
    assert!(
        starts[0] || before.media_sequence > 0,
        "the first segment starts on a keyframe"
    );
    println!("cam2 segments from rtmpsink start with keyframes: {starts:?}");
    let file = scratch.concatenated("rtmpsink.mp4", &init, &segments);
    let probe = probe_expecting(&file, 320, 240, 48000).await;
    if bframes {
        assert!(
            probe.reorders(probe.stream("video")),
            "x264enc's B-frames survive"
        );
    }
    assert_decodes_cleanly(&file.display().to_string(), &[]).await;

    // The same camera again, now from GStreamer's own RTMP client: a reconnect.
    let sink = vec!["rtmp2sink".to_string(), format!("location={url}")];
    let mut rtmp2 = spawn("gst-launch-1.0", &gst_publisher(&h264, aac, &sink));
    let snapshots = watch_while_publishing(&server, "cam2", &mut rtmp2).await;
    rtmp2.finish_ok().await;
    let mut all = vec![before];
    all.extend(snapshots);
    check_all_successive(&all);
    let (text, after) = support::wait_for_playlist(&server, "cam2", |p| {
        p.segments.iter().any(|s| s.discontinuity)
    })
    .await;
    check_all_successive(&[all.last().cloned().expect("snapshot"), after.clone()]);
    println!("cam2 after the reconnect:\n{text}");
    let splice = after
        .segments
        .iter()
        .rposition(|s| s.discontinuity)
        .expect("EXT-X-DISCONTINUITY at the reconnect");
    println!(
        "EXT-X-MAP before the reconnect {}, after {}",
        map_in_force(&after, splice.saturating_sub(1)),
        map_in_force(&after, splice)
    );

    let (init, segments) = fetch_from(&server, "cam2", &after, splice).await;
    let starts = keyframe_starts(&scratch, &init, &segments).await;
    assert!(
        starts[0],
        "the first segment after the reconnect starts on a keyframe"
    );
    if after.independent_segments {
        assert!(
            starts.iter().all(|&k| k),
            "EXT-X-INDEPENDENT-SEGMENTS: {starts:?}"
        );
    }
    println!("cam2 segments after the reconnect start with keyframes: {starts:?}");
    let file = scratch.concatenated("rtmp2sink.mp4", &init, &segments);
    let probe = probe_expecting(&file, 320, 240, 48000).await;
    if bframes {
        assert!(
            probe.reorders(probe.stream("video")),
            "x264enc's B-frames survive"
        );
    }
    assert_decodes_cleanly(&file.display().to_string(), &[]).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. A wrong stream key

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_with_wrong_key_is_refused() {
    if !support::require_tool("ffmpeg") {
        return;
    }
    let server = support::start().await;

    // A good publisher, paced in real time so that it is live while the bad one knocks.
    let options = tally::rtmp::client::PublishOptions {
        realtime: true,
        ..Default::default()
    };
    let publisher =
        tally::rtmp::client::Publisher::connect(server.rtmp_addr, support::APP, KEY_A, options)
            .await
            .expect("the good key publishes");
    let good = tokio::spawn(async move {
        let mut publisher = publisher;
        publisher
            .send_tags(&support::fixture_tags("cam-a.flv"))
            .await?;
        publisher.finish().await
    });

    let url = format!("rtmp://{}/{}/not-a-key", server.rtmp_addr, support::APP);
    let mut args = strings(&[
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-t",
        "5",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-f",
        "flv",
    ]);
    args.push(url);
    let refused = run("ffmpeg", &args).await;
    println!(
        "ffmpeg with a wrong key: {}\n{}",
        refused.status, refused.stderr
    );
    assert!(!refused.status.success(), "a wrong stream key is refused");
    let said = refused.stderr.to_lowercase();
    assert!(
        said.contains("stream key") || said.contains("refused") || said.contains("rejected"),
        "ffmpeg's error says why:\n{}",
        refused.stderr
    );
    assert!(
        !said.contains(&KEY_A.to_lowercase()),
        "the refusal leaks no other key"
    );

    good.await
        .expect("publisher task")
        .expect("the good publisher is unaffected");
    let (_, playlist) =
        support::wait_for_playlist(&server, "cam1", |p| !p.segments.is_empty()).await;
    println!("cam1 EXTINF {:?}", durations(&playlist));
    let (init, segments) = support::fetch_media(&server, "cam1", &playlist).await;
    let parsed = support::parse_fmp4(&init, &segments);
    assert_eq!(
        (parsed.width, parsed.height),
        (Some(320), Some(240)),
        "cam-a.flv's geometry"
    );
    assert_eq!(parsed.sample_rate, Some(48000));
    let cam2 = support::get(&support::playlist_url(&server, "cam2")).await;
    assert_eq!(cam2.status, 404, "the refused publisher created nothing");
    server.shutdown().await;
}
