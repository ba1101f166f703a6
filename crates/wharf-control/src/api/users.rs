//! `/v1/users`: create, list, get, update, delete users and reset their passwords.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;
use wharf_core::api::{
    CreateUserRequest, CreatedUser, DEFAULT_MAX_SESSIONS, DEFAULT_PASSWORD_LENGTH, FieldError,
    MAX_SESSIONS_RANGE, NewPassword, PASSWORD_LENGTH_RANGE, PasswordOptions, Problem,
    ResetPasswordRequest, UpdateUserRequest, User, UserList,
};
use wharf_core::{
    HomeDirectory, PublicKey, Username, check_password, generate_password, generate_username,
};

use super::SharedState;
use super::error::ApiError;
use super::extract::{JsonBody, OptionalJsonBody, UserPath, bad_page_token};
use crate::passwords;
use crate::store::{self, BucketRecord, NewUser, StoreError, UserChanges, UserRecord};

/// Longest description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Most public keys one user may have.
const MAX_PUBLIC_KEYS: usize = 100;
const DEFAULT_PAGE_SIZE: u32 = 25;
const MAX_PAGE_SIZE: u32 = 100;
/// Attempts at a free generated username before giving up (8 of 36 characters: a collision is
/// already rare at millions of users).
const USERNAME_ATTEMPTS: usize = 8;

/// Create a user
///
/// The password is generated (or taken from `password`) and returned only in this response;
/// only its argon2id hash is stored. The home directory is created in the bucket (for any home
/// other than `/`); if that fails the user is not created (503).
#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    operation_id = "createUser",
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "The user, with its password (shown this once only)", body = CreatedUser),
        (status = 400, description = "Invalid body: malformed, or a field breaks a rule (the fields are named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The username is taken (the field `username` is named)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The home directory could not be created; no user was created", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn create_user(
    State(state): State<SharedState>,
    JsonBody(request): JsonBody<CreateUserRequest>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let mut errors = Vec::new();
    if let Some(username) = &request.username
        && username
            .as_str()
            .eq_ignore_ascii_case(super::objects::API_USERNAME)
    {
        // Events of the objects API carry this name: a partner must not pass for it.
        errors.push(FieldError {
            field: "username".into(),
            message: format!(
                "'{}' is reserved: events of the objects API carry it",
                super::objects::API_USERNAME
            ),
        });
    }
    let description = validate_description(&request.description, &mut errors);
    let password = new_password(
        request.password_options.as_ref(),
        request.password.as_deref(),
        &mut errors,
    );
    let max_sessions = validate_max_sessions(
        request.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS),
        &mut errors,
    );
    let public_keys = request
        .public_keys
        .as_deref()
        .map(|keys| validate_public_keys(keys, &mut errors))
        .unwrap_or_default();
    let bucket = match &request.bucket_name {
        Some(name) => state.store.get_bucket(name).await?,
        None => state.store.default_bucket().await?,
    };
    if bucket.is_none() {
        errors.push(FieldError {
            field: "bucketName".into(),
            message: match &request.bucket_name {
                Some(name) => format!("there is no bucket named '{name}'"),
                None => "there is no default bucket".into(),
            },
        });
    }
    let (Some(bucket), true) = (bucket, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };

    let password = password.make();
    let password_hash = passwords::hash_password(password.clone())
        .await
        .map_err(hash_failed)?;
    let mut new_user = NewUser {
        username: request.username.clone().unwrap_or_else(generate_username),
        description,
        home_directory: request.home_directory.clone(),
        bucket_name: bucket.name.clone(),
        permissions: request.permissions.unwrap_or_default(),
        password_hash,
        password_enabled: request.password_enabled.unwrap_or(true),
        public_keys,
        max_sessions,
        created_at: store::now(),
    };
    let mut attempt = 1;
    let record = loop {
        match state.store.insert_user(&new_user).await {
            Ok(record) => break record,
            Err(StoreError::Conflict) if request.username.is_some() => {
                return Err(ApiError::Taken(FieldError {
                    field: "username".into(),
                    message: format!("a user named '{}' exists already", new_user.username),
                }));
            }
            Err(StoreError::Conflict) if attempt < USERNAME_ATTEMPTS => {
                attempt += 1;
                new_user.username = generate_username();
            }
            Err(StoreError::MissingReference) => {
                // The bucket was removed since we looked it up.
                return Err(FieldError {
                    field: "bucketName".into(),
                    message: format!("there is no bucket named '{}'", bucket.name),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        }
    };

    // No user may exist without its home: undo the insert if the directory cannot be made.
    if let Err(e) = create_home(&state, &bucket, &record.home_directory).await {
        if let Err(undo) = state.store.delete_user(&record.username).await {
            tracing::error!(username = %record.username, error = %undo,
                "cannot remove the user whose home directory failed");
        }
        return Err(e);
    }
    tracing::info!(username = %record.username, home = %record.home_directory,
        bucket = %record.bucket_name, password_enabled = record.password_enabled,
        "user created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            password,
            user: user_view(&state, record),
        }),
    ))
}

/// A failed password hash: busy is a 503 to retry, anything else a 500.
fn hash_failed(e: passwords::HashError) -> ApiError {
    match e {
        passwords::HashError::Busy(busy) => ApiError::ServiceUnavailable(busy.to_string()),
        e => ApiError::internal("cannot hash a password", e),
    }
}

/// Query parameters of `GET /v1/users`. The struct documents them in the OpenAPI document;
/// [`ListUsersParams::parse`] reads them by hand so that a bad value is a 400 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListUsersParams {
    /// Users per page, 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
    /// `nextPageToken` of the previous page (of the same search).
    pub page_token: Option<String>,
    /// Only users whose username, description or home directory contains this text
    /// (case-insensitive for ASCII letters; at most 200 bytes).
    pub search: Option<String>,
}

/// Longest `search` accepted.
const MAX_SEARCH_BYTES: usize = 200;

impl ListUsersParams {
    /// Parsed by hand so that a bad value is a 400 naming the parameter.
    fn parse(query: Option<&str>) -> Result<(u32, Option<Username>, Option<String>), ApiError> {
        let mut page_size = DEFAULT_PAGE_SIZE;
        let mut after = None;
        let mut search = None;
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*name {
                "pageSize" => {
                    page_size = super::extract::page_size(&value, MAX_PAGE_SIZE)?;
                }
                // An empty token is the first page, as if absent.
                "pageToken" if value.is_empty() => after = None,
                "pageToken" => {
                    after = Some(decode_page_token(&value).ok_or_else(bad_page_token)?);
                }
                "search" if value.trim().is_empty() => search = None,
                "search" => {
                    if value.len() > MAX_SEARCH_BYTES || value.chars().any(char::is_control) {
                        return Err(ApiError::invalid_field(
                            "search",
                            format!("at most {MAX_SEARCH_BYTES} bytes without control characters"),
                        ));
                    }
                    search = Some(value.trim().to_owned());
                }
                _ => {}
            }
        }
        Ok((page_size, after, search))
    }
}

fn encode_page_token(last: &Username) -> String {
    URL_SAFE_NO_PAD.encode(last.as_str())
}

fn decode_page_token(token: &str) -> Option<Username> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    Username::parse(std::str::from_utf8(&bytes).ok()?).ok()
}

/// List users
///
/// Ordered by username; pass `nextPageToken` as `pageToken` (with the same `search`) for the
/// next page. No `nextPageToken` means the last page.
#[utoipa::path(
    get,
    path = "/v1/users",
    tag = "users",
    operation_id = "listUsers",
    params(ListUsersParams),
    responses(
        (status = 200, description = "One page of users", body = UserList),
        (status = 400, description = "Bad pageSize or pageToken (the parameter is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn list_users(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Json<UserList>, ApiError> {
    let (page_size, after, search) = ListUsersParams::parse(query.as_deref())?;
    // One more than asked tells whether another page follows.
    let mut records = state
        .store
        .search_users(after.as_ref(), search.as_deref(), page_size + 1)
        .await?;
    let more = records.len() > page_size as usize;
    records.truncate(page_size as usize);
    let next_page_token = more
        .then(|| records.last().map(|r| encode_page_token(&r.username)))
        .flatten();
    Ok(Json(UserList {
        items: records.into_iter().map(|r| user_view(&state, r)).collect(),
        next_page_token,
    }))
}

/// Get a user
///
/// The password is never shown; `lastConnectedAt` is the last successful login.
#[utoipa::path(
    get,
    path = "/v1/users/{username}",
    tag = "users",
    operation_id = "getUser",
    params(("username" = String, Path, description = "The user's login name")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn get_user(
    State(state): State<SharedState>,
    UserPath(username): UserPath,
) -> Result<Json<User>, ApiError> {
    let record = state
        .store
        .get_user(&username)
        .await?
        .ok_or_else(|| no_such_user(&username))?;
    Ok(Json(user_view(&state, record)))
}

/// Update a user
///
/// Only the fields present change. A new home directory is created; files in the old one stay
/// where they are. `publicKeys` replaces the whole list. `passwordEnabled: false` makes the
/// password stop logging in (public keys only) without forgetting it.
#[utoipa::path(
    patch,
    path = "/v1/users/{username}",
    tag = "users",
    operation_id = "updateUser",
    params(("username" = String, Path, description = "The user's login name")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The updated user", body = User),
        (status = 400, description = "Invalid body: malformed, or a field breaks a rule (the fields are named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The new home directory could not be created; nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn update_user(
    State(state): State<SharedState>,
    UserPath(username): UserPath,
    JsonBody(request): JsonBody<UpdateUserRequest>,
) -> Result<Json<User>, ApiError> {
    let mut errors = Vec::new();
    let changes = UserChanges {
        description: request
            .description
            .as_deref()
            .map(|d| validate_description(d, &mut errors)),
        home_directory: request.home_directory.clone(),
        permissions: request.permissions,
        public_keys: request
            .public_keys
            .as_deref()
            .map(|keys| validate_public_keys(keys, &mut errors)),
        disabled: request.disabled,
        password_enabled: request.password_enabled,
        max_sessions: request
            .max_sessions
            .map(|n| validate_max_sessions(n, &mut errors)),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let current = state
        .store
        .get_user(&username)
        .await?
        .ok_or_else(|| no_such_user(&username))?;
    if let Some(home) = &changes.home_directory
        && *home != current.home_directory
    {
        let bucket = state
            .store
            .get_bucket(&current.bucket_name)
            .await?
            .ok_or_else(|| {
                ApiError::internal(
                    "a user's bucket is missing",
                    format!("{} of {}", current.bucket_name, username),
                )
            })?;
        create_home(&state, &bucket, home).await?;
    }
    let nothing_changes = changes.description.is_none()
        && changes.home_directory.is_none()
        && changes.permissions.is_none()
        && changes.public_keys.is_none()
        && changes.disabled.is_none()
        && changes.password_enabled.is_none()
        && changes.max_sessions.is_none();
    if nothing_changes {
        return Ok(Json(user_view(&state, current)));
    }
    let record = state
        .store
        .update_user(&username, &changes, store::now())
        .await?
        .ok_or_else(|| no_such_user(&username))?;
    tracing::info!(username = %username, "user updated");
    Ok(Json(user_view(&state, record)))
}

/// Delete a user
///
/// The user's files stay in the bucket.
#[utoipa::path(
    delete,
    path = "/v1/users/{username}",
    tag = "users",
    operation_id = "deleteUser",
    params(("username" = String, Path, description = "The user's login name")),
    responses(
        (status = 204, description = "Deleted; the user's files stay in the bucket"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn delete_user(
    State(state): State<SharedState>,
    UserPath(username): UserPath,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete_user(&username).await? {
        return Err(no_such_user(&username));
    }
    tracing::info!(username = %username, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Reset a user's password
///
/// A new password is generated (or taken from `password`) and returned this once; the old one
/// stops working at once. The body is optional. `passwordEnabled` does not change: a user who
/// logs in with public keys only keeps doing so, with this password kept for later.
#[utoipa::path(
    post,
    path = "/v1/users/{username}/password",
    tag = "users",
    operation_id = "resetPassword",
    params(("username" = String, Path, description = "The user's login name")),
    request_body(content = Option<ResetPasswordRequest>, description = "Optional"),
    responses(
        (status = 200, description = "The new password (shown this once only)", body = NewPassword),
        (status = 400, description = "Invalid body: malformed, or a field breaks a rule (the fields are named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("key" = []))
)]
pub async fn reset_password(
    State(state): State<SharedState>,
    UserPath(username): UserPath,
    OptionalJsonBody(request): OptionalJsonBody<ResetPasswordRequest>,
) -> Result<Json<NewPassword>, ApiError> {
    let mut errors = Vec::new();
    let request = request.unwrap_or_default();
    let password = new_password(
        request.password_options.as_ref(),
        request.password.as_deref(),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if state.store.get_user(&username).await?.is_none() {
        return Err(no_such_user(&username));
    }
    let password = password.make();
    let hash = passwords::hash_password(password.clone())
        .await
        .map_err(hash_failed)?;
    if !state
        .store
        .set_password_hash(&username, &hash, store::now())
        .await?
    {
        return Err(no_such_user(&username));
    }
    tracing::info!(username = %username, "password reset");
    Ok(Json(NewPassword { password }))
}

fn no_such_user(username: &Username) -> ApiError {
    ApiError::NotFound(format!("no user named '{username}'"))
}

fn user_view(state: &SharedState, record: UserRecord) -> User {
    User {
        username: record.username,
        description: record.description,
        home_directory: record.home_directory,
        bucket_name: record.bucket_name,
        endpoint: state.config.public_host.clone(),
        permissions: record.permissions,
        public_keys: record.public_keys,
        disabled: record.disabled,
        password_enabled: record.password_enabled,
        max_sessions: record.max_sessions,
        created_at: record.created_at,
        updated_at: record.updated_at,
        last_connected_at: record.last_connected_at,
    }
}

/// Trimmed; not empty, at most 1024 characters, no control characters.
fn validate_description(description: &str, errors: &mut Vec<FieldError>) -> String {
    let trimmed = description.trim();
    let problem = if trimmed.is_empty() {
        Some("must not be empty".to_owned())
    } else if trimmed.chars().count() > MAX_DESCRIPTION_CHARS {
        Some(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters long"
        ))
    } else if trimmed.chars().any(char::is_control) {
        Some("must not contain control characters (such as line breaks)".to_owned())
    } else {
        None
    };
    if let Some(message) = problem {
        errors.push(FieldError {
            field: "description".into(),
            message,
        });
    }
    trimmed.to_owned()
}

/// Where a new password comes from, decided (and checked) before anything is generated.
enum PasswordSource {
    /// The operator's, checked by [`check_password`].
    Chosen(String),
    /// A generated one of this many characters.
    Generated(usize),
}

impl PasswordSource {
    fn make(self) -> String {
        match self {
            PasswordSource::Chosen(password) => password,
            PasswordSource::Generated(length) => generate_password(length),
        }
    }
}

/// The password to set: `chosen` when given (under the rules generated ones meet), else one
/// generated per `options`. Both at once is an error naming `passwordOptions`.
fn new_password(
    options: Option<&PasswordOptions>,
    chosen: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> PasswordSource {
    let Some(chosen) = chosen else {
        return PasswordSource::Generated(password_length(options, errors));
    };
    if options.is_some() {
        errors.push(FieldError {
            field: "passwordOptions".into(),
            message: "must not be given with password: a chosen password is used as it is".into(),
        });
    }
    if let Err(e) = check_password(chosen) {
        errors.push(FieldError {
            field: "password".into(),
            message: e.to_string(),
        });
    }
    PasswordSource::Chosen(chosen.to_owned())
}

fn password_length(options: Option<&PasswordOptions>, errors: &mut Vec<FieldError>) -> usize {
    let length = options
        .and_then(|o| o.length)
        .unwrap_or(DEFAULT_PASSWORD_LENGTH);
    if !PASSWORD_LENGTH_RANGE.contains(&length) {
        errors.push(FieldError {
            field: "passwordOptions.length".into(),
            message: format!(
                "must be from {} to {}",
                PASSWORD_LENGTH_RANGE.start(),
                PASSWORD_LENGTH_RANGE.end()
            ),
        });
    }
    length as usize
}

fn validate_max_sessions(max_sessions: u32, errors: &mut Vec<FieldError>) -> u32 {
    if !MAX_SESSIONS_RANGE.contains(&max_sessions) {
        errors.push(FieldError {
            field: "maxSessions".into(),
            message: format!(
                "must be from {} to {}",
                MAX_SESSIONS_RANGE.start(),
                MAX_SESSIONS_RANGE.end()
            ),
        });
    }
    max_sessions
}

/// Each key must parse; they are stored normalised (canonical base64, comment kept).
fn validate_public_keys(keys: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    if keys.len() > MAX_PUBLIC_KEYS {
        errors.push(FieldError {
            field: "publicKeys".into(),
            message: format!("at most {MAX_PUBLIC_KEYS} keys"),
        });
        return vec![];
    }
    let mut normalised = Vec::with_capacity(keys.len());
    for (i, line) in keys.iter().enumerate() {
        match PublicKey::parse(line) {
            Ok(key) => normalised.push(key.to_openssh_with_comment()),
            Err(e) => errors.push(FieldError {
                field: format!("publicKeys[{i}]"),
                message: e.to_string(),
            }),
        }
    }
    normalised
}

/// Creates `home` in `bucket` (nothing to do for `/`). Any failure, including a panic in a
/// storage driver, is a 503: the caller then leaves no trace of the change.
async fn create_home(
    state: &SharedState,
    bucket: &BucketRecord,
    home: &HomeDirectory,
) -> Result<(), ApiError> {
    if home.is_root() {
        return Ok(());
    }
    let task_state = state.clone();
    let storage = bucket.storage();
    let task_home = home.clone();
    let outcome = tokio::spawn(async move {
        let store = task_state.stores.get(&storage)?;
        wharf_vfs::create_home(&*store, &task_home).await
    })
    .await;
    let error = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(join) => format!("the storage task failed: {join}"),
    };
    tracing::error!(bucket = %bucket.name, home = %home, error = %error,
        "cannot create a home directory");
    Err(ApiError::StorageUnavailable(format!(
        "the home directory could not be created in bucket '{}'; try again later",
        bucket.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        let name = Username::parse("WL9F11A9").unwrap();
        assert_eq!(decode_page_token(&encode_page_token(&name)), Some(name));
        assert_eq!(decode_page_token("!!"), None);
        assert_eq!(decode_page_token(&URL_SAFE_NO_PAD.encode("a b")), None);
    }

    #[test]
    fn list_parameters() {
        assert_eq!(ListUsersParams::parse(None).unwrap(), (25, None, None));
        assert_eq!(ListUsersParams::parse(Some("pageSize=100")).unwrap().0, 100);
        for bad in ["pageSize=0", "pageSize=101", "pageSize=x", "pageSize=-1"] {
            assert!(ListUsersParams::parse(Some(bad)).is_err(), "{bad}");
        }
        assert!(ListUsersParams::parse(Some("pageToken=%%%")).is_err());
        assert_eq!(
            ListUsersParams::parse(Some("pageToken=")).unwrap(),
            (25, None, None)
        );
        assert_eq!(
            ListUsersParams::parse(Some("search=+Acme+")).unwrap().2,
            Some("Acme".to_owned())
        );
        assert_eq!(ListUsersParams::parse(Some("search=")).unwrap().2, None);
    }

    #[test]
    fn descriptions() {
        let mut errors = vec![];
        assert_eq!(validate_description("  Alice  ", &mut errors), "Alice");
        assert!(errors.is_empty());
        for bad in ["", "   ", "a\nb", &"x".repeat(1025)] {
            let mut errors = vec![];
            validate_description(bad, &mut errors);
            assert_eq!(errors.len(), 1, "{bad:?}");
            assert_eq!(errors[0].field, "description");
        }
        validate_description(&"é".repeat(1024), &mut errors);
        assert!(errors.is_empty());
    }
}
