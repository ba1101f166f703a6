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
//! - **path** requests (stat, open, mkdir, rename, …; [`requests`]) that have to wait go on as
//!   their own tasks;
//! - replies leave in the order they are made ([`replies`]): directly from `feed`, or through
//!   a **writer** task when they complete later;
//! - at most [`MAX_IN_FLIGHT`] requests are in progress. Beyond that, packets go to a
//!   **backlog** task that serves them in order as permits free up, and everything after them
//!   follows them there.
//!
//! **Flow control.** russh opens the client's window again as soon as data arrives, so the
//! only way to slow a client down is to stop reading its connection, i.e. to wait inside
//! `feed`. While `feed` waits, the connection can neither send nor read anything, including
//! the window adjustments that let more replies out. So `feed` waits only for the gateway's
//! own work (the store): when the backlog holds more than [`BACKLOG_SOFT_LIMIT`] bytes and every
//! finished reply can go out. When replies wait for the client instead (its window is full,
//! or the writer's replies wait in the connection), `feed` returns at once, and the connection
//! goes on reading and writing; a client that then keeps sending requests without reading the
//! replies (more than [`BACKLOG_LIMIT`] bytes queued) breaks the protocol's flow control and
//! loses the channel. Clients that keep hundreds of requests in flight and read their replies
//! lazily (paramiko) never come near it: what they queue is small, or can be served without
//! them.

mod extended;
mod handle;
mod open_files;
mod replies;
mod reply;
mod requests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use russh_sftp::extensions;
use russh_sftp::protocol::{Packet, StatusCode, Version};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wharf_vfs::Vfs;

use extended as ours;
use handle::{HandleEntry, HandleOp, Queued};
use replies::{Replies, write_replies};
use reply::{error_status, status};
use requests::OneString;

pub use open_files::{MAX_OPEN_PER_CONNECTION, MAX_OPEN_PER_PROCESS, OpenFiles};
pub use replies::{DirectOut, ReplySink};

/// Largest packet a client may send: a 256 KiB write plus headers (OpenSSH's own limit).
pub const MAX_PACKET_LEN: u32 = 256 * 1024 + 1024;
/// Largest read or write we advertise in `limits@openssh.com`.
const MAX_IO_LEN: u32 = 255 * 1024;
/// Requests in progress per session (OpenSSH keeps 64 in flight; rclone and WinSCP more).
pub const MAX_IN_FLIGHT: usize = 128;
/// Directory entries per SSH_FXP_NAME reply.
const READDIR_BATCH: usize = 128;
/// Bytes of requests waiting in the backlog above which [`SftpSession::feed`] waits for the
/// gateway's own work before it reads more (see the module docs).
pub const BACKLOG_SOFT_LIMIT: usize = 2 * 1024 * 1024;
/// Bytes of requests waiting in the backlog, while their replies wait for the client, above
/// which the session ends: the client sends without reading (see the module docs).
pub const BACKLOG_LIMIT: usize = 16 * 1024 * 1024;
/// What one packet waiting in the backlog costs beyond its bytes (its place in the queue):
/// counted so that a flood of tiny requests reaches [`BACKLOG_LIMIT`] too.
const QUEUED_PACKET_COST: usize = 128;
/// How long [`SftpSession::feed`] waits for the gateway's own work to make room in the backlog
/// before it gives up on the channel.
const STALL_LIMIT: Duration = Duration::from_secs(120);

/// Why a session ended other than by the client closing it.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client sent a packet of {0} bytes; the limit is {MAX_PACKET_LEN}")]
    PacketTooLarge(u32),
    #[error(
        "the client queued {0} bytes of requests without reading the replies (the limit is \
         {BACKLOG_LIMIT}); it does not respect SFTP flow control"
    )]
    FlowControl(usize),
    #[error(
        "requests made no progress for {0:?} (storage not answering); giving up on the channel"
    )]
    Stalled(Duration),
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
    backlog: Option<mpsc::UnboundedSender<Bytes>>,
    span: tracing::Span,
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
    /// What those packets cost: their bytes plus [`QUEUED_PACKET_COST`] each.
    backlog_bytes: AtomicUsize,
    /// Wakes [`SftpSession::feed`] while it waits: the backlog task dispatched a packet.
    dispatched: Notify,
    /// The client flooded the backlog: what is still queued is dropped, not served.
    flooded: AtomicBool,
    /// The channel's exit status.
    exit_code: AtomicU32,
    /// Files and directories open on the connection (all its channels): capped, and a
    /// stopping gateway tells an idle connection from one with transfers in progress by it.
    open_files: OpenFiles,
}

impl SftpSession {
    /// Starts serving `vfs` on a channel whose replies go to `sink`; must be called within a
    /// tokio runtime (it starts the writer and the backlog task).
    /// `open_files` counts the handles open on the connection (shared by its channels).
    pub fn start(
        vfs: Vfs,
        sink: Arc<dyn ReplySink>,
        open_files: OpenFiles,
        span: tracing::Span,
    ) -> Self {
        let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let shared = Arc::new(Shared {
            vfs,
            handles: Mutex::new(Some(HashMap::new())),
            next_handle: Default::default(),
            replies: Replies::new(),
            tasks: TaskTracker::new(),
            initialized: AtomicBool::new(false),
            backlogged: AtomicUsize::new(0),
            backlog_bytes: AtomicUsize::new(0),
            dispatched: Notify::new(),
            flooded: AtomicBool::new(false),
            exit_code: AtomicU32::new(0),
            open_files,
        });
        let (tx, rx) = mpsc::unbounded_channel();
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
            span,
        }
    }

    /// Takes what the client sent on the channel. Complete requests are served here up to
    /// their first wait, and their replies sent through `direct` before this returns; the
    /// rest is answered later through the sink. Waits only while the gateway's own work is
    /// behind (see the module docs), never for the client.
    pub async fn feed(&mut self, data: &[u8], direct: &mut (dyn DirectOut + Send)) {
        let span = self.span.clone();
        self.feed_inner(data, direct).instrument(span).await
    }

    async fn feed_inner(&mut self, data: &[u8], direct: &mut (dyn DirectOut + Send)) {
        if self.backlog.is_none() {
            return;
        }
        self.input.extend_from_slice(data);
        let replies = self.shared.replies.clone();
        replies.begin_direct();
        while let Some(raw) = self.next_packet() {
            if self.shared.backlogged.load(Ordering::Acquire) == 0 {
                // Sending what is answered already frees permits.
                let permit = self.limit.clone().try_acquire_owned().or_else(|_| {
                    replies.flush_direct(direct);
                    self.limit.clone().try_acquire_owned()
                });
                if let Ok(permit) = permit {
                    handle_packet(&self.shared, raw, permit).await;
                    continue;
                }
            }
            if let Err(e) = self.queue(raw) {
                tracing::warn!(error = %e, "ending the SFTP session");
                self.shared.flooded.store(true, Ordering::Release);
                self.fail();
            }
        }
        if self.backlog.is_some()
            && self.shared.backlog_bytes.load(Ordering::Acquire) > BACKLOG_SOFT_LIMIT
            && let Err(e) = self.wait_for_backlog(direct).await
        {
            tracing::warn!(error = %e, "ending the SFTP session");
            self.fail();
        }
        replies.flush_direct(direct);
        replies.end_direct();
    }

    /// Hands `raw` to the backlog task, behind the packets already there.
    fn queue(&mut self, raw: Bytes) -> Result<(), SessionError> {
        let Some(backlog) = &self.backlog else {
            return Ok(());
        };
        let cost = raw.len() + QUEUED_PACKET_COST;
        self.shared.backlogged.fetch_add(1, Ordering::AcqRel);
        let queued = self.shared.backlog_bytes.fetch_add(cost, Ordering::AcqRel) + cost;
        if backlog.send(raw).is_err() {
            // The backlog task is gone: the session is over.
            self.backlog = None;
            return Ok(());
        }
        if queued > BACKLOG_LIMIT {
            return Err(SessionError::FlowControl(queued));
        }
        Ok(())
    }

    /// Waits while the backlog is over [`BACKLOG_SOFT_LIMIT`] and only the gateway's own work
    /// can shrink it: every finished reply goes out directly, so the requests in progress free
    /// their permits as they finish. Returns at once when replies wait for the client (or for
    /// the connection), since the connection must go on reading and writing for them.
    async fn wait_for_backlog(
        &self,
        direct: &mut (dyn DirectOut + Send),
    ) -> Result<(), SessionError> {
        let shared = &self.shared;
        let deadline = tokio::time::Instant::now() + STALL_LIMIT;
        loop {
            let waiting_for_client = shared.replies.flush_direct(direct);
            if waiting_for_client
                || shared.backlog_bytes.load(Ordering::Acquire) <= BACKLOG_SOFT_LIMIT
            {
                return Ok(());
            }
            tokio::select! {
                () = shared.dispatched.notified() => {}
                () = shared.replies.answered() => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(SessionError::Stalled(STALL_LIMIT));
                }
            }
        }
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

/// Serves the packets [`SftpSession::feed`] could not serve at once, in order, as permits
/// free up. Once the input has ended: closes the open handles, waits for the requests in
/// progress and the writer, and ends the channel.
async fn run_backlog(
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    mut backlog: mpsc::UnboundedReceiver<Bytes>,
    writer: tokio::task::JoinHandle<()>,
    sink: Arc<dyn ReplySink>,
) {
    while let Some(raw) = backlog.recv().await {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let cost = raw.len() + QUEUED_PACKET_COST;
        if !shared.flooded.load(Ordering::Acquire) {
            handle_packet(&shared, raw, permit).await;
        }
        shared.backlog_bytes.fetch_sub(cost, Ordering::AcqRel);
        shared.backlogged.fetch_sub(1, Ordering::AcqRel);
        shared.dispatched.notify_one();
    }
    // No more requests: close the handles so their workers finish what is queued and end
    // (dropping an uncommitted upload aborts it).
    let open = shared
        .handles
        .lock()
        .ok()
        .and_then(|mut handles| handles.take());
    for entry in open.into_iter().flat_map(HashMap::into_values) {
        shared.open_files.close();
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

fn version() -> Version {
    let mut version = Version::new();
    let algorithms: Vec<&str> = wharf_vfs::HashAlgorithm::ALL
        .iter()
        .map(|a| a.sftp_name())
        .collect();
    let algorithms = algorithms.join(",");
    for (name, ver) in [
        ("posix-rename@openssh.com", "1"),
        (extensions::STATVFS, "2"),
        (extensions::FSYNC, "1"),
        (extensions::LIMITS, "1"),
        (ours::USERS_GROUPS_BY_ID, "1"),
        (ours::CHECK_FILE_NAME, "1"),
        (ours::CHECK_FILE_HANDLE, "1"),
        // What clients such as WinSCP look for, with the algorithms it offers.
        (ours::CHECK_FILE, algorithms.as_str()),
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
        // paramiko's SFTPFile.check() names it "check-file" (an older draft's name).
        Packet::Extended(p)
            if p.request == ours::CHECK_FILE_HANDLE || p.request == ours::CHECK_FILE =>
        {
            match ours::CheckFile::parse(Bytes::from(p.data)) {
                Ok(request) => Some((request.target.clone(), HandleOp::CheckFile(request))),
                Err(e) => {
                    shared.replies.send(error_status(id, e), permit);
                    return;
                }
            }
        }
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

#[cfg(test)]
mod props;
