//! Searches: validates a batch of queries, waits for the sequence its consistency level
//! requires, runs chunks of the batch on the search pool and merges the shards' hits.

use proxima_core::consistency::Seq;
use proxima_core::{ConsistencyLevel, Error as CoreError, Hit, Metric, SearchParams};
use rayon::prelude::*;

use super::Collection;
use crate::engine::error::EngineResult;
use crate::engine::search_pool::Cancel;
use crate::engine::shard::merge_per_query;
use crate::engine::types::SearchResult;

impl Collection {
    /// Searches a batch of queries (row-major) at a consistency level.
    pub fn search(
        &self,
        queries: &[f32],
        params: &SearchParams,
        level: ConsistencyLevel,
        session_seq: Option<Seq>,
    ) -> EngineResult<SearchResult> {
        self.search_until(queries, params, level, session_seq, &Cancel::never())
    }

    /// [`Collection::search`] that stops with `cancelled` or `request_timeout` once `cancel`
    /// says so, checked before each chunk of the batch and each segment.
    pub fn search_until(
        &self,
        queries: &[f32],
        params: &SearchParams,
        level: ConsistencyLevel,
        session_seq: Option<Seq>,
        cancel: &Cancel,
    ) -> EngineResult<SearchResult> {
        params.validate(&self.config.limits)?;
        let (queries, nq) = self.prepare(queries, "query")?;
        if nq > self.config.limits.max_queries {
            return Err(CoreError::invalid(
                "vectors",
                nq,
                format!(
                    "at most {} queries per request",
                    self.config.limits.max_queries
                ),
            )
            .into());
        }
        self.config.limits.check_hits(nq, params.k)?;
        let required = self.required_seq(level, session_seq)?;
        let seq = self.wait_applied(required)?;
        let (dim, metric, refine) = {
            let s = self.schema.read();
            (s.dim, s.metric, s.index.params.refine_factor)
        };
        // A query without `refine_factor` takes the collection's (segments default the rest).
        let params = &SearchParams {
            refine_factor: params.refine_factor.or(refine),
            ..*params
        };
        // Chunks of the batch run in parallel on the search pool; each chunk fans out to
        // the shards.
        let chunk = self.searcher.chunk_queries(nq);
        cancel.check()?;
        let hits = if self.searcher.runs_here(nq, self.shards.len()) {
            self.searcher
                .run_here(|| self.search_shards(&queries, dim, metric, params, cancel))?
        } else {
            let chunks = self.searcher.run(|| {
                queries
                    .par_chunks(chunk * dim)
                    .map(|q| {
                        cancel.check()?;
                        self.search_shards(q, dim, metric, params, cancel)
                    })
                    .collect::<EngineResult<Vec<_>>>()
            })?;
            chunks.into_iter().flatten().collect()
        };
        Ok(SearchResult { hits, seq })
    }

    /// Searches every shard for a chunk of queries and merges the best `k` per query.
    fn search_shards(
        &self,
        queries: &[f32],
        dim: usize,
        metric: Metric,
        params: &SearchParams,
        cancel: &Cancel,
    ) -> EngineResult<Vec<Vec<Hit>>> {
        let per_shard = if self.shards.len() == 1 {
            vec![self.shards[0]
                .read()
                .search(queries, dim, metric, params, cancel)?]
        } else {
            self.shards
                .par_iter()
                .map(|s| s.read().search(queries, dim, metric, params, cancel))
                .collect::<EngineResult<Vec<_>>>()?
        };
        Ok(merge_per_query(
            per_shard,
            queries.len() / dim,
            params.k,
            metric,
        ))
    }
}
