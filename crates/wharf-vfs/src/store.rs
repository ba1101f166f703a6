//! Opening bucket stores from their [`BucketStorage`] description.

use std::sync::Arc;

use object_store::ObjectStore;
use wharf_core::{BucketStorage, HomeDirectory};

use crate::VfsError;

/// Opens the object store a bucket lives in: `file:///abs/dir` (created if missing; empty
/// parent directories are cleaned up on delete), `s3://bucket`, `gs://bucket`, `az://container`
/// (options: object_store's configuration keys, e.g. `aws_endpoint`, `aws_access_key_id`,
/// `aws_allow_http`, `aws_virtual_hosted_style_request`; plus the usual environment).
pub fn open_bucket(storage: &BucketStorage) -> Result<Arc<dyn ObjectStore>, VfsError> {
    let _ = storage;
    todo!()
}

/// Creates `home` (and its parents) in `store` as directories, so a new user's home exists and
/// is listed even while empty. A no-op for `/` and for directories that exist already.
pub async fn create_home(store: &dyn ObjectStore, home: &HomeDirectory) -> Result<(), VfsError> {
    let _ = (store, home);
    todo!()
}

/// Stores opened so far, keyed by bucket description, so every session of a gateway shares
/// one HTTP connection pool per bucket.
#[derive(Default)]
pub struct StoreCache {}

impl StoreCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The store for `storage`, opened on first use.
    pub fn get(&self, storage: &BucketStorage) -> Result<Arc<dyn ObjectStore>, VfsError> {
        let _ = storage;
        todo!()
    }
}
