//! The control API over real sockets: a server on 127.0.0.1:0, reqwest for the routes,
//! tokio-tungstenite for the WebSocket, and tally's own RTMP publisher for the cameras.
//!
//! No timing assertions: every wait is a polling loop or a timeout with a generous deadline that
//! only catches hangs.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use support::*;
use tally::flv::{self, Tag, TagKind};
use tally::rtmp::client::{ClientError, PublishOptions, Publisher};
use tally::Server;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http, Message};

const TOKEN: &str = "test-token-123";
/// The bound on every wait; reaching it means a hang, not a slow machine.
const PATIENCE: Duration = Duration::from_secs(30);
const SWITCH: &str = "/api/events/demo/switch";

/// A client for the control port; every call returns the status and the body as JSON (`Null`
/// for an empty body, a JSON string holding the raw text for a body that is not JSON).
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            client: reqwest::Client::new(),
            base: format!("http://{}", server.control_addr),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        self.send(method, path, body.map(Value::to_string), token)
            .await
    }

    /// Like `call`, with the body's text as given (it need not be JSON).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("response body");
        (status, parse_body(&bytes))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None, Some(TOKEN)).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(&body), Some(TOKEN))
            .await
    }

    /// A POST with no body at all (and no content type).
    async fn post_empty(&self, path: &str) -> (u16, Value) {
        self.call(Method::POST, path, None, Some(TOKEN)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None, Some(TOKEN)).await
    }

    /// GETs `path` until it answers 200 with a body for which `ready` holds.
    async fn wait_for(&self, path: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, body) = self.get(path).await;
            if status == 200 && ready(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last GET {path}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn switch(&self, camera: &str) -> (u16, Value) {
        self.post(SWITCH, json!({ "camera": camera })).await
    }
}

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// An error answer: the expected status and a JSON body `{"error": "<text>"}`.
#[track_caller]
fn assert_error(answer: &(u16, Value), status: u16, context: &str) {
    assert_eq!(answer.0, status, "{context}: body {}", answer.1);
    assert!(
        answer.1["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{context}: error body is not {{\"error\": \"...\"}}: {}",
        answer.1
    );
}

/// A key from a 64-symbol URL-safe alphabet with at least 128 bits in it.
#[track_caller]
fn assert_stream_key(key: &Value) -> String {
    let key = key.as_str().expect("stream_key is a string").to_string();
    assert!(key.len() >= 22, "stream key too short: {} chars", key.len());
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "stream key is not URL-safe [A-Za-z0-9_-]"
    );
    assert!(key.len() * 6 >= 128, "fewer than 128 bits");
    key
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {value}"))
}

fn event_path(event: &str) -> String {
    format!("/api/events/{event}")
}

fn camera_path(event: &str, camera: &str) -> String {
    format!("/api/events/{event}/cameras/{camera}")
}

/// The metadata and sequence headers of a fixture: a camera that is live but never sends a frame
/// (so never a keyframe).
fn header_tags(fixture: &str) -> Vec<Tag> {
    fixture_tags(fixture)
        .into_iter()
        .filter(|tag| {
            tag.kind == TagKind::Script
                || matches!(
                    flv::parse_video(&tag.body),
                    Ok(flv::VideoTag::AvcSequenceHeader(_))
                )
                || matches!(
                    flv::parse_audio(&tag.body),
                    Ok(flv::AudioTag::AacSequenceHeader(_))
                )
        })
        .collect()
}

async fn connect(server: &Server, key: &str) -> Result<Publisher, ClientError> {
    timeout(
        PATIENCE,
        Publisher::connect(server.rtmp_addr, APP, key, PublishOptions::default()),
    )
    .await
    .expect("RTMP connect hung")
}

#[track_caller]
fn assert_refused(result: Result<Publisher, ClientError>, why: &str) {
    match result {
        Err(ClientError::Refused(code)) => {
            assert_eq!(code, "NetStream.Publish.BadName", "{why}")
        }
        Err(e) => panic!("{why}: expected a BadName refusal, got {e}"),
        Ok(_) => panic!("{why}: the publish was accepted"),
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_request(server: &Server, event: &str, protocols: Option<&str>) -> http::Request<()> {
    let mut request = format!("ws://{}/api/events/{event}/ws", server.control_addr)
        .into_client_request()
        .expect("valid WebSocket URL");
    if let Some(protocols) = protocols {
        request.headers_mut().insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            protocols.parse().expect("header value"),
        );
    }
    request
}

/// The status a refused WebSocket handshake answered with.
async fn ws_refusal(request: http::Request<()>) -> u16 {
    match timeout(PATIENCE, tokio_tungstenite::connect_async(request))
        .await
        .expect("WebSocket handshake hung")
    {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("handshake failed without an HTTP answer: {e}"),
        Ok(_) => panic!("handshake succeeded without the token"),
    }
}

/// The WebSocket's messages, with the envelope (`type`, `event`, `at`) checked on each.
struct Feed {
    ws: Ws,
    event: String,
    /// `camera_warning`s seen so far: their timing is not defined, so they are set aside.
    warnings: Vec<Value>,
    /// Periodic `camera_stats` seen so far: they come every 2 s, between anything.
    stats: Vec<Value>,
    /// Envelope faults, reported together at the end so the rest of the test still runs.
    faults: Vec<String>,
}

impl Feed {
    async fn raw(&mut self) -> Value {
        loop {
            let message = timeout(PATIENCE, self.ws.next())
                .await
                .expect("no WebSocket message in time")
                .expect("WebSocket closed")
                .expect("WebSocket error");
            let text = match message {
                Message::Text(text) => text,
                Message::Close(frame) => panic!("WebSocket closed by the server: {frame:?}"),
                _ => continue,
            };
            let value: Value = serde_json::from_str(text.as_str())
                .unwrap_or_else(|e| panic!("message is not JSON ({e}): {text}"));
            self.check_envelope(&value);
            return value;
        }
    }

    fn check_envelope(&mut self, message: &Value) {
        let kind = message["type"].as_str().unwrap_or("");
        if kind.is_empty() {
            self.faults.push(format!("no type: {message}"));
        }
        // `hello` carries the event's state, so its `event` may be the event object.
        let event_ok = message["event"] == self.event.as_str()
            || (kind == "hello" && message["event"]["id"] == self.event.as_str());
        if !event_ok {
            self.faults
                .push(format!("{kind}: no event {:?}: {message}", self.event));
        }
        let at_ok = message["at"]
            .as_str()
            .is_some_and(|at| chrono::DateTime::parse_from_rfc3339(at).is_ok());
        if !at_ok {
            self.faults
                .push(format!("{kind}: no RFC 3339 `at`: {message}"));
        }
    }

    /// The next message whose place in the order is defined: anything but a `camera_warning`
    /// (set aside) or the periodic `camera_stats` (counted).
    async fn next(&mut self) -> Value {
        loop {
            let message = self.raw().await;
            match message["type"].as_str() {
                Some("camera_warning") => self.warnings.push(message),
                Some("camera_stats") => self.stats.push(message),
                _ => return message,
            }
        }
    }

    /// The next defined message must be `kind` with every field of `fields` equal.
    async fn expect(&mut self, kind: &str, fields: Value) -> Value {
        let message = self.next().await;
        assert_eq!(
            message["type"], kind,
            "expected {kind} {fields}, got {message}"
        );
        for (name, value) in fields.as_object().expect("fields object") {
            assert_eq!(&message[name], value, "{kind}: field {name} in {message}");
        }
        message
    }

    /// Waits for a `camera_warning` about `camera` whose text mentions `topic`. Nothing defined
    /// is expected meanwhile.
    async fn expect_warning(&mut self, camera: &str, topic: &str) -> Value {
        let matches = |m: &Value| {
            m["camera"] == camera
                && m["warnings"]
                    .as_array()
                    .is_some_and(|w| w.iter().any(|w| w.as_str().unwrap_or("").contains(topic)))
        };
        if let Some(found) = self.warnings.iter().find(|m| matches(m)) {
            return found.clone();
        }
        loop {
            let message = self.raw().await;
            if message["type"] == "camera_stats" {
                self.stats.push(message);
                continue;
            }
            if message["type"] != "camera_warning" {
                panic!("expected a camera_warning for {camera} about {topic}, got {message}");
            }
            if matches(&message) {
                return message;
            }
            self.warnings.push(message);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_the_token() {
    let server = start().await;
    let api = Api::new(&server);
    let routes: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/api/events", None),
        (Method::POST, "/api/events", Some(json!({ "name": "x" }))),
        (Method::GET, "/api/events/demo", None),
        (Method::DELETE, "/api/events/demo", None),
        (Method::GET, "/api/events/demo/cameras", None),
        (
            Method::POST,
            "/api/events/demo/cameras",
            Some(json!({ "name": "x" })),
        ),
        (Method::GET, "/api/events/demo/cameras/cam1", None),
        (Method::DELETE, "/api/events/demo/cameras/cam1", None),
        (Method::POST, "/api/events/demo/cameras/cam1/key", None),
        (Method::POST, SWITCH, Some(json!({ "camera": "cam1" }))),
        (Method::GET, "/api/events/demo/switches", None),
        (Method::POST, "/api/events/demo/end", None),
        (Method::GET, "/api/events/demo/ws", None),
    ];
    for (method, path, body) in &routes {
        for token in [
            None,
            Some("test-token-124"),
            Some("test-token-1234"),
            Some(""),
        ] {
            let answer = api.call(method.clone(), path, body.as_ref(), token).await;
            assert_error(
                &answer,
                401,
                &format!("{method} {path} with token {token:?}"),
            );
        }
    }

    // The WebSocket: no protocol at all, `tally` alone, and a wrong bearer subprotocol.
    for protocols in [None, Some("tally"), Some("tally, bearer.test-token-124")] {
        let status = ws_refusal(ws_request(&server, EVENT, protocols)).await;
        assert_eq!(status, 401, "WebSocket with protocols {protocols:?}");
    }

    // None of the refused requests changed anything.
    let (status, event) = api.get("/api/events/demo").await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["status"], "waiting");
    assert_eq!(event["cameras"].as_array().map(Vec::len), Some(3));
    let (status, log) = api.get("/api/events/demo/switches").await;
    assert_eq!((status, log), (200, json!([])));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_cameras_crud() {
    let mut config = test_config();
    // Publishers here pause between bursts; keep the server from dropping them as idle.
    config.rtmp.timeout = Duration::from_secs(120);
    let server = start_with(config).await;
    let api = Api::new(&server);

    // Events.
    let (status, wedding) = api
        .post("/api/events", json!({ "name": "Smith Wedding" }))
        .await;
    assert_eq!(status, 201, "{wedding}");
    assert_eq!(wedding["id"], "smith-wedding");
    assert_eq!(wedding["name"], "Smith Wedding");
    assert_eq!(wedding["status"], "waiting");
    assert_eq!(wedding["active_camera"], Value::Null);
    assert_eq!(wedding["pending_camera"], Value::Null);
    assert_eq!(wedding["cameras"], json!([]));
    let program_url = str_of(&wedding, "program_url");
    assert!(
        program_url.ends_with("/hls/smith-wedding/program.m3u8"),
        "{program_url}"
    );
    let (status, gala) = api
        .post("/api/events", json!({ "id": "gala_2", "name": "Gala" }))
        .await;
    assert_eq!(status, 201, "{gala}");
    assert_eq!(gala["id"], "gala_2");
    assert_error(
        &api.post("/api/events", json!({ "id": "gala_2", "name": "Again" }))
            .await,
        409,
        "duplicate event id",
    );
    for bad in ["has space", "slash/y", "", &"x".repeat(65)] {
        assert_error(
            &api.post("/api/events", json!({ "id": bad, "name": "Bad" }))
                .await,
            400,
            &format!("event id {bad:?}"),
        );
    }
    assert_error(&api.post_empty("/api/events").await, 400, "no body");
    assert_error(
        &api.post("/api/events", json!({ "name": "  " })).await,
        400,
        "blank name",
    );
    let (status, events) = api.get("/api/events").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = events
        .as_array()
        .expect("event list")
        .iter()
        .map(|e| str_of(e, "id"))
        .collect();
    for id in ["demo", "smith-wedding", "gala_2"] {
        assert_eq!(
            ids.iter().filter(|i| **i == id).count(),
            1,
            "{id} in {ids:?}"
        );
    }

    // Cameras.
    let cameras = "/api/events/smith-wedding/cameras";
    let (status, cam1) = api.post(cameras, json!({ "name": "Altar" })).await;
    assert_eq!(status, 201, "{cam1}");
    assert_eq!(cam1["id"], "cam1");
    assert_eq!(cam1["name"], "Altar");
    assert_eq!(cam1["status"], "waiting");
    let key = assert_stream_key(&cam1["stream_key"]);
    assert_eq!(
        cam1["ingest_url"],
        format!("rtmp://127.0.0.1:{}/live", server.rtmp_addr.port())
    );
    assert_eq!(
        cam1["playlist_url"],
        format!(
            "http://127.0.0.1:{}/hls/smith-wedding/cam1.m3u8",
            server.http_addr.port()
        )
    );
    let (status, cam2) = api.post(cameras, json!({ "name": "Aisle" })).await;
    assert_eq!(status, 201, "{cam2}");
    assert_eq!(cam2["id"], "cam2");
    assert_ne!(assert_stream_key(&cam2["stream_key"]), key, "keys differ");
    assert_error(
        &api.post(cameras, json!({ "id": "cam2", "name": "Dup" }))
            .await,
        409,
        "duplicate camera id",
    );
    assert_error(
        &api.post(cameras, json!({ "id": "program", "name": "P" }))
            .await,
        400,
        "camera id program",
    );
    assert_error(&api.post_empty(cameras).await, 400, "camera without body");
    let (status, list) = api.get(cameras).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = list
        .as_array()
        .expect("camera list")
        .iter()
        .map(|c| str_of(c, "id"))
        .collect();
    assert_eq!(listed, ["cam1", "cam2"]);

    // The new key publishes, and the camera reports what it measures.
    let cam1_path = camera_path("smith-wedding", "cam1");
    let tags = fixture_tags("cam-a.flv");
    let mut first = connect(&server, &key).await.expect("the new key publishes");
    first.send_tags(&tags).await.expect("tags sent");
    let measured = api
        .wait_for(&cam1_path, "cam1's measurements", |c| {
            c["frame_rate"].is_number()
                && c["keyframe_interval"].is_number()
                && c["bitrate"].is_number()
        })
        .await;
    assert_eq!(measured["status"], "live", "{measured}");
    assert_eq!(measured["width"], 320);
    assert_eq!(measured["height"], 240);
    assert!(
        str_of(&measured, "video_codec").starts_with("avc1."),
        "{measured}"
    );
    assert_eq!(measured["audio_codec"], "mp4a.40.2");
    assert_eq!(measured["sample_rate"], 48000);
    let frame_rate = measured["frame_rate"].as_f64().unwrap();
    assert!((27.0..=33.0).contains(&frame_rate), "{measured}");
    let interval = measured["keyframe_interval"].as_f64().unwrap();
    assert!((0.9..=1.1).contains(&interval), "{measured}");
    assert!(measured["bitrate"].as_u64().unwrap() > 0, "{measured}");

    // Key rotation: a new key, the old one refused at once, the live publisher carries on.
    let (status, rotated) = api.post_empty(&format!("{cam1_path}/key")).await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = assert_stream_key(&rotated["stream_key"]);
    assert_ne!(new_key, key);
    let (_, now) = api.get(&cam1_path).await;
    assert_eq!(now["stream_key"], new_key.as_str());
    assert_eq!(now["status"], "live", "the live publisher carries on");
    assert_refused(connect(&server, &key).await, "the old key after rotation");
    first.finish().await.expect("clean stop");
    api.wait_for(&cam1_path, "cam1 offline", |c| c["status"] == "offline")
        .await;
    let mut second = connect(&server, &new_key)
        .await
        .expect("the rotated key publishes");
    second
        .send_tags(&tags[..tags.len() / 2])
        .await
        .expect("tags sent");
    api.wait_for(&cam1_path, "cam1 live again", |c| c["status"] == "live")
        .await;

    // Deleting the camera disconnects its publisher.
    let (status, body) = api.delete(&cam1_path).await;
    assert_eq!((status, body), (204, Value::Null));
    let closed = timeout(PATIENCE, async {
        loop {
            if second.send_tags(&tags).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the deleted camera's publisher was never disconnected"
    );
    assert_error(&api.get(&cam1_path).await, 404, "deleted camera");
    assert_refused(connect(&server, &new_key).await, "the deleted camera's key");
    let (_, list) = api.get(cameras).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // Unknown things.
    assert_error(&api.get("/api/events/nope").await, 404, "unknown event");
    assert_error(
        &api.get("/api/events/nope/cameras").await,
        404,
        "cameras of an unknown event",
    );
    assert_error(
        &api.post("/api/events/nope/cameras", json!({ "name": "x" }))
            .await,
        404,
        "camera for an unknown event",
    );
    assert_error(
        &api.get(&camera_path("smith-wedding", "nope")).await,
        404,
        "unknown camera",
    );
    assert_error(
        &api.delete(&camera_path("smith-wedding", "nope")).await,
        404,
        "delete unknown camera",
    );
    assert_error(
        &api.post_empty(&format!("{}/key", camera_path("smith-wedding", "nope")))
            .await,
        404,
        "rotate an unknown camera's key",
    );
    assert_error(
        &api.delete("/api/events/nope").await,
        404,
        "delete unknown event",
    );

    // Deleting the event.
    let (status, body) = api.delete("/api/events/smith-wedding").await;
    assert_eq!((status, body), (204, Value::Null));
    assert_error(
        &api.get("/api/events/smith-wedding").await,
        404,
        "deleted event",
    );
    assert_error(
        &api.get(&camera_path("smith-wedding", "cam2")).await,
        404,
        "camera of a deleted event",
    );
    let (_, events) = api.get("/api/events").await;
    assert!(
        !events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == "smith-wedding"),
        "{events}"
    );

    // Malformed bodies get the same JSON error shape as every other error. Checked last, so the
    // checks above have run even when these fail.
    for path in ["/api/events", "/api/events/demo/cameras", SWITCH] {
        let answer = api
            .send(Method::POST, path, Some("{\"name\":".into()), Some(TOKEN))
            .await;
        assert_error(&answer, 400, &format!("POST {path} with truncated JSON"));
        let answer = api.post(path, json!({ "nom": 1 })).await;
        assert!(
            [400, 422].contains(&answer.0),
            "POST {path} without the required field: {} {}",
            answer.0,
            answer.1
        );
        assert_error(
            &answer,
            answer.0,
            &format!("POST {path} without the required field"),
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_statuses() {
    let mut config = test_config();
    // Short, so the keyframe-less switch fails fast; above cam-a's 1 s GOP (plus scheduling
    // slack), so switches to a camera with keyframes never reach it.
    config.program.switch_timeout = Duration::from_secs(2);
    config.rtmp.timeout = Duration::from_secs(120);
    // Failover is not under test here: a stall of a loaded machine must not add log entries.
    config.program.failover_timeout = Duration::from_secs(10);
    let server = start_with(config).await;
    let api = Api::new(&server);
    let demo = event_path(EVENT);

    assert_error(&api.switch("cam1").await, 409, "camera not live");
    assert_error(&api.switch("cam9").await, 404, "unknown camera");
    assert_error(
        &api.post("/api/events/nope/switch", json!({ "camera": "cam1" }))
            .await,
        404,
        "unknown event",
    );
    assert_error(&api.post_empty(SWITCH).await, 400, "switch without a body");

    // The first camera live goes on program by itself.
    let cam1 = publish_live(&server, KEY_A, "cam-a.flv", 30).await;
    let cam2 = publish_live(&server, KEY_B, "cam-a.flv", 30).await;
    let event = api
        .wait_for(&demo, "cam1 on program", |e| e["active_camera"] == "cam1")
        .await;
    assert_eq!(event["status"], "live", "{event}");

    let (status, report) = api.switch("cam2").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["active_camera"], "cam2");
    assert_eq!(report["previous_camera"], "cam1");
    for field in ["requested_at", "switched_at"] {
        let at = str_of(&report, field);
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok(),
            "{field}: {at}"
        );
    }
    for field in ["waited_ms", "added_ms"] {
        assert!(
            report[field].as_f64().is_some_and(|ms| ms >= 0.0),
            "{field} in {report}"
        );
    }
    let (_, event) = api.get(&demo).await;
    assert_eq!(event["active_camera"], "cam2");

    // Without waiting: 202 at once, the switch completes later.
    let (status, body) = api
        .post(&format!("{SWITCH}?wait=false"), json!({ "camera": "cam1" }))
        .await;
    assert_eq!(status, 202, "{body}");
    api.wait_for(&demo, "cam1 back on program", |e| {
        e["active_camera"] == "cam1" && e["pending_camera"].is_null()
    })
    .await;

    // A live camera that never sends a keyframe: 504, and the switch is cancelled.
    let mut silent = connect(&server, KEY_C).await.expect("cam3 publishes");
    silent
        .send_tags(&header_tags("cam-a.flv"))
        .await
        .expect("headers sent");
    api.wait_for(&camera_path(EVENT, "cam3"), "cam3 live", |c| {
        c["status"] == "live"
    })
    .await;
    assert_error(
        &api.switch("cam3").await,
        504,
        "switch to a keyframe-less camera",
    );
    let (_, event) = api.get(&demo).await;
    assert_eq!(event["pending_camera"], Value::Null, "{event}");
    assert_eq!(event["active_camera"], "cam1", "{event}");
    assert_eq!(event["status"], "live", "{event}");

    // A switch requested while another is pending replaces it.
    let waiting = {
        let api = api.clone();
        tokio::spawn(async move { api.switch("cam3").await })
    };
    api.wait_for(&demo, "cam3 pending", |e| e["pending_camera"] == "cam3")
        .await;
    let (status, report) = api.switch("cam2").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["active_camera"], "cam2");
    assert_eq!(report["previous_camera"], "cam1");
    let superseded = timeout(PATIENCE, waiting)
        .await
        .expect("the superseded switch never answered")
        .expect("switch task");
    assert_error(&superseded, 409, "superseded switch");
    assert!(
        str_of(&superseded.1, "error").contains("superseded"),
        "{}",
        superseded.1
    );
    let (_, event) = api.get(&demo).await;
    assert_eq!(event["pending_camera"], Value::Null, "{event}");
    assert_eq!(event["active_camera"], "cam2", "{event}");

    // The log: every completed switch, with its reason.
    let (status, log) = api.get("/api/events/demo/switches").await;
    assert_eq!(status, 200, "{log}");
    let log = log.as_array().expect("switch log").clone();
    let entries: Vec<(Value, Value, Value)> = log
        .iter()
        .map(|s| (s["from"].clone(), s["to"].clone(), s["reason"].clone()))
        .collect();
    assert_eq!(
        entries,
        [
            (Value::Null, json!("cam1"), json!("auto")),
            (json!("cam1"), json!("cam2"), json!("operator")),
            (json!("cam2"), json!("cam1"), json!("operator")),
            (json!("cam1"), json!("cam2"), json!("operator")),
        ],
        "{log:?}"
    );
    for entry in &log {
        assert!(
            chrono::DateTime::parse_from_rfc3339(str_of(entry, "at")).is_ok(),
            "{entry}"
        );
    }

    // Ending: ENDLIST, status ended, and no more switching.
    let (status, ended) = api.post_empty("/api/events/demo/end").await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["status"], "ended");
    let playlist = get(&playlist_url(&server, "program")).await;
    assert_eq!(playlist.status, 200);
    let text = String::from_utf8(playlist.body.to_vec()).expect("utf-8 playlist");
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
    let (_, event) = api.get(&demo).await;
    assert_eq!(event["status"], "ended", "{event}");
    assert_error(&api.switch("cam1").await, 409, "switch after the end");

    cam1.abort();
    cam2.abort();
    drop(silent);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_in_order() {
    let mut config = test_config();
    // The failover here is a pulled cable; a stall of a loaded machine must not cause another.
    config.program.failover_timeout = Duration::from_secs(10);
    let server = start_with(config).await;
    let api = Api::new(&server);
    let request = ws_request(&server, EVENT, Some("tally, bearer.test-token-123"));
    let (ws, response) = timeout(PATIENCE, tokio_tungstenite::connect_async(request))
        .await
        .expect("WebSocket handshake hung")
        .expect("WebSocket accepted with the subprotocol token");
    assert_eq!(
        response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .map(|v| v.to_str().unwrap_or("")),
        Some("tally"),
        "the server selects the `tally` subprotocol"
    );
    let mut feed = Feed {
        ws,
        event: EVENT.into(),
        warnings: Vec::new(),
        stats: Vec::new(),
        faults: Vec::new(),
    };

    let hello = feed.next().await;
    assert_eq!(hello["type"], "hello", "{hello}");
    let state = if hello["event"].is_object() {
        &hello["event"]
    } else {
        &hello
    };
    assert_eq!(state["id"], EVENT, "hello carries the event: {hello}");
    assert_eq!(state["status"], "waiting", "{hello}");

    let cam1 = publish_live(&server, KEY_A, "cam-a.flv", 30).await;
    feed.expect("camera_live", json!({ "camera": "cam1" }))
        .await;
    feed.expect(
        "switch_pending",
        json!({ "camera": "cam1", "reason": "auto" }),
    )
    .await;
    let switched = feed
        .expect("camera_switched", json!({ "to": "cam1", "reason": "auto" }))
        .await;
    assert!(switched["program_timestamp"].is_number(), "{switched}");
    feed.expect("event_status", json!({ "status": "live" }))
        .await;

    // A second camera with another resolution and audio rate: live, then warned about.
    let cam2 = publish_live(&server, KEY_B, "cam-b.flv", 30).await;
    feed.expect("camera_live", json!({ "camera": "cam2" }))
        .await;
    feed.expect_warning("cam2", "resolution").await;
    let (_, camera) = api.get(&camera_path(EVENT, "cam2")).await;
    assert!(
        camera["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().unwrap_or("").contains("resolution"))),
        "the API shows the warning too: {camera}"
    );

    let (status, report) = api.switch("cam2").await;
    assert_eq!(status, 200, "{report}");
    feed.expect(
        "switch_pending",
        json!({ "camera": "cam2", "reason": "operator" }),
    )
    .await;
    let switched = feed
        .expect(
            "camera_switched",
            json!({ "from": "cam1", "to": "cam2", "reason": "operator" }),
        )
        .await;
    assert!(switched["program_timestamp"].is_number(), "{switched}");

    // Pull cam2's cable: offline, then failover to cam1.
    cam2.abort();
    feed.expect("camera_offline", json!({ "camera": "cam2" }))
        .await;
    feed.expect(
        "switch_pending",
        json!({ "camera": "cam1", "reason": "failover" }),
    )
    .await;
    let switched = feed
        .expect(
            "camera_switched",
            json!({ "from": "cam2", "to": "cam1", "reason": "failover" }),
        )
        .await;
    assert!(switched["program_timestamp"].is_number(), "{switched}");

    for stats in &feed.stats {
        assert!(stats["cameras"].is_array(), "{stats}");
    }
    assert!(
        feed.faults.is_empty(),
        "messages without the type/event/at envelope:\n{}",
        feed.faults.join("\n")
    );
    cam1.abort();
    server.shutdown().await;
}

/// The (id, name, stream_key) of each of an event's cameras, in order.
fn camera_keys(event: &Value) -> Vec<(Value, Value, Value)> {
    event["cameras"]
        .as_array()
        .expect("cameras")
        .iter()
        .map(|c| (c["id"].clone(), c["name"].clone(), c["stream_key"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.store.path = dir.path().join("tally.db");
    // Only a pulled cable fails over here; a stall of a loaded machine must not log a switch.
    config.program.failover_timeout = Duration::from_secs(10);

    let server = start_with(config.clone()).await;
    let api = Api::new(&server);
    let (status, event) = api
        .post("/api/events", json!({ "name": "Gala Night" }))
        .await;
    assert_eq!(status, 201, "{event}");
    let gala = event_path("gala-night");
    let cameras = format!("{gala}/cameras");
    let (_, cam1) = api.post(&cameras, json!({ "name": "Left" })).await;
    let (_, cam2) = api.post(&cameras, json!({ "name": "Right" })).await;
    let key1 = str_of(&cam1, "stream_key").to_string();
    let key2 = str_of(&cam2, "stream_key").to_string();

    let left = publish_live(&server, &key1, "cam-a.flv", 30).await;
    api.wait_for(&gala, "cam1 on program", |e| e["active_camera"] == "cam1")
        .await;
    let right = publish_live(&server, &key2, "cam-a.flv", 30).await;
    for camera in ["cam2", "cam1", "cam2"] {
        let (status, report) = api
            .post(&format!("{gala}/switch"), json!({ "camera": camera }))
            .await;
        assert_eq!(status, 200, "switch to {camera}: {report}");
    }
    let (status, rotated) = api
        .post_empty(&format!("{}/key", camera_path("gala-night", "cam2")))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let rotated_key = str_of(&rotated, "stream_key").to_string();
    assert_ne!(rotated_key, key2);

    // Stop the publishers so the old server has nothing more to log: first the camera off
    // program, then the one on it (the event pauses; nothing is live to fail over to).
    left.abort();
    api.wait_for(&camera_path("gala-night", "cam1"), "cam1 offline", |c| {
        c["status"] == "offline"
    })
    .await;
    right.abort();
    let before = api
        .wait_for(&gala, "the event paused", |e| e["status"] == "paused")
        .await;
    let (status, log_before) = api.get(&format!("{gala}/switches")).await;
    assert_eq!(status, 200);
    assert_eq!(log_before.as_array().map(Vec::len), Some(4), "{log_before}");
    server.shutdown().await;

    let server = start_with(config.clone()).await;
    let api = Api::new(&server);
    let (status, after) = api.get(&gala).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["name"], "Gala Night");
    assert_eq!(camera_keys(&after), camera_keys(&before));
    assert_eq!(after["cameras"][0]["stream_key"], key1.as_str());
    assert_eq!(after["cameras"][1]["stream_key"], rotated_key.as_str());
    let (status, log_after) = api.get(&format!("{gala}/switches")).await;
    assert_eq!(status, 200);
    assert_eq!(log_after, log_before, "the switch log survives as it was");
    let (_, events) = api.get("/api/events").await;
    let demos = events
        .as_array()
        .expect("event list")
        .iter()
        .filter(|e| e["id"] == EVENT)
        .count();
    assert_eq!(demos, 1, "the seeded event exactly once: {events}");

    // The stored keys: the rotated one publishes, the retired one is still refused.
    assert_refused(
        connect(&server, &key2).await,
        "the retired key after a restart",
    );
    let right = publish_live(&server, &rotated_key, "cam-a.flv", 30).await;
    api.wait_for(&gala, "cam2 (active before the restart) on program", |e| {
        e["active_camera"] == "cam2"
    })
    .await;
    let left = publish_live(&server, &key1, "cam-a.flv", 30).await;
    api.wait_for(&camera_path("gala-night", "cam1"), "cam1 live", |c| {
        c["status"] == "live"
    })
    .await;
    let (_, event) = api.get(&gala).await;
    assert_eq!(event["active_camera"], "cam2", "{event}");
    left.abort();
    right.abort();
    server.shutdown().await;

    // A corrupt store stops start-up, naming the file, before anything listens.
    let corrupt = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.store.path = corrupt.path().join("tally.db");
    let garbage: Vec<u8> = (0..16_384u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&config.store.path, garbage).expect("write garbage");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
    config.control.listen = probe.local_addr().expect("probe address");
    drop(probe);
    let error = match Server::start(config.clone()).await {
        Ok(_) => panic!("a corrupt store was accepted"),
        Err(e) => format!("{e:#}"),
    };
    let path = config.store.path.display().to_string();
    assert!(error.contains(&path), "{error:?} does not name {path}");
    assert!(
        tokio::net::TcpStream::connect(config.control.listen)
            .await
            .is_err(),
        "the control port is served after a failed start"
    );

    // So does an unwritable path: a file where a directory should be.
    let blocked = tempfile::tempdir().expect("tempdir");
    let file = blocked.path().join("not-a-directory");
    std::fs::write(&file, b"x").expect("write file");
    let mut config = test_config();
    config.store.path = file.join("tally.db");
    let error = match Server::start(config.clone()).await {
        Ok(_) => panic!("an unwritable store path was accepted"),
        Err(e) => format!("{e:#}"),
    };
    let path = config.store.path.display().to_string();
    assert!(error.contains(&path), "{error:?} does not name {path}");
}
