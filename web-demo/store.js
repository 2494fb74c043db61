// What the page keeps in IndexedDB besides the cache itself (which the package persists in its
// own database, "proxima-cache"): the documents shown beside the results, and the vectors of
// recently embedded queries, so that both work offline after a reload.
//
// Database "proxima-demo":
//   docs     one record, "all": {handle, complete, rows: [[id, name, description], ...], savedAt}
//   queries  one record per query, keyed by its normalised text: {key, q, vector, at}
//
// Every function resolves (to an empty answer) when IndexedDB is not available: the page
// then works from memory only.

const DB_NAME = 'proxima-demo';
const DB_VERSION = 1;

let opening = null;

function openDb() {
  if (!opening) {
    opening = new Promise((resolve) => {
      if (typeof indexedDB === 'undefined') return resolve(null);
      const req = indexedDB.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains('docs')) db.createObjectStore('docs');
        if (!db.objectStoreNames.contains('queries')) db.createObjectStore('queries', { keyPath: 'key' });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => resolve(null);
      req.onblocked = () => resolve(null);
    });
  }
  return opening;
}

/** Runs `body(store)` in one transaction; resolves with `fallback` when there is no database. */
async function run(storeName, mode, body, fallback) {
  const db = await openDb();
  if (!db) return fallback;
  return new Promise((resolve) => {
    let out;
    try {
      const tx = db.transaction(storeName, mode);
      out = body(tx.objectStore(storeName));
      tx.oncomplete = () => resolve(out instanceof IDBRequest ? out.result : out);
      tx.onerror = () => resolve(fallback);
      tx.onabort = () => resolve(fallback);
    } catch {
      resolve(fallback);
    }
  });
}

/** The stored documents: {handle, complete, rows}, or null. */
export function loadDocs() {
  return run('docs', 'readonly', (s) => s.get('all'), null).then((r) => r || null);
}

/** Replaces the stored documents. */
export function saveDocs(record) {
  return run('docs', 'readwrite', (s) => s.put({ ...record, savedAt: Date.now() }, 'all'), null);
}

/** Every stored query, least recently used first. */
export async function loadQueries() {
  const all = await run('queries', 'readonly', (s) => s.getAll(), []);
  return (all || []).filter((r) => r && r.vector instanceof Float32Array).sort((a, b) => a.at - b.at);
}

/** Stores (or touches) a query; deletes the keys in `evict`. */
export function putQuery(record, evict = []) {
  return run(
    'queries',
    'readwrite',
    (s) => {
      s.put(record);
      for (const key of evict) s.delete(key);
    },
    null,
  );
}

/** Forgets everything the page stored. */
export function clearAll() {
  return run('docs', 'readwrite', (s) => s.clear(), null).then(() => run('queries', 'readwrite', (s) => s.clear(), null));
}
