//! What flows over a data connection: downloads, uploads and listings, streamed with bounded
//! memory, and the replies that end them.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use wharf_core::Permissions;
use wharf_vfs::{Download, Entry, Listing, Upload, VfsError};

use crate::listing::{ListFormat, listable};
use crate::passive::DataStream;
use crate::reply::Reply;

/// Bytes read from the data connection before they are handed to the upload at once.
const WRITE_CHUNK: usize = 256 * 1024;
/// Bytes asked of a download at once.
const READ_CHUNK: u32 = 256 * 1024;
/// How long a finished data connection is kept open to read the client's TLS close.
const LINGER: Duration = Duration::from_secs(10);
/// How long the gateway waits to send its own TLS close after an upload.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The reply for a failed file operation: the VFS's message (safe to show to the partner),
/// with the code FTP clients expect for it.
pub(crate) fn vfs_reply(e: &VfsError) -> Reply {
    match e {
        VfsError::NotFound
        | VfsError::AlreadyExists
        | VfsError::PermissionDenied(_)
        | VfsError::NotADirectory
        | VfsError::IsADirectory
        | VfsError::DirectoryNotEmpty
        | VfsError::Unsupported(_) => Reply::new(550, e.to_string()),
        VfsError::InvalidPath(_) => Reply::new(553, e.to_string()),
        VfsError::Busy(_) => Reply::new(451, e.to_string()),
        VfsError::Storage(source) => {
            tracing::warn!(error = %source, "storage error");
            Reply::new(451, "storage error; try again later")
        }
        VfsError::Config(message) => {
            tracing::error!(error = %message, "bucket configuration error");
            Reply::new(451, "the bucket is misconfigured; ask the operator")
        }
    }
}

fn aborted(what: &str) -> Reply {
    Reply::new(426, format!("{what}; transfer aborted"))
}

/// RETR: `download` from `offset` to the end, then a TLS close.
pub(crate) async fn send_download(
    mut data: DataStream,
    mut download: Download,
    offset: u64,
    idle: Duration,
) -> Reply {
    let path = download.path().clone();
    let mut position = offset;
    loop {
        let chunk = match download.read(position, READ_CHUNK).await {
            Ok(chunk) => chunk,
            Err(e) => {
                // The data connection is dropped without a TLS close: the client sees a
                // truncated transfer, not an end.
                tracing::warn!(%path, position, error = %e, "download failed");
                return vfs_reply(&e);
            }
        };
        if chunk.is_empty() {
            break;
        }
        match timeout(idle, data.write_all(&chunk)).await {
            Ok(Ok(())) => position += chunk.len() as u64,
            Ok(Err(e)) => {
                tracing::info!(%path, position, error = %e, "download interrupted by the client");
                return aborted("the data connection was closed");
            }
            Err(_) => {
                tracing::info!(%path, position, "download stalled");
                return aborted("the data connection stalled");
            }
        }
    }
    if let Err(e) = finish_sending(data, idle).await {
        tracing::info!(%path, error = %e, "closing the data connection failed");
        return aborted("the data connection could not be closed cleanly");
    }
    tracing::info!(%path, offset, sent = position - offset, "download finished");
    Reply::new(226, "Transfer complete.")
}

/// STOR, REST + STOR, APPE: the data connection into `upload` (whose client data starts at
/// file offset `offset`) until the client's TLS close, then the commit. A connection cut
/// without a TLS close, a stall or any error aborts the upload: the previous version stays.
pub(crate) async fn receive_upload(
    mut data: DataStream,
    mut upload: Upload,
    offset: u64,
    idle: Duration,
) -> Reply {
    let path = upload.path().clone();
    let mut position = offset;
    let mut buffer = BytesMut::with_capacity(WRITE_CHUNK);
    loop {
        let ended = match timeout(idle, data.read_buf(&mut buffer)).await {
            Ok(Ok(0)) => true,
            Ok(Ok(_)) => false,
            Ok(Err(e)) => {
                // Includes a TCP close without TLS close_notify: the file may be incomplete.
                tracing::info!(%path, error = %e, received = position - offset,
                    "data connection failed; upload aborted");
                abort(upload).await;
                return aborted("the data connection ended without a TLS close");
            }
            Err(_) => {
                tracing::info!(%path, received = position - offset,
                    "data connection stalled; upload aborted");
                abort(upload).await;
                return aborted("the data connection stalled");
            }
        };
        if buffer.len() >= WRITE_CHUNK || (ended && !buffer.is_empty()) {
            let chunk = buffer.split().freeze();
            let len = chunk.len() as u64;
            if let Err(e) = upload.write(position, chunk).await {
                tracing::info!(%path, error = %e, "upload write failed; upload aborted");
                abort(upload).await;
                return vfs_reply(&e);
            }
            position += len;
            buffer.reserve(WRITE_CHUNK);
        }
        if ended {
            break;
        }
    }
    // The client closed cleanly; answer with our own TLS close (Python's ftplib waits for it),
    // then commit.
    let _ = timeout(CLOSE_TIMEOUT, data.shutdown()).await;
    drop(data);
    match upload.commit().await {
        Ok(_) => {
            tracing::info!(%path, offset, received = position - offset, "upload committed");
            Reply::new(226, "Transfer complete.")
        }
        Err(e) => {
            tracing::warn!(%path, error = %e, "upload commit failed");
            vfs_reply(&e)
        }
    }
}

pub(crate) async fn abort(upload: Upload) {
    let path = upload.path().clone();
    if let Err(e) = upload.abort().await {
        tracing::warn!(%path, error = %e, "aborting the upload failed");
    }
}

/// What a listing shows: one entry (LIST of a file) or a directory, page by page.
pub(crate) enum ListSource {
    One(Entry),
    Directory(Listing),
}

/// LIST, NLST, MLSD: the entries written as they come, one store page at a time, then a TLS
/// close. Names with control characters are left out.
pub(crate) async fn send_listing(
    mut data: DataStream,
    source: ListSource,
    format: ListFormat,
    permissions: Permissions,
    idle: Duration,
) -> Reply {
    let now = Utc::now();
    let mut lines = 0usize;
    let render = |entries: &[Entry], lines: &mut usize| {
        let mut text = String::new();
        for entry in entries {
            if listable(&entry.name) {
                text.push_str(&format.line(entry, permissions, now));
                *lines += 1;
            } else {
                tracing::debug!(name = ?entry.name, "not listing a name with control characters");
            }
        }
        text
    };
    match source {
        ListSource::One(entry) => {
            let text = render(std::slice::from_ref(&entry), &mut lines);
            if let Err(reply) = write(&mut data, text.as_bytes(), idle).await {
                return reply;
            }
        }
        ListSource::Directory(mut listing) => loop {
            let page = match listing.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "listing failed");
                    return vfs_reply(&e);
                }
            };
            let text = render(&page, &mut lines);
            if let Err(reply) = write(&mut data, text.as_bytes(), idle).await {
                return reply;
            }
        },
    }
    if let Err(e) = finish_sending(data, idle).await {
        tracing::info!(error = %e, "closing the data connection failed");
        return aborted("the data connection could not be closed cleanly");
    }
    tracing::debug!(entries = lines, "listing sent");
    Reply::new(226, "Transfer complete.")
}

async fn write(data: &mut DataStream, bytes: &[u8], idle: Duration) -> Result<(), Reply> {
    match timeout(idle, data.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "listing interrupted by the client");
            Err(aborted("the data connection was closed"))
        }
        Err(_) => Err(aborted("the data connection stalled")),
    }
}

/// Ends a download or listing: TLS close_notify and TCP FIN, then the client's own close is
/// read (in the background, bounded in time) before the socket goes, so the close is never a
/// reset that could destroy data the client has not read yet.
async fn finish_sending(mut data: DataStream, idle: Duration) -> io::Result<()> {
    timeout(idle, data.shutdown())
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        let _ = timeout(LINGER, async {
            while let Ok(n) = data.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    });
    Ok(())
}
