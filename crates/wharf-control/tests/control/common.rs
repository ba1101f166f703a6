//! Per-test databases and a running control plane to call over HTTP.

use std::path::PathBuf;

use rand::RngExt;
use reqwest::{Client, Response};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wharf_control::{AdminKeySource, ControlPlane, ControlPlaneConfig, ControlPlaneOptions};
use wharf_core::api::HostKey;

/// Where the PostgreSQL tests create their databases.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// An ed25519 key (its private half was thrown away).
pub const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOg1F+/tvgtP97Py6h1YOqMj6LRkMYLb8zXrFmMDp1kZ alice@laptop";
/// Another ed25519 key.
pub const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIApET0wvqJBVOAGLtmolLFgNReiJ+gfZOrZIHu+gkdZO other@host";

pub const GATEWAY_TOKEN: &str = "wgt_test_gateway_token_0123456789";
pub const PUBLIC_HOST: &str = "sftp.example.test";

/// A database of its own for one test: a SQLite file in a temp dir, or a fresh PostgreSQL
/// database that is dropped when this value is (best effort).
pub struct TestDb {
    pub url: String,
    postgres: Option<(String, String)>,
    _dir: Option<TempDir>,
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("wharf.db").display());
        TestDb {
            url,
            postgres: None,
            _dir: Some(dir),
        }
    }

    /// A new database on the PostgreSQL server of `WHARF_TEST_POSTGRES_URL` (default
    /// 127.0.0.1:5432, user postgres, trust auth). Panics if the server cannot be reached.
    pub async fn postgres() -> TestDb {
        let admin_url = std::env::var("WHARF_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin_url}: {e}\n\
                 The control-plane tests run every database test on PostgreSQL too. Start a \
                 server on 127.0.0.1:5432 that lets user 'postgres' in without a password \
                 (trust), or point WHARF_TEST_POSTGRES_URL at one where the user may CREATE \
                 DATABASE."
            )
        });
        let name = format!("wharf_test_{}", random_suffix());
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("WHARF_TEST_POSTGRES_URL is a URL");
        url.set_path(&format!("/{name}"));
        TestDb {
            url: url.to_string(),
            postgres: Some((admin_url, name)),
            _dir: None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with a
        // runtime of its own. FORCE ends the connections the test's pool still holds.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if let Err(e) = admin.execute(AssertSqlSafe(sql)).await {
                        eprintln!("cannot drop the test database {name}: {e}");
                    }
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// The control plane's configuration for a test: data and default bucket in `data_dir`.
pub fn config(db: &TestDb, data_dir: &std::path::Path) -> ControlPlaneConfig {
    ControlPlaneConfig {
        database_url: db.url.clone(),
        data_dir: data_dir.to_owned(),
        default_bucket_url: format!("file://{}", data_dir.join("buckets").display()),
        public_host: PUBLIC_HOST.to_owned(),
        sftp_port: 2222,
        ftps_port: 2121,
        ftps_implicit_port: 2990,
        gateway_token: GATEWAY_TOKEN.to_owned(),
        host_keys: vec![HostKey {
            algorithm: "ssh-ed25519".into(),
            fingerprint: "SHA256:vB+bEyONOIRhyDTzUqfKNLfpxpa+B2kwTaM58YmIiJQ".into(),
        }],
        // Where `wharf serve` keeps its generated one; absent unless a test writes it.
        ftps_certificate_file: Some(data_dir.join("tls").join("ftps-cert.pem")),
        secret_keys: secret_keys(),
    }
}

/// The secrets key of every test control plane (replicas on one database share it).
pub const SECRETS_KEY: &str = "q2Vx0b8mKp3hJ7n4Tz9wLs6uYc1eRf5gAi8oDk2vBnM=";

pub fn secret_keys() -> std::sync::Arc<wharf_control::SecretKeys> {
    std::sync::Arc::new(wharf_control::SecretKeys::parse(SECRETS_KEY, "test").unwrap())
}

/// A control plane serving HTTP on a random loopback port, with an admin key.
pub struct TestApp {
    pub base: String,
    pub key: String,
    pub http: Client,
    pub control: ControlPlane,
    pub data_dir: TempDir,
    server: JoinHandle<()>,
    // Last: the database outlives the server.
    pub db: TestDb,
}

async fn serve(control: &ControlPlane) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // With the peer's address, as `wharf serve` runs it (events carry it as `clientIp`).
    let router = control
        .router()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (base, server)
}

impl TestApp {
    pub async fn spawn(db: TestDb) -> TestApp {
        Self::spawn_with(db, ControlPlaneOptions::default()).await
    }

    /// A control plane opened with `options`.
    pub async fn spawn_with(db: TestDb, options: ControlPlaneOptions) -> TestApp {
        let data_dir = tempfile::tempdir().unwrap();
        let control = ControlPlane::open_with(config(&db, data_dir.path()), options)
            .await
            .expect("the control plane opens");
        let key = format!("wharf_test_{}{}", random_suffix(), random_suffix());
        assert_eq!(
            control.bootstrap_admin_key(Some(&key)).await.unwrap(),
            AdminKeySource::FromEnvironment
        );
        let (base, server) = serve(&control).await;
        TestApp {
            base,
            key,
            // No connection reuse: a server that answers 413 before reading a body closes that
            // connection, and a pooled client would send the next request into it.
            http: Client::builder().pool_max_idle_per_host(0).build().unwrap(),
            control,
            data_dir,
            server,
            db,
        }
    }

    /// Stops this control plane (its background tasks, its HTTP server) and opens a new one on
    /// the same database and data directory, as a restart would.
    pub async fn restart(&mut self, options: ControlPlaneOptions) {
        self.control.shutdown().await;
        self.server.abort();
        let _ = (&mut self.server).await;
        self.control = ControlPlane::open_with(config(&self.db, self.data_dir.path()), options)
            .await
            .expect("the control plane opens again");
        let (base, server) = serve(&self.control).await;
        self.base = base;
        self.server = server;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The default bucket's directory on disk.
    pub fn bucket_dir(&self) -> PathBuf {
        self.data_dir.path().join("buckets")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.http
            .patch(self.url(path))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    /// Creates a user and returns the 201 body.
    pub async fn create_user(&self, body: Value) -> Value {
        let response = self.post("/v1/users", &body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 201, "creating {body}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// A root user (home `/`, which needs no directory to be created).
    pub async fn create_root_user(&self, username: &str) -> Value {
        self.create_user(serde_json::json!({
            "description": format!("Test user {username}"),
            "homeDirectory": "/",
            "username": username,
        }))
        .await
    }

    pub async fn gateway_login(&self, token: Option<&str>, body: &Value) -> Response {
        let mut request = self.http.post(self.url("/internal/v1/login")).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Asserts `response` is a problem document with `status` (and, if given, an error naming
/// `field`); returns the document.
pub async fn expect_problem(response: Response, status: u16, field: Option<&str>) -> Value {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(
        actual, status,
        "expected HTTP {status}, got {actual}: {text}"
    );
    assert_eq!(content_type, "application/problem+json", "{text}");
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(problem["status"], status, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .starts_with("https://wharf.dev/problems/"),
        "{problem}"
    );
    assert!(problem["title"].is_string(), "{problem}");
    if let Some(field) = field {
        let named = problem["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["field"] == field));
        assert!(named, "expected an error naming {field}: {problem}");
    }
    problem
}
