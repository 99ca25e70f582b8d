#!/usr/bin/env bash
# `nginx -t` on every nginx configuration the docs show: each fenced
# ```nginx block of README.md and docs/*.md, as the http {} context of a
# minimal nginx.conf, with the installed nginx (Debian 12's is 1.22, which
# knows `listen ... http2` but not the `http2 on;` of 1.25.1+). The
# certificate files a block names are replaced by a throwaway self-signed
# pair (nginx -t reads them); nothing else is changed. `make deb-check` runs
# it; `make nginx-check` alone. As root it installs nginx-light if nginx is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "nginx-check: $*"; }
fail() { echo "nginx-check: FAILED: $*" >&2; exit 1; }

nginx=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$nginx" ]; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || fail "nginx is not installed (apt-get install nginx-light)"
  say "installing nginx-light (its service is not started)"
  # policy-rc.d 101: the package's postinst does not start nginx here. A
  # machine may have one already (every Docker image does): it is set aside
  # and put back exactly as it was, whatever happens.
  policy=/usr/sbin/policy-rc.d
  saved=""
  if [ -e "$policy" ]; then
    saved=$(mktemp /usr/sbin/.policy-rc.d.XXXXXX)
    cp -p "$policy" "$saved"
  fi
  restore() { if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi; }
  trap restore EXIT
  printf '#!/bin/sh\nexit 101\n' >"$policy.new" && chmod 0755 "$policy.new" && mv -f "$policy.new" "$policy"
  { apt-get install -y -qq nginx-light >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }; } \
    || fail "apt-get install nginx-light failed"
  restore; trap - EXIT
  nginx=/usr/sbin/nginx
fi
say "$("$nginx" -v 2>&1)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=nginx-check \
  -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1 || fail "openssl could not make a certificate"

# Every ```nginx block, one file each, named after its page and line.
blocks=0
for page in README.md docs/*.md; do
  while IFS=: read -r line; do
    blocks=$((blocks + 1))
    name="$(basename "$page" .md)-$line"
    awk -v start="$line" 'NR > start && /^```/ { exit } NR > start { print }' "$page" \
      | sed -E "s#^([[:space:]]*ssl_certificate)[[:space:]]+[^;]+;#\1 $work/cert.pem;#;
                s#^([[:space:]]*ssl_certificate_key)[[:space:]]+[^;]+;#\1 $work/key.pem;#" \
      >"$work/$name.conf"
    cat >"$work/nginx-$name.conf" <<EOF
pid $work/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path $work/tmp;
    include $work/$name.conf;
}
EOF
    out=$("$nginx" -t -q -e stderr -p "$work" -c "$work/nginx-$name.conf" 2>&1) \
      || fail "$page, the nginx block at line $line: $out"
    say "  $page:$line: nginx -t ok"
  done < <(grep -n '^```nginx$' "$page" | cut -d: -f1)
done
[ "$blocks" -gt 0 ] || fail "no \`\`\`nginx block in README.md or docs/*.md"
say "ok ($blocks configuration(s))"
