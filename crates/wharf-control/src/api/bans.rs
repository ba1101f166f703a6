//! `/v1/bans`: the defender's bans in force (see [`crate::defender`]), listed and lifted.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;
use wharf_core::api::{Ban, BanKind, BanList, Problem};

use super::SharedState;
use super::error::ApiError;
use super::extract::{UserPath, bad_page_token, page_size};
use crate::defender::address_target;
use crate::store::{self, BanRecord};

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;

/// Query parameters of `GET /v1/bans`.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the parameters; they are parsed by hand (ListBansParams::parse).
pub struct ListBansParams {
    /// `address` or `user`: bans of that kind only.
    kind: Option<BanKind>,
    /// How many bans per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    page_size: Option<u32>,
    /// `nextPageToken` of the previous page (of the same kind).
    page_token: Option<String>,
}

struct ListQuery {
    kind: Option<BanKind>,
    page_size: u32,
    after: Option<(BanKind, String)>,
}

impl ListBansParams {
    /// Parsed by hand so that a bad value is a 400 naming the parameter.
    fn parse(query: Option<&str>) -> Result<ListQuery, ApiError> {
        let mut parsed = ListQuery {
            kind: None,
            page_size: DEFAULT_PAGE_SIZE,
            after: None,
        };
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*name {
                "kind" if value.is_empty() => parsed.kind = None,
                "kind" => {
                    parsed.kind = Some(BanKind::parse(&value).ok_or_else(|| {
                        ApiError::invalid_field("kind", "must be 'address' or 'user'")
                    })?);
                }
                "pageSize" => {
                    parsed.page_size = page_size(&value, MAX_PAGE_SIZE)?;
                }
                "pageToken" if value.is_empty() => parsed.after = None,
                "pageToken" => {
                    parsed.after = Some(decode_page_token(&value).ok_or_else(bad_page_token)?);
                }
                _ => {}
            }
        }
        Ok(parsed)
    }
}

fn encode_page_token(last: &BanRecord) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}\n{}", last.kind, last.target))
}

fn decode_page_token(token: &str) -> Option<(BanKind, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (kind, target) = text.split_once('\n')?;
    Some((BanKind::parse(kind)?, target.to_owned()))
}

fn ban_view(record: BanRecord) -> Option<Ban> {
    Some(Ban {
        kind: record.kind,
        target: record.target,
        banned_until: record.banned_until?,
        ban_count: record.bans,
        last_failure_at: record.last_failure_at,
    })
}

/// List bans
///
/// The bans in force after failed logins, by kind and target: client addresses (every login
/// refused) and user names (password logins refused; public keys still work). Bans hold on
/// every gateway. Pass `nextPageToken` as `pageToken` for the next page.
#[utoipa::path(
    get,
    path = "/v1/bans",
    tag = "bans",
    operation_id = "listBans",
    params(ListBansParams),
    responses(
        (status = 200, description = "One page of bans", body = BanList),
        (status = 400, description = "Bad kind, pageSize or pageToken (the parameter is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn list_bans(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Json<BanList>, ApiError> {
    let query = ListBansParams::parse(query.as_deref())?;
    let after = query.after.as_ref().map(|(k, t)| (*k, t.as_str()));
    // One more than asked tells whether another page follows.
    let mut records = state
        .store
        .list_bans(query.kind, after, query.page_size + 1, store::now())
        .await?;
    let more = records.len() > query.page_size as usize;
    records.truncate(query.page_size as usize);
    let next_page_token = more
        .then(|| records.last().map(encode_page_token))
        .flatten();
    Ok(Json(BanList {
        items: records.into_iter().filter_map(ban_view).collect(),
        next_page_token,
    }))
}

/// Lift an address's ban
///
/// Logins from the address (any address in a banned IPv6 /64) are accepted again, on every
/// gateway within a minute, and its failed logins are forgotten.
#[utoipa::path(
    delete,
    path = "/v1/bans/addresses/{address}",
    tag = "bans",
    operation_id = "liftAddressBan",
    params(("address" = String, Path, description = "An IPv4 or IPv6 address (for an IPv6 ban, any address in its /64)")),
    responses(
        (status = 204, description = "Lifted"),
        (status = 400, description = "Not an IP address", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The address is not banned", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn lift_address_ban(
    State(state): State<SharedState>,
    Path(address): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ip: std::net::IpAddr = address
        .parse()
        .map_err(|_| ApiError::invalid_field("address", "must be an IPv4 or IPv6 address"))?;
    let target = address_target(ip);
    lift(&state, BanKind::Address, &target).await
}

/// Lift a user name's ban
///
/// Password logins for the user name are accepted again, and its failed logins are forgotten.
#[utoipa::path(
    delete,
    path = "/v1/bans/users/{username}",
    tag = "bans",
    operation_id = "liftUserBan",
    params(("username" = String, Path, description = "The banned user name")),
    responses(
        (status = 204, description = "Lifted"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The user name is not banned", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn lift_user_ban(
    State(state): State<SharedState>,
    UserPath(username): UserPath,
) -> Result<StatusCode, ApiError> {
    lift(&state, BanKind::User, username.as_str()).await
}

async fn lift(state: &SharedState, kind: BanKind, target: &str) -> Result<StatusCode, ApiError> {
    if state.store.lift_ban(kind, target, store::now()).await? {
        tracing::info!(kind = %kind, %target, "ban lifted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("{target} is not banned")))
    }
}
