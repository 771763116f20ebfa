//! The program actor: one task per event that follows the active camera, splices to the
//! requested one at its next keyframe, fails over when the active camera drops or goes silent,
//! and feeds the program packager. Requests arrive over a bounded channel with reply channels;
//! state goes out through a `watch` and JSON notifications through the event's bus.
//!
//! Frames of the active camera are drained before the pending camera's (`biased` select), so
//! the cut happens in arrival order as closely as one task can see it.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use chrono::Utc;
use serde_json::json;
use tokio::{
    sync::{broadcast, mpsc, watch},
    time::{sleep_until, Instant},
};

use super::splice::{DiscontinuityPolicy, ProgramEvent, Splicer, Switched};
use super::{
    notify, now_rfc3339, warnings, Command, Event, ProgramState, Reason, Status, SwitchError,
    SwitchReply, SwitchReport, Wiring,
};
use crate::camera::Camera;
use crate::fanout::{Fanout, Subscriber};
use crate::hls::packager::Packager;
use crate::media::{Frame, VIDEO_TIMESCALE};
use crate::store::{Store, SwitchRow};

/// How the program behaves; from `[program]` and `[hls]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: DiscontinuityPolicy,
    pub failover_timeout: Duration,
    pub switch_timeout: Duration,
    pub target: Duration,
}

/// Work for the store, run in order on one blocking thread so the actor never waits on disk.
pub type StoreJob = Box<dyn FnOnce(&Store) + Send>;

/// Starts the writer that runs store jobs in order.
pub fn store_writer(store: Arc<Store>) -> mpsc::Sender<StoreJob> {
    let (tx, mut rx) = mpsc::channel::<StoreJob>(1024);
    tokio::task::spawn_blocking(move || {
        while let Some(job) = rx.blocking_recv() {
            job(&store);
        }
    });
    tx
}

struct Following {
    camera: Arc<Camera>,
    frames: Subscriber,
}

struct Pending {
    camera: Arc<Camera>,
    frames: Subscriber,
    reason: Reason,
    reply: Option<SwitchReply>,
    requested: Instant,
    requested_at: String,
    deadline: Instant,
}

enum Wake {
    Command(Option<Command>),
    Changed,
    Active(Option<Frame>),
    Pending(Option<Frame>),
    Idle,
    SwitchTimeout,
    Tick,
}

pub struct Actor {
    event: Weak<Event>,
    id: String,
    settings: Settings,
    splicer: Splicer,
    packager: Packager,
    frames: Arc<Fanout>,
    bus: broadcast::Sender<Arc<str>>,
    store: mpsc::Sender<StoreJob>,
    state: watch::Sender<ProgramState>,
    active: Option<Following>,
    pending: Option<Pending>,
    /// Camera ids live at the last look, to announce changes once.
    live: Vec<String>,
    /// The camera on program before a restart: it gets priority when it returns.
    preferred: Option<String>,
    /// The camera lost to a failover, reported as `from` by the switch that replaces it.
    lost: Option<String>,
    /// A failover is under way: a replacement that vanishes is replaced, still as `failover`.
    /// Ends when a switch completes or the event pauses.
    recovering: bool,
    /// When the active camera counts as silent.
    idle_deadline: Instant,
    /// Warnings last announced per camera, so each change is announced once.
    warned: HashMap<String, Vec<String>>,
    /// Reused output buffer of the splicer.
    out: Vec<ProgramEvent>,
}

async fn next(frames: Option<&mut Subscriber>) -> Option<Frame> {
    match frames {
        Some(frames) => frames.recv().await,
        None => std::future::pending().await,
    }
}

impl Actor {
    pub fn spawn(
        event: &Arc<Event>,
        wiring: Wiring,
        settings: Settings,
        store: mpsc::Sender<StoreJob>,
        preferred: Option<String>,
    ) {
        let state = wiring.state;
        let actor = Actor {
            event: Arc::downgrade(event),
            id: event.id.clone(),
            splicer: Splicer::new(settings.policy),
            packager: Packager::for_program(event.program.clone(), settings.target)
                .counted(&event.id, "program"),
            frames: event.program_frames.clone(),
            bus: event.bus.clone(),
            store,
            state,
            active: None,
            pending: None,
            live: Vec::new(),
            preferred,
            lost: None,
            recovering: false,
            idle_deadline: Instant::now(),
            warned: HashMap::new(),
            out: Vec::with_capacity(64),
            settings,
        };
        let span = tracing::info_span!("program", event = %event.id);
        tokio::spawn(tracing::Instrument::instrument(
            actor.run(wiring.commands, wiring.changes),
            span,
        ));
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut changes: watch::Receiver<u64>,
    ) {
        match self.status() {
            Status::Ended => self.packager.rendition().end(),
            // Restarted mid-event: nothing is on program until a camera returns.
            Status::Live => self.set_status(Status::Paused),
            Status::Waiting | Status::Paused => {}
        }
        self.cameras_changed();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let wake = {
                let has_active = self.active.is_some();
                let idle = self.idle_deadline;
                let switch_deadline = self.pending.as_ref().map(|p| p.deadline);
                let active = self.active.as_mut().map(|a| &mut a.frames);
                let pending = self.pending.as_mut().map(|p| &mut p.frames);
                tokio::select! {
                    biased;
                    command = commands.recv() => Wake::Command(command),
                    changed = changes.changed() => match changed {
                        Ok(()) => Wake::Changed,
                        Err(_) => Wake::Command(None),
                    },
                    frame = next(active) => Wake::Active(frame),
                    frame = next(pending) => Wake::Pending(frame),
                    _ = sleep_until(idle), if has_active => Wake::Idle,
                    _ = sleep_until(switch_deadline.unwrap_or(idle)), if switch_deadline.is_some() => Wake::SwitchTimeout,
                    _ = tick.tick() => Wake::Tick,
                }
            };
            match wake {
                Wake::Command(None) => break,
                Wake::Command(Some(Command::Switch {
                    camera,
                    reason,
                    reply,
                })) => self.switch(&camera, reason, reply),
                Wake::Command(Some(Command::End { reply })) => {
                    self.end();
                    let _ = reply.send(());
                }
                Wake::Changed => self.cameras_changed(),
                Wake::Active(Some(frame)) => {
                    self.idle_deadline = Instant::now() + self.settings.failover_timeout;
                    let id = self
                        .active
                        .as_ref()
                        .map(|a| a.camera.id.clone())
                        .unwrap_or_default();
                    self.feed(&id, frame);
                }
                Wake::Active(None) => self.failover("camera removed"),
                Wake::Pending(Some(frame)) => {
                    let id = self
                        .pending
                        .as_ref()
                        .map(|p| p.camera.id.clone())
                        .unwrap_or_default();
                    self.feed(&id, frame);
                }
                Wake::Pending(None) => {
                    self.cancel_pending(SwitchError::NotLive);
                    self.cameras_changed();
                }
                Wake::Idle => {
                    let silent = self.settings.failover_timeout;
                    self.failover(&format!("no media for {silent:?}"));
                }
                Wake::SwitchTimeout => {
                    tracing::warn!("switch cancelled: no keyframe from the target in time");
                    self.cancel_pending(SwitchError::Timeout);
                    if self.active.is_none() {
                        self.pause();
                    }
                }
                Wake::Tick => {
                    self.refresh_warnings();
                    self.announce_stats();
                }
            }
        }
        tracing::debug!("program actor stopped");
    }

    fn status(&self) -> Status {
        self.state.borrow().status
    }

    fn publish_state(&self) {
        let state = ProgramState {
            status: self.status(),
            active: self.active.as_ref().map(|a| a.camera.id.clone()),
            pending: self.pending.as_ref().map(|p| p.camera.id.clone()),
        };
        self.state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }

    fn notify(&self, kind: &str, fields: serde_json::Value) {
        notify(&self.bus, &self.id, kind, fields);
    }

    fn persist(&self, job: StoreJob) {
        if let Err(e) = self.store.try_send(job) {
            tracing::error!(error = %e, "store writer is behind; a write was dropped");
        }
    }

    fn set_status(&mut self, status: Status) {
        if self.status() == status {
            return;
        }
        self.state.send_modify(|s| s.status = status);
        tracing::info!(status = status.as_str(), "event status");
        self.notify("event_status", json!({ "status": status.as_str() }));
        let id = self.id.clone();
        self.persist(Box::new(move |store| {
            if let Err(e) = store.set_status(&id, status.as_str()) {
                tracing::error!(error = %e, "saving event status");
            }
        }));
    }

    fn camera(&self, id: &str) -> Option<Arc<Camera>> {
        self.event.upgrade()?.camera(id)
    }

    fn switch(&mut self, id: &str, reason: Reason, reply: Option<SwitchReply>) {
        let answer = |reply: Option<SwitchReply>, result| {
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        };
        if self.status() == Status::Ended {
            return answer(reply, Err(SwitchError::Ended));
        }
        let Some(camera) = self.camera(id) else {
            return answer(reply, Err(SwitchError::UnknownCamera));
        };
        if !camera.is_live() {
            return answer(reply, Err(SwitchError::NotLive));
        }
        if self.active.as_ref().is_some_and(|a| a.camera.id == id) {
            // Already on program: drop any other pending switch; nothing to wait for.
            self.cancel_pending(SwitchError::Superseded);
            let now = now_rfc3339();
            return answer(
                reply,
                Ok(SwitchReport {
                    active_camera: id.to_string(),
                    previous_camera: Some(id.to_string()),
                    requested_at: now.clone(),
                    switched_at: now,
                    waited_ms: 0.0,
                    added_ms: 0.0,
                    program_time: 0.0,
                }),
            );
        }
        self.cancel_pending(SwitchError::Superseded);
        self.splicer.request(id);
        let now = Instant::now();
        self.pending = Some(Pending {
            frames: camera.fanout.subscribe_live(),
            camera,
            reason,
            reply,
            requested: now,
            requested_at: now_rfc3339(),
            deadline: now + self.settings.switch_timeout,
        });
        tracing::info!(camera = id, reason = reason.as_str(), "switch pending");
        self.notify(
            "switch_pending",
            json!({ "camera": id, "reason": reason.as_str() }),
        );
        self.publish_state();
    }

    fn cancel_pending(&mut self, why: SwitchError) {
        if let Some(pending) = self.pending.take() {
            self.splicer.cancel();
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(why.clone()));
            }
            self.notify(
                "switch_cancelled",
                json!({ "camera": pending.camera.id, "reason": why.to_string() }),
            );
            self.publish_state();
        }
    }

    fn feed(&mut self, camera: &str, frame: Frame) {
        let switched = self.splicer.push(camera, &frame, &mut self.out);
        for event in self.out.drain(..) {
            let result = match event {
                ProgramEvent::Splice { discontinuity } => self.packager.splice(discontinuity),
                ProgramEvent::Frame(frame) => {
                    self.frames.send(&frame);
                    self.packager.push(frame, Utc::now())
                }
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "program packaging failed; segment dropped");
            }
        }
        if let Some(switched) = switched {
            self.completed(switched);
        }
    }

    fn completed(&mut self, switched: Switched) {
        let matches = self
            .pending
            .as_ref()
            .is_some_and(|p| p.camera.id == switched.to);
        if !matches {
            return; // the active camera re-anchored after a reconnect: not a switch
        }
        let pending = self.pending.take().expect("checked above");
        let now = Instant::now();
        let previous = self
            .active
            .take()
            .map(|a| a.camera.id.clone())
            .or_else(|| self.lost.take());
        let report = SwitchReport {
            active_camera: switched.to.clone(),
            previous_camera: previous.clone(),
            requested_at: pending.requested_at,
            switched_at: now_rfc3339(),
            waited_ms: ms(now - pending.requested),
            added_ms: ms(now.saturating_duration_since(switched.keyframe_arrival.into())),
            program_time: switched.program_dts as f64 / f64::from(VIDEO_TIMESCALE),
        };
        tracing::info!(
            from = previous.as_deref().unwrap_or("-"),
            to = %switched.to,
            reason = pending.reason.as_str(),
            waited_ms = format!("{:.1}", report.waited_ms),
            added_ms = format!("{:.3}", report.added_ms),
            lip_sync_error_ms = format!("{:.2}", switched.lip_sync_error * 1000.0),
            "switched"
        );
        crate::telemetry::switched(&self.id, pending.reason.as_str());
        self.active = Some(Following {
            camera: pending.camera,
            frames: pending.frames,
        });
        self.idle_deadline = now + self.settings.failover_timeout;
        self.preferred = None;
        self.recovering = false;
        self.notify(
            "camera_switched",
            json!({
                "from": previous,
                "to": switched.to,
                "reason": pending.reason.as_str(),
                "program_timestamp": report.program_time,
                // The same instant as the switch log's row.
                "at": report.switched_at,
            }),
        );
        self.set_status(Status::Live);
        self.publish_state();
        self.refresh_warnings();
        let (id, to, reason) = (self.id.clone(), switched.to.clone(), pending.reason);
        let row = SwitchRow {
            at: report.switched_at.clone(),
            from: previous,
            to: to.clone(),
            reason: reason.as_str().to_string(),
        };
        let reply = pending.reply;
        // The reply goes out once the switch is on disk, so a client that then reads the log
        // sees it.
        self.persist(Box::new(move |store| {
            if let Err(e) = store
                .log_switch(&id, &row)
                .and_then(|()| store.set_active(&id, Some(&to)))
            {
                tracing::error!(error = %e, "saving the switch");
            }
            if let Some(reply) = reply {
                let _ = reply.send(Ok(report));
            }
        }));
    }

    /// The active camera dropped or went silent: go to the next live camera in priority order.
    fn failover(&mut self, why: &str) {
        let Some(old) = self.active.take() else {
            return;
        };
        tracing::warn!(camera = %old.camera.id, why, "active camera lost; failing over");
        self.lost = Some(old.camera.id.clone());
        self.recovering = true;
        self.splicer.drop_active();
        // List what the program has so far; the next camera's cut starts a new segment.
        if let Err(e) = self.packager.splice(false) {
            tracing::error!(error = %e, "program packaging failed");
        }
        self.publish_state();
        if self.pending.is_some() {
            return; // an operator switch is already on its way
        }
        let Some(event) = self.event.upgrade() else {
            return;
        };
        let cameras = event.cameras();
        let start = cameras
            .iter()
            .position(|c| c.id == old.camera.id)
            .unwrap_or(0);
        let next = (1..=cameras.len())
            .map(|i| &cameras[(start + i) % cameras.len()])
            .find(|c| c.id != old.camera.id && c.is_live())
            .map(|c| c.id.clone());
        match next {
            Some(id) => self.switch(&id, Reason::Failover, None),
            None => self.pause(),
        }
    }

    /// Nothing can go on program: hold until a camera returns (that start is `auto`).
    fn pause(&mut self) {
        self.recovering = false;
        self.set_status(Status::Paused);
    }

    fn cameras_changed(&mut self) {
        let Some(event) = self.event.upgrade() else {
            return;
        };
        let cameras = event.cameras();
        let live: Vec<String> = cameras
            .iter()
            .filter(|c| c.is_live())
            .map(|c| c.id.clone())
            .collect();
        for id in live.iter().filter(|id| !self.live.contains(id)) {
            self.notify("camera_live", json!({ "camera": id }));
        }
        for id in self.live.iter().filter(|id| !live.contains(id)) {
            self.notify("camera_offline", json!({ "camera": id }));
        }
        self.live = live;
        if let Some(active) = &self.active {
            if !self.live.contains(&active.camera.id) {
                self.failover("publisher disconnected");
            }
        }
        if let Some(pending) = &self.pending {
            if !self.live.contains(&pending.camera.id) {
                self.cancel_pending(SwitchError::NotLive);
            }
        }
        if self.active.is_none() && self.pending.is_none() && self.status() != Status::Ended {
            let first = self
                .preferred
                .clone()
                .filter(|p| self.live.contains(p))
                .or_else(|| self.live.first().cloned());
            match first {
                // Still recovering from a lost camera (its replacement may have vanished too).
                Some(id) if self.recovering => self.switch(&id, Reason::Failover, None),
                Some(id) => self.switch(&id, Reason::Auto, None),
                None if self.status() == Status::Live => self.pause(),
                None => {}
            }
        }
        self.refresh_warnings();
    }

    /// Pushes every camera's measurements to WebSocket clients (when there are any), so
    /// consoles show bitrate and frame rate without polling.
    fn announce_stats(&self) {
        if self.bus.receiver_count() == 0 {
            return;
        }
        let Some(event) = self.event.upgrade() else {
            return;
        };
        let cameras: Vec<serde_json::Value> = event
            .cameras()
            .iter()
            .map(|camera| {
                let m = camera.measured();
                json!({
                    "camera": camera.id,
                    "status": camera.status(),
                    "bitrate": m.bitrate,
                    "frame_rate": m.frame_rate,
                    "keyframe_interval": m.keyframe_interval,
                    "width": m.width,
                    "height": m.height,
                    "video_codec": m.video_codec,
                    "audio_codec": m.audio_codec,
                    "sample_rate": m.sample_rate,
                })
            })
            .collect();
        self.notify("camera_stats", json!({ "cameras": cameras }));
    }

    /// Announces each live camera's differences from the program once per change.
    fn refresh_warnings(&mut self) {
        let (Some(active), Some(event)) = (&self.active, self.event.upgrade()) else {
            return;
        };
        let reference = active.camera.measured();
        for camera in event
            .cameras()
            .iter()
            .filter(|c| c.is_live() && c.id != active.camera.id)
        {
            let now = warnings(&camera.measured(), &reference);
            if self.warned.get(&camera.id) != Some(&now) {
                // An empty list announces that earlier warnings cleared.
                if !now.is_empty() || self.warned.contains_key(&camera.id) {
                    notify(
                        &self.bus,
                        &self.id,
                        "camera_warning",
                        json!({ "camera": camera.id, "warnings": now }),
                    );
                }
                self.warned.insert(camera.id.clone(), now);
            }
        }
    }

    fn end(&mut self) {
        self.cancel_pending(SwitchError::Ended);
        if self.active.take().is_some() {
            self.splicer.drop_active();
        }
        if let Err(e) = self.packager.splice(false) {
            tracing::error!(error = %e, "program packaging failed");
        }
        self.packager.rendition().end();
        self.set_status(Status::Ended);
        self.publish_state();
        let id = self.id.clone();
        self.persist(Box::new(move |store| {
            if let Err(e) = store.set_active(&id, None) {
                tracing::error!(error = %e, "saving the end of the event");
            }
        }));
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
