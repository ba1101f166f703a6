//! Webhooks: the API, filters, Standard Webhooks signatures (checked with Python's
//! `standardwebhooks`), retries, dead deliveries, restarts, the private-target rule and the
//! loop guard.

use std::time::Duration;

use serde_json::{Value, json};
use wharf_control::{ControlPlaneOptions, LoopGuard, RetrySchedule};
use wharf_core::EventType;

use crate::common::{TestApp, TestDb, config, expect_problem};
use crate::receiver::{
    Receiver, create_webhook, deliveries, event_data, fast_options, get_event,
    verify_with_standardwebhooks, wait_for_delivery,
};

crate::on_both_databases!(
    webhook_crud_and_validation,
    webhook_filters_include_and_exclude,
    delivery_is_signed_per_standard_webhooks,
    failing_receiver_gets_the_event_again,
    dead_delivery_is_retried_through_the_api,
    pending_deliveries_survive_a_restart,
    private_targets_are_refused_when_configured,
    test_event_goes_to_one_webhook,
    loop_guard_pauses_and_resumes,
    two_control_planes_deliver_each_event_once,
);

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

async fn webhook_crud_and_validation(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let created = create_webhook(
        &app,
        json!({
            "url": "https://example.com/hooks/wharf",
            "events": ["file.created", "file.deleted", "file.created"],
            "filter": {"bucketName": "default", "prefix": "alice/in/", "username": "alice"},
            "description": "Invoices from Alice",
        }),
    )
    .await;
    let webhook_id = id(&created);
    assert!(webhook_id.starts_with("wh_"), "{created}");
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() >= 6 + 44,
        "{secret}"
    );
    assert_eq!(created["url"], "https://example.com/hooks/wharf");
    assert_eq!(created["events"], json!(["file.created", "file.deleted"]));
    assert_eq!(
        created["filter"],
        json!({"bucketName": "default", "prefix": "alice/in/", "username": "alice"})
    );
    assert_eq!(created["description"], "Invoices from Alice");
    assert_eq!(created["enabled"], true);

    let fetched: Value = app
        .get(&format!("/v1/webhooks/{webhook_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        fetched.get("secret").is_none(),
        "the secret is shown once: {fetched}"
    );
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(fetched, without_secret);

    // PATCH: only what is given changes; the filter is replaced whole.
    let response = app
        .patch(
            &format!("/v1/webhooks/{webhook_id}"),
            &json!({"enabled": false, "filter": {"prefix": "bob/"}, "events": ["file.renamed"]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["filter"], json!({"prefix": "bob/"}));
    assert_eq!(patched["events"], json!(["file.renamed"]));
    assert_eq!(patched["url"], created["url"]);
    assert_eq!(patched["description"], created["description"]);

    // Validation: the field is named.
    for (body, status, field) in [
        (
            json!({"url": "ftp://example.com/x", "events": ["file.created"]}),
            400,
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["file.created"]}),
            400,
            "url",
        ),
        (
            json!({"url": "https://example.com", "events": []}),
            400,
            "events",
        ),
        (
            json!({"url": "https://example.com", "events": ["file.exploded"]}),
            400,
            "events[0]",
        ),
        (json!({"events": ["file.created"]}), 400, "url"),
        (
            json!({"url": "https://example.com", "events": ["file.created"], "filter": {"prefix": "/alice"}}),
            400,
            "filter.prefix",
        ),
        (
            json!({"url": "https://example.com", "events": ["file.created"], "filter": {"bucketName": "nope"}}),
            400,
            "filter.bucketName",
        ),
        (
            json!({"url": "https://example.com", "events": ["file.created"], "filter": {"username": "a b"}}),
            400,
            "filter.username",
        ),
        (
            json!({"url": "https://example.com", "events": ["file.created"], "bogus": 1}),
            400,
            "bogus",
        ),
    ] {
        expect_problem(app.post("/v1/webhooks", &body).await, status, Some(field)).await;
    }
    expect_problem(
        app.patch(
            &format!("/v1/webhooks/{webhook_id}"),
            &json!({"url": "file:///etc/passwd"}),
        )
        .await,
        400,
        Some("url"),
    )
    .await;

    // Paging, oldest first.
    let mut all = vec![webhook_id.clone()];
    for n in 0..3 {
        let w = create_webhook(
            &app,
            json!({"url": format!("http://example.com/{n}"), "events": ["file.created"]}),
        )
        .await;
        all.push(id(&w));
    }
    let mut seen = Vec::new();
    let mut query = "?pageSize=3".to_owned();
    loop {
        let page: Value = app
            .get(&format!("/v1/webhooks{query}"))
            .await
            .json()
            .await
            .unwrap();
        for item in page["items"].as_array().unwrap() {
            assert!(item.get("secret").is_none());
            seen.push(id(item));
        }
        match page["nextPageToken"].as_str() {
            Some(token) => query = format!("?pageSize=3&pageToken={token}"),
            None => break,
        }
    }
    assert_eq!(seen, all);

    // Unknown ids.
    for response in [
        app.get("/v1/webhooks/wh_nope").await,
        app.patch("/v1/webhooks/wh_nope", &json!({"enabled": true}))
            .await,
        app.delete("/v1/webhooks/wh_nope").await,
        app.post("/v1/webhooks/wh_nope/test", &json!({})).await,
        app.get("/v1/webhooks/wh_nope/deliveries").await,
        app.post(
            &format!("/v1/webhooks/{webhook_id}/deliveries/dlv_nope/retry"),
            &json!({}),
        )
        .await,
    ] {
        expect_problem(response, 404, None).await;
    }
    // A disabled webhook cannot be tested.
    expect_problem(
        app.post(&format!("/v1/webhooks/{webhook_id}/test"), &json!({}))
            .await,
        409,
        None,
    )
    .await;
    assert_eq!(
        app.delete(&format!("/v1/webhooks/{webhook_id}"))
            .await
            .status(),
        204
    );
    expect_problem(
        app.get(&format!("/v1/webhooks/{webhook_id}")).await,
        404,
        None,
    )
    .await;
}

async fn webhook_filters_include_and_exclude(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let receiver = Receiver::start().await;
    let other_bucket = app.bucket_dir().join("other-bucket");
    std::fs::create_dir_all(&other_bucket).unwrap();
    let response = app
        .post(
            "/v1/buckets",
            &json!({"bucketName": "other", "storageUrl": format!("file://{}", other_bucket.display())}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let hooks = [
        (
            "all",
            json!({"events": ["file.created", "file.deleted", "file.renamed", "directory.created", "file.upload_failed"]}),
        ),
        ("created", json!({"events": ["file.created"]})),
        (
            "other-bucket",
            json!({"events": ["file.created"], "filter": {"bucketName": "other"}}),
        ),
        (
            "alice-in",
            json!({"events": ["file.created", "file.renamed"], "filter": {"prefix": "alice/in/"}}),
        ),
        (
            "bob",
            json!({"events": ["file.created", "file.deleted"], "filter": {"username": "bob"}}),
        ),
        (
            "combined",
            json!({"events": ["file.created"], "filter": {"bucketName": "default", "prefix": "alice/", "username": "alice"}}),
        ),
    ];
    let mut ids = std::collections::HashMap::new();
    for (name, mut body) in hooks.clone() {
        body["url"] = json!(receiver.url(&format!("/{name}")));
        ids.insert(name, id(&create_webhook(&app, body).await));
    }
    let disabled = id(&create_webhook(
        &app,
        json!({"url": receiver.url("/disabled"), "events": ["file.created"]}),
    )
    .await);
    app.patch(
        &format!("/v1/webhooks/{disabled}"),
        &json!({"enabled": false}),
    )
    .await;

    let sink = app.control.event_sink();
    let mut renamed_out = event_data("default", "alice/archive/x.edi", "alice");
    renamed_out.previous_key = Some("alice/in/x.edi".into());
    let events = [
        (
            "e1",
            EventType::FileCreated,
            event_data("default", "alice/in/a.edi", "alice"),
        ),
        (
            "e2",
            EventType::FileCreated,
            event_data("other", "alice/in/b.edi", "alice"),
        ),
        (
            "e3",
            EventType::FileDeleted,
            event_data("default", "bob/c.edi", "bob"),
        ),
        (
            "e4",
            EventType::FileCreated,
            event_data("default", "bob/d.edi", "bob"),
        ),
        ("e5", EventType::FileRenamed, renamed_out),
        (
            "e6",
            EventType::DirectoryCreated,
            event_data("default", "alice/in/sub", "alice"),
        ),
        (
            "e7",
            EventType::FileCreated,
            event_data("default", "alice/out/e.edi", "alice"),
        ),
    ];
    let mut event_ids = std::collections::HashMap::new();
    for (name, event_type, data) in events {
        event_ids.insert(sink.record(event_type, data).await.unwrap(), name);
    }
    let expected = [
        ("all", vec!["e1", "e2", "e3", "e4", "e5", "e6", "e7"]),
        ("created", vec!["e1", "e2", "e4", "e7"]),
        ("other-bucket", vec!["e2"]),
        ("alice-in", vec!["e1", "e2", "e5"]),
        ("bob", vec!["e3", "e4"]),
        ("combined", vec!["e1", "e7"]),
    ];
    // Deliveries are created with the event, in one transaction: they are all there now.
    for (hook, wanted) in &expected {
        let mut got: Vec<&str> = deliveries(&app, &ids[hook])
            .await
            .iter()
            .map(|d| event_ids[d["eventId"].as_str().unwrap()])
            .collect();
        got.sort();
        assert_eq!(&got, wanted, "webhook {hook}");
    }
    assert!(deliveries(&app, &disabled).await.is_empty());
    // And they arrive.
    for (hook, wanted) in &expected {
        let got = receiver.wait_for(&format!("/{hook}"), wanted.len()).await;
        for request in got {
            let event = request.json();
            let name = event_ids[event["id"].as_str().unwrap()];
            assert!(wanted.contains(&name), "{hook} got {name}");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.requests_to("/disabled").is_empty());
}

async fn delivery_is_signed_per_standard_webhooks(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let receiver = Receiver::start().await;
    let created = create_webhook(
        &app,
        json!({"url": receiver.url("/verify"), "events": ["file.created"]}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap();
    let mut data = event_data("default", "alice/in/invoice-0042.edi", "alice");
    data.size = Some(42);
    data.sha256 = Some("0f".repeat(32));
    let sink = app.control.event_sink();
    let pending = sink.begin_upload(data).await.unwrap();
    sink.settle_upload(&pending, true, None).await.unwrap();
    let request = receiver.wait_for("/verify", 1).await.remove(0);
    assert_eq!(
        request.header("webhook-id"),
        pending,
        "webhook-id is the event id"
    );
    assert_eq!(request.header("content-type"), "application/json");
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    assert!(request.header("webhook-signature").starts_with("v1,"));
    let payload = verify_with_standardwebhooks(secret, &request);
    let event = get_event(&app, &pending).await;
    assert_eq!(payload, event);
    assert_eq!(payload["type"], "file.created");
    assert_eq!(payload["data"]["size"], 42);
    assert_eq!(payload["data"]["key"], "alice/in/invoice-0042.edi");
    // The payload has exactly the shape of wharf_core::Event.
    let parsed: wharf_core::Event = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), payload);
    // A wrong secret does not verify.
    let wrong = std::panic::catch_unwind(|| {
        verify_with_standardwebhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &request)
    });
    assert!(wrong.is_err(), "a wrong secret must not verify");
}

async fn failing_receiver_gets_the_event_again(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let receiver = Receiver::start().await;
    receiver.answer_next(&[500, 503, 404]);
    let created = create_webhook(
        &app,
        json!({"url": receiver.url("/flaky"), "events": ["file.deleted"]}),
    )
    .await;
    let webhook_id = id(&created);
    let event_id = app
        .control
        .event_sink()
        .record(
            EventType::FileDeleted,
            event_data("default", "a/b.edi", "alice"),
        )
        .await
        .unwrap();
    let got = receiver.wait_for("/flaky", 4).await;
    for request in &got {
        assert_eq!(
            request.header("webhook-id"),
            event_id,
            "same webhook-id on every retry"
        );
        verify_with_standardwebhooks(created["secret"].as_str().unwrap(), request);
    }
    let delivery = wait_for_delivery(&app, &webhook_id, "succeeded").await;
    assert_eq!(delivery["eventId"], event_id);
    assert_eq!(delivery["eventType"], "file.deleted");
    assert_eq!(delivery["attemptCount"], 4);
    let codes: Vec<u64> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [500, 503, 404, 200]);
    let attempts = delivery["attempts"].as_array().unwrap();
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"));
    assert!(attempts[3].get("error").is_none());
    assert!(
        attempts
            .iter()
            .all(|a| a["latencyMs"].is_u64() && a["time"].is_string())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.requests_to("/flaky").len(),
        4,
        "nothing after the success"
    );
}

async fn dead_delivery_is_retried_through_the_api(db: TestDb) {
    let options = ControlPlaneOptions {
        retry: RetrySchedule {
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(100),
            give_up_after: Duration::from_millis(400),
        },
        ..fast_options()
    };
    let app = TestApp::spawn_with(db, options).await;
    let receiver = Receiver::start().await;
    receiver.answer_always(502);
    let webhook_id = id(&create_webhook(
        &app,
        json!({"url": receiver.url("/down"), "events": ["file.deleted"]}),
    )
    .await);
    let event_id = app
        .control
        .event_sink()
        .record(
            EventType::FileDeleted,
            event_data("default", "a/b.edi", "alice"),
        )
        .await
        .unwrap();
    let dead = wait_for_delivery(&app, &webhook_id, "dead").await;
    let failed_attempts = dead["attemptCount"].as_u64().unwrap();
    assert!(failed_attempts >= 2, "{dead}");
    assert!(dead.get("nextAttemptAt").is_none());
    assert!(
        dead["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["statusCode"] == 502)
    );
    let delivery_id = dead["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = receiver.requests_to("/down").len();
    assert_eq!(
        before as u64, failed_attempts,
        "a dead delivery is not sent"
    );

    receiver.answer_always(204);
    let retry = format!("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry");
    let response = app.post(&retry, &json!({})).await;
    assert_eq!(response.status(), 202);
    let done = wait_for_delivery(&app, &webhook_id, "succeeded").await;
    assert_eq!(done["id"], delivery_id);
    assert_eq!(done["attemptCount"].as_u64().unwrap(), failed_attempts + 1);
    assert_eq!(
        done["attempts"].as_array().unwrap().last().unwrap()["statusCode"],
        204
    );
    let last = receiver.requests_to("/down").pop().unwrap();
    assert_eq!(last.header("webhook-id"), event_id);
    // Only dead deliveries can be retried.
    expect_problem(app.post(&retry, &json!({})).await, 409, None).await;
}

async fn pending_deliveries_survive_a_restart(db: TestDb) {
    let options = ControlPlaneOptions {
        retry: RetrySchedule {
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(400),
            give_up_after: Duration::from_secs(60),
        },
        ..fast_options()
    };
    let mut app = TestApp::spawn_with(db, options.clone()).await;
    let receiver = Receiver::start().await;
    receiver.answer_always(503);
    let webhook_id = id(&create_webhook(
        &app,
        json!({"url": receiver.url("/later"), "events": ["file.created"]}),
    )
    .await);
    let sink = app.control.event_sink();
    let mut event_ids = Vec::new();
    for n in 0..3 {
        event_ids.push(
            sink.record(
                EventType::FileCreated,
                event_data("default", &format!("alice/{n}.edi"), "alice"),
            )
            .await
            .unwrap(),
        );
    }
    receiver.wait_for("/later", 3).await;
    // Wharf stops while the deliveries wait for their next attempt.
    app.control.shutdown().await;
    let stopped_at = receiver.requests_to("/later").len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        receiver.requests_to("/later").len(),
        stopped_at,
        "a stopped control plane delivers nothing"
    );
    receiver.answer_always(200);
    drop(sink);
    app.restart(options).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let items = deliveries(&app, &webhook_id).await;
        assert_eq!(items.len(), 3);
        if items.iter().all(|d| d["status"] == "succeeded") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{items:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut delivered: Vec<String> = receiver
        .requests_to("/later")
        .iter()
        .skip(stopped_at)
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    delivered.sort();
    event_ids.sort();
    assert_eq!(
        delivered, event_ids,
        "each event once more, after the restart"
    );
}

async fn private_targets_are_refused_when_configured(db: TestDb) {
    let receiver = Receiver::start().await;
    // Allowed when the operator allows it: a webhook to 127.0.0.1.
    let mut app = TestApp::spawn_with(db, fast_options()).await;
    let webhook_id = id(&create_webhook(
        &app,
        json!({"url": receiver.url("/local"), "events": ["file.deleted"]}),
    )
    .await);
    let strict = ControlPlaneOptions {
        allow_private_webhook_targets: false,
        retry: RetrySchedule {
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(50),
            give_up_after: Duration::from_millis(200),
        },
        ..fast_options()
    };
    app.restart(strict).await;
    for url in [
        receiver.url("/local"),
        "http://localhost:9/x".to_owned(),
        "http://10.0.0.8/x".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]:8080/x".to_owned(),
        "http://[fd00::1]/x".to_owned(),
    ] {
        let problem = expect_problem(
            app.post(
                "/v1/webhooks",
                &json!({"url": url, "events": ["file.created"]}),
            )
            .await,
            400,
            Some("url"),
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains("not deliver"),
            "{problem}"
        );
    }
    // A public address is fine (nothing is sent to it in this test).
    create_webhook(
        &app,
        json!({"url": "https://93.184.216.34/hook", "events": ["directory.created"]}),
    )
    .await;
    // The webhook created before the rule: its deliveries are refused at send time.
    app.control
        .event_sink()
        .record(
            EventType::FileDeleted,
            event_data("default", "a/b", "alice"),
        )
        .await
        .unwrap();
    let dead = wait_for_delivery(&app, &webhook_id, "dead").await;
    let attempt = &dead["attempts"][0];
    assert!(attempt.get("statusCode").is_none(), "{dead}");
    assert!(
        attempt["error"].as_str().unwrap().contains("127.0.0.1"),
        "{dead}"
    );
    assert!(receiver.requests_to("/local").is_empty());
}

async fn test_event_goes_to_one_webhook(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let receiver = Receiver::start().await;
    let created = create_webhook(
        &app,
        json!({"url": receiver.url("/tested"), "events": ["file.created"]}),
    )
    .await;
    let webhook_id = id(&created);
    let other = id(&create_webhook(
        &app,
        json!({"url": receiver.url("/other"), "events": ["file.created"]}),
    )
    .await);
    let response = app
        .post(&format!("/v1/webhooks/{webhook_id}/test"), &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    assert_eq!(queued["eventType"], "webhook.test");
    assert!(queued["id"].as_str().unwrap().starts_with("dlv_"));
    let request = receiver.wait_for("/tested", 1).await.remove(0);
    let payload = verify_with_standardwebhooks(created["secret"].as_str().unwrap(), &request);
    assert_eq!(payload["type"], "webhook.test");
    assert_eq!(payload["id"], queued["eventId"]);
    assert_eq!(payload["data"]["webhookId"], webhook_id.as_str());
    wait_for_delivery(&app, &webhook_id, "succeeded").await;
    assert!(deliveries(&app, &other).await.is_empty());
    let events: Value = app.get("/v1/events").await.json().await.unwrap();
    assert!(
        events["items"].as_array().unwrap().is_empty(),
        "test events are not listed"
    );
}

async fn loop_guard_pauses_and_resumes(db: TestDb) {
    let options = ControlPlaneOptions {
        loop_guard: Some(LoopGuard {
            max_deliveries: 3,
            window: Duration::from_secs(60),
        }),
        ..fast_options()
    };
    let app = TestApp::spawn_with(db, options).await;
    let receiver = Receiver::start().await;
    let webhook_id = id(&create_webhook(
        &app,
        json!({"url": receiver.url("/loop"), "events": ["file.created"], "filter": {"prefix": "alice/in/"}}),
    )
    .await);
    let sink = app.control.event_sink();
    let record = |n: usize| {
        let sink = sink.clone();
        async move {
            sink.record(
                EventType::FileCreated,
                event_data("default", &format!("alice/in/{n}.out"), "alice"),
            )
            .await
            .unwrap()
        }
    };
    // A handler that writes back into alice/in/: three deliveries a minute are allowed…
    for n in 0..3 {
        record(n).await;
    }
    receiver.wait_for("/loop", 3).await;
    // …the fourth pauses the webhook.
    record(3).await;
    record(4).await;
    let webhook: Value = app
        .get(&format!("/v1/webhooks/{webhook_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        webhook["pausedReason"]
            .as_str()
            .unwrap()
            .contains("loop guard"),
        "{webhook}"
    );
    assert_eq!(webhook["enabled"], true);
    // Nothing is lost: all five deliveries are recorded; the last two wait.
    assert_eq!(deliveries(&app, &webhook_id).await.len(), 5);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.requests_to("/loop").len(),
        3,
        "paused: the rest wait"
    );
    let mut sent: Vec<String> = receiver
        .requests_to("/loop")
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    sent.dedup();
    assert_eq!(sent.len(), 3, "each sent once");
    let resumed = app
        .patch(
            &format!("/v1/webhooks/{webhook_id}"),
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(resumed.status(), 200);
    let resumed: Value = resumed.json().await.unwrap();
    assert!(resumed.get("pausedReason").is_none(), "{resumed}");
    receiver.wait_for("/loop", 5).await;
}

/// Two control planes on one database (replicas): every delivery is sent once, by either.
async fn two_control_planes_deliver_each_event_once(db: TestDb) {
    let app = TestApp::spawn_with(db, fast_options()).await;
    let replica = wharf_control::ControlPlane::open_with(
        config(&app.db, app.data_dir.path()),
        fast_options(),
    )
    .await
    .unwrap();
    let receiver = Receiver::start().await;
    let webhook_id = id(&create_webhook(
        &app,
        json!({"url": receiver.url("/replicas"), "events": ["file.created"]}),
    )
    .await);
    let mut event_ids = Vec::new();
    for n in 0..20 {
        // Half through each replica: each wakes its own worker; the other polls.
        let sink = if n % 2 == 0 {
            app.control.event_sink()
        } else {
            replica.event_sink()
        };
        let data = event_data("default", &format!("alice/{n}.edi"), "alice");
        event_ids.push(sink.record(EventType::FileCreated, data).await.unwrap());
    }
    receiver.wait_for("/replicas", 20).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while deliveries(&app, &webhook_id)
        .await
        .iter()
        .any(|d| d["status"] != "succeeded")
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delivered: Vec<String> = receiver
        .requests_to("/replicas")
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    delivered.sort();
    event_ids.sort();
    assert_eq!(delivered, event_ids, "each event exactly once");
    replica.shutdown().await;
}
