//! Events and cameras, and the lookups ingest and playback need: stream key to camera, and
//! `event/rendition` to a rendition. Concurrent maps, so lookups never queue behind each other.

use std::{sync::Arc, time::Duration};

use dashmap::DashMap;

use crate::camera::Camera;
use crate::config::Config;
use crate::hls::{segmenter::playlist_target_duration, store::Rendition};

#[derive(Debug)]
pub struct Registry {
    /// Stream key to camera: what a publish looks up.
    by_key: DashMap<String, Arc<Camera>>,
    /// `event/camera` to camera.
    cameras: DashMap<String, Arc<Camera>>,
    /// Unique per server start; see `Rendition::stamp`.
    stamp: String,
    target: Duration,
    window: usize,
}

impl Registry {
    pub fn new(config: &Config) -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let registry = Registry {
            by_key: DashMap::new(),
            cameras: DashMap::new(),
            stamp: format!("{millis:x}"),
            target: config.hls.target_duration,
            window: config.hls.window,
        };
        for event in &config.events {
            for camera in &event.cameras {
                registry.add_camera(&event.id, &camera.id, &camera.name, &camera.stream_key);
            }
        }
        registry
    }

    pub fn add_camera(&self, event: &str, id: &str, name: &str, stream_key: &str) -> Arc<Camera> {
        let rendition = Arc::new(Rendition::new(
            id,
            &self.stamp,
            playlist_target_duration(self.target),
            self.window,
        ));
        let camera = Arc::new(Camera::new(event, id, name, rendition, self.target));
        self.cameras.insert(camera.label.clone(), camera.clone());
        self.by_key.insert(stream_key.to_string(), camera.clone());
        camera
    }

    pub fn by_key(&self, key: &str) -> Option<Arc<Camera>> {
        self.by_key.get(key).map(|c| c.clone())
    }

    pub fn camera(&self, event: &str, id: &str) -> Option<Arc<Camera>> {
        self.cameras
            .get(&format!("{event}/{id}"))
            .map(|c| c.clone())
    }

    /// The rendition served at `/hls/{event}/{name}`.
    pub fn rendition(&self, event: &str, name: &str) -> Option<Arc<Rendition>> {
        self.camera(event, name).map(|c| c.rendition.clone())
    }
}
