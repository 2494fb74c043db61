//! GPU tests (feature `gpu`). Those that need a CUDA device print "skipped: …" and pass where
//! none exists; `a_missing_device_is_a_clean_error` runs everywhere. The tests hold one lock in
//! turn, because the out-of-memory test fills the device.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use proxima_core::exact::exact_search;
use proxima_core::{recall_at_k, Bitmap, ConsistencyLevel, IndexSpec, Metric, SearchParams};
use proxima_core::{Hit, VectorIndex};

use super::cuda::{device_count, memory, Ballast};
use super::*;
use crate::engine::{CollectionSchema, Engine, EngineConfig, EngineError, SegmentState};
use crate::index::faiss_backend::FaissIndex;

static DEVICE: Mutex<()> = Mutex::new(());

/// Slack of device memory measurements (the allocator rounds to 2 MiB pages).
const SLACK: u64 = 8 << 20;

fn settings() -> GpuSettings {
    GpuSettings {
        min_rows: 1,
        ..GpuSettings::new(0)
    }
}

fn test_device(preflight: bool) -> Option<Arc<GpuDevice>> {
    match device_count() {
        Ok(n) if n > 0 => Some(GpuDevice::open_with(&settings(), preflight).expect("open GPU 0")),
        Ok(_) => {
            eprintln!("skipped: no CUDA device");
            None
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut v = crate::index::clustered(n, dim, seed, 128, 0.2);
    Metric::Cosine.prepare(&mut v, dim);
    v
}

fn ids(hits: &[Vec<Hit>]) -> Vec<Vec<u64>> {
    hits.iter()
        .map(|h| h.iter().map(|h| h.id).collect())
        .collect()
}

/// Every third of the first `3 * deleted` rows is deleted.
fn live_without(n: usize, deleted: usize) -> Bitmap {
    let mut live = Bitmap::new(n, true);
    for i in 0..deleted {
        live.set(i * 3, false);
    }
    live
}

#[test]
fn a_missing_device_is_a_clean_error() {
    let _g = DEVICE.lock();
    let count = device_count().expect("counting devices never fails on a CUDA build");
    let missing = GpuSettings::new(count);
    assert_eq!(
        GpuDevice::open(&missing).unwrap_err(),
        GpuError::NoDevice {
            device: count,
            count
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.gpu = Some(missing);
    match Engine::open(config) {
        Err(e @ EngineError::Gpu(GpuError::NoDevice { .. })) => {
            assert_eq!(e.code(), "gpu_unavailable")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("an engine opened on a missing GPU"),
    }
}

#[test]
fn flat_copy_answers_as_exact_search_and_hides_deleted_rows() {
    let _g = DEVICE.lock();
    let Some(gpu) = test_device(true) else { return };
    let (n, dim, k) = (20_000, 64, 10);
    let base = data(n, dim, 1);
    let queries = data(100, dim, 2);
    let index = gpu.upload_flat(dim, Metric::Cosine, &base).unwrap();
    assert!(index.memory_bytes() >= (n * dim * 4) as u64);
    for deleted in [0, 600] {
        let live = live_without(n, deleted);
        let filter = (deleted > 0).then_some(&live);
        let truth = exact_search(&base, None, &queries, dim, Metric::Cosine, k, filter);
        let hits = index
            .search(&queries, &SearchParams::new(k), filter, deleted)
            .unwrap();
        assert!(hits.iter().all(|h| h.len() == k));
        assert!(hits.iter().flatten().all(|h| live.get(h.id as usize)));
        let recall = recall_at_k(&hits, &ids(&truth), k);
        assert!(recall >= 0.999, "recall {recall} with {deleted} deleted");
        for (g, t) in hits.iter().zip(&truth) {
            assert!((g[0].score - t[0].score).abs() < 1e-4);
        }
    }
    // More deleted rows than the GPU can over-fetch: the caller must use the CPU.
    let live = live_without(n, GPU_MAX_K);
    assert_eq!(
        index
            .search(&queries, &SearchParams::new(k), Some(&live), GPU_MAX_K)
            .unwrap_err()
            .reason(),
        Fallback::Limits
    );
}

#[test]
fn ivf_copies_match_their_cpu_index() {
    let _g = DEVICE.lock();
    let Some(gpu) = test_device(true) else { return };
    let (n, dim, k, deleted) = (30_000, 64, 10, 1000);
    let base = data(n, dim, 3);
    let queries = data(100, dim, 4);
    let labels: Vec<u64> = (0..n as u64).collect();
    let live = live_without(n, deleted);
    let params = SearchParams::new(k).with_nprobe(16);
    for (spec, min_overlap) in [
        (IndexSpec::IvfFlat { nlist: 128 }, 0.99),
        (IndexSpec::IvfSq8 { nlist: 128 }, 0.95),
        (
            IndexSpec::IvfPq {
                nlist: 128,
                m: 16,
                nbits: 8,
            },
            0.9,
        ),
    ] {
        let mut cpu = FaissIndex::new(dim, Metric::Cosine, spec).unwrap();
        cpu.train(&base).unwrap();
        cpu.add(&labels, &base).unwrap();
        let on_gpu = gpu.upload_index(&cpu).unwrap();
        assert!(on_gpu.memory_bytes() > 0);
        let want = cpu.search(&queries, &params, Some(&live)).unwrap();
        let got = on_gpu
            .search(&queries, &params, Some(&live), deleted)
            .unwrap();
        assert!(got.iter().all(|h| h.len() == k), "{spec}: fewer than k");
        assert!(
            got.iter().flatten().all(|h| live.get(h.id as usize)),
            "{spec}: a deleted row came back"
        );
        let overlap = recall_at_k(&got, &ids(&want), k);
        assert!(overlap >= min_overlap, "{spec}: overlap {overlap}");
    }
    let mut hnsw = FaissIndex::new(
        dim,
        Metric::Cosine,
        IndexSpec::Hnsw {
            m: 8,
            ef_construction: 40,
        },
    )
    .unwrap();
    hnsw.add(&labels[..1000], &base[..1000 * dim]).unwrap();
    assert_eq!(
        gpu.upload_index(&hnsw).unwrap_err().reason(),
        Fallback::Limits
    );
}

#[test]
fn out_of_memory_fails_cleanly_and_frees_what_it_took() {
    let _g = DEVICE.lock();
    // Without the preflight check, so FAISS itself runs out of memory. Both devices are opened
    // before the device is filled: initialising one needs memory of its own.
    let Some(gpu) = test_device(false) else {
        return;
    };
    let checked = test_device(true).unwrap();
    let device = gpu.settings().device;
    let (n, dim) = (200_000, 256);
    let rows = data(n, dim, 5);
    let replicas = STATS.replicas();
    let (free, _) = memory(device).unwrap();
    let ballast = Ballast::hold(device, free - (64 << 20)).unwrap();
    let (before, _) = memory(device).unwrap();
    let err = gpu.upload_flat(dim, Metric::L2, &rows).unwrap_err();
    assert!(matches!(err, GpuError::OutOfMemory { .. }), "{err}");
    let (after, _) = memory(device).unwrap();
    assert!(
        after + SLACK >= before,
        "a failed upload leaked {} bytes",
        before - after
    );
    assert_eq!(STATS.replicas(), replicas);
    // With the preflight, the upload is refused before FAISS allocates anything.
    let err = checked.upload_flat(dim, Metric::L2, &rows).unwrap_err();
    assert!(
        matches!(&err, GpuError::OutOfMemory { message } if message.contains("needed")),
        "{err}"
    );
    // A search whose results do not fit fails the same way and leaves the index usable.
    drop(ballast);
    let small = gpu
        .upload_flat(16, Metric::L2, &rows[..16 * 10_000])
        .unwrap();
    let queries = vec![0.5f32; 16 * 100_000];
    let (free, _) = memory(device).unwrap();
    let ballast = Ballast::hold(device, free - (64 << 20)).unwrap();
    let err = small
        .search(&queries, &SearchParams::new(GPU_MAX_K), None, 0)
        .unwrap_err();
    assert!(matches!(err, GpuError::OutOfMemory { .. }), "{err}");
    drop(ballast);
    let hits = small
        .search(&queries[..16], &SearchParams::new(5), None, 0)
        .unwrap();
    assert_eq!(hits[0].len(), 5);
    // Dropping an index gives its memory back.
    let (before_upload, _) = memory(device).unwrap();
    let big = gpu.upload_flat(dim, Metric::L2, &rows).unwrap();
    assert!(memory(device).unwrap().0 + big.memory_bytes() <= before_upload + SLACK);
    drop(big);
    assert!(memory(device).unwrap().0 + SLACK >= before_upload);
}

/// Whether every sealed segment (the growing one is always on the CPU) has a GPU copy.
fn all_sealed_on_gpu(segments: &[crate::engine::SegmentInfo]) -> bool {
    let sealed: Vec<_> = segments
        .iter()
        .filter(|s| s.state == SegmentState::Sealed)
        .collect();
    !sealed.is_empty() && sealed.iter().all(|s| s.gpu_bytes > 0)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_engine_searches_sealed_segments_on_the_gpu_and_falls_back_to_the_cpu() {
    let _g = DEVICE.lock();
    if test_device(true).is_none() {
        return;
    }
    let (n, dim, k) = (12_000, 32, 10);
    let base = data(n, dim, 6);
    let queries = data(50, dim, 7);
    let row_ids: Vec<u64> = (0..n as u64).collect();
    let open = |dir: &std::path::Path, gpu: bool| {
        let mut c = EngineConfig::new(dir);
        c.seal_rows = 5_000;
        // Deleted rows stay until the explicit compaction below.
        c.auto_compact_deleted_ratio = 1.0;
        c.consistency_timeout = Duration::from_secs(30);
        c.gpu = gpu.then(|| GpuSettings {
            min_rows: 1_000,
            ..GpuSettings::new(0)
        });
        Engine::open(c).unwrap()
    };
    let params = SearchParams::new(k).with_nprobe(32);
    for spec in [IndexSpec::IvfFlat { nlist: 32 }, IndexSpec::Flat] {
        let (gpu_dir, cpu_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (on_gpu, on_cpu) = (open(gpu_dir.path(), true), open(cpu_dir.path(), false));
        let schema = CollectionSchema {
            name: "docs".into(),
            dim,
            metric: Metric::Cosine,
            index: spec.into(),
            num_shards: 1,
            auto_id: false,
        };
        for engine in [&on_gpu, &on_cpu] {
            let c = engine.create_collection(schema.clone()).unwrap();
            c.insert(&base, Some(&row_ids)).unwrap();
            c.flush().unwrap();
            assert!(c.wait_index_ready(Duration::from_secs(120)));
        }
        let (g, c) = (
            on_gpu.collection("docs").unwrap(),
            on_cpu.collection("docs").unwrap(),
        );
        wait_until("segments on the GPU", || {
            let info = g.describe();
            all_sealed_on_gpu(&info.segments) && info.memory.gpu_bytes > 0
        });
        let search = |c: &crate::engine::Collection| {
            c.search(&queries, &params, ConsistencyLevel::Strong, None)
                .unwrap()
                .hits
        };
        let searches = STATS.searches();
        let overlap = recall_at_k(&search(&g), &ids(&search(&c)), k);
        assert!(overlap >= 0.99, "{spec}: GPU vs CPU overlap {overlap}");
        assert!(STATS.searches() > searches, "{spec}: the GPU was not used");
        // A few deletions: still served by the GPU, never returned.
        let doomed: Vec<u64> = search(&g)
            .iter()
            .flat_map(|h| h.iter().map(|h| h.id))
            .collect();
        g.delete(&doomed).unwrap();
        let searches = STATS.searches();
        let hits = search(&g);
        assert!(STATS.searches() > searches);
        assert!(hits.iter().all(|h| h.len() == k));
        assert!(hits.iter().flatten().all(|h| !doomed.contains(&h.id)));
        // More deletions than the GPU can over-fetch: the CPU answers, with the same rule.
        let many: Vec<u64> = (0..3_000).collect();
        g.delete(&many).unwrap();
        let limits = STATS.fallbacks(Fallback::Limits);
        let hits = search(&g);
        assert!(STATS.fallbacks(Fallback::Limits) > limits);
        assert!(hits
            .iter()
            .flatten()
            .all(|h| h.id >= 3_000 && !doomed.contains(&h.id)));
        // Compaction replaces segments: their GPU copies go, the new ones come up.
        g.compact().unwrap();
        assert!(g.wait_index_ready(Duration::from_secs(120)));
        wait_until("compacted segments on the GPU", || {
            all_sealed_on_gpu(&g.describe().segments)
        });
        let hits = search(&g);
        assert!(hits
            .iter()
            .flatten()
            .all(|h| h.id >= 3_000 && !doomed.contains(&h.id)));
        // After a restart the loaded segments go back to the GPU (in the background).
        drop(g);
        drop(on_gpu);
        let reopened = open(gpu_dir.path(), true);
        let g = reopened.collection("docs").unwrap();
        assert!(g.wait_index_ready(Duration::from_secs(120)));
        wait_until("reloaded segments on the GPU", || {
            all_sealed_on_gpu(&g.describe().segments)
        });
        assert!(search(&g)
            .iter()
            .flatten()
            .all(|h| h.id >= 3_000 && !doomed.contains(&h.id)));
    }
}

#[test]
fn an_engine_whose_segments_do_not_fit_searches_on_the_cpu() {
    let _g = DEVICE.lock();
    if test_device(true).is_none() {
        return;
    }
    let (n, dim, k) = (6_000, 32, 10);
    let base = data(n, dim, 8);
    let queries = data(20, dim, 9);
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.consistency_timeout = Duration::from_secs(30);
    // No upload can leave this much free: every copy is refused as out of memory.
    config.gpu = Some(GpuSettings {
        min_rows: 1,
        reserve_bytes: 1 << 50,
        ..GpuSettings::new(0)
    });
    let engine = Engine::open(config).unwrap();
    let c = engine
        .create_collection(CollectionSchema {
            name: "docs".into(),
            dim,
            metric: Metric::Cosine,
            index: IndexSpec::IvfFlat { nlist: 16 }.into(),
            num_shards: 1,
            auto_id: false,
        })
        .unwrap();
    let row_ids: Vec<u64> = (0..n as u64).collect();
    let refused = STATS.fallbacks(Fallback::OutOfMemory);
    c.insert(&base, Some(&row_ids)).unwrap();
    c.flush().unwrap();
    assert!(c.wait_index_ready(Duration::from_secs(120)));
    wait_until("the refused upload to be counted", || {
        STATS.fallbacks(Fallback::OutOfMemory) > refused
    });
    let info = c.describe();
    assert_eq!(info.memory.gpu_bytes, 0);
    let sealed = info
        .segments
        .iter()
        .find(|s| s.state == SegmentState::Sealed)
        .unwrap();
    assert!(
        sealed
            .gpu_note
            .as_deref()
            .is_some_and(|n| n.contains("out of memory")),
        "{:?}",
        sealed.gpu_note
    );
    let searches = STATS.searches();
    let hits = c
        .search(
            &queries,
            &SearchParams::new(k).with_nprobe(16),
            ConsistencyLevel::Strong,
            None,
        )
        .unwrap()
        .hits;
    assert_eq!(
        STATS.searches(),
        searches,
        "nothing is on the GPU to search"
    );
    let truth = exact_search(&base, None, &queries, dim, Metric::Cosine, k, None);
    assert!(recall_at_k(&hits, &ids(&truth), k) >= 0.9);
}
