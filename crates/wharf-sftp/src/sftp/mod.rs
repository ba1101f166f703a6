//! The SFTP version 3 protocol (draft-ietf-secsh-filexfer-02 plus OpenSSH's extensions) on top
//! of one user's [`Vfs`], with pipelining.
//!
//! russh-sftp supplies the packet types and their encoding; the loop and the dispatch are ours.
//! Its stock server loop is strictly serial (read, handle, write, flush), so one slow store call
//! stalls every request queued behind it. Here:
//!
//! - the SSH connection task pushes what arrives on the channel into [`SftpSession::feed`]
//!   (russh's `Handler::data`), which frames the packets and serves each **up to its first
//!   wait**, then sends the replies it has through russh's `Session` before it returns. A
//!   quick request (a stat, a small write into the upload buffer, the close that commits a
//!   small file on a local disk) is thus read, served and answered by one task, with no
//!   hand-off between tasks or threads: on a VM each hand-off costs more than the work;
//! - requests naming a **handle** are served in arrival order ([`handle`]: writes reach the
//!   upload in order, reads continue one download stream), in `feed` while they are quick and
//!   nothing is queued for the handle, else by the handle's worker task;
//! - **path** requests (stat, open, mkdir, rename, …) that have to wait go on as their own
//!   tasks;
//! - a **writer** task sends the replies that complete later (the protocol allows any order),
//!   small ones joined, and only whole replies in each message to the connection (so nothing
//!   sent directly can land inside one);
//! - at most [`MAX_IN_FLIGHT`] requests are in progress. Beyond that, packets go to a
//!   **backlog** task that serves them in order as permits free up, and everything after them
//!   follows them there; when the backlog is full too, `feed` waits, which stops the
//!   connection reading and pushes back on the client through TCP.

mod handle;
mod reply;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use russh_sftp::extensions::{self, LimitsExtension, Statvfs};
use russh_sftp::protocol::{File, Handle, Name, OpenFlags, Packet, StatusCode, Version};
use serde::Deserialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wharf_vfs::{CreateOptions, EntryKind, Vfs, VfsError, VirtualPath, WriteMode};

use handle::{HandleEntry, HandleOp, HandleState, Queued};
use reply::{Reply, entry_attrs, error_status, extended_reply, ok, status};

/// Largest packet a client may send: a 256 KiB write plus headers (OpenSSH's own limit).
pub const MAX_PACKET_LEN: u32 = 256 * 1024 + 1024;
/// Largest read or write we advertise in `limits@openssh.com`.
const MAX_IO_LEN: u32 = 255 * 1024;
/// Open files and directories per session.
pub const MAX_OPEN_HANDLES: usize = 256;
/// Requests in progress per session (OpenSSH keeps 64 in flight; rclone and WinSCP more).
pub const MAX_IN_FLIGHT: usize = 128;
/// Directory entries per SSH_FXP_NAME reply.
const READDIR_BATCH: usize = 128;

/// Why a session ended other than by the client closing it.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client sent a packet of {0} bytes; the limit is {MAX_PACKET_LEN}")]
    PacketTooLarge(u32),
    #[error("the client has not read its replies for {0:?}; giving up on the channel")]
    Stalled(Duration),
}

/// How long [`SftpSession::feed`] waits for room in the backlog before it gives up on a
/// client that sends requests but does not read the replies.
const STALL_LIMIT: Duration = Duration::from_secs(120);
/// Packets waiting for an in-flight permit before [`SftpSession::feed`] waits for room.
const BACKLOG: usize = 64;
/// Most reply bytes [`SftpSession::feed`] sends directly until the connection has written them
/// out (it writes to the socket only after `feed` returns, and beyond the client's window only
/// once the window opens). This bounds what a burst of requests, or a client that does not
/// read, can make the connection hold; the rest waits in the writer's queue, under the
/// in-flight limit.
const DIRECT_BUDGET: usize = 32 * 1024 * 1024;

/// Where a channel's replies go when they cannot be sent right away (see [`DirectOut`]).
pub trait ReplySink: Send + Sync + 'static {
    /// Sends one or more whole reply packets; waits while the client is behind. `Err` once the
    /// channel is gone.
    fn send(&self, packet: Bytes) -> BoxFuture<'_, Result<(), ()>>;
    /// Ends the channel once every reply is sent: exit status `code`, EOF, close.
    fn finish(&self, code: u32) -> BoxFuture<'_, ()>;
}

/// The caller's way to send replies at once, from inside [`SftpSession::feed`].
pub trait DirectOut {
    /// Whether a reply sent now goes straight out (not queued behind the client's window).
    fn ready(&self) -> bool;
    /// Sends one or more whole reply packets.
    fn send(&mut self, packet: Bytes);
}

/// One SFTP subsystem on one SSH channel. The SSH connection pushes what the client sends into
/// [`feed`](Self::feed), which serves quick requests right there and answers them through its
/// [`DirectOut`]; everything else is answered through the [`ReplySink`].
///
/// Dropping it ends the input (the client sent EOF or closed the channel): the requests in
/// progress are answered, then the channel is ended. Uploads still open are aborted, never
/// committed.
pub struct SftpSession {
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    /// Received bytes not yet framed into a packet.
    input: BytesMut,
    /// Packets for the backlog task; `None` once the input has ended.
    backlog: Option<mpsc::Sender<Bytes>>,
    /// What `feed` may still send directly before the connection has written it out (see
    /// [`DIRECT_BUDGET`]).
    direct_budget: usize,
    span: tracing::Span,
}

/// Replies on their way to the client, each holding its in-flight permit until it is taken to
/// be sent.
#[derive(Clone)]
pub(crate) struct Replies(Arc<ReplyQueue>);

struct ReplyQueue {
    outgoing: Mutex<Outgoing>,
    /// Wakes the writer task.
    ready: Notify,
    /// Wakes [`SftpSession::feed`] while it waits for room in the backlog.
    answered: Notify,
}

#[derive(Default)]
struct Outgoing {
    packets: VecDeque<(Bytes, OwnedSemaphorePermit)>,
    /// [`SftpSession::feed`] is running and sends what is queued when it ends: the writer is
    /// not woken meanwhile.
    direct: bool,
    /// No more replies will come: the writer ends once the queue is empty.
    closed: bool,
}

impl Replies {
    fn new() -> Self {
        Replies(Arc::new(ReplyQueue {
            outgoing: Mutex::new(Outgoing::default()),
            ready: Notify::new(),
            answered: Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Outgoing> {
        // Every change under the lock is one step: a poisoned queue is still consistent.
        self.0
            .outgoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn send(&self, packet: Packet, permit: OwnedSemaphorePermit) {
        let id = packet.get_request_id();
        let bytes = Bytes::try_from(packet).or_else(|e| {
            tracing::error!(error = %e, "cannot encode a reply");
            Bytes::try_from(status(id, StatusCode::Failure, "internal error"))
        });
        let Ok(bytes) = bytes else {
            return;
        };
        let wake = {
            let mut outgoing = self.lock();
            outgoing.packets.push_back((bytes, permit));
            !outgoing.direct
        };
        if wake {
            self.0.ready.notify_one();
        } else {
            self.0.answered.notify_one();
        }
    }

    fn begin_direct(&self) {
        self.lock().direct = true;
    }

    /// Sends what is queued through `direct` while it is ready (with `force`, even when it is
    /// not: the connection then holds the replies until the client's window opens), `budget`
    /// bytes at most.
    fn flush_direct(&self, direct: &mut dyn DirectOut, budget: &mut usize, force: bool) {
        let mut outgoing = self.lock();
        while *budget > 0 && (force || direct.ready()) {
            let Some(batch) = outgoing.take_batch() else {
                break;
            };
            *budget = budget.saturating_sub(batch.len());
            direct.send(batch);
        }
    }

    /// Leaves direct mode, waking the writer for whatever is left.
    fn end_direct(&self) {
        let left = {
            let mut outgoing = self.lock();
            outgoing.direct = false;
            !outgoing.packets.is_empty()
        };
        if left {
            self.0.ready.notify_one();
        }
    }

    /// Resolves once a reply has been queued in direct mode (possibly one queued before).
    async fn answered(&self) {
        self.0.answered.notified().await
    }

    fn close(&self) {
        self.lock().closed = true;
        self.0.ready.notify_one();
    }

    /// The next replies for the writer; `None` once closed and empty.
    async fn next(&self) -> Option<Bytes> {
        loop {
            {
                let mut outgoing = self.lock();
                if let Some(batch) = outgoing.take_batch() {
                    return Some(batch);
                }
                if outgoing.closed {
                    return None;
                }
            }
            // A notification given meanwhile is kept for this wait: nothing is lost.
            self.0.ready.notified().await;
        }
    }
}

/// Small replies queued together are sent as one channel message up to this size: fewer SSH
/// packets, and a client's per-message queue fills more slowly.
const BATCH_BYTES: usize = 64 * 1024;

impl Outgoing {
    /// The next reply, or several small ones joined, up to [`BATCH_BYTES`]. Their permits are
    /// released: the caller sends them at once.
    fn take_batch(&mut self) -> Option<Bytes> {
        let (first, _permit) = self.packets.pop_front()?;
        let joins = |next: Option<&(Bytes, OwnedSemaphorePermit)>, len: usize| {
            next.is_some_and(|(packet, _)| len + packet.len() <= BATCH_BYTES)
        };
        if !joins(self.packets.front(), first.len()) {
            return Some(first);
        }
        let mut batch = BytesMut::from(first);
        while joins(self.packets.front(), batch.len()) {
            if let Some((packet, _permit)) = self.packets.pop_front() {
                batch.extend_from_slice(&packet);
            }
        }
        Some(batch.freeze())
    }
}

/// What the session, the backlog task and every request task share.
struct Shared {
    vfs: Vfs,
    /// Open handles; `None` once the session is over (late OPENs then abort).
    handles: Mutex<Option<HashMap<String, HandleEntry>>>,
    next_handle: std::sync::atomic::AtomicU64,
    replies: Replies,
    tasks: TaskTracker,
    /// Whether SSH_FXP_INIT has been answered.
    initialized: AtomicBool,
    /// Packets handed to the backlog task and not yet dispatched. While any are, later packets
    /// queue behind them, so requests on one handle keep their order.
    backlogged: AtomicUsize,
    /// The channel's exit status.
    exit_code: AtomicU32,
}

/// `SSH_FXP_EXTENDED` `posix-rename@openssh.com` payload.
#[derive(Deserialize)]
struct PathPair {
    old: String,
    new: String,
}

/// `SSH_FXP_EXTENDED` payloads that carry one string (a path or a handle).
#[derive(Deserialize)]
struct OneString {
    value: String,
}

impl SftpSession {
    /// Starts serving `vfs` on a channel whose replies go to `sink`; must be called within a
    /// tokio runtime (it starts the writer and the backlog task).
    pub fn start(vfs: Vfs, sink: Arc<dyn ReplySink>, span: tracing::Span) -> Self {
        let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let shared = Arc::new(Shared {
            vfs,
            handles: Mutex::new(Some(HashMap::new())),
            next_handle: Default::default(),
            replies: Replies::new(),
            tasks: TaskTracker::new(),
            initialized: AtomicBool::new(false),
            backlogged: AtomicUsize::new(0),
            exit_code: AtomicU32::new(0),
        });
        let (tx, rx) = mpsc::channel(BACKLOG);
        let writer = tokio::spawn(
            write_replies(shared.replies.clone(), sink.clone()).instrument(span.clone()),
        );
        tokio::spawn(
            run_backlog(shared.clone(), limit.clone(), rx, writer, sink).instrument(span.clone()),
        );
        SftpSession {
            shared,
            limit,
            input: BytesMut::new(),
            backlog: Some(tx),
            direct_budget: DIRECT_BUDGET,
            span,
        }
    }

    /// Takes what the client sent on the channel. Complete requests are served here up to
    /// their first wait, and their replies sent through `direct` before this returns; the
    /// rest is answered later through the sink. Waits only when the client is far ahead
    /// (more than `MAX_IN_FLIGHT` requests in progress and `BACKLOG` more received).
    pub async fn feed(&mut self, data: &[u8], direct: &mut (dyn DirectOut + Send)) {
        let span = self.span.clone();
        self.feed_inner(data, direct).instrument(span).await
    }

    async fn feed_inner(&mut self, data: &[u8], direct: &mut (dyn DirectOut + Send)) {
        if self.backlog.is_none() {
            return;
        }
        self.input.extend_from_slice(data);
        self.shared.replies.begin_direct();
        // What was sent directly has left once nothing waits for the client's window.
        if direct.ready() {
            self.direct_budget = DIRECT_BUDGET;
        }
        let mut budget = self.direct_budget;
        while let Some(raw) = self.next_packet() {
            if self.shared.backlogged.load(Ordering::Acquire) == 0 {
                // Sending what is answered already frees permits.
                let permit = self.limit.clone().try_acquire_owned().or_else(|_| {
                    self.shared.replies.flush_direct(direct, &mut budget, false);
                    self.limit.clone().try_acquire_owned()
                });
                if let Ok(permit) = permit {
                    handle_packet(&self.shared, raw, permit).await;
                    continue;
                }
            }
            let Some(backlog) = &self.backlog else {
                break;
            };
            self.shared.backlogged.fetch_add(1, Ordering::AcqRel);
            let queued = match backlog.try_send(raw) {
                Ok(()) => Some(true),
                Err(mpsc::error::TrySendError::Closed(_)) => None,
                Err(mpsc::error::TrySendError::Full(raw)) => {
                    wait_for_room(&self.shared, backlog, raw, direct, &mut budget).await
                }
            };
            match queued {
                Some(true) => {}
                Some(false) => {
                    tracing::warn!(error = %SessionError::Stalled(STALL_LIMIT), "ending the SFTP session");
                    self.fail();
                }
                None => break,
            }
        }
        self.shared.replies.flush_direct(direct, &mut budget, false);
        self.shared.replies.end_direct();
        self.direct_budget = budget;
    }

    /// The next complete packet of the input (type byte first). A length over the limit ends
    /// the session: the stream cannot be resynchronised after it.
    fn next_packet(&mut self) -> Option<Bytes> {
        // Nothing more once the session has ended.
        self.backlog.as_ref()?;
        let header = self.input.get(..4)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if len == 0 || len > MAX_PACKET_LEN {
            tracing::info!(error = %SessionError::PacketTooLarge(len), "ending the SFTP session");
            self.fail();
            return None;
        }
        if self.input.len() < 4 + len as usize {
            // Room for the rest of this packet, so it is not grown piecemeal.
            self.input.reserve(4 + len as usize - self.input.len());
            return None;
        }
        self.input.advance(4);
        Some(self.input.split_to(len as usize).freeze())
    }

    /// Ends the session with exit status 1 and ignores further input.
    fn fail(&mut self) {
        self.shared.exit_code.store(1, Ordering::Release);
        self.backlog = None;
        self.input = BytesMut::new();
    }
}

/// Queues `raw` in the full backlog once there is room: `Some(true)`, or `Some(false)` when
/// there was none for [`STALL_LIMIT`], `None` when the backlog is gone.
///
/// The connection neither reads nor writes while this waits (so the client's window cannot
/// open either), and replies that complete meanwhile are sent from here even beyond the
/// window, within `budget`: they free the permits the backlog task waits for. A client that
/// sends more than that without reading loses the channel after [`STALL_LIMIT`].
async fn wait_for_room(
    shared: &Shared,
    backlog: &mpsc::Sender<Bytes>,
    raw: Bytes,
    direct: &mut (dyn DirectOut + Send),
    budget: &mut usize,
) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + STALL_LIMIT;
    loop {
        shared.replies.flush_direct(direct, budget, true);
        tokio::select! {
            room = backlog.reserve() => {
                let room = room.ok()?;
                room.send(raw);
                return Some(true);
            }
            () = shared.replies.answered() => {}
            () = tokio::time::sleep_until(deadline) => return Some(false),
        }
    }
}

/// Serves the packets [`SftpSession::feed`] could not serve at once, in order, as permits
/// free up. Once the input has ended: closes the open handles, waits for the requests in
/// progress and the writer, and ends the channel.
async fn run_backlog(
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    mut backlog: mpsc::Receiver<Bytes>,
    writer: tokio::task::JoinHandle<()>,
    sink: Arc<dyn ReplySink>,
) {
    while let Some(raw) = backlog.recv().await {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        handle_packet(&shared, raw, permit).await;
        shared.backlogged.fetch_sub(1, Ordering::AcqRel);
    }
    // No more requests: close the handles so their workers finish what is queued and end
    // (dropping an uncommitted upload aborts it).
    let open = shared
        .handles
        .lock()
        .ok()
        .and_then(|mut handles| handles.take());
    for entry in open.into_iter().flat_map(HashMap::into_values) {
        entry.abandon();
    }
    shared.tasks.close();
    shared.tasks.wait().await;
    shared.replies.close();
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "the SFTP reply writer failed");
    }
    let code = shared.exit_code.load(Ordering::Acquire);
    sink.finish(code).await;
    tracing::debug!(code, "sftp subsystem ended");
}

/// Serves one packet up to its first wait (see [`dispatch`]).
async fn handle_packet(shared: &Arc<Shared>, raw: Bytes, permit: OwnedSemaphorePermit) {
    // The request id sits right after the type byte in every request.
    let id = raw
        .get(1..5)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let initialized = shared.initialized.load(Ordering::Acquire);
    if initialized && let Some((handle, offset, data)) = parse_write(&raw) {
        let op = HandleOp::Write { offset, data };
        handle::dispatch(shared, handle, Queued { id, op, permit }).await;
        return;
    }
    let mut body = raw;
    let packet = match Packet::try_from(&mut body) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "malformed SFTP packet");
            let reply = status(id, StatusCode::BadMessage, "malformed packet");
            shared.replies.send(reply, permit);
            return;
        }
    };
    if !initialized {
        let reply = match packet {
            Packet::Init(init) => {
                shared.initialized.store(true, Ordering::Release);
                tracing::debug!(version = init.version, "sftp init");
                version().into()
            }
            _ => status(id, StatusCode::BadMessage, "expected SSH_FXP_INIT first"),
        };
        shared.replies.send(reply, permit);
        return;
    }
    dispatch(shared, packet, permit).await;
}

/// SSH_FXP_WRITE's type byte.
const SSH_FXP_WRITE: u8 = 6;

/// An SSH_FXP_WRITE packet's handle, offset and data, the data as a slice of `raw` (russh-sftp
/// would copy it, and it is every byte of every upload). `None` for anything else, including
/// a malformed WRITE, which the generic decoder then answers.
fn parse_write(raw: &Bytes) -> Option<(String, u64, Bytes)> {
    fn string(raw: &Bytes, at: usize) -> Option<(std::ops::Range<usize>, usize)> {
        let len = raw.get(at..at + 4)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let start = at + 4;
        let end = start.checked_add(len).filter(|&end| end <= raw.len())?;
        Some((start..end, end))
    }
    if raw.first() != Some(&SSH_FXP_WRITE) {
        return None;
    }
    // Type byte, request id, then the handle.
    let (handle, at) = string(raw, 5)?;
    let handle = std::str::from_utf8(&raw[handle]).ok()?.to_owned();
    let offset = raw.get(at..at + 8)?;
    let offset = u64::from_be_bytes(offset.try_into().ok()?);
    let (data, end) = string(raw, at + 8)?;
    (end == raw.len()).then(|| (handle, offset, raw.slice(data)))
}

/// Sends the replies the session did not send directly, as they come.
async fn write_replies(replies: Replies, sink: Arc<dyn ReplySink>) {
    let mut open = true;
    while let Some(batch) = replies.next().await {
        // Once the channel is gone, the rest is dropped.
        if open && sink.send(batch).await.is_err() {
            open = false;
        }
    }
}

fn version() -> Version {
    let mut version = Version::new();
    for (name, ver) in [
        ("posix-rename@openssh.com", "1"),
        (extensions::STATVFS, "2"),
        (extensions::FSYNC, "1"),
        (extensions::LIMITS, "1"),
    ] {
        version.extensions.insert(name.to_owned(), ver.to_owned());
    }
    version
}

/// Serves one request: a request naming a handle in that handle's order ([`handle::dispatch`]),
/// any other here up to its first wait, and from there on in a task of its own (most path
/// requests on a local disk never wait, and a task would only add two hand-offs).
async fn dispatch(shared: &Arc<Shared>, packet: Packet, permit: OwnedSemaphorePermit) {
    let id = packet.get_request_id();
    let on_handle = match packet {
        Packet::Read(p) => Some((
            p.handle,
            HandleOp::Read {
                offset: p.offset,
                len: p.len,
            },
        )),
        Packet::Write(p) => Some((
            p.handle,
            HandleOp::Write {
                offset: p.offset,
                data: Bytes::from(p.data),
            },
        )),
        Packet::Fstat(p) => Some((p.handle, HandleOp::Fstat)),
        Packet::FSetStat(p) => Some((p.handle, HandleOp::Fsetstat(p.attrs))),
        Packet::ReadDir(p) => Some((p.handle, HandleOp::Readdir)),
        Packet::Close(p) => Some((p.handle, HandleOp::Close)),
        Packet::Extended(p) if p.request == extensions::FSYNC => {
            let mut data = Bytes::from(p.data);
            match russh_sftp::de::from_bytes::<OneString>(&mut data) {
                Ok(h) => Some((h.value, HandleOp::Fsync)),
                Err(_) => {
                    let reply = status(id, StatusCode::BadMessage, "malformed fsync request");
                    shared.replies.send(reply, permit);
                    return;
                }
            }
        }
        other => {
            let task = shared.clone();
            let mut request = Box::pin(
                async move {
                    let reply = match task.path_request(other).await {
                        Ok(packet) => packet,
                        Err(e) => error_status(id, e),
                    };
                    task.replies.send(reply, permit);
                }
                .in_current_span(),
            );
            if handle::poll_once(&mut request).await.is_pending() {
                shared.tasks.spawn(request);
            }
            return;
        }
    };
    let Some((handle, op)) = on_handle else {
        return;
    };
    handle::dispatch(shared, handle, Queued { id, op, permit }).await;
}

impl Shared {
    async fn path_request(&self, packet: Packet) -> Result<Packet, Reply> {
        let vfs = &self.vfs;
        match packet {
            Packet::Init(p) => Err(Reply::Status(
                StatusCode::BadMessage,
                format!("duplicate SSH_FXP_INIT (version {})", p.version),
            )),
            Packet::RealPath(p) => {
                let path = VirtualPath::parse(&p.path)?;
                Ok(Name {
                    id: p.id,
                    files: vec![File::dummy(path.to_string())],
                }
                .into())
            }
            Packet::Stat(p) => self.stat(p.id, &p.path).await,
            // There are no symbolic links: lstat is stat.
            Packet::Lstat(p) => self.stat(p.id, &p.path).await,
            Packet::SetStat(p) => {
                let path = VirtualPath::parse(&p.path)?;
                let entry = vfs.stat(&path).await?;
                reply::check_setstat(&p.attrs, Some(entry.size))?;
                Ok(ok(p.id))
            }
            Packet::Open(p) => self.open(p.id, &p.filename, p.pflags).await,
            Packet::OpenDir(p) => {
                let path = VirtualPath::parse(&p.path)?;
                let entry = vfs.stat(&path).await?;
                if entry.kind != EntryKind::Directory {
                    return Err(VfsError::NotADirectory.into());
                }
                let handle = self.register(HandleState::Dir {
                    path,
                    listing: None,
                })?;
                Ok(Handle { id: p.id, handle }.into())
            }
            Packet::Remove(p) => {
                vfs.remove(&VirtualPath::parse(&p.filename)?).await?;
                Ok(ok(p.id))
            }
            Packet::MkDir(p) => {
                vfs.mkdir(&VirtualPath::parse(&p.path)?).await?;
                Ok(ok(p.id))
            }
            Packet::RmDir(p) => {
                vfs.rmdir(&VirtualPath::parse(&p.path)?).await?;
                Ok(ok(p.id))
            }
            Packet::Rename(p) => {
                // SFTPv3 rename must not overwrite; posix-rename@openssh.com does.
                self.rename(&p.oldpath, &p.newpath, false).await?;
                Ok(ok(p.id))
            }
            Packet::ReadLink(_) | Packet::Symlink(_) => Err(Reply::Status(
                StatusCode::OpUnsupported,
                "symbolic links are not supported".into(),
            )),
            Packet::Extended(p) => self.extended(p.id, &p.request, p.data).await,
            _ => Err(Reply::Status(
                StatusCode::BadMessage,
                "not a request packet".into(),
            )),
        }
    }

    async fn stat(&self, id: u32, path: &str) -> Result<Packet, Reply> {
        let path = VirtualPath::parse(path)?;
        let entry = self.vfs.stat(&path).await?;
        Ok(russh_sftp::protocol::Attrs {
            id,
            attrs: entry_attrs(&entry, self.vfs.permissions()),
        }
        .into())
    }

    async fn open(&self, id: u32, filename: &str, flags: OpenFlags) -> Result<Packet, Reply> {
        let path = VirtualPath::parse(filename)?;
        let read = flags.contains(OpenFlags::READ);
        let write = flags.contains(OpenFlags::WRITE) || flags.contains(OpenFlags::APPEND);
        let state = match (read, write) {
            (true, true) => {
                return Err(Reply::Status(
                    StatusCode::OpUnsupported,
                    "opening a file for reading and writing at once is not supported on \
                     object storage; open it for one or the other"
                        .into(),
                ));
            }
            (_, false) => HandleState::Read(self.vfs.open_read(&path).await?),
            (false, true) => {
                if !flags.contains(OpenFlags::CREATE) {
                    // Without CREATE the file must exist already.
                    let entry = self.vfs.stat(&path).await?;
                    if entry.kind == EntryKind::Directory {
                        return Err(VfsError::IsADirectory.into());
                    }
                }
                // APPEND: every write goes to the end (paramiko "a", some GUI clients).
                // No TRUNCATE: the client keeps what is there and writes from where it wants;
                // for a resume (OpenSSH reput, WinSCP) that is the current end of the file,
                // for a rewrite it is offset 0. The VFS decides from the first write.
                let mode = if flags.contains(OpenFlags::APPEND) {
                    WriteMode::Append
                } else if flags.contains(OpenFlags::TRUNCATE) {
                    WriteMode::Truncate
                } else {
                    WriteMode::Resume
                };
                let options = CreateOptions {
                    exclusive: flags.contains(OpenFlags::EXCLUDE),
                    mode,
                };
                HandleState::Write(Box::new(self.vfs.create(&path, options).await?))
            }
        };
        let handle = self.register(state)?;
        Ok(Handle { id, handle }.into())
    }

    /// Gives an open file or directory a handle and a worker.
    fn register(&self, state: HandleState) -> Result<String, Reply> {
        let name = (self
            .next_handle
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1)
        .to_string();
        {
            let mut handles = self
                .handles
                .lock()
                .map_err(|_| Reply::Status(StatusCode::Failure, "internal error".into()))?;
            // The session ended while this OPEN was in progress: drop (abort) the state.
            let Some(handles) = handles.as_mut() else {
                return Err(Reply::Status(
                    StatusCode::NoConnection,
                    "session closed".into(),
                ));
            };
            if handles.len() >= MAX_OPEN_HANDLES {
                return Err(Reply::Status(
                    StatusCode::Failure,
                    format!("too many open files (at most {MAX_OPEN_HANDLES} per session)"),
                ));
            }
            handles.insert(name.clone(), HandleEntry::new(state));
        }
        tracing::debug!(handle = %name, "opened");
        Ok(name)
    }

    async fn rename(&self, old: &str, new: &str, overwrite: bool) -> Result<(), Reply> {
        let from = VirtualPath::parse(old)?;
        let to = VirtualPath::parse(new)?;
        self.vfs.rename(&from, &to, overwrite).await?;
        Ok(())
    }

    async fn extended(&self, id: u32, request: &str, data: Vec<u8>) -> Result<Packet, Reply> {
        let mut data = Bytes::from(data);
        let bad = |_| Reply::Status(StatusCode::BadMessage, "malformed extended request".into());
        match request {
            "posix-rename@openssh.com" => {
                let pair: PathPair = russh_sftp::de::from_bytes(&mut data).map_err(bad)?;
                self.rename(&pair.old, &pair.new, true).await?;
                Ok(ok(id))
            }
            extensions::STATVFS => {
                let path: OneString = russh_sftp::de::from_bytes(&mut data).map_err(bad)?;
                VirtualPath::parse(&path.value)?;
                // Object storage has no fixed capacity: report a large volume so clients that
                // check free space before uploading go ahead.
                let stat = Statvfs {
                    block_size: 4096,
                    fragment_size: 4096,
                    blocks: 1 << 40,
                    blocks_free: 1 << 40,
                    blocks_avail: 1 << 40,
                    inodes: 1 << 32,
                    inodes_free: 1 << 32,
                    inodes_avail: 1 << 32,
                    fs_id: 0,
                    flags: 0,
                    name_max: wharf_vfs::MAX_NAME_BYTES as u64,
                };
                extended_reply(id, &stat)
            }
            extensions::LIMITS => {
                let limits = LimitsExtension {
                    max_packet_len: MAX_PACKET_LEN as u64,
                    max_read_len: MAX_IO_LEN as u64,
                    max_write_len: MAX_IO_LEN as u64,
                    max_open_handles: MAX_OPEN_HANDLES as u64,
                };
                extended_reply(id, &limits)
            }
            other => Err(Reply::Status(
                StatusCode::OpUnsupported,
                format!("extension '{other}' is not supported"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_packet(handle: &[u8], offset: u64, data: &[u8]) -> Vec<u8> {
        let mut raw = vec![SSH_FXP_WRITE];
        raw.extend(7u32.to_be_bytes());
        raw.extend((handle.len() as u32).to_be_bytes());
        raw.extend(handle);
        raw.extend(offset.to_be_bytes());
        raw.extend((data.len() as u32).to_be_bytes());
        raw.extend(data);
        raw
    }

    /// A WRITE is taken apart without copying its data, exactly as russh-sftp decodes it; a
    /// malformed one is left to the generic decoder (which answers it with an error).
    #[test]
    fn writes_are_parsed_like_the_generic_decoder_and_malformed_ones_are_refused() {
        let raw = Bytes::from(write_packet(b"12", 1 << 40, b"hello"));
        let (handle, offset, data) = parse_write(&raw).expect("a valid write");
        assert_eq!(
            (handle.as_str(), offset, &data[..]),
            ("12", 1 << 40, &b"hello"[..])
        );
        // The data is a view of the packet, not a copy.
        assert_eq!(data.as_ptr(), raw[raw.len() - 5..].as_ptr());
        let Ok(Packet::Write(generic)) = Packet::try_from(&mut raw.clone()) else {
            panic!("russh-sftp decodes it as a write");
        };
        assert_eq!((generic.handle, generic.offset), (handle, offset));
        assert_eq!(generic.data, data);

        let empty = Bytes::from(write_packet(b"1", 0, b""));
        assert_eq!(parse_write(&empty).map(|w| w.2.len()), Some(0));

        let valid = write_packet(b"1", 0, b"data");
        for bad in [
            valid[..valid.len() - 1].to_vec(),  // data cut short
            [&valid[..], b"x"].concat(),        // trailing bytes
            valid[..12].to_vec(),               // offset cut short
            write_packet(b"\xff\xfe", 0, b"d"), // handle not UTF-8
            {
                let mut huge = valid.clone(); // data length beyond the packet
                let at = valid.len() - 8;
                huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
                huge
            },
        ] {
            assert_eq!(parse_write(&Bytes::from(bad.clone())), None, "{bad:?}");
        }
        let mut read = valid.clone();
        read[0] = 5; // SSH_FXP_READ
        assert_eq!(parse_write(&Bytes::from(read)), None);
    }
}
