//! Behaviour tests of the whole crate. Each behaviour is one test body run against both
//! LocalFileSystem (real directories, staging files, hard links) and InMemory (no directories
//! at all, like S3), so the VFS cannot rely on either store's quirks.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    UploadPart,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use wharf_core::{BucketName, BucketStorage, HomeDirectory, Permissions, Protocol, Username};

use crate::{
    CreateOptions, Entry, EntryKind, HashAlgorithm, MemoryBudget, PART_SIZE, REORDER_WINDOW,
    SessionIdentity, StoreCache, Upload, UploadSummary, Vfs, VfsError, VirtualPath, WriteMode,
    create_home, open_bucket,
};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Counts the calls that matter for round trips, and forwards everything.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    puts: AtomicUsize,
    multiparts: AtomicUsize,
    /// GETs of content (HEADs excluded).
    gets: AtomicUsize,
    /// Part uploads running now, and the most seen at once.
    parts_active: Arc<AtomicUsize>,
    parts_max: Arc<AtomicUsize>,
    /// Makes every part upload fail.
    fail_parts: Arc<AtomicBool>,
    /// How long each part upload takes, in milliseconds (so overlapping parts show).
    part_delay_ms: Arc<AtomicU64>,
    /// `(n, content)`: just before the content GET that makes [`Counting::gets`] reach `n`,
    /// the object it reads is replaced by `content` (another writer, racing the reader).
    replace_before_get: std::sync::Mutex<Option<(usize, Bytes)>>,
}

/// A multipart upload whose parts take a while (so concurrency shows) and can be made to fail.
#[derive(Debug)]
struct SlowParts {
    inner: Box<dyn MultipartUpload>,
    active: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

#[async_trait]
impl MultipartUpload for SlowParts {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let (active, max, fail) = (
            Arc::clone(&self.active),
            Arc::clone(&self.max),
            Arc::clone(&self.fail),
        );
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst));
        Box::pin(async move {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            let result = if fail.load(Ordering::SeqCst) {
                Err(object_store::Error::Generic {
                    store: "test",
                    source: "injected part failure".into(),
                })
            } else {
                part.await
            };
            active.fetch_sub(1, Ordering::SeqCst);
            result
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SlowParts {
            inner,
            active: Arc::clone(&self.parts_active),
            max: Arc::clone(&self.parts_max),
            fail: Arc::clone(&self.fail_parts),
            delay_ms: Arc::clone(&self.part_delay_ms),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if !options.head {
            let n = self.gets.fetch_add(1, Ordering::SeqCst) + 1;
            let replacement = {
                let mut armed = self.replace_before_get.lock().unwrap();
                match armed.take() {
                    Some((at, content)) if at == n => Some(content),
                    other => {
                        *armed = other;
                        None
                    }
                }
            };
            if let Some(content) = replacement {
                self.inner.put(location, PutPayload::from(content)).await?;
            }
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
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

/// One store to run a test body against.
struct Fixture {
    name: &'static str,
    counting: Arc<Counting>,
    /// The bucket's directory for LocalFileSystem (kept alive for the test's duration).
    dir: Option<TempDir>,
}

impl Fixture {
    fn local() -> Self {
        let dir = TempDir::new().unwrap();
        // Through open_bucket, so the test covers the store Wharf really opens (automatic
        // cleanup on) and the creation of a missing bucket directory.
        let storage = storage(&format!("file://{}/bucket", dir.path().display()));
        Self::wrap("LocalFileSystem", open_bucket(&storage).unwrap(), Some(dir))
    }

    fn memory() -> Self {
        Self::wrap("InMemory", Arc::new(InMemory::new()), None)
    }

    fn wrap(name: &'static str, inner: Arc<dyn ObjectStore>, dir: Option<TempDir>) -> Self {
        Fixture {
            name,
            counting: Arc::new(Counting {
                inner,
                puts: AtomicUsize::new(0),
                multiparts: AtomicUsize::new(0),
                gets: AtomicUsize::new(0),
                parts_active: Arc::default(),
                parts_max: Arc::default(),
                fail_parts: Arc::default(),
                part_delay_ms: Arc::default(),
                replace_before_get: std::sync::Mutex::default(),
            }),
            dir,
        }
    }

    fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.counting) as Arc<dyn ObjectStore>
    }

    fn vfs(&self, home: &str, permissions: Permissions) -> Vfs {
        Vfs::new(
            self.store(),
            HomeDirectory::parse(home).unwrap(),
            permissions,
            SessionIdentity {
                username: Username::parse("tester").unwrap(),
                protocol: Protocol::Sftp,
                client_ip: "127.0.0.1".into(),
                session_id: "s1".into(),
            },
        )
    }

    fn puts(&self) -> usize {
        self.counting.puts.load(Ordering::SeqCst)
    }

    fn multiparts(&self) -> usize {
        self.counting.multiparts.load(Ordering::SeqCst)
    }

    fn gets(&self) -> usize {
        self.counting.gets.load(Ordering::SeqCst)
    }

    /// Staging files on disk (see [`staging_files`]). Waits up to five seconds for them to go:
    /// aborts on drop run in the background.
    async fn staging_files_settled(&self) -> Vec<String> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for _ in 0..50 {
            found = staging_files(dir.path());
            if found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        found
    }

    /// The bucket directory on disk, for LocalFileSystem.
    fn disk(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("bucket"))
    }
}

/// Staging files under `dir`: LocalFileSystem's (`name#N`, next to the target) and Wharf's own
/// (in a bucket's `.wharf-uploads`).
fn staging_files(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    let in_staging_dir = dir.ends_with(crate::UPLOAD_JOURNAL);
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(staging_files(&path));
        } else if in_staging_dir || entry.file_name().to_string_lossy().contains('#') {
            found.push(path.display().to_string());
        }
    }
    found
}

/// Runs `body` once on LocalFileSystem and once on InMemory.
async fn on_both<F, Fut>(body: F)
where
    F: Fn(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    for fixture in [Fixture::local(), Fixture::memory()] {
        eprintln!("--- on {}", fixture.name);
        body(fixture).await;
    }
}

fn storage(url: &str) -> BucketStorage {
    BucketStorage {
        name: BucketName::parse("test-bucket").unwrap(),
        url: url.to_owned(),
        options: BTreeMap::new(),
    }
}

fn p(path: &str) -> VirtualPath {
    VirtualPath::parse(path).unwrap()
}

/// Deterministic bytes with no short period (a part boundary mix-up shows).
fn pattern(len: usize) -> Vec<u8> {
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

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Uploads `data` in `chunk`-sized sequential writes.
async fn upload(vfs: &Vfs, path: &str, data: &[u8], chunk: usize) -> UploadSummary {
    let mut upload = vfs
        .create(&p(path), CreateOptions::default())
        .await
        .unwrap();
    for (i, piece) in data.chunks(chunk).enumerate() {
        upload
            .write((i * chunk) as u64, Bytes::copy_from_slice(piece))
            .await
            .unwrap();
    }
    upload.commit().await.unwrap()
}

async fn read_all(vfs: &Vfs, path: &str) -> Vec<u8> {
    let mut download = vfs.open_read(&p(path)).await.unwrap();
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

async fn names(vfs: &Vfs, path: &str) -> Vec<(String, EntryKind)> {
    vfs.list(&p(path))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect()
}

fn file(name: &str) -> (String, EntryKind) {
    (name.to_owned(), EntryKind::File)
}

fn dir(name: &str) -> (String, EntryKind) {
    (name.to_owned(), EntryKind::Directory)
}

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
// Directories

/// Listings give directories a real time (clients show 1970 otherwise): the marker's, or on
/// local disk the directory's own, in paged listings and in cursor pages alike.
#[tokio::test]
async fn listed_directories_have_a_time() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let before = chrono::Utc::now() - chrono::Duration::seconds(5);
        vfs.mkdir(&p("/d")).await.unwrap();
        vfs.mkdir(&p("/d/e")).await.unwrap();
        upload(&vfs, "/f", b"x", 1024).await;
        let recent = |entry: &Entry| {
            entry
                .modified
                .is_some_and(|t| t >= before && t <= chrono::Utc::now())
        };
        for path in ["/", "/d"] {
            let listed = vfs.list(&p(path)).await.unwrap();
            assert!(listed.iter().all(recent), "{path}: {listed:?}");
            let page = vfs.list_from(&p(path), None, 10).await.unwrap();
            assert!(page.entries.iter().all(recent), "{path}: {page:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn directories_are_created_listed_and_removed() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        assert!(names(&vfs, "/").await.is_empty());
        let root = vfs.stat(&p("/")).await.unwrap();
        assert_eq!((root.name.as_str(), root.kind), ("/", EntryKind::Directory));

        vfs.mkdir(&p("/a")).await.unwrap();
        assert_err!(vfs.mkdir(&p("/a")).await, VfsError::AlreadyExists);
        vfs.mkdir(&p("/a/b")).await.unwrap();
        vfs.mkdir(&p("/a/b/c")).await.unwrap();
        // An empty directory persists and is listed.
        assert_eq!(names(&vfs, "/").await, vec![dir("a")]);
        assert_eq!(names(&vfs, "/a").await, vec![dir("b")]);
        assert!(names(&vfs, "/a/b/c").await.is_empty());
        let c = vfs.stat(&p("/a/b/c")).await.unwrap();
        assert_eq!(
            (c.name.as_str(), c.kind, c.size),
            ("c", EntryKind::Directory, 0)
        );
        assert!(
            c.modified.is_some(),
            "a marked directory has its marker's time"
        );

        assert_err!(vfs.rmdir(&p("/a")).await, VfsError::DirectoryNotEmpty);
        upload(&vfs, "/a/b/c/f", b"x", 1024).await;
        assert_err!(vfs.rmdir(&p("/a/b/c")).await, VfsError::DirectoryNotEmpty);
        vfs.remove(&p("/a/b/c/f")).await.unwrap();
        // Removing its last file leaves the directory in place.
        assert!(names(&vfs, "/a/b/c").await.is_empty());
        vfs.rmdir(&p("/a/b/c")).await.unwrap();
        assert_err!(vfs.stat(&p("/a/b/c")).await, VfsError::NotFound);
        assert_err!(vfs.list(&p("/a/b/c")).await, VfsError::NotFound);
        assert_err!(vfs.rmdir(&p("/a/b/c")).await, VfsError::NotFound);
        vfs.rmdir(&p("/a/b")).await.unwrap();
        vfs.rmdir(&p("/a")).await.unwrap();
        assert!(names(&vfs, "/").await.is_empty());
        if let Some(disk) = fx.disk() {
            assert!(
                !disk.join("a").exists(),
                "rmdir removes the directory from disk"
            );
        }
        assert_err!(vfs.rmdir(&p("/")).await, VfsError::PermissionDenied(_));
    })
    .await;
}

#[tokio::test]
async fn directory_preconditions() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        assert_err!(vfs.mkdir(&p("/missing/child")).await, VfsError::NotFound);
        assert_err!(vfs.mkdir(&p("/")).await, VfsError::AlreadyExists);
        upload(&vfs, "/f", b"file", 1024).await;
        assert_err!(vfs.mkdir(&p("/f")).await, VfsError::AlreadyExists);
        assert_err!(vfs.mkdir(&p("/f/g")).await, VfsError::NotADirectory);
        assert_err!(
            vfs.create(&p("/f/g"), CreateOptions::default()).await,
            VfsError::NotADirectory
        );
        assert_err!(vfs.list(&p("/f")).await, VfsError::NotADirectory);
        assert_err!(vfs.rmdir(&p("/f")).await, VfsError::NotADirectory);
        assert_err!(vfs.stat(&p("/f/g")).await, VfsError::NotFound);
        vfs.mkdir(&p("/d")).await.unwrap();
        assert_err!(vfs.remove(&p("/d")).await, VfsError::IsADirectory);
        assert_err!(vfs.remove(&p("/")).await, VfsError::IsADirectory);
        assert_err!(vfs.remove(&p("/nope")).await, VfsError::NotFound);
        assert_err!(
            vfs.create(&p("/d"), CreateOptions::default()).await,
            VfsError::IsADirectory
        );
        assert_err!(vfs.open_read(&p("/d")).await, VfsError::IsADirectory);
        assert_err!(vfs.open_read(&p("/")).await, VfsError::IsADirectory);
        assert_err!(vfs.open_read(&p("/nope")).await, VfsError::NotFound);
        assert_err!(
            vfs.create(&p("/nope/x"), CreateOptions::default()).await,
            VfsError::NotFound
        );
        assert_err!(
            vfs.create(
                &p("/f"),
                CreateOptions {
                    exclusive: true,
                    ..Default::default()
                }
            )
            .await,
            VfsError::AlreadyExists
        );
        // Without `exclusive`, an existing file is replaced.
        upload(&vfs, "/f", b"new", 1024).await;
        assert_eq!(read_all(&vfs, "/f").await, b"new");
    })
    .await;
}

#[tokio::test]
async fn directories_implied_by_objects_exist_without_markers() {
    on_both(|fx| async move {
        // Written by another tool: no markers anywhere.
        let key = Path::from_iter(["d1", "d2", "f.txt"]);
        fx.store()
            .put(&key, PutPayload::from_static(b"hi"))
            .await
            .unwrap();
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let d1 = vfs.stat(&p("/d1")).await.unwrap();
        assert_eq!((d1.kind, d1.modified), (EntryKind::Directory, None));
        assert_eq!(names(&vfs, "/").await, vec![dir("d1")]);
        assert_eq!(names(&vfs, "/d1").await, vec![dir("d2")]);
        assert_eq!(names(&vfs, "/d1/d2").await, vec![file("f.txt")]);
        assert_err!(vfs.rmdir(&p("/d1/d2")).await, VfsError::DirectoryNotEmpty);
        // Uploads into an implied directory work.
        upload(&vfs, "/d1/d2/g.txt", b"g", 1024).await;
        assert_eq!(read_all(&vfs, "/d1/d2/g.txt").await, b"g");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Uploads and downloads

#[tokio::test]
async fn small_upload_is_one_put() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let data = pattern(100_000);
        let puts = fx.puts();
        let summary = upload(&vfs, "/small.bin", &data, 32 * 1024).await;
        assert_eq!(fx.puts() - puts, 1, "one round trip");
        assert_eq!(fx.multiparts(), 0);
        assert_eq!(summary.size, data.len() as u64);
        assert_eq!(summary.sha256, sha256_hex(&data));
        let entry = vfs.stat(&p("/small.bin")).await.unwrap();
        assert_eq!(
            (entry.kind, entry.size),
            (EntryKind::File, data.len() as u64)
        );
        assert_eq!(read_all(&vfs, "/small.bin").await, data);

        // An empty file is a file too.
        let empty = vfs
            .create(&p("/empty"), CreateOptions::default())
            .await
            .unwrap();
        assert!(empty.is_empty());
        let summary = empty.commit().await.unwrap();
        assert_eq!(summary.size, 0);
        assert_eq!(summary.sha256, sha256_hex(b""));
        assert_eq!(vfs.stat(&p("/empty")).await.unwrap().size, 0);
        let mut download = vfs.open_read(&p("/empty")).await.unwrap();
        assert!(download.read(0, 10).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn large_upload_is_multipart_and_reads_back_at_any_offset() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let data = pattern(2 * PART_SIZE + 123_457);
        let summary = upload(&vfs, "/large.bin", &data, 255 * 1024).await;
        assert_eq!(fx.multiparts(), 1);
        assert_eq!(summary.size, data.len() as u64);
        assert_eq!(summary.sha256, sha256_hex(&data));
        assert_eq!(
            vfs.stat(&p("/large.bin")).await.unwrap().size,
            data.len() as u64
        );

        // Sequential reads are served by the read-ahead: one ranged GET per chunk, no more.
        let gets = fx.gets();
        assert_eq!(read_all(&vfs, "/large.bin").await, data);
        let rest = data.len() as u64 - crate::READ_AHEAD_FIRST;
        let chunks = 1 + rest.div_ceil(crate::READ_AHEAD_CHUNK) as usize;
        assert_eq!(fx.gets() - gets, chunks, "one GET per read-ahead chunk");

        let mut download = vfs.open_read(&p("/large.bin")).await.unwrap();
        assert_eq!(download.size(), data.len() as u64);
        let size = data.len() as u64;
        let cases: &[(u64, u32)] = &[
            (0, 10),
            (10, 100_000),              // continues the stream
            (PART_SIZE as u64 - 7, 64), // crosses a part boundary
            (5, 3),                     // backward seek
            (8, 70_000),                // continues after the seek
            (200_000, 1),               // short jump forward, within the skip distance
            (3 * 1024 * 1024, 1000),    // long jump forward
            (size - 100, 32 * 1024),    // short read at the end
            (size - 1, 1),
        ];
        for &(offset, len) in cases {
            let got = download.read(offset, len).await.unwrap();
            let end = (offset + u64::from(len)).min(size);
            assert_eq!(
                &got[..],
                &data[offset as usize..end as usize],
                "read({offset}, {len})"
            );
        }
        assert!(download.read(size, 10).await.unwrap().is_empty());
        assert!(download.read(size + 1000, 10).await.unwrap().is_empty());
        assert!(download.read(0, 0).await.unwrap().is_empty());
        assert_eq!(download.read(0, 4).await.unwrap(), &data[..4]);
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn uploads_are_invisible_until_commit() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        upload(&vfs, "/f", b"old", 1024).await;

        let mut new = vfs
            .create(&p("/f"), CreateOptions::default())
            .await
            .unwrap();
        let data = pattern(PART_SIZE + 1000);
        new.write(0, Bytes::from(data.clone())).await.unwrap();
        assert_eq!(new.len(), data.len() as u64);
        assert_eq!(vfs.stat(&p("/f")).await.unwrap().size, 3);
        assert_eq!(read_all(&vfs, "/f").await, b"old");
        assert_eq!(
            names(&vfs, "/").await,
            vec![file("f")],
            "no staging file is listed"
        );
        if let Some(disk) = fx.disk() {
            // The check for leftover staging files elsewhere is not vacuous.
            assert!(
                !staging_files(&disk).is_empty(),
                "LocalFileSystem stages on disk"
            );
        }

        let mut fresh = vfs
            .create(&p("/fresh"), CreateOptions::default())
            .await
            .unwrap();
        fresh.write(0, Bytes::from_static(b"abc")).await.unwrap();
        assert_err!(vfs.stat(&p("/fresh")).await, VfsError::NotFound);

        new.commit().await.unwrap();
        fresh.commit().await.unwrap();
        assert_eq!(read_all(&vfs, "/f").await, data);
        assert_eq!(read_all(&vfs, "/fresh").await, b"abc");
    })
    .await;
}

#[tokio::test]
async fn abort_and_drop_leave_the_previous_version() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        upload(&vfs, "/f", b"old", 1024).await;
        let big = Bytes::from(pattern(PART_SIZE + 1000));

        // Aborted multipart upload.
        let mut aborted = vfs
            .create(&p("/f"), CreateOptions::default())
            .await
            .unwrap();
        aborted.write(0, big.clone()).await.unwrap();
        aborted.abort().await.unwrap();
        assert_eq!(read_all(&vfs, "/f").await, b"old");
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());

        // Dropped multipart upload.
        let mut dropped = vfs
            .create(&p("/f"), CreateOptions::default())
            .await
            .unwrap();
        dropped.write(0, big.clone()).await.unwrap();
        dropped.write(big.len() as u64, big.clone()).await.unwrap();
        drop(dropped);
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());
        assert_eq!(read_all(&vfs, "/f").await, b"old");

        // Dropped and aborted small uploads never reach the store.
        let mut small = vfs
            .create(&p("/g"), CreateOptions::default())
            .await
            .unwrap();
        small.write(0, Bytes::from_static(b"tiny")).await.unwrap();
        drop(small);
        let small = vfs
            .create(&p("/g"), CreateOptions::default())
            .await
            .unwrap();
        small.abort().await.unwrap();
        assert_err!(vfs.stat(&p("/g")).await, VfsError::NotFound);
        assert_eq!(names(&vfs, "/").await, vec![file("f")]);
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn parts_are_sent_in_the_background_four_at_a_time() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        // Parts slow enough that the client's writes always outpace them.
        fx.counting.part_delay_ms.store(300, Ordering::SeqCst);
        let data = pattern(7 * PART_SIZE + 1);
        let summary = upload(&vfs, "/seven", &data, 1024 * 1024).await;
        assert_eq!(summary.sha256, sha256_hex(&data));
        let max = fx.counting.parts_max.load(Ordering::SeqCst);
        assert_eq!(
            max,
            crate::MAX_PARTS_IN_FLIGHT,
            "parts overlap, and no more than the limit"
        );
        assert_eq!(read_all(&vfs, "/seven").await, data);
    })
    .await;
}

#[tokio::test]
async fn a_failed_part_aborts_the_upload() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        upload(&vfs, "/f", b"old", 1024).await;
        fx.counting.fail_parts.store(true, Ordering::SeqCst);
        let mut upload = vfs
            .create(&p("/f"), CreateOptions::default())
            .await
            .unwrap();
        let part = Bytes::from(pattern(PART_SIZE));
        let mut failed = None;
        for i in 0..8u64 {
            if let Err(e) = upload.write(i * PART_SIZE as u64, part.clone()).await {
                failed = Some(e);
                break;
            }
        }
        assert!(matches!(failed, Some(VfsError::Storage(_))), "{failed:?}");
        // Every later call fails: the upload was aborted.
        assert_err!(
            upload.write(upload.len(), part.clone()).await,
            VfsError::Storage(_)
        );
        assert_err!(upload.commit().await, VfsError::Storage(_));
        assert_eq!(read_all(&vfs, "/f").await, b"old");
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());
    })
    .await;
}

/// Writes held out of order count against the session's memory budget, shared by its uploads:
/// past it a write is refused as `Busy` (and nothing held), the upload and the session go on,
/// and what the gap's filling releases can be held again.
#[tokio::test]
async fn held_writes_have_a_memory_budget_shared_by_the_sessions_uploads() {
    on_both(|fx| async move {
        let budget = MemoryBudget::new(1024 * 1024, None);
        let vfs = fx
            .vfs("/", Permissions::ReadWrite)
            .with_write_budget(budget.clone());
        let piece = Bytes::from(pattern(400 * 1024));
        let mut a = vfs
            .create(&p("/a"), CreateOptions::default())
            .await
            .unwrap();
        let mut b = vfs
            .create(&p("/b"), CreateOptions::default())
            .await
            .unwrap();
        a.write(1, piece.clone()).await.unwrap();
        b.write(1, piece.clone()).await.unwrap();
        assert_eq!(budget.used(), 800 * 1024);
        match b.write(1 + piece.len() as u64, piece.clone()).await {
            Err(VfsError::Busy(message)) => {
                assert!(message.contains("send writes in order"), "{message}")
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        assert_eq!(budget.used(), 800 * 1024, "a refused write holds nothing");
        // Filling `a`'s gap releases its held bytes; `b` may then hold more.
        a.write(0, Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(budget.used(), 400 * 1024);
        b.write(1 + piece.len() as u64, piece.clone())
            .await
            .unwrap();
        b.write(0, Bytes::from_static(b"y")).await.unwrap();
        assert_eq!(budget.used(), 0);
        a.commit().await.unwrap();
        b.commit().await.unwrap();
        let mut expected = b"y".to_vec();
        expected.extend_from_slice(&piece);
        expected.extend_from_slice(&piece);
        assert_eq!(read_all(&vfs, "/b").await, expected);
        // An upload dropped with writes held gives them back.
        let mut c = vfs
            .create(&p("/c"), CreateOptions::default())
            .await
            .unwrap();
        c.write(5, piece.clone()).await.unwrap();
        assert_eq!(budget.used(), piece.len() as u64);
        drop(c);
        assert_eq!(budget.used(), 0);
    })
    .await;
}

#[tokio::test]
async fn out_of_order_writes_within_the_window_are_reassembled() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        // Groups of four 256 KiB writes arrive in reverse order, across a part boundary.
        let data = pattern(PART_SIZE + 3 * 1024 * 1024 + 5);
        let chunk = 256 * 1024;
        let pieces: Vec<(usize, &[u8])> = data
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| (i * chunk, c))
            .collect();
        let mut upload = vfs
            .create(&p("/ooo"), CreateOptions::default())
            .await
            .unwrap();
        for group in pieces.chunks(4) {
            for &(offset, piece) in group.iter().rev() {
                upload
                    .write(offset as u64, Bytes::copy_from_slice(piece))
                    .await
                    .unwrap();
            }
        }
        assert_eq!(upload.len(), data.len() as u64);
        let summary = upload.commit().await.unwrap();
        assert_eq!(summary.sha256, sha256_hex(&data));
        assert_eq!(read_all(&vfs, "/ooo").await, data);

        // A write just inside the window is held; one beyond it is refused, and the upload
        // stays usable.
        let mut upload = vfs
            .create(&p("/w"), CreateOptions::default())
            .await
            .unwrap();
        upload
            .write(0, Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        let near = 10 + REORDER_WINDOW - 4;
        upload
            .write(near, Bytes::from_static(b"near"))
            .await
            .unwrap();
        match upload
            .write(REORDER_WINDOW * 4, Bytes::from_static(b"far"))
            .await
        {
            Err(VfsError::Unsupported(message)) => {
                assert!(
                    message.contains("random-access writes are not supported"),
                    "{message}"
                )
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
        // Overlaps are refused too: with the contiguous data, and with held data.
        assert_err!(
            upload.write(5, Bytes::from_static(b"xx")).await,
            VfsError::Unsupported(_)
        );
        assert_err!(
            upload.write(0, Bytes::from_static(b"0123456789")).await,
            VfsError::Unsupported(_)
        );
        assert_err!(
            upload.write(near - 2, Bytes::from_static(b"xxx")).await,
            VfsError::Unsupported(_)
        );
        assert_err!(
            upload.write(near + 2, Bytes::from_static(b"xxx")).await,
            VfsError::Unsupported(_)
        );
        let filler = Bytes::from(vec![b'-'; (near - 10) as usize]);
        upload.write(10, filler).await.unwrap();
        assert_eq!(upload.len(), near + 4);
        upload.commit().await.unwrap();
        let mut download = vfs.open_read(&p("/w")).await.unwrap();
        assert_eq!(download.read(near, 100).await.unwrap(), &b"near"[..]);
        assert_eq!(download.read(0, 11).await.unwrap(), &b"0123456789-"[..]);
    })
    .await;
}

#[tokio::test]
async fn commit_with_a_gap_fails_and_leaves_nothing() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let mut upload = vfs
            .create(&p("/gap"), CreateOptions::default())
            .await
            .unwrap();
        upload
            .write(0, Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        upload.write(20, Bytes::from_static(b"abc")).await.unwrap();
        assert_eq!(upload.len(), 10);
        assert_err!(upload.commit().await, VfsError::Unsupported(_));
        assert_err!(vfs.stat(&p("/gap")).await, VfsError::NotFound);

        // The same with a multipart upload under way.
        let mut upload = vfs
            .create(&p("/gap"), CreateOptions::default())
            .await
            .unwrap();
        upload
            .write(0, Bytes::from(pattern(PART_SIZE + 1)))
            .await
            .unwrap();
        upload
            .write(PART_SIZE as u64 + 10, Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert_err!(upload.commit().await, VfsError::Unsupported(_));
        assert_err!(vfs.stat(&p("/gap")).await, VfsError::NotFound);
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Resumed and appended uploads

fn with_mode(mode: WriteMode) -> CreateOptions {
    CreateOptions {
        mode,
        ..Default::default()
    }
}

async fn resume(vfs: &Vfs, path: &str) -> Upload {
    vfs.create(&p(path), with_mode(WriteMode::Resume))
        .await
        .unwrap()
}

/// Writes `data` from file offset `start` in `chunk`-sized sequential writes.
async fn write_from(upload: &mut Upload, start: u64, data: &[u8], chunk: usize) {
    for (i, piece) in data.chunks(chunk).enumerate() {
        upload
            .write(start + (i * chunk) as u64, Bytes::copy_from_slice(piece))
            .await
            .unwrap();
    }
}

/// Bytes unlike any prefix of [`pattern`], so a copy placed at the wrong offset shows.
fn other_pattern(len: usize) -> Vec<u8> {
    pattern(len).into_iter().map(|b| b ^ 0x5A).collect()
}

fn unsupported_message<T>(result: Result<T, VfsError>) -> String {
    match result {
        Err(VfsError::Unsupported(message)) => message,
        Err(other) => panic!("expected Unsupported, got error {other:?}"),
        Ok(_) => panic!("expected Unsupported, got Ok"),
    }
}

fn storage_message<T>(result: Result<T, VfsError>) -> String {
    match result {
        Err(VfsError::Storage(e)) => e.to_string(),
        Err(other) => panic!("expected Storage, got error {other:?}"),
        Ok(_) => panic!("expected Storage, got Ok"),
    }
}

#[tokio::test]
async fn resume_continues_a_small_file() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        upload(&vfs, "/f", b"hello ", 1024).await;

        let mut up = resume(&vfs, "/f").await;
        assert_eq!((up.start_offset(), up.len()), (6, 6));
        let puts = fx.puts();
        up.write(6, Bytes::from_static(b"world")).await.unwrap();
        assert_eq!(up.len(), 11);
        assert_eq!(
            read_all(&vfs, "/f").await,
            b"hello ",
            "the old version stays visible until commit"
        );
        let summary = up.commit().await.unwrap();
        assert_eq!(
            summary,
            UploadSummary {
                size: 11,
                sha256: sha256_hex(b"hello world")
            }
        );
        assert_eq!(fx.puts() - puts, 1, "small + small is still one PUT");
        assert_eq!(fx.multiparts(), 0);
        assert_eq!(read_all(&vfs, "/f").await, b"hello world");

        // A small file continued past a part: the existing bytes lead the first part.
        let more = other_pattern(PART_SIZE + 5000);
        let mut expected = b"hello world".to_vec();
        expected.extend_from_slice(&more);
        let mut up = resume(&vfs, "/f").await;
        assert_eq!(up.start_offset(), 11);
        write_from(&mut up, 11, &more, 64 * 1024).await;
        let summary = up.commit().await.unwrap();
        assert_eq!(fx.multiparts(), 1);
        assert_eq!(summary.size, expected.len() as u64);
        assert_eq!(summary.sha256, sha256_hex(&expected));
        assert_eq!(read_all(&vfs, "/f").await, expected);

        // A resume committed without a write leaves the file as it is.
        let before = vfs.stat(&p("/f")).await.unwrap();
        let (puts, multiparts) = (fx.puts(), fx.multiparts());
        let summary = resume(&vfs, "/f").await.commit().await.unwrap();
        assert_eq!(summary.size, expected.len() as u64);
        assert_eq!(summary.sha256, sha256_hex(&expected));
        assert_eq!((fx.puts(), fx.multiparts()), (puts, multiparts));
        assert_eq!(vfs.stat(&p("/f")).await.unwrap(), before);
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn resume_of_a_file_larger_than_two_parts_streams_it() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let existing = pattern(2 * PART_SIZE + 12_345);
        upload(&vfs, "/big", &existing, 1024 * 1024).await;
        let start = existing.len() as u64;

        let mut up = resume(&vfs, "/big").await;
        assert_eq!((up.start_offset(), up.len()), (start, start));
        let (gets, multiparts) = (fx.gets(), fx.multiparts());
        let tail = other_pattern(PART_SIZE / 2 + 7);
        write_from(&mut up, start, &tail, 32 * 1024).await;
        assert_eq!(
            fx.gets() - gets,
            3,
            "the existing content is read in ranged GETs of one part each"
        );
        assert_eq!(up.len(), start + tail.len() as u64);
        assert_eq!(
            read_all(&vfs, "/big").await,
            existing,
            "invisible until commit"
        );
        let summary = up.commit().await.unwrap();
        assert_eq!(fx.multiparts() - multiparts, 1);

        let mut expected = existing.clone();
        expected.extend_from_slice(&tail);
        assert_eq!(summary.size, expected.len() as u64);
        assert_eq!(summary.sha256, sha256_hex(&expected));
        assert_eq!(
            vfs.stat(&p("/big")).await.unwrap().size,
            expected.len() as u64
        );
        assert_eq!(read_all(&vfs, "/big").await, expected);
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn append_ignores_the_offsets_sent() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        upload(&vfs, "/log", b"abc", 1024).await;
        let mut up = vfs.open_append(&p("/log")).await.unwrap();
        assert_eq!((up.start_offset(), up.len()), (3, 3));
        up.write(0, Bytes::from_static(b"def")).await.unwrap();
        up.write(1_000_000_000, Bytes::from_static(b"gh"))
            .await
            .unwrap();
        up.write(3, Bytes::from_static(b"ij")).await.unwrap();
        assert_eq!(up.len(), 10);
        let summary = up.commit().await.unwrap();
        assert_eq!(summary.sha256, sha256_hex(b"abcdefghij"));
        assert_eq!(read_all(&vfs, "/log").await, b"abcdefghij");

        // Appending to a large file, through CreateOptions.
        let existing = pattern(PART_SIZE + 3);
        upload(&vfs, "/big.log", &existing, 1024 * 1024).await;
        let mut up = vfs
            .create(&p("/big.log"), with_mode(WriteMode::Append))
            .await
            .unwrap();
        assert_eq!(up.start_offset(), existing.len() as u64);
        up.write(0, Bytes::from_static(b"line 1\n")).await.unwrap();
        up.write(0, Bytes::from_static(b"line 2\n")).await.unwrap();
        let mut expected = existing.clone();
        expected.extend_from_slice(b"line 1\nline 2\n");
        assert_eq!(up.commit().await.unwrap().sha256, sha256_hex(&expected));
        assert_eq!(read_all(&vfs, "/big.log").await, expected);
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn resume_from_offset_zero_rewrites_the_file() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        upload(&vfs, "/f", b"old content, longer than the new", 1024).await;
        let mut up = resume(&vfs, "/f").await;
        assert_eq!(up.start_offset(), 32);
        up.write(0, Bytes::from_static(b"new")).await.unwrap();
        assert_eq!((up.start_offset(), up.len()), (0, 3));
        up.write(3, Bytes::from_static(b"er")).await.unwrap();
        let summary = up.commit().await.unwrap();
        assert_eq!(summary.size, 5);
        assert_eq!(summary.sha256, sha256_hex(b"newer"));
        assert_eq!(read_all(&vfs, "/f").await, b"newer");

        // A large file rewritten from 0 is not read at all.
        let existing = pattern(PART_SIZE + 10);
        upload(&vfs, "/big", &existing, 1024 * 1024).await;
        let gets = fx.gets();
        let mut up = resume(&vfs, "/big").await;
        let data = other_pattern(1000);
        write_from(&mut up, 0, &data, 100).await;
        up.commit().await.unwrap();
        assert_eq!(fx.gets(), gets);
        assert_eq!(read_all(&vfs, "/big").await, data);
    })
    .await;
}

#[tokio::test]
async fn resume_at_another_offset_is_refused_with_the_size() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        upload(&vfs, "/f", b"0123456789", 1024).await;
        let mut up = resume(&vfs, "/f").await;
        let gets = fx.gets();
        for offset in [1, 5, 9, 11 + REORDER_WINDOW] {
            let message = unsupported_message(up.write(offset, Bytes::from_static(b"x")).await);
            assert!(
                message.contains("resuming is only possible at the current end of the file")
                    && message.contains("10 bytes"),
                "{offset}: {message}"
            );
        }
        assert_eq!(fx.gets(), gets, "a refused resume reads nothing");
        assert_eq!(up.start_offset(), 10);

        // The upload stays usable: a write a little ahead is held until the gap is filled.
        up.write(14, Bytes::from_static(b"EF")).await.unwrap();
        assert_eq!(up.len(), 10);
        up.write(10, Bytes::from_static(b"abcd")).await.unwrap();
        assert_eq!(up.len(), 16);
        up.commit().await.unwrap();
        assert_eq!(read_all(&vfs, "/f").await, b"0123456789abcdEF");
    })
    .await;
}

#[tokio::test]
async fn abort_or_drop_of_a_resume_leaves_the_file_untouched() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let small = b"small old".to_vec();
        let big = pattern(PART_SIZE + 1000);
        upload(&vfs, "/s", &small, 1024).await;
        upload(&vfs, "/b", &big, 1024 * 1024).await;
        // Enough new data that a multipart upload is under way when the upload ends.
        let more = Bytes::from(other_pattern(PART_SIZE));
        for (path, old) in [("/s", &small), ("/b", &big)] {
            let before = vfs.stat(&p(path)).await.unwrap();

            let mut aborted = resume(&vfs, path).await;
            aborted.write(old.len() as u64, more.clone()).await.unwrap();
            aborted.abort().await.unwrap();
            assert_eq!(&read_all(&vfs, path).await, old, "{path} aborted");
            assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());

            let mut dropped = vfs.open_append(&p(path)).await.unwrap();
            dropped.write(0, more.clone()).await.unwrap();
            drop(dropped);
            assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());
            assert_eq!(&read_all(&vfs, path).await, old, "{path} dropped");

            // Dropped before any write: nothing was read or sent.
            drop(resume(&vfs, path).await);
            assert_eq!(vfs.stat(&p(path)).await.unwrap(), before);
        }
        assert_eq!(names(&vfs, "/").await, vec![file("b"), file("s")]);
    })
    .await;
}

#[tokio::test]
async fn resume_or_append_of_a_missing_file_creates_it() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        for (path, mode) in [("/r", WriteMode::Resume), ("/a", WriteMode::Append)] {
            let mut up = vfs.create(&p(path), with_mode(mode)).await.unwrap();
            assert_eq!((up.start_offset(), up.len()), (0, 0));
            assert!(up.is_empty());
            up.write(0, Bytes::from_static(b"fresh")).await.unwrap();
            let summary = up.commit().await.unwrap();
            assert_eq!(summary.sha256, sha256_hex(b"fresh"));
            assert_eq!(read_all(&vfs, path).await, b"fresh");
        }
        // An empty file has nothing to continue.
        upload(&vfs, "/empty", b"", 1024).await;
        let mut up = resume(&vfs, "/empty").await;
        assert_eq!(up.start_offset(), 0);
        up.write(0, Bytes::from_static(b"x")).await.unwrap();
        up.commit().await.unwrap();
        assert_eq!(read_all(&vfs, "/empty").await, b"x");
        // Committed with no write at all: an empty new file.
        let summary = resume(&vfs, "/nothing").await.commit().await.unwrap();
        assert_eq!(summary.size, 0);
        assert_eq!(vfs.stat(&p("/nothing")).await.unwrap().size, 0);
        // `exclusive` still refuses an existing file.
        assert_err!(
            vfs.create(
                &p("/r"),
                CreateOptions {
                    exclusive: true,
                    mode: WriteMode::Append
                }
            )
            .await,
            VfsError::AlreadyExists
        );
        vfs.mkdir(&p("/d")).await.unwrap();
        assert_err!(vfs.open_append(&p("/d")).await, VfsError::IsADirectory);
    })
    .await;
}

/// A file opened for reading and writing (`r+b`) continues at its end, or is overwritten from
/// the start with the rest kept, as POSIX does; the middle cannot be written.
#[tokio::test]
async fn updates_continue_or_overwrite_the_start_and_keep_the_rest() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let update = |path: &'static str| {
            let vfs = vfs.clone();
            async move {
                vfs.create(&p(path), with_mode(WriteMode::Update))
                    .await
                    .unwrap()
            }
        };
        upload(&vfs, "/f", b"0123456789", 1024).await;

        let mut up = update("/f").await;
        up.write(0, Bytes::from_static(b"AB")).await.unwrap();
        assert_eq!(up.written_range(), Some(0..2));
        up.commit().await.unwrap();
        assert_eq!(read_all(&vfs, "/f").await, b"AB23456789");

        let mut up = update("/f").await;
        assert_eq!(up.start_offset(), 10);
        up.write(10, Bytes::from_static(b"XY")).await.unwrap();
        assert_eq!(up.written_range(), Some(10..12));
        up.commit().await.unwrap();
        assert_eq!(read_all(&vfs, "/f").await, b"AB23456789XY");

        let mut up = update("/f").await;
        assert_err!(
            up.write(5, Bytes::from_static(b"!")).await,
            VfsError::Unsupported(_)
        );
        up.write(0, Bytes::from_static(b"a longer content"))
            .await
            .unwrap();
        up.commit().await.unwrap();
        assert_eq!(read_all(&vfs, "/f").await, b"a longer content");

        // A new file: plain writes from 0.
        let mut up = update("/new").await;
        up.write(0, Bytes::from_static(b"n")).await.unwrap();
        up.commit().await.unwrap();
        assert_eq!(read_all(&vfs, "/new").await, b"n");

        // Beyond one part: the kept rest is copied in at commit.
        let big = pattern(2 * PART_SIZE + 5);
        upload(&vfs, "/big", &big, 1 << 20).await;
        let mut up = update("/big").await;
        up.write(0, Bytes::from(vec![b'#'; 100])).await.unwrap();
        let summary = up.commit().await.unwrap();
        let mut expected = vec![b'#'; 100];
        expected.extend_from_slice(&big[100..]);
        assert_eq!(summary.size, big.len() as u64);
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(&expected)));
        assert_eq!(read_all(&vfs, "/big").await, expected);
    })
    .await;
}

#[tokio::test]
async fn write_only_users_can_resume_and_read_only_users_cannot() {
    on_both(|fx| async move {
        let wo = fx.vfs("/", Permissions::WriteOnly);
        upload(&wo, "/drop.edi", b"part one, ", 1024).await;
        let mut up = resume(&wo, "/drop.edi").await;
        assert_eq!(up.start_offset(), 10);
        up.write(10, Bytes::from_static(b"part two")).await.unwrap();
        up.commit().await.unwrap();
        let mut up = wo.open_append(&p("/drop.edi")).await.unwrap();
        up.write(0, Bytes::from_static(b".")).await.unwrap();
        up.commit().await.unwrap();
        assert_err!(
            wo.open_read(&p("/drop.edi")).await,
            VfsError::PermissionDenied(_)
        );
        let admin = fx.vfs("/", Permissions::ReadWrite);
        assert_eq!(read_all(&admin, "/drop.edi").await, b"part one, part two.");

        let ro = fx.vfs("/", Permissions::ReadOnly);
        assert_err!(
            ro.create(&p("/drop.edi"), with_mode(WriteMode::Resume))
                .await,
            VfsError::PermissionDenied(_)
        );
        assert_err!(
            ro.open_append(&p("/drop.edi")).await,
            VfsError::PermissionDenied(_)
        );
    })
    .await;
}

#[tokio::test]
async fn a_file_replaced_during_a_resume_fails_it() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let changed = |message: String| {
            assert!(message.contains("replaced or deleted"), "{message}");
        };

        // Replaced before the first write: copying the old content fails.
        upload(&vfs, "/f", b"old", 1024).await;
        let mut up = resume(&vfs, "/f").await;
        upload(&vfs, "/f", b"NEW!", 1024).await;
        changed(storage_message(up.write(3, Bytes::from_static(b"+")).await));
        assert_err!(up.commit().await, VfsError::Storage(_));
        assert_eq!(read_all(&vfs, "/f").await, b"NEW!");

        // Replaced after the copy: the commit fails.
        let mut up = resume(&vfs, "/f").await;
        up.write(4, Bytes::from_static(b"+")).await.unwrap();
        upload(&vfs, "/f", b"NEWER", 1024).await;
        changed(storage_message(up.commit().await));
        assert_eq!(read_all(&vfs, "/f").await, b"NEWER");

        // Deleted after the copy: the commit fails and does not bring it back.
        let mut up = vfs.open_append(&p("/f")).await.unwrap();
        up.write(0, Bytes::from_static(b"+")).await.unwrap();
        vfs.remove(&p("/f")).await.unwrap();
        changed(storage_message(up.commit().await));
        assert_err!(vfs.stat(&p("/f")).await, VfsError::NotFound);

        // Replaced before a commit without writes: the checksum read fails.
        upload(&vfs, "/f", b"old", 1024).await;
        let up = resume(&vfs, "/f").await;
        upload(&vfs, "/f", b"other", 1024).await;
        changed(storage_message(up.commit().await));
        assert_eq!(read_all(&vfs, "/f").await, b"other");

        // Replaced in the middle of copying a large file: the next ranged GET fails.
        let existing = pattern(2 * PART_SIZE + 5);
        upload(&vfs, "/big", &existing, 1024 * 1024).await;
        let mut up = resume(&vfs, "/big").await;
        *fx.counting.replace_before_get.lock().unwrap() =
            Some((fx.gets() + 2, Bytes::from_static(b"X")));
        changed(storage_message(
            up.write(existing.len() as u64, Bytes::from_static(b"tail"))
                .await,
        ));
        assert_err!(
            up.write(existing.len() as u64, Bytes::from_static(b"tail"))
                .await,
            VfsError::Storage(_)
        );
        drop(up);
        assert_eq!(read_all(&vfs, "/big").await, b"X");
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());

        // Replaced after a large copy: the multipart upload is not completed.
        upload(&vfs, "/big", &existing, 1024 * 1024).await;
        let mut up = resume(&vfs, "/big").await;
        write_from(&mut up, existing.len() as u64, &other_pattern(1000), 100).await;
        upload(&vfs, "/big", b"Y", 1024).await;
        changed(storage_message(up.commit().await));
        assert_eq!(read_all(&vfs, "/big").await, b"Y");
        assert_eq!(fx.staging_files_settled().await, Vec::<String>::new());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Homes, jails and permissions

#[tokio::test]
async fn users_are_jailed_to_their_homes() {
    on_both(|fx| async move {
        let store = fx.store();
        create_home(store.as_ref(), &HomeDirectory::parse("/alice").unwrap())
            .await
            .unwrap();
        create_home(store.as_ref(), &HomeDirectory::parse("/bob").unwrap())
            .await
            .unwrap();
        let alice = fx.vfs("/alice", Permissions::ReadWrite);
        let bob = fx.vfs("/bob", Permissions::ReadWrite);
        let root = fx.vfs("/", Permissions::ReadWrite);

        assert!(
            names(&alice, "/").await.is_empty(),
            "a new home exists and is empty"
        );
        upload(&alice, "/a.txt", b"alice", 1024).await;
        upload(&bob, "/b.txt", b"bob", 1024).await;
        assert_eq!(names(&alice, "/").await, vec![file("a.txt")]);
        assert_eq!(names(&bob, "/").await, vec![file("b.txt")]);
        assert_err!(alice.stat(&p("/b.txt")).await, VfsError::NotFound);

        for escape in [
            "../bob/b.txt",
            "/../../bob/b.txt",
            "/x/../../bob/b.txt",
            "..//bob/b.txt",
        ] {
            let path = VirtualPath::parse(escape).unwrap();
            assert_eq!(path.to_string(), "/bob/b.txt");
            assert_err!(alice.stat(&path).await, VfsError::NotFound);
            assert_err!(alice.open_read(&path).await, VfsError::NotFound);
            assert_err!(alice.remove(&path).await, VfsError::NotFound);
            // The jailed path's parent (/bob inside alice's home) does not exist.
            assert_err!(
                alice.create(&path, CreateOptions::default()).await,
                VfsError::NotFound
            );
        }
        assert_eq!(names(&alice, "../..").await, vec![file("a.txt")]);

        // The root user sees both homes.
        assert_eq!(names(&root, "/").await, vec![dir("alice"), dir("bob")]);
        assert_eq!(names(&root, "/alice").await, vec![file("a.txt")]);
        assert_eq!(read_all(&root, "/bob/b.txt").await, b"bob");
        assert_eq!(read_all(&bob, "/b.txt").await, b"bob");
    })
    .await;
}

#[tokio::test]
async fn read_only_users_cannot_change_anything() {
    on_both(|fx| async move {
        let admin = fx.vfs("/", Permissions::ReadWrite);
        upload(&admin, "/f", b"data", 1024).await;
        admin.mkdir(&p("/d")).await.unwrap();
        let ro = fx.vfs("/", Permissions::ReadOnly);
        assert_err!(
            ro.create(&p("/new"), CreateOptions::default()).await,
            VfsError::PermissionDenied(_)
        );
        assert_err!(
            ro.create(&p("/f"), CreateOptions::default()).await,
            VfsError::PermissionDenied(_)
        );
        assert_err!(ro.mkdir(&p("/e")).await, VfsError::PermissionDenied(_));
        assert_err!(ro.rmdir(&p("/d")).await, VfsError::PermissionDenied(_));
        assert_err!(ro.remove(&p("/f")).await, VfsError::PermissionDenied(_));
        assert_err!(
            ro.rename(&p("/f"), &p("/g"), false).await,
            VfsError::PermissionDenied(_)
        );
        // Reading is what it may do.
        assert_eq!(read_all(&ro, "/f").await, b"data");
        assert_eq!(names(&ro, "/").await, vec![dir("d"), file("f")]);
        assert_eq!(ro.stat(&p("/f")).await.unwrap().size, 4);
        assert_eq!(names(&admin, "/").await, vec![dir("d"), file("f")]);
    })
    .await;
}

#[tokio::test]
async fn write_only_users_deliver_but_cannot_read_or_delete() {
    on_both(|fx| async move {
        let wo = fx.vfs("/", Permissions::WriteOnly);
        upload(&wo, "/drop.edi", b"order", 1024).await;
        wo.mkdir(&p("/in")).await.unwrap();
        wo.rename(&p("/drop.edi"), &p("/in/drop.edi"), false)
            .await
            .unwrap();
        assert_eq!(names(&wo, "/in").await, vec![file("drop.edi")]);
        assert_eq!(wo.stat(&p("/in/drop.edi")).await.unwrap().size, 5);
        assert_err!(
            wo.open_read(&p("/in/drop.edi")).await,
            VfsError::PermissionDenied(_)
        );
        assert_err!(
            wo.remove(&p("/in/drop.edi")).await,
            VfsError::PermissionDenied(_)
        );
        assert_err!(wo.rmdir(&p("/in")).await, VfsError::PermissionDenied(_));
        let admin = fx.vfs("/", Permissions::ReadWrite);
        assert_eq!(read_all(&admin, "/in/drop.edi").await, b"order");
    })
    .await;
}

/// write-only is a drop box: new files and directories only; a session may change nothing it
/// did not upload itself (overwrite, resume, append, rename from or onto), and its own uploads
/// only while it lasts.
#[tokio::test]
async fn write_only_is_a_drop_box() {
    on_both(|fx| async move {
        let admin = fx.vfs("/", Permissions::ReadWrite);
        upload(&admin, "/theirs.edi", b"someone else's", 1024).await;
        let wo = fx.vfs("/", Permissions::WriteOnly);
        let denied = |what: &str, result: Result<(), VfsError>| {
            assert!(
                matches!(result, Err(VfsError::PermissionDenied(_))),
                "{what}: {result:?}"
            );
        };
        for mode in [WriteMode::Truncate, WriteMode::Resume, WriteMode::Append] {
            denied(
                &format!("{mode:?} onto another's file"),
                wo.create(&p("/theirs.edi"), with_mode(mode))
                    .await
                    .map(|_| ()),
            );
        }
        denied(
            "rename another's file",
            wo.rename(&p("/theirs.edi"), &p("/moved.edi"), false).await,
        );
        denied("delete", wo.remove(&p("/theirs.edi")).await);

        // Its own delivery: upload to a temporary name, rename into place (WinSCP, FileZilla).
        upload(&wo, "/mine.edi.filepart", b"mine", 1024).await;
        wo.rename(&p("/mine.edi.filepart"), &p("/mine.edi"), false)
            .await
            .unwrap();
        denied(
            "rename its own file onto another's",
            wo.rename(&p("/mine.edi"), &p("/theirs.edi"), true).await,
        );
        // ... and continue it within the session.
        let mut more = resume(&wo, "/mine.edi").await;
        more.write(4, Bytes::from_static(b"+")).await.unwrap();
        more.commit().await.unwrap();
        wo.mkdir(&p("/in")).await.unwrap();
        denied(
            "rename a directory",
            wo.rename(&p("/in"), &p("/out"), false).await,
        );

        // Another session of the same user is a stranger to those files.
        let later = fx.vfs("/", Permissions::WriteOnly);
        denied(
            "resume an earlier session's file",
            later
                .create(&p("/mine.edi"), with_mode(WriteMode::Resume))
                .await
                .map(|_| ()),
        );
        denied(
            "rename an earlier session's file",
            later.rename(&p("/mine.edi"), &p("/x.edi"), false).await,
        );

        // A file someone else creates while a drop-box upload of that name is open wins.
        let mut racing = wo
            .create(&p("/race.edi"), with_mode(WriteMode::Truncate))
            .await
            .unwrap();
        racing.write(0, Bytes::from_static(b"late")).await.unwrap();
        upload(&admin, "/race.edi", b"first", 1024).await;
        assert_err!(racing.commit().await, VfsError::PermissionDenied(_));

        assert_eq!(read_all(&admin, "/theirs.edi").await, b"someone else's");
        assert_eq!(read_all(&admin, "/mine.edi").await, b"mine+");
        assert_eq!(read_all(&admin, "/race.edi").await, b"first");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Checksums

#[tokio::test]
async fn checksums_of_files_ranges_and_blocks() {
    use md5::Digest as _;
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let data = pattern(3 * 1024 * 1024 + 17);
        upload(&vfs, "/f.bin", &data, 64 * 1024).await;
        let sha = |bytes: &[u8]| Sha256::digest(bytes).to_vec();

        // Whole file, right after this gateway committed it: no read of the file.
        let gets = fx.gets();
        let whole = vfs
            .checksum(&p("/f.bin"), HashAlgorithm::Sha256, 0, 0, 0)
            .await
            .unwrap();
        assert_eq!(whole.digests, vec![sha(&data)]);
        assert_eq!(whole.range, 0..data.len() as u64);
        assert_eq!(fx.gets(), gets, "the upload's own SHA-256 is used");

        // A range, clipped to the end; blocks of 1 MiB.
        let part = vfs
            .checksum(&p("/f.bin"), HashAlgorithm::Sha256, 1000, 1 << 40, 0)
            .await
            .unwrap();
        assert_eq!(part.range, 1000..data.len() as u64);
        assert_eq!(part.digests, vec![sha(&data[1000..])]);
        let blocks = vfs
            .checksum(&p("/f.bin"), HashAlgorithm::Md5, 0, 0, 1 << 20)
            .await
            .unwrap();
        assert_eq!(blocks.digests.len(), 4);
        for (i, digest) in blocks.digests.iter().enumerate() {
            let block = &data[i << 20..((i + 1) << 20).min(data.len())];
            assert_eq!(*digest, md5::Md5::digest(block).to_vec(), "block {i}");
        }
        assert_err!(
            vfs.checksum(
                &p("/f.bin"),
                HashAlgorithm::Sha1,
                data.len() as u64 + 1,
                0,
                0
            )
            .await,
            VfsError::Unsupported(_)
        );
        assert_err!(
            vfs.checksum(&p("/f.bin"), HashAlgorithm::Sha1, 0, 0, 16)
                .await,
            VfsError::Unsupported(_)
        );
        assert_err!(
            vfs.checksum(&p("/nope"), HashAlgorithm::Sha256, 0, 0, 0)
                .await,
            VfsError::NotFound
        );
        vfs.mkdir(&p("/d")).await.unwrap();
        assert_err!(
            vfs.checksum(&p("/d"), HashAlgorithm::Sha256, 0, 0, 0).await,
            VfsError::IsADirectory
        );
        // An empty file has the digest of nothing.
        upload(&vfs, "/empty", b"", 1024).await;
        let empty = vfs
            .checksum(&p("/empty"), HashAlgorithm::Sha256, 0, 0, 0)
            .await
            .unwrap();
        assert_eq!(empty.digests, vec![sha(b"")]);

        // A drop box checks what it delivered in this session, nothing else.
        let wo = fx.vfs("/", Permissions::WriteOnly);
        assert_err!(
            wo.checksum(&p("/f.bin"), HashAlgorithm::Sha256, 0, 0, 0)
                .await,
            VfsError::PermissionDenied(_)
        );
        upload(&wo, "/delivered.edi", b"abc", 1024).await;
        let own = wo
            .checksum(&p("/delivered.edi"), HashAlgorithm::Sha256, 0, 0, 0)
            .await
            .unwrap();
        assert_eq!(own.digests, vec![sha(b"abc")]);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Rename

#[tokio::test]
async fn files_are_renamed() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        upload(&vfs, "/a", b"A", 1024).await;
        upload(&vfs, "/b", b"B", 1024).await;
        vfs.mkdir(&p("/d")).await.unwrap();

        vfs.rename(&p("/a"), &p("/d/a2"), false).await.unwrap();
        assert_err!(vfs.stat(&p("/a")).await, VfsError::NotFound);
        assert_eq!(read_all(&vfs, "/d/a2").await, b"A");

        assert_err!(
            vfs.rename(&p("/b"), &p("/d/a2"), false).await,
            VfsError::AlreadyExists
        );
        assert_eq!(read_all(&vfs, "/b").await, b"B");
        vfs.rename(&p("/b"), &p("/d/a2"), true).await.unwrap();
        assert_eq!(read_all(&vfs, "/d/a2").await, b"B");
        assert_err!(vfs.stat(&p("/b")).await, VfsError::NotFound);

        // Renaming onto itself changes nothing.
        vfs.rename(&p("/d/a2"), &p("/d/a2"), false).await.unwrap();
        assert_eq!(read_all(&vfs, "/d/a2").await, b"B");

        assert_err!(
            vfs.rename(&p("/nope"), &p("/x"), false).await,
            VfsError::NotFound
        );
        assert_err!(
            vfs.rename(&p("/d/a2"), &p("/no/x"), false).await,
            VfsError::NotFound
        );
        assert_err!(
            vfs.rename(&p("/d/a2"), &p("/d/a2/x"), false).await,
            VfsError::NotADirectory
        );
        assert_err!(
            vfs.rename(&p("/d/a2"), &p("/d"), true).await,
            VfsError::IsADirectory
        );
        assert_err!(
            vfs.rename(&p("/d/a2"), &p("/d"), false).await,
            VfsError::AlreadyExists
        );
        assert_err!(
            vfs.rename(&p("/"), &p("/x"), false).await,
            VfsError::PermissionDenied(_)
        );
        assert_err!(
            vfs.rename(&p("/d/a2"), &p("/"), true).await,
            VfsError::AlreadyExists
        );
        // The directory the file left is still there.
        vfs.rename(&p("/d/a2"), &p("/top"), false).await.unwrap();
        assert_eq!(names(&vfs, "/").await, vec![dir("d"), file("top")]);
        assert!(names(&vfs, "/d").await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn directories_are_renamed_with_their_contents() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        vfs.mkdir(&p("/d")).await.unwrap();
        vfs.mkdir(&p("/d/sub")).await.unwrap();
        vfs.mkdir(&p("/d/empty")).await.unwrap();
        upload(&vfs, "/d/x", b"x", 1024).await;
        upload(&vfs, "/d/sub/y #1", b"y", 1024).await;

        assert_err!(
            vfs.rename(&p("/d"), &p("/d/sub/inside"), false).await,
            VfsError::InvalidPath(_)
        );
        vfs.rename(&p("/d"), &p("/e"), false).await.unwrap();
        assert_err!(vfs.stat(&p("/d")).await, VfsError::NotFound);
        assert_eq!(names(&vfs, "/").await, vec![dir("e")]);
        assert_eq!(
            names(&vfs, "/e").await,
            vec![dir("empty"), dir("sub"), file("x")]
        );
        assert_eq!(names(&vfs, "/e/sub").await, vec![file("y #1")]);
        assert!(names(&vfs, "/e/empty").await.is_empty());
        assert_eq!(read_all(&vfs, "/e/sub/y #1").await, b"y");
        if let Some(disk) = fx.disk() {
            assert!(
                !disk.join("d").exists(),
                "the source directory is gone from disk"
            );
        }

        // Onto a non-empty directory: refused; onto an empty one with overwrite: replaces it.
        vfs.mkdir(&p("/f")).await.unwrap();
        upload(&vfs, "/f/keep", b"k", 1024).await;
        assert_err!(
            vfs.rename(&p("/e"), &p("/f"), true).await,
            VfsError::DirectoryNotEmpty
        );
        assert_err!(
            vfs.rename(&p("/e"), &p("/f"), false).await,
            VfsError::AlreadyExists
        );
        vfs.mkdir(&p("/g")).await.unwrap();
        vfs.rename(&p("/e/empty"), &p("/g"), true).await.unwrap();
        assert_eq!(names(&vfs, "/").await, vec![dir("e"), dir("f"), dir("g")]);
        upload(&vfs, "/h", b"h", 1024).await;
        assert_err!(
            vfs.rename(&p("/e"), &p("/h"), true).await,
            VfsError::NotADirectory
        );

        // A directory that exists only through its contents gets a marker at the target, so it
        // survives being emptied.
        let key = Path::from_iter(["implied", "z"]);
        fx.store()
            .put(&key, PutPayload::from_static(b"z"))
            .await
            .unwrap();
        vfs.rename(&p("/implied"), &p("/moved"), false)
            .await
            .unwrap();
        vfs.remove(&p("/moved/z")).await.unwrap();
        assert_eq!(
            vfs.stat(&p("/moved")).await.unwrap().kind,
            EntryKind::Directory
        );
        assert_err!(vfs.stat(&p("/implied")).await, VfsError::NotFound);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Names

#[tokio::test]
async fn special_characters_round_trip() {
    on_both(|fx| async move {
        let vfs = fx.vfs("/", Permissions::ReadWrite);
        let special = [
            "with space",
            "#1",
            "x#12",
            "100%",
            "%41",
            "%2e%2e",
            "ü-ñ-漢字",
            "[x]",
            "a*b?c",
            "{curly}^~`|\"<>",
            "semi;colon,=&+$@!'()",
        ];
        vfs.mkdir(&p("/dir #1 %")).await.unwrap();
        for name in special {
            upload(&vfs, &format!("/dir #1 %/{name}"), name.as_bytes(), 1024).await;
        }
        let mut expected: Vec<_> = special.iter().map(|n| file(n)).collect();
        expected.sort();
        assert_eq!(names(&vfs, "/dir #1 %").await, expected);
        assert_eq!(names(&vfs, "/").await, vec![dir("dir #1 %")]);
        for name in special {
            let path = format!("/dir #1 %/{name}");
            let entry = vfs.stat(&p(&path)).await.unwrap();
            assert_eq!(entry.name, name);
            assert_eq!(read_all(&vfs, &path).await, name.as_bytes());
        }
        assert_eq!(
            fx.staging_files_settled().await,
            Vec::<String>::new(),
            "no '#' on disk"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Stores

#[tokio::test]
async fn create_home_makes_nested_homes_idempotently() {
    on_both(|fx| async move {
        let store = fx.store();
        let home = HomeDirectory::parse("/partners/acme/inbound").unwrap();
        create_home(store.as_ref(), &home).await.unwrap();
        create_home(store.as_ref(), &home).await.unwrap();
        create_home(store.as_ref(), &HomeDirectory::root())
            .await
            .unwrap();
        let root = fx.vfs("/", Permissions::ReadWrite);
        assert_eq!(names(&root, "/").await, vec![dir("partners")]);
        assert_eq!(names(&root, "/partners").await, vec![dir("acme")]);
        assert_eq!(names(&root, "/partners/acme").await, vec![dir("inbound")]);
        let user = fx.vfs("/partners/acme/inbound", Permissions::ReadWrite);
        assert!(names(&user, "/").await.is_empty());
        upload(&root, "/partners/file", b"f", 1024).await;
        assert_err!(
            create_home(
                store.as_ref(),
                &HomeDirectory::parse("/partners/file/x").unwrap()
            )
            .await,
            VfsError::NotADirectory
        );
    })
    .await;
}

#[tokio::test]
async fn store_cache_shares_stores() {
    let dir = TempDir::new().unwrap();
    let cache = StoreCache::new();
    let a = storage(&format!("file://{}/a", dir.path().display()));
    let b = storage(&format!("file://{}/b", dir.path().display()));
    let first = cache.get(&a).unwrap();
    assert!(Arc::ptr_eq(&first, &cache.get(&a).unwrap()));
    assert!(!Arc::ptr_eq(&first, &cache.get(&b).unwrap()));
    assert!(
        dir.path().join("a").is_dir(),
        "a missing bucket directory is created"
    );
    let memory = storage("memory://");
    assert!(Arc::ptr_eq(
        &cache.get(&memory).unwrap(),
        &cache.get(&memory).unwrap()
    ));
}

#[tokio::test]
async fn bad_bucket_configurations_are_config_errors() {
    let config_error = |url: &str, options: &[(&str, &str)]| {
        let mut storage = storage(url);
        storage.options = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match open_bucket(&storage) {
            Err(VfsError::Config(message)) => message,
            Err(other) => panic!("{url}: expected Config, got {other:?}"),
            Ok(_) => panic!("{url}: expected Config, got a store"),
        }
    };
    let message = config_error("ftp://host/bucket", &[]);
    assert!(
        message.contains("unsupported storage URL scheme 'ftp'"),
        "{message}"
    );
    assert!(message.contains("test-bucket"), "{message}");
    config_error("not a url", &[]);
    let message = config_error("file://host/dir", &[]);
    assert!(message.contains("file:///"), "{message}");
    config_error("s3:///no-bucket", &[]);
    config_error("https://example.com/bucket", &[]);
    let message = config_error("s3://bucket", &[("aws_endpointt", "secret-value")]);
    assert!(message.contains("aws_endpointt"), "{message}");
    assert!(
        !message.contains("secret-value"),
        "option values are never echoed: {message}"
    );
    config_error("file:///tmp/x", &[("fsync", "true")]);

    // Good cloud configurations open without a network round trip.
    let mut s3 = storage("s3://bucket/prefix/");
    s3.options = [
        ("aws_endpoint", "http://127.0.0.1:9"),
        ("AWS_ALLOW_HTTP", "true"),
        ("aws_region", "us-east-1"),
        ("aws_access_key_id", "id"),
        ("aws_secret_access_key", "secret"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    open_bucket(&s3).unwrap();
}

/// The protocol crates hold these across awaits in spawned tasks.
#[test]
fn handles_and_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Vfs>();
    send_sync::<StoreCache>();
    send_sync::<crate::Upload>();
    send_sync::<crate::Download>();
    let fx = Fixture::memory();
    let vfs = fx.vfs("/", Permissions::ReadWrite);
    let path = p("/x");
    send(&vfs.stat(&path));
    send(&vfs.list(&path));
    send(&vfs.mkdir(&path));
    send(&vfs.rmdir(&path));
    send(&vfs.remove(&path));
    send(&vfs.rename(&path, &path, true));
    send(&vfs.open_read(&path));
    send(&vfs.create(&path, CreateOptions::default()));
    send(&vfs.open_append(&path));
    send(&create_home(fx.counting.as_ref(), &HomeDirectory::root()));
    fn upload_futures(mut upload: crate::Upload) {
        send(&upload.write(0, Bytes::new()));
        send(&upload.commit());
    }
    fn download_futures(mut download: crate::Download) {
        send(&download.read(0, 1));
    }
    let _ = (upload_futures, download_futures);
}

#[test]
fn part_sizes_reach_five_tebibytes_within_s3_limits() {
    use crate::{MAX_PART_SIZE, MAX_PARTS, MAX_UPLOAD_SIZE, part_size};
    const { assert!(MAX_UPLOAD_SIZE >= 5 * (1u64 << 40)) };
    assert_eq!(part_size(0), PART_SIZE);
    assert_eq!(part_size(499), PART_SIZE);
    assert_eq!(part_size(500), 2 * PART_SIZE);
    assert_eq!(part_size(MAX_PARTS - 1), MAX_PART_SIZE);
    let mut previous = 0;
    for index in 0..MAX_PARTS {
        let size = part_size(index);
        // S3: every part but the last at least 5 MiB, at most 5 GiB; sizes never shrink.
        assert!(size >= 5 * 1024 * 1024 && size as u64 <= 5 * (1u64 << 30));
        assert!(size >= previous);
        previous = size;
    }
    // Files up to 3.9 GiB keep the small parts (and the 56 MiB memory bound).
    assert_eq!(part_size(499) as u64 * 500, 500 * PART_SIZE as u64);
}

// ---------------------------------------------------------------------------------------------
// Orphaned uploads: the journal (stores with upload ids) and local staging files

fn vfs_on_bucket(bucket: &crate::OpenedBucket) -> Vfs {
    Vfs::on_bucket(
        bucket,
        HomeDirectory::parse("/").unwrap(),
        Permissions::ReadWrite,
        SessionIdentity {
            username: Username::parse("tester").unwrap(),
            protocol: Protocol::Sftp,
            client_ip: "127.0.0.1".into(),
            session_id: "s1".into(),
        },
    )
}

/// An upload past its first part, as a gateway that is killed leaves it: never committed,
/// never aborted (no `Drop` runs in a dead process).
async fn crashed_upload(vfs: &Vfs, path: &str) {
    let mut upload = vfs
        .create(&p(path), CreateOptions::default())
        .await
        .unwrap();
    let data = pattern(PART_SIZE + 1024);
    for (i, piece) in data.chunks(256 * 1024).enumerate() {
        upload
            .write((i * 256 * 1024) as u64, Bytes::copy_from_slice(piece))
            .await
            .unwrap();
    }
    // Let the first part reach the store.
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::mem::forget(upload);
}

async fn journal_notes(store: &Arc<dyn ObjectStore>) -> Vec<serde_json::Value> {
    use futures::TryStreamExt;
    let metas: Vec<ObjectMeta> = store
        .list(Some(&Path::from(crate::UPLOAD_JOURNAL)))
        .try_collect()
        .await
        .unwrap();
    let mut notes = Vec::new();
    for meta in metas {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        notes.push(serde_json::from_slice(&bytes).unwrap());
    }
    notes
}

#[tokio::test]
async fn multipart_uploads_are_journaled_and_orphans_swept() {
    let cache = StoreCache::with_orphan_age(None);
    let bucket = cache.bucket(&storage("memory://")).unwrap();
    assert!(
        bucket.uploads.is_some(),
        "memory stores journal their uploads"
    );
    let vfs = vfs_on_bucket(&bucket);

    // A completed upload leaves no note; a small one never writes one.
    let data = pattern(PART_SIZE * 2 + 5);
    let summary = upload(&vfs, "/done.bin", &data, 64 * 1024).await;
    assert_eq!(summary.size, data.len() as u64);
    assert_eq!(read_all(&vfs, "/done.bin").await, data);
    upload(&vfs, "/small.txt", b"hello", 1024).await;
    assert!(journal_notes(&bucket.store).await.is_empty());

    // An aborted one neither.
    let mut aborted = vfs
        .create(&p("/aborted.bin"), CreateOptions::default())
        .await
        .unwrap();
    aborted
        .write(0, Bytes::from(pattern(PART_SIZE + 1)))
        .await
        .unwrap();
    aborted.abort().await.unwrap();
    assert!(journal_notes(&bucket.store).await.is_empty());

    // A crashed one leaves a note naming its key and upload id, hidden from users.
    crashed_upload(&vfs, "/crashed.bin").await;
    let notes = journal_notes(&bucket.store).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["key"], "crashed.bin");
    let upload_id = notes[0]["uploadId"].as_str().unwrap().to_owned();
    assert_eq!(
        names(&vfs, "/").await,
        vec![file("done.bin"), file("small.txt")],
        "neither the note nor the unfinished file is listed"
    );
    assert_err!(vfs.stat(&p("/crashed.bin")).await, VfsError::NotFound);

    // A sweep keeps fresh notes and aborts stale ones.
    let report = bucket
        .sweep_orphaned_uploads(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!((report.aborted, report.in_progress), (0, 1));
    let report = bucket.sweep_orphaned_uploads(Duration::ZERO).await.unwrap();
    assert_eq!((report.aborted, report.in_progress), (1, 0));
    assert!(journal_notes(&bucket.store).await.is_empty());
    // The upload id is gone from the store: its parts cannot be completed any more.
    let multipart = bucket.uploads.as_ref().unwrap().multipart_store();
    let completed = multipart
        .complete_multipart(&Path::from("crashed.bin"), &upload_id, vec![])
        .await;
    assert!(completed.is_err(), "the aborted upload id still exists");
    // Another sweep finds nothing.
    let report = bucket.sweep_orphaned_uploads(Duration::ZERO).await.unwrap();
    assert_eq!(report, crate::SweepReport::default());
}

/// On a local-disk bucket, multipart uploads write their staging file directly
/// (`LocalStaging`): on blocking threads with few uploads, on the session's thread with more
/// uploads than cores. Either way the content, the checksum, appends and aborts come out as
/// through the store, and no staging file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_uploads_write_their_staging_files_directly() {
    let dir = TempDir::new().unwrap();
    let bucket = StoreCache::with_orphan_age(None)
        .bucket(&storage(&format!("file://{}", dir.path().display())))
        .unwrap();
    let vfs = vfs_on_bucket(&bucket);
    vfs.mkdir(&p("/in")).await.unwrap();
    let staging_left = || staging_files(dir.path());

    // One upload (a spare core), then more at once than this machine has cores.
    let one = pattern(5 * crate::transfer::LOCAL_PART_SIZE + 123);
    let summary = upload(&vfs, "/in/one.bin", &one, 100_000).await;
    assert_eq!(summary.sha256, sha256_hex(&one));
    let many = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2 + 2;
    let uploads = (0..many).map(|i| {
        let vfs = vfs.clone();
        tokio::spawn(async move {
            let data = pattern(3 * crate::transfer::LOCAL_PART_SIZE + i * 1000);
            let summary = upload(&vfs, &format!("/in/many-{i}.bin"), &data, 64 * 1024).await;
            assert_eq!(summary.sha256, sha256_hex(&data));
            data
        })
    });
    let written = futures::future::join_all(uploads).await;
    for (i, data) in written.into_iter().enumerate() {
        assert_eq!(
            read_all(&vfs, &format!("/in/many-{i}.bin")).await,
            data.unwrap()
        );
    }
    assert_eq!(read_all(&vfs, "/in/one.bin").await, one);

    // An append continues the file through a new staging file.
    let mut append = vfs.open_append(&p("/in/one.bin")).await.unwrap();
    let more = pattern(crate::transfer::LOCAL_PART_SIZE * 2);
    append.write(0, Bytes::from(more.clone())).await.unwrap();
    append.commit().await.unwrap();
    assert_eq!(read_all(&vfs, "/in/one.bin").await, [one, more].concat());

    // An aborted one leaves the previous version and no staging file.
    let mut aborted = vfs
        .create(&p("/in/many-0.bin"), CreateOptions::default())
        .await
        .unwrap();
    aborted
        .write(
            0,
            Bytes::from(pattern(crate::transfer::LOCAL_PART_SIZE * 2)),
        )
        .await
        .unwrap();
    assert_eq!(
        staging_left().len(),
        1,
        "the staging file exists while writing"
    );
    aborted.abort().await.unwrap();
    assert_eq!(
        read_all(&vfs, "/in/many-0.bin").await,
        pattern(3 * crate::transfer::LOCAL_PART_SIZE)
    );
    assert_eq!(staging_left(), Vec::<String>::new());
}

#[tokio::test]
async fn local_staging_files_of_crashed_uploads_are_swept() {
    let dir = TempDir::new().unwrap();
    let cache = StoreCache::with_orphan_age(None);
    let bucket = cache
        .bucket(&storage(&format!("file://{}", dir.path().display())))
        .unwrap();
    assert!(bucket.uploads.is_none());
    let vfs = vfs_on_bucket(&bucket);
    vfs.mkdir(&p("/in")).await.unwrap();
    crashed_upload(&vfs, "/in/crashed.bin").await;
    let staging = |dir: &std::path::Path| {
        let mut found = staging_files(dir);
        found.sort();
        found
    };
    let left = staging(dir.path());
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("/.wharf-uploads/upload-"), "{left:?}");
    assert_eq!(names(&vfs, "/in").await, vec![]);
    assert_eq!(
        names(&vfs, "/").await,
        vec![("in".to_owned(), EntryKind::Directory)],
        "the staging directory is hidden"
    );
    // Files that only look like staging files, put into the bucket's directory by something
    // other than Wharf, are never the sweeper's: only Wharf's staging directory is.
    std::fs::write(dir.path().join("in/invoice#42"), b"not ours").unwrap();
    std::fs::write(dir.path().join("invoice#7"), b"not ours either").unwrap();

    let report = bucket
        .sweep_orphaned_uploads(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!((report.aborted, report.in_progress), (0, 1));
    let report = bucket.sweep_orphaned_uploads(Duration::ZERO).await.unwrap();
    assert_eq!((report.aborted, report.in_progress), (1, 0));
    assert_eq!(
        staging(dir.path()),
        [
            dir.path().join("in/invoice#42").display().to_string(),
            dir.path().join("invoice#7").display().to_string()
        ]
    );
    // A file whose name only looks like a staging file but that users made is never touched:
    // users cannot make one (`#` is encoded), so an ordinary upload survives.
    upload(&vfs, "/in/report#1", b"mine", 1024).await;
    bucket.sweep_orphaned_uploads(Duration::ZERO).await.unwrap();
    assert_eq!(read_all(&vfs, "/in/report#1").await, b"mine");
}

/// A local listing holds no thread between pages: with tokio's blocking pool down to one
/// thread, many listings read part way (their clients not asking for more) leave it free for
/// every other file call. Each used to park a thread until its next page was taken.
#[test]
fn unread_local_listings_hold_no_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = TempDir::new().unwrap();
        let cache = StoreCache::with_orphan_age(None);
        let bucket = cache
            .bucket(&storage(&format!("file://{}", dir.path().display())))
            .unwrap();
        let vfs = vfs_on_bucket(&bucket);
        vfs.mkdir(&p("/big")).await.unwrap();
        for i in 0..2_500 {
            std::fs::write(dir.path().join(format!("big/f-{i:05}")), b"x").unwrap();
        }
        let listings_then_stat = async {
            let mut open = Vec::new();
            for _ in 0..8 {
                let mut listing = vfs.list_pages(&p("/big")).await.unwrap();
                assert_eq!(listing.next_entries(10).await.unwrap().len(), 10);
                open.push(listing);
            }
            let entry = vfs.stat(&p("/big/f-00001")).await.unwrap();
            (open, entry)
        };
        let (open, entry) = tokio::time::timeout(Duration::from_secs(30), listings_then_stat)
            .await
            .expect("a file call waited for a parked listing");
        assert_eq!(entry.size, 1);
        // Each listing still reads on where it stopped, to the end.
        for mut listing in open {
            let mut total = 10;
            while let Some(page) = listing.next_page().await.unwrap() {
                total += page.len();
            }
            assert_eq!(total, 2_500);
        }
    });
}

#[tokio::test]
async fn local_directories_are_listed_from_disk_in_pages() {
    let dir = TempDir::new().unwrap();
    let cache = StoreCache::with_orphan_age(None);
    let bucket = cache
        .bucket(&storage(&format!("file://{}", dir.path().display())))
        .unwrap();
    let vfs = vfs_on_bucket(&bucket);
    vfs.mkdir(&p("/big")).await.unwrap();
    vfs.mkdir(&p("/big/sub")).await.unwrap();
    upload(&vfs, "/big/odd name #1 %.txt", b"odd", 1024).await;
    const FILES: usize = 2_500;
    for i in 0..FILES {
        std::fs::write(dir.path().join(format!("big/f-{i:05}")), b"12345").unwrap();
    }
    // What users never see: a staging file of an upload in progress.
    std::fs::write(dir.path().join("big/f-00001#7"), b"partial").unwrap();

    let mut listing = vfs.list_pages(&p("/big")).await.unwrap();
    let mut seen = Vec::new();
    while let Some(page) = listing.next_page().await.unwrap() {
        assert!(
            !page.is_empty() && page.len() <= 1000,
            "page of {}",
            page.len()
        );
        seen.extend(page);
    }
    assert_eq!(
        seen.len(),
        FILES + 2,
        "every entry once, nothing hidden shown"
    );
    let mut names: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), FILES + 2);
    let sub = seen.iter().find(|e| e.name == "sub").unwrap();
    assert_eq!(sub.kind, EntryKind::Directory);
    let odd = seen.iter().find(|e| e.name == "odd name #1 %.txt").unwrap();
    assert_eq!((odd.kind, odd.size), (EntryKind::File, 3));
    let f = seen.iter().find(|e| e.name == "f-02499").unwrap();
    assert_eq!(f.size, 5);
    assert!(f.modified.is_some());

    // Entries in smaller batches, across page boundaries, add up the same.
    let mut listing = vfs.list_pages(&p("/big")).await.unwrap();
    let mut total = 0;
    loop {
        let batch = listing.next_entries(333).await.unwrap();
        if batch.is_empty() {
            break;
        }
        total += batch.len();
    }
    assert_eq!(total, FILES + 2);

    // A listing dropped half way stops reading.
    let mut listing = vfs.list_pages(&p("/big")).await.unwrap();
    assert_eq!(listing.next_entries(10).await.unwrap().len(), 10);
    drop(listing);

    assert!(matches!(
        vfs.list_pages(&p("/missing")).await,
        Err(VfsError::NotFound)
    ));
    assert!(matches!(
        vfs.list_pages(&p("/big/f-00001")).await,
        Err(VfsError::NotADirectory)
    ));
    // An empty home lists as empty even before its directory exists on disk.
    let other = Vfs::on_bucket(
        &bucket,
        HomeDirectory::parse("/nobody/yet").unwrap(),
        Permissions::ReadWrite,
        vfs.identity().clone(),
    );
    assert!(
        other
            .list_pages(&p("/"))
            .await
            .unwrap()
            .next_page()
            .await
            .unwrap()
            .is_none()
    );
}

/// On a local-disk bucket `create` answers the usual case (a new name in a marked directory)
/// from the disk; every other case goes to the store. Both must agree with a session that
/// always asks the store (same bucket, no local root).
#[tokio::test]
async fn local_create_checks_agree_with_the_store() {
    let dir = TempDir::new().unwrap();
    let cache = StoreCache::with_orphan_age(None);
    let bucket = cache
        .bucket(&storage(&format!("file://{}", dir.path().display())))
        .unwrap();
    let local = vfs_on_bucket(&bucket);
    let store_only = Vfs::new(
        bucket.store.clone(),
        HomeDirectory::parse("/").unwrap(),
        Permissions::ReadWrite,
        local.identity().clone(),
    );
    local.mkdir(&p("/d")).await.unwrap();
    local.mkdir(&p("/d/sub")).await.unwrap();
    upload(&local, "/d/f", b"file", 1024).await;
    upload(&local, "/top", b"top", 1024).await;
    // A directory only implied by an object below it (no marker), and an empty directory on
    // disk that no store request sees.
    std::fs::create_dir_all(dir.path().join("implied/deeper")).unwrap();
    std::fs::write(dir.path().join("implied/deeper/x"), b"x").unwrap();
    std::fs::create_dir_all(dir.path().join("d/leftover")).unwrap();

    let exclusive = CreateOptions {
        exclusive: true,
        ..Default::default()
    };
    let cases = [
        ("/d/new", CreateOptions::default()),
        ("/new-at-home", CreateOptions::default()),
        ("/d/odd #1 %.txt", CreateOptions::default()),
        ("/d/sub", CreateOptions::default()),
        ("/d/f", exclusive),
        ("/d/f", CreateOptions::default()),
        ("/d/f/below", CreateOptions::default()),
        ("/top/below", CreateOptions::default()),
        ("/missing/x", CreateOptions::default()),
        ("/implied/new", CreateOptions::default()),
        ("/implied/deeper", CreateOptions::default()),
        ("/d/leftover/new", CreateOptions::default()),
    ];
    for (path, options) in cases {
        let outcome = |result: Result<Upload, VfsError>| match result {
            Ok(upload) => Ok(upload.start_offset()),
            Err(e) => Err(format!("{e:?}")),
        };
        let from_disk = outcome(local.create(&p(path), options).await);
        let from_store = outcome(store_only.create(&p(path), options).await);
        assert_eq!(from_disk, from_store, "{path}");
    }
    // The fast answer is the right one: the upload lands and reads back.
    upload(&local, "/d/new", b"new", 1024).await;
    assert_eq!(read_all(&store_only, "/d/new").await, b"new");
    assert_err!(
        local.create(&p("/d/sub"), CreateOptions::default()).await,
        VfsError::IsADirectory
    );
    assert_err!(
        local
            .create(&p("/missing/x"), CreateOptions::default())
            .await,
        VfsError::NotFound
    );
}

/// Every entry of `path` through [`Vfs::list_from`] pages of `max`: (entries, pages).
async fn list_all_from(vfs: &Vfs, path: &str, max: usize) -> (Vec<Entry>, usize) {
    let mut cursor: Option<String> = None;
    let mut entries = Vec::new();
    let mut pages = 0;
    loop {
        let page = vfs
            .list_from(&p(path), cursor.as_deref(), max)
            .await
            .unwrap();
        assert!(page.entries.len() <= max, "page of {}", page.entries.len());
        pages += 1;
        entries.extend(page.entries);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10_000, "the listing does not end");
    }
    (entries, pages)
}

#[tokio::test]
async fn directories_are_listed_from_a_cursor_in_a_stable_order() {
    let dir = TempDir::new().unwrap();
    let cache = StoreCache::with_orphan_age(None);
    let local = cache
        .bucket(&storage(&format!("file://{}", dir.path().display())))
        .unwrap();
    let memory = Fixture::memory();
    for vfs in [
        vfs_on_bucket(&local),
        memory.vfs("/", Permissions::ReadWrite),
    ] {
        vfs.mkdir(&p("/big")).await.unwrap();
        vfs.mkdir(&p("/big/sub")).await.unwrap();
        vfs.mkdir(&p("/big/sub-")).await.unwrap();
        vfs.mkdir(&p("/big/empty")).await.unwrap();
        vfs.mkdir(&p("/big/empty/deeper")).await.unwrap();
        upload(&vfs, "/big/sub/inside", b"in", 1024).await;
        upload(&vfs, "/big/odd name #1 %.txt", b"odd", 1024).await;
        for i in 0..250 {
            upload(&vfs, &format!("/big/f-{i:03}"), b"12345", 1024).await;
        }
        let expected = 250 + 4;
        for max in [1, 7, 100, 1000] {
            let (entries, pages) = list_all_from(&vfs, "/big", max).await;
            let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names.len(), expected, "max {max}: {names:?}");
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), expected, "max {max}: duplicates");
            assert_eq!(pages, expected.div_ceil(max), "max {max}");
            // The same order whatever the page size.
            let (again, _) = list_all_from(&vfs, "/big", 1000).await;
            assert_eq!(entries, again);
        }
        let (entries, _) = list_all_from(&vfs, "/big", 100).await;
        let sub = entries.iter().find(|e| e.name == "sub").unwrap();
        assert_eq!(sub.kind, EntryKind::Directory);
        let f = entries.iter().find(|e| e.name == "f-249").unwrap();
        assert_eq!((f.kind, f.size), (EntryKind::File, 5));
        assert!(f.modified.is_some());
        // Entries added behind the cursor are not returned again; ahead of it they are.
        let first = vfs.list_from(&p("/big"), None, 10).await.unwrap();
        upload(&vfs, "/big/a-new", b"x", 1024).await;
        upload(&vfs, "/big/z-new", b"x", 1024).await;
        let mut rest = Vec::new();
        let mut cursor = first.next.clone();
        while let Some(c) = cursor {
            let page = vfs.list_from(&p("/big"), Some(&c), 50).await.unwrap();
            rest.extend(page.entries.into_iter().map(|e| e.name));
            cursor = page.next;
        }
        assert!(rest.contains(&"z-new".to_owned()));
        assert!(!rest.contains(&"a-new".to_owned()));
        assert_eq!(first.entries.len() + rest.len(), expected + 1);
        // The last page has no cursor; an empty directory is one empty page.
        let empty = vfs
            .list_from(&p("/big/empty/deeper"), None, 10)
            .await
            .unwrap();
        assert_eq!(
            empty,
            crate::DirectoryPage {
                entries: vec![],
                next: None
            }
        );
        assert_err!(
            vfs.list_from(&p("/missing"), None, 10).await,
            VfsError::NotFound
        );
        assert_err!(
            vfs.list_from(&p("/big/f-001"), None, 10).await,
            VfsError::NotADirectory
        );
        assert_err!(
            vfs.list_from(&p("/big"), Some("bad\ncursor"), 10).await,
            VfsError::InvalidPath(_)
        );
        assert_err!(
            vfs.list_from(&p("/big"), Some(&"x".repeat(5000)), 10).await,
            VfsError::InvalidPath(_)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Events

/// An [`wharf_core::EventSink`] that remembers every call, and can be made to refuse.
#[derive(Default)]
struct RecordingSink {
    calls: std::sync::Mutex<Vec<String>>,
    data: std::sync::Mutex<Vec<wharf_core::EventData>>,
    refuse: AtomicBool,
}

#[async_trait]
impl wharf_core::EventSink for RecordingSink {
    async fn begin_upload(
        &self,
        data: wharf_core::EventData,
    ) -> Result<String, wharf_core::EventError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(wharf_core::EventError::Unavailable("down".into()));
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("begin {}", data.key));
        self.data.lock().unwrap().push(data);
        Ok("evt_1".into())
    }

    async fn begin_change(
        &self,
        event_type: wharf_core::EventType,
        data: wharf_core::EventData,
    ) -> Result<String, wharf_core::EventError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(wharf_core::EventError::Unavailable("down".into()));
        }
        let line = match &data.previous_key {
            Some(previous) => format!("begin {event_type} {previous} -> {}", data.key),
            None => format!("begin {event_type} {}", data.key),
        };
        self.calls.lock().unwrap().push(line);
        self.data.lock().unwrap().push(data);
        Ok("evt_c".into())
    }

    async fn settle_upload(
        &self,
        event_id: &str,
        committed: bool,
        _error: Option<String>,
    ) -> Result<(), wharf_core::EventError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("settle {event_id} {committed}"));
        Ok(())
    }

    async fn record(
        &self,
        event_type: wharf_core::EventType,
        data: wharf_core::EventData,
    ) -> Result<String, wharf_core::EventError> {
        let line = match &data.previous_key {
            Some(previous) => format!("{event_type} {previous} -> {}", data.key),
            None => format!("{event_type} {}", data.key),
        };
        self.calls.lock().unwrap().push(line);
        self.data.lock().unwrap().push(data);
        Ok("evt_2".into())
    }
}

impl RecordingSink {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[tokio::test]
async fn changes_are_reported_as_events() {
    on_both(|fx| async move {
        let sink = Arc::new(RecordingSink::default());
        let vfs = fx
            .vfs("/acme", Permissions::ReadWrite)
            .with_events(BucketName::parse("test-bucket").unwrap(), sink.clone());
        create_home(fx.store().as_ref(), &HomeDirectory::parse("/acme").unwrap())
            .await
            .unwrap();

        vfs.mkdir(&p("/in")).await.unwrap();
        let data = pattern(PART_SIZE + 10);
        let summary = upload(&vfs, "/in/a.bin", &data, 64 * 1024).await;
        assert_eq!(
            sink.take(),
            vec![
                "begin directory.created acme/in".to_owned(),
                "settle evt_c true".to_owned(),
                "begin acme/in/a.bin".to_owned(),
                "settle evt_1 true".to_owned()
            ]
        );
        let begun = sink.data.lock().unwrap().pop().unwrap();
        assert_eq!(begun.size, Some(data.len() as u64));
        assert_eq!(begun.sha256.as_deref(), Some(summary.sha256.as_str()));
        assert_eq!(begun.sha256.unwrap(), sha256_hex(&data));
        assert_eq!(begun.username.as_str(), "tester");
        assert_eq!(begun.protocol, Protocol::Sftp);
        assert_eq!(begun.bucket_name.as_str(), "test-bucket");

        vfs.rename(&p("/in/a.bin"), &p("/in/b.bin"), false)
            .await
            .unwrap();
        vfs.remove(&p("/in/b.bin")).await.unwrap();
        assert_eq!(
            sink.take(),
            vec![
                "begin file.renamed acme/in/a.bin -> acme/in/b.bin".to_owned(),
                "settle evt_c true".to_owned(),
                "begin file.deleted acme/in/b.bin".to_owned(),
                "settle evt_c true".to_owned()
            ]
        );
        // Refused operations report nothing.
        assert!(vfs.remove(&p("/in/missing")).await.is_err());
        assert!(sink.take().is_empty());

        // An upload dropped after receiving data is a failed upload; one that received nothing
        // is nothing.
        let mut dropped = vfs
            .create(&p("/in/c.bin"), CreateOptions::default())
            .await
            .unwrap();
        dropped
            .write(0, Bytes::from_static(b"partial"))
            .await
            .unwrap();
        drop(dropped);
        drop(
            vfs.create(&p("/in/d.bin"), CreateOptions::default())
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            sink.take(),
            vec!["file.upload_failed acme/in/c.bin".to_owned()]
        );
        let failed = sink.data.lock().unwrap().pop().unwrap();
        assert_eq!(failed.size, Some(7));
        assert!(failed.error.is_some());

        // If the upload cannot be recorded, it is not committed.
        sink.refuse.store(true, Ordering::SeqCst);
        let mut refused = vfs
            .create(&p("/in/e.bin"), CreateOptions::default())
            .await
            .unwrap();
        refused.write(0, Bytes::from_static(b"data")).await.unwrap();
        let message = storage_message(refused.commit().await);
        assert!(message.contains("could not be recorded"), "{message}");
        assert_err!(vfs.stat(&p("/in/e.bin")).await, VfsError::NotFound);
        assert!(sink.take().is_empty());
        // Nor is a delete, a rename or a new directory made.
        sink.refuse.store(false, Ordering::SeqCst);
        upload(&vfs, "/in/f.bin", b"keep", 4).await;
        sink.take();
        sink.refuse.store(true, Ordering::SeqCst);
        let message = storage_message(vfs.remove(&p("/in/f.bin")).await);
        assert!(message.contains("could not be recorded"), "{message}");
        let message = storage_message(vfs.rename(&p("/in/f.bin"), &p("/in/g.bin"), false).await);
        assert!(message.contains("could not be recorded"), "{message}");
        let message = storage_message(vfs.mkdir(&p("/in/new")).await);
        assert!(message.contains("could not be recorded"), "{message}");
        assert!(vfs.stat(&p("/in/f.bin")).await.is_ok());
        assert_err!(vfs.stat(&p("/in/g.bin")).await, VfsError::NotFound);
        assert_err!(vfs.stat(&p("/in/new")).await, VfsError::NotFound);
        assert!(sink.take().is_empty());
    })
    .await;
}
