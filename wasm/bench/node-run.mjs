// Runs one system on one dataset in this Node process and writes the result as JSON:
//   node --expose-gc [--experimental-wasm-modules] wasm/bench/node-run.mjs \
//     --system ours|edgevec|voy|hnswlib --nm <scratch>/node_modules --data DIR --name NAME --n N --json OUT
// A package that does not load is reported as {error: "did not load: ..."}, not skipped.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { installMemoryHook, wasmBytes, addMemory } from './memhook.mjs';
import { SYSTEMS } from './systems.mjs';
import { errorText, makeDataset, runOne } from './core.mjs';

installMemoryHook();

function args() {
  const a = {};
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) a[v[i].replace(/^--/, '')] = v[i + 1];
  return a;
}

const opt = args();
const system = SYSTEMS[opt.system];
if (!system) throw new Error(`unknown system ${opt.system}`);
const nm = path.resolve(opt.nm);
const rt = {
  runtime: 'node',
  importModule: (rel) => import(pathToFileURL(path.join(nm, rel)).href),
  readBytes: async (rel) => fs.readFileSync(path.join(nm, rel)),
  readJSON: async (rel) => JSON.parse(fs.readFileSync(path.join(nm, rel), 'utf8')),
  addMemory,
};
const env = {
  now: () => performance.now(),
  gc: async () => {
    if (!global.gc) throw new Error('run node with --expose-gc');
    global.gc();
    await new Promise((r) => setTimeout(r, 0));
    global.gc();
  },
  heapBytes: () => process.memoryUsage().heapUsed,
  wasmBytes,
  log: (m) => process.stderr.write(`[node] ${m}\n`),
};

const base = { system: system.key, name: system.name, runtime: 'node', runtimeVersion: process.version, dataset: opt.name, n: Number(opt.n) };
let result;
try {
  try {
    await system.load(rt);
  } catch (e) {
    throw Object.assign(new Error(`did not load: ${errorText(e)}`), { loadFailure: true });
  }
  const read = (f) => {
    const b = fs.readFileSync(path.join(opt.data, f));
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  };
  const ds = makeDataset(opt.name, read('base.fbin'), read('queries.fbin'), read('groundtruth.ibin'), Number(opt.n));
  const rss0 = process.memoryUsage().rss;
  result = { ...base, ...(await runOne(system, ds, env)), system: system.key, name: system.name };
  result.rssAfterMinusBefore = process.memoryUsage().rss - rss0;
} catch (e) {
  result = { ...base, version: system.version ?? null, error: errorText(e), loadFailure: !!(e && e.loadFailure) };
}
fs.writeFileSync(opt.json, JSON.stringify(result, null, 2) + '\n');
process.stderr.write(`[node] ${system.key} ${opt.name}: ${result.error ? 'ERROR ' + result.error : 'done'}\n`);
