//! The first admin API key: from the environment, from `<data-dir>/admin-api-key`, or generated
//! into that file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::ControlError;
use crate::passwords::{api_key_hash, api_key_prefix, generate_api_key};
use crate::store::{NewApiKey, Store};

/// Name of the file the generated admin key is written to, in the data directory.
pub const ADMIN_KEY_FILE: &str = "admin-api-key";

/// Where the admin API key came from at this start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminKeySource {
    /// `WHARF_ADMIN_API_KEY` was set; its hash is stored.
    FromEnvironment,
    /// No key existed: one was generated and written to `path` (mode 0600).
    Generated { path: PathBuf, key: String },
    /// `path` holds a key (written by an earlier start or by the operator); its hash is stored.
    ExistingFile { path: PathBuf },
    /// Keys exist in the database and neither the environment nor the file names one.
    AlreadyProvisioned,
}

pub(crate) async fn bootstrap(
    store: &Store,
    data_dir: &Path,
    env_key: Option<&str>,
) -> Result<AdminKeySource, ControlError> {
    let path = data_dir.join(ADMIN_KEY_FILE);
    if let Some(key) = env_key.map(str::trim).filter(|k| !k.is_empty()) {
        if key.chars().count() < 20 {
            tracing::warn!(
                "WHARF_ADMIN_API_KEY is short; API keys are checked with a fast hash, so use a \
                 long random key (at least 32 characters)"
            );
        }
        store_key(store, key, "admin (WHARF_ADMIN_API_KEY)").await?;
        return Ok(AdminKeySource::FromEnvironment);
    }
    match fs::read_to_string(&path) {
        Ok(contents) => {
            let key = contents.trim();
            if key.is_empty() {
                return Err(ControlError::Config(format!(
                    "{} is empty: delete it to generate a new key, or put a key in it",
                    path.display()
                )));
            }
            warn_if_readable_by_others(&path);
            store_key(store, key, "admin (admin-api-key file)").await?;
            return Ok(AdminKeySource::ExistingFile { path });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ControlError::Io {
                action: "read",
                path,
                source,
            });
        }
    }
    if store.count_api_keys().await? > 0 {
        return Ok(AdminKeySource::AlreadyProvisioned);
    }
    let key = generate_api_key();
    // The file first: if storing the hash fails, the next start finds the file and stores it.
    let written = fs::create_dir_all(data_dir).and_then(|()| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        writeln!(file, "{key}")?;
        file.sync_all()
    });
    match written {
        Ok(()) => {}
        // Another control plane sharing this data directory won the race: use its key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Box::pin(bootstrap(store, data_dir, None)).await;
        }
        Err(source) => {
            return Err(ControlError::Io {
                action: "write",
                path,
                source,
            });
        }
    }
    store_key(store, &key, "admin (generated)").await?;
    tracing::info!(path = %path.display(), "generated the admin API key");
    Ok(AdminKeySource::Generated { path, key })
}

async fn store_key(store: &Store, key: &str, name: &str) -> Result<(), ControlError> {
    let added = store
        .insert_api_key_if_absent(&NewApiKey {
            name: name.to_owned(),
            prefix: api_key_prefix(key),
            hash: api_key_hash(key),
        })
        .await?;
    if added {
        tracing::info!(name, prefix = %api_key_prefix(key), "stored an admin API key");
    }
    Ok(())
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(),
            "the admin API key file is readable by other users; chmod 600 it");
    }
}
