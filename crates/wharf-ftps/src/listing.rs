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
    /// MLSD: RFC 3659 facts, those the session selected.
    Machine(Facts),
}

/// The MLST/MLSD facts the gateway offers, in the order they are shown.
const FACT_NAMES: [&str; 4] = ["type", "size", "modify", "perm"];

/// Which facts MLST and MLSD show (`OPTS MLST`, RFC 3659 §7.9): all of them until the client
/// selects others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// One flag per entry of [`FACT_NAMES`].
    selected: [bool; 4],
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            selected: [true; 4],
        }
    }
}

impl Facts {
    /// The selection `OPTS MLST <list>` asks for: facts named in `list` (`type;size;`, any case
    /// and order); names the gateway does not offer are ignored, an empty list selects none.
    pub(crate) fn parse(list: &str) -> Facts {
        let mut selected = [false; 4];
        for name in list.split(';').map(str::trim) {
            if let Some(i) = FACT_NAMES.iter().position(|f| f.eq_ignore_ascii_case(name)) {
                selected[i] = true;
            }
        }
        Facts { selected }
    }

    /// The selected facts as `OPTS MLST` replies them: `type;size;` (empty when none).
    pub(crate) fn selected_list(self) -> String {
        FACT_NAMES
            .iter()
            .zip(self.selected)
            .filter(|(_, on)| *on)
            .map(|(name, _)| format!("{name};"))
            .collect()
    }

    /// Every offered fact, the selected ones starred, as FEAT shows them:
    /// `type*;size*;modify;perm;`.
    pub(crate) fn feat_list(self) -> String {
        FACT_NAMES
            .iter()
            .zip(self.selected)
            .map(|(name, on)| format!("{name}{};", if on { "*" } else { "" }))
            .collect()
    }

    fn has(self, name: &str) -> bool {
        FACT_NAMES
            .iter()
            .position(|f| *f == name)
            .is_some_and(|i| self.selected[i])
    }
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
            ListFormat::Machine(selected) => {
                format!("{} {}\r\n", facts(entry, permissions, selected), entry.name)
            }
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

/// RFC 3659 facts: `type=file;size=1024;modify=20260102030405;perm=adfrw;`, only those in
/// `selected` (empty when none is).
pub(crate) fn facts(entry: &Entry, permissions: Permissions, selected: Facts) -> String {
    let mut facts = String::new();
    if selected.has("type") {
        facts.push_str(match entry.kind {
            EntryKind::File => "type=file;",
            EntryKind::Directory => "type=dir;",
        });
    }
    if selected.has("size") && entry.kind == EntryKind::File {
        facts.push_str(&format!("size={};", entry.size));
    }
    if let Some(modified) = entry.modified.filter(|_| selected.has("modify")) {
        facts.push_str(&format!("modify={};", ftp_time(modified)));
    }
    if selected.has("perm") {
        facts.push_str(&format!("perm={};", perm_fact(entry.kind, permissions)));
    }
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
        let all = Facts::default();
        assert_eq!(
            ListFormat::Machine(all).line(&file, Permissions::ReadWrite, t),
            "type=file;size=7;modify=20260102030405;perm=adfrw; a b.txt\r\n"
        );
        assert_eq!(
            facts(&file, Permissions::ReadOnly, all),
            "type=file;size=7;modify=20260102030405;perm=r;"
        );
        assert_eq!(
            facts(&file, Permissions::WriteOnly, all),
            "type=file;size=7;modify=20260102030405;perm=afw;"
        );
        let dir = entry("d", EntryKind::Directory, 0, None);
        assert_eq!(
            facts(&dir, Permissions::ReadWrite, all),
            "type=dir;perm=cdelfmp;"
        );
        assert_eq!(facts(&dir, Permissions::ReadOnly, all), "type=dir;perm=el;");
        assert_eq!(
            ListFormat::Names.line(&dir, Permissions::ReadOnly, t),
            "d\r\n"
        );
    }

    #[test]
    fn opts_mlst_selects_facts_in_any_case_and_ignores_unknown_ones() {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let file = entry("f", EntryKind::File, 7, Some(t));
        let dir = entry("d", EntryKind::Directory, 0, None);
        let some = Facts::parse("Size;TYPE;unique;");
        assert_eq!(some.selected_list(), "type;size;");
        assert_eq!(some.feat_list(), "type*;size*;modify;perm;");
        assert_eq!(
            facts(&file, Permissions::ReadWrite, some),
            "type=file;size=7;"
        );
        assert_eq!(facts(&dir, Permissions::ReadWrite, some), "type=dir;");
        let modify = Facts::parse("modify;");
        assert_eq!(
            facts(&file, Permissions::ReadWrite, modify),
            "modify=20260102030405;"
        );
        // None selected: an MLSD line is a space and the name (RFC 3659 §7.2).
        let none = Facts::parse("");
        assert_eq!(none.selected_list(), "");
        assert_eq!(none.feat_list(), "type;size;modify;perm;");
        assert_eq!(
            ListFormat::Machine(none).line(&file, Permissions::ReadWrite, t),
            " f\r\n"
        );
        assert_eq!(Facts::default().selected_list(), "type;size;modify;perm;");
        assert_eq!(Facts::parse("type;size;modify;perm;"), Facts::default());
    }

    #[test]
    fn names_with_control_characters_are_not_listed() {
        assert!(listable("ok name.txt"));
        assert!(!listable("evil\r\n226 done"));
        assert!(!listable("tab\there"));
    }
}
