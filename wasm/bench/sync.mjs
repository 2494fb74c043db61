// The sync client of the Node package (@proxima/cache-node) against a real server: cold start
// (snapshot download + load in wasm, the server's kept snapshot) against replaying the feed
// into an empty cache, and write-to-cache freshness of a live cache. Run by
// scripts/bench-sync.sh, which starts the server and loads the collections.
//   node wasm/bench/sync.mjs SERVER_URL PKG_DIR COLLECTION[,COLLECTION…] WRITES
import { createRequire } from 'node:module';

const [server, pkgDir, collections, writesArg] = process.argv.slice(2);
const { VectorCache } = createRequire(import.meta.url)(pkgDir);
const writes = Number(writesArg || 300);
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * p) - 1))];

async function get(url, accept) {
  const res = await fetch(url, { headers: { accept, 'accept-encoding': 'identity' } });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

console.log('| vectors | snapshot MB | cold start ms: VectorCache.open (download + load), median of 5 | replay: feed pages + upserts into an empty cache, ms | replay ÷ snapshot |');
console.log('|---|---|---|---|---|');
let last;
for (const name of collections.split(',')) {
  // The server's snapshot is built by the first request and kept: warm it up.
  const raw = await get(`${server}/v1/collections/${name}/snapshot`, 'application/octet-stream');
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const c = await VectorCache.open({ server, collection: name });
    times.push(performance.now() - t);
    last = { name, n: c.cache.len };
    await c.close();
    c.cache.free();
  }
  // Replay: the JSON feed from the start, every upsert into a fresh cache (what a client with
  // no snapshot, or a row-syncing system, does).
  const t = performance.now();
  const info = await (await fetch(`${server}/v1/collections/${name}`)).json();
  const cache = new VectorCache({ dim: info.schema.dim, metric: info.schema.metric });
  let since = 0;
  for (;;) {
    const b = await (await fetch(`${server}/v1/collections/${name}/changes?since=${since}&limit=10000`)).json();
    const ups = b.records.filter((r) => r.op === 'upsert');
    if (ups.length) {
      const rows = new Float32Array(ups.length * info.schema.dim);
      ups.forEach((r, i) => rows.set(r.vector, i * info.schema.dim));
      cache.upsert(ups.map((r) => r.id), rows);
    }
    since = b.until;
    if (!b.has_more) break;
  }
  const replay = performance.now() - t;
  const cold = median(times);
  console.log(`| ${cache.len} | ${(raw.length / 1e6).toFixed(1)} | **${cold.toFixed(1)}** | ${replay.toFixed(0)} | ${(replay / cold).toFixed(1)}× |`);
  cache.free();
}

// Freshness: a live cache on the first collection; one write at a time.
const name = collections.split(',')[0];
const live = await VectorCache.open({ server, collection: name, live: true });
for (let i = 0; i < 200 && live.state !== 'live'; i++) await new Promise((r) => setTimeout(r, 10));
const dim = live.cache.dim;
const lat = [];
for (let i = 0; i < writes; i++) {
  const id = 2_000_000_000 + i;
  const v = Array.from({ length: dim }, (_, j) => Math.sin(i * 31 + j));
  const t = performance.now();
  const res = await fetch(`${server}/v1/collections/${name}/vectors`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ids: [id], vectors: [v] }),
  });
  if (!res.ok) throw new Error(`write: HTTP ${res.status}`);
  while (!live.cache.has(id)) await new Promise((r) => setImmediate(r));
  lat.push(performance.now() - t);
  await new Promise((r) => setTimeout(r, 10));
}
await live.close();
lat.sort((a, b) => a - b);
console.log(`\nFreshness, Node package live cache (${writes} writes, one every 10 ms; write request sent → id in the cache):`);
console.log('| writes | p50 ms | p99 ms | max ms |\n|---|---|---|---|');
console.log(`| ${lat.length} | **${pct(lat, 0.5).toFixed(2)}** | **${pct(lat, 0.99).toFixed(2)}** | ${lat[lat.length - 1].toFixed(2)} |`);
