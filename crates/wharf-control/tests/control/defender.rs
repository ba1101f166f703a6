//! The defender: failed passwords ban the client address, then the user name, on every
//! replica sharing the database; bans are listed and lifted through `/v1/bans`.

use std::time::Duration;

use serde_json::{Value, json};
use wharf_control::{ControlPlane, ControlPlaneOptions, DefenderOptions};
use wharf_core::{LoginError, LoginRequest, LoginSecret, Protocol};

use crate::common::{GATEWAY_TOKEN, KEY, TestApp, TestDb, config, expect_problem};

crate::on_both_databases!(
    failed_passwords_ban_the_address_then_the_user_name,
    bans_hold_on_every_replica_and_grow,
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
