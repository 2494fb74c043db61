export * from './proxima_wasm';
export * from './persist';
export * from './sync';
