//! API keys: a write key (everything) and a read-only key (reads only).
//!
//! A key travels as `Authorization: Bearer <key>` or `x-api-key: <key>`. With no key configured
//! every route is open. With keys configured, a route that needs access answers 401 without a
//! valid key and 403 when a read-only key attempts a write. `/healthz`, `/readyz`, `/metrics`,
//! `/version` and `/openapi.json` are always open.

use warp::http::{HeaderMap, StatusCode};

use super::errors::ApiError;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key needed, ever.
    Open,
    /// The read key or the write key.
    Read,
    /// The write key.
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// The configured keys.
#[derive(Clone, Default)]
pub struct Keys {
    write: Option<String>,
    read: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// Compares without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Keys {
    /// Keys from configuration, trimmed as presented keys are (a key read from a secret
    /// file often ends with a newline); empty strings count as absent.
    pub fn new(write: Option<String>, read: Option<String>) -> Self {
        let keep = |k: Option<String>| k.map(|k| k.trim().to_string()).filter(|k| !k.is_empty());
        Self {
            write: keep(write),
            read: keep(read),
        }
    }

    /// True when no key is configured (every route open).
    pub fn is_open(&self) -> bool {
        self.write.is_none() && self.read.is_none()
    }

    /// For the start-up line and logs (never the keys themselves).
    pub fn describe(&self) -> &'static str {
        match (&self.write, &self.read) {
            (None, None) => "off",
            (Some(_), None) => "write-key",
            (None, Some(_)) => "read-key",
            (Some(_), Some(_)) => "write-key+read-key",
        }
    }

    /// The key a request presents, if any.
    fn presented(headers: &HeaderMap) -> Option<&str> {
        if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return Some(v.trim());
        }
        let auth = headers.get("authorization")?.to_str().ok()?.trim();
        let (scheme, key) = auth.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
    }

    /// Checks a request against what its route needs.
    pub fn check(&self, access: Access, headers: &HeaderMap) -> Result<(), ApiError> {
        if access == Access::Open || self.is_open() {
            return Ok(());
        }
        let Some(key) = Self::presented(headers) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an API key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
            ));
        };
        if self.write.as_deref().is_some_and(|w| same(w, key)) {
            return Ok(());
        }
        if self.read.as_deref().is_some_and(|r| same(r, key)) {
            return match access {
                Access::Write => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the read-only key cannot write: use the write key",
                )),
                _ => Ok(()),
            };
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid API key",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn matrix() {
        let keys = Keys::new(Some("w".into()), Some("r".into()));
        let none = headers(&[]);
        let write = headers(&[("authorization", "Bearer w")]);
        let read = headers(&[("x-api-key", "r")]);
        let wrong = headers(&[("authorization", "Bearer nope")]);
        let status = |a, h: &HeaderMap| keys.check(a, h).err().map(|e| e.status.as_u16());
        assert_eq!(status(Access::Open, &none), None);
        assert_eq!(status(Access::Read, &none), Some(401));
        assert_eq!(status(Access::Read, &wrong), Some(401));
        assert_eq!(status(Access::Read, &read), None);
        assert_eq!(status(Access::Write, &read), Some(403));
        assert_eq!(status(Access::Write, &write), None);
        assert_eq!(status(Access::Read, &write), None);
        assert_eq!(
            status(Access::Write, &headers(&[("authorization", "Basic w")])),
            Some(401)
        );
    }

    #[test]
    fn no_keys_is_open() {
        let keys = Keys::new(None, Some(String::new()));
        assert!(keys.is_open());
        assert!(keys.check(Access::Write, &HeaderMap::new()).is_ok());
        assert!(Keys::new(None, Some(" \n".into())).is_open());
        assert!(!same("ab", "abc") && same("abc", "abc"));
        // A configured key with a trailing newline (a secret file) matches the key sent.
        let keys = Keys::new(Some("wkey\n".into()), None);
        let sent = headers(&[("x-api-key", "wkey")]);
        assert!(keys.check(Access::Write, &sent).is_ok());
    }
}
