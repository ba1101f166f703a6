//! The client cannot drift from the API: its request and response types are the server's own
//! (`wharf_core::api`), and this test fails when `openapi/openapi.json` gains an operation that
//! no client method covers. Each entry names the methods as Rust paths, so a renamed or
//! removed method fails to compile.

use std::collections::BTreeSet;

use wharf_client::{Client, HttpEventSink, HttpLoginProvider};

/// `"operationId" => method, …`: the methods are referenced, not called.
macro_rules! covered {
    ($($op:literal => $($method:path),+;)*) => {{
        let mut ops = BTreeSet::new();
        $(
            $( let _ = $method; )+
            ops.insert($op);
        )*
        ops
    }};
}

#[test]
fn every_operation_has_a_client_method() {
    let covered = covered! {
        "listUsers" => Client::list_users, Client::users;
        "createUser" => Client::create_user;
        "getUser" => Client::get_user;
        "updateUser" => Client::update_user;
        "deleteUser" => Client::delete_user;
        "resetPassword" => Client::reset_password;
        "listBuckets" => Client::list_buckets;
        "createBucket" => Client::create_bucket;
        "getBucket" => Client::get_bucket;
        "deleteBucket" => Client::delete_bucket;
        "getServerInfo" => Client::server_info;
        "listObjects" => Client::list_objects_page, Client::list_objects;
        "getObject" => Client::get_object, Client::get_object_from;
        // Also the generic `put_object` and `put_object_stream`, which cannot be named here
        // without type arguments.
        "putObject" => Client::put_object_file, Client::create_directory;
        "deleteObject" => Client::delete_object, Client::delete_objects;
        "listEvents" => Client::list_events, Client::events;
        "getEvent" => Client::get_event;
        "listWebhooks" => Client::list_webhooks, Client::webhooks;
        "createWebhook" => Client::create_webhook;
        "getWebhook" => Client::get_webhook;
        "updateWebhook" => Client::update_webhook;
        "deleteWebhook" => Client::delete_webhook;
        "testWebhook" => Client::test_webhook;
        "listDeliveries" => Client::webhook_deliveries, Client::deliveries;
        "retryDelivery" => Client::retry_delivery;
        // The gateways' side (gateway token).
        "checkLogin" => HttpLoginProvider::new;
        "recordEvent" => HttpEventSink::new;
        "beginUpload" => HttpEventSink::new;
        "settleUpload" => HttpEventSink::new;
    };
    // Operations endpoints are plain HTTP for probes and Prometheus, not client calls.
    let ignored = ["healthz", "readyz", "metrics"];

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/openapi.json");
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("openapi/openapi.json"))
            .expect("the OpenAPI document is JSON");
    let mut operations = BTreeSet::new();
    for (route, methods) in document["paths"].as_object().expect("paths") {
        for (method, operation) in methods.as_object().expect("methods") {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {route} has no operationId"));
            operations.insert(id.to_owned());
        }
    }
    let missing: Vec<&String> = operations
        .iter()
        .filter(|op| !covered.contains(op.as_str()) && !ignored.contains(&op.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "API operations without a wharf-client method: {missing:?}. Add the method to \
         crates/wharf-client/src/lib.rs and list it in this test."
    );
    let stale: Vec<&&str> = covered
        .iter()
        .filter(|op| !operations.contains(**op))
        .collect();
    assert!(
        stale.is_empty(),
        "operations no longer in the API: {stale:?}"
    );
}
