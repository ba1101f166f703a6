//! The partner clients beyond OpenSSH, paramiko and rclone: PuTTY's `psftp` (WinSCP's SSH
//! core), asyncssh, lftp's `sftp://` and curl's libssh2. Each uploads, lists (and its listing
//! is parsed), downloads, resumes, renames and deletes; psftp and asyncssh with every size up
//! to the 300 MiB file. What the client did is then checked in the store itself.

use std::path::{Path, PathBuf};
use std::time::Instant;

use reqwest::Method;
use tokio::process::Command;

use super::*;

/// The files a client moves, in a scratch directory: 1 KiB, 10 MiB, and with `huge` the
/// 300 MiB file (linked, not copied). `part.bin` is the first third of `ten.bin` and a bit, the
/// piece an interrupted upload left.
struct Workload {
    dir: tempfile::TempDir,
    /// (name, SHA-256) of the files to move whole.
    files: Vec<(String, String)>,
    ten: Vec<u8>,
}

impl Workload {
    fn new(huge: Option<&HugeFile>) -> Workload {
        let dir = tempfile::tempdir().unwrap();
        let small = random_bytes(KIB);
        let ten = random_bytes(10 * MIB);
        write_file(dir.path(), "small.bin", &small);
        write_file(dir.path(), "ten.bin", &ten);
        write_file(dir.path(), "part.bin", &ten[..ten.len() / 3 + 17]);
        let mut files = vec![
            ("small.bin".to_owned(), sha256(&small)),
            ("ten.bin".to_owned(), sha256(&ten)),
        ];
        if let Some(huge) = huge {
            std::os::unix::fs::symlink(&huge.path, dir.path().join("huge.bin")).unwrap();
            files.push(("huge.bin".to_owned(), huge.sha256.clone()));
        }
        Workload { dir, files, ten }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|(name, _)| name.as_str())
    }

    /// Every file came back whole as `<name>.back`, is in the store under the user's home
    /// with its bytes, and the resumed, renamed and deleted file is gone.
    fn verify(&self, stack: &Stack, client: &str) {
        for (name, sum) in &self.files {
            assert_eq!(
                &file_sha(self.path(), &format!("{name}.back")),
                sum,
                "{client}: {name} came back different"
            );
            if let Some(stored) = stack.stored_sha256(&format!("{HOME}/{name}")) {
                assert_eq!(&stored, sum, "{client}: stored {name}");
            }
        }
        let keys = stack.stored_keys();
        for gone in ["resumed.bin", "renamed.bin"] {
            assert!(
                !keys.contains(&format!("{HOME}/{gone}")),
                "{client}: {gone} is still stored: {keys:?}"
            );
        }
        stack.assert_no_unfinished_uploads();
    }
}

/// Name -> size from `ls -l` lines in `listing`: OpenSSH's layout, 9 fields, the size fifth
/// and the name last. Lines of another shape are skipped (prompts, messages).
fn parse_ls_l(listing: &str) -> std::collections::HashMap<String, u64> {
    listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let mode = fields.first()?;
            let is_entry = fields.len() == 9
                && mode.len() == 10
                && mode.chars().all(|c| "-dlrwxsStT".contains(c));
            is_entry.then(|| Some((fields[8].to_owned(), fields[4].parse().ok()?)))?
        })
        .collect()
}

fn assert_listed(listing: &str, workload: &Workload, client: &str) {
    let sizes = parse_ls_l(listing);
    for name in workload.names() {
        let expected = std::fs::metadata(workload.path().join(name)).unwrap().len();
        assert_eq!(
            sizes.get(name),
            Some(&expected),
            "{client}: `ls -l` shows {name} with its size:\n{listing}"
        );
    }
}

async fn run_client(mut cmd: Command, what: &str, stack: &Stack) -> std::process::Output {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let started = Instant::now();
    let out = tokio::time::timeout(LONG, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} timed out\n{}", stack.diagnostics()))
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    eprintln!("matrix: {what} took {:.1?}", started.elapsed());
    out
}

/// PuTTY's psftp (the SSH core of WinSCP) with a batch file: every size up and down, `ls`,
/// `reput` after an interrupted upload, `reget` after an interrupted download, `mv`, `rm`.
pub(crate) async fn psftp_every_size(store: Store) {
    let psftp = require_tool("psftp", "apt-get install -y putty-tools");
    let huge = tokio::task::spawn_blocking(huge_file).await.unwrap();
    let stack = Stack::start(store).await;
    let work = Workload::new(Some(huge));
    // The download half done: reget continues it.
    write_file(work.path(), "ten.reget", &work.ten[..work.ten.len() / 2]);
    let mut batch = String::new();
    for name in work.names() {
        batch += &format!("put {name}\n");
    }
    batch += "put part.bin resumed.bin\nreput ten.bin resumed.bin\nls\n";
    for name in work.names() {
        batch += &format!("get {name} {name}.back\n");
    }
    batch += "get resumed.bin resumed.back\nreget ten.bin ten.reget\n";
    batch += "mv resumed.bin renamed.bin\nrm renamed.bin\nls\n";
    std::fs::write(work.path().join("batch.txt"), &batch).unwrap();
    let mut cmd = Command::new(psftp);
    cmd.arg("-P")
        .arg(stack.port().to_string())
        .args([
            "-l",
            &stack.user,
            "-pw",
            &stack.password,
            "-batch",
            "-b",
            "batch.txt",
        ])
        .args(["-hostkey", &host_key_fingerprint(&stack).await])
        .arg("127.0.0.1")
        .current_dir(work.path());
    let out = run_client(cmd, &format!("{store:?}: psftp"), &stack).await;
    assert!(
        out.status.success(),
        "psftp on {store:?}:\n{}\n{}",
        text(&out),
        stack.diagnostics()
    );
    let listing = stdout(&out);
    assert_listed(&listing, &work, "psftp");
    assert_eq!(
        file_sha(work.path(), "resumed.back"),
        sha256(&work.ten),
        "reput"
    );
    assert_eq!(
        file_sha(work.path(), "ten.reget"),
        sha256(&work.ten),
        "reget"
    );
    let last = listing
        .rsplit("Listing directory")
        .next()
        .unwrap_or_default();
    assert!(!last.contains("renamed.bin"), "rm: {last}");
    work.verify(&stack, "psftp");
}

/// The SSH host key fingerprint partners are shown (`SHA256:…`), for clients that check it.
async fn host_key_fingerprint(stack: &Stack) -> String {
    let (status, server) = stack.wharf.api(Method::GET, "/v1/server", None).await;
    assert_eq!(status, 200, "{server}");
    server["hostKeys"][0]["fingerprint"]
        .as_str()
        .expect("a host key fingerprint")
        .to_owned()
}

/// asyncssh (up to 128 requests in flight): every size up and down, `readdir` long names
/// parsed, a resume through `open("r+b")`, rename, remove.
pub(crate) async fn asyncssh_every_size(store: Store) {
    let python = require_tool("python3", "apt-get install -y python3");
    let probe = Command::new(&python)
        .args(["-c", "import asyncssh"])
        .output()
        .await
        .expect("run python3");
    assert!(
        probe.status.success(),
        "asyncssh is needed by this test. Install it with:\n    python3 -m pip install asyncssh"
    );
    let huge = tokio::task::spawn_blocking(huge_file).await.unwrap();
    let stack = Stack::start(store).await;
    let work = Workload::new(Some(huge));
    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "tests",
        "clients",
        "asyncssh_client.py",
    ]
    .iter()
    .collect();
    let mut cmd = Command::new(python);
    cmd.args(["-W", "ignore"])
        .arg(script)
        .arg(stack.port().to_string())
        .arg(&stack.user)
        .arg(&stack.password)
        .args(work.names().map(|name| work.path().join(name)));
    let out = run_client(cmd, &format!("{store:?}: asyncssh"), &stack).await;
    assert!(
        out.status.success() && stdout(&out).contains("asyncssh: ok"),
        "asyncssh on {store:?}:\n{}\n{}",
        text(&out),
        stack.diagnostics()
    );
    work.verify(&stack, "asyncssh");
}

/// lftp in `sftp://` mode (it runs OpenSSH's `ssh` underneath): put, `ls`, get, `put -c`
/// after an interrupted upload, `get -c` after an interrupted download, mv, rm.
pub(crate) async fn lftp_sftp_round_trips(store: Store) {
    let lftp = require_tool("lftp", "apt-get install -y lftp");
    let stack = Stack::start(store).await;
    let work = Workload::new(None);
    write_file(work.path(), "ten.getc", &work.ten[..work.ten.len() / 2]);
    let mut script = String::from(
        "set sftp:auto-confirm yes; set net:max-retries 1; set net:timeout 60; \
         set sftp:connect-program 'ssh -a -x -F /dev/null -o UserKnownHostsFile=/dev/null \
         -o StrictHostKeyChecking=no -o LogLevel=ERROR'; ",
    );
    for name in work.names() {
        script += &format!("put {name}; ");
    }
    script += "put part.bin -o resumed.bin; put -c ten.bin -o resumed.bin; ls; ";
    for name in work.names() {
        script += &format!("get {name} -o {name}.back; ");
    }
    script += "get resumed.bin -o resumed.back; get -c ten.bin -o ten.getc; ";
    script += "mv resumed.bin renamed.bin; rm renamed.bin; bye";
    let mut cmd = Command::new(lftp);
    cmd.args(["-e", &script])
        .args(["-u", &format!("{},{}", stack.user, stack.password)])
        .args(["-p", &stack.port().to_string()])
        .arg("sftp://127.0.0.1")
        .current_dir(work.path());
    let out = run_client(cmd, &format!("{store:?}: lftp sftp://"), &stack).await;
    assert!(
        out.status.success(),
        "lftp sftp:// on {store:?}:\n{}\n{}",
        text(&out),
        stack.diagnostics()
    );
    assert_listed(&stdout(&out), &work, "lftp");
    assert_eq!(
        file_sha(work.path(), "resumed.back"),
        sha256(&work.ten),
        "put -c"
    );
    assert_eq!(
        file_sha(work.path(), "ten.getc"),
        sha256(&work.ten),
        "get -c"
    );
    work.verify(&stack, "lftp");
}

/// curl's `sftp://` (libssh2, as PHP and libgit2 use it): upload, the directory listing,
/// download, `-C -` to continue an upload and a download, rename and delete with `-Q`.
pub(crate) async fn curl_sftp_round_trips(store: Store) {
    let stack = Stack::start(store).await;
    let work = Workload::new(None);
    write_file(work.path(), "ten.part", &work.ten[..work.ten.len() / 2]);
    let curl = Curl {
        binary: require_tool("curl", "apt-get install -y curl"),
        stack: &stack,
        dir: work.path(),
    };
    for name in work.names() {
        curl.ok(&["-T", name, &curl.url(name)], "upload").await;
    }
    curl.ok(&["-T", "part.bin", &curl.url("resumed.bin")], "upload")
        .await;
    curl.ok(
        &["-C", "-", "-T", "ten.bin", &curl.url("resumed.bin")],
        "resumed upload",
    )
    .await;
    let listing = curl.ok(&[&curl.url("")], "listing").await;
    assert_listed(&listing, &work, "curl");
    for name in work.names() {
        let back = format!("{name}.back");
        curl.ok(&["-o", &back, &curl.url(name)], "download").await;
    }
    curl.ok(
        &["-o", "resumed.back", &curl.url("resumed.bin")],
        "download",
    )
    .await;
    assert_eq!(
        file_sha(work.path(), "resumed.back"),
        sha256(&work.ten),
        "-C - upload"
    );
    curl.ok(
        &["-C", "-", "-o", "ten.part", &curl.url("ten.bin")],
        "resumed download",
    )
    .await;
    assert_eq!(
        file_sha(work.path(), "ten.part"),
        sha256(&work.ten),
        "-C - download"
    );
    curl.ok(
        &["-Q", "rename /resumed.bin /renamed.bin", &curl.url("")],
        "rename",
    )
    .await;
    let after = curl
        .ok(&["-Q", "rm /renamed.bin", &curl.url("")], "delete")
        .await;
    assert!(!after.contains("renamed.bin"), "{after}");
    work.verify(&stack, "curl");
}

/// curl against the stack's SFTP port, in the workload's directory.
struct Curl<'a> {
    binary: PathBuf,
    stack: &'a Stack,
    dir: &'a Path,
}

impl Curl<'_> {
    fn url(&self, path: &str) -> String {
        format!("sftp://127.0.0.1:{}/{path}", self.stack.port())
    }

    /// Runs curl with `args`; asserts it succeeded and returns what it printed.
    async fn ok(&self, args: &[&str], what: &str) -> String {
        let auth = format!("{}:{}", self.stack.user, self.stack.password);
        let mut cmd = Command::new(&self.binary);
        cmd.args(["-s", "-S", "-k", "--user", &auth])
            .args(args)
            .current_dir(self.dir);
        let out = run_client(cmd, &format!("curl {what}"), self.stack).await;
        assert!(
            out.status.success(),
            "curl {what} {args:?}:\n{}\n{}",
            text(&out),
            self.stack.diagnostics()
        );
        stdout(&out)
    }
}
