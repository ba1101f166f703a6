//! [`OpenFiles`]: the files and directories open on a connection (all its channels) and in the
//! process, with a cap on each. Every open handle costs memory (an upload's buffer, a
//! listing's page, a download's read-ahead), so one partner must not be able to open without
//! bound, and all partners together must leave the gateway room.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Open files and directories per connection, whatever its channels. OpenSSH's `sftp` and
/// `scp` keep one or two open, rclone one per transfer (4 by default), WinSCP and FileZilla a
/// handful.
pub const MAX_OPEN_PER_CONNECTION: usize = 64;

/// Open files and directories in the whole gateway process.
pub const MAX_OPEN_PER_PROCESS: usize = 8192;

/// The count of one connection's open handles, and the process's through it.
#[derive(Clone, Debug)]
pub struct OpenFiles {
    connection: Arc<AtomicUsize>,
    process: Arc<AtomicUsize>,
}

impl OpenFiles {
    /// A connection's count, adding to the process's `process` (one per gateway).
    pub fn for_connection(process: &Arc<AtomicUsize>) -> OpenFiles {
        OpenFiles {
            connection: Arc::new(AtomicUsize::new(0)),
            process: process.clone(),
        }
    }

    /// Handles open on the connection now.
    pub fn on_connection(&self) -> usize {
        self.connection.load(Ordering::Acquire)
    }

    /// Counts one more open handle, or says which cap is reached.
    pub(crate) fn open(&self) -> Result<(), String> {
        if !increment_below(&self.connection, MAX_OPEN_PER_CONNECTION) {
            return Err(format!(
                "too many open files (at most {MAX_OPEN_PER_CONNECTION} per connection); close \
                 some and retry"
            ));
        }
        if !increment_below(&self.process, MAX_OPEN_PER_PROCESS) {
            self.connection.fetch_sub(1, Ordering::AcqRel);
            return Err("the server has too many open files; retry later".to_owned());
        }
        Ok(())
    }

    /// Counts one handle less (one counted by [`OpenFiles::open`]).
    pub(crate) fn close(&self) {
        self.connection.fetch_sub(1, Ordering::AcqRel);
        self.process.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Adds one to `count` unless it is at `cap` already; whether it did.
fn increment_below(count: &AtomicUsize, cap: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_and_the_process_have_a_cap() {
        let process = Arc::new(AtomicUsize::new(MAX_OPEN_PER_PROCESS - 3));
        let a = OpenFiles::for_connection(&process);
        let b = OpenFiles::for_connection(&process);
        a.open().unwrap();
        a.open().unwrap();
        b.open().unwrap();
        // The process is full: refused, and nothing counted.
        let refused = b.open().unwrap_err();
        assert!(refused.contains("server has too many"), "{refused}");
        assert_eq!((a.on_connection(), b.on_connection()), (2, 1));
        a.close();
        b.open().unwrap();
        assert_eq!(process.load(Ordering::Acquire), MAX_OPEN_PER_PROCESS);

        let process = Arc::new(AtomicUsize::new(0));
        let c = OpenFiles::for_connection(&process);
        for _ in 0..MAX_OPEN_PER_CONNECTION {
            c.open().unwrap();
        }
        let refused = c.open().unwrap_err();
        assert!(refused.contains("per connection"), "{refused}");
        assert_eq!(process.load(Ordering::Acquire), MAX_OPEN_PER_CONNECTION);
        c.close();
        assert_eq!(c.on_connection(), MAX_OPEN_PER_CONNECTION - 1);
    }
}
