'use strict';
// @proxima/cache-node: the wasm module (ready once required), the file persistence helpers and
// the sync client (VectorCache.open).
const { VectorCache } = require('./proxima_wasm.js');
const { loadCache, saveCache } = require('./persist.js');
const { SyncedCache, syncedCacheOpener } = require('./sync.js');

/** A VectorCache following a server collection, persisted in a file (see sync.d.ts). */
const openSyncedCache = syncedCacheOpener({ VectorCache, saveCache, loadCache });
VectorCache.open = openSyncedCache;

module.exports = {
  ...require('./proxima_wasm.js'),
  ...require('./persist.js'),
  SyncedCache,
  openSyncedCache,
};
