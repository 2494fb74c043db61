// The benchmark page for headless Chromium (served by chromium.mjs): window.__bench.start(cfg)
// loads one system and one dataset, runs core.mjs's measurement and keeps the result for
// window.__bench.state() to hand back.
import { installMemoryHook, wasmBytes, addMemory } from './memhook.mjs';
import { errorText, makeDataset, runOne } from './core.mjs';
import { SYSTEMS } from './systems.mjs';

installMemoryHook();

const logEl = document.getElementById('log');
const state = { started: false, done: false, result: null, log: [] };
const log = (m) => {
  state.log.push(m);
  if (logEl) logEl.textContent += m + '\n';
};

const rt = {
  runtime: 'browser',
  url: (rel) => `/nm/${rel}`,
  importModule: (rel) => import(`/nm/${rel}`),
  readBytes: async (rel) => new Uint8Array(await (await fetch(`/nm/${rel}`)).arrayBuffer()),
  readJSON: async (rel) => (await fetch(`/nm/${rel}`)).json(),
  addMemory,
};

const env = {
  now: () => performance.now(),
  gc: async () => {
    if (typeof window.gc !== 'function') throw new Error('start chromium with --js-flags=--expose-gc');
    window.gc();
    await new Promise((r) => setTimeout(r, 0));
    window.gc();
  },
  heapBytes: () => (performance.memory ? performance.memory.usedJSHeapSize : NaN),
  wasmBytes,
  log,
};

async function fetchBuf(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.arrayBuffer();
}

async function run(cfg) {
  const system = SYSTEMS[cfg.system];
  const base = {
    system: cfg.system, name: system ? system.name : cfg.system, runtime: 'chromium', runtimeVersion: navigator.userAgent,
    dataset: cfg.name, n: cfg.n, crossOriginIsolated: self.crossOriginIsolated,
  };
  try {
    if (!system) throw new Error(`unknown system ${cfg.system}`);
    try {
      await system.load(rt);
    } catch (e) {
      throw Object.assign(new Error(`did not load: ${errorText(e)}`), { loadFailure: true });
    }
    const [b, q, g] = await Promise.all(['base.fbin', 'queries.fbin', 'groundtruth.ibin'].map((f) => fetchBuf(`${cfg.dataUrl}/${f}`)));
    const ds = makeDataset(cfg.name, b, q, g, cfg.n);
    return { ...base, ...(await runOne(system, ds, env)), system: cfg.system, name: system.name };
  } catch (e) {
    return { ...base, version: system ? system.version ?? null : null, error: errorText(e), loadFailure: !!(e && e.loadFailure) };
  }
}

window.__bench = {
  ready: true,
  start(cfg) {
    if (state.started) return false;
    state.started = true;
    run(cfg).then(
      (r) => Object.assign(state, { done: true, result: r }),
      (e) => Object.assign(state, { done: true, result: { error: errorText(e) } }),
    );
    return true;
  },
  state() {
    const s = { done: state.done, result: state.result, log: state.log.slice() };
    state.log.length = 0;
    return s;
  },
};
window.addEventListener('unhandledrejection', (e) => log(`unhandled rejection: ${errorText(e.reason)}`));
