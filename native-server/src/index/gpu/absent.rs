//! Builds without the `gpu` feature: the GPU types exist but have no values, so every use of
//! one is statically unreachable and [`GpuDevice::open`] says how to get GPU support.

use std::sync::Arc;

use proxima_core::{Bitmap, Hit, Metric, SearchParams};

use super::{GpuError, GpuSettings};
use crate::index::faiss_backend::FaissIndex;

/// A CUDA device (none exists in this build).
#[derive(Debug)]
pub enum GpuDevice {}

/// An index on a CUDA device (none exists in this build).
#[derive(Debug)]
pub enum GpuIndex {}

impl GpuDevice {
    /// Always fails: this build has no GPU support.
    pub fn open(_settings: &GpuSettings) -> Result<Arc<Self>, GpuError> {
        Err(GpuError::NotBuilt)
    }

    pub fn settings(&self) -> &GpuSettings {
        match *self {}
    }

    pub fn upload_index(self: &Arc<Self>, _cpu: &FaissIndex) -> Result<GpuIndex, GpuError> {
        match **self {}
    }

    pub fn upload_flat(
        self: &Arc<Self>,
        _dim: usize,
        _metric: Metric,
        _rows: &[f32],
    ) -> Result<GpuIndex, GpuError> {
        match **self {}
    }
}

impl GpuIndex {
    pub fn search(
        &self,
        _queries: &[f32],
        _params: &SearchParams,
        _live: Option<&Bitmap>,
        _deleted: usize,
    ) -> Result<Vec<Vec<Hit>>, GpuError> {
        match *self {}
    }

    pub fn memory_bytes(&self) -> u64 {
        match *self {}
    }
}
