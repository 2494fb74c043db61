//! `proxima embed` and `proxima dataset build` as a user runs them: the real binary, the real
//! model (installed by scripts/setup.sh) and the real Debian package list.

use std::io::Write;
use std::process::{Command, Stdio};

use proxima_e2e::{proxima_bin, run_cli};

fn parse_rows(out: &str) -> Vec<Vec<f64>> {
    out.lines()
        .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn header(path: &std::path::Path) -> (usize, usize) {
    proxima_core::formats::fbin::read_header(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn embed_prints_one_unit_vector_per_text() {
    let (code, out, err) = run_cli(&[
        "embed",
        "A man is eating food.",
        "A man is eating a piece of bread.",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows = parse_rows(&out);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.len() == 384));
    assert!((cosine(&rows[0], &rows[0]) - 1.0).abs() < 1e-6);
    let norm: f64 = rows[0].iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    let cos = cosine(&rows[0], &rows[1]);
    assert!((cos - 0.7553).abs() < 1e-3, "{cos}");
}

#[test]
fn embed_reads_stdin_and_prints_json() {
    let mut child = Command::new(proxima_bin())
        .args(["embed", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"compress files\ngzip: GNU compression utilities\nweb browser\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dim"], 384);
    assert_eq!(v["model"], "all-MiniLM-L6-v2");
    let rows: Vec<Vec<f64>> = serde_json::from_value(v["vectors"].clone()).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(cosine(&rows[0], &rows[1]) > cosine(&rows[0], &rows[2]) + 0.1);
}

#[test]
fn embed_without_the_model_names_the_setup_command() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none");
    let (code, _, err) = run_cli(&["embed", "--model-dir", missing.to_str().unwrap(), "x"]);
    assert_ne!(code, 0);
    assert!(err.contains("scripts/setup.sh native"), "{err}");
}

#[test]
fn dataset_build_writes_a_complete_dataset_and_caches_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("debian-300");
    let out_s = out.to_str().unwrap();
    let args = [
        "dataset",
        "build",
        "debian-packages",
        "--limit",
        "300",
        "--held-out",
        "50",
        "--out",
        out_s,
    ];
    let (code, stdout, err) = run_cli(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.starts_with("built debian-packages: 300 base vectors × 384"),
        "{stdout}"
    );

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["count"], 300);
    assert_eq!(manifest["num_queries"], 80, "50 held out + 30 questions");
    assert_eq!(manifest["metric"], "cosine");
    assert_eq!(header(&out.join("base.fbin")), (300, 384));
    assert_eq!(header(&out.join("queries.fbin")), (80, 384));
    assert_eq!(header(&out.join("groundtruth.ibin")), (80, 100));
    assert_eq!(
        std::fs::metadata(out.join("ids.u64")).unwrap().len(),
        300 * 8
    );
    let texts = std::fs::read_to_string(out.join("texts.jsonl")).unwrap();
    assert_eq!(texts.lines().count(), 300);
    let queries = std::fs::read_to_string(out.join("queries.jsonl")).unwrap();
    assert!(queries.contains("\"text\":\"edit photos\""), "{queries}");

    let started = std::time::Instant::now();
    let (code, stdout, err) = run_cli(&args);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.starts_with("up to date: "), "{stdout}");
    assert!(
        started.elapsed().as_secs_f64() < 2.0,
        "the cached run is instant"
    );
}

#[test]
fn dataset_build_reports_a_bad_jsonl_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.jsonl");
    std::fs::write(&file, "{\"id\": 1, \"text\": \"one\"}\n{\"id\": \"two\"}\n").unwrap();
    let out = dir.path().join("mine");
    let (code, _, err) = run_cli(&[
        "dataset",
        "build",
        "mine",
        "--jsonl",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("mine.jsonl, line 2"), "{err}");
    assert!(!out.exists());
}
