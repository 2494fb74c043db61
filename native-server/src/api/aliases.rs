//! `/v1/aliases`: names that stand for a collection, switched atomically (the engine keeps
//! them durable and resolves them; every collection route accepts an alias).

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;

use super::errors::ApiError;
use super::routes::Call;
use super::types::{json, parse};
use super::AppState;

/// Body of `PUT /v1/aliases/{alias}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasRequest {
    pub collection: String,
}

/// One alias.
#[derive(Debug, Serialize)]
pub struct AliasItem {
    pub alias: String,
    pub collection: String,
}

/// Answer of `GET /v1/aliases`.
#[derive(Debug, Serialize)]
pub struct AliasList {
    pub aliases: Vec<AliasItem>,
}

/// Answer of `PUT /v1/aliases/{alias}`.
#[derive(Debug, Serialize)]
pub struct AliasSet {
    pub alias: String,
    pub collection: String,
    /// The collection it pointed to before (absent when the alias is new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// `GET /v1/aliases`.
pub fn list(s: &AppState, _: &Call) -> Result<Response, ApiError> {
    let aliases = s
        .engine_or_503()?
        .aliases()
        .into_iter()
        .map(|(alias, collection)| AliasItem { alias, collection })
        .collect();
    json(StatusCode::OK, &AliasList { aliases })
}

/// `GET /v1/aliases/{alias}`.
pub fn get(s: &AppState, c: &Call) -> Result<Response, ApiError> {
    let collection = s.engine_or_503()?.alias(c.name())?;
    json(
        StatusCode::OK,
        &AliasItem {
            alias: c.name().to_string(),
            collection,
        },
    )
}

/// `PUT /v1/aliases/{alias}`: creates the alias or switches it (one durable write).
pub fn put(s: &AppState, c: &Call) -> Result<Response, ApiError> {
    let req: AliasRequest = parse(&c.body)?;
    let previous = s.engine_or_503()?.set_alias(c.name(), &req.collection)?;
    tracing::info!(alias = c.name(), collection = %req.collection, previous = previous.as_deref().unwrap_or(""), "alias set");
    json(
        StatusCode::OK,
        &AliasSet {
            alias: c.name().to_string(),
            collection: req.collection,
            previous,
        },
    )
}

/// `DELETE /v1/aliases/{alias}`: the collection stays.
pub fn delete(s: &AppState, c: &Call) -> Result<Response, ApiError> {
    let collection = s.engine_or_503()?.delete_alias(c.name())?;
    tracing::info!(alias = c.name(), collection, "alias deleted");
    json(
        StatusCode::OK,
        &serde_json::json!({ "deleted": c.name(), "collection": collection }),
    )
}
