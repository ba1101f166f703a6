//! Checksums of stored files, so partners can verify a transfer without downloading it again
//! (SFTP `check-file-name` / `check-file-handle`, FTP `HASH`).
//!
//! Every upload computes its SHA-256 while it streams (it goes into the `file.created` event).
//! [`KnownHashes`] remembers it per bucket for the version that upload committed, so the usual
//! "upload, then verify" costs no read of the file on this gateway. Anything else (another
//! algorithm, a range, a file written elsewhere or by another replica) is computed by reading
//! the file, pinned to the version seen when the request started.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectMeta};

use crate::vfs::head;
use crate::{Vfs, VfsError, VirtualPath};

/// A hash function partners may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    /// Every algorithm, strongest first.
    pub const ALL: [HashAlgorithm; 6] = [
        HashAlgorithm::Sha512,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha224,
        HashAlgorithm::Sha1,
        HashAlgorithm::Md5,
    ];

    /// The name in SFTP's `check-file` extension (draft-ietf-secsh-filexfer-extensions-00).
    pub fn sftp_name(self) -> &'static str {
        match self {
            HashAlgorithm::Md5 => "md5",
            HashAlgorithm::Sha1 => "sha1",
            HashAlgorithm::Sha224 => "sha224",
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        }
    }

    /// The algorithm an SFTP `check-file` name means (exact, lower case as the draft spells
    /// them).
    pub fn from_sftp_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.sftp_name() == name)
    }

    /// The name in FTP's `HASH` command (draft-bryan-ftpext-hash).
    pub fn ftp_name(self) -> &'static str {
        match self {
            HashAlgorithm::Md5 => "MD5",
            HashAlgorithm::Sha1 => "SHA-1",
            HashAlgorithm::Sha224 => "SHA-224",
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::Sha384 => "SHA-384",
            HashAlgorithm::Sha512 => "SHA-512",
        }
    }

    /// The algorithm an FTP `HASH` name means, in any letter case.
    pub fn from_ftp_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.ftp_name().eq_ignore_ascii_case(name))
    }

    fn hasher(self) -> Hasher {
        use sha2::Digest as _;
        match self {
            HashAlgorithm::Md5 => Hasher::Md5(md5::Md5::default()),
            HashAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::default()),
            HashAlgorithm::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
            HashAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgorithm::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            HashAlgorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

impl std::fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.sftp_name())
    }
}

/// One running hash.
enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        use md5::Digest as _;
        use sha2::Digest as _;
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        use md5::Digest as _;
        use sha2::Digest as _;
        match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha224(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// What [`Vfs::checksum`] computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: HashAlgorithm,
    /// The bytes hashed (clipped to the file's size).
    pub range: Range<u64>,
    /// One digest per block of the range, in order (a single one without blocks).
    pub digests: Vec<Vec<u8>>,
}

/// Smallest block a partner may ask digests per block for: a smaller one would make the
/// reply larger than the file (the SFTP draft's own minimum).
pub const MIN_HASH_BLOCK: u64 = 256;

/// Most digests one request may ask for (the reply is one packet).
pub const MAX_HASH_BLOCKS: u64 = 4096;

impl Vfs {
    /// The hash of bytes `start .. start + len` of the file at `path` (`len` 0: to the end;
    /// clipped to the file's size), one digest per `block_size` bytes (0: one digest for the
    /// whole range).
    ///
    /// Needs read permission, or the file must be one this session uploaded (a write-only
    /// partner may verify what it delivered, not probe what others left). Fails with
    /// [`VfsError::Unsupported`] for a range that starts beyond the end of the file, a block
    /// below [`MIN_HASH_BLOCK`] or more than [`MAX_HASH_BLOCKS`] digests.
    pub async fn checksum(
        &self,
        path: &VirtualPath,
        algorithm: HashAlgorithm,
        start: u64,
        len: u64,
        block_size: u64,
    ) -> Result<Checksum, VfsError> {
        tracing::debug!(
            user = %self.identity().username,
            session = %self.identity().session_id,
            %path,
            %algorithm,
            start,
            len,
            block_size,
            "checksum"
        );
        let key = self.key_of(path);
        if !self.permissions().can_read() && !self.uploaded_here(&key) {
            return Err(VfsError::PermissionDenied(
                "this user may only check files it uploaded in this session",
            ));
        }
        if path.is_root() {
            return Err(VfsError::IsADirectory);
        }
        let Some(meta) = head(self.store_ref(), &key).await? else {
            return Err(match self.stat(path).await {
                Ok(_) => VfsError::IsADirectory,
                Err(e) => e,
            });
        };
        if start > meta.size || (start == meta.size && meta.size > 0) {
            return Err(VfsError::Unsupported(format!(
                "the range starts at byte {start}, beyond the end of the file ({} bytes)",
                meta.size
            )));
        }
        let end = match len {
            0 => meta.size,
            len => start.saturating_add(len).min(meta.size),
        };
        let range = start..end;
        if block_size > 0 {
            if block_size < MIN_HASH_BLOCK {
                return Err(VfsError::Unsupported(format!(
                    "blocks of {block_size} bytes are too small; the smallest is \
                     {MIN_HASH_BLOCK}"
                )));
            }
            if (end - start).div_ceil(block_size) > MAX_HASH_BLOCKS {
                return Err(VfsError::Unsupported(format!(
                    "{} blocks asked for; at most {MAX_HASH_BLOCKS} digests per request",
                    (end - start).div_ceil(block_size)
                )));
            }
        }
        let whole = range == (0..meta.size) && block_size == 0;
        if whole
            && algorithm == HashAlgorithm::Sha256
            && let Some(known) = self.known_hashes().get(&key, &meta)
        {
            return Ok(Checksum {
                algorithm,
                range,
                digests: vec![known],
            });
        }
        let digests = self
            .hash_stored(&key, &meta, algorithm, range.clone(), block_size)
            .await?;
        if whole
            && algorithm == HashAlgorithm::Sha256
            && let Some(tag) = &meta.e_tag
        {
            self.known_hashes()
                .insert(&key, tag.clone(), digests[0].clone());
        }
        Ok(Checksum {
            algorithm,
            range,
            digests,
        })
    }

    /// Reads `range` of the version `meta` of `key` and hashes it per block.
    async fn hash_stored(
        &self,
        key: &Path,
        meta: &ObjectMeta,
        algorithm: HashAlgorithm,
        range: Range<u64>,
        block_size: u64,
    ) -> Result<Vec<Vec<u8>>, VfsError> {
        let block_size = if block_size == 0 {
            u64::MAX
        } else {
            block_size
        };
        let mut digests = Vec::new();
        let mut hasher = algorithm.hasher();
        let mut in_block = 0u64;
        let mut position = range.start;
        // Bounded GETs, each pinned to the version seen at the start, so a file replaced
        // meanwhile fails instead of mixing two versions.
        const GET_BYTES: u64 = 8 * 1024 * 1024;
        while position < range.end {
            let get_end = (position + GET_BYTES).min(range.end);
            let options = GetOptions::new()
                .with_range(Some(GetRange::Bounded(position..get_end)))
                .with_if_match(meta.e_tag.clone());
            let mut stream = self
                .store_ref()
                .get_opts(key, options)
                .await
                .map_err(changed)?
                .into_stream();
            while let Some(chunk) = stream.next().await {
                let mut chunk = chunk.map_err(changed)?;
                if position + chunk.len() as u64 > get_end {
                    return Err(file_changed());
                }
                position += chunk.len() as u64;
                while !chunk.is_empty() {
                    let take = (block_size - in_block).min(chunk.len() as u64) as usize;
                    hasher.update(&chunk.split_to(take));
                    in_block += take as u64;
                    if in_block == block_size {
                        digests.push(std::mem::replace(&mut hasher, algorithm.hasher()).finish());
                        in_block = 0;
                    }
                }
            }
            if position != get_end {
                return Err(file_changed());
            }
        }
        if in_block > 0 || digests.is_empty() {
            digests.push(hasher.finish());
        }
        Ok(digests)
    }
}

fn changed(e: object_store::Error) -> VfsError {
    match e {
        object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. } => {
            file_changed()
        }
        other => other.into(),
    }
}

fn file_changed() -> VfsError {
    VfsError::Storage(object_store::Error::Generic {
        store: "wharf-vfs",
        source: "the file changed while it was being hashed; try again".into(),
    })
}

/// The SHA-256 of versions this process committed, per bucket: a bounded memory of recent
/// uploads (see the module docs). Cloning shares it.
#[derive(Clone, Default)]
pub struct KnownHashes(Arc<Mutex<HashCache>>);

#[derive(Default)]
struct HashCache {
    /// The entity tag of the version each hash is of, and the hash.
    by_key: HashMap<Path, (String, Vec<u8>)>,
    /// Keys in insertion order, to forget the oldest first.
    order: VecDeque<Path>,
}

/// Uploads remembered per bucket.
const KNOWN_HASHES: usize = 4096;

impl KnownHashes {
    /// The remembered SHA-256 of `key` if it is of the version `meta` describes (same entity
    /// tag; every supported store gives one).
    fn get(&self, key: &Path, meta: &ObjectMeta) -> Option<Vec<u8>> {
        let tag = meta.e_tag.as_ref()?;
        let cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (known, sha256) = cache.by_key.get(key)?;
        (known == tag).then(|| sha256.clone())
    }

    /// Remembers the SHA-256 of the version of `key` whose entity tag is `e_tag`.
    pub(crate) fn insert(&self, key: &Path, e_tag: String, sha256: Vec<u8>) {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.by_key.insert(key.clone(), (e_tag, sha256)).is_none() {
            cache.order.push_back(key.clone());
        }
        while cache.order.len() > KNOWN_HASHES {
            if let Some(oldest) = cache.order.pop_front() {
                cache.by_key.remove(&oldest);
            }
        }
    }

    /// Forgets `key` (deleted or renamed away).
    pub(crate) fn forget(&self, key: &Path) {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.by_key.remove(key).is_some() {
            cache.order.retain(|k| k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ftp_names_ignore_case() {
        for algorithm in HashAlgorithm::ALL {
            assert_eq!(
                HashAlgorithm::from_sftp_name(algorithm.sftp_name()),
                Some(algorithm)
            );
            assert_eq!(
                HashAlgorithm::from_ftp_name(&algorithm.ftp_name().to_lowercase()),
                Some(algorithm)
            );
        }
        assert_eq!(HashAlgorithm::from_sftp_name("crc32"), None);
        assert_eq!(HashAlgorithm::from_ftp_name("SHA256"), None);
    }

    /// The well-known digests of "abc".
    #[test]
    fn digests_are_the_standard_ones() {
        let hex = |a: HashAlgorithm| {
            let mut h = a.hasher();
            h.update(b"a");
            h.update(b"bc");
            hex::encode(h.finish())
        };
        assert_eq!(hex(HashAlgorithm::Md5), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(HashAlgorithm::Sha1),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(HashAlgorithm::Sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn known_hashes_match_the_version_and_forget_the_oldest() {
        let meta = |tag: &str| ObjectMeta {
            location: Path::from("k"),
            last_modified: chrono::Utc::now(),
            size: 3,
            e_tag: Some(tag.to_owned()),
            version: None,
        };
        let known = KnownHashes::default();
        let key = Path::from("a/b");
        known.insert(&key, "v1".into(), vec![1]);
        assert_eq!(known.get(&key, &meta("v1")), Some(vec![1]));
        assert_eq!(known.get(&key, &meta("v2")), None, "another version");
        for i in 0..KNOWN_HASHES {
            known.insert(&Path::from(format!("k{i}")), "v".into(), vec![2]);
        }
        assert_eq!(
            known.get(&key, &meta("v1")),
            None,
            "the oldest is forgotten"
        );
        let last = Path::from(format!("k{}", KNOWN_HASHES - 1));
        known.forget(&last);
        assert_eq!(known.get(&last, &meta("v")), None);
    }
}
