// The demo page (web-demo/) in headless Chromium, driven over WebDriver (chromedriver), against
// the real server building the demo from 2,000 Debian package descriptions:
//   cargo build -p proxima-server --bins && bash scripts/build-wasm.sh
//   node --test tests/wasm-node/demo-browser.test.mjs
//
// The page syncs its copy of the collection; "edit photos" typed into the search box finds an
// image editor among the top 10, answered by the copy; the test deletes that package on the
// server and the page's results drop it; "go offline" and the same query is answered from the
// stored query vector; a reload (the URL is /?q=edit+photos by then) restores the copy from
// IndexedDB without downloading a snapshot and shows the search done.
//
// Screenshots of each step go to target/test-artifacts/demo/ (1280×900, and one at 390×844),
// with the page's state after each step in steps.json; when a step fails, failure.png and the
// browser's console too. PROXIMA_UPDATE_SCREENSHOT=1 copies the screenshot after the reload to
// docs/demo.png (the README's). PROXIMA_KEEP_TMP=1 keeps the data directory and the browser
// profile. Skipped when chromium or chromedriver is not on PATH (scripts/setup.sh installs both).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import { repo, waitFor } from './sync-helpers.mjs';

const BIN = path.join(repo, 'target', 'debug', 'proxima');
const WEB_DIR = path.join(repo, 'web-demo');
const WEB_PKG = path.join(repo, 'target', 'wasm-pkg', 'web');
const ARTIFACTS = path.join(repo, 'target', 'test-artifacts', 'demo');
const README_SHOT = path.join(repo, 'docs', 'demo.png');
const DEMO_LIMIT = 2000;
const QUERY = 'edit photos';
const WIDE = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const GONE_MS = 2000; // a package deleted on the server leaves the open page's results within this
// An image editor, by its one-line description ("Image editor with raster and vector layers").
const IMAGE_EDITOR = /\b(image|photo|picture|graphics?|raster)s?\s+(editor|editing|manipulation|retouch)|\b(edit|retouch|manipulat)\w*\s+(\w+\s+)?(images?|photos?|pictures?)/i;

function which(name) {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Kills `pid` (a negative one: its process group) if the test process exits first (a timeout, an uncaught error). */
function killOnExit(pid) {
  const kill = () => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  process.once('exit', kill);
  return () => process.off('exit', kill);
}

/** Resolves with the first line of `stream` that `match` accepts (its result); fails after `ms`. */
function lineMatching(stream, match, ms, what, output) {
  const lines = readline.createInterface({ input: stream });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms:\n${output()}`)), ms);
    lines.on('line', (line) => {
      const found = match(line);
      if (found) {
        clearTimeout(timer);
        resolve(found);
      }
    });
    lines.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`${what}: the process closed its output:\n${output()}`));
    });
  });
}

/** `proxima serve` with the demo on a free port over `dataDir`; resolves once /readyz answers 200. */
async function startServer(dataDir) {
  const child = spawn(
    BIN,
    [
      'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--demo-limit', String(DEMO_LIMIT),
      '--web-dir', WEB_DIR, '--web-pkg', WEB_PKG,
    ],
    { env: { ...process.env, RUST_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (c) => (output = (output + c).slice(-4000));
  child.stderr.on('data', keep);
  const forget = killOnExit(child.pid);
  const exited = new Promise((resolve) => child.once('exit', resolve)).finally(forget);
  const server = {
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  try {
    const url = await lineMatching(
      child.stdout,
      (line) => (keep(`${line}\n`), line.split(/\s+/).find((w) => w.startsWith('http://'))),
      60_000,
      'proxima serve printed no address',
      () => output,
    );
    server.url = url;
    await waitFor(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 60_000, 'the server to be ready');
  } catch (e) {
    await server.stop();
    throw e;
  }
  child.stdout.resume(); // the progress bar: keep draining
  return server;
}

/** A JSON request to the server; the parsed answer. */
async function api(server, method, route, body) {
  const res = await fetch(`${server.url}${route}`, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${route}: HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

/** Snapshot downloads the server has answered (its request counter for the route). */
async function snapshotsServed(server) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('proxima_http_requests_total{') && line.includes('route="/v1/collections/{name}/snapshot"')) {
      n += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return n;
}

/** chromedriver on a free port (its own process group, so that the browser goes with it). */
async function startDriver(chromedriver) {
  const child = spawn(chromedriver, ['--port=0'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stderr.on('data', (c) => (output = (output + c).slice(-4000)));
  const forget = killOnExit(-child.pid);
  const exited = new Promise((resolve) => child.once('exit', resolve)).finally(forget);
  const driver = {
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    },
  };
  try {
    const port = await lineMatching(
      child.stdout,
      (line) => (output += `${line}\n`, line.match(/started successfully on port (\d+)/)?.[1]),
      30_000,
      'chromedriver did not say it started',
      () => output,
    );
    driver.url = `http://127.0.0.1:${port}`;
  } catch (e) {
    await driver.stop();
    throw e;
  }
  child.stdout.resume();
  return driver;
}

const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

/** One WebDriver session (W3C protocol over HTTP JSON). */
class Browser {
  static async open(driverUrl, { chromium, profile }) {
    const capabilities = {
      alwaysMatch: {
        browserName: 'chrome',
        pageLoadStrategy: 'normal',
        'goog:loggingPrefs': { browser: 'ALL' },
        'goog:chromeOptions': {
          binary: chromium,
          args: [
            '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
            '--no-default-browser-check', '--disable-background-networking', '--disable-component-update',
            '--disable-sync', '--disable-extensions', '--disable-background-timer-throttling',
            '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows', '--hide-scrollbars',
            '--force-device-scale-factor=1', '--lang=en-US', `--window-size=${WIDE.width},${WIDE.height}`,
            `--user-data-dir=${profile}`,
          ],
        },
      },
    };
    const r = await wd(driverUrl, 'POST', '/session', { capabilities });
    const browser = new Browser(driverUrl, r.sessionId);
    await browser.call('POST', '/timeouts', { script: 60_000, pageLoad: 60_000, implicit: 0 });
    return browser;
  }

  constructor(driverUrl, id) {
    this.base = `${driverUrl}/session/${id}`;
    this.driverUrl = driverUrl;
    this.id = id;
  }

  call(method, route, body) {
    return wd(this.base, method, route, body);
  }

  /** Runs `fn` (a function's source, called with `args`) in the page; its JSON-able result. */
  run(fn, ...args) {
    return this.call('POST', '/execute/sync', { script: `return (${fn}).apply(null, arguments);`, args });
  }

  /** Runs an async `fn` in the page and waits for its promise. */
  runAsync(fn, ...args) {
    const script = `const done = arguments[arguments.length - 1];
      Promise.resolve((${fn}).apply(null, Array.prototype.slice.call(arguments, 0, -1)))
        .then((value) => done({ ok: true, value }), (e) => done({ ok: false, error: String((e && e.stack) || e) }));`;
    return this.call('POST', '/execute/async', { script, args }).then((r) => {
      if (!r.ok) throw new Error(`in the page: ${r.error}`);
      return r.value;
    });
  }

  go(url) {
    return this.call('POST', '/url', { url });
  }

  refresh() {
    return this.call('POST', '/refresh', {});
  }

  async find(css) {
    return (await this.call('POST', '/element', { using: 'css selector', value: css }))[ELEMENT];
  }

  /** Key events, one per character, into the element (focused first). */
  async type(css, text) {
    await this.call('POST', `/element/${await this.find(css)}/value`, { text });
  }

  async clear(css) {
    await this.call('POST', `/element/${await this.find(css)}/clear`, {});
  }

  async click(css) {
    await this.call('POST', `/element/${await this.find(css)}/click`, {});
  }

  /** Sizes the window so that the viewport (what a screenshot shows) is `width` × `height`. */
  async size({ width, height }) {
    const viewport = () => this.run(() => ({ width: window.innerWidth, height: window.innerHeight }));
    await this.call('POST', '/window/rect', { width, height });
    const inner = await viewport();
    const rect = { width: 2 * width - inner.width, height: 2 * height - inner.height }; // the window's frame added
    if (rect.width !== width || rect.height !== height) await this.call('POST', '/window/rect', rect);
    await waitFor(async () => {
      const v = await viewport();
      return v.width === width && v.height === height;
    }, 5000, `a ${width}×${height} viewport`);
  }

  /** A PNG of the viewport, written to `file`. */
  async screenshot(file) {
    const base64 = await this.call('GET', '/screenshot');
    fs.writeFileSync(file, Buffer.from(base64, 'base64'));
    return file;
  }

  /** The browser's console since the last call (best effort). */
  async consoleLog() {
    try {
      const entries = await wd(this.driverUrl, 'POST', `/session/${this.id}/se/log`, { type: 'browser' });
      return entries.length ? entries.map((e) => `${e.level} ${e.message}`).join('\n') : '(no console messages)';
    } catch (e) {
      return `(no console log: ${e.message})`;
    }
  }

  async close() {
    await this.call('DELETE', '', undefined);
  }
}

/** One WebDriver command; its `value`, or an error with WebDriver's message. */
async function wd(base, method, route, body) {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { 'content-type': 'application/json; charset=utf-8' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`WebDriver ${method} ${route}: HTTP ${res.status}: ${text.slice(0, 500)}`);
  }
  if (!res.ok) {
    const v = parsed.value || {};
    throw new Error(`WebDriver ${method} ${route}: ${v.error || res.status}: ${v.message || text.slice(0, 500)}`);
  }
  return parsed.value;
}

// --- what the test reads from the page (each runs in the page) ------------------------------------

/** window.proximaDemo.state() without the hits' descriptions, or null before the page set it up. */
const pageState = () => {
  if (!window.proximaDemo) return null;
  const s = window.proximaDemo.state();
  return { ...s, last: s.last && { ...s.last, hits: (s.last.hits || []).map((h) => ({ id: h.id, name: h.name })) } };
};

/** The results as shown: each item's id, name, description and where its answer came from. */
const shownResults = () => ({
  source: document.querySelector('#answer-source')?.dataset.source || null,
  info: document.querySelector('#search-info')?.textContent || '',
  notice: document.querySelector('#notice')?.hidden ? null : document.querySelector('#notice')?.textContent || null,
  query: document.querySelector('#q').value,
  url: location.pathname + location.search,
  hits: [...document.querySelectorAll('#results li[data-id]')].map((li) => ({
    id: Number(li.dataset.id),
    source: li.dataset.source,
    name: li.querySelector('.name')?.textContent || '',
    description: li.querySelector('.desc')?.textContent || '',
  })),
});

/** Snapshot downloads in this page's resource timing. */
const snapshotRequests = () =>
  performance.getEntriesByType('resource').map((e) => e.name).filter((n) => new URL(n).pathname.endsWith('/snapshot'));

// ---------------------------------------------------------------------------------------------------

test('the demo page in headless Chromium: synced copy, local answers, live delete, offline, restored from IndexedDB', { timeout: 420_000 }, async (t) => {
  const chromium = which('chromium') || which('chromium-browser') || which('google-chrome');
  const chromedriver = which('chromedriver');
  if (!chromium || !chromedriver) {
    t.skip(`no ${chromium ? 'chromedriver' : 'chromium'} on PATH (scripts/setup.sh installs chromium and chromium-driver)`);
    return;
  }
  assert.ok(fs.existsSync(BIN), `${BIN} is missing: run \`cargo build -p proxima-server --bins\` first (./proxima.sh test does)`);
  assert.ok(fs.existsSync(path.join(WEB_PKG, 'index.js')), `${WEB_PKG} has no index.js: run bash scripts/build-wasm.sh first`);

  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  console.log(`demo screenshots: ${ARTIFACTS}`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'proxima-demo-browser-'));
  const profile = path.join(tmp, 'chromium'); // a fresh profile: no service worker, no IndexedDB yet

  let server = null;
  let driver = null;
  let browser = null;
  const began = Date.now();
  const timings = {};
  const record = []; // steps.json: what the page said after each step
  let shot = 0;
  const screenshot = async (name) => {
    const file = path.join(ARTIFACTS, `${String(++shot).padStart(2, '0')}-${name}.png`);
    await browser.screenshot(file);
    return file;
  };
  const note = (step, value) => {
    record.push({ step, atMs: Date.now() - began, ...value });
    fs.writeFileSync(path.join(ARTIFACTS, 'steps.json'), JSON.stringify(record, null, 1));
  };
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
  /** Polls the page until `cond(state)` holds; the state then. */
  const until = async (fn, cond, ms, what) => {
    let last;
    const deadline = Date.now() + ms;
    for (;;) {
      last = await browser.run(fn);
      if (last && cond(last)) return last;
      if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}; the page says:\n${JSON.stringify(last, null, 1)}`);
      await sleep(100);
    }
  };

  let editor; // the image editor found by the search, deleted on the server
  let seenGoneAt; // the page's clock when its results dropped it
  let snapshotsBefore;

  try {
    const started = await Promise.allSettled([startServer(path.join(tmp, 'data')), startDriver(chromedriver)]);
    [server, driver] = started.map((r) => (r.status === 'fulfilled' ? r.value : null));
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    t.diagnostic(`server ${server.url}, chromedriver ${driver.url}`);
    browser = await Browser.open(driver.url, { chromium, profile });
    await browser.size(WIDE);

    await step('the page opens at once and fills as the server builds the demo; the copy is then complete and live', async () => {
      await browser.go(`${server.url}/`);
      await until(pageState, (s) => s !== null, 30_000, 'window.proximaDemo');
      // While the server embeds, the copy fills through live sync: one screenshot of that
      // (when the page gets to see it; a fast machine may finish first).
      const filling = await until(
        pageState,
        (s) => (s.ready && s.demo && s.demo.state === 'embedding' && s.vectors > 0) || (s.demo && ['ready', 'failed', 'off'].includes(s.demo.state)),
        240_000,
        'the copy to fill while the server builds the demo, or the demo built',
      );
      if (filling.demo.state === 'embedding') {
        note('filling', { state: filling });
        await screenshot('filling');
      }
      const ready = await until(
        pageState,
        (s) => {
          assert.ok(!s.demo || !['failed', 'off'].includes(s.demo.state), `the demo is ${s.demo && s.demo.state}: ${s.demo && s.demo.message}`);
          return s.ready && s.demo && s.demo.state === 'ready' && s.vectors === s.demo.total && s.connection === 'live' && s.docsComplete;
        },
        240_000,
        `the demo built (${DEMO_LIMIT} texts), the copy complete and live`,
      );
      timings.readyMs = Date.now() - began;
      // Once it resolves, the page's own promise agrees.
      await browser.runAsync(() => window.proximaDemo.ready.then(() => true));
      assert.equal(ready.demo.total, DEMO_LIMIT);
      assert.equal(ready.complete, true);
      assert.equal(ready.error, null);
      assert.equal(ready.source, 'snapshot', 'a fresh profile downloads the snapshot');
      assert.equal(ready.docs, DEMO_LIMIT);
      note('ready', { state: ready });
      await screenshot('ready');
    });

    await step(`"${QUERY}" typed into the search box: an image editor among the top 10, answered by the copy`, async () => {
      const answersBefore = (await browser.run(pageState)).answers;
      await browser.click('#q');
      await browser.type('#q', QUERY);
      const s = await until(
        pageState,
        (x) => x.last && x.last.kind === 'query' && x.last.query === QUERY && x.last.hits.length === 10,
        20_000,
        `the results of "${QUERY}"`,
      );
      const shown = await browser.run(shownResults);
      note('search', { state: s, shown });
      await screenshot('search');
      assert.equal(s.last.source, 'local', 'a live, complete copy answers');
      assert.equal(s.last.vectorFrom, 'server', 'a new query is embedded by the server');
      assert.equal(s.answers.local, answersBefore.local + 1);
      assert.equal(s.answers.server, answersBefore.server);
      assert.equal(shown.query, QUERY);
      assert.equal(shown.url, `/?q=${QUERY.replace(/ /g, '+')}`, 'the URL carries the query');
      assert.equal(shown.source, 'local');
      assert.match(shown.info, /answered by the copy in this browser/);
      assert.equal(shown.hits.length, 10);
      assert.deepEqual(shown.hits.map((h) => h.source), Array(10).fill('local'));
      assert.deepEqual(shown.hits.map((h) => h.id), s.last.hits.map((h) => h.id));
      for (const h of shown.hits) assert.ok(h.name && h.description && h.description !== 'description not loaded', `#${h.id} is shown with its name and description`);
      editor = shown.hits.find((h) => IMAGE_EDITOR.test(`${h.name}: ${h.description}`));
      assert.ok(editor, `an image editor among the top 10 of "${QUERY}":\n${shown.hits.map((h) => `  ${h.name}: ${h.description}`).join('\n')}`);
      t.diagnostic(`image editor: #${editor.id} ${editor.name}: ${editor.description} (rank ${shown.hits.indexOf(editor) + 1})`);
    });

    await step(`the image editor deleted on the server leaves the page's results within ${GONE_MS} ms`, async () => {
      const before = await browser.run(pageState);
      const sentAt = Date.now();
      const deleted = await api(server, 'DELETE', `/v1/demo/docs/${editor.id}`);
      const gone = await until(
        `() => ({ shown: (${shownResults})(), state: window.proximaDemo.state(), now: Date.now() })`,
        (x) => x.shown.hits.length === 10 && !x.shown.hits.some((h) => h.id === editor.id),
        10_000,
        `#${editor.id} (${editor.name}) to leave the results`,
      );
      timings.goneMs = Date.now() - sentAt;
      seenGoneAt = gone.now;
      note('deleted', { deleted, shown: gone.shown, watermark: gone.state.watermark, goneMs: timings.goneMs });
      await screenshot('deleted');
      assert.ok(timings.goneMs <= GONE_MS, `the results dropped #${editor.id} ${timings.goneMs} ms after the DELETE was sent`);
      assert.ok(gone.state.watermark >= deleted.seq, `watermark ${gone.state.watermark}, delete at ${deleted.seq}`);
      assert.equal(gone.state.vectors, before.vectors - 1);
      assert.equal(gone.state.connection, 'live');
      assert.deepEqual(gone.shown.hits.map((h) => h.source), Array(10).fill('local'));
      assert.equal(gone.shown.query, QUERY);
      assert.equal(gone.state.answers.server, before.answers.server, 'the refreshed results came from the copy');
    });

    await step('"go offline", then the same query again: answered by the copy with the stored query vector', async () => {
      await browser.click('#go-offline');
      const off = await until(pageState, (s) => s.offline && s.connection === 'offline', 10_000, 'the copy to be offline');
      assert.equal(await browser.run(() => document.querySelector('#go-offline').getAttribute('aria-pressed')), 'true');
      await browser.clear('#q');
      await browser.type('#q', QUERY);
      const s = await until(
        pageState,
        (x) => x.last && x.last.kind === 'query' && x.last.query === QUERY && x.last.vectorFrom === 'stored',
        10_000,
        `the offline answer to "${QUERY}"`,
      );
      const shown = await browser.run(shownResults);
      note('offline', { state: s, shown });
      await screenshot('offline');
      assert.equal(s.last.source, 'local');
      assert.equal(s.last.offline, true);
      assert.equal(s.answers.server, off.answers.server);
      assert.equal(shown.source, 'local');
      assert.match(shown.info, /offline mode/);
      assert.match(shown.info, /query vector stored in this browser/);
      assert.equal(shown.hits.length, 10);
      assert.ok(!shown.hits.some((h) => h.id === editor.id), `#${editor.id} stays deleted`);
      assert.equal(await browser.run(() => document.querySelector('#conn').textContent), 'offline');
    });

    await step('a reload (/?q=edit+photos) restores the copy from IndexedDB without a snapshot and shows the search done', async () => {
      // The page writes its copy 2 s after a change: wait for the write that holds the delete.
      const saved = await until(pageState, (s) => s.lastPersistAt !== null && s.lastPersistAt > seenGoneAt, 15_000, 'the copy written to IndexedDB after the delete');
      snapshotsBefore = await snapshotsServed(server);
      assert.ok(snapshotsBefore >= 1, "the server's metrics count the first visit's snapshot");
      const t0 = Date.now();
      await browser.refresh();
      const s = await until(
        pageState,
        (x) => x.ready && x.connection === 'live' && x.last && x.last.kind === 'query' && x.last.query === QUERY && x.docsComplete,
        30_000,
        'the reloaded page: copy restored, live, search shown',
      );
      timings.reloadMs = Date.now() - t0;
      await browser.runAsync(() => window.proximaDemo.ready.then(() => true));
      const shown = await browser.run(shownResults);
      const snapshots = await browser.run(snapshotRequests);
      const loaded = await browser.run(() => document.querySelector('#st-loaded').textContent);
      note('reloaded', { state: s, shown, snapshots, loaded, savedAt: saved.lastPersistAt });
      const reloaded = await screenshot('reloaded');
      assert.equal(s.source, 'persisted', 'the copy came from IndexedDB');
      assert.equal(s.download, null, 'no snapshot was downloaded');
      assert.deepEqual(snapshots, [], 'no /snapshot request in the page');
      assert.equal(await snapshotsServed(server), snapshotsBefore, 'the server sent no snapshot');
      assert.match(loaded, /restored from IndexedDB/);
      assert.equal(s.offline, false, 'a reload is online again');
      assert.equal(s.vectors, DEMO_LIMIT - 1);
      assert.equal(s.complete, true);
      assert.equal(shown.url, `/?q=${QUERY.replace(/ /g, '+')}`);
      assert.equal(shown.query, QUERY);
      assert.equal(s.last.source, 'local');
      assert.equal(s.last.vectorFrom, 'stored', 'the query vector was kept in IndexedDB');
      assert.equal(shown.hits.length, 10);
      assert.deepEqual(shown.hits.map((h) => h.source), Array(10).fill('local'));
      assert.ok(!shown.hits.some((h) => h.id === editor.id), `#${editor.id} stays deleted`);
      for (const h of shown.hits) assert.ok(h.name && h.description !== 'description not loaded', `#${h.id} has its name and description`);
      if (process.env.PROXIMA_UPDATE_SCREENSHOT === '1') {
        // The README's picture: the page as a returning visitor sees it.
        fs.mkdirSync(path.dirname(README_SHOT), { recursive: true });
        fs.copyFileSync(reloaded, README_SHOT);
        t.diagnostic(`README screenshot updated: ${README_SHOT}`);
      }
    });

    await step(`at phone width (${PHONE.width}×${PHONE.height}) the page fits the screen`, async () => {
      await browser.size(PHONE);
      await browser.run(() => window.scrollTo(0, 0));
      const fit = await browser.run(() => ({ inner: window.innerWidth, scroll: document.documentElement.scrollWidth }));
      note('phone', { fit });
      await screenshot('phone');
      assert.ok(fit.scroll <= fit.inner, `the page is ${fit.scroll} px wide in a ${fit.inner} px viewport`);
    });

    timings.totalMs = Date.now() - began;
    t.diagnostic(`timings (ms): ${JSON.stringify(timings)}; screenshots in ${ARTIFACTS}`);
  } finally {
    if (browser) {
      if (failed) {
        await browser.screenshot(path.join(ARTIFACTS, 'failure.png')).catch(() => {});
        fs.writeFileSync(path.join(ARTIFACTS, 'console.log'), await browser.consoleLog());
        const s = await browser.run(pageState).catch((e) => `(no state: ${e.message})`);
        fs.writeFileSync(path.join(ARTIFACTS, 'failure-state.json'), JSON.stringify(s, null, 1));
        if (server) fs.writeFileSync(path.join(ARTIFACTS, 'server.log'), server.output());
      }
      await browser.close().catch(() => {});
    }
    if (driver) await driver.stop();
    killLeftovers(profile);
    if (server) await server.stop();
    if (process.env.PROXIMA_KEEP_TMP) console.log(`kept: ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
});

/** Kills browser processes still running with this test's profile (the driver normally ends them). */
function killLeftovers(profile) {
  let pids = [];
  try {
    pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return; // no /proc: nothing to look at
  }
  for (const pid of pids) {
    let cmdline;
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmdline.includes(`--user-data-dir=${profile}`)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}
