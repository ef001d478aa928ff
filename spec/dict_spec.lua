-- sysvshm.dict: ngx.shared.DICT's API in a segment, across processes,
-- with crash consistency (SIGKILL at random moments) and hostile bytes;
-- last, the findings of the dict fuzz target (fuzz/dict.lua).
local h = require "helpers"
local shm = h.shm
local dict = require "sysvshm.dict"

local SCALE = tonumber(os.getenv("SYSVSHM_STRESS_SCALE") or "") or 1
local SLOW = SCALE < 1
local function scaled(n, min) return math.max(min or 1, math.floor(n * SCALE)) end

after_each(h.cleanup)

local function new_dict(size, off, rsize)
  local seg, id = h.new_segment(size or 65536)
  return dict.new(seg, off, rsize), seg, id
end

local PRELUDE = [[
local shm = require "sysvshm"
local dict = require "sysvshm.dict"
io.stdout:setvbuf("line")
print("pid " .. io.open("/proc/self/stat"):read("n"))
local A = {}
for i = 1, select("#", ...) do local v = select(i, ...) A[i] = math.tointeger(tonumber(v)) or v end
local seg = assert(shm.attach(A[1]))
local d = dict.open(seg, A[2])
]]

local function spawn(body, ...)
  return h.spawn_limited(SLOW and 600 or 120, PRELUDE .. body, ...)
end

describe("sysvshm.dict", function()
  describe("making and opening", function()
    it("new makes an empty dictionary in a region; open finds it", function()
      local seg = h.new_segment(65536)
      local d = dict.new(seg, 1024, 16384)
      assert.equals(16384, d:capacity())
      assert.equals("integer", math.type(d:free_space()))
      assert.is_true(d:free_space() > 12000 and d:free_space() < 16384)
      assert.is_nil(d:check())
      assert.same({}, d:get_keys())
      local e = dict.open(seg, 1024)
      assert.is_true(d:set("k", "v"))
      assert.equals("v", e:get("k"))
      assert.equals(seg, d:segment())
      assert.matches("sysvshm.dict %(segment %d+, offset 1024, 16384 bytes%)", tostring(d))
    end)

    it("a region of 16 KiB works; a too small or misaligned one raises", function()
      local seg = h.new_segment(65536)
      local d = dict.new(seg, 0, 16384)
      for i = 1, 50 do assert.is_true(d:set("key" .. i, ("v"):rep(40))) end
      assert.equals(50, #d:get_keys())
      assert.matches("at least 8192 bytes", h.errmsg(dict.new, seg, 0, 4096), 1, true)
      assert.matches("not 64%-byte aligned", h.errmsg(dict.new, seg, 32))
      assert.matches("unknown option 'size'", h.errmsg(dict.new, seg, { size = 1 }), 1, true)
    end)

    it("open refuses a region with no dictionary, another version, a corrupt header", function()
      local seg = h.new_segment(65536)
      seg:fill(0)
      assert.matches("no dictionary here", h.errmsg(dict.open, seg))
      dict.new(seg)
      seg:pack("=I4", 4, 99)
      assert.matches("another layout version", h.errmsg(dict.open, seg))
      seg:pack("=I4", 4, 1)
      seg:pack("=I4", 16, 3) -- nbuckets
      assert.matches("dict region is corrupt", h.errmsg(dict.open, seg))
      seg:pack("=I8", 8, 1 << 40) -- region larger than the segment
      assert.matches("dict region is corrupt", h.errmsg(dict.open, seg))
    end)

    it("attach: the first process creates, the others open; removing is the caller's", function()
      local key = 0x5d1c0000 + (h.pid() % 0xffff)
      local d, err = dict.attach(key, 65536)
      assert.is_truthy(d, err)
      local seg = d:segment()
      local id = assert(shm.open(key))
      h.track(id)
      assert.equals(384, shm.stat(id).mode) -- 0600
      d:set("from", "first")
      local kids = {}
      for i = 1, 3 do
        kids[i] = h.spawn([[
          local shm = require "sysvshm"
          local dict = require "sysvshm.dict"
          local d = assert(dict.attach(tonumber((...)), 65536))
          print(d:get("from"), d:incr("n", 1, 0))
        ]], key)
      end
      local total = 0
      for i = 1, 3 do
        local out, ok = h.join(kids[i])
        assert.is_true(ok, out)
        assert.matches("^first\t%d", out)
        total = total + 1
      end
      assert.equals(3, d:get("n"))
      assert.matches("unknown option 'mod'", h.errmsg(dict.attach, key, 65536, { mod = 1 }), 1, true)
      seg:detach()
      h.release(id)
      assert.is_nil(shm.open(key))
      assert.equals(3, total)
    end)
  end)

  describe("ngx.shared.DICT's API", function()
    it("get and set round-trip every type, with flags", function()
      local d = new_dict()
      local values = { true, false, 0, 1, -1, math.maxinteger, math.mininteger, 0.5, -0.0,
                       1 / 0, -1 / 0, 2 ^ 53, "", "x", "a\0b\0", ("z"):rep(5000) }
      for i, v in ipairs(values) do
        assert.same({ true, nil, false }, { d:set("k" .. i, v) })
      end
      for i, v in ipairs(values) do
        local got = d:get("k" .. i)
        assert.equals(math.type(v), math.type(got))
        assert.equals(v, got)
      end
      assert.equals("-0.0", tostring(d:get("k9")))
      assert.is_true(d:set("nan", 0 / 0))
      local nan = d:get("nan")
      assert.is_true(nan ~= nan)
      assert.is_true(d:set("f", "v", 0, 42))
      assert.same({ "v", 42 }, { d:get("f") })
      assert.same({ "x" }, { d:get("k14") }) -- flags 0: not returned
      assert.is_true(d:set("f", "v", 0, 0xffffffff))
      assert.same({ "v", 0xffffffff }, { d:get("f") })
      assert.has_error(function() d:set("f", "v", 0, -1) end)
      assert.has_error(function() d:set("f", {}) end)
      assert.has_error(function() d:set("f", print) end)
      assert.is_nil(d:get("missing"))
    end)

    it("keys: numbers as tostring makes them; nil, empty and too long keys", function()
      local d = new_dict()
      assert.is_true(d:set(12, "twelve"))
      assert.equals("twelve", d:get("12"))
      assert.is_true(d:set(1.5, "x"))
      assert.equals("x", d:get("1.5"))
      assert.same({ nil, "nil key" }, { d:get(nil) })
      assert.same({ nil, "empty key" }, { d:get("") })
      assert.same({ false, "nil key" }, { d:set(nil, 1) })
      assert.same({ false, "empty key" }, { d:set("", 1) })
      assert.same({ nil, "key too long" }, { d:get(("k"):rep(65536)) })
      assert.same({ false, "key too long" }, { d:set(("k"):rep(65536), 1) })
      local long = ("k"):rep(65535)
      local big = new_dict(262144)
      assert.is_true(big:set(long, "ok"))
      assert.equals("ok", big:get(long))
      assert.has_error(function() d:get({}) end)
      assert.has_error(function() d:get(true) end)
    end)

    it("add, safe_add, replace, delete", function()
      local d = new_dict()
      assert.same({ true, nil, false }, { d:add("a", 1) })
      assert.same({ false, "exists", false }, { d:add("a", 2) })
      assert.same({ false, "exists", false }, { d:safe_add("a", 2) })
      assert.equals(1, d:get("a"))
      assert.same({ false, "not found", false }, { d:replace("b", 1) })
      assert.same({ true, nil, false }, { d:replace("a", 3) })
      assert.equals(3, d:get("a"))
      assert.is_true(d:delete("a"))
      assert.is_nil(d:get("a"))
      assert.is_true(d:set("a", 1))
      assert.is_true(d:set("a", nil)) -- set nil deletes
      assert.is_nil(d:get("a"))
      -- an expired value counts as absent for add and replace
      assert.is_true(d:set("e", 1, 0.02))
      shm.sleep(0.04)
      assert.same({ false, "not found", false }, { d:replace("e", 2) })
      assert.same({ true, nil, false }, { d:add("e", 2) })
      assert.equals(2, d:get("e"))
    end)

    it("incr: integers stay integers and wrap, floats, init and init_ttl, errors", function()
      local d = new_dict()
      assert.same({ nil, "not found" }, { d:incr("n", 1) })
      assert.same({ 11, nil, false }, { d:incr("n", 1, 10) })
      assert.equals("integer", math.type(d:get("n")))
      assert.equals(13, d:incr("n", "2"))
      assert.equals(13.5, d:incr("n", 0.5))
      assert.equals("float", math.type(d:get("n")))
      assert.is_true(d:set("w", math.maxinteger))
      assert.equals(math.mininteger, d:incr("w", 1))
      assert.is_true(d:set("s", "str"))
      assert.same({ nil, "not a number" }, { d:incr("s", 1) })
      assert.has_error(function() d:incr("n", "abc") end)
      assert.has_error(function() d:incr("n", {}) end)
      assert.has_error(function() d:incr("n", nil) end)
      assert.equals(1, d:incr("t", 1, 0, 0.02))
      local ttl = d:ttl("t")
      assert.is_true(ttl > 0 and ttl <= 0.02)
      shm.sleep(0.04)
      assert.is_nil(d:get("t"))
      assert.equals(1, d:incr("t", 1, 0))
      d:lpush("l", 1)
      assert.same({ nil, "not a number" }, { d:incr("l", 1) })
    end)

    it("lists: lpush, rpush, lpop, rpop, llen, and their errors", function()
      local d = new_dict()
      assert.equals(0, d:llen("l"))
      assert.is_nil(d:lpop("l"))
      assert.equals(1, d:rpush("l", "b"))
      assert.equals(2, d:lpush("l", "a"))
      assert.equals(3, d:rpush("l", 3))
      assert.equals(4, d:rpush("l", 4.5))
      assert.equals(5, d:rpush("l", "a\0b"))
      assert.equals(5, d:llen("l"))
      assert.same({ nil, "value is a list" }, { d:get("l") })
      assert.equals("a", d:lpop("l"))
      assert.equals("a\0b", d:rpop("l"))
      assert.equals(4.5, d:rpop("l"))
      assert.equals("integer", math.type(d:rpop("l")))
      assert.equals("b", d:lpop("l"))
      assert.is_nil(d:lpop("l"))
      assert.is_nil(d:get("l")) -- the key went with the last element
      assert.is_true(d:set("s", "x"))
      assert.same({ nil, "value not a list" }, { d:lpush("s", 1) })
      assert.same({ nil, "value not a list" }, { d:rpop("s") })
      assert.same({ nil, "value not a list" }, { d:llen("s") })
      assert.has_error(function() d:lpush("l", {}) end)
      assert.has_error(function() d:lpush("l", nil) end)
      assert.has_error(function() d:lpush("l", true) end)
      for i = 1, 200 do d:rpush("big", i) end
      for i = 1, 200 do assert.equals(i, d:lpop("big")) end
    end)

    it("ttl, expire: seconds left, 0 for never; an expired key is not found", function()
      local d = new_dict()
      assert.same({ nil, "not found" }, { d:ttl("x") })
      assert.is_true(d:set("x", 1))
      assert.equals(0, d:ttl("x"))
      assert.is_true(d:expire("x", 0.05))
      local t = d:ttl("x")
      assert.is_true(t > 0.03 and t <= 0.05, tostring(t))
      assert.is_true(d:expire("x", 0))
      assert.equals(0, d:ttl("x"))
      assert.is_true(d:set("y", 1, 0.02))
      shm.sleep(0.04)
      assert.same({ nil, "not found" }, { d:ttl("y") })
      assert.same({ nil, "not found" }, { d:expire("y", 10) })
      assert.is_nil(d:get("y"))
      assert.same({ 1, nil, true }, { d:get_stale("y") })
      assert.has_error(function() d:set("z", 1, -1) end)
      assert.has_error(function() d:expire("z") end)
    end)

    it("flush_all expires everything; flush_expired reclaims, at most max", function()
      local d = new_dict()
      for i = 1, 10 do d:set("k" .. i, i) end
      local free = d:free_space()
      d:flush_all()
      assert.is_nil(d:get("k1"))
      assert.same({}, d:get_keys())
      assert.equals(free, d:free_space())
      assert.equals(3, d:flush_expired(3))
      assert.equals(7, d:flush_expired())
      assert.is_true(d:free_space() > free)
      assert.is_nil(d:check())
    end)

    it("get_keys: 1024 by default, 0 for all", function()
      local d = new_dict(1 << 20)
      for i = 1, 1500 do assert.is_true(d:safe_set("k" .. i, i)) end
      assert.equals(1024, #d:get_keys())
      assert.equals(1500, #d:get_keys(0))
      assert.equals(10, #d:get_keys(10))
    end)

    it("capacity and free_space are integers; free_space tells what fits", function()
      local d = new_dict(65536)
      assert.equals(65536, d:capacity())
      local free = d:free_space()
      -- an entry of exactly free bytes: 56 of header, key, value
      assert.same({ true, nil, false }, { d:safe_set("k", ("v"):rep(free - 56 - 1)) })
      assert.equals(0, d:free_space())
      assert.same({ false, "no memory", false }, { d:safe_set("j", "x") })
    end)
  end)

  describe("memory", function()
    it("set evicts least recently used entries, says forcible; safe_set never evicts", function()
      local d = new_dict(16384)
      local v = ("v"):rep(200)
      local i = 0
      repeat
        i = i + 1
        local ok = d:safe_set("k" .. i, v)
      until not ok
      assert.same({ false, "no memory", false }, { d:safe_set("k" .. i, v) })
      local n = i - 1
      -- read k1 so that k2 is the least recently used
      assert.equals(v, d:get("k1"))
      local ok, err, forcible = d:set("new", v)
      assert.is_true(ok, err)
      assert.is_true(forcible)
      assert.is_nil(d:get("k2"))
      assert.equals(v, d:get("k1"))
      assert.equals(v, d:get("k3"))
      assert.equals(n, #d:get_keys(0))
      assert.equals(1, d:stats().evictions)
      -- written after: evicted after
      d:set("k3", v)
      d:set("new2", v)
      assert.is_nil(d:get("k4"))
      assert.equals(v, d:get("k3"))
      -- a value larger than the whole region
      assert.same({ false, "no memory", false }, { d:set("huge", ("h"):rep(20000)) })
    end)

    it("no 'no memory' from fragmentation: mixed sizes churn, safe_set fits what free_space says #stress", function()
      local d = new_dict(1 << 20)
      math.randomseed(7)
      local live, refused = {}, 0
      local rounds = scaled(60000, 5000)
      for r = 1, rounds do
        local k = "k" .. math.random(400)
        if math.random() < 0.4 then
          d:delete(k)
          live[k] = nil
        else
          local size = math.random() < 0.9 and math.random(1, 300) or math.random(1, 16384)
          local need = 56 + #k + size
          need = need + (-need % 8)
          local fits = need <= d:free_space()
          local ok, err = d:safe_set(k, ("x"):rep(size))
          if fits then
            assert.is_true(ok, ("round %d: %s for %d bytes with %d free"):format(r, tostring(err),
              need, d:free_space()))
            live[k] = size
          elseif not ok then
            refused = refused + 1
          end
        end
      end
      assert.is_nil(d:check())
      for k, size in pairs(live) do assert.equals(size, #d:get(k)) end
      local st = d:stats()
      assert.equals(st.free, d:free_space())
      assert.is_true(st.largest <= st.free)
    end)

    it("overhead per entry is at most 64 bytes beyond key and value", function()
      local d = new_dict(1 << 20)
      local before = d:free_space()
      for i = 1, 1000 do
        assert.is_true(d:safe_set(("%016d"):format(i), ("v"):rep(64)))
      end
      local per = (before - d:free_space()) / 1000
      assert.is_true(per - 16 - 64 <= 64, "bytes per entry: " .. per)
    end)
  end)

  describe("beyond ngx", function()
    it("cas sets only over the expected value (type and bytes)", function()
      local d = new_dict()
      assert.is_true(d:cas("k", nil, 1)) -- absent: nil matches
      assert.same({ false, 1 }, { d:cas("k", nil, 2) })
      assert.same({ false, 1 }, { d:cas("k", 1.0, 2) }) -- float 1.0 is not integer 1
      assert.same({ false, 1 }, { d:cas("k", "1", 2) })
      assert.is_true(d:cas("k", 1, "two"))
      assert.equals("two", d:get("k"))
      assert.is_true(d:cas("k", "two", nil)) -- deletes
      assert.is_nil(d:get("k"))
    end)

    it("version changes on every change, nil when absent; wait sleeps until it changes", function()
      local d, seg, id = new_dict()
      assert.is_nil(d:version("k"))
      d:set("k", 1)
      local v1 = d:version("k")
      assert.equals("integer", math.type(v1))
      d:set("k", 1)
      local v2 = d:version("k")
      assert.is_true(v2 ~= v1)
      d:incr("k", 1)
      assert.is_true(d:version("k") ~= v2)
      local t0 = shm.clock()
      assert.same({ false, "timeout" }, { d:wait("k", d:version("k"), 0.1) })
      assert.is_true(shm.clock() - t0 >= 0.09)
      assert.same({ true }, { d:wait("k", v1, 1) }) -- already different
      local child = spawn([[
        shm.sleep(0.2)
        d:set("k", "changed")
        print("done")
      ]], id, 0)
      t0 = shm.clock()
      assert.same({ true }, { d:wait("k", d:version("k"), 10) })
      assert.is_true(shm.clock() - t0 < 5)
      assert.equals("changed", d:get("k"))
      local out, ok = h.join(child)
      assert.is_true(ok, out)
      -- a deletion is a change too; nil waits for the key to appear
      child = spawn([[ shm.sleep(0.1) d:delete("k") shm.sleep(0.1) d:set("k", 5) ]], id, 0)
      assert.same({ true }, { d:wait("k", d:version("k"), 10) })
      assert.is_nil(d:get("k"))
      assert.same({ true }, { d:wait("k", nil, 10) })
      assert.equals(5, d:get("k"))
      h.join(child)
      local _ = seg
    end)

    it("keys pages through everything; pairs iterates", function()
      local d = new_dict(1 << 20)
      for i = 1, 1000 do d:set("k" .. i, i) end
      local seen, cursor, pages = {}, 0, 0
      repeat
        local page
        page, cursor = d:keys(cursor, 50)
        pages = pages + 1
        for _, k in ipairs(page) do
          assert.is_nil(seen[k], "twice: " .. k)
          seen[k] = true
        end
      until cursor == nil
      local n = 0
      for _ in pairs(seen) do n = n + 1 end
      assert.equals(1000, n)
      assert.is_true(pages > 10)
      local sum = 0
      for k, v in d:pairs() do
        assert.equals("k" .. v, k)
        sum = sum + v
      end
      assert.equals(1000 * 1001 // 2, sum)
      assert.has_error(function() d:keys(-1) end)
      assert.has_error(function() d:keys(0, 0) end)
    end)

    it("stats and check", function()
      local d = new_dict()
      d:set("a", ("x"):rep(100))
      local st = d:stats()
      assert.equals(1, st.entries)
      assert.equals(65536, st.capacity)
      assert.equals(d:free_space(), st.free)
      for _, f in ipairs({ "used", "largest", "evictions", "expirations", "contention", "repairs" }) do
        assert.equals("integer", math.type(st[f]), f)
      end
      assert.is_nil(d:check())
    end)

    it("lock_timeout: a handle's writers wait that long for a lock they cannot take over, then raise", function()
      local d, seg, id = new_dict()
      d:set("k", "v")
      local quick = dict.open(seg, 0, { lock_timeout = 0.3 })
      -- thread 1 of another pid namespace (identity bits all ones): never
      -- taken over, so writers wait for their bound, then raise
      seg:atomic_store(64, -1 & ~0x3fffff | 1)
      local t0 = shm.clock()
      assert.matches("dict lock: held for over 0.3 s", h.errmsg(quick.set, quick, "k", 1), 1, true)
      local dt = shm.clock() - t0
      assert.is_true(dt >= 0.3 and dt < 3, ("raised after %.3f s"):format(dt))
      -- another process's handle, made by attach with the option
      local key = 0x5d1d0000 + (h.pid() % 0xffff)
      local other = dict.new(h.new_segment(65536), { lock_timeout = 1 }) -- whole seconds print whole
      seg:atomic_store(64, 0)
      local kid = h.spawn([[
        local shm = require "sysvshm"
        local dict = require "sysvshm.dict"
        local seg = assert(shm.attach(math.tointeger(tonumber((...)))))
        local d = dict.open(seg, { lock_timeout = 0.2 })
        seg:atomic_store(64, -1 & ~0x3fffff | 1)
        local t0 = shm.clock()
        print(pcall(d.incr, d, "n", 1, 0))
        print(shm.clock() - t0 < 3)
        seg:atomic_store(64, 0)
      ]], id)
      local out, ok = h.join(kid)
      assert.is_true(ok, out)
      assert.matches("^false\t[^\n]*dict lock: held for over 0.2 s[^\n]*\ntrue\n$", out)
      assert.equals("v", d:get("k")) -- reads take no lock
      assert.is_true(d:set("k", 2)) -- the default handle, the lock free again
      local oseg = other:segment()
      oseg:atomic_store(64, -1 & ~0x3fffff | 1)
      assert.matches("held for over 1 s", h.errmsg(other.set, other, "k", 1), 1, true)
      oseg:atomic_store(64, 0)
      -- attach takes it too
      local a = assert(dict.attach(key, 65536, { lock_timeout = 0.2 }))
      h.track((assert(shm.open(key))))
      a:segment():atomic_store(64, -1 & ~0x3fffff | 1)
      assert.matches("held for over 0.2 s", h.errmsg(a.set, a, "k", 1), 1, true)
      a:segment():atomic_store(64, 0)
      h.release((assert(shm.open(key))))
    end)

    it("new and open take opts after their optional arguments; errors name them and the caller's line", function()
      local seg = h.new_segment(65536)
      assert.equals(65536, dict.new(seg, { lock_timeout = 1 }):capacity())
      assert.equals(65536 - 4096, dict.new(seg, 4096, { lock_timeout = 1 }):capacity())
      assert.equals(8192, dict.new(seg, 4096, 8192, { lock_timeout = 1 }):capacity())
      assert.equals(8192, dict.open(seg, 4096, { lock_timeout = 1 }):capacity())
      assert.equals(8192, dict.open(seg, 4096):capacity())
      assert.same(h.argerrors("dict_spec.lua", {
        { function() local d = dict.new(seg, 61440, {}) return d end,
          "#2 to 'new' (a dictionary needs at least 8192 bytes)" },
        { function() local d = dict.new(seg, 0, 100) return d end,
          "#3 to 'new' (a dictionary needs at least 8192 bytes)" },
        { function() local d = dict.open(seg, 32) return d end,
          "#2 to 'open' (offset 32 is not 64-byte aligned)" },
      }))
    end)

    it("lock_timeout must be a number of seconds over 0; other options raise, naming lock_timeout", function()
      local seg = h.new_segment(65536)
      dict.new(seg)
      for _, bad in ipairs({ 0, -1, "1", true, 0 / 0, math.huge, {} }) do
        assert.matches("option 'lock_timeout' must be a number of seconds greater than 0",
          h.errmsg(dict.new, seg, 0, nil, { lock_timeout = bad }), 1, true)
        assert.matches("option 'lock_timeout' must be a number of seconds greater than 0",
          h.errmsg(dict.open, seg, 0, { lock_timeout = bad }), 1, true)
      end
      assert.matches("unknown option 'lock_timout'; the options are: lock_timeout",
        h.errmsg(dict.open, seg, { lock_timout = 1 }), 1, true)
      assert.matches("unknown option 'mode'; the options are: lock_timeout",
        h.errmsg(dict.new, seg, { mode = 1 }), 1, true)
      assert.matches("unknown option 'lock'", h.errmsg(dict.attach, 0x5d1e0000, 65536, { lock = 1 }), 1, true)
      assert.is_nil(shm.open(0x5d1e0000)) -- and nothing was created
    end)

    it("a lock word overwritten with garbage it cannot judge: calls raise after 10 s by default #stress", function()
      local d, seg = new_dict()
      d:set("k", "v")
      -- thread 1 of another pid namespace (identity bits all ones): never
      -- taken over, so writers wait for the bound, then raise
      seg:atomic_store(64, -1 & ~0x3fffff | 1)
      local t0 = shm.clock()
      assert.matches("dict lock: held for over 10 s", h.errmsg(d.set, d, "k", 1), 1, true)
      assert.is_true(shm.clock() - t0 < 15)
      assert.equals("v", d:get("k")) -- reads take no lock
      seg:atomic_store(64, 0)
      assert.is_true(d:set("k", 2))
    end)

    it("a detached segment raises, also when a finalizer detaches it during the call", function()
      local d, seg = new_dict()
      d:set("k", "v")
      -- a key given as a number is converted to a string: that allocates,
      -- and a collection may run this finalizer, which detaches
      local armed = true
      for _ = 1, 50 do
        setmetatable({}, { __gc = function() if armed then seg:detach() end end })
      end
      local ok = true
      for i = 1, 200000 do
        ok = pcall(d.set, d, i + 0.5, "v")
        if not ok then break end
        collectgarbage("step")
      end
      armed = false
      assert.is_false(ok)
      assert.matches("detached", h.errmsg(d.get, d, "k"))
      assert.matches("detached", h.errmsg(d.set, d, "k", 1))
      assert.matches("detached", h.errmsg(d.capacity, d))
    end)
  end)

  -- The fast paths' protocols, seen through the region's bytes where the
  -- methods cannot show them (offsets from dict.h: DictState at 192, the
  -- wait slots at 320, 16 x {u32 seq, u32 waiters}).
  describe("fast paths", function()
    local ST_TOP, ST_JOP, SEQ, WAIT = 192, 272, 128, 320

    -- the 16 wait slots as {seq, waiters} pairs
    local function slots(seg, off)
      local t = {}
      for i = 0, 15 do
        t[i + 1] = { seg:unpack("<I4I4", off + WAIT + 8 * i) }
      end
      return t
    end

    it("LRU order is exact in a quiet dictionary: reads and writes, evicted in that order", function()
      local d = new_dict(16384)
      local v = ("v"):rep(200)
      local keys = {}
      while d:safe_set("k" .. (#keys + 1), v) do keys[#keys + 1] = "k" .. #keys + 1 end
      assert.is_true(#keys >= 40 and #keys <= 63, #keys .. " entries") -- within one stripe
      -- room for one more entry: the rewrites in place need it for their
      -- undo copy (in a full dictionary a rewrite evicts, as a new key does)
      d:delete(table.remove(keys, 1))
      -- use them in a random order: gets (lock-free, recorded) and, now and
      -- then, a set of the same size (in place) or an incr-free touch
      math.randomseed(11)
      local order = {}
      for i = #keys, 2, -1 do
        local j = math.random(i)
        keys[i], keys[j] = keys[j], keys[i]
      end
      for i, k in ipairs(keys) do
        if i % 7 == 0 then
          assert.is_true(d:set(k, ("w"):rep(200))) -- same size: rewritten in place
        else
          assert.truthy(d:get(k))
        end
        order[#order + 1] = k
      end
      -- each new key evicts exactly the least recently used one: the order
      -- above (get_keys takes the lock and records no read)
      local function present()
        local t = {}
        for _, k in ipairs(d:get_keys(0)) do t[k] = true end
        return t
      end
      local ok, err, forcible = d:set("new0", v:sub(3)) -- "new0".."new63": the same block size
      assert.same({ true, nil, false }, { ok, err, forcible }) -- the free block
      for i = 1, #order do
        ok, err, forcible = d:set("new" .. i, v:sub(3))
        assert.is_true(ok, err)
        assert.is_true(forcible)
        local p = present()
        assert.is_nil(p[order[i]], ("eviction %d: %s was expected to go"):format(i, order[i]))
        if order[i + 1] then
          assert.is_true(p[order[i + 1]], ("eviction %d took %s too early"):format(i, order[i + 1]))
        end
      end
      assert.is_nil(d:check())
    end)

    it("a set of a same-size value rewrites the entry in place, keeping an undo copy", function()
      local d, seg = new_dict(65536)
      assert.is_true(d:set("k", ("a"):rep(64)))
      local img = seg:read(0, 65536)
      local at = img:find(("a"):rep(64), 1, true) - 1 - 56 - 1 -- entry header: 56 bytes, key "k"
      assert.equals("ENTR", seg:read(at + 4, 4))
      local top = seg:unpack("<I4", ST_TOP)
      local v0 = d:version("k")
      assert.is_true(d:set("k", ("b"):rep(64), 0, 7))
      -- the same block holds the new value, the heap did not grow, and the
      -- old block was copied to the free tail (the journal's undo copy)
      assert.equals(("b"):rep(64), seg:read(at + 57, 64))
      assert.equals(top, seg:unpack("<I4", ST_TOP))
      assert.equals(seg:read(at + 4, 4), seg:read(top + 4, 4))
      assert.equals(("a"):rep(64), seg:read(top + 57, 64))
      assert.equals(0, seg:unpack("<I4", ST_JOP))
      assert.same({ ("b"):rep(64), 7 }, { d:get("k") })
      assert.is_true(d:version("k") ~= v0)
      -- a different size takes a new block
      assert.is_true(d:set("k", ("c"):rep(80)))
      assert.is_true(seg:unpack("<I4", ST_TOP) > top)
      assert.equals(("c"):rep(80), d:get("k"))
      assert.is_nil(d:check())
    end)

    it("an in-place rewrite killed half way is undone by the next lock holder", function()
      local d, seg = new_dict(65536)
      assert.is_true(d:set("k", ("a"):rep(64)))
      assert.is_true(d:set("other", 1))
      local img = seg:read(0, 65536)
      local at = img:find(("a"):rep(64), 1, true) - 1 - 56 - 1
      local size = seg:unpack("<I4", at)
      local top = seg:unpack("<I4", ST_TOP)
      -- what put_in_place does before it dies: the undo copy in the free
      -- tail, the journal (a move from there back over the entry), seq odd,
      -- then half of the new value
      seg:write(top, seg:read(at, size))
      seg:pack("<I4I4I4I4", ST_JOP + 4, top, at, size, 0)
      seg:pack("<I4", ST_JOP, 1)
      seg:pack("<I8", SEQ, seg:unpack("<I8", SEQ) + 1)
      seg:write(at + 57, ("b"):rep(32))
      local repairs = d:stats().repairs -- takes the lock: recovery runs
      assert.equals(1, repairs)
      assert.equals(("a"):rep(64), d:get("k"))
      assert.equals(1, d:get("other"))
      assert.equals(0, seg:unpack("<I4", ST_JOP))
      assert.equals(0, seg:unpack("<I8", SEQ) % 2)
      assert.is_nil(d:check())
    end)

    it("writes with nobody waiting leave the wait slots alone; a waiter is woken at once", function()
      local d, seg, id = new_dict(65536 + 64, 0, 65536)
      local before = slots(seg, 0)
      for i = 1, 200 do
        d:set("k" .. i % 50, i)
        d:incr("n" .. i % 7, 1, 0)
        if i % 10 == 0 then d:delete("k" .. i % 50) end
      end
      d:flush_all()
      assert.same(before, slots(seg, 0))
      -- a waiter in another process (its round number in the word after
      -- the dictionary): woken by each set well within the 100 ms it sleeps
      -- at most between looks (a lost wake-up shows as up to 100 ms)
      d:set("k", 0)
      local rounds = 5
      local child = spawn([[
        for i = 1, A[3] do
          local v = d:version("k")
          seg:atomic_store(65536, i)
          assert(d:wait("k", v, 10))
          print("woke " .. string.format("%.6f", shm.clock()))
        end
      ]], id, 0, rounds)
      local function waiters()
        local n = 0
        for _, sl in ipairs(slots(seg, 0)) do n = n + sl[2] end
        return n
      end
      local sets, bumped = {}, 0
      for i = 1, rounds do
        h.wait_until(function() return seg:atomic_load(65536) == i and waiters() == 1 end,
          "the child waiting", 10)
        local s0 = slots(seg, 0)
        shm.sleep(0.01) -- asleep by now, most likely
        sets[i] = shm.clock()
        d:set("k", i)
        local s1 = slots(seg, 0)
        for j = 1, 16 do
          if s1[j][1] ~= s0[j][1] then bumped = bumped + 1 end
        end
      end
      local out, ok = h.join(child)
      assert.is_true(ok, out)
      assert.equals(rounds, bumped) -- one slot word bumped per set
      local late = {}
      local i = 0
      for t in out:gmatch("woke (%S+)") do
        i = i + 1
        late[#late + 1] = tonumber(t) - sets[i]
      end
      assert.equals(rounds, i)
      table.sort(late)
      assert.is_true(late[(rounds + 1) // 2] < 0.05,
        "median wake-up latency " .. late[(rounds + 1) // 2] .. " s")
    end)
  end)

  describe("across processes", function()
    it("4 processes x incr: exact totals #stress", function()
      local d, _, id = new_dict(1 << 20)
      local N = scaled(20000, 1000)
      local kids = {}
      for i = 1, 4 do
        kids[i] = spawn([[
          for i = 1, A[3] do
            assert(d:incr("total", 1, 0))
            assert(d:incr("k" .. (i % 10), 1, 0))
          end
          print("done")
        ]], id, 0, N)
      end
      for i = 1, 4 do
        local out, ok = h.join(kids[i])
        assert.is_true(ok, out)
      end
      assert.equals(4 * N, d:get("total"))
      local sum = 0
      for i = 0, 9 do sum = sum + d:get("k" .. i) end
      assert.equals(4 * N, sum)
      assert.is_nil(d:check())
    end)

    it("a scan while others write returns every key present throughout exactly once #stress", function()
      local d, _, id = new_dict(1 << 20)
      for i = 1, 2000 do d:set("stay" .. i, i) end
      local writer = spawn([[
        local n = 0
        while d:get("stop") == nil do
          n = n + 1
          d:set("churn" .. (n % 500), ("x"):rep(n % 300))
          if n % 3 == 0 then d:delete("churn" .. ((n * 7) % 500)) end
        end
        print("wrote " .. n)
      ]], id, 0)
      shm.sleep(0.05)
      for _ = 1, 5 do
        local seen = {}
        for k in d:pairs(37) do
          assert.is_nil(seen[k], "twice: " .. k)
          seen[k] = true
        end
        for i = 1, 2000 do assert.is_true(seen["stay" .. i], "missing stay" .. i) end
      end
      d:set("stop", true)
      local out, ok = h.join(writer)
      assert.is_true(ok, out)
      assert.is_nil(d:check())
    end)

    it("SIGKILL at random moments of random calls leaves it sound; acknowledged sets stay #stress", function()
      local d, seg, id = new_dict(1 << 22) -- large enough that nothing is evicted
      local rounds = scaled(40, 8)
      local body = [[
        math.randomseed(A[3])
        local n = 0
        while true do
          n = n + 1
          local k = "k" .. math.random(300)
          local r = math.random(10)
          if r <= 3 then d:set(k, ("v"):rep(math.random(0, 2000)))
          elseif r == 4 then d:delete(k)
          elseif r == 5 then d:incr("n" .. math.random(5), 1, 0)
          elseif r == 6 then d:lpush("l" .. math.random(5), n)
          elseif r == 7 then d:rpop("l" .. math.random(5))
          elseif r == 8 then d:safe_set(k, n, 0.01)
          elseif r == 9 then d:get(k)
          else d:flush_expired(5) end
          -- an acknowledged, unique write: must survive the kill
          if n % 50 == 0 then
            local key = "ack" .. A[3] .. "_" .. n
            if d:safe_set(key, n) then print("ack " .. key) end
          end
        end
      ]]
      local acked = {}
      for r = 1, rounds do
        local kids = {}
        for i = 1, 3 do kids[i] = spawn(body, id, 0, r * 10 + i) end
        for i = 1, 3 do kids[i]:waitpid() end
        shm.sleep(0.02 + math.random() * 0.05)
        for i = 1, 3 do
          kids[i]:kill()
          for _, l in ipairs(kids[i].out) do
            local key = l:match("^ack (%S+)$")
            if key then acked[key] = true end
          end
        end
        local bad = d:check()
        assert.is_nil(bad, ("round %d: %s"):format(r, tostring(bad)))
      end
      -- acknowledged keys of unique names are never overwritten, deleted
      -- or evicted: every one must be there with its value
      assert.equals(0, d:stats().evictions)
      local missing = 0
      for key in pairs(acked) do
        local v = d:get(key)
        if v == nil then missing = missing + 1 else assert.equals(tonumber(key:match("_(%d+)$")), v) end
      end
      assert.equals(0, missing, missing .. " acknowledged sets lost")
      print(("dict kill loop: %d rounds, %d acknowledged sets, %d lost, repairs %d"):format(
        rounds, (function() local n = 0 for _ in pairs(acked) do n = n + 1 end return n end)(),
        missing, d:stats().repairs))
      local _ = seg
    end)

    it("scribblers over the region: users end without a signal, errors instead #stress", function()
      local _, seg, id = new_dict(65536 + 128, 0, 65536)
      seg:fill(0xA5, 65536)
      local user = [[
        local calls, errors = 0, 0
        local stop = shm.clock() + A[3]
        while shm.clock() < stop do
          local k = "k" .. math.random(100)
          local ok = pcall(function()
            local r = math.random(6)
            if r == 1 then d:set(k, ("v"):rep(math.random(0, 500)))
            elseif r == 2 then d:get(k)
            elseif r == 3 then d:incr(k, 1, 0)
            elseif r == 4 then d:lpush("l", 1) d:rpop("l")
            elseif r == 5 then d:get_keys(10) d:check()
            else d:delete(k) end
          end)
          calls = calls + 1
          if not ok then errors = errors + 1 end
        end
        print("user calls=" .. calls .. " errors=" .. errors)
      ]]
      local scribbler = [[
        math.randomseed(A[4])
        local stop = shm.clock() + A[3]
        local rounds = 0
        while shm.clock() < stop do
          rounds = rounds + 1
          local off = math.random(0, 65535)
          local n = math.random(1, math.min(64, 65536 - off))
          local t = {}
          for i = 1, n do t[i] = string.char(math.random(0, 255)) end
          seg:write(off, table.concat(t))
          if rounds % 200 == 0 then dict.new(seg, 0, 65536) end
          shm.sleep(0.0005)
        end
        print("scribbler rounds=" .. rounds)
      ]]
      local seconds = 3
      local kids = {}
      for _ = 1, 2 do kids[#kids + 1] = spawn(user, id, 0, seconds) end
      kids[#kids + 1] = h.spawn_limited(60, PRELUDE:gsub("local d = dict.open%(seg, A%[2%]%)", "")
        .. scribbler, id, 0, seconds, 5)
      for _, k in ipairs(kids) do
        local out, ok = h.join(k)
        assert.is_true(ok, ("ended with %s %s:\n%s"):format(tostring(k.how), tostring(k.code), out))
      end
      assert.equals(("\xA5"):rep(128), seg:read(65536, 128))
    end)
  end)
end)

-- Findings of the dict fuzz target (fuzz/dict.lua) in the structure code
-- (src/dict_store.c), as plain reproducers: each test is what must hold,
-- and fails until the code is fixed.
describe("dict region with hostile bytes (fuzz findings)", function()
  -- DictState starts at byte 192 of the region; its compaction journal is
  -- j_op, j_from, j_to, j_len, j_done (u32 each) from byte 272 (src/dict.h).
  local JOURNAL = "=I4 I4 I4 I4 I4"
  local J_OP = 272

  it("a journaled move from past the heap end is not replayed outside the region", function()
    -- finish_move checks len > heap_end - from, which wraps around when
    -- from > heap_end: the repair then copies bytes from past the region
    -- to past the region (here both inside the segment, after an 8 KiB
    -- region; from near 4 GiB it reads unmapped memory: SIGSEGV, see below)
    local seg = h.new_segment(65536)
    seg:fill(0x5A)
    local d = dict.new(seg, 0, 8192)
    assert(d:set("a", 1))
    seg:write(20000, ("X"):rep(56))
    seg:pack(JOURNAL, J_OP, 1, 20000, 12000, 56, 0)
    pcall(d.set, d, "b", 2) -- the lock holder finds the journal and repairs
    assert.equal(("\90"):rep(56), seg:read(12000, 56), "the repair wrote outside its region")
    assert.is_nil(d:check())
  end)

  it("a journaled move from near 4 GiB does not crash the process that repairs", function()
    local r = h.run_lua([[
      local shm = require "sysvshm"
      local dict = require "sysvshm.dict"
      local id = assert(shm.create(shm.IPC_PRIVATE, 16384))
      local seg = assert(shm.attach(id))
      shm.remove(id)
      local d = dict.new(seg)
      assert(d:set("a", 1))
      seg:pack("=I4 I4 I4 I4 I4", 272, 1, 0xfffffff8, 0x1000, 56, 0)
      print(pcall(d.set, d, "b", 2))
      print(d:check() or "sound")
    ]])
    assert.equal(0, r.code, h.explain(r))
    assert.matches("^%a+\t[^\n]*\nsound\n$", r.stdout) -- pcall's answer, then a sound check
  end)
end)
