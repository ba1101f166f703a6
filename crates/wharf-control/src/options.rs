//! [`ControlPlaneOptions`]: tuning with defaults, given to [`crate::ControlPlane::open_with`].

use std::time::Duration;

/// Optional settings of the control plane. Build with struct update syntax so that new fields
/// do not break callers: `ControlPlaneOptions { allow_private_webhook_targets: true,
/// ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Let webhooks deliver to loopback, private (RFC 1918, unique local), link-local,
    /// carrier-grade NAT, multicast or unspecified addresses. Off by default: such URLs are
    /// refused when a webhook is created or changed (IP literals and `localhost`) and on every
    /// delivery (each address the name resolves to), so whoever creates webhooks cannot reach
    /// the internal network (a cloud metadata service, an admin port on loopback).
    pub allow_private_webhook_targets: bool,
    /// The directory `file://` buckets registered through the API must lie in (see
    /// [`crate::LocalBucketRoot`]); `None`: the data directory's `buckets/`.
    pub local_bucket_root: Option<std::path::PathBuf>,
    /// Let buckets registered through the API use the host's own cloud credentials
    /// (environment, instance or pod role) and credential files (see
    /// [`wharf_vfs::host_access`]). Off: every cloud bucket brings its own.
    pub allow_host_credentials: bool,
    /// How long one delivery attempt may take (connect, send, answer).
    pub webhook_timeout: Duration,
    /// When failed deliveries are tried again, and for how long.
    pub retry: RetrySchedule,
    /// How often the delivery worker looks for due deliveries when it was not woken by a new
    /// event of this process (events recorded by other replicas are found this way).
    pub delivery_poll_interval: Duration,
    /// A pending upload event older than this is settled by the control plane itself, by
    /// looking at the object in the bucket (the gateway died between the two steps).
    pub pending_upload_timeout: Duration,
    /// How often to look for such events.
    pub reconcile_interval: Duration,
    /// Pauses a webhook that receives too many deliveries too fast (see [`LoopGuard`]);
    /// `None` turns the guard off.
    pub loop_guard: Option<LoopGuard>,
    /// Bans after failed logins (see [`crate::defender`]).
    pub defender: DefenderOptions,
}

/// The defender's rules (see [`crate::defender`]).
#[derive(Debug, Clone)]
pub struct DefenderOptions {
    /// Client addresses never counted nor banned (the operator's own networks, monitoring).
    pub safe_list: Vec<ipnet::IpNet>,
    /// Points within `window` that ban an address (its /64 for IPv6): a failed password for a
    /// user name that does not exist counts 2, any other failed password 1. 0: addresses are
    /// never banned.
    pub address_threshold: u32,
    /// Failed passwords for one user name within `window` (from any address) that ban
    /// password logins for it. 0: user names are never banned.
    pub user_threshold: u32,
    /// How far back failures count.
    pub window: Duration,
    /// The first ban's length; each ban in a row lasts twice as long as the one before.
    pub ban_time: Duration,
    /// The longest ban.
    pub max_ban_time: Duration,
}

impl Default for DefenderOptions {
    /// Loopback safe; 15 points ban an address and 30 failures a user name, within 30
    /// minutes; bans of 15 minutes, doubling up to a day.
    fn default() -> Self {
        DefenderOptions {
            safe_list: vec![
                "127.0.0.0/8".parse().expect("a valid network"),
                "::1/128".parse().expect("a valid network"),
            ],
            address_threshold: 15,
            user_threshold: 30,
            window: Duration::from_secs(30 * 60),
            ban_time: Duration::from_secs(15 * 60),
            max_ban_time: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            allow_private_webhook_targets: false,
            local_bucket_root: None,
            allow_host_credentials: false,
            webhook_timeout: Duration::from_secs(10),
            retry: RetrySchedule::default(),
            delivery_poll_interval: Duration::from_secs(1),
            pending_upload_timeout: Duration::from_secs(10 * 60),
            reconcile_interval: Duration::from_secs(60),
            loop_guard: Some(LoopGuard::default()),
            defender: DefenderOptions::default(),
        }
    }
}

/// Exponential backoff with jitter: the n-th retry waits a random time between half and all
/// of `first_delay × 2^(n-1)` (at most `max_delay`); no retry is scheduled later than
/// `give_up_after` after the delivery was created (or retried through the API): then it is
/// dead.
#[derive(Debug, Clone, Copy)]
pub struct RetrySchedule {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub give_up_after: Duration,
}

impl Default for RetrySchedule {
    /// 5 s, 10 s, 20 s, … up to hourly, for 24 hours (about 30 attempts).
    fn default() -> Self {
        RetrySchedule {
            first_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(60 * 60),
            give_up_after: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl RetrySchedule {
    /// The wait before the next attempt after `attempts` failed ones (1 or more), without jitter.
    pub fn delay_after(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        self.first_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay)
    }
}

/// A webhook whose handler writes files back into the prefix it watches would trigger itself
/// forever. The guard counts the deliveries created for each webhook: more than
/// `max_deliveries` within `window` pauses the webhook (`pausedReason` in the API, a warning in
/// the log). Deliveries keep being recorded while it is paused, and are sent once it is enabled
/// again (`PATCH {"enabled": true}`): nothing is lost.
#[derive(Debug, Clone, Copy)]
pub struct LoopGuard {
    pub max_deliveries: u32,
    pub window: Duration,
}

impl Default for LoopGuard {
    /// 1000 deliveries a minute.
    fn default() -> Self {
        LoopGuard {
            max_deliveries: 1000,
            window: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.delay_after(1), Duration::from_secs(5));
        assert_eq!(schedule.delay_after(2), Duration::from_secs(10));
        assert_eq!(schedule.delay_after(4), Duration::from_secs(40));
        assert_eq!(schedule.delay_after(20), Duration::from_secs(3600));
        assert_eq!(schedule.delay_after(u32::MAX), Duration::from_secs(3600));
    }
}
