//! Hostile partners against the real binary: what one partner can make the gateway hold, and
//! what another partner experiences meanwhile (logins, file calls, the API). Each test is a
//! finding of the security review (issue 22) that failed before its fix.

mod common;

use std::time::Duration;

use common::raw::*;
use common::*;
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// How long another partner may wait for a login and a few file calls while an attack runs.
/// Not a performance figure: without the fixes they never finished.
const PATIENCE: Duration = Duration::from_secs(30);

fn request(kind: u8, id: u32, fields: &[&[u8]]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for field in fields {
        body.extend_from_slice(field);
    }
    packet(kind, &body)
}

/// Another partner logs in with a password, uploads, lists and reads back; and the API answers.
async fn another_partner_is_served(wharf: &Wharf, user: &str, password: &str) {
    let served = tokio::time::timeout(PATIENCE, async {
        let sftp = rust_sftp(wharf.sftp_port, user, password)
            .await
            .expect("login");
        sftp.put("/note.txt", b"still here").await.expect("upload");
        let names: Vec<String> = sftp
            .read_dir("/")
            .await
            .expect("list")
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["note.txt"]);
        let (status, _) = wharf.api(Method::GET, "/v1/users", None).await;
        assert_eq!(status, 200);
    })
    .await;
    assert!(
        served.is_ok(),
        "another partner was not served within {PATIENCE:?}"
    );
}

/// One partner opens listings of a 2,500-entry directory on all 16 channels of a connection,
/// reads their first page and never the rest. Each such listing used to park one of the
/// server's blocking threads until the next page was read: 512 of them took the whole pool,
/// which password hashing and every local-disk call share, so other partners' logins and the
/// API hung. Now a connection may hold 64 files open, and a listing holds no thread between
/// pages.
#[tokio::test]
async fn unread_listings_do_not_hold_up_other_partners() {
    let wharf = Wharf::start().await;
    let (attacker, attacker_password) = wharf.create_user("/attacker", json!({})).await;
    let (partner, partner_password) = wharf.create_user("/partner", json!({})).await;
    let big = wharf.bucket_dir().join("attacker/big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..2_500 {
        std::fs::write(big.join(format!("f-{i:05}")), b"x").unwrap();
    }
    let threads_before = wharf.proc_status("Threads");

    let ssh = password_connection(wharf.sftp_port, &attacker, &attacker_password).await;
    let mut id = 0u32;
    let (mut opened, mut refusals) = (0, Vec::new());
    let mut channels = Vec::new();
    for _ in 0..16 {
        let mut stream = sftp_channel(&ssh).await;
        let mut batch = Vec::new();
        for _ in 0..32 {
            id += 1;
            batch.extend(request(SSH_FXP_OPENDIR, id, &[&sftp_string(b"/big")]));
        }
        stream.write_all(&batch).await.unwrap();
        let mut handles = Vec::new();
        for _ in 0..32 {
            match read_packet(&mut stream).await.expect("reply") {
                (SSH_FXP_HANDLE, body) => handles.push(handle_of(&body).1),
                (SSH_FXP_STATUS, body) => refusals.push(status_of(&body).2),
                (kind, _) => panic!("unexpected reply {kind}"),
            }
        }
        for handle in &handles {
            id += 1;
            let readdir = request(SSH_FXP_READDIR, id, &[&sftp_string(handle)]);
            stream.write_all(&readdir).await.unwrap();
            let (kind, _) = read_packet(&mut stream).await.expect("names");
            assert_eq!(kind, SSH_FXP_NAME);
        }
        opened += handles.len();
        channels.push((stream, handles));
    }
    assert_eq!(opened, 64, "open files per connection");
    assert_eq!(refusals.len(), 16 * 32 - 64);
    assert!(
        refusals[0].contains("too many open files (at most 64 per connection)"),
        "{}",
        refusals[0]
    );

    another_partner_is_served(&wharf, &partner, &partner_password).await;

    // No thread stays with the listings: the blocking threads that read their pages go back
    // to the pool and, idle, end (tokio keeps an idle one for 10 s). Parked threads never did.
    let mut threads = wharf.proc_status("Threads");
    for _ in 0..60 {
        if threads < threads_before + 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        threads = wharf.proc_status("Threads");
    }
    assert!(
        threads < threads_before + 16,
        "the server went from {threads_before} to {threads} threads and stayed there"
    );

    // The attacker's listings still read on where they stopped.
    let (stream, handles) = channels
        .iter_mut()
        .find(|(_, handles)| !handles.is_empty())
        .unwrap();
    id += 1;
    let readdir = request(SSH_FXP_READDIR, id, &[&sftp_string(&handles[0])]);
    stream.write_all(&readdir).await.unwrap();
    let (kind, _) = read_packet(stream).await.expect("names");
    assert_eq!(kind, SSH_FXP_NAME);
}

/// One partner writes each of 60 uploads from offset 1, so nothing is ever contiguous and every
/// byte must be held until the gap is filled. That used to hold up to 16 MiB per upload with no
/// total (64 handles took the server from 76 MiB to over 1 GiB). Now a connection's held
/// writes share a 32 MiB budget: the writes past it are refused with a clear status, the
/// connection goes on, and other partners are served.
#[tokio::test]
async fn writes_held_out_of_order_have_a_memory_budget() {
    const UPLOADS: usize = 60;
    const WRITES: usize = 32;
    const CHUNK: usize = 128 * 1024;
    // WRITE | CREAT | TRUNC
    const PFLAGS: u32 = 0x02 | 0x08 | 0x10;
    let wharf = Wharf::start().await;
    let (attacker, attacker_password) = wharf.create_user("/attacker", json!({})).await;
    let (partner, partner_password) = wharf.create_user("/partner", json!({})).await;
    let rss_before = wharf.proc_status("VmRSS");

    let ssh = password_connection(wharf.sftp_port, &attacker, &attacker_password).await;
    let mut stream = sftp_channel(&ssh).await;
    let mut id = 0u32;
    let mut handles = Vec::new();
    for n in 0..UPLOADS {
        id += 1;
        let name = format!("/held-{n:02}");
        let open = request(
            SSH_FXP_OPEN,
            id,
            &[
                &sftp_string(name.as_bytes()),
                &PFLAGS.to_be_bytes(),
                &[0; 4],
            ],
        );
        stream.write_all(&open).await.unwrap();
        let (kind, body) = read_packet(&mut stream).await.expect("handle");
        assert_eq!(kind, SSH_FXP_HANDLE, "{:?}", status_of(&body));
        handles.push(handle_of(&body).1);
    }
    let chunk = vec![7u8; CHUNK];
    let (mut held, mut refusals) = (0usize, Vec::new());
    for handle in &handles {
        let mut batch = Vec::new();
        for w in 0..WRITES {
            id += 1;
            let offset = (1 + w * CHUNK) as u64;
            batch.extend(request(
                SSH_FXP_WRITE,
                id,
                &[
                    &sftp_string(handle),
                    &offset.to_be_bytes(),
                    &sftp_string(&chunk),
                ],
            ));
        }
        stream.write_all(&batch).await.unwrap();
        for _ in 0..WRITES {
            let (kind, body) = read_packet(&mut stream).await.expect("status");
            assert_eq!(kind, SSH_FXP_STATUS);
            match status_of(&body) {
                (_, 0, _) => held += CHUNK,
                (_, _, message) => refusals.push(message),
            }
        }
    }
    assert!(held <= 32 * 1024 * 1024, "{held} bytes held");
    assert!(held >= 16 * 1024 * 1024, "only {held} bytes held");
    assert!(
        refusals
            .first()
            .is_some_and(|m| m.contains("server busy") && m.contains("send writes in order")),
        "{refusals:?}"
    );
    let rss = wharf.proc_status("VmRSS");
    assert!(
        rss < rss_before + 120 * 1024,
        "the server grew from {rss_before} KiB to {rss} KiB"
    );

    // The connection goes on: a file written in order is stored.
    id += 1;
    let open = request(
        SSH_FXP_OPEN,
        id,
        &[
            &sftp_string(b"/in-order.txt"),
            &PFLAGS.to_be_bytes(),
            &[0; 4],
        ],
    );
    // The connection's 64 open files include the 60 held uploads: close one first.
    id += 1;
    let close = request(SSH_FXP_CLOSE, id, &[&sftp_string(&handles[0])]);
    stream.write_all(&close).await.unwrap();
    let (kind, _) = read_packet(&mut stream).await.expect("close");
    assert_eq!(kind, SSH_FXP_STATUS);
    stream.write_all(&open).await.unwrap();
    let (kind, body) = read_packet(&mut stream).await.expect("handle");
    assert_eq!(kind, SSH_FXP_HANDLE, "{:?}", status_of(&body));
    let handle = handle_of(&body).1;
    id += 1;
    let write = request(
        SSH_FXP_WRITE,
        id,
        &[
            &sftp_string(&handle),
            &0u64.to_be_bytes(),
            &sftp_string(b"in order"),
        ],
    );
    stream.write_all(&write).await.unwrap();
    id += 1;
    let close = request(SSH_FXP_CLOSE, id, &[&sftp_string(&handle)]);
    stream.write_all(&close).await.unwrap();
    for _ in 0..2 {
        let (kind, body) = read_packet(&mut stream).await.expect("status");
        assert_eq!((kind, status_of(&body).1), (SSH_FXP_STATUS, 0));
    }
    assert_eq!(
        std::fs::read(wharf.bucket_dir().join("attacker/in-order.txt")).unwrap(),
        b"in order"
    );

    another_partner_is_served(&wharf, &partner, &partner_password).await;
}

/// An API key holder cannot make the host's own directories or credentials into a bucket. A
/// bucket on the data directory used to let the objects API read the admin key, the gateway
/// token and the SSH host keys, and one without credentials used the host's (instance role).
/// Now `file://` buckets live in their own directory under `--local-bucket-root` (by default
/// the data directory's `buckets/`), and cloud buckets bring their own credentials.
#[tokio::test]
async fn api_key_holders_cannot_reach_the_host_through_buckets() {
    let wharf = Wharf::start().await;
    let data = wharf.data_dir.path().to_path_buf();
    let refused = [
        format!("file://{}", data.display()),
        format!("file://{}/host-keys", data.display()),
        format!("file://{}/buckets", data.display()),
        format!("file://{}/buckets/../host-keys", data.display()),
        format!("file://{}/buckets/%2e%2e/tls", data.display()),
        "file:///etc".to_owned(),
        "file:///".to_owned(),
    ];
    for url in refused {
        let (status, problem) = wharf
            .api(
                Method::POST,
                "/v1/buckets",
                Some(json!({"bucketName": "loot", "storageUrl": url})),
            )
            .await;
        assert_eq!(status, 400, "{url}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "storageUrl", "{problem}");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("--local-bucket-root"),
            "{problem}"
        );
    }
    // Nothing was created on the way.
    assert!(!data.join("buckets/loot").exists());

    // A cloud bucket with no credentials of its own would run on the host's.
    for options in [
        json!({"aws_endpoint": "http://127.0.0.1:9"}),
        json!({"aws_access_key_id": "k", "aws_secret_access_key": "s",
               "aws_web_identity_token_file": data.join("admin-api-key")}),
    ] {
        let (status, problem) = wharf
            .api(
                Method::POST,
                "/v1/buckets",
                Some(json!({"bucketName": "role", "storageUrl": "s3://anything", "options": options})),
            )
            .await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["errors"][0]["field"], "options", "{problem}");
    }
    let (_, buckets) = wharf.api(Method::GET, "/v1/buckets", None).await;
    assert_eq!(buckets["items"].as_array().unwrap().len(), 1, "{buckets}");

    // A directory of its own under the root is a bucket like any other.
    let archive = data.join("buckets").join("archive-store");
    let (status, created) = wharf
        .api(
            Method::POST,
            "/v1/buckets",
            Some(json!({"bucketName": "archive", "storageUrl": format!("file://{}", archive.display())})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(archive.is_dir());
}

/// Webhooks cannot reach the server's own network by default, and what a receiver answers is
/// never shown. Both used to be the other way round: a webhook to 169.254.169.254 or a port on
/// loopback was accepted, and the deliveries API showed the target's answer.
#[tokio::test]
async fn webhooks_reach_neither_internal_targets_nor_show_what_they_answer() {
    let wharf = Wharf::start_with(StartOptions {
        allow_private_webhooks: false,
        ..StartOptions::default()
    })
    .await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/v1/users",
        "http://[::1]/",
        "http://localhost:9000/hook",
        "http://10.0.0.5/hook",
    ] {
        let (status, problem) = wharf
            .api(
                Method::POST,
                "/v1/webhooks",
                Some(json!({"url": url, "events": ["file.created"]})),
            )
            .await;
        assert_eq!(status, 400, "{url}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "url", "{problem}");
    }

    // Allowed by the operator, a delivery to a receiver that answers with a secret in its
    // body records the status only.
    let allowed = Wharf::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/hook?token=t0ken", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0; 64 * 1024];
            let _ = socket.read(&mut request).await;
            let body = "AWS_SECRET_ACCESS_KEY=leaked";
            let answer = format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let (status, hook) = allowed
        .api(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": receiver, "events": ["file.created"]})),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let id = hook["id"].as_str().unwrap().to_owned();
    let (status, _) = allowed
        .api(Method::POST, &format!("/v1/webhooks/{id}/test"), None)
        .await;
    assert!(status < 300, "test delivery: {status}");
    let mut seen = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, deliveries) = allowed
            .api(Method::GET, &format!("/v1/webhooks/{id}/deliveries"), None)
            .await;
        if deliveries["items"][0]["attempts"][0]["statusCode"] == 403 {
            seen = deliveries;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = seen.to_string();
    assert!(text.contains("403"), "no failed attempt recorded: {seen}");
    assert!(
        !text.contains("leaked"),
        "the receiver's answer is shown: {seen}"
    );
    assert!(
        !allowed.log_text().contains("t0ken"),
        "the webhook URL's token is logged"
    );
}

/// A source address that is not loopback (loopback is exempt from the per-address cap): one
/// from 198.18.0.0/15 (RFC 2544, benchmarking) added to `lo` for the test, removed on drop.
/// Needs root, as the project's test machines give.
struct ExtraAddress(std::net::IpAddr);

impl ExtraAddress {
    fn add() -> ExtraAddress {
        let n = std::process::id();
        let ip: std::net::IpAddr = format!("198.18.{}.{}", (n >> 8) & 0xff, (n & 0xff).max(1))
            .parse()
            .unwrap();
        let added = std::process::Command::new("ip")
            .args(["addr", "replace", &format!("{ip}/32"), "dev", "lo"])
            .status()
            .expect("`ip` (iproute2) runs");
        assert!(
            added.success(),
            "cannot add {ip} to lo (this test needs root)"
        );
        ExtraAddress(ip)
    }

    /// A connection to `port` on loopback from this address.
    async fn connect(&self, port: u16) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::new(self.0, 0)).unwrap();
        socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect")
    }
}

impl Drop for ExtraAddress {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .status();
    }
}

/// Opens eleven connections to `port` from `attacker`: ten must be served (their first line
/// starts with `served`), one refused with the reason. Returns the ten.
async fn connect_eleven(
    attacker: &ExtraAddress,
    port: u16,
    served: &str,
) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncBufReadExt;
    let mut connections = Vec::new();
    for _ in 0..11 {
        connections.push(attacker.connect(port).await);
    }
    let (mut kept, mut refusals) = (Vec::new(), Vec::new());
    for stream in connections {
        let mut reader = tokio::io::BufReader::new(stream);
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line));
        read.await.expect("a first line within 10 s").expect("read");
        if line.starts_with(served) {
            kept.push(reader.into_inner());
        } else {
            refusals.push(line);
        }
    }
    assert_eq!(refusals.len(), 1, "port {port}: {refusals:?}");
    assert!(
        refusals[0].contains("too many connections from your address"),
        "port {port}: {refusals:?}"
    );
    kept
}

/// Idle connections from one address cannot lock partners out: at most 10 from one address
/// may be logging in at once (the rest are told why and closed), and those are closed once
/// the login timeout passes. 1,024 idle sockets from one address used to take every slot of
/// both gateways for 60 s at a time.
#[tokio::test]
async fn idle_connections_from_one_address_cannot_lock_partners_out() {
    use tokio::io::AsyncReadExt;
    let wharf = Wharf::start_with(StartOptions {
        extra_args: vec!["--sftp-login-timeout".into(), "5".into()],
        ..StartOptions::default()
    })
    .await;
    let (partner, partner_password) = wharf.create_user("/partner", json!({})).await;
    let attacker = ExtraAddress::add();

    // Eleven connections from the address: ten are served (banner, greeting), one is told why
    // and closed. Which one is refused depends on scheduling, so each is read.
    let mut held = connect_eleven(&attacker, wharf.sftp_port, "SSH-2.0-Wharf").await;
    let ftps_held = connect_eleven(&attacker, wharf.ftps_port, "220 ").await;
    assert_eq!(ftps_held.len(), 10);

    // Partners (here from loopback) are served meanwhile.
    another_partner_is_served(&wharf, &partner, &partner_password).await;

    // The held SFTP connections are closed at the login timeout; then the address may try
    // again.
    let mut rest = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(30), held[0].read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "an idle connection outlived the login timeout"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = attacker.connect(wharf.sftp_port).await;
    let mut banner = [0u8; 13];
    again.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"SSH-2.0-Wharf");
}

/// Clients that send half a request's headers and stop cannot hold the API's connections: the
/// server closes them once the header timeout (10 s) passes, and serves others meanwhile. 200
/// such connections used to stay open indefinitely.
#[tokio::test]
async fn half_sent_api_requests_are_cut_off() {
    use tokio::io::AsyncReadExt;
    let wharf = Wharf::start().await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", wharf.api_port))
            .await
            .unwrap();
        stream
            .write_all(b"GET /v1/users HTTP/1.1\r\nHost: wharf\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let (status, _) = wharf.api(Method::GET, "/v1/users", None).await;
    assert_eq!(status, 200, "the API answers others meanwhile");
    for stream in &mut slow {
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(25), stream.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "a half-sent request kept its connection open"
        );
    }
}

/// Other accounts on the host cannot read the database (password hashes, webhook secrets,
/// bucket credentials) or the keys, even in a data directory they may enter: the database
/// used to be created 0644.
#[tokio::test]
async fn the_database_and_keys_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let wharf = Wharf::start_with(StartOptions {
        data_dir: Some(data_dir),
        ..StartOptions::default()
    })
    .await;
    let dir = wharf.data_dir.path();
    let mut files = vec!["gateway-token".to_owned()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("wharf.db") {
            files.push(name);
        }
    }
    assert!(files.iter().any(|f| f == "wharf.db"), "{files:?}");
    for file in files {
        let mode = std::fs::metadata(dir.join(&file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is {mode:o}");
    }
}

/// RSA user keys are at least 2048 bits and sign with SHA-2: the API refuses a 1024-bit key,
/// and a client that offers only `ssh-rsa` (SHA-1) signatures is turned away while the same
/// key with rsa-sha2 logs in. Both used to be accepted.
#[tokio::test]
async fn rsa_keys_need_2048_bits_and_sha2_signatures() {
    let wharf = Wharf::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rsa = |bits: &str| {
        let path = dir.path().join(format!("rsa-{bits}"));
        let made = std::process::Command::new("ssh-keygen")
            .args([
                "-q", "-t", "rsa", "-b", bits, "-N", "", "-C", "partner", "-f",
            ])
            .arg(&path)
            .status()
            .expect("ssh-keygen");
        assert!(made.success());
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        (path, public.trim().to_owned())
    };
    let (_, weak) = rsa("1024");
    let (key, public) = rsa("2048");
    let (status, problem) = wharf
        .api(
            Method::POST,
            "/v1/users",
            Some(json!({"description": "weak", "homeDirectory": "/weak", "publicKeys": [weak]})),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem.to_string().contains("2048"), "{problem}");
    let (user, _) = wharf
        .create_user("/rsa", json!({"publicKeys": [public]}))
        .await;

    let sftp = |algorithms: Option<&str>| {
        let mut cmd = tokio::process::Command::new("sftp");
        cmd.args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
            .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20"])
            .arg("-i")
            .arg(&key)
            .arg("-P")
            .arg(wharf.sftp_port.to_string());
        if let Some(algorithms) = algorithms {
            cmd.arg("-o")
                .arg(format!("PubkeyAcceptedAlgorithms={algorithms}"));
        }
        cmd.arg("-b")
            .arg("-")
            .arg(format!("{user}@127.0.0.1"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    };
    let sha2 = sftp(None).output().await.unwrap();
    assert!(sha2.status.success(), "rsa-sha2: {}", text(&sha2));
    // OpenSSH limited to ssh-rsa does not even offer it: the server no longer lists it in
    // server-sig-algs. A client that signs with SHA-1 anyway (russh without a hash) is refused.
    let sha1 = sftp(Some("ssh-rsa")).output().await.unwrap();
    assert!(!sha1.status.success(), "ssh-rsa: {}", text(&sha1));
    assert!(
        !rust_key_login(wharf.sftp_port, &user, &key).await,
        "an ssh-rsa (SHA-1) signature logged in"
    );
    assert!(
        wharf
            .log_text()
            .contains("ssh-rsa (SHA-1) signature refused"),
        "{}",
        wharf.log_text()
    );
}

/// A brute force from one address is banned across both gateways: wrong passwords over SFTP
/// and FTPS count together (a guessed user name counts double), then every login from the
/// address is refused without its password being checked, then its new connections are turned
/// away at once, while partners elsewhere log in as usual. The operator sees the ban and lifts
/// it. 1,500 guesses at 40/s from one address used to be checked one by one, delaying a real
/// partner's login to 3.8 s.
#[tokio::test]
async fn a_brute_force_is_banned_on_every_gateway() {
    use tokio::io::AsyncBufReadExt;
    let wharf = Wharf::start().await;
    let (partner, partner_password) = wharf.create_user("/partner", json!({})).await;
    let attacker = ExtraAddress::add();
    let dir = tempfile::tempdir().unwrap();

    // SFTP: one connection, three wrong passwords for a user that does not exist (6 points).
    let config = std::sync::Arc::new(russh::client::Config::default());
    let stream = attacker.connect(wharf.sftp_port).await;
    let mut ssh = russh::client::connect_stream(config.clone(), stream, AcceptAnyHostKey)
        .await
        .expect("an SSH connection");
    for n in 0..3 {
        let auth = ssh
            .authenticate_password("ghost", format!("guess-{n}"))
            .await
            .expect("an answer");
        assert!(!auth.success());
    }
    drop(ssh);
    // FTPS: five more (10 points): 16 of the 15 that ban.
    let curl = |user: String, password: String| {
        let ip = attacker.0.to_string();
        let dir = dir.path().to_owned();
        async move {
            let url = ftps_url(wharf.ftps_port, "/");
            curl_ftps(
                &user,
                &password,
                &dir,
                &["--interface", &ip, "--list-only", &url],
            )
            .await
        }
    };
    for n in 0..5 {
        let out = curl("ghost".into(), format!("guess-{n}")).await;
        assert!(!out.status.success());
        assert!(text(&out).contains("530"), "{}", text(&out));
    }
    // Banned: even the right password is refused, and the FTPS gateway closes the connection.
    let out = curl(partner.clone(), partner_password.clone()).await;
    assert!(!out.status.success(), "{}", text(&out));
    // New connections from the address are turned away at once, on both gateways.
    let mut line = String::new();
    let ftps = attacker.connect(wharf.ftps_port).await;
    tokio::io::BufReader::new(ftps)
        .read_line(&mut line)
        .await
        .unwrap();
    assert!(line.starts_with("421 too many failed logins"), "{line}");
    let stream = attacker.connect(wharf.sftp_port).await;
    let mut ssh = russh::client::connect_stream(config.clone(), stream, AcceptAnyHostKey)
        .await
        .expect("the SFTP gateway has not heard of the ban yet");
    let auth = ssh
        .authenticate_password(partner.as_str(), partner_password.as_str())
        .await;
    assert!(
        !auth.is_ok_and(|a| a.success()),
        "the right password from a banned address"
    );
    drop(ssh);
    let mut line = String::new();
    let sftp = attacker.connect(wharf.sftp_port).await;
    tokio::io::BufReader::new(sftp)
        .read_line(&mut line)
        .await
        .unwrap();
    assert!(line.starts_with("too many failed logins"), "{line}");

    // Partners elsewhere are served as usual.
    another_partner_is_served(&wharf, &partner, &partner_password).await;

    // The operator sees the ban, and lifts it.
    let out = wharf.cli(&["bans", "list"]).await;
    let listed = text(&out);
    assert!(listed.contains(&format!("{}/32", attacker.0)), "{listed}");
    let out = wharf
        .cli(&["bans", "lift", "--address", &attacker.0.to_string()])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let (status, body) = wharf.api(Method::GET, "/v1/bans", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"], json!([]));
    assert!(wharf.log_text().contains("banned after failed logins"));
}

/// Another program on the partner's address that connects to the passive port first gets
/// nothing: the data connection must resume the control connection's TLS session, which only
/// the partner holds, so the file is never sent to the thief, and the partner is told (522)
/// and retries. The thief used to receive the victim's RETR data while the victim got 226.
#[tokio::test]
async fn a_passive_port_race_steals_no_data() {
    let wharf = Wharf::start().await;
    let (user, password) = wharf.create_user("/victim", json!({})).await;
    let out = ftplib_client("theft", wharf.ftps_port, &user, &password).await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wharf
            .log_text()
            .contains("did not resume the control connection's TLS session")
    );
}

/// With the PROXY protocol on, only the trusted balancers may name the client: a header from
/// any other peer is not believed and its connection is dropped, so a client cannot pass for
/// another address (to dodge its bans, or to open another client's data connections). Any
/// peer's header used to be believed.
#[tokio::test]
async fn proxy_headers_count_only_from_trusted_proxies() {
    use tokio::io::AsyncReadExt;
    let wharf = Wharf::start_with(StartOptions {
        extra_args: vec![
            "--ftps-proxy-protocol".into(),
            "--trusted-proxies".into(),
            "127.0.0.1".into(),
        ],
        ..StartOptions::default()
    })
    .await;
    let header = format!(
        "PROXY TCP4 203.0.113.9 127.0.0.1 40000 {}\r\n",
        wharf.ftps_port
    );
    // From the trusted balancer: served.
    let mut trusted = tokio::net::TcpStream::connect(("127.0.0.1", wharf.ftps_port))
        .await
        .unwrap();
    trusted.write_all(header.as_bytes()).await.unwrap();
    let mut greeting = [0u8; 4];
    trusted.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"220 ");
    // From anyone else: dropped without a greeting.
    let stranger = ExtraAddress::add();
    let mut spoofed = stranger.connect(wharf.ftps_port).await;
    spoofed.write_all(header.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), spoofed.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?} {rest:?}");
    assert!(wharf.log_text().contains("not a trusted proxy"));
}

/// Sessions do not outlive their user: gateways re-check every open session with the control
/// plane (here every second), and end those whose user was disabled or whose password was
/// reset, over SFTP and FTPS, while other partners go on; a session also ends at the maximum
/// session duration. A disabled, reset or deleted user's session used to keep uploading.
#[tokio::test]
async fn sessions_end_when_their_user_is_disabled_or_reset() {
    let wharf = Wharf::start_with(StartOptions {
        extra_args: vec!["--session-recheck-interval".into(), "1".into()],
        ..StartOptions::default()
    })
    .await;
    let (disabled, disabled_password) = wharf.create_user("/disabled", json!({})).await;
    let (reset, reset_password) = wharf.create_user("/reset", json!({})).await;
    let (ftps_user, ftps_password) = wharf.create_user("/ftps", json!({})).await;
    let (other, other_password) = wharf.create_user("/other", json!({})).await;

    let gone = rust_sftp(wharf.sftp_port, &disabled, &disabled_password)
        .await
        .unwrap();
    let changed = rust_sftp(wharf.sftp_port, &reset, &reset_password)
        .await
        .unwrap();
    let stays = rust_sftp(wharf.sftp_port, &other, &other_password)
        .await
        .unwrap();
    let port = wharf.ftps_port;
    let (u, p) = (ftps_user.clone(), ftps_password.clone());
    let held = tokio::spawn(async move { ftplib_client("held", port, &u, &p).await });
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (status, _) = wharf
        .api(
            Method::PATCH,
            &format!("/v1/users/{disabled}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = wharf
        .api(Method::POST, &format!("/v1/users/{reset}/password"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = wharf
        .api(
            Method::PATCH,
            &format!("/v1/users/{ftps_user}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);

    // Within a few re-checks, the sessions are over: every call fails.
    for session in [&gone, &changed] {
        let over = tokio::time::timeout(Duration::from_secs(20), async {
            while session.sftp.read_dir("/").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert!(over.is_ok(), "a session outlived its user's change");
    }
    let out = held.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("421 Your session has ended"), "{printed}");
    // The other partner was not disturbed.
    stays.put("/still.txt", b"here").await.expect("upload");
    assert!(wharf.log_text().contains("ending the session"));

    // A session ends at the maximum duration however active it is.
    let short = Wharf::start_with(StartOptions {
        extra_args: vec![
            "--session-recheck-interval".into(),
            "1".into(),
            "--max-session-duration".into(),
            "2".into(),
        ],
        ..StartOptions::default()
    })
    .await;
    let (user, password) = short.create_user("/short", json!({})).await;
    let session = rust_sftp(short.sftp_port, &user, &password).await.unwrap();
    let over = tokio::time::timeout(Duration::from_secs(20), async {
        while session.sftp.read_dir("/").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(over.is_ok(), "a session outlived the maximum duration");
    assert!(short.log_text().contains("time limit"));
}
