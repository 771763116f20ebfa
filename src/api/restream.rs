//! Control routes for restreaming destinations. Keys are write-only: every answer shows them
//! redacted (first 4 characters and `…`).

use axum::{
    extract::{rejection::JsonRejection, Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;

use super::{fail, find_event, json_body, store_error, ApiError, Control};
use crate::restream::{RestreamError, PROGRAM_SOURCE};

pub fn routes() -> Router<Control> {
    Router::new()
        .route("/api/events/{event}/destinations", get(list).post(create))
        .route(
            "/api/events/{event}/destinations/{id}",
            get(get_one).delete(delete),
        )
        .route("/api/events/{event}/destinations/{id}/enable", post(enable))
        .route(
            "/api/events/{event}/destinations/{id}/disable",
            post(disable),
        )
}

type ApiResult = Result<Response, ApiError>;

fn restream_error(e: RestreamError) -> ApiError {
    match e {
        RestreamError::Invalid(message) => fail(StatusCode::BAD_REQUEST, &message),
        RestreamError::Store(e) => store_error(e),
        RestreamError::Task => fail(StatusCode::INTERNAL_SERVER_ERROR, "store task failed"),
    }
}

/// Destination ids are numbers; anything else names no destination.
fn destination_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| fail(StatusCode::NOT_FOUND, "destination not found"))
}

#[derive(Deserialize)]
struct NewDestination {
    /// Label, unique within the event.
    name: String,
    /// `rtmp://` or `rtmps://` server URL with the application.
    url: String,
    /// The stream key the platform gave.
    key: String,
    /// `program` (the default) or a camera id.
    source: Option<String>,
}

async fn create(
    State(control): State<Control>,
    Path(event): Path<String>,
    body: Result<Json<NewDestination>, JsonRejection>,
) -> ApiResult {
    let event = find_event(&control, &event)?;
    let body = json_body(
        body,
        "{\"name\": ..., \"url\": \"rtmp(s)://host/app\", \"key\": ..., \"source\"?: \"program\" | camera id}",
    )?;
    let source = body.source.as_deref().unwrap_or(PROGRAM_SOURCE);
    let destination = control
        .restreamer
        .create(&event, &body.name, &body.url, &body.key, source)
        .await
        .map_err(restream_error)?;
    Ok((StatusCode::CREATED, Json(destination)).into_response())
}

async fn list(State(control): State<Control>, Path(event): Path<String>) -> ApiResult {
    let event = find_event(&control, &event)?;
    let destinations = control
        .restreamer
        .list(&event)
        .await
        .map_err(restream_error)?;
    Ok(Json(destinations).into_response())
}

async fn get_one(
    State(control): State<Control>,
    Path((event, id)): Path<(String, String)>,
) -> ApiResult {
    let event = find_event(&control, &event)?;
    let id = destination_id(&id)?;
    let destination = control
        .restreamer
        .get(&event, id)
        .await
        .map_err(restream_error)?;
    Ok(Json(destination).into_response())
}

async fn delete(
    State(control): State<Control>,
    Path((event, id)): Path<(String, String)>,
) -> ApiResult {
    let event = find_event(&control, &event)?;
    let id = destination_id(&id)?;
    control
        .restreamer
        .delete(&event, id)
        .await
        .map_err(restream_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn toggle(control: Control, event: String, id: String, enabled: bool) -> ApiResult {
    let event = find_event(&control, &event)?;
    let id = destination_id(&id)?;
    let destination = control
        .restreamer
        .set_enabled(&event, id, enabled)
        .await
        .map_err(restream_error)?;
    Ok(Json(destination).into_response())
}

async fn enable(
    State(control): State<Control>,
    Path((event, id)): Path<(String, String)>,
) -> ApiResult {
    toggle(control, event, id, true).await
}

async fn disable(
    State(control): State<Control>,
    Path((event, id)): Path<(String, String)>,
) -> ApiResult {
    toggle(control, event, id, false).await
}
