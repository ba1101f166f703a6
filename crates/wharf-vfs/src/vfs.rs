//! [`Vfs`]: one session's view of a bucket.
//!
//! This module is the only place that turns a [`VirtualPath`] into a bucket key
//! ([`object_key`]) and a listed key back into a name ([`visible_name`]), and the only place that
//! decides what a directory is on a store that has none.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::{Path, PathPart};
use object_store::{ListResult, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use percent_encoding::percent_decode_str;
use wharf_core::{
    BucketName, EventData, EventSink, EventType, HomeDirectory, Permissions, Protocol, Username,
};

use crate::budget::MemoryBudget;
use crate::checksum::KnownHashes;
use crate::local::LocalTarget;
use crate::owned::SessionUploads;
use crate::transfer::{UploadEvents, UploadTarget};
use crate::{
    DIRECTORY_MARKER, Download, ListPager, OpenedBucket, UPLOAD_JOURNAL, Upload, UploadJournal,
    VfsError, VirtualPath,
};

/// Most objects a directory rename moves. Object stores have no directory rename: every object
/// below the directory is copied and deleted one by one, so a rename of a huge tree would run for
/// minutes while the client waits on one request and could stop halfway. Above this the rename
/// is refused with [`VfsError::Unsupported`].
pub const MAX_DIRECTORY_RENAME_OBJECTS: usize = 10_000;

/// Copies or deletes running at once during a directory rename: enough to hide round trips,
/// few enough not to hog the connection pool shared with other sessions.
const RENAME_CONCURRENCY: usize = 8;

/// Who is acting, for logs and (later) events.
#[derive(Debug, Clone)]
pub struct SessionIdentity {
    /// The logged-in user.
    pub username: Username,
    /// The protocol the session arrived by.
    pub protocol: Protocol,
    /// The client's address as the gateway saw it (after the PROXY protocol, if any).
    pub client_ip: String,
    /// Identifies the session in logs and events.
    pub session_id: String,
}

/// Whether an [`Entry`] is a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// An object.
    File,
    /// A directory marker or a prefix with objects below it.
    Directory,
}

/// A file or directory as listings and stat show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The last path segment (`/` for the home itself).
    pub name: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Bytes; 0 for directories.
    pub size: u64,
    /// Last modification; `None` where the store has none (directories implied by prefixes).
    pub modified: Option<DateTime<Utc>>,
}

/// How to open a file for writing. Build it with struct update syntax so that new fields do not
/// break callers: `CreateOptions { exclusive: true, ..Default::default() }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Fail with [`VfsError::AlreadyExists`] if the file exists (SFTP `EXCL`).
    ///
    /// Checked when the file is opened, not again at commit: object stores cannot make a
    /// multipart upload conditional, so two exclusive uploads racing for one name both succeed
    /// and the last commit wins.
    pub exclusive: bool,
    /// Whether the upload replaces the file or continues it (resume, append).
    pub mode: WriteMode,
}

/// What an [`Upload`] does with the file it is opened on.
///
/// Object stores cannot append to or modify an object, so [`WriteMode::Resume`] and
/// [`WriteMode::Append`] write a **new** object made of the existing content followed by the
/// client's data, and commit it like any upload: the previous version stays visible, untouched,
/// until the commit; an aborted or dropped upload leaves it as it was. The client never resends
/// the existing bytes: the gateway copies them from the store.
///
/// **Cost.** Continuing a file of `N` bytes reads those `N` bytes from the store and writes
/// them again (object_store has no server-side part copy such as S3's `UploadPartCopy`). On a
/// cloud store this traffic runs between the gateway and the bucket, not over the client's
/// link, but resuming a 10 GiB file still moves 10 GiB each way on that side, and the client's
/// first write waits until the copy is done. Files below [`crate::PART_SIZE`] are copied with
/// one GET into the upload's buffer; larger ones are streamed by ranged GETs of
/// [`crate::PART_SIZE`] straight into the multipart upload (memory stays bounded as for any
/// upload). Every GET is pinned to the version seen at open (`If-Match` on its entity tag), and
/// the commit checks that this version is still the current one, so a file replaced during the
/// resume fails the upload instead of mixing two versions.
///
/// [`Upload::start_offset`] tells the protocol where the client continues (FTP `REST`, SFTP
/// `fstat`). On a path that does not exist (or an empty file), both modes behave like
/// [`WriteMode::Truncate`] with a start offset of 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum WriteMode {
    /// The file is replaced by what is written from offset 0 (the default).
    #[default]
    Truncate,
    /// The new file is the existing content followed by what the client writes from offset
    /// `start_offset` (= the existing size) on: OpenSSH `reput` / `put -a`, WinSCP resume,
    /// FTP `REST n` + `STOR`.
    ///
    /// The first write decides: at the existing size it continues the file (writes a little
    /// ahead are held in the reorder window as usual); at offset 0 the client is rewriting the
    /// file from scratch (what OpenSSH does when it opens without `TRUNC` and sends the whole
    /// file), so the existing content is dropped and the upload becomes a
    /// [`WriteMode::Truncate`] one. Any other offset fails with [`VfsError::Unsupported`]
    /// (resuming is only possible at the current end of the file) and leaves the upload open.
    /// An upload committed without any write leaves the file as it is.
    Resume,
    /// Like [`WriteMode::Resume`], but every write continues at the end of the data written so
    /// far, whatever offset the client sends (SFTP `APPEND` flag, FTP `APPE`, paramiko
    /// `open(path, 'a')`). Writes are therefore taken in arrival order; nothing is reordered.
    Append,
    /// A file opened for reading and writing without truncation (SFTP `READ|WRITE`: Python's
    /// `open(path, "r+b")`, Java's random-access modes). The first write decides, as POSIX
    /// would have it for one run of contiguous writes: at the existing size it continues the
    /// file (as [`WriteMode::Resume`]); at offset 0 it overwrites the file from the start and
    /// **keeps** whatever lies beyond the last byte written (copied in at commit from the
    /// version seen at open); any other offset fails with [`VfsError::Unsupported`]
    /// (writing into the middle of an object is not possible). Committed without a write, the
    /// file stays as it is.
    Update,
}

/// One logged-in user's view of its bucket: everything is relative to its home directory and
/// checked against its permissions here, once for every protocol.
///
/// Cloning is cheap (one reference count): every clone shares the store and the session.
#[derive(Clone)]
pub struct Vfs {
    inner: Arc<Session>,
}

/// What a [`Vfs`] shares between its clones.
struct Session {
    store: Arc<dyn ObjectStore>,
    /// Paged delimiter listing, where the store has it (see [`ListPager`]).
    pager: Option<ListPager>,
    /// Where multipart uploads are noted, on stores that can abort them by id.
    uploads: Option<UploadJournal>,
    /// The directory of a local-disk bucket, listed directly so listings are paged.
    local_root: Option<std::path::PathBuf>,
    /// Where file events go, with the bucket's name for them.
    events: Option<(Arc<dyn EventSink>, BucketName)>,
    /// SHA-256 of the bucket's recent uploads (shared by the bucket's sessions).
    hashes: KnownHashes,
    /// What this session uploaded (the files a write-only session may still change).
    uploaded: SessionUploads,
    /// What this session's writes held out of order may take.
    held_budget: MemoryBudget,
    home: HomeDirectory,
    permissions: Permissions,
    identity: SessionIdentity,
}

/// What a key turned out to be.
enum Found {
    File(ObjectMeta),
    /// A directory: its marker's modification time, `None` if it exists only as a prefix.
    Directory(Option<DateTime<Utc>>),
}

impl Vfs {
    /// A session for the user `identity`, jailed to `home` in `store`. The home need not exist
    /// in the store: `/` is always a directory (see [`crate::create_home`] to make it visible
    /// from above).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        home: HomeDirectory,
        permissions: Permissions,
        identity: SessionIdentity,
    ) -> Self {
        Vfs {
            inner: Arc::new(Session {
                store,
                pager: None,
                uploads: None,
                local_root: None,
                events: None,
                hashes: KnownHashes::default(),
                uploaded: SessionUploads::default(),
                held_budget: MemoryBudget::for_session(),
                home,
                permissions,
                identity,
            }),
        }
    }

    /// A session for the user `identity`, jailed to `home` in an opened bucket (from
    /// [`crate::StoreCache::bucket`]): listings are paged and multipart uploads journaled
    /// where the bucket's store allows.
    pub fn on_bucket(
        bucket: &OpenedBucket,
        home: HomeDirectory,
        permissions: Permissions,
        identity: SessionIdentity,
    ) -> Self {
        Vfs {
            inner: Arc::new(Session {
                store: bucket.store.clone(),
                pager: bucket.pager.clone(),
                uploads: bucket.uploads.clone(),
                local_root: bucket.local_root.clone(),
                events: None,
                hashes: bucket.hashes.clone(),
                uploaded: SessionUploads::default(),
                held_budget: MemoryBudget::for_session(),
                home,
                permissions,
                identity,
            }),
        }
    }

    /// Lists directories page by page through `pager` (from [`crate::StoreCache::bucket`])
    /// instead of in one request, so a directory of any size is listed in bounded memory.
    pub fn with_list_pager(self, pager: Option<ListPager>) -> Self {
        let session = self.into_session();
        Vfs {
            inner: Arc::new(Session { pager, ..session }),
        }
    }

    /// Reports what this session changes to `sink` as events of the bucket `bucket`:
    /// completed and failed uploads (see [`wharf_core::events`] for the two steps of an
    /// upload), deletes, renames and new directories.
    pub fn with_events(self, bucket: BucketName, sink: Arc<dyn EventSink>) -> Self {
        let session = self.into_session();
        Vfs {
            inner: Arc::new(Session {
                events: Some((sink, bucket)),
                ..session
            }),
        }
    }

    /// Counts this session's writes held out of order against `budget` instead of a budget
    /// of its own: for sessions of one connection (SFTP channels) that share one.
    pub fn with_write_budget(self, budget: MemoryBudget) -> Self {
        let session = self.into_session();
        Vfs {
            inner: Arc::new(Session {
                held_budget: budget,
                ..session
            }),
        }
    }

    fn into_session(self) -> Session {
        Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Session {
            store: shared.store.clone(),
            pager: shared.pager.clone(),
            uploads: shared.uploads.clone(),
            local_root: shared.local_root.clone(),
            events: shared.events.clone(),
            hashes: shared.hashes.clone(),
            uploaded: shared.uploaded.clone(),
            held_budget: shared.held_budget.clone(),
            home: shared.home.clone(),
            permissions: shared.permissions,
            identity: shared.identity.clone(),
        })
    }

    /// The data of an event about `key`, without the upload-specific fields.
    fn event_data(&self, bucket: &BucketName, key: &Path) -> EventData {
        let identity = self.identity();
        EventData {
            bucket_name: bucket.clone(),
            key: key.to_string(),
            size: None,
            sha256: None,
            username: identity.username.clone(),
            protocol: identity.protocol,
            client_ip: identity.client_ip.clone(),
            session_id: identity.session_id.clone(),
            previous_key: None,
            error: None,
        }
    }

    /// Records a change about to be made as a pending event (see [`wharf_core::events`]):
    /// `None` without an event sink. The change must not be made if this fails: the client
    /// hears that it could not be recorded.
    async fn begin_change(
        &self,
        event_type: EventType,
        key: &Path,
        previous: Option<&Path>,
    ) -> Result<Option<String>, VfsError> {
        let Some((sink, bucket)) = &self.inner.events else {
            return Ok(None);
        };
        let mut data = self.event_data(bucket, key);
        data.previous_key = previous.map(ToString::to_string);
        match sink.begin_change(event_type, data).await {
            Ok(id) => Ok(Some(id)),
            Err(e) => {
                tracing::error!(session = %self.identity().session_id, %key,
                    event = %event_type, error = %e, "cannot record a change; not making it");
                Err(crate::transfer::storage_error(format!(
                    "the change could not be recorded, so it was not made ({e}); retry later"
                )))
            }
        }
    }

    /// Settles what [`Vfs::begin_change`] began: `done` if the change was made. A failure is
    /// logged: the control plane settles a pending change it is not told about by looking at
    /// the store.
    async fn settle_change(&self, pending: Option<String>, done: bool) {
        let (Some(id), Some((sink, _))) = (pending, &self.inner.events) else {
            return;
        };
        if let Err(e) = sink.settle_upload_later(&id, done, None).await {
            tracing::warn!(session = %self.identity().session_id, event = %id, error = %e,
                "could not settle a change's event; the control plane will settle it");
        }
    }

    /// The entries of a directory, a page at a time (see [`Listing`]).
    pub async fn list_pages(&self, path: &VirtualPath) -> Result<Listing, VfsError> {
        self.log("list", path);
        let key = self.key(path);
        if let Some(root) = &self.inner.local_root {
            let dir = local_path(root, &key);
            return match tokio::fs::metadata(&dir).await {
                Ok(meta) if meta.is_dir() => Ok(Listing {
                    source: local_listing(dir),
                    ready: std::collections::VecDeque::new(),
                }),
                Ok(_) => Err(VfsError::NotADirectory),
                // The home of a user who never stored anything: empty, as on other stores.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.is_root() => {
                    Ok(Listing {
                        source: ListingSource::Done,
                        ready: std::collections::VecDeque::new(),
                    })
                }
                Err(e) => Err(local_error(e)),
            };
        }
        let mut listing = match &self.inner.pager {
            Some(pager) => Listing {
                source: ListingSource::Paged {
                    pager: pager.clone(),
                    store: Arc::clone(&self.inner.store),
                    dir: key.clone(),
                    token: None,
                    done: false,
                },
                ready: std::collections::VecDeque::new(),
            },
            None => {
                let listing = list_children(self.store(), &key).await?;
                let raw = listing.objects.len() + listing.common_prefixes.len();
                if raw == 0 && !path.is_root() {
                    return Err(self.not_a_directory_or_missing(&key).await);
                }
                let times = marker_times(&self.inner.store, &listing.common_prefixes).await;
                Listing {
                    source: ListingSource::Done,
                    ready: sorted_entries(listing, &times).into(),
                }
            }
        };
        if let ListingSource::Paged { .. } = listing.source {
            // The first page tells whether the directory exists at all.
            let raw = listing.fetch().await?;
            if raw == 0 && !path.is_root() {
                return Err(self.not_a_directory_or_missing(&key).await);
            }
        }
        Ok(listing)
    }

    /// Up to `max` entries of a directory in a stable order, starting after `cursor` (the
    /// [`DirectoryPage::next`] of a previous page; `None` for the first page). For APIs whose
    /// clients fetch one page per request: each call starts afresh from the cursor, so nothing
    /// is kept between pages and a page costs memory for `max` entries only, whatever the size
    /// of the directory.
    ///
    /// The order is the store's key order: bytes of the stored (encoded) names, a directory
    /// sorting as its name followed by `/`. On S3, GCS and Azure a page is one or a few list
    /// requests that start at the cursor (`start-after`); a local directory is read through on
    /// every call, keeping the first `max` entries after the cursor (time grows with the
    /// directory, memory does not); other stores are listed whole.
    ///
    /// Entries added or removed between two pages appear or not depending on where they sort;
    /// none is ever returned twice. A cursor is an opaque string: one that is not from a
    /// previous page (too long, control characters) is refused with
    /// [`VfsError::InvalidPath`].
    pub async fn list_from(
        &self,
        path: &VirtualPath,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<DirectoryPage, VfsError> {
        self.log("list_from", path);
        if let Some(cursor) = cursor
            && (cursor.is_empty()
                || cursor.len() > MAX_CURSOR_BYTES
                || cursor.chars().any(char::is_control))
        {
            return Err(VfsError::InvalidPath(
                "not a listing cursor from a previous page".into(),
            ));
        }
        let max = max.max(1);
        let key = self.key(path);
        let (mut found, more_in_store) = if let Some(root) = &self.inner.local_root {
            let dir = local_path(root, &key);
            match tokio::fs::metadata(&dir).await {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(VfsError::NotADirectory),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.is_root() => {
                    return Ok(DirectoryPage {
                        entries: Vec::new(),
                        next: None,
                    });
                }
                Err(e) => return Err(local_error(e)),
            }
            let cursor = cursor.map(str::to_owned);
            let found = tokio::task::spawn_blocking(move || {
                local_entries_after(&dir, cursor.as_deref(), max + 1)
            })
            .await
            .map_err(|e| {
                VfsError::Storage(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                })
            })??;
            (found, false)
        } else if let Some(pager) = &self.inner.pager {
            let mut found = Vec::new();
            let mut token = None;
            let mut first = true;
            loop {
                // Two more than asked: one tells whether more follow, one may be the directory
                // the cursor names, which the store lists again.
                let (result, next) = pager
                    .page(&key, token.take(), (max + 2).min(LIST_PAGE_KEYS), cursor)
                    .await
                    .map_err(VfsError::from)?;
                let raw = result.objects.len() + result.common_prefixes.len();
                if first && cursor.is_none() && raw == 0 && !path.is_root() {
                    return Err(self.not_a_directory_or_missing(&key).await);
                }
                first = false;
                found.extend(
                    positioned_entries(result)
                        .filter(|(position, _)| cursor.is_none_or(|c| position.as_str() > c)),
                );
                token = next;
                if token.is_none() || found.len() > max {
                    break;
                }
            }
            (found, token.is_some())
        } else {
            let listing = list_children(self.store(), &key).await?;
            let raw = listing.objects.len() + listing.common_prefixes.len();
            if cursor.is_none() && raw == 0 && !path.is_root() {
                return Err(self.not_a_directory_or_missing(&key).await);
            }
            let found = positioned_entries(listing)
                .filter(|(position, _)| cursor.is_none_or(|c| position.as_str() > c))
                .collect();
            (found, false)
        };
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        let more = more_in_store || found.len() > max;
        found.truncate(max);
        with_directory_times(&self.inner.store, &key, &mut found).await;
        let next = if more {
            found.last().map(|(position, _)| position.clone())
        } else {
            None
        };
        Ok(DirectoryPage {
            entries: found.into_iter().map(|(_, entry)| entry).collect(),
            next,
        })
    }

    async fn not_a_directory_or_missing(&self, key: &Path) -> VfsError {
        match head(self.store(), key).await {
            Ok(Some(_)) => VfsError::NotADirectory,
            Ok(None) => VfsError::NotFound,
            Err(e) => e,
        }
    }

    /// Who this session is, for logs and events.
    pub fn identity(&self) -> &SessionIdentity {
        &self.inner.identity
    }

    /// What this session may do; every operation checks it.
    pub fn permissions(&self) -> Permissions {
        self.inner.permissions
    }

    /// The home directory this session is jailed to.
    pub fn home(&self) -> &HomeDirectory {
        &self.inner.home
    }

    /// File or directory at `path`. `/` is always a directory.
    pub async fn stat(&self, path: &VirtualPath) -> Result<Entry, VfsError> {
        self.log("stat", path);
        let key = self.key(path);
        if path.is_root() {
            let modified = head(self.store(), &marker_key(&key))
                .await?
                .map(|m| m.last_modified);
            return Ok(directory_entry("/".to_owned(), modified));
        }
        let name = path.file_name().unwrap_or("/").to_owned();
        match lookup(self.store(), &key).await? {
            Some(Found::File(meta)) => Ok(file_entry(name, &meta)),
            Some(Found::Directory(modified)) => Ok(directory_entry(name, modified)),
            None => Err(VfsError::NotFound),
        }
    }

    /// The entries of a directory, sorted by name, without the directory marker. Holds the
    /// whole directory in memory: protocols list through [`Vfs::list_pages`].
    pub async fn list(&self, path: &VirtualPath) -> Result<Vec<Entry>, VfsError> {
        let mut listing = self.list_pages(path).await?;
        let mut entries = Vec::new();
        while let Some(page) = listing.next_page().await? {
            entries.extend(page);
        }
        Ok(entries)
    }

    /// Creates a directory whose parent exists.
    pub async fn mkdir(&self, path: &VirtualPath) -> Result<(), VfsError> {
        self.log("mkdir", path);
        self.require(
            self.permissions().can_write(),
            "this user may not create directories",
        )?;
        if path.is_root() {
            return Err(VfsError::AlreadyExists);
        }
        let key = self.key(path);
        let (parent, existing) = futures::join!(
            self.require_parent_directory(path),
            lookup_new(self.store(), &key)
        );
        parent?;
        if existing?.is_some() {
            return Err(VfsError::AlreadyExists);
        }
        let pending = self
            .begin_change(EventType::DirectoryCreated, &key, None)
            .await?;
        let made = self.store().put(&marker_key(&key), PutPayload::new()).await;
        self.settle_change(pending, made.is_ok()).await;
        made?;
        Ok(())
    }

    /// Removes an empty directory (not `/`).
    pub async fn rmdir(&self, path: &VirtualPath) -> Result<(), VfsError> {
        self.log("rmdir", path);
        self.require(self.permissions().can_delete(), "this user may not delete")?;
        if path.is_root() {
            return Err(VfsError::PermissionDenied(
                "the home directory cannot be removed",
            ));
        }
        let key = self.key(path);
        let listing = list_children(self.store(), &key).await?;
        let mut has_marker = false;
        for meta in &listing.objects {
            if meta.location.filename() == Some(DIRECTORY_MARKER) {
                has_marker = true;
            } else {
                return Err(VfsError::DirectoryNotEmpty);
            }
        }
        if !listing.common_prefixes.is_empty() {
            return Err(VfsError::DirectoryNotEmpty);
        }
        if !has_marker {
            return Err(match head(self.store(), &key).await? {
                Some(_) => VfsError::NotADirectory,
                None => VfsError::NotFound,
            });
        }
        // On LocalFileSystem, automatic cleanup removes the now empty directory from disk too.
        self.store().delete(&marker_key(&key)).await?;
        Ok(())
    }

    /// Deletes a file.
    pub async fn remove(&self, path: &VirtualPath) -> Result<(), VfsError> {
        self.log("remove", path);
        self.require(self.permissions().can_delete(), "this user may not delete")?;
        if path.is_root() {
            return Err(VfsError::IsADirectory);
        }
        let key = self.key(path);
        match lookup(self.store(), &key).await? {
            Some(Found::File(_)) => {
                let pending = self
                    .begin_change(EventType::FileDeleted, &key, None)
                    .await?;
                let deleted = self.store().delete(&key).await;
                self.settle_change(pending, deleted.is_ok()).await;
                deleted?;
                self.inner.hashes.forget(&key);
                Ok(())
            }
            Some(Found::Directory(_)) => Err(VfsError::IsADirectory),
            None => Err(VfsError::NotFound),
        }
    }

    /// Renames a file or a directory. With `overwrite` false the target must not exist.
    ///
    /// A file is renamed with one store call (an atomic `rename(2)` on local disk, copy and
    /// delete on cloud stores). A directory is moved object by object (at most
    /// [`MAX_DIRECTORY_RENAME_OBJECTS`]): all copies first, then the deletes, so an interrupted
    /// rename leaves the source complete (and some copies at the target). With `overwrite`, a
    /// file replaces a file and a directory replaces an empty directory, as POSIX `rename`
    /// does. On S3, objects over 5 GiB cannot be renamed (object_store copies in one request).
    pub async fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        overwrite: bool,
    ) -> Result<(), VfsError> {
        tracing::debug!(
            user = %self.identity().username,
            session = %self.identity().session_id,
            %from,
            %to,
            overwrite,
            "rename"
        );
        self.require(self.permissions().can_write(), "this user may not rename")?;
        if from.is_root() {
            return Err(VfsError::PermissionDenied(
                "the home directory cannot be renamed",
            ));
        }
        let from_key = self.key(from);
        let to_key = self.key(to);
        let source = lookup(self.store(), &from_key)
            .await?
            .ok_or(VfsError::NotFound)?;
        let drop_box = self.permissions() != Permissions::ReadWrite;
        if drop_box && !(matches!(source, Found::File(_)) && self.uploaded_here(&from_key)) {
            return Err(self.deny(
                "this user may only rename files it uploaded in this session (a write-only \
                 user cannot move what is already there)",
            ));
        }
        if from == to {
            return Ok(());
        }
        if to.is_root() {
            return Err(VfsError::AlreadyExists);
        }
        if matches!(source, Found::Directory(_)) && to.starts_with(from) {
            return Err(VfsError::InvalidPath(
                "a directory cannot be moved inside itself".into(),
            ));
        }
        let (parent, target) = futures::join!(
            self.require_parent_directory(to),
            lookup(self.store(), &to_key)
        );
        parent?;
        let target = target?;
        if target.is_some() && !overwrite {
            return Err(VfsError::AlreadyExists);
        }
        if drop_box && target.is_some() {
            return Err(self.deny(
                "this user may not rename onto an existing name (a write-only user never \
                 replaces a file)",
            ));
        }
        // `Some(overwrite)` moves a file, `None` a directory.
        let file = match (source, target) {
            (Found::File(_), None) => Some(false),
            (Found::File(_), Some(Found::File(_))) => Some(true),
            (Found::File(_), Some(Found::Directory(_))) => return Err(VfsError::IsADirectory),
            (Found::Directory(_), Some(Found::File(_))) => return Err(VfsError::NotADirectory),
            (Found::Directory(_), Some(Found::Directory(_))) => {
                if !is_empty_directory(self.store(), &to_key).await? {
                    return Err(VfsError::DirectoryNotEmpty);
                }
                None
            }
            (Found::Directory(_), None) => None,
        };
        let pending = self
            .begin_change(EventType::FileRenamed, &to_key, Some(&from_key))
            .await?;
        let moved = match file {
            Some(overwrite) => self.rename_file(&from_key, &to_key, overwrite).await,
            None => self.rename_directory(&from_key, &to_key).await,
        };
        self.settle_change(pending, moved.is_ok()).await;
        moved?;
        self.inner.uploaded.moved(&from_key, &to_key);
        self.inner.hashes.forget(&from_key);
        self.inner.hashes.forget(&to_key);
        Ok(())
    }

    /// Opens a file for reading.
    pub async fn open_read(&self, path: &VirtualPath) -> Result<Download, VfsError> {
        self.log("open_read", path);
        self.require(
            self.permissions().can_read(),
            "this user may not download files",
        )?;
        if path.is_root() {
            return Err(VfsError::IsADirectory);
        }
        let key = self.key(path);
        match head(self.store(), &key).await? {
            Some(meta) => Ok(Download::new(
                Arc::clone(&self.inner.store),
                path.clone(),
                meta,
                self.inner.local_root.is_some(),
            )),
            None => match lookup(self.store(), &key).await? {
                Some(Found::Directory(_)) => Err(VfsError::IsADirectory),
                // A file that appeared between the two calls: report what the first one saw.
                _ => Err(VfsError::NotFound),
            },
        }
    }

    /// Opens a file for writing. With the default [`WriteMode::Truncate`] the client writes
    /// from offset 0 and the commit replaces any previous version; with [`WriteMode::Resume`]
    /// or [`WriteMode::Append`] the upload continues the existing content (see [`WriteMode`]
    /// for the semantics and the cost).
    ///
    /// Needs write permission only, whatever the mode: a write-only partner may resume its own
    /// upload (the existing bytes are copied inside the store and never shown to it).
    pub async fn create(
        &self,
        path: &VirtualPath,
        options: CreateOptions,
    ) -> Result<Upload, VfsError> {
        tracing::debug!(
            user = %self.identity().username,
            session = %self.identity().session_id,
            %path,
            exclusive = options.exclusive,
            mode = ?options.mode,
            "create"
        );
        self.require(
            self.permissions().can_write(),
            "this user may not upload files",
        )?;
        if path.is_root() {
            return Err(VfsError::IsADirectory);
        }
        let key = self.key(path);
        let local_file = self.local_file(&key);
        let (parent, existing) = if self.new_in_marked_local_directory(path, local_file.as_deref())
        {
            (Ok(()), Ok(None))
        } else {
            futures::join!(
                self.require_parent_directory(path),
                lookup_new(self.store(), &key)
            )
        };
        parent?;
        let existing = match existing? {
            Some(Found::Directory(_)) => return Err(VfsError::IsADirectory),
            Some(Found::File(_)) if options.exclusive => return Err(VfsError::AlreadyExists),
            Some(Found::File(_)) if !self.may_change_existing(&key) => {
                return Err(self.deny(
                    "this user may only upload new files: the file exists (a write-only user \
                     cannot overwrite, resume or append to files it did not upload in this \
                     session)",
                ));
            }
            Some(Found::File(meta)) => Some(meta),
            None => None,
        };
        // A drop box never replaces a file someone else put there meanwhile.
        let no_replace = existing.is_none() && self.permissions() != Permissions::ReadWrite;
        let base = match options.mode {
            WriteMode::Truncate => None,
            WriteMode::Resume | WriteMode::Append | WriteMode::Update => existing,
        };
        let events = self
            .inner
            .events
            .as_ref()
            .map(|(sink, bucket)| UploadEvents {
                sink: sink.clone(),
                data: self.event_data(bucket, &key),
            });
        Ok(Upload::new(
            UploadTarget {
                store: Arc::clone(&self.inner.store),
                journal: self.inner.uploads.clone(),
                events,
                local: self.inner.local_root.is_some(),
                local_file: local_file
                    .zip(self.staging_dir())
                    .map(|(dest, staging_dir)| LocalTarget { dest, staging_dir }),
                hashes: self.inner.hashes.clone(),
                uploaded: self.inner.uploaded.clone(),
                no_replace,
                held_budget: self.inner.held_budget.clone(),
            },
            path.clone(),
            key,
            options.mode,
            base,
        ))
    }

    /// Opens a file for appending: shorthand for [`Vfs::create`] with [`WriteMode::Append`]
    /// (FTP `APPE`, SFTP `APPEND`). Every write continues at the end whatever its offset; a
    /// missing file is created. [`Upload::start_offset`] is the size of the existing content.
    pub async fn open_append(&self, path: &VirtualPath) -> Result<Upload, VfsError> {
        self.create(
            path,
            CreateOptions {
                mode: WriteMode::Append,
                ..CreateOptions::default()
            },
        )
        .await
    }

    fn store(&self) -> &dyn ObjectStore {
        self.inner.store.as_ref()
    }

    /// The bucket key of `path`: home segments, then the path's segments.
    fn key(&self, path: &VirtualPath) -> Path {
        object_key(self.inner.home.segments(), path.segments())
    }

    pub(crate) fn key_of(&self, path: &VirtualPath) -> Path {
        self.key(path)
    }

    pub(crate) fn store_ref(&self) -> &dyn ObjectStore {
        self.store()
    }

    pub(crate) fn known_hashes(&self) -> &KnownHashes {
        &self.inner.hashes
    }

    /// Whether this session committed the file at `key` (see [`SessionUploads`]).
    pub(crate) fn uploaded_here(&self, key: &Path) -> bool {
        self.inner.uploaded.contains(key)
    }

    /// Whether this session may replace, continue or rename the existing file at `key`:
    /// read-write sessions may change any file, write-only ones (drop boxes) only what they
    /// uploaded themselves.
    fn may_change_existing(&self, key: &Path) -> bool {
        self.permissions() == Permissions::ReadWrite || self.uploaded_here(key)
    }

    fn require(&self, allowed: bool, why: &'static str) -> Result<(), VfsError> {
        if allowed { Ok(()) } else { Err(self.deny(why)) }
    }

    fn deny(&self, why: &'static str) -> VfsError {
        tracing::debug!(
            user = %self.identity().username,
            session = %self.identity().session_id,
            why,
            "permission denied"
        );
        VfsError::PermissionDenied(why)
    }

    fn log(&self, operation: &'static str, path: &VirtualPath) {
        tracing::debug!(
            user = %self.identity().username,
            session = %self.identity().session_id,
            %path,
            operation
        );
    }

    /// On a local-disk bucket, whether `file` (`path` on disk, see [`Vfs::local_file`]) names
    /// nothing yet and its parent is a directory with a marker (or the home): the usual case
    /// of an upload, answered with two `stat`s instead of five store requests (each its own
    /// blocking task). `false` means "ask the store": any other answer, an error, or no `file`
    /// (a name the store would spell differently on disk: `%`, `#`).
    ///
    /// The two `stat`s run right here, on the runtime's thread: on a local file system they
    /// take microseconds, less than handing them to a blocking thread and back (on a loaded
    /// host that hand-off costs 100–300 µs, on the path of every OPEN).
    fn new_in_marked_local_directory(
        &self,
        path: &VirtualPath,
        file: Option<&std::path::Path>,
    ) -> bool {
        let (Some(root), Some(file)) = (&self.inner.local_root, file) else {
            return false;
        };
        // Nothing at the name: no file, no marker and nothing below it.
        let missing = matches!(
            std::fs::metadata(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound
        );
        missing
            && path
                .parent()
                .filter(|parent| !parent.is_root())
                .map(|parent| local_path(root, &marker_key(&self.key(&parent))))
                .is_none_or(|marker| std::fs::metadata(marker).is_ok_and(|meta| meta.is_file()))
    }

    /// On a local-disk bucket, the directory where uploads are staged (see [`crate::local`]).
    fn staging_dir(&self) -> Option<std::path::PathBuf> {
        let root = self.inner.local_root.as_ref()?;
        Some(root.join(UPLOAD_JOURNAL))
    }

    /// On a local-disk bucket, where `key` is on disk, if the store spells it the same way
    /// there: `None` for names with `%` or `#` (which `LocalFileSystem` encodes) and on other
    /// stores.
    fn local_file(&self, key: &Path) -> Option<std::path::PathBuf> {
        let root = self.inner.local_root.as_ref()?;
        if key.parts().any(|part| part.as_ref().contains(['%', '#'])) {
            return None;
        }
        Some(local_path(root, key))
    }

    /// Fails unless `path`'s parent is a directory: [`VfsError::NotADirectory`] if it is a file,
    /// [`VfsError::NotFound`] if it does not exist.
    async fn require_parent_directory(&self, path: &VirtualPath) -> Result<(), VfsError> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if parent.is_root() {
            return Ok(());
        }
        match lookup(self.store(), &self.key(&parent)).await? {
            Some(Found::Directory(_)) => Ok(()),
            Some(Found::File(_)) => Err(VfsError::NotADirectory),
            None => Err(VfsError::NotFound),
        }
    }

    async fn rename_file(&self, from: &Path, to: &Path, overwrite: bool) -> Result<(), VfsError> {
        if overwrite {
            self.store().rename(from, to).await?;
            return Ok(());
        }
        match self.store().rename_if_not_exists(from, to).await {
            Ok(()) => Ok(()),
            // S3 needs extra configuration for conditional copies; the target was checked to be
            // absent just before, so a plain rename only loses the guard against a racing writer.
            Err(
                object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. },
            ) => {
                tracing::debug!(%from, %to, "store has no conditional rename; renaming plainly");
                self.store().rename(from, to).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn rename_directory(&self, from: &Path, to: &Path) -> Result<(), VfsError> {
        let store = self.store();
        let sources: Vec<Path> = store
            .list(Some(from))
            .map_ok(|meta| meta.location)
            .take(MAX_DIRECTORY_RENAME_OBJECTS + 1)
            .try_collect()
            .await?;
        if sources.len() > MAX_DIRECTORY_RENAME_OBJECTS {
            return Err(VfsError::Unsupported(format!(
                "directories with more than {MAX_DIRECTORY_RENAME_OBJECTS} files cannot be \
                 renamed; move their contents in smaller batches"
            )));
        }
        let source_marker = marker_key(from);
        let had_marker = sources.contains(&source_marker);
        // Copy everything first: if a copy fails, the source is still whole.
        let moves: Vec<(Path, Path)> = sources
            .iter()
            .map(|source| (source.clone(), rebase(source, from, to)))
            .collect();
        // Owned pairs and an owned store handle: futures borrowing from a closure argument
        // would not be `Send` (a higher-ranked lifetime the compiler cannot prove).
        futures::stream::iter(moves)
            .map(|(source, target)| {
                let store = Arc::clone(&self.inner.store);
                async move { store.copy(&source, &target).await }
            })
            .buffer_unordered(RENAME_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        if !had_marker {
            // The source existed only through its contents; keep the target a directory even
            // once it is emptied.
            store.put(&marker_key(to), PutPayload::new()).await?;
        }
        let deletes = futures::stream::iter(sources.into_iter().map(Ok)).boxed();
        store
            .delete_stream(deletes)
            .try_collect::<Vec<Path>>()
            .await?;
        Ok(())
    }
}

/// The bucket key for `path` inside the home whose segments are `home`.
///
/// Each segment becomes one [`PathPart`], which percent-encodes what object stores handle badly
/// (`#`, `%`, `*`, …); the parts are never joined into a string and re-split, so a name can
/// neither add a level nor escape its directory.
pub(crate) fn object_key<'a>(
    home: impl IntoIterator<Item = &'a str>,
    path: impl IntoIterator<Item = &'a str>,
) -> Path {
    Path::from_iter(home.into_iter().chain(path).map(PathPart::from))
}

/// The key of the marker object of the directory at `dir`.
pub(crate) fn marker_key(dir: &Path) -> Path {
    dir.clone().join(DIRECTORY_MARKER)
}

/// The name a user sees for a key whose last part is `raw`, or `None` for objects that are
/// never shown: the directory marker, LocalFileSystem's staging files (`name#123`, a literal
/// `#` that [`PathPart`] never produces because it encodes `#` as `%23`), and names from other
/// tools that no [`VirtualPath`] could address.
fn visible_name(raw: &str) -> Option<String> {
    if wharf_core::is_reserved_name(raw) || is_staging_name(raw) {
        return None;
    }
    let name = percent_decode_str(raw).decode_utf8_lossy().into_owned();
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        tracing::debug!(
            key_part = raw,
            "skipping a key that is not a valid file name"
        );
        return None;
    }
    Some(name)
}

/// LocalFileSystem's reserved pattern `.*#\d+` (see its `is_valid_file_path`).
fn is_staging_name(raw: &str) -> bool {
    match raw.split_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// `location` moved from below `from` to below `to`, keeping its (already encoded) parts.
fn rebase(location: &Path, from: &Path, to: &Path) -> Path {
    match location.prefix_match(from) {
        Some(rest) => Path::from_iter(to.parts().chain(rest)),
        None => to.clone(),
    }
}

fn file_entry(name: String, meta: &ObjectMeta) -> Entry {
    Entry {
        name,
        kind: EntryKind::File,
        size: meta.size,
        modified: Some(meta.last_modified),
    }
}

fn directory_entry(name: String, modified: Option<DateTime<Utc>>) -> Entry {
    Entry {
        name,
        kind: EntryKind::Directory,
        size: 0,
        modified,
    }
}

/// The object at `key`, or `None`. A key below a file counts as absent (LocalFileSystem reports
/// it as "not a directory", in-memory and cloud stores as not found).
pub(crate) async fn head(
    store: &dyn ObjectStore,
    key: &Path,
) -> Result<Option<ObjectMeta>, VfsError> {
    match store.head(key).await.map_err(VfsError::from) {
        Ok(meta) => Ok(Some(meta)),
        Err(VfsError::NotFound | VfsError::NotADirectory | VfsError::IsADirectory) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One level of the tree below `dir` (the whole bucket for the root key).
async fn list_children(store: &dyn ObjectStore, dir: &Path) -> Result<ListResult, VfsError> {
    let prefix = if dir.is_root() { None } else { Some(dir) };
    match store
        .list_with_delimiter(prefix)
        .await
        .map_err(VfsError::from)
    {
        Ok(listing) => Ok(listing),
        // Listing below a file on local disk.
        Err(VfsError::NotFound | VfsError::NotADirectory) => Ok(ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        }),
        Err(e) => Err(e),
    }
}

/// What `key` (not the root key) is: a file, a directory (its marker exists, or anything below
/// it), or nothing. One round trip for files and marked directories, two otherwise.
async fn lookup(store: &dyn ObjectStore, key: &Path) -> Result<Option<Found>, VfsError> {
    let marker = marker_key(key);
    let (file, marker) = futures::join!(head(store, key), head(store, &marker));
    if let Some(found) = found_by_head(file?, marker?) {
        return Ok(Some(found));
    }
    Ok(found_by_listing(list_children(store, key).await?))
}

/// [`lookup`] in one round trip, for names that usually do not exist yet (the target of an
/// upload or of a mkdir):
/// the listing below the name is asked for at once with the two HEADs instead of after them.
/// It costs a wasted LIST when the name is a file or a marked directory.
async fn lookup_new(store: &dyn ObjectStore, key: &Path) -> Result<Option<Found>, VfsError> {
    let marker = marker_key(key);
    let (file, marker, listing) = futures::join!(
        head(store, key),
        head(store, &marker),
        list_children(store, key)
    );
    if let Some(found) = found_by_head(file?, marker?) {
        return Ok(Some(found));
    }
    Ok(found_by_listing(listing?))
}

fn found_by_head(file: Option<ObjectMeta>, marker: Option<ObjectMeta>) -> Option<Found> {
    match (file, marker) {
        (Some(meta), _) => Some(Found::File(meta)),
        (None, Some(marker)) => Some(Found::Directory(Some(marker.last_modified))),
        (None, None) => None,
    }
}

fn found_by_listing(listing: ListResult) -> Option<Found> {
    if listing.objects.is_empty() && listing.common_prefixes.is_empty() {
        None
    } else {
        Some(Found::Directory(None))
    }
}

/// `true` if nothing but the marker is below `dir`.
async fn is_empty_directory(store: &dyn ObjectStore, dir: &Path) -> Result<bool, VfsError> {
    let listing = list_children(store, dir).await?;
    Ok(listing.common_prefixes.is_empty()
        && listing
            .objects
            .iter()
            .all(|meta| meta.location.filename() == Some(DIRECTORY_MARKER)))
}

/// Makes `dir` a directory that persists while empty, unless it already has a marker.
/// Fails with [`VfsError::NotADirectory`] if a file has that name.
pub(crate) async fn ensure_directory(store: &dyn ObjectStore, dir: &Path) -> Result<(), VfsError> {
    let marker = marker_key(dir);
    let (file, existing) = futures::join!(head(store, dir), head(store, &marker));
    if file?.is_some() {
        return Err(VfsError::NotADirectory);
    }
    if existing?.is_none() {
        store.put(&marker, PutPayload::new()).await?;
    }
    Ok(())
}

/// Entries directly under a directory as the store lists them: files and sub-directories
/// merged in name order, the marker and staging files left out. `times` are the
/// sub-directories' modification times, in the order of `listing.common_prefixes`.
fn sorted_entries(listing: ListResult, times: &[Option<DateTime<Utc>>]) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(listing.objects.len() + listing.common_prefixes.len());
    for (prefix, modified) in listing.common_prefixes.iter().zip(times) {
        if let Some(name) = prefix.filename().and_then(visible_name) {
            entries.push(directory_entry(name, *modified));
        }
    }
    for meta in &listing.objects {
        if let Some(name) = meta.location.filename().and_then(visible_name) {
            entries.push(file_entry(name, meta));
        }
    }
    sort_entries(entries)
}

fn sort_entries(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.kind.cmp(&b.kind)));
    entries
}

/// Entries per page fetched from a paged store (the S3 maximum).
const LIST_PAGE_KEYS: usize = 1000;

/// Longest cursor [`Vfs::list_from`] accepts: a stored name and a `/`. Names made through
/// Wharf are at most [`crate::MAX_NAME_BYTES`] (three times that percent-encoded); other tools
/// may store longer ones (S3 keys reach 1024 bytes).
const MAX_CURSOR_BYTES: usize = 4096;

/// One page of [`Vfs::list_from`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPage {
    /// In the store's key order (see [`Vfs::list_from`]).
    pub entries: Vec<Entry>,
    /// Where the next page starts (give it to [`Vfs::list_from`]); `None` on the last page.
    /// Opaque: the position of the last entry in the store's order.
    pub next: Option<String>,
}

/// Gives the directories among `entries` (positioned below the directory `dir`, see
/// [`positioned_entries`]) that have no time yet their markers' times.
async fn with_directory_times(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    entries: &mut [(String, Entry)],
) {
    let untimed: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].1.kind == EntryKind::Directory && entries[i].1.modified.is_none())
        .collect();
    let keys: Vec<Path> = untimed
        .iter()
        .filter_map(|&i| {
            let raw = entries[i].0.strip_suffix('/')?;
            let key = if dir.is_root() {
                raw.to_owned()
            } else {
                format!("{dir}/{raw}")
            };
            Path::parse(key).ok()
        })
        .collect();
    if keys.len() != untimed.len() {
        return;
    }
    for (i, modified) in untimed.into_iter().zip(marker_times(store, &keys).await) {
        entries[i].1.modified = modified;
    }
}

/// The modification times of the directories `prefixes` (bucket keys): their markers' (the
/// time Wharf created them), `None` for a prefix without one (made by another tool). The
/// markers are asked for a few at a time.
async fn marker_times(
    store: &Arc<dyn ObjectStore>,
    prefixes: &[Path],
) -> Vec<Option<DateTime<Utc>>> {
    /// HEADs in flight at once: hides round trips without crowding the connection pool.
    const MARKER_HEADS: usize = 16;
    let markers: Vec<Path> = prefixes.iter().map(marker_key).collect();
    futures::stream::iter(markers)
        .map(|marker| {
            let store = Arc::clone(store);
            async move {
                match head(store.as_ref(), &marker).await {
                    Ok(found) => found.map(|meta| meta.last_modified),
                    Err(e) => {
                        tracing::debug!(%marker, error = %e, "no time for a directory");
                        None
                    }
                }
            }
        })
        .buffered(MARKER_HEADS)
        .collect()
        .await
}

/// The visible entries of one listing with their positions in the store's key order: the
/// stored name, followed by `/` for a directory (as its keys sort). Directories have no time
/// yet (see [`with_directory_times`]).
fn positioned_entries(listing: ListResult) -> impl Iterator<Item = (String, Entry)> {
    let directories = listing.common_prefixes.into_iter().filter_map(|prefix| {
        let raw = prefix.filename()?;
        let name = visible_name(raw)?;
        Some((format!("{raw}/"), directory_entry(name, None)))
    });
    let files = listing.objects.into_iter().filter_map(|meta| {
        let raw = meta.location.filename()?;
        let name = visible_name(raw)?;
        Some((raw.to_owned(), file_entry(name, &meta)))
    });
    directories.chain(files)
}

/// The first `keep` visible entries of the local directory `dir` after `cursor`, in
/// position order (see [`positioned_entries`]), reading the whole directory but holding only
/// `keep` entries at a time. Runs on a blocking thread.
fn local_entries_after(
    dir: &std::path::Path,
    cursor: Option<&str>,
    keep: usize,
) -> Result<Vec<(String, Entry)>, VfsError> {
    use std::collections::BinaryHeap;
    // A max-heap of positions: the largest is dropped whenever more than `keep` are held.
    let mut best: BinaryHeap<(String, String, bool)> = BinaryHeap::with_capacity(keep + 1);
    for entry in std::fs::read_dir(dir).map_err(local_error)? {
        let entry = entry.map_err(local_error)?;
        let raw = entry.file_name();
        let Some(raw) = raw.to_str() else {
            continue;
        };
        let Some(name) = visible_name(raw) else {
            continue;
        };
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_symlink() => match std::fs::metadata(entry.path()) {
                Ok(meta) => meta.is_dir(),
                // A dangling link: not listable as a file either.
                Err(_) => continue,
            },
            Ok(t) => t.is_dir(),
            Err(_) => continue,
        };
        let position = if is_dir {
            format!("{raw}/")
        } else {
            raw.to_owned()
        };
        if cursor.is_some_and(|c| position.as_str() <= c) {
            continue;
        }
        if best.len() == keep
            && best
                .peek()
                .is_some_and(|(largest, _, _)| position >= *largest)
        {
            continue;
        }
        best.push((position, name, is_dir));
        if best.len() > keep {
            best.pop();
        }
    }
    let mut entries = Vec::with_capacity(best.len());
    for (position, name, is_dir) in best.into_sorted_vec() {
        let raw = position.strip_suffix('/').unwrap_or(&position);
        let Ok(meta) = std::fs::metadata(dir.join(raw)) else {
            // Deleted meanwhile.
            continue;
        };
        let entry = if is_dir {
            directory_entry(name, meta.modified().ok().map(DateTime::<Utc>::from))
        } else {
            Entry {
                name,
                kind: EntryKind::File,
                size: meta.len(),
                modified: meta.modified().ok().map(DateTime::<Utc>::from),
            }
        };
        entries.push((position, entry));
    }
    Ok(entries)
}

/// A directory being listed. On stores with a [`ListPager`] (S3, GCS, Azure) each page is one
/// request of at most [`LIST_PAGE_KEYS`] keys, fetched when the previous one has been
/// consumed, so memory stays bounded whatever the directory's size. A local-disk bucket's
/// directory is read from disk a page at a time, with the same bound. Other stores (memory)
/// are read in one go and handed out in pages.
///
/// Each page is sorted by name; pages come in the store's key order (byte order of the encoded
/// names) on cloud stores and in directory order on local disk.
pub struct Listing {
    source: ListingSource,
    ready: std::collections::VecDeque<Entry>,
}

enum ListingSource {
    Paged {
        pager: ListPager,
        /// For the directories' markers (their modification times).
        store: Arc<dyn ObjectStore>,
        dir: Path,
        token: Option<String>,
        done: bool,
    },
    /// A local directory read a page at a time: each page is one blocking task that reads up
    /// to [`LIST_PAGE_KEYS`] entries and hands the open directory back, so a listing the
    /// client reads slowly (or never) holds no thread.
    Local {
        path: std::path::PathBuf,
        /// The open directory between pages; `None` before the first page.
        dir: Option<std::fs::ReadDir>,
        /// The page being read. Kept here so a fetch that is dropped while waiting loses
        /// nothing: the next one waits for the same page.
        reading: Option<tokio::task::JoinHandle<LocalPage>>,
        done: bool,
    },
    Done,
}

impl ListingSource {
    fn has_more(&self) -> bool {
        match self {
            ListingSource::Paged { done, .. } | ListingSource::Local { done, .. } => !done,
            ListingSource::Done => false,
        }
    }
}

/// One page of a local directory: the directory to read on from (`None` once it is read
/// through) and the entries.
type LocalPage = Result<(Option<std::fs::ReadDir>, Vec<Entry>), VfsError>;

/// The local directory `dir`, read in pages of [`LIST_PAGE_KEYS`] entries on demand (see
/// [`read_local_page`]).
fn local_listing(dir: std::path::PathBuf) -> ListingSource {
    ListingSource::Local {
        path: dir,
        dir: None,
        reading: None,
        done: false,
    }
}

/// Reads the next page of the local directory `path` from `open` (opened here on the first
/// page): up to [`LIST_PAGE_KEYS`] entries, names as [`visible_name`] shows them, symbolic
/// links followed (as LocalFileSystem does), entries that vanish while being read skipped.
/// Blocking: runs on a blocking thread, which it gives back when the page is read.
fn read_local_page(path: &std::path::Path, open: Option<std::fs::ReadDir>) -> LocalPage {
    let mut entries = match open {
        Some(entries) => entries,
        None => std::fs::read_dir(path).map_err(local_error)?,
    };
    let mut page = Vec::with_capacity(LIST_PAGE_KEYS);
    while page.len() < LIST_PAGE_KEYS {
        let Some(entry) = entries.next() else {
            return Ok((None, sort_entries(page)));
        };
        let entry = entry.map_err(local_error)?;
        let raw = entry.file_name();
        let Some(name) = raw.to_str().and_then(visible_name) else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            // Deleted meanwhile, or a dangling link: not listable as a file either.
            continue;
        };
        let modified = meta.modified().ok().map(DateTime::<Utc>::from);
        // A directory's own time changes whenever an entry is added or removed.
        page.push(if meta.is_dir() {
            directory_entry(name, modified)
        } else {
            Entry {
                name,
                kind: EntryKind::File,
                size: meta.len(),
                modified,
            }
        });
    }
    Ok((Some(entries), sort_entries(page)))
}

/// Where `key` is on a local-disk bucket rooted at `root`: its parts, as the key spells them,
/// joined under `root`.
fn local_path(root: &std::path::Path, key: &Path) -> std::path::PathBuf {
    key.parts()
        .fold(root.to_path_buf(), |dir, part| dir.join(part.as_ref()))
}

fn local_error(e: std::io::Error) -> VfsError {
    match e.kind() {
        std::io::ErrorKind::NotFound => VfsError::NotFound,
        std::io::ErrorKind::NotADirectory => VfsError::NotADirectory,
        _ => VfsError::Storage(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        }),
    }
}

impl Listing {
    /// The next entries (at most one store page), `None` when the listing is complete.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Entry>>, VfsError> {
        while self.ready.is_empty() {
            if !self.source.has_more() {
                return Ok(None);
            }
            self.fetch().await?;
        }
        Ok(Some(self.ready.drain(..).collect()))
    }

    /// Up to `max` entries, fetching pages as needed; empty when the listing is complete.
    pub async fn next_entries(&mut self, max: usize) -> Result<Vec<Entry>, VfsError> {
        while self.ready.len() < max && self.source.has_more() {
            self.fetch().await?;
        }
        let n = self.ready.len().min(max);
        Ok(self.ready.drain(..n).collect())
    }

    /// Fetches one page into `ready`; returns how many keys the store returned (before
    /// hiding markers), so an empty first page means "no such directory".
    async fn fetch(&mut self) -> Result<usize, VfsError> {
        let (pager, store, dir, token, done) = match &mut self.source {
            ListingSource::Paged {
                pager,
                store,
                dir,
                token,
                done,
            } => (pager, store, dir, token, done),
            ListingSource::Local {
                path,
                dir,
                reading,
                done,
            } => {
                let task = reading.get_or_insert_with(|| {
                    let path = path.clone();
                    let open = dir.take();
                    tokio::task::spawn_blocking(move || read_local_page(&path, open))
                });
                let read = task.await;
                *reading = None;
                let page = read.map_err(|e| local_error(std::io::Error::other(e)));
                return match page.and_then(|page| page) {
                    Ok((open, page)) => {
                        *done = open.is_none();
                        *dir = open;
                        let n = page.len();
                        self.ready.extend(page);
                        Ok(n)
                    }
                    Err(e) => {
                        *done = true;
                        Err(e)
                    }
                };
            }
            ListingSource::Done => return Ok(0),
        };
        let (result, next) = pager
            .page(dir, token.take(), LIST_PAGE_KEYS, None)
            .await
            .map_err(VfsError::from)?;
        let raw = result.objects.len() + result.common_prefixes.len();
        *done = next.is_none();
        *token = next;
        let times = marker_times(store, &result.common_prefixes).await;
        self.ready.extend(sorted_entries(result, &times));
        Ok(raw)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_built_part_by_part() {
        let key = object_key(["partners", "acme"], ["in", "a b#1%.txt"]);
        assert_eq!(key.as_ref(), "partners/acme/in/a b%231%25.txt");
        // A name can never add a level, whatever it contains.
        assert_eq!(object_key([], ["a/b"]).parts().count(), 1);
        assert_eq!(object_key([], ["..", "."]).as_ref(), "%2E%2E/%2E");
        assert_eq!(object_key([], []).as_ref(), "");
    }

    #[test]
    fn names_round_trip_and_hidden_ones_stay_hidden() {
        for name in [
            "plain.txt",
            "with space",
            "#1",
            "100%",
            "%41",
            "ü",
            "[x]",
            "a*b?c",
        ] {
            let key = object_key([], [name]);
            assert_eq!(
                visible_name(key.filename().unwrap()).as_deref(),
                Some(name),
                "{name}"
            );
        }
        assert_eq!(visible_name(DIRECTORY_MARKER), None);
        assert_eq!(visible_name("file.txt#12"), None);
        assert_eq!(visible_name("%2E%2E"), None);
        assert_eq!(visible_name("a%2Fb"), None);
        assert!(visible_name("file.txt#x1").is_some());
        assert!(visible_name("file.txt#").is_some());
    }

    #[test]
    fn rebase_keeps_encoded_parts() {
        let from = object_key(["h"], ["d"]);
        let to = object_key(["h"], ["e #"]);
        let location = object_key(["h"], ["d", "sub", "x%y"]);
        assert_eq!(rebase(&location, &from, &to).as_ref(), "h/e %23/sub/x%25y");
    }
}
