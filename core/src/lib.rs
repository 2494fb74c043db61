//! Proxima's core: the vocabulary shared by the native server and the browser cache.
//!
//! Nothing in this crate touches the file system, the network or FAISS, so it builds for
//! `wasm32-unknown-unknown` as well as for the server. It owns:
//!
//! * the data types ([`VectorId`], [`Metric`], [`IndexSpec`], [`SearchParams`],
//!   [`ConsistencyLevel`], [`Hit`]) and the typed [`Error`];
//! * index requests with their defaults and `AUTO` ([`IndexRequest`], [`request`]);
//! * the [`VectorIndex`] trait every backend implements (FAISS and DiskANN on the server,
//!   the HNSW cache in the browser) and [`ExactIndex`], the brute-force reference;
//! * memory sizing ([`sizing`]) and the index advisor ([`advisor`]);
//! * exact batched search and recall ([`exact`]);
//! * the browser/edge cache's index: an HNSW graph with deletes, SQ8 and a byte format ([`hnsw`]);
//! * the sync protocol types ([`sync`]);
//! * with the `formats` feature, readers and writers for `.fvecs`/`.fbin`/`.npy` ([`formats`]).

pub mod advisor;
pub mod bitmap;
pub mod consistency;
pub mod crc32;
pub mod error;
pub mod exact;
#[cfg(feature = "formats")]
pub mod formats;
pub mod hnsw;
pub mod index;
pub mod metric;
pub mod params;
pub mod request;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
pub mod sizing;
pub mod spec;
pub mod sync;
pub mod validate;

pub use bitmap::Bitmap;
pub use consistency::ConsistencyLevel;
pub use error::{Error, Result};
pub use exact::{recall_at_k, ExactIndex};
pub use index::{Hit, VectorId, VectorIndex};
pub use metric::Metric;
pub use params::{SearchLimits, SearchParams};
pub use request::{IndexRequest, IndexType};
pub use spec::IndexSpec;
