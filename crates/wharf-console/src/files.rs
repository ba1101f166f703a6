//! Files: browse a bucket (or a user's home in it), download, upload from the browser
//! (streamed through to the objects API), delete, create folders.

use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use futures::SinkExt;
use futures::channel::mpsc;
use http::Method;
use serde::Deserialize;
use wharf_core::api::BucketList;

use crate::api::{self, Failure, enc, enc_key};
use crate::session::{CheckedForm, Session};
use crate::views::{Chrome, render, size, time};
use crate::{Shared, failure_page, see_other, signed_out};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/ui/files", get(browse))
        .route("/ui/files/download", get(download))
        .route(
            "/ui/files/upload",
            // Streamed to the store: no size limit here; the store and the objects API decide.
            post(upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/ui/files/delete", post(delete))
        .route("/ui/files/folder", post(create_folder))
}

/// One entry of `GET /v1/buckets/{bucketName}/objects`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    last_modified: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    items: Vec<Object>,
    #[serde(default)]
    next_page_token: Option<String>,
}

pub(crate) struct Crumb {
    pub name: String,
    pub url: String,
}

pub(crate) struct EntryRow {
    pub name: String,
    pub key: String,
    pub is_dir: bool,
    /// Folder: where it opens; file: its download link.
    pub url: String,
    pub size: String,
    pub modified: String,
}

#[derive(Template)]
#[template(path = "files.html")]
struct FilesPage {
    title: String,
    chrome: Chrome,
    buckets: Vec<String>,
    bucket: String,
    /// The folder shown, as a key prefix without leading or trailing `/` (empty: the root).
    path: String,
    crumbs: Vec<Crumb>,
    rows: Vec<EntryRow>,
    next_url: String,
    error: String,
}

#[derive(Deserialize)]
struct BrowseQuery {
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    path: String,
    #[serde(default, rename = "pageToken")]
    page_token: String,
    #[serde(default)]
    notice: String,
    #[serde(default)]
    name: String,
}

/// `a/b/` or `/a/b` → `a/b`.
fn clean_path(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

fn folder_url(bucket: &str, path: &str) -> String {
    format!("/ui/files?bucket={}&path={}", enc(bucket), enc(path))
}

async fn browse(
    State(console): State<Shared>,
    session: Session,
    Query(query): Query<BrowseQuery>,
) -> Response {
    let buckets: BucketList = match console
        .api
        .json(&session.key, Method::GET, "/v1/buckets", None)
        .await
    {
        Ok(b) => b,
        Err(failure) => return failure_page(&session, "files", failure),
    };
    let bucket = if query.bucket.is_empty() {
        buckets
            .items
            .iter()
            .find(|b| b.is_default)
            .or(buckets.items.first())
            .map(|b| b.bucket_name.to_string())
            .unwrap_or_default()
    } else {
        query.bucket.clone()
    };
    let path = clean_path(&query.path);
    let mut uri = format!(
        "/v1/buckets/{}/objects?pageSize=200&prefix={}",
        enc(&bucket),
        enc(&path)
    );
    if !query.page_token.is_empty() {
        uri.push_str(&format!("&pageToken={}", enc(&query.page_token)));
    }
    let (rows, next, error) = match console
        .api
        .json::<ObjectList>(&session.key, Method::GET, &uri, None)
        .await
    {
        Ok(list) => (list.items, list.next_page_token, String::new()),
        Err(Failure::SignedOut) => return signed_out(),
        Err(Failure::Problem(p)) => (
            Vec::new(),
            None,
            format!("{}: {}", p.title, p.detail.unwrap_or_default()),
        ),
    };
    let mut crumbs = vec![Crumb {
        name: bucket.clone(),
        url: folder_url(&bucket, ""),
    }];
    let mut so_far = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if !so_far.is_empty() {
            so_far.push('/');
        }
        so_far.push_str(segment);
        crumbs.push(Crumb {
            name: segment.to_owned(),
            url: folder_url(&bucket, &so_far),
        });
    }
    let rows = rows
        .into_iter()
        .map(|o| {
            let key = o.key.trim_end_matches('/').to_owned();
            let name = if o.name.is_empty() {
                key.rsplit('/').next().unwrap_or_default().to_owned()
            } else {
                o.name.trim_end_matches('/').to_owned()
            };
            let is_dir = o.kind == "directory";
            EntryRow {
                url: if is_dir {
                    folder_url(&bucket, &key)
                } else {
                    format!(
                        "/ui/files/download?bucket={}&key={}",
                        enc(&bucket),
                        enc(&key)
                    )
                },
                size: if is_dir { String::new() } else { size(o.size) },
                modified: time(o.last_modified, ""),
                name,
                key,
                is_dir,
            }
        })
        .collect();
    let notice = match query.notice.as_str() {
        "uploaded" => format!("Uploaded {}.", query.name),
        "deleted" => format!("Deleted {}.", query.name),
        "folder" => format!("Created folder {}.", query.name),
        _ => String::new(),
    };
    render(&FilesPage {
        title: "Files".into(),
        chrome: Chrome::new("files", &session).with_notice(notice),
        buckets: buckets
            .items
            .iter()
            .map(|b| b.bucket_name.to_string())
            .collect(),
        next_url: next
            .map(|t| format!("{}&pageToken={}", folder_url(&bucket, &path), enc(&t)))
            .unwrap_or_default(),
        bucket,
        path,
        crumbs,
        rows,
        error,
    })
}

#[derive(Deserialize)]
struct ObjectQuery {
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    key: String,
}

/// Streams an object to the browser as an attachment: never rendered in the console's
/// origin, whatever it contains.
async fn download(
    State(console): State<Shared>,
    session: Session,
    headers: HeaderMap,
    Query(query): Query<ObjectQuery>,
) -> Response {
    let uri = format!(
        "/v1/buckets/{}/objects/{}",
        enc(&query.bucket),
        enc_key(&query.key)
    );
    let mut forward = HeaderMap::new();
    for name in [header::RANGE, header::IF_RANGE] {
        if let Some(value) = headers.get(&name) {
            forward.insert(name, value.clone());
        }
    }
    let response = console
        .api
        .send(&session.key, Method::GET, &uri, Body::empty(), forward)
        .await;
    let response = match api::check(response).await {
        Ok(response) => response,
        Err(failure) => return failure_page(&session, "files", failure),
    };
    let (parts, body) = response.into_parts();
    let mut out = Response::new(body);
    *out.status_mut() = parts.status;
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::ACCEPT_RANGES,
        header::ETAG,
        header::LAST_MODIFIED,
    ] {
        if let Some(value) = parts.headers.get(&name) {
            out.headers_mut().insert(name, value.clone());
        }
    }
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let name = query.key.rsplit('/').next().unwrap_or("download");
    if let Ok(value) = HeaderValue::from_str(&content_disposition(name)) {
        out.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    out.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out
}

/// `attachment` with an ASCII fallback name and the exact UTF-8 one (RFC 6266).
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        enc(name)
    )
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    csrf: String,
}

/// Only the last segment of what the browser calls the file (some send a whole path).
fn upload_name(filename: &str) -> String {
    filename
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A multipart form with one or more files, each streamed into `PUT …/objects/{key}` as it
/// arrives: nothing is buffered whole, and a browser that goes away aborts the upload (the
/// previous version stays).
async fn upload(
    State(console): State<Shared>,
    session: Session,
    headers: HeaderMap,
    Query(query): Query<UploadQuery>,
    mut multipart: Multipart,
) -> Response {
    if let Err(refused) = session.verify(&headers, Some(&query.csrf)) {
        return refused.into_response();
    }
    let path = clean_path(&query.path);
    let mut uploaded = Vec::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                return failure_page(
                    &session,
                    "files",
                    Failure::problem(StatusCode::BAD_REQUEST, "Upload failed", e.body_text()),
                );
            }
        };
        let Some(filename) = field.file_name().map(upload_name) else {
            continue;
        };
        if filename.is_empty() {
            // The form was sent without choosing a file.
            continue;
        }
        let key = if path.is_empty() {
            filename.clone()
        } else {
            format!("{path}/{filename}")
        };
        let uri = format!(
            "/v1/buckets/{}/objects/{}",
            enc(&query.bucket),
            enc_key(&key)
        );
        let (mut tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let pump = async {
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        if tx.send(Ok(chunk)).await.is_err() {
                            // The API stopped reading (it refused the upload).
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The browser went away: fail the body so the upload is aborted.
                        let _ = tx.send(Err(std::io::Error::other(e.body_text()))).await;
                        break;
                    }
                }
            }
            drop(tx);
        };
        let mut forward = HeaderMap::new();
        forward.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        // A streamed body of a length not known yet, as the API asks of HTTP/1 requests.
        forward.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let put = console.api.send(
            &session.key,
            Method::PUT,
            &uri,
            Body::from_stream(rx),
            forward,
        );
        let ((), response) = tokio::join!(pump, put);
        if let Err(failure) = api::check(response).await {
            return failure_page(&session, "files", failure);
        }
        uploaded.push(filename);
    }
    if uploaded.is_empty() {
        return failure_page(
            &session,
            "files",
            Failure::problem(
                StatusCode::BAD_REQUEST,
                "No file",
                "Choose one or more files to upload.",
            ),
        );
    }
    see_other(&format!(
        "{}&notice=uploaded&name={}",
        folder_url(&query.bucket, &path),
        enc(&uploaded.join(", "))
    ))
}

async fn delete(
    State(console): State<Shared>,
    CheckedForm {
        session,
        fields: form,
    }: CheckedForm,
) -> Response {
    let bucket = form.get("bucket");
    let key = clean_path(form.get("key"));
    let uri = format!("/v1/buckets/{}/objects/{}", enc(bucket), enc_key(&key));
    match console
        .api
        .call(&session.key, Method::DELETE, &uri, None)
        .await
    {
        Ok(()) => {
            let parent = key.rsplit_once('/').map(|(p, _)| p).unwrap_or_default();
            let name = key.rsplit('/').next().unwrap_or_default();
            see_other(&format!(
                "{}&notice=deleted&name={}",
                folder_url(bucket, parent),
                enc(name)
            ))
        }
        Err(failure) => failure_page(&session, "files", failure),
    }
}

async fn create_folder(
    State(console): State<Shared>,
    CheckedForm {
        session,
        fields: form,
    }: CheckedForm,
) -> Response {
    let bucket = form.get("bucket");
    let path = clean_path(form.get("path"));
    let name = form.get("name").trim();
    if name.is_empty() || name.contains('/') {
        return failure_page(
            &session,
            "files",
            Failure::problem(
                StatusCode::BAD_REQUEST,
                "Bad folder name",
                "A folder name is one non-empty path segment, without '/'.",
            ),
        );
    }
    let key = if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}/{name}")
    };
    let uri = format!("/v1/buckets/{}/objects/{}/", enc(bucket), enc_key(&key));
    let response = console
        .api
        .send(
            &session.key,
            Method::PUT,
            &uri,
            Body::empty(),
            HeaderMap::new(),
        )
        .await;
    match api::check(response).await {
        Ok(_) => see_other(&format!(
            "{}&notice=folder&name={}",
            folder_url(bucket, &path),
            enc(name)
        )),
        Err(failure) => failure_page(&session, "files", failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(clean_path("/a//b/"), "a/b");
        assert_eq!(clean_path(""), "");
        assert_eq!(upload_name("C:\\Users\\x\\report.edi"), "report.edi");
        assert_eq!(upload_name("dir/a.txt"), "a.txt");
        assert_eq!(
            content_disposition("résumé \"x\".pdf"),
            "attachment; filename=\"r_sum_ _x_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22x%22.pdf"
        );
    }
}
