//! `maxSessions`: a user's limit of concurrent sessions, through the API and the login grant,
//! on both databases.

use serde_json::{Value, json};
use wharf_control::store::{Store, UserChanges};
use wharf_core::{LoginRequest, LoginSecret, Protocol, Username};

use crate::common::{GATEWAY_TOKEN, TestApp, TestDb, expect_problem};

crate::on_both_databases!(
    max_sessions_defaults_to_ten,
    max_sessions_set_on_create,
    max_sessions_patched,
    max_sessions_out_of_range,
    max_sessions_in_the_store,
);

async fn grant_max_sessions(app: &TestApp, username: &str, password: &str) -> Value {
    let request = LoginRequest {
        protocol: Protocol::Sftp,
        username: username.to_owned(),
        secret: LoginSecret::Password {
            password: password.to_owned(),
        },
        client_ip: "192.0.2.1".into(),
        session_id: "test-session".into(),
        probe: false,
    };
    // Over HTTP (separate gateways) and in-process (`wharf serve`): the same answer.
    let body = serde_json::to_value(&request).unwrap();
    let response = app.gateway_login(Some(GATEWAY_TOKEN), &body).await;
    assert_eq!(response.status(), 200);
    let grant: Value = response.json().await.unwrap();
    let in_process = app.control.login_provider().login(request).await.unwrap();
    assert_eq!(grant["maxSessions"], in_process.max_sessions);
    grant["maxSessions"].clone()
}

async fn max_sessions_defaults_to_ten(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = app
        .create_user(json!({"description": "A", "homeDirectory": "/", "username": "amy"}))
        .await;
    assert_eq!(created["maxSessions"], 10);
    let fetched: Value = app.get("/v1/users/amy").await.json().await.unwrap();
    assert_eq!(fetched["maxSessions"], 10);
    let listed: Value = app.get("/v1/users").await.json().await.unwrap();
    assert_eq!(listed["items"][0]["maxSessions"], 10);
    let password = created["password"].as_str().unwrap();
    assert_eq!(grant_max_sessions(&app, "amy", password).await, 10);
}

async fn max_sessions_set_on_create(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for (username, limit) in [("one", 1), ("two", 2), ("many", 1000)] {
        let created = app
            .create_user(json!({
                "description": "Limited",
                "homeDirectory": "/",
                "username": username,
                "maxSessions": limit,
            }))
            .await;
        assert_eq!(created["maxSessions"], limit);
        let fetched: Value = app
            .get(&format!("/v1/users/{username}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(fetched["maxSessions"], limit);
        let password = created["password"].as_str().unwrap();
        assert_eq!(grant_max_sessions(&app, username, password).await, limit);
    }
}

async fn max_sessions_patched(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = app
        .create_user(json!({"description": "B", "homeDirectory": "/", "username": "bob"}))
        .await;
    let password = created["password"].as_str().unwrap();
    let response = app.patch("/v1/users/bob", &json!({"maxSessions": 3})).await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["maxSessions"], 3);
    assert_eq!(updated["description"], "B");
    assert_eq!(grant_max_sessions(&app, "bob", password).await, 3);

    // Other changes leave it alone.
    let response = app
        .patch("/v1/users/bob", &json!({"description": "Bob Ltd"}))
        .await;
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["maxSessions"], 3);
    let fetched: Value = app.get("/v1/users/bob").await.json().await.unwrap();
    assert_eq!(fetched, updated);

    // A bad limit changes nothing, not even the other fields of the same request.
    let response = app
        .patch(
            "/v1/users/bob",
            &json!({"maxSessions": 0, "description": "Changed"}),
        )
        .await;
    expect_problem(response, 400, Some("maxSessions")).await;
    let fetched: Value = app.get("/v1/users/bob").await.json().await.unwrap();
    assert_eq!(fetched["maxSessions"], 3);
    assert_eq!(fetched["description"], "Bob Ltd");
}

async fn max_sessions_out_of_range(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.create_user(json!({"description": "C", "homeDirectory": "/", "username": "cat"}))
        .await;
    // In u32 but outside 1..=1000: a rule is broken. Not a u32 at all: malformed. Both are 400;
    // a broken rule says what the range is. `None`: null is "not given", the default.
    for (value, rule_broken) in [
        (json!(0), Some(true)),
        (json!(1001), Some(true)),
        (json!(4_294_967_295u64), Some(true)),
        (json!(-1), Some(false)),
        (json!(4_294_967_296u64), Some(false)),
        (json!(2.5), Some(false)),
        (json!("5"), Some(false)),
        (json!(null), None),
    ] {
        let body = json!({"description": "X", "homeDirectory": "/", "maxSessions": value});
        let response = app.post("/v1/users", &body).await;
        match rule_broken {
            None => {
                assert_eq!(response.status(), 201, "{value}");
                let created: Value = response.json().await.unwrap();
                assert_eq!(created["maxSessions"], 10);
            }
            Some(rule_broken) => {
                let problem = expect_problem(response, 400, Some("maxSessions")).await;
                if rule_broken {
                    let message = problem["errors"][0]["message"].as_str().unwrap();
                    assert!(message.contains("1 to 1000"), "{problem}");
                }
            }
        }
        let response = app
            .patch("/v1/users/cat", &json!({"maxSessions": value}))
            .await;
        if rule_broken.is_none() {
            assert_eq!(response.status(), 200, "{value}");
        } else {
            expect_problem(response, 400, Some("maxSessions")).await;
        }
    }
    let fetched: Value = app.get("/v1/users/cat").await.json().await.unwrap();
    assert_eq!(fetched["maxSessions"], 10);
}

async fn max_sessions_in_the_store(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.create_user(json!({
        "description": "D", "homeDirectory": "/", "username": "dan", "maxSessions": 7,
    }))
    .await;
    let store = Store::connect(&app.db.url).await.unwrap();
    let dan = Username::parse("dan").unwrap();
    let (user, _) = store.get_user_with_bucket(&dan).await.unwrap().unwrap();
    assert_eq!(user.max_sessions, 7);
    let updated = store
        .update_user(
            &dan,
            &UserChanges {
                max_sessions: Some(1),
                ..Default::default()
            },
            wharf_control::store::now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.max_sessions, 1);
    assert_eq!(updated.description, "D");
    store.close().await;
}
