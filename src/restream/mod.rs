//! Restreaming the program or a camera to RTMP(S) destinations (YouTube, Twitch, Facebook, any
//! RTMP server).
//!
//! - [`Restreamer`]: the destinations of every event, persisted in the store, each with its own
//!   push task; what the control API talks to.
//! - [`runner`]: one destination's task: subscribe, connect, push, reconnect with backoff.
//! - [`flv_out`]: frames back into FLV tag bodies (pure).
//! - [`clock`]: output timestamps that never go backwards (pure).
//! - [`backoff`]: the reconnect schedule (pure).
//!
//! A destination never affects ingest, the program or another destination: it reads the source
//! through its own bounded fan-out subscription (lagging loses frames and resyncs at a keyframe;
//! the publisher never waits), and all of its I/O happens in its own task.
//!
//! Stream keys are secrets: logs and the API show them redacted ([`redact`]).

pub mod backoff;
pub mod clock;
pub mod flv_out;
pub mod runner;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::RestreamConfig;
use crate::program::Event;
use crate::registry::Registry;
use crate::rtmp::client::Endpoint;
use crate::store::{DestinationRow, Store, StoreError};

/// The `source` that follows the event's program.
pub const PROGRAM_SOURCE: &str = "program";
/// Longest destination name.
const MAX_NAME_CHARS: usize = 100;
/// Longest stream key (real ones are under 100 characters).
const MAX_KEY_CHARS: usize = 512;
/// Longest URL.
const MAX_URL_CHARS: usize = 1024;

/// A secret shown as its first 4 characters and an ellipsis (`abcd…`); a key shorter than 8
/// characters shows nothing but the ellipsis, so that no short key is given away.
pub fn redact(key: &str) -> String {
    if key.chars().count() >= 8 {
        let prefix: String = key.chars().take(4).collect();
        format!("{prefix}…")
    } else {
        "…".to_string()
    }
}

/// Why a destination request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RestreamError {
    /// A field's value is unusable; the text says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The store refused or failed (no such event or destination, a duplicate name, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking store call could not run.
    #[error("store task failed")]
    Task,
}

/// What a destination is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for the source's next keyframe, or connecting and publishing.
    Connecting,
    /// Publishing: media is flowing.
    Live,
    /// The last attempt failed (see `error`); waiting for the next one.
    Retrying,
    /// Turned off by the operator.
    Disabled,
}

/// A destination's live status, written by its runner and read by the API.
#[derive(Debug)]
pub struct Status {
    /// The current state.
    pub state: State,
    /// The last failure, kept while retrying and cleared once live again.
    pub error: Option<String>,
    /// Connecting, but the source has no keyframe to start from (camera offline, program
    /// paused).
    pub waiting_for_source: bool,
    /// Bytes per second on the wire over the last second.
    pub bytes_per_second: u64,
    /// Media frames sent since start-up (all connections).
    pub frames_sent: u64,
    /// Frames lost since start-up: the connection fell behind the source, or a frame would
    /// have gone backwards in time.
    pub frames_dropped: u64,
    /// Failed attempts since the schedule last reset.
    pub retries: u32,
    /// When the current connection went live.
    pub live_since: Option<Instant>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: State::Connecting,
            error: None,
            waiting_for_source: false,
            bytes_per_second: 0,
            frames_sent: 0,
            frames_dropped: 0,
            retries: 0,
            live_since: None,
        }
    }
}

impl Status {
    /// The status fields of the API and of `destination_status` messages.
    pub fn to_json(&self) -> Value {
        json!({
            "state": self.state,
            "error": self.error,
            "waiting_for_source": self.waiting_for_source,
            "bytes_per_second": self.bytes_per_second,
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "retries": self.retries,
            "uptime_seconds": self
                .live_since
                .map_or(0.0, |t| (t.elapsed().as_secs_f64() * 10.0).round() / 10.0),
        })
    }
}

/// One destination's running task, as the restreamer keeps it.
#[derive(Debug)]
struct Running {
    /// The stored row (its `enabled` kept current).
    row: DestinationRow,
    /// Tells the runner to push (`true`) or stop (`false`); dropping it ends the runner.
    enabled: watch::Sender<bool>,
    /// Written by the runner, read by the API.
    status: Arc<Mutex<Status>>,
    /// The event it was started for: a later event with the same id is another event.
    event: Weak<Event>,
    /// Ends when the destination is deleted or its event goes away.
    task: tokio::task::JoinHandle<()>,
}

/// The destinations of every event and their push tasks.
#[derive(Debug)]
pub struct Restreamer {
    /// The `[restream]` section.
    config: RestreamConfig,
    /// Events and cameras, to find each destination's source.
    registry: Arc<Registry>,
    /// Where destinations persist.
    store: Arc<Store>,
    /// Running destinations by id.
    running: Mutex<HashMap<i64, Running>>,
    /// Becomes true once the stored destinations have been resumed at start-up; requests wait
    /// for it, so that none sees a half-loaded list.
    loaded: watch::Receiver<bool>,
}

impl Restreamer {
    /// Builds the restreamer and resumes every stored destination in a background task.
    /// Must run inside a tokio runtime.
    pub fn new(
        config: &RestreamConfig,
        registry: Arc<Registry>,
        store: Arc<Store>,
    ) -> Arc<Restreamer> {
        let (loaded_tx, loaded) = watch::channel(false);
        let restreamer = Arc::new(Restreamer {
            config: config.clone(),
            registry,
            store,
            running: Mutex::new(HashMap::new()),
            loaded,
        });
        let resuming = restreamer.clone();
        tokio::spawn(async move {
            let store = resuming.store.clone();
            match tokio::task::spawn_blocking(move || store.all_destinations()).await {
                Ok(Ok(rows)) => {
                    for row in rows {
                        resuming.start(row);
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "loading restream destinations"),
                Err(e) => tracing::error!(error = %e, "loading restream destinations"),
            }
            let _ = loaded_tx.send(true);
        });
        restreamer
    }

    async fn ready(&self) {
        let mut loaded = self.loaded.clone();
        // Err: the loader is gone, which means it finished (or panicked): go on either way.
        let _ = loaded.wait_for(|done| *done).await;
    }

    /// Starts a destination's runner (disabled ones too: they report `disabled` and wait).
    fn start(&self, row: DestinationRow) {
        let Some(event) = self.registry.event(&row.event) else {
            return; // the event went away; its rows go with it
        };
        let (enabled_tx, enabled) = watch::channel(row.enabled);
        let status = Arc::new(Mutex::new(Status {
            state: if row.enabled {
                State::Connecting
            } else {
                State::Disabled
            },
            ..Status::default()
        }));
        let endpoint = match Endpoint::parse(&row.url) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                // Validated when created; a row edited by hand could still be wrong.
                tracing::error!(destination = %row.name, error = %e, "bad destination URL");
                return;
            }
        };
        let runner = runner::Runner::new(
            runner::Settings {
                reconnect_min: self.config.reconnect_min,
                reconnect_max: self.config.reconnect_max,
                healthy: HEALTHY,
            },
            &row,
            endpoint,
            Arc::downgrade(&event),
            self.registry.clone(),
            status.clone(),
            enabled,
        );
        let span = tracing::info_span!(
            "restream",
            event = %row.event,
            destination = %row.name,
        );
        let task = tokio::spawn(tracing::Instrument::instrument(runner.run(), span));
        let mut running = self.running.lock().expect("restream lock");
        running.retain(|_, r| !r.task.is_finished());
        running.insert(
            row.id,
            Running {
                row,
                enabled: enabled_tx,
                status,
                event: Arc::downgrade(&event),
                task,
            },
        );
    }

    /// Runs a store call off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, RestreamError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|_| RestreamError::Task)??)
    }

    /// Validates and stores a new destination, and starts pushing to it.
    pub async fn create(
        &self,
        event: &Event,
        name: &str,
        url: &str,
        key: &str,
        source: &str,
    ) -> Result<Value, RestreamError> {
        self.ready().await;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(RestreamError::Invalid(format!(
                "name must be 1 to {MAX_NAME_CHARS} characters"
            )));
        }
        if url.chars().count() > MAX_URL_CHARS {
            return Err(RestreamError::Invalid(format!(
                "url must be at most {MAX_URL_CHARS} characters"
            )));
        }
        Endpoint::parse(url).map_err(|e| RestreamError::Invalid(format!("url: {e}")))?;
        if key.is_empty()
            || key.chars().count() > MAX_KEY_CHARS
            || key.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(RestreamError::Invalid(format!(
                "key must be 1 to {MAX_KEY_CHARS} characters without spaces"
            )));
        }
        if source != PROGRAM_SOURCE && event.camera(source).is_none() {
            return Err(RestreamError::Invalid(
                "source must be \"program\" or a camera of the event".into(),
            ));
        }
        let (event_id, name, url, key, source) = (
            event.id.clone(),
            name.to_string(),
            url.trim_end_matches('/').to_string(),
            key.to_string(),
            source.to_string(),
        );
        let row = self
            .blocking(move |s| s.add_destination(&event_id, &name, &url, &key, &source))
            .await?;
        tracing::info!(
            event = %row.event,
            destination = %row.name,
            url = %row.url,
            key = %redact(&row.stream_key),
            source = %row.source,
            "destination created"
        );
        let id = row.id;
        self.start(row);
        self.view(event, id)
    }

    /// The event's destinations with their status, in creation order.
    pub async fn list(&self, event: &Event) -> Result<Vec<Value>, RestreamError> {
        self.ready().await;
        let running = self.running.lock().expect("restream lock");
        let mut views: Vec<(i64, Value)> = running
            .values()
            .filter(|r| belongs(r, event))
            .map(|r| (r.row.id, view(r)))
            .collect();
        views.sort_by_key(|(id, _)| *id);
        Ok(views.into_iter().map(|(_, v)| v).collect())
    }

    /// One destination with its status.
    pub async fn get(&self, event: &Event, id: i64) -> Result<Value, RestreamError> {
        self.ready().await;
        self.view(event, id)
    }

    fn view(&self, event: &Event, id: i64) -> Result<Value, RestreamError> {
        let running = self.running.lock().expect("restream lock");
        running
            .get(&id)
            .filter(|r| belongs(r, event))
            .map(view)
            .ok_or_else(|| {
                RestreamError::Store(StoreError::NotFound(format!(
                    "destination {id} in event {}",
                    event.id
                )))
            })
    }

    /// Turns a destination on or off, persistently.
    pub async fn set_enabled(
        &self,
        event: &Event,
        id: i64,
        enabled: bool,
    ) -> Result<Value, RestreamError> {
        self.ready().await;
        let event_id = event.id.clone();
        let row = self
            .blocking(move |s| s.set_destination_enabled(&event_id, id, enabled))
            .await?;
        {
            let mut running = self.running.lock().expect("restream lock");
            if let Some(r) = running.get_mut(&id) {
                r.row.enabled = enabled;
                r.enabled
                    .send_if_modified(|on| std::mem::replace(on, enabled) != enabled);
            }
        }
        tracing::info!(
            event = %row.event,
            destination = %row.name,
            "destination {}",
            if enabled { "enabled" } else { "disabled" }
        );
        if !self
            .running
            .lock()
            .expect("restream lock")
            .contains_key(&id)
        {
            self.start(row);
        }
        self.view(event, id)
    }

    /// Deletes a destination; its connection is closed.
    pub async fn delete(&self, event: &Event, id: i64) -> Result<(), RestreamError> {
        self.ready().await;
        let event_id = event.id.clone();
        self.blocking(move |s| s.delete_destination(&event_id, id))
            .await?;
        // Dropping the sender ends the runner, which says goodbye to the server.
        let removed = self.running.lock().expect("restream lock").remove(&id);
        if let Some(removed) = removed {
            tracing::info!(event = %removed.row.event, destination = %removed.row.name, "destination deleted");
        }
        Ok(())
    }
}

/// Whether a running destination belongs to this event (and not to an earlier event that had
/// the same id).
fn belongs(running: &Running, event: &Event) -> bool {
    running.row.event == event.id && std::ptr::eq(running.event.as_ptr(), event)
}

/// A connection that stayed up this long resets the reconnect schedule when it breaks.
const HEALTHY: Duration = Duration::from_secs(10);

/// The API's view of a destination: the row (key redacted) and its status.
fn view(running: &Running) -> Value {
    let row = &running.row;
    let mut value = json!({
        "id": row.id,
        "event": row.event,
        "name": row.name,
        "url": row.url,
        "key": redact(&row.stream_key),
        "source": row.source,
        "enabled": row.enabled,
        "created_at": row.created_at,
    });
    let status = running.status.lock().expect("status lock").to_json();
    if let (Some(target), Value::Object(fields)) = (value.as_object_mut(), status) {
        target.extend(fields);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted_to_four_characters() {
        assert_eq!(redact("abcd-efgh-ijkl-mnop"), "abcd…");
        assert_eq!(redact("live_123456789_abcdef"), "live…");
        assert_eq!(redact("12345678"), "1234…");
        // Short keys give nothing away.
        assert_eq!(redact("1234567"), "…");
        assert_eq!(redact(""), "…");
        // Characters, not bytes.
        assert_eq!(redact("ééééxxxxyyyy"), "éééé…");
    }

    #[test]
    fn status_json_has_every_field() {
        let status = Status {
            state: State::Retrying,
            error: Some("connection refused".into()),
            ..Status::default()
        };
        let json = status.to_json();
        assert_eq!(json["state"], "retrying");
        assert_eq!(json["error"], "connection refused");
        for field in [
            "bytes_per_second",
            "frames_sent",
            "frames_dropped",
            "uptime_seconds",
            "retries",
            "waiting_for_source",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
    }
}
