--- The Lua side of the benchmark (see ../../shared/BENCH.md and run.sh).
--
--     lua5.4 bench.lua sysvshm W1      -- the sysvshm rows of workload W1
--     lua5.4 bench.lua plain W1        -- plain Lua on a Lua string
--
-- and, started by the W6/W7/W9 drivers in a second process:
--
--     lua5.4 bench.lua w6reader ID
--     lua5.4 bench.lua w7consumer ID NPROD [pack]
--     lua5.4 bench.lua w7producer ID P NPROD
--     lua5.4 bench.lua lockturns ID OFF
--     lua5.4 bench.lua w9mixed ID P
--
-- Each row is printed as one tab-separated line:
--     R  workload  label  kind  value  unit  ns-per-op
--     F  workload  label  kind  reason        (a check failed: no figure)
--     S  workload  label  kind  reason        (not measured: no figure)
--     N  note
-- Segments are marked for removal right after they are attached (children
-- attach a removed segment by id, which Linux allows while it is attached),
-- so nothing is left behind even when a process is killed.
local shm = require "sysvshm"

local clock = shm.clock

local N = 1000000
local SMALL = 1048576
local BULK = 67108864
local STEP = 7919
local MSG = 64
local SLOTS = 256
local NMSG = 200000
local BULK_REPS = 10
local CYCLES = 10000

local PAD = ("p"):rep(MSG - 8)

local function out(...)
  io.stdout:write(table.concat({ ... }, "\t"), "\n")
end

local function row(w, label, kind, value, unit, ns)
  out("R", w, label, kind, ("%.6g"):format(value), unit, ("%.6g"):format(ns))
end

-- a row that is a size, not a rate: bytes per entry, no ns/op
local function bytes(w, label, kind, value)
  out("R", w, label, kind, ("%.6g"):format(value), "B/entry", "-")
end

local function fail(w, label, kind, why)
  out("F", w, label, kind, why)
end

-- A row for a loop of `n` operations that took `t` seconds, if `ok`.
local function rate(w, label, kind, ok, n, t)
  if ok then
    row(w, label, kind, n / t / 1e6, "M op/s", t / n * 1e9)
  else
    fail(w, label, kind, "check failed")
  end
end

-- A private segment, attached, already marked for removal.
local function private(size)
  local id = assert(shm.create(shm.IPC_PRIVATE, size))
  local ok, seg = pcall(shm.attach, id)
  assert(shm.remove(id))
  assert(ok and seg, seg)
  return seg, id
end

-- SMALL bytes with byte i == i % 256
local function pattern()
  local b = {}
  for i = 0, 255 do
    b[#b + 1] = string.char(i)
  end
  return table.concat(b):rep(SMALL // 256)
end

-- the 8 bytes of pattern() at 0-based offset off
local function pattern_at(off)
  local b = {}
  for k = 0, 7 do
    b[#b + 1] = string.char((off + k) % 256)
  end
  return table.concat(b)
end

-- the offset of W1's sequence after n steps
local function w1_last(n)
  local off = 0
  for _ = 1, n do
    off = (off + STEP) % (SMALL - 8)
  end
  return off
end

local W = {}

-- ---- W0: the loop alone --------------------------------------------------

function W.plain_W0()
  local off = 0
  local t = clock()
  for _ = 1, N do
    off = (off + STEP) % (SMALL - 8)
  end
  t = clock() - t
  rate("W0", "loop only (offset arithmetic)", "plain", off == w1_last(N), N, t)
end

-- ---- W1, W2: 8-byte reads and writes --------------------------------------

function W.sysvshm_W1()
  local seg = private(SMALL)
  seg:write(0, pattern())
  local off, x = 0, nil
  local t = clock()
  for _ = 1, N do
    off = (off + STEP) % (SMALL - 8)
    x = seg:read(off, 8)
  end
  t = clock() - t
  rate("W1", "seg:read(off, 8)", "sysvshm", x == pattern_at(off), N, t)
end

function W.plain_W1()
  local s = pattern()
  local off, x = 0, nil
  local t = clock()
  for _ = 1, N do
    off = (off + STEP) % (SMALL - 8)
    x = s:sub(off + 1, off + 8)
  end
  t = clock() - t
  rate("W1", "s:sub(off+1, off+8)", "plain", x == pattern_at(off), N, t)
end

function W.sysvshm_W2()
  local seg = private(SMALL)
  seg:write(0, pattern())
  local off = 0
  local t = clock()
  for _ = 1, N do
    off = (off + STEP) % (SMALL - 8)
    seg:write(off, "ABCDEFGH")
  end
  t = clock() - t
  rate("W2", 'seg:write(off, "ABCDEFGH")', "sysvshm", seg:read(off, 8) == "ABCDEFGH", N, t)
end

-- Lua strings are immutable: the plain-Lua reference for writes is the
-- 8-byte string.sub of W1, measured again in W2's slot of the round.
function W.plain_W2()
  local s = pattern()
  local off, x = 0, nil
  local t = clock()
  for _ = 1, N do
    off = (off + STEP) % (SMALL - 8)
    x = s:sub(off + 1, off + 8)
  end
  t = clock() - t
  rate("W2", "s:sub(off+1, off+8) (reference: strings are immutable)", "plain",
    x == pattern_at(off), N, t)
end

-- ---- W3: 64 MiB -----------------------------------------------------------

function W.sysvshm_W3()
  local seg = private(BULK)
  local big = string.rep("\7", BULK)
  seg:write(0, big) -- warm-up
  local x = seg:read(0, BULK)
  local tw, tr = 0, 0
  for _ = 1, BULK_REPS do
    local t = clock()
    seg:write(0, big)
    tw = tw + clock() - t
    x = nil -- luacheck: ignore 311 (the old string goes before we time)
    collectgarbage()
    t = clock()
    x = seg:read(0, BULK)
    tr = tr + clock() - t
  end
  local ok = x == big
  if ok then
    row("W3 write", "seg:write(0, s)", "sysvshm", BULK_REPS * BULK / tw / 1e9, "GB/s",
      tw / BULK_REPS * 1e9)
    row("W3 read", "seg:read(0, BULK), new string", "sysvshm",
      BULK_REPS * BULK / tr / 1e9, "GB/s", tr / BULK_REPS * 1e9)
  else
    fail("W3 write", "seg:write(0, s)", "sysvshm", "read back differs")
    fail("W3 read", "seg:read(0, BULK), new string", "sysvshm", "read back differs")
  end
end

function W.plain_W3()
  local big = string.rep("\7", BULK)
  local x = big:sub(1, BULK)
  local tr = 0
  for _ = 1, BULK_REPS do
    x = nil -- luacheck: ignore 311
    collectgarbage()
    local t = clock()
    x = big:sub(1, BULK)
    tr = tr + clock() - t
  end
  if x == big then
    row("W3 read", "s:sub(1, BULK), new string", "plain", BULK_REPS * BULK / tr / 1e9,
      "GB/s", tr / BULK_REPS * 1e9)
  else
    fail("W3 read", "s:sub(1, BULK), new string", "plain", "copy differs")
  end
end

-- ---- W4: byte get/set -------------------------------------------------------

function W.sysvshm_W4()
  local seg = private(SMALL)
  seg:fill(0) -- touch every page before timing, as the plain table is filled
  local off = 0
  local t = clock()
  for i = 0, N - 1 do
    off = (off + STEP) % SMALL
    seg:setbyte(off, i & 255)
  end
  t = clock() - t
  local last = off
  rate("W4 set", "seg:setbyte(off, v)", "sysvshm", seg:byte(last) == (N - 1) & 255, N, t)

  off = 0
  local x
  t = clock()
  for _ = 0, N - 1 do
    off = (off + STEP) % SMALL
    x = seg:byte(off)
  end
  t = clock() - t
  rate("W4 get", "seg:byte(off)", "sysvshm", x == (N - 1) & 255, N, t)
end

function W.plain_W4()
  local b = {}
  for i = 1, SMALL do
    b[i] = 0
  end
  local off = 0
  local t = clock()
  for i = 0, N - 1 do
    off = (off + STEP) % SMALL
    b[off + 1] = i & 255
  end
  t = clock() - t
  rate("W4 set", "t[off+1] = v (Lua table of bytes)", "plain", b[off + 1] == (N - 1) & 255, N, t)

  local parts = {}
  for i = 1, SMALL, 4096 do
    parts[#parts + 1] = string.char(table.unpack(b, i, i + 4095))
  end
  local s = table.concat(parts)
  b, parts = nil, nil -- luacheck: ignore 311
  off = 0
  local x
  t = clock()
  for _ = 0, N - 1 do
    off = (off + STEP) % SMALL
    x = s:byte(off + 1)
  end
  t = clock() - t
  rate("W4 get", "s:byte(off+1)", "plain", x == (N - 1) & 255, N, t)
end

-- ---- W5: create/attach/detach/remove ----------------------------------------

function W.sysvshm_W5()
  local create, attach, remove, PRIVATE = shm.create, shm.attach, shm.remove, shm.IPC_PRIVATE
  local ok = true
  local t = clock()
  for _ = 1, CYCLES do
    local id = create(PRIVATE, 4096)
    local seg = attach(id)
    ok = seg:detach() and ok
    ok = remove(id) and ok
  end
  t = clock() - t
  if ok then
    row("W5", "create/attach/detach/remove", "sysvshm", CYCLES / t / 1e3, "k/s", t / CYCLES * 1e9)
  else
    fail("W5", "create/attach/detach/remove", "sysvshm", "a call failed")
  end
end

-- ---- W6: a ring of 64-byte messages between two processes ------------------
--
-- Layout: the reader's count at HEAD, the writer's at TAIL, a flag per
-- side saying it is asleep (or about to be), each on its own cache line,
-- then SLOTS slots of MSG bytes. A side spins a little on the other's
-- counter, then sets its flag, looks again and sleeps on the flag (a futex
-- on its low 32 bits) while it is still set; the other side, after each
-- publication, clears a set flag and wakes the sleeper. So no system call
-- is made while both keep up, and one sleep costs one wake. Sleeping on
-- the flag, not on the counter, matters: a publication made before the
-- flag was set may clear it without satisfying the sleeper, and the wait
-- must then return at once (the flag is no longer 1) instead of sleeping
-- with nobody left to wake it.

local HEAD, TAIL, WSLEEP, RSLEEP, RING = 0, 64, 128, 192, 256
local SPIN = 200

local function spawn(...)
  local q = {}
  for i, a in ipairs({ arg[-1] or "lua5.4", arg[0], ... }) do
    q[i] = "'" .. tostring(a):gsub("'", [['\'']]) .. "'"
  end
  return assert(io.popen("exec " .. table.concat(q, " "), "r"))
end

-- voluntary context switches of this process (sleeps), from /proc
local function ctxsw()
  local f = io.open("/proc/self/status")
  if not f then
    return -1
  end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("voluntary_ctxt_switches:%s*(%d+)")) or -1
end

-- What one side of the ring did: sleeps, wake calls, and sleeps that ended
-- by their timeout while the counter had moved (a lost wake-up: none
-- should ever happen; the timeout only keeps a bug from hanging the run).
local stats = { waits = 0, wakes = 0, lost = 0 }

-- Wait until the counter at `at` reaches `target` (returns its value):
-- spin SPIN times, then announce the sleep in the flag at `flag` and wait.
local function await(seg, at, flag, target)
  local v = seg:atomic_load(at)
  local spins, timeouts = 0, 0
  while v < target do
    spins = spins + 1
    if spins > SPIN then
      seg:atomic_store(flag, 1)
      v = seg:atomic_load(at)
      if v < target then
        stats.waits = stats.waits + 1
        if not seg:wait(flag, 1, 2) then
          timeouts = timeouts + 1
          local now = seg:atomic_load(at)
          if now ~= v then
            stats.lost = stats.lost + 1
          elseif timeouts >= 5 then
            error(("stuck: counter at %d is %d, waiting for %d; flags %d %d"):format(
              at, v, target, seg:atomic_load(WSLEEP), seg:atomic_load(RSLEEP)))
          end
        end
        v = seg:atomic_load(at)
      end
      seg:atomic_store(flag, 0)
    else
      v = seg:atomic_load(at)
    end
  end
  return v
end

-- After publishing: wake the other side if it announced a sleep. The flag
-- is cleared here, so one sleep costs one wake, however many messages go
-- by before the sleeper runs again.
local function notify(seg, flag)
  if seg:atomic_load(flag) ~= 0 and seg:atomic_cas(flag, 1, 0) then
    stats.wakes = stats.wakes + 1
    seg:wake(flag)
  end
end

local function sidestats(sw)
  return ("%d waits, %d wakes, %d lost wake-ups, %d context switches"):format(
    stats.waits, stats.wakes, stats.lost, ctxsw() - sw)
end

function W.sysvshm_W6()
  local seg, id = private(RING + SLOTS * MSG)
  local sw = ctxsw()
  local t = clock()
  local reader = spawn("w6reader", id)
  local head = 0
  for i = 0, NMSG - 1 do
    if i - head >= SLOTS then -- full as far as we know: look again
      head = await(seg, HEAD, WSLEEP, i - SLOTS + 1)
    end
    seg:pack("<I8c56", RING + i % SLOTS * MSG, i, PAD) -- the message, in place
    seg:atomic_store(TAIL, i + 1)
    notify(seg, RSLEEP)
  end
  local report = reader:read("a"):gsub("%s+$", "")
  local ok = reader:close()
  t = clock() - t
  local label = "atomics + wait/wake ring, 2 lua5.4"
  if ok then
    row("W6", label, "sysvshm", NMSG / t / 1e6, "M msg/s", t / NMSG * 1e9)
  else
    fail("W6", label, "sysvshm", "reader: " .. report)
  end
  out("N", ("W6 sysvshm ring: writer %s; reader %s"):format(sidestats(sw), report))
end

function W.w6reader(id)
  local seg = assert(shm.attach(math.tointeger(id)))
  local bad = 0
  local sw = ctxsw()
  local tail = 0
  for i = 0, NMSG - 1 do
    if i >= tail then -- empty as far as we know: look again
      tail = await(seg, TAIL, RSLEEP, i + 1)
    end
    local seq, pad = seg:unpack("<I8c56", RING + i % SLOTS * MSG) -- all 64 bytes
    seg:atomic_store(HEAD, i + 1)
    notify(seg, WSLEEP)
    if seq ~= i or pad ~= PAD then
      bad = bad + 1
    end
  end
  io.write(("%s, %d bad messages\n"):format(sidestats(sw), bad))
  os.exit(bad == 0 and 0 or 1)
end

-- ---- W7: the channel, 1/1 and 2/2; and 1/1 with sendpack/recvunpack ---------

local channel = require "sysvshm.channel"
local RECORD = 8 + MSG -- a channel record: length, then the message

-- Send this producer's share: i = p, p + nprod, p + 2 nprod, ...
local function produce(ch, p, nprod)
  local spack = string.pack
  for i = p, NMSG - 1, nprod do
    assert(ch:send(spack("<I8c56", i, PAD)))
  end
end

function W.w7producer(id, p, nprod)
  local seg = assert(shm.attach(math.tointeger(id)))
  produce(channel.open(seg), math.tointeger(p), math.tointeger(nprod))
  os.exit(0)
end

-- Receive until closed; each producer's messages must arrive in order.
-- Prints the count, sum and sum of squares of the sequence numbers, for the
-- parent's exactly-once check, and the number of bad messages.
-- With "pack": each message through ch:recvunpack("<I8c56"), which must
-- read all 64 bytes (next position MSG + 1).
function W.w7consumer(id, nprod, mode)
  nprod = math.tointeger(nprod)
  local seg = assert(shm.attach(math.tointeger(id)))
  local ch = channel.open(seg)
  local sunpack = string.unpack
  local last = {}
  for p = 0, nprod - 1 do
    last[p] = p - nprod
  end
  local count, sum, sumsq, bad = 0, 0, 0, 0
  local sw = ctxsw()
  while true do
    local i, pad, nxt
    if mode == "pack" then
      i, pad, nxt = ch:recvunpack("<I8c56")
      if not i then
        break
      end
    else
      local m = ch:recv()
      if not m then
        break
      end
      i, pad, nxt = sunpack("<I8", m), m:sub(9), #m + 1
    end
    local p = i % nprod
    if nxt ~= MSG + 1 or pad ~= PAD or (nprod == 1 and i ~= last[p] + nprod)
      or i <= last[p] then
      bad = bad + 1
    end
    last[p] = i
    count, sum, sumsq = count + 1, sum + i, sumsq + i * i
  end
  io.write(("%d %d %d %d %d\n"):format(count, sum, sumsq, bad, ctxsw() - sw))
  os.exit(bad == 0 and 0 or 1)
end

-- The same, the parent producing with ch:sendpack (1 producer only).
local function produce_pack(ch, p, nprod)
  for i = p, NMSG - 1, nprod do
    assert(ch:sendpack("<I8c56", i, PAD))
  end
end

-- The end of a W7 run: wait for the producer children (if any), close the
-- channel, and add up what the consumer children report ("count sum sumsq
-- bad context-switches"): whether every child exited with 0 and reported,
-- the totals, and the consumers' context switches.
local function w7collect(ch, producers, consumers)
  local ok = true
  for _, p in ipairs(producers) do
    p:read("a")
    ok = p:close() and ok
  end
  ch:close()
  local count, sum, sumsq, bad, sw = 0, 0, 0, 0, {}
  for _, c in ipairs(consumers) do
    local r = c:read("a")
    ok = c:close() and ok
    local n, s, s2, b, x = r:match("^(%d+) (%d+) (%d+) (%d+) (%-?%d+)")
    if not n then
      ok = false
    else
      count, sum, sumsq = count + tonumber(n), sum + tonumber(s), sumsq + tonumber(s2)
      bad = bad + tonumber(b)
      sw[#sw + 1] = x
    end
  end
  return ok, count, sum, sumsq, bad, sw
end

local function w7(nprod, ncons, mode)
  local label = ("channel %s, %d producer%s/%d consumer%s"):format(
    mode == "pack" and "sendpack/recvunpack" or "send/recv",
    nprod, nprod > 1 and "s" or "", ncons, ncons > 1 and "s" or "")
  local w = ("W7 %d/%d%s"):format(nprod, ncons, mode == "pack" and " pack" or "")
  assert(mode ~= "pack" or nprod == 1, "W7 pack: one producer (the parent)")
  local seg, id = private(channel.HEADER + SLOTS * RECORD)
  local ch = channel.new(seg)
  local t = clock()
  local consumers, producers = {}, {}
  for c = 1, ncons do
    consumers[c] = spawn("w7consumer", id, nprod, mode or "string")
  end
  if nprod == 1 then
    (mode == "pack" and produce_pack or produce)(ch, 0, 1) -- the parent is the producer
  else
    for p = 1, nprod do
      producers[p] = spawn("w7producer", id, p - 1, nprod)
    end
  end
  local ok, count, sum, sumsq, bad, sw = w7collect(ch, producers, consumers)
  t = clock() - t
  -- every sequence number 0..NMSG-1 exactly once
  local m = NMSG - 1
  ok = ok and bad == 0 and count == NMSG and sum == m * (m + 1) // 2
    and sumsq == m * (m + 1) * (2 * m + 1) // 6
  if ok then
    row(w, label, "sysvshm", NMSG / t / 1e6, "M msg/s", t / NMSG * 1e9)
  else
    fail(w, label, "sysvshm", ("%d received of %d, %d bad"):format(count, NMSG, bad))
  end
  out("N", ("%s channel: consumer context switches %s"):format(w, table.concat(sw, ", ")))
end

-- ---- W7 batch: send_many / recv_many, batches of BATCH messages -------------
--
-- Message i (i = 0..NMSG_B-1) is pool[i % POOL_B + 1], where pool[k + 1] is
-- string.pack("<I8c56", k, PAD): POOL_B distinct 64-byte messages built in
-- every process before the clock starts.  Building a fresh 64-byte Lua
-- string costs more than moving it, so a timed loop that built them would
-- measure string.pack (the single-call rows do build theirs); and the pool
-- is small enough (about 400 KB) to stay in the caches, as the messages of
-- a program that has just made them are: a pool of all 2^20 messages
-- (100 MB per process) measured each side's cache misses on it, not the
-- channel (bench/NOTES.md has both figures).  Each child builds its pool,
-- counts itself ready in the segment's first word and waits for the start
-- word; the time runs from the start word to the last child's exit.
-- Checks: 1/1, the k-th message received must equal message k (every
-- message in order, all 64 bytes, unless a whole multiple of POOL_B went
-- missing and as many came twice) and the count must be exact; 2/2, each
-- message must be a pool entry (all 64 bytes), the messages of a producer
-- within one batch must follow each other (batches are contiguous in the
-- ring), and count, sum and sum of squares of the numbers they carry must
-- be exact.  The specs prove the channel's guarantees with distinct
-- messages; these checks only make sure that what is timed is the working
-- channel.

local NMSG_B, BATCH, POOL_B = 1 << 20, 64, 4096
local B_READY, B_GO, B_CHAN = 0, 8, 64

local function pool()
  local spack, t = string.pack, {}
  for k = 0, POOL_B - 1 do
    t[k + 1] = spack("<I8c56", k, PAD)
  end
  return t
end

-- count, sum and sum of squares of the numbers (i % POOL_B) that the
-- messages carry, over all NMSG_B of them
local function bexpected()
  local m, full, rest = POOL_B - 1, NMSG_B // POOL_B, NMSG_B % POOL_B
  local s, s2 = m * (m + 1) // 2, m * (m + 1) * (2 * m + 1) // 6
  local r = rest - 1
  return NMSG_B, full * s + r * (r + 1) // 2, full * s2 + r * (r + 1) * (2 * r + 1) // 6
end

local function bready(seg)
  seg:atomic_add(B_READY, 1)
  while seg:atomic_load(B_GO) == 0 do
    seg:wait(B_GO, 0, 1)
  end
end

local function bproduce(ch, msgs, p, nprod)
  local list, send_many = {}, ch.send_many
  local i = p
  while i < NMSG_B do
    local n = 0
    while n < BATCH and i < NMSG_B do
      n = n + 1
      list[n] = msgs[i % POOL_B + 1]
      i = i + nprod
    end
    for j = n + 1, #list do
      list[j] = nil
    end
    assert(send_many(ch, list) == n)
  end
end

function W.w7bproducer(id, p, nprod)
  local seg = assert(shm.attach(math.tointeger(id)))
  local msgs = pool()
  local ch = channel.open(seg, B_CHAN)
  bready(seg)
  bproduce(ch, msgs, math.tointeger(p), math.tointeger(nprod))
  os.exit(0)
end

function W.w7bconsumer(id, nprod)
  nprod = math.tointeger(nprod)
  local seg = assert(shm.attach(math.tointeger(id)))
  local msgs = pool()
  local ch = channel.open(seg, B_CHAN)
  local recv_many, sunpack = ch.recv_many, string.unpack
  local into, last = {}, {}
  local count, sum, sumsq, bad = 0, 0, 0, 0
  local sw = ctxsw()
  bready(seg)
  while true do
    local l, n = recv_many(ch, BATCH, nil, into)
    if not l then
      break
    end
    if nprod == 1 then
      for j = 1, n do
        if l[j] ~= msgs[(count + j - 1) % POOL_B + 1] then
          bad = bad + 1
        end
      end
      count = count + n
    else
      for p = 0, nprod - 1 do
        last[p] = nil
      end
      for j = 1, n do
        local m = l[j]
        local i = sunpack("<I8", m)
        local p = i % nprod -- POOL_B is a multiple of nprod
        local prev = last[p]
        if m ~= msgs[i + 1] or (prev and (prev + nprod) % POOL_B ~= i) then
          bad = bad + 1
        end
        last[p] = i
        sum, sumsq = sum + i, sumsq + i * i
      end
      count = count + n
    end
  end
  if nprod == 1 then -- the k-th message was message k: these follow
    local _
    _, sum, sumsq = bexpected()
  end
  io.write(("%d %d %d %d %d\n"):format(count, sum, sumsq, bad, ctxsw() - sw))
  os.exit(bad == 0 and 0 or 1)
end

local function w7batch(nprod, ncons)
  local label = ("channel send_many/recv_many, batches of %d, %d producer%s/%d consumer%s"):format(
    BATCH, nprod, nprod > 1 and "s" or "", ncons, ncons > 1 and "s" or "")
  local w = ("W7 batch %d/%d"):format(nprod, ncons)
  local seg, id = private(B_CHAN + channel.HEADER + SLOTS * RECORD)
  local ch = channel.new(seg, B_CHAN)
  local msgs = nprod == 1 and pool() or nil
  local consumers, producers = {}, {}
  for c = 1, ncons do
    consumers[c] = spawn("w7bconsumer", id, nprod)
  end
  for p = 1, nprod == 1 and 0 or nprod do
    producers[p] = spawn("w7bproducer", id, p - 1, nprod)
  end
  local nchild = ncons + (nprod == 1 and 0 or nprod)
  while seg:atomic_load(B_READY) < nchild do
    shm.sleep(0.001)
  end
  local t = clock()
  seg:atomic_store(B_GO, 1)
  seg:wake(B_GO)
  if nprod == 1 then
    bproduce(ch, msgs, 0, 1)
  end
  local ok, count, sum, sumsq, bad, sw = w7collect(ch, producers, consumers)
  t = clock() - t
  local n, s, s2 = bexpected()
  ok = ok and bad == 0 and count == n and sum == s and sumsq == s2
  if ok then
    row(w, label, "sysvshm", NMSG_B / t / 1e6, "M msg/s", t / NMSG_B * 1e9)
  else
    fail(w, label, "sysvshm", ("%d received of %d, %d bad"):format(count, NMSG_B, bad))
  end
  out("N", ("%s channel: consumer context switches %s"):format(w, table.concat(sw, ", ")))
end

function W.sysvshm_W7()
  w7(1, 1)
  w7(2, 2)
  w7(1, 1, "pack")
  w7batch(1, 1)
  w7batch(2, 2)
end

-- ---- W8: typed fields ----------------------------------------------------------

function W.sysvshm_W8()
  local seg = private(SMALL)
  seg:write(0, pattern())
  local off = 0
  local t = clock()
  for i = 0, N - 1 do
    off = (off + STEP) % (SMALL - 8)
    seg:pack("<i8", off, i)
  end
  t = clock() - t
  local last = off
  rate("W8 pack", 'seg:pack("<i8", off, v)', "sysvshm",
    string.unpack("<i8", seg:read(last, 8)) == N - 1, N, t)

  off = 0
  local x
  t = clock()
  for _ = 1, N do
    off = (off + STEP) % (SMALL - 8)
    x = seg:unpack("<i8", off)
  end
  t = clock() - t
  rate("W8 unpack", 'seg:unpack("<i8", off)', "sysvshm", x == N - 1, N, t)

  seg:fill(0)
  local ASTEP = 8 * STEP -- 8-byte aligned offsets
  off = 0
  t = clock()
  for _ = 1, N do
    off = (off + ASTEP) % SMALL
    seg:atomic_add(off, 1)
  end
  t = clock() - t
  local sum = 0
  for o = 0, SMALL - 8, 8 do
    sum = sum + seg:atomic_load(o)
  end
  rate("W8 atomic_add", "seg:atomic_add(off, 1)", "sysvshm", sum == N, N, t)
end

function W.plain_W8()
  local off, x = 0, nil
  local t = clock()
  for i = 0, N - 1 do
    off = (off + STEP) % (SMALL - 8)
    x = string.pack("<i8", i)
  end
  t = clock() - t
  rate("W8 pack", 'string.pack("<i8", v)', "plain", x == string.pack("<I8", N - 1), N, t)

  local s = pattern()
  off = 0
  t = clock()
  for _ = 1, N do
    off = (off + STEP) % (SMALL - 8)
    x = string.unpack("<i8", s, off + 1)
  end
  t = clock() - t
  rate("W8 unpack", 'string.unpack("<i8", s, off+1)', "plain",
    x == string.unpack("<i8", pattern_at(off)), N, t)

  -- the reference for atomic_add (the target: within 1.5 times its cost),
  -- measured in the same slot of the round, on W8's aligned offsets
  local ASTEP = 8 * STEP
  off = 0
  t = clock()
  for _ = 1, N do
    off = (off + ASTEP) % SMALL
    x = s:byte(off + 1)
  end
  t = clock() - t
  rate("W8 atomic_add", "s:byte(off+1) (reference for atomic_add)", "plain", x == off % 256, N, t)
end

-- ---- lock: the mutex, uncontended and between two processes ------------------
--
-- Uncontended: N times m:lock(); m:unlock(), against the floor of two Lua C
-- calls on the same kind of userdata (seg:atomic_add twice), in alternating
-- chunks within one process, so that both loops see the same minute of the
-- machine. The C rows (bench/c/locks.c) put glibc's robust mutex (the old
-- implementation) and the lock word itself without Lua beside them.

local LOCK_CHUNKS = 10
local TURNS = 200000 -- contended: lock, counter + 1, unlock, per process

function W.sysvshm_lock()
  local seg = private(4096)
  local m = shm.mutex(seg, 0)
  local CNT = 64
  assert(m:lock()) -- the first lock notes this thread's identity: untimed
  assert(m:unlock())
  local chunk = N // LOCK_CHUNKS
  local tl, ta = 0, 0
  for _ = 1, LOCK_CHUNKS do
    local t = clock()
    for _ = 1, chunk do
      m:lock()
      m:unlock()
    end
    tl = tl + clock() - t
    t = clock()
    for _ = 1, chunk do
      seg:atomic_add(CNT, 1)
      seg:atomic_add(CNT, 1)
    end
    ta = ta + clock() - t
  end
  local n = chunk * LOCK_CHUNKS
  -- checks: every lock was released (a second handle takes it, and then
  -- the first cannot), and every add happened
  local other = shm.mutex(seg, 0, { open = true })
  local free = not m:locked() and other:trylock() == true and m:trylock() == false
    and other:unlock() == true and m:trylock() == true and m:unlock() == true
  rate("lock", "m:lock(); m:unlock()", "sysvshm", free, n, tl)
  rate("lock", "seg:atomic_add x 2 (floor: two Lua C calls)", "sysvshm",
    seg:atomic_load(CNT) == 2 * n, n, ta)
end

-- One side of the contended row: TURNS times lock, counter + 1 through a
-- plain load and store (so a lost mutual exclusion loses counts), unlock.
local function turns(seg, m, cnt)
  local bad = 0
  for _ = 1, TURNS do
    if not m:lock() then
      bad = bad + 1
    end
    seg:atomic_store(cnt, seg:atomic_load(cnt) + 1)
    m:unlock()
  end
  return bad
end

-- Both sides count themselves in at `at` and start when both are there
-- (bounded: a side that never comes fails the run).
local function startline(seg, at)
  seg:atomic_add(at, 1)
  local deadline = clock() + 10
  while seg:atomic_load(at) < 2 do
    if clock() > deadline then
      error("the other process did not start")
    end
  end
end

function W.lockturns(id, off)
  local seg = assert(shm.attach(math.tointeger(id)))
  local m = shm.mutex(seg, math.tointeger(off), { open = true })
  startline(seg, math.tointeger(off) + 64)
  local bad = turns(seg, m, math.tointeger(off) + 128)
  io.write(("%d bad, %d context switches\n"):format(bad, ctxsw()))
  os.exit(bad == 0 and 0 or 1)
end

function W.sysvshm_lock2p()
  local seg, id = private(4096)
  local m = shm.mutex(seg, 0)
  local sw = ctxsw()
  local t = clock()
  local other = spawn("lockturns", id, 0)
  startline(seg, 64)
  local bad = turns(seg, m, 128)
  local report = other:read("a"):gsub("%s+$", "")
  local ok = other:close()
  t = clock() - t
  rate("lock2p", "2 lua5.4, each lock, counter + 1, unlock", "sysvshm",
    ok and bad == 0 and seg:atomic_load(128) == 2 * TURNS, 2 * TURNS, t)
  out("N", ("lock2p sysvshm: parent %d context switches; child %s"):format(ctxsw() - sw, report))
end

-- ---- W9: the shared dictionary ------------------------------------------------
--
-- 1000 keys of 16 bytes ("key:%012d"), 64-byte values, W9N operations of
-- each kind cycling over the keys (j = i % 1000 + 1), the same loop as the
-- peers' (bench/ngx/bench.lua, bench/php/bench.php). Counters are separate
-- keys ("cnt:%012d"), so that every incr finds a number. The mixed rows:
-- every 20th operation a set, the others gets (95% / 5%), in one process
-- and in two, each process doing W9N operations on its own half-rotated
-- key order; the processes start together (a start flag in the segment)
-- and the time runs from the flag to the last one's end.

local W9N = 2000000 -- a multiple of 1000 and of 20: the checks need it
local NKEYS = 1000
local DICTSIZE = 4 * 1048576 -- as the peers' zone (lua_shared_dict w9 4m)
local W9READY, W9GO, W9DICT = 0, 64, 128 -- start barrier words, then the dictionary

local function w9data()
  local keys, cnts, vals = {}, {}, {}
  for i = 1, NKEYS do
    keys[i] = ("key:%012d"):format(i)
    cnts[i] = ("cnt:%012d"):format(i)
    vals[i] = ("v%015d"):format(i) .. ("x"):rep(48)
  end
  return keys, cnts, vals
end

local W9ROWS = {
  { "W9 memory", "(capacity - free_space) / entries" },
  { "W9 memory", "(free_space empty - after) / entries" },
  { "W9 set", "d:set(k, v)" },
  { "W9 get", "d:get(k)" },
  { "W9 incr", "d:incr(k, 1, 0)" },
  { "W9 95/5 1 proc", "get/set, 1 process" },
  { "W9 95/5 2 procs", "get/set, 2 processes (aggregate)" },
}

-- The mixed loop of process p (0 or 1) on dictionary d: returns the
-- number of gets that found their key.
local function w9loop(d, p, keys, vals)
  local found = 0
  local base = p * (NKEYS // 2)
  for i = 0, W9N - 1 do
    local j = (i + base) % NKEYS + 1
    if i % 20 == 0 then
      d:set(keys[j], vals[j])
    elseif d:get(keys[j]) then
      found = found + 1
    end
  end
  return found
end

-- A child of the mixed rows: open the dictionary, say ready, wait for the
-- start flag, run, print "end-clock found".
function W.w9mixed(id, p)
  local dict = require "sysvshm.dict"
  local seg = assert(shm.attach(math.tointeger(id)))
  local d = assert(dict.open(seg, W9DICT))
  local keys, _, vals = w9data()
  seg:atomic_add(W9READY, 1)
  local deadline = clock() + 10
  while seg:atomic_load(W9GO) == 0 do
    seg:wait(W9GO, 0, 1)
    assert(clock() < deadline, "w9mixed: no start signal in 10 s")
  end
  local cpu = os.clock()
  local found = w9loop(d, math.tointeger(p), keys, vals)
  io.write(("%.9f %d %.6f\n"):format(clock(), found, os.clock() - cpu))
  os.exit(0)
end

-- np processes doing the mixed loop on the dictionary in segment id
local function w9mixed(seg, id, np)
  seg:atomic_store(W9READY, 0)
  seg:atomic_store(W9GO, 0)
  local kids = {}
  for p = 1, np do
    kids[p] = spawn("w9mixed", id, p - 1)
  end
  local deadline = clock() + 10
  while seg:atomic_load(W9READY) < np and clock() < deadline do
    seg:wait(W9READY, seg:atomic_load(W9READY), 0.01)
  end
  local t0 = clock()
  seg:atomic_store(W9GO, 1)
  seg:wake(W9GO)
  local last, ok, cpu = t0, true, 0
  for p = 1, np do
    local r = kids[p]:read("a")
    ok = kids[p]:close() and ok
    local t, found, c = r:match("^(%S+) (%d+) (%S+)")
    if not t or tonumber(found) ~= W9N - W9N // 20 then
      ok = false
    else
      last = math.max(last, tonumber(t))
      cpu = cpu + tonumber(c)
    end
  end
  local w = np == 1 and "W9 95/5 1 proc" or "W9 95/5 2 procs"
  local label = np == 1 and "get/set, 1 process" or "get/set, 2 processes (aggregate)"
  rate(w, label, "sysvshm", ok, np * W9N, last - t0)
  -- CPU time per operation (the processes' own, os.clock): on a machine
  -- whose cores are busy with other work, the aggregate rate says more
  -- about the scheduler than about the dictionary; this says whether
  -- sharing it made each operation dearer
  if ok then
    out("N", ("%s sysvshm: %.0f ns CPU per operation, %.2f cores busy on average"):format(
      w, cpu * 1e9 / (np * W9N), cpu / (last - t0)))
  end
end

function W.sysvshm_W9()
  local okd, dict = pcall(require, "sysvshm.dict")
  if not okd then
    for _, r in ipairs(W9ROWS) do
      out("S", r[1], r[2], "sysvshm", "sysvshm.dict missing")
    end
    return
  end
  local keys, cnts, vals = w9data()
  local seg, id = private(W9DICT + DICTSIZE)
  local d = assert(dict.new(seg, W9DICT, DICTSIZE))

  -- bytes per entry: the 1000 keys in the empty dictionary
  local cap, free0 = d:capacity(), d:free_space()
  for j = 1, NKEYS do
    assert(d:set(keys[j], vals[j]))
  end
  local free1, entries = d:free_space(), d:stats().entries
  if entries == NKEYS then
    bytes("W9 memory", W9ROWS[1][2], "sysvshm", (cap - free1) / entries)
    bytes("W9 memory", W9ROWS[2][2], "sysvshm", (free0 - free1) / entries)
  else
    fail("W9 memory", W9ROWS[1][2], "sysvshm", ("%s entries after %d sets"):format(entries, NKEYS))
  end

  local t = clock()
  for i = 0, W9N - 1 do
    local j = i % NKEYS + 1
    d:set(keys[j], vals[j])
  end
  t = clock() - t
  local last = (W9N - 1) % NKEYS + 1
  rate("W9 set", "d:set(k, v)", "sysvshm", d:get(keys[last]) == vals[last], W9N, t)

  local x
  t = clock()
  for i = 0, W9N - 1 do
    x = d:get(keys[i % NKEYS + 1])
  end
  t = clock() - t
  rate("W9 get", "d:get(k)", "sysvshm", x == vals[last], W9N, t)

  t = clock()
  for i = 0, W9N - 1 do
    d:incr(cnts[i % NKEYS + 1], 1, 0)
  end
  t = clock() - t
  local ok = true
  for j = 1, NKEYS do
    ok = ok and d:get(cnts[j]) == W9N // NKEYS
  end
  rate("W9 incr", "d:incr(k, 1, 0)", "sysvshm", ok, W9N, t)

  w9mixed(seg, id, 1)
  w9mixed(seg, id, 2)
end

-- The floor (a Lua table in one process: nothing shared) and the cost of
-- one C call (string.sub of 8 bytes, in the same loop shape as d:get).
function W.plain_W9()
  -- bytes per entry of a table holding its own strings (made before any
  -- other copy of them exists: short strings are interned)
  collectgarbage()
  collectgarbage()
  local m0 = collectgarbage("count")
  local mt = {}
  for i = 1, NKEYS do
    mt[("key:%012d"):format(i)] = ("v%015d"):format(i) .. ("x"):rep(48)
  end
  collectgarbage()
  local m1 = collectgarbage("count")
  if mt[("key:%012d"):format(NKEYS)] == ("v%015d"):format(NKEYS) .. ("x"):rep(48) then
    bytes("W9 memory", "table, keys and values included", "plain", (m1 - m0) * 1024 / NKEYS)
  else
    fail("W9 memory", "table, keys and values included", "plain", "check failed")
  end
  mt = nil -- luacheck: ignore 311

  local keys, cnts, vals = w9data()
  local tab = {}
  local t = clock()
  for i = 0, W9N - 1 do
    local j = i % NKEYS + 1
    tab[keys[j]] = vals[j]
  end
  t = clock() - t
  local last = (W9N - 1) % NKEYS + 1
  rate("W9 set", "t[k] = v (a table in one process)", "plain", tab[keys[last]] == vals[last], W9N, t)

  local x
  t = clock()
  for i = 0, W9N - 1 do
    x = tab[keys[i % NKEYS + 1]]
  end
  t = clock() - t
  rate("W9 get", "t[k] (a table in one process)", "plain", x == vals[last], W9N, t)

  local s = table.concat(vals)
  t = clock()
  for i = 0, W9N - 1 do
    local j = i % NKEYS + 1
    x = s:sub(j, j + 7)
  end
  t = clock() - t
  rate("W9 get", "s:sub(j, j+7) (reference: one C call)", "plain", x == s:sub(last, last + 7), W9N, t)

  t = clock()
  for i = 0, W9N - 1 do
    local k = cnts[i % NKEYS + 1]
    tab[k] = (tab[k] or 0) + 1
  end
  t = clock() - t
  local ok = true
  for j = 1, NKEYS do
    ok = ok and tab[cnts[j]] == W9N // NKEYS
  end
  rate("W9 incr", "t[k] = (t[k] or 0) + 1 (a table)", "plain", ok, W9N, t)

  t = clock()
  local found = w9loop({
    set = function(_, k, v) tab[k] = v end,
    get = function(_, k) return tab[k] end,
  }, 0, keys, vals)
  t = clock() - t
  rate("W9 95/5 1 proc", "get/set, 1 process, on a table through methods", "plain",
    found == W9N - W9N // 20, W9N, t)
end

-- ---- main ------------------------------------------------------------------------

local what = arg[1]
local f = W[what] or W[("%s_%s"):format(arg[1], arg[2])]
if not f then
  io.stderr:write("usage: lua5.4 bench.lua sysvshm|plain W0..W9|lock|lock2p\n")
  os.exit(2)
end
if W[what] then
  f(table.unpack(arg, 2))
else
  f()
end
