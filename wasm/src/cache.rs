//! `VectorCache`: the HNSW index of `proxima-core` for JavaScript.
//!
//! Hot paths take and return typed arrays (`Float32Array` rows in, plain `{id, score}`
//! objects out); option objects are read and result objects built by hand (no serde in the
//! module).

use std::cell::RefCell;

use js_sys::{Array, Float32Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use proxima_core::hnsw::{Filter, Hnsw, HnswConfig, Quantization, SearchOptions};
use proxima_core::sync::SyncState;
use proxima_core::{Error, Hit, Metric, VectorId};

use crate::errors::{coded, js_error};
use crate::ids::{id_from_js, id_to_js, ids_from_js, ids_to_js, number_text, MAX_SAFE_INTEGER};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** A vector id: a number (a safe integer) or a BigInt (any u64). */
export type Id = number | bigint;
/** Ids: an array of numbers or BigInts, or a BigUint64Array. */
export type Ids = Id[] | BigUint64Array;

export interface CacheOptions {
  dim: number;
  metric: "l2" | "ip" | "cosine";
  /** Links per node (default 16; level 0 keeps 2m). */
  m?: number;
  /** Beam width while inserting (default 100). */
  efConstruction?: number;
  /** Default beam width of searches (default 64). */
  ef?: number;
  /** Most vectors held; past it the least recently hit are evicted. */
  capacity?: number;
  /** Most bytes held (vectors, links, ids); past it the least recently hit are evicted. */
  capacityBytes?: number;
  /** "none" (f32, default) or "sq8" (8-bit codes: 4x less memory). */
  quantization?: "none" | "sq8";
  /** With sq8: keep the f32 rows too and re-rank candidates on them. */
  rerank?: boolean;
  /** Seed of the graph's level draws. */
  seed?: number;
}

export interface SearchOptions {
  /** Beam width (default: the cache's ef; never below k). */
  ef?: number;
  /** Only ids the predicate accepts, or only the listed ids. */
  filter?: ((id: Id) => boolean) | Ids;
}

export interface Hit {
  id: Id;
  /** Squared L2 distance (lower is better), inner product or cosine (higher is better). */
  score: number;
}

export interface UpsertReport {
  inserted: number;
  replaced: number;
  unchanged: number;
  /** Ids evicted to stay within capacity, least recently hit first. */
  evicted: Id[];
}

export interface CacheStats {
  vectors: number;
  dim: number;
  metric: "l2" | "ip" | "cosine";
  quantization: "none" | "sq8";
  capacity?: number;
  capacityBytes?: number;
  /** Bytes allocated for vectors, links, ids and buffers. */
  memoryBytes: number;
  tombstones: number;
  slots: number;
  maxLevel: number;
  searches: number;
  shortSearches: number;
  getHits: number;
  getMisses: number;
  hits: number;
  misses: number;
  inserts: number;
  deletes: number;
  evictions: number;
  consolidations: number;
}
"#;

const OPTION_NAMES: [&str; 10] = [
    "dim",
    "metric",
    "m",
    "efConstruction",
    "ef",
    "capacity",
    "capacityBytes",
    "quantization",
    "rerank",
    "seed",
];

/// Reads the constructor's options object by hand (not through serde): unknown keys are
/// refused, and number errors name the option and the range.
fn config_from_js(options: &JsValue) -> Result<HnswConfig, JsValue> {
    let Some(o) = options
        .dyn_ref::<Object>()
        .filter(|_| !options.is_function())
    else {
        return Err(coded(
            "invalid_parameter",
            "options must be an object such as {dim: 384, metric: \"cosine\"}",
        ));
    };
    for key in Object::keys(o).iter().filter_map(|k| k.as_string()) {
        if !OPTION_NAMES.contains(&key.as_str()) {
            return Err(js_error(Error::invalid(
                "options",
                key,
                format!("unknown option; known options: {}", OPTION_NAMES.join(", ")),
            )));
        }
    }
    let field = |name: &str| -> Result<Option<JsValue>, JsValue> {
        let v = Reflect::get(options, &JsValue::from_str(name))?;
        Ok((!v.is_undefined() && !v.is_null()).then_some(v))
    };
    let number = |name: &'static str, max: f64| -> Result<Option<f64>, JsValue> {
        match field(name)? {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(f) if f.fract() == 0.0 && (0.0..=max).contains(&f) => Ok(Some(f)),
                Some(f) => Err(js_error(Error::invalid(
                    name,
                    number_text(f),
                    "must be a whole number in range",
                ))),
                None => Err(js_error(Error::invalid(
                    name,
                    "(not a number)",
                    "must be a number",
                ))),
            },
        }
    };
    let string = |name: &'static str| -> Result<Option<String>, JsValue> {
        match field(name)? {
            None => Ok(None),
            Some(v) => v.as_string().map(Some).ok_or_else(|| {
                js_error(Error::invalid(name, "(not a string)", "must be a string"))
            }),
        }
    };
    let dim = number("dim", 1e9)?.ok_or_else(|| {
        js_error(Error::invalid(
            "dim",
            "(missing)",
            "the option dim is required",
        ))
    })?;
    let metric: Metric = string("metric")?
        .ok_or_else(|| {
            js_error(Error::invalid(
                "metric",
                "(missing)",
                "the option metric is required: l2, ip or cosine",
            ))
        })?
        .parse()
        .map_err(js_error)?;
    let mut cfg = HnswConfig::new(dim as usize, metric);
    let usize_max = 4e9;
    if let Some(m) = number("m", usize_max)? {
        cfg.m = m as usize;
    }
    if let Some(ef) = number("efConstruction", usize_max)? {
        cfg.ef_construction = ef as usize;
    }
    if let Some(ef) = number("ef", usize_max)? {
        cfg.ef_search = ef as usize;
    }
    cfg.capacity = number("capacity", usize_max)?.map(|c| c as usize);
    cfg.capacity_bytes = number("capacityBytes", MAX_SAFE_INTEGER as f64)?.map(|c| c as u64);
    if let Some(q) = string("quantization")? {
        cfg.quantization = Quantization::parse(&q).ok_or_else(|| {
            js_error(Error::invalid(
                "quantization",
                q,
                "expected \"none\" or \"sq8\"",
            ))
        })?;
    }
    if let Some(r) = field("rerank")? {
        cfg.rerank = r.as_bool().ok_or_else(|| {
            js_error(Error::invalid(
                "rerank",
                "(not a boolean)",
                "must be true or false",
            ))
        })?;
    }
    if let Some(seed) = number("seed", MAX_SAFE_INTEGER as f64)? {
        cfg.seed = seed as u64;
    }
    Ok(cfg)
}

/// A whole number in `1..=max` from a JS number (JS would otherwise wrap -1 or truncate 2.5).
fn count(name: &'static str, value: f64, max: usize) -> Result<usize, JsValue> {
    if value.fract() != 0.0 || value < 1.0 || value > max as f64 {
        let e = if name == "k" {
            Error::KOutOfRange {
                k: value.max(0.0) as usize,
                max,
            }
        } else {
            Error::invalid(
                name,
                number_text(value),
                format!("must be a whole number between 1 and {max}"),
            )
        };
        return Err(js_error(e));
    }
    Ok(value as usize)
}

/// An HNSW vector cache: insert, upsert, delete, k-NN search with filters, SQ8, LRU capacity,
/// and `toBytes`/`fromBytes` in the byte format the Proxima server ships as snapshots.
#[wasm_bindgen]
pub struct VectorCache {
    pub(crate) inner: Hnsw,
    /// The server collection this cache follows (see [`crate::sync`]); `None` for a plain cache.
    pub(crate) sync: Option<SyncState>,
}

#[wasm_bindgen]
impl VectorCache {
    /// A new, empty cache. Throws (`invalid_parameter`) on a bad or unknown option.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "CacheOptions")] options: JsValue,
    ) -> Result<VectorCache, JsValue> {
        let cfg = config_from_js(&options)?;
        Ok(VectorCache {
            inner: Hnsw::new(cfg).map_err(js_error)?,
            sync: None,
        })
    }

    /// Reads a cache written by `toBytes` (here or on the server). Throws `malformed` on
    /// corrupt, truncated or foreign bytes.
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: &[u8]) -> Result<VectorCache, JsValue> {
        Ok(VectorCache {
            inner: Hnsw::from_bytes(bytes).map_err(js_error)?,
            sync: None,
        })
    }

    /// The whole cache as bytes (versioned, CRC-checked, little-endian).
    #[wasm_bindgen(js_name = toBytes)]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.to_bytes()
    }

    /// Adds vectors or replaces those of known ids; `vectors` holds one row of `dim` floats
    /// per id. The batch is checked whole before anything changes.
    #[wasm_bindgen(unchecked_return_type = "UpsertReport")]
    pub fn upsert(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Ids")] ids: JsValue,
        vectors: &[f32],
    ) -> Result<JsValue, JsValue> {
        let ids = ids_from_js(&ids).map_err(js_error)?;
        let report = self.inner.upsert(&ids, vectors).map_err(js_error)?;
        if report.inserted + report.replaced > 0 || !report.evicted.is_empty() {
            self.changed_locally();
        }
        let out = Object::new();
        set(&out, "inserted", JsValue::from_f64(report.inserted as f64));
        set(&out, "replaced", JsValue::from_f64(report.replaced as f64));
        set(
            &out,
            "unchanged",
            JsValue::from_f64(report.unchanged as f64),
        );
        set(&out, "evicted", ids_to_js(&report.evicted).into());
        Ok(out.into())
    }

    /// Deletes ids; returns how many were held.
    pub fn delete(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Ids")] ids: JsValue,
    ) -> Result<u32, JsValue> {
        let ids = ids_from_js(&ids).map_err(js_error)?;
        let deleted = self.inner.delete(&ids);
        if deleted > 0 {
            self.changed_locally();
        }
        Ok(deleted as u32)
    }

    /// The `k` nearest vectors to `query`, best first.
    #[wasm_bindgen(unchecked_return_type = "Hit[]")]
    pub fn search(
        &self,
        query: &[f32],
        k: f64,
        #[wasm_bindgen(unchecked_param_type = "SearchOptions | undefined")] options: JsValue,
    ) -> Result<Array, JsValue> {
        if query.len() != self.inner.config().dim {
            return Err(js_error(Error::DimensionMismatch {
                expected: self.inner.config().dim,
                got: query.len(),
            }));
        }
        let mut rows = self.search_rows(query, k, &options)?;
        Ok(hits_to_js(&rows.pop().unwrap_or_default()))
    }

    /// `search` for each row of `queries` (rows concatenated).
    #[wasm_bindgen(js_name = searchBatch, unchecked_return_type = "Hit[][]")]
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: f64,
        #[wasm_bindgen(unchecked_param_type = "SearchOptions | undefined")] options: JsValue,
    ) -> Result<Array, JsValue> {
        let rows = self.search_rows(queries, k, &options)?;
        Ok(rows.iter().map(|r| JsValue::from(hits_to_js(r))).collect())
    }

    fn search_rows(
        &self,
        queries: &[f32],
        k: f64,
        options: &JsValue,
    ) -> Result<Vec<Vec<Hit>>, JsValue> {
        let k = count("k", k, proxima_core::hnsw::MAX_K)?;
        let mut ef = None;
        let mut filter_value = JsValue::UNDEFINED;
        if !options.is_undefined() && !options.is_null() {
            if !options.is_object() {
                return Err(coded(
                    "invalid_parameter",
                    "search options must be an object",
                ));
            }
            let ef_value = Reflect::get(options, &"ef".into())?;
            if !ef_value.is_undefined() && !ef_value.is_null() {
                let f = ef_value
                    .as_f64()
                    .ok_or_else(|| coded("invalid_parameter", "ef must be a number"))?;
                ef = Some(count("ef", f, proxima_core::hnsw::MAX_EF)?);
            }
            filter_value = Reflect::get(options, &"filter".into())?;
        }
        let thrown: RefCell<Option<JsValue>> = RefCell::new(None);
        let allow: Vec<VectorId>;
        let function: Option<&Function> = filter_value.dyn_ref::<Function>();
        let predicate = |id: VectorId| -> bool {
            if thrown.borrow().is_some() {
                return false;
            }
            let Some(f) = function else { return true };
            match f.call1(&JsValue::NULL, &id_to_js(id)) {
                Ok(v) => v.is_truthy(),
                Err(e) => {
                    *thrown.borrow_mut() = Some(e);
                    false
                }
            }
        };
        let filter = if filter_value.is_undefined() || filter_value.is_null() {
            None
        } else if function.is_some() {
            Some(Filter::Predicate(&predicate))
        } else {
            allow = ids_from_js(&filter_value).map_err(|e| {
                js_error(match e {
                    Error::InvalidParameter { value, reason, .. } => Error::InvalidParameter {
                        name: "filter",
                        value,
                        reason: format!(
                            "{reason}; a filter is a function (id) => boolean or a list of ids"
                        ),
                    },
                    other => other,
                })
            })?;
            Some(Filter::Allow(&allow))
        };
        let opts = SearchOptions { ef, filter };
        let rows = self
            .inner
            .search_batch(queries, k, &opts)
            .map_err(js_error)?;
        if let Some(e) = thrown.into_inner() {
            return Err(e);
        }
        Ok(rows)
    }

    /// The vector held for `id` (normalised for cosine; decoded for SQ8), or `undefined`.
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Id")] id: JsValue,
    ) -> Result<Option<Float32Array>, JsValue> {
        let id = id_from_js(&id).map_err(js_error)?;
        Ok(self.inner.get(id).map(|v| Float32Array::from(v.as_slice())))
    }

    /// True when `id` is held.
    pub fn has(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Id")] id: JsValue,
    ) -> Result<bool, JsValue> {
        let id = id_from_js(&id).map_err(js_error)?;
        Ok(self.inner.contains(id))
    }

    /// Every id held, in no particular order.
    #[wasm_bindgen(unchecked_return_type = "Id[]")]
    pub fn ids(&self) -> Array {
        let ids: Vec<VectorId> = self.inner.ids().collect();
        ids_to_js(&ids)
    }

    /// Vectors held.
    #[wasm_bindgen(getter)]
    pub fn len(&self) -> u32 {
        self.inner.len() as u32
    }

    /// True when no vector is held.
    #[wasm_bindgen(js_name = isEmpty)]
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Dimension of every vector.
    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> u32 {
        self.inner.config().dim as u32
    }

    /// "l2", "ip" or "cosine".
    #[wasm_bindgen(getter)]
    pub fn metric(&self) -> String {
        self.inner.config().metric.as_str().to_string()
    }

    /// Counters and sizes: vectors, memoryBytes (allocated), hits, misses, evictions…
    #[wasm_bindgen(unchecked_return_type = "CacheStats")]
    pub fn stats(&self) -> JsValue {
        let s = self.inner.stats();
        let out = Object::new();
        // The shape of `CacheStats`' serde JSON form (camelCase, a missing capacity as null),
        // built by hand in one loop: serde-wasm-bindgen cost about 3 KB gz of the module.
        let numbers: [(&str, Option<f64>); 18] = [
            ("vectors", Some(s.vectors as f64)),
            ("dim", Some(s.dim as f64)),
            ("capacity", s.capacity.map(|c| c as f64)),
            ("capacityBytes", s.capacity_bytes.map(|c| c as f64)),
            ("memoryBytes", Some(s.memory_bytes as f64)),
            ("tombstones", Some(s.tombstones as f64)),
            ("slots", Some(s.slots as f64)),
            ("maxLevel", Some(s.max_level as f64)),
            ("searches", Some(s.searches as f64)),
            ("shortSearches", Some(s.short_searches as f64)),
            ("getHits", Some(s.get_hits as f64)),
            ("getMisses", Some(s.get_misses as f64)),
            ("hits", Some(s.hits as f64)),
            ("misses", Some(s.misses as f64)),
            ("inserts", Some(s.inserts as f64)),
            ("deletes", Some(s.deletes as f64)),
            ("evictions", Some(s.evictions as f64)),
            ("consolidations", Some(s.consolidations as f64)),
        ];
        let put = |numbers: &[(&str, Option<f64>)]| {
            for &(key, value) in numbers {
                set(&out, key, value.map_or(JsValue::NULL, JsValue::from_f64));
            }
        };
        put(&numbers[..2]);
        set(&out, "metric", JsValue::from_str(s.metric.as_str()));
        set(
            &out,
            "quantization",
            JsValue::from_str(s.quantization.as_str()),
        );
        put(&numbers[2..]);
        out.into()
    }

    /// Re-links the graph around deleted vectors now and frees their slots (it also runs by
    /// itself once a fifth of the slots are deleted).
    pub fn consolidate(&mut self) {
        self.inner.consolidate();
    }

    /// Removes every vector (options and counters stay).
    pub fn clear(&mut self) {
        self.inner.clear();
        self.changed_locally();
    }
}

pub(crate) fn set(obj: &Object, key: &str, value: JsValue) {
    // Defining a property on a plain new object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value);
}

thread_local! {
    /// The keys of a hit object, made once: a new JS string per key and hit was most of a
    /// search's garbage, and the collections it caused were most of its p99.
    static HIT_KEYS: (JsValue, JsValue) = (JsValue::from_str("id"), JsValue::from_str("score"));
}

fn hits_to_js(hits: &[Hit]) -> Array {
    let out = Array::new_with_length(hits.len() as u32);
    HIT_KEYS.with(|(id_key, score_key)| {
        for (i, h) in hits.iter().enumerate() {
            let o = Object::new();
            // Defining properties on a plain new object cannot fail.
            let _ = Reflect::set(&o, id_key, &id_to_js(h.id));
            let _ = Reflect::set(&o, score_key, &JsValue::from_f64(f64::from(h.score)));
            out.set(i as u32, o.into());
        }
    });
    out
}
