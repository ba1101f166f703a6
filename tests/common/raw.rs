//! Raw SFTP packets, for tests that send what no client library would (malformed packets,
//! floods, requests by the hundred without reading the replies).

use std::sync::Arc;
use std::time::Duration;

use russh::client;
use tokio::io::AsyncWriteExt;

use super::AcceptAnyHostKey;

/// Reads one SFTP packet: (type, body after the type byte). `None` when the channel ended.
pub async fn read_packet(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let len = tokio::time::timeout(Duration::from_secs(10), stream.read_u32())
        .await
        .expect("server did not answer within 10 s")
        .ok()?;
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await.ok()?;
    let kind = body.remove(0);
    Some((kind, body))
}

// SFTP v3 packet types the raw-packet tests send or expect.
pub const SSH_FXP_INIT: u8 = 1;
pub const SSH_FXP_VERSION: u8 = 2;
pub const SSH_FXP_OPEN: u8 = 3;
pub const SSH_FXP_CLOSE: u8 = 4;
pub const SSH_FXP_READ: u8 = 5;
pub const SSH_FXP_WRITE: u8 = 6;
pub const SSH_FXP_FSTAT: u8 = 8;
pub const SSH_FXP_OPENDIR: u8 = 11;
pub const SSH_FXP_READDIR: u8 = 12;
pub const SSH_FXP_STATUS: u8 = 101;
pub const SSH_FXP_HANDLE: u8 = 102;
pub const SSH_FXP_DATA: u8 = 103;
pub const SSH_FXP_NAME: u8 = 104;
pub const SSH_FXP_ATTRS: u8 = 105;

pub fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(kind);
    p.extend_from_slice(body);
    p
}

pub fn sftp_string(bytes: &[u8]) -> Vec<u8> {
    let mut s = (bytes.len() as u32).to_be_bytes().to_vec();
    s.extend_from_slice(bytes);
    s
}

/// An SSH connection logged in with a password, with no channel yet.
pub async fn password_connection(
    port: u16,
    user: &str,
    password: &str,
) -> client::Handle<AcceptAnyHostKey> {
    let config = Arc::new(client::Config::default());
    let mut session = client::connect(config, ("127.0.0.1", port), AcceptAnyHostKey)
        .await
        .expect("connect");
    let auth = session
        .authenticate_password(user, password)
        .await
        .expect("auth");
    assert!(auth.success(), "login failed");
    session
}

/// A new channel on `ssh` with the SFTP subsystem started and version 3 agreed.
pub async fn sftp_channel(
    ssh: &client::Handle<AcceptAnyHostKey>,
) -> russh::ChannelStream<client::Msg> {
    let channel = ssh.channel_open_session().await.expect("channel");
    channel
        .request_subsystem(true, "sftp")
        .await
        .expect("subsystem");
    let mut stream = channel.into_stream();
    stream
        .write_all(&packet(SSH_FXP_INIT, &[0, 0, 0, 3]))
        .await
        .unwrap();
    let (kind, _) = read_packet(&mut stream).await.expect("version");
    assert_eq!(kind, SSH_FXP_VERSION);
    stream
}

/// A STATUS reply's (request id, code, message).
pub fn status_of(body: &[u8]) -> (u32, u32, String) {
    let id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let code = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    let len = u32::from_be_bytes([body[8], body[9], body[10], body[11]]) as usize;
    let message = String::from_utf8_lossy(&body[12..12 + len]).into_owned();
    (id, code, message)
}

/// A HANDLE reply's (request id, handle).
pub fn handle_of(body: &[u8]) -> (u32, Vec<u8>) {
    let id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let len = u32::from_be_bytes([body[4], body[5], body[6], body[7]]) as usize;
    (id, body[8..8 + len].to_vec())
}
