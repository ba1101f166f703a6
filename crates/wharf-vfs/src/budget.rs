//! [`MemoryBudget`]: a bound on the bytes that sessions may make the gateway hold in memory
//! on their behalf, beyond what streaming needs. Today that is writes held out of order
//! ([`crate::Upload`]'s reorder window): a client decides how much of it to fill, so without a
//! bound one partner with many upload handles could hold gigabytes.
//!
//! Budgets nest: a session's (or an SFTP connection's, shared by its channels) budget is a
//! child of the process's, and a reservation counts against both. Over either limit the
//! reservation is refused and nothing is counted; the caller refuses that one request and the
//! session goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

/// Bytes of held writes the whole process allows. Well above what pipelining clients need at
/// once (OpenSSH keeps 64 × 32 KiB in flight, rclone and WinSCP a few MiB), well below a
/// gateway's memory.
pub const PROCESS_HELD_WRITES: u64 = 512 * 1024 * 1024;

/// Bytes of held writes one session (one SFTP connection, whatever its channels) allows: two
/// full reorder windows.
pub const SESSION_HELD_WRITES: u64 = 2 * crate::transfer::REORDER_WINDOW;

static PROCESS: LazyLock<MemoryBudget> =
    LazyLock::new(|| MemoryBudget::new(PROCESS_HELD_WRITES, None));

/// A limit on bytes held, shared by its clones.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: u64,
    used: AtomicU64,
    parent: Option<MemoryBudget>,
}

/// The budget would be exceeded: `limit` is the one that was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub limit: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes; with a `parent`, every reservation also counts against it.
    pub fn new(limit: u64, parent: Option<&MemoryBudget>) -> MemoryBudget {
        MemoryBudget {
            inner: Arc::new(Inner {
                limit,
                used: AtomicU64::new(0),
                parent: parent.cloned(),
            }),
        }
    }

    /// A fresh session's budget: [`SESSION_HELD_WRITES`], inside the process's
    /// [`PROCESS_HELD_WRITES`].
    pub fn for_session() -> MemoryBudget {
        MemoryBudget::new(SESSION_HELD_WRITES, Some(&PROCESS))
    }

    /// Bytes reserved now (this budget's, children included).
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire)
    }

    /// An empty reservation that [`Reservation::grow`] fills.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, bytes: u64) -> Result<(), OverBudget> {
        let limit = self.inner.limit;
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .map_err(|_| OverBudget { limit })?;
        if let Some(parent) = &self.inner.parent
            && let Err(over) = parent.take(bytes)
        {
            self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
            return Err(over);
        }
        Ok(())
    }

    fn give_back(&self, bytes: u64) {
        self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(parent) = &self.inner.parent {
            parent.give_back(bytes);
        }
    }
}

/// Bytes taken from a [`MemoryBudget`]; given back when shrunk or dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: MemoryBudget,
    bytes: u64,
}

impl Reservation {
    /// Takes `bytes` more, or nothing if that would pass a limit.
    pub fn grow(&mut self, bytes: u64) -> Result<(), OverBudget> {
        self.budget.take(bytes)?;
        self.bytes += bytes;
        Ok(())
    }

    /// Gives `bytes` back (at most what is held).
    pub fn shrink(&mut self, bytes: u64) {
        let bytes = bytes.min(self.bytes);
        self.budget.give_back(bytes);
        self.bytes -= bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_counts_against_its_parent_and_gives_back_on_drop() {
        let process = MemoryBudget::new(100, None);
        let a = MemoryBudget::new(60, Some(&process));
        let b = MemoryBudget::new(60, Some(&process));

        let mut first = a.reservation();
        first.grow(50).unwrap();
        // Over the child's own limit.
        assert_eq!(first.grow(20), Err(OverBudget { limit: 60 }));
        assert_eq!((a.used(), process.used()), (50, 50));

        let mut second = b.reservation();
        second.grow(40).unwrap();
        // Within b's limit, over the process's: nothing is counted anywhere.
        assert_eq!(second.grow(20), Err(OverBudget { limit: 100 }));
        assert_eq!((b.used(), process.used()), (40, 90));

        first.shrink(30);
        assert_eq!((a.used(), process.used()), (20, 60));
        second.grow(20).unwrap();
        assert_eq!(process.used(), 80);

        drop(first);
        drop(second);
        assert_eq!((a.used(), b.used(), process.used()), (0, 0, 0));
    }

    #[test]
    fn shrinking_more_than_held_gives_back_only_what_is_held() {
        let budget = MemoryBudget::new(10, None);
        let mut r = budget.reservation();
        r.grow(4).unwrap();
        r.shrink(9);
        assert_eq!(budget.used(), 0);
        r.grow(10).unwrap();
        assert_eq!(budget.used(), 10);
    }
}
