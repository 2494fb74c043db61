//! Request and response shapes, and the binary bulk-insert body.

use proxima_core::consistency::Seq;
use proxima_core::formats::{decode_rows, FbinRows};
use proxima_core::{
    ConsistencyLevel, Error as CoreError, Hit, IndexRequest, IndexType, Metric, SearchParams,
};
use serde::{Deserialize, Serialize};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::ApiError;
use crate::engine::{
    CollectionInfo, CollectionSchema, IndexStatus, MemoryInfo, MergeStats, SegmentInfo,
};

/// A JSON response from already-serialised bytes.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("serialising the response: {e}")))?;
    Ok(json_bytes(status, body))
}

/// Parses a JSON body.
pub fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "malformed_json",
            "empty body: a JSON object is expected",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))
}

/// A JSON array of rows parsed straight into one row-major buffer, without a vector per row.
/// A row is an array of numbers, or a string holding the row's little-endian `f32` values in
/// standard base64 (OpenAI's `encoding_format: "base64"` embeddings are already in this form):
/// the string is a third of the size of the numbers' text and decodes about 20 times faster.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rows {
    pub data: Vec<f32>,
    /// Length of every row, kept only while all rows are as long as the first.
    width: Option<usize>,
    /// The first row whose length differs from the first row's: (row, length).
    ragged: Option<(usize, usize)>,
    pub rows: usize,
}

impl Rows {
    /// Rows from a row-major buffer already known to be `rows × dim`.
    pub fn from_flat(data: Vec<f32>, rows: usize, dim: usize) -> Self {
        Self {
            data,
            width: (rows > 0).then_some(dim),
            ragged: None,
            rows,
        }
    }

    /// Rows from a row-major buffer and the length of each row, in order.
    pub(crate) fn from_row_lengths(data: Vec<f32>, lengths: &[usize]) -> Self {
        let mut rows = Rows {
            data,
            ..Rows::default()
        };
        lengths.iter().for_each(|&len| rows.push_length(len));
        rows
    }

    /// Counts one more row of `len` values (already in `data`).
    fn push_length(&mut self, len: usize) {
        match self.width {
            None => self.width = Some(len),
            Some(w) if w != len && self.ragged.is_none() => self.ragged = Some((self.rows, len)),
            _ => {}
        }
        self.rows += 1;
    }

    /// The row-major buffer, once every row is checked against `dim`.
    pub fn into_flat(self, dim: usize) -> Result<Vec<f32>, ApiError> {
        let bad = match (self.ragged, self.width) {
            (Some((_, got)), Some(w)) if w == dim => Some(got),
            (_, Some(w)) if w != dim => Some(w),
            _ => None,
        };
        match bad {
            Some(got) => Err(CoreError::DimensionMismatch { expected: dim, got }.into()),
            None => Ok(self.data),
        }
    }
}

/// One row in the base64 form [`Rows`] accepts: its little-endian `f32` values, base64.
pub fn base64_row(row: &[f32]) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = row.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

struct RowSeed<'a>(&'a mut Vec<f32>);

impl<'de> serde::de::DeserializeSeed<'de> for RowSeed<'_> {
    type Value = usize;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowSeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of numbers or a base64 string of little-endian f32 values")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<usize, E> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| E::custom(format_args!("a vector's base64 string is invalid: {e}")))?;
        if bytes.len() % 4 != 0 {
            return Err(E::custom(format_args!(
                "a vector's base64 string decodes to {} bytes, not a whole number of 4-byte f32 values",
                bytes.len()
            )));
        }
        self.0.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        Ok(bytes.len() / 4)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(x) = seq.next_element::<f32>()? {
            self.0.push(x);
            n += 1;
        }
        Ok(n)
    }
}

impl<'de> Deserialize<'de> for Rows {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Rows;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of arrays of numbers")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
                let mut rows = Rows::default();
                while let Some(len) = seq.next_element_seed(RowSeed(&mut rows.data))? {
                    rows.push_length(len);
                }
                Ok(rows)
            }
        }
        d.deserialize_seq(V)
    }
}

/// An index as requests give it: `{type, params}`, where `params` may be missing, `null`,
/// `{}` or partial (the rest take their defaults), and `type` may be `AUTO` (see
/// [`IndexRequest`]).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct SpecBody(pub IndexRequest);

fn flat_spec() -> SpecBody {
    SpecBody(IndexRequest::new(IndexType::Flat))
}

fn one() -> usize {
    1
}

/// Body of `PUT /v1/collections/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    pub dim: usize,
    pub metric: Metric,
    #[serde(default = "flat_spec")]
    pub index: SpecBody,
    #[serde(default = "one")]
    pub shards: usize,
    #[serde(default)]
    pub auto_id: bool,
}

/// Body of `POST /v1/collections/{name}/vectors` (JSON form).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsertRequest {
    pub vectors: Rows,
    pub ids: Option<Vec<u64>>,
}

/// Body of `POST /v1/collections/{name}/delete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    pub ids: Vec<u64>,
}

/// Index knobs of a search.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knobs {
    pub nprobe: Option<usize>,
    pub ef: Option<usize>,
    pub search_list: Option<usize>,
    /// Re-ranking of compressed indexes (IVF_SQ8, IVF_PQ, HNSW_SQ8): `k × refine_factor`
    /// candidates re-scored exactly; 1 turns it off.
    pub refine_factor: Option<usize>,
}

fn ten() -> usize {
    10
}

/// Body of `POST /v1/collections/{name}/search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub vectors: Rows,
    #[serde(default = "ten")]
    pub k: usize,
    #[serde(default)]
    pub params: Knobs,
    #[serde(default)]
    pub consistency: ConsistencyLevel,
    pub session_seq: Option<Seq>,
}

impl super::json_rows::WithRows for InsertRequest {
    fn set_rows(&mut self, rows: Rows) {
        self.vectors = rows;
    }
}

impl super::json_rows::WithRows for SearchRequest {
    fn set_rows(&mut self, rows: Rows) {
        self.vectors = rows;
    }
}

impl SearchRequest {
    /// The binary form: query vectors in the body (as [`decode_binary`], without ids), the
    /// rest in the query string: `k`, `nprobe`, `ef`, `search_list`, `refine_factor`,
    /// `consistency`, `session_seq`.
    pub fn from_binary(body: &[u8], query: &[(String, String)]) -> Result<Self, ApiError> {
        let batch = decode_binary(body)?;
        if batch.ids.is_some() {
            return Err(ApiError::bad_request(
                "malformed_binary",
                "a binary search body holds query vectors only, no ids",
            ));
        }
        let mut req = SearchRequest {
            vectors: Rows::from_flat(batch.vectors, batch.rows, batch.dim),
            k: ten(),
            params: Knobs::default(),
            consistency: ConsistencyLevel::default(),
            session_seq: None,
        };
        for (key, value) in query {
            let number = |name: &'static str| {
                value.parse::<u64>().map_err(|_| {
                    ApiError::from(CoreError::invalid(
                        name,
                        value,
                        "must be an unsigned integer",
                    ))
                })
            };
            match key.as_str() {
                "k" => req.k = number("k")? as usize,
                "nprobe" => req.params.nprobe = Some(number("nprobe")? as usize),
                "ef" => req.params.ef = Some(number("ef")? as usize),
                "search_list" => req.params.search_list = Some(number("search_list")? as usize),
                "refine_factor" => {
                    req.params.refine_factor = Some(number("refine_factor")? as usize)
                }
                "session_seq" => req.session_seq = Some(number("session_seq")?),
                "consistency" => req.consistency = value.parse().map_err(ApiError::from)?,
                _ => {
                    return Err(CoreError::invalid(
                        "query",
                        key,
                        "unknown parameter: expected k, nprobe, ef, search_list, refine_factor, consistency or session_seq",
                    )
                    .into())
                }
            }
        }
        Ok(req)
    }

    pub fn search_params(&self) -> SearchParams {
        SearchParams {
            k: self.k,
            nprobe: self.params.nprobe,
            ef: self.params.ef,
            search_list: self.params.search_list,
            refine_factor: self.params.refine_factor,
        }
    }
}

/// Answer of a search.
#[derive(Debug, Serialize)]
pub struct SearchResponse {
    pub results: Vec<Vec<Hit>>,
    pub seq: Seq,
    pub took_ms: f64,
}

/// A collection's definition as the API shows it: `schema` in a description. Built from the
/// engine's [`CollectionSchema`] (which is also what the manifest stores), so the stored
/// form can change without changing the wire.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaView {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
    /// The index as requested, with the defaults that depend only on `dim` filled in.
    pub index: IndexRequest,
    pub num_shards: usize,
    pub auto_id: bool,
}

impl From<&CollectionSchema> for SchemaView {
    fn from(s: &CollectionSchema) -> Self {
        Self {
            name: s.name.clone(),
            dim: s.dim,
            metric: s.metric,
            index: s.index,
            num_shards: s.num_shards,
            auto_id: s.auto_id,
        }
    }
}

/// One entry of `GET /v1/collections`: the schema's fields and the count.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionItem {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
    pub index: IndexRequest,
    /// The same name as in a description's `schema`.
    pub num_shards: usize,
    /// `num_shards` under the name this list used first, kept for older clients.
    pub shards: usize,
    pub auto_id: bool,
    pub count: u64,
}

impl CollectionItem {
    pub fn new(schema: &CollectionSchema, count: u64) -> Self {
        Self {
            name: schema.name.clone(),
            dim: schema.dim,
            metric: schema.metric,
            index: schema.index,
            num_shards: schema.num_shards,
            shards: schema.num_shards,
            auto_id: schema.auto_id,
            count,
        }
    }
}

/// Answer of `GET /v1/collections`.
#[derive(Debug, Serialize)]
pub struct CollectionList {
    pub collections: Vec<CollectionItem>,
}

/// Answer of `GET /v1/collections/{name}` and of a create: the engine's
/// [`CollectionInfo`] with the schema as [`SchemaView`], and (describe only) the change
/// feed's position.
#[derive(Debug, Serialize)]
pub struct Description {
    pub schema: SchemaView,
    pub count: u64,
    pub committed_seq: Seq,
    pub applied_seq: Seq,
    pub checkpoint_seq: Seq,
    pub index: IndexStatus,
    pub segments: Vec<SegmentInfo>,
    pub memory: MemoryInfo,
    pub wal_bytes: u64,
    pub merges: MergeStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<serde_json::Value>,
}

impl Description {
    pub fn new(info: CollectionInfo, sync: Option<serde_json::Value>) -> Self {
        Self {
            schema: SchemaView::from(&info.schema),
            count: info.count,
            committed_seq: info.committed_seq,
            applied_seq: info.applied_seq,
            checkpoint_seq: info.checkpoint_seq,
            index: info.index,
            segments: info.segments,
            memory: info.memory,
            wal_bytes: info.wal_bytes,
            merges: info.merges,
            sync,
        }
    }
}

/// Answer of `GET /v1/collections/{name}/vectors/{id}` (floats written as `f32`, so they
/// read back exactly).
#[derive(Debug, Serialize)]
pub struct VectorResponse {
    pub id: u64,
    pub vector: Vec<f32>,
}

/// Answer of `POST /v1/embed`.
#[derive(Debug, Serialize)]
pub struct EmbedResponse {
    pub model: &'static str,
    pub dim: usize,
    pub vectors: Vec<Vec<f32>>,
}

/// Body of `POST /v1/embed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    pub texts: Vec<String>,
}

/// Body of `POST /v1/plan`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub vectors: u64,
    pub dim: usize,
    /// Index to size; when absent only the advice is returned.
    pub index: Option<SpecBody>,
    pub ram_bytes: Option<u64>,
    #[serde(default = "default_recall")]
    pub recall: f64,
}

fn default_recall() -> f64 {
    0.95
}

/// Decodes the binary rows body of inserts and searches: `u32 rows`, `u32 dim` (little-endian,
/// the `.fbin` header), `rows × dim` little-endian `f32`, then optionally `rows` little-endian
/// `u64` ids. Whether ids are present follows from the length (a `.fbin` file is a valid body;
/// so is a `.fbin` file followed by an `ids.u64` file). The codec is
/// [`proxima_core::formats::fbin`]; its errors answer 400 `malformed_binary`.
pub fn decode_binary(body: &[u8]) -> Result<FbinRows, ApiError> {
    decode_rows(body).map_err(|e| ApiError::bad_request("malformed_binary", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxima_core::formats::encode_rows;

    #[test]
    fn index_specs_parse_with_missing_empty_or_partial_params() {
        use proxima_core::IndexSpec;
        let spec = |j: &str| parse::<SpecBody>(j.as_bytes()).map(|s| s.0);
        for (json, kind) in [
            (r#"{"type": "FLAT"}"#, IndexType::Flat),
            (r#"{"type": "FLAT", "params": {}}"#, IndexType::Flat),
            (r#"{"type": "FLAT", "params": null}"#, IndexType::Flat),
            (r#"{"type": "HNSW"}"#, IndexType::Hnsw),
            (r#"{"type": "HNSW", "params": {}}"#, IndexType::Hnsw),
            (r#"{"type": "IVF_FLAT", "params": {}}"#, IndexType::IvfFlat),
            (r#"{"type": "AUTO"}"#, IndexType::Auto),
        ] {
            assert_eq!(spec(json).unwrap(), IndexRequest::new(kind), "{json}");
        }
        assert_eq!(
            spec(r#"{"type": "IVF_FLAT", "params": {"nlist": 8}}"#).unwrap(),
            IndexSpec::IvfFlat { nlist: 8 }.into()
        );
        let auto = spec(r#"{"type": "AUTO", "params": {"recall": 0.9, "ram_bytes": 1000000}}"#)
            .unwrap()
            .auto_target()
            .unwrap();
        assert_eq!((auto.recall, auto.ram_bytes), (0.9, Some(1_000_000)));
        for bad in [
            r#"{"type": "FLAT", "params": {"nlist": 8}}"#,
            r#"{"type": "HNSW", "params": {"nlist": 8}}"#,
            r#"{"type": "AUTO", "params": {"m": 8}}"#,
            r#"{"type": "IVF"}"#,
        ] {
            assert_eq!(spec(bad).unwrap_err().code, "invalid_body", "{bad}");
        }
        let create: CreateCollection =
            parse(br#"{"dim": 4, "metric": "l2", "index": {"type": "FLAT", "params": {}}}"#)
                .unwrap();
        assert_eq!(create.index, flat_spec());
    }

    #[test]
    fn binary_round_trip_with_and_without_ids() {
        let v = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = decode_binary(&encode_rows(3, &v, None)).unwrap();
        assert_eq!((b.dim, b.vectors.as_slice(), b.ids), (3, &v[..], None));
        let b = decode_binary(&encode_rows(3, &v, Some(&[7, 9]))).unwrap();
        assert_eq!(b.ids, Some(vec![7, 9]));
        let mut truncated = encode_rows(3, &v, None);
        truncated.pop();
        let err = decode_binary(&truncated).unwrap_err();
        assert_eq!(err.code, "malformed_binary");
        assert_eq!(
            err.message,
            "2 rows × 3 dims need 24 bytes of f32 (or 40 with u64 ids) after the 8-byte header: got 23"
        );
        assert_eq!(
            decode_binary(&[1, 0, 0]).unwrap_err().message,
            "a binary body starts with u32 rows and u32 dim: got 3 bytes"
        );
        assert!(decode_binary(&[1, 0, 0]).is_err());
        // A header claiming an absurd size is rejected without allocating.
        let mut huge = vec![0xff; 8];
        huge.extend_from_slice(&[0; 16]);
        assert!(decode_binary(&huge).is_err());
        // rows × dim × 4 fits, but adding the ids' bytes would overflow.
        let edge = decode_binary(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]);
        assert_eq!(edge.unwrap_err().code, "malformed_binary");
    }

    #[test]
    fn rows_parse_flat_and_check_every_row() {
        let parse = |j: &str| serde_json::from_str::<Rows>(j).unwrap();
        assert_eq!(
            parse("[[1, 2], [3, 4]]").into_flat(2).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        let ragged = parse("[[1, 2], [3]]");
        assert_eq!(ragged.rows, 2);
        let e = ragged.into_flat(2).unwrap_err();
        assert_eq!(
            (&*e.code, e.message.as_str()),
            (
                "dimension_mismatch",
                "dimension mismatch: expected 2 values, got 1"
            )
        );
        assert_eq!(
            parse("[[1, 2, 3]]").into_flat(2).unwrap_err().code,
            "dimension_mismatch"
        );
        assert!(parse("[[1, 2], [3, 4, 5]]").into_flat(3).is_err());
        assert_eq!(parse("[]").into_flat(5).unwrap(), Vec::<f32>::new());
        assert!(serde_json::from_str::<Rows>("[1, 2]").is_err());
        assert!(serde_json::from_str::<Rows>(r#"[["1"]]"#).is_err());
    }

    #[test]
    fn rows_accept_base64_strings_and_mixed_forms() {
        let parse = |s: &str| serde_json::from_str::<Rows>(s);
        // 1.0f32 is 00 00 80 3f, little-endian.
        assert_eq!(base64_row(&[1.0]), "AACAPw==");
        let (a, b) = (base64_row(&[1.5, -2.0]), base64_row(&[0.25, 1e-30]));
        let rows = parse(&format!(r#"["{a}", [3, 4], "{b}"]"#)).unwrap();
        assert_eq!(rows.rows, 3);
        assert_eq!(
            rows.into_flat(2).unwrap(),
            vec![1.5, -2.0, 3.0, 4.0, 0.25, 1e-30]
        );
        // The row's length is its number of f32 values.
        let e = parse(&format!(r#"["{a}", "{}"]"#, base64_row(&[1.0])))
            .unwrap()
            .into_flat(2)
            .unwrap_err();
        assert_eq!(e.code, "dimension_mismatch");
        // Not base64, or not whole f32 values: a clear data error.
        for bad in [r#"["@@@"]"#, r#"["AAA="]"#, "[true]", "[1.0]"] {
            let e = ApiError::from_json(&parse(bad).unwrap_err());
            assert_eq!(e.code, "invalid_body", "{bad}: {}", e.message);
        }
        let e = ApiError::from_json(&parse(r#"["AAA="]"#).unwrap_err());
        assert!(e.message.contains("2 bytes"), "{}", e.message);
    }

    proptest::proptest! {
        /// Rows sent as numbers and as base64 strings arrive as the same bits.
        #[test]
        fn numbers_and_base64_rows_parse_alike(
            rows in proptest::collection::vec(
                proptest::collection::vec(proptest::num::f32::NORMAL | proptest::num::f32::ZERO, 3),
                0..6,
            )
        ) {
            let numbers = serde_json::to_string(&rows).unwrap();
            let strings: Vec<String> = rows.iter().map(|r| base64_row(r)).collect();
            let strings = serde_json::to_string(&strings).unwrap();
            let flat: Vec<u32> = rows.iter().flatten().map(|x| x.to_bits()).collect();
            for text in [numbers, strings] {
                let parsed = serde_json::from_str::<Rows>(&text).unwrap().into_flat(3).unwrap();
                proptest::prop_assert_eq!(parsed.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), flat.clone());
            }
        }
    }

    #[test]
    fn binary_search_takes_its_parameters_from_the_query_string() {
        let body = encode_rows(2, &[1.0, 2.0, 3.0, 4.0], None);
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let r = SearchRequest::from_binary(
            &body,
            &q(&[("k", "3"), ("nprobe", "8"), ("consistency", "strong")]),
        )
        .unwrap();
        assert_eq!(
            (r.k, r.params.nprobe, r.consistency, r.vectors.rows),
            (3, Some(8), ConsistencyLevel::Strong, 2)
        );
        assert_eq!(r.vectors.into_flat(2).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            SearchRequest::from_binary(&body, &q(&[("k", "-1")]))
                .unwrap_err()
                .code,
            "invalid_parameter"
        );
        assert_eq!(
            SearchRequest::from_binary(&body, &q(&[("kk", "1")]))
                .unwrap_err()
                .code,
            "invalid_parameter"
        );
        assert_eq!(
            SearchRequest::from_binary(&body, &q(&[("consistency", "maybe")]))
                .unwrap_err()
                .code,
            "invalid_parameter"
        );
        let with_ids = encode_rows(2, &[1.0, 2.0], Some(&[5]));
        assert_eq!(
            SearchRequest::from_binary(&with_ids, &[]).unwrap_err().code,
            "malformed_binary"
        );
    }

    #[test]
    fn search_defaults() {
        let r: SearchRequest = serde_json::from_str(r#"{"vectors": [[1.0]]}"#).unwrap();
        assert_eq!((r.k, r.consistency), (10, ConsistencyLevel::Bounded));
        assert!(serde_json::from_str::<SearchRequest>(r#"{"vectors": [], "kk": 1}"#).is_err());
    }
}
