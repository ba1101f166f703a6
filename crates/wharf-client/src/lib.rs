//! Typed Rust client of the Wharf REST API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wharf_client::ClientError> {
//! use wharf_client::Client;
//! use wharf_core::{HomeDirectory, api::CreateUserRequest};
//!
//! let wharf = Client::new("http://127.0.0.1:8080", Some("wharf_…".into()))?;
//! let alice = wharf
//!     .create_user(&CreateUserRequest {
//!         description: "Trading partner Alice".into(),
//!         home_directory: HomeDirectory::parse("/alice").unwrap(),
//!         username: None,
//!         bucket_name: None,
//!         password_options: None,
//!         public_keys: None,
//!         permissions: None,
//!         max_sessions: None,
//!     })
//!     .await?;
//! println!("{} / {}", alice.user.username, alice.password);
//! # Ok(()) }
//! ```
//!
//! Request and response types are the ones the server itself uses (`wharf_core::api`), so the
//! client cannot drift from the API. Errors the server reports arrive as
//! [`ClientError::Api`] with the RFC 9457 problem document.

use std::time::Duration;

use futures::Stream;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use wharf_core::api::{
    Bucket, BucketList, CreateBucketRequest, CreateUserRequest, CreatedUser, NewPassword,
    PasswordOptions, Problem, ResetPasswordRequest, ServerInfo, UpdateUserRequest, User, UserList,
};
use wharf_core::{LoginError, LoginGrant, LoginProvider, LoginRequest};

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid API URL '{0}'")]
    Url(String),
    #[error("cannot reach the Wharf API: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error; `problem` says why (and which field).
    #[error("{}", describe(problem))]
    Api { status: u16, problem: Problem },
    #[error("unexpected response from the Wharf API (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },
}

fn describe(problem: &Problem) -> String {
    let mut s = format!("{} (HTTP {})", problem.title, problem.status);
    if let Some(detail) = &problem.detail {
        s.push_str(": ");
        s.push_str(detail);
    }
    for e in &problem.errors {
        s.push_str(&format!("\n  {}: {}", e.field, e.message));
    }
    s
}

impl ClientError {
    /// The HTTP status of an API error (`None` for transport errors).
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                Some(*status)
            }
            ClientError::Http(e) => e.status().map(|s| s.as_u16()),
            ClientError::Url(_) => None,
        }
    }
}

/// A client of one Wharf control plane. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    api_key: Option<String>,
}

impl Client {
    /// `base_url` like `http://127.0.0.1:8080`; `api_key` sent as `Authorization: Bearer`.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self, ClientError> {
        let mut base = Url::parse(base_url).map_err(|_| ClientError::Url(base_url.into()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Url(base_url.into()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("wharf-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            base,
            api_key,
        })
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|_| ClientError::Url(path.into()))
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let response = self.request(method, url, body).await?;
        Ok(response.json().await?)
    }

    async fn request<B: Serialize>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        check(response).await
    }

    /// Creates a user; the reply carries its password, shown this once.
    pub async fn create_user(
        &self,
        request: &CreateUserRequest,
    ) -> Result<CreatedUser, ClientError> {
        self.send(Method::POST, self.url("v1/users")?, Some(request))
            .await
    }

    /// One page of users.
    pub async fn list_users(
        &self,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<UserList, ClientError> {
        let mut url = self.url("v1/users")?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(size) = page_size {
                q.append_pair("pageSize", &size.to_string());
            }
            if let Some(token) = page_token {
                q.append_pair("pageToken", token);
            }
        }
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Every user, page after page, as a stream.
    pub fn users(&self) -> impl Stream<Item = Result<User, ClientError>> + '_ {
        use futures::TryStreamExt;
        // State: Some(token) = a page to fetch (None token = the first), None = done.
        let pages = futures::stream::try_unfold(Some(None::<String>), move |state| async move {
            let Some(token) = state else {
                return Ok::<_, ClientError>(None);
            };
            let page = self.list_users(Some(100), token.as_deref()).await?;
            Ok(Some((page.items, page.next_page_token.map(Some))))
        });
        pages
            .map_ok(|items| futures::stream::iter(items.into_iter().map(Ok)))
            .try_flatten()
    }

    pub async fn get_user(&self, username: &str) -> Result<User, ClientError> {
        let url = self.user_url(username, "")?;
        self.send::<(), _>(Method::GET, url, None).await
    }

    pub async fn update_user(
        &self,
        username: &str,
        request: &UpdateUserRequest,
    ) -> Result<User, ClientError> {
        let url = self.user_url(username, "")?;
        self.send(Method::PATCH, url, Some(request)).await
    }

    /// Deletes a user; its files stay in the bucket.
    pub async fn delete_user(&self, username: &str) -> Result<(), ClientError> {
        let url = self.user_url(username, "")?;
        self.request::<()>(Method::DELETE, url, None).await?;
        Ok(())
    }

    /// Replaces the user's password with a new generated one, returned this once.
    pub async fn reset_password(
        &self,
        username: &str,
        options: Option<PasswordOptions>,
    ) -> Result<NewPassword, ClientError> {
        let url = self.user_url(username, "/password")?;
        let body = ResetPasswordRequest {
            password_options: options,
        };
        self.send(Method::POST, url, Some(&body)).await
    }

    pub async fn list_buckets(&self) -> Result<BucketList, ClientError> {
        self.send::<(), _>(Method::GET, self.url("v1/buckets")?, None)
            .await
    }

    pub async fn get_bucket(&self, name: &str) -> Result<Bucket, ClientError> {
        let url = self.bucket_url(name)?;
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Registers a bucket that exists in its object store; the server lists it once first and
    /// answers 422 (with what failed) if it cannot. The options are never shown again.
    pub async fn create_bucket(
        &self,
        request: &CreateBucketRequest,
    ) -> Result<Bucket, ClientError> {
        self.send(Method::POST, self.url("v1/buckets")?, Some(request))
            .await
    }

    /// Deletes a bucket from Wharf; its objects stay in the store. Refused (409) for the
    /// default bucket and for buckets users still live in.
    pub async fn delete_bucket(&self, name: &str) -> Result<(), ClientError> {
        let url = self.bucket_url(name)?;
        self.request::<()>(Method::DELETE, url, None).await?;
        Ok(())
    }

    fn bucket_url(&self, name: &str) -> Result<Url, ClientError> {
        let mut url = self.url("v1/buckets")?;
        // push() percent-encodes, so a hostile name cannot change the path.
        url.path_segments_mut()
            .map_err(|_| ClientError::Url(name.into()))?
            .push(name);
        Ok(url)
    }

    /// How partners reach this installation (host, ports, host-key fingerprints).
    pub async fn server_info(&self) -> Result<ServerInfo, ClientError> {
        self.send::<(), _>(Method::GET, self.url("v1/server")?, None)
            .await
    }

    fn user_url(&self, username: &str, suffix: &str) -> Result<Url, ClientError> {
        let mut url = self.url("v1/users")?;
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| ClientError::Url(username.into()))?;
            // push() percent-encodes, so a hostile name cannot change the path.
            segments.push(username);
            if let Some(rest) = suffix.strip_prefix('/') {
                segments.push(rest);
            }
        }
        Ok(url)
    }
}

async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    match serde_json::from_str::<Problem>(&body) {
        Ok(problem) => Err(ClientError::Api {
            status: status.as_u16(),
            problem,
        }),
        Err(_) => Err(ClientError::Unexpected {
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        }),
    }
}

/// The gateways' view of the control plane: `POST /internal/v1/login` with the gateway token.
#[derive(Clone)]
pub struct HttpLoginProvider {
    http: reqwest::Client,
    url: Url,
    token: String,
}

impl HttpLoginProvider {
    pub fn new(control_plane_url: &str, gateway_token: String) -> Result<Self, ClientError> {
        let base = Url::parse(control_plane_url)
            .map_err(|_| ClientError::Url(control_plane_url.into()))?;
        let url = base
            .join("/internal/v1/login")
            .map_err(|_| ClientError::Url(control_plane_url.into()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(HttpLoginProvider {
            http,
            url,
            token: gateway_token,
        })
    }
}

#[async_trait::async_trait]
impl LoginProvider for HttpLoginProvider {
    async fn login(&self, request: LoginRequest) -> Result<LoginGrant, LoginError> {
        let response = self
            .http
            .post(self.url.clone())
            .bearer_auth(&self.token)
            .json(&request)
            .send()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        match response.status() {
            StatusCode::OK => response
                .json()
                .await
                .map_err(|e| LoginError::Unavailable(format!("bad login reply: {e}"))),
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => Err(LoginError::Denied),
            StatusCode::UNAUTHORIZED => Err(LoginError::Unavailable(
                "the control plane rejected this gateway's token (check WHARF_GATEWAY_TOKEN)"
                    .into(),
            )),
            other => Err(LoginError::Unavailable(format!(
                "control plane answered HTTP {other}"
            ))),
        }
    }
}

/// The gateway side of the event contract ([`wharf_core::EventSink`]) over HTTP: posts to the
/// control plane's `/internal/v1/events` and `/internal/v1/uploads…` with the gateway token.
///
/// Network failures and 5xx answers are retried with backoff: briefly for the start of an
/// upload (the partner is waiting, and an upload that cannot be recorded is not committed),
/// longer for everything else (the change has been made; its event must not be lost).
#[derive(Clone)]
pub struct HttpEventSink {
    http: reqwest::Client,
    base: Url,
    token: String,
}

/// Attempts for the start of an upload: about 3 s in all.
const BEGIN_ATTEMPTS: u32 = 4;
/// Attempts for settled uploads and other events: about 2 minutes in all.
const RECORD_ATTEMPTS: u32 = 10;

impl HttpEventSink {
    pub fn new(control_plane_url: &str, gateway_token: String) -> Result<Self, ClientError> {
        let base = Url::parse(control_plane_url)
            .map_err(|_| ClientError::Url(control_plane_url.into()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(HttpEventSink {
            http,
            base,
            token: gateway_token,
        })
    }

    /// POSTs `body` to `path`, retrying transient failures; the reply body on success.
    async fn post<B: Serialize + Sync>(
        &self,
        path: &str,
        body: &B,
        attempts: u32,
    ) -> Result<Vec<u8>, wharf_core::EventError> {
        use wharf_core::EventError;
        let url = self
            .base
            .join(path)
            .map_err(|e| EventError::Rejected(format!("bad event URL {path}: {e}")))?;
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(20));
            }
            let response = match self
                .http
                .post(url.clone())
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await
            {
                Ok(response) => response,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                return response
                    .bytes()
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| EventError::Unavailable(e.to_string()));
            }
            let text = response.text().await.unwrap_or_default();
            if status == StatusCode::UNAUTHORIZED {
                return Err(EventError::Unavailable(
                    "the control plane rejected this gateway's token (check WHARF_GATEWAY_TOKEN)"
                        .into(),
                ));
            }
            if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                return Err(EventError::Rejected(format!("HTTP {status}: {text}")));
            }
            last = format!("HTTP {status}: {text}");
        }
        Err(EventError::Unavailable(last))
    }
}

fn reply_id(body: &[u8], field: &str) -> Result<String, wharf_core::EventError> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get(field).and_then(|id| id.as_str()).map(str::to_owned))
        .ok_or_else(|| {
            wharf_core::EventError::Unavailable(format!("the event reply has no '{field}'"))
        })
}

#[async_trait::async_trait]
impl wharf_core::EventSink for HttpEventSink {
    async fn begin_upload(
        &self,
        data: wharf_core::EventData,
    ) -> Result<String, wharf_core::EventError> {
        let body = wharf_core::events::BeginUploadRequest { data };
        let reply = self
            .post("/internal/v1/uploads", &body, BEGIN_ATTEMPTS)
            .await?;
        reply_id(&reply, "eventId")
    }

    async fn settle_upload(
        &self,
        event_id: &str,
        committed: bool,
        error: Option<String>,
    ) -> Result<(), wharf_core::EventError> {
        let body = wharf_core::events::SettleUploadRequest { committed, error };
        let path = format!(
            "/internal/v1/uploads/{}/settle",
            url::form_urlencoded::byte_serialize(event_id.as_bytes()).collect::<String>()
        );
        self.post(&path, &body, RECORD_ATTEMPTS).await.map(|_| ())
    }

    async fn record(
        &self,
        event_type: wharf_core::EventType,
        data: wharf_core::EventData,
    ) -> Result<String, wharf_core::EventError> {
        let body = wharf_core::events::RecordEventRequest { event_type, data };
        let reply = self
            .post("/internal/v1/events", &body, RECORD_ATTEMPTS)
            .await?;
        reply_id(&reply, "id")
    }
}
