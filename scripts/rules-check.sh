#!/usr/bin/env bash
# promtool check rules and promtool test rules on deploy/prometheus/.
#
# promtool comes from Debian's prometheus package. When it is not on PATH,
# only that one program is taken out of the package (apt-get download and
# dpkg-deb, into target/tools): installing the package would also bring a
# Prometheus server, its service, its user and a set of JavaScript libraries.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  tools="$top/target/tools"
  promtool="$tools/usr/bin/promtool"
  if [ ! -x "$promtool" ]; then
    echo "rules-check: promtool not found; extracting it from Debian's prometheus package into target/tools" >&2
    mkdir -p "$tools/download"
    chmod 0777 "$tools/download" 2>/dev/null || true   # apt-get download runs as _apt
    (cd "$tools/download" && apt-get download -q prometheus >/dev/null 2>&1) || {
      apt-get update -qq && (cd "$tools/download" && apt-get download -q prometheus >/dev/null)
    }
    dpkg-deb --fsys-tarfile "$tools"/download/prometheus_*.deb | tar -x -C "$tools" ./usr/bin/promtool
    rm -rf "$tools/download"
  fi
fi
"$promtool" --version 2>&1 | head -n 1
cd "$top/deploy/prometheus"
"$promtool" check rules backchannel.rules.yml
"$promtool" test rules backchannel.rules.test.yml
