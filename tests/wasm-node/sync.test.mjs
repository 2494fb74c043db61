// The sync client of the Node package against the real server (target/debug/proxima, which
// ./proxima.sh test builds before it runs this): a synced cache follows a collection through
// inserts, deletes and upserts, survives the server's death and restart, and comes back from
// its persisted file.
//   cargo build -p proxima-server --bins && bash scripts/build-wasm.sh
//   node --test tests/wasm-node/sync.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { loadPackage, repo, startServer, waitFor } from './sync-helpers.mjs';

const pkg = loadPackage();
const { VectorCache } = pkg;
const BIN = path.join(repo, 'target', 'debug', 'proxima');
const DIM = 8;
const N = 300;
const WRITE_KEY = 'write-key';
const READ_KEY = 'read-key';
const SERVER_ARGS = ['--write-key', WRITE_KEY, '--read-key', READ_KEY];

let tmp;
let dataDir;

before(() => {
  assert.ok(fs.existsSync(BIN), `${BIN} is missing: run \`cargo build -p proxima-server --bins\` first (./proxima.sh test does)`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'proxima-sync-'));
  dataDir = path.join(tmp, 'data');
});
after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** A write (or read) request as an application makes it; returns the parsed JSON answer. */
async function api(server, method, route, body, key = WRITE_KEY) {
  const res = await fetch(`${server.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${route}: HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

/** Seeded rows in [-1, 1). */
function rows(n, seed) {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () =>
    Array.from({ length: DIM }, () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return ((s >>> 0) / 4294967296) * 2 - 1;
    }),
  );
}

async function serverSearch(server, query, k) {
  const r = await api(server, 'POST', '/v1/collections/docs/search', { vectors: [query], k, consistency: 'strong' }, READ_KEY);
  return r.results[0];
}

/** A fetch that records every URL it is asked for. */
function recordingFetch() {
  const urls = [];
  const f = (url, init) => {
    urls.push(String(url));
    return fetch(url, init);
  };
  f.urls = urls;
  f.snapshots = () => urls.filter((u) => new URL(u).pathname.endsWith('/snapshot')).length;
  return f;
}

test('a synced cache follows the real server, goes offline with it and comes back from its file', async (t) => {
  const file = path.join(tmp, 'docs.pxc');
  const data = rows(N, 7);
  let server = await startServer(dataDir, SERVER_ARGS);
  let cache;
  try {
    await api(server, 'PUT', '/v1/collections/docs', { dim: DIM, metric: 'l2' });
    const ids = Array.from({ length: N }, (_, i) => i + 1);
    await api(server, 'POST', '/v1/collections/docs/vectors', { ids, vectors: data });

    const f = recordingFetch();
    cache = await VectorCache.open({
      server: server.url, collection: 'docs', key: READ_KEY, live: true, persist: file, persistDelayMs: 100, fetch: f,
    });
    await t.test('cold start: one snapshot, every vector, the same answers as the server', async () => {
      assert.equal(f.snapshots(), 1);
      assert.equal(cache.cache.len, N);
      assert.ok(cache.complete);
      assert.ok(cache.watermark >= N, `watermark ${cache.watermark}`);
      assert.equal(typeof cache.handle, 'string');
      for (const i of [0, 17, 123, 299]) {
        const q = data[i].map((x) => x + 0.01);
        const local = cache.search(Float32Array.from(q), 5);
        const remote = await serverSearch(server, q, 5);
        assert.deepEqual(local.map((h) => h.id), remote.map((h) => h.id), `query ${i}`);
        local.forEach((h, j) => assert.ok(Math.abs(h.score - remote[j].score) < 1e-4, `query ${i} hit ${j}`));
      }
      const r = await cache.searchLocalOrRemote(Float32Array.from(data[5]), 3);
      assert.equal(r.source, 'local');
      assert.equal(r.hits[0].id, 6);
      await waitFor(() => cache.state === 'live', 5000, 'the live long-poll');
    });

    await t.test('live: a delete and upserts on the server are local within 1 s', async () => {
      const moved = data[9].map((x) => -x);
      const start = Date.now();
      await api(server, 'POST', '/v1/collections/docs/delete', { ids: [5] });
      await api(server, 'POST', '/v1/collections/docs/vectors', { ids: [10, 1000], vectors: [moved, data[4]] });
      await waitFor(() => cache.cache.has(1000) && !cache.cache.has(5), 1000, 'the changes to arrive');
      assert.ok(Date.now() - start <= 1000);
      assert.deepEqual(Array.from(cache.cache.get(10)), Array.from(Float32Array.from(moved)));
      assert.equal(cache.cache.len, N);
      const q = Float32Array.from(data[4]);
      const local = cache.search(q, 3).map((h) => h.id).sort((a, b) => a - b);
      const remote = (await serverSearch(server, data[4], 3)).map((h) => h.id).sort((a, b) => a - b);
      assert.deepEqual(local, remote);
      // More writes and syncs: the deleted id never comes back.
      await api(server, 'POST', '/v1/collections/docs/vectors', { ids: [2000], vectors: [data[0]] });
      await cache.sync();
      await waitFor(() => cache.cache.has(2000), 1000, 'id 2000');
      assert.equal(cache.cache.has(5), false);
      assert.ok(!cache.search(Float32Array.from(data[4]), 10).some((h) => h.id === 5));
      await waitFor(() => cache.lastPersistAt !== null && cache.lastPersistAt > start, 3000, 'the persisted blob');
    });

    await t.test('server killed: searches answer locally, marked offline', async () => {
      const watermark = cache.watermark;
      await server.kill();
      await waitFor(() => cache.state === 'offline', 5000, 'the cache to notice');
      const r = await cache.searchLocalOrRemote(Float32Array.from(data[20]), 3, { maxStalenessMs: 0 });
      assert.equal(r.source, 'local');
      assert.equal(r.offline, true);
      assert.equal(r.hits[0].id, 21);
      assert.equal(cache.watermark, watermark);
      await cache.close();
    });

    await t.test('reopened while the server is down: restored from the file, no snapshot', async () => {
      const g = recordingFetch();
      const back = await VectorCache.open({ server: server.url, collection: 'docs', key: READ_KEY, persist: file, fetch: g });
      assert.equal(g.snapshots(), 0);
      assert.equal(back.state, 'offline');
      assert.equal(back.watermark, cache.watermark);
      assert.equal(back.handle, cache.handle);
      assert.ok(back.cache.has(2000) && back.cache.has(1000) && !back.cache.has(5));
      const r = await back.searchLocalOrRemote(Float32Array.from(data[20]), 3);
      assert.deepEqual([r.source, r.offline, r.hits[0].id], ['local', true, 21]);
      await back.close();
    });

    await t.test('server restarted on the same data: the file catches up by changes, same handle', async () => {
      server = await startServer(dataDir, SERVER_ARGS);
      await api(server, 'POST', '/v1/collections/docs/delete', { ids: [1000] });
      const g = recordingFetch();
      const back = await VectorCache.open({ server: server.url, collection: 'docs', key: READ_KEY, persist: file, fetch: g });
      assert.equal(g.snapshots(), 0, `requests: ${g.urls.join(' ')}`);
      assert.equal(back.handle, cache.handle);
      assert.ok(!back.cache.has(1000) && !back.cache.has(5) && back.cache.has(2000));
      assert.equal(back.state, 'online');
      const r = await back.searchLocalOrRemote(Float32Array.from(data[30]), 3, { maxStalenessMs: 0 });
      assert.equal(r.source, 'server');
      assert.equal(r.hits[0].id, 31);
      await back.close();
    });
  } finally {
    if (cache) await cache.close().catch(() => {});
    await server.stop();
  }
});

/**
 * The Debian subset of 20,000 real MiniLM vectors the Rust tests use (`debian_subset(20000)`,
 * cached under the target directory or the system temp directory); built with the CLI, with
 * the same parameters, when absent.
 */
function realDataset() {
  const candidates = [];
  if (process.env.PROXIMA_TEST_DATASETS) candidates.push(process.env.PROXIMA_TEST_DATASETS);
  if (fs.existsSync(path.join(repo, 'target', 'CACHEDIR.TAG'))) candidates.push(path.join(repo, 'target', 'test-datasets'));
  candidates.push(path.join(os.tmpdir(), 'proxima', 'test-datasets'));
  for (const dir of candidates) {
    const d = path.join(dir, 'debian-20000');
    if (fs.existsSync(path.join(d, 'manifest.json'))) return d;
  }
  const out = path.join(candidates[0], 'debian-20000');
  const r = spawnSync(BIN, ['dataset', 'build', 'debian-packages', '--limit', '20000', '--held-out', '200', '--out', out], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, `building ${out}:\n${r.stderr}`);
  return out;
}

test('10,000 real vectors: cold start from the snapshot, live deletes and upserts, offline, reload from the file', async (t) => {
  const dataset = realDataset();
  const file = path.join(tmp, 'real.pxc');
  let server = await startServer(dataDir, SERVER_ARGS);
  let cache;
  try {
    const imp = spawnSync(
      BIN,
      ['import', dataset, '--collection', 'real', '--limit', '10000', '--server', server.url, '--key', WRITE_KEY, '--flush'],
      { encoding: 'utf8' },
    );
    assert.equal(imp.status, 0, imp.stderr);
    const f = recordingFetch();
    const started = Date.now();
    cache = await VectorCache.open({
      server: server.url, collection: 'real', key: READ_KEY, live: true, persist: file, persistDelayMs: 100, fetch: f,
    });
    const coldMs = Date.now() - started;
    await t.test(`cold start (${coldMs} ms, the server building its snapshot included): one snapshot, all 10,000`, async () => {
      assert.equal(f.snapshots(), 1);
      assert.equal(cache.cache.len, 10000);
      assert.equal(cache.cache.metric, 'cosine');
      assert.ok(cache.complete);
    });

    // Queries: stored vectors of the collection (ids spread over it), answered by both.
    const ids = cache.cache.ids();
    const queries = ids.filter((_, i) => i % 500 === 7).map((id) => cache.cache.get(id));
    await t.test('local answers agree with the server (recall@10 against its exact FLAT search)', async () => {
      let found = 0;
      for (const q of queries) {
        const local = new Set(cache.search(q, 10).map((h) => h.id));
        const remote = await serverSearch2(server, 'real', Array.from(q), 10);
        found += remote.filter((h) => local.has(h.id)).length;
      }
      const recall = found / (queries.length * 10);
      assert.ok(recall >= 0.95, `recall@10 ${recall}`);
    });

    await t.test('live: 100 deletes and 10 upserts on the server are local within 1 s, and stay', async () => {
      await waitFor(() => cache.state === 'live', 5000, 'the live long-poll');
      const gone = ids.slice(0, 100);
      const moved = ids.slice(100, 110);
      // The moved ids take the vectors of deleted ones (read before the live loop drops them).
      const vectors = moved.map((_, i) => Array.from(cache.cache.get(gone[i])));
      const start = Date.now();
      await api(server, 'POST', '/v1/collections/real/delete', { ids: gone });
      await api(server, 'POST', '/v1/collections/real/vectors', { ids: moved, vectors });
      await waitFor(() => gone.every((id) => !cache.cache.has(id)) && cache.watermark >= 10000 + 110, 1000, 'the changes');
      assert.ok(Date.now() - start <= 1000, `${Date.now() - start} ms`);
      assert.equal(cache.cache.len, 9900);
      for (const q of queries.slice(0, 5)) {
        assert.ok(!cache.search(q, 10).some((h) => gone.includes(h.id)));
      }
      await waitFor(() => cache.lastPersistAt !== null && cache.lastPersistAt > start, 3000, 'the persisted blob');
    });

    await t.test('server killed: local answers, offline; reopened from the file without a snapshot', async () => {
      await server.kill();
      await waitFor(() => cache.state === 'offline', 5000, 'the cache to notice');
      const r = await cache.searchLocalOrRemote(queries[3], 10, { maxStalenessMs: 0 });
      assert.deepEqual([r.source, r.offline], ['local', true]);
      await cache.close();
      const g = recordingFetch();
      const back = await VectorCache.open({ server: server.url, collection: 'real', key: READ_KEY, persist: file, fetch: g });
      assert.equal(g.snapshots(), 0);
      assert.equal(back.cache.len, 9900);
      assert.equal(back.watermark, cache.watermark);
      assert.ok(!back.cache.has(ids[0]));
      await back.close();
    });
  } finally {
    if (cache) await cache.close().catch(() => {});
    await server.stop();
  }
});

async function serverSearch2(server, collection, query, k) {
  const r = await api(server, 'POST', `/v1/collections/${collection}/search`, { vectors: [query], k, consistency: 'strong' }, READ_KEY);
  return r.results[0];
}
