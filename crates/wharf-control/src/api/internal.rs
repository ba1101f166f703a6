//! `POST /internal/v1/login`: the gateways' login check.

use axum::Json;
use axum::extract::State;
use wharf_core::api::Problem;
use wharf_core::{LoginError, LoginGrant, LoginRequest};

use super::SharedState;
use super::error::ApiError;
use super::extract::{GatewayAuth, JsonBody};

/// Check a partner's login (gateways only)
///
/// Unknown user, wrong secret and disabled user all get the same 403. Authenticated with the
/// gateway token, not an API key. With `probe: true` the check records no login (SSH asks
/// whether a key is acceptable before proving possession).
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
        (status = 403, description = "Login refused", body = Problem, content_type = "application/problem+json"),
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
        Err(LoginError::Unavailable(reason)) => Err(ApiError::ServiceUnavailable(reason)),
    }
}
