//! [`Store`]: the control plane's SQL database (users, buckets, API keys; events, webhooks
//! and their deliveries in [`events`]).
//!
//! One code path serves SQLite and PostgreSQL through sqlx's `Any` driver. That driver carries
//! only integers, floats, text and blobs, so the schema stores timestamps as unix milliseconds,
//! booleans as 0/1 and lists as JSON text; queries use `$N` placeholders only (`?` and
//! `QueryBuilder<Any>` break PostgreSQL). The dialects differ only in their DDL, kept in
//! `migrations/sqlite` and `migrations/postgres`. Nothing outside this module writes SQL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};
use wharf_core::{BucketName, BucketStorage, HomeDirectory, Permissions, Username};

use crate::secrets::{SecretKeys, SecretsError};

mod bans;
mod direct;
pub mod events;
mod sealed;

pub use bans::{BanRecord, Score};

pub use events::{
    AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryRecord, DeliveryStatus, EventFilter,
    EventStatus, NewWebhook, OutboxPolicy, PendingEvent, RetryOutcome, SettleOutcome,
    WebhookChanges, WebhookFilterRecord, WebhookRecord,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");

/// How long a SQLite connection waits for another writer before failing with "database is locked".
const SQLITE_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000";
/// In WAL mode, NORMAL syncs the log at checkpoints instead of at every commit: a commit
/// survives a crash of the process (the log is written before the commit returns), and a
/// power loss can lose only the last commits, as it can the page-cached files of a local-disk
/// bucket (written without fsync too). FULL would make every upload's two event writes wait
/// for the disk.
const SQLITE_SYNCHRONOUS: &str = "PRAGMA synchronous = NORMAL";

/// Which database the store talks to (chosen by the URL scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A failed database operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot create the database directory {path}: {source}")]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the database at '{url}': {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row with the same key exists already.
    #[error("a row with the same key exists already")]
    Conflict,
    /// A referenced row (e.g. the user's bucket) does not exist.
    #[error("a referenced row does not exist")]
    MissingReference,
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A row that this version cannot read (edited by hand, or written by a newer version).
    #[error("unreadable row in table {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// A sealed secret that the secrets key file cannot open.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Conflict;
            }
            if db.is_foreign_key_violation() {
                return StoreError::MissingReference;
            }
        }
        StoreError::Database(e)
    }
}

/// A bucket: where home directories live.
#[derive(Clone, PartialEq, Eq)]
pub struct BucketRecord {
    pub name: BucketName,
    /// The object_store URL, possibly with credentials: never show it unredacted.
    pub url: String,
    /// object_store configuration options (may hold credentials).
    pub options: BTreeMap<String, String>,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
}

impl BucketRecord {
    /// What a gateway needs to open this bucket.
    pub fn storage(&self) -> BucketStorage {
        BucketStorage {
            name: self.name.clone(),
            url: self.url.clone(),
            options: self.options.clone(),
        }
    }
}

impl std::fmt::Debug for BucketRecord {
    // The URL and options may carry credentials: never log them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketRecord")
            .field("name", &self.name)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("is_default", &self.is_default)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// What [`Store::delete_bucket`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketDeletion {
    Deleted,
    NotFound,
    /// The default bucket cannot be deleted (it is configured with `--bucket-url`).
    IsDefault,
    /// Users still live in it.
    InUse {
        users: i64,
    },
}

/// A user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: Username,
    pub description: String,
    pub home_directory: HomeDirectory,
    pub bucket_name: BucketName,
    pub permissions: Permissions,
    /// argon2id PHC string.
    pub password_hash: String,
    /// OpenSSH public key lines.
    pub public_keys: Vec<String>,
    pub disabled: bool,
    /// `false`: the password does not log in (public keys only).
    pub password_enabled: bool,
    /// Most concurrent sessions (enforced by the gateways).
    pub max_sessions: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_connected_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("home_directory", &self.home_directory)
            .field("bucket_name", &self.bucket_name)
            .field("permissions", &self.permissions)
            .field("disabled", &self.disabled)
            .field("password_enabled", &self.password_enabled)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

/// A user to insert.
#[derive(Clone)]
pub struct NewUser {
    pub username: Username,
    pub description: String,
    pub home_directory: HomeDirectory,
    pub bucket_name: BucketName,
    pub permissions: Permissions,
    pub password_hash: String,
    pub password_enabled: bool,
    pub public_keys: Vec<String>,
    pub max_sessions: u32,
    pub created_at: DateTime<Utc>,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub description: Option<String>,
    pub home_directory: Option<HomeDirectory>,
    pub permissions: Option<Permissions>,
    pub public_keys: Option<Vec<String>>,
    pub disabled: Option<bool>,
    pub password_enabled: Option<bool>,
    pub max_sessions: Option<u32>,
}

/// An API key as stored (its hash only; the key itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    /// The first characters of the key, to tell keys apart in listings.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
}

/// An API key to insert.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub prefix: String,
    /// SHA-256 hex of the key.
    pub hash: String,
}

/// The control plane's database. Cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// On a SQLite file, the connection that upload events are written through first (see
    /// [`direct`]).
    direct: Option<Arc<direct::DirectSqlite>>,
    /// What seals webhook secrets and bucket options ([`crate::secrets`]); without it (a store
    /// opened by a unit test) they are kept in clear.
    secrets: Option<Arc<SecretKeys>>,
}

// Macros rather than consts so that queries stay `&'static str` (sqlx's `SqlSafeStr`).
macro_rules! user_columns {
    () => {
        "username, description, home_directory, bucket_name, permissions, password_hash, \
         public_keys, disabled, password_enabled, max_sessions, created_at, updated_at, \
         last_connected_at"
    };
}
/// `%text%` for a case-insensitive `LIKE … ESCAPE '!'` that matches `text` literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

macro_rules! bucket_columns {
    () => {
        "name, url, options, is_default, created_at"
    };
}

impl Store {
    /// Connects to `url` (`sqlite:///abs/path/wharf.db`, created if missing; or
    /// `postgres://…`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with_patience(url, CONNECT_PATIENCE).await
    }

    async fn connect_with_patience(url: &str, patience: Duration) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, connect_url, file) = prepare_url(url)?;
        let in_memory = backend == Backend::Sqlite && file.is_none();
        if !in_memory {
            // The pool would only report "timed out"; one plain connection first surfaces the
            // cause (refused, bad password, no such database) and waits for a starting server.
            first_connection(&connect_url, patience)
                .await
                .map_err(|source| StoreError::Connect {
                    url: redact_url(url),
                    source,
                })?;
        }
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match (backend, in_memory) {
            // Every connection to `sqlite::memory:` is its own empty database: keep exactly one,
            // forever.
            (Backend::Sqlite, true) => options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None),
            // No ping before every acquire: a connection to a local file cannot go stale, and
            // the ping is a round trip to the connection's worker thread that doubled the
            // database work of every upload (an upload's two event writes are on the path of
            // the partner's CLOSE).
            (Backend::Sqlite, false) => options.max_connections(8).test_before_acquire(false),
            (Backend::Postgres, _) => options.max_connections(16),
        };
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(SQLITE_BUSY_TIMEOUT).await?;
                    conn.execute(SQLITE_SYNCHRONOUS).await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(&connect_url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact_url(url),
                source,
            })?;
        if backend == Backend::Sqlite && !in_memory {
            // WAL lets readers proceed while one connection writes; the mode is stored in the
            // database file, so setting it once per start is enough.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let direct = match file.filter(|f| f.writable) {
            Some(file) => match direct::DirectSqlite::open(&file.path) {
                Ok(direct) => Some(Arc::new(direct)),
                Err(e) => {
                    // Everything still works through the pool, only slower.
                    tracing::warn!(error = %e, "cannot open the direct SQLite connection");
                    None
                }
            },
            None => None,
        };
        Ok(Store {
            pool,
            backend,
            direct,
            secrets: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `SELECT 1`: is the database answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection (waits for the ones in use).
    pub async fn close(&self) {
        if let Some(direct) = &self.direct {
            direct.close();
        }
        self.pool.close().await;
    }

    /// Runs `write` through the direct lane now, if there is one and it is free (see
    /// [`direct`]); `None`: nothing was written, use the pool. Every
    /// [`direct::CHECKPOINT_EVERY`] writes it starts a passive checkpoint through the pool,
    /// since the lane itself never checkpoints.
    fn write_direct<T>(
        &self,
        what: &'static str,
        write: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let direct = self.direct.as_ref()?;
        let value = direct.try_write(what, write)?;
        if direct.checkpoint_due() {
            let (pool, direct) = (self.pool.clone(), direct.clone());
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        if let Err(e) = checkpoint(&pool).await {
                            tracing::warn!(error = %e, "SQLite checkpoint failed");
                        }
                        direct.checkpoint_done();
                    });
                }
                // Outside a runtime the pool's own connections checkpoint when they write.
                Err(_) => direct.checkpoint_done(),
            }
        }
        Some(value)
    }

    // ---------------------------------------------------------------------------------------
    // Buckets

    /// Makes sure the bucket `default` exists, is the default and points at `url`. Returns the
    /// URL it had before when that was different (the operator changed `--bucket-url`).
    pub async fn ensure_default_bucket(&self, url: &str) -> Result<Option<String>, StoreError> {
        let name = BucketName::default_bucket();
        let previous = self.get_bucket(&name).await?;
        // One statement, so control planes starting together cannot both insert.
        sqlx::query(
            "INSERT INTO buckets (name, url, options, is_default, created_at) \
             VALUES ($1, $2, '{}', 1, $3) \
             ON CONFLICT (name) DO UPDATE SET url = excluded.url",
        )
        .bind(name.as_str())
        .bind(url)
        .bind(to_millis(now()))
        .execute(&self.pool)
        .await?;
        Ok(previous.map(|b| b.url).filter(|old| old != url))
    }

    /// Adds a bucket (not the default). [`StoreError::Conflict`] if the name is taken.
    pub async fn insert_bucket(
        &self,
        name: &BucketName,
        url: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<BucketRecord, StoreError> {
        let created_at = now();
        let options_json = self.seal_options(name, options);
        sqlx::query(
            "INSERT INTO buckets (name, url, options, is_default, created_at) \
             VALUES ($1, $2, $3, 0, $4)",
        )
        .bind(name.as_str())
        .bind(url)
        .bind(options_json)
        .bind(to_millis(created_at))
        .execute(&self.pool)
        .await?;
        Ok(BucketRecord {
            name: name.clone(),
            url: url.to_owned(),
            options: options.clone(),
            is_default: false,
            created_at,
        })
    }

    pub async fn get_bucket(&self, name: &BucketName) -> Result<Option<BucketRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            bucket_columns!(),
            " FROM buckets WHERE name = $1"
        ))
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| bucket_from_row(self, &r)).transpose()
    }

    /// The bucket users go to when created without a `bucketName`.
    pub async fn default_bucket(&self) -> Result<Option<BucketRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            bucket_columns!(),
            " FROM buckets WHERE is_default = 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| bucket_from_row(self, &r)).transpose()
    }

    /// All buckets, by name.
    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            bucket_columns!(),
            " FROM buckets ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| bucket_from_row(self, r)).collect()
    }

    /// Removes a bucket that is not the default and that no user lives in. The objects in its
    /// store are not touched.
    pub async fn delete_bucket(&self, name: &BucketName) -> Result<BucketDeletion, StoreError> {
        // Deleting only when no user refers to it, in one statement: a user created at the same
        // moment either lands first (and the statement deletes nothing) or fails on the foreign
        // key. A delete that loses that race the other way round fails on the key too.
        for _ in 0..3 {
            let result = sqlx::query(
                "DELETE FROM buckets WHERE name = $1 AND is_default = 0 \
                 AND NOT EXISTS (SELECT 1 FROM users WHERE bucket_name = $1)",
            )
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from);
            match result {
                Ok(done) if done.rows_affected() > 0 => return Ok(BucketDeletion::Deleted),
                Ok(_) | Err(StoreError::MissingReference) => {}
                Err(e) => return Err(e),
            }
            // Why not?
            let Some(bucket) = self.get_bucket(name).await? else {
                return Ok(BucketDeletion::NotFound);
            };
            if bucket.is_default {
                return Ok(BucketDeletion::IsDefault);
            }
            let users = self.count_users_in_bucket(name).await?;
            if users > 0 {
                return Ok(BucketDeletion::InUse { users });
            }
            // Its last user went away meanwhile: try again.
        }
        Err(StoreError::Conflict)
    }

    /// How many users live in the bucket.
    pub async fn count_users_in_bucket(&self, name: &BucketName) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE bucket_name = $1")
            .bind(name.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    // ---------------------------------------------------------------------------------------
    // Users

    /// Inserts a user. [`StoreError::Conflict`] if the username is taken,
    /// [`StoreError::MissingReference`] if the bucket does not exist.
    pub async fn insert_user(&self, user: &NewUser) -> Result<UserRecord, StoreError> {
        let created_at = truncate_to_millis(user.created_at);
        sqlx::query(
            "INSERT INTO users (username, description, home_directory, bucket_name, permissions, \
             password_hash, public_keys, disabled, password_enabled, max_sessions, created_at, \
             updated_at, last_connected_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $10, $9, $8, $8, NULL)",
        )
        .bind(user.username.as_str())
        .bind(&user.description)
        .bind(user.home_directory.as_str())
        .bind(user.bucket_name.as_str())
        .bind(user.permissions.as_str())
        .bind(&user.password_hash)
        .bind(keys_to_json(&user.public_keys))
        .bind(to_millis(created_at))
        .bind(i64::from(user.max_sessions))
        .bind(i64::from(user.password_enabled))
        .execute(&self.pool)
        .await?;
        Ok(UserRecord {
            username: user.username.clone(),
            description: user.description.clone(),
            home_directory: user.home_directory.clone(),
            bucket_name: user.bucket_name.clone(),
            permissions: user.permissions,
            password_hash: user.password_hash.clone(),
            public_keys: user.public_keys.clone(),
            disabled: false,
            password_enabled: user.password_enabled,
            max_sessions: user.max_sessions,
            created_at,
            updated_at: created_at,
            last_connected_at: None,
        })
    }

    pub async fn get_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        ))
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// A user and its bucket, for a login.
    pub async fn get_user_with_bucket(
        &self,
        username: &Username,
    ) -> Result<Option<(UserRecord, BucketRecord)>, StoreError> {
        let row = sqlx::query(
            "SELECT u.username, u.description, u.home_directory, u.bucket_name, u.permissions, \
             u.password_hash, u.public_keys, u.disabled, u.password_enabled, u.max_sessions, \
             u.created_at, u.updated_at, u.last_connected_at, b.name, b.url, b.options, \
             b.is_default, \
             b.created_at AS bucket_created_at \
             FROM users u JOIN buckets b ON b.name = u.bucket_name WHERE u.username = $1",
        )
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user = user_from_row(&row)?;
        let bucket = BucketRecord {
            name: parse_column(&row, "name", "buckets", BucketName::parse)?,
            url: row.try_get("url")?,
            options: self.open_options(&row)?,
            is_default: row.try_get::<i64, _>("is_default")? != 0,
            created_at: from_millis(row.try_get("bucket_created_at")?, "buckets")?,
        };
        Ok(Some((user, bucket)))
    }

    /// Up to `limit` users with a username after `after` (all when `None`), by username.
    pub async fn list_users(
        &self,
        after: Option<&Username>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, StoreError> {
        self.search_users(after, None, limit).await
    }

    /// Users after `after` (by username) whose username, description or home directory
    /// contains `search` (case-insensitive for ASCII), in username order.
    pub async fn search_users(
        &self,
        after: Option<&Username>,
        search: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, StoreError> {
        // One static statement: no `after` is "after the empty name", no search is "".
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username > $1 \
             AND ($2 = '' OR LOWER(username) LIKE $2 ESCAPE '!' \
                  OR LOWER(description) LIKE $2 ESCAPE '!' \
                  OR LOWER(home_directory) LIKE $2 ESCAPE '!') \
             ORDER BY username LIMIT $3"
        ))
        .bind(after.map_or("", |a| a.as_str()))
        .bind(search.map(like_pattern).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn count_users(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// Applies `changes` and sets `updated_at`; `None` if there is no such user.
    pub async fn update_user(
        &self,
        username: &Username,
        changes: &UserChanges,
        now: DateTime<Utc>,
    ) -> Result<Option<UserRecord>, StoreError> {
        // COALESCE keeps a column when its parameter is NULL: one statement for any subset of
        // changes, without building SQL strings.
        let result = sqlx::query(
            "UPDATE users SET \
             description = COALESCE($2, description), \
             home_directory = COALESCE($3, home_directory), \
             permissions = COALESCE($4, permissions), \
             public_keys = COALESCE($5, public_keys), \
             disabled = COALESCE($6, disabled), \
             max_sessions = COALESCE($8, max_sessions), \
             password_enabled = COALESCE($9, password_enabled), \
             updated_at = $7 \
             WHERE username = $1",
        )
        .bind(username.as_str())
        .bind(changes.description.as_deref())
        .bind(changes.home_directory.as_ref().map(HomeDirectory::as_str))
        .bind(changes.permissions.map(Permissions::as_str))
        .bind(changes.public_keys.as_deref().map(keys_to_json))
        .bind(changes.disabled.map(i64::from))
        .bind(to_millis(now))
        .bind(changes.max_sessions.map(i64::from))
        .bind(changes.password_enabled.map(i64::from))
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_user(username).await
    }

    /// Replaces the password hash; `false` if there is no such user.
    pub async fn set_password_hash(
        &self,
        username: &Username,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result =
            sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE username = $1")
                .bind(username.as_str())
                .bind(password_hash)
                .bind(to_millis(now))
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Records a successful login.
    pub async fn touch_last_connected(
        &self,
        username: &Username,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET last_connected_at = $2 WHERE username = $1")
            .bind(username.as_str())
            .bind(to_millis(at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a user; `false` if there was none.
    pub async fn delete_user(&self, username: &Username) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    // ---------------------------------------------------------------------------------------
    // API keys

    /// Stores a key unless one with the same hash exists; `true` if it was added.
    pub async fn insert_api_key_if_absent(&self, key: &NewApiKey) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(to_millis(now()))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// The key whose SHA-256 hex is `hash`.
    pub async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT id, name, prefix, created_at FROM api_keys WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(ApiKeyRecord {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                prefix: row.try_get("prefix")?,
                created_at: from_millis(row.try_get("created_at")?, "api_keys")?,
            })
        })
        .transpose()
    }

    pub async fn count_api_keys(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }
}

/// How long [`Store::connect`] keeps retrying while the server refuses connections (e.g. a
/// PostgreSQL container that is still starting).
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

async fn first_connection(url: &str, patience: Duration) -> Result<(), sqlx::Error> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match AnyConnection::connect(url).await {
            Ok(connection) => {
                let _ = connection.close().await;
                return Ok(());
            }
            // Refused or unreachable: retry. Anything else (authentication, missing database)
            // will not fix itself.
            Err(sqlx::Error::Io(e)) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "the database is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The current time at the database's resolution (milliseconds), so that what an API call
/// returns equals what a later read returns.
pub fn now() -> DateTime<Utc> {
    truncate_to_millis(Utc::now())
}

fn truncate_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t.timestamp_millis())
        .single()
        .unwrap_or(t)
}

fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64, table: &'static str) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt {
            table,
            detail: format!("timestamp {ms} out of range"),
        })
}

fn keys_to_json(keys: &[String]) -> String {
    serde_json::to_string(keys).expect("a list of strings serialises")
}

fn parse_column<T, E: std::fmt::Display>(
    row: &AnyRow,
    column: &'static str,
    table: &'static str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    parse(&text).map_err(|e| StoreError::Corrupt {
        table,
        detail: format!("{column} {text:?}: {e}"),
    })
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    const T: &str = "users";
    let public_keys: String = row.try_get("public_keys")?;
    Ok(UserRecord {
        username: parse_column(row, "username", T, Username::parse)?,
        description: row.try_get("description")?,
        // Homes stored before reserved names were refused must still load.
        home_directory: parse_column(row, "home_directory", T, HomeDirectory::parse_existing)?,
        bucket_name: parse_column(row, "bucket_name", T, BucketName::parse)?,
        permissions: parse_column(row, "permissions", T, |s| {
            Permissions::parse(s).ok_or("unknown permissions")
        })?,
        password_hash: row.try_get("password_hash")?,
        public_keys: serde_json::from_str(&public_keys).map_err(|e| StoreError::Corrupt {
            table: T,
            detail: format!("public_keys: {e}"),
        })?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        password_enabled: row.try_get::<i64, _>("password_enabled")? != 0,
        max_sessions: {
            let n: i64 = row.try_get("max_sessions")?;
            u32::try_from(n).map_err(|_| StoreError::Corrupt {
                table: T,
                detail: format!("max_sessions {n} out of range"),
            })?
        },
        created_at: from_millis(row.try_get("created_at")?, T)?,
        updated_at: from_millis(row.try_get("updated_at")?, T)?,
        last_connected_at: row
            .try_get::<Option<i64>, _>("last_connected_at")?
            .map(|ms| from_millis(ms, T))
            .transpose()?,
    })
}

fn bucket_from_row(store: &Store, row: &AnyRow) -> Result<BucketRecord, StoreError> {
    Ok(BucketRecord {
        name: parse_column(row, "name", "buckets", BucketName::parse)?,
        url: row.try_get("url")?,
        options: store.open_options(row)?,
        is_default: row.try_get::<i64, _>("is_default")? != 0,
        created_at: from_millis(row.try_get("created_at")?, "buckets")?,
    })
}

/// Checkpoints a SQLite database's write-ahead log for the direct lane. A passive checkpoint
/// waits for nobody, but the log starts over only when a writer finds all of it copied, and
/// under a steady stream of writes (one partner's thousands of small files) the next write
/// always lands before that: the log grows without bound. So once the log is longer than
/// [`direct::LOG_FRAMES_BEFORE_RESTART`], a RESTART checkpoint follows, which makes writers
/// wait until the log can start over (the lane's fall back to the pool, whose connections
/// wait), as they wait for the pool's own automatic checkpoints.
async fn checkpoint(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    let log: i64 = row.try_get(1)?;
    if log > direct::LOG_FRAMES_BEFORE_RESTART {
        tracing::debug!(log, "restarting the SQLite write-ahead log");
        sqlx::query("PRAGMA wal_checkpoint(RESTART)")
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// A SQLite database file named by the store's URL.
#[derive(Debug, PartialEq, Eq)]
struct SqliteFile {
    path: PathBuf,
    /// Opened read-write with no other connection parameter, so a second connection
    /// opened on the path alone (the direct lane) sees the same database.
    writable: bool,
}

/// Picks the backend and returns the URL to connect with and, for a SQLite file (not an
/// in-memory database), its path. A SQLite file (and its directory) is created if missing.
fn prepare_url(url: &str) -> Result<(Backend, String, Option<SqliteFile>), StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: redact_url(url),
        reason: reason.to_owned(),
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned(), None));
    }
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(invalid(
            "expected sqlite:///path/to/wharf.db or postgres://user@host/database",
        ));
    };
    let (path, params) = match rest.split_once('?') {
        Some((path, params)) => (path, Some(params)),
        None => (rest, None),
    };
    let params: Vec<(String, String)> = params
        .map(|p| {
            url::form_urlencoded::parse(p.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let in_memory = path.is_empty()
        || path == ":memory:"
        || params.iter().any(|(k, v)| k == "mode" && v == "memory");
    if in_memory {
        return Ok((Backend::Sqlite, url.to_owned(), None));
    }
    let file = PathBuf::from(
        percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| invalid("the path is not valid UTF-8"))?
            .into_owned(),
    );
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDirectory {
            path: dir.to_owned(),
            source,
        })?;
    }
    let mut connect_url = format!("sqlite://{path}");
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &params {
        query.append_pair(k, v);
    }
    if !params.iter().any(|(k, _)| k == "mode") {
        query.append_pair("mode", "rwc");
    }
    connect_url.push('?');
    connect_url.push_str(&query.finish());
    let writable = params
        .iter()
        .all(|(k, v)| k == "mode" && (v == "rw" || v == "rwc"));
    Ok((
        Backend::Sqlite,
        connect_url,
        Some(SqliteFile {
            path: file,
            writable,
        }),
    ))
}

/// `url` without a password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        let (backend, url, file) = prepare_url("sqlite::memory:").unwrap();
        assert_eq!((backend, file), (Backend::Sqlite, None));
        assert_eq!(url, "sqlite::memory:");
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/wharf.db");
        let (_, url, file) = prepare_url(&format!("sqlite://{}", db.display())).unwrap();
        let writable = SqliteFile {
            path: db.clone(),
            writable: true,
        };
        assert_eq!(file.as_ref(), Some(&writable));
        assert_eq!(url, format!("sqlite://{}?mode=rwc", db.display()));
        assert!(dir.path().join("sub").is_dir());
        let (_, url, file) = prepare_url(&format!("sqlite://{}?mode=ro", db.display())).unwrap();
        assert_eq!(url, format!("sqlite://{}?mode=ro", db.display()));
        assert!(!file.unwrap().writable);
        let (_, _, file) = prepare_url(&format!("sqlite://{}?mode=rw", db.display())).unwrap();
        assert_eq!(file, Some(writable));
        let (_, _, file) =
            prepare_url(&format!("sqlite://{}?immutable=true", db.display())).unwrap();
        assert!(!file.unwrap().writable);
        assert!(matches!(
            prepare_url("mysql://x"),
            Err(StoreError::InvalidUrl { .. })
        ));
    }

    #[tokio::test]
    async fn unreachable_database_is_a_clear_error() {
        let started = std::time::Instant::now();
        let error = Store::connect_with_patience(
            "postgres://wharf:secret@127.0.0.1:1/wharf",
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, StoreError::Connect { .. }), "{message}");
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(message.contains("refused"), "the cause is shown: {message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://wharf:secret@db/wharf"),
            "postgres://wharf:***@db/wharf"
        );
        assert_eq!(redact_url("postgres://db/wharf"), "postgres://db/wharf");
    }
}
