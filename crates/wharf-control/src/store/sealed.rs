//! The columns kept sealed ([`crate::secrets`]): bucket options and webhook secrets, and the
//! check row that ties a database to its secrets key (the `secret_key_check` migration).

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::Row;
use sqlx::any::AnyRow;
use wharf_core::BucketName;

use super::{Store, StoreError};
use crate::secrets::SecretKeys;

/// Bucket options as stored for an empty map: nothing to hide, kept in clear.
const NO_OPTIONS: &str = "{}";

fn options_context(bucket: &str) -> String {
    format!("buckets.options:{bucket}")
}

fn webhook_secret_context(id: &str) -> String {
    format!("webhooks.secret:{id}")
}

impl Store {
    /// Seals secrets from now on with `keys` (call before cloning the store).
    pub fn set_secret_keys(&mut self, keys: Arc<SecretKeys>) {
        self.secrets = Some(keys);
    }

    fn seal(&self, context: &str, plaintext: &str) -> String {
        match &self.secrets {
            Some(keys) => keys.seal(context, plaintext),
            None => plaintext.to_owned(),
        }
    }

    fn open(&self, context: &str, stored: &str) -> Result<String, StoreError> {
        match &self.secrets {
            Some(keys) => Ok(keys.open(context, stored)?),
            None if stored.starts_with("wharf-sealed:") => Err(StoreError::Corrupt {
                table: "secrets",
                detail: format!("{context} is sealed and no secrets key is loaded"),
            }),
            None => Ok(stored.to_owned()),
        }
    }

    /// A bucket's options as stored: JSON, sealed unless empty.
    pub(super) fn seal_options(
        &self,
        bucket: &BucketName,
        options: &BTreeMap<String, String>,
    ) -> String {
        if options.is_empty() {
            return NO_OPTIONS.to_owned();
        }
        let json = serde_json::to_string(options).expect("a string map serialises");
        self.seal(&options_context(bucket.as_str()), &json)
    }

    /// The options of the bucket in `row` (columns `name`, `options`).
    pub(super) fn open_options(
        &self,
        row: &AnyRow,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let name: String = row.try_get("name")?;
        let stored: String = row.try_get("options")?;
        let json = self.open(&options_context(&name), &stored)?;
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
            table: "buckets",
            detail: format!("options: {e}"),
        })
    }

    /// A webhook's signing secret as stored.
    pub(super) fn seal_webhook_secret(&self, id: &str, secret: &str) -> String {
        self.seal(&webhook_secret_context(id), secret)
    }

    /// The signing secret of the webhook `id` from its stored form.
    pub(super) fn open_webhook_secret(&self, id: &str, stored: &str) -> Result<String, StoreError> {
        self.open(&webhook_secret_context(id), stored)
    }

    /// The sealed check value of this database, recording `proposed` if there is none yet
    /// (the first control plane to start on a database decides its key).
    pub(crate) async fn secret_key_check(&self, proposed: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO secret_key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(proposed)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT sealed FROM secret_key_check WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("sealed")?)
    }

    /// Replaces the check value `old` (sealed with an older key) with `new`.
    pub(crate) async fn replace_secret_key_check(
        &self,
        old: &str,
        new: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE secret_key_check SET sealed = $2 WHERE id = 1 AND sealed = $1")
            .bind(old)
            .bind(new)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Seals with the first of `keys` every bucket options and webhook secret that is not
    /// sealed with it (in clear from before encryption at rest, or sealed with an older key).
    /// Each row is updated only if it did not change meanwhile. Returns how many were.
    pub(crate) async fn reseal_secrets(&self, keys: &SecretKeys) -> Result<usize, StoreError> {
        let buckets = self
            .reseal_column(
                keys,
                "SELECT name AS row_key, options AS sealed FROM buckets",
                "UPDATE buckets SET options = $3 WHERE name = $1 AND options = $2",
                options_context,
            )
            .await?;
        let webhooks = self
            .reseal_column(
                keys,
                "SELECT id AS row_key, secret AS sealed FROM webhooks",
                "UPDATE webhooks SET secret = $3 WHERE id = $1 AND secret = $2",
                webhook_secret_context,
            )
            .await?;
        Ok(buckets + webhooks)
    }

    /// [`Store::reseal_secrets`] for one column: `select` reads `(row_key, sealed)`, `update`
    /// takes the row key, the value read and the new value.
    async fn reseal_column(
        &self,
        keys: &SecretKeys,
        select: &'static str,
        update: &'static str,
        context: fn(&str) -> String,
    ) -> Result<usize, StoreError> {
        let mut resealed = 0;
        for row in sqlx::query(select).fetch_all(&self.pool).await? {
            let row_key: String = row.try_get("row_key")?;
            let stored: String = row.try_get("sealed")?;
            // Empty bucket options are kept in clear: there is nothing to hide.
            if stored == NO_OPTIONS || !keys.needs_sealing(&stored) {
                continue;
            }
            let context = context(&row_key);
            let sealed = keys.seal(&context, &keys.open(&context, &stored)?);
            resealed += sqlx::query(update)
                .bind(&row_key)
                .bind(&stored)
                .bind(sealed)
                .execute(&self.pool)
                .await?
                .rows_affected() as usize;
        }
        Ok(resealed)
    }
}
