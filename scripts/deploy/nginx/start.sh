#!/bin/sh
# Runs nginx in the foreground and reloads it whenever the addresses behind the upstream's name
# change: replicas added (scale up), removed (stop, scale down) or replaced.
#
# Open-source nginx resolves upstream server names only when it loads its configuration; the
# `resolve` parameter that re-resolves them came in nginx 1.27.3 (Debian 12 ships 1.22). A
# variable in proxy_pass re-resolves too, but then there is no upstream block: no keep-alive
# to the replicas and no failure memory between requests. A reload works on every version and
# is graceful: new workers take new connections, old ones finish what they have.
set -eu
name=${UPSTREAM_HOST:-app}
interval=${RESOLVE_INTERVAL_S:-1}

addresses() {
  getent ahostsv4 "$name" | awk '{ print $1 }' | sort -u | tr '\n' ' '
}

# `getent ahostsv4` is glibc's: an image without it (Alpine's musl) would wait below forever.
if [ -z "$(getent ahostsv4 localhost 2>/dev/null)" ]; then
  echo "start.sh: 'getent ahostsv4' lists no address here: use a glibc-based nginx image (nginx:stable, not -alpine)" >&2
  exit 1
fi

# nginx refuses to start while an upstream name does not resolve.
current=$(addresses)
while [ -z "$current" ]; do
  echo "start.sh: waiting for $name to resolve"
  sleep "$interval"
  current=$(addresses)
done
echo "start.sh: $name is [ $current]"

(
  while sleep "$interval"; do
    next=$(addresses)
    if [ -n "$next" ] && [ "$next" != "$current" ]; then
      echo "start.sh: $name is now [ $next], was [ $current]: reloading nginx"
      if nginx -s reload; then current=$next; fi
    fi
  done
) &

exec nginx -g 'daemon off;'
