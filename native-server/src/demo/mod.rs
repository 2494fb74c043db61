//! The demo the server shows at `/`: a collection of the Debian package descriptions,
//! embedded with the built-in model, built in the background on the first start (a progress
//! bar in the terminal, progress at `GET /v1/demo`), reused on later starts; and the
//! documents (the text of each id) the page shows beside its results.
//!
//! * [`docs`] — the documents, in an append-only JSON-lines file;
//! * [`build`] — the background build (resumable: a restart continues where it stopped).

pub mod build;
pub mod docs;

use std::path::Path;

use parking_lot::Mutex;
use serde::Serialize;

pub use docs::DocStore;

/// Name of the demo collection.
pub const COLLECTION: &str = "debian-packages";

/// When the demo runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemoMode {
    /// On a data directory with no collections, or one that already has the demo.
    #[default]
    Auto,
    /// Always (`--demo`).
    On,
    /// Never (`--no-demo`).
    Off,
}

/// Demo settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DemoConfig {
    pub mode: DemoMode,
    /// Build from the first N texts of the seeded split (default: all of them).
    pub limit: Option<usize>,
}

/// Where the demo stands (`GET /v1/demo`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoStatus {
    pub enabled: bool,
    pub collection: &'static str,
    /// `off`, `waiting` (for the data directory or the model), `loading` (the package list),
    /// `embedding`, `ready` or `failed`.
    pub state: &'static str,
    /// Vectors in the collection from the build so far, and the number planned.
    pub done: u64,
    pub total: u64,
    pub message: String,
    /// How the page's cache stores vectors (a snapshot option).
    pub storage: &'static str,
    pub model: &'static str,
    pub dim: usize,
    pub metric: &'static str,
}

/// The demo: its status and documents.
pub struct Demo {
    status: Mutex<DemoStatus>,
    docs: DocStore,
}

impl Demo {
    /// A demo whose documents live in `dir` (`<data dir>/demo`).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            status: Mutex::new(DemoStatus {
                enabled: true,
                collection: COLLECTION,
                state: "waiting",
                done: 0,
                total: 0,
                message: "waiting for the data directory to open".into(),
                storage: "sq8",
                model: crate::embed::MODEL_NAME,
                dim: 384,
                metric: "cosine",
            }),
            docs: DocStore::open(dir)?,
        })
    }

    pub fn status(&self) -> DemoStatus {
        self.status.lock().clone()
    }

    pub(crate) fn set_status(&self, f: impl FnOnce(&mut DemoStatus)) {
        f(&mut self.status.lock());
    }

    pub fn docs(&self) -> &DocStore {
        &self.docs
    }

    /// The status before the demo has decided whether it runs (the data directory is opening).
    pub fn waiting() -> DemoStatus {
        DemoStatus {
            enabled: true,
            state: "waiting",
            message: "waiting for the data directory to open".into(),
            ..Self::off()
        }
    }

    /// The status of a server without the demo.
    pub fn off() -> DemoStatus {
        DemoStatus {
            enabled: false,
            collection: COLLECTION,
            state: "off",
            done: 0,
            total: 0,
            message: "the demo is off on this server (--no-demo, or a data directory with other collections; --demo turns it on)".into(),
            storage: "sq8",
            model: crate::embed::MODEL_NAME,
            dim: 384,
            metric: "cosine",
        }
    }
}
