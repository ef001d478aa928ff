#!/bin/sh
# fuzz/run.sh: run libFuzzer targets for a bounded time (`make fuzz`, and
# the fuzz gate of tools/check.sh).
#
#   sh fuzz/run.sh [TARGET...]      default: pack channel dict
#
# Each target is a binary in FUZZ_BIN (built by `make fuzz-build`) that
# runs fuzz/<target>.lua (see fuzz/driver.c).  It starts from the seed
# corpus fuzz/corpus/<target>/ (read only: new inputs go to the scratch
# directory) with the dictionary fuzz/<target>.dict if there is one, and
# runs for FUZZ_SECONDS.  A crash, a sanitizer report, an input slower than
# FUZZ_INPUT_TIMEOUT seconds (a hang), or running out of memory fails the
# run; libFuzzer writes the input into the scratch directory, and the
# message says how to replay it:  build/fuzz/<target> <file>
# Leaks are looked for once, at exit (the driver closes its lua_State
# then), not after each input: the Lua heap grows between collections.
#
# Knobs (environment):
#   FUZZ_BIN            where the binaries are (default build/fuzz)
#   FUZZ_SECONDS        seconds each target runs (default 45)
#   FUZZ_INPUT_TIMEOUT  seconds one input may take (default 10)
#   FUZZ_WORK           the scratch directory (default: a new one under
#                       TMPDIR, removed when every target passes)
#   FUZZ_ARGS           more libFuzzer flags (e.g. -jobs=2, -seed=1)
set -u

cd "$(dirname "$0")/.." || exit 2
FUZZ_BIN=${FUZZ_BIN:-build/fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-45}
FUZZ_INPUT_TIMEOUT=${FUZZ_INPUT_TIMEOUT:-10}
FUZZ_ARGS=${FUZZ_ARGS:-}
targets=${*:-pack channel dict}

if [ -n "${FUZZ_WORK:-}" ]; then
  work=$FUZZ_WORK
  keep=1
  mkdir -p "$work" || exit 2
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/sysvshm-fuzz.XXXXXX") || exit 2
  keep=0
fi

# Segments of other processes never meet ours (each target makes one
# IPC_PRIVATE segment and removes it as soon as it is attached).
if unshare --ipc true >/dev/null 2>&1; then
  IPCNS="unshare --ipc"
else
  IPCNS=""
fi

failed=0
for t in $targets; do
  bin=$FUZZ_BIN/$t
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin not built (make fuzz-build)"
    failed=$((failed + 1))
    continue
  fi
  dir=$work/$t
  rm -rf "$dir"
  mkdir -p "$dir/corpus"
  dict=""
  [ -f "fuzz/$t.dict" ] && dict="-dict=fuzz/$t.dict"
  echo "fuzz: $t for ${FUZZ_SECONDS}s (scratch: $dir)"
  # libFuzzer stops itself after FUZZ_SECONDS; timeout(1) is the backstop
  # shellcheck disable=SC2086
  timeout -k 10 $((FUZZ_SECONDS + 4 * FUZZ_INPUT_TIMEOUT + 60)) $IPCNS \
    "$bin" -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_INPUT_TIMEOUT" \
    -rss_limit_mb=2048 -max_len=4096 -detect_leaks=0 -print_final_stats=1 \
    -artifact_prefix="$dir/" $dict $FUZZ_ARGS \
    "$dir/corpus" "fuzz/corpus/$t" >"$dir/log" 2>&1
  st=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$dir/log" | tail -n 1)
  found=$(find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'oom-*' -o -name 'slow-unit-*' \) | sort)
  if [ "$st" -ne 0 ] || [ -n "$found" ]; then
    failed=$((failed + 1))
    echo "fuzz: $t FAILED (exit $st; ${runs:-?} inputs; $cov)"
    grep -E -A 40 'ERROR|finding|ALARM|out-of-memory|Assertion' "$dir/log" | head -n 60
    for f in $found; do
      echo "fuzz: $t: input saved as $f; replay: $bin $f"
    done
    [ -n "$found" ] || tail -n 30 "$dir/log"
  else
    echo "fuzz: $t ok (${runs:-?} inputs in ${FUZZ_SECONDS}s; $cov)"
  fi
done

if [ "$failed" -gt 0 ]; then
  echo "fuzz: $failed target(s) failed; logs and inputs in $work"
  exit 1
fi
[ "$keep" = 1 ] || rm -rf "$work"
exit 0
