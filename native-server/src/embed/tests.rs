use std::sync::OnceLock;

use super::*;

#[test]
fn mean_pooling_uses_the_mask_and_normalises() {
    // 2 texts × 3 tokens × 2 dims; the second text's last token is padding.
    let hidden = [
        1.0, 0.0, /**/ 3.0, 0.0, /**/ 2.0, 3.0, // text 0: mean (2, 1)
        0.0, 4.0, /**/ 0.0, 2.0, /**/ 100.0,
        100.0, // text 1: mean (0, 3), padding ignored
    ];
    let mask = [1, 1, 1, 1, 1, 0];
    let out = mean_pool_normalize(&hidden, &mask, 2, 3, 2);
    let s5 = 5f32.sqrt();
    assert!((out[0] - 2.0 / s5).abs() < 1e-6, "{out:?}");
    assert!((out[1] - 1.0 / s5).abs() < 1e-6, "{out:?}");
    assert_eq!(&out[2..], &[0.0, 1.0]);
}

#[test]
fn pooling_an_empty_or_zero_row_gives_zeros() {
    let hidden = [1.0, 2.0, /**/ 0.0, 0.0];
    let out = mean_pool_normalize(&hidden, &[0, 1], 2, 1, 2);
    assert_eq!(out, vec![0.0; 4]);
}

#[test]
fn batches_group_similar_lengths_and_cover_every_text_once() {
    let lengths = [9, 2, 5, 2, 7, 1, 5];
    let batches = batches_by_length(&lengths, 3);
    assert_eq!(batches, vec![vec![5, 1, 3], vec![2, 6, 4], vec![0]]);
    let mut all: Vec<usize> = batches.concat();
    all.sort_unstable();
    assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
    assert_eq!(batches_by_length(&lengths, 0).len(), lengths.len());
    assert!(batches_by_length(&[], 4).is_empty());
}

#[test]
fn a_missing_model_is_a_typed_error_naming_the_setup_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let err = Embedder::load(dir.path()).unwrap_err();
    match &err {
        EmbedError::ModelNotFound { dir: d, missing } => {
            assert_eq!(d, dir.path());
            assert_eq!(missing, "model.safetensors, tokenizer.json");
        }
        other => panic!("expected ModelNotFound, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("scripts/setup.sh native"), "{msg}");
    assert!(msg.contains("PROXIMA_MODEL_DIR"), "{msg}");
}

#[test]
fn a_malformed_config_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    for f in REQUIRED_FILES {
        std::fs::write(dir.path().join(f), "not json").unwrap();
    }
    let err = Embedder::load(dir.path()).unwrap_err();
    assert!(matches!(err, EmbedError::Config { .. }), "{err:?}");
}

#[test]
fn the_embedder_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Embedder>();
}

// --- tests with the real model ----------------------------------------------------------------
// They need the model files (`scripts/setup.sh native` installs them) and fail without them.

/// The model, loaded once for all tests of this binary.
pub(crate) fn model() -> &'static Embedder {
    static MODEL: OnceLock<Embedder> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = default_model_dir();
        Embedder::load(&dir).unwrap_or_else(|e| panic!("the embedding tests need the model: {e}"))
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[derive(serde::Deserialize)]
struct Reference {
    dim: usize,
    items: Vec<ReferenceItem>,
}

#[derive(serde::Deserialize)]
struct ReferenceItem {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

#[test]
fn embeddings_match_the_float64_reference() {
    let reference: Reference =
        serde_json::from_str(include_str!("../../tests/fixtures/minilm_reference.json")).unwrap();
    // A small batch size: texts of different lengths share batches, so padding is exercised.
    let model = Embedder::load(&default_model_dir())
        .unwrap_or_else(|e| panic!("the embedding tests need the model: {e}"))
        .with_batch_size(4);
    assert_eq!(model.dim(), reference.dim);
    assert_eq!(model.max_tokens(), 256);
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    let tokens = model.tokenize(&texts).unwrap();
    let got = model.embed(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    for ((item, v), ids) in reference.items.iter().zip(&got).zip(&tokens) {
        assert_eq!(ids.len(), item.tokens, "token count of {:?}", item.text);
        let cos = cosine(v, &item.embedding);
        assert!(cos >= 0.999, "cosine {cos} for {:?}", item.text);
        let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    assert!(reference.items.iter().any(|i| i.tokens > 128));
    assert!(reference.items.iter().any(|i| i.tokens == 256));
}

#[test]
fn known_similarities() {
    let v = model()
        .embed(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The new movie is awesome.",
        ])
        .unwrap();
    assert!(
        (cosine(&v[0], &v[1]) - 0.7553).abs() < 1e-3,
        "{}",
        cosine(&v[0], &v[1])
    );
    assert!(
        (cosine(&v[0], &v[2]) + 0.0461).abs() < 1e-3,
        "{}",
        cosine(&v[0], &v[2])
    );
}

#[test]
fn results_come_back_in_input_order_whatever_the_batching() {
    let texts = [
        "a long text about compilers, linkers, debuggers and the tools around them",
        "vim",
        "GNU compression utilities",
        "",
        "High-performance mail transport agent",
        "vim",
    ];
    let together = model().embed_flat(&texts).unwrap();
    let dim = model().dim();
    assert_eq!(together.len(), texts.len() * dim);
    for (i, t) in texts.iter().enumerate() {
        let alone = model().embed(&[t]).unwrap();
        let cos = cosine(&together[i * dim..(i + 1) * dim], &alone[0]);
        assert!(
            cos > 0.99999,
            "text {i} {t:?}: cosine {cos} with itself embedded alone"
        );
    }
    assert!(model().embed::<&str>(&[]).unwrap().is_empty());
}

#[test]
fn questions_land_near_the_right_package() {
    let v = model()
        .embed(&[
            "edit photos",
            "gimp: GNU Image Manipulation Program",
            "postfix: High-performance mail transport agent",
            "read email in the terminal",
            "mutt: text-based mailreader supporting MIME, GPG, PGP and threading",
        ])
        .unwrap();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.1);
    assert!(cosine(&v[3], &v[4]) > cosine(&v[3], &v[1]) + 0.1);
}

#[test]
fn only_the_head_of_a_long_text_is_read_cut_at_a_character() {
    assert_eq!(text_head("short"), "short");
    let long = "é".repeat(MAX_TEXT_BYTES); // 2 bytes each
    let head = text_head(&long);
    assert!(head.len() <= MAX_TEXT_BYTES && head.len() > MAX_TEXT_BYTES - 2);
    assert!(long.starts_with(head));
    let odd = format!("a{long}");
    assert!(text_head(&odd).len() <= MAX_TEXT_BYTES);
}
