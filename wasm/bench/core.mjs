// The measurement itself, shared by the Node runner (node-run.mjs) and the page that runs in
// headless Chromium (page.mjs): one system, one dataset, one fresh index.
//
//   insert    every base row, in calls of CHUNK rows (or one call per row where the system's
//             API has no batch call), timed as one wall-clock span: rows / seconds
//   memory    JS heap growth over the inserts (each read after a full GC) + the size of the wasm
//             memories after the inserts (all of it: what a module reserves at start counts)
//   search    single queries, k = 10, after a warm-up of WARMUP queries; p50 / p99 over every query
//   recall    recall@10 against the dataset's exact top-10 (base row numbers)
//   load      the system's deserialise of its own serialised bytes (median of LOAD_REPS)

export const K = 10;
export const CHUNK = 1000;
export const WARMUP = 100;
export const LOAD_REPS = 3;

/** Reads a big-ann-benchmarks .fbin / .ibin (u32 rows, u32 dim, row-major LE values). */
export function readBin(buffer, Type) {
  const head = new DataView(buffer, 0, 8);
  const rows = head.getUint32(0, true);
  const dim = head.getUint32(4, true);
  const need = 8 + rows * dim * 4;
  if (buffer.byteLength < need) throw new Error(`truncated: ${rows}x${dim} needs ${need} bytes, has ${buffer.byteLength}`);
  // A copy keeps the values 4-byte aligned whatever the buffer's origin.
  return { rows, dim, data: new Type(buffer.slice(8, need)) };
}

/** Dataset = { name, dim, n, base: Float32Array (n*dim), queries: Float32Array, nq, gt: Int32Array (nq*gtK), gtK } */
export function makeDataset(name, baseBuf, queriesBuf, gtBuf, n) {
  const base = readBin(baseBuf, Float32Array);
  const queries = readBin(queriesBuf, Float32Array);
  const gt = readBin(gtBuf, Int32Array);
  if (base.dim !== queries.dim) throw new Error(`${name}: base dim ${base.dim} != query dim ${queries.dim}`);
  if (gt.rows !== queries.rows) throw new Error(`${name}: ${gt.rows} ground-truth rows for ${queries.rows} queries`);
  if (gt.dim < K) throw new Error(`${name}: ground truth has only ${gt.dim} neighbours`);
  const rows = n ?? base.rows;
  if (rows !== base.rows) throw new Error(`${name}: expected ${rows} base rows, the file has ${base.rows}`);
  return { name, dim: base.dim, n: rows, base: base.data, queries: queries.data, nq: queries.rows, gt: gt.data, gtK: gt.dim };
}

function quantile(sorted, q) {
  // nearest rank
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

export function errorText(e) {
  if (e && e.message) return e.code && !String(e.message).includes(e.code) ? `${e.code}: ${e.message}` : String(e.message);
  return String(e);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

/**
 * env: { now(): ms, gc(): void|Promise, heapBytes(): number, wasmBytes(): number, log(msg) }
 * system: an adapter from systems.mjs, already loaded (system.lib set).
 */
export async function runOne(system, ds, env) {
  const out = { system: system.name, version: system.version, dataset: ds.name, n: ds.n, dim: ds.dim, nq: ds.nq };
  const queryAt = (i) => ds.queries.subarray(i * ds.dim, (i + 1) * ds.dim);

  // Inputs in the shape the system's API takes, made before the clock starts.
  const chunks = [];
  for (let s = 0; s < ds.n; s += CHUNK) {
    const e = Math.min(ds.n, s + CHUNK);
    chunks.push({ start: s, end: e, payload: system.prepareChunk ? system.prepareChunk(ds, s, e) : null });
  }
  await env.gc();
  const heap0 = env.heapBytes();
  const wasm0 = env.wasmBytes();

  const index = system.create(ds);
  env.log(`${system.name}: inserting ${ds.n} rows (${system.insertCalls})`);
  const t0 = env.now();
  for (const c of chunks) system.insert(index, ds, c.start, c.end, c.payload);
  const t1 = env.now();
  out.insertSeconds = (t1 - t0) / 1000;
  out.insertPerSec = ds.n / out.insertSeconds;
  out.insertCalls = system.insertCalls;
  out.len = system.size ? system.size(index) : null;

  await env.gc();
  const heap1 = env.heapBytes();
  const wasm1 = env.wasmBytes();
  // wasm memory counts whole (what a module reserves at start is memory it holds too; it never shrinks).
  out.memory = { heapDelta: heap1 - heap0, wasmBefore: wasm0, wasmAfter: wasm1, bytes: heap1 - heap0 + wasm1 };
  out.selfReportedBytes = system.selfReportedBytes ? system.selfReportedBytes(index) : null;
  // The inputs stayed alive over both readings (whatever the system kept of them is its own).
  chunks.length = 0;

  // Warm-up, then every query once, timed one by one.
  const warm = Math.min(WARMUP, ds.nq);
  for (let i = 0; i < warm; i++) system.search(index, queryAt(i), K);
  const lat = new Float64Array(ds.nq);
  const found = new Array(ds.nq);
  for (let i = 0; i < ds.nq; i++) {
    const q = queryAt(i);
    const a = env.now();
    const res = system.search(index, q, K);
    lat[i] = env.now() - a;
    found[i] = system.rows(index, res);
  }
  const sorted = Array.from(lat).sort((a, b) => a - b);
  out.p50ms = quantile(sorted, 0.5);
  out.p99ms = quantile(sorted, 0.99);
  out.meanMs = sorted.reduce((s, x) => s + x, 0) / sorted.length;
  let hits = 0;
  for (let i = 0; i < ds.nq; i++) {
    const truth = new Set(ds.gt.subarray(i * ds.gtK, i * ds.gtK + K));
    const got = found[i].slice(0, K);
    for (const r of got) if (truth.has(r)) hits++;
  }
  out.recall = hits / (ds.nq * K);

  // Serialise, then load from the bytes; the loaded index must answer as the original does.
  if (system.serialize) {
    out.loadHow = system.loadHow;
    try {
      const s0 = env.now();
      const bytes = await system.serialize(index);
      out.serializeMs = env.now() - s0;
      out.serializedBytes = system.serializedLength ? system.serializedLength(bytes) : null;
      const times = [];
      let same = true;
      for (let r = 0; r < LOAD_REPS; r++) {
        const l0 = env.now();
        const loaded = await system.deserialize(bytes, ds);
        times.push(env.now() - l0);
        for (const i of [0, Math.floor(ds.nq / 2), ds.nq - 1]) {
          const a = system.rows(index, system.search(index, queryAt(i), K)).join(',');
          const b = system.rows(loaded, system.search(loaded, queryAt(i), K)).join(',');
          if (a !== b) same = false;
        }
        if (system.free) system.free(loaded);
        if (times[0] > 1000) break; // one slow load is enough to report
      }
      out.loadMs = median(times);
      out.loadMsAll = times;
      out.loadSameAnswers = same;
    } catch (e) {
      out.loadMs = null;
      out.loadError = errorText(e);
    }
  } else {
    out.loadMs = null;
    out.loadNA = system.loadNA || 'no serialise/deserialise';
  }
  if (system.free) system.free(index);
  return out;
}
