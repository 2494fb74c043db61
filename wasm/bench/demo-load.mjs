// What the demo page downloads and how long the cache takes to load it, measured with the Node
// package against a running server with the demo built (`./proxima.sh serve`):
//   node wasm/bench/demo-load.mjs [http://127.0.0.1:7700] [runs]
// Prints the snapshot's raw and on-the-wire (gzip) size, the documents' wire size, and
// VectorCache.open (download, decompress, load into wasm) per run.
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { VectorCache } = createRequire(import.meta.url)(path.join(here, '..', '..', 'target', 'wasm-pkg', 'node'));
const server = process.argv[2] || 'http://127.0.0.1:7700';
const runs = Number(process.argv[3] || 5);

const demo = await (await fetch(`${server}/v1/demo`)).json();
if (demo.state !== 'ready') throw new Error(`the demo is not ready: ${JSON.stringify(demo)}`);
const docs = await fetch(`${server}/v1/demo/docs`, { headers: { 'accept-encoding': 'gzip' } });
const docsWire = Number(docs.headers.get('content-length') || 0);
await docs.arrayBuffer();
const times = [];
let last;
for (let i = 0; i < runs; i++) {
  const t = performance.now();
  const c = await VectorCache.open({ server, collection: demo.collection, storage: demo.storage });
  times.push(performance.now() - t);
  last = { n: c.cache.len, ...c.download };
  await c.close();
  c.cache.free();
}
const mb = (b) => (b / 1e6).toFixed(1);
console.log(`demo: ${last.n} vectors × ${demo.dim}, storage ${demo.storage}; node ${process.version}, ${os.cpus().length} CPUs, ${os.cpus()[0].model}`);
console.log(`snapshot: ${mb(last.bytes)} MB, ${mb(last.wireBytes)} MB on the wire; documents: ${mb(docsWire)} MB on the wire; together ${mb(last.wireBytes + docsWire)} MB`);
console.log(`VectorCache.open (download + decompress + load), ms: ${times.map((t) => t.toFixed(0)).join(', ')}; median ${[...times].sort((a, b) => a - b)[Math.floor(runs / 2)].toFixed(0)}`);
