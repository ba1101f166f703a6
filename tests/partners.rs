//! What partners' clients rely on beyond plain transfers, against the real `wharf serve`:
//! logins that retry, keyboard-interactive, key-only users, paramiko's way of asking for the
//! authentication service before every attempt, files opened for reading and writing,
//! server-side checksums, standard `ls -l` listings, and a write-only user that is a real drop
//! box. Real clients throughout: OpenSSH `sftp`, paramiko, curl (libssh2).

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::process::Command;

/// Runs `tests/clients/paramiko_partner.py` for `case` and asserts it passed.
async fn paramiko_case(wharf: &Wharf, user: &str, password: &str, case: &str, key: Option<&Path>) {
    let python = require_tool("python3", "apt-get install -y python3");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/clients/paramiko_partner.py"
    );
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(wharf.sftp_port.to_string())
        .arg(user)
        .arg(password)
        .arg(case);
    if let Some(key) = key {
        cmd.arg(key);
    }
    let out = run(cmd, Duration::from_secs(120)).await;
    assert!(
        out.status.success() && stdout(&out).contains("partner: ok"),
        "paramiko {case}:\n{}\n--- wharf log ---\n{}",
        text(&out),
        wharf.log_text()
    );
}

async fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(limit, cmd.output())
        .await
        .expect("the client did not finish in time")
        .expect("start the client")
}

/// An OpenSSH `sftp -b` command with its own options: no config, no agent, no known hosts,
/// the password (if any) from an askpass script that answers `answers` in turn.
fn openssh_sftp(
    port: u16,
    user: &str,
    dir: &Path,
    answers: &[&str],
    options: &[&str],
    batch: &str,
) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let batch_file = dir.join(format!("batch-{}", uuid_like()));
    std::fs::write(&batch_file, batch).unwrap();
    // Each call prints the next answer (a counter file remembers which).
    let counter = dir.join(format!("asked-{}", uuid_like()));
    let mut script = format!(
        "#!/bin/sh\nn=$(cat '{}' 2>/dev/null || echo 0)\n",
        counter.display()
    );
    script += &format!("echo $((n + 1)) > '{}'\ncase $n in\n", counter.display());
    for (i, answer) in answers.iter().enumerate() {
        script += &format!("  {i}) printf '%s\\n' '{answer}' ;;\n");
    }
    script += "  *) exit 1 ;;\nesac\n";
    let askpass = dir.join(format!("askpass-{}", uuid_like()));
    std::fs::write(&askpass, script).unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = Command::new(require_tool("sftp", "apt-get install -y openssh-client"));
    cmd.args([
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=no",
    ]);
    for option in options {
        cmd.args(["-o", option]);
    }
    cmd.arg("-P")
        .arg(port.to_string())
        .arg("-b")
        .arg(&batch_file)
        .arg(format!("{user}@127.0.0.1"))
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .env("SSH_ASKPASS", askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0");
    cmd
}

// ---------------------------------------------------------------------------------------------
// Logins

/// A mistyped password does not end the login: paramiko and OpenSSH may try again on the same
/// connection (three times), and keyboard-interactive (one "Password:" prompt) works for
/// clients that only try that method.
#[tokio::test]
async fn passwords_may_be_retried_and_typed_at_a_keyboard_interactive_prompt() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/retry", json!({})).await;
    paramiko_case(&wharf, &user, &password, "logins", None).await;

    let dir = tempfile::tempdir().unwrap();
    for (options, answers) in [
        (
            vec![
                "PreferredAuthentications=password",
                "NumberOfPasswordPrompts=3",
            ],
            vec!["typo-1", "typo-2", password.as_str()],
        ),
        (
            vec![
                "PreferredAuthentications=keyboard-interactive",
                "NumberOfPasswordPrompts=2",
            ],
            vec!["typo", password.as_str()],
        ),
    ] {
        let cmd = openssh_sftp(
            wharf.sftp_port,
            &user,
            dir.path(),
            &answers,
            &options,
            "pwd\n",
        );
        let out = run(cmd, Duration::from_secs(60)).await;
        assert!(
            out.status.success(),
            "OpenSSH with {options:?}:\n{}\n{}",
            text(&out),
            wharf.log_text()
        );
    }
    // Four wrong passwords: the fourth is never asked for, the login fails.
    let cmd = openssh_sftp(
        wharf.sftp_port,
        &user,
        dir.path(),
        &["a", "b", "c", password.as_str()],
        &[
            "PreferredAuthentications=password",
            "NumberOfPasswordPrompts=4",
        ],
        "pwd\n",
    );
    let out = run(cmd, Duration::from_secs(60)).await;
    assert!(!out.status.success(), "a fourth password attempt succeeded");
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
}

/// paramiko asks for the authentication service again before every attempt; its
/// `SSHClient.connect()` tries the keys it finds in `~/.ssh` before the password, so a
/// server that ignores the repeated request hangs every partner whose machine has a key.
#[tokio::test]
async fn paramiko_ssh_client_tries_its_keys_then_the_password() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/client", json!({})).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    keygen(&home.path().join(".ssh"), "id_ed25519");
    let script = r#"
import sys, paramiko
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect("127.0.0.1", port=int(sys.argv[1]), username=sys.argv[2], password=sys.argv[3],
          timeout=20, auth_timeout=20, banner_timeout=20)
sftp = c.open_sftp()
sftp.putfo(__import__("io").BytesIO(b"hello"), "/hello.txt")
assert sftp.stat("/hello.txt").st_size == 5
print("client: ok")
"#;
    let mut cmd = Command::new(require_tool("python3", "apt-get install -y python3"));
    cmd.args(["-c", script])
        .arg(wharf.sftp_port.to_string())
        .arg(&user)
        .arg(&password)
        .env("HOME", home.path())
        .env_remove("SSH_AUTH_SOCK");
    let out = run(cmd, Duration::from_secs(90)).await;
    assert!(
        out.status.success() && stdout(&out).contains("client: ok"),
        "{}\n{}",
        text(&out),
        wharf.log_text()
    );
}

/// A user with `passwordEnabled: false` logs in with its key only: the right password is
/// refused, after which the password methods are no longer offered; the key works.
#[tokio::test]
async fn key_only_users_cannot_log_in_with_a_password() {
    let wharf = Wharf::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "partner");
    let (user, password) = wharf
        .create_user(
            "/keys",
            json!({"passwordEnabled": false, "publicKeys": [public]}),
        )
        .await;
    paramiko_case(&wharf, &user, &password, "key-only", Some(&key)).await;

    let cmd = openssh_sftp(
        wharf.sftp_port,
        &user,
        dir.path(),
        &[password.as_str(), password.as_str()],
        &[
            "PreferredAuthentications=password,keyboard-interactive",
            "PubkeyAuthentication=no",
        ],
        "pwd\n",
    );
    let out = run(cmd, Duration::from_secs(60)).await;
    assert!(
        !out.status.success(),
        "a key-only user logged in with a password"
    );
    let cmd = openssh_sftp(
        wharf.sftp_port,
        &user,
        dir.path(),
        &[],
        &[
            "PreferredAuthentications=publickey",
            "IdentitiesOnly=yes",
            &format!("IdentityFile={}", key.display()),
        ],
        "pwd\n",
    );
    let out = run(cmd, Duration::from_secs(60)).await;
    assert!(out.status.success(), "the key: {}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// Files

/// `open(path, "r+b")` (READ|WRITE without TRUNC), as Python, Java and WinSCP-style resumes
/// open files: reads of the existing bytes, a continuation at the end, a rewrite of the start
/// that keeps the rest; the middle of a file is refused with a message.
#[tokio::test]
async fn files_open_for_reading_and_writing() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/rw", json!({})).await;
    paramiko_case(&wharf, &user, &password, "read-write", None).await;
    let stored = std::fs::read(wharf.bucket_dir().join("rw/rw.bin")).unwrap();
    assert_eq!(stored, b"xy23456789AB");
}

/// check-file-name and check-file-handle (paramiko's `SFTPFile.check`) give the digests of
/// the stored bytes, whole, by range and by block.
#[tokio::test]
async fn checksums_of_stored_files() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/sums", json!({})).await;
    paramiko_case(&wharf, &user, &password, "checksums", None).await;
}

// ---------------------------------------------------------------------------------------------
// Listings

/// `ls -l` lines have OpenSSH's 9 fields, whoever formats them: OpenSSH's client from the
/// attributes and the names `users-groups-by-id@openssh.com` gives, curl (libssh2) from the
/// server's own line. Directories carry their real date, not 1970.
#[tokio::test]
async fn listings_have_nine_fields_names_and_real_dates() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/ls", json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "report.edi", b"hello");

    let out = sftp_batch(
        wharf.sftp_port,
        &user,
        Auth::Password(&password),
        dir.path(),
        "mkdir archive\nput report.edi\nls -l\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let openssh = stdout(&out);
    let curl = curl_listing(wharf.sftp_port, &user, &password, dir.path()).await;
    for (client, listing) in [("OpenSSH", &openssh), ("curl", &curl)] {
        for name in ["report.edi", "archive"] {
            let line = listing
                .lines()
                .find(|line| line.ends_with(name) && !line.starts_with("sftp>"))
                .unwrap_or_else(|| panic!("{client}: {name} not listed:\n{listing}"));
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 9, "{client}: {line}");
            assert_eq!(fields[8], name, "{client}: $9 is the name: {line}");
            assert_eq!(
                (fields[2], fields[3]),
                (user.as_str(), user.as_str()),
                "{line}"
            );
            assert!(!line.contains("1970"), "{client}: {line}");
            // Today's entries show the time of day, not a year.
            assert!(fields[7].contains(':'), "{client}: {line}");
        }
        let size_of = |name: &str| {
            listing
                .lines()
                .find(|l| l.ends_with(name) && !l.starts_with("sftp>"))
                .and_then(|l| l.split_whitespace().nth(4))
                .map(str::to_owned)
        };
        assert_eq!(size_of("report.edi").as_deref(), Some("5"), "{client}");
    }
}

/// The directory listing curl prints for `sftp://…/` (libssh2 passes the server's `ls -l`
/// line through).
async fn curl_listing(port: u16, user: &str, password: &str, dir: &Path) -> String {
    let mut cmd = Command::new(require_tool("curl", "apt-get install -y curl"));
    cmd.args(["-s", "-S", "-k", "--user"])
        .arg(format!("{user}:{password}"))
        .arg(format!("sftp://127.0.0.1:{port}/"))
        .current_dir(dir);
    let out = run(cmd, Duration::from_secs(60)).await;
    assert!(out.status.success(), "curl listing: {}", text(&out));
    stdout(&out)
}

// ---------------------------------------------------------------------------------------------
// Drop box

/// A write-only user delivers new files (WinSCP's `.filepart` then rename included) and
/// cannot read, delete, overwrite or move anything someone else left.
#[tokio::test]
async fn write_only_users_have_a_drop_box() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf
        .create_user("/drop", json!({"permissions": "write-only"}))
        .await;
    // What the operator left in the drop box.
    let put = reqwest::Client::new()
        .put(format!(
            "{}/v1/buckets/default/objects/drop/existing.edi",
            wharf.api_url()
        ))
        .header("authorization", format!("Key {ADMIN_KEY}"))
        .body("operator's file")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "new.edi", b"partner's delivery");
    let sftp = |batch: &'static str| {
        sftp_batch(
            wharf.sftp_port,
            &user,
            Auth::Password(&password),
            dir.path(),
            batch,
        )
    };
    let out = sftp(
        "put new.edi invoice.edi.filepart\nrename invoice.edi.filepart invoice.edi\nmkdir in\n",
    )
    .await;
    assert!(out.status.success(), "delivering: {}", text(&out));
    for (what, batch) in [
        ("overwrite", "put new.edi existing.edi\n"),
        ("resume onto", "reput new.edi existing.edi\n"),
        ("rename", "rename existing.edi taken.edi\n"),
        ("rename onto", "rename invoice.edi existing.edi\n"),
        ("download", "get existing.edi copy.edi\n"),
        ("delete", "rm existing.edi\n"),
        ("remove a directory", "rmdir in\n"),
    ] {
        let out = sftp(batch).await;
        assert!(!out.status.success(), "{what} was allowed:\n{}", text(&out));
        assert!(
            text(&out).contains("Permission denied") || text(&out).contains("ermission"),
            "{what}: {}",
            text(&out)
        );
    }
    let bucket = wharf.bucket_dir().join("drop");
    assert_eq!(
        std::fs::read(bucket.join("existing.edi")).unwrap(),
        b"operator's file"
    );
    assert_eq!(
        std::fs::read(bucket.join("invoice.edi")).unwrap(),
        b"partner's delivery"
    );
    assert!(!bucket.join("invoice.edi.filepart").exists());
    assert!(!bucket.join("taken.edi").exists());
}
