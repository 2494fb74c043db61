//! The FAISS backend (FAISS 1.12, statically linked through the `faiss` crate).

use faiss::{index_factory, Index, MetricType};

/// The FAISS release vendored by `faiss-sys` 0.7 (the C API exposes no version call).
pub const FAISS_VERSION: &str = "1.12.0";

/// Builds a tiny flat index, searches it and checks the answer: proves at start-up that the
/// statically linked FAISS (and its BLAS) works on this machine.
pub fn self_check() -> Result<(), String> {
    let mut index = index_factory(4, "Flat", MetricType::L2).map_err(|e| e.to_string())?;
    let base = [
        0.0f32, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0,
    ];
    index.add(&base).map_err(|e| e.to_string())?;
    let result = index
        .search(&[0.9, 1.0, 1.1, 1.0], 1)
        .map_err(|e| e.to_string())?;
    match result.labels.first().and_then(|l| l.get()) {
        Some(1) => Ok(()),
        other => Err(format!(
            "FAISS self-check returned {other:?}, expected row 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn faiss_is_linked_and_answers() {
        super::self_check().unwrap();
    }
}
