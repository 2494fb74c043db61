// Installs the npm packages that scripts/build-wasm.sh wrote (target/wasm-pkg/{node,web}) the
// way a user would (npm pack, then npm install of the tarballs into a fresh project, offline),
// then runs the checks in fixtures/ against the installed copies, each in its own process:
//   node --test tests/wasm-node/
// Set PROXIMA_KEEP_TMP=1 to keep the install directory.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { FakeServer, loadPackage } from './sync-helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const pkgs = { node: path.join(repo, 'target', 'wasm-pkg', 'node'), web: path.join(repo, 'target', 'wasm-pkg', 'web') };
const npmEnv = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };

let project; // the fresh npm project the packages are installed into

function npm(args, cwd) {
  return execFileSync('npm', args, { cwd, env: npmEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs a fixture in the install project; fails the test with its output unless it exits 0. */
function runFixture(script, ...args) {
  const r = spawnSync(process.execPath, [script, ...args], { cwd: project, encoding: 'utf8', timeout: 120_000 });
  const output = `${r.stdout}${r.stderr}`.trim();
  assert.equal(r.status, 0, `node ${script} ${args.join(' ')} failed (status ${r.status}, signal ${r.signal}):\n${output}`);
  return output;
}

before(() => {
  for (const [flavour, dir] of Object.entries(pkgs)) {
    assert.ok(
      fs.existsSync(path.join(dir, 'package.json')),
      `${dir} has no package.json: build the ${flavour} package first (bash scripts/build-wasm.sh)`,
    );
  }
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'proxima-wasm-install-'));
  npm(['init', '-y'], project);
  const tarballs = Object.values(pkgs).map((dir) => {
    const [packed] = JSON.parse(npm(['pack', dir, '--json', '--pack-destination', project], project));
    return path.join(project, packed.filename);
  });
  npm(['install', '--offline', '--no-audit', '--no-fund', ...tarballs], project);
  fs.cpSync(path.join(here, 'fixtures'), project, { recursive: true });
});

after(() => {
  if (project && !process.env.PROXIMA_KEEP_TMP) fs.rmSync(project, { recursive: true, force: true });
  else if (project) console.log(`install directory kept: ${project}`);
});

test('the packed packages hold what their package.json names', () => {
  for (const [flavour, name] of [['node', '@proxima/cache-node'], ['web', '@proxima/cache-web']]) {
    const installed = path.join(project, 'node_modules', ...name.split('/'));
    const meta = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
    assert.equal(meta.name, name);
    for (const f of meta.files) assert.ok(fs.existsSync(path.join(installed, f)), `${name}: ${f} was packed`);
    for (const f of ['proxima_wasm_bg.wasm', 'proxima_wasm.js', 'index.js', 'index.d.ts', 'persist.js', 'persist.d.ts', 'sync.js', 'sync.d.ts', 'README.md']) {
      assert.ok(meta.files.includes(f), `${name}: files lists ${f}`);
    }
    assert.equal(meta.types, './index.d.ts');
    assert.equal(meta.type, flavour === 'web' ? 'module' : 'commonjs');
    assert.ok(!fs.lstatSync(installed).isSymbolicLink(), `${name} is a copy, not a link to the build`);
  }
});

test('node package: require() by name gives the helpers', () => runFixture('node-checks.cjs', 'exports'));
test('node package: named ES module imports', () => runFixture('node-esm.mjs'));
test('node package: saveCache/loadCache file format, atomic replace, malformed headers', () =>
  runFixture('node-checks.cjs', 'persist-file'));
test('node package: VectorCache (upsert, search, ids past 2^53, delete, filters, bytes, errors)', () =>
  runFixture('node-checks.cjs', 'cache'));
test('node package: VectorCache through saveCache/loadCache', () => runFixture('node-checks.cjs', 'cache-persist'));
test('web package: ES module import and init() in Node', () => runFixture('web-node.mjs', 'init'));
test('web package: VectorCache search in Node', () => runFixture('web-node.mjs', 'search'));

function findChromium() {
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm' };

/**
 * Serves the installed web package under /pkg/, the fixtures under /fixtures/ and a fake
 * Proxima server with a collection "docs" of 20 vectors under /v1/ (same origin: no CORS);
 * resolves with the POSTed result.
 */
function serve() {
  const fake = new FakeServer(loadPackage(), { dim: 8 });
  for (let i = 0; i < 20; i++) fake.upsert(i, Array.from({ length: 8 }, (_, j) => (i === j ? 1 : 0) + i / 100));
  let deliver;
  const result = new Promise((resolve) => (deliver = resolve));
  const roots = {
    '/pkg/': path.join(project, 'node_modules', '@proxima', 'cache-web'),
    '/fixtures/': project,
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (req.method === 'POST' && url.pathname === '/result') {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        res.end('ok');
        deliver(JSON.parse(body));
      });
      return;
    }
    if (url.pathname.startsWith('/v1/')) {
      fake.respond(req, res);
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    for (const [prefix, root] of Object.entries(roots)) {
      if (!url.pathname.startsWith(prefix)) continue;
      const file = path.join(root, path.normalize(decodeURIComponent(url.pathname.slice(prefix.length))));
      if (file.startsWith(root) && fs.existsSync(file) && fs.statSync(file).isFile()) {
        res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
        res.end(fs.readFileSync(file));
        return;
      }
    }
    res.writeHead(404).end();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, result })));
}

test('web package in headless Chromium: init() fetches the module, saveCache/loadCache in IndexedDB, VectorCache.open', async (t) => {
  const chromium = findChromium();
  if (!chromium) {
    t.skip('no chromium on PATH (scripts/setup.sh installs it)');
    return;
  }
  const { server, result } = await serve();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'proxima-chromium-'));
  const url = `http://127.0.0.1:${server.address().port}/fixtures/browser.html`;
  const browser = spawn(
    chromium,
    [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${profile}`, url,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
  );
  let stderr = '';
  browser.stderr.on('data', (c) => (stderr = (stderr + c).slice(-4000)));
  const exited = new Promise((resolve) => browser.on('exit', resolve));
  let timer;
  const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve(null), 90_000)));
  let outcome;
  try {
    outcome = await Promise.race([result, timeout, exited.then(() => 'exited')]);
  } finally {
    clearTimeout(timer);
    try {
      process.kill(-browser.pid, 'SIGKILL'); // the browser and the processes it started
    } catch {
      // already gone
    }
    await exited;
    server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  assert.ok(outcome && outcome !== 'exited', `no result from the page (${outcome === 'exited' ? 'chromium exited' : 'timed out'}); chromium said:\n${stderr}`);
  assert.ok(!outcome.load, `the page's module did not load: ${outcome.load && outcome.load.error}`);
  await t.test('init() in the page', () => assert.ok(outcome.init.ok, outcome.init.error));
  await t.test('IndexedDB helpers with a stand-in cache', () => assert.ok(outcome.persistFake.ok, outcome.persistFake.error));
  await t.test('VectorCache saved and loaded through IndexedDB', () => assert.ok(outcome.persistReal.ok, outcome.persistReal.error));
  await t.test('VectorCache.open: a synced cache persisted in IndexedDB, restored without a snapshot', () =>
    assert.ok(outcome.syncIndexedDb.ok, outcome.syncIndexedDb.error));
});
