//! Users: the searchable list, the one-form creation, the page of one user (edit, keys,
//! password reset, files) and deletion with confirmation.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::api::{Bucket, BucketList, CreatedUser, NewPassword, ServerInfo, User, UserList};

use crate::api::{Failure, enc};
use crate::session::{CheckedForm, Session};
use crate::views::{Chrome, FormErrors, render, time};
use crate::{Shared, failure_page, see_other, signed_out};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/ui/users", get(list).post(create))
        .route("/ui/users/new", get(new_form))
        .route("/ui/users/{username}", get(show).post(update))
        .route("/ui/users/{username}/keys", axum::routing::post(add_key))
        .route(
            "/ui/users/{username}/keys/remove",
            axum::routing::post(remove_key),
        )
        .route(
            "/ui/users/{username}/password",
            axum::routing::post(reset_password),
        )
        .route(
            "/ui/users/{username}/delete",
            get(confirm_delete).post(delete),
        )
}

/// The permission choices, as the API names them, with what they mean.
const PERMISSIONS: [(&str, &str); 3] = [
    ("read-write", "Read and write"),
    ("read-only", "Read only (download)"),
    ("write-only", "Write only (upload, no download)"),
];

pub(crate) struct Choice {
    pub value: &'static str,
    pub label: &'static str,
}

fn permission_choices() -> Vec<Choice> {
    PERMISSIONS
        .iter()
        .map(|(value, label)| Choice { value, label })
        .collect()
}

pub(crate) struct UserRow {
    pub username: String,
    pub description: String,
    pub home: String,
    pub permissions: String,
    pub last_connected: String,
    pub disabled: bool,
    pub password_enabled: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    title: String,
    chrome: Chrome,
    search: String,
    rows: Vec<UserRow>,
    /// Link to the next page; empty on the last.
    next_url: String,
    /// Link back to the first page; empty on it.
    first_url: String,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    search: String,
    #[serde(default, rename = "pageToken")]
    page_token: String,
    #[serde(default)]
    notice: String,
    #[serde(default)]
    name: String,
}

async fn list(
    State(console): State<Shared>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Response {
    let mut uri = format!("/v1/users?pageSize=25&search={}", enc(&query.search));
    if !query.page_token.is_empty() {
        uri.push_str(&format!("&pageToken={}", enc(&query.page_token)));
    }
    let page: UserList = match console
        .api
        .json(&session.key, Method::GET, &uri, None)
        .await
    {
        Ok(page) => page,
        Err(failure) => return failure_page(&session, "users", failure),
    };
    let search_param = if query.search.is_empty() {
        String::new()
    } else {
        format!("search={}&", enc(&query.search))
    };
    render(&UsersPage {
        title: "Users".into(),
        chrome: Chrome::new("users", &session).with_notice(notice(&query.notice, &query.name)),
        search: query.search.clone(),
        rows: page.items.iter().map(row).collect(),
        next_url: page
            .next_page_token
            .map(|t| format!("/ui/users?{search_param}pageToken={}", enc(&t)))
            .unwrap_or_default(),
        first_url: if query.page_token.is_empty() {
            String::new()
        } else {
            format!("/ui/users?{search_param}")
        },
    })
}

fn row(user: &User) -> UserRow {
    UserRow {
        username: user.username.to_string(),
        description: user.description.clone(),
        home: user.home_directory.to_string(),
        permissions: user.permissions.to_string(),
        last_connected: time(user.last_connected_at, "never"),
        disabled: user.disabled,
        password_enabled: user.password_enabled,
    }
}

/// What the operator typed in the new-user form (kept when the form comes back with errors,
/// except a chosen password: a secret is not sent back into a page).
#[derive(Default)]
pub(crate) struct NewUserValues {
    pub description: String,
    pub home: String,
    pub permissions: String,
    pub bucket: String,
    pub username: String,
    pub keys: String,
    pub password_enabled: bool,
}

#[derive(Template)]
#[template(path = "user_new.html")]
struct NewUserPage {
    title: String,
    chrome: Chrome,
    form: NewUserValues,
    errors: FormErrors,
    buckets: Vec<String>,
    permissions: Vec<Choice>,
}

async fn buckets(console: &Shared, session: &Session) -> Result<Vec<Bucket>, Failure> {
    let list: BucketList = console
        .api
        .json(&session.key, Method::GET, "/v1/buckets", None)
        .await?;
    Ok(list.items)
}

fn new_user_page(
    session: &Session,
    form: NewUserValues,
    errors: FormErrors,
    buckets: &[Bucket],
) -> Response {
    let failed = errors.any();
    let mut response = render(&NewUserPage {
        title: "New user".into(),
        chrome: Chrome::new("users", session),
        form,
        errors,
        buckets: buckets.iter().map(|b| b.bucket_name.to_string()).collect(),
        permissions: permission_choices(),
    });
    if failed {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

async fn new_form(State(console): State<Shared>, session: Session) -> Response {
    let buckets = match buckets(&console, &session).await {
        Ok(b) => b,
        Err(failure) => return failure_page(&session, "users", failure),
    };
    let default = buckets
        .iter()
        .find(|b| b.is_default)
        .map(|b| b.bucket_name.to_string())
        .unwrap_or_default();
    let form = NewUserValues {
        permissions: "read-write".into(),
        bucket: default,
        password_enabled: true,
        ..NewUserValues::default()
    };
    new_user_page(&session, form, FormErrors::default(), &buckets)
}

/// Non-empty lines of a text area: one public key each.
fn key_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn create(
    State(console): State<Shared>,
    CheckedForm { session, fields }: CheckedForm,
) -> Response {
    let form = NewUserValues {
        description: fields.get("description").trim().to_owned(),
        home: fields.get("homeDirectory").trim().to_owned(),
        permissions: fields.get("permissions").to_owned(),
        bucket: fields.get("bucketName").to_owned(),
        username: fields.get("username").trim().to_owned(),
        keys: fields.get("publicKeys").to_owned(),
        // An unchecked box is not sent at all.
        password_enabled: fields.has("passwordEnabled"),
    };
    let mut request = json!({
        "description": form.description,
        "homeDirectory": form.home,
        "permissions": form.permissions,
        "publicKeys": key_lines(&form.keys),
        "passwordEnabled": form.password_enabled,
    });
    if !form.username.is_empty() {
        request["username"] = Value::String(form.username.clone());
    }
    // Not trimmed: the API refuses surrounding whitespace and says so, rather than the
    // console setting a password other than the one typed.
    let chosen = fields.get("password");
    if !chosen.is_empty() {
        request["password"] = Value::String(chosen.to_owned());
    }
    if !form.bucket.is_empty() {
        request["bucketName"] = Value::String(form.bucket.clone());
    }
    let created: Result<CreatedUser, Failure> = console
        .api
        .json(&session.key, Method::POST, "/v1/users", Some(&request))
        .await;
    match created {
        Ok(created) => {
            credentials_page(
                &console,
                &session,
                "User created",
                created.user,
                created.password,
            )
            .await
        }
        Err(Failure::SignedOut) => signed_out(),
        Err(Failure::Problem(problem)) => {
            let errors = FormErrors::from_problem(
                problem,
                &[
                    "description",
                    "homeDirectory",
                    "permissions",
                    "bucketName",
                    "username",
                    "publicKeys",
                    "passwordEnabled",
                    "password",
                    "passwordOptions",
                ],
            );
            let buckets = buckets(&console, &session).await.unwrap_or_default();
            new_user_page(&session, form, errors, &buckets)
        }
    }
}

pub(crate) struct Fingerprint {
    pub algorithm: String,
    pub fingerprint: String,
}

#[derive(Template)]
#[template(path = "credentials.html")]
struct CredentialsPage {
    title: String,
    chrome: Chrome,
    heading: String,
    username: String,
    password: String,
    home: String,
    permissions: String,
    host: String,
    sftp_port: u16,
    ftps_port: u16,
    ftps_implicit_port: u16,
    fingerprints: Vec<Fingerprint>,
    /// SHA-256 of the FTPS certificate (`AB:CD:…`); empty when the control plane cannot tell.
    ftps_certificate: String,
    /// `false`: the partner logs in with a public key only; the page says so.
    password_enabled: bool,
    sftp_command: String,
    lftp_command: String,
    user_url: String,
}

/// The page that shows a password, once: username, password, where to connect, the host
/// keys to expect, and commands to paste.
async fn credentials_page(
    console: &Shared,
    session: &Session,
    heading: &str,
    user: User,
    password: String,
) -> Response {
    let server: ServerInfo = match console
        .api
        .json(&session.key, Method::GET, "/v1/server", None)
        .await
    {
        Ok(server) => server,
        Err(failure) => return failure_page(session, "users", failure),
    };
    let username = user.username.to_string();
    let host = server.endpoint.clone();
    let sftp_command = if server.sftp_port == 22 {
        format!("sftp {username}@{host}")
    } else {
        format!("sftp -P {} {username}@{host}", server.sftp_port)
    };
    let lftp_command = format!(
        "lftp -u {username} -p {} -e \"set ftp:ssl-force true; set ftp:ssl-protect-data true\" {host}",
        server.ftps_port
    );
    render(&CredentialsPage {
        title: format!("Credentials of {username}"),
        chrome: Chrome::new("users", session),
        heading: heading.to_owned(),
        user_url: format!("/ui/users/{}", enc(&username)),
        username,
        password,
        home: user.home_directory.to_string(),
        permissions: user.permissions.to_string(),
        password_enabled: user.password_enabled,
        host,
        sftp_port: server.sftp_port,
        ftps_port: server.ftps_port,
        ftps_implicit_port: server.ftps_implicit_port,
        fingerprints: server
            .host_keys
            .into_iter()
            .map(|k| Fingerprint {
                algorithm: k.algorithm,
                fingerprint: k.fingerprint,
            })
            .collect(),
        ftps_certificate: server.ftps_certificate_sha256.unwrap_or_default(),
        sftp_command,
        lftp_command,
    })
}

pub(crate) struct UserView {
    pub username: String,
    pub description: String,
    pub home: String,
    pub bucket: String,
    pub permissions: String,
    pub disabled: bool,
    pub password_enabled: bool,
    pub max_sessions: u32,
    pub created: String,
    pub updated: String,
    pub last_connected: String,
}

pub(crate) struct EditValues {
    pub description: String,
    pub home: String,
    pub permissions: String,
    pub disabled: bool,
    pub password_enabled: bool,
}

pub(crate) struct KeyView {
    /// The whole OpenSSH line, sent back to remove it.
    pub line: String,
    /// `ssh-ed25519 … comment`, shortened for display.
    pub label: String,
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    title: String,
    chrome: Chrome,
    user: UserView,
    form: EditValues,
    errors: FormErrors,
    permissions: Vec<Choice>,
    keys: Vec<KeyView>,
    new_key: String,
    key_errors: FormErrors,
    /// The API's answer to a refused password, next to the new-password field.
    password_errors: FormErrors,
    files_url: String,
    base_url: String,
}

fn user_view(user: &User) -> UserView {
    UserView {
        username: user.username.to_string(),
        description: user.description.clone(),
        home: user.home_directory.to_string(),
        bucket: user.bucket_name.to_string(),
        permissions: user.permissions.to_string(),
        disabled: user.disabled,
        password_enabled: user.password_enabled,
        max_sessions: user.max_sessions,
        created: time(Some(user.created_at), ""),
        updated: time(Some(user.updated_at), ""),
        last_connected: time(user.last_connected_at, "never"),
    }
}

fn key_label(line: &str) -> String {
    let mut parts = line.split_whitespace();
    let algorithm = parts.next().unwrap_or_default();
    let blob = parts.next().unwrap_or_default();
    let comment = parts.collect::<Vec<_>>().join(" ");
    let tail: String = blob
        .chars()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{algorithm} …{tail} {comment}")
        .trim_end()
        .to_owned()
}

#[derive(Default)]
struct UserPageParts {
    form: Option<EditValues>,
    errors: FormErrors,
    new_key: String,
    key_errors: FormErrors,
    password_errors: FormErrors,
    notice: String,
}

fn user_page(session: &Session, user: &User, parts: UserPageParts) -> Response {
    let failed = parts.errors.any() || parts.key_errors.any() || parts.password_errors.any();
    let view = user_view(user);
    let home_prefix = view.home.trim_start_matches('/').to_owned();
    let base_url = format!("/ui/users/{}", enc(&view.username));
    let mut response = render(&UserPage {
        title: format!("User {}", view.username),
        chrome: Chrome::new("users", session).with_notice(parts.notice),
        form: parts.form.unwrap_or_else(|| EditValues {
            description: view.description.clone(),
            home: view.home.clone(),
            permissions: view.permissions.clone(),
            disabled: view.disabled,
            password_enabled: view.password_enabled,
        }),
        files_url: format!(
            "/ui/files?bucket={}&path={}",
            enc(&view.bucket),
            enc(&home_prefix)
        ),
        user: view,
        errors: parts.errors,
        permissions: permission_choices(),
        keys: user
            .public_keys
            .iter()
            .map(|line| KeyView {
                line: line.clone(),
                label: key_label(line),
            })
            .collect(),
        new_key: parts.new_key,
        key_errors: parts.key_errors,
        password_errors: parts.password_errors,
        base_url,
    });
    if failed {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

async fn get_user(console: &Shared, session: &Session, username: &str) -> Result<User, Failure> {
    console
        .api
        .json(
            &session.key,
            Method::GET,
            &format!("/v1/users/{}", enc(username)),
            None,
        )
        .await
}

#[derive(Deserialize)]
struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

async fn show(
    State(console): State<Shared>,
    session: Session,
    Path(username): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    match get_user(&console, &session, &username).await {
        Ok(user) => user_page(
            &session,
            &user,
            UserPageParts {
                notice: notice(&query.notice, &username),
                ..UserPageParts::default()
            },
        ),
        Err(failure) => failure_page(&session, "users", failure),
    }
}

async fn update(
    State(console): State<Shared>,
    Path(username): Path<String>,
    CheckedForm { session, fields }: CheckedForm,
) -> Response {
    let form = EditValues {
        description: fields.get("description").trim().to_owned(),
        home: fields.get("homeDirectory").trim().to_owned(),
        permissions: fields.get("permissions").to_owned(),
        disabled: fields.has("disabled"),
        password_enabled: fields.has("passwordEnabled"),
    };
    let request = json!({
        "description": form.description,
        "homeDirectory": form.home,
        "permissions": form.permissions,
        "disabled": form.disabled,
        "passwordEnabled": form.password_enabled,
    });
    let uri = format!("/v1/users/{}", enc(&username));
    match console
        .api
        .json::<User>(&session.key, Method::PATCH, &uri, Some(&request))
        .await
    {
        Ok(_) => see_other(&format!(
            "{uri_ui}?notice=updated",
            uri_ui = ui_user(&username)
        )),
        Err(Failure::SignedOut) => signed_out(),
        Err(Failure::Problem(problem)) => {
            let parts = UserPageParts {
                form: Some(form),
                errors: FormErrors::from_problem(
                    problem,
                    &[
                        "description",
                        "homeDirectory",
                        "permissions",
                        "disabled",
                        "passwordEnabled",
                    ],
                ),
                ..UserPageParts::default()
            };
            refused_change(&console, &session, &username, parts).await
        }
    }
}

fn ui_user(username: &str) -> String {
    format!("/ui/users/{}", enc(username))
}

/// Replaces the user's keys with `keys`; on a refusal, shows the user page with the message
/// next to the key form.
async fn set_keys(
    console: &Shared,
    session: &Session,
    username: &str,
    keys: Vec<String>,
    typed: String,
) -> Response {
    let uri = format!("/v1/users/{}", enc(username));
    match console
        .api
        .json::<User>(
            &session.key,
            Method::PATCH,
            &uri,
            Some(&json!({ "publicKeys": keys })),
        )
        .await
    {
        Ok(_) => see_other(&format!("{}?notice=keys", ui_user(username))),
        Err(Failure::SignedOut) => signed_out(),
        Err(Failure::Problem(problem)) => {
            let parts = UserPageParts {
                new_key: typed,
                key_errors: FormErrors::from_problem(problem, &["publicKeys"]),
                ..UserPageParts::default()
            };
            refused_change(console, session, username, parts).await
        }
    }
}

/// How a change the API refused is shown: the user's page, fetched again (the change may have
/// raced another), with what was typed and the API's messages next to their fields.
async fn refused_change(
    console: &Shared,
    session: &Session,
    username: &str,
    parts: UserPageParts,
) -> Response {
    match get_user(console, session, username).await {
        Ok(user) => user_page(session, &user, parts),
        Err(failure) => failure_page(session, "users", failure),
    }
}

async fn add_key(
    State(console): State<Shared>,
    Path(username): Path<String>,
    CheckedForm { session, fields }: CheckedForm,
) -> Response {
    let typed = fields.get("publicKey").to_owned();
    let user = match get_user(&console, &session, &username).await {
        Ok(user) => user,
        Err(failure) => return failure_page(&session, "users", failure),
    };
    let new = key_lines(&typed);
    if new.is_empty() {
        return user_page(
            &session,
            &user,
            UserPageParts {
                new_key: typed,
                key_errors: FormErrors::general("Paste an OpenSSH public key line."),
                ..UserPageParts::default()
            },
        );
    }
    let mut keys = user.public_keys.clone();
    keys.extend(new.into_iter().filter(|k| !user.public_keys.contains(k)));
    set_keys(&console, &session, &username, keys, typed).await
}

async fn remove_key(
    State(console): State<Shared>,
    Path(username): Path<String>,
    CheckedForm { session, fields }: CheckedForm,
) -> Response {
    let user = match get_user(&console, &session, &username).await {
        Ok(user) => user,
        Err(failure) => return failure_page(&session, "users", failure),
    };
    let line = fields.get("publicKey");
    let keys: Vec<String> = user
        .public_keys
        .iter()
        .filter(|k| k.as_str() != line)
        .cloned()
        .collect();
    set_keys(&console, &session, &username, keys, String::new()).await
}

/// A new password: the one typed in the form, or a generated one when it is left empty. A
/// refused one comes back with the API's message next to the field.
async fn reset_password(
    State(console): State<Shared>,
    Path(username): Path<String>,
    CheckedForm { session, fields }: CheckedForm,
) -> Response {
    let uri = format!("/v1/users/{}/password", enc(&username));
    let chosen = fields.get("password");
    let body = if chosen.is_empty() {
        json!({})
    } else {
        json!({ "password": chosen })
    };
    let password: NewPassword = match console
        .api
        .json(&session.key, Method::POST, &uri, Some(&body))
        .await
    {
        Ok(p) => p,
        Err(Failure::SignedOut) => return signed_out(),
        Err(Failure::Problem(problem)) if problem.status == 400 => {
            let parts = UserPageParts {
                password_errors: FormErrors::from_problem(problem, &["password"]),
                ..UserPageParts::default()
            };
            return refused_change(&console, &session, &username, parts).await;
        }
        Err(failure) => return failure_page(&session, "users", failure),
    };
    match get_user(&console, &session, &username).await {
        Ok(user) => {
            credentials_page(
                &console,
                &session,
                "Password reset",
                user,
                password.password,
            )
            .await
        }
        Err(failure) => failure_page(&session, "users", failure),
    }
}

#[derive(Template)]
#[template(path = "user_delete.html")]
struct DeletePage {
    title: String,
    chrome: Chrome,
    user: UserView,
    base_url: String,
}

async fn confirm_delete(
    State(console): State<Shared>,
    session: Session,
    Path(username): Path<String>,
) -> Response {
    match get_user(&console, &session, &username).await {
        Ok(user) => render(&DeletePage {
            title: format!("Delete {username}"),
            chrome: Chrome::new("users", &session),
            base_url: ui_user(&username),
            user: user_view(&user),
        }),
        Err(failure) => failure_page(&session, "users", failure),
    }
}

async fn delete(
    State(console): State<Shared>,
    Path(username): Path<String>,
    CheckedForm { session, .. }: CheckedForm,
) -> Response {
    let uri = format!("/v1/users/{}", enc(&username));
    match console
        .api
        .call(&session.key, Method::DELETE, &uri, None)
        .await
    {
        Ok(()) => see_other(&format!("/ui/users?notice=deleted&name={}", enc(&username))),
        Err(failure) => failure_page(&session, "users", failure),
    }
}

/// The confirmation shown after a redirect. Only known codes produce text, so a crafted link
/// cannot put words in the console's mouth.
fn notice(code: &str, name: &str) -> String {
    match code {
        "updated" => format!("Saved the changes to {name}."),
        "keys" => format!("Updated the public keys of {name}."),
        "deleted" => format!("Deleted user {name}. Their files stay in the bucket."),
        _ => String::new(),
    }
}
