#!/usr/bin/env bash
# Makes a self-contained tarball to run the benchmark on a bigger Linux x86-64 machine that has no
# registry access: the compiled service and bench, the Node binary from node_modules, and ab, wrk
# and taskset with every shared library ldd lists for them (run through the bundled dynamic
# loader, so the host's glibc version does not matter for them).
#
#   scripts/bench-bundle.sh [OUT.tar.gz]      (default: $TMPDIR/myservice-bench.tar.gz)
#   then, on the other machine:
#   tar xzf myservice-bench.tar.gz && myservice-bench/bench.sh --workers 1,2,4,8 --out results
set -euo pipefail
# Resolved before the cd: a relative OUT is the caller's, not the repository's.
out=$(realpath -m "${1:-${TMPDIR:-/tmp}/myservice-bench.tar.gz}")
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/myservice-bench"
mkdir -p "$root/bin" "$root/lib/tools" "$root/lib/node"

# The compiled code: the service, the bench and the test helper the bench reuses.
npx tsc -p tsconfig.json --outDir "$stage/dist"
mkdir -p "$root/dist/test"
cp -r "$stage/dist/src" "$stage/dist/scripts" "$root/dist/"
cp -r "$stage/dist/test/helpers" "$root/dist/test/"
# The .js files are ES modules: Node learns that from the nearest package.json.
printf '{ "type": "module", "private": true }\n' >"$root/package.json"

node_bin=node_modules/node/bin/node
[ -x "$node_bin" ] || { echo "no $node_bin: run npm ci first" >&2; exit 1; }
cp "$node_bin" "$root/bin/node"
# Node keeps its own path (cluster forks process.execPath), so it cannot run through a bundled
# loader; bench.sh falls back to these copies only when the host lacks them (libatomic, often).
for lib in $(ldd "$node_bin" | awk '/=> \// { print $3 }'); do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*) ;;
    *) cp -L "$lib" "$root/lib/node/" ;;
  esac
done

loader=""
for tool in ab wrk taskset; do
  path=$(command -v "$tool" || true)
  if [ -z "$path" ]; then
    echo "warning: $tool not found here; the bundle will skip what needs it" >&2
    continue
  fi
  cp -L "$path" "$root/lib/tools/$tool"
  for lib in $(ldd "$path" | awk '/=> \// { print $3 }'); do cp -L -n "$lib" "$root/lib/tools/"; done
  loader=$(ldd "$path" | awk '/ld-linux/ { print $1 }')
  cat >"$root/bin/$tool" <<WRAPPER
#!/bin/sh
# $tool from the machine that built this bundle, with its own libraries and loader.
lib="\$(dirname "\$(readlink -f "\$0")")/../lib/tools"
exec "\$lib/$(basename "$loader")" --library-path "\$lib" "\$lib/$tool" "\$@"
WRAPPER
  chmod +x "$root/bin/$tool"
done
[ -n "$loader" ] && cp -L "$loader" "$root/lib/tools/"

cp scripts/bundle/bench.sh "$root/bench.sh"
chmod +x "$root/bench.sh"

tar -C "$stage" -czf "$out" myservice-bench
echo "$out ($(du -h "$out" | cut -f1)): tar xzf it anywhere, then myservice-bench/bench.sh --workers 1,2,4,8"
