//! Request and response bodies of the REST API (`/v1`), shared by the control plane (which
//! serves them and derives the OpenAPI document from them) and the client crate (which sends
//! them), so the two cannot drift apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{BucketName, HomeDirectory, Permissions, Username};

mod bans;
mod objects;
mod webhooks;

pub use bans::{Ban, BanKind, BanList};

pub use objects::{
    BucketObject, DEFAULT_OBJECT_PAGE_SIZE, MAX_OBJECT_PAGE_SIZE, ObjectKind, ObjectList,
};
pub use webhooks::{
    CreateWebhookRequest, CreatedWebhook, Delivery, DeliveryAttempt, DeliveryList, DeliveryState,
    EventList, UpdateWebhookRequest, Webhook, WebhookFilter, WebhookList,
};

/// Shortest and longest password Wharf sets, generated or chosen (see
/// [`crate::check_password`]), in characters.
pub const PASSWORD_LENGTH_RANGE: std::ops::RangeInclusive<u32> = 16..=128;
/// Length of a generated password when none is asked for.
pub const DEFAULT_PASSWORD_LENGTH: u32 = 16;
/// Concurrent sessions a user may have when none is configured.
pub const DEFAULT_MAX_SESSIONS: u32 = 10;
/// Allowed values of a user's `maxSessions`.
pub const MAX_SESSIONS_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;

/// Where problem `type` URIs live; each kind of problem is a stable slug under it.
pub const PROBLEM_TYPE_BASE: &str = "https://wharf.dev/problems/";
/// The slug of the 403 problem `POST /internal/v1/login` answers for
/// [`crate::LoginError::PasswordDisabled`] (the other refusals are `login-denied`).
pub const PASSWORD_DISABLED_PROBLEM: &str = "password-disabled";
/// The slug of the 429 problem `POST /internal/v1/login` answers for
/// [`crate::LoginError::AddressBanned`] (with `Retry-After`).
pub const ADDRESS_BANNED_PROBLEM: &str = "address-banned";
/// The slug of the 429 problem `POST /internal/v1/login` answers for
/// [`crate::LoginError::UserBanned`] (with `Retry-After`).
pub const USER_BANNED_PROBLEM: &str = "user-banned";

/// How to generate a password.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordOptions {
    /// Length of the generated password, 16 to 128 (default 16).
    #[schema(minimum = 16, maximum = 128)]
    pub length: Option<u32>,
}

/// `POST /v1/users`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserRequest {
    /// What this user is for, e.g. "Trading partner Alice". Not empty, at most 1024 characters.
    pub description: String,
    /// The user's home directory; created if missing. `/` makes a root user.
    #[serde(deserialize_with = "HomeDirectory::deserialize_new")]
    pub home_directory: HomeDirectory,
    /// Login name; generated (8 upper-case letters and digits) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<Username>,
    /// Bucket the home directory is in; the default bucket when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<BucketName>,
    /// How to generate the password; not together with `password`.
    #[serde(
        default,
        deserialize_with = "object_only",
        skip_serializing_if = "Option::is_none"
    )]
    pub password_options: Option<PasswordOptions>,
    /// A password chosen by the operator instead of a generated one (e.g. to keep a partner's
    /// password when moving from another server): 16 to 128 characters, no control
    /// characters, no whitespace at either end. Only its hash is stored; it is never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 16, max_length = 128)]
    pub password: Option<String>,
    /// Whether the user may log in with a password (default `true`). With `false` only public
    /// keys log in, over SFTP; FTPS has no keys, so such a user cannot use FTPS. A user without
    /// password login and without keys cannot log in until a key is added. A password is set
    /// all the same (and returned), for when password login is turned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_enabled: Option<bool>,
    /// OpenSSH public key lines accepted for this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_keys: Option<Vec<String>>,
    /// Default `read-write`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
    /// Most concurrent sessions (connections) of this user, 1 to 1000 (default 10). Each
    /// gateway process enforces it on its own connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_sessions: Option<u32>,
}

/// `PATCH /v1/users/{username}`: only the fields present change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A new home directory; created if missing. Files in the old one stay where they are.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "HomeDirectory::deserialize_new_option"
    )]
    pub home_directory: Option<HomeDirectory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
    /// Replaces the whole list of public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_keys: Option<Vec<String>>,
    /// A disabled user cannot log in; its sessions are refused from the next login on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// `false`: only public keys log in (SFTP); the password is kept and works again once
    /// this is `true`. Applies from the next login on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_enabled: Option<bool>,
    /// Most concurrent sessions, 1 to 1000; applies from the next login on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_sessions: Option<u32>,
}

/// A user as the API shows it. The password is never shown here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub username: Username,
    pub description: String,
    pub home_directory: HomeDirectory,
    pub bucket_name: BucketName,
    /// Host name partners connect to.
    pub endpoint: String,
    pub permissions: Permissions,
    pub public_keys: Vec<String>,
    pub disabled: bool,
    /// Whether the user may log in with a password; `false`: public keys only (SFTP).
    /// Absent in replies of servers older than this field, which means `true`.
    #[serde(default = "enabled")]
    #[schema(required = true)]
    pub password_enabled: bool,
    /// Most concurrent sessions (connections) of this user; a login beyond it is refused.
    /// Counted per gateway process.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_sessions: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Last successful login over any protocol; `null` until the first one.
    #[serde(default)]
    #[schema(required = true)]
    pub last_connected_at: Option<DateTime<Utc>>,
}

fn enabled() -> bool {
    true
}

/// `201` reply to `POST /v1/users`: the user plus its password, shown this once only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedUser {
    /// The password (generated, or the one given). Only its hash is stored: it cannot be
    /// shown again.
    pub password: String,
    #[serde(flatten)]
    pub user: User,
}

/// One page of users.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserList {
    pub items: Vec<User>,
    /// Pass as `pageToken` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `POST /v1/users/{username}/password` body (optional).
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// How to generate the new password; not together with `password`.
    #[serde(
        default,
        deserialize_with = "object_only",
        skip_serializing_if = "Option::is_none"
    )]
    pub password_options: Option<PasswordOptions>,
    /// The new password, chosen by the operator instead of a generated one: 16 to 128
    /// characters, no control characters, no whitespace at either end. Does not change
    /// `passwordEnabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 16, max_length = 128)]
    pub password: Option<String>,
}

// The requests may carry a password: Debug (and so any log line) shows only whether one is
// there.
impl std::fmt::Debug for CreateUserRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUserRequest")
            .field("description", &self.description)
            .field("home_directory", &self.home_directory)
            .field("username", &self.username)
            .field("bucket_name", &self.bucket_name)
            .field("password_options", &self.password_options)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_enabled", &self.password_enabled)
            .field("public_keys", &self.public_keys)
            .field("permissions", &self.permissions)
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
}

impl std::fmt::Debug for ResetPasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetPasswordRequest")
            .field("password_options", &self.password_options)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A new password (generated, or the one given), shown this once only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewPassword {
    pub password: String,
}

/// A bucket: where users' home directories live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub bucket_name: BucketName,
    /// The storage URL without credentials (`file:///…`, `s3://…`, …).
    pub storage_url: String,
    /// Users created without a `bucketName` go here.
    pub is_default: bool,
    /// The names of the bucket's storage options (their values may be credentials and are
    /// never shown).
    #[serde(default)]
    pub option_keys: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// Most storage options one bucket may have.
pub const MAX_BUCKET_OPTIONS: usize = 64;

/// `POST /v1/buckets`: register a bucket that already exists in its object store.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBucketRequest {
    /// The bucket's name in Wharf (users refer to it as `bucketName`).
    pub bucket_name: BucketName,
    /// Where its objects live: `file:///absolute/dir`, `s3://bucket[/prefix]`,
    /// `gs://bucket[/prefix]` or `az://container[/prefix]` (also `abfs://`, `azure://`). The
    /// bucket (container) must exist: Wharf lists it once before recording it.
    #[schema(example = "s3://acme-partners/wharf")]
    pub storage_url: String,
    /// object_store configuration keys and values, e.g. `aws_endpoint`,
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_region`,
    /// `azure_storage_account_name`, `azure_storage_access_key`, `azure_storage_use_emulator`,
    /// `google_service_account`. Settings missing here come from the server's environment
    /// (`AWS_*`, `AZURE_*`, `GOOGLE_*`). Values are stored and never shown again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<std::collections::BTreeMap<String, String>>,
}

impl std::fmt::Debug for CreateBucketRequest {
    // Option values may be credentials: never log them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateBucketRequest")
            .field("bucket_name", &self.bucket_name)
            .field(
                "options",
                &self.options.as_ref().map(|o| o.keys().collect::<Vec<_>>()),
            )
            .finish_non_exhaustive()
    }
}

/// The list of buckets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketList {
    pub items: Vec<Bucket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A host key partners will see, to check on first connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostKey {
    /// e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// `GET /v1/server`: how partners reach this installation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub version: String,
    /// Host name partners connect to.
    pub endpoint: String,
    pub sftp_port: u16,
    pub ftps_port: u16,
    pub ftps_implicit_port: u16,
    pub host_keys: Vec<HostKey>,
    /// SHA-256 fingerprint of the FTPS certificate, in the form `openssl x509 -noout
    /// -fingerprint -sha256` prints (`AB:CD:…`, 32 bytes), for partners to compare with what
    /// their client shows. `null` when this control plane cannot read the certificate.
    #[serde(default)]
    #[schema(required = true, example = "3F:0A:…:9C")]
    pub ftps_certificate_sha256: Option<String>,
}

/// One offending field in a problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    /// JSON path of the field (`homeDirectory`, `passwordOptions.length`, `publicKeys[1]`).
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A stable URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// Equal to the HTTP status.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The offending fields, when the request body or query was at fault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Reads an optional nested object from a JSON object only: serde would read a struct from an
/// array too (`"filter": [null, null]`). The map is handed on as it comes, so errors still name
/// the nested field (`passwordOptions.length`).
pub(crate) fn object_only<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    use std::marker::PhantomData;

    use serde::de::value::MapAccessDeserializer;
    use serde::de::{MapAccess, Visitor};

    struct Object<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }
    struct OptionalObject<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for OptionalObject<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object or null")
        }
        fn visit_none<E>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            d.deserialize_map(Object(PhantomData)).map(Some)
        }
    }
    deserializer.deserialize_option(OptionalObject(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_user_rejects_unknown_fields_and_bad_home() {
        let ok: CreateUserRequest =
            serde_json::from_str(r#"{"description":"A","homeDirectory":"/a"}"#).unwrap();
        assert_eq!(ok.home_directory.as_str(), "/a");
        assert!(
            serde_json::from_str::<CreateUserRequest>(
                r#"{"description":"A","homeDirectory":"/a","bogus":1}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<CreateUserRequest>(
                r#"{"description":"A","homeDirectory":"/a/../b"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn requests_refuse_reserved_homes_and_replies_read_them() {
        let create = r#"{"description":"A","homeDirectory":"/a/.WHARF-DIR"}"#;
        let error = serde_json::from_str::<CreateUserRequest>(create).unwrap_err();
        assert!(error.to_string().contains("reserved"), "{error}");
        let update = r#"{"homeDirectory":"/.wharf-uploads"}"#;
        assert!(serde_json::from_str::<UpdateUserRequest>(update).is_err());
        let none: UpdateUserRequest = serde_json::from_str(r#"{"homeDirectory":null}"#).unwrap();
        assert!(none.home_directory.is_none());
        let absent: UpdateUserRequest = serde_json::from_str("{}").unwrap();
        assert!(absent.home_directory.is_none());
        let set: UpdateUserRequest = serde_json::from_str(r#"{"homeDirectory":"/b/"}"#).unwrap();
        assert_eq!(set.home_directory.unwrap().as_str(), "/b");
        // A user stored before the rule still reads (the console and the CLI list it).
        let user: User = serde_json::from_value(serde_json::json!({
            "username": "old", "description": "d", "homeDirectory": "/.wharf-dir",
            "bucketName": "default", "endpoint": "localhost", "permissions": "read-write",
            "publicKeys": [], "disabled": false, "maxSessions": 10,
            "createdAt": "2026-11-28T12:00:00Z", "updatedAt": "2026-11-28T12:00:00Z",
        }))
        .unwrap();
        assert_eq!(user.home_directory.as_str(), "/.wharf-dir");
    }

    #[test]
    fn created_user_flattens() {
        let now = Utc::now();
        let created = CreatedUser {
            password: "secret".into(),
            user: User {
                username: Username::parse("WL9F11A9").unwrap(),
                description: "d".into(),
                home_directory: HomeDirectory::parse("/a").unwrap(),
                bucket_name: BucketName::default_bucket(),
                endpoint: "localhost".into(),
                permissions: Permissions::ReadWrite,
                public_keys: vec![],
                disabled: false,
                password_enabled: true,
                max_sessions: DEFAULT_MAX_SESSIONS,
                created_at: now,
                updated_at: now,
                last_connected_at: None,
            },
        };
        let v = serde_json::to_value(&created).unwrap();
        assert_eq!(v["password"], "secret");
        assert_eq!(v["username"], "WL9F11A9");
        assert_eq!(v["homeDirectory"], "/a");
        assert!(v["lastConnectedAt"].is_null() && v.get("lastConnectedAt").is_some());
        assert_eq!(v["maxSessions"], 10);
        assert_eq!(v["passwordEnabled"], true);
    }

    #[test]
    fn a_user_from_an_older_server_has_password_login() {
        let v = serde_json::json!({
            "username": "alice", "description": "d", "homeDirectory": "/a",
            "bucketName": "default", "endpoint": "localhost", "permissions": "read-write",
            "publicKeys": [], "disabled": false, "maxSessions": 10,
            "createdAt": "2026-11-28T12:00:00Z", "updatedAt": "2026-11-28T12:00:00Z",
        });
        let user: User = serde_json::from_value(v).unwrap();
        assert!(user.password_enabled);
        assert_eq!(user.last_connected_at, None);
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let create: CreateUserRequest = serde_json::from_str(
            r#"{"description":"A","homeDirectory":"/a","password":"s3cret-s3cret-s3cret"}"#,
        )
        .unwrap();
        let reset: ResetPasswordRequest =
            serde_json::from_str(r#"{"password":"s3cret-s3cret-s3cret"}"#).unwrap();
        for debug in [format!("{create:?}"), format!("{reset:?}")] {
            assert!(!debug.contains("s3cret"), "{debug}");
            assert!(debug.contains("<redacted>"), "{debug}");
        }
    }
}
