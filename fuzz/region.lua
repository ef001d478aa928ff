-- The harness the region targets share (fuzz/channel.lua, fuzz/dict.lua;
-- fuzz/driver.c puts fuzz/ on package.path, so they `require "region"`): a
-- region of one module's structure whose bytes another process has
-- overwritten with anything.  The module must raise, or answer, but never
-- crash, hang, or read or write outside its region.
--
-- Each input gets a region that ends at the segment end (a guard page
-- follows: an access past it faults), or stops short of it, in a segment
-- filled with a canary byte; the target lays a valid structure there (so
-- that the bytes are plausible to begin with) and gives the operations of
-- a small program read from the input.  Every operation runs under pcall:
-- an error is an answer.  What went wrong without an error is noted with
-- r.fail (pcall would swallow an error) and raised after the program; the
-- canary in front of the region and after a region that stops short must
-- survive.
--
-- Input: b0 region size (min_size + 64 * (b0 % 64)), b1 flags (bit 0: the
-- region stops short, by shorten(region, b1 >> 1)), b2 program length
-- (b2 % max_ops), b3 overwrite base (r.b3), the program (one byte an
-- operation: low 4 bits the operation, high 4 bits its argument), then
-- the payload (r.payload: the bytes overwrites copy).
--
-- region.target(t) returns the table the driver wants; t has
--   name          the target's name, for the messages
--   segsize       the segment's size
--   canary        the byte the segment is filled with
--   min_size      the smallest region
--   shorten       function(region, k): the size of a region that stops short
--   max_ops       the program is at most max_ops - 1 bytes
--   default_prog  the program of an input with none
--   lock_word     optional: the offset in the region of an 8-byte word
--                 that overwrites leave 0 (free)
--   ops           function(r): the program's operations, ops[0] .. ops[15],
--                 each called with the argument; called once an input, after
--                 the canary fill, with r = { seg, off, size, b3, payload,
--                 overwrite(rel, bytes), take(n), fail(fmt, ...) }
local core = require "sysvshm.core"

local M = {}

function M.target(t)
  local T = { segsize = t.segsize }
  local name, canary, min_size = t.name, t.canary, t.min_size
  local lock = t.lock_word
  local seg, S

  function T.init(segid, segsize)
    S = segsize
    seg = assert(core.attach(segid))
    assert(#seg == S)
  end

  local function check_canary(lo, hi, what)
    if hi <= lo then return end
    local want = string.char(canary):rep(hi - lo)
    if seg:read(lo, hi - lo) ~= want then
      error(string.format("%s fuzz: the bytes %s the region changed", name, what), 0)
    end
  end

  function T.one(input)
    if #input < 4 then return end
    local b0, b1, b2, b3 = input:byte(1, 4)
    local region = min_size + 64 * (b0 % 64)
    local off = S - region
    local size = region
    if b1 & 1 ~= 0 then -- a region that stops short of the segment end
      size = t.shorten(region, b1 >> 1)
      if size < min_size then size = min_size end
    end
    local nops = b2 % t.max_ops
    local prog = input:sub(5, 4 + nops)
    local payload = input:sub(5 + nops)
    local cursor = 1 -- into payload, for take
    local bad -- what went wrong without an error

    seg:fill(canary)
    local r = { seg = seg, off = off, size = size, b3 = b3, payload = payload }

    -- copy bytes over the region at rel, cut at its end (all but lock_word)
    function r.overwrite(rel, bytes)
      rel = rel % size
      bytes = bytes:sub(1, size - rel)
      if #bytes > 0 then
        seg:write(off + rel, bytes)
        if lock and rel < lock + 8 and rel + #bytes > lock then
          seg:pack("I8", off + lock, 0)
        end
      end
    end

    -- the next n bytes of the payload, from its start again at its end
    function r.take(n)
      if #payload == 0 then return "" end
      local s = payload:sub(cursor, cursor + n - 1)
      cursor = cursor + n
      if cursor > #payload then cursor = 1 end
      return s
    end

    function r.fail(fmt, ...)
      if not bad then bad = string.format(fmt, ...) end
    end

    local ops = t.ops(r)
    if nops == 0 then prog = t.default_prog end
    for i = 1, #prog do
      local op = prog:byte(i)
      pcall(ops[op % 16], op >> 4)
    end

    if bad then error(name .. " fuzz: " .. bad, 0) end
    check_canary(0, off, "before")
    check_canary(off + size, S, "after")
  end

  return T
end

return M
