//! [`VfsError`]: what can go wrong in a file operation, in terms every protocol can map.

/// A failed file operation. Each protocol maps these to its own codes (SFTP status, FTP reply);
/// the message is safe to show to the partner: it never contains bucket keys outside the home
/// or storage credentials.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file or directory already exists")]
    AlreadyExists,
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("directory not empty")]
    DirectoryNotEmpty,
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// The operation cannot be done on this store or in this order (e.g. a write far outside
    /// the reorder window). The message says what to do instead.
    #[error("operation not supported: {0}")]
    Unsupported(String),
    /// A limit the gateway keeps for every partner's sake was reached (memory held for this
    /// session's or all sessions' out-of-order writes, open files): this request is refused,
    /// the session goes on, and a later retry may succeed. The message says which limit.
    #[error("server busy: {0}")]
    Busy(String),
    /// The object store failed; retrying may help. Logged in full, shown to the partner briefly.
    #[error("storage error: {0}")]
    Storage(#[source] object_store::Error),
    /// The bucket's storage URL or options are unusable.
    #[error("bucket configuration error: {0}")]
    Config(String),
}

impl From<object_store::Error> for VfsError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => VfsError::NotFound,
            object_store::Error::AlreadyExists { .. } => VfsError::AlreadyExists,
            other => match io_error_kind(&other) {
                // LocalFileSystem reports a path below a file, or a file where a directory is,
                // only as a generic error wrapping the OS error; name it like POSIX does.
                Some(std::io::ErrorKind::NotADirectory) => VfsError::NotADirectory,
                Some(std::io::ErrorKind::IsADirectory) => VfsError::IsADirectory,
                _ => VfsError::Storage(other),
            },
        }
    }
}

/// The kind of the first [`std::io::Error`] in `e`'s source chain, if any.
fn io_error_kind(e: &object_store::Error) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}
