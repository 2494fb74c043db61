//! The demo's endpoints: its status, and its documents (read, add, delete).

use std::sync::Arc;

use proxima_core::Error as CoreError;
use serde::Deserialize;
use serde_json::json as j;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::ApiError;
use super::routes::Call;
use super::types::{json, parse};
use super::AppState;
use crate::demo::{Demo, COLLECTION};

type Answer = Result<Response, ApiError>;

fn demo(s: &AppState) -> Result<Arc<Demo>, ApiError> {
    s.demo().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "demo_off",
            "the demo is off on this server (start it with --demo, or on an empty data directory)",
        )
    })
}

/// True when the client takes gzip.
pub fn accepts_gzip(c: &Call) -> bool {
    c.headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")))
}

/// `GET /v1/demo`.
pub fn status(s: &AppState, _: &Call) -> Answer {
    let pending = s.demo_pending.load(std::sync::atomic::Ordering::SeqCst);
    let status = match s.demo() {
        Some(d) => d.status(),
        None if pending => Demo::waiting(),
        None => Demo::off(),
    };
    json(StatusCode::OK, &status)
}

fn parse_ids(v: &str) -> Result<Vec<u64>, ApiError> {
    v.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("ids must be comma-separated non-negative integers, not {p:?}"),
                )
            })
        })
        .collect()
}

/// `GET /v1/demo/docs` (all, gzip-compressed when the client takes it) or `?ids=1,2,3`.
pub fn docs(s: &AppState, c: &Call) -> Answer {
    let demo = demo(s)?;
    let mut ids = None;
    for (k, v) in &c.query {
        match k.as_str() {
            "ids" => ids = Some(parse_ids(v)?),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("unknown query parameter {k:?} (ids)"),
                ))
            }
        }
    }
    if let Some(ids) = ids {
        if ids.len() > 10_000 {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("{} ids: at most 10000 per request", ids.len()),
            ));
        }
        return json(
            StatusCode::OK,
            &j!({ "docs": demo.docs().rows(Some(&ids)) }),
        );
    }
    if accepts_gzip(c) {
        let gz = demo
            .docs()
            .all_gzip()
            .map_err(|e| ApiError::internal(format!("compressing the documents: {e}")))?;
        let mut r = Response::new(gz.as_ref().clone().into());
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return Ok(r);
    }
    json(StatusCode::OK, &j!({ "docs": demo.docs().rows(None) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDoc {
    name: String,
    #[serde(default)]
    description: String,
}

/// `POST /v1/demo/docs` `{name, description}`: embedded and inserted; the id is new.
pub fn add(s: &AppState, c: &Call) -> Answer {
    let demo = demo(s)?;
    let doc: NewDoc = parse(&c.body)?;
    let name = doc.name.trim();
    let description = doc.description.trim();
    if name.is_empty() || name.len() > 200 || description.len() > 2000 || name.contains(": ") {
        return Err(CoreError::invalid(
            "name",
            name,
            "a name of 1 to 200 characters without \": \", and a description of at most 2000",
        )
        .into());
    }
    let text = if description.is_empty() {
        name.to_string()
    } else {
        format!("{name}: {description}")
    };
    let embedder = s.embedder_or_503()?;
    let vector = embedder
        .embed_flat(&[text.as_str()])
        .map_err(|e| ApiError::internal(format!("embedding: {e}")))?;
    let col = s.engine_or_503()?.collection(COLLECTION)?;
    let id = demo.docs().next_added_id();
    demo.docs()
        .put(&[(id, text)])
        .map_err(|e| ApiError::internal(format!("storing the document: {e}")))?;
    let ack = col.insert(&vector, Some(&[id]))?;
    json(StatusCode::CREATED, &j!({"id": id, "seq": ack.seq}))
}

/// `DELETE /v1/demo/docs/{id}`.
pub fn delete(s: &AppState, c: &Call) -> Answer {
    let demo = demo(s)?;
    let raw = c.params.first().map_or("", String::as_str);
    let id: u64 = raw.parse().map_err(|_| {
        ApiError::bad_request("invalid_id", format!("{raw:?} is not a document id"))
    })?;
    let col = s.engine_or_503()?.collection(COLLECTION)?;
    let ack = col.delete(&[id])?;
    let existed = demo
        .docs()
        .delete(id)
        .map_err(|e| ApiError::internal(format!("deleting the document: {e}")))?;
    if !existed && ack.deleted == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "id_not_found",
            format!("document {id} does not exist"),
        ));
    }
    json(
        StatusCode::OK,
        &j!({"deleted": true, "id": id, "seq": ack.seq}),
    )
}
