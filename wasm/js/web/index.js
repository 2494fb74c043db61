// @proxima/cache-web: the wasm module (call the default export, init, once before anything
// else) and the IndexedDB persistence helpers.
export { default } from './proxima_wasm.js';
export * from './proxima_wasm.js';
export * from './persist.js';
