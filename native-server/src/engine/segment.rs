//! Segments: the growing segment that takes writes, and immutable sealed segments stored in
//! files, memory-mapped, with a FAISS index built in the background.
//!
//! A sealed segment's directory holds `rows.bin` (ids and vectors, CRC-checked), `live.bin`
//! (the live-row bitmap as of the last checkpoint) and `index-<generation>.faiss`. With a GPU,
//! a sealed segment may also hold a copy of its index (or of its rows) on the device.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use memmap2::Mmap;
use parking_lot::RwLock;
use proxima_core::exact::TopK;
use proxima_core::params::{default_nprobe, default_refine_factor, refine_candidates};
use proxima_core::{Bitmap, Hit, IndexSpec, Metric, SearchParams, VectorIndex};
use serde::Serialize;

use super::error::{EngineError, EngineResult};
use super::fs::{create_dir_durable, write_file_atomic};
use super::types::{IndexState, SegmentState};
use crate::index::blas_exact;
use crate::index::faiss_backend::FaissIndex;
use crate::index::gpu::{self, GpuDevice, GpuIndex};

const ROWS_MAGIC: &[u8; 4] = b"PXSG";
const LIVE_MAGIC: &[u8; 4] = b"PXLV";
const VERSION: u32 = 1;
const HEADER: usize = 32;

/// Rows not yet sealed: searched exactly, deleted rows cleared in `live`.
#[derive(Debug, Default)]
pub struct GrowingSegment {
    pub ids: Vec<u64>,
    pub vectors: Vec<f32>,
    pub live: Bitmap,
    pub live_count: usize,
}

impl GrowingSegment {
    /// Appends a row and returns its position.
    pub fn push(&mut self, id: u64, vector: &[f32]) -> u32 {
        let row = self.ids.len();
        self.ids.push(id);
        self.vectors.extend_from_slice(vector);
        self.live.push(true);
        self.live_count += 1;
        row as u32
    }

    /// Tombstones a row.
    pub fn kill(&mut self, row: u32) {
        if self.live.get(row as usize) {
            self.live.set(row as usize, false);
            self.live_count -= 1;
        }
    }

    /// Rows stored (live and deleted).
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Exact search over the live rows (a BLAS product for batches, see `blas_exact`); hits
    /// carry user ids. Serial: it runs under the shard's read lock on a search-pool thread,
    /// which must not start parallel work there (see `exact_search_serial`; the pool makes
    /// BLAS single-threaded); the pool parallelises across chunks of queries instead.
    pub fn search(&self, queries: &[f32], dim: usize, metric: Metric, k: usize) -> Vec<Vec<Hit>> {
        if self.live_count == 0 {
            return vec![Vec::new(); queries.len() / dim];
        }
        blas_exact::exact_search(
            &self.vectors,
            &self.ids,
            queries,
            dim,
            metric,
            k,
            Some(&self.live),
        )
    }

    /// Bytes held in RAM.
    pub fn memory_bytes(&self) -> usize {
        self.vectors.capacity() * 4 + self.ids.capacity() * 8 + self.live.as_bytes().len()
    }
}

/// Queries a sealed segment's index answered with fewer than `min(k, live rows)` hits, and
/// that were answered again (see `SealedSegment::complete_short`): many means many deleted
/// rows awaiting compaction, or a k too large for the probed lists.
static SHORT_ANSWERS: AtomicU64 = AtomicU64::new(0);

/// How many queries were answered again (process-wide; see [`SHORT_ANSWERS`]).
pub fn requeried_queries() -> u64 {
    SHORT_ANSWERS.load(Ordering::Relaxed)
}

/// The re-ranking factor of a search of a segment serving `spec`: the query's
/// `refine_factor` (the collection fills in its own when the query gives none), else
/// [`default_refine_factor`] of the index, for compressed indexes; 1 (none) for the others
/// and for exact search.
pub fn refine_factor(spec: Option<&IndexSpec>, params: &SearchParams) -> usize {
    match spec {
        Some(spec) if spec.is_compressed() => params
            .refine_factor
            .unwrap_or_else(|| default_refine_factor(spec)),
        _ => 1,
    }
}

/// Progress of a background index build.
#[derive(Debug)]
pub struct BuildProgress {
    pub spec: IndexSpec,
    /// Why this spec (parameters defaulted, `AUTO`'s pick); `None` when the request gave it.
    pub reason: Option<String>,
    pub generation: u64,
    pub done: AtomicUsize,
    pub total: usize,
}

/// The index state of a sealed segment. A new index is built beside the current one and
/// swapped in when complete, so searches never wait for a build or see half an index.
#[derive(Default)]
pub struct IndexSlot {
    /// The index searches use, with its spec, generation and file name.
    pub ready: Option<ReadyIndex>,
    pub building: Option<Arc<BuildProgress>>,
    /// Why the segment is searched exactly (e.g. too few rows to train).
    pub note: Option<String>,
    /// Why the segment serves what it serves (`ready`, or exact search): the reason of the
    /// build that put it in service (see [`BuildProgress::reason`]).
    pub reason: Option<String>,
    /// The copy on the GPU of `ready` (or of the rows, while there is no index).
    pub gpu: Option<Arc<GpuIndex>>,
    /// Why the last copy to the GPU failed (cleared by a copy that succeeds).
    pub gpu_note: Option<String>,
    /// The kind of that failure: a retry that fails the same way is logged at debug level.
    pub gpu_failure: Option<gpu::Fallback>,
}

impl IndexSlot {
    /// Puts `ready` in service and returns what it replaces: the old index, and a GPU copy
    /// of it (one of the rows stays while the segment stays exact). Drop them after releasing
    /// the slot lock: freeing a GPU copy works on the device (when it is not busy).
    pub fn serve(&mut self, ready: Option<ReadyIndex>) -> Retired {
        let gpu = if ready.is_some() || self.ready.is_some() {
            self.gpu.take()
        } else {
            None
        };
        Retired {
            ready: std::mem::replace(&mut self.ready, ready),
            gpu,
        }
    }
}

/// What [`IndexSlot::serve`] took out of service.
pub struct Retired {
    pub ready: Option<ReadyIndex>,
    /// Held only so that the caller decides where it is freed.
    #[allow(dead_code)]
    pub gpu: Option<Arc<GpuIndex>>,
}

/// A built index.
#[derive(Clone)]
pub struct ReadyIndex {
    pub spec: IndexSpec,
    pub generation: u64,
    pub file: String,
    pub index: Arc<FaissIndex>,
}

/// An immutable, memory-mapped segment.
pub struct SealedSegment {
    pub id: u64,
    pub shard: usize,
    pub dir: PathBuf,
    dim: usize,
    rows: usize,
    map: Mmap,
    pub slot: RwLock<IndexSlot>,
    /// A copy to the GPU is queued (at most one is).
    pub offload_queued: AtomicBool,
}

/// What [`SealedSegment::offload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offloaded {
    /// The segment has a GPU copy now.
    Copied,
    /// Nothing to do: already copied, not for the GPU (HNSW, too few rows), mid-build, or
    /// superseded while copying.
    Skipped,
    /// The device had no room: worth trying again once GPU memory is freed.
    NoRoom,
    /// Another GPU error (logged and counted).
    Failed,
}

/// What `describe` reports for a segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentInfo {
    pub id: Option<u64>,
    pub shard: usize,
    pub state: SegmentState,
    pub rows: usize,
    pub live_rows: usize,
    pub index: SegmentIndexInfo,
    pub memory_bytes: u64,
    pub mapped_bytes: u64,
    /// Device memory of the segment's GPU copy (0: searched on the CPU).
    pub gpu_bytes: u64,
    /// Why the segment is not on the GPU, when a copy failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_note: Option<String>,
}

/// Index state of a segment, for `describe`.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentIndexInfo {
    pub state: IndexState,
    #[serde(rename = "type")]
    pub index_type: Option<String>,
    /// The index building or ready, with every parameter as chosen (`nlist` included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<IndexSpec>,
    pub progress: Option<f64>,
    pub note: Option<String>,
    /// Why this index and these parameters (defaults, `AUTO`'s pick), when the request did
    /// not give them all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SealedSegment {
    /// Writes a new segment's `rows.bin` into `dir` (created here) and opens it.
    pub fn create(
        dir: &Path,
        id: u64,
        shard: usize,
        dim: usize,
        ids: &[u64],
        vectors: &[f32],
    ) -> EngineResult<Self> {
        // A directory left by a checkpoint that crashed before its manifest was written is
        // not part of the collection: start from scratch.
        if dir.exists() {
            fs::remove_dir_all(dir)
                .map_err(EngineError::io(format!("remove {}", dir.display())))?;
        }
        // The manifest will name this directory: its entry in `segments/` must be durable
        // first.
        create_dir_durable(dir)?;
        let n = ids.len();
        let mut body = Vec::with_capacity(n * 8 + vectors.len() * 4);
        body.extend_from_slice(bytemuck::cast_slice(ids));
        body.extend_from_slice(bytemuck::cast_slice(vectors));
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(ROWS_MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(dim as u32).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&(n as u64).to_le_bytes());
        header.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        header.resize(HEADER, 0);
        header.extend_from_slice(&body);
        if let Err(e) = write_file_atomic(&dir.join("rows.bin"), &header) {
            // A full disk: give the space of the partial file back at once.
            let _ = fs::remove_dir_all(dir);
            return Err(e);
        }
        Self::open(dir, id, shard, dim)
    }

    /// Opens a segment written by [`SealedSegment::create`], checking its checksum.
    pub fn open(dir: &Path, id: u64, shard: usize, dim: usize) -> EngineResult<Self> {
        let path = dir.join("rows.bin");
        let corrupt = |reason: String| EngineError::Corrupt {
            path: path.clone(),
            reason,
        };
        let file =
            File::open(&path).map_err(EngineError::io(format!("open {}", path.display())))?;
        // SAFETY: segment files are written once, renamed into place and never modified
        // afterwards (the engine owns the data directory), so the mapping stays valid.
        let map = unsafe { Mmap::map(&file) }
            .map_err(EngineError::io(format!("mmap {}", path.display())))?;
        if map.len() < HEADER || &map[0..4] != ROWS_MAGIC {
            return Err(corrupt("bad header".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().unwrap_or([0; 4]));
        if u32_at(4) != VERSION || u32_at(8) as usize != dim {
            return Err(corrupt(format!(
                "version {} / dim {} (expected dim {dim})",
                u32_at(4),
                u32_at(8)
            )));
        }
        let n = u64::from_le_bytes(map[16..24].try_into().unwrap_or([0; 8])) as usize;
        if map.len() != HEADER + n * 8 + n * dim * 4 {
            return Err(corrupt(format!(
                "length {} does not hold {n} rows",
                map.len()
            )));
        }
        if crc32fast::hash(&map[HEADER..]) != u32_at(24) {
            return Err(corrupt("checksum mismatch".into()));
        }
        Ok(Self {
            id,
            shard,
            dir: dir.to_path_buf(),
            dim,
            rows: n,
            map,
            slot: RwLock::new(IndexSlot::default()),
            offload_queued: AtomicBool::new(false),
        })
    }

    /// Rows in the segment.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Ids by row.
    pub fn ids(&self) -> &[u64] {
        bytemuck::cast_slice(&self.map[HEADER..HEADER + self.rows * 8])
    }

    /// Row-major vectors.
    pub fn vectors(&self) -> &[f32] {
        bytemuck::cast_slice(&self.map[HEADER + self.rows * 8..])
    }

    /// Vector of `row`.
    pub fn vector(&self, row: usize) -> &[f32] {
        &self.vectors()[row * self.dim..(row + 1) * self.dim]
    }

    /// Writes the live-row bitmap (at a checkpoint).
    pub fn write_live(&self, live: &Bitmap) -> EngineResult<()> {
        let mut bytes = Vec::with_capacity(16 + live.as_bytes().len());
        bytes.extend_from_slice(LIVE_MAGIC);
        bytes.extend_from_slice(&(live.len() as u64).to_le_bytes());
        bytes.extend_from_slice(live.as_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        write_file_atomic(&self.dir.join("live.bin"), &bytes)
    }

    /// Reads the live-row bitmap (all rows live when none was written yet).
    pub fn read_live(&self) -> EngineResult<Bitmap> {
        let path = self.dir.join("live.bin");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Bitmap::new(self.rows, true))
            }
            Err(e) => return Err(EngineError::io(format!("read {}", path.display()))(e)),
        };
        let corrupt = |reason: &str| EngineError::Corrupt {
            path: path.clone(),
            reason: reason.to_string(),
        };
        if bytes.len() < 16 || &bytes[0..4] != LIVE_MAGIC {
            return Err(corrupt("bad header"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap_or([0; 4])) {
            return Err(corrupt("checksum mismatch"));
        }
        let len = u64::from_le_bytes(body[4..12].try_into().unwrap_or([0; 8])) as usize;
        if len != self.rows || body.len() - 12 != len.div_ceil(8) {
            return Err(corrupt("bitmap length does not match the segment"));
        }
        let mut live = Bitmap::new(len, false);
        for i in 0..len {
            if (body[12 + (i >> 3)] >> (i & 7)) & 1 == 1 {
                live.set(i, true);
            }
        }
        Ok(live)
    }

    /// The index searches should use now, if built.
    pub fn ready_index(&self) -> Option<(ReadyIndex, Option<String>)> {
        let slot = self.slot.read();
        slot.ready.clone().map(|r| (r, slot.reason.clone()))
    }

    /// Searches the live rows: on the GPU when the segment has a copy there that can answer,
    /// else through the index when one is ready, else exactly (serially, as
    /// [`GrowingSegment::search`]). A compressed index (IVF_SQ8, IVF_PQ, HNSW_SQ8) is asked
    /// for `k × refine_factor` candidates, re-ranked exactly on the rows (see
    /// [`SealedSegment::rerank`]).
    pub fn search(
        &self,
        queries: &[f32],
        metric: Metric,
        params: &SearchParams,
        live: &Bitmap,
        live_count: usize,
    ) -> EngineResult<Vec<Vec<Hit>>> {
        // Without deletions no filter is needed (it costs a check per candidate).
        let filter = (live_count < self.rows).then_some(live);
        let (serving, on_gpu) = {
            let slot = self.slot.read();
            (
                slot.ready.as_ref().map(|r| (r.index.clone(), r.spec)),
                slot.gpu.clone(),
            )
        };
        let refine = refine_factor(serving.as_ref().map(|(_, spec)| spec), params);
        let fetch = SearchParams {
            k: self.refine_fetch(params.k, refine),
            ..*params
        };
        let from_gpu = on_gpu.and_then(|g| {
            g.search(queries, &fetch, filter, self.rows - live_count)
                .map_err(|e| gpu::fall_back(self.id, "search", &e))
                .ok()
        });
        let mut hits = match (from_gpu, &serving) {
            (Some(mut hits), _) => {
                if refine > 1 {
                    self.rerank(&mut hits, queries, metric, params.k, filter);
                }
                self.rows_to_ids(&mut hits);
                hits
            }
            (None, Some((index, _))) => {
                self.search_index(index, queries, metric, params, filter, refine)?
            }
            (None, None) => return Ok(self.exact(queries, metric, params.k, filter)),
        };
        self.complete_short(
            &mut hits, queries, metric, params, filter, live_count, &serving, refine,
        )?;
        Ok(hits)
    }

    /// Candidates asked of the index for `k` hits re-ranked with `refine` (`k` when 1).
    fn refine_fetch(&self, k: usize, refine: usize) -> usize {
        if refine > 1 {
            refine_candidates(k, refine).min(self.rows.max(k))
        } else {
            k
        }
    }

    /// Searches `index` (re-ranked with `refine` when above 1); hits carry user ids.
    fn search_index(
        &self,
        index: &FaissIndex,
        queries: &[f32],
        metric: Metric,
        params: &SearchParams,
        filter: Option<&Bitmap>,
        refine: usize,
    ) -> EngineResult<Vec<Vec<Hit>>> {
        let fetch = SearchParams {
            k: self.refine_fetch(params.k, refine),
            ..*params
        };
        let mut hits = index.search(queries, &fetch, filter)?;
        if refine > 1 {
            self.rerank(&mut hits, queries, metric, params.k, filter);
        }
        self.rows_to_ids(&mut hits);
        Ok(hits)
    }

    /// Re-ranking (FAISS's `IndexRefineFlat`, Milvus's `refine`): scores each query's
    /// candidates (rows, as an index labels them) exactly on the segment's `f32` rows, read
    /// from the memory-mapped rows file, and keeps the best `k`. A row the filter does not
    /// hold live is dropped, so a deleted row never comes back through here either.
    fn rerank(
        &self,
        hits: &mut [Vec<Hit>],
        queries: &[f32],
        metric: Metric,
        k: usize,
        filter: Option<&Bitmap>,
    ) {
        let dim = self.dim;
        for (q, list) in hits.iter_mut().enumerate() {
            let query = &queries[q * dim..(q + 1) * dim];
            let mut top = TopK::new(k, metric);
            for h in list.iter() {
                let row = h.id as usize;
                if row >= self.rows || filter.is_some_and(|f| !f.get(row)) {
                    continue;
                }
                top.push(h.id, metric.score(query, self.vector(row)));
            }
            *list = top.into_sorted();
        }
    }

    /// Relabels an index's hits (rows) with the rows' ids.
    fn rows_to_ids(&self, hits: &mut [Vec<Hit>]) {
        let ids = self.ids();
        for h in hits.iter_mut().flatten() {
            h.id = ids[h.id as usize];
        }
    }

    /// Exact search over the segment's live rows (serial: see [`GrowingSegment::search`]).
    fn exact(
        &self,
        queries: &[f32],
        metric: Metric,
        k: usize,
        filter: Option<&Bitmap>,
    ) -> Vec<Vec<Hit>> {
        blas_exact::exact_search(
            self.vectors(),
            self.ids(),
            queries,
            self.dim,
            metric,
            k,
            filter,
        )
    }

    /// An index answers from the candidates it visits: IVF from the lists it probes, HNSW from
    /// its `ef` best nodes, deleted rows among them. A query left with fewer than k live hits
    /// although the segment holds them (many deletions, or a k above what the probed lists
    /// hold) is answered again: IVF with eight times the lists probed, then, for any query
    /// still short and for HNSW (whose `ef` is shared by concurrent searches), exactly over
    /// the segment's rows. Every query thus gets `min(k, live rows)` hits.
    #[allow(clippy::too_many_arguments)]
    fn complete_short(
        &self,
        hits: &mut [Vec<Hit>],
        queries: &[f32],
        metric: Metric,
        params: &SearchParams,
        filter: Option<&Bitmap>,
        live_count: usize,
        serving: &Option<(Arc<FaissIndex>, IndexSpec)>,
        refine: usize,
    ) -> EngineResult<()> {
        let want = params.k.min(live_count);
        let mut short: Vec<usize> = (0..hits.len()).filter(|&q| hits[q].len() < want).collect();
        if short.is_empty() {
            return Ok(());
        }
        SHORT_ANSWERS.fetch_add(short.len() as u64, Ordering::Relaxed);
        let dim = self.dim;
        let gather = |qs: &[usize]| -> Vec<f32> {
            qs.iter()
                .flat_map(|&q| &queries[q * dim..(q + 1) * dim])
                .copied()
                .collect()
        };
        if let Some((index, spec)) = serving {
            if let Some(nlist) = spec.nlist() {
                let nprobe = params.nprobe.unwrap_or_else(|| default_nprobe(nlist));
                if nprobe < nlist {
                    let wider = SearchParams {
                        nprobe: Some(nprobe.saturating_mul(8).min(nlist)),
                        ..*params
                    };
                    let again =
                        self.search_index(index, &gather(&short), metric, &wider, filter, refine)?;
                    for (&q, h) in short.iter().zip(again) {
                        hits[q] = h;
                    }
                    short.retain(|&q| hits[q].len() < want);
                }
            }
        }
        if !short.is_empty() {
            let exact = self.exact(&gather(&short), metric, params.k, filter);
            for (&q, h) in short.iter().zip(exact) {
                hits[q] = h;
            }
        }
        Ok(())
    }

    /// Copies the segment's serving index to the GPU, or its rows while it is searched exactly
    /// (HNSW segments, those below the GPU's `min_rows` and those with a build under way stay
    /// on the CPU). A copy that does not fit leaves the segment on the CPU (logged, counted).
    pub fn offload(&self, device: &Arc<GpuDevice>, metric: Metric) -> Offloaded {
        if self.rows < device.settings().min_rows.max(1) {
            return Offloaded::Skipped;
        }
        let ready = {
            let slot = self.slot.read();
            if slot.building.is_some() || slot.gpu.is_some() {
                return Offloaded::Skipped;
            }
            slot.ready.clone()
        };
        let generation = ready.as_ref().map(|r| r.generation);
        let uploaded = match &ready {
            Some(r) if !gpu::runs_on_gpu(&r.spec) => return Offloaded::Skipped,
            Some(r) => device.upload_index(&r.index),
            None => device.upload_flat(self.dim, metric, self.vectors()),
        };
        match uploaded {
            Ok(index) => {
                let mut slot = self.slot.write();
                // A swap meanwhile made this copy stale: it is dropped.
                if slot.ready.as_ref().map(|r| r.generation) != generation || slot.gpu.is_some() {
                    return Offloaded::Skipped;
                }
                tracing::info!(
                    segment = self.id,
                    rows = self.rows,
                    bytes = index.memory_bytes(),
                    "segment on the GPU"
                );
                slot.gpu = Some(Arc::new(index));
                slot.gpu_note = None;
                slot.gpu_failure = None;
                Offloaded::Copied
            }
            Err(e) => {
                let mut slot = self.slot.write();
                let repeated = slot.gpu_failure == Some(e.reason());
                gpu::fall_back_again(self.id, "upload", &e, repeated);
                slot.gpu_note = Some(format!("searched on the CPU: {e}"));
                slot.gpu_failure = Some(e.reason());
                drop(slot);
                match e.reason() {
                    gpu::Fallback::OutOfMemory => Offloaded::NoRoom,
                    _ => Offloaded::Failed,
                }
            }
        }
    }

    /// Describes the segment.
    pub fn info(&self, live_rows: usize) -> SegmentInfo {
        let slot = self.slot.read();
        let index = match (&slot.building, &slot.ready) {
            (Some(b), _) => SegmentIndexInfo {
                state: IndexState::Building,
                index_type: Some(b.spec.to_string()),
                spec: Some(b.spec),
                progress: Some(b.done.load(Ordering::Relaxed) as f64 / b.total.max(1) as f64),
                note: slot
                    .ready
                    .as_ref()
                    .map(|r| format!("serving {} until the build completes", r.spec)),
                reason: b.reason.clone(),
            },
            (None, Some(r)) => SegmentIndexInfo {
                state: IndexState::Ready,
                index_type: Some(r.spec.to_string()),
                spec: Some(r.spec),
                progress: Some(1.0),
                note: None,
                reason: slot.reason.clone(),
            },
            (None, None) => SegmentIndexInfo {
                state: IndexState::Exact,
                index_type: None,
                spec: None,
                progress: None,
                note: slot.note.clone(),
                reason: slot.reason.clone(),
            },
        };
        SegmentInfo {
            id: Some(self.id),
            shard: self.shard,
            state: SegmentState::Sealed,
            rows: self.rows,
            live_rows,
            memory_bytes: slot
                .ready
                .as_ref()
                .map_or(0, |r| r.index.memory_bytes() as u64)
                + self.rows.div_ceil(8) as u64,
            mapped_bytes: self.map.len() as u64,
            gpu_bytes: slot.gpu.as_ref().map_or(0, |g| g.memory_bytes()),
            gpu_note: slot.gpu_note.clone(),
            index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_live_roundtrip_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let seg_dir = dir.path().join("7");
        let ids = [10u64, 20, 30];
        let vectors = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let seg = SealedSegment::create(&seg_dir, 7, 0, 2, &ids, &vectors).unwrap();
        assert_eq!(seg.ids(), &ids);
        assert_eq!(seg.vector(1), &[3.0, 4.0]);
        assert_eq!(seg.read_live().unwrap().count_ones(), 3);
        let mut live = Bitmap::new(3, true);
        live.set(1, false);
        seg.write_live(&live).unwrap();
        let reopened = SealedSegment::open(&seg_dir, 7, 0, 2).unwrap();
        assert_eq!(reopened.read_live().unwrap(), live);
        let hits = reopened
            .search(&[3.0, 4.0], Metric::L2, &SearchParams::new(3), &live, 2)
            .unwrap();
        assert_eq!(
            hits[0].iter().map(|h| h.id).collect::<Vec<_>>(),
            vec![10, 30]
        );
        assert!(SealedSegment::open(&seg_dir, 7, 0, 3).is_err());
        let path = seg_dir.join("rows.bin");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        drop(reopened);
        drop(seg);
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            SealedSegment::open(&seg_dir, 7, 0, 2),
            Err(EngineError::Corrupt { .. })
        ));
    }
}
