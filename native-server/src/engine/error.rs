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
            EngineError::Io { .. } | EngineError::Corrupt { .. } | EngineError::Gpu(_) => {
                ErrorKind::Internal
            }
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
        let context = context.into();
        move |source| EngineError::Io { context, source }
    }
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
    Internal,
}
