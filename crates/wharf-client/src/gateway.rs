//! The gateways' side of the control plane: login checks and the event contract over HTTP,
//! with the gateway token (`/internal/v1/…`). Used by `wharf sftp-gateway` and
//! `wharf ftps-gateway` when they run apart from the control plane.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;
use url::Url;
use wharf_core::api::{
    ADDRESS_BANNED_PROBLEM, PASSWORD_DISABLED_PROBLEM, PROBLEM_TYPE_BASE, Problem,
};
use wharf_core::{
    CheckSessionsReply, CheckSessionsRequest, LoginError, LoginGrant, LoginProvider, LoginRequest,
    SessionCheck,
};

use crate::ClientError;

/// The control plane's base URL and the HTTP client a gateway reaches it with: short timeouts
/// (a gateway fails a login or retries an event rather than hang) and enough idle connections
/// for a busy gateway.
fn control_plane(control_plane_url: &str) -> Result<(Url, reqwest::Client), ClientError> {
    let base =
        Url::parse(control_plane_url).map_err(|_| ClientError::Url(control_plane_url.into()))?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(64)
        .build()?;
    Ok((base, http))
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
        let (base, http) = control_plane(control_plane_url)?;
        let url = base
            .join("/internal/v1/login")
            .map_err(|_| ClientError::Url(control_plane_url.into()))?;
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
            StatusCode::FORBIDDEN => Err(refusal(&response.bytes().await.unwrap_or_default())),
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(60), Duration::from_secs);
                Err(ban(
                    &response.bytes().await.unwrap_or_default(),
                    retry_after,
                ))
            }
            StatusCode::NOT_FOUND => Err(LoginError::Denied),
            StatusCode::UNAUTHORIZED => Err(LoginError::Unavailable(
                "the control plane rejected this gateway's token (check WHARF_GATEWAY_TOKEN)"
                    .into(),
            )),
            other => Err(LoginError::Unavailable(format!(
                "control plane answered HTTP {other}"
            ))),
        }
    }

    async fn check_sessions(&self, sessions: &[SessionCheck]) -> Result<Vec<bool>, LoginError> {
        self.post_check(sessions).await
    }
}

impl HttpLoginProvider {
    async fn post_check(&self, sessions: &[SessionCheck]) -> Result<Vec<bool>, LoginError> {
        let url = self
            .url
            .join("/internal/v1/sessions/check")
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        let body = CheckSessionsRequest {
            sessions: sessions.to_vec(),
        };
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        match response.status() {
            StatusCode::OK => response
                .json::<CheckSessionsReply>()
                .await
                .map(|reply| reply.valid)
                .map_err(|e| LoginError::Unavailable(format!("bad session check reply: {e}"))),
            other => Err(LoginError::Unavailable(format!(
                "control plane answered the session check with HTTP {other}"
            ))),
        }
    }
}

/// The refusal a 403 problem document stands for: [`LoginError::PasswordDisabled`] for its own
/// problem type, [`LoginError::Denied`] for anything else (control planes older than it, too).
fn refusal(body: &[u8]) -> LoginError {
    let password_disabled = format!("{PROBLEM_TYPE_BASE}{PASSWORD_DISABLED_PROBLEM}");
    match serde_json::from_slice::<Problem>(body) {
        Ok(problem) if problem.kind == password_disabled => LoginError::PasswordDisabled,
        _ => LoginError::Denied,
    }
}

/// The ban a 429 problem document stands for: [`LoginError::AddressBanned`] for its own
/// problem type, [`LoginError::UserBanned`] for anything else.
fn ban(body: &[u8], retry_after: Duration) -> LoginError {
    let address_banned = format!("{PROBLEM_TYPE_BASE}{ADDRESS_BANNED_PROBLEM}");
    match serde_json::from_slice::<Problem>(body) {
        Ok(problem) if problem.kind == address_banned => LoginError::AddressBanned { retry_after },
        _ => LoginError::UserBanned { retry_after },
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
        let (base, http) = control_plane(control_plane_url)?;
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
        self.begin_change(wharf_core::EventType::FileCreated, data)
            .await
    }

    async fn begin_change(
        &self,
        event_type: wharf_core::EventType,
        data: wharf_core::EventData,
    ) -> Result<String, wharf_core::EventError> {
        let body = wharf_core::events::BeginUploadRequest { event_type, data };
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
    use super::*;

    #[test]
    fn a_403_is_password_disabled_only_for_its_own_problem_type() {
        let problem =
            |kind: &str| format!(r#"{{"type":"{kind}","title":"t","status":403}}"#).into_bytes();
        assert!(matches!(
            refusal(&problem("https://wharf.dev/problems/password-disabled")),
            LoginError::PasswordDisabled
        ));
        for body in [
            problem("https://wharf.dev/problems/login-denied"),
            problem("password-disabled"),
            b"not json".to_vec(),
            Vec::new(),
        ] {
            assert!(matches!(refusal(&body), LoginError::Denied));
        }
    }

    #[test]
    fn a_429_is_an_address_ban_only_for_its_own_problem_type() {
        let problem =
            |kind: &str| format!(r#"{{"type":"{kind}","title":"t","status":429}}"#).into_bytes();
        let wait = Duration::from_secs(42);
        assert!(matches!(
            ban(&problem("https://wharf.dev/problems/address-banned"), wait),
            LoginError::AddressBanned { retry_after } if retry_after == wait
        ));
        assert!(matches!(
            ban(&problem("https://wharf.dev/problems/user-banned"), wait),
            LoginError::UserBanned { retry_after } if retry_after == wait
        ));
        assert!(matches!(ban(b"", wait), LoginError::UserBanned { .. }));
    }
}
