//! The objects API: `GET …/objects` (paged listings), and `GET/PUT/DELETE …/objects/{key}`
//! (streamed downloads with ranges, streamed atomic uploads, deletes), its checks on keys, and
//! the events it records.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::buckets::servers;
use crate::common::{TestApp, TestDb, expect_problem};

crate::on_both_databases!(
    large_objects_round_trip_streamed,
    ranges_resume_downloads,
    listings_page_through_a_directory,
    uploads_create_parents_and_directories,
    hostile_keys_are_refused_naming_the_key,
    missing_things_and_directories,
    a_cut_upload_leaves_the_previous_version,
    uploads_are_recorded_as_api_events,
    objects_need_an_api_key,
    objects_on_an_s3_bucket,
    a_file_without_a_body_length_is_refused,
);

const OBJECTS: &str = "/v1/buckets/default/objects";

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::fill(&mut data[..]);
    data
}

/// A PUT with its `Content-Length`, which hyper leaves out for an empty body (and the API
/// then refuses with 411, as S3 does).
async fn put(app: &TestApp, key: &str, body: Vec<u8>) -> reqwest::Response {
    app.http
        .put(app.url(&format!("{OBJECTS}/{key}")))
        .bearer_auth(&app.key)
        .header(reqwest::header::CONTENT_LENGTH, body.len())
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Uploads `body` to `key` and returns the reply, which must have `status`.
async fn put_ok(app: &TestApp, key: &str, body: Vec<u8>, status: u16) -> Value {
    let response = put(app, key, body).await;
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "PUT {key}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn get_bytes(app: &TestApp, key: &str) -> Vec<u8> {
    let response = app.get(&format!("{OBJECTS}/{key}")).await;
    assert_eq!(response.status(), 200, "GET {key}");
    response.bytes().await.unwrap().to_vec()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("{OBJECTS}{query}")).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "list {query}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Every page of `prefix` with `page_size`: the items and the number of pages.
async fn list_all(app: &TestApp, prefix: &str, page_size: u32) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let mut query = format!("?prefix={prefix}&pageSize={page_size}");
        if let Some(token) = &token {
            query.push_str(&format!("&pageToken={token}"));
        }
        let page = list(app, &query).await;
        pages += 1;
        let page_items = page["items"].as_array().unwrap();
        assert!(page_items.len() <= page_size as usize, "{page}");
        items.extend(page_items.iter().cloned());
        match page["nextPageToken"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 1000, "the listing does not end");
    }
    (items, pages)
}

/// One request on its own connection, sent byte for byte (no URL normalisation, unlike an
/// HTTP client): returns the status and the body.
async fn raw_request(app: &TestApp, method: &str, target: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: wharf.test\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        app.key,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn large_objects_round_trip_streamed(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // 20 MiB: far above the 1 MiB limit of JSON bodies.
    let data = random_bytes(20 * 1024 * 1024);
    let created = put_ok(&app, "alice/in/big.bin", data.clone(), 201).await;
    assert_eq!(created["key"], "alice/in/big.bin");
    assert_eq!(created["name"], "big.bin");
    assert_eq!(created["kind"], "file");
    assert_eq!(created["size"], data.len() as u64);
    assert_eq!(created["sha256"], sha256(&data));
    assert!(created["lastModified"].is_string(), "{created}");

    let response = app.get(&format!("{OBJECTS}/alice/in/big.bin")).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-length"], data.len().to_string());
    assert_eq!(headers["accept-ranges"], "bytes");
    assert!(headers.contains_key("last-modified"));
    let etag = headers["etag"].to_str().unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let body = response.bytes().await.unwrap();
    assert_eq!(sha256(&body), sha256(&data));

    // Replacing it is a 200 with the new content's checksum.
    let smaller = random_bytes(3000);
    let replaced = put_ok(&app, "alice/in/big.bin", smaller.clone(), 200).await;
    assert_eq!(replaced["sha256"], sha256(&smaller));
    assert_eq!(get_bytes(&app, "alice/in/big.bin").await, smaller);
    // An empty object.
    let empty = put_ok(&app, "alice/in/empty", Vec::new(), 201).await;
    assert_eq!(empty["size"], 0);
    assert!(get_bytes(&app, "alice/in/empty").await.is_empty());
    // HEAD tells the size without the body.
    let head = app
        .http
        .head(app.url(&format!("{OBJECTS}/alice/in/big.bin")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "3000");
    // Names with characters that need encoding in URLs round-trip.
    let odd = "alice/in/odd name #1 %.txt";
    let url = format!("{OBJECTS}/alice/in/odd%20name%20%231%20%25.txt");
    let response = app
        .http
        .put(app.url(&url))
        .bearer_auth(&app.key)
        .body("odd")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["key"], odd);
    let response = app.get(&url).await;
    assert_eq!(response.text().await.unwrap(), "odd");
    let listed = list(&app, "?prefix=alice/in").await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert!(names.contains(&odd), "{listed}");
}

async fn ranges_resume_downloads(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let data = random_bytes(3 * 1024 * 1024 + 17);
    put_ok(&app, "r.bin", data.clone(), 201).await;
    let ranged = |range: &'static str| {
        let request = app
            .http
            .get(app.url(&format!("{OBJECTS}/r.bin")))
            .bearer_auth(&app.key)
            .header("Range", range);
        async move { request.send().await.unwrap() }
    };
    let size = data.len();
    for (range, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=1048570-2097160", 1_048_570, 2_097_160),
        ("bytes=3000000-", 3_000_000, size - 1),
        ("bytes=-100", size - 100, size - 1),
        ("bytes=100-99999999", 100, size - 1),
    ] {
        let response = ranged(range).await;
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {start}-{end}/{size}"),
            "{range}"
        );
        assert_eq!(
            response.headers()["content-length"],
            (end - start + 1).to_string()
        );
        let body = response.bytes().await.unwrap();
        assert_eq!(&body[..], &data[start..=end], "{range}");
    }
    let response = ranged("bytes=99999999-").await;
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes */{size}")
    );
    expect_problem(response, 416, None).await;
    // Several ranges are not served: the whole object is.
    let response = ranged("bytes=0-1,5-6").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), size);
    // If-Range: the range only if the version is the same.
    let etag = app.get(&format!("{OBJECTS}/r.bin")).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let conditional = |condition: String| {
        let request = app
            .http
            .get(app.url(&format!("{OBJECTS}/r.bin")))
            .bearer_auth(&app.key)
            .header("Range", "bytes=0-9")
            .header("If-Range", condition);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(conditional(etag.clone()).await.status(), 206);
    assert_eq!(conditional("\"other\"".into()).await.status(), 200);
}

async fn listings_page_through_a_directory(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // 250 files and 2 directories, written straight into the local bucket.
    let dir = app.bucket_dir().join("many");
    std::fs::create_dir_all(dir.join("sub-a")).unwrap();
    std::fs::create_dir_all(dir.join("sub-b")).unwrap();
    std::fs::write(dir.join("sub-a/inside.txt"), b"in").unwrap();
    std::fs::write(dir.join("sub-b/.wharf-dir"), b"").unwrap();
    for i in 0..250 {
        std::fs::write(dir.join(format!("file-{i:03}.edi")), format!("{i}")).unwrap();
    }
    let expected = 252;
    for prefix in ["many", "many/"] {
        let (items, pages) = list_all(&app, prefix, 100).await;
        assert_eq!(pages, 3, "{prefix}");
        let keys: Vec<&str> = items.iter().map(|i| i["key"].as_str().unwrap()).collect();
        let unique: BTreeSet<&str> = keys.iter().copied().collect();
        assert_eq!(keys.len(), expected, "{prefix}: {keys:?}");
        assert_eq!(unique.len(), expected, "{prefix}: every name exactly once");
        assert!(unique.contains("many/file-000.edi") && unique.contains("many/file-249.edi"));
        // Nothing hidden shows.
        assert!(!keys.iter().any(|k| k.contains(".wharf")), "{keys:?}");
        let sub = items.iter().find(|i| i["key"] == "many/sub-a").unwrap();
        assert_eq!(sub["kind"], "directory");
        assert_eq!(sub["name"], "sub-a");
        assert_eq!(sub["size"], 0);
        let file = items
            .iter()
            .find(|i| i["key"] == "many/file-123.edi")
            .unwrap();
        assert_eq!(file["kind"], "file");
        assert_eq!(file["size"], 3);
        assert_eq!(file["name"], "file-123.edi");
        assert!(file["lastModified"].is_string());
        assert!(file.get("sha256").is_none(), "{file}");
    }
    // The default page size is 100; the same order whatever the page size.
    let first = list(&app, "?prefix=many").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 100);
    assert!(first["nextPageToken"].is_string());
    let (small_pages, pages) = list_all(&app, "many", 7).await;
    assert_eq!(pages, expected.div_ceil(7));
    let (one_page, pages) = list_all(&app, "many", 1000).await;
    assert_eq!(pages, 1);
    assert_eq!(small_pages, one_page);
    // A token carries on after its entry even when entries come and go.
    let token = first["nextPageToken"].as_str().unwrap().to_owned();
    std::fs::write(dir.join("aaa-first.edi"), b"new").unwrap();
    let second = list(&app, &format!("?prefix=many&pageToken={token}")).await;
    assert_eq!(
        second["items"][0], one_page[100],
        "the second page starts where the first ended"
    );
    // The root lists the top level; a nested prefix its own level.
    let root = list(&app, "").await;
    assert!(
        root["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["key"] == "many" && i["kind"] == "directory"),
        "{root}"
    );
    assert_eq!(list(&app, "?prefix=/").await["items"], root["items"]);
    let nested = list(&app, "?prefix=many/sub-a").await;
    assert_eq!(nested["items"].as_array().unwrap().len(), 1);
    assert_eq!(nested["items"][0]["key"], "many/sub-a/inside.txt");
    assert!(nested.get("nextPageToken").is_none());
    let empty = list(&app, "?prefix=many/sub-b/").await;
    assert_eq!(empty["items"], serde_json::json!([]));

    // Bad parameters are 400s naming them; a missing directory is a 404.
    for (query, field) in [
        ("?pageSize=0", "pageSize"),
        ("?pageSize=1001", "pageSize"),
        ("?pageSize=x", "pageSize"),
        ("?pageToken=!!!", "pageToken"),
        ("?prefix=many&pageToken=AAAA", "pageToken"),
        ("?prefix=a//b", "prefix"),
        ("?prefix=../many", "prefix"),
        ("?prefix=many/file-001.edi", "prefix"),
    ] {
        let response = app.get(&format!("{OBJECTS}{query}")).await;
        expect_problem(response, 400, Some(field)).await;
    }
    let response = app.get(&format!("{OBJECTS}?prefix=nowhere")).await;
    let problem = expect_problem(response, 404, None).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("nowhere"),
        "{problem}"
    );
}

async fn uploads_create_parents_and_directories(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // Parents are created as S3 users expect, each a directory that persists.
    put_ok(&app, "p/q/r/s.edi", b"deep".to_vec(), 201).await;
    assert_eq!(get_bytes(&app, "p/q/r/s.edi").await, b"deep");
    for dir in ["p", "p/q", "p/q/r"] {
        assert!(
            app.bucket_dir().join(dir).join(".wharf-dir").is_file(),
            "{dir} has a marker"
        );
    }
    let listed = list(&app, "?prefix=p/q").await;
    assert_eq!(listed["items"][0]["key"], "p/q/r");
    assert_eq!(listed["items"][0]["kind"], "directory");
    // A file in the way of a parent is a conflict.
    let response = put(&app, "p/q/r/s.edi/t", b"x".to_vec()).await;
    expect_problem(response, 409, None).await;
    // A directory cannot be overwritten by a file.
    let response = put(&app, "p/q", b"x".to_vec()).await;
    expect_problem(response, 409, None).await;

    // A key ending in '/' with no body makes a directory; again, it is there already.
    let created = put_ok(&app, "folders/new/", Vec::new(), 201).await;
    assert_eq!(created["key"], "folders/new");
    assert_eq!(created["kind"], "directory");
    let again = put_ok(&app, "folders/new/", Vec::new(), 200).await;
    assert_eq!(again["kind"], "directory");
    let listed = list(&app, "?prefix=folders/new").await;
    assert_eq!(listed["items"], serde_json::json!([]));
    let response = put(&app, "folders/other/", b"not empty".to_vec()).await;
    expect_problem(response, 400, Some("body")).await;
    let response = put(&app, "p/q/r/s.edi/", Vec::new()).await;
    expect_problem(response, 409, None).await;

    // Both new directories were reported.
    let events = app
        .get("/v1/events?type=directory.created&pageSize=100")
        .await
        .json::<Value>()
        .await
        .unwrap();
    let keys: BTreeSet<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["key"].as_str().unwrap())
        .collect();
    for key in ["p", "p/q", "p/q/r", "folders", "folders/new"] {
        assert!(keys.contains(key), "{key} in {keys:?}");
    }
}

async fn hostile_keys_are_refused_naming_the_key(db: TestDb) {
    let app = TestApp::spawn(db).await;
    put_ok(&app, "safe/x", b"safe".to_vec(), 201).await;
    let long = "k".repeat(5000);
    let long_name = format!("a/{}", "n".repeat(256));
    let targets = [
        "../x".to_owned(),
        "%2e%2e/x".to_owned(),
        "%2E%2E%2Fx".to_owned(),
        "safe/../../x".to_owned(),
        "a//b".to_owned(),
        "a/./b".to_owned(),
        "/x".to_owned(),
        ".wharf-uploads/x".to_owned(),
        "safe/.wharf-dir".to_owned(),
        "a%00b".to_owned(),
        "a%0Ab".to_owned(),
        "a%5Cb".to_owned(),
        long,
        long_name,
    ];
    for target in &targets {
        for method in ["GET", "PUT", "DELETE"] {
            let (status, body) = raw_request(
                &app,
                method,
                &format!("{OBJECTS}/{target}"),
                if method == "PUT" { b"evil" } else { b"" },
            )
            .await;
            assert_eq!(status, 400, "{method} {target}: {body}");
            let problem: Value = serde_json::from_str(&body).unwrap();
            assert!(
                problem["errors"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["field"] == "key")),
                "{method} {target}: {problem}"
            );
        }
    }
    // Nothing was written anywhere, the safe file is untouched.
    assert_eq!(get_bytes(&app, "safe/x").await, b"safe");
    let mut files = Vec::new();
    let mut pending = vec![app.data_dir.path().to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else if std::fs::read(entry.path()).unwrap() == b"evil" {
                files.push(entry.path());
            }
        }
    }
    assert!(files.is_empty(), "written: {files:?}");
}

async fn missing_things_and_directories(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // Unknown bucket: 404 everywhere.
    for response in [
        app.get("/v1/buckets/no-such-bucket/objects").await,
        app.get("/v1/buckets/no-such-bucket/objects/x").await,
        app.delete("/v1/buckets/no-such-bucket/objects/x").await,
        app.http
            .put(app.url("/v1/buckets/no-such-bucket/objects/x"))
            .bearer_auth(&app.key)
            .body("x")
            .send()
            .await
            .unwrap(),
    ] {
        let problem = expect_problem(response, 404, None).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("bucket"),
            "{problem}"
        );
    }
    // Unknown object.
    expect_problem(app.get(&format!("{OBJECTS}/nope.edi")).await, 404, None).await;
    expect_problem(app.delete(&format!("{OBJECTS}/nope.edi")).await, 404, None).await;

    // A directory: GET is a 400; DELETE of a non-empty one a 409, of an empty one a 204.
    put_ok(&app, "d/sub/file.edi", b"1".to_vec(), 201).await;
    put_ok(&app, "d/other.edi", b"2".to_vec(), 201).await;
    let problem = expect_problem(app.get(&format!("{OBJECTS}/d")).await, 400, Some("key")).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("is a directory"),
        "{problem}"
    );
    expect_problem(app.get(&format!("{OBJECTS}/d/")).await, 400, Some("key")).await;
    expect_problem(app.delete(&format!("{OBJECTS}/d")).await, 409, None).await;
    expect_problem(
        app.delete(&format!("{OBJECTS}/d?recursive=false")).await,
        409,
        None,
    )
    .await;
    expect_problem(
        app.delete(&format!("{OBJECTS}/d?recursive=maybe")).await,
        400,
        Some("recursive"),
    )
    .await;
    let response = app.delete(&format!("{OBJECTS}/d/sub/file.edi")).await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        app.get(&format!("{OBJECTS}/d/sub/file.edi")).await.status(),
        404
    );
    let response = app.delete(&format!("{OBJECTS}/d/sub/")).await;
    assert_eq!(response.status(), 204);
    let listed = list(&app, "?prefix=d").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    // A file named with a trailing '/' is not a directory.
    expect_problem(
        app.delete(&format!("{OBJECTS}/d/other.edi/")).await,
        404,
        None,
    )
    .await;

    // Recursive: the whole tree goes, each file reported.
    put_ok(&app, "tree/a/b/c.edi", b"c".to_vec(), 201).await;
    put_ok(&app, "tree/a/d.edi", b"d".to_vec(), 201).await;
    put_ok(&app, "tree/e/", Vec::new(), 201).await;
    let response = app.delete(&format!("{OBJECTS}/tree?recursive=true")).await;
    assert_eq!(response.status(), 204);
    expect_problem(app.get(&format!("{OBJECTS}?prefix=tree")).await, 404, None).await;
    assert!(!app.bucket_dir().join("tree").exists());
    let deleted = app
        .get("/v1/events?type=file.deleted&pageSize=100")
        .await
        .json::<Value>()
        .await
        .unwrap();
    let keys: BTreeSet<&str> = deleted["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["d/sub/file.edi", "tree/a/b/c.edi", "tree/a/d.edi"])
    );
}

async fn a_cut_upload_leaves_the_previous_version(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let previous = random_bytes(100_000);
    put_ok(&app, "in/keep.bin", previous.clone(), 201).await;

    // A client announces 12 MiB, sends 9 MiB, and goes away.
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "PUT {OBJECTS}/in/keep.bin HTTP/1.1\r\nHost: wharf.test\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\n\r\n",
        app.key,
        12 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let partial = random_bytes(9 * 1024 * 1024);
    for chunk in partial.chunks(256 * 1024) {
        stream.write_all(chunk).await.unwrap();
    }
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While it is under way, readers see the previous version.
    assert_eq!(get_bytes(&app, "in/keep.bin").await, previous);
    drop(stream);

    // The upload is aborted: the previous version stays, nothing is left behind, and the
    // failure is an event.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let failed = app
            .get("/v1/events?type=file.upload_failed")
            .await
            .json::<Value>()
            .await
            .unwrap();
        if let Some(event) = failed["items"].as_array().unwrap().first() {
            assert_eq!(event["data"]["key"], "in/keep.bin");
            assert_eq!(event["data"]["protocol"], "api");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no file.upload_failed event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get_bytes(&app, "in/keep.bin").await, previous);
    let mut leftovers = Vec::new();
    for _ in 0..50 {
        leftovers = std::fs::read_dir(app.bucket_dir().join("in"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains('#'))
            .collect();
        if leftovers.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(leftovers.is_empty(), "staging files left: {leftovers:?}");
    let listed = list(&app, "?prefix=in").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["items"][0]["size"], previous.len() as u64);
    // No file.created for the cut upload: only the first one.
    let created = app
        .get("/v1/events?type=file.created")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(created["items"].as_array().unwrap().len(), 1, "{created}");
}

async fn uploads_are_recorded_as_api_events(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let data = random_bytes(1_500_000);
    let reply = app
        .http
        .put(app.url(&format!("{OBJECTS}/alice/in/x.edi")))
        .bearer_auth(&app.key)
        .header("x-request-id", "req-objects-1")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let events = app
        .get("/v1/events?type=file.created&bucketName=default&prefix=alice/in/")
        .await
        .json::<Value>()
        .await
        .unwrap();
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    let event = &items[0];
    assert_eq!(event["type"], "file.created");
    let event_data = &event["data"];
    assert_eq!(event_data["bucketName"], "default");
    assert_eq!(event_data["key"], "alice/in/x.edi");
    assert_eq!(event_data["size"], data.len() as u64);
    assert_eq!(event_data["sha256"], sha256(&data));
    assert_eq!(event_data["protocol"], "api");
    assert_eq!(event_data["username"], "wharf-api");
    assert_eq!(event_data["sessionId"], "req-objects-1");
    assert_eq!(event_data["clientIp"], "127.0.0.1");
    // Filterable by the API's username like any other.
    let by_user = app
        .get("/v1/events?username=wharf-api&type=file.created")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(by_user["items"].as_array().unwrap().len(), 1);
    // A delete is reported too.
    assert_eq!(
        app.delete(&format!("{OBJECTS}/alice/in/x.edi"))
            .await
            .status(),
        204
    );
    let deleted = app
        .get("/v1/events?type=file.deleted")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(deleted["items"][0]["data"]["key"], "alice/in/x.edi");
    assert_eq!(deleted["items"][0]["data"]["protocol"], "api");
}

async fn objects_need_an_api_key(db: TestDb) {
    let app = TestApp::spawn(db).await;
    put_ok(&app, "secret.edi", b"secret".to_vec(), 201).await;
    let url = app.url(&format!("{OBJECTS}/secret.edi"));
    for request in [
        app.http.get(app.url(OBJECTS)),
        app.http.get(&url),
        app.http.put(&url).body("overwritten"),
        app.http.delete(&url),
        app.http.get(&url).bearer_auth("wrong-key"),
    ] {
        let response = request.send().await.unwrap();
        expect_problem(response, 401, None).await;
    }
    assert_eq!(get_bytes(&app, "secret.edi").await, b"secret");
}

/// The same API on a bucket in S3 (s3s-fs): multipart uploads, ranged reads and listings paged
/// with the store's `start-after`.
async fn objects_on_an_s3_bucket(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let s3 = servers::S3Server::start(&["acme-files"]);
    let response = app
        .post(
            "/v1/buckets",
            &serde_json::json!({
                "bucketName": "acme",
                "storageUrl": "s3://acme-files/wharf/",
                "options": s3.options(),
            }),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let objects = "/v1/buckets/acme/objects";
    let put_to = |key: String, body: Vec<u8>| {
        let request = app
            .http
            .put(app.url(&format!("{objects}/{key}")))
            .bearer_auth(&app.key)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let reply: Value = response.json().await.unwrap();
            (status, reply)
        }
    };

    // 20 MiB: a multipart upload of three parts.
    let data = random_bytes(20 * 1024 * 1024);
    let (status, reply) = put_to("in/big.bin".into(), data.clone()).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["sha256"], sha256(&data));
    assert!(
        s3.keys("acme-files")
            .contains(&"wharf/in/big.bin".to_owned()),
        "{:?}",
        s3.keys("acme-files")
    );
    let response = app.get(&format!("{objects}/in/big.bin")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(sha256(&response.bytes().await.unwrap()), sha256(&data));
    let response = app
        .http
        .get(app.url(&format!("{objects}/in/big.bin")))
        .bearer_auth(&app.key)
        .header("Range", "bytes=9000000-9000099")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        &response.bytes().await.unwrap()[..],
        &data[9_000_000..9_000_100]
    );

    // 120 files and a directory, listed 50 at a time.
    futures::future::join_all(
        (0..120).map(|i| put_to(format!("in/f-{i:03}.edi"), format!("{i}").into_bytes())),
    )
    .await
    .into_iter()
    .for_each(|(status, reply)| assert_eq!(status, 201, "{reply}"));
    let (status, reply) = put_to("in/sub/".into(), Vec::new()).await;
    assert_eq!(status, 201, "{reply}");
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = format!("{objects}?prefix=in&pageSize=50");
        if let Some(token) = &token {
            query.push_str(&format!("&pageToken={token}"));
        }
        let page: Value = app.get(&query).await.json().await.unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            keys.push(item["key"].as_str().unwrap().to_owned());
        }
        match page["nextPageToken"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(keys.len(), 122, "{keys:?}");
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 122);
    assert!(keys.contains(&"in/sub".to_owned()) && keys.contains(&"in/big.bin".to_owned()));

    // Everything goes with a recursive delete.
    let response = app.delete(&format!("{objects}/in?recursive=true")).await;
    assert_eq!(response.status(), 204);
    assert_eq!(s3.keys("acme-files"), Vec::<String>::new());
}

/// Over HTTP/1.1, a PUT of a file with neither `Content-Length` nor chunked encoding has no
/// body: most likely a client that forgot it. It is a 411, and the file is left as it was; an
/// explicit `Content-Length: 0` creates an empty file.
async fn a_file_without_a_body_length_is_refused(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = put(&app, "keep.txt", b"keep me".to_vec()).await;
    assert_eq!(created.status().as_u16(), 201);
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "PUT {OBJECTS}/keep.txt HTTP/1.1\r\nHost: wharf.test\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\n\r\n",
        app.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 411"), "{reply}");
    assert!(reply.contains("length-required"), "{reply}");
    let kept = app.get(&format!("{OBJECTS}/keep.txt")).await;
    assert_eq!(kept.bytes().await.unwrap().as_ref(), b"keep me");
    let (status, _) = raw_request(&app, "PUT", &format!("{OBJECTS}/empty.txt"), b"").await;
    assert_eq!(status, 201);
}
