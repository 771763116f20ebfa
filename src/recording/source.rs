//! One source's recording thread: program or camera frames in from the fan-out, files out.
//!
//! Each recorded source has a dedicated OS thread, so file writes and `fdatasync` never run on
//! the async workers. It is fed by the source's fan-out, a bounded broadcast channel: a writer
//! that falls behind (a slow disk) loses frames there, the loss is logged at most every
//! [`LAG_LOG_INTERVAL`], and recording resumes at the next keyframe with the gap left as a gap.
//! Ingest never waits for it and memory stays bounded by the channel.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio::{runtime::Handle, sync::watch};

use super::naming;
use super::writer::{Limits, Note, RecordError, Recording, Storage};
use super::{EventRecording, FileInfo};
use crate::camera::Camera;
use crate::program::{Event, Status};
use crate::webhook::Webhooks;

const LAG_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Creates a source's files as `<dir>/<source>-<UTC start>-<NNN>.mp4`, never overwriting one.
#[derive(Debug)]
pub struct DirStorage {
    /// `record.dir/<event>`.
    dir: PathBuf,
    /// `program` or the camera id.
    source: String,
    /// Index of the last file created in this recording.
    index: u32,
}

impl DirStorage {
    pub fn new(dir: PathBuf, source: &str) -> Self {
        DirStorage {
            dir,
            source: source.to_string(),
            index: 0,
        }
    }
}

impl Storage for DirStorage {
    type Sink = std::fs::File;

    fn create(&mut self, now: DateTime<Utc>) -> Result<(String, std::fs::File), RecordError> {
        let failed = |what: &str, path: &std::path::Path, e: std::io::Error| {
            RecordError::Create(format!("{what} {}: {e}", path.display()))
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| failed("creating", &self.dir, e))?;
        loop {
            self.index += 1;
            let name = naming::file_name(&self.source, now, self.index);
            let path = self.dir.join(&name);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    // The new name must survive a power cut too, not only the file's bytes.
                    if let Err(e) = std::fs::File::open(&self.dir).and_then(|d| d.sync_all()) {
                        tracing::debug!(error = %e, "syncing the recording folder");
                    }
                    return Ok((name, file));
                }
                // Two files in one second (a quick stop and start): take the next number.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && self.index < 9999 => {}
                Err(e) => return Err(failed("creating", &path, e)),
            }
        }
    }
}

/// Everything a source thread needs.
pub(super) struct SourceTask {
    /// The event recorded.
    pub event: Arc<Event>,
    /// The camera recorded; `None` for the program.
    pub camera: Option<Arc<Camera>>,
    /// `program` or the camera id: file names, logs, metrics, webhooks.
    pub source: String,
    /// Where the event's files, status and error are kept for the API.
    pub shared: Arc<EventRecording>,
    /// Becomes true when the recording stops.
    pub stop: watch::Receiver<bool>,
    /// Stops every source of the recording, when this one fails.
    pub stop_all: Arc<watch::Sender<bool>>,
    /// `record.dir/<event>`.
    pub dir: PathBuf,
    /// Fragment and split limits.
    pub limits: Limits,
    /// `on_record_done` is called for each closed file.
    pub webhooks: Arc<Webhooks>,
    /// Runs the waits on the fan-out and the webhook calls.
    pub runtime: Handle,
}

/// What woke the thread.
enum Wake {
    /// The recording stopped (or its event is gone).
    Stop,
    /// A frame, or `None` when the source's fan-out closed.
    Frame(Option<crate::media::Frame>),
    /// A publisher came or went, or the program's state changed: is the source still on?
    Check,
}

impl SourceTask {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("rec-{}", self.source))
            .spawn(move || self.run())
    }

    /// Whether the source is on: the camera has a publisher, or the program is live.
    fn live(&self, state: &watch::Receiver<crate::program::ProgramState>) -> bool {
        match &self.camera {
            Some(camera) => camera.is_live(),
            None => state.borrow().status == Status::Live,
        }
    }

    /// The camera was removed from the event.
    fn removed(&self) -> bool {
        self.camera.as_ref().is_some_and(|c| {
            self.event
                .camera(&c.id)
                .is_none_or(|now| !Arc::ptr_eq(&now, c))
        })
    }

    fn run(self) {
        let span = tracing::info_span!("recording", event = %self.event.id, source = %self.source);
        let _span = span.enter();
        let mut state = self.event.watch_state();
        let mut changes = self.event.changes.subscribe();
        let mut frames = match &self.camera {
            Some(camera) => camera.fanout.subscribe(),
            // The program's cached GOP is stale while the program is paused: take only new frames.
            None if self.live(&state) => self.event.program_frames.subscribe(),
            None => self.event.program_frames.subscribe_live(),
        };
        let mut stop = self.stop.clone();
        let mut recording =
            Recording::new(DirStorage::new(self.dir.clone(), &self.source), self.limits);
        let bytes = metrics::counter!(
            super::BYTES_METRIC,
            "event" => self.event.id.clone(),
            "source" => self.source.clone()
        );
        let mut lost = frames.lost;
        let mut lag_logged: Option<Instant> = None;
        tracing::debug!("recording source started");
        loop {
            // Channels only, no timers: the thread needs nothing from the runtime's drivers and
            // cannot fail when the runtime shuts down. Frames come first, so a source's last
            // frames are recorded before the change that says it went away.
            let wake = self.runtime.block_on(async {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stopped| *stopped) => Wake::Stop,
                    frame = frames.recv() => Wake::Frame(frame),
                    changed = changes.changed() => match changed {
                        Ok(()) => Wake::Check,
                        Err(_) => Wake::Stop,
                    },
                    changed = state.changed() => match changed {
                        Ok(()) => Wake::Check,
                        Err(_) => Wake::Stop, // the program actor is gone: event deleted
                    },
                }
            });
            let result = match wake {
                Wake::Stop | Wake::Frame(None) => {
                    let result = recording.finish();
                    self.settle(&mut recording, result, &bytes);
                    break;
                }
                Wake::Frame(Some(mut frame)) => {
                    if frames.lost != lost {
                        frame.discontinuity = true;
                        if lag_logged.is_none_or(|t| t.elapsed() >= LAG_LOG_INTERVAL) {
                            tracing::warn!(
                                lost_frames = frames.lost,
                                "recording fell behind; frames dropped, resuming at a keyframe"
                            );
                            lag_logged = Some(Instant::now());
                        }
                        lost = frames.lost;
                    }
                    recording.push(frame, Utc::now())
                }
                Wake::Check => {
                    if self.removed() {
                        let result = recording.finish();
                        self.settle(&mut recording, result, &bytes);
                        break;
                    }
                    if !self.live(&state) && recording.current().is_some() {
                        tracing::info!("source not live; closing its file");
                        recording.finish()
                    } else {
                        Ok(())
                    }
                }
            };
            if !self.settle(&mut recording, result, &bytes) {
                break;
            }
        }
        tracing::debug!("recording source stopped");
    }

    /// Publishes what happened to files; on an error, records it and stops the recording.
    /// Returns whether to go on.
    fn settle(
        &self,
        recording: &mut Recording<DirStorage>,
        result: Result<(), RecordError>,
        bytes: &metrics::Counter,
    ) -> bool {
        for note in recording.take_notes() {
            match note {
                Note::Opened { name } => {
                    metrics::gauge!(super::ACTIVE_METRIC).increment(1.0);
                    tracing::info!(file = %name, "recording file opened");
                    self.shared.files.lock().expect("files lock").insert(
                        name,
                        FileInfo {
                            duration: 0.0,
                            size: 0,
                            in_progress: true,
                        },
                    );
                }
                Note::Wrote {
                    name,
                    bytes: written,
                    duration,
                    size,
                } => {
                    bytes.increment(written);
                    if let Some(info) = self.shared.files.lock().expect("files lock").get_mut(&name)
                    {
                        info.duration = duration;
                        info.size = size;
                    }
                }
                Note::Closed {
                    name,
                    duration,
                    size,
                    why,
                } => {
                    metrics::gauge!(super::ACTIVE_METRIC).decrement(1.0);
                    let path = self.dir.join(&name);
                    let mut files = self.shared.files.lock().expect("files lock");
                    if size == 0 {
                        // Nothing reached the disk (a source gone right after its keyframe, or a
                        // first write that failed): no empty file is left behind.
                        files.remove(&name);
                        drop(files);
                        let _ = std::fs::remove_file(&path);
                        tracing::info!(file = %name, why = why.as_str(), "empty recording file removed");
                        continue;
                    }
                    if let Some(info) = files.get_mut(&name) {
                        info.duration = duration;
                        info.size = size;
                        info.in_progress = false;
                    }
                    drop(files);
                    tracing::info!(
                        file = %name,
                        why = why.as_str(),
                        duration_s = format!("{duration:.3}"),
                        bytes = size,
                        "recording file closed"
                    );
                    let (webhooks, event, source) = (
                        self.webhooks.clone(),
                        self.event.id.clone(),
                        self.source.clone(),
                    );
                    self.runtime.spawn(async move {
                        webhooks.record_done(&event, &source, &path).await;
                    });
                }
            }
        }
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "recording stopped: the live stream carries on");
                *self.shared.error.lock().expect("error lock") = Some(e.to_string());
                self.stop_all.send_replace(true);
                false
            }
        }
    }
}
