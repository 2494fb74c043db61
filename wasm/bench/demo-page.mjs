// The demo page's own load time in headless Chromium over WebDriver (chromedriver), against a
// running server with the demo ready (`./proxima.sh serve`): each run opens `/` in a fresh
// profile (no IndexedDB copy, so the snapshot is downloaded) and waits for the page's
// `proximaDemo.ready`.
//   node wasm/bench/demo-page.mjs [http://127.0.0.1:7700] [runs]
// Prints, per run: when the copy was ready (ms after navigation start, the page's own clock),
// the snapshot's download time and size on the wire, and the vectors held.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const server = process.argv[2] || 'http://127.0.0.1:7700';
const runs = Number(process.argv[3] || 3);
const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => fs.existsSync(p));
if (!chromium) throw new Error('no chromium (scripts/setup.sh installs it)');

const driver = spawn('chromedriver', ['--port=0'], { stdio: ['ignore', 'pipe', 'ignore'] });
const port = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('chromedriver did not start')), 30_000);
  readline.createInterface({ input: driver.stdout }).on('line', (line) => {
    const m = line.match(/started successfully on port (\d+)/);
    if (m) {
      clearTimeout(timer);
      resolve(m[1]);
    }
  });
});
const base = `http://127.0.0.1:${port}`;
async function wd(method, route, body) {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const j = await res.json();
  if (!res.ok) throw new Error(`WebDriver ${method} ${route}: ${JSON.stringify(j).slice(0, 400)}`);
  return j.value;
}

try {
  console.log(`chromium ${chromium}; ${os.cpus().length} CPUs, ${os.cpus()[0].model}; server ${server}`);
  for (let run = 1; run <= runs; run++) {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'proxima-demo-page-'));
    const args = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,900', `--user-data-dir=${profile}`];
    const { sessionId } = await wd('POST', '/session', {
      capabilities: { alwaysMatch: { browserName: 'chrome', 'goog:chromeOptions': { binary: chromium, args } } },
    });
    try {
      await wd('POST', `/session/${sessionId}/timeouts`, { script: 300_000 });
      await wd('POST', `/session/${sessionId}/url`, { url: `${server}/` });
      const st = await wd('POST', `/session/${sessionId}/execute/async`, {
        script: 'const done = arguments[0]; window.proximaDemo.ready.then(() => done(window.proximaDemo.state()), (e) => done({error: String(e)}));',
        args: [],
      });
      if (st.error) throw new Error(st.error);
      const d = st.download || {};
      console.log(
        `run ${run}: ready ${st.readyMs.toFixed(0)} ms after navigation; snapshot ${(d.wireBytes / 1e6).toFixed(1)} MB on the wire in ${d.ms} ms; ${st.vectors} vectors (${st.source})`,
      );
    } finally {
      await wd('DELETE', `/session/${sessionId}`).catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    }
  }
} finally {
  driver.kill();
}
