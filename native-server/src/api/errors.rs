//! The one place where typed errors become HTTP statuses and `{"error": {code, message}}`.

use std::borrow::Cow;
use std::convert::Infallible;

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
        let e: ApiError = CoreError::Backend {
            message: "x".into(),
        }
        .into();
        assert_eq!(e.status.as_u16(), 500);
    }

    #[test]
    fn json_errors_are_classified() {
        let syntax = serde_json::from_str::<Vec<f32>>("[1, NaN]").unwrap_err();
        assert_eq!(ApiError::from_json(&syntax).code, "malformed_json");
        let data = serde_json::from_str::<Vec<f32>>(r#"["1"]"#).unwrap_err();
        assert_eq!(ApiError::from_json(&data).code, "invalid_body");
    }
}
