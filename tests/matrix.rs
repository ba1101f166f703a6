//! The client matrix: real third-party SFTP clients (OpenSSH `sftp` and `scp`, paramiko,
//! rclone) against the real `wharf serve` binary whose default bucket is on local disk, on S3
//! (s3s-fs) or on Azure Blob Storage (Azurite). Each test starts its own store server and
//! `wharf serve` on free ports. A missing client or store server fails the test with the
//! command that installs it; nothing is skipped (`.ci/run` installs them all).
//!
//! Every test body is an `async fn(Store)`; the `matrix!` list below says on which stores it
//! runs, and each pair becomes a test named `<store>::<body>` (`s3::rclone_copy_and_list`).

#[path = "matrix/clients.rs"]
mod clients;
mod common;
#[path = "../crates/wharf-vfs/tests/common/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clients::{
    asyncssh_every_size, curl_sftp_round_trips, lftp_sftp_round_trips, psftp_every_size,
};
use common::*;
use serde_json::json;
use servers::{AzuriteServer, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};
use tokio::process::Command;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// The large file: many multipart parts on S3 and Azure, uploaded and downloaded once per store.
const HUGE_LEN: u64 = 300 * MIB as u64;
/// The bucket (S3) or container (Azure) of the default bucket.
const BUCKET: &str = "wharf-matrix";
/// The test user's home directory, i.e. the key prefix of its files.
const HOME: &str = "partner";
/// Time allowed to a client run that moves the large file.
const LONG: Duration = Duration::from_secs(480);

/// Runs each listed `async fn(Store)` as `<module>::<name>` on that module's store.
macro_rules! matrix {
    ($($module:ident($store:expr): [$($name:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $module {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let started = std::time::Instant::now();
                        super::$name($store).await;
                        eprintln!(
                            "matrix: {}::{} took {:.1?}",
                            stringify!($module),
                            stringify!($name),
                            started.elapsed()
                        );
                    }
                )*
            }
        )*
    };
}

matrix! {
    local(crate::Store::Local): [
        openssh_sftp_round_trips,
        psftp_every_size,
        asyncssh_every_size,
        lftp_sftp_round_trips,
        curl_sftp_round_trips,
        scp_up_and_down,
        paramiko_script,
        paramiko_put_and_get_every_size,
        paramiko_lazy_pipelining,
        rclone_copy_and_list,
        openssh_reput_resumes,
        killed_client_leaves_nothing,
        twenty_concurrent_sftp_sessions,
    ],
    s3(crate::Store::S3): [
        openssh_sftp_round_trips,
        psftp_every_size,
        asyncssh_every_size,
        lftp_sftp_round_trips,
        curl_sftp_round_trips,
        scp_up_and_down,
        paramiko_script,
        paramiko_put_and_get_every_size,
        paramiko_lazy_pipelining,
        rclone_copy_and_list,
        openssh_reput_resumes,
        killed_client_leaves_nothing,
        twenty_concurrent_sftp_sessions,
    ],
    azure(crate::Store::Azure): [
        openssh_sftp_round_trips,
        scp_up_and_down,
        paramiko_script,
        rclone_copy_and_list,
        openssh_reput_resumes,
        killed_client_leaves_nothing,
        twenty_concurrent_sftp_sessions,
    ],
}

// ---------------------------------------------------------------------------------------------
// The stores and the server on them

/// Where the default bucket of the server under test lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    /// `file://` in the server's data directory.
    Local,
    /// `s3://wharf-matrix` on s3s-fs, configured through the `AWS_*` environment.
    S3,
    /// `az://wharf-matrix` on Azurite, configured through the `AZURE_*` environment.
    Azure,
}

/// `wharf serve` with its default bucket on one store, and one password user in that bucket
/// with the home `/partner`.
struct Stack {
    // Declared first, so dropped first: the server stops before its store does.
    wharf: Wharf,
    s3: Option<S3Server>,
    azurite: Option<AzuriteServer>,
    user: String,
    password: String,
}

impl Stack {
    async fn start(store: Store) -> Stack {
        Self::start_with_user(store, json!({})).await
    }

    /// [`Stack::start`], with more fields for the user's `POST /v1/users` body.
    async fn start_with_user(store: Store, user_fields: serde_json::Value) -> Stack {
        let (mut s3, mut azurite) = (None, None);
        let (bucket_url, env): (Option<String>, Vec<(&str, String)>) = match store {
            Store::Local => (None, Vec::new()),
            Store::S3 => {
                let server = S3Server::start(&[BUCKET]);
                let env = vec![
                    ("AWS_ENDPOINT", server.endpoint()),
                    ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
                    ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
                    ("AWS_REGION", "us-east-1".to_owned()),
                ];
                s3 = Some(server);
                (Some(format!("s3://{BUCKET}")), env)
            }
            Store::Azure => {
                let server = AzuriteServer::start(&[BUCKET]);
                let env = vec![
                    ("AZURE_STORAGE_USE_EMULATOR", "true".to_owned()),
                    ("AZURE_STORAGE_ENDPOINT", server.endpoint()),
                ];
                azurite = Some(server);
                (Some(format!("az://{BUCKET}")), env)
            }
        };
        let wharf = Wharf::start_with(StartOptions {
            bucket_url,
            env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ..Default::default()
        })
        .await;
        let (user, password) = wharf.create_user(&format!("/{HOME}"), user_fields).await;
        Stack {
            wharf,
            s3,
            azurite,
            user,
            password,
        }
    }

    fn port(&self) -> u16 {
        self.wharf.sftp_port
    }

    fn auth(&self) -> Auth<'_> {
        Auth::Password(&self.password)
    }

    /// Runs an `sftp -b` batch in `cwd` and asserts that every command succeeded.
    async fn sftp_ok(&self, cwd: &Path, batch: &str) -> String {
        let out = sftp_batch_timeout(self.port(), &self.user, self.auth(), cwd, batch, LONG).await;
        assert!(
            out.status.success(),
            "sftp batch failed:\n{batch}\n{}\n{}",
            text(&out),
            self.diagnostics()
        );
        stdout(&out)
    }

    /// The tail of the server's log and of the store server's log, for failure messages.
    fn diagnostics(&self) -> String {
        let mut out = format!(
            "--- wharf log (tail) ---\n{}",
            tail(&self.wharf.log_text(), 80)
        );
        if let Some(s3) = &self.s3 {
            out += &format!("\n--- s3s-fs log (tail) ---\n{}", tail(&s3.log_text(), 30));
        }
        if let Some(azurite) = &self.azurite {
            out += &format!(
                "\n--- azurite log (tail) ---\n{}",
                tail(&azurite.log_text(), 30)
            );
        }
        out
    }

    /// The committed objects of the default bucket, as keys (`partner/a.bin`), sorted.
    fn stored_keys(&self) -> Vec<String> {
        let mut keys = if let Some(s3) = &self.s3 {
            s3.keys(BUCKET)
        } else if let Some(azurite) = &self.azurite {
            azurite.blob_names(BUCKET, false)
        } else {
            let root = self.wharf.bucket_dir();
            walk_files(&root).iter().map(|p| key_of(&root, p)).collect()
        };
        keys.sort();
        keys
    }

    /// SHA-256 of the object `key` as the store holds it on disk, where its bytes can be read
    /// directly (local disk and s3s-fs; Azurite keeps blobs in its own extent files).
    fn stored_sha256(&self, key: &str) -> Option<String> {
        if self.azurite.is_some() {
            return None;
        }
        let path = match &self.s3 {
            Some(s3) => s3.bucket_dir(BUCKET).join(key),
            None => self.wharf.bucket_dir().join(key),
        };
        Some(sha256_file(&path))
    }

    /// Uploads in progress or left behind: staging files on local disk,
    /// multipart uploads neither completed nor aborted on S3, blobs with staged but
    /// uncommitted blocks on Azure.
    fn unfinished_uploads(&self) -> Vec<String> {
        if let Some(s3) = &self.s3 {
            s3.pending_multipart_uploads()
        } else if let Some(azurite) = &self.azurite {
            let committed = azurite.blob_names(BUCKET, false);
            azurite
                .blob_names(BUCKET, true)
                .into_iter()
                .filter(|name| !committed.contains(name))
                .collect()
        } else {
            let root = self.wharf.bucket_dir();
            staging_files(&root)
                .iter()
                .map(|p| key_of(&root, p))
                .collect()
        }
    }

    /// Asserts that the store holds no unfinished upload (Azure has no way to discard staged
    /// blocks, which the service drops after a week, so it is not checked there).
    fn assert_no_unfinished_uploads(&self) {
        if self.azurite.is_some() {
            return;
        }
        let unfinished = self.unfinished_uploads();
        assert!(
            unfinished.is_empty(),
            "unfinished uploads left behind: {unfinished:?}\n{}",
            self.diagnostics()
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn key_of(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn file_sha(dir: &Path, name: &str) -> String {
    sha256_file(&dir.join(name))
}

/// The size that `ls -l` shows for `name` (the fifth column, as OpenSSH prints it).
fn listed_size(listing: &str, name: &str) -> Option<u64> {
    listing.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 9 && fields.last() == Some(&name) {
            fields[4].parse().ok()
        } else {
            None
        }
    })
}

/// A 300 MiB file of random bytes and its SHA-256, made once and reused by every test (of this
/// run and of later ones: it lives in Cargo's scratch directory for integration tests, so it is
/// neither leaked into /tmp nor regenerated each time; its hash is computed once per run).
struct HugeFile {
    path: PathBuf,
    sha256: String,
}

fn huge_file() -> &'static HugeFile {
    static HUGE: OnceLock<HugeFile> = OnceLock::new();
    HUGE.get_or_init(|| {
        use std::io::Write;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).expect("CARGO_TARGET_TMPDIR");
        let path = dir.join("matrix-300MiB-random.bin");
        let fresh = std::fs::metadata(&path).map(|m| m.len()).ok() != Some(HUGE_LEN);
        if fresh {
            let partial = dir.join(format!("matrix-300MiB-random.bin.{}", uuid_like()));
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&partial).expect("create the large test file"),
            );
            for _ in 0..HUGE_LEN / MIB as u64 {
                file.write_all(&random_bytes(MIB))
                    .expect("write the large file");
            }
            file.into_inner()
                .expect("flush the large file")
                .sync_all()
                .expect("sync the large file");
            std::fs::rename(&partial, &path).expect("rename the large file");
        }
        let sha256 = sha256_file(&path);
        HugeFile { path, sha256 }
    })
}

/// Polls `condition` every 20 ms until it holds or `limit` passes; returns whether it held.
async fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// OpenSSH sftp and scp

/// `put`, `ls -l` and `get` of a 1 KiB, a 10 MiB and a 300 MiB file; the copies that come back
/// and the objects in the store have the original bytes.
async fn openssh_sftp_round_trips(store: Store) {
    let huge = tokio::task::spawn_blocking(huge_file).await.unwrap();
    let stack = Stack::start(store).await;
    let work = tempfile::tempdir().unwrap();
    write_file(work.path(), "small.bin", &random_bytes(KIB));
    write_file(work.path(), "ten.bin", &random_bytes(10 * MIB));
    let batch = format!(
        "put small.bin\nput ten.bin\nput \"{}\" huge.bin\nls -l\n\
         get small.bin small.back\nget ten.bin ten.back\nget huge.bin huge.back\n",
        huge.path.display()
    );
    let started = Instant::now();
    let listing = stack.sftp_ok(work.path(), &batch).await;
    eprintln!(
        "matrix: {store:?}: sftp put+get of 1 KiB, 10 MiB and 300 MiB took {:.1?}",
        started.elapsed()
    );

    for (name, len) in [
        ("small.bin", KIB as u64),
        ("ten.bin", 10 * MIB as u64),
        ("huge.bin", HUGE_LEN),
    ] {
        assert_eq!(
            listed_size(&listing, name),
            Some(len),
            "ls -l shows {name} with its size:\n{listing}"
        );
    }
    assert_eq!(
        file_sha(work.path(), "small.back"),
        file_sha(work.path(), "small.bin")
    );
    assert_eq!(
        file_sha(work.path(), "ten.back"),
        file_sha(work.path(), "ten.bin")
    );
    assert_eq!(
        file_sha(work.path(), "huge.back"),
        huge.sha256,
        "the 300 MiB file came back different"
    );

    // The objects are in the store under the user's home, whole.
    let keys = stack.stored_keys();
    for name in ["small.bin", "ten.bin", "huge.bin"] {
        let key = format!("{HOME}/{name}");
        assert!(keys.contains(&key), "{key} is not in the store: {keys:?}");
    }
    if let Some(stored) = stack.stored_sha256(&format!("{HOME}/huge.bin")) {
        assert_eq!(stored, huge.sha256, "the stored 300 MiB object differs");
    }
    if let Some(stored) = stack.stored_sha256(&format!("{HOME}/ten.bin")) {
        assert_eq!(stored, file_sha(work.path(), "ten.bin"));
    }
    stack.assert_no_unfinished_uploads();
}

/// `scp` (SFTP mode, `-s`) up and down with a 10 MiB file.
async fn scp_up_and_down(store: Store) {
    let stack = Stack::start(store).await;
    let work = tempfile::tempdir().unwrap();
    write_file(work.path(), "ten.bin", &random_bytes(10 * MIB));
    let remote = |path: &str| format!("{}@127.0.0.1:{path}", stack.user);

    let out = scp(
        stack.port(),
        stack.auth(),
        work.path(),
        &["-s".into(), "ten.bin".into(), remote("scp.bin")],
    )
    .await;
    assert!(
        out.status.success(),
        "scp upload: {}\n{}",
        text(&out),
        stack.diagnostics()
    );
    let out = scp(
        stack.port(),
        stack.auth(),
        work.path(),
        &["-s".into(), remote("scp.bin"), "scp.back".into()],
    )
    .await;
    assert!(
        out.status.success(),
        "scp download: {}\n{}",
        text(&out),
        stack.diagnostics()
    );
    assert_eq!(
        file_sha(work.path(), "scp.back"),
        file_sha(work.path(), "ten.bin")
    );
    let key = format!("{HOME}/scp.bin");
    assert!(stack.stored_keys().contains(&key), "{key} is in the store");
    if let Some(stored) = stack.stored_sha256(&key) {
        assert_eq!(stored, file_sha(work.path(), "ten.bin"));
    }
    stack.assert_no_unfinished_uploads();
}

/// OpenSSH `reput` continues a 10 MiB file after an interrupted upload left its first
/// 3 MiB: the result is the whole file, byte for byte, on every store.
async fn openssh_reput_resumes(store: Store) {
    let stack = Stack::start(store).await;
    let work = tempfile::tempdir().unwrap();
    let full = random_bytes(10 * MIB);
    write_file(work.path(), "full.bin", &full);
    write_file(work.path(), "part.bin", &full[..3 * MIB + 17]);
    let listing = stack
        .sftp_ok(
            work.path(),
            "put part.bin big.bin\nreput full.bin big.bin\nls -l\nget big.bin big.back\n",
        )
        .await;
    assert_eq!(
        listed_size(&listing, "big.bin"),
        Some(full.len() as u64),
        "{listing}"
    );
    assert_eq!(file_sha(work.path(), "big.back"), sha256(&full));
    if let Some(stored) = stack.stored_sha256(&format!("{HOME}/big.bin")) {
        assert_eq!(stored, sha256(&full), "the stored object after reput");
    }
    stack.assert_no_unfinished_uploads();
}

/// A client killed (SIGKILL, with its ssh) in the middle of a 300 MiB upload leaves nothing: no
/// file of that name over SFTP, no staging file on disk, no pending multipart upload on S3.
async fn killed_client_leaves_nothing(store: Store) {
    let huge = tokio::task::spawn_blocking(huge_file).await.unwrap();
    let stack = Stack::start(store).await;
    let work = tempfile::tempdir().unwrap();
    let mut cmd = sftp_batch_command(
        stack.port(),
        &stack.user,
        stack.auth(),
        work.path(),
        &format!("put \"{}\" killed.bin\n", huge.path.display()),
    );
    // Its own process group, so that the kill takes its ssh child down too, as a crash would.
    cmd.process_group(0);
    let mut child = cmd.spawn().expect("start sftp");
    let pid = child.id().expect("sftp pid");

    // Wait until the server has received data: a staging file, multipart upload or staged
    // blocks exist once the first 8 MiB part is on its way to the store.
    let receiving = wait_until(Duration::from_secs(30), || {
        !stack.unfinished_uploads().is_empty()
    })
    .await;
    assert!(
        receiving,
        "no upload in progress was seen within 30 s (sftp exited: {:?})\n{}",
        child.try_wait(),
        stack.diagnostics()
    );
    let killed = std::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pid}")])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill the sftp process group");
    let status = child.wait().await.expect("reap sftp");
    assert!(!status.success(), "sftp was killed, not finished: {status}");

    // The server aborts the upload when the connection drops.
    if store != Store::Azure {
        let clean = wait_until(Duration::from_secs(10), || {
            stack.unfinished_uploads().is_empty()
        })
        .await;
        assert!(
            clean,
            "the killed upload was not aborted within 10 s: {:?}\n{}",
            stack.unfinished_uploads(),
            stack.diagnostics()
        );
    }
    let listing = stack.sftp_ok(work.path(), "ls -l\n").await;
    assert!(
        !listing.contains("killed.bin"),
        "the killed upload is visible:\n{listing}"
    );
    let keys = stack.stored_keys();
    assert!(
        !keys.iter().any(|k| k.contains("killed.bin")),
        "the killed upload was committed: {keys:?}"
    );
}

/// 20 OpenSSH `sftp` sessions at once, each uploading its own 5 MiB file; all arrive whole.
async fn twenty_concurrent_sftp_sessions(store: Store) {
    const SESSIONS: usize = 20;
    // Users may hold 10 sessions at once unless told otherwise: this one may hold all 20.
    let stack = Stack::start_with_user(store, json!({"maxSessions": SESSIONS})).await;
    let work = tempfile::tempdir().unwrap();
    let mut sums = Vec::new();
    for i in 0..SESSIONS {
        let data = random_bytes(5 * MIB + i);
        write_file(work.path(), &format!("c{i}.bin"), &data);
        sums.push(sha256(&data));
    }
    let started = Instant::now();
    let runs = (0..SESSIONS).map(|i| {
        let mut cmd = sftp_batch_command(
            stack.port(),
            &stack.user,
            stack.auth(),
            work.path(),
            &format!("put c{i}.bin\n"),
        );
        async move { cmd.output().await.expect("run sftp") }
    });
    let outputs = tokio::time::timeout(LONG, futures::future::join_all(runs))
        .await
        .expect("20 concurrent sftp sessions did not finish in time");
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "session {i}: {}\n{}",
            text(out),
            stack.diagnostics()
        );
    }
    eprintln!(
        "matrix: {store:?}: {SESSIONS} concurrent sftp uploads of 5 MiB took {:.1?}",
        started.elapsed()
    );

    let mut batch = String::from("ls -l\n");
    for i in 0..SESSIONS {
        batch += &format!("get c{i}.bin c{i}.back\n");
    }
    let listing = stack.sftp_ok(work.path(), &batch).await;
    for (i, sum) in sums.iter().enumerate() {
        let name = format!("c{i}.bin");
        assert_eq!(
            listed_size(&listing, &name),
            Some((5 * MIB + i) as u64),
            "{listing}"
        );
        assert_eq!(&file_sha(work.path(), &format!("c{i}.back")), sum, "{name}");
        if let Some(stored) = stack.stored_sha256(&format!("{HOME}/{name}")) {
            assert_eq!(&stored, sum, "stored {name}");
        }
    }
    stack.assert_no_unfinished_uploads();
}

// ---------------------------------------------------------------------------------------------
// paramiko

/// Checks that paramiko is installed, and returns the Python to run it with.
async fn paramiko_python() -> PathBuf {
    let python = require_tool("python3", "apt-get install -y python3");
    let probe = Command::new(&python)
        .args(["-c", "import paramiko"])
        .output()
        .await
        .expect("run python3");
    assert!(
        probe.status.success(),
        "paramiko is needed by this test. Install it with:\n    python3 -m pip install \
         paramiko\n{}",
        text(&probe)
    );
    python
}

/// Runs `tests/clients/<script>` with the port, the user and the password, then `args`; asserts
/// that it succeeded and printed `ok_line`.
async fn run_client_script(
    stack: &Stack,
    store: Store,
    script: &str,
    args: &[&str],
    ok_line: &str,
) {
    let python = paramiko_python().await;
    let path = format!(
        "{}/../../tests/clients/{script}",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = tokio::time::timeout(
        LONG,
        Command::new(&python)
            .arg(&path)
            .arg(stack.port().to_string())
            .arg(&stack.user)
            .arg(&stack.password)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{script} {args:?} timed out on {store:?}\n{}",
            stack.diagnostics()
        )
    })
    .expect("run python3");
    assert!(
        out.status.success() && stdout(&out).contains(ok_line),
        "{script} {args:?} failed on {store:?}:\n{}\n{}",
        text(&out),
        stack.diagnostics()
    );
    eprint!("{}", stdout(&out));
}

/// `tests/clients/paramiko_client.py`: round trip, append twice, directories, the jail.
async fn paramiko_script(store: Store) {
    let stack = Stack::start(store).await;
    run_client_script(&stack, store, "paramiko_client.py", &[], "paramiko: ok").await;
    let keys = stack.stored_keys();
    assert!(keys.contains(&format!("{HOME}/log.txt")), "{keys:?}");
    stack.assert_no_unfinished_uploads();
}

/// paramiko's own `put()` and `get()` with its default window and packet sizes (pipelined
/// writes whose statuses it reads lazily, ~2,000 prefetched reads at once) for 1 KiB, 10 MiB
/// and 300 MiB; every file comes back and is stored byte for byte.
async fn paramiko_put_and_get_every_size(store: Store) {
    let huge = tokio::task::spawn_blocking(huge_file).await.unwrap();
    let stack = Stack::start(store).await;
    let work = tempfile::tempdir().unwrap();
    write_file(work.path(), "small.bin", &random_bytes(KIB));
    write_file(work.path(), "ten.bin", &random_bytes(10 * MIB));
    std::os::unix::fs::symlink(&huge.path, work.path().join("huge.bin")).unwrap();
    let files: Vec<String> = ["small.bin", "ten.bin", "huge.bin"]
        .iter()
        .map(|name| work.path().join(name).display().to_string())
        .collect();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    run_client_script(&stack, store, "paramiko_transfer.py", &args, "transfer: ok").await;
    for (name, sum) in [
        ("small.bin", file_sha(work.path(), "small.bin")),
        ("ten.bin", file_sha(work.path(), "ten.bin")),
        ("huge.bin", huge.sha256.clone()),
    ] {
        if let Some(stored) = stack.stored_sha256(&format!("{HOME}/{name}")) {
            assert_eq!(stored, sum, "stored {name}");
        }
    }
    stack.assert_no_unfinished_uploads();
}

/// Clients that pipeline lazily, through paramiko's own request machinery: 5,000 WRITEs of
/// 32 KiB before reading any reply, 5,000 READs likewise (their replies far beyond the
/// client's 2 MiB window), and both again reading the replies only after every 700 requests.
/// Every reply arrives, in request order per handle, and the files are whole.
async fn paramiko_lazy_pipelining(store: Store) {
    let stack = Stack::start(store).await;
    for case in ["burst-writes", "burst-reads", "every-n"] {
        let started = Instant::now();
        run_client_script(&stack, store, "paramiko_stress.py", &[case], "stress: ok").await;
        eprintln!(
            "matrix: {store:?}: paramiko {case} took {:.1?}",
            started.elapsed()
        );
    }
    stack.assert_no_unfinished_uploads();
}

// ---------------------------------------------------------------------------------------------
// rclone

/// How to install the rclone these tests drive (Debian's, 1.60 on bookworm).
const RCLONE_INSTALL: &str = "apt-get install -y rclone";

/// Runs `rclone ARGS` in `work` with a throw-away config, no retries (so that a server error is
/// a failure, not a silent second try) and verbose logs.
async fn rclone(work: &Path, args: &[&str]) -> Output {
    let binary = require_tool("rclone", RCLONE_INSTALL);
    let config = work.join("rclone.conf");
    if !config.exists() {
        std::fs::write(&config, "").expect("rclone config");
    }
    let run = Command::new(binary)
        .args(args)
        .arg("--config")
        .arg(&config)
        .args(["--retries", "1", "--low-level-retries", "1", "-v"])
        .current_dir(work)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(LONG, run)
        .await
        .expect("rclone timed out")
        .expect("run rclone")
}

/// rclone as an SFTP client (Go's pkg/sftp, which pipelines writes and may send them out of
/// order): `copyto` and `copy` up and down with 1 KiB and 10 MiB files, and `lsf`.
async fn rclone_copy_and_list(store: Store) {
    require_tool("rclone", RCLONE_INSTALL);
    let stack = Stack::start(store).await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let obscured = rclone(w, &["obscure", &stack.password]).await;
    assert!(obscured.status.success(), "{}", text(&obscured));
    let obscured = stdout(&obscured).trim().to_owned();
    // An on-the-fly remote; `shell_type=none` because the server runs no remote commands.
    let remote = format!(
        ":sftp,host=127.0.0.1,port={},user={},pass={obscured},shell_type=none:",
        stack.port(),
        stack.user
    );
    let at = |path: &str| format!("{remote}{path}");
    std::fs::create_dir(w.join("up")).unwrap();
    write_file(&w.join("up"), "small.bin", &random_bytes(KIB));
    write_file(&w.join("up"), "ten.bin", &random_bytes(10 * MIB));

    let steps: Vec<Vec<String>> = vec![
        vec![
            "copyto".into(),
            "up/small.bin".into(),
            at("rclone/small.bin"),
        ],
        vec!["copyto".into(), "up/ten.bin".into(), at("rclone/ten.bin")],
        vec!["copy".into(), "up".into(), at("rclone/dir")],
        vec![
            "copyto".into(),
            at("rclone/small.bin"),
            "down/small.bin".into(),
        ],
        vec!["copyto".into(), at("rclone/ten.bin"), "down/ten.bin".into()],
        vec!["copy".into(), at("rclone/dir"), "down/dir".into()],
    ];
    for step in &steps {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        let out = rclone(w, &args).await;
        assert!(
            out.status.success(),
            "rclone {} on {store:?} failed:\n{}\n{}",
            args.join(" "),
            text(&out),
            stack.diagnostics()
        );
    }

    let out = rclone(
        w,
        &[
            "lsf",
            "-R",
            "--format",
            "sp",
            "--separator",
            ";",
            &at("rclone"),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "rclone lsf: {}\n{}",
        text(&out),
        stack.diagnostics()
    );
    let mut files: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(str::to_owned)
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "1024;dir/small.bin",
            "1024;small.bin",
            "10485760;dir/ten.bin",
            "10485760;ten.bin",
        ],
        "rclone lsf:\n{}",
        stdout(&out)
    );

    let up = w.join("up");
    for (down, name) in [
        ("down", "small.bin"),
        ("down", "ten.bin"),
        ("down/dir", "small.bin"),
        ("down/dir", "ten.bin"),
    ] {
        assert_eq!(
            file_sha(&w.join(down), name),
            file_sha(&up, name),
            "{down}/{name} came back different"
        );
    }
    for name in ["small.bin", "ten.bin", "dir/small.bin", "dir/ten.bin"] {
        if let Some(stored) = stack.stored_sha256(&format!("{HOME}/rclone/{name}")) {
            let local = file_sha(&up, name.trim_start_matches("dir/"));
            assert_eq!(stored, local, "stored rclone/{name}");
        }
    }
    stack.assert_no_unfinished_uploads();
}
