//! Turning results into SFTP replies: status codes for [`VfsError`]s and file attributes.

use russh_sftp::protocol::{ExtendedReply, FileAttributes, Packet, Status, StatusCode};
use wharf_core::Permissions;
use wharf_vfs::{Entry, EntryKind, VfsError};

/// An error reply, before it becomes a status packet.
pub(crate) enum Reply {
    Vfs(VfsError),
    BadHandle,
    Status(StatusCode, String),
}

impl From<VfsError> for Reply {
    fn from(e: VfsError) -> Self {
        Reply::Vfs(e)
    }
}

pub(crate) fn error_status(id: u32, reply: Reply) -> Packet {
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

pub(crate) fn status(id: u32, status_code: StatusCode, message: &str) -> Packet {
    Packet::Status(Status {
        id,
        status_code,
        error_message: message.to_owned(),
        language_tag: "en-US".to_owned(),
    })
}

pub(crate) fn ok(id: u32) -> Packet {
    status(id, StatusCode::Ok, "Success")
}

pub(crate) fn extended_reply<T: serde::Serialize>(id: u32, value: &T) -> Result<Packet, Reply> {
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
pub(crate) fn check_setstat(
    attrs: &FileAttributes,
    current_size: Option<u64>,
) -> Result<(), Reply> {
    match (attrs.size, current_size) {
        (Some(want), Some(have)) if want != have => Err(Reply::Status(
            StatusCode::OpUnsupported,
            "changing a file's size (truncate) is not supported on object storage".into(),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn entry_attrs(entry: &Entry, permissions: Permissions) -> FileAttributes {
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
pub(crate) fn file_attrs(
    size: u64,
    mtime: Option<u32>,
    permissions: Permissions,
) -> FileAttributes {
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

pub(crate) fn dir_attrs(mtime: Option<u32>, permissions: Permissions) -> FileAttributes {
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
