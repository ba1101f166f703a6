//! The payloads of the SFTP extensions Wharf answers beyond russh-sftp's types:
//! `check-file-name` / `check-file-handle` (draft-ietf-secsh-filexfer-extensions-00 §3: the
//! hash of a stored file, so a partner can verify a transfer without downloading it again) and
//! OpenSSH's `users-groups-by-id@openssh.com` (names for `ls -l`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use russh_sftp::protocol::{ExtendedReply, Packet, StatusCode};
use wharf_vfs::{Checksum, HashAlgorithm};

use super::reply::Reply;

pub(crate) const CHECK_FILE_NAME: &str = "check-file-name";
pub(crate) const CHECK_FILE_HANDLE: &str = "check-file-handle";
/// `check-file-handle` under the name of an older draft, and the name of the reply.
pub(crate) const CHECK_FILE: &str = "check-file";
pub(crate) const USERS_GROUPS_BY_ID: &str = "users-groups-by-id@openssh.com";

/// A `check-file-name` or `check-file-handle` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckFile {
    /// The path (`check-file-name`) or the handle (`check-file-handle`).
    pub target: String,
    /// The first algorithm of the client's list that Wharf has.
    pub algorithm: HashAlgorithm,
    pub start: u64,
    /// 0: to the end of the file.
    pub length: u64,
    /// 0: one hash for the whole range.
    pub block_size: u32,
}

impl CheckFile {
    pub(crate) fn parse(mut data: Bytes) -> Result<Self, Reply> {
        let target = string(&mut data)?;
        let target = String::from_utf8(target.to_vec()).map_err(|_| malformed())?;
        let list = string(&mut data)?;
        let list = std::str::from_utf8(&list).map_err(|_| malformed())?;
        if data.remaining() != 8 + 8 + 4 {
            return Err(malformed());
        }
        let (start, length, block_size) = (data.get_u64(), data.get_u64(), data.get_u32());
        let algorithm = list
            .split(',')
            .find_map(|name| HashAlgorithm::from_sftp_name(name.trim()))
            .ok_or_else(|| {
                let ours: Vec<&str> = HashAlgorithm::ALL.iter().map(|a| a.sftp_name()).collect();
                Reply::Status(
                    StatusCode::OpUnsupported,
                    format!(
                        "none of the hash algorithms '{list}' is supported; use one of {}",
                        ours.join(", ")
                    ),
                )
            })?;
        Ok(CheckFile {
            target,
            algorithm,
            start,
            length,
            block_size,
        })
    }
}

/// The `check-file` reply: the algorithm used, then the digests one after the other.
pub(crate) fn check_file_reply(id: u32, checksum: &Checksum) -> Packet {
    let mut data = BytesMut::new();
    put_string(&mut data, CHECK_FILE.as_bytes());
    put_string(&mut data, checksum.algorithm.sftp_name().as_bytes());
    for digest in &checksum.digests {
        data.put_slice(digest);
    }
    ExtendedReply {
        id,
        data: data.to_vec(),
    }
    .into()
}

/// The reply to `users-groups-by-id@openssh.com`: a name for each id asked for, in order.
/// Object stores keep no owners and every entry is shown with id 0 (see
/// `reply::file_attrs`), which is the session's user; other ids have no name.
pub(crate) fn users_groups_by_id(id: u32, mut data: Bytes, user: &str) -> Result<Packet, Reply> {
    let uids = string(&mut data)?;
    let gids = string(&mut data)?;
    if data.has_remaining() || uids.len() % 4 != 0 || gids.len() % 4 != 0 {
        return Err(malformed());
    }
    let names = |ids: Bytes| {
        let mut names = BytesMut::new();
        for id in ids.chunks_exact(4) {
            let known = u32::from_be_bytes([id[0], id[1], id[2], id[3]]) == 0;
            put_string(&mut names, if known { user.as_bytes() } else { b"" });
        }
        names
    };
    let mut reply = BytesMut::new();
    put_string(&mut reply, &names(uids));
    put_string(&mut reply, &names(gids));
    Ok(ExtendedReply {
        id,
        data: reply.to_vec(),
    }
    .into())
}

fn string(data: &mut Bytes) -> Result<Bytes, Reply> {
    if data.remaining() < 4 {
        return Err(malformed());
    }
    let len = data.get_u32() as usize;
    if data.remaining() < len {
        return Err(malformed());
    }
    Ok(data.split_to(len))
}

fn put_string(out: &mut BytesMut, bytes: &[u8]) {
    // Names and digests are far below 4 GiB.
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
}

fn malformed() -> Reply {
    Reply::Status(StatusCode::BadMessage, "malformed extended request".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, algorithms: &str, tail: &[u8]) -> Bytes {
        let mut data = BytesMut::new();
        put_string(&mut data, target.as_bytes());
        put_string(&mut data, algorithms.as_bytes());
        data.put_slice(tail);
        data.freeze()
    }

    #[test]
    fn check_file_requests_pick_the_first_known_algorithm() {
        let mut tail = Vec::new();
        tail.extend(5u64.to_be_bytes());
        tail.extend(0u64.to_be_bytes());
        tail.extend(256u32.to_be_bytes());
        let parsed = CheckFile::parse(request("/a.edi", "crc32,sha256,md5", &tail)).unwrap();
        assert_eq!(
            parsed,
            CheckFile {
                target: "/a.edi".into(),
                algorithm: HashAlgorithm::Sha256,
                start: 5,
                length: 0,
                block_size: 256,
            }
        );
        assert!(matches!(
            CheckFile::parse(request("/a", "crc32", &tail)),
            Err(Reply::Status(StatusCode::OpUnsupported, _))
        ));
        assert!(matches!(
            CheckFile::parse(request("/a", "md5", &tail[..10])),
            Err(Reply::Status(StatusCode::BadMessage, _))
        ));
    }

    #[test]
    fn users_and_groups_are_named_in_order() {
        let mut data = BytesMut::new();
        put_string(&mut data, &[0, 0, 0, 0, 0, 0, 3, 232]);
        put_string(&mut data, &[0, 0, 0, 0]);
        let Packet::ExtendedReply(reply) = users_groups_by_id(9, data.freeze(), "K4ZQ").unwrap()
        else {
            panic!("an extended reply");
        };
        let mut body = Bytes::from(reply.data);
        let mut users = string(&mut body).unwrap();
        let mut groups = string(&mut body).unwrap();
        assert_eq!(&string(&mut users).unwrap()[..], b"K4ZQ");
        assert_eq!(&string(&mut users).unwrap()[..], b"");
        assert_eq!(&string(&mut groups).unwrap()[..], b"K4ZQ");
        assert!(!body.has_remaining() && !users.has_remaining() && !groups.has_remaining());
    }
}
