//! `/v1/webhooks`: subscriptions to events, their deliveries and attempts.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use wharf_core::EventType;
use wharf_core::api::{
    CreateWebhookRequest, CreatedWebhook, Delivery, DeliveryAttempt, DeliveryList, DeliveryState,
    FieldError, Problem, UpdateWebhookRequest, Webhook, WebhookFilter, WebhookList,
};

use super::SharedState;
use super::error::ApiError;
use super::events::Page;
use super::extract::JsonBody;
use crate::delivery::private_target_reason;
use crate::store::{
    DeliveryRecord, DeliveryStatus, NewWebhook, RetryOutcome, WebhookChanges, WebhookFilterRecord,
    WebhookRecord,
};
use crate::webhooks::generate_secret;

/// Longest webhook URL accepted.
const MAX_URL_BYTES: usize = 2048;
const MAX_DESCRIPTION_CHARS: usize = 1024;
const MAX_PREFIX_BYTES: usize = 1024;

fn field_error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

fn no_such_webhook(id: &str) -> ApiError {
    ApiError::NotFound(format!("no webhook '{id}'"))
}

/// The `{webhookId}` path parameter; anything unreadable names no webhook (404).
fn webhook_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|_| ApiError::NotFound("no such webhook".into()))
}

fn validate_url(state: &SharedState, url: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let url = url.trim();
    if url.len() > MAX_URL_BYTES {
        errors.push(field_error(
            "url",
            format!("must be at most {MAX_URL_BYTES} bytes long"),
        ));
        return None;
    }
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(field_error("url", format!("not a URL: {e}")));
            return None;
        }
    };
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        errors.push(field_error(
            "url",
            "must be an http:// or https:// URL with a host",
        ));
        return None;
    }
    if !state.options.allow_private_webhook_targets
        && let Some(reason) = private_target_reason(&parsed)
    {
        errors.push(field_error("url", reason));
        return None;
    }
    Some(parsed.to_string())
}

fn validate_events(events: &[EventType], errors: &mut Vec<FieldError>) -> Vec<EventType> {
    if events.is_empty() {
        errors.push(field_error(
            "events",
            format!(
                "name at least one event type: {}",
                EventType::ALL.map(EventType::as_str).join(", ")
            ),
        ));
    }
    let mut unique = Vec::new();
    for t in events {
        if !unique.contains(t) {
            unique.push(*t);
        }
    }
    unique
}

fn validate_description(description: &str, errors: &mut Vec<FieldError>) -> String {
    let description = description.trim();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        errors.push(field_error(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters long"),
        ));
    }
    description.to_owned()
}

async fn validate_filter(
    state: &SharedState,
    filter: WebhookFilter,
    errors: &mut Vec<FieldError>,
) -> Result<WebhookFilterRecord, ApiError> {
    let prefix = filter.prefix.filter(|p| !p.is_empty());
    if let Some(prefix) = &prefix {
        if prefix.starts_with('/') {
            errors.push(field_error(
                "filter.prefix",
                "bucket keys have no leading '/': write 'alice/in/' for the files under /alice/in",
            ));
        } else if prefix.len() > MAX_PREFIX_BYTES || prefix.chars().any(char::is_control) {
            errors.push(field_error(
                "filter.prefix",
                format!("must be at most {MAX_PREFIX_BYTES} bytes without control characters"),
            ));
        }
    }
    if let Some(bucket) = &filter.bucket_name
        && state.store.get_bucket(bucket).await?.is_none()
    {
        errors.push(field_error(
            "filter.bucketName",
            format!("there is no bucket named '{bucket}'"),
        ));
    }
    Ok(WebhookFilterRecord {
        bucket_name: filter.bucket_name,
        prefix,
        username: filter.username,
    })
}

fn webhook_view(record: WebhookRecord) -> Webhook {
    Webhook {
        id: record.id,
        url: record.url,
        events: record.events,
        filter: WebhookFilter {
            bucket_name: record.filter.bucket_name,
            prefix: record.filter.prefix,
            username: record.filter.username,
        },
        description: record.description,
        enabled: record.enabled,
        paused_reason: record.paused_reason,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

fn delivery_view(record: DeliveryRecord) -> Delivery {
    Delivery {
        id: record.id,
        webhook_id: record.webhook_id,
        event_id: record.event_id,
        event_type: record.event_type,
        status: match record.status {
            DeliveryStatus::Pending => DeliveryState::Pending,
            DeliveryStatus::Succeeded => DeliveryState::Succeeded,
            DeliveryStatus::Dead => DeliveryState::Dead,
        },
        attempt_count: record.attempt_count,
        next_attempt_at: record.next_attempt_at,
        attempts: record
            .attempts
            .into_iter()
            .map(|a| DeliveryAttempt {
                time: a.time,
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                error: a.error,
            })
            .collect(),
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

/// Create a webhook
///
/// Subscribes a URL to events. Each matching event is POSTed to it as JSON, signed as Standard
/// Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), and retried with
/// exponential backoff for 24 hours (by default) until it answers 2xx. The signing secret is in
/// this response only.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "createWebhook",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "The webhook, with its signing secret (shown this once only)", body = CreatedWebhook),
        (status = 400, description = "Invalid body: malformed (e.g. an unknown event type), or a field breaks a rule: not an http(s) URL, a refused private target, no events, an unknown bucket (the fields are named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn create_webhook(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let mut errors = Vec::new();
    let url = validate_url(&state, &request.url, &mut errors);
    let events = validate_events(&request.events, &mut errors);
    let description = validate_description(
        request.description.as_deref().unwrap_or_default(),
        &mut errors,
    );
    let filter = validate_filter(&state, request.filter.unwrap_or_default(), &mut errors).await?;
    let (Some(url), true) = (url, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let secret = generate_secret();
    let record = state
        .store
        .insert_webhook(&NewWebhook {
            url,
            events,
            filter,
            description,
            secret: secret.clone(),
        })
        .await?;
    tracing::info!(webhook = %record.id, target = %url_origin(&record.url), events = ?record.events,
        "webhook created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            secret,
            webhook: webhook_view(record),
        }),
    ))
}

/// Query parameters of the paged webhook lists.
#[derive(Debug, Deserialize, IntoParams)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
    /// `nextPageToken` of the previous page.
    pub page_token: Option<String>,
}

fn parse_page(query: Option<&str>, id_prefix: &str) -> Result<Page, ApiError> {
    let mut page = Page::default();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        page.accept(&name, &value, id_prefix)?;
    }
    Ok(page)
}

/// List webhooks
///
/// Oldest first; pass `nextPageToken` as `pageToken` for the next page.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "listWebhooks",
    params(PageParams),
    responses(
        (status = 200, description = "One page of webhooks", body = WebhookList),
        (status = 400, description = "Bad pageSize or pageToken (the parameter is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn list_webhooks(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Json<WebhookList>, ApiError> {
    let page = parse_page(query.as_deref(), "wh_")?;
    let mut records = state
        .store
        .list_webhooks(page.cursor.as_deref(), page.size + 1)
        .await?;
    let more = records.len() > page.size as usize;
    records.truncate(page.size as usize);
    let next_page_token = Page::token(more, records.last().map(|r| r.id.as_str()));
    Ok(Json(WebhookList {
        items: records.into_iter().map(webhook_view).collect(),
        next_page_token,
    }))
}

/// Get a webhook
///
/// The signing secret is not shown (it is returned once, on creation).
#[utoipa::path(
    get,
    path = "/v1/webhooks/{webhookId}",
    tag = "webhooks",
    operation_id = "getWebhook",
    params(("webhookId" = String, Path, description = "The webhook's id (`wh_…`)")),
    responses(
        (status = 200, description = "The webhook", body = Webhook),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn get_webhook(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Webhook>, ApiError> {
    let id = webhook_id(path)?;
    let record = state
        .store
        .get_webhook(&id)
        .await?
        .ok_or_else(|| no_such_webhook(&id))?;
    Ok(Json(webhook_view(record)))
}

/// Update a webhook
///
/// Only the fields present change; `filter` replaces the whole filter. `enabled: false` stops
/// new deliveries (pending ones wait); `enabled: true` also resumes a webhook paused by the
/// loop guard, and its waiting deliveries are sent.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{webhookId}",
    tag = "webhooks",
    operation_id = "updateWebhook",
    params(("webhookId" = String, Path, description = "The webhook's id (`wh_…`)")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The updated webhook", body = Webhook),
        (status = 400, description = "Invalid body: malformed, or a field breaks a rule (the fields are named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn update_webhook(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(request): JsonBody<UpdateWebhookRequest>,
) -> Result<Json<Webhook>, ApiError> {
    let id = webhook_id(path)?;
    let mut errors = Vec::new();
    let url = match &request.url {
        Some(url) => validate_url(&state, url, &mut errors),
        None => None,
    };
    let events = request
        .events
        .as_deref()
        .map(|e| validate_events(e, &mut errors));
    let description = request
        .description
        .as_deref()
        .map(|d| validate_description(d, &mut errors));
    let filter = match request.filter {
        Some(filter) => Some(validate_filter(&state, filter, &mut errors).await?),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let changes = WebhookChanges {
        url,
        events,
        filter,
        description,
        enabled: request.enabled,
    };
    let record = state
        .store
        .update_webhook(&id, &changes)
        .await?
        .ok_or_else(|| no_such_webhook(&id))?;
    tracing::info!(webhook = %record.id, enabled = record.enabled, "webhook updated");
    if record.enabled {
        // Waiting deliveries (paused, disabled) may be due now.
        state.events.wake();
    }
    Ok(Json(webhook_view(record)))
}

/// Delete a webhook
///
/// Its pending deliveries are dropped, with the delivery log; the events stay.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{webhookId}",
    tag = "webhooks",
    operation_id = "deleteWebhook",
    params(("webhookId" = String, Path, description = "The webhook's id (`wh_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn delete_webhook(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = webhook_id(path)?;
    if state.store.delete_webhook(&id).await? {
        tracing::info!(webhook = %id, "webhook deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_webhook(&id))
    }
}

/// Send a test event
///
/// Queues a delivery of a synthetic event of type `webhook.test` to this webhook only (no other
/// webhook gets it, and `GET /v1/events` does not list it). It is signed, retried and logged
/// like any delivery; follow it in `GET /v1/webhooks/{webhookId}/deliveries`. Its `data` is
/// `{"webhookId": …, "message": …}`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{webhookId}/test",
    tag = "webhooks",
    operation_id = "testWebhook",
    params(("webhookId" = String, Path, description = "The webhook's id (`wh_…`)")),
    responses(
        (status = 202, description = "The test delivery, queued", body = Delivery),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The webhook is disabled or paused; enable it first", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn test_webhook(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let id = webhook_id(path)?;
    let webhook = state
        .store
        .get_webhook(&id)
        .await?
        .ok_or_else(|| no_such_webhook(&id))?;
    if !webhook.enabled || webhook.paused_reason.is_some() {
        return Err(ApiError::Conflict(format!(
            "webhook '{id}' is {}; enable it first (PATCH {{\"enabled\": true}})",
            if webhook.enabled {
                "paused"
            } else {
                "disabled"
            }
        )));
    }
    let data = serde_json::json!({
        "webhookId": id,
        "message": "A test event from Wharf: this webhook is reachable and its signatures verify.",
    });
    let delivery_id = state
        .store
        .insert_test_delivery(&id, &data, state.events.policy())
        .await?;
    state.events.wake();
    let delivery = state
        .store
        .get_delivery(&id, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::internal("test delivery", "the new delivery is missing"))?;
    Ok((StatusCode::ACCEPTED, Json(delivery_view(delivery))))
}

/// List a webhook's deliveries
///
/// Newest first, each with every attempt (time, the receiver's status code, latency, error).
#[utoipa::path(
    get,
    path = "/v1/webhooks/{webhookId}/deliveries",
    tag = "webhooks",
    operation_id = "listDeliveries",
    params(("webhookId" = String, Path, description = "The webhook's id (`wh_…`)"), PageParams),
    responses(
        (status = 200, description = "One page of deliveries", body = DeliveryList),
        (status = 400, description = "Bad pageSize or pageToken (the parameter is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn list_deliveries(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<DeliveryList>, ApiError> {
    let id = webhook_id(path)?;
    let page = parse_page(query.as_deref(), "dlv_")?;
    if state.store.get_webhook(&id).await?.is_none() {
        return Err(no_such_webhook(&id));
    }
    // The deliveries of uploads whose client has been told "done" are listed.
    state.events.barrier().await;
    let mut records = state
        .store
        .list_deliveries(&id, page.cursor.as_deref(), page.size + 1)
        .await?;
    let more = records.len() > page.size as usize;
    records.truncate(page.size as usize);
    let next_page_token = Page::token(more, records.last().map(|r| r.id.as_str()));
    Ok(Json(DeliveryList {
        items: records.into_iter().map(delivery_view).collect(),
        next_page_token,
    }))
}

/// Retry a dead delivery
///
/// Sends a delivery whose retries ran out again, now, with a new retry period. It keeps its
/// event, so the receiver sees the same `webhook-id`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
    tag = "webhooks",
    operation_id = "retryDelivery",
    params(
        ("webhookId" = String, Path, description = "The webhook's id (`wh_…`)"),
        ("deliveryId" = String, Path, description = "The delivery's id (`dlv_…`)"),
    ),
    responses(
        (status = 202, description = "The delivery, pending again", body = Delivery),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook or delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The delivery is not dead (pending or succeeded)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn retry_delivery(
    State(state): State<SharedState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let Ok(Path((webhook_id, delivery_id))) = path else {
        return Err(ApiError::NotFound("no such delivery".into()));
    };
    let not_found = || {
        ApiError::NotFound(format!(
            "webhook '{webhook_id}' has no delivery '{delivery_id}'"
        ))
    };
    match state
        .store
        .retry_delivery(&webhook_id, &delivery_id, state.options.retry.give_up_after)
        .await?
    {
        RetryOutcome::Scheduled => {}
        RetryOutcome::NotFound => return Err(not_found()),
        RetryOutcome::NotDead(status) => {
            return Err(ApiError::Conflict(format!(
                "delivery '{delivery_id}' is {}; only dead deliveries can be retried",
                status.as_str()
            )));
        }
    }
    tracing::info!(webhook = %webhook_id, delivery = %delivery_id, "dead delivery scheduled again");
    state.events.wake();
    let delivery = state
        .store
        .get_delivery(&webhook_id, &delivery_id)
        .await?
        .ok_or_else(not_found)?;
    Ok((StatusCode::ACCEPTED, Json(delivery_view(delivery))))
}

/// A webhook URL as logs may show it: scheme, host and port only (the path or query may carry
/// a token).
fn url_origin(url: &str) -> String {
    url::Url::parse(url).map_or_else(
        |_| "(unreadable URL)".to_owned(),
        |u| u.origin().ascii_serialization(),
    )
}
