//! Webhooks end to end: a backend on 127.0.0.1:0 that records every form body and answers per
//! stream name, a server publishing to it, and our own RTMP publisher. Nothing here asserts a
//! duration: "while the other one is still pending" is established with channels (the backend
//! holds its answer until the test releases it), and deadlines only turn hangs into failures.

mod support;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Form, Router,
};
use support::*;
use tally::config::{Config, WebhookConfig};
use tally::rtmp::client::{ClientError, PublishOptions, Publisher};
use tally::webhook::Webhooks;
use tally::Server;
use tokio::sync::{mpsc, Notify};

/// How the backend answers one `(call, name)`.
#[derive(Debug, Clone)]
enum Rule {
    /// Answer with this status.
    Status(u16),
    /// 302 with this `Location`.
    Redirect(String),
    /// Answer 200 only once the test calls [`Backend::release`].
    Hold,
    /// Never answer (the server's timeout must fire).
    Hang,
}

/// One request the backend received.
#[derive(Debug, Clone)]
struct Call {
    /// The request's `Content-Type`.
    content_type: String,
    /// The form fields, in order.
    fields: Vec<(String, String)>,
}

impl Call {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn field(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("no field {name:?} in {:?}", self.fields))
    }

    fn is(&self, call: &str, name: &str) -> bool {
        self.get("call") == Some(call) && self.get("name") == Some(name)
    }
}

/// Shared by the backend's handler and the test.
struct Shared {
    /// Answers per `(call, name)`; 200 when absent.
    rules: Mutex<HashMap<(String, String), Rule>>,
    /// Every request, as it arrives (before it is answered).
    calls: mpsc::UnboundedSender<Call>,
    /// Lets [`Rule::Hold`] answers go.
    release: Notify,
}

/// The webhook backend.
struct Backend {
    /// Where it listens.
    addr: SocketAddr,
    /// State shared with the handler.
    shared: Arc<Shared>,
    /// Requests not yet looked at.
    calls: mpsc::UnboundedReceiver<Call>,
    /// Requests already received, for later lookups.
    seen: Vec<Call>,
    /// The server task; aborted on drop.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let call = Call {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        fields,
    };
    let key = (
        call.get("call").unwrap_or_default().to_string(),
        call.get("name").unwrap_or_default().to_string(),
    );
    let rule = shared.rules.lock().unwrap().get(&key).cloned();
    let _ = shared.calls.send(call);
    match rule.unwrap_or(Rule::Status(200)) {
        Rule::Status(status) => StatusCode::from_u16(status).unwrap().into_response(),
        Rule::Redirect(location) => {
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        Rule::Hold => {
            shared.release.notified().await;
            StatusCode::OK.into_response()
        }
        Rule::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

impl Backend {
    async fn start() -> Backend {
        let (tx, calls) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            rules: Mutex::new(HashMap::new()),
            calls: tx,
            release: Notify::new(),
        });
        let router = Router::new()
            .route("/{hook}", post(hook))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Backend {
            addr,
            shared,
            calls,
            seen: Vec::new(),
            task,
        }
    }

    /// The URL of one hook, with a secret in its query string (it must never be logged).
    fn url(&self, hook: &str) -> String {
        format!("http://{}/{hook}?secret=hunter2", self.addr)
    }

    /// Configures every webhook to point here.
    fn configure(&self, config: &mut Config) {
        config.webhooks = WebhookConfig {
            on_publish: self.url("publish"),
            on_publish_done: self.url("done"),
            on_update: self.url("update"),
            on_record_done: self.url("record"),
            ..config.webhooks.clone()
        };
    }

    fn rule(&self, call: &str, name: &str, rule: Rule) {
        self.shared
            .rules
            .lock()
            .unwrap()
            .insert((call.into(), name.into()), rule);
    }

    /// Lets one held answer go.
    fn release(&self) {
        self.shared.release.notify_one();
    }

    /// The first request (seen or to come) that `matches`, removing it from the seen list;
    /// panics after 20 s (a hang, not a timing assertion).
    async fn wait(&mut self, what: &str, matches: impl Fn(&Call) -> bool) -> Call {
        if let Some(i) = self.seen.iter().position(&matches) {
            return self.seen.remove(i);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let call = tokio::time::timeout_at(deadline, self.calls.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} call; seen {:?}", self.seen))
                .expect("backend running");
            if matches(&call) {
                return call;
            }
            self.seen.push(call);
        }
    }

    /// Every request received so far.
    fn drain(&mut self) -> &[Call] {
        while let Ok(call) = self.calls.try_recv() {
            self.seen.push(call);
        }
        &self.seen
    }
}

async fn server_with(backend: &Backend, adjust: impl FnOnce(&mut Config)) -> Server {
    let mut config = test_config();
    backend.configure(&mut config);
    adjust(&mut config);
    config.validate().expect("valid config");
    start_with(config).await
}

async fn connect(server: &Server, key: &str) -> Result<Publisher, ClientError> {
    Publisher::connect(server.rtmp_addr, APP, key, PublishOptions::default()).await
}

fn is_live(server: &Server, camera: &str) -> bool {
    server.registry.camera(EVENT, camera).unwrap().is_live()
}

/// Polls until `done`; panics after 20 s (a hang, not a timing assertion).
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_refused(result: Result<Publisher, ClientError>) {
    match result {
        Err(ClientError::Refused(code)) => assert_eq!(code, "NetStream.Publish.BadName"),
        Err(e) => panic!("expected a BadName refusal, got {e}"),
        Ok(_) => panic!("expected a BadName refusal, the publish was accepted"),
    }
}

#[tokio::test]
async fn on_publish_allows_refuses_and_sends_nginx_fields() {
    let mut backend = Backend::start().await;
    backend.rule("publish", KEY_B, Rule::Status(403));
    backend.rule("publish", KEY_C, Rule::Status(500));
    let server = server_with(&backend, |_| {}).await;

    let publisher = connect(&server, KEY_A).await.expect("allowed");
    assert!(is_live(&server, "cam1"));
    let call = backend.wait("publish", |c| c.is("publish", KEY_A)).await;
    assert_eq!(call.content_type, "application/x-www-form-urlencoded");
    for (field, value) in [
        ("call", "publish"),
        ("app", APP),
        ("name", KEY_A),
        ("type", "live"),
        ("addr", "127.0.0.1"),
        ("flashver", "FMLE/3.0 (compatible; tally)"),
        ("swfurl", ""),
        ("pageurl", ""),
        ("event", EVENT),
        ("camera", "cam1"),
    ] {
        assert_eq!(call.field(field), value, "{field}");
    }
    assert_eq!(
        call.field("tcurl"),
        format!("rtmp://{}/{APP}", server.rtmp_addr)
    );
    assert!(call.field("clientid").parse::<u64>().unwrap() > 0);

    assert_refused(connect(&server, KEY_B).await);
    assert_refused(connect(&server, KEY_C).await);
    assert!(!is_live(&server, "cam2") && !is_live(&server, "cam3"));

    // Args after `?` are appended, but cannot shadow our fields.
    drop(publisher);
    until("cam1 offline", || !is_live(&server, "cam1")).await;
    let key = format!("{KEY_A}?token=t0k&name=someone-else");
    let again = connect(&server, &key).await.expect("allowed with args");
    let call = backend
        .wait("publish with args", |c| c.get("token") == Some("t0k"))
        .await;
    assert_eq!(call.field("name"), KEY_A);
    assert_eq!(call.fields.iter().filter(|(k, _)| k == "name").count(), 1);
    again.finish().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_keys_are_refused_even_when_the_webhook_allows() {
    let mut backend = Backend::start().await;
    let server = server_with(&backend, |_| {}).await;
    assert_refused(connect(&server, "no-such-key").await);
    let call = backend
        .wait("publish", |c| c.is("publish", "no-such-key"))
        .await;
    assert_eq!(call.field("event"), "");
    assert_eq!(call.field("camera"), "");
    server.shutdown().await;
}

#[tokio::test]
async fn a_redirect_renames_the_stream_key() {
    let mut backend = Backend::start().await;
    backend.rule("publish", "alias-for-c", Rule::Redirect(KEY_C.into()));
    // A full URL is not parsed: nginx-rtmp takes the whole value as the name (unknown here).
    backend.rule(
        "publish",
        "alias-url",
        Rule::Redirect(format!("http://backend/{APP}/{KEY_C}")),
    );
    // An rtmp:// URL is a relay in nginx-rtmp: the name stays.
    backend.rule(
        "publish",
        KEY_B,
        Rule::Redirect("rtmp://relay.example/live/x".into()),
    );
    let server = server_with(&backend, |_| {}).await;

    let renamed = connect(&server, "alias-for-c").await.expect("redirected");
    assert!(is_live(&server, "cam3"));
    assert!(!is_live(&server, "cam1") && !is_live(&server, "cam2"));
    renamed.finish().await.unwrap();
    // on_publish_done names the stream as the encoder did, like nginx-rtmp, and the camera
    // that was actually published.
    let done = backend
        .wait("publish_done", |c| c.is("publish_done", "alias-for-c"))
        .await;
    assert_eq!(done.field("camera"), "cam3");

    assert_refused(connect(&server, "alias-url").await);

    let relayed = connect(&server, KEY_B).await.expect("kept its name");
    assert!(is_live(&server, "cam2"));
    relayed.finish().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_webhook_that_times_out_or_is_down_refuses() {
    let backend = Backend::start().await;
    backend.rule("publish", KEY_A, Rule::Hang);
    let server = server_with(&backend, |config| {
        config.webhooks.timeout = Duration::from_millis(300);
    })
    .await;
    assert_refused(connect(&server, KEY_A).await);
    assert!(!is_live(&server, "cam1"));
    server.shutdown().await;

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let server = server_with(&backend, |config| {
        config.webhooks.on_publish = format!("http://{closed}/publish");
    })
    .await;
    assert_refused(connect(&server, KEY_A).await);
    assert!(!is_live(&server, "cam1"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_webhook_delays_nobody_else() {
    let mut backend = Backend::start().await;
    backend.rule("publish", KEY_B, Rule::Hold);
    let server = server_with(&backend, |config| {
        config.webhooks.timeout = Duration::from_secs(60);
    })
    .await;

    // cam1 is live and cutting segments before the slow publish starts.
    let _live = publish_until_closed(&server, KEY_A).await;
    let (_, before) = wait_for_playlist(&server, "cam1", |_| true).await;
    let last = |p: &m3u8_rs::MediaPlaylist| p.media_sequence + p.segments.len() as u64;

    let addr = server.rtmp_addr;
    let slow = tokio::spawn(async move {
        Publisher::connect(addr, APP, KEY_B, PublishOptions::default()).await
    });
    backend
        .wait("held publish", |c| c.is("publish", KEY_B))
        .await;

    // While cam2's on_publish is held: another publisher gets in, and cam1 keeps cutting.
    let other = connect(&server, KEY_C).await.expect("not delayed");
    assert!(is_live(&server, "cam3"));
    wait_for_playlist(&server, "cam1", |p| last(p) > last(&before)).await;
    assert!(!slow.is_finished(), "the held publish is still pending");
    assert!(!is_live(&server, "cam2"));

    backend.release();
    let slow = slow.await.unwrap().expect("allowed once released");
    assert!(is_live(&server, "cam2"));
    drop((slow, other));
    server.shutdown().await;
}

#[tokio::test]
async fn on_publish_done_after_a_clean_stop_and_after_a_drop() {
    let mut backend = Backend::start().await;
    let server = server_with(&backend, |config| {
        config.webhooks.on_publish = String::new();
        config.webhooks.on_update = String::new();
    })
    .await;

    let mut publisher = connect(&server, KEY_A).await.unwrap();
    publisher
        .send_tags(&fixture_tags("cam-a.flv")[..20])
        .await
        .unwrap();
    publisher.finish().await.unwrap();
    let done = backend
        .wait("publish_done", |c| c.is("publish_done", KEY_A))
        .await;
    for (field, value) in [
        ("app", APP),
        ("addr", "127.0.0.1"),
        ("event", EVENT),
        ("camera", "cam1"),
    ] {
        assert_eq!(done.field(field), value, "{field}");
    }
    assert!(!is_live(&server, "cam1"), "sent once the camera is free");

    let publisher = connect(&server, KEY_B).await.unwrap();
    drop(publisher); // the cable is pulled: no FCUnpublish, no deleteStream
    backend
        .wait("publish_done", |c| c.is("publish_done", KEY_B))
        .await;

    // A refused publish was never live: no publish_done for it.
    let mut config_backend = Backend::start().await;
    config_backend.rule("publish", KEY_C, Rule::Status(403));
    let refusing = server_with(&config_backend, |config| {
        config.webhooks.on_update = String::new();
    })
    .await;
    assert_refused(connect(&refusing, KEY_C).await);
    let ok = connect(&refusing, KEY_A).await.unwrap();
    ok.finish().await.unwrap();
    config_backend
        .wait("publish_done", |c| c.is("publish_done", KEY_A))
        .await;
    assert!(
        !config_backend
            .drain()
            .iter()
            .any(|c| c.is("publish_done", KEY_C)),
        "no publish_done for a refused publish"
    );
    refusing.shutdown().await;
    server.shutdown().await;
}

/// Publishes the fixture in real time until the server closes the connection.
async fn publish_until_closed(server: &Server, key: &str) -> tokio::task::JoinHandle<()> {
    let options = PublishOptions {
        realtime: true,
        ..Default::default()
    };
    let mut publisher = Publisher::connect(server.rtmp_addr, APP, key, options)
        .await
        .expect("publish accepted");
    let tags = looped_tags("cam-a.flv", 30);
    tokio::spawn(async move {
        // Ends with an error once the server disconnects us; that is the point.
        let _ = publisher.send_tags(&tags).await;
    })
}

#[tokio::test]
async fn on_update_is_periodic_and_a_refusal_disconnects() {
    let mut backend = Backend::start().await;
    backend.rule("update_publish", KEY_B, Rule::Status(403));
    let server = server_with(&backend, |config| {
        config.webhooks.on_publish = String::new();
        config.webhooks.update_interval = Duration::from_secs(1);
    })
    .await;

    let _a = publish_until_closed(&server, KEY_A).await;
    let first = backend
        .wait("update", |c| c.is("update_publish", KEY_A))
        .await;
    let second = backend
        .wait("second update", |c| c.is("update_publish", KEY_A))
        .await;
    for call in [&first, &second] {
        assert_eq!(call.field("app"), APP);
        assert_eq!(call.field("camera"), "cam1");
        assert_eq!(call.field("addr"), "127.0.0.1");
    }
    let time = |c: &Call| c.field("time").parse::<u64>().unwrap();
    let stamp = |c: &Call| c.field("timestamp").parse::<u32>().unwrap();
    assert!(time(&second) > time(&first), "time counts up");
    assert!(
        stamp(&second) > stamp(&first),
        "timestamp follows the stream"
    );

    let b = publish_until_closed(&server, KEY_B).await;
    backend
        .wait("refused update", |c| c.is("update_publish", KEY_B))
        .await;
    until("cam2 disconnected", || !is_live(&server, "cam2")).await;
    backend
        .wait("publish_done", |c| c.is("publish_done", KEY_B))
        .await;
    tokio::time::timeout(Duration::from_secs(20), b)
        .await
        .expect("the publisher saw its connection close")
        .unwrap();
    assert!(is_live(&server, "cam1"), "the other publisher carries on");
    server.shutdown().await;
}

#[tokio::test]
async fn record_done_posts_the_path() {
    let mut backend = Backend::start().await;
    let mut config = test_config();
    backend.configure(&mut config);
    let hooks = Webhooks::new(&config.webhooks);
    hooks
        .record_done(EVENT, "program", Path::new("/rec/demo/program 1.mp4"))
        .await;
    let call = backend
        .wait("record_done", |c| c.get("call") == Some("record_done"))
        .await;
    assert_eq!(call.content_type, "application/x-www-form-urlencoded");
    assert_eq!(call.field("path"), "/rec/demo/program 1.mp4");
    assert_eq!(call.field("recorder"), "program");
    assert_eq!(call.field("event"), EVENT);
    assert_eq!(call.field("camera"), "");
    hooks
        .record_done(EVENT, "cam2", Path::new("/rec/demo/cam2.mp4"))
        .await;
    let call = backend
        .wait("record_done", |c| c.get("recorder") == Some("cam2"))
        .await;
    assert_eq!(call.field("camera"), "cam2");
    assert_eq!(call.field("path"), "/rec/demo/cam2.mp4");
}

/// A `MakeWriter` that keeps everything logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn logs_name_neither_keys_nor_url_secrets() {
    // A current-thread runtime: the server's tasks log through this thread's subscriber.
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("tally=debug")
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut backend = Backend::start().await;
    backend.rule("publish", KEY_B, Rule::Status(403));
    backend.rule("publish", KEY_C, Rule::Hang);
    backend.rule("publish", "alias", Rule::Redirect(KEY_A.into()));
    // Later calls carry the name the encoder sent, not the renamed one.
    backend.rule("update_publish", "alias", Rule::Status(500));
    let server = server_with(&backend, |config| {
        config.webhooks.timeout = Duration::from_millis(300);
        config.webhooks.update_interval = Duration::from_secs(1);
        config.webhooks.on_publish_done = "http://127.0.0.1:9/done?token=hunter2".into();
    })
    .await;
    assert_refused(connect(&server, KEY_B).await);
    assert_refused(connect(&server, KEY_C).await);
    let _a = publish_until_closed(&server, "alias").await;
    until("cam1 disconnected by on_update", || {
        !is_live(&server, "cam1")
    })
    .await;
    backend
        .wait("update", |c| c.is("update_publish", "alias"))
        .await;
    server.shutdown().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for needle in ["publish refused", "on_update refused", "renamed"] {
        assert!(text.contains(needle), "{needle:?} logged:\n{text}");
    }
    for secret in ["hunter2", "secret=", KEY_A, KEY_B, KEY_C] {
        assert!(
            !text.contains(secret),
            "{secret:?} leaked into the log:\n{text}"
        );
    }
}
