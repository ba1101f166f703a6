//! The bodies of `/v1/bans`: the defender's bans after failed logins. Re-exported from
//! [`crate::api`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a ban applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BanKind {
    /// Every login from a client address (an IPv4 address, or an IPv6 /64) is refused.
    Address,
    /// Password logins for a user name are refused (public keys still work).
    User,
}

impl BanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BanKind::Address => "address",
            BanKind::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<BanKind> {
        match text {
            "address" => Some(BanKind::Address),
            "user" => Some(BanKind::User),
            _ => None,
        }
    }
}

impl std::fmt::Display for BanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ban {
    pub kind: BanKind,
    /// `203.0.113.7/32` or `2001:db8:1:2::/64` for an address; the user name as typed for a
    /// user (unknown names are banned too, so that a ban tells nobody whether a user exists).
    #[schema(example = "203.0.113.7/32")]
    pub target: String,
    /// When the ban ends on its own.
    pub banned_until: DateTime<Utc>,
    /// Bans of this target in a row, this one included: each lasts twice as long as the one
    /// before (up to the longest ban); a target without a ban for a day starts again at one.
    pub ban_count: u32,
    /// The last failed login counted against the target.
    pub last_failure_at: DateTime<Utc>,
}

/// One page of bans, by kind and target.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BanList {
    pub items: Vec<Ban>,
    /// Pass as `pageToken` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}
