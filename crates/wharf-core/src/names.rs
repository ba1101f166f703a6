//! Validated names: [`Username`], [`BucketName`], the generators for usernames and passwords,
//! and the rules a password chosen by an operator follows ([`check_password`]).

use std::fmt;

use rand::RngExt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api::PASSWORD_LENGTH_RANGE;

/// Why a string is not a valid name. The message is shown to API users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(&'static str);

macro_rules! string_newtype {
    ($name:ident, $example:literal, $pattern:literal, $desc:literal) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            // `pad` honours width and alignment (`{:<12}`), so names line up in tables.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($desc))
                    .pattern(Some($pattern))
                    .examples([$example])
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A login name: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
/// Generated ones are 8 characters of [`USERNAME_ALPHABET`] (`K4XQ7T3M`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        if input.is_empty() {
            return Err(NameError("must not be empty"));
        }
        if input.len() > 64 {
            return Err(NameError("must be at most 64 characters long"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(NameError(
                "may contain only letters, digits, '.', '_' and '-'",
            ));
        }
        if !input.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(NameError("must start with a letter or a digit"));
        }
        Ok(Username(input.to_owned()))
    }
}

string_newtype!(
    Username,
    "K4XQ7T3M",
    "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    "Login name: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit. Generated ones \
     are 8 upper-case letters and digits without look-alikes (no 0, O, 1, I, 2, Z, 5, S, 8, B)."
);

/// A bucket name: 3 to 63 characters of `a-z 0-9 -`, starting and ending with a letter or digit
/// (the S3 rules, so a name is valid on every store).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketName(String);

impl BucketName {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        if input.len() < 3 || input.len() > 63 {
            return Err(NameError("must be 3 to 63 characters long"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(NameError(
                "may contain only lower-case letters, digits and '-'",
            ));
        }
        let bytes = input.as_bytes();
        if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return Err(NameError("must start and end with a letter or a digit"));
        }
        Ok(BucketName(input.to_owned()))
    }

    /// The bucket every installation has from its first start.
    pub fn default_bucket() -> Self {
        BucketName("default".to_owned())
    }
}

string_newtype!(
    BucketName,
    "default",
    "^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
    "Bucket name: 3-63 of a-z 0-9 -, starting and ending with a letter or digit."
);

/// The characters of generated usernames: upper-case letters and digits without the pairs that
/// look alike on screen or paper (0/O, 1/I, 2/Z, 5/S, 8/B), since partners read usernames off
/// e-mails and type them. 26 characters: 8 of them give about 2 × 10¹¹ names.
pub const USERNAME_ALPHABET: &str = "ACDEFGHJKLMNPQRTUVWXY34679";
// No look-alikes (0/O, 1/l/I): passwords are read off screens and typed by partners.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A new random username: 8 characters of [`USERNAME_ALPHABET`], like `K4XQ7T3M`.
pub fn generate_username() -> Username {
    let alphabet = USERNAME_ALPHABET.as_bytes();
    let mut rng = rand::rng();
    let s: String = (0..8)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect();
    Username(s)
}

/// A new random password of `length` characters (letters and digits without look-alikes:
/// about 5.8 bits each, so the 16-character default carries over 90 bits).
pub fn generate_password(length: usize) -> String {
    let mut rng = rand::rng();
    (0..length)
        .map(|_| PASSWORD_ALPHABET[rng.random_range(0..PASSWORD_ALPHABET.len())] as char)
        .collect()
}

/// Why a password an operator chose is refused. The message is shown to API users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error(
        "must be {min} to {max} characters long",
        min = PASSWORD_LENGTH_RANGE.start(),
        max = PASSWORD_LENGTH_RANGE.end()
    )]
    Length,
    #[error("must not contain control characters (such as line breaks or tabs)")]
    ControlCharacter,
    #[error("must not start or end with whitespace")]
    SurroundingWhitespace,
}

/// Checks a password an operator chose against the rules generated passwords meet: 16 to 128
/// characters, no control characters, no whitespace at either end (almost always a copy and
/// paste accident, and invisible in the form that would show it).
pub fn check_password(password: &str) -> Result<(), PasswordError> {
    let length = u32::try_from(password.chars().count()).unwrap_or(u32::MAX);
    if !PASSWORD_LENGTH_RANGE.contains(&length) {
        return Err(PasswordError::Length);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError::ControlCharacter);
    }
    if password.starts_with(char::is_whitespace) || password.ends_with(char::is_whitespace) {
        return Err(PasswordError::SurroundingWhitespace);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("WL9F11A9").is_ok());
        assert!(Username::parse("a.b_c-d").is_ok());
        for bad in ["", ".x", "-x", "a b", "a/b", "a\0", "ä", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
        for _ in 0..100 {
            let u = generate_username();
            assert_eq!(u.as_str().len(), 8);
            assert!(
                u.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            );
            assert!(Username::parse(u.as_str()).is_ok());
        }
    }

    #[test]
    fn generated_usernames_have_no_look_alike_characters() {
        for look_alike in "0O1I2Z5S8B".chars() {
            assert!(!USERNAME_ALPHABET.contains(look_alike), "{look_alike}");
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let u = generate_username();
            assert!(
                u.as_str().chars().all(|c| USERNAME_ALPHABET.contains(c)),
                "{u:?}"
            );
            seen.extend(u.as_str().chars());
        }
        // Every character of the alphabet is used (2000 × 8 draws of 26).
        assert_eq!(seen.len(), USERNAME_ALPHABET.len());
    }

    #[test]
    fn display_honours_width_and_alignment() {
        let u = Username::parse("alice").unwrap();
        assert_eq!(format!("[{u:<8}]"), "[alice   ]");
        assert_eq!(format!("[{u:>8}]"), "[   alice]");
        let b = BucketName::default_bucket();
        assert_eq!(format!("[{b:^11}]"), "[  default  ]");
    }

    #[test]
    fn chosen_passwords_follow_the_rules_of_generated_ones() {
        assert_eq!(check_password(&generate_password(16)), Ok(()));
        assert_eq!(check_password(&generate_password(128)), Ok(()));
        assert_eq!(check_password("correct horse battery staple"), Ok(()));
        assert_eq!(
            check_password(&"é".repeat(16)),
            Ok(()),
            "characters, not bytes"
        );
        for (bad, want) in [
            ("short", PasswordError::Length),
            (&"x".repeat(129) as &str, PasswordError::Length),
            (
                "a password with a\nline break",
                PasswordError::ControlCharacter,
            ),
            (
                "a password with a\ttab in it",
                PasswordError::ControlCharacter,
            ),
            (
                " leading space password",
                PasswordError::SurroundingWhitespace,
            ),
            (
                "trailing space password ",
                PasswordError::SurroundingWhitespace,
            ),
        ] {
            assert_eq!(check_password(bad), Err(want), "{bad:?}");
        }
        assert_eq!(
            PasswordError::Length.to_string(),
            "must be 16 to 128 characters long"
        );
    }

    #[test]
    fn passwords_are_random_and_sized() {
        let a = generate_password(16);
        let b = generate_password(16);
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert_eq!(generate_password(128).len(), 128);
    }

    #[test]
    fn bucket_names() {
        assert!(BucketName::parse("default").is_ok());
        assert!(BucketName::parse("acme-2024").is_ok());
        for bad in ["ab", "-abc", "abc-", "ABC", "a_b", "a.b", &"a".repeat(64)] {
            assert!(BucketName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
