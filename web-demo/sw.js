// The page's service worker: keeps a copy of the page itself (HTML, scripts, style, the web
// package) so that a reload works when the server is down; the index and the stored queries
// come from IndexedDB then. Network first: while the server answers, every file is fresh.
// API requests (/v1/...) are never touched.

const SHELL = 'proxima-demo-shell-v1';

// Stored at install, so that the first visit already leaves a page that reloads offline.
const FILES = [
  '/', '/app.js', '/store.js', '/style.css',
  '/pkg/index.js', '/pkg/proxima_wasm.js', '/pkg/proxima_wasm_bg.wasm', '/pkg/persist.js', '/pkg/sync.js',
];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(SHELL)
      .then((cache) => Promise.allSettled(FILES.map((f) => cache.add(new Request(f, { cache: 'no-cache' })))))
      .then(() => self.skipWaiting()),
  );
});
self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('proxima-demo-shell-') && k !== SHELL).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function isShell(url) {
  return (
    url.origin === self.location.origin &&
    (url.pathname === '/' || url.pathname.startsWith('/pkg/') || /^\/[\w.-]+\.(js|css|html)$/.test(url.pathname))
  );
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (!isShell(url)) return;
  // One entry per file: the page under "/", whatever its query.
  const key = request.mode === 'navigate' || url.pathname === '/' ? '/' : url.pathname;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(SHELL).then((cache) => cache.put(key, copy));
        }
        return response;
      })
      .catch(async () => {
        const cached = await caches.match(key);
        if (cached) return cached;
        throw new TypeError(`offline, and ${url.pathname} is not stored`);
      }),
  );
});
