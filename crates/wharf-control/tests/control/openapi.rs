//! The committed OpenAPI document matches the code.

use std::path::PathBuf;

use wharf_control::ControlPlane;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json")
}

fn generated() -> String {
    let mut json = serde_json::to_string_pretty(&ControlPlane::openapi()).unwrap();
    json.push('\n');
    json
}

/// `openapi/openapi.json` is what the code generates. Regenerate it with
/// `WHARF_UPDATE_OPENAPI=1 cargo test -p wharf-control openapi_document_is_up_to_date`.
#[test]
fn openapi_document_is_up_to_date() {
    let path = committed_path();
    let generated = generated();
    if std::env::var("WHARF_UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the code. Regenerate it with\n\n    \
         WHARF_UPDATE_OPENAPI=1 cargo test -p wharf-control openapi_document_is_up_to_date\n\n\
         (or `just openapi`) and commit the result.",
        path.display()
    );
}

#[test]
fn openapi_document_describes_the_api() {
    let doc = serde_json::to_value(ControlPlane::openapi()).unwrap();
    assert_eq!(doc["info"]["title"], "Wharf API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for path in [
        "/v1/users",
        "/v1/users/{username}",
        "/v1/users/{username}/password",
        "/v1/buckets",
        "/v1/buckets/{bucketName}",
        "/v1/server",
        "/v1/buckets/{bucketName}/objects",
        "/v1/buckets/{bucketName}/objects/{key}",
        "/internal/v1/login",
        "/internal/v1/events",
        "/internal/v1/uploads",
        "/internal/v1/uploads/{eventId}/settle",
        "/v1/events",
        "/v1/events/{eventId}",
        "/v1/webhooks",
        "/v1/webhooks/{webhookId}",
        "/v1/webhooks/{webhookId}/test",
        "/v1/webhooks/{webhookId}/deliveries",
        "/v1/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is missing");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert!(schemes.get("bearer").is_some() && schemes.get("key").is_some());
    assert!(schemes.get("gatewayToken").is_some());
    let create = &doc["paths"]["/v1/users"]["post"];
    assert_eq!(
        create["security"],
        serde_json::json!([{"bearer": []}, {"key": []}])
    );
    assert!(create["responses"]["400"]["content"]["application/problem+json"].is_object());
    for schema in [
        "CreateUserRequest",
        "CreatedUser",
        "User",
        "UserList",
        "Problem",
        "LoginGrant",
        "Event",
        "EventData",
        "EventPayload",
        "LoginFailedData",
        "BanData",
        "EventList",
        "CreateWebhookRequest",
        "CreatedWebhook",
        "Webhook",
        "Delivery",
        "DeliveryAttempt",
        "RecordEventRequest",
        "BeginUploadRequest",
        "PendingUpload",
        "SettleUploadRequest",
        "BucketObject",
        "ObjectList",
        "ObjectKind",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "schema {schema} is missing"
        );
    }
}

/// One status for bad input: no operation documents a 422, and every operation that takes a
/// body or query parameters documents the 400 that names the field.
#[test]
fn every_invalid_request_is_documented_as_a_400() {
    let doc = serde_json::to_value(ControlPlane::openapi()).unwrap();
    let mut checked = 0;
    for (route, methods) in doc["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let responses = &operation["responses"];
            assert!(
                responses.get("422").is_none(),
                "{method} {route} documents a 422"
            );
            let takes_input = operation.get("requestBody").is_some()
                || operation["parameters"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
            if takes_input && route.starts_with("/v1/") {
                assert!(
                    responses.get("400").is_some(),
                    "{method} {route} takes input but documents no 400"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} operations take input");
}

/// Fields that are always present, `null` when unknown, are required (and nullable).
#[test]
fn always_present_fields_are_required() {
    let doc = serde_json::to_value(ControlPlane::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("User", "lastConnectedAt"),
        ("User", "passwordEnabled"),
        ("ServerInfo", "ftpsCertificateSha256"),
    ] {
        let required = schemas[schema]["required"].as_array().unwrap();
        assert!(
            required.iter().any(|r| r == field),
            "{schema}.{field} is not required: {required:?}"
        );
    }
    let nullable = &schemas["User"]["properties"]["lastConnectedAt"]["type"];
    assert_eq!(*nullable, serde_json::json!(["string", "null"]));
}
