//! Fixtures for the VFS tests on real object stores: a running server, the bucket opened
//! through [`wharf_vfs::open_bucket`] exactly as a gateway opens it, and a thin wrapper that
//! counts the requests that matter (single PUTs, multipart uploads, content GETs).

#![allow(dead_code)]

pub mod servers;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use sha2::{Digest, Sha256};
use wharf_core::{BucketName, BucketStorage, Permissions, Protocol, Username};
use wharf_vfs::{CreateOptions, EntryKind, SessionIdentity, UploadSummary, Vfs, VirtualPath};

use servers::{AzuriteServer, S3Server};

/// The bucket (S3) or container (Azure) every fixture uses.
pub const BUCKET: &str = "wharf-test";

/// Which server a fixture runs.
pub enum Server {
    S3(S3Server),
    Azure(AzuriteServer),
}

/// A real server, one bucket on it, and the bucket's store as Wharf opens it.
pub struct Fixture {
    pub server: Server,
    pub storage: BucketStorage,
    /// The store as [`wharf_vfs::open_bucket`] returned it.
    pub raw: Arc<dyn ObjectStore>,
    /// The same store, counting requests; every [`Vfs`] of the fixture goes through it.
    pub counting: Arc<Counting>,
}

impl Fixture {
    /// s3s-fs with bucket [`BUCKET`], opened as `s3://wharf-test` with endpoint and keys.
    pub fn s3() -> Fixture {
        let server = S3Server::start(&[BUCKET]);
        let storage = storage(&format!("s3://{BUCKET}"), server.options());
        Fixture::new(Server::S3(server), storage)
    }

    /// Azurite with container [`BUCKET`], opened as `az://wharf-test` through the emulator
    /// switch and a custom endpoint.
    pub fn azure() -> Fixture {
        let server = AzuriteServer::start(&[BUCKET]);
        let storage = storage(&format!("az://{BUCKET}"), server.emulator_options());
        Fixture::new(Server::Azure(server), storage)
    }

    fn new(server: Server, storage: BucketStorage) -> Fixture {
        let raw = wharf_vfs::open_bucket(&storage).expect("the bucket opens");
        let counting = Arc::new(Counting::new(Arc::clone(&raw)));
        Fixture {
            server,
            storage,
            raw,
            counting,
        }
    }

    pub fn name(&self) -> &'static str {
        match self.server {
            Server::S3(_) => "s3s-fs",
            Server::Azure(_) => "azurite",
        }
    }

    /// A session of user `TESTUSER` jailed to `home`.
    pub fn vfs(&self, home: &str, permissions: Permissions) -> Vfs {
        vfs_on(self.counting.clone(), home, permissions)
    }

    /// Every key in the bucket, sorted, as object_store lists them.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .raw
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("list the bucket");
        keys.sort();
        keys
    }

    /// Multipart uploads still pending on the server, once in-flight aborts had up to five
    /// seconds to finish (a dropped upload is aborted in the background). Only s3s-fs keeps
    /// them where a test can see them; Azure has no upload object at all (staged blocks are
    /// discarded by the service after a week), so this is empty there.
    pub async fn pending_uploads_settled(&self) -> Vec<String> {
        let Server::S3(server) = &self.server else {
            return Vec::new();
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pending = server.pending_multipart_uploads();
            if pending.is_empty() || Instant::now() > deadline {
                return pending;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn server_log(&self) -> String {
        match &self.server {
            Server::S3(s) => s.log_text(),
            Server::Azure(s) => s.log_text(),
        }
    }
}

pub fn storage(url: &str, options: BTreeMap<String, String>) -> BucketStorage {
    BucketStorage {
        name: BucketName::parse("test-bucket").unwrap(),
        url: url.to_owned(),
        options,
    }
}

pub fn vfs_on(store: Arc<dyn ObjectStore>, home: &str, permissions: Permissions) -> Vfs {
    Vfs::new(
        store,
        wharf_core::HomeDirectory::parse(home).unwrap(),
        permissions,
        SessionIdentity {
            username: Username::parse("TESTUSER").unwrap(),
            protocol: Protocol::Sftp,
            client_ip: "127.0.0.1".into(),
            session_id: "test".into(),
        },
    )
}

pub fn p(path: &str) -> VirtualPath {
    VirtualPath::parse(path).unwrap()
}

/// Deterministic bytes with no short period (a part boundary mix-up shows).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Uploads `data` in `chunk`-sized sequential writes and commits.
pub async fn upload(vfs: &Vfs, path: &str, data: &[u8], chunk: usize) -> UploadSummary {
    let mut upload = vfs
        .create(&p(path), CreateOptions::default())
        .await
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
    for (i, piece) in data.chunks(chunk).enumerate() {
        upload
            .write((i * chunk) as u64, Bytes::copy_from_slice(piece))
            .await
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    upload
        .commit()
        .await
        .unwrap_or_else(|e| panic!("commit {path}: {e}"))
}

pub async fn read_all(vfs: &Vfs, path: &str) -> Vec<u8> {
    let mut download = vfs
        .open_read(&p(path))
        .await
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut out = Vec::new();
    loop {
        let chunk = download.read(out.len() as u64, 32 * 1024).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    out
}

pub async fn names(vfs: &Vfs, path: &str) -> Vec<(String, EntryKind)> {
    vfs.list(&p(path))
        .await
        .unwrap_or_else(|e| panic!("list {path}: {e}"))
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect()
}

pub fn file(name: &str) -> (String, EntryKind) {
    (name.to_owned(), EntryKind::File)
}

pub fn dir(name: &str) -> (String, EntryKind) {
    (name.to_owned(), EntryKind::Directory)
}

#[macro_export]
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            Err(other) => panic!("expected {}, got error {other:?}", stringify!($pattern)),
            Ok(_) => panic!("expected {}, got Ok", stringify!($pattern)),
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Counting wrapper

/// Forwards everything to the real store and counts single PUTs, multipart uploads and
/// content GETs, so a test can tell one round trip from many.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn ObjectStore>,
    pub puts: AtomicUsize,
    pub multiparts: AtomicUsize,
    pub gets: AtomicUsize,
}

impl Counting {
    fn new(inner: Arc<dyn ObjectStore>) -> Counting {
        Counting {
            inner,
            puts: AtomicUsize::new(0),
            multiparts: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
        }
    }

    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }

    pub fn multiparts(&self) -> usize {
        self.multiparts.load(Ordering::SeqCst)
    }

    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.multiparts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if !options.head {
            self.gets.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
