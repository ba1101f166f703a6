//! `/v1/buckets/{bucketName}/objects…`: the files and directories of a bucket, listed,
//! downloaded, uploaded and deleted by the operator.
//!
//! Every operation goes through a [`Vfs`] on the bucket, rooted at `/` with read-write
//! permissions, exactly as an SFTP or FTPS session of a root user would: the same key
//! mapping, the same checks on names, the same atomic uploads (visible only once complete, a
//! cut connection leaves the previous version) and the same events, with `protocol: "api"`.
//! Bodies are streamed both ways: a transfer of any size holds a few MiB at most.
//!
//! Who the events name: the API acts for the operator, not for a partner, so events carry the
//! reserved username [`API_USERNAME`] (`wharf-api`), `protocol: "api"`, the caller's address
//! as `clientIp` (when the server knows it) and the request id (`x-request-id`) as
//! `sessionId`.

use std::net::SocketAddr;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wharf_core::api::{
    BucketObject, DEFAULT_OBJECT_PAGE_SIZE, FieldError, MAX_OBJECT_PAGE_SIZE, ObjectKind,
    ObjectList, Problem,
};
use wharf_core::{BucketName, HomeDirectory, Permissions, Protocol, Username};
use wharf_vfs::{
    CreateOptions, Download, Entry, EntryKind, SessionIdentity, Vfs, VfsError, VirtualPath,
};

use super::SharedState;
use super::error::ApiError;
use super::extract::{BucketPath, bad_page_token, page_size};

/// The username in the events of changes made through this API (see the module
/// documentation). A valid [`Username`], so events keep their shape; partners' events carry
/// `sftp` or `ftps` as their protocol, never `api`.
pub const API_USERNAME: &str = "wharf-api";

/// Bytes read from the store per chunk of a download's body.
const DOWNLOAD_CHUNK: u32 = 1024 * 1024;

/// How long an upload may go without receiving a byte before it is aborted, so a stalled
/// client does not hold an upload (and its buffered part) open forever.
pub const UPLOAD_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Most entries a recursive delete removes (files and directories); a bigger tree is refused
/// before anything is deleted.
pub const MAX_RECURSIVE_DELETE: usize = 10_000;

/// Deletes running at once during a recursive delete.
const DELETE_CONCURRENCY: usize = 8;

/// The routes of this module, with their OpenAPI documentation. The object routes take the key
/// as a wildcard (`{*key}`, so it may contain `/`), which OpenAPI cannot express: they are
/// routed here and documented as `{key}`.
pub fn routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::with_openapi(ObjectRoutes::openapi())
        .routes(routes!(list_objects))
        .route(
            "/v1/buckets/{bucketName}/objects/{*key}",
            // The body of an upload is streamed to the store, never held: no size limit. The
            // innermost `DefaultBodyLimit` wins over the router-wide one.
            axum::routing::put(put_object)
                .layer(DefaultBodyLimit::disable())
                .get(get_object)
                .delete(delete_object),
        )
}

#[derive(OpenApi)]
#[openapi(paths(get_object, put_object, delete_object))]
struct ObjectRoutes;

/// An object's raw content in the OpenAPI document (`type: string, format: binary`).
struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

/// Who is calling, for the events: the client's address and the request id.
pub struct Caller {
    client_ip: String,
    request_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Present when the server was started with connect info; not trusted from headers.
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        // Set by the router when the client sent none; a client's own is kept when it is a
        // plausible id (it lands in events).
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|id| {
                !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
            })
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(Caller {
            client_ip,
            request_id,
        })
    }
}

/// The `{bucketName}` and `{*key}` path parameters (the key percent-decoded, not yet checked).
pub struct ObjectPath {
    bucket: BucketName,
    key: String,
}

#[derive(Deserialize)]
struct ObjectPathParams {
    #[serde(rename = "bucketName")]
    bucket_name: String,
    key: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ObjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<ObjectPathParams>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::invalid_field("key", format!("cannot be read: {}", e.body_text().trim()))
            })?;
        let bucket = BucketName::parse(&params.bucket_name)
            .map_err(|_| ApiError::NotFound("no such bucket".into()))?;
        Ok(ObjectPath {
            bucket,
            key: params.key,
        })
    }
}

/// A key (or prefix) of the API checked and turned into the path the VFS takes. Refused with
/// a 400 naming `field`: an empty key, a leading `/`, empty segments (`a//b`), `.` and `..`
/// segments, and whatever [`VirtualPath`] refuses (control characters, backslashes, the
/// reserved names `.wharf-dir` and `.wharf-uploads`, names over 255 bytes, keys over 4096
/// bytes). Nothing is normalised: a key names one object or is refused.
///
/// Returns the path and whether the key ended with `/` (a directory).
fn parse_key(field: &'static str, raw: &str) -> Result<(VirtualPath, bool), ApiError> {
    let bad = |message: &str| ApiError::invalid_field(field, message);
    if raw.len() > wharf_vfs::MAX_PATH_BYTES {
        return Err(bad(&format!(
            "must be at most {} bytes long",
            wharf_vfs::MAX_PATH_BYTES
        )));
    }
    let (body, directory) = match raw.strip_suffix('/') {
        Some(body) => (body, true),
        None => (raw, false),
    };
    if body.is_empty() {
        return Err(bad("must not be empty"));
    }
    if body.starts_with('/') {
        return Err(bad(
            "must not start with '/': bucket keys are relative to the bucket (alice/in/x.edi)",
        ));
    }
    for segment in body.split('/') {
        match segment {
            "" => return Err(bad("must not contain empty segments ('//')")),
            "." | ".." => return Err(bad("must not contain '.' or '..' segments")),
            _ => {}
        }
    }
    let path = VirtualPath::parse(body).map_err(|e| match e {
        VfsError::InvalidPath(message) => bad(&message),
        other => bad(&other.to_string()),
    })?;
    Ok((path, directory))
}

/// The bucket key of `path` (no leading `/`).
fn key_of(path: &VirtualPath) -> String {
    path.segments().collect::<Vec<_>>().join("/")
}

/// A session on the bucket `name` for this request: root, read-write, reporting events.
async fn bucket_vfs(
    state: &SharedState,
    name: &BucketName,
    caller: &Caller,
) -> Result<Vfs, ApiError> {
    let record = state
        .store
        .get_bucket(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no bucket named '{name}'")))?;
    let opened = state.stores.bucket(&record.storage()).map_err(|e| {
        tracing::warn!(bucket = %name, error = %e, "cannot open a bucket for the objects API");
        ApiError::StorageUnavailable(format!(
            "the storage of bucket '{name}' cannot be opened: {e}"
        ))
    })?;
    let identity = SessionIdentity {
        username: Username::parse(API_USERNAME).expect("the API's username is valid"),
        protocol: Protocol::Api,
        client_ip: caller.client_ip.clone(),
        session_id: caller.request_id.clone(),
    };
    let sink: std::sync::Arc<dyn wharf_core::EventSink> = state.events.clone();
    Ok(Vfs::on_bucket(
        &opened,
        HomeDirectory::root(),
        Permissions::ReadWrite,
        identity,
    )
    .with_events(name.clone(), sink))
}

/// A VFS failure on `key` as a problem: never a 500 for storage trouble.
fn vfs_error(error: VfsError, bucket: &BucketName, key: &str) -> ApiError {
    match error {
        VfsError::NotFound => ApiError::NotFound(format!("no object '{key}' in bucket '{bucket}'")),
        VfsError::AlreadyExists => {
            ApiError::Conflict(format!("'{key}' exists already in bucket '{bucket}'"))
        }
        VfsError::PermissionDenied(why) => ApiError::Forbidden(why.to_owned()),
        VfsError::NotADirectory => ApiError::Conflict(format!(
            "a file is in the way: a directory in '{key}' is a file in bucket '{bucket}'"
        )),
        VfsError::IsADirectory => {
            ApiError::Conflict(format!("'{key}' is a directory in bucket '{bucket}'"))
        }
        VfsError::DirectoryNotEmpty => ApiError::Conflict(format!(
            "directory '{key}' is not empty; delete its contents first, or pass recursive=true"
        )),
        VfsError::InvalidPath(message) => ApiError::invalid_field("key", message),
        VfsError::Unsupported(message) => ApiError::Validation(vec![FieldError {
            field: "key".into(),
            message,
        }]),
        VfsError::Busy(message) => ApiError::ServiceUnavailable(message),
        VfsError::Storage(e) => {
            tracing::warn!(%bucket, %key, error = %e, "storage failed in the objects API");
            ApiError::StorageFailed(format!(
                "the storage of bucket '{bucket}' failed: {e}; try again"
            ))
        }
        VfsError::Config(message) => ApiError::StorageUnavailable(format!(
            "the storage of bucket '{bucket}' cannot be used: {message}"
        )),
    }
}

fn object_view(key: String, entry: &Entry, sha256: Option<String>) -> BucketObject {
    BucketObject {
        name: entry.name.clone(),
        key,
        kind: match entry.kind {
            EntryKind::File => ObjectKind::File,
            EntryKind::Directory => ObjectKind::Directory,
        },
        size: entry.size,
        last_modified: entry.modified,
        sha256,
    }
}

/// The query of `GET …/objects`, for the OpenAPI document; [`ListQuery::parse`] reads it by
/// hand so that a bad value is a 400 naming the parameter.
#[derive(Deserialize, IntoParams)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListObjectsParams {
    /// The directory to list, as a key (`alice/in` or `alice/in/`); empty (or absent) for the
    /// bucket root.
    pub prefix: Option<String>,
    /// `nextPageToken` of the previous page (of the same `prefix`).
    pub page_token: Option<String>,
    /// Entries per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub page_size: Option<u32>,
}

/// The parsed query: directory, cursor, page size.
struct ListQuery {
    prefix: VirtualPath,
    cursor: Option<String>,
    page_size: u32,
}

impl ListQuery {
    /// Parsed by hand so that a bad value is a 400 naming the parameter.
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut parsed = ListQuery {
            prefix: VirtualPath::root(),
            cursor: None,
            page_size: DEFAULT_OBJECT_PAGE_SIZE,
        };
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*name {
                "prefix" if value.is_empty() || value == "/" => parsed.prefix = VirtualPath::root(),
                "prefix" => parsed.prefix = parse_key("prefix", &value)?.0,
                "pageSize" => {
                    parsed.page_size = page_size(&value, MAX_OBJECT_PAGE_SIZE)?;
                }
                "pageToken" if value.is_empty() => parsed.cursor = None,
                "pageToken" => {
                    let cursor = URL_SAFE_NO_PAD
                        .decode(&*value)
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .filter(|c| !c.is_empty())
                        .ok_or_else(bad_page_token)?;
                    parsed.cursor = Some(cursor);
                }
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// List objects
///
/// The files and directories directly in the directory `prefix` (one level, like `ls`), in
/// the store's key order, which is stable: pass `nextPageToken` as `pageToken` (with the same
/// `prefix`) for the next page. No `nextPageToken` means the last page. Each page is read from
/// the store when it is asked for, so directories of any size are listed in bounded memory;
/// entries added or removed meanwhile appear or not depending on where they sort, but none
/// appears twice.
#[utoipa::path(
    get,
    path = "/v1/buckets/{bucketName}/objects",
    tag = "objects",
    operation_id = "listObjects",
    params(
        ("bucketName" = String, Path, description = "The bucket's name"),
        ListObjectsParams,
    ),
    responses(
        (status = 200, description = "One page of the directory's entries", body = ObjectList),
        (status = 400, description = "A bad prefix, pageSize or pageToken (the parameter is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket, or no such directory", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The bucket's storage failed; try again", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The bucket's storage cannot be opened", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn list_objects(
    State(state): State<SharedState>,
    BucketPath(bucket): BucketPath,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<ObjectList>, ApiError> {
    let query = ListQuery::parse(query.as_deref())?;
    let vfs = bucket_vfs(&state, &bucket, &caller).await?;
    let prefix_key = key_of(&query.prefix);
    let page = vfs
        .list_from(
            &query.prefix,
            query.cursor.as_deref(),
            query.page_size as usize,
        )
        .await
        .map_err(|e| match e {
            VfsError::NotFound => {
                ApiError::NotFound(format!("no directory '{prefix_key}' in bucket '{bucket}'"))
            }
            VfsError::NotADirectory => ApiError::invalid_field(
                "prefix",
                format!("'{prefix_key}' is a file, not a directory"),
            ),
            VfsError::InvalidPath(_) => bad_page_token(),
            other => vfs_error(other, &bucket, &prefix_key),
        })?;
    let items = page
        .entries
        .iter()
        .map(|entry| {
            let key = if prefix_key.is_empty() {
                entry.name.clone()
            } else {
                format!("{prefix_key}/{}", entry.name)
            };
            object_view(key, entry, None)
        })
        .collect();
    Ok(Json(ObjectList {
        items,
        next_page_token: page.next.map(|cursor| URL_SAFE_NO_PAD.encode(cursor)),
    }))
}

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// The whole object (no `Range`, or one this server ignores: several ranges, another
    /// unit, a malformed one, or an `If-Range` that no longer matches).
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// Nothing of the object: 416.
    Unsatisfiable,
}

/// One `bytes=` range (RFC 9110 §14.1.2); anything else is ignored as the RFC allows.
fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.is_empty(), number(first), number(last)) {
        // bytes=-n: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        (false, Some(start), None) if last.is_empty() => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start,
                    end: size - 1,
                }
            }
        }
        (false, Some(start), Some(end)) if start <= end => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
        _ => RangeRequest::Whole,
    }
}

/// An entity tag as a header value: quoted, as HTTP wants it (local disk's are bare).
fn etag_header(e_tag: &str) -> Option<HeaderValue> {
    let quoted = if e_tag.starts_with('"') || e_tag.starts_with("W/\"") {
        e_tag.to_owned()
    } else {
        format!("\"{e_tag}\"")
    };
    HeaderValue::from_str(&quoted).ok()
}

fn http_date(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// The body of a download: `start..end` of the object in chunks of [`DOWNLOAD_CHUNK`] bytes,
/// read as the client takes them (the download reads ahead a few chunks at most).
fn download_body(download: Download, start: u64, end: u64) -> Body {
    let path = download.path().to_string();
    let chunks = futures::stream::try_unfold(
        (download, start),
        move |(mut download, position)| async move {
            if position >= end {
                return Ok(None);
            }
            let want = (end - position).min(u64::from(DOWNLOAD_CHUNK)) as u32;
            let bytes = download
                .read(position, want)
                .await
                .map_err(|e| std::io::Error::other(format!("reading the object failed: {e}")))?;
            if bytes.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the object is shorter than when it was opened",
                ));
            }
            let next = position + bytes.len() as u64;
            Ok(Some((bytes, (download, next))))
        },
    )
    .inspect_err(move |e| {
        // The status line is gone: the client sees the body end early.
        tracing::warn!(path = %path, error = %e, "a download failed half way");
    });
    Body::from_stream(chunks)
}

/// Download an object
///
/// Streams the object's content. `Range: bytes=a-b` (also `a-` and `-n`) gets one part of it
/// (206; 416 outside the object), so interrupted downloads resume; `If-Range` with the
/// `ETag` or `Last-Modified` makes sure the part is of the same version. The download is
/// pinned to the version it started on: if the object is replaced meanwhile, the body ends
/// early instead of mixing versions.
#[utoipa::path(
    get,
    path = "/v1/buckets/{bucketName}/objects/{key}",
    tag = "objects",
    operation_id = "getObject",
    params(
        ("bucketName" = String, Path, description = "The bucket's name"),
        ("key" = String, Path, description = "The object's key, e.g. `alice/in/x.edi` (its `/` are path separators; percent-encode anything else that is not allowed in a URL path)"),
        ("Range" = Option<String>, Header, description = "`bytes=first-last`, `bytes=first-` or `bytes=-suffixLength`"),
        ("If-Range" = Option<String>, Header, description = "Honour `Range` only if the object still has this `ETag` (or `Last-Modified`)"),
    ),
    responses(
        (status = 200, description = "The whole object", content_type = "application/octet-stream", body = inline(Binary),
            headers(
                ("Content-Length" = u64, description = "Bytes in the body"),
                ("ETag" = String, description = "The version's entity tag"),
                ("Last-Modified" = String, description = "When the version was written"),
                ("Accept-Ranges" = String, description = "`bytes`"),
            )),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = inline(Binary),
            headers(
                ("Content-Range" = String, description = "`bytes first-last/size`"),
                ("Content-Length" = u64, description = "Bytes in the body"),
                ("ETag" = String, description = "The version's entity tag"),
            )),
        (status = 400, description = "A bad key, or a directory (the field `key` is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket or object", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range is outside the object (`Content-Range: bytes */size`)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The bucket's storage failed; try again", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The bucket's storage cannot be opened", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn get_object(
    State(state): State<SharedState>,
    ObjectPath { bucket, key }: ObjectPath,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (path, directory) = parse_key("key", &key)?;
    if directory {
        return Err(ApiError::invalid_field(
            "key",
            "a key ending in '/' names a directory; list it with GET \
             /v1/buckets/{bucketName}/objects?prefix=…",
        ));
    }
    let key = key_of(&path);
    let vfs = bucket_vfs(&state, &bucket, &caller).await?;
    let download = vfs.open_read(&path).await.map_err(|e| match e {
        VfsError::IsADirectory => ApiError::invalid_field(
            "key",
            format!("is a directory; list it with GET /v1/buckets/{bucket}/objects?prefix={key}"),
        ),
        other => vfs_error(other, &bucket, &key),
    })?;
    let size = download.size();
    let etag = download.e_tag().and_then(etag_header);
    let last_modified = http_date(download.last_modified());
    let mut range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(RangeRequest::Whole, |v| parse_range(v, size));
    if let Some(condition) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        let condition = condition.trim();
        let same = etag
            .as_ref()
            .is_some_and(|etag| etag.as_bytes() == condition.as_bytes())
            || condition == last_modified;
        if !same {
            range = RangeRequest::Whole;
        }
    }
    let (status, start, end) = match range {
        RangeRequest::Whole => (StatusCode::OK, 0, size),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        RangeRequest::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size }),
    };
    let mut response = (status, download_body(download, start, end)).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(&last_modified) {
        out.insert(header::LAST_MODIFIED, value);
    }
    if let Some(etag) = etag {
        out.insert(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        out.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

/// Makes every missing directory above `path` (like `mkdir -p` of its parent), so that an
/// upload to `a/b/c.edi` works whether `a/b` exists or not. One look when the parent exists.
async fn ensure_parents(
    vfs: &Vfs,
    path: &VirtualPath,
    bucket: &BucketName,
) -> Result<(), ApiError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    if parent.is_root() {
        return Ok(());
    }
    let in_the_way = |dir: &VirtualPath| {
        ApiError::Conflict(format!(
            "'{}' is a file in bucket '{bucket}', so it cannot hold '{}'",
            key_of(dir),
            key_of(path)
        ))
    };
    match vfs.stat(&parent).await {
        Ok(entry) if entry.kind == EntryKind::Directory => return Ok(()),
        Ok(_) => return Err(in_the_way(&parent)),
        Err(VfsError::NotFound) => {}
        Err(e) => return Err(vfs_error(e, bucket, &key_of(&parent))),
    }
    let mut dir = VirtualPath::root();
    for segment in parent.segments() {
        dir = dir
            .join(segment)
            .map_err(|e| vfs_error(e, bucket, &key_of(path)))?;
        match vfs.stat(&dir).await {
            Ok(entry) if entry.kind == EntryKind::Directory => continue,
            Ok(_) => return Err(in_the_way(&dir)),
            Err(VfsError::NotFound) => {}
            Err(e) => return Err(vfs_error(e, bucket, &key_of(&dir))),
        }
        match vfs.mkdir(&dir).await {
            // Made by a concurrent request meanwhile.
            Ok(()) | Err(VfsError::AlreadyExists) => {}
            Err(e) => return Err(vfs_error(e, bucket, &key_of(&dir))),
        }
    }
    Ok(())
}

/// Upload an object
///
/// Streams the request body (any size, any content type) into the object, which becomes
/// visible only once the whole body has arrived and been stored: readers never see part of
/// it, and a client that disconnects or sends less than its `Content-Length` leaves the
/// previous version (or nothing) in place, as does a body that stalls for 5 minutes. Missing
/// parent directories are created (as `directory.created` events). The upload is recorded as
/// a `file.created` event with its size and SHA-256, with `protocol: "api"` and
/// `username: "wharf-api"`.
///
/// A key ending in `/` with an empty body creates a directory instead (201; 200 if it
/// exists).
#[utoipa::path(
    put,
    path = "/v1/buckets/{bucketName}/objects/{key}",
    tag = "objects",
    operation_id = "putObject",
    params(
        ("bucketName" = String, Path, description = "The bucket's name"),
        ("key" = String, Path, description = "The object's key, e.g. `alice/in/x.edi`; ending in `/` to create a directory"),
    ),
    request_body(content = inline(Binary), content_type = "application/octet-stream", description = "The object's content, streamed; empty for a directory"),
    responses(
        (status = 201, description = "Created", body = BucketObject),
        (status = 200, description = "Replaced (or the directory existed)", body = BucketObject),
        (status = 400, description = "A bad key (the field `key` is named), a body for a directory, a body cut short, or an upload the store cannot take (e.g. larger than it allows)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is a directory, or a file is where a parent directory should be", body = Problem, content_type = "application/problem+json"),
        (status = 411, description = "A file's content without `Content-Length` or chunked encoding (send `Content-Length: 0` for an empty file)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The bucket's storage failed, or the upload could not be recorded; nothing was changed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The bucket's storage cannot be opened", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn put_object(
    State(state): State<SharedState>,
    ObjectPath { bucket, key }: ObjectPath,
    caller: Caller,
    version: axum::http::Version,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BucketObject>), ApiError> {
    let (path, directory) = parse_key("key", &key)?;
    // Over HTTP/1, a file's content has a length or is chunked: a request with neither is
    // most likely a client that forgot the body, and would replace the file with an empty
    // one. (HTTP/2 ends every body explicitly.)
    if !directory
        && version <= axum::http::Version::HTTP_11
        && !headers.contains_key(axum::http::header::CONTENT_LENGTH)
        && !headers.contains_key(axum::http::header::TRANSFER_ENCODING)
    {
        return Err(ApiError::LengthRequired);
    }
    let key = key_of(&path);
    let vfs = bucket_vfs(&state, &bucket, &caller).await?;
    if directory {
        return put_directory(&vfs, &path, &bucket, body).await;
    }
    let replaced = match vfs.stat(&path).await {
        Ok(entry) if entry.kind == EntryKind::Directory => {
            return Err(ApiError::Conflict(format!(
                "'{key}' is a directory in bucket '{bucket}'"
            )));
        }
        Ok(_) => true,
        Err(VfsError::NotFound) => {
            ensure_parents(&vfs, &path, &bucket).await?;
            false
        }
        Err(e) => return Err(vfs_error(e, &bucket, &key)),
    };
    let mut upload = vfs
        .create(&path, CreateOptions::default())
        .await
        .map_err(|e| vfs_error(e, &bucket, &key))?;
    let mut data = body.into_data_stream();
    let mut offset = 0u64;
    loop {
        let next = match tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, data.next()).await {
            Ok(next) => next,
            Err(_) => {
                tracing::info!(%bucket, %key, received = offset, "an upload stalled; aborted");
                let _ = upload.abort().await;
                return Err(ApiError::invalid_field(
                    "body",
                    format!(
                        "no data arrived for {} seconds after {offset} bytes; nothing was stored",
                        UPLOAD_IDLE_TIMEOUT.as_secs()
                    ),
                ));
            }
        };
        let Some(chunk) = next else {
            break;
        };
        let chunk: Bytes = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::info!(%bucket, %key, received = offset, error = %e,
                    "an upload's body ended early; aborted");
                let _ = upload.abort().await;
                return Err(ApiError::InvalidRequest {
                    detail: format!(
                        "the request body ended early after {offset} bytes ({e}); nothing was \
                         stored"
                    ),
                    errors: vec![FieldError {
                        field: "body".into(),
                        message: "ended early".into(),
                    }],
                });
            }
        };
        let len = chunk.len() as u64;
        if let Err(e) = upload.write(offset, chunk).await {
            let _ = upload.abort().await;
            return Err(vfs_error(e, &bucket, &key));
        }
        offset += len;
    }
    let summary = upload
        .commit()
        .await
        .map_err(|e| vfs_error(e, &bucket, &key))?;
    let last_modified = match vfs.stat(&path).await {
        Ok(entry) => entry.modified,
        Err(_) => Some(chrono::Utc::now()),
    };
    tracing::info!(%bucket, %key, size = summary.size, replaced, "object uploaded through the API");
    let object = BucketObject {
        name: path.file_name().unwrap_or_default().to_owned(),
        key,
        kind: ObjectKind::File,
        size: summary.size,
        last_modified,
        sha256: Some(summary.sha256),
    };
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(object)))
}

/// `PUT` of a key ending in `/`: creates the directory (and its parents).
async fn put_directory(
    vfs: &Vfs,
    path: &VirtualPath,
    bucket: &BucketName,
    body: Body,
) -> Result<(StatusCode, Json<BucketObject>), ApiError> {
    let key = key_of(path);
    let mut data = body.into_data_stream();
    while let Some(chunk) = data.next().await {
        if chunk.map_or(true, |c| !c.is_empty()) {
            return Err(ApiError::invalid_field(
                "body",
                "a key ending in '/' creates a directory: send an empty body",
            ));
        }
    }
    let (status, entry) = match vfs.stat(path).await {
        Ok(entry) if entry.kind == EntryKind::Directory => (StatusCode::OK, entry),
        Ok(_) => {
            return Err(ApiError::Conflict(format!(
                "'{key}' is a file in bucket '{bucket}'"
            )));
        }
        Err(VfsError::NotFound) => {
            ensure_parents(vfs, path, bucket).await?;
            match vfs.mkdir(path).await {
                Ok(()) | Err(VfsError::AlreadyExists) => {}
                Err(e) => return Err(vfs_error(e, bucket, &key)),
            }
            let entry = vfs
                .stat(path)
                .await
                .map_err(|e| vfs_error(e, bucket, &key))?;
            (StatusCode::CREATED, entry)
        }
        Err(e) => return Err(vfs_error(e, bucket, &key)),
    };
    Ok((status, Json(object_view(key, &entry, None))))
}

/// The query of `DELETE …/objects/{key}`, for the OpenAPI document (read by hand).
#[derive(Deserialize, IntoParams)]
#[allow(dead_code)]
#[into_params(parameter_in = Query)]
pub struct DeleteObjectParams {
    /// For a directory: also delete everything in it (at most 10,000 entries; a bigger tree is
    /// refused with 400 before anything is deleted). Default `false`: only an empty directory
    /// is deleted.
    pub recursive: Option<bool>,
}

/// Delete an object
///
/// Deletes a file (a `file.deleted` event), or an empty directory. With `recursive=true` a
/// directory is deleted with everything in it (each file is a `file.deleted` event).
#[utoipa::path(
    delete,
    path = "/v1/buckets/{bucketName}/objects/{key}",
    tag = "objects",
    operation_id = "deleteObject",
    params(
        ("bucketName" = String, Path, description = "The bucket's name"),
        ("key" = String, Path, description = "The key of a file or a directory (a trailing `/` is allowed for directories)"),
        DeleteObjectParams,
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A bad key or recursive value, or a recursive delete of more than 10,000 entries (the field is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket or object", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A directory that is not empty (without recursive=true)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The bucket's storage failed; try again", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The bucket's storage cannot be opened", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn delete_object(
    State(state): State<SharedState>,
    ObjectPath { bucket, key }: ObjectPath,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, ApiError> {
    let mut recursive = false;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name == "recursive" {
            recursive = match &*value {
                "true" | "1" => true,
                "false" | "0" | "" => false,
                _ => {
                    return Err(ApiError::invalid_field(
                        "recursive",
                        "must be true or false",
                    ));
                }
            };
        }
    }
    let (path, directory) = parse_key("key", &key)?;
    let key = key_of(&path);
    let vfs = bucket_vfs(&state, &bucket, &caller).await?;
    let entry = vfs
        .stat(&path)
        .await
        .map_err(|e| vfs_error(e, &bucket, &key))?;
    match entry.kind {
        EntryKind::File if directory => {
            return Err(ApiError::NotFound(format!(
                "no directory '{key}' in bucket '{bucket}' ('{key}' is a file)"
            )));
        }
        EntryKind::File => vfs
            .remove(&path)
            .await
            .map_err(|e| vfs_error(e, &bucket, &key))?,
        EntryKind::Directory if recursive => delete_tree(&vfs, &path, &bucket).await?,
        EntryKind::Directory => vfs
            .rmdir(&path)
            .await
            .map_err(|e| vfs_error(e, &bucket, &key))?,
    }
    tracing::info!(%bucket, %key, recursive, "deleted through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the directory `root` with everything in it: the tree is listed first (refused
/// above [`MAX_RECURSIVE_DELETE`] entries), then files are deleted, then directories from the
/// deepest up.
async fn delete_tree(vfs: &Vfs, root: &VirtualPath, bucket: &BucketName) -> Result<(), ApiError> {
    let too_big = || {
        ApiError::Validation(vec![FieldError {
            field: "recursive".into(),
            message: format!(
                "'{}' holds more than {MAX_RECURSIVE_DELETE} files and directories; delete \
                 its contents in smaller parts",
                key_of(root)
            ),
        }])
    };
    let mut files = Vec::new();
    let mut directories = vec![root.clone()];
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        let mut listing = match vfs.list_pages(&dir).await {
            Ok(listing) => listing,
            // Emptied meanwhile (a prefix-only directory vanishes with its last file).
            Err(VfsError::NotFound) if dir != *root => continue,
            Err(e) => return Err(vfs_error(e, bucket, &key_of(&dir))),
        };
        while let Some(page) = listing
            .next_page()
            .await
            .map_err(|e| vfs_error(e, bucket, &key_of(&dir)))?
        {
            for entry in page {
                let child = dir.join(&entry.name).map_err(|e| {
                    ApiError::Conflict(format!(
                        "'{}/{}' cannot be deleted through the API ({e})",
                        key_of(&dir),
                        entry.name.escape_default()
                    ))
                })?;
                match entry.kind {
                    EntryKind::File => files.push(child),
                    EntryKind::Directory => {
                        directories.push(child.clone());
                        pending.push(child);
                    }
                }
            }
            if files.len() + directories.len() > MAX_RECURSIVE_DELETE {
                return Err(too_big());
            }
        }
    }
    futures::stream::iter(files)
        .map(|file| async move {
            match vfs.remove(&file).await {
                Ok(()) | Err(VfsError::NotFound) => Ok(()),
                Err(e) => Err(vfs_error(e, bucket, &key_of(&file))),
            }
        })
        .buffer_unordered(DELETE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    // A directory comes after its parent in `directories`: reversed, children go first.
    for dir in directories.iter().rev() {
        match vfs.rmdir(dir).await {
            Ok(()) | Err(VfsError::NotFound) => {}
            Err(e) => return Err(vfs_error(e, bucket, &key_of(dir))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<(VirtualPath, bool), ApiError>) -> String {
        match result {
            Err(ApiError::InvalidRequest { errors, .. }) => errors[0].field.clone(),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn keys_name_one_object_or_are_refused() {
        let (path, directory) = parse_key("key", "alice/in/x.edi").unwrap();
        assert_eq!(
            (path.to_string().as_str(), directory),
            ("/alice/in/x.edi", false)
        );
        let (path, directory) = parse_key("key", "alice/in/").unwrap();
        assert_eq!((path.to_string().as_str(), directory), ("/alice/in", true));
        assert_eq!(key_of(&path), "alice/in");
        // Percent signs are names; decoding happened in the URL already.
        assert_eq!(
            parse_key("key", "%2e%2e/x").unwrap().0.to_string(),
            "/%2e%2e/x"
        );
        for bad in [
            "",
            "/",
            "/x",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a/.",
            "a\nb",
            "a\\b",
            ".wharf-uploads/x",
            "a/.wharf-dir",
            "//",
        ] {
            assert_eq!(field_of(parse_key("key", bad)), "key", "{bad:?}");
        }
        assert_eq!(field_of(parse_key("key", &"k".repeat(5000))), "key");
        assert_eq!(field_of(parse_key("key", &"k".repeat(256))), "key");
        assert_eq!(field_of(parse_key("prefix", "a//b")), "prefix");
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part { start: 0, end: 9 });
        assert_eq!(
            parse_range("bytes=90-200", 100),
            Part { start: 90, end: 99 }
        );
        assert_eq!(parse_range("bytes=10-", 100), Part { start: 10, end: 99 });
        assert_eq!(parse_range("bytes=-10", 100), Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-1000", 100), Part { start: 0, end: 99 });
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
        assert_eq!(parse_range("bytes=x-1", 100), Whole);
        assert_eq!(parse_range("bytes=+1-2", 100), Whole);
    }
}
