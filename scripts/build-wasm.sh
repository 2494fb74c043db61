#!/usr/bin/env bash
# Builds the two npm packages of the browser/edge vector cache from the wasm crate:
#   target/wasm-pkg/web    @proxima/cache-web   ES module for browsers, workers, bundlers (await init())
#   target/wasm-pkg/node   @proxima/cache-node  CommonJS for Node.js
#
#   bash scripts/build-wasm.sh
#
# Steps: what is missing is installed (scripts/setup.sh wasm); cargo builds proxima-wasm for
# wasm32 (profile wasm-release, or release where Cargo.toml has none); wasm-bindgen writes the
# web and nodejs glue; wasm-opt -Oz (npm's binaryen, in target/tools) shrinks each module;
# package.json, README, the persistence helpers and the sync client (wasm/js/) go beside
# them. Prints each package's gzipped size (wasm + JS) and fails when the web package's exceeds
# WEB_GZ_LIMIT.
set -euo pipefail
cd "$(dirname "$0")/.."

WEB_GZ_LIMIT=$((100 * 1024))   # fail above this (bytes, gzip -9 of the wasm and every .js)
WEB_GZ_GOAL=$((40 * 1024))     # what the web package should stay under
out=target/wasm-pkg
wasm_opt=target/tools/node_modules/.bin/wasm-opt

step() { printf '\n== %s\n' "$*"; }
gz() { gzip -9 -c "$1" | wc -c; }
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }

bash scripts/setup.sh wasm

# The workspace's wasm-release profile (full LTO, one codegen unit) when it has one, else release.
if grep -q '^\[profile\.wasm-release\]' Cargo.toml; then profile=wasm-release; else profile=release; fi
step "cargo build -p proxima-wasm --profile $profile (wasm32)"
bash scripts/wasm-cargo.sh build -p proxima-wasm --profile "$profile"
if [ "$(cat target/.wasm-route 2>/dev/null || echo rustup)" = debian ]; then
  wasm="target/wasm-debian/wasm32-unknown-unknown/$profile/proxima_wasm.wasm"
else
  wasm="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/$profile/proxima_wasm.wasm"
fi
[ -f "$wasm" ] || { echo "build-wasm: $wasm was not built" >&2; exit 1; }

version="$(awk '/^\[workspace\.package\]/ { p = 1; next } /^\[/ { p = 0 }
  p && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' Cargo.toml)"
[ -n "$version" ] || { echo "build-wasm: no version in Cargo.toml's [workspace.package]" >&2; exit 1; }

declare -A bindgen_target=([web]=web [node]=nodejs)
for flavour in web node; do
  dir="$out/$flavour"
  step "$flavour package: wasm-bindgen --target ${bindgen_target[$flavour]}, wasm-opt -Oz -> $dir"
  rm -rf "$dir"
  wasm-bindgen --target "${bindgen_target[$flavour]}" --typescript --out-dir "$dir" "$wasm"
  # The target_features section (SIMD128, bulk memory, reference types...) tells wasm-opt what
  # the module uses; the flags only add to it.
  "$wasm_opt" -Oz --enable-simd --enable-bulk-memory --strip-debug --strip-producers \
    "$dir/proxima_wasm_bg.wasm" -o "$dir/proxima_wasm_bg.opt.wasm"
  mv "$dir/proxima_wasm_bg.opt.wasm" "$dir/proxima_wasm_bg.wasm"
  node -e '
    const bytes = require("fs").readFileSync(process.argv[1]);
    if (!WebAssembly.validate(bytes)) { console.error("build-wasm: " + process.argv[1] + " does not validate"); process.exit(1); }
  ' "$dir/proxima_wasm_bg.wasm"
  cp wasm/js/"$flavour"/*.js wasm/js/"$flavour"/*.d.ts wasm/js/README.md wasm/js/sync.d.ts "$dir/"
  # The sync client is one file for both: for the ES module package without its comment lines
  # (its size counts; sync.d.ts documents it), for the CommonJS one with its one `export {...}`
  # statement turned into module.exports.
  node - wasm/js/sync.js "$dir/sync.js" "$flavour" <<'EOF'
const fs = require('fs');
const [src, dst, flavour] = process.argv.slice(2);
const text = fs.readFileSync(src, 'utf8');
const exported = text.match(/^export \{([^}]*)\};[ \t]*$/m);
if (!exported || /^[ \t]*(import|export)\b/m.test(text.replace(exported[0], ''))) {
  console.error(`build-wasm: ${src} must import nothing and export in one "export { ... };" line`);
  process.exit(1);
}
if (flavour === 'node') {
  fs.writeFileSync(dst, `'use strict';\n${text.replace(exported[0], `module.exports = {${exported[1]}};`)}`);
} else {
  // Whole comment lines only: `//` lines and `/* ... */` blocks that start a line.
  const out = ['// Proxima sync client (wasm/js/sync.js without its comments; the API is in sync.d.ts).'];
  let inBlock = false;
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (inBlock) inBlock = !t.includes('*/');
    else if (t.startsWith('/*')) inBlock = !t.includes('*/');
    else if (!t.startsWith('//') && t !== '') out.push(line);
  }
  fs.writeFileSync(dst, out.join('\n') + '\n');
}
EOF
  if [ "$flavour" = web ]; then
    cp "$dir/sync.js" "$out/.sync-check.mjs" && node --check "$out/.sync-check.mjs" && rm "$out/.sync-check.mjs"
  else
    node --check "$dir/sync.js"
  fi
  node - "$dir" "$flavour" "$version" <<'EOF'
const fs = require('fs');
const [dir, flavour, version] = process.argv.slice(2);
const files = fs.readdirSync(dir).filter((f) => f !== 'package.json').sort();
const common = {
  version,
  license: 'Apache-2.0',
  keywords: ['vector', 'search', 'hnsw', 'cache', 'embeddings', 'webassembly'],
  files,
};
const pkg = flavour === 'web'
  ? {
      name: '@proxima/cache-web',
      description: 'Proxima vector cache for browsers, workers and bundlers (WebAssembly, ES module; call init() first)',
      ...common,
      type: 'module',
      main: './index.js',
      module: './index.js',
      types: './index.d.ts',
      exports: {
        '.': { types: './index.d.ts', default: './index.js' },
        './persist.js': { types: './persist.d.ts', default: './persist.js' },
        './sync.js': { types: './sync.d.ts', default: './sync.js' },
        './proxima_wasm.js': { types: './proxima_wasm.d.ts', default: './proxima_wasm.js' },
        './proxima_wasm_bg.wasm': './proxima_wasm_bg.wasm',
        './package.json': './package.json',
      },
      // index.js attaches open (the sync client) to VectorCache.
      sideEffects: ['./index.js'],
    }
  : {
      name: '@proxima/cache-node',
      description: 'Proxima vector cache for Node.js (WebAssembly, CommonJS)',
      ...common,
      type: 'commonjs',
      main: './index.js',
      types: './index.d.ts',
      exports: {
        '.': { types: './index.d.ts', default: './index.js' },
        './persist.js': { types: './persist.d.ts', default: './persist.js' },
        './sync.js': { types: './sync.d.ts', default: './sync.js' },
        './proxima_wasm_bg.wasm': './proxima_wasm_bg.wasm',
        './package.json': './package.json',
      },
      // The glue reads and instantiates the wasm module when it is required.
      sideEffects: ['./proxima_wasm.js', './index.js'],
      engines: { node: '>=16.4' },
    };
fs.writeFileSync(`${dir}/package.json`, JSON.stringify(pkg, null, 2) + '\n');
EOF
done

step "gzipped sizes (gzip -9, each file on its own)"
web_total=0
for flavour in web node; do
  dir="$out/$flavour"
  w=$(gz "$dir/proxima_wasm_bg.wasm")
  glue=$(gz "$dir/proxima_wasm.js")
  helpers=0
  for f in "$dir"/index.js "$dir"/persist.js "$dir"/sync.js; do helpers=$((helpers + $(gz "$f"))); done
  total=$((w + glue + helpers))
  printf '%-4s  wasm %6d B + JS glue %5d B + index/persist/sync %5d B = %6d B gz (%s); wasm raw %d B\n' \
    "$flavour" "$w" "$glue" "$helpers" "$total" "$(kib "$total")" "$(wc -c < "$dir/proxima_wasm_bg.wasm")"
  [ "$flavour" = web ] && web_total=$total
done
if [ "$web_total" -gt "$WEB_GZ_LIMIT" ]; then
  echo "build-wasm: FAIL: the web package is $(kib "$web_total") gz, over the $(kib "$WEB_GZ_LIMIT") limit" >&2
  exit 1
elif [ "$web_total" -gt "$WEB_GZ_GOAL" ]; then
  echo "web package: $(kib "$web_total") gz: within the $(kib "$WEB_GZ_LIMIT") limit, over the $(kib "$WEB_GZ_GOAL") goal"
else
  echo "web package: $(kib "$web_total") gz: within the $(kib "$WEB_GZ_GOAL") goal ($(kib "$WEB_GZ_LIMIT") limit)"
fi
echo "packages: $out/web $out/node (version $version)"
