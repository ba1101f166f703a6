//! The client against a real `wharf serve` (users, paging, typed problems, objects, signed
//! webhook deliveries), and its retries against local servers that fail on purpose.
//!
//! The server is the `wharf` binary of this workspace, which `cargo test -p wharf-client` does
//! not build (a crate's tests only get its own package's binaries). It is `WHARF_BIN` if set,
//! else `wharf` next to this test's own directory (`target/debug/wharf`). `cargo test
//! --workspace` builds it before running any test; on its own, run `cargo build -p wharf`
//! first.

use std::collections::BTreeSet;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use wharf_client::api::{CreateUserRequest, CreateWebhookRequest, UpdateUserRequest};
use wharf_client::webhooks::{Verifier, VerifyError};
use wharf_client::wharf_core::{EventType, HomeDirectory, Permissions, Username};
use wharf_client::{Client, ClientError, EventFilter, Method, RetryPolicy};

const ADMIN_KEY: &str = "wharf_client_tests_admin_key_0123456789abcdef";

// ---------------------------------------------------------------------------------------------
// A real `wharf serve` on free loopback ports with a throw-away data directory.

/// The `wharf` binary: `WHARF_BIN`, else the one built next to this test (`target/<profile>/`),
/// else under `CARGO_TARGET_DIR` or the workspace's `target/debug/`.
fn wharf_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WHARF_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "WHARF_BIN={} does not exist (build the server with `cargo build -p wharf`)",
            bin.display()
        );
        return bin;
    }
    let mut candidates = Vec::new();
    // target/debug/deps/api-<hash> → target/debug/wharf
    if let Some(profile_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
    {
        candidates.push(profile_dir.join("wharf"));
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug").join("wharf"));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/debug/wharf")
            .to_path_buf(),
    );
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "these tests run the real server, and no wharf binary was found (looked at {}). \
                 Build it first with `cargo build -p wharf` (or run `cargo test --workspace`, \
                 which builds it), or set WHARF_BIN to its path.",
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A range of 10 passive FTPS ports that were free a moment ago (none is used by these tests,
/// but the server reserves the range).
fn passive_ports() -> (u16, u16) {
    for _ in 0..100 {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let start = 42000 + (nanos % 1500) as u16 * 10;
        if (start..start + 10).all(|p| StdTcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return (start, start + 9);
        }
    }
    panic!("no 10 free ports for FTPS passive mode");
}

struct Wharf {
    api_url: String,
    log: PathBuf,
    child: Child,
    data_dir: tempfile::TempDir,
}

impl Wharf {
    async fn start() -> Wharf {
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let log = data_dir.path().join("wharf.log");
        let api_port = free_port();
        let (passive_first, passive_last) = passive_ports();
        let mut command = Command::new(wharf_bin());
        // Nothing from the developer's own WHARF_* settings.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WHARF_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--api-addr")
            .arg(format!("127.0.0.1:{api_port}"))
            .arg("--sftp-addr")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--ftps-addr")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--ftps-implicit-addr")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--ftps-passive-ports")
            .arg(format!("{passive_first}-{passive_last}"))
            .arg("--webhook-retry-period")
            .arg("1")
            // The receivers of these tests listen on loopback.
            .arg("--webhook-allow-private-targets")
            .env("WHARF_ADMIN_API_KEY", ADMIN_KEY)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(
                std::fs::File::create(&log)
                    .and_then(|f| f.try_clone())
                    .expect("log file"),
            )
            .kill_on_drop(true);
        let child = command.spawn().expect("start wharf serve");
        let mut wharf = Wharf {
            api_url: format!("http://127.0.0.1:{api_port}"),
            log,
            child,
            data_dir,
        };
        wharf.wait_ready().await;
        wharf
    }

    /// Polls `/readyz` until it answers 200 (60 s at most).
    async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = http.get(format!("{}/readyz", self.api_url)).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("wharf serve exited ({status}); log:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "wharf serve was not ready within 60 s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn client(&self) -> Client {
        Client::new(&self.api_url, Some(ADMIN_KEY.to_owned())).expect("client")
    }
}

/// The problem document of an API error, or a panic saying what came instead.
fn problem(error: ClientError) -> (u16, wharf_client::api::Problem) {
    match error {
        ClientError::Api { status, problem } => (status, problem),
        other => panic!("expected a problem document, got {other:?}"),
    }
}

fn new_user(description: &str, home: &str) -> CreateUserRequest {
    CreateUserRequest {
        description: description.to_owned(),
        home_directory: HomeDirectory::parse(home).expect("home"),
        username: None,
        bucket_name: None,
        password_options: None,
        password: None,
        password_enabled: None,
        public_keys: None,
        permissions: None,
        max_sessions: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Users

#[tokio::test]
async fn users_alice_bob_and_root() {
    let server = Wharf::start().await;
    let wharf = server.client();

    // Alice, Bob and a root user in a few lines.
    let alice = wharf
        .create_user_at("Trading partner Alice", "/alice")
        .await
        .unwrap();
    let bob = wharf
        .create_user_at("Trading partner Bob", "/bob")
        .await
        .unwrap();
    let root = wharf
        .create_user(&new_user("Operations (sees the whole bucket)", "/"))
        .await
        .unwrap();
    assert!(alice.password.len() >= 16, "{}", alice.password);
    assert_ne!(alice.password, bob.password);
    assert_ne!(alice.user.username, bob.user.username);
    assert_eq!(alice.user.home_directory.as_str(), "/alice");
    assert_eq!(bob.user.home_directory.as_str(), "/bob");
    assert_eq!(root.user.home_directory.as_str(), "/");
    assert_eq!(alice.user.permissions, Permissions::ReadWrite);
    assert_eq!(alice.user.bucket_name.as_str(), "default");

    // Get.
    let name = alice.user.username.to_string();
    let got = wharf.get_user(&name).await.unwrap();
    assert_eq!(got.description, "Trading partner Alice");
    assert_eq!(got.username, alice.user.username);
    assert!(got.last_connected_at.is_none());

    // Update.
    let updated = wharf
        .update_user(
            &name,
            &UpdateUserRequest {
                description: Some("Alice GmbH".into()),
                permissions: Some(Permissions::ReadOnly),
                max_sessions: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.description, "Alice GmbH");
    assert_eq!(updated.permissions, Permissions::ReadOnly);
    assert_eq!(updated.max_sessions, 3);
    assert_eq!(wharf.get_user(&name).await.unwrap(), updated);

    // Reset the password: a new one, different from the old.
    let reset = wharf.reset_password(&name, None).await.unwrap();
    assert!(reset.password.len() >= 16);
    assert_ne!(reset.password, alice.password);
    let longer = wharf
        .reset_password(
            &name,
            Some(wharf_client::api::PasswordOptions { length: Some(40) }),
        )
        .await
        .unwrap();
    assert_eq!(longer.password.chars().count(), 40);

    // Delete; then it is a typed 404 problem, also for a second delete.
    wharf.delete_user(&name).await.unwrap();
    let error = wharf.get_user(&name).await.unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    let (status, doc) = problem(error);
    assert_eq!(status, 404);
    assert_eq!(doc.status, 404);
    assert!(!doc.title.is_empty());
    assert!(!doc.kind.is_empty());
    assert_eq!(
        wharf.delete_user(&name).await.unwrap_err().status(),
        Some(404)
    );

    // The other two are still there.
    let left: BTreeSet<String> = wharf
        .users()
        .map_ok(|u| u.username.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        left,
        BTreeSet::from([
            bob.user.username.to_string(),
            root.user.username.to_string()
        ])
    );

    // The escape hatch reaches any endpoint with the same key and errors.
    let raw: Value = wharf
        .call(
            Method::GET,
            &format!("v1/users/{}", bob.user.username),
            None,
        )
        .await
        .unwrap();
    assert_eq!(raw["homeDirectory"], "/bob");
    let nothing: () = wharf
        .call(
            Method::DELETE,
            &format!("/v1/users/{}", bob.user.username),
            None,
        )
        .await
        .unwrap();
    assert_eq!(nothing, ());
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_field() {
    let server = Wharf::start().await;
    let wharf = server.client();

    // A relative home directory: the server names homeDirectory.
    let error = wharf
        .create_user_at("Relative home", "relative/home")
        .await
        .unwrap_err();
    let status = error.status().unwrap();
    assert_eq!(status, 400, "{error:?}");
    let message = error
        .field_error("homeDirectory")
        .unwrap_or_else(|| panic!("no homeDirectory error in {error:?}"));
    assert!(message.contains('/'), "{message}");
    assert!(error.to_string().contains("homeDirectory"), "{error}");
    assert_eq!(error.problem().unwrap().status, status);

    // A duplicate username: 409.
    let mut dave = new_user("Dave", "/dave");
    dave.username = Some(Username::parse("DAVE0001").unwrap());
    wharf.create_user(&dave).await.unwrap();
    dave.home_directory = HomeDirectory::parse("/dave2").unwrap();
    let error = wharf.create_user(&dave).await.unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
    assert!(error.field_error("username").is_some(), "{error:?}");
    let (status, doc) = problem(error);
    assert_eq!((status, doc.status), (409, 409));

    // A public key that is not one: the field with its index.
    let mut bad_key = new_user("Bad key", "/badkey");
    bad_key.public_keys = Some(vec!["ssh-ed25519 not-base64!".into()]);
    let error = wharf.create_user(&bad_key).await.unwrap_err();
    assert!(
        error
            .field_errors()
            .iter()
            .any(|e| e.field.starts_with("publicKeys")),
        "{error:?}"
    );

    // A page size out of range: 400 naming pageSize.
    let error = wharf.list_users(Some(1000), None).await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert!(error.field_error("pageSize").is_some(), "{error:?}");

    // Unknown things are 404s.
    assert!(
        wharf
            .get_bucket("no-such-bucket")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        wharf
            .get_event("evt_nosuchevent")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        wharf
            .get_webhook("wh_nosuchhook")
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Ids that would change the URL never leave the client.
    assert!(matches!(
        wharf.get_user("..").await,
        Err(ClientError::BadId(_))
    ));

    // A wrong key: 401, as a problem too.
    let stranger = Client::new(&server.api_url, Some("not-a-key".into())).unwrap();
    let error = stranger.users().try_collect::<Vec<_>>().await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    assert!(error.problem().is_some(), "{error:?}");
}

#[tokio::test]
async fn users_stream_across_pages() {
    let server = Wharf::start().await;
    let wharf = server.client();
    let mut created = BTreeSet::new();
    for i in 1..=25 {
        let user = wharf
            .create_user_at(&format!("Partner {i:02}"), &format!("/partners/p{i:02}"))
            .await
            .unwrap();
        created.insert(user.user.username.to_string());
    }

    // One page at a time, 10 per page: 10, 10, 5.
    let mut sizes = Vec::new();
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = wharf.list_users(Some(10), token.as_deref()).await.unwrap();
        sizes.push(page.items.len());
        paged.extend(page.items.into_iter().map(|u| u.username.to_string()));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5]);

    // As a stream over pages of 10: every user exactly once, in the same order.
    let streamed: Vec<String> = wharf
        .clone()
        .with_page_size(10)
        .users()
        .map_ok(|u| u.username.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.len(), 25);
    assert_eq!(streamed, paged);
    assert_eq!(streamed.iter().cloned().collect::<BTreeSet<_>>(), created);
    // Also with the default page size.
    let all: Vec<String> = wharf
        .users()
        .map_ok(|u| u.username.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all, paged);

    // A search, across pages too (case-insensitive).
    let small_pages = Client::builder(&server.api_url)
        .api_key(ADMIN_KEY)
        .page_size(4)
        .build()
        .unwrap();
    let found: Vec<String> = small_pages
        .search_users("partner 2")
        .map_ok(|u| u.description)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        found.iter().cloned().collect::<BTreeSet<_>>(),
        (20..=25).map(|i| format!("Partner {i}")).collect()
    );
    assert_eq!(found.len(), 6);
}

// ---------------------------------------------------------------------------------------------
// Objects

#[tokio::test]
async fn objects_round_trip() {
    let server = Wharf::start().await;
    let wharf = server.client();

    // From memory (3 MiB and a bit), back, and from an offset.
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 5)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let stored = wharf
        .put_object(
            "default",
            "partners/acme/big.bin",
            data.clone(),
            Some(data.len() as u64),
        )
        .await
        .unwrap();
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.name, "big.bin");
    assert!(stored.sha256.is_some());
    let mut download = wharf
        .get_object("default", "partners/acme/big.bin")
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.size(), Some(data.len() as u64));
    let e_tag = download.e_tag().expect("an ETag").to_owned();
    let mut got = Vec::new();
    while let Some(chunk) = download.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert!(got == data, "the downloaded bytes differ");
    let tail = wharf
        .get_object_from("default", "partners/acme/big.bin", 1_000_000)
        .await
        .unwrap();
    assert!(tail.is_partial());
    assert_eq!(tail.size(), Some(data.len() as u64 - 1_000_000));
    assert!(tail.bytes().await.unwrap() == data[1_000_000..]);
    // Resuming the same version gets the rest; a changed one is sent whole.
    let resumed = wharf
        .resume_object("default", "partners/acme/big.bin", 3_000_000, &e_tag)
        .await
        .unwrap();
    assert!(resumed.is_partial());
    assert!(resumed.bytes().await.unwrap() == data[3_000_000..]);
    let whole = wharf
        .resume_object("default", "partners/acme/big.bin", 3_000_000, "\"another\"")
        .await
        .unwrap();
    assert!(!whole.is_partial());
    assert_eq!(
        whole
            .into_stream()
            .try_fold(0, |n, chunk| async move { Ok(n + chunk.len()) })
            .await
            .unwrap(),
        data.len()
    );

    // From a stream, and from a file.
    let chunks = futures::stream::iter(
        ["id,qty\n", "1,2\n", "3,4\n"].map(|s| Ok::<_, std::io::Error>(Bytes::from(s))),
    );
    let csv = wharf
        .put_object_stream("default", "partners/acme/order.csv", chunks, None)
        .await
        .unwrap();
    assert_eq!(csv.size, 15);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("local.txt");
    std::fs::write(&file, b"from disk").unwrap();
    wharf
        .put_object_file("default", "partners/acme/local.txt", &file)
        .await
        .unwrap();
    let text = wharf
        .get_object("default", "partners/acme/local.txt")
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&text[..], b"from disk");
    assert!(matches!(
        wharf
            .put_object_file("default", "x", &dir.path().join("missing"))
            .await,
        Err(ClientError::File { .. })
    ));

    // Twelve small ones and a directory, listed as a stream over pages of 5.
    for i in 0..12 {
        wharf
            .put_object(
                "default",
                &format!("partners/acme/f{i:02}"),
                vec![b'x'; i],
                None,
            )
            .await
            .unwrap();
    }
    let made = wharf
        .create_directory("default", "partners/acme/archive")
        .await
        .unwrap();
    assert_eq!(made.kind, wharf_client::api::ObjectKind::Directory);
    let names: Vec<String> = wharf
        .clone()
        .with_page_size(5)
        .list_objects("default", "partners/acme")
        .map_ok(|o| o.name)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(names.len(), 16, "{names:?}");
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 16, "{names:?}");
    assert!(names.contains(&"archive".to_owned()));
    let first = wharf
        .list_objects_page("default", "partners/acme/", Some(5), None)
        .await
        .unwrap();
    assert_eq!(first.items.len(), 5);
    assert!(first.next_page_token.is_some());

    // Deletes; then a 404 problem.
    wharf
        .delete_object("default", "partners/acme/order.csv")
        .await
        .unwrap();
    let (status, doc) = problem(
        wharf
            .get_object("default", "partners/acme/order.csv")
            .await
            .unwrap_err(),
    );
    assert_eq!((status, doc.status), (404, 404));
    wharf
        .delete_objects("default", "partners", true)
        .await
        .unwrap();
    let root: Vec<_> = wharf
        .list_objects("default", "")
        .try_collect()
        .await
        .unwrap();
    assert!(root.is_empty(), "{root:?}");
    assert!(matches!(
        wharf.get_object("default", "a/../b").await,
        Err(ClientError::BadId(_))
    ));

    // Uploads through the API are events like any other.
    let filter = EventFilter {
        event_type: Some(EventType::FileCreated),
        prefix: Some("partners/acme/big".into()),
        ..Default::default()
    };
    let events: Vec<_> = wharf.events(&filter).try_collect().await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let file = events[0].data.file().expect("a file event");
    assert_eq!(file.size, Some(data.len() as u64));
    assert_eq!(file.sha256, stored.sha256);
    assert_eq!(wharf.get_event(&events[0].id).await.unwrap(), events[0]);
}

// ---------------------------------------------------------------------------------------------
// Webhooks: real signed deliveries, verified

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

async fn receive(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    received.0.lock().unwrap().push((headers, body));
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn webhook_deliveries_verify() {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let server = Wharf::start().await;
    let wharf = server.client();
    let created = wharf
        .create_webhook(&CreateWebhookRequest {
            url,
            events: vec![EventType::FileCreated],
            filter: None,
            description: Some("verify me".into()),
        })
        .await
        .unwrap();
    let secret = created.secret.clone();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let hook = created.webhook.id.clone();
    assert_eq!(wharf.get_webhook(&hook).await.unwrap().id, hook);
    let listed: Vec<_> = wharf.webhooks().try_collect().await.unwrap();
    assert_eq!(listed.len(), 1);

    // A test delivery, and a real one of an upload.
    let test = wharf.test_webhook(&hook).await.unwrap();
    wharf
        .put_object("default", "in/order.csv", b"id,qty\n1,2\n".to_vec(), None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.0.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "deliveries did not arrive; log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliveries = received.0.lock().unwrap().clone();
    let verifier = Verifier::new(&secret).unwrap();
    let mut types = BTreeSet::new();
    for (headers, body) in &deliveries {
        let payload = wharf_client::webhooks::verify(&secret, headers, body)
            .unwrap_or_else(|e| panic!("a genuine delivery does not verify: {e}"));
        assert_eq!(verifier.verify(headers, body).unwrap(), payload);
        assert_eq!(
            headers["webhook-id"].to_str().unwrap(),
            payload["id"].as_str().unwrap()
        );
        let kind = payload["type"].as_str().unwrap().to_owned();
        if kind == "file.created" {
            let event: wharf_client::wharf_core::Event =
                serde_json::from_value(payload.clone()).unwrap();
            let file = event.data.file().expect("a file event");
            assert_eq!(file.key, "in/order.csv");
            assert_eq!(file.size, Some(11));
        }
        types.insert(kind);

        // A changed body, another secret, another id or an old delivery: refused.
        let mut tampered = body.to_vec();
        tampered.push(b' ');
        assert_eq!(
            wharf_client::webhooks::verify(&secret, headers, &tampered),
            Err(VerifyError::NoMatch)
        );
        let tampered = String::from_utf8(body.to_vec())
            .unwrap()
            .replace("order.csv", "order.exe")
            .replace("webhook.test", "file.deleted");
        assert_eq!(
            wharf_client::webhooks::verify(&secret, headers, tampered.as_bytes()),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            wharf_client::webhooks::verify("whsec_c29tZSBvdGhlciBzZWNyZXQ=", headers, body),
            Err(VerifyError::NoMatch)
        );
        let mut other_id = headers.clone();
        other_id.insert("webhook-id", "evt_other".parse().unwrap());
        assert_eq!(
            wharf_client::webhooks::verify(&secret, &other_id, body),
            Err(VerifyError::NoMatch)
        );
        let later = SystemTime::now() + Duration::from_secs(10 * 60);
        assert_eq!(
            wharf_client::webhooks::verify_at(&secret, headers, body, later),
            Err(VerifyError::Expired)
        );
    }
    assert_eq!(
        types,
        BTreeSet::from(["file.created".to_owned(), "webhook.test".to_owned()])
    );

    // The delivery log shows the receiver's answer.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let logged: Vec<_> = wharf.deliveries(&hook).try_collect().await.unwrap();
        if logged.len() == 2
            && logged
                .iter()
                .all(|d| d.attempts.iter().any(|a| a.status_code == Some(204)))
        {
            assert!(logged.iter().any(|d| d.id == test.id));
            break;
        }
        assert!(Instant::now() < deadline, "{logged:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wharf.delete_webhook(&hook).await.unwrap();
    assert!(wharf.get_webhook(&hook).await.unwrap_err().is_not_found());
}

// ---------------------------------------------------------------------------------------------
// Retries, against local servers that fail on purpose

/// What a scripted server answers: `failures` times `status` (with `Retry-After` if given),
/// then success.
#[derive(Clone)]
struct Script {
    calls: Arc<AtomicU32>,
    failures: u32,
    status: StatusCode,
    retry_after: Option<String>,
}

async fn scripted(
    State(script): State<Script>,
    method: HttpMethod,
    uri: Uri,
    body: Bytes,
) -> Response {
    let n = script.calls.fetch_add(1, Ordering::SeqCst);
    if n < script.failures {
        let mut headers = HeaderMap::new();
        if let Some(after) = &script.retry_after {
            headers.insert("retry-after", after.parse().unwrap());
        }
        headers.insert("content-type", "application/problem+json".parse().unwrap());
        let problem = json!({"type": "about:blank", "title": "Busy",
            "status": script.status.as_u16(), "detail": "try again later"});
        return (script.status, headers, problem.to_string()).into_response();
    }
    let reply = match (method, uri.path()) {
        (HttpMethod::GET, "/v1/server") => json!({
            "version": "test", "endpoint": "localhost", "sftpPort": 2222, "ftpsPort": 2121,
            "ftpsImplicitPort": 2990, "hostKeys": []
        }),
        (HttpMethod::PUT, path) => json!({
            "key": path.trim_start_matches("/v1/buckets/default/objects/"),
            "name": "x", "kind": "file", "size": body.len()
        }),
        (method, path) => json!({"method": method.as_str(), "path": path}),
    };
    axum::Json(reply).into_response()
}

async fn scripted_server(
    failures: u32,
    status: StatusCode,
    retry_after: Option<&str>,
) -> (Client, Arc<AtomicU32>) {
    let script = Script {
        calls: Arc::new(AtomicU32::new(0)),
        failures,
        status,
        retry_after: retry_after.map(str::to_owned),
    };
    let calls = script.calls.clone();
    let app = axum::Router::new().fallback(scripted).with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        Client::new(&url, Some("k".into()))
            .unwrap()
            .with_retry(quick()),
        calls,
    )
}

/// 3 retries with short waits (Retry-After up to 5 s honoured).
fn quick() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn retries_503_then_succeeds() {
    let (wharf, calls) = scripted_server(2, StatusCode::SERVICE_UNAVAILABLE, None).await;
    let info = wharf.server_info().await.unwrap();
    assert_eq!(info.sftp_port, 2222);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Any method: the server did not act on a 503.
    let (wharf, calls) = scripted_server(2, StatusCode::SERVICE_UNAVAILABLE, None).await;
    let reply: Value = wharf
        .call(Method::POST, "v1/anything", Some(&json!({"a": 1})))
        .await
        .unwrap();
    assert_eq!(reply["method"], "POST");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_429_after_retry_after() {
    let (wharf, calls) = scripted_server(1, StatusCode::TOO_MANY_REQUESTS, Some("1")).await;
    let started = Instant::now();
    wharf.server_info().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not waited for ({:?})",
        started.elapsed()
    );

    // As an HTTP date too.
    let soon = httpdate(SystemTime::now() + Duration::from_secs(2));
    let (wharf, calls) = scripted_server(1, StatusCode::TOO_MANY_REQUESTS, Some(&soon)).await;
    let started = Instant::now();
    wharf.server_info().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

/// An HTTP date: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn httpdate(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

#[tokio::test]
async fn gives_up_as_told() {
    // A Retry-After beyond max_delay is not waited for: the answer is the error, at once.
    let (wharf, calls) = scripted_server(5, StatusCode::SERVICE_UNAVAILABLE, Some("120")).await;
    let started = Instant::now();
    let error = wharf.server_info().await.unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(started.elapsed() < Duration::from_secs(5));

    // After max_retries, the last answer is the error, with its problem document.
    let (wharf, calls) = scripted_server(10, StatusCode::SERVICE_UNAVAILABLE, None).await;
    let (status, doc) = problem(wharf.server_info().await.unwrap_err());
    assert_eq!((status, doc.title.as_str()), (503, "Busy"));
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // Without retries the first 503 is the answer.
    let (wharf, calls) = scripted_server(10, StatusCode::SERVICE_UNAVAILABLE, None).await;
    let error = wharf
        .with_retry(RetryPolicy::none())
        .server_info()
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Other errors are not retried.
    let (wharf, calls) = scripted_server(10, StatusCode::INTERNAL_SERVER_ERROR, None).await;
    assert_eq!(wharf.server_info().await.unwrap_err().status(), Some(500));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn streamed_uploads_are_sent_once() {
    // From memory: sent again.
    let (wharf, calls) = scripted_server(2, StatusCode::SERVICE_UNAVAILABLE, None).await;
    let stored = wharf
        .put_object("default", "in/a.txt", b"hello".to_vec(), None)
        .await
        .unwrap();
    assert_eq!((stored.key.as_str(), stored.size), ("in/a.txt", 5));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // From a stream: cannot be replayed, so the 503 is the answer.
    let (wharf, calls) = scripted_server(2, StatusCode::SERVICE_UNAVAILABLE, None).await;
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"hello"))]);
    let error = wharf
        .put_object_stream("default", "in/a.txt", chunks, Some(5))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A server that accepts connections and closes each after reading the request, without an
/// answer; counts the connections.
async fn hanging_up_server() -> (Client, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buffer))
                    .await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (Client::new(&url, None).unwrap().with_retry(quick()), calls)
}

#[tokio::test]
async fn connection_errors_are_retried_for_idempotent_requests_only() {
    // GET: sent again (1 + 3 retries).
    let (wharf, calls) = hanging_up_server().await;
    let error = wharf.server_info().await.unwrap_err();
    assert!(matches!(error, ClientError::Http(_)), "{error:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // POST: it may have arrived, so once only.
    let (wharf, calls) = hanging_up_server().await;
    let error = wharf.create_user_at("Alice", "/alice").await.unwrap_err();
    assert!(matches!(error, ClientError::Http(_)), "{error:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Nobody listening: refused connections of a GET are retried, then reported.
    let port = free_port();
    let wharf = Client::new(&format!("http://127.0.0.1:{port}"), None)
        .unwrap()
        .with_retry(quick());
    match wharf.get_user("ALICE001").await.unwrap_err() {
        ClientError::Http(e) => assert!(e.is_connect(), "{e:?}"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Key-only users, chosen passwords and the gateways' login provider

/// An ed25519 key (its private half was thrown away).
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOg1F+/tvgtP97Py6h1YOqMj6LRkMYLb8zXrFmMDp1kZ alice@laptop";

fn password_login(username: &str, password: &str) -> wharf_client::wharf_core::LoginRequest {
    wharf_client::wharf_core::LoginRequest {
        protocol: wharf_client::wharf_core::Protocol::Sftp,
        username: username.to_owned(),
        secret: wharf_client::wharf_core::LoginSecret::Password {
            password: password.to_owned(),
        },
        client_ip: "192.0.2.1".into(),
        session_id: "client-test".into(),
        probe: false,
    }
}

#[tokio::test]
async fn the_http_login_provider_tells_a_disabled_password_apart() {
    use wharf_client::HttpLoginProvider;
    use wharf_client::wharf_core::{LoginError, LoginProvider};

    let server = Wharf::start().await;
    let wharf = server.client();
    let mut karl = new_user("Keys only", "/karl");
    karl.username = Some(Username::parse("karl").unwrap());
    karl.public_keys = Some(vec![KEY.to_owned()]);
    karl.password_enabled = Some(false);
    let created = wharf.create_user(&karl).await.unwrap();
    assert!(!created.user.password_enabled);
    assert!(!wharf.get_user("karl").await.unwrap().password_enabled);

    let token = std::fs::read_to_string(server.data_dir.path().join("gateway-token"))
        .expect("wharf serve writes its gateway token");
    let gateway = HttpLoginProvider::new(&server.api_url, token.trim().to_owned()).unwrap();
    let refused = gateway
        .login(password_login("karl", &created.password))
        .await;
    assert!(
        matches!(refused, Err(LoginError::PasswordDisabled)),
        "{refused:?}"
    );
    let unknown = gateway
        .login(password_login("nobody", &created.password))
        .await;
    assert!(matches!(unknown, Err(LoginError::Denied)), "{unknown:?}");

    // Turned back on, the same password logs in over HTTP as well.
    let updated = wharf
        .update_user(
            "karl",
            &UpdateUserRequest {
                password_enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(updated.password_enabled);
    let grant = gateway
        .login(password_login("karl", &created.password))
        .await
        .unwrap();
    assert_eq!(grant.username.as_str(), "karl");
}

#[tokio::test]
async fn an_operator_chooses_passwords_through_the_client() {
    let server = Wharf::start().await;
    let wharf = server.client();
    let chosen = "Migrated-From-Elsewhere-1";
    let mut nina = new_user("Migrated", "/nina");
    nina.password = Some(chosen.to_owned());
    let created = wharf.create_user(&nina).await.unwrap();
    assert_eq!(created.password, chosen);
    assert!(created.user.password_enabled, "the default");
    assert!(created.user.last_connected_at.is_none());
    let name = created.user.username.to_string();

    let again = "Set-Again-By-The-Operator";
    assert_eq!(
        wharf.set_password(&name, again).await.unwrap().password,
        again
    );
    let error = wharf.set_password(&name, "too short").await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert!(error.field_error("password").is_some(), "{error:?}");

    nina.username = Some(Username::parse("NINA0002").unwrap());
    nina.password_options = Some(wharf_client::api::PasswordOptions { length: Some(20) });
    let error = wharf.create_user(&nina).await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert!(error.field_error("passwordOptions").is_some(), "{error:?}");

    // The server shows its FTPS certificate's fingerprint: 32 bytes as AB:CD:….
    let fingerprint = wharf
        .server_info()
        .await
        .unwrap()
        .ftps_certificate_sha256
        .expect("wharf serve knows its certificate");
    assert_eq!(fingerprint.len(), 95, "{fingerprint}");
    assert!(
        fingerprint
            .split(':')
            .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit())),
        "{fingerprint}"
    );
}
