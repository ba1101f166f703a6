//! Several stateless FTPS gateways behind one public address, the way
//! docs/ftps-behind-a-load-balancer.md recommends, for real: `wharf control-plane`, two
//! `wharf ftps-gateway` replicas (127.0.0.2 and 127.0.0.3, as if on two hosts), each with its
//! own passive port slice, `--ftps-passive-host 127.0.0.1` and `--ftps-proxy-protocol`, and
//! HAProxy on 127.0.0.1 in front: the explicit and implicit control ports balanced round-robin
//! over both replicas, each replica's passive slice forwarded to that replica only, a PROXY v2
//! header on every connection. curl, lftp and Python's ftplib talk to HAProxy's address only.
//!
//! The clients connect from other loopback addresses (127.0.0.11-14) than HAProxy's own
//! (127.0.0.1), so the client address the gateways and the control plane record can only have
//! come from the PROXY header.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const TLS12: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
const TLS13: &str = "NORMAL:-VERS-ALL:+VERS-TLS1.3";

/// Source addresses of the clients (loopback, but not HAProxy's 127.0.0.1).
const CURL_IP: &str = "127.0.0.11";
const CURL_IMPLICIT_IP: &str = "127.0.0.12";
const LFTP_IP: &str = "127.0.0.13";
const FTPLIB_IP: &str = "127.0.0.14";

/// The load balancer's (HAProxy's) address: what partners connect to and what PASV advertises.
const LB_IP: &str = "127.0.0.1";

fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed:\n{}", text(out));
}

/// HAProxy's binary: on `PATH`, or in /usr/sbin (where Debian puts it, not always on a
/// non-root `PATH`); a missing one fails the test with how to install it.
fn haproxy_bin() -> PathBuf {
    let sbin = Path::new("/usr/sbin/haproxy");
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("haproxy").is_file()))
        .unwrap_or(false);
    if !on_path && sbin.is_file() {
        return sbin.to_owned();
    }
    require_tool("haproxy", "apt-get install -y haproxy")
}

/// One `wharf ftps-gateway` replica.
struct Gateway {
    /// HAProxy's name for it.
    name: &'static str,
    ip: &'static str,
    explicit_port: u16,
    implicit_port: u16,
    passive: (u16, u16),
    dir: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
}

impl Gateway {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn owns_passive_port(&self, port: u16) -> bool {
        (self.passive.0..=self.passive.1).contains(&port)
    }

    /// Successful logins so far.
    fn logins(&self) -> usize {
        self.log_text().matches("login succeeded").count()
    }

    /// Kills the process outright (SIGKILL: no drain, as when a host dies).
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// The control plane, two gateway replicas and HAProxy in front of them.
struct Cluster {
    /// The control plane's data directory (database and the local bucket).
    data: tempfile::TempDir,
    api_port: u16,
    _control_plane: Child,
    gateways: Vec<Gateway>,
    /// HAProxy's explicit FTPS port (127.0.0.1).
    explicit_port: u16,
    /// HAProxy's implicit FTPS port (127.0.0.1).
    implicit_port: u16,
    haproxy_log: PathBuf,
    _haproxy: Child,
    http: reqwest::Client,
}

impl Cluster {
    async fn start() -> Cluster {
        let haproxy = haproxy_bin();
        let data = tempfile::tempdir().unwrap();
        let cp_log = data.path().join("control-plane.log");
        let (control_plane, api_port) = spawn_control_plane(data.path(), &cp_log).await;

        // Two replicas, each on its own address (as on two hosts) with its own passive slice.
        // The second uses the first one's certificate: every replica presents the same one.
        let mut gateways: Vec<Gateway> = Vec::new();
        for (name, ip) in [("gw1", "127.0.0.2"), ("gw2", "127.0.0.3")] {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("gateway.log");
            let passive = passive_ports();
            let first_tls = gateways.first().map(|first| first.dir.path().join("tls"));
            let (child, ports) = spawn_on_free_ports(ip, 2, &log, |ports| {
                let mut gw = Command::new(wharf_bin());
                gw.arg("ftps-gateway")
                    .arg("--data-dir")
                    .arg(dir.path())
                    .arg("--ftps-addr")
                    .arg(format!("{ip}:{}", ports[0]))
                    .arg("--ftps-implicit-addr")
                    .arg(format!("{ip}:{}", ports[1]))
                    .arg("--ftps-passive-ports")
                    .arg(format!("{}-{}", passive.0, passive.1))
                    .arg("--ftps-passive-host")
                    .arg(LB_IP)
                    .arg("--ftps-proxy-protocol")
                    .arg("--trusted-proxies")
                    .arg(LB_IP)
                    .arg("--control-plane-url")
                    .arg(format!("http://127.0.0.1:{api_port}"))
                    .env("WHARF_GATEWAY_TOKEN", GATEWAY_TOKEN)
                    .env("WHARF_LOG", "info,wharf_ftps=debug")
                    .env_remove("WHARF_FTPS_CERT_FILE")
                    .env_remove("WHARF_FTPS_KEY_FILE");
                if let Some(tls) = &first_tls {
                    gw.arg("--ftps-cert-file")
                        .arg(tls.join("ftps-cert.pem"))
                        .arg("--ftps-key-file")
                        .arg(tls.join("ftps-key.pem"));
                }
                gw
            })
            .await;
            gateways.push(Gateway {
                name,
                ip,
                explicit_port: ports[0],
                implicit_port: ports[1],
                passive,
                dir,
                log,
                child: Some(child),
            });
        }

        let config = data.path().join("haproxy.cfg");
        let haproxy_log = data.path().join("haproxy.log");
        let (haproxy, ports) = spawn_on_free_ports(LB_IP, 2, &haproxy_log, |ports| {
            std::fs::write(&config, haproxy_config(ports[0], ports[1], &gateways)).unwrap();
            let mut cmd = Command::new(&haproxy);
            cmd.arg("-db").arg("-f").arg(&config);
            cmd
        })
        .await;
        let (explicit_port, implicit_port) = (ports[0], ports[1]);

        Cluster {
            data,
            api_port,
            _control_plane: control_plane,
            gateways,
            explicit_port,
            implicit_port,
            haproxy_log,
            _haproxy: haproxy,
            http: reqwest::Client::new(),
        }
    }

    fn haproxy_log_text(&self) -> String {
        std::fs::read_to_string(&self.haproxy_log).unwrap_or_default()
    }

    /// Everything the processes logged, for failure messages.
    fn logs(&self) -> String {
        let mut all = format!("--- haproxy\n{}", self.haproxy_log_text());
        for gw in &self.gateways {
            all.push_str(&format!("--- {} ({})\n{}", gw.name, gw.ip, gw.log_text()));
        }
        all
    }

    async fn create_user(&self, home: &str) -> (String, String) {
        let created: Value = self
            .http
            .post(format!("http://127.0.0.1:{}/v1/users", self.api_port))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"description": "partner behind the LB", "homeDirectory": home}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            created["username"].as_str().expect("username").to_owned(),
            created["password"].as_str().expect("password").to_owned(),
        )
    }

    /// The object a user's file became in the control plane's local bucket.
    fn object(&self, key: &str) -> PathBuf {
        self.data.path().join("buckets").join(key)
    }

    /// `file.created` events of `user`, once there are at least `count` of them.
    async fn file_events(&self, user: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events: Value = self
                .http
                .get(format!(
                    "http://127.0.0.1:{}/v1/events?type=file.created&username={user}&pageSize=100",
                    self.api_port
                ))
                .bearer_auth(ADMIN_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let items = events["items"].as_array().cloned().unwrap_or_default();
            if items.len() >= count {
                return items;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} file.created events, have {}: {events}",
                items.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until HAProxy has taken `gateway` out of both control-port backends.
    async fn wait_marked_down(&self, gateway: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.haproxy_log_text();
            if ["ftps_explicit", "ftps_implicit"]
                .iter()
                .all(|b| log.contains(&format!("Server {b}/{gateway} is DOWN")))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy did not mark {gateway} down:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// HAProxy's configuration: the recommended setup of docs/ftps-behind-a-load-balancer.md on
/// loopback addresses and test ports.
fn haproxy_config(explicit_port: u16, implicit_port: u16, gateways: &[Gateway]) -> String {
    let mut cfg = String::from(
        "global\n\
         \x20   log stdout format raw local0 info\n\
         \x20   maxconn 2000\n\
         \n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   log global\n\
         \x20   option tcplog\n\
         \x20   option redispatch\n\
         \x20   retries 3\n\
         \x20   timeout connect 2s\n\
         \x20   timeout check 2s\n\
         \x20   timeout client 10m\n\
         \x20   timeout server 10m\n",
    );
    // Control ports: round-robin over every replica, checked by the explicit port's 220
    // greeting (behind the PROXY header the gateway requires).
    for (backend, port, explicit) in [
        ("ftps_explicit", explicit_port, true),
        ("ftps_implicit", implicit_port, false),
    ] {
        cfg.push_str(&format!(
            "\nfrontend {backend}\n\
             \x20   bind {LB_IP}:{port}\n\
             \x20   default_backend {backend}\n\
             \n\
             backend {backend}\n\
             \x20   balance roundrobin\n\
             \x20   option tcp-check\n\
             \x20   tcp-check expect rstring ^220\n"
        ));
        for gw in gateways {
            cfg.push_str(&format!(
                "    server {} {}:{} send-proxy-v2 check check-send-proxy port {} inter 500ms fall 2 rise 2\n",
                gw.name,
                gw.ip,
                if explicit {
                    gw.explicit_port
                } else {
                    gw.implicit_port
                },
                gw.explicit_port
            ));
        }
    }
    // Passive slices: each replica's ports to that replica only, same port number (no port on
    // the server line).
    for gw in gateways {
        cfg.push_str(&format!(
            "\nfrontend passive_{name}\n\
             \x20   bind {LB_IP}:{first}-{last}\n\
             \x20   default_backend passive_{name}\n\
             \n\
             backend passive_{name}\n\
             \x20   server {name} {ip} send-proxy-v2\n",
            name = gw.name,
            ip = gw.ip,
            first = gw.passive.0,
            last = gw.passive.1,
        ));
    }
    cfg
}

/// curl through HAProxy from `source` (explicit FTPS unless the URL is `ftps://`).
async fn curl(source: &str, user: &str, password: &str, cwd: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--interface", source];
    all.extend_from_slice(args);
    curl_ftps(user, password, cwd, &all).await
}

/// A Python ftplib.FTP_TLS session from a given source address: PASV (the advertised address
/// is used as given), an upload, a download and a listing. Prints the PASV port it got and the
/// downloaded file's SHA-256. Its data connections resume the control connection's TLS
/// session, as the gateways require (the usual fix for ftplib).
const FTPLIB_SESSION: &str = r#"
import ftplib, hashlib, io, ssl, sys
port, user, password, source, name, path = sys.argv[1:7]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
class ReusingFTP_TLS(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size
ftp = ReusingFTP_TLS(context=ctx, timeout=60, source_address=(source, 0))
ftp.trust_server_pasv_ipv4_address = True
ftp.connect("127.0.0.1", int(port))
ftp.login(user, password)
ftp.prot_p()
host, pasv_port = ftplib.parse227(ftp.sendcmd("PASV"))
assert host == "127.0.0.1", f"PASV advertised {host}"
print("pasv-port", pasv_port)
data = open(path, "rb").read()
ftp.storbinary(f"STOR {name}", io.BytesIO(data))
out = io.BytesIO()
ftp.retrbinary(f"RETR {name}", out.write)
assert out.getvalue() == data, "download differs from upload"
assert name in ftp.nlst(), "the listing lacks the upload"
print("sha256", hashlib.sha256(out.getvalue()).hexdigest())
ftp.quit()
"#;

async fn ftplib_session(port: u16, user: &str, password: &str, name: &str, local: &Path) -> Output {
    let mut cmd = Command::new(require_tool("python3", "apt-get install -y python3"));
    cmd.arg("-c")
        .arg(FTPLIB_SESSION)
        .arg(port.to_string())
        .arg(user)
        .arg(password)
        .arg(FTPLIB_IP)
        .arg(name)
        .arg(local)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the ftplib session timed out")
        .expect("run python3")
}

/// The recommended mode end to end: sessions of curl, lftp and ftplib through HAProxy's single
/// address (explicit and implicit TLS) land on both replicas, their data connections reach
/// the replica that answered PASV through its slice, uploads are in the bucket, listings and
/// downloads work, and the gateways and the control plane record the partner's address from
/// the PROXY header. Then one replica is killed and new sessions go to the other one.
#[tokio::test]
async fn two_gateways_behind_haproxy_share_one_address() {
    let cluster = Cluster::start().await;
    let (user, password) = cluster.create_user("/lb").await;
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path();
    let e = cluster.explicit_port;
    let i = cluster.implicit_port;
    // key (below the home) -> (source address of the uploading client, content)
    let mut uploads: Vec<(String, &str, Vec<u8>)> = Vec::new();

    // curl, explicit TLS: one session per command, so they alternate between the replicas.
    for (n, size) in [KIB, 64 * KIB, MIB, 3 * MIB].into_iter().enumerate() {
        let name = format!("curl-{n}.bin");
        let data = random_bytes(size);
        write_file(cwd, &name, &data);
        let out = curl(
            CURL_IP,
            &user,
            &password,
            cwd,
            &["-T", &name, &ftps_url(e, &format!("/{name}"))],
        )
        .await;
        ok(&out, &format!("curl upload {name}\n{}", cluster.logs()));
        uploads.push((name, CURL_IP, data));
    }
    // curl, implicit TLS, with PASV instead of EPSV.
    for n in 0..2 {
        let name = format!("implicit-{n}.bin");
        let data = random_bytes(200 * KIB);
        write_file(cwd, &name, &data);
        let out = curl(
            CURL_IMPLICIT_IP,
            &user,
            &password,
            cwd,
            &[
                "--disable-epsv",
                "-T",
                &name,
                &implicit_ftps_url(i, &format!("/{name}")),
            ],
        )
        .await;
        ok(
            &out,
            &format!("curl implicit upload {name}\n{}", cluster.logs()),
        );
        uploads.push((name, CURL_IMPLICIT_IP, data));
    }
    // lftp (GnuTLS), explicit with TLS 1.3 and implicit with TLS 1.2: upload, download, list.
    for (n, implicit) in [(0, false), (1, true)] {
        let name = format!("lftp-{n}.bin");
        let data = random_bytes(512 * KIB);
        write_file(cwd, &name, &data);
        let commands = format!(
            "set net:socket-bind-ipv4 {LFTP_IP}\nput {name}\nget {name} -o lftp-back-{n}.bin\ncls -1"
        );
        let out = if implicit {
            lftp_implicit(i, &user, &password, TLS12, cwd, &commands).await
        } else {
            lftp(e, &user, &password, TLS13, cwd, &commands).await
        };
        ok(&out, &format!("lftp session {n}\n{}", cluster.logs()));
        assert!(stdout(&out).contains(&name), "{}", text(&out));
        assert_eq!(read_file(cwd, &format!("lftp-back-{n}.bin")), data);
        uploads.push((name, LFTP_IP, data));
    }
    // Python ftplib: PASV's advertised address (the balancer's) and port (one replica's slice).
    let mut pasv_owners = Vec::new();
    for n in 0..2 {
        let name = format!("ftplib-{n}.bin");
        let data = random_bytes(300 * KIB);
        write_file(cwd, &name, &data);
        let out = ftplib_session(e, &user, &password, &name, &cwd.join(&name)).await;
        ok(&out, &format!("ftplib session {n}\n{}", cluster.logs()));
        let said = stdout(&out);
        assert!(
            said.contains(&format!("sha256 {}", sha256(&data))),
            "{said}"
        );
        let port: u16 = said
            .lines()
            .find_map(|l| l.strip_prefix("pasv-port "))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no PASV port in {said}"));
        let owner = cluster
            .gateways
            .iter()
            .find(|g| g.owns_passive_port(port))
            .unwrap_or_else(|| panic!("PASV port {port} is in no replica's slice"));
        pasv_owners.push(owner.name);
        uploads.push((name, FTPLIB_IP, data));
    }
    // Consecutive sessions alternate, so the two ftplib sessions got different replicas.
    assert_ne!(pasv_owners[0], pasv_owners[1], "{pasv_owners:?}");

    // Downloads in new sessions (so on either replica) match, explicit and implicit.
    for (n, (name, _, data)) in uploads.iter().enumerate() {
        let back = format!("back-{name}");
        let url = if n % 2 == 0 {
            ftps_url(e, &format!("/{name}"))
        } else {
            implicit_ftps_url(i, &format!("/{name}"))
        };
        let out = curl(CURL_IP, &user, &password, cwd, &["-o", &back, &url]).await;
        ok(&out, &format!("curl download {name}\n{}", cluster.logs()));
        assert_eq!(sha256_file(&cwd.join(&back)), sha256(data), "{name}");
    }
    // A listing through the balancer shows every upload.
    let out = curl(
        CURL_IP,
        &user,
        &password,
        cwd,
        &["--list-only", &ftps_url(e, "/")],
    )
    .await;
    ok(&out, "curl listing");
    let listing = stdout(&out);
    for (name, _, _) in &uploads {
        assert!(
            listing.lines().any(|l| l == name),
            "{name} not in {listing}"
        );
    }

    // Every upload is in the bucket, whichever replica took it.
    for (name, _, data) in &uploads {
        assert_eq!(
            sha256_file(&cluster.object(&format!("lb/{name}"))),
            sha256(data),
            "{name}"
        );
    }

    // Both replicas served sessions, and saw the partners' addresses (from the PROXY
    // header: HAProxy itself connects from 127.0.0.1).
    let mut seen = String::new();
    for gw in &cluster.gateways {
        let log = gw.log_text();
        assert!(
            gw.logins() >= 3,
            "{} served {} sessions:\n{log}",
            gw.name,
            gw.logins()
        );
        assert!(log.contains("upload started"), "{} took no upload", gw.name);
        assert!(
            log.contains("via=127.0.0.1"),
            "{}: no PROXY connection",
            gw.name
        );
        assert!(
            !log.contains("data connection refused"),
            "{}: a data connection was refused:\n{log}",
            gw.name
        );
        // Data connections reach the replica that holds the control connection's TLS
        // session, so they resume it.
        assert!(
            log.contains("resumed=true"),
            "{}: no resumed data connection",
            gw.name
        );
        seen.push_str(&log);
    }
    // The second replica presents the first one's certificate instead of generating its own.
    assert!(
        !cluster.gateways[1]
            .log_text()
            .contains("Generated a self-signed FTPS certificate"),
        "{}",
        cluster.gateways[1].log_text()
    );
    for ip in [CURL_IP, CURL_IMPLICIT_IP, LFTP_IP, FTPLIB_IP] {
        assert!(
            seen.contains(&format!("client={ip}:")),
            "no session from {ip} in the gateways' logs"
        );
    }

    // The control plane's events carry the partner's address, from the PROXY header.
    let events = cluster.file_events(&user, uploads.len()).await;
    assert_eq!(events.len(), uploads.len(), "{events:?}");
    for (name, ip, data) in &uploads {
        let key = format!("lb/{name}");
        let event = events
            .iter()
            .find(|ev| ev["data"]["key"] == key.as_str())
            .unwrap_or_else(|| panic!("no file.created event for {key}: {events:?}"));
        assert_eq!(event["data"]["clientIp"], *ip, "{event}");
        assert_eq!(event["data"]["protocol"], "ftps", "{event}");
        assert_eq!(event["data"]["sha256"], sha256(data), "{event}");
    }

    // One replica dies: HAProxy's health check takes it out, new sessions go to the other.
    let mut cluster = cluster;
    let survivor_logins = cluster.gateways[1].logins();
    cluster.gateways[0].kill().await;
    cluster.wait_marked_down("gw1").await;
    for n in 0..4 {
        let name = format!("after-failure-{n}.bin");
        let data = random_bytes(100 * KIB);
        write_file(cwd, &name, &data);
        let url = if n % 2 == 0 {
            ftps_url(e, &format!("/{name}"))
        } else {
            implicit_ftps_url(i, &format!("/{name}"))
        };
        let out = curl(CURL_IP, &user, &password, cwd, &["-T", &name, &url]).await;
        ok(
            &out,
            &format!("upload {name} after gw1 died\n{}", cluster.logs()),
        );
        let back = format!("back-{name}");
        let out = curl(CURL_IP, &user, &password, cwd, &["-o", &back, &url]).await;
        ok(&out, &format!("download {name} after gw1 died"));
        assert_eq!(read_file(cwd, &back), data);
        assert_eq!(
            sha256_file(&cluster.object(&format!("lb/{name}"))),
            sha256(&data)
        );
    }
    let out = lftp(
        e,
        &user,
        &password,
        TLS13,
        cwd,
        &format!("set net:socket-bind-ipv4 {LFTP_IP}\ncls -1"),
    )
    .await;
    ok(&out, "lftp listing after gw1 died");
    assert!(
        stdout(&out).contains("after-failure-3.bin"),
        "{}",
        text(&out)
    );
    assert!(
        cluster.gateways[1].logins() >= survivor_logins + 9,
        "every new session went to gw2:\n{}",
        cluster.logs()
    );
}

/// A replica that dies mid-transfer fails only its own sessions: its upload is not committed
/// (no partial file) and the partner's retry succeeds on the other replica, while a transfer
/// on the other replica goes on undisturbed.
#[tokio::test]
async fn a_replica_dying_mid_transfer_fails_only_its_own_sessions() {
    let mut cluster = Cluster::start().await;
    let (user, password) = cluster.create_user("/mid").await;
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path().to_owned();
    let e = cluster.explicit_port;
    let data = random_bytes(6 * MIB);
    write_file(&cwd, "big.bin", &data);

    // Two slow uploads, one after the other: round-robin gives them different replicas.
    let slow_upload = |name: &str| {
        let mut cmd = Command::new(require_tool("curl", "apt-get install -y curl"));
        cmd.args([
            "-sS",
            "--ssl-reqd",
            "-k",
            "--ftp-pasv",
            "--interface",
            CURL_IP,
        ])
        .args(["--limit-rate", "1M"])
        .arg("--user")
        .arg(format!("{user}:{password}"))
        .args(["-T", "big.bin", &ftps_url(e, &format!("/{name}"))])
        .current_dir(&cwd)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        cmd.output()
    };
    let first = tokio::spawn(slow_upload("first.bin"));
    let started = |cluster: &Cluster, name: &str| {
        cluster.gateways.iter().position(|g| {
            g.log_text()
                .lines()
                .any(|l| l.contains("upload started") && l.contains(&format!("path=/{name} ")))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let victim = loop {
        if let Some(gw) = started(&cluster, "first.bin") {
            break gw;
        }
        assert!(
            Instant::now() < deadline,
            "first upload never started:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let second = tokio::spawn(slow_upload("second.bin"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let other = loop {
        if let Some(gw) = started(&cluster, "second.bin") {
            break gw;
        }
        assert!(
            Instant::now() < deadline,
            "second upload never started:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(
        victim,
        other,
        "both uploads on one replica:\n{}",
        cluster.logs()
    );

    // The first upload's replica dies mid-transfer.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.gateways[victim].kill().await;
    let out = first.await.unwrap().unwrap();
    assert!(
        !out.status.success(),
        "the upload through the dead replica succeeded:\n{}",
        text(&out)
    );
    assert!(
        !cluster.object("mid/first.bin").exists(),
        "a partial upload was committed"
    );
    // The other replica's upload completes.
    let out = second.await.unwrap().unwrap();
    ok(
        &out,
        &format!("the upload on the surviving replica\n{}", cluster.logs()),
    );
    assert_eq!(
        sha256_file(&cluster.object("mid/second.bin")),
        sha256(&data)
    );

    // The partner retries; HAProxy sends it to the survivor (after its health check, or by
    // redispatching a refused connection).
    let out = curl(
        CURL_IP,
        &user,
        &password,
        &cwd,
        &["-T", "big.bin", &ftps_url(e, "/first.bin")],
    )
    .await;
    ok(&out, &format!("the retried upload\n{}", cluster.logs()));
    assert_eq!(sha256_file(&cluster.object("mid/first.bin")), sha256(&data));
}
