//! The `proxima` binary as a user runs it.

use proxima_e2e::run_cli;

#[test]
fn version_names_faiss() {
    let (code, out, _) = run_cli(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("proxima 0."), "{out}");
    assert!(out.contains("FAISS 1.12"), "{out}");
    assert!(out.contains("GPU: "), "{out}");
}

#[test]
fn a_gpu_the_build_or_machine_lacks_fails_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (code, _, err) = run_cli(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-embed",
        "--data-dir",
        data,
        "--gpu-device",
        "99",
    ]);
    assert_ne!(code, 0);
    // A CPU build says it has no GPU support; a GPU build that device 99 does not exist.
    assert!(
        err.contains("no GPU support") || err.contains("CUDA device 99 does not exist"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn plan_reproduces_the_seed_example() {
    let (code, out, err) = run_cli(&[
        "plan",
        "--vectors",
        "1000000",
        "--dim",
        "128",
        "--index",
        "IVF_FLAT",
        "--nlist",
        "4096",
    ]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("inverted lists"))
        .unwrap_or_else(|| panic!("no lists line in\n{out}"));
    assert!(line.contains("537.6 MB"), "{line}");
    assert!(out.contains("512.0 MB"), "{out}");
    assert!(out.contains("Recommended:"), "{out}");
}

#[test]
fn plan_json_matches_the_library() {
    let (code, out, err) = run_cli(&[
        "plan",
        "--vectors",
        "10000000",
        "--dim",
        "768",
        "--index",
        "IVF_PQ",
        "--nlist",
        "16384",
        "--ram",
        "64GiB",
        "--recall",
        "0.95",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lib = proxima_core::sizing::plan(
        10_000_000,
        768,
        proxima_core::IndexSpec::IvfPq {
            nlist: 16384,
            m: proxima_core::request::default_pq_m(768),
            nbits: 8,
        },
    )
    .unwrap();
    assert_eq!(v["plan"]["index_bytes"].as_u64().unwrap(), lib.index_bytes);
    assert_eq!(
        v["advice"]["request"]["ram_budget"].as_u64().unwrap(),
        64 << 30
    );
    assert!(v["advice"]["recommended"]["plan"]["index"]["type"].is_string());
}

#[test]
fn bad_arguments_fail_cleanly() {
    let (code, _, err) = run_cli(&["plan", "--vectors", "10", "--dim", "8", "--index", "LSH"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown index type LSH"), "{err}");
    let (code, _, err) = run_cli(&["plan", "--vectors", "10", "--dim", "8", "--ram", "lots"]);
    assert_ne!(code, 0);
    assert!(err.contains("size"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
