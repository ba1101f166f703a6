//! The VFS on real object stores, through wharf-vfs's public API only: every behaviour runs on
//! an S3-compatible server (s3s-fs) and on Azure's emulator (Azurite), each started for the
//! test on a free port (see `common/servers.rs`). A missing server binary fails the test with
//! the command that installs it.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::servers::{self, AzuriteServer, S3Server};
use common::*;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use wharf_core::{HomeDirectory, Permissions};
use wharf_vfs::{
    BucketError, CreateOptions, DIRECTORY_MARKER, EntryKind, PART_SIZE, VfsError, check_bucket,
    create_home,
};

/// Runs each listed `async fn(Fixture)` as `s3::<name>` (s3s-fs) and `azure::<name>` (Azurite).
macro_rules! on_real_stores {
    ($($name:ident),* $(,)?) => {
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Fixture::s3()).await
                }
            )*
        }
        mod azure {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Fixture::azure()).await
                }
            )*
        }
    };
}

on_real_stores!(
    empty_directories_persist_as_markers,
    small_and_large_uploads_round_trip,
    aborted_and_dropped_uploads_leave_nothing,
    files_and_directories_are_renamed,
    special_characters_round_trip,
    homes_are_isolated,
    bucket_check_reports_what_is_wrong,
    large_directories_list_in_pages,
    directories_are_listed_from_a_cursor,
    uploads_of_a_crashed_gateway_are_swept,
);

async fn empty_directories_persist_as_markers(fx: Fixture) {
    let vfs = fx.vfs("/", Permissions::ReadWrite);
    assert!(names(&vfs, "/").await.is_empty());
    vfs.mkdir(&p("/a")).await.unwrap();
    assert_err!(vfs.mkdir(&p("/a")).await, VfsError::AlreadyExists);
    vfs.mkdir(&p("/a/b")).await.unwrap();
    vfs.mkdir(&p("/a/b/c")).await.unwrap();

    // Nothing but markers in the bucket, and they make the empty directories listable.
    let marker = |dir: &str| format!("{dir}/{DIRECTORY_MARKER}");
    assert_eq!(
        fx.keys().await,
        vec![marker("a"), marker("a/b"), marker("a/b/c")]
    );
    if let Server::S3(server) = &fx.server {
        assert_eq!(
            server.keys(BUCKET),
            vec![marker("a"), marker("a/b"), marker("a/b/c")],
            "the markers are real objects on the server"
        );
    }
    assert_eq!(names(&vfs, "/").await, vec![dir("a")]);
    assert_eq!(names(&vfs, "/a").await, vec![dir("b")]);
    assert!(names(&vfs, "/a/b/c").await.is_empty());
    let c = vfs.stat(&p("/a/b/c")).await.unwrap();
    assert_eq!((c.kind, c.size), (EntryKind::Directory, 0));
    assert!(
        c.modified.is_some(),
        "a marked directory has its marker's time"
    );

    // A fresh session (another gateway) sees the same.
    let other = vfs_on(fx.raw.clone(), "/", Permissions::ReadOnly);
    assert_eq!(names(&other, "/a/b").await, vec![dir("c")]);

    assert_err!(vfs.rmdir(&p("/a")).await, VfsError::DirectoryNotEmpty);
    upload(&vfs, "/a/b/c/f", b"x", 1024).await;
    assert_err!(vfs.rmdir(&p("/a/b/c")).await, VfsError::DirectoryNotEmpty);
    vfs.remove(&p("/a/b/c/f")).await.unwrap();
    assert!(
        names(&vfs, "/a/b/c").await.is_empty(),
        "removing the last file leaves the directory"
    );
    vfs.rmdir(&p("/a/b/c")).await.unwrap();
    assert_err!(vfs.stat(&p("/a/b/c")).await, VfsError::NotFound);
    assert_err!(vfs.list(&p("/a/b/c")).await, VfsError::NotFound);
    vfs.rmdir(&p("/a/b")).await.unwrap();
    vfs.rmdir(&p("/a")).await.unwrap();
    assert!(names(&vfs, "/").await.is_empty());
    assert!(fx.keys().await.is_empty(), "rmdir removes the markers");

    // Directories implied by objects another tool wrote exist without markers.
    fx.raw
        .put(
            &Path::from_iter(["d1", "d2", "f.txt"]),
            object_store::PutPayload::from_static(b"hi"),
        )
        .await
        .unwrap();
    let d1 = vfs.stat(&p("/d1")).await.unwrap();
    assert_eq!((d1.kind, d1.modified), (EntryKind::Directory, None));
    assert_eq!(names(&vfs, "/d1/d2").await, vec![file("f.txt")]);
}

async fn small_and_large_uploads_round_trip(fx: Fixture) {
    let vfs = fx.vfs("/", Permissions::ReadWrite);

    // Small: one PUT.
    let small = pattern(100_000);
    let summary = upload(&vfs, "/small.bin", &small, 32 * 1024).await;
    assert_eq!(fx.counting.puts(), 1, "a small upload is one PUT");
    assert_eq!(fx.counting.multiparts(), 0);
    assert_eq!(summary.size, small.len() as u64);
    assert_eq!(summary.sha256, sha256_hex(&small));
    assert_eq!(read_all(&vfs, "/small.bin").await, small);

    // Large: more than two parts, one multipart upload.
    let large = pattern(2 * PART_SIZE + 123_457);
    let started = Instant::now();
    let summary = upload(&vfs, "/large.bin", &large, 255 * 1024).await;
    eprintln!(
        "{}: {} MiB uploaded in {:?}",
        fx.name(),
        large.len() >> 20,
        started.elapsed()
    );
    assert_eq!(fx.counting.multiparts(), 1, "a large upload is multipart");
    assert_eq!(fx.counting.puts(), 1, "and no single PUT");
    assert_eq!(summary.size, large.len() as u64);
    assert_eq!(summary.sha256, sha256_hex(&large));
    let entry = vfs.stat(&p("/large.bin")).await.unwrap();
    assert_eq!(
        (entry.kind, entry.size),
        (EntryKind::File, large.len() as u64)
    );
    assert_eq!(fx.pending_uploads_settled().await, Vec::<String>::new());
    if let Server::S3(server) = &fx.server {
        let on_disk = std::fs::read(server.bucket_dir(BUCKET).join("large.bin")).unwrap();
        assert_eq!(
            sha256_hex(&on_disk),
            sha256_hex(&large),
            "the server holds the bytes"
        );
    }

    // Sequential reads are served by the read-ahead, one ranged GET per chunk; ranged reads
    // return the right bytes anywhere.
    let gets = fx.counting.gets();
    let back = read_all(&vfs, "/large.bin").await;
    assert_eq!(sha256_hex(&back), sha256_hex(&large));
    let rest = large.len() as u64 - wharf_vfs::READ_AHEAD_FIRST;
    let chunks = 1 + rest.div_ceil(wharf_vfs::READ_AHEAD_CHUNK) as usize;
    assert_eq!(
        fx.counting.gets() - gets,
        chunks,
        "one GET per read-ahead chunk"
    );
    let mut download = vfs.open_read(&p("/large.bin")).await.unwrap();
    let size = large.len() as u64;
    let cases: &[(u64, u32)] = &[
        (0, 10),
        (10, 100_000),
        (PART_SIZE as u64 - 7, 64), // across the first part boundary
        (5, 3),                     // backwards
        (2 * PART_SIZE as u64 - 1, 2),
        (3 * 1024 * 1024, 1000), // a long jump forward
        (size - 100, 32 * 1024), // a short read at the end
        (size - 1, 1),
    ];
    for &(offset, len) in cases {
        let got = download.read(offset, len).await.unwrap();
        let end = (offset + u64::from(len)).min(size);
        assert_eq!(
            &got[..],
            &large[offset as usize..end as usize],
            "read({offset}, {len})"
        );
    }
    assert!(download.read(size, 10).await.unwrap().is_empty());

    // An empty file is a file too.
    let empty = vfs
        .create(&p("/empty"), CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(empty.commit().await.unwrap().sha256, sha256_hex(b""));
    assert_eq!(vfs.stat(&p("/empty")).await.unwrap().size, 0);
    assert_eq!(
        names(&vfs, "/").await,
        vec![file("empty"), file("large.bin"), file("small.bin")]
    );
}

async fn aborted_and_dropped_uploads_leave_nothing(fx: Fixture) {
    let vfs = fx.vfs("/", Permissions::ReadWrite);
    upload(&vfs, "/f", b"old", 1024).await;
    let big = Bytes::from(pattern(PART_SIZE + 1000));

    // Aborted after a part was sent.
    let mut aborted = vfs
        .create(&p("/f"), CreateOptions::default())
        .await
        .unwrap();
    aborted.write(0, big.clone()).await.unwrap();
    aborted.abort().await.unwrap();
    assert_eq!(read_all(&vfs, "/f").await, b"old");
    assert_eq!(
        fx.pending_uploads_settled().await,
        Vec::<String>::new(),
        "abort removes the multipart upload"
    );

    // Dropped (a client that disconnected) after two parts: aborted in the background.
    let mut dropped = vfs
        .create(&p("/new"), CreateOptions::default())
        .await
        .unwrap();
    dropped.write(0, big.clone()).await.unwrap();
    dropped.write(big.len() as u64, big.clone()).await.unwrap();
    if let Server::S3(server) = &fx.server {
        assert!(
            !server.pending_multipart_uploads().is_empty(),
            "the check below is not vacuous: the upload is pending on the server"
        );
    }
    drop(dropped);
    assert_eq!(
        fx.pending_uploads_settled().await,
        Vec::<String>::new(),
        "a dropped upload is aborted on the server"
    );
    assert_err!(vfs.stat(&p("/new")).await, VfsError::NotFound);

    // A small upload dropped or aborted never reaches the store.
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
    assert_eq!(fx.keys().await, vec!["f".to_owned()]);
    match &fx.server {
        Server::S3(server) => assert_eq!(server.keys(BUCKET), vec!["f".to_owned()]),
        Server::Azure(server) => {
            assert_eq!(server.blob_names(BUCKET, false), vec!["f".to_owned()]);
        }
    }
}

async fn files_and_directories_are_renamed(fx: Fixture) {
    let vfs = fx.vfs("/", Permissions::ReadWrite);
    upload(&vfs, "/a", b"A", 1024).await;
    upload(&vfs, "/b", b"B", 1024).await;
    vfs.mkdir(&p("/d")).await.unwrap();

    // Files.
    vfs.rename(&p("/a"), &p("/d/a2"), false).await.unwrap();
    assert_err!(vfs.stat(&p("/a")).await, VfsError::NotFound);
    assert_eq!(read_all(&vfs, "/d/a2").await, b"A");
    assert_err!(
        vfs.rename(&p("/b"), &p("/d/a2"), false).await,
        VfsError::AlreadyExists
    );
    assert_eq!(
        read_all(&vfs, "/d/a2").await,
        b"A",
        "no overwrite without asking"
    );
    vfs.rename(&p("/b"), &p("/d/a2"), true).await.unwrap();
    assert_eq!(read_all(&vfs, "/d/a2").await, b"B");
    assert_err!(vfs.stat(&p("/b")).await, VfsError::NotFound);
    assert_err!(
        vfs.rename(&p("/nope"), &p("/x"), false).await,
        VfsError::NotFound
    );

    // A large file (multipart on the way in) renames whole.
    let large = pattern(PART_SIZE + 4321);
    upload(&vfs, "/d/large", &large, 64 * 1024).await;
    vfs.rename(&p("/d/large"), &p("/large"), false)
        .await
        .unwrap();
    assert_eq!(
        sha256_hex(&read_all(&vfs, "/large").await),
        sha256_hex(&large)
    );

    // Directories, with a file, a sub-directory and an empty one.
    vfs.mkdir(&p("/d/sub")).await.unwrap();
    vfs.mkdir(&p("/d/empty")).await.unwrap();
    upload(&vfs, "/d/sub/y #1", b"y", 1024).await;
    vfs.rename(&p("/d"), &p("/e"), false).await.unwrap();
    assert_err!(vfs.stat(&p("/d")).await, VfsError::NotFound);
    assert_eq!(names(&vfs, "/").await, vec![dir("e"), file("large")]);
    assert_eq!(
        names(&vfs, "/e").await,
        vec![file("a2"), dir("empty"), dir("sub")]
    );
    assert!(names(&vfs, "/e/empty").await.is_empty());
    assert_eq!(read_all(&vfs, "/e/sub/y #1").await, b"y");
    assert_eq!(read_all(&vfs, "/e/a2").await, b"B");
    assert!(
        fx.keys().await.iter().all(|k| !k.starts_with("d/")),
        "nothing is left under the old name: {:?}",
        fx.keys().await
    );

    // Onto a non-empty directory: refused.
    vfs.mkdir(&p("/f")).await.unwrap();
    upload(&vfs, "/f/keep", b"k", 1024).await;
    assert_err!(
        vfs.rename(&p("/e"), &p("/f"), true).await,
        VfsError::DirectoryNotEmpty
    );
    assert_eq!(read_all(&vfs, "/f/keep").await, b"k");
}

async fn special_characters_round_trip(fx: Fixture) {
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
        "plus+and=equals",
        ".hidden",
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
        assert_eq!(read_all(&vfs, &path).await, name.as_bytes(), "{name}");
    }
    // Renames keep the names intact too.
    vfs.rename(&p("/dir #1 %/a*b?c"), &p("/dir #1 %/ü b#2%"), false)
        .await
        .unwrap();
    assert_eq!(read_all(&vfs, "/dir #1 %/ü b#2%").await, b"a*b?c");
    vfs.rename(&p("/dir #1 %"), &p("/renamed ü%"), false)
        .await
        .unwrap();
    assert_eq!(read_all(&vfs, "/renamed ü%/#1").await, b"#1");
    assert_eq!(names(&vfs, "/renamed ü%").await.len(), special.len());
}

async fn homes_are_isolated(fx: Fixture) {
    for home in ["/alice", "/bob", "/partners/acme/inbound"] {
        let home = HomeDirectory::parse(home).unwrap();
        create_home(fx.raw.as_ref(), &home).await.unwrap();
        create_home(fx.raw.as_ref(), &home).await.unwrap();
    }
    let alice = fx.vfs("/alice", Permissions::ReadWrite);
    let bob = fx.vfs("/bob", Permissions::ReadWrite);
    let acme = fx.vfs("/partners/acme/inbound", Permissions::WriteOnly);
    assert!(names(&alice, "/").await.is_empty(), "a new home is empty");
    upload(&alice, "/x", b"alice's", 1024).await;
    upload(&bob, "/x", b"bob's", 1024).await;
    upload(&acme, "/order.edi", b"acme's", 1024).await;
    assert_eq!(read_all(&alice, "/x").await, b"alice's");
    assert_eq!(read_all(&bob, "/x").await, b"bob's");
    assert_eq!(names(&alice, "/").await, vec![file("x")]);
    // No way up: `..` stops at the home.
    assert_eq!(read_all(&alice, "/../bob/../x").await, b"alice's");
    assert_err!(alice.stat(&p("/../bob")).await, VfsError::NotFound);
    assert_err!(
        alice
            .open_read(&p("/../../partners/acme/inbound/order.edi"))
            .await,
        VfsError::NotFound
    );
    // Removing in one home leaves the other alone.
    alice.remove(&p("/x")).await.unwrap();
    assert_eq!(read_all(&bob, "/x").await, b"bob's");
    assert!(names(&alice, "/").await.is_empty(), "the home stays, empty");
    assert_err!(
        acme.open_read(&p("/order.edi")).await,
        VfsError::PermissionDenied(_)
    );

    // A root user sees every home.
    let root = fx.vfs("/", Permissions::ReadOnly);
    assert_eq!(
        names(&root, "/").await,
        vec![dir("alice"), dir("bob"), dir("partners")]
    );
    assert_eq!(
        read_all(&root, "/partners/acme/inbound/order.edi").await,
        b"acme's"
    );
    let mut keys = fx.keys().await;
    keys.retain(|k| !k.ends_with(DIRECTORY_MARKER));
    assert_eq!(keys, vec!["bob/x", "partners/acme/inbound/order.edi"]);
}

async fn bucket_check_reports_what_is_wrong(fx: Fixture) {
    const TIMEOUT: Duration = Duration::from_secs(10);
    check_bucket(&fx.storage, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("the fixture's bucket checks out: {e}"));

    // A bucket under a prefix checks out too (the prefix need not exist yet).
    let mut prefixed = fx.storage.clone();
    prefixed.url = format!("{}/some/prefix/", fx.storage.url);
    check_bucket(&prefixed, TIMEOUT).await.unwrap();

    // A bucket the server does not have.
    let mut missing = fx.storage.clone();
    missing.url = fx.storage.url.replace(BUCKET, "no-such-bucket");
    let error = check_bucket(&missing, TIMEOUT).await.unwrap_err();
    assert!(matches!(error, BucketError::Unreachable(_)), "{error:?}");
    eprintln!("{}: missing bucket: {error}", fx.name());

    // Wrong credentials.
    let mut wrong = fx.storage.clone();
    let secret = match fx.server {
        Server::S3(_) => "aws_secret_access_key",
        Server::Azure(_) => "azure_storage_access_key",
    };
    let wrong_secret = "V3JvbmdTZWNyZXRLZXlXcm9uZ1NlY3JldEtleQ==";
    wrong.options.insert(secret.into(), wrong_secret.into());
    let error = check_bucket(&wrong, TIMEOUT).await.unwrap_err();
    assert!(matches!(error, BucketError::Unreachable(_)), "{error:?}");
    assert!(!error.to_string().contains(wrong_secret), "{error}");
    eprintln!("{}: wrong key: {error}", fx.name());

    // Nothing listening: the cause, at once, not after retries.
    let mut closed = fx.storage.clone();
    let port = servers::free_port();
    let endpoint = match fx.server {
        Server::S3(_) => "aws_endpoint",
        Server::Azure(_) => "azure_storage_endpoint",
    };
    closed
        .options
        .insert(endpoint.into(), format!("http://127.0.0.1:{port}"));
    let started = Instant::now();
    let error = check_bucket(&closed, TIMEOUT).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let message = error.to_string();
    assert!(matches!(error, BucketError::Unreachable(_)), "{error:?}");
    assert!(
        message.to_lowercase().contains("connect") || message.contains("refused"),
        "the message names the cause: {message}"
    );
    for value in fx
        .storage
        .options
        .values()
        .filter(|v| v.len() > 8 && !v.starts_with("http"))
    {
        assert!(
            !message.contains(value.as_str()),
            "no option value in {message}"
        );
    }

    // Configuration errors are told apart from reachability.
    let mut unknown = fx.storage.clone();
    unknown.options.insert("aws_endpointt".into(), "x".into());
    assert!(matches!(
        check_bucket(&unknown, TIMEOUT).await,
        Err(BucketError::Option { ref key, .. }) if key == "aws_endpointt"
    ));
    let mut memory = fx.storage.clone();
    memory.url = "memory://".into();
    memory.options.clear();
    assert!(matches!(
        check_bucket(&memory, TIMEOUT).await,
        Err(BucketError::Url(_))
    ));
}

/// The environment of this machine sets `AWS_CA_BUNDLE` for other tools; Wharf's S3 client must
/// not care, whatever it points at. Checked in a child process of this test binary, so that
/// the variable can be set without racing other tests' threads.
#[test]
fn aws_ca_bundle_does_not_break_s3() {
    if std::env::var_os("WHARF_TEST_CA_BUNDLE_CHILD").is_some() {
        return ca_bundle_child();
    }
    let server = S3Server::start(&[BUCKET]);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "aws_ca_bundle_does_not_break_s3", "--nocapture"])
        .env("WHARF_TEST_CA_BUNDLE_CHILD", "1")
        .env("WHARF_TEST_S3_ENDPOINT", server.endpoint())
        .env("AWS_CA_BUNDLE", "/nonexistent/ca-bundle.pem")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 passed"));
    assert_eq!(server.keys(BUCKET), vec!["probe".to_owned()]);
}

fn ca_bundle_child() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let endpoint = std::env::var("WHARF_TEST_S3_ENDPOINT").unwrap();
        let mut options = std::collections::BTreeMap::new();
        options.insert("aws_endpoint".to_owned(), endpoint);
        options.insert(
            "aws_access_key_id".to_owned(),
            servers::S3_ACCESS_KEY.to_owned(),
        );
        options.insert(
            "aws_secret_access_key".to_owned(),
            servers::S3_SECRET_KEY.to_owned(),
        );
        let storage = storage(&format!("s3://{BUCKET}"), options);
        check_bucket(&storage, Duration::from_secs(10))
            .await
            .unwrap();
        let store = wharf_vfs::open_bucket(&storage).unwrap();
        store
            .put(
                &Path::from("probe"),
                object_store::PutPayload::from_static(b"ok"),
            )
            .await
            .unwrap();
    });
}

/// The two ways of reaching Azurite: the emulator switch with an endpoint (the fixture), and
/// an ordinary account name, key and endpoint, as for a real storage account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_account_options_work_like_the_emulator_switch() {
    let server = AzuriteServer::start(&[BUCKET]);
    let by_account = storage(&format!("az://{BUCKET}"), server.account_options());
    check_bucket(&by_account, Duration::from_secs(10))
        .await
        .unwrap();
    let vfs = vfs_on(
        wharf_vfs::open_bucket(&by_account).unwrap(),
        "/",
        Permissions::ReadWrite,
    );
    upload(&vfs, "/a.txt", b"by account", 1024).await;
    let by_emulator = storage(&format!("abfs://{BUCKET}"), server.emulator_options());
    let vfs = vfs_on(
        wharf_vfs::open_bucket(&by_emulator).unwrap(),
        "/",
        Permissions::ReadWrite,
    );
    assert_eq!(read_all(&vfs, "/a.txt").await, b"by account");
    assert_eq!(server.blob_names(BUCKET, false), vec!["a.txt".to_owned()]);
}

/// A directory bigger than one store page is listed page by page (each page one request of at
/// most 1000 keys), completely, without duplicates, with the marker hidden.
async fn large_directories_list_in_pages(fx: Fixture) {
    use futures::StreamExt;
    let bucket = wharf_vfs::StoreCache::new()
        .bucket(&fx.storage)
        .expect("open");
    assert!(bucket.pager.is_some(), "{} should list in pages", fx.name());
    let store = bucket.store.clone();
    let vfs = vfs_on(store.clone(), "/", Permissions::ReadWrite).with_list_pager(bucket.pager);
    vfs.mkdir(&wharf_vfs::VirtualPath::parse("/big").unwrap())
        .await
        .unwrap();
    const FILES: usize = 2100;
    let mut keys: Vec<Path> = (0..FILES)
        .map(|i| Path::from(format!("big/f-{i:05}")))
        .collect();
    for d in ["dir-a", "dir-b", "zz-dir"] {
        keys.push(Path::from(format!("big/{d}/inside.txt")));
    }
    futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            async move { store.put(&key, Bytes::from_static(b"x").into()).await }
        })
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.expect("put");
        })
        .await;

    let mut listing = vfs
        .list_pages(&wharf_vfs::VirtualPath::parse("/big").unwrap())
        .await
        .expect("list");
    let mut pages = 0;
    let mut names = Vec::new();
    let mut directories = 0;
    while let Some(page) = listing.next_page().await.expect("page") {
        pages += 1;
        assert!(page.len() <= 1000, "page of {}", page.len());
        for entry in page {
            if entry.kind == EntryKind::Directory {
                directories += 1;
            }
            names.push(entry.name);
        }
    }
    assert!(
        pages >= 3,
        "{} listed {FILES} files in {pages} page(s)",
        fx.name()
    );
    assert_eq!(names.len(), FILES + 3, "{}", fx.name());
    assert_eq!(directories, 3);
    assert!(!names.iter().any(|n| n == DIRECTORY_MARKER));
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicates in the listing");
    // The collected listing is the same entries.
    let all = vfs
        .list(&wharf_vfs::VirtualPath::parse("/big").unwrap())
        .await
        .unwrap();
    assert_eq!(all.len(), FILES + 3);
    // A missing directory is still NotFound, a file NotADirectory.
    assert!(matches!(
        vfs.list_pages(&wharf_vfs::VirtualPath::parse("/nope").unwrap())
            .await,
        Err(VfsError::NotFound)
    ));
    assert!(matches!(
        vfs.list_pages(&wharf_vfs::VirtualPath::parse("/big/f-00001").unwrap())
            .await,
        Err(VfsError::NotADirectory)
    ));
}

/// `list_from` pages of any size, each starting at the cursor of the previous one (the store's
/// `start-after`): every entry exactly once, in one order whatever the page size, directories
/// (whose keys the store lists again after their cursor) included.
async fn directories_are_listed_from_a_cursor(fx: Fixture) {
    use futures::StreamExt;
    let bucket = wharf_vfs::StoreCache::new()
        .bucket(&fx.storage)
        .expect("open");
    let store = bucket.store.clone();
    let vfs = vfs_on(store.clone(), "/", Permissions::ReadWrite).with_list_pager(bucket.pager);
    let dir = wharf_vfs::VirtualPath::parse("/big").unwrap();
    vfs.mkdir(&dir).await.unwrap();
    const FILES: usize = 1205;
    let mut keys: Vec<Path> = (0..FILES)
        .map(|i| Path::from(format!("big/f-{i:05}")))
        .collect();
    // Directories with several keys each, one sorting right after a file it starts with.
    for d in ["dir-a", "f-00007.d", "sub", "sub-"] {
        for i in 0..3 {
            keys.push(Path::from(format!("big/{d}/inside-{i}")));
        }
    }
    futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            async move { store.put(&key, Bytes::from_static(b"x").into()).await }
        })
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.expect("put");
        })
        .await;
    let expected = FILES + 4;
    let mut orders = Vec::new();
    for max in [1000, 100, 7] {
        let mut cursor: Option<String> = None;
        let mut names = Vec::new();
        loop {
            let page = vfs
                .list_from(&dir, cursor.as_deref(), max)
                .await
                .unwrap_or_else(|e| panic!("{} page of {max}: {e}", fx.name()));
            assert!(page.entries.len() <= max);
            names.extend(page.entries.into_iter().map(|e| (e.name, e.kind)));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(names.len(), expected, "{} max {max}", fx.name());
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            names.len(),
            "{} max {max}: duplicates",
            fx.name()
        );
        assert!(!names.iter().any(|(n, _)| n == DIRECTORY_MARKER));
        orders.push(names);
    }
    assert_eq!(orders[0], orders[1], "{}", fx.name());
    assert_eq!(orders[0], orders[2], "{}", fx.name());
    assert!(matches!(
        vfs.list_from(&wharf_vfs::VirtualPath::parse("/nope").unwrap(), None, 10)
            .await,
        Err(VfsError::NotFound)
    ));
}

/// A gateway killed in the middle of a large upload cannot abort it; the journal note it wrote
/// lets a later sweep (any process, after a restart) abort the upload and drop its parts.
async fn uploads_of_a_crashed_gateway_are_swept(fx: Fixture) {
    let bucket = wharf_vfs::StoreCache::with_orphan_age(None)
        .bucket(&fx.storage)
        .expect("open");
    assert!(bucket.uploads.is_some(), "{} journals uploads", fx.name());
    let journaled = |home: &str| {
        wharf_vfs::Vfs::on_bucket(
            &bucket,
            HomeDirectory::parse(home).unwrap(),
            Permissions::ReadWrite,
            vfs_on(fx.raw.clone(), "/", Permissions::ReadOnly)
                .identity()
                .clone(),
        )
    };
    let vfs = journaled("/");

    // A completed journaled upload: the file is there, no note, nothing pending.
    let data = pattern(PART_SIZE + 4321);
    let summary = upload(&vfs, "/whole.bin", &data, 128 * 1024).await;
    assert_eq!(summary.sha256, sha256_hex(&data));
    assert_eq!(read_all(&vfs, "/whole.bin").await, data);
    assert_eq!(fx.keys().await, vec!["whole.bin".to_owned()]);
    assert_eq!(fx.pending_uploads_settled().await, Vec::<String>::new());

    // A "crash": two parts sent, then neither commit nor abort nor drop.
    let mut crashed = vfs
        .create(&p("/crashed.bin"), CreateOptions::default())
        .await
        .unwrap();
    let data = pattern(2 * PART_SIZE + 1);
    for (i, piece) in data.chunks(256 * 1024).enumerate() {
        crashed
            .write((i * 256 * 1024) as u64, Bytes::copy_from_slice(piece))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::mem::forget(crashed);
    let keys = fx.keys().await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].starts_with(".wharf-uploads/"),
        "the upload is noted: {keys:?}"
    );
    if let Server::S3(server) = &fx.server {
        assert!(
            !server.pending_multipart_uploads().is_empty(),
            "the crashed upload's parts are on the server"
        );
    }
    assert_eq!(
        names(&vfs, "/").await,
        vec![file("whole.bin")],
        "users see neither the note nor the unfinished file"
    );

    // A sweep with a long threshold leaves it alone (it may be alive); a due one aborts it.
    let report = bucket
        .sweep_orphaned_uploads(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!((report.aborted, report.in_progress), (0, 1));
    let report = bucket.sweep_orphaned_uploads(Duration::ZERO).await.unwrap();
    assert_eq!((report.aborted, report.in_progress), (1, 0));
    assert_eq!(fx.keys().await, vec!["whole.bin".to_owned()]);
    assert_eq!(
        fx.pending_uploads_settled().await,
        Vec::<String>::new(),
        "the sweep removed the parts"
    );
    assert_eq!(read_all(&vfs, "/whole.bin").await.len(), PART_SIZE + 4321);
}
