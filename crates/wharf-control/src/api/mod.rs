//! The HTTP application: `/v1` (API key), `/internal/v1/…` (gateway token), operations
//! endpoints, the OpenAPI document and its docs UI.

mod bans;
mod buckets;
mod constraints;
mod error;
mod events;
mod extract;
mod internal;
mod objects;
mod ops;
mod users;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;
use wharf_vfs::StoreCache;

pub use buckets::public_storage_url;
pub use error::ApiError;

use crate::events::DatabaseEvents;
use crate::login::DatabaseLogin;
use crate::metrics::Metrics;
use crate::passwords::api_key_hash;
use crate::store::Store;
use crate::{BackgroundTasks, ControlPlaneConfig, ControlPlaneOptions};

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything a request handler may use.
pub struct AppState {
    pub config: ControlPlaneConfig,
    pub options: ControlPlaneOptions,
    pub store: Store,
    /// Bucket stores opened so far (to create home directories, to reconcile uploads).
    pub stores: Arc<StoreCache>,
    pub metrics: Metrics,
    pub login: Arc<DatabaseLogin>,
    pub events: Arc<DatabaseEvents>,
    /// The claim token of this process's delivery worker.
    pub worker_id: String,
    /// Where `file://` buckets registered through the API may live.
    pub local_root: crate::LocalBucketRoot,
    /// Stopped when the state is dropped.
    pub(crate) tasks: BackgroundTasks,
    /// SHA-256 of the gateway token (empty when no token is configured: then every gateway
    /// call is refused).
    pub gateway_token_digest: Vec<u8>,
}

pub type SharedState = Arc<AppState>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wharf API",
        description = "Manage the users, buckets and connection details of a Wharf SFTP/FTPS \
            installation. Authenticate with `Authorization: Key <api-key>` or \
            `Authorization: Bearer <api-key>`. Errors are RFC 9457 problem documents \
            (`application/problem+json`) that name the offending field. Every invalid request \
            is a 400, whether it cannot be read (type `…/invalid-request`) or a field breaks \
            a rule (type `…/validation`); the API never answers 422. A value that is taken \
            (a username, a bucket name) is a 409 naming its field.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "users", description = "Partners' logins: credentials, home directory, permissions."),
        (name = "buckets", description = "Where home directories and files live."),
        (name = "objects", description = "The files and directories in a bucket: listed, downloaded, uploaded and deleted by streaming, with the same events as SFTP and FTPS."),
        (name = "server", description = "How partners connect."),
        (name = "events", description = "File events: completed and failed uploads, deletes, renames, new directories."),
        (name = "webhooks", description = "Signed deliveries of events (Standard Webhooks), with retries and a delivery log."),
        (name = "bans", description = "Client addresses and user names banned for a while after too many failed logins, on every gateway."),
        (name = "operations", description = "Health, readiness and metrics (no authentication)."),
        (name = "internal", description = "Called by the SFTP/FTPS gateways with the gateway token."),
    ),
    components(schemas(wharf_core::api::Problem, wharf_core::api::FieldError)),
    modifiers(&SecuritySchemes),
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer <api-key>`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "An API key in Stedi's form: `Authorization: Key <api-key>`.",
            ))),
        );
        components.add_security_scheme(
            "gatewayToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The gateway token shared by the control plane and its gateways \
                         (`WHARF_GATEWAY_TOKEN`): `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        );
    }
}

fn v1_routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(
            users::get_user,
            users::update_user,
            users::delete_user
        ))
        .routes(routes!(users::reset_password))
        .routes(routes!(buckets::list_buckets, buckets::create_bucket))
        .routes(routes!(buckets::get_bucket, buckets::delete_bucket))
        .routes(routes!(buckets::server_info))
        .merge(objects::routes())
        .routes(routes!(events::list_events))
        .routes(routes!(events::get_event))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::test_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::retry_delivery))
        .routes(routes!(bans::list_bans))
        .routes(routes!(bans::lift_address_ban))
        .routes(routes!(bans::lift_user_ban))
}

fn internal_routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(internal::login))
        .routes(routes!(internal::check_sessions))
        .routes(routes!(internal::record_event))
        .routes(routes!(internal::begin_upload))
        .routes(routes!(internal::settle_upload))
}

fn ops_routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}

/// The OpenAPI document of every route, with the constraints the annotations cannot state
/// ([`constraints`]).
pub fn openapi() -> serde_json::Value {
    let doc = OpenApiRouter::<SharedState>::with_openapi(ApiDoc::openapi())
        .merge(v1_routes())
        .merge(internal_routes())
        .merge(ops_routes())
        .into_openapi();
    let mut value = serde_json::to_value(&doc).expect("the OpenAPI document serialises");
    constraints::add(&mut value);
    value
}

/// The whole HTTP application.
pub fn router(state: SharedState) -> Router {
    let (v1, _) = v1_routes().split_for_parts();
    let v1 = v1.route_layer(middleware::from_fn_with_state(
        state.clone(),
        require_api_key,
    ));
    let (internal, _) = internal_routes().split_for_parts();
    let (ops, _) = ops_routes().split_for_parts();
    let docs: Router<SharedState> = SwaggerUi::new("/docs")
        .external_url_unchecked("/openapi.json", openapi())
        .into();
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(v1)
        .merge(internal)
        .merge(ops)
        .merge(docs)
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        // Layers run outside-in from the last one added.
        .layer(CatchPanicLayer::custom(|_panic| {
            tracing::error!("a request handler panicked");
            ApiError::Internal.into_response()
        }))
        .layer(middleware::from_fn_with_state(state.clone(), track_metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .make_span_with(|request: &Request| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id,
                    )
                }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Every `/v1` request needs a known API key.
async fn require_api_key(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = extract::presented_api_key(request.headers()) else {
        return ApiError::Unauthorized(
            "send an API key as Authorization: Key <api-key> or Authorization: Bearer <api-key>",
        )
        .into_response();
    };
    match state.store.find_api_key(&api_key_hash(key)).await {
        Ok(Some(_)) => next.run(request).await,
        Ok(None) => ApiError::Unauthorized("unknown API key").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Counts requests by method, route template and status, and times them.
async fn track_metrics(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state.metrics.observe_request(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
