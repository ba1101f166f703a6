//! [`HomeDirectory`]: the part of a bucket a user is jailed to.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest home directory accepted, in bytes (UTF-8).
pub const MAX_HOME_DIRECTORY_BYTES: usize = 1024;

/// Why a string is not a valid home directory. The message is shown to API users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HomeDirectoryError {
    #[error("must not be empty")]
    Empty,
    #[error("must be an absolute path starting with '/'")]
    Relative,
    #[error("must be at most {MAX_HOME_DIRECTORY_BYTES} bytes long")]
    TooLong,
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("must not contain backslashes; use '/' to separate directories")]
    Backslash,
    #[error("must not contain '.' or '..' segments")]
    DotSegment,
    #[error("must not contain empty segments ('//')")]
    EmptySegment,
    #[error("segment is longer than 255 bytes")]
    SegmentTooLong,
}

/// An absolute, normalised directory inside a bucket, such as `/` or `/partners/acme/inbound`.
///
/// Invariants (checked by [`HomeDirectory::parse`]): starts with `/`, no trailing `/` except for
/// the root, no empty, `.` or `..` segments, no control characters or backslashes, at most
/// [`MAX_HOME_DIRECTORY_BYTES`] bytes. A user whose home is `/` is a root user.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HomeDirectory(String);

impl HomeDirectory {
    /// The bucket root.
    pub fn root() -> Self {
        HomeDirectory("/".to_owned())
    }

    /// Parses and validates a home directory. A single trailing `/` is accepted and dropped.
    pub fn parse(input: &str) -> Result<Self, HomeDirectoryError> {
        if input.is_empty() {
            return Err(HomeDirectoryError::Empty);
        }
        if input.len() > MAX_HOME_DIRECTORY_BYTES {
            return Err(HomeDirectoryError::TooLong);
        }
        if input.chars().any(char::is_control) {
            return Err(HomeDirectoryError::ControlCharacter);
        }
        if input.contains('\\') {
            return Err(HomeDirectoryError::Backslash);
        }
        let Some(rest) = input.strip_prefix('/') else {
            return Err(HomeDirectoryError::Relative);
        };
        // One trailing '/' is accepted ("/alice/"); "//" is an empty segment, not the root.
        let rest = if rest.len() > 1 {
            rest.strip_suffix('/').unwrap_or(rest)
        } else {
            rest
        };
        if rest.is_empty() {
            return Ok(Self::root());
        }
        for segment in rest.split('/') {
            match segment {
                "" => return Err(HomeDirectoryError::EmptySegment),
                "." | ".." => return Err(HomeDirectoryError::DotSegment),
                s if s.len() > 255 => return Err(HomeDirectoryError::SegmentTooLong),
                _ => {}
            }
        }
        Ok(HomeDirectory(format!("/{rest}")))
    }

    /// `true` for `/`: the user sees the whole bucket.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The path as shown to operators, always starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments below the bucket root (empty for the root).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }
}

impl fmt::Display for HomeDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HomeDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HomeDirectory({:?})", self.0)
    }
}

impl Serialize for HomeDirectory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HomeDirectory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HomeDirectory::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for HomeDirectory {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "Absolute, '/'-separated directory inside the bucket; no '.' or '..' segments, \
                 no control characters, at most 1024 bytes. '/' makes a root user.",
            ))
            .max_length(Some(MAX_HOME_DIRECTORY_BYTES))
            .examples(["/alice"])
            .into()
    }
}

impl utoipa::ToSchema for HomeDirectory {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(HomeDirectory::parse("/").unwrap().as_str(), "/");
        assert!(HomeDirectory::parse("/").unwrap().is_root());
        assert_eq!(HomeDirectory::parse("/alice/").unwrap().as_str(), "/alice");
        let nested = HomeDirectory::parse("/partners/acme/inbound").unwrap();
        assert_eq!(
            nested.segments().collect::<Vec<_>>(),
            ["partners", "acme", "inbound"]
        );
        assert_eq!(HomeDirectory::root().segments().count(), 0);
        assert!(HomeDirectory::parse("/with space/ünïcode").is_ok());
    }

    #[test]
    fn rejects_bad_input() {
        use HomeDirectoryError::*;
        let cases: &[(&str, HomeDirectoryError)] = &[
            ("", Empty),
            ("alice", Relative),
            ("/a/../b", DotSegment),
            ("/..", DotSegment),
            ("/a/./b", DotSegment),
            ("/a//b", EmptySegment),
            ("//", EmptySegment),
            ("/a\0b", ControlCharacter),
            ("/a\nb", ControlCharacter),
            ("/a\\b", Backslash),
        ];
        for (input, want) in cases {
            assert_eq!(HomeDirectory::parse(input).unwrap_err(), *want, "{input:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_HOME_DIRECTORY_BYTES));
        assert_eq!(HomeDirectory::parse(&long).unwrap_err(), TooLong);
        let long_segment = format!("/{}", "a".repeat(256));
        assert_eq!(
            HomeDirectory::parse(&long_segment).unwrap_err(),
            SegmentTooLong
        );
    }

    #[test]
    fn serde_validates() {
        let h: HomeDirectory = serde_json::from_str("\"/bob\"").unwrap();
        assert_eq!(h.as_str(), "/bob");
        assert!(serde_json::from_str::<HomeDirectory>("\"../x\"").is_err());
        assert_eq!(serde_json::to_string(&h).unwrap(), "\"/bob\"");
    }
}
