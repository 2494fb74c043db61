//! GPU replicas of sealed segments (cargo feature `gpu`, FAISS's CUDA indexes).
//!
//! A sealed segment whose index is FLAT or IVF (FLAT, IVF_FLAT, IVF_SQ8, IVF_PQ) and that holds
//! at least [`GpuSettings::min_rows`] rows gets a copy of its index on the GPU; the CPU index
//! stays as it is, so any search the GPU cannot serve runs on the CPU under the same rules
//! (the GPU's arithmetic differs from the CPU's in the last bits, so near-ties may order
//! differently):
//!
//! * **Deletions.** FAISS's GPU indexes ignore `IDSelector`. A search over a segment with `d`
//!   deleted rows fetches `k + d` candidates and drops the deleted ones: at most `d` of them
//!   are deleted, so what remains is the top `k` live rows among the probed candidates, which
//!   is what the CPU index returns with a selector. When `k + d` passes the GPU's k limit
//!   (2048) the search runs on the CPU until compaction removes the rows.
//! * **Out of memory.** An upload that does not fit (checked before, and caught if the device
//!   still runs out) leaves the segment on the CPU, frees what was allocated, logs and counts;
//!   a search that runs out of device memory is answered by the CPU index the same way.
//! * **Busy.** A search that waits more than 50 ms for the device (an upload holds it, or
//!   many searches queue) is answered by the CPU index.
//!
//! The engine opens one [`GpuDevice`], which owns FAISS's `StandardGpuResources` for the device.
//! Those are not safe to use from two threads at once: uploads and searches take its lock in
//! turn, and a copy dropped while the lock is taken is freed by its next holder (dropping never
//! waits, since the owner may hold a shard lock). Copies are made on the engine's offload
//! thread (`engine/builder.rs`).
//! Without the feature, [`GpuDevice`] and [`GpuIndex`] are uninhabited types, so no value of
//! them exists and the code paths that use one are statically dead.

use std::sync::atomic::{AtomicU64, Ordering};

use proxima_core::IndexSpec;

#[cfg(not(feature = "gpu"))]
mod absent;
#[cfg(feature = "gpu")]
mod cuda;
#[cfg(all(test, feature = "gpu"))]
mod tests;

#[cfg(not(feature = "gpu"))]
pub use absent::{GpuDevice, GpuIndex};
#[cfg(feature = "gpu")]
pub use cuda::{GpuDevice, GpuIndex};

/// Largest k (candidates fetched, deleted rows included) and nprobe of a FAISS GPU search.
pub const GPU_MAX_K: usize = 2048;

/// Whether FAISS has a GPU version of an index of this spec (FLAT and the IVF family; HNSW
/// has none).
pub fn runs_on_gpu(spec: &IndexSpec) -> bool {
    matches!(
        spec,
        IndexSpec::Flat
            | IndexSpec::IvfFlat { .. }
            | IndexSpec::IvfSq8 { .. }
            | IndexSpec::IvfPq { .. }
    )
}

/// Whether kernels built for `archs` (CMake's `CUDAARCHS`, e.g. `"80-real;90-real"`) run on a
/// device of compute capability `major.minor`: machine code (`-real`) runs on the same major
/// version at an equal or later minor one, PTX (no suffix or `-virtual`) on any later device,
/// architecture-specific code (`90a`) only on its own device.
/// `all`, `all-major` and `native` are taken as supporting the device.
pub fn arch_supports(archs: &str, major: i32, minor: i32) -> bool {
    let device = major * 10 + minor;
    archs
        .split([';', ','])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .any(|arch| {
            if matches!(arch, "all" | "all-major" | "native") {
                return true;
            }
            let (number, kind) = arch.split_once('-').unwrap_or((arch, ""));
            // Architecture-specific variants (90a, 100f) run only on that exact device.
            let specific = number.ends_with(['a', 'f']);
            let Ok(built) = number.trim_end_matches(['a', 'f']).parse::<i32>() else {
                return false;
            };
            match kind {
                _ if specific => built == device,
                "real" => built / 10 == major && built % 10 <= minor,
                _ => built <= device,
            }
        })
}

/// Where and when to use a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSettings {
    /// CUDA device ordinal.
    pub device: i32,
    /// Sealed segments with fewer rows stay on the CPU (a small index is searched faster there
    /// than the copy of queries and results to the device takes).
    pub min_rows: usize,
    /// Device memory an upload must leave free (for FAISS's temporary buffers beyond its
    /// reserved stack, and other processes).
    pub reserve_bytes: u64,
}

impl GpuSettings {
    /// Defaults for `device`.
    pub fn new(device: i32) -> Self {
        Self {
            device,
            min_rows: 10_000,
            reserve_bytes: 512 << 20,
        }
    }
}

/// Why a GPU could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error("this build has no GPU support (build with the cargo feature `gpu`)")]
    NotBuilt,
    #[error("CUDA device {device} does not exist (this machine has {count})")]
    NoDevice { device: i32, count: i32 },
    #[error("GPU out of memory: {message}")]
    OutOfMemory { message: String },
    #[error("not searchable on the GPU: {reason}")]
    Unsuitable { reason: &'static str },
    #[error("the GPU is busy")]
    Busy,
    #[error("GPU error: {message}")]
    Backend { message: String },
}

impl GpuError {
    /// The reason label of [`GpuStats`] fallbacks.
    pub fn reason(&self) -> Fallback {
        match self {
            GpuError::OutOfMemory { .. } => Fallback::OutOfMemory,
            GpuError::Unsuitable { .. } => Fallback::Limits,
            GpuError::Busy => Fallback::Busy,
            GpuError::NotBuilt | GpuError::NoDevice { .. } | GpuError::Backend { .. } => {
                Fallback::Error
            }
        }
    }
}

/// Why a search or an upload stayed on (or went back to) the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The device ran out of memory (or an upload would not fit beside the reserve).
    OutOfMemory,
    /// k plus the segment's deleted rows, or nprobe, passes the GPU's limit.
    Limits,
    /// The device stayed busy longer than a search waits for it.
    Busy,
    /// Any other GPU failure.
    Error,
}

impl Fallback {
    pub const ALL: [Fallback; 4] = [
        Fallback::OutOfMemory,
        Fallback::Limits,
        Fallback::Busy,
        Fallback::Error,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Fallback::OutOfMemory => "out_of_memory",
            Fallback::Limits => "limits",
            Fallback::Busy => "busy",
            Fallback::Error => "error",
        }
    }
}

/// Process-wide GPU counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct GpuStats {
    searches: AtomicU64,
    fallbacks: [AtomicU64; 4],
    replicas: AtomicU64,
    bytes: AtomicU64,
    frees: AtomicU64,
}

/// The process's GPU counters.
pub static STATS: GpuStats = GpuStats {
    searches: AtomicU64::new(0),
    fallbacks: [
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ],
    replicas: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    frees: AtomicU64::new(0),
};

impl GpuStats {
    /// Segment searches the GPU answered.
    pub fn searches(&self) -> u64 {
        self.searches.load(Ordering::Relaxed)
    }

    /// Searches and uploads that fell back to the CPU for `reason`.
    pub fn fallbacks(&self, reason: Fallback) -> u64 {
        self.fallbacks[reason as usize].load(Ordering::Relaxed)
    }

    /// Segment indexes held on the GPU now.
    pub fn replicas(&self) -> u64 {
        self.replicas.load(Ordering::Relaxed)
    }

    /// Device bytes those indexes hold.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// GPU indexes freed so far (a copy refused for lack of memory may fit after one).
    pub fn frees(&self) -> u64 {
        self.frees.load(Ordering::Relaxed)
    }

    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn searched(&self) {
        self.searches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fell_back(&self, reason: Fallback) {
        self.fallbacks[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn hold(&self, bytes: u64) {
        self.replicas.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn release(&self, bytes: u64) {
        self.replicas.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.frees.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a fallback to the CPU and logs it (out of memory and errors as warnings; searches
/// beyond the GPU's limits are routine and only counted).
pub fn fall_back(segment: u64, stage: &'static str, error: &GpuError) {
    fall_back_again(segment, stage, error, false);
}

/// [`fall_back`], logged at debug level when `repeated`: the same segment already logged the
/// same failure (an upload refused for lack of room is retried after every checkpoint).
pub fn fall_back_again(segment: u64, stage: &'static str, error: &GpuError, repeated: bool) {
    let reason = error.reason();
    STATS.fell_back(reason);
    match reason {
        _ if repeated => tracing::debug!(segment, stage, %error, "still on the CPU"),
        Fallback::Limits | Fallback::Busy => {
            tracing::debug!(segment, stage, %error, "searching on the CPU")
        }
        Fallback::OutOfMemory | Fallback::Error => {
            tracing::warn!(segment, stage, %error, "GPU unusable here; falling back to the CPU index")
        }
    }
}

#[cfg(test)]
mod arch_tests {
    use super::*;

    #[test]
    fn architectures_match_devices_as_cuda_loads_them() {
        // Machine code: same major, equal or later minor.
        assert!(arch_supports("90-real", 9, 0));
        assert!(!arch_supports("90-real", 8, 0));
        assert!(!arch_supports("80-real", 9, 0));
        assert!(arch_supports("80-real", 8, 6));
        assert!(!arch_supports("86-real", 8, 0));
        // PTX is compiled for any later device.
        assert!(arch_supports("80", 9, 0));
        assert!(arch_supports("70-virtual", 8, 9));
        assert!(!arch_supports("90", 8, 0));
        // Lists, and CMake's keywords.
        assert!(arch_supports("80-real;90-real", 9, 0));
        assert!(arch_supports("75-real,80-real", 8, 0));
        assert!(arch_supports("native", 7, 5));
        assert!(arch_supports("all-major", 12, 0));
        assert!(!arch_supports("", 9, 0));
        assert!(!arch_supports("garbage", 9, 0));
        // Architecture-specific variants (sm_90a) run on that device only, PTX included.
        assert!(arch_supports("90a-real", 9, 0));
        assert!(!arch_supports("90a", 10, 0));
    }

    #[test]
    fn only_flat_and_ivf_have_gpu_versions() {
        assert!(runs_on_gpu(&IndexSpec::Flat));
        assert!(runs_on_gpu(&IndexSpec::IvfSq8 { nlist: 8 }));
        assert!(!runs_on_gpu(&IndexSpec::Hnsw {
            m: 16,
            ef_construction: 40
        }));
    }

    #[test]
    fn errors_name_their_fallback_reason() {
        assert_eq!(
            GpuError::OutOfMemory {
                message: "x".into()
            }
            .reason(),
            Fallback::OutOfMemory
        );
        assert_eq!(
            GpuError::Unsuitable { reason: "k" }.reason().label(),
            "limits"
        );
        #[cfg(not(feature = "gpu"))]
        assert_eq!(
            GpuDevice::open(&GpuSettings::new(0)).unwrap_err(),
            GpuError::NotBuilt
        );
    }
}
