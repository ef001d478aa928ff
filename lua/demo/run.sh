#!/bin/sh
# `make demo`: run writer.lua and reader.lua together for about three seconds.
#
# The writer appends an 'A' every 0.2 s, 15 times, then removes its segment;
# the reader prints the string (its standard output) until then. Both use a
# key of their own, made from a fresh temporary file, so the demo never meets
# a writer you started yourself with the defaults (/tmp, 0x66).
# Exits non-zero if either script fails.
set -u

cd "$(dirname "$0")/../.." || exit 1
LUA=${LUA:-lua5.4}
INTERVAL=0.2
COUNT=15

keyfile=$(mktemp) || exit 1
trap 'rm -f "$keyfile"' EXIT
# On Ctrl-C, carry on: the reader stops, the writer removes its segment and
# stops, and the script reports their (non-zero) statuses.
trap : INT
set -- --path "$keyfile" --proj 0x44 --interval "$INTERVAL"

# A background job of a non-interactive shell starts with SIGINT ignored;
# lua5.4 installs its own handler anyway, and env --default-signal (where
# there is one) makes sure a Ctrl-C reaches the writer, which then removes
# its segment.
restore_int=
if env --default-signal=INT true 2>/dev/null; then
  restore_int="env --default-signal=INT"
fi

echo "demo: writer.lua $* --count $COUNT, and reader.lua $*" >&2
$restore_int "$LUA" lua/demo/writer.lua "$@" --count "$COUNT" &
writer=$!

# Give the writer a moment to create its segment before the reader looks.
sleep 0.5

"$LUA" lua/demo/reader.lua "$@"
reader_status=$?

wait "$writer"
writer_status=$?

echo "demo: writer exited $writer_status, reader exited $reader_status" >&2
[ "$writer_status" -eq 0 ] && [ "$reader_status" -eq 0 ]
