// The demo page: semantic search over the Debian package descriptions, answered by a
// VectorCache (the web package's WebAssembly HNSW) that follows the server's "debian-packages"
// collection live and persists itself in IndexedDB.
//
// The server is used for: the demo's status (GET /v1/demo), the documents (GET /v1/demo/docs),
// turning a new query into a vector (POST /v1/embed), the cache's snapshot and change feed
// (through VectorCache.open), searches when the copy may be stale, and edits (POST and
// DELETE /v1/demo/docs). "go offline" cuts all of that: the cache's fetch rejects and in-flight
// requests are aborted; searches of stored queries and "more like this" keep working.
//
// For tests: window.proximaDemo = {ready, state(), search(q), moreLike(id), setOffline(on),
// syncNow(), addDoc(name, description), deleteDoc(id)}.
import * as store from './store.js';

// The web package (scripts/build-wasm.sh builds it; the server serves it at /pkg/), imported
// in main() so that a missing build is reported on the page.
let VectorCache;
let deleteCache;

const K = 10;
const DEBOUNCE_MS = 150;
const MAX_QUERIES = 300; // stored query vectors (least recently used go first)
const PERSIST_NAME = 'proxima-demo';
const KEY_ITEM = 'proxima-demo-key';

const $ = (id) => document.getElementById(id);

const state = {
  offline: false, // the "go offline" switch
  key: localStorage.getItem(KEY_ITEM) || '',
  demo: null, // the last GET /v1/demo answer
  demoError: null,
  collection: 'debian-packages',
  storage: 'sq8',
  cache: null, // the SyncedCache, once open
  openError: null,
  progress: null, // {loaded, total} of the snapshot download
  docs: new Map(), // id -> [name, description]
  docsHandle: null, // the collection handle the documents belong to
  docsComplete: false, // loaded whole after the demo was built
  queries: new Map(), // normalised text -> {key, q, vector, at}; insertion order = LRU order
  answers: { local: 0, server: 0 },
  current: null, // what the results show: {kind: 'query', q} or {kind: 'like', id, vector}
  last: null, // the last result, for the testing hook
  watermark: null,
  edits: [], // {id, seq, what, at} waiting to show up in the copy
};

// --- the network, behind the "go offline" switch ------------------------------------------------

const inflight = new Set();

/** fetch, unless the page is offline; going offline aborts what is in flight. */
function gatedFetch(url, init = {}) {
  if (state.offline) return Promise.reject(new TypeError('offline mode: the page is not talking to the server'));
  const controller = new AbortController();
  const outer = init.signal;
  if (outer) {
    if (outer.aborted) controller.abort(outer.reason);
    else outer.addEventListener('abort', () => controller.abort(outer.reason), { once: true });
  }
  inflight.add(controller);
  return fetch(url, { ...init, signal: controller.signal }).finally(() => inflight.delete(controller));
}

function coded(code, message, status) {
  return Object.assign(new Error(message), { code, status });
}

/** A JSON request to the server; rejects with {code, status} (code "unreachable" when no answer came). */
async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (state.key) headers.authorization = `Bearer ${state.key}`;
  let res;
  try {
    res = await gatedFetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw coded('unreachable', state.offline ? 'offline mode' : `the server cannot be reached (${e.message})`);
  }
  const text = await res.text();
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (!res.ok) {
    const err = (value && value.error) || {};
    throw coded(err.code || `http_${res.status}`, err.message || `HTTP ${res.status}`, res.status);
  }
  return value;
}

function setOffline(on) {
  state.offline = !!on;
  if (state.offline) {
    for (const c of inflight) c.abort(new DOMException('offline mode', 'AbortError'));
  } else if (state.cache) {
    // Catch up now (this also reconnects the live loop at once).
    state.cache.sync().catch(() => {});
  }
  const button = $('go-offline');
  button.textContent = state.offline ? 'go online' : 'go offline';
  button.setAttribute('aria-pressed', String(state.offline));
  document.body.classList.toggle('is-offline', state.offline);
  renderPanel();
}

// --- documents ------------------------------------------------------------------------------------

function docRows() {
  return [...state.docs].map(([id, [name, description]]) => [id, name, description]);
}

let docsSaveTimer = null;
function saveDocsNow() {
  clearTimeout(docsSaveTimer);
  docsSaveTimer = null;
  return store.saveDocs({ handle: state.docsHandle, complete: state.docsComplete, rows: docRows() });
}
/** One write for a few documents fetched or added in a row. */
function saveDocsSoon() {
  if (!docsSaveTimer) docsSaveTimer = setTimeout(saveDocsNow, 500);
}

function putDocs(rows) {
  for (const [id, name, description] of rows) state.docs.set(Number(id), [name, description]);
}

async function loadStoredDocs() {
  const saved = await store.loadDocs();
  if (!saved || !Array.isArray(saved.rows)) return;
  // Fetched meanwhile: the server's are newer.
  if (state.docs.size) return;
  putDocs(saved.rows);
  state.docsHandle = saved.handle || null;
  state.docsComplete = !!saved.complete;
}

let loadingDocs = null;
/** Every document, once the demo is built (before that, the ones asked for by id). */
function loadAllDocs() {
  if (!loadingDocs) {
    const complete = state.demo && state.demo.state === 'ready';
    loadingDocs = api('GET', '/v1/demo/docs')
      .then((r) => {
        state.docs.clear();
        putDocs(r.docs || []);
        state.docsHandle = state.cache ? state.cache.handle : null;
        state.docsComplete = complete;
        saveDocsNow();
        renderPanel();
        refreshNames();
      })
      .catch(() => {})
      .finally(() => {
        loadingDocs = null;
      });
  }
  return loadingDocs;
}

/** Fetches the documents of `ids` the page does not have (when online). */
async function ensureDocs(ids) {
  const missing = ids.filter((id) => typeof id === 'number' && !state.docs.has(id));
  if (!missing.length || state.offline) return;
  try {
    const r = await api('GET', `/v1/demo/docs?ids=${missing.join(',')}`);
    putDocs(r.docs || []);
    if (r.docs && r.docs.length) saveDocsSoon();
  } catch {
    // Shown by id until the server answers.
  }
}

// --- stored query vectors --------------------------------------------------------------------------

/** The key a query's vector is stored under (the model is uncased). */
function normalise(q) {
  return q.trim().replace(/\s+/g, ' ').toLowerCase();
}

function rememberQuery(q, vector) {
  const key = normalise(q);
  const record = { key, q: q.trim(), vector, at: Date.now() };
  state.queries.delete(key);
  state.queries.set(key, record);
  const evict = [];
  while (state.queries.size > MAX_QUERIES) {
    const oldest = state.queries.keys().next().value;
    state.queries.delete(oldest);
    evict.push(oldest);
  }
  store.putQuery(record, evict);
}

function storedQuery(q) {
  const record = state.queries.get(normalise(q));
  if (record) rememberQuery(record.q, record.vector); // most recently used now
  return record;
}

// --- searching -------------------------------------------------------------------------------------

let searchSeq = 0;
let searching = 0; // search() calls in flight

function setUrl(params) {
  const url = new URL(location.href);
  url.search = '';
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') url.searchParams.set(k, v);
  history.replaceState(null, '', url.pathname + url.search);
}

/** Embeds (or finds the stored vector of) `q`, searches, shows the results; resolves to the result. */
async function search(q, options) {
  searching += 1;
  try {
    return await searchNow(q, options);
  } finally {
    searching -= 1;
  }
}

async function searchNow(q, { updateUrl = true } = {}) {
  const my = ++searchSeq;
  const text = q.trim();
  if (updateUrl) setUrl({ q: text });
  if (!text) {
    state.current = null;
    showResult(null);
    return null;
  }
  if (!state.cache) {
    pendingQuery = text;
    return notice('The index is still loading: the search runs as soon as it is ready.');
  }
  let record = storedQuery(text);
  let embedMs = null;
  if (!record) {
    if (state.offline) {
      return failed(my, 'offline: new queries need the server (it turns the words into a vector). Queries searched before work offline; so does clicking a result.', true);
    }
    const t0 = performance.now();
    try {
      const r = await api('POST', '/v1/embed', { texts: [text] });
      embedMs = performance.now() - t0;
      rememberQuery(text, Float32Array.from(r.vectors[0]));
      record = state.queries.get(normalise(text));
    } catch (e) {
      if (e.code === 'unreachable') {
        return failed(my, 'offline: the server cannot be reached, and new queries need it to turn the words into a vector. Queries searched before still work.', true);
      }
      return failed(my, `the server could not embed the query: ${e.message}`);
    }
  }
  if (my !== searchSeq) return null;
  state.current = { kind: 'query', q: text };
  return answer(my, record.vector, { kind: 'query', query: text, embedMs, vectorFrom: embedMs === null ? 'stored' : 'server' });
}

/** The item's own vector from the copy, searched in the copy: no server involved. */
async function moreLike(id, { updateUrl = true } = {}) {
  const my = ++searchSeq;
  if (!state.cache) return notice('The index is still loading.');
  let vector = state.cache.cache.get(id);
  if (!vector && state.current && state.current.kind === 'like' && state.current.id === id) vector = state.current.vector;
  if (!vector) return failed(my, `#${id} is not in this browser's copy (deleted on the server?)`);
  if (updateUrl) setUrl({ like: id });
  state.current = { kind: 'like', id, vector };
  return answer(my, vector, { kind: 'like', id, embedMs: null, vectorFrom: 'copy' });
}

async function answer(my, vector, meta) {
  const t0 = performance.now();
  let r;
  if (meta.kind === 'like') {
    const hits = state.cache.search(vector, K + 1).filter((h) => h.id !== meta.id).slice(0, K);
    r = { hits, source: 'local', offline: !state.cache.online };
  } else {
    r = await state.cache.searchLocalOrRemote(vector, K);
  }
  const searchMs = performance.now() - t0;
  if (my !== searchSeq) return null;
  if (!meta.refreshed) state.answers[r.source] += 1;
  const ids = r.hits.map((h) => h.id);
  await ensureDocs(meta.kind === 'like' ? [meta.id, ...ids] : ids);
  if (my !== searchSeq) return null;
  const result = {
    ...meta,
    source: r.source,
    offline: !!r.offline,
    searchMs,
    watermark: state.cache.watermark,
    hits: r.hits.map((h) => ({ id: h.id, score: h.score, ...doc(h.id) })),
    notice: null,
  };
  state.watermark = state.cache.watermark;
  showResult(result);
  return result;
}

function doc(id) {
  const d = state.docs.get(typeof id === 'bigint' ? Number(id) : id);
  return d ? { name: d[0], description: d[1] } : { name: null, description: null };
}

function failed(my, message, offerStored = false) {
  if (my !== searchSeq) return null;
  const result = { kind: 'error', hits: [], notice: message };
  state.last = result;
  notice(message, offerStored);
  $('results').replaceChildren();
  $('results-title').hidden = true;
  $('search-info').textContent = '';
  return result;
}

/** Shows `message` above the results (with links to stored queries when `offerStored`). */
function notice(message, offerStored = false) {
  const box = $('notice');
  box.replaceChildren(message || '');
  box.hidden = !message;
  const recent = [...state.queries.values()].slice(-6).reverse();
  if (message && offerStored && recent.length) {
    box.append(
      el('br'),
      'Stored here: ',
      ...recent.flatMap((r, i) => [i ? ', ' : '', el('a', { href: `/?q=${encodeURIComponent(r.q)}`, class: 'stored-query' }, r.q)]),
    );
  }
  return null;
}

/**
 * Searches again for what the results show, after the copy changed (not counted as another
 * answer). A search in flight will show fresh results anyway.
 */
async function refresh() {
  const c = state.current;
  const prev = state.last;
  if (!c || !state.cache || searching > 0 || !prev || prev.kind !== c.kind) return;
  const my = ++searchSeq;
  if (c.kind === 'query') {
    const record = state.queries.get(normalise(c.q));
    if (!record) return;
    await answer(my, record.vector, { kind: 'query', query: c.q, embedMs: prev.embedMs, vectorFrom: prev.vectorFrom, refreshed: true });
  } else {
    await answer(my, c.vector, { kind: 'like', id: c.id, embedMs: null, vectorFrom: 'copy', refreshed: true });
  }
}

// --- rendering -------------------------------------------------------------------------------------

const fmt = {
  ms: (v) => (v < 10 ? v.toFixed(2) : v.toFixed(0)),
  mb: (b) => (b < 1e6 ? `${Math.round(b / 1e3)} kB` : `${(b / 1e6).toFixed(b < 1e7 ? 2 : 1)} MB`),
  s: (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`),
  int: (n) => Number(n).toLocaleString('en-US'),
  ago(t) {
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    return s < 2 ? 'just now' : s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
  },
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'title' || k === 'type') node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function showResult(result) {
  state.last = result;
  const list = $('results');
  const title = $('results-title');
  const info = $('search-info');
  notice(null);
  if (!result) {
    list.replaceChildren();
    title.hidden = true;
    info.textContent = '';
    delete info.dataset.source;
    return;
  }
  if (result.kind === 'like') {
    const { name } = doc(result.id);
    title.textContent = `More like ${name || `#${result.id}`}`;
    title.hidden = false;
  } else {
    title.hidden = true;
  }
  const where = result.source === 'local' ? 'local' : 'server';
  const parts = [
    el('span', { class: `src src-${where}`, 'data-source': where, id: 'answer-source' }, where),
    ` ${result.source === 'local' ? 'answered by the copy in this browser' : 'answered by the server (the copy may be stale)'}`,
    result.offline ? (state.offline ? ' (offline mode)' : ' (server unreachable)') : '',
    ` · search ${fmt.ms(result.searchMs)} ms`,
  ];
  if (result.kind === 'query') {
    parts.push(
      result.embedMs !== null
        ? ` · embedded by the server in ${fmt.ms(result.embedMs)} ms`
        : ' · query vector stored in this browser',
    );
  } else {
    parts.push(" · the item's own vector, from the copy");
  }
  if (result.refreshed) parts.push(' · refreshed: the copy changed');
  info.replaceChildren(...parts);
  info.dataset.source = where;
  renderPanelSoon();
  if (!result.hits.length) {
    const building = state.demo && state.demo.enabled && state.demo.state !== 'ready';
    list.replaceChildren(
      el('li', { class: 'empty' }, building ? 'No vectors yet: the server is building the demo, and results appear as they arrive.' : 'No vectors in the copy.'),
    );
    return;
  }
  list.replaceChildren(
    ...result.hits.map((h, i) =>
      el(
        'li',
        { 'data-id': String(h.id), 'data-source': where, 'data-score': h.score.toFixed(4) },
        el(
          'button',
          { type: 'button', class: 'hit', title: 'More like this (searched in this browser only)' },
          el('span', { class: 'rank' }, `${i + 1}`),
          el('span', { class: 'name' }, h.name || `#${h.id}`),
          el('span', { class: 'desc' }, h.description === null ? 'description not loaded' : h.description),
        ),
        el('span', { class: 'score', title: 'cosine similarity' }, h.score.toFixed(3)),
        el('span', { class: `src src-${where}`, 'data-source': where }, where),
        el('button', { type: 'button', class: 'delete', title: 'Delete on the server', 'aria-label': `Delete ${h.name || h.id} on the server`, 'data-delete-id': String(h.id) }, '×'),
      ),
    ),
  );
}

/** Fills in names that arrived after the results were shown. */
function refreshNames() {
  if (!state.last || !state.last.hits) return;
  if (!state.last.hits.some((h) => h.name === null && state.docs.has(h.id))) return;
  showResult({ ...state.last, hits: state.last.hits.map((h) => ({ ...h, ...doc(h.id) })) });
}

const CONNECTION_WORDS = {
  live: ['live', 'live: changes arrive as they happen'],
  online: ['idle', 'idle: caught up, not following'],
  offline: ['offline', 'offline: answering from the copy'],
  closed: ['closed', 'closed'],
};

function renderPanel() {
  const c = state.cache;
  let key = 'starting';
  let words = state.openError ? `not loaded (${state.openError.code || 'error'})` : 'loading the index…';
  $('st-state').title = state.openError && !c ? state.openError.message : '';
  if (c) {
    key = state.offline ? 'offline' : c.state === 'online' ? 'idle' : c.state;
    words = state.offline ? 'offline (by choice): answering from the copy' : (CONNECTION_WORDS[c.state] || [c.state, c.state])[1];
  } else if (state.offline) {
    key = 'offline';
    words = 'offline (by choice)';
  }
  for (const id of ['st-state', 'conn']) $(id).dataset.state = key;
  $('st-state').textContent = words;
  $('conn').textContent = key === 'starting' ? (state.openError ? 'error' : 'loading') : key;
  if (c) {
    const cache = c.cache;
    $('st-vectors').textContent = fmt.int(cache.len);
    $('st-bytes').textContent = fmt.mb(cache.stats().memoryBytes);
    $('st-watermark').textContent = fmt.int(c.watermark);
    $('st-handle').textContent = c.handle;
    const d = c.download;
    const how =
      c.source === 'persisted'
        ? 'restored from IndexedDB'
        : d && d.bytes < 4096
          ? 'started from the collection as it was being built; the vectors arrived through the live feed'
          : d
            ? `downloaded snapshot (${fmt.mb(d.bytes)}${d.wireBytes !== d.bytes ? `, ${fmt.mb(d.wireBytes)} on the wire` : ''}, ${fmt.s(d.ms)})`
            : 'downloaded snapshot';
    $('st-loaded').textContent = `${how}; ready ${fmt.s(state.readyMs)} after the page opened`;
    $('st-loaded').dataset.source = c.source;
    $('st-persisted').textContent = c.lastPersistAt
      ? `in IndexedDB, ${fmt.ago(c.lastPersistAt)}`
      : c.source === 'persisted'
        ? 'in IndexedDB (nothing new since)'
        : 'not yet';
  }
  $('st-local').textContent = fmt.int(state.answers.local);
  $('st-server').textContent = fmt.int(state.answers.server);
  $('st-docs').textContent = state.docs.size ? `${fmt.int(state.docs.size)}${state.docsComplete ? '' : ' so far'}` : '–';
  $('st-queries').textContent = fmt.int(state.queries.size);
  $('sync-now').disabled = !c || state.offline;
  for (const id of ['add-submit']) $(id).disabled = state.offline;

  const p = state.progress;
  $('download').hidden = !p;
  if (p) {
    const bar = $('download-progress');
    if (p.total) {
      bar.max = p.total;
      bar.value = Math.min(p.loaded, p.total);
      $('st-download').textContent = `${fmt.mb(p.loaded)} of ${fmt.mb(p.total)} (${Math.floor((100 * Math.min(p.loaded, p.total)) / p.total)} %)`;
    } else {
      bar.removeAttribute('value');
      $('st-download').textContent = `${fmt.mb(p.loaded)}`;
    }
  }
  const demo = state.demo;
  const building = demo && demo.enabled && demo.state !== 'ready';
  $('demo').hidden = !building && !state.demoError;
  if (building) {
    const bar = $('demo-progress');
    if (demo.total) {
      bar.max = demo.total;
      bar.value = demo.done;
    } else bar.removeAttribute('value');
    $('st-demo').textContent = demo.total
      ? `${demo.state}: ${fmt.int(demo.done)} of ${fmt.int(demo.total)} (${Math.floor((100 * demo.done) / demo.total)} %)`
      : `${demo.state}: ${demo.message}`;
    $('st-demo').title = demo.message;
    $('demo').dataset.state = demo.state;
  } else if (state.demoError && !demo) {
    $('st-demo').textContent = state.demoError.message;
  }
}

let panelQueued = false;
function renderPanelSoon() {
  if (panelQueued) return;
  panelQueued = true;
  requestAnimationFrame(() => {
    panelQueued = false;
    renderPanel();
  });
}

// --- edits ---------------------------------------------------------------------------------------

function editStatus(message) {
  const el = $('edit-status');
  el.textContent = message || '';
  el.hidden = !message;
}

function explain(e) {
  if (e.code === 'unauthorized' || e.code === 'forbidden') return `${e.message} (set a write key in settings)`;
  return e.message;
}

async function addDoc(name, description = '') {
  const at = performance.now();
  const r = await api('POST', '/v1/demo/docs', { name, description });
  state.docs.set(r.id, [name.trim(), description.trim()]);
  saveDocsSoon();
  state.edits.push({ id: r.id, seq: r.seq, what: `added ${name.trim()} (#${r.id})`, at });
  editStatus(`added ${name.trim()} as #${r.id} on the server (sequence ${r.seq}); waiting for live sync…`);
  checkEdits();
  return r;
}

async function deleteDoc(id) {
  const { name } = doc(id);
  const at = performance.now();
  const r = await api('DELETE', `/v1/demo/docs/${id}`);
  state.edits.push({ id, seq: r.seq, what: `deleted ${name || `#${id}`}`, at });
  editStatus(`deleted ${name || `#${id}`} on the server (sequence ${r.seq}); waiting for live sync…`);
  checkEdits();
  return r;
}

/** Reports edits once the copy has them. */
function checkEdits() {
  if (!state.cache) return;
  const w = state.cache.watermark;
  const arrived = state.edits.filter((e) => e.seq <= w);
  if (!arrived.length) return;
  state.edits = state.edits.filter((e) => e.seq > w);
  const last = arrived[arrived.length - 1];
  const ms = performance.now() - last.at;
  last.ms = ms;
  state.lastEdit = last;
  editStatus(`${last.what}: in this browser's copy ${fmt.ms(ms)} ms after the request was sent (live sync).`);
}

// --- start-up ------------------------------------------------------------------------------------

let pendingQuery = null;
let markReady;
const ready = new Promise((resolve) => (markReady = resolve));

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function openCache() {
  state.openError = null;
  try {
    state.cache = await VectorCache.open({
      server: location.origin,
      collection: state.collection,
      key: state.key || undefined,
      live: true,
      persist: PERSIST_NAME,
      storage: state.storage,
      // The page says when to write (persistSoon): the copy is one blob, tens of MB for
      // the whole demo, not to be rewritten every few seconds while the server builds it.
      persistDelayMs: 3600000,
      fetch: gatedFetch,
      onProgress: (p) => {
        state.progress = { loaded: p.loaded, total: p.total };
        renderPanelSoon();
      },
    });
  } catch (e) {
    state.openError = e;
    renderPanel();
    return false;
  }
  state.watermark = state.cache.watermark;
  state.readyMs = performance.now();
  if (state.docsHandle && state.docsHandle !== state.cache.handle) {
    // Documents of an earlier demo collection: not these.
    state.docs.clear();
    state.docsComplete = false;
  }
  if (!state.docsHandle) state.docsHandle = state.cache.handle;
  renderPanel();
  markReady();
  return true;
}

/** Polls the demo's status until it is built (and the cache is open). */
async function followDemo() {
  for (;;) {
    if (!state.offline) {
      try {
        state.demo = await api('GET', '/v1/demo');
        state.demoError = null;
        if (state.demo.collection) state.collection = state.demo.collection;
        if (state.demo.storage) state.storage = state.demo.storage;
      } catch (e) {
        state.demoError = e.code === 'unreachable' ? coded('unreachable', 'the server cannot be reached') : e;
      }
    }
    const demo = state.demo;
    if (demo && !demo.enabled) {
      notice(`The demo is off on this server: ${demo.message}`);
      renderPanel();
      return;
    }
    // The collection exists once the build embeds (or is built); unreachable: restore the copy.
    const canOpen = !demo || ['embedding', 'ready', 'failed'].includes(demo.state);
    if (!state.cache && canOpen && !(state.offline && state.openError)) {
      if (await openCache()) {
        if (pendingQuery !== null) {
          const q = pendingQuery;
          pendingQuery = null;
          search(q, { updateUrl: false });
        } else if (initialLike !== null) {
          moreLike(initialLike, { updateUrl: false });
        }
      }
    }
    if (!state.cache && state.openError && ['unauthorized', 'forbidden'].includes(state.openError.code)) {
      notice('This server needs an API key to read the collection: enter it under settings.');
      document.querySelector('.settings').open = true;
      renderPanel();
      return;
    }
    if (state.cache && demo && demo.state === 'ready' && !state.docsComplete && !state.offline) await loadAllDocs();
    if (state.cache && state.cache.source === 'persisted' && !state.docs.size && !state.offline && demo) await loadAllDocs();
    if (!state.cache && state.openError && state.openError.code === 'unreachable') {
      notice('The server cannot be reached, and this browser has no copy of the index yet. Retrying…');
      state.startNotice = true;
    } else if (state.cache && state.startNotice) {
      state.startNotice = false;
      notice(null);
    }
    renderPanel();
    if (state.cache && demo && demo.state === 'ready' && state.docsComplete) return;
    await sleep(state.cache ? 1000 : state.openError ? 3000 : 700);
  }
}

const persisted = { at: 0, version: null };

/**
 * Writes the copy to IndexedDB when it changed: 2 s after a change once the demo is built,
 * every 30 s while the server is still building it (each write is the whole blob).
 */
function persistSoon(c) {
  const version = `${c.handle}@${c.watermark}`;
  if (persisted.version === null && c.source === 'persisted') persisted.version = version;
  if (version === persisted.version) return;
  const building = state.demo && state.demo.enabled && state.demo.state !== 'ready';
  if (persisted.changedAt === undefined) persisted.changedAt = Date.now();
  const wait = building ? Math.max(0, 30000 - (Date.now() - persisted.at)) : 2000 - (Date.now() - persisted.changedAt);
  if (wait > 0) return;
  persisted.version = version;
  persisted.at = Date.now();
  persisted.changedAt = undefined;
  c.save().catch(() => {
    persisted.version = null;
  });
}

/** Watches the copy: results and the panel follow its watermark; it is persisted now and then. */
async function watchCopy() {
  for (;;) {
    await sleep(200);
    const c = state.cache;
    if (!c) continue;
    persistSoon(c);
    if (c.watermark !== state.watermark) {
      state.watermark = c.watermark;
      checkEdits();
      await refresh().catch(() => {});
      renderPanelSoon();
    }
  }
}

let initialLike = null;

function wire() {
  const input = $('q');
  let timer = null;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => search(input.value), DEBOUNCE_MS);
  });
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(timer);
    search(input.value);
  });
  const runLink = (e) => {
    const a = e.target.closest('a');
    if (!a) return;
    e.preventDefault();
    input.value = new URL(a.href).searchParams.get('q') || '';
    search(input.value);
  };
  $('examples').addEventListener('click', runLink);
  $('notice').addEventListener('click', runLink);
  $('results').addEventListener('click', async (e) => {
    const del = e.target.closest('button.delete');
    const li = e.target.closest('li[data-id]');
    if (!li) return;
    const id = Number(li.dataset.id);
    if (del) {
      del.disabled = true;
      try {
        await deleteDoc(id);
      } catch (err) {
        del.disabled = false;
        editStatus(`could not delete #${id}: ${explain(err)}`);
      }
      return;
    }
    if (e.target.closest('button.hit')) {
      moreLike(id);
      window.scrollTo({ top: 0, behavior: 'smooth' });
    }
  });
  $('add-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('add-name').value;
    const description = $('add-desc').value;
    $('add-submit').disabled = true;
    try {
      await addDoc(name, description);
      $('add-form').reset();
    } catch (err) {
      editStatus(`could not add ${name}: ${explain(err)}`);
    } finally {
      $('add-submit').disabled = state.offline;
    }
  });
  $('sync-now').addEventListener('click', async () => {
    const out = $('sync-result');
    out.textContent = 'syncing…';
    try {
      const r = await syncNow();
      out.textContent = `${r.applied} change${r.applied === 1 ? '' : 's'} applied${r.reloaded ? ' (snapshot reloaded)' : ''}; watermark ${fmt.int(r.watermark)}`;
    } catch (err) {
      out.textContent = `sync failed: ${err.message}`;
    }
    renderPanel();
  });
  $('go-offline').addEventListener('click', () => setOffline(!state.offline));
  $('key').value = state.key;
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('key').value.trim();
    if (key) localStorage.setItem(KEY_ITEM, key);
    else localStorage.removeItem(KEY_ITEM);
    location.reload();
  });
  $('forget').addEventListener('click', async () => {
    if (state.cache) await state.cache.close().catch(() => {});
    await Promise.allSettled([deleteCache(PERSIST_NAME), store.clearAll()]);
    location.reload();
  });
  // Leaving: persist what changed since the last save (best effort).
  const leaving = () => {
    if (state.cache) state.cache.save().catch(() => {});
    if (docsSaveTimer) saveDocsNow();
  };
  addEventListener('pagehide', leaving);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'hidden') leaving();
  });
}

async function syncNow() {
  if (!state.cache) throw new Error('the index is not loaded yet');
  const r = await state.cache.sync();
  if (state.cache.watermark !== state.watermark) {
    state.watermark = state.cache.watermark;
    checkEdits();
    await refresh();
  }
  return r;
}

function snapshotOfState() {
  const c = state.cache;
  return {
    ready: !!c,
    error: state.openError ? state.openError.message : null,
    demo: state.demo,
    connection: c ? c.state : null,
    offline: state.offline,
    vectors: c ? c.cache.len : 0,
    memoryBytes: c ? c.cache.stats().memoryBytes : 0,
    watermark: c ? c.watermark : null,
    handle: c ? c.handle : null,
    complete: c ? c.complete : false,
    source: c ? c.source : null,
    readyMs: state.readyMs === undefined ? null : state.readyMs,
    download: c ? c.download : null,
    progress: state.progress,
    lastPersistAt: c ? c.lastPersistAt : null,
    answers: { ...state.answers },
    docs: state.docs.size,
    docsComplete: state.docsComplete,
    storedQueries: state.queries.size,
    pendingEdits: state.edits.length,
    lastEdit: state.lastEdit || null,
    last: state.last,
  };
}

async function main() {
  wire();
  const params = new URLSearchParams(location.search);
  const q = params.get('q');
  if (q) {
    $('q').value = q;
    pendingQuery = q;
  } else if (params.get('like') && /^\d+$/.test(params.get('like'))) {
    initialLike = Number(params.get('like'));
  }
  window.proximaDemo = {
    ready,
    state: snapshotOfState,
    search: (text) => {
      $('q').value = text;
      return search(text);
    },
    moreLike: (id) => moreLike(id),
    setOffline,
    syncNow,
    addDoc,
    deleteDoc,
  };
  renderPanel();
  // The page itself, kept for reloads while the server is down (network first otherwise).
  if ('serviceWorker' in navigator && window.isSecureContext) navigator.serviceWorker.register('/sw.js').catch(() => {});
  let pkg;
  try {
    pkg = await import('/pkg/index.js');
    await pkg.default();
  } catch (e) {
    throw new Error(`the web package did not load from /pkg/ (build it with: bash scripts/build-wasm.sh): ${e.message}`);
  }
  ({ VectorCache, deleteCache } = pkg);
  const [, saved] = await Promise.all([loadStoredDocs(), store.loadQueries()]);
  for (const r of saved) state.queries.set(r.key, r);
  renderPanel();
  watchCopy();
  setInterval(renderPanelSoon, 1000);
  await followDemo();
}

main().catch((e) => {
  state.openError = e;
  notice(`The page could not start: ${e.message}`);
  renderPanel();
});
