//! The rules the API enforces that its handlers' annotations cannot state, added to the OpenAPI
//! document in one place so that schema-driven clients and fuzzers (schemathesis in CI) agree
//! with the server: no control characters (C0 and C1, what `char::is_control` refuses) in keys,
//! prefixes, searches and descriptions, non-blank descriptions, bucket option names, the shape
//! of public key lines, and IP addresses where a ban is lifted.
//!
//! What no schema can say stays with the handlers: a public key line must hold a real key, a
//! page token must come from this API, a webhook URL must not point inside the network.

use serde_json::{Value, json};

/// No control character (U+0000–U+001F, U+007F–U+009F).
const NO_CONTROL: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// A key prefix: no control character, no leading `/` (keys have none).
const NO_LEADING_SLASH: &str =
    r"^(?:[^/\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*)?$";

/// A description: something besides whitespace, no control character.
const NON_BLANK: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

/// A bucket key in a URL path: `/`-separated non-empty segments without control characters or
/// backslashes, no leading `/`, an optional trailing `/` (a directory).
const KEY: &str = r"^(?:[^/\\\u0000-\u001F\u007F-\u009F]+/)*[^/\\\u0000-\u001F\u007F-\u009F]+/?$";

/// An OpenSSH public key line: a known algorithm, base64, an optional comment.
const PUBLIC_KEY_LINE: &str = r"^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) AAAA[A-Za-z0-9+/]+={0,2}(?: [^\u0000-\u001F\u007F-\u009F]*)?$";

/// Adds the constraints to `doc` (an OpenAPI document as JSON).
pub fn add(doc: &mut Value) {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            // An empty body is an empty file (or a directory, for a key ending in `/`).
            if path == "/v1/buckets/{bucketName}/objects/{key}"
                && let Some(body) = item.get_mut("put").and_then(|op| op.get_mut("requestBody"))
            {
                body["required"] = json!(false);
            }
            for operation in item.values_mut() {
                let Some(parameters) = operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for parameter in parameters {
                    constrain_parameter(parameter);
                }
            }
        }
    }
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for request in ["CreateUserRequest", "UpdateUserRequest"] {
        if let Some(properties) = schemas
            .get_mut(request)
            .and_then(|s| s.get_mut("properties"))
        {
            if let Some(description) = properties.get_mut("description") {
                set(description, "pattern", json!(NON_BLANK));
                set(description, "maxLength", json!(1024));
            }
            if let Some(keys) = properties.get_mut("publicKeys") {
                set(
                    keys,
                    "items",
                    json!({"type": "string", "pattern": PUBLIC_KEY_LINE}),
                );
            }
        }
    }
    // A chosen password and options to generate one exclude each other.
    for request in ["CreateUserRequest", "ResetPasswordRequest"] {
        if let Some(schema) = schemas.get_mut(request) {
            set(
                schema,
                "not",
                json!({
                    "required": ["password", "passwordOptions"],
                    "properties": {
                        "password": {"type": "string"},
                        "passwordOptions": {"type": "object"},
                    },
                }),
            );
        }
    }
    if let Some(prefix) = schemas
        .get_mut("WebhookFilter")
        .and_then(|s| s.get_mut("properties"))
        .and_then(|p| p.get_mut("prefix"))
    {
        set(prefix, "pattern", json!(NO_LEADING_SLASH));
    }
    if let Some(options) = schemas
        .get_mut("CreateBucketRequest")
        .and_then(|s| s.get_mut("properties").and_then(|p| p.get_mut("options")))
    {
        set(
            options,
            "propertyNames",
            json!({"minLength": 1, "maxLength": 128, "pattern": NO_CONTROL}),
        );
    }
}

fn constrain_parameter(parameter: &mut Value) {
    let name = parameter["name"].as_str().unwrap_or_default().to_owned();
    let location = parameter["in"].as_str().unwrap_or_default().to_owned();
    let Some(schema) = parameter.get_mut("schema") else {
        return;
    };
    match (location.as_str(), name.as_str()) {
        ("path", "key") => set(schema, "pattern", json!(KEY)),
        ("query", "prefix" | "search" | "username" | "bucketName") => {
            set(schema, "pattern", json!(NO_CONTROL))
        }
        ("path", "address") => {
            *schema = json!({"anyOf": [
                {"type": "string", "format": "ipv4"},
                {"type": "string", "format": "ipv6"},
            ]});
        }
        _ => {}
    }
}

/// Sets `key` of a schema, or of each branch of its `oneOf`/`anyOf` that is not `null` (how
/// optional fields are written).
fn set(schema: &mut Value, key: &str, value: Value) {
    for union in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get_mut(union).and_then(Value::as_array_mut) {
            for branch in branches {
                if branch.get("type") != Some(&json!("null")) {
                    set(branch, key, value.clone());
                }
            }
            return;
        }
    }
    if let Some(object) = schema.as_object_mut() {
        object.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns say what the server's checks say (Rust's `regex` reads them as ECMA 262
    /// and Python do for these).
    #[test]
    fn patterns_agree_with_the_rules() {
        let re = |p: &str| regex::Regex::new(p).unwrap();
        let no_control = re(NO_CONTROL);
        assert!(no_control.is_match("alice/in"));
        assert!(no_control.is_match(""));
        assert!(!no_control.is_match("a\u{7}b"));
        assert!(!no_control.is_match("a\u{85}b"));
        let blank = re(NON_BLANK);
        assert!(blank.is_match(" Partner Alice "));
        assert!(!blank.is_match("   "));
        assert!(!blank.is_match(""));
        assert!(!blank.is_match("a\nb"));
        let key = re(KEY);
        for good in ["a", "alice/in/x.edi", "alice/in/", "é/x"] {
            assert!(key.is_match(good), "{good}");
        }
        for bad in ["", "/a", "a//b", "a\\b", "a/\u{1f}", "a//"] {
            assert!(!key.is_match(bad), "{bad:?}");
        }
        let line = re(PUBLIC_KEY_LINE);
        assert!(line.is_match("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice@laptop"));
        assert!(!line.is_match("ssh-dss AAAAB3"));
    }
}
