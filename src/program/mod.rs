//! An event and its program output: the cameras in priority order, the `program` rendition
//! viewers watch, the actor that splices cameras into it, and the bus of live notifications.

pub mod actor;
pub mod splice;

use std::sync::{Arc, RwLock};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::camera::{Camera, Measured};
use crate::fanout::Fanout;
use crate::hls::store::Rendition;

/// Notifications buffered per WebSocket client before it is told it lagged.
const BUS_CAPACITY: usize = 256;
/// Commands queued for the actor; API callers wait when it is full.
const COMMAND_CAPACITY: usize = 32;

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No camera has gone on program yet.
    Waiting,
    /// A camera is on program.
    Live,
    /// No camera is live; the program holds and resumes when one returns.
    Paused,
    /// Ended by the operator: the program playlist has EXT-X-ENDLIST.
    Ended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Live => "live",
            Status::Paused => "paused",
            Status::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Status {
        match text {
            "live" => Status::Live,
            "paused" => Status::Paused,
            "ended" => Status::Ended,
            _ => Status::Waiting,
        }
    }
}

/// Why a switch happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Operator,
    Auto,
    Failover,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Operator => "operator",
            Reason::Auto => "auto",
            Reason::Failover => "failover",
        }
    }
}

/// What the program is doing, published by the actor for readers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramState {
    pub status: Status,
    pub active: Option<String>,
    pub pending: Option<String>,
}

/// The answer to a completed switch.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchReport {
    pub active_camera: String,
    pub previous_camera: Option<String>,
    pub requested_at: String,
    pub switched_at: String,
    /// From the request to the splice.
    pub waited_ms: f64,
    /// From the target's keyframe arriving to the splice: the part tally adds.
    pub added_ms: f64,
    /// Program decode time of the cut, seconds.
    pub program_time: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    #[error("no such camera")]
    UnknownCamera,
    #[error("camera is not live")]
    NotLive,
    #[error("no keyframe from the camera within the switch timeout; switch cancelled")]
    Timeout,
    #[error("superseded by a later switch")]
    Superseded,
    #[error("event has ended")]
    Ended,
    #[error("event is shutting down")]
    Gone,
}

pub type SwitchReply = oneshot::Sender<Result<SwitchReport, SwitchError>>;

/// Requests to the program actor.
#[derive(Debug)]
pub enum Command {
    /// Switch at the camera's next keyframe; the reply (if any) is sent once spliced.
    Switch {
        camera: String,
        reason: Reason,
        reply: Option<SwitchReply>,
    },
    /// Write EXT-X-ENDLIST and stop following cameras.
    End { reply: oneshot::Sender<()> },
}

pub struct Event {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// Cameras in priority order (failover goes down this list).
    cameras: RwLock<Vec<Arc<Camera>>>,
    /// The program rendition served at `/hls/{event}/program.m3u8`.
    pub program: Arc<Rendition>,
    /// Program frames, for consumers (recording, restreaming, tests).
    pub program_frames: Arc<Fanout>,
    /// JSON notifications for WebSocket clients.
    pub bus: broadcast::Sender<Arc<str>>,
    /// Bumped by cameras when a publisher comes or goes, and when cameras are added or removed.
    pub changes: Arc<watch::Sender<u64>>,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<ProgramState>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The parts of a new event the actor needs; the rest stays with [`Event`].
pub struct Wiring {
    pub commands: mpsc::Receiver<Command>,
    pub state: watch::Sender<ProgramState>,
    pub changes: watch::Receiver<u64>,
}

impl Event {
    pub fn new(
        id: &str,
        name: &str,
        created_at: &str,
        program: Arc<Rendition>,
        initial: ProgramState,
    ) -> (Arc<Event>, Wiring) {
        let (commands_tx, commands) = mpsc::channel(COMMAND_CAPACITY);
        let (state_tx, state) = watch::channel(initial);
        let changes = Arc::new(watch::Sender::new(0));
        let wiring = Wiring {
            commands,
            state: state_tx,
            changes: changes.subscribe(),
        };
        let event = Arc::new(Event {
            id: id.to_string(),
            name: name.to_string(),
            created_at: created_at.to_string(),
            cameras: RwLock::new(Vec::new()),
            program,
            program_frames: Arc::new(Fanout::labelled(id, "program")),
            bus: broadcast::Sender::new(BUS_CAPACITY),
            changes,
            commands: commands_tx,
            state,
        });
        (event, wiring)
    }

    pub fn cameras(&self) -> Vec<Arc<Camera>> {
        self.cameras.read().expect("cameras lock").clone()
    }

    pub fn camera(&self, id: &str) -> Option<Arc<Camera>> {
        self.cameras
            .read()
            .expect("cameras lock")
            .iter()
            .find(|c| c.id == id)
            .cloned()
    }

    pub fn push_camera(&self, camera: Arc<Camera>) {
        self.cameras.write().expect("cameras lock").push(camera);
        self.changes.send_modify(|n| *n += 1);
    }

    pub fn remove_camera(&self, id: &str) -> Option<Arc<Camera>> {
        let mut cameras = self.cameras.write().expect("cameras lock");
        let index = cameras.iter().position(|c| c.id == id)?;
        let camera = cameras.remove(index);
        drop(cameras);
        self.changes.send_modify(|n| *n += 1);
        Some(camera)
    }

    pub fn state(&self) -> ProgramState {
        self.state.borrow().clone()
    }

    pub fn watch_state(&self) -> watch::Receiver<ProgramState> {
        self.state.clone()
    }

    /// Sends a command; fails only when the actor is gone (event deleted).
    pub async fn command(&self, command: Command) -> Result<(), SwitchError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| SwitchError::Gone)
    }

    /// Publishes a notification to WebSocket clients.
    pub fn notify(&self, kind: &str, fields: serde_json::Value) {
        notify(&self.bus, &self.id, kind, fields);
    }
}

/// Formats and publishes one bus message: `{"type", "event", "at", ...fields}`.
pub fn notify(
    bus: &broadcast::Sender<Arc<str>>,
    event: &str,
    kind: &str,
    fields: serde_json::Value,
) {
    let mut message = serde_json::json!({
        "type": kind,
        "event": event,
        "at": now_rfc3339(),
    });
    if let (Some(target), serde_json::Value::Object(extra)) = (message.as_object_mut(), fields) {
        target.extend(extra);
    }
    // Nobody listening is fine.
    let _ = bus.send(Arc::from(message.to_string()));
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Differences from the camera on program that make cuts rougher for players.
pub fn warnings(camera: &Measured, active: &Measured) -> Vec<String> {
    let mut out = Vec::new();
    if camera.width.is_some() && (camera.width, camera.height) != (active.width, active.height) {
        out.push(format!(
            "resolution {}x{} differs from the program's {}x{}",
            camera.width.unwrap_or_default(),
            camera.height.unwrap_or_default(),
            active.width.unwrap_or_default(),
            active.height.unwrap_or_default()
        ));
    }
    if camera.video_codec.is_some() && camera.video_codec != active.video_codec {
        out.push(format!(
            "video codec {} differs from the program's {}",
            camera.video_codec.as_deref().unwrap_or("-"),
            active.video_codec.as_deref().unwrap_or("-")
        ));
    }
    if camera.sample_rate.is_some() && camera.sample_rate != active.sample_rate {
        out.push(format!(
            "audio sample rate {} Hz differs from the program's {} Hz",
            camera.sample_rate.unwrap_or_default(),
            active.sample_rate.unwrap_or_default()
        ));
    }
    if let (Some(a), Some(b)) = (camera.keyframe_interval, active.keyframe_interval) {
        if (a - b).abs() > 0.1 * b.max(0.001) {
            out.push(format!(
                "keyframe interval {a:.2} s differs from the program's {b:.2} s"
            ));
        }
    }
    out
}
