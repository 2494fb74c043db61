//! The index abstraction every backend implements.
//!
//! One small trait, [`VectorIndex`], covers what the engine needs from any index: the FAISS
//! indexes and the DiskANN tier of the server, the HNSW cache in the browser and the exact
//! [`ExactIndex`](crate::ExactIndex) reference. Backends keep their own storage; the trait
//! speaks only of row-major `f32` batches, `u64` ids and [`Hit`]s. Persistence goes through
//! [`PersistentIndex`], whose byte streams the caller owns (core does no I/O itself).

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

use crate::bitmap::Bitmap;
use crate::error::Result;
use crate::metric::Metric;
use crate::params::SearchParams;

/// A vector's identifier, unique within a collection.
pub type VectorId = u64;

/// One search result. See [`crate::metric`] for what `score` means per metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: VectorId,
    pub score: f32,
}

/// A searchable set of vectors.
///
/// Batches are row-major: `n` vectors of dimension [`dim`](VectorIndex::dim) are `n * dim`
/// floats. Vectors handed to an index have already been validated (finite, right dimension)
/// and prepared for the metric (normalised for cosine) by the caller.
pub trait VectorIndex: Send + Sync {
    /// Dimension of every vector.
    fn dim(&self) -> usize;

    /// The metric scores are computed with.
    fn metric(&self) -> Metric;

    /// Number of vectors stored (including ones a filter may hide).
    fn len(&self) -> usize;

    /// True when no vector is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the index can accept vectors (indexes without a training step always can).
    fn is_trained(&self) -> bool {
        true
    }

    /// Learns the index's quantisers or lists from sample vectors. A no-op for indexes that
    /// need no training; fails with [`Error::TooFewTrainingVectors`](crate::Error) when the
    /// sample is too small.
    fn train(&mut self, _vectors: &[f32]) -> Result<()> {
        Ok(())
    }

    /// Adds vectors with the given ids (one id per row).
    fn add(&mut self, ids: &[VectorId], vectors: &[f32]) -> Result<()>;

    /// Removes the given ids; returns how many were present. Indexes that cannot remove in
    /// place return [`Error::Unsupported`](crate::Error) and rely on a filter instead.
    fn remove(&mut self, ids: &[VectorId]) -> Result<usize>;

    /// Searches a batch of queries, returning up to `params.k` hits per query, best first.
    ///
    /// With `filter`, only ids whose bit is set in the bitmap may be returned (ids are bit
    /// positions). The filter is applied inside the search, so a query still gets `k` hits
    /// whenever `k` allowed vectors exist.
    fn search(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: Option<&Bitmap>,
    ) -> Result<Vec<Vec<Hit>>>;

    /// Bytes of memory the index holds (vectors, codes, graph, lists).
    fn memory_bytes(&self) -> usize;
}

/// Persistence hooks: an index writes itself to, and reads itself from, a byte stream the
/// caller provides (a file on the server, an `ArrayBuffer` in the browser).
pub trait PersistentIndex: VectorIndex + Sized {
    /// Serialises the whole index.
    fn write_to(&self, out: &mut dyn Write) -> Result<()>;

    /// Reads an index written by [`write_to`](PersistentIndex::write_to).
    fn read_from(input: &mut dyn Read) -> Result<Self>;
}
