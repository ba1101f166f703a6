//! The bodies of `/v1/buckets/{bucketName}/objects…`: the files and directories of a bucket,
//! one directory level at a time. Re-exported from [`crate::api`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Default `pageSize` of an object listing.
pub const DEFAULT_OBJECT_PAGE_SIZE: u32 = 100;
/// Largest `pageSize` of an object listing.
pub const MAX_OBJECT_PAGE_SIZE: u32 = 1000;

/// Whether a key names a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// An object with content.
    File,
    /// A directory: a key prefix, kept while empty by a hidden marker object.
    Directory,
}

/// A file or directory in a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketObject {
    /// The bucket key, without a leading `/` (`alice/in/x.edi`); a directory's key has no
    /// trailing `/` either.
    #[schema(example = "alice/in/invoice-42.edi")]
    pub key: String,
    /// The last segment of the key.
    #[schema(example = "invoice-42.edi")]
    pub name: String,
    pub kind: ObjectKind,
    /// Bytes; 0 for directories.
    pub size: u64,
    /// Absent where the store keeps none (a directory that exists only through its contents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<DateTime<Utc>>,
    /// Lowercase hex SHA-256 of the content, computed while it streamed in: only in the reply
    /// to an upload (`PUT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One page of a directory's entries, in the store's key order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList {
    pub items: Vec<BucketObject>,
    /// Pass as `pageToken` (with the same `prefix`) to get the next page; absent on the last
    /// page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}
