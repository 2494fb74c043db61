//! The change log: the retained, ordered record of every applied write, which the sync feed
//! (`GET /v1/collections/{name}/changes`) serves to browser and edge caches.
//!
//! The WAL is deleted at each checkpoint; this log outlives it, bounded by a [`Retention`]
//! (records, bytes, age). Layout: `changes/<first-seq, 20 digits>.log` files holding the
//! WAL's own record encoding (length, CRC-32, first sequence, kind, ids, vectors). The
//! applier appends each record after applying it; a file is fsynced when the next starts,
//! and the whole log before the WAL is truncated, so a checkpoint never leaves a change that
//! is in neither. On open, a torn tail is cut and the WAL records replayed after the
//! checkpoint are appended where the log stops.
//!
//! Everything after the **horizon** up to the **head** is retained. A reader asking for
//! changes since a sequence below the horizon (dropped by retention, or lost), or above the
//! head, gets [`Read::SnapshotRequired`]: never a feed with a hole in it.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use proxima_core::consistency::Seq;
use proxima_core::sync::{Change, ChangeRecord};
use tokio::sync::watch;

use super::error::{EngineError, EngineResult};
use super::fs::{create_dir_durable, sync_dir};
use super::wal::{decode, encode, WalOp, WalRecord};

/// How much of the change log is kept. Whole files go, oldest first, once any bound is
/// passed; the file being written always stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most changes (rows) kept.
    pub max_records: u64,
    /// Most bytes of log files kept.
    pub max_bytes: u64,
    /// Changes older than this go.
    pub max_age: Duration,
}

impl Default for Retention {
    /// 1,000,000 changes, 1 GiB, 7 days.
    fn default() -> Self {
        Self {
            max_records: 1_000_000,
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Retention {
    /// Size at which a log file is closed: an eighth of the byte bound (so retention drops
    /// at most about an eighth too much), between 1 KiB and 64 MiB.
    fn file_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(1 << 10, 64 << 20)
    }
}

/// One WAL record in a log file.
#[derive(Debug, Clone, Copy)]
struct Entry {
    first_seq: Seq,
    rows: u32,
    offset: u64,
    len: u32,
}

struct LogFile {
    path: PathBuf,
    file: Arc<File>,
    bytes: u64,
    rows: u64,
    entries: Vec<Entry>,
    /// When the last record was appended.
    modified: SystemTime,
}

impl LogFile {
    fn last_seq(&self) -> Option<Seq> {
        self.entries.last().map(|e| e.first_seq + e.rows as Seq - 1)
    }
}

struct State {
    files: VecDeque<LogFile>,
    /// Every change after this is retained (up to the head).
    horizon: Seq,
    /// The last change in the log.
    head: Seq,
    bytes: u64,
    rows: u64,
}

/// What the feed's reader gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// Changes with `since < seq <= until`, ascending; `has_more` when the head is further.
    Changes {
        records: Vec<ChangeRecord>,
        until: Seq,
        has_more: bool,
    },
    /// `since` is below the horizon or above the head.
    SnapshotRequired { horizon: Seq, head: Seq },
}

/// Sizes of the log (metrics, `describe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LogStats {
    pub horizon: Seq,
    pub head: Seq,
    pub records: u64,
    pub bytes: u64,
    pub files: usize,
}

/// What waiters watch: the head, and whether the log is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: Seq,
    pub open: bool,
}

/// The change log of one collection.
pub struct ChangeLog {
    dir: PathBuf,
    dim: usize,
    retention: Retention,
    state: RwLock<State>,
    /// Serialises appends and resets (the applier, and recovery before it starts).
    writer: Mutex<()>,
    head: watch::Sender<Head>,
}

fn file_name(first_seq: Seq) -> String {
    format!("{first_seq:020}.log")
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> EngineError {
    EngineError::io(context)
}

impl ChangeLog {
    /// Opens (or creates) the log in `dir`. A log with no files starts at `base`: its horizon
    /// and head are `base` (the collection's checkpoint; the WAL's records after it are
    /// appended next by [`ChangeLog::catch_up`]).
    pub fn open(dir: &Path, dim: usize, retention: Retention, base: Seq) -> EngineResult<Self> {
        create_dir_durable(dir)?;
        let mut names: Vec<(Seq, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(format!("list {}", dir.display())))? {
            let path = entry.map_err(io(format!("list {}", dir.display())))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match name
                .strip_suffix(".log")
                .and_then(|n| n.parse::<Seq>().ok())
            {
                Some(seq) => names.push((seq, path)),
                None if name.ends_with(".tmp") => {
                    let _ = fs::remove_file(&path);
                }
                None => {}
            }
        }
        names.sort();
        let mut files: VecDeque<LogFile> = VecDeque::new();
        let mut broken = false;
        for (first, path) in names {
            if broken {
                // Nothing may follow a torn or inconsistent file.
                fs::remove_file(&path).map_err(io(format!("remove {}", path.display())))?;
                continue;
            }
            let expected = files
                .back()
                .and_then(LogFile::last_seq)
                .map(|s| s + 1)
                .unwrap_or(first);
            let (log, torn) = Self::scan(&path, dim, expected)?;
            broken = torn;
            if log.entries.is_empty() {
                fs::remove_file(&path).map_err(io(format!("remove {}", path.display())))?;
                continue;
            }
            files.push_back(log);
        }
        let horizon = files
            .front()
            .and_then(|f| f.entries.first())
            .map_or(base, |e| e.first_seq - 1);
        let head = files.back().and_then(LogFile::last_seq).unwrap_or(base);
        let (bytes, rows) = files
            .iter()
            .fold((0, 0), |(b, r), f| (b + f.bytes, r + f.rows));
        let log = ChangeLog {
            dir: dir.to_path_buf(),
            dim,
            retention,
            state: RwLock::new(State {
                files,
                horizon,
                head,
                bytes,
                rows,
            }),
            writer: Mutex::new(()),
            head: watch::Sender::new(Head {
                seq: head,
                open: true,
            }),
        };
        log.enforce_retention();
        Ok(log)
    }

    /// Reads one file's valid records (whose sequences continue from `expected`), cutting a
    /// torn or inconsistent tail. Returns whether the file was cut.
    fn scan(path: &Path, dim: usize, expected: Seq) -> EngineResult<(LogFile, bool)> {
        let bytes = fs::read(path).map_err(io(format!("read {}", path.display())))?;
        let mut entries = Vec::new();
        let mut at = 0usize;
        let mut next = expected;
        let mut rows = 0u64;
        while at < bytes.len() {
            match decode(&bytes[at..], dim) {
                Some((record, used)) if record.first_seq == next => {
                    let n = record.op.len() as u32;
                    entries.push(Entry {
                        first_seq: record.first_seq,
                        rows: n,
                        offset: at as u64,
                        len: used as u32,
                    });
                    next = record.last_seq() + 1;
                    rows += n as u64;
                    at += used;
                }
                _ => break,
            }
        }
        let torn = at < bytes.len();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io(format!("open {}", path.display())))?;
        if torn {
            tracing::warn!(path = %path.display(), offset = at, "cutting the change log's torn tail");
            file.set_len(at as u64)
                .and_then(|_| file.sync_all())
                .map_err(io(format!("truncate {}", path.display())))?;
        }
        let modified = file
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now());
        Ok((
            LogFile {
                path: path.to_path_buf(),
                file: Arc::new(file),
                bytes: at as u64,
                rows,
                entries,
                modified,
            },
            torn,
        ))
    }

    /// Brings the log level with the WAL records replayed on open (those after the
    /// checkpoint), given the sequence the collection recovered to. Returns `false` when the
    /// log held changes the collection does not have (a WAL tail lost under `--fsync never`):
    /// the log is then emptied at `applied`, and the caller must give the collection a new
    /// handle, since caches may hold changes that no longer exist.
    pub fn catch_up(&self, replayed: &[WalRecord], applied: Seq) -> EngineResult<bool> {
        let head = self.state.read().head;
        if head > applied {
            tracing::warn!(dir = %self.dir.display(), head, applied, "the change log is ahead of the recovered collection; starting it again");
            self.reset(applied)?;
            return Ok(false);
        }
        for record in replayed {
            if record.last_seq() > self.state.read().head {
                self.append(record)?;
            }
        }
        // Behind the collection with nothing left to replay (its files lost or damaged): a
        // reader at the old head must not be told it is up to date.
        let head = self.state.read().head;
        if head < applied {
            tracing::warn!(dir = %self.dir.display(), head, applied, "the change log is behind the recovered collection; it starts again at the collection's sequence");
            self.reset(applied)?;
        }
        Ok(true)
    }

    /// Appends a record (applier thread). A record that does not follow the head (changes
    /// went missing: the log's own write failed earlier) starts the log again after it.
    pub fn append(&self, record: &WalRecord) -> EngineResult<()> {
        let _writer = self.writer.lock();
        let head = self.state.read().head;
        if record.last_seq() <= head {
            return Ok(());
        }
        if record.first_seq != head + 1 {
            tracing::warn!(dir = %self.dir.display(), head, next = record.first_seq, "gap in the change log; starting it again");
            self.reset_locked(record.first_seq - 1)?;
        }
        let buf = encode(record, self.dim);
        let result = self.write_locked(record, &buf);
        if let Err(e) = &result {
            // The feed cannot serve across a lost record: readers behind it need a snapshot.
            tracing::error!(dir = %self.dir.display(), error = %e, "change log write failed; the feed restarts after this record");
            self.reset_locked(record.last_seq())?;
        }
        self.enforce_retention();
        Ok(())
    }

    fn write_locked(&self, record: &WalRecord, buf: &[u8]) -> EngineResult<()> {
        let (file, offset) = {
            let st = self.state.read();
            match st.files.back() {
                Some(f) if f.bytes + buf.len() as u64 <= self.retention.file_bytes() => {
                    (Some(f.file.clone()), f.bytes)
                }
                _ => (None, 0),
            }
        };
        let file = match file {
            Some(f) => f,
            None => self.start_file(record.first_seq)?,
        };
        (&*file)
            .write_all(buf)
            .map_err(io(format!("append to {}", self.dir.display())))?;
        let mut st = self.state.write();
        let last = record.last_seq();
        let rows = record.op.len() as u64;
        let f = st.files.back_mut().ok_or_else(|| {
            EngineError::io("change log")(std::io::Error::other("no file to append to"))
        })?;
        f.entries.push(Entry {
            first_seq: record.first_seq,
            rows: rows as u32,
            offset,
            len: buf.len() as u32,
        });
        f.bytes += buf.len() as u64;
        f.rows += rows;
        f.modified = SystemTime::now();
        st.bytes += buf.len() as u64;
        st.rows += rows;
        st.head = last;
        drop(st);
        self.head.send_replace(Head {
            seq: last,
            open: true,
        });
        Ok(())
    }

    /// Closes the current file (fsync) and starts one whose first record is `first_seq`.
    fn start_file(&self, first_seq: Seq) -> EngineResult<Arc<File>> {
        if let Some(f) = self.state.read().files.back() {
            f.file
                .sync_data()
                .map_err(io(format!("fsync {}", f.path.display())))?;
        }
        let path = self.dir.join(file_name(first_seq));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(format!("create {}", path.display())))?;
        sync_dir(&self.dir)?;
        let file = Arc::new(file);
        self.state.write().files.push_back(LogFile {
            path,
            file: file.clone(),
            bytes: 0,
            rows: 0,
            entries: Vec::new(),
            modified: SystemTime::now(),
        });
        Ok(file)
    }

    /// Empties the log: nothing at or below `horizon` can be served from it any more.
    pub fn reset(&self, horizon: Seq) -> EngineResult<()> {
        let _writer = self.writer.lock();
        self.reset_locked(horizon)
    }

    fn reset_locked(&self, horizon: Seq) -> EngineResult<()> {
        let files = {
            let mut st = self.state.write();
            st.horizon = horizon;
            st.head = horizon;
            st.bytes = 0;
            st.rows = 0;
            std::mem::take(&mut st.files)
        };
        for f in files {
            fs::remove_file(&f.path).map_err(io(format!("remove {}", f.path.display())))?;
        }
        self.head.send_replace(Head {
            seq: horizon,
            open: true,
        });
        Ok(())
    }

    /// Makes every appended record durable (before the WAL that also holds them goes).
    pub fn sync(&self) -> EngineResult<()> {
        let file = self.state.read().files.back().map(|f| f.file.clone());
        match file {
            Some(f) => f.sync_data().map_err(io(format!(
                "fsync the change log in {}",
                self.dir.display()
            ))),
            None => Ok(()),
        }
    }

    /// Drops the oldest files while a retention bound is passed (never the current file).
    fn enforce_retention(&self) {
        let now = SystemTime::now();
        let r = self.retention;
        let mut gone = Vec::new();
        {
            let mut st = self.state.write();
            while st.files.len() > 1 {
                let oldest = &st.files[0];
                let old = now
                    .duration_since(oldest.modified)
                    .is_ok_and(|age| age > r.max_age);
                if !(st.rows > r.max_records || st.bytes > r.max_bytes || old) {
                    break;
                }
                let Some(f) = st.files.pop_front() else { break };
                st.rows -= f.rows;
                st.bytes -= f.bytes;
                if let Some(last) = f.last_seq() {
                    st.horizon = last;
                }
                gone.push(f.path);
            }
        }
        for path in gone {
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a change log file");
            }
        }
    }

    /// Changes with `since < seq`, at most `limit` of them.
    pub fn read(&self, since: Seq, limit: usize) -> EngineResult<Read> {
        // Spans to read, copied out under the lock; the reads happen after it (files dropped
        // by retention meanwhile stay readable through their open handles).
        let mut spans: Vec<(Arc<File>, Entry)> = Vec::new();
        let (head, horizon) = {
            let st = self.state.read();
            if since < st.horizon || since > st.head {
                return Ok(Read::SnapshotRequired {
                    horizon: st.horizon,
                    head: st.head,
                });
            }
            let want = since + 1;
            let mut rows = 0usize;
            // The first file whose records reach past `since`.
            let start = st
                .files
                .partition_point(|f| f.last_seq().is_some_and(|l| l < want));
            'files: for f in st.files.iter().skip(start) {
                let first = f
                    .entries
                    .partition_point(|e| e.first_seq + e.rows as Seq - 1 < want);
                for e in &f.entries[first..] {
                    if rows >= limit {
                        break 'files;
                    }
                    rows += (e.first_seq + e.rows as Seq - want.max(e.first_seq)) as usize;
                    spans.push((f.file.clone(), *e));
                }
            }
            (st.head, st.horizon)
        };
        let mut records = Vec::with_capacity(limit.min(4096));
        let mut buf = Vec::new();
        for (file, e) in spans {
            buf.resize(e.len as usize, 0);
            file.read_exact_at(&mut buf, e.offset)
                .map_err(io(format!("read the change log in {}", self.dir.display())))?;
            let Some((record, _)) =
                decode(&buf, self.dim).filter(|(r, _)| r.first_seq == e.first_seq)
            else {
                // Checked when it was written or opened: a change underneath us on disk.
                tracing::error!(dir = %self.dir.display(), seq = e.first_seq, "change log record unreadable");
                return Ok(Read::SnapshotRequired { horizon, head });
            };
            let dim = self.dim;
            for i in 0..record.op.len() {
                let seq = record.first_seq + i as Seq;
                if seq <= since || records.len() >= limit {
                    continue;
                }
                let change = match &record.op {
                    WalOp::Upsert { ids, vectors } => Change::Upsert {
                        id: ids[i],
                        vector: vectors[i * dim..(i + 1) * dim].to_vec(),
                    },
                    WalOp::Delete { ids } => Change::Delete { id: ids[i] },
                };
                records.push(ChangeRecord { seq, change });
            }
        }
        // Fewer than `limit`: everything up to the head was read.
        let until = match records.last() {
            Some(r) if records.len() >= limit => r.seq,
            _ => head,
        };
        Ok(Read::Changes {
            records,
            until,
            has_more: until < head,
        })
    }

    /// The last change in the log.
    pub fn head(&self) -> Seq {
        self.state.read().head
    }

    /// A receiver that sees the head move (and the log close).
    pub fn subscribe(&self) -> watch::Receiver<Head> {
        self.head.subscribe()
    }

    /// Live-mode waiters of this log (receivers).
    pub fn waiters(&self) -> usize {
        self.head.receiver_count()
    }

    /// Wakes every waiter with the log closed (the collection is being dropped or closed).
    pub fn close(&self) {
        let seq = self.head();
        self.head.send_replace(Head { seq, open: false });
    }

    pub fn stats(&self) -> LogStats {
        let st = self.state.read();
        LogStats {
            horizon: st.horizon,
            head: st.head,
            records: st.rows,
            bytes: st.bytes,
            files: st.files.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(first_seq: Seq, ids: &[u64]) -> WalRecord {
        WalRecord {
            first_seq,
            op: WalOp::Upsert {
                ids: ids.to_vec(),
                vectors: ids.iter().flat_map(|&i| [i as f32, 1.0]).collect(),
            },
        }
    }

    fn del(first_seq: Seq, ids: &[u64]) -> WalRecord {
        WalRecord {
            first_seq,
            op: WalOp::Delete { ids: ids.to_vec() },
        }
    }

    fn seqs(read: &Read) -> Vec<Seq> {
        match read {
            Read::Changes { records, .. } => records.iter().map(|r| r.seq).collect(),
            Read::SnapshotRequired { .. } => panic!("{read:?}"),
        }
    }

    #[test]
    fn reads_split_batches_and_page_by_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = ChangeLog::open(dir.path(), 2, Retention::default(), 0).unwrap();
        log.append(&up(1, &[10, 11, 12])).unwrap();
        log.append(&del(4, &[11])).unwrap();
        log.append(&up(5, &[13])).unwrap();
        let all = log.read(0, 100).unwrap();
        assert_eq!(seqs(&all), vec![1, 2, 3, 4, 5]);
        let Read::Changes {
            records,
            until,
            has_more,
        } = log.read(1, 2).unwrap()
        else {
            panic!()
        };
        assert_eq!((records[0].seq, until, has_more), (2, 3, true));
        assert_eq!(
            records[0].change,
            Change::Upsert {
                id: 11,
                vector: vec![11.0, 1.0]
            }
        );
        assert_eq!(log.read(3, 1).unwrap(), log.read(3, 1).unwrap());
        assert_eq!(seqs(&log.read(3, 10).unwrap()), vec![4, 5]);
        // Up to date: an empty batch at the head.
        assert_eq!(
            log.read(5, 10).unwrap(),
            Read::Changes {
                records: vec![],
                until: 5,
                has_more: false
            }
        );
        // Above the head: the client has changes this log never had.
        assert!(matches!(
            log.read(6, 10).unwrap(),
            Read::SnapshotRequired { head: 5, .. }
        ));
    }

    #[test]
    fn the_log_survives_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = ChangeLog::open(dir.path(), 2, Retention::default(), 0).unwrap();
            log.append(&up(1, &[1, 2])).unwrap();
            log.append(&del(3, &[1])).unwrap();
        }
        // A torn record at the end.
        let file = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&[7, 0, 0, 0, 1, 2]).unwrap();
        let log = ChangeLog::open(dir.path(), 2, Retention::default(), 0).unwrap();
        assert_eq!(log.head(), 3);
        assert_eq!(seqs(&log.read(0, 10).unwrap()), vec![1, 2, 3]);
        // Replayed WAL records continue it; ones it already holds are skipped.
        assert!(log.catch_up(&[del(3, &[1]), up(4, &[5])], 4).unwrap());
        assert_eq!(seqs(&log.read(2, 10).unwrap()), vec![3, 4]);
        // A log behind the collection with nothing to replay starts again at its sequence.
        let behind = tempfile::tempdir().unwrap();
        let log2 = ChangeLog::open(behind.path(), 2, Retention::default(), 0).unwrap();
        log2.append(&up(1, &[1])).unwrap();
        assert!(log2.catch_up(&[], 7).unwrap());
        assert!(matches!(
            log2.read(1, 10).unwrap(),
            Read::SnapshotRequired { horizon: 7, .. }
        ));
        // A collection that recovered to less than the log holds: the log starts again.
        assert!(!log.catch_up(&[], 2).unwrap());
        assert_eq!(log.stats().head, 2);
        assert!(matches!(
            log.read(0, 10).unwrap(),
            Read::SnapshotRequired { horizon: 2, .. }
        ));
    }

    #[test]
    fn retention_drops_old_files_and_readers_below_the_horizon_need_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_records: 1000,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let log = ChangeLog::open(dir.path(), 2, retention, 0).unwrap();
        // 64 KiB files; each record is about 8 + 13 + 8 + 8 bytes.
        for i in 0..5000u64 {
            log.append(&up(i + 1, &[i])).unwrap();
        }
        let st = log.stats();
        assert!(st.records <= 1000 + 2000, "{st:?}");
        assert!(st.horizon > 0 && st.files >= 1, "{st:?}");
        assert!(matches!(
            log.read(0, 10).unwrap(),
            Read::SnapshotRequired { .. }
        ));
        let got = seqs(&log.read(st.horizon, 10_000).unwrap());
        assert_eq!(got.len() as u64, st.head - st.horizon);
        assert_eq!(got.first(), Some(&(st.horizon + 1)));
        // Reopened, the same horizon.
        drop(log);
        let log = ChangeLog::open(dir.path(), 2, retention, 0).unwrap();
        assert_eq!(log.stats().horizon, st.horizon);
        assert_eq!(log.stats().head, 5000);
    }

    #[test]
    fn changes_older_than_the_age_bound_go() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_records: u64::MAX,
            max_bytes: 8 << 10,
            max_age: Duration::ZERO,
        };
        let log = ChangeLog::open(dir.path(), 2, retention, 0).unwrap();
        for i in 0..100u64 {
            log.append(&up(i + 1, &[i])).unwrap();
        }
        // Every closed file is older than zero seconds; the current one stays.
        let st = log.stats();
        assert_eq!(st.files, 1, "{st:?}");
        assert!(st.horizon > 0 && st.head == 100, "{st:?}");
    }

    #[test]
    fn a_gap_restarts_the_log_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = ChangeLog::open(dir.path(), 2, Retention::default(), 0).unwrap();
        log.append(&up(1, &[1])).unwrap();
        log.append(&up(5, &[2])).unwrap();
        assert!(matches!(
            log.read(1, 10).unwrap(),
            Read::SnapshotRequired {
                horizon: 4,
                head: 5
            }
        ));
        assert_eq!(seqs(&log.read(4, 10).unwrap()), vec![5]);
    }
}
