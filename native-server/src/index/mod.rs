//! Index backends of the server.

pub mod faiss_backend;
