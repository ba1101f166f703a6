//! The HTTP API, end to end over loopback, on both databases.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use wharf_control::ControlPlane;
use wharf_control::store::Store;
use wharf_core::{BucketName, LoginError, LoginRequest, LoginSecret, Protocol};

use crate::common::{GATEWAY_TOKEN, KEY, OTHER_KEY, PUBLIC_HOST, TestApp, TestDb, expect_problem};

crate::on_both_databases!(
    api_requires_a_key,
    create_user_and_home_directory,
    create_user_validation,
    create_user_duplicate_is_conflict,
    create_user_rolls_back_when_storage_fails,
    list_users_in_pages,
    search_users,
    get_update_delete_user,
    update_creates_the_new_home,
    delete_keeps_files,
    reset_password,
    gateway_login,
    buckets_and_server,
    operations_endpoints,
);

fn login_request(username: &str, secret: LoginSecret, probe: bool) -> LoginRequest {
    LoginRequest {
        protocol: Protocol::Sftp,
        username: username.to_owned(),
        secret,
        client_ip: "192.0.2.1".into(),
        session_id: "test-session".into(),
        probe,
    }
}

fn password(p: &str) -> LoginSecret {
    LoginSecret::Password {
        password: p.to_owned(),
    }
}

fn public_key(k: &str) -> LoginSecret {
    LoginSecret::PublicKey {
        public_key: k.to_owned(),
    }
}

async fn api_requires_a_key(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let url = app.url("/v1/users");
    let missing = app.http.get(&url).send().await.unwrap();
    assert!(missing.headers().get("www-authenticate").is_some());
    expect_problem(missing, 401, None).await;
    for header in [
        "Bearer wharf_wrong",
        "Key wharf_wrong",
        "Basic abc",
        "Bearer",
        &app.key,
    ] {
        let response = app
            .http
            .get(&url)
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        expect_problem(response, 401, None).await;
    }
    for scheme in ["Key", "Bearer", "bearer"] {
        let response = app
            .http
            .get(&url)
            .header("authorization", format!("{scheme} {}", app.key))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    // Every /v1 route is protected, including ones that take a body.
    for (method, path) in [
        (reqwest::Method::POST, "/v1/users"),
        (reqwest::Method::GET, "/v1/users/alice"),
        (reqwest::Method::PATCH, "/v1/users/alice"),
        (reqwest::Method::DELETE, "/v1/users/alice"),
        (reqwest::Method::POST, "/v1/users/alice/password"),
        (reqwest::Method::GET, "/v1/buckets"),
        (reqwest::Method::GET, "/v1/buckets/default"),
        (reqwest::Method::GET, "/v1/server"),
    ] {
        let response = app
            .http
            .request(method, app.url(path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        expect_problem(response, 401, None).await;
    }
    // The API key is not a gateway token.
    let response = app.gateway_login(Some(&app.key), &json!({})).await;
    expect_problem(response, 401, None).await;
}

async fn create_user_and_home_directory(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = app
        .create_user(json!({
            "description": "  Trading partner Alice  ",
            "homeDirectory": "/alice",
            "username": "alice",
            "publicKeys": [KEY],
        }))
        .await;
    assert_eq!(created["username"], "alice");
    assert_eq!(created["description"], "Trading partner Alice");
    assert_eq!(created["homeDirectory"], "/alice");
    assert_eq!(created["bucketName"], "default");
    assert_eq!(created["endpoint"], PUBLIC_HOST);
    assert_eq!(created["permissions"], "read-write");
    assert_eq!(created["publicKeys"], json!([KEY]));
    assert_eq!(created["disabled"], false);
    assert!(created["createdAt"].is_string());
    assert!(created.get("lastConnectedAt").is_some_and(Value::is_null));
    assert_eq!(created["passwordEnabled"], true);
    let secret = created["password"].as_str().unwrap();
    assert_eq!(secret.len(), 16);
    assert!(app.bucket_dir().join("alice").is_dir());

    // GET shows the same user, without the password.
    let fetched: Value = app.get("/v1/users/alice").await.json().await.unwrap();
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("password");
    assert_eq!(fetched, expected);

    // The password works for a login.
    let login = app.control.login_provider();
    let grant = login
        .login(login_request("alice", password(secret), false))
        .await
        .unwrap();
    assert_eq!(grant.home_directory.as_str(), "/alice");

    // Generated username, chosen password length, nested home, permissions.
    let generated = app
        .create_user(json!({
            "description": "Generated",
            "homeDirectory": "/partners/acme/inbound",
            "passwordOptions": {"length": 40},
            "permissions": "write-only",
        }))
        .await;
    let username = generated["username"].as_str().unwrap();
    assert_eq!(username.len(), 8);
    assert!(
        username
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "{username}"
    );
    assert_eq!(generated["password"].as_str().unwrap().len(), 40);
    assert_eq!(generated["permissions"], "write-only");
    assert!(app.bucket_dir().join("partners/acme/inbound").is_dir());

    // A root user sees the whole bucket; nothing to create.
    let root = app
        .create_user(json!({"description": "Root", "homeDirectory": "/"}))
        .await;
    assert_eq!(root["homeDirectory"], "/");
}

async fn create_user_validation(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let valid = json!({"description": "Valid", "homeDirectory": "/"});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (with("description", json!("")), 400, "description"),
        (with("description", json!("   ")), 400, "description"),
        (with("description", json!("two\nlines")), 400, "description"),
        (
            with("description", json!("x".repeat(1025))),
            400,
            "description",
        ),
        (with("description", json!(5)), 400, "description"),
        (
            with("passwordOptions", json!({"length": 15})),
            400,
            "passwordOptions.length",
        ),
        (
            with("passwordOptions", json!({"length": 129})),
            400,
            "passwordOptions.length",
        ),
        (
            with("passwordOptions", json!({"length": -1})),
            400,
            "passwordOptions.length",
        ),
        (
            with("passwordOptions", json!({"size": 20})),
            400,
            "passwordOptions.size",
        ),
        (
            with("publicKeys", json!([KEY, "ssh-ed25519 garbage"])),
            400,
            "publicKeys[1]",
        ),
        (
            with("publicKeys", json!(["not a key"])),
            400,
            "publicKeys[0]",
        ),
        (
            with("bucketName", json!("no-such-bucket")),
            400,
            "bucketName",
        ),
        (with("bucketName", json!("Not_Valid")), 400, "bucketName"),
        (
            with("homeDirectory", json!("/a/../b")),
            400,
            "homeDirectory",
        ),
        (
            with("homeDirectory", json!("relative")),
            400,
            "homeDirectory",
        ),
        (with("homeDirectory", json!(null)), 400, "homeDirectory"),
        (with("username", json!("has space")), 400, "username"),
        (with("permissions", json!("everything")), 400, "permissions"),
        (with("bogus", json!(1)), 400, "bogus"),
        (json!({"homeDirectory": "/"}), 400, "description"),
    ];
    for (body, status, field) in cases {
        let response = app.post("/v1/users", &body).await;
        let problem = expect_problem(response, status, Some(field)).await;
        assert!(problem["detail"].is_string(), "{problem}");
    }

    // Every broken rule is reported at once.
    let body = json!({"description": "", "homeDirectory": "/", "passwordOptions": {"length": 1}});
    let problem =
        expect_problem(app.post("/v1/users", &body).await, 400, Some("description")).await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    assert_eq!(problem["type"], "https://wharf.dev/problems/validation");

    // Not JSON at all.
    let send_raw = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = app
            .http
            .post(app.url("/v1/users"))
            .bearer_auth(&app.key)
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request.send()
    };
    let response = send_raw(Some("application/json"), b"{\"description\":".to_vec())
        .await
        .unwrap();
    expect_problem(response, 400, None).await;
    let response = send_raw(Some("application/json"), b"[1, 2]".to_vec())
        .await
        .unwrap();
    expect_problem(response, 400, None).await;
    let response = send_raw(Some("text/plain"), valid.to_string().into_bytes())
        .await
        .unwrap();
    expect_problem(response, 415, None).await;
    let response = send_raw(None, valid.to_string().into_bytes())
        .await
        .unwrap();
    expect_problem(response, 415, None).await;
    let response = send_raw(
        Some("application/json; charset=utf-8"),
        valid.to_string().into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    let huge = json!({"description": "x".repeat(2 * 1024 * 1024), "homeDirectory": "/"});
    let response = send_raw(Some("application/json"), huge.to_string().into_bytes())
        .await
        .unwrap();
    expect_problem(response, 413, None).await;

    // Only the one valid request created a user.
    let list: Value = app.get("/v1/users").await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
}

async fn create_user_duplicate_is_conflict(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.create_root_user("dup").await;
    let response = app
        .post(
            "/v1/users",
            &json!({"description": "Again", "homeDirectory": "/", "username": "dup"}),
        )
        .await;
    let problem = expect_problem(response, 409, None).await;
    assert_eq!(problem["type"], "https://wharf.dev/problems/conflict");
}

async fn create_user_rolls_back_when_storage_fails(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // A bucket whose directory cannot be created: its parent is a file.
    let blocker = app.data_dir.path().join("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let store = Store::connect(&app.db.url).await.unwrap();
    store
        .insert_bucket(
            &BucketName::parse("broken").unwrap(),
            &format!("file://{}/buckets", blocker.display()),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let response = app
        .post(
            "/v1/users",
            &json!({
                "description": "Doomed",
                "homeDirectory": "/doomed",
                "username": "doomed",
                "bucketName": "broken",
            }),
        )
        .await;
    let problem = expect_problem(response, 503, None).await;
    assert_eq!(
        problem["type"],
        "https://wharf.dev/problems/storage-unavailable"
    );
    // No user without a home.
    expect_problem(app.get("/v1/users/doomed").await, 404, None).await;
    // A root user in that bucket needs no directory.
    let root = app
        .create_user(json!({"description": "Root", "homeDirectory": "/", "bucketName": "broken"}))
        .await;
    assert_eq!(root["bucketName"], "broken");
    store.close().await;
}

async fn search_users(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for (name, description, home) in [
        ("ACME0001", "Acme Corp inbound", "/acme/in"),
        ("ACME0002", "Acme Corp outbound", "/acme/out"),
        ("GLOBEX01", "Globex 100% EDI", "/globex"),
        ("INITECH1", "Initech_payroll", "/partners/initech"),
    ] {
        let response = app
            .post(
                "/v1/users",
                &json!({"username": name, "description": description, "homeDirectory": home}),
            )
            .await;
        assert_eq!(response.status(), 201, "{name}");
    }
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    // Description, case-insensitive.
    let page: Value = app
        .get("/v1/users?search=acme%20CORP")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page), ["ACME0001", "ACME0002"]);
    // Username.
    let page: Value = app
        .get("/v1/users?search=globex0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page), ["GLOBEX01"]);
    // Home directory.
    let page: Value = app
        .get("/v1/users?search=%2Fpartners")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page), ["INITECH1"]);
    // LIKE wildcards are literal: `%` and `_` match only themselves.
    let page: Value = app
        .get("/v1/users?search=100%25")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page), ["GLOBEX01"]);
    let page: Value = app
        .get("/v1/users?search=inite_h")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page), Vec::<String>::new());
    let page: Value = app
        .get("/v1/users?search=h_payroll")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page), ["INITECH1"]);
    // Paging within a search.
    let page: Value = app
        .get("/v1/users?search=acme&pageSize=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page), ["ACME0001"]);
    let token = page["nextPageToken"].as_str().unwrap().to_owned();
    let page: Value = app
        .get(&format!(
            "/v1/users?search=acme&pageSize=1&pageToken={token}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(&page), ["ACME0002"]);
    assert!(page.get("nextPageToken").is_none(), "{page}");
    // A blank search is no search; an oversized one is refused, naming the parameter.
    let page: Value = app.get("/v1/users?search=%20").await.json().await.unwrap();
    assert_eq!(names(&page).len(), 4);
    let long = "x".repeat(201);
    expect_problem(
        app.get(&format!("/v1/users?search={long}")).await,
        400,
        Some("search"),
    )
    .await;
}

async fn list_users_in_pages(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut names = vec![
        "delta", "Alpha", "charlie", "7even", "bravo", "Echo", "foxtrot",
    ];
    for name in &names {
        app.create_root_user(name).await;
    }
    names.sort();

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(t) => format!("/v1/users?pageSize=3&pageToken={t}"),
            None => "/v1/users?pageSize=3".to_owned(),
        };
        let page: Value = app.get(&path).await.json().await.unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        seen.extend(
            items
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned()),
        );
        match page.get("nextPageToken").and_then(Value::as_str) {
            Some(next) => {
                assert_eq!(items.len(), 3);
                token = Some(next.to_owned());
            }
            None => {
                assert_eq!(items.len(), 1, "{page}");
                break;
            }
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names, "every user once, in username order");

    // The default page holds them all; a page exactly full has no next page.
    let page: Value = app.get("/v1/users").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    assert!(page.get("nextPageToken").is_none());
    let page: Value = app.get("/v1/users?pageSize=7").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    assert!(page.get("nextPageToken").is_none());
    // Stable: the first page again is the same.
    let first: Value = app.get("/v1/users?pageSize=3").await.json().await.unwrap();
    let again: Value = app.get("/v1/users?pageSize=3").await.json().await.unwrap();
    assert_eq!(first, again);

    for bad in [
        "pageSize=0",
        "pageSize=101",
        "pageSize=three",
        "pageSize=-3",
    ] {
        let response = app.get(&format!("/v1/users?{bad}")).await;
        expect_problem(response, 400, Some("pageSize")).await;
    }
    for bad in ["pageToken=!!!", "pageToken=%FF", "pageToken=YSBi"] {
        let response = app.get(&format!("/v1/users?{bad}")).await;
        expect_problem(response, 400, Some("pageToken")).await;
    }
}

async fn get_update_delete_user(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for path in [
        "/v1/users/nobody",
        "/v1/users/has%20space",
        "/v1/users/..",
        "/v1/users/%2E%2E",
    ] {
        let problem = expect_problem(app.get(path).await, 404, None).await;
        assert_eq!(problem["type"], "https://wharf.dev/problems/not-found");
    }
    let created = app.create_root_user("carol").await;

    let response = app
        .patch(
            "/v1/users/carol",
            &json!({
                "description": "Carol GmbH",
                "permissions": "read-only",
                "publicKeys": [OTHER_KEY],
                "disabled": true,
            }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["description"], "Carol GmbH");
    assert_eq!(updated["permissions"], "read-only");
    assert_eq!(updated["publicKeys"], json!([OTHER_KEY]));
    assert_eq!(updated["disabled"], true);
    assert_eq!(updated["homeDirectory"], "/");
    assert_eq!(updated["createdAt"], created["createdAt"]);
    let created_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(created["createdAt"].clone()).unwrap();
    let updated_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(updated["updatedAt"].clone()).unwrap();
    assert!(updated_at >= created_at);
    let fetched: Value = app.get("/v1/users/carol").await.json().await.unwrap();
    assert_eq!(fetched, updated);

    // An empty PATCH changes nothing.
    let same: Value = app
        .patch("/v1/users/carol", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(same, updated);

    // The same rules as on create.
    for (body, status, field) in [
        (json!({"description": ""}), 400, "description"),
        (json!({"publicKeys": ["nope"]}), 400, "publicKeys[0]"),
        (json!({"homeDirectory": "no-slash"}), 400, "homeDirectory"),
        (json!({"disabled": "yes"}), 400, "disabled"),
        (json!({"username": "renamed"}), 400, "username"),
    ] {
        let response = app.patch("/v1/users/carol", &body).await;
        expect_problem(response, status, Some(field)).await;
    }
    let response = app
        .patch("/v1/users/nobody", &json!({"description": "x"}))
        .await;
    expect_problem(response, 404, None).await;

    let response = app.delete("/v1/users/carol").await;
    assert_eq!(response.status(), 204);
    expect_problem(app.get("/v1/users/carol").await, 404, None).await;
    expect_problem(app.delete("/v1/users/carol").await, 404, None).await;
}

async fn update_creates_the_new_home(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.create_user(json!({"description": "Dan", "homeDirectory": "/dan", "username": "dan"}))
        .await;
    let response = app
        .patch("/v1/users/dan", &json!({"homeDirectory": "/partners/dan"}))
        .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["homeDirectory"], "/partners/dan");
    assert!(app.bucket_dir().join("partners/dan").is_dir());
    assert!(app.bucket_dir().join("dan").is_dir(), "the old home stays");
}

async fn delete_keeps_files(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.create_user(json!({"description": "Eve", "homeDirectory": "/eve", "username": "eve"}))
        .await;
    let file = app.bucket_dir().join("eve/invoice.edi");
    std::fs::write(&file, b"ISA*00*").unwrap();
    assert_eq!(app.delete("/v1/users/eve").await.status(), 204);
    assert_eq!(std::fs::read(&file).unwrap(), b"ISA*00*");
}

async fn reset_password(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = app.create_root_user("frank").await;
    let old = created["password"].as_str().unwrap().to_owned();
    let login = app.control.login_provider();
    login
        .login(login_request("frank", password(&old), false))
        .await
        .unwrap();

    // No body at all.
    let response = app
        .http
        .post(app.url("/v1/users/frank/password"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let new: Value = response.json().await.unwrap();
    let new = new["password"].as_str().unwrap().to_owned();
    assert_eq!(new.len(), 16);
    assert_ne!(new, old);
    assert!(matches!(
        login
            .login(login_request("frank", password(&old), false))
            .await,
        Err(LoginError::Denied)
    ));
    login
        .login(login_request("frank", password(&new), false))
        .await
        .unwrap();

    let response = app
        .post(
            "/v1/users/frank/password",
            &json!({"passwordOptions": {"length": 64}}),
        )
        .await;
    let longer: Value = response.json().await.unwrap();
    assert_eq!(longer["password"].as_str().unwrap().len(), 64);
    let response = app
        .post(
            "/v1/users/frank/password",
            &json!({"passwordOptions": {"length": 8}}),
        )
        .await;
    expect_problem(response, 400, Some("passwordOptions.length")).await;
    let response = app
        .post("/v1/users/frank/password", &json!({"bogus": true}))
        .await;
    expect_problem(response, 400, Some("bogus")).await;
    let response = app
        .http
        .post(app.url("/v1/users/frank/password"))
        .bearer_auth(&app.key)
        .header("content-type", "text/plain")
        .body("length=20")
        .send()
        .await
        .unwrap();
    expect_problem(response, 415, None).await;
    let response = app.post("/v1/users/nobody/password", &json!({})).await;
    expect_problem(response, 404, None).await;
}

async fn gateway_login(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = app
        .create_user(json!({
            "description": "Gina",
            "homeDirectory": "/",
            "username": "gina",
            "publicKeys": [KEY],
            "permissions": "read-only",
        }))
        .await;
    let secret = created["password"].as_str().unwrap();
    let body = |username: &str, secret: LoginSecret, probe: bool| {
        serde_json::to_value(login_request(username, secret, probe)).unwrap()
    };

    // The gateway token is required.
    let ok_body = body("gina", password(secret), true);
    expect_problem(app.gateway_login(None, &ok_body).await, 401, None).await;
    expect_problem(app.gateway_login(Some("wrong"), &ok_body).await, 401, None).await;
    let response = app
        .http
        .post(app.url("/internal/v1/login"))
        .header("authorization", format!("Key {GATEWAY_TOKEN}"))
        .json(&ok_body)
        .send()
        .await
        .unwrap();
    expect_problem(response, 401, None).await;

    // A probe succeeds without recording a login.
    let response = app.gateway_login(Some(GATEWAY_TOKEN), &ok_body).await;
    assert_eq!(response.status(), 200);
    let user: Value = app.get("/v1/users/gina").await.json().await.unwrap();
    assert!(
        user.get("lastConnectedAt").is_some_and(Value::is_null),
        "{user}"
    );

    // A real login returns the grant and records the time.
    let response = app
        .gateway_login(Some(GATEWAY_TOKEN), &body("gina", password(secret), false))
        .await;
    assert_eq!(response.status(), 200);
    let grant: Value = response.json().await.unwrap();
    assert_eq!(grant["username"], "gina");
    assert_eq!(grant["homeDirectory"], "/");
    assert_eq!(grant["permissions"], "read-only");
    assert_eq!(grant["bucket"]["name"], "default");
    assert_eq!(
        grant["bucket"]["url"],
        format!("file://{}", app.bucket_dir().display())
    );
    let user: Value = app.get("/v1/users/gina").await.json().await.unwrap();
    let last: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(user["lastConnectedAt"].clone()).expect("lastConnectedAt is set");
    assert!((chrono::Utc::now() - last).num_seconds() < 60);

    // Public keys: the listed one, whatever its comment; not another.
    let bare_key = KEY.rsplit_once(' ').unwrap().0;
    let response = app
        .gateway_login(
            Some(GATEWAY_TOKEN),
            &body("gina", public_key(bare_key), false),
        )
        .await;
    assert_eq!(response.status(), 200);

    // Refusals all look the same.
    let denied = [
        body("gina", password("wrong password"), false),
        body("gina", password(""), false),
        body("gina", public_key(OTHER_KEY), false),
        body("gina", public_key("garbage"), false),
        body("nobody", password(secret), false),
        body("not a name", password(secret), false),
        body("GINA", password(secret), false),
    ];
    let mut details = Vec::new();
    for request in &denied {
        let problem = expect_problem(
            app.gateway_login(Some(GATEWAY_TOKEN), request).await,
            403,
            None,
        )
        .await;
        details.push(problem);
    }
    assert!(details.windows(2).all(|w| w[0] == w[1]), "{details:?}");

    // A disabled user is refused, with either secret.
    let response = app
        .patch("/v1/users/gina", &json!({"disabled": true}))
        .await;
    assert_eq!(response.status(), 200);
    for request in [
        body("gina", password(secret), false),
        body("gina", public_key(KEY), false),
    ] {
        expect_problem(
            app.gateway_login(Some(GATEWAY_TOKEN), &request).await,
            403,
            None,
        )
        .await;
    }
    assert!(matches!(
        app.control
            .login_provider()
            .login(login_request("gina", password(secret), false))
            .await,
        Err(LoginError::Denied)
    ));

    // A malformed login request is a 400 naming the field.
    let response = app
        .gateway_login(
            Some(GATEWAY_TOKEN),
            &json!({"protocol": "sftp", "username": "gina", "clientIp": "x", "sessionId": "y"}),
        )
        .await;
    expect_problem(response, 400, Some("secret")).await;
    let response = app
        .gateway_login(
            Some(GATEWAY_TOKEN),
            &json!({"protocol": "gopher", "username": "gina", "secret": {"type": "password", "password": "x"}, "clientIp": "x", "sessionId": "y"}),
        )
        .await;
    expect_problem(response, 400, Some("protocol")).await;

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
        metrics.contains(r#"wharf_logins_total{protocol="sftp",result="denied"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"wharf_logins_total{protocol="sftp",result="success"}"#));
    assert!(metrics.contains(r#"wharf_logins_total{protocol="sftp",result="probe"} 1"#));
}

async fn buckets_and_server(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let store = Store::connect(&app.db.url).await.unwrap();
    store
        .insert_bucket(
            &BucketName::parse("archive").unwrap(),
            "s3://AKIAEXAMPLE:secret@archive-bucket/prefix?token=abc",
            &BTreeMap::from([("aws_secret_access_key".to_owned(), "s3cr3t".to_owned())]),
        )
        .await
        .unwrap();
    store.close().await;

    let list: Value = app.get("/v1/buckets").await.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert_eq!(items[0]["bucketName"], "archive");
    assert_eq!(items[0]["storageUrl"], "s3://archive-bucket/prefix");
    assert_eq!(items[0]["isDefault"], false);
    assert_eq!(items[1]["bucketName"], "default");
    assert_eq!(items[1]["isDefault"], true);
    assert!(list.get("nextPageToken").is_none());
    // Credentials in the URL and option values never show; option names do.
    assert!(!list.to_string().contains(":secret"), "{list}");
    assert!(!list.to_string().contains("token=abc"), "{list}");
    assert!(!list.to_string().contains("s3cr3t"), "{list}");
    assert_eq!(items[0]["optionKeys"], json!(["aws_secret_access_key"]));
    assert_eq!(items[1]["optionKeys"], json!([]));

    let default: Value = app.get("/v1/buckets/default").await.json().await.unwrap();
    assert_eq!(
        default["storageUrl"],
        format!("file://{}", app.bucket_dir().display())
    );
    assert_eq!(default, items[1]);
    expect_problem(app.get("/v1/buckets/missing").await, 404, None).await;
    expect_problem(app.get("/v1/buckets/NOT_VALID").await, 404, None).await;

    let server: Value = app.get("/v1/server").await.json().await.unwrap();
    assert_eq!(server["endpoint"], PUBLIC_HOST);
    assert_eq!(server["sftpPort"], 2222);
    assert_eq!(server["ftpsPort"], 2121);
    assert_eq!(server["ftpsImplicitPort"], 2990);
    assert_eq!(server["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(server["hostKeys"][0]["algorithm"], "ssh-ed25519");
}

async fn operations_endpoints(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let get = |path: &str| app.http.get(app.url(path)).send();

    let health = get("/healthz").await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().get("x-request-id").is_some());
    assert_eq!(health.text().await.unwrap(), "ok");
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);

    app.create_root_user("henry").await;
    let metrics = get("/metrics").await.unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"wharf_http_requests_total{method="POST",route="/v1/users",status="201"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("wharf_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("wharf_users 1"), "{metrics}");

    let document: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    assert_eq!(
        document,
        serde_json::to_value(ControlPlane::openapi()).unwrap()
    );
    let docs = get("/docs").await.unwrap();
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "{html}");

    let problem = expect_problem(get("/nope").await.unwrap(), 404, None).await;
    assert_eq!(problem["type"], "https://wharf.dev/problems/not-found");
    let response = app
        .http
        .put(app.url("/v1/users"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    expect_problem(response, 405, None).await;

    // Readiness follows the database.
    app.control.store().close().await;
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 503);
    expect_problem(app.get("/v1/users").await, 503, None).await;
}
