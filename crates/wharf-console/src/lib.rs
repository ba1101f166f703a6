//! Wharf's web console: server-rendered pages at `/ui` for operators who are not developers.
//!
//! ```no_run
//! # async fn demo(control: axum::Router) -> std::io::Result<()> {
//! let app = wharf_console::with_console(control);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! - **Stack.** HTML rendered on the server from [askama] templates compiled into the binary,
//!   one hand-written stylesheet and one small script (copy buttons, confirmations, live event
//!   list), all embedded: the console works with no network access and builds with a plain
//!   `cargo build`. Every page works without JavaScript.
//! - **One source of truth.** Every read and change goes through the REST API, in-process
//!   ([`api::Api`]), with the operator's key: same validation, same problem documents (shown
//!   next to the field they name), same events.
//! - **Session.** See [`session`]: the API key in an http-only, SameSite=Strict cookie; a CSRF
//!   token on every change; cross-site requests refused.

mod api;
mod bans;
mod events;
mod files;
mod session;
mod users;
mod views;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use http::Method;
use serde::Deserialize;

use crate::api::{Api, Failure};
use crate::session::{CheckedForm, Fields, Session, safe_next, set_cookie};
use crate::views::{Chrome, ErrorPage, SignInPage, render};

/// What every console handler shares.
pub(crate) struct Console {
    pub api: Api,
}

pub(crate) type Shared = Arc<Console>;

/// `api` with the console mounted at `/ui`: console paths are served by the console; every
/// other request goes to `api` unchanged.
pub fn with_console(api: Router) -> Router {
    let console = Arc::new(Console {
        api: Api::new(api.clone()),
    });
    let ui = Router::new()
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/sign-in", get(sign_in_page).post(sign_in))
        .route("/ui/sign-out", post(sign_out))
        .route("/ui/assets/console.css", get(stylesheet))
        .route("/ui/assets/console.js", get(script))
        .merge(users::routes())
        .merge(files::routes())
        .merge(webhooks::routes())
        .merge(events::routes())
        .merge(bans::routes())
        .route("/ui/{*rest}", any(not_found))
        .with_state(console)
        // Uploads stream through; forms are small and read by `Bytes` (2 MB by default).
        .layer(DefaultBodyLimit::max(2 * 1024 * 1024))
        .layer(middleware::from_fn(security_headers));
    ui.fallback_service(api)
}

/// Headers every console response carries: nothing is framed, cached or loaded from elsewhere.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Pages show passwords and secrets: never keep them.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn home(session: Option<Session>) -> Redirect {
    match session {
        Some(_) => Redirect::to("/ui/users"),
        None => Redirect::to("/ui/sign-in"),
    }
}

#[derive(Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

async fn sign_in_page(headers: HeaderMap, Query(query): Query<NextQuery>) -> Response {
    render(&SignInPage {
        title: "Sign in".into(),
        chrome: Chrome::signed_out(),
        next: safe_next(&query.next).to_owned(),
        error: String::new(),
        insecure: !session::is_https(&headers) && !session::is_loopback(&headers),
    })
}

/// Checks the key against the API, then keeps it in the session cookie.
async fn sign_in(State(console): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = session::same_origin(&headers) {
        return refused.into_response();
    }
    let form = Fields::parse(&body);
    let key = form.get("apiKey").trim().to_owned();
    let next = safe_next(form.get("next")).to_owned();
    let failed = |error: &str| {
        let mut response = render(&SignInPage {
            title: "Sign in".into(),
            chrome: Chrome::signed_out(),
            next: next.clone(),
            error: error.to_owned(),
            insecure: !session::is_https(&headers) && !session::is_loopback(&headers),
        });
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
    };
    if key.is_empty() {
        return failed("Enter an API key.");
    }
    match console
        .api
        .json::<wharf_core::api::ServerInfo>(&key, Method::GET, "/v1/server", None)
        .await
    {
        Ok(_) => {
            tracing::info!("console sign-in");
            let mut response = Redirect::to(&next).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, set_cookie(&headers, &key));
            response
        }
        Err(Failure::SignedOut) => failed("This API key is not valid."),
        Err(Failure::Problem(problem)) => failed(&format!(
            "The key could not be checked: {}",
            problem.detail.unwrap_or(problem.title)
        )),
    }
}

async fn sign_out(headers: HeaderMap, _: CheckedForm) -> Response {
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&headers, ""));
    response
}

async fn not_found(session: Option<Session>) -> Response {
    let chrome = session
        .as_ref()
        .map_or_else(Chrome::signed_out, |s| Chrome::new("", s));
    let mut response = render(&ErrorPage {
        title: "Not found".into(),
        chrome,
        status: 404,
        heading: "Page not found".into(),
        detail: "There is no console page at this address.".into(),
    });
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// Long-lived and versioned by the binary: a new release changes the query string.
const ASSET_CACHE: &str = "public, max-age=86400";

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        include_str!("../assets/console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        include_str!("../assets/console.js"),
    )
        .into_response()
}

/// Turns an API failure on a page load into the page the operator sees.
pub(crate) fn failure_page(session: &Session, section: &'static str, failure: Failure) -> Response {
    match failure {
        Failure::SignedOut => signed_out(),
        Failure::Problem(problem) => {
            let status =
                StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = render(&ErrorPage {
                title: problem.title.clone(),
                chrome: Chrome::new(section, session),
                status: status.as_u16(),
                heading: problem.title.clone(),
                detail: problem.detail.unwrap_or_default(),
            });
            *response.status_mut() = if status.is_client_error() || status.is_server_error() {
                status
            } else {
                StatusCode::BAD_GATEWAY
            };
            response
        }
    }
}

/// The key stopped working (revoked): forget it and ask for another.
pub(crate) fn signed_out() -> Response {
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("wharf_console=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// After a change, back to a page (303, so that a reload does not repeat the change).
pub(crate) fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}
