//! [`Defender`]: temporary bans after failed logins, kept in the database so that every
//! control-plane replica, and so every gateway, enforces the same ones.
//!
//! Every login passes through [`crate::login::DatabaseLogin`], which asks the defender first
//! ([`Defender::check`]) and tells it about each failed password ([`Defender::failed`]):
//!
//! - **Addresses.** A failed password scores 1 point against the client's address (its /64 for
//!   IPv6, [`wharf_core::admission::client_network`]), 2 if the user name does not exist (a
//!   guess at names). At [`DefenderOptions::address_threshold`] points within
//!   [`DefenderOptions::window`] the address is banned: every login from it is refused, before
//!   its secret is looked at (so no argon2 run), and gateways turn its new connections away.
//! - **User names.** [`DefenderOptions::user_threshold`] failed passwords for one name within
//!   the window, from any addresses (a spread-out guess), ban password logins for that name;
//!   its public keys still work, so a partner on keys is never locked out. Names that do not
//!   exist are counted and banned alike, so a ban tells nobody whether a user exists.
//! - Each ban of a target lasts twice as long as its previous one, from
//!   [`DefenderOptions::ban_time`] up to [`DefenderOptions::max_ban_time`]; a target without a
//!   ban for [`FORGIVEN_AFTER`] starts again at the first length.
//! - Addresses on [`DefenderOptions::safe_list`] are neither counted nor banned, for addresses
//!   nor for user names.
//! - Public-key failures are not counted: a key cannot be guessed, and clients routinely offer
//!   keys that are not the user's.
//!
//! Operators see and lift bans through `/v1/bans` ([`crate::store::BanRecord`]).

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use wharf_core::api::BanKind;
use wharf_core::{LoginError, Username};

use crate::metrics::Metrics;
use crate::options::DefenderOptions;
use crate::store::{self, Store, StoreError};

/// A target without a ban for this long starts again at the first ban's length.
pub const FORGIVEN_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Rows without a failure or a ban for this long are deleted.
const FORGOTTEN_AFTER: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// Bans after failed logins. See the module documentation.
#[derive(Clone)]
pub struct Defender {
    store: Store,
    options: DefenderOptions,
    metrics: Metrics,
}

/// A ban that was just imposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBan {
    pub kind: BanKind,
    pub target: String,
    pub until: DateTime<Utc>,
    /// Its number in a row of bans.
    pub ban_count: u32,
}

/// The target an address counts under: its network (`203.0.113.7/32`, `2001:db8::/64`).
pub fn address_target(ip: IpAddr) -> String {
    wharf_core::admission::client_network(ip).to_string()
}

/// The target a user name counts under: the name as typed (logins match names exactly); `None` for a
/// name no user can have (those score the address only).
pub fn user_target(username: &str) -> Option<String> {
    Username::parse(username).ok().map(|u| u.to_string())
}

fn duration_until(until: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (until - now)
        .to_std()
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}

/// The length of the `ban_count`-th ban in a row (the first is 1).
fn ban_length(options: &DefenderOptions, ban_count: u32) -> Duration {
    let doublings = ban_count.saturating_sub(1).min(31);
    options
        .ban_time
        .checked_mul(1u32 << doublings)
        .unwrap_or(Duration::MAX)
        .min(options.max_ban_time)
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Defender {
    pub fn new(store: Store, options: DefenderOptions, metrics: Metrics) -> Self {
        Defender {
            store,
            options,
            metrics,
        }
    }

    /// `ip`, if it is counted (parsed and not on the safe list).
    fn counted(&self, ip: Option<IpAddr>) -> Option<IpAddr> {
        let ip = ip?.to_canonical();
        (!self.options.safe_list.iter().any(|net| net.contains(&ip))).then_some(ip)
    }

    /// Refuses a login from a banned address, or a password login for a banned user name.
    pub async fn check(
        &self,
        ip: Option<IpAddr>,
        username: &str,
        password: bool,
    ) -> Result<(), LoginError> {
        let Some(ip) = self.counted(ip) else {
            return Ok(());
        };
        let address = address_target(ip);
        let user = if password {
            user_target(username)
        } else {
            None
        };
        let now = store::now();
        let bans = self
            .store
            .active_bans(Some(&address), user.as_deref(), now)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "login: cannot read the bans");
                LoginError::Unavailable("the user database is unavailable".into())
            })?;
        let ended = |kind| {
            bans.iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, until)| *until)
                .max()
        };
        if let Some(until) = ended(BanKind::Address) {
            return Err(LoginError::AddressBanned {
                retry_after: duration_until(until, now),
            });
        }
        if let Some(until) = ended(BanKind::User) {
            return Err(LoginError::UserBanned {
                retry_after: duration_until(until, now),
            });
        }
        Ok(())
    }

    /// Counts a failed password from `ip` for `username` (`known`: the user exists). Returns
    /// the bans this failure imposed. A database failure is logged: the login was refused
    /// anyway.
    pub async fn failed(&self, ip: Option<IpAddr>, username: &str, known: bool) -> Vec<NewBan> {
        let Some(ip) = self.counted(ip) else {
            return Vec::new();
        };
        let mut imposed = Vec::new();
        let address = (
            BanKind::Address,
            Some(address_target(ip)),
            if known { 1 } else { 2 },
            self.options.address_threshold,
        );
        let user = (
            BanKind::User,
            user_target(username),
            1,
            self.options.user_threshold,
        );
        for (kind, target, points, threshold) in [address, user] {
            let Some(target) = target else { continue };
            if threshold == 0 {
                continue;
            }
            match self.count(kind, &target, points, threshold).await {
                Ok(Some(ban)) => imposed.push(ban),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(kind = %kind, %target, error = %e, "cannot count a failed login")
                }
            }
        }
        imposed
    }

    async fn count(
        &self,
        kind: BanKind,
        target: &str,
        points: u32,
        threshold: u32,
    ) -> Result<Option<NewBan>, StoreError> {
        let now = store::now();
        let window_start = now - chrono_duration(self.options.window);
        let score = self
            .store
            .add_login_failure(kind, target, points, now, window_start)
            .await?;
        if score.score < threshold {
            return Ok(None);
        }
        let forgiven = now - chrono_duration(FORGIVEN_AFTER);
        let ban_count = match score.banned_until {
            Some(ended) if ended > forgiven => score.bans.saturating_add(1),
            _ => 1,
        };
        let until = now + chrono_duration(ban_length(&self.options, ban_count));
        if !self
            .store
            .ban_login_target(kind, target, threshold, ban_count, until, now)
            .await?
        {
            return Ok(None);
        }
        tracing::warn!(kind = %kind, %target, ban_count, %until, "banned after failed logins");
        self.metrics.observe_ban(kind.as_str());
        Ok(Some(NewBan {
            kind,
            target: target.to_owned(),
            until,
            ban_count,
        }))
    }

    /// Deletes the scores nobody needs any more (no failure nor ban for two days).
    pub async fn forget_old(&self) -> Result<u64, StoreError> {
        let before = store::now() - chrono_duration(FORGOTTEN_AFTER.max(self.options.window));
        self.store.forget_login_scores(before).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ban_in_a_row_lasts_twice_as_long_up_to_the_longest() {
        let options = DefenderOptions::default();
        let minutes = |n: u64| Duration::from_secs(n * 60);
        assert_eq!(ban_length(&options, 1), minutes(15));
        assert_eq!(ban_length(&options, 2), minutes(30));
        assert_eq!(ban_length(&options, 3), minutes(60));
        assert_eq!(ban_length(&options, 7), minutes(15 * 64));
        assert_eq!(ban_length(&options, 8), minutes(24 * 60), "capped");
        assert_eq!(ban_length(&options, u32::MAX), minutes(24 * 60));
        assert_eq!(ban_length(&options, 0), minutes(15));
    }

    #[test]
    fn addresses_count_by_network_and_names_as_stored() {
        assert_eq!(address_target("192.0.2.7".parse().unwrap()), "192.0.2.7/32");
        assert_eq!(
            address_target("2001:db8:1:2::7".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(user_target("Alice").as_deref(), Some("Alice"));
        assert_eq!(user_target("not a name!"), None);
    }
}
