//! The console session: the operator's API key in an http-only cookie, and CSRF defences.
//!
//! The cookie holds the API key itself (`HttpOnly`, `SameSite=Strict`, `Path=/ui`, and
//! `Secure` behind an HTTPS proxy), so the console keeps no state: any control-plane replica
//! serves any page, and revoking the key signs every console session out at once. Every
//! state-changing request must carry a CSRF token derived from the key (in a form field, the
//! query string or the `x-csrf-token` header), and is refused when the browser says it comes
//! from another site (`Origin`, `Sec-Fetch-Site`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::enc;

/// The cookie that carries the API key.
pub(crate) const COOKIE: &str = "wharf_console";

/// A signed-in operator.
#[derive(Clone)]
pub(crate) struct Session {
    /// The API key every API call of this request is made with.
    pub key: String,
    /// The token forms must send back.
    pub csrf: String,
}

impl Session {
    pub(crate) fn new(key: String) -> Session {
        let csrf = csrf_token(&key);
        Session { key, csrf }
    }

    /// Refuses a state-changing request that lacks this session's CSRF token or that the
    /// browser says comes from another site.
    pub(crate) fn verify(&self, headers: &HeaderMap, token: Option<&str>) -> Result<(), Refused> {
        same_origin(headers)?;
        let header_token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        let presented = token.or(header_token).unwrap_or_default();
        if bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(Refused(
                "The form was stale or did not come from this console. Go back, reload the page and try again.",
            ))
        }
    }
}

/// `hex(SHA-256("wharf-console-csrf:" ‖ key))`, truncated: only someone who knows the key
/// can compute it, and such a person needs no forged request.
fn csrf_token(key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"wharf-console-csrf:")
        .chain_update(key.as_bytes())
        .finalize();
    hex::encode(&digest[..16])
}

/// Refuses requests the browser marks as cross-site, or whose `Origin` is another host.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), Refused> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site == "cross-site"
    {
        return Err(Refused("Requests from other sites are refused."));
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(Refused("Requests from other sites are refused."))
    }
}

/// A state-changing request refused by the CSRF defences (403).
#[derive(Debug)]
pub(crate) struct Refused(&'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (StatusCode::FORBIDDEN, self.0).into_response()
    }
}

/// The API key from the request's cookie, if any.
fn cookie_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
        .filter(|key| !key.is_empty())
}

/// Whether the browser reached us over HTTPS (through a proxy that says so).
pub(crate) fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// Whether the page was asked for on this machine (the key never leaves it in clear).
pub(crate) fn is_loopback(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `Set-Cookie` value that signs `key` in (or, empty, out).
pub(crate) fn set_cookie(headers: &HeaderMap, key: &str) -> HeaderValue {
    let secure = if is_https(headers) { "; Secure" } else { "" };
    let lifetime = if key.is_empty() { "; Max-Age=0" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict{secure}{lifetime}",
        enc(key)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("wharf_console=; Path=/ui; Max-Age=0"))
}

/// Where a page that needs a session sends a visitor without one.
pub(crate) fn sign_in_redirect(next: &str) -> Response {
    Redirect::to(&format!("/ui/sign-in?next={}", enc(next))).into_response()
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match cookie_key(&parts.headers) {
            Some(key) => Ok(Session::new(key)),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/ui");
                Err(sign_in_redirect(next))
            }
        }
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(cookie_key(&parts.headers).map(Session::new))
    }
}

/// A state-changing form post: the signed-in operator's session and the form's fields,
/// extracted only once the CSRF token and the origin checked out. Every console handler that
/// changes something takes one, so none can forget the check. Without a session it redirects
/// to sign-in; a failed check is a 403 ([`Refused`]).
pub(crate) struct CheckedForm {
    pub session: Session,
    pub fields: Fields,
}

impl<S: Send + Sync> FromRequest<S> for CheckedForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let headers = parts.headers.clone();
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields = Fields::parse(&body);
        session
            .verify(&headers, Some(fields.get("csrf")))
            .map_err(IntoResponse::into_response)?;
        Ok(CheckedForm { session, fields })
    }
}

/// A URL-encoded form, with repeated fields (checkboxes) kept.
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    pub(crate) fn parse(body: &[u8]) -> Fields {
        Fields(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, or `""`.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    /// Every value of `name`, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

/// Only local console paths may be redirected to after sign-in (no open redirect).
pub(crate) fn safe_next(next: &str) -> &str {
    if next.starts_with("/ui") && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/ui/users"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn cookie_round_trip() {
        let key = "wk_abc+/=;x";
        let value = set_cookie(&HeaderMap::new(), key);
        let value = value.to_str().unwrap();
        assert!(value.contains("HttpOnly") && value.contains("SameSite=Strict"));
        assert!(!value.contains("Secure"), "plain HTTP gets no Secure flag");
        let pair = value.split(';').next().unwrap().to_owned();
        let mut map = HeaderMap::new();
        map.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
        );
        assert_eq!(cookie_key(&map).as_deref(), Some(key));
        let secure = set_cookie(&headers(&[("x-forwarded-proto", "https")]), key);
        assert!(secure.to_str().unwrap().contains("; Secure"));
    }

    #[test]
    fn csrf_and_origin() {
        let session = Session::new("k1".into());
        let other = Session::new("k2".into());
        assert_ne!(session.csrf, other.csrf);
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(session.verify(&same, Some(&session.csrf)).is_ok());
        assert!(session.verify(&same, Some(&other.csrf)).is_err());
        assert!(session.verify(&same, None).is_err());
        let cross = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(session.verify(&cross, Some(&session.csrf)).is_err());
        let site = headers(&[("host", "h"), ("sec-fetch-site", "cross-site")]);
        assert!(session.verify(&site, Some(&session.csrf)).is_err());
        let mut by_header = headers(&[("host", "h")]);
        by_header.insert(
            "x-csrf-token",
            HeaderValue::from_str(&session.csrf).unwrap(),
        );
        assert!(session.verify(&by_header, None).is_ok());
    }

    /// The extractor every state-changing handler takes: no cookie is a redirect to sign-in,
    /// a missing or foreign token or another site's origin a 403, and only then the fields.
    #[tokio::test]
    async fn checked_form_extractor() {
        let session = Session::new("key-1".into());
        let post = |cookie: Option<&str>, origin: &str, body: String| {
            let mut request = Request::post("/ui/users/alice/delete")
                .header(header::HOST, "127.0.0.1:8080")
                .header(header::ORIGIN, origin);
            if let Some(cookie) = cookie {
                request = request.header(header::COOKIE, format!("{COOKIE}={cookie}"));
            }
            request.body(axum::body::Body::from(body)).unwrap()
        };
        let status = |result: Result<CheckedForm, Response>| match result {
            Ok(_) => StatusCode::OK,
            Err(response) => response.status(),
        };
        let good = format!("csrf={}&name=a+b", session.csrf);
        let here = "http://127.0.0.1:8080";

        let Ok(form) =
            CheckedForm::from_request(post(Some("key-1"), here, good.clone()), &()).await
        else {
            panic!("a same-origin form with the session's token was refused");
        };
        assert_eq!(form.session.key, "key-1");
        assert_eq!(form.fields.get("name"), "a b");

        let no_cookie = CheckedForm::from_request(post(None, here, good.clone()), &()).await;
        assert_eq!(status(no_cookie), StatusCode::SEE_OTHER);
        let other_key = CheckedForm::from_request(post(Some("key-2"), here, good.clone()), &());
        assert_eq!(status(other_key.await), StatusCode::FORBIDDEN);
        let no_token = CheckedForm::from_request(post(Some("key-1"), here, "name=x".into()), &());
        assert_eq!(status(no_token.await), StatusCode::FORBIDDEN);
        let elsewhere =
            CheckedForm::from_request(post(Some("key-1"), "http://evil.example", good), &());
        assert_eq!(status(elsewhere.await), StatusCode::FORBIDDEN);
    }

    #[test]
    fn redirects_stay_local() {
        assert_eq!(safe_next("/ui/users?search=a"), "/ui/users?search=a");
        assert_eq!(safe_next("https://evil.example/ui"), "/ui/users");
        assert_eq!(safe_next("//evil.example"), "/ui/users");
        assert_eq!(safe_next("/ui\\@evil"), "/ui/users");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(is_loopback(&headers(&[("host", "localhost")])));
        assert!(is_loopback(&headers(&[("host", "[::1]:8080")])));
        assert!(!is_loopback(&headers(&[("host", "files.example.com")])));
    }
}
