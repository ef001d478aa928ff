--[[ ratelimit.lua: a rate limiter shared by worker processes, in a
sysvshm.dict.

    lua5.4 lua/demo/ratelimit.lua [--workers N] [--clients M] [--limit K]
                                  [--window S] [--seconds T]

N worker processes serve fake requests from M clients (each request from a
client picked at random) for T seconds, and admit at most K requests per
client per window of S seconds, together: each request counts itself with

    local n = d:incr(client .. ":" .. window_index, 1, 0, ttl)
    admitted = n <= K

(one atomic increment in the shared dictionary; the counter is created at
0 by the first request of its window and expires a little after the window
ends). The window index is the monotonic clock divided by S, the same in
every process. Each worker reports, per client and window, how many
requests it admitted and refused; the main process adds them up and checks
that no client ever got more than K in a window, and also exactly
min(K, requests) -- none refused that should have been admitted -- then
prints the requests per second. With --racy the workers count with a get
and a set instead (not atomic): updates are lost, and the check says so.

The counters' TTL is two windows and a second: a worker stalled for longer
than that between choosing its window and counting would recreate an
expired counter and admit too many, and the check would say so. The
dictionary is sized so that it never has to evict a live counter (an
evicted counter forgets its count; the check would catch that too, and
the demo reports evictions).

The segment is marked for removal as soon as it is attached: the workers
attach it by id, and it goes when the last process detaches, even on an
error or Ctrl-C.
]]
dofile((arg[0]:match("^(.*)/") or ".") .. "/prelude.lua")

local shm = require "sysvshm"
local dict = require "sysvshm.dict"
local options = require "sysvshm.options"

local cli = options.new {
  prog = "ratelimit.lua",
  description = "Admit at most K requests per client and window, across worker processes,\n"
    .. "with the atomic incr of a shared dictionary; check that none got more.",
  { "workers", type = "integer", default = 4, min = 1, max = 64, metavar = "N",
    help = "worker processes" },
  { "clients", type = "integer", default = 8, min = 1, max = 10000, metavar = "M",
    help = "clients sending requests" },
  { "limit", type = "integer", default = 100, min = 0, metavar = "K",
    help = "requests admitted per client and window" },
  { "window", type = "number", default = 0.1, min = 0.001, max = 3600, metavar = "S",
    help = "window length in seconds" },
  { "seconds", type = "number", default = 2, min = 0, max = 3600, metavar = "T",
    help = "how long the workers serve requests" },
  { "racy", type = "flag",
    help = "count with get and then set, not incr: lost updates, caught by the check" },
  { "worker", type = "integer", min = 0, metavar = "ID",
    help = "(internal) run as a worker on segment ID" },
  { "seed", type = "integer", default = 1, metavar = "N", help = "(internal) a worker's seed" },
  { "until", type = "number", metavar = "T", help = "(internal) a worker's end (monotonic clock)" },
}
local opts = cli:parse_or_exit(arg)

local TTL = 2 * opts.window + 1

-- A worker: requests until the end, then one line per client and window:
-- "client window admitted refused".
local function worker(id)
  local seg <close> = assert(shm.attach(id))
  local d = dict.open(seg)
  math.randomseed(opts.seed)
  local clients, limit, window, stop = opts.clients, opts.limit, opts.window, opts["until"]
  local racy = opts.racy
  local admitted, refused = {}, {}
  local clock, random, floor = shm.clock, math.random, math.floor
  while true do
    local now = clock()
    if now >= stop then break end
    local c = random(clients)
    local w = floor(now / window)
    local key = c .. ":" .. w
    local n
    if racy then -- a read and a write: another worker's count in between is lost
      n = (d:get(key) or 0) + 1
      d:set(key, n, TTL)
    else
      n = assert(d:incr(key, 1, 0, TTL))
    end
    if n <= limit then
      admitted[key] = (admitted[key] or 0) + 1
    else
      refused[key] = (refused[key] or 0) + 1
    end
  end
  local out = {}
  for _, t in ipairs({ admitted, refused }) do
    for key in pairs(t) do
      if not out[key] then
        local c, w = key:match("^(%d+):(%d+)$")
        out[key] = ("%s %s %d %d"):format(c, w, admitted[key] or 0, refused[key] or 0)
      end
    end
  end
  for _, line in pairs(out) do
    print(line)
  end
end

if opts.worker then
  worker(opts.worker)
  return
end

-- Room for every counter that can be alive at once (a window's counters
-- live TTL seconds), twice over: no live counter is ever evicted.
local alive = opts.clients * (math.ceil(TTL / opts.window) + 2)
local size = math.max(1 << 20, alive * 2 * 96)
-- attached and already marked for removal: it goes with the last detach,
-- even if every process is killed
local seg <close>, id = assert(shm.private(size))
local d = dict.new(seg)

local lua = arg[-1] or "lua5.4"
local stop = shm.clock() + opts.seconds + 0.1 -- the workers start meanwhile
local t0 = shm.clock()
local workers = {}
for i = 1, opts.workers do
  workers[i] = assert(io.popen(("%q %q --worker %d --seed %d --until %.6f --clients %d --limit %d --window %.17g%s")
    :format(lua, arg[0], id, i, stop, opts.clients, opts.limit, opts.window, opts.racy and " --racy" or "")))
end

local admitted, total, failed = {}, {}, 0
for _, p in ipairs(workers) do
  for line in p:lines() do
    local c, w, a, r = line:match("^(%d+) (%d+) (%d+) (%d+)$")
    if not c then
      failed = failed + 1
    else
      local key = c .. ":" .. w
      admitted[key] = (admitted[key] or 0) + tonumber(a)
      total[key] = (total[key] or 0) + tonumber(a) + tonumber(r)
    end
  end
  if not p:close() then failed = failed + 1 end
end
local elapsed = shm.clock() - t0

local requests, ok_count, over, under, windows = 0, 0, 0, 0, 0
local worst = 0
for key, n in pairs(total) do
  local a = admitted[key]
  requests, ok_count, windows = requests + n, ok_count + a, windows + 1
  if a > opts.limit then
    over = over + 1
    worst = math.max(worst, a)
  elseif a < math.min(opts.limit, n) then
    under = under + 1
  end
end
local st = d:stats()

print(("%d workers, %d clients, at most %d per client per %g s window: %d requests in %.2f s, %.0f requests/s")
      :format(opts.workers, opts.clients, opts.limit, opts.window, requests, elapsed, requests / elapsed))
print(("admitted %d, refused %d, in %d windows of a client; evictions %d"):format(
      ok_count, requests - ok_count, windows, st.evictions))
if failed > 0 or over > 0 or under > 0 or st.evictions > 0 then
  io.stderr:write(("ratelimit.lua: FAILED: %d worker(s) failed, %d window(s) over the limit (worst %d),"
                   .. " %d refused too many, %d evictions\n"):format(failed, over, worst, under,
                   st.evictions))
  os.exit(1)
end
print(("verdict: no client got more than %d in any window"):format(opts.limit))
