//! The console's only way to change anything: the REST API, called in-process.
//!
//! Every request goes through the same router, authentication, validation and problem
//! documents as an API client's, with the operator's own API key. The console therefore
//! cannot drift from the API, and the API's problem documents are what the forms show.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use serde::de::DeserializeOwned;
use tower::ServiceExt;
use wharf_core::api::Problem;

/// Largest JSON answer the console reads (a page of 100 users with their keys fits).
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

/// The API router, called in-process.
#[derive(Clone)]
pub(crate) struct Api {
    router: Router,
}

/// Why an API call did not give what the page needs.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The API key is no longer accepted: the operator must sign in again.
    SignedOut,
    /// The API refused the request: its problem document, shown to the operator.
    Problem(Problem),
}

impl Failure {
    /// A problem the console itself found (no API call behind it).
    pub(crate) fn problem(status: StatusCode, title: &str, detail: impl Into<String>) -> Failure {
        Failure::Problem(Problem {
            kind: "about:blank".to_owned(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            errors: Vec::new(),
        })
    }
}

impl Api {
    pub(crate) fn new(router: Router) -> Api {
        Api { router }
    }

    /// Sends one request with the operator's key and returns the API's response as it is
    /// (streamed bodies stay streamed).
    pub(crate) async fn send(
        &self,
        key: &str,
        method: Method,
        uri: &str,
        body: Body,
        headers: HeaderMap,
    ) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(h) = request.headers_mut() {
            h.extend(headers);
            match HeaderValue::from_str(&format!("Bearer {key}")) {
                Ok(value) => {
                    h.insert(header::AUTHORIZATION, value);
                }
                // A key that cannot be a header value is no key of ours; the API says 401.
                Err(_) => {
                    h.remove(header::AUTHORIZATION);
                }
            }
        }
        let request = match request.body(body) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(error = %e, uri, "the console built a bad API request");
                return problem_response(StatusCode::BAD_REQUEST, "Bad request", &e.to_string());
            }
        };
        match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Calls the API with an optional JSON body and decodes its JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        key: &str,
        method: Method,
        uri: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, Failure> {
        let response = self.request(key, method, uri, body).await?;
        let bytes = read_body(response.into_body()).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure::problem(
                StatusCode::BAD_GATEWAY,
                "Unexpected answer from the API",
                format!("{uri}: {e}"),
            )
        })
    }

    /// Calls the API for its status only (204 answers).
    pub(crate) async fn call(
        &self,
        key: &str,
        method: Method,
        uri: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(), Failure> {
        self.request(key, method, uri, body).await.map(drop)
    }

    async fn request(
        &self,
        key: &str,
        method: Method,
        uri: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, Failure> {
        let mut headers = HeaderMap::new();
        let body = match body {
            Some(value) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        let response = self.send(key, method, uri, body, headers).await;
        check(response).await
    }
}

/// Passes a successful response through; turns any other into a [`Failure`].
pub(crate) async fn check(response: Response) -> Result<Response, Failure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status == StatusCode::UNAUTHORIZED {
        return Err(Failure::SignedOut);
    }
    let bytes = read_body(response.into_body()).await?;
    Err(Failure::Problem(
        serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| Problem {
            kind: "about:blank".to_owned(),
            title: status
                .canonical_reason()
                .unwrap_or("Request failed")
                .to_owned(),
            status: status.as_u16(),
            detail: Some(String::from_utf8_lossy(&bytes).chars().take(500).collect()),
            errors: Vec::new(),
        }),
    ))
}

async fn read_body(body: Body) -> Result<bytes::Bytes, Failure> {
    axum::body::to_bytes(body, MAX_JSON_BYTES)
        .await
        .map_err(|e| {
            Failure::problem(
                StatusCode::BAD_GATEWAY,
                "Unreadable answer from the API",
                e.to_string(),
            )
        })
}

fn problem_response(status: StatusCode, title: &str, detail: &str) -> Response {
    let problem = Problem {
        kind: "about:blank".to_owned(),
        title: title.to_owned(),
        status: status.as_u16(),
        detail: Some(detail.to_owned()),
        errors: Vec::new(),
    };
    let mut response = Response::new(Body::from(
        serde_json::to_string(&problem).unwrap_or_default(),
    ));
    *response.status_mut() = status;
    response
}

/// Everything but RFC 3986's unreserved characters is encoded.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment or query value, percent-encoded for a URI.
pub(crate) fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, COMPONENT).to_string()
}

/// A bucket key for the objects API path: each segment encoded, the `/` between them kept.
/// `.` and `..` segments are encoded too, so that nothing along the way resolves them.
pub(crate) fn enc_key(key: &str) -> String {
    key.split('/')
        .map(|segment| match segment {
            "." => "%2E".to_owned(),
            ".." => "%2E%2E".to_owned(),
            other => enc(other),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(enc("wh_01a-b.c~d"), "wh_01a-b.c~d");
        assert_eq!(enc("a b/c?d&e"), "a%20b%2Fc%3Fd%26e");
        assert_eq!(enc_key("alice/in/x 1.edi"), "alice/in/x%201.edi");
        assert_eq!(enc_key("a/../b/./c"), "a/%2E%2E/b/%2E/c");
    }
}
