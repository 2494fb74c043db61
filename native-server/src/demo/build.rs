//! Builds the demo collection in the background: the Debian package list (`apt-cache
//! dumpavail`), the seeded split the `debian-packages` dataset uses, the first `--demo-limit`
//! texts embedded in batches and inserted as they are made, so a page that follows the
//! collection fills while it builds. Vectors come from the `debian-packages` dataset when one
//! was built with the same texts (no embedding then), else from the server's model.
//!
//! Resumable: each batch's vectors are inserted before its documents are written, and a
//! restart skips the texts whose documents exist (or were deleted). `demo/state.json` marks
//! a finished build, so later starts do nothing but serve it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use indicatif::{ProgressBar, ProgressStyle};
use proxima_core::hnsw::Quantization;
use proxima_core::{IndexSpec, Metric};

use super::{Demo, DemoMode, COLLECTION};
use crate::api::{AppState, EmbedderState};
use crate::dataset::{self, fingerprint, Dataset, Manifest, Record, DEBIAN_PACKAGES};
use crate::engine::{CollectionSchema, Engine, SnapshotOptions};

/// Texts per batch (embedded, inserted and recorded together).
const BATCH: usize = 256;

#[derive(serde::Serialize, serde::Deserialize)]
struct Finished {
    total: u64,
    limit: Option<usize>,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Starts the demo in the background: once the data directory is open, decides whether the
/// demo runs (`mode`), opens its documents in `dir`, hands it to `state`, and builds what is
/// missing. `limit` is `--demo-limit`.
pub fn start(state: Arc<AppState>, dir: PathBuf, mode: DemoMode, limit: Option<usize>) {
    if mode == DemoMode::Off {
        return;
    }
    let pending = |on: bool| {
        state
            .demo_pending
            .store(on, std::sync::atomic::Ordering::SeqCst)
    };
    pending(true);
    let spawned = std::thread::Builder::new()
        .name("demo-build".into())
        .spawn(move || {
            let engine: Arc<Engine> = wait_for(|| state.engine());
            let exists = engine.collection(COLLECTION).is_ok();
            if mode == DemoMode::Auto && !exists && !engine.list().is_empty() {
                tracing::info!("demo: off (the data directory has other collections; --demo builds it anyway)");
                state.demo_pending.store(false, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            let demo = match Demo::open(&dir) {
                Ok(d) => Arc::new(d),
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "demo: cannot open its documents");
                    state.demo_pending.store(false, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
            };
            state.set_demo(demo.clone());
            match run(&demo, &state, &engine, &dir, limit) {
                Ok(()) => warm_snapshot(&engine),
                Err(reason) => {
                    tracing::warn!("demo: {reason}");
                    demo.set_status(|s| {
                        s.state = "failed";
                        s.message = reason;
                    });
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "demo: could not start the build thread");
    }
}

/// Builds (and compresses) the snapshot the page loads, so the first visitor does not wait
/// for it: about 40 s for the whole collection on 2 CPUs.
fn warm_snapshot(engine: &Engine) {
    let Ok(col) = engine.collection(COLLECTION) else {
        return;
    };
    let started = Instant::now();
    let opts = SnapshotOptions {
        quantization: Quantization::Sq8,
        ..SnapshotOptions::default()
    };
    match col.cache_snapshot(&opts) {
        Ok(snap) => {
            let wire = snap.gzip().len();
            tracing::info!(
                bytes = snap.bytes.len(),
                gzip = wire,
                secs = started.elapsed().as_secs(),
                "demo: the page's snapshot (SQ8) is ready"
            );
        }
        Err(e) => tracing::warn!(error = %e, "demo: building the page's snapshot"),
    }
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(
    demo: &Demo,
    state: &AppState,
    engine: &Engine,
    dir: &Path,
    limit: Option<usize>,
) -> Result<(), String> {
    if let Ok(text) = std::fs::read_to_string(state_path(dir)) {
        if let (Ok(f), Ok(col)) = (
            serde_json::from_str::<Finished>(&text),
            engine.collection(COLLECTION),
        ) {
            if f.limit == limit || limit.is_none() {
                demo.set_status(|s| {
                    s.state = "ready";
                    s.done = f.total;
                    s.total = f.total;
                    s.message = format!("{} packages", col.count());
                });
                tracing::info!(
                    vectors = col.count(),
                    "demo: ready (built on an earlier start)"
                );
                return Ok(());
            }
        }
    }
    demo.set_status(|s| {
        s.state = "loading";
        s.message = "reading the Debian package list (apt-cache dumpavail)".into();
    });
    let corpus = dataset::debian_packages()
        .map_err(|e| format!("the demo needs the Debian package list: {e}"))?;
    let (base_rows, _) = dataset::split(
        corpus.len(),
        dataset::DEFAULT_HELD_OUT,
        limit,
        dataset::DEFAULT_SEED,
    )
    .map_err(|e| e.to_string())?;
    let wanted: Vec<&Record> = base_rows.iter().map(|&i| &corpus[i]).collect();
    let total = wanted.len() as u64;
    let first = wanted.iter().take_while(|r| demo.docs().seen(r.id)).count();
    let todo = &wanted[first..];
    demo.set_status(|s| {
        s.total = total;
        s.done = first as u64;
    });
    if !todo.is_empty() {
        let reuse = reusable_dataset(&corpus, &wanted);
        let embedder = if reuse.is_some() {
            None
        } else {
            demo.set_status(|s| {
                s.state = "waiting";
                s.message = "waiting for the embedding model".into();
            });
            Some(
                wait_for(|| match state.embedder() {
                    EmbedderState::Loading => None,
                    EmbedderState::Ready(e) => Some(Ok(e)),
                    EmbedderState::Unavailable(reason) => Some(Err(reason)),
                })
                .map_err(|reason| format!("the demo needs the embedding model: {reason}"))?,
            )
        };
        let col = match engine.collection(COLLECTION) {
            Ok(c) => c,
            Err(_) => engine
                .create_collection(CollectionSchema {
                    name: COLLECTION.into(),
                    dim: 384,
                    metric: Metric::Cosine,
                    index: IndexSpec::Hnsw {
                        m: 16,
                        ef_construction: 100,
                    }
                    .into(),
                    num_shards: 1,
                    auto_id: false,
                })
                .map_err(|e| format!("creating the demo collection: {e}"))?,
        };
        let how = if reuse.is_some() {
            "vectors from the debian-packages dataset"
        } else {
            "embedding with all-MiniLM-L6-v2"
        };
        tracing::info!(
            todo = todo.len(),
            total,
            "demo: building the {COLLECTION} collection ({how})"
        );
        demo.set_status(|s| {
            s.state = "embedding";
            s.message = format!("{how}: {} of {total}", s.done);
        });
        let bar = ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "demo {bar:30} {pos}/{len} packages ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(first as u64);
        let started = Instant::now();
        for batch in todo.chunks(BATCH) {
            if *state.stopping.borrow() {
                bar.abandon();
                return Ok(());
            }
            let ids: Vec<u64> = batch.iter().map(|r| r.id).collect();
            let vectors: Vec<f32> = match (&reuse, &embedder) {
                (Some(data), _) => ids.iter().flat_map(|id| data[id].iter().copied()).collect(),
                (None, Some(e)) => {
                    let texts: Vec<&str> = batch.iter().map(|r| r.text.as_str()).collect();
                    e.embed_flat(&texts)
                        .map_err(|e| format!("embedding: {e}"))?
                }
                (None, None) => unreachable!("an embedder or a dataset is chosen above"),
            };
            col.insert(&vectors, Some(&ids))
                .map_err(|e| format!("inserting into {COLLECTION}: {e}"))?;
            let docs: Vec<(u64, String)> = batch.iter().map(|r| (r.id, r.text.clone())).collect();
            demo.docs()
                .put(&docs)
                .map_err(|e| format!("writing {}: {e}", demo.docs().path().display()))?;
            bar.inc(batch.len() as u64);
            demo.set_status(|s| {
                s.done += batch.len() as u64;
                s.message = format!("{how}: {} of {total}", s.done);
            });
        }
        bar.finish_and_clear();
        tracing::info!(
            vectors = todo.len(),
            secs = started.elapsed().as_secs(),
            "demo: collection built"
        );
    }
    let col = engine
        .collection(COLLECTION)
        .map_err(|e| format!("the demo collection: {e}"))?;
    // Seal the rows into a segment with its HNSW index (searches on the server side).
    let _ = col.flush();
    let finished = serde_json::to_vec(&Finished { total, limit }).map_err(|e| e.to_string())?;
    crate::engine::write_file_atomic(&state_path(dir), &finished)
        .map_err(|e| format!("writing the demo state: {e}"))?;
    demo.set_status(|s| {
        s.state = "ready";
        s.done = total;
        s.message = format!("{} packages", col.count());
    });
    Ok(())
}

/// The default `debian-packages` dataset's vectors by id, when it was built from this same
/// package list (corpus fingerprint), split (seed, held-out count) and model, and holds every
/// wanted text: then nothing is embedded.
fn reusable_dataset(corpus: &[Record], wanted: &[&Record]) -> Option<HashMap<u64, Vec<f32>>> {
    let dir = dataset::default_dir(DEBIAN_PACKAGES);
    let manifest = Manifest::read(&dir).ok()?;
    let p = &manifest.params;
    let same = manifest.source_details["corpus_fingerprint"] == fingerprint(corpus).as_str()
        && p["seed"] == dataset::DEFAULT_SEED
        && p["held_out_queries"] == dataset::DEFAULT_HELD_OUT
        && p["model"] == crate::embed::MODEL_NAME
        && p["model_package"] == crate::embed::MODEL_PACKAGE
        && manifest.count >= wanted.len();
    if !same {
        return None;
    }
    let data = Dataset::open(&dir).ok()?;
    // The split is nested: the dataset's first rows are the wanted texts.
    if data.ids.iter().zip(wanted).any(|(a, r)| *a != r.id) {
        return None;
    }
    Some(
        wanted
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, data.base_row(i).to_vec()))
            .collect(),
    )
}
