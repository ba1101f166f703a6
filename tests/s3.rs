//! End to end on S3: the real `wharf serve` binary with its buckets on a real S3-compatible
//! server (s3s-fs, started per test on a free port), users made through the API and the CLI,
//! and OpenSSH's `sftp` moving files that must land as objects on the server.

mod common;
#[path = "../crates/wharf-vfs/tests/common/servers.rs"]
mod servers;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use servers::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

/// The object's bytes as s3s-fs stores them.
fn object(s3: &S3Server, bucket: &str, key: &str) -> Vec<u8> {
    std::fs::read(s3.bucket_dir(bucket).join(key))
        .unwrap_or_else(|e| panic!("object {key} in {bucket}: {e}; keys: {:?}", s3.keys(bucket)))
}

/// The put / ls / mkdir / rename / get / rm round trip of a 1 KiB and a 10 MiB file as `user`,
/// checked on the client side. Returns the two files' contents.
async fn sftp_round_trip(wharf: &Wharf, user: &str, password: &str) -> (Vec<u8>, Vec<u8>) {
    let work = tempfile::tempdir().unwrap();
    let small = random_bytes(1024);
    let big = random_bytes(10 * 1024 * 1024);
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
put small.bin keep.bin
rm small.bin
ls -l in
ls -l
";
    let out = sftp_batch(
        wharf.sftp_port,
        user,
        Auth::Password(password),
        work.path(),
        batch,
    )
    .await;
    assert!(out.status.success(), "{}\n{}", text(&out), wharf.log_text());
    assert_eq!(sha256(&read_file(work.path(), "big.back")), sha256(&big));
    assert_eq!(read_file(work.path(), "small.back"), small);
    let listing = stdout(&out);
    assert!(listing.contains("big.bin"), "{listing}");
    assert!(
        listing.contains("10485760"),
        "the size is listed: {listing}"
    );
    (small, big)
}

#[tokio::test]
async fn default_bucket_on_s3_over_openssh() {
    let s3 = S3Server::start(&["wharf-e2e"]);
    let wharf = Wharf::start_with(StartOptions {
        bucket_url: Some("s3://wharf-e2e".into()),
        // The default bucket takes its settings from the environment, as in a deployment.
        // AWS_CA_BUNDLE (set on this machine for other AWS tools) must not matter.
        env: [
            ("AWS_ENDPOINT", s3.endpoint()),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_CA_BUNDLE", "/nonexistent/ca-bundle.pem".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        ..Default::default()
    })
    .await;
    let (status, default) = wharf.api(Method::GET, "/v1/buckets/default", None).await;
    assert_eq!(status, 200, "{default}");
    assert_eq!(default["storageUrl"], "s3://wharf-e2e");

    let (user, password) = wharf.create_user("/alice", json!({})).await;
    assert_eq!(
        s3.keys("wharf-e2e"),
        ["alice/.wharf-dir"],
        "the home is created on S3"
    );
    let (small, big) = sftp_round_trip(&wharf, &user, &password).await;

    // The objects are on the server, under the user's home, whole.
    assert_eq!(
        s3.keys("wharf-e2e"),
        [
            "alice/.wharf-dir",
            "alice/in/.wharf-dir",
            "alice/in/big.bin",
            "alice/keep.bin"
        ]
    );
    assert_eq!(
        sha256(&object(&s3, "wharf-e2e", "alice/in/big.bin")),
        sha256(&big)
    );
    assert_eq!(object(&s3, "wharf-e2e", "alice/keep.bin"), small);
    assert_eq!(
        s3.pending_multipart_uploads(),
        Vec::<String>::new(),
        "no multipart upload is left behind"
    );
    assert!(
        !wharf.bucket_dir().exists(),
        "nothing went to the local disk"
    );
}

#[tokio::test]
async fn bucket_registered_through_the_cli_serves_sftp() {
    let s3 = S3Server::start(&["partner-files"]);
    let wharf = Wharf::start().await;

    // Register the S3 bucket with the CLI; the options' values are not echoed. Its payloads
    // are unsigned, as they are by default over HTTPS, so the round trip below proves that
    // a real S3 server takes them.
    let endpoint = format!("aws_endpoint={}", s3.endpoint());
    let key_id = format!("aws_access_key_id={S3_ACCESS_KEY}");
    let secret = format!("aws_secret_access_key={S3_SECRET_KEY}");
    let out = wharf
        .cli(&[
            "buckets",
            "create",
            "partners",
            "--url",
            "s3://partner-files/wharf",
            "--option",
            &endpoint,
            "--option",
            &key_id,
            "--option",
            &secret,
            "--option",
            "aws_unsigned_payload=true",
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}\n{}", text(&out), wharf.log_text());
    let created: Value = serde_json::from_slice(&out.stdout).expect("the CLI prints JSON");
    assert_eq!(created["bucketName"], "partners");
    assert_eq!(created["storageUrl"], "s3://partner-files/wharf");
    assert_eq!(
        created["optionKeys"],
        json!([
            "aws_access_key_id",
            "aws_endpoint",
            "aws_secret_access_key",
            "aws_unsigned_payload"
        ])
    );
    assert!(!stdout(&out).contains(S3_SECRET_KEY));
    let out = wharf.cli(&["buckets", "get", "partners"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("s3://partner-files/wharf"),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains(S3_SECRET_KEY));

    // The CLI reports the API's refusals: a bucket the server does not have.
    let out = wharf
        .cli(&[
            "buckets",
            "create",
            "missing",
            "--url",
            "s3://no-such-bucket",
            "--option",
            &endpoint,
            "--option",
            &key_id,
            "--option",
            &secret,
        ])
        .await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{}", text(&out));
    assert!(!stderr.contains(S3_SECRET_KEY), "{}", text(&out));
    // A malformed option is refused before any request, without echoing it.
    let out = wharf
        .cli(&[
            "buckets",
            "create",
            "bad",
            "--url",
            "s3://x",
            "--option",
            "s3cr3t-without-equals",
        ])
        .await;
    assert!(!out.status.success());
    assert!(!text(&out).contains("s3cr3t"), "{}", text(&out));

    // A user in that bucket works over SFTP, and its files land in S3 under the prefix.
    let (user, password) = wharf
        .create_user("/acme", json!({"bucketName": "partners"}))
        .await;
    let (small, big) = sftp_round_trip(&wharf, &user, &password).await;
    assert_eq!(
        s3.keys("partner-files"),
        [
            "wharf/acme/.wharf-dir",
            "wharf/acme/in/.wharf-dir",
            "wharf/acme/in/big.bin",
            "wharf/acme/keep.bin"
        ]
    );
    assert_eq!(
        sha256(&object(&s3, "partner-files", "wharf/acme/in/big.bin")),
        sha256(&big)
    );
    assert_eq!(object(&s3, "partner-files", "wharf/acme/keep.bin"), small);
    assert_eq!(s3.pending_multipart_uploads(), Vec::<String>::new());
    assert!(
        !wharf.bucket_dir().join("acme").exists(),
        "nothing went to the default bucket"
    );

    // A user of the default bucket does not see it.
    let (other, other_password) = wharf.create_user("/acme", json!({})).await;
    let work = tempfile::tempdir().unwrap();
    let out = sftp_batch(
        wharf.sftp_port,
        &other,
        Auth::Password(&other_password),
        work.path(),
        "ls -l\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stdout(&out).contains("keep.bin"), "{}", text(&out));

    // The bucket cannot go while its user lives in it; then it can, and the objects stay.
    let out = wharf.cli(&["buckets", "delete", "partners"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 user"), "{}", text(&out));
    let (status, _) = wharf
        .api(Method::DELETE, &format!("/v1/users/{user}"), None)
        .await;
    assert_eq!(status, 204);
    let out = wharf
        .cli(&["buckets", "delete", "partners", "--json"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let deleted: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(deleted["deleted"], "partners");
    let (status, _) = wharf.api(Method::GET, "/v1/buckets/partners", None).await;
    assert_eq!(status, 404);
    assert_eq!(s3.keys("partner-files").len(), 4, "the objects stay");
}

#[tokio::test]
async fn ftps_on_an_s3_bucket_round_trips_and_resumes() {
    let s3 = S3Server::start(&["wharf-ftps"]);
    let wharf = Wharf::start_with(StartOptions {
        bucket_url: Some("s3://wharf-ftps".into()),
        env: [
            ("AWS_ENDPOINT", s3.endpoint()),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        ..Default::default()
    })
    .await;
    let (user, password) = wharf.create_user("/acme", json!({})).await;
    let work = tempfile::tempdir().unwrap();
    let small = random_bytes(1024);
    let big = random_bytes(10 * 1024 * 1024 + 17);
    write_file(work.path(), "small.bin", &small);
    write_file(work.path(), "big.bin", &big);
    // The first 6 MiB of `big`, to be continued by an upload resume.
    write_file(work.path(), "head.bin", &big[..6 * 1024 * 1024]);
    let url = |path: &str| ftps_url(wharf.ftps_port, path);
    let curl = async |args: &[&str]| {
        let out = curl_ftps(&user, &password, work.path(), args).await;
        assert!(out.status.success(), "{}\n{}", text(&out), wharf.log_text());
        out
    };

    curl(&["-T", "small.bin", &url("/small.bin")]).await;
    curl(&["-T", "big.bin", &url("/big.bin")]).await;
    curl(&["-o", "big.back", &url("/big.bin")]).await;
    assert_eq!(sha256(&read_file(work.path(), "big.back")), sha256(&big));

    // Download resume: REST + RETR from the middle.
    write_file(work.path(), "partial.back", &big[..3_000_000]);
    curl(&["-C", "-", "-o", "partial.back", &url("/big.bin")]).await;
    assert_eq!(
        sha256(&read_file(work.path(), "partial.back")),
        sha256(&big)
    );

    // Upload resume: the first 6 MiB, then the rest continued from the server's size.
    curl(&["-T", "head.bin", &url("/resumed.bin")]).await;
    curl(&["-C", "-", "-T", "big.bin", &url("/resumed.bin")]).await;
    assert_eq!(
        sha256(&object(&s3, "wharf-ftps", "acme/resumed.bin")),
        sha256(&big),
        "the resumed object is whole on S3"
    );

    // Rename and delete with raw commands; the listing shows the result.
    curl(&[
        "-Q",
        "RNFR small.bin",
        "-Q",
        "RNTO renamed.bin",
        "-Q",
        "DELE big.bin",
        "--list-only",
        &url("/"),
    ])
    .await;
    let out = curl(&["--list-only", &url("/")]).await;
    let mut names: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    names.sort();
    assert_eq!(names, ["renamed.bin", "resumed.bin"]);
    assert_eq!(object(&s3, "wharf-ftps", "acme/renamed.bin"), small);
    assert_eq!(
        s3.keys("wharf-ftps"),
        ["acme/.wharf-dir", "acme/renamed.bin", "acme/resumed.bin"]
    );
    assert_eq!(
        s3.pending_multipart_uploads(),
        Vec::<String>::new(),
        "no multipart upload is left behind"
    );
}
