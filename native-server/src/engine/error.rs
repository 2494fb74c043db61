//! The engine's typed error.

use std::path::PathBuf;

use proxima_core::Error as CoreError;
use thiserror::Error;

use crate::index::gpu::GpuError;

/// Result alias with [`EngineError`].
pub type EngineResult<T> = Result<T, EngineError>;

/// Everything the storage engine can fail with.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Bad vectors, ids or parameters (dimension, NaN, k, index params, …).
    #[error(transparent)]
    Invalid(#[from] CoreError),

    #[error("collection {name:?} does not exist")]
    CollectionNotFound { name: String },

    #[error("collection {name:?} already exists")]
    CollectionExists { name: String },

    #[error("alias {name:?} does not exist")]
    AliasNotFound { name: String },

    /// A collection may not take the name of an alias.
    #[error("{name:?} is an alias (of collection {collection:?}): a collection may not have an alias's name; delete the alias first")]
    NameIsAlias { name: String, collection: String },

    /// An alias may not take the name of a collection.
    #[error("{name:?} is a collection: an alias may not have a collection's name")]
    NameIsCollection { name: String },

    /// A drop of a collection that aliases point to.
    #[error("collection {name:?} has aliases ({}): delete them or switch them to another collection first", aliases.join(", "))]
    CollectionHasAliases { name: String, aliases: Vec<String> },

    #[error("invalid collection name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("this collection assigns ids itself (auto_id): do not send ids")]
    IdsNotAllowed,

    #[error("this collection needs an id for every vector (auto_id is off)")]
    IdsRequired,

    #[error("id {id} does not exist")]
    IdNotFound { id: u64 },

    #[error(
        "consistency wait timed out: needed sequence {required}, applied {applied} after {waited_ms} ms"
    )]
    ConsistencyTimeout {
        required: u64,
        applied: u64,
        waited_ms: u64,
    },

    #[error(
        "session_seq {session_seq} is ahead of this collection's newest acknowledged write ({committed}): it belongs to another collection, or its writes were lost"
    )]
    SessionAhead { session_seq: u64, committed: u64 },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The disk (or the user's quota) is full: the write, checkpoint or file it names was not
    /// made. Nothing unwritten is acknowledged; free space and retry. Every I/O error goes
    /// through [`EngineError::from_io`], which makes these of `ENOSPC` and `EDQUOT`.
    #[error("{context}: out of disk space: {source}")]
    OutOfDisk {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("corrupt file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error("the collection is closed")]
    Closed,

    /// The request was abandoned (its client disconnected, or the server is stopping).
    #[error("the request was cancelled")]
    Cancelled,

    /// The request ran past its deadline (`--request-timeout`).
    #[error(
        "the request did not finish within {timeout_ms} ms (--request-timeout): it was stopped"
    )]
    DeadlineExceeded { timeout_ms: u64 },

    #[error(
        "a snapshot of {vectors} vectors would take about {bytes} bytes, above the limit of {limit} bytes (--snapshot-max-bytes): ask for a subset (?limit= or ?id_min=&id_max=) or store SQ8 (?storage=sq8)"
    )]
    SnapshotTooLarge {
        vectors: u64,
        bytes: u64,
        limit: u64,
    },

    /// A change feed request the retained log cannot answer without a hole.
    #[error("snapshot required: {reason}")]
    SnapshotRequired {
        reason: String,
        handle: String,
        horizon: u64,
        head: u64,
    },

    /// The configured GPU cannot be used (missing, unsupported, or no GPU support built in).
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

impl EngineError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Invalid(e) => e.code(),
            EngineError::CollectionNotFound { .. } => "collection_not_found",
            EngineError::CollectionExists { .. } => "collection_exists",
            EngineError::AliasNotFound { .. } => "alias_not_found",
            EngineError::NameIsAlias { .. } => "name_is_alias",
            EngineError::NameIsCollection { .. } => "name_is_collection",
            EngineError::CollectionHasAliases { .. } => "collection_has_aliases",
            EngineError::InvalidName { .. } => "invalid_name",
            EngineError::IdsNotAllowed => "ids_not_allowed",
            EngineError::IdsRequired => "ids_required",
            EngineError::IdNotFound { .. } => "id_not_found",
            EngineError::ConsistencyTimeout { .. } => "consistency_timeout",
            EngineError::SessionAhead { .. } => "session_seq_ahead",
            EngineError::Io { source, .. } if is_out_of_disk(source) => "out_of_disk",
            EngineError::OutOfDisk { .. } => "out_of_disk",
            EngineError::Io { .. } => "io_error",
            EngineError::Corrupt { .. } => "corrupt_data",
            EngineError::Closed => "closed",
            EngineError::Cancelled => "cancelled",
            EngineError::DeadlineExceeded { .. } => "request_timeout",
            EngineError::Gpu(_) => "gpu_unavailable",
            EngineError::SnapshotTooLarge { .. } => "snapshot_too_large",
            EngineError::SnapshotRequired { .. } => "snapshot_required",
        }
    }

    /// The error's class, for mapping onto protocol status codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Invalid(e) if e.is_client_error() => ErrorKind::BadRequest,
            EngineError::Invalid(_) => ErrorKind::Internal,
            EngineError::CollectionNotFound { .. }
            | EngineError::AliasNotFound { .. }
            | EngineError::IdNotFound { .. } => ErrorKind::NotFound,
            EngineError::CollectionExists { .. }
            | EngineError::NameIsAlias { .. }
            | EngineError::NameIsCollection { .. }
            | EngineError::CollectionHasAliases { .. }
            | EngineError::SnapshotRequired { .. } => ErrorKind::Conflict,
            EngineError::SnapshotTooLarge { .. } => ErrorKind::TooLarge,
            EngineError::InvalidName { .. }
            | EngineError::IdsNotAllowed
            | EngineError::IdsRequired
            | EngineError::SessionAhead { .. } => ErrorKind::BadRequest,
            EngineError::ConsistencyTimeout { .. }
            | EngineError::Closed
            | EngineError::Cancelled
            | EngineError::DeadlineExceeded { .. } => ErrorKind::Unavailable,
            EngineError::Io { source, .. } if is_out_of_disk(source) => ErrorKind::OutOfDisk,
            EngineError::OutOfDisk { .. } => ErrorKind::OutOfDisk,
            EngineError::Io { .. } | EngineError::Corrupt { .. } | EngineError::Gpu(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// An I/O error while doing `context` (e.g. "write <file>"): [`EngineError::OutOfDisk`]
    /// when the disk or quota is full ([`is_out_of_disk`]), else [`EngineError::Io`].
    pub fn from_io(context: impl Into<String>, source: std::io::Error) -> EngineError {
        let context = context.into();
        if is_out_of_disk(&source) {
            EngineError::OutOfDisk { context, source }
        } else {
            EngineError::Io { context, source }
        }
    }

    /// [`EngineError::from_io`] for `map_err`.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
        let context = context.into();
        move |source| EngineError::from_io(context, source)
    }
}

impl From<std::io::Error> for EngineError {
    fn from(source: std::io::Error) -> Self {
        EngineError::from_io("I/O", source)
    }
}

/// Whether `e` says the disk or the quota is full: `ENOSPC` (`StorageFull`) or `EDQUOT`
/// (`QuotaExceeded`), also as the cause inside another I/O error (a library's wrapper).
pub fn is_out_of_disk(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as Io;
    #[cfg(unix)]
    let raw = matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
    #[cfg(not(unix))]
    let raw = false;
    if raw || matches!(e.kind(), Io::StorageFull | Io::QuotaExceeded) {
        return true;
    }
    let mut cause = e.get_ref().map(|c| c as &(dyn std::error::Error + 'static));
    while let Some(c) = cause {
        if let Some(inner) = c.downcast_ref::<std::io::Error>() {
            return is_out_of_disk(inner);
        }
        cause = c.source();
    }
    false
}

/// Coarse error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    Conflict,
    /// The answer would be too large (HTTP 413).
    TooLarge,
    Unavailable,
    /// The disk or quota is full (HTTP 507 Insufficient Storage).
    OutOfDisk,
    Internal,
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn a_full_disk_is_out_of_disk_wherever_it_comes_from() {
        let full = [
            io::Error::from_raw_os_error(28),  // ENOSPC
            io::Error::from_raw_os_error(122), // EDQUOT
            io::Error::from(io::ErrorKind::StorageFull),
            io::Error::from(io::ErrorKind::QuotaExceeded),
            // A library's error around the OS error (tempfile, a writer's wrapper).
            io::Error::other(io::Error::from_raw_os_error(28)),
            io::Error::other(io::Error::new(io::ErrorKind::StorageFull, "flush failed")),
        ];
        for source in full {
            let shown = source.to_string();
            assert!(is_out_of_disk(&source), "{shown}");
            let e = EngineError::from_io("append to the write-ahead log", source);
            assert!(matches!(e, EngineError::OutOfDisk { .. }), "{shown}: {e:?}");
            assert_eq!((e.code(), e.kind()), ("out_of_disk", ErrorKind::OutOfDisk));
            assert!(
                e.to_string()
                    .starts_with("append to the write-ahead log: out of disk space: "),
                "{e}"
            );
        }
        // The helper every call site uses, the `?` conversion, and an `Io` made by hand.
        let e = EngineError::io("write manifest.tmp")(io::Error::from_raw_os_error(28));
        assert_eq!(e.code(), "out_of_disk");
        let e: EngineError = io::Error::from_raw_os_error(28).into();
        assert_eq!(e.code(), "out_of_disk");
        let e = EngineError::Io {
            context: "fsync".into(),
            source: io::Error::from_raw_os_error(28),
        };
        assert_eq!((e.code(), e.kind()), ("out_of_disk", ErrorKind::OutOfDisk));
    }

    #[test]
    fn other_io_errors_stay_internal() {
        for source in [
            io::Error::from_raw_os_error(5), // EIO
            io::Error::from_raw_os_error(2), // ENOENT
            io::Error::from(io::ErrorKind::PermissionDenied),
            io::Error::other("no space left on device, says a message"),
        ] {
            let shown = source.to_string();
            assert!(!is_out_of_disk(&source), "{shown}");
            let e = EngineError::from_io("write rows.bin", source);
            assert_eq!(
                (e.code(), e.kind()),
                ("io_error", ErrorKind::Internal),
                "{shown}"
            );
        }
    }
}
