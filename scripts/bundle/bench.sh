#!/bin/sh
# The bundle's bench.sh (scripts/bench-bundle.sh copies it): runs the benchmark from the bundle,
# with no npm and no registry. Options: bench.sh --help.
# Its folder from its real path, not from $0 as given: `sh bench.sh` in its folder gives no
# folder at all, and a symlink on PATH gives the symlink's.
here=$(dirname "$(readlink -f "$0")")
if ! "$here/bin/node" --version >/dev/null 2>&1; then
  LD_LIBRARY_PATH="$here/lib/node${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
fi
PATH="$here/bin:$PATH" exec "$here/bin/node" "$here/dist/scripts/bench.js" "$@"
