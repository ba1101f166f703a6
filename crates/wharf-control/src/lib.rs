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
//! - [`ControlPlane::event_sink`]: the file-event contract in-process (the gateways of
//!   `wharf serve`); separate gateways use `/internal/v1/events` and `/internal/v1/uploads…`.
//! - Background tasks, stopped by [`ControlPlane::shutdown`] or when the last clone is dropped:
//!   the webhook delivery worker ([`delivery`]) and the reconciler of pending uploads.
//! - [`store::Store`]: all SQL lives there.

mod admin_key;
mod api;
mod certificate;
pub mod defender;
pub mod delivery;
pub mod events;
mod local_root;
mod login;
mod metrics;
mod options;
mod passwords;
pub mod secrets;
pub mod store;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};
use wharf_core::api::HostKey;
use wharf_core::{EventSink, LoginProvider};
use wharf_vfs::StoreCache;

pub use admin_key::AdminKeySource;
pub use api::public_storage_url;
pub use certificate::certificate_sha256;
pub use local_root::LocalBucketRoot;
pub use options::{ControlPlaneOptions, DefenderOptions, LoopGuard, RetrySchedule};
pub use secrets::SecretKeys;

use crate::api::AppState;
use crate::defender::Defender;
use crate::events::DatabaseEvents;
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
    /// The FTPS certificate (PEM) whose SHA-256 fingerprint `GET /v1/server` shows; read on
    /// each request, so a renewed certificate shows at once. `None`: not known here.
    pub ftps_certificate_file: Option<PathBuf>,
    /// The keys that seal webhook secrets and bucket options in the database
    /// ([`secrets::SecretKeys`]): every control plane on one database needs the same.
    pub secret_keys: Arc<SecretKeys>,
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
            .field("ftps_certificate_file", &self.ftps_certificate_file)
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
    #[error("secrets key: {0}")]
    Secrets(#[from] secrets::PrepareError),
    #[error("cannot build the webhook HTTP client: {0}")]
    Http(#[from] reqwest::Error),
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

/// The control plane's background tasks; aborted when dropped.
#[derive(Default)]
pub(crate) struct BackgroundTasks {
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl BackgroundTasks {
    fn push(&self, task: tokio::task::JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    /// Aborts every task and waits until they are gone.
    async fn stop(&self) {
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

impl ControlPlane {
    /// Connects to the database, brings its schema up to date and makes sure the bucket
    /// `default` exists with `default_bucket_url`. Uses the default [`ControlPlaneOptions`].
    pub async fn open(config: ControlPlaneConfig) -> Result<Self, ControlError> {
        Self::open_with(config, ControlPlaneOptions::default()).await
    }

    /// [`ControlPlane::open`] with options; also starts the webhook delivery worker and the
    /// reconciler of pending uploads (stopped by [`ControlPlane::shutdown`] or when the last
    /// clone of the control plane, its router included, is dropped).
    pub async fn open_with(
        config: ControlPlaneConfig,
        options: ControlPlaneOptions,
    ) -> Result<Self, ControlError> {
        if url::Url::parse(&config.default_bucket_url).is_err() {
            return Err(ControlError::Config(format!(
                "the default bucket URL '{}' is not a URL (expected file:///…, s3://…, gs://… \
                 or az://…)",
                public_storage_url(&config.default_bucket_url)
            )));
        }
        let local_root = LocalBucketRoot::new(
            &options
                .local_bucket_root
                .clone()
                .unwrap_or_else(|| config.data_dir.join("buckets")),
            &config.data_dir,
        )
        .map_err(ControlError::Config)?;
        let mut store = Store::connect(&config.database_url).await?;
        store.set_secret_keys(config.secret_keys.clone());
        secrets::prepare(&store, &config.secret_keys).await?;
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
        let wake = Arc::new(tokio::sync::Notify::new());
        let events = Arc::new(DatabaseEvents::new(store.clone(), &options, wake.clone()));
        let defender = Defender::new(store.clone(), options.defender.clone(), metrics.clone());
        let login = Arc::new(DatabaseLogin::new(
            store.clone(),
            metrics.clone(),
            defender.clone(),
            events.clone(),
        ));
        let gateway_token_digest = if config.gateway_token.is_empty() {
            Vec::new()
        } else {
            Sha256::digest(config.gateway_token.as_bytes()).to_vec()
        };
        let stores = Arc::new(StoreCache::new());
        sweep_every_bucket(&store, &stores).await;
        let worker = Arc::new(delivery::Worker {
            store: store.clone(),
            options: options.clone(),
            http: delivery::http_client(&options)?,
            wake,
            id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            claims: Default::default(),
        });
        let tasks = BackgroundTasks::default();
        tasks.push(tokio::spawn(worker.clone().run()));
        tasks.push(tokio::spawn(forget_old_scores_forever(defender)));
        tasks.push(tokio::spawn(reconcile_forever(
            store.clone(),
            stores.clone(),
            events.clone(),
            options.clone(),
        )));
        Ok(ControlPlane {
            state: Arc::new(AppState {
                config,
                options,
                store,
                stores,
                metrics,
                login,
                events,
                worker_id: worker.id.clone(),
                local_root,
                tasks,
                gateway_token_digest,
            }),
        })
    }

    /// Stops the background tasks (delivery worker, reconciler) and hands the deliveries this
    /// process was sending back to the outbox, so another control plane sends them at once.
    /// The HTTP API keeps working; webhooks are not delivered by this process any more.
    pub async fn shutdown(&self) {
        // The upload settles still running in the background end first.
        self.state.events.barrier().await;
        self.state.tasks.stop().await;
        if let Err(e) = self.state.store.release_claims(&self.state.worker_id).await {
            tracing::warn!(error = %e, "cannot release the claimed webhook deliveries");
        }
    }

    /// The file-event contract in-process (for the gateways of `wharf serve`): records events
    /// and pending uploads in the database with their webhook deliveries.
    pub fn event_sink(&self) -> Arc<dyn EventSink> {
        self.state.events.clone()
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
    pub fn openapi() -> serde_json::Value {
        api::openapi()
    }

    /// The database, for tools and tests.
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The options it runs with.
    pub fn options(&self) -> &ControlPlaneOptions {
        &self.state.options
    }
}

/// Deletes the defender's rows nobody needs any more, hourly.
async fn forget_old_scores_forever(defender: Defender) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60 * 60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match defender.forget_old().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "forgot old failed-login scores"),
            Err(e) => tracing::warn!(error = %e, "cannot forget old failed-login scores"),
        }
    }
}

/// Settles stale pending uploads every `reconcile_interval`.
async fn reconcile_forever(
    store: Store,
    stores: Arc<StoreCache>,
    events: Arc<DatabaseEvents>,
    options: ControlPlaneOptions,
) {
    let mut every = tokio::time::interval(options.reconcile_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = events::reconcile_once(&store, &stores, &events, &options).await {
            tracing::warn!(error = %e, "cannot settle stale pending upload events");
        }
    }
}
