//! End-to-end tests of the FTPS gateway (explicit TLS with `AUTH TLS`, and implicit TLS) with
//! real clients: Python's ftplib.FTP_TLS, lftp (GnuTLS) and curl (OpenSSL), against
//! `wharf serve` on a local bucket.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::process::Command;

const MIB: usize = 1024 * 1024;
const TLS12: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
const TLS13: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.3";

fn ok(out: &std::process::Output, what: &str) {
    assert!(out.status.success(), "{what} failed:\n{}", text(out));
}

/// The object a user's file became in the local bucket.
fn object(wharf: &Wharf, key: &str) -> PathBuf {
    wharf.bucket_dir().join(key)
}

// ---------------------------------------------------------------------------------------------
// Python ftplib

/// Everything a read-write user does with ftplib: round trips with checksums, SIZE/MDTM/MLST,
/// MLSD/NLST/LIST, REST+RETR, REST+STOR and APPE, directories, rename, delete, escape attempts,
/// plaintext login and wrong password refused, PASV without PROT P refused.
#[tokio::test]
async fn ftplib_does_everything_a_partner_does() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/alice", json!({})).await;
    let out = ftplib_client("full", wharf.ftps_port, &user, &password).await;
    ok(&out, "ftplib full");
    assert!(stdout(&out).contains("ftplib: ok"), "{}", text(&out));
    // Nothing escaped the home directory.
    let outside: Vec<_> = walk_files(&wharf.bucket_dir())
        .into_iter()
        .filter(|p| !p.starts_with(wharf.bucket_dir().join("alice")))
        .collect();
    assert!(outside.is_empty(), "files outside the home: {outside:?}");
    let log = wharf.log_text();
    assert!(
        log.contains("ftps{session="),
        "no session span in the log:\n{log}"
    );
}

#[tokio::test]
async fn ftplib_read_only_and_write_only_users_are_held_to_their_permissions() {
    let wharf = Wharf::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (writer, writer_pw) = wharf.create_user("/shared", json!({})).await;
    write_file(dir.path(), "seed.txt", b"seed");
    let out = curl_ftps(
        &writer,
        &writer_pw,
        dir.path(),
        &["-T", "seed.txt", &ftps_url(wharf.ftps_port, "/seed.txt")],
    )
    .await;
    ok(&out, "curl upload of the seed");
    let (reader, reader_pw) = wharf
        .create_user("/shared", json!({"permissions": "read-only"}))
        .await;
    let out = ftplib_client("read-only", wharf.ftps_port, &reader, &reader_pw).await;
    ok(&out, "ftplib read-only");
    let (dropper, dropper_pw) = wharf
        .create_user("/drop", json!({"permissions": "write-only"}))
        .await;
    let out = ftplib_client("write-only", wharf.ftps_port, &dropper, &dropper_pw).await;
    ok(&out, "ftplib write-only");
    assert_eq!(
        std::fs::read(object(&wharf, "drop/renamed.txt")).unwrap(),
        b"delivered"
    );
}

#[tokio::test]
async fn a_login_beyond_max_sessions_is_refused_until_a_session_ends() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/solo", json!({"maxSessions": 1})).await;
    let out = ftplib_client("limit", wharf.ftps_port, &user, &password).await;
    ok(&out, "ftplib limit");
    assert!(
        wharf
            .log_text()
            .contains("login refused: too many sessions"),
        "the refusal is not logged"
    );
}

// ---------------------------------------------------------------------------------------------
// curl

/// 1 KiB and 10 MiB round trips with TLS 1.2 and TLS 1.3, listings, download resume (REST +
/// RETR), upload resume (curl -C -), a file outside the home, refusals.
#[tokio::test]
async fn curl_round_trips_resumes_and_refusals() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/carol", json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let port = wharf.ftps_port;
    let curl = async |args: &[&str]| curl_ftps(&user, &password, dir.path(), args).await;

    for (tls, name, size) in [
        ("--tls-max", "small.bin", 1024),
        ("--tlsv1.3", "medium.bin", 10 * MIB),
    ] {
        let data = random_bytes(size);
        write_file(dir.path(), name, &data);
        let mut args = vec![tls];
        if tls == "--tls-max" {
            args.push("1.2");
        }
        let url = ftps_url(port, &format!("/{name}"));
        let back = format!("{name}.back");
        let mut up = args.clone();
        up.extend(["-T", name, &url]);
        ok(&curl(&up).await, &format!("curl {tls} upload"));
        let mut down = args.clone();
        down.extend(["-o", &back, &url]);
        ok(&curl(&down).await, &format!("curl {tls} download"));
        assert_eq!(
            sha256(&read_file(dir.path(), &back)),
            sha256(&data),
            "{name}"
        );
        assert_eq!(
            sha256_file(&object(&wharf, &format!("carol/{name}"))),
            sha256(&data),
            "stored {name}"
        );
    }

    // Data connections resumed the control connection's TLS session.
    let log = wharf.log_text();
    assert!(
        log.contains("resumed=true version=Some(TLSv1_2)")
            || log.contains("version=Some(TLSv1_2) resumed=true"),
        "no TLS 1.2 data connection resumed its session:\n{log}"
    );
    assert!(
        log.contains("version=Some(TLSv1_3) resumed=true"),
        "no TLS 1.3 data connection resumed its session:\n{log}"
    );

    // Listings: LIST and NLST.
    let out = curl(&[&ftps_url(port, "/")]).await;
    ok(&out, "curl LIST");
    let list = stdout(&out);
    assert!(
        list.lines()
            .any(|l| l.ends_with(" small.bin") && l.contains(" 1024 ")),
        "{list}"
    );
    let out = curl(&["--list-only", &ftps_url(port, "/")]).await;
    ok(&out, "curl NLST");
    let mut names: Vec<_> = stdout(&out).lines().map(str::to_owned).collect();
    names.sort();
    assert_eq!(names, ["medium.bin", "small.bin"]);

    // Download resume: curl continues a partial local copy with REST + RETR.
    let data = read_file(dir.path(), "medium.bin");
    write_file(dir.path(), "partial.bin", &data[..3 * MIB + 5]);
    let out = curl(&[
        "-C",
        "-",
        "-o",
        "partial.bin",
        &ftps_url(port, "/medium.bin"),
    ])
    .await;
    ok(&out, "curl download resume");
    assert_eq!(sha256(&read_file(dir.path(), "partial.bin")), sha256(&data));

    // Upload resume: the server has the first part; curl -C - sends the rest.
    write_file(dir.path(), "first-part.bin", &data[..4 * MIB + 3]);
    let url = ftps_url(port, "/resumed.bin");
    ok(
        &curl(&["-T", "first-part.bin", &url]).await,
        "curl upload of the first part",
    );
    ok(
        &curl(&["-C", "-", "-T", "medium.bin", &url]).await,
        "curl upload resume",
    );
    assert_eq!(
        sha256_file(&object(&wharf, "carol/resumed.bin")),
        sha256(&data)
    );
    // --append (APPE).
    write_file(dir.path(), "a.txt", b"one\n");
    write_file(dir.path(), "b.txt", b"two\n");
    let url = ftps_url(port, "/appended.txt");
    ok(&curl(&["--append", "-T", "a.txt", &url]).await, "APPE 1");
    ok(&curl(&["--append", "-T", "b.txt", &url]).await, "APPE 2");
    assert_eq!(
        std::fs::read(object(&wharf, "carol/appended.txt")).unwrap(),
        b"one\ntwo\n"
    );

    // Absolute paths outside the home do not exist; `..` stays inside.
    let out = curl(&["-o", "x", &ftps_url(port, "//etc/passwd")]).await;
    assert!(!out.status.success(), "read /etc/passwd:\n{}", text(&out));
    let out = curl(&["-o", "y", &ftps_url(port, "/../../../small.bin")]).await;
    ok(&out, "curl download through ..");
    assert_eq!(read_file(dir.path(), "y").len(), 1024);

    // A plaintext login is refused before the password is sent; a wrong password is refused.
    let out = Command::new("curl")
        .args(["-sS", "--user", &format!("{user}:{password}")])
        .arg(ftps_url(port, "/"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "plaintext login:\n{}", text(&out));
    let out = curl_ftps(&user, "wrong-password", dir.path(), &[&ftps_url(port, "/")]).await;
    assert!(!out.status.success(), "wrong password:\n{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("530"),
        "{}",
        text(&out)
    );

    // Rename (RNFR/RNTO) and delete through curl's quote commands; MKD and RMD.
    let out = curl(&[
        "-Q",
        "MKD archive",
        "-Q",
        "RNFR small.bin",
        "-Q",
        "RNTO archive/small.bin",
        "-Q",
        "DELE appended.txt",
        &ftps_url(port, "/"),
    ])
    .await;
    ok(&out, "curl MKD/RNFR/RNTO/DELE");
    assert!(object(&wharf, "carol/archive/small.bin").exists());
    assert!(!object(&wharf, "carol/small.bin").exists());
    assert!(!object(&wharf, "carol/appended.txt").exists());
    let out = curl(&[
        "-Q",
        "DELE archive/small.bin",
        "-Q",
        "RMD archive",
        &ftps_url(port, "/"),
    ])
    .await;
    ok(&out, "curl DELE/RMD");
    assert!(!object(&wharf, "carol/archive").exists());
}

// ---------------------------------------------------------------------------------------------
// lftp

/// lftp (GnuTLS) with TLS 1.2 and with TLS 1.3: put/get with checksums, ls, mkdir, mv, rm,
/// rmdir, and resume of a download (`get -c`) and of an upload (`put -c`).
#[tokio::test]
async fn lftp_round_trips_and_resumes_with_tls12_and_tls13() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/dave", json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(10 * MIB + 17);
    write_file(dir.path(), "data.bin", &data);
    for (tls, tag) in [(TLS12, "12"), (TLS13, "13")] {
        let commands = format!(
            "mkdir d{tag}\n\
             put data.bin -o d{tag}/data.bin\n\
             get d{tag}/data.bin -o back{tag}.bin\n\
             cls -l d{tag}\n\
             mv d{tag}/data.bin d{tag}/moved.bin\n\
             cls d{tag}"
        );
        let out = lftp(
            wharf.ftps_port,
            &user,
            &password,
            tls,
            dir.path(),
            &commands,
        )
        .await;
        ok(&out, &format!("lftp TLS 1.{}", &tag[1..]));
        let listing = stdout(&out);
        assert!(
            listing.contains("data.bin") && listing.contains("moved.bin"),
            "{listing}"
        );
        assert_eq!(
            sha256(&read_file(dir.path(), &format!("back{tag}.bin"))),
            sha256(&data)
        );
        let stored = object(&wharf, &format!("dave/d{tag}/moved.bin"));
        assert_eq!(sha256_file(&stored), sha256(&data));
    }

    // Download resume: a partial local copy is continued (REST + RETR).
    write_file(dir.path(), "partial.bin", &data[..2 * MIB + 1]);
    let out = lftp(
        wharf.ftps_port,
        &user,
        &password,
        TLS13,
        dir.path(),
        "get -c d13/moved.bin -o partial.bin",
    )
    .await;
    ok(&out, "lftp get -c");
    assert_eq!(sha256(&read_file(dir.path(), "partial.bin")), sha256(&data));

    // Upload resume: the server holds the first part, `put -c` sends the rest.
    write_file(dir.path(), "head.bin", &data[..5 * MIB]);
    let out = lftp(
        wharf.ftps_port,
        &user,
        &password,
        TLS12,
        dir.path(),
        "put head.bin -o resumed.bin\nput -c data.bin -o resumed.bin",
    )
    .await;
    ok(&out, "lftp put -c");
    assert_eq!(
        sha256_file(&object(&wharf, "dave/resumed.bin")),
        sha256(&data)
    );

    // Clean up: rm, rmdir.
    let out = lftp(
        wharf.ftps_port,
        &user,
        &password,
        TLS13,
        dir.path(),
        "rm d12/moved.bin d13/moved.bin resumed.bin\nrmdir d12 d13\ncls",
    )
    .await;
    ok(&out, "lftp rm/rmdir");
    assert!(
        walk_files(&wharf.bucket_dir().join("dave"))
            .iter()
            .all(|p| p.file_name().is_some_and(|n| n == ".wharf-dir"))
    );
}

// ---------------------------------------------------------------------------------------------
// One storage, two protocols

#[tokio::test]
async fn files_uploaded_over_ftps_are_seen_over_sftp_and_the_reverse() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/erin", json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let over_ftps = random_bytes(3 * MIB + 1);
    write_file(dir.path(), "from-ftps.bin", &over_ftps);
    let out = curl_ftps(
        &user,
        &password,
        dir.path(),
        &[
            "-T",
            "from-ftps.bin",
            &ftps_url(wharf.ftps_port, "/from-ftps.bin"),
        ],
    )
    .await;
    ok(&out, "curl upload");

    let sftp = rust_sftp(wharf.sftp_port, &user, &password)
        .await
        .expect("sftp login");
    let back = sftp.read("/from-ftps.bin").await.expect("sftp read");
    assert_eq!(sha256(&back), sha256(&over_ftps));
    let over_sftp = random_bytes(MIB + 5);
    sftp.put("/from-sftp.bin", &over_sftp)
        .await
        .expect("sftp put");

    let out = curl_ftps(
        &user,
        &password,
        dir.path(),
        &[
            "-o",
            "from-sftp.bin",
            &ftps_url(wharf.ftps_port, "/from-sftp.bin"),
        ],
    )
    .await;
    ok(&out, "curl download");
    assert_eq!(
        sha256(&read_file(dir.path(), "from-sftp.bin")),
        sha256(&over_sftp)
    );
}

// ---------------------------------------------------------------------------------------------
// Uploads become visible only when complete

/// A client killed in the middle of a STOR leaves nothing visible: a new file does not appear,
/// and a file being replaced keeps its previous content.
#[tokio::test]
async fn a_killed_upload_leaves_no_partial_file() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/frank", json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "v1.txt", b"version 1");
    let out = curl_ftps(
        &user,
        &password,
        dir.path(),
        &["-T", "v1.txt", &ftps_url(wharf.ftps_port, "/victim.bin")],
    )
    .await;
    ok(&out, "upload of version 1");
    write_file(dir.path(), "big.bin", &random_bytes(64 * MIB));

    for target in ["/victim.bin", "/new.bin"] {
        let curl = require_tool("curl", "apt-get install -y curl");
        let mut child = Command::new(curl)
            .args(["-sS", "--ssl-reqd", "-k", "--limit-rate", "4M"])
            .arg("--user")
            .arg(format!("{user}:{password}"))
            .args(["-T", "big.bin"])
            .arg(ftps_url(wharf.ftps_port, target))
            .current_dir(dir.path())
            .kill_on_drop(true)
            .spawn()
            .expect("start curl");
        // Let it get well into the upload (past the first multipart parts), then kill it.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "curl finished too soon"
        );
        child.kill().await.expect("kill curl");
        let aborted = wait_for(Duration::from_secs(20), || {
            wharf.log_text().matches("upload aborted").count()
                >= if target == "/victim.bin" { 1 } else { 2 }
        })
        .await;
        assert!(aborted, "the upload was not aborted:\n{}", wharf.log_text());
    }
    assert_eq!(
        std::fs::read(object(&wharf, "frank/victim.bin")).unwrap(),
        b"version 1"
    );
    assert!(!object(&wharf, "frank/new.bin").exists());
    // Nothing else is left in the home (no staging files). The abort removes them right after
    // it is logged, so allow it a moment on a loaded machine.
    let leftovers = || -> Vec<_> {
        let mut left = staging_files(&wharf.bucket_dir());
        left.extend(
            walk_files(&wharf.bucket_dir().join("frank"))
                .into_iter()
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n != ".wharf-dir" && n != "victim.bin")
                }),
        );
        left
    };
    wait_for(Duration::from_secs(10), || leftovers().is_empty()).await;
    let left = leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
    let out = curl_ftps(
        &user,
        &password,
        dir.path(),
        &["--list-only", &ftps_url(wharf.ftps_port, "/")],
    )
    .await;
    ok(&out, "listing");
    assert_eq!(stdout(&out).trim(), "victim.bin");
}

/// Polls `condition` every 50 ms until it holds or `limit` passes.
async fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

// ---------------------------------------------------------------------------------------------
// A large file

/// The 300 MiB file of tests/matrix.rs (same cached path in Cargo's scratch directory), made
/// here if that test has not made it yet.
fn huge_file() -> &'static (PathBuf, String) {
    static HUGE: OnceLock<(PathBuf, String)> = OnceLock::new();
    const LEN: u64 = 300 * MIB as u64;
    HUGE.get_or_init(|| {
        use std::io::Write;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).expect("CARGO_TARGET_TMPDIR");
        let path = dir.join("matrix-300MiB-random.bin");
        if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(LEN) {
            let partial = dir.join(format!("matrix-300MiB-random.bin.{}", uuid_like()));
            let mut file =
                std::io::BufWriter::new(std::fs::File::create(&partial).expect("create"));
            for _ in 0..LEN / MIB as u64 {
                file.write_all(&random_bytes(MIB)).expect("write");
            }
            file.into_inner().expect("flush").sync_all().expect("sync");
            std::fs::rename(&partial, &path).expect("rename");
        }
        let sha = sha256_file(&path);
        (path, sha)
    })
}

#[tokio::test]
async fn a_300_mib_file_round_trips_over_curl() {
    let (huge, sha) = huge_file();
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/grace", json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let source = huge.display().to_string();
    let out = curl_ftps(
        &user,
        &password,
        dir.path(),
        &["-T", &source, &ftps_url(wharf.ftps_port, "/huge.bin")],
    )
    .await;
    ok(&out, "curl upload of 300 MiB");
    let out = curl_ftps(
        &user,
        &password,
        dir.path(),
        &["-o", "huge.back", &ftps_url(wharf.ftps_port, "/huge.bin")],
    )
    .await;
    ok(&out, "curl download of 300 MiB");
    eprintln!(
        "ftps: curl put+get of 300 MiB took {:.1?}",
        started.elapsed()
    );
    assert_eq!(&sha256_file(&dir.path().join("huge.back")), sha);
    assert_eq!(&sha256_file(&object(&wharf, "grace/huge.bin")), sha);
}

// ---------------------------------------------------------------------------------------------
// Implicit TLS

/// curl (`ftps://`), ftplib (a TLS socket from the start) and lftp (`ftps://`) on the implicit
/// port: same users and files as the explicit one.
#[tokio::test]
async fn implicit_tls_with_curl_ftplib_and_lftp() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/ivan", json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let port = wharf.ftps_implicit_port;

    // curl: upload, download, listing.
    let data = random_bytes(2 * MIB + 3);
    write_file(dir.path(), "c.bin", &data);
    let url = implicit_ftps_url(port, "/c.bin");
    ok(
        &curl_ftps(&user, &password, dir.path(), &["-T", "c.bin", &url]).await,
        "curl implicit upload",
    );
    ok(
        &curl_ftps(&user, &password, dir.path(), &["-o", "c.back", &url]).await,
        "curl implicit download",
    );
    assert_eq!(sha256(&read_file(dir.path(), "c.back")), sha256(&data));
    let out = curl_ftps(
        &user,
        &password,
        dir.path(),
        &["--list-only", &implicit_ftps_url(port, "/")],
    )
    .await;
    ok(&out, "curl implicit NLST");
    assert_eq!(stdout(&out).trim(), "c.bin");
    // The same file over explicit FTPS.
    ok(
        &curl_ftps(
            &user,
            &password,
            dir.path(),
            &["-o", "c.explicit", &ftps_url(wharf.ftps_port, "/c.bin")],
        )
        .await,
        "curl explicit download",
    );
    assert_eq!(sha256(&read_file(dir.path(), "c.explicit")), sha256(&data));

    // Python's ftplib.
    let out = ftplib_client("implicit", port, &user, &password).await;
    ok(&out, "ftplib implicit");
    assert!(
        stdout(&out).contains("ftplib implicit: ok"),
        "{}",
        text(&out)
    );

    // lftp with TLS 1.2 and 1.3.
    for (tls, tag) in [(TLS12, "12"), (TLS13, "13")] {
        let out = lftp_implicit(
            port,
            &user,
            &password,
            tls,
            dir.path(),
            &format!("put c.bin -o l{tag}.bin\nget l{tag}.bin -o l{tag}.back\ncls -l"),
        )
        .await;
        ok(&out, &format!("lftp implicit TLS 1.{}", &tag[1..]));
        assert!(
            stdout(&out).contains(&format!("l{tag}.bin")),
            "{}",
            text(&out)
        );
        assert_eq!(
            sha256(&read_file(dir.path(), &format!("l{tag}.back"))),
            sha256(&data)
        );
    }
    // A plaintext client on the implicit port gets nothing it could send a password to.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--user",
            &format!("{user}:{password}"),
        ])
        .arg(ftps_url(port, "/"))
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "plaintext on the implicit port:\n{}",
        text(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// Data connections

/// After `PROT C`, PASV, EPSV and every transfer on a port opened before are refused (`534`);
/// active mode is refused (`502`); a failed transfer resets REST; EPSV ALL works.
#[tokio::test]
async fn clear_data_connections_are_refused_for_pasv_and_epsv() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/judy", json!({})).await;
    let out = ftplib_client("prot-c", wharf.ftps_port, &user, &password).await;
    ok(&out, "ftplib prot-c");
    assert!(stdout(&out).contains("ftplib prot-c: ok"), "{}", text(&out));
}

/// Plaintext, an empty connection or random bytes on a passive port fail that transfer (`425`),
/// an upload cut without a TLS close is aborted (`426`), and the session goes on working.
#[tokio::test]
async fn garbage_on_a_passive_port_fails_only_that_transfer() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/kim", json!({})).await;
    let out = ftplib_client("garbage", wharf.ftps_port, &user, &password).await;
    ok(&out, "ftplib garbage");
    assert!(
        stdout(&out).contains("ftplib garbage: ok"),
        "{}",
        text(&out)
    );
    assert!(!object(&wharf, "kim/cut.txt").exists());
    let log = wharf.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// vsftpd fails some of 20 concurrent small TLS 1.3 uploads with `426` (research/peers.md
/// finding 5): every one must succeed here.
#[tokio::test]
async fn twenty_concurrent_small_uploads_over_tls13_all_succeed() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/load", json!({"maxSessions": 25})).await;
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("f{i}.bin"), random_bytes(2 * MIB + i)))
        .collect();
    for (name, data) in &files {
        write_file(dir.path(), name, data);
    }
    let uploads = files.iter().map(|(name, _)| {
        let url = ftps_url(wharf.ftps_port, &format!("/{name}"));
        let (user, password, dir) = (user.clone(), password.clone(), dir.path().to_owned());
        let name = name.clone();
        async move { curl_ftps(&user, &password, &dir, &["--tlsv1.3", "-T", &name, &url]).await }
    });
    let outputs = futures::future::join_all(uploads).await;
    for (out, (name, _)) in outputs.iter().zip(&files) {
        ok(out, &format!("concurrent upload of {name}"));
    }
    for (name, data) in &files {
        assert_eq!(
            sha256_file(&object(&wharf, &format!("load/{name}"))),
            sha256(data),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol

/// With `--ftps-proxy-protocol`, the client named by a v1 or v2 header is the one the gateway
/// and the control plane see (logs, login, data-connection check); connections without a
/// header are dropped.
#[tokio::test]
async fn proxy_protocol_v1_and_v2_give_the_real_client_address() {
    let wharf = Wharf::start_with(StartOptions {
        extra_args: vec![
            "--ftps-proxy-protocol".into(),
            "--trusted-proxies".into(),
            "127.0.0.1".into(),
        ],
        ..StartOptions::default()
    })
    .await;
    let (user, password) = wharf.create_user("/lena", json!({})).await;
    for (version, ip) in [("1", "203.0.113.7"), ("2", "198.51.100.9")] {
        let out =
            ftplib_client_with("proxy", wharf.ftps_port, &user, &password, &[version, ip]).await;
        ok(&out, &format!("ftplib proxy v{version}"));
        let log = wharf.log_text();
        assert!(
            log.contains(&format!("client={ip}:40000")),
            "the session span does not show {ip}:\n{log}"
        );
        assert!(
            log.contains(&format!("client_ip=\"{ip}\"")),
            "the login did not carry {ip}:\n{log}"
        );
    }
    assert!(
        wharf
            .log_text()
            .contains("connection dropped: no valid PROXY header"),
        "{}",
        wharf.log_text()
    );
}

// ---------------------------------------------------------------------------------------------
// Implicit TLS protects data from the start

/// A client on the implicit port that sends neither PBSZ nor PROT (it takes implicit TLS to
/// mean protected data) gets PASV, EPSV and transfers; `PROT C` still refuses every transfer
/// with `534`, as on explicit sessions, until `PROT P`.
#[tokio::test]
async fn implicit_sessions_start_with_prot_p_and_prot_c_still_refuses_clear_data() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/ike", json!({})).await;
    let out = ftplib_client(
        "implicit-protected",
        wharf.ftps_implicit_port,
        &user,
        &password,
    )
    .await;
    ok(&out, "ftplib implicit-protected");
    assert!(
        stdout(&out).contains("ftplib implicit-protected: ok"),
        "{}",
        text(&out)
    );
    assert!(!object(&wharf, "ike/clear.bin").exists());
    // Explicit sessions still need PROT P: the prot-c mode asserts `534` for each step.
    let out = ftplib_client("prot-c", wharf.ftps_port, &user, &password).await;
    ok(&out, "ftplib prot-c");
}

// ---------------------------------------------------------------------------------------------
// Integrity: HASH and the XSHA aliases

/// HASH with each offered algorithm (OPTS HASH, FEAT's star), RANG ranges, the XSHA256,
/// XSHA512, XSHA1 and XMD5 aliases, and the errors, checked against Python's hashlib.
#[tokio::test]
async fn hash_returns_the_digest_of_the_file_or_a_range_of_it() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/hal", json!({})).await;
    let out = ftplib_client("hash", wharf.ftps_port, &user, &password).await;
    ok(&out, "ftplib hash");
    assert!(stdout(&out).contains("ftplib hash: ok"), "{}", text(&out));
}

/// A read-only user hashes what it may read; a write-only user hashes only what it uploaded
/// in the session (another partner's file is `550`, its digest would leak the content).
#[tokio::test]
async fn hash_follows_read_permission_and_lets_a_write_only_user_check_its_upload() {
    let wharf = Wharf::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (owner, owner_pw) = wharf.create_user("/hashdrop", json!({})).await;
    write_file(dir.path(), "theirs.txt", b"someone else's file");
    let out = curl_ftps(
        &owner,
        &owner_pw,
        dir.path(),
        &[
            "-T",
            "theirs.txt",
            &ftps_url(wharf.ftps_port, "/theirs.txt"),
        ],
    )
    .await;
    ok(&out, "curl upload of theirs.txt");
    let (reader, reader_pw) = wharf
        .create_user("/hashdrop", json!({"permissions": "read-only"}))
        .await;
    let out = ftplib_client("hash-read-only", wharf.ftps_port, &reader, &reader_pw).await;
    ok(&out, "ftplib hash-read-only");
    let (dropper, dropper_pw) = wharf
        .create_user("/hashdrop", json!({"permissions": "write-only"}))
        .await;
    let out = ftplib_client("hash-write-only", wharf.ftps_port, &dropper, &dropper_pw).await;
    ok(&out, "ftplib hash-write-only");
    assert!(
        stdout(&out).contains("ftplib hash-write-only: ok"),
        "{}",
        text(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// MFMT, STAT <path>, OPTS MLST

/// MFMT is accepted as a no-op (the store keeps its own times) and its reply tells the file's
/// real modification time; a missing file is `550`, a malformed time `501`.
#[tokio::test]
async fn mfmt_is_accepted_and_answers_the_real_modification_time() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/mona", json!({})).await;
    let out = ftplib_client("mfmt", wharf.ftps_port, &user, &password).await;
    ok(&out, "ftplib mfmt");
    assert!(stdout(&out).contains("ftplib mfmt: ok"), "{}", text(&out));
}

/// `STAT <path>` lists a file or a whole directory (2500 entries, more than one page) over the
/// control connection as LIST would; a missing path is `550`; during a transfer STAT still
/// reports the transfer.
#[tokio::test]
async fn stat_with_a_path_lists_it_over_the_control_connection() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/sam", json!({})).await;
    let big = wharf.bucket_dir().join("sam/big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join(".wharf-dir"), b"").unwrap();
    for i in 0..2500 {
        std::fs::write(big.join(format!("f{i:04}.txt")), i.to_string()).unwrap();
    }
    let out = ftplib_client("stat", wharf.ftps_port, &user, &password).await;
    ok(&out, "ftplib stat");
    assert!(stdout(&out).contains("ftplib stat: ok"), "{}", text(&out));
}

/// `OPTS MLST` selects which facts MLST and MLSD show (any subset, unknown ones ignored, an
/// empty list none), and FEAT stars the selected ones.
#[tokio::test]
async fn opts_mlst_selects_the_facts_of_mlst_and_mlsd() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/olga", json!({})).await;
    let out = ftplib_client("mlst-opts", wharf.ftps_port, &user, &password).await;
    ok(&out, "ftplib mlst-opts");
    assert!(
        stdout(&out).contains("ftplib mlst-opts: ok"),
        "{}",
        text(&out)
    );
}

/// A data connection must resume the control connection's TLS session by default, so that
/// another program on the client's address cannot race the client to its passive port and
/// take its data: Python's ftplib as it comes (no reuse) is refused with vsftpd's 522, the
/// session goes on, and `--ftps-tls-session-resumption enabled` accepts it. Every other client
/// of the suite (curl, lftp, ftplib with the usual fix) resumes.
#[tokio::test]
async fn data_connections_must_resume_the_control_session_unless_allowed() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/reuse", json!({})).await;
    let out = ftplib_client_with("no-reuse", wharf.ftps_port, &user, &password, &["refused"]).await;
    ok(&out, "ftplib without session reuse, enforced");

    let lenient = Wharf::start_with(StartOptions {
        extra_args: vec!["--ftps-tls-session-resumption".into(), "enabled".into()],
        ..StartOptions::default()
    })
    .await;
    let (user, password) = lenient.create_user("/reuse", json!({})).await;
    let out = ftplib_client_with(
        "no-reuse",
        lenient.ftps_port,
        &user,
        &password,
        &["accepted"],
    )
    .await;
    ok(&out, "ftplib without session reuse, enabled");
}
