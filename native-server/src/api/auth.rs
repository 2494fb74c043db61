//! API keys: a write key (everything) and a read-only key (reads only).
//!
//! A key travels as `Authorization: Bearer <key>` or `x-api-key: <key>`. With no key configured
//! every route is open. With keys configured, a route that needs access answers 401 without a
//! valid key and 403 when a read-only key attempts a write. A request may carry both headers
//! (a proxy may add one): each key is checked and the request has the access of the best valid
//! one, so a wrong `x-api-key` never spoils a valid `Authorization` header, nor the reverse. `/healthz`, `/readyz`, `/metrics`,
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

    /// The keys a request presents: `x-api-key`, then `Authorization: Bearer`.
    fn presented(headers: &HeaderMap) -> impl Iterator<Item = &str> {
        let api_key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|auth| auth.trim().split_once(' '))
            .and_then(|(scheme, key)| scheme.eq_ignore_ascii_case("bearer").then(|| key.trim()));
        api_key.into_iter().chain(bearer)
    }

    /// What `key` allows, if it is one of the configured keys (compared without early exit).
    fn grants(&self, key: &str) -> Option<Access> {
        let write = self.write.as_deref().is_some_and(|w| same(w, key));
        let read = self.read.as_deref().is_some_and(|r| same(r, key));
        if write {
            Some(Access::Write)
        } else if read {
            Some(Access::Read)
        } else {
            None
        }
    }

    /// Checks a request against what its route needs.
    pub fn check(&self, access: Access, headers: &HeaderMap) -> Result<(), ApiError> {
        if access == Access::Open || self.is_open() {
            return Ok(());
        }
        let mut any = false;
        let mut best = None;
        for key in Self::presented(headers) {
            any = true;
            best = match (best, self.grants(key)) {
                (Some(Access::Write), _) | (_, Some(Access::Write)) => Some(Access::Write),
                (Some(Access::Read), _) | (_, Some(Access::Read)) => Some(Access::Read),
                _ => None,
            };
        }
        match best {
            Some(Access::Write) => Ok(()),
            Some(_) if access == Access::Read => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the read-only key cannot write: use the write key",
            )),
            None if !any => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an API key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "invalid API key",
            )),
        }
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

    #[test]
    fn both_headers_give_the_best_valid_key() {
        let keys = Keys::new(Some("w".into()), Some("r".into()));
        let status = |a, pairs: &[(&'static str, &str)]| {
            keys.check(a, &headers(pairs))
                .err()
                .map(|e| e.status.as_u16())
        };
        // A wrong x-api-key does not spoil a valid bearer key, nor the reverse.
        let wrong_api_key = [("x-api-key", "nope"), ("authorization", "Bearer w")];
        assert_eq!(status(Access::Write, &wrong_api_key), None);
        let wrong_bearer = [("x-api-key", "w"), ("authorization", "Bearer nope")];
        assert_eq!(status(Access::Write, &wrong_bearer), None);
        // The write key in either header wins over the read key in the other.
        let read_and_write = [("x-api-key", "r"), ("authorization", "Bearer w")];
        assert_eq!(status(Access::Write, &read_and_write), None);
        let read_and_wrong = [("x-api-key", "r"), ("authorization", "Bearer nope")];
        assert_eq!(status(Access::Read, &read_and_wrong), None);
        assert_eq!(status(Access::Write, &read_and_wrong), Some(403));
        let both_wrong = [("x-api-key", "x"), ("authorization", "Bearer y")];
        assert_eq!(status(Access::Read, &both_wrong), Some(401));
        // An Authorization header of another scheme presents no key.
        let basic = [("x-api-key", "w"), ("authorization", "Basic w")];
        assert_eq!(status(Access::Write, &basic), None);
    }
}
