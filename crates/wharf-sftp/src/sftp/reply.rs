//! Turning results into SFTP replies: status codes for [`VfsError`]s and file attributes.

use russh_sftp::protocol::{ExtendedReply, File, FileAttributes, Packet, Status, StatusCode};
use wharf_core::Permissions;
use wharf_vfs::{Entry, EntryKind, VfsError};

/// An error reply, before it becomes a status packet.
#[derive(Debug)]
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

/// A directory entry as SSH_FXP_NAME carries it: name, attributes, and the `ls -l` line that
/// clients without `users-groups-by-id@openssh.com` print as it is.
pub(crate) fn listed_file(entry: &Entry, permissions: Permissions, owner: &str) -> File {
    let attrs = entry_attrs(entry, permissions);
    let longname = long_name(&entry.name, &attrs, owner, chrono::Utc::now());
    File {
        filename: entry.name.clone(),
        longname,
        attrs,
    }
}

/// The `ls -l` line of an entry in OpenSSH's layout, which scripts parse: 9 fields, i.e.
/// permissions, links, owner, group, size, then `Mon DD HH:MM` for the last six months or
/// `Mon DD  YYYY` otherwise, then the name. Owner and group are the session's user (object
/// stores keep no owners).
pub(crate) fn long_name(
    name: &str,
    attrs: &FileAttributes,
    owner: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mode = attrs.permissions.unwrap_or(0);
    let kind = if mode & S_IFDIR == S_IFDIR { 'd' } else { '-' };
    let mut bits = String::with_capacity(10);
    bits.push(kind);
    for shift in [6, 3, 0] {
        let triplet = (mode >> shift) & 0o7;
        bits.push(if triplet & 0o4 != 0 { 'r' } else { '-' });
        bits.push(if triplet & 0o2 != 0 { 'w' } else { '-' });
        bits.push(if triplet & 0o1 != 0 { 'x' } else { '-' });
    }
    let mtime = chrono::DateTime::from_timestamp(i64::from(attrs.mtime.unwrap_or(0)), 0)
        .unwrap_or_default();
    // OpenSSH's rule: the time of day for the last six months, the year otherwise.
    let recent = mtime <= now && now - mtime < chrono::Duration::days(365) / 2;
    let when = if recent {
        mtime.format("%b %e %H:%M")
    } else {
        mtime.format("%b %e  %Y")
    };
    format!(
        "{bits}    1 {owner:<8} {owner:<8} {size:>8} {when} {name}",
        size = attrs.size.unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    /// The line has OpenSSH's 9 fields, so `awk '{print $9}'` is the name and `$5` the size,
    /// with the time of day for recent files and the year for older ones.
    #[test]
    fn long_names_have_openssh_layout() {
        let now = at("2026-12-07T12:00:00Z");
        let file = Entry {
            name: "hello world.txt".into(),
            kind: EntryKind::File,
            size: 6,
            modified: Some(at("2026-12-07T03:22:10Z")),
        };
        let attrs = entry_attrs(&file, Permissions::ReadWrite);
        let line = long_name(&file.name, &attrs, "K4ZQ7T2M", now);
        assert_eq!(
            line,
            "-rw-r--r--    1 K4ZQ7T2M K4ZQ7T2M        6 Dec  7 03:22 hello world.txt"
        );
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 10, "9 fields, the name holding a space");
        assert_eq!(fields[4], "6");

        let old = Entry {
            name: "archive".into(),
            kind: EntryKind::Directory,
            size: 0,
            modified: Some(at("2025-01-02T08:00:00Z")),
        };
        let attrs = entry_attrs(&old, Permissions::WriteOnly);
        assert_eq!(
            long_name(&old.name, &attrs, "bob", now),
            "drwxr-xr-x    1 bob      bob             0 Jan  2  2025 archive"
        );
        let wo = entry_attrs(&file, Permissions::WriteOnly);
        assert!(long_name("f", &wo, "bob", now).starts_with("--w-------    1 "));
    }
}
