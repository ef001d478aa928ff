-- The segment userdata: every method, its bounds and argument checks, the
-- detached state, `<close>` and `__gc`. Writes are checked through a second
-- attachment of the same id (an independent view), and a failing call must
-- leave the bytes as they were.
local h = require "helpers"
local shm = require "sysvshm"

local SIZE = 64

after_each(h.cleanup)

-- A fresh segment: `seg` to act on, `view` a second attachment to check with.
local seg, view, id
before_each(function()
  seg, id = h.new_segment(SIZE)
  view = h.attach(id)
end)

-- Run f, which must raise, and check that the segment's bytes did not change.
local function raises_and_writes_nothing(f, pattern)
  local before = view:read(0)
  if pattern then
    assert.error_matches(f, pattern)
  else
    assert.has_error(f)
  end
  assert.equal(before, view:read(0))
end

-- Offsets that are not integers, in the C sense: raise wherever an offset,
-- a length or a byte value is expected.
local NOT_INTEGERS = { "1", "0", {}, true, 0 / 0, math.huge, -math.huge, 1.5, -0.5,
                       2 ^ 63, -2 ^ 64 }

describe("a segment", function()
  it("starts zero-filled", function()
    assert.equal(("\0"):rep(SIZE), view:read(0))
  end)

  it("has a length, a size, an id and a read-only flag", function()
    assert.equal(SIZE, #seg)
    assert.equal(SIZE, seg:size())
    assert.equal(shm.stat(id).size, seg:size())
    assert.equal(id, seg:id())
    assert.equal("integer", math.type(seg:id()))
    assert.is_false(seg:readonly())
  end)

  it("shows its id and size in tostring", function()
    local s = tostring(seg)
    assert.matches("id " .. id .. "[^%d]", s)
    assert.matches("[^%d]" .. SIZE .. " bytes", s)
    assert.not_matches("detached", s)
    local ro = h.attach(id, { readonly = true })
    assert.matches("read%-only", tostring(ro))
  end)
end)

describe("seg:read", function()
  before_each(function()
    view:write(0, "0123456789")
  end)

  it("reads len bytes at off", function()
    assert.equal("0123456789", seg:read(0, 10))
    assert.equal("345", seg:read(3, 3))
    assert.equal("345", seg:read(3.0, 3.0))
  end)

  it("reads to the end by default", function()
    assert.equal("89" .. ("\0"):rep(SIZE - 10), seg:read(8))
    assert.equal(SIZE, #seg:read(0))
    assert.equal("\0", seg:read(SIZE - 1))
  end)

  it("reads nothing at the end: read(#seg, 0) and read(#seg) give ''", function()
    assert.equal("", seg:read(SIZE, 0))
    assert.equal("", seg:read(SIZE))
    assert.equal("", seg:read(5, 0))
  end)

  it("raises past the end, for negative numbers and on overflow", function()
    for i, args in ipairs {
      { SIZE + 1 }, { SIZE + 1, 0 }, { SIZE, 1 }, { 0, SIZE + 1 }, { SIZE - 1, 2 },
      { -1 }, { -1, 1 }, { 0, -1 }, { 1, math.maxinteger }, { math.maxinteger },
      { math.maxinteger, 1 }, { math.mininteger }, { 0, math.mininteger },
    } do
      assert.is_false(pcall(seg.read, seg, args[1], args[2]), "case " .. i)
    end
    assert.error_matches(function() seg:read(SIZE + 1) end, "out of range")
    assert.error_matches(function() seg:read(1, math.maxinteger) end, "past the end")
  end)

  it("raises on non-integer offsets and lengths", function()
    assert.has_error(function() seg:read() end)
    assert.has_error(function() seg:read(nil, 1) end)
    for i, v in ipairs(NOT_INTEGERS) do
      assert.is_false(pcall(seg.read, seg, v), "offset case " .. i)
      assert.is_false(pcall(seg.read, seg, 0, v), "length case " .. i)
    end
  end)
end)

describe("seg:write", function()
  it("writes the bytes and returns the next offset", function()
    assert.equal(5, seg:write(0, "hello"))
    assert.equal(13, seg:write(10, "abc"))
    assert.equal("hello\0\0\0\0\0abc", view:read(0, 13))
  end)

  it("writes binary strings, NULs included", function()
    local s = "a\0b\255\0"
    assert.equal(7, seg:write(2, s))
    assert.equal(s, view:read(2, #s))
  end)

  it("writes up to the last byte, and nothing at the end", function()
    assert.equal(SIZE, seg:write(SIZE - 4, "wxyz"))
    assert.equal("wxyz", view:read(SIZE - 4))
    assert.equal(SIZE, seg:write(SIZE, ""))
    assert.equal(3, seg:write(3, ""))
  end)

  it("raises and writes nothing when the string does not fit", function()
    view:fill(("."):byte())
    raises_and_writes_nothing(function() seg:write(SIZE - 3, "wxyz") end, "past the end")
    raises_and_writes_nothing(function() seg:write(0, ("x"):rep(SIZE + 1)) end)
    raises_and_writes_nothing(function() seg:write(SIZE, "x") end)
    raises_and_writes_nothing(function() seg:write(SIZE + 1, "") end, "out of range")
    raises_and_writes_nothing(function() seg:write(-1, "x") end)
    raises_and_writes_nothing(function() seg:write(math.maxinteger, "x") end)
  end)

  it("raises on bad arguments and writes nothing", function()
    view:fill(("."):byte())
    raises_and_writes_nothing(function() seg:write(0) end)
    raises_and_writes_nothing(function() seg:write(0, 123) end)
    raises_and_writes_nothing(function() seg:write(0, {}) end)
    raises_and_writes_nothing(function() seg:write(nil, "x") end)
    for _, v in ipairs(NOT_INTEGERS) do
      raises_and_writes_nothing(function() seg:write(v, "x") end)
    end
    assert.equal(2, seg:write(1.0, "x"))
  end)
end)

describe("seg:byte and seg:setbyte", function()
  it("read and write one byte, 0..255", function()
    seg:setbyte(0, 255)
    seg:setbyte(1, 0)
    seg:setbyte(SIZE - 1, 128)
    seg:setbyte(2.0, 7.0)
    assert.equal("\255\0\7", view:read(0, 3))
    assert.equal("\128", view:read(SIZE - 1))
    view:write(10, "\1\200")
    assert.equal(1, seg:byte(10))
    assert.equal(200, seg:byte(11))
    assert.equal(255, seg:byte(0))
    assert.equal(128, seg:byte(SIZE - 1))
    assert.equal("integer", math.type(seg:byte(0)))
  end)

  it("raise for values outside 0..255 and write nothing", function()
    view:fill(("."):byte())
    for _, v in ipairs { 256, -1, 1000, math.maxinteger, math.mininteger } do
      raises_and_writes_nothing(function() seg:setbyte(0, v) end, "0%.%.255")
    end
    for _, v in ipairs { 1.5, 0 / 0, math.huge, {}, true, "", "ab" } do
      raises_and_writes_nothing(function() seg:setbyte(0, v) end)
    end
    raises_and_writes_nothing(function() seg:setbyte(0) end)
  end)

  it("raise at or past the end and for bad offsets", function()
    view:fill(("."):byte())
    for _, off in ipairs { SIZE, SIZE + 1, -1, math.maxinteger, math.mininteger } do
      assert.has_error(function() seg:byte(off) end)
      raises_and_writes_nothing(function() seg:setbyte(off, 1) end)
    end
    assert.has_error(function() seg:byte() end)
    for _, v in ipairs(NOT_INTEGERS) do
      assert.has_error(function() seg:byte(v) end)
      raises_and_writes_nothing(function() seg:setbyte(v, 1) end)
    end
  end)
end)

describe("seg:cstring", function()
  it("stops at the first NUL", function()
    view:write(0, "hello\0world\0")
    assert.equal("hello", seg:cstring(0))
    assert.equal("llo", seg:cstring(2))
    assert.equal("", seg:cstring(5))
    assert.equal("world", seg:cstring(6))
  end)

  it("starts at offset 0 by default", function()
    view:write(0, "abc\0")
    assert.equal("abc", seg:cstring())
  end)

  it("runs to the end of the segment when there is no NUL", function()
    view:fill(("z"):byte())
    assert.equal(("z"):rep(SIZE), seg:cstring(0))
    assert.equal("zzzz", seg:cstring(SIZE - 4))
  end)

  it("gives '' at the end and raises past it", function()
    view:fill(("z"):byte())
    assert.equal("", seg:cstring(SIZE))
    for _, off in ipairs { SIZE + 1, -1, math.maxinteger, math.mininteger } do
      assert.error_matches(function() seg:cstring(off) end, "out of range")
    end
    for _, v in ipairs(NOT_INTEGERS) do
      assert.has_error(function() seg:cstring(v) end)
    end
  end)
end)

describe("seg:fill", function()
  it("fills the whole segment by default", function()
    seg:fill(0x41)
    assert.equal(("A"):rep(SIZE), view:read(0))
  end)

  it("fills a range, or from an offset to the end", function()
    seg:fill(0x41)
    seg:fill(0x42, 10, 5)
    assert.equal(("A"):rep(10) .. ("B"):rep(5) .. ("A"):rep(SIZE - 15), view:read(0))
    seg:fill(0x43, SIZE - 3)
    assert.equal("ACCC", view:read(SIZE - 4))
    seg:fill(0, 0, 0)
    seg:fill(0, SIZE, 0)
    seg:fill(0, SIZE)
    assert.equal("A", view:read(0, 1))
  end)

  it("raises out of range and writes nothing", function()
    seg:fill(0x41)
    for i, args in ipairs {
      { 1, SIZE - 4, 5 }, { 1, SIZE + 1 }, { 1, SIZE, 1 }, { 1, 0, SIZE + 1 }, { 1, -1 },
      { 1, 0, -1 }, { 1, 1, math.maxinteger }, { 1, math.maxinteger }, { 1, math.mininteger },
    } do
      raises_and_writes_nothing(function() seg:fill(table.unpack(args, 1, 3)) end)
      assert.equal(("A"):rep(SIZE), view:read(0), "case " .. i)
    end
  end)

  it("raises on bad values and arguments and writes nothing", function()
    seg:fill(0x41)
    for _, v in ipairs { 256, -1, 1.5, 0 / 0, {}, true, "", "ab" } do
      raises_and_writes_nothing(function() seg:fill(v) end)
    end
    raises_and_writes_nothing(function() seg:fill() end)
    for _, v in ipairs(NOT_INTEGERS) do
      raises_and_writes_nothing(function() seg:fill(1, v) end)
      raises_and_writes_nothing(function() seg:fill(1, 0, v) end)
    end
  end)
end)

describe("a detached segment", function()
  it("raises an error saying so from every method", function()
    seg:detach()
    for name, f in pairs(getmetatable(view).__index) do
      if name ~= "detach" then
        assert.error_matches(function() f(seg, 0, 0, 0) end, "detached", nil, nil,
          "method " .. name)
      end
    end
    -- the core methods with plausible arguments, one by one
    local calls = {
      size = {}, id = {}, readonly = {}, read = { 0, 1 }, write = { 0, "x" },
      byte = { 0 }, setbyte = { 0, 1 }, cstring = { 0 }, fill = { 0 },
    }
    for name, args in pairs(calls) do
      assert.error_matches(function() seg[name](seg, table.unpack(args)) end,
        "detached", nil, nil, "method " .. name)
    end
    assert.error_matches(function() return #seg end, "detached")
  end)

  it("still has a tostring that says it is detached, with id and size", function()
    seg:detach()
    local s = tostring(seg)
    assert.matches("detached", s)
    assert.matches("id " .. id .. "[^%d]", s)
    assert.matches("[^%d]" .. SIZE .. " bytes", s)
    assert.equal("detached segment", shm.type(seg))
  end)

  it("can be detached again without error", function()
    assert.is_true(seg:detach())
    assert.equal(1, shm.stat(id).nattch)
    assert.has_no_error(function() seg:detach() end)
    assert.equal(1, shm.stat(id).nattch)
    assert.equal("segment", shm.type(view))
  end)

  it("leaves the segment and its bytes in place", function()
    seg:write(0, "kept")
    seg:detach()
    assert.equal("kept", view:read(0, 4))
  end)
end)

describe("automatic detaching", function()
  it("happens when a <close> variable goes out of scope", function()
    view:detach()
    seg:detach()
    assert.equal(0, shm.stat(id).nattch)
    local inside
    do
      local s <close> = shm.attach(id)
      inside = shm.stat(id).nattch
      s:write(0, "closed")
    end
    assert.equal(1, inside)
    assert.equal(0, shm.stat(id).nattch)
  end)

  it("happens when a scope with a <close> variable raises", function()
    view:detach()
    seg:detach()
    local ok, err = pcall(function()
      local s <close> = shm.attach(id)
      assert(s)
      error("boom", 0)
    end)
    assert.is_false(ok)
    assert.equal("boom", err)
    assert.equal(0, shm.stat(id).nattch)
  end)

  it("happens when an unreachable segment is collected", function()
    view:detach()
    seg:detach()
    local function attach_and_drop()
      local s = shm.attach(id)
      s:write(0, "gc")
      return shm.stat(id).nattch
    end
    assert.equal(1, attach_and_drop())
    collectgarbage()
    collectgarbage()
    assert.equal(0, shm.stat(id).nattch)
  end)

  it("does not touch a segment that is still referenced", function()
    collectgarbage()
    collectgarbage()
    assert.equal(2, shm.stat(id).nattch)
    assert.equal("segment", shm.type(seg))
  end)
end)

describe("methods called on something else", function()
  it("raise a type error", function()
    local methods = getmetatable(seg).__index
    for name, f in pairs(methods) do
      for _, self in ipairs { {}, "x", 1, io.stdout, true } do
        assert.error_matches(function() f(self, 0, 0) end, "sysvshm.segment expected",
          1, true, "method " .. name)
      end
      assert.has_error(function() f() end, nil, "method " .. name)
    end
    local mt = getmetatable(seg)
    for _, mm in ipairs { "__len", "__tostring" } do
      assert.error_matches(function() mt[mm]({}) end, "sysvshm.segment expected", 1, true)
    end
  end)
end)

-- Every segment method and metamethod called with every value of a fixed
-- set at every argument position, then random sequences of calls of every
-- function and method on segments left as the calls before left them
-- (spec/support/sweep.lua).
require("support.sweep").describe("bytes", "sequences")
