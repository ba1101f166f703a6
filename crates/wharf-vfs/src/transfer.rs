//! [`Upload`] and [`Download`]: one open file.

use bytes::Bytes;

use crate::VfsError;

/// What a committed upload wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    /// Bytes in the object.
    pub size: u64,
    /// Hex SHA-256 of the object's content, computed while streaming.
    pub sha256: String,
}

/// A file being written. Nothing is visible to readers until [`Upload::commit`] returns; on
/// [`Upload::abort`], on error, or when dropped uncommitted, the previous version (or nothing)
/// stays in place and no multipart parts are left behind.
pub struct Upload {}

impl Upload {
    /// Writes `data` at `offset`. Writes must arrive in order, except that writes ahead of the
    /// current end are held in a bounded reorder window (pipelining clients send them slightly
    /// out of order); a write before the end already sent, or beyond the window, fails with
    /// [`VfsError::Unsupported`] and a message saying why.
    pub async fn write(&mut self, offset: u64, data: Bytes) -> Result<(), VfsError> {
        let _ = (offset, data);
        todo!()
    }

    /// Bytes accepted so far, counting the contiguous prefix only.
    pub fn len(&self) -> u64 {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the file visible (atomically replacing any previous version). Fails if there is a
    /// gap in the written data.
    pub async fn commit(self) -> Result<UploadSummary, VfsError> {
        todo!()
    }

    /// Throws the upload away.
    pub async fn abort(self) -> Result<(), VfsError> {
        todo!()
    }
}

/// A file being read: a ranged GET stream with read-ahead, re-opened only when a read does not
/// continue where the previous one ended.
pub struct Download {}

impl Download {
    /// Size of the file when it was opened.
    pub fn size(&self) -> u64 {
        todo!()
    }

    /// Up to `len` bytes at `offset`; fewer only at the end of the file, empty at or past it.
    pub async fn read(&mut self, offset: u64, len: u32) -> Result<Bytes, VfsError> {
        let _ = (offset, len);
        todo!()
    }
}
