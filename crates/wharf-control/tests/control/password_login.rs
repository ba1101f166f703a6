//! Key-only users (`passwordEnabled: false`) and passwords chosen by the operator, over the API
//! and the login check behind both the in-process provider and `POST /internal/v1/login`.

use serde_json::{Value, json};
use wharf_core::{LoginError, LoginRequest, LoginSecret, Protocol};

use crate::common::{GATEWAY_TOKEN, KEY, TestApp, TestDb, expect_problem};

crate::on_both_databases!(
    a_key_only_user_is_told_apart_from_a_wrong_password,
    a_key_only_user_without_keys_is_allowed,
    password_login_can_be_turned_off_and_on_again,
    an_operator_chooses_the_password,
    chosen_passwords_follow_the_rules_of_generated_ones,
    open_sessions_are_valid_while_their_credential_logs_in,
);

/// A password of 20 characters that meets every rule.
const CHOSEN: &str = "Migrated-Pass-2026!x";

fn login(username: &str, secret: LoginSecret) -> LoginRequest {
    LoginRequest {
        protocol: Protocol::Sftp,
        username: username.to_owned(),
        secret,
        client_ip: "192.0.2.1".into(),
        session_id: "test-session".into(),
        probe: false,
    }
}

fn password(p: &str) -> LoginSecret {
    LoginSecret::Password {
        password: p.to_owned(),
    }
}

fn key(k: &str) -> LoginSecret {
    LoginSecret::PublicKey {
        public_key: k.to_owned(),
    }
}

/// `POST /internal/v1/login` as a gateway sends it: the status and the problem `type`.
async fn gateway(app: &TestApp, request: &LoginRequest) -> (u16, Value) {
    let response = app
        .gateway_login(Some(GATEWAY_TOKEN), &serde_json::to_value(request).unwrap())
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn a_key_only_user_is_told_apart_from_a_wrong_password(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = app
        .create_user(json!({
            "description": "Keys only", "homeDirectory": "/", "username": "karl",
            "publicKeys": [KEY], "passwordEnabled": false,
        }))
        .await;
    assert_eq!(created["passwordEnabled"], false);
    let generated = created["password"].as_str().unwrap().to_owned();
    let fetched: Value = app.get("/v1/users/karl").await.json().await.unwrap();
    assert_eq!(fetched["passwordEnabled"], false);
    let list: Value = app.get("/v1/users").await.json().await.unwrap();
    assert_eq!(list["items"][0]["passwordEnabled"], false);

    // In process: its own answer, whether the password is right or wrong; keys still work.
    let provider = app.control.login_provider();
    for tried in [generated.as_str(), "not the password at all"] {
        assert!(
            matches!(
                provider.login(login("karl", password(tried))).await,
                Err(LoginError::PasswordDisabled)
            ),
            "{tried}"
        );
    }
    let grant = provider.login(login("karl", key(KEY))).await.unwrap();
    assert_eq!(grant.username.as_str(), "karl");

    // Over HTTP: a 403 of its own type; every other refusal stays `login-denied`.
    let (status, problem) = gateway(&app, &login("karl", password(&generated))).await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(
        problem["type"],
        "https://wharf.dev/problems/password-disabled"
    );
    for other in [
        login("nobody", password(&generated)),
        login("karl", key(crate::common::OTHER_KEY)),
    ] {
        let (status, problem) = gateway(&app, &other).await;
        assert_eq!(status, 403, "{problem}");
        assert_eq!(problem["type"], "https://wharf.dev/problems/login-denied");
    }

    // A disabled user is just denied: nothing tells it apart from an unknown one.
    app.patch("/v1/users/karl", &json!({"disabled": true}))
        .await
        .error_for_status()
        .unwrap();
    assert!(matches!(
        provider.login(login("karl", password(&generated))).await,
        Err(LoginError::Denied)
    ));
    let (_, problem) = gateway(&app, &login("karl", password(&generated))).await;
    assert_eq!(problem["type"], "https://wharf.dev/problems/login-denied");

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"wharf_logins_total{protocol="sftp",result="password_disabled"}"#),
        "{metrics}"
    );
}

async fn a_key_only_user_without_keys_is_allowed(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // An operator may add the keys later; until then nobody logs in.
    let created = app
        .create_user(json!({
            "description": "Keys to come", "homeDirectory": "/later", "username": "lena",
            "passwordEnabled": false,
        }))
        .await;
    assert_eq!(created["passwordEnabled"], false);
    assert_eq!(created["publicKeys"], json!([]));
    let provider = app.control.login_provider();
    let generated = created["password"].as_str().unwrap();
    assert!(matches!(
        provider.login(login("lena", password(generated))).await,
        Err(LoginError::PasswordDisabled)
    ));
    let updated: Value = app
        .patch("/v1/users/lena", &json!({"publicKeys": [KEY]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(updated["passwordEnabled"], false, "keys leave it alone");
    provider.login(login("lena", key(KEY))).await.unwrap();
}

async fn password_login_can_be_turned_off_and_on_again(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = app.create_root_user("mona").await;
    assert_eq!(created["passwordEnabled"], true, "the default");
    let generated = created["password"].as_str().unwrap().to_owned();
    let provider = app.control.login_provider();
    provider
        .login(login("mona", password(&generated)))
        .await
        .unwrap();

    let off: Value = app
        .patch("/v1/users/mona", &json!({"passwordEnabled": false}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(off["passwordEnabled"], false);
    // Remembered successes (the 10-minute cache) do not outlive the switch.
    assert!(matches!(
        provider.login(login("mona", password(&generated))).await,
        Err(LoginError::PasswordDisabled)
    ));

    // A reset sets the password without turning password login back on.
    let response = app
        .post("/v1/users/mona/password", &json!({"password": CHOSEN}))
        .await;
    assert_eq!(response.status(), 200);
    let fetched: Value = app.get("/v1/users/mona").await.json().await.unwrap();
    assert_eq!(fetched["passwordEnabled"], false);
    assert!(matches!(
        provider.login(login("mona", password(CHOSEN))).await,
        Err(LoginError::PasswordDisabled)
    ));

    let on: Value = app
        .patch("/v1/users/mona", &json!({"passwordEnabled": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(on["passwordEnabled"], true);
    provider
        .login(login("mona", password(CHOSEN)))
        .await
        .unwrap();
    assert!(matches!(
        provider.login(login("mona", password(&generated))).await,
        Err(LoginError::Denied)
    ));

    for bad in [json!("no"), json!(0), json!(null)] {
        let response = app
            .patch("/v1/users/mona", &json!({"passwordEnabled": bad}))
            .await;
        if bad.is_null() {
            // null is "not given": nothing changes.
            assert_eq!(response.status(), 200);
        } else {
            expect_problem(response, 400, Some("passwordEnabled")).await;
        }
    }
}

async fn an_operator_chooses_the_password(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = app
        .create_user(json!({
            "description": "Migrated", "homeDirectory": "/", "username": "nina",
            "password": CHOSEN,
        }))
        .await;
    assert_eq!(created["password"], CHOSEN, "shown once, as given");
    let provider = app.control.login_provider();
    provider
        .login(login("nina", password(CHOSEN)))
        .await
        .unwrap();

    // Only the argon2id hash is stored.
    let record = app
        .control
        .store()
        .get_user(&wharf_core::Username::parse("nina").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(record.password_hash.starts_with("$argon2id$"));
    assert!(!record.password_hash.contains(CHOSEN));

    let other = "Another-Chosen-Pass-42";
    let reset: Value = app
        .post("/v1/users/nina/password", &json!({"password": other}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reset["password"], other);
    provider
        .login(login("nina", password(other)))
        .await
        .unwrap();
    assert!(matches!(
        provider.login(login("nina", password(CHOSEN))).await,
        Err(LoginError::Denied)
    ));

    // Generated stays the default, on create and on reset.
    let generated: Value = app
        .post("/v1/users/nina/password", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let generated = generated["password"].as_str().unwrap();
    assert_eq!(generated.len(), 16);
    assert_ne!(generated, other);
}

async fn chosen_passwords_follow_the_rules_of_generated_ones(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.create_root_user("olga").await;
    let too_long = "x".repeat(129);
    let cases: Vec<(Value, &str)> = vec![
        (json!("fifteen-chars!!"), "password"),
        (json!(too_long), "password"),
        (json!("with a line\nbreak inside it"), "password"),
        (json!("with a tab\tinside it, too"), "password"),
        (json!(" leading space password"), "password"),
        (json!("trailing space password "), "password"),
        (json!(1234567890123456u64), "password"),
    ];
    for (bad, field) in &cases {
        let body = json!({"description": "X", "homeDirectory": "/", "password": bad});
        let problem = expect_problem(app.post("/v1/users", &body).await, 400, Some(field)).await;
        // The message says what is wrong, never what was sent.
        let text = problem.to_string();
        if let Some(bad) = bad.as_str() {
            assert!(!text.contains(bad.trim()), "{text}");
        }
        let response = app
            .post("/v1/users/olga/password", &json!({"password": bad}))
            .await;
        expect_problem(response, 400, Some(field)).await;
    }
    // A chosen password has no generation options.
    let body = json!({"description": "X", "homeDirectory": "/", "password": CHOSEN,
                      "passwordOptions": {"length": 20}});
    expect_problem(
        app.post("/v1/users", &body).await,
        400,
        Some("passwordOptions"),
    )
    .await;
    let response = app
        .post(
            "/v1/users/olga/password",
            &json!({"password": CHOSEN, "passwordOptions": {"length": 20}}),
        )
        .await;
    expect_problem(response, 400, Some("passwordOptions")).await;

    // 16 and 128 characters (not bytes) are fine.
    let at_the_edges = ["é".repeat(16), "y".repeat(128)];
    for chosen in &at_the_edges {
        let response = app
            .post("/v1/users/olga/password", &json!({"password": chosen}))
            .await;
        assert_eq!(response.status(), 200, "{chosen}");
    }
    // No user was created by the refused requests.
    let list: Value = app.get("/v1/users").await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
}

/// A gateway re-checks its open sessions by user and credential: a password session ends
/// when the password is reset, a key session when its key is removed, every session when the
/// user is disabled or deleted; the same answers in process and over HTTP.
async fn open_sessions_are_valid_while_their_credential_logs_in(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.create_user(json!({
        "description": "Both", "homeDirectory": "/", "username": "bea",
        "password": CHOSEN, "publicKeys": [KEY, crate::common::OTHER_KEY],
    }))
    .await;
    let provider = app.control.login_provider();
    let by_password = provider
        .login(login("bea", password(CHOSEN)))
        .await
        .unwrap();
    let by_key = provider.login(login("bea", key(KEY))).await.unwrap();
    assert!(
        by_password.credential.starts_with("password:"),
        "{}",
        by_password.credential
    );
    assert!(
        by_key.credential.starts_with("key:SHA256:"),
        "{}",
        by_key.credential
    );
    assert!(!by_password.credential.contains(CHOSEN));
    let sessions = [
        wharf_core::SessionCheck {
            username: by_password.username.clone(),
            credential: by_password.credential.clone(),
        },
        wharf_core::SessionCheck {
            username: by_key.username.clone(),
            credential: by_key.credential.clone(),
        },
    ];
    let over_http = |app: &TestApp| {
        let body = json!({ "sessions": sessions });
        let request = app
            .http
            .post(app.url("/internal/v1/sessions/check"))
            .bearer_auth(GATEWAY_TOKEN)
            .json(&body);
        async move {
            let reply: Value = request.send().await.unwrap().json().await.unwrap();
            reply["valid"].clone()
        }
    };
    assert_eq!(
        provider.check_sessions(&sessions).await.unwrap(),
        [true, true]
    );
    assert_eq!(over_http(&app).await, json!([true, true]));

    // A new password ends the password session only.
    let response = app.post("/v1/users/bea/password", &json!({})).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        provider.check_sessions(&sessions).await.unwrap(),
        [false, true]
    );
    // Removing the key ends its session; the other key's sessions would go on.
    app.patch(
        "/v1/users/bea",
        &json!({"publicKeys": [crate::common::OTHER_KEY]}),
    )
    .await
    .error_for_status()
    .unwrap();
    assert_eq!(
        provider.check_sessions(&sessions).await.unwrap(),
        [false, false]
    );
    assert_eq!(over_http(&app).await, json!([false, false]));
    // A disabled or deleted user's sessions all end.
    let other = provider
        .login(login("bea", key(crate::common::OTHER_KEY)))
        .await
        .unwrap();
    let check = [wharf_core::SessionCheck {
        username: other.username,
        credential: other.credential,
    }];
    assert_eq!(provider.check_sessions(&check).await.unwrap(), [true]);
    app.patch("/v1/users/bea", &json!({"disabled": true}))
        .await
        .error_for_status()
        .unwrap();
    assert_eq!(provider.check_sessions(&check).await.unwrap(), [false]);
    app.delete("/v1/users/bea")
        .await
        .error_for_status()
        .unwrap();
    assert_eq!(provider.check_sessions(&check).await.unwrap(), [false]);
    // Only the gateway token may ask.
    let response = app
        .http
        .post(app.url("/internal/v1/sessions/check"))
        .bearer_auth(&app.key)
        .json(&json!({"sessions": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}
