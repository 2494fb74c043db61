//! Durability helpers: whole files (segment rows and live bitmaps, index files, the manifest)
//! and directories the engine must find again after a crash or a power loss are written
//! through these. (The WAL and the change log append to their files and fsync them
//! themselves; they create and sync their directories here.)
//!
//! What each guarantees once it returns:
//! - [`write_file_atomic`]: writes a temporary file next to the target (`<name>.tmp`), fsyncs
//!   it, renames it over the target and fsyncs the directory. A reader sees the old content
//!   or the new, never a mix, and the new content survives a power loss. An interrupted write
//!   leaves at most the `.tmp` file (a collection's open removes those).
//! - [`sync_file`]: fsyncs a file written by someone else (FAISS writes through stdio), so a
//!   rename may then publish it.
//! - [`rename_durable`]: renames a file already fsynced and fsyncs the target's directory;
//!   POSIX promises nothing about a rename before that fsync.
//! - [`sync_dir`]: fsyncs a directory, which makes the creations, renames and removals of
//!   entries in it durable.
//! - [`create_dir_durable`]: creates a directory and its missing parents, fsyncing the parent
//!   of each one created, so that the new entries survive a power loss before anything
//!   durable (a manifest) points into them.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::error::{EngineError, EngineResult};

/// Writes `bytes` to `path` through a temporary file, fsyncs it, renames it into place and
/// fsyncs the directory: once this returns, the new content survives a power loss.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> EngineResult<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(EngineError::io(format!("create {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(EngineError::io(format!("write {}", tmp.display())))?;
    rename_durable(&tmp, path)
}

/// Fsyncs the file at `path` (written by a library that does not).
pub fn sync_file(path: &Path) -> EngineResult<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(EngineError::io(format!("fsync {}", path.display())))
}

/// Renames `from` (a file already fsynced) to `to` and fsyncs `to`'s directory, which makes
/// the rename durable (POSIX promises nothing for it before that fsync).
pub fn rename_durable(from: &Path, to: &Path) -> EngineResult<()> {
    fs::rename(from, to).map_err(EngineError::io(format!("rename {}", to.display())))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// Fsyncs a directory (makes renames inside it durable).
pub fn sync_dir(dir: &Path) -> EngineResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(EngineError::io(format!("fsync {}", dir.display())))
}

/// Creates `dir` and any missing parents, fsyncing the parent of each directory created, so
/// that the new entries survive a power loss before anything durable points into them.
pub fn create_dir_durable(dir: &Path) -> EngineResult<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d);
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir).map_err(EngineError::io(format!("create {}", dir.display())))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}
