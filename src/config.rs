//! Configuration: defaults, then the TOML file, then `TALLY_*` environment variables, then one
//! `validate()` whose messages name the offending key.

use std::{net::SocketAddr, path::Path, path::PathBuf, time::Duration};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub rtmp: RtmpConfig,
    pub http: HttpConfig,
    pub control: ControlConfig,
    pub hls: HlsConfig,
    pub program: ProgramConfig,
    pub store: StoreConfig,
    pub record: RecordConfig,
    pub webhooks: WebhookConfig,
    pub restream: RestreamConfig,
    pub events: Vec<EventConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    /// Where encoders connect.
    pub listen: SocketAddr,
    /// The application name in `rtmp://HOST/<app>/<stream_key>`; any other is refused at connect.
    pub app: String,
    /// Upper bound on simultaneous RTMP connections, so a flood cannot exhaust memory.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is dropped (this also bounds the handshake).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Public playback listener.
    pub listen: SocketAddr,
    /// Value of `Access-Control-Allow-Origin` on playback responses.
    pub cors_origin: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Operator listener; keep it on loopback or a private network.
    pub listen: SocketAddr,
    /// Bearer token every control request must carry.
    pub token: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// Segments are cut at the first keyframe at or after this much media.
    #[serde(with = "humantime_serde")]
    pub target_duration: Duration,
    /// Segments listed in a live playlist.
    pub window: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProgramConfig {
    /// When a cut writes EXT-X-DISCONTINUITY: `never` (plays best in hls.js), `on_config_change`
    /// or `always` (for strict players).
    pub discontinuity: crate::program::splice::DiscontinuityPolicy,
    /// The active camera is failed over after sending nothing for this long.
    #[serde(with = "humantime_serde")]
    pub failover_timeout: Duration,
    /// A switch whose target sends no keyframe within this long is cancelled (HTTP 504).
    #[serde(with = "humantime_serde")]
    pub switch_timeout: Duration,
}

impl Default for ProgramConfig {
    fn default() -> Self {
        ProgramConfig {
            discontinuity: crate::program::splice::DiscontinuityPolicy::Never,
            failover_timeout: Duration::from_secs(1),
            switch_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordConfig {
    /// Folder recordings are written to (created if missing).
    pub dir: PathBuf,
    /// Also record every camera, not only the program.
    pub cameras: bool,
    /// Start recording when an event goes live.
    pub auto_start: bool,
    /// fMP4 fragment length: the most media a crash or power cut can lose.
    #[serde(with = "humantime_serde")]
    pub fragment: Duration,
    /// Start a new file after this much media.
    #[serde(with = "humantime_serde")]
    pub split_duration: Duration,
    /// Start a new file after this many megabytes (MiB).
    pub split_size_mb: u64,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            dir: "recordings".into(),
            cameras: false,
            auto_start: false,
            fragment: Duration::from_secs(1),
            split_duration: Duration::from_secs(3600),
            split_size_mb: 4096,
        }
    }
}

/// nginx-rtmp-compatible notifications; an empty URL turns that call off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Asked before a publish: 2xx allows, 3xx with `Location` renames the key, anything else
    /// (or no answer within `timeout`) refuses.
    pub on_publish: String,
    pub on_publish_done: String,
    /// Called every `update_interval` for each live publisher.
    pub on_update: String,
    pub on_record_done: String,
    #[serde(with = "humantime_serde")]
    pub update_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            on_publish: String::new(),
            on_publish_done: String::new(),
            on_update: String::new(),
            on_record_done: String::new(),
            update_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestreamConfig {
    /// Reconnect backoff of a failing destination: from `reconnect_min`, doubling, capped at
    /// `reconnect_max`.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

impl Default for RestreamConfig {
    fn default() -> Self {
        RestreamConfig {
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite database holding events, cameras and keys.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub id: String,
    pub name: String,
    pub stream_key: String,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: "0.0.0.0:1935".parse().expect("literal address"),
            app: "live".into(),
            max_connections: 256,
            timeout: Duration::from_secs(10),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:8080".parse().expect("literal address"),
            cors_origin: "*".into(),
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: "127.0.0.1:8081".parse().expect("literal address"),
            token: "change-me".into(),
        }
    }
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            target_duration: Duration::from_secs(2),
            window: 6,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: "data/tally.db".into(),
        }
    }
}

/// Every environment variable that overrides a key, with the key it overrides.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("TALLY_RTMP_LISTEN", "rtmp.listen"),
    ("TALLY_RTMP_APP", "rtmp.app"),
    ("TALLY_HTTP_LISTEN", "http.listen"),
    ("TALLY_HTTP_CORS_ORIGIN", "http.cors_origin"),
    ("TALLY_CONTROL_LISTEN", "control.listen"),
    ("TALLY_CONTROL_TOKEN", "control.token"),
    ("TALLY_HLS_TARGET_DURATION", "hls.target_duration"),
    ("TALLY_HLS_WINDOW", "hls.window"),
    ("TALLY_PROGRAM_DISCONTINUITY", "program.discontinuity"),
    ("TALLY_STORE_PATH", "store.path"),
    ("TALLY_RECORD_DIR", "record.dir"),
];

impl Config {
    /// Loads `path` (a missing file is an error: the operator named it), applies the environment
    /// and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Applies `TALLY_*` overrides read through `lookup` (a parameter so tests need no process env).
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (var, key) in ENV_OVERRIDES {
            let Some(value) = lookup(var) else { continue };
            let bad = |e: &dyn std::fmt::Display| invalid(key, format!("from {var}: {e}"));
            match *key {
                "rtmp.listen" => self.rtmp.listen = value.parse().map_err(|e| bad(&e))?,
                "rtmp.app" => self.rtmp.app = value,
                "http.listen" => self.http.listen = value.parse().map_err(|e| bad(&e))?,
                "http.cors_origin" => self.http.cors_origin = value,
                "control.listen" => self.control.listen = value.parse().map_err(|e| bad(&e))?,
                "control.token" => self.control.token = value,
                "hls.target_duration" => {
                    self.hls.target_duration =
                        humantime::parse_duration(&value).map_err(|e| bad(&e))?
                }
                "hls.window" => self.hls.window = value.parse().map_err(|e| bad(&e))?,
                "program.discontinuity" => {
                    self.program.discontinuity =
                        serde_json::from_value(serde_json::Value::String(value.clone()))
                            .map_err(|_| bad(&"expected never, on_config_change or always"))?
                }
                "store.path" => self.store.path = value.into(),
                "record.dir" => self.record.dir = value.into(),
                _ => unreachable!("every override names a handled key"),
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name_ok(&self.rtmp.app) {
            return Err(invalid("rtmp.app", "must be 1-64 of [A-Za-z0-9_-]"));
        }
        if self.rtmp.max_connections == 0 {
            return Err(invalid("rtmp.max_connections", "must be at least 1"));
        }
        let target = self.hls.target_duration;
        if target < Duration::from_millis(500) || target > Duration::from_secs(20) {
            return Err(invalid(
                "hls.target_duration",
                "must be between 500ms and 20s",
            ));
        }
        if !(2..=100).contains(&self.hls.window) {
            return Err(invalid("hls.window", "must be between 2 and 100 segments"));
        }
        if self.control.token.len() < 8 {
            return Err(invalid("control.token", "must be at least 8 characters"));
        }
        if self.http.cors_origin.is_empty() || self.http.cors_origin.contains(['\r', '\n']) {
            return Err(invalid("http.cors_origin", "must be a single header value"));
        }
        let failover = self.program.failover_timeout;
        if failover < Duration::from_millis(100) || failover > Duration::from_secs(60) {
            return Err(invalid(
                "program.failover_timeout",
                "must be between 100ms and 60s",
            ));
        }
        let switch = self.program.switch_timeout;
        if switch < Duration::from_secs(1) || switch > Duration::from_secs(120) {
            return Err(invalid(
                "program.switch_timeout",
                "must be between 1s and 120s",
            ));
        }
        let record = &self.record;
        if record.fragment < Duration::from_millis(200) || record.fragment > Duration::from_secs(10)
        {
            return Err(invalid("record.fragment", "must be between 200ms and 10s"));
        }
        if record.split_duration < Duration::from_secs(10) {
            return Err(invalid("record.split_duration", "must be at least 10s"));
        }
        if record.split_size_mb == 0 {
            return Err(invalid("record.split_size_mb", "must be at least 1"));
        }
        if record.dir.as_os_str().is_empty() {
            return Err(invalid("record.dir", "must not be empty"));
        }
        let hooks = &self.webhooks;
        for (key, url) in [
            ("webhooks.on_publish", &hooks.on_publish),
            ("webhooks.on_publish_done", &hooks.on_publish_done),
            ("webhooks.on_update", &hooks.on_update),
            ("webhooks.on_record_done", &hooks.on_record_done),
        ] {
            if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(key, "must be an http:// or https:// URL, or empty"));
            }
        }
        if hooks.timeout.is_zero() || hooks.timeout > Duration::from_secs(60) {
            return Err(invalid("webhooks.timeout", "must be between 1ms and 60s"));
        }
        if hooks.update_interval < Duration::from_secs(1) {
            return Err(invalid("webhooks.update_interval", "must be at least 1s"));
        }
        let restream = &self.restream;
        if restream.reconnect_min.is_zero() || restream.reconnect_min > restream.reconnect_max {
            return Err(invalid(
                "restream.reconnect_min",
                "must be above zero and at most restream.reconnect_max",
            ));
        }
        if self.store.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        let mut keys = std::collections::HashSet::new();
        let mut events = std::collections::HashSet::new();
        for (i, event) in self.events.iter().enumerate() {
            if !name_ok(&event.id) {
                return Err(invalid(
                    &format!("events[{i}].id"),
                    "must be 1-64 of [A-Za-z0-9_-]",
                ));
            }
            if !events.insert(&event.id) {
                return Err(invalid(
                    &format!("events[{i}].id"),
                    format!("duplicate event id {:?}", event.id),
                ));
            }
            let mut cameras = std::collections::HashSet::new();
            for (j, camera) in event.cameras.iter().enumerate() {
                let key = format!("events[{i}].cameras[{j}]");
                if !name_ok(&camera.id) || camera.id == crate::hls::PROGRAM {
                    return Err(invalid(
                        &format!("{key}.id"),
                        "must be 1-64 of [A-Za-z0-9_-] and not \"program\"",
                    ));
                }
                if !cameras.insert(&camera.id) {
                    return Err(invalid(
                        &format!("{key}.id"),
                        format!("duplicate camera id {:?}", camera.id),
                    ));
                }
                if camera.stream_key.len() < 8 || !name_ok(&camera.stream_key) {
                    return Err(invalid(
                        &format!("{key}.stream_key"),
                        "must be 8-64 of [A-Za-z0-9_-]",
                    ));
                }
                if !keys.insert(&camera.stream_key) {
                    return Err(invalid(
                        &format!("{key}.stream_key"),
                        "is used by another camera",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A stream key as it may appear in logs: enough to tell keys apart, never enough to publish.
pub fn redact_key(key: &str) -> String {
    let prefix: String = key.chars().take(4).collect();
    format!("{prefix}…({} chars)", key.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_config_is_valid() {
        let text = include_str!("../config.toml");
        let config = Config::from_toml(text).expect("config.toml parses");
        config.validate().expect("config.toml validates");
        assert_eq!(config.events.len(), 1);
        assert_eq!(config.events[0].cameras.len(), 2);
    }

    #[test]
    fn defaults_apply_to_missing_keys() {
        let config = Config::from_toml("[hls]\nwindow = 4\n").unwrap();
        assert_eq!(config.hls.window, 4);
        assert_eq!(config.hls.target_duration, Duration::from_secs(2));
        assert_eq!(config.rtmp.app, "live");
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut config = Config::from_toml("[hls]\ntarget_duration = \"50ms\"\n").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("hls.target_duration:"), "{err}");
        config.hls.target_duration = Duration::from_secs(2);
        let err = config
            .apply_env(|v| (v == "TALLY_HLS_WINDOW").then(|| "many".to_string()))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("hls.window: from TALLY_HLS_WINDOW"),
            "{err}"
        );
        assert!(Config::from_toml("[hls]\nbogus = 1\n").is_err());
    }

    #[test]
    fn env_overrides_the_file() {
        let mut config = Config::default();
        config
            .apply_env(|v| match v {
                "TALLY_CONTROL_TOKEN" => Some("from-the-env".into()),
                "TALLY_HLS_TARGET_DURATION" => Some("4s".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.control.token, "from-the-env");
        assert_eq!(config.hls.target_duration, Duration::from_secs(4));
    }

    #[test]
    fn program_keys() {
        use crate::program::splice::DiscontinuityPolicy;
        let mut config = Config::from_toml(
            "[program]\ndiscontinuity = \"on_config_change\"\nfailover_timeout = \"500ms\"\n",
        )
        .unwrap();
        assert_eq!(
            config.program.discontinuity,
            DiscontinuityPolicy::OnConfigChange
        );
        assert_eq!(config.program.failover_timeout, Duration::from_millis(500));
        config
            .apply_env(|v| (v == "TALLY_PROGRAM_DISCONTINUITY").then(|| "always".to_string()))
            .unwrap();
        assert_eq!(config.program.discontinuity, DiscontinuityPolicy::Always);
        let err = config
            .apply_env(|v| (v == "TALLY_PROGRAM_DISCONTINUITY").then(|| "sometimes".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("program.discontinuity:"), "{err}");
        config.program.switch_timeout = Duration::from_millis(10);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("program.switch_timeout:"), "{err}");
        assert!(Config::from_toml("[program]\ndiscontinuity = \"maybe\"\n").is_err());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let text = r#"
[[events]]
id = "e"
name = "E"
[[events.cameras]]
id = "a"
name = "A"
stream_key = "same-key-123"
[[events.cameras]]
id = "b"
name = "B"
stream_key = "same-key-123"
"#;
        let err = Config::from_toml(text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("events[0].cameras[1].stream_key"), "{err}");
    }

    #[test]
    fn redaction_hides_the_key() {
        let shown = redact_key("demo-cam1-key");
        assert!(!shown.contains("cam1-key"));
        assert!(shown.starts_with("demo"));
    }
}
