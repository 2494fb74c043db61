//! The FAISS backend (FAISS 1.12, statically linked through `faiss`/`faiss-sys`).
//!
//! [`FaissIndex`] implements `proxima_core::VectorIndex` for FLAT, IVF_FLAT, IVF_SQ8, IVF_PQ,
//! HNSW and HNSW_SQ8. Rows are labelled by position (0, 1, 2, … in insertion order): the segment
//! that owns the index maps positions to user ids, and hides deleted rows with a live-row
//! bitmap handed to FAISS as an `IDSelectorBitmap`, so the filter runs inside the search.
//!
//! Searches go through the raw C call `faiss_Index_search_with_params` on a shared reference:
//! FAISS CPU indexes are safe to search concurrently, and the `faiss` crate's `IndexImpl`
//! would otherwise need `&mut` (a global lock). The crate's selector helpers are not used
//! because they leak the selector on every call (`mem::forget`); the raw objects here are
//! freed after each search.

use std::path::Path;
use std::ptr;

use faiss::index::autotune::ParameterSpace;
use faiss::index::{FromInnerPtr, IndexImpl};
use faiss::{index_factory, Index, MetricType};
use faiss_sys as sys;
use parking_lot::RwLock;
use proxima_core::params::default_nprobe;
use proxima_core::sizing;
use proxima_core::validate::{check_queries, check_vectors};
use proxima_core::{
    Bitmap, Error, Hit, IndexSpec, Metric, Result, SearchParams, VectorId, VectorIndex,
};

/// The FAISS release vendored by `faiss-sys` 0.7 (the C API exposes no version call).
pub const FAISS_VERSION: &str = "1.12.0";

/// `faiss_read_index` flag that memory-maps IVF inverted lists (FAISS's `IO_FLAG_MMAP`). The
/// `faiss` crate cannot pass it: its `IoFlags` is a `u16` (the flag needs 32 bits) and its
/// `MEM_MAP` constant is SKIP_STORAGE in 1.12, so the C call is made directly.
const IO_FLAG_MMAP: i32 = 8 | 0x646f_0000;

/// Default HNSW `efSearch` when a query names none.
pub const DEFAULT_EF: usize = 64;

// OpenMP (libgomp), which `faiss-sys` links for FAISS's parallel loops.
#[link(name = "gomp")]
extern "C" {
    fn omp_set_num_threads(num_threads: std::os::raw::c_int);
    fn omp_get_max_threads() -> std::os::raw::c_int;
}

/// Makes FAISS calls made from the calling thread single-threaded. OpenMP keeps the thread
/// count per thread for threads it did not create, so other threads (index builds) keep
/// their parallelism.
pub fn single_threaded_faiss() {
    set_faiss_threads(1);
}

/// Sets the threads FAISS calls made from the calling thread may use (at least 1).
pub fn set_faiss_threads(threads: usize) {
    let threads = threads.clamp(1, std::os::raw::c_int::MAX as usize) as std::os::raw::c_int;
    // SAFETY: sets an integer setting of the calling thread; no pointers are involved.
    unsafe { omp_set_num_threads(threads) }
}

/// Makes OpenBLAS, when it is the BLAS FAISS links, single-threaded for the whole process:
/// FAISS's batched distance products call BLAS, and OpenBLAS threads on top of the engine's
/// own search threads oversubscribe the CPUs (its worker threads spin while they wait).
/// OpenBLAS reads `OPENBLAS_NUM_THREADS` when it is loaded, before `main`, so the setting is
/// made through its API, looked up at run time because the system's BLAS may be another one.
/// Returns whether OpenBLAS was found.
pub fn single_threaded_blas() -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT searches the loaded objects for a NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"openblas_set_num_threads".as_ptr()) };
    if f.is_null() {
        return false;
    }
    // SAFETY: the symbol is OpenBLAS's `void openblas_set_num_threads(int)`.
    let set: extern "C" fn(std::os::raw::c_int) = unsafe { std::mem::transmute(f) };
    set(1);
    true
}

/// Threads a FAISS call made from the calling thread may use.
pub fn faiss_threads() -> usize {
    // SAFETY: reads an integer setting of the calling thread.
    unsafe { omp_get_max_threads() }.max(1) as usize
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend {
        message: e.to_string(),
    }
}

/// The FAISS factory string of a spec, or `None` when FAISS does not implement it.
pub fn factory_string(spec: &IndexSpec) -> Option<String> {
    Some(match *spec {
        IndexSpec::Flat => "Flat".to_string(),
        IndexSpec::IvfFlat { nlist } => format!("IVF{nlist},Flat"),
        IndexSpec::IvfSq8 { nlist } => format!("IVF{nlist},SQ8"),
        // `np`: no polysemous training. The factory's default reorders each codebook for
        // Hamming-distance filtering, which these searches never use (`polysemous_ht` 0), and
        // it took most of an IVF_PQ build (m 96: ~300 of ~310 CPU seconds on 10,000 rows).
        IndexSpec::IvfPq { nlist, m, nbits } => format!("IVF{nlist},PQ{m}x{nbits}np"),
        IndexSpec::Hnsw { m, .. } => format!("HNSW{m}"),
        IndexSpec::HnswSq8 { m, .. } => format!("HNSW{m}_SQ8"),
        IndexSpec::DiskAnn { .. } => return None,
    })
}

fn faiss_metric(metric: Metric) -> MetricType {
    match metric {
        Metric::L2 => MetricType::L2,
        Metric::InnerProduct | Metric::Cosine => MetricType::InnerProduct,
    }
}

/// A FAISS index over positionally labelled rows.
pub struct FaissIndex {
    inner: IndexImpl,
    spec: IndexSpec,
    metric: Metric,
    dim: usize,
    /// HNSW's `efSearch` is an index-wide setting (the C API has no per-query HNSW
    /// parameters): searches at the current value share the read lock; a search asking for
    /// another value takes the write lock to change it.
    hnsw_ef: RwLock<usize>,
    /// Bytes of the serialised index, once it was saved or loaded.
    stored_bytes: Option<u64>,
}

impl FaissIndex {
    /// An empty, untrained index.
    pub fn new(dim: usize, metric: Metric, spec: IndexSpec) -> Result<Self> {
        spec.validate(dim)?;
        let description = factory_string(&spec).ok_or(Error::Unsupported {
            operation: "build with FAISS",
            index: spec.type_name().to_string(),
        })?;
        let inner =
            index_factory(dim as u32, description, faiss_metric(metric)).map_err(backend)?;
        let index = Self {
            inner,
            spec,
            metric,
            dim,
            hnsw_ef: RwLock::new(0),
            stored_bytes: None,
        };
        if let IndexSpec::Hnsw {
            ef_construction, ..
        }
        | IndexSpec::HnswSq8 {
            ef_construction, ..
        } = spec
        {
            index.set_parameter("efConstruction", ef_construction as f64)?;
        }
        Ok(index)
    }

    /// Reads an index written by [`FaissIndex::save`]. With `mmap`, IVF inverted lists stay
    /// on disk and are paged in on demand.
    pub fn load(
        path: &Path,
        dim: usize,
        metric: Metric,
        spec: IndexSpec,
        mmap: bool,
    ) -> Result<Self> {
        let name = path
            .to_str()
            .ok_or_else(|| backend("index path is not UTF-8"))?;
        let flags = if mmap && spec.nlist().is_some() {
            IO_FLAG_MMAP
        } else {
            0
        };
        let cname = std::ffi::CString::new(name).map_err(backend)?;
        let mut raw: *mut sys::FaissIndex = ptr::null_mut();
        // SAFETY: `cname` is a valid C string; FAISS writes a new index pointer into `raw`.
        check_rc(unsafe { sys::faiss_read_index_fname(cname.as_ptr(), flags, &mut raw) })?;
        // SAFETY: `raw` is a freshly read, owned index; IndexImpl takes over freeing it.
        let inner = unsafe { IndexImpl::from_inner_ptr(raw) };
        if inner.d() as usize != dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: inner.d() as usize,
            });
        }
        let bytes = std::fs::metadata(path).map_err(backend)?.len();
        Ok(Self {
            inner,
            spec,
            metric,
            dim,
            hnsw_ef: RwLock::new(0),
            stored_bytes: Some(bytes),
        })
    }

    /// Writes the index to `path` (the caller renames it into place).
    pub fn save(&mut self, path: &Path) -> Result<()> {
        let name = path
            .to_str()
            .ok_or_else(|| backend("index path is not UTF-8"))?;
        faiss::write_index(&self.inner, name).map_err(backend)?;
        self.stored_bytes = Some(std::fs::metadata(path).map_err(backend)?.len());
        Ok(())
    }

    /// The spec this index was built from.
    pub fn spec(&self) -> IndexSpec {
        self.spec
    }

    fn is_hnsw(&self) -> bool {
        matches!(
            self.spec,
            IndexSpec::Hnsw { .. } | IndexSpec::HnswSq8 { .. }
        )
    }

    fn set_parameter(&self, name: &str, value: f64) -> Result<()> {
        let space = ParameterSpace::new().map_err(backend)?;
        space
            .set_index_parameter(&self.inner, name, value)
            .map_err(backend)
    }

    /// The raw FAISS index (for copying it to a GPU).
    pub(crate) fn raw(&self) -> *mut sys::FaissIndex {
        self.inner.inner_ptr()
    }

    /// Runs one FAISS search with optional selector and nprobe; the index must not be
    /// mutated concurrently (guaranteed by `&self` and the HNSW lock).
    fn raw_search(
        &self,
        queries: &[f32],
        k: usize,
        nprobe: Option<usize>,
        filter: Option<&Bitmap>,
    ) -> Result<(Vec<f32>, Vec<i64>)> {
        let ivf_nprobe = self
            .spec
            .nlist()
            .map(|nlist| nprobe.unwrap_or_else(|| default_nprobe(nlist)));
        // SAFETY: `inner` is a valid FAISS index of dimension `dim`; FAISS CPU searches only
        // read the index, so concurrent calls through `&self` are sound.
        unsafe { search_raw(self.raw(), self.dim, queries, k, ivf_nprobe, filter) }
    }
}

/// Runs one search on a FAISS index (CPU or GPU): `ivf_nprobe` for IVF indexes, and `filter`
/// as an `IDSelectorBitmap` over labels. Returns `nq * k` distances and labels (-1: none).
///
/// # Safety
/// `index` must be a valid FAISS index of dimension `dim` that nothing mutates during the call.
pub(crate) unsafe fn search_raw(
    index: *mut sys::FaissIndex,
    dim: usize,
    queries: &[f32],
    k: usize,
    ivf_nprobe: Option<usize>,
    filter: Option<&Bitmap>,
) -> Result<(Vec<f32>, Vec<i64>)> {
    let nq = queries.len() / dim;
    let mut distances = vec![0f32; nq * k];
    let mut labels = vec![-1i64; nq * k];
    let mut selector: *mut sys::FaissIDSelector = ptr::null_mut();
    let mut params: *mut sys::FaissSearchParameters = ptr::null_mut();
    let bitmap = filter.map(|b| b.as_bytes());
    let result = (|| -> Result<()> {
        if let Some(bytes) = bitmap {
            let mut sel: *mut sys::FaissIDSelectorBitmap = ptr::null_mut();
            // SAFETY: FAISS neither copies the bytes nor keeps the pointer past this search;
            // `bytes` outlives the search below and is only read.
            let rc =
                unsafe { sys::faiss_IDSelectorBitmap_new(&mut sel, bytes.len(), bytes.as_ptr()) };
            check_rc(rc)?;
            selector = sel as *mut sys::FaissIDSelector;
        }
        if let Some(nprobe) = ivf_nprobe {
            let mut p: *mut sys::FaissSearchParametersIVF = ptr::null_mut();
            // SAFETY: creates a parameter object referring to `selector` (may be null), which
            // stays alive until both are freed below.
            let rc =
                unsafe { sys::faiss_SearchParametersIVF_new_with(&mut p, selector, nprobe, 0) };
            check_rc(rc)?;
            params = p as *mut sys::FaissSearchParameters;
        } else if !selector.is_null() {
            // SAFETY: as above.
            let rc = unsafe { sys::faiss_SearchParameters_new(&mut params, selector) };
            check_rc(rc)?;
        }
        // SAFETY: the caller guarantees `index`; `queries` holds `nq * dim` floats and the
        // output buffers `nq * k` entries.
        let rc = unsafe {
            sys::faiss_Index_search_with_params(
                index,
                nq as sys::idx_t,
                queries.as_ptr(),
                k as sys::idx_t,
                params,
                distances.as_mut_ptr(),
                labels.as_mut_ptr(),
            )
        };
        check_rc(rc)
    })();
    // SAFETY: both pointers are null or were created above and are freed exactly once.
    unsafe {
        if !params.is_null() {
            sys::faiss_SearchParameters_free(params);
        }
        if !selector.is_null() {
            sys::faiss_IDSelector_free(selector);
        }
    }
    result.map(|_| (distances, labels))
}

/// Turns FAISS's `nq * fetched` labels and distances into at most `k` hits per query, keeping
/// only labels `keep` accepts (-1, FAISS's "no result", never).
pub(crate) fn hits_from(
    labels: &[i64],
    distances: &[f32],
    fetched: usize,
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<Vec<Hit>> {
    labels
        .chunks_exact(fetched)
        .zip(distances.chunks_exact(fetched))
        .map(|(l, d)| {
            l.iter()
                .zip(d)
                .filter(|(label, _)| **label >= 0 && keep(**label as usize))
                .take(k)
                .map(|(&label, &score)| Hit {
                    id: label as u64,
                    score,
                })
                .collect()
        })
        .collect()
}

/// Maps a FAISS C API return code to `Ok` or its last error message.
pub(crate) fn check_rc(rc: i32) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: faiss_get_last_error returns a thread-local C string or null.
    let msg = unsafe {
        let p = sys::faiss_get_last_error();
        if p.is_null() {
            format!("FAISS error code {rc}")
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(backend(msg))
}

impl VectorIndex for FaissIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn metric(&self) -> Metric {
        self.metric
    }

    fn len(&self) -> usize {
        self.inner.ntotal() as usize
    }

    fn is_trained(&self) -> bool {
        self.inner.is_trained()
    }

    fn train(&mut self, vectors: &[f32]) -> Result<()> {
        let n = check_vectors(vectors, self.dim, "training vector")?;
        self.spec.check_training_size(n)?;
        if self.spec.needs_training() {
            self.inner.train(vectors).map_err(backend)?;
        }
        Ok(())
    }

    /// Ids must continue the positional labels: `len(), len() + 1, …`.
    fn add(&mut self, ids: &[VectorId], vectors: &[f32]) -> Result<()> {
        let n = check_vectors(vectors, self.dim, "vector")?;
        let start = self.len() as u64;
        if ids.len() != n {
            return Err(Error::IdCountMismatch {
                expected: n,
                got: ids.len(),
            });
        }
        if ids
            .iter()
            .enumerate()
            .any(|(i, &id)| id != start + i as u64)
        {
            return Err(Error::invalid(
                "ids",
                format!("starting at {}", ids[0]),
                format!("FAISS rows are labelled by position: ids must run from {start}"),
            ));
        }
        if !self.is_trained() {
            return Err(Error::NotTrained);
        }
        self.inner.add(vectors).map_err(backend)
    }

    fn remove(&mut self, _ids: &[VectorId]) -> Result<usize> {
        Err(Error::Unsupported {
            operation: "remove (deleted rows are hidden by the live-row filter)",
            index: self.spec.type_name().to_string(),
        })
    }

    fn search(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: Option<&Bitmap>,
    ) -> Result<Vec<Vec<Hit>>> {
        check_queries(queries, self.dim, params.k)?;
        let k = params.k;
        let (distances, labels) = if self.is_hnsw() {
            let want = params.ef.unwrap_or(DEFAULT_EF).max(k);
            let guard = self.hnsw_ef.upgradable_read();
            let guard = if *guard == want {
                parking_lot::RwLockUpgradableReadGuard::downgrade(guard)
            } else {
                let mut w = parking_lot::RwLockUpgradableReadGuard::upgrade(guard);
                self.set_parameter("efSearch", want as f64)?;
                *w = want;
                parking_lot::RwLockWriteGuard::downgrade(w)
            };
            let out = self.raw_search(queries, k, None, filter)?;
            drop(guard);
            out
        } else {
            self.raw_search(queries, k, params.nprobe, filter)?
        };
        Ok(hits_from(&labels, &distances, k, k, |_| true))
    }

    fn memory_bytes(&self) -> usize {
        match self.stored_bytes {
            Some(b) => b as usize,
            None => sizing::plan(self.len().max(1) as u64, self.dim, self.spec)
                .map(|p| p.index_bytes as usize)
                .unwrap_or(0),
        }
    }
}

/// Builds a tiny flat index, searches it and checks the answer: proves at start-up that the
/// statically linked FAISS (and its BLAS) works on this machine.
pub fn self_check() -> Result<(), String> {
    let mut index = FaissIndex::new(4, Metric::L2, IndexSpec::Flat).map_err(|e| e.to_string())?;
    let base = [
        0.0f32, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0,
    ];
    index.add(&[0, 1, 2], &base).map_err(|e| e.to_string())?;
    let hits = index
        .search(&[0.9, 1.0, 1.1, 1.0], &SearchParams::new(1), None)
        .map_err(|e| e.to_string())?;
    match hits.first().and_then(|h| h.first()) {
        Some(h) if h.id == 1 => Ok(()),
        other => Err(format!(
            "FAISS self-check returned {other:?}, expected row 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxima_core::exact::exact_search;
    use proxima_core::recall_at_k;

    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        crate::index::clustered(n, dim, seed, 256, 0.15)
    }

    #[test]
    fn single_threaded_faiss_is_per_thread() {
        let before = std::thread::spawn(faiss_threads).join().unwrap();
        let after = std::thread::spawn(|| {
            single_threaded_faiss();
            faiss_threads()
        })
        .join()
        .unwrap();
        assert_eq!(after, 1);
        // A thread that did not ask keeps the default.
        assert_eq!(std::thread::spawn(faiss_threads).join().unwrap(), before);
    }

    #[test]
    fn faiss_is_linked_and_answers() {
        self_check().unwrap();
    }

    #[test]
    fn every_index_type_reaches_recall_and_respects_the_filter() {
        let dim = 32;
        let n = 12_000;
        let mut base = clustered(n, dim, 1);
        let mut queries = clustered(50, dim, 2);
        Metric::Cosine.prepare(&mut base, dim);
        Metric::Cosine.prepare(&mut queries, dim);
        let mut live = Bitmap::new(n, true);
        for i in (0..n).step_by(3) {
            live.set(i, false);
        }
        let truth: Vec<Vec<u64>> =
            exact_search(&base, None, &queries, dim, Metric::Cosine, 10, Some(&live))
                .into_iter()
                .map(|h| h.into_iter().map(|h| h.id).collect())
                .collect();
        let ids: Vec<u64> = (0..n as u64).collect();
        let specs = [
            (IndexSpec::Flat, 0.999),
            (IndexSpec::IvfFlat { nlist: 64 }, 0.9),
            (IndexSpec::IvfSq8 { nlist: 64 }, 0.85),
            (
                IndexSpec::IvfPq {
                    nlist: 64,
                    m: 16,
                    nbits: 8,
                },
                0.5,
            ),
            (
                IndexSpec::Hnsw {
                    m: 16,
                    ef_construction: 80,
                },
                0.9,
            ),
            (
                IndexSpec::HnswSq8 {
                    m: 16,
                    ef_construction: 80,
                },
                0.85,
            ),
        ];
        for (spec, min_recall) in specs {
            let mut index = FaissIndex::new(dim, Metric::Cosine, spec).unwrap();
            index.train(&base).unwrap();
            index.add(&ids, &base).unwrap();
            assert_eq!(index.len(), n);
            let params = SearchParams::new(10).with_nprobe(32).with_ef(128);
            let hits = index.search(&queries, &params, Some(&live)).unwrap();
            assert!(
                hits.iter().all(|h| h.len() == 10),
                "{spec}: fewer than k hits"
            );
            assert!(
                hits.iter().flatten().all(|h| live.get(h.id as usize)),
                "{spec}: deleted row returned"
            );
            let recall = recall_at_k(&hits, &truth, 10);
            assert!(
                recall >= min_recall,
                "{spec}: recall {recall} < {min_recall}"
            );
            assert!(index.memory_bytes() > 0);
        }
    }

    #[test]
    fn training_and_labels_are_checked() {
        let mut index = FaissIndex::new(8, Metric::L2, IndexSpec::IvfFlat { nlist: 100 }).unwrap();
        let few = vec![0.5f32; 8 * 1000];
        assert_eq!(
            index.train(&few),
            Err(Error::TooFewTrainingVectors {
                needed: 3900,
                got: 1000,
                nlist: 100
            })
        );
        assert_eq!(index.add(&[0], &[0.0; 8]), Err(Error::NotTrained));
        let mut flat = FaissIndex::new(2, Metric::L2, IndexSpec::Flat).unwrap();
        assert!(flat.add(&[5], &[1.0, 2.0]).is_err());
        assert!(flat.remove(&[0]).is_err());
        assert!(FaissIndex::new(
            8,
            Metric::L2,
            IndexSpec::DiskAnn {
                max_degree: 8,
                search_list: 10,
                pq_bytes: 4
            }
        )
        .is_err());
    }

    #[test]
    fn save_and_load_roundtrip_with_mmap() {
        let dim = 16;
        let n = 4000;
        let base = clustered(n, dim, 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ivf.faiss");
        let spec = IndexSpec::IvfFlat { nlist: 32 };
        let mut index = FaissIndex::new(dim, Metric::L2, spec).unwrap();
        index.train(&base).unwrap();
        index
            .add(&(0..n as u64).collect::<Vec<_>>(), &base)
            .unwrap();
        index.save(&path).unwrap();
        let q = &base[..dim * 5];
        let params = SearchParams::new(5).with_nprobe(32);
        let before = index.search(q, &params, None).unwrap();
        for mmap in [false, true] {
            let loaded = FaissIndex::load(&path, dim, Metric::L2, spec, mmap).unwrap();
            assert_eq!(loaded.search(q, &params, None).unwrap(), before);
        }
        assert!(FaissIndex::load(&path, dim + 1, Metric::L2, spec, false).is_err());
    }
}
