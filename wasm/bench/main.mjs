// Runs every (system x dataset) in Node (one process each) and in headless Chromium (one fresh
// browser each), then writes results.json and results.md to --out and prints the table.
//
//   node wasm/bench/main.mjs --nm target/bench-cache/node_modules --out target/bench-cache \
//     --data debian-minilm:10000:DIR,glove-50:10000:DIR --runtimes node,chromium \
//     --systems ours,edgevec,voy,hnswlib [--command "..."] [--profile wasm-release] [--install FILE]
//
// scripts/bench-cache.sh prepares the packages and datasets and calls this.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { SYSTEMS, SETTINGS } from './systems.mjs';
import { runChromium, CHROMIUM_FLAGS } from './chromium.mjs';
import { K, CHUNK, WARMUP } from './core.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

function args() {
  const a = {};
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) a[v[i].replace(/^--/, '')] = v[i + 1];
  return a;
}
const opt = args();
const nm = path.resolve(opt.nm);
const out = path.resolve(opt.out);
const runtimes = (opt.runtimes || 'node,chromium').split(',');
const systems = (opt.systems || 'ours,edgevec,voy,hnswlib').split(',');
const jobTimeout = Number(opt['job-timeout'] || 1800) * 1000;
const datasets = opt.data.split(',').map((s) => {
  const [name, n, ...dir] = s.split(':');
  return { name, n: Number(n), dir: dir.join(':') };
});
const installed = opt.install && fs.existsSync(opt.install) ? JSON.parse(fs.readFileSync(opt.install, 'utf8')) : {};
fs.mkdirSync(path.join(out, 'runs'), { recursive: true });

const sh = (cmd, a) => {
  try {
    return execFileSync(cmd, a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
};

// ---- bundle sizes: gzip -9 of each file a runtime loads (wasm + JS glue), as installed
function bundle(system, runtime) {
  const files = SYSTEMS[system].bundle[runtime === 'node' ? 'node' : 'browser'];
  let gz = 0;
  let raw = 0;
  for (const f of files) {
    const p = path.join(nm, f);
    if (!fs.existsSync(p)) return null;
    const b = fs.readFileSync(p);
    raw += b.length;
    gz += zlib.gzipSync(b, { level: 9 }).length;
  }
  return { files, raw, gz };
}

// ---- Node: one process per job
function runNode(system, ds) {
  const json = path.join(out, 'runs', `node-${system}-${ds.name}-${ds.n}.json`);
  fs.rmSync(json, { force: true });
  const flags = ['--expose-gc'];
  if (system === 'voy') flags.push('--experimental-wasm-modules', '--no-warnings');
  const a = [...flags, path.join(here, 'node-run.mjs'), '--system', system, '--nm', nm, '--data', ds.dir, '--name', ds.name, '--n', String(ds.n), '--json', json];
  return new Promise((resolve) => {
    const p = spawn(process.execPath, a, { stdio: ['ignore', 'inherit', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c) => {
      process.stderr.write(c);
      err = (err + c).slice(-3000);
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), jobTimeout);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (fs.existsSync(json)) return resolve(JSON.parse(fs.readFileSync(json, 'utf8')));
      const why = signal === 'SIGKILL' ? `no result within ${jobTimeout / 1000} s` : `node exited with ${code ?? signal}: ${err.trim().split('\n').slice(-3).join(' | ')}`;
      resolve({ system, runtime: 'node', dataset: ds.name, n: ds.n, error: why });
    });
  });
}

const results = [];
const started = new Date();
const loadBefore = os.loadavg();
for (const ds of datasets) {
  for (const runtime of runtimes) {
    const todo = systems.filter((s) => {
      if (installed[s] && !installed[s].ok) {
        results.push({ system: s, runtime, dataset: ds.name, n: ds.n, error: `did not install: ${installed[s].error}` });
        return false;
      }
      return true;
    });
    if (runtime === 'node') {
      for (const s of todo) {
        process.stderr.write(`\n== node: ${s} on ${ds.name} (${ds.n})\n`);
        results.push(await runNode(s, ds));
      }
    } else if (runtime === 'chromium') {
      process.stderr.write(`\n== chromium: ${todo.join(', ')} on ${ds.name} (${ds.n})\n`);
      const { results: rs } = await runChromium({
        nm,
        jobs: todo.map((s) => ({ system: s, name: ds.name, n: ds.n, dataDir: ds.dir })),
        timeoutMs: jobTimeout,
        onResult: (r) => fs.writeFileSync(path.join(out, 'runs', `chromium-${r.system}-${ds.name}-${ds.n}.json`), JSON.stringify(r, null, 2) + '\n'),
      }).catch((e) => ({ results: todo.map((s) => ({ system: s, runtime: 'chromium', dataset: ds.name, n: ds.n, error: `chromium: ${e.message}` })) }));
      results.push(...rs);
    }
  }
}
const finished = new Date();
const loadAfter = os.loadavg();
for (const r of results) r.bundle = bundle(r.system, r.runtime);

// ---- header facts
const cpuModel = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) || [])[1] || 'unknown';
const chromiumVersion = results.find((r) => r.browserVersion)?.browserVersion || sh('/usr/bin/chromium', ['--version']);
const memTotal = (fs.readFileSync('/proc/meminfo', 'utf8').match(/MemTotal:\s*(\d+)/) || [])[1];
const header = {
  command: opt.command || process.argv.join(' '),
  build: opt['build-info'] || `HEAD ${sh('git', ['-C', repo, 'rev-parse', '--short=12', 'HEAD']) || 'unknown'} at the end of the run (packages' source not recorded)`,
  profile: opt.profile || 'unknown',
  nproc: os.cpus().length,
  cpu: cpuModel,
  memGiB: memTotal ? (Number(memTotal) / 1048576).toFixed(1) : null,
  node: process.version,
  chromium: chromiumVersion,
  started: started.toISOString(),
  loadavg: { before: loadBefore, after: loadAfter },
  finished: finished.toISOString(),
  versions: Object.fromEntries(systems.map((s) => [s, results.find((r) => r.system === s && r.version)?.version || installed[s]?.version || null])),
};

// ---- Markdown
const f = (x, d) => (x == null || Number.isNaN(x) ? '' : Number(x).toFixed(d));
const fmtInt = (x) => (x == null ? '' : Math.round(x).toLocaleString('en-US'));
const MB = (b) => (b == null ? '' : (b / 1048576).toFixed(1));
const systemLabel = (r) => {
  const s = SYSTEMS[r.system];
  const v = r.version || header.versions[r.system];
  return `${s ? s.name : r.system}${v ? ' ' + v : ''}`;
};
const dsLabel = (name) => name;
const tilde = (p) => (p.startsWith(os.homedir() + '/') ? '~' + p.slice(os.homedir().length) : p);

const lines = [];
lines.push('| system | runtime | dataset | n | insert/s | p50 ms | p99 ms | recall@10 | memory MB | load-from-bytes ms | bundle KB gz |');
lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
const notes = [];
for (const r of results) {
  const b = r.bundle ? (r.bundle.gz / 1024).toFixed(1) : '';
  if (r.error) {
    const why = r.error.replace(/\|/g, '\\|').replace(/\s+/g, ' ').slice(0, 220);
    lines.push(`| ${systemLabel(r)} | ${r.runtime} | ${dsLabel(r.dataset)} | ${fmtInt(r.n)} | ${why} | | | | | | ${b} |`);
    continue;
  }
  let load;
  if (r.loadMs != null) load = f(r.loadMs, r.loadMs < 10 ? 2 : 1) + (r.loadSameAnswers === false ? ' (answers differ!)' : '');
  else if (r.loadError) load = `failed: ${r.loadError.replace(/\|/g, '\\|').slice(0, 120)}`;
  else load = 'n/a';
  const mem = `${MB(r.memory.bytes)}` + (r.selfReportedBytes != null ? ` (self-reported ${MB(r.selfReportedBytes)})` : '');
  lines.push(
    `| ${systemLabel(r)} | ${r.runtime} | ${dsLabel(r.dataset)} | ${fmtInt(r.n)} | ${fmtInt(r.insertPerSec)} | ${f(r.p50ms, 3)} | ${f(r.p99ms, 3)} | ${f(r.recall, 3)} | ${mem} | ${load} | ${b} |`,
  );
}

// headline ratios: ours vs EdgeVec, same runtime and dataset
const ratios = [];
for (const ds of datasets) {
  for (const runtime of runtimes) {
    const o = results.find((r) => r.system === 'ours' && r.runtime === runtime && r.dataset === ds.name && r.n === ds.n && !r.error);
    const e = results.find((r) => r.system === 'edgevec' && r.runtime === runtime && r.dataset === ds.name && r.n === ds.n && !r.error);
    if (!o || !e) continue;
    ratios.push(
      `- ${ds.name}, n ${fmtInt(ds.n)}, ${runtime}: p50 ${f(o.p50ms, 3)} vs ${f(e.p50ms, 3)} ms (EdgeVec ÷ ours = ${f(e.p50ms / o.p50ms, 2)}×), ` +
        `p99 ${f(o.p99ms, 3)} vs ${f(e.p99ms, 3)} ms (${f(e.p99ms / o.p99ms, 2)}×), ` +
        `insert ${fmtInt(o.insertPerSec)} vs ${fmtInt(e.insertPerSec)}/s (ours ÷ EdgeVec = ${f(o.insertPerSec / e.insertPerSec, 2)}×), ` +
        `recall@10 ${f(o.recall, 3)} vs ${f(e.recall, 3)}, memory ${MB(o.memory.bytes)} vs ${MB(e.memory.bytes)} MB`,
    );
  }
}

const bundleLines = [];
for (const s of systems) {
  for (const runtime of runtimes) {
    const b = bundle(s, runtime);
    if (b) bundleLines.push(`  - ${SYSTEMS[s].name} (${runtime}): ${b.files.join(' + ')} = ${(b.raw / 1024).toFixed(1)} KB raw, ${(b.gz / 1024).toFixed(1)} KB gz`);
  }
}

const loadHows = [...new Set(results.filter((r) => r.loadHow).map((r) => `  - ${SYSTEMS[r.system].name} (${r.runtime}): ${r.loadHow}`))];
const insertHows = systems.map((s) => `  - ${SYSTEMS[s].name}: ${SYSTEMS[s].insertCalls}`);

const md = `# Browser cache benchmark

- command: \`${header.command}\`
- build: ${header.build}; wasm crate built with cargo profile \`${header.profile}\` (scripts/build-wasm.sh), packages installed from \`npm pack\` tarballs
- machine: ${header.nproc} CPUs (nproc), ${header.cpu}, ${header.memGiB} GiB RAM; Node ${header.node}; Chromium ${header.chromium} headless (${CHROMIUM_FLAGS.join(' ')} --user-data-dir=<tmp>), driven by chromedriver
- date: ${header.started} to ${header.finished}; load average (1 min) ${loadBefore[0].toFixed(2)} before, ${loadAfter[0].toFixed(2)} after
- peers (npm, as installed): ${systems.filter((s) => s !== 'ours').map((s) => `${SYSTEMS[s].name} ${header.versions[s] || '(not installed)'}`).join(', ')}

${lines.join('\n')}

Headline, ours vs EdgeVec in the same run:
${ratios.length ? ratios.join('\n') : '- (no pair of successful ours/EdgeVec runs)'}

How it was measured:
- Settings: ours cosine, M ${SETTINGS.m}, efConstruction ${SETTINGS.efConstruction}, ef ${SETTINGS.ef}; EdgeVec l2 on the unit vectors (its cosine ranks backwards in 0.9.0; l2 ranks unit vectors the same), M ${SETTINGS.m}, M0 ${2 * SETTINGS.m}, ef_construction ${SETTINGS.efConstruction}, ef_search ${SETTINGS.ef}; hnswlib-wasm cosine, M ${SETTINGS.m}, efConstruction ${SETTINGS.efConstruction}, ef ${SETTINGS.ef}; Voy is an exact k-d tree (nothing to set).
- insert/s: all base vectors, wall clock over every call:
${insertHows.join('\n')}
- p50/p99: one query per call, k = ${K}, every query of the dataset, after ${WARMUP} warm-up queries; performance.now() (5 µs resolution in the page: it is cross-origin isolated).
- recall@10 against the dataset's exact top-10 (cosine, brute force).
- memory MB: JS heap growth over the inserts (Node: process.memoryUsage().heapUsed; Chromium: performance.memory.usedJSHeapSize; each read after a forced full GC) + the byte length of every wasm memory the package created, after the inserts (all of it, including what it reserved at start); "self-reported": ours stats().memoryBytes, EdgeVec memoryUsage().
- load-from-bytes ms: median of up to 3 loads of the serialised index (one when a load takes over 1 s), each checked to answer 3 queries as the original does:
${loadHows.join('\n')}
- bundle KB gz: each file the runtime loads, gzip -9, summed:
${bundleLines.join('\n')}
- Data: ${datasets.map((d) => `${d.name} n ${fmtInt(d.n)} (${tilde(d.dir)})`).join('; ')}. Inserts in calls of ${CHUNK.toLocaleString('en-US')} rows.
`;

fs.writeFileSync(path.join(out, 'results.md'), md);
fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify({ header, results }, null, 2) + '\n');
process.stdout.write('\n' + md);
process.stderr.write(`\nwritten: ${path.join(out, 'results.md')} and results.json\n`);
