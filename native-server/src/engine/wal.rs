//! The write-ahead log: every insert, upsert and delete is appended here, with its sequence
//! numbers and a CRC-32, before it is acknowledged.
//!
//! Layout: `wal/<first-seq, 20 digits>.wal` files, each a run of records
//! `[payload len u32][crc32 u32][first_seq u64][kind u8][n u32][ids n×u64][vectors n×dim×f32]`
//! (little-endian). A batch of `n` rows takes the sequence numbers `first_seq ..= first_seq+n-1`.
//!
//! Group commit: writers append under a short lock, then one of them fsyncs for all writes
//! made so far; each waits until an fsync covers its record ([`FsyncPolicy::Always`]).
//! Recovery reads the files in order and stops at the first torn or corrupt record, truncating
//! it away (only the last record of the last file can be torn: files are closed with an fsync
//! before the next one starts). Files are deleted once a checkpoint covers all their records.
//!
//! The log holds its directory open and starts new files in that directory, not at its path:
//! once a dropped collection's directory is renamed away (and another collection may be
//! created under the name), an append still in flight never writes into the new one; a
//! rotation that finds the directory moved answers [`EngineError::Closed`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use parking_lot::{Condvar, Mutex};
use proxima_core::consistency::Seq;

use super::config::FsyncPolicy;
use super::error::{is_out_of_disk, EngineError, EngineResult};
use super::fs::{create_dir_durable, sync_dir};

const KIND_UPSERT: u8 = 1;
const KIND_DELETE: u8 = 2;
const HEADER: usize = 8;
const FIXED: usize = 8 + 1 + 4;

/// What a record does.
#[derive(Debug, Clone, PartialEq)]
pub enum WalOp {
    /// Insert rows (replacing existing ids).
    Upsert { ids: Vec<u64>, vectors: Vec<f32> },
    /// Delete ids.
    Delete { ids: Vec<u64> },
}

impl WalOp {
    /// Rows in the op (= sequence numbers it takes).
    pub fn len(&self) -> usize {
        match self {
            WalOp::Upsert { ids, .. } | WalOp::Delete { ids } => ids.len(),
        }
    }
}

/// A logged op with its first sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    pub first_seq: Seq,
    pub op: WalOp,
}

impl WalRecord {
    /// Sequence number of the record's last row.
    pub fn last_seq(&self) -> Seq {
        self.first_seq + self.op.len() as Seq - 1
    }
}

pub(super) fn encode(record: &WalRecord, dim: usize) -> Vec<u8> {
    let (kind, ids, vectors): (u8, &[u64], &[f32]) = match &record.op {
        WalOp::Upsert { ids, vectors } => (KIND_UPSERT, ids, vectors),
        WalOp::Delete { ids } => (KIND_DELETE, ids, &[]),
    };
    debug_assert_eq!(
        vectors.len(),
        if kind == KIND_UPSERT {
            ids.len() * dim
        } else {
            0
        }
    );
    let payload_len = FIXED + ids.len() * 8 + vectors.len() * 4;
    let mut buf = Vec::with_capacity(HEADER + payload_len);
    buf.extend_from_slice(&(payload_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&record.first_seq.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    ids.iter()
        .for_each(|id| buf.extend_from_slice(&id.to_le_bytes()));
    buf.extend_from_slice(bytemuck::cast_slice(vectors));
    let crc = crc32fast::hash(&buf[HEADER..]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// Decodes the record at the start of `bytes`: `Some((record, bytes used))`, or `None` when
/// the bytes are torn or corrupt.
pub(super) fn decode(bytes: &[u8], dim: usize) -> Option<(WalRecord, usize)> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let payload = bytes.get(HEADER..HEADER + len)?;
    if len < FIXED || crc32fast::hash(payload) != crc {
        return None;
    }
    let first_seq = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    let kind = payload[8];
    let n = u32::from_le_bytes(payload[9..13].try_into().ok()?) as usize;
    let ids_end = FIXED + n * 8;
    let expected = match kind {
        KIND_UPSERT => ids_end + n * dim * 4,
        KIND_DELETE => ids_end,
        _ => return None,
    };
    if n == 0 || expected != len {
        return None;
    }
    let ids: Vec<u64> = payload[FIXED..ids_end]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let op = if kind == KIND_UPSERT {
        let vectors: Vec<f32> = payload[ids_end..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
            .collect();
        WalOp::Upsert { ids, vectors }
    } else {
        WalOp::Delete { ids }
    };
    Some((WalRecord { first_seq, op }, HEADER + len))
}

/// The error of every write once the log has failed: of the same kind as the failure (a
/// full disk stays `out_of_disk`).
fn read_only(context: &str, poison: &Poison) -> EngineError {
    EngineError::from_io(
        context,
        io::Error::new(
            poison.kind,
            format!(
                "log is read-only after an earlier failure until the server restarts: {}",
                poison.reason
            ),
        ),
    )
}

/// Why the log refuses writes.
struct Poison {
    reason: String,
    kind: io::ErrorKind,
}

impl Poison {
    fn of(e: &io::Error) -> Self {
        Self {
            reason: e.to_string(),
            kind: if is_out_of_disk(e) {
                io::ErrorKind::StorageFull
            } else {
                e.kind()
            },
        }
    }
}

struct Writer {
    file: File,
    bytes: u64,
    next_seq: Seq,
    /// Last sequence written to a file (not necessarily synced).
    written: Seq,
    /// (first seq, path) of every live file, oldest first; the last one is being written.
    files: Vec<(Seq, PathBuf)>,
    /// Set after a failed write or fsync: the log refuses further writes until reopened.
    poisoned: Option<Poison>,
}

/// The log's directory: its path and, held open, the directory itself.
struct LogDir {
    path: PathBuf,
    handle: File,
}

impl LogDir {
    fn open(path: &Path) -> EngineResult<Self> {
        let handle =
            File::open(path).map_err(EngineError::io(format!("open {}", path.display())))?;
        Ok(Self {
            path: path.to_path_buf(),
            handle,
        })
    }

    /// Whatever is at the path now is not this directory (it was renamed away: dropped).
    fn moved(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            match (fs::metadata(&self.path), self.handle.metadata()) {
                (Ok(now), Ok(ours)) => now.dev() != ours.dev() || now.ino() != ours.ino(),
                _ => true,
            }
        }
        #[cfg(not(unix))]
        {
            !self.path.is_dir()
        }
    }

    /// Creates (or opens) `name` for appending, in this directory wherever it is now.
    fn append_file(&self, name: &str) -> io::Result<File> {
        #[cfg(unix)]
        {
            use std::os::fd::{AsRawFd, FromRawFd};
            let cname = std::ffi::CString::new(name)?;
            // SAFETY: the directory descriptor stays open for the call (`self.handle` is
            // borrowed) and `cname` is a NUL-terminated string; openat keeps neither.
            let fd = unsafe {
                libc::openat(
                    self.handle.as_raw_fd(),
                    cname.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
                    0o644 as libc::c_uint,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just returned by openat: a valid descriptor nothing else owns.
            Ok(unsafe { File::from_raw_fd(fd) })
        }
        #[cfg(not(unix))]
        {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path.join(name))
        }
    }

    fn sync(&self) -> EngineResult<()> {
        self.handle
            .sync_all()
            .map_err(EngineError::io(format!("fsync {}", self.path.display())))
    }
}

/// The write-ahead log of one collection.
pub struct Wal {
    dir: LogDir,
    dim: usize,
    policy: FsyncPolicy,
    max_file_bytes: u64,
    writer: Mutex<Writer>,
    sync_lock: Mutex<()>,
    durable: Mutex<Seq>,
    durable_cv: Condvar,
}

fn file_name(first_seq: Seq) -> String {
    format!("{first_seq:020}.wal")
}

impl Wal {
    /// Opens (or creates) the log in `dir`, returning it with every record after `checkpoint`.
    pub fn open(
        dir: &Path,
        dim: usize,
        policy: FsyncPolicy,
        max_file_bytes: u64,
        checkpoint: Seq,
    ) -> EngineResult<(Wal, Vec<WalRecord>)> {
        create_dir_durable(dir)?;
        let mut files: Vec<(Seq, PathBuf)> = Vec::new();
        for entry in
            fs::read_dir(dir).map_err(EngineError::io(format!("list {}", dir.display())))?
        {
            let path = entry.map_err(EngineError::io("list wal"))?.path();
            let seq = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<Seq>().ok());
            if let Some(seq) = seq {
                files.push((seq, path));
            }
        }
        files.sort();
        let mut records = Vec::new();
        let mut last = checkpoint;
        let mut keep = Vec::new();
        let mut torn = false;
        for (first, path) in files {
            if torn {
                // Nothing can follow a torn record: writes are sequential and files are
                // synced before the next starts. Remove leftovers so they are never replayed.
                fs::remove_file(&path)
                    .map_err(EngineError::io(format!("remove {}", path.display())))?;
                continue;
            }
            let bytes =
                fs::read(&path).map_err(EngineError::io(format!("read {}", path.display())))?;
            let mut at = 0;
            while at < bytes.len() {
                match decode(&bytes[at..], dim) {
                    Some((record, used))
                        if record.first_seq > last || record.last_seq() <= checkpoint =>
                    {
                        if record.last_seq() > checkpoint {
                            last = record.last_seq();
                            records.push(record);
                        }
                        at += used;
                    }
                    _ => {
                        torn = true;
                        break;
                    }
                }
            }
            if torn {
                tracing::warn!(path = %path.display(), offset = at, "truncating torn WAL tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(EngineError::io(format!("open {}", path.display())))?;
                f.set_len(at as u64)
                    .and_then(|_| f.sync_all())
                    .map_err(EngineError::io(format!("truncate {}", path.display())))?;
            }
            keep.push((first, path));
        }
        let next_seq = last + 1;
        let path = dir.join(file_name(next_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(EngineError::io(format!("open {}", path.display())))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        if keep.last().map(|(s, _)| *s) != Some(next_seq) {
            keep.push((next_seq, path));
        }
        sync_dir(dir)?;
        let wal = Wal {
            dir: LogDir::open(dir)?,
            dim,
            policy,
            max_file_bytes,
            writer: Mutex::new(Writer {
                file,
                bytes,
                next_seq,
                written: last,
                files: keep,
                poisoned: None,
            }),
            sync_lock: Mutex::new(()),
            durable: Mutex::new(last),
            durable_cv: Condvar::new(),
        };
        Ok((wal, records))
    }

    /// Appends `op`, calls `on_written` with the record while still holding the log's order
    /// (so records reach it in sequence order), and returns once the record is durable per
    /// the fsync policy. Returns the record's last sequence number.
    pub fn append(&self, op: WalOp, on_written: impl FnOnce(WalRecord)) -> EngineResult<Seq> {
        let last = {
            let mut w = self.writer.lock();
            if let Some(poison) = &w.poisoned {
                return Err(read_only("write-ahead log", poison));
            }
            let record = WalRecord {
                first_seq: w.next_seq,
                op,
            };
            let buf = encode(&record, self.dim);
            if w.bytes > 0 && w.bytes + buf.len() as u64 > self.max_file_bytes {
                self.rotate(&mut w)?;
            }
            if let Err(e) = w.file.write_all(&buf) {
                // Cut the partial record away so later records never follow garbage.
                let keep = w.bytes;
                if w.file.set_len(keep).is_err() {
                    w.poisoned = Some(Poison::of(&e));
                }
                return Err(EngineError::io("append to the write-ahead log")(e));
            }
            w.bytes += buf.len() as u64;
            let last = record.last_seq();
            w.next_seq = last + 1;
            w.written = last;
            on_written(record);
            last
        };
        match self.policy {
            FsyncPolicy::Always => self.sync_to(last)?,
            FsyncPolicy::Never => self.mark_durable(last),
        }
        Ok(last)
    }

    fn rotate(&self, w: &mut Writer) -> EngineResult<()> {
        if let Err(e) = w.file.sync_data() {
            w.poisoned = Some(Poison::of(&e));
            return Err(EngineError::io("fsync the write-ahead log")(e));
        }
        self.mark_durable(w.written);
        if self.dir.moved() {
            // Dropped: the record is not written.
            return Err(EngineError::Closed);
        }
        let name = file_name(w.next_seq);
        let path = self.dir.path.join(&name);
        w.file = self.dir.append_file(&name).map_err(|e| {
            if self.dir.moved() {
                EngineError::Closed
            } else {
                EngineError::io(format!("open {}", path.display()))(e)
            }
        })?;
        w.bytes = 0;
        w.files.push((w.next_seq, path));
        self.dir.sync()
    }

    fn mark_durable(&self, seq: Seq) {
        let mut d = self.durable.lock();
        if seq > *d {
            *d = seq;
            self.durable_cv.notify_all();
        }
    }

    /// Makes every record up to `seq` durable (one fsync serves all writers waiting).
    pub fn sync_to(&self, seq: Seq) -> EngineResult<()> {
        if *self.durable.lock() >= seq {
            return Ok(());
        }
        let _leader = self.sync_lock.lock();
        if *self.durable.lock() >= seq {
            return Ok(());
        }
        let (file, written) = {
            let w = self.writer.lock();
            // After a failed fsync the kernel may have dropped the dirty pages and reports the
            // error only once: a second fsync succeeding proves nothing, so nothing written
            // since is acknowledged.
            if let Some(poison) = &w.poisoned {
                return Err(read_only("fsync the write-ahead log", poison));
            }
            let file = w
                .file
                .try_clone()
                .map_err(EngineError::io("clone the WAL handle"))?;
            (file, w.written)
        };
        if let Err(e) = file.sync_data() {
            self.writer.lock().poisoned = Some(Poison::of(&e));
            return Err(EngineError::io("fsync the write-ahead log")(e));
        }
        self.mark_durable(written);
        Ok(())
    }

    /// Highest durable sequence number.
    #[cfg(test)]
    pub fn durable_seq(&self) -> Seq {
        *self.durable.lock()
    }

    /// Blocks until `seq` is durable; false if the log failed meanwhile.
    ///
    /// Locks are taken writer first, then durable (a rotation marks the old file durable
    /// under the writer lock), so the writer lock is never waited for while holding the
    /// durable one.
    pub fn wait_durable(&self, seq: Seq) -> bool {
        loop {
            {
                let mut d = self.durable.lock();
                if *d >= seq {
                    return true;
                }
                self.durable_cv
                    .wait_for(&mut d, std::time::Duration::from_millis(50));
                if *d >= seq {
                    return true;
                }
            }
            if self.writer.lock().poisoned.is_some() {
                return false;
            }
        }
    }

    /// Deletes the files whose records are all at or below `seq` (covered by a checkpoint).
    pub fn truncate_through(&self, seq: Seq) -> EngineResult<()> {
        let mut w = self.writer.lock();
        let mut removed = 0;
        while w.files.len() > 1 && w.files[1].0 <= seq + 1 {
            let (_, path) = w.files.remove(0);
            fs::remove_file(&path)
                .map_err(EngineError::io(format!("remove {}", path.display())))?;
            removed += 1;
        }
        drop(w);
        if removed > 0 {
            self.dir.sync()?;
        }
        Ok(())
    }

    /// Bytes in the log's files.
    pub fn size_bytes(&self) -> u64 {
        let w = self.writer.lock();
        w.files
            .iter()
            .filter_map(|(_, p)| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn upsert(ids: &[u64], dim: usize) -> WalOp {
        WalOp::Upsert {
            ids: ids.to_vec(),
            vectors: ids.iter().flat_map(|&id| vec![id as f32; dim]).collect(),
        }
    }

    #[test]
    fn replays_after_checkpoint_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, recs) = Wal::open(dir.path(), 3, FsyncPolicy::Always, 200, 0).unwrap();
        assert!(recs.is_empty());
        let mut seen = Vec::new();
        for i in 0..10u64 {
            let last = wal
                .append(upsert(&[i * 2, i * 2 + 1], 3), |r| seen.push(r.first_seq))
                .unwrap();
            assert_eq!(last, i * 2 + 2);
        }
        assert_eq!(seen, (0..10).map(|i| i * 2 + 1).collect::<Vec<_>>());
        wal.append(WalOp::Delete { ids: vec![4] }, |_| {}).unwrap();
        assert_eq!(wal.durable_seq(), 21);
        drop(wal);
        let (wal, recs) = Wal::open(dir.path(), 3, FsyncPolicy::Always, 200, 10).unwrap();
        assert_eq!(recs.first().unwrap().first_seq, 11);
        assert_eq!(recs.last().unwrap().op, WalOp::Delete { ids: vec![4] });
        let files_before = fs::read_dir(dir.path()).unwrap().count();
        assert!(files_before > 2, "rotation should have made several files");
        wal.truncate_through(16).unwrap();
        drop(wal);
        let (_, recs) = Wal::open(dir.path(), 3, FsyncPolicy::Always, 200, 16).unwrap();
        assert_eq!(recs.first().unwrap().first_seq, 17);
        assert_eq!(recs.last().unwrap().last_seq(), 21);
    }

    /// After a failed fsync the log refuses writes, with an error of the failure's kind: a
    /// full disk stays `out_of_disk` (507), anything else `io_error`.
    #[test]
    fn a_log_read_only_after_a_full_disk_says_so() {
        let full = read_only(
            "write-ahead log",
            &Poison::of(&io::Error::from_raw_os_error(28)),
        );
        assert_eq!(full.code(), "out_of_disk");
        assert!(
            full.to_string().contains("until the server restarts"),
            "{full}"
        );
        let other = read_only(
            "write-ahead log",
            &Poison::of(&io::Error::from_raw_os_error(5)),
        );
        assert_eq!(other.code(), "io_error");
    }

    /// The applier waits for durability while writers rotate files: neither may wait for the
    /// other's lock while holding its own.
    #[test]
    fn waiting_for_durability_while_files_rotate_never_deadlocks() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 2, FsyncPolicy::Never, 64, 0).unwrap();
        let wal = std::sync::Arc::new(wal);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for i in 0..300u64 {
                        wal.append(upsert(&[t * 10_000 + i], 2), |_| {}).unwrap();
                    }
                })
            })
            .collect();
        let waiter = {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for seq in 1..=900 {
                    assert!(wal.wait_durable(seq));
                }
                done_tx.send(()).unwrap();
            })
        };
        done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("appends and wait_durable deadlocked");
        waiter.join().unwrap();
        writers.into_iter().for_each(|w| w.join().unwrap());
    }

    /// A dropped collection's directory is renamed away and a new collection may take the
    /// name: the old log never starts a file at the path.
    #[test]
    fn a_log_whose_directory_moved_never_writes_at_its_old_path() {
        let root = tempfile::tempdir().unwrap();
        let (old, new, moved) = (
            root.path().join("c/wal"),
            root.path().join("c"),
            root.path().join(".dropped-c"),
        );
        let (wal, _) = Wal::open(&old, 3, FsyncPolicy::Always, 100, 0).unwrap();
        wal.append(upsert(&[1, 2], 3), |_| {}).unwrap();
        fs::rename(&new, &moved).unwrap();
        fs::create_dir_all(&old).unwrap();
        // The file is full: the next append must start a file, and finds the directory moved.
        let err = wal.append(upsert(&[3, 4], 3), |_| {}).unwrap_err();
        assert!(matches!(err, EngineError::Closed), "{err}");
        assert_eq!(fs::read_dir(&old).unwrap().count(), 0);
        // A file started while the rename happens lands in the moved directory.
        wal.dir.append_file("x.wal").unwrap();
        assert!(moved.join("wal/x.wal").exists());
        assert!(!old.join("x.wal").exists());
    }

    proptest! {
        #[test]
        fn torn_tail_is_cut_and_appends_continue(cut in 1usize..37) {
            let dir = tempfile::tempdir().unwrap();
            let (wal, _) = Wal::open(dir.path(), 2, FsyncPolicy::Never, 1 << 20, 0).unwrap();
            for i in 0..5u64 { wal.append(upsert(&[i], 2), |_| {}).unwrap(); }
            drop(wal);
            let path = dir.path().join(file_name(1));
            let len = fs::metadata(&path).unwrap().len();
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(len - cut as u64).unwrap();
            let (wal, recs) = Wal::open(dir.path(), 2, FsyncPolicy::Never, 1 << 20, 0).unwrap();
            prop_assert_eq!(recs.len(), 4);
            prop_assert_eq!(wal.append(upsert(&[99], 2), |_| {}).unwrap(), 5);
            drop(wal);
            let (_, recs) = Wal::open(dir.path(), 2, FsyncPolicy::Never, 1 << 20, 0).unwrap();
            prop_assert_eq!(recs.len(), 5);
            prop_assert_eq!(&recs[4].op, &upsert(&[99], 2));
        }

        #[test]
        fn corruption_stops_replay(flip in 0usize..100) {
            let dir = tempfile::tempdir().unwrap();
            let (wal, _) = Wal::open(dir.path(), 2, FsyncPolicy::Never, 1 << 20, 0).unwrap();
            for i in 0..3u64 { wal.append(upsert(&[i], 2), |_| {}).unwrap(); }
            drop(wal);
            let path = dir.path().join(file_name(1));
            let mut bytes = fs::read(&path).unwrap();
            let i = flip % bytes.len();
            bytes[i] ^= 0x40;
            fs::write(&path, &bytes).unwrap();
            let (_, recs) = Wal::open(dir.path(), 2, FsyncPolicy::Never, 1 << 20, 0).unwrap();
            let record_len = bytes.len() / 3;
            prop_assert_eq!(recs.len(), i / record_len);
        }
    }
}
