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

/** IndexedDB database and object store the helpers use. */
export const DB_NAME: string;
export const STORE_NAME: string;

/**
 * Saves `cache.toBytes()` and `meta` (structured-cloneable) under `name` in one IndexedDB
 * transaction: both are committed, or neither. Resolves once the transaction has completed;
 * rejects with an Error (code "storage_error") when it fails or aborts (quota, a non-cloneable meta).
 */
export function saveCache(name: string, cache: PersistableCache, meta?: unknown): Promise<void>;

/**
 * Loads what `saveCache` saved under `name`, or `null` when nothing is saved there. Rejects
 * (code "malformed") when the saved bytes are damaged.
 */
export function loadCache<C, M = any>(name: string, VectorCache: CacheFromBytes<C>): Promise<LoadedCache<C, M> | null>;

/** Deletes what is saved under `name`; resolves to whether there was something. */
export function deleteCache(name: string): Promise<boolean>;
