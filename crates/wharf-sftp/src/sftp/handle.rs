//! Open handles. Each open file or directory has a worker task that owns its state and serves
//! the requests naming that handle one after another, in the order they arrived: writes reach
//! the upload in order, reads continue the download stream. Different handles (and path
//! requests) proceed concurrently, so one slow store call never stalls the channel.

use bytes::Bytes;
use russh_sftp::protocol::{Attrs, Data, File, FileAttributes, Name, Packet, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use wharf_core::Permissions;
use wharf_vfs::{Download, Listing, Upload, Vfs, VirtualPath};

use super::reply::{Reply, check_setstat, dir_attrs, entry_attrs, error_status, file_attrs, ok};
use super::{MAX_IO_LEN, READDIR_BATCH, Replies};

/// What an open handle is.
pub(crate) enum HandleState {
    Read(Download),
    // Boxed: an upload's state is several times larger than the other variants.
    Write(Box<Upload>),
    Dir {
        path: VirtualPath,
        /// The listing in progress; `None` until the first READDIR starts it. Pages are
        /// fetched as the client reads, so a huge directory is never held whole.
        listing: Option<Listing>,
    },
}

impl HandleState {
    /// The file's size as the client sees it (written so far, for an upload); `None` for a
    /// directory.
    fn file_size(&self) -> Option<u64> {
        match self {
            HandleState::Read(download) => Some(download.size()),
            HandleState::Write(upload) => Some(upload.len()),
            HandleState::Dir { .. } => None,
        }
    }
}

/// A request on one handle.
pub(crate) enum HandleOp {
    Read { offset: u64, len: u32 },
    Write { offset: u64, data: Vec<u8> },
    Fstat,
    Fsetstat(FileAttributes),
    Readdir,
    Fsync,
    Close,
}

/// A request queued for a handle worker, with the in-flight permit released once it is answered.
pub(crate) struct Queued {
    pub id: u32,
    pub op: HandleOp,
    pub permit: OwnedSemaphorePermit,
}

/// Serves one handle until CLOSE or until the session ends (then an open upload is dropped,
/// which aborts it: nothing half-written becomes visible).
pub(crate) async fn run_handle(
    name: String,
    mut state: HandleState,
    vfs: Vfs,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    replies: Replies,
) {
    let permissions = vfs.permissions();
    while let Some(Queued { id, op, permit }) = queue.recv().await {
        if let HandleOp::Close = op {
            let packet = close(state, id).await;
            replies.send(packet, permit);
            tracing::debug!(handle = %name, "closed");
            return;
        }
        let packet = match serve(&mut state, &vfs, permissions, id, op).await {
            Ok(packet) => packet,
            Err(e) => error_status(id, e),
        };
        replies.send(packet, permit);
    }
    if let HandleState::Write(upload) = state {
        tracing::info!(path = %upload.path(), "upload abandoned without CLOSE: aborted");
    }
}

/// CLOSE: commits an upload (the reply says whether the file is now stored), drops the rest.
async fn close(state: HandleState, id: u32) -> Packet {
    let HandleState::Write(upload) = state else {
        return ok(id);
    };
    let upload = *upload;
    let path = upload.path().to_string();
    match upload.commit().await {
        Ok(summary) => {
            tracing::info!(path = %path, size = summary.size, sha256 = %summary.sha256, "upload committed");
            ok(id)
        }
        Err(e) => {
            tracing::info!(path = %path, error = %e, "upload failed");
            error_status(id, e.into())
        }
    }
}

/// One request other than CLOSE.
async fn serve(
    state: &mut HandleState,
    vfs: &Vfs,
    permissions: Permissions,
    id: u32,
    op: HandleOp,
) -> Result<Packet, Reply> {
    let wrong_kind =
        |what: &str| Reply::Status(StatusCode::Failure, format!("handle is not {what}"));
    let packet: Packet = match (op, state) {
        (HandleOp::Close, _) => ok(id),
        (HandleOp::Read { offset, len }, HandleState::Read(download)) => {
            let data = download.read(offset, len.min(MAX_IO_LEN)).await?;
            if data.is_empty() {
                return Err(Reply::Status(StatusCode::Eof, "end of file".into()));
            }
            Data {
                id,
                data: Bytes::into(data),
            }
            .into()
        }
        (HandleOp::Read { .. }, _) => return Err(wrong_kind("open for reading")),
        (HandleOp::Write { offset, data }, HandleState::Write(upload)) => {
            upload.write(offset, Bytes::from(data)).await?;
            ok(id)
        }
        (HandleOp::Write { .. }, _) => return Err(wrong_kind("open for writing")),
        (HandleOp::Fstat, state) => {
            let attrs = match state.file_size() {
                Some(size) => file_attrs(size, None, permissions),
                None => dir_attrs(None, permissions),
            };
            Attrs { id, attrs }.into()
        }
        (HandleOp::Fsetstat(attrs), state) => {
            check_setstat(&attrs, state.file_size())?;
            ok(id)
        }
        // Uploads become durable when the file is closed (the object is committed then); there
        // is nothing partial to flush before that.
        (HandleOp::Fsync, _) => ok(id),
        (HandleOp::Readdir, HandleState::Dir { path, listing }) => {
            let listing = match listing {
                Some(listing) => listing,
                None => listing.insert(vfs.list_pages(path).await?),
            };
            let files: Vec<File> = listing
                .next_entries(READDIR_BATCH)
                .await?
                .iter()
                .map(|e| File::new(e.name.clone(), entry_attrs(e, permissions)))
                .collect();
            if files.is_empty() {
                return Err(Reply::Status(StatusCode::Eof, "end of directory".into()));
            }
            Name { id, files }.into()
        }
        (HandleOp::Readdir, _) => return Err(wrong_kind("a directory")),
    };
    Ok(packet)
}
