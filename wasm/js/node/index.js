'use strict';
// @proxima/cache-node: the wasm module (ready once required) and the file persistence helpers.
module.exports = {
  ...require('./proxima_wasm.js'),
  ...require('./persist.js'),
};
