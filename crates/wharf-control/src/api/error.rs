//! [`ApiError`]: every error the HTTP API answers with, as an RFC 9457 problem document.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wharf_core::api::{
    ADDRESS_BANNED_PROBLEM, FieldError, PASSWORD_DISABLED_PROBLEM, PROBLEM_TYPE_BASE, Problem,
    USER_BANNED_PROBLEM,
};

use crate::store::StoreError;

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer. Bad input is always a 4xx that names the field; internal failures are
/// logged where they happen and answered with a 500 that reveals nothing.
///
/// One status for bad input: every invalid request is a 400, whether it could not be read
/// (`invalid-request`) or was read and breaks a rule (`validation`); the API never answers 422.
/// Clients check one status, and the problem `type` tells the two apart.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request could not be read (syntax, wrong type, unknown field, bad parameter).
    InvalidRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 400: a readable request that breaks a rule.
    Validation(Vec<FieldError>),
    /// 401: no API key (or gateway token), or a wrong one.
    Unauthorized(&'static str),
    /// 403: a gateway login that is refused (unknown user, wrong secret, disabled).
    LoginDenied,
    /// 403: a gateway login with a password for a user who logs in with public keys only
    /// ([`wharf_core::LoginError::PasswordDisabled`]).
    PasswordLoginDisabled,
    /// 429: a gateway login from an address the defender banned, for `retry_after` more
    /// ([`wharf_core::LoginError::AddressBanned`]).
    AddressBanned { retry_after: std::time::Duration },
    /// 429: a gateway password login for a user name the defender banned
    /// ([`wharf_core::LoginError::UserBanned`]).
    UserBanned { retry_after: std::time::Duration },
    /// 403: the operation is not allowed (e.g. removing a bucket's root directory).
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 405.
    MethodNotAllowed,
    /// 409: the request conflicts with the state of a resource.
    Conflict(String),
    /// 409: a field's value is taken (a duplicate username or bucket name); the field is named.
    Taken(FieldError),
    /// 411: a body of unknown length (neither `Content-Length` nor chunked).
    LengthRequired,
    /// 413.
    PayloadTooLarge,
    /// 415.
    UnsupportedMediaType,
    /// 416: a `Range` outside an object of `size` bytes.
    RangeNotSatisfiable { size: u64 },
    /// 502: the bucket's storage failed the operation; retrying may help.
    StorageFailed(String),
    /// 503: the bucket's storage could not be used.
    StorageUnavailable(String),
    /// 503: the database (or another dependency) is not answering.
    ServiceUnavailable(String),
    /// 500: a bug or an unexpected failure, already logged.
    Internal,
}

impl ApiError {
    /// Logs `error` (with `context`) and returns the opaque 500.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{context}");
        ApiError::Internal
    }

    /// A 400 about one field or parameter.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        ApiError::InvalidRequest {
            detail: format!("{field}: {message}"),
            errors: vec![FieldError { field, message }],
        }
    }

    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::InvalidRequest { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            ),
            ApiError::Validation(_) => (StatusCode::BAD_REQUEST, "validation", "Validation failed"),
            ApiError::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
            ),
            ApiError::LoginDenied => (StatusCode::FORBIDDEN, "login-denied", "Access denied"),
            ApiError::PasswordLoginDisabled => (
                StatusCode::FORBIDDEN,
                PASSWORD_DISABLED_PROBLEM,
                "Password login disabled",
            ),
            ApiError::AddressBanned { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                ADDRESS_BANNED_PROBLEM,
                "Address banned",
            ),
            ApiError::UserBanned { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                USER_BANNED_PROBLEM,
                "User banned",
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Conflict(_) | ApiError::Taken(_) => {
                (StatusCode::CONFLICT, "conflict", "Conflict")
            }
            ApiError::LengthRequired => (
                StatusCode::LENGTH_REQUIRED,
                "length-required",
                "Length required",
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::RangeNotSatisfiable { .. } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "Range not satisfiable",
            ),
            ApiError::StorageFailed(_) => {
                (StatusCode::BAD_GATEWAY, "storage-failed", "Storage failed")
            }
            ApiError::StorageUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage-unavailable",
                "Storage unavailable",
            ),
            ApiError::ServiceUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.kind();
        let (detail, errors) = match self {
            ApiError::InvalidRequest { detail, errors } => (Some(detail.clone()), errors.clone()),
            ApiError::Validation(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                (Some(detail), errors.clone())
            }
            ApiError::Unauthorized(detail) => (Some((*detail).to_owned()), vec![]),
            ApiError::LoginDenied => (
                Some("unknown user, wrong credentials or disabled user".to_owned()),
                vec![],
            ),
            ApiError::PasswordLoginDisabled => (
                Some("this user logs in with public keys only".to_owned()),
                vec![],
            ),
            ApiError::AddressBanned { retry_after } => (
                Some(format!(
                    "too many failed logins from this address; banned for {} s more",
                    retry_after.as_secs()
                )),
                vec![],
            ),
            ApiError::UserBanned { retry_after } => (
                Some(format!(
                    "too many failed password logins for this user; banned for {} s more",
                    retry_after.as_secs()
                )),
                vec![],
            ),
            ApiError::Taken(error) => (
                Some(format!("{}: {}", error.field, error.message)),
                vec![error.clone()],
            ),
            ApiError::NotFound(detail)
            | ApiError::Forbidden(detail)
            | ApiError::Conflict(detail)
            | ApiError::StorageFailed(detail)
            | ApiError::StorageUnavailable(detail)
            | ApiError::ServiceUnavailable(detail) => (Some(detail.clone()), vec![]),
            ApiError::MethodNotAllowed => (
                Some("this resource does not support the request method".to_owned()),
                vec![],
            ),
            ApiError::LengthRequired => (
                Some(
                    "send the content with Content-Length (0 for an empty file) or chunked"
                        .to_owned(),
                ),
                vec![],
            ),
            ApiError::PayloadTooLarge => (
                Some(format!(
                    "request bodies are limited to {} bytes",
                    super::MAX_BODY_BYTES
                )),
                vec![],
            ),
            ApiError::UnsupportedMediaType => (
                Some("send the body as JSON, with Content-Type: application/json".to_owned()),
                vec![],
            ),
            ApiError::RangeNotSatisfiable { size } => (
                Some(format!(
                    "the range is outside the object, which has {size} bytes"
                )),
                vec![],
            ),
            ApiError::Internal => (
                Some("the server failed; the cause is in its log".to_owned()),
                vec![],
            ),
        };
        Problem {
            kind: format!("{PROBLEM_TYPE_BASE}{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.kind();
        let body = serde_json::to_vec(&self.problem()).expect("a problem serialises");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let ApiError::RangeNotSatisfiable { size } = self
            && let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            headers.insert(header::CONTENT_RANGE, value);
        }
        if let ApiError::AddressBanned { retry_after } | ApiError::UserBanned { retry_after } = self
        {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"wharf\""),
            );
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Key realm=\"wharf\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => {
                tracing::error!(error = %e, "the database is not answering");
                ApiError::ServiceUnavailable("the database is not answering; try again".into())
            }
            _ => ApiError::internal("database operation failed", e),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::Validation(vec![e])
    }
}
