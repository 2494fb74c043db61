//! The one place where typed errors become HTTP statuses and `{"error": {code, message}}`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::path::Path;

use proxima_core::Error as CoreError;
use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

use crate::engine::{EngineError, ErrorKind};

/// An error answer: status, stable machine-readable code, human message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    /// Fields beside `error` in the body (a `snapshot_required` names the current handle
    /// and the retained horizon).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// The engine is still opening (recovery) or failed to open.
    pub fn not_ready() -> Self {
        Self::unavailable(
            "not_ready",
            "the server is still opening its data directory (recovery); retry shortly",
        )
    }

    /// A request body that is not JSON, or JSON of the wrong shape.
    pub fn from_json(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let code = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => "malformed_json",
            Category::Data => "invalid_body",
        };
        Self::bad_request(code, e.to_string())
    }

    /// The error as a client may see it: a server error's message (an I/O error names the
    /// file it failed on) without the server's filesystem layout — paths under `data_dir`
    /// relative to it, other absolute paths cut to `…/<file name>`. The server logs the full
    /// message first.
    pub fn for_client(mut self, data_dir: Option<&Path>) -> Self {
        if self.status.is_server_error() {
            self.message = redact_paths(&self.message, data_dir);
        }
        self
    }

    /// The JSON response.
    pub fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody {
            error: ErrorDetail {
                code: &self.code,
                message: &self.message,
            },
            details: self.details.as_ref(),
        })
        .unwrap_or_else(|_| br#"{"error":{"code":"internal","message":""}}"#.to_vec());
        super::types::json_bytes(self.status, body)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match e.kind() {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::OutOfDisk => StatusCode::INSUFFICIENT_STORAGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut err = Self::new(status, e.code(), e.to_string());
        if let EngineError::SnapshotRequired {
            handle,
            horizon,
            head,
            ..
        } = &e
        {
            let mut d = serde_json::Map::new();
            d.insert("handle".into(), handle.clone().into());
            d.insert("horizon".into(), (*horizon).into());
            d.insert("head".into(), (*head).into());
            err.details = Some(d);
        }
        err
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        EngineError::from(e).into()
    }
}

/// `message` with every path under `data_dir` made relative to it (`.` for the directory
/// itself) and every other absolute path cut to `…/<file name>`.
pub fn redact_paths(message: &str, data_dir: Option<&Path>) -> String {
    let mut out = message.to_string();
    if let Some(dir) = data_dir {
        let mut forms = vec![dir.display().to_string()];
        if let Ok(canonical) = std::fs::canonicalize(dir) {
            forms.push(canonical.display().to_string());
        }
        // The longest first, so that a prefix of another form never cuts it in half.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        for form in forms {
            let form = form.trim_end_matches('/');
            if form.is_empty() {
                continue;
            }
            out = replace_path_prefix(&out, form);
        }
    }
    cut_absolute_paths(&out)
}

/// Where a path may end inside a message.
fn ends_path(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | ')' | ']' | ',' | ';' | ':' | '`')
}

/// Where a path may start inside a message: at its start or after one of these.
fn before_path(c: Option<char>) -> bool {
    c.is_none_or(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '(' | '[' | '=' | '`'))
}

/// `prefix/rest` → `rest` and `prefix` alone → `.`, where `prefix` stands as a path of its
/// own (not the middle of a longer one).
fn replace_path_prefix(message: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let starts = before_path(rest[..at].chars().next_back());
        out.push_str(&rest[..at]);
        match after.chars().next() {
            Some('/') if starts => {
                let tail = after.trim_start_matches('/');
                if tail.chars().next().is_none_or(ends_path) {
                    out.push('.');
                }
                rest = tail;
            }
            next if starts && next.is_none_or(ends_path) => {
                out.push('.');
                rest = after;
            }
            _ => {
                out.push_str(prefix);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every absolute path left (`/a/b/c`) → `…/c`.
fn cut_absolute_paths(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.char_indices().peekable();
    let mut prev = None;
    while let Some((at, c)) = chars.next() {
        if c == '/' && before_path(prev) {
            let end = message[at..]
                .find(ends_path)
                .map_or(message.len(), |n| at + n);
            let path = &message[at..end];
            let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            out.push('…');
            if !name.is_empty() {
                out.push('/');
                out.push_str(name);
            }
            while chars.peek().is_some_and(|&(i, _)| i < end) {
                chars.next();
            }
            prev = path.chars().next_back();
            continue;
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

/// Turns warp's rejections (unknown route, wrong method) into JSON errors.
pub async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let e = if r.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body too large",
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        ApiError::bad_request("invalid_query", e.to_string())
    } else if let Some(e) = r.find::<warp::reject::InvalidHeader>() {
        ApiError::bad_request("invalid_header", e.to_string())
    } else {
        ApiError::bad_request("bad_request", format!("{r:?}"))
    };
    Ok(e.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_kinds_map_onto_statuses() {
        let e: ApiError = EngineError::CollectionNotFound { name: "x".into() }.into();
        assert_eq!((e.status.as_u16(), &*e.code), (404, "collection_not_found"));
        let e: ApiError = EngineError::CollectionExists { name: "x".into() }.into();
        assert_eq!((e.status.as_u16(), &*e.code), (409, "collection_exists"));
        let e: ApiError = CoreError::DimensionMismatch {
            expected: 384,
            got: 383,
        }
        .into();
        assert_eq!((e.status.as_u16(), &*e.code), (400, "dimension_mismatch"));
        assert_eq!(
            e.message,
            "dimension mismatch: expected 384 values, got 383"
        );
        let e: ApiError = EngineError::Closed.into();
        assert_eq!(e.status.as_u16(), 503);
        // A full disk (ENOSPC, EDQUOT) anywhere in a write path: 507, not 500.
        for errno in [28, 122] {
            let e: ApiError = EngineError::from_io(
                "append to the write-ahead log",
                std::io::Error::from_raw_os_error(errno),
            )
            .into();
            assert_eq!((e.status.as_u16(), &*e.code), (507, "out_of_disk"));
        }
        let e: ApiError = EngineError::from_io(
            "write /srv/data/collections/c/manifest.tmp",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        )
        .into();
        let e = e.for_client(Some(Path::new("/srv/data")));
        assert_eq!((e.status.as_u16(), &*e.code), (507, "out_of_disk"));
        assert!(
            e.message
                .starts_with("write collections/c/manifest.tmp: out of disk space: "),
            "{}",
            e.message
        );
        let e: ApiError = CoreError::Backend {
            message: "x".into(),
        }
        .into();
        assert_eq!(e.status.as_u16(), 500);
    }

    #[test]
    fn server_errors_never_show_the_servers_paths() {
        let data = Path::new("/srv/proxima-data");
        let io = |context: &str| EngineError::Io {
            context: context.into(),
            source: std::io::Error::from_raw_os_error(39),
        };
        let e = ApiError::from(io("rename /srv/proxima-data/collections/c")).for_client(Some(data));
        assert_eq!((e.status.as_u16(), &*e.code), (500, "io_error"));
        assert_eq!(
            e.message,
            "rename collections/c: Directory not empty (os error 39)"
        );
        let e = ApiError::from(EngineError::Corrupt {
            path: data.join("collections/c/segments/3/rows.bin"),
            reason: "bad checksum".into(),
        })
        .for_client(Some(data));
        assert_eq!(
            e.message,
            "corrupt file collections/c/segments/3/rows.bin: bad checksum"
        );
        // Outside the data directory, or no data directory known (still opening): the file
        // name only.
        let e =
            ApiError::from(io("open /home/me/.cache/model/tokenizer.json")).for_client(Some(data));
        assert_eq!(
            e.message,
            "open …/tokenizer.json: Directory not empty (os error 39)"
        );
        let e = ApiError::from(io(
            "rename /srv/proxima-data/collections/a to /srv/proxima-data/collections/.dropped-a.1-0",
        ))
        .for_client(None);
        assert_eq!(
            e.message,
            "rename …/a to …/.dropped-a.1-0: Directory not empty (os error 39)"
        );
        // The data directory itself, a relative one, and one that is the prefix of another
        // directory's name.
        let e = ApiError::internal("fsync /srv/proxima-data, then /srv/proxima-data2/x")
            .for_client(Some(data));
        assert_eq!(e.message, "fsync ., then …/x");
        let e = ApiError::internal("create ./data/collections/.creating-c: File exists")
            .for_client(Some(Path::new("./data")));
        assert_eq!(e.message, "create collections/.creating-c: File exists");
        // Client errors keep their message; messages without paths are left alone.
        let e = ApiError::bad_request("invalid_parameter", "see /v1/plan").for_client(Some(data));
        assert_eq!(e.message, "see /v1/plan");
        let e = ApiError::internal("the request handler panicked (see the server log)")
            .for_client(Some(data));
        assert_eq!(
            e.message,
            "the request handler panicked (see the server log)"
        );
    }

    #[test]
    fn json_errors_are_classified() {
        let syntax = serde_json::from_str::<Vec<f32>>("[1, NaN]").unwrap_err();
        assert_eq!(ApiError::from_json(&syntax).code, "malformed_json");
        let data = serde_json::from_str::<Vec<f32>>(r#"["1"]"#).unwrap_err();
        assert_eq!(ApiError::from_json(&data).code, "invalid_body");
    }
}
