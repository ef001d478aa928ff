-- Fuzz target "dict" (fuzz/driver.c runs it under libFuzzer): a dictionary
-- region (sysvshm.dict) whose bytes another process has overwritten with
-- anything, run by the region harness (fuzz/region.lua: the input's
-- layout, the canary, the program loop).  The dictionary must raise, or
-- answer, but never crash, hang, or read or write outside its region, and
-- what it answers must have the types its documentation promises.
--
-- Each input lays a valid dictionary with dict.new and runs a small
-- program on it: get, get_stale, set, safe_set, add, replace, incr, lpush,
-- rpush, lpop, rpop, llen, delete, cas, keys, pairs, get_keys, ttl,
-- expire, flush_expired, flush_all, check, stats, free_space, version,
-- wait (timeout 0), dict.open on the region, and overwrites of all or part
-- of the region -- header, lock, state, buckets and heap alike, all but
-- the lock word -- with bytes of the input (the payload: values come from
-- it too).
--
-- Region sizes: dict.MIN_SIZE + 64 * (b0 % 64), 8192 .. 12224; one that
-- stops short of the segment end is 0 .. 15 times 64 bytes shorter.
-- Programs: up to 47 operations.
local dict = require "sysvshm.dict"
local region = require "region"

local KEYS = { "a", "b", "key", "k3", "hits", "list", "12345678", "123456789",
               "x", "y", "z", "q", "w", "e", "r", ("L"):rep(300) }

local function ops(r)
  local seg, off, size, take = r.seg, r.off, r.size, r.take
  local d = dict.new(seg, off, size)
  local capacity = size -- what the handle's stats.capacity must say

  local function expect(cond, fmt, ...)
    if not cond then r.fail(fmt, ...) end
  end

  local function value(a)
    local k = a % 5
    if k == 0 then return a * 1000003 - 7
    elseif k == 1 then return a / 3
    elseif k == 2 then return take(a * 9)
    elseif k == 3 then return a % 2 == 0
    end
    return ("v"):rep(a * 97)
  end

  local function is_value(v)
    local t = type(v)
    return v == nil or t == "boolean" or t == "number" or (t == "string" and #v <= size)
  end

  local function key(a) return KEYS[a + 1] end

  return {
    [0] = function(a)
      local v, f = d:get(key(a))
      expect(is_value(v), "get returned a %s", type(v))
      expect(f == nil or math.type(f) == "integer" or (v == nil and f == "value is a list"),
             "get returned flags %s", tostring(f))
    end,
    function(a) -- set / safe_set, with a TTL sometimes
      local ok, err, forcible = (a >= 8 and d.safe_set or d.set)(d, key(a), value(a), a % 3 == 0 and 0.001 or 0, a)
      expect(type(ok) == "boolean" and (err == nil or type(err) == "string") and
             (forcible == nil or type(forcible) == "boolean"), "set returned %s %s", tostring(ok), tostring(err))
    end,
    function(a) return (a % 2 == 0 and d.add or d.replace)(d, key(a), value(a)) end,
    function(a)
      local n, err = d:incr(key(a), a - 7, a % 2 == 0 and 0 or nil, a % 4 == 0 and 0.001 or nil)
      expect(n == nil and type(err) == "string" or type(n) == "number", "incr returned %s", tostring(n))
    end,
    function(a)
      local n = (a % 2 == 0 and d.lpush or d.rpush)(d, key(a), a % 3 == 0 and a or take(a * 5))
      expect(n == nil or math.type(n) == "integer" and n >= 1, "push returned %s", tostring(n))
    end,
    function(a)
      local v = (a % 2 == 0 and d.lpop or d.rpop)(d, key(a))
      expect(v == nil or type(v) == "number" or type(v) == "string" and #v <= size,
             "pop returned a %s", type(v))
      local n = d:llen(key(a))
      expect(n == nil or math.type(n) == "integer" and n >= 0, "llen returned %s", tostring(n))
    end,
    function(a) return d:delete(key(a)) end,
    function(a)
      local ok, cur = d:cas(key(a), value(a), value(a + 1))
      expect(type(ok) == "boolean" or ok == nil, "cas returned %s", tostring(ok))
      expect(is_value(cur), "cas returned a current %s", type(cur))
    end,
    function(a) -- scans
      if a < 5 then
        local page, nxt = d:keys(a * 7, a + 1)
        expect(type(page) == "table" and (nxt == nil or math.type(nxt) == "integer" and nxt > a * 7),
               "keys returned %s %s", type(page), tostring(nxt))
        for _, k in ipairs(page) do
          expect(type(k) == "string" and #k <= 65535, "keys gave a %s key", type(k))
        end
      elseif a < 10 then
        local n = 0
        for k, v in d:pairs(a) do
          n = n + 1
          expect(type(k) == "string" and is_value(v), "pairs gave %s", type(k))
          if n > 2000 then expect(false, "pairs does not end") break end
        end
      else
        local ks = d:get_keys(a - 10)
        expect(type(ks) == "table" and (a == 10 or #ks <= a - 10), "get_keys returned too many")
        for _, k in ipairs(ks) do
          expect(type(k) == "string" and #k <= 65535, "get_keys gave a %s key", type(k))
        end
      end
    end,
    function(a) r.overwrite(a * 256 + r.b3, r.payload) end, -- all or part of it
    function(a)
      local t, err = d:ttl(key(a))
      expect(type(t) == "number" and t >= 0 or t == nil and type(err) == "string", "ttl returned %s", tostring(t))
      return d:expire(key(a), a % 3 == 0 and 0 or 0.001 * a)
    end,
    function(a)
      if a == 15 then return d:flush_all() end
      local n = d:flush_expired(a)
      expect(math.type(n) == "integer" and n >= 0 and (a == 0 or n <= a), "flush_expired returned %s", tostring(n))
    end,
    function(a) -- inspection
      if a < 4 then
        local c = d:check()
        expect(c == nil or type(c) == "string", "check returned a %s", type(c))
      elseif a < 8 then
        local st = d:stats()
        for _, f in ipairs({ "entries", "used", "free", "largest", "capacity", "evictions",
                             "expirations", "contention", "repairs" }) do
          expect(math.type(st[f]) == "integer", "stats.%s is %s", f, tostring(st[f]))
        end
        expect(st.capacity == capacity, "stats.capacity %s, not %d", tostring(st.capacity), capacity)
        expect(math.type(d:free_space()) == "integer", "free_space is not an integer")
      elseif a < 12 then
        local v, f, stale = d:get_stale(key(a))
        expect(is_value(v) and (stale == nil or type(stale) == "boolean"), "get_stale returned %s %s",
               type(v), type(stale))
        if v ~= nil then expect(math.type(f) == "integer" or f == nil, "get_stale flags %s", tostring(f)) end
      else
        local v = d:version(key(a))
        expect(v == nil or math.type(v) == "integer", "version returned %s", tostring(v))
        if v then return d:wait(key(a), v, 0) end
      end
    end,
    function() -- it may refuse the region now; a region it accepts has the
      -- size its header says (any size whose layout is the header's: an
      -- overwritten size field can say 11012 of an 11008-byte region)
      d = dict.open(seg, off)
      capacity = (seg:unpack("=I8", off + 8))
    end,
    function(a) r.overwrite(a * 20, take(8)) end, -- header, lock, seq, state
    function(a)                                                   -- anywhere
      local p = take(2)
      local at = #p == 2 and string.unpack("<I2", p) or 0
      r.overwrite(at + a, take(1 + a))
    end,
  }
end

return region.target {
  name = "dict",
  segsize = 16384,
  canary = 0x5A,
  min_size = dict.MIN_SIZE,
  shorten = function(size, k) return size - 64 * (k % 16) end,
  max_ops = 48,
  -- no program: fill it, the payload over it, then use it
  default_prog = "\1\17\33\3\4\20\9\0\16\5\3\6\8\12\92\44",
  -- overwrites leave the lock word (bytes 64..71) free: the methods take
  -- no timeout, and a garbage word that names no thread of this pid
  -- namespace is waited for like a live owner, for ever (lock.c; the
  -- lock's own handling of garbage is fuzzed through the channel)
  lock_word = 64,
  ops = ops,
}
