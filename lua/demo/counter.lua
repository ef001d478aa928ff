--[[ counter.lua: N processes add to shared counters at once; none is lost.

    lua5.4 lua/demo/counter.lua [--procs N] [--count M]

One segment holds two 64-bit counters and a mutex. Each of N worker
processes adds 1 to the first counter M times with seg:atomic_add, and M
times to the second, a plain integer, read and written with seg:unpack and
seg:pack under the mutex. Both totals come out exactly N * M; without the
atomics or the mutex, increments would be lost.

The segment comes from shm.private, attached and already marked for
removal: the workers attach it by id, and it goes when the last process
detaches or dies, even if every process is killed.
]]
dofile((arg[0]:match("^(.*)/") or ".") .. "/prelude.lua")

local shm = require "sysvshm"
local options = require "sysvshm.options"

local ATOMIC, PLAIN, MUTEX = 0, 8, 64 -- offsets in the segment
local SIZE = MUTEX + shm.MUTEX_SIZE

local cli = options.new {
  prog = "counter.lua",
  description = "Add to shared counters from several processes, with atomics and with a mutex.",
  { "procs", type = "integer", default = 4, min = 1, max = 64, metavar = "N",
    help = "worker processes" },
  { "count", type = "integer", default = 100000, min = 0, metavar = "M",
    help = "increments per worker and counter" },
  { "worker", type = "integer", min = 0, metavar = "ID",
    help = "(internal) run as a worker on segment ID" },
}
local opts = cli:parse_or_exit(arg)

local function worker(id, count)
  local seg <close> = assert(shm.attach(id))
  local m = shm.mutex(seg, MUTEX, { open = true })
  local function bump()
    local n = seg:unpack("j", PLAIN)
    seg:pack("j", PLAIN, n + 1)
  end
  for _ = 1, count do
    seg:atomic_add(ATOMIC, 1)
    m:with(bump)
  end
end

if opts.worker then
  worker(opts.worker, opts.count)
  return
end

local seg <close>, id = assert(shm.private(SIZE)) -- goes with the last detach
shm.mutex(seg, MUTEX)

local lua = arg[-1] or "lua5.4"
local cmd = ("%q %q --worker %d --count %d"):format(lua, arg[0], id, opts.count)
local t0 = shm.clock()
local workers = {}
for i = 1, opts.procs do
  workers[i] = assert(io.popen(cmd))
end
local failed = 0
for _, p in ipairs(workers) do
  if not p:close() then failed = failed + 1 end
end
local elapsed = shm.clock() - t0

local expected = opts.procs * opts.count
local atomic, plain = seg:atomic_load(ATOMIC), seg:unpack("j", PLAIN)
print(("%d processes x %d increments, in %.2f s"):format(opts.procs, opts.count, elapsed))
print(("atomic_add: %d (expected %d)"):format(atomic, expected))
print(("mutex:      %d (expected %d)"):format(plain, expected))
if failed > 0 or atomic ~= expected or plain ~= expected then
  io.stderr:write("counter.lua: ", failed, " worker(s) failed or a total is wrong\n")
  os.exit(1)
end
