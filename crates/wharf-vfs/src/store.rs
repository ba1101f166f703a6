//! Opening bucket stores from their [`BucketStorage`] description, and checking that a new
//! bucket's store answers before the control plane records it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use object_store::ObjectStoreScheme;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};
use url::Url;
use wharf_core::{BucketStorage, HomeDirectory};

use crate::VfsError;
use crate::checksum::KnownHashes;
use crate::journal::{ORPHAN_AGE, SweepReport, UploadJournal, sweep_local_staging};
use crate::vfs::{ensure_directory, object_key};

/// The account name of the Azure storage emulator (Azurite).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The well-known, public account key of the Azure storage emulator (Azurite), documented by
/// Microsoft; used only when an emulator bucket gives no key of its own.
const AZURITE_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Why a bucket's storage description cannot be used, split by what is at fault so that the
/// control plane can name the offending field. Messages never contain option values (they may
/// be credentials) nor the URL's user or password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    /// The storage URL: unparsable, an unsupported scheme, no bucket named.
    #[error("{0}")]
    Url(String),
    /// An option key this kind of store does not know (or a store that takes no options).
    #[error("option '{key}': {message}")]
    Option { key: String, message: String },
    /// The URL and options are well-formed but the store cannot be built from them (a bad
    /// option value, a missing credentials file, a directory that cannot be created).
    #[error("{0}")]
    Open(String),
    /// The store was built but did not answer a listing (unreachable endpoint, missing bucket,
    /// rejected credentials, timeout).
    #[error("{0}")]
    Unreachable(String),
}

/// How the client of a cloud store behaves.
#[derive(Clone, Copy)]
enum Tuning {
    /// object_store's defaults: retries with backoff, for sessions.
    Serve,
    /// One attempt, bounded by a deadline: the reachability check.
    Probe(Duration),
}

/// Opens the object store a bucket lives in: `file:///abs/dir` (created if missing; empty
/// parent directories are cleaned up on delete), `s3://bucket`, `gs://bucket`, `az://container`
/// (also `abfs://`, `azure://`), with object_store's configuration keys as options and the usual
/// environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`) as fallback.
///
/// - **S3 and compatible servers** (MinIO, Garage, s3s, R2, …): `aws_endpoint` selects the
///   server; requests are path-style (`endpoint/bucket/key`) unless
///   `aws_virtual_hosted_style_request` is `true`. An `http://` endpoint is allowed without
///   `aws_allow_http` (naming it is consent enough). Credentials come from
///   `aws_access_key_id`/`aws_secret_access_key` (or `AWS_ACCESS_KEY_ID`/…), else from the
///   usual AWS chain (web identity, ECS, instance metadata). Over HTTPS payloads are sent
///   unsigned (TLS protects them; see `s3_builder`) unless `aws_unsigned_payload` is
///   `false`. `AWS_CA_BUNDLE` is **not** read
///   (object_store uses the system's root certificates), so the variable set for other AWS
///   tools cannot break Wharf.
/// - **Azure Blob Storage**: `azure_storage_account_name` and `azure_storage_access_key` (or a
///   SAS token, a bearer token, a service principal, …); `azure_storage_endpoint` for a
///   non-standard endpoint. For the Azurite emulator set `azure_storage_use_emulator=true` and,
///   when it does not listen on `127.0.0.1:10000`, `azure_storage_endpoint=http://host:port`
///   (the account, default `devstoreaccount1`, and its well-known key are filled in).
/// - **Google Cloud Storage**: `google_service_account` (path of a service-account JSON file)
///   or `google_service_account_key` (its content), else application default credentials;
///   `google_base_url` for another endpoint (an emulator).
///
/// A path after the bucket (`s3://bucket/wharf/`) keeps the bucket's files under that prefix.
/// `memory://` opens a new, empty in-memory store (tests and demos; share it through a
/// [`StoreCache`]). `file://` and `memory://` take no options. Opening sends no request.
/// Errors never echo option values, which may be credentials.
pub fn open_bucket(storage: &BucketStorage) -> Result<Arc<dyn ObjectStore>, VfsError> {
    open(storage).map(|opened| opened.store)
}

fn open(storage: &BucketStorage) -> Result<OpenedBucket, VfsError> {
    build_store(storage, Tuning::Serve)
        .map_err(|e| VfsError::Config(format!("bucket '{}': {e}", storage.name)))
}

/// Checks that `storage` describes a usable bucket: the URL and options are valid and the
/// store answers one listing request within `timeout` (a single attempt: no retries). Used by
/// the control plane before it records a new bucket. `memory://` is refused: an in-memory
/// store lives in one process only, so no gateway could reach it.
///
/// The listing reads at most one page and nothing else: the check needs read (list)
/// permission only, and changes nothing in the store. A `file://` directory is created if
/// missing, as [`open_bucket`] does.
pub async fn check_bucket(storage: &BucketStorage, timeout: Duration) -> Result<(), BucketError> {
    let url = parse_url(storage)?;
    if url.scheme() == "memory" {
        return Err(BucketError::Url(
            "memory:// stores exist inside one process only; use file://, s3://, gs:// or az://"
                .to_owned(),
        ));
    }
    let store = build_store(storage, Tuning::Probe(timeout))?.store;
    let first = tokio::time::timeout(timeout, async { store.list(None).next().await }).await;
    match first {
        Ok(None | Some(Ok(_))) => Ok(()),
        Ok(Some(Err(e))) => {
            let chain = error_chain(&e);
            let hint = if matches!(e, object_store::Error::NotFound { .. })
                || ["NoSuchBucket", "ContainerNotFound", "404 Not Found"]
                    .iter()
                    .any(|s| chain.contains(s))
            {
                "the bucket does not exist (or these credentials cannot see it); "
            } else if [
                "403 Forbidden",
                "AccessDenied",
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "AuthenticationFailed",
                "AuthorizationFailure",
            ]
            .iter()
            .any(|s| chain.contains(s))
            {
                "the credentials were refused; "
            } else {
                ""
            };
            Err(BucketError::Unreachable(redact(
                &format!("{hint}listing the store failed: {chain}"),
                storage,
            )))
        }
        Err(_) => Err(BucketError::Unreachable(format!(
            "the store did not answer a listing within {} s",
            timeout.as_secs_f32()
        ))),
    }
}

/// Whether `storage` would reach the gateway host itself rather than only the store: `Some`
/// says how. A cloud bucket with no credentials of its own falls back to the host's (the
/// environment, the instance or pod role), and some options name a host file, a metadata or
/// token endpoint, or a program to run for credentials. The control plane refuses such buckets
/// from API key holders unless the operator allows it; the operator's own `--bucket-url` may.
/// `file://` and `memory://` buckets use no credentials (see the control plane's
/// `--local-bucket-root` for where `file://` ones may live).
pub fn host_access(storage: &BucketStorage) -> Result<Option<String>, BucketError> {
    let url = parse_url(storage)?;
    parse_scheme(&url)?;
    let host_option = |key: &str| {
        Some(format!(
            "the option '{key}' makes the server use its own files, endpoints or programs for \
             credentials"
        ))
    };
    let options = &storage.options;
    let own = match url.scheme() {
        "s3" | "s3a" => {
            let (mut key_id, mut secret, mut anonymous) = (false, false, false);
            for (key, value) in options {
                match parse_key::<AmazonS3ConfigKey>(key, "s3")? {
                    AmazonS3ConfigKey::AccessKeyId => key_id = true,
                    AmazonS3ConfigKey::SecretAccessKey => secret = true,
                    AmazonS3ConfigKey::SkipSignature => anonymous = is_true(value),
                    AmazonS3ConfigKey::MetadataEndpoint
                    | AmazonS3ConfigKey::ContainerCredentialsRelativeUri
                    | AmazonS3ConfigKey::ContainerCredentialsFullUri
                    | AmazonS3ConfigKey::ContainerAuthorizationTokenFile
                    | AmazonS3ConfigKey::WebIdentityTokenFile
                    | AmazonS3ConfigKey::RoleArn
                    | AmazonS3ConfigKey::RoleSessionName
                    | AmazonS3ConfigKey::StsEndpoint => return Ok(host_option(key)),
                    _ => {}
                }
            }
            (key_id && secret) || anonymous
        }
        "gs" => {
            let mut own = false;
            for (key, value) in options {
                match parse_key::<GoogleConfigKey>(key, "gs")? {
                    GoogleConfigKey::ServiceAccountKey | GoogleConfigKey::BearerToken => own = true,
                    GoogleConfigKey::SkipSignature => own |= is_true(value),
                    GoogleConfigKey::ServiceAccount | GoogleConfigKey::ApplicationCredentials => {
                        return Ok(host_option(key));
                    }
                    _ => {}
                }
            }
            own
        }
        "az" | "adl" | "azure" | "abfs" | "abfss" => {
            let (mut own, mut client_id, mut client_secret, mut tenant) =
                (false, false, false, false);
            for (key, value) in options {
                match parse_key::<AzureConfigKey>(key, "az")? {
                    AzureConfigKey::AccessKey | AzureConfigKey::SasKey | AzureConfigKey::Token => {
                        own = true
                    }
                    AzureConfigKey::UseEmulator | AzureConfigKey::SkipSignature => {
                        own |= is_true(value)
                    }
                    AzureConfigKey::ClientId => client_id = true,
                    AzureConfigKey::ClientSecret => client_secret = true,
                    AzureConfigKey::AuthorityId => tenant = true,
                    AzureConfigKey::MsiEndpoint
                    | AzureConfigKey::ObjectId
                    | AzureConfigKey::MsiResourceId
                    | AzureConfigKey::FederatedTokenFile
                    | AzureConfigKey::UseAzureCli
                    | AzureConfigKey::UseFabricEndpoint
                    | AzureConfigKey::FabricTokenServiceUrl
                    | AzureConfigKey::FabricWorkloadHost
                    | AzureConfigKey::FabricSessionToken
                    | AzureConfigKey::FabricClusterIdentifier
                    | AzureConfigKey::CredentialType => return Ok(host_option(key)),
                    _ => {}
                }
            }
            own || (client_id && client_secret && tenant)
        }
        _ => true,
    };
    Ok((!own).then(|| {
        "the bucket has no credentials of its own, so the server's (its environment, instance \
         or pod role) would be used; give the bucket its own (e.g. aws_access_key_id and \
         aws_secret_access_key, google_service_account_key, azure_storage_account_key)"
            .to_owned()
    }))
}

fn is_true(value: &str) -> bool {
    value.eq_ignore_ascii_case("true")
}

fn parse_url(storage: &BucketStorage) -> Result<Url, BucketError> {
    Url::parse(&storage.url).map_err(|e| BucketError::Url(format!("invalid storage URL: {e}")))
}

/// The kind of store `url` names and the prefix within it, or what is wrong with its shape.
fn parse_scheme(url: &Url) -> Result<(ObjectStoreScheme, Path), BucketError> {
    ObjectStoreScheme::parse(url).map_err(|_| {
        BucketError::Url(match url.scheme() {
            "file" => "a file:// URL names no host: file:///absolute/dir".to_owned(),
            "s3" | "s3a" | "gs" | "az" | "adl" | "azure" | "abfs" | "abfss" => {
                format!("a {}:// URL must name the bucket", url.scheme())
            }
            other => format!(
                "unsupported storage URL scheme '{other}'; use file://, s3://, gs:// or az://"
            ),
        })
    })
}

fn build_store(storage: &BucketStorage, tuning: Tuning) -> Result<OpenedBucket, BucketError> {
    let url = parse_url(storage)?;
    let (scheme, prefix) = parse_scheme(&url)?;
    tracing::debug!(bucket = %storage.name, scheme = url.scheme(), "opening bucket store");
    let options = &storage.options;
    let open_error = |e: object_store::Error| BucketError::Open(redact(&error_chain(&e), storage));
    let opened: OpenedStore = match scheme {
        ObjectStoreScheme::Local => {
            no_options(options)?;
            let dir = url.to_file_path().map_err(|()| {
                BucketError::Url("file:// URL is not an absolute local path".into())
            })?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                BucketError::Open(format!("cannot create directory {}: {e}", dir.display()))
            })?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| BucketError::Open(format!("cannot open {}: {e}", dir.display())))?
                // Deleting a directory's last object (its marker) removes the directory from
                // disk too, as it disappears from a cloud store.
                .with_automatic_cleanup(true);
            return Ok(OpenedStore {
                local_root: Some(dir),
                ..OpenedStore::unpaged(Arc::new(store))
            }
            .into_bucket(Path::default()));
        }
        ObjectStoreScheme::Memory => {
            no_options(options)?;
            let store = Arc::new(InMemory::new());
            return Ok(OpenedStore {
                store: store.clone(),
                pager: None,
                multipart: Some(store),
                local_root: None,
            }
            .into_bucket(Path::default()));
        }
        ObjectStoreScheme::AmazonS3 => {
            let mut builder = s3_builder(AmazonS3Builder::from_env(), &url, options)?;
            if let Tuning::Probe(timeout) = tuning {
                for (key, value) in probe_client_options(timeout) {
                    builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
                }
                builder = builder.with_retry(probe_retry(timeout));
            }
            OpenedStore::cloud(Arc::new(builder.build().map_err(open_error)?))
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            let mut allow_http_given = std::env::var_os("GOOGLE_ALLOW_HTTP").is_some();
            for (key, value) in options {
                let key: GoogleConfigKey = parse_key(key, "gs")?;
                allow_http_given |= key == GoogleConfigKey::Client(ClientConfigKey::AllowHttp);
                builder = builder.with_config(key, value);
            }
            let base_url = builder.get_config_value(&GoogleConfigKey::BaseUrl);
            if is_http(base_url.as_deref()) && !allow_http_given {
                builder = builder
                    .with_config(GoogleConfigKey::Client(ClientConfigKey::AllowHttp), "true");
            }
            if let Tuning::Probe(timeout) = tuning {
                for (key, value) in probe_client_options(timeout) {
                    builder = builder.with_config(GoogleConfigKey::Client(key), value);
                }
                builder = builder.with_retry(probe_retry(timeout));
            }
            OpenedStore::cloud(Arc::new(builder.build().map_err(open_error)?))
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            let mut allow_http_given = std::env::var_os("AZURE_ALLOW_HTTP").is_some();
            for (key, value) in options {
                let key: AzureConfigKey = parse_key(key, "az")?;
                allow_http_given |= key == AzureConfigKey::Client(ClientConfigKey::AllowHttp);
                builder = builder.with_config(key, value);
            }
            builder = azurite_endpoint(builder);
            let endpoint = builder.get_config_value(&AzureConfigKey::Endpoint);
            if is_http(endpoint.as_deref()) && !allow_http_given {
                builder =
                    builder.with_config(AzureConfigKey::Client(ClientConfigKey::AllowHttp), "true");
            }
            if let Tuning::Probe(timeout) = tuning {
                for (key, value) in probe_client_options(timeout) {
                    builder = builder.with_config(AzureConfigKey::Client(key), value);
                }
                builder = builder.with_retry(probe_retry(timeout));
            }
            OpenedStore::cloud(Arc::new(builder.build().map_err(open_error)?))
        }
        // Http (a WebDAV server, not a bucket) and any scheme object_store adds later.
        _ => {
            return Err(BucketError::Url(format!(
                "'{}' URLs cannot hold a bucket; use file://, s3://, gs:// or az://",
                url.scheme()
            )));
        }
    };
    Ok(opened.into_bucket(prefix))
}

/// A store as opened, before the bucket's prefix is applied.
struct OpenedStore {
    store: Arc<dyn ObjectStore>,
    pager: Option<ListPager>,
    multipart: Option<Arc<dyn MultipartStore>>,
    local_root: Option<PathBuf>,
}

impl OpenedStore {
    fn unpaged(store: Arc<dyn ObjectStore>) -> Self {
        OpenedStore {
            store,
            pager: None,
            multipart: None,
            local_root: None,
        }
    }

    /// A cloud store: paged listings and explicit multipart uploads.
    fn cloud<S: ObjectStore + PaginatedListStore + MultipartStore>(store: Arc<S>) -> Self {
        OpenedStore {
            store: store.clone(),
            pager: Some(ListPager {
                store: store.clone(),
                root: Path::default(),
            }),
            multipart: Some(store),
            local_root: None,
        }
    }

    /// The bucket whose keys live under `prefix` in this store.
    fn into_bucket(self, prefix: Path) -> OpenedBucket {
        let store = with_prefix(self.store, prefix.clone());
        OpenedBucket {
            uploads: self
                .multipart
                .map(|multipart| UploadJournal::new(store.clone(), multipart, prefix.clone())),
            pager: self.pager.map(|p| ListPager { root: prefix, ..p }),
            local_root: self.local_root,
            hashes: KnownHashes::default(),
            store,
        }
    }
}

/// An opened bucket: its store (keys relative to the bucket root) and what the store offers
/// beyond the common [`ObjectStore`] calls. Cheap to clone.
#[derive(Clone)]
pub struct OpenedBucket {
    /// The bucket's store.
    pub store: Arc<dyn ObjectStore>,
    /// Paged delimiter listing, on the stores that have it (give it to
    /// [`crate::Vfs::with_list_pager`]).
    pub pager: Option<ListPager>,
    /// The journal of multipart uploads in progress, on the stores that can abort an upload by
    /// its id (S3, GCS, Azure); see [`UploadJournal`].
    pub uploads: Option<UploadJournal>,
    /// The directory of a `file://` bucket.
    pub local_root: Option<PathBuf>,
    /// SHA-256 of the bucket's recent uploads, shared by every session on it.
    pub hashes: KnownHashes,
}

impl OpenedBucket {
    /// Removes what uploads of crashed processes left behind, when older than `older_than`:
    /// aborts journaled multipart uploads (cloud stores) or deletes staging files (local disk).
    pub async fn sweep_orphaned_uploads(
        &self,
        older_than: Duration,
    ) -> Result<SweepReport, VfsError> {
        match (&self.uploads, &self.local_root) {
            (Some(journal), _) => journal.sweep(older_than).await,
            (None, Some(root)) => sweep_local_staging(root.clone(), older_than).await,
            (None, None) => Ok(SweepReport::default()),
        }
    }
}

/// Delimiter listing one page at a time, for the stores that have it (S3, GCS, Azure): a
/// directory of any size is listed without holding it whole in memory. Local disk and memory
/// stores have none; their directories are listed in one go.
#[derive(Clone)]
pub struct ListPager {
    store: Arc<dyn PaginatedListStore>,
    /// The bucket's key prefix inside the store (the path part of its URL), which the
    /// [`PrefixStore`] applies for every other call.
    root: Path,
}

impl ListPager {
    /// One page of the entries directly under `dir` (a bucket key; the root for ""): objects
    /// and sub-prefixes, with keys relative to the bucket root. With `start_after` (a string
    /// relative to `dir`, e.g. the last name of a previous listing), only keys after
    /// `dir/start_after` in the store's order are listed (S3 and GCS `start-after`, Azure
    /// `startFrom`).
    pub(crate) async fn page(
        &self,
        dir: &Path,
        page_token: Option<String>,
        max_keys: usize,
        start_after: Option<&str>,
    ) -> Result<(object_store::ListResult, Option<String>), object_store::Error> {
        let full = Path::from_iter(self.root.parts().chain(dir.parts()));
        let prefix = if full.is_root() {
            String::new()
        } else {
            format!("{full}{}", object_store::path::DELIMITER)
        };
        let options = PaginatedListOptions {
            delimiter: Some(Cow::Borrowed(object_store::path::DELIMITER)),
            max_keys: Some(max_keys),
            page_token,
            offset: start_after.map(|after| format!("{prefix}{after}")),
            ..Default::default()
        };
        let page = self
            .store
            .list_paginated((!prefix.is_empty()).then_some(prefix.as_str()), options)
            .await?;
        let strip = |p: Path| -> Path {
            if self.root.is_root() {
                return p;
            }
            let stripped = p.prefix_match(&self.root).map(Path::from_iter);
            stripped.unwrap_or(p)
        };
        let mut result = page.result;
        result.common_prefixes = result.common_prefixes.into_iter().map(strip).collect();
        for meta in &mut result.objects {
            meta.location = strip(std::mem::take(&mut meta.location));
        }
        Ok((result, page.page_token))
    }
}

/// object_store sends an emulator bucket to `AZURITE_BLOB_STORAGE_URL` (default
/// `http://127.0.0.1:10000`) and ignores `azure_storage_endpoint`, a process-wide setting that
/// cannot differ between buckets. When both are given, the bucket is opened as an ordinary
/// account at `endpoint/account` (path-style, as Azurite serves it) with the emulator's
/// account and key unless others are given: the same requests, signed the same way.
fn azurite_endpoint(builder: MicrosoftAzureBuilder) -> MicrosoftAzureBuilder {
    let emulator = builder
        .get_config_value(&AzureConfigKey::UseEmulator)
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let Some(endpoint) = builder.get_config_value(&AzureConfigKey::Endpoint) else {
        return builder;
    };
    if !emulator {
        return builder;
    }
    let account = builder
        .get_config_value(&AzureConfigKey::AccountName)
        .unwrap_or_else(|| AZURITE_ACCOUNT.to_owned());
    let trimmed = endpoint.trim_end_matches('/');
    let account_url = if trimmed.rsplit('/').next() == Some(account.as_str()) {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/{account}")
    };
    let has_credential = [
        AzureConfigKey::AccessKey,
        AzureConfigKey::SasKey,
        AzureConfigKey::Token,
    ]
    .iter()
    .any(|key| builder.get_config_value(key).is_some());
    let mut builder = builder
        .with_config(AzureConfigKey::UseEmulator, "false")
        .with_config(AzureConfigKey::AccountName, &account)
        .with_config(AzureConfigKey::Endpoint, account_url);
    if !has_credential {
        builder = builder.with_config(AzureConfigKey::AccessKey, AZURITE_ACCOUNT_KEY);
    }
    builder
}

/// `builder` (from the environment) with the bucket's URL and options, and Wharf's defaults
/// where neither the options nor the environment say otherwise:
/// - an `http://` endpoint is allowed (naming it is consent enough);
/// - over HTTPS (AWS itself, or an `https://` endpoint) the payload is not signed
///   (`UNSIGNED-PAYLOAD`), as the AWS SDKs do for S3 over TLS: TLS already protects the bytes,
///   and signing them is a second SHA-256 over every byte uploaded (the upload computes the
///   file's own SHA-256 for its event anyway). Over plain HTTP the signature is all that
///   protects them, so they stay signed. `aws_unsigned_payload: "false"` signs them always.
fn s3_builder(
    mut builder: AmazonS3Builder,
    url: &Url,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<AmazonS3Builder, BucketError> {
    builder = builder.with_url(url.as_str());
    let allow_http = AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp);
    let mut allow_http_given = std::env::var_os("AWS_ALLOW_HTTP").is_some();
    let mut unsigned_given = std::env::var_os("AWS_UNSIGNED_PAYLOAD").is_some();
    for (key, value) in options {
        let key: AmazonS3ConfigKey = parse_key(key, "s3")?;
        allow_http_given |= key == allow_http;
        unsigned_given |= key == AmazonS3ConfigKey::UnsignedPayload;
        builder = builder.with_config(key, value);
    }
    let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    if is_http(endpoint.as_deref()) {
        if !allow_http_given {
            builder = builder.with_config(allow_http, "true");
        }
    } else if !unsigned_given {
        builder = builder.with_config(AmazonS3ConfigKey::UnsignedPayload, "true");
    }
    Ok(builder)
}

fn is_http(endpoint: Option<&str>) -> bool {
    endpoint.is_some_and(|e| {
        e.get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
    })
}

/// Client settings of the reachability check: fail within `timeout`.
fn probe_client_options(timeout: Duration) -> [(ClientConfigKey, String); 2] {
    let secs = format!("{}ms", timeout.as_millis().max(1));
    [
        (ClientConfigKey::ConnectTimeout, secs.clone()),
        (ClientConfigKey::Timeout, secs),
    ]
}

/// One attempt only, so the check reports the real cause instead of "timed out" after retries.
fn probe_retry(timeout: Duration) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 0,
        retry_timeout: timeout,
    }
}

/// `e` and its sources, each once: object_store's messages often repeat their source's.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !part.is_empty() && !message.contains(&part) {
            message.push_str(": ");
            message.push_str(&part);
        }
        source = s.source();
    }
    message
}

/// Whether an option's value is harmless to show (where the store is, not how to get in).
fn is_public_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "endpoint",
        "region",
        "allow_http",
        "use_emulator",
        "account_name",
        "virtual_hosted",
    ]
    .iter()
    .any(|public| key.contains(public))
        && !["secret", "token", "key", "password", "credential", "sas"]
            .iter()
            .any(|secret| key.contains(secret))
}

/// `message` without the values of `storage`'s options (but endpoints, regions and such) and
/// without the URL's password and query (a driver may quote them, e.g. in a parse error).
fn redact(message: &str, storage: &BucketStorage) -> String {
    let mut secrets: Vec<String> = storage
        .options
        .iter()
        // Flags ("true") are never secrets, and hiding them would mangle ordinary words.
        .filter(|(key, value)| {
            value.len() >= 4
                && !is_public_option(key)
                && !["true", "false"].contains(&value.to_ascii_lowercase().as_str())
        })
        .map(|(_, value)| value.clone())
        .collect();
    if let Ok(url) = Url::parse(&storage.url) {
        secrets.extend(url.password().map(str::to_owned));
        secrets.extend(url.query().map(str::to_owned));
    }
    // Longest first, so that a secret containing another is removed whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut message = message.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        message = message.replace(secret.as_str(), "***");
    }
    message
}

/// `store` restricted to the keys under `prefix` (the path part of a cloud URL).
fn with_prefix(store: Arc<dyn ObjectStore>, prefix: Path) -> Arc<dyn ObjectStore> {
    if prefix.is_root() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

fn no_options(options: &BTreeMap<String, String>) -> Result<(), BucketError> {
    match options.keys().next() {
        None => Ok(()),
        Some(key) => Err(BucketError::Option {
            key: key.clone(),
            message: "not used by this kind of store (it takes no options)".to_owned(),
        }),
    }
}

/// An object_store configuration key, matched case-insensitively as object_store's own URL
/// parser does. An unknown key is an error rather than ignored: a misspelt endpoint would
/// otherwise send the bucket's traffic to AWS.
fn parse_key<K: std::str::FromStr>(key: &str, scheme: &str) -> Result<K, BucketError> {
    key.to_ascii_lowercase()
        .parse()
        .map_err(|_| BucketError::Option {
            key: key.to_owned(),
            message: format!("unknown option for a {scheme}:// store"),
        })
}

/// Creates `home` (and its parents) in `store` as directories, so a new user's home exists and
/// is listed even while empty. A no-op for `/` and for directories that exist already.
///
/// Fails with [`VfsError::NotADirectory`] if a file stands where one of the directories should.
pub async fn create_home(store: &dyn ObjectStore, home: &HomeDirectory) -> Result<(), VfsError> {
    tracing::debug!(%home, "creating home directory");
    let segments: Vec<&str> = home.segments().collect();
    for depth in 1..=segments.len() {
        let dir = object_key(segments[..depth].iter().copied(), []);
        ensure_directory(store, &dir).await?;
    }
    Ok(())
}

/// What identifies an opened store: two buckets with the same name, URL and options share one.
type StoreKey = (String, String, BTreeMap<String, String>);

/// How often a [`StoreCache`] sweeps each bucket it opened for orphaned uploads.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Buckets opened so far, keyed by bucket description, so every session of a gateway shares
/// one HTTP connection pool per bucket.
///
/// A bucket whose URL or options change gets a new store on next use; the old one is kept
/// (it is small, and sessions still using it keep working).
///
/// Inside a tokio runtime, each bucket opened is also swept for the uploads of crashed
/// processes ([`OpenedBucket::sweep_orphaned_uploads`]) right away and then every
/// [`SWEEP_INTERVAL`], by a task that stops when the cache is dropped.
pub struct StoreCache {
    stores: Mutex<HashMap<StoreKey, OpenedBucket>>,
    /// Age after which an upload counts as orphaned; `None` disables sweeping.
    orphan_age: Option<Duration>,
    /// Each opened bucket's sweeper, by bucket name.
    sweepers: Mutex<Vec<(String, tokio::task::AbortHandle)>>,
}

impl Default for StoreCache {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreCache {
    /// An empty cache that sweeps uploads orphaned for longer than [`ORPHAN_AGE`].
    pub fn new() -> Self {
        Self::with_orphan_age(Some(ORPHAN_AGE))
    }

    /// An empty cache that sweeps uploads orphaned for longer than `orphan_age` (never for
    /// `None`).
    pub fn with_orphan_age(orphan_age: Option<Duration>) -> Self {
        StoreCache {
            stores: Mutex::default(),
            orphan_age,
            sweepers: Mutex::default(),
        }
    }

    /// The store for `storage`, opened on first use.
    pub fn get(&self, storage: &BucketStorage) -> Result<Arc<dyn ObjectStore>, VfsError> {
        self.bucket(storage).map(|bucket| bucket.store)
    }

    /// The bucket for `storage`, opened on first use (give it to [`crate::Vfs::on_bucket`]).
    pub fn bucket(&self, storage: &BucketStorage) -> Result<OpenedBucket, VfsError> {
        let key = (
            storage.name.as_str().to_owned(),
            storage.url.clone(),
            storage.options.clone(),
        );
        // The map stays consistent even if a holder panicked: entries are inserted whole.
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(opened) = stores.get(&key) {
            return Ok(opened.clone());
        }
        // Opening builds clients but sends no request, so holding the lock here is brief.
        let opened = open(storage)?;
        stores.insert(key, opened.clone());
        drop(stores);
        self.start_sweeper(storage, &opened);
        Ok(opened)
    }

    /// Forgets the bucket `name` (deleted): its stores are closed once their sessions end, and
    /// its sweeper stops at once, so nothing keeps touching a store Wharf no longer owns.
    pub fn forget(&self, name: &wharf_core::BucketName) {
        self.stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(bucket, _, _), _| bucket != name.as_str());
        self.sweepers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(bucket, task)| {
                let keep = bucket != name.as_str();
                if !keep {
                    task.abort();
                }
                keep
            });
    }

    /// Whether a sweeper runs for the bucket `name`.
    #[cfg(test)]
    fn sweeps(&self, name: &wharf_core::BucketName) -> bool {
        self.sweepers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|(bucket, task)| bucket == name.as_str() && !task.is_finished())
    }

    fn start_sweeper(&self, storage: &BucketStorage, bucket: &OpenedBucket) {
        let Some(age) = self.orphan_age else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if bucket.uploads.is_none() && bucket.local_root.is_none() {
            return;
        }
        let bucket = bucket.clone();
        let name = storage.name.clone();
        let task = runtime.spawn(async move {
            let mut every = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                every.tick().await;
                match bucket.sweep_orphaned_uploads(age).await {
                    Ok(report) if report.aborted > 0 => tracing::info!(
                        bucket = %name,
                        aborted = report.aborted,
                        in_progress = report.in_progress,
                        "swept orphaned uploads"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(bucket = %name, error = %e, "sweeping orphaned uploads failed")
                    }
                }
            }
        });
        self.sweepers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((storage.name.as_str().to_owned(), task.abort_handle()));
    }
}

impl Drop for StoreCache {
    fn drop(&mut self) {
        for (_, task) in self
            .sweepers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(url: &str, options: &[(&str, &str)]) -> BucketStorage {
        BucketStorage {
            name: wharf_core::BucketName::parse("unit").unwrap(),
            url: url.to_owned(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn azure(options: &[(&str, &str)]) -> MicrosoftAzureBuilder {
        let mut builder = MicrosoftAzureBuilder::new().with_url("az://container");
        for (key, value) in options {
            builder = builder.with_config(key.parse().unwrap(), *value);
        }
        azurite_endpoint(builder)
    }

    #[test]
    fn emulator_with_an_endpoint_becomes_a_path_style_account() {
        let builder = azure(&[
            ("azure_storage_use_emulator", "true"),
            ("azure_storage_endpoint", "http://127.0.0.1:10123/"),
        ]);
        let get = |key| builder.get_config_value(&key);
        assert_eq!(get(AzureConfigKey::UseEmulator).as_deref(), Some("false"));
        assert_eq!(
            get(AzureConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:10123/devstoreaccount1")
        );
        assert_eq!(
            get(AzureConfigKey::AccountName).as_deref(),
            Some(AZURITE_ACCOUNT)
        );
        assert_eq!(
            get(AzureConfigKey::AccessKey).as_deref(),
            Some(AZURITE_ACCOUNT_KEY)
        );

        // Own account and key are kept; an endpoint naming the account is not extended.
        let builder = azure(&[
            ("use_emulator", "true"),
            ("account_name", "acct"),
            ("access_key", "a2V5"),
            ("endpoint", "http://azurite:10000/acct"),
        ]);
        let get = |key| builder.get_config_value(&key);
        assert_eq!(
            get(AzureConfigKey::Endpoint).as_deref(),
            Some("http://azurite:10000/acct")
        );
        assert_eq!(get(AzureConfigKey::AccessKey).as_deref(), Some("a2V5"));

        // Without the emulator switch, or without an endpoint, nothing changes.
        let plain = azure(&[("azure_storage_endpoint", "https://example.test")]);
        assert_eq!(plain.get_config_value(&AzureConfigKey::AccountName), None);
        let emulator = azure(&[("azure_storage_use_emulator", "true")]);
        assert_eq!(
            emulator
                .get_config_value(&AzureConfigKey::UseEmulator)
                .as_deref(),
            Some("true")
        );
        assert_eq!(emulator.get_config_value(&AzureConfigKey::Endpoint), None);
    }

    #[test]
    fn s3_payloads_are_unsigned_over_https_only() {
        let build = |options: &[(&str, &str)]| {
            let storage = storage("s3://bucket", options);
            let url = Url::parse(&storage.url).unwrap();
            s3_builder(AmazonS3Builder::new(), &url, &storage.options).unwrap()
        };
        let unsigned = |builder: &AmazonS3Builder| {
            builder
                .get_config_value(&AmazonS3ConfigKey::UnsignedPayload)
                .is_some_and(|value| value == "true")
        };
        // AWS itself and HTTPS endpoints: TLS protects the bytes.
        assert!(unsigned(&build(&[])));
        assert!(unsigned(&build(&[(
            "aws_endpoint",
            "https://minio.internal:9000"
        )])));
        // Plain HTTP: signed, and allowed.
        let http = build(&[("aws_endpoint", "HTTP://127.0.0.1:9000")]);
        assert!(!unsigned(&http));
        assert_eq!(
            http.get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
                .as_deref(),
            Some("true")
        );
        // The operator's choice wins, under either spelling.
        assert!(!unsigned(&build(&[("aws_unsigned_payload", "false")])));
        assert!(!unsigned(&build(&[
            ("unsigned_payload", "false"),
            ("aws_endpoint", "https://minio.internal:9000"),
        ])));
        assert!(unsigned(&build(&[
            ("aws_unsigned_payload", "true"),
            ("aws_endpoint", "http://127.0.0.1:9000"),
        ])));
        let refused = s3_builder(
            AmazonS3Builder::new(),
            &Url::parse("s3://bucket").unwrap(),
            &storage("s3://bucket", &[("aws_unsigned", "true")]).options,
        );
        assert!(matches!(refused, Err(BucketError::Option { .. })));
    }

    #[test]
    fn every_cloud_opens_without_a_request() {
        for (url, options) in [
            (
                "s3://bucket/prefix",
                &[
                    ("aws_endpoint", "http://127.0.0.1:9"),
                    ("aws_access_key_id", "id"),
                    ("aws_secret_access_key", "secret"),
                ][..],
            ),
            (
                "gs://bucket",
                &[
                    ("google_base_url", "http://127.0.0.1:9"),
                    ("google_bearer_token", "token"),
                ][..],
            ),
            (
                "az://container",
                &[
                    ("azure_storage_account_name", "acct"),
                    ("azure_storage_access_key", "a2V5"),
                ][..],
            ),
            (
                "abfs://container",
                &[("azure_storage_use_emulator", "true")][..],
            ),
        ] {
            open_bucket(&storage(url, options)).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn errors_name_what_is_at_fault() {
        let build = |url: &str, options: &[(&str, &str)]| {
            build_store(&storage(url, options), Tuning::Serve).map(|_| ())
        };
        assert!(matches!(build("ftp://x/y", &[]), Err(BucketError::Url(_))));
        assert!(matches!(build("gs:///", &[]), Err(BucketError::Url(_))));
        assert!(matches!(
            build("s3://b", &[("AWS_Endpointt", "x")]),
            Err(BucketError::Option { key, .. }) if key == "AWS_Endpointt"
        ));
        // Keys are matched case-insensitively, as object_store's URL parser does.
        build("s3://b", &[("AWS_REGION", "eu-west-1")]).unwrap();
        let Err(BucketError::Open(message)) = build(
            "gs://b",
            &[(
                "google_service_account",
                "/nonexistent/very-secret-name.json",
            )],
        ) else {
            panic!("a missing credentials file is an Open error");
        };
        assert!(!message.contains("very-secret-name"), "{message}");
    }

    #[test]
    fn redaction_keeps_locations_and_hides_credentials() {
        let storage = storage(
            "s3://user:pa55word@bucket/p?sig=qu3ry",
            &[
                ("aws_endpoint", "http://minio.internal:9000"),
                ("aws_region", "eu-west-1"),
                ("aws_secret_access_key", "s3cr3t-value"),
                ("azure_storage_sas_key", "sv=2020&sig=abcd"),
                ("aws_skip_signature", "true"),
            ],
        );
        let message = redact(
            "GET http://minio.internal:9000 eu-west-1 s3cr3t-value sv=2020&sig=abcd pa55word \
             sig=qu3ry true",
            &storage,
        );
        assert_eq!(
            message,
            "GET http://minio.internal:9000 eu-west-1 *** *** *** *** true"
        );
        assert!(is_public_option("AWS_ENDPOINT"));
        assert!(!is_public_option("aws_endpoint_token"));
        assert!(!is_public_option("azure_storage_account_key"));
    }

    #[test]
    fn buckets_that_would_use_the_hosts_credentials_are_named() {
        let reaches =
            |url: &str, options: &[(&str, &str)]| host_access(&storage(url, options)).unwrap();
        // Their own credentials, or none needed.
        for (url, options) in [
            ("file:///srv/b", &[][..]),
            (
                "s3://b",
                &[
                    ("aws_access_key_id", "k"),
                    ("AWS_SECRET_ACCESS_KEY", "s"),
                    ("aws_endpoint", "http://127.0.0.1:9000"),
                ][..],
            ),
            ("s3://b", &[("aws_skip_signature", "true")][..]),
            ("gs://b", &[("google_service_account_key", "{}")][..]),
            ("az://c", &[("azure_storage_account_key", "k")][..]),
            ("az://c", &[("azure_storage_use_emulator", "true")][..]),
            (
                "az://c",
                &[
                    ("azure_client_id", "i"),
                    ("azure_client_secret", "s"),
                    ("azure_tenant_id", "t"),
                ][..],
            ),
        ] {
            assert_eq!(reaches(url, options), None, "{url} {options:?}");
        }
        // The host's chain, or the host's files, endpoints and programs.
        for (url, options) in [
            ("s3://b", &[][..]),
            ("s3://b", &[("aws_access_key_id", "k")][..]),
            ("s3://b", &[("aws_skip_signature", "false")][..]),
            (
                "s3://b",
                &[
                    ("aws_access_key_id", "k"),
                    ("aws_secret_access_key", "s"),
                    ("aws_web_identity_token_file", "/etc/shadow"),
                ][..],
            ),
            (
                "s3://b",
                &[("aws_metadata_endpoint", "http://10.0.0.1")][..],
            ),
            ("gs://b", &[][..]),
            (
                "gs://b",
                &[("google_service_account", "/root/key.json")][..],
            ),
            ("az://c", &[("azure_storage_account_name", "a")][..]),
            ("az://c", &[("azure_use_azure_cli", "true")][..]),
            (
                "az://c",
                &[("azure_federated_token_file", "/var/run/token")][..],
            ),
        ] {
            assert!(reaches(url, options).is_some(), "{url} {options:?}");
        }
        assert!(host_access(&storage("s3://b", &[("aws_bogus", "x")])).is_err());
    }

    #[tokio::test]
    async fn a_forgotten_bucket_is_no_longer_swept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StoreCache::new();
        let bucket = storage(&format!("file://{}", dir.path().display()), &[]);
        cache.bucket(&bucket).unwrap();
        assert!(cache.sweeps(&bucket.name));
        cache.forget(&bucket.name);
        assert!(!cache.sweeps(&bucket.name));
        // Opened again (registered anew), it is swept again.
        cache.bucket(&bucket).unwrap();
        assert!(cache.sweeps(&bucket.name));
    }
}
