//! The typed error shared by every Proxima crate that works with vectors.

use std::fmt;

use thiserror::Error;

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when vectors, indexes or parameters are handed to Proxima.
///
/// Each variant carries the values a caller needs to fix the request; the HTTP layer maps
/// them onto 4xx responses with [`Error::code`] as the machine-readable code.
#[derive(Clone, PartialEq, Error)]
pub enum Error {
    #[error("dimension mismatch: expected {expected} values, got {got}")]
    DimensionMismatch { expected: usize, got: usize },

    #[error("vector data of {len} floats is not a whole number of {dim}-dimensional rows")]
    RaggedBatch { len: usize, dim: usize },

    #[error("non-finite value {} at row {row}, column {col}", non_finite_name(*.value))]
    NonFiniteValue { row: usize, col: usize, value: f32 },

    #[error(
        "row {row} has norm {}, above {}: its distances would overflow 32-bit floats",
        scientific(*.norm),
        scientific(*.max)
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

    #[error("snapshot required: {reason}")]
    SnapshotRequired { reason: String },
}

/// Debug is the code and the message: the same text as Display, without pulling float
/// formatting (about 15 KB) into the browser module.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {self}", self.code())
    }
}

/// "NaN", "inf" or "-inf" (the only values a non-finite error carries).
fn non_finite_name(v: f32) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "inf"
    } else if v < 0.0 {
        "-inf"
    } else {
        "finite"
    }
}

/// `x` as `d.de±N` (two significant digits) using integer formatting only.
pub(crate) fn scientific(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if x == 0.0 {
        return "0".into();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let a = x.abs();
    let mut exp = a.log10().floor() as i32;
    let mut tenths = (a / 10f64.powi(exp) * 10.0).round() as i64;
    if tenths >= 100 {
        tenths /= 10;
        exp += 1;
    }
    format!("{sign}{}.{}e{exp}", tenths / 10, tenths % 10)
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
            Error::SnapshotRequired { .. } => "snapshot_required",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_values_without_float_formatting() {
        let e = Error::NonFiniteValue {
            row: 1,
            col: 2,
            value: f32::NEG_INFINITY,
        };
        assert_eq!(e.to_string(), "non-finite value -inf at row 1, column 2");
        assert_eq!(scientific(1.5e19), "1.5e19");
        assert_eq!(scientific(9.96e18), "1.0e19");
        assert_eq!(scientific(-0.00123), "-1.2e-3");
        assert_eq!(
            format!("{:?}", Error::NotTrained),
            "not_trained: index is not trained: call train before adding vectors"
        );
    }
}
