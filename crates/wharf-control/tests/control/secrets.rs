//! Encryption at rest: webhook secrets and bucket options are sealed in the database with the
//! secrets key, opened only by a control plane holding it, and sealed again on rotation.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use sqlx::{AnyPool, Row};
use wharf_control::{ControlPlane, ControlPlaneOptions, SecretKeys};
use wharf_core::BucketName;

use crate::common::{SECRETS_KEY, TestApp, TestDb, config};
use crate::receiver::create_webhook;

crate::on_both_databases!(secrets_are_sealed_at_rest_and_rotate,);

const CREDENTIAL: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";

async fn raw(db_url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(db_url).await.unwrap()
}

/// `(webhook secret, bucket options)` as stored.
async fn stored(pool: &AnyPool, webhook: &str, bucket: &str) -> (String, String) {
    let secret: String = sqlx::query("SELECT secret FROM webhooks WHERE id = $1")
        .bind(webhook)
        .fetch_one(pool)
        .await
        .unwrap()
        .get("secret");
    let options: String = sqlx::query("SELECT options FROM buckets WHERE name = $1")
        .bind(bucket)
        .fetch_one(pool)
        .await
        .unwrap()
        .get("options");
    (secret, options)
}

fn key_id(sealed: &str) -> &str {
    let rest = sealed
        .strip_prefix("wharf-sealed:v1:")
        .unwrap_or_else(|| panic!("not sealed: {sealed}"));
    rest.split(':').next().unwrap()
}

async fn open_with(app: &TestApp, keys: &str) -> Result<ControlPlane, String> {
    let mut config = config(&app.db, app.data_dir.path());
    config.secret_keys = Arc::new(SecretKeys::parse(keys, "test").unwrap());
    ControlPlane::open_with(config, ControlPlaneOptions::default())
        .await
        .map_err(|e| e.to_string())
}

async fn secrets_are_sealed_at_rest_and_rotate(db: TestDb) {
    let mut app = TestApp::spawn(db).await;
    let webhook = create_webhook(
        &app,
        json!({"url": "https://example.com/hook", "events": ["file.created"]}),
    )
    .await;
    let webhook_id = webhook["id"].as_str().unwrap().to_owned();
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    let archive = BucketName::parse("archive").unwrap();
    let options = BTreeMap::from([
        ("aws_access_key_id".to_owned(), "AKIDEXAMPLE".to_owned()),
        ("aws_secret_access_key".to_owned(), CREDENTIAL.to_owned()),
    ]);
    app.control
        .store()
        .insert_bucket(&archive, "s3://archive", &options)
        .await
        .unwrap();

    // Sealed in the database, with the key of the file; readable through the control plane.
    let pool = raw(&app.db.url).await;
    let (stored_secret, stored_options) = stored(&pool, &webhook_id, "archive").await;
    let first_id = key_id(&stored_secret).to_owned();
    assert_eq!(key_id(&stored_options), first_id);
    for value in [&stored_secret, &stored_options] {
        assert!(
            !value.contains(&secret) && !value.contains(CREDENTIAL),
            "{value}"
        );
    }
    let bucket = app
        .control
        .store()
        .get_bucket(&archive)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bucket.options, options);
    // A store without the key cannot read them.
    let keyless = wharf_control::store::Store::connect(&app.db.url)
        .await
        .unwrap();
    assert!(keyless.get_bucket(&archive).await.is_err());
    keyless.close().await;

    // A value moved to another row does not open there.
    let other = BucketName::parse("other").unwrap();
    app.control
        .store()
        .insert_bucket(&other, "s3://other", &options)
        .await
        .unwrap();
    sqlx::query("UPDATE buckets SET options = $1 WHERE name = 'other'")
        .bind(&stored_options)
        .execute(&pool)
        .await
        .unwrap();
    let moved = app.control.store().get_bucket(&other).await;
    assert!(moved.is_err(), "{moved:?}");
    app.control.store().delete_bucket(&other).await.unwrap();

    // Values in clear from before encryption at rest are sealed at the next start.
    sqlx::query("UPDATE webhooks SET secret = $1 WHERE id = $2")
        .bind(&secret)
        .bind(&webhook_id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE buckets SET options = $1 WHERE name = 'archive'")
        .bind(serde_json::to_string(&options).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    app.restart(ControlPlaneOptions::default()).await;
    let (resealed_secret, resealed_options) = stored(&pool, &webhook_id, "archive").await;
    assert_eq!(key_id(&resealed_secret), first_id);
    assert_eq!(key_id(&resealed_options), first_id);
    let bucket = app
        .control
        .store()
        .get_bucket(&archive)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bucket.options, options);

    // Another replica with another key is refused at start, saying why.
    let (_, stranger) = SecretKeys::generate();
    let refused = open_with(&app, &stranger).await.err().expect("refused");
    assert!(refused.contains("not in the secrets key file"), "{refused}");

    // Rotation: the new key first, the old one after; everything is sealed with the new key.
    let (_, new_key) = SecretKeys::generate();
    let rotated = open_with(&app, &format!("{new_key}{SECRETS_KEY}\n"))
        .await
        .expect("the rotated key file opens the database");
    let (rotated_secret, rotated_options) = stored(&pool, &webhook_id, "archive").await;
    let new_id = key_id(&rotated_secret).to_owned();
    assert_ne!(new_id, first_id);
    assert_eq!(key_id(&rotated_options), new_id);
    assert_eq!(
        rotated
            .store()
            .get_bucket(&archive)
            .await
            .unwrap()
            .unwrap()
            .options,
        options
    );
    rotated.shutdown().await;
    // Then the old key can go; a control plane with only the old key no longer fits.
    let new_only = open_with(&app, &new_key).await.expect("the new key alone");
    new_only.shutdown().await;
    let refused = open_with(&app, SECRETS_KEY).await.err().expect("refused");
    assert!(refused.contains("not in the secrets key file"), "{refused}");
    pool.close().await;
}
