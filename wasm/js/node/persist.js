'use strict';
// Saves and loads a VectorCache in one file (Node.js).
//
// File layout, little-endian:
//   magic "PRXCACHE" (8 bytes) | format version u32 = 1 | JSON length u32 | bytes length u64
//   | JSON {"savedAt": ms, "meta": meta} (UTF-8) | the cache's bytes (cache.toBytes())
// A save writes `<path>.tmp-<pid>-<n>`, fsyncs it, renames it over `<path>` and fsyncs the
// directory: a reader sees the old file or the new one, never a mix, and the metadata always
// belongs to the bytes beside it.

const fs = require('fs');
const fsp = fs.promises;
const path = require('path');

const MAGIC = Buffer.from('PRXCACHE', 'latin1');
const FORMAT_VERSION = 1;
const FIXED_BYTES = 24;
const MAX_JSON_BYTES = 64 * 1024 * 1024;

let tmpCounter = 0;

function malformed(file, reason) {
  const e = new Error(`malformed: ${file}: ${reason}`);
  e.code = 'malformed';
  return e;
}

async function writeAll(handle, buf) {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await handle.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

async function syncDir(dir) {
  let handle;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch (e) {
    // Some platforms (Windows) cannot open or fsync a directory; the rename stands regardless.
    if (!['EISDIR', 'EPERM', 'EINVAL', 'EBADF', 'EACCES', 'ENOTSUP'].includes(e.code)) throw e;
  } finally {
    if (handle) await handle.close();
  }
}

/**
 * Saves `cache` (anything with `toBytes(): Uint8Array`) and `meta` (JSON-serialisable) to the
 * file `file`, atomically replacing what was there.
 */
async function saveCache(file, cache, meta = {}) {
  if (typeof file !== 'string' || file.length === 0) throw new TypeError('the path must be a non-empty string');
  const bytes = cache.toBytes();
  if (!(bytes instanceof Uint8Array)) throw new TypeError('cache.toBytes() must return a Uint8Array');
  const json = JSON.stringify({ savedAt: Date.now(), meta: meta === undefined ? null : meta });
  const jsonBuf = Buffer.from(json, 'utf8');
  if (jsonBuf.length > MAX_JSON_BYTES) throw new RangeError(`meta is too large (${jsonBuf.length} bytes of JSON)`);
  const header = Buffer.alloc(FIXED_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(FORMAT_VERSION, 8);
  header.writeUInt32LE(jsonBuf.length, 12);
  header.writeBigUInt64LE(BigInt(bytes.length), 16);

  const target = path.resolve(file);
  const tmp = `${target}.tmp-${process.pid}-${tmpCounter++}`;
  let handle;
  try {
    handle = await fsp.open(tmp, 'w', 0o644);
    await writeAll(handle, header);
    await writeAll(handle, jsonBuf);
    await writeAll(handle, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, target);
  } catch (e) {
    if (handle) await handle.close().catch(() => {});
    await fsp.unlink(tmp).catch(() => {});
    throw e;
  }
  await syncDir(path.dirname(target));
}

/** Splits a file's contents into `{meta, savedAt, bytes}`; throws (code "malformed") on a bad header. */
function decodeFile(buf, file = 'cache file') {
  if (!Buffer.isBuffer(buf)) buf = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < FIXED_BYTES) {
    throw malformed(file, `${buf.length} bytes is too short for a cache file header (${FIXED_BYTES} bytes)`);
  }
  if (!buf.subarray(0, 8).equals(MAGIC)) throw malformed(file, 'not a Proxima cache file (bad magic)');
  const version = buf.readUInt32LE(8);
  if (version !== FORMAT_VERSION) {
    throw malformed(file, `cache file format version ${version} (this build reads ${FORMAT_VERSION})`);
  }
  const jsonLen = buf.readUInt32LE(12);
  const bytesLen = buf.readBigUInt64LE(16);
  const available = BigInt(buf.length - FIXED_BYTES);
  if (BigInt(jsonLen) + bytesLen !== available) {
    throw malformed(
      file,
      `the header announces ${jsonLen} bytes of metadata and ${bytesLen} bytes of cache, but ${available} bytes follow it (truncated or damaged)`,
    );
  }
  let envelope;
  try {
    envelope = JSON.parse(buf.toString('utf8', FIXED_BYTES, FIXED_BYTES + jsonLen));
  } catch (e) {
    throw malformed(file, `the metadata is not valid JSON (${e.message})`);
  }
  if (envelope === null || typeof envelope !== 'object' || !('meta' in envelope)) {
    throw malformed(file, 'the metadata record has no "meta" field');
  }
  const start = FIXED_BYTES + jsonLen;
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset + start, buf.length - start);
  return { meta: envelope.meta, savedAt: envelope.savedAt, bytes };
}

/**
 * Loads what `saveCache` wrote to `file` with `VectorCache.fromBytes`: `{cache, meta, savedAt}`,
 * or `null` when the file does not exist. Throws (code "malformed") on a damaged file.
 */
async function loadCache(file, VectorCache) {
  if (!VectorCache || typeof VectorCache.fromBytes !== 'function') {
    throw new TypeError('loadCache needs the VectorCache class (with fromBytes) as its second argument');
  }
  let buf;
  try {
    buf = await fsp.readFile(file);
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw e;
  }
  const { meta, savedAt, bytes } = decodeFile(buf, file);
  const cache = VectorCache.fromBytes(bytes);
  return { cache, meta, savedAt };
}

/** Deletes the file; resolves to whether there was one. */
async function deleteCache(file) {
  try {
    await fsp.unlink(file);
    return true;
  } catch (e) {
    if (e.code === 'ENOENT') return false;
    throw e;
  }
}

module.exports = { saveCache, loadCache, deleteCache, decodeFile };
