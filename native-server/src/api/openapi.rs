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
            "description": "An index: its type with all, some or none of its parameters (params may be left out, null or {}; a missing parameter takes its default), or AUTO. Defaults: HNSW and HNSW_SQ8 m 16, ef_construction 100; IVF_FLAT, IVF_SQ8 and IVF_PQ nlist chosen per segment from its rows (the next power of two at or above 4√rows, halved until rows ≥ 39 × nlist); IVF_PQ m the smallest divisor of dim that is at least dim/4, nbits 8; DISKANN max_degree 64, search_list max(100, max_degree), pq_bytes dim/8. AUTO: the server's index advisor picks the type and its parameters for each segment when it is sealed, from the collection's rows at that time, its dim and the target (recall, default 0.95; ram_bytes, default no budget). describe shows the values chosen: schema.index and index.spec the request with its defaults, each segment's index.spec and index.reason what it got and why, index.auto AUTO's current pick, index.refine_factor the re-ranking factor searches of compressed segments use by default.",
            "properties": {
                "type": {"type": "string", "enum": ["FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "HNSW_SQ8", "DISKANN", "AUTO"]},
                "params": {
                    "type": "object",
                    "nullable": true,
                    "additionalProperties": false,
                    "description": "Only the parameters of the type: nlist (IVF_*), m and nbits (IVF_PQ), m and ef_construction (HNSW, HNSW_SQ8), max_degree, search_list and pq_bytes (DISKANN), recall and ram_bytes (AUTO), refine_factor (IVF_SQ8, IVF_PQ, HNSW_SQ8, AUTO). Each is optional.",
                    "properties": {
                        "nlist": {"type": "integer", "minimum": 1, "maximum": 1048576, "description": "IVF lists; default: per segment from its rows"},
                        "m": {"type": "integer", "minimum": 1, "description": "IVF_PQ sub-quantisers (must divide dim; default the smallest divisor of dim ≥ dim/4), or HNSW links per node (2–512; default 16)"},
                        "nbits": {"type": "integer", "minimum": 1, "maximum": 16, "default": 8},
                        "ef_construction": {"type": "integer", "minimum": 1, "maximum": 65536, "default": 100},
                        "max_degree": {"type": "integer", "minimum": 1, "maximum": 1024, "default": 64},
                        "search_list": {"type": "integer", "minimum": 1, "description": "default max(100, max_degree)"},
                        "pq_bytes": {"type": "integer", "minimum": 1, "description": "default dim/8"},
                        "recall": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "default": 0.95, "description": "AUTO: the recall@10 to reach"},
                        "ram_bytes": {"type": "integer", "minimum": 1, "description": "AUTO: RAM the collection's indexes may take (default: no budget)"},
                        "refine_factor": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4, "description": "IVF_SQ8, IVF_PQ, HNSW_SQ8 (and AUTO, for whichever of them it picks): re-ranking, a search setting: the compressed index is asked for k × refine_factor candidates (at most max(k, 4096)), which are scored again exactly on the segment's f32 rows (the memory-mapped rows file, not held in RAM) and the best k kept; 1 turns it off. A query's params.refine_factor overrides it."}
                    }
                }
            },
            "example": {"type": "HNSW"}
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
        "CollectionSchema": {
            "type": "object",
            "description": "A collection's definition: index is the request with its defaults filled in.",
            "properties": {
                "name": {"type": "string"},
                "dim": {"type": "integer"},
                "metric": {"$ref": "#/components/schemas/Metric"},
                "index": {"$ref": "#/components/schemas/IndexSpec"},
                "num_shards": {"type": "integer"},
                "auto_id": {"type": "boolean"}
            }
        },
        "CollectionList": {
            "type": "object",
            "properties": {"collections": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "dim": {"type": "integer"},
                    "metric": {"$ref": "#/components/schemas/Metric"},
                    "index": {"$ref": "#/components/schemas/IndexSpec"},
                    "num_shards": {"type": "integer", "description": "as in a description's schema"},
                    "shards": {"type": "integer", "deprecated": true, "description": "the same as num_shards, kept for older clients"},
                    "auto_id": {"type": "boolean"},
                    "count": {"type": "integer"}
                }
            }}}
        },
        "Description": {
            "type": "object",
            "description": "A collection's description (sync only from GET).",
            "properties": {
                "schema": {"$ref": "#/components/schemas/CollectionSchema"},
                "count": {"type": "integer"},
                "committed_seq": {"type": "integer"},
                "applied_seq": {"type": "integer"},
                "checkpoint_seq": {"type": "integer"},
                "index": {"type": "object", "description": "spec, auto, refine_factor, generation, state (building | ready), rows_indexed, rows_total, progress"},
                "segments": {"type": "array", "items": {"type": "object", "description": "id, shard, state (growing | sealed), rows, live_rows, index {state (exact | building | ready), type, spec, progress, note, reason}, memory_bytes, mapped_bytes, gpu_bytes, gpu_note"}},
                "memory": {"type": "object", "properties": {
                    "actual_bytes": {"type": "integer"}, "mapped_bytes": {"type": "integer"}, "estimated_bytes": {"type": "integer"},
                    "gpu_bytes": {"type": "integer"}, "raw_bytes": {"type": "integer"}
                }},
                "wal_bytes": {"type": "integer"},
                "merges": {"type": "object", "properties": {
                    "merges": {"type": "integer"}, "rows_rewritten": {"type": "integer"},
                    "segments_merged": {"type": "integer"}, "failures": {"type": "integer"}
                }},
                "sync": {"type": "object", "properties": {
                    "handle": {"type": "string"}, "horizon": {"type": "integer"}, "head": {"type": "integer"},
                    "retained_changes": {"type": "integer"}, "retained_bytes": {"type": "integer"}
                }}
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
                "params": {"type": "object", "additionalProperties": false, "properties": {
                    "nprobe": {"type": "integer"}, "ef": {"type": "integer"}, "search_list": {"type": "integer"},
                    "refine_factor": {"type": "integer", "minimum": 1, "maximum": 64, "description": "IVF_SQ8, IVF_PQ, HNSW_SQ8: k × refine_factor candidates re-scored exactly on the rows (1: off); default the collection's index.refine_factor (4 unless set); ignored by other indexes; out of range: 400 invalid_parameter"}
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
        "AliasRequest": {
            "type": "object",
            "required": ["collection"],
            "additionalProperties": false,
            "description": "The collection the alias is to point to (a collection, not another alias).",
            "properties": {"collection": {"type": "string"}}
        },
        "Alias": {
            "type": "object",
            "properties": {
                "alias": {"type": "string"},
                "collection": {"type": "string"},
                "previous": {"type": "string", "description": "PUT only, when the alias existed: the collection it pointed to before"}
            }
        },
        "AliasList": {
            "type": "object",
            "properties": {"aliases": {"type": "array", "items": {"$ref": "#/components/schemas/Alias"}}}
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
            ("refine_factor", "integer"),
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
    let mut success = json!({"description": "success"});
    if let Some(schema) = response_schema(route) {
        success["content"] = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
    }
    let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut responses = Map::new();
    responses.insert("200".into(), success);
    responses.insert("4XX".into(), error.clone());
    let mut unavailable = error.clone();
    unavailable["description"] = json!(UNAVAILABLE);
    responses.insert("503".into(), unavailable);
    responses.insert("5XX".into(), error.clone());
    if route.access == Access::Write {
        let mut full = error.clone();
        full["description"] = json!(OUT_OF_DISK);
        responses.insert("507".into(), full);
    }
    let mut note = None;
    if route.path == "/v1/collections/{name}" {
        let described = |description: &str| {
            let mut e = error.clone();
            e["description"] = json!(description);
            e
        };
        if route.method == warp::http::Method::PUT {
            if let Some(ok) = responses.remove("200") {
                responses.insert("201".into(), ok);
            }
            responses.insert(
                "409".into(),
                described("collection_exists, or name_is_alias (an alias has the name)"),
            );
            note = Some(CREATE_DROP);
        } else if route.method == warp::http::Method::DELETE {
            responses.insert("404".into(), described("collection_not_found"));
            responses.insert(
                "409".into(),
                described("collection_has_aliases: aliases point to the collection (the message names them); delete or switch them first"),
            );
            note = Some(CREATE_DROP);
        }
    }
    op.insert("responses".into(), Value::Object(responses));
    match route.access {
        Access::Open => {
            op.insert("security".into(), json!([]));
        }
        a => {
            let keys = format!("Needs the {} key when keys are configured.", a.as_str());
            op.insert(
                "description".into(),
                json!(match note {
                    Some(note) => format!("{note} {keys}"),
                    None => keys,
                }),
            );
        }
    }
    Value::Object(op)
}

/// What creates and drops of one name promise each other, on both operations.
const CREATE_DROP: &str = "Creates and drops of one name are linearisable: a create answers 201 or 409 collection_exists, a drop 200 or 404 collection_not_found (or 409 collection_has_aliases while aliases point to it), whatever else runs at the same time (a create waits for a drop of the name under way, and the reverse), and once a drop has answered the name is free. Requests that found the collection just before a drop answer 503 closed.";

/// Schema (in the components) of a route's successful answer, where the document has one.
fn response_schema(route: &super::routes::Route) -> Option<&'static str> {
    use warp::http::Method;
    match (&route.method, route.path) {
        (&Method::GET, "/v1/collections") => Some("CollectionList"),
        (&Method::GET, "/v1/collections/{name}") => Some("Description"),
        (&Method::POST, "/v1/collections/{name}/vectors") => Some("WriteAck"),
        (&Method::POST, "/v1/collections/{name}/search") => Some("SearchResponse"),
        (&Method::GET, "/v1/aliases") => Some("AliasList"),
        (&Method::GET | &Method::PUT, "/v1/aliases/{alias}") => Some("Alias"),
        _ => None,
    }
}

/// What a 507 means, on every write.
const OUT_OF_DISK: &str = "out_of_disk (Insufficient Storage): the disk or the quota is full (ENOSPC, EDQUOT) where the write had to go (write-ahead log append or fsync, segment, manifest or change log file); nothing unwritten was acknowledged. Free space and retry (after a failed fsync of the write-ahead log, writes answer this until the server restarts).";

/// What a 503 means, on every operation.
const UNAVAILABLE: &str = "unavailable: not_ready (recovery), consistency_timeout, request_timeout (a read past --request-timeout, 60 s by default: a search stops part-way), too_many_connections (past --max-connections; the connection is closed, retry shortly), embedder_unavailable";

/// How the server treats connections and requests, for the document's description.
const CONNECTIONS: &str = "Connections: a request head must arrive within --header-read-timeout (10 s) of its first byte, a keep-alive connection is closed after --idle-timeout (30 s) without a request (a request in flight, such as a live change-feed poll, is never idle), and past --max-connections (10,000) a new connection is answered 503 too_many_connections and closed. Requests: a read that runs past --request-timeout (60 s; a live poll's wait not included) answers 503 request_timeout, and a search whose client disconnects or whose deadline passes stops at its next segment. HEAD is answered wherever GET is. Routes without a request body never read one.";

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let item = paths.entry(r.path).or_insert_with(|| json!({}));
        item[r.method.as_str().to_lowercase()] = operation(r);
        if r.method == warp::http::Method::GET {
            let mut head = operation(r);
            head["summary"] = json!(format!("Headers of GET {}, without the body.", r.path));
            head["operationId"] = json!(format!("head {}", r.path));
            item["head"] = head;
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Proxima",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Vector similarity search. Errors are {{\"error\": {{\"code\", \"message\"}}}}. {CONNECTIONS}")
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
            assert!(op["responses"]["503"].is_object());
            assert_eq!(
                op["responses"]["507"].is_object(),
                r.access == Access::Write,
                "{} {}",
                r.method,
                r.path
            );
            if r.path == "/v1/collections/{name}" && r.method == "PUT" {
                assert!(op["responses"]["201"].is_object() && op["responses"]["409"].is_object());
                assert!(op["responses"]["200"].is_null());
            }
            let get = ROUTES.iter().any(|g| g.path == r.path && g.method == "GET");
            let head = &doc["paths"][r.path]["head"];
            assert_eq!(head.is_object(), get, "HEAD {}", r.path);
            for s in r.request.into_iter().chain(response_schema(r)) {
                assert!(doc["components"]["schemas"][s].is_object(), "{s}");
            }
        }
        assert_eq!(doc["openapi"], "3.0.3");
    }

    #[test]
    fn the_index_schema_names_every_type_and_parameter() {
        use proxima_core::request::{IndexParams, IndexType};
        let doc = document();
        let spec = &doc["components"]["schemas"]["IndexSpec"];
        let types: Vec<IndexType> =
            serde_json::from_value(spec["properties"]["type"]["enum"].clone()).unwrap();
        assert!(types.contains(&IndexType::Auto), "{types:?}");
        let all = IndexParams {
            nlist: Some(1),
            m: Some(1),
            nbits: Some(1),
            ef_construction: Some(1),
            max_degree: Some(1),
            search_list: Some(1),
            pq_bytes: Some(1),
            recall: Some(1.0),
            ram_bytes: Some(1),
            refine_factor: Some(1),
        };
        let fields = serde_json::to_value(all).unwrap();
        let mut ours: Vec<&String> = fields.as_object().unwrap().keys().collect();
        let documented = spec["properties"]["params"]["properties"]
            .as_object()
            .unwrap();
        let mut theirs: Vec<&String> = documented.keys().collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
        let example: super::super::types::SpecBody =
            serde_json::from_value(spec["example"].clone()).unwrap();
        assert_eq!(example.0.kind, IndexType::Hnsw);
    }
}
