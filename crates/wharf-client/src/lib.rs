//! Typed Rust client of the [Wharf](https://github.com/wharf-sftp/wharf) REST API: users,
//! buckets, objects, events and webhooks, plus a verifier for Wharf's signed webhook
//! deliveries ([`webhooks`]).
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use wharf_client::{Client, ClientError};
//!
//! # async fn demo() -> Result<(), ClientError> {
//! let wharf = Client::new("http://127.0.0.1:8080", std::env::var("WHARF_API_KEY").ok())?;
//!
//! // Alice, Bob and a root user (home `/`: sees the whole bucket).
//! for (description, home) in [("Alice", "/alice"), ("Bob", "/bob"), ("Operations", "/")] {
//!     let created = wharf.create_user_at(description, home).await?;
//!     // The password is in this reply only: hand it to the partner now.
//!     println!("sftp {}@{}  {}", created.user.username, created.user.endpoint, created.password);
//! }
//!
//! // Every user, page after page.
//! let users: Vec<_> = wharf.users().try_collect().await?;
//! println!("{} users", users.len());
//!
//! // Errors the server reports are typed RFC 9457 problem documents.
//! match wharf.create_user_at("Carol", "carol").await {
//!     Err(e) if e.field_error("homeDirectory").is_some() => eprintln!("{e}"),
//!     other => println!("{other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! - **Cannot drift from the API.** Request and response types are the server's own
//!   ([`wharf_core::api`], re-exported as [`api`]; they also generate `openapi/openapi.json`),
//!   and a test of this crate fails when the API gains an operation no method covers.
//! - **Lists are `Stream`s** over every page: [`Client::users`], [`Client::search_users`],
//!   [`Client::webhooks`], [`Client::deliveries`], [`Client::events`],
//!   [`Client::list_objects`]; one page at a time with `list_*`.
//! - **Typed errors**: [`ClientError::Api`] carries the [`Problem`]; [`ClientError::status`],
//!   [`ClientError::field_errors`] and [`ClientError::field_error`] reach into it.
//! - **Retries** on 429 and 503 (and on connection errors of idempotent requests), with
//!   exponential backoff, full jitter and `Retry-After` ([`RetryPolicy`]).
//! - **Streamed objects**: uploads from memory, a stream or a file; downloads chunk by chunk,
//!   resumable.
//! - [`Client::call`] reaches any endpoint with the same key, retries and errors.

pub mod webhooks;

/// The README's examples compile too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod error;
mod gateway;
mod retry;

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, TryStream};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use wharf_core::api::{
    Ban, BanKind, BanList, Bucket, BucketList, BucketObject, CreateBucketRequest,
    CreateUserRequest, CreateWebhookRequest, CreatedUser, CreatedWebhook, Delivery, DeliveryList,
    EventList, MAX_OBJECT_PAGE_SIZE, NewPassword, ObjectList, PasswordOptions, Problem,
    ResetPasswordRequest, ServerInfo, UpdateUserRequest, UpdateWebhookRequest, User, UserList,
    Webhook, WebhookList,
};
use wharf_core::{Event, EventType};

pub use error::ClientError;
pub use gateway::{HttpEventSink, HttpLoginProvider};
/// The HTTP method of [`Client::call`].
pub use reqwest::Method;
pub use retry::RetryPolicy;
/// The domain types (`HomeDirectory`, `Username`, `Permissions`, `Event`, …), so that this
/// crate is the only dependency a program needs.
pub use wharf_core;
/// Request and response bodies of the REST API (`CreateUserRequest`, `User`, `Problem`, …).
pub use wharf_core::api;

/// Largest page the API serves (users, webhooks, deliveries, events); the streams fetch pages
/// of this size unless [`ClientBuilder::page_size`] says otherwise.
pub const MAX_PAGE_SIZE: u32 = 100;

/// How long an object transfer may go without a byte moving before it is given up.
const TRANSFER_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A client of one Wharf control plane. Cheap to clone (clones share connections).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For object transfers, which may take hours: no overall timeout, only one per read.
    transfers: reqwest::Client,
    base: Url,
    api_key: Option<String>,
    retry: RetryPolicy,
    page_size: Option<u32>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "…"))
            .field("retry", &self.retry)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// Settings of a [`Client`] beyond its URL and key: `Client::builder(url).api_key(k)…build()`.
///
/// ```
/// use std::time::Duration;
/// use wharf_client::{Client, RetryPolicy};
///
/// let wharf = Client::builder("https://wharf.example.com")
///     .api_key("wharf_…")
///     .retry(RetryPolicy { max_retries: 5, ..RetryPolicy::default() })
///     .timeout(Duration::from_secs(30))
///     .header(
///         "x-request-source".parse().unwrap(),
///         "billing".parse().unwrap(),
///     )
///     .build()?;
/// # Ok::<(), wharf_client::ClientError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct ClientBuilder {
    base_url: String,
    api_key: Option<String>,
    retry: RetryPolicy,
    timeout: Duration,
    connect_timeout: Duration,
    transfer_read_timeout: Duration,
    headers: HeaderMap,
    user_agent: String,
    page_size: Option<u32>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "…"))
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("transfer_read_timeout", &self.transfer_read_timeout)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("user_agent", &self.user_agent)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl ClientBuilder {
    /// Sent as `Authorization: Bearer <key>` with every request.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// When to send a request again (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The longest one API request may take, answer included (default 60 s). Object
    /// transfers have none (they may take hours); see [`Self::transfer_read_timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest a connection may take to open (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an object transfer may go without a byte moving (default 120 s).
    pub fn transfer_read_timeout(mut self, timeout: Duration) -> Self {
        self.transfer_read_timeout = timeout;
        self
    }

    /// A header sent with every request (tracing, a proxy's credentials, …).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// `User-Agent` (default `wharf-client/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Items per page the streams ([`Client::users`], …) ask for; at most what the API
    /// serves ([`MAX_PAGE_SIZE`], 1000 for objects), which is the default.
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = Some(page_size.max(1));
        self
    }

    pub fn build(self) -> Result<Client, ClientError> {
        let base_url = self.base_url;
        let mut base = Url::parse(&base_url).map_err(|_| ClientError::Url(base_url.clone()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientError::Url(base_url));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .user_agent(&self.user_agent)
            .default_headers(self.headers.clone())
            .build()?;
        let transfers = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.transfer_read_timeout)
            .user_agent(&self.user_agent)
            .default_headers(self.headers)
            .build()?;
        Ok(Client {
            http,
            transfers,
            base,
            api_key: self.api_key,
            retry: self.retry,
            page_size: self.page_size,
        })
    }
}

/// Connection trouble: the request may or may not have been processed.
fn is_connection_error(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request()
}

impl Client {
    /// `base_url` like `http://127.0.0.1:8080` (a path prefix is kept: `https://host/wharf`);
    /// `api_key` sent as `Authorization: Bearer`. The defaults of [`ClientBuilder`] apply.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self, ClientError> {
        let mut builder = Client::builder(base_url);
        if let Some(key) = api_key {
            builder = builder.api_key(key);
        }
        builder.build()
    }

    /// A client with more settings than [`Client::new`] takes (timeouts, headers, retries).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            api_key: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            transfer_read_timeout: TRANSFER_READ_TIMEOUT,
            headers: HeaderMap::new(),
            user_agent: concat!("wharf-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            page_size: None,
        }
    }

    /// Replaces the retry policy (see [`RetryPolicy`]); `RetryPolicy::none()` turns retries off.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the page size of the streams (see [`ClientBuilder::page_size`]).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = Some(page_size.max(1));
        self
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The API's base URL (always ending in `/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Page size for a stream over an endpoint serving at most `max` items per page.
    fn stream_page_size(&self, max: u32) -> u32 {
        self.page_size.map_or(max, |size| size.min(max))
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|_| ClientError::Url(path.into()))
    }

    /// Sends `request` with the API key, again as the [`RetryPolicy`] says, and turns an
    /// error answer into a [`ClientError`]. A request whose body cannot be copied (a stream)
    /// is sent once only.
    async fn execute(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let request = match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        let (http, request) = request.build_split();
        let request = request?;
        let idempotent = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let mut retries = 0;
        loop {
            // This attempt sends a copy; the original is kept for the next one.
            let Some(attempt) = request.try_clone() else {
                // A streamed body: one attempt, whatever happens.
                return check(http.execute(request).await?).await;
            };
            let wait = match http.execute(attempt).await {
                Ok(response) => {
                    match self
                        .retry
                        .wait_for(response.status(), response.headers(), retries)
                    {
                        Some(wait) => wait,
                        None => return check(response).await,
                    }
                }
                // A request that may have been processed is only repeated when that is safe.
                Err(e) if idempotent && is_connection_error(&e) => {
                    match self.retry.backoff(retries) {
                        Some(wait) => wait,
                        None => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            retries += 1;
            tracing::debug!(
                method = %request.method(),
                url = %request.url(),
                retry = retries,
                ?wait,
                "retrying a Wharf API request"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let response = self.request(method, url, body).await?;
        Ok(response.json().await?)
    }

    async fn request<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.execute(request).await
    }

    /// Any API request, with this client's key, retries and errors: for what no method
    /// covers (an endpoint newer than this crate, say). `path` is relative to the base URL
    /// and may carry a query (`v1/users?search=acme`); `body` is sent as JSON. The answer is
    /// read as `T`; an empty one (`204`) as JSON `null`, which `()`, `Option<_>` and
    /// `serde_json::Value` accept.
    ///
    /// ```no_run
    /// # async fn demo(wharf: &wharf_client::Client) -> Result<(), wharf_client::ClientError> {
    /// use wharf_client::{Method, api::User};
    /// let user: User = wharf.call(Method::GET, "v1/users/WL9F11A9", None).await?;
    /// let raw: serde_json::Value = wharf.call(Method::GET, "v1/server", None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let url = self.url(path)?;
        let response = self.request(method, url, body).await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let json: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(json).map_err(|e| ClientError::Unexpected {
            status,
            body: format!(
                "{e}: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(500)
                    .collect::<String>()
            ),
        })
    }

    // -----------------------------------------------------------------------------------
    // Users

    /// Creates a user; the reply carries its password, shown this once.
    pub async fn create_user(
        &self,
        request: &CreateUserRequest,
    ) -> Result<CreatedUser, ClientError> {
        self.send(Method::POST, self.url("v1/users")?, Some(request))
            .await
    }

    /// Creates a user with a generated username and password, the default bucket and
    /// permissions, and `home_directory` as home (`/` for a root user, who sees the whole
    /// bucket). The home is checked by the server: a bad one is a [`ClientError::Api`]
    /// naming `homeDirectory`. For anything more, [`Client::create_user`].
    pub async fn create_user_at(
        &self,
        description: &str,
        home_directory: &str,
    ) -> Result<CreatedUser, ClientError> {
        let body = serde_json::json!({
            "description": description,
            "homeDirectory": home_directory,
        });
        self.send(Method::POST, self.url("v1/users")?, Some(&body))
            .await
    }

    /// One page of users, ordered by username.
    pub async fn list_users(
        &self,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<UserList, ClientError> {
        self.list_users_matching(None, page_size, page_token).await
    }

    /// One page of the users whose username, description or home directory contains
    /// `search` (ASCII letters in any case); pass the same `search` with the next page's token.
    pub async fn list_users_matching(
        &self,
        search: Option<&str>,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<UserList, ClientError> {
        let mut url = self.url("v1/users")?;
        if let Some(search) = search {
            url.query_pairs_mut().append_pair("search", search);
        }
        page_query(&mut url, page_size, page_token);
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Every user, page after page, as a stream.
    pub fn users(&self) -> impl Stream<Item = Result<User, ClientError>> + '_ {
        self.users_stream(None)
    }

    /// Every user matching `search` (see [`Client::list_users_matching`]), as a stream.
    pub fn search_users<'a>(
        &'a self,
        search: &'a str,
    ) -> impl Stream<Item = Result<User, ClientError>> + 'a {
        self.users_stream(Some(search))
    }

    fn users_stream<'a>(
        &'a self,
        search: Option<&'a str>,
    ) -> impl Stream<Item = Result<User, ClientError>> + 'a {
        let size = self.stream_page_size(MAX_PAGE_SIZE);
        paginate(move |token| async move {
            let page = self
                .list_users_matching(search, Some(size), token.as_deref())
                .await?;
            Ok((page.items, page.next_page_token))
        })
    }

    /// A user, with `lastConnectedAt`.
    pub async fn get_user(&self, username: &str) -> Result<User, ClientError> {
        let url = self.path_url(&["v1", "users", username])?;
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Changes the fields present in `request`.
    pub async fn update_user(
        &self,
        username: &str,
        request: &UpdateUserRequest,
    ) -> Result<User, ClientError> {
        let url = self.path_url(&["v1", "users", username])?;
        self.send(Method::PATCH, url, Some(request)).await
    }

    /// Deletes a user; its files stay in the bucket.
    pub async fn delete_user(&self, username: &str) -> Result<(), ClientError> {
        let url = self.path_url(&["v1", "users", username])?;
        self.request::<()>(Method::DELETE, url, None).await?;
        Ok(())
    }

    /// Replaces the user's password with a new generated one, returned this once.
    pub async fn reset_password(
        &self,
        username: &str,
        options: Option<PasswordOptions>,
    ) -> Result<NewPassword, ClientError> {
        let url = self.path_url(&["v1", "users", username, "password"])?;
        let body = ResetPasswordRequest {
            password_options: options,
            password: None,
        };
        self.send(Method::POST, url, Some(&body)).await
    }

    /// Replaces the user's password with `password`, chosen by the caller (16 to 128
    /// characters, no control characters, no whitespace at either end; the server answers
    /// 400 naming `password` otherwise). `passwordEnabled` does not change.
    pub async fn set_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<NewPassword, ClientError> {
        let url = self.path_url(&["v1", "users", username, "password"])?;
        let body = ResetPasswordRequest {
            password_options: None,
            password: Some(password.to_owned()),
        };
        self.send(Method::POST, url, Some(&body)).await
    }

    // -----------------------------------------------------------------------------------
    // Buckets and the server

    /// Every bucket (one page: there are few).
    pub async fn list_buckets(&self) -> Result<BucketList, ClientError> {
        self.send::<(), _>(Method::GET, self.url("v1/buckets")?, None)
            .await
    }

    pub async fn get_bucket(&self, name: &str) -> Result<Bucket, ClientError> {
        let url = self.path_url(&["v1", "buckets", name])?;
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Registers a bucket that exists in its object store; the server lists it once first and
    /// answers 400 (with what failed) if it cannot. The options are never shown again.
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
        let url = self.path_url(&["v1", "buckets", name])?;
        self.request::<()>(Method::DELETE, url, None).await?;
        Ok(())
    }

    /// How partners reach this installation (host, ports, host-key fingerprints, the FTPS
    /// certificate's SHA-256 fingerprint).
    pub async fn server_info(&self) -> Result<ServerInfo, ClientError> {
        self.send::<(), _>(Method::GET, self.url("v1/server")?, None)
            .await
    }

    // -----------------------------------------------------------------------------------
    // Webhooks

    /// Subscribes a URL to events; the reply carries the signing secret, shown this once.
    pub async fn create_webhook(
        &self,
        request: &CreateWebhookRequest,
    ) -> Result<CreatedWebhook, ClientError> {
        self.send(Method::POST, self.url("v1/webhooks")?, Some(request))
            .await
    }

    /// One page of webhooks, oldest first.
    pub async fn list_webhooks(
        &self,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<WebhookList, ClientError> {
        let mut url = self.url("v1/webhooks")?;
        page_query(&mut url, page_size, page_token);
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Every webhook, page after page, as a stream.
    pub fn webhooks(&self) -> impl Stream<Item = Result<Webhook, ClientError>> + '_ {
        let size = self.stream_page_size(MAX_PAGE_SIZE);
        paginate(move |token| async move {
            let page = self.list_webhooks(Some(size), token.as_deref()).await?;
            Ok((page.items, page.next_page_token))
        })
    }

    /// One page of the bans in force after failed logins (of `kind` only, if given), by kind
    /// and target.
    pub async fn list_bans(
        &self,
        kind: Option<BanKind>,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<BanList, ClientError> {
        let mut url = self.url("v1/bans")?;
        if let Some(kind) = kind {
            url.query_pairs_mut().append_pair("kind", kind.as_str());
        }
        page_query(&mut url, page_size, page_token);
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Every ban in force, page after page, as a stream.
    pub fn bans(&self) -> impl Stream<Item = Result<Ban, ClientError>> + '_ {
        let size = self.stream_page_size(1000);
        paginate(move |token| async move {
            let page = self.list_bans(None, Some(size), token.as_deref()).await?;
            Ok((page.items, page.next_page_token))
        })
    }

    /// Lifts the ban of a client address (for an IPv6 /64, any address in it).
    pub async fn lift_address_ban(&self, address: std::net::IpAddr) -> Result<(), ClientError> {
        let url = self.path_url(&["v1", "bans", "addresses", &address.to_string()])?;
        self.request::<()>(Method::DELETE, url, None).await?;
        Ok(())
    }

    /// Lifts the ban of a user name (password logins for it work again).
    pub async fn lift_user_ban(&self, username: &str) -> Result<(), ClientError> {
        let url = self.path_url(&["v1", "bans", "users", username])?;
        self.request::<()>(Method::DELETE, url, None).await?;
        Ok(())
    }

    /// A webhook (without its secret).
    pub async fn get_webhook(&self, id: &str) -> Result<Webhook, ClientError> {
        let url = self.path_url(&["v1", "webhooks", id])?;
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Changes the fields present in `request`; `filter` replaces the whole filter.
    pub async fn update_webhook(
        &self,
        id: &str,
        request: &UpdateWebhookRequest,
    ) -> Result<Webhook, ClientError> {
        let url = self.path_url(&["v1", "webhooks", id])?;
        self.send(Method::PATCH, url, Some(request)).await
    }

    /// Deletes a webhook with its pending deliveries and delivery log; the events stay.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), ClientError> {
        let url = self.path_url(&["v1", "webhooks", id])?;
        self.request::<()>(Method::DELETE, url, None).await?;
        Ok(())
    }

    /// Queues a signed `webhook.test` delivery to this webhook only; returns the delivery.
    pub async fn test_webhook(&self, id: &str) -> Result<Delivery, ClientError> {
        let url = self.path_url(&["v1", "webhooks", id, "test"])?;
        self.send::<(), _>(Method::POST, url, None).await
    }

    /// One page of a webhook's deliveries, newest first, each with every attempt.
    pub async fn webhook_deliveries(
        &self,
        id: &str,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<DeliveryList, ClientError> {
        let mut url = self.path_url(&["v1", "webhooks", id, "deliveries"])?;
        page_query(&mut url, page_size, page_token);
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Every delivery of a webhook, newest first, page after page, as a stream.
    pub fn deliveries<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Stream<Item = Result<Delivery, ClientError>> + 'a {
        let size = self.stream_page_size(MAX_PAGE_SIZE);
        paginate(move |token| async move {
            let page = self
                .webhook_deliveries(id, Some(size), token.as_deref())
                .await?;
            Ok((page.items, page.next_page_token))
        })
    }

    /// Sends a dead delivery again (409 if it is pending or succeeded); returns it, pending.
    pub async fn retry_delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<Delivery, ClientError> {
        let url = self.path_url(&[
            "v1",
            "webhooks",
            webhook_id,
            "deliveries",
            delivery_id,
            "retry",
        ])?;
        self.send::<(), _>(Method::POST, url, None).await
    }

    // -----------------------------------------------------------------------------------
    // Events

    /// One page of events matching `filter`, newest first.
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<EventList, ClientError> {
        let mut url = self.url("v1/events")?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = filter.event_type {
                q.append_pair("type", t.as_str());
            }
            if let Some(username) = &filter.username {
                q.append_pair("username", username);
            }
            if let Some(prefix) = &filter.prefix {
                q.append_pair("prefix", prefix);
            }
            if let Some(bucket) = &filter.bucket_name {
                q.append_pair("bucketName", bucket);
            }
        }
        page_query(&mut url, page_size, page_token);
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Every event matching `filter`, newest first, page after page, as a stream.
    pub fn events<'a>(
        &'a self,
        filter: &'a EventFilter,
    ) -> impl Stream<Item = Result<Event, ClientError>> + 'a {
        let size = self.stream_page_size(MAX_PAGE_SIZE);
        paginate(move |token| async move {
            let page = self
                .list_events(filter, Some(size), token.as_deref())
                .await?;
            Ok((page.items, page.next_page_token))
        })
    }

    /// One event, by id (`evt_…`, also the `webhook-id` of its deliveries).
    pub async fn get_event(&self, id: &str) -> Result<Event, ClientError> {
        let url = self.path_url(&["v1", "events", id])?;
        self.send::<(), _>(Method::GET, url, None).await
    }

    // -----------------------------------------------------------------------------------
    // Objects

    /// One page of the entries directly in the directory `prefix` of a bucket (`""` for its
    /// root; `alice/in` or `alice/in/`), in the store's key order.
    pub async fn list_objects_page(
        &self,
        bucket: &str,
        prefix: &str,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<ObjectList, ClientError> {
        let mut url = self.path_url(&["v1", "buckets", bucket, "objects"])?;
        if !prefix.is_empty() {
            url.query_pairs_mut().append_pair("prefix", prefix);
        }
        page_query(&mut url, page_size, page_token);
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Every entry directly in the directory `prefix` (see [`Client::list_objects_page`]),
    /// page after page, as a stream: a directory of any size in bounded memory.
    pub fn list_objects<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> impl Stream<Item = Result<BucketObject, ClientError>> + 'a {
        let size = self.stream_page_size(MAX_OBJECT_PAGE_SIZE);
        paginate(move |token| async move {
            let page = self
                .list_objects_page(bucket, prefix, Some(size), token.as_deref())
                .await?;
            Ok((page.items, page.next_page_token))
        })
    }

    /// Starts downloading an object: the reply's headers have arrived, the content follows
    /// through [`ObjectDownload::chunk`] or [`ObjectDownload::into_stream`]. Retried (per the
    /// [`RetryPolicy`]) until the headers arrive; a transfer cut short after that is resumed
    /// with [`Client::resume_object`].
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<ObjectDownload, ClientError> {
        self.download(bucket, key, 0, None).await
    }

    /// Like [`Client::get_object`], from byte `offset` on (`Range: bytes=offset-`; the answer
    /// is a `206`). [`ObjectDownload::size`] is then the size of the rest.
    pub async fn get_object_from(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
    ) -> Result<ObjectDownload, ClientError> {
        self.download(bucket, key, offset, None).await
    }

    /// Resumes the download of the version whose [`ObjectDownload::e_tag`] was `e_tag`, from
    /// byte `offset` (`Range` with `If-Range`). If the object has changed since, the server
    /// sends the whole new version instead: check [`ObjectDownload::is_partial`] before
    /// appending.
    pub async fn resume_object(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        e_tag: &str,
    ) -> Result<ObjectDownload, ClientError> {
        self.download(bucket, key, offset, Some(e_tag)).await
    }

    async fn download(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        if_range: Option<&str>,
    ) -> Result<ObjectDownload, ClientError> {
        let url = self.object_url(bucket, key, false)?;
        let mut request = self.transfers.get(url);
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
            if let Some(tag) = if_range {
                request = request.header(reqwest::header::IF_RANGE, tag);
            }
        }
        Ok(ObjectDownload::new(self.execute(request).await?))
    }

    /// Uploads an object from `body`: bytes (`Vec<u8>`, [`Bytes`], a `String`, …) or a stream
    /// ([`reqwest::Body::wrap_stream`]). The object is visible once the whole body has
    /// arrived; a failed upload leaves the previous version. Missing parent directories are
    /// created. The reply carries the size and SHA-256 the server computed.
    ///
    /// A body in memory is sent again as the [`RetryPolicy`] says (a PUT is idempotent); a
    /// streamed one is sent once only (it cannot be replayed).
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<reqwest::Body>,
        content_length: Option<u64>,
    ) -> Result<BucketObject, ClientError> {
        let url = self.object_url(bucket, key, false)?;
        let body: reqwest::Body = body.into();
        // A body in memory has a known length; the API refuses a PUT with neither length nor
        // chunked encoding, which is how hyper sends an empty body.
        let known = body.as_bytes().map(|bytes| bytes.len() as u64);
        let mut request = self
            .transfers
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(length) = content_length.or(known) {
            request = request.header(reqwest::header::CONTENT_LENGTH, length);
        }
        Ok(self.execute(request).await?.json().await?)
    }

    /// Uploads an object from a stream of chunks (see [`Client::put_object`]); with
    /// `content_length` the server can tell a cut stream from a complete one even if the
    /// connection ends cleanly. Never retried: a stream cannot be sent twice.
    pub async fn put_object_stream<S>(
        &self,
        bucket: &str,
        key: &str,
        chunks: S,
        content_length: Option<u64>,
    ) -> Result<BucketObject, ClientError>
    where
        S: TryStream + Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        Bytes: From<S::Ok>,
    {
        self.put_object(
            bucket,
            key,
            reqwest::Body::wrap_stream(chunks),
            content_length,
        )
        .await
    }

    /// Uploads the file at `path`, streamed from disk (so never retried: see
    /// [`Client::put_object_stream`]).
    pub async fn put_object_file(
        &self,
        bucket: &str,
        key: &str,
        path: &std::path::Path,
    ) -> Result<BucketObject, ClientError> {
        use tokio::io::AsyncReadExt;
        let file_error = |source| ClientError::File {
            path: path.to_owned(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(file_error)?;
        let length = file.metadata().await.map_err(file_error)?.len();
        let chunks = futures::stream::try_unfold(file, |mut file| async move {
            let mut buffer = bytes::BytesMut::with_capacity(FILE_CHUNK);
            while buffer.len() < FILE_CHUNK {
                if file.read_buf(&mut buffer).await? == 0 {
                    break;
                }
            }
            if buffer.is_empty() {
                return Ok::<_, std::io::Error>(None);
            }
            Ok(Some((buffer.freeze(), file)))
        });
        self.put_object_stream(bucket, key, chunks, Some(length))
            .await
    }

    /// Creates the directory `key` (and its parents); succeeds if it exists.
    pub async fn create_directory(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<BucketObject, ClientError> {
        let url = self.object_url(bucket, key, true)?;
        Ok(self.execute(self.transfers.put(url)).await?.json().await?)
    }

    /// Deletes a file, or an empty directory.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), ClientError> {
        self.delete_objects(bucket, key, false).await
    }

    /// Deletes a file or a directory; with `recursive` a directory goes with everything in it
    /// (at most 10,000 entries).
    pub async fn delete_objects(
        &self,
        bucket: &str,
        key: &str,
        recursive: bool,
    ) -> Result<(), ClientError> {
        let mut url = self.object_url(bucket, key, false)?;
        if recursive {
            url.query_pairs_mut().append_pair("recursive", "true");
        }
        self.request::<()>(Method::DELETE, url, None).await?;
        Ok(())
    }

    /// `…/v1/buckets/{bucket}/objects/{key}`, each segment of the key percent-encoded. Keys
    /// with empty, `.` or `..` segments are refused here: the URL parser would fold them and
    /// name another resource.
    fn object_url(&self, bucket: &str, key: &str, directory: bool) -> Result<Url, ClientError> {
        let key = key.trim_end_matches('/');
        let segments: Vec<&str> = key.split('/').collect();
        if segments.iter().any(|s| matches!(*s, "" | "." | "..")) {
            return Err(ClientError::BadId(key.to_owned()));
        }
        let mut url = self.path_url(&["v1", "buckets", bucket, "objects"])?;
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| ClientError::Url(key.into()))?;
            path.extend(segments);
            if directory {
                path.push("");
            }
        }
        Ok(url)
    }

    /// The base URL plus these path segments, each percent-encoded (so a hostile id cannot
    /// change the path).
    fn path_url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        // The URL parser drops `.` and `..` segments, which would name another resource.
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(ClientError::BadId((*bad).to_owned()));
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| ClientError::Url(self.base.to_string()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }
}

/// Bytes read from a file per chunk of an upload.
const FILE_CHUNK: usize = 256 * 1024;

/// An object being downloaded ([`Client::get_object`]).
pub struct ObjectDownload {
    response: reqwest::Response,
}

impl std::fmt::Debug for ObjectDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectDownload")
            .field("status", &self.status())
            .field("size", &self.size())
            .field("e_tag", &self.e_tag())
            .finish()
    }
}

impl ObjectDownload {
    fn new(response: reqwest::Response) -> Self {
        ObjectDownload { response }
    }

    /// `200` for the whole object, `206` for the part asked for.
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// Whether this is the part asked for (`206`) rather than the whole object: a resumed
    /// download whose version changed ([`Client::resume_object`]) gets the whole new one.
    pub fn is_partial(&self) -> bool {
        self.response.status() == StatusCode::PARTIAL_CONTENT
    }

    /// Bytes that follow (`Content-Length`): the object's size, or the rest of it from the
    /// offset asked for.
    pub fn size(&self) -> Option<u64> {
        self.header(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.parse().ok())
    }

    /// The version's entity tag (`ETag`), to check a resumed download is of the same version.
    pub fn e_tag(&self) -> Option<&str> {
        self.header(reqwest::header::ETAG)
    }

    /// `Last-Modified`, as the server sent it (an HTTP date).
    pub fn last_modified(&self) -> Option<&str> {
        self.header(reqwest::header::LAST_MODIFIED)
    }

    fn header(&self, name: reqwest::header::HeaderName) -> Option<&str> {
        self.response.headers().get(name)?.to_str().ok()
    }

    /// The next piece of the content; `None` at its end. A connection cut short is an error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        Ok(self.response.chunk().await?)
    }

    /// The whole content in memory (for small objects; large ones by [`Self::chunk`]).
    pub async fn bytes(self) -> Result<Bytes, ClientError> {
        Ok(self.response.bytes().await?)
    }

    /// The content as a stream of pieces.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, ClientError>> {
        use futures::TryStreamExt;
        self.response.bytes_stream().map_err(ClientError::from)
    }
}

/// Filters of [`Client::list_events`]: only events matching every part given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Option<EventType>,
    /// Events caused by this user.
    pub username: Option<String>,
    /// Events whose bucket key starts with this (`alice/in/`; keys have no leading `/`).
    pub prefix: Option<String>,
    pub bucket_name: Option<String>,
}

fn page_query(url: &mut Url, page_size: Option<u32>, page_token: Option<&str>) {
    if page_size.is_none() && page_token.is_none() {
        return;
    }
    let mut q = url.query_pairs_mut();
    if let Some(size) = page_size {
        q.append_pair("pageSize", &size.to_string());
    }
    if let Some(token) = page_token {
        q.append_pair("pageToken", token);
    }
}

/// The items of every page, fetching the next page when the previous one is used up.
/// `fetch(token)` returns one page's items and its `nextPageToken` (`None` for the first page).
fn paginate<'a, T, F, Fut>(mut fetch: F) -> impl Stream<Item = Result<T, ClientError>> + 'a
where
    T: 'a,
    F: FnMut(Option<String>) -> Fut + 'a,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), ClientError>> + 'a,
{
    use futures::TryStreamExt;
    // State: Some(token) = a page to fetch (None token = the first), None = done.
    let pages = futures::stream::try_unfold(Some(None::<String>), move |state| {
        let next = state.map(&mut fetch);
        async move {
            let Some(next) = next else {
                return Ok::<_, ClientError>(None);
            };
            let (items, token) = next.await?;
            Ok(Some((items, token.map(Some))))
        }
    });
    pages
        .map_ok(|items| futures::stream::iter(items.into_iter().map(Ok)))
        .try_flatten()
}

/// The response if it is a success; else its problem document as [`ClientError::Api`].
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::extract::State;
    use axum::http::{Method as HttpMethod, StatusCode as HttpStatus, Uri};
    use futures::TryStreamExt;
    use serde_json::{Value, json};

    use super::*;

    type Seen = Arc<Mutex<Vec<String>>>;

    fn event(id: &str) -> Value {
        json!({"id": id, "type": "file.created", "time": "2026-11-28T12:00:00Z",
            "data": {"bucketName": "default", "key": "alice/x.edi", "username": "alice",
                "protocol": "sftp", "clientIp": "192.0.2.1", "sessionId": "s-1"}})
    }

    /// Answers like the API would for the requests these tests send, and records each as
    /// `METHOD path?query`.
    async fn fake_api(
        State(seen): State<Seen>,
        method: HttpMethod,
        uri: Uri,
    ) -> (HttpStatus, Json<Value>) {
        seen.lock().unwrap().push(format!("{method} {uri}"));
        let query = uri.query().unwrap_or_default();
        match uri.path() {
            "/v1/events" if query.contains("pageToken=second") => {
                (HttpStatus::OK, Json(json!({"items": [event("evt_3")]})))
            }
            "/v1/events" => (
                HttpStatus::OK,
                Json(json!({"items": [event("evt_1"), event("evt_2")], "nextPageToken": "second"})),
            ),
            "/v1/webhooks" => (HttpStatus::OK, Json(json!({"items": []}))),
            _ => (
                HttpStatus::NOT_FOUND,
                Json(
                    json!({"type": "about:blank", "title": "Not found", "status": 404,
                    "detail": format!("nothing at {}", uri.path())}),
                ),
            ),
        }
    }

    async fn start() -> (Client, Seen) {
        let seen = Seen::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(fake_api)
            .with_state(seen.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (Client::new(&base, Some("k".into())).unwrap(), seen)
    }

    #[tokio::test]
    async fn events_stream_every_page_with_the_filters() {
        let (client, seen) = start().await;
        let filter = EventFilter {
            event_type: Some(EventType::FileCreated),
            username: Some("alice".into()),
            prefix: Some("alice/in box/".into()),
            bucket_name: Some("default".into()),
        };
        let ids: Vec<String> = client
            .events(&filter)
            .map_ok(|e| e.id)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ids, ["evt_1", "evt_2", "evt_3"]);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "GET /v1/events?type=file.created&username=alice&prefix=alice%2Fin+box%2F&bucketName=default&pageSize=100",
                "GET /v1/events?type=file.created&username=alice&prefix=alice%2Fin+box%2F&bucketName=default&pageSize=100&pageToken=second",
            ]
        );
    }

    #[tokio::test]
    async fn ids_are_one_path_segment() {
        let (client, seen) = start().await;
        let err = client.get_webhook("wh_1/../../users").await.unwrap_err();
        assert_eq!(err.status(), Some(404));
        let err = client
            .retry_delivery("wh_1", "dlv_2?x=1")
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(404));
        assert!(err.to_string().contains("nothing at"), "{err}");
        assert!(matches!(
            client.get_event("..").await,
            Err(ClientError::BadId(_))
        ));
        assert!(matches!(
            client.delete_webhook("").await,
            Err(ClientError::BadId(_))
        ));
        assert!(
            client
                .webhooks()
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
                .is_empty()
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "GET /v1/webhooks/wh_1%2F..%2F..%2Fusers",
                "POST /v1/webhooks/wh_1/deliveries/dlv_2%3Fx=1/retry",
                "GET /v1/webhooks?pageSize=100",
            ]
        );
    }

    #[tokio::test]
    async fn object_keys_keep_their_slashes_and_nothing_else() {
        let (client, seen) = start().await;
        let err = client
            .get_object("default", "alice/in/x #1?.edi")
            .await
            .err()
            .unwrap();
        assert_eq!(err.status(), Some(404));
        let _ = client.delete_objects("default", "alice/in/", true).await;
        let _ = client.create_directory("default", "alice/new").await;
        let _ = client
            .list_objects_page("default", "alice/in box", Some(10), None)
            .await;
        for bad in ["../users", "a//b", "a/./b", "", "/"] {
            assert!(
                matches!(
                    client.get_object("default", bad).await,
                    Err(ClientError::BadId(_))
                ),
                "{bad}"
            );
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "GET /v1/buckets/default/objects/alice/in/x%20%231%3F.edi",
                "DELETE /v1/buckets/default/objects/alice/in?recursive=true",
                "PUT /v1/buckets/default/objects/alice/new/",
                "GET /v1/buckets/default/objects?prefix=alice%2Fin+box&pageSize=10",
            ]
        );
    }
}
