#!/bin/sh
# tools/busted_summary.sh: the verdict on a busted run, from its output
# (busted's default utfTerminal or plainTerminal handler).
#
#   sh tools/busted_summary.sh [-q] FILE      (or - / nothing: standard input)
#
# Prints one line,
#   tests: 512 passed, 0 failed, 3 environment skips, 0 other pending
# then, unless -q, one line per pending test ("  env skip: NAME: REASON" or
# "  PENDING: NAME: MESSAGE").  Exits 0 only when busted's summary line is
# there, nothing failed or erred, and every pending test is an environment
# skip; 1 otherwise.
#
# An environment skip is a pending test whose name has the tag #env and
# whose message starts with "env: " (spec/helpers.lua: `pending(h.env(why))`
# in a test named "... #env"): not root, no pseudo-terminal, no C compiler,
# a tool missing.  Any other pending test fails the run: a known bug is a
# failing test, never a pending one.  Pending tests busted counts but whose
# details are not in the output (another output handler) count as other.
# Used by `make test`, tools/check.sh and .ci/run.
set -u

quiet=0
if [ "${1:-}" = "-q" ]; then
  quiet=1
  shift
fi
file=${1:--}
if [ "$file" != "-" ] && [ ! -r "$file" ]; then
  echo "busted_summary: cannot read $file" >&2
  exit 2
fi

# awk: strip colours; take the last summary line; read every "Pending"
# block (header, test name, message).
awk -v quiet="$quiet" '
  { gsub(/\033\[[0-9;]*m/, "") }
  /^[0-9]+ success(es)? \/ [0-9]+ failures? \/ [0-9]+ errors? \/ [0-9]+ pending/ {
    ok = $1; failed = $4; errors = $7; pending = $10; found = 1
    next
  }
  /^Pending [^ ]+ [^ ]+ @ [0-9]+$/ { state = 1; where = $3 ":" $5; next }
  state == 1 { name = $0; state = 2; next }
  state == 2 {
    msg = $0
    sub(/^[^ ]*:[0-9]+: /, "", msg)  # the file:line: busted puts in front
    if (name ~ /#env([^[:alnum:]_]|$)/ && msg ~ /^env: /) {
      env++
      lines[++n] = "  env skip: " name ": " substr(msg, 6)
    } else {
      other++
      lines[++n] = "  PENDING: " name " (" where "): " msg
    }
    state = 0
    next
  }
  END {
    if (state == 2) { other++; lines[++n] = "  PENDING: " name " (" where ")" }  # no message, at the end
    if (!found) {
      print "tests: no busted summary found"
      exit 1
    }
    env += 0; other += 0
    # pending tests whose blocks were not found count as other
    if (env + other < pending) other = pending - env
    printf "tests: %d passed, %d failed, %d environment skip%s, %d other pending\n",
      ok, failed + errors, env, env == 1 ? "" : "s", other
    if (!quiet) for (i = 1; i <= n; i++) print lines[i]
    if (failed + errors > 0 || other > 0) exit 1
    exit 0
  }
' "$file"
