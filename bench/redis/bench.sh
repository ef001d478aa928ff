#!/bin/sh
# The Redis peer of W9 (../../shared/BENCH.md): redis-benchmark against the
# redis-server that run.sh started on a private unix socket (no TCP port).
#
#   sh bench/redis/bench.sh SOCKET [N1 [N50]]
#
# SET/GET/INCR with 64-byte values on 1000 random keys ("key:" and 12
# digits: 16 bytes, as the other rows' keys), one client and then 50, no
# pipelining. Prints the rows in bench.lua's format (tab-separated).
set -eu
sock=$1
n1=${2:-20000}
n50=${3:-100000}

for c in 1 50; do
  n=$n1
  [ "$c" = 1 ] || n=$n50
  redis-benchmark -s "$sock" -t set,get,incr -n "$n" -c "$c" -P 1 -d 64 -r 1000 --csv >"${TMPDIR:-/tmp}/redis-bench.$$" 2>&1 ||
    { tail -n 1 "${TMPDIR:-/tmp}/redis-bench.$$" >&2; rm -f "${TMPDIR:-/tmp}/redis-bench.$$"; exit 1; }
  # "SET","45045.04",... : requests per second of each test
  awk -F'"' -v c="$c" '
    $2 == "SET" || $2 == "GET" || $2 == "INCR" {
      w = $2 == "SET" ? "W9 set" : $2 == "GET" ? "W9 get" : "W9 incr"
      printf "R\t%s\t%s, %d client%s (redis-benchmark, unix socket)\tpeer\t%.6g\tM op/s\t%.6g\n",
        w, $2, c, c == 1 ? "" : "s", $4 / 1e6, 1e9 / $4
      seen++
    }
    END { exit seen == 3 ? 0 : 1 }' "${TMPDIR:-/tmp}/redis-bench.$$" ||
    { echo "redis-benchmark printed no figures" >&2; rm -f "${TMPDIR:-/tmp}/redis-bench.$$"; exit 1; }
  rm -f "${TMPDIR:-/tmp}/redis-bench.$$"
done
