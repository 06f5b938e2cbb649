//! Client errors, grouped by what the caller can do about them.

use crate::http::HttpError;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The homeserver could not be reached or refused the request.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The local store failed during an operation.
    #[error("store: {0}")]
    Store(#[from] newt_crypto::store::StoreError),
    /// The local store could not be opened (corrupt file, wrong key).
    #[error(transparent)]
    StoreOpen(#[from] newt_sqlite::OpenError),
    /// The store key file could not be read or made.
    #[error(transparent)]
    KeyFile(#[from] newt_sqlite::KeyFileError),
    /// The crypto account could not be opened.
    #[error(transparent)]
    Account(#[from] newt_crypto::OpenError),
    /// A response could not be applied to the crypto state.
    #[error(transparent)]
    Response(#[from] newt_crypto::ResponseError),
    /// Sync changes could not be applied to the crypto state.
    #[error(transparent)]
    Sync(#[from] newt_crypto::SyncError),
    /// No profile is logged in under the data directory.
    #[error("not logged in (no profile under {0}); run `newt login` first")]
    NotLoggedIn(String),
    /// A profile file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A room operation was refused (not encrypted, plaintext refused, key
    /// not shared).
    #[error("room: {0}")]
    Room(String),
    /// The server's answer broke the protocol.
    #[error("server response: {0}")]
    Protocol(String),
}

impl ClientError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
