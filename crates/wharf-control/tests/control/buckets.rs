//! `POST /v1/buckets` and `DELETE /v1/buckets/{bucketName}` on both databases, with buckets on
//! local disk, on a real S3-compatible server (s3s-fs) and on Azure's emulator (Azurite).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wharf_control::store::{BucketDeletion, NewUser, Store};
use wharf_core::{
    BucketName, HomeDirectory, LoginRequest, LoginSecret, Permissions, Protocol, Username,
};

use crate::common::{GATEWAY_TOKEN, TestApp, TestDb, expect_problem};

#[path = "../../../wharf-vfs/tests/common/servers.rs"]
pub(crate) mod servers;

use servers::{AzuriteServer, S3_SECRET_KEY, S3Server};

crate::on_both_databases!(
    file_bucket_lifecycle,
    s3_bucket_holds_users,
    azure_bucket_holds_users,
    create_bucket_validation,
    unreachable_stores_are_refused_with_the_cause,
    delete_bucket_rules,
    store_delete_bucket,
);

/// Registers a bucket; returns the 201 body.
async fn create_bucket(app: &TestApp, body: Value) -> Value {
    let response = app.post("/v1/buckets", &body).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "registering {body}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn bucket_names(app: &TestApp) -> Vec<String> {
    let list: Value = app.get("/v1/buckets").await.json().await.unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucketName"].as_str().unwrap().to_owned())
        .collect()
}

async fn file_bucket_lifecycle(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let dir = tempfile::tempdir_in(app.bucket_dir()).unwrap();
    let storage = dir.path().join("partners");
    let url = format!("file://{}", storage.display());
    let created = create_bucket(&app, json!({"bucketName": "partners", "storageUrl": url})).await;
    assert_eq!(created["bucketName"], "partners");
    assert_eq!(created["storageUrl"], url);
    assert_eq!(created["isDefault"], false);
    assert_eq!(created["optionKeys"], json!([]));
    assert!(created["createdAt"].is_string());
    assert!(storage.is_dir(), "a missing directory is created");
    let got: Value = app.get("/v1/buckets/partners").await.json().await.unwrap();
    assert_eq!(got, created);
    assert_eq!(bucket_names(&app).await, ["default", "partners"]);

    // Users can live in it; their homes are made there.
    let user = app
        .create_user(json!({
            "description": "Acme",
            "homeDirectory": "/acme/in",
            "bucketName": "partners",
        }))
        .await;
    assert_eq!(user["bucketName"], "partners");
    assert!(storage.join("acme/in").is_dir());
    assert!(!app.bucket_dir().join("acme").exists());
    let username = user["username"].as_str().unwrap();

    // The gateways are told where the bucket is.
    let grant: Value = app
        .gateway_login(
            Some(GATEWAY_TOKEN),
            &serde_json::to_value(LoginRequest {
                protocol: Protocol::Sftp,
                username: username.to_owned(),
                secret: LoginSecret::Password {
                    password: user["password"].as_str().unwrap().to_owned(),
                },
                client_ip: "192.0.2.1".into(),
                session_id: "s1".into(),
                probe: false,
            })
            .unwrap(),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(grant["bucket"]["name"], "partners", "{grant}");
    assert_eq!(grant["bucket"]["url"], url);

    // Not deletable while the user lives in it.
    let problem = expect_problem(app.delete("/v1/buckets/partners").await, 409, None).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("1 user"),
        "{problem}"
    );
    let response = app.delete(&format!("/v1/users/{username}")).await;
    assert_eq!(response.status(), 204);
    let response = app.delete("/v1/buckets/partners").await;
    assert_eq!(response.status(), 204);
    assert!(response.text().await.unwrap().is_empty());
    assert!(storage.join("acme/in").is_dir(), "the files stay");
    expect_problem(app.get("/v1/buckets/partners").await, 404, None).await;
    expect_problem(app.delete("/v1/buckets/partners").await, 404, None).await;
    assert_eq!(bucket_names(&app).await, ["default"]);

    // The name is free again, and a user can no longer be created in the deleted bucket.
    expect_problem(
        app.post(
            "/v1/users",
            &json!({"description": "X", "homeDirectory": "/x", "bucketName": "partners"}),
        )
        .await,
        400,
        Some("bucketName"),
    )
    .await;
    create_bucket(&app, json!({"bucketName": "partners", "storageUrl": url})).await;
}

async fn s3_bucket_holds_users(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let s3 = S3Server::start(&["acme-files"]);
    let options = s3.options();
    let created = create_bucket(
        &app,
        json!({
            "bucketName": "acme",
            "storageUrl": "s3://acme-files/wharf/",
            "options": options,
        }),
    )
    .await;
    assert_eq!(created["storageUrl"], "s3://acme-files/wharf/");
    assert_eq!(
        created["optionKeys"],
        json!([
            "aws_access_key_id",
            "aws_endpoint",
            "aws_region",
            "aws_secret_access_key"
        ])
    );
    let everything = format!(
        "{created}{}{}",
        app.get("/v1/buckets").await.text().await.unwrap(),
        app.get("/v1/buckets/acme").await.text().await.unwrap()
    );
    assert!(!everything.contains(S3_SECRET_KEY), "{everything}");
    assert!(
        !everything.contains(&s3.endpoint()),
        "option values are not shown"
    );

    let user = app
        .create_user(json!({
            "description": "Acme",
            "homeDirectory": "/partners/acme",
            "bucketName": "acme",
        }))
        .await;
    assert_eq!(
        s3.keys("acme-files"),
        [
            "wharf/partners/.wharf-dir",
            "wharf/partners/acme/.wharf-dir"
        ],
        "the home is made on the server, under the URL's prefix"
    );

    let username = user["username"].as_str().unwrap();
    let response = app.delete(&format!("/v1/users/{username}")).await;
    assert_eq!(response.status(), 204);
    assert_eq!(app.delete("/v1/buckets/acme").await.status(), 204);
    assert_eq!(s3.keys("acme-files").len(), 2, "the objects stay");
}

async fn azure_bucket_holds_users(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let azurite = AzuriteServer::start(&["files"]);
    let created = create_bucket(
        &app,
        json!({
            "bucketName": "azure-files",
            "storageUrl": "az://files",
            "options": azurite.emulator_options(),
        }),
    )
    .await;
    assert_eq!(created["storageUrl"], "az://files");
    app.create_user(json!({
        "description": "Globex",
        "homeDirectory": "/globex",
        "bucketName": "azure-files",
    }))
    .await;
    assert_eq!(azurite.blob_names("files", false), ["globex/.wharf-dir"]);

    // A container that does not exist is refused, and says so.
    let problem = expect_problem(
        app.post(
            "/v1/buckets",
            &json!({
                "bucketName": "nope",
                "storageUrl": "az://no-such-container",
                "options": azurite.account_options(),
            }),
        )
        .await,
        400,
        Some("storageUrl"),
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("does not exist"), "{detail}");
    assert!(!detail.contains(servers::AZURITE_KEY), "{detail}");
}

async fn create_bucket_validation(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let dir = tempfile::tempdir_in(app.bucket_dir()).unwrap();
    let good_url = format!("file://{}", dir.path().join("b").display());
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();

    // Unreadable bodies: 400 naming the field.
    for (body, field) in [
        (
            json!({"bucketName": "Not_Valid", "storageUrl": good_url}),
            "bucketName",
        ),
        (
            json!({"bucketName": "ab", "storageUrl": good_url}),
            "bucketName",
        ),
        (json!({"storageUrl": good_url}), "bucketName"),
        (json!({"bucketName": "fine"}), "storageUrl"),
        (json!({"bucketName": "fine", "storageUrl": 7}), "storageUrl"),
        (
            json!({"bucketName": "fine", "storageUrl": good_url, "options": {"k": 1}}),
            "options.k",
        ),
        (
            json!({"bucketName": "fine", "storageUrl": good_url, "bogus": true}),
            "bogus",
        ),
    ] {
        expect_problem(app.post("/v1/buckets", &body).await, 400, Some(field)).await;
    }

    // Readable bodies that break a rule: 400 naming the field, and the detail says why.
    let secret = "do-not-echo-this-value";
    let too_many: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("aws_key_{i}"), json!("v")))
        .collect();
    let cases = [
        (json!({"storageUrl": ""}), "storageUrl", "empty"),
        (
            json!({"storageUrl": "not a url"}),
            "storageUrl",
            "invalid storage URL",
        ),
        (
            json!({"storageUrl": "ftp://host/dir"}),
            "storageUrl",
            "unsupported storage URL scheme 'ftp'",
        ),
        (
            json!({"storageUrl": "https://example.com/bucket"}),
            "storageUrl",
            "cannot hold a bucket",
        ),
        (
            json!({"storageUrl": "memory://"}),
            "storageUrl",
            "one process",
        ),
        (
            json!({"storageUrl": "s3:///"}),
            "storageUrl",
            "must name the bucket",
        ),
        (
            json!({"storageUrl": "file://host/dir"}),
            "storageUrl",
            "file:///",
        ),
        (
            json!({"storageUrl": format!("file://{}/sub", blocker.display())}),
            "storageUrl",
            "cannot be opened",
        ),
        (
            json!({"storageUrl": good_url, "options": {"fsync": "true"}}),
            "options.fsync",
            "takes no options",
        ),
        (
            json!({"storageUrl": "s3://bucket", "options": {"aws_endpointt": secret}}),
            "options.aws_endpointt",
            "unknown option",
        ),
        (
            json!({"storageUrl": "az://container", "options": {"aws_region": secret}}),
            "options.aws_region",
            "unknown option",
        ),
        (
            json!({"storageUrl": "gs://bucket", "options": {"azure_storage_account_name": secret}}),
            "options.azure_storage_account_name",
            "unknown option",
        ),
        // A credentials file on the server's host: refused before anything reads it.
        (
            json!({"storageUrl": "gs://bucket", "options": {
                "google_service_account": format!("/nonexistent/{secret}.json")}}),
            "options",
            "its own files",
        ),
        (
            json!({"storageUrl": "s3://bucket", "options": {
                "aws_allow_http": "maybe", "aws_access_key_id": "id",
                "aws_secret_access_key": secret}}),
            "options",
            "cannot be opened",
        ),
        (
            json!({"storageUrl": "s3://bucket", "options": too_many}),
            "options",
            "at most 64",
        ),
        (
            json!({"storageUrl": "s3://bucket", "options": {"": "x"}}),
            "options.",
            "keys are",
        ),
    ];
    for (mut body, field, says) in cases {
        body["bucketName"] = json!("fine");
        let problem = expect_problem(app.post("/v1/buckets", &body).await, 400, Some(field)).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{body}: {detail}");
        assert!(!problem.to_string().contains(secret), "{body}: {problem}");
    }
    assert_eq!(bucket_names(&app).await, ["default"], "nothing was stored");

    // Duplicates: 409, the existing bucket unchanged.
    let problem = expect_problem(
        app.post(
            "/v1/buckets",
            &json!({"bucketName": "default", "storageUrl": good_url}),
        )
        .await,
        409,
        None,
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("default"));
    create_bucket(&app, json!({"bucketName": "twice", "storageUrl": good_url})).await;
    expect_problem(
        app.post(
            "/v1/buckets",
            &json!({"bucketName": "twice", "storageUrl": "s3://elsewhere"}),
        )
        .await,
        409,
        None,
    )
    .await;
    let twice: Value = app.get("/v1/buckets/twice").await.json().await.unwrap();
    assert_eq!(twice["storageUrl"], good_url);

    // Not JSON.
    let response = app
        .http
        .post(app.url("/v1/buckets"))
        .bearer_auth(&app.key)
        .body("bucketName=x")
        .send()
        .await
        .unwrap();
    expect_problem(response, 415, None).await;
    // No key.
    let response = app
        .http
        .post(app.url("/v1/buckets"))
        .json(&json!({"bucketName": "nokey", "storageUrl": good_url}))
        .send()
        .await
        .unwrap();
    expect_problem(response, 401, None).await;
}

async fn unreachable_stores_are_refused_with_the_cause(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let s3 = S3Server::start(&["real-bucket"]);

    // Nothing listens on the endpoint.
    let port = servers::free_port();
    let mut options = s3.options();
    options.insert("aws_endpoint".into(), format!("http://127.0.0.1:{port}"));
    let started = Instant::now();
    let problem = expect_problem(
        app.post(
            "/v1/buckets",
            &json!({"bucketName": "down", "storageUrl": "s3://real-bucket", "options": options}),
        )
        .await,
        400,
        Some("storageUrl"),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "refused at once, not after retries: {:?}",
        started.elapsed()
    );
    let detail = problem["detail"].as_str().unwrap();
    eprintln!("nothing listening: {detail}");
    assert!(detail.contains("storage check failed"), "{detail}");
    assert!(detail.contains(&format!("127.0.0.1:{port}")), "{detail}");
    assert!(!problem.to_string().contains(S3_SECRET_KEY), "{problem}");

    // The server answers, but has no such bucket.
    let problem = expect_problem(
        app.post(
            "/v1/buckets",
            &json!({"bucketName": "missing", "storageUrl": "s3://no-such-bucket", "options": s3.options()}),
        )
        .await,
        400,
        Some("storageUrl"),
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    eprintln!("no such bucket: {detail}");
    assert!(detail.contains("does not exist"), "{detail}");

    // The server rejects the credentials.
    let mut wrong = s3.options();
    wrong.insert(
        "aws_secret_access_key".into(),
        "wrong-secret-0123456789".into(),
    );
    let problem = expect_problem(
        app.post(
            "/v1/buckets",
            &json!({"bucketName": "denied", "storageUrl": "s3://real-bucket", "options": wrong}),
        )
        .await,
        400,
        Some("storageUrl"),
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    eprintln!("wrong secret: {detail}");
    assert!(detail.contains("credentials were refused"), "{detail}");
    assert!(!detail.contains("wrong-secret-0123456789"), "{detail}");

    assert_eq!(bucket_names(&app).await, ["default"]);
    // And with everything right it is accepted.
    create_bucket(
        &app,
        json!({"bucketName": "reachable", "storageUrl": "s3://real-bucket", "options": s3.options()}),
    )
    .await;
}

async fn delete_bucket_rules(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let problem = expect_problem(app.delete("/v1/buckets/default").await, 409, None).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("default bucket"),
        "{problem}"
    );
    expect_problem(app.delete("/v1/buckets/missing").await, 404, None).await;
    expect_problem(app.delete("/v1/buckets/NOT_VALID").await, 404, None).await;
    let response = app
        .http
        .delete(app.url("/v1/buckets/default"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 401, None).await;

    // Two users: the message counts them; the bucket goes once both are gone.
    let dir = tempfile::tempdir_in(app.bucket_dir()).unwrap();
    create_bucket(
        &app,
        json!({"bucketName": "shared", "storageUrl": format!("file://{}", dir.path().display())}),
    )
    .await;
    let mut names = Vec::new();
    for home in ["/a", "/b"] {
        let user = app
            .create_user(json!({"description": "U", "homeDirectory": home, "bucketName": "shared"}))
            .await;
        names.push(user["username"].as_str().unwrap().to_owned());
    }
    let problem = expect_problem(app.delete("/v1/buckets/shared").await, 409, None).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("2 users"),
        "{problem}"
    );
    for name in &names {
        assert_eq!(app.delete(&format!("/v1/users/{name}")).await.status(), 204);
    }
    assert_eq!(app.delete("/v1/buckets/shared").await.status(), 204);
    assert!(dir.path().join("a").is_dir() && dir.path().join("b").is_dir());
}

async fn store_delete_bucket(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    store
        .ensure_default_bucket("file:///srv/default")
        .await
        .unwrap();
    let default = BucketName::default_bucket();
    let other = BucketName::parse("other").unwrap();
    assert_eq!(
        store.delete_bucket(&default).await.unwrap(),
        BucketDeletion::IsDefault
    );
    assert_eq!(
        store.delete_bucket(&other).await.unwrap(),
        BucketDeletion::NotFound
    );
    store
        .insert_bucket(&other, "file:///srv/other", &Default::default())
        .await
        .unwrap();
    assert_eq!(store.count_users_in_bucket(&other).await.unwrap(), 0);
    let user = Username::parse("ALICE001").unwrap();
    store
        .insert_user(&NewUser {
            username: user.clone(),
            description: "Alice".into(),
            home_directory: HomeDirectory::parse("/alice").unwrap(),
            bucket_name: other.clone(),
            permissions: Permissions::ReadWrite,
            password_hash: "x".into(),
            password_enabled: true,
            public_keys: vec![],
            max_sessions: 10,
            created_at: wharf_control::store::now(),
        })
        .await
        .unwrap();
    assert_eq!(store.count_users_in_bucket(&other).await.unwrap(), 1);
    assert_eq!(
        store.delete_bucket(&other).await.unwrap(),
        BucketDeletion::InUse { users: 1 }
    );
    assert!(store.delete_user(&user).await.unwrap());
    assert_eq!(
        store.delete_bucket(&other).await.unwrap(),
        BucketDeletion::Deleted
    );
    assert!(store.get_bucket(&other).await.unwrap().is_none());
    assert_eq!(store.list_buckets().await.unwrap().len(), 1);
    store.close().await;
}

#[test]
fn openapi_documents_bucket_registration() {
    let doc = serde_json::to_value(wharf_control::ControlPlane::openapi()).unwrap();
    let create = &doc["paths"]["/v1/buckets"]["post"];
    assert_eq!(create["operationId"], "createBucket");
    for status in ["201", "400", "409"] {
        assert!(create["responses"].get(status).is_some(), "{status}");
    }
    assert!(create["responses"].get("422").is_none(), "bad input is 400");
    let delete = &doc["paths"]["/v1/buckets/{bucketName}"]["delete"];
    assert_eq!(delete["operationId"], "deleteBucket");
    for status in ["204", "404", "409"] {
        assert!(delete["responses"].get(status).is_some(), "{status}");
    }
    let request = &doc["components"]["schemas"]["CreateBucketRequest"];
    assert_eq!(request["required"], json!(["bucketName", "storageUrl"]));
    assert!(request["properties"].get("options").is_some());
    let bucket = &doc["components"]["schemas"]["Bucket"];
    assert!(bucket["properties"].get("optionKeys").is_some());
    assert!(bucket["properties"].get("options").is_none());
}
