//! Index builds: which index each sealed segment serves (the request, `AUTO`'s pick, the
//! generation), queueing builds and GPU copies on the builder, and recording finished builds
//! in the manifest.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use proxima_core::request::Choice;
use proxima_core::{Error as CoreError, IndexRequest, IndexSpec, IndexType, Metric};

use super::Collection;
use crate::engine::builder::{BuildJob, BuildTarget};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::segment::{Offloaded, SealedSegment};

impl Collection {
    /// Starts (re)building the collection's index as `index` (a spec, or a request with
    /// parameters left to their defaults, or `AUTO`) in the background; returns the build's
    /// generation. Searches keep using the current index until each segment's new one is
    /// ready. Every segment is built again, `AUTO` picking for the collection's size now.
    pub fn rebuild_index(&self, index: impl Into<IndexRequest>) -> EngineResult<u64> {
        let dim = self.schema.read().dim;
        let request: IndexRequest = index.into();
        request.validate(dim)?;
        if request.kind == IndexType::DiskAnn {
            return Err(CoreError::Unsupported {
                operation: "build",
                index: "DISKANN (not available in this server build yet)".into(),
            }
            .into());
        }
        let request = request.with_defaults(dim);
        // Every row into a sealed segment first: indexes are built, and trained, per segment,
        // so the largest segment decides whether the spec can be trained at all (`AUTO` picks
        // what each segment can train).
        self.flush()?;
        let largest = self
            .sealed_segments()
            .iter()
            .map(|s| s.rows())
            .max()
            .unwrap_or(0);
        if let Some(spec) = request.spec_for(dim, largest as u64) {
            let needed = spec.min_training_vectors();
            if largest < needed {
                return Err(CoreError::TooFewTrainingVectors {
                    needed,
                    got: largest,
                    nlist: spec.nlist().unwrap_or(0),
                }
                .into());
            }
        }
        let generation = {
            let mut meta = self.meta.lock();
            if self.closed.load(Ordering::SeqCst) {
                return Err(EngineError::Closed);
            }
            meta.index_generation += 1;
            self.schema.write().index = request;
            self.write_manifest(&meta)?;
            meta.index_generation
        };
        for segment in self.sealed_segments() {
            self.queue_build(segment);
        }
        Ok(generation)
    }

    /// The index request and generation segments should serve, read together. Locks in the
    /// order `rebuild_index` takes them (meta, then schema).
    pub(super) fn current_index(&self) -> (IndexRequest, u64) {
        let meta = self.meta.lock();
        let index = self.schema.read().index;
        (index, meta.index_generation)
    }

    /// What a segment of `rows` rows builds for `request`: IVF's `nlist` from the segment's
    /// rows when the request leaves it out, `AUTO`'s pick from the collection's size now
    /// (the rows applied so far). Takes shard locks: call with none held.
    fn choose_index(&self, request: &IndexRequest, rows: usize) -> Choice {
        let dim = self.schema.read().dim;
        let vectors = self.applied_count().max(rows as u64);
        request
            .choose(dim, rows as u64, vectors, served)
            .unwrap_or_else(|e| {
                tracing::warn!(collection = %self.name(), error = %e, "no index could be chosen; the segment stays exact");
                Choice {
                    spec: IndexSpec::Flat,
                    reason: Some(format!("no index could be chosen: {e}")),
                }
            })
    }

    pub(super) fn queue_build(&self, segment: Arc<SealedSegment>) {
        let (request, generation) = self.current_index();
        {
            let slot = segment.slot.read();
            let queued = slot
                .building
                .as_ref()
                .is_some_and(|b| b.generation == generation);
            let built = slot
                .ready
                .as_ref()
                .is_some_and(|r| r.generation == generation);
            if queued || built {
                return;
            }
        }
        let Choice { spec, reason } = self.choose_index(&request, segment.rows());
        self.builder.submit(BuildJob {
            target: self.me.clone(),
            segment,
            spec,
            reason,
            generation,
        });
    }

    /// Queues a copy of `segment` to the GPU, if the engine has a GPU.
    pub(crate) fn queue_offload(&self, segment: &Arc<SealedSegment>) {
        if self.gpu.is_some() {
            self.builder.submit_offload(self.me.clone(), segment);
        }
    }
}

/// What the builder sees of a collection.
impl BuildTarget for Collection {
    fn dim_metric(&self) -> (usize, Metric) {
        Collection::dim_metric(self)
    }

    fn build_is_current(&self, segment: u64, generation: u64) -> bool {
        if self.closed.load(Ordering::SeqCst) || self.meta.lock().index_generation != generation {
            return false;
        }
        self.shards
            .iter()
            .any(|s| s.read().sealed.iter().any(|e| e.segment.id == segment))
    }

    fn while_open(&self, f: &mut dyn FnMut() -> EngineResult<()>) -> EngineResult<bool> {
        let _files = self.files.read();
        if self.closed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        f().map(|()| true)
    }

    fn persist_indexes(&self) -> EngineResult<()> {
        let meta = self.meta.lock();
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.write_manifest(&meta)
    }

    fn queue_offload(&self, segment: &Arc<SealedSegment>) {
        Collection::queue_offload(self, segment)
    }

    /// Copies a sealed segment of this collection to the engine's GPU, if it has one (see
    /// [`SealedSegment::offload`]). Runs on the offload thread; holds no lock while copying.
    fn offload(&self, segment: &SealedSegment) -> Offloaded {
        let Some(gpu) = &self.gpu else {
            return Offloaded::Skipped;
        };
        // Gone with a compaction, or the collection closed: nothing to copy.
        let member = self
            .shards
            .iter()
            .any(|s| s.read().sealed.iter().any(|e| e.segment.id == segment.id));
        if self.closed.load(Ordering::SeqCst) || !member {
            return Offloaded::Skipped;
        }
        let metric = self.schema.read().metric;
        segment.offload(gpu, metric)
    }
}

/// The index types this server builds (`AUTO` picks among them): all but DiskANN.
pub(super) fn served(t: IndexType) -> bool {
    t != IndexType::DiskAnn
}
