//! Open handles. Requests naming one handle are served one after another, in the order they
//! arrived: writes reach the upload in order, reads continue the download stream. Different
//! handles (and path requests) proceed concurrently, so one slow store call never stalls the
//! channel.
//!
//! The **reader** here is whoever takes the packets off the channel in order: `SftpSession::feed`
//! in the SSH connection's task, or the backlog task once requests queue beyond the in-flight
//! limit. A handle's state lives in its [`Slot`] while nothing is queued for it. The reader then
//! serves the next request itself, up to its first wait: most requests of a small upload on a
//! local disk (a 4 KiB WRITE into the buffer, the CLOSE that commits it) never wait, and
//! answering them right there saves two hand-offs between tasks per request (on a VM each
//! costs more than the work). A request that has to wait, a READ, or a large WRITE goes to the
//! handle's worker task (started the first time one does), and so does everything after it
//! until the worker has caught up and puts the state back.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use bytes::Bytes;
use futures::future::BoxFuture;
use russh_sftp::protocol::{Attrs, Data, File, FileAttributes, Name, Packet, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::Instrument;
use wharf_core::Permissions;
use wharf_vfs::{Download, Listing, Upload, Vfs, VirtualPath};

use super::extended::{CheckFile, check_file_reply};
use super::reply::{Reply, check_setstat, dir_attrs, error_status, file_attrs, listed_file, ok};
use super::{MAX_IO_LEN, READDIR_BATCH, Replies, Shared};

/// Writes larger than this go to the worker even when the reader could serve them: for a
/// large upload the worker hashes and stores one part while the reader decodes the next.
const INLINE_WRITE_MAX: usize = 64 * 1024;

/// What an open handle is.
pub(crate) enum HandleState {
    Read(Download),
    // Boxed: an upload's state is several times larger than the other variants.
    Write(Box<Upload>),
    /// Opened for reading and writing (`r+b`): reads come from the version seen at open
    /// (`None`: there was no file), writes go to an upload that continues it or rewrites its
    /// start (see [`wharf_vfs::WriteMode::Update`]). Reading back what this handle wrote is
    /// refused: it is not in the store before the commit.
    ReadWrite {
        download: Option<Download>,
        upload: Box<Upload>,
    },
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
            HandleState::ReadWrite { download, upload } => Some(
                download
                    .as_ref()
                    .map_or(0, Download::size)
                    .max(upload.len()),
            ),
            HandleState::Dir { .. } => None,
        }
    }
}

/// A request on one handle.
pub(crate) enum HandleOp {
    Read {
        offset: u64,
        len: u32,
    },
    Write {
        offset: u64,
        data: Bytes,
    },
    Fstat,
    Fsetstat(FileAttributes),
    Readdir,
    Fsync,
    /// `check-file-handle`: the hash of the file the handle reads.
    CheckFile(CheckFile),
    Close,
}

impl HandleOp {
    /// Whether the reader may serve this request itself (up to its first wait).
    fn inline(&self) -> bool {
        match self {
            HandleOp::Read { .. } | HandleOp::CheckFile(_) => false,
            HandleOp::Write { data, .. } => data.len() <= INLINE_WRITE_MAX,
            _ => true,
        }
    }
}

/// A request for a handle, with the in-flight permit released once it is answered.
pub(crate) struct Queued {
    pub id: u32,
    pub op: HandleOp,
    pub permit: OwnedSemaphorePermit,
}

/// Where a handle's state is between requests.
pub(crate) struct Slot {
    /// The state, while no request for the handle is queued or in progress elsewhere.
    state: Option<HandleState>,
    /// Work sent to the worker and not finished yet. The worker puts the state back here when
    /// this reaches 0.
    queued: usize,
}

/// An open handle, as the reader finds it by name.
#[derive(Clone)]
pub(crate) struct HandleEntry {
    slot: Arc<Mutex<Slot>>,
    /// The worker's queue, once there is a worker.
    worker: Option<mpsc::UnboundedSender<Work>>,
}

impl HandleEntry {
    /// A handle whose state waits in its slot, with no worker yet.
    pub(crate) fn new(state: HandleState) -> Self {
        HandleEntry {
            slot: Arc::new(Mutex::new(Slot {
                state: Some(state),
                queued: 0,
            })),
            worker: None,
        }
    }

    /// Drops the handle at the end of the session. An upload still open is aborted, never
    /// committed (dropping it does that).
    pub(crate) fn abandon(self) {
        if let Some(HandleState::Write(upload) | HandleState::ReadWrite { upload, .. }) =
            lock(&self.slot).state.take()
        {
            tracing::info!(path = %upload.path(), "upload abandoned without CLOSE: aborted");
        }
    }
}

/// What the worker does next, in order.
pub(crate) enum Work {
    /// A request to serve with the state the worker holds.
    Queued(Queued),
    /// A request the reader started with the state from the slot; it yields the state back
    /// (`None` after a CLOSE).
    Started(BoxFuture<'static, Option<HandleState>>),
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // Nothing panics while holding it; a poisoned slot is still consistent.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `future` once, with the calling task's waker.
pub(crate) async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// Serves a request naming `handle`: here if the state is in its slot and the request is
/// quick (see the module docs), else on the handle's worker.
pub(crate) async fn dispatch(shared: &Arc<Shared>, handle: String, queued: Queued) {
    let close = matches!(queued.op, HandleOp::Close);
    let found = shared.handles.lock().ok().and_then(|mut handles| {
        let handles = handles.as_mut()?;
        if close {
            let removed = handles.remove(&handle);
            if removed.is_some() {
                shared.open_files.close();
            }
            removed
        } else {
            handles.get(&handle).cloned()
        }
    });
    let Some(entry) = found else {
        let reply = error_status(queued.id, Reply::BadHandle);
        shared.replies.send(reply, queued.permit);
        return;
    };
    let parked = {
        let mut slot = lock(&entry.slot);
        let parked = slot.state.take();
        if parked.is_none() {
            slot.queued += 1;
        }
        parked
    };
    let work = match parked {
        // The state is with the worker, or on its way there: queue behind it.
        None => Work::Queued(queued),
        Some(state) => {
            let inline = queued.op.inline();
            let (vfs, replies) = (shared.vfs.clone(), shared.replies.clone());
            let mut started = Box::pin(
                async move { serve(state, &vfs, queued, &replies).await }.in_current_span(),
            );
            if inline && let Poll::Ready(state) = poll_once(&mut started).await {
                lock(&entry.slot).state = state;
                return;
            }
            lock(&entry.slot).queued += 1;
            Work::Started(started)
        }
    };
    let worker = match entry.worker {
        Some(worker) => worker,
        None => start_worker(shared, &handle, &entry.slot, close),
    };
    // Fails only once the worker has ended, i.e. the session is over: the work is dropped
    // (an upload in it is aborted).
    let _ = worker.send(work);
}

/// Starts the worker of `handle` and records its queue (unless the handle is being closed).
fn start_worker(
    shared: &Arc<Shared>,
    handle: &str,
    slot: &Arc<Mutex<Slot>>,
    closing: bool,
) -> mpsc::UnboundedSender<Work> {
    let (tx, rx) = mpsc::unbounded_channel();
    if !closing
        && let Ok(mut handles) = shared.handles.lock()
        && let Some(entry) = handles.as_mut().and_then(|handles| handles.get_mut(handle))
    {
        entry.worker = Some(tx.clone());
    }
    shared.tasks.spawn(
        run_handle(
            handle.to_owned(),
            Arc::clone(slot),
            shared.vfs.clone(),
            rx,
            shared.replies.clone(),
        )
        .in_current_span(),
    );
    tx
}

/// Serves one handle's queued work until CLOSE or until the session ends (then an open upload
/// is dropped, which aborts it: nothing half-written becomes visible).
async fn run_handle(
    name: String,
    slot: Arc<Mutex<Slot>>,
    vfs: Vfs,
    mut queue: mpsc::UnboundedReceiver<Work>,
    replies: Replies,
) {
    let mut state = None;
    while let Some(work) = queue.recv().await {
        state = match work {
            Work::Started(started) => started.await,
            Work::Queued(queued) => match state.take() {
                Some(current) => serve(current, &vfs, queued, &replies).await,
                // Closed already: nothing is queued behind a CLOSE.
                None => {
                    let reply = error_status(queued.id, Reply::BadHandle);
                    replies.send(reply, queued.permit);
                    None
                }
            },
        };
        let mut slot = lock(&slot);
        slot.queued -= 1;
        if slot.queued == 0 {
            // Caught up: the reader may serve the next request itself.
            slot.state = state.take();
        }
    }
    let left = state.or_else(|| lock(&slot).state.take());
    if let Some(HandleState::Write(upload) | HandleState::ReadWrite { upload, .. }) = left {
        tracing::info!(handle = %name, path = %upload.path(), "upload abandoned without CLOSE: aborted");
    }
}

/// Serves one request and sends its reply; returns the state for the next one (`None` once
/// closed).
async fn serve(
    mut state: HandleState,
    vfs: &Vfs,
    queued: Queued,
    replies: &Replies,
) -> Option<HandleState> {
    let Queued { id, op, permit } = queued;
    if let HandleOp::Close = op {
        replies.send(close(state, id).await, permit);
        return None;
    }
    let packet = match serve_op(&mut state, vfs, vfs.permissions(), id, op).await {
        Ok(packet) => packet,
        Err(e) => error_status(id, e),
    };
    replies.send(packet, permit);
    Some(state)
}

/// CLOSE: commits an upload (the reply says whether the file is now stored), drops the rest.
/// A file opened for reading and writing that was only read stays as it is.
async fn close(state: HandleState, id: u32) -> Packet {
    let upload = match state {
        HandleState::Write(upload) => *upload,
        HandleState::ReadWrite { upload, .. } if upload.has_written() => *upload,
        HandleState::ReadWrite { upload, .. } => {
            if let Err(e) = upload.abort().await {
                tracing::debug!(error = %e, "dropping an unwritten update");
            }
            return ok(id);
        }
        HandleState::Read(_) | HandleState::Dir { .. } => return ok(id),
    };
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
async fn serve_op(
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
            data_reply(id, download.read(offset, len.min(MAX_IO_LEN)).await?)?
        }
        (HandleOp::Read { offset, len }, HandleState::ReadWrite { download, upload }) => {
            // What the read returns: the version seen at open, up to its end (a read at or
            // past the end touches its offset, so data written there is not hidden by EOF).
            let size = download.as_ref().map_or(0, Download::size);
            let end = match offset
                .saturating_add(u64::from(len.min(MAX_IO_LEN)))
                .min(size)
            {
                end if end > offset => end,
                _ => offset.saturating_add(1),
            };
            if upload
                .written_range()
                .is_some_and(|written| written.start < end && offset < written.end)
            {
                return Err(Reply::Status(
                    StatusCode::OpUnsupported,
                    "reading back data written through this handle is not supported; close \
                     the file and open it again"
                        .into(),
                ));
            }
            let data = match download {
                Some(download) => download.read(offset, len.min(MAX_IO_LEN)).await?,
                None => Bytes::new(),
            };
            data_reply(id, data)?
        }
        (HandleOp::Read { .. }, _) => return Err(wrong_kind("open for reading")),
        (
            HandleOp::Write { offset, data },
            HandleState::Write(upload) | HandleState::ReadWrite { upload, .. },
        ) => {
            upload.write(offset, data).await?;
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
                .map(|e| listed_file(e, permissions, vfs.identity().username.as_str()))
                .collect();
            if files.is_empty() {
                return Err(Reply::Status(StatusCode::Eof, "end of directory".into()));
            }
            Name { id, files }.into()
        }
        (HandleOp::Readdir, _) => return Err(wrong_kind("a directory")),
        (HandleOp::CheckFile(request), HandleState::Read(download)) => {
            check_file(vfs, download.path(), &request, id).await?
        }
        (HandleOp::CheckFile(request), HandleState::ReadWrite { upload, .. })
            if !upload.has_written() =>
        {
            check_file(vfs, upload.path(), &request, id).await?
        }
        (HandleOp::CheckFile(_), _) => {
            return Err(Reply::Status(
                StatusCode::Failure,
                "the handle is being written: close it, then check the file".into(),
            ));
        }
    };
    Ok(packet)
}

/// A READ's reply: the data, or EOF when there is none.
fn data_reply(id: u32, data: Bytes) -> Result<Packet, Reply> {
    if data.is_empty() {
        return Err(Reply::Status(StatusCode::Eof, "end of file".into()));
    }
    Ok(Data {
        id,
        data: Bytes::into(data),
    }
    .into())
}

/// `check-file-handle`: the hash of the stored file the handle is on.
async fn check_file(
    vfs: &Vfs,
    path: &VirtualPath,
    request: &CheckFile,
    id: u32,
) -> Result<Packet, Reply> {
    let sum = vfs
        .checksum(
            path,
            request.algorithm,
            request.start,
            request.length,
            u64::from(request.block_size),
        )
        .await?;
    Ok(check_file_reply(id, &sum))
}
