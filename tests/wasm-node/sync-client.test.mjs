// The sync client of the Node package (VectorCache.open) against a fake server written here
// (sync-helpers.mjs): cold start, paging, persistence, snapshot reloads, the live loop and its
// backoff, local-or-remote search, errors. tests/wasm-node/sync.test.mjs runs the same client
// against the real server.
//   node --test tests/wasm-node/sync-client.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { FakeServer, loadPackage, waitFor } from './sync-helpers.mjs';

const pkg = loadPackage();
const { VectorCache } = pkg;
let tmp;

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'proxima-sync-client-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Row i of the test data: a point on a line, so nearest neighbours are obvious. */
function vec(i) {
  return [i, (i * 7) % 5, 1, -1];
}

async function fakeWith(n, options) {
  const server = await new FakeServer(pkg, options).start();
  for (let i = 0; i < n; i++) server.upsert(i, vec(i));
  return server;
}

function ids(hits) {
  return hits.map((h) => h.id);
}

async function rejectsCode(promise, code) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof Error, 'an Error');
    assert.equal(e.code, code, e.message);
    assert.ok(e.message.startsWith(`${code}: `), e.message);
    return true;
  });
}

test('open: snapshot, then changes page by page; VectorCache.open is openSyncedCache', async () => {
  const server = await fakeWith(50);
  try {
    assert.equal(VectorCache.open, pkg.openSyncedCache);
    const sc = await VectorCache.open({ server: server.url + '/', collection: 'docs', limit: 7 });
    assert.ok(sc instanceof pkg.SyncedCache);
    assert.equal(sc.watermark, 50);
    assert.equal(sc.handle, 'h1');
    assert.equal(sc.cache.len, 50);
    assert.ok(sc.complete);
    assert.equal(sc.state, 'online');
    assert.equal(server.count('/snapshot'), 1);
    // Changes after the snapshot come in pages of 7.
    for (let i = 50; i < 70; i++) server.upsert(i, vec(i));
    server.delete(3);
    const before = server.count('/changes');
    const r = await sc.sync();
    assert.deepEqual(r, { applied: 21, watermark: 71, upToDate: true, reloaded: false });
    assert.equal(server.count('/changes') - before, 3);
    assert.equal(sc.cache.len, 69);
    assert.equal(sc.cache.has(3), false);
    assert.deepEqual(ids(sc.search(vec(60), 1)), [60]);
    assert.ok(Date.now() - sc.lastSyncAt < 1000);
    await sc.close();
    assert.equal(sc.state, 'closed');
    await rejectsCode(sc.sync(), 'closed');
  } finally {
    await server.stop();
  }
});

test('persist: one blob, restored without a snapshot download, offline when the server is down', async () => {
  const file = path.join(tmp, 'restore.pxc');
  const server = await fakeWith(30);
  try {
    const sc = await VectorCache.open({ server: server.url, collection: 'docs', persist: file, persistDelayMs: 20 });
    server.upsert(100, vec(100));
    server.delete(5);
    await sc.sync();
    await waitFor(() => sc.lastPersistAt !== null, 2000, 'the debounced save');
    await sc.close();
    const saved = pkg.decodeFile(fs.readFileSync(file));
    assert.equal(saved.meta.format, 'proxima-sync-1');
    assert.equal(saved.meta.collection, 'docs');
    assert.equal(VectorCache.fromSnapshot(saved.bytes).watermark, 32);

    // Restored while the server still runs: no snapshot, only changes since the watermark.
    server.upsert(101, vec(101));
    const snapshots = server.count('/snapshot');
    const again = await VectorCache.open({ server: server.url, collection: 'docs', persist: file });
    assert.equal(server.count('/snapshot'), snapshots);
    assert.equal(again.watermark, 33);
    assert.ok(again.cache.has(101) && again.cache.has(100) && !again.cache.has(5));
    await again.close();

    // Server down: the restored cache answers, marked offline.
    server.mode = 'down';
    const offline = await VectorCache.open({ server: server.url, collection: 'docs', persist: file });
    assert.equal(offline.state, 'offline');
    assert.equal(offline.online, false);
    assert.equal(offline.lastError.code, 'unreachable');
    assert.equal(offline.watermark, 33);
    const r = await offline.searchLocalOrRemote(vec(101), 2, { maxStalenessMs: 0 });
    assert.equal(r.source, 'local');
    assert.equal(r.offline, true);
    assert.deepEqual(ids(r.hits), ids(offline.search(vec(101), 2)));
    assert.equal(r.hits[0].id, 101);
    await offline.close();

    // Without a persisted cache there is nothing to answer with.
    await rejectsCode(VectorCache.open({ server: server.url, collection: 'docs', persist: path.join(tmp, 'none.pxc') }), 'unreachable');
    // A file of another collection, or a damaged one, is replaced by a fresh snapshot.
    server.mode = 'up';
    const before = server.count('/snapshot');
    const other = await VectorCache.open({ server: server.url, collection: 'docs', persist: file, storage: 'sq8' });
    assert.equal(server.count('/snapshot'), before + 1);
    await other.close();
    fs.writeFileSync(file, 'not a cache');
    const fresh = await VectorCache.open({ server: server.url, collection: 'docs', persist: file });
    assert.equal(fresh.watermark, 33);
    await fresh.close();
    assert.equal(pkg.decodeFile(fs.readFileSync(file)).meta.collection, 'docs');
  } finally {
    await server.stop();
  }
});

test('snapshot_required: a recreated collection or a truncated log reloads the snapshot; no reload loop', async () => {
  const server = await fakeWith(10);
  try {
    const sc = await VectorCache.open({ server: server.url, collection: 'docs' });
    const old = sc.cache;
    // The log before the cache's watermark is gone.
    server.upsert(11, vec(11));
    server.truncate();
    server.upsert(12, vec(12));
    let r = await sc.sync();
    assert.equal(r.reloaded, true);
    assert.equal(sc.watermark, 12);
    assert.notEqual(sc.cache, old, 'a new VectorCache');
    assert.ok(sc.cache.has(11) && sc.cache.has(12));
    // Dropped and created again: another handle, different data.
    server.recreate();
    server.upsert(500, vec(500));
    r = await sc.sync();
    assert.equal(r.reloaded, true);
    assert.equal(sc.handle, 'h2');
    assert.equal(sc.watermark, 1);
    assert.deepEqual(sc.cache.ids(), [500]);
    await sc.close();

    // A server that asks for a snapshot after every snapshot: sync() gives up after 3 reloads,
    // the live loop backs off between rounds instead of downloading in a loop.
    server.mode = 'reload';
    const looped = await VectorCache.open({ server: server.url, collection: 'docs' }).catch((e) => e);
    assert.equal(looped.code, 'snapshot_required');
    server.mode = 'up';
    const live = await VectorCache.open({ server: server.url, collection: 'docs', live: true });
    const from = server.count('/snapshot');
    server.mode = 'reload';
    server.upsert(501, vec(501)); // wakes the long-poll
    await new Promise((r) => setTimeout(r, 1500));
    const downloads = server.count('/snapshot') - from;
    assert.ok(downloads >= 3 && downloads <= 6, `${downloads} snapshots in 1.5 s`);
    assert.equal(live.lastError.code, 'snapshot_required');
    await live.close();
  } finally {
    await server.stop();
  }
});

test('live: changes arrive by long-poll; errors back off 0.5 s doubling with jitter; close stops the loop', async () => {
  const server = await fakeWith(5);
  try {
    const sc = await VectorCache.open({ server: server.url, collection: 'docs', live: true, pollTimeoutMs: 5000 });
    await waitFor(() => sc.state === 'live', 2000, 'the long-poll');
    assert.equal(sc.stalenessMs, 0);
    const t0 = Date.now();
    server.upsert(42, vec(42));
    await waitFor(() => sc.cache.has(42), 1000, 'the live upsert');
    server.delete(42);
    await waitFor(() => !sc.cache.has(42), 1000, 'the live delete');
    assert.ok(Date.now() - t0 < 1000);

    // The server goes away: attempts space out (each gap at least the one before).
    const from = server.requests.length;
    server.mode = 'down';
    const down = Date.now();
    server.server.closeAllConnections();
    await waitFor(() => sc.state === 'offline', 2000, 'offline');
    await new Promise((r) => setTimeout(r, 3200));
    // Waits of 0.25-0.5 s, 0.5-1 s, 1-2 s...: two to four attempts in 3.2 s.
    const times = server.requests.slice(from).map((r) => r.at);
    assert.ok(times.length >= 2 && times.length <= 4, `${times.length} attempts in 3.2 s`);
    const gaps = [down, ...times].slice(1).map((t, i) => t - [down, ...times][i]);
    assert.ok(gaps[0] >= 230, `first retry after ${gaps[0]} ms`);
    for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i] >= gaps[i - 1] - 30, `gaps ${gaps.join(', ')}`);
    assert.ok(sc.stalenessMs > 0);

    // Back: the loop reconnects and catches up.
    server.mode = 'up';
    server.upsert(43, vec(43));
    await waitFor(() => sc.cache.has(43), 5000, 'the catch-up after the outage');
    await waitFor(() => sc.state === 'live', 2000, 'live again');

    await sc.close();
    // A long-poll already on the wire when close() aborted it may still reach the server.
    await new Promise((r) => setTimeout(r, 300));
    const count = server.requests.length;
    // A loop still running would retry within 0.5 s.
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(server.requests.length, count, 'no request after close()');
  } finally {
    await server.stop();
  }
});

test('searchLocalOrRemote: local when complete and fresh, the server when stale, local offline on 5xx', async () => {
  const big = 2n ** 60n + 3n;
  const server = await fakeWith(40);
  server.upsert(big, vec(1000));
  try {
    const sc = await VectorCache.open({ server: server.url, collection: 'docs' });
    let r = await sc.searchLocalOrRemote(vec(7), 3);
    assert.equal(r.source, 'local');
    assert.equal(r.offline, false);
    assert.ok(r.stalenessMs < 5000);
    const local = r.hits;
    r = await sc.searchLocalOrRemote(vec(7), 3, { maxStalenessMs: 0 });
    assert.equal(r.source, 'server');
    assert.equal(r.stalenessMs, 0);
    assert.deepEqual(ids(r.hits), ids(local));
    for (const [i, h] of r.hits.entries()) assert.ok(Math.abs(h.score - local[i].score) < 1e-4);
    // u64 ids from the server's JSON are not rounded.
    r = await sc.searchLocalOrRemote(vec(1000), 1, { maxStalenessMs: 0 });
    assert.equal(r.hits[0].id, big);
    assert.equal(sc.search(vec(1000), 1)[0].id, big);
    // A local write makes the cache partial: the server answers even when fresh.
    sc.cache.delete([7]);
    assert.equal(sc.complete, false);
    r = await sc.searchLocalOrRemote(vec(7), 1);
    assert.equal(r.source, 'server');
    assert.equal(r.hits[0].id, 7);
    // 5xx: local, offline.
    server.mode = 'error';
    r = await sc.searchLocalOrRemote(vec(8), 1, { maxStalenessMs: 0 });
    assert.deepEqual([r.source, r.offline, r.hits[0].id], ['local', true, 8]);
    assert.equal(sc.online, false);
    await assert.rejects(sc.sync(), (e) => e.code === 'not_ready' && e.status === 503);
    await assert.rejects(sc.searchLocalOrRemote([1, 2], 1), (e) => e.code === 'dimension_mismatch');
    await sc.close();
  } finally {
    await server.stop();
  }
});

test('the key is sent as a bearer token; server error codes and bad options are coded errors', async () => {
  const server = await fakeWith(3, { key: 'sesame' });
  try {
    await rejectsCode(VectorCache.open({ server: server.url, collection: 'docs' }), 'unauthorized');
    await rejectsCode(VectorCache.open({ server: server.url, collection: 'nope', key: 'sesame' }), 'collection_not_found');
    const seen = [];
    const sc = await VectorCache.open({
      server: server.url,
      collection: 'docs',
      key: 'sesame',
      fetch: (url, init) => {
        seen.push(url);
        return fetch(url, init);
      },
    });
    assert.equal(sc.cache.len, 3);
    assert.ok(seen.length >= 2 && seen.every((u) => u.startsWith(`${server.url}/v1/collections/docs/`)));
    assert.ok(server.requests.slice(-2).every((r) => r.authorization === 'Bearer sesame'));
    await sc.close();
    await rejectsCode(VectorCache.open({ server: server.url }), 'invalid_parameter');
    await rejectsCode(VectorCache.open({ server: server.url, collection: 'docs', colection: 'x' }), 'invalid_parameter');
    await rejectsCode(VectorCache.open({ server: server.url, collection: 'docs', storage: 'f16' }), 'invalid_parameter');
    await rejectsCode(VectorCache.open({ server: server.url, collection: 'docs', limit: 0 }), 'invalid_parameter');
    await rejectsCode(VectorCache.open({ server: 'http://127.0.0.1:9', collection: 'docs' }), 'unreachable');
  } finally {
    await server.stop();
  }
});

test('onProgress: the snapshot download reported as it arrives (plain, gzip, no length); source and download', async () => {
  const dim = 64;
  const server = await new FakeServer(pkg, { dim }).start();
  for (let i = 0; i < 1500; i++) server.upsert(i, Array.from({ length: dim }, (_, j) => ((i * 31 + j * 7) % 97) - 48));
  const file = path.join(tmp, 'progress.pxc');
  try {
    const open = async (as, extra = {}) => {
      server.snapshotAs = as;
      const events = [];
      const sc = await VectorCache.open({ server: server.url, collection: 'docs', onProgress: (p) => events.push(p), ...extra });
      return { sc, events };
    };
    const checkEvents = (events, total, bytes, what) => {
      assert.ok(events.length >= 3, `${what}: ${events.length} progress events`);
      assert.deepEqual(events[0], { phase: 'snapshot', loaded: 0, total }, what);
      for (let i = 1; i < events.length; i++) {
        assert.equal(events[i].phase, 'snapshot');
        assert.equal(events[i].total, total);
        assert.ok(events[i].loaded > events[i - 1].loaded, `${what}: loaded grows`);
      }
      assert.equal(events.at(-1).loaded, bytes, `${what}: the last event has every byte`);
    };

    // Content-Length: the total from the start.
    const plain = await open('plain', { persist: file, persistDelayMs: 0 });
    assert.equal(plain.sc.source, 'snapshot');
    const d = plain.sc.download;
    assert.ok(d.bytes > 1500 * dim * 4, `${d.bytes} bytes`);
    assert.equal(d.wireBytes, d.bytes);
    assert.ok(d.ms >= 0 && Math.abs(d.at - Date.now()) < 5000);
    checkEvents(plain.events, d.bytes, d.bytes, 'plain');
    assert.equal(plain.sc.cache.len, 1500);
    await plain.sc.close();

    // gzip: the total is x-proxima-bytes (the bytes after decoding), the wire bytes Content-Length.
    const gz = await open('gzip');
    checkEvents(gz.events, d.bytes, d.bytes, 'gzip');
    assert.equal(gz.sc.download.bytes, d.bytes);
    assert.ok(gz.sc.download.wireBytes < d.bytes, `gzip: ${gz.sc.download.wireBytes} bytes on the wire`);
    assert.equal(gz.sc.cache.len, 1500);
    await gz.sc.close();

    // No length at all: total null, every byte still counted.
    const chunked = await open('chunked');
    checkEvents(chunked.events, null, d.bytes, 'chunked');
    await chunked.sc.close();

    // A callback that throws does not fail the download.
    server.snapshotAs = 'plain';
    const thrower = await VectorCache.open({ server: server.url, collection: 'docs', onProgress: () => { throw new Error('boom'); } });
    assert.equal(thrower.cache.len, 1500);
    await thrower.close();

    // Restored from the file: no download, no progress; a reload the server asks for downloads again.
    const restored = await open('plain', { persist: file });
    assert.equal(restored.sc.source, 'persisted');
    assert.equal(restored.sc.download, null);
    assert.deepEqual(restored.events, []);
    server.recreate();
    server.upsert(7, Array.from({ length: dim }, (_, j) => j + 1));
    assert.equal((await restored.sc.sync()).reloaded, true);
    assert.equal(restored.sc.source, 'snapshot');
    assert.ok(restored.sc.download.bytes > 0 && restored.sc.download.bytes < d.bytes);
    assert.equal(restored.events.at(-1).loaded, restored.sc.download.bytes);
    await restored.sc.close();

    await rejectsCode(VectorCache.open({ server: server.url, collection: 'docs', onProgress: 'yes' }), 'invalid_parameter');
  } finally {
    await server.stop();
  }
});

test('sync(): a live loop waiting out its backoff reconnects as soon as a sync succeeds', async () => {
  const server = await fakeWith(5);
  let sc;
  try {
    sc = await VectorCache.open({ server: server.url, collection: 'docs', live: true, pollTimeoutMs: 5000 });
    await waitFor(() => sc.state === 'live', 2000, 'the long-poll');
    server.mode = 'down';
    server.server.closeAllConnections();
    // 0.5, 1, 2 s waits: by 3.5 s the loop sleeps a second or more.
    await new Promise((r) => setTimeout(r, 3500));
    assert.equal(sc.state, 'offline');
    server.mode = 'up';
    const t0 = Date.now();
    await sc.sync();
    await waitFor(() => sc.state === 'live', 1000, 'live right after sync()');
    assert.ok(Date.now() - t0 < 1000);
    server.upsert(77, vec(77));
    await waitFor(() => sc.cache.has(77), 1000, 'a change through the reconnected long-poll');
  } finally {
    if (sc) await sc.close();
    await server.stop();
  }
});
