#!/usr/bin/env bash
# Print the path of the previous version's Debian package, building it from
# git if it is not cached yet. `make deb-check` installs it and then upgrades
# it to the package of this tree.
#
# With --binary: print the path of the previous version's `backchannel`
# binary instead (the rolling-upgrade test, tests/it/ops/upgrade.rs, runs it
# next to this tree's); built the same way, from the same tree, which is kept
# until the package is built from it too (no second release build).
#
# The previous version is the second entry of deploy/debian/changelog; it is
# built from the commit right before the one that added the latest entry (or
# from HEAD while that entry is not committed yet), which must say that
# version in Cargo.toml. That costs one release build (a few minutes),
# once: the package is kept as
# target/deb-previous/backchannel_<version>_<commit>_<arch>.deb, and the
# build tree is deleted afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

binary_only=false
[ "${1:-}" = --binary ] && binary_only=true

say() { echo "deb-previous: $*" >&2; }
fail() { echo "deb-previous: FAILED: $*" >&2; exit 1; }

versions=$(sed -n 's/^backchannel (\([^)]*\)).*/\1/p' deploy/debian/changelog)
current=$(sed -n 1p <<<"$versions")
previous=$(sed -n 2p <<<"$versions")
[ -n "$previous" ] || fail "deploy/debian/changelog has a single entry: there is no previous version to upgrade from"

git rev-parse --git-dir >/dev/null 2>&1 || fail "not a git checkout: the previous version is built from git history"
[ "$(git rev-parse --is-shallow-repository)" = false ] \
  || fail "a shallow clone: the previous version ($previous) is built from history (git fetch --unshallow)"
# The commit that added the current entry; its parent is the previous version.
bump=$(git log --format=%H --reverse -S"backchannel ($current)" -- deploy/debian/changelog | head -n 1)
if [ -n "$bump" ]; then
  base=$(git rev-parse "$bump^")
else
  base=$(git rev-parse HEAD)   # the new entry is not committed yet
fi
cargo_version=$(git show "$base:Cargo.toml" | sed -n 's/^version = "\(.*\)"$/\1/p' | head -n 1)
[ "$cargo_version" = "$previous" ] \
  || fail "commit ${base:0:12} says version '$cargo_version' in Cargo.toml, the changelog's previous entry is $previous"

arch=$(dpkg --print-architecture)
out="target/deb-previous/backchannel_${previous}_${base:0:12}_${arch}.deb"
bin="target/deb-previous/backchannel_${previous}_${base:0:12}_${arch}.bin"
tree="target/deb-previous/build-${base:0:12}"

# The binary: from the cache, else from a release build of the tree (kept).
if $binary_only; then
  if [ ! -s "$bin" ]; then
    if [ ! -x "$tree/target/release/backchannel" ]; then
      say "building $previous's binary from commit ${base:0:12} in $tree (one release build; cached afterwards)"
      mkdir -p "$tree"
      [ -f "$tree/Cargo.toml" ] || git archive "$base" | tar -x -C "$tree"
      (cd "$tree" && cargo build --release --locked --bin backchannel >&2)
    fi
    cp "$tree/target/release/backchannel" "$bin.tmp"
    mv "$bin.tmp" "$bin"
  fi
  echo "$PWD/$bin"
  exit 0
fi

if [ -s "$out" ]; then
  say "cached: $out"
  echo "$PWD/$out"
  exit 0
fi

say "building $previous from commit ${base:0:12} in $tree (one release build; cached afterwards)"
mkdir -p "$tree"
# A tree left by --binary (or an interrupted run) is built further, not again.
[ -f "$tree/Cargo.toml" ] || git archive "$base" | tar -x -C "$tree"
(
  cd "$tree"
  cargo build --release --locked --bin backchannel >&2
  ./target/release/backchannel manual target/manual >&2
  cargo deb --no-build --strip --output target/debian/ >&2
)
built=$(ls "$tree"/target/debian/backchannel_"$previous"_*.deb)
mv "$built" "$out"
rm -rf "$tree"
say "built: $out"
echo "$PWD/$out"
