//! Upload events end to end: partners upload over SFTP (OpenSSH `sftp`) and FTPS (`curl`),
//! `wharf serve` records the events and delivers them to a webhook receiver started by the
//! test, and each delivery's signature is checked by an independent implementation (Python's
//! `standardwebhooks` package).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// One delivery the receiver got: its headers and body.
#[derive(Clone, Debug)]
struct Delivery {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

type Received = Arc<Mutex<Vec<Delivery>>>;

async fn receive(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    received.lock().unwrap().push(Delivery {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: body.to_vec(),
    });
    StatusCode::NO_CONTENT
}

/// A webhook receiver on a free port; returns its URL and what it received.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/wharf", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hooks/wharf", axum::routing::post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Waits until `n` deliveries arrived (or fails after 30 s).
async fn wait_for(received: &Received, n: usize) -> Vec<Delivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = received.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} deliveries arrived: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Verifies `delivery` with Python's `standardwebhooks` (not our code); returns the payload
/// the library accepted.
fn verify_independently(secret: &str, delivery: &Delivery) -> Value {
    let script = r#"
import json, sys
from standardwebhooks import Webhook
secret, msg_id, timestamp, signature = sys.argv[1:5]
body = sys.stdin.buffer.read()
payload = Webhook(secret).verify(body, {
    "webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature})
print(json.dumps(payload))
"#;
    let python = require_tool("python3", "apt-get install -y python3");
    let check = std::process::Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .output()
        .expect("run python3");
    assert!(
        check.status.success(),
        "the Python package standardwebhooks is missing: python3 -m pip install standardwebhooks"
    );
    let mut child = std::process::Command::new(python)
        .args([
            "-c",
            script,
            secret,
            &delivery.id,
            &delivery.timestamp,
            &delivery.signature,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&delivery.body)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks rejected the delivery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn sftp_and_ftps_uploads_are_delivered_signed_and_filtered() {
    let wharf = Wharf::start().await;
    let (alice, alice_pw) = wharf.create_user("/alice", json!({})).await;
    let (bob, bob_pw) = wharf.create_user("/bob", json!({})).await;
    let (url, received) = receiver().await;
    let (status, webhook) = wharf
        .api(
            Method::POST,
            "/v1/webhooks",
            Some(json!({
                "url": url,
                "events": ["file.created"],
                "filter": {"username": alice},
                "description": "alice's uploads"
            })),
        )
        .await;
    assert_eq!(status, 201, "{webhook}");
    let secret = webhook["secret"].as_str().expect("the secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");

    let work = tempfile::tempdir().unwrap();
    let over_sftp = random_bytes(300_000);
    let over_ftps = random_bytes(70_000);
    write_file(work.path(), "sftp.bin", &over_sftp);
    write_file(work.path(), "ftps.bin", &over_ftps);

    // Alice uploads over SFTP, then over FTPS; Bob's upload is filtered out.
    let out = sftp_batch(
        wharf.sftp_port,
        &alice,
        Auth::Password(&alice_pw),
        work.path(),
        "put sftp.bin invoice.edi\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = sftp_batch(
        wharf.sftp_port,
        &bob,
        Auth::Password(&bob_pw),
        work.path(),
        "put sftp.bin bob.edi\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = curl_ftps(
        &alice,
        &alice_pw,
        work.path(),
        &["-T", "ftps.bin", &ftps_url(wharf.ftps_port, "/order.edi")],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));

    let deliveries = wait_for(&received, 2).await;
    // Nothing else arrives (Bob's upload, or a duplicate) within a few delivery rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deliveries_later = received.lock().unwrap().clone();
    assert_eq!(deliveries_later.len(), 2, "{deliveries_later:?}");

    let mut by_protocol = std::collections::BTreeMap::new();
    for delivery in &deliveries {
        let payload = verify_independently(&secret, delivery);
        assert_eq!(payload, delivery.json());
        assert_eq!(
            payload["id"],
            delivery.id.as_str(),
            "webhook-id is the event id"
        );
        assert_eq!(payload["type"], "file.created");
        let data = &payload["data"];
        assert_eq!(data["username"], alice.as_str());
        assert_eq!(data["bucketName"], "default");
        assert_eq!(data["clientIp"], "127.0.0.1");
        assert!(data["sessionId"].as_str().is_some_and(|s| !s.is_empty()));
        by_protocol.insert(data["protocol"].as_str().unwrap().to_owned(), data.clone());
    }
    let sftp = &by_protocol["sftp"];
    assert_eq!(sftp["key"], "alice/invoice.edi");
    assert_eq!(sftp["size"], over_sftp.len());
    assert_eq!(sftp["sha256"], sha256(&over_sftp));
    let ftps = &by_protocol["ftps"];
    assert_eq!(ftps["key"], "alice/order.edi");
    assert_eq!(ftps["size"], over_ftps.len());
    assert_eq!(ftps["sha256"], sha256(&over_ftps));

    // A tampered body fails the independent check (the check can fail).
    let mut tampered = deliveries[0].clone();
    tampered.body = tampered.body.replace_range_bytes(b"alice", b"mallo");
    let result = std::panic::catch_unwind(|| verify_independently(&secret, &tampered));
    assert!(result.is_err(), "a tampered body must not verify");

    // Every event is listed, Bob's too, and deletes are events.
    let out = sftp_batch(
        wharf.sftp_port,
        &alice,
        Auth::Password(&alice_pw),
        work.path(),
        "rm order.edi\nmkdir archive\nrename invoice.edi archive/invoice.edi\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let (status, events) = wharf
        .api(Method::GET, "/v1/events?type=file.created", None)
        .await;
    assert_eq!(status, 200, "{events}");
    let keys: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        vec!["alice/order.edi", "bob/bob.edi", "alice/invoice.edi"],
        "newest first"
    );
    let (_, alice_events) = wharf
        .api(
            Method::GET,
            &format!("/v1/events?username={alice}&prefix=alice/"),
            None,
        )
        .await;
    let types: Vec<&str> = alice_events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "file.renamed",
            "directory.created",
            "file.deleted",
            "file.created",
            "file.created"
        ]
    );
    let renamed = &alice_events["items"][0]["data"];
    assert_eq!(renamed["key"], "alice/archive/invoice.edi");
    assert_eq!(renamed["previousKey"], "alice/invoice.edi");

    // The webhook's delivery log lists both deliveries as delivered.
    let id = webhook["id"].as_str().unwrap();
    let (status, log) = wharf
        .api(Method::GET, &format!("/v1/webhooks/{id}/deliveries"), None)
        .await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["items"].as_array().unwrap().len(), 2, "{log}");
}

/// `replace_range_bytes`: replaces the first occurrence of `from` with `to` (same length).
trait ReplaceBytes {
    fn replace_range_bytes(self, from: &[u8], to: &[u8]) -> Vec<u8>;
}

impl ReplaceBytes for Vec<u8> {
    fn replace_range_bytes(mut self, from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at = self
            .windows(from.len())
            .position(|w| w == from)
            .expect("the pattern is in the body");
        self[at..at + from.len()].copy_from_slice(to);
        self
    }
}
