//! `/v1/buckets` and `/v1/server`.

use axum::Json;
use axum::extract::State;
use wharf_core::api::{Bucket, BucketList, Problem, ServerInfo};

use super::SharedState;
use super::error::ApiError;
use super::extract::BucketPath;
use crate::store::BucketRecord;

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
/// How partners reach this installation: host name, ports and SSH host-key fingerprints.
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
    Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        endpoint: config.public_host.clone(),
        sftp_port: config.sftp_port,
        ftps_port: config.ftps_port,
        ftps_implicit_port: config.ftps_implicit_port,
        host_keys: config.host_keys.clone(),
    })
}

fn bucket_view(bucket: BucketRecord) -> Bucket {
    Bucket {
        storage_url: public_storage_url(&bucket.url),
        bucket_name: bucket.name,
        is_default: bucket.is_default,
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
