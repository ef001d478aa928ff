-- Atomics on 64-bit integers and futex wait/wake on 32-bit words, in one
-- process and across lua5.4 child processes.
local h = require "helpers"
local shm = h.shm

-- ---- local helpers ----------------------------------------------------------

-- Every test removes its segment once its children have attached it (an
-- attached, removed segment stays usable); h.cleanup removes whatever a
-- failing test left, after killing its children.
local new_segment, release, poll, errmsg = h.new_segment, h.release, h.poll, h.errmsg

-- Start `code` in a lua5.4 child that gets `shm` and the extra arguments
-- (as strings) in `...`, alongside the test (h.spawn).
local function spawn(code, ...)
  return h.spawn('local shm = require "sysvshm"\nio.stdout:setvbuf("line")\n' .. code, ...)
end

local join = h.join -- what a child printed, and whether it exited with 0

-- Whether process pid sleeps in a futex (its wchan names the futex wait).
local function in_futex(pid)
  local f = io.open("/proc/" .. pid .. "/wchan", "r")
  if not f then return false end
  local w = f:read("a") or ""
  f:close()
  return w:find("futex", 1, true) ~= nil
end

after_each(h.cleanup)

local LITTLE = string.pack("=i4", 1):byte(1) == 1
local MAX, MIN = math.maxinteger, math.mininteger

-- ---- atomics ------------------------------------------------------------------

describe("atomics", function()
  it("load what store stored, as native signed 64-bit integers", function()
    local seg, id = new_segment(64)
    release(id)
    for _, v in ipairs({ 0, 1, -1, MAX, MIN, 0x0102030405060708, -123456789 }) do
      assert.equals(0, select("#", seg:atomic_store(8, v)))
      local got = seg:atomic_load(8)
      assert.equals(v, got)
      assert.equals("integer", math.type(got))
      assert.equals(string.pack("=j", v), seg:read(8, 8))
      assert.equals(v, (seg:unpack("=j", 8)))
    end
    -- neighbours are untouched
    seg:fill(0)
    seg:atomic_store(8, -1)
    assert.equals(0, seg:atomic_load(0))
    assert.equals(0, seg:atomic_load(16))
    -- floats with an integer value are integers
    seg:atomic_store(0, 3.0)
    assert.equals(3, seg:atomic_load(0))
    assert.equals("integer", math.type(seg:atomic_load(0)))
  end)

  it("add returns the previous value and wraps around like Lua integers", function()
    local seg, id = new_segment(16)
    release(id)
    seg:atomic_store(0, 10)
    assert.equals(10, seg:atomic_add(0, 5))
    assert.equals(15, seg:atomic_load(0))
    assert.equals(15, seg:atomic_add(0, -20))
    assert.equals(-5, seg:atomic_load(0))
    assert.equals(-5, seg:atomic_add(0, 0))
    -- math.maxinteger + 1 wraps to math.mininteger, and back
    seg:atomic_store(0, MAX)
    assert.equals(MAX, seg:atomic_add(0, 1))
    assert.equals(MIN, seg:atomic_load(0))
    assert.equals(MAX + 1, seg:atomic_load(0))
    assert.equals(MIN, seg:atomic_add(0, -1))
    assert.equals(MAX, seg:atomic_load(0))
    seg:atomic_store(0, MIN)
    seg:atomic_add(0, MIN)
    assert.equals(0, seg:atomic_load(0))
    seg:atomic_store(0, -1)
    seg:atomic_add(0, 1)
    assert.equals(0, seg:atomic_load(0))
  end)

  it("cas swaps only when the value is the expected one, and returns the value found", function()
    local seg, id = new_segment(16)
    release(id)
    seg:atomic_store(0, 7)
    assert.same({ true, 7 }, { seg:atomic_cas(0, 7, 9) })
    assert.equals(9, seg:atomic_load(0))
    assert.same({ false, 9 }, { seg:atomic_cas(0, 7, 11) })
    assert.equals(9, seg:atomic_load(0))
    seg:atomic_store(0, MIN)
    assert.same({ false, MIN }, { seg:atomic_cas(0, MAX, 0) })
    assert.same({ true, MIN }, { seg:atomic_cas(0, MIN, MAX) })
    assert.equals(MAX, seg:atomic_load(0))
    assert.same({ true, MAX }, { seg:atomic_cas(0, MAX, MAX) })
    assert.equals(MAX, seg:atomic_load(0))
  end)

  it("refuse misaligned and out-of-bounds offsets", function()
    local seg, id = new_segment(60) -- not a multiple of 8
    release(id)
    seg:fill(0)
    local calls = {
      load = function(off) return seg:atomic_load(off) end,
      store = function(off) return seg:atomic_store(off, 1) end,
      add = function(off) return seg:atomic_add(off, 1) end,
      cas = function(off) return seg:atomic_cas(off, 0, 0) end,
    }
    for name, call in pairs(calls) do
      for off = 1, 7 do
        assert.equals(("bad argument #1 to '%s' (offset %d is not 8-byte aligned)")
          :format("atomic_" .. name, off), errmsg(call, off))
      end
      assert.is_nil(errmsg(call, 48), name)
      assert.matches("8 bytes at offset 56 run past the end of the segment (size 60)",
        errmsg(call, 56), 1, true)
      assert.matches("offset 64 out of range (segment size 60)", errmsg(call, 64), 1, true)
      assert.matches("offset -8 out of range", errmsg(call, -8), 1, true)
      assert.matches("out of range", errmsg(call, MAX & ~7), 1, true)
      assert.matches("out of range", errmsg(call, MIN), 1, true)
      assert.matches("number has no integer representation", errmsg(call, 0.5), 1, true)
      assert.matches("integer expected, got string", errmsg(call, "0"), 1, true)
    end
    -- values are strict integers too
    assert.matches("number has no integer representation",
      errmsg(function() return seg:atomic_store(0, 1.5) end), 1, true)
    assert.matches("integer expected, got string",
      errmsg(function() return seg:atomic_add(0, "1") end), 1, true)
    assert.matches("integer expected, got no value",
      errmsg(function() return seg:atomic_cas(0, 1) end), 1, true)
    assert.equals(0, seg:atomic_load(0))
  end)

  it("on a read-only attachment: load works, store/add/cas raise and change nothing", function()
    local seg, id = new_segment(16)
    local ro = assert(shm.attach(id, { readonly = true }))
    release(id)
    seg:atomic_store(0, 42)
    assert.equals(42, ro:atomic_load(0))
    for _, call in ipairs({
      function() return ro:atomic_store(0, 1) end,
      function() return ro:atomic_add(0, 1) end,
      function() return ro:atomic_cas(0, 42, 1) end,
    }) do
      assert.equals("attempt to write to a read-only segment", errmsg(call))
    end
    assert.equals(42, seg:atomic_load(0))
    ro:detach()
  end)

  it("refuse a detached segment", function()
    local seg, id = new_segment(16)
    release(id)
    seg:detach()
    assert.equals("attempt to use a detached segment", errmsg(function() return seg:atomic_load(0) end))
    assert.equals("attempt to use a detached segment", errmsg(function() return seg:atomic_add(0, 1) end))
    assert.equals("attempt to use a detached segment", errmsg(function() return seg:wait(0, 0, 0) end))
    assert.equals("attempt to use a detached segment", errmsg(function() return seg:wake(0) end))
  end)

  it("lose no increment: 4 processes x 100,000 atomic_add", function()
    local seg, id = new_segment(64)
    seg:fill(0)
    -- offset 0: the counter; 8: children attached; 16: the start flag
    local code = [[
      local id, n = tonumber((...)), tonumber((select(2, ...)))
      local seg = assert(shm.attach(id))
      seg:atomic_add(8, 1)
      local deadline = shm.clock() + 20
      while seg:atomic_load(16) == 0 and shm.clock() < deadline do seg:wait(16, 0, 1) end
      for _ = 1, n do seg:atomic_add(0, 1) end
      print("done " .. n)
    ]]
    local children = {}
    for i = 1, 4 do children[i] = spawn(code, id, 100000) end
    assert.is_truthy(poll(function() return seg:atomic_load(8) == 4 end, 20))
    release(id) -- every child is attached
    seg:atomic_store(16, 1)
    seg:wake(16)
    for i = 1, 4 do
      local out, ok = join(children[i])
      assert.is_true(ok, out)
      assert.equals("done 100000\n", out)
    end
    assert.equals(400000, seg:atomic_load(0))
  end)
end)

-- ---- wait / wake --------------------------------------------------------------

describe("wait and wake", function()
  it("wait returns true at once when the word differs, comparing modulo 2^32", function()
    local seg, id = new_segment(16)
    release(id)
    seg:fill(0)
    seg:pack("=I4", 0, 5)
    assert.same({ true }, { seg:wait(0, 6, 5) })
    assert.same({ true }, { seg:wait(0, (1 << 32) + 6, 5) })
    assert.same({ true }, { seg:wait(0, -5, 5) })
    -- equal modulo 2^32: it sleeps, until the timeout
    assert.same({ false, "timeout" }, { seg:wait(0, (1 << 32) + 5, 0.01) })
    assert.same({ false, "timeout" }, { seg:wait(0, 5 - (1 << 32), 0.01) })
    assert.same({ false, "timeout" }, { seg:wait(0, 5 + (7 << 32), 0.01) })
    seg:pack("=I4", 0, 0xffffffff)
    assert.same({ false, "timeout" }, { seg:wait(0, -1, 0.01) })
    assert.same({ true }, { seg:wait(0, 0xfffffffe, 5) })
    -- only the 32-bit word at off counts
    seg:pack("=I4", 4, 1)
    assert.same({ false, "timeout" }, { seg:wait(0, 0xffffffff, 0.01) })
  end)

  it("wait times out with false, 'timeout'", function()
    local seg, id = new_segment(16)
    release(id)
    seg:fill(0)
    assert.same({ false, "timeout" }, { seg:wait(0, 0, 0.05) })
    assert.same({ false, "timeout" }, { seg:wait(12, 0, 0) })
    assert.same({ false, "timeout" }, { seg:wait(4, 0, 1e-9) })
  end)

  it("wake returns 0 when nobody waits", function()
    local seg, id = new_segment(16)
    release(id)
    assert.equals(0, seg:wake(0))
    assert.equals(0, seg:wake(4, 1))
    assert.equals(0, seg:wake(8, 0))
    assert.equals(0, seg:wake(12, math.maxinteger))
  end)

  it("refuse misaligned and out-of-bounds offsets and bad arguments", function()
    local seg, id = new_segment(18) -- not a multiple of 4
    release(id)
    seg:fill(0)
    for _, off in ipairs({ 1, 2, 3, 6 }) do
      assert.matches(("offset %d is not 4-byte aligned"):format(off),
        errmsg(function() return seg:wait(off, 1, 0) end), 1, true)
      assert.matches(("offset %d is not 4-byte aligned"):format(off),
        errmsg(function() return seg:wake(off) end), 1, true)
    end
    assert.same({ false, "timeout" }, { seg:wait(12, 0, 0) })
    assert.matches("4 bytes at offset 16 run past the end",
      errmsg(function() return seg:wait(16, 0, 0) end), 1, true)
    assert.matches("4 bytes at offset 16 run past the end",
      errmsg(function() return seg:wake(16) end), 1, true)
    assert.matches("offset 20 out of range", errmsg(function() return seg:wait(20, 0, 0) end), 1, true)
    assert.matches("offset -4 out of range", errmsg(function() return seg:wake(-4) end), 1, true)
    assert.matches("timeout must be a non-negative number of seconds",
      errmsg(function() return seg:wait(0, 0, -1) end), 1, true)
    assert.matches("timeout must be a non-negative number of seconds",
      errmsg(function() return seg:wait(0, 0, 0 / 0) end), 1, true)
    assert.matches("count must not be negative", errmsg(function() return seg:wake(0, -1) end), 1, true)
    assert.matches("number has no integer representation",
      errmsg(function() return seg:wait(0, 0.5, 0) end), 1, true)
    assert.matches("integer expected, got no value",
      errmsg(function() return seg:wait(0) end), 1, true)
  end)

  it("work on a read-only attachment", function()
    local seg, id = new_segment(16)
    local ro = assert(shm.attach(id, { readonly = true }))
    release(id)
    seg:fill(0)
    assert.same({ true }, { ro:wait(0, 1, 5) })
    assert.same({ false, "timeout" }, { ro:wait(0, 0, 0.01) })
    assert.equals(0, ro:wake(0))
    ro:detach()
  end)

  it("on little-endian, the word at off is the low half of a 64-bit counter #env", function()
    if not LITTLE then
      pending(h.env("big-endian machine"))
      return
    end
    local seg, id = new_segment(16)
    release(id)
    seg:atomic_store(0, (1 << 32) + 7)
    assert.equals(7, (seg:unpack("<I4", 0)))
    assert.same({ false, "timeout" }, { seg:wait(0, 7, 0.01) })
    assert.same({ false, "timeout" }, { seg:wait(0, (1 << 32) + 7, 0.01) })
    assert.same({ true }, { seg:wait(0, 8, 5) })
    seg:atomic_add(0, 1)
    assert.same({ false, "timeout" }, { seg:wait(0, seg:atomic_load(0), 0.01) })
    assert.same({ true }, { seg:wait(0, 7, 5) })
  end)

  -- A child that attaches, says it is ready and waits on the word at 0 while
  -- it is 0, then prints what wait returned.
  local waiter = [[
    local seg = assert(shm.attach(tonumber((...))))
    print("pid " .. io.open("/proc/self/stat"):read("n"))
    seg:atomic_add(8, 1)
    local ok, why = seg:wait(0, 0, 10)
    print(tostring(ok) .. " " .. tostring(why))
  ]]

  it("a waiter in another process is woken by wake", function()
    local seg, id = new_segment(16)
    seg:fill(0)
    local child = spawn(waiter, id)
    local pid = child:waitpid()
    assert.is_truthy(poll(function() return seg:atomic_load(8) == 1 end))
    release(id)
    local asleep = poll(function() return in_futex(pid) end, 5)
    shm.sleep(0.05)
    seg:atomic_store(0, 1)
    local n = seg:wake(0)
    if asleep then
      assert.equals(1, n)
    else -- no wchan to look at: 0 if it had not gone to sleep yet
      assert.is_true(n == 0 or n == 1)
    end
    local out, ok = join(child)
    assert.is_true(ok, out)
    assert.equals("true nil\n", out)
  end)

  it("wake returns how many it woke: 1 for one waiter, all by default", function()
    local seg, id = new_segment(16)
    seg:fill(0)
    local a, b = spawn(waiter, id), spawn(waiter, id)
    local pa, pb = a:waitpid(), b:waitpid()
    assert.is_truthy(poll(function() return seg:atomic_load(8) == 2 end))
    release(id)
    local asleep = poll(function() return in_futex(pa) and in_futex(pb) end, 10)
    if asleep then
      -- both sleep in the futex: wake(off, 1) wakes one, wake(off) the other
      assert.equals(1, seg:wake(0, 1))
      assert.equals(1, seg:wake(0))
      assert.equals(0, seg:wake(0))
    else
      -- no wchan to look at: wake one at a time until both are woken (the
      -- word stays 0, so a waiter only returns when woken)
      local woken = 0
      poll(function()
        woken = woken + seg:wake(0, 1)
        return woken >= 2
      end, 10)
      assert.equals(2, woken)
    end
    for _, child in ipairs({ a, b }) do
      local out, ok = join(child)
      assert.is_true(ok, out)
      assert.equals("true nil\n", out)
    end
  end)

  it("a counter bumped with atomic_add + wake can be waited on through its low half #env", function()
    if not LITTLE then
      pending(h.env("big-endian machine"))
      return
    end
    local seg, id = new_segment(16)
    local start = (1 << 32) - 2 -- the low half wraps on the way
    seg:atomic_store(0, start)
    seg:atomic_store(8, 0)
    local child = spawn([[
      local seg = assert(shm.attach(tonumber((...))))
      local target = tonumber((select(2, ...)))
      local v = seg:atomic_load(0)
      seg:atomic_store(8, 1)
      while v < target do
        local ok, why = seg:wait(0, v, 10)
        if not ok then print(why) os.exit(1) end
        v = seg:atomic_load(0)
      end
      print("reached " .. v)
    ]], id, start + 5)
    assert.is_truthy(poll(function() return seg:atomic_load(8) == 1 end))
    release(id)
    for _ = 1, 5 do
      shm.sleep(0.01)
      seg:atomic_add(0, 1)
      seg:wake(0)
    end
    local out, ok = join(child)
    assert.is_true(ok, out)
    assert.equals("reached " .. (start + 5) .. "\n", out)
  end)
end)

-- The atomics, wait and wake called with every value of a fixed set at
-- every argument position (spec/support/sweep.lua).
require("support.sweep").describe("atomics")
