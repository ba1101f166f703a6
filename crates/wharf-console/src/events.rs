//! Events: the newest file events, filterable, refreshed live by the page's script.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use http::Method;
use serde::Deserialize;
use wharf_core::EventType;
use wharf_core::api::EventList;

use crate::api::enc;
use crate::session::Session;
use crate::views::{Chrome, render, size, time};
use crate::{Shared, failure_page};

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/ui/events", get(list))
}

pub(crate) struct EventRow {
    pub id: String,
    pub time: String,
    pub kind: String,
    /// `kind` as a CSS class (`file-created`).
    pub kind_class: String,
    pub bucket: String,
    pub key: String,
    pub previous_key: String,
    pub size: String,
    pub username: String,
    pub protocol: String,
    pub client_ip: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    title: String,
    chrome: Chrome,
    types: Vec<&'static str>,
    kind: String,
    username: String,
    rows: Vec<EventRow>,
    next_url: String,
    /// This page's own address, which the live refresh fetches.
    self_url: String,
    first_page: bool,
}

/// Only the table rows, for the live refresh.
#[derive(Template)]
#[template(path = "event_rows.html")]
struct EventRows {
    rows: Vec<EventRow>,
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    username: String,
    #[serde(default, rename = "pageToken")]
    page_token: String,
    /// `1`: answer with the rows only.
    #[serde(default)]
    rows: String,
}

async fn list(
    State(console): State<Shared>,
    session: Session,
    Query(query): Query<EventsQuery>,
) -> Response {
    let mut filter = String::new();
    if !query.kind.is_empty() {
        filter.push_str(&format!("&type={}", enc(&query.kind)));
    }
    if !query.username.is_empty() {
        filter.push_str(&format!("&username={}", enc(&query.username)));
    }
    let mut uri = format!("/v1/events?pageSize=50{filter}");
    if !query.page_token.is_empty() {
        uri.push_str(&format!("&pageToken={}", enc(&query.page_token)));
    }
    let page: EventList = match console
        .api
        .json(&session.key, Method::GET, &uri, None)
        .await
    {
        Ok(page) => page,
        Err(failure) => return failure_page(&session, "events", failure),
    };
    let rows = page
        .items
        .into_iter()
        .map(|e| {
            let file = e.data.file();
            EventRow {
                id: e.id.clone(),
                time: time(Some(e.time), ""),
                kind: e.event_type.as_str().to_owned(),
                kind_class: e.event_type.as_str().replace('.', "-"),
                bucket: file.map(|d| d.bucket_name.to_string()).unwrap_or_default(),
                key: file.map_or_else(|| e.data.subject(), |d| d.key.clone()),
                previous_key: file
                    .and_then(|d| d.previous_key.clone())
                    .unwrap_or_default(),
                size: file.and_then(|d| d.size).map(size).unwrap_or_default(),
                username: e.data.username().unwrap_or_default().to_owned(),
                protocol: e
                    .data
                    .protocol()
                    .map(|p| p.as_str())
                    .unwrap_or("")
                    .to_owned(),
                client_ip: e.data.client_ip().to_owned(),
                error: file.and_then(|d| d.error.clone()).unwrap_or_default(),
            }
        })
        .collect();
    if query.rows == "1" {
        return render(&EventRows { rows });
    }
    let self_url = format!("/ui/events?{}", filter.trim_start_matches('&'));
    render(&EventsPage {
        title: "Events".into(),
        chrome: Chrome::new("events", &session),
        types: EventType::ALL.iter().map(|t| t.as_str()).collect(),
        kind: query.kind,
        username: query.username,
        rows,
        next_url: page
            .next_page_token
            .map(|t| format!("{self_url}&pageToken={}", enc(&t)))
            .unwrap_or_default(),
        first_page: query.page_token.is_empty(),
        self_url,
    })
}
