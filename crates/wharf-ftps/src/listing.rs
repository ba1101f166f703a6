//! How entries look in LIST, NLST, MLSD and MLST, and FTP's time format.

use chrono::{DateTime, Utc};
use wharf_core::Permissions;
use wharf_vfs::{Entry, EntryKind};

/// Which listing a data connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListFormat {
    /// LIST: `ls -l` lines.
    Long,
    /// NLST: names only.
    Names,
    /// MLSD: RFC 3659 facts.
    Machine,
}

impl ListFormat {
    /// The line for `entry` (CRLF included).
    pub(crate) fn line(
        self,
        entry: &Entry,
        permissions: Permissions,
        now: DateTime<Utc>,
    ) -> String {
        match self {
            ListFormat::Long => format!("{}\r\n", long_line(entry, permissions, now)),
            ListFormat::Names => format!("{}\r\n", entry.name),
            ListFormat::Machine => format!("{} {}\r\n", facts(entry, permissions), entry.name),
        }
    }
}

/// A name that cannot be shown on one line of a listing (a control character would let it
/// forge lines of its own).
pub(crate) fn listable(name: &str) -> bool {
    !name.chars().any(char::is_control)
}

/// An `ls -l` line: mode, links, owner, group, size, time, name. The mode tells the partner
/// what it may do, as over SFTP (`r--r--r--` for a read-only user, `-w-------` for a
/// write-only one). Times within the last six months show the hour, older ones the year.
pub(crate) fn long_line(entry: &Entry, permissions: Permissions, now: DateTime<Utc>) -> String {
    let kind = match entry.kind {
        EntryKind::Directory => 'd',
        EntryKind::File => '-',
    };
    let mode = match (entry.kind, permissions) {
        (EntryKind::File, Permissions::ReadWrite) => "rw-r--r--",
        (EntryKind::File, Permissions::ReadOnly) => "r--r--r--",
        (EntryKind::File, Permissions::WriteOnly) => "-w-------",
        (EntryKind::Directory, Permissions::ReadOnly) => "r-xr-xr-x",
        (EntryKind::Directory, _) => "rwxr-xr-x",
    };
    let modified = entry.modified.unwrap_or(DateTime::UNIX_EPOCH);
    let age = now.signed_duration_since(modified);
    let time = if age.num_days() < 180 && age.num_days() > -1 {
        modified.format("%b %e %H:%M")
    } else {
        modified.format("%b %e  %Y")
    };
    format!(
        "{kind}{mode} 1 ftp ftp {size:>13} {time} {name}",
        size = entry.size,
        name = entry.name
    )
}

/// RFC 3659 facts: `type=file;size=1024;modify=20260102030405;perm=adfrw;`.
pub(crate) fn facts(entry: &Entry, permissions: Permissions) -> String {
    let mut facts = match entry.kind {
        EntryKind::File => format!("type=file;size={};", entry.size),
        EntryKind::Directory => "type=dir;".to_owned(),
    };
    if let Some(modified) = entry.modified {
        facts.push_str(&format!("modify={};", ftp_time(modified)));
    }
    facts.push_str(&format!("perm={};", perm_fact(entry.kind, permissions)));
    facts
}

/// The `perm` fact (RFC 3659 §7.5.5): what the user may do with the entry.
fn perm_fact(kind: EntryKind, permissions: Permissions) -> String {
    let mut perm = String::new();
    let mut add = |allowed: bool, letters: &str| {
        if allowed {
            perm.push_str(letters);
        }
    };
    match kind {
        EntryKind::File => {
            add(permissions.can_write(), "a");
            add(permissions.can_delete(), "d");
            add(permissions.can_write(), "f");
            add(permissions.can_read(), "r");
            add(permissions.can_write(), "w");
        }
        EntryKind::Directory => {
            add(permissions.can_write(), "c");
            add(permissions.can_delete(), "d");
            add(permissions.can_list(), "el");
            add(permissions.can_write(), "fm");
            add(permissions.can_delete(), "p");
        }
    }
    perm
}

/// FTP's time format (MDTM, MLSx `modify`): `YYYYMMDDHHMMSS`, UTC.
pub(crate) fn ftp_time(time: DateTime<Utc>) -> String {
    time.format("%Y%m%d%H%M%S").to_string()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn entry(name: &str, kind: EntryKind, size: u64, modified: Option<DateTime<Utc>>) -> Entry {
        Entry {
            name: name.to_owned(),
            kind,
            size,
            modified,
        }
    }

    #[test]
    fn long_lines() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        let recent = Utc.with_ymd_and_hms(2026, 3, 2, 8, 5, 0).unwrap();
        let old = Utc.with_ymd_and_hms(2024, 11, 20, 8, 5, 0).unwrap();
        let file = entry("small.bin", EntryKind::File, 1024, Some(recent));
        assert_eq!(
            long_line(&file, Permissions::ReadWrite, now),
            "-rw-r--r-- 1 ftp ftp          1024 Mar  2 08:05 small.bin"
        );
        let dir = entry("in", EntryKind::Directory, 0, None);
        assert_eq!(
            long_line(&dir, Permissions::ReadOnly, now),
            "dr-xr-xr-x 1 ftp ftp             0 Jan  1  1970 in"
        );
        let file = entry("old.txt", EntryKind::File, 5, Some(old));
        assert_eq!(
            long_line(&file, Permissions::WriteOnly, now),
            "--w------- 1 ftp ftp             5 Nov 20  2024 old.txt"
        );
    }

    #[test]
    fn machine_facts() {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let file = entry("a b.txt", EntryKind::File, 7, Some(t));
        assert_eq!(
            ListFormat::Machine.line(&file, Permissions::ReadWrite, t),
            "type=file;size=7;modify=20260102030405;perm=adfrw; a b.txt\r\n"
        );
        assert_eq!(
            facts(&file, Permissions::ReadOnly),
            "type=file;size=7;modify=20260102030405;perm=r;"
        );
        assert_eq!(
            facts(&file, Permissions::WriteOnly),
            "type=file;size=7;modify=20260102030405;perm=afw;"
        );
        let dir = entry("d", EntryKind::Directory, 0, None);
        assert_eq!(
            facts(&dir, Permissions::ReadWrite),
            "type=dir;perm=cdelfmp;"
        );
        assert_eq!(facts(&dir, Permissions::ReadOnly), "type=dir;perm=el;");
        assert_eq!(
            ListFormat::Names.line(&dir, Permissions::ReadOnly, t),
            "d\r\n"
        );
    }

    #[test]
    fn names_with_control_characters_are_not_listed() {
        assert!(listable("ok name.txt"));
        assert!(!listable("evil\r\n226 done"));
        assert!(!listable("tab\there"));
    }
}
