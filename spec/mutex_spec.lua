-- shm.mutex: a robust, process-shared mutex in a segment, in one process and
-- across lua5.4 child processes (including one killed while holding it).
local h = require "helpers"
local shm = h.shm

-- ---- local helpers ----------------------------------------------------------

-- Every test removes its segment once its children have attached it (an
-- attached, removed segment stays usable); h.cleanup removes whatever a
-- failing test left, after killing its children.
local new_segment, release, poll, errmsg = h.new_segment, h.release, h.poll, h.errmsg

local HEAD = 'local shm = require "sysvshm"\nio.stdout:setvbuf("line")\n'

-- Start `code` in a lua5.4 child that gets `shm` and the extra arguments
-- (as strings) in `...`, alongside the test (h.spawn); it is killed after
-- `limit` seconds, so that a bug cannot hang the suite.
local function spawn_limited(limit, code, ...)
  return h.spawn_limited(limit, HEAD .. code, ...)
end

local function spawn(code, ...)
  return h.spawn(HEAD .. code, ...)
end

local join = h.join -- what a child printed, and whether it exited with 0

after_each(h.cleanup)

-- Child prelude: attach the segment given as the first argument and open
-- the mutex at offset 0.
local PRELUDE = [[
  local seg = assert(shm.attach(tonumber((...))))
  local m = shm.mutex(seg, 0, { open = true })
  print("pid " .. io.open("/proc/self/stat"):read("n"))
]]

-- ---- tests ----------------------------------------------------------------------

describe("shm.mutex", function()
  it("is one 64-bit word: 0 when free, the holder's thread id in its low 22 bits", function()
    assert.equals(8, shm.MUTEX_SIZE)
    assert.equals(8, shm.MUTEX_ALIGN)
    local seg = new_segment(64)
    seg:fill(0xA5)
    local m = shm.mutex(seg, 8)
    assert.equals(0, seg:atomic_load(8))
    local pid = io.open("/proc/self/stat"):read("n") -- the main thread's id
    assert.is_true(m:lock())
    assert.equals(pid, seg:atomic_load(8) & 0x3fffff)
    m:unlock()
    assert.equals(0, seg:atomic_load(8))
    -- nothing around it was touched
    assert.equals(("\xA5"):rep(8), seg:read(0, 8))
    assert.equals(("\xA5"):rep(48), seg:read(16, 48))
  end)

  it("refuses misaligned or out-of-bounds offsets, read-only segments and bad options", function()
    local size = 2 * shm.MUTEX_SIZE + shm.MUTEX_ALIGN
    local seg, id = new_segment(size)
    local ro = assert(shm.attach(id, { readonly = true }))
    release(id)
    for off = 1, shm.MUTEX_ALIGN - 1 do
      assert.matches(("offset %d is not %d-byte aligned"):format(off, shm.MUTEX_ALIGN),
        errmsg(shm.mutex, seg, off), 1, true)
    end
    local last = (size - shm.MUTEX_SIZE) // shm.MUTEX_ALIGN * shm.MUTEX_ALIGN
    assert.is_truthy(shm.mutex(seg, last))
    assert.matches("run past the end of the segment",
      errmsg(shm.mutex, seg, last + shm.MUTEX_ALIGN), 1, true)
    assert.matches("out of range", errmsg(shm.mutex, seg, -shm.MUTEX_ALIGN), 1, true)
    assert.matches("out of range", errmsg(shm.mutex, seg, size + shm.MUTEX_ALIGN), 1, true)
    assert.equals("attempt to write to a read-only segment", errmsg(shm.mutex, ro, 0))
    assert.equals("attempt to write to a read-only segment",
      errmsg(shm.mutex, ro, 0, { open = true }))
    assert.matches("option 'open' must be a boolean", errmsg(shm.mutex, seg, 0, { open = 1 }),
      1, true)
    assert.matches("table expected", errmsg(shm.mutex, seg, 0, true), 1, true)
    assert.matches("sysvshm.segment expected", errmsg(shm.mutex, {}, 0), 1, true)
    -- an unknown option raises and initialises nothing (issue 10, item 5)
    local held = shm.mutex(seg, 0)
    assert.is_true(held:lock())
    local word = seg:atomic_load(0)
    assert.matches("unknown option 'opne'", errmsg(shm.mutex, seg, 0, { opne = true }), 1, true)
    assert.matches("unknown option '1'; the options are: open", errmsg(shm.mutex, seg, 0, { true }),
      1, true)
    assert.equals(word, seg:atomic_load(0))
    assert.is_true(held:unlock())
    ro:detach()
  end)

  it("locks, unlocks, trylocks and tells whether this handle holds it", function()
    local seg, id = new_segment(64)
    release(id)
    local m = shm.mutex(seg, 0)
    assert.matches("sysvshm.mutex (segment " .. id .. ", offset 0)", tostring(m), 1, true)
    assert.is_false(m:locked())
    assert.same({ true }, { m:lock() })
    assert.is_true(m:locked())
    assert.matches(", locked", tostring(m), 1, true)
    assert.matches("mutex already locked by this handle", errmsg(m.lock, m), 1, true)
    assert.matches("mutex already locked by this handle", errmsg(m.trylock, m), 1, true)
    assert.same({ true }, { m:unlock() })
    assert.is_false(m:locked())
    assert.matches("mutex not locked by this handle", errmsg(m.unlock, m), 1, true)
    assert.same({ true }, { m:trylock() })
    assert.is_true(m:locked())
    m:unlock()
    -- a free mutex is taken even with no time left; nil and math.huge wait for ever
    assert.same({ true }, { m:lock(0) })
    m:unlock()
    assert.same({ true }, { m:lock(nil) })
    m:unlock()
    assert.same({ true }, { m:lock(math.huge) })
    m:unlock()
    assert.matches("timeout must be a non-negative number of seconds", errmsg(m.lock, m, -1),
      1, true)
    assert.matches("number expected", errmsg(m.lock, m, "soon"), 1, true)
    assert.is_false(m:locked())
  end)

  it("a second handle on the same mutex does not get it while the first holds it", function()
    local seg, id = new_segment(64)
    release(id)
    local m = shm.mutex(seg, 0)
    local m2 = shm.mutex(seg, 0, { open = true })
    assert.same({ true }, { m:lock() })
    -- open = true uses the mutex that is there: it does not reset it
    local m3 = shm.mutex(seg, 0, { open = true })
    assert.same({ false }, { m2:trylock() })
    assert.same({ false }, { m3:trylock() })
    -- lock would wait for itself: it never gets it (glibc refuses, EDEADLK)
    assert.is_not_true((m3:lock(0.01)))
    assert.is_false(m2:locked())
    assert.is_false(m3:locked())
    assert.is_true(m:locked())
    m:unlock()
    assert.same({ true }, { m2:trylock() })
    assert.same({ false }, { m:trylock() })
    assert.is_false(m:locked())
    m2:unlock()
    assert.same({ true }, { m:trylock() })
    m:unlock()
  end)

  -- The mutex checks errors: glibc answers EDEADLK when this thread holds
  -- it already (through another handle); trylock reports that as busy.
  it("trylock by a second handle in the same process returns false while the first holds it",
    function()
      local seg, id = new_segment(64)
      release(id)
      local m = shm.mutex(seg, 0)
      local m2 = shm.mutex(seg, 0, { open = true })
      m:lock()
      assert.same({ false }, { m2:trylock() })
      m:unlock()
    end)

  it("with runs fn under the lock and returns its results", function()
    local seg, id = new_segment(64)
    release(id)
    local m = shm.mutex(seg, 0)
    local other = shm.mutex(seg, 0, { open = true })
    local r = table.pack(m:with(function(...)
      assert.is_true(m:locked())
      assert.is_false((other:trylock()))
      assert.is_false(other:locked())
      return ...
    end, 1, nil, "three", nil))
    assert.same({ n = 4, 1, nil, "three", nil }, r)
    assert.is_false(m:locked())
    assert.equals(0, select("#", m:with(function() end)))
    assert.same({ true }, { other:trylock() })
    other:unlock()
    -- fn's args go through; a table comes back as itself
    local t = {}
    assert.equals(t, m:with(function(x) return x end, t))
    -- with while this handle holds it, or without a function: errors
    m:lock()
    assert.matches("mutex already locked by this handle", errmsg(m.with, m, function() end),
      1, true)
    m:unlock()
    assert.matches("function expected", errmsg(m.with, m, 42), 1, true)
    -- inside, this handle holds it
    assert.matches("mutex already locked by this handle",
      errmsg(m.with, m, function() return m:lock() end), 1, true)
    assert.is_false(m:locked())
  end)

  it("with unlocks when fn raises and re-raises the same error object", function()
    local seg, id = new_segment(64)
    release(id)
    local m = shm.mutex(seg, 0)
    local other = shm.mutex(seg, 0, { open = true })
    local e = setmetatable({}, { __tostring = function() return "my error" end })
    local ok, got = pcall(m.with, m, function() error(e) end)
    assert.is_false(ok)
    assert.is_true(rawequal(e, got))
    assert.is_false(m:locked())
    assert.same({ true }, { other:trylock() })
    other:unlock()
    ok, got = pcall(m.with, m, function() error("plain", 0) end)
    assert.same({ false, "plain" }, { ok, got })
    ok, got = pcall(m.with, m, function() error() end)
    assert.same({ false, nil }, { ok, got })
    ok, got = pcall(m.with, m, function() local x = nil; return x.field end)
    assert.is_false(ok)
    assert.matches("attempt to index", got, 1, true)
    assert.is_false(m:locked())
    assert.same({ true }, { m:trylock() })
    m:unlock()
  end)

  it("a collected or closed handle unlocks", function()
    local seg, id = new_segment(64)
    release(id)
    do
      local m = shm.mutex(seg, 0)
      m:lock()
    end
    collectgarbage()
    collectgarbage()
    local m2 = shm.mutex(seg, 0, { open = true })
    assert.same({ true }, { m2:trylock() })
    m2:unlock()
    do
      local m <close> = shm.mutex(seg, 0, { open = true })
      m:lock()
    end
    assert.same({ true }, { m2:trylock() })
    m2:unlock()
    -- and the segment no longer counts them as held
    assert.is_true(seg:detach())
  end)

  it("refuses to detach its segment while held through it", function()
    local seg, id = new_segment(64)
    release(id)
    local m = shm.mutex(seg, 0)
    m:lock()
    local msg = "cannot detach: a mutex in this segment is locked"
    assert.equals(msg, errmsg(seg.detach, seg))
    assert.equals(msg, errmsg(shm.shmdt, seg))
    assert.equals(0, seg:atomic_add(56, 1)) -- still attached
    m:unlock()
    assert.equals(msg, errmsg(m.with, m, function() return seg:detach() end))
    assert.is_false(m:locked())
    assert.is_true(seg:detach())
    assert.equals("attempt to use a mutex in a detached segment", errmsg(m.lock, m))
    assert.equals("attempt to use a mutex in a detached segment", errmsg(m.trylock, m))
    assert.is_false(m:locked())
  end)

  it("keeps a closed segment attached while a mutex in it is held through it", function()
    local seg, id = new_segment(64)
    local m
    do
      local s <close> = assert(shm.attach(id))
      release(id)
      m = shm.mutex(s, 0)
      m:lock()
    end
    assert.is_true(m:locked())
    local other = shm.mutex(seg, 0, { open = true })
    assert.same({ false }, { other:trylock() })
    assert.same({ true }, { m:unlock() })
    assert.same({ true }, { other:trylock() })
    other:unlock()
  end)

  -- issue 10, item 2: a held mutex re-initialised, then a failed unlock,
  -- led to a segfault (glibc kept it on the robust list of the thread)
  it("re-initialised while held: unlock fails with EPERM and leaves the handle released", function()
    local seg, id = new_segment(64)
    local m = shm.mutex(seg, 0)
    assert.is_true(m:lock())
    shm.mutex(seg, 0) -- initialises it again, unlocked
    assert.equals(0, seg:atomic_load(0))
    local ok, msg, en = m:unlock()
    assert.is_nil(ok)
    assert.matches("taken from this handle", msg, 1, true)
    assert.equals(1, en) -- EPERM
    assert.is_false(m:locked())
    assert.is_true(m:lock(1)) -- usable again through the same handle
    assert.is_true(m:unlock())
    -- nothing is held: the segment detaches, and locks elsewhere still work
    assert.is_true(seg:detach())
    release(id)
    local other = new_segment(64)
    local m2 = shm.mutex(other, 0)
    assert.is_true(m2:lock(1))
    assert.is_true(m2:unlock())
  end)

  -- issue 10, item 1: glibc's unlock wrote through list pointers stored in
  -- the mutex, which another process can overwrite
  it("a held lock overwritten by a peer: unlock writes nothing but the word", function()
    local seg = new_segment(128)
    local m = shm.mutex(seg, 64)
    for _, fill in ipairs({ 0xFF, 0x00, 0x41 }) do
      assert.is_true(m:lock())
      local own = seg:atomic_load(64)
      -- a peer scribbles over the word and everything around it
      seg:fill(fill, 0, 128)
      local around = seg:read(0, 64) .. seg:read(72, 56)
      local ok, _, en = m:unlock()
      if seg:atomic_load(64) == own then -- unchanged (fill 0x41 cannot be ours)
        assert.is_true(ok)
      else
        assert.is_nil(ok)
        assert.equals(1, en)
      end
      assert.is_false(m:locked())
      assert.equals(around, seg:read(0, 64) .. seg:read(72, 56))
      shm.mutex(seg, 64)
    end
  end)

  it("lock with a timeout answers false, 'timeout' on garbage it cannot judge", function()
    local seg = new_segment(64)
    local m = shm.mutex(seg, 0)
    -- a word naming a thread 1 of another pid namespace (identity bits all
    -- ones): never taken over
    seg:atomic_store(0, -1 & ~0x3fffff | 1)
    local t0 = shm.clock()
    assert.same({ false, "timeout" }, { m:lock(0.2) })
    assert.is_true(shm.clock() - t0 < 2)
    assert.same({ false }, { m:trylock() })
  end)

  it("trylock and a lock with a timeout fail while another process holds it", function()
    local seg, id = new_segment(128)
    seg:fill(0)
    local m = shm.mutex(seg, 0)
    -- the child locks, raises the flag at 64, waits for the word at 72
    local child = spawn(PRELUDE .. [[
      assert(m:lock())
      seg:atomic_store(64, 1)
      local deadline = shm.clock() + 20
      while seg:atomic_load(72) == 0 and shm.clock() < deadline do seg:wait(72, 0, 1) end
      m:unlock()
      print("released")
    ]], id)
    child:waitpid()
    assert.is_truthy(poll(function() return seg:atomic_load(64) == 1 end))
    release(id)
    assert.same({ false }, { m:trylock() })
    assert.same({ false, "timeout" }, { m:lock(0) })
    assert.same({ false, "timeout" }, { m:lock(0.05) })
    assert.is_false(m:locked())
    seg:atomic_store(72, 1)
    seg:wake(72)
    assert.same({ true }, { m:lock(10) })
    m:unlock()
    local out, ok = join(child)
    assert.is_true(ok, out)
    assert.equals("released\n", out)
  end)

  it("open = true uses the mutex another process placed and holds", function()
    local seg, id = new_segment(128)
    seg:fill(0)
    local m = shm.mutex(seg, 0)
    m:lock()
    local child = spawn(PRELUDE .. [[
      print(m:trylock())
      seg:atomic_store(64, 1)
      print(m:lock(20))
      m:unlock()
    ]], id)
    child:waitpid()
    assert.is_truthy(poll(function() return seg:atomic_load(64) == 1 end))
    release(id)
    m:unlock()
    local out, ok = join(child)
    assert.is_true(ok, out)
    assert.equals("false\ntrue\n", out)
    assert.same({ true }, { m:trylock() })
    m:unlock()
  end)

  it("excludes: 4 processes increment a plain counter under with, none lost", function()
    local N = 5000
    local seg, id = new_segment(128)
    seg:fill(0)
    shm.mutex(seg, 0)
    -- 64: the counter (read and written with unpack/pack, not atomically);
    -- 72: children ready; 80: the start flag
    local code = PRELUDE .. [[
      local n = tonumber((select(2, ...)))
      local function bump()
        local v = seg:unpack("j", 64)
        seg:pack("j", 64, v + 1)
      end
      seg:atomic_add(72, 1)
      local deadline = shm.clock() + 20
      while seg:atomic_load(80) == 0 and shm.clock() < deadline do seg:wait(80, 0, 1) end
      for _ = 1, n do m:with(bump) end
      print("done")
    ]]
    local children = {}
    for i = 1, 4 do
      children[i] = spawn(code, id, N)
      children[i]:waitpid()
    end
    assert.is_truthy(poll(function() return seg:atomic_load(72) == 4 end, 20))
    release(id)
    seg:atomic_store(80, 1)
    seg:wake(80)
    for i = 1, 4 do
      local out, ok = join(children[i])
      assert.is_true(ok, out)
      assert.equals("done\n", out)
    end
    assert.equals(4 * N, (seg:unpack("j", 64)))
  end)

  describe("whose holder is killed with SIGKILL", function()
    -- The child locks, raises the flag at 64 and sleeps until killed.
    local holder = PRELUDE .. [[
      assert(m:lock())
      seg:atomic_store(64, 1)
      shm.sleep(30)
      print("not killed")
    ]]

    -- Start a holder, wait until it holds the mutex, kill it and reap it.
    local function kill_holder(seg, id, m)
      seg:atomic_store(64, 0)
      local child = spawn(holder, id)
      child:waitpid()
      assert.is_truthy(poll(function() return seg:atomic_load(64) == 1 end))
      release(id)
      assert.same({ false }, { m:trylock() })
      assert.is_true(child:kill().sent)
      local out, ok = join(child)
      assert.is_false(ok)
      assert.is_nil(out:find("not killed", 1, true), out)
    end

    it("lets the next lock through, which is told the owner died (once)", function()
      local seg, id = new_segment(128)
      local m = shm.mutex(seg, 0)
      kill_holder(seg, id, m)
      assert.same({ true, "owner died" }, { m:lock(5) })
      assert.is_true(m:locked())
      m:unlock()
      assert.same({ true }, { m:lock(5) })
      m:unlock()
      assert.same({ true }, { m:trylock() })
      m:unlock()
    end)

    it("lets trylock through, which is told the owner died", function()
      local seg, id = new_segment(128)
      local m = shm.mutex(seg, 0)
      kill_holder(seg, id, m)
      assert.same({ true, "owner died" }, { m:trylock() })
      m:unlock()
      assert.same({ true }, { m:trylock() })
      m:unlock()
    end)

    it("lets with through, which runs fn and leaves the mutex usable", function()
      local seg, id = new_segment(128)
      seg:fill(0)
      local m = shm.mutex(seg, 0)
      local child = spawn(holder, id)
      child:waitpid()
      -- with() waits for ever: run it in a child that is killed after 15 s
      local user = spawn_limited(15, PRELUDE .. [[
        seg:atomic_store(72, 1)
        local deadline = shm.clock() + 10
        while seg:atomic_load(80) == 0 and shm.clock() < deadline do seg:wait(80, 0, 1) end
        print(m:with(function(a, b) return a, b end, "ran", 2))
      ]], id)
      user:waitpid()
      assert.is_truthy(poll(function()
        return seg:atomic_load(64) == 1 and seg:atomic_load(72) == 1
      end))
      release(id)
      assert.is_true(child:kill().sent)
      join(child)
      seg:atomic_store(80, 1)
      seg:wake(80)
      local out, ok = join(user)
      assert.is_true(ok, out)
      assert.equals("ran\t2\n", out)
      assert.same({ true }, { m:trylock() })
      m:unlock()
    end)

    it("lets a waiting lock through when the holder dies while it waits", function()
      local seg, id = new_segment(128)
      local m = shm.mutex(seg, 0)
      seg:atomic_store(64, 0)
      local child = spawn(holder, id)
      child:waitpid()
      assert.is_truthy(poll(function() return seg:atomic_load(64) == 1 end))
      -- a second process blocks in lock(20) and reports what it got
      local waiter = spawn(PRELUDE .. [[
        seg:atomic_store(72, 1)
        print(m:lock(20))
        m:unlock()
      ]], id)
      waiter:waitpid()
      assert.is_truthy(poll(function() return seg:atomic_load(72) == 1 end))
      release(id)
      shm.sleep(0.05)
      assert.is_true(child:kill().sent)
      join(child)
      local out, ok = join(waiter)
      assert.is_true(ok, out)
      assert.equals("true\towner died\n", out)
      assert.same({ true }, { m:trylock() })
      m:unlock()
    end)
  end)
end)

-- Bugs the bad-input sweep (spec/support/sweep.lua) found that crashed or
-- corrupted, each with a probe (a child chunk that prints "ok" when the
-- bug is not there): each is a test of its own that fails, printing the
-- probe, while the bug is there, and the values that trigger it stay in
-- the sweep (whose failure then names the call) -- a known bug is a
-- failing test, never a pending one.
local sweep = require "support.sweep"

-- a mutex at 0 of a segment attached and removed
local PROBE_HEAD = [[
      local shm = require "sysvshm"
      local id = assert(shm.create(shm.IPC_PRIVATE, 4096))
      local seg = assert(shm.attach(id))
      shm.remove(id)
      local m = shm.mutex(seg, 0)
]]

local SWEEP_BUGS = {
  { id = "with-detach",
    what = "BUG (src/sync.c mutex_with): a segfault when fn unlocks the mutex (m:unlock() "
      .. "or its __gc) and then detaches its segment: with then calls "
      .. "pthread_mutex_unlock on seg->addr (NULL) + off",
    probe = PROBE_HEAD .. [[
      pcall(m.with, m, function() m:unlock() return seg:detach() end)
      io.write("ok")
    ]] },
  { id = "with-unlock",
    what = "BUG (src/sync.c mutex_with): when fn unlocks the mutex, with unlocks it "
      .. "again and decrements seg->locks a second time (to -1), so a mutex locked "
      .. "later through the segment no longer stops seg:detach()",
    probe = PROBE_HEAD .. [[
      assert(pcall(m.with, m, function() return m:unlock() end))
      assert(not m:locked())
      assert(m:lock(0))
      -- held through seg: detaching it must be refused
      io.write(pcall(seg.detach, seg) and "detached" or "ok")
    ]] },
}

describe("bugs the sweep found stay fixed", function()
  for _, b in ipairs(SWEEP_BUGS) do
    it(b.id, function() sweep.probe(b) end)
  end
end)

-- Every mutex function and method called with every value of a fixed set
-- at every argument position (spec/support/sweep.lua).
sweep.describe("mutex")
