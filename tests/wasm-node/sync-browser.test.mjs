// The web package's sync client in headless Chromium against the real server
// (target/debug/proxima): a page opens a live cache persisted in IndexedDB, follows deletes and
// upserts, answers offline when the server dies, reloads and comes back from IndexedDB without
// a snapshot, then catches up by changes alone when the server is back.
//   cargo build -p proxima-server --bins && bash scripts/build-wasm.sh
//   node --test tests/wasm-node/sync-browser.test.mjs
//
// One Node http server is the page's origin: it serves the page (fixtures/sync-browser.*), the
// web package installed from its npm tarball under /pkg/, and proxies /v1/ to the real server
// (no CORS), counting requests per phase. The page runs one command at a time: it POSTs a
// message to /step and the answer is its next command (see fixtures/sync-browser.mjs); every
// check is made here. Skipped when there is no chromium on PATH. PROXIMA_KEEP_TMP=1 keeps the
// temporary directory (data, install, browser profile).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { repo, startServer as startProxima, waitFor } from './sync-helpers.mjs';

const BIN = path.join(repo, 'target', 'debug', 'proxima');
const WEB_PKG = path.join(repo, 'target', 'wasm-pkg', 'web');
const FIXTURES = path.join(repo, 'tests', 'wasm-node', 'fixtures');
const DIM = 32;
const N = 2000;
const K = 10;
const EF = 200; // local searches compared with the server's exact top-10 walk this wide
const WRITE_KEY = 'write-key';
const READ_KEY = 'read-key';
const COLLECTION = 'docs';
const PERSIST = 'browser-sync-test';
const LIVE_MS = 1000; // a change on the server is in the page's cache within this

function findChromium() {
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

/** Seeded rows in [-1, 1), each value an f32 (so that what comes back compares exactly). */
function rows(n, seed) {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () =>
    Array.from({ length: DIM }, () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return Math.fround(((s >>> 0) / 4294967296) * 2 - 1);
    }),
  );
}

/** A request to the real server (not through the proxy); returns the parsed JSON answer. */
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

/** The server's exact top-k of each query, as [{id, score}]. */
async function serverTopK(server, queries, k = K) {
  const r = await api(server, 'POST', `/v1/collections/${COLLECTION}/search`, { vectors: queries, k, consistency: 'strong' }, READ_KEY);
  return r.results;
}

/** Asserts that local hits are the server's: same ids in the same order, scores within float error. */
function assertSameHits(local, remote, what) {
  assert.equal(local.length, remote.length, `${what}: ${local.length} queries answered, ${remote.length} expected`);
  local.forEach((hits, q) => {
    assert.deepEqual(hits.map((h) => h.id), remote[q].map((h) => h.id), `${what}: query ${q}`);
    hits.forEach((h, j) => {
      const want = remote[q][j].score;
      assert.ok(Math.abs(h.score - want) <= 1e-4 * Math.max(1, Math.abs(want)), `${what}: query ${q} hit ${j}: ${h.score} vs ${want}`);
    });
  });
}

/** npm pack of the web package, installed offline into a fresh project as a user would; its directory. */
function installWebPackage(dir) {
  const env = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  const npm = (args) => execFileSync('npm', args, { cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  npm(['init', '-y']);
  const [packed] = JSON.parse(npm(['pack', WEB_PKG, '--json', '--pack-destination', dir]));
  npm(['install', '--offline', '--no-audit', '--no-fund', path.join(dir, packed.filename)]);
  const installed = path.join(dir, 'node_modules', '@proxima', 'cache-web');
  assert.ok(!fs.lstatSync(installed).isSymbolicLink(), 'the package is a copy, not a link to the build');
  return installed;
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm' };

/**
 * The page's origin: static files, the /v1/ proxy and the /step channel.
 *
 * `upstream` is the real server's URL, or null: then every /v1/ request (and every one in
 * flight, see `cutOff`) loses its connection with no answer, as when the server is unreachable.
 * `requests` lists each proxied request with the `phase` it came in.
 */
class Origin {
  upstream = null;
  phase = 'start';
  requests = [];
  logs = [];
  #inFlight = new Set();
  #held = null; // the page's pending /step request, answered with its next command
  #inbox = []; // messages from the page nobody has taken yet
  #takers = [];
  #nextId = 0;
  #failure = null; // set when the browser is gone: every wait fails with it

  constructor(roots) {
    this.roots = roots;
    this.server = http.createServer((req, res) => this.#respond(req, res));
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  async close() {
    this.cutOff();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  /** Drops every proxied request in flight (their connections close with no answer). */
  cutOff() {
    for (const drop of this.#inFlight) drop();
  }

  /** Proxied requests of `phase` whose path ends with `suffix`. */
  count(phase, suffix) {
    return this.requests.filter((r) => r.phase === phase && r.path.endsWith(suffix)).length;
  }

  /** Requests of `phase`, for messages. */
  listed(phase) {
    return this.requests.filter((r) => r.phase === phase).map((r) => r.url).join('\n  ');
  }

  /** Makes every pending and later wait for the page fail with `error` (the browser is gone). */
  fail(error) {
    this.#failure = error;
    for (const take of this.#takers.splice(0)) take.reject(error);
  }

  /** The page's next message; fails after `ms`. */
  next(ms) {
    if (this.#inbox.length) return Promise.resolve(this.#inbox.shift());
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const taker = { resolve, reject };
      const timer = setTimeout(() => {
        this.#takers.splice(this.#takers.indexOf(taker), 1);
        reject(new Error(`no message from the page within ${ms} ms; page log:\n${this.logs.join('\n')}`));
      }, ms);
      taker.resolve = (m) => (clearTimeout(timer), resolve(m));
      taker.reject = (e) => (clearTimeout(timer), reject(e));
      this.#takers.push(taker);
    });
  }

  /** Answers the page's pending /step request with `command`. */
  send(command) {
    assert.ok(this.#held, `the page is not waiting for a command (to send ${command.op})`);
    const res = this.#held;
    this.#held = null;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(command));
  }

  /** Runs one operation of the page (fixtures/sync-browser.mjs) and resolves with its value; fails with the page's error. */
  async command(op, args = {}, ms = 30_000) {
    const id = ++this.#nextId;
    this.send({ id, op, args });
    const message = await this.next(ms);
    assert.equal(message.type, 'result', `the page answered ${op} with ${JSON.stringify(message)}`);
    assert.equal(message.id, id, `the answer to command ${id} (${op})`);
    if (!message.ok) assert.fail(`the page's ${op} failed${message.code ? ` (${message.code})` : ''}: ${message.error}`);
    return message.value;
  }

  #respond(req, res) {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname.startsWith('/v1/')) return this.#proxy(req, res, url);
    if (req.method === 'POST' && (url.pathname === '/step' || url.pathname === '/log')) {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (url.pathname === '/log') {
          this.logs.push(body);
          res.end('ok');
          return;
        }
        if (this.#held) this.#held.destroy(); // a page that went away left it: nobody reads it
        this.#held = res;
        res.on('close', () => {
          if (this.#held === res) this.#held = null;
        });
        const message = JSON.parse(body);
        const taker = this.#takers.shift();
        if (taker) taker.resolve(message);
        else this.#inbox.push(message);
      });
      return;
    }
    if (url.pathname === '/favicon.ico') return res.writeHead(204).end();
    for (const [prefix, root] of Object.entries(this.roots)) {
      if (!url.pathname.startsWith(prefix)) continue;
      const file = path.join(root, path.normalize(decodeURIComponent(url.pathname.slice(prefix.length))));
      if (file.startsWith(root) && fs.existsSync(file) && fs.statSync(file).isFile()) {
        res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
        res.end(fs.readFileSync(file));
        return;
      }
    }
    res.writeHead(404).end();
  }

  #proxy(req, res, url) {
    const entry = { phase: this.phase, method: req.method, path: url.pathname, url: req.url, at: Date.now() };
    this.requests.push(entry);
    if (!this.upstream) {
      req.socket.destroy();
      return;
    }
    const target = new URL(req.url, this.upstream);
    const up = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host } });
    const drop = () => {
      up.destroy();
      res.destroy();
    };
    this.#inFlight.add(drop);
    res.on('close', () => {
      this.#inFlight.delete(drop);
      up.destroy(); // the page gave up (a long-poll aborted by close()): so does the proxy
    });
    up.on('error', drop); // the server died or refused: the page's connection closes too
    up.on('response', (upRes) => {
      Object.assign(entry, { status: upRes.statusCode, encoding: upRes.headers['content-encoding'] || null, bytes: 0 });
      upRes.on('data', (c) => (entry.bytes += c.length));
      res.writeHead(upRes.statusCode, upRes.headers);
      upRes.on('error', drop);
      upRes.on('aborted', drop);
      upRes.pipe(res);
    });
    req.pipe(up);
  }
}

test('web package in headless Chromium: a live cache in IndexedDB follows the real server, survives its death and a reload', async (t) => {
  const chromium = findChromium();
  if (!chromium) {
    t.skip('no chromium on PATH (scripts/setup.sh installs it)');
    return;
  }
  assert.ok(fs.existsSync(BIN), `${BIN} is missing: run \`cargo build -p proxima-server --bins\` first (./proxima.sh test does)`);
  assert.ok(fs.existsSync(path.join(WEB_PKG, 'package.json')), `${WEB_PKG} has no package.json: run bash scripts/build-wasm.sh first`);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'proxima-sync-browser-'));
  const dataDir = path.join(tmp, 'data');
  const profile = path.join(tmp, 'chromium');
  fs.mkdirSync(path.join(tmp, 'install'));
  const installed = installWebPackage(path.join(tmp, 'install'));

  const data = rows(N, 11);
  const ids = Array.from({ length: N }, (_, i) => i + 1); // id i + 1 is data[i]
  // The writes: id 5 deleted, id 10 moved, id 5000 new (near the deleted vector, so that it
  // takes its place in the answers); after the restart id 7 deleted and ids 6000, 7000 new.
  const DELETED = 5;
  const CHANGED = 10;
  const ADDED = 5000;
  const moved = data[CHANGED - 1].map((x) => -x);
  const added = data[DELETED - 1].map((x, i) => Math.fround(x + (i % 2 ? 0.01 : -0.01)));
  const queries = [data[DELETED - 1], data[CHANGED - 1], moved, ...[0, 123, 777, 1500, 1999].map((i) => data[i].map((x) => Math.fround(x * 0.9)))];
  const options = { collection: COLLECTION, key: READ_KEY, live: true, persist: PERSIST };

  let server = null;
  let browser = null;
  let browserExited = Promise.resolve();
  let browserStderr = '';
  const origin = await new Origin({ '/pkg/': installed, '/fixtures/': FIXTURES }).listen();
  let failed = false;
  const step = (name, fn) =>
    t.test(name, { skip: failed && 'an earlier step failed' }, async () => {
      try {
        await fn();
      } catch (e) {
        failed = true;
        throw e;
      }
    });
  const began = Date.now();
  const timings = {};

  try {
    server = await startProxima(dataDir, ['--write-key', WRITE_KEY, '--read-key', READ_KEY]);
    origin.upstream = server.url;
    await api(server, 'PUT', `/v1/collections/${COLLECTION}`, { dim: DIM, metric: 'l2' });
    for (let i = 0; i < N; i += 1000) {
      await api(server, 'POST', `/v1/collections/${COLLECTION}/vectors`, { ids: ids.slice(i, i + 1000), vectors: data.slice(i, i + 1000) });
    }

    browser = spawn(
      chromium,
      [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
        '--disable-backgrounding-occluded-windows', '--enable-logging=stderr', '--v=0',
        `--user-data-dir=${profile}`, `${origin.url}/fixtures/sync-browser.html`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
    );
    browser.stderr.on('data', (c) => (browserStderr = (browserStderr + c).slice(-6000)));
    browserExited = new Promise((resolve) => browser.once('exit', resolve));
    browserExited.then((code) => origin.fail(new Error(`chromium exited (${code}); it said:\n${browserStderr}`)));

    let first; // phase 1's state after the live changes
    let afterChanges; // the server's top-10 of `queries` after them

    await step('the page loads and runs init()', async () => {
      const hello = await origin.next(60_000);
      assert.equal(hello.type, 'hello', `the page said ${JSON.stringify(hello)}; page log:\n${origin.logs.join('\n')}`);
      assert.equal(hello.initError, undefined, `init() failed in the page: ${hello.initError}`);
      assert.equal(hello.navigation, 'navigate');
      await origin.command('forget', { persist: PERSIST });
    });

    await step('phase 1: VectorCache.open loads the snapshot through the proxy; local top-10 = the server\'s', async () => {
      origin.phase = 'open';
      const opened = await origin.command('open', { options });
      timings.openMs = Math.round(opened.openMs);
      const snapshot = origin.requests.find((r) => r.path.endsWith('/snapshot'));
      t.diagnostic(`snapshot: ${snapshot.bytes} bytes on the wire, content-encoding ${snapshot.encoding}`);
      assert.equal(origin.count('open', '/snapshot'), 1, `requests:\n  ${origin.listed('open')}`);
      assert.equal(opened.len, N);
      assert.ok(opened.complete);
      assert.ok(opened.watermark >= N, `watermark ${opened.watermark}`);
      assert.match(opened.handle, /\S/);
      const described = await api(server, 'GET', `/v1/collections/${COLLECTION}`, undefined, READ_KEY);
      assert.ok(JSON.stringify(described).includes(opened.handle), `the server describes handle ${opened.handle}`);
      assertSameHits(await origin.command('search', { queries, k: K, ef: EF }), await serverTopK(server, queries), 'phase 1');
      const live = await origin.command('waitFor', { state: 'live', timeoutMs: 5000 });
      assert.equal(live.watermark, opened.watermark);
      const before = origin.count('open', '/search');
      const r = await origin.command('searchLocalOrRemote', { query: queries[3], k: K });
      assert.deepEqual([r.source, r.offline, r.stalenessMs], ['local', false, 0]);
      assert.equal(origin.count('open', '/search'), before, 'a live cache answers without asking the server');
      assert.ok(origin.requests.some((q) => q.path.endsWith('/changes') && q.url.includes('live=true')), 'the page long-polls');
    });

    await step(`phase 1, live: a delete, a changed vector and a new one on the server are in the page within ${LIVE_MS} ms`, async () => {
      origin.phase = 'live';
      const seen = origin.command('waitFor', {
        has: [ADDED, CHANGED], absent: [DELETED], vectors: { [CHANGED]: moved, [ADDED]: added }, timeoutMs: 10_000,
      });
      const sentAt = Date.now();
      await api(server, 'POST', `/v1/collections/${COLLECTION}/delete`, { ids: [DELETED] });
      await api(server, 'POST', `/v1/collections/${COLLECTION}/vectors`, { ids: [CHANGED, ADDED], vectors: [moved, added] });
      const ackedAt = Date.now();
      first = await seen;
      timings.liveMs = first.seenAt - sentAt;
      timings.liveAfterAckMs = first.seenAt - ackedAt;
      assert.ok(timings.liveMs <= LIVE_MS, `seen ${timings.liveMs} ms after the first write was sent`);
      assert.equal(origin.count('live', '/snapshot'), 0);
      assert.equal(first.len, N); // one deleted, one added
      assert.equal(first.state, 'live');
      afterChanges = await serverTopK(server, queries);
      assert.equal(afterChanges[0][0].id, ADDED, 'the new vector takes the deleted one\'s place on the server');
      const local = await origin.command('search', { queries, k: K, ef: EF });
      assertSameHits(local, afterChanges, 'after the live changes');
      for (const hits of await origin.command('search', { queries, k: 50 })) {
        assert.ok(!hits.some((h) => h.id === DELETED), 'the deleted id is in no local answer');
      }
    });

    await step('phase 1, server killed: searchLocalOrRemote answers locally, offline; save() leaves the latest blob in IndexedDB', async () => {
      origin.phase = 'down';
      const t0 = Date.now();
      origin.upstream = null;
      await server.kill();
      origin.cutOff();
      server = null;
      const offline = await origin.command('waitFor', { state: 'offline', timeoutMs: 10_000 });
      timings.noticedDownMs = Date.now() - t0;
      assert.equal(offline.watermark, first.watermark);
      for (const maxStalenessMs of [0, undefined]) {
        const r = await origin.command('searchLocalOrRemote', { query: queries[0], k: K, maxStalenessMs });
        assert.deepEqual([r.source, r.offline], ['local', true], `maxStalenessMs ${maxStalenessMs}`);
        assert.equal(r.hits[0].id, ADDED);
        assert.ok(!r.hits.some((h) => h.id === DELETED));
      }
      const saved = await origin.command('save');
      assert.ok(saved.lastPersistAt !== null, 'the blob was persisted');
      const record = await origin.command('persisted', { persist: PERSIST, ids: [DELETED, CHANGED, ADDED] });
      assert.ok(record, 'IndexedDB holds a record');
      assert.deepEqual(
        [record.watermark, record.handle, record.len, record.has, record.meta.format, record.meta.collection],
        [first.watermark, first.handle, N, { [DELETED]: false, [CHANGED]: true, [ADDED]: true }, 'proxima-sync-1', COLLECTION],
      );
      assert.equal(origin.count('down', '/snapshot'), 0);
    });

    await step('phase 2: the page reloads; with the server unreachable, VectorCache.open restores from IndexedDB without a snapshot', async () => {
      origin.phase = 'reload';
      origin.send({ op: 'reload' });
      const hello = await origin.next(30_000);
      assert.equal(hello.type, 'hello', JSON.stringify(hello));
      assert.equal(hello.navigation, 'reload');
      assert.equal(hello.initError, undefined, `init() failed after the reload: ${hello.initError}`);
      assert.equal(origin.count('reload', '/snapshot'), 0, `requests:\n  ${origin.listed('reload')}`);
      origin.phase = 'restore'; // from here on, every request is the new page's
      const back = await origin.command('open', { options });
      timings.restoreMs = Math.round(back.openMs);
      assert.equal(origin.count('restore', '/snapshot'), 0, `requests:\n  ${origin.listed('restore')}`);
      assert.ok(origin.count('restore', '/changes') >= 1, 'the restored cache tried to catch up');
      assert.deepEqual(
        [back.watermark, back.handle, back.len, back.complete, back.state, back.lastError && back.lastError.code],
        [first.watermark, first.handle, N, true, 'offline', 'unreachable'],
      );
      const looked = await origin.command('lookup', { ids: [DELETED, CHANGED, ADDED] });
      assert.deepEqual(looked.map((l) => l.has), [false, true, true]);
      assert.deepEqual(looked[1].vector, moved);
      assertSameHits(await origin.command('search', { queries, k: K, ef: EF }), afterChanges, 'restored');
      const r = await origin.command('searchLocalOrRemote', { query: queries[0], k: K, maxStalenessMs: 0 });
      assert.deepEqual([r.source, r.offline, r.hits[0].id], ['local', true, ADDED]);
      assert.ok(!r.hits.some((h) => h.id === DELETED));
      assert.equal(origin.count('restore', '/snapshot'), 0);
    });

    await step('phase 3: the server restarts on the same data; the live page catches up by changes alone', async () => {
      origin.phase = 'restart';
      server = await startProxima(dataDir, ['--write-key', WRITE_KEY, '--read-key', READ_KEY]);
      await api(server, 'POST', `/v1/collections/${COLLECTION}/delete`, { ids: [7] });
      await api(server, 'POST', `/v1/collections/${COLLECTION}/vectors`, { ids: [6000], vectors: [data[99].map((x) => -x)] });
      const t0 = Date.now();
      origin.upstream = server.url; // the live loop is backing off: it finds the server at its next try
      const caught = await origin.command('waitFor', { has: [6000], absent: [7, DELETED], state: 'live', timeoutMs: 40_000 }, 60_000);
      timings.reconnectMs = caught.seenAt - t0;
      assert.equal(origin.count('restart', '/snapshot'), 0, `requests:\n  ${origin.listed('restart')}`);
      assert.ok(origin.count('restart', '/changes') >= 1);
      assert.equal(caught.handle, first.handle, 'same collection, same handle');
      assert.ok(caught.watermark > first.watermark);
      assert.equal(caught.len, N); // 7 deleted, 6000 added
      assertSameHits(await origin.command('search', { queries, k: K, ef: EF }), await serverTopK(server, queries), 'after the restart');

      // Live again: the next write arrives within the second.
      const seen = origin.command('waitFor', { has: [7000], timeoutMs: 10_000 });
      const sentAt = Date.now();
      await api(server, 'POST', `/v1/collections/${COLLECTION}/vectors`, { ids: [7000], vectors: [data[200].map((x) => -x)] });
      const last = await seen;
      timings.liveAgainMs = last.seenAt - sentAt;
      assert.ok(timings.liveAgainMs <= LIVE_MS, `seen ${timings.liveAgainMs} ms after the write was sent`);
      const closed = await origin.command('close');
      assert.equal(closed.state, 'closed');
      const record = await origin.command('persisted', { persist: PERSIST, ids: [7, 6000, 7000] });
      assert.deepEqual([record.watermark, record.handle, record.has], [closed.watermark, first.handle, { 7: false, 6000: true, 7000: true }]);
      assert.equal(origin.count('restart', '/snapshot'), 0);
      origin.send({ op: 'done' });
    });
    t.diagnostic(`timings (ms): ${JSON.stringify(timings)}, whole test ${Date.now() - began}`);
  } finally {
    if (browser) {
      try {
        process.kill(-browser.pid, 'SIGKILL'); // the browser and the processes it started
      } catch {
        // already gone
      }
      await browserExited;
    }
    await origin.close();
    if (server) await server.stop();
    if (process.env.PROXIMA_KEEP_TMP) console.log(`kept: ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
});
