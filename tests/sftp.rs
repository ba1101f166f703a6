//! End to end: the real `wharf serve` binary, users made through the CLI and the API, and real
//! SFTP clients (OpenSSH `sftp`, `scp`, `ssh`, and russh + russh-sftp).

mod common;

use std::time::Duration;

use common::raw::*;
use common::*;
use reqwest::Method;
use russh_sftp::protocol::OpenFlags;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn cli_user_and_openssh_round_trip() {
    let wharf = Wharf::start().await;
    let out = wharf
        .cli(&[
            "users",
            "create",
            "--description",
            "Trading partner Alice",
            "--home",
            "/alice",
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let created: Value = serde_json::from_slice(&out.stdout).expect("CLI prints JSON");
    let user = created["username"].as_str().unwrap().to_owned();
    let password = created["password"].as_str().unwrap().to_owned();
    assert!(
        user.len() == 8
            && user
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    );
    assert!(password.len() >= 16);
    assert_eq!(created["homeDirectory"], "/alice");

    let work = tempfile::tempdir().unwrap();
    let small = random_bytes(1024);
    let big = random_bytes(5 * 1024 * 1024 + 123);
    write_file(work.path(), "small.bin", &small);
    write_file(work.path(), "big.bin", &big);
    let batch = "\
put small.bin
put big.bin
ls -l
mkdir in
rename big.bin in/big.bin
get in/big.bin big.back
get small.bin small.back
rm small.bin
ls -l in
pwd
";
    let out = sftp_batch(
        wharf.sftp_port,
        &user,
        Auth::Password(&password),
        work.path(),
        batch,
    )
    .await;
    assert!(out.status.success(), "{}\n{}", text(&out), wharf.log_text());
    assert_eq!(sha256(&read_file(work.path(), "big.back")), sha256(&big));
    assert_eq!(read_file(work.path(), "small.back"), small);
    let listing = stdout(&out);
    // ls -l shows sizes and regular-file permission bits.
    assert!(
        listing.contains(&format!("{} ", big.len())) && listing.contains("-rw-r--r--"),
        "{listing}"
    );
    assert!(listing.contains("Remote working directory: /"), "{listing}");

    // The files are in Alice's home inside the bucket, and nothing else is.
    let home = wharf.bucket_dir().join("alice");
    assert_eq!(std::fs::read(home.join("in/big.bin")).unwrap(), big);
    assert!(!home.join("small.bin").exists());
    assert!(!home.join("big.bin").exists());
}

#[tokio::test]
async fn cli_prints_credentials_and_manages_users() {
    let wharf = Wharf::start().await;
    let out = wharf
        .cli(&[
            "users",
            "create",
            "--description",
            "Trading partner Bob",
            "--home",
            "/bob",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    let field = |name: &str| -> String {
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in:\n{printed}"))
    };
    let user = field("Username:");
    let password = field("Password:");
    assert!(
        printed.contains(&format!("sftp -P {} {user}@localhost", wharf.sftp_port)),
        "{printed}"
    );
    assert!(printed.contains("ssh-ed25519 SHA256:"), "{printed}");

    // The password printed works.
    let sftp = rust_sftp(wharf.sftp_port, &user, &password)
        .await
        .expect("login");
    assert_eq!(sftp.canonicalize(".").await.unwrap(), "/");

    let out = wharf.cli(&["users", "list"]).await;
    assert!(
        out.status.success() && stdout(&out).contains(&user),
        "{}",
        text(&out)
    );

    let out = wharf
        .cli(&[
            "users",
            "update",
            &user,
            "--description",
            "Bob (read only)",
            "--permissions",
            "read-only",
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let updated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(updated["permissions"], "read-only");
    assert_eq!(updated["description"], "Bob (read only)");

    let out = wharf.cli(&["users", "get", &user, "--json"]).await;
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(got["lastConnectedAt"].is_string(), "login recorded: {got}");

    let out = wharf
        .cli(&["users", "reset-password", &user, "--json"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let new_password = serde_json::from_slice::<Value>(&out.stdout).unwrap()["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        rust_sftp(wharf.sftp_port, &user, &password).await.is_err(),
        "old password still works"
    );
    assert!(
        rust_sftp(wharf.sftp_port, &user, &new_password)
            .await
            .is_ok()
    );

    let out = wharf.cli(&["users", "delete", &user]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = wharf.cli(&["users", "get", &user]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        text(&out)
    );
    assert!(
        rust_sftp(wharf.sftp_port, &user, &new_password)
            .await
            .is_err()
    );

    // Bad input is refused by the API with the field named, and the CLI says so.
    let out = wharf
        .cli(&["users", "create", "--description", "", "--home", "/x"])
        .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("description"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn users_are_jailed_to_their_homes() {
    let wharf = Wharf::start().await;
    let (alice, alice_pw) = wharf.create_user("/alice", json!({})).await;
    let (bob, bob_pw) = wharf.create_user("/bob", json!({})).await;
    let (root, root_pw) = wharf.create_user("/", json!({})).await;
    let work = tempfile::tempdir().unwrap();
    write_file(work.path(), "secret.txt", b"alice's secret");

    let out = sftp_batch(
        wharf.sftp_port,
        &alice,
        Auth::Password(&alice_pw),
        work.path(),
        "put secret.txt\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));

    // Bob sees only his (empty) home and cannot reach Alice's file by any path.
    for path in [
        "/../alice/secret.txt",
        "../alice/secret.txt",
        "/alice/secret.txt",
        "../../alice/secret.txt",
    ] {
        let out = sftp_batch(
            wharf.sftp_port,
            &bob,
            Auth::Password(&bob_pw),
            work.path(),
            &format!("get {path} stolen.txt\n"),
        )
        .await;
        assert!(!out.status.success(), "bob got {path}: {}", text(&out));
        assert!(!work.path().join("stolen.txt").exists());
    }
    let out = sftp_batch(
        wharf.sftp_port,
        &bob,
        Auth::Password(&bob_pw),
        work.path(),
        "cd ..\npwd\nls -la /\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("Remote working directory: /"));
    assert!(!stdout(&out).contains("secret"), "{}", text(&out));

    // Bob cannot write into Alice's home either: `..` resolves inside his own home.
    let out = sftp_batch(
        wharf.sftp_port,
        &bob,
        Auth::Password(&bob_pw),
        work.path(),
        "put secret.txt ../alice/planted.txt\n",
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!wharf.bucket_dir().join("alice/planted.txt").exists());
    let out = sftp_batch(
        wharf.sftp_port,
        &bob,
        Auth::Password(&bob_pw),
        work.path(),
        "put secret.txt ../../planted.txt\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!wharf.bucket_dir().join("planted.txt").exists());
    assert!(
        wharf.bucket_dir().join("bob/planted.txt").exists(),
        "'..' resolves inside bob's home"
    );

    // The root user sees every home.
    let out = sftp_batch(
        wharf.sftp_port,
        &root,
        Auth::Password(&root_pw),
        work.path(),
        "ls /\nls /alice\nget /alice/secret.txt root-copy.txt\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let listing = stdout(&out);
    assert!(
        listing.contains("alice") && listing.contains("bob"),
        "{listing}"
    );
    assert_eq!(read_file(work.path(), "root-copy.txt"), b"alice's secret");
}

#[tokio::test]
async fn hostile_paths_fail_cleanly() {
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/jail", json!({})).await;
    let (other, other_pw) = wharf.create_user("/other", json!({})).await;
    let other_sftp = rust_sftp(wharf.sftp_port, &other, &other_pw).await.unwrap();
    other_sftp
        .put("/target.txt", b"do not touch")
        .await
        .unwrap();

    let sftp = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    // Traversal collapses at the home root.
    for path in ["..", "/../..", "../../..", "/a/../../.."] {
        assert_eq!(sftp.canonicalize(path).await.unwrap(), "/", "{path}");
    }
    for path in [
        "/../other/target.txt",
        "../../other/target.txt",
        "%2e%2e/other/target.txt",
        "..%2fother%2ftarget.txt",
        "..\\other\\target.txt",
        "/..\\..\\other/target.txt",
        "ok\0/../../other/target.txt",
    ] {
        assert!(sftp.read(path).await.is_err(), "read {path:?} succeeded");
        assert!(
            sftp.metadata(path).await.is_err(),
            "stat {path:?} succeeded"
        );
    }
    // Names that are illegal or absurd are refused, not stored.
    let long_name = "n".repeat(300);
    let long_path = "/d".repeat(3000);
    for path in [
        "a\0b",
        "tab\there",
        "back\\slash",
        long_name.as_str(),
        long_path.as_str(),
        "/.wharf-dir",
    ] {
        assert!(
            sftp.put(path, b"x").await.is_err(),
            "write {:?} succeeded",
            &path[..path.len().min(40)]
        );
    }
    // Percent signs are just characters: a file called %2e%2e stays inside the home.
    sftp.put("/%2e%2e", b"literal").await.unwrap();
    assert_eq!(sftp.read("/%2e%2e").await.unwrap(), b"literal");
    assert_eq!(
        other_sftp.read("/target.txt").await.unwrap(),
        b"do not touch"
    );
    // And the session is still healthy after all that.
    sftp.put("/fine.txt", b"fine").await.unwrap();
    assert_eq!(sftp.read("/fine.txt").await.unwrap(), b"fine");
    let names: Vec<String> = sftp
        .read_dir("/")
        .await
        .unwrap()
        .map(|e| e.file_name())
        .collect();
    assert!(
        names.contains(&"fine.txt".to_owned()) && names.contains(&"%2e%2e".to_owned()),
        "{names:?}"
    );
}

#[tokio::test]
async fn upload_is_visible_only_after_close_and_a_dropped_upload_leaves_nothing() {
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/drop", json!({})).await;
    let writer = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    let reader = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();

    writer.put("/report.csv", b"version 1").await.unwrap();
    let mut file = writer
        .open_with_flags(
            "/report.csv",
            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
        )
        .await
        .unwrap();
    let data = random_bytes(3 * 1024 * 1024);
    file.write_all(&data).await.unwrap();
    file.flush().await.unwrap();
    // Mid-upload, readers still see the previous version.
    assert_eq!(reader.read("/report.csv").await.unwrap(), b"version 1");
    file.shutdown().await.unwrap();
    drop(file);
    // After close, the new version.
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = reader.read("/report.csv").await.unwrap();
        if seen.len() == data.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sha256(&seen), sha256(&data));

    // A connection that drops mid-upload leaves the previous version and no staging files.
    {
        let dropper = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
        let mut file = dropper
            .open_with_flags(
                "/report.csv",
                OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
            )
            .await
            .unwrap();
        file.write_all(&random_bytes(1024 * 1024)).await.unwrap();
        file.flush().await.unwrap();
        std::mem::forget(file); // no CLOSE is ever sent
        dropper.disconnect().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sha256(&reader.read("/report.csv").await.unwrap()),
        sha256(&data)
    );
    let leftovers = staging_files(&wharf.bucket_dir());
    assert!(
        leftovers.is_empty(),
        "staging files left behind: {leftovers:?}"
    );
}

#[tokio::test]
async fn public_key_login_with_openssh_and_russh() {
    let wharf = Wharf::start().await;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "partner_key");
    let (stranger_key, _) = keygen(keys.path(), "stranger_key");
    let (user, _) = wharf
        .create_user("/keyed", json!({"publicKeys": [public]}))
        .await;
    let work = tempfile::tempdir().unwrap();
    write_file(work.path(), "k.txt", b"key auth works");
    let out = sftp_batch(
        wharf.sftp_port,
        &user,
        Auth::Key(&key),
        work.path(),
        "put k.txt\nget k.txt back.txt\n",
    )
    .await;
    assert!(out.status.success(), "{}\n{}", text(&out), wharf.log_text());
    assert_eq!(read_file(work.path(), "back.txt"), b"key auth works");

    let out = sftp_batch(
        wharf.sftp_port,
        &user,
        Auth::Key(&stranger_key),
        work.path(),
        "ls\n",
    )
    .await;
    assert!(!out.status.success(), "a key not on file was accepted");

    assert!(rust_key_login(wharf.sftp_port, &user, &key).await);
    assert!(!rust_key_login(wharf.sftp_port, &user, &stranger_key).await);

    // Removing the key locks it out at the next login.
    let (status, _) = wharf
        .api(
            Method::PATCH,
            &format!("/v1/users/{user}"),
            Some(json!({"publicKeys": []})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(!rust_key_login(wharf.sftp_port, &user, &key).await);
}

#[tokio::test]
async fn wrong_credentials_and_disabled_users_are_refused() {
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/carol", json!({})).await;
    let work = tempfile::tempdir().unwrap();
    let out = sftp_batch(
        wharf.sftp_port,
        &user,
        Auth::Password("wrong-password-123"),
        work.path(),
        "ls\n",
    )
    .await;
    assert!(!out.status.success());
    assert!(rust_sftp(wharf.sftp_port, "NOSUCHUSER", &pw).await.is_err());
    assert!(rust_sftp(wharf.sftp_port, &user, "").await.is_err());

    let (status, _) = wharf
        .api(
            Method::PATCH,
            &format!("/v1/users/{user}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        rust_sftp(wharf.sftp_port, &user, &pw).await.is_err(),
        "disabled user logged in"
    );
    let (status, _) = wharf
        .api(
            Method::PATCH,
            &format!("/v1/users/{user}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(rust_sftp(wharf.sftp_port, &user, &pw).await.is_ok());
}

#[tokio::test]
async fn read_only_and_write_only_permissions() {
    let wharf = Wharf::start().await;
    let (root, root_pw) = wharf.create_user("/", json!({})).await;
    let (reader, reader_pw) = wharf
        .create_user("/shared", json!({"permissions": "read-only"}))
        .await;
    let (dropbox, dropbox_pw) = wharf
        .create_user("/inbox", json!({"permissions": "write-only"}))
        .await;
    let admin = rust_sftp(wharf.sftp_port, &root, &root_pw).await.unwrap();
    admin.put("/shared/catalog.txt", b"prices").await.unwrap();

    let ro = rust_sftp(wharf.sftp_port, &reader, &reader_pw)
        .await
        .unwrap();
    assert_eq!(ro.read("/catalog.txt").await.unwrap(), b"prices");
    assert!(ro.put("/new.txt", b"x").await.is_err());
    assert!(ro.remove_file("/catalog.txt").await.is_err());
    assert!(ro.create_dir("/d").await.is_err());
    assert!(ro.rename("/catalog.txt", "/renamed.txt").await.is_err());
    assert_eq!(admin.read("/shared/catalog.txt").await.unwrap(), b"prices");

    let wo = rust_sftp(wharf.sftp_port, &dropbox, &dropbox_pw)
        .await
        .unwrap();
    wo.put("/order.edi", b"ISA*00").await.unwrap();
    let names: Vec<String> = wo
        .read_dir("/")
        .await
        .unwrap()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["order.edi"]);
    assert!(
        wo.read("/order.edi").await.is_err(),
        "write-only user downloaded"
    );
    assert!(
        wo.remove_file("/order.edi").await.is_err(),
        "write-only user deleted"
    );
    wo.rename("/order.edi", "/order-1.edi").await.unwrap();
    assert_eq!(admin.read("/inbox/order-1.edi").await.unwrap(), b"ISA*00");

    // OpenSSH shows the permission bits that say so.
    let work = tempfile::tempdir().unwrap();
    let out = sftp_batch(
        wharf.sftp_port,
        &reader,
        Auth::Password(&reader_pw),
        work.path(),
        "ls -l\n",
    )
    .await;
    assert!(stdout(&out).contains("-r--r--r--"), "{}", text(&out));
}

#[tokio::test]
async fn directories_rename_and_scp() {
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/partners/acme/inbound", json!({})).await;
    assert!(
        wharf.bucket_dir().join("partners/acme/inbound").is_dir(),
        "nested home created"
    );
    let work = tempfile::tempdir().unwrap();
    write_file(work.path(), "a.txt", b"A");
    let out = sftp_batch(
        wharf.sftp_port,
        &user,
        Auth::Password(&pw),
        work.path(),
        "mkdir empty\nmkdir full\nput a.txt full/a.txt\nrename full moved\nls -l\nls moved\n-rmdir moved\nrmdir empty\nls\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let listing = stdout(&out);
    assert!(listing.contains("drwxr-xr-x"), "{listing}");
    assert!(
        listing.contains("moved/a.txt") || listing.contains("a.txt"),
        "{listing}"
    );
    let home = wharf.bucket_dir().join("partners/acme/inbound");
    assert_eq!(std::fs::read(home.join("moved/a.txt")).unwrap(), b"A");
    assert!(!home.join("full").exists());
    assert!(!home.join("empty").exists(), "rmdir left the directory");

    // An empty directory persists and is listed.
    let sftp = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    sftp.create_dir("/keep").await.unwrap();
    let names: Vec<String> = sftp
        .read_dir("/")
        .await
        .unwrap()
        .map(|e| e.file_name())
        .collect();
    assert!(names.contains(&"keep".to_owned()), "{names:?}");
    assert!(sftp.create_dir("/no/such/parent").await.is_err());

    // scp (the SFTP protocol in current OpenSSH) both ways.
    let payload = random_bytes(300 * 1024);
    write_file(work.path(), "scp.bin", &payload);
    let target = format!("{user}@127.0.0.1:/keep/scp.bin");
    let out = scp(
        wharf.sftp_port,
        Auth::Password(&pw),
        work.path(),
        &["scp.bin".into(), target.clone()],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = scp(
        wharf.sftp_port,
        Auth::Password(&pw),
        work.path(),
        &[target, "scp.back".into()],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read_file(work.path(), "scp.back"), payload);
}

#[tokio::test]
async fn shell_and_exec_are_refused_with_a_message() {
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/dave", json!({})).await;
    let work = tempfile::tempdir().unwrap();
    let out = ssh(
        wharf.sftp_port,
        &user,
        Auth::Password(&pw),
        work.path(),
        &["ls", "/"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SFTP only"),
        "{}",
        text(&out)
    );
    // Legacy scp (exec "scp -t") is refused the same way, and the server is unharmed.
    write_file(work.path(), "x.txt", b"x");
    let out = scp(
        wharf.sftp_port,
        Auth::Password(&pw),
        work.path(),
        &[
            "-O".into(),
            "x.txt".into(),
            format!("{user}@127.0.0.1:/x.txt"),
        ],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(rust_sftp(wharf.sftp_port, &user, &pw).await.is_ok());
}

#[tokio::test]
async fn host_keys_are_generated_once_and_stable() {
    let mut wharf = Wharf::start_with(StartOptions {
        shared_host_keys: false,
        ..Default::default()
    })
    .await;
    let (_, info) = wharf.api(Method::GET, "/v1/server", None).await;
    let fingerprints = info["hostKeys"].clone();
    assert_eq!(fingerprints.as_array().map(Vec::len), Some(2), "{info}");
    let scanned = keyscan(wharf.sftp_port).await;
    let ed25519 = fingerprints[0]["fingerprint"].as_str().unwrap();
    assert!(
        scanned.contains(ed25519),
        "server presents {scanned}, API says {ed25519}"
    );

    wharf.stop().await;
    let data_dir = std::mem::replace(&mut wharf.data_dir, tempfile::tempdir().unwrap());
    let restarted = Wharf::start_with(StartOptions {
        shared_host_keys: false,
        data_dir: Some(data_dir),
        ..Default::default()
    })
    .await;
    let (_, info) = restarted.api(Method::GET, "/v1/server", None).await;
    assert_eq!(
        info["hostKeys"], fingerprints,
        "fingerprints changed across restart"
    );
    assert!(keyscan(restarted.sftp_port).await.contains(ed25519));
}

async fn keyscan(port: u16) -> String {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ssh-keyscan -t ed25519 -p {port} 127.0.0.1 2>/dev/null | ssh-keygen -lf -"
        ))
        .output()
        .await
        .expect("ssh-keyscan");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn postgres_backed_serve_round_trip() {
    let wharf = Wharf::start_with(StartOptions {
        db: Db::Postgres,
        ..Default::default()
    })
    .await;
    let (user, pw) = wharf.create_user("/pg", json!({})).await;
    let sftp = rust_sftp(wharf.sftp_port, &user, &pw)
        .await
        .expect("login on PostgreSQL");
    let data = random_bytes(200_000);
    sftp.put("/on-postgres.bin", &data).await.unwrap();
    assert_eq!(sftp.read("/on-postgres.bin").await.unwrap(), data);
    let (_, got) = wharf
        .api(Method::GET, &format!("/v1/users/{user}"), None)
        .await;
    assert!(got["lastConnectedAt"].is_string(), "{got}");
}

#[tokio::test]
async fn separate_control_plane_and_sftp_gateway() {
    let data = tempfile::tempdir().unwrap();
    let cp_log = data.path().join("cp.log");
    let (_cp, api_port) = spawn_control_plane(data.path(), &cp_log).await;

    let gw_dir = tempfile::tempdir().unwrap();
    let gw_log = gw_dir.path().join("gw.log");
    let (_gw, ports) = spawn_on_free_ports("127.0.0.1", 1, &gw_log, |ports| {
        let mut gw = tokio::process::Command::new(wharf_bin());
        gw.arg("sftp-gateway")
            .arg("--data-dir")
            .arg(gw_dir.path())
            .arg("--host-key-dir")
            .arg(shared_host_keys())
            .arg("--sftp-addr")
            .arg(format!("127.0.0.1:{}", ports[0]))
            .arg("--control-plane-url")
            .arg(format!("http://127.0.0.1:{api_port}"))
            .env("WHARF_GATEWAY_TOKEN", GATEWAY_TOKEN);
        gw
    })
    .await;
    let sftp_port = ports[0];

    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("http://127.0.0.1:{api_port}/v1/users"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"description": "via gateway", "homeDirectory": "/gw"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = created["username"].as_str().unwrap();
    let pw = created["password"].as_str().unwrap();
    let sftp = rust_sftp(sftp_port, user, pw).await.unwrap_or_else(|e| {
        panic!(
            "login through the gateway failed: {e}\n{}",
            std::fs::read_to_string(&gw_log).unwrap_or_default()
        )
    });
    sftp.put("/through-gateway.txt", b"stateless")
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(data.path().join("buckets/gw/through-gateway.txt")).unwrap(),
        b"stateless"
    );
    assert!(rust_sftp(sftp_port, user, "wrong").await.is_err());

    // The gateway reported the upload to the control plane (two steps over HTTP).
    let events: Value = http
        .get(format!(
            "http://127.0.0.1:{api_port}/v1/events?type=file.created&username={user}"
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    assert_eq!(items[0]["data"]["key"], "gw/through-gateway.txt");
    assert_eq!(items[0]["data"]["size"], 9);
    assert_eq!(items[0]["data"]["sha256"], sha256(b"stateless"));
    assert_eq!(items[0]["data"]["protocol"], "sftp");

    // The login endpoint refuses anyone without the gateway token.
    let resp = http
        .post(format!("http://127.0.0.1:{api_port}/internal/v1/login"))
        .bearer_auth("not-the-token")
        .json(&json!({"protocol": "sftp", "username": user, "secret": {"type": "password", "password": pw}, "clientIp": "127.0.0.1", "sessionId": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn malformed_sftp_packets_get_errors_not_crashes() {
    const BAD_MESSAGE: u32 = 5;
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/fuzz", json!({})).await;

    let mut raw = raw_sftp(wharf.sftp_port, &user, &pw).await;
    // A request before INIT is refused with the request id echoed.
    raw.stream
        .write_all(&packet(17, &[0, 0, 0, 9, 0, 0, 0, 1, b'/']))
        .await
        .unwrap();
    let (kind, body) = read_packet(&mut raw.stream).await.expect("reply");
    assert_eq!(kind, SSH_FXP_STATUS);
    assert_eq!(&body[..4], &[0, 0, 0, 9]);
    assert_eq!(
        u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
        BAD_MESSAGE
    );

    raw.stream
        .write_all(&packet(SSH_FXP_INIT, &[0, 0, 0, 3]))
        .await
        .unwrap();
    let (kind, _) = read_packet(&mut raw.stream).await.expect("version");
    assert_eq!(kind, SSH_FXP_VERSION);

    // Unknown packet type, then a truncated OPEN: each gets BAD_MESSAGE, the session goes on.
    for (kind, body) in [
        (250u8, vec![0, 0, 0, 7]),
        (SSH_FXP_OPEN, vec![0, 0, 0, 8, 0, 0, 0, 200, b'x']),
        (
            SSH_FXP_OPEN,
            vec![0, 0, 0, 9, 0, 0, 0, 2, 0xff, 0xfe, 0, 0, 0, 1, 0, 0, 0, 0],
        ),
    ] {
        raw.stream.write_all(&packet(kind, &body)).await.unwrap();
        let (reply, rbody) = read_packet(&mut raw.stream).await.expect("reply");
        assert_eq!(reply, SSH_FXP_STATUS, "type {kind}");
        assert_eq!(&rbody[..4], &body[..4], "request id echoed");
        assert_ne!(
            u32::from_be_bytes([rbody[4], rbody[5], rbody[6], rbody[7]]),
            0,
            "not OK"
        );
    }

    // An absurd length cannot be resynchronised: the server ends the channel.
    raw.stream
        .write_all(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3])
        .await
        .unwrap();
    assert!(
        read_packet(&mut raw.stream).await.is_none(),
        "channel should end"
    );

    // The server is unharmed.
    let sftp = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    sftp.put("/after.txt", b"still fine").await.unwrap();
    assert_eq!(sftp.read("/after.txt").await.unwrap(), b"still fine");
}

/// An SFTP string: length, then the bytes.
/// Requests on one handle sent all at once, mixing small writes (which the server may answer
/// as they arrive) with large ones (which go to the handle's worker): every reply arrives,
/// FSTAT sees every write before it, and the file is the writes in order.
#[tokio::test]
async fn pipelined_requests_on_one_handle_keep_their_order() {
    // Sizes around the server's 64 KiB limit for answering a write at once.
    let sizes = [
        100_000, 4_096, 1, 200_000, 65_536, 65_537, 3_000, 250_000, 10, 70_000,
    ];
    pipelined_writes_then_fstat_and_close(&sizes, 0).await;
}

/// More requests in one burst than the server keeps in progress (128): READs on one handle
/// take the permits, so the writes on another handle behind them wait in the backlog, and must
/// still reach the upload in order (a write out of order fails the upload).
#[tokio::test]
async fn a_burst_beyond_the_in_flight_limit_keeps_its_order() {
    let sizes: Vec<usize> = (0..150).flat_map(|i| [100, 70_000, 7, i]).collect();
    pipelined_writes_then_fstat_and_close(&sizes, 400).await;
}

/// A client that keeps sending READs and never reads a reply: the replies fill its window, the
/// server goes on reading (it must, to see window adjustments) and queues the requests, and
/// once they pass the backlog limit it ends the channel with a message saying why. The
/// server's memory stays bounded and another partner works normally meanwhile.
#[tokio::test]
async fn a_client_that_never_reads_its_replies_loses_the_channel() {
    const READ_LEN: u32 = 32 * 1024;
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/flood", json!({})).await;
    let sftp = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    sftp.put("/source.bin", &random_bytes(READ_LEN as usize))
        .await
        .unwrap();

    let mut raw = raw_sftp(wharf.sftp_port, &user, &pw).await;
    raw.stream
        .write_all(&packet(SSH_FXP_INIT, &[0, 0, 0, 3]))
        .await
        .unwrap();
    read_packet(&mut raw.stream).await.expect("version");
    let mut open = 1u32.to_be_bytes().to_vec();
    open.extend(sftp_string(b"/source.bin"));
    open.extend(1u32.to_be_bytes()); // READ
    open.extend(0u32.to_be_bytes());
    raw.stream
        .write_all(&packet(SSH_FXP_OPEN, &open))
        .await
        .unwrap();
    let (kind, body) = read_packet(&mut raw.stream).await.expect("handle");
    assert_eq!(kind, SSH_FXP_HANDLE);
    let handle = body[8..].to_vec();

    // 200,000 READs (6 MB of requests): far more than a client that reads its replies ever
    // has outstanding, and past the server's backlog limit once their replies stop.
    const READS: u32 = 200_000;
    let (mut replies, mut sending) = tokio::io::split(raw.stream);
    let sent = tokio::spawn(async move {
        let mut burst = Vec::new();
        for id in 0..READS {
            let mut read = (10 + id).to_be_bytes().to_vec();
            read.extend(sftp_string(&handle));
            read.extend(0u64.to_be_bytes());
            read.extend(READ_LEN.to_be_bytes());
            burst.extend(packet(SSH_FXP_READ, &read));
            if burst.len() > 64 * 1024 {
                if sending.write_all(&burst).await.is_err() {
                    return;
                }
                burst.clear();
            }
        }
        let _ = sending.write_all(&burst).await;
    });

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !wharf
        .log_text()
        .contains("does not respect SFTP flow control")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not end the flooding channel:\n{}",
            wharf.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Meanwhile another session is served as usual.
    let other = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    other.put("/other.txt", b"unaffected").await.unwrap();
    assert_eq!(other.read("/other.txt").await.unwrap(), b"unaffected");

    // Once the flooding client reads, it gets the replies to what was served, then the end of
    // the channel: far fewer replies than requests.
    let mut answered = 0u32;
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some((kind, _)) = read_packet(&mut replies).await {
            assert_eq!(kind, SSH_FXP_DATA);
            answered += 1;
        }
    })
    .await;
    assert!(drained.is_ok(), "the channel did not end");
    assert!(answered < READS / 2, "{answered} of {READS} READs answered");
    sent.abort();
}

/// Stopping the gateway (SIGTERM) disconnects idle sessions at once, and lets a transfer in
/// progress finish within the drain time: a rolling deploy neither waits for idle partners nor
/// cuts uploads.
#[tokio::test]
async fn stopping_ends_idle_sessions_at_once_and_lets_uploads_finish() {
    use tokio::io::AsyncWriteExt;
    let mut wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/drain", json!({})).await;
    let idle = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    let busy = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    let mut upload = busy.create("/late.bin").await.unwrap();
    upload.write_all(b"first half, ").await.unwrap();
    upload.flush().await.unwrap();

    wharf.terminate();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while idle.read_dir("/").await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle session is still served after the stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The upload in progress goes on and is committed.
    upload.write_all(b"second half").await.unwrap();
    upload.shutdown().await.unwrap();
    assert!(
        wharf.exited_within(Duration::from_secs(20)).await,
        "the gateway did not stop once its last transfer ended"
    );
    let stored = std::fs::read(wharf.bucket_dir().join("drain/late.bin")).unwrap();
    assert_eq!(stored, b"first half, second half");
    drop(busy);
}

/// Opens a file over raw SFTP and sends, in one burst without waiting: `reads` READs of a
/// second file, one WRITE per size (consecutive offsets), an FSTAT and the CLOSEs. Replies
/// are read as they come, as a real client does (the SSH client's per-channel queue is
/// bounded). Checks every reply and the stored file.
async fn pipelined_writes_then_fstat_and_close(sizes: &[usize], reads: u32) {
    const READ_LEN: usize = 32 * 1024;
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/order", json!({})).await;
    let source = random_bytes(16 * READ_LEN);
    let sftp = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    sftp.put("/source.bin", &source).await.unwrap();
    let mut raw = raw_sftp(wharf.sftp_port, &user, &pw).await;
    raw.stream
        .write_all(&packet(SSH_FXP_INIT, &[0, 0, 0, 3]))
        .await
        .unwrap();
    read_packet(&mut raw.stream).await.expect("version");

    let mut handles = Vec::new();
    for (path, flags) in [(&b"/mixed.bin"[..], 0x1au32), (b"/source.bin", 0x01)] {
        // 0x1a: WRITE | CREAT | TRUNC; 0x01: READ.
        let mut open = 1u32.to_be_bytes().to_vec();
        open.extend(sftp_string(path));
        open.extend(flags.to_be_bytes());
        open.extend(0u32.to_be_bytes()); // no attributes
        raw.stream
            .write_all(&packet(SSH_FXP_OPEN, &open))
            .await
            .unwrap();
        let (kind, body) = read_packet(&mut raw.stream).await.expect("handle");
        assert_eq!(kind, SSH_FXP_HANDLE, "{body:?}");
        handles.push(body[8..].to_vec());
    }
    let (handle, reading) = (&handles[0], &handles[1]);

    let mut requests = Vec::new();
    let read_id = |i: u32| 1_000_000 + i;
    for i in 0..reads {
        let mut read = read_id(i).to_be_bytes().to_vec();
        read.extend(sftp_string(reading));
        read.extend(((i as usize % 16 * READ_LEN) as u64).to_be_bytes());
        read.extend((READ_LEN as u32).to_be_bytes());
        requests.extend(packet(SSH_FXP_READ, &read));
    }
    let data = random_bytes(sizes.iter().sum());
    let mut offset = 0usize;
    for (i, size) in sizes.iter().enumerate() {
        let mut write = (10 + i as u32).to_be_bytes().to_vec();
        write.extend(sftp_string(handle));
        write.extend((offset as u64).to_be_bytes());
        write.extend(sftp_string(&data[offset..offset + size]));
        requests.extend(packet(SSH_FXP_WRITE, &write));
        offset += size;
    }
    let fstat_id = 10 + sizes.len() as u32;
    let mut fstat = fstat_id.to_be_bytes().to_vec();
    fstat.extend(sftp_string(handle));
    requests.extend(packet(SSH_FXP_FSTAT, &fstat));
    for (id, h) in [(fstat_id + 1, handle), (fstat_id + 2, reading)] {
        let mut close = id.to_be_bytes().to_vec();
        close.extend(sftp_string(h));
        requests.extend(packet(SSH_FXP_CLOSE, &close));
    }
    let (mut replies, mut sending) = tokio::io::split(raw.stream);
    let sent = tokio::spawn(async move { sending.write_all(&requests).await });

    let mut answered = Vec::new();
    for _ in 0..sizes.len() + reads as usize + 3 {
        let (kind, body) = read_packet(&mut replies).await.expect("reply");
        let id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if id == fstat_id {
            assert_eq!(kind, SSH_FXP_ATTRS);
            let flags = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            assert_ne!(flags & 1, 0, "FSTAT reports a size");
            let size = u64::from_be_bytes(body[8..16].try_into().unwrap());
            assert_eq!(size, data.len() as u64, "FSTAT came after every write");
        } else if id >= read_id(0) {
            assert_eq!(kind, SSH_FXP_DATA, "read {id}");
            let at = (id - read_id(0)) as usize % 16 * READ_LEN;
            assert_eq!(&body[8..], &source[at..at + READ_LEN], "read {id}");
        } else {
            assert_eq!(kind, SSH_FXP_STATUS, "request {id}");
            assert_eq!(&body[4..8], &[0, 0, 0, 0], "request {id} succeeded");
        }
        answered.push(id);
    }
    answered.sort_unstable();
    let mut expected: Vec<u32> = (10..fstat_id + 3).collect();
    expected.extend((0..reads).map(read_id));
    assert_eq!(answered, expected, "one reply per request");
    sent.await.unwrap().unwrap();

    assert_eq!(
        sha256(&sftp.read("/mixed.bin").await.unwrap()),
        sha256(&data)
    );
}

#[tokio::test]
async fn twenty_concurrent_sessions_and_concurrent_handles() {
    let wharf = Wharf::start().await;
    // Above the default of 10 concurrent sessions per user.
    let (user, pw) = wharf.create_user("/busy", json!({"maxSessions": 30})).await;
    let port = wharf.sftp_port;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (user, pw) = (user.clone(), pw.clone());
        tasks.push(tokio::spawn(async move {
            let sftp = rust_sftp(port, &user, &pw).await.expect("login");
            let data = random_bytes(512 * 1024 + i);
            let path = format!("/session-{i}.bin");
            sftp.put(&path, &data).await.expect("upload");
            assert_eq!(
                sha256(&sftp.read(&path).await.expect("download")),
                sha256(&data)
            );
        }));
    }
    for t in tasks {
        t.await.expect("session task");
    }
    // One session, several files written at the same time over one channel.
    let sftp = rust_sftp(port, &user, &pw).await.unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("/parallel-{i}.bin"), random_bytes(700_000 + i)))
        .collect();
    let uploads = files.iter().map(|(path, data)| sftp.put(path, data));
    for result in futures::future::join_all(uploads).await {
        result.expect("parallel upload");
    }
    let names: Vec<String> = sftp
        .read_dir("/")
        .await
        .unwrap()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 24, "{names:?}");
    for (path, data) in &files {
        assert_eq!(
            sha256(&sftp.read(path).await.unwrap()),
            sha256(data),
            "{path}"
        );
    }
}

#[tokio::test]
async fn resume_with_openssh_reput_and_append() {
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/resume", json!({})).await;
    let work = tempfile::tempdir().unwrap();
    // Larger than one upload part, so the resumed object is assembled from several parts.
    let full = random_bytes(9 * 1024 * 1024 + 321);
    write_file(work.path(), "full.bin", &full);
    write_file(work.path(), "part.bin", &full[..3 * 1024 * 1024 + 17]);
    // An interrupted upload left the first part; reput sends only the rest.
    let out = sftp_batch(
        wharf.sftp_port,
        &user,
        Auth::Password(&pw),
        work.path(),
        "put part.bin big.bin\nreput full.bin big.bin\n",
    )
    .await;
    assert!(out.status.success(), "{}\n{}", text(&out), wharf.log_text());
    let stored = std::fs::read(wharf.bucket_dir().join("resume/big.bin")).unwrap();
    assert_eq!(stored.len(), full.len());
    assert_eq!(sha256(&stored), sha256(&full));

    // Writing with the APPEND flag continues the file, whatever offset the client sends.
    let sftp = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    let mut file = sftp
        .open_with_flags("/big.bin", OpenFlags::WRITE | OpenFlags::APPEND)
        .await
        .unwrap();
    file.write_all(b"-tail").await.unwrap();
    file.shutdown().await.unwrap();
    drop(file);
    let mut expected = full.clone();
    expected.extend_from_slice(b"-tail");
    assert_eq!(
        sha256(&sftp.read("/big.bin").await.unwrap()),
        sha256(&expected)
    );

    // A write in the middle of an existing file cannot be honoured on object storage: it is
    // refused and the file stays as it was.
    let mut file = sftp
        .open_with_flags("/big.bin", OpenFlags::WRITE)
        .await
        .unwrap();
    use tokio::io::AsyncSeekExt;
    file.seek(std::io::SeekFrom::Start(1000)).await.unwrap();
    let refused = async {
        file.write_all(b"middle").await?;
        file.shutdown().await
    }
    .await;
    assert!(
        refused.is_err(),
        "a write in the middle of the file was accepted"
    );
    drop(file);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sha256(&sftp.read("/big.bin").await.unwrap()),
        sha256(&expected)
    );
}

#[tokio::test]
async fn paramiko_round_trip_append_and_jail() {
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/py", json!({})).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/clients/paramiko_client.py"
    );
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(wharf.sftp_port.to_string())
        .arg(&user)
        .arg(&pw)
        .output()
        .await
        .expect("python3 is required");
    assert!(
        out.status.success(),
        "paramiko (pip install paramiko) failed:\n{}\n{}",
        text(&out),
        wharf.log_text()
    );
    assert!(stdout(&out).contains("paramiko: ok"));
    assert_eq!(
        std::fs::read(wharf.bucket_dir().join("py/log.txt")).unwrap(),
        b"line 1\nline 2\n"
    );
}

#[tokio::test]
async fn empty_directories_and_files_survive_a_restart() {
    let mut wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/durable", json!({})).await;
    {
        let sftp = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
        sftp.create_dir("/empty").await.unwrap();
        sftp.create_dir("/empty/nested").await.unwrap();
        sftp.put("/file.txt", b"kept").await.unwrap();
    }
    wharf.stop().await;
    let data_dir = std::mem::replace(&mut wharf.data_dir, tempfile::tempdir().unwrap());
    let restarted = Wharf::start_with(StartOptions {
        data_dir: Some(data_dir),
        ..Default::default()
    })
    .await;
    let sftp = rust_sftp(restarted.sftp_port, &user, &pw)
        .await
        .expect("the user and its password survive a restart");
    let mut names: Vec<String> = sftp
        .read_dir("/")
        .await
        .unwrap()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["empty", "file.txt"]);
    let nested: Vec<String> = sftp
        .read_dir("/empty")
        .await
        .unwrap()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(nested, ["nested"]);
    assert!(sftp.metadata("/empty/nested").await.unwrap().is_dir());
    assert_eq!(sftp.read("/file.txt").await.unwrap(), b"kept");
}

#[tokio::test]
async fn a_directory_of_100000_files_lists_completely() {
    let wharf = Wharf::start().await;
    let (user, pw) = wharf.create_user("/bulk", json!({})).await;
    // Written straight into the bucket directory: the test is about listing, not uploading.
    let dir = wharf.bucket_dir().join("bulk/inbox");
    std::fs::create_dir_all(&dir).unwrap();
    const FILES: usize = 100_000;
    for i in 0..FILES {
        std::fs::File::create(dir.join(format!("order-{i:06}.edi"))).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let out = sftp_batch(
        wharf.sftp_port,
        &user,
        Auth::Password(&pw),
        work.path(),
        "ls -1 inbox\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let listed: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains("order-"))
        .collect();
    assert_eq!(listed.len(), FILES);
    assert!(listed.iter().any(|l| l.ends_with("order-099999.edi")));
    assert!(listed.iter().any(|l| l.ends_with("order-000000.edi")));
}

/// Logs in over and over until it works (a closed session's place is given back when the
/// gateway notices the close, which is asynchronous).
async fn rust_sftp_eventually(port: u16, user: &str, password: &str) -> RustSftp {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match rust_sftp(port, user, password).await {
            Ok(session) => return session,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no session within 15 s: {e}"),
        }
    }
}

#[tokio::test]
async fn concurrent_sessions_per_user_are_limited() {
    let wharf = Wharf::start().await;
    let port = wharf.sftp_port;
    // The limit is set with the CLI and shown by `users get`.
    let out = wharf
        .cli(&[
            "users",
            "create",
            "--description",
            "Limited partner",
            "--home",
            "/limited",
            "--max-sessions",
            "2",
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(created["maxSessions"], 2);
    let user = created["username"].as_str().unwrap().to_owned();
    let pw = created["password"].as_str().unwrap().to_owned();
    let out = wharf.cli(&["users", "get", &user]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("Max sessions:    2"),
        "{}",
        text(&out)
    );

    // Two sessions at once are fine.
    let first = rust_sftp(port, &user, &pw).await.expect("first session");
    let second = rust_sftp(port, &user, &pw).await.expect("second session");
    first.put("/one.txt", b"one").await.unwrap();
    assert_eq!(second.read("/one.txt").await.unwrap(), b"one");

    // A third is turned away, with a reason OpenSSH shows.
    let third = rust_sftp(port, &user, &pw).await;
    assert!(third.is_err(), "a third session was let in");
    let work = tempfile::tempdir().unwrap();
    let out = sftp_batch(port, &user, Auth::Password(&pw), work.path(), "ls\n").await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "too many sessions for user {user} (limit 2); close one and retry"
        )),
        "{}",
        text(&out)
    );
    // Turning logins away does not disturb the sessions in progress.
    second.put("/two.txt", b"two").await.unwrap();
    assert_eq!(first.read("/two.txt").await.unwrap(), b"two");

    // Closing a session gives its place back.
    drop(first);
    let replacement = rust_sftp_eventually(port, &user, &pw).await;
    assert_eq!(replacement.read("/one.txt").await.unwrap(), b"one");
    assert!(rust_sftp(port, &user, &pw).await.is_err(), "over the limit");

    // A raised limit applies from the next login on.
    let out = wharf
        .cli(&["users", "update", &user, "--max-sessions", "3"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("Max sessions:    3"),
        "{}",
        text(&out)
    );
    let third = rust_sftp(port, &user, &pw).await.expect("third session");
    assert_eq!(third.read("/two.txt").await.unwrap(), b"two");

    // Failed logins take no place: after all sessions end, the full limit is available.
    drop((second, replacement, third));
    let again: Vec<RustSftp> = vec![
        rust_sftp_eventually(port, &user, &pw).await,
        rust_sftp_eventually(port, &user, &pw).await,
        rust_sftp_eventually(port, &user, &pw).await,
    ];
    assert!(rust_sftp(port, &user, &pw).await.is_err(), "over the limit");
    drop(again);
}

#[tokio::test]
async fn connections_that_never_log_in_are_closed() {
    use tokio::io::AsyncReadExt;
    let wharf = Wharf::start_with(StartOptions {
        extra_args: vec!["--sftp-login-timeout".into(), "2".into()],
        ..Default::default()
    })
    .await;
    // One client says nothing at all; another sends its version string and stalls in the key
    // exchange. Both must be cut off at the login deadline, not at the 10-minute idle timeout.
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", wharf.sftp_port));
    let stalled = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", wharf.sftp_port)).await?;
        s.write_all(b"SSH-2.0-stall\r\n").await?;
        Ok::<_, std::io::Error>(s)
    };
    let (silent, stalled) = tokio::join!(silent, stalled);
    let started = std::time::Instant::now();
    for mut stream in [silent.unwrap(), stalled.unwrap()] {
        let mut sink = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut sink)).await;
        assert!(
            read.is_ok(),
            "connection still open 15 s after the 2 s login deadline"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // A real login in time is unaffected.
    let (user, pw) = wharf.create_user("/ok", json!({})).await;
    let sftp = rust_sftp(wharf.sftp_port, &user, &pw).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sftp.put("/after-deadline.txt", b"still connected")
        .await
        .unwrap();
}

/// Runs `wharf <args>` against `wharf` with `HOME` set to `home` and `stdin` as its input.
async fn cli_at_home(
    wharf: &Wharf,
    home: &std::path::Path,
    stdin: &[u8],
    args: &[&str],
) -> std::process::Output {
    let mut child = tokio::process::Command::new(wharf_bin())
        .args(args)
        .env("WHARF_API_URL", wharf.api_url())
        .env("WHARF_API_KEY", ADMIN_KEY)
        .env("HOME", home)
        .env_remove("WHARF_DATA_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run wharf CLI");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).await.expect("write stdin");
    drop(input);
    child.wait_with_output().await.expect("wharf CLI output")
}

/// The value after `name` on a line of `printed` (`Username:     K4XQ7T3M`).
fn printed_field(printed: &str, name: &str) -> String {
    printed
        .lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {name} in:\n{printed}"))
}

#[tokio::test]
async fn cli_key_only_users_and_chosen_passwords() {
    let wharf = Wharf::start().await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    let (key, _) = keygen(&home.path().join(".ssh"), "id_ed25519");

    // A key-only user, its key read from ~/.ssh (the shell never sees the '@~').
    let out = cli_at_home(
        &wharf,
        home.path(),
        b"",
        &[
            "users",
            "create",
            "--description",
            "Keys only",
            "--home",
            "/keys",
            "--password-enabled",
            "false",
            "--public-key",
            "@~/.ssh/id_ed25519.pub",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys_user = created["username"].as_str().unwrap().to_owned();
    let generated = created["password"].as_str().unwrap().to_owned();
    assert_eq!(created["passwordEnabled"], false);
    assert_eq!(created["publicKeys"].as_array().unwrap().len(), 1);
    assert!(rust_key_login(wharf.sftp_port, &keys_user, &key).await);
    assert!(
        rust_sftp(wharf.sftp_port, &keys_user, &generated)
            .await
            .is_err(),
        "a key-only user logged in with a password"
    );
    let out = wharf.cli(&["users", "get", &keys_user]).await;
    assert!(
        stdout(&out).contains("Password login:  off"),
        "{}",
        text(&out)
    );

    // Turned on, the password it was given logs in.
    let out = wharf
        .cli(&[
            "users",
            "update",
            &keys_user,
            "--password-enabled",
            "true",
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let updated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(updated["passwordEnabled"], true);
    rust_sftp(wharf.sftp_port, &keys_user, &generated)
        .await
        .expect("password login once enabled");

    // A password chosen by the operator, from standard input; not printed back.
    let chosen = "Chosen-On-Stdin-2026";
    let out = cli_at_home(
        &wharf,
        home.path(),
        format!("{chosen}\n").as_bytes(),
        &[
            "users",
            "create",
            "--description",
            "Migrated",
            "--home",
            "/migrated",
            "--password-stdin",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    assert!(!printed.contains(chosen), "{printed}");
    let migrated = printed_field(&printed, "Username:");
    rust_sftp(wharf.sftp_port, &migrated, chosen)
        .await
        .expect("the chosen password logs in");

    // Reset to one read from ~/…, with a Windows line ending.
    let from_file = "Chosen-In-A-File-0042";
    std::fs::write(home.path().join("pw.txt"), format!("{from_file}\r\n")).unwrap();
    let out = cli_at_home(
        &wharf,
        home.path(),
        b"",
        &[
            "users",
            "reset-password",
            &migrated,
            "--password-file",
            "~/pw.txt",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stdout(&out).contains(from_file), "{}", text(&out));
    rust_sftp(wharf.sftp_port, &migrated, from_file)
        .await
        .expect("the password from the file logs in");
    assert!(rust_sftp(wharf.sftp_port, &migrated, chosen).await.is_err());

    // The API's rules, and its field name, reach the operator.
    let out = cli_at_home(
        &wharf,
        home.path(),
        b"too short\n",
        &["users", "reset-password", &migrated, "--password-stdin"],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("password") && stderr.contains("16 to 128"),
        "{}",
        text(&out)
    );
    // A password never shows in the server's log.
    let log = wharf.log_text();
    for secret in [chosen, from_file] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

#[tokio::test]
async fn cli_tables_line_up_and_cut_long_cells() {
    let wharf = Wharf::start().await;
    let long_name = format!("partner-{}", "x".repeat(40));
    let long_description = format!("Trading partner with a long name {}", "y".repeat(60));
    wharf
        .create_user(
            "/a",
            json!({"username": long_name, "description": long_description}),
        )
        .await;
    wharf
        .create_user(
            "/partners/acme/inbound/edi",
            json!({"username": "bo", "permissions": "read-only"}),
        )
        .await;
    let out = wharf.cli(&["users", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    let lines: Vec<Vec<char>> = printed.lines().map(|l| l.chars().collect()).collect();
    assert_eq!(lines.len(), 3, "{printed}");
    let header: String = lines[0].iter().collect();
    // Every column starts at the same character on every line.
    for heading in [
        "DESCRIPTION",
        "HOME",
        "PERMISSIONS",
        "STATUS",
        "LAST CONNECTED",
    ] {
        let at = header
            .find(heading)
            .map(|byte| header[..byte].chars().count())
            .unwrap_or_else(|| panic!("no {heading} in {header}"));
        for line in &lines[1..] {
            assert!(
                at > 0 && line[at - 1] == ' ' && line[at] != ' ',
                "{heading} is not at column {at}:\n{printed}"
            );
        }
    }
    // Long cells end in an ellipsis rather than silently.
    assert!(printed.contains('…'), "{printed}");
    assert!(!printed.contains(&long_description), "{printed}");
    assert!(printed.contains("read-only"), "{printed}");
}

#[tokio::test]
async fn cli_a_closed_stdout_ends_quietly() {
    let wharf = Wharf::start().await;
    for i in 0..3 {
        wharf.create_user(&format!("/p{i}"), json!({})).await;
    }
    // `wharf users list | head -0`: the reader is gone before the first line is written.
    let mut child = tokio::process::Command::new(wharf_bin())
        .args(["users", "list"])
        .env("WHARF_API_URL", wharf.api_url())
        .env("WHARF_API_KEY", ADMIN_KEY)
        .env_remove("WHARF_DATA_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run wharf CLI");
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "not quiet: {stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success() || out.status.signal() == Some(SIGPIPE),
        "{:?}",
        out.status
    );
}

/// SIGPIPE's number on Linux: a writer killed by it ended the usual way.
const SIGPIPE: i32 = 13;

#[tokio::test]
async fn cli_refuses_reserved_names_as_a_home() {
    let wharf = Wharf::start().await;
    let (user, _) = wharf.create_user("/fine", json!({})).await;
    for args in [
        vec![
            "users",
            "create",
            "--description",
            "X",
            "--home",
            "/.wharf-dir",
        ],
        vec!["users", "update", &user, "--home", "/in/.WHARF-UPLOADS"],
    ] {
        let out = wharf.cli(&args).await;
        assert!(!out.status.success(), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("reserved"), "{}", text(&out));
    }
    // Through the API as well: a 400 naming the field.
    let (status, problem) = wharf
        .api(
            Method::POST,
            "/v1/users",
            Some(json!({"description": "X", "homeDirectory": "/a/.Wharf-Dir"})),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "homeDirectory");
}

#[tokio::test]
async fn cli_first_start_certificate_names_the_public_host() {
    let wharf = Wharf::start_with(StartOptions {
        extra_args: vec!["--public-host".into(), "files.example.test".into()],
        ..Default::default()
    })
    .await;
    let cert = wharf.data_dir.path().join("tls/ftps-cert.pem");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-ext", "subjectAltName"])
        .args(["-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl is required (Debian package openssl)");
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    assert!(
        printed.replace(' ', "").contains("CN=files.example.test"),
        "{printed}"
    );
    for name in [
        "DNS:files.example.test",
        "DNS:localhost",
        "IP Address:127.0.0.1",
    ] {
        assert!(printed.contains(name), "{name} missing:\n{printed}");
    }
    let fingerprint = printed
        .lines()
        .find_map(|l| {
            l.split_once("Fingerprint=")
                .map(|(_, f)| f.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no fingerprint in {printed}"));

    // The same fingerprint at start, in the API and in the CLI's connection details.
    assert!(
        wharf
            .log_text()
            .contains(&format!("FTPS cert:  SHA-256 {fingerprint}")),
        "{}",
        wharf.log_text()
    );
    let (_, server) = wharf.api(Method::GET, "/v1/server", None).await;
    assert_eq!(server["ftpsCertificateSha256"], fingerprint.as_str());
    let out = wharf
        .cli(&["users", "create", "--description", "C", "--home", "/c"])
        .await;
    assert!(
        stdout(&out).contains(&format!("FTPS cert:    SHA-256 {fingerprint}")),
        "{}",
        text(&out)
    );
}
