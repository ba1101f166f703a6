//! Concurrent sessions per user on this gateway (the grant's `maxSessions`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use wharf_core::Username;

/// Logged-in sessions per user, shared by all connections of one [`crate::serve`] call.
///
/// The count is per gateway process, as for SFTP: gateways behind a load balancer each enforce
/// a user's `maxSessions` on their own connections.
#[derive(Clone, Default)]
pub(crate) struct SessionCounts(Arc<Mutex<HashMap<Username, usize>>>);

impl SessionCounts {
    /// Takes one of `user`'s `limit` session slots: `Err(in_use)` when all are taken. The check
    /// and the increment happen under one lock, so simultaneous logins cannot overshoot.
    pub(crate) fn try_acquire(&self, user: &Username, limit: u32) -> Result<SessionSlot, usize> {
        let mut counts = self.lock();
        let count = counts.entry(user.clone()).or_insert(0);
        if *count >= limit as usize {
            let in_use = *count;
            if in_use == 0 {
                counts.remove(user);
            }
            return Err(in_use);
        }
        *count += 1;
        Ok(SessionSlot {
            counts: self.clone(),
            user: user.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Username, usize>> {
        // Every change is one statement, so the map is consistent even after a panic.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(crate) fn count(&self, user: &Username) -> usize {
        self.lock().get(user).copied().unwrap_or(0)
    }
}

/// One counted session of a user, held by the logged-in user of an FTP session. Dropping it
/// (when the control connection ends, however it ended) gives the slot back.
pub(crate) struct SessionSlot {
    counts: SessionCounts,
    user: Username,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_user_and_given_back_once() {
        let counts = SessionCounts::default();
        let alice = Username::parse("alice").unwrap();
        let bob = Username::parse("bob").unwrap();
        let first = counts.try_acquire(&alice, 2).unwrap();
        let second = counts.try_acquire(&alice, 2).unwrap();
        assert_eq!(counts.try_acquire(&alice, 2).err(), Some(2));
        let bobs = counts.try_acquire(&bob, 1).unwrap();
        drop(first);
        assert_eq!(counts.count(&alice), 1);
        drop(second);
        drop(bobs);
        assert_eq!(counts.count(&alice), 0);
        assert!(counts.lock().is_empty());
    }
}
