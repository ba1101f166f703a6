//! The client cannot drift from the API: its request and response types are the server's own
//! (`wharf_core::api`, which also generate `openapi/openapi.json`), and this test fails when the
//! document gains a public operation (`/v1/…`) that no client method covers, or loses one the
//! table below still names.
//!
//! The table maps each `operationId` to the methods that call it, written as Rust paths: a
//! renamed or removed method fails to compile. After adding an operation to the API, add a
//! method to `src/lib.rs` and a line here.

use std::collections::BTreeMap;

use wharf_client::Client;

/// `"operationId" => Client::method, …;` → `{operationId: ["Client::method", …]}`. The
/// methods are referenced (so they must exist), not called.
macro_rules! covered {
    ($($op:literal => $($method:path),+;)*) => {{
        let mut table: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
        $(
            $( let _ = $method; )+
            assert!(
                table.insert($op, vec![$(stringify!($method)),+]).is_none(),
                "{} is listed twice", $op
            );
        )*
        table
    }};
}

#[test]
fn every_public_operation_has_a_client_method() {
    let covered = covered! {
        "listUsers" => Client::list_users, Client::list_users_matching, Client::users,
            Client::search_users;
        "createUser" => Client::create_user, Client::create_user_at;
        "getUser" => Client::get_user;
        "updateUser" => Client::update_user;
        "deleteUser" => Client::delete_user;
        "resetPassword" => Client::reset_password, Client::set_password;
        "listBuckets" => Client::list_buckets;
        "createBucket" => Client::create_bucket;
        "getBucket" => Client::get_bucket;
        "deleteBucket" => Client::delete_bucket;
        "getServerInfo" => Client::server_info;
        "listObjects" => Client::list_objects_page, Client::list_objects;
        "getObject" => Client::get_object, Client::get_object_from, Client::resume_object;
        // Also the generic `put_object` and `put_object_stream`, which cannot be named here
        // without their type arguments.
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
        "listBans" => Client::list_bans, Client::bans;
        "liftAddressBan" => Client::lift_address_ban;
        "liftUserBan" => Client::lift_user_ban;
    };

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/openapi.json");
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the API document {path}: {e}"));
    let document: serde_json::Value =
        serde_json::from_str(&text).expect("openapi/openapi.json is JSON");
    // operationId → "METHOD /path" of the public API. Operations endpoints (/healthz,
    // /readyz, /metrics) and the gateways' /internal/v1/… are not under /v1/.
    let mut operations = BTreeMap::new();
    for (route, methods) in document["paths"].as_object().expect("paths") {
        if !route.starts_with("/v1/") {
            continue;
        }
        for (method, operation) in methods.as_object().expect("methods") {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {route} has no operationId"));
            operations.insert(id.to_owned(), format!("{} {route}", method.to_uppercase()));
        }
    }
    assert!(
        operations.len() >= 20,
        "only {} public operations in {path}: is it the right document?",
        operations.len()
    );

    let missing: Vec<String> = operations
        .iter()
        .filter(|(id, _)| !covered.contains_key(id.as_str()))
        .map(|(id, route)| format!("{id} ({route})"))
        .collect();
    assert!(
        missing.is_empty(),
        "API operations without a wharf-client method: {}. Add a method to \
         crates/wharf-client/src/lib.rs and a line for each to the table in \
         crates/wharf-client/tests/coverage.rs.",
        missing.join(", ")
    );
    let stale: Vec<String> = covered
        .iter()
        .filter(|(id, _)| !operations.contains_key(**id))
        .map(|(id, methods)| format!("{id} ({})", methods.join(", ")))
        .collect();
    assert!(
        stale.is_empty(),
        "the table in crates/wharf-client/tests/coverage.rs names operations that are no longer \
         in openapi/openapi.json: {}. Remove or rename them (and their methods).",
        stale.join(", ")
    );
}
