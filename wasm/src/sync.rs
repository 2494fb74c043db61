//! A `VectorCache` that follows a server collection: loaded from the server's snapshot, moved
//! forward by its change batches, saved as one blob.
//!
//! The bytes are `proxima_core::sync`'s: a snapshot is the envelope of
//! `encode_snapshot` (header frame + the index's own bytes), a batch is the binary frame of
//! `ChangeBatch::to_bytes`. The cache keeps a [`SyncState`] beside its index (collection,
//! handle, watermark, complete); `toSnapshot` writes both in the snapshot envelope, so what a
//! page persists holds the vectors and the watermark they reflect, or nothing. Fetching and
//! scheduling are the JS client's (`sync.js` in the packages).

use js_sys::Object;
use wasm_bindgen::prelude::*;

use proxima_core::sync::{ChangeBatch, SyncState};

use crate::cache::{set, VectorCache};
use crate::errors::{coded, js_error};
use crate::ids::MAX_SAFE_INTEGER;

#[wasm_bindgen(typescript_custom_section)]
const TS_SYNC_TYPES: &'static str = r#"
export interface ApplyReport {
  /** Upserts applied (inserted or replaced). */
  upserted: number;
  /** Deletes that removed a held vector. */
  deleted: number;
  /** Records at or below the watermark, already applied before. */
  skipped: number;
  /** The watermark after the batch. */
  watermark: number;
  /** The server has changes after this batch. */
  hasMore: boolean;
}
"#;

/// A sequence number as a JS number: exact below 2^53, refused above.
fn seq_to_js(seq: u64) -> Result<f64, JsValue> {
    if seq > MAX_SAFE_INTEGER {
        return Err(coded(
            "unsupported",
            &format!("sequence {seq} is past 2^53 - 1 and cannot be a JavaScript number"),
        ));
    }
    Ok(seq as f64)
}

fn not_synced(what: &str) -> JsValue {
    coded(
        "not_synced",
        &format!("{what} needs a cache made by VectorCache.fromSnapshot"),
    )
}

#[wasm_bindgen]
impl VectorCache {
    /// A cache loaded from a server snapshot (or a `toSnapshot` blob), following that
    /// collection from the snapshot's sequence. Throws `malformed` on damaged or foreign bytes.
    #[wasm_bindgen(js_name = fromSnapshot)]
    pub fn from_snapshot(bytes: &[u8]) -> Result<VectorCache, JsValue> {
        let (state, inner) = SyncState::from_snapshot(bytes).map_err(js_error)?;
        Ok(VectorCache {
            inner,
            sync: Some(state),
        })
    }

    /// The cache and its sync state as one blob in the snapshot envelope (watermark as the
    /// sequence), for `fromSnapshot`. Throws `not_synced` on a plain cache.
    #[wasm_bindgen(js_name = toSnapshot)]
    pub fn to_snapshot(&self) -> Result<Vec<u8>, JsValue> {
        let state = self.sync.as_ref().ok_or_else(|| not_synced("toSnapshot"))?;
        Ok(state.to_bytes(&self.inner))
    }

    /// Applies a change batch (the server's binary frame) asked for with `since` = this
    /// cache's watermark. Throws `snapshot_required` when the batch is of another handle or
    /// starts after the watermark (nothing is changed then), `malformed` on a damaged frame or
    /// a bad record, `unsupported` when the batch reaches past sequence 2^53 - 1, `not_synced`
    /// on a plain cache.
    #[wasm_bindgen(js_name = applyChanges, unchecked_return_type = "ApplyReport")]
    pub fn apply_changes(&mut self, frame: &[u8]) -> Result<JsValue, JsValue> {
        let state = self
            .sync
            .as_mut()
            .ok_or_else(|| not_synced("applyChanges"))?;
        let batch = ChangeBatch::from_bytes(frame).map_err(js_error)?;
        // Refused before anything is applied: the watermark must stay readable.
        seq_to_js(batch.until)?;
        let report = state.apply(&mut self.inner, &batch).map_err(js_error)?;
        let out = Object::new();
        set(&out, "upserted", JsValue::from_f64(report.upserted as f64));
        set(&out, "deleted", JsValue::from_f64(report.deleted as f64));
        set(&out, "skipped", JsValue::from_f64(report.skipped as f64));
        set(
            &out,
            "watermark",
            JsValue::from_f64(seq_to_js(report.watermark)?),
        );
        set(&out, "hasMore", JsValue::from_bool(batch.has_more));
        Ok(out.into())
    }

    /// Every change up to this sequence is applied; `undefined` on a plain cache.
    #[wasm_bindgen(getter)]
    pub fn watermark(&self) -> Result<Option<f64>, JsValue> {
        self.sync
            .as_ref()
            .map(|s| seq_to_js(s.watermark))
            .transpose()
    }

    /// The handle of the collection followed (it changes when the collection is dropped and
    /// created again); `undefined` on a plain cache.
    #[wasm_bindgen(getter)]
    pub fn handle(&self) -> Option<String> {
        self.sync.as_ref().map(|s| s.handle.clone())
    }

    /// The name of the collection followed; `undefined` on a plain cache.
    #[wasm_bindgen(getter)]
    pub fn collection(&self) -> Option<String> {
        self.sync.as_ref().map(|s| s.collection.clone())
    }

    /// True when the cache holds the whole collection: the snapshot was complete, and nothing
    /// has been evicted or changed locally (`upsert`, `delete`, `clear`) since. False on a
    /// plain cache.
    #[wasm_bindgen(getter)]
    pub fn complete(&self) -> bool {
        self.sync.as_ref().is_some_and(|s| s.complete)
    }

    /// True when the cache follows a server collection (made by `fromSnapshot`).
    #[wasm_bindgen(getter)]
    pub fn synced(&self) -> bool {
        self.sync.is_some()
    }
}

impl VectorCache {
    /// A write made here, not by the feed: the cache no longer mirrors the collection.
    pub(crate) fn changed_locally(&mut self) {
        if let Some(state) = &mut self.sync {
            state.complete = false;
        }
    }
}
