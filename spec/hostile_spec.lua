-- Hostile peers (issue 10): processes with write access scribble over
-- whole mutexes and whole channel regions (all 0xFF, plausible thread ids
-- of dead and live processes with real identity bits, seeded random bytes)
-- while other processes use them.  The users must all end on their own,
-- without a signal, every call returning or raising within its timeout,
-- and nothing outside the scribbled areas may change.
--
-- SYSVSHM_SCRIBBLE_SECONDS (default 4) sets how long the users and
-- scribblers run; SYSVSHM_STRESS_SCALE < 1 (valgrind) allows slower calls.
local h = require "helpers"

local SECONDS = tonumber(os.getenv("SYSVSHM_SCRIBBLE_SECONDS") or "") or 4
local SLOW = (tonumber(os.getenv("SYSVSHM_STRESS_SCALE") or "") or 1) < 1
local MAX_CALL = SLOW and 15 or 2 -- seconds any call may take (timeouts are 0.05 s)

local SIZE = 65536
local MUTEXES, NMUTEX = 1024, 8         -- 8 lock words at 1024..1087
local CHAN, CHAN_SIZE = 4096, 8192      -- a channel region at 4096..12287

local PRELUDE = [[
local shm = require "sysvshm"
local channel = require "sysvshm.channel"
io.stdout:setvbuf("line")
print("pid " .. io.open("/proc/self/stat"):read("n"))
local A = {}
for i = 1, select("#", ...) do A[i] = math.tointeger(tonumber((select(i, ...)))) end
local seg = assert(shm.attach(A[1]))
local seconds, seed = A[2], A[3]
local MUTEXES, NMUTEX, CHAN, CHAN_SIZE = ]] .. ("%d, %d, %d, %d"):format(MUTEXES, NMUTEX, CHAN,
  CHAN_SIZE) .. "\n" .. [[
math.randomseed(seed)
local stop = shm.clock() + seconds
]]

-- Uses the mutexes and the channel with short timeouts, every call under
-- pcall; prints its counts and the longest call.
local USER = [[
local ms = {}
for i = 1, NMUTEX do ms[i] = shm.mutex(seg, MUTEXES + 8 * (i - 1), { open = true }) end
-- the scribblers may have started first: open when the header is whole
local ch
repeat
  local ok, c = pcall(channel.open, seg, CHAN)
  if ok then ch = c else shm.sleep(0.001) end
until ch or shm.clock() > stop
local calls, errors, died, longest = 0, 0, 0, 0
local ops = {
  function()
    local m = ms[math.random(NMUTEX)]
    if m:locked() then return m:unlock() end
    local ok, why = m:lock(0.05)
    if why == "owner died" then died = died + 1 end
    return ok
  end,
  function()
    local m = ms[math.random(NMUTEX)]
    if m:locked() then return m:unlock() end
    local ok = m:trylock()
    if ok then return m:unlock() end
  end,
  function() return ch:send(("s"):rep(math.random(0, 600)), 0.05) end,
  function() return ch:recv(0.05) end,
  function() return ch:sendpack("<i8 z", calls, "packed", 0.05) end,
  function() return ch:recvunpack("<i8 z", 0.05) end,
  function() return ch:pending(), ch:closed(), ch:maxsize() end,
  function() ch = channel.open(seg, CHAN) end,
  function() if math.random(50) == 1 then ch:close() end end,
}
while shm.clock() < stop do
  local op = ops[math.random(#ops)]
  local t0 = shm.clock()
  local ok = pcall(op)
  local took = shm.clock() - t0
  if took > longest then longest = took end
  calls = calls + 1
  if not ok then errors = errors + 1 end
end
for i = 1, NMUTEX do if ms[i]:locked() then pcall(ms[i].unlock, ms[i]) end end
print(("user calls=%d errors=%d died=%d longest=%.3f"):format(calls, errors, died, longest))
]]

-- Scribbles; every ~50 ms in three it puts fresh structures back, as an
-- owner resetting its region would, so that the users keep getting through.
local SCRIBBLER = [[
local dead = {}
for i = 4, #A do dead[#dead + 1] = A[i] end
local live = { io.open("/proc/self/stat"):read("n"), 1 }
local rounds = 0
-- the identity bits of a real lock word of this pid namespace: its own
local real = shm.mutex(seg, MUTEXES, { open = true })
local mine = 0
if real:lock(1) then
  mine = seg:atomic_load(MUTEXES)
  real:unlock()
end
local function a_word()
  local ident = math.random(0, 2) == 0 and math.random(math.mininteger, math.maxinteger) or mine
  local pool = math.random(0, 1) == 0 and dead or live
  local tid = pool[math.random(#pool)]
  return (ident & ~0x3fffff) | tid
end
local areas = { { MUTEXES, 8 * NMUTEX }, { CHAN, CHAN_SIZE }, { CHAN, 320 } }
local modes = {
  function() seg:fill(0xFF, MUTEXES, 8 * NMUTEX) seg:fill(0xFF, CHAN, CHAN_SIZE) end,
  function()
    for i = 0, NMUTEX - 1 do seg:atomic_store(MUTEXES + 8 * i, a_word()) end
    for off = CHAN, CHAN + 312, 8 do seg:atomic_store(off, a_word()) end
  end,
  function()
    local a = areas[math.random(#areas)]
    local off = a[1] + math.random(0, a[2] - 1)
    local n = math.random(1, a[1] + a[2] - off)
    local t = {}
    for i = 1, n do t[i] = string.char(math.random(0, 255)) end
    seg:write(off, table.concat(t))
  end,
  function() -- the lock words, tail and head only
    for _, off in ipairs({ CHAN + 192, CHAN + 256, CHAN + 64, CHAN + 128 }) do
      seg:atomic_store(off, math.random(0, 3) == 0 and a_word()
        or math.random(math.mininteger, math.maxinteger))
    end
  end,
}
while shm.clock() < stop do
  modes[math.random(#modes)]()
  rounds = rounds + 1
  shm.sleep(math.random() * 0.003)
  if rounds % 17 == 0 then
    channel.new(seg, CHAN, CHAN_SIZE)
    for i = 0, NMUTEX - 1 do shm.mutex(seg, MUTEXES + 8 * i) end
  end
end
print(("scribbler rounds=%d"):format(rounds))
]]

describe("hostile peers", function()
  after_each(h.cleanup)

  it("scribbling over mutexes and channels crashes, hangs and escapes nothing #stress", function()
    local shm, channel = h.shm, require "sysvshm.channel"
    local seg, id = h.new_removed_segment(SIZE)
    seg:fill(0xA5)
    channel.new(seg, CHAN, CHAN_SIZE)
    for i = 0, NMUTEX - 1 do shm.mutex(seg, MUTEXES + 8 * i) end
    -- ids of processes that are gone
    local dead = {}
    for _ = 1, 4 do dead[#dead + 1] = assert(math.tointeger(tonumber(h.sh("echo $$").stdout))) end
    local limit = math.ceil(SECONDS + (SLOW and 120 or 30))
    local kids = {}
    for i = 1, 3 do
      kids[#kids + 1] = h.spawn_limited(limit, PRELUDE .. USER, id, SECONDS, 100 + i)
    end
    for i = 1, 2 do
      kids[#kids + 1] = h.spawn_limited(limit, PRELUDE .. SCRIBBLER, id, SECONDS, 200 + i,
        table.unpack(dead))
    end
    local calls, errors, died, rounds, longest = 0, 0, 0, 0, 0
    for _, kid in ipairs(kids) do
      local out, ok = h.join(kid)
      assert.is_true(ok, ("a process ended with %s %s:\n%s"):format(tostring(kid.how),
        tostring(kid.code), kid:output()))
      local u = out:match("user [^\n]*")
      if u then
        local f = h.kv(u)
        calls, errors, died = calls + f.calls, errors + f.errors, died + f.died
        longest = math.max(longest, tonumber(f.longest))
        assert.is_true(f.calls > 0, out)
      else
        rounds = rounds + h.kv(assert(out:match("scribbler [^\n]*"), out)).rounds
      end
    end
    print(("hostile peers: %d s, %d scribbles, %d calls (%d errors, %d owner died), "
      .. "longest call %.3f s"):format(SECONDS, rounds, calls, errors, died, longest))
    assert.is_true(longest < MAX_CALL, ("a call took %.3f s"):format(longest))
    -- nothing outside the two areas changed
    local c = string.char(0xA5)
    assert.equals(c:rep(MUTEXES), seg:read(0, MUTEXES))
    assert.equals(c:rep(CHAN - MUTEXES - 8 * NMUTEX), seg:read(MUTEXES + 8 * NMUTEX,
      CHAN - MUTEXES - 8 * NMUTEX))
    assert.equals(c:rep(SIZE - CHAN - CHAN_SIZE), seg:read(CHAN + CHAN_SIZE))
  end)
end)
