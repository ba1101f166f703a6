//! [`VirtualPath`]: the one place where a client-supplied path is normalised and jailed.

use std::fmt;

use crate::VfsError;

/// Longest accepted path, in bytes, after normalisation (PATH_MAX on Linux).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted name of one file or directory, in bytes (NAME_MAX on Linux).
pub const MAX_NAME_BYTES: usize = 255;

/// An absolute path inside a user's home, as the partner sees it: `/` is the home directory.
///
/// Invariants: starts with `/`; segments are non-empty, never `.` or `..`, contain no `/`, no
/// NUL or other control characters, no backslash, and are at most [`MAX_NAME_BYTES`] long; the
/// whole path is at most [`MAX_PATH_BYTES`]. A `VirtualPath` therefore cannot name anything
/// outside the home directory, whatever the client sent.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualPath {
    segments: Vec<String>,
}

impl VirtualPath {
    /// The home directory itself.
    pub fn root() -> Self {
        VirtualPath {
            segments: Vec::new(),
        }
    }

    /// Resolves `input` (absolute, or relative to `cwd`) the way a POSIX shell would with
    /// `cd`: empty and `.` segments are dropped, `..` goes up one level but never above `/`.
    ///
    /// Rejected: NUL and other control characters, backslashes (Windows separators would make
    /// `..\..` look harmless), names longer than [`MAX_NAME_BYTES`], paths longer than
    /// [`MAX_PATH_BYTES`], and the reserved names [`crate::DIRECTORY_MARKER`] and
    /// [`crate::UPLOAD_JOURNAL`] in any letter case. Percent signs are plain
    /// characters: `%2e%2e` is a file called `%2e%2e`, never `..`.
    pub fn resolve(cwd: &VirtualPath, input: &str) -> Result<Self, VfsError> {
        if input.len() > MAX_PATH_BYTES {
            return Err(VfsError::InvalidPath("path is too long".into()));
        }
        if input.chars().any(char::is_control) {
            return Err(VfsError::InvalidPath(
                "path contains a control character".into(),
            ));
        }
        if input.contains('\\') {
            return Err(VfsError::InvalidPath(
                "path contains a backslash; use '/' to separate directories".into(),
            ));
        }
        let mut segments = if input.starts_with('/') {
            Vec::new()
        } else {
            cwd.segments.clone()
        };
        for segment in input.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                name => {
                    if name.len() > MAX_NAME_BYTES {
                        return Err(VfsError::InvalidPath(format!(
                            "a name is longer than {MAX_NAME_BYTES} bytes"
                        )));
                    }
                    // In any letter case: some stores ignore it, so `.WHARF-DIR` would be
                    // the marker there.
                    if wharf_core::is_reserved_name(name) {
                        return Err(VfsError::InvalidPath(format!(
                            "'{name}' is a reserved name"
                        )));
                    }
                    segments.push(name.to_owned());
                }
            }
        }
        let path = VirtualPath { segments };
        if path.byte_len() > MAX_PATH_BYTES {
            return Err(VfsError::InvalidPath("path is too long".into()));
        }
        Ok(path)
    }

    /// Resolves an absolute or home-relative path (SFTP has no working directory).
    pub fn parse(input: &str) -> Result<Self, VfsError> {
        Self::resolve(&Self::root(), input)
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The last segment; `None` for `/`.
    pub fn file_name(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }

    /// The containing directory; `None` for `/`.
    pub fn parent(&self) -> Option<VirtualPath> {
        if self.segments.is_empty() {
            return None;
        }
        Some(VirtualPath {
            segments: self.segments[..self.segments.len() - 1].to_vec(),
        })
    }

    /// This path with one more segment, which must be a single valid name.
    pub fn join(&self, name: &str) -> Result<VirtualPath, VfsError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(VfsError::InvalidPath(format!(
                "'{name}' is not a file name"
            )));
        }
        Self::resolve(self, name)
    }

    pub fn segments(&self) -> impl ExactSizeIterator<Item = &str> {
        self.segments.iter().map(String::as_str)
    }

    /// `true` if `self` is `other` or inside it.
    pub fn starts_with(&self, other: &VirtualPath) -> bool {
        self.segments.starts_with(&other.segments)
    }

    fn byte_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| s.len() + 1)
            .sum::<usize>()
            .max(1)
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for s in &self.segments {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtualPath({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        VirtualPath::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises() {
        assert_eq!(p(""), "/");
        assert_eq!(p("/"), "/");
        assert_eq!(p("."), "/");
        assert_eq!(p("a/b/"), "/a/b");
        assert_eq!(p("//a//./b"), "/a/b");
        assert_eq!(p("/a/b/../c"), "/a/c");
    }

    #[test]
    fn never_escapes_the_home() {
        assert_eq!(p(".."), "/");
        assert_eq!(p("/../.."), "/");
        assert_eq!(p("../../etc/passwd"), "/etc/passwd");
        assert_eq!(p("/a/../../../b"), "/b");
        // Encoded dots are names, not traversal.
        assert_eq!(p("%2e%2e/x"), "/%2e%2e/x");
        assert_eq!(p("..%2f..%2fetc"), "/..%2f..%2fetc");
        let cwd = VirtualPath::parse("/in").unwrap();
        assert_eq!(
            VirtualPath::resolve(&cwd, "../../../x")
                .unwrap()
                .to_string(),
            "/x"
        );
        assert_eq!(
            VirtualPath::resolve(&cwd, "y").unwrap().to_string(),
            "/in/y"
        );
    }

    #[test]
    fn rejects_hostile_input() {
        for bad in [
            "a\0b",
            "a\nb",
            "..\\..\\windows",
            "a\u{7f}",
            "/x/.wharf-dir",
            "/.wharf-uploads/x",
            // Stores that ignore case would find the marker and the journal under these.
            "/x/.WHARF-DIR",
            "/.Wharf-Uploads/x",
        ] {
            assert!(
                matches!(VirtualPath::parse(bad), Err(VfsError::InvalidPath(_))),
                "{bad:?}"
            );
        }
        let long_name = "n".repeat(MAX_NAME_BYTES + 1);
        assert!(VirtualPath::parse(&long_name).is_err());
        assert!(VirtualPath::parse(&"n".repeat(MAX_NAME_BYTES)).is_ok());
        let long_path = "/abc".repeat(MAX_PATH_BYTES / 4 + 1);
        assert!(VirtualPath::parse(&long_path).is_err());
    }

    #[test]
    fn parent_join_and_names() {
        let x = VirtualPath::parse("/a/b/c.txt").unwrap();
        assert_eq!(x.file_name(), Some("c.txt"));
        assert_eq!(x.parent().unwrap().to_string(), "/a/b");
        assert!(VirtualPath::root().parent().is_none());
        assert!(x.starts_with(&VirtualPath::parse("/a").unwrap()));
        assert!(!x.starts_with(&VirtualPath::parse("/b").unwrap()));
        assert!(VirtualPath::root().join("..").is_err());
        assert!(VirtualPath::root().join("a/b").is_err());
        assert_eq!(VirtualPath::root().join("z").unwrap().to_string(), "/z");
    }
}

#[cfg(test)]
#[path = "path_props.rs"]
mod props;
