//! The CUDA side: FAISS's `StandardGpuResources` for one device, uploads of CPU indexes and of
//! exact rows, and searches with the deletion rule of the module docs.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use faiss_sys as sys;
use parking_lot::{Mutex, MutexGuard};
use proxima_core::params::default_nprobe;
use proxima_core::{Bitmap, Hit, Metric, SearchParams, VectorIndex};

use super::{arch_supports, runs_on_gpu, GpuError, GpuSettings, GPU_MAX_K, STATS};
use crate::index::faiss_backend::{check_rc, hits_from, search_raw, FaissIndex};

// shim.cpp (compiled by build.rs): every call returns 0, 1 (out of memory) or 2 (other error)
// and writes a message into `err`.
extern "C" {
    fn proxima_gpu_device_count(out: *mut c_int, err: *mut c_char, err_len: usize) -> c_int;
    fn proxima_gpu_capability(
        device: c_int,
        major: *mut c_int,
        minor: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn proxima_gpu_memory(
        device: c_int,
        free: *mut usize,
        total: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn proxima_gpu_init(res: *mut c_void, device: c_int, err: *mut c_char, err_len: usize)
        -> c_int;
    fn proxima_gpu_clone(
        res: *mut c_void,
        device: c_int,
        cpu: *const c_void,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn proxima_gpu_flat(
        res: *mut c_void,
        device: c_int,
        d: c_int,
        metric: c_int,
        n: i64,
        rows: *const f32,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn proxima_gpu_free(index: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    #[cfg(test)]
    fn proxima_gpu_hold(
        device: c_int,
        bytes: usize,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    #[cfg(test)]
    fn proxima_gpu_release(
        device: c_int,
        p: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// The CUDA architectures the build compiled FAISS's kernels for (`CUDAARCHS`, required by
/// build.rs).
const BUILT_ARCHS: &str = env!("PROXIMA_CUDA_ARCHS");

/// Longest a search waits for the device (busy with an upload or other searches) before the
/// CPU index answers instead.
const DEVICE_WAIT: Duration = Duration::from_millis(50);

/// Fixed device memory of an upload beyond its vectors (quantizer, list headers, rounding to
/// the allocator's pages).
const UPLOAD_OVERHEAD: u64 = 16 << 20;

/// Calls a shim function with an error buffer and maps its return code.
fn shim(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), GpuError> {
    let mut buf = [0 as c_char; 1024];
    let code = f(buf.as_mut_ptr(), buf.len());
    if code == 0 {
        return Ok(());
    }
    // SAFETY: the shim always NUL-terminates `err` within its length when it fails.
    let message = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .trim()
        .to_string();
    Err(if code == 1 {
        GpuError::OutOfMemory { message }
    } else {
        GpuError::Backend { message }
    })
}

/// FAISS errors raised through its C API (`faiss_get_last_error`), classified.
fn from_core(e: proxima_core::Error) -> GpuError {
    let message = e.to_string();
    if message.contains("alloc fail") || message.contains("out of memory") {
        GpuError::OutOfMemory { message }
    } else {
        GpuError::Backend { message }
    }
}

/// CUDA devices on this machine (0 without a device or driver).
pub fn device_count() -> Result<i32, GpuError> {
    let mut n: c_int = 0;
    // SAFETY: writes one int.
    shim(|e, l| unsafe { proxima_gpu_device_count(&mut n, e, l) })?;
    Ok(n)
}

/// Free and total bytes of `device`.
pub fn memory(device: i32) -> Result<(u64, u64), GpuError> {
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: writes two size_t.
    shim(|e, l| unsafe { proxima_gpu_memory(device, &mut free, &mut total, e, l) })?;
    Ok((free as u64, total as u64))
}

/// FAISS's per-process GPU state for one device. Not thread-safe in FAISS, so only touched
/// with the [`GpuDevice`] lock held.
struct Resources(*mut sys::FaissStandardGpuResources);

// SAFETY: the resources are created, used and freed only while holding the device mutex, so
// moving the pointer between threads never lets two threads use it at once.
unsafe impl Send for Resources {}

impl Drop for Resources {
    fn drop(&mut self) {
        // SAFETY: created by faiss_StandardGpuResources_new; every index using it holds an
        // `Arc<GpuDevice>`, so none is left when this runs.
        unsafe { sys::faiss_StandardGpuResources_free(self.0) }
    }
}

/// A GPU index whose owner was dropped while the device was busy; freed by the next holder
/// of the device lock.
struct PendingFree {
    raw: *mut sys::FaissIndex,
    bytes: u64,
}

// SAFETY: the pointer is only freed, by whoever holds the device lock next.
unsafe impl Send for PendingFree {}

/// One CUDA device and FAISS's resources on it.
pub struct GpuDevice {
    settings: GpuSettings,
    res: Mutex<Resources>,
    /// Indexes to free: dropping a [`GpuIndex`] never waits for the device (its owner may hold
    /// a shard lock), so a drop while an upload or search runs leaves the free to the next
    /// holder of `res`. Lock order: `res`, then `pending`.
    pending: Mutex<Vec<PendingFree>>,
    /// Whether uploads check free memory first (turned off by tests that provoke a real
    /// out-of-memory inside FAISS).
    preflight: bool,
}

impl Drop for GpuDevice {
    fn drop(&mut self) {
        // Before `res` (the resources the indexes were allocated from) is freed.
        for p in std::mem::take(self.pending.get_mut()) {
            free_index(p.raw, p.bytes);
        }
    }
}

/// Frees a GPU index made by the shim; the caller holds the device lock (or owns the device).
fn free_index(raw: *mut sys::FaissIndex, bytes: u64) {
    // SAFETY: `raw` came from the shim and is freed exactly once.
    let freed = shim(|e, l| unsafe { proxima_gpu_free(raw.cast(), e, l) });
    STATS.release(bytes);
    if let Err(e) = freed {
        tracing::error!(error = %e, "freeing a GPU index failed");
    }
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDevice")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl GpuDevice {
    /// Opens `settings.device`: checks that it exists and that this build has kernels for it,
    /// initialises FAISS's resources there and runs a self-check search.
    pub fn open(settings: &GpuSettings) -> Result<Arc<Self>, GpuError> {
        Self::open_with(settings, true)
    }

    pub(super) fn open_with(
        settings: &GpuSettings,
        preflight: bool,
    ) -> Result<Arc<Self>, GpuError> {
        let device = settings.device;
        let count = device_count()?;
        if device < 0 || device >= count {
            return Err(GpuError::NoDevice { device, count });
        }
        let (mut major, mut minor) = (0, 0);
        // SAFETY: writes two ints.
        shim(|e, l| unsafe { proxima_gpu_capability(device, &mut major, &mut minor, e, l) })?;
        if !arch_supports(BUILT_ARCHS, major, minor) {
            return Err(GpuError::Backend {
                message: format!(
                    "device {device} has compute capability {major}.{minor}, but FAISS's kernels \
                     were built for CUDAARCHS={BUILT_ARCHS:?}; rebuild with its architecture in \
                     CUDAARCHS"
                ),
            });
        }
        let (free, total) = memory(device)?;
        let mut raw = ptr::null_mut();
        // SAFETY: writes a new resources pointer.
        check(unsafe { sys::faiss_StandardGpuResources_new(&mut raw) })?;
        let res = Resources(raw);
        // FAISS reserves up to 1.5 GiB of temporary memory when it initialises the device and
        // aborts the process when it cannot: on a nearly full device, reserve less.
        let temp = (free / 4).min(1536 << 20) as usize;
        // SAFETY: `res` is valid and not yet shared.
        check(unsafe { sys::faiss_StandardGpuResources_setTempMemory(res.0, temp) })?;
        // SAFETY: as above; initialises streams, cuBLAS and the temporary memory of `device`.
        shim(|e, l| unsafe { proxima_gpu_init(res.0.cast(), device, e, l) })?;
        let gpu = Arc::new(Self {
            settings: settings.clone(),
            res: Mutex::new(res),
            pending: Mutex::new(Vec::new()),
            preflight,
        });
        gpu.self_check()?;
        tracing::info!(
            device,
            capability = %format!("{major}.{minor}"),
            total_bytes = total,
            free_bytes = free,
            "GPU ready"
        );
        Ok(gpu)
    }

    /// Uploads four rows and searches them: proves the kernels run on this device.
    fn self_check(self: &Arc<Self>) -> Result<(), GpuError> {
        let rows = [
            0.0f32, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0, 9.0, 9.0, 9.0, 9.0,
        ];
        // Not held to the reserve: the check is about the kernels, and its copy goes at once.
        let index = self.flat(false, 4, Metric::L2, &rows)?;
        let hits = index.search(&[0.9, 1.0, 1.1, 1.0], &SearchParams::new(2), None, 0)?;
        match hits
            .first()
            .map(|h| h.iter().map(|h| h.id).collect::<Vec<_>>())
        {
            Some(ids) if ids == [1, 0] => Ok(()),
            other => Err(GpuError::Backend {
                message: format!("GPU self-check returned rows {other:?}, expected [1, 0]"),
            }),
        }
    }

    /// The settings the device was opened with.
    pub fn settings(&self) -> &GpuSettings {
        &self.settings
    }

    /// Takes the device lock, waiting as long as it takes.
    fn lock(&self) -> MutexGuard<'_, Resources> {
        let held = self.res.lock();
        self.free_pending(&held);
        held
    }

    /// Takes the device lock if it comes within `wait`.
    fn lock_within(&self, wait: Duration) -> Option<MutexGuard<'_, Resources>> {
        let held = self.res.try_lock_for(wait)?;
        self.free_pending(&held);
        Some(held)
    }

    /// Frees the indexes dropped while the device was busy; `_held` proves the lock is held.
    fn free_pending(&self, _held: &Resources) {
        let pending = std::mem::take(&mut *self.pending.lock());
        for p in pending {
            free_index(p.raw, p.bytes);
        }
    }

    /// Fails with `OutOfMemory` when `needed` bytes would not leave the reserve free.
    fn check_fits(&self, preflight: bool, needed: u64, free: u64) -> Result<(), GpuError> {
        if !preflight || needed + self.settings.reserve_bytes <= free {
            return Ok(());
        }
        Err(GpuError::OutOfMemory {
            message: format!(
                "{needed} bytes needed, {free} free, {} kept in reserve",
                self.settings.reserve_bytes
            ),
        })
    }

    /// Runs an upload under the lock: checks the space, measures what the new index took.
    fn upload(
        self: &Arc<Self>,
        preflight: bool,
        estimate: u64,
        rows: usize,
        dim: usize,
        nlist: Option<usize>,
        make: impl FnOnce(&Resources, *mut *mut c_void, *mut c_char, usize) -> c_int,
    ) -> Result<GpuIndex, GpuError> {
        let device = self.settings.device;
        let res = self.lock();
        let (free, _) = memory(device)?;
        self.check_fits(preflight, estimate, free)?;
        let mut out: *mut c_void = ptr::null_mut();
        shim(|e, l| make(&res, &mut out, e, l))?;
        let index = GpuIndex {
            raw: out.cast(),
            device: self.clone(),
            dim,
            rows,
            nlist,
            // FAISS allocates device storage with cudaMalloc directly (its temporary stack was
            // reserved at start-up), and no other upload or search runs meanwhile: the drop in
            // free memory is what the index takes.
            bytes: match memory(device) {
                Ok((after, _)) if after < free => free - after,
                _ => estimate,
            },
        };
        STATS.hold(index.bytes);
        drop(res);
        Ok(index)
    }

    /// Copies a FLAT or IVF index to the device.
    pub fn upload_index(self: &Arc<Self>, cpu: &FaissIndex) -> Result<GpuIndex, GpuError> {
        let spec = cpu.spec();
        if !runs_on_gpu(&spec) {
            return Err(GpuError::Unsuitable {
                reason: "this index type has no GPU implementation",
            });
        }
        let rows = cpu.len();
        // Codes as on the CPU, plus 8-byte ids per row in the inverted lists.
        let estimate = cpu.memory_bytes() as u64 + rows as u64 * 8 + UPLOAD_OVERHEAD;
        let device = self.settings.device;
        let raw = cpu.raw();
        self.upload(
            self.preflight,
            estimate,
            rows,
            cpu.dim(),
            spec.nlist(),
            |res, out, e, l| {
                // SAFETY: `res` is locked; `raw` is a valid CPU index that outlives the call and
                // is only read; the shim writes the new index into `out` or leaves it null.
                unsafe { proxima_gpu_clone(res.0.cast(), device, raw as *const c_void, out, e, l) }
            },
        )
    }

    /// Puts `rows` (row-major, `dim` floats each) into a GPU flat index: exact search on the
    /// device for a segment searched exactly on the CPU.
    pub fn upload_flat(
        self: &Arc<Self>,
        dim: usize,
        metric: Metric,
        rows: &[f32],
    ) -> Result<GpuIndex, GpuError> {
        self.flat(self.preflight, dim, metric, rows)
    }

    fn flat(
        self: &Arc<Self>,
        preflight: bool,
        dim: usize,
        metric: Metric,
        rows: &[f32],
    ) -> Result<GpuIndex, GpuError> {
        let n = rows.len() / dim.max(1);
        let estimate = (rows.len() as u64 + n as u64) * 4 + UPLOAD_OVERHEAD;
        let faiss_metric: c_int = match metric {
            Metric::L2 => 1,
            Metric::InnerProduct | Metric::Cosine => 0,
        };
        let device = self.settings.device;
        self.upload(preflight, estimate, n, dim, None, |res, out, e, l| {
            // SAFETY: `res` is locked; `rows` holds `n * dim` floats and is only read.
            unsafe {
                proxima_gpu_flat(
                    res.0.cast(),
                    device,
                    dim as c_int,
                    faiss_metric,
                    n as i64,
                    rows.as_ptr(),
                    out,
                    e,
                    l,
                )
            }
        })
    }
}

fn check(rc: c_int) -> Result<(), GpuError> {
    check_rc(rc).map_err(from_core)
}

/// A segment's index on the device; freed when dropped (at once, or by the next holder of the
/// device lock when it is busy).
pub struct GpuIndex {
    raw: *mut sys::FaissIndex,
    device: Arc<GpuDevice>,
    dim: usize,
    rows: usize,
    nlist: Option<usize>,
    bytes: u64,
}

// SAFETY: the index is searched and freed only with its device's lock held.
unsafe impl Send for GpuIndex {}
// SAFETY: as above: `&GpuIndex` gives no access to the index without the lock.
unsafe impl Sync for GpuIndex {}

impl std::fmt::Debug for GpuIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuIndex")
            .field("device", &self.device.settings.device)
            .field("rows", &self.rows)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl GpuIndex {
    /// The top `params.k` live rows per query, labelled by row. `live` (with `deleted` rows
    /// unset) hides deleted rows: `k + deleted` candidates are fetched and the deleted ones
    /// dropped. Fails with `Unsuitable` when that, k or nprobe passes the GPU's limit.
    pub fn search(
        &self,
        queries: &[f32],
        params: &SearchParams,
        live: Option<&Bitmap>,
        deleted: usize,
    ) -> Result<Vec<Vec<Hit>>, GpuError> {
        if queries.is_empty() || queries.len() % self.dim != 0 {
            return Err(GpuError::Backend {
                message: format!("queries are not rows of {} floats", self.dim),
            });
        }
        let k = params.k;
        let hidden = if live.is_some() { deleted } else { 0 };
        // A segment never yields more candidates than it has rows.
        let fetch = (k + hidden).min(self.rows).max(1);
        if fetch > GPU_MAX_K {
            return Err(GpuError::Unsuitable {
                reason: if k.min(self.rows) > GPU_MAX_K {
                    "k is above the GPU's limit of 2048"
                } else {
                    "k plus the segment's deleted rows is above the GPU's limit of 2048"
                },
            });
        }
        let nprobe = self.nlist.map(|nlist| {
            params
                .nprobe
                .unwrap_or_else(|| default_nprobe(nlist))
                .clamp(1, nlist)
        });
        if nprobe.is_some_and(|n| n > GPU_MAX_K) {
            return Err(GpuError::Unsuitable {
                reason: "nprobe is above the GPU's limit of 2048",
            });
        }
        let Some(res) = self.device.lock_within(DEVICE_WAIT) else {
            return Err(GpuError::Busy);
        };
        // SAFETY: `raw` is a valid GPU index of dimension `dim`; the device lock serialises
        // every use of it and of the resources it allocates from.
        let (distances, labels) =
            unsafe { search_raw(self.raw, self.dim, queries, fetch, nprobe, None) }
                .map_err(from_core)?;
        drop(res);
        STATS.searched();
        Ok(hits_from(&labels, &distances, fetch, k, |row| {
            live.is_none_or(|b| b.get(row))
        }))
    }

    /// Device bytes the index holds.
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for GpuIndex {
    /// Never waits for the device: frees now if it is free, else leaves the index to the next
    /// holder of the device lock.
    fn drop(&mut self) {
        match self.device.res.try_lock() {
            Some(held) => {
                self.device.free_pending(&held);
                free_index(self.raw, self.bytes);
            }
            None => self.device.pending.lock().push(PendingFree {
                raw: self.raw,
                bytes: self.bytes,
            }),
        }
    }
}

/// Device memory held on purpose (tests provoke out-of-memory with it); freed on drop.
#[cfg(test)]
pub(super) struct Ballast {
    device: i32,
    ptr: *mut c_void,
}

#[cfg(test)]
impl Ballast {
    pub(super) fn hold(device: i32, bytes: u64) -> Result<Self, GpuError> {
        let mut ptr = ptr::null_mut();
        // SAFETY: cudaMalloc into `ptr`.
        shim(|e, l| unsafe { proxima_gpu_hold(device, bytes as usize, &mut ptr, e, l) })?;
        Ok(Self { device, ptr })
    }
}

#[cfg(test)]
impl Drop for Ballast {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from proxima_gpu_hold and is freed once.
        let _ = shim(|e, l| unsafe { proxima_gpu_release(self.device, self.ptr, e, l) });
    }
}
