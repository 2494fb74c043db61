//! The threads that run searches.
//!
//! Every search runs on one pool of `search_threads` threads (one per CPU by default): a batch
//! is cut into chunks of queries that the pool's threads take in parallel, and concurrent
//! searches share the same threads instead of each bringing its own. FAISS's own OpenMP
//! parallelism is switched off on these threads, so concurrent requests never run more busy
//! threads than there are CPUs (OpenMP teams per request oversubscribe the CPUs and spin:
//! 2 concurrent batch searches ran 28% slower that way on 2 CPUs). For the same reason the
//! pool makes OpenBLAS single-threaded, process-wide. Index builds keep OpenMP on their own
//! threads.

use std::sync::Arc;

use super::error::{EngineError, EngineResult};
use crate::index::faiss_backend::{
    faiss_threads, set_faiss_threads, single_threaded_blas, single_threaded_faiss,
};

/// Fewest queries per chunk: below this, splitting a batch costs more than it saves.
pub const MIN_CHUNK_QUERIES: usize = 8;

/// The search thread pool.
pub struct SearchPool {
    pool: rayon::ThreadPool,
}

impl SearchPool {
    /// Starts `threads` search threads (at least one).
    pub fn new(threads: usize) -> EngineResult<Arc<Self>> {
        single_threaded_blas();
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
        let threads = faiss_threads();
        single_threaded_faiss();
        let result = f();
        set_faiss_threads(threads);
        result
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
        assert_eq!(pool.run(rayon::current_num_threads), 4);
        let before = faiss_threads();
        assert_eq!(pool.run_here(faiss_threads), 1);
        assert_eq!(faiss_threads(), before);
    }
}
