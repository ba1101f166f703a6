//! Notes of the multipart uploads in progress, kept in the bucket itself, so that the parts of
//! an upload whose gateway died (crash, `kill -9`, lost machine) are found and removed.
//!
//! A live gateway aborts every upload that fails or is dropped ([`crate::Upload`]'s `Drop`).
//! What only a sweep can remove is the upload of a process that no longer runs: S3 and GCS keep
//! its parts, billed and invisible, forever; object_store cannot list multipart uploads, and a
//! stateless gateway remembers nothing across restarts. So each multipart upload on a cloud
//! store starts by writing a small note under [`UPLOAD_JOURNAL`] at the bucket root (the key
//! and the store's upload id), refreshes it while parts keep coming, and deletes it when the
//! upload completes or is aborted. [`UploadJournal::sweep`] aborts the uploads whose note has
//! not been refreshed for longer than a threshold, from any gateway or control plane that uses
//! the bucket (sweeps are idempotent, so several replicas may sweep at once).
//!
//! Local-disk buckets need no journal: their multipart uploads are staging files next to the
//! target (`name#N`), removed by [`sweep_local_staging`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use futures::future::BoxFuture;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    MultipartId, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, PutResult, UploadPart,
};
use serde::{Deserialize, Serialize};

use crate::{UPLOAD_JOURNAL, VfsError};

/// How often a live upload rewrites its note while it receives parts. A note older than
/// [`ORPHAN_AGE`] therefore belongs to an upload that is gone or idle far beyond any session
/// idle timeout.
pub const NOTE_REFRESH: Duration = Duration::from_secs(10 * 60);

/// Age of a note (or of a local staging file) after which its upload counts as orphaned.
pub const ORPHAN_AGE: Duration = Duration::from_secs(6 * 60 * 60);

/// What a note records: enough to abort the upload from any process.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Note {
    /// The object key, relative to the bucket root.
    key: String,
    /// The store's multipart upload id.
    upload_id: String,
    /// When the upload started (RFC 3339), for operators reading the notes.
    started: String,
    /// Process id of the gateway, for operators reading the notes.
    pid: u32,
}

/// A bucket's journal of multipart uploads in progress (cloud stores only).
#[derive(Clone)]
pub struct UploadJournal {
    /// The bucket's store (prefixed to the bucket's root), where the notes live.
    store: Arc<dyn ObjectStore>,
    /// The same store, unprefixed, with explicit multipart upload ids.
    multipart: Arc<dyn MultipartStore>,
    /// The bucket's prefix inside `multipart`.
    root: Path,
}

impl std::fmt::Debug for UploadJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadJournal")
            .field("store", &self.store.to_string())
            .field("root", &self.root)
            .finish()
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Orphaned uploads aborted (or local staging files removed).
    pub aborted: usize,
    /// Notes (or staging files) still fresh: uploads in progress.
    pub in_progress: usize,
}

impl UploadJournal {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        multipart: Arc<dyn MultipartStore>,
        root: Path,
    ) -> Self {
        UploadJournal {
            store,
            multipart,
            root,
        }
    }

    /// The store's multipart interface, for tests that check what a sweep removed.
    #[cfg(test)]
    pub(crate) fn multipart_store(&self) -> Arc<dyn MultipartStore> {
        self.multipart.clone()
    }

    fn location(&self, key: &Path) -> Path {
        Path::from_iter(self.root.parts().chain(key.parts()))
    }

    /// Starts a multipart upload to `key` (relative to the bucket root) and notes it.
    pub(crate) async fn start(&self, key: &Path) -> object_store::Result<Box<dyn MultipartUpload>> {
        let location = self.location(key);
        let upload_id = self.multipart.create_multipart(&location).await?;
        let note_key =
            Path::from_iter([UPLOAD_JOURNAL.to_owned(), uuid::Uuid::new_v4().to_string()]);
        let note = Note {
            key: key.to_string(),
            upload_id: upload_id.clone(),
            started: Utc::now().to_rfc3339(),
            pid: std::process::id(),
        };
        let body = PutPayload::from(serde_json::to_vec(&note).unwrap_or_default());
        if let Err(e) = self.store.put(&note_key, body.clone()).await {
            // Without a note a crash would leave the parts behind for good: do not upload.
            if let Err(abort) = self.multipart.abort_multipart(&location, &upload_id).await {
                tracing::warn!(%key, error = %abort, "could not abort a multipart upload");
            }
            return Err(e);
        }
        Ok(Box::new(JournaledUpload {
            shared: Arc::new(Shared {
                journal: self.clone(),
                location,
                upload_id,
                note_key,
                note: body,
                parts: Mutex::new(Vec::new()),
                refreshed: Mutex::new(Instant::now()),
            }),
            next_part: 0,
        }))
    }

    /// Aborts the uploads whose note is older than `older_than` and deletes their notes.
    /// Uploads that finished meanwhile are not harmed: aborting a completed upload id fails
    /// (or does nothing) and never removes the object.
    pub async fn sweep(&self, older_than: Duration) -> Result<SweepReport, VfsError> {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let prefix = Path::from(UPLOAD_JOURNAL);
        let mut notes = self.store.list(Some(&prefix));
        let mut report = SweepReport::default();
        while let Some(meta) = notes.next().await {
            let meta = meta?;
            if meta.last_modified > cutoff {
                report.in_progress += 1;
                continue;
            }
            let note = match self.store.get(&meta.location).await {
                Ok(got) => got.bytes().await?,
                // Deleted meanwhile by its upload or by another sweeper.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            match serde_json::from_slice::<Note>(&note) {
                Ok(note) => match Path::parse(&note.key) {
                    Ok(key) => {
                        let location = self.location(&key);
                        match self
                            .multipart
                            .abort_multipart(&location, &note.upload_id)
                            .await
                        {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                                tracing::info!(
                                    key = %note.key,
                                    started = %note.started,
                                    pid = note.pid,
                                    "aborted an orphaned multipart upload"
                                );
                            }
                            Err(e) => {
                                tracing::warn!(key = %note.key, error = %e, "could not abort an orphaned multipart upload");
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(note = %meta.location, error = %e, "dropping a note with an invalid key")
                    }
                },
                Err(e) => {
                    tracing::warn!(note = %meta.location, error = %e, "dropping an unreadable upload note")
                }
            }
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => report.aborted += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(report)
    }
}

/// What the part futures and the upload share.
struct Shared {
    journal: UploadJournal,
    location: Path,
    upload_id: MultipartId,
    note_key: Path,
    note: PutPayload,
    /// Part ids by part index, filled in as parts finish.
    parts: Mutex<Vec<Option<PartId>>>,
    /// When the note was last written.
    refreshed: Mutex<Instant>,
}

impl Shared {
    /// Rewrites the note if it is due, so sweeps keep seeing this upload as alive.
    async fn refresh_note(&self) -> object_store::Result<()> {
        {
            let mut refreshed = self
                .refreshed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if refreshed.elapsed() < NOTE_REFRESH {
                return Ok(());
            }
            *refreshed = Instant::now();
        }
        self.journal
            .store
            .put(&self.note_key, self.note.clone())
            .await
            .map(|_| ())
    }

    async fn delete_note(&self) {
        match self.journal.store.delete(&self.note_key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            // The upload itself is settled; a sweep will drop the stale note later.
            Err(e) => {
                tracing::warn!(note = %self.note_key, error = %e, "could not delete an upload note")
            }
        }
    }
}

/// A multipart upload through [`MultipartStore`], with its note in the journal.
struct JournaledUpload {
    shared: Arc<Shared>,
    next_part: usize,
}

impl std::fmt::Debug for JournaledUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournaledUpload")
            .field("location", &self.shared.location)
            .field("next_part", &self.next_part)
            .finish()
    }
}

#[async_trait::async_trait]
impl MultipartUpload for JournaledUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let index = self.next_part;
        self.next_part += 1;
        let shared = self.shared.clone();
        let part: BoxFuture<'static, object_store::Result<()>> = Box::pin(async move {
            shared.refresh_note().await?;
            let id = shared
                .journal
                .multipart
                .put_part(&shared.location, &shared.upload_id, index, data)
                .await?;
            let mut parts = shared.parts.lock().unwrap_or_else(PoisonError::into_inner);
            if parts.len() <= index {
                parts.resize(index + 1, None);
            }
            parts[index] = Some(id);
            Ok(())
        });
        part
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts = {
            let parts = self
                .shared
                .parts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if parts.len() != self.next_part || parts.iter().any(Option::is_none) {
                return Err(object_store::Error::Generic {
                    store: "wharf-vfs",
                    source: "a multipart upload was completed before all its parts finished".into(),
                });
            }
            parts.iter().flatten().cloned().collect()
        };
        let result = self
            .shared
            .journal
            .multipart
            .complete_multipart(&self.shared.location, &self.shared.upload_id, parts)
            .await?;
        self.shared.delete_note().await;
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.shared
            .journal
            .multipart
            .abort_multipart(&self.shared.location, &self.shared.upload_id)
            .await?;
        self.shared.delete_note().await;
        Ok(())
    }
}

/// Removes the staging files of a local-disk bucket whose root is `root` (files in its staging
/// directory, `.wharf-uploads`; see [`crate::local`]) that have not been written for longer
/// than `older_than`: the uploads of a process that died. Live uploads write their staging
/// file continuously. Nothing outside the staging directory is ever looked at, and only plain
/// files in it are removed. Runs on a blocking thread.
pub async fn sweep_local_staging(
    root: PathBuf,
    older_than: Duration,
) -> Result<SweepReport, VfsError> {
    tokio::task::spawn_blocking(move || {
        let mut report = SweepReport::default();
        let dir = root.join(wharf_core::UPLOAD_JOURNAL);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(local_error(e)),
        };
        for entry in entries {
            let entry = entry.map_err(local_error)?;
            if !entry.file_type().map_err(local_error)?.is_file() {
                continue;
            }
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .unwrap_or_default();
            if age < older_than {
                report.in_progress += 1;
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed the staging file of an orphaned upload");
                    report.aborted += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(local_error(e)),
            }
        }
        Ok(report)
    })
    .await
    .map_err(|e| local_error(std::io::Error::other(e)))?
}

fn local_error(e: std::io::Error) -> VfsError {
    VfsError::Storage(object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(e),
    })
}
