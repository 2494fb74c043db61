//! The OpenAPI 3 document: paths generated from the route table, schemas written by hand.

use serde_json::{json, Map, Value};

use super::auth::Access;
use super::routes::ROUTES;

fn schemas() -> Value {
    let vectors = json!({
        "type": "array",
        "description": "One row per vector: an array of numbers, or a string holding the row's little-endian f32 values in standard base64.",
        "items": {"oneOf": [
            {"type": "array", "items": {"type": "number", "format": "float"}},
            {"type": "string", "format": "byte"}
        ]}
    });
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "example": "dimension_mismatch"},
                "message": {"type": "string", "example": "dimension mismatch: expected 384 values, got 383"}
            }}}
        },
        "Metric": {"type": "string", "enum": ["l2", "ip", "cosine"]},
        "IndexSpec": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "enum": ["FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "HNSW_SQ8", "DISKANN"]},
                "params": {"type": "object", "description": "nlist (IVF_*), m and nbits (IVF_PQ), m and ef_construction (HNSW*)", "additionalProperties": {"type": "integer"}}
            },
            "example": {"type": "IVF_FLAT", "params": {"nlist": 1024}}
        },
        "CreateCollection": {
            "type": "object",
            "required": ["dim", "metric"],
            "properties": {
                "dim": {"type": "integer", "minimum": 1},
                "metric": {"$ref": "#/components/schemas/Metric"},
                "index": {"$ref": "#/components/schemas/IndexSpec"},
                "shards": {"type": "integer", "default": 1},
                "auto_id": {"type": "boolean", "default": false}
            }
        },
        "InsertRequest": {
            "type": "object",
            "required": ["vectors"],
            "description": "JSON form. The binary form (Content-Type: application/octet-stream) is u32 rows, u32 dim, rows×dim little-endian f32, then optionally rows little-endian u64 ids.",
            "properties": {
                "vectors": vectors,
                "ids": {"type": "array", "items": {"type": "integer", "format": "uint64"}}
            }
        },
        "WriteAck": {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "integer"}}, "seq": {"type": "integer"}}},
        "DeleteRequest": {"type": "object", "required": ["ids"], "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}},
        "DemoDoc": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "maxLength": 200}, "description": {"type": "string", "maxLength": 2000}}},
        "SearchRequest": {
            "type": "object",
            "required": ["vectors"],
            "properties": {
                "vectors": vectors,
                "k": {"type": "integer", "default": 10},
                "params": {"type": "object", "properties": {
                    "nprobe": {"type": "integer"}, "ef": {"type": "integer"}, "search_list": {"type": "integer"}
                }},
                "consistency": {"type": "string", "enum": ["strong", "bounded", "session", "eventually"], "default": "bounded"},
                "session_seq": {"type": "integer", "description": "with consistency session: the seq of your last write"}
            }
        },
        "SearchResponse": {
            "type": "object",
            "properties": {
                "results": {"type": "array", "items": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "score": {"type": "number"}
                }}}},
                "seq": {"type": "integer"},
                "took_ms": {"type": "number"}
            }
        },
        "EmbedRequest": {"type": "object", "required": ["texts"], "properties": {"texts": {"type": "array", "items": {"type": "string"}}}},
        "PlanRequest": {
            "type": "object",
            "required": ["vectors", "dim"],
            "properties": {
                "vectors": {"type": "integer"}, "dim": {"type": "integer"},
                "index": {"$ref": "#/components/schemas/IndexSpec"},
                "ram_bytes": {"type": "integer"}, "recall": {"type": "number", "default": 0.95}
            }
        }
    })
}

fn operation(route: &super::routes::Route) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), json!(route.summary));
    op.insert(
        "operationId".into(),
        json!(format!(
            "{} {}",
            route.method.as_str().to_lowercase(),
            route.path
        )),
    );
    let mut params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|p| {
            json!({"name": p, "in": "path", "required": true,
                   "schema": if p == "id" { json!({"type": "integer", "format": "uint64"}) } else { json!({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}) }})
        })
        .collect();
    if route.path.ends_with("/search") {
        for (name, kind) in [
            ("k", "integer"),
            ("nprobe", "integer"),
            ("ef", "integer"),
            ("search_list", "integer"),
            ("consistency", "string"),
            ("session_seq", "integer"),
        ] {
            params.push(json!({"name": name, "in": "query", "required": false,
                "description": "binary form only (Content-Type application/octet-stream); the JSON form takes it in the body",
                "schema": {"type": kind}}));
        }
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(schema) = route.request {
        let mut content = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
        if schema == "InsertRequest" || schema == "SearchRequest" {
            content["application/octet-stream"] =
                json!({"schema": {"type": "string", "format": "binary"}});
        }
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": content}),
        );
    }
    let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut responses = Map::new();
    responses.insert("200".into(), json!({"description": "success"}));
    responses.insert("4XX".into(), error.clone());
    responses.insert("5XX".into(), error);
    op.insert("responses".into(), Value::Object(responses));
    match route.access {
        Access::Open => {
            op.insert("security".into(), json!([]));
        }
        a => {
            op.insert(
                "description".into(),
                json!(format!(
                    "Needs the {} key when keys are configured.",
                    a.as_str()
                )),
            );
        }
    }
    Value::Object(op)
}

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let item = paths.entry(r.path).or_insert_with(|| json!({}));
        item[r.method.as_str().to_lowercase()] = operation(r);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Proxima",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Vector similarity search. Errors are {\"error\": {\"code\", \"message\"}}."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}
            }
        },
        "security": [{"bearer": []}, {"apiKey": []}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_referenced_schema_is_there() {
        let doc = document();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
            assert!(op.is_object(), "{} {}", r.method, r.path);
            if let Some(s) = r.request {
                assert!(doc["components"]["schemas"][s].is_object(), "{s}");
            }
        }
        assert_eq!(doc["openapi"], "3.0.3");
    }
}
