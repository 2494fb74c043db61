/** Anything that serialises itself, as VectorCache does. */
export interface PersistableCache {
  toBytes(): Uint8Array;
}

/** The VectorCache class, or anything that rebuilds a cache from its bytes. */
export interface CacheFromBytes<C> {
  fromBytes(bytes: Uint8Array): C;
}

export interface LoadedCache<C, M = unknown> {
  cache: C;
  meta: M;
  /** When it was saved (milliseconds since the epoch). */
  savedAt: number;
}

/**
 * Writes `cache.toBytes()` and `meta` (JSON-serialisable) to one file, atomically: a temporary
 * file beside it is written, fsync'd and renamed over `path`, then the directory is fsync'd.
 */
export function saveCache(path: string, cache: PersistableCache, meta?: unknown): Promise<void>;

/**
 * Reads what `saveCache` wrote, or `null` when `path` does not exist. Rejects with an Error whose
 * `code` is "malformed" when the file or the cache bytes in it are damaged.
 */
export function loadCache<C, M = any>(path: string, VectorCache: CacheFromBytes<C>): Promise<LoadedCache<C, M> | null>;

/** Deletes the file; resolves to whether there was one. */
export function deleteCache(path: string): Promise<boolean>;

/** Splits a cache file's contents (header, metadata, cache bytes) without building the cache. */
export function decodeFile(contents: Uint8Array, path?: string): { meta: unknown; savedAt: number; bytes: Uint8Array };
