//! Handlers: decode the body, call the library, encode the answer. Blocking code (run on
//! tokio's blocking pool by [`super::routes`]); no search logic here.

use std::time::Instant;

use proxima_core::advisor::{advise, AdviceRequest};
use proxima_core::sizing::plan as size;
use proxima_core::Error as CoreError;
use serde_json::json as j;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::ApiError;
use super::json_rows::parse_with_rows;
use super::routes::Call;
use super::types::{
    decode_binary, json, parse, CollectionItem, CollectionList, CreateCollection, DeleteRequest,
    Description, EmbedRequest, EmbedResponse, InsertRequest, PlanRequest, SearchRequest,
    SearchResponse, SpecBody, VectorResponse,
};
use super::{openapi, AppState};
use crate::embed::{EmbedError, MODEL_NAME};
use crate::engine::{Collection, CollectionSchema};

type Answer = Result<Response, ApiError>;

fn ok<T: serde::Serialize>(value: &T) -> Answer {
    json(StatusCode::OK, value)
}

/// The collection the `{name}` parameter names, directly or through an alias.
fn collection(s: &AppState, c: &Call) -> Result<std::sync::Arc<Collection>, ApiError> {
    Ok(s.engine_or_503()?.collection(c.name())?)
}

pub fn health(_: &AppState, _: &Call) -> Answer {
    ok(&j!({"status": "ok"}))
}

pub fn ready(s: &AppState, _: &Call) -> Answer {
    s.engine_or_503()?;
    ok(&j!({"status": "ready"}))
}

pub fn metrics(s: &AppState, _: &Call) -> Answer {
    let text = s
        .metrics
        .render(s.engine().as_deref())
        .map_err(|e| ApiError::internal(format!("encoding metrics: {e}")))?;
    let mut r = Response::new(text.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

pub fn version(_: &AppState, _: &Call) -> Answer {
    ok(&j!({
        "version": env!("CARGO_PKG_VERSION"),
        "faiss": crate::index::faiss_backend::FAISS_VERSION,
    }))
}

pub fn openapi(_: &AppState, _: &Call) -> Answer {
    ok(&openapi::document())
}

pub fn plan(_: &AppState, c: &Call) -> Answer {
    let req: PlanRequest = parse(&c.body)?;
    // A request with parameters left out is sized as a collection of `vectors` would build
    // it (IVF `nlist` for that many rows, `AUTO`'s pick for that size).
    let plan = req
        .index
        .map(|SpecBody(index)| {
            index.validate(req.dim)?;
            let choice = index.choose(req.dim, req.vectors, req.vectors, |_| true)?;
            size(req.vectors, req.dim, choice.spec)
        })
        .transpose()?;
    let advice = advise(AdviceRequest {
        vectors: req.vectors,
        dim: req.dim,
        ram_budget: req.ram_bytes,
        recall_target: req.recall,
    })?;
    ok(&j!({"plan": plan, "advice": advice}))
}

pub fn embed(s: &AppState, c: &Call) -> Answer {
    let req: EmbedRequest = parse(&c.body)?;
    let embedder = s.embedder_or_503()?;
    if req.texts.is_empty() {
        return Err(CoreError::EmptyBatch { what: "text" }.into());
    }
    if req.texts.len() > s.max_embed_texts {
        return Err(CoreError::invalid(
            "texts",
            req.texts.len(),
            format!("at most {} texts per request", s.max_embed_texts),
        )
        .into());
    }
    let vectors = embedder.embed(&req.texts).map_err(|e| match e {
        EmbedError::Tokenizer { reason } => ApiError::bad_request("invalid_text", reason),
        other => ApiError::internal(other.to_string()),
    })?;
    ok(&EmbedResponse {
        model: MODEL_NAME,
        dim: embedder.dim(),
        vectors,
    })
}

pub fn list(s: &AppState, _: &Call) -> Answer {
    let engine = s.engine_or_503()?;
    let collections = engine
        .list()
        .into_iter()
        .filter_map(|name| engine.collection(&name).ok())
        .map(|c| CollectionItem::new(&c.schema(), c.count()))
        .collect();
    ok(&CollectionList { collections })
}

pub fn create(s: &AppState, c: &Call) -> Answer {
    let engine = s.engine_or_503()?;
    let req: CreateCollection = parse(&c.body)?;
    let created = engine.create_collection(CollectionSchema {
        name: c.name().to_string(),
        dim: req.dim,
        metric: req.metric,
        index: req.index.0,
        num_shards: req.shards,
        auto_id: req.auto_id,
    })?;
    tracing::info!(collection = c.name(), dim = req.dim, "collection created");
    json(
        StatusCode::CREATED,
        &Description::new(created.describe(), None),
    )
}

pub fn describe(s: &AppState, c: &Call) -> Answer {
    let col = collection(s, c)?;
    let info = col.describe();
    let sync = super::sync::feed_position(&col);
    ok(&Description::new(info, Some(sync)))
}

pub fn drop(s: &AppState, c: &Call) -> Answer {
    s.engine_or_503()?.drop_collection(c.name())?;
    s.metrics.forget(c.name());
    tracing::info!(collection = c.name(), "collection dropped");
    ok(&j!({ "dropped": c.name() }))
}

fn is_binary(c: &Call) -> bool {
    c.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/octet-stream"))
}

pub fn insert(s: &AppState, c: &Call) -> Answer {
    let col = collection(s, c)?;
    let dim = col.schema().dim;
    let (vectors, ids) = if is_binary(c) {
        let batch = decode_binary(&c.body)?;
        if batch.dim != dim {
            return Err(CoreError::DimensionMismatch {
                expected: dim,
                got: batch.dim,
            }
            .into());
        }
        (batch.vectors, batch.ids)
    } else {
        let req: InsertRequest = parse_with_rows(&c.body)?;
        (req.vectors.into_flat(dim)?, req.ids)
    };
    let ack = col.insert(&vectors, ids.as_deref())?;
    s.metrics.inserted(&col.name(), ack.ids.len());
    ok(&ack)
}

pub fn get_vector(s: &AppState, c: &Call) -> Answer {
    let raw = c.params.get(1).map_or("", String::as_str);
    let id: u64 = raw
        .parse()
        .map_err(|_| CoreError::invalid("id", raw, "must be an unsigned 64-bit integer"))?;
    let vector = collection(s, c)?.get(id)?;
    ok(&VectorResponse { id, vector })
}

pub fn delete(s: &AppState, c: &Call) -> Answer {
    let col = collection(s, c)?;
    let req: DeleteRequest = parse(&c.body)?;
    let ack = col.delete(&req.ids)?;
    s.metrics.deleted(&col.name(), ack.deleted);
    ok(&ack)
}

pub fn search(s: &AppState, c: &Call) -> Answer {
    let col = collection(s, c)?;
    let req: SearchRequest = if is_binary(c) {
        SearchRequest::from_binary(&c.body, &c.query)?
    } else {
        parse_with_rows(&c.body)?
    };
    let started = Instant::now();
    let (params, nq) = (req.search_params(), req.vectors.rows);
    let queries = req.vectors.into_flat(col.schema().dim)?;
    let result = col.search_until(
        &queries,
        &params,
        req.consistency,
        req.session_seq,
        &c.cancel,
    )?;
    s.metrics.searched(&col.name(), nq);
    ok(&SearchResponse {
        results: result.hits,
        seq: result.seq,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

pub fn rebuild(s: &AppState, c: &Call) -> Answer {
    let col = collection(s, c)?;
    let SpecBody(spec) = parse::<SpecBody>(&c.body)?;
    let generation = col.rebuild_index(spec)?;
    tracing::info!(
        collection = %col.name(),
        generation,
        ?spec,
        "index build queued"
    );
    json(
        StatusCode::ACCEPTED,
        &j!({ "job": generation, "index": col.index_status() }),
    )
}

pub fn index_status(s: &AppState, c: &Call) -> Answer {
    ok(&collection(s, c)?.index_status())
}

pub fn flush(s: &AppState, c: &Call) -> Answer {
    let col = collection(s, c)?;
    col.flush()?;
    ok(&j!({ "flushed": true, "applied_seq": col.applied_seq() }))
}

pub fn compact(s: &AppState, c: &Call) -> Answer {
    let col = collection(s, c)?;
    col.compact()?;
    ok(&j!({ "compacted": true, "applied_seq": col.applied_seq() }))
}
