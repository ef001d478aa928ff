#!/bin/sh
# Before/after: the sysvshm rows of some workloads for the module built from
# another revision (A) and for the in-tree build (B), in alternating runs of
# bench/run.sh (one round each, the order swapped every round), then the
# median of each row per build and the median of the per-round ratios B/A.
#
#   sh bench/ab.sh REV                        W6 W7 lock, 15 rounds
#   ONLY="W7 lock" ROUNDS=21 sh bench/ab.sh 43c130d
#
# REV is built into a temporary directory (git archive, make), removed at
# the end; the workloads are the in-tree bench/lua/bench.lua's, so they
# must use only what both builds offer. Run 'make' first.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
LUA=${LUA:-lua5.4}
ROUNDS=${ROUNDS:-15}
ONLY=${ONLY:-W6 W7 lock}
rev=${1:?usage: sh bench/ab.sh REV}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sysvshm-ab.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

git -C "$root" archive --prefix=a/ "$rev" | tar -x -C "$tmp" -f -
make -s -C "$tmp/a" >/dev/null
: >"$tmp/a.rows"
: >"$tmp/b.rows"

echo "bench ab: $rev (A) against the in-tree build (B), $ROUNDS rounds of $ONLY" >&2
r=1
while [ "$r" -le "$ROUNDS" ]; do
  printf ' %d' "$r" >&2
  if [ $((r % 2)) = 1 ]; then order="a b"; else order="b a"; fi
  for x in $order; do
    if [ "$x" = a ]; then dir=$tmp/a; else dir=$root; fi
    LUA_PATH_5_4="$dir/lua/?.lua;$dir/lua/?/init.lua;;" \
      LUA_CPATH_5_4="$dir/build/?.so;;" PROGS=sysvshm ROUNDS=1 ONLY="$ONLY" \
      SAVE="$tmp/run" sh "$here/run.sh" >/dev/null 2>&1 || true
    # the round's number instead of run.sh's 1
    sed "s/^1	/$r	/" "$tmp/run.rows" >>"$tmp/$x.rows"
  done
  r=$((r + 1))
done
echo >&2
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"

"$LUA" - "$tmp/a.rows" "$tmp/b.rows" <<'EOF'
local function split(line)
  local t = {}
  for f in (line .. "\t"):gmatch("([^\t]*)\t") do
    t[#t + 1] = f
  end
  return t
end

local function median(xs)
  local s = { table.unpack(xs) }
  table.sort(s)
  local n = #s
  if n == 0 then
    return nil
  end
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

-- rows[key] = { w, label, unit, a = {round = ns}, b = {...} }
local rows, order = {}, {}
for i, side in ipairs({ "a", "b" }) do
  for line in io.lines(arg[i]) do
    local f = split(line)
    if f[3] == "R" and f[2] == "sysvshm" then
      local key = f[4] .. "\0" .. f[5]
      local r = rows[key]
      if not r then
        r = { w = f[4], label = f[5], a = {}, b = {} }
        rows[key] = r
        order[#order + 1] = r
      end
      r[side][tonumber(f[1])] = tonumber(f[9])
    elseif f[3] == "F" or f[3] == "X" then
      print(("%s round %s: %s"):format(side == "a" and "A" or "B", f[1], table.concat(f, " ", 4)))
    end
  end
end

print(("%-10s %-58s %9s %9s %7s %18s"):format("workload", "row (ns per op)", "A", "B",
  "B/A", "round B/A (range)"))
for _, r in ipairs(order) do
  local av, bv, q = {}, {}, {}
  for round, v in pairs(r.a) do
    av[#av + 1] = v
    if r.b[round] then
      q[#q + 1] = r.b[round] / v
    end
  end
  for _, v in pairs(r.b) do
    bv[#bv + 1] = v
  end
  table.sort(q)
  local ma, mb = median(av), median(bv)
  print(("%-10s %-58s %9.1f %9.1f %7.3f %6.3f (%.2f-%.2f)"):format(r.w, r.label:sub(1, 58),
    ma or 0 / 0, mb or 0 / 0, (mb or 0 / 0) / (ma or 0 / 0), median(q) or 0 / 0,
    q[1] or 0 / 0, q[#q] or 0 / 0))
end
print("ns per operation: lower is faster; B/A above 1: B (in-tree) slower")
EOF
