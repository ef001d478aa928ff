-- seg:pack / seg:unpack: string.pack's format language, in place.
--
-- The reference is Lua's own string.pack/string.unpack: every test compares
-- bytes, values, next offsets and error messages against them.
local shm = require "sysvshm"

-- ---- local helpers ----------------------------------------------------------

-- Segments are removed once, right after attaching: an attached, removed
-- segment stays usable and vanishes at its last detach.
local function new_segment(size, opts)
  local id = assert(shm.create(shm.IPC_PRIVATE, size))
  local seg, msg = shm.attach(id, opts)
  assert(shm.remove(id))
  assert(seg, msg)
  return seg, id
end

-- The message of a failing call, without a location and without the
-- "bad argument #n to 'f' (...)" wrapper (argument numbers differ between
-- string.pack(fmt, ...) and seg:pack(fmt, off, ...)); nil when it succeeds.
local function errmsg(f, ...)
  local ok, e = pcall(f, ...)
  if ok then return nil end
  e = tostring(e):gsub("^[^\n]-:%d+: ", "")
  return e:match("^bad argument #%d+ to '[^']*' %((.*)%)$") or e
end

-- string.pack pushes a nil after its arguments, so a missing value is "got
-- nil" there and "got no value" (as luaL_checkinteger says) in seg:pack.
local function same_msg(m)
  return (m:gsub("got nil$", "got no value"))
end

-- Bytes of a random string of length n.
local function randbytes(n)
  local t = {}
  for i = 1, (n + 7) // 8 do t[i] = string.pack("<j", math.random(0)) end
  return table.concat(t):sub(1, n)
end

-- Two results are the same: same type, same math.type, same bits for floats
-- (so NaN equals NaN, and 0.0 differs from -0.0).
local function same(a, b)
  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false end
  if math.type(a) == "float" then
    return string.pack("<d", a) == string.pack("<d", b)
  end
  return a == b
end

local function same_list(a, b)
  if a.n ~= b.n then return false end
  for i = 1, a.n do
    if not same(a[i], b[i]) then return false end
  end
  return true
end

-- seg:unpack's results, with the 0-based next offset made 1-based so that
-- they compare with string.unpack's.
local function seg_unpack(seg, fmt, off)
  local r = table.pack(seg:unpack(fmt, off))
  r[r.n] = r[r.n] + 1
  return r
end

-- What string.pack would put at offset off of a buffer that starts at the
-- segment start: the prefix "c<off>" moves everything by off bytes without
-- adding alignment of its own.
local function ref_pack(off, fmt, ...)
  local s = string.pack("c" .. off .. fmt, ("\0"):rep(off), ...)
  return s:sub(off + 1)
end

local LITTLE = string.pack("=i4", 1):byte(1) == 1

-- ---- the cases ----------------------------------------------------------------

-- {fmt, values...}: every option, every endianness, alignment.
local cases = {
  { "b", -128 }, { "b", 127 }, { "b", 0 }, { "B", 0 }, { "B", 255 },
  { "h", -32768 }, { "h", 32767 }, { "H", 65535 }, { "<h >h =h", -2, 258, 7 },
  { "l", math.mininteger }, { "L", -1 }, { "L", 123456789 },
  { "j", math.maxinteger }, { "j", math.mininteger }, { "J", -1 }, { "J", 42 },
  { "T", 12345 }, { ">T", 1 },
  { "i", -1 }, { "I", 4000000000 },
  { "i1 i2 i3 i4 i5 i6 i7 i8", -1, -300, -8000000, 2147483647, -2 ^ 39 // 1,
    (1 << 47) - 1, -(1 << 55), math.mininteger },
  { "I1 I2 I3 I4 I5 I6 I7 I8", 255, 65535, 0xffffff, 0xffffffff, 1 << 39,
    (1 << 48) - 1, 1 << 55, -1 },
  { "<i9 >i10 <i11 >i12", -1, 1, math.mininteger, math.maxinteger },
  { "<i13 >i14 =i15 i16", -5, 5, -(1 << 62), 123 },
  { "<I9 >I10 <I11 >I12 I13 I14 I15 I16", 1, 2, 3, 4, 5, 6, 7, -1 },
  { ">i16 <i16", -1, math.mininteger },
  { "<I3 >I3", 0x010203, 0x010203 },
  { "f", 1.5 }, { ">f", -0.0 }, { "<f", math.huge }, { "f", -math.huge },
  { "f", 1e300 }, { "f", -1e300 }, { "f", 1e-50 }, { "f", 3 },
  { "d", math.pi }, { ">d", -math.pi }, { "<d", 1e-310 }, { "d", 2 },
  { "n", -math.pi }, { ">n <n", 0.1, 0.2 }, { "n", math.huge },
  { "s1", "abc" }, { "s1", ("x"):rep(255) }, { ">s2", "hello" }, { "s4", "" },
  { "<s8", "z\0z" }, { "s", "default size_t" }, { ">s3", "odd" },
  { "z", "hello" }, { "z", "" }, { "z z", "a", "bc" },
  { "c5", "ab" }, { "c0", "" }, { "c3", "abc" }, { "c1", "\0" },
  { "x" }, { "xxx" }, { "b x h", 1, 2 },
  { "<i4 >i4 =i4", 1, 1, 1 },
  { "!4 b i4", 1, 2 }, { "!8 b d", 1, 2.5 }, { "!2 b i8", 1, 2 },
  { "! b j", 1, 2 }, { "!16 b i16", 1, -2 }, { "!1 b i8", 1, 2 },
  { "!8 b s4", 1, "abc" }, { "!8 b z b c3 h", 1, "zz", 2, "cc", 3 },
  { "!8 b i2 b i4 b i8 b i16", 1, 2, 3, 4, 5, 6, 7, 8 },
  { "!2 b i3 b i5", 1, 2, 3, 4 }, { "!1 b i3 i7", 1, 2, 3 }, { "!4 b i6 b i12", 1, 2, 3, 4 },
  { "!8 b f b T b n", 1, 1.25, 2, 3, 4, 5.5 },
  { "b Xi4 b", 1, 2 }, { "!8 b Xd b", 1, 2 }, { "!4 b Xi8 b", 1, 2 },
  { "!8 b Xi2 Xi8 b", 1, 2 }, { "!8 h Xb b", 1, 2 },
  { " < i2  > i2 ", 1, 2 }, { "", },
}

-- Formats that align (their first item may be padded) with their values.
local aligning = {
  { "!8 d", 1.5 }, { "!4 i4", -7 }, { "!2 h", 3 }, { "!8 s", "abc" },
  { "! Xj b", 9 }, { "!8 i16", -1 }, { "!16 i16", 5 }, { "!4 i8", 1 },
  { "!8 b Xi8 j", 1, 2 }, { "!4 i6", 5 }, { "!8 x d", 1.25 },
}

describe("seg:pack", function()
  it("writes exactly string.pack's bytes at offset 0 and returns the next offset", function()
    local seg = new_segment(300)
    for _, c in ipairs(cases) do
      local fmt = c[1]
      local expected = string.pack(fmt, table.unpack(c, 2))
      seg:fill(0xAA)
      local nxt = seg:pack(fmt, 0, table.unpack(c, 2))
      assert.equals(#expected, nxt, fmt)
      assert.equals(expected, seg:read(0, #expected), fmt)
      -- nothing beyond the packed bytes
      assert.equals(("\xAA"):rep(300 - #expected), seg:read(#expected), fmt)
    end
  end)

  it("writes string.pack's bytes at every offset 0..17, aligned relative to the segment start",
    function()
      local seg = new_segment(300)
      for _, list in ipairs({ cases, aligning }) do
        for _, c in ipairs(list) do
          local fmt = c[1]
          for off = 0, 17 do
            local expected = ref_pack(off, fmt, table.unpack(c, 2))
            seg:fill(0x55)
            local nxt = seg:pack(fmt, off, table.unpack(c, 2))
            assert.equals(off + #expected, nxt, fmt .. " at " .. off)
            assert.equals(expected, seg:read(off, #expected), fmt .. " at " .. off)
            assert.equals(("\x55"):rep(off), seg:read(0, off))
            assert.equals(("\x55"):rep(300 - nxt), seg:read(nxt))
          end
        end
      end
    end)

  it("pads to the alignment boundary counted from the segment start", function()
    local seg = new_segment(64)
    for off = 0, 17 do
      seg:fill(0xFF)
      local at = (off + 7) // 8 * 8
      assert.equals(at + 8, seg:pack("!8 d", off, 1.5))
      assert.equals(("\0"):rep(at - off), seg:read(off, at - off))
      assert.equals(string.pack("d", 1.5), seg:read(at, 8))
      local v, nxt = seg:unpack("!8 d", off)
      assert.equals(1.5, v)
      assert.equals(at + 8, nxt)

      at = (off + 3) // 4 * 4
      seg:fill(0xFF)
      assert.equals(at + 1, seg:pack("!4 Xi4 b", off, 7))
      assert.equals(7, seg:byte(at))
      -- 'X' only aligns: nothing is written for it but the padding
      assert.equals(("\0"):rep(at - off), seg:read(off, at - off))
      -- an alignment bigger than the maximum is cut down to it
      seg:fill(0xFF)
      at = (off + 1) // 2 * 2
      assert.equals(at + 8, seg:pack("!2 j", off, -1))
    end
  end)

  it("converts arguments as string.pack does", function()
    local seg = new_segment(64)
    local conv = {
      { "i4", "12" }, { "d", "1.5" }, { "c3", 42 }, { "z", 7 }, { "s1", 3.5 },
      { "i8", 3.0 }, { "f", 2 }, { "j", "0x10" },
    }
    for _, c in ipairs(conv) do
      local expected = string.pack(c[1], c[2])
      assert.equals(#expected, seg:pack(c[1], 0, c[2]), c[1])
      assert.equals(expected, seg:read(0, #expected), c[1])
    end
  end)
end)

describe("seg:unpack", function()
  it("reads back what seg:pack wrote, as string.unpack does, with the next offset 0-based", function()
    local seg = new_segment(300)
    for _, list in ipairs({ cases, aligning }) do
      for _, c in ipairs(list) do
        local fmt = c[1]
        for off = 0, 9 do
          seg:fill(0)
          local nxt = seg:pack(fmt, off, table.unpack(c, 2))
          local got = table.pack(seg:unpack(fmt, off))
          assert.equals(nxt, got[got.n], fmt .. " at " .. off)
          local whole = seg:read(0)
          local ref = table.pack(string.unpack(fmt, whole, off + 1))
          ref[ref.n] = ref[ref.n] - 1
          assert.is_true(same_list(ref, got), fmt .. " at " .. off)
        end
      end
    end
  end)

  it("round-trips values exactly", function()
    local seg = new_segment(128)
    local nxt = seg:pack("<i3 >I5 d f s2 z c4 j", 3, -5, 1 << 33, 0.1, 0.5,
      "ab\0cd", "zz", "xy", math.mininteger)
    local a, b, c, d, e, f, g, h, n = seg:unpack("<i3 >I5 d f s2 z c4 j", 3)
    assert.same({ -5, 1 << 33, 0.1, 0.5, "ab\0cd", "zz", "xy\0\0", math.mininteger },
      { a, b, c, d, e, f, g, h })
    assert.equals(nxt, n)
    assert.equals("integer", math.type(a))
    assert.equals("float", math.type(c))
    -- an empty format reads nothing and returns the offset
    assert.same({ 7 }, { seg:unpack("", 7) })
    assert.same({ 128 }, { seg:unpack("", 128) })
  end)

  it("equals string.unpack of the whole segment at every offset, alignment included", function()
    math.randomseed(7)
    local seg = new_segment(96)
    seg:write(0, randbytes(96))
    local whole = seg:read(0)
    local fmts = {
      "!8 d", "!4 i4", "!2 h", "!8 j J", "! b Xj b", "!8 i16", "!16 i16", "!4 i8",
      "!8 i3 i5 i6 i7", "<i9", ">I12", "c5", "b B h H", "<f >f", "n", "x b",
      "!8 T", "!8 Xi4 I4", "l L",
    }
    for _, fmt in ipairs(fmts) do
      for off = 0, 96 do
        local ok, ref = pcall(function()
          return table.pack(string.unpack(fmt, whole, off + 1))
        end)
        local ok2, got = pcall(seg_unpack, seg, fmt, off)
        if ok then
          assert.is_true(ok2, fmt .. " at " .. off .. ": " .. tostring(got))
          assert.is_true(same_list(ref, got), fmt .. " at " .. off)
        else
          assert.is_false(ok2, fmt .. " at " .. off)
          local m1, m2 = errmsg(error, ref), errmsg(error, got)
          if m1 == "data string too short" then
            assert.matches("format runs past the end of the segment", m2, 1, true)
          else
            assert.equals(m1, m2, fmt .. " at " .. off)
          end
        end
      end
    end
  end)

  it("reads strings with a length prefix and zero-terminated strings", function()
    local seg = new_segment(32)
    seg:fill(0)
    seg:write(0, string.pack("<s2", "hello") .. "abc\0")
    assert.same({ "hello", "abc", 11 }, { seg:unpack("<s2 z", 0) })
    -- no terminating zero before the end
    seg:fill(0x41)
    assert.equals("unfinished string for format 'z'", errmsg(function() return seg:unpack("z", 0) end))
    assert.equals(errmsg(string.unpack, "z", seg:read(0)),
      errmsg(function() return seg:unpack("z", 0) end))
    -- a length prefix that points past the end
    seg:write(0, string.pack("<I4", 29))
    assert.matches("format runs past the end of the segment",
      errmsg(function() return seg:unpack("<s4", 0) end), 1, true)
    seg:write(0, string.pack("<I4", 28))
    assert.equals(("A"):rep(28), (seg:unpack("<s4", 0)))
  end)

  it("refuses integers wider than lua_Integer that do not fit, like string.unpack", function()
    local seg = new_segment(16)
    seg:fill(0)
    seg:setbyte(9, 1)
    assert.equals("10-byte integer does not fit into Lua Integer",
      errmsg(function() return seg:unpack("<i10", 0) end))
    assert.equals(errmsg(string.unpack, "<i10", seg:read(0)),
      errmsg(function() return seg:unpack("<i10", 0) end))
    seg:fill(0xff)
    assert.equals(-1, (seg:unpack("<i16", 0)))
    assert.equals("16-byte integer does not fit into Lua Integer",
      errmsg(function() return seg:unpack("<I16", 0) end))
  end)
end)

describe("seg:pack errors", function()
  -- {fmt, values, message, is the error about a value (argument numbers
  -- then differ by one between string.pack and seg:pack)}
  local bad = {
    { "i1", { 128 }, "integer overflow", true },
    { "i1", { -129 }, "integer overflow", true },
    { "b", { 200 }, "integer overflow", true },
    { "h", { 1 << 15 }, "integer overflow", true },
    { "i3", { 1 << 23 }, "integer overflow", true },
    { "i7", { -(1 << 55) - 1 }, "integer overflow", true },
    { "B", { 256 }, "unsigned overflow", true },
    { "B", { -1 }, "unsigned overflow", true },
    { "I2", { 65536 }, "unsigned overflow", true },
    { "H", { -1 }, "unsigned overflow", true },
    { "I7", { 1 << 56 }, "unsigned overflow", true },
    { "y", {}, "invalid format option 'y'", false },
    { "i4 i4 q", { 1, 2 }, "invalid format option 'q'", false },
    { "X", {}, "invalid next option for option 'X'", false },
    { "b X", { 1 }, "invalid next option for option 'X'", false },
    { "Xc4", {}, "invalid next option for option 'X'", false },
    { "Xz", {}, "invalid next option for option 'X'", false },
    { "X<", {}, "invalid next option for option 'X'", false },
    { "!3 i4", { 1 }, "format asks for alignment not power of 2", false },
    { "!12 b i16", { 1, 2 }, "format asks for alignment not power of 2", false },
    { "!6 Xi8", {}, "format asks for alignment not power of 2", false },
    { "!8 b i3", { 1, 2 }, "format asks for alignment not power of 2", false },
    { "! i5", { 1 }, "format asks for alignment not power of 2", false },
    { "c2", { "abc" }, "string longer than given size", true },
    { "c0", { "a" }, "string longer than given size", true },
    { "z", { "a\0b" }, "string contains zeros", true },
    { "s1", { ("x"):rep(256) }, "string length does not fit in given size", true },
    { "i0", { 1 }, "integral size (0) out of limits [1,16]", false },
    { "i17", { 1 }, "integral size (17) out of limits [1,16]", false },
    { "I99", { 1 }, "integral size (99) out of limits [1,16]", false },
    { "s17", { "a" }, "integral size (17) out of limits [1,16]", false },
    { "!17", {}, "integral size (17) out of limits [1,16]", false },
    { "c", { "" }, "missing size for format option 'c'", false },
    { "i4", { 1.5 }, "number has no integer representation", true },
    { "i4", { "x" }, "number expected, got string", true },
    { "d", { {} }, "number expected, got table", true },
    { "z", { true }, "string expected, got boolean", true },
    { "i4 i4", { 1 }, "number expected, got no value", true },
  }

  it("raises string.pack's messages", function()
    local seg = new_segment(64)
    for _, b in ipairs(bad) do
      local fmt, vals, msg, isvalue = b[1], b[2], b[3], b[4]
      local ok1, e1 = pcall(function() return string.pack(fmt, table.unpack(vals)) end)
      local ok2, e2 = pcall(function() return seg:pack(fmt, 0, table.unpack(vals)) end)
      assert.is_false(ok1, fmt)
      assert.is_false(ok2, fmt)
      assert.equals(msg, errmsg(error, e2), fmt)
      assert.equals(same_msg(errmsg(error, e1)), errmsg(error, e2), fmt)
      -- the argument named is the same one (a value is one further on,
      -- after the offset; the method call does not count self)
      local n1 = tonumber(tostring(e1):match("bad argument #(%d+)"))
      local n2 = tonumber(tostring(e2):match("bad argument #(%d+)"))
      if n1 then
        assert.equals(n1 + (isvalue and 1 or 0), n2, fmt)
      end
    end
  end)

  it("writes nothing when any value or option fails, wherever it is", function()
    math.randomseed(11)
    local seg = new_segment(64)
    local calls = {
      { "i4 i4 i1", 1, 2, 300 },               -- the 3rd value overflows
      { "i4 i4 B", 1, 2, -1 },
      { "z z z", "a", "b", "c\0" },
      { "c2 c2 c2", "a", "b", "abc" },
      { "i4 d s1", 1, 2.0, ("x"):rep(300) },
      { "i4 i4 i4", 1, 2, "nope" },
      { "i4 i4 i4", 1, 2 },                     -- the 3rd value is missing
      { "i4 i4 y", 1, 2 },                      -- a bad option after two values
      { "i4 i4 !3 i4", 1, 2, 3 },
      { "i4 i4 X", 1, 2 },
      { "i4 i4 i17", 1, 2, 3 },
      { "i4 i4 c", 1, 2, "" },
    }
    for _, c in ipairs(calls) do
      for _, off in ipairs({ 0, 1, 5, 16 }) do
        seg:write(0, randbytes(64))
        local before = seg:read(0)
        assert.has_error(function() seg:pack(c[1], off, table.unpack(c, 2)) end)
        assert.equals(before, seg:read(0), c[1] .. " at " .. off)
      end
    end
  end)

  it("checks bounds before writing anything", function()
    math.randomseed(12)
    local seg = new_segment(32)
    local function check(fmt, off, ...)
      seg:write(0, randbytes(32))
      local before = seg:read(0)
      local args = table.pack(...)
      local e = errmsg(function() return seg:pack(fmt, off, table.unpack(args, 1, args.n)) end)
      assert.equals(before, seg:read(0), fmt .. " at " .. tostring(off))
      return e
    end
    -- the format runs past the end: the item that does not fit is named
    assert.equals("format runs past the end of the segment (item at offset 29, size 32)",
      check("i4", 29, 1))
    assert.matches("format runs past the end", check("i4 i4 i4", 24, 1, 2, 3), 1, true)
    assert.matches("format runs past the end", check("i4 i4 z", 20, 1, 2, "12345"), 1, true)
    assert.matches("format runs past the end", check("c33", 0, "a"), 1, true)
    assert.matches("format runs past the end", check("s1", 30, "ab"), 1, true)
    assert.matches("format runs past the end", check("!8 b d", 25, 1, 1.0), 1, true)
    assert.matches("format runs past the end", check("b", 32, 1), 1, true)
    assert.matches("format runs past the end", check("x", 32), 1, true)
    assert.matches("format runs past the end", check("!4 Xi4 b", 29, 1), 1, true)
    -- exactly fitting is fine
    assert.equals(32, seg:pack("i4", 28, 1))
    assert.equals(32, seg:pack("z", 29, "ab"))
    assert.equals(32, seg:pack("", 32))
    -- offsets outside 0..size
    assert.equals("offset 33 out of range (segment size 32)", check("b", 33, 1))
    assert.equals("offset -1 out of range (segment size 32)", check("b", -1, 1))
    assert.equals("offset -1 out of range (segment size 32)", check("", -1))
    assert.matches("out of range", check("b", math.maxinteger, 1), 1, true)
    assert.matches("out of range", check("b", math.mininteger, 1), 1, true)
    assert.matches("number has no integer representation", check("b", 1.5, 1), 1, true)
  end)

  it("checks bounds on unpack", function()
    local seg = new_segment(32)
    seg:fill(0)
    assert.equals("format runs past the end of the segment (item at offset 29, size 32)",
      errmsg(function() return seg:unpack("i4", 29) end))
    assert.matches("format runs past the end", errmsg(function() return seg:unpack("c33", 0) end),
      1, true)
    assert.matches("format runs past the end", errmsg(function() return seg:unpack("b", 32) end),
      1, true)
    assert.matches("format runs past the end", errmsg(function() return seg:unpack("!8 b d", 25) end),
      1, true)
    assert.equals("offset 33 out of range (segment size 32)",
      errmsg(function() return seg:unpack("b", 33) end))
    assert.equals("offset -1 out of range (segment size 32)",
      errmsg(function() return seg:unpack("b", -1) end))
    assert.equals("invalid format option 'y'", errmsg(function() return seg:unpack("y", 0) end))
    assert.same({ 0, 32 }, { seg:unpack("B", 31) })
  end)

  it("raises on a read-only attachment, which can still unpack", function()
    local seg, id = new_segment(32)
    seg:pack("<i4", 0, 1234)
    local ro = assert(shm.attach(id, { readonly = true }))
    local e = errmsg(function() return ro:pack("<i4", 0, 1) end)
    assert.matches("read-only", e, 1, true)
    assert.same({ 1234, 4 }, { ro:unpack("<i4", 0) })
    assert.equals(1234, (seg:unpack("<i4", 0)))
    ro:detach()
  end)

  it("raises on a detached segment", function()
    local seg = new_segment(32)
    assert.is_true(seg:detach())
    assert.matches("detached", errmsg(function() return seg:pack("b", 0, 1) end), 1, true)
    assert.matches("detached", errmsg(function() return seg:unpack("b", 0) end), 1, true)
  end)
end)

describe("seg:pack against string.pack, randomized", function()
  -- A random format item and its values (some of them invalid).
  local function rand_int(size, signed)
    local r = math.random(100)
    if size >= 8 or r <= 3 then return math.random(0) end -- any 64-bit value
    local bits = size * 8
    if r <= 8 then -- just out of range, or at the edge
      local edges = signed and { 1 << (bits - 1), -(1 << (bits - 1)) - 1,
        (1 << (bits - 1)) - 1, -(1 << (bits - 1)) }
        or { 1 << bits, -1, (1 << bits) - 1, 0 }
      return edges[math.random(#edges)]
    end
    local v = math.random(0, (1 << bits) - 1)
    if signed then v = v - (1 << (bits - 1)) end
    return v
  end

  local function rand_float()
    local r = math.random(20)
    if r == 1 then return math.huge elseif r == 2 then return -math.huge
    elseif r == 3 then return 0.0 elseif r == 4 then return -0.0
    elseif r == 5 then return 1e300 elseif r == 6 then return 1e-320
    elseif r == 7 then return 0 / 0 elseif r == 8 then return math.random(-1000, 1000)
    end
    return (math.random() - 0.5) * 10 ^ math.random(-40, 40)
  end

  local function rand_string(maxlen)
    return randbytes(math.random(0, maxlen))
  end

  local intopts = { "b", "B", "h", "H", "l", "L", "j", "J", "T", "i", "I" }
  local intsize = { b = 1, B = 1, h = 2, H = 2, l = 8, L = 8, j = 8, J = 8, T = 8,
    i = 4, I = 4 }

  local function rand_item(vals)
    local r = math.random(100)
    if r <= 25 then
      local o = intopts[math.random(#intopts)]
      local size = intsize[o]
      if (o == "i" or o == "I") and math.random(2) == 1 then
        size = math.random(1, 16)
        o = o .. size
      end
      vals[#vals + 1] = rand_int(size, o:match("^[bhlji]") ~= nil)
      return o
    elseif r <= 35 then
      local o = ({ "f", "d", "n" })[math.random(3)]
      vals[#vals + 1] = rand_float()
      return o
    elseif r <= 45 then
      local n = ({ "", "1", "2", "3", "4", "8" })[math.random(6)]
      local s = rand_string(20)
      if n == "1" and math.random(10) == 1 then s = ("x"):rep(256) end
      vals[#vals + 1] = s
      return "s" .. n
    elseif r <= 52 then
      local s = rand_string(12):gsub("%z", "")
      if math.random(10) == 1 then s = s .. "\0" .. s end
      vals[#vals + 1] = s
      return "z"
    elseif r <= 60 then
      local n = math.random(0, 10)
      local s = rand_string(n + (math.random(10) == 1 and 2 or 0))
      vals[#vals + 1] = s
      return "c" .. n
    elseif r <= 64 then
      return "x"
    elseif r <= 72 then
      local nextopt = ({ "i2", "i4", "i8", "d", "j", "h", "i16", "i3", "b", "c2", "z", "<", "" })
        [math.random(13)]
      return "X" .. nextopt
    elseif r <= 82 then
      return ({ "!", "!1", "!2", "!4", "!8", "!16", "!3" })[math.random(7)]
    elseif r <= 94 then
      return ({ "<", ">", "=", " " })[math.random(4)]
    elseif r <= 96 then
      vals[#vals + 1] = ({ true, {}, "abc", "12", 2.5 })[math.random(5)]
      return ({ "i4", "d", "z", "c3" })[math.random(4)]
    elseif r <= 97 then
      return ({ "y", "i0", "i17", "c", "!0", "@" })[math.random(6)]
    else
      return ""
    end
  end

  -- ncases random formats of minitems..maxitems items, packed and unpacked
  -- both ways; returns the counts of the three outcomes.
  local function differential(seed, ncases, minitems, maxitems)
    math.randomseed(seed)
    local size = 1024
    local seg = new_segment(size)
    local stats = { ok = 0, err = 0, bounds = 0 }
    for case = 1, ncases do
      local items, vals = {}, {}
      for i = 1, math.random(minitems, maxitems) do items[i] = rand_item(vals) end
      if math.random(30) == 1 then vals[#vals] = nil end -- a value goes missing
      local fmt = table.concat(items, math.random(2) == 1 and " " or "")
      local nearend = math.random(10) == 1
      local off = nearend and size - math.random(0, 24) or math.random(0, 64)
      local label = ("case %d: %q at %d"):format(case, fmt, off)

      seg:write(0, randbytes(size))
      local before = seg:read(0)

      local ok1, ref = pcall(ref_pack, off, fmt, table.unpack(vals))
      local ok2, nxt = pcall(seg.pack, seg, fmt, off, table.unpack(vals))
      if ok1 and off + #ref <= size then
        stats.ok = stats.ok + 1
        assert.is_true(ok2, label .. ": " .. tostring(nxt))
        assert.equals(off + #ref, nxt, label)
        local after = seg:read(0)
        assert.equals(ref, after:sub(off + 1, nxt), label)
        assert.equals(before:sub(1, off), after:sub(1, off), label)
        assert.equals(before:sub(nxt + 1), after:sub(nxt + 1), label)
        -- and unpacking it gives string.unpack's values and offset
        local u1 = table.pack(string.unpack(fmt, after, off + 1))
        local u2 = seg_unpack(seg, fmt, off)
        assert.is_true(same_list(u1, u2), label)
      else
        assert.is_false(ok2, label)
        assert.equals(before, seg:read(0), label .. ": wrote on failure")
        local m2 = errmsg(error, nxt)
        if ok1 then -- fits string.pack, not the segment
          stats.bounds = stats.bounds + 1
          assert.matches("format runs past the end of the segment", m2, 1, true)
        else
          stats.err = stats.err + 1
          local m1 = errmsg(error, ref)
          if nearend and m2:find("format runs past the end of the segment", 1, true) then
            -- an earlier item already fell off the end
            stats.bounds = stats.bounds + 1
          else
            assert.equals(same_msg(m1), same_msg(m2), label)
          end
        end
      end

      -- unpack the (random) segment with the same format, both ways
      local whole = seg:read(0)
      local okr, r1 = pcall(function() return table.pack(string.unpack(fmt, whole, off + 1)) end)
      local okg, r2 = pcall(seg_unpack, seg, fmt, off)
      if okr then
        assert.is_true(okg, label .. " (unpack): " .. tostring(r2))
        assert.is_true(same_list(r1, r2), label .. " (unpack)")
      else
        assert.is_false(okg, label .. " (unpack)")
        local m1, m2 = errmsg(error, r1), errmsg(error, r2)
        if m1 == "data string too short" then
          assert.matches("format runs past the end of the segment", m2, 1, true)
        else
          assert.equals(m1, m2, label .. " (unpack)")
        end
      end
    end
    return stats
  end

  it("agrees with string.pack on bytes, next offset and errors (3000 formats)", function()
    local stats = differential(20240601, 3000, 1, 8)
    -- the generator exercises all three outcomes
    assert.is_true(stats.ok > 1000, "successes: " .. stats.ok)
    assert.is_true(stats.err > 100, "errors: " .. stats.err)
    assert.is_true(stats.bounds > 20, "bounds errors: " .. stats.bounds)
  end)

  -- seg:pack parses a format of up to 16 items (spaces, '<', '>', '=' and
  -- '!' not counted) once into an array and takes a two-pass parsing path
  -- for longer ones: formats around and beyond that length, both paths
  it("agrees with string.pack on long formats (1500 formats of 10-40 items)", function()
    local stats = differential(20240602, 1500, 10, 40)
    assert.is_true(stats.ok > 150, "successes: " .. stats.ok)
    assert.is_true(stats.err > 100, "errors: " .. stats.err)
    assert.is_true(stats.bounds > 20, "bounds errors: " .. stats.bounds)
  end)

  it("uses the native byte order for '='", function()
    local seg = new_segment(8)
    seg:pack("=i4", 0, 1)
    assert.equals(LITTLE and 1 or 0, seg:byte(0))
  end)
end)

-- seg:pack/seg:unpack parse a format of up to 16 items once (spaces, '<',
-- '>', '=' and '!' are not items) and write fixed-size numbers with whole
-- loads and stores; longer formats, and formats with an error anywhere, take
-- a path that parses as it goes.  These cases pin the edges of both paths.
describe("seg:pack/seg:unpack fast path edges", function()
  -- seg:pack at off against string.pack, bytes around it untouched, and
  -- seg:unpack of the result against string.unpack.
  local function check_both(seg, fmt, off, ...)
    local label = ("%q at %d"):format(fmt, off)
    local expected = ref_pack(off, fmt, ...)
    seg:fill(0x5A)
    local nxt = seg:pack(fmt, off, ...)
    assert.equals(off + #expected, nxt, label)
    assert.equals(expected, seg:read(off, #expected), label)
    assert.equals(("\x5A"):rep(off), seg:read(0, off), label)
    assert.equals(("\x5A"):rep(seg:size() - nxt), seg:read(nxt), label)
    local ref = table.pack(string.unpack(fmt, seg:read(0), off + 1))
    assert.is_true(same_list(ref, seg_unpack(seg, fmt, off)), label)
  end

  -- n items cycling through the kinds, with endianness and alignment
  -- options in between that do not count as items; their values.
  local kinds = {
    { "b", -7 }, { "H", 65000 }, { "i3", -70000, even = { "i2", -7000 } }, { "j", math.mininteger },
    { "d", -0.5 }, { "f", 0.25 }, { "s1", "ab" }, { "z", "zz" }, { "c3", "c" },
    { "x" }, { "Xi4" }, { "I5", 1 << 33, even = { "I4", 1 << 31 } }, { "n", 1e100 }, { "T", 99 },
    { "i16", -3 }, { "J", -1 }, { "l", 12345 },
  }
  local nops = { " ", "<", ">", "=", "!4", "!", "!8", "  " }
  local function long_format(n, withnops)
    local parts, vals = {}, {}
    for i = 1, n do
      local k = kinds[(i - 1) % #kinds + 1]
      if withnops then
        parts[#parts + 1] = nops[(i - 1) % #nops + 1]
        -- under '!', an odd size asks for an alignment that is no power of 2
        k = k.even or k
      end
      parts[#parts + 1] = k[1]
      if k[2] ~= nil then vals[#vals + 1] = k[2] end
    end
    return table.concat(parts, withnops and "" or " "), vals
  end

  it("packs and unpacks formats of 1 to 40 items, across the 16-item limit", function()
    local seg = new_segment(1024)
    for n = 1, 40 do
      for _, withnops in ipairs({ false, true }) do
        local fmt, vals = long_format(n, withnops)
        for off = 0, 9 do
          check_both(seg, fmt, off, table.unpack(vals))
        end
      end
    end
    -- 16 items followed by options that are not items (still the fast path)
    -- and by one more item (the other path)
    local fmt16, vals16 = long_format(16, false)
    for _, tail in ipairs({ " < > = !2 ", "<!8", " b" }) do
      local vals = { table.unpack(vals16) }
      if tail == " b" then vals[#vals + 1] = 5 end
      for off = 0, 9 do
        check_both(seg, fmt16 .. tail, off, table.unpack(vals))
      end
    end
  end)

  it("returns more results than LUA_MINSTACK from one unpack", function()
    local seg = new_segment(256)
    seg:write(0, randbytes(256))
    for _, n in ipairs({ 16, 17, 18, 19, 20, 21, 100, 250 }) do
      local fmt = ("b"):rep(n)
      local ref = table.pack(string.unpack(fmt, seg:read(0), 2))
      assert.is_true(same_list(ref, seg_unpack(seg, fmt, 1)), fmt)
      fmt = ("<i2 "):rep(n // 2)
      ref = table.pack(string.unpack(fmt, seg:read(0), 4))
      assert.is_true(same_list(ref, seg_unpack(seg, fmt, 3)), fmt)
    end
  end)

  it("writes and reads every integer size, float and double in both byte orders", function()
    math.randomseed(31)
    local seg = new_segment(256)
    local ints = { 0, 1, -1, 127, -128, 255, 256, 0x7fff, -0x8000, 0xffff, 0x123456,
      0x7fffffff, -0x80000000, 0xffffffff, 0x123456789a, 1 << 47, -(1 << 55),
      math.maxinteger, math.mininteger }
    local floats = { 0.0, -0.0, 1.5, -2.25, 1e-310, 1e300, math.huge, -math.huge, math.pi,
      3.4028235677973366e38, 1e-45 }
    for _, order in ipairs({ "<", ">", "=" }) do
      for size = 1, 16 do
        for _, signed in ipairs({ "i", "I" }) do
          local fmt = order .. signed .. size
          for _, v in ipairs(ints) do
            -- only the values string.pack accepts for this size
            if pcall(string.pack, fmt, v) then
              for _, off in ipairs({ 0, 1, 3, 7 }) do
                check_both(seg, fmt, off, v)
                -- the same item after 16 others: the parsing path
                check_both(seg, ("x"):rep(16) .. fmt, off, v)
              end
            end
          end
        end
      end
      for _, opt in ipairs({ "b", "B", "h", "H", "l", "L", "j", "J", "T" }) do
        local fmt = order .. opt
        for _, v in ipairs(ints) do
          if pcall(string.pack, fmt, v) then
            check_both(seg, fmt, 5, v)
            check_both(seg, "!8 b" .. fmt .. " b", 3, 1, v, 2)
          end
        end
      end
      for _, opt in ipairs({ "f", "d", "n" }) do
        for _, v in ipairs(floats) do
          check_both(seg, order .. opt, 2, v)
          check_both(seg, "!8 b" .. order .. opt, 1, 9, v)
          check_both(seg, ("x"):rep(17) .. order .. opt, 1, v)
        end
      end
      -- random bytes, read in this order at every size and offset
      seg:write(0, randbytes(256))
      local whole = seg:read(0)
      for size = 1, 16 do
        for _, signed in ipairs({ "i", "I" }) do
          local fmt = order .. signed .. size .. " " .. order .. "f " .. order .. "d"
          for off = 0, 20 do
            local ok1, r1 = pcall(function() return table.pack(string.unpack(fmt, whole, off + 1)) end)
            local ok2, r2 = pcall(seg_unpack, seg, fmt, off)
            assert.equals(ok1, ok2, fmt .. " at " .. off)
            if ok1 then
              assert.is_true(same_list(r1, r2), fmt .. " at " .. off)
            else
              assert.equals(errmsg(error, r1), errmsg(error, r2), fmt .. " at " .. off)
            end
          end
        end
      end
    end
  end)

  it("keeps formats of the same length apart when they alternate", function()
    math.randomseed(32)
    local seg = new_segment(64)
    -- same length, different meaning
    local same_len = {
      { "<i8", 77 }, { ">i8", 77 }, { "<I8", -2 }, { "=i8", 77 }, { "<i4", 77 },
      { ">i4", -77 }, { "<d ", 77.5 }, { ">d ", 77.5 }, { "<f ", 0.5 }, { "<s2", "ab" },
      { "<z ", "ab" }, { "<c3", "ab" }, { "!8d", 2.0 }, { "!4d", 2.0 }, { "bxb", 1, 2 },
      { "bbb", 1, 2, 3 }, { "<h>", 1 }, { "Xi8", },
    }
    for _ = 1, 20 do
      for i = #same_len, 2, -1 do
        local j = math.random(i)
        same_len[i], same_len[j] = same_len[j], same_len[i]
      end
      for _, c in ipairs(same_len) do
        check_both(seg, c[1], math.random(0, 9), table.unpack(c, 2))
      end
    end
  end)

  it("raises the same errors after a format has been used successfully", function()
    math.randomseed(33)
    local seg = new_segment(64)
    local fmt16 = long_format(16, false)
    -- {fmt, good values, bad values, message}
    local errcases = {
      { "<I8c56", { 1, "x" }, { 1, ("x"):rep(57) }, "string longer than given size" },
      { "<I8c56", { 1, "x" }, { 1.5, "x" }, "number has no integer representation" },
      { "<i2", { 5 }, { 1 << 15 }, "integer overflow" },
      { "<I2", { 5 }, { -1 }, "unsigned overflow" },
      { ">d", { 1.5 }, { "x" }, "number expected, got string" },
      { "z", { "ab" }, { "a\0b" }, "string contains zeros" },
      { "s1", { "ab" }, { ("y"):rep(256) }, "string length does not fit in given size" },
      { "i4 i4", { 1, 2 }, { 1 }, "number expected, got no value" },
    }
    for _, c in ipairs(errcases) do
      local fmt, good, badv, msg = c[1], c[2], c[3], c[4]
      for _ = 1, 3 do
        check_both(seg, fmt, 0, table.unpack(good))
        seg:write(0, randbytes(64))
        local before = seg:read(0)
        local e = errmsg(function() return seg:pack(fmt, 0, table.unpack(badv)) end)
        assert.equals(msg, e, fmt)
        assert.equals(same_msg(errmsg(string.pack, fmt, table.unpack(badv))), e, fmt)
        assert.equals(before, seg:read(0), fmt .. ": wrote on failure")
      end
    end
    -- the first error in format order wins, before or beyond 16 items
    local order = {
      { "i1 y", { 300 }, "integer overflow" },
      { "i1 !3 i4", { 300, 1 }, "integer overflow" },
      { "i1 " .. fmt16 .. " y", { 300 }, "integer overflow" },
      { "i1 i17", { 300, 1 }, "integer overflow" },
      { "i1 Xz", { 1 }, "invalid next option for option 'X'" },
      { "i4 y i1", { 1, 300 }, "invalid format option 'y'" },
      { "c2 c", { "abc", "" }, "string longer than given size" },
      { "b " .. fmt16 .. " q", { 1 }, "number expected, got no value" },
    }
    for _, c in ipairs(order) do
      local fmt, vals, msg = c[1], c[2], c[3]
      seg:write(0, randbytes(64))
      local before = seg:read(0)
      local e = errmsg(function() return seg:pack(fmt, 0, table.unpack(vals)) end)
      assert.equals(msg, e, fmt)
      assert.equals(same_msg(errmsg(string.pack, fmt, table.unpack(vals))), e, fmt)
      assert.equals(before, seg:read(0), fmt .. ": wrote on failure")
    end
    -- unpack: an item past the end is reported before a later bad option
    -- (string.unpack: "data string too short"), a bad option before a later
    -- item past the end
    assert.matches("format runs past the end of the segment",
      errmsg(function() return seg:unpack("i4 y", 62) end), 1, true)
    assert.equals("data string too short", errmsg(string.unpack, "i4 y", seg:read(0), 63))
    assert.equals("invalid format option 'y'", errmsg(function() return seg:unpack("b y i8", 60) end))
    assert.equals("invalid format option 'y'", errmsg(string.unpack, "b y i8", seg:read(0), 61))
    assert.matches("format runs past the end of the segment",
      errmsg(function() return seg:unpack("<i8", 60) end), 1, true)
    assert.same({ seg:unpack("<i8", 56) }, { (string.unpack("<i8", seg:read(0), 57)), 64 })
  end)
end)

-- seg:pack and seg:unpack called with every value of a fixed set at every
-- argument position (spec/support/sweep.lua).
require("support.sweep").describe("pack")
