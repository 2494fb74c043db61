//! Prometheus metrics: request counts and latencies per route template and collection,
//! query/insert/delete counters (rates give QPS), and gauges read from the engine at scrape
//! time (vectors, index build progress, memory, WAL size), and the GPU counters.

use std::collections::HashMap;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::engine::{BuildState, Engine};
use crate::index::gpu::{self, Fallback};

/// Every metric the server exports, in its own registry.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    queries: IntCounterVec,
    inserted: IntCounterVec,
    deleted: IntCounterVec,
    ready: IntGauge,
    collections: IntGauge,
    vectors: IntGaugeVec,
    index_progress: GaugeVec,
    index_building: IntGaugeVec,
    memory: IntGaugeVec,
    wal_bytes: IntGaugeVec,
    apply_lag: IntGaugeVec,
    resident: Gauge,
    requeried: IntCounter,
    gpu_searches: IntCounter,
    gpu_fallbacks: IntCounterVec,
    gpu_segments: IntGauge,
    gpu_bytes: IntGauge,
    live_waiters: IntGauge,
    changes_served: IntCounterVec,
    feed_lag: HistogramVec,
    log_changes: IntGaugeVec,
    log_bytes: IntGaugeVec,
    log_horizon: IntGaugeVec,
    snapshot_builds: IntGaugeVec,
    snapshot_bytes: IntGaugeVec,
    snapshot_served: IntCounterVec,
    connections: IntGauge,
    connections_refused: IntCounter,
    connections_closed: IntCounterVec,
    requests_stopped: IntCounterVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    // Names are fixed and distinct: registering cannot fail.
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "registering a metric");
    }
    c
}

/// Latency buckets (seconds): 100 µs to 30 s.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Self {
            requests: counter(
                "proxima_http_requests_total",
                "HTTP requests by route template, method, status and collection.",
                &["route", "method", "status", "collection"],
            ),
            latency: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "proxima_http_request_duration_seconds",
                        "HTTP request latency by route template and collection.",
                    )
                    .buckets(BUCKETS.to_vec()),
                    &["route", "collection"],
                )
                .expect("valid metric"),
            ),
            queries: counter(
                "proxima_search_queries_total",
                "Query vectors searched (rate() gives QPS).",
                &["collection"],
            ),
            inserted: counter(
                "proxima_vectors_inserted_total",
                "Vectors inserted or replaced.",
                &["collection"],
            ),
            deleted: counter(
                "proxima_vectors_deleted_total",
                "Vectors deleted (ids that existed).",
                &["collection"],
            ),
            ready: register(
                &r,
                IntGauge::new("proxima_ready", "1 once the data directory is open.")
                    .expect("valid metric"),
            ),
            collections: register(
                &r,
                IntGauge::new("proxima_collections", "Number of collections.")
                    .expect("valid metric"),
            ),
            vectors: gauge(
                "proxima_collection_vectors",
                "Live vectors per collection.",
                &["collection"],
            ),
            index_progress: register(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "proxima_index_build_progress",
                        "Share of sealed rows served by the current index generation (0 to 1).",
                    ),
                    &["collection"],
                )
                .expect("valid metric"),
            ),
            index_building: gauge(
                "proxima_index_building",
                "1 while an index build is pending or running.",
                &["collection"],
            ),
            memory: gauge(
                "proxima_memory_bytes",
                "Collection memory: actual (heap), mapped (mmap), gpu (device) and the planner's estimate.",
                &["collection", "kind"],
            ),
            wal_bytes: gauge(
                "proxima_wal_bytes",
                "Bytes of write-ahead log on disk.",
                &["collection"],
            ),
            apply_lag: gauge(
                "proxima_apply_lag_operations",
                "Acknowledged write operations not yet applied to the shards (searches at strong consistency wait for them).",
                &["collection"],
            ),
            resident: register(
                &r,
                Gauge::new(
                    "proxima_process_resident_bytes",
                    "Resident memory of the server process.",
                )
                .expect("valid metric"),
            ),
            requeried: register(
                &r,
                IntCounter::new(
                    "proxima_search_requeried_total",
                    "Queries a sealed segment's index answered with fewer than k live hits (deleted rows, or k above what the probed lists hold), answered again with more lists probed or exactly.",
                )
                .expect("valid metric"),
            ),
            gpu_searches: register(
                &r,
                IntCounter::new(
                    "proxima_gpu_searches_total",
                    "Segment searches answered by the GPU.",
                )
                .expect("valid metric"),
            ),
            gpu_fallbacks: counter(
                "proxima_gpu_fallbacks_total",
                "Segment searches and uploads that fell back from the GPU to the CPU, by reason: out_of_memory, limits (k plus deleted rows, or nprobe, above 2048), busy (the device stayed busy over 50 ms) or error.",
                &["reason"],
            ),
            gpu_segments: register(
                &r,
                IntGauge::new(
                    "proxima_gpu_segments",
                    "Sealed segments with a copy on the GPU.",
                )
                .expect("valid metric"),
            ),
            gpu_bytes: register(
                &r,
                IntGauge::new(
                    "proxima_gpu_memory_bytes",
                    "Device memory held by the segments' GPU copies.",
                )
                .expect("valid metric"),
            ),
            live_waiters: register(
                &r,
                IntGauge::new(
                    "proxima_sync_live_waiters",
                    "Change-feed requests waiting in live mode (long-poll) for a change.",
                )
                .expect("valid metric"),
            ),
            changes_served: counter(
                "proxima_sync_changes_served_total",
                "Change records served by the sync feed.",
                &["collection"],
            ),
            feed_lag: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "proxima_sync_feed_lag_changes",
                        "How far behind the head a change-feed request started (head minus since).",
                    )
                    .buckets(vec![0.0, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]),
                    &["collection"],
                )
                .expect("valid metric"),
            ),
            log_changes: gauge(
                "proxima_sync_log_changes",
                "Changes retained in the collection's change log (the sync feed).",
                &["collection"],
            ),
            log_bytes: gauge(
                "proxima_sync_log_bytes",
                "Bytes of the collection's change log on disk.",
                &["collection"],
            ),
            log_horizon: gauge(
                "proxima_sync_log_horizon",
                "Sequence below which the feed answers snapshot_required.",
                &["collection"],
            ),
            snapshot_builds: gauge(
                "proxima_sync_snapshot_builds",
                "Cache snapshots built or brought forward since the collection was opened.",
                &["collection"],
            ),
            snapshot_bytes: gauge(
                "proxima_sync_snapshot_bytes",
                "Bytes of the cache snapshots kept for the collection.",
                &["collection"],
            ),
            snapshot_served: counter(
                "proxima_sync_snapshot_served_bytes_total",
                "Bytes of cache snapshots sent.",
                &["collection"],
            ),
            connections: register(
                &r,
                IntGauge::new("proxima_http_connections", "Open HTTP connections.")
                    .expect("valid metric"),
            ),
            connections_refused: register(
                &r,
                IntCounter::new(
                    "proxima_http_connections_refused_total",
                    "Connections refused (503 too_many_connections) at the --max-connections cap.",
                )
                .expect("valid metric"),
            ),
            connections_closed: counter(
                "proxima_http_connections_closed_total",
                "Connections the server closed: idle past --idle-timeout (idle), an answer left unread as long (write_stalled), or a request head not complete within --header-read-timeout (header_timeout).",
                &["reason"],
            ),
            requests_stopped: counter(
                "proxima_http_requests_stopped_total",
                "Requests whose work stopped part-way: the client went away (abandoned) or --request-timeout passed (timeout).",
                &["route", "reason"],
            ),
            registry: r,
        }
    }

    /// The open-connections gauge (the connection layer moves it).
    pub fn connections_gauge(&self) -> IntGauge {
        self.connections.clone()
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A connection closed by the server: `idle`, `write_stalled` or `header_timeout`.
    pub fn connection_closed(&self, reason: &str) {
        self.connections_closed.with_label_values(&[reason]).inc();
    }

    /// A request's work stopped part-way: `abandoned` or `timeout`.
    pub fn request_stopped(&self, route: &str, reason: &str) {
        self.requests_stopped
            .with_label_values(&[route, reason])
            .inc();
    }

    /// Counts a live waiter for as long as the guard lives.
    pub fn live_waiter(&self) -> impl Drop + '_ {
        struct Waiter<'a>(&'a IntGauge);
        impl Drop for Waiter<'_> {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        self.live_waiters.inc();
        Waiter(&self.live_waiters)
    }

    /// Records a change-feed answer: records sent, and how far behind the head it started.
    pub fn feed_served(&self, collection: &str, records: usize, lag: u64) {
        self.changes_served
            .with_label_values(&[collection])
            .inc_by(records as u64);
        self.feed_lag
            .with_label_values(&[collection])
            .observe(lag as f64);
    }

    pub fn snapshot_served(&self, collection: &str, bytes: usize) {
        self.snapshot_served
            .with_label_values(&[collection])
            .inc_by(bytes as u64);
    }

    /// Brings the GPU metrics up to the process's counters.
    fn refresh_counters(&self) {
        let stats = &gpu::STATS;
        let catch_up = |c: &IntCounter, total: u64| c.inc_by(total.saturating_sub(c.get()));
        catch_up(&self.gpu_searches, stats.searches());
        catch_up(&self.requeried, crate::engine::requeried_queries());
        for reason in Fallback::ALL {
            catch_up(
                &self.gpu_fallbacks.with_label_values(&[reason.label()]),
                stats.fallbacks(reason),
            );
        }
        self.gpu_segments.set(stats.replicas() as i64);
        self.gpu_bytes.set(stats.bytes() as i64);
    }

    /// Records one answered request.
    pub fn observe(&self, route: &str, method: &str, status: u16, collection: &str, secs: f64) {
        self.requests
            .with_label_values(&[route, method, &status.to_string(), collection])
            .inc();
        self.latency
            .with_label_values(&[route, collection])
            .observe(secs);
    }

    pub fn searched(&self, collection: &str, queries: usize) {
        self.queries
            .with_label_values(&[collection])
            .inc_by(queries as u64);
    }

    pub fn inserted(&self, collection: &str, n: usize) {
        self.inserted
            .with_label_values(&[collection])
            .inc_by(n as u64);
    }

    pub fn deleted(&self, collection: &str, n: usize) {
        self.deleted
            .with_label_values(&[collection])
            .inc_by(n as u64);
    }

    /// Forgets every series labelled with `collection`, once it is dropped: creating and
    /// dropping collections must not grow the exposition without bound. A collection created
    /// again under the same name starts its counters from zero (a counter reset to Prometheus).
    pub fn forget(&self, collection: &str) {
        forget_in(&self.requests, collection);
        forget_in(&self.latency, collection);
        forget_in(&self.queries, collection);
        forget_in(&self.inserted, collection);
        forget_in(&self.deleted, collection);
        forget_in(&self.changes_served, collection);
        forget_in(&self.feed_lag, collection);
        forget_in(&self.snapshot_served, collection);
    }

    /// The text exposition, with the gauges refreshed from `engine`. It never waits for the
    /// applier: vector counts are those of the writes applied so far, and
    /// `proxima_apply_lag_operations` says how many acknowledged operations are still to apply.
    pub fn render(&self, engine: Option<&Engine>) -> Result<String, prometheus::Error> {
        self.ready.set(i64::from(engine.is_some()));
        self.vectors.reset();
        self.index_progress.reset();
        self.index_building.reset();
        self.memory.reset();
        self.wal_bytes.reset();
        self.apply_lag.reset();
        for g in [
            &self.log_changes,
            &self.log_bytes,
            &self.log_horizon,
            &self.snapshot_builds,
            &self.snapshot_bytes,
        ] {
            g.reset();
        }
        if let Some(engine) = engine {
            let names = engine.list();
            self.collections.set(names.len() as i64);
            for name in names {
                let Ok(c) = engine.collection(&name) else {
                    continue;
                };
                let info = c.snapshot();
                let l = [name.as_str()];
                self.vectors.with_label_values(&l).set(info.count as i64);
                self.index_progress
                    .with_label_values(&l)
                    .set(info.index.progress);
                self.index_building
                    .with_label_values(&l)
                    .set(i64::from(info.index.state != BuildState::Ready));
                for (kind, v) in [
                    ("actual", info.memory.actual_bytes),
                    ("mapped", info.memory.mapped_bytes),
                    ("estimated", info.memory.estimated_bytes),
                    ("gpu", info.memory.gpu_bytes),
                ] {
                    self.memory.with_label_values(&[&name, kind]).set(v as i64);
                }
                self.wal_bytes
                    .with_label_values(&l)
                    .set(info.wal_bytes as i64);
                self.apply_lag
                    .with_label_values(&l)
                    .set(info.committed_seq.saturating_sub(info.applied_seq) as i64);
                let log = c.changes().stats();
                self.log_changes
                    .with_label_values(&l)
                    .set(log.records as i64);
                self.log_bytes.with_label_values(&l).set(log.bytes as i64);
                self.log_horizon
                    .with_label_values(&l)
                    .set(log.horizon as i64);
                let (builds, kept) = c.snapshot_counters();
                self.snapshot_builds
                    .with_label_values(&l)
                    .set(builds as i64);
                self.snapshot_bytes.with_label_values(&l).set(kept as i64);
            }
        }
        self.refresh_counters();
        if let Some(bytes) = resident_bytes() {
            self.resident.set(bytes as f64);
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Removes the series of `vec` whose `collection` label is `collection`.
fn forget_in<T: MetricVecBuilder>(vec: &MetricVec<T>, collection: &str) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.get("collection") == Some(&collection) {
                // The label names come from the vector itself: removal cannot mismatch.
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// Resident set size from `/proc/self/statm` (Linux; `None` elsewhere).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_routes_not_paths() {
        let m = Metrics::new();
        m.observe("/v1/collections/{name}/search", "POST", 200, "docs", 0.003);
        m.searched("docs", 100);
        let text = m.render(None).unwrap();
        assert!(text.contains(
            r#"proxima_http_requests_total{collection="docs",method="POST",route="/v1/collections/{name}/search",status="200"} 1"#
        ), "{text}");
        assert!(text.contains(r#"proxima_search_queries_total{collection="docs"} 100"#));
        assert!(text.contains(r#"proxima_gpu_fallbacks_total{reason="out_of_memory"} 0"#));
        assert!(text.contains("proxima_gpu_memory_bytes 0"));
        assert!(text.contains("proxima_ready 0"));
    }

    #[test]
    fn a_dropped_collection_leaves_no_series() {
        let m = Metrics::new();
        for name in ["gone", "kept"] {
            m.observe("/v1/collections/{name}/search", "POST", 200, name, 0.003);
            m.observe("/v1/collections/{name}/vectors", "POST", 200, name, 0.001);
            m.searched(name, 10);
            m.inserted(name, 5);
            m.deleted(name, 1);
        }
        m.forget("gone");
        let text = m.render(None).unwrap();
        assert!(!text.contains(r#"collection="gone""#), "{text}");
        assert!(text.contains(r#"proxima_search_queries_total{collection="kept"} 10"#));
        assert!(
            text.contains(r#"proxima_vectors_deleted_total{collection="kept"} 1"#),
            "{text}"
        );
    }
}
