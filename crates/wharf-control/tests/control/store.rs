//! [`Store`] on both databases.

use std::collections::BTreeMap;

use chrono::Duration;
use wharf_control::store::{NewApiKey, NewUser, Store, StoreError, UserChanges};
use wharf_core::{BucketName, HomeDirectory, Permissions, Username};

use crate::common::{KEY, TestDb};

crate::on_both_databases!(
    store_migrations_are_idempotent,
    store_buckets,
    store_users,
    store_user_paging_order,
    store_api_keys,
);

fn name(s: &str) -> Username {
    Username::parse(s).unwrap()
}

fn new_user(username: &str, bucket: &BucketName) -> NewUser {
    NewUser {
        username: name(username),
        description: format!("User {username}"),
        home_directory: HomeDirectory::parse(&format!("/{username}")).unwrap(),
        bucket_name: bucket.clone(),
        permissions: Permissions::ReadWrite,
        password_hash: "$argon2id$fake".into(),
        password_enabled: true,
        public_keys: vec![],
        max_sessions: 10,
        created_at: wharf_control::store::now(),
    }
}

async fn store_migrations_are_idempotent(db: TestDb) {
    let first = Store::connect(&db.url).await.unwrap();
    first.ping().await.unwrap();
    if let Some(file) = db.url.strip_prefix("sqlite://") {
        // Created on first use, in WAL mode.
        assert!(std::path::Path::new(file).is_file());
        assert!(std::path::Path::new(&format!("{file}-wal")).exists());
    }
    first.ensure_default_bucket("file:///tmp/a").await.unwrap();
    // A second start (or a second replica) finds the schema in place.
    let second = Store::connect(&db.url).await.unwrap();
    assert_eq!(second.list_buckets().await.unwrap().len(), 1);
    first.close().await;
    second.close().await;
}

async fn store_buckets(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    assert!(store.default_bucket().await.unwrap().is_none());
    assert_eq!(
        store.ensure_default_bucket("file:///srv/a").await.unwrap(),
        None
    );
    assert_eq!(
        store.ensure_default_bucket("file:///srv/a").await.unwrap(),
        None
    );
    // The operator moved the default bucket: the old URL is reported.
    assert_eq!(
        store.ensure_default_bucket("file:///srv/b").await.unwrap(),
        Some("file:///srv/a".to_owned())
    );
    let default = store.default_bucket().await.unwrap().unwrap();
    assert_eq!(default.name, BucketName::default_bucket());
    assert_eq!(default.url, "file:///srv/b");
    assert!(default.is_default);

    let options = BTreeMap::from([("aws_region".to_owned(), "eu-west-1".to_owned())]);
    let archive = BucketName::parse("archive").unwrap();
    let inserted = store
        .insert_bucket(&archive, "s3://archive", &options)
        .await
        .unwrap();
    assert!(!inserted.is_default);
    assert!(matches!(
        store.insert_bucket(&archive, "s3://x", &options).await,
        Err(StoreError::Conflict)
    ));
    let fetched = store.get_bucket(&archive).await.unwrap().unwrap();
    assert_eq!(fetched, inserted);
    assert_eq!(fetched.storage().options, options);
    let names: Vec<String> = store
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name.to_string())
        .collect();
    assert_eq!(names, ["archive", "default"]);
    assert!(
        store
            .get_bucket(&BucketName::parse("nope").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

async fn store_users(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    store.ensure_default_bucket("file:///srv/a").await.unwrap();
    let bucket = BucketName::default_bucket();

    let mut alice = new_user("alice", &bucket);
    alice.public_keys = vec![KEY.to_owned()];
    alice.permissions = Permissions::WriteOnly;
    let inserted = store.insert_user(&alice).await.unwrap();
    assert_eq!(inserted.created_at, inserted.updated_at);
    assert!(!inserted.disabled);
    assert!(matches!(
        store.insert_user(&alice).await,
        Err(StoreError::Conflict)
    ));
    let orphan = new_user("orphan", &BucketName::parse("missing").unwrap());
    assert!(matches!(
        store.insert_user(&orphan).await,
        Err(StoreError::MissingReference)
    ));

    let fetched = store.get_user(&name("alice")).await.unwrap().unwrap();
    assert_eq!(fetched, inserted);
    assert_eq!(fetched.public_keys, [KEY]);
    assert_eq!(fetched.permissions, Permissions::WriteOnly);
    assert!(store.get_user(&name("nobody")).await.unwrap().is_none());
    let (user, bucket_record) = store
        .get_user_with_bucket(&name("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user, inserted);
    assert_eq!(bucket_record.url, "file:///srv/a");

    // Partial updates leave the other fields alone.
    let later = inserted.created_at + Duration::seconds(5);
    let updated = store
        .update_user(
            &name("alice"),
            &UserChanges {
                description: Some("Alice Ltd".into()),
                disabled: Some(true),
                ..Default::default()
            },
            later,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.description, "Alice Ltd");
    assert!(updated.disabled);
    assert_eq!(updated.home_directory, inserted.home_directory);
    assert_eq!(updated.public_keys, [KEY]);
    assert_eq!(updated.permissions, Permissions::WriteOnly);
    assert_eq!(updated.updated_at, later);
    let updated = store
        .update_user(
            &name("alice"),
            &UserChanges {
                home_directory: Some(HomeDirectory::parse("/new/home").unwrap()),
                permissions: Some(Permissions::ReadOnly),
                public_keys: Some(vec![]),
                disabled: Some(false),
                ..Default::default()
            },
            later,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.description, "Alice Ltd");
    assert_eq!(updated.home_directory.as_str(), "/new/home");
    assert_eq!(updated.permissions, Permissions::ReadOnly);
    assert!(updated.public_keys.is_empty());
    assert!(!updated.disabled);
    assert!(
        store
            .update_user(&name("nobody"), &UserChanges::default(), later)
            .await
            .unwrap()
            .is_none()
    );

    assert!(
        store
            .set_password_hash(&name("alice"), "$argon2id$new", later)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_password_hash(&name("nobody"), "x", later)
            .await
            .unwrap()
    );
    let at = later + Duration::seconds(1);
    store
        .touch_last_connected(&name("alice"), at)
        .await
        .unwrap();
    let fetched = store.get_user(&name("alice")).await.unwrap().unwrap();
    assert_eq!(fetched.password_hash, "$argon2id$new");
    assert_eq!(fetched.last_connected_at, Some(at));

    assert_eq!(store.count_users().await.unwrap(), 1);
    assert!(store.delete_user(&name("alice")).await.unwrap());
    assert!(!store.delete_user(&name("alice")).await.unwrap());
    assert_eq!(store.count_users().await.unwrap(), 0);
}

async fn store_user_paging_order(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    store.ensure_default_bucket("file:///srv/a").await.unwrap();
    let bucket = BucketName::default_bucket();
    // Mixed case and digits: the order must be byte order on both databases.
    let mut names = vec![
        "bob", "Bob", "9lives", "alice", "ALICE", "a-b", "a_b", "a.b",
    ];
    for n in &names {
        store.insert_user(&new_user(n, &bucket)).await.unwrap();
    }
    names.sort();
    let all: Vec<String> = store
        .list_users(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username.to_string())
        .collect();
    assert_eq!(all, names);
    let mut seen = Vec::new();
    let mut after: Option<Username> = None;
    loop {
        let page = store.list_users(after.as_ref(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().username.clone());
        seen.extend(page.into_iter().map(|u| u.username.to_string()));
    }
    assert_eq!(seen, names);
}

async fn store_api_keys(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(store.count_api_keys().await.unwrap(), 0);
    let key = NewApiKey {
        name: "admin".into(),
        prefix: "wharf_abcd".into(),
        hash: "ab".repeat(32),
    };
    assert!(store.insert_api_key_if_absent(&key).await.unwrap());
    assert!(!store.insert_api_key_if_absent(&key).await.unwrap());
    assert_eq!(store.count_api_keys().await.unwrap(), 1);
    let found = store.find_api_key(&key.hash).await.unwrap().unwrap();
    assert_eq!(found.name, "admin");
    assert_eq!(found.prefix, "wharf_abcd");
    assert!(!found.id.is_empty());
    assert!(
        store
            .find_api_key(&"cd".repeat(32))
            .await
            .unwrap()
            .is_none()
    );
}
