//! Wharf's virtual file system: one user's jailed view of an object_store bucket.
//!
//! Both protocol front ends (SFTP, FTPS) and the control plane go through this crate, so they can
//! never disagree on what a path means, what a permission allows, or when an upload becomes
//! visible. It knows nothing of SSH, FTP, HTTP or SQL.
//!
//! - [`VirtualPath`]: a path as the partner sees it (`/in/x.edi`), normalised and jailed: no
//!   input can name anything above `/`.
//! - [`Vfs`]: a session's view: bucket store + home directory + permissions. It maps a
//!   [`VirtualPath`] to a bucket key (home + path) and is the only place that does.
//! - [`Upload`]: a file being written; nothing is visible until [`Upload::commit`]; dropping it
//!   or [`Upload::abort`] leaves the previous version (or nothing) in place.
//! - [`Download`]: a file being read, streamed with read-ahead.
//! - [`MemoryBudget`]: what sessions may make the gateway hold for them (writes held out of
//!   order), per session and per process.
//! - Directories: real prefixes plus a hidden marker object ([`DIRECTORY_MARKER`]) so that empty
//!   directories persist on object stores.

mod budget;
mod checksum;
mod error;
mod journal;
mod local;
mod owned;
mod path;
mod store;
mod transfer;
mod vfs;

#[cfg(test)]
mod tests;

pub use budget::{MemoryBudget, OverBudget, PROCESS_HELD_WRITES, Reservation, SESSION_HELD_WRITES};
pub use checksum::{Checksum, HashAlgorithm, KnownHashes, MAX_HASH_BLOCKS, MIN_HASH_BLOCK};
pub use error::VfsError;
pub use journal::{NOTE_REFRESH, ORPHAN_AGE, SweepReport, UploadJournal};
pub use path::{MAX_NAME_BYTES, MAX_PATH_BYTES, VirtualPath};
pub use store::{
    BucketError, ListPager, OpenedBucket, SWEEP_INTERVAL, StoreCache, check_bucket, create_home,
    host_access, open_bucket,
};
pub use transfer::{
    Download, IN_FLIGHT_BYTES, MAX_PART_SIZE, MAX_PARTS, MAX_PARTS_IN_FLIGHT, MAX_UPLOAD_SIZE,
    PART_SIZE, READ_AHEAD_CHUNK, READ_AHEAD_CHUNKS, READ_AHEAD_FIRST, READ_AHEAD_GETS,
    REORDER_WINDOW, Upload, UploadSummary, part_size,
};
pub use vfs::{
    CreateOptions, DirectoryPage, Entry, EntryKind, Listing, MAX_DIRECTORY_RENAME_OBJECTS,
    SessionIdentity, Vfs, WriteMode,
};

// The reserved names are wharf-core's, so that a home directory can never be one of them.
pub use wharf_core::{DIRECTORY_MARKER, UPLOAD_JOURNAL};
