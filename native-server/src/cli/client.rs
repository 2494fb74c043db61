//! A small blocking HTTP client for a running server: JSON calls, and batched inserts with
//! retry, exponential backoff, and batch halving on timeouts and 413.

use std::time::Duration;

use proxima_core::formats::encode_rows;
use serde_json::Value;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{status} {code}: {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: connection refused or reset, timeout, DNS, …
    #[error("{url}: {message}")]
    Transport {
        url: String,
        message: String,
        timed_out: bool,
    },
    #[error("unexpected answer from {url}: {message}")]
    Protocol { url: String, message: String },
}

impl ClientError {
    /// Worth retrying as is (server busy, unavailable, or a transient transport failure).
    fn retryable(&self) -> bool {
        match self {
            ClientError::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            ClientError::Transport { .. } => true,
            ClientError::Protocol { .. } => false,
        }
    }

    /// Worth retrying with a smaller batch.
    fn too_big(&self) -> bool {
        matches!(self, ClientError::Status { status: 413, .. })
            || matches!(
                self,
                ClientError::Transport {
                    timed_out: true,
                    ..
                }
            )
    }

    /// The status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Retry policy of [`Client::insert_all`].
#[derive(Debug, Clone)]
pub struct Retry {
    /// Attempts per batch before giving up.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A server's base URL and API key.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    key: Option<String>,
    agent: ureq::Agent,
    pub retry: Retry,
}

impl Client {
    /// `base` like `http://127.0.0.1:7700`; `timeout` per request.
    pub fn new(base: &str, key: Option<String>, timeout: Duration) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            key: key.filter(|k| !k.is_empty()),
            agent: ureq::AgentBuilder::new().timeout(timeout).build(),
            retry: Retry::default(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &self.url(path));
        match &self.key {
            Some(k) => r.set("Authorization", &format!("Bearer {k}")),
            None => r,
        }
    }

    fn finish(
        &self,
        path: &str,
        res: Result<ureq::Response, ureq::Error>,
    ) -> Result<Value, ClientError> {
        let url = self.url(path);
        match res {
            Ok(r) => {
                let text = r.into_string().map_err(|e| ClientError::Transport {
                    url: url.clone(),
                    message: e.to_string(),
                    timed_out: e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock,
                })?;
                serde_json::from_str(&text).map_err(|e| ClientError::Protocol {
                    url,
                    message: format!(
                        "not JSON ({e}): {}",
                        text.chars().take(200).collect::<String>()
                    ),
                })
            }
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                Err(ClientError::Status {
                    status,
                    code: v["error"]["code"]
                        .as_str()
                        .unwrap_or("http_error")
                        .to_string(),
                    message: v["error"]["message"]
                        .as_str()
                        .map_or_else(|| text.clone(), str::to_string),
                })
            }
            Err(ureq::Error::Transport(t)) => {
                let message = t.to_string();
                Err(ClientError::Transport {
                    url,
                    timed_out: message.contains("timed out"),
                    message,
                })
            }
        }
    }

    /// `GET path` → JSON.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.finish(path, self.request("GET", path).call())
    }

    /// `method path` with a JSON body → JSON.
    pub fn send(&self, method: &str, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.finish(path, self.request(method, path).send_json(body))
    }

    /// One binary insert (the layout: `proxima_core::formats::fbin`).
    pub fn insert_binary(
        &self,
        collection: &str,
        dim: usize,
        vectors: &[f32],
        ids: Option<&[u64]>,
    ) -> Result<Value, ClientError> {
        let path = format!("/v1/collections/{collection}/vectors");
        let body = encode_rows(dim, vectors, ids);
        self.finish(
            &path,
            self.request("POST", &path)
                .set("Content-Type", "application/octet-stream")
                .send_bytes(&body),
        )
    }

    /// Inserts `vectors` (row-major, `dim` wide) in batches of up to `batch` rows, retrying
    /// transient failures with exponential backoff and halving the batch after a timeout or a
    /// 413. `progress` is called with the rows done so far. Returns the last write's sequence.
    ///
    /// With explicit ids a retried batch is an idempotent upsert; without (auto_id) a batch
    /// retried after a timeout may have been applied twice.
    pub fn insert_all(
        &self,
        collection: &str,
        dim: usize,
        vectors: &[f32],
        ids: Option<&[u64]>,
        batch: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<u64, ClientError> {
        let rows = vectors.len().checked_div(dim).unwrap_or(0);
        let mut batch = batch.max(1);
        let mut done = 0;
        let mut seq = 0;
        while done < rows {
            let mut attempt = 0;
            let mut backoff = self.retry.first_backoff;
            loop {
                let end = (done + batch).min(rows);
                let res = self.insert_binary(
                    collection,
                    dim,
                    &vectors[done * dim..end * dim],
                    ids.map(|ids| &ids[done..end]),
                );
                match res {
                    Ok(ack) => {
                        seq = ack["seq"].as_u64().unwrap_or(seq);
                        done = end;
                        progress(done);
                        break;
                    }
                    Err(e) if e.too_big() && batch > 1 => {
                        batch = batch.div_ceil(2);
                        tracing::warn!(batch, "{e}: retrying with a smaller batch");
                    }
                    Err(e) if e.retryable() && attempt + 1 < self.retry.attempts => {
                        attempt += 1;
                        tracing::warn!(attempt, "{e}: retrying in {} ms", backoff.as_millis());
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(self.retry.max_backoff);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(seq)
    }
}
