//! `/v1/events`: the recorded file events, newest first.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;
use wharf_core::api::{EventList, Problem};
use wharf_core::{Event, EventType};

use super::SharedState;
use super::error::ApiError;
use super::extract::{bad_page_token, page_size};
use crate::store::EventFilter;

pub const DEFAULT_PAGE_SIZE: u32 = 25;
pub const MAX_PAGE_SIZE: u32 = 100;

/// `pageSize` and `pageToken` of a list, parsed.
pub struct Page {
    pub size: u32,
    /// The id the page continues after (before, for lists newest first).
    pub cursor: Option<String>,
}

impl Page {
    /// Reads `pageSize` or `pageToken` if that is what `name` is; `Ok(false)` otherwise. Page
    /// tokens carry an id starting with `id_prefix`.
    pub fn accept(&mut self, name: &str, value: &str, id_prefix: &str) -> Result<bool, ApiError> {
        match name {
            "pageSize" => {
                self.size = page_size(value, MAX_PAGE_SIZE)?;
                Ok(true)
            }
            "pageToken" if value.is_empty() => {
                self.cursor = None;
                Ok(true)
            }
            "pageToken" => {
                let id = URL_SAFE_NO_PAD
                    .decode(value)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|id| id.starts_with(id_prefix) && id.is_ascii())
                    .ok_or_else(bad_page_token)?;
                self.cursor = Some(id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The `nextPageToken` after `last`, when there is more.
    pub fn token(more: bool, last: Option<&str>) -> Option<String> {
        more.then(|| last.map(|id| URL_SAFE_NO_PAD.encode(id)))
            .flatten()
    }
}

impl Default for Page {
    fn default() -> Self {
        Page {
            size: DEFAULT_PAGE_SIZE,
            cursor: None,
        }
    }
}

/// Query parameters of `GET /v1/events` (documentation; parsed by hand so a bad value is a 400
/// naming it).
#[derive(Debug, Deserialize, IntoParams)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListEventsParams {
    /// Events per page, 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
    /// `nextPageToken` of the previous page.
    pub page_token: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(value_type = Option<EventType>)]
    pub event_type: Option<String>,
    /// Only events caused by this user.
    pub username: Option<String>,
    /// Only events whose bucket key starts with this (`alice/in/`; keys have no leading `/`).
    pub prefix: Option<String>,
    /// Only events in this bucket.
    pub bucket_name: Option<String>,
}

/// List events
///
/// Recorded file events, newest first: completed uploads (`file.created`, `file.upload_failed`
/// for failed ones), deletes, renames and new directories, over every protocol. Uploads in
/// progress are not listed until they are settled. Pass `nextPageToken` as `pageToken` for the
/// next (older) page.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    operation_id = "listEvents",
    params(ListEventsParams),
    responses(
        (status = 200, description = "One page of events, newest first", body = EventList),
        (status = 400, description = "A bad parameter (it is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn list_events(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Json<EventList>, ApiError> {
    let mut page = Page::default();
    let mut filter = EventFilter::default();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if page.accept(&name, &value, "evt_")? {
            continue;
        }
        let value = (!value.is_empty()).then(|| value.into_owned());
        match &*name {
            "type" => {
                filter.event_type = value
                    .map(|v| {
                        EventType::parse(&v).ok_or_else(|| {
                            ApiError::invalid_field(
                                "type",
                                format!(
                                    "unknown event type '{v}'; one of {}",
                                    EventType::ALL.map(EventType::as_str).join(", ")
                                ),
                            )
                        })
                    })
                    .transpose()?;
            }
            "username" => filter.username = no_control("username", value)?,
            "prefix" => filter.prefix = no_control("prefix", value)?,
            "bucketName" => filter.bucket_name = no_control("bucketName", value)?,
            _ => {}
        }
    }
    // Uploads whose client has been told "done" are listed (see `DatabaseEvents::barrier`).
    state.events.barrier().await;
    let mut events = state
        .store
        .list_events(&filter, page.cursor.as_deref(), page.size + 1)
        .await?;
    let more = events.len() > page.size as usize;
    events.truncate(page.size as usize);
    let next_page_token = Page::token(more, events.last().map(|e| e.id.as_str()));
    Ok(Json(EventList {
        items: events,
        next_page_token,
    }))
}

/// Get an event
#[utoipa::path(
    get,
    path = "/v1/events/{eventId}",
    tag = "events",
    operation_id = "getEvent",
    params(("eventId" = String, Path, description = "The event's id (`evt_…`)")),
    responses(
        (status = 200, description = "The event", body = Event),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn get_event(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    state.events.barrier().await;
    state
        .store
        .get_event(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no event '{id}'")))
}

/// A filter value: no name or key has control characters, so one with them is a mistake.
fn no_control(field: &'static str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().any(char::is_control) => Err(ApiError::invalid_field(
            field,
            "must not contain control characters",
        )),
        v => Ok(v),
    }
}
