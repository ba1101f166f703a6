//! Requests that name a path (stat, open, mkdir, rename, …) and the extensions: each one is
//! a call into the [`Vfs`](wharf_vfs::Vfs), whose errors become SFTP statuses.

use bytes::Bytes;
use russh_sftp::extensions::{self, LimitsExtension, Statvfs};
use russh_sftp::protocol::{File, Handle, Name, OpenFlags, Packet, StatusCode};
use serde::Deserialize;
use wharf_vfs::{CreateOptions, EntryKind, VfsError, VirtualPath, WriteMode};

use super::extended as ours;
use super::handle::{HandleEntry, HandleState};
use super::reply::{Reply, check_setstat, entry_attrs, extended_reply, ok};
use super::{MAX_IO_LEN, MAX_OPEN_PER_CONNECTION, MAX_PACKET_LEN, Shared};

/// `SSH_FXP_EXTENDED` `posix-rename@openssh.com` payload.
#[derive(Deserialize)]
pub(super) struct PathPair {
    old: String,
    new: String,
}

/// `SSH_FXP_EXTENDED` payloads that carry one string (a path or a handle).
#[derive(Deserialize)]
pub(super) struct OneString {
    pub(super) value: String,
}

/// The write mode the open flags ask for: APPEND (every write goes to the end: paramiko "a",
/// some GUI clients), TRUNCATE, or else `otherwise` (the file is kept).
fn write_mode(flags: OpenFlags, otherwise: WriteMode) -> WriteMode {
    if flags.contains(OpenFlags::APPEND) {
        WriteMode::Append
    } else if flags.contains(OpenFlags::TRUNCATE) {
        WriteMode::Truncate
    } else {
        otherwise
    }
}

impl Shared {
    pub(super) async fn path_request(&self, packet: Packet) -> Result<Packet, Reply> {
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
                check_setstat(&p.attrs, Some(entry.size))?;
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
            (_, false) => HandleState::Read(self.vfs.open_read(&path).await?),
            (false, true) => {
                // No TRUNCATE: the client keeps what is there and writes from where it wants;
                // for a resume (OpenSSH reput, WinSCP) that is the current end of the file,
                // for a rewrite it is offset 0. The VFS decides from the first write.
                let mode = write_mode(flags, WriteMode::Resume);
                HandleState::Write(Box::new(self.create(&path, flags, mode).await?))
            }
            (true, true) => {
                // `r+b`: writes continue the file or rewrite its start, keeping the rest (as
                // POSIX would); reads see the file as it was at open.
                let mode = write_mode(flags, WriteMode::Update);
                let upload = self.create(&path, flags, mode).await?;
                let download = if mode == WriteMode::Truncate {
                    None
                } else {
                    match self.vfs.open_read(&path).await {
                        Ok(download) => Some(download),
                        Err(VfsError::NotFound) => None,
                        Err(e) => return Err(e.into()),
                    }
                };
                HandleState::ReadWrite {
                    download,
                    upload: Box::new(upload),
                }
            }
        };
        let handle = self.register(state)?;
        Ok(Handle { id, handle }.into())
    }

    /// Opens an upload of `path` with `mode` (after the open flags' checks).
    async fn create(
        &self,
        path: &VirtualPath,
        flags: OpenFlags,
        mode: WriteMode,
    ) -> Result<wharf_vfs::Upload, Reply> {
        if !flags.contains(OpenFlags::CREATE) {
            // Without CREATE the file must exist already.
            let entry = self.vfs.stat(path).await?;
            if entry.kind == EntryKind::Directory {
                return Err(VfsError::IsADirectory.into());
            }
        }
        let options = CreateOptions {
            exclusive: flags.contains(OpenFlags::EXCLUDE),
            mode,
        };
        Ok(self.vfs.create(path, options).await?)
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
            self.open_files
                .open()
                .map_err(|why| Reply::Status(StatusCode::Failure, why))?;
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
            ours::CHECK_FILE_NAME => {
                let request = ours::CheckFile::parse(data)?;
                let path = VirtualPath::parse(&request.target)?;
                let sum = self
                    .vfs
                    .checksum(
                        &path,
                        request.algorithm,
                        request.start,
                        request.length,
                        u64::from(request.block_size),
                    )
                    .await?;
                Ok(ours::check_file_reply(id, &sum))
            }
            ours::USERS_GROUPS_BY_ID => {
                ours::users_groups_by_id(id, data, self.vfs.identity().username.as_str())
            }
            extensions::LIMITS => {
                let limits = LimitsExtension {
                    max_packet_len: MAX_PACKET_LEN as u64,
                    max_read_len: MAX_IO_LEN as u64,
                    max_write_len: MAX_IO_LEN as u64,
                    max_open_handles: MAX_OPEN_PER_CONNECTION as u64,
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
