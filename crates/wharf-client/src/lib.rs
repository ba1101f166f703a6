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
//! [`ClientError::Api`] with the RFC 9457 problem document. Lists are also `Stream`s over
//! every page ([`Client::users`], [`Client::events`], [`Client::list_objects`], …); 429 and
//! 503 answers are retried with backoff ([`RetryPolicy`]); [`webhooks::verify`] checks a
//! delivery's Standard Webhooks signature in a receiver.

pub mod webhooks;

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, TryStream};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use wharf_core::api::{
    Bucket, BucketList, BucketObject, CreateBucketRequest, CreateUserRequest, CreateWebhookRequest,
    CreatedUser, CreatedWebhook, Delivery, DeliveryList, EventList, MAX_OBJECT_PAGE_SIZE,
    NewPassword, ObjectList, PasswordOptions, Problem, ResetPasswordRequest, ServerInfo,
    UpdateUserRequest, UpdateWebhookRequest, User, UserList, Webhook, WebhookList,
};
use wharf_core::{Event, EventType, LoginError, LoginGrant, LoginProvider, LoginRequest};

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid API URL '{0}'")]
    Url(String),
    /// An id or name that cannot be a URL path segment (empty, `.` or `..`).
    #[error("'{0}' is not a valid id")]
    BadId(String),
    #[error("cannot reach the Wharf API: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error; `problem` says why (and which field).
    #[error("{}", describe(problem))]
    Api { status: u16, problem: Problem },
    #[error("unexpected response from the Wharf API (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },
    /// A local file to upload could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn describe(problem: &Problem) -> String {
    let mut s = format!("{} (HTTP {})", problem.title, problem.status);
    let lines: Vec<String> = problem
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    // The server's detail of a validation problem is its field errors joined: show them once.
    if let Some(detail) = &problem.detail
        && *detail != lines.join("; ")
    {
        s.push_str(": ");
        s.push_str(detail);
    }
    match lines.as_slice() {
        [] => {}
        [line] if problem.detail.as_deref() == Some(line.as_str()) => {
            s.push_str(": ");
            s.push_str(line);
        }
        _ => {
            for line in &lines {
                s.push_str("\n  ");
                s.push_str(line);
            }
        }
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
            ClientError::Url(_) | ClientError::BadId(_) | ClientError::File { .. } => None,
        }
    }
}

/// A client of one Wharf control plane. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For object transfers, which may take hours: no overall timeout, only one per read.
    transfers: reqwest::Client,
    base: Url,
    api_key: Option<String>,
    retry: RetryPolicy,
}

/// When the client sends a request again by itself: on `429 Too Many Requests` and
/// `503 Service Unavailable` (any method; the server did not act on it), and on connection
/// errors of idempotent methods (GET, HEAD, PUT, DELETE). Waits grow exponentially with full
/// jitter; a `Retry-After` header (seconds or an HTTP date) is honoured, and one longer than
/// `max_delay` makes the client give up and return the error instead. Object uploads from a
/// stream are never retried (their body cannot be replayed).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: none).
    pub max_retries: u32,
    /// The first wait (before jitter); doubled for each further retry.
    pub base_delay: Duration,
    /// The longest wait, and the longest `Retry-After` honoured.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 3 retries, from 200 ms, at most 60 s.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `done + 1`, or `None` when the retries are used up.
    fn backoff(&self, done: u32) -> Option<Duration> {
        if done >= self.max_retries {
            return None;
        }
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << done.min(20))
            .min(self.max_delay);
        // Full jitter: anywhere between nothing and the ceiling.
        Some(ceiling.mul_f64(rand_fraction()))
    }

    /// Whether (and how long) to wait before sending again after `response`.
    fn wait_for(&self, response: &reqwest::Response, done: u32) -> Option<Duration> {
        let status = response.status();
        if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
            return None;
        }
        let backoff = self.backoff(done)?;
        match retry_after(response.headers()) {
            Some(asked) if asked > self.max_delay => None,
            Some(asked) => Some(asked.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A number in [0, 1) that differs between calls and processes (jitter, not cryptography).
fn rand_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// How long an object transfer may go without a byte moving before it is given up.
const TRANSFER_READ_TIMEOUT: Duration = Duration::from_secs(120);

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
        let transfers = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(TRANSFER_READ_TIMEOUT)
            .user_agent(concat!("wharf-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            transfers,
            base,
            api_key,
            retry: RetryPolicy::default(),
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
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let mut retries = 0;
        loop {
            let mut request = self.http.request(method.clone(), url.clone());
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let wait = match request.send().await {
                Ok(response) => match self.retry.wait_for(&response, retries) {
                    Some(wait) => wait,
                    None => return check(response).await,
                },
                // Connection trouble: the request may have been processed, so only requests
                // that can safely be repeated are.
                Err(e) if idempotent && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    match self.retry.backoff(retries) {
                        Some(wait) => wait,
                        None => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            tracing::debug!(%url, retry = retries + 1, ?wait, "retrying a Wharf API request");
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }

    /// Replaces the retry policy (see [`RetryPolicy`]); `RetryPolicy::none()` turns retries off.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
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
        page_query(&mut url, page_size, page_token);
        self.send::<(), _>(Method::GET, url, None).await
    }

    /// Every user, page after page, as a stream.
    pub fn users(&self) -> impl Stream<Item = Result<User, ClientError>> + '_ {
        paginate(move |token| async move {
            let page = self
                .list_users(Some(MAX_PAGE_SIZE), token.as_deref())
                .await?;
            Ok((page.items, page.next_page_token))
        })
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
        paginate(move |token| async move {
            let page = self
                .list_webhooks(Some(MAX_PAGE_SIZE), token.as_deref())
                .await?;
            Ok((page.items, page.next_page_token))
        })
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
        paginate(move |token| async move {
            let page = self
                .webhook_deliveries(id, Some(MAX_PAGE_SIZE), token.as_deref())
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
        paginate(move |token| async move {
            let page = self
                .list_events(filter, Some(MAX_PAGE_SIZE), token.as_deref())
                .await?;
            Ok((page.items, page.next_page_token))
        })
    }

    pub async fn get_event(&self, id: &str) -> Result<Event, ClientError> {
        let url = self.path_url(&["v1", "events", id])?;
        self.send::<(), _>(Method::GET, url, None).await
    }

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
        paginate(move |token| async move {
            let page = self
                .list_objects_page(bucket, prefix, Some(MAX_OBJECT_PAGE_SIZE), token.as_deref())
                .await?;
            Ok((page.items, page.next_page_token))
        })
    }

    /// Starts downloading an object: the reply's headers have arrived, the content follows
    /// through [`ObjectDownload::chunk`] or [`ObjectDownload::into_stream`].
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<ObjectDownload, ClientError> {
        self.get_object_from(bucket, key, 0).await
    }

    /// Like [`Client::get_object`], from byte `offset` on (to resume a download; `Range:
    /// bytes=offset-`). [`ObjectDownload::size`] is then the size of the rest.
    pub async fn get_object_from(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
    ) -> Result<ObjectDownload, ClientError> {
        let url = self.object_url(bucket, key, false)?;
        let mut request = self.transfer(Method::GET, url);
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let response = check(request.send().await?).await?;
        Ok(ObjectDownload::new(response))
    }

    /// Uploads an object from `body` (bytes, a string, a file through
    /// [`reqwest::Body::wrap_stream`], …). The object is visible once the whole body has
    /// arrived; a failed upload leaves the previous version. Missing parent directories are
    /// created. The reply carries the size and SHA-256 the server computed.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<reqwest::Body>,
        content_length: Option<u64>,
    ) -> Result<BucketObject, ClientError> {
        let url = self.object_url(bucket, key, false)?;
        let mut request = self
            .transfer(Method::PUT, url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(length) = content_length {
            request = request.header(reqwest::header::CONTENT_LENGTH, length);
        }
        let response = check(request.send().await?).await?;
        Ok(response.json().await?)
    }

    /// Uploads an object from a stream of chunks (see [`Client::put_object`]); with
    /// `content_length` the server can tell a cut stream from a complete one even if the
    /// connection ends cleanly.
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

    /// Uploads the file at `path`, streamed from disk.
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
        let response = check(self.transfer(Method::PUT, url).send().await?).await?;
        Ok(response.json().await?)
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

    fn transfer(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.transfers.request(method, url);
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
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

/// Bytes read from a file per chunk of an upload.
const FILE_CHUNK: usize = 256 * 1024;

/// An object being downloaded ([`Client::get_object`]).
pub struct ObjectDownload {
    response: reqwest::Response,
}

impl ObjectDownload {
    fn new(response: reqwest::Response) -> Self {
        ObjectDownload { response }
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

    /// The content as a stream of pieces.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, ClientError>> {
        use futures::TryStreamExt;
        self.response.bytes_stream().map_err(ClientError::from)
    }
}

/// Largest page the API serves; the streams fetch pages of this size.
pub const MAX_PAGE_SIZE: u32 = 100;

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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::extract::State;
    use axum::http::{Method as HttpMethod, StatusCode as HttpStatus, Uri};
    use futures::TryStreamExt;
    use serde_json::{Value, json};
    use wharf_core::api::FieldError;

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

    #[test]
    fn problems_show_each_field_once() {
        let field = |f: &str, m: &str| FieldError {
            field: f.into(),
            message: m.into(),
        };
        let problem = |detail: Option<&str>, errors: Vec<FieldError>| Problem {
            kind: "about:blank".into(),
            title: "Validation failed".into(),
            status: 422,
            detail: detail.map(Into::into),
            errors,
        };
        assert_eq!(
            describe(&problem(Some("url: bad"), vec![field("url", "bad")])),
            "Validation failed (HTTP 422): url: bad"
        );
        assert_eq!(
            describe(&problem(
                Some("url: bad; events: none"),
                vec![field("url", "bad"), field("events", "none")]
            )),
            "Validation failed (HTTP 422)\n  url: bad\n  events: none"
        );
        assert_eq!(
            describe(&problem(Some("no webhook 'x'"), vec![])),
            "Validation failed (HTTP 422): no webhook 'x'"
        );
    }
}
