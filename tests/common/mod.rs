//! Test harness for the end-to-end tests: starts the real `wharf` binary on free loopback ports
//! with a throw-away data directory, and drives it with real clients (the REST API over HTTP,
//! the `wharf` CLI, OpenSSH's `sftp`/`scp`/`ssh`, and a Rust SSH client).

#![allow(dead_code)]

pub mod raw;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::PrivateKeyWithHashAlg;
use russh_sftp::client::SftpSession;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

pub const ADMIN_KEY: &str = "wharf_test_admin_key_0123456789abcdefghij";
pub const GATEWAY_TOKEN: &str = "wgt_test_gateway_token";

pub fn wharf_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wharf")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A port that was free on `ip` (a loopback address) a moment ago.
pub fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Starts a server on `count` ports picked free on `ip`: `command(&ports)` builds it, its
/// output goes to `log`, and this returns once every port answers. A port picked free may be
/// taken by another process (any client's outgoing connection) before the server binds it;
/// the server then exits saying so and is started again on other ports, up to five times.
pub async fn spawn_on_free_ports(
    ip: &str,
    count: usize,
    log: &Path,
    mut command: impl FnMut(&[u16]) -> Command,
) -> (Child, Vec<u16>) {
    for attempt in 1..=5 {
        let ports: Vec<u16> = (0..count).map(|_| free_port_on(ip)).collect();
        let mut child = spawn_logged(command(&ports), log);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut exited = false;
        'ports: for port in &ports {
            while tokio::net::TcpStream::connect((ip, *port)).await.is_err() {
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    break 'ports;
                }
                assert!(
                    Instant::now() < deadline,
                    "{ip}:{port} never opened:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if !exited && !text.contains("Address already in use") {
            return (child, ports);
        }
        if attempt < 5 && text.contains("Address already in use") {
            eprintln!("a server lost a port to another process; starting it again");
            let _ = child.kill().await;
            continue;
        }
        panic!("the server exited before it was ready; log:\n{text}");
    }
    unreachable!("the loop returns or panics on its last attempt")
}

/// `wharf control-plane` on `data_dir` (SQLite and the local bucket there) with the tests'
/// admin key and gateway token, on a free API port; its output goes to `log`. Returns the
/// process and its API port.
pub async fn spawn_control_plane(data_dir: &Path, log: &Path) -> (Child, u16) {
    let (child, ports) = spawn_on_free_ports("127.0.0.1", 1, log, |ports| {
        let mut cp = Command::new(wharf_bin());
        cp.arg("control-plane")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--api-addr")
            .arg(format!("127.0.0.1:{}", ports[0]))
            .env("WHARF_ADMIN_API_KEY", ADMIN_KEY)
            .env("WHARF_GATEWAY_TOKEN", GATEWAY_TOKEN)
            .env_remove("WHARF_DATABASE_URL")
            .env_remove("WHARF_BUCKET_URL");
        cp
    })
    .await;
    (child, ports[0])
}

/// Host keys generated once per test binary and shared by every server it starts (RSA key
/// generation is the slowest part of a first start). One test checks generation itself.
pub fn shared_host_keys() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join("ssh_host_ed25519_key"))
            .status()
            .expect("ssh-keygen is required (Debian package openssh-client)");
        assert!(status.success());
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
            .arg(dir.path().join("ssh_host_rsa_key"))
            .status()
            .expect("ssh-keygen");
        assert!(status.success());
        dir
    })
    .path()
}

/// Which database a server under test uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A PostgreSQL database created for one test and dropped after it.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let admin_url = std::env::var("WHARF_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("wharf_e2e_{}", uuid_like());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is required for these tests and was not reachable at {admin_url} \
                     (set WHARF_TEST_POSTGRES_URL): {e}"
                )
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = match admin_url.rfind('/') {
            Some(i) => format!("{}/{name}", &admin_url[..i]),
            None => panic!("bad WHARF_TEST_POSTGRES_URL"),
        };
        PgDatabase {
            url,
            admin_url,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Best effort, on a thread of its own: Drop may run inside a runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

pub fn uuid_like() -> String {
    let mut bytes = [0u8; 8];
    getrandom(&mut bytes);
    hex::encode(bytes)
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("/dev/urandom");
}

/// Random bytes of the given length.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    getrandom(&mut v);
    v
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A running `wharf` process.
pub struct Wharf {
    pub data_dir: tempfile::TempDir,
    pub api_port: u16,
    pub sftp_port: u16,
    /// Explicit FTPS (AUTH TLS).
    pub ftps_port: u16,
    /// Implicit FTPS (TLS from the first byte).
    pub ftps_implicit_port: u16,
    /// The FTPS passive port range this server was given (see [`passive_ports`]).
    pub ftps_passive_ports: (u16, u16),
    pub http: reqwest::Client,
    child: Option<Child>,
    pub pg: Option<PgDatabase>,
    pub log: PathBuf,
}

pub struct StartOptions {
    pub db: Db,
    /// Use the shared, pre-generated host keys (fast) instead of generating.
    pub shared_host_keys: bool,
    pub data_dir: Option<tempfile::TempDir>,
    /// `--bucket-url` of the default bucket (default: a directory in the data dir).
    pub bucket_url: Option<String>,
    /// Extra environment variables of the server process (e.g. `AWS_ENDPOINT`).
    pub env: Vec<(String, String)>,
    /// More `wharf serve` arguments.
    pub extra_args: Vec<String>,
    /// `--webhook-allow-private-targets`: the tests' webhook receivers listen on loopback.
    pub allow_private_webhooks: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            db: Db::Sqlite,
            shared_host_keys: true,
            data_dir: None,
            bucket_url: None,
            env: Vec::new(),
            extra_args: Vec::new(),
            allow_private_webhooks: true,
        }
    }
}

impl Wharf {
    /// `wharf serve` on SQLite with shared host keys.
    pub async fn start() -> Wharf {
        Self::start_with(StartOptions::default()).await
    }

    pub async fn start_with(options: StartOptions) -> Wharf {
        let data_dir = options
            .data_dir
            .unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
        let pg = match options.db {
            Db::Sqlite => None,
            Db::Postgres => Some(PgDatabase::create().await),
        };
        let log = data_dir.path().join("wharf.log");
        let mut ftps_passive_ports = (0, 0);
        let (child, ports) = spawn_on_free_ports("127.0.0.1", 4, &log, |ports| {
            ftps_passive_ports = passive_ports();
            let mut cmd = Command::new(wharf_bin());
            cmd.arg("serve")
                .arg("--data-dir")
                .arg(data_dir.path())
                .arg("--api-addr")
                .arg(format!("127.0.0.1:{}", ports[0]))
                .arg("--sftp-addr")
                .arg(format!("127.0.0.1:{}", ports[1]))
                .arg("--ftps-addr")
                .arg(format!("127.0.0.1:{}", ports[2]))
                .arg("--ftps-implicit-addr")
                .arg(format!("127.0.0.1:{}", ports[3]))
                .arg("--ftps-passive-ports")
                .arg(format!("{}-{}", ftps_passive_ports.0, ftps_passive_ports.1))
                .env("WHARF_ADMIN_API_KEY", ADMIN_KEY)
                .env("WHARF_LOG", "info,wharf_sftp=debug,wharf_ftps=debug")
                .env_remove("WHARF_DATABASE_URL")
                .env_remove("WHARF_BUCKET_URL");
            if options.shared_host_keys {
                cmd.arg("--host-key-dir").arg(shared_host_keys());
            }
            if let Some(pg) = &pg {
                cmd.arg("--database-url").arg(&pg.url);
            }
            cmd.args(&options.extra_args);
            if options.allow_private_webhooks {
                cmd.arg("--webhook-allow-private-targets");
            }
            if let Some(url) = &options.bucket_url {
                cmd.arg("--bucket-url").arg(url);
            }
            for (key, value) in &options.env {
                cmd.env(key, value);
            }
            cmd
        })
        .await;
        Wharf {
            data_dir,
            api_port: ports[0],
            sftp_port: ports[1],
            ftps_port: ports[2],
            ftps_implicit_port: ports[3],
            ftps_passive_ports,
            http: reqwest::Client::new(),
            child: Some(child),
            pg,
            log,
        }
    }

    /// A field of the server process's `/proc/<pid>/status` as a number (`Threads`; `VmRSS`
    /// in KiB).
    pub fn proc_status(&self, field: &str) -> u64 {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("the server is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// Sends SIGTERM (a rolling deploy's stop) without waiting for the process to exit.
    pub fn terminate(&self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }

    /// Waits up to `limit` for the process to exit; whether it did.
    pub async fn exited_within(&mut self, limit: Duration) -> bool {
        match self.child.as_mut() {
            Some(child) => tokio::time::timeout(limit, child.wait()).await.is_ok(),
            None => true,
        }
    }

    /// Stops the process (SIGTERM, then SIGKILL) and keeps the data directory.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    /// Calls the REST API with the admin key.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api_url()))
            .header("Authorization", format!("Key {ADMIN_KEY}"));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("API request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("API body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Creates a user through the API; returns (username, password).
    pub async fn create_user(&self, home: &str, extra: Value) -> (String, String) {
        let mut body = json!({"description": format!("user for {home}"), "homeDirectory": home});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (status, v) = self
            .api(reqwest::Method::POST, "/v1/users", Some(body))
            .await;
        assert_eq!(status, 201, "create user failed: {v}");
        (
            v["username"].as_str().expect("username").to_owned(),
            v["password"].as_str().expect("password").to_owned(),
        )
    }

    /// Runs `wharf <args>` as a CLI against this server.
    pub async fn cli(&self, args: &[&str]) -> Output {
        Command::new(wharf_bin())
            .args(args)
            .env("WHARF_API_URL", self.api_url())
            .env("WHARF_API_KEY", ADMIN_KEY)
            .env_remove("WHARF_DATA_DIR")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run wharf CLI")
    }

    /// The local bucket's directory on disk.
    pub fn bucket_dir(&self) -> PathBuf {
        self.data_dir.path().join("buckets")
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

pub fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .expect("start wharf")
}

/// How an OpenSSH client authenticates.
pub enum Auth<'a> {
    Password(&'a str),
    Key(&'a Path),
}

/// Common OpenSSH client options: no known_hosts, no agent, no config files.
fn ssh_options(port: u16, auth: &Auth<'_>, dir: &Path) -> Vec<String> {
    let mut o: Vec<String> = [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=20",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    o.push("-P".into());
    o.push(port.to_string());
    match auth {
        Auth::Password(_) => {
            // `sftp -b` implies BatchMode=yes, which forbids passwords; the first -o wins.
            for s in [
                "-o",
                "BatchMode=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ] {
                o.push(s.into());
            }
            let _ = dir;
        }
        Auth::Key(path) => {
            o.push("-o".into());
            o.push("PreferredAuthentications=publickey".into());
            o.push("-i".into());
            o.push(path.display().to_string());
        }
    }
    o
}

/// Writes an SSH_ASKPASS script that answers with `password`.
fn askpass(dir: &Path, password: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("askpass-{}", uuid_like()));
    let escaped = password.replace('\'', "'\\''");
    std::fs::write(&path, format!("#!/bin/sh\nprintf '%s\\n' '{escaped}'\n")).expect("askpass");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    path
}

fn with_auth_env(cmd: &mut Command, auth: &Auth<'_>, dir: &Path) {
    cmd.env_remove("SSH_AUTH_SOCK");
    if let Auth::Password(pw) = auth {
        cmd.env("SSH_ASKPASS", askpass(dir, pw))
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0");
    }
}

/// Runs OpenSSH `sftp -b` with the given batch commands (one per line; a leading `-` lets a
/// command fail without stopping the batch). Runs in `cwd`, so local paths can be relative.
pub async fn sftp_batch(port: u16, user: &str, auth: Auth<'_>, cwd: &Path, batch: &str) -> Output {
    let file = cwd.join(format!("batch-{}", uuid_like()));
    std::fs::write(&file, batch).expect("batch file");
    let mut cmd = Command::new("sftp");
    cmd.args(ssh_options(port, &auth, cwd))
        .arg("-b")
        .arg(&file)
        .arg(format!("{user}@127.0.0.1"))
        .current_dir(cwd)
        .stdin(Stdio::null());
    with_auth_env(&mut cmd, &auth, cwd);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("sftp timed out")
        .expect("sftp is required (Debian package openssh-client)")
}

/// Runs OpenSSH `scp` (which speaks SFTP in current OpenSSH) with `args` after the options.
pub async fn scp(port: u16, auth: Auth<'_>, cwd: &Path, args: &[String]) -> Output {
    let mut cmd = Command::new("scp");
    cmd.args(ssh_options(port, &auth, cwd))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null());
    with_auth_env(&mut cmd, &auth, cwd);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("scp timed out")
        .expect("scp is required (Debian package openssh-client)")
}

/// Runs OpenSSH `ssh` with a remote command.
pub async fn ssh(port: u16, user: &str, auth: Auth<'_>, cwd: &Path, extra: &[&str]) -> Output {
    let mut opts = ssh_options(port, &auth, cwd);
    // ssh takes -p, not -P.
    if let Some(i) = opts.iter().position(|o| o == "-P") {
        opts[i] = "-p".into();
    }
    let mut cmd = Command::new("ssh");
    cmd.args(opts)
        .arg(format!("{user}@127.0.0.1"))
        .args(extra)
        .current_dir(cwd)
        .stdin(Stdio::null());
    with_auth_env(&mut cmd, &auth, cwd);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("ssh timed out")
        .expect("ssh is required (Debian package openssh-client)")
}

pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Generates an ed25519 key pair in `dir`; returns (private key path, public key line).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (path, public.trim().to_owned())
}

pub struct AcceptAnyHostKey;

impl client::Handler for AcceptAnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// A Rust SFTP client session (russh + russh-sftp) and the SSH connection under it.
pub struct RustSftp {
    pub sftp: SftpSession,
    _ssh: client::Handle<AcceptAnyHostKey>,
}

impl RustSftp {
    /// Ends the SSH connection at once, whatever handles are still open (as a client that is
    /// cut off would).
    pub async fn disconnect(&self) {
        let _ = self
            ._ssh
            .disconnect(russh::Disconnect::ByApplication, "test disconnect", "en")
            .await;
    }
}

impl std::ops::Deref for RustSftp {
    type Target = SftpSession;
    fn deref(&self) -> &SftpSession {
        &self.sftp
    }
}

impl RustSftp {
    /// Uploads `data` to `path`, creating or replacing the file (what `put` does).
    pub async fn put(
        &self,
        path: &str,
        data: &[u8],
    ) -> Result<(), russh_sftp::client::error::Error> {
        use tokio::io::AsyncWriteExt;
        let mut file = self.sftp.create(path).await?;
        file.write_all(data).await?;
        file.shutdown().await?;
        Ok(())
    }
}

/// Logs in with a password and starts SFTP.
pub async fn rust_sftp(port: u16, user: &str, password: &str) -> Result<RustSftp, String> {
    let config = Arc::new(client::Config::default());
    let mut session = client::connect(config, ("127.0.0.1", port), AcceptAnyHostKey)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let auth = session
        .authenticate_password(user, password)
        .await
        .map_err(|e| format!("auth: {e}"))?;
    if !auth.success() {
        return Err("authentication rejected".into());
    }
    let channel = session
        .channel_open_session()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| format!("subsystem: {e}"))?;
    let sftp = SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| format!("sftp init: {e}"))?;
    Ok(RustSftp {
        sftp,
        _ssh: session,
    })
}

/// A Rust SSH client session with public-key auth, returning whether it was accepted.
pub async fn rust_key_login(port: u16, user: &str, key_path: &Path) -> bool {
    let key = russh::keys::load_secret_key(key_path, None).expect("load key");
    let config = Arc::new(client::Config::default());
    let Ok(mut session) = client::connect(config, ("127.0.0.1", port), AcceptAnyHostKey).await
    else {
        return false;
    };
    let key = PrivateKeyWithHashAlg::new(Arc::new(key), None);
    session
        .authenticate_publickey(user, key)
        .await
        .map(|r| r.success())
        .unwrap_or(false)
}

/// A raw SFTP subsystem channel (no SFTP client on top), for sending malformed packets.
pub struct RawSftp {
    pub stream: russh::ChannelStream<russh::client::Msg>,
    _ssh: client::Handle<AcceptAnyHostKey>,
}

pub async fn raw_sftp(port: u16, user: &str, password: &str) -> RawSftp {
    let session = raw::password_connection(port, user, password).await;
    let channel = session.channel_open_session().await.expect("channel");
    channel
        .request_subsystem(true, "sftp")
        .await
        .expect("subsystem");
    RawSftp {
        stream: channel.into_stream(),
        _ssh: session,
    }
}

/// OpenSSH `sftp -b` with the given batch commands, as a command not yet started: for tests
/// that run many sessions at once, kill one mid-transfer, or need another timeout than
/// [`sftp_batch`]. Same options and authentication as [`sftp_batch`]; runs in `cwd`.
pub fn sftp_batch_command(
    port: u16,
    user: &str,
    auth: Auth<'_>,
    cwd: &Path,
    batch: &str,
) -> Command {
    let file = cwd.join(format!("batch-{}", uuid_like()));
    std::fs::write(&file, batch).expect("batch file");
    let mut cmd = Command::new(require_tool("sftp", "apt-get install -y openssh-client"));
    cmd.args(ssh_options(port, &auth, cwd))
        .arg("-b")
        .arg(&file)
        .arg(format!("{user}@127.0.0.1"))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    with_auth_env(&mut cmd, &auth, cwd);
    cmd
}

/// [`sftp_batch`] with a timeout of its own (large transfers on slow stores).
pub async fn sftp_batch_timeout(
    port: u16,
    user: &str,
    auth: Auth<'_>,
    cwd: &Path,
    batch: &str,
    timeout: Duration,
) -> Output {
    let mut cmd = sftp_batch_command(port, user, auth, cwd, batch);
    tokio::time::timeout(timeout, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("sftp did not finish within {timeout:?}; batch:\n{batch}"))
        .expect("run sftp")
}

/// `name` on `PATH`, or a panic that says how to install it: a missing client fails the test,
/// it is never skipped.
pub fn require_tool(name: &str, install: &str) -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is needed by this test and was not found on PATH. Install it with:\n    \
                 {install}\n(`.ci/run` installs it)"
            )
        })
}

/// SHA-256 of a file, read in chunks (for files too large to hold comfortably).
pub fn sha256_file(path: &Path) -> String {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// Writes a local file for a client to upload.
pub fn write_file(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).expect("write local file");
}

/// Reads a local file a client downloaded.
pub fn read_file(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// A client's standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The staging files of uploads in progress (or left behind) in the local bucket at `root`:
/// Wharf's, in the reserved `.wharf-uploads` directory, and LocalFileSystem's (`name#N`).
pub fn staging_files(root: &Path) -> Vec<PathBuf> {
    walk_files(root)
        .into_iter()
        .filter(|p| {
            p.strip_prefix(root)
                .is_ok_and(|rel| rel.starts_with(".wharf-uploads"))
                || p.file_name()
                    .is_some_and(|name| name.to_string_lossy().contains('#'))
        })
        .collect()
}

/// Every file (not directory) below `dir`, recursively; empty if `dir` does not exist.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk_files(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// FTPS

/// Ports in a passive range: enough for the few transfers a test runs at once.
pub const PASSIVE_SLICE: u16 = 20;

/// A passive port range for one server under test, above Linux's ephemeral port range
/// (32768-60999, where `free_port` and outgoing connections take theirs): one of 200 slices of
/// [`PASSIVE_SLICE`] ports in 61000-64999, taken in turn by the servers of one test binary
/// from a random first slice, so parallel tests (and test binaries) do not share ports.
pub fn passive_ports() -> (u16, u16) {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let mut b = [0u8; 2];
        getrandom(&mut b);
        AtomicU16::new(u16::from_le_bytes(b) % 200)
    });
    let slice = next.fetch_add(1, Ordering::Relaxed) % 200;
    let start = 61000 + slice * PASSIVE_SLICE;
    (start, start + PASSIVE_SLICE - 1)
}

/// Runs `curl` against the FTPS server: explicit TLS required (`--ssl-reqd`), the self-signed
/// certificate accepted (`-k`), logged in as `user`. `args` follow (URL included, e.g.
/// [`ftps_url`]). Runs in `cwd`.
pub async fn curl_ftps(user: &str, password: &str, cwd: &Path, args: &[&str]) -> Output {
    let curl = require_tool("curl", "apt-get install -y curl");
    let mut cmd = Command::new(curl);
    cmd.args([
        "-sS",
        "--ssl-reqd",
        "-k",
        "--ftp-pasv",
        "--connect-timeout",
        "20",
    ])
    .arg("--user")
    .arg(format!("{user}:{password}"))
    .args(args)
    .current_dir(cwd)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("curl timed out")
        .expect("run curl")
}

/// `ftp://127.0.0.1:<port><path>` (`path` starts with `/`; `//x` is the absolute path `/x`).
pub fn ftps_url(port: u16, path: &str) -> String {
    format!("ftp://127.0.0.1:{port}{path}")
}

/// `ftps://127.0.0.1:<port><path>`: implicit FTPS for curl.
pub fn implicit_ftps_url(port: u16, path: &str) -> String {
    format!("ftps://127.0.0.1:{port}{path}")
}

/// Runs `lftp` with `commands` (one per line) after logging in over explicit FTPS with
/// TLS-protected data connections and the self-signed certificate accepted; the first failing
/// command fails the run. `tls` is a GnuTLS priority string such as
/// `NORMAL:-VERS-ALL:+VERS-TLS1.3`. Runs in `cwd`.
pub async fn lftp(
    port: u16,
    user: &str,
    password: &str,
    tls: &str,
    cwd: &Path,
    commands: &str,
) -> Output {
    lftp_to("127.0.0.1", port, user, password, tls, cwd, commands).await
}

/// [`lftp`] against implicit FTPS (`ftps://`: TLS from the first byte).
pub async fn lftp_implicit(
    port: u16,
    user: &str,
    password: &str,
    tls: &str,
    cwd: &Path,
    commands: &str,
) -> Output {
    lftp_to("ftps://127.0.0.1", port, user, password, tls, cwd, commands).await
}

async fn lftp_to(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    tls: &str,
    cwd: &Path,
    commands: &str,
) -> Output {
    let lftp = require_tool("lftp", "apt-get install -y lftp");
    let script = cwd.join(format!("lftp-{}", uuid_like()));
    std::fs::write(
        &script,
        format!(
            "set cmd:fail-exit yes\n\
             set ssl:verify-certificate no\n\
             set ssl:priority \"{tls}\"\n\
             set ftp:ssl-force yes\n\
             set ftp:ssl-protect-data yes\n\
             set ftp:passive-mode yes\n\
             set net:max-retries 1\n\
             set net:timeout 30\n\
             set xfer:clobber yes\n\
             open -u {user},{password} -p {port} {host}\n\
             {commands}\n\
             bye\n"
        ),
    )
    .expect("lftp script");
    let mut cmd = Command::new(lftp);
    cmd.arg("-f")
        .arg(&script)
        .current_dir(cwd)
        .env("HOME", cwd)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("lftp timed out")
        .expect("run lftp")
}

/// Runs tests/clients/ftps_ftplib_client.py (Python's ftplib.FTP_TLS) in `mode`.
pub async fn ftplib_client(mode: &str, port: u16, user: &str, password: &str) -> Output {
    ftplib_client_with(mode, port, user, password, &[]).await
}

/// [`ftplib_client`] with more arguments after the password (what `mode` needs).
pub async fn ftplib_client_with(
    mode: &str,
    port: u16,
    user: &str,
    password: &str,
    extra: &[&str],
) -> Output {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/ftps_ftplib_client.py");
    let mut cmd = Command::new(require_tool("python3", "apt-get install -y python3"));
    cmd.arg(script)
        .arg(mode)
        .arg(port.to_string())
        .arg(user)
        .arg(password)
        .args(extra)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the ftplib client timed out")
        .expect("run python3")
}
