//! What a session uploaded: the files a write-only partner (a drop box) may still change.
//!
//! A drop box lets a partner deliver files and never touch what is already there. Its own
//! deliveries are the exception while the session lasts: WinSCP and FileZilla upload to
//! `name.filepart` and rename it to `name` when done, and a transfer interrupted with a clean
//! close commits the part received, which the client may continue (`reput`). Remembering the
//! session's uploads is what makes those safe without letting it change anybody else's files.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use object_store::path::Path;

/// Uploads remembered per session; the oldest are forgotten first (a session delivering more
/// files than this can no longer rename or continue its earliest ones).
const REMEMBERED: usize = 10_000;

/// The keys one session committed. Cloning shares them.
#[derive(Clone, Default)]
pub(crate) struct SessionUploads(Arc<Mutex<Keys>>);

#[derive(Default)]
struct Keys {
    set: HashSet<Path>,
    order: VecDeque<Path>,
}

impl SessionUploads {
    fn lock(&self) -> MutexGuard<'_, Keys> {
        // Every change is one step: a poisoned set is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `key` was committed by this session.
    pub(crate) fn record(&self, key: &Path) {
        let mut keys = self.lock();
        if keys.set.insert(key.clone()) {
            keys.order.push_back(key.clone());
        }
        while keys.order.len() > REMEMBERED {
            if let Some(oldest) = keys.order.pop_front() {
                keys.set.remove(&oldest);
            }
        }
    }

    /// Whether this session committed `key` (and has not renamed it away).
    pub(crate) fn contains(&self, key: &Path) -> bool {
        self.lock().set.contains(key)
    }

    /// The session renamed `from` to `to`: the file it uploaded is now at `to`.
    pub(crate) fn moved(&self, from: &Path, to: &Path) {
        let mut keys = self.lock();
        if keys.set.remove(from) {
            keys.order.retain(|k| k != from);
            if keys.set.insert(to.clone()) {
                keys.order.push_back(to.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_remembered_moved_and_the_oldest_forgotten() {
        let uploads = SessionUploads::default();
        let (a, b) = (Path::from("in/a.filepart"), Path::from("in/a"));
        uploads.record(&a);
        assert!(uploads.contains(&a));
        uploads.moved(&a, &b);
        assert!(!uploads.contains(&a) && uploads.contains(&b));
        // Moving a file this session did not upload gives it nothing.
        uploads.moved(&Path::from("other"), &Path::from("in/c"));
        assert!(!uploads.contains(&Path::from("in/c")));
        for i in 0..REMEMBERED {
            uploads.record(&Path::from(format!("f{i}")));
        }
        assert!(!uploads.contains(&b), "the oldest is forgotten");
        assert!(uploads.contains(&Path::from(format!("f{}", REMEMBERED - 1))));
    }
}
