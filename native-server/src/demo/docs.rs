//! The demo's documents: the text behind each vector id (`name: description`), in an
//! append-only JSON-lines file (`demo/docs.jsonl` in the data directory) read into memory on
//! open. A line is `{"id": 7, "text": "…"}` or `{"id": 7, "deleted": true}`; a torn last line
//! (a crash mid-write) is ignored.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

/// Ids at and above this are documents added through the API (below: the corpus's own ids).
pub const FIRST_ADDED_ID: u64 = 1 << 32;

#[derive(Serialize, Deserialize)]
struct Line {
    id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

struct Inner {
    docs: BTreeMap<u64, String>,
    /// Ids ever deleted (a resumed build does not bring them back).
    deleted: HashSet<u64>,
    /// `{"docs": [[id, name, description], …]}`, gzip-compressed, built on demand.
    all_gz: Option<Arc<Vec<u8>>>,
}

/// The documents of the demo collection.
pub struct DocStore {
    path: PathBuf,
    inner: RwLock<Inner>,
    file: Mutex<File>,
}

/// `name: description` → (name, description); a text without the separator is all name.
pub fn split_text(text: &str) -> (&str, &str) {
    text.split_once(": ").unwrap_or((text, ""))
}

impl DocStore {
    /// Opens (or creates) `dir/docs.jsonl`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("docs.jsonl");
        let mut docs = BTreeMap::new();
        let mut deleted = HashSet::new();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        // Lines up to the first torn or foreign one (only the last can be: a crash mid-write);
        // the file is cut there so that later appends start on a line of their own.
        let mut good = 0;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let Some(text) = line.strip_suffix(b"\n") else {
                break;
            };
            let Ok(l) = serde_json::from_slice::<Line>(text) else {
                break;
            };
            if l.deleted {
                docs.remove(&l.id);
                deleted.insert(l.id);
            } else if let Some(text) = l.text {
                docs.insert(l.id, text);
            }
            good += line.len();
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), offset = good, "cutting a torn line from the demo documents");
            file.set_len(good as u64)?;
        }
        Ok(Self {
            path,
            inner: RwLock::new(Inner {
                docs,
                deleted,
                all_gz: None,
            }),
            file: Mutex::new(file),
        })
    }

    fn append(&self, lines: &[Line]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for l in lines {
            serde_json::to_writer(&mut buf, l)?;
            buf.push(b'\n');
        }
        let mut f = self.file.lock();
        f.write_all(&buf)?;
        f.sync_data()
    }

    /// Stores documents (replacing texts of ids already present).
    pub fn put(&self, docs: &[(u64, String)]) -> std::io::Result<()> {
        let lines: Vec<Line> = docs
            .iter()
            .map(|(id, text)| Line {
                id: *id,
                text: Some(text.clone()),
                deleted: false,
            })
            .collect();
        self.append(&lines)?;
        let mut inner = self.inner.write();
        for (id, text) in docs {
            inner.docs.insert(*id, text.clone());
        }
        inner.all_gz = None;
        Ok(())
    }

    /// Deletes a document; returns whether it was there.
    pub fn delete(&self, id: u64) -> std::io::Result<bool> {
        self.append(&[Line {
            id,
            text: None,
            deleted: true,
        }])?;
        let mut inner = self.inner.write();
        inner.deleted.insert(id);
        inner.all_gz = None;
        Ok(inner.docs.remove(&id).is_some())
    }

    /// True when `id` is stored or was deleted.
    pub fn seen(&self, id: u64) -> bool {
        let inner = self.inner.read();
        inner.docs.contains_key(&id) || inner.deleted.contains(&id)
    }

    pub fn get(&self, id: u64) -> Option<String> {
        self.inner.read().docs.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.inner.read().docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id the next added document gets.
    pub fn next_added_id(&self) -> u64 {
        let inner = self.inner.read();
        let stored = inner
            .docs
            .range(FIRST_ADDED_ID..)
            .next_back()
            .map(|(id, _)| *id);
        let gone = inner
            .deleted
            .iter()
            .copied()
            .filter(|&i| i >= FIRST_ADDED_ID)
            .max();
        stored
            .max(gone)
            .map_or(FIRST_ADDED_ID, |m| m.saturating_add(1))
    }

    /// `[[id, name, description], …]` of `ids` that exist (all when `None`).
    pub fn rows(&self, ids: Option<&[u64]>) -> serde_json::Value {
        let inner = self.inner.read();
        let row = |id: u64, text: &String| {
            let (name, description) = split_text(text);
            serde_json::json!([id, name, description])
        };
        let rows: Vec<serde_json::Value> = match ids {
            Some(ids) => ids
                .iter()
                .filter_map(|id| inner.docs.get(id).map(|t| row(*id, t)))
                .collect(),
            None => inner.docs.iter().map(|(id, t)| row(*id, t)).collect(),
        };
        serde_json::Value::Array(rows)
    }

    /// Every document as `{"docs": [[id, name, description], …]}`, gzip-compressed (kept
    /// until the next change).
    pub fn all_gzip(&self) -> std::io::Result<Arc<Vec<u8>>> {
        if let Some(gz) = self.inner.read().all_gz.clone() {
            return Ok(gz);
        }
        let body = serde_json::to_vec(&serde_json::json!({ "docs": self.rows(None) }))?;
        let gz = Arc::new(crate::api::gzip(&body)?);
        self.inner.write().all_gz = Some(gz.clone());
        Ok(gz)
    }

    /// Where the documents are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_survive_reopening_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = DocStore::open(dir.path()).unwrap();
            s.put(&[
                (1, "gimp: GNU Image Manipulation Program".into()),
                (2, "vim: Vi IMproved".into()),
            ])
            .unwrap();
            assert!(s.delete(2).unwrap());
            assert_eq!(s.next_added_id(), FIRST_ADDED_ID);
            s.put(&[(FIRST_ADDED_ID, "mine: my package".into())])
                .unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("docs.jsonl"))
            .unwrap();
        f.write_all(br#"{"id": 9, "te"#).unwrap();
        let s = DocStore::open(dir.path()).unwrap();
        s.put(&[(3, "mc: Midnight Commander".into())]).unwrap();
        let s = DocStore::open(dir.path()).unwrap();
        assert_eq!(s.get(3).as_deref(), Some("mc: Midnight Commander"));
        assert_eq!(
            s.get(1).as_deref(),
            Some("gimp: GNU Image Manipulation Program")
        );
        assert!(s.get(2).is_none() && s.seen(2) && !s.seen(9));
        assert_eq!(s.next_added_id(), FIRST_ADDED_ID + 1);
        assert_eq!(
            s.rows(Some(&[1, 2])),
            serde_json::json!([[1, "gimp", "GNU Image Manipulation Program"]])
        );
        assert!(!s.all_gzip().unwrap().is_empty());
    }
}
