#!/usr/bin/env bash
# Runs openai_client_test.mjs (the official openai Node.js client against sbits-server).
# usage: run_openai_client_test.sh SERVER MODEL NODE_DIR TEST_JS
# Installs the openai package into NODE_DIR once. Exit 77 (ctest: skipped, never passed) when
# node or npm is missing or the package cannot be installed (no registry).
set -euo pipefail
server=$1 model=$2 node_dir=$3 test_js=$4
# The major version the test is written against; the newest 4.x is installed.
openai_version=4

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIPPED: node and npm are needed for the openai client test" >&2
  exit 77
fi
node_major=$(node -e 'process.stdout.write(String(process.versions.node.split(".")[0]))')
if [ "$node_major" -lt 18 ]; then
  echo "SKIPPED: node >= 18 needed (fetch, ES modules), found $(node --version)" >&2
  exit 77
fi
if [ ! -f "$node_dir/node_modules/openai/package.json" ]; then
  mkdir -p "$node_dir"
  echo '{"name":"sbits-server-openai-test","private":true,"type":"module"}' > "$node_dir/package.json"
  if ! (cd "$node_dir" && timeout 300 npm install --no-audit --no-fund --loglevel=error "openai@$openai_version" >&2); then
    echo "SKIPPED: 'npm install openai@$openai_version' failed (is the npm registry reachable?)" >&2
    exit 77
  fi
fi
echo "openai client $(node -e "process.stdout.write(require('$node_dir/node_modules/openai/package.json').version)")" >&2
# Node resolves 'openai' from the script's own folder, so the script runs from NODE_DIR.
cp "$test_js" "$node_dir/openai_client_test.mjs"
exec timeout 600 node "$node_dir/openai_client_test.mjs" "$server" "$model"
