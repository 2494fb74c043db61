export * from './proxima_wasm';
export * from './persist';
