//! Index requests: an index as a user asks for it — a type with all, some or none of its
//! parameters, or `AUTO` — and the defaults that complete it.
//!
//! `{"type": "HNSW"}`, `{"type": "HNSW", "params": {}}` and `{"type": "HNSW", "params": {"m": 32}}`
//! are all requests; a missing parameter takes its default:
//!
//! | type | parameter | default |
//! |---|---|---|
//! | HNSW, HNSW_SQ8 | `m` | 16 |
//! | HNSW, HNSW_SQ8 | `ef_construction` | 100 |
//! | IVF_FLAT, IVF_SQ8, IVF_PQ | `nlist` | per segment, from its rows: the next power of two ≥ 4√rows, halved until rows ≥ 39 × nlist ([`default_nlist`]) |
//! | IVF_PQ | `m` | the smallest divisor of `dim` that is ≥ dim / 4: sub-vectors of at most 4 dimensions, `dim / 4` bytes per vector when 4 divides `dim` ([`default_pq_m`]) |
//! | IVF_PQ | `nbits` | 8 (one byte per sub-vector code; FAISS's usual setting) |
//! | DISKANN | `max_degree`, `search_list`, `pq_bytes` | 64, max(100, max_degree), dim / 8 |
//! | AUTO | `recall`, `ram_bytes` | 0.95, no budget |
//! | IVF_SQ8, IVF_PQ, HNSW_SQ8, AUTO | `refine_factor` (a search setting: re-ranking of the compressed index's candidates on the raw rows) | [`DEFAULT_REFINE_FACTOR`] |
//!
//! Every default but IVF's `nlist` depends only on the dimension and is filled in when the
//! collection is created ([`IndexRequest::with_defaults`]); `nlist` is chosen for each segment
//! when its index is built ([`IndexRequest::spec_for`]). `AUTO` leaves the choice of the index
//! itself to the advisor ([`crate::advisor::auto_pick`]), made for each segment from the
//! collection's size at the time ([`IndexRequest::choose`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::params::{check_refine_factor, DEFAULT_REFINE_FACTOR};
use crate::sizing::{format_bytes, recommended_nlist};
use crate::spec::IndexSpec;

/// HNSW links per node (`M`) when none is given: Qdrant's, hnswlib's and FAISS's usual value.
pub const DEFAULT_HNSW_M: usize = 16;
/// HNSW build beam (`efConstruction`) when none is given.
pub const DEFAULT_HNSW_EF_CONSTRUCTION: usize = 100;
/// Bits per PQ code when none is given (256 centroids per sub-quantiser).
pub const DEFAULT_PQ_NBITS: usize = 8;
/// DiskANN graph degree when none is given.
pub const DEFAULT_DISKANN_MAX_DEGREE: usize = 64;
/// DiskANN build list when none is given (at least `max_degree`).
pub const DEFAULT_DISKANN_SEARCH_LIST: usize = 100;
/// The recall@10 target of `AUTO` when none is given.
pub const DEFAULT_AUTO_RECALL: f64 = 0.95;

/// IVF lists of a segment of `rows` rows: the advisor's rule (the next power of two at or
/// above 4√rows), halved until the segment holds 39 training vectors per list.
pub fn default_nlist(rows: u64) -> usize {
    recommended_nlist(rows)
}

/// PQ sub-quantisers for vectors of `dim` dimensions: the smallest divisor of `dim` that is
/// at least `dim / 4` (rounded up). FAISS requires `m` to divide `dim`; sub-vectors of at most
/// four dimensions with 8-bit codes keep recall usable on embeddings (384 → 96 bytes per
/// vector, 16 × smaller than the raw `f32` rows; 768 → 192, 128 → 32).
pub fn default_pq_m(dim: usize) -> usize {
    let dim = dim.max(1);
    (dim.div_ceil(4).max(1)..=dim)
        .find(|m| dim % m == 0)
        .unwrap_or(dim)
}

/// DiskANN PQ bytes per vector for `dim` dimensions: `dim / 8`, at least 1.
pub fn default_diskann_pq_bytes(dim: usize) -> usize {
    (dim / 8).max(1)
}

/// The index types a request may name: the [`IndexSpec`] families, and `AUTO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IndexType {
    #[serde(rename = "FLAT")]
    Flat,
    #[serde(rename = "IVF_FLAT")]
    IvfFlat,
    #[serde(rename = "IVF_SQ8")]
    IvfSq8,
    #[serde(rename = "IVF_PQ")]
    IvfPq,
    #[serde(rename = "HNSW")]
    Hnsw,
    #[serde(rename = "HNSW_SQ8")]
    HnswSq8,
    #[serde(rename = "DISKANN")]
    DiskAnn,
    /// The advisor picks one of the others from the collection's size, `dim` and a target.
    #[serde(rename = "AUTO")]
    Auto,
}

impl IndexType {
    /// The upper-case name used in APIs.
    pub fn name(self) -> &'static str {
        match self {
            IndexType::Flat => "FLAT",
            IndexType::IvfFlat => "IVF_FLAT",
            IndexType::IvfSq8 => "IVF_SQ8",
            IndexType::IvfPq => "IVF_PQ",
            IndexType::Hnsw => "HNSW",
            IndexType::HnswSq8 => "HNSW_SQ8",
            IndexType::DiskAnn => "DISKANN",
            IndexType::Auto => "AUTO",
        }
    }

    /// The parameters this type takes.
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            IndexType::Flat => &[],
            IndexType::IvfFlat => &["nlist"],
            IndexType::IvfSq8 => &["nlist", "refine_factor"],
            IndexType::IvfPq => &["nlist", "m", "nbits", "refine_factor"],
            IndexType::Hnsw => &["m", "ef_construction"],
            IndexType::HnswSq8 => &["m", "ef_construction", "refine_factor"],
            IndexType::DiskAnn => &["max_degree", "search_list", "pq_bytes"],
            IndexType::Auto => &["recall", "ram_bytes", "refine_factor"],
        }
    }

    /// The type of a spec.
    pub fn of(spec: &IndexSpec) -> IndexType {
        match spec {
            IndexSpec::Flat => IndexType::Flat,
            IndexSpec::IvfFlat { .. } => IndexType::IvfFlat,
            IndexSpec::IvfSq8 { .. } => IndexType::IvfSq8,
            IndexSpec::IvfPq { .. } => IndexType::IvfPq,
            IndexSpec::Hnsw { .. } => IndexType::Hnsw,
            IndexSpec::HnswSq8 { .. } => IndexType::HnswSq8,
            IndexSpec::DiskAnn { .. } => IndexType::DiskAnn,
        }
    }

    fn is_ivf(self) -> bool {
        matches!(
            self,
            IndexType::IvfFlat | IndexType::IvfSq8 | IndexType::IvfPq
        )
    }
}

impl fmt::Display for IndexType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parameters of a request; each may be missing. Which ones a type takes:
/// [`IndexType::param_names`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlist: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbits: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construction: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_degree: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_list: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_bytes: Option<usize>,
    /// AUTO: the wanted recall@10, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
    /// AUTO: the RAM the collection's indexes may take, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_bytes: Option<u64>,
    /// IVF_SQ8, IVF_PQ, HNSW_SQ8 (and AUTO, for whichever of them it picks): the collection's
    /// default re-ranking factor (a search setting, not part of the index built; a query's
    /// `refine_factor` overrides it). Missing: [`DEFAULT_REFINE_FACTOR`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine_factor: Option<usize>,
}

impl IndexParams {
    /// Names of the parameters that are set.
    fn given(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut add = |name, set: bool| {
            if set {
                out.push(name)
            }
        };
        add("nlist", self.nlist.is_some());
        add("m", self.m.is_some());
        add("nbits", self.nbits.is_some());
        add("ef_construction", self.ef_construction.is_some());
        add("max_degree", self.max_degree.is_some());
        add("search_list", self.search_list.is_some());
        add("pq_bytes", self.pq_bytes.is_some());
        add("recall", self.recall.is_some());
        add("ram_bytes", self.ram_bytes.is_some());
        add("refine_factor", self.refine_factor.is_some());
        out
    }

    fn is_empty(&self) -> bool {
        *self == IndexParams::default()
    }
}

/// What `AUTO` aims at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AutoTarget {
    /// Wanted recall@10 against exact search, in (0, 1].
    pub recall: f64,
    /// RAM the collection's indexes may take (`None`: no budget).
    pub ram_bytes: Option<u64>,
}

/// An index as requested: a type and the parameters given. Serialised as
/// `{"type": "IVF_FLAT", "params": {"nlist": 1024}}`, `params` left out when empty; `params`
/// may be missing, `null` or `{}` in what is parsed, and a parameter the type does not take
/// is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexRequest {
    pub kind: IndexType,
    pub params: IndexParams,
}

/// What a segment builds for a request, and why: `AUTO`'s pick, IVF's `nlist` from the
/// segment's rows (`None` when neither applies).
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub spec: IndexSpec,
    pub reason: Option<String>,
}

impl IndexRequest {
    /// A request of type `kind` with no parameters (every one defaulted).
    pub fn new(kind: IndexType) -> Self {
        Self {
            kind,
            params: IndexParams::default(),
        }
    }

    /// `AUTO` with the default target.
    pub fn auto() -> Self {
        Self::new(IndexType::Auto)
    }

    pub fn is_auto(&self) -> bool {
        self.kind == IndexType::Auto
    }

    /// The target of an `AUTO` request (defaults filled in).
    pub fn auto_target(&self) -> Option<AutoTarget> {
        self.is_auto().then(|| AutoTarget {
            recall: self.params.recall.unwrap_or(DEFAULT_AUTO_RECALL),
            ram_bytes: self.params.ram_bytes,
        })
    }

    /// True for an IVF request without `nlist`: each segment gets its own.
    pub fn nlist_per_segment(&self) -> bool {
        self.kind.is_ivf() && self.params.nlist.is_none()
    }

    /// The request with every default that depends only on the dimension filled in: all but
    /// IVF's `nlist` (per segment) and the choice `AUTO` makes (its target is filled in).
    pub fn with_defaults(self, dim: usize) -> Self {
        let mut p = self.params;
        match self.kind {
            IndexType::Flat | IndexType::IvfFlat | IndexType::IvfSq8 => {}
            IndexType::IvfPq => {
                p.m = p.m.or(Some(default_pq_m(dim)));
                p.nbits = p.nbits.or(Some(DEFAULT_PQ_NBITS));
            }
            IndexType::Hnsw | IndexType::HnswSq8 => {
                p.m = p.m.or(Some(DEFAULT_HNSW_M));
                p.ef_construction = p.ef_construction.or(Some(DEFAULT_HNSW_EF_CONSTRUCTION));
            }
            IndexType::DiskAnn => {
                let degree = p.max_degree.unwrap_or(DEFAULT_DISKANN_MAX_DEGREE);
                p.max_degree = Some(degree);
                p.search_list = p
                    .search_list
                    .or(Some(DEFAULT_DISKANN_SEARCH_LIST.max(degree)));
                p.pq_bytes = p.pq_bytes.or(Some(default_diskann_pq_bytes(dim)));
            }
            IndexType::Auto => {
                p.recall = p.recall.or(Some(DEFAULT_AUTO_RECALL));
            }
        }
        Self {
            kind: self.kind,
            params: p,
        }
    }

    /// The spec a segment of `rows` rows builds: the given parameters, defaults for the rest
    /// (`nlist` from `rows`). `None` for `AUTO`, whose choice needs the collection's size
    /// ([`choose`](Self::choose)).
    pub fn spec_for(&self, dim: usize, rows: u64) -> Option<IndexSpec> {
        let full = self.with_defaults(dim).params;
        let nlist = full.nlist.unwrap_or_else(|| default_nlist(rows));
        let v = |x: Option<usize>| x.unwrap_or(0);
        Some(match self.kind {
            IndexType::Flat => IndexSpec::Flat,
            IndexType::IvfFlat => IndexSpec::IvfFlat { nlist },
            IndexType::IvfSq8 => IndexSpec::IvfSq8 { nlist },
            IndexType::IvfPq => IndexSpec::IvfPq {
                nlist,
                m: v(full.m),
                nbits: v(full.nbits),
            },
            IndexType::Hnsw => IndexSpec::Hnsw {
                m: v(full.m),
                ef_construction: v(full.ef_construction),
            },
            IndexType::HnswSq8 => IndexSpec::HnswSq8 {
                m: v(full.m),
                ef_construction: v(full.ef_construction),
            },
            IndexType::DiskAnn => IndexSpec::DiskAnn {
                max_degree: v(full.max_degree),
                search_list: v(full.search_list),
                pq_bytes: v(full.pq_bytes),
            },
            IndexType::Auto => return None,
        })
    }

    /// The re-ranking factor searches of this collection's compressed segments use when the
    /// query gives none: `refine_factor` when given, else [`DEFAULT_REFINE_FACTOR`].
    pub fn refine_factor(&self) -> usize {
        self.params.refine_factor.unwrap_or(DEFAULT_REFINE_FACTOR)
    }

    /// The spec, when the request gives every parameter of its type (`refine_factor`, a
    /// search setting, does not count).
    pub fn as_spec(&self) -> Option<IndexSpec> {
        let build = |names: &[&str]| names.iter().filter(|p| **p != "refine_factor").count();
        let complete = self.kind != IndexType::Auto
            && build(&self.params.given()) == build(self.kind.param_names());
        complete.then(|| self.spec_for(1, 1)).flatten()
    }

    /// Checks the given parameters for vectors of dimension `dim` (the defaults are valid for
    /// any dimension).
    pub fn validate(&self, dim: usize) -> Result<()> {
        if dim == 0 {
            return Err(Error::invalid("dim", dim, "must be at least 1"));
        }
        self.check_param_names()?;
        if let Some(r) = self.params.refine_factor {
            check_refine_factor(r)?;
        }
        if let Some(target) = self.auto_target() {
            if !(target.recall > 0.0 && target.recall <= 1.0) {
                return Err(Error::invalid("recall", target.recall, "must be in (0, 1]"));
            }
            if target.ram_bytes == Some(0) {
                return Err(Error::invalid("ram_bytes", 0, "must be at least 1"));
            }
            return Ok(());
        }
        if self.params.nlist == Some(0) {
            return Err(Error::invalid("nlist", 0, "must be at least 1"));
        }
        // Any row count gives a valid nlist; 1M rows checks the others with a typical one.
        match self.spec_for(dim, 1_000_000) {
            Some(spec) => spec.validate(dim),
            None => Ok(()),
        }
    }

    fn check_param_names(&self) -> Result<()> {
        let allowed = self.kind.param_names();
        match self
            .params
            .given()
            .into_iter()
            .find(|p| !allowed.contains(p))
        {
            None => Ok(()),
            Some(p) => Err(Error::invalid(
                "params",
                p,
                if allowed.is_empty() {
                    format!("{} takes no parameters", self.kind)
                } else {
                    format!("{} takes {}", self.kind, allowed.join(", "))
                },
            )),
        }
    }

    /// What a segment of `rows` rows builds, in a collection of `vectors` vectors of
    /// dimension `dim`, and why. `AUTO` asks the advisor ([`crate::advisor::auto_pick`]) for
    /// the collection's size among the types `available` allows; IVF without `nlist` takes
    /// [`default_nlist`] of the segment's rows.
    pub fn choose(
        &self,
        dim: usize,
        rows: u64,
        vectors: u64,
        available: impl Fn(IndexType) -> bool,
    ) -> Result<Choice> {
        let (request, mut reasons) = match self.auto_target() {
            Some(target) => {
                let pick = crate::advisor::auto_pick(vectors.max(rows), dim, target, available)?;
                (
                    pick.index,
                    vec![format!("AUTO: {}", pick.reasons.join("; "))],
                )
            }
            None => (*self, Vec::new()),
        };
        let spec = request
            .spec_for(dim, rows)
            .ok_or_else(|| Error::invalid("type", "AUTO", "the advisor picked no index"))?;
        if let (true, Some(nlist)) = (request.nlist_per_segment(), spec.nlist()) {
            reasons.push(format!(
                "nlist {nlist} for this segment's {rows} rows (the next power of two ≥ 4√rows, at most rows / 39)"
            ));
        }
        Ok(Choice {
            spec,
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        })
    }
}

impl From<IndexSpec> for IndexRequest {
    fn from(spec: IndexSpec) -> Self {
        let p = IndexParams::default();
        let params = match spec {
            IndexSpec::Flat => p,
            IndexSpec::IvfFlat { nlist } | IndexSpec::IvfSq8 { nlist } => IndexParams {
                nlist: Some(nlist),
                ..p
            },
            IndexSpec::IvfPq { nlist, m, nbits } => IndexParams {
                nlist: Some(nlist),
                m: Some(m),
                nbits: Some(nbits),
                ..p
            },
            IndexSpec::Hnsw { m, ef_construction } | IndexSpec::HnswSq8 { m, ef_construction } => {
                IndexParams {
                    m: Some(m),
                    ef_construction: Some(ef_construction),
                    ..p
                }
            }
            IndexSpec::DiskAnn {
                max_degree,
                search_list,
                pq_bytes,
            } => IndexParams {
                max_degree: Some(max_degree),
                search_list: Some(search_list),
                pq_bytes: Some(pq_bytes),
                ..p
            },
        };
        Self {
            kind: IndexType::of(&spec),
            params,
        }
    }
}

impl Serialize for IndexRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let empty = self.params.is_empty();
        let mut map = s.serialize_map(Some(if empty { 1 } else { 2 }))?;
        map.serialize_entry("type", &self.kind)?;
        if !empty {
            map.serialize_entry("params", &self.params)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for IndexRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(rename = "type")]
            kind: IndexType,
            #[serde(default)]
            params: Option<IndexParams>,
        }
        let raw = Raw::deserialize(d)?;
        let request = IndexRequest {
            kind: raw.kind,
            params: raw.params.unwrap_or_default(),
        };
        request
            .check_param_names()
            .map_err(serde::de::Error::custom)?;
        Ok(request)
    }
}

impl fmt::Display for IndexRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        let mut parts: Vec<String> = Vec::new();
        let mut num = |name: &str, v: Option<usize>| {
            if let Some(v) = v {
                parts.push(format!("{name}={v}"));
            }
        };
        num("nlist", p.nlist);
        num("m", p.m);
        num("nbits", p.nbits);
        num("ef_construction", p.ef_construction);
        num("max_degree", p.max_degree);
        num("search_list", p.search_list);
        num("pq_bytes", p.pq_bytes);
        if self.nlist_per_segment() {
            parts.insert(0, "nlist per segment".into());
        }
        if let Some(r) = p.recall {
            parts.push(format!("recall={r}"));
        }
        if let Some(b) = p.ram_bytes {
            parts.push(format!("ram={}", format_bytes(b)));
        }
        if let Some(r) = p.refine_factor {
            parts.push(format!("refine_factor={r}"));
        }
        if parts.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}({})", self.kind, parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> std::result::Result<IndexRequest, String> {
        serde_json::from_str::<IndexRequest>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn params_may_be_missing_empty_null_or_partial() {
        for json in [
            r#"{"type":"HNSW"}"#,
            r#"{"type":"HNSW","params":{}}"#,
            r#"{"type":"HNSW","params":null}"#,
        ] {
            let r = parse(json).unwrap();
            assert_eq!(r, IndexRequest::new(IndexType::Hnsw), "{json}");
            assert_eq!(
                r.spec_for(384, 10).unwrap(),
                IndexSpec::Hnsw {
                    m: 16,
                    ef_construction: 100
                }
            );
        }
        let r = parse(r#"{"type":"HNSW_SQ8","params":{"m":32}}"#).unwrap();
        assert_eq!(
            r.spec_for(8, 10).unwrap(),
            IndexSpec::HnswSq8 {
                m: 32,
                ef_construction: 100
            }
        );
        let r = parse(r#"{"type":"IVF_FLAT","params":{}}"#).unwrap();
        assert!(r.nlist_per_segment());
        assert_eq!(
            r.spec_for(8, 10_000).unwrap(),
            IndexSpec::IvfFlat { nlist: 256 }
        );
        assert_eq!(
            r.spec_for(8, 1_000_000).unwrap(),
            IndexSpec::IvfFlat { nlist: 4096 }
        );
        let r = parse(r#"{"type":"IVF_PQ","params":{"nlist":64}}"#).unwrap();
        assert!(!r.nlist_per_segment());
        assert_eq!(
            r.spec_for(384, 1).unwrap(),
            IndexSpec::IvfPq {
                nlist: 64,
                m: 96,
                nbits: 8
            }
        );
        let r = parse(r#"{"type":"DISKANN","params":{"max_degree":128}}"#).unwrap();
        assert_eq!(
            r.spec_for(128, 1).unwrap(),
            IndexSpec::DiskAnn {
                max_degree: 128,
                search_list: 128,
                pq_bytes: 16
            }
        );
        assert_eq!(
            parse(r#"{"type":"FLAT","params":{}}"#).unwrap(),
            IndexRequest::new(IndexType::Flat)
        );
    }

    #[test]
    fn wrong_parameters_and_types_are_refused() {
        let e = parse(r#"{"type":"HNSW","params":{"nlist":8}}"#).unwrap_err();
        assert!(e.contains("HNSW takes m, ef_construction"), "{e}");
        let e = parse(r#"{"type":"FLAT","params":{"nlist":8}}"#).unwrap_err();
        assert!(e.contains("FLAT takes no parameters"), "{e}");
        assert!(parse(r#"{"type":"HNSW","params":{"M":8}}"#).is_err());
        assert!(parse(r#"{"type":"IVF"}"#).is_err());
        assert!(parse(r#"{"params":{}}"#).is_err());
        assert!(parse(r#"{"type":"HNSW","extra":1}"#).is_err());
        let pq = parse(r#"{"type":"IVF_PQ","params":{"m":7}}"#).unwrap();
        let e = pq.validate(128).unwrap_err();
        assert!(
            e.to_string().contains("must divide the dimension 128"),
            "{e}"
        );
        assert!(parse(r#"{"type":"IVF_FLAT","params":{"nlist":0}}"#)
            .unwrap()
            .validate(8)
            .is_err());
        assert!(parse(r#"{"type":"AUTO","params":{"recall":1.5}}"#)
            .unwrap()
            .validate(8)
            .is_err());
        assert!(parse(r#"{"type":"AUTO","params":{"ram_bytes":0}}"#)
            .unwrap()
            .validate(8)
            .is_err());
        assert!(IndexRequest::new(IndexType::Hnsw).validate(0).is_err());
    }

    #[test]
    fn complete_specs_round_trip() {
        let specs = [
            IndexSpec::Flat,
            IndexSpec::IvfFlat { nlist: 8 },
            IndexSpec::IvfSq8 { nlist: 8 },
            IndexSpec::IvfPq {
                nlist: 8,
                m: 4,
                nbits: 6,
            },
            IndexSpec::Hnsw {
                m: 8,
                ef_construction: 40,
            },
            IndexSpec::HnswSq8 {
                m: 8,
                ef_construction: 40,
            },
            IndexSpec::DiskAnn {
                max_degree: 32,
                search_list: 50,
                pq_bytes: 4,
            },
        ];
        for spec in specs {
            let r = IndexRequest::from(spec);
            assert_eq!(r.as_spec(), Some(spec));
            // The JSON of a complete request is the spec's JSON, both ways.
            let json = serde_json::to_value(r).unwrap();
            assert_eq!(json, serde_json::to_value(spec).unwrap(), "{spec}");
            assert_eq!(serde_json::from_value::<IndexRequest>(json).unwrap(), r);
            assert_eq!(r.to_string(), spec.to_string());
        }
        assert_eq!(IndexRequest::new(IndexType::Hnsw).as_spec(), None);
        assert_eq!(IndexRequest::auto().as_spec(), None);
    }

    #[test]
    fn defaults_are_filled_but_nlist_stays_per_segment() {
        let r = IndexRequest::new(IndexType::IvfPq).with_defaults(768);
        assert_eq!(r.params.m, Some(192));
        assert_eq!(r.params.nbits, Some(8));
        assert_eq!(r.params.nlist, None);
        assert_eq!(r.to_string(), "IVF_PQ(nlist per segment, m=192, nbits=8)");
        let h = IndexRequest::new(IndexType::Hnsw).with_defaults(8);
        assert_eq!(h.to_string(), "HNSW(m=16, ef_construction=100)");
        assert_eq!(
            serde_json::to_value(IndexRequest::new(IndexType::IvfFlat)).unwrap(),
            serde_json::json!({"type": "IVF_FLAT"})
        );
        let a = IndexRequest::auto().with_defaults(8);
        assert_eq!(
            a.auto_target(),
            Some(AutoTarget {
                recall: 0.95,
                ram_bytes: None
            })
        );
    }

    #[test]
    fn pq_m_divides_the_dimension_in_sub_vectors_of_at_most_four() {
        for (dim, m) in [
            (384, 96),
            (768, 192),
            (128, 32),
            (1536, 384),
            (100, 25),
            (3, 1),
            (1, 1),
            (254, 127),
            (127, 127),
        ] {
            assert_eq!(default_pq_m(dim), m, "dim {dim}");
            assert_eq!(dim % m, 0);
            assert!(dim / m <= 4);
        }
    }

    #[test]
    fn nlist_per_segment_respects_the_training_minimum() {
        for rows in [1u64, 38, 39, 77, 78, 500, 3_900, 10_000, 62_666, 1_000_000] {
            let nlist = default_nlist(rows);
            assert!(nlist.is_power_of_two());
            assert!(
                nlist == 1 || nlist as u64 * 39 <= rows,
                "{rows} rows → {nlist}"
            );
        }
        assert_eq!(default_nlist(62_666), 1024);
        let c = IndexRequest::new(IndexType::IvfSq8)
            .choose(16, 4_000, 4_000, |_| true)
            .unwrap();
        assert_eq!(c.spec, IndexSpec::IvfSq8 { nlist: 64 });
        assert!(c
            .reason
            .unwrap()
            .contains("nlist 64 for this segment's 4000 rows"));
        let c = IndexRequest::from(IndexSpec::IvfSq8 { nlist: 8 })
            .choose(16, 4_000, 4_000, |_| true)
            .unwrap();
        assert_eq!(c.reason, None);
        // Other defaults depend on the dimension alone: they are the spec, with no reason.
        let c = IndexRequest::new(IndexType::Hnsw)
            .choose(16, 10, 10, |_| true)
            .unwrap();
        assert_eq!(
            (c.spec, c.reason),
            (
                IndexSpec::Hnsw {
                    m: 16,
                    ef_construction: 100
                },
                None
            )
        );
    }

    #[test]
    fn auto_picks_from_the_collection_size() {
        let auto = IndexRequest::auto();
        let small = auto.choose(384, 5_000, 5_000, |_| true).unwrap();
        assert_eq!(small.spec, IndexSpec::Flat);
        assert!(small.reason.unwrap().starts_with("AUTO: "));
        // A segment of 100k rows in a collection of 300k: HNSW for the collection.
        let big = auto.choose(384, 100_000, 300_000, |_| true).unwrap();
        assert!(matches!(big.spec, IndexSpec::Hnsw { .. }), "{}", big.spec);
        // Under a budget that rules out raw vectors, an IVF family with nlist per segment.
        let tight = IndexRequest {
            kind: IndexType::Auto,
            params: IndexParams {
                recall: Some(0.95),
                ram_bytes: Some(1_500_000_000),
                ..Default::default()
            },
        };
        let c = tight
            .choose(384, 100_000, 1_000_000, |t| t != IndexType::DiskAnn)
            .unwrap();
        assert_eq!(c.spec, IndexSpec::IvfSq8 { nlist: 2048 });
        let reason = c.reason.unwrap();
        assert!(reason.contains("IVF_SQ8(nlist per segment): "), "{reason}");
        assert!(
            reason.contains("nlist 2048 for this segment's 100000 rows"),
            "{reason}"
        );
        // Nothing fits 10 MB: the smallest index, and the reason says so.
        let none = IndexRequest {
            params: IndexParams {
                ram_bytes: Some(10_000_000),
                ..tight.params
            },
            ..tight
        };
        let c = none
            .choose(384, 100_000, 1_000_000, |t| t != IndexType::DiskAnn)
            .unwrap();
        assert!(
            matches!(c.spec, IndexSpec::IvfPq { m: 96, .. }),
            "{}",
            c.spec
        );
        assert!(c.reason.unwrap().contains("nothing fits the RAM budget"));
    }

    #[test]
    fn refine_factor_is_a_search_setting_of_compressed_types() {
        let r =
            parse(r#"{"type":"IVF_PQ","params":{"nlist":8,"m":4,"nbits":8,"refine_factor":2}}"#)
                .unwrap();
        assert_eq!(r.refine_factor(), 2);
        assert!(r.validate(16).is_ok());
        // Not part of the index built: the spec is complete without it.
        assert_eq!(
            r.as_spec(),
            Some(IndexSpec::IvfPq {
                nlist: 8,
                m: 4,
                nbits: 8
            })
        );
        assert_eq!(
            parse(r#"{"type":"HNSW_SQ8"}"#).unwrap().refine_factor(),
            crate::params::DEFAULT_REFINE_FACTOR
        );
        for ok in ["IVF_SQ8", "HNSW_SQ8", "AUTO"] {
            let json = format!(r#"{{"type":"{ok}","params":{{"refine_factor":8}}}}"#);
            assert!(parse(&json).unwrap().validate(16).is_ok(), "{json}");
        }
        for raw in ["FLAT", "IVF_FLAT", "HNSW"] {
            let json = format!(r#"{{"type":"{raw}","params":{{"refine_factor":2}}}}"#);
            assert!(parse(&json).is_err(), "{json}");
        }
        for bad in [0, crate::params::MAX_REFINE_FACTOR + 1] {
            let json = format!(r#"{{"type":"IVF_PQ","params":{{"refine_factor":{bad}}}}}"#);
            let err = parse(&json).unwrap().validate(16).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidParameter {
                        name: "refine_factor",
                        ..
                    }
                ),
                "{err}"
            );
        }
        let r = parse(r#"{"type":"HNSW_SQ8","params":{"refine_factor":3}}"#).unwrap();
        assert!(r.to_string().contains("refine_factor=3"), "{r}");
    }
}
