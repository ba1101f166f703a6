//! Bootstrapping the first admin API key.

use std::os::unix::fs::PermissionsExt;

use wharf_control::{AdminKeySource, ControlPlane};

use crate::common::{TestDb, config};

crate::on_both_databases!(
    admin_key_is_generated_once,
    admin_key_from_environment,
    admin_key_from_existing_file,
);

async fn status_with(key: &str, control: &ControlPlane) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/users", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, control.router()).into_future());
    let status = reqwest::Client::new()
        .get(url)
        .header("authorization", format!("Key {key}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    server.abort();
    status
}

async fn admin_key_is_generated_once(db: TestDb) {
    let data_dir = tempfile::tempdir().unwrap();
    let control = ControlPlane::open(config(&db, data_dir.path()))
        .await
        .unwrap();
    let (path, key) = match control.bootstrap_admin_key(None).await.unwrap() {
        AdminKeySource::Generated { path, key } => (path, key),
        other => panic!("expected a generated key, got {other:?}"),
    };
    assert_eq!(path, data_dir.path().join("admin-api-key"));
    assert!(key.starts_with("wharf_"));
    assert_eq!(key.len(), 46);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), key);
    assert_eq!(status_with(&key, &control).await, 200);
    assert_eq!(status_with("wharf_not_the_key", &control).await, 401);

    // The next start finds the file and keeps the key.
    let again = ControlPlane::open(config(&db, data_dir.path()))
        .await
        .unwrap();
    assert_eq!(
        again.bootstrap_admin_key(None).await.unwrap(),
        AdminKeySource::ExistingFile { path: path.clone() }
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), key);
    assert_eq!(again.store().count_api_keys().await.unwrap(), 1);
    assert_eq!(status_with(&key, &again).await, 200);

    // Without the file, keys in the database are enough: nothing new is generated.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        again.bootstrap_admin_key(None).await.unwrap(),
        AdminKeySource::AlreadyProvisioned
    );
    assert!(!path.exists());
    assert_eq!(status_with(&key, &again).await, 200);
}

async fn admin_key_from_environment(db: TestDb) {
    let data_dir = tempfile::tempdir().unwrap();
    let control = ControlPlane::open(config(&db, data_dir.path()))
        .await
        .unwrap();
    let key = "an-operator-chosen-key-0123456789abcdef";
    for _ in 0..2 {
        assert_eq!(
            control.bootstrap_admin_key(Some(key)).await.unwrap(),
            AdminKeySource::FromEnvironment
        );
    }
    assert_eq!(control.store().count_api_keys().await.unwrap(), 1);
    assert!(!data_dir.path().join("admin-api-key").exists());
    assert_eq!(status_with(key, &control).await, 200);
    // An empty variable counts as unset.
    assert!(matches!(
        control.bootstrap_admin_key(Some("  ")).await.unwrap(),
        AdminKeySource::AlreadyProvisioned
    ));
}

async fn admin_key_from_existing_file(db: TestDb) {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path().join("admin-api-key");
    let key = "wharf_operatorProvidedKeyInAFile0123456789";
    std::fs::write(&path, format!("{key}\n")).unwrap();
    let control = ControlPlane::open(config(&db, data_dir.path()))
        .await
        .unwrap();
    assert_eq!(
        control.bootstrap_admin_key(None).await.unwrap(),
        AdminKeySource::ExistingFile { path: path.clone() }
    );
    assert_eq!(status_with(key, &control).await, 200);
    // An empty file is a configuration error, not a silent new key.
    std::fs::write(&path, "\n").unwrap();
    assert!(control.bootstrap_admin_key(None).await.is_err());
}
