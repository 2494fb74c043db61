// @proxima/cache-web: the wasm module (call the default export, init, once before anything
// else), the IndexedDB persistence helpers and the sync client (VectorCache.open).
import { VectorCache } from './proxima_wasm.js';
import { loadCache, saveCache } from './persist.js';
import { SyncedCache, syncedCacheOpener } from './sync.js';

export { default } from './proxima_wasm.js';
export * from './proxima_wasm.js';
export * from './persist.js';
export { SyncedCache };

/** A VectorCache following a server collection, persisted in IndexedDB (see sync.d.ts). */
export const openSyncedCache = syncedCacheOpener({ VectorCache, saveCache, loadCache });
VectorCache.open = openSyncedCache;
