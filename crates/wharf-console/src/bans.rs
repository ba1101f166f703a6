//! Bans: the addresses and user names the defender banned after failed logins, each with a
//! button that lifts it.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::Method;
use serde::Deserialize;
use wharf_core::api::BanList;

use crate::api::enc;
use crate::session::{CheckedForm, Session};
use crate::views::{Chrome, render, time};
use crate::{Shared, failure_page, see_other};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/ui/bans", get(list))
        .route("/ui/bans/lift", post(lift))
}

struct BanRow {
    kind: String,
    target: String,
    until: String,
    ban_count: u32,
    last_failure: String,
}

#[derive(Template)]
#[template(path = "bans.html")]
struct BansPage {
    title: String,
    chrome: Chrome,
    rows: Vec<BanRow>,
    next_url: String,
}

#[derive(Deserialize)]
struct BansQuery {
    #[serde(default, rename = "pageToken")]
    page_token: String,
    #[serde(default)]
    notice: String,
}

async fn list(
    State(console): State<Shared>,
    session: Session,
    Query(query): Query<BansQuery>,
) -> Response {
    let mut uri = "/v1/bans?pageSize=100".to_owned();
    if !query.page_token.is_empty() {
        uri.push_str(&format!("&pageToken={}", enc(&query.page_token)));
    }
    let page: BanList = match console
        .api
        .json(&session.key, Method::GET, &uri, None)
        .await
    {
        Ok(page) => page,
        Err(failure) => return failure_page(&session, "bans", failure),
    };
    let notice = match query.notice.as_str() {
        "lifted" => "Ban lifted: logins are accepted again.".to_owned(),
        _ => String::new(),
    };
    let rows = page
        .items
        .into_iter()
        .map(|b| BanRow {
            kind: b.kind.as_str().to_owned(),
            target: b.target,
            until: time(Some(b.banned_until), ""),
            ban_count: b.ban_count,
            last_failure: time(Some(b.last_failure_at), ""),
        })
        .collect();
    render(&BansPage {
        title: "Bans".into(),
        chrome: Chrome::new("bans", &session).with_notice(notice),
        rows,
        next_url: page
            .next_page_token
            .map(|t| format!("/ui/bans?pageToken={}", enc(&t)))
            .unwrap_or_default(),
    })
}

/// Lifts the ban named by the form's `kind` and `target`. An address ban's target is its
/// network (`203.0.113.7/32`, `2001:db8::/64`): its first address names it to the API.
async fn lift(
    State(console): State<Shared>,
    CheckedForm { session, fields }: CheckedForm,
) -> Response {
    let target = fields.get("target");
    let uri = match fields.get("kind") {
        "address" => {
            let address = target.split('/').next().unwrap_or_default();
            format!("/v1/bans/addresses/{}", enc(address))
        }
        _ => format!("/v1/bans/users/{}", enc(target)),
    };
    match console
        .api
        .call(&session.key, Method::DELETE, &uri, None)
        .await
    {
        Ok(()) => see_other("/ui/bans?notice=lifted"),
        Err(failure) => failure_page(&session, "bans", failure),
    }
}
