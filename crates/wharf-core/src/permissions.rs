//! [`Permissions`]: what a user may do inside its home directory.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a user may do inside its home directory, over SFTP and FTPS alike.
///
/// - `read-write`: list, stat, download, upload, overwrite, resume and append, create
///   directories, delete files and empty directories, rename.
/// - `read-only`: list, stat, download, and checksums (SFTP `check-file`, FTP `HASH`). Nothing
///   that changes a file or a directory.
/// - `write-only` (a drop box: a partner delivers files but cannot read back or remove what
///   others left): list and stat; upload new files; create directories; resume, append to,
///   overwrite or rename only files uploaded in the same session (so a client that uploads to
///   `name.filepart` and renames it to `name`, as WinSCP and FileZilla do, works, and a transfer
///   cut off in the middle can be continued within the session); checksums only of files
///   uploaded in the same session. Never download, delete files or directories, or overwrite
///   or rename onto an existing name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Permissions {
    #[default]
    ReadWrite,
    ReadOnly,
    WriteOnly,
}

impl Permissions {
    /// May open files for reading (download).
    pub fn can_read(self) -> bool {
        !matches!(self, Permissions::WriteOnly)
    }
    /// May create or overwrite files, create directories and rename.
    pub fn can_write(self) -> bool {
        !matches!(self, Permissions::ReadOnly)
    }
    /// May delete files and remove directories.
    pub fn can_delete(self) -> bool {
        matches!(self, Permissions::ReadWrite)
    }
    /// May list directories and stat entries (every permission set can).
    pub fn can_list(self) -> bool {
        true
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permissions::ReadWrite => "read-write",
            Permissions::ReadOnly => "read-only",
            Permissions::WriteOnly => "write-only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read-write" => Some(Permissions::ReadWrite),
            "read-only" => Some(Permissions::ReadOnly),
            "write-only" => Some(Permissions::WriteOnly),
            _ => None,
        }
    }
}

impl std::fmt::Display for Permissions {
    // `pad`, not `write_str`: width and alignment (`{:<11}`) line tables up.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rules() {
        for p in [
            Permissions::ReadWrite,
            Permissions::ReadOnly,
            Permissions::WriteOnly,
        ] {
            assert_eq!(Permissions::parse(p.as_str()), Some(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
        assert!(!Permissions::ReadOnly.can_write());
        assert!(!Permissions::ReadOnly.can_delete());
        assert!(!Permissions::WriteOnly.can_read());
        assert!(!Permissions::WriteOnly.can_delete());
        assert!(Permissions::WriteOnly.can_write());
        assert!(Permissions::ReadWrite.can_delete());
        assert_eq!(Permissions::parse("rw"), None);
    }

    #[test]
    fn display_honours_width_and_alignment() {
        assert_eq!(format!("[{:<11}]", Permissions::ReadOnly), "[read-only  ]");
        assert_eq!(format!("[{:>11}]", Permissions::WriteOnly), "[ write-only]");
    }
}
