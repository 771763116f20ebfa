//! Control routes for recordings.
//!
//! - `POST /api/events/{event}/recording/start`, `.../stop`, `GET .../recording`: the status
//!   (`recording`, `started_at`, `sources`, `in_progress`, `error`). A start that cannot write to
//!   `record.dir` answers 500 (507 when the disk is full) with `{"recording": false, "error"}`.
//! - `GET /api/events/{event}/recordings`: the status and the event's files.
//! - `GET /api/events/{event}/recordings/{file}`: a file, streamed from disk, with HEAD and single
//!   `Range` support. Only names in the listing are served.

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{fail, ApiError, Control};
use crate::http::range::parse_range;
use crate::recording::RecorderError;

/// Bytes read from disk per body chunk of a download.
const CHUNK: usize = 64 * 1024;

pub fn routes() -> Router<Control> {
    Router::new()
        .route("/api/events/{event}/recording", get(status))
        .route("/api/events/{event}/recording/start", post(start))
        .route("/api/events/{event}/recording/stop", post(stop))
        .route("/api/events/{event}/recordings", get(files))
        .route("/api/events/{event}/recordings/{file}", get(download))
}

fn recorder_error(e: RecorderError) -> Response {
    match e {
        RecorderError::NoSuchEvent | RecorderError::NoSuchFile => {
            fail(StatusCode::NOT_FOUND, &e.to_string()).into_response()
        }
        RecorderError::Storage { message, full } => {
            let status = if full {
                StatusCode::INSUFFICIENT_STORAGE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (
                status,
                Json(json!({ "recording": false, "error": message })),
            )
                .into_response()
        }
    }
}

async fn status(State(control): State<Control>, Path(event): Path<String>) -> Response {
    match control.recorder.status(&event) {
        Ok(status) => Json(status).into_response(),
        Err(e) => recorder_error(e),
    }
}

async fn start(State(control): State<Control>, Path(event): Path<String>) -> Response {
    match control.recorder.start(&event).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => recorder_error(e),
    }
}

async fn stop(State(control): State<Control>, Path(event): Path<String>) -> Response {
    match control.recorder.stop(&event).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => recorder_error(e),
    }
}

async fn files(State(control): State<Control>, Path(event): Path<String>) -> Response {
    match control.recorder.files(&event).await {
        Ok(listing) => Json(listing).into_response(),
        Err(e) => recorder_error(e),
    }
}

async fn download(
    State(control): State<Control>,
    Path((event, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let path = control
        .recorder
        .file_path(&event, &file)
        .await
        .map_err(recorder_error)?;
    let gone = |_| recorder_error(RecorderError::NoSuchFile);
    let mut disk = tokio::fs::File::open(&path).await.map_err(gone)?;
    // An in-progress file is served as long as it is now.
    let len = disk.metadata().await.map_err(gone)?.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len));
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, crate::http::INIT_TYPE)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file}\""),
        );
    let response = match range {
        None => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, len)
            .body(file_body(disk, len)),
        Some(Ok((start, end))) => {
            disk.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| io_error(&e))?;
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{len}", end - 1),
                )
                .header(header::CONTENT_LENGTH, end - start)
                .body(file_body(disk, end - start))
        }
        Some(Err(())) => builder
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{len}"))
            .body(Body::empty()),
    };
    response.map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()).into_response())
}

fn io_error(e: &std::io::Error) -> Response {
    let error: ApiError = fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    error.into_response()
}

/// `len` bytes of `file` from where it stands, read in [`CHUNK`]s as the client takes them.
fn file_body(file: tokio::fs::File, len: u64) -> Body {
    let reader = file.take(len);
    let chunks = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut chunk = BytesMut::with_capacity(CHUNK);
        match reader.read_buf(&mut chunk).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(chunk.freeze()), Some(reader))),
            Err(e) => Some((Err(e), None)),
        }
    });
    Body::from_stream(chunks)
}
