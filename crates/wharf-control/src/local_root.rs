//! [`LocalBucketRoot`]: the one host directory under which `file://` buckets registered through
//! the API may live (`--local-bucket-root`, by default the data directory's `buckets/`).
//!
//! Whoever holds an API key may register buckets, but must not reach the rest of the host: a
//! bucket on the data directory would expose the admin key, the gateway token, the host keys
//! and the database through the objects API; one on `/etc` or a home directory would expose
//! those. The operator's own `--bucket-url` is not checked: the operator owns the host.

use std::path::{Component, Path, PathBuf};

/// A canonical directory that `file://` buckets must lie strictly inside.
#[derive(Debug, Clone)]
pub struct LocalBucketRoot {
    root: PathBuf,
}

impl LocalBucketRoot {
    /// `root` (which need not exist yet), checked against the data directory `data_dir`: the
    /// root must neither be the data directory nor contain it, and inside the data directory
    /// only `buckets/` holds files (the rest is keys, tokens and the database).
    pub fn new(root: &Path, data_dir: &Path) -> Result<LocalBucketRoot, String> {
        let resolved = std::path::absolute(root)
            .ok()
            .and_then(|root| resolve(&root));
        let root = resolved
            .ok_or_else(|| format!("cannot resolve the local bucket root {}", root.display()))?;
        let data_dir = std::fs::canonicalize(data_dir).map_err(|e| {
            format!(
                "cannot resolve the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        if data_dir.starts_with(&root) {
            return Err(format!(
                "the local bucket root {} contains the data directory {}, whose keys and \
                 database buckets must never reach; choose a directory outside it, or its \
                 buckets/ directory",
                root.display(),
                data_dir.display()
            ));
        }
        if root.starts_with(&data_dir) && !root.starts_with(data_dir.join("buckets")) {
            return Err(format!(
                "the local bucket root {} is inside the data directory {} but not in its \
                 buckets/ directory; the rest of the data directory holds keys and the database",
                root.display(),
                data_dir.display()
            ));
        }
        Ok(LocalBucketRoot { root })
    }

    /// The root, canonical.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Whether a bucket may live in `dir` (absolute, from a `file://` URL): strictly inside the
    /// root, symbolic links of its existing part resolved. Says why not.
    pub fn check(&self, dir: &Path) -> Result<(), String> {
        let resolved = resolve(dir).ok_or_else(|| {
            format!(
                "{} cannot be resolved to a directory (relative, or '..' past a missing \
                 directory)",
                dir.display()
            )
        })?;
        if resolved == self.root || !resolved.starts_with(&self.root) {
            return Err(format!(
                "local buckets live in their own directory under {} (the server's \
                 --local-bucket-root), e.g. file://{}/archive",
                self.root.display(),
                self.root.display()
            ));
        }
        Ok(())
    }
}

/// `dir` with its longest existing ancestor canonicalized (symbolic links resolved) and the
/// rest appended; `None` if it is relative or the rest climbs with `..`.
fn resolve(dir: &Path) -> Option<PathBuf> {
    if !dir.is_absolute() {
        return None;
    }
    let mut existing = dir.to_path_buf();
    let mut missing = Vec::new();
    let canonical = loop {
        match std::fs::canonicalize(&existing) {
            Ok(canonical) => break canonical,
            Err(_) => {
                let name = existing.file_name()?.to_owned();
                missing.push(name);
                existing = existing.parent()?.to_path_buf();
            }
        }
    };
    let mut resolved = canonical;
    for name in missing.into_iter().rev() {
        match Path::new(&name).components().next() {
            Some(Component::Normal(part)) => resolved.push(part),
            _ => return None,
        }
    }
    Some(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_live_strictly_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let data = host.path().join("data");
        std::fs::create_dir_all(data.join("host-keys")).unwrap();
        std::fs::create_dir_all(data.join("buckets")).unwrap();
        let root = LocalBucketRoot::new(&data.join("buckets"), &data).unwrap();
        let inside = root.path().join("archive");
        assert_eq!(root.check(&inside), Ok(()));
        assert_eq!(root.check(&inside.join("deeper/still")), Ok(()));
        for outside in [
            root.path().to_path_buf(),
            data.clone(),
            data.join("host-keys"),
            host.path().to_path_buf(),
            PathBuf::from("/etc"),
            PathBuf::from("/"),
            root.path().join("../host-keys"),
            root.path().join("missing/../../host-keys"),
        ] {
            assert!(root.check(&outside).is_err(), "{}", outside.display());
        }
        assert!(root.check(Path::new("relative/dir")).is_err());

        // A symbolic link inside the root that leads out of it is followed.
        std::os::unix::fs::symlink(&data, root.path().join("escape")).unwrap();
        assert!(root.check(&root.path().join("escape/host-keys")).is_err());
        assert!(root.check(&root.path().join("escape")).is_err());
    }

    #[test]
    fn the_root_never_covers_the_data_directory() {
        let host = tempfile::tempdir().unwrap();
        let data = host.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        assert!(LocalBucketRoot::new(&data, &data).is_err());
        assert!(LocalBucketRoot::new(host.path(), &data).is_err());
        assert!(LocalBucketRoot::new(&data.join("host-keys"), &data).is_err());
        assert!(LocalBucketRoot::new(&data.join("buckets/sub"), &data).is_ok());
        assert!(
            !data.join("buckets").exists(),
            "a root is not created (the default bucket may be elsewhere)"
        );
        assert!(LocalBucketRoot::new(&host.path().join("srv"), &data).is_ok());
    }
}
