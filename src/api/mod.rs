//! The control port. Every request needs the control token, else 401 with a JSON error; every
//! error is `{"error": "..."}` with a fitting status.
//!
//! Browsers cannot set headers on a WebSocket, so the token is also accepted as a WebSocket
//! subprotocol `bearer.<token>` (offered next to `tally`, which the server selects): it stays out
//! of URLs and therefore out of access logs.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{
        rejection::JsonRejection,
        rejection::QueryRejection,
        ws::{Message, WebSocket, WebSocketUpgrade},
        Path, Query, Request, State,
    },
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot};

use crate::camera::Camera;
use crate::program::{self, Command, Event, Reason, SwitchError};
use crate::registry::Registry;
use crate::store::{Store, StoreError};
use crate::thumbnail::ThumbnailError;

#[derive(Clone)]
pub struct Control {
    /// The token from `[control] token`.
    pub token: Arc<str>,
    pub registry: Arc<Registry>,
    pub store: Arc<Store>,
    /// Ports advertised in ingest and playback URLs (host taken from the request).
    pub rtmp_port: u16,
    pub http_port: u16,
    pub app: Arc<str>,
    /// Decoded keyframe JPEGs, shared by every request so each keyframe is decoded once.
    pub thumbnails: Arc<crate::thumbnail::Thumbnails>,
    pub recorder: Arc<crate::recording::Recorder>,
    pub restreamer: Arc<crate::restream::Restreamer>,
    pub webhooks: Arc<crate::webhook::Webhooks>,
    /// Renders `GET /metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// An error answer: a status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub fn fail(status: StatusCode, message: &str) -> ApiError {
    ApiError(status, message.to_string())
}

pub fn error(status: StatusCode, message: &str) -> Response {
    fail(status, message).into_response()
}

/// Compares without early exit, so response time does not reveal how much of a guess matched.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn offered_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| {
        headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())?
            .split(',')
            .find_map(|p| p.trim().strip_prefix("bearer."))
    })
}

async fn require_token(State(control): State<Control>, request: Request, next: Next) -> Response {
    match offered_token(request.headers()) {
        Some(token) if token_matches(token.as_bytes(), control.token.as_bytes()) => {
            next.run(request).await
        }
        _ => error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
    }
}

pub mod recording;
pub mod restream;

/// Prometheus text exposition of every metric.
async fn metrics_text(State(control): State<Control>) -> Response {
    crate::telemetry::update_process();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        control.metrics.render(),
    )
        .into_response()
}

pub fn router(control: Control) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .merge(recording::routes())
        .merge(restream::routes())
        .route(
            "/api/health",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/api/events", get(list_events).post(create_event))
        .route("/api/events/{event}", get(get_event).delete(delete_event))
        .route(
            "/api/events/{event}/cameras",
            get(list_cameras).post(create_camera),
        )
        .route(
            "/api/events/{event}/cameras/{camera}",
            get(get_camera).delete(delete_camera),
        )
        .route("/api/events/{event}/cameras/{camera}/key", post(rotate_key))
        .route(
            "/api/events/{event}/cameras/{camera}/thumbnail.jpg",
            get(thumbnail),
        )
        .route("/api/events/{event}/switch", post(switch))
        .route("/api/events/{event}/switches", get(switches))
        .route("/api/events/{event}/end", post(end))
        .route("/api/events/{event}/ws", get(websocket))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn_with_state(
            control.clone(),
            require_token,
        ))
        .with_state(control)
}

type ApiResult = Result<Response, ApiError>;

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(what) => fail(StatusCode::NOT_FOUND, &format!("{what} not found")),
        StoreError::Conflict(what) => fail(StatusCode::CONFLICT, &format!("{what} already exists")),
        other => {
            tracing::error!(error = %other, "store");
            fail(StatusCode::INTERNAL_SERVER_ERROR, "store error")
        }
    }
}

/// Runs a store call off the async workers.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|_| fail(StatusCode::INTERNAL_SERVER_ERROR, "store task failed"))?
        .map_err(store_error)
}

/// The JSON body, or a JSON error naming what was expected: 400 when there is no JSON or it
/// does not parse, 422 when it parses but lacks what the route needs.
fn json_body<T>(body: Result<Json<T>, JsonRejection>, expected: &str) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|rejection| {
        let status = match rejection {
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        fail(
            status,
            &format!("expected JSON {expected}: {}", rejection.body_text()),
        )
    })
}

fn find_event(control: &Control, id: &str) -> Result<Arc<Event>, ApiError> {
    control
        .registry
        .event(id)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "no such event"))
}

fn find_camera(event: &Event, id: &str) -> Result<Arc<Camera>, ApiError> {
    event
        .camera(id)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "no such camera"))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The host the client reached us by, for URLs it can use.
fn host(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
        _ => host.to_string(),
    }
}

/// A stream key: 24 characters of a 64-symbol URL-safe alphabet, 144 bits of randomness.
pub fn new_stream_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

struct Urls {
    host: String,
    control: Control,
}

impl Urls {
    fn playlist(&self, event: &str, rendition: &str) -> String {
        format!(
            "http://{}:{}/hls/{event}/{rendition}.m3u8",
            self.host, self.control.http_port
        )
    }

    fn ingest(&self) -> String {
        format!(
            "rtmp://{}:{}/{}",
            self.host, self.control.rtmp_port, self.control.app
        )
    }
}

fn camera_json(urls: &Urls, event: &Event, camera: &Camera, with_key: bool) -> Value {
    let state = event.state();
    let measured = camera.measured();
    let status = camera.status();
    let reference = state
        .active
        .as_deref()
        .filter(|a| *a != camera.id && camera.is_live())
        .and_then(|a| event.camera(a))
        .map(|a| a.measured());
    let mut value = json!({
        "id": camera.id,
        "name": camera.name,
        "status": status,
        "on_program": state.active.as_deref() == Some(&camera.id),
        "pending": state.pending.as_deref() == Some(&camera.id),
        "ingest_url": urls.ingest(),
        "playlist_url": urls.playlist(&event.id, &camera.id),
        "bitrate": measured.bitrate,
        "frame_rate": measured.frame_rate,
        "keyframe_interval": measured.keyframe_interval,
        "width": measured.width,
        "height": measured.height,
        "video_codec": measured.video_codec,
        "audio_codec": measured.audio_codec,
        "sample_rate": measured.sample_rate,
        "warnings": reference.map(|r| program::warnings(&measured, &r)).unwrap_or_default(),
    });
    if with_key {
        value["stream_key"] = json!(urls.control.registry.key_of(camera));
    }
    value
}

fn event_json(urls: &Urls, event: &Event) -> Value {
    let state = event.state();
    json!({
        "id": event.id,
        "name": event.name,
        "status": state.status,
        "active_camera": state.active,
        "pending_camera": state.pending,
        "program_url": urls.playlist(&event.id, crate::hls::PROGRAM),
        "created_at": event.created_at,
        "cameras": event.cameras().iter().map(|c| camera_json(urls, event, c, true)).collect::<Vec<_>>(),
    })
}

fn urls(control: &Control, headers: &HeaderMap) -> Urls {
    Urls {
        host: host(headers),
        control: control.clone(),
    }
}

async fn list_events(State(control): State<Control>, headers: HeaderMap) -> Response {
    let urls = urls(&control, &headers);
    let events: Vec<Value> = control
        .registry
        .events()
        .iter()
        .map(|e| event_json(&urls, e))
        .collect();
    Json(events).into_response()
}

#[derive(Deserialize)]
struct NewThing {
    id: Option<String>,
    name: String,
}

/// Ids from names: lowercase letters, digits and dashes.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').chars().take(48).collect()
}

async fn create_event(
    State(control): State<Control>,
    headers: HeaderMap,
    body: Result<Json<NewThing>, JsonRejection>,
) -> ApiResult {
    let body = json_body(body, "{\"name\": ..., \"id\"?: ...}")?;
    if body.name.trim().is_empty() {
        return Err(fail(StatusCode::BAD_REQUEST, "name must not be empty"));
    }
    let id = match body.id {
        Some(id) if valid_id(&id) => id,
        Some(_) => {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "id must be 1-64 of [A-Za-z0-9_-]",
            ))
        }
        None => {
            let base = Some(slug(&body.name))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "event".into());
            (1..)
                .map(|n| {
                    if n == 1 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    }
                })
                .find(|id| control.registry.event(id).is_none())
                .expect("an unused id exists")
        }
    };
    let name = body.name.clone();
    let row = blocking(&control.store, move |s| s.create_event(&id, &name)).await?;
    let event = control.registry.add_event(&row);
    tracing::info!(event = %event.id, "event created");
    let urls = urls(&control, &headers);
    Ok((StatusCode::CREATED, Json(event_json(&urls, &event))).into_response())
}

async fn get_event(
    State(control): State<Control>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let event = find_event(&control, &id)?;
    Ok(Json(event_json(&urls(&control, &headers), &event)).into_response())
}

async fn delete_event(State(control): State<Control>, Path(id): Path<String>) -> ApiResult {
    find_event(&control, &id)?;
    let key = id.clone();
    blocking(&control.store, move |s| s.delete_event(&key)).await?;
    control.registry.remove_event(&id);
    tracing::info!(event = %id, "event deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_cameras(
    State(control): State<Control>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let event = find_event(&control, &id)?;
    let urls = urls(&control, &headers);
    let cameras: Vec<Value> = event
        .cameras()
        .iter()
        .map(|c| camera_json(&urls, &event, c, true))
        .collect();
    Ok(Json(cameras).into_response())
}

async fn get_camera(
    State(control): State<Control>,
    headers: HeaderMap,
    Path((id, camera)): Path<(String, String)>,
) -> ApiResult {
    let event = find_event(&control, &id)?;
    let camera = find_camera(&event, &camera)?;
    Ok(Json(camera_json(
        &urls(&control, &headers),
        &event,
        &camera,
        true,
    ))
    .into_response())
}

async fn create_camera(
    State(control): State<Control>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<NewThing>, JsonRejection>,
) -> ApiResult {
    let event = find_event(&control, &id)?;
    let body = json_body(body, "{\"name\": ..., \"id\"?: ...}")?;
    let camera_id = match body.id {
        Some(c) if valid_id(&c) && c != crate::hls::PROGRAM => c,
        Some(_) => {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "id must be 1-64 of [A-Za-z0-9_-] and not \"program\"",
            ))
        }
        None => (1..)
            .map(|n| format!("cam{n}"))
            .find(|c| event.camera(c).is_none())
            .expect("an unused id exists"),
    };
    let key = new_stream_key();
    let (event_id, name, stored_key) = (id.clone(), body.name.clone(), key.clone());
    let row = blocking(&control.store, move |s| {
        s.add_camera(&event_id, &camera_id, &name, &stored_key)
    })
    .await?;
    let camera = control.registry.add_camera(&event, &row);
    tracing::info!(camera = %camera.label, key = %crate::config::redact_key(&key), "camera created");
    let urls = urls(&control, &headers);
    Ok((
        StatusCode::CREATED,
        Json(camera_json(&urls, &event, &camera, true)),
    )
        .into_response())
}

async fn delete_camera(
    State(control): State<Control>,
    Path((id, camera)): Path<(String, String)>,
) -> ApiResult {
    let event = find_event(&control, &id)?;
    find_camera(&event, &camera)?;
    let (event_id, camera_id) = (id.clone(), camera.clone());
    blocking(&control.store, move |s| {
        s.delete_camera(&event_id, &camera_id)
    })
    .await?;
    control.registry.remove_camera(&event, &camera);
    tracing::info!(camera = %format!("{id}/{camera}"), "camera deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rotate_key(
    State(control): State<Control>,
    headers: HeaderMap,
    Path((id, camera)): Path<(String, String)>,
) -> ApiResult {
    let event = find_event(&control, &id)?;
    let camera = find_camera(&event, &camera)?;
    let key = new_stream_key();
    let (event_id, camera_id, stored) = (id.clone(), camera.id.clone(), key.clone());
    blocking(&control.store, move |s| {
        s.set_key(&event_id, &camera_id, &stored)
    })
    .await?;
    control.registry.rekey(&camera, &key);
    tracing::info!(camera = %camera.label, key = %crate::config::redact_key(&key), "stream key rotated");
    Ok(Json(camera_json(
        &urls(&control, &headers),
        &event,
        &camera,
        true,
    ))
    .into_response())
}

#[derive(Deserialize)]
struct ThumbnailQuery {
    /// Kept as text so that a bad value gets our JSON 400, not the extractor's plain-text one.
    width: Option<String>,
}

fn thumbnail_error(e: ThumbnailError) -> ApiError {
    let status = match e {
        ThumbnailError::NoKeyframe => StatusCode::NOT_FOUND,
        ThumbnailError::Decode(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ThumbnailError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    fail(status, &e.to_string())
}

/// A JPEG of the camera's newest keyframe; `?width=N` scales it down (N clamped to 16..=3840).
async fn thumbnail(
    State(control): State<Control>,
    Path((id, camera)): Path<(String, String)>,
    query: Result<Query<ThumbnailQuery>, QueryRejection>,
) -> ApiResult {
    let event = find_event(&control, &id)?;
    let camera = find_camera(&event, &camera)?;
    let Query(query) = query.map_err(|_| fail(StatusCode::BAD_REQUEST, "bad query string"))?;
    let width = match query.width {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map(|w| u32::try_from(w).unwrap_or(u32::MAX))
                .map_err(|_| {
                    fail(
                        StatusCode::BAD_REQUEST,
                        "width must be a whole number of pixels (16 to 3840)",
                    )
                })?,
        ),
    };
    let jpeg = control
        .thumbnails
        .get(&camera, width)
        .await
        .map_err(thumbnail_error)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        jpeg,
    )
        .into_response())
}

#[derive(Deserialize)]
struct SwitchBody {
    camera: String,
}

#[derive(Deserialize)]
struct SwitchQuery {
    wait: Option<bool>,
}

fn switch_error(e: SwitchError) -> ApiError {
    let status = match e {
        SwitchError::UnknownCamera | SwitchError::Gone => StatusCode::NOT_FOUND,
        SwitchError::NotLive | SwitchError::Superseded | SwitchError::Ended => StatusCode::CONFLICT,
        SwitchError::Timeout => StatusCode::GATEWAY_TIMEOUT,
    };
    fail(status, &e.to_string())
}

async fn switch(
    State(control): State<Control>,
    Path(id): Path<String>,
    Query(query): Query<SwitchQuery>,
    body: Result<Json<SwitchBody>, JsonRejection>,
) -> ApiResult {
    let event = find_event(&control, &id)?;
    let body = json_body(body, "{\"camera\": ...}")?;
    let camera = find_camera(&event, &body.camera)?;
    if !camera.is_live() {
        return Err(switch_error(SwitchError::NotLive));
    }
    if query.wait == Some(false) {
        event
            .command(Command::Switch {
                camera: body.camera.clone(),
                reason: Reason::Operator,
                reply: None,
            })
            .await
            .map_err(switch_error)?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "pending_camera": body.camera })),
        )
            .into_response());
    }
    let (reply, answer) = oneshot::channel();
    event
        .command(Command::Switch {
            camera: body.camera,
            reason: Reason::Operator,
            reply: Some(reply),
        })
        .await
        .map_err(switch_error)?;
    match answer.await {
        Ok(Ok(report)) => Ok(Json(report).into_response()),
        Ok(Err(e)) => Err(switch_error(e)),
        Err(_) => Err(switch_error(SwitchError::Gone)),
    }
}

async fn switches(State(control): State<Control>, Path(id): Path<String>) -> ApiResult {
    find_event(&control, &id)?;
    let rows = blocking(&control.store, move |s| s.switches(&id)).await?;
    Ok(Json(rows).into_response())
}

async fn end(
    State(control): State<Control>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let event = find_event(&control, &id)?;
    let (reply, done) = oneshot::channel();
    event
        .command(Command::End { reply })
        .await
        .map_err(switch_error)?;
    done.await.map_err(|_| switch_error(SwitchError::Gone))?;
    Ok(Json(event_json(&urls(&control, &headers), &event)).into_response())
}

async fn websocket(
    State(control): State<Control>,
    headers: HeaderMap,
    Path(id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> ApiResult {
    let event = find_event(&control, &id)?;
    // `hello` carries the whole event (the state to start from), not just its id.
    let hello = json!({
        "type": "hello",
        "event": event_json(&urls(&control, &headers), &event),
        "at": program::now_rfc3339(),
    })
    .to_string();
    let event_id = event.id.clone();
    let bus = event.bus.subscribe();
    drop(event);
    Ok(upgrade
        .protocols(["tally"])
        .on_upgrade(move |socket| push_events(socket, event_id, hello, bus))
        .into_response())
}

/// Sends the current state, then every notification until the client leaves or the event goes.
async fn push_events(
    mut socket: WebSocket,
    event: String,
    hello: String,
    mut bus: broadcast::Receiver<Arc<str>>,
) {
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    loop {
        tokio::select! {
            message = bus.recv() => match message {
                Ok(text) => {
                    if socket.send(Message::Text(text.as_ref().into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let text = json!({
                        "type": "lagged",
                        "event": event,
                        "at": program::now_rfc3339(),
                        "missed": missed,
                    })
                    .to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}
