// Saves and loads a VectorCache in IndexedDB (browsers, workers).
//
// One database ("proxima-cache"), one object store ("caches"); each cache is one record under its
// name: {bytes: Uint8Array (cache.toBytes()), meta, savedAt}. A save is one readwrite
// transaction, so the bytes and their metadata (a sync watermark, a handle...) are committed
// together or not at all; the promise resolves once the transaction has completed.

export const DB_NAME = 'proxima-cache';
export const STORE_NAME = 'caches';
const DB_VERSION = 1;

function coded(code, message, cause) {
  const e = new Error(`${code}: ${message}`, cause === undefined ? undefined : { cause });
  e.code = code;
  return e;
}

function storageError(what, cause) {
  const why = cause && (cause.message || cause.name) ? `: ${cause.name || 'Error'}: ${cause.message}` : '';
  return coded('storage_error', `${what}${why}`, cause);
}

function checkName(name) {
  if (typeof name !== 'string' || name.length === 0) {
    throw new TypeError('the cache name must be a non-empty string');
  }
}

function openDb() {
  return new Promise((resolve, reject) => {
    if (typeof indexedDB === 'undefined') {
      reject(storageError('IndexedDB is not available here (in Node.js, use the Node package and its file helper)'));
      return;
    }
    let req;
    try {
      req = indexedDB.open(DB_NAME, DB_VERSION);
    } catch (e) {
      reject(storageError(`cannot open IndexedDB database "${DB_NAME}"`, e));
      return;
    }
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains(STORE_NAME)) db.createObjectStore(STORE_NAME);
    };
    req.onsuccess = () => {
      const db = req.result;
      // Another tab upgrading the database must not wait for us.
      db.onversionchange = () => db.close();
      resolve(db);
    };
    req.onerror = () => reject(storageError(`cannot open IndexedDB database "${DB_NAME}"`, req.error));
  });
}

// Runs `body(store)` in one transaction; resolves with what `body` returned (a request's result
// when it returned a request) once the transaction has completed; rejects on error or abort.
async function inTransaction(mode, what, body) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err) => {
      if (settled) return;
      settled = true;
      db.close();
      reject(storageError(what, err));
    };
    let tx;
    let out;
    try {
      // 'strict': complete fires only once the data has been flushed to disk.
      tx = db.transaction(STORE_NAME, mode, mode === 'readwrite' ? { durability: 'strict' } : undefined);
      out = body(tx.objectStore(STORE_NAME));
    } catch (e) {
      try {
        if (tx) tx.abort();
      } catch (_) {
        // already finished or aborted
      }
      fail(e);
      return;
    }
    tx.oncomplete = () => {
      if (settled) return;
      settled = true;
      db.close();
      resolve(typeof IDBRequest !== 'undefined' && out instanceof IDBRequest ? out.result : out);
    };
    tx.onerror = (event) => fail((event && event.target && event.target.error) || tx.error);
    tx.onabort = () => fail(tx.error || new Error('transaction aborted'));
  });
}

/**
 * Saves `cache` (anything with `toBytes(): Uint8Array`) and `meta` (any structured-cloneable
 * value) under `name`, replacing what was there, in one transaction.
 */
export async function saveCache(name, cache, meta = {}) {
  checkName(name);
  const bytes = cache.toBytes();
  if (!(bytes instanceof Uint8Array)) throw new TypeError('cache.toBytes() must return a Uint8Array');
  await inTransaction('readwrite', `saving cache "${name}"`, (store) => {
    store.put({ bytes, meta, savedAt: Date.now() }, name);
  });
}

/**
 * Loads the cache saved under `name` with `VectorCache.fromBytes`. Resolves to
 * `{cache, meta, savedAt}`, or `null` when nothing is saved under `name`. Rejects when the stored
 * record or its bytes are damaged (fromBytes's error, code "malformed").
 */
export async function loadCache(name, VectorCache) {
  checkName(name);
  if (!VectorCache || typeof VectorCache.fromBytes !== 'function') {
    throw new TypeError('loadCache needs the VectorCache class (with fromBytes) as its second argument');
  }
  const record = await inTransaction('readonly', `loading cache "${name}"`, (store) => store.get(name));
  if (record === undefined) return null;
  if (record === null || typeof record !== 'object' || !(record.bytes instanceof Uint8Array)) {
    throw coded('malformed', `the record saved under "${name}" is not a saved cache`);
  }
  const cache = VectorCache.fromBytes(record.bytes);
  return { cache, meta: record.meta, savedAt: record.savedAt };
}

/** Deletes the cache saved under `name`; resolves to whether there was one. */
export async function deleteCache(name) {
  checkName(name);
  const count = await inTransaction('readwrite', `deleting cache "${name}"`, (store) => {
    const req = store.count(name);
    store.delete(name);
    return req;
  });
  return count > 0;
}
