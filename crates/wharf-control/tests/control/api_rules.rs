//! Rules every user operation follows: reserved names are no home, a conflict names its field,
//! `lastConnectedAt` is always there, generated usernames avoid look-alikes, and the server
//! shows its FTPS certificate's fingerprint.

use serde_json::{Value, json};
use wharf_control::store::{NewUser, Store};
use wharf_core::{BucketName, HomeDirectory, Permissions, Username};

use crate::common::{TestApp, TestDb, expect_problem};

crate::on_both_databases!(
    reserved_names_are_no_home,
    a_home_stored_before_the_rule_still_lists_and_can_be_fixed,
    a_taken_name_is_a_409_naming_the_field,
    last_connected_at_is_null_until_the_first_login,
    generated_usernames_have_no_look_alikes,
    the_server_shows_the_ftps_certificate_fingerprint,
    bodies_must_be_json_objects,
);

async fn reserved_names_are_no_home(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.create_root_user("rita").await;
    for home in [
        "/.wharf-dir",
        "/.wharf-uploads",
        "/alice/.WHARF-DIR",
        "/.Wharf-Uploads/in",
    ] {
        let body = json!({"description": "X", "homeDirectory": home});
        let problem = expect_problem(
            app.post("/v1/users", &body).await,
            400,
            Some("homeDirectory"),
        )
        .await;
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("reserved"),
            "{problem}"
        );
        let response = app
            .patch("/v1/users/rita", &json!({"homeDirectory": home}))
            .await;
        expect_problem(response, 400, Some("homeDirectory")).await;
    }
    // Nothing was made in the bucket, and Rita kept her home.
    let entries: Vec<_> = std::fs::read_dir(app.bucket_dir())
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(entries.is_empty(), "{entries:?}");
    let rita: Value = app.get("/v1/users/rita").await.json().await.unwrap();
    assert_eq!(rita["homeDirectory"], "/");
    // Look-alikes of the reserved names are ordinary names.
    app.create_user(json!({"description": "Y", "homeDirectory": "/.wharf-dirs"}))
        .await;
}

async fn a_home_stored_before_the_rule_still_lists_and_can_be_fixed(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let store = Store::connect(&app.db.url).await.unwrap();
    store
        .insert_user(&NewUser {
            username: Username::parse("oldie").unwrap(),
            description: "From before the rule".into(),
            home_directory: HomeDirectory::parse_existing("/.wharf-dir").unwrap(),
            bucket_name: BucketName::default_bucket(),
            permissions: Permissions::ReadWrite,
            password_hash: "$argon2id$fake".into(),
            password_enabled: true,
            public_keys: vec![],
            max_sessions: 10,
            created_at: wharf_control::store::now(),
        })
        .await
        .unwrap();
    store.close().await;
    let list = app.get("/v1/users").await;
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["items"][0]["homeDirectory"], "/.wharf-dir");
    let fixed: Value = app
        .patch("/v1/users/oldie", &json!({"homeDirectory": "/oldie"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fixed["homeDirectory"], "/oldie");
}

async fn a_taken_name_is_a_409_naming_the_field(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.create_root_user("sam").await;
    // The objects API's own name in events is not for partners, in any case.
    for reserved in ["wharf-api", "Wharf-API"] {
        let body = json!({"description": "x", "homeDirectory": "/x", "username": reserved});
        let problem =
            expect_problem(app.post("/v1/users", &body).await, 400, Some("username")).await;
        assert!(problem.to_string().contains("reserved"), "{problem}");
    }
    let body = json!({"description": "Again", "homeDirectory": "/", "username": "sam"});
    let problem = expect_problem(app.post("/v1/users", &body).await, 409, Some("username")).await;
    assert_eq!(problem["type"], "https://wharf.dev/problems/conflict");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("'sam'"),
        "{problem}"
    );

    let bucket = json!({
        "bucketName": "default",
        "storageUrl": format!("file://{}", app.bucket_dir().display()),
    });
    expect_problem(
        app.post("/v1/buckets", &bucket).await,
        409,
        Some("bucketName"),
    )
    .await;
}

async fn last_connected_at_is_null_until_the_first_login(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = app.create_root_user("tess").await;
    let fetched: Value = app.get("/v1/users/tess").await.json().await.unwrap();
    let list: Value = app.get("/v1/users").await.json().await.unwrap();
    for user in [&created, &fetched, &list["items"][0]] {
        assert!(
            user.get("lastConnectedAt").is_some_and(Value::is_null),
            "{user}"
        );
    }
    app.control
        .login_provider()
        .login(wharf_core::LoginRequest {
            protocol: wharf_core::Protocol::Ftps,
            username: "tess".into(),
            secret: wharf_core::LoginSecret::Password {
                password: created["password"].as_str().unwrap().into(),
            },
            client_ip: "192.0.2.1".into(),
            session_id: "s".into(),
            probe: false,
        })
        .await
        .unwrap();
    let fetched: Value = app.get("/v1/users/tess").await.json().await.unwrap();
    assert!(fetched["lastConnectedAt"].is_string(), "{fetched}");
}

async fn generated_usernames_have_no_look_alikes(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for _ in 0..20 {
        let created = app
            .create_user(json!({"description": "Generated", "homeDirectory": "/"}))
            .await;
        let username = created["username"].as_str().unwrap();
        assert_eq!(username.len(), 8, "{username}");
        assert!(
            username
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
            "{username}"
        );
        assert!(
            !username.contains(['0', 'O', '1', 'I', '2', 'Z', '5', 'S', '8', 'B']),
            "{username}"
        );
    }
}

/// A certificate made with `openssl req -x509 -newkey ec …`, and the fingerprint
/// `openssl x509 -noout -fingerprint -sha256` prints for it.
const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIUMp3n/pSC7pwgJh7XQVttKhSDhl0wCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMdGVzdC5leGFtcGxlMCAXDTI2MTIwNzA2MDQwNVoYDzIxMjYx
MTEzMDYwNDA1WjAXMRUwEwYDVQQDDAx0ZXN0LmV4YW1wbGUwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAATToNmKBGiL5JfhLoqcmLSuCDjUmK2+yNRtCS2HluBs4o5l
zqbKDkjPC7cgqpzmzdeA6QiEERWcr88HRpKnLxqyo1MwUTAdBgNVHQ4EFgQUR83D
ZONItuwjEV0Qxbb/QTPPewYwHwYDVR0jBBgwFoAUR83DZONItuwjEV0Qxbb/QTPP
ewYwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiBRRv5Ud54X2J/8
eQulFCI1Yh27haRsK4hBBOwPYyvDUgIhAJ1ldwoSOaW9xQ0O30xZv/+epbdfbHYs
Fn4zmAT0vC5r
-----END CERTIFICATE-----
";
const OPENSSL_FINGERPRINT: &str = "CA:24:26:D2:7C:62:0A:B4:68:84:60:31:D5:51:57:79:19:B4:98:C3:0C:0C:E1:DB:6D:2B:10:4D:E2:ED:99:26";

async fn the_server_shows_the_ftps_certificate_fingerprint(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // No certificate where the configuration points: the field is there, null.
    let server: Value = app.get("/v1/server").await.json().await.unwrap();
    assert!(
        server
            .get("ftpsCertificateSha256")
            .is_some_and(Value::is_null),
        "{server}"
    );
    let dir = app.data_dir.path().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ftps-cert.pem"), CERTIFICATE).unwrap();
    let server: Value = app.get("/v1/server").await.json().await.unwrap();
    assert_eq!(server["ftpsCertificateSha256"], OPENSSL_FINGERPRINT);
    assert_eq!(
        wharf_control::certificate_sha256(CERTIFICATE.as_bytes()).as_deref(),
        Some(OPENSSL_FINGERPRINT)
    );
}

/// Every request body is a JSON object: an array (which serde would read field by field) or a
/// scalar is a 400 that says so, and changes nothing.
async fn bodies_must_be_json_objects(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.create_root_user("olga").await;
    for body in ["[null,null]", "[]", "null", "42", "\"x\""] {
        let response = app
            .http
            .patch(app.url("/v1/users/olga"))
            .bearer_auth(&app.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, None).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("JSON object"),
            "{body}: {problem}"
        );
    }
    let response = app
        .http
        .post(app.url("/v1/users"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(r#"["a", "/"]"#)
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, None).await;
}
