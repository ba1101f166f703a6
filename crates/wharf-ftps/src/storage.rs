//! The libunftp [`StorageBackend`] over the logged-in user's [`Vfs`]: every FTP path goes
//! through [`VirtualPath`] (the jail) and every decision (permissions, what a directory is,
//! when an upload becomes visible) is the VFS's, exactly as over SFTP.

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tracing::Instrument;
use unftp_core::storage::{
    Error, ErrorKind, FEATURE_RESTART, Fileinfo, Metadata, Permissions as UnixMode, Result,
    StorageBackend,
};
use wharf_core::Permissions;
use wharf_vfs::{
    CreateOptions, Download, Entry, EntryKind, Upload, VfsError, VirtualPath, WriteMode,
};

use crate::auth::FtpsUser;

/// Bytes read from the data connection before they are handed to the upload at once.
const WRITE_CHUNK: usize = 256 * 1024;
/// Bytes asked of a download at once.
const READ_CHUNK: u32 = 256 * 1024;

/// The storage back end of every FTPS session. It holds nothing: the session's [`Vfs`] lives
/// in the logged-in [`FtpsUser`] that libunftp passes to every call.
///
/// [`Vfs`]: wharf_vfs::Vfs
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct VfsBackend;

/// File facts for LIST, MLSD, MLST, SIZE and MDTM.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    kind: EntryKind,
    size: u64,
    modified: Option<DateTime<Utc>>,
    permissions: Permissions,
}

impl Meta {
    fn new(entry: &Entry, permissions: Permissions) -> Self {
        Meta {
            kind: entry.kind,
            size: entry.size,
            modified: entry.modified,
            permissions,
        }
    }
}

impl Metadata for Meta {
    fn len(&self) -> u64 {
        self.size
    }

    fn is_dir(&self) -> bool {
        self.kind == EntryKind::Directory
    }

    fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }

    fn is_symlink(&self) -> bool {
        false
    }

    /// Directories that exist only as a prefix have no time; they show the epoch.
    fn modified(&self) -> Result<SystemTime> {
        Ok(self
            .modified
            .map(SystemTime::from)
            .unwrap_or(SystemTime::UNIX_EPOCH))
    }

    fn gid(&self) -> u32 {
        0
    }

    fn uid(&self) -> u32 {
        0
    }

    /// Mode bits that tell the partner what it may do, as over SFTP (`ls -l` shows
    /// `r--r--r--` for a read-only user, `-w-------` for a write-only one).
    fn permissions(&self) -> UnixMode {
        UnixMode(match (self.kind, self.permissions) {
            (EntryKind::File, Permissions::ReadWrite) => 0o644,
            (EntryKind::File, Permissions::ReadOnly) => 0o444,
            (EntryKind::File, Permissions::WriteOnly) => 0o200,
            (EntryKind::Directory, Permissions::ReadOnly) => 0o555,
            (EntryKind::Directory, _) => 0o755,
        })
    }
}

/// The FTP reply for a [`VfsError`]. libunftp turns the kind into a fixed reply text; the
/// error itself is logged.
pub(crate) fn ftp_error(e: VfsError) -> Error {
    let kind = match &e {
        VfsError::NotFound | VfsError::AlreadyExists | VfsError::IsADirectory => {
            ErrorKind::PermanentFileNotAvailable
        }
        VfsError::NotADirectory => ErrorKind::PermanentDirectoryNotAvailable,
        VfsError::DirectoryNotEmpty => ErrorKind::PermanentDirectoryNotEmpty,
        VfsError::PermissionDenied(_) => ErrorKind::PermissionDenied,
        VfsError::InvalidPath(_) => ErrorKind::FileNameNotAllowedError,
        VfsError::Unsupported(_) => ErrorKind::CommandNotImplemented,
        VfsError::Storage(source) => {
            tracing::warn!(error = %source, "storage error");
            ErrorKind::LocalError
        }
        VfsError::Config(message) => {
            tracing::error!(error = %message, "bucket configuration error");
            ErrorKind::LocalError
        }
    };
    tracing::debug!(error = %e, ?kind, "operation failed");
    Error::new(kind, e)
}

/// The virtual path of an FTP path (libunftp joins it to the working directory first).
fn virtual_path(path: &Path) -> Result<VirtualPath> {
    let text = path.to_str().ok_or_else(|| {
        Error::new(
            ErrorKind::FileNameNotAllowedError,
            "the path is not valid UTF-8",
        )
    })?;
    VirtualPath::parse(text).map_err(ftp_error)
}

/// A name that cannot be shown on one line of a listing (a control character would let it
/// forge lines of its own).
fn listable(name: &str) -> bool {
    !name.chars().any(char::is_control)
}

#[async_trait]
impl StorageBackend<FtpsUser> for VfsBackend {
    type Metadata = Meta;

    fn name(&self) -> &str {
        "wharf-vfs"
    }

    /// REST (restart) is supported: downloads from any offset, uploads at the current end.
    fn supported_features(&self) -> u32 {
        FEATURE_RESTART
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpsUser,
        path: P,
    ) -> Result<Self::Metadata> {
        let vfs = user.vfs();
        let path = virtual_path(path.as_ref());
        async move {
            let path = path?;
            let entry = vfs.stat(&path).await.map_err(ftp_error)?;
            Ok(Meta::new(&entry, vfs.permissions()))
        }
        .instrument(user.span())
        .await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpsUser,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, Self::Metadata>>>
    where
        <Self as StorageBackend<FtpsUser>>::Metadata: Metadata,
    {
        let vfs = user.vfs();
        let path = virtual_path(path.as_ref());
        async move {
            let path = path?;
            // libunftp wants the whole listing at once; the VFS reads it page by page.
            let mut listing = vfs.list_pages(&path).await.map_err(ftp_error)?;
            let mut files = Vec::new();
            while let Some(page) = listing.next_page().await.map_err(ftp_error)? {
                for entry in page {
                    if !listable(&entry.name) {
                        tracing::debug!(name = ?entry.name, "not listing a name with control characters");
                        continue;
                    }
                    files.push(Fileinfo {
                        metadata: Meta::new(&entry, vfs.permissions()),
                        path: PathBuf::from(entry.name),
                    });
                }
            }
            Ok(files)
        }
        .instrument(user.span())
        .await
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpsUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let vfs = user.vfs();
        let path = virtual_path(path.as_ref());
        async move {
            let path = path?;
            let download = vfs.open_read(&path).await.map_err(ftp_error)?;
            tracing::info!(%path, size = download.size(), offset = start_pos, "download started");
            Ok(Box::new(DownloadReader::new(download, start_pos))
                as Box<dyn AsyncRead + Send + Sync + Unpin>)
        }
        .instrument(user.span())
        .await
    }

    /// STOR (`start_pos` 0), REST n + STOR, and APPE (for which libunftp passes the current
    /// size as `start_pos`). A non-zero offset continues the file, as SFTP resume does, and
    /// must equal the file's current size. Nothing is visible until the data connection has
    /// been read to its end (a TLS close, so a cut connection is an error, not an end) and the
    /// upload is committed; on any error the upload is aborted and the previous version stays.
    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &FtpsUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        let vfs = user.vfs();
        let path = virtual_path(path.as_ref());
        async move {
            let path = path?;
            let mode = if start_pos == 0 {
                WriteMode::Truncate
            } else {
                WriteMode::Resume
            };
            let upload = vfs
                .create(
                    &path,
                    CreateOptions {
                        mode,
                        ..CreateOptions::default()
                    },
                )
                .await
                .map_err(ftp_error)?;
            if upload.start_offset() != start_pos {
                let existing = upload.start_offset();
                abort(upload).await;
                return Err(ftp_error(VfsError::Unsupported(format!(
                    "cannot continue at offset {start_pos}: uploads resume only at the current \
                     end of the file ({existing} bytes)"
                ))));
            }
            tracing::info!(%path, offset = start_pos, "upload started");
            let received = receive(upload, input, start_pos).await?;
            tracing::info!(%path, offset = start_pos, received, "upload committed");
            Ok(received)
        }
        .instrument(user.span())
        .await
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &FtpsUser, path: P) -> Result<()> {
        let vfs = user.vfs();
        let path = virtual_path(path.as_ref());
        async move {
            let path = path?;
            vfs.remove(&path).await.map_err(ftp_error)?;
            tracing::info!(%path, "deleted");
            Ok(())
        }
        .instrument(user.span())
        .await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpsUser, path: P) -> Result<()> {
        let vfs = user.vfs();
        let path = virtual_path(path.as_ref());
        async move {
            let path = path?;
            vfs.mkdir(&path).await.map_err(ftp_error)?;
            tracing::info!(%path, "directory created");
            Ok(())
        }
        .instrument(user.span())
        .await
    }

    /// RNFR/RNTO. Like `rename(2)` and other FTP servers, an existing file at the target is
    /// replaced.
    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpsUser,
        from: P,
        to: P,
    ) -> Result<()> {
        let vfs = user.vfs();
        let (from, to) = (virtual_path(from.as_ref()), virtual_path(to.as_ref()));
        async move {
            let (from, to) = (from?, to?);
            vfs.rename(&from, &to, true).await.map_err(ftp_error)?;
            tracing::info!(%from, %to, "renamed");
            Ok(())
        }
        .instrument(user.span())
        .await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpsUser, path: P) -> Result<()> {
        let vfs = user.vfs();
        let path = virtual_path(path.as_ref());
        async move {
            let path = path?;
            vfs.rmdir(&path).await.map_err(ftp_error)?;
            tracing::info!(%path, "directory removed");
            Ok(())
        }
        .instrument(user.span())
        .await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpsUser, path: P) -> Result<()> {
        let vfs = user.vfs();
        let path = virtual_path(path.as_ref());
        async move {
            let path = path?;
            match vfs.stat(&path).await.map_err(ftp_error)?.kind {
                EntryKind::Directory => Ok(()),
                EntryKind::File => Err(ftp_error(VfsError::NotADirectory)),
            }
        }
        .instrument(user.span())
        .await
    }
}

/// Streams the data connection into `upload` from file offset `offset`, then commits it.
/// Returns the bytes received.
async fn receive<R: AsyncRead + Unpin>(
    mut upload: Upload,
    mut input: R,
    mut offset: u64,
) -> Result<u64> {
    let start = offset;
    let mut buffer = BytesMut::with_capacity(WRITE_CHUNK);
    loop {
        let read = input.read_buf(&mut buffer).await;
        let ended = match read {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                // A data connection that ends without a TLS close_notify (client killed,
                // network cut) is an error here: the file may be incomplete.
                tracing::info!(error = %e, received = offset - start, "data connection failed; upload aborted");
                abort(upload).await;
                return Err(Error::new(ErrorKind::ConnectionClosed, e));
            }
        };
        if buffer.len() >= WRITE_CHUNK || (ended && !buffer.is_empty()) {
            let data = buffer.split().freeze();
            let len = data.len() as u64;
            if let Err(e) = upload.write(offset, data).await {
                abort(upload).await;
                return Err(ftp_error(e));
            }
            offset += len;
            buffer.reserve(WRITE_CHUNK);
        }
        if ended {
            break;
        }
    }
    upload.commit().await.map_err(ftp_error)?;
    Ok(offset - start)
}

async fn abort(upload: Upload) {
    let path = upload.path().clone();
    if let Err(e) = upload.abort().await {
        tracing::warn!(%path, error = %e, "aborting the upload failed");
    }
}

type PendingRead =
    Pin<Box<dyn Future<Output = (Download, std::result::Result<Bytes, VfsError>)> + Send>>;

/// A [`Download`] as an [`AsyncRead`] from a start offset, for RETR. libunftp needs the reader
/// to be `Sync`; the state sits in a `Mutex` that is only ever reached through `&mut self`
/// (`get_mut`), so it is never locked.
struct DownloadReader {
    state: Mutex<ReadState>,
}

enum ReadState {
    /// Between reads: `pending` holds bytes not yet handed out, `offset` is the file offset
    /// after them.
    Idle {
        download: Download,
        offset: u64,
        pending: Bytes,
    },
    Reading(PendingRead, u64),
    Done,
}

impl DownloadReader {
    fn new(download: Download, offset: u64) -> Self {
        DownloadReader {
            state: Mutex::new(ReadState::Idle {
                download,
                offset,
                pending: Bytes::new(),
            }),
        }
    }
}

impl AsyncRead for DownloadReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let state = self
            .get_mut()
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            match state {
                ReadState::Idle { pending, .. } if !pending.is_empty() => {
                    let n = pending.len().min(buf.remaining());
                    buf.put_slice(&pending.split_to(n));
                    return Poll::Ready(Ok(()));
                }
                ReadState::Idle { .. } => {
                    let ReadState::Idle {
                        mut download,
                        offset,
                        ..
                    } = std::mem::replace(state, ReadState::Done)
                    else {
                        unreachable!("matched Idle above");
                    };
                    let read: PendingRead = Box::pin(async move {
                        let result = download.read(offset, READ_CHUNK).await;
                        (download, result)
                    });
                    *state = ReadState::Reading(read, offset);
                }
                ReadState::Reading(read, offset) => {
                    let offset = *offset;
                    match read.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready((_, Ok(bytes))) if bytes.is_empty() => {
                            *state = ReadState::Done;
                        }
                        Poll::Ready((download, Ok(bytes))) => {
                            *state = ReadState::Idle {
                                download,
                                offset: offset + bytes.len() as u64,
                                pending: bytes,
                            };
                        }
                        Poll::Ready((download, Err(e))) => {
                            tracing::warn!(path = %download.path(), offset, error = %e, "download failed");
                            *state = ReadState::Done;
                            return Poll::Ready(Err(io::Error::other(e)));
                        }
                    }
                }
                ReadState::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}
