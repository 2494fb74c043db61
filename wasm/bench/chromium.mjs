// Runs benchmark jobs in headless Chromium, one fresh browser per job, driven through
// chromedriver's WebDriver HTTP API from Node; a tiny local HTTP server serves the page
// (wasm/bench/), the installed packages (<scratch>/node_modules) and the datasets. The page
// POSTs its result back to that server when it is done.
//
// The server sends COOP/COEP headers so that the page is cross-origin isolated: performance.now()
// then has 5 µs resolution instead of 100 µs. Chromium gets the flags below; the last two
// (--enable-precise-memory-info, --js-flags=--expose-gc) make performance.memory exact and
// let the page run a full GC before reading it.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--enable-precise-memory-info', '--js-flags=--expose-gc',
];

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };

function startServer(nm, datasets) {
  const waiting = new Map(); // job id -> resolve
  const roots = { '/bench/': here, '/nm/': nm };
  datasets.forEach((dir, i) => (roots[`/data/${i}/`] = dir));
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const isolation = {
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cross-origin-resource-policy': 'same-origin',
      'cache-control': 'no-store',
    };
    if (req.method === 'POST' && url.pathname.startsWith('/result/')) {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        res.writeHead(200, isolation).end('ok');
        const id = url.pathname.slice('/result/'.length);
        const deliver = waiting.get(id);
        if (deliver) deliver(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      });
      return;
    }
    if (req.method === 'POST' && url.pathname === '/log') {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        res.writeHead(200, isolation).end('ok');
        process.stderr.write(`[chromium] ${Buffer.concat(chunks).toString('utf8')}\n`);
      });
      return;
    }
    for (const [prefix, root] of Object.entries(roots)) {
      if (!url.pathname.startsWith(prefix)) continue;
      const file = path.join(root, path.normalize(decodeURIComponent(url.pathname.slice(prefix.length))));
      if (file.startsWith(root) && fs.existsSync(file) && fs.statSync(file).isFile()) {
        res.writeHead(200, { ...isolation, 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'content-length': fs.statSync(file).size });
        fs.createReadStream(file).pipe(res);
        return;
      }
    }
    res.writeHead(404, isolation).end();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        server,
        port: server.address().port,
        expect: (id) => new Promise((r) => waiting.set(id, r)),
      }),
    ),
  );
}

async function wd(base, method, p, body) {
  const r = await fetch(base + p, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`WebDriver ${method} ${p}: HTTP ${r.status} ${JSON.stringify(j.value || j).slice(0, 500)}`);
  return j.value;
}

async function startDriver(chromedriver) {
  const port = 9600 + Math.floor(Math.random() * 300);
  const proc = spawn(chromedriver, [`--port=${port}`], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  proc.stderr.on('data', (c) => (stderr = (stderr + c).slice(-4000)));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      const s = await wd(base, 'GET', '/status');
      if (s && s.ready) return { proc, base };
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    process.kill(-proc.pid, 'SIGKILL');
  } catch {
    // gone
  }
  throw new Error(`chromedriver did not start: ${stderr}`);
}

/**
 * jobs: [{system, name, n, dataDir}]; returns one result object per job (errors included).
 * timeoutMs: per job.
 */
export async function runChromium({ nm, jobs, chromium = '/usr/bin/chromium', chromedriver = '/usr/bin/chromedriver', timeoutMs = 900_000, onResult = () => {} }) {
  const dirs = [...new Set(jobs.map((j) => j.dataDir))];
  const srv = await startServer(nm, dirs);
  const drv = await startDriver(chromedriver);
  const results = [];
  let browserVersion = null;
  try {
    for (const [i, job] of jobs.entries()) {
      const id = `job${i}`;
      const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'proxima-bench-chromium-'));
      let session = null;
      let result;
      try {
        const created = await wd(drv.base, 'POST', '/session', {
          capabilities: { alwaysMatch: { browserName: 'chrome', 'goog:chromeOptions': { binary: chromium, args: [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`] } } },
        });
        session = created.sessionId;
        browserVersion = created.capabilities.browserVersion;
        const s = `/session/${session}`;
        await wd(drv.base, 'POST', `${s}/url`, { url: `http://127.0.0.1:${srv.port}/bench/page.html` });
        let ready = false;
        for (let t = 0; t < 100 && !ready; t++) {
          ready = await wd(drv.base, 'POST', `${s}/execute/sync`, { script: 'return !!(window.__bench && window.__bench.ready)', args: [] });
          if (!ready) await new Promise((r) => setTimeout(r, 100));
        }
        if (!ready) throw new Error('the benchmark page did not load (window.__bench missing)');
        const cfg = { system: job.system, name: job.name, n: job.n, dataUrl: `/data/${dirs.indexOf(job.dataDir)}` };
        const done = srv.expect(id);
        // The page runs the benchmark, then POSTs the result; nothing polls it meanwhile, so
        // the page's main thread is never interrupted.
        await wd(drv.base, 'POST', `${s}/execute/sync`, {
          script: `const [cfg, id] = arguments;
            const post = (p, body) => fetch(p, {method: 'POST', body});
            window.__bench.start(cfg);
            (async () => { for (;;) { await new Promise((r) => setTimeout(r, 1000)); const st = window.__bench.state();
              for (const l of st.log) post('/log', l);
              if (st.done) { await post('/result/' + id, JSON.stringify(st.result)); return; } } })();
            return true;`,
          args: [cfg, id],
        });
        let timer;
        result = await Promise.race([done, new Promise((r) => (timer = setTimeout(() => r(null), timeoutMs)))]);
        clearTimeout(timer);
        if (!result) result = { system: job.system, runtime: 'chromium', dataset: job.name, n: job.n, error: `no result within ${timeoutMs / 1000} s` };
      } catch (e) {
        result = { system: job.system, runtime: 'chromium', dataset: job.name, n: job.n, error: String(e && e.message ? e.message : e) };
      } finally {
        if (session) await wd(drv.base, 'DELETE', `/session/${session}`).catch(() => {});
        fs.rmSync(profile, { recursive: true, force: true });
      }
      result.browserVersion = browserVersion;
      results.push(result);
      onResult(result);
    }
  } finally {
    try {
      process.kill(-drv.proc.pid, 'SIGTERM');
    } catch {
      // gone
    }
    srv.server.close();
  }
  return { results, browserVersion };
}
