//! The index's byte format, shared by native and wasm32 builds (the server builds an index
//! and ships these bytes as a snapshot; the browser stores them in IndexedDB).
//!
//! Everything is little-endian with fixed-width fields (no `usize` on the wire):
//!
//! ```text
//! magic "PRXHNSW\0" | version u32 = 1 | header bytes u32 = 88
//! header: dim, metric (0 l2, 1 ip, 2 cosine), m, m0, ef_construction, ef_search,
//!         quantization (0 none, 1 sq8), flags (1 f32 rows, 2 sq8 codes), slots, live,
//!         tombstones, entry (u32::MAX: none), max_level, clock            (14 × u32)
//!         capacity, capacity_bytes (u64::MAX: none), rng state, seed      (4 × u64)
//! sections, each a u64 byte length, the bytes, zero padding to 8:
//!   levels     u8 per slot (255: free slot)
//!   tombstones bit per slot (bit i of byte i / 8)
//!   ids        u64 per slot
//!   last hit   u32 per slot (the LRU clock)
//!   level 0    u32 × (m0 + 1) per slot: count, then neighbour slots
//!   upper      for each node above level 0, in slot order: u32 × level × (m + 1)
//!   rows       f32 × dim per slot            (flag 1)
//!   codes      u8 × dim per slot             (flag 2)
//!   sq8 params f32 × 3 per slot: min, step, |x̂|²   (flag 2)
//! crc32 (IEEE) of every byte before it, u32
//! ```
//!
//! Loading checks the checksum first, then every count, index and link, so corrupt or
//! truncated bytes give [`Error::Malformed`], never a panic or a graph that points nowhere.
//! The graph is read as it was written: nothing is rebuilt.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Mutex;

use super::graph::{Graph, FREE, MAX_LEVEL};
use super::rows::{Rows, BLOCK_ROWS};
use super::store::{Quantization, VectorStore, SQ8_PARAMS};
use super::{Counters, Hnsw, HnswConfig, IdMap};
use crate::error::{Error, Result};
use crate::metric::Metric;

const MAGIC: &[u8; 8] = b"PRXHNSW\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: u32 = 14 * 4 + 4 * 8;
const NONE_U64: u64 = u64::MAX;
const FLAG_ROWS: u32 = 1;
const FLAG_CODES: u32 = 2;

fn malformed(reason: impl Into<String>) -> Error {
    Error::Malformed {
        format: "index bytes",
        reason: reason.into(),
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn section(&mut self, len: usize, fill: impl FnOnce(&mut Vec<u8>)) {
        self.u64(len as u64);
        let start = self.0.len();
        fill(&mut self.0);
        debug_assert_eq!(self.0.len() - start, len);
        let pad = (8 - len % 8) % 8;
        self.0.resize(self.0.len() + pad, 0);
    }
}

impl Hnsw {
    /// The whole index (graph, vectors, ids, tombstones, LRU stamps) as bytes: see the
    /// [format](self::codec).
    pub fn to_bytes(&self) -> Vec<u8> {
        let slots = self.graph.slots();
        let dim = self.cfg.dim;
        let mut w = Writer(Vec::with_capacity(self.serialized_size_hint()));
        w.0.extend_from_slice(MAGIC);
        w.u32(FORMAT_VERSION);
        w.u32(HEADER_BYTES);
        let flags = if self.store.raw.is_some() {
            FLAG_ROWS
        } else {
            0
        } | if self.store.codes.is_some() {
            FLAG_CODES
        } else {
            0
        };
        for v in [
            dim as u32,
            metric_code(self.cfg.metric),
            self.cfg.m as u32,
            self.graph.m0 as u32,
            self.cfg.ef_construction as u32,
            self.cfg.ef_search as u32,
            match self.cfg.quantization {
                Quantization::None => 0,
                Quantization::Sq8 => 1,
            },
            flags,
            slots as u32,
            self.len() as u32,
            self.tombstones as u32,
            self.entry.unwrap_or(u32::MAX),
            self.max_level as u32,
            self.clock.load(Relaxed),
        ] {
            w.u32(v);
        }
        w.u64(self.cfg.capacity.map_or(NONE_U64, |c| c as u64));
        w.u64(self.cfg.capacity_bytes.unwrap_or(NONE_U64));
        w.u64(self.rng);
        w.u64(self.cfg.seed);
        w.section(slots, |b| b.extend_from_slice(&self.graph.levels));
        w.section(slots.div_ceil(8), |b| {
            let start = b.len();
            b.resize(start + slots.div_ceil(8), 0);
            for (i, _) in self.tomb.iter().enumerate().filter(|(_, &t)| t) {
                b[start + i / 8] |= 1 << (i % 8);
            }
        });
        w.section(slots * 8, |b| write_le(b, &self.ids));
        w.section(slots * 4, |b| {
            for v in &self.last_used {
                b.extend_from_slice(&v.load(Relaxed).to_le_bytes());
            }
        });
        w.section(self.graph.level0.len() * 4, |b| {
            write_le(b, &self.graph.level0)
        });
        let upper_words: usize = self.graph.upper.iter().flatten().map(|l| l.len()).sum();
        w.section(upper_words * 4, |b| {
            for links in self.graph.upper.iter().flatten() {
                write_le(b, links);
            }
        });
        if let Some(raw) = &self.store.raw {
            debug_assert_eq!(raw.len(), slots);
            w.section(raw.len() * dim * 4, |b| {
                raw.blocks().for_each(|r| write_le(b, r))
            });
        }
        if let Some(codes) = &self.store.codes {
            w.section(codes.len() * dim, |b| {
                codes.blocks().for_each(|c| b.extend_from_slice(c))
            });
            let params = &self.store.params;
            w.section(params.len() * SQ8_PARAMS * 4, |b| {
                params.blocks().for_each(|p| write_le(b, p))
            });
        }
        let crc = crate::crc32::hash(&w.0);
        w.u32(crc);
        w.0
    }

    fn serialized_size_hint(&self) -> usize {
        let slots = self.graph.slots();
        128 + slots * (1 + 8 + 4 + 1) + self.graph.level0.len() * 4 + self.store.memory_bytes()
    }

    /// Reads an index written by [`to_bytes`](Hnsw::to_bytes) (by this build or any other:
    /// native, wasm32, either endianness of host).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 16 + HEADER_BYTES as usize + 4 {
            return Err(malformed(format!(
                "{} bytes is too short for an index",
                bytes.len()
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(malformed("not a Proxima index (wrong magic bytes)"));
        }
        let version = le_u32(&bytes[8..]);
        if version != FORMAT_VERSION {
            return Err(malformed(format!(
                "format version {version} is not supported (this build reads version {FORMAT_VERSION})"
            )));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 4);
        let stored = le_u32(tail);
        let actual = crate::crc32::hash(body);
        if stored != actual {
            return Err(malformed(format!(
                "checksum mismatch (stored {stored:08x}, computed {actual:08x}): the bytes are corrupt or truncated"
            )));
        }
        let mut r = Reader {
            bytes: body,
            pos: 12,
        };
        if r.u32()? != HEADER_BYTES {
            return Err(malformed("unexpected header size"));
        }
        let mut h = [0u32; 14];
        for v in &mut h {
            *v = r.u32()?;
        }
        let (dim, metric, m, m0, efc, efs, quant, flags) = (
            h[0] as usize,
            h[1],
            h[2] as usize,
            h[3] as usize,
            h[4] as usize,
            h[5] as usize,
            h[6],
            h[7],
        );
        let (slots, live, tombstones, entry, max_level, clock) = (
            h[8] as usize,
            h[9] as usize,
            h[10] as usize,
            h[11],
            h[12] as usize,
            h[13],
        );
        let capacity = r.u64()?;
        let capacity_bytes = r.u64()?;
        let rng = r.u64()?;
        let seed = r.u64()?;
        let cfg = HnswConfig {
            dim,
            metric: match metric {
                0 => Metric::L2,
                1 => Metric::InnerProduct,
                2 => Metric::Cosine,
                other => return Err(malformed(format!("unknown metric code {other}"))),
            },
            m,
            ef_construction: efc,
            ef_search: efs,
            quantization: match quant {
                0 => Quantization::None,
                1 => Quantization::Sq8,
                other => return Err(malformed(format!("unknown quantization code {other}"))),
            },
            rerank: quant == 1 && flags & FLAG_ROWS != 0,
            capacity: (capacity != NONE_U64)
                .then(|| usize::try_from(capacity).map_err(|_| malformed("capacity too large")))
                .transpose()?,
            capacity_bytes: (capacity_bytes != NONE_U64).then_some(capacity_bytes),
            seed,
        };
        cfg.validate()
            .map_err(|e| malformed(format!("header: {e}")))?;
        if m0 != 2 * m {
            return Err(malformed(format!("m0 = {m0} must be 2 × m = {}", 2 * m)));
        }
        let want_flags = match cfg.quantization {
            Quantization::None => FLAG_ROWS,
            Quantization::Sq8 => FLAG_CODES | if cfg.rerank { FLAG_ROWS } else { 0 },
        };
        if flags != want_flags {
            return Err(malformed(format!(
                "storage flags {flags} do not match the quantization"
            )));
        }
        if max_level > MAX_LEVEL {
            return Err(malformed(format!(
                "max level {max_level} is above {MAX_LEVEL}"
            )));
        }
        // Every section must fit in what is left: no allocation from a header's word alone.
        let per_slot = 1 + 8 + 4 + (m0 + 1) * 4;
        if slots
            .checked_mul(per_slot)
            .is_none_or(|b| b > r.remaining())
        {
            return Err(malformed(format!(
                "{slots} slots do not fit in {} bytes",
                bytes.len()
            )));
        }
        let levels = r.section(slots)?.to_vec();
        let tomb_bits = r.section(slots.div_ceil(8))?;
        let tomb: Vec<bool> = (0..slots)
            .map(|i| tomb_bits[i / 8] >> (i % 8) & 1 == 1)
            .collect();
        let ids: Vec<u64> = read_le(r.section(slots * 8)?);
        let last_used: Vec<AtomicU32> = r
            .section(slots * 4)?
            .chunks_exact(4)
            .map(|c| AtomicU32::new(le_u32(c)))
            .collect();
        let level0: Vec<u32> = read_le(r.section(slots * (m0 + 1) * 4)?);
        let mut upper_words = 0usize;
        for &l in &levels {
            if l != FREE {
                if l as usize > max_level {
                    return Err(malformed(format!(
                        "a node's level {l} is above the max level {max_level}"
                    )));
                }
                upper_words += l as usize * (m + 1);
            }
        }
        let upper_bytes = r.section(
            upper_words
                .checked_mul(4)
                .ok_or_else(|| malformed("upper links too large"))?,
        )?;
        let upper_words: Vec<u32> = read_le(upper_bytes);
        let mut words = upper_words.iter().copied();
        let upper: Vec<Option<Box<[u32]>>> = levels
            .iter()
            .map(|&l| {
                (l != FREE && l > 0).then(|| {
                    words
                        .by_ref()
                        .take(l as usize * (m + 1))
                        .collect::<Vec<u32>>()
                        .into_boxed_slice()
                })
            })
            .collect();
        let vec_len = slots
            .checked_mul(dim)
            .ok_or_else(|| malformed("vectors too large"))?;
        let mut store = VectorStore::new(dim, cfg.metric, cfg.quantization, cfg.rerank);
        if flags & FLAG_ROWS != 0 {
            let raw_bytes = r.section(
                vec_len
                    .checked_mul(4)
                    .ok_or_else(|| malformed("vectors too large"))?,
            )?;
            store.raw = Some(read_rows(raw_bytes, dim));
        }
        if flags & FLAG_CODES != 0 {
            let codes = r.section(vec_len)?;
            store.codes = Some(Rows::from_blocks(
                dim,
                codes.chunks(BLOCK_ROWS * dim).map(<[u8]>::to_vec).collect(),
            ));
            store.params = read_rows(r.section(slots * SQ8_PARAMS * 4)?, SQ8_PARAMS);
        }
        if r.remaining() != 0 {
            return Err(malformed(format!(
                "{} unexpected bytes after the last section",
                r.remaining()
            )));
        }
        let mut graph = Graph {
            m,
            m0,
            levels,
            level0,
            upper,
            in0: Vec::new(),
        };
        check_graph(&graph, &tomb, entry, max_level, live + tombstones)?;
        graph.count_in_links();
        check_vectors_finite(&store)?;
        let mut slot_of = IdMap::default();
        slot_of.reserve(live);
        let mut free = Vec::new();
        let mut seen_tomb = 0;
        for s in 0..slots {
            if graph.levels[s] == FREE {
                if tomb[s] {
                    return Err(malformed(format!("slot {s} is both free and deleted")));
                }
                free.push(s as u32);
            } else if tomb[s] {
                seen_tomb += 1;
            } else if slot_of.insert(ids[s], s as u32).is_some() {
                return Err(malformed(format!("id {} is held twice", ids[s])));
            }
        }
        if slot_of.len() != live || seen_tomb != tombstones {
            return Err(malformed(format!(
                "header counts {live} live and {tombstones} deleted, the slots hold {} and {seen_tomb}",
                slot_of.len()
            )));
        }
        free.reverse();
        Ok(Hnsw {
            level_mult: 1.0 / (cfg.m as f64).ln(),
            rng: rng.max(1),
            cfg,
            store,
            graph,
            ids,
            tomb,
            last_used,
            clock: AtomicU32::new(clock),
            slot_of,
            free,
            tombstones,
            entry: (entry != u32::MAX).then_some(entry),
            max_level,
            counters: Counters::default(),
            scratch: Mutex::new(Vec::new()),
        })
    }
}

fn check_graph(g: &Graph, tomb: &[bool], entry: u32, max_level: usize, nodes: usize) -> Result<()> {
    let slots = g.levels.len();
    if nodes == 0 {
        if entry != u32::MAX {
            return Err(malformed("an empty graph names an entry point"));
        }
    } else {
        let e = entry as usize;
        if e >= slots || g.levels[e] == FREE || g.levels[e] as usize != max_level {
            return Err(malformed(format!(
                "entry point {entry} is not a node at the top level"
            )));
        }
    }
    let _ = tomb;
    for s in 0..slots {
        let Some(top) = g.level(s) else {
            if g.level0[s * (g.m0 + 1)] != 0 {
                return Err(malformed(format!("free slot {s} has links")));
            }
            continue;
        };
        for level in 0..=top {
            let stride = g.max_degree(level) + 1;
            let count = if level == 0 {
                g.level0[s * stride]
            } else {
                g.upper[s].as_ref().map_or(0, |u| u[(level - 1) * stride])
            } as usize;
            if count > g.max_degree(level) {
                return Err(malformed(format!(
                    "slot {s} has {count} links at level {level}"
                )));
            }
            for &n in g.neighbours(s, level) {
                let ok = (n as usize) < slots && g.level(n as usize).is_some_and(|l| l >= level);
                if !ok {
                    return Err(malformed(format!(
                        "slot {s} links to {n}, not a node of level {level}"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn check_vectors_finite(store: &VectorStore) -> Result<()> {
    let bad_raw = store
        .raw
        .as_ref()
        .is_some_and(|r| r.values().any(|v| !v.is_finite()));
    if bad_raw || store.params.values().any(|v| !v.is_finite()) {
        return Err(malformed("a stored vector holds NaN or infinity"));
    }
    Ok(())
}

fn metric_code(m: Metric) -> u32 {
    match m {
        Metric::L2 => 0,
        Metric::InnerProduct => 1,
        Metric::Cosine => 2,
    }
}

/// Plain numbers written little-endian in bulk.
///
/// # Safety
/// Implementors have no padding and every bit pattern of their size is a valid value
/// (`u32`, `u64`, `f32`), so their memory may be copied to and from bytes.
unsafe trait Le: Copy {
    const SIZE: usize;
    fn from_le(bytes: &[u8]) -> Self;
    fn put_le(self, out: &mut Vec<u8>);
}

// SAFETY: u32 has no padding; every 4-byte pattern is a u32.
unsafe impl Le for u32 {
    const SIZE: usize = 4;
    fn from_le(bytes: &[u8]) -> Self {
        le_u32(bytes)
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

// SAFETY: u64 has no padding; every 8-byte pattern is a u64.
unsafe impl Le for u64 {
    const SIZE: usize = 8;
    fn from_le(bytes: &[u8]) -> Self {
        le_u64(bytes)
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

// SAFETY: f32 has no padding; every 4-byte pattern is an f32 (NaNs included).
unsafe impl Le for f32 {
    const SIZE: usize = 4;
    fn from_le(bytes: &[u8]) -> Self {
        f32::from_bits(le_u32(bytes))
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The values of a little-endian byte section (one copy on little-endian hosts such as
/// wasm32 and x86_64: a 15 MB index loads at memory speed).
fn read_le<T: Le>(bytes: &[u8]) -> Vec<T> {
    let n = bytes.len() / T::SIZE;
    if cfg!(target_endian = "little") {
        let mut v: Vec<T> = Vec::with_capacity(n);
        // SAFETY: `Le` types accept any bit pattern and, on a little-endian host, their memory
        // is their little-endian bytes; the copy fills exactly the `n` elements of fresh
        // capacity before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), n * T::SIZE);
            v.set_len(n);
        }
        v
    } else {
        bytes.chunks_exact(T::SIZE).map(T::from_le).collect()
    }
}

/// Rows of `width` values from a little-endian section, block by block.
fn read_rows<T: Le + Default>(bytes: &[u8], width: usize) -> Rows<T> {
    let block_bytes = BLOCK_ROWS * width * T::SIZE;
    Rows::from_blocks(
        width,
        bytes.chunks(block_bytes.max(1)).map(read_le).collect(),
    )
}

/// Appends `values` little-endian (one copy on little-endian hosts).
fn write_le<T: Le>(out: &mut Vec<u8>, values: &[T]) {
    if cfg!(target_endian = "little") {
        // SAFETY: `Le` types have no padding, so their memory is `len * SIZE` initialised
        // bytes, which on a little-endian host are the little-endian encoding.
        let bytes = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        };
        out.extend_from_slice(bytes);
    } else {
        values.iter().for_each(|v| v.put_le(out));
    }
}

/// The u32 in the first 4 bytes (indexed, not `try_into().expect(..)`: that formats a
/// `TryFromSliceError` with `Debug`).
fn le_u32(c: &[u8]) -> u32 {
    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

fn le_u64(c: &[u8]) -> u64 {
    u64::from(le_u32(c)) | u64::from(le_u32(&c[4..])) << 32
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(malformed(format!(
                "truncated: {n} bytes needed at offset {}, {} left",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        self.take(4).map(le_u32)
    }

    fn u64(&mut self) -> Result<u64> {
        self.take(8).map(le_u64)
    }

    /// A section of exactly `len` bytes, and its padding.
    fn section(&mut self, len: usize) -> Result<&'a [u8]> {
        let stored = self.u64()?;
        if stored != len as u64 {
            return Err(malformed(format!(
                "a section holds {stored} bytes where {len} are expected"
            )));
        }
        let s = self.take(len)?;
        let pad = (8 - len % 8) % 8;
        if self.take(pad)?.iter().any(|&b| b != 0) {
            return Err(malformed("non-zero padding"));
        }
        Ok(s)
    }
}
