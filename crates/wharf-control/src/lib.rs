//! Wharf's control plane: the REST API (axum + utoipa), the SQL store (sqlx over SQLite or
//! PostgreSQL), API keys, password hashing, and the login check the gateways rely on.
//!
//! ```no_run
//! # async fn demo(config: wharf_control::ControlPlaneConfig) -> Result<(), Box<dyn std::error::Error>> {
//! let control = wharf_control::ControlPlane::open(config).await?;
//! control.bootstrap_admin_key(std::env::var("WHARF_ADMIN_API_KEY").ok().as_deref()).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, control.router()).await?;
//! # Ok(()) }
//! ```
//!
//! - [`ControlPlane::router`]: `/v1/…` (API key), `/internal/v1/login` (gateway token),
//!   `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, `/docs`.
//! - [`ControlPlane::login_provider`]: the same login check in-process, for `wharf serve`.
//! - [`store::Store`]: all SQL lives there.

mod admin_key;
mod api;
mod login;
mod metrics;
mod passwords;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wharf_core::LoginProvider;
use wharf_core::api::HostKey;
use wharf_vfs::StoreCache;

pub use admin_key::AdminKeySource;
pub use api::public_storage_url;

use crate::api::AppState;
use crate::login::DatabaseLogin;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// How to run the control plane.
#[derive(Clone)]
pub struct ControlPlaneConfig {
    /// `sqlite:///abs/path/wharf.db` (created if missing) or `postgres://…`.
    pub database_url: String,
    /// Where the generated admin API key is written (`admin-api-key`).
    pub data_dir: PathBuf,
    /// Storage of the bucket `default`, e.g. `file:///abs/wharf-data/buckets`.
    pub default_bucket_url: String,
    /// The host name partners connect to (shown as `endpoint`).
    pub public_host: String,
    pub sftp_port: u16,
    pub ftps_port: u16,
    pub ftps_implicit_port: u16,
    /// Gateways send `Authorization: Bearer <token>` to `/internal/v1/login`.
    pub gateway_token: String,
    /// Host-key fingerprints shown by `GET /v1/server`.
    pub host_keys: Vec<HostKey>,
}

impl std::fmt::Debug for ControlPlaneConfig {
    // The database URL, bucket URL and gateway token may carry secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneConfig")
            .field("database_url", &store::redact_url(&self.database_url))
            .field("data_dir", &self.data_dir)
            .field(
                "default_bucket_url",
                &public_storage_url(&self.default_bucket_url),
            )
            .field("public_host", &self.public_host)
            .field("sftp_port", &self.sftp_port)
            .field("ftps_port", &self.ftps_port)
            .field("ftps_implicit_port", &self.ftps_implicit_port)
            .field("host_keys", &self.host_keys)
            .finish_non_exhaustive()
    }
}

/// Opens every bucket once, so that each is swept for the uploads of crashed gateways now and
/// periodically (see [`StoreCache`]), even a bucket no partner logs in to. A bucket that does
/// not open is logged and skipped: it must not stop the control plane.
async fn sweep_every_bucket(store: &Store, stores: &StoreCache) {
    let buckets = match store.list_buckets().await {
        Ok(buckets) => buckets,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list buckets to sweep orphaned uploads");
            return;
        }
    };
    for bucket in buckets {
        if let Err(e) = stores.bucket(&bucket.storage()) {
            tracing::warn!(bucket = %bucket.name, error = %e, "cannot open bucket to sweep orphaned uploads");
        }
    }
}

/// Why the control plane could not start or bootstrap.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The running control plane. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    state: Arc<AppState>,
}

impl ControlPlane {
    /// Connects to the database, brings its schema up to date and makes sure the bucket
    /// `default` exists with `default_bucket_url`.
    pub async fn open(config: ControlPlaneConfig) -> Result<Self, ControlError> {
        if url::Url::parse(&config.default_bucket_url).is_err() {
            return Err(ControlError::Config(format!(
                "the default bucket URL '{}' is not a URL (expected file:///…, s3://…, gs://… \
                 or az://…)",
                public_storage_url(&config.default_bucket_url)
            )));
        }
        let store = Store::connect(&config.database_url).await?;
        if let Some(previous) = store
            .ensure_default_bucket(&config.default_bucket_url)
            .await?
        {
            tracing::warn!(
                from = %public_storage_url(&previous),
                to = %public_storage_url(&config.default_bucket_url),
                "the default bucket now points at a different storage URL"
            );
        }
        let metrics = Metrics::new();
        if let Ok(count) = store.count_users().await {
            metrics.set_users(count);
        }
        let login = Arc::new(DatabaseLogin::new(store.clone(), metrics.clone()));
        let gateway_token_digest = if config.gateway_token.is_empty() {
            Vec::new()
        } else {
            Sha256::digest(config.gateway_token.as_bytes()).to_vec()
        };
        let stores = StoreCache::new();
        sweep_every_bucket(&store, &stores).await;
        Ok(ControlPlane {
            state: Arc::new(AppState {
                config,
                store,
                stores,
                metrics,
                login,
                gateway_token_digest,
            }),
        })
    }

    /// Makes sure an admin API key exists; see [`AdminKeySource`] for the order of sources.
    pub async fn bootstrap_admin_key(
        &self,
        env_key: Option<&str>,
    ) -> Result<AdminKeySource, ControlError> {
        admin_key::bootstrap(&self.state.store, &self.state.config.data_dir, env_key).await
    }

    /// The whole HTTP application.
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// The login check of `/internal/v1/login`, in-process.
    pub fn login_provider(&self) -> Arc<dyn LoginProvider> {
        self.state.login.clone()
    }

    /// The OpenAPI document of [`ControlPlane::router`] (committed as `openapi/openapi.json`).
    pub fn openapi() -> utoipa::openapi::OpenApi {
        api::openapi()
    }

    /// The database, for tools and tests.
    pub fn store(&self) -> &Store {
        &self.state.store
    }
}
