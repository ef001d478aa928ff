-- A finalizer that detaches a segment while one of its methods runs.
--
-- Any Lua API call that allocates (pushing a new string, converting a
-- number to a string) can run a step of the garbage collector, and so any
-- __gc, which may call seg:detach() on the very segment the method is
-- using.  A method must then raise, never touch the NULL address: the
-- detached check at entry is not enough for a method that allocates before
-- its last access (seg:pack converts numbers to strings, seg:unpack pushes
-- many strings).
--
-- Each case runs in its own lua5.4 child (a crash of the old code kills the
-- child, not busted), which arms, before every call, an object that has
-- just become garbage and whose __gc detaches the attachment the call uses,
-- with the collector made to run at every allocation.  Every outcome is
-- checked: the right result (the bytes through a second attachment and
-- string.pack/string.unpack), "attempt to use a detached segment" (the
-- finalizer ran before the call), or "segment detached during the call"
-- (it ran inside, and then nothing was written).  For the methods that
-- allocate before their last access the second must actually happen.
local h = require "helpers"
local shm = h.shm

-- The cases, as Lua source: the child runs them, and the parent loads them
-- too, to see that every method of a segment has one.  Each case:
--   call(seg, keep)   the call under test; its results are checked
--   before_ok         true for a method that answers a detached segment
--                     without raising (detach, shmdt, tostring)
--   setup(keep, n)    (optional) before call number n, through the second
--                     attachment `keep`, before the finalizer is armed
--   check(keep, r, seg)  for a call that returned: nil, or what is wrong
--                     (r: table.pack of the results)
--   untouched(keep)   (optional, for methods that write) for a call that
--                     raised: nil when nothing was written, or what was
--   lands             true when the detach can land in the middle of the
--                     call (the method allocates before its last access):
--                     it must be seen to, at least `want` times
local CASES = [==[
local SIZE = 4096
local shm = require "sysvshm"

-- seg:unpack formats and their values: many strings to push, then more
-- items after them; and a short one (fast formats).  The strings are
-- longer than Lua interns (40 bytes), so that each push allocates.
local function long(c, i) return (c):rep(41) .. i end
local UFMT = ("<s1 z i4 c48 d "):rep(12)
local UVALS = {}
for i = 1, 12 do
  local v = { long("s", i), long("z", i), -i, long("c", i % 10) .. "c", i + 0.25 }
  table.move(v, 1, #v, #UVALS + 1, UVALS)
end
local USHORT = "<z i4 z d"
local USHORTVALS = { long("first", 1), 7, long("second", 2), 2.5 }

-- seg:pack: values that are numbers where the format wants strings, so
-- each is converted to a string, on the fast path (up to 16 items) and the
-- slow one (more).  The numbers differ from call to call (n is the call's
-- number), so that each conversion makes a new string.
local PFAST = "<z s2 c24 i4 d z"
local function PFASTVALS(n) return { n + 0.25, n * 1000 + 7, -n, "77", 3, n + 0.5 } end
local PSLOW = ("<z s1 "):rep(20)
local function PSLOWVALS(n)
  local t = {}
  for i = 1, 40 do t[i] = (i % 2 == 0) and n * 1000 + i or n + i / 4 end
  return t
end

local function zero(keep) keep:fill(0) end

local function zeros(keep, n)
  local got = keep:read(0, n)
  if got ~= ("\0"):rep(n) then return "bytes written by a call that raised" end
end

local function unpack_check(fmt, vals, off)
  return function(keep, r)
    local want = table.pack(string.unpack(fmt, keep:read(off)))
    want[want.n] = want[want.n] - 1 + off -- string.unpack's position is 1-based
    if r.n ~= want.n then return ("%d results, %d expected"):format(r.n, want.n) end
    for i = 1, r.n do
      if r[i] ~= want[i] or math.type(r[i]) ~= math.type(want[i]) then
        return ("result %d is %s, %s expected"):format(i, tostring(r[i]), tostring(want[i]))
      end
    end
    if #vals > 0 and want[1] ~= vals[1] then return "the setup did not write the values" end
  end
end

local function pack_case(fmt, values)
  local vals, packed
  return {
    lands = true,
    setup = function(keep, n)
      zero(keep)
      vals = values(n)
      packed = string.pack(fmt, table.unpack(vals))
    end,
    call = function(seg) return seg:pack(fmt, 0, table.unpack(vals)) end,
    check = function(keep, r)
      if r[1] ~= #packed then return "next offset " .. tostring(r[1]) end
      if keep:read(0, #packed) ~= packed then return "bytes differ from string.pack's" end
    end,
    untouched = function(keep) return zeros(keep, #packed) end,
  }
end

local function word(keep) return string.unpack("<i8", keep:read(8, 8)) end

local cases = {
  size = {
    call = function(seg) return seg:size() end,
    check = function(_, r) if r[1] ~= SIZE then return "size " .. tostring(r[1]) end end,
  },
  id = {
    call = function(seg) return seg:id() end,
    check = function(keep, r) if r[1] ~= keep:id() then return "id " .. tostring(r[1]) end end,
  },
  readonly = {
    call = function(seg) return seg:readonly() end,
    check = function(_, r) if r[1] ~= false then return "readonly " .. tostring(r[1]) end end,
  },
  read = {
    setup = function(keep) keep:write(100, ("r"):rep(200)) end,
    call = function(seg) return seg:read(100, 200) end,
    check = function(_, r) if r[1] ~= ("r"):rep(200) then return "read the wrong bytes" end end,
  },
  write = {
    setup = zero,
    call = function(seg) return seg:write(10, "written") end,
    check = function(keep, r)
      if r[1] ~= 17 or keep:read(10, 7) ~= "written" then return "write did not" end
    end,
    untouched = function(keep) return zeros(keep, 64) end,
  },
  byte = {
    setup = function(keep) keep:setbyte(5, 0xab) end,
    call = function(seg) return seg:byte(5) end,
    check = function(_, r) if r[1] ~= 0xab then return "byte " .. tostring(r[1]) end end,
  },
  setbyte = {
    setup = zero,
    call = function(seg) return seg:setbyte(7, "x") end,
    check = function(keep) if keep:read(7, 1) ~= "x" then return "setbyte did not" end end,
    untouched = function(keep) return zeros(keep, 64) end,
  },
  cstring = {
    setup = function(keep) keep:write(0, ("c"):rep(300) .. "\0tail") end,
    call = function(seg) return seg:cstring(0) end,
    check = function(_, r) if r[1] ~= ("c"):rep(300) then return "cstring wrong" end end,
  },
  fill = {
    setup = zero,
    call = function(seg) return seg:fill("f", 20, 30) end,
    check = function(keep)
      if keep:read(0, 64) ~= ("\0"):rep(20) .. ("f"):rep(30) .. ("\0"):rep(14) then
        return "fill wrong"
      end
    end,
    untouched = function(keep) return zeros(keep, 64) end,
  },
  detach = {
    before_ok = true, -- a second detach does nothing
    call = function(seg) return seg:detach() end,
    check = function(_, r) if r[1] ~= true then return "detach returned " .. tostring(r[1]) end end,
  },
  pack = pack_case(PFAST, PFASTVALS),
  pack_slow = pack_case(PSLOW, PSLOWVALS),
  unpack = {
    lands = true,
    setup = function(keep) keep:pack(UFMT, 0, table.unpack(UVALS)) end,
    call = function(seg) return seg:unpack(UFMT, 0) end,
    check = unpack_check(UFMT, UVALS, 0),
  },
  unpack_short = {
    lands = true,
    setup = function(keep) keep:pack(USHORT, 40, table.unpack(USHORTVALS)) end,
    call = function(seg) return seg:unpack(USHORT, 40) end,
    check = unpack_check(USHORT, USHORTVALS, 40),
  },
  atomic_load = {
    setup = function(keep) keep:write(8, string.pack("<i8", -5)) end,
    call = function(seg) return seg:atomic_load(8) end,
    check = function(_, r) if r[1] ~= -5 then return "loaded " .. tostring(r[1]) end end,
  },
  atomic_store = {
    setup = zero,
    call = function(seg) return seg:atomic_store(8, 99) end,
    check = function(keep) if word(keep) ~= 99 then return "stored " .. word(keep) end end,
    untouched = function(keep) return zeros(keep, 64) end,
  },
  atomic_add = {
    setup = zero,
    call = function(seg) return seg:atomic_add(8, 3) end,
    check = function(keep, r)
      if r[1] ~= 0 or word(keep) ~= 3 then return "added: " .. word(keep) end
    end,
    untouched = function(keep) return zeros(keep, 64) end,
  },
  atomic_cas = {
    setup = zero,
    call = function(seg) return seg:atomic_cas(8, 0, 11) end,
    check = function(keep, r)
      if r[1] ~= true or r[2] ~= 0 or word(keep) ~= 11 then return "cas: " .. word(keep) end
    end,
    untouched = function(keep) return zeros(keep, 64) end,
  },
  wait = {
    setup = zero,
    call = function(seg) return seg:wait(16, 1, 0) end, -- the word is 0: returns at once
    check = function(_, r) if r[1] ~= true then return "wait returned " .. tostring(r[1]) end end,
  },
  wait_timeout = {
    setup = zero,
    call = function(seg) return seg:wait(16, 0, 0) end, -- times out at once
    check = function(_, r)
      if r[1] ~= false or r[2] ~= "timeout" then return "wait returned " .. tostring(r[1]) end
    end,
  },
  wake = {
    call = function(seg) return seg:wake(16) end,
    check = function(_, r) if r[1] ~= 0 then return "woke " .. tostring(r[1]) end end,
  },
  __len = {
    call = function(seg) return #seg end,
    check = function(_, r) if r[1] ~= SIZE then return "#seg " .. tostring(r[1]) end end,
  },
  __tostring = {
    before_ok = true, -- it describes a detached segment too
    call = function(seg) return tostring(seg) end,
    check = function(_, r)
      if not r[1]:find("^sysvshm.segment %(id %d+, 4096 bytes%)$")
        and not r[1]:find("^sysvshm.segment %(id %d+, 4096 bytes, detached%)$") then
        return "tostring " .. r[1]
      end
    end,
  },
  __close = {
    call = function(seg)
      local s <close> = seg
      return s:size()
    end,
    check = function(_, r, seg)
      if r[1] ~= SIZE then return "size " .. tostring(r[1]) end
      if shm.type(seg) ~= "detached segment" then return "not closed" end
    end,
  },
  shmdt = {
    before_ok = true, -- a detached segment is refused with EINVAL
    call = function(seg) return shm.shmdt(seg) end,
    check = function(_, r)
      -- the finalizer may have detached it first: shmdt refuses (EINVAL)
      if r[1] ~= true and r[3] ~= shm.EINVAL then return "shmdt " .. tostring(r[2]) end
    end,
  },
}

-- the cases that cover each method (pack_slow covers pack, ...)
local covers = {}
for name in pairs(cases) do covers[(name:gsub("_slow$", ""):gsub("_short$", ""):gsub("_timeout$", ""))] = true end

return { cases = cases, covers = covers, SIZE = SIZE }
]==]

-- The child: CASES, then the loop.  Arguments: case name, segment id,
-- iterations at most, landings wanted.
local RUNNER = [==[
local CASES, name, id, maxiter, want = ...
local shm = require "sysvshm"
local c = load(CASES, "=cases")()
local case = assert(c.cases[name], "no case " .. name)
local keep = assert(shm.attach(id))
local hits, before, ok = 0, 0, 0
local pad

-- The collector at every allocation: no pause between cycles (1 is stored
-- as 0), a step at every allocation (stepsize 2^1 bytes), and steps of
-- several sizes (stepmul), so that the finalizer runs before, inside and
-- after the calls, whatever the heap (tools/check.sh's gcstress gate sets
-- its own parameters first); and one call in five with the collector
-- stopped, so that some calls surely complete (their results are checked).
local STEPMULS = { 1000, 400, 100, 40, false }

local i = 0

local function done()
  return i >= 100 and (not case.lands or hits >= want) and (case.before_ok or before > 0) and ok > 0
end

local function fail(i, what)
  io.stderr:write(("%s, call %d: %s\n"):format(name, i, what))
  os.exit(1)
end

while i < maxiter and not done() do
  i = i + 1
  local stepmul = STEPMULS[i % #STEPMULS + 1]
  if stepmul then collectgarbage("incremental", 1, stepmul, 1) end
  if case.setup then case.setup(keep, i) end
  local seg = assert(shm.attach(id))
  setmetatable({}, { __gc = function() seg:detach() end })
  for _ = 1, i // #STEPMULS % 4 do pad = {} end -- 0 to 3 allocations: sometimes it runs here
  if not stepmul then collectgarbage("stop") end
  local r = table.pack(pcall(case.call, seg, keep))
  collectgarbage("restart")
  if r[1] then
    local bad = case.check(keep, table.pack(table.unpack(r, 2, r.n)), seg)
    if bad then fail(i, bad) end
    ok = ok + 1
  else
    local e = tostring(r[2])
    if e:find("attempt to use a detached segment", 1, true) then
      before = before + 1
    elseif e:find("segment detached during the call", 1, true) then
      if not case.lands then fail(i, "detached in the middle of a call that cannot allocate") end
      hits = hits + 1
    else
      fail(i, "unexpected error: " .. e)
    end
    local bad = case.untouched and case.untouched(keep)
    if bad then fail(i, bad) end
  end
  seg:detach()
end
collectgarbage("collect")
keep:detach()
io.write(("calls %d landed %d before %d ok %d\n"):format(i, hits, before, ok))
]==]

local loaded = load(CASES, "=cases")()

describe("a __gc that detaches the segment", function()
  after_each(h.cleanup)

  it("has a case for every method and metamethod of a segment", function()
    local seg = h.new_segment(64)
    local mt = getmetatable(seg)
    local names = {}
    for k in pairs(mt.__index) do names[#names + 1] = k end
    for _, k in ipairs { "__len", "__tostring", "__close" } do
      assert.is_function(mt[k])
      names[#names + 1] = k
    end
    assert.is_true(#names >= 18)
    for _, k in ipairs(names) do
      assert.is_true(loaded.covers[k] == true, "no case for segment method " .. k)
    end
  end)

  local names = {}
  for k in pairs(loaded.cases) do names[#names + 1] = k end
  table.sort(names)

  for _, name in ipairs(names) do
    local case = loaded.cases[name]
    local what = case.lands and "a detach mid-call raises, the old address unused"
      or "the right result or a clean error"
    it(("%s: %s"):format(name, what), function()
      local id = h.new_id(loaded.SIZE)
      local want = 20
      local r = h.run_lua(RUNNER, { CASES, name, id, 3000, want })
      local crash = r.how == "exit" and r.code > 128 and (" = 128 + signal %d"):format(r.code - 128) or ""
      assert.is_true(r.ok, ("child failed (%s %s%s): %s%s"):format(
        tostring(r.how), tostring(r.code), crash, r.stderr, r.stdout))
      local calls, landed, before, ok = r.stdout:match("calls (%d+) landed (%d+) before (%d+) ok (%d+)")
      assert.is_truthy(calls, "no report: " .. r.stdout .. r.stderr)
      landed, before, ok = tonumber(landed), tonumber(before), tonumber(ok)
      -- the finalizer ran at every kind of moment it could
      if not case.before_ok then
        assert.is_true(before > 0, "the finalizer never ran before the call: " .. r.stdout)
      end
      assert.is_true(ok > 0, "the call never completed: " .. r.stdout)
      if case.lands then
        assert.is_true(landed >= want, "the detach landed inside the call too rarely: " .. r.stdout)
      end
      assert.equal(0, shm.stat(id).nattch)
    end)
  end
end)
