#!/bin/sh
# make bench: the workloads of BENCH.md (W0..W9) for sysvshm, plain Lua, C
# and the peers (Python's sysv_ipc, Perl's IPC::SysV; for W9, the shared
# dictionary: nginx's ngx.shared.DICT, PHP's APCu, Redis), and the mutex's
# lock + unlock (lock: uncontended; lock2p: two processes) against C, in
# interleaved rounds; then one table of medians with ratios, and the targets.
#
#   sh bench/run.sh              (or: make bench)
#   ROUNDS=3 sh bench/run.sh     fewer rounds (default 5)
#   ONLY="W1 W6" sh bench/run.sh only these workloads
#   PROGS="sysvshm c" sh bench/run.sh  only these implementations (sysvshm
#                                  plain c py pl; default: all)
#   SAVE=/tmp/b sh bench/run.sh  also keep the raw rows (/tmp/b.rows, /tmp/b.notes);
#                                  lua5.4 bench/lua/report.lua /tmp/b.rows /tmp/b.notes 5
#                                  prints the table again
#
# Installs nothing: a peer that is missing is skipped with a note (Debian:
# apt-get install python3-sysv-ipc; Perl's IPC::SysV comes with perl; for
# W9: nginx-light libnginx-mod-http-lua lua-resty-core curl, php8.2-cli
# php-apcu, redis-server redis-tools).
# W9 starts nginx and redis-server on unix sockets in the temporary
# directory (no TCP port) and stops them on exit, also after Ctrl-C.
# C programs are built into a temporary directory that is removed at the end.
# Every program marks its segments for removal right after attaching them;
# semaphore sets are listed in $SYSVSHM_BENCH_IPC when created, and whatever
# is still listed is removed on exit, also after Ctrl-C or a kill.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
LUA=${LUA:-lua5.4}
PYTHON=${PYTHON:-/usr/bin/python3}
PERL=${PERL:-perl}
CC=${CC:-cc}
ROUNDS=${ROUNDS:-5}
ONLY=${ONLY:-W0 W1 W2 W3 W4 W5 W6 W7 W8 W9 lock lock2p}
PROGS=${PROGS:-sysvshm plain c py pl ngx php redis}
LIMIT=${LIMIT:-60} # seconds for one program, then it is killed
LUA_INCDIR=${LUA_INCDIR:-/usr/include/lua5.4} # the lock rows' C program
LUA_LIBS=${LUA_LIBS:--llua5.4}                # links src/ with Lua

# the in-tree build, unless the caller (make bench) already said where
# (tools/intree.lua says where it is)
export LUA_PATH_5_4="${LUA_PATH_5_4:-$(lua5.4 "$root/tools/intree.lua" "$root" path);;}"
export LUA_CPATH_5_4="${LUA_CPATH_5_4:-$(lua5.4 "$root/tools/intree.lua" "$root" cpath);;}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sysvshm-bench.XXXXXX")
export SYSVSHM_BENCH_IPC="$tmp/ipc"
: >"$SYSVSHM_BENCH_IPC"
child=
ngx_pid=
redis_pid=

# stop a server this script started (TERM, then KILL after 5 s)
stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  i=0
  while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

cleanup() {
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null || true # timeout passes it to the group
    wait "$child" 2>/dev/null || true
  fi
  [ -z "$ngx_pid" ] || stop "$ngx_pid"
  [ -z "$redis_pid" ] || stop "$redis_pid"
  # semaphore sets some program created and did not get to remove
  while read -r kind id; do
    if [ "$kind" = s ] && ipcs -s | awk '{print $2}' | grep -qx "$id"; then
      ipcrm -s "$id" 2>/dev/null || true
    fi
  done <"$SYSVSHM_BENCH_IPC"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

notes="$tmp/notes"
results="$tmp/results"
: >"$notes"
: >"$results"
note() { printf '%s\n' "$*" >>"$notes"; }

# ---- what can run ------------------------------------------------------------

if ! "$LUA" -e 'require "sysvshm"' 2>/dev/null; then
  echo "bench: cannot load sysvshm with $LUA; run 'make' first (or use 'make bench')" >&2
  exit 1
fi

have_c=0
case " $PROGS " in
*" c "*) want_c=1 ;;
*) want_c=0 ;;
esac
if [ $want_c = 0 ]; then
  : # no C rows asked for
elif "$CC" -O2 -std=c11 -o "$tmp/limits" "$here/c/limits.c" 2>"$tmp/cc.err"; then
  have_c=1
else
  note "skipped: the C rows ($CC failed: $(head -n 1 "$tmp/cc.err"))"
fi

# the lock rows in C: src/lock.c with the rest of src/ (its slow path is
# the module's own), beside glibc's robust mutex
have_locks=0
# shellcheck disable=SC2086 # LUA_LIBS: flags, split on purpose
if [ $have_c = 1 ] && "$CC" -O2 -std=c99 -D_GNU_SOURCE -I"$root/src" -I"$LUA_INCDIR" \
  -o "$tmp/locks" "$here/c/locks.c" "$root"/src/*.c $LUA_LIBS -lm 2>"$tmp/cc.err"; then
  have_locks=1
elif [ $have_c = 1 ]; then
  note "skipped: the C lock rows ($CC failed: $(head -n 1 "$tmp/cc.err"))"
fi

have_py=0
if [ ! -x "$PYTHON" ]; then
  note "skipped: the Python rows ($PYTHON not found; Debian: apt-get install python3 python3-sysv-ipc)"
elif ! "$PYTHON" -c 'import sysv_ipc' 2>/dev/null; then
  note "skipped: the Python rows (no sysv_ipc for $PYTHON; Debian: apt-get install python3-sysv-ipc)"
else
  have_py=1
fi

have_pl=0
if ! command -v "$PERL" >/dev/null 2>&1; then
  note "skipped: the Perl rows ($PERL not found)"
elif ! "$PERL" -MIPC::SysV -MIPC::SharedMem -MIPC::Semaphore -MTime::HiRes -e 1 2>/dev/null; then
  note "skipped: the Perl rows (IPC::SysV, IPC::SharedMem or Time::HiRes missing)"
else
  have_pl=1
fi

# W9's peers: servers started here, once, only when W9 runs
have_ngx=0 have_php=0 have_redis=0
NGX_MODULES=${NGX_MODULES:-/usr/lib/nginx/modules}
PHP=${PHP:-php}
case " $ONLY " in
*" W9 "*)
  if ! command -v nginx >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    note "skipped: the ngx.shared.DICT rows (nginx or curl not found; Debian: apt-get install nginx-light libnginx-mod-http-lua lua-resty-core curl)"
  elif [ ! -f "$NGX_MODULES/ngx_http_lua_module.so" ]; then
    note "skipped: the ngx.shared.DICT rows (no $NGX_MODULES/ngx_http_lua_module.so; Debian: apt-get install libnginx-mod-http-lua lua-resty-core)"
  else
    # a private nginx: prefix, pid, logs, temp paths and socket in $tmp,
    # one worker, the W9 loop run inside one request (bench/ngx/bench.lua)
    mkdir "$tmp/ngx"
    cat >"$tmp/ngx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
pid "$tmp/ngx/nginx.pid";
error_log "$tmp/ngx/error.log" warn;
load_module "$NGX_MODULES/ndk_http_module.so";
load_module "$NGX_MODULES/ngx_http_lua_module.so";
events { worker_connections 16; }
http {
  access_log off;
  client_body_temp_path "$tmp/ngx/body";
  proxy_temp_path "$tmp/ngx/proxy";
  fastcgi_temp_path "$tmp/ngx/fastcgi";
  uwsgi_temp_path "$tmp/ngx/uwsgi";
  scgi_temp_path "$tmp/ngx/scgi";
  lua_shared_dict w9 4m;
  server {
    listen "unix:$tmp/ngx/ngx.sock";
    default_type text/plain;
    location = /ping { content_by_lua_block { ngx.say("ok") } }
    location = /w9 { content_by_lua_file "$here/ngx/bench.lua"; }
  }
}
EOF
    # as root the worker runs as root too (the temporary directory is private)
    [ "$(id -u)" = 0 ] || sed -i '/^user root;$/d' "$tmp/ngx/nginx.conf"
    nginx -p "$tmp/ngx/" -c "$tmp/ngx/nginx.conf" -e "$tmp/ngx/error.log" </dev/null >"$tmp/ngx/out" 2>&1 &
    ngx_pid=$!
    i=0
    until curl -sf --unix-socket "$tmp/ngx/ngx.sock" http://localhost/ping >/dev/null 2>&1; do
      i=$((i + 1))
      if [ $i -gt 50 ] || ! kill -0 "$ngx_pid" 2>/dev/null; then break; fi
      sleep 0.1
    done
    if curl -sf --unix-socket "$tmp/ngx/ngx.sock" http://localhost/ping >/dev/null 2>&1; then
      have_ngx=1
    else
      note "skipped: the ngx.shared.DICT rows (nginx did not answer: $(cat "$tmp/ngx/out" "$tmp/ngx/error.log" 2>/dev/null | grep -v '^$' | tail -n 1))"
      stop "$ngx_pid"
      ngx_pid=
    fi
  fi
  if ! command -v "$PHP" >/dev/null 2>&1; then
    note "skipped: the APCu rows ($PHP not found; Debian: apt-get install php8.2-cli php-apcu)"
  elif ! "$PHP" -d apc.enable_cli=1 -r 'exit(function_exists("apcu_enabled") && apcu_enabled() ? 0 : 1);' 2>/dev/null; then
    note "skipped: the APCu rows (no APCu in $PHP; Debian: apt-get install php-apcu)"
  else
    have_php=1
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
    note "skipped: the Redis rows (redis-server or redis-benchmark not found; Debian: apt-get install redis-server redis-tools)"
  else
    mkdir "$tmp/redis"
    redis-server --port 0 --unixsocket "$tmp/redis/redis.sock" --unixsocketperm 700 \
      --save "" --appendonly no --dir "$tmp/redis" --logfile "$tmp/redis/log" \
      --daemonize no </dev/null >/dev/null 2>&1 &
    redis_pid=$!
    i=0
    until redis-cli -s "$tmp/redis/redis.sock" ping >/dev/null 2>&1; do
      i=$((i + 1))
      if [ $i -gt 50 ] || ! kill -0 "$redis_pid" 2>/dev/null; then break; fi
      sleep 0.1
    done
    if redis-cli -s "$tmp/redis/redis.sock" ping >/dev/null 2>&1; then
      have_redis=1
    else
      note "skipped: the Redis rows (redis-server did not answer: $(tail -n 1 "$tmp/redis/log" 2>/dev/null))"
      stop "$redis_pid"
      redis_pid=
    fi
  fi
  ;;
esac

# ---- the programs, by workload -------------------------------------------------

# programs for workload $1, one "prog arg..." per line
programs() {
  wl=$1
  case $wl in
  W0) set -- plain py pl ;;
  W1 | W2 | W4 | W8) set -- sysvshm plain py pl ;;
  W3) set -- sysvshm plain c py pl ;;
  W5) set -- sysvshm c py pl ;;
  W6) set -- sysvshm c:w6atomic c:w6sem c:w6pipe py pl ;;
  W7) set -- sysvshm ;;
  lock) set -- sysvshm lk:lock ;;
  lock2p) set -- sysvshm lk:pthread2p lk:word2p ;;
  W9) set -- sysvshm plain ngx php redis ;;
  esac
  for p in "$@"; do
    kind=${p%%:*}
    [ "$kind" = lk ] && kind=c
    case " $PROGS " in
    *" $kind "*) ;;
    *) continue ;;
    esac
    case $p in
    c:*) [ $have_c = 1 ] && echo "$p" ;;
    lk:*) [ $have_locks = 1 ] && echo "$p" ;;
    c) [ $have_c = 1 ] && echo "c:$(echo "$wl" | tr W w)" ;;
    py) [ $have_py = 1 ] && echo py ;;
    pl) [ $have_pl = 1 ] && echo pl ;;
    ngx) [ $have_ngx = 1 ] && echo ngx ;;
    php) [ $have_php = 1 ] && echo php ;;
    redis) [ $have_redis = 1 ] && echo redis ;;
    *) echo "$p" ;;
    esac
  done
  return 0
}

# run program $1 on workload $2 for round $3; rows go to $results
run() {
  prog=$1 w=$2 r=$3
  case $prog in
  sysvshm | plain) set -- "$LUA" "$here/lua/bench.lua" "$prog" "$w" ;;
  c:*) set -- "$tmp/limits" "${prog#c:}" ;;
  lk:*) set -- "$tmp/locks" "${prog#lk:}" ;;
  py) set -- "$PYTHON" "$here/py/bench.py" "$w" ;;
  pl) set -- "$PERL" "$here/pl/bench.pl" "$w" ;;
  ngx) set -- curl -sS --fail --unix-socket "$tmp/ngx/ngx.sock" "http://localhost/w9" ;;
  php) set -- "$PHP" -d apc.enable_cli=1 -d apc.shm_size=64M "$here/php/bench.php" ;;
  redis) set -- sh "$here/redis/bench.sh" "$tmp/redis/redis.sock" ;;
  esac
  status=0
  timeout -k 5 "$LIMIT" "$@" >"$tmp/out" 2>"$tmp/err" &
  child=$!
  wait "$child" || status=$?
  child=
  tag=${prog%%:*}
  [ "$tag" = lk ] && tag=c
  sed "s/^/$r	$tag	/" "$tmp/out" >>"$results"
  if [ "$status" != 0 ]; then
    why="exit status $status"
    [ "$status" = 124 ] && why="killed after ${LIMIT}s"
    # the error: lua5.4's message line, or the last line of the others'
    msg=$(grep -m 1 '^lua5.4:' "$tmp/err" || tail -n 1 "$tmp/err")
    printf '%s\t%s\tX\t%s\t%s\t%s\n' "$r" "$tag" "$w" "$prog" \
      "$why: $(printf '%s' "$msg" | tr '\t' ' ')" >>"$results"
  fi
}

start=$(date +%s)
note "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1),"\
" Linux $(uname -r), load at start $(cut -d' ' -f1-3 /proc/loadavg)"
note "versions: $("$LUA" -v 2>&1 | cut -d' ' -f1-2)$(
  [ $have_py = 1 ] && printf ', Python %s sysv_ipc %s' \
    "$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')" \
    "$("$PYTHON" -c 'import sysv_ipc; print(sysv_ipc.VERSION)')")$(
  [ $have_pl = 1 ] && printf ', Perl %s IPC::SysV %s' \
    "$("$PERL" -e 'printf "%vd", $^V')" "$("$PERL" -MIPC::SysV -e 'print $IPC::SysV::VERSION')")$(
  [ $have_ngx = 1 ] && printf ', %s' "$(nginx -v 2>&1 | sed 's/^nginx version: //')")$(
  [ $have_php = 1 ] && printf ', PHP %s APCu %s' "$("$PHP" -r 'echo PHP_VERSION;')" \
    "$("$PHP" -d apc.enable_cli=1 -r 'echo phpversion("apcu");')")$(
  [ $have_redis = 1 ] && printf ', Redis %s' "$(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')")"

echo "sysvshm bench: $ROUNDS interleaved rounds of $ONLY" >&2
r=1
while [ "$r" -le "$ROUNDS" ]; do
  printf 'round %d/%d:' "$r" "$ROUNDS" >&2
  for w in $ONLY; do
    printf ' %s' "$w" >&2
    list=$(programs "$w")
    # rotate the order by the round, so that no program always goes first
    n=$(printf '%s\n' "$list" | grep -c .) || true
    if [ "$n" -gt 0 ]; then
      k=$(((r - 1) % n))
      order=$( (printf '%s\n' "$list" | tail -n +$((k + 1)); printf '%s\n' "$list" | head -n "$k") | grep .)
      for prog in $order; do
        run "$prog" "$w" "$r"
      done
    fi
  done
  echo >&2
  r=$((r + 1))
done
note "run time: $(($(date +%s) - start)) s, load at end $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "${SAVE:-}" ]; then
  cp "$results" "$SAVE.rows"
  cp "$notes" "$SAVE.notes"
fi
"$LUA" "$here/lua/report.lua" "$results" "$notes" "$ROUNDS"
