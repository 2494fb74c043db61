//! Index specifications: which index a collection or segment builds, with its parameters.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::{Error, Result};

/// FAISS (and the seed) want at least this many training vectors per IVF list / PQ centroid.
pub const MIN_TRAINING_POINTS_PER_CENTROID: usize = 39;

/// The index a segment builds. Serialised as `{"type": "IVF_FLAT", "params": {"nlist": 1024}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "params", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IndexSpec {
    /// Exact search over raw vectors.
    Flat,
    /// Inverted file with `nlist` k-means lists holding raw vectors.
    IvfFlat { nlist: usize },
    /// Inverted file with 8-bit scalar-quantised vectors (4x smaller than raw).
    #[serde(rename = "IVF_SQ8")]
    IvfSq8 { nlist: usize },
    /// Inverted file with product-quantised codes: `m` sub-quantisers of `nbits` bits each.
    IvfPq {
        nlist: usize,
        m: usize,
        nbits: usize,
    },
    /// Hierarchical navigable small-world graph over raw vectors.
    Hnsw { m: usize, ef_construction: usize },
    /// HNSW graph over 8-bit scalar-quantised vectors.
    #[serde(rename = "HNSW_SQ8")]
    HnswSq8 { m: usize, ef_construction: usize },
    /// DiskANN (Vamana graph on SSD, PQ codes in RAM).
    #[serde(rename = "DISKANN")]
    DiskAnn {
        max_degree: usize,
        search_list: usize,
        pq_bytes: usize,
    },
}

impl IndexSpec {
    /// The upper-case type name used in APIs (`IVF_FLAT`, `HNSW`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            IndexSpec::Flat => "FLAT",
            IndexSpec::IvfFlat { .. } => "IVF_FLAT",
            IndexSpec::IvfSq8 { .. } => "IVF_SQ8",
            IndexSpec::IvfPq { .. } => "IVF_PQ",
            IndexSpec::Hnsw { .. } => "HNSW",
            IndexSpec::HnswSq8 { .. } => "HNSW_SQ8",
            IndexSpec::DiskAnn { .. } => "DISKANN",
        }
    }

    /// Number of inverted lists, for IVF indexes.
    pub fn nlist(&self) -> Option<usize> {
        match *self {
            IndexSpec::IvfFlat { nlist }
            | IndexSpec::IvfSq8 { nlist }
            | IndexSpec::IvfPq { nlist, .. } => Some(nlist),
            _ => None,
        }
    }

    /// True when the index holds compressed vectors (IVF_SQ8, IVF_PQ, HNSW_SQ8, DISKANN): its
    /// scores are approximate, and a search may re-rank its candidates exactly
    /// ([`crate::params::SearchParams::refine_factor`]).
    pub fn is_compressed(&self) -> bool {
        matches!(
            self,
            IndexSpec::IvfSq8 { .. }
                | IndexSpec::IvfPq { .. }
                | IndexSpec::HnswSq8 { .. }
                | IndexSpec::DiskAnn { .. }
        )
    }

    /// True when the index must be trained on sample vectors before vectors can be added.
    pub fn needs_training(&self) -> bool {
        matches!(
            self,
            IndexSpec::IvfFlat { .. }
                | IndexSpec::IvfSq8 { .. }
                | IndexSpec::IvfPq { .. }
                | IndexSpec::HnswSq8 { .. }
                | IndexSpec::DiskAnn { .. }
        )
    }

    /// The fewest training vectors this index accepts (0 when it needs no training).
    ///
    /// IVF needs 39 x nlist points for k-means; PQ codebooks need 39 x 2^nbits. DiskANN's PQ
    /// uses 256 centroids per chunk.
    pub fn min_training_vectors(&self) -> usize {
        let per = MIN_TRAINING_POINTS_PER_CENTROID;
        match *self {
            IndexSpec::IvfFlat { nlist } | IndexSpec::IvfSq8 { nlist } => per * nlist,
            IndexSpec::IvfPq { nlist, nbits, .. } => per * nlist.max(1usize << nbits.min(24)),
            IndexSpec::DiskAnn { .. } => per * 256,
            IndexSpec::HnswSq8 { .. } => 1,
            IndexSpec::Flat | IndexSpec::Hnsw { .. } => 0,
        }
    }

    /// Checks that `n` training vectors are enough, returning the typed error otherwise.
    pub fn check_training_size(&self, n: usize) -> Result<()> {
        let needed = self.min_training_vectors();
        if n < needed {
            return Err(Error::TooFewTrainingVectors {
                needed,
                got: n,
                nlist: self.nlist().unwrap_or(0),
            });
        }
        Ok(())
    }

    /// Validates the parameters for vectors of dimension `dim`.
    pub fn validate(&self, dim: usize) -> Result<()> {
        if dim == 0 {
            return Err(Error::invalid("dim", dim, "must be at least 1"));
        }
        let positive = |name: &'static str, v: usize| {
            if v == 0 {
                Err(Error::invalid(name, v, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        match *self {
            IndexSpec::Flat => Ok(()),
            IndexSpec::IvfFlat { nlist } | IndexSpec::IvfSq8 { nlist } => {
                positive("nlist", nlist)?;
                check_max("nlist", nlist, 1 << 20)
            }
            IndexSpec::IvfPq { nlist, m, nbits } => {
                positive("nlist", nlist)?;
                check_max("nlist", nlist, 1 << 20)?;
                positive("m", m)?;
                if dim % m != 0 {
                    return Err(Error::invalid(
                        "m",
                        m,
                        format!("must divide the dimension {dim}"),
                    ));
                }
                if !(1..=16).contains(&nbits) {
                    return Err(Error::invalid("nbits", nbits, "must be between 1 and 16"));
                }
                Ok(())
            }
            IndexSpec::Hnsw { m, ef_construction } | IndexSpec::HnswSq8 { m, ef_construction } => {
                if !(2..=512).contains(&m) {
                    return Err(Error::invalid("m", m, "must be between 2 and 512"));
                }
                positive("ef_construction", ef_construction)?;
                check_max("ef_construction", ef_construction, 1 << 16)
            }
            IndexSpec::DiskAnn {
                max_degree,
                search_list,
                pq_bytes,
            } => {
                positive("max_degree", max_degree)?;
                check_max("max_degree", max_degree, 1024)?;
                if search_list < max_degree {
                    return Err(Error::invalid(
                        "search_list",
                        search_list,
                        format!("must be at least max_degree ({max_degree})"),
                    ));
                }
                positive("pq_bytes", pq_bytes)?;
                if pq_bytes > dim {
                    return Err(Error::invalid(
                        "pq_bytes",
                        pq_bytes,
                        format!("must not exceed the dimension {dim}"),
                    ));
                }
                Ok(())
            }
        }
    }
}

fn check_max(name: &'static str, v: usize, max: usize) -> Result<()> {
    if v > max {
        Err(Error::invalid(name, v, format!("must be at most {max}")))
    } else {
        Ok(())
    }
}

impl fmt::Display for IndexSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IndexSpec::Flat => write!(f, "FLAT"),
            IndexSpec::IvfFlat { nlist } => write!(f, "IVF_FLAT(nlist={nlist})"),
            IndexSpec::IvfSq8 { nlist } => write!(f, "IVF_SQ8(nlist={nlist})"),
            IndexSpec::IvfPq { nlist, m, nbits } => {
                write!(f, "IVF_PQ(nlist={nlist}, m={m}, nbits={nbits})")
            }
            IndexSpec::Hnsw { m, ef_construction } => {
                write!(f, "HNSW(m={m}, ef_construction={ef_construction})")
            }
            IndexSpec::HnswSq8 { m, ef_construction } => {
                write!(f, "HNSW_SQ8(m={m}, ef_construction={ef_construction})")
            }
            IndexSpec::DiskAnn {
                max_degree,
                search_list,
                pq_bytes,
            } => write!(
                f,
                "DISKANN(max_degree={max_degree}, search_list={search_list}, pq_bytes={pq_bytes})"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_type_and_params() {
        let spec = IndexSpec::IvfPq {
            nlist: 1024,
            m: 16,
            nbits: 8,
        };
        let json = serde_json::to_value(spec).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "IVF_PQ", "params": {"nlist": 1024, "m": 16, "nbits": 8}})
        );
        let flat: IndexSpec = serde_json::from_str(r#"{"type":"FLAT"}"#).unwrap();
        assert_eq!(flat, IndexSpec::Flat);
        let sq: IndexSpec =
            serde_json::from_str(r#"{"type":"IVF_SQ8","params":{"nlist":8}}"#).unwrap();
        assert_eq!(sq, IndexSpec::IvfSq8 { nlist: 8 });
        let d: IndexSpec = serde_json::from_str(
            r#"{"type":"DISKANN","params":{"max_degree":64,"search_list":100,"pq_bytes":32}}"#,
        )
        .unwrap();
        assert_eq!(d.type_name(), "DISKANN");
    }

    #[test]
    fn invalid_params_name_the_problem() {
        let err = IndexSpec::IvfFlat { nlist: 0 }.validate(128).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "nlist", .. }));
        let err = IndexSpec::IvfPq {
            nlist: 16,
            m: 7,
            nbits: 8,
        }
        .validate(128)
        .unwrap_err();
        assert!(err.to_string().contains("must divide the dimension 128"));
        let err = IndexSpec::Hnsw {
            m: 0,
            ef_construction: 40,
        }
        .validate(8)
        .unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "m", .. }));
        assert!(IndexSpec::Flat.validate(0).is_err());
    }

    #[test]
    fn training_minimum_is_39_per_list() {
        let spec = IndexSpec::IvfFlat { nlist: 100 };
        assert_eq!(spec.min_training_vectors(), 3900);
        assert_eq!(
            spec.check_training_size(3899),
            Err(Error::TooFewTrainingVectors {
                needed: 3900,
                got: 3899,
                nlist: 100
            })
        );
        assert!(spec.check_training_size(3900).is_ok());
        assert_eq!(IndexSpec::Flat.min_training_vectors(), 0);
    }
}
