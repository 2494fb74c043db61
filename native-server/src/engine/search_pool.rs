//! The threads that run searches.
//!
//! Searches run on one pool of `search_threads` threads (one per CPU by default): a batch is
//! cut into chunks of queries that the pool's threads take in parallel, and concurrent
//! batches share the same threads instead of each bringing its own. FAISS's own OpenMP
//! parallelism is switched off on these threads, and OpenBLAS is made single-threaded for the
//! whole process, so concurrent batches never run more busy threads than there are CPUs
//! (OpenMP teams and BLAS threads per call oversubscribe the CPUs and spin: 2 concurrent batch
//! searches ran 28% slower that way on 2 CPUs). A search of at most [`MIN_CHUNK_QUERIES`]
//! queries on a single shard runs on the caller's thread instead, also single-threaded:
//! handing it over would cost more than it saves, and the callers (the HTTP layer's blocking
//! threads) then bound how many run at once.
//!
//! Code running on the pool under a lock must not start more parallel work: while it waits for
//! that work the thread may run another queued search that waits for the same lock behind a
//! writer. Segments are therefore searched serially; the pool parallelises across chunks.
//!
//! Index builds keep OpenMP on their own threads; BLAS stays single-threaded for them too
//! (OpenBLAS has one process-wide setting), which slows IVF training on machines with many
//! CPUs.
//!
//! A search can be stopped part-way with a [`Cancel`]: it is checked before each chunk of a
//! batch and before each segment, so an abandoned request (its client gone) or one past its
//! deadline gives the pool's threads back within one segment's search.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{EngineError, EngineResult};
use crate::index::faiss_backend::{
    faiss_threads, set_faiss_threads, single_threaded_blas, single_threaded_faiss,
};

/// Fewest queries per chunk: below this, splitting a batch costs more than it saves.
pub const MIN_CHUNK_QUERIES: usize = 8;

/// Stops a search between chunks and segments: cancelled by its owner (the request was
/// abandoned, or the server is stopping), or past a deadline. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    inner: Option<Arc<CancelInner>>,
}

#[derive(Debug)]
struct CancelInner {
    cancelled: AtomicBool,
    deadline: Option<(Instant, Duration)>,
}

impl Cancel {
    /// Never cancelled.
    pub fn never() -> Self {
        Self::default()
    }

    /// Cancelled by [`Cancel::cancel`], or at `deadline` (the instant, and the timeout it
    /// came from for the error's message), if any.
    pub fn until(deadline: Option<(Instant, Duration)>) -> Self {
        Self {
            inner: Some(Arc::new(CancelInner {
                cancelled: AtomicBool::new(false),
                deadline,
            })),
        }
    }

    /// Stops the work at its next check.
    pub fn cancel(&self) {
        if let Some(i) = &self.inner {
            i.cancelled.store(true, Ordering::Relaxed);
        }
    }

    /// `Err` once cancelled (`cancelled`) or past the deadline (`request_timeout`).
    pub fn check(&self) -> EngineResult<()> {
        let Some(i) = &self.inner else {
            return Ok(());
        };
        if let Some((at, timeout)) = i.deadline {
            if Instant::now() >= at {
                return Err(EngineError::DeadlineExceeded {
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
        }
        if i.cancelled.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        Ok(())
    }
}

/// The search thread pool.
pub struct SearchPool {
    pool: rayon::ThreadPool,
}

impl SearchPool {
    /// Starts `threads` search threads (at least one).
    pub fn new(threads: usize) -> EngineResult<Arc<Self>> {
        static BLAS: std::sync::Once = std::sync::Once::new();
        BLAS.call_once(|| {
            if !single_threaded_blas() {
                tracing::info!("the BLAS library is not OpenBLAS: its threading is left as it is");
            }
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("search-{i}"))
            .start_handler(|_| single_threaded_faiss())
            .build()
            .map_err(|e| EngineError::Io {
                context: "start the search threads".into(),
                source: std::io::Error::other(e),
            })?;
        Ok(Arc::new(Self { pool }))
    }

    /// Threads in the pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` on the pool (rayon calls inside it use the pool's threads); the caller waits.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Runs `f` on the calling thread with FAISS single-threaded, as on the pool: for work too
    /// small to split, where handing it to a pool thread and waking the caller again would
    /// cost more than it saves (about 20 µs a search on a 2-CPU virtual machine, a fifth of a
    /// single IVF query).
    pub fn run_here<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Restores the caller's FAISS thread count, also when `f` panics.
        struct Restore(usize);
        impl Drop for Restore {
            fn drop(&mut self) {
                set_faiss_threads(self.0);
            }
        }
        let _restore = Restore(faiss_threads());
        single_threaded_faiss();
        f()
    }

    /// Whether a search of `nq` queries over `shards` shards runs on the caller's thread.
    pub fn runs_here(&self, nq: usize, shards: usize) -> bool {
        nq <= MIN_CHUNK_QUERIES && shards == 1
    }

    /// Queries per chunk for a batch of `nq`: enough chunks to keep every thread busy, none
    /// smaller than [`MIN_CHUNK_QUERIES`].
    pub fn chunk_queries(&self, nq: usize) -> usize {
        nq.div_ceil(self.threads()).max(MIN_CHUNK_QUERIES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_batch_without_tiny_pieces() {
        let pool = SearchPool::new(4).unwrap();
        assert_eq!(pool.threads(), 4);
        assert_eq!(pool.chunk_queries(100), 25);
        assert_eq!(pool.chunk_queries(1), MIN_CHUNK_QUERIES);
        assert_eq!(pool.chunk_queries(10), MIN_CHUNK_QUERIES);
        assert!(pool.runs_here(MIN_CHUNK_QUERIES, 1));
        assert!(!pool.runs_here(MIN_CHUNK_QUERIES + 1, 1));
        assert!(!pool.runs_here(1, 2));
        // One thread: a large batch still goes through the pool (one chunk).
        let one = SearchPool::new(1).unwrap();
        assert_eq!(one.chunk_queries(100), 100);
        assert!(!one.runs_here(100, 1));
        assert_eq!(pool.run(rayon::current_num_threads), 4);
        let before = faiss_threads();
        assert_eq!(pool.run_here(faiss_threads), 1);
        assert_eq!(faiss_threads(), before);
    }

    #[test]
    fn cancel_is_shared_by_clones_and_a_deadline_passes() {
        assert!(Cancel::never().check().is_ok());
        Cancel::never().cancel();
        let c = Cancel::until(None);
        let seen = c.clone();
        assert!(seen.check().is_ok());
        c.cancel();
        assert_eq!(seen.check().unwrap_err().code(), "cancelled");
        let d = Cancel::until(Some((Instant::now(), Duration::from_millis(1))));
        let e = d.check().unwrap_err();
        assert_eq!(e.code(), "request_timeout");
        assert!(e.to_string().contains("1 ms"), "{e}");
    }
}
