//! Extractors that turn bad input into [`ApiError`]s naming the offending field, instead of
//! axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wharf_core::api::FieldError;
use wharf_core::{BucketName, Username};

use super::SharedState;
use super::error::ApiError;

/// A JSON request body. Wrong content type → 415; too large → 413; not JSON, a wrong type, an
/// unknown or missing field, or a value its type rejects (e.g. a bad `homeDirectory`) → 400
/// naming the field.
pub struct JsonBody<T>(pub T);

/// An optional JSON request body: an empty body gives `None`.
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(request, state).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(request.headers());
        let bytes = read_body(request, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(None));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        // `null` is no body too (the schema of an optional body allows it).
        if bytes.trim_ascii() == b"null" {
            return Ok(OptionalJsonBody(None));
        }
        Ok(OptionalJsonBody(Some(parse_json(&bytes)?)))
    }
}

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            _ => ApiError::InvalidRequest {
                detail: format!("cannot read the request body: {}", rejection.body_text()),
                errors: vec![],
            },
        })
}

/// `application/json` or any `application/*+json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserialises `bytes`, naming the field at fault when it fails.
/// The `pageSize` query parameter of a list: an integer from 1 to `max`, else a 400 naming it.
pub fn page_size(value: &str, max: u32) -> Result<u32, ApiError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::invalid_field("pageSize", format!("must be an integer from 1 to {max}"))
        })
}

/// The 400 of a `pageToken` this API did not hand out.
pub fn bad_page_token() -> ApiError {
    ApiError::invalid_field(
        "pageToken",
        "not a page token from this API; pass nextPageToken as it came",
    )
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every request body is an object; serde would read a struct from an array too
    // (`[null, null]` as an update that changes nothing).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidRequest {
            detail: "the body must be a JSON object".to_owned(),
            errors: vec![],
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
    deserializer.end().map_err(|e| ApiError::InvalidRequest {
        detail: format!("the body is not valid JSON: {e}"),
        errors: vec![],
    })?;
    Ok(value)
}

fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = error.inner();
    if inner.classify() != Category::Data {
        return ApiError::InvalidRequest {
            detail: format!("the body is not valid JSON: {inner}"),
            errors: vec![],
        };
    }
    // serde_json appends the position; the field name says more to an API user.
    let message = inner.to_string();
    let suffix = format!(" at line {} column {}", inner.line(), inner.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
    let mut field = field_path(error.path());
    // For a missing field (and, depending on where serde stopped, an unknown one) the path
    // is the parent object: name the field itself.
    for marker in ["unknown field `", "missing field `"] {
        let Some(name) = message
            .strip_prefix(marker)
            .and_then(|rest| rest.split('`').next())
        else {
            continue;
        };
        let names_it = field == name || field.ends_with(&format!(".{name}"));
        if !names_it {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(name);
        }
    }
    if field.is_empty() {
        return ApiError::InvalidRequest {
            detail: format!("the body does not match the expected shape: {message}"),
            errors: vec![],
        };
    }
    ApiError::InvalidRequest {
        detail: format!("{field}: {message}"),
        errors: vec![FieldError { field, message }],
    }
}

/// `passwordOptions.length`, `publicKeys[1]`: the JSON path as API users write it.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// The `{username}` path parameter. A string that cannot be a username cannot name a user: 404.
pub struct UserPath(pub Username);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || ApiError::NotFound("no such user".into());
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        Username::parse(&raw).map(UserPath).map_err(|_| not_found())
    }
}

/// The `{bucketName}` path parameter; an invalid name is a 404.
pub struct BucketPath(pub BucketName);

impl<S: Send + Sync> FromRequestParts<S> for BucketPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || ApiError::NotFound("no such bucket".into());
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        BucketName::parse(&raw)
            .map(BucketPath)
            .map_err(|_| not_found())
    }
}

/// The key in `Authorization: Key <k>` or `Authorization: Bearer <k>`.
pub fn presented_api_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    let known = scheme.eq_ignore_ascii_case("key") || scheme.eq_ignore_ascii_case("bearer");
    (known && !key.is_empty()).then_some(key)
}

/// Proof that the caller is a gateway: `Authorization: Bearer <gateway token>`.
pub struct GatewayAuth;

impl FromRequestParts<SharedState> for GatewayAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let Some(presented) = presented else {
            return Err(ApiError::Unauthorized(
                "send the gateway token as Authorization: Bearer <token>",
            ));
        };
        // Compare digests in constant time: equal lengths, and no early exit that would let a
        // caller find the token byte by byte.
        let digest = Sha256::digest(presented.as_bytes());
        if state.gateway_token_digest.is_empty()
            || !bool::from(digest[..].ct_eq(&state.gateway_token_digest[..]))
        {
            return Err(ApiError::Unauthorized("wrong gateway token"));
        }
        Ok(GatewayAuth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::api::CreateUserRequest;

    fn field_of(body: &str) -> (String, String) {
        match parse_json::<CreateUserRequest>(body.as_bytes()) {
            Err(ApiError::InvalidRequest { errors, .. }) if errors.len() == 1 => {
                (errors[0].field.clone(), errors[0].message.clone())
            }
            Err(other) => panic!("unexpected error {other:?} for {body}"),
            Ok(_) => panic!("{body} parsed"),
        }
    }

    #[test]
    fn names_the_field() {
        let (field, message) = field_of(r#"{"description":"d","homeDirectory":"/a/../b"}"#);
        assert_eq!(field, "homeDirectory");
        assert_eq!(message, "must not contain '.' or '..' segments");
        assert_eq!(
            field_of(r#"{"description":"d","homeDirectory":"/a","bogus":1}"#).0,
            "bogus"
        );
        assert_eq!(
            field_of(
                r#"{"description":"d","homeDirectory":"/a","passwordOptions":{"length":"x"}}"#
            )
            .0,
            "passwordOptions.length"
        );
        assert_eq!(
            field_of(r#"{"description":"d","homeDirectory":"/a","passwordOptions":{"size":1}}"#).0,
            "passwordOptions.size"
        );
        assert_eq!(
            field_of(r#"{"description":"d","homeDirectory":"/a","publicKeys":["a",2]}"#).0,
            "publicKeys[1]"
        );
        // A nested object given as an array (serde would read a struct from one).
        assert_eq!(
            field_of(r#"{"description":"d","homeDirectory":"/a","passwordOptions":[16]}"#).0,
            "passwordOptions"
        );
        let filter: Result<wharf_core::api::CreateWebhookRequest, _> = parse_json(
            br#"{"url":"https://example.com/","events":["file.created"],"filter":[null,null]}"#,
        );
        assert!(filter.is_err(), "a filter must be an object");
        let filter: wharf_core::api::CreateWebhookRequest = parse_json(
            br#"{"url":"https://example.com/","events":["file.created"],"filter":null}"#,
        )
        .unwrap();
        assert!(filter.filter.is_none());
        assert_eq!(field_of(r#"{"homeDirectory":"/a"}"#).0, "description");
        assert_eq!(
            field_of(r#"{"description":"d","homeDirectory":"/a","username":"a b"}"#).0,
            "username"
        );
    }

    #[test]
    fn syntax_errors_are_400_without_field() {
        for body in ["{", "{\"description\":", "[1]x", "{} {}"] {
            match parse_json::<CreateUserRequest>(body.as_bytes()) {
                Err(ApiError::InvalidRequest { .. }) => {}
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn api_key_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_api_key(&headers), None);
        headers.insert(header::AUTHORIZATION, "Key abc".parse().unwrap());
        assert_eq!(presented_api_key(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(presented_api_key(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented_api_key(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer".parse().unwrap());
        assert_eq!(presented_api_key(&headers), None);
    }
}
