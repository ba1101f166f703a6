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

/// Runs the CLI and parses its `--json` output; fails the test if it did not succeed.
async fn cli_json(wharf: &Wharf, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = wharf.cli(&args).await;
    assert!(out.status.success(), "wharf {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("wharf {args:?} printed no JSON ({e}): {}", text(&out)))
}

/// Runs the CLI, expects it to fail, and returns its standard error.
async fn cli_fails(wharf: &Wharf, args: &[&str]) -> String {
    let out = wharf.cli(args).await;
    assert!(
        !out.status.success(),
        "wharf {args:?} should fail: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `wharf objects …`: files streamed through the objects API by the CLI, seen by a partner over
/// SFTP, and recorded as events like any upload (`protocol: "api"`).
#[tokio::test]
async fn the_cli_moves_files_through_the_objects_api() {
    let wharf = Wharf::start().await;
    let work = tempfile::tempdir().unwrap();
    let data = random_bytes(5 * 1024 * 1024 + 3);
    write_file(work.path(), "up.bin", &data);
    let up = work.path().join("up.bin");
    let up = up.to_str().unwrap();

    // Upload: JSON, then text.
    let put = cli_json(
        &wharf,
        &["objects", "put", "default", "partners/acme/in/up.bin", up],
    )
    .await;
    assert_eq!(put["key"], "partners/acme/in/up.bin");
    assert_eq!(put["size"], data.len());
    assert_eq!(put["sha256"], sha256(&data));
    let out = wharf
        .cli(&[
            "objects",
            "put",
            "default",
            "partners/acme/in/second.edi",
            up,
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("Uploaded partners/acme/in/second.edi"),
        "{}",
        text(&out)
    );
    assert_eq!(
        read_file(&wharf.bucket_dir().join("partners/acme/in"), "up.bin"),
        data
    );

    // List: JSON, text, and a limit with the hint to go on.
    let listed = cli_json(
        &wharf,
        &["objects", "list", "default", "--prefix", "partners/acme/in"],
    )
    .await;
    let keys: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["partners/acme/in/second.edi", "partners/acme/in/up.bin"],
        "{listed}"
    );
    let out = wharf.cli(&["objects", "list", "default"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("partners/"), "{}", text(&out));
    let out = wharf
        .cli(&[
            "objects",
            "list",
            "default",
            "--prefix",
            "partners/acme/in/",
            "--limit",
            "1",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("second.edi"), "{}", text(&out));
    assert!(!stdout(&out).contains("up.bin"), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--page-token"),
        "{}",
        text(&out)
    );

    // Download to a file and to standard output.
    let target = work.path().join("down.bin");
    let got = cli_json(
        &wharf,
        &[
            "objects",
            "get",
            "default",
            "partners/acme/in/up.bin",
            "-o",
            target.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(got["size"], data.len(), "{got}");
    assert_eq!(sha256(&std::fs::read(&target).unwrap()), sha256(&data));
    assert!(!work.path().join("down.bin.part").exists());
    let out = wharf
        .cli(&[
            "objects",
            "get",
            "default",
            "partners/acme/in/second.edi",
            "-o",
            "-",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256(&out.stdout), sha256(&data));
    let stderr = cli_fails(&wharf, &["objects", "get", "default", "partners/nope.edi"]).await;
    assert!(stderr.contains("404"), "{stderr}");

    // A partner whose home is there sees the files over SFTP.
    let (acme, acme_pw) = wharf.create_user("/partners/acme", json!({})).await;
    let out = sftp_batch(
        wharf.sftp_port,
        &acme,
        Auth::Password(&acme_pw),
        work.path(),
        "ls -l in\nget in/up.bin sftp.bin\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("up.bin"), "{}", text(&out));
    assert_eq!(read_file(work.path(), "sftp.bin"), data);

    // Both uploads are events of the API.
    let (status, events) = wharf
        .api(
            Method::GET,
            "/v1/events?type=file.created&prefix=partners/",
            None,
        )
        .await;
    assert_eq!(status, 200, "{events}");
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{events}");
    for event in items {
        assert_eq!(event["data"]["protocol"], "api", "{event}");
        assert_eq!(event["data"]["username"], "wharf-api", "{event}");
        assert_eq!(event["data"]["sha256"], sha256(&data), "{event}");
    }

    // Delete: a file, then a directory that is not empty only with --recursive.
    let out = wharf
        .cli(&["objects", "delete", "default", "partners/acme/in/up.bin"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = cli_fails(&wharf, &["objects", "delete", "default", "partners"]).await;
    assert!(stderr.contains("not empty"), "{stderr}");
    let out = wharf
        .cli(&["objects", "mkdir", "default", "partners/bob/out"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = wharf
        .cli(&["objects", "delete", "default", "partners", "--recursive"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let listed = cli_json(&wharf, &["objects", "list", "default"]).await;
    assert_eq!(listed["items"], json!([]), "{listed}");
}

#[tokio::test]
async fn the_cli_manages_webhooks_and_lists_events() {
    let wharf = Wharf::start().await;
    let (alice, alice_pw) = wharf.create_user("/alice", json!({})).await;
    let (url, received) = receiver().await;

    // Create (JSON): the reply is the API's, with the secret.
    let created = cli_json(
        &wharf,
        &[
            "webhooks",
            "create",
            "--url",
            &url,
            "--event",
            "file.created",
            "--prefix",
            "alice/",
            "--username",
            &alice,
            "--description",
            "alice's uploads",
        ],
    )
    .await;
    let id = created["id"].as_str().expect("the id").to_owned();
    let secret = created["secret"].as_str().expect("the secret").to_owned();
    assert!(
        id.starts_with("wh_") && secret.starts_with("whsec_"),
        "{created}"
    );
    assert_eq!(created["events"], json!(["file.created"]));
    assert_eq!(
        created["filter"],
        json!({"prefix": "alice/", "username": alice})
    );
    assert_eq!(created["enabled"], true);

    // Create (text): the id and the secret, once, with the warning; then delete it.
    let out = wharf
        .cli(&[
            "webhooks",
            "create",
            "--url",
            &url,
            "--event",
            "file.deleted",
            "--event",
            "file.renamed",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let shown = stdout(&out);
    assert!(shown.contains("whsec_"), "{shown}");
    assert!(shown.contains("not shown again"), "{shown}");
    let other = shown
        .split_whitespace()
        .find(|w| w.starts_with("wh_"))
        .unwrap_or_else(|| panic!("no webhook id in: {shown}"))
        .to_owned();
    let listed = cli_json(&wharf, &["webhooks", "list"]).await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str(), other.as_str()], "{listed}");
    let out = wharf.cli(&["webhooks", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("prefix=alice/ username={alice}")),
        "{}",
        text(&out)
    );
    let out = wharf.cli(&["webhooks", "delete", &other]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = cli_fails(&wharf, &["webhooks", "get", &other]).await;
    assert!(
        stderr.contains(&format!("no webhook '{other}'")),
        "{stderr}"
    );
    assert!(stderr.contains("404"), "{stderr}");

    // An upload over SFTP is delivered, signed.
    let work = tempfile::tempdir().unwrap();
    let data = random_bytes(12_345);
    write_file(work.path(), "cli.bin", &data);
    let out = sftp_batch(
        wharf.sftp_port,
        &alice,
        Auth::Password(&alice_pw),
        work.path(),
        "put cli.bin cli.edi\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let delivery = wait_for(&received, 1).await.remove(0);
    let payload = verify_independently(&secret, &delivery);
    assert_eq!(payload["type"], "file.created");
    assert_eq!(payload["data"]["key"], "alice/cli.edi");
    let event_id = delivery.id.clone();

    // The delivery log shows it succeeded, with the receiver's status code.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let log = loop {
        let log = cli_json(&wharf, &["webhooks", "deliveries", &id]).await;
        if log["items"][0]["status"] == "succeeded" {
            break log;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{log}");
    assert_eq!(items[0]["eventId"], event_id.as_str());
    assert_eq!(items[0]["eventType"], "file.created");
    assert_eq!(items[0]["attempts"][0]["statusCode"], 204);
    let delivery_id = items[0]["id"].as_str().unwrap().to_owned();
    let out = wharf.cli(&["webhooks", "deliveries", &id]).await;
    assert!(out.status.success(), "{}", text(&out));
    let table = stdout(&out);
    assert!(
        table.contains(&delivery_id) && table.contains("succeeded"),
        "{table}"
    );
    assert!(table.contains("HTTP 204"), "{table}");

    // Events: JSON and text.
    let events = cli_json(&wharf, &["events", "list", "--type", "file.created"]).await;
    let first = &events["items"][0];
    assert_eq!(first["id"], event_id.as_str(), "{events}");
    assert_eq!(first["data"]["key"], "alice/cli.edi");
    assert_eq!(first["data"]["size"], data.len());
    assert_eq!(first["data"]["sha256"], sha256(&data));
    let none = cli_json(
        &wharf,
        &[
            "events",
            "list",
            "--type",
            "file.created",
            "--prefix",
            "bob/",
        ],
    )
    .await;
    assert_eq!(none["items"], json!([]), "{none}");
    let out = wharf
        .cli(&[
            "events",
            "list",
            "--username",
            &alice,
            "--bucket",
            "default",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let table = stdout(&out);
    assert!(table.contains("alice/cli.edi"), "{table}");
    assert!(
        table.contains("file.created") && table.contains("sftp"),
        "{table}"
    );
    let event = cli_json(&wharf, &["events", "get", &event_id]).await;
    assert_eq!(event, *first);
    let out = wharf.cli(&["events", "get", &event_id]).await;
    assert!(stdout(&out).contains(&sha256(&data)), "{}", text(&out));

    // Test delivery, update, get.
    let test = cli_json(&wharf, &["webhooks", "test", &id]).await;
    assert_eq!(test["eventType"], "webhook.test", "{test}");
    let test_delivery = wait_for(&received, 2).await.remove(1);
    assert_eq!(test_delivery.json()["type"], "webhook.test");
    let updated = cli_json(
        &wharf,
        &["webhooks", "update", &id, "--disable", "--prefix", ""],
    )
    .await;
    assert_eq!(updated["enabled"], false, "{updated}");
    assert_eq!(
        updated["filter"],
        json!({"username": alice}),
        "the username part stays"
    );
    let stderr = cli_fails(&wharf, &["webhooks", "test", &id]).await;
    assert!(stderr.contains("disabled"), "{stderr}");
    let out = wharf
        .cli(&[
            "webhooks",
            "update",
            &id,
            "--enable",
            "--event",
            "file.created",
            "--event",
            "file.deleted",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let got = cli_json(&wharf, &["webhooks", "get", &id]).await;
    assert_eq!(got["enabled"], true);
    assert_eq!(got["events"], json!(["file.created", "file.deleted"]));
    assert!(
        got.get("secret").is_none(),
        "the secret is never shown again: {got}"
    );

    // Errors: unknown ids, a delivery that is not dead, a bad URL, an unknown event type.
    let stderr = cli_fails(&wharf, &["webhooks", "deliveries", "wh_nope"]).await;
    assert!(stderr.contains("no webhook 'wh_nope'"), "{stderr}");
    let stderr = cli_fails(&wharf, &["events", "get", "evt_nope"]).await;
    assert!(stderr.contains("no event 'evt_nope'"), "{stderr}");
    let stderr = cli_fails(&wharf, &["webhooks", "retry", &id, &delivery_id]).await;
    assert!(
        stderr.contains("only dead deliveries can be retried"),
        "{stderr}"
    );
    let stderr = cli_fails(
        &wharf,
        &[
            "webhooks",
            "create",
            "--url",
            "ftp://example.com/x",
            "--event",
            "file.created",
        ],
    )
    .await;
    assert!(
        stderr.contains("url: must be an http:// or https:// URL"),
        "{stderr}"
    );
    let stderr = cli_fails(
        &wharf,
        &[
            "webhooks",
            "create",
            "--url",
            &url,
            "--event",
            "file.exploded",
        ],
    )
    .await;
    assert!(stderr.contains("unknown event type"), "{stderr}");
    let stderr = cli_fails(&wharf, &["webhooks", "delete", "wh_nope"]).await;
    assert!(stderr.contains("no webhook 'wh_nope'"), "{stderr}");
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
