//! Opening bucket stores from their [`BucketStorage`] description.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use object_store::ObjectStore;
use object_store::ObjectStoreScheme;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use url::Url;
use wharf_core::{BucketStorage, HomeDirectory};

use crate::VfsError;
use crate::vfs::{ensure_directory, object_key};

/// Opens the object store a bucket lives in: `file:///abs/dir` (created if missing; empty
/// parent directories are cleaned up on delete), `s3://bucket`, `gs://bucket`, `az://container`
/// (options: object_store's configuration keys, e.g. `aws_endpoint`, `aws_access_key_id`,
/// `aws_allow_http`, `aws_virtual_hosted_style_request`; plus the usual environment).
///
/// A path after the bucket (`s3://bucket/wharf/`) keeps the bucket's files under that prefix.
/// `memory://` opens a new, empty in-memory store (tests and demos; share it through a
/// [`StoreCache`]). `file://` and `memory://` take no options. Errors never echo option values,
/// which may be credentials.
pub fn open_bucket(storage: &BucketStorage) -> Result<Arc<dyn ObjectStore>, VfsError> {
    let name = storage.name.as_str();
    let config_error = |what: String| VfsError::Config(format!("bucket '{name}': {what}"));
    let url =
        Url::parse(&storage.url).map_err(|e| config_error(format!("invalid storage URL: {e}")))?;
    let (scheme, prefix) = ObjectStoreScheme::parse(&url).map_err(|_| {
        config_error(match url.scheme() {
            "file" => "a file:// URL names no host: file:///absolute/dir".to_owned(),
            "s3" | "s3a" | "gs" | "az" | "adl" | "azure" | "abfs" | "abfss" => {
                format!("a {}:// URL must name the bucket", url.scheme())
            }
            other => format!(
                "unsupported storage URL scheme '{other}'; use file://, s3://, gs:// or az://"
            ),
        })
    })?;
    tracing::debug!(bucket = name, scheme = url.scheme(), "opening bucket store");
    let options = &storage.options;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => {
            no_options(options).map_err(config_error)?;
            let dir = url
                .to_file_path()
                .map_err(|()| config_error("file:// URL is not an absolute local path".into()))?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                config_error(format!("cannot create directory {}: {e}", dir.display()))
            })?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| config_error(format!("cannot open {}: {e}", dir.display())))?
                // Deleting a directory's last object (its marker) removes the directory from
                // disk too, as it disappears from a cloud store.
                .with_automatic_cleanup(true);
            return Ok(Arc::new(store));
        }
        ObjectStoreScheme::Memory => {
            no_options(options).map_err(config_error)?;
            return Ok(Arc::new(InMemory::new()));
        }
        ObjectStoreScheme::AmazonS3 => {
            let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
            for (key, value) in options {
                let key: AmazonS3ConfigKey = parse_key(key, "s3").map_err(config_error)?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(|e| config_error(e.to_string()))?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            for (key, value) in options {
                let key: GoogleConfigKey = parse_key(key, "gs").map_err(config_error)?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(|e| config_error(e.to_string()))?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (key, value) in options {
                let key: AzureConfigKey = parse_key(key, "az").map_err(config_error)?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(|e| config_error(e.to_string()))?)
        }
        // Http (a WebDAV server, not a bucket) and any scheme object_store adds later.
        _ => {
            return Err(config_error(format!(
                "'{}' URLs cannot hold a bucket; use file://, s3://, gs:// or az://",
                url.scheme()
            )));
        }
    };
    Ok(with_prefix(store, prefix))
}

/// `store` restricted to the keys under `prefix` (the path part of a cloud URL).
fn with_prefix(store: Arc<dyn ObjectStore>, prefix: Path) -> Arc<dyn ObjectStore> {
    if prefix.is_root() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

fn no_options(options: &BTreeMap<String, String>) -> Result<(), String> {
    match options.keys().next() {
        None => Ok(()),
        Some(key) => Err(format!(
            "option '{key}' is not used by this kind of store (it takes no options)"
        )),
    }
}

/// An object_store configuration key, matched case-insensitively as object_store's own URL
/// parser does. An unknown key is an error rather than ignored: a misspelt endpoint would
/// otherwise send the bucket's traffic to AWS.
fn parse_key<K: std::str::FromStr>(key: &str, scheme: &str) -> Result<K, String> {
    key.to_ascii_lowercase()
        .parse()
        .map_err(|_| format!("unknown option '{key}' for a {scheme}:// store"))
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

/// Stores opened so far, keyed by bucket description, so every session of a gateway shares
/// one HTTP connection pool per bucket.
///
/// A bucket whose URL or options change gets a new store on next use; the old one is kept
/// (it is small, and sessions still using it keep working).
#[derive(Default)]
pub struct StoreCache {
    stores: Mutex<HashMap<StoreKey, Arc<dyn ObjectStore>>>,
}

impl StoreCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store for `storage`, opened on first use.
    pub fn get(&self, storage: &BucketStorage) -> Result<Arc<dyn ObjectStore>, VfsError> {
        let key = (
            storage.name.as_str().to_owned(),
            storage.url.clone(),
            storage.options.clone(),
        );
        // The map stays consistent even if a holder panicked: entries are inserted whole.
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = stores.get(&key) {
            return Ok(Arc::clone(store));
        }
        // Opening builds clients but sends no request, so holding the lock here is brief.
        let store = open_bucket(storage)?;
        stores.insert(key, Arc::clone(&store));
        Ok(store)
    }
}
