//! The typed error shared by every Proxima crate that works with vectors.

use thiserror::Error;

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when vectors, indexes or parameters are handed to Proxima.
///
/// Each variant carries the values a caller needs to fix the request; the HTTP layer maps
/// them onto 4xx responses with [`Error::code`] as the machine-readable code.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    #[error("dimension mismatch: expected {expected} values, got {got}")]
    DimensionMismatch { expected: usize, got: usize },

    #[error("vector data of {len} floats is not a whole number of {dim}-dimensional rows")]
    RaggedBatch { len: usize, dim: usize },

    #[error("non-finite value {value} at row {row}, column {col}")]
    NonFiniteValue { row: usize, col: usize, value: f32 },

    #[error(
        "row {row} has norm {norm:e}, above {max:e}: its distances would overflow 32-bit floats"
    )]
    VectorTooLarge { row: usize, norm: f64, max: f64 },

    #[error("row {row} is a zero vector: cosine similarity is undefined for it")]
    ZeroVector { row: usize },

    #[error("k = {k} is out of range: it must be between 1 and {max}")]
    KOutOfRange { k: usize, max: usize },

    #[error(
        "{queries} queries × k = {k} asks for more than {max} hits in one request: send fewer queries per request or a smaller k"
    )]
    ResultTooLarge {
        queries: usize,
        k: usize,
        max: usize,
    },

    #[error("empty batch: at least one {what} is required")]
    EmptyBatch { what: &'static str },

    #[error("{got} ids were given for {expected} vectors")]
    IdCountMismatch { expected: usize, got: usize },

    #[error(
        "too few training vectors for {nlist} lists: needed at least {needed} (39 per k-means centroid: nlist, and 2^nbits for PQ), got {got}"
    )]
    TooFewTrainingVectors {
        needed: usize,
        got: usize,
        nlist: usize,
    },

    #[error("index is not trained: call train before adding vectors")]
    NotTrained,

    #[error("unknown id {id}")]
    UnknownId { id: u64 },

    #[error("duplicate id {id} in one batch")]
    DuplicateId { id: u64 },

    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        reason: String,
    },

    #[error("unsupported operation {operation} for {index}")]
    Unsupported {
        operation: &'static str,
        index: String,
    },

    #[error("malformed {format} data: {reason}")]
    Malformed {
        format: &'static str,
        reason: String,
    },

    #[error("index backend failed: {message}")]
    Backend { message: String },
}

impl Error {
    /// A stable, machine-readable code (`snake_case`) for API responses and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Error::DimensionMismatch { .. } => "dimension_mismatch",
            Error::RaggedBatch { .. } => "ragged_batch",
            Error::NonFiniteValue { .. } => "non_finite_value",
            Error::VectorTooLarge { .. } => "vector_too_large",
            Error::ZeroVector { .. } => "zero_vector",
            Error::KOutOfRange { .. } => "k_out_of_range",
            Error::ResultTooLarge { .. } => "result_too_large",
            Error::EmptyBatch { .. } => "empty_batch",
            Error::IdCountMismatch { .. } => "id_count_mismatch",
            Error::TooFewTrainingVectors { .. } => "too_few_training_vectors",
            Error::NotTrained => "not_trained",
            Error::UnknownId { .. } => "unknown_id",
            Error::DuplicateId { .. } => "duplicate_id",
            Error::InvalidParameter { .. } => "invalid_parameter",
            Error::Unsupported { .. } => "unsupported",
            Error::Malformed { .. } => "malformed",
            Error::Backend { .. } => "backend_error",
        }
    }

    /// True when the caller sent something wrong (a 4xx), false for internal faults.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Error::Backend { .. })
    }

    /// Shorthand for [`Error::InvalidParameter`].
    pub fn invalid(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
