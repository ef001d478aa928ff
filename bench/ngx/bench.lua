--- The ngx.shared.DICT peer of W9 (../../shared/BENCH.md), run by nginx
-- inside one request (content_by_lua_file; run.sh writes the configuration
-- and fetches /w9 over a unix socket with curl), so only the dictionary's
-- calls are timed, not the request. The zone is `lua_shared_dict w9`.
--
-- Prints the rows in bench.lua's format (R/F lines, tab-separated), one
-- per W9 measure: set, get, incr, 95% get / 5% set, bytes per entry.
local ffi = require "ffi"

if not pcall(ffi.typeof, "struct w9_timespec") then -- once per worker
  ffi.cdef [[
    struct w9_timespec { long tv_sec; long tv_nsec; };
    int clock_gettime(int clk, struct w9_timespec *ts);
  ]]
end
local ts = ffi.new("struct w9_timespec")
local function clock() -- CLOCK_MONOTONIC, as shm.clock in the Lua rows
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local N = tonumber(ngx.var.arg_n) or 2000000
local NKEYS = 1000

local function out(...)
  ngx.say(table.concat({ ... }, "\t"))
end

local function rate(w, label, ok, n, t)
  if ok then
    out("R", w, label, "peer", ("%.6g"):format(n / t / 1e6), "M op/s", ("%.6g"):format(t / n * 1e9))
  else
    out("F", w, label, "peer", "check failed")
  end
end

local d = ngx.shared.w9
d:flush_all()
d:flush_expired()

local keys, vals, cnts = {}, {}, {}
for i = 1, NKEYS do
  keys[i] = ("key:%012d"):format(i)
  cnts[i] = ("cnt:%012d"):format(i)
  vals[i] = ("v%015d"):format(i) .. ("x"):rep(48)
end

-- bytes per entry: the 1000 keys in the empty zone
local cap, free0 = d:capacity(), d:free_space()
for j = 1, NKEYS do
  d:set(keys[j], vals[j])
end
local free1 = d:free_space()
out("R", "W9 memory", "(capacity - free_space) / entries", "peer",
  ("%.6g"):format((cap - free1) / NKEYS), "B/entry", "-")
out("R", "W9 memory", "(free_space empty - after) / entries", "peer",
  ("%.6g"):format((free0 - free1) / NKEYS), "B/entry", "-")

local ok = true
local t = clock()
for i = 0, N - 1 do
  local j = i % NKEYS + 1
  d:set(keys[j], vals[j])
end
t = clock() - t
rate("W9 set", "d:set(k, v)", d:get(keys[(N - 1) % NKEYS + 1]) == vals[(N - 1) % NKEYS + 1], N, t)

local x
t = clock()
for i = 0, N - 1 do
  x = d:get(keys[i % NKEYS + 1])
end
t = clock() - t
rate("W9 get", "d:get(k)", x == vals[(N - 1) % NKEYS + 1], N, t)

t = clock()
for i = 0, N - 1 do
  d:incr(cnts[i % NKEYS + 1], 1, 0)
end
t = clock() - t
for j = 1, NKEYS do
  ok = ok and d:get(cnts[j]) == N / NKEYS
end
rate("W9 incr", "d:incr(k, 1, 0)", ok, N, t)

-- 95% get / 5% set, one process (nginx's worker)
local gets = 0
t = clock()
for i = 0, N - 1 do
  local j = i % NKEYS + 1
  if i % 20 == 0 then
    d:set(keys[j], vals[j])
  elseif d:get(keys[j]) then
    gets = gets + 1
  end
end
t = clock() - t
rate("W9 95/5 1 proc", "get/set, 1 process", gets == N - N / 20, N, t)
