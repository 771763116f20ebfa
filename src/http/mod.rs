//! Playback over HTTP: live playlists, init segments and media segments, straight from memory.
//!
//! - `GET /hls/{event}/{rendition}.m3u8`: the live playlist (a camera id, or `program` later).
//! - `GET /hls/{event}/{rendition}/{file}`: an init (`…-initN.mp4`) or media (`…-N.m4s`) segment,
//!   with HEAD and single-range `Range` support.
//!
//! Segments are immutable and cached for a year; playlists for at most half a segment.
//!
//! Every answer of these two routes is counted in `tally_hls_requests_total{kind,status}` and its
//! body length in `tally_hls_bytes_total{kind}` (the bytes handed to the connection, 0 for HEAD).

use std::sync::Arc;

use axum::{
    body::{Body, HttpBody},
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use bytes::Bytes;

use crate::hls::store::{Rendition, Resource};
use crate::registry::Registry;

pub mod range;

use range::parse_range;

pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
pub const INIT_TYPE: &str = "video/mp4";
pub const SEGMENT_TYPE: &str = "video/iso.segment";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[derive(Debug, Clone)]
pub struct Playback {
    pub registry: Arc<Registry>,
    /// `Access-Control-Allow-Origin` value.
    pub cors_origin: HeaderValue,
    /// `Cache-Control` for playlists: at most half a target duration.
    pub playlist_cache: HeaderValue,
}

impl Playback {
    pub fn new(registry: Arc<Registry>, cors_origin: &str, target: std::time::Duration) -> Self {
        let half = target.as_secs() / 2;
        let playlist_cache = if half == 0 {
            "no-cache".to_string()
        } else {
            format!("public, max-age={half}")
        };
        Playback {
            registry,
            cors_origin: HeaderValue::from_str(cors_origin)
                .unwrap_or(HeaderValue::from_static("*")),
            playlist_cache: HeaderValue::from_str(&playlist_cache).expect("ascii"),
        }
    }
}

pub fn router(playback: Playback) -> Router {
    Router::new()
        .route("/hls/{event}/{file}", get(playlist))
        .route("/hls/{event}/{rendition}/{file}", get(media))
        .fallback(|| async { not_found("no such resource") })
        .with_state(playback)
}

fn not_found(why: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        format!("{why}\n"),
    )
        .into_response()
}

fn with_common(mut response: Response, playback: &Playback, cache: HeaderValue) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        playback.cors_origin.clone(),
    );
    headers.insert(header::CACHE_CONTROL, cache);
    response
}

fn lookup(playback: &Playback, event: &str, name: &str) -> Option<Arc<Rendition>> {
    playback.registry.rendition_of(event, name)
}

/// Counts a playback response of `kind` (`playlist`, `init` or `segment`) and returns it.
fn counted(kind: &'static str, method: &Method, response: Response) -> Response {
    let bytes = if method == Method::HEAD {
        0
    } else {
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .or_else(|| response.body().size_hint().exact())
            .unwrap_or(0)
    };
    crate::telemetry::hls_response(kind, response.status().as_u16(), bytes);
    response
}

async fn playlist(
    State(playback): State<Playback>,
    Path((event, file)): Path<(String, String)>,
    method: Method,
) -> Response {
    counted(
        "playlist",
        &method,
        playlist_response(&playback, &event, &file),
    )
}

fn playlist_response(playback: &Playback, event: &str, file: &str) -> Response {
    let Some(name) = file.strip_suffix(".m3u8") else {
        return not_found("no such playlist");
    };
    let Some(rendition) = lookup(playback, event, name) else {
        return not_found("no such playlist");
    };
    let snapshot = rendition.snapshot();
    if snapshot.playlist.is_empty() {
        return not_found("not live yet: no segment has been produced");
    }
    let response = ([(header::CONTENT_TYPE, PLAYLIST_TYPE)], snapshot.playlist).into_response();
    let cache = playback.playlist_cache.clone();
    with_common(response, playback, cache)
}

async fn media(
    State(playback): State<Playback>,
    Path((event, name, file)): Path<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(resource) = lookup(&playback, &event, &name).and_then(|r| r.resolve(&file)) else {
        let kind = if file.ends_with(".mp4") {
            "init"
        } else {
            "segment"
        };
        return counted(
            kind,
            &method,
            not_found("no such segment (it may have expired)"),
        );
    };
    let kind = match resource {
        Resource::Init(_) => "init",
        Resource::Segment(_) => "segment",
    };
    let (content_type, chunks): (&str, Vec<Bytes>) = match resource {
        Resource::Init(bytes) => (INIT_TYPE, vec![bytes]),
        Resource::Segment(segment) => (SEGMENT_TYPE, segment.chunks().cloned().collect()),
    };
    let response = ranged(content_type, chunks, headers.get(header::RANGE));
    let response = with_common(response, &playback, HeaderValue::from_static(IMMUTABLE));
    counted(kind, &method, response)
}

/// Slices `start..end` out of a list of chunks without copying.
fn slice_chunks(chunks: &[Bytes], start: u64, end: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    for chunk in chunks {
        let (chunk_start, chunk_end) = (offset, offset + chunk.len() as u64);
        offset = chunk_end;
        if chunk_end <= start || chunk_start >= end {
            continue;
        }
        let from = start.saturating_sub(chunk_start) as usize;
        let to = (end.min(chunk_end) - chunk_start) as usize;
        out.push(chunk.slice(from..to));
    }
    out
}

fn body_of(chunks: Vec<Bytes>) -> Body {
    match chunks.len() {
        1 => Body::from(chunks.into_iter().next().expect("one chunk")),
        _ => Body::from_stream(futures_util::stream::iter(
            chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
        )),
    }
}

fn ranged(content_type: &'static str, chunks: Vec<Bytes>, range: Option<&HeaderValue>) -> Response {
    let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let range = range
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len));
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT_RANGES, "bytes");
    let response = match range {
        None => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, len)
            .body(body_of(chunks)),
        Some(Ok((start, end))) => {
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{len}", end - 1),
                )
                .header(header::CONTENT_LENGTH, end - start);
            builder.body(body_of(slice_chunks(&chunks, start, end)))
        }
        Some(Err(())) => builder
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{len}"))
            .body(Body::empty()),
    };
    response.unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_across_chunks_without_copying() {
        let chunks = vec![
            Bytes::from_static(b"abcd"),
            Bytes::from_static(b"efgh"),
            Bytes::from_static(b"ij"),
        ];
        let sliced = slice_chunks(&chunks, 2, 9);
        let joined: Vec<u8> = sliced.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(joined, b"cdefghi");
        assert_eq!(
            sliced[1].as_ptr(),
            chunks[1].as_ptr(),
            "middle chunk is shared, not copied"
        );
    }
}
