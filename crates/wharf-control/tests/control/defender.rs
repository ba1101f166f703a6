//! The defender: failed passwords ban the client address, then the user name, on every
//! replica sharing the database; bans are listed and lifted through `/v1/bans`.

use std::time::Duration;

use serde_json::{Value, json};
use wharf_control::{ControlPlane, ControlPlaneOptions, DefenderOptions};
use wharf_core::{LoginError, LoginRequest, LoginSecret, Protocol};

use crate::common::{GATEWAY_TOKEN, KEY, TestApp, TestDb, config, expect_problem};
use crate::receiver::{Receiver, create_webhook, fast_options};

crate::on_both_databases!(
    failed_passwords_ban_the_address_then_the_user_name,
    bans_hold_on_every_replica_and_grow,
    failed_logins_and_bans_are_events,
);

const PASSWORD: &str = "Correct-Horse-Battery-9!";

fn attempt(username: &str, password: &str, client_ip: &str) -> LoginRequest {
    LoginRequest {
        protocol: Protocol::Ftps,
        username: username.to_owned(),
        secret: LoginSecret::Password {
            password: password.to_owned(),
        },
        client_ip: client_ip.to_owned(),
        session_id: "test".into(),
        probe: false,
    }
}

fn with_key(username: &str, client_ip: &str) -> LoginRequest {
    LoginRequest {
        secret: LoginSecret::PublicKey {
            public_key: KEY.to_owned(),
        },
        ..attempt(username, "", client_ip)
    }
}

fn options(address_threshold: u32, user_threshold: u32) -> ControlPlaneOptions {
    ControlPlaneOptions {
        defender: DefenderOptions {
            address_threshold,
            user_threshold,
            ..DefenderOptions::default()
        },
        ..ControlPlaneOptions::default()
    }
}

async fn create_alice(app: &TestApp) {
    app.create_user(json!({
        "description": "Alice", "homeDirectory": "/", "username": "alice",
        "password": PASSWORD, "publicKeys": [KEY],
    }))
    .await;
}

async fn bans(app: &TestApp, query: &str) -> Vec<Value> {
    let page: Value = app
        .get(&format!("/v1/bans{query}"))
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

async fn failed_passwords_ban_the_address_then_the_user_name(db: TestDb) {
    let app = TestApp::spawn_with(db, options(4, 6)).await;
    create_alice(&app).await;
    let login = app.control.login_provider();
    let wrong = |user, ip| login.login(attempt(user, "wrong", ip));

    // 1 point per wrong password for a user that exists, 2 for one that does not: 4 ban.
    for _ in 0..2 {
        assert!(matches!(
            wrong("alice", "192.0.2.10").await,
            Err(LoginError::Denied)
        ));
    }
    assert!(matches!(
        wrong("ghost", "192.0.2.10").await,
        Err(LoginError::Denied)
    ));
    // Now even the right password, or a key, is refused without being checked.
    for request in [
        attempt("alice", PASSWORD, "192.0.2.10"),
        with_key("alice", "192.0.2.10"),
    ] {
        match login.login(request).await {
            Err(LoginError::AddressBanned { retry_after }) => {
                assert!(
                    retry_after <= Duration::from_secs(15 * 60),
                    "{retry_after:?}"
                );
                assert!(
                    retry_after > Duration::from_secs(14 * 60),
                    "{retry_after:?}"
                );
            }
            other => panic!("expected an address ban, got {other:?}"),
        }
    }
    // Gateways in other processes hear it as a 429 of its own type, with Retry-After.
    let response = app
        .gateway_login(
            Some(GATEWAY_TOKEN),
            &serde_json::to_value(attempt("alice", PASSWORD, "192.0.2.10")).unwrap(),
        )
        .await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((14 * 60..=15 * 60).contains(&retry_after), "{retry_after}");
    let problem = expect_problem(response, 429, None).await;
    assert_eq!(problem["type"], "https://wharf.dev/problems/address-banned");

    // Another address is not banned; loopback (the default safe list) is never counted.
    login
        .login(attempt("alice", PASSWORD, "192.0.2.11"))
        .await
        .unwrap();
    for _ in 0..10 {
        assert!(matches!(
            wrong("ghost", "127.0.0.1").await,
            Err(LoginError::Denied)
        ));
    }
    login
        .login(attempt("alice", PASSWORD, "127.0.0.1"))
        .await
        .unwrap();
    // An IPv6 client is counted and banned by its /64.
    for _ in 0..2 {
        let _ = wrong("ghost", "2001:db8:1:2::1").await;
    }
    assert!(matches!(
        login
            .login(attempt("alice", PASSWORD, "2001:db8:1:2::99"))
            .await,
        Err(LoginError::AddressBanned { .. })
    ));
    login
        .login(attempt("alice", PASSWORD, "2001:db8:1:3::1"))
        .await
        .unwrap();

    // A guess spread over many addresses bans password logins for the name (alice has 2
    // failures from 192.0.2.10 already); its keys still log in.
    for n in 1..=4 {
        let ip = format!("198.51.100.{n}");
        let _ = login.login(attempt("alice", "wrong", &ip)).await;
    }
    let fresh = "203.0.113.50";
    assert!(matches!(
        login.login(attempt("alice", PASSWORD, fresh)).await,
        Err(LoginError::UserBanned { .. })
    ));
    login.login(with_key("alice", fresh)).await.unwrap();
    let response = app
        .gateway_login(
            Some(GATEWAY_TOKEN),
            &serde_json::to_value(attempt("alice", PASSWORD, fresh)).unwrap(),
        )
        .await;
    let problem = expect_problem(response, 429, None).await;
    assert_eq!(problem["type"], "https://wharf.dev/problems/user-banned");

    // The operator sees every ban, by kind and target, and pages through them.
    let all = bans(&app, "").await;
    let targets: Vec<(&str, &str)> = all
        .iter()
        .map(|b| (b["kind"].as_str().unwrap(), b["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        targets,
        [
            ("address", "192.0.2.10/32"),
            ("address", "2001:db8:1:2::/64"),
            ("user", "alice"),
        ]
    );
    assert_eq!(all[0]["banCount"], 1);
    let users = bans(&app, "?kind=user").await;
    assert_eq!(users.len(), 1);
    let first: Value = app.get("/v1/bans?pageSize=2").await.json().await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let token = first["nextPageToken"].as_str().unwrap();
    let second: Value = app
        .get(&format!("/v1/bans?pageSize=2&pageToken={token}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"][0]["target"], "alice");
    assert!(second.get("nextPageToken").is_none());
    expect_problem(app.get("/v1/bans?kind=planet").await, 400, Some("kind")).await;

    // Lifting a ban lets the target in again at once, and forgets its failures.
    let lifted = app.delete("/v1/bans/users/alice").await;
    assert_eq!(lifted.status().as_u16(), 204);
    login
        .login(attempt("alice", PASSWORD, fresh))
        .await
        .unwrap();
    expect_problem(app.delete("/v1/bans/users/alice").await, 404, None).await;
    let lifted = app.delete("/v1/bans/addresses/2001:db8:1:2::5").await;
    assert_eq!(lifted.status().as_u16(), 204, "any address of the /64");
    login
        .login(attempt("alice", PASSWORD, "2001:db8:1:2::1"))
        .await
        .unwrap();
    expect_problem(
        app.delete("/v1/bans/addresses/not-an-address").await,
        400,
        Some("address"),
    )
    .await;
    assert_eq!(bans(&app, "").await.len(), 1);

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
        metrics.contains(r#"wharf_bans_total{kind="address"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"wharf_bans_total{kind="user"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"wharf_logins_total{protocol="ftps",result="banned"}"#),
        "{metrics}"
    );
}

async fn bans_hold_on_every_replica_and_grow(db: TestDb) {
    let short = ControlPlaneOptions {
        defender: DefenderOptions {
            address_threshold: 3,
            user_threshold: 0,
            ban_time: Duration::from_secs(1),
            ..DefenderOptions::default()
        },
        ..ControlPlaneOptions::default()
    };
    let app = TestApp::spawn_with(db, short.clone()).await;
    create_alice(&app).await;
    // A second control plane on the same database, as a second replica would be.
    let other = ControlPlane::open_with(config(&app.db, app.data_dir.path()), short)
        .await
        .unwrap();
    let (one, two) = (app.control.login_provider(), other.login_provider());
    let ip = "192.0.2.20";
    // Failures seen by either replica add up; the ban holds on both.
    let _ = one.login(attempt("alice", "wrong", ip)).await;
    let _ = two.login(attempt("alice", "wrong", ip)).await;
    let _ = one.login(attempt("alice", "wrong", ip)).await;
    for provider in [&one, &two] {
        assert!(matches!(
            provider.login(attempt("alice", PASSWORD, ip)).await,
            Err(LoginError::AddressBanned { .. })
        ));
    }
    let first = bans(&app, "").await;
    assert_eq!(first[0]["banCount"], 1);
    // It ends on its own; the next one in a row lasts twice as long.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    two.login(attempt("alice", PASSWORD, ip)).await.unwrap();
    for _ in 0..3 {
        let _ = two.login(attempt("alice", "wrong", ip)).await;
    }
    let second = bans(&app, "").await;
    assert_eq!(second[0]["banCount"], 2);
    let until =
        chrono::DateTime::parse_from_rfc3339(second[0]["bannedUntil"].as_str().unwrap()).unwrap();
    let left = until.signed_duration_since(chrono::Utc::now());
    assert!(left > chrono::Duration::milliseconds(1500), "{left}");
    assert!(left <= chrono::Duration::seconds(2), "{left}");
    other.shutdown().await;
}

/// Each refused login is a `user.login_failed` event with its reason (never the secret), and
/// each ban an `ip.banned` or `user.banned` event; webhooks subscribe to them like file events.
/// Key queries and refusals of what is already banned are not recorded.
async fn failed_logins_and_bans_are_events(db: TestDb) {
    let app = TestApp::spawn_with(
        db,
        ControlPlaneOptions {
            defender: options(3, 3).defender,
            ..fast_options()
        },
    )
    .await;
    create_alice(&app).await;
    app.create_user(json!({
        "description": "Bob", "homeDirectory": "/", "username": "bob",
        "password": PASSWORD, "publicKeys": [], "passwordEnabled": false,
    }))
    .await;
    let receiver = Receiver::start().await;
    create_webhook(
        &app,
        json!({"url": receiver.url("/security"),
               "events": ["user.login_failed", "ip.banned", "user.banned"]}),
    )
    .await;
    // A bucket or prefix filter matches file events only: this one gets none of these.
    create_webhook(
        &app,
        json!({"url": receiver.url("/files"),
               "events": ["user.login_failed", "ip.banned", "file.created"],
               "filter": {"prefix": "alice/"}}),
    )
    .await;
    let login = app.control.login_provider();

    let mut probe = with_key("alice", "192.0.2.20");
    probe.secret = LoginSecret::PublicKey {
        public_key: crate::common::OTHER_KEY.to_owned(),
    };
    probe.probe = true;
    assert!(login.login(probe.clone()).await.is_err());
    probe.probe = false;
    assert!(login.login(probe).await.is_err());
    let long_name = "x".repeat(300);
    for (user, password, ip) in [
        ("bob", PASSWORD, "192.0.2.20"),
        ("alice", "wrong", "192.0.2.21"),
        ("alice", "wrong", "192.0.2.22"),
        (long_name.as_str(), "wrong", "192.0.2.23"),
        // The third wrong password for alice bans the name, and makes 3 points for .23 (2
        // for a name no user has, 1 for alice): the address is banned too.
        ("alice", "wrong", "192.0.2.23"),
    ] {
        assert!(login.login(attempt(user, password, ip)).await.is_err());
    }
    // Refused as banned: not recorded again.
    for _ in 0..3 {
        assert!(matches!(
            login.login(attempt("alice", PASSWORD, "192.0.2.23")).await,
            Err(LoginError::AddressBanned { .. })
        ));
    }

    let page: Value = app
        .get("/v1/events?type=user.login_failed")
        .await
        .json()
        .await
        .unwrap();
    let reasons: Vec<(String, String, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let d = &e["data"];
            assert!(
                d.get("password").is_none() && d.get("bucketName").is_none(),
                "{e}"
            );
            (
                d["username"].as_str().unwrap().chars().take(8).collect(),
                d["reason"].as_str().unwrap().to_owned(),
                d["method"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Newest first.
    let expected = [
        ("alice", "wrong-password", "password"),
        ("xxxxxxxx", "unknown-user", "password"),
        ("alice", "wrong-password", "password"),
        ("alice", "wrong-password", "password"),
        ("bob", "password-login-disabled", "password"),
        ("alice", "key-not-authorized", "publickey"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(u, r, m)| (u.to_string(), r.to_string(), m.to_string()))
        .collect();
    assert_eq!(reasons, expected);
    let long = &page["items"][1]["data"];
    assert_eq!(long["username"].as_str().unwrap().len(), 128, "kept short");
    assert_eq!(long["clientIp"], "192.0.2.23");
    assert_eq!(long["protocol"], "ftps");
    let by_user: Value = app
        .get("/v1/events?username=bob")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_user["items"].as_array().unwrap().len(), 1);

    let bans: Value = app
        .get("/v1/events?type=ip.banned")
        .await
        .json()
        .await
        .unwrap();
    let bans = bans["items"].as_array().unwrap();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0]["data"]["address"], "192.0.2.23/32");
    assert_eq!(bans[0]["data"]["banCount"], 1);
    assert!(bans[0]["data"]["until"].is_string());
    let user_bans: Value = app
        .get("/v1/events?type=user.banned")
        .await
        .json()
        .await
        .unwrap();
    let user_bans = user_bans["items"].as_array().unwrap();
    assert_eq!(user_bans.len(), 1, "{user_bans:?}");
    assert_eq!(user_bans[0]["data"]["username"], "alice");
    assert_eq!(user_bans[0]["data"]["clientIp"], "192.0.2.23");

    // Delivered, signed like any event, as the same JSON /v1/events shows.
    let got = receiver.wait_for("/security", 8).await;
    let mut types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "ip.banned",
            "user.banned",
            "user.login_failed",
            "user.login_failed",
            "user.login_failed",
            "user.login_failed",
            "user.login_failed",
            "user.login_failed",
        ]
    );
    let event: wharf_core::Event = serde_json::from_value(got[0].json()).unwrap();
    assert!(matches!(
        event.data,
        wharf_core::EventPayload::LoginFailed(_)
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests_to("/security").len(), 8, "nothing more");
    assert!(receiver.requests_to("/files").is_empty());
}
