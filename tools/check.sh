#!/bin/sh
# tools/check.sh: the reliability gates, run by `make check` (and CI).
#
#   sh tools/check.sh              every gate, in the order below
#   sh tools/check.sh asan lint    only the gates named
#
# Gates:
#   werror    the C core built with the Makefile's warning flags + -Werror
#   asan      the whole busted suite under AddressSanitizer + UBSan (the
#             module built with -fsanitize=address,undefined into its own
#             directory, the runtimes preloaded into every lua5.4), leak
#             detection on
#   valgrind  the whole busted suite with every lua5.4 under valgrind
#             memcheck: no invalid access, no definite leak
#   gcstress  the whole busted suite (plain -O2 build) with the garbage
#             collector running all the time in every lua5.4: no pause
#             between cycles, a step at every allocation, so that
#             finalizers run at any allocation point of any call
#   luacheck  lua/, spec/, bench/ (.luacheckrc)
#   cppcheck  src/ (warning, style, performance, portability)
#   fuzz      the libFuzzer targets of fuzz/ (make fuzz: the pack format,
#             channel and dictionary regions overwritten with fuzzed
#             bytes), each for
#             CHECK_FUZZ_SECONDS; findings are saved in a scratch
#             directory outside the tree (fuzz/run.sh)
#   (lint = luacheck + cppcheck)
#
# Each suite gate runs in a private System V IPC namespace when it can
# (unshare --ipc, as root), so that segments of other processes on the
# machine neither disturb it nor count as its leftovers; either way a
# segment the suite leaves behind fails the gate.  ASan, LSan and valgrind
# reports go to log files (children's stderr is often checked by the specs,
# and a child killed on purpose has no exit status to look at); any report
# fails the gate and is printed.  UBSan's go to stderr (see suite()).
# Children started as "lua5.4" get the gate's wrapper (first on PATH), and
# find the gate's build through SYSVSHM_BUILD_DIR (spec/helpers.lua) and
# LUA_CPATH_5_4; SYSVSHM_NO_WRAP=1 makes a wrapper run lua5.4 as it is (for
# children meant to crash).
#
# Debian 12 packages it needs, besides those of `make test` and CI (make
# gcc libc6-dev pkg-config lua5.4 liblua5.4-dev lua-busted luarocks):
#   valgrind cppcheck lua-check util-linux coreutils clang libclang-rt-14-dev
# (gcc brings libasan8 and libubsan1; util-linux: unshare, setpriv, ipcs;
# coreutils: timeout.)
#
# Knobs (environment):
#   CHECK_DIR             where builds and logs go (default build/check)
#   CHECK_TIMEOUT         seconds one suite gate may take (default 900)
#   CHECK_VALGRIND_SCALE  SYSVSHM_STRESS_SCALE for the valgrind run
#                         (default 0.02: the stress spec's message and
#                         operation counts shrink under valgrind's ~50x)
#   CHECK_VALGRIND_SKIP   tests left out under valgrind (busted
#                         --filter-out patterns, space-separated; default:
#                         three tests that valgrind itself breaks, below)
#   CHECK_VALGRIND_CHILDREN=1  run the tests' child processes under
#                         valgrind too (default: only the test process)
#   CHECK_VALGRIND_EXCLUDE_TAGS  busted tags left out under valgrind
#                         (default: stress, the multi-process stress tests)
#   CHECK_SAN_EXTRA       more flags for the sanitizer build (e.g.
#                         -fno-sanitize=nonnull-attribute to look past a
#                         known finding)
#   CHECK_GC_STRESS       the collector settings of the gcstress gate,
#                         Lua code run first in every lua5.4 (default:
#                         collectgarbage("incremental", 1, 100, 1))
#   CHECK_GC_STRESS_SCALE SYSVSHM_STRESS_SCALE for the gcstress run
#                         (default 0.25: the bad-input sweep (spec/
#                         support/sweep.lua, run by the module specs),
#                         the stress and channel specs take most of its
#                         time)
#   CHECK_FUZZ_SECONDS    seconds each fuzz target runs (default 20)
#   CHECK_KEEP_GOING=0    stop at the first failing gate
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd -P)
# The in-tree build's directory, BUILD (tools/intree.mk, read in a subshell
# so that none of its names leak into this script).
INTREE_BUILD=$(. "$ROOT/tools/intree.mk" && echo "$BUILD")
CHECK_DIR=${CHECK_DIR:-$ROOT/$INTREE_BUILD/check}
case $CHECK_DIR in /*) ;; *) CHECK_DIR=$ROOT/$CHECK_DIR ;; esac
CHECK_TIMEOUT=${CHECK_TIMEOUT:-900}
CHECK_VALGRIND_SCALE=${CHECK_VALGRIND_SCALE:-0.02}
CHECK_KEEP_GOING=${CHECK_KEEP_GOING:-1}
# Tests left out under valgrind (busted --filter-out patterns, no spaces):
# demo_spec's "reader stops quietly on SIGINT" gives the reader 0.3 s
# before signalling it, less than a lua5.4 under valgrind needs to start;
# cli_spec's "stat shows every field" and "ls shows a segment as ipcs -m
# does" expect a dtime of 0 and the lpid of the test, but under valgrind
# popen forks for real, so the child inherits the attachments and detaches
# them at exec; cli_spec's "new removes the segment it created when it
# cannot print the id" closes stdout, which valgrind then takes for its
# log; interrupt_spec's Ctrl-C tests and channel_spec's wake-up promptness
# test measure time (seconds under valgrind), not memory; demo_spec's
# "writer/reader runs end to end" starts the reader on a timer that a
# writer under valgrind can miss.
# The multi-process stress tests (tagged #stress: many children, each ~50x
# slower under valgrind) run under ASan and in make test, not valgrind.
CHECK_VALGRIND_EXCLUDE_TAGS=${CHECK_VALGRIND_EXCLUDE_TAGS-stress}
CHECK_VALGRIND_CHILDREN=${CHECK_VALGRIND_CHILDREN:-0}
CHECK_VALGRIND_SKIP=${CHECK_VALGRIND_SKIP-reader.stops.quietly.on.SIGINT shows.every.field,.the.numbers.readable.too shows.a.segment.as.ipcs removes.the.segment.it.created.when.it.cannot.print Ctrl.C.interrupts wakes.a.sender.sleeping.on.a.full.channel writer/reader.runs.end.to.end}
SUITE_ARGS="--exclude-tags=manual" # the #stress tests too (.busted leaves them out)
CC=${CC:-cc}
MAKE=${MAKE:-make}
BUSTED=${BUSTED:-busted}
LUA54=$(command -v lua5.4 || true)

# The Makefile's idea of where lua.h is (for luarocks, see suite()).
LUA_INCDIR=$($MAKE --no-print-directory -s -f Makefile -f - print-incdir <<'EOF' 2>/dev/null
print-incdir:
	@echo $(LUA_INCDIR)
EOF
)
[ -n "$LUA_INCDIR" ] || LUA_INCDIR=/usr/include/lua5.4

SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer ${CHECK_SAN_EXTRA:-}"

summary=""
failed=0
t_start=$(date +%s)

note() { printf '%s\n' "$*"; }

# record NAME STATUS DETAIL
record() {
  summary="$summary$(printf '  %-9s %-5s %s' "$1" "$2" "$3")
"
  if [ "$2" = FAIL ]; then
    failed=$((failed + 1))
    if [ "$CHECK_KEEP_GOING" = 0 ]; then finish; fi
  fi
}

finish() {
  t_end=$(date +%s)
  note ""
  note "==== make check: $((t_end - t_start)) s"
  printf '%s' "$summary"
  if [ "$failed" -gt 0 ]; then
    note "make check: $failed gate(s) FAILED"
    exit 1
  fi
  note "make check: all gates passed"
  exit 0
}

banner() { note ""; note "==== check: $1"; }

need() { # need CMD PACKAGE: 0 if CMD exists, else a message and 1
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  note "check: '$1' not found (Debian package: $2)"
  return 1
}

# ---- building -----------------------------------------------------------------

# build DIR CFLAGS...: the module with the Makefile's warning flags into
# DIR/sysvshm/core.so (the Makefile's BUILD and CFLAGS overridden).
build() {
  dir=$1
  shift
  mkdir -p "$dir"
  $MAKE --no-print-directory -B BUILD="$dir" CC="$CC" CFLAGS="$*" \
    "$dir/sysvshm/core.so"
}

# ---- running the suite ----------------------------------------------------------

# The segments `ipcs -m` lists, one id a line.
segments() { ipcs -m | awk '$2 ~ /^[0-9]+$/ {print $2}' | sort; }

# Whether this machine lets us run a command in a private IPC namespace.
if unshare --ipc true >/dev/null 2>&1; then
  IPCNS="unshare --ipc"
else
  IPCNS=""
fi

# suite NAME WRAPPER BUILD LOGDIR [VAR=value...]: run the busted suite with
# lua5.4 replaced by WRAPPER (first on PATH, so that children started as
# "lua5.4" get it too) and the module from BUILD; fails on a busted
# failure, on anything in LOGDIR, on leftover segments.
suite() {
  name=$1 wrapper=$2 bdir=$3 logdir=$4
  shift 4
  out="$CHECK_DIR/$name.out"
  before="$CHECK_DIR/$name.before"
  after="$CHECK_DIR/$name.after"
  rm -f "$out" "$before" "$after"
  t0=$(date +%s)

  # The script the namespace runs: segments before, the suite, segments after.
  # shellcheck disable=SC2016
  script='
    ipcs -m | awk '"'"'$2 ~ /^[0-9]+$/ {print $2}'"'"' | sort >"$CHECK_BEFORE"
    "$@"
    st=$?
    ipcs -m | awk '"'"'$2 ~ /^[0-9]+$/ {print $2}'"'"' | sort >"$CHECK_AFTER"
    comm -13 "$CHECK_BEFORE" "$CHECK_AFTER" >"$CHECK_AFTER.new"
    if [ -s "$CHECK_AFTER.new" ]; then ipcs -m >"$CHECK_AFTER.ipcs"; fi
    # in a private namespace nothing may stay; elsewhere only our own go
    while read -r id; do ipcrm -m "$id" 2>/dev/null; done <"$CHECK_AFTER.new"
    exit $st'

  # luarocks (00-packaging_spec) looks for lua.h next to the first lua5.4
  # on PATH, which is now the wrapper: tell it where the headers are.
  cat >"$CHECK_DIR/luarocks-config.lua" <<EOF
variables = { LUA_INCDIR = "$LUA_INCDIR", LUA_BINDIR = "$(dirname "$LUA54")" }
EOF

  env PATH="$(dirname "$wrapper"):$PATH" \
    LUAROCKS_CONFIG="$CHECK_DIR/luarocks-config.lua" \
    LUA_CPATH_5_4="$bdir/?.so;;" \
    LUA_PATH_5_4="$("$LUA54" "$ROOT/tools/intree.lua" "$ROOT" path);;" \
    SYSVSHM_BUILD_DIR="$bdir" \
    CHECK_BEFORE="$before" CHECK_AFTER="$after" \
    "$@" \
    timeout -k 10 "$CHECK_TIMEOUT" $IPCNS sh -c "$script" suite \
    "$BUSTED" --lua="$wrapper" --cpath="$bdir/?.so" $SUITE_ARGS >"$out" 2>&1
  st=$?
  t1=$(date +%s)
  cat "$out"

  # tools/busted_summary.sh: passed, failed, environment skips (#env), and
  # any other pending test, which fails the gate as a failed test does.
  detail=$(sh "$ROOT/tools/busted_summary.sh" -q "$out")
  verdict=$?
  detail=${detail#tests: }
  bad=""
  [ "$st" -eq 124 ] && bad="$bad timed out after ${CHECK_TIMEOUT}s;"
  [ "$st" -ne 0 ] && [ "$st" -ne 124 ] && bad="$bad busted exit $st;"
  [ "$verdict" -ne 0 ] && bad="$bad tests failed or pending;"
  sh "$ROOT/tools/busted_summary.sh" "$out" | tail -n +2

  # UBSan reports go to stderr, never to a log file: with gcc its runtime
  # is a plugin of ASan's and ignores log_path.  With -fno-sanitize-recover
  # the process dies with status 1, which the specs see; the report itself
  # shows up in busted's output (the specs quote their children's stderr).
  if grep -q 'runtime error:\|ERROR: AddressSanitizer\|ERROR: LeakSanitizer' "$out"; then
    bad="$bad sanitizer report(s) in the output;"
  fi

  # A log counts when it has more than the benign lines: valgrind's notes
  # that it ignores a flag (the sweep passes every bit to shmget).
  reports=""
  for f in $(find "$logdir" -type f -size +0 2>/dev/null | sort); do
    if grep -Ev '^==[0-9]+== *(WARNING: valgrind ignores shmget\(shmflg\) SHM_[A-Z]+)?$' "$f" | grep -q .; then
      reports="$reports $f"
    fi
  done
  if [ -n "$reports" ]; then
    n=$(printf '%s\n' $reports | wc -l)
    bad="$bad $n report(s) in $logdir;"
    for f in $reports; do
      note "---- $f"
      head -n 80 "$f"
    done
  fi

  if [ -s "$after.new" ]; then
    bad="$bad $(wc -l <"$after.new") segment(s) left behind;"
    note "---- segments left behind (removed now):"
    cat "$after.ipcs" 2>/dev/null
  fi

  if [ -n "$bad" ]; then
    record "$name" FAIL "$detail;$bad $((t1 - t0)) s"
  else
    record "$name" ok "$detail, $((t1 - t0)) s${IPCNS:+, private IPC namespace}"
  fi
}

# A fresh, world-writable (children run as nobody too) log directory.
logdir() {
  rm -rf "$1"
  mkdir -p "$1"
  chmod 1777 "$1"
}

# ---- the gates -------------------------------------------------------------------

gate_werror() {
  banner "werror: the C core with the project's warnings and -Werror"
  t0=$(date +%s)
  if build "$CHECK_DIR/werror" -O2 -g -Werror; then
    record werror ok "no warning ($(($(date +%s) - t0)) s)"
  else
    record werror FAIL "compiler warnings or errors"
  fi
}

# The gates check themselves: whether the lua5.4 of the wrapper in $1/bin
# maps $1's build and a library whose name contains $2 (the sanitizer
# runtime, valgrind's preload); prints "true true" when it maps both.  The
# other arguments are environment settings for that lua5.4.
maps_probe() {
  pbdir=$1
  plib=$2
  shift 2
  env PATH="$pbdir/bin:$PATH" LUA_CPATH_5_4="$pbdir/?.so;;" CHECK_BDIR="$pbdir" \
    CHECK_LIB="$plib" "$@" lua5.4 -e '
      require "sysvshm.core"
      local so, lib
      for l in io.lines("/proc/self/maps") do
        so = so or l:find(os.getenv("CHECK_BDIR") .. "/sysvshm/core.so", 1, true) ~= nil
        lib = lib or l:find(os.getenv("CHECK_LIB"), 1, true) ~= nil
      end
      io.write(tostring(so), " ", tostring(lib))' 2>&1
}

# wrap_lua BDIR ENV: $wrapper, BDIR/bin/lua5.4, a lua5.4 that runs with
# ENV (shell assignments, quoted) in its environment, or plain when
# SYSVSHM_NO_WRAP is set (the children a gate leaves unwrapped); the build
# is made readable by all (the specs drop to an unprivileged user).
wrap_lua() {
  wrapper="$1/bin/lua5.4"
  mkdir -p "$1/bin"
  cat >"$1/bin/lua5.4" <<EOF
#!/bin/sh
[ -z "\${SYSVSHM_NO_WRAP:-}" ] || exec "$LUA54" "\$@"
$2 exec "$LUA54" "\$@"
EOF
  chmod 755 "$1/bin/lua5.4"
  chmod -R a+rX "$1"
}

gate_asan() {
  banner "asan: the suite under AddressSanitizer + UndefinedBehaviorSanitizer"
  if [ -z "$LUA54" ]; then record asan FAIL "lua5.4 not found"; return; fi
  bdir="$CHECK_DIR/asan"
  logs="$CHECK_DIR/asan-logs"
  if ! build "$bdir" -O1 -g $SAN_FLAGS; then
    record asan FAIL "sanitizer build failed"
    return
  fi

  asan=$(readlink -f "$($CC -print-file-name=libasan.so)")
  ubsan=$(readlink -f "$($CC -print-file-name=libubsan.so)")
  if [ ! -f "$asan" ] || [ ! -f "$ubsan" ]; then
    record asan FAIL "libasan/libubsan of $CC not found (Debian: libasan8, libubsan1)"
    return
  fi

  # The runtimes must come first in the process: preload them, followed by
  # a constructor that takes LD_PRELOAD out of the environment again, so
  # that only lua5.4 processes get them, not the shells, compilers and tools
  # the specs start (gcc would report its own leaks).  (ld.so --preload
  # would do without it, but the sanitizers then symbolize lua5.4's frames
  # with the loader's symbols.)
  mkdir -p "$bdir/bin"
  if ! $CC -O2 -fPIC -shared -o "$bdir/bin/unsetenv.so" tools/preload_unsetenv.c; then
    record asan FAIL "cannot build tools/preload_unsetenv.c"
    return
  fi
  wrap_lua "$bdir" "LD_PRELOAD=\"$asan $ubsan $bdir/bin/unsetenv.so\""
  logdir "$logs"

  # Leaks are reported at every lua5.4's exit (tools/lsan.supp is where a
  # leak of the interpreter's own would go; none is needed).  UBSan, a
  # plugin of ASan's with gcc, ignores log_path: its reports go to stderr.
  asan_opts="detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:log_path=$logs/asan"
  lsan_opts="suppressions=$ROOT/tools/lsan.supp:print_suppressions=0"
  ubsan_opts="print_stacktrace=1:halt_on_error=1"

  # The gate checks itself: the sanitized build and the runtime are what a
  # lua5.4 started from the wrapper really loads.
  probe=$(maps_probe "$bdir" libasan \
    ASAN_OPTIONS="$asan_opts" LSAN_OPTIONS="$lsan_opts" UBSAN_OPTIONS="$ubsan_opts")
  if [ "$probe" != "true true" ]; then
    record asan FAIL "the wrapper does not load the sanitized build: $probe"
    return
  fi

  suite asan "$wrapper" "$bdir" "$logs" \
    ASAN_OPTIONS="$asan_opts" LSAN_OPTIONS="$lsan_opts" UBSAN_OPTIONS="$ubsan_opts"
}

gate_valgrind() {
  banner "valgrind: the suite under valgrind memcheck"
  need valgrind valgrind || { record valgrind FAIL "valgrind not installed"; return; }
  if [ -z "$LUA54" ]; then record valgrind FAIL "lua5.4 not found"; return; fi
  bdir="$CHECK_DIR/valgrind"
  logs="$CHECK_DIR/valgrind-logs"
  if ! build "$bdir" -O1 -g; then
    record valgrind FAIL "build failed"
    return
  fi

  # Children run as another user (the permission tests, as nobody) run
  # without valgrind: for a segment the caller may not read, valgrind's
  # shmat makes the call fail with EINVAL instead of the kernel's EACCES
  # (it asks IPC_STAT for the size first), so those specs would fail.
  # The children the tests start run without valgrind too, unless
  # CHECK_VALGRIND_CHILDREN=1: the test process runs every call of the
  # suite under valgrind, the children run the same code under ASan in the
  # asan gate, and a lua5.4 under valgrind takes seconds to start (with
  # children under valgrind the gate took over 9 minutes here).
  nowrap=""
  [ "$CHECK_VALGRIND_CHILDREN" = 1 ] || nowrap="SYSVSHM_NO_WRAP=1 "
  mkdir -p "$bdir/bin"
  wrapper="$bdir/bin/lua5.4"
  cat >"$wrapper" <<EOF
#!/bin/sh
[ -z "\${SYSVSHM_NO_WRAP:-}" ] || exec "$LUA54" "\$@"
[ "\$(id -u)" = "$(id -u)" ] || exec "$LUA54" "\$@"
${nowrap}exec valgrind -q --error-exitcode=1 --leak-check=full \\
  --show-leak-kinds=definite --errors-for-leak-kinds=definite \\
  --suppressions="$ROOT/tools/valgrind.supp" \\
  --log-file="$logs/vg.%p" "$LUA54" "\$@"
EOF
  chmod 755 "$wrapper"
  chmod -R a+rX "$bdir"
  logdir "$logs"

  probe=$(maps_probe "$bdir" vgpreload_memcheck)
  if [ "$probe" != "true true" ]; then
    record valgrind FAIL "the wrapper does not run the build under valgrind: $probe"
    return
  fi
  rm -f "$logs"/*

  # shellcheck disable=SC2086
  SUITE_ARGS=$(for t in $CHECK_VALGRIND_SKIP; do printf ' --filter-out=%s' "$t"; done)
  SUITE_ARGS="$SUITE_ARGS --exclude-tags=manual,$CHECK_VALGRIND_EXCLUDE_TAGS"
  suite valgrind "$wrapper" "$bdir" "$logs" \
    SYSVSHM_STRESS_SCALE="$CHECK_VALGRIND_SCALE"
  SUITE_ARGS="--exclude-tags=manual"
}

# ---- gcstress -------------------------------------------------------------------
# Every lua5.4 (busted itself and every child started as "lua5.4") runs
# $CHECK_GC_STRESS first, through LUA_INIT_5_4="@file" set by the wrapper
# (after spec/helpers.lua's `env -u LUA_INIT_5_4`, so the children get it
# too).  The default: pause 1 (stored as 0), a new cycle as soon as one
# ends; stepsize 1, a step at every allocation; stepmul 100, each step
# doing work in proportion to the bytes allocated.  A collection that runs
# a finalizer in the middle of a call is what spec/finalizer_spec.lua
# provokes on purpose; here every spec gets it by chance, and any object a
# C function uses without a reference on the Lua stack is freed early.

GC_STRESS_DEFAULT='collectgarbage("incremental", 1, 100, 1)'
CHECK_GC_STRESS=${CHECK_GC_STRESS:-$GC_STRESS_DEFAULT}
CHECK_GC_STRESS_SCALE=${CHECK_GC_STRESS_SCALE:-0.25}

gate_gcstress() {
  banner "gcstress: the suite with the collector running all the time"
  if [ -z "$LUA54" ]; then record gcstress FAIL "lua5.4 not found"; return; fi
  bdir="$CHECK_DIR/gcstress"
  logs="$CHECK_DIR/gcstress-logs"
  if ! build "$bdir" -O2 -g; then
    record gcstress FAIL "build failed"
    return
  fi

  printf '%s\n' "$CHECK_GC_STRESS" >"$bdir/gcstress.lua"
  wrap_lua "$bdir" "LUA_INIT_5_4=\"@$bdir/gcstress.lua\""
  logdir "$logs"

  # The gate checks itself: the wrapper's lua5.4 loads this build and runs
  # with another collector mode or parameters than a plain one (these calls
  # return the previous values).
  # shellcheck disable=SC2016
  probe_code='
    require "sysvshm.core"
    local so = false
    for l in io.lines("/proc/self/maps") do
      so = so or l:find(os.getenv("CHECK_BDIR") .. "/sysvshm/core.so", 1, true) ~= nil
    end
    io.write(tostring(so), " ", collectgarbage("incremental"), " ",
      collectgarbage("setpause", 200), " ", collectgarbage("setstepmul", 100))'
  probe=$(env -u LUA_INIT_5_4 -u LUA_INIT PATH="$bdir/bin:$PATH" LUA_CPATH_5_4="$bdir/?.so;;" \
    CHECK_BDIR="$bdir" lua5.4 -e "$probe_code" 2>&1)
  plain=$(env -u LUA_INIT_5_4 -u LUA_INIT LUA_CPATH_5_4="$bdir/?.so;;" \
    CHECK_BDIR="$bdir" "$LUA54" -e "$probe_code" 2>&1)
  case $probe in
  "true "*) ;;
  *) record gcstress FAIL "the wrapper does not load the build: $probe"; return ;;
  esac
  if [ "$probe" = "$plain" ]; then
    record gcstress FAIL "the wrapper's lua5.4 has the default collector settings: $probe"
    return
  fi

  suite gcstress "$wrapper" "$bdir" "$logs" \
    SYSVSHM_STRESS_SCALE="$CHECK_GC_STRESS_SCALE"
}

gate_luacheck() {
  banner "luacheck: lua/ spec/ bench/"
  need luacheck lua-check || { record luacheck FAIL "luacheck not installed"; return; }
  dirs="lua spec"
  [ -d bench ] && dirs="$dirs bench"
  [ -d fuzz ] && dirs="$dirs fuzz"
  # shellcheck disable=SC2086
  if out=$(luacheck --no-color --codes $dirs 2>&1); then
    record luacheck ok "$(printf '%s\n' "$out" | tail -n 1)"
  else
    printf '%s\n' "$out"
    record luacheck FAIL "$(printf '%s\n' "$out" | tail -n 1)"
  fi
}

gate_cppcheck() {
  banner "cppcheck: src/"
  need cppcheck cppcheck || { record cppcheck FAIL "cppcheck not installed"; return; }
  # Without Lua's headers (luaconf.h stops cppcheck with an #error); what
  # it needs to know of the Lua API is in tools/cppcheck-lua.cfg.  Left
  # out: unusedStructMember (padding and alignment-probe structs) and
  # variableScope (the sources declare at the top of a block, as Lua does).
  if out=$(cppcheck --quiet --error-exitcode=1 --inline-suppr \
      --enable=warning,style,performance,portability --std=c99 \
      --library=posix --library=tools/cppcheck-lua.cfg -D_GNU_SOURCE -I src \
      --suppress=missingIncludeSystem --suppress=missingInclude \
      --suppress=unusedStructMember --suppress=variableScope \
      --template='{file}:{line}: {severity}: {message} [{id}]' \
      src 2>&1) && [ -z "$out" ]; then
    record cppcheck ok "no finding"
  else
    printf '%s\n' "$out"
    record cppcheck FAIL "$(printf '%s\n' "$out" | grep -c ': ') finding(s)"
  fi
}

gate_fuzz() {
  banner "fuzz: libFuzzer targets (fuzz/), ${CHECK_FUZZ_SECONDS:-20} s each"
  need clang "clang libclang-rt-14-dev" || { record fuzz FAIL "clang not installed"; return; }
  t0=$(date +%s)
  if ! $MAKE --no-print-directory fuzz-build >"$CHECK_DIR/fuzz-build.out" 2>&1; then
    cat "$CHECK_DIR/fuzz-build.out"
    record fuzz FAIL "build failed (libFuzzer: Debian's libclang-rt-14-dev)"
    return
  fi
  out="$CHECK_DIR/fuzz.out"
  FUZZ_SECONDS=${CHECK_FUZZ_SECONDS:-20} sh fuzz/run.sh >"$out" 2>&1
  st=$?
  cat "$out"
  detail=$(sed -n 's/^fuzz: \([a-z]*\) ok (\([0-9?]*\) inputs.*/\1 \2/p' "$out" | tr '\n' ' ')
  if [ "$st" -eq 0 ]; then
    record fuzz ok "inputs run: ${detail}($(($(date +%s) - t0)) s)"
  else
    record fuzz FAIL "$(grep -c 'FAILED' "$out") target(s) failed ($(($(date +%s) - t0)) s)"
  fi
}

# ---- main ------------------------------------------------------------------------

gates=${*:-werror asan valgrind gcstress luacheck cppcheck fuzz}
mkdir -p "$CHECK_DIR"
for g in $gates; do
  case $g in
  werror) gate_werror ;;
  asan) gate_asan ;;
  valgrind) gate_valgrind ;;
  gcstress) gate_gcstress ;;
  luacheck) gate_luacheck ;;
  cppcheck) gate_cppcheck ;;
  lint) gate_luacheck; gate_cppcheck ;;
  fuzz) gate_fuzz ;;
  *) note "check: unknown gate '$g' (werror asan valgrind gcstress luacheck cppcheck fuzz lint)"; exit 2 ;;
  esac
done
finish
