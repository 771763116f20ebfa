//! Restreaming against a real RTMP server: Debian's nginx with nginx-rtmp-module, started by the
//! test on loopback, recording what it receives to FLV. ffmpeg and ffprobe then check the
//! recordings: zero decode errors, both cameras' resolutions, rising timestamps.
//!
//! With `CI=true` a missing nginx, ffmpeg or ffprobe fails the test; elsewhere it is skipped
//! loudly. No timing assertions: waits poll with a deadline that only catches hangs. The
//! reconnect time is measured and printed, not asserted beyond that deadline.

mod support;

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::*;
use tally::{
    rtmp::client::{PublishOptions, Publisher},
    Server,
};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http, Message};

const TOKEN: &str = "test-token-123";
/// The bound on every wait; reaching it means a hang, not a slow machine.
const PATIENCE: Duration = Duration::from_secs(30);
const NGINX_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
const DEST_KEY: &str = "restream-secret-key-0001";

/// nginx with the RTMP module, on a loopback port, recording into its own directory.
struct Nginx {
    /// Prefix, config, pid and error log live here; recordings in `rec/`.
    dir: PathBuf,
    /// The RTMP port.
    port: u16,
    /// The running process, if any.
    child: Option<Child>,
}

impl Nginx {
    fn new(dir: &Path) -> Nginx {
        let port = free_port();
        let rec = dir.join("rec");
        std::fs::create_dir_all(&rec).unwrap();
        let conf = format!(
            "load_module {NGINX_MODULE};\n\
             daemon off;\n\
             master_process off;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 application live {{\n\
                   live on;\n\
                   record all;\n\
                   record_path {rec};\n\
                   record_unique on;\n\
                 }}\n\
               }}\n\
             }}\n",
            dir = dir.display(),
            rec = rec.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        Nginx {
            dir: dir.to_path_buf(),
            port,
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.port)
    }

    /// Starts nginx and returns once it accepts connections.
    async fn start(&mut self) -> Instant {
        let dir = self.dir.display().to_string();
        let child = Command::new("nginx")
            .args(["-e", &format!("{dir}/stderr.log"), "-p", &dir, "-c"])
            .arg(self.dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Instant::now();
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                panic!("nginx exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "nginx never listened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Fast shutdown (SIGTERM): connections are cut, recordings closed.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "nginx did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The recorded FLV files, oldest first.
    fn recordings(&self) -> Vec<PathBuf> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> =
            std::fs::read_dir(self.dir.join("rec"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "flv"))
                .map(|p| (std::fs::metadata(&p).unwrap().modified().unwrap(), p))
                .collect();
        files.sort();
        files.into_iter().map(|(_, p)| p).collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tools_present() -> bool {
    // Evaluate all three, so CI names every missing tool.
    let found = [
        require_tool("nginx"),
        require_tool("ffmpeg"),
        require_tool("ffprobe"),
    ];
    if found.iter().all(|f| *f) && !Path::new(NGINX_MODULE).exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{NGINX_MODULE} is missing (CI=true); .ci/run installs libnginx-mod-rtmp");
        }
        eprintln!("SKIPPED: {NGINX_MODULE} is missing; install libnginx-mod-rtmp");
        return false;
    }
    found.iter().all(|f| *f)
}

struct Api {
    /// Shared HTTP client.
    client: reqwest::Client,
    /// `http://control/api/events/demo`
    base: String,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            client: reqwest::Client::new(),
            base: format!("http://{}/api/events/{EVENT}", server.control_addr),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value, String) {
        let response = tokio::time::timeout(PATIENCE, request.bearer_auth(TOKEN).send())
            .await
            .expect("no answer")
            .expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, body, text)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body, text) = self
            .send(self.client.get(format!("{}{path}", self.base)))
            .await;
        assert_eq!(status, 200, "GET {path}: {text}");
        assert!(!text.contains(DEST_KEY), "the key leaked: {text}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let (status, body, text) = self.send(request).await;
        assert!(!text.contains(DEST_KEY), "the key leaked: {text}");
        (status, body)
    }

    async fn delete(&self, path: &str) -> u16 {
        let request = self.client.delete(format!("{}{path}", self.base));
        self.send(request).await.0
    }

    async fn create(&self, name: &str, url: &str, source: &str) -> i64 {
        let (status, body) = self
            .post(
                "/destinations",
                json!({ "name": name, "url": url, "key": DEST_KEY, "source": source }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["key"], "rest…", "the key is shown redacted");
        body["id"].as_i64().expect("id")
    }

    async fn destination(&self, id: i64) -> Value {
        self.get(&format!("/destinations/{id}")).await
    }

    /// Polls the destination until `ready` holds.
    async fn wait_destination(&self, id: i64, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.destination(id).await;
            if ready(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "destination never {what}: {value}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_state(&self, id: i64, state: &str) -> Value {
        self.wait_destination(id, state, |v| v["state"] == state)
            .await
    }

    async fn switch(&self, camera: &str) {
        let (status, body) = self.post("/switch", json!({ "camera": camera })).await;
        assert_eq!(status, 200, "switch to {camera}: {body}");
    }

    async fn wait_active(&self, camera: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.get("").await["active_camera"] != camera {
            assert!(Instant::now() < deadline, "{camera} never went on program");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every `destination_status` message of the event's WebSocket, collected in the background.
async fn watch_destinations(server: &Server) -> Arc<Mutex<Vec<Value>>> {
    let mut request = format!("ws://{}/api/events/{EVENT}/ws", server.control_addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket accepted");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Text(text) = message {
                assert!(!text.contains(DEST_KEY), "the key leaked: {text}");
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "destination_status" {
                    sink.lock().unwrap().push(value);
                }
            }
        }
    });
    seen
}

/// What ffmpeg and ffprobe say about one recording.
struct Checked {
    /// Distinct (width, height) of the decoded pictures.
    sizes: BTreeSet<(u32, u32)>,
    /// Packets per codec type (`video`, `audio`).
    packets: HashMap<String, usize>,
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn check_recording(file: &Path) -> Checked {
    let name = file.display().to_string();
    let decoded = run("ffmpeg", &["-v", "error", "-i", &name, "-f", "null", "-"]);
    let errors = String::from_utf8_lossy(&decoded.stderr);
    assert!(
        decoded.status.success() && errors.trim().is_empty(),
        "{name}: ffmpeg reports decode errors:\n{errors}"
    );

    let frames = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=width,height",
            "-of",
            "csv=p=0",
            &name,
        ],
    );
    let sizes = String::from_utf8_lossy(&frames.stdout)
        .lines()
        .filter_map(|line| {
            let (w, h) = line.trim().trim_end_matches(',').split_once(',')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .collect();

    let packets = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,dts,flags",
            "-of",
            "csv=p=0",
            &name,
        ],
    );
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in String::from_utf8_lossy(&packets.stdout).lines() {
        let fields: Vec<&str> = line.trim().split(',').collect();
        let [kind, dts, flags, ..] = fields[..] else {
            continue;
        };
        let Ok(dts) = dts.parse::<i64>() else {
            continue;
        };
        match last.insert(kind.to_string(), dts) {
            Some(previous) => assert!(
                dts >= previous,
                "{name}: {kind} dts goes back from {previous} to {dts}"
            ),
            None if kind == "video" => {
                assert!(flags.starts_with('K'), "{name}: starts at a keyframe")
            }
            None => {}
        }
        *counts.entry(kind.to_string()).or_default() += 1;
    }
    Checked {
        sizes,
        packets: counts,
    }
}

/// Program to nginx: cuts between two resolutions, a disable/enable, and nginx killed and
/// restarted; every recording decodes cleanly with rising timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restreams_the_program_through_cuts_and_reconnects() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut nginx = Nginx::new(dir.path());
    nginx.start().await;

    let mut config = test_config();
    config.restream.reconnect_min = Duration::from_millis(250);
    config.restream.reconnect_max = Duration::from_secs(2);
    let server = start_with(config).await;
    let api = Api::new(&server);
    let messages = watch_destinations(&server).await;
    let cam1 = publish_live(&server, KEY_A, "cam-a.flv", 20).await;
    api.wait_active("cam1").await;
    let cam2 = publish_live(&server, KEY_B, "cam-b.flv", 20).await;

    let id = api.create("nginx", &nginx.url(), "program").await;
    let live = api.wait_state(id, "live").await;
    assert_eq!(live["source"], "program");
    assert_eq!(live["error"], Value::Null);

    // Three cuts between 320x240 and 640x360, the last after the reconnect.
    tokio::time::sleep(Duration::from_secs(2)).await;
    api.switch("cam2").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    api.switch("cam1").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Disable and enable: a new publish, hence a new recording.
    let (status, body) = api
        .post(&format!("/destinations/{id}/disable"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], false);
    api.wait_state(id, "disabled").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = api
        .post(&format!("/destinations/{id}/enable"), json!({}))
        .await;
    assert_eq!(status, 200);
    api.wait_state(id, "live").await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The destination goes away: retrying with the error, then back once nginx returns.
    let before = api.destination(id).await;
    nginx.stop().await;
    let retrying = api
        .wait_destination(id, "retrying with an error", |v| {
            v["state"] == "retrying" && v["error"].is_string()
        })
        .await;
    eprintln!("while nginx is down: {}", retrying["error"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let back = nginx.start().await;
    api.wait_state(id, "live").await;
    let reconnect = back.elapsed();
    println!(
        "restream reconnect time after the destination comes back: {} ms \
         (backoff 250 ms doubling to 2 s)",
        reconnect.as_millis()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    api.switch("cam2").await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let after = api
        .wait_destination(id, "counting frames", |v| {
            v["frames_sent"].as_u64() > before["frames_sent"].as_u64()
                && v["bytes_per_second"].as_u64() > Some(0)
        })
        .await;
    assert!(after["uptime_seconds"].as_f64().unwrap() > 0.0, "{after}");
    assert!(after["frames_dropped"].is_u64(), "{after}");

    // A polite goodbye, so nginx closes the last recording, then nginx stops.
    api.post(&format!("/destinations/{id}/disable"), json!({}))
        .await;
    api.wait_state(id, "disabled").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    nginx.stop().await;
    cam1.abort();
    cam2.abort();

    let states: Vec<String> = messages
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] == id)
        .map(|m| m["state"].as_str().unwrap().to_string())
        .collect();
    for state in ["connecting", "live", "disabled", "retrying"] {
        assert!(
            states.iter().any(|s| s == state),
            "no {state} on the WebSocket: {states:?}"
        );
    }

    let metrics = api
        .client
        .get(format!("http://{}/metrics", server.control_addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "tally_restream_bytes_total",
        "tally_restream_frames_total",
        "tally_restream_live",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(series) && l.contains("destination=\"nginx\"")),
            "{series} missing from /metrics"
        );
    }

    let files = nginx.recordings();
    assert!(
        files.len() >= 3,
        "one recording per connection (first, after enable, after the restart): {files:?}"
    );
    let mut sizes = BTreeSet::new();
    for file in &files {
        let checked = check_recording(file);
        eprintln!(
            "{}: sizes {:?}, packets per stream {:?}",
            file.display(),
            checked.sizes,
            checked.packets
        );
        assert_eq!(checked.packets.len(), 2, "audio and video in {file:?}");
        sizes.extend(checked.sizes);
    }
    assert!(
        sizes.contains(&(320, 240)) && sizes.contains(&(640, 360)),
        "both resolutions recorded: {sizes:?}"
    );
    server.shutdown().await;
}

/// A destination that cannot connect keeps retrying with its error, while another destination
/// (following a camera) and the program carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_destination_harms_no_one() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut nginx = Nginx::new(dir.path());
    nginx.start().await;
    let mut config = test_config();
    config.restream.reconnect_min = Duration::from_millis(100);
    config.restream.reconnect_max = Duration::from_millis(400);
    let server = start_with(config).await;
    let api = Api::new(&server);
    let cam1 = publish_live(&server, KEY_A, "cam-a.flv", 10).await;
    api.wait_active("cam1").await;

    let closed = format!("rtmp://127.0.0.1:{}/live", free_port());
    let dead = api.create("dead", &closed, "program").await;
    let good = api.create("good", &nginx.url(), "cam1").await;

    let first = api
        .wait_destination(dead, "retrying", |v| {
            v["state"] == "retrying" && v["error"].is_string()
        })
        .await;
    assert!(
        first["error"].as_str().unwrap().contains("refused"),
        "{first}"
    );
    let live = api.wait_state(good, "live").await;
    assert_eq!(live["source"], "cam1");

    // Time passes: the dead one keeps failing, the good one keeps sending, the program grows.
    let (_, before) = wait_for_playlist(&server, "program", |p| !p.segments.is_empty()).await;
    let sent = live["frames_sent"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = api
        .wait_destination(dead, "retrying again", |v| {
            v["retries"].as_u64() > first["retries"].as_u64() && v["error"].is_string()
        })
        .await;
    assert_ne!(later["state"], "live");
    api.wait_destination(good, "sending", |v| {
        v["state"] == "live" && v["frames_sent"].as_u64() > Some(sent + 30)
    })
    .await;
    wait_for_playlist(&server, "program", |p| {
        p.media_sequence + p.segments.len() as u64
            > before.media_sequence + before.segments.len() as u64
    })
    .await;

    // Deleting the dead one leaves the good one alone.
    assert_eq!(api.delete(&format!("/destinations/{dead}")).await, 204);
    assert_eq!(api.delete(&format!("/destinations/{dead}")).await, 404);
    let list = api.get("/destinations").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(api.destination(good).await["state"], "live");

    cam1.abort();
    api.post(&format!("/destinations/{good}/disable"), json!({}))
        .await;
    api.wait_state(good, "disabled").await;
    nginx.stop().await;
    for file in nginx.recordings() {
        check_recording(&file);
    }
    server.shutdown().await;
}

/// The API refuses bad input with fitting statuses, and destinations (disabled state included)
/// survive a restart. Needs no external tool: the URL points at a closed port.
#[tokio::test]
async fn destinations_are_validated_and_persist() {
    let config = test_config();
    let server = start_with(config.clone()).await;
    let api = Api::new(&server);
    let closed = format!("rtmp://127.0.0.1:{}/live", free_port());

    for (body, status) in [
        (
            json!({ "name": "x", "url": "http://h/live", "key": "k" }),
            400,
        ),
        (json!({ "name": "x", "url": "rtmp://h", "key": "k" }), 400),
        (
            json!({ "name": "x", "url": "rtmp://h:0/live", "key": "k" }),
            400,
        ),
        (json!({ "name": "", "url": closed, "key": "k" }), 400),
        (json!({ "name": "x", "url": closed, "key": "" }), 400),
        (json!({ "name": "x", "url": closed, "key": "a b" }), 400),
        (
            json!({ "name": "x", "url": closed, "key": "k", "source": "cam9" }),
            400,
        ),
        (json!({ "name": "x", "url": closed }), 422),
    ] {
        let (got, answer) = api.post("/destinations", body.clone()).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let request = api
        .client
        .post(format!("{}/destinations", api.base))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body("{not json");
    assert_eq!(api.send(request).await.0, 400);

    let youtube = api.create("YouTube", &closed, "program").await;
    let twitch = api.create("Twitch", &closed, "cam2").await;
    let (status, _) = api
        .post(
            "/destinations",
            json!({ "name": "YouTube", "url": closed, "key": "other-key-123" }),
        )
        .await;
    assert_eq!(status, 409, "names are unique within the event");
    let (status, _) = api.post("/destinations/999/enable", json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = api.post("/destinations/abc/enable", json!({})).await;
    assert_eq!(status, 404);
    let (status, body) = api
        .post(&format!("/destinations/{twitch}/disable"), json!({}))
        .await;
    assert_eq!((status, &body["enabled"]), (200, &json!(false)));
    api.wait_state(twitch, "disabled").await;
    let missing = reqwest::Client::new()
        .get(format!(
            "http://{}/api/events/nope/destinations",
            server.control_addr
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let unauthorised = reqwest::Client::new()
        .get(format!("{}/destinations", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status().as_u16(), 401);

    let list = api.get("/destinations").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["YouTube", "Twitch"]);
    server.shutdown().await;

    // Same store, new server: both back, Twitch still disabled, YouTube trying again.
    let server = start_with(config).await;
    let api = Api::new(&server);
    let list = api.get("/destinations").await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], youtube);
    assert_eq!(list[1]["enabled"], false);
    assert_eq!(list[1]["state"], "disabled");
    assert_eq!(list[1]["key"], "rest…");
    api.wait_destination(youtube, "retrying or waiting", |v| {
        v["state"] == "connecting" || v["state"] == "retrying"
    })
    .await;
    assert_eq!(api.delete(&format!("/destinations/{twitch}")).await, 204);
    server.shutdown().await;
}

/// Makes a private CA and a certificate for `localhost` signed by it, with openssl. Returns the
/// CA certificate, the leaf certificate and the leaf key (PEM files).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name).display().to_string();
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
         basicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let steps: [Vec<String>; 3] = [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tally test CA",
            "-keyout",
            &path("ca.key"),
            "-out",
            &path("ca.pem"),
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &path("leaf.key"),
            "-out",
            &path("leaf.csr"),
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        vec![
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &path("leaf.csr"),
            "-CA",
            &path("ca.pem"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &path("leaf.ext"),
            "-out",
            &path("leaf.pem"),
        ]
        .into_iter()
        .map(String::from)
        .collect(),
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

/// `rtmps://`: tally's publisher over TLS, through a TLS terminator (tokio-rustls with a
/// certificate from a private CA) to nginx, which records it. The default trust anchors (the
/// webpki roots) refuse that CA; trusting it, the stream arrives intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_over_rtmps() {
    use tally::rtmp::client::{ClientError, Endpoint};
    use tokio_rustls::rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
        ClientConfig, RootCertStore, ServerConfig,
    };

    if !tools_present() || !require_tool("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut nginx = Nginx::new(dir.path());
    nginx.start().await;
    let (ca, leaf, leaf_key) = private_ca(dir.path());

    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&leaf)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let server_tls = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, PrivateKeyDer::from_pem_file(&leaf_key).unwrap())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls));
    let terminator = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = terminator.local_addr().unwrap().port();
    let nginx_port = nginx.port;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = terminator.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses our certificate ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", nginx_port))
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });

    let endpoint = Endpoint::parse(&format!("rtmps://localhost:{tls_port}/live")).unwrap();
    assert!(endpoint.tls);
    let refused =
        Publisher::connect_url(&endpoint, "tls-key-0001", PublishOptions::default()).await;
    match refused {
        Err(ClientError::Tls(message)) => {
            assert!(message.contains("certificate"), "{message}")
        }
        Err(other) => panic!("expected a certificate error, got {other}"),
        Ok(_) => panic!("a private CA must not pass the webpki roots"),
    }

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&ca).unwrap())
        .unwrap();
    let client_tls = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut publisher = Publisher::connect_url_with_tls(
        &endpoint,
        "tls-key-0001",
        PublishOptions::default(),
        Arc::new(client_tls),
    )
    .await
    .expect("publishes over TLS");
    publisher
        .send_tags(&fixture_tags("cam-a.flv"))
        .await
        .expect("tags sent over TLS");
    publisher.finish().await.expect("clean stop");
    tokio::time::sleep(Duration::from_millis(500)).await;
    nginx.stop().await;

    let files = nginx.recordings();
    assert_eq!(files.len(), 1, "{files:?}");
    let checked = check_recording(&files[0]);
    assert_eq!(checked.sizes, BTreeSet::from([(320, 240)]));
    assert_eq!(checked.packets["video"], 180);
}
