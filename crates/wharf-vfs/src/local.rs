//! [`LocalStaging`]: a multipart upload to a local-disk bucket whose parts are written on the
//! caller's thread when the cores are busy, and on a blocking thread otherwise; and
//! [`put_whole`], the same staging file for a small upload, written in one step.
//!
//! object_store's `LocalFileSystem` hands every part to a blocking thread and back, several at
//! once: with [`LOCAL_PART_SIZE`](crate::transfer::LOCAL_PART_SIZE) parts that is 4,096
//! hand-offs per GiB, and writers of one file spinning on its inode lock. Here:
//!
//! - While there are no more uploads than cores, a part goes to a blocking thread, one at a
//!   time per upload: the copy into the page cache runs on a spare core while the session
//!   decrypts and hashes the next part (measured: a single FTPS upload is about 10% faster
//!   this way than with inline writes).
//! - With more uploads than cores there is no spare core to overlap with, and the hand-offs
//!   only cost CPU: a part is written right here, like the create checks (`Vfs::create`); it
//!   takes tens of microseconds (measured: 20 concurrent FTPS uploads 11–13% faster).
//! - The bound: a write that sleeps in the kernel for longer than [`SLOW_WRITE`] (writers
//!   throttled because the disk lags behind, or memory short) sends every upload's parts to
//!   blocking threads for [`SLOW_COOLDOWN`], so a slow disk never holds the runtime's threads
//!   for long.
//!
//! The staging file lives in the bucket's staging directory ([`LocalTarget::staging_dir`], the
//! reserved `.wharf-uploads` at the bucket root, which no user can see or name), and the commit
//! renames it over the target. Everything in that directory is Wharf's by construction, so
//! [`sweep_local_staging`](crate::journal::sweep_local_staging) removes what a dead process
//! left there and never touches a file anywhere else.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

/// A part write that slept in the kernel and took longer than this means writers are being
/// throttled: parts go to blocking threads for a while. A 256 KiB write into the page cache
/// normally takes 20–100 µs. A write that took long only because its thread was preempted (a
/// busy host) does not count: it did not sleep.
pub(crate) const SLOW_WRITE: Duration = Duration::from_millis(2);

/// How long parts go to blocking threads after a slow write, before one is tried inline again.
pub(crate) const SLOW_COOLDOWN: Duration = Duration::from_secs(1);

/// Milliseconds since [`epoch`] before which parts are not written inline (0: no slow write
/// seen). Shared by every upload of the process: they all write to the same disks.
static INLINE_AFTER_MS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// [`LocalStaging`]s of the process that exist now.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// The process's cores.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Whether parts are written on the caller's thread now: more uploads than cores, and no
/// slow write in the last [`SLOW_COOLDOWN`].
pub(crate) fn inline_writes() -> bool {
    inline_when(
        ACTIVE.load(Ordering::Relaxed),
        cores(),
        now_ms(),
        INLINE_AFTER_MS.load(Ordering::Relaxed),
    )
}

/// [`inline_writes`] with `active` uploads on `cores` cores at `now_ms`, inline writes allowed
/// from `inline_after_ms` on.
fn inline_when(active: usize, cores: usize, now_ms: u64, inline_after_ms: u64) -> bool {
    active > cores && now_ms >= inline_after_ms
}

/// Sends parts to blocking threads for [`SLOW_COOLDOWN`] after a write that took `took`.
fn note_slow_write(took: Duration) {
    let until = now_ms().saturating_add(SLOW_COOLDOWN.as_millis() as u64);
    INLINE_AFTER_MS.fetch_max(until, Ordering::Relaxed);
    tracing::debug!(
        took_ms = took.as_millis() as u64,
        "slow write to local disk; parts go to blocking threads for a while"
    );
}

/// Voluntary context switches of the calling thread so far. A thread that sleeps in the kernel
/// (throttled, waiting for memory or a lock) switches voluntarily; one preempted while it runs
/// does not.
#[cfg(target_os = "linux")]
fn voluntary_switches() -> Option<libc::c_long> {
    // SAFETY: `rusage` is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one `rusage` through the pointer, which points to a live one.
    let done = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (done == 0).then_some(usage.ru_nvcsw)
}

/// Elsewhere there is no per-thread count: every slow write counts as a sleep.
#[cfg(not(target_os = "linux"))]
fn voluntary_switches() -> Option<i64> {
    None
}

/// Runs `io`, noting a slow write (see [`SLOW_WRITE`]).
fn timed<T>(io: impl FnOnce() -> T) -> T {
    let switches = voluntary_switches();
    let started = Instant::now();
    let done = io();
    let took = started.elapsed();
    if took > SLOW_WRITE && (switches.is_none() || voluntary_switches() != switches) {
        note_slow_write(took);
    }
    done
}

/// Writes `data` at `offset`, noting a slow write.
fn write_part(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    timed(|| file.write_all_at(data, offset))
}

/// Where a local upload's file goes, and where it is staged until the commit.
#[derive(Debug, Clone)]
pub(crate) struct LocalTarget {
    pub(crate) dest: PathBuf,
    /// The bucket's staging directory: `.wharf-uploads` at the bucket root (see the module
    /// docs).
    pub(crate) staging_dir: PathBuf,
}

/// Writes a whole small file (one that never reached a part's size) to its target: a staging
/// file written and renamed over the target, as [`LocalStaging`] does for a large one. There
/// is nothing to overlap with here (the client waits for the file to be visible), so it all
/// runs on the caller's thread (a create, one write and a rename: tens of microseconds),
/// unless a write was slow a moment ago: then on a blocking thread.
pub(crate) async fn put_whole(target: LocalTarget, data: Bytes) -> object_store::Result<()> {
    if now_ms() >= INLINE_AFTER_MS.load(Ordering::Relaxed) {
        timed(|| put_whole_now(&target, &data))
    } else {
        blocking(move || put_whole_now(&target, &data)).await
    }
}

fn put_whole_now(target: &LocalTarget, data: &[u8]) -> object_store::Result<()> {
    let (file, staging) = create_staging(&target.staging_dir)?;
    if let Err(e) = file.write_all_at(data, 0) {
        let _ = std::fs::remove_file(&staging);
        return Err(io_error(e, "cannot write", &target.dest));
    }
    rename_into_place(&staging, &target.dest)
}

/// The commit: renames `staging` over `dest`, atomically replacing any previous version, and
/// creates `dest`'s missing parent directories (as `LocalFileSystem` does; an empty directory
/// may also have been cleaned up while the upload ran). A staging file that cannot be renamed
/// is removed, so a failed commit leaves nothing behind.
fn rename_into_place(staging: &Path, dest: &Path) -> object_store::Result<()> {
    let renamed = match std::fs::rename(staging, dest) {
        Err(e) if e.kind() == ErrorKind::NotFound && staging.exists() => match dest.parent() {
            Some(parent) => {
                std::fs::create_dir_all(parent).and_then(|()| std::fs::rename(staging, dest))
            }
            None => Err(e),
        },
        other => other,
    };
    renamed.map_err(|e| {
        let _ = std::fs::remove_file(staging);
        io_error(e, "cannot rename the upload to", dest)
    })
}

/// Names staging files uniquely within a process; the process id keeps gateways that share a
/// bucket directory apart, and `create_new` settles any clash left.
static STAGING_NUMBER: AtomicU64 = AtomicU64::new(0);

/// Creates a new staging file in `staging_dir` (created if missing).
fn create_staging(staging_dir: &Path) -> object_store::Result<(File, PathBuf)> {
    loop {
        let number = STAGING_NUMBER.fetch_add(1, Ordering::Relaxed);
        let staging = staging_dir.join(format!("upload-{}-{number}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)
        {
            Ok(file) => return Ok((file, staging)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == ErrorKind::NotFound => std::fs::create_dir_all(staging_dir)
                .map_err(|e| io_error(e, "cannot create directory", staging_dir))?,
            Err(e) => return Err(io_error(e, "cannot create", &staging)),
        }
    }
}

/// What [`LocalStaging::put_part`] did with a part.
pub(crate) enum PartWrite {
    /// Written on the caller's thread.
    Done(object_store::Result<()>),
    /// Being written on a blocking thread (a spare core, or the disk was slow a moment ago).
    Pending(BoxFuture<'static, object_store::Result<()>>),
}

/// A multipart upload's staging file on local disk (see the module docs).
#[derive(Debug)]
pub(crate) struct LocalStaging {
    /// Shared with the parts written on blocking threads; positional writes need no lock.
    file: Arc<File>,
    /// The file in the staging directory; `None` once renamed or removed.
    staging: Option<PathBuf>,
    dest: PathBuf,
    /// Where the next part goes.
    offset: u64,
}

impl LocalStaging {
    /// Creates a new staging file for `target`. Runs on the caller's thread: creating a file
    /// is a metadata operation of well under a millisecond, once per upload.
    pub(crate) fn create(target: LocalTarget) -> object_store::Result<Self> {
        let (file, staging) = create_staging(&target.staging_dir)?;
        ACTIVE.fetch_add(1, Ordering::Relaxed);
        Ok(LocalStaging {
            file: Arc::new(file),
            staging: Some(staging),
            dest: target.dest,
            offset: 0,
        })
    }

    /// Writes `data` after the previous parts: on this thread, or on a blocking thread while
    /// the disk is slow (see the module docs).
    pub(crate) fn put_part(&mut self, data: Bytes) -> PartWrite {
        self.put_part_where(data, inline_writes())
    }

    /// [`LocalStaging::put_part`], on this thread if `inline`.
    fn put_part_where(&mut self, data: Bytes, inline: bool) -> PartWrite {
        let offset = self.offset;
        self.offset += data.len() as u64;
        if inline {
            let written = write_part(&self.file, &data, offset);
            return PartWrite::Done(written.map_err(|e| io_error(e, "cannot write", &self.dest)));
        }
        let file = Arc::clone(&self.file);
        let dest = self.dest.clone();
        PartWrite::Pending(
            tokio::task::spawn_blocking(move || {
                write_part(&file, &data, offset).map_err(|e| io_error(e, "cannot write", &dest))
            })
            .map(|joined| joined.unwrap_or_else(|e| Err(generic(e.to_string()))))
            .boxed(),
        )
    }

    /// Makes the file visible: the staging file is renamed over `dest`, atomically replacing
    /// any previous version. Every part must have been written.
    pub(crate) async fn complete(&mut self) -> object_store::Result<()> {
        let staging = self
            .staging
            .take()
            .ok_or_else(|| generic("the upload is finished".to_owned()))?;
        let dest = self.dest.clone();
        // A failed rename removes the staging file itself: the caller's abort then finds
        // nothing.
        blocking(move || rename_into_place(&staging, &dest)).await
    }

    /// Where the file goes.
    pub(crate) fn dest(&self) -> &Path {
        &self.dest
    }

    /// Removes the staging file.
    pub(crate) async fn abort(&mut self) -> object_store::Result<()> {
        let Some(staging) = self.staging.take() else {
            return Ok(());
        };
        blocking(move || {
            std::fs::remove_file(&staging).map_err(|e| io_error(e, "cannot remove", &staging))
        })
        .await
    }
}

impl Drop for LocalStaging {
    /// An upload dropped unfinished removes its staging file (in the background: unlinking a
    /// large file can take a while).
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::Relaxed);
        if let Some(staging) = self.staging.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => drop(handle.spawn_blocking(move || std::fs::remove_file(staging))),
                Err(_) => drop(std::fs::remove_file(staging)),
            }
        }
    }
}

/// The entity tag `LocalFileSystem` reports for the file at `path` (inode, modification time
/// and size; a test keeps the two in step), or `None` if it cannot be read. One `stat` on the
/// caller's thread.
pub(crate) fn e_tag(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .ok()?
        .as_micros();
    Some(format!("\"{:x}-{mtime:x}-{:x}\"", meta.ino(), meta.len()))
}

async fn blocking(
    f: impl FnOnce() -> object_store::Result<()> + Send + 'static,
) -> object_store::Result<()> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(generic(e.to_string())))
}

/// An I/O error as object_store's `LocalFileSystem` reports one: a generic error whose source
/// is the OS error (so [`crate::VfsError`]'s mapping of its kind applies).
fn io_error(source: std::io::Error, what: &str, path: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(LocalIoError {
            message: format!("{what} {}", path.display()),
            source,
        }),
    }
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: message.into(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}: {source}")]
struct LocalIoError {
    message: String,
    #[source]
    source: std::io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    use tempfile::TempDir;

    /// Our entity tag of a local file is the one `LocalFileSystem` reports: if object_store
    /// changes its scheme, remembered checksums would silently stop matching.
    #[tokio::test]
    async fn local_e_tags_match_the_stores() {
        use object_store::ObjectStoreExt;
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("f.bin"), b"some bytes").unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let meta = store
            .head(&object_store::path::Path::from("f.bin"))
            .await
            .unwrap();
        assert_eq!(e_tag(&dir.path().join("f.bin")), meta.e_tag);
        assert_eq!(e_tag(&dir.path().join("missing")), None);
    }

    async fn wait(write: PartWrite) -> object_store::Result<()> {
        match write {
            PartWrite::Done(result) => result,
            PartWrite::Pending(writing) => writing.await,
        }
    }

    /// An upload to `dest` under the bucket root `root`, staged in the root's staging directory.
    fn target(root: &Path, dest: &str) -> LocalTarget {
        LocalTarget {
            dest: root.join(dest),
            staging_dir: root.join(wharf_core::UPLOAD_JOURNAL),
        }
    }

    /// Waits (up to a second) until no staging file is left under the bucket root `dir`; Drop
    /// removes them in the background.
    async fn staging_names_settled(dir: &Path) -> Vec<String> {
        for _ in 0..50 {
            if staging_names(dir).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        staging_names(dir)
    }

    /// The staging files of the bucket rooted at `dir`.
    fn staging_names(dir: &Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir.join(wharf_core::UPLOAD_JOURNAL)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn parts_written_here_and_on_blocking_threads_land_in_order() {
        let dir = TempDir::new().unwrap();
        let target = target(dir.path(), "sub/deeper/file.bin");
        let dest = target.dest.clone();
        let mut staging = LocalStaging::create(target).unwrap();
        let names = staging_names(dir.path());
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("upload-"), "{names:?}");
        assert!(
            !dir.path().join("sub").exists(),
            "nothing shows before the commit"
        );
        let parts: Vec<Bytes> = (0u8..6)
            .map(|i| Bytes::from(vec![i; 1000 + usize::from(i)]))
            .collect();
        let mut pending = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            match staging.put_part_where(part.clone(), i % 2 == 0) {
                PartWrite::Done(result) => {
                    assert_eq!(i % 2, 0, "only inline parts are done at once");
                    result.unwrap();
                }
                PartWrite::Pending(writing) => {
                    assert_eq!(i % 2, 1, "only background parts are pending");
                    pending.push(writing);
                }
            }
        }
        for writing in pending {
            writing.await.unwrap();
        }
        assert!(!dest.exists(), "nothing is visible before the commit");
        staging.complete().await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), parts.concat());
        assert!(staging_names(dir.path()).is_empty());
        assert!(staging.complete().await.is_err(), "a second commit fails");
    }

    #[tokio::test]
    async fn a_commit_replaces_the_previous_version_while_another_upload_of_it_runs() {
        let dir = TempDir::new().unwrap();
        let dest = dir.path().join("f");
        std::fs::write(&dest, b"old version, longer than the new one").unwrap();
        // Another upload of the same name is in progress.
        let mut other = LocalStaging::create(target(dir.path(), "f")).unwrap();
        let mut staging = LocalStaging::create(target(dir.path(), "f")).unwrap();
        assert_eq!(staging_names(dir.path()).len(), 2);
        wait(staging.put_part(Bytes::from_static(b"new")))
            .await
            .unwrap();
        staging.complete().await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        other.abort().await.unwrap();
        assert!(staging_names(dir.path()).is_empty());
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
    }

    #[tokio::test]
    async fn abort_and_drop_remove_the_staging_file() {
        let dir = TempDir::new().unwrap();
        let dest = dir.path().join("f");
        let mut aborted = LocalStaging::create(target(dir.path(), "f")).unwrap();
        wait(aborted.put_part(Bytes::from_static(b"data")))
            .await
            .unwrap();
        aborted.abort().await.unwrap();
        aborted.abort().await.unwrap();
        assert!(
            aborted.complete().await.is_err(),
            "an aborted upload cannot commit"
        );
        let dropped = LocalStaging::create(target(dir.path(), "f")).unwrap();
        drop(dropped);
        assert!(staging_names_settled(dir.path()).await.is_empty());
        assert!(!dest.exists());
    }

    #[tokio::test]
    async fn a_failed_commit_says_why_and_leaves_nothing_behind() {
        let dir = TempDir::new().unwrap();
        let dest = dir.path().join("gone/f");
        let mut staging = LocalStaging::create(target(dir.path(), "gone/f")).unwrap();
        wait(staging.put_part(Bytes::from_static(b"data")))
            .await
            .unwrap();
        // The target's name is now a non-empty directory: the rename cannot replace it.
        std::fs::create_dir_all(dest.join("child")).unwrap();
        let error = staging.complete().await.unwrap_err();
        assert!(
            error.to_string().contains("cannot rename the upload to"),
            "{error}"
        );
        assert!(staging_names(dir.path()).is_empty());
        staging.abort().await.unwrap();
    }

    #[tokio::test]
    async fn a_whole_small_file_replaces_the_previous_version_in_one_step() {
        let dir = TempDir::new().unwrap();
        let dest = dir.path().join("new/dir/f");
        put_whole(
            target(dir.path(), "new/dir/f"),
            Bytes::from_static(b"first"),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"first");
        // Another upload of the same name is in progress: it keeps its staging file.
        let other = LocalStaging::create(target(dir.path(), "new/dir/f")).unwrap();
        put_whole(target(dir.path(), "new/dir/f"), Bytes::new())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"",
            "an empty file is a file"
        );
        assert_eq!(staging_names(dir.path()).len(), 1);
        drop(other);
        // The target's name is now a non-empty directory: the rename cannot replace it.
        std::fs::remove_file(&dest).unwrap();
        std::fs::create_dir_all(dest.join("child")).unwrap();
        let error = put_whole(target(dir.path(), "new/dir/f"), Bytes::from_static(b"data"))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("cannot rename the upload to"),
            "{error}"
        );
        assert!(
            staging_names_settled(dir.path()).await.is_empty(),
            "a failed write leaves no staging file"
        );
    }

    #[test]
    fn parts_are_written_inline_only_with_more_uploads_than_cores_and_no_slow_write() {
        assert!(!inline_when(1, 2, 100, 0), "a spare core: background");
        assert!(!inline_when(2, 2, 100, 0), "a core each: background");
        assert!(inline_when(3, 2, 100, 0), "more uploads than cores: inline");
        assert!(inline_when(20, 2, 100, 100));
        assert!(
            !inline_when(20, 2, 99, 100),
            "a slow write a moment ago: background"
        );
    }

    #[test]
    fn a_slow_write_sends_parts_to_blocking_threads_for_a_while() {
        let before = INLINE_AFTER_MS.load(Ordering::Relaxed);
        note_slow_write(SLOW_WRITE * 2);
        let until = INLINE_AFTER_MS.load(Ordering::Relaxed);
        assert!(until > before, "a slow write pushes inline writes back");
        assert!(until >= now_ms() + SLOW_COOLDOWN.as_millis() as u64 - 100);
        assert!(!inline_writes());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sleeping_counts_as_a_voluntary_switch_and_spinning_does_not() {
        let start = voluntary_switches().expect("getrusage works");
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(5) {
            std::hint::spin_loop();
        }
        // Preemption while spinning is possible but involuntary: not counted.
        assert_eq!(voluntary_switches(), Some(start));
        std::thread::sleep(Duration::from_millis(5));
        assert!(voluntary_switches().expect("getrusage works") > start);
    }
}
