//! Real object-storage servers for tests: **s3s-fs** (the S3 protocol over a local directory)
//! and **Azurite** (Microsoft's Azure Blob Storage emulator). Each server runs as a child
//! process on a free loopback port with a throw-away directory, and is killed when its handle
//! is dropped.
//!
//! A missing server binary fails the test with the command that installs it; nothing is
//! skipped. `.ci/run` installs both.
//!
//! This file needs nothing beyond `std`, `sha2` and `tempfile`, so that the control-plane tests
//! and the end-to-end tests (`tests/s3.rs` at the workspace root) can include it too.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Access key of every s3s-fs server started here.
pub const S3_ACCESS_KEY: &str = "wharf-test-access-key";
/// Secret key of every s3s-fs server started here.
pub const S3_SECRET_KEY: &str = "wharf-test-secret-key-0123456789";

/// Azurite's account and its well-known key (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long a server may take to open its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// `name` on `PATH` (or in `~/.cargo/bin`, where `cargo install` puts binaries), or a panic
/// that says how to install it.
fn find_binary(name: &str, env_override: &str, install: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_override) {
        return PathBuf::from(path);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is needed by this test and was not found on PATH or in ~/.cargo/bin. \
                 Install it with:\n    {install}\n(or point {env_override} at the binary; \
                 `.ci/run` installs it)"
            )
        })
}

/// A child process that is killed (and reaped) on drop, with its output in a log file.
struct Process {
    child: Child,
    log: PathBuf,
    what: &'static str,
}

impl Process {
    fn spawn(mut command: Command, log: PathBuf, what: &'static str) -> Process {
        let out = std::fs::File::create(&log).expect("server log file");
        let err = out.try_clone().expect("server log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Process { child, log, what }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `port` accepts connections; panics with the server's log if it exits or
    /// takes too long.
    fn wait_for_port(&mut self, port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before opening port {port}; its log:\n{}",
                    self.what,
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not open port {port} within {START_TIMEOUT:?}; its log:\n{}",
                    self.what,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// s3s-fs

/// How to install the s3s-fs these tests need. 0.15.0 declares rustc 1.96 but builds with 1.95;
/// 0.14.1 answers `HEAD` of a key that is a directory on its disk (`a` when `a/x` exists) with
/// a 500 instead of a 404 (fixed in 0.15.0), which breaks every directory lookup.
pub const S3S_FS_INSTALL: &str =
    "cargo install s3s-fs --version 0.15.0 --features binary --locked --ignore-rust-version";

/// Fails the test, saying how to upgrade, if `binary` is older than s3s-fs 0.15.
fn check_s3s_fs_version(binary: &Path) {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let text = String::from_utf8_lossy(&output.stdout);
    let version: Vec<u64> = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    assert!(
        version.as_slice() >= [0, 15].as_slice(),
        "{} is '{}'; these tests need s3s-fs 0.15 or newer (0.14 answers HEAD of a \
         directory-like key with a 500). Install it with:\n    {S3S_FS_INSTALL} --force",
        binary.display(),
        text.trim()
    );
}

/// An s3s-fs server: `s3s-fs --host 127.0.0.1 --port P --access-key K --secret-key S ROOT`.
/// Buckets are the sub-directories of `ROOT`, objects the files below them (a key `a/b` is the
/// file `ROOT/bucket/a/b`); multipart uploads in progress are files `ROOT/.upload-<id>.json`
/// and `ROOT/.upload_id-<id>.part-<n>`.
pub struct S3Server {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Process,
}

impl S3Server {
    /// Starts a server with the given buckets (created as directories first).
    pub fn start(buckets: &[&str]) -> S3Server {
        let binary = find_binary("s3s-fs", "WHARF_TEST_S3S_FS", S3S_FS_INSTALL);
        check_s3s_fs_version(&binary);
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("s3s-fs root");
        for bucket in buckets {
            std::fs::create_dir(root.join(bucket)).expect("bucket directory");
        }
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&root)
            .env("RUST_LOG", "warn");
        let mut process = Process::spawn(command, dir.path().join("s3s-fs.log"), "s3s-fs");
        process.wait_for_port(port);
        S3Server { port, dir, process }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory that holds the buckets.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A bucket's directory.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root().join(bucket)
    }

    /// Adds a bucket while the server runs.
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir(self.bucket_dir(bucket)).expect("bucket directory");
    }

    /// The object_store options that reach this server (path-style, plain HTTP).
    pub fn options(&self) -> BTreeMap<String, String> {
        [
            ("aws_endpoint", self.endpoint()),
            ("aws_access_key_id", S3_ACCESS_KEY.to_owned()),
            ("aws_secret_access_key", S3_SECRET_KEY.to_owned()),
            ("aws_region", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Multipart uploads started and neither completed nor aborted (their state files).
    pub fn pending_multipart_uploads(&self) -> Vec<String> {
        let mut pending: Vec<String> = std::fs::read_dir(self.root())
            .expect("s3s-fs root")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".upload-") || name.starts_with(".upload_id-"))
            .collect();
        pending.sort();
        pending
    }

    /// The keys stored in `bucket`, sorted (the files below its directory).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        collect_files(&self.bucket_dir(bucket), "", &mut keys);
        keys.sort();
        keys
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }
}

fn collect_files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = format!("{prefix}{name}");
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_files(&entry.path(), &format!("{key}/"), out);
        } else {
            out.push(key);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Azurite

/// An Azurite blob server: `azurite-blob --blobHost 127.0.0.1 --blobPort P --location DIR
/// --silent --skipApiVersionCheck --loose --disableTelemetry`, with the emulator account
/// `devstoreaccount1` served path-style (`http://127.0.0.1:P/devstoreaccount1/container/blob`).
pub struct AzuriteServer {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Process,
}

impl AzuriteServer {
    /// Starts a server with the given containers (created through its REST API).
    pub fn start(containers: &[&str]) -> AzuriteServer {
        let binary = find_binary(
            "azurite-blob",
            "WHARF_TEST_AZURITE_BLOB",
            "npm install -g azurite",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("azurite data dir");
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(&data)
            // object_store speaks a newer API version than Azurite knows; it sends headers
            // Azurite does not implement; and the emulator must not phone home.
            .args([
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
            ]);
        let mut process = Process::spawn(command, dir.path().join("azurite.log"), "azurite-blob");
        process.wait_for_port(port);
        let server = AzuriteServer { port, dir, process };
        for container in containers {
            server.create_container(container);
        }
        server
    }

    /// The blob endpoint, without the account.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// object_store options through the emulator switch (account and key filled in by Wharf).
    pub fn emulator_options(&self) -> BTreeMap<String, String> {
        [
            ("azure_storage_use_emulator", "true".to_owned()),
            ("azure_storage_endpoint", self.endpoint()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// object_store options as for a real account: name, key and the account's endpoint.
    pub fn account_options(&self) -> BTreeMap<String, String> {
        [
            ("azure_storage_account_name", AZURITE_ACCOUNT.to_owned()),
            ("azure_storage_access_key", AZURITE_KEY.to_owned()),
            (
                "azure_storage_endpoint",
                format!("{}/{AZURITE_ACCOUNT}", self.endpoint()),
            ),
            ("azure_allow_http", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Creates a container (Create Container, signed with the account's shared key).
    pub fn create_container(&self, container: &str) {
        let (status, body) = self.signed_request(
            "PUT",
            &format!("/{AZURITE_ACCOUNT}/{container}"),
            &[("restype", "container")],
        );
        assert_eq!(status, 201, "creating container {container}: {body}");
    }

    /// Blob names in `container` (List Blobs, one page); with `uncommitted`, also blobs that
    /// have staged blocks but were never committed (an upload in progress or abandoned).
    pub fn blob_names(&self, container: &str, uncommitted: bool) -> Vec<String> {
        let mut query = vec![("comp", "list"), ("restype", "container")];
        if uncommitted {
            query.push(("include", "uncommittedblobs"));
        }
        let (status, body) =
            self.signed_request("GET", &format!("/{AZURITE_ACCOUNT}/{container}"), &query);
        assert_eq!(status, 200, "listing container {container}: {body}");
        body.split("<Name>")
            .skip(1)
            .filter_map(|rest| rest.split("</Name>").next())
            .map(str::to_owned)
            .collect()
    }

    /// One request signed with SharedKey; returns the status and body.
    fn signed_request(&self, method: &str, path: &str, query: &[(&str, &str)]) -> (u16, String) {
        let date = http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let mut sorted: Vec<&(&str, &str)> = query.iter().collect();
        sorted.sort();
        let canonical_query: String = sorted.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
        // Verb, 11 standard headers (all empty here), x-ms-* headers, resource.
        let string_to_sign = format!(
            "{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}{canonical_query}"
        );
        let key = base64_decode(AZURITE_KEY);
        let signature = base64_encode(&hmac_sha256(&key, string_to_sign.as_bytes()));
        let query_string: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let request = format!(
            "{method} {path}?{} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-ms-date: {date}\r\n\
             x-ms-version: {version}\r\nAuthorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            query_string.join("&"),
            port = self.port,
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to Azurite");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(request.as_bytes())
            .expect("send to Azurite");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .expect("read from Azurite");
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, response)
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }
}

/// `t` as an HTTP date (RFC 9110 IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Just enough crypto for SharedKey: HMAC-SHA256 (RFC 2104) and base64 (RFC 4648).

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block_key = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    block_key.resize(BLOCK, 0);
    let inner_pad: Vec<u8> = block_key.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block_key.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = BASE64
            .iter()
            .position(|&b| b == c)
            .expect("base64 character") as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn crypto_helpers_match_known_answers() {
    // RFC 4231, test case 2.
    assert_eq!(
        hmac_sha256(b"Jefe", b"what do ya want for nothing?")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64_encode(b"fooba"), "Zm9vYmE=");
    assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
    assert_eq!(base64_decode("Zm9vYg=="), b"foob");
    assert_eq!(
        base64_decode(&base64_encode(&[0, 255, 7, 128])),
        [0, 255, 7, 128]
    );
    let at = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
    assert_eq!(http_date(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(http_date(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(
        http_date(at(1_709_210_096)),
        "Thu, 29 Feb 2024 12:34:56 GMT"
    );
}
