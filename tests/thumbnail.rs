//! The thumbnail route end to end: publish a fixture over RTMP, fetch the JPEG of the camera's
//! newest keyframe from the control port, and the errors around it.

mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use support::*;
use tally::flv::{self, Tag, TagKind, VideoTag};
use tally::rtmp::client::{PublishOptions, Publisher};
use tally::Server;

const TOKEN: &str = "test-token-123";

struct Answer {
    status: u16,
    content_type: Option<String>,
    cache_control: Option<String>,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        serde_json::from_slice(&self.body).expect("a JSON error body")
    }

    fn jpeg_size(&self) -> (u32, u32) {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(self.cache_control.as_deref(), Some("no-cache"));
        let image = image::load_from_memory_with_format(&self.body, image::ImageFormat::Jpeg)
            .expect("the body decodes as a JPEG");
        (image.width(), image.height())
    }
}

async fn thumbnail(server: &Server, camera: &str, query: &str, token: Option<&str>) -> Answer {
    let url = format!(
        "http://{}/api/events/{EVENT}/cameras/{camera}/thumbnail.jpg{query}",
        server.control_addr
    );
    let mut request = reqwest::Client::new().get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_string())
    };
    Answer {
        status: response.status().as_u16(),
        content_type: header(reqwest::header::CONTENT_TYPE),
        cache_control: header(reqwest::header::CACHE_CONTROL),
        body: response.bytes().await.expect("body"),
    }
}

/// Polls until the camera has a keyframe (the route stops answering 404); panics after 20 s.
async fn wait_for_keyframe(server: &Server, camera: &str) -> Answer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = thumbnail(server, camera, "", Some(TOKEN)).await;
        if answer.status != 404 {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{camera} never got a keyframe"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish(server: &Server, key: &str, tags: &[Tag]) {
    let mut publisher = Publisher::connect(server.rtmp_addr, APP, key, PublishOptions::default())
        .await
        .expect("publish accepted");
    publisher.send_tags(tags).await.expect("tags sent");
    publisher.finish().await.expect("clean stop");
}

#[tokio::test]
async fn thumbnail_of_the_newest_keyframe() {
    let server = start().await;

    // Before anything is published: 404 with a JSON error; the token is checked first.
    let answer = thumbnail(&server, "cam2", "", Some(TOKEN)).await;
    assert_eq!(answer.status, 404);
    assert!(answer.json()["error"]
        .as_str()
        .unwrap()
        .contains("keyframe"));
    let answer = thumbnail(&server, "cam2", "", None).await;
    assert_eq!(answer.status, 401);
    assert!(answer.json()["error"].is_string());
    let answer = thumbnail(&server, "cam2", "", Some("test-token-124")).await;
    assert_eq!(answer.status, 401);
    let answer = thumbnail(&server, "nope", "", Some(TOKEN)).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["error"], "no such camera");

    publish(&server, KEY_A, &fixture_tags("cam-a.flv")).await;
    // Kept after the publisher left.
    let full = wait_for_keyframe(&server, "cam1").await;
    assert_eq!(full.jpeg_size(), (320, 240));
    let half = thumbnail(&server, "cam1", "?width=160", Some(TOKEN)).await;
    assert_eq!(half.jpeg_size(), (160, 120));
    // Never scaled up; clamped to 16..=3840.
    let wide = thumbnail(&server, "cam1", "?width=99999999999", Some(TOKEN)).await;
    assert_eq!(wide.jpeg_size(), (320, 240));
    assert_eq!(
        wide.body, full.body,
        "the same keyframe gives the same JPEG"
    );
    let tiny = thumbnail(&server, "cam1", "?width=1", Some(TOKEN)).await;
    assert_eq!(tiny.jpeg_size(), (16, 12));

    for bad in ["?width=abc", "?width=-5", "?width=", "?width=1.5"] {
        let answer = thumbnail(&server, "cam1", bad, Some(TOKEN)).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert!(answer.json()["error"].as_str().unwrap().contains("width"));
    }
    let answer = thumbnail(&server, "cam1", "?width=160", None).await;
    assert_eq!(answer.status, 401);

    server.shutdown().await;
}

/// The fixture's metadata and sequence header, then its first keyframe with the IDR slice
/// replaced by garbage: ingest takes it, the decoder refuses it.
fn corrupt_keyframe_tags() -> Vec<Tag> {
    let mut tags = Vec::new();
    for tag in fixture_tags("cam-a.flv") {
        match (tag.kind, flv::parse_video(&tag.body)) {
            (TagKind::Script, _) | (_, Ok(VideoTag::AvcSequenceHeader(_))) => tags.push(tag),
            (_, Ok(VideoTag::AvcNalu { keyframe: true, .. })) => {
                // FLV AVC header (keyframe, NALU, composition time 0), then one NAL unit.
                let mut body = vec![0x17, 1, 0, 0, 0, 0, 0, 0, 12, 0x65];
                body.extend_from_slice(&[0xff; 11]);
                tags.push(Tag {
                    body: Bytes::from(body),
                    ..tag
                });
                break;
            }
            _ => {}
        }
    }
    tags
}

#[tokio::test]
async fn an_undecodable_keyframe_is_a_422_and_ingest_carries_on() {
    let server = start().await;
    let mut publisher = Publisher::connect(server.rtmp_addr, APP, KEY_C, PublishOptions::default())
        .await
        .expect("publish accepted");
    publisher
        .send_tags(&corrupt_keyframe_tags())
        .await
        .expect("tags sent");
    let answer = wait_for_keyframe(&server, "cam3").await;
    assert_eq!(answer.status, 422);
    let message = answer.json()["error"].as_str().unwrap().to_string();
    assert!(message.contains("decode"), "{message}");

    // The same session carries on, and its next good keyframe gives a picture.
    let good: Vec<Tag> = fixture_tags("cam-a.flv")
        .into_iter()
        .map(|tag| Tag {
            timestamp_ms: tag.timestamp_ms + 100,
            ..tag
        })
        .collect();
    publisher.send_tags(&good).await.expect("tags sent");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = thumbnail(&server, "cam3", "?width=32", Some(TOKEN)).await;
        if answer.status == 200 {
            assert_eq!(answer.jpeg_size(), (32, 24));
            break;
        }
        assert_eq!(answer.status, 422);
        assert!(tokio::time::Instant::now() < deadline, "no good keyframe");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publisher.finish().await.expect("clean stop");
    server.shutdown().await;
}
