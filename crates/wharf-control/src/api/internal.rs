//! The gateways' endpoints (gateway token): `POST /internal/v1/login`, the login check, and
//! the file-event contract (`/internal/v1/events`, `/internal/v1/uploads…`).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use wharf_core::api::Problem;
use wharf_core::events::{
    BeginUploadRequest, PendingUpload, RecordEventRequest, RecordedEvent, SettleUploadRequest,
};
use wharf_core::{CheckSessionsReply, CheckSessionsRequest, LoginError, LoginGrant, LoginRequest};

use crate::events::{check_file_event, check_pending_event, settled_alike};
use crate::store::SettleOutcome;

use super::SharedState;
use super::error::ApiError;
use super::extract::{GatewayAuth, JsonBody};

/// Check a partner's login (gateways only)
///
/// Unknown user, wrong secret and disabled user all get the same 403 (`login-denied`). A
/// password for an enabled user who logs in with public keys only (`passwordEnabled: false`)
/// gets a 403 of type `password-disabled`, after the same work as a wrong password, so that an
/// SFTP gateway can stop offering the password method. Authenticated with the gateway token,
/// not an API key. With `probe: true` the check records no login (SSH asks whether a key is
/// acceptable before proving possession). After too many failed passwords the client address,
/// or password logins for the user name, are banned for a while (429).
#[utoipa::path(
    post,
    path = "/internal/v1/login",
    tag = "internal",
    operation_id = "checkLogin",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Login accepted: what the gateway needs to serve the session", body = LoginGrant),
        (status = 400, description = "Malformed body (the field is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong gateway token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Login refused: type `…/login-denied` (unknown user, wrong secret, disabled user) or `…/password-disabled` (a password for a user who logs in with public keys only)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Login refused without checking the secret after too many failed logins: type `…/address-banned` (every login from the client address) or `…/user-banned` (password logins for the user name); `Retry-After` says for how long", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The user database is not answering", body = Problem, content_type = "application/problem+json"),
    ),
    security(("gatewayToken" = []))
)]
pub async fn login(
    State(state): State<SharedState>,
    _gateway: GatewayAuth,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Json<LoginGrant>, ApiError> {
    match state.login.check(request).await {
        Ok(grant) => Ok(Json(grant)),
        Err(LoginError::Denied) => Err(ApiError::LoginDenied),
        Err(LoginError::PasswordDisabled) => Err(ApiError::PasswordLoginDisabled),
        Err(LoginError::AddressBanned { retry_after }) => {
            Err(ApiError::AddressBanned { retry_after })
        }
        Err(LoginError::UserBanned { retry_after }) => Err(ApiError::UserBanned { retry_after }),
        Err(LoginError::Unavailable(reason)) => Err(ApiError::ServiceUnavailable(reason)),
    }
}

/// Most sessions in one check.
const MAX_SESSION_CHECKS: usize = 100_000;

/// Re-check open sessions (gateways only)
///
/// For each session, in order: whether its user still exists and is enabled, and the
/// credential it logged in with (`credential` of the login's grant) still logs in. A gateway
/// sends all its open sessions at once, every 30 seconds, and ends those that are not.
#[utoipa::path(
    post,
    path = "/internal/v1/sessions/check",
    tag = "internal",
    operation_id = "checkSessions",
    request_body = CheckSessionsRequest,
    responses(
        (status = 200, description = "Whether each session may go on", body = CheckSessionsReply),
        (status = 400, description = "Malformed body (the field is named), or too many sessions", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong gateway token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The user database is not answering", body = Problem, content_type = "application/problem+json"),
    ),
    security(("gatewayToken" = []))
)]
pub async fn check_sessions(
    State(state): State<SharedState>,
    _gateway: GatewayAuth,
    JsonBody(request): JsonBody<CheckSessionsRequest>,
) -> Result<Json<CheckSessionsReply>, ApiError> {
    if request.sessions.len() > MAX_SESSION_CHECKS {
        return Err(ApiError::invalid_field(
            "sessions",
            format!("at most {MAX_SESSION_CHECKS} per request"),
        ));
    }
    match state.login.check_sessions(&request.sessions).await {
        Ok(valid) => Ok(Json(CheckSessionsReply { valid })),
        Err(e) => Err(ApiError::ServiceUnavailable(e.to_string())),
    }
}

/// Record a file event (gateways only)
///
/// A delete, rename, new directory, or an upload that failed before it could be committed.
/// Stored with one pending delivery per matching webhook, in one transaction. Authenticated
/// with the gateway token.
#[utoipa::path(
    post,
    path = "/internal/v1/events",
    tag = "internal",
    operation_id = "recordEvent",
    request_body = RecordEventRequest,
    responses(
        (status = 201, description = "Recorded", body = RecordedEvent),
        (status = 400, description = "Malformed body (the field is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong gateway token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not answering; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("gatewayToken" = []))
)]
pub async fn record_event(
    State(state): State<SharedState>,
    _gateway: GatewayAuth,
    JsonBody(request): JsonBody<RecordEventRequest>,
) -> Result<(StatusCode, Json<RecordedEvent>), ApiError> {
    check_file_event(request.event_type, &request.data)
        .map_err(|(field, message)| ApiError::invalid_field(field, message))?;
    let event = state
        .events
        .record_event(request.event_type, &request.data.into())
        .await?;
    Ok((StatusCode::CREATED, Json(RecordedEvent { id: event.id })))
}

/// Begin an upload's or a change's event (gateways only)
///
/// Step 1 of an upload, before the object is committed: stores a pending `file.created` with
/// the final size and SHA-256. It is neither listed nor delivered until it is settled. A
/// gateway must not commit an upload whose event could not be begun. With `type`
/// `file.deleted`, `file.renamed` or `directory.created`, the same for a change about to be
/// made; settled as not committed, such a pending event is forgotten.
#[utoipa::path(
    post,
    path = "/internal/v1/uploads",
    tag = "internal",
    operation_id = "beginUpload",
    request_body = BeginUploadRequest,
    responses(
        (status = 201, description = "The pending event", body = PendingUpload),
        (status = 400, description = "Malformed body (the field is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong gateway token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not answering; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("gatewayToken" = []))
)]
pub async fn begin_upload(
    State(state): State<SharedState>,
    _gateway: GatewayAuth,
    JsonBody(request): JsonBody<BeginUploadRequest>,
) -> Result<(StatusCode, Json<PendingUpload>), ApiError> {
    check_pending_event(request.event_type, &request.data)
        .map_err(|(field, message)| ApiError::invalid_field(field, message))?;
    let event_id = state
        .events
        .begin(request.event_type, &request.data)
        .await?;
    Ok((StatusCode::CREATED, Json(PendingUpload { event_id })))
}

/// Settle an upload's event (gateways only)
///
/// Step 2: `committed: true` makes the pending event a `file.created`, `false` a
/// `file.upload_failed` with `error`; either way its deliveries are created in the same
/// transaction. Settling again with the same outcome is accepted (retries); a pending event
/// nobody settles is settled by the control plane after a while, by looking at the bucket.
#[utoipa::path(
    post,
    path = "/internal/v1/uploads/{eventId}/settle",
    tag = "internal",
    operation_id = "settleUpload",
    params(("eventId" = String, Path, description = "The pending event's id (`evt_…`)")),
    request_body = SettleUploadRequest,
    responses(
        (status = 204, description = "Settled"),
        (status = 400, description = "Malformed body (the field is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong gateway token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload event", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It was settled before with the other outcome", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not answering; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("gatewayToken" = []))
)]
pub async fn settle_upload(
    State(state): State<SharedState>,
    _gateway: GatewayAuth,
    path: Result<Path<String>, PathRejection>,
    JsonBody(request): JsonBody<SettleUploadRequest>,
) -> Result<StatusCode, ApiError> {
    let Ok(Path(event_id)) = path else {
        return Err(ApiError::NotFound("no such upload event".into()));
    };
    match state
        .events
        .settle(&event_id, request.committed, request.error)
        .await?
    {
        SettleOutcome::Settled { .. } | SettleOutcome::Forgotten => Ok(StatusCode::NO_CONTENT),
        SettleOutcome::AlreadySettled(t) if settled_alike(&t, request.committed) => {
            Ok(StatusCode::NO_CONTENT)
        }
        SettleOutcome::AlreadySettled(t) => Err(ApiError::Conflict(format!(
            "upload event '{event_id}' was settled before as {t}"
        ))),
        SettleOutcome::NotFound => Err(ApiError::NotFound(format!("no upload event '{event_id}'"))),
    }
}
