//! [`HomeDirectory`]: the part of a bucket a user is jailed to, and the names Wharf reserves
//! inside buckets ([`DIRECTORY_MARKER`], [`UPLOAD_JOURNAL`]).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest home directory accepted, in bytes (UTF-8).
pub const MAX_HOME_DIRECTORY_BYTES: usize = 1024;

/// Name of the hidden object that marks a directory on stores that have no directories.
/// It never appears in listings and cannot be addressed by users.
pub const DIRECTORY_MARKER: &str = ".wharf-dir";

/// The reserved directory at the bucket root that holds the notes of multipart uploads in
/// progress. Like the directory marker, users can neither see nor name it.
pub const UPLOAD_JOURNAL: &str = ".wharf-uploads";

/// Every name Wharf reserves inside a bucket.
pub const RESERVED_NAMES: [&str; 2] = [DIRECTORY_MARKER, UPLOAD_JOURNAL];

/// Whether `segment` is one of [`RESERVED_NAMES`] in any letter case. Case is ignored because
/// some stores and file systems do (a home `/.WHARF-DIR` could hide a partner's files there).
pub fn is_reserved_name(segment: &str) -> bool {
    RESERVED_NAMES
        .iter()
        .any(|name| segment.eq_ignore_ascii_case(name))
}

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
    #[error(
        "must not contain a segment named '{0}': '.wharf-dir' and '.wharf-uploads' (in any \
         letter case) are reserved by Wharf and hidden from every listing"
    )]
    ReservedName(String),
}

/// An absolute, normalised directory inside a bucket, such as `/` or `/partners/acme/inbound`.
///
/// Invariants (checked by [`HomeDirectory::parse`]): starts with `/`, no trailing `/` except for
/// the root, no empty, `.` or `..` segments, no control characters or backslashes, no segment
/// that is a reserved name ([`is_reserved_name`]), at most [`MAX_HOME_DIRECTORY_BYTES`] bytes.
/// A user whose home is `/` is a root user.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HomeDirectory(String);

impl HomeDirectory {
    /// The bucket root.
    pub fn root() -> Self {
        HomeDirectory("/".to_owned())
    }

    /// Parses and validates a home directory. A single trailing `/` is accepted and dropped.
    pub fn parse(input: &str) -> Result<Self, HomeDirectoryError> {
        let home = Self::parse_existing(input)?;
        if let Some(reserved) = home.segments().find(|s| is_reserved_name(s)) {
            return Err(HomeDirectoryError::ReservedName(reserved.to_owned()));
        }
        Ok(home)
    }

    /// [`HomeDirectory::parse`] without the reserved-name rule, for homes that exist already
    /// (read from the database, or from the API's replies): users created before the rule
    /// must still be listed, logged in and changed. Never use it on new input.
    pub fn parse_existing(input: &str) -> Result<Self, HomeDirectoryError> {
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
    // `pad` honours width and alignment (`{:<24}`), so homes line up in tables.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
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

/// Reads a home that exists already ([`HomeDirectory::parse_existing`]): replies and login
/// grants may carry one stored before the reserved-name rule. Request bodies that set a home
/// use [`HomeDirectory::deserialize_new`] instead, which applies every rule.
impl<'de> Deserialize<'de> for HomeDirectory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HomeDirectory::parse_existing(&s).map_err(serde::de::Error::custom)
    }
}

impl HomeDirectory {
    /// Deserializes a home being set (`#[serde(deserialize_with = "…")]` on request fields)
    /// with [`HomeDirectory::parse`], so a bad one is refused where the body is read, naming
    /// its field.
    pub fn deserialize_new<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HomeDirectory::parse(&s).map_err(serde::de::Error::custom)
    }

    /// [`HomeDirectory::deserialize_new`] for an optional field (`null` is `None`).
    pub fn deserialize_new_option<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Self>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| HomeDirectory::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl utoipa::PartialSchema for HomeDirectory {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "Absolute, '/'-separated directory inside the bucket; no '.' or '..' segments, \
                 no control characters, no segment named '.wharf-dir' or '.wharf-uploads' (in \
                 any letter case: Wharf reserves them), at most 1024 bytes. '/' makes a root \
                 user.",
            ))
            .max_length(Some(MAX_HOME_DIRECTORY_BYTES))
            .pattern(Some(r"^/[^\u0000-\u001F\u007F-\u009F\\]*$"))
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
    fn reserved_names_are_refused_in_any_case_and_position() {
        for input in [
            "/.wharf-dir",
            "/.wharf-uploads",
            "/alice/.WHARF-DIR",
            "/.Wharf-Uploads/in",
            "/a/.wharf-dir/b/",
        ] {
            assert!(
                matches!(
                    HomeDirectory::parse(input),
                    Err(HomeDirectoryError::ReservedName(_))
                ),
                "{input:?} was accepted"
            );
            assert!(HomeDirectory::parse_existing(input).is_ok(), "{input:?}");
        }
        let error = HomeDirectory::parse("/a/.WHARF-DIR").unwrap_err();
        assert!(error.to_string().contains("'.WHARF-DIR'"), "{error}");
        // Names that only look alike are ordinary names.
        for input in ["/.wharf-dirs", "/wharf-dir", "/.wharf", "/x.wharf-uploads"] {
            assert!(HomeDirectory::parse(input).is_ok(), "{input:?}");
        }
        // What exists is read as it is; what is being set is refused.
        let existing: HomeDirectory = serde_json::from_str("\"/in/.wharf-uploads\"").unwrap();
        assert_eq!(existing.as_str(), "/in/.wharf-uploads");
        #[derive(Debug, serde::Deserialize)]
        struct Setting {
            #[serde(deserialize_with = "HomeDirectory::deserialize_new")]
            _home: HomeDirectory,
        }
        let refused = serde_json::from_str::<Setting>(r#"{"_home":"/in/.wharf-uploads"}"#);
        assert!(refused.unwrap_err().to_string().contains("reserved"));
        assert!(serde_json::from_str::<Setting>(r#"{"_home":"/in"}"#).is_ok());
    }

    #[test]
    fn display_honours_width_and_alignment() {
        let home = HomeDirectory::parse("/alice").unwrap();
        assert_eq!(format!("[{home:<8}]"), "[/alice  ]");
        assert_eq!(format!("[{home:>8}]"), "[  /alice]");
        assert_eq!(format!("[{home}]"), "[/alice]");
    }

    #[test]
    fn serde_validates() {
        let h: HomeDirectory = serde_json::from_str("\"/bob\"").unwrap();
        assert_eq!(h.as_str(), "/bob");
        assert!(serde_json::from_str::<HomeDirectory>("\"../x\"").is_err());
        assert_eq!(serde_json::to_string(&h).unwrap(), "\"/bob\"");
    }
}
