export { default } from './proxima_wasm.js';
export * from './proxima_wasm.js';
export * from './persist.js';
export * from './sync.js';
