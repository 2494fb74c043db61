// One adapter per benchmarked package. Each loads the package as installed under the scratch
// node_modules (rt.importModule), builds an index with the settings below, and maps its hits
// back to base row numbers (the ground truth's unit).
//
//   ours       @proxima/cache-node (Node) / @proxima/cache-web (Chromium): cosine, M 16, efC 100, ef 64
//   edgevec    EdgeVec 0.9: l2 on the unit vectors (its cosine returns the least similar first),
//              M 16, M0 32, efC 100, ef 64
//   voy        voy-search 0.6: a k-d tree (exact; nothing to configure), euclidean on unit vectors
//   hnswlib    hnswlib-wasm 0.8: cosine, M 16, efC 100, ef 64
//
// An adapter: { key, name, insertCalls, bundle: {node: [files], browser: [files]},
//   load(rt) -> sets .lib/.version, create(ds), insert(index, ds, start, end, payload),
//   prepareChunk?(ds, start, end), search(index, q, k), rows(index, result) -> row numbers,
//   serialize?/deserialize?, selfReportedBytes?, size?, free? }

import { memoryIndexedDB } from './memhook.mjs';

export const SETTINGS = { m: 16, efConstruction: 100, ef: 64 };

const ours = {
  key: 'ours',
  name: 'Proxima VectorCache',
  insertCalls: 'upsert, 1,000 rows per call',
  loadHow: 'VectorCache.fromBytes(cache.toBytes())',
  bundle: {
    node: ['@proxima/cache-node/proxima_wasm_bg.wasm', '@proxima/cache-node/proxima_wasm.js', '@proxima/cache-node/index.js', '@proxima/cache-node/persist.js'],
    browser: ['@proxima/cache-web/proxima_wasm_bg.wasm', '@proxima/cache-web/proxima_wasm.js', '@proxima/cache-web/index.js', '@proxima/cache-web/persist.js'],
  },
  async load(rt) {
    if (rt.runtime === 'node') {
      const mod = await rt.importModule('@proxima/cache-node/index.js');
      this.lib = mod.default || mod;
      this.version = (await rt.readJSON('@proxima/cache-node/package.json')).version;
    } else {
      const mod = await rt.importModule('@proxima/cache-web/index.js');
      await mod.default();
      this.lib = mod;
      this.version = (await rt.readJSON('@proxima/cache-web/package.json')).version;
    }
  },
  create(ds) {
    return new this.lib.VectorCache({ dim: ds.dim, metric: 'cosine', m: SETTINGS.m, efConstruction: SETTINGS.efConstruction, ef: SETTINGS.ef });
  },
  prepareChunk(ds, s, e) {
    const ids = new Array(e - s);
    for (let i = s; i < e; i++) ids[i - s] = i;
    return ids;
  },
  insert(cache, ds, s, e, ids) {
    cache.upsert(ids, ds.base.subarray(s * ds.dim, e * ds.dim));
  },
  search(cache, q, k) {
    return cache.search(q, k);
  },
  rows(cache, hits) {
    return hits.map((h) => Number(h.id));
  },
  size(cache) {
    return cache.len;
  },
  selfReportedBytes(cache) {
    return cache.stats().memoryBytes;
  },
  serialize(cache) {
    return cache.toBytes();
  },
  serializedLength(bytes) {
    return bytes.byteLength;
  },
  deserialize(bytes) {
    return this.lib.VectorCache.fromBytes(bytes);
  },
  free(cache) {
    cache.free();
  },
};

const edgevec = {
  key: 'edgevec',
  name: 'EdgeVec',
  insertCalls: 'insertBatchFlat, 1,000 rows per call',
  bundle: {
    node: ['edgevec/edgevec_bg.wasm', 'edgevec/edgevec.js', 'edgevec/snippets/edgevec-d2ba0e32c31531f9/src/js/storage.js'],
    browser: ['edgevec/edgevec_bg.wasm', 'edgevec/edgevec.js', 'edgevec/snippets/edgevec-d2ba0e32c31531f9/src/js/storage.js'],
  },
  async load(rt) {
    const mod = await rt.importModule('edgevec/edgevec.js');
    if (rt.runtime === 'node') await mod.default({ module_or_path: await rt.readBytes('edgevec/edgevec_bg.wasm') });
    else await mod.default();
    this.lib = mod;
    this.version = (await rt.readJSON('edgevec/package.json')).version;
    // EdgeVec deserialises only through EdgeVec.load(name), which reads IndexedDB. Chromium's
    // own is used there; Node has none: a stand-in keeps the bytes in memory.
    if (rt.runtime === 'node') {
      this.idb = memoryIndexedDB();
      Object.defineProperty(globalThis, 'indexedDB', { value: this.idb, configurable: true, writable: true });
      this.loadHow = 'save(name) + EdgeVec.load(name), an in-memory indexedDB stand-in';
    } else {
      this.idb = null;
      this.loadHow = "save(name) + EdgeVec.load(name), Chromium's IndexedDB (load includes its read)";
    }
  },
  create(ds) {
    const cfg = new this.lib.EdgeVecConfig(ds.dim);
    cfg.metric = 'l2';
    cfg.m = SETTINGS.m;
    cfg.m0 = 2 * SETTINGS.m;
    cfg.ef_construction = SETTINGS.efConstruction;
    cfg.ef_search = SETTINGS.ef;
    return { idx: new this.lib.EdgeVec(cfg), assigned: [], idToRow: null };
  },
  insert(h, ds, s, e) {
    const ids = h.idx.insertBatchFlat(ds.base.subarray(s * ds.dim, e * ds.dim), e - s);
    h.assigned.push([s, ids]);
  },
  search(h, q, k) {
    return h.idx.search(q, k);
  },
  rows(h, hits) {
    if (!h.idToRow) {
      h.idToRow = new Map();
      for (const [s, ids] of h.assigned) ids.forEach((id, j) => h.idToRow.set(id, s + j));
    }
    return hits.map((x) => h.idToRow.get(x.id) ?? -1);
  },
  size(h) {
    return h.idx.liveCount();
  },
  selfReportedBytes(h) {
    return h.idx.memoryUsage();
  },
  async serialize(h) {
    this.rows(h, []);
    await h.idx.save('bench');
    return { name: 'bench', idToRow: h.idToRow };
  },
  serializedLength() {
    const v = this.idb && this.idb._dbs.get('EdgeVecDB')?.get('files')?.get('bench');
    return v ? v.byteLength ?? v.length : null;
  },
  async deserialize(saved) {
    const idx = await this.lib.EdgeVec.load(saved.name);
    return { idx, assigned: [], idToRow: saved.idToRow };
  },
  free(h) {
    h.idx.free();
  },
};

const voy = {
  key: 'voy',
  name: 'Voy',
  insertCalls: 'add, 1,000 rows per call (resource objects built before the clock)',
  loadHow: 'Voy.deserialize(voy.serialize()) (a string)',
  bundle: {
    node: ['voy-search/voy_search_bg.wasm', 'voy-search/voy_search.js', 'voy-search/voy_search_bg.js'],
    browser: ['voy-search/voy_search_bg.wasm', 'voy-search/voy_search.js', 'voy-search/voy_search_bg.js'],
  },
  async load(rt) {
    if (rt.runtime === 'node') {
      // The package imports its .wasm as an ES module: node --experimental-wasm-modules.
      this.lib = await rt.importModule('voy-search/voy_search.js');
      rt.addMemory((await rt.importModule('voy-search/voy_search_bg.wasm')).memory);
    } else {
      // Chromium has no wasm ES-module integration: instantiate it as a bundler would.
      const bg = await rt.importModule('voy-search/voy_search_bg.js');
      const { instance } = await WebAssembly.instantiateStreaming(fetch(rt.url('voy-search/voy_search_bg.wasm')), { './voy_search_bg.js': bg });
      bg.__wbg_set_wasm(instance.exports);
      rt.addMemory(instance.exports.memory);
      this.lib = bg;
    }
    this.version = (await rt.readJSON('voy-search/package.json')).version;
  },
  create() {
    return new this.lib.Voy();
  },
  prepareChunk(ds, s, e) {
    const embeddings = [];
    for (let i = s; i < e; i++) {
      embeddings.push({ id: String(i), title: '', url: '', embeddings: Array.from(ds.base.subarray(i * ds.dim, (i + 1) * ds.dim)) });
    }
    return { embeddings };
  },
  insert(v, ds, s, e, resource) {
    v.add(resource);
  },
  search(v, q, k) {
    return v.search(q, k);
  },
  rows(v, res) {
    return res.neighbors.map((n) => Number(n.id));
  },
  size(v) {
    return v.size();
  },
  serialize(v) {
    return v.serialize();
  },
  serializedLength(s) {
    return s.length;
  },
  deserialize(s) {
    return this.lib.Voy.deserialize(s);
  },
  free(v) {
    v.free();
  },
};

const hnswlib = {
  key: 'hnswlib',
  name: 'hnswlib-wasm',
  insertCalls: 'addPoints, 1,000 rows per call',
  loadHow: 'writeIndex(file) + readIndex(file) in its in-memory Emscripten file system',
  bundle: {
    node: ['hnswlib-wasm/dist/hnswlib.js', 'hnswlib-wasm/dist/hnswlib-317962d7.js'],
    browser: ['hnswlib-wasm/dist/hnswlib.js', 'hnswlib-wasm/dist/hnswlib-317962d7.js'],
  },
  async load(rt) {
    const mod = await rt.importModule('hnswlib-wasm/dist/hnswlib.js');
    this.version = (await rt.readJSON('hnswlib-wasm/package.json')).version;
    // loadHnswlib logs and rethrows; the runner reports the message.
    this.lib = await mod.loadHnswlib();
  },
  create(ds) {
    const idx = new this.lib.HierarchicalNSW('cosine', ds.dim, '');
    idx.initIndex(ds.n, SETTINGS.m, SETTINGS.efConstruction, 100);
    idx.setEfSearch(SETTINGS.ef);
    return idx;
  },
  prepareChunk(ds, s, e) {
    const items = [];
    const labels = [];
    for (let i = s; i < e; i++) {
      items.push(ds.base.subarray(i * ds.dim, (i + 1) * ds.dim));
      labels.push(i);
    }
    return { items, labels };
  },
  insert(idx, ds, s, e, p) {
    idx.addPoints(p.items, p.labels, false);
  },
  search(idx, q, k) {
    return idx.searchKnn(q, k, undefined);
  },
  rows(idx, res) {
    return Array.from(res.neighbors);
  },
  size(idx) {
    return idx.getCurrentCount();
  },
  async serialize(idx) {
    await idx.writeIndex('bench.hnsw');
    return { file: 'bench.hnsw', n: idx.getMaxElements(), dim: idx.getNumDimensions() };
  },
  serializedLength(saved) {
    try {
      return this.lib.FS.stat(saved.file).size;
    } catch {
      return null;
    }
  },
  async deserialize(saved) {
    const idx = new this.lib.HierarchicalNSW('cosine', saved.dim, '');
    await idx.readIndex(saved.file, saved.n);
    idx.setEfSearch(SETTINGS.ef);
    return idx;
  },
};

export const SYSTEMS = { ours, edgevec, voy, hnswlib };
export const SYSTEM_KEYS = Object.keys(SYSTEMS);
