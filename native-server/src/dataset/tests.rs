use std::path::Path;

use proxima_core::exact::exact_search;
use proxima_core::formats::{write_fbin, write_fvecs};
use proxima_core::Metric;

use super::*;

fn write_fbin_file(path: &Path, rows: usize, dim: usize, data: &[f32]) {
    let mut f = std::fs::File::create(path).unwrap();
    write_fbin(&mut f, rows, dim, data).unwrap();
}

/// A deterministic pseudo-random matrix.
fn matrix(rows: usize, dim: usize, salt: u32) -> Vec<f32> {
    (0..rows * dim)
        .map(|i| {
            let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt) >> 8;
            (x % 2000) as f32 / 100.0 - 10.0
        })
        .collect()
}

fn import_request(dir: &Path, metric: Metric) -> ImportRequest {
    ImportRequest {
        name: "toy".into(),
        base: dir.join("base.fbin"),
        queries: Some(dir.join("queries.fvecs")),
        metric,
        ground_truth_k: GROUND_TRUTH_K,
        out: dir.join("datasets/toy"),
        force: false,
        progress: false,
    }
}

fn toy_inputs(dir: &Path) -> (Vec<f32>, Vec<f32>) {
    let (base, queries) = (matrix(150, 8, 1), matrix(7, 8, 99));
    write_fbin_file(&dir.join("base.fbin"), 150, 8, &base);
    let mut f = std::fs::File::create(dir.join("queries.fvecs")).unwrap();
    write_fvecs(&mut f, 8, &queries).unwrap();
    (base, queries)
}

#[test]
fn import_computes_exact_ground_truth_and_opens_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, queries) = toy_inputs(tmp.path());
    let outcome = import(&import_request(tmp.path(), Metric::L2)).unwrap();
    assert!(!outcome.cached);
    let m = &outcome.manifest;
    assert_eq!(
        (m.dim, m.count, m.num_queries, m.ground_truth_k),
        (8, 150, 7, 100)
    );
    assert_eq!(m.metric, Metric::L2);

    let ds = Dataset::open(&outcome.dir).unwrap();
    assert_eq!(
        (ds.name.as_str(), ds.len(), ds.num_queries()),
        ("toy", 150, 7)
    );
    assert_eq!(ds.base, base);
    assert_eq!(ds.queries, queries);
    assert_eq!(ds.ids, (0..150).collect::<Vec<u64>>());
    // Brute force by hand, in f64, against the stored ground truth.
    for (q, truth) in ds.ground_truth.iter().enumerate() {
        assert_eq!(truth.len(), 100);
        let mut dists: Vec<(f64, u64)> = (0..150)
            .map(|r| {
                let d = (0..8)
                    .map(|j| f64::from(queries[q * 8 + j] - base[r * 8 + j]).powi(2))
                    .sum::<f64>();
                (d, r as u64)
            })
            .collect();
        dists.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<u64> = dists.iter().take(10).map(|d| d.1).collect();
        assert_eq!(&truth[..10], &want[..], "query {q}");
    }
}

#[test]
fn import_caches_by_parameters_and_force_rebuilds() {
    let tmp = tempfile::tempdir().unwrap();
    toy_inputs(tmp.path());
    let mut req = import_request(tmp.path(), Metric::Cosine);
    let first = import(&req).unwrap();
    assert!(!first.cached);
    let ds = Dataset::open(&first.dir).unwrap();
    let norm: f32 = ds.base_row(3).iter().map(|x| x * x).sum();
    assert!(
        (norm - 1.0).abs() < 1e-5,
        "cosine imports are stored normalised"
    );

    let again = import(&req).unwrap();
    assert!(again.cached);
    assert_eq!(again.manifest, first.manifest);

    req.metric = Metric::InnerProduct;
    let other = import(&req).unwrap();
    assert!(!other.cached, "a different metric rebuilds");
    assert_eq!(
        Dataset::open(&other.dir).unwrap().metric,
        Metric::InnerProduct
    );

    req.force = true;
    let forced = import(&req).unwrap();
    assert!(!forced.cached);
    assert_ne!(forced.manifest.created_unix, 0);

    // Nothing but the dataset is left beside it.
    let entries: Vec<String> = std::fs::read_dir(tmp.path().join("datasets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["toy"]);
}

#[test]
fn import_without_queries_has_no_ground_truth() {
    let tmp = tempfile::tempdir().unwrap();
    toy_inputs(tmp.path());
    let mut req = import_request(tmp.path(), Metric::L2);
    req.queries = None;
    let outcome = import(&req).unwrap();
    assert_eq!(outcome.manifest.num_queries, 0);
    let ds = Dataset::open(&outcome.dir).unwrap();
    assert!(ds.queries.is_empty() && ds.ground_truth.is_empty());
    assert!(!outcome.dir.join(files::GROUND_TRUTH).exists());
}

#[test]
fn bad_inputs_are_typed_errors_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    toy_inputs(tmp.path());
    let mut req = import_request(tmp.path(), Metric::L2);

    // Queries of another dimension.
    write_fbin_file(&tmp.path().join("q4.fbin"), 2, 4, &[1.0; 8]);
    req.queries = Some(tmp.path().join("q4.fbin"));
    let err = import(&req).unwrap_err();
    assert!(matches!(err, DatasetError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("4 dimensions"), "{err}");

    // An unknown format, a missing file, a bad name.
    req.queries = Some(tmp.path().join("queries.csv"));
    std::fs::write(tmp.path().join("queries.csv"), "1,2").unwrap();
    assert!(matches!(
        import(&req).unwrap_err(),
        DatasetError::Format { .. }
    ));
    req.queries = Some(tmp.path().join("absent.fbin"));
    assert!(matches!(import(&req).unwrap_err(), DatasetError::Io { .. }));
    req.queries = None;
    req.name = "../escape".into();
    assert!(matches!(import(&req).unwrap_err(), DatasetError::Params(_)));

    assert!(!tmp.path().join("datasets/toy").exists());
    let leftovers = std::fs::read_dir(tmp.path().join("datasets")).map_or(0, |d| d.count());
    assert_eq!(leftovers, 0, "failed builds leave no temporary directory");
}

#[test]
fn a_directory_that_is_not_a_dataset_is_never_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    toy_inputs(tmp.path());
    let mut req = import_request(tmp.path(), Metric::L2);
    req.out = tmp.path().join("precious");
    std::fs::create_dir(&req.out).unwrap();
    std::fs::write(req.out.join("notes.txt"), "mine").unwrap();
    let err = import(&req).unwrap_err();
    assert!(err.to_string().contains("not a dataset directory"), "{err}");
    assert_eq!(
        std::fs::read_to_string(req.out.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn abandoned_temporary_directories_are_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    toy_inputs(tmp.path());
    let req = import_request(tmp.path(), Metric::L2);
    let parent = tmp.path().join("datasets");
    // A killed build: its process (pid beyond any real one) is gone; it wrote no manifest.
    let stale = parent.join(".toy.tmp-4294967295-0");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join(files::BASE), b"half").unwrap();
    assert!(matches!(
        Dataset::open(&stale),
        Err(DatasetError::NotFound { .. })
    ));
    import(&req).unwrap();
    if cfg!(target_os = "linux") {
        assert!(!stale.exists());
    }
}

#[test]
fn open_checks_files_against_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    toy_inputs(tmp.path());
    let dir = import(&import_request(tmp.path(), Metric::L2)).unwrap().dir;

    assert!(matches!(
        Dataset::open(&tmp.path().join("nothing")),
        Err(DatasetError::NotFound { .. })
    ));

    let ids = std::fs::read(dir.join(files::IDS)).unwrap();
    std::fs::write(dir.join(files::IDS), &ids[..ids.len() - 8]).unwrap();
    let err = Dataset::open(&dir).unwrap_err();
    assert!(err.to_string().contains("for 150 base rows"), "{err}");
    std::fs::write(dir.join(files::IDS), &ids).unwrap();

    let mut gt = Vec::new();
    proxima_core::formats::write_ibin(&mut gt, 7, 100, &[150; 700]).unwrap();
    std::fs::write(dir.join(files::GROUND_TRUTH), &gt).unwrap();
    let err = Dataset::open(&dir).unwrap_err();
    assert!(err.to_string().contains("names base row 150"), "{err}");

    std::fs::write(dir.join(files::MANIFEST), "{").unwrap();
    assert!(matches!(
        Dataset::open(&dir),
        Err(DatasetError::Invalid { .. })
    ));
}

// --- with the real model ----------------------------------------------------------------------

#[test]
fn a_jsonl_corpus_is_embedded_split_and_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.jsonl");
    let texts = [
        "gimp: GNU Image Manipulation Program",
        "darktable: virtual lighttable and darkroom for photographers",
        "postfix: High-performance mail transport agent",
        "mutt: text-based mailreader supporting MIME, GPG, PGP and threading",
        "gzip: GNU compression utilities",
        "xz-utils: XZ-format compression utilities",
        "ffmpeg: Tools for transcoding, streaming and playing of multimedia files",
        "vim: Vi IMproved - enhanced vi editor",
    ];
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({ "id": 1000 + i, "text": t }).to_string())
        .collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();

    let mut req = TextBuild::new("mine", TextSource::Jsonl(corpus.clone()));
    req.held_out = 2;
    req.out = tmp.path().join("mine");
    let built = build_text(&req).unwrap();
    assert!(!built.cached);
    let m = &built.manifest;
    assert_eq!(
        (m.dim, m.count, m.num_queries, m.ground_truth_k),
        (384, 6, 2, 6)
    );
    assert_eq!(m.metric, Metric::Cosine);

    let ds = Dataset::open(&built.dir).unwrap();
    let query_lines = std::fs::read_to_string(built.dir.join(files::QUERY_TEXTS)).unwrap();
    for (q, line) in query_lines.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["kind"], "held_out");
        let id = v["id"].as_u64().unwrap();
        assert!(!ds.ids.contains(&id), "held-out query {id} is in the base");
        // The ground truth is the exact cosine ranking of the stored vectors.
        let hits = exact_search(
            &ds.base,
            Some(&ds.ids),
            ds.query(q),
            384,
            Metric::Cosine,
            6,
            None,
        );
        let want: Vec<u64> = hits[0].iter().map(|h| h.id).collect();
        assert_eq!(ds.ground_truth[q], want);
    }
    let base_lines = std::fs::read_to_string(built.dir.join(files::TEXTS)).unwrap();
    let first: Record = serde_json::from_str(base_lines.lines().next().unwrap()).unwrap();
    assert_eq!(first.id, ds.ids[0]);
    assert_eq!(first.text, texts[(first.id - 1000) as usize]);

    let again = build_text(&req).unwrap();
    assert!(again.cached, "same parameters: reused");
    req.seed += 1;
    assert!(!build_text(&req).unwrap().cached, "another seed: rebuilt");
}

#[test]
fn a_bad_jsonl_line_is_reported_with_its_number() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.jsonl");
    std::fs::write(
        &corpus,
        "{\"id\": 1, \"text\": \"a\"}\n{\"id\": 2, \"txt\": \"b\"}\n",
    )
    .unwrap();
    let mut req = TextBuild::new("bad", TextSource::Jsonl(corpus));
    req.out = tmp.path().join("bad");
    req.held_out = 1;
    match build_text(&req) {
        Err(DatasetError::Jsonl { line, reason, .. }) => {
            assert_eq!(line, 2);
            assert!(reason.contains("text"), "{reason}");
        }
        other => panic!("expected a JSONL error, got {other:?}"),
    }
    assert!(!req.out.exists());
}

#[test]
fn a_missing_model_fails_the_build_naming_the_setup_command() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.jsonl");
    std::fs::write(
        &corpus,
        "{\"id\": 1, \"text\": \"a\"}\n{\"id\": 2, \"text\": \"b\"}\n",
    )
    .unwrap();
    let mut req = TextBuild::new("nomodel", TextSource::Jsonl(corpus));
    req.out = tmp.path().join("nomodel");
    req.held_out = 1;
    req.model_dir = tmp.path().join("no-model-here");
    let err = build_text(&req).unwrap_err();
    assert!(matches!(
        err,
        DatasetError::Embed(crate::embed::EmbedError::ModelNotFound { .. })
    ));
    assert!(err.to_string().contains("scripts/setup.sh native"), "{err}");
    assert!(!req.out.exists());
}

#[test]
fn the_debian_subset_is_consistent() {
    let ds = testing::debian_subset(500);
    assert_eq!(
        (ds.name.as_str(), ds.dim, ds.metric),
        ("debian-500", 384, Metric::Cosine)
    );
    assert_eq!(ds.len(), 500);
    assert_eq!(
        ds.num_queries(),
        testing::SUBSET_HELD_OUT + DEBIAN_QUESTIONS.len()
    );
    assert_eq!(ds.ground_truth.len(), ds.num_queries());
    let mut ids = ds.ids.clone();
    ids.dedup();
    assert_eq!(ids.len(), 500, "ids are unique and ascending");
    // Spot-check the ground truth against exact search over what was stored.
    for q in [0, 57, ds.num_queries() - 1] {
        let hits = exact_search(
            &ds.base,
            Some(&ds.ids),
            ds.query(q),
            384,
            Metric::Cosine,
            100,
            None,
        );
        let want: Vec<u64> = hits[0].iter().map(|h| h.id).collect();
        assert_eq!(ds.ground_truth[q], want, "query {q}");
    }
    // Opening again hits the cache and gives the same data.
    let again = testing::debian_subset(500);
    assert_eq!(again.base, ds.base);
    assert_eq!(again.ground_truth, ds.ground_truth);
}
