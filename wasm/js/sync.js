// Sync client: a VectorCache that follows a collection of a Proxima server.
//
// `VectorCache.open({server, collection, ...})` restores the cache from its persisted blob, or
// loads the server's snapshot, then pulls "changes since its watermark" (binary change
// batches, applied in the wasm module) and, with `live`, keeps long-polling for more. The
// persisted state is one blob, `cache.toSnapshot()` (vectors + watermark + handle), written
// with the package's persistence helper: one IndexedDB transaction (web) or one renamed file
// (Node). Searches run locally when the cache holds the whole collection and is fresh enough,
// else on the server, and locally again when the server cannot be reached.
//
// Server routes (under {server}/v1/collections/{name}):
//   GET  /changes?since=S&limit=N&handle=H[&live=true&timeout_ms=T]   (Accept: application/octet-stream)
//        200: a change batch frame; 409 snapshot_required: load a snapshot
//   GET  /snapshot[?storage=f32|sq8|sq8_rerank]                        200: the snapshot envelope
//   POST /search {"vectors": [[...]], "k": K}                          200: {"results": [[{id, score}]]}
//
// Shared by both packages and written for both: it imports nothing (index.js hands it the
// VectorCache class and the persistence helpers) and exports in one `export {...}` statement
// at the end, which scripts/build-wasm.sh turns into `module.exports` for the CommonJS package.

const OPTION_NAMES = [
  'server', 'collection', 'key', 'live', 'persist', 'fetch', 'storage',
  'limit', 'pollTimeoutMs', 'requestTimeoutMs', 'persistDelayMs', 'onProgress',
];
const STORAGES = ['f32', 'sq8', 'sq8_rerank'];
const DEFAULT_MAX_STALENESS_MS = 5000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30000;
// Snapshot reloads in a row before a sync() gives up, or the live loop backs off: a server that
// asks for a snapshot after every snapshot must not be answered with a download loop.
const MAX_RELOADS = 3;
// What the persisted record's meta says: a blob of toSnapshot(), and which collection.
const PERSIST_FORMAT = 'proxima-sync-1';
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** An Error whose `code` is a stable string that also starts the message. */
function coded(code, message, extra) {
  const cause = extra && extra.cause;
  const e = new Error(`${code}: ${message}`, cause === undefined ? undefined : { cause });
  e.code = code;
  if (extra) {
    for (const [k, v] of Object.entries(extra)) if (k !== 'cause' && v !== undefined) e[k] = v;
  }
  return e;
}

/** True for failures that mean "the server is not there": no answer, or a 5xx. */
function isOffline(e) {
  return !!e && (e.code === 'unreachable' || (typeof e.status === 'number' && e.status >= 500));
}

function invalid(name, reason) {
  return coded('invalid_parameter', `${name}: ${reason}`);
}

/** Checks `open`'s options (unknown keys are refused) and fills in the defaults. */
function readOptions(options) {
  if (options === null || typeof options !== 'object') {
    throw invalid('options', 'must be an object such as {server: "http://localhost:7700", collection: "docs"}');
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.includes(key)) throw invalid(key, `unknown option; known options: ${OPTION_NAMES.join(', ')}`);
  }
  const text = (name, required) => {
    const v = options[name];
    if (v === undefined || v === null) {
      if (required) throw invalid(name, 'is required');
      return undefined;
    }
    if (typeof v !== 'string' || v.length === 0) throw invalid(name, 'must be a non-empty string');
    return v;
  };
  const whole = (name, fallback, min, max) => {
    const v = options[name];
    if (v === undefined || v === null) return fallback;
    if (!Number.isInteger(v) || v < min || v > max) throw invalid(name, `must be a whole number between ${min} and ${max}`);
    return v;
  };
  const server = text('server', true).replace(/\/+$/, '');
  const storage = text('storage', false);
  if (storage !== undefined && !STORAGES.includes(storage)) throw invalid('storage', `expected one of ${STORAGES.join(', ')}`);
  const fetchFn = options.fetch === undefined || options.fetch === null ? globalThis.fetch : options.fetch;
  if (typeof fetchFn !== 'function') {
    throw invalid('fetch', options.fetch == null ? 'no global fetch here: pass a fetch function' : 'must be a function');
  }
  if (options.live !== undefined && typeof options.live !== 'boolean') throw invalid('live', 'must be true or false');
  const onProgress = options.onProgress === null ? undefined : options.onProgress;
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalid('onProgress', 'must be a function');
  return {
    server,
    collection: text('collection', true),
    key: text('key', false),
    live: options.live === true,
    persist: text('persist', false),
    // Called without a receiver, as a plain function (a browser's fetch refuses other `this`).
    fetch: (url, init) => fetchFn(url, init),
    storage,
    limit: whole('limit', 1000, 1, 10000),
    pollTimeoutMs: whole('pollTimeoutMs', 20000, 1, 60000),
    requestTimeoutMs: whole('requestTimeoutMs', 30000, 1, 3600000),
    persistDelayMs: whole('persistDelayMs', 1000, 0, 3600000),
    onProgress,
  };
}

/** A whole number from a response header, or null. */
function headerNumber(res, name) {
  const v = res.headers && typeof res.headers.get === 'function' ? res.headers.get(name) : null;
  return v !== null && /^\d+$/.test(v.trim()) ? Number(v) : null;
}

/**
 * The body of a snapshot answer as bytes, reported to `onProgress` as it arrives (read as a
 * stream where the fetch gives one). `total` is the server's `x-proxima-bytes` (the size before
 * any content encoding), else Content-Length when the body is not encoded, else null.
 * Resolves to {bytes, wireBytes}: wireBytes is the Content-Length when the body came encoded
 * (gzip), else the byte count.
 */
async function readSnapshotBody(res, onProgress) {
  const encoded = !!(res.headers && res.headers.get && (res.headers.get('content-encoding') || 'identity') !== 'identity');
  const length = headerNumber(res, 'content-length');
  const total = headerNumber(res, 'x-proxima-bytes') ?? (encoded ? null : length);
  const report = (loaded) => {
    if (!onProgress) return;
    try {
      onProgress({ phase: 'snapshot', loaded, total });
    } catch {
      // A failing progress callback must not fail the download.
    }
  };
  let bytes;
  const reader = onProgress && res.body && typeof res.body.getReader === 'function' ? res.body.getReader() : null;
  if (reader) {
    report(0);
    let buf = new Uint8Array(total || 1 << 20);
    let loaded = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loaded + value.length > buf.length) {
        const grown = new Uint8Array(Math.max(buf.length * 2, loaded + value.length));
        grown.set(buf.subarray(0, loaded));
        buf = grown;
      }
      buf.set(value, loaded);
      loaded += value.length;
      report(loaded);
    }
    bytes = loaded === buf.length ? buf : buf.slice(0, loaded);
  } else {
    bytes = new Uint8Array(await res.arrayBuffer());
    report(bytes.length);
  }
  return { bytes, wireBytes: encoded && length !== null ? length : bytes.length };
}

/** The error a non-2xx answer stands for: the server's `{"error": {code, message}}` when it sent one. */
async function httpError(res, what) {
  let body;
  let text = '';
  try {
    text = await res.text();
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const err = body && typeof body === 'object' && body.error && typeof body.error === 'object' ? body.error : {};
  const code = typeof err.code === 'string' && err.code ? err.code : `http_${res.status}`;
  const message = typeof err.message === 'string' ? err.message : text.slice(0, 200) || res.statusText || 'no message';
  return coded(code, `${message} (HTTP ${res.status} from ${what})`, {
    status: res.status,
    handle: body && typeof body.handle === 'string' ? body.handle : undefined,
    horizon: body && typeof body.horizon === 'number' ? body.horizon : undefined,
  });
}

/** Ids above 2^53 - 1 as BigInts, as the cache gives them: JSON.parse alone would round them. */
function parseHitsJson(text) {
  const value = JSON.parse(text.replace(/"id"\s*:\s*(\d{16,})/g, '"id":"$1"'));
  const results = value && Array.isArray(value.results) ? value.results : null;
  if (!results || !Array.isArray(results[0])) throw coded('malformed', 'the search answer has no results');
  return results[0].map((h) => {
    const big = typeof h.id === 'string' ? BigInt(h.id) : null;
    return { id: big === null ? h.id : big > MAX_SAFE ? big : Number(big), score: h.score };
  });
}

/**
 * A VectorCache following a server collection. Made by `VectorCache.open(options)`; see the
 * package's sync.d.ts for the options and what each member does.
 */
class SyncedCache {
  #opts;
  #platform;
  #cache;
  #lastSyncAt;
  #online = false;
  #connected = false;
  #closed = false;
  #closing = null;
  #syncing = null;
  #reloading = null;
  #liveLoop = null;
  #wake = null;
  #aborts = new Set();
  #dirty = false;
  #persistTimer = null;
  #saving = Promise.resolve();
  #lastPersistAt = null;
  #lastError = null;
  #source = null;
  #download = null;

  /** Use `VectorCache.open`. */
  constructor(cache, opts, platform, lastSyncAt) {
    if (!opts || !platform) throw new TypeError('use VectorCache.open(options) to make a SyncedCache');
    this.#cache = cache;
    this.#opts = opts;
    this.#platform = platform;
    this.#lastSyncAt = lastSyncAt;
  }

  /** `VectorCache.open` with the package's VectorCache class and persistence helpers. */
  static async open(options, platform) {
    const opts = readOptions(options);
    const restored = opts.persist ? await restore(opts, platform) : null;
    let synced;
    if (restored) {
      synced = new SyncedCache(restored.cache, opts, platform, restored.syncedAt);
      synced.#source = 'persisted';
    } else {
      synced = new SyncedCache(null, opts, platform, null);
      synced.#cache = await synced.#fetchSnapshot();
      synced.#changed();
    }
    let caughtUp = false;
    try {
      await synced.sync();
      caughtUp = true;
    } catch (e) {
      // A restored cache works offline; anything else is the caller's to see.
      if (!restored || !isOffline(e)) {
        await synced.close().catch(() => {});
        throw e;
      }
      synced.#lastError = e;
    }
    if (opts.live) {
      // Caught up a moment ago, and the long-poll goes out now: nothing can be missed.
      synced.#connected = caughtUp;
      synced.#liveLoop = synced.#followLive();
    }
    return synced;
  }

  /** The underlying VectorCache (replaced, and the old one freed, when a snapshot is reloaded: read it again rather than keeping it). */
  get cache() {
    return this.#cache;
  }

  /** Every change up to this sequence is applied. */
  get watermark() {
    return this.#cache.watermark;
  }

  /** The collection's handle the cache belongs to. */
  get handle() {
    return this.#cache.handle;
  }

  get collection() {
    return this.#opts.collection;
  }

  /** True when the cache holds the whole collection (see VectorCache.complete). */
  get complete() {
    return this.#cache.complete;
  }

  /** The last request reached the server (it answered, and not with a 5xx). */
  get online() {
    return this.#online && !this.#closed;
  }

  /** "live" (long-poll connected), "online", "offline" or "closed". */
  get state() {
    if (this.#closed) return 'closed';
    if (!this.#online) return 'offline';
    return this.#opts.live && this.#connected ? 'live' : 'online';
  }

  /** When the cache was last known to be caught up (ms since the epoch; from the persisted record after a restore), or null. */
  get lastSyncAt() {
    return this.#lastSyncAt;
  }

  /** How far behind the server the cache may be, in ms: 0 while a live long-poll is connected. */
  get stalenessMs() {
    if (this.#opts.live && this.#connected && !this.#closed) return 0;
    return this.#lastSyncAt === null ? Infinity : Math.max(0, Date.now() - this.#lastSyncAt);
  }

  /**
   * Where the cache's current state came from: "persisted" (restored by open from what an
   * earlier session persisted, no snapshot downloaded) or "snapshot" (downloaded, at open or
   * at a reload the server asked for).
   */
  get source() {
    return this.#source;
  }

  /**
   * The last snapshot download: {bytes, wireBytes, ms, at} (bytes of the snapshot, bytes on
   * the wire when it came compressed, time from request to the last byte), or null when none
   * was downloaded since open.
   */
  get download() {
    return this.#download === null ? null : { ...this.#download };
  }

  /** The last error a background step (live loop, persisting) met, or null. */
  get lastError() {
    return this.#lastError;
  }

  /** When the blob was last persisted (ms since the epoch), or null. */
  get lastPersistAt() {
    return this.#lastPersistAt;
  }

  /** Local search (VectorCache.search). */
  search(query, k, options) {
    return this.#cache.search(query, k, options);
  }

  /**
   * Pulls every change since the watermark until the server has no more, reloading the
   * snapshot when the server asks for one. Resolves to {applied, watermark, upToDate, reloaded}.
   */
  sync() {
    if (this.#closed) return Promise.reject(coded('closed', 'the cache is closed'));
    if (!this.#syncing) {
      this.#syncing = this.#catchUp().finally(() => {
        this.#syncing = null;
      });
      // Caught up: a live loop waiting out a backoff sends its long-poll now (as open's does,
      // right after a sync: nothing can be missed in between).
      this.#syncing.then(
        () => {
          if (this.#wake && !this.#connected && !this.#closed) {
            this.#connected = true;
            this.#wake();
          }
        },
        () => {},
      );
    }
    return this.#syncing;
  }

  /**
   * Local hits when the cache holds the whole collection and its live long-poll is connected
   * or its last sync is less than `maxStalenessMs` old (default 5000), else the server's;
   * local again (`offline: true`) when the server cannot be reached or answers 5xx. A local
   * answer given without asking the server is `offline` when the last request failed.
   */
  async searchLocalOrRemote(query, k, options) {
    const maxStalenessMs = options && options.maxStalenessMs !== undefined ? options.maxStalenessMs : DEFAULT_MAX_STALENESS_MS;
    if (typeof maxStalenessMs !== 'number' || !(maxStalenessMs >= 0)) throw invalid('maxStalenessMs', 'must be a number >= 0');
    const dim = this.#cache.dim;
    if (!query || query.length !== dim) {
      throw coded('dimension_mismatch', `the query has ${query ? query.length : 0} values, the collection ${dim}`);
    }
    const stalenessMs = this.stalenessMs;
    const local = (offline) => ({ hits: this.#cache.search(query, k), source: 'local', stalenessMs, offline });
    const live = this.#opts.live && this.#connected && !this.#closed;
    // Fresh enough: no request; `offline` says how the last one went.
    if (this.#cache.complete && (live || stalenessMs < maxStalenessMs)) return local(!this.#online);
    let hits;
    try {
      const body = JSON.stringify({ vectors: [Array.from(query)], k });
      hits = await this.#call('/search', { method: 'POST', body, read: parseHitsJson });
    } catch (e) {
      if (isOffline(e)) return local(true);
      throw e;
    }
    return { hits, source: 'server', stalenessMs: 0, offline: false };
  }

  /** Writes the persisted blob now (when `persist` is set and something changed since the last write). */
  save() {
    if (this.#persistTimer) {
      clearTimeout(this.#persistTimer);
      this.#persistTimer = null;
    }
    const run = () => this.#persistIfDirty();
    this.#saving = this.#saving.then(run, run);
    return this.#saving;
  }

  /**
   * Stops following the server (aborts a pending long-poll), then writes the persisted blob
   * if it changed. The VectorCache stays usable; `cache.cache.free()` releases its memory.
   */
  close() {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#connected = false;
    for (const abort of this.#aborts) abort();
    if (this.#wake) this.#wake();
    this.#closing = (async () => {
      await Promise.allSettled([this.#liveLoop, this.#syncing, this.#reloading]);
      if (this.#cache) await this.save();
    })();
    return this.#closing;
  }

  async #catchUp() {
    let applied = 0;
    let reloads = 0;
    let moved = false;
    for (;;) {
      const step = await this.#pull(false);
      applied += step.applied;
      moved ||= step.moved;
      if (step.reloaded) {
        if (++reloads > MAX_RELOADS) {
          throw coded('snapshot_required', `the server asked for a new snapshot ${reloads} times in one sync`);
        }
        continue;
      }
      if (!step.hasMore) break;
    }
    this.#lastSyncAt = Date.now();
    if (moved || reloads) this.#changed();
    return { applied, watermark: this.watermark, upToDate: true, reloaded: reloads > 0 };
  }

  /** One change request and its batch applied. */
  async #pull(live) {
    const cache = this.#cache;
    const since = cache.watermark;
    let query = `since=${since}&limit=${this.#opts.limit}&handle=${encodeURIComponent(cache.handle)}`;
    if (live) query += `&live=true&timeout_ms=${this.#opts.pollTimeoutMs}`;
    const reload = async () => {
      // A reply to a request made before another reload replaced the cache says nothing now.
      if (this.#cache === cache) await this.#reload();
      return { applied: 0, moved: false, hasMore: true, reloaded: true };
    };
    let frame;
    try {
      frame = await this.#call(`/changes?${query}`, {
        binary: true,
        timeoutMs: this.#opts.requestTimeoutMs + (live ? this.#opts.pollTimeoutMs : 0),
      });
    } catch (e) {
      if (e.code === 'snapshot_required') return reload();
      throw e;
    }
    if (this.#cache !== cache) return { applied: 0, moved: false, hasMore: true };
    let report;
    try {
      report = cache.applyChanges(frame);
    } catch (e) {
      if (e.code === 'snapshot_required') return reload();
      throw e;
    }
    if (report.hasMore && report.watermark <= since) {
      throw coded('malformed', `the server has more changes but its batch did not move past sequence ${since}`);
    }
    return { applied: report.upserted + report.deleted, moved: report.watermark > since, hasMore: report.hasMore };
  }

  /** The live loop: long-polls until close(); on errors, backs off 0.5 s doubling to 30 s, with jitter. */
  async #followLive() {
    let backoff = 0;
    let reloads = 0;
    while (!this.#closed) {
      const started = Date.now();
      try {
        const step = await this.#pull(true);
        if (this.#closed) break;
        // A server that asks for a snapshot after every snapshot is backed off like an error.
        reloads = step.reloaded ? reloads + 1 : 0;
        if (reloads > MAX_RELOADS) {
          throw coded('snapshot_required', `the server asked for a new snapshot ${reloads} times in a row`);
        }
        backoff = 0;
        if (step.moved || step.reloaded) this.#changed();
        if (!step.hasMore) {
          this.#lastSyncAt = Date.now();
          this.#connected = true;
        }
        // A server that answers an idle long-poll at once would make this loop spin.
        if (!step.moved && !step.reloaded && Date.now() - started < this.#opts.pollTimeoutMs / 4) {
          await this.#sleep(BACKOFF_MIN_MS * (0.5 + Math.random() / 2));
        }
      } catch (e) {
        if (this.#closed) break;
        this.#connected = false;
        this.#lastError = e;
        backoff = Math.min(backoff ? backoff * 2 : BACKOFF_MIN_MS, BACKOFF_MAX_MS);
        await this.#sleep(backoff * (0.5 + Math.random() / 2));
      }
    }
    this.#connected = false;
  }

  #sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        if (self.#wake === done) self.#wake = null;
        resolve();
      }
      this.#wake = done;
    });
  }

  /** Loads the snapshot in place of the cache (one at a time). */
  #reload() {
    if (!this.#reloading) {
      this.#reloading = this.#fetchSnapshot()
        .then((next) => {
          const old = this.#cache;
          this.#cache = next;
          if (old && old !== next) old.free();
          this.#changed();
        })
        .finally(() => {
          this.#reloading = null;
        });
    }
    return this.#reloading;
  }

  async #fetchSnapshot() {
    const query = this.#opts.storage ? `?storage=${this.#opts.storage}` : '';
    const started = Date.now();
    // The timeout covers the wait for the answer, not the download of a large body.
    const { bytes, wireBytes } = await this.#call(`/snapshot${query}`, { binary: true, bodyUntimed: true, snapshot: true });
    const ms = Date.now() - started;
    const cache = this.#platform.VectorCache.fromSnapshot(bytes);
    if (cache.collection !== this.#opts.collection) {
      const got = cache.collection;
      cache.free();
      throw coded('malformed', `the snapshot is of collection "${got}", not "${this.#opts.collection}"`);
    }
    this.#source = 'snapshot';
    this.#download = { bytes: bytes.length, wireBytes, ms, at: Date.now() };
    return cache;
  }

  /**
   * One HTTP request under `{server}/v1/collections/{collection}`. Resolves to the body (bytes,
   * or what `read(text)` makes of it, else parsed JSON); rejects with the server's error code,
   * `unreachable` when no answer came (or none in time), `closed` when close() aborted it.
   */
  async #call(path, { method = 'GET', body, binary = false, read, timeoutMs, bodyUntimed = false, snapshot = false }) {
    const o = this.#opts;
    const url = `${o.server}/v1/collections/${encodeURIComponent(o.collection)}${path}`;
    const what = `${method} ${url}`;
    const headers = { accept: binary ? 'application/octet-stream' : 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (o.key) headers.authorization = `Bearer ${o.key}`;
    const controller = new AbortController();
    const abort = () => controller.abort();
    this.#aborts.add(abort);
    let timedOut = false;
    let timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs || o.requestTimeoutMs);
    const untime = () => {
      clearTimeout(timer);
      timer = null;
    };
    let res;
    try {
      res = await o.fetch(url, { method, headers, body, signal: controller.signal });
      if (bodyUntimed) untime();
      if (!res.ok) throw await httpError(res, what);
      const value = snapshot
        ? await readSnapshotBody(res, o.onProgress)
        : binary
          ? new Uint8Array(await res.arrayBuffer())
          : read
            ? read(await res.text())
            : await res.json();
      this.#online = true;
      return value;
    } catch (e) {
      if (res && !res.ok && e.status === res.status) {
        this.#online = res.status < 500;
        throw e;
      }
      if (e instanceof SyntaxError || e.code === 'malformed') {
        this.#online = true;
        throw coded('malformed', `${what}: the answer could not be read (${e.message})`, { cause: e });
      }
      if (this.#closed && !timedOut) throw coded('closed', `${what}: aborted by close()`, { cause: e });
      this.#online = false;
      const why = timedOut ? `no answer within ${timeoutMs || o.requestTimeoutMs} ms` : (e.cause && e.cause.message) || e.message;
      throw coded('unreachable', `${what}: ${why}`, { cause: e });
    } finally {
      if (timer) clearTimeout(timer);
      this.#aborts.delete(abort);
    }
  }

  /** Something to persist: saved after `persistDelayMs` (one write for a burst of changes). */
  #changed() {
    this.#dirty = true;
    if (!this.#opts.persist || this.#persistTimer || this.#closed) return;
    this.#persistTimer = setTimeout(() => {
      this.#persistTimer = null;
      this.save().catch(() => {});
    }, this.#opts.persistDelayMs);
  }

  async #persistIfDirty() {
    if (!this.#opts.persist || !this.#dirty) return;
    this.#dirty = false;
    // The blob is taken now, in one synchronous call: it is one consistent state.
    const bytes = this.#cache.toSnapshot();
    const meta = {
      format: PERSIST_FORMAT,
      collection: this.#opts.collection,
      storage: this.#opts.storage || null,
      syncedAt: this.#lastSyncAt,
    };
    try {
      await this.#platform.saveCache(this.#opts.persist, { toBytes: () => bytes }, meta);
      this.#lastPersistAt = Date.now();
    } catch (e) {
      this.#dirty = true;
      this.#lastError = e;
      throw e;
    }
  }
}

/** The persisted cache, when there is a usable one for these options; null otherwise. */
async function restore(opts, platform) {
  const { VectorCache, loadCache } = platform;
  let saved;
  try {
    saved = await loadCache(opts.persist, { fromBytes: (bytes) => VectorCache.fromSnapshot(bytes) });
  } catch (e) {
    // A damaged record is replaced by a fresh snapshot; anything else (no storage) is an error.
    if (e && e.code === 'malformed') return null;
    throw e;
  }
  if (!saved) return null;
  const meta = saved.meta && typeof saved.meta === 'object' ? saved.meta : {};
  const fits =
    meta.format === PERSIST_FORMAT &&
    saved.cache.collection === opts.collection &&
    (meta.storage || null) === (opts.storage || null);
  if (!fits) {
    saved.cache.free();
    return null;
  }
  return { cache: saved.cache, syncedAt: typeof meta.syncedAt === 'number' ? meta.syncedAt : null };
}

/**
 * `open(options)` for one package: `platform` is {VectorCache, saveCache, loadCache}. The
 * packages' index.js call this and attach the result as `VectorCache.open`.
 */
function syncedCacheOpener(platform) {
  return (options) => SyncedCache.open(options, platform);
}

export { SyncedCache, syncedCacheOpener };
