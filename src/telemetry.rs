//! Prometheus metrics: one process-wide recorder of the `metrics` facade, rendered at
//! `GET /metrics` on the control port.
//!
//! Every metric this module's callers emit is named and described here, and made by the small
//! constructors below, so a name is spelled once. Building a labelled handle allocates its label
//! set, so per-frame metrics are handles built once per camera or subscriber ([`CameraMetrics`],
//! [`dropped_frames`], [`segments`]): counting a frame is then one atomic add. Per-request and
//! per-switch metrics are built at the call, which is cheap next to the work they count.
//!
//! The recording, restreaming and webhook modules name and describe their own metrics
//! (`tally_recording_*`, `tally_restream_*`, `tally_webhook_*`); they are not repeated here.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, Counter, Gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const CAMERA_BYTES: &str = "tally_camera_bytes_total";
pub const CAMERA_FRAMES: &str = "tally_camera_frames_total";
pub const CAMERA_BITRATE: &str = "tally_camera_bitrate_bits_per_second";
pub const CAMERA_FRAME_RATE: &str = "tally_camera_frame_rate";
pub const CAMERA_KEYFRAME_INTERVAL: &str = "tally_camera_keyframe_interval_seconds";
pub const CAMERA_LIVE: &str = "tally_camera_live";
pub const FANOUT_DROPPED: &str = "tally_fanout_dropped_frames_total";
pub const SEGMENTS: &str = "tally_segments_total";
pub const HLS_REQUESTS: &str = "tally_hls_requests_total";
pub const HLS_BYTES: &str = "tally_hls_bytes_total";
pub const SWITCHES: &str = "tally_switches_total";
pub const RTMP_CONNECTIONS: &str = "tally_rtmp_connections";
pub const PROCESS_CPU: &str = "tally_process_cpu_seconds_total";
pub const PROCESS_MEMORY: &str = "tally_process_resident_memory_bytes";

/// `/proc/self/stat` counts CPU time in USER_HZ ticks, which Linux fixes at 100 for user space
/// on every architecture it supports today (it is not the kernel's `HZ`).
const USER_HZ: f64 = 100.0;

/// The process-wide handle; installs the recorder on first use (tests start many servers in one
/// process, and the facade takes one recorder).
pub fn handle() -> PrometheusHandle {
    installed().clone()
}

/// Installs the recorder if it is not yet. A handle built before that would count into the
/// void forever, so every constructor here calls it first.
fn installed() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (an embedding program): render ours anyway.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        CAMERA_BYTES,
        Unit::Bytes,
        "Audio and video payload bytes received from the camera's publishers."
    );
    describe_counter!(
        CAMERA_FRAMES,
        Unit::Count,
        "Frames received from the camera's publishers, by track (video, audio)."
    );
    describe_gauge!(
        CAMERA_BITRATE,
        Unit::BitsPerSecond,
        "Audio and video payload bitrate over the last second of media; 0 while offline or \
         not yet measured."
    );
    describe_gauge!(
        CAMERA_FRAME_RATE,
        Unit::CountPerSecond,
        "Video frames per second over the last second of media; 0 while offline or not yet \
         measured."
    );
    describe_gauge!(
        CAMERA_KEYFRAME_INTERVAL,
        Unit::Seconds,
        "Media time between the camera's last two video keyframes; 0 until measured."
    );
    describe_gauge!(
        CAMERA_LIVE,
        Unit::Count,
        "1 while the camera has a publisher, else 0."
    );
    describe_counter!(
        FANOUT_DROPPED,
        Unit::Count,
        "Frames lost by consumers (program, recorders, restreamers) that fell behind a source's \
         bounded fan-out; each such consumer resumes at the next keyframe."
    );
    describe_counter!(
        SEGMENTS,
        Unit::Count,
        "Media segments produced, by rendition (a camera id, or `program`)."
    );
    describe_counter!(
        HLS_REQUESTS,
        Unit::Count,
        "Playback requests answered, by kind (playlist, init, segment) and HTTP status."
    );
    describe_counter!(
        HLS_BYTES,
        Unit::Bytes,
        "Playback body bytes in responses, by kind (playlist, init, segment); 0 for HEAD."
    );
    describe_counter!(
        SWITCHES,
        Unit::Count,
        "Program switches completed, by reason (operator, auto, failover)."
    );
    describe_gauge!(
        RTMP_CONNECTIONS,
        Unit::Count,
        "Open RTMP connections (publishing or not)."
    );
    describe_gauge!(
        PROCESS_CPU,
        Unit::Seconds,
        "User and system CPU time of the process, read at scrape time."
    );
    describe_gauge!(
        PROCESS_MEMORY,
        Unit::Bytes,
        "Resident memory of the process, read at scrape time."
    );
}

/// A camera's handles, built once so that a frame costs atomic adds and no allocation.
#[derive(Debug)]
pub struct CameraMetrics {
    pub bytes: Counter,
    pub video_frames: Counter,
    pub audio_frames: Counter,
    pub bitrate: Gauge,
    pub frame_rate: Gauge,
    pub keyframe_interval: Gauge,
    pub live: Gauge,
}

impl CameraMetrics {
    pub fn new(event: &str, camera: &str) -> Self {
        installed();
        let labels = [("event", event.to_string()), ("camera", camera.to_string())];
        let frames = |track: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("track", track.to_string()));
            metrics::counter!(CAMERA_FRAMES, &labels)
        };
        let metrics = CameraMetrics {
            bytes: metrics::counter!(CAMERA_BYTES, &labels),
            video_frames: frames("video"),
            audio_frames: frames("audio"),
            bitrate: metrics::gauge!(CAMERA_BITRATE, &labels),
            frame_rate: metrics::gauge!(CAMERA_FRAME_RATE, &labels),
            keyframe_interval: metrics::gauge!(CAMERA_KEYFRAME_INTERVAL, &labels),
            live: metrics::gauge!(CAMERA_LIVE, &labels),
        };
        // A camera that never published still shows up, as not live.
        metrics.live.set(0.0);
        metrics
    }
}

/// Frames a lagging consumer of `event`'s `source` (a camera id, or `program`) lost.
pub fn dropped_frames(event: &str, source: &str) -> Counter {
    installed();
    metrics::counter!(FANOUT_DROPPED, "event" => event.to_string(), "source" => source.to_string())
}

/// Segments produced for `event`'s `rendition` (a camera id, or `program`).
pub fn segments(event: &str, rendition: &str) -> Counter {
    installed();
    metrics::counter!(SEGMENTS, "event" => event.to_string(), "rendition" => rendition.to_string())
}

/// One completed program switch.
pub fn switched(event: &str, reason: &'static str) {
    installed();
    metrics::counter!(SWITCHES, "event" => event.to_string(), "reason" => reason).increment(1);
}

/// One playback response: `kind` is `playlist`, `init` or `segment`; `bytes` is its body length.
pub fn hls_response(kind: &'static str, status: u16, bytes: u64) {
    installed();
    let status = match status {
        200 => "200".into(),
        206 => "206".into(),
        404 => "404".into(),
        416 => "416".into(),
        other => metrics::SharedString::from(other.to_string()),
    };
    metrics::counter!(HLS_REQUESTS, "kind" => kind, "status" => status).increment(1);
    if bytes > 0 {
        metrics::counter!(HLS_BYTES, "kind" => kind).increment(bytes);
    }
}

/// Holds an RTMP connection's slot (its semaphore permit) and counts it in
/// `tally_rtmp_connections` while it lives.
#[derive(Debug)]
pub struct RtmpConnection<T> {
    _held: T,
}

impl<T> RtmpConnection<T> {
    pub fn new(held: T) -> Self {
        installed();
        metrics::gauge!(RTMP_CONNECTIONS).increment(1.0);
        RtmpConnection { _held: held }
    }
}

impl<T> Drop for RtmpConnection<T> {
    fn drop(&mut self) {
        metrics::gauge!(RTMP_CONNECTIONS).decrement(1.0);
    }
}

/// Reads the process's CPU time and resident memory into their gauges; called right before a
/// scrape is rendered. Where `/proc` is missing (not Linux) the gauges are left alone.
pub fn update_process() {
    installed();
    if let Some(seconds) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| cpu_seconds(&stat))
    {
        metrics::gauge!(PROCESS_CPU).set(seconds);
    }
    if let Some(bytes) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| resident_bytes(&status))
    {
        metrics::gauge!(PROCESS_MEMORY).set(bytes as f64);
    }
}

/// utime + stime (fields 14 and 15 of `/proc/self/stat`) in seconds. The command name (field 2)
/// is in parentheses and may hold spaces or parentheses, so fields are counted after the last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state (field 3) is the first, so utime (14) is the 12th.
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// `VmRSS` of `/proc/self/status`, in bytes. (`/proc/self/statm` counts pages, and the page size
/// is 4 KiB, 16 KiB or 64 KiB depending on the kernel; `status` says kB outright.)
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_time_past_a_tricky_command_name() {
        let stat = "4242 (tally (x) y) S 1 4242 4242 0 -1 4194560 2103 0 0 0 \
                    250 75 0 0 20 0 9 0 123 456789 1234 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(3.25));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn parses_resident_memory() {
        let status = "Name:\ttally\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(20480 * 1024));
        assert_eq!(resident_bytes("Name:\ttally\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("linux");
        assert!(cpu_seconds(&stat).is_some());
        let status = std::fs::read_to_string("/proc/self/status").expect("linux");
        assert!(resident_bytes(&status).unwrap() > 0);
    }
}
