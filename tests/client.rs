//! The Rust client (`wharf-client`) against a real `wharf serve`: what the TypeScript SDK's
//! tests do, in Rust. Plus its own retries against a local server that answers 503 and 429.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::*;
use futures::TryStreamExt;
use wharf_client::{Client, ClientError, RetryPolicy};
use wharf_core::api::{CreateUserRequest, CreateWebhookRequest, UpdateUserRequest};
use wharf_core::{EventType, HomeDirectory, Permissions, Username};

fn client(wharf: &Wharf) -> Client {
    Client::new(&wharf.api_url(), Some(ADMIN_KEY.to_owned())).expect("client")
}

fn new_user(description: &str, home: &str) -> CreateUserRequest {
    CreateUserRequest {
        description: description.to_owned(),
        home_directory: HomeDirectory::parse(home).expect("home"),
        username: None,
        bucket_name: None,
        password_options: None,
        public_keys: None,
        permissions: None,
        max_sessions: None,
    }
}

/// The problem document of an API error, or a panic.
fn problem(error: ClientError) -> (u16, wharf_core::api::Problem) {
    match error {
        ClientError::Api { status, problem } => (status, problem),
        other => panic!("expected a problem document, got {other:?}"),
    }
}

#[tokio::test]
async fn users_end_to_end() {
    let wharf = Wharf::start().await;
    let wharf_api = client(&wharf);

    // Alice, Bob and a root user in a few lines.
    let alice = wharf_api
        .create_user(&new_user("Trading partner Alice", "/alice"))
        .await
        .unwrap();
    let bob = wharf_api
        .create_user(&new_user("Trading partner Bob", "/bob"))
        .await
        .unwrap();
    let root = wharf_api
        .create_user(&new_user("Operations", "/"))
        .await
        .unwrap();
    assert!(alice.password.len() >= 16);
    assert_eq!(bob.user.home_directory.as_str(), "/bob");
    assert_eq!(root.user.home_directory.as_str(), "/");
    let sftp = wharf.sftp_port;
    let dir = tempfile::tempdir().unwrap();
    let out = sftp_batch(
        sftp,
        alice.user.username.as_str(),
        Auth::Password(&alice.password),
        dir.path(),
        "ls\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));

    // 25 users in all, read 10 per page and as one stream: every one exactly once.
    for i in 0..22 {
        wharf_api
            .create_user(&new_user(&format!("Partner {i}"), &format!("/p{i}")))
            .await
            .unwrap();
    }
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = wharf_api
            .list_users(Some(10), token.as_deref())
            .await
            .unwrap();
        pages += 1;
        paged.extend(page.items.into_iter().map(|u| u.username.to_string()));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let streamed: Vec<String> = wharf_api
        .users()
        .map_ok(|u| u.username.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(paged.len(), 25);
    assert_eq!(paged, streamed);
    let mut unique = paged.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 25);

    // Get, update, reset password.
    let name = alice.user.username.to_string();
    let got = wharf_api.get_user(&name).await.unwrap();
    assert_eq!(got.description, "Trading partner Alice");
    let updated = wharf_api
        .update_user(
            &name,
            &UpdateUserRequest {
                description: Some("Alice GmbH".into()),
                permissions: Some(Permissions::ReadOnly),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.description, "Alice GmbH");
    assert_eq!(updated.permissions, Permissions::ReadOnly);
    let reset = wharf_api.reset_password(&name, None).await.unwrap();
    assert_ne!(reset.password, alice.password);

    // Errors are typed problem documents naming the field.
    let mut duplicate = new_user("Again", "/again");
    duplicate.username = Some(Username::parse(&name).unwrap());
    let (status, _) = problem(wharf_api.create_user(&duplicate).await.unwrap_err());
    assert_eq!(status, 409);
    let mut bad_key = new_user("Bad key", "/badkey");
    bad_key.public_keys = Some(vec!["ssh-ed25519 not-base64!".into()]);
    let (status, doc) = problem(wharf_api.create_user(&bad_key).await.unwrap_err());
    assert!(status == 400 || status == 422, "{status}");
    assert!(
        doc.errors.iter().any(|e| e.field.starts_with("publicKeys")),
        "{doc:?}"
    );

    // Delete; then it is a 404 problem.
    wharf_api.delete_user(&name).await.unwrap();
    let (status, doc) = problem(wharf_api.get_user(&name).await.unwrap_err());
    assert_eq!(status, 404);
    assert_eq!(doc.status, 404);

    // A wrong key is a 401 problem too.
    let stranger = Client::new(&wharf.api_url(), Some("not-a-key".into())).unwrap();
    assert_eq!(
        stranger.get_user(&name).await.unwrap_err().status(),
        Some(401)
    );
}

#[derive(Clone, Default)]
struct Received(Arc<std::sync::Mutex<Vec<(HeaderMap, Bytes)>>>);

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

    let wharf = Wharf::start().await;
    let wharf_api = client(&wharf);
    let created = wharf_api
        .create_webhook(&CreateWebhookRequest {
            url,
            events: vec![EventType::FileCreated],
            filter: None,
            description: Some("verify me".into()),
        })
        .await
        .unwrap();
    assert!(created.secret.starts_with("whsec_"));
    wharf_api.test_webhook(&created.webhook.id).await.unwrap();
    // And a real upload event, through the objects API.
    wharf_api
        .put_object("default", "in/order.csv", b"id,qty\n1,2\n".to_vec(), None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.0.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "deliveries did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliveries = received.0.lock().unwrap().clone();
    let mut keys = Vec::new();
    for (headers, body) in &deliveries {
        let payload = wharf_client::webhooks::verify(&created.secret, headers, body)
            .expect("a genuine delivery verifies");
        keys.push(
            payload["data"]["key"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        // A changed body, or another secret, does not.
        let mut tampered = body.to_vec();
        tampered.push(b' ');
        assert_eq!(
            wharf_client::webhooks::verify(&created.secret, headers, &tampered),
            Err(wharf_client::webhooks::VerifyError::NoMatch)
        );
        assert!(
            wharf_client::webhooks::verify("whsec_c29tZSBvdGhlciBzZWNyZXQ=", headers, body)
                .is_err()
        );
    }
    assert!(keys.iter().any(|k| k == "in/order.csv"), "{keys:?}");
    // The delivery log shows the receiver's status.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = wharf_api
            .webhook_deliveries(&created.webhook.id, None, None)
            .await
            .unwrap();
        if page.items.len() >= 2
            && page
                .items
                .iter()
                .all(|d| d.attempts.iter().any(|a| a.status_code == Some(204)))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{page:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn objects_round_trip() {
    let wharf = Wharf::start().await;
    let wharf_api = client(&wharf);
    let data = random_bytes(3 * 1024 * 1024 + 5);
    let stored = wharf_api
        .put_object(
            "default",
            "partners/acme/big.bin",
            data.clone(),
            Some(data.len() as u64),
        )
        .await
        .unwrap();
    assert_eq!(stored.size, data.len() as u64);
    let mut download = wharf_api
        .get_object("default", "partners/acme/big.bin")
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = download.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(sha256(&got), sha256(&data));
    for i in 0..12 {
        wharf_api
            .put_object(
                "default",
                &format!("partners/acme/f{i:02}"),
                vec![b'x'; i],
                None,
            )
            .await
            .unwrap();
    }
    let names: Vec<String> = wharf_api
        .list_objects("default", "partners/acme")
        .map_ok(|o| o.name)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(names.len(), 13, "{names:?}");
    let Err(missing) = wharf_api
        .get_object("default", "partners/acme/missing")
        .await
    else {
        panic!("a missing object was found");
    };
    let (status, doc) = problem(missing);
    assert_eq!(status, 404);
    assert_eq!(doc.status, 404);
}

/// A server that answers 503 twice (the second time with `Retry-After: 1`), then 200.
async fn flaky_server(failures: u32, status: StatusCode) -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let state = calls.clone();
    let app = axum::Router::new().route(
        "/v1/server",
        axum::routing::get(move || {
            let calls = state.clone();
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < failures {
                    let mut headers = HeaderMap::new();
                    if n == 1 {
                        headers.insert("retry-after", "1".parse().unwrap());
                    }
                    (status, headers, "busy").into_response()
                } else {
                    axum::Json(serde_json::json!({
                        "version": "test", "endpoint": "localhost", "sftpPort": 2222,
                        "ftpsPort": 2121, "ftpsImplicitPort": 2990, "hostKeys": []
                    }))
                    .into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

#[tokio::test]
async fn retries_on_503_and_429() {
    let (url, calls) = flaky_server(2, StatusCode::SERVICE_UNAVAILABLE).await;
    let started = Instant::now();
    let info = Client::new(&url, None)
        .unwrap()
        .server_info()
        .await
        .unwrap();
    assert_eq!(info.sftp_port, 2222);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );

    let (url, calls) = flaky_server(2, StatusCode::TOO_MANY_REQUESTS).await;
    Client::new(&url, None)
        .unwrap()
        .server_info()
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Without retries the first 503 is the answer.
    let (url, calls) = flaky_server(5, StatusCode::SERVICE_UNAVAILABLE).await;
    let error = Client::new(&url, None)
        .unwrap()
        .with_retry(RetryPolicy::none())
        .server_info()
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
