//! File events: recorded in-process and over the internal HTTP endpoints, the two-step upload
//! protocol, the reconciler, and `GET /v1/events`.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wharf_control::ControlPlaneOptions;
use wharf_control::events::GATEWAY_STOPPED;
use wharf_core::{EventError, EventType};

use crate::common::{GATEWAY_TOKEN, TestApp, TestDb, expect_problem};
use crate::receiver::{
    Receiver, create_webhook, deliveries, event_data, fast_options, get_event, wait_for_delivery,
};

crate::on_both_databases!(
    events_recorded_in_process_and_over_http,
    internal_event_endpoints_check_token_and_body,
    event_list_filters_and_pages,
    pending_upload_settled_committed_and_failed,
    upload_settled_without_enabled_webhooks,
    upload_settled_later_comes_before_what_follows,
    reconciler_settles_stale_uploads,
    changes_are_recorded_pending_first,
);

async fn internal_post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = app.http.post(app.url(path)).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("/v1/events{query}")).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{query}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn events_recorded_in_process_and_over_http(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let sink = app.control.event_sink();
    let mut data = event_data("default", "alice/in/a.edi", "alice");
    data.protocol = wharf_core::Protocol::Ftps;
    let first = sink.record(EventType::FileDeleted, data).await.unwrap();
    assert!(first.starts_with("evt_"), "{first}");

    let mut renamed = event_data("default", "bob/out/new.edi", "bob");
    renamed.previous_key = Some("bob/out/old.edi".into());
    let body = json!({"type": "file.renamed", "data": renamed});
    let response = internal_post(&app, "/internal/v1/events", Some(GATEWAY_TOKEN), &body).await;
    assert_eq!(response.status(), 201);
    let second = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(second.starts_with("evt_") && second > first);

    let page = list(&app, "").await;
    assert_eq!(ids(&page), [second.clone(), first.clone()], "newest first");
    assert!(page.get("nextPageToken").is_none_or(Value::is_null));
    let event = &page["items"][1];
    assert_eq!(event["type"], "file.deleted");
    assert_eq!(event["data"]["bucketName"], "default");
    assert_eq!(event["data"]["key"], "alice/in/a.edi");
    assert_eq!(event["data"]["username"], "alice");
    assert_eq!(event["data"]["protocol"], "ftps");
    assert_eq!(event["data"]["clientIp"], "192.0.2.10");
    assert_eq!(event["data"]["sessionId"], "session-1");
    assert!(event["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(page["items"][0]["data"]["previousKey"], "bob/out/old.edi");

    let fetched = get_event(&app, &first).await;
    assert_eq!(&fetched, event);
    expect_problem(app.get("/v1/events/evt_nope").await, 404, None).await;
}

async fn internal_event_endpoints_check_token_and_body(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let body = json!({"type": "file.deleted", "data": event_data("default", "a/b", "alice")});
    for path in ["/internal/v1/events", "/internal/v1/uploads"] {
        let body = if path.ends_with("uploads") {
            json!({"data": body["data"]})
        } else {
            body.clone()
        };
        expect_problem(internal_post(&app, path, None, &body).await, 401, None).await;
        expect_problem(
            internal_post(&app, path, Some("wrong"), &body).await,
            401,
            None,
        )
        .await;
        // An API key is not a gateway token.
        expect_problem(
            internal_post(&app, path, Some(&app.key), &body).await,
            401,
            None,
        )
        .await;
    }
    let mut bad = body.clone();
    bad["data"]["key"] = json!("");
    expect_problem(
        internal_post(&app, "/internal/v1/events", Some(GATEWAY_TOKEN), &bad).await,
        400,
        Some("data.key"),
    )
    .await;
    let mut bad = body.clone();
    bad["type"] = json!("file.exploded");
    expect_problem(
        internal_post(&app, "/internal/v1/events", Some(GATEWAY_TOKEN), &bad).await,
        400,
        Some("type"),
    )
    .await;
    let settle = json!({"committed": true});
    expect_problem(
        internal_post(
            &app,
            "/internal/v1/uploads/evt_nope/settle",
            Some(GATEWAY_TOKEN),
            &settle,
        )
        .await,
        404,
        None,
    )
    .await;
    let refused = app
        .control
        .event_sink()
        .settle_upload("evt_nope", true, None)
        .await;
    assert!(
        matches!(refused, Err(EventError::Rejected(_))),
        "{refused:?}"
    );
    assert!(ids(&list(&app, "").await).is_empty());
}

async fn event_list_filters_and_pages(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let sink = app.control.event_sink();
    let mut all = Vec::new();
    for (event_type, bucket, key, username) in [
        (EventType::DirectoryCreated, "default", "alice/in", "alice"),
        (EventType::FileDeleted, "default", "alice/in/x.edi", "alice"),
        (
            EventType::FileDeleted,
            "default",
            "alice/out/y.edi",
            "alice",
        ),
        (EventType::FileDeleted, "default", "bob/in/z.edi", "bob"),
        (EventType::FileRenamed, "other", "alice/in/w.edi", "carol"),
    ] {
        all.push(
            sink.record(event_type, event_data(bucket, key, username))
                .await
                .unwrap(),
        );
    }
    all.reverse();
    let newest_first =
        |wanted: &[usize]| -> Vec<String> { wanted.iter().map(|&i| all[4 - i].clone()).collect() };
    assert_eq!(ids(&list(&app, "").await), newest_first(&[4, 3, 2, 1, 0]));
    assert_eq!(
        ids(&list(&app, "?type=file.deleted").await),
        newest_first(&[3, 2, 1])
    );
    assert_eq!(
        ids(&list(&app, "?username=alice").await),
        newest_first(&[2, 1, 0])
    );
    assert_eq!(
        ids(&list(&app, "?prefix=alice/in").await),
        newest_first(&[4, 1, 0]),
        "a key prefix, not a directory: alice/in matches alice/in and alice/in/…"
    );
    assert_eq!(
        ids(&list(&app, "?prefix=alice%2Fin%2F&bucketName=default").await),
        newest_first(&[1])
    );
    assert_eq!(
        ids(&list(&app, "?bucketName=other").await),
        newest_first(&[4])
    );
    assert_eq!(
        ids(&list(&app, "?type=file.deleted&username=alice&prefix=alice/out/").await),
        newest_first(&[2])
    );
    assert!(ids(&list(&app, "?prefix=zed").await).is_empty());

    // Pages of two, newest first, nothing missed or repeated.
    let mut seen = Vec::new();
    let mut query = "?pageSize=2".to_owned();
    loop {
        let page = list(&app, &query).await;
        seen.extend(ids(&page));
        match page["nextPageToken"].as_str() {
            Some(token) => query = format!("?pageSize=2&pageToken={token}"),
            None => break,
        }
    }
    assert_eq!(seen, newest_first(&[4, 3, 2, 1, 0]));

    expect_problem(
        app.get("/v1/events?type=file.exploded").await,
        400,
        Some("type"),
    )
    .await;
    expect_problem(
        app.get("/v1/events?pageSize=0").await,
        400,
        Some("pageSize"),
    )
    .await;
    expect_problem(
        app.get("/v1/events?pageToken=%21%21").await,
        400,
        Some("pageToken"),
    )
    .await;
    expect_problem(
        app.http.get(app.url("/v1/events")).send().await.unwrap(),
        401,
        None,
    )
    .await;
}

async fn pending_upload_settled_committed_and_failed(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let receiver = Receiver::start().await;
    let both = create_webhook(
        &app,
        json!({"url": receiver.url("/both"), "events": ["file.created", "file.upload_failed"]}),
    )
    .await;
    let created_only = create_webhook(
        &app,
        json!({"url": receiver.url("/created"), "events": ["file.created"]}),
    )
    .await;
    let both_id = both["id"].as_str().unwrap();
    let created_id = created_only["id"].as_str().unwrap();
    let sink = app.control.event_sink();

    // In-process, committed.
    let mut data = event_data("default", "alice/in/big.bin", "alice");
    data.size = Some(1234);
    data.sha256 = Some("ab".repeat(32));
    let pending = sink.begin_upload(data.clone()).await.unwrap();
    assert!(
        ids(&list(&app, "").await).is_empty(),
        "pending events are not listed"
    );
    expect_problem(app.get(&format!("/v1/events/{pending}")).await, 404, None).await;
    assert!(
        deliveries(&app, both_id).await.is_empty(),
        "nothing is delivered while pending"
    );
    sink.settle_upload(&pending, true, None).await.unwrap();
    let event = get_event(&app, &pending).await;
    assert_eq!(event["type"], "file.created");
    assert_eq!(event["data"]["size"], 1234);
    assert_eq!(event["data"]["sha256"], "ab".repeat(32));
    let got = receiver.wait_for("/both", 1).await;
    assert_eq!(got[0].json(), event, "the delivery is the event");
    receiver.wait_for("/created", 1).await;
    // Settling again (a gateway's retry) is accepted; the other outcome is a conflict.
    sink.settle_upload(&pending, true, None).await.unwrap();
    let again = internal_post(
        &app,
        &format!("/internal/v1/uploads/{pending}/settle"),
        Some(GATEWAY_TOKEN),
        &json!({"committed": true}),
    )
    .await;
    assert_eq!(again.status(), 204);
    expect_problem(
        internal_post(
            &app,
            &format!("/internal/v1/uploads/{pending}/settle"),
            Some(GATEWAY_TOKEN),
            &json!({"committed": false, "error": "late"}),
        )
        .await,
        409,
        None,
    )
    .await;

    // Over HTTP, failed.
    let response = internal_post(
        &app,
        "/internal/v1/uploads",
        Some(GATEWAY_TOKEN),
        &json!({"data": data}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let failed = response.json::<Value>().await.unwrap()["eventId"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = internal_post(
        &app,
        &format!("/internal/v1/uploads/{failed}/settle"),
        Some(GATEWAY_TOKEN),
        &json!({"committed": false, "error": "the store refused the commit"}),
    )
    .await;
    assert_eq!(response.status(), 204);
    let event = get_event(&app, &failed).await;
    assert_eq!(event["type"], "file.upload_failed");
    assert_eq!(event["data"]["error"], "the store refused the commit");
    let got = receiver.wait_for("/both", 2).await;
    assert_eq!(got[1].json()["type"], "file.upload_failed");
    wait_for_delivery(&app, both_id, "succeeded").await;
    assert_eq!(
        deliveries(&app, created_id).await.len(),
        1,
        "a webhook without file.upload_failed does not get it"
    );
    assert_eq!(
        ids(&list(&app, "").await),
        [failed.clone(), pending.clone()]
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// With no enabled webhook, settling takes a shorter path (no transaction): it must still claim
/// the pending event exactly once, refuse the other outcome, and create no delivery for a
/// disabled webhook.
async fn upload_settled_without_enabled_webhooks(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let receiver = Receiver::start().await;
    let created = create_webhook(
        &app,
        json!({"url": receiver.url("/off"), "events": ["file.created"]}),
    )
    .await;
    let disabled_id = created["id"].as_str().unwrap();
    let patched = app
        .patch(
            &format!("/v1/webhooks/{disabled_id}"),
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let sink = app.control.event_sink();
    let mut data = event_data("default", "alice/in/small.bin", "alice");
    data.size = Some(4096);
    data.sha256 = Some("cd".repeat(32));
    let pending = sink.begin_upload(data.clone()).await.unwrap();
    assert!(
        ids(&list(&app, "").await).is_empty(),
        "pending is not listed"
    );
    sink.settle_upload(&pending, true, None).await.unwrap();
    assert_eq!(ids(&list(&app, "").await), vec![pending.clone()]);
    let event = get_event(&app, &pending).await;
    assert_eq!(event["type"], "file.created");
    assert_eq!(event["data"]["size"], 4096);
    assert_eq!(event["data"]["sha256"], "cd".repeat(32));
    // A retry of the same outcome is accepted; the other outcome is refused.
    sink.settle_upload(&pending, true, None).await.unwrap();
    let late = sink
        .settle_upload(&pending, false, Some("late".into()))
        .await;
    assert!(matches!(late, Err(EventError::Rejected(_))), "{late:?}");
    // A failed upload takes the transaction path even without webhooks, and keeps its error.
    let failed = sink.begin_upload(data).await.unwrap();
    sink.settle_upload(&failed, false, Some("disconnected".into()))
        .await
        .unwrap();
    let event = get_event(&app, &failed).await;
    assert_eq!(event["type"], "file.upload_failed");
    assert_eq!(event["data"]["error"], "disconnected");
    assert!(
        deliveries(&app, disabled_id).await.is_empty(),
        "a disabled webhook gets no delivery"
    );
}

/// `settle_upload_later` (what a gateway calls once the commit is done) may settle in the
/// background, but whatever comes after it sees the settle: the event and its deliveries are
/// listed at once, an event recorded next comes after it, and shutdown waits for it.
async fn upload_settled_later_comes_before_what_follows(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let receiver = Receiver::start().await;
    let webhook = create_webhook(
        &app,
        json!({"url": receiver.url("/all"), "events": ["file.created", "file.deleted"]}),
    )
    .await;
    let webhook_id = webhook["id"].as_str().unwrap();
    let sink = app.control.event_sink();
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let key = format!("alice/in/{round}.edi");
        let mut data = event_data("default", &key, "alice");
        data.size = Some(round as u64);
        data.sha256 = Some("cd".repeat(32));
        let pending = sink.begin_upload(data.clone()).await.unwrap();
        sink.settle_upload_later(&pending, true, None)
            .await
            .unwrap();
        let event = get_event(&app, &pending).await;
        assert_eq!(event["type"], "file.created", "round {round}: {event}");
        assert_eq!(event["data"]["size"], round);
        assert_eq!(
            deliveries(&app, webhook_id).await.len(),
            2 * round + 1,
            "round {round}: the settle's delivery is listed"
        );
        data.size = None;
        data.sha256 = None;
        let deleted = sink.record(EventType::FileDeleted, data).await.unwrap();
        // Newest first: the delete, then the upload it follows.
        let newest = ids(&list(&app, "?pageSize=2").await);
        assert_eq!(newest, [deleted, pending], "round {round}");
    }
    receiver.wait_for("/all", 2 * ROUNDS).await;

    // A settle still running when the process stops is finished by the shutdown.
    let data = event_data("default", "alice/in/last.edi", "alice");
    let pending = sink.begin_upload(data).await.unwrap();
    sink.settle_upload_later(&pending, false, Some("disconnected".into()))
        .await
        .unwrap();
    app.control.shutdown().await;
    let event = app.control.store().get_event(&pending).await.unwrap();
    let event = event.expect("the settle finished before shutdown returned");
    assert_eq!(event.event_type, EventType::FileUploadFailed);
    let file = event.data.file().expect("a file event");
    assert_eq!(file.error.as_deref(), Some("disconnected"));
}

async fn reconciler_settles_stale_uploads(db: TestDb) {
    let options = ControlPlaneOptions {
        pending_upload_timeout: Duration::from_millis(300),
        ..fast_options()
    };
    let app = TestApp::spawn_with(db, options).await;
    let receiver = Receiver::start().await;
    let hook = create_webhook(
        &app,
        json!({"url": receiver.url("/hook"), "events": ["file.created", "file.upload_failed"]}),
    )
    .await;
    let dir = app.bucket_dir().join("alice");
    std::fs::create_dir_all(&dir).unwrap();
    let sink = app.control.event_sink();
    let begin = |key: &str, content: &[u8]| {
        let mut data = event_data("default", &format!("alice/{key}"), "alice");
        data.size = Some(content.len() as u64);
        data.sha256 = Some(sha256_hex(content));
        let sink = sink.clone();
        async move { sink.begin_upload(data).await.unwrap() }
    };

    // Committed, then the gateway died: the object is there, written after the event began.
    let committed = begin("committed.bin", b"hello").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(dir.join("committed.bin"), b"hello").unwrap();
    // The gateway died before committing: no object.
    let missing = begin("missing.bin", b"hello").await;
    // Committed as a multipart upload whose last-modified time is older than the event: the
    // content has the recorded SHA-256.
    std::fs::write(dir.join("early.bin"), b"hello").unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let early = begin("early.bin", b"hello").await;
    // An older object of the same size with other content: the upload did not land.
    std::fs::write(dir.join("older.bin"), b"world").unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let older = begin("older.bin", b"hello").await;
    // A newer object of the same size with other content (another upload over it): the
    // SHA-256 tells it apart; size and date used to pass it as this upload's.
    let replaced = begin("replaced.bin", b"hello").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(dir.join("replaced.bin"), b"HELLO").unwrap();
    // Settled by its gateway in time: the reconciler leaves it alone.
    let settled = begin("settled.bin", b"hello").await;
    sink.settle_upload(&settled, false, Some("disconnected".into()))
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut events = std::collections::HashMap::new();
    for id in [&committed, &missing, &early, &older, &replaced] {
        loop {
            let response = app.get(&format!("/v1/events/{id}")).await;
            if response.status() == 200 {
                events.insert(id.clone(), response.json::<Value>().await.unwrap());
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} was never settled"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(events[&committed]["type"], "file.created");
    assert!(events[&committed]["data"].get("error").is_none());
    assert_eq!(events[&early]["type"], "file.created");
    for id in [&missing, &older, &replaced] {
        assert_eq!(events[id]["type"], "file.upload_failed", "{}", events[id]);
        assert_eq!(events[id]["data"]["error"], GATEWAY_STOPPED);
        assert_eq!(events[id]["data"]["size"], 5);
    }
    let settled = get_event(&app, &settled).await;
    assert_eq!(settled["data"]["error"], "disconnected");
    let got = receiver.wait_for("/hook", 6).await;
    let mut delivered: Vec<String> = got
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 6);
    assert_eq!(
        deliveries(&app, hook["id"].as_str().unwrap()).await.len(),
        6
    );
}

/// Deletes, renames and new directories are recorded pending first: settled as made they are
/// listed and delivered, settled as not made they are forgotten, and those no gateway settles
/// (it died between the change and the settle) are settled by the reconciler from the bucket.
async fn changes_are_recorded_pending_first(db: TestDb) {
    let options = ControlPlaneOptions {
        pending_upload_timeout: Duration::from_millis(300),
        ..fast_options()
    };
    let app = TestApp::spawn_with(db, options).await;
    let receiver = Receiver::start().await;
    create_webhook(
        &app,
        json!({"url": receiver.url("/hook"),
               "events": ["file.deleted", "file.renamed", "directory.created"]}),
    )
    .await;
    let dir = app.bucket_dir().join("alice");
    std::fs::create_dir_all(&dir).unwrap();
    let sink = app.control.event_sink();
    let begin = |event_type: EventType, key: &str, previous: Option<&str>| {
        let mut data = event_data("default", &format!("alice/{key}"), "alice");
        data.previous_key = previous.map(|p| format!("alice/{p}"));
        let sink = sink.clone();
        async move { sink.begin_change(event_type, data).await.unwrap() }
    };

    // Pending: neither listed nor delivered.
    let made = begin(EventType::FileDeleted, "made.edi", None).await;
    assert_eq!(app.get(&format!("/v1/events/{made}")).await.status(), 404);
    sink.settle_upload(&made, true, None).await.unwrap();
    assert_eq!(get_event(&app, &made).await["type"], "file.deleted");
    // Not made: gone, and settling it again is no error.
    let failed = begin(EventType::FileRenamed, "b.edi", Some("a.edi")).await;
    sink.settle_upload(&failed, false, None).await.unwrap();
    assert_eq!(app.get(&format!("/v1/events/{failed}")).await.status(), 404);
    // Over HTTP, as a gateway in another process does.
    let body = json!({"type": "directory.created",
                      "data": event_data("default", "alice/over-http", "alice")});
    let response = internal_post(&app, "/internal/v1/uploads", Some(GATEWAY_TOKEN), &body).await;
    assert_eq!(response.status(), 201);
    let over_http = response.json::<Value>().await.unwrap()["eventId"]
        .as_str()
        .unwrap()
        .to_owned();
    let settle = internal_post(
        &app,
        &format!("/internal/v1/uploads/{over_http}/settle"),
        Some(GATEWAY_TOKEN),
        &json!({"committed": true}),
    )
    .await;
    assert_eq!(settle.status(), 204);
    assert_eq!(
        get_event(&app, &over_http).await["type"],
        "directory.created"
    );
    // A failed upload is no change to begin.
    let bad = json!({"type": "file.upload_failed",
                     "data": event_data("default", "alice/x", "alice")});
    expect_problem(
        internal_post(&app, "/internal/v1/uploads", Some(GATEWAY_TOKEN), &bad).await,
        400,
        Some("type"),
    )
    .await;

    // The gateway died after (or before) the change: the bucket says which.
    std::fs::write(dir.join("kept.edi"), b"x").unwrap();
    let delete_made = begin(EventType::FileDeleted, "gone.edi", None).await;
    let delete_not_made = begin(EventType::FileDeleted, "kept.edi", None).await;
    std::fs::write(dir.join("new.edi"), b"x").unwrap();
    std::fs::write(dir.join("old.edi"), b"x").unwrap();
    let rename_made = begin(EventType::FileRenamed, "new.edi", Some("gone-too.edi")).await;
    let rename_not_made = begin(EventType::FileRenamed, "newer.edi", Some("old.edi")).await;
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::write(dir.join("in").join(wharf_core::DIRECTORY_MARKER), b"").unwrap();
    let mkdir_made = begin(EventType::DirectoryCreated, "in", None).await;
    let mkdir_not_made = begin(EventType::DirectoryCreated, "out", None).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for id in [&delete_made, &rename_made, &mkdir_made] {
        while app.get(&format!("/v1/events/{id}")).await.status() != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} was never settled"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(get_event(&app, &delete_made).await["type"], "file.deleted");
    let renamed = get_event(&app, &rename_made).await;
    assert_eq!(renamed["type"], "file.renamed");
    assert_eq!(renamed["data"]["previousKey"], "alice/gone-too.edi");
    assert_eq!(
        get_event(&app, &mkdir_made).await["type"],
        "directory.created"
    );
    // The changes not made are forgotten, not listed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in [&delete_not_made, &rename_not_made, &mkdir_not_made] {
        assert_eq!(app.get(&format!("/v1/events/{id}")).await.status(), 404);
    }
    let got = receiver.wait_for("/hook", 5).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected = vec![made, over_http, delete_made, rename_made, mkdir_made];
    expected.sort();
    assert_eq!(ids, expected);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests_to("/hook").len(), 5, "nothing more");
}
