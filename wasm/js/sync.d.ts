import type { Hit, SearchOptions, VectorCache } from './proxima_wasm.js';

export interface OpenOptions {
  /** Base URL of the Proxima server, e.g. "http://localhost:7700". */
  server: string;
  /** The collection to follow. */
  collection: string;
  /** API key, sent as `Authorization: Bearer <key>`. */
  key?: string;
  /** Keep following the collection (a long-poll loop until close()). Default false. */
  live?: boolean;
  /**
   * Where the cache persists itself (one blob: vectors, watermark and handle): an IndexedDB
   * record name in the web package, a file path in the Node package. Restored from there by
   * the next open, even when the server is down.
   */
  persist?: string;
  /** The fetch to use (default: the global fetch). */
  fetch?: (url: string, init?: any) => Promise<any>;
  /** How the snapshot stores vectors (the server's default when absent). */
  storage?: 'f32' | 'sq8' | 'sq8_rerank';
  /** Most changes per request (1..10000, default 1000). */
  limit?: number;
  /** How long the server holds a live request with nothing new (default 20000, at most 60000). */
  pollTimeoutMs?: number;
  /** How long a request may wait for its answer before it counts as unreachable (default 30000). */
  requestTimeoutMs?: number;
  /** How long after a change the blob is persisted (one write for a burst; default 1000). */
  persistDelayMs?: number;
  /**
   * Called as a snapshot downloads (at open, and at a reload the server asks for): first with
   * `loaded` 0, then after each chunk of the body, and once more when it is complete. Errors it
   * throws are ignored.
   */
  onProgress?: (progress: Progress) => void;
}

export interface Progress {
  phase: 'snapshot';
  /** Bytes of the snapshot received so far (after any content decoding). */
  loaded: number;
  /**
   * The snapshot's size: the server's `x-proxima-bytes` header, else Content-Length when the
   * body is not content-encoded; null when unknown.
   */
  total: number | null;
}

export interface SnapshotDownload {
  /** Bytes of the snapshot. */
  bytes: number;
  /** Bytes on the wire: the Content-Length of a compressed (gzip) answer, else `bytes`. */
  wireBytes: number;
  /** From the request to the last byte, in ms (loading it into the cache not included). */
  ms: number;
  /** When it completed (ms since the epoch). */
  at: number;
}

export interface SyncResult {
  /** Upserts and deletes that changed the cache. */
  applied: number;
  watermark: number;
  /** The server had no more changes when the sync ended. */
  upToDate: boolean;
  /** A snapshot was loaded in place of the cache (the server asked for one). */
  reloaded: boolean;
}

export interface LocalOrRemoteOptions {
  /**
   * Answer locally only when the last sync is less than this old (ms; default 5000); a cache
   * whose live long-poll is connected is fresh whatever this says.
   */
  maxStalenessMs?: number;
}

export interface LocalOrRemoteResult {
  hits: Hit[];
  source: 'local' | 'server';
  /** How far behind the server the answer may be (ms; 0 from the server or a connected live cache). */
  stalenessMs: number;
  /**
   * The server could not be reached or answered 5xx (this time, or at the last request when
   * the cache was fresh enough not to ask): the hits are the local ones.
   */
  offline: boolean;
}

/** A VectorCache following a server collection. Made by `VectorCache.open`. */
export class SyncedCache {
  private constructor();
  /** The underlying VectorCache; replaced (and the old one freed) when a snapshot is reloaded. */
  readonly cache: VectorCache;
  /** Every change up to this sequence is applied. */
  readonly watermark: number;
  /** The collection's handle (it changes when the collection is dropped and created again). */
  readonly handle: string;
  readonly collection: string;
  /** The cache holds the whole collection. */
  readonly complete: boolean;
  /** The last request reached the server. */
  readonly online: boolean;
  readonly state: 'live' | 'online' | 'offline' | 'closed';
  /** When the cache was last known to be caught up (ms since the epoch), or null. */
  readonly lastSyncAt: number | null;
  /** How far behind the server the cache may be (ms; 0 while a live long-poll is connected). */
  readonly stalenessMs: number;
  /**
   * Where the cache's state came from: restored from what was persisted ("persisted", no
   * snapshot downloaded) or downloaded ("snapshot", at open or at a reload).
   */
  readonly source: 'persisted' | 'snapshot';
  /** The last snapshot download since open, or null when none was needed. */
  readonly download: SnapshotDownload | null;
  /** The last error of a background step (live loop, persisting), or null. */
  readonly lastError: Error | null;
  /** When the blob was last persisted (ms since the epoch), or null. */
  readonly lastPersistAt: number | null;
  /** Local search. */
  search(query: Float32Array | number[], k: number, options?: SearchOptions): Hit[];
  /**
   * Pulls changes until the server has no more (reloading the snapshot when it asks for one).
   * When it succeeds, a live loop waiting out a backoff after errors reconnects at once.
   */
  sync(): Promise<SyncResult>;
  /**
   * Local when the cache is complete and fresh enough, else the server's; local with
   * `offline: true` when the server cannot be reached or answers 5xx.
   */
  searchLocalOrRemote(query: Float32Array | number[], k: number, options?: LocalOrRemoteOptions): Promise<LocalOrRemoteResult>;
  /** Persists the blob now if it changed. */
  save(): Promise<void>;
  /** Stops following the server and persists; the VectorCache stays usable. */
  close(): Promise<void>;
}

/**
 * Restores the cache persisted at `options.persist` (or loads the server's snapshot), catches
 * up with the server, and with `live` keeps following it. Also `VectorCache.open`. Errors have
 * a `code`: the server's error code, `unreachable` when it cannot be reached, `invalid_parameter`
 * for bad options.
 */
export function openSyncedCache(options: OpenOptions): Promise<SyncedCache>;

declare module './proxima_wasm.js' {
  namespace VectorCache {
    /** See `openSyncedCache`. */
    function open(options: OpenOptions): Promise<SyncedCache>;
  }
}
