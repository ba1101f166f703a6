//! [`Vfs`]: one session's view of a bucket.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::ObjectStore;
use wharf_core::{HomeDirectory, Permissions, Protocol, Username};

use crate::{Download, Upload, VfsError, VirtualPath};

/// Who is acting, for logs and (later) events.
#[derive(Debug, Clone)]
pub struct SessionIdentity {
    pub username: Username,
    pub protocol: Protocol,
    pub client_ip: String,
    pub session_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
}

/// A file or directory as listings and stat show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The last path segment (`/` for the home itself).
    pub name: String,
    pub kind: EntryKind,
    /// Bytes; 0 for directories.
    pub size: u64,
    /// Last modification; `None` where the store has none (directories implied by prefixes).
    pub modified: Option<DateTime<Utc>>,
}

/// How to open a file for writing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Fail with [`VfsError::AlreadyExists`] if the file exists (SFTP `EXCL`).
    pub exclusive: bool,
}

/// One logged-in user's view of its bucket: everything is relative to its home directory and
/// checked against its permissions here, once for every protocol.
#[derive(Clone)]
pub struct Vfs {}

impl Vfs {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        home: HomeDirectory,
        permissions: Permissions,
        identity: SessionIdentity,
    ) -> Self {
        let _ = (store, home, permissions, identity);
        todo!()
    }

    pub fn identity(&self) -> &SessionIdentity {
        todo!()
    }

    pub fn permissions(&self) -> Permissions {
        todo!()
    }

    /// File or directory at `path`. `/` is always a directory.
    pub async fn stat(&self, path: &VirtualPath) -> Result<Entry, VfsError> {
        let _ = path;
        todo!()
    }

    /// The entries of a directory, sorted by name, without the directory marker.
    pub async fn list(&self, path: &VirtualPath) -> Result<Vec<Entry>, VfsError> {
        let _ = path;
        todo!()
    }

    /// Creates a directory whose parent exists.
    pub async fn mkdir(&self, path: &VirtualPath) -> Result<(), VfsError> {
        let _ = path;
        todo!()
    }

    /// Removes an empty directory (not `/`).
    pub async fn rmdir(&self, path: &VirtualPath) -> Result<(), VfsError> {
        let _ = path;
        todo!()
    }

    /// Deletes a file.
    pub async fn remove(&self, path: &VirtualPath) -> Result<(), VfsError> {
        let _ = path;
        todo!()
    }

    /// Renames a file or a directory. With `overwrite` false the target must not exist.
    pub async fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        overwrite: bool,
    ) -> Result<(), VfsError> {
        let _ = (from, to, overwrite);
        todo!()
    }

    /// Opens a file for reading.
    pub async fn open_read(&self, path: &VirtualPath) -> Result<Download, VfsError> {
        let _ = path;
        todo!()
    }

    /// Opens a file for writing from offset 0 (replacing any previous version on commit).
    pub async fn create(
        &self,
        path: &VirtualPath,
        options: CreateOptions,
    ) -> Result<Upload, VfsError> {
        let _ = (path, options);
        todo!()
    }
}
