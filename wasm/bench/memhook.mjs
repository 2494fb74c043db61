// Finds every WebAssembly.Memory the benchmarked packages create, so that their size can be
// read in Node and in Chromium alike: wraps WebAssembly.Memory, WebAssembly.Instance,
// WebAssembly.instantiate and WebAssembly.instantiateStreaming. Install it before any package
// is imported. Memories instantiated outside the JS API (Node's --experimental-wasm-modules)
// are added by their adapter with addMemory().

const memories = new Set();

export function addMemory(m) {
  if (m && m.buffer) memories.add(m);
}

/** Bytes of all wasm linear memories seen so far. */
export function wasmBytes() {
  let total = 0;
  for (const m of memories) total += m.buffer.byteLength;
  return total;
}

function collect(instance) {
  if (!instance || !instance.exports) return;
  for (const v of Object.values(instance.exports)) if (v instanceof WebAssembly.Memory) addMemory(v);
}

let installed = false;
export function installMemoryHook() {
  if (installed) return;
  installed = true;
  const W = WebAssembly;
  const OrigMemory = W.Memory;
  W.Memory = new Proxy(OrigMemory, {
    construct(target, args, newTarget) {
      const m = Reflect.construct(target, args, newTarget === W.Memory ? target : newTarget);
      addMemory(m);
      return m;
    },
  });
  const OrigInstance = W.Instance;
  W.Instance = new Proxy(OrigInstance, {
    construct(target, args, newTarget) {
      const inst = Reflect.construct(target, args, newTarget === W.Instance ? target : newTarget);
      collect(inst);
      return inst;
    },
  });
  for (const name of ['instantiate', 'instantiateStreaming']) {
    const orig = W[name];
    if (typeof orig !== 'function') continue;
    W[name] = async function (...args) {
      const r = await orig.apply(W, args);
      collect(r instanceof OrigInstance ? r : r.instance);
      return r;
    };
  }
}

/**
 * An in-memory stand-in for indexedDB, with just what EdgeVec's storage snippet uses
 * (open, onupgradeneeded/onsuccess, transaction, objectStore put/get, oncomplete): its
 * save(name)/load(name) then serialise to and deserialise from bytes held in memory, as
 * VectorCache.toBytes()/fromBytes() do, instead of timing a database.
 */
export function memoryIndexedDB() {
  const dbs = new Map();
  const later = (f) => Promise.resolve().then(f);
  return {
    open(name) {
      const req = {};
      later(() => {
        let fresh = false;
        if (!dbs.has(name)) {
          dbs.set(name, new Map());
          fresh = true;
        }
        const stores = dbs.get(name);
        const db = {
          objectStoreNames: { contains: (s) => stores.has(s) },
          createObjectStore(s) {
            stores.set(s, new Map());
          },
          transaction(names) {
            const tx = {};
            const store = (s) => {
              if (!stores.has(s)) stores.set(s, new Map());
              const m = stores.get(s);
              return {
                put(value, key) {
                  // IndexedDB stores a structured clone: EdgeVec passes a view of its wasm memory.
                  m.set(key, structuredClone(value));
                  return {};
                },
                get(key) {
                  const r = {};
                  later(() => {
                    r.result = m.get(key);
                    if (r.onsuccess) r.onsuccess({ target: r });
                  });
                  return r;
                },
              };
            };
            tx.objectStore = store;
            later(() => later(() => tx.oncomplete && tx.oncomplete()));
            return tx;
          },
        };
        req.result = db;
        if (fresh && req.onupgradeneeded) req.onupgradeneeded({ target: req });
        if (req.onsuccess) req.onsuccess({ target: req });
      });
      return req;
    },
    _dbs: dbs,
  };
}
