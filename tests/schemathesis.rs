//! The REST API fuzzed from its own OpenAPI document: `tests/schemathesis/run.sh` starts
//! `wharf serve` in a sandbox and runs schemathesis with every check over every `/v1`
//! operation (no 5xx, every answer as documented, no request the document calls valid refused
//! and no invalid one accepted). The script installs the pinned schemathesis if it is missing,
//! and fails loudly if it cannot.

use std::process::Command;

#[test]
fn the_api_agrees_with_its_openapi_document() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/schemathesis/run.sh"
    );
    let output = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found disagreements between the API and its document:\n{stdout}\n{stderr}"
    );
    // It ran: operations were tested, not skipped for want of a schema.
    assert!(
        stdout.contains("generated") && stdout.contains("passed"),
        "schemathesis did not report its test cases:\n{stdout}\n{stderr}"
    );
}
