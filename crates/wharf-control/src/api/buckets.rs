//! `/v1/buckets` and `/v1/server`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use wharf_core::BucketStorage;
use wharf_core::api::{
    Bucket, BucketList, CreateBucketRequest, FieldError, MAX_BUCKET_OPTIONS, Problem, ServerInfo,
};
use wharf_vfs::BucketError;

use super::SharedState;
use super::error::ApiError;
use super::extract::{BucketPath, JsonBody};
use crate::store::{BucketDeletion, BucketRecord, StoreError};

/// How long a new bucket's store may take to answer the listing that proves it reachable.
pub const BUCKET_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest storage URL accepted.
const MAX_STORAGE_URL_BYTES: usize = 2048;
/// Longest option key and value accepted (a service-account key file fits).
const MAX_OPTION_KEY_BYTES: usize = 128;
const MAX_OPTION_VALUE_BYTES: usize = 16 * 1024;

/// List buckets
#[utoipa::path(
    get,
    path = "/v1/buckets",
    tag = "buckets",
    operation_id = "listBuckets",
    responses(
        (status = 200, description = "The buckets, by name", body = BucketList),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn list_buckets(State(state): State<SharedState>) -> Result<Json<BucketList>, ApiError> {
    let buckets = state.store.list_buckets().await?;
    Ok(Json(BucketList {
        items: buckets.into_iter().map(bucket_view).collect(),
        next_page_token: None,
    }))
}

/// Register a bucket
///
/// Registers a bucket (or container) that already exists in its object store, so that users
/// can be created in it with `bucketName`. Wharf first lists it once (within 10 seconds, no
/// retries) and refuses it with a 400 that says what failed if it cannot. Option values may
/// be credentials: they are stored, handed to the gateways, and never shown again (a bucket
/// shows only their keys, `optionKeys`). A `file://` bucket must lie in a directory of its
/// own under the server's local bucket root, and a cloud bucket must bring its own
/// credentials (unless the server allows its host's), or the request is refused with a 400.
#[utoipa::path(
    post,
    path = "/v1/buckets",
    tag = "buckets",
    operation_id = "createBucket",
    request_body = CreateBucketRequest,
    responses(
        (status = 201, description = "The bucket (its storage URL without credentials, its option keys without values)", body = Bucket),
        (status = 400, description = "Invalid body: malformed (e.g. a bad bucketName), an unsupported storage URL, a file:// directory outside the local bucket root, a cloud bucket without credentials of its own, an unknown option, or a store that cannot be opened or did not answer (the fields are named; the detail says what failed)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A bucket with this name exists already (the field `bucketName` is named)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn create_bucket(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<CreateBucketRequest>,
) -> Result<(StatusCode, Json<Bucket>), ApiError> {
    let options = request.options.unwrap_or_default();
    let url = request.storage_url.trim().to_owned();
    let mut errors = Vec::new();
    if url.is_empty() {
        errors.push(field_error("storageUrl", "must not be empty"));
    } else if url.len() > MAX_STORAGE_URL_BYTES {
        errors.push(field_error(
            "storageUrl",
            format!("must be at most {MAX_STORAGE_URL_BYTES} bytes long"),
        ));
    }
    if options.len() > MAX_BUCKET_OPTIONS {
        errors.push(field_error(
            "options",
            format!("at most {MAX_BUCKET_OPTIONS} options"),
        ));
    }
    for (key, value) in &options {
        if key.is_empty() || key.len() > MAX_OPTION_KEY_BYTES || key.chars().any(char::is_control) {
            errors.push(field_error(
                format!("options.{}", key.escape_default()),
                format!("keys are 1 to {MAX_OPTION_KEY_BYTES} bytes without control characters"),
            ));
        } else if value.len() > MAX_OPTION_VALUE_BYTES {
            errors.push(field_error(
                format!("options.{key}"),
                format!("values are at most {MAX_OPTION_VALUE_BYTES} bytes long"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let name = request.bucket_name;
    // Before the (possibly slow) storage check: a taken name needs no probe.
    if state.store.get_bucket(&name).await?.is_some() {
        return Err(bucket_exists(&name));
    }
    check_host_access(&state, &name, &url, &options)?;
    let storage = BucketStorage {
        name: name.clone(),
        url,
        options,
    };
    check_storage(&storage).await?;
    let record = match state
        .store
        .insert_bucket(&name, &storage.url, &storage.options)
        .await
    {
        Ok(record) => record,
        Err(StoreError::Conflict) => return Err(bucket_exists(&name)),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(bucket = %name, storage = %public_storage_url(&record.url),
        options = ?record.options.keys().collect::<Vec<_>>(), "bucket registered");
    Ok((StatusCode::CREATED, Json(bucket_view(record))))
}

/// Refuses a bucket that would reach the host rather than only its store: a `file://` bucket
/// outside the local bucket root, or a cloud bucket on the host's credentials (unless the
/// operator allows them). Before the storage check, which would create a `file://` directory.
fn check_host_access(
    state: &SharedState,
    name: &wharf_core::BucketName,
    url: &str,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<(), ApiError> {
    if let Ok(parsed) = url::Url::parse(url)
        && parsed.scheme() == "file"
    {
        let dir = parsed.to_file_path().map_err(|()| {
            field_error(
                "storageUrl",
                "a file:// URL names no host and an absolute directory: file:///absolute/dir",
            )
        })?;
        state
            .local_root
            .check(&dir)
            .map_err(|why| field_error("storageUrl", why))?;
    }
    if state.options.allow_host_credentials {
        return Ok(());
    }
    let storage = BucketStorage {
        name: name.clone(),
        url: url.to_owned(),
        options: options.clone(),
    };
    match wharf_vfs::host_access(&storage) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => Err(field_error(
            "options",
            format!("{why}; this server does not allow that (see --allow-host-credentials)"),
        )
        .into()),
        // The storage check says what is wrong with the URL or an option.
        Err(_) => Ok(()),
    }
}

/// Lists the new bucket's store once; any failure is a 400 naming the field at fault.
async fn check_storage(storage: &BucketStorage) -> Result<(), ApiError> {
    let task_storage = storage.clone();
    // A panic in a storage driver must not take the request down with a 500.
    let outcome =
        tokio::spawn(
            async move { wharf_vfs::check_bucket(&task_storage, BUCKET_CHECK_TIMEOUT).await },
        )
        .await
        .unwrap_or_else(|join| {
            Err(BucketError::Unreachable(format!(
                "the storage check failed: {join}"
            )))
        });
    let Err(error) = outcome else {
        return Ok(());
    };
    tracing::info!(bucket = %storage.name, error = %error, "bucket refused: its storage check failed");
    let is_file = storage.url.starts_with("file:");
    Err(match error {
        BucketError::Url(message) => field_error("storageUrl", message).into(),
        BucketError::Option { key, message } => {
            field_error(format!("options.{key}"), message).into()
        }
        // A file:// bucket fails to open on its directory; a cloud bucket on its settings.
        BucketError::Open(message) if is_file => field_error(
            "storageUrl",
            format!("the store cannot be opened: {message}"),
        )
        .into(),
        BucketError::Open(message) => {
            field_error("options", format!("the store cannot be opened: {message}")).into()
        }
        BucketError::Unreachable(message) => {
            field_error("storageUrl", format!("the storage check failed: {message}")).into()
        }
    })
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

fn bucket_exists(name: &wharf_core::BucketName) -> ApiError {
    ApiError::Taken(field_error(
        "bucketName",
        format!("a bucket named '{name}' exists already"),
    ))
}

/// Delete a bucket
///
/// Removes the bucket from Wharf; the objects in its store stay where they are. The default
/// bucket (set by `--bucket-url`) and buckets that users still live in cannot be deleted (409).
#[utoipa::path(
    delete,
    path = "/v1/buckets/{bucketName}",
    tag = "buckets",
    operation_id = "deleteBucket",
    params(("bucketName" = String, Path, description = "The bucket's name")),
    responses(
        (status = 204, description = "Deleted; its objects stay in the store"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The default bucket, or users still live in it", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn delete_bucket(
    State(state): State<SharedState>,
    BucketPath(name): BucketPath,
) -> Result<StatusCode, ApiError> {
    let outcome = match state.store.delete_bucket(&name).await {
        // Users kept coming and going while we tried.
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(format!(
                "bucket '{name}' is in use; try again"
            )));
        }
        other => other?,
    };
    match outcome {
        BucketDeletion::Deleted => {
            state.stores.forget(&name);
            tracing::info!(bucket = %name, "bucket deleted (its objects stay in the store)");
            Ok(StatusCode::NO_CONTENT)
        }
        BucketDeletion::NotFound => Err(ApiError::NotFound(format!("no bucket named '{name}'"))),
        BucketDeletion::IsDefault => Err(ApiError::Conflict(format!(
            "'{name}' is the default bucket; it is configured with --bucket-url \
             (WHARF_BUCKET_URL) and cannot be deleted"
        ))),
        BucketDeletion::InUse { users } => Err(ApiError::Conflict(format!(
            "{users} user{} still live{} in bucket '{name}'; delete {} first",
            if users == 1 { "" } else { "s" },
            if users == 1 { "s" } else { "" },
            if users == 1 { "it" } else { "them" },
        ))),
    }
}

/// Get a bucket
///
/// `storageUrl` never shows credentials.
#[utoipa::path(
    get,
    path = "/v1/buckets/{bucketName}",
    tag = "buckets",
    operation_id = "getBucket",
    params(("bucketName" = String, Path, description = "The bucket's name")),
    responses(
        (status = 200, description = "The bucket", body = Bucket),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn get_bucket(
    State(state): State<SharedState>,
    BucketPath(name): BucketPath,
) -> Result<Json<Bucket>, ApiError> {
    let bucket = state
        .store
        .get_bucket(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no bucket named '{name}'")))?;
    Ok(Json(bucket_view(bucket)))
}

/// Connection details
///
/// How partners reach this installation: host name, ports, SSH host-key fingerprints and the
/// FTPS certificate's SHA-256 fingerprint.
#[utoipa::path(
    get,
    path = "/v1/server",
    tag = "server",
    operation_id = "getServerInfo",
    responses(
        (status = 200, description = "Connection details for partners", body = ServerInfo),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn server_info(State(state): State<SharedState>) -> Json<ServerInfo> {
    let config = &state.config;
    let ftps_certificate_sha256 = match &config.ftps_certificate_file {
        Some(path) => crate::certificate::certificate_file_sha256(path).await,
        None => None,
    };
    Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        endpoint: config.public_host.clone(),
        sftp_port: config.sftp_port,
        ftps_port: config.ftps_port,
        ftps_implicit_port: config.ftps_implicit_port,
        host_keys: config.host_keys.clone(),
        ftps_certificate_sha256,
    })
}

fn bucket_view(bucket: BucketRecord) -> Bucket {
    Bucket {
        storage_url: public_storage_url(&bucket.url),
        bucket_name: bucket.name,
        is_default: bucket.is_default,
        option_keys: bucket.options.keys().cloned().collect(),
        created_at: bucket.created_at,
    }
}

/// The storage URL without user, password, query or fragment: any of them may carry
/// credentials (`s3://key:secret@…`, Azure SAS tokens in the query).
pub fn public_storage_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://(hidden)"),
            None => "(hidden)".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_credentials() {
        assert_eq!(
            public_storage_url("file:///srv/wharf/buckets"),
            "file:///srv/wharf/buckets"
        );
        assert_eq!(
            public_storage_url("s3://AKIA:secret@bucket/prefix?token=x#y"),
            "s3://bucket/prefix"
        );
        assert_eq!(public_storage_url("az://container"), "az://container");
        assert_eq!(public_storage_url("weird"), "(hidden)");
    }
}
