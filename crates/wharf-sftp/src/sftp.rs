//! The SFTP version 3 protocol (draft-ietf-secsh-filexfer-02 plus OpenSSH's extensions) on top
//! of one user's [`Vfs`].
//!
//! russh-sftp supplies the packet types and their encoding; the loop and the dispatch are ours,
//! because the stock server loop keeps going on a corrupt stream, cannot tell us when the
//! subsystem ends (we must send `exit-status`), and is the piece that pipelining will replace.

use std::collections::HashMap;

use bytes::Bytes;
use russh_sftp::extensions::{self, LimitsExtension, Statvfs};
use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status,
    StatusCode, Version,
};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use wharf_core::Permissions;
use wharf_vfs::{CreateOptions, Download, Entry, EntryKind, Upload, Vfs, VfsError, VirtualPath};

/// Largest packet a client may send: a 256 KiB write plus headers (OpenSSH's own limit).
pub const MAX_PACKET_LEN: u32 = 256 * 1024 + 1024;
/// Largest read or write we advertise in `limits@openssh.com`.
const MAX_IO_LEN: u32 = 255 * 1024;
/// Open files and directories per session.
const MAX_OPEN_HANDLES: usize = 256;
/// Directory entries per SSH_FXP_NAME reply.
const READDIR_BATCH: usize = 128;

/// Why a session ended other than by the client closing it.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("i/o error on the SFTP channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("client sent a packet of {0} bytes; the limit is {MAX_PACKET_LEN}")]
    PacketTooLarge(u32),
    #[error("cannot encode a reply: {0}")]
    Encode(String),
}

enum OpenHandle {
    Read {
        path: VirtualPath,
        download: Download,
    },
    Write {
        path: VirtualPath,
        upload: Upload,
    },
    Dir {
        path: VirtualPath,
        /// Entries still to send; `None` until the first READDIR lists the directory.
        pending: Option<std::vec::IntoIter<Entry>>,
    },
}

/// One SFTP subsystem on one SSH channel.
pub struct SftpSession {
    vfs: Vfs,
    handles: HashMap<String, OpenHandle>,
    next_handle: u64,
    initialized: bool,
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
        SftpSession {
            vfs,
            handles: HashMap::new(),
            next_handle: 0,
            initialized: false,
        }
    }

    /// Serves the protocol on `stream` until the client closes it. Uploads still open at the
    /// end are aborted (dropped), never committed.
    pub async fn run<S>(mut self, stream: S) -> Result<(), SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut reader, writer) = tokio::io::split(stream);
        let mut writer = BufWriter::with_capacity(MAX_PACKET_LEN as usize, writer);
        loop {
            let len = match reader.read_u32().await {
                Ok(len) => len,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            };
            if len == 0 || len > MAX_PACKET_LEN {
                // The stream cannot be resynchronised after a bad length: end the session.
                return Err(SessionError::PacketTooLarge(len));
            }
            let mut buf = vec![0u8; len as usize];
            match reader.read_exact(&mut buf).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
            let reply = self.process(Bytes::from(buf)).await;
            let bytes = Bytes::try_from(reply).map_err(|e| SessionError::Encode(e.to_string()))?;
            writer.write_all(&bytes).await?;
            writer.flush().await?;
        }
        Ok(())
    }

    async fn process(&mut self, mut raw: Bytes) -> Packet {
        // The request id sits right after the type byte in every request.
        let id = raw
            .get(1..5)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        let packet = match Packet::try_from(&mut raw) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "malformed SFTP packet");
                return status(id, StatusCode::BadMessage, "malformed packet");
            }
        };
        if !self.initialized && !matches!(packet, Packet::Init(_)) {
            return status(id, StatusCode::BadMessage, "expected SSH_FXP_INIT first");
        }
        match self.dispatch(packet).await {
            Ok(reply) => reply,
            Err(e) => error_status(id, e),
        }
    }

    async fn dispatch(&mut self, packet: Packet) -> Result<Packet, Reply> {
        match packet {
            Packet::Init(init) => {
                self.initialized = true;
                tracing::debug!(version = init.version, "sftp init");
                let mut version = Version::new();
                for (name, ver) in [
                    ("posix-rename@openssh.com", "1"),
                    (extensions::STATVFS, "2"),
                    (extensions::FSYNC, "1"),
                    (extensions::LIMITS, "1"),
                ] {
                    version.extensions.insert(name.to_owned(), ver.to_owned());
                }
                Ok(version.into())
            }
            Packet::RealPath(p) => {
                let path = VirtualPath::parse(&p.path)?;
                Ok(Name {
                    id: p.id,
                    files: vec![File::dummy(path.to_string())],
                }
                .into())
            }
            Packet::Stat(p) => self.stat(p.id, &p.path).await,
            Packet::Lstat(p) => self.stat(p.id, &p.path).await,
            Packet::Fstat(p) => {
                let attrs = match self.handle(&p.handle)? {
                    OpenHandle::Read { download, .. } => {
                        file_attrs(download.size(), None, self.vfs.permissions())
                    }
                    OpenHandle::Write { upload, .. } => {
                        file_attrs(upload.len(), None, self.vfs.permissions())
                    }
                    OpenHandle::Dir { .. } => dir_attrs(None, self.vfs.permissions()),
                };
                Ok(Attrs { id: p.id, attrs }.into())
            }
            Packet::SetStat(p) => {
                let path = VirtualPath::parse(&p.path)?;
                let entry = self.vfs.stat(&path).await?;
                check_setstat(&p.attrs, Some(entry.size))?;
                Ok(ok(p.id))
            }
            Packet::FSetStat(p) => {
                let size = match self.handle(&p.handle)? {
                    OpenHandle::Read { download, .. } => Some(download.size()),
                    OpenHandle::Write { upload, .. } => Some(upload.len()),
                    OpenHandle::Dir { .. } => None,
                };
                check_setstat(&p.attrs, size)?;
                Ok(ok(p.id))
            }
            Packet::Open(p) => self.open(p.id, &p.filename, p.pflags).await,
            Packet::Close(p) => {
                let handle = self.handles.remove(&p.handle).ok_or(Reply::BadHandle)?;
                if let OpenHandle::Write { path, upload } = handle {
                    let summary = upload.commit().await?;
                    tracing::info!(path = %path, size = summary.size, sha256 = %summary.sha256, "upload committed");
                }
                Ok(ok(p.id))
            }
            Packet::Read(p) => {
                let len = p.len.min(MAX_IO_LEN);
                let OpenHandle::Read { download, .. } =
                    self.handles.get_mut(&p.handle).ok_or(Reply::BadHandle)?
                else {
                    return Err(Reply::Status(
                        StatusCode::Failure,
                        "handle is not open for reading".into(),
                    ));
                };
                let data = download.read(p.offset, len).await?;
                if data.is_empty() {
                    return Err(Reply::Status(StatusCode::Eof, "end of file".into()));
                }
                Ok(Data {
                    id: p.id,
                    data: data.to_vec(),
                }
                .into())
            }
            Packet::Write(p) => {
                let OpenHandle::Write { upload, .. } =
                    self.handles.get_mut(&p.handle).ok_or(Reply::BadHandle)?
                else {
                    return Err(Reply::Status(
                        StatusCode::Failure,
                        "handle is not open for writing".into(),
                    ));
                };
                upload.write(p.offset, Bytes::from(p.data)).await?;
                Ok(ok(p.id))
            }
            Packet::OpenDir(p) => {
                let path = VirtualPath::parse(&p.path)?;
                let entry = self.vfs.stat(&path).await?;
                if entry.kind != EntryKind::Directory {
                    return Err(VfsError::NotADirectory.into());
                }
                let handle = self.insert_handle(OpenHandle::Dir {
                    path,
                    pending: None,
                })?;
                Ok(Handle { id: p.id, handle }.into())
            }
            Packet::ReadDir(p) => self.readdir(p.id, &p.handle).await,
            Packet::Remove(p) => {
                let path = VirtualPath::parse(&p.filename)?;
                self.vfs.remove(&path).await?;
                Ok(ok(p.id))
            }
            Packet::MkDir(p) => {
                let path = VirtualPath::parse(&p.path)?;
                self.vfs.mkdir(&path).await?;
                Ok(ok(p.id))
            }
            Packet::RmDir(p) => {
                let path = VirtualPath::parse(&p.path)?;
                self.vfs.rmdir(&path).await?;
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
        Ok(Attrs {
            id,
            attrs: entry_attrs(&entry, self.vfs.permissions()),
        }
        .into())
    }

    async fn open(&mut self, id: u32, filename: &str, flags: OpenFlags) -> Result<Packet, Reply> {
        let path = VirtualPath::parse(filename)?;
        let read = flags.contains(OpenFlags::READ);
        let write = flags.contains(OpenFlags::WRITE) || flags.contains(OpenFlags::APPEND);
        let handle = match (read, write) {
            (true, true) => {
                return Err(Reply::Status(
                    StatusCode::OpUnsupported,
                    "opening a file for reading and writing at once is not supported on \
                     object storage; open it for one or the other"
                        .into(),
                ));
            }
            (_, false) => {
                let download = self.vfs.open_read(&path).await?;
                OpenHandle::Read { path, download }
            }
            (false, true) => {
                if flags.contains(OpenFlags::APPEND) {
                    return Err(Reply::Status(
                        StatusCode::OpUnsupported,
                        "appending to a file is not supported yet".into(),
                    ));
                }
                if !flags.contains(OpenFlags::CREATE) {
                    // Without CREATE the file must exist already.
                    let entry = self.vfs.stat(&path).await?;
                    if entry.kind == EntryKind::Directory {
                        return Err(VfsError::IsADirectory.into());
                    }
                }
                let options = CreateOptions {
                    exclusive: flags.contains(OpenFlags::EXCLUDE),
                };
                let upload = self.vfs.create(&path, options).await?;
                OpenHandle::Write { path, upload }
            }
        };
        let handle = self.insert_handle(handle)?;
        Ok(Handle { id, handle }.into())
    }

    async fn readdir(&mut self, id: u32, handle: &str) -> Result<Packet, Reply> {
        let permissions = self.vfs.permissions();
        let OpenHandle::Dir { path, pending } =
            self.handles.get_mut(handle).ok_or(Reply::BadHandle)?
        else {
            return Err(Reply::Status(
                StatusCode::Failure,
                "handle is not a directory".into(),
            ));
        };
        if pending.is_none() {
            *pending = Some(self.vfs.list(path).await?.into_iter());
        }
        let entries = pending
            .as_mut()
            .map(|it| it.by_ref().take(READDIR_BATCH).collect::<Vec<_>>());
        let files: Vec<File> = entries
            .unwrap_or_default()
            .iter()
            .map(|e| File::new(e.name.clone(), entry_attrs(e, permissions)))
            .collect();
        if files.is_empty() {
            return Err(Reply::Status(StatusCode::Eof, "end of directory".into()));
        }
        Ok(Name { id, files }.into())
    }

    async fn rename(&self, old: &str, new: &str, overwrite: bool) -> Result<(), Reply> {
        let from = VirtualPath::parse(old)?;
        let to = VirtualPath::parse(new)?;
        self.vfs.rename(&from, &to, overwrite).await?;
        Ok(())
    }

    async fn extended(&mut self, id: u32, request: &str, data: Vec<u8>) -> Result<Packet, Reply> {
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
                // Object storage has no fixed capacity: report a large, honest-looking volume
                // so clients that check free space before uploading go ahead.
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
            extensions::FSYNC => {
                let handle: OneString = russh_sftp::de::from_bytes(&mut data).map_err(bad)?;
                self.handle(&handle.value)?;
                // Uploads become durable when the file is closed (the object is committed then);
                // there is nothing partial to flush before that.
                Ok(ok(id))
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

    fn handle(&self, handle: &str) -> Result<&OpenHandle, Reply> {
        self.handles.get(handle).ok_or(Reply::BadHandle)
    }

    fn insert_handle(&mut self, handle: OpenHandle) -> Result<String, Reply> {
        if self.handles.len() >= MAX_OPEN_HANDLES {
            return Err(Reply::Status(
                StatusCode::Failure,
                format!("too many open files (at most {MAX_OPEN_HANDLES} per session)"),
            ));
        }
        self.next_handle += 1;
        let name = self.next_handle.to_string();
        let (OpenHandle::Dir { path, .. }
        | OpenHandle::Read { path, .. }
        | OpenHandle::Write { path, .. }) = &handle;
        tracing::debug!(handle = %name, path = %path, "opened");
        self.handles.insert(name.clone(), handle);
        Ok(name)
    }
}

/// An error reply, before it becomes a status packet.
enum Reply {
    Vfs(VfsError),
    BadHandle,
    Status(StatusCode, String),
}

impl From<VfsError> for Reply {
    fn from(e: VfsError) -> Self {
        Reply::Vfs(e)
    }
}

fn error_status(id: u32, reply: Reply) -> Packet {
    match reply {
        Reply::BadHandle => status(id, StatusCode::Failure, "invalid handle"),
        Reply::Status(code, message) => status(id, code, &message),
        Reply::Vfs(e) => {
            let code = match &e {
                VfsError::NotFound => StatusCode::NoSuchFile,
                VfsError::PermissionDenied(_) => StatusCode::PermissionDenied,
                VfsError::Unsupported(_) => StatusCode::OpUnsupported,
                VfsError::Storage(source) => {
                    tracing::warn!(error = %source, "storage error");
                    return status(
                        id,
                        StatusCode::Failure,
                        "storage error; the operation may be retried",
                    );
                }
                _ => StatusCode::Failure,
            };
            status(id, code, &e.to_string())
        }
    }
}

fn status(id: u32, status_code: StatusCode, message: &str) -> Packet {
    Packet::Status(Status {
        id,
        status_code,
        error_message: message.to_owned(),
        language_tag: "en-US".to_owned(),
    })
}

fn ok(id: u32) -> Packet {
    status(id, StatusCode::Ok, "Success")
}

fn extended_reply<T: serde::Serialize>(id: u32, value: &T) -> Result<Packet, Reply> {
    let data = russh_sftp::ser::to_bytes(value)
        .map_err(|e| Reply::Status(StatusCode::Failure, e.to_string()))?;
    Ok(ExtendedReply {
        id,
        data: data.to_vec(),
    }
    .into())
}

/// chmod, chown and touch are accepted and ignored (object stores cannot keep them); a size
/// change (truncate) cannot be honoured and is refused unless it changes nothing.
fn check_setstat(attrs: &FileAttributes, current_size: Option<u64>) -> Result<(), Reply> {
    match (attrs.size, current_size) {
        (Some(want), Some(have)) if want != have => Err(Reply::Status(
            StatusCode::OpUnsupported,
            "changing a file's size (truncate) is not supported on object storage".into(),
        )),
        _ => Ok(()),
    }
}

fn entry_attrs(entry: &Entry, permissions: Permissions) -> FileAttributes {
    let mtime = entry
        .modified
        .map(|t| t.timestamp().clamp(0, u32::MAX as i64) as u32);
    match entry.kind {
        EntryKind::Directory => dir_attrs(mtime, permissions),
        EntryKind::File => file_attrs(entry.size, mtime, permissions),
    }
}

const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// Mode bits that tell the partner what it may do: `ls -l` shows `-r--r--r--` for a read-only
/// user, `--w-------` for a write-only one.
fn file_attrs(size: u64, mtime: Option<u32>, permissions: Permissions) -> FileAttributes {
    let mode = match permissions {
        Permissions::ReadWrite => 0o644,
        Permissions::ReadOnly => 0o444,
        Permissions::WriteOnly => 0o200,
    };
    FileAttributes {
        size: Some(size),
        uid: Some(0),
        user: None,
        gid: Some(0),
        group: None,
        permissions: Some(S_IFREG | mode),
        atime: mtime,
        mtime,
    }
}

fn dir_attrs(mtime: Option<u32>, permissions: Permissions) -> FileAttributes {
    let mode = match permissions {
        Permissions::ReadWrite => 0o755,
        Permissions::ReadOnly => 0o555,
        Permissions::WriteOnly => 0o755,
    };
    FileAttributes {
        size: Some(0),
        uid: Some(0),
        user: None,
        gid: Some(0),
        group: None,
        permissions: Some(S_IFDIR | mode),
        atime: mtime,
        mtime,
    }
}
