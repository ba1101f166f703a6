//! Webhooks: list and create (the secret shown once), a webhook's deliveries with every
//! attempt, retry of dead deliveries, test deliveries, enable/disable and deletion.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use http::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use wharf_core::EventType;
use wharf_core::api::{
    CreatedWebhook, Delivery, DeliveryList, DeliveryState, Webhook, WebhookList,
};

use crate::api::{Failure, enc};
use crate::session::{CheckedForm, Session};
use crate::views::{Chrome, FormErrors, render, time};
use crate::{Shared, failure_page, see_other, signed_out};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/ui/webhooks", get(list).post(create))
        .route("/ui/webhooks/{id}", get(show))
        .route("/ui/webhooks/{id}/enabled", post(set_enabled))
        .route("/ui/webhooks/{id}/test", post(send_test))
        .route("/ui/webhooks/{id}/delete", post(delete))
        .route("/ui/webhooks/{id}/deliveries/{delivery}/retry", post(retry))
}

pub(crate) struct WebhookRow {
    pub id: String,
    pub url: String,
    pub events: String,
    pub filter: String,
    pub description: String,
    pub enabled: bool,
    pub paused: String,
}

fn webhook_row(w: &Webhook) -> WebhookRow {
    let mut filter = Vec::new();
    if let Some(b) = &w.filter.bucket_name {
        filter.push(format!("bucket {b}"));
    }
    if let Some(p) = &w.filter.prefix {
        filter.push(format!("prefix {p}"));
    }
    if let Some(u) = &w.filter.username {
        filter.push(format!("user {u}"));
    }
    WebhookRow {
        id: w.id.clone(),
        url: w.url.clone(),
        events: w
            .events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        filter: if filter.is_empty() {
            "everything".to_owned()
        } else {
            filter.join(", ")
        },
        description: w.description.clone(),
        enabled: w.enabled,
        paused: w.paused_reason.clone().unwrap_or_default(),
    }
}

pub(crate) struct EventChoice {
    pub value: &'static str,
    pub checked: bool,
}

/// What the operator typed in the new-webhook form.
#[derive(Default)]
pub(crate) struct WebhookValues {
    pub url: String,
    pub events: Vec<String>,
    pub bucket: String,
    pub prefix: String,
    pub username: String,
    pub description: String,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    title: String,
    chrome: Chrome,
    rows: Vec<WebhookRow>,
    form: WebhookValues,
    choices: Vec<EventChoice>,
    errors: FormErrors,
}

#[derive(Deserialize)]
struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

fn choices(selected: &[String]) -> Vec<EventChoice> {
    EventType::ALL
        .iter()
        .map(|e| EventChoice {
            value: e.as_str(),
            checked: selected.iter().any(|s| s == e.as_str()),
        })
        .collect()
}

async fn list_page(
    console: &Shared,
    session: &Session,
    form: WebhookValues,
    errors: FormErrors,
    notice: String,
) -> Response {
    let list: WebhookList = match console
        .api
        .json(&session.key, Method::GET, "/v1/webhooks?pageSize=100", None)
        .await
    {
        Ok(list) => list,
        Err(failure) => return failure_page(session, "webhooks", failure),
    };
    let failed = errors.any();
    let mut response = render(&WebhooksPage {
        title: "Webhooks".into(),
        chrome: Chrome::new("webhooks", session).with_notice(notice),
        rows: list.items.iter().map(webhook_row).collect(),
        choices: choices(&form.events),
        form,
        errors,
    });
    if failed {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

async fn list(
    State(console): State<Shared>,
    session: Session,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let notice = match query.notice.as_str() {
        "deleted" => "Webhook deleted.".to_owned(),
        _ => String::new(),
    };
    let form = WebhookValues {
        events: vec![EventType::FileCreated.as_str().to_owned()],
        ..WebhookValues::default()
    };
    list_page(&console, &session, form, FormErrors::default(), notice).await
}

#[derive(Template)]
#[template(path = "webhook_created.html")]
struct CreatedPage {
    title: String,
    chrome: Chrome,
    webhook: WebhookRow,
    secret: String,
}

async fn create(
    State(console): State<Shared>,
    CheckedForm { session, fields }: CheckedForm,
) -> Response {
    let form = WebhookValues {
        url: fields.get("url").trim().to_owned(),
        events: fields
            .all("events")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        bucket: fields.get("bucketName").trim().to_owned(),
        prefix: fields.get("prefix").trim().to_owned(),
        username: fields.get("username").trim().to_owned(),
        description: fields.get("description").trim().to_owned(),
    };
    let mut filter = Map::new();
    for (name, value) in [
        ("bucketName", &form.bucket),
        ("prefix", &form.prefix),
        ("username", &form.username),
    ] {
        if !value.is_empty() {
            filter.insert(name.to_owned(), Value::String(value.clone()));
        }
    }
    let request = json!({
        "url": form.url,
        "events": form.events,
        "filter": filter,
        "description": form.description,
    });
    match console
        .api
        .json::<CreatedWebhook>(&session.key, Method::POST, "/v1/webhooks", Some(&request))
        .await
    {
        Ok(created) => render(&CreatedPage {
            title: "Webhook created".into(),
            chrome: Chrome::new("webhooks", &session),
            webhook: webhook_row(&created.webhook),
            secret: created.secret,
        }),
        Err(Failure::SignedOut) => signed_out(),
        Err(Failure::Problem(problem)) => {
            let errors =
                FormErrors::from_problem(problem, &["url", "events", "filter", "description"]);
            list_page(&console, &session, form, errors, String::new()).await
        }
    }
}

pub(crate) struct AttemptRow {
    pub time: String,
    pub status: String,
    pub latency: String,
    pub error: String,
}

pub(crate) struct DeliveryRow {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub state: &'static str,
    pub attempts: Vec<AttemptRow>,
    pub attempt_count: u32,
    pub last_status: String,
    pub next_attempt: String,
    pub created: String,
    pub dead: bool,
}

fn delivery_row(d: &Delivery) -> DeliveryRow {
    DeliveryRow {
        id: d.id.clone(),
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        state: match d.status {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Dead => "dead",
        },
        attempts: d
            .attempts
            .iter()
            .map(|a| AttemptRow {
                time: time(Some(a.time), ""),
                status: a
                    .status_code
                    .map_or_else(|| "no answer".to_owned(), |s| s.to_string()),
                latency: format!("{} ms", a.latency_ms),
                error: a.error.clone().unwrap_or_default(),
            })
            .collect(),
        attempt_count: d.attempt_count,
        last_status: d
            .attempts
            .last()
            .map(|a| {
                a.status_code
                    .map_or_else(|| "no answer".to_owned(), |s| s.to_string())
            })
            .unwrap_or_else(|| "—".to_owned()),
        next_attempt: time(d.next_attempt_at, ""),
        created: time(Some(d.created_at), ""),
        dead: d.status == DeliveryState::Dead,
    }
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    title: String,
    chrome: Chrome,
    webhook: WebhookRow,
    base_url: String,
    deliveries: Vec<DeliveryRow>,
    next_url: String,
}

#[derive(Deserialize)]
struct ShowQuery {
    #[serde(default)]
    notice: String,
    #[serde(default, rename = "pageToken")]
    page_token: String,
}

async fn show(
    State(console): State<Shared>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Response {
    let base = format!("/v1/webhooks/{}", enc(&id));
    let webhook: Webhook = match console
        .api
        .json(&session.key, Method::GET, &base, None)
        .await
    {
        Ok(w) => w,
        Err(failure) => return failure_page(&session, "webhooks", failure),
    };
    let mut uri = format!("{base}/deliveries?pageSize=50");
    if !query.page_token.is_empty() {
        uri.push_str(&format!("&pageToken={}", enc(&query.page_token)));
    }
    let deliveries: DeliveryList = match console
        .api
        .json(&session.key, Method::GET, &uri, None)
        .await
    {
        Ok(d) => d,
        Err(failure) => return failure_page(&session, "webhooks", failure),
    };
    let base_url = format!("/ui/webhooks/{}", enc(&id));
    let notice = match query.notice.as_str() {
        "retried" => "The delivery is pending again; it is sent within seconds.".to_owned(),
        "test" => "A test delivery was queued; it appears below within seconds.".to_owned(),
        "enabled" => "Webhook enabled.".to_owned(),
        "disabled" => "Webhook disabled: no deliveries until it is enabled again.".to_owned(),
        _ => String::new(),
    };
    render(&WebhookPage {
        title: format!("Webhook {id}"),
        chrome: Chrome::new("webhooks", &session).with_notice(notice),
        webhook: webhook_row(&webhook),
        deliveries: deliveries.items.iter().map(delivery_row).collect(),
        next_url: deliveries
            .next_page_token
            .map(|t| format!("{base_url}?pageToken={}", enc(&t)))
            .unwrap_or_default(),
        base_url,
    })
}

async fn set_enabled(
    State(console): State<Shared>,
    Path(id): Path<String>,
    CheckedForm { session, fields }: CheckedForm,
) -> Response {
    let enabled = fields.get("enabled") == "true";
    let uri = format!("/v1/webhooks/{}", enc(&id));
    match console
        .api
        .json::<Webhook>(
            &session.key,
            Method::PATCH,
            &uri,
            Some(&json!({ "enabled": enabled })),
        )
        .await
    {
        Ok(_) => see_other(&format!(
            "/ui/webhooks/{}?notice={}",
            enc(&id),
            if enabled { "enabled" } else { "disabled" }
        )),
        Err(failure) => failure_page(&session, "webhooks", failure),
    }
}

async fn send_test(
    State(console): State<Shared>,
    Path(id): Path<String>,
    CheckedForm { session, .. }: CheckedForm,
) -> Response {
    let uri = format!("/v1/webhooks/{}/test", enc(&id));
    match console
        .api
        .json::<Delivery>(&session.key, Method::POST, &uri, Some(&json!({})))
        .await
    {
        Ok(_) => see_other(&format!("/ui/webhooks/{}?notice=test", enc(&id))),
        Err(failure) => failure_page(&session, "webhooks", failure),
    }
}

async fn delete(
    State(console): State<Shared>,
    Path(id): Path<String>,
    CheckedForm { session, .. }: CheckedForm,
) -> Response {
    let uri = format!("/v1/webhooks/{}", enc(&id));
    match console
        .api
        .call(&session.key, Method::DELETE, &uri, None)
        .await
    {
        Ok(()) => see_other("/ui/webhooks?notice=deleted"),
        Err(failure) => failure_page(&session, "webhooks", failure),
    }
}

async fn retry(
    State(console): State<Shared>,
    Path((id, delivery)): Path<(String, String)>,
    CheckedForm { session, .. }: CheckedForm,
) -> Response {
    let uri = format!(
        "/v1/webhooks/{}/deliveries/{}/retry",
        enc(&id),
        enc(&delivery)
    );
    match console
        .api
        .json::<Delivery>(&session.key, Method::POST, &uri, None)
        .await
    {
        Ok(_) => see_other(&format!("/ui/webhooks/{}?notice=retried", enc(&id))),
        Err(failure) => failure_page(&session, "webhooks", failure),
    }
}
