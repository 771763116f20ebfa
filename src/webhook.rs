//! nginx-rtmp-compatible webhooks (`on_publish`, `on_publish_done`, `on_update`,
//! `on_record_done`).
//!
//! Every call is an HTTP POST of an `application/x-www-form-urlencoded` body with
//! nginx-rtmp-module's field names (`ngx_rtmp_notify_module.c`, and
//! `ngx_rtmp_netcall_http_format_session` for the fields every call carries), plus tally's own
//! `event` and `camera`. Each call runs on the task of whoever needs it (a publisher's connection,
//! its update task, a recorder) with its own timeout; nothing here is shared but the HTTP client's
//! connection pool, so a slow or dead backend only delays the publish that is waiting for it.
//!
//! URLs may carry secrets in their query strings: logs name only scheme, host and path.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::config::{redact_key, WebhookConfig};

/// Webhook calls by `call` (`publish`, `publish_done`, `update_publish`, `record_done`) and
/// `result` (`allowed`, `refused`, `redirected`, `ok`, `error`, `timeout`).
pub const CALLS: &str = "tally_webhook_calls_total";

/// At most one failure line per call and this period; the others are counted and reported with
/// the next line.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Sends the configured notifications.
#[derive(Debug)]
pub struct Webhooks {
    /// The `[webhooks]` section.
    config: WebhookConfig,
    /// One HTTP client (and connection pool) for every call; redirects are not followed, since a
    /// 3xx answer to `on_publish` is itself the answer.
    http: reqwest::Client,
    /// Rate limit of failure logs, per call.
    throttle: Throttle,
}

/// One publish, in nginx-rtmp's terms: what every publish-related call sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publish {
    /// The RTMP application (`app`).
    pub app: String,
    /// The encoder's `flashVer` from `connect` (`flashver`).
    pub flashver: String,
    /// `swfUrl` from `connect` (`swfurl`), usually empty for encoders.
    pub swfurl: String,
    /// `tcUrl` from `connect` (`tcurl`): the URL the encoder was given.
    pub tcurl: String,
    /// `pageUrl` from `connect` (`pageurl`), usually empty for encoders.
    pub pageurl: String,
    /// The client's IP address, without port (`addr`).
    pub addr: String,
    /// The connection number (`clientid`), as in tally's logs (`conn=`).
    pub clientid: u64,
    /// The stream name as the encoder sent it, without `?args` (`name`): the stream key the
    /// backend authorizes. Later calls keep sending this name even after a redirect renamed the
    /// publish, as nginx-rtmp does.
    pub name: String,
    /// The query string the encoder appended to the name (`key?token=...`), appended raw to every
    /// body as nginx-rtmp does (pairs that would shadow a field of ours are dropped).
    pub args: String,
    /// The publish type (`type`): `live` from every encoder.
    pub kind: String,
    /// tally's event the stream key maps to (`event`); empty when the key is unknown.
    pub event: String,
    /// tally's camera id the stream key maps to (`camera`); empty when the key is unknown.
    pub camera: String,
}

/// The backend's answer to `on_publish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishDecision {
    /// 2xx (or no `on_publish` configured): publish under the name the encoder sent.
    Allow,
    /// 3xx with a `Location` that is not an `rtmp://` URL: publish under this name instead.
    Rename(String),
    /// Anything else, no answer within `webhooks.timeout`, or no connection: refuse. The reason
    /// is for the log line (no URL, no key).
    Refuse(String),
}

/// Whether the publisher may carry on after an `on_update` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// 2xx or 3xx, or the backend could not be reached (logged, rate-limited).
    Continue,
    /// The backend answered with this status outside 2xx and 3xx: disconnect, as nginx-rtmp does.
    Disconnect(u16),
}

/// What a `Location` header means to nginx-rtmp's `on_publish` (`ngx_rtmp_notify_publish_handle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Missing or empty: the publish goes on under its own name.
    None,
    /// An `rtmp://` URL: nginx-rtmp relays (pushes) the stream there and keeps the name. tally
    /// has no such relay; the publish goes on under its own name and a warning is logged.
    Relay,
    /// Anything else, taken verbatim as the new stream name (a bare name; an `http://` URL
    /// would become the name as is, exactly as nginx-rtmp does).
    Rename(String),
}

/// Parses a `Location` value the way nginx-rtmp does: surrounding white space is dropped, an
/// `rtmp://` prefix (any case) means a relay, and anything else is the new name, verbatim.
pub fn parse_location(value: &str) -> Location {
    let value = value.trim();
    if value.is_empty() {
        Location::None
    } else if value
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("rtmp://"))
    {
        Location::Relay
    } else {
        Location::Rename(value.to_string())
    }
}

/// A webhook URL as it may be logged: scheme, host, port and path, no credentials or query.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("?");
            match url.port() {
                Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
                None => format!("{}://{host}{}", url.scheme(), url.path()),
            }
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// Encodes one value for `application/x-www-form-urlencoded`: unreserved bytes as they are,
/// space as `+`, everything else percent-encoded.
fn encode(value: &str, out: &mut String) {
    for &byte in value.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
}

/// Decodes a form-encoded key (for comparison only; invalid escapes stay as they are).
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match value
                .get(i + 1..i + 3)
                .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds a form body: `fields` encoded in order, then the encoder's raw `args` (as nginx-rtmp
/// appends them), minus any pair whose name is one of `fields`' (so a query string cannot shadow
/// `name` or `call` for a backend that keeps the last value).
pub fn form(fields: &[(&str, &str)], args: &str) -> String {
    let mut body = String::new();
    for (name, value) in fields {
        if !body.is_empty() {
            body.push('&');
        }
        encode(name, &mut body);
        body.push('=');
        encode(value, &mut body);
    }
    for pair in args.split('&').filter(|p| !p.is_empty()) {
        let name = decode(pair.split('=').next().unwrap_or_default());
        if fields.iter().any(|(field, _)| *field == name) {
            continue;
        }
        if !body.is_empty() {
            body.push('&');
        }
        body.push_str(pair);
    }
    body
}

impl Publish {
    /// The fields of `ngx_rtmp_netcall_http_format_session`, which every call starts with.
    fn session_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("app", self.app.clone()),
            ("flashver", self.flashver.clone()),
            ("swfurl", self.swfurl.clone()),
            ("tcurl", self.tcurl.clone()),
            ("pageurl", self.pageurl.clone()),
            ("addr", self.addr.clone()),
            ("clientid", self.clientid.to_string()),
        ]
    }

    /// The `on_publish` body: session fields, `call=publish`, `name`, `type`, tally's `event`
    /// and `camera`, then the encoder's args.
    pub fn publish_form(&self) -> String {
        let mut fields = self.session_fields();
        fields.extend([
            ("call", "publish".into()),
            ("name", self.name.clone()),
            ("type", self.kind.clone()),
        ]);
        self.finish_form(fields)
    }

    /// The `on_publish_done` body (`call=publish_done`, as `ngx_rtmp_notify_done_create`).
    pub fn publish_done_form(&self) -> String {
        let mut fields = self.session_fields();
        fields.extend([("call", "publish_done".into()), ("name", self.name.clone())]);
        self.finish_form(fields)
    }

    /// The `on_update` body (`call=update_publish`, as `ngx_rtmp_notify_update_create`): `time`
    /// is whole seconds since the publish started, `timestamp` the last RTMP timestamp (ms)
    /// the encoder sent.
    pub fn update_form(&self, time: u64, timestamp: u32) -> String {
        let mut fields = self.session_fields();
        fields.extend([
            ("call", "update_publish".into()),
            ("time", time.to_string()),
            ("timestamp", timestamp.to_string()),
            ("name", self.name.clone()),
        ]);
        self.finish_form(fields)
    }

    fn finish_form(&self, mut fields: Vec<(&'static str, String)>) -> String {
        fields.extend([
            ("event", self.event.clone()),
            ("camera", self.camera.clone()),
        ]);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form(&fields, &self.args)
    }
}

/// The `on_record_done` body: `call=record_done`, `recorder` (`program` or the camera id),
/// `path`, tally's `event` and `camera` (the camera id, empty for the program). There is no
/// RTMP session behind a recording, so no session fields and no `name`.
pub fn record_done_form(event: &str, source: &str, path: &Path) -> String {
    let path = path.to_string_lossy();
    let camera = if source == crate::hls::PROGRAM {
        ""
    } else {
        source
    };
    form(
        &[
            ("call", "record_done"),
            ("recorder", source),
            ("path", &path),
            ("event", event),
            ("camera", camera),
        ],
        "",
    )
}

/// How one HTTP call ended.
#[derive(Debug)]
enum Answer {
    /// The status, and `Location` when there was one.
    Status(u16, Option<String>),
    /// No answer within `webhooks.timeout`.
    Timeout,
    /// No connection, or a broken answer; the message names no URL.
    Failed(String),
}

/// The `tally_webhook_calls_total` counter.
fn count(call: &'static str, result: &'static str) {
    metrics::counter!(CALLS, "call" => call, "result" => result).increment(1);
}

/// A reqwest error as a log-safe message: without the URL, with its causes.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

impl Webhooks {
    pub fn new(config: &WebhookConfig) -> Arc<Webhooks> {
        static DESCRIBED: std::sync::Once = std::sync::Once::new();
        DESCRIBED.call_once(|| {
            // The recorder must exist before the description is given to it.
            crate::telemetry::handle();
            metrics::describe_counter!(
                CALLS,
                "Webhook calls by call (publish, publish_done, update_publish, record_done) and \
                 result (allowed, refused, redirected, ok, error, timeout)."
            );
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "webhook HTTP client: falling back to defaults");
                reqwest::Client::new()
            });
        Arc::new(Webhooks {
            config: config.clone(),
            http,
            throttle: Throttle::default(),
        })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Whether `on_update` is configured (a live publisher then gets an update task).
    pub fn updates(&self) -> bool {
        !self.config.on_update.is_empty()
    }

    async fn post(&self, url: &str, body: String) -> Answer {
        let request = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .timeout(self.config.timeout);
        match request.send().await {
            Ok(response) => {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                Answer::Status(response.status().as_u16(), location)
            }
            Err(e) if e.is_timeout() => Answer::Timeout,
            Err(e) => Answer::Failed(describe(e)),
        }
    }

    /// Asks `on_publish` whether `publish` may go ahead. Without an `on_publish` URL every
    /// publish is allowed at once.
    pub async fn on_publish(&self, publish: &Publish) -> PublishDecision {
        let url = &self.config.on_publish;
        if url.is_empty() {
            return PublishDecision::Allow;
        }
        tracing::debug!(url = %redact_url(url), key = %redact_key(&publish.name), "on_publish");
        match self.post(url, publish.publish_form()).await {
            Answer::Status(status @ 200..=299, _) => {
                count("publish", "allowed");
                tracing::debug!(status, "on_publish allowed");
                PublishDecision::Allow
            }
            Answer::Status(status @ 300..=399, location) => {
                match parse_location(location.as_deref().unwrap_or_default()) {
                    Location::Rename(name) => {
                        count("publish", "redirected");
                        tracing::info!(
                            status,
                            from = %redact_key(&publish.name),
                            to = %redact_key(&name),
                            "on_publish renamed the stream"
                        );
                        PublishDecision::Rename(name)
                    }
                    Location::Relay => {
                        count("publish", "allowed");
                        tracing::warn!(
                            status,
                            "on_publish redirected to an rtmp:// URL; tally does not relay \
                             (use the restream API), publishing under the original name"
                        );
                        PublishDecision::Allow
                    }
                    Location::None => {
                        count("publish", "allowed");
                        PublishDecision::Allow
                    }
                }
            }
            Answer::Status(status, _) => {
                count("publish", "refused");
                PublishDecision::Refuse(format!("on_publish answered HTTP {status}"))
            }
            Answer::Timeout => {
                count("publish", "timeout");
                PublishDecision::Refuse(format!(
                    "on_publish did not answer within {:?} ({})",
                    self.config.timeout,
                    redact_url(url)
                ))
            }
            Answer::Failed(error) => {
                count("publish", "error");
                PublishDecision::Refuse(format!("on_publish failed ({}): {error}", redact_url(url)))
            }
        }
    }

    /// `on_publish_done`: the publisher stopped, cleanly or not. Failures are logged only.
    pub async fn publish_done(&self, publish: &Publish) {
        let url = &self.config.on_publish_done;
        if url.is_empty() {
            return;
        }
        let answer = self.post(url, publish.publish_done_form()).await;
        self.notified("publish_done", url, answer);
    }

    /// `on_update` for a live publisher `time` seconds after it started, its last RTMP timestamp
    /// being `timestamp`. As nginx-rtmp (without `notify_update_strict`), 2xx and 3xx keep it
    /// going and another status disconnects it; unlike nginx-rtmp, a backend that cannot be
    /// reached or does not answer in time is only logged (rate-limited), so a dead backend does
    /// not take every live stream down with it.
    pub async fn update(&self, publish: &Publish, time: u64, timestamp: u32) -> UpdateOutcome {
        let url = &self.config.on_update;
        if url.is_empty() {
            return UpdateOutcome::Continue;
        }
        match self.post(url, publish.update_form(time, timestamp)).await {
            Answer::Status(200..=399, _) => {
                count("update_publish", "ok");
                UpdateOutcome::Continue
            }
            Answer::Status(status, _) => {
                count("update_publish", "refused");
                UpdateOutcome::Disconnect(status)
            }
            answer => {
                self.notified("update_publish", url, answer);
                UpdateOutcome::Continue
            }
        }
    }

    /// `on_record_done`: a recording file was closed. `source` is `program` or a camera id.
    /// Failures are logged only.
    pub async fn record_done(&self, event: &str, source: &str, path: &Path) {
        let url = &self.config.on_record_done;
        if url.is_empty() {
            return;
        }
        let answer = self.post(url, record_done_form(event, source, path)).await;
        self.notified("record_done", url, answer);
    }

    /// Counts and (rate-limited) logs the outcome of a notification nobody waits on.
    fn notified(&self, call: &'static str, url: &str, answer: Answer) {
        let problem = match answer {
            Answer::Status(200..=299, _) => {
                count(call, "ok");
                return;
            }
            Answer::Status(status, _) => {
                count(call, "error");
                format!("answered HTTP {status}")
            }
            Answer::Timeout => {
                count(call, "timeout");
                format!("did not answer within {:?}", self.config.timeout)
            }
            Answer::Failed(error) => {
                count(call, "error");
                error
            }
        };
        if let Some(suppressed) = self.throttle.allow(call) {
            tracing::warn!(
                call,
                url = %redact_url(url),
                suppressed,
                "webhook failed: {problem}"
            );
        }
    }
}

/// Failure-log rate limit, per call name.
#[derive(Debug, Default)]
struct Throttle {
    /// When each call last logged, and how many failures were not logged since.
    state: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Throttle {
    /// `Some(failures not logged since the last line)` when this one may be logged.
    fn allow(&self, call: &'static str) -> Option<u64> {
        let mut state = self.state.lock().expect("throttle lock");
        let now = Instant::now();
        match state.get_mut(call) {
            Some((last, suppressed)) if now.duration_since(*last) < LOG_EVERY => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                state.insert(call, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish() -> Publish {
        Publish {
            app: "live".into(),
            flashver: "FMLE/3.0 (compatible; obs)".into(),
            swfurl: String::new(),
            tcurl: "rtmp://example.com:1935/live".into(),
            pageurl: String::new(),
            addr: "203.0.113.7".into(),
            clientid: 42,
            name: "key one".into(),
            args: "token=a%2Bb&name=evil&x".into(),
            kind: "live".into(),
            event: "demo".into(),
            camera: "cam1".into(),
        }
    }

    #[test]
    fn publish_form_has_nginx_fields_in_order() {
        assert_eq!(
            publish().publish_form(),
            "app=live&flashver=FMLE%2F3.0+%28compatible%3B+obs%29&swfurl=\
             &tcurl=rtmp%3A%2F%2Fexample.com%3A1935%2Flive&pageurl=&addr=203.0.113.7\
             &clientid=42&call=publish&name=key+one&type=live&event=demo&camera=cam1\
             &token=a%2Bb&x"
        );
    }

    #[test]
    fn done_and_update_forms() {
        let done = publish().publish_done_form();
        assert!(done.contains("&call=publish_done&name=key+one&event=demo&camera=cam1"));
        assert!(!done.contains("type="));
        let update = publish().update_form(31, 30_040);
        assert!(
            update.contains("&call=update_publish&time=31&timestamp=30040&name=key+one&"),
            "{update}"
        );
    }

    #[test]
    fn record_done_form_names_recorder_and_path() {
        assert_eq!(
            record_done_form("demo", "program", Path::new("/rec/demo program.mp4")),
            "call=record_done&recorder=program&path=%2Frec%2Fdemo+program.mp4&event=demo&camera="
        );
        assert!(record_done_form("demo", "cam2", Path::new("a.mp4")).ends_with("&camera=cam2"));
    }

    #[test]
    fn args_cannot_shadow_fields() {
        assert_eq!(
            form(&[("name", "k")], "n%61me=x&+call=y&ok=1"),
            "name=k&+call=y&ok=1"
        );
        assert_eq!(form(&[("a", "1")], ""), "a=1");
        assert_eq!(form(&[], "&&t=1&"), "t=1");
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%zz+%41"), "%zz A");
        assert_eq!(decode("%+1%é"), "% 1%é");
    }

    #[test]
    fn encodes_utf8_and_reserved_bytes() {
        let mut out = String::new();
        encode("é&=?/ +~", &mut out);
        assert_eq!(out, "%C3%A9%26%3D%3F%2F+%2B%7E");
    }

    #[test]
    fn location_as_nginx_rtmp_reads_it() {
        assert_eq!(parse_location(""), Location::None);
        assert_eq!(parse_location("  \t"), Location::None);
        assert_eq!(
            parse_location(" other-key "),
            Location::Rename("other-key".into())
        );
        assert_eq!(
            parse_location("RTMP://relay.example/live/x"),
            Location::Relay
        );
        assert_eq!(parse_location("rtmp://relay.example"), Location::Relay);
        // Not parsed as a URL: the whole value is the new name, as in nginx-rtmp.
        assert_eq!(
            parse_location("http://backend/live/key?x=1"),
            Location::Rename("http://backend/live/key?x=1".into())
        );
        assert_eq!(
            parse_location("/live/key"),
            Location::Rename("/live/key".into())
        );
        assert_eq!(
            parse_location("rtmp:/x"),
            Location::Rename("rtmp:/x".into())
        );
    }

    #[test]
    fn urls_are_logged_without_secrets() {
        assert_eq!(
            redact_url("https://user:pw@hooks.example.com/rtmp/publish?secret=s3"),
            "https://hooks.example.com/rtmp/publish"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8080/p?k=v#f"),
            "http://127.0.0.1:8080/p"
        );
        assert_eq!(redact_url("not a url"), "(invalid URL)");
    }

    #[test]
    fn throttle_logs_first_then_counts() {
        let throttle = Throttle::default();
        assert_eq!(throttle.allow("update_publish"), Some(0));
        assert_eq!(throttle.allow("update_publish"), None);
        assert_eq!(throttle.allow("update_publish"), None);
        assert_eq!(throttle.allow("record_done"), Some(0));
        let mut state = throttle.state.lock().unwrap();
        state.get_mut("update_publish").unwrap().0 -= LOG_EVERY;
        drop(state);
        assert_eq!(throttle.allow("update_publish"), Some(2));
    }

    #[tokio::test]
    async fn without_urls_everything_is_allowed_and_nothing_is_sent() {
        let hooks = Webhooks::new(&WebhookConfig::default());
        assert_eq!(hooks.on_publish(&publish()).await, PublishDecision::Allow);
        assert_eq!(
            hooks.update(&publish(), 1, 2).await,
            UpdateOutcome::Continue
        );
        hooks.publish_done(&publish()).await;
        hooks
            .record_done("demo", "program", Path::new("x.mp4"))
            .await;
        assert!(!hooks.updates());
    }
}
