//! [`SessionWatch`]: a gateway's open sessions, re-checked with the control plane so that none
//! outlives its user.
//!
//! A session registers when it logs in ([`SessionWatch::register`]) and leaves when its
//! [`Registration`] is dropped. Every [`WatchOptions::interval`] the watch asks the control plane
//! about all of them at once ([`crate::LoginProvider::check_sessions`], one request per gateway
//! and round, whatever the number of sessions) and ends those whose user was disabled or deleted
//! or whose credential (password, key) was changed or removed, and those older than
//! [`WatchOptions::max_duration`]. So a change takes effect on every gateway within one interval.
//!
//! Ending is the session's own business: it is told through the `watch` channel it registered
//! with and closes with the [`Ending`]'s message. If the control plane cannot be asked, sessions
//! go on (a control-plane outage must not cut every transfer) and the next round asks again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::{LoginProvider, SessionCheck};

/// Why a session is being ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The user was disabled or deleted, or the credential it logged in with changed.
    Revoked,
    /// The session reached [`WatchOptions::max_duration`].
    TooOld,
}

impl Ending {
    /// What the partner is told.
    pub fn message(self) -> &'static str {
        match self {
            Ending::Revoked => {
                "your session has ended: the account was disabled or deleted, or the password \
                 or key it logged in with was changed"
            }
            Ending::TooOld => "your session has reached its time limit; connect again",
        }
    }
}

/// How often sessions are re-checked, and how long one may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    pub interval: Duration,
    /// `None`: no limit.
    pub max_duration: Option<Duration>,
}

impl Default for WatchOptions {
    /// Every 30 seconds; sessions last at most 24 hours.
    fn default() -> Self {
        WatchOptions {
            interval: Duration::from_secs(30),
            max_duration: Some(Duration::from_secs(24 * 60 * 60)),
        }
    }
}

/// Tells a session that it must end; the receiving side waits with [`ended`].
pub type EndSender = watch::Sender<Option<Ending>>;

/// Resolves with the reason once the session is told to end; never if `receiver` is `None` (a
/// session not logged in yet).
pub async fn ended(receiver: &mut Option<watch::Receiver<Option<Ending>>>) -> Ending {
    let Some(receiver) = receiver else {
        return std::future::pending().await;
    };
    // The guard `wait_for` gives is let go of before any other await.
    let told = receiver
        .wait_for(Option::is_some)
        .await
        .map(|ending| *ending);
    match told {
        Ok(ending) => ending.unwrap_or(Ending::Revoked),
        // The watch is gone (the gateway is stopping): its own drain ends the session.
        Err(_) => std::future::pending().await,
    }
}

/// The open sessions of one gateway. Cheap to clone.
#[derive(Clone)]
pub struct SessionWatch {
    inner: Arc<Inner>,
}

struct Inner {
    options: WatchOptions,
    next_id: AtomicU64,
    sessions: Mutex<HashMap<u64, Watched>>,
}

struct Watched {
    check: SessionCheck,
    since: Instant,
    end: Arc<EndSender>,
}

/// A session's place in the watch; dropping it leaves.
pub struct Registration {
    inner: Weak<Inner>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.lock().remove(&self.id);
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Watched>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionWatch {
    /// A watch asking `login`, re-checking in a task of its own until the last clone is dropped.
    pub fn start(login: Arc<dyn LoginProvider>, options: WatchOptions) -> SessionWatch {
        let watch = SessionWatch {
            inner: Arc::new(Inner {
                options,
                next_id: AtomicU64::new(0),
                sessions: Mutex::new(HashMap::new()),
            }),
        };
        let weak = Arc::downgrade(&watch.inner);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(options.interval.max(Duration::from_millis(10)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                round(&inner, login.as_ref()).await;
            }
        });
        watch
    }

    /// Watches a session that logged in now as `check`; it is told through `end`.
    pub fn register(&self, check: SessionCheck, end: Arc<EndSender>) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.lock().insert(
            id,
            Watched {
                check,
                since: Instant::now(),
                end,
            },
        );
        Registration {
            inner: Arc::downgrade(&self.inner),
            id,
        }
    }

    /// Sessions watched now.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One round: ends the sessions past their time, then asks about the rest (each distinct user
/// and credential once) and ends those no longer valid.
async fn round(inner: &Inner, login: &dyn LoginProvider) {
    let now = Instant::now();
    let mut checks: Vec<SessionCheck> = Vec::new();
    let mut index: HashMap<SessionCheck, usize> = HashMap::new();
    {
        let sessions = inner.lock();
        for watched in sessions.values() {
            let told = watched.end.borrow().is_some();
            if told {
                // Told already; it is on its way out.
                continue;
            }
            if let Some(max) = inner.options.max_duration
                && now.saturating_duration_since(watched.since) >= max
            {
                watched.end.send_replace(Some(Ending::TooOld));
                continue;
            }
            if !index.contains_key(&watched.check) {
                index.insert(watched.check.clone(), checks.len());
                checks.push(watched.check.clone());
            }
        }
    }
    if checks.is_empty() {
        return;
    }
    let valid = match login.check_sessions(&checks).await {
        Ok(valid) if valid.len() == checks.len() => valid,
        Ok(valid) => {
            tracing::warn!(
                asked = checks.len(),
                answered = valid.len(),
                "the control plane answered a session check for another number of sessions"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot re-check open sessions; they go on");
            return;
        }
    };
    let sessions = inner.lock();
    for watched in sessions.values() {
        let told = watched.end.borrow().is_some();
        if let Some(&at) = index.get(&watched.check)
            && !valid[at]
            && !told
        {
            tracing::info!(user = %watched.check.username, "ending a session: its user or credential is no longer valid");
            watched.end.send_replace(Some(Ending::Revoked));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LoginError, LoginGrant, LoginRequest, Username};

    /// A control plane where the users named in `revoked` are no longer valid.
    struct Fake {
        revoked: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl LoginProvider for Fake {
        async fn login(&self, _: LoginRequest) -> Result<LoginGrant, LoginError> {
            Err(LoginError::Denied)
        }

        async fn check_sessions(&self, sessions: &[SessionCheck]) -> Result<Vec<bool>, LoginError> {
            let revoked = self.revoked.lock().unwrap();
            Ok(sessions
                .iter()
                .map(|s| !revoked.contains(&s.username.to_string()))
                .collect())
        }
    }

    fn check(user: &str) -> SessionCheck {
        SessionCheck {
            username: Username::parse(user).unwrap(),
            credential: "p:1".into(),
        }
    }

    #[tokio::test]
    async fn sessions_of_revoked_users_and_old_ones_are_told_to_end() {
        let fake = Arc::new(Fake {
            revoked: Mutex::new(vec![]),
        });
        let watch = SessionWatch::start(
            fake.clone(),
            WatchOptions {
                interval: Duration::from_millis(20),
                max_duration: Some(Duration::from_secs(2)),
            },
        );
        let (alice_end, mut alice) = watch::channel(None);
        let (bob_end, mut bob) = watch::channel(None);
        let _a = watch.register(check("alice"), Arc::new(alice_end));
        let _b = watch.register(check("bob"), Arc::new(bob_end));
        let (carol_end, carol) = watch::channel(None);
        drop(watch.register(check("carol"), Arc::new(carol_end)));
        assert_eq!(watch.len(), 2, "a dropped registration leaves");
        drop(carol);

        fake.revoked.lock().unwrap().push("alice".into());
        let mut alice_rx = Some(alice.clone());
        let told = tokio::time::timeout(Duration::from_millis(500), ended(&mut alice_rx)).await;
        assert_eq!(told, Ok(Ending::Revoked), "within a few rounds");
        assert!(bob.borrow_and_update().is_none(), "bob goes on");
        // Once the maximum duration has passed, bob's session ends too.
        let mut bob_rx = Some(bob.clone());
        let told = tokio::time::timeout(Duration::from_secs(5), ended(&mut bob_rx)).await;
        assert_eq!(told, Ok(Ending::TooOld));
        assert_eq!(
            *alice.borrow_and_update(),
            Some(Ending::Revoked),
            "told once"
        );
    }
}
