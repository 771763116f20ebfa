//! Recording of the program (and, with `record.cameras`, every camera) to fragmented MP4 files
//! under `record.dir/<event>/`.
//!
//! - [`naming`]: file names (`program-20261121T183000Z-001.mp4`), written and parsed back.
//! - [`fragmenter`]: frames to fragments by time (pure).
//! - [`writer`]: which frames go to which file; splits and new files on a new codec
//!   configuration (pure, over a [`writer::Storage`]).
//! - [`file`]: one file's init and fragments, each written and `fdatasync`ed in turn, cut back to
//!   the last complete fragment when a write fails.
//! - [`scan`]: reads a file's layout back (duration, last complete fragment).
//! - `source`: the thread that records one source.
//!
//! The [`Recorder`] starts and stops an event's recording (API, or `record.auto_start` when the
//! event goes live), lists its files, and stops a recording whose writes fail: the error is kept
//! for the API and the live stream is untouched.

pub mod file;
pub mod fragmenter;
pub mod naming;
pub mod scan;
mod source;
pub mod writer;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak},
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tokio::sync::watch;

use crate::config::RecordConfig;
use crate::program::{Event, Status};
use crate::registry::Registry;
use crate::webhook::Webhooks;
use source::SourceTask;
use writer::Limits;

/// Durations of files read back from disk, by path, with the size and mtime they were read at.
type ScanCache = Mutex<HashMap<PathBuf, (u64, SystemTime, f64)>>;

/// Bytes written to recording files, labelled `event` and `source`.
pub const BYTES_METRIC: &str = "tally_recording_bytes_total";
/// Recording files being written now.
pub const ACTIVE_METRIC: &str = "tally_recordings_active";

/// How often the recorder looks at every event (auto-start, new cameras, deleted events).
const SUPERVISE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a recording request failed.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("no such event")]
    NoSuchEvent,
    #[error("no such recording")]
    NoSuchFile,
    /// The recording folder cannot be written; the recording did not start.
    #[error("{message}")]
    Storage {
        message: String,
        /// The disk is full (HTTP 507 rather than 500).
        full: bool,
    },
}

/// An event's recording state, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingStatus {
    /// The event id.
    pub event: String,
    /// Recording now.
    pub recording: bool,
    /// When the current recording started (RFC 3339), if recording.
    pub started_at: Option<String>,
    /// The sources being recorded (`program`, and cameras with `record.cameras`).
    pub sources: Vec<String>,
    /// Files being written now.
    pub in_progress: Vec<String>,
    /// Why the last recording stopped by itself, or why it could not start.
    pub error: Option<String>,
}

/// One file in an event's listing.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingFile {
    /// `program` or the camera id.
    pub source: String,
    /// The file name, as the download route takes it.
    pub file: String,
    /// When the file was opened (RFC 3339, to the second).
    pub started_at: String,
    /// Seconds of media in it (written so far, if in progress).
    pub duration: f64,
    /// Bytes on disk.
    pub size: u64,
    /// `complete` or `in_progress`.
    pub status: &'static str,
}

/// An event's files with its recording status.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The status fields, at the top level of the JSON.
    #[serde(flatten)]
    pub status: RecordingStatus,
    /// Oldest first.
    pub files: Vec<RecordingFile>,
}

/// What this server knows of a file it wrote.
#[derive(Debug, Clone)]
struct FileInfo {
    /// Seconds of media written.
    duration: f64,
    /// Bytes through the last complete fragment.
    size: u64,
    /// Still being written.
    in_progress: bool,
}

/// One event's recording: the sources running, the files written and the last error.
#[derive(Debug, Default)]
struct EventRecording {
    /// The recording in progress, if any.
    active: Mutex<Option<Active>>,
    /// Why the last recording stopped by itself (disk full, unwritable folder); cleared when a
    /// recording starts.
    error: Mutex<Option<String>>,
    /// Files written by this server, by name: their duration without reading them back, and
    /// whether they are still being written.
    files: Mutex<HashMap<String, FileInfo>>,
}

/// A recording in progress.
#[derive(Debug)]
struct Active {
    /// RFC 3339 start time, for the status.
    started_at: String,
    /// Set to true to stop every source; a failing source sets it too.
    stop: Arc<watch::Sender<bool>>,
    /// Each source's thread, by source id.
    sources: HashMap<String, std::thread::JoinHandle<()>>,
}

impl Active {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Starts, stops and lists recordings for every event.
#[derive(Debug)]
pub struct Recorder {
    /// The `[record]` section.
    config: RecordConfig,
    /// Events and their cameras.
    registry: Arc<Registry>,
    /// Told of every closed file (`on_record_done`).
    webhooks: Arc<Webhooks>,
    /// Recording state per event id; entries stay after a recording stops, for its files and
    /// error.
    events: Mutex<HashMap<String, Arc<EventRecording>>>,
    /// Serialises start and stop, so two requests cannot start one event twice.
    control: tokio::sync::Mutex<()>,
    /// Durations of files read back from disk, by path, valid while size and mtime match.
    scanned: Arc<ScanCache>,
}

impl Recorder {
    /// Creates the recorder and, inside a tokio runtime, its supervisor: once a second it starts
    /// recordings of events that went live (`record.auto_start`), adds cameras created during a
    /// recording, and stops recordings of ended or deleted events.
    pub fn new(
        config: &RecordConfig,
        registry: Arc<Registry>,
        webhooks: Arc<Webhooks>,
    ) -> Arc<Recorder> {
        static DESCRIBED: std::sync::Once = std::sync::Once::new();
        DESCRIBED.call_once(|| {
            // The recorder must exist before the descriptions are given to it.
            crate::telemetry::handle();
            metrics::describe_counter!(
                BYTES_METRIC,
                metrics::Unit::Bytes,
                "Bytes written to recording files, by event and source (program or camera id)."
            );
            metrics::describe_gauge!(ACTIVE_METRIC, "Recording files being written now.");
            // Listed from the start, at 0, not only once a file opens.
            metrics::gauge!(ACTIVE_METRIC).increment(0.0);
        });
        let recorder = Arc::new(Recorder {
            config: config.clone(),
            registry,
            webhooks,
            events: Mutex::new(HashMap::new()),
            control: tokio::sync::Mutex::new(()),
            scanned: Arc::new(Mutex::new(HashMap::new())),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(supervise(Arc::downgrade(&recorder)));
        }
        recorder
    }

    fn state(&self, event: &str) -> Arc<EventRecording> {
        self.events
            .lock()
            .expect("events lock")
            .entry(event.to_string())
            .or_default()
            .clone()
    }

    fn existing(&self, event: &str) -> Option<Arc<EventRecording>> {
        self.events.lock().expect("events lock").get(event).cloned()
    }

    fn event_dir(&self, event: &str) -> PathBuf {
        self.config.dir.join(event)
    }

    /// The event's recording status.
    pub fn status(&self, event: &str) -> Result<RecordingStatus, RecorderError> {
        if self.registry.event(event).is_none() && self.existing(event).is_none() {
            return Err(RecorderError::NoSuchEvent);
        }
        Ok(self.status_of(event))
    }

    fn status_of(&self, event: &str) -> RecordingStatus {
        let state = self.existing(event).unwrap_or_default();
        let active = state.active.lock().expect("active lock");
        let running = active.as_ref().filter(|a| !a.stopped());
        let mut sources: Vec<String> = running
            .map(|a| a.sources.keys().cloned().collect())
            .unwrap_or_default();
        sources.sort_by_key(|s| (s != naming::PROGRAM, s.clone()));
        let mut in_progress: Vec<String> = state
            .files
            .lock()
            .expect("files lock")
            .iter()
            .filter(|(_, f)| f.in_progress)
            .map(|(name, _)| name.clone())
            .collect();
        in_progress.sort();
        let error = state.error.lock().expect("error lock").clone();
        RecordingStatus {
            event: event.to_string(),
            recording: running.is_some(),
            started_at: running.map(|a| a.started_at.clone()),
            sources,
            in_progress,
            error,
        }
    }

    /// Starts recording the event (a no-op if it is recording). The folder is created and
    /// checked now, so an unwritable `record.dir` is an error here, not later.
    pub async fn start(&self, event: &str) -> Result<RecordingStatus, RecorderError> {
        let _control = self.control.lock().await;
        let handle = self
            .registry
            .event(event)
            .ok_or(RecorderError::NoSuchEvent)?;
        if !naming::is_id(event) {
            return Err(RecorderError::NoSuchEvent);
        }
        let state = self.state(event);
        let previous = {
            let mut active = state.active.lock().expect("active lock");
            if active.as_ref().is_some_and(|a| !a.stopped()) {
                drop(active);
                return Ok(self.status_of(event));
            }
            active.take()
        };
        // A recording that stopped by itself (a failed write): let its threads finish first.
        join(previous).await;

        let dir = self.event_dir(event);
        let checked = dir.clone();
        let ready = tokio::task::spawn_blocking(move || prepare(&checked))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        if let Err(e) = ready {
            let message = format!(
                "record.dir: cannot write recordings to {}: {e}",
                dir.display()
            );
            tracing::error!(event, error = %message, "recording not started");
            *state.error.lock().expect("error lock") = Some(message.clone());
            return Err(RecorderError::Storage {
                message,
                full: e.kind() == std::io::ErrorKind::StorageFull,
            });
        }
        *state.error.lock().expect("error lock") = None;
        let mut active = Active {
            started_at: crate::program::now_rfc3339(),
            stop: Arc::new(watch::Sender::new(false)),
            sources: HashMap::new(),
        };
        self.spawn_source(&handle, &state, &mut active, None);
        if self.config.cameras {
            for camera in handle.cameras() {
                self.spawn_source(&handle, &state, &mut active, Some(camera));
            }
        }
        *state.active.lock().expect("active lock") = Some(active);
        tracing::info!(event, dir = %dir.display(), "recording started");
        Ok(self.status_of(event))
    }

    /// Stops recording the event once every file is closed (a no-op if it is not recording).
    pub async fn stop(&self, event: &str) -> Result<RecordingStatus, RecorderError> {
        let _control = self.control.lock().await;
        if self.registry.event(event).is_none() && self.existing(event).is_none() {
            return Err(RecorderError::NoSuchEvent);
        }
        if let Some(state) = self.existing(event) {
            let active = state.active.lock().expect("active lock").take();
            if let Some(active) = &active {
                if !active.stopped() {
                    tracing::info!(event, "recording stopped");
                }
                active.stop.send_replace(true);
            }
            join(active).await;
        }
        Ok(self.status_of(event))
    }

    fn spawn_source(
        &self,
        event: &Arc<Event>,
        state: &Arc<EventRecording>,
        active: &mut Active,
        camera: Option<Arc<crate::camera::Camera>>,
    ) {
        let source = camera
            .as_ref()
            .map_or_else(|| naming::PROGRAM.to_string(), |c| c.id.clone());
        let task = SourceTask {
            event: event.clone(),
            camera,
            source: source.clone(),
            shared: state.clone(),
            stop: active.stop.subscribe(),
            stop_all: active.stop.clone(),
            dir: self.event_dir(&event.id),
            limits: Limits::from_config(&self.config),
            webhooks: self.webhooks.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        match task.spawn() {
            Ok(thread) => {
                active.sources.insert(source, thread);
            }
            Err(e) => tracing::error!(event = %event.id, source, error = %e, "no recording thread"),
        }
    }

    /// The event's files (oldest first) with its status. Files of earlier runs are read back
    /// for their duration.
    pub async fn files(&self, event: &str) -> Result<Listing, RecorderError> {
        let status = self.status(event)?;
        let known = self
            .existing(event)
            .map(|s| s.files.lock().expect("files lock").clone())
            .unwrap_or_default();
        let dir = self.event_dir(event);
        let scanned = self.scanned.clone();
        let files = tokio::task::spawn_blocking(move || list(&dir, &known, &scanned))
            .await
            .unwrap_or_default();
        Ok(Listing { status, files })
    }

    /// The path of a listed file: only names this module writes, in the event's folder.
    pub async fn file_path(&self, event: &str, name: &str) -> Result<PathBuf, RecorderError> {
        if !naming::is_id(event) || naming::parse(name).is_none() {
            return Err(RecorderError::NoSuchFile);
        }
        let path = self.event_dir(event).join(name);
        let checked = path.clone();
        let is_file = tokio::task::spawn_blocking(move || {
            std::fs::symlink_metadata(&checked).is_ok_and(|m| m.is_file())
        })
        .await
        .unwrap_or(false);
        if is_file {
            Ok(path)
        } else {
            Err(RecorderError::NoSuchFile)
        }
    }

    /// One supervisor pass; `seen` is each event's status at the previous pass.
    async fn supervise_once(&self, seen: &mut HashMap<String, Status>) {
        let events = self.registry.events();
        for event in &events {
            let status = event.state().status;
            let was = seen.insert(event.id.clone(), status);
            let went_live = status == Status::Live && was != Some(Status::Live);
            if self.config.auto_start && went_live {
                let recording = self.existing(&event.id).is_some_and(|s| {
                    s.active
                        .lock()
                        .expect("active lock")
                        .as_ref()
                        .is_some_and(|a| !a.stopped())
                });
                if !recording {
                    tracing::info!(event = %event.id, "event went live: recording (record.auto_start)");
                    if let Err(e) = self.start(&event.id).await {
                        tracing::error!(event = %event.id, error = %e, "auto-start failed");
                    }
                }
            }
            if status == Status::Ended {
                if self
                    .existing(&event.id)
                    .is_some_and(|s| s.active.lock().expect("active lock").is_some())
                {
                    tracing::info!(event = %event.id, "event ended: recording stops");
                    let _ = self.stop(&event.id).await;
                }
                continue;
            }
            self.reap_or_extend(event).await;
        }
        // Deleted events: stop their recordings (the files stay).
        let gone: Vec<String> = self
            .events
            .lock()
            .expect("events lock")
            .keys()
            .filter(|id| !events.iter().any(|e| &e.id == *id))
            .cloned()
            .collect();
        for id in gone {
            if self
                .existing(&id)
                .is_some_and(|s| s.active.lock().expect("active lock").is_some())
            {
                tracing::info!(event = %id, "event deleted: recording stops");
                let _ = self.stop(&id).await;
            }
        }
        seen.retain(|id, _| events.iter().any(|e| &e.id == id));
    }

    /// Joins a recording that stopped by itself; adds cameras created since it started.
    async fn reap_or_extend(&self, event: &Arc<Event>) {
        let Some(state) = self.existing(&event.id) else {
            return;
        };
        let _control = self.control.lock().await;
        let failed = {
            let mut active = state.active.lock().expect("active lock");
            match active.as_mut() {
                None => return,
                Some(a) if a.stopped() => active.take(),
                Some(a) => {
                    if self.config.cameras {
                        for camera in event.cameras() {
                            let running =
                                a.sources.get(&camera.id).is_some_and(|t| !t.is_finished());
                            if !running {
                                self.spawn_source(event, &state, a, Some(camera));
                            }
                        }
                    }
                    None
                }
            }
        };
        join(failed).await;
    }
}

/// Waits, off the async workers, for a recording's threads to close their files.
async fn join(active: Option<Active>) {
    let Some(active) = active else {
        return;
    };
    active.stop.send_replace(true);
    let threads: Vec<_> = active.sources.into_values().collect();
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
}

async fn supervise(recorder: Weak<Recorder>) {
    let mut tick = tokio::time::interval(SUPERVISE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seen = HashMap::new();
    loop {
        tick.tick().await;
        let Some(recorder) = recorder.upgrade() else {
            return;
        };
        recorder.supervise_once(&mut seen).await;
    }
}

/// Creates the event's folder and proves a file can be created in it.
fn prepare(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".tally-write-test-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

/// The recording files in `dir`, oldest first.
fn list(dir: &Path, known: &HashMap<String, FileInfo>, scanned: &ScanCache) -> Vec<RecordingFile> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(naming::FileName, RecordingFile)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let parsed = naming::parse(&name)?;
            let meta = entry.metadata().ok().filter(|m| m.is_file())?;
            let (duration, in_progress) = match known.get(&name) {
                Some(info) => (info.duration, info.in_progress),
                None => (duration_of(&entry.path(), &meta, scanned), false),
            };
            let file = RecordingFile {
                source: parsed.source.clone(),
                file: name,
                started_at: parsed
                    .start
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                duration: (duration * 1000.0).round() / 1000.0,
                size: meta.len(),
                status: if in_progress {
                    "in_progress"
                } else {
                    "complete"
                },
            };
            Some((parsed, file))
        })
        .collect();
    files.sort_by(|(a, _), (b, _)| {
        (a.start, &a.source, a.index).cmp(&(b.start, &b.source, b.index))
    });
    files.into_iter().map(|(_, f)| f).collect()
}

/// A file's media duration, read back once per size and mtime.
fn duration_of(path: &Path, meta: &std::fs::Metadata, scanned: &ScanCache) -> f64 {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if let Some(&(len, mtime, duration)) = scanned.lock().expect("scan cache").get(path) {
        if len == meta.len() && mtime == modified {
            return duration;
        }
    }
    let duration = std::fs::File::open(path)
        .and_then(|f| scan::scan(std::io::BufReader::new(f), meta.len()))
        .map_or(0.0, |layout| layout.duration);
    scanned
        .lock()
        .expect("scan cache")
        .insert(path.to_path_buf(), (meta.len(), modified, duration));
    duration
}
