//! [`Admission`]: which new connections a gateway takes before they have logged in.
//!
//! A connection that has not logged in costs the gateway a slot, a handshake and, for a
//! password, an argon2 run, and gives nothing back. Without a bound one address could hold
//! every slot with idle sockets and lock every partner out. So, per gateway listener:
//!
//! - at most [`AdmissionLimits::per_address`] connections from one client address may be in the
//!   login phase at once (an IPv6 address counts by its /64, which one host usually owns
//!   whole); loopback is exempt (the operator's own tools, and benchmarks);
//! - past [`Startups::start`] connections in the login phase in all, a new one is refused with
//!   a probability that grows from [`Startups::rate`] percent to 100% at [`Startups::full`]
//!   (OpenSSH's `MaxStartups` random early drop): a flood from many addresses slows down
//!   instead of taking every slot, and a partner retrying still gets in.
//!
//! A connection leaves the login phase when it logs in ([`PreAuth::logged_in`]) or ends.
//!
//! When the control plane answers a login with [`crate::LoginError::AddressBanned`], the
//! gateway notes the ban here ([`Admission::ban`]) and turns new connections from that address
//! away at once, without a handshake or a question to the control plane, for at most
//! [`MAX_LOCAL_BAN`] at a time (so a ban lifted through the API ends here soon after).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use rand::RngExt;

/// OpenSSH's `MaxStartups start:rate:full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startups {
    pub start: usize,
    /// Percent refused at `start`, growing linearly to 100 at `full`.
    pub rate: u8,
    pub full: usize,
}

impl std::str::FromStr for Startups {
    type Err = String;

    /// `start:rate:full` (e.g. `128:30:512`), or a single number (refuse all past it).
    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{s}' is not a number"))
        };
        let startups = match parts.as_slice() {
            [full] => {
                let full = number(full)?;
                Startups {
                    start: full,
                    rate: 100,
                    full,
                }
            }
            [start, rate, full] => Startups {
                start: number(start)?,
                rate: u8::try_from(number(rate)?)
                    .ok()
                    .filter(|rate| *rate <= 100)
                    .ok_or("the rate is a percentage, 0 to 100")?,
                full: number(full)?,
            },
            _ => return Err("expected start:rate:full, e.g. 128:30:512".to_owned()),
        };
        if startups.start == 0 || startups.start > startups.full {
            return Err("expected 0 < start <= full".to_owned());
        }
        Ok(startups)
    }
}

/// The bounds of an [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connections in the login phase from one address (see the module docs).
    pub per_address: usize,
    pub startups: Startups,
}

impl Default for AdmissionLimits {
    /// 10 per address; random early drop from 128 (30%) to 512 connections in the login phase.
    fn default() -> Self {
        AdmissionLimits {
            per_address: 10,
            startups: Startups {
                start: 128,
                rate: 30,
                full: 512,
            },
        }
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many connections from your address are logging in (at most {0}); retry later")]
    PerAddress(usize),
    #[error("the server is busy with other logins; retry in a moment")]
    Startups,
    #[error("too many failed logins from your address; retry later")]
    Banned,
}

/// How long a gateway turns an address away on its own after the control plane said it is
/// banned; past this it asks again.
pub const MAX_LOCAL_BAN: Duration = Duration::from_secs(60);

/// Most banned addresses a gateway remembers; past it, expired ones are dropped, then new
/// bans are not remembered (the control plane still refuses their logins).
const MAX_LOCAL_BANS: usize = 65_536;

/// The connections of one listener that are in the login phase. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: AdmissionLimits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Addresses (by [`address_key`]) the control plane said are banned, until when.
    banned: HashMap<IpAddr, Instant>,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            inner: Arc::new(Inner {
                limits,
                state: Mutex::default(),
            }),
        }
    }

    /// Takes a new connection from `client` into the login phase, or says why not.
    pub fn admit(&self, client: IpAddr) -> Result<PreAuth, Refusal> {
        self.admit_with(client, rand::rng().random_range(0..100u8))
    }

    /// [`Admission::admit`] with the random draw (0 to 99) given.
    fn admit_with(&self, client: IpAddr, draw: u8) -> Result<PreAuth, Refusal> {
        let limits = self.inner.limits;
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Startups { start, rate, full } = limits.startups;
        if state.total >= full {
            return Err(Refusal::Startups);
        }
        if state.total >= start {
            // From `rate` percent at `start` to 100 at `full`.
            let span = (full - start).max(1);
            let refused =
                usize::from(rate) + (100 - usize::from(rate)) * (state.total - start) / span;
            if usize::from(draw) < refused {
                return Err(Refusal::Startups);
            }
        }
        let key = address_key(client);
        if let Some(key) = key
            && let Some(until) = state.banned.get(&key)
        {
            if *until > Instant::now() {
                return Err(Refusal::Banned);
            }
            state.banned.remove(&key);
        }
        if let Some(key) = key {
            let count = state.per_address.entry(key).or_default();
            if *count >= limits.per_address {
                return Err(Refusal::PerAddress(limits.per_address));
            }
            *count += 1;
        }
        state.total += 1;
        Ok(PreAuth {
            admission: self.clone(),
            key,
            done: false,
        })
    }

    /// Turns new connections from `client` (its /64 for IPv6) away for `duration`, at most
    /// [`MAX_LOCAL_BAN`]. Loopback is never turned away.
    pub fn ban(&self, client: IpAddr, duration: Duration) {
        let Some(key) = address_key(client) else {
            return;
        };
        let now = Instant::now();
        let until = now + duration.min(MAX_LOCAL_BAN);
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if state.banned.len() >= MAX_LOCAL_BANS {
            state.banned.retain(|_, until| *until > now);
        }
        if state.banned.len() < MAX_LOCAL_BANS || state.banned.contains_key(&key) {
            state.banned.insert(key, until);
        }
    }

    /// Connections in the login phase now.
    pub fn in_login(&self) -> usize {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    fn release(&self, key: Option<IpAddr>) {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.total = state.total.saturating_sub(1);
        if let Some(key) = key
            && let Some(count) = state.per_address.get_mut(&key)
        {
            *count -= 1;
            if *count == 0 {
                state.per_address.remove(&key);
            }
        }
    }
}

/// The network a client address stands for when counting or banning it: an IPv4 address
/// alone (/32), an IPv6 address by its /64, which one host or home usually owns whole (an
/// IPv4-mapped IPv6 address is IPv4). The control plane's defender counts by it too.
pub fn client_network(client: IpAddr) -> IpNet {
    match client.to_canonical() {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new_assert(v6, 64).trunc()),
    }
}

/// The address a connection counts under ([`client_network`]'s first address); `None` for
/// loopback, which is not limited.
fn address_key(client: IpAddr) -> Option<IpAddr> {
    if client.to_canonical().is_loopback() {
        return None;
    }
    Some(client_network(client).network())
}

/// A connection in the login phase; it leaves it when logged in or dropped.
#[derive(Debug)]
pub struct PreAuth {
    admission: Admission,
    key: Option<IpAddr>,
    done: bool,
}

impl PreAuth {
    /// The connection logged in: it no longer counts.
    pub fn logged_in(mut self) {
        self.leave();
    }

    fn leave(&mut self) {
        if !self.done {
            self.done = true;
            self.admission.release(self.key);
        }
    }
}

impl Drop for PreAuth {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_address_may_have_a_few_connections_logging_in() {
        let admission = Admission::new(AdmissionLimits {
            per_address: 2,
            ..AdmissionLimits::default()
        });
        let a = admission.admit(ip("203.0.113.7")).unwrap();
        let b = admission.admit(ip("203.0.113.7")).unwrap();
        assert_eq!(
            admission.admit(ip("203.0.113.7")).unwrap_err(),
            Refusal::PerAddress(2)
        );
        // Another address, and loopback, are not held back.
        let _other = admission.admit(ip("198.51.100.1")).unwrap();
        let _local: Vec<_> = (0..10)
            .map(|_| admission.admit(ip("127.0.0.1")).unwrap())
            .collect();
        // One logs in, one gives up: room again for two.
        a.logged_in();
        drop(b);
        let _c = admission.admit(ip("203.0.113.7")).unwrap();
        let _d = admission.admit(ip("::ffff:203.0.113.7")).unwrap();
        assert!(admission.admit(ip("203.0.113.7")).is_err());
        // An IPv6 host counts by its /64.
        let _e = admission.admit(ip("2001:db8:1:2::1")).unwrap();
        let _f = admission.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(admission.admit(ip("2001:db8:1:2::3")).is_err());
        assert!(admission.admit(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn past_start_logins_are_dropped_at_random_and_all_past_full() {
        let admission = Admission::new(AdmissionLimits {
            per_address: 1,
            startups: Startups {
                start: 2,
                rate: 50,
                full: 4,
            },
        });
        let held: Vec<_> = (1..=2)
            .map(|n| admission.admit(ip(&format!("192.0.2.{n}"))).unwrap())
            .collect();
        // At start: 50% refused. A draw of 49 is refused, 50 is let in.
        assert_eq!(
            admission.admit_with(ip("192.0.2.10"), 49).unwrap_err(),
            Refusal::Startups
        );
        let third = admission.admit_with(ip("192.0.2.10"), 50).unwrap();
        // Half way to full: 75%.
        assert!(admission.admit_with(ip("192.0.2.11"), 74).is_err());
        let fourth = admission.admit_with(ip("192.0.2.11"), 75).unwrap();
        // Full: every one.
        assert!(admission.admit_with(ip("192.0.2.12"), 99).is_err());
        assert_eq!(admission.in_login(), 4);
        drop((held, third, fourth));
        assert_eq!(admission.in_login(), 0);
    }

    #[test]
    fn a_banned_address_is_turned_away_until_the_ban_ends() {
        let admission = Admission::new(AdmissionLimits::default());
        admission.ban(ip("203.0.113.7"), Duration::from_secs(3600));
        admission.ban(ip("2001:db8:1:2::1"), Duration::from_millis(50));
        admission.ban(ip("127.0.0.1"), Duration::from_secs(3600));
        assert_eq!(
            admission.admit(ip("203.0.113.7")).unwrap_err(),
            Refusal::Banned
        );
        assert_eq!(
            admission.admit(ip("::ffff:203.0.113.7")).unwrap_err(),
            Refusal::Banned
        );
        assert!(admission.admit(ip("2001:db8:1:2::99")).is_err(), "same /64");
        assert!(admission.admit(ip("203.0.113.8")).is_ok());
        assert!(
            admission.admit(ip("127.0.0.1")).is_ok(),
            "loopback is never banned"
        );
        // Never longer than MAX_LOCAL_BAN here, whatever the control plane said.
        let until = admission.inner.state.lock().unwrap().banned[&ip("203.0.113.7")];
        assert!(until <= Instant::now() + MAX_LOCAL_BAN);
        std::thread::sleep(Duration::from_millis(60));
        assert!(admission.admit(ip("2001:db8:1:2::99")).is_ok(), "ended");
    }

    #[test]
    fn clients_count_by_address_or_ipv6_slash_64() {
        assert_eq!(client_network(ip("192.0.2.1")).to_string(), "192.0.2.1/32");
        assert_eq!(
            client_network(ip("::ffff:192.0.2.1")).to_string(),
            "192.0.2.1/32"
        );
        assert_eq!(
            client_network(ip("2001:db8:1:2:3:4:5:6")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn startups_parse_like_openssh() {
        assert_eq!(
            "10:30:100".parse::<Startups>(),
            Ok(Startups {
                start: 10,
                rate: 30,
                full: 100
            })
        );
        assert_eq!(
            "50".parse::<Startups>(),
            Ok(Startups {
                start: 50,
                rate: 100,
                full: 50
            })
        );
        for bad in ["", "0", "10:30", "10:101:100", "100:30:10", "a:b:c"] {
            assert!(bad.parse::<Startups>().is_err(), "{bad}");
        }
    }
}
