//! The SFTP version 3 protocol (draft-ietf-secsh-filexfer-02 plus OpenSSH's extensions) on top
//! of one user's [`Vfs`], with pipelining.
//!
//! russh-sftp supplies the packet types and their encoding; the loop and the dispatch are ours.
//! Its stock server loop is strictly serial (read, handle, write, flush), so one slow store call
//! stalls every request queued behind it. Here:
//!
//! - the **reader** (the task running [`SftpSession::run`]) decodes packets and never awaits a
//!   store call: it serves a request itself only up to its first wait;
//! - requests naming a **handle** are served in arrival order ([`handle`]: writes reach the
//!   upload in order, reads continue one download stream), by the reader while they are quick
//!   and nothing is queued for the handle, else by the handle's worker task;
//! - **path** requests (stat, open, mkdir, rename, …) that have to wait go on as their own
//!   tasks;
//! - one **writer** task sends the replies as they complete (the protocol allows any order),
//!   coalescing them into few flushes;
//! - at most [`MAX_IN_FLIGHT`] requests are in progress; the reader stops reading beyond that,
//!   which pushes back on the client through SSH flow control and bounds memory.

mod handle;
mod reply;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use russh_sftp::extensions::{self, LimitsExtension, Statvfs};
use russh_sftp::protocol::{File, Handle, Name, OpenFlags, Packet, StatusCode, Version};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
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
    #[error("i/o error on the SFTP channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("client sent a packet of {0} bytes; the limit is {MAX_PACKET_LEN}")]
    PacketTooLarge(u32),
}

/// One SFTP subsystem on one SSH channel.
pub struct SftpSession {
    vfs: Vfs,
}

/// Sends replies to the writer task; the permit is released once the reply is written.
#[derive(Clone)]
pub(crate) struct Replies(mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>);

impl Replies {
    pub(crate) fn send(&self, packet: Packet, permit: OwnedSemaphorePermit) {
        let id = packet.get_request_id();
        let bytes = Bytes::try_from(packet).or_else(|e| {
            tracing::error!(error = %e, "cannot encode a reply");
            Bytes::try_from(status(id, StatusCode::Failure, "internal error"))
        });
        if let Ok(bytes) = bytes {
            // Fails only when the writer is gone, i.e. the client disconnected.
            let _ = self.0.send((bytes, permit));
        }
    }
}

/// What the reader and every request task share.
struct Shared {
    vfs: Vfs,
    /// Open handles; `None` once the session is over (late OPENs then abort).
    handles: Mutex<Option<HashMap<String, HandleEntry>>>,
    next_handle: std::sync::atomic::AtomicU64,
    replies: Replies,
    tasks: TaskTracker,
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
    pub fn new(vfs: Vfs) -> Self {
        SftpSession { vfs }
    }

    /// Serves the protocol on `stream` until the client closes it, then waits for the requests
    /// in progress to be answered. Uploads still open at the end are aborted, never committed.
    ///
    /// The stream is borrowed, not consumed: an SSH channel stream closes the channel when
    /// dropped, and the caller still has to send `exit-status` on it.
    pub async fn run<S>(self, stream: &mut S) -> Result<(), SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (mut reader, writer) = tokio::io::split(stream);
        let (tx, rx) = mpsc::unbounded_channel();
        let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let shared = Arc::new(Shared {
            vfs: self.vfs,
            handles: Mutex::new(Some(HashMap::new())),
            next_handle: Default::default(),
            replies: Replies(tx),
            tasks: TaskTracker::new(),
        });

        // Reading (and dispatching) and writing replies run side by side in this task; the
        // request work itself runs in handle workers and request tasks.
        let read_side = async move {
            let result = read_requests(&mut reader, &shared, &limit).await;
            // No more requests: close the handle queues so their workers finish what is queued
            // and end (dropping an uncommitted upload aborts it). When every task is done the
            // last reply sender goes away and the writer finishes.
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
            result
        };
        let (result, written) = tokio::join!(read_side, write_replies(writer, rx));
        if let Err(e) = written {
            tracing::debug!(error = %e, "writing replies failed");
        }
        result
    }
}

async fn read_requests<R: AsyncRead + Unpin>(
    reader: &mut R,
    shared: &Arc<Shared>,
    limit: &Arc<Semaphore>,
) -> Result<(), SessionError> {
    let mut initialized = false;
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return Ok(());
        };
        let Some(raw) = read_packet(reader).await? else {
            return Ok(());
        };
        // The request id sits right after the type byte in every request.
        let id = raw
            .get(1..5)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        let mut body = raw;
        let packet = match Packet::try_from(&mut body) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "malformed SFTP packet");
                let reply = status(id, StatusCode::BadMessage, "malformed packet");
                shared.replies.send(reply, permit);
                continue;
            }
        };
        if !initialized {
            let reply = match packet {
                Packet::Init(init) => {
                    initialized = true;
                    tracing::debug!(version = init.version, "sftp init");
                    version().into()
                }
                _ => status(id, StatusCode::BadMessage, "expected SSH_FXP_INIT first"),
            };
            shared.replies.send(reply, permit);
            continue;
        }
        dispatch(shared, packet, permit).await;
    }
}

/// One packet (type byte first), `None` at a clean end of stream.
async fn read_packet<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Bytes>, SessionError> {
    let len = match reader.read_u32().await {
        Ok(len) => len,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if len == 0 || len > MAX_PACKET_LEN {
        // The stream cannot be resynchronised after a bad length: end the session.
        return Err(SessionError::PacketTooLarge(len));
    }
    let mut buf = vec![0u8; len as usize];
    match reader.read_exact(&mut buf).await {
        Ok(_) => Ok(Some(Bytes::from(buf))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn write_replies<W: AsyncWrite + Unpin>(
    writer: W,
    mut rx: mpsc::UnboundedReceiver<(Bytes, OwnedSemaphorePermit)>,
) -> std::io::Result<()> {
    let mut writer = BufWriter::with_capacity(MAX_PACKET_LEN as usize, writer);
    while let Some((bytes, permit)) = rx.recv().await {
        writer.write_all(&bytes).await?;
        drop(permit);
        // Write whatever else is ready before flushing: fewer, larger SSH packets.
        while let Ok((bytes, permit)) = rx.try_recv() {
            writer.write_all(&bytes).await?;
            drop(permit);
        }
        writer.flush().await?;
    }
    writer.flush().await
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
                data: p.data,
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
