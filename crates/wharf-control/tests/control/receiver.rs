//! A local webhook receiver that records every request and answers with scripted statuses;
//! an independent signature check (Python's `standardwebhooks`); helpers for event tests.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wharf_control::{ControlPlaneOptions, LoopGuard, RetrySchedule};
use wharf_core::{BucketName, EventData, Protocol, Username};

use crate::common::TestApp;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Mutex<Vec<Received>>,
    /// Statuses for the next requests; then `default_status`.
    script: Mutex<VecDeque<u16>>,
    default_status: Mutex<u16>,
}

pub struct Receiver {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    state: Arc<ReceiverState>,
    task: JoinHandle<()>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    state.requests.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
    });
    let status = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(*state.default_status.lock().unwrap());
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        *state.default_status.lock().unwrap() = 200;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Receiver { base, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The next requests get these statuses, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    /// Requests beyond the script get this status.
    pub fn answer_always(&self, status: u16) {
        *self.state.default_status.lock().unwrap() = status;
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits (up to 20 s) until `path` got at least `n` requests; returns them.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.requests_to(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} got {} requests, expected {n}: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Options that make retries and the reconciler fast enough for tests.
pub fn fast_options() -> ControlPlaneOptions {
    ControlPlaneOptions {
        webhook_timeout: Duration::from_secs(5),
        retry: RetrySchedule {
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            give_up_after: Duration::from_secs(60),
        },
        delivery_poll_interval: Duration::from_millis(50),
        reconcile_interval: Duration::from_millis(100),
        loop_guard: Some(LoopGuard::default()),
        // The receivers of these tests listen on loopback.
        allow_private_webhook_targets: true,
        ..ControlPlaneOptions::default()
    }
}

/// Event data as a gateway reports it.
pub fn event_data(bucket: &str, key: &str, username: &str) -> EventData {
    EventData {
        bucket_name: BucketName::parse(bucket).unwrap(),
        key: key.to_owned(),
        size: None,
        sha256: None,
        username: Username::parse(username).unwrap(),
        protocol: Protocol::Sftp,
        client_ip: "192.0.2.10".into(),
        session_id: "session-1".into(),
        previous_key: None,
        error: None,
    }
}

/// Creates a webhook (201) and returns its body.
pub async fn create_webhook(app: &TestApp, body: Value) -> Value {
    let response = app.post("/v1/webhooks", &body).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "creating webhook {body}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// `GET /v1/events/{id}`, as JSON.
pub async fn get_event(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/events/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// `GET /v1/webhooks/{id}/deliveries` (first page, up to 100).
pub async fn deliveries(app: &TestApp, webhook_id: &str) -> Vec<Value> {
    let response = app
        .get(&format!(
            "/v1/webhooks/{webhook_id}/deliveries?pageSize=100"
        ))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

/// Waits (up to 20 s) until the webhook's newest delivery has `status`; returns it.
pub async fn wait_for_delivery(app: &TestApp, webhook_id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let items = deliveries(app, webhook_id).await;
        if let Some(first) = items.first()
            && first["status"] == status
        {
            return first.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {status} delivery for {webhook_id}: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Verifies a delivery with the `standardwebhooks` package from PyPI (an implementation
/// independent of ours); returns the payload it parsed. Panics if the package is missing.
pub fn verify_with_standardwebhooks(secret: &str, request: &Received) -> Value {
    const SCRIPT: &str = r#"
import json, os, sys
try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    sys.stderr.write("MISSING standardwebhooks\n")
    sys.exit(3)
body = sys.stdin.buffer.read()
headers = json.loads(os.environ["WEBHOOK_HEADERS"])
payload = Webhook(os.environ["WEBHOOK_SECRET"]).verify(body, headers)
print(json.dumps(payload))
"#;
    use std::io::Write;
    let headers = serde_json::json!({
        "webhook-id": request.header("webhook-id"),
        "webhook-timestamp": request.header("webhook-timestamp"),
        "webhook-signature": request.header("webhook-signature"),
    });
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .env("WEBHOOK_SECRET", secret)
        .env("WEBHOOK_HEADERS", headers.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (it verifies webhook signatures independently)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&request.body)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() != Some(3),
        "Python's standardwebhooks package is missing: install it with \
         `python3 -m pip install standardwebhooks` (.ci/run does)"
    );
    assert!(
        output.status.success(),
        "standardwebhooks rejected the delivery: {stderr}"
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
