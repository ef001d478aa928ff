#!/bin/sh
# Instructions per operation, counted by callgrind (repeatable on a noisy
# machine, unlike times), for the loop bodies of the benchmark: sysvshm's
# methods next to the plain-Lua operations the targets compare them with.
#
#   sh bench/profile.sh                 every operation
#   sh bench/profile.sh read8 sub8      some (see bench/lua/profile.lua)
#   DETAIL=1 sh bench/profile.sh read8  plus the functions that cost most
#   SYSCALLS=1 sh bench/profile.sh      plus system calls per W5 cycle (strace)
#
# Runs the loops under plua (bench/c/plua.c: the same Lua 5.4 from Debian's
# liblua5.4.a, with its symbols) so that the VM's functions have names.
# Needs valgrind (and strace for SYSCALLS=1); builds into a temporary
# directory.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
CC=${CC:-cc}
N=${N:-100000}
LUA_INCDIR=${LUA_INCDIR:-/usr/include/lua5.4}
LUA_LIB=${LUA_LIB:-/usr/lib/x86_64-linux-gnu/liblua5.4.a}

# (tools/intree.lua says where it is)
export LUA_PATH_5_4="${LUA_PATH_5_4:-$(lua5.4 "$root/tools/intree.lua" "$root" path);;}"
export LUA_CPATH_5_4="${LUA_CPATH_5_4:-$(lua5.4 "$root/tools/intree.lua" "$root" cpath);;}"

command -v valgrind >/dev/null || { echo "profile: needs valgrind" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sysvshm-profile.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$CC" -O2 -g -I"$LUA_INCDIR" -Wl,-E -o "$tmp/plua" "$here/c/plua.c" "$LUA_LIB" -lm -ldl

ops=${*:-loop read8 read8_local sub8 write8 byte sbyte setbyte unpack sunpack pack spack \
atomic_add atomic_load atomic_store lock atomic_add2 cycle w6writer w6reader channel chanpack msgbuild \
dget dset dincr dmixed dsub}

# total instructions of one run
irs() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1.$2" \
    "$tmp/plua" "$here/lua/profile.lua" "$1" "$2" >/dev/null 2>&1
  sed -n 's/^summary: //p; s/^totals: //p' "$tmp/cg.$1.$2" | head -n 1 | cut -d' ' -f1
}

printf '%-14s %10s\n' operation "Ir/op"
for op in $ops; do
  n=$N
  [ "$op" = cycle ] && n=$((N / 100))
  base=$(irs "$op" 0)
  full=$(irs "$op" "$n")
  printf '%-14s %10.1f\n' "$op" "$(echo "($full - $base) / $n" | bc -l)"
  if [ "${DETAIL:-}" = 1 ]; then
    # per function: (Ir with n - Ir with 0) / n, the 12 largest
    for k in 0 "$n"; do
      callgrind_annotate --auto=no --threshold=100 "$tmp/cg.$op.$k" 2>/dev/null |
        sed -n 's/^ *\([0-9,][0-9,]*\) ([^)]*)  *\([^ ]*\).*/\1 \2/p' |
        grep " [^ ]*:[^ ]*$" | sed "s/,//g; s/ [^ ]*:/ /" >"$tmp/fn.$k"
    done
    awk -v n="$n" 'FNR == NR {base[$2] += $1; next} {full[$2] += $1}
      END {for (f in full) {d = (full[f] - base[f]) / n; if (d >= 1) printf "    %8.1f  %s\n", d, f}}' \
      "$tmp/fn.0" "$tmp/fn.$n" | sort -rn | head -n "${TOP:-12}"
  fi
done

if [ "${SYSCALLS:-}" = 1 ] && command -v strace >/dev/null; then
  echo
  echo "system calls per W5 cycle (strace -c, 1000 cycles):"
  strace -f -c -o "$tmp/strace" "$tmp/plua" "$here/lua/profile.lua" cycle 1000 >/dev/null 2>&1
  awk '$NF ~ /^(shmget|shmat|shmdt|shmctl|brk|mmap|munmap)$/ {printf "    %-8s %6.2f\n", $NF, $4 / 1000}' "$tmp/strace"
fi
