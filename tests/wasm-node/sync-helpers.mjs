// Test helpers for the sync client: the built Node package, the binary sync frames written the
// way proxima_core::sync writes them (so a fake server in JS can speak the protocol), and a
// fake Proxima server over node:http that serves one collection.
//
// The frame encoder here is a second implementation of core's format, for tests only: the
// wasm module decodes what it writes, so a drift shows up as `malformed` in every test.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import readline from 'node:readline';
import { spawn } from 'node:child_process';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
const pkgDir = path.join(repo, 'target', 'wasm-pkg', 'node');

/** The Node package as built by scripts/build-wasm.sh. */
export function loadPackage() {
  assert.ok(
    fs.existsSync(path.join(pkgDir, 'package.json')),
    `${pkgDir} has no package.json: build the packages first (bash scripts/build-wasm.sh)`,
  );
  return createRequire(import.meta.url)(pkgDir);
}

// --- binary frames (core/src/sync/frame.rs) -------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A postcard body: varints for integers, length-prefixed strings and sequences. */
class Writer {
  bytes = [];
  varint(v) {
    let n = BigInt(v);
    do {
      let b = Number(n & 0x7fn);
      n >>= 7n;
      if (n > 0n) b |= 0x80;
      this.bytes.push(b);
    } while (n > 0n);
    return this;
  }
  str(s) {
    const b = Buffer.from(s, 'utf8');
    this.varint(b.length);
    this.bytes.push(...b);
    return this;
  }
  bool(v) {
    this.bytes.push(v ? 1 : 0);
    return this;
  }
  f32s(values) {
    this.varint(values.length);
    const b = Buffer.alloc(4 * values.length);
    values.forEach((v, i) => b.writeFloatLE(v, 4 * i));
    this.bytes.push(...b);
    return this;
  }
}

function frame(kind, body) {
  const out = [...Buffer.from('PXSY', 'latin1'), 2, 0, kind, ...body.bytes];
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(out));
  return Uint8Array.from([...out, ...crc]);
}

const METRICS = { l2: 0, ip: 1, cosine: 2 };

/** `ChangeBatch::to_bytes`: records are {seq, op: 'upsert'|'delete', id, vector?}. */
export function batchFrame({ collection, handle, since, until, records, hasMore }) {
  const w = new Writer().str(collection).str(handle).varint(since).varint(until).varint(records.length);
  for (const r of records) {
    w.varint(r.seq);
    if (r.op === 'upsert') w.varint(0).varint(r.id).f32s(r.vector);
    else w.varint(1).varint(r.id);
  }
  return frame(1, w.bool(hasMore));
}

/** `encode_snapshot(header, index bytes)`. */
export function snapshotEnvelope({ collection, handle, dim, metric, seq, count, complete }, indexBytes) {
  const head = frame(
    2,
    new Writer().str(collection).str(handle).varint(dim).varint(METRICS[metric]).varint(seq).varint(count).bool(complete),
  );
  const len = Buffer.alloc(4);
  len.writeUInt32LE(head.length);
  return Buffer.concat([len, head, indexBytes]);
}

// --- a fake server ----------------------------------------------------------------------------

/**
 * One collection served over HTTP as the Proxima server does (changes, snapshot, search), with
 * knobs for the tests: `mode` ('up', 'down': connections dropped, 'error': 503, 'reload':
 * every change request answers 409 snapshot_required), `key` (the
 * bearer key required), `requests` (every request's method and URL), `truncate()` (forget the
 * change log, as WAL truncation does), `recreate()` (drop and create: a new handle) and
 * `snapshotAs` ('plain': Content-Length only; 'gzip': gzip-encoded with `x-proxima-bytes`, as
 * the server answers browsers; 'chunked': no length at all; each in chunks of 64 KiB).
 */
export class FakeServer {
  constructor(pkg, { collection = 'docs', dim = 4, metric = 'l2', key } = {}) {
    Object.assign(this, { pkg, collection, dim, metric, key });
    this.mode = 'up';
    this.snapshotAs = 'plain';
    this.requests = [];
    this.generation = 1;
    this.handle = 'h1';
    this.vectors = new Map();
    this.log = [];
    this.seq = 0;
    this.horizon = 0;
    this.waiters = new Set();
    this.server = http.createServer((req, res) => this.respond(req, res));
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  async stop() {
    for (const w of this.waiters) w();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  upsert(id, vector) {
    this.vectors.set(id, Array.from(vector));
    this.log.push({ seq: ++this.seq, op: 'upsert', id, vector: Array.from(vector) });
    this.#wake();
  }

  delete(id) {
    this.vectors.delete(id);
    this.log.push({ seq: ++this.seq, op: 'delete', id });
    this.#wake();
  }

  truncate() {
    this.log = [];
    this.horizon = this.seq;
  }

  recreate() {
    this.handle = `h${++this.generation}`;
    this.vectors.clear();
    this.log = [];
    this.seq = 0;
    this.horizon = 0;
    this.#wake();
  }

  /** Requests whose path ends with `suffix` (e.g. "/snapshot"). */
  count(suffix) {
    return this.requests.filter((r) => new URL(r.url, 'http://x').pathname.endsWith(suffix)).length;
  }

  #wake() {
    for (const w of this.waiters) w();
  }

  #json(res, status, body) {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  #error(res, status, code, extra = {}) {
    this.#json(res, status, { error: { code, message: `${code} (fake server)` }, ...extra });
  }

  /** Answers one request (also usable from another server's handler). */
  async respond(req, res) {
    this.requests.push({ method: req.method, url: req.url, authorization: req.headers.authorization, at: Date.now() });
    if (this.mode === 'down') {
      req.socket.destroy();
      return;
    }
    if (this.mode === 'error') return this.#error(res, 503, 'not_ready');
    if (this.key && req.headers.authorization !== `Bearer ${this.key}`) return this.#error(res, 401, 'unauthorized');
    const url = new URL(req.url, 'http://x');
    const prefix = `/v1/collections/${this.collection}/`;
    if (!url.pathname.startsWith(prefix)) return this.#error(res, 404, 'collection_not_found');
    const route = `${req.method} ${url.pathname.slice(prefix.length)}`;
    let body = '';
    for await (const chunk of req) body += chunk;
    if (route === 'GET changes') return this.#changes(url.searchParams, req, res);
    if (route === 'GET snapshot') return this.#snapshot(res);
    if (route === 'POST search') return this.#search(JSON.parse(body), res);
    return this.#error(res, 404, 'not_found');
  }

  async #changes(params, req, res) {
    const since = Number(params.get('since'));
    const limit = Number(params.get('limit') || 1000);
    const handle = params.get('handle');
    const stale = () =>
      this.mode === 'reload' || (handle !== null && handle !== this.handle) || since < this.horizon || since > this.seq;
    if (stale()) return this.#error(res, 409, 'snapshot_required', { handle: this.handle, horizon: this.horizon });
    if (params.get('live') === 'true' && since === this.seq) {
      const timeout = Number(params.get('timeout_ms') || 20000);
      await new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, timeout);
        this.waiters.add(done);
        req.socket.once('close', done);
      });
      if (req.socket.destroyed) return;
      if (stale()) return this.#error(res, 409, 'snapshot_required', { handle: this.handle, horizon: this.horizon });
    }
    const newer = this.log.filter((r) => r.seq > since);
    const records = newer.slice(0, limit);
    const hasMore = newer.length > records.length;
    const until = hasMore ? records[records.length - 1].seq : this.seq;
    const bytes = batchFrame({ collection: this.collection, handle: this.handle, since, until, records, hasMore });
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(bytes);
  }

  /** The collection as a VectorCache (the server's snapshot index). */
  index() {
    const { VectorCache } = this.pkg;
    const cache = new VectorCache({ dim: this.dim, metric: this.metric, seed: 1 });
    const ids = [...this.vectors.keys()];
    if (ids.length) cache.upsert(ids, Float32Array.from(ids.flatMap((id) => this.vectors.get(id))));
    return cache;
  }

  #snapshot(res) {
    const cache = this.index();
    const header = {
      collection: this.collection, handle: this.handle, dim: this.dim, metric: this.metric,
      seq: this.seq, count: cache.len, complete: true,
    };
    const bytes = snapshotEnvelope(header, cache.toBytes());
    cache.free();
    const headers = { 'content-type': 'application/octet-stream', 'x-proxima-seq': String(this.seq), 'x-proxima-handle': this.handle };
    let body = bytes;
    if (this.snapshotAs === 'gzip') {
      body = zlib.gzipSync(bytes);
      Object.assign(headers, { 'content-encoding': 'gzip', 'x-proxima-bytes': String(bytes.length), 'content-length': String(body.length) });
    } else if (this.snapshotAs === 'plain') {
      headers['content-length'] = String(bytes.length);
    }
    res.writeHead(200, headers);
    // In pieces, so that a reader sees more than one chunk.
    for (let at = 0; at < body.length; at += 65536) res.write(body.subarray(at, at + 65536));
    res.end();
  }

  /** Exact search, ids as JSON integers (above 2^53 too, as the server writes u64s). */
  #search(body, res) {
    const ids = [...this.vectors.keys()];
    const base = Float32Array.from(ids.flatMap((id) => this.vectors.get(id)));
    const r = this.pkg.exactSearch(base, this.dim, Float32Array.from(body.vectors[0]), body.k, this.metric);
    const hits = [...r.ids].map((row, i) => `{"id":${ids[Number(row)]},"score":${r.scores[i]}}`);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`{"results":[[${hits.join(',')}]],"seq":${this.seq},"took_ms":0.1}`);
  }
}

/** Polls `cond` every 10 ms until it holds; fails after `ms`. */
export async function waitFor(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * `target/debug/proxima serve` on a free port over `dataDir` with `args` (no embedding model:
 * these tests bring their own vectors); resolves once /readyz answers 200 with
 * `{url, child, kill(), stop()}`: kill is SIGKILL, stop a SIGTERM and the wait for the exit.
 */
export async function startServer(dataDir, args = []) {
  const bin = path.join(repo, 'target', 'debug', 'proxima');
  assert.ok(fs.existsSync(bin), `${bin} is missing: run \`cargo build -p proxima-server --bins\` first (./proxima.sh test does)`);
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--no-embed', ...args], {
    env: { ...process.env, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr = (stderr + c).slice(-4000)));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const lines = readline.createInterface({ input: child.stdout });
  let timer;
  const first = await Promise.race([
    new Promise((resolve) => lines.once('line', resolve)),
    exited.then((code) => assert.fail(`proxima serve exited (${code}) before printing its address:\n${stderr}`)),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no address line within 60 s:\n${stderr}`)), 60_000))),
  ]).finally(() => clearTimeout(timer));
  lines.on('line', () => {}); // keep draining
  const url = first.split(/\s+/).find((w) => w.startsWith('http://'));
  assert.ok(url, `no address in ${JSON.stringify(first)}`);
  await waitFor(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 60_000, 'the server to be ready');
  return {
    url,
    child,
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
