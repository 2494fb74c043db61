//! Proxima's native server: the storage engine, its FAISS indexes, the HTTP API and the CLI.
//!
//! * [`index`] — index backends (FAISS) implementing `proxima_core::VectorIndex`;
//! * [`api`] — the HTTP layer (warp): routes, JSON shapes, error mapping; no search logic;
//! * [`cli`] — the `proxima` command line;
//! * [`embed`] — text embeddings (all-MiniLM-L6-v2 on the CPU with candle);
//! * [`dataset`] — real datasets on disk: texts, vectors, held-out queries, exact ground truth.

pub mod api;
pub mod cli;
pub mod dataset;
pub mod demo;
pub mod embed;
pub mod engine;
pub mod index;
