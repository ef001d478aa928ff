#!/usr/bin/env bash
# tools/fresh-check.sh: the README's two commands, verbatim, on a fresh
# Debian 12 root, as a new user would run them.
#
#   bash tools/fresh-check.sh        (as root; CI runs it from .ci/run)
#
# The README marks its two commands with <!-- fresh-check:install --> and
# <!-- fresh-check:test -->, each followed by a one-line code block; this
# script reads them from there (they are written nowhere else).  It
#
#   1. builds a Debian 12 (bookworm) minbase root with debootstrap, from the
#      mirror this machine's apt sources name, plus sudo (the README's
#      command is written for a user with sudo; as root, sudo just runs it),
#      and caches it as a tarball (FRESH_CACHE, default
#      /var/cache/sysvshm-fresh; rebuilt when missing, corrupt, built for
#      another mirror or debootstrap, or older than FRESH_MAX_AGE_DAYS);
#   2. in private IPC, mount and PID namespaces (unshare): unpacks it onto a
#      tmpfs, gives it this machine's DNS and apt sources, puts a clean clone
#      of this checkout's HEAD (what is committed, nothing else) in
#      /usr/local/src/sysvshm (readable by the user nobody the permission
#      specs switch to; /root is not), mounts /proc and a /dev of its own
#      (null zero full random urandom tty, a devpts instance, /dev/shm);
#   3. there, chrooted, as root, with a clean environment and no standard
#      input, runs the install command and then the test command, each as
#      `bash -c` of the README's text;
#   4. lists the System V segments of that IPC namespace (ipcs -m) at the
#      end: any segment left fails the check.
#
# Every mount, the root's tmpfs too, lives in the private mount namespace,
# so it goes when the namespace does, on every way out (the PID namespace
# makes sure nothing started by the commands outlives them, and the trap
# kills the namespace when this script is stopped); the trap then removes
# the scratch directory.
#
# Exit status 0 only if both commands succeed, the test output has a busted
# summary with 0 failures and 0 errors, and no segment is left.  The busted
# summary is printed last, as "fresh-check: busted: N successes / ...", for
# .ci/run.
#
# Knobs: FRESH_CACHE, FRESH_WORK (where the scratch root goes, default
# /var/tmp), FRESH_MAX_AGE_DAYS (default 14), FRESH_INSTALL_TIMEOUT and
# FRESH_TEST_TIMEOUT (seconds, default 600 each), FRESH_KEEP=1 (the root on
# disk instead of a tmpfs, left in place for a look after a failure).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd -P)
T0=$(date +%s)
CACHE=${FRESH_CACHE:-/var/cache/sysvshm-fresh}
WORKBASE=${FRESH_WORK:-/var/tmp}
MAX_AGE_DAYS=${FRESH_MAX_AGE_DAYS:-14}
T_INSTALL=${FRESH_INSTALL_TIMEOUT:-600}
T_TEST=${FRESH_TEST_TIMEOUT:-600}
SUITE=bookworm
VARIANT=minbase
INCLUDE=sudo
CHECKOUT=/usr/local/src/sysvshm
PATH_IN_ROOT=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { printf 'fresh-check: %s\n' "$*"; }
die() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mounts)"
for c in debootstrap unshare chroot git tar sha256sum flock ipcs timeout; do
  command -v "$c" >/dev/null || die "'$c' not found"
done

# ---- the README's commands -----------------------------------------------------

# readme_block NAME: the text of the code block after <!-- fresh-check:NAME -->
# (indented or fenced); fails unless the marker occurs once and the block is
# one non-empty line.
readme_block() {
  awk -v mark="<!-- fresh-check:$1 -->" '
    $0 == mark { marks++; state = "before"; next }
    state == "before" && /^[ \t]*$/ { next }
    state == "before" && /^```/ { state = "fenced"; next }
    state == "before" && /^    / { state = "indented" }
    state == "before" { state = ""; next }
    state == "fenced" && /^```/ { state = ""; next }
    state == "fenced" { print; lines++; next }
    state == "indented" && /^    / { print substr($0, 5); lines++; next }
    state == "indented" { state = "" }
    END { if (marks != 1 || lines != 1) exit 1 }' "$SRC/README.md"
}

CMD_INSTALL=$(readme_block install) ||
  die "README.md: no single one-line code block after <!-- fresh-check:install -->"
CMD_TEST=$(readme_block test) ||
  die "README.md: no single one-line code block after <!-- fresh-check:test -->"
if [ -z "$CMD_INSTALL" ] || [ -z "$CMD_TEST" ]; then die "README.md: an empty command"; fi

# ---- the cached root --------------------------------------------------------------

# The first Debian mirror this machine's apt sources give for $SUITE.
host_mirror() {
  local f m=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m=$(awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
      {
        types = uris = suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Types:/) types = " " substr($i, 7) " "
          else if ($i ~ /^URIs:/) uris = substr($i, 6)
          else if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
          else if ($i ~ /^Enabled:/) enabled = substr($i, 9)
        }
        gsub(/[ \t]+/, " ", types); gsub(/[ \t]+/, " ", suites)
        if (types ~ / deb / && suites ~ (" " suite " ") && enabled !~ /no/) {
          split(uris, u, " "); for (k in u) if (u[k] != "") { print u[k]; exit }
        }
      }' "$f")
    [ -n "$m" ] && break
  done
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(sed -E 's/\[[^]]*\]//' /etc/apt/sources.list |
      awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')
  fi
  printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

MIRROR=$(host_mirror)
TARBALL=$CACHE/root.tar.gz
KEY="suite=$SUITE variant=$VARIANT include=$INCLUDE debs=removed mirror=$MIRROR arch=$(dpkg --print-architecture) debootstrap=$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo unknown)"

# cache_ok [any-age]: whether the cached root is there, intact and built for
# this setup (and, unless any-age, young enough).
cache_ok() {
  [ -f "$TARBALL" ] && [ -f "$CACHE/root.key" ] && [ -f "$CACHE/root.sha256" ] || return 1
  [ "$(cat "$CACHE/root.key")" = "$KEY" ] || { say "cached root was built for another setup"; return 1; }
  if [ "${1:-}" != any-age ] && [ -n "$(find "$TARBALL" -mtime +"$MAX_AGE_DAYS")" ]; then
    say "cached root is older than $MAX_AGE_DAYS days"
    return 1
  fi
  (cd "$CACHE" && sha256sum --quiet -c root.sha256 >/dev/null 2>&1) ||
    { say "cached root fails its checksum"; return 1; }
}

build_cache() {
  local tmp
  say "building a $SUITE $VARIANT root from $MIRROR (debootstrap)"
  rm -rf "$CACHE"/build.*
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  # debootstrap mounts /proc and /sys in the target: in a mount namespace
  # of its own, so that a failure cannot leave them mounted.
  if ! unshare --mount --propagation private --fork \
      debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$tmp/root" "$MIRROR" \
      >"$tmp/log" 2>&1 </dev/null; then
    tail -n 30 "$tmp/log"
    rm -rf "$tmp"
    say "debootstrap failed"
    return 1
  fi
  # as `apt-get clean` would: the packages debootstrap installed from
  rm -f "$tmp/root/var/cache/apt/archives/"*.deb
  tar -C "$tmp/root" --numeric-owner -czf "$tmp/root.tar.gz" .
  (cd "$tmp" && sha256sum root.tar.gz >root.sha256)
  printf '%s\n' "$KEY" >"$tmp/root.key"
  mv -f "$tmp/root.tar.gz" "$TARBALL"
  mv -f "$tmp/root.sha256" "$CACHE/root.sha256"
  mv -f "$tmp/root.key" "$CACHE/root.key"
  rm -rf "$tmp"
}

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"

WORK=$(mktemp -d "$WORKBASE/sysvshm-fresh.XXXXXX")
ROOT=$WORK/root
NS_PID=""

cleanup() {
  local st=$?
  trap - EXIT INT TERM HUP
  if [ -n "$NS_PID" ] && kill -0 "$NS_PID" 2>/dev/null; then
    kill -KILL "$NS_PID" 2>/dev/null || true
    wait "$NS_PID" 2>/dev/null || true
  fi
  # The mounts are in the namespace, which is gone; never remove a tree
  # with something still mounted in it all the same.
  if findmnt -rn -o TARGET | grep -q "^$WORK/"; then
    say "mounts left under $WORK: not removing it"
    findmnt -rn -o TARGET | grep "^$WORK/" || true
    st=1
  elif [ "${FRESH_KEEP:-0}" = 1 ]; then
    say "scratch root kept: $ROOT"
  else
    rm -rf "$WORK"
  fi
  exit "$st"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# take_root [rebuild]: the cached root (built first when missing, stale or
# asked to) as $WORK/root.tar.gz, a link or copy that a rebuild replacing
# the cache cannot change.
take_root() {
  flock 9 # one builder at a time; the others wait for it
  if [ "${1:-}" != rebuild ] && cache_ok; then
    say "cached root: $TARBALL ($(date -r "$TARBALL" '+%F %T'))"
  elif ! build_cache; then
    # an old root is better than none
    if [ "${1:-}" = rebuild ] || ! cache_ok any-age; then die "no root to run the commands in"; fi
    say "using the old cached root of $(date -r "$TARBALL" '+%F %T')"
  fi
  rm -f "$WORK/root.tar.gz"
  ln "$TARBALL" "$WORK/root.tar.gz" 2>/dev/null || cp "$TARBALL" "$WORK/root.tar.gz"
  flock -u 9
}

rev=$(git -C "$SRC" rev-parse HEAD)
if [ -n "$(git -C "$SRC" status --porcelain --untracked-files=no)" ]; then
  say "note: $SRC has uncommitted changes; the check uses the commit $rev"
fi

# ---- in the namespaces ------------------------------------------------------------------

# prepare_root: in the namespace, $ROOT empty (a tmpfs of the namespace's
# own unless FRESH_KEEP=1): the cached root unpacked, with this machine's
# resolver and apt sources (and Acquire settings: proxy, validity checks) as
# a fresh install on this network would have them, and a clean clone of the
# commit $rev in $CHECKOUT.  Status 3 if the root does not unpack.
prepare_root() {
  if ! tar -C "$ROOT" --numeric-owner -xzf "$WORK/root.tar.gz" ||
    ! grep -q '^12\.' "$ROOT/etc/debian_version" || [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    return 3
  fi
  cat /etc/resolv.conf >"$ROOT/etc/resolv.conf"
  rm -f "$ROOT/etc/apt/sources.list"
  if [ -f /etc/apt/sources.list ]; then cp /etc/apt/sources.list "$ROOT/etc/apt/"; fi
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -f "$f" ]; then cp "$f" "$ROOT/etc/apt/sources.list.d/"; fi
  done
  for f in /etc/apt/apt.conf.d/*; do
    if [ -f "$f" ] && grep -q 'Acquire::' "$f"; then cp "$f" "$ROOT/etc/apt/apt.conf.d/"; fi
  done
  printf '127.0.1.1\t%s\n' "$(uname -n)" >>"$ROOT/etc/hosts"
  mkdir -p "$ROOT$(dirname "$CHECKOUT")"
  git clone -q --no-hardlinks "$SRC" "$ROOT$CHECKOUT" &&
    git -C "$ROOT$CHECKOUT" checkout -q --detach "$rev" || return 1
  echo "fresh-check: root ready after $(($(date +%s) - T0)) s; checkout $CHECKOUT at $(git -C "$SRC" log -1 --format='%h %s' "$rev")"
}
export -f prepare_root
export ROOT WORK SRC CHECKOUT rev T0
if [ "${FRESH_KEEP:-0}" = 1 ]; then export FRESH_TMPFS=0; else export FRESH_TMPFS=1; fi

# Runs as PID 1 of new PID, mount and IPC namespaces: $1/$2 the install/test
# commands, $3/$4 their timeouts.  Writes $WORK/test.out, test.status, ipcs.
# shellcheck disable=SC2016
inner='
set -u
R=$ROOT DIR=$CHECKOUT INSTALL=$1 TEST=$2 TI=$3 TT=$4 OUT=$WORK
umount_all() {
  for m in "$R/dev/shm" "$R/dev/pts" "$R/dev" "$R/proc" "$R"; do
    if mountpoint -q "$m"; then umount -l "$m"; fi
  done
}
trap umount_all EXIT
if [ "$FRESH_TMPFS" = 1 ]; then
  mount -t tmpfs -o mode=755,size=8g fresh-root "$R" || exit 1
fi
prepare_root || exit
set -e
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=755,nosuid,size=16m dev "$R/dev"
mknod -m 666 "$R/dev/null" c 1 3
mknod -m 666 "$R/dev/zero" c 1 5
mknod -m 666 "$R/dev/full" c 1 7
mknod -m 666 "$R/dev/random" c 1 8
mknod -m 666 "$R/dev/urandom" c 1 9
mknod -m 666 "$R/dev/tty" c 5 0
mkdir -m 755 "$R/dev/pts"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mkdir -m 1777 "$R/dev/shm"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
set +e

# As root logging in on a fresh machine: a clean environment, in the checkout.
run() { # run SECONDS COMMAND
  timeout -k 10 "$1" chroot "$R" /usr/bin/env -i -C "$DIR" HOME=/root USER=root \
    LOGNAME=root SHELL=/bin/bash PATH='"$PATH_IN_ROOT"' /bin/bash -c "$2" </dev/null
}

echo "fresh-check: \$ $INSTALL"
t0=$(date +%s)
run "$TI" "$INSTALL"
st=$?
echo "fresh-check: install command: exit $st, $(( $(date +%s) - t0 )) s"
if [ "$st" -eq 0 ]; then
  echo "fresh-check: \$ $TEST"
  t0=$(date +%s)
  run "$TT" "$TEST" 2>&1 | tee "$OUT/test.out"
  st=${PIPESTATUS[0]}
  echo "fresh-check: test command: exit $st, $(( $(date +%s) - t0 )) s"
  echo "$st" >"$OUT/test.status"
fi
# The segments left in this IPC namespace (it started with none).
ipcs -m >"$OUT/ipcs" 2>&1 || echo "ipcs failed" >>"$OUT/ipcs"
exit "$st"
'

take_root
for attempt in 1 2; do
  rm -rf "$ROOT"
  mkdir "$ROOT"
  # The namespaces, in the background so that the trap can end them.
  unshare --ipc --mount --pid --fork --kill-child --propagation private \
    bash -c "$inner" fresh-check "$CMD_INSTALL" "$CMD_TEST" "$T_INSTALL" "$T_TEST" &
  NS_PID=$!
  st=0
  wait "$NS_PID" || st=$?
  NS_PID=""
  if [ "$st" -eq 3 ] && [ ! -f "$WORK/ipcs" ] && [ "$attempt" = 1 ]; then
    say "the cached root does not unpack into a Debian 12 root: building it again"
    take_root rebuild
    continue
  fi
  break
done

# ---- the verdict ---------------------------------------------------------------------------

bad=""
[ "$st" -eq 0 ] || bad="$bad exit status $st;"
if [ -f "$WORK/test.status" ]; then
  summary=$(grep -Eo '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' \
    "$WORK/test.out" | tail -n 1 || true)
  if [ -z "$summary" ]; then
    bad="$bad no busted summary;"
  elif ! printf '%s\n' "$summary" | grep -q ' 0 failures / 0 errors'; then
    bad="$bad tests failed;"
  fi
else
  bad="$bad the install command failed, tests not run;"
  summary=""
fi
left=$(awk '$2 ~ /^[0-9]+$/' "$WORK/ipcs" 2>/dev/null | wc -l)
if ! grep -q 'Shared Memory Segments' "$WORK/ipcs" 2>/dev/null; then
  bad="$bad no segment list (ipcs -m);"
elif [ "$left" -gt 0 ]; then
  bad="$bad $left System V segment(s) left:"
  cat "$WORK/ipcs"
fi

[ -z "$summary" ] || say "busted: $summary"
say "segments left: $left"
[ -z "$bad" ] || die "${bad%;}"
say "ok: the README's two commands pass on a fresh Debian 12 root ($(($(date +%s) - T0)) s)"
