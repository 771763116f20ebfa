//! Events and cameras, and the lookups ingest and playback need: stream key to camera, and
//! `event/rendition` to a rendition. Concurrent maps, so lookups never queue behind each other.
//! The store is the source of truth across restarts; this is its live, in-memory view.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::camera::Camera;
use crate::config::Config;
use crate::hls::{segmenter::playlist_target_duration, store::Rendition, PROGRAM};
use crate::program::{
    actor::{Actor, Settings, StoreJob},
    Event, ProgramState, Status,
};
use crate::store::{CameraRow, EventRow};

pub struct Registry {
    events: DashMap<String, Arc<Event>>,
    /// Stream key to camera: what a publish looks up.
    by_key: DashMap<String, Arc<Camera>>,
    /// Each camera's current key, so a rotation can retire the old one.
    keys: Mutex<std::collections::HashMap<String, String>>,
    /// Unique per server start; see `Rendition::stamp`.
    stamp: String,
    target: Duration,
    window: usize,
    settings: Settings,
    /// Ordered writes to the store.
    store: mpsc::Sender<StoreJob>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Builds the registry from the store's rows and starts each event's program actor.
    /// Must run inside a tokio runtime.
    pub fn new(
        config: &Config,
        store: mpsc::Sender<StoreJob>,
        events: &[EventRow],
        cameras: &[CameraRow],
    ) -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let registry = Registry {
            events: DashMap::new(),
            by_key: DashMap::new(),
            keys: Mutex::new(Default::default()),
            stamp: format!("{millis:x}"),
            target: config.hls.target_duration,
            window: config.hls.window,
            settings: Settings {
                policy: config.program.discontinuity,
                failover_timeout: config.program.failover_timeout,
                switch_timeout: config.program.switch_timeout,
                target: config.hls.target_duration,
            },
            store,
        };
        for row in events {
            let event = registry.add_event(row);
            for camera in cameras.iter().filter(|c| c.event == row.id) {
                registry.add_camera(&event, camera);
            }
        }
        registry
    }

    fn rendition(&self, name: &str) -> Arc<Rendition> {
        Arc::new(Rendition::new(
            name,
            &self.stamp,
            playlist_target_duration(self.target),
            self.window,
        ))
    }

    /// Adds an event (from the store) and starts its program actor.
    pub fn add_event(&self, row: &EventRow) -> Arc<Event> {
        let status = Status::parse(&row.status);
        let (event, wiring) = Event::new(
            &row.id,
            &row.name,
            &row.created_at,
            self.rendition(PROGRAM),
            ProgramState {
                status,
                active: None,
                pending: None,
            },
        );
        Actor::spawn(
            &event,
            wiring,
            self.settings.clone(),
            self.store.clone(),
            row.active_camera.clone(),
        );
        self.events.insert(row.id.clone(), event.clone());
        event
    }

    /// Removes an event, disconnecting its publishers; its actor stops with it.
    pub fn remove_event(&self, id: &str) -> Option<Arc<Event>> {
        let (_, event) = self.events.remove(id)?;
        for camera in event.cameras() {
            self.forget_camera(&camera);
        }
        Some(event)
    }

    pub fn add_camera(&self, event: &Arc<Event>, row: &CameraRow) -> Arc<Camera> {
        let camera = Arc::new(Camera::new(
            &event.id,
            &row.id,
            &row.name,
            self.rendition(&row.id),
            self.target,
            event.changes.clone(),
        ));
        self.by_key.insert(row.stream_key.clone(), camera.clone());
        self.keys
            .lock()
            .expect("keys lock")
            .insert(camera.label.clone(), row.stream_key.clone());
        event.push_camera(camera.clone());
        camera
    }

    /// Removes a camera from its event and disconnects its publisher.
    pub fn remove_camera(&self, event: &Event, id: &str) -> Option<Arc<Camera>> {
        let camera = event.remove_camera(id)?;
        self.forget_camera(&camera);
        Some(camera)
    }

    fn forget_camera(&self, camera: &Camera) {
        if let Some(key) = self.keys.lock().expect("keys lock").remove(&camera.label) {
            self.by_key.remove(&key);
        }
        camera.disconnect();
    }

    /// Replaces a camera's key: the old one stops working at once; a live publisher carries on.
    pub fn rekey(&self, camera: &Arc<Camera>, key: &str) {
        let mut keys = self.keys.lock().expect("keys lock");
        if let Some(old) = keys.insert(camera.label.clone(), key.to_string()) {
            self.by_key.remove(&old);
        }
        self.by_key.insert(key.to_string(), camera.clone());
    }

    /// The camera's current stream key, for the control API only.
    pub fn key_of(&self, camera: &Camera) -> Option<String> {
        self.keys
            .lock()
            .expect("keys lock")
            .get(&camera.label)
            .cloned()
    }

    pub fn by_key(&self, key: &str) -> Option<Arc<Camera>> {
        self.by_key.get(key).map(|c| c.clone())
    }

    pub fn event(&self, id: &str) -> Option<Arc<Event>> {
        self.events.get(id).map(|e| e.clone())
    }

    /// Events, oldest first.
    pub fn events(&self) -> Vec<Arc<Event>> {
        let mut events: Vec<Arc<Event>> = self.events.iter().map(|e| e.clone()).collect();
        events.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        events
    }

    pub fn camera(&self, event: &str, id: &str) -> Option<Arc<Camera>> {
        self.event(event)?.camera(id)
    }

    /// The rendition served at `/hls/{event}/{name}`: a camera's, or the program.
    pub fn rendition_of(&self, event: &str, name: &str) -> Option<Arc<Rendition>> {
        let event = self.event(event)?;
        if name == PROGRAM {
            return Some(event.program.clone());
        }
        event.camera(name).map(|c| c.rendition.clone())
    }
}
