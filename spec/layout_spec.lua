-- Specs for sysvshm.layout: placement against the C compiler, C declarations,
-- views (reads, writes, errors, nothing written on failure) and plain reads.
local shm = require "sysvshm"
local layout = require "sysvshm.layout"

-- A fresh segment, two more attachments of it (one read-only), removed at
-- once: attached removed segments stay usable until detached.
local function newseg(size)
  local id = assert(shm.create(shm.IPC_PRIVATE, size or 4096))
  local seg, err = shm.attach(id)
  local seg2 = seg and shm.attach(id)
  local ro = seg and shm.attach(id, { readonly = true })
  assert(shm.remove(id))
  assert(seg, err)
  assert(seg2 and ro, "second attachment failed")
  seg:fill(0xAA) -- so that stray writes and zeroed padding show
  return seg, seg2, ro
end

-- fn must raise an error matching pattern and leave the segment unchanged.
local function fails(seg, pattern, fn, ...)
  local before = seg:read(0)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.matches(pattern, tostring(err))
  assert.equal(before, seg:read(0), "the segment changed")
end

-- ---- against the C compiler ----------------------------------------------------

-- Every path worth checking in L, as {luapath, cdesignator}: each field,
-- first and last elements of arrays, and the fields of nested structs.
local function paths(L, lpre, cpre, out)
  out = out or {}
  for _, f in ipairs(L.fields) do
    local lp, cp = lpre .. f.name, cpre .. f.name
    out[#out + 1] = { lp, cp }
    local elems = {}
    if f.count then
      elems = { { lp .. "[1]", cp .. "[0]" }, { lp .. "[" .. f.count .. "]", cp .. "[" .. (f.count - 1) .. "]" } }
      for _, e in ipairs(elems) do
        out[#out + 1] = e
      end
    elseif f.kind == "struct" then
      elems = { { lp, cp } }
    end
    if f.kind == "struct" then
      for _, e in ipairs(elems) do
        paths(f.type, e[1] .. ".", e[2] .. ".", out)
      end
    end
  end
  return out
end

local function readfile(name)
  local fh = io.open(name, "rb")
  if not fh then
    return ""
  end
  local s = fh:read("a")
  fh:close()
  return s
end

-- Compile C source; run it when run is true. Returns ok, output (compiler
-- messages or the program's output).
local function compile(src, run)
  local base = os.tmpname()
  local csrc, exe, log = base .. ".c", base .. ".exe", base .. ".log"
  local ok, out = pcall(function()
    local fh = assert(io.open(csrc, "w"))
    fh:write(src)
    fh:close()
    local cmd = string.format(
      "cc -std=c11 -Wall -Wextra -pedantic -Werror %s -o %s %s >%s 2>&1",
      run and "" or "-c",
      exe,
      csrc,
      log
    )
    if not os.execute(cmd) then
      return { false, readfile(log) }
    end
    if not run then
      return { true, "" }
    end
    local p = assert(io.popen(exe))
    local text = p:read("a")
    assert(p:close(), "the compiled program failed")
    return { true, text }
  end)
  for _, name in ipairs({ base, csrc, exe, log }) do
    os.remove(name)
  end
  assert(ok, out)
  return out[1], out[2]
end

local Point = layout.struct({ { "x", "i4" }, { "y", "d" } }, "point")
local Inner = layout.struct({ { "c", "c1" }, { "s", "i2" } }, "inner")

-- tag -> layout, all compiled in one program
local CASES = {
  char_double = layout.struct({ { "c", "c1" }, { "d", "d" } }), -- 0, 8; 16
  byte_double = layout.struct({ { "c", "i1" }, { "d", "d" } }),
  c3_i4 = layout.struct({ { "s", "c3" }, { "n", "i4" } }), -- 0, 4; 8
  trailing = layout.struct({ { "d", "d" }, { "c", "I1" } }), -- 16
  trailing4 = layout.struct({ { "n", "I4" }, { "a", "i2" }, { "b", "c1" } }), -- 8
  mixed = layout.struct({
    { "a", "i1" },
    { "b", "i2" },
    { "c", "I1" },
    { "d", "i8" },
    { "e", "f" },
    { "g", "I2" },
    { "h", "c5" },
    { "k", "I4" },
  }),
  header = layout.struct({ { "magic", "I4" }, { "count", "i8" }, { "name", "c16" }, { "samples", "d", 16 } }),
  aliases = layout.struct({
    { "b", "b" },
    { "h", "h" },
    { "B", "B" },
    { "i", "i" },
    { "H", "H" },
    { "l", "l" },
    { "I", "I" },
    { "L", "L" },
    { "f", "f" },
    { "j", "j" },
    { "J", "J" },
    { "T", "T" },
    { "d", "d" },
    { "n", "n" },
  }),
  chars = layout.struct({ { "names", "c5", 3 }, { "x", "i2" }, { "tail", "c7" } }),
  only_chars = layout.struct({ { "s", "c7" } }), -- 7, aligned to 1
  nested = layout.struct({
    { "flag", "I1" },
    { "in", Inner }, -- aligned to 2
    { "b", "I1" },
    { "p", Point },
    { "pts", Point, 3 },
    { "anon", layout.struct({ { "a", "c3" }, { "b", "h" }, { "deep", Inner, 2 } }) },
    { "anons", layout.struct({ { "t", "c1" }, { "v", "d" } }), 2 },
    { "last", "I1" },
  }),
  uses_point_too = layout.struct({ { "q", Point }, { "z", "I2" } }),
}

local TAGS = {}
for tag in pairs(CASES) do
  TAGS[#TAGS + 1] = tag
end
table.sort(TAGS)

describe("sysvshm.layout placement", function()
  it("matches the C compiler's offsets and sizeof for every field", function()
    local decls, lines, expect = {}, {}, {}
    for _, tag in ipairs(TAGS) do
      local L = CASES[tag]
      decls[#decls + 1] = L:cdecl(tag)
      for _, p in ipairs(paths(L, "", "")) do
        lines[#lines + 1] = string.format('  printf("%%zu\\n", offsetof(struct %s, %s));', tag, p[2])
        expect[#expect + 1] = string.format("%s %s %d", tag, p[1], L:offset(p[1]))
      end
      lines[#lines + 1] = string.format('  printf("%%zu\\n", sizeof(struct %s));', tag)
      expect[#expect + 1] = string.format("%s sizeof %d", tag, L.size)
    end
    local src = table.concat(decls, "\n")
      .. "\n#include <stdio.h>\nint main(void) {\n"
      .. table.concat(lines, "\n")
      .. "\n  return 0;\n}\n"
    local ok, out = compile(src, true)
    assert.is_true(ok, out)
    local got, i = {}, 0
    for n in out:gmatch("%d+") do
      i = i + 1
      got[i] = expect[i]:gsub("%d+$", n)
    end
    assert.same(expect, got)
  end)

  it("places the tricky cases as C does", function()
    assert.same({ 0, 8, 16 }, { CASES.char_double:offset("c"), CASES.char_double:offset("d"), CASES.char_double.size })
    assert.same({ 0, 4, 8 }, { CASES.c3_i4:offset("s"), CASES.c3_i4:offset("n"), CASES.c3_i4.size })
    assert.equal(16, CASES.trailing.size)
    assert.equal(8, CASES.trailing4.size)
    assert.same({ 7, 1 }, { CASES.only_chars.size, CASES.only_chars.align })
    assert.same({ 0, 2, 4, 8, 16, 20, 22, 28, 32 }, {
      CASES.mixed:offset("a"),
      CASES.mixed:offset("b"),
      CASES.mixed:offset("c"),
      CASES.mixed:offset("d"),
      CASES.mixed:offset("e"),
      CASES.mixed:offset("g"),
      CASES.mixed:offset("h"),
      CASES.mixed:offset("k"),
      CASES.mixed.size,
    })
    local H = CASES.header
    assert.same({ 0, 8, 16, 32, 160, 8 }, {
      H:offset("magic"),
      H:offset("count"),
      H:offset("name"),
      H:offset("samples"),
      H.size,
      H.align,
    })
    assert.equal(32 + 2 * 8, H:offset("samples[3]"))
    local N = CASES.nested
    assert.same({ 2, 4, 6, 8 }, { N:offset("in"), N:offset("in.s"), N:offset("b"), N:offset("p") })
    assert.equal(N:offset("pts") + 16 + 8, N:offset("pts[2].y"))
  end)

  it("compiles its static assertions, and they catch a wrong offset", function()
    local src = CASES.header:cdecl("header")
    assert.matches("_Static_assert%(offsetof%(struct header, count%) == 8,", src)
    assert.matches("_Static_assert%(sizeof%(struct header%) == 160,", src)
    assert.matches("#include <stdint.h>", src, 1, true)
    assert.is_true((compile(src, false)))
    local bad = src:gsub("count%) == 8,", "count) == 12,")
    local ok, log = compile(bad, false)
    assert.is_false(ok)
    assert.matches("offset of header.count", log, 1, true)
    bad = src:gsub("%) == 160,", ") == 152,")
    ok, log = compile(bad, false)
    assert.is_false(ok)
    assert.matches("size of struct header", log, 1, true)
  end)

  it("declares the struct with stdint types and arrays", function()
    local src = CASES.header:cdecl("hdr")
    assert.matches("struct hdr {", src, 1, true)
    assert.matches("uint32_t magic;", src, 1, true)
    assert.matches("int64_t count;", src, 1, true)
    assert.matches("char name[16];", src, 1, true)
    assert.matches("double samples[16];", src, 1, true)
    local a = CASES.aliases:cdecl("a")
    for _, decl in ipairs({
      "int8_t b;",
      "uint8_t B;",
      "int16_t h;",
      "uint16_t H;",
      "int32_t i;",
      "uint32_t I;",
      "int64_t l;",
      "uint64_t L;",
      "float f;",
      "int64_t j;",
      "uint64_t J;",
      "uint64_t T;",
      "double d;",
      "double n;",
    }) do
      assert.matches(decl, a, 1, true)
    end
    local n = CASES.nested:cdecl("n")
    assert.matches("struct point pts[3];", n, 1, true)
    assert.matches("char names[3][5];", CASES.chars:cdecl("c"), 1, true)
    -- named nested structs come first, once
    local _, count = n:gsub("struct point {", "")
    assert.equal(1, count)
    assert.is_true(n:find("struct point {", 1, true) < n:find("struct n {", 1, true))
  end)

  it("uses the layout's own name by default and refuses what C would not take", function()
    assert.matches("struct point {", Point:cdecl(), 1, true)
    assert.has_error(function()
      CASES.header:cdecl()
    end)
    assert.has_error(function()
      Point:cdecl("2bad")
    end)
    assert.has_error(function()
      Point:cdecl("int")
    end)
    local K = layout.struct({ { "default", "i4" } }, "k") -- fine in Lua, not in C
    assert.equal(0, K:offset("default"))
    assert.has_error(function()
      K:cdecl()
    end)
    local P2 = layout.struct({ { "x", "d" } }, "point")
    local Both = layout.struct({ { "a", Point }, { "b", P2 } }, "both")
    assert.has_error(function()
      Both:cdecl()
    end)
  end)
end)

-- ---- building layouts ------------------------------------------------------------

describe("sysvshm.layout.struct", function()
  it("exposes the fields for introspection", function()
    local H = CASES.header
    assert.equal(4, #H.fields)
    local f = H.fields[4]
    assert.same(
      { "samples", "d", 16, 32, 128, 8, 8, "float", "=d", "double", 4 },
      { f.name, f.type, f.count, f.offset, f.size, f.align, f.elemsize, f.kind, f.fmt, f.ctype, f.index }
    )
    local n = H.fields[3]
    assert.same({ "name", "c16", nil, 16, 16, 1, "char", "=c16" }, {
      n.name,
      n.type,
      n.count,
      n.offset,
      n.size,
      n.align,
      n.kind,
      n.fmt,
    })
    assert.equal(H.fields[2], (H:field("count")))
    local pf, off = CASES.nested:field("pts[2].y")
    assert.same({ "y", "d", CASES.nested:offset("pts") + 24 }, { pf.name, pf.type, off })
    assert.equal(Point, CASES.nested:field("p").type)
    assert.equal("struct", CASES.nested:field("p").kind)
    assert.equal("struct point", CASES.nested:field("p").ctype)
    assert.is_true(layout.is(H))
    assert.is_false(layout.is({}))
    assert.matches("struct point, 16 bytes", tostring(Point), 1, true)
  end)

  it("stores aliases as sized codes with native sizes", function()
    local A = CASES.aliases
    local want = {
      b = "i1",
      B = "I1",
      h = "i2",
      H = "I2",
      i = "i4",
      I = "I4",
      l = "i8",
      L = "I8",
      j = "i8",
      J = "I8",
      T = "I8",
      f = "f",
      d = "d",
      n = "d",
    }
    for _, f in ipairs(A.fields) do
      assert.equal(want[f.name], f.type)
      assert.equal(string.packsize(f.name), f.size)
    end
    assert.equal(4, layout.struct({ { "x", "I" } }).size)
  end)

  it("refuses bad definitions", function()
    local bad = {
      {},
      { { "x" } },
      { { "x", "i3" } },
      { { "x", "i16" } },
      { { "x", "c0" } },
      { { "x", "c" } },
      { { "x", "z" } },
      { { "x", "s4" } },
      { { "x", "<i4" } },
      { { "x", "i4", 0 } },
      { { "x", "i4", 1.5 } },
      { { "x", "i4", "2" } },
      { { "1x", "i4" } },
      { { "a b", "i4" } },
      { { 7, "i4" } },
      { { "x", "i4" }, { "x", "d" } },
      { { "x", "i4" }, "y" },
      { { "x", "i4", name = "oops" } },
      { { "x", {} } },
      { x = { "x", "i4" } },
    }
    for i, def in ipairs(bad) do
      assert.has_error(function()
        layout.struct(def)
      end, nil, "definition #" .. i)
    end
    assert.has_error(function()
      layout.struct("i4")
    end)
    assert.has_error(function()
      layout.struct({ { "x", "i4" } }, "not a name")
    end)
  end)

  -- issue 10 item 7: {"a", "i8", 1 << 61} was a struct of 0 bytes (8 * 2^61
  -- wrapped around), and cdecl then asserted wrong sizes.
  it("raises when a size or offset would pass math.maxinteger, never wraps", function()
    local MAX = math.maxinteger
    local big = layout.struct({ { "a", "c" .. MAX } }) -- fits exactly
    assert.equal(MAX, big.size)
    local huge = layout.struct({ { "a", "i1", MAX - 7 } }) -- MAX - 7 bytes, aligned to 1
    local cases = {
      { { { "a", "i8", 1 << 61 } }, "field 'a': 2305843009213693952 elements of 8 bytes" },
      { { { "a", "i8", MAX } }, "field 'a': %d+ elements of 8 bytes" },
      { { { "a", "i2", (MAX >> 1) + 1 } }, "field 'a'" },
      { { { "a", "c" .. MAX, 2 } }, "field 'a': 2 elements of " .. MAX .. " bytes" },
      { { { "a", "c" .. MAX }, { "b", "i1" } }, "field 'b' %(1 bytes%) would end past" },
      { { { "a", "i1", MAX - 3 }, { "b", "i4" } }, "field 'b' %(4 bytes%) would end past" },
      { { { "a", "i1", MAX - 7 }, { "b", "i8" } }, "field 'b' %(8 bytes%) would end past" },
      { { { "a", "i8" }, { "b", "i1", MAX - 8 } }, "cannot be padded to its alignment %(8%)" },
      { { { "a", big }, { "b", big } }, "field 'b' %(" .. MAX .. " bytes%) would end past" },
      { { { "a", big, 2 } }, "field 'a': 2 elements of " .. MAX .. " bytes" },
      { { { "x", "i8" }, { "a", huge } }, "field 'a' %(" .. (MAX - 7) .. " bytes%) would end past" },
    }
    for i, c in ipairs(cases) do
      local ok, err = pcall(layout.struct, c[1])
      assert.is_false(ok, "definition #" .. i .. " gave " .. tostring(err))
      assert.matches(c[2], tostring(err), nil, false, "definition #" .. i)
      assert.matches("too large", tostring(err))
    end
    -- the largest that fit are laid out exactly, with cdecl saying so
    local L = layout.struct({ { "a", "i8" }, { "b", "i1", MAX - 15 } }, "edge")
    assert.equal(MAX - 7, L.size)
    assert.equal(8, L:offset("b"))
    assert.equal(MAX - 8, L:offset("b[" .. (MAX - 15) .. "]"))
    assert.matches("sizeof%(struct edge%) == " .. (MAX - 7) .. ",", L:cdecl())
    -- and an index past math.maxinteger in a path is out of range, not a crash
    local ok, err = pcall(L.offset, L, "b[99999999999999999999]")
    assert.is_false(ok)
    assert.matches("index 99999999999999999999 out of range for field 'b'", err)
  end)

  it("raises for unknown fields and bad paths in offset", function()
    local N = CASES.nested
    for _, p in ipairs({ "nope", "pts[0].x", "pts[4].x", "p.z", "flag.x", "flag[1]", "", "pts.x" }) do
      assert.has_error(function()
        N:offset(p)
      end, nil, p)
    end
    assert.has_error(function()
      N:offset(1)
    end)
    assert.equal(N:offset("anon") + N.fields[6].type:offset("deep[2].s"), N:offset("anon.deep[2].s"))
  end)
end)

-- ---- views ---------------------------------------------------------------------

describe("sysvshm.layout views", function()
  local H = CASES.header

  it("reads and writes fields in place, seen by another attachment", function()
    local seg, seg2 = newseg()
    local v = H:view(seg)
    v.magic = 0xfeedf00d
    v.count = -5
    v.name = "sensor"
    v.samples[1] = 0.25
    v.samples[16] = -8.5
    assert.equal(0xfeedf00d, (seg2:unpack("=I4", 0)))
    assert.equal(-5, (seg2:unpack("=i8", 8)))
    assert.equal("sensor" .. ("\0"):rep(10), seg2:read(16, 16))
    assert.equal(0.25, string.unpack("=d", seg2:read(32, 8)))
    assert.equal(-8.5, (seg2:unpack("=d", 32 + 15 * 8)))
    assert.equal(("\170"):rep(4), seg2:read(4, 4)) -- padding untouched
    seg2:pack("=i8", 8, math.maxinteger)
    seg2:pack("=d", 40, 3.5)
    assert.equal(math.maxinteger, v.count)
    assert.equal(3.5, v.samples[2])
    assert.equal(0xfeedf00d, v.magic)
    assert.equal("sensor", v.name)
    assert.equal(16, #v.samples)
    -- a second view over the second attachment agrees
    local w = H:view(seg2)
    assert.equal(math.maxinteger, w.count)
    w.count = 42
    assert.equal(42, v.count)
  end)

  it("places views at offsets, each independent", function()
    local seg = newseg(H.size * 4)
    for i = 0, 3 do
      H:view(seg, i * H.size).count = i * 100
    end
    for i = 0, 3 do
      assert.equal(i * 100, (seg:unpack("=i8", i * H.size + 8)))
      assert.equal(i * 100, H:view(seg, i * H.size).count)
    end
  end)

  it("stores every integer type through its full range", function()
    local T = layout.struct({
      { "i1", "i1" },
      { "I1", "I1" },
      { "i2", "i2" },
      { "I2", "I2" },
      { "i4", "i4" },
      { "I4", "I4" },
      { "i8", "i8" },
      { "I8", "I8" },
    })
    local seg, seg2 = newseg()
    local v = T:view(seg)
    for _, f in ipairs(T.fields) do
      local bits = f.size * 8
      local lo, hi
      if f.size == 8 then
        lo, hi = math.mininteger, math.maxinteger
      elseif f.kind == "int" then
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
      else
        lo, hi = 0, (1 << bits) - 1
      end
      for _, x in ipairs({ lo, hi, 0, 1, lo + 1, hi - 1 }) do
        v[f.name] = x
        assert.equal(x, v[f.name])
        assert.equal(x, (string.unpack("=" .. f.type, seg2:read(f.offset, f.size))))
      end
      if f.size < 8 then
        fails(seg, "out of range", function()
          v[f.name] = hi + 1
        end)
        fails(seg, "out of range", function()
          v[f.name] = lo - 1
        end)
      end
      fails(seg, "expects an integer", function()
        v[f.name] = 1.5
      end)
      fails(seg, "expects an integer", function()
        v[f.name] = "1"
      end)
      fails(seg, "expects an integer", function()
        v[f.name] = nil
      end)
      fails(seg, "expects an integer", function()
        v[f.name] = true
      end)
      fails(seg, "expects an integer", function()
        v[f.name] = math.huge
      end)
      fails(seg, "expects an integer", function()
        v[f.name] = 0 / 0
      end)
    end
    v.i4 = 3.0 -- an integral float is taken as the integer
    assert.equal(3, v.i4)
    assert.equal("integer", math.type(v.i4))
    v.I8 = -1 -- 2^64 - 1 as C sees it
    assert.equal(("\255"):rep(8), seg2:read(T:offset("I8"), 8))
    assert.equal(-1, v.I8)
    fails(seg, "out of range", function()
      v.I1 = 300
    end)
    fails(seg, "out of range", function()
      v.I4 = -1
    end)
  end)

  it("stores floats and doubles", function()
    local F = layout.struct({ { "f", "f" }, { "d", "d" }, { "n", "n" } })
    local seg, seg2 = newseg()
    local v = F:view(seg)
    v.f = 1.5
    v.d = 0.1
    v.n = 7 -- integers are converted
    assert.equal(1.5, v.f)
    assert.equal(0.1, v.d)
    assert.equal(7.0, v.n)
    assert.equal("float", math.type(v.n))
    v.f = 0.1
    assert.equal(string.unpack("=f", string.pack("=f", 0.1)), v.f)
    assert.equal(string.pack("=f", 0.1), seg2:read(0, 4))
    fails(seg, "expects a number", function()
      v.d = "1.5"
    end)
    fails(seg, "expects a number", function()
      v.f = nil
    end)
    fails(seg, "expects a number", function()
      v.d = {}
    end)
  end)

  it("reads c-fields up to the first NUL and writes them NUL-padded", function()
    local seg, seg2 = newseg()
    local v = H:view(seg)
    assert.equal(("\170"):rep(16), v.name) -- no NUL at all: all 16 bytes
    v.name = ("L"):rep(16)
    v.name = "abc"
    assert.equal("abc", v.name)
    assert.equal("abc" .. ("\0"):rep(13), seg2:read(16, 16))
    v.name = ("x"):rep(16) -- exactly fits, no terminator
    assert.equal(("x"):rep(16), v.name)
    assert.equal(("\170"):rep(16), seg2:read(0, 16)) -- neighbours intact
    assert.equal(("\170"):rep(8), seg2:read(32, 8))
    v.name = ""
    assert.equal("", v.name)
    assert.equal(("\0"):rep(16), seg2:read(16, 16))
    seg2:write(16, "hi\0there")
    assert.equal("hi", v.name)
    fails(seg, "too long", function()
      v.name = ("y"):rep(17)
    end)
    fails(seg, "expects a string", function()
      v.name = 12
    end)
    fails(seg, "expects a string", function()
      v.name = nil
    end)
  end)

  it("indexes arrays 1..n and refuses other indexes", function()
    local seg = newseg()
    local v = H:view(seg)
    for i = 1, 16 do
      v.samples[i] = i * 1.5
    end
    for i = 1, 16 do
      assert.equal(i * 1.5, v.samples[i])
      assert.equal(i * 1.5, (seg:unpack("=d", 32 + (i - 1) * 8)))
    end
    assert.equal(v.samples[2.0], 3.0)
    for _, i in ipairs({ 0, 17, -1, 1.5, math.huge, 0 / 0 }) do
      fails(seg, "index .* out of range for field 'samples'", function()
        return v.samples[i]
      end)
      fails(seg, "index .* out of range for field 'samples'", function()
        v.samples[i] = 1
      end)
    end
    for _, i in ipairs({ "1", "x", true }) do
      fails(seg, "bad index %(.*%) for field 'samples'", function()
        return v.samples[i]
      end)
      fails(seg, "bad index", function()
        v.samples[i] = 1
      end)
    end
    fails(seg, "expects a number", function()
      v.samples[3] = "x"
    end)
    local s = v.samples
    assert.equal(s, v.samples) -- the same array view each time
    local seen = {}
    for i, x in pairs(s) do
      seen[#seen + 1] = { i, x }
    end
    assert.equal(16, #seen)
    assert.same({ 16, 24.0 }, seen[16])
    local sum = 0
    for i = 1, #s do
      sum = sum + s[i]
    end
    assert.equal(1.5 * 136, sum)
    assert.matches("samples", tostring(s), 1, true)
  end)

  it("replaces a whole array from a table, zeroing the rest", function()
    local seg, seg2 = newseg()
    local v = H:view(seg)
    v.samples = { 1, 2, 3 }
    assert.same({ 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, layout.totable(v.samples))
    assert.equal(string.pack("=ddd", 1, 2, 3) .. ("\0"):rep(13 * 8), seg2:read(32, 128))
    v.samples = { [5] = 2.5 }
    assert.equal(2.5, v.samples[5])
    assert.equal(0, v.samples[1])
    v.samples = {}
    assert.equal(("\0"):rep(128), seg2:read(32, 128))
    local full = {}
    for i = 1, 16 do
      full[i] = i
    end
    v.samples = full
    full[17] = 17
    fails(seg, "bad index 17", function()
      v.samples = full
    end)
    fails(seg, "samples%[16%]", function()
      v.samples = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, "last" }
    end)
    fails(seg, "bad index x", function()
      v.samples = { 1, x = 2 }
    end)
    fails(seg, "expects a table", function()
      v.samples = 5
    end)
    fails(seg, "expects a table", function()
      v.samples = nil
    end)
  end)

  it("handles arrays of c-fields", function()
    local C = CASES.chars
    local seg, seg2 = newseg()
    local v = C:view(seg)
    v.names[2] = "abcde"
    v.names[3] = "z"
    assert.equal("abcde", v.names[2])
    assert.equal("z", v.names[3])
    assert.equal("abcdez\0\0\0\0", seg2:read(5, 10))
    fails(seg, "too long", function()
      v.names[1] = "abcdef"
    end)
    v.names = { "p", "q" }
    assert.same({ "p", "q", "" }, layout.totable(v.names))
    fails(seg, "too long", function()
      v.names = { "p", "q", "rrrrrr" }
    end)
    v.x = -2
    assert.equal(-2, (seg2:unpack("=i2", 16)))
  end)

  it("gives views of nested structs and arrays of structs", function()
    local N = CASES.nested
    local seg, seg2 = newseg()
    local v = N:view(seg)
    v.p.x = 7
    v.p.y = 2.5
    v.pts[3].y = -1.25
    v.anon.deep[2].s = -300
    v.anon.a = "ab"
    v.anons[2].v = 9.5
    v["in"].s = 12
    assert.equal(7, (seg2:unpack("=i4", N:offset("p.x"))))
    assert.equal(2.5, (seg2:unpack("=d", N:offset("p.y"))))
    assert.equal(-1.25, (seg2:unpack("=d", N:offset("pts[3].y"))))
    assert.equal(-300, (seg2:unpack("=i2", N:offset("anon.deep[2].s"))))
    assert.equal(9.5, (seg2:unpack("=d", N:offset("anons[2].v"))))
    assert.equal(12, (seg2:unpack("=i2", N:offset("in.s"))))
    assert.equal(-1.25, v.pts[3].y)
    assert.equal(-300, v.anon.deep[2].s)
    assert.equal("ab", v.anon.a)
    assert.equal(3, #v.pts)
    assert.equal(v.pts[2], v.pts[2])
    fails(seg, "unknown field 'z'", function()
      return v.p.z
    end)
    fails(seg, "out of range", function()
      return v.pts[4]
    end)
    fails(seg, "out of range", function()
      v.pts[0] = { x = 1 }
    end)
    local p, s, off = layout.of(v.pts[2])
    assert.same({ Point, seg, N:offset("pts[2]") }, { p, s, off })
  end)

  it("replaces a nested struct from a table, zeroing missing fields and padding", function()
    local N = CASES.nested
    local seg, seg2 = newseg()
    local v = N:view(seg)
    v.p = { x = 1 }
    local po = N:offset("p")
    assert.equal(string.pack("=i4", 1) .. ("\0"):rep(12), seg2:read(po, 16))
    v.pts[2] = { x = 5, y = 6 }
    assert.same({ x = 5, y = 6.0 }, layout.totable(v.pts[2]))
    v.pts = { { x = 1 }, nil, { y = 2 } }
    assert.same({ { x = 1, y = 0.0 }, { x = 0, y = 0.0 }, { x = 0, y = 2.0 } }, layout.totable(v.pts))
    v.p = v.pts[3] -- a view is copied
    assert.same({ x = 0, y = 2.0 }, layout.totable(v.p))
    v.anon = { a = "xy", deep = { { c = "q", s = 1 }, { s = 2 } } }
    assert.same({ a = "xy", b = 0, deep = { { c = "q", s = 1 }, { c = "", s = 2 } } }, layout.totable(v.anon))
    fails(seg, "unknown field 'p.z'", function()
      v.p = { x = 1, z = 2 }
    end)
    fails(seg, "anon.deep%[2%].s", function()
      v.anon = { a = "xy", deep = { { s = 1 }, { s = 1 << 20 } } }
    end)
    fails(seg, "pts%[3%].x", function()
      v.pts = { { x = 1 }, { x = 2 }, { x = 0.5 } }
    end)
    fails(seg, "expects a table", function()
      v.p = 1
    end)
  end)

  it("raises for unknown fields on read and write, writing nothing", function()
    local seg = newseg()
    local v = H:view(seg)
    fails(seg, "unknown field 'nope'", function()
      return v.nope
    end)
    fails(seg, "unknown field 'nope'", function()
      v.nope = 1
    end)
    fails(seg, "unknown field '1'", function()
      return v[1]
    end)
    fails(seg, "unknown field", function()
      v[1] = 1
    end)
    -- the error points at the caller
    local ok, err = pcall(function()
      return v.nope
    end)
    assert.is_false(ok)
    assert.matches("layout_spec.lua:%d+:", err)
  end)

  it("iterates a view's fields in order with pairs", function()
    local seg = newseg()
    local v = H:view(seg)
    v.count = 3
    local names = {}
    for k, x in pairs(v) do
      names[#names + 1] = k
      if k == "count" then
        assert.equal(3, x)
      end
    end
    assert.same({ "magic", "count", "name", "samples" }, names)
    assert.matches("160 bytes at offset 0", tostring(v), 1, true)
  end)

  it("refuses misplaced views", function()
    local seg = newseg(4096)
    assert.has_no.errors(function()
      H:view(seg, 4096 - H.size)
    end)
    for _, off in ipairs({ 4, 1, -8, 4096 - H.size + 8, 4096, 8192, 1.5, "0" }) do
      assert.has_error(function()
        H:view(seg, off)
      end, nil, tostring(off))
    end
    local small = newseg(100)
    assert.has_error(function()
      H:view(small)
    end)
    assert.has_error(function()
      H:view({})
    end)
    assert.has_error(function()
      H:view(nil)
    end)
    assert.has_error(function()
      H:view(io.stdout)
    end)
    local P = CASES.only_chars -- aligned to 1: any offset
    assert.has_no.errors(function()
      P:view(seg, 3)
    end)
  end)

  it("reads through a read-only attachment and refuses writes there", function()
    local seg, _, ro = newseg()
    H:view(seg).count = 9
    local r = H:view(ro)
    assert.equal(9, r.count)
    fails(seg, "read%-only", function()
      r.count = 1
    end)
    fails(seg, "read%-only", function()
      r.samples = { 1 }
    end)
    fails(seg, "read%-only", function()
      H:write(ro, 0, { count = 1 })
    end)
  end)

  it("stops working once the segment is detached", function()
    local seg = newseg()
    local v = H:view(seg)
    seg:detach()
    assert.has_error(function()
      return v.count
    end)
    assert.has_error(function()
      H:view(seg)
    end)
  end)
end)

-- ---- plain reads and whole writes ----------------------------------------------

describe("sysvshm.layout read/write", function()
  local N = CASES.nested

  it("reads the whole struct or one field as plain values", function()
    local seg = newseg()
    local v = N:view(seg, 64)
    N:write(seg, 64, {
      flag = 1,
      p = { x = 2, y = 3 },
      pts = { { x = 4 } },
      anon = { a = "abc", deep = { nil, { c = "d", s = -1 } } },
      last = 255,
    })
    local t = N:read(seg, 64)
    assert.same({
      flag = 1,
      ["in"] = { c = "", s = 0 },
      b = 0,
      p = { x = 2, y = 3.0 },
      pts = { { x = 4, y = 0.0 }, { x = 0, y = 0.0 }, { x = 0, y = 0.0 } },
      anon = { a = "abc", b = 0, deep = { { c = "", s = 0 }, { c = "d", s = -1 } } },
      anons = { { t = "", v = 0.0 }, { t = "", v = 0.0 } },
      last = 255,
    }, t)
    assert.same(t, layout.totable(v))
    assert.equal(255, N:read(seg, 64, "last"))
    assert.same({ x = 2, y = 3.0 }, N:read(seg, 64, "p"))
    assert.equal(4, N:read(seg, 64, "pts[1].x"))
    assert.same({ x = 4, y = 0.0 }, N:read(seg, 64, "pts[1]"))
    assert.equal(3, #N:read(seg, 64, "pts"))
    assert.equal("d", N:read(seg, 64, "anon.deep[2].c"))
    -- all padding zeroed by the whole write
    assert.equal(0, seg:byte(64 + N:offset("flag") + 1))
    N:write(seg, 64, t) -- what read gives, write takes
    assert.same(t, N:read(seg, 64))
    N:write(seg, 64, v) -- and a view
    assert.same(t, N:read(seg, 64))
  end)

  it("reads long arrays in chunks", function()
    local Big = layout.struct({ { "n", "I2" }, { "xs", "i4", 3000 } })
    local seg = newseg(Big.size)
    local v = Big:view(seg)
    local t = {}
    for i = 1, 3000 do
      t[i] = i - 1500
    end
    v.xs = t
    assert.same(t, layout.totable(v.xs))
    assert.same(t, Big:read(seg, 0).xs)
    assert.equal(1500, v.xs[3000])
  end)

  it("checks everything before writing the whole struct", function()
    local seg = newseg()
    fails(seg, "unknown field 'nope'", function()
      N:write(seg, 0, { flag = 1, nope = 2 })
    end)
    fails(seg, "last", function()
      N:write(seg, 0, { flag = 1, last = 256 })
    end)
    fails(seg, "expects a table", function()
      N:write(seg, 0, 7)
    end)
    fails(seg, "alignment", function()
      N:write(seg, 4, {})
    end)
    fails(seg, "does not fit", function()
      N:write(seg, 4096, {})
    end)
    assert.has_error(function()
      N:read(seg, 0, "nope")
    end)
  end)

  it("tells what a view shows", function()
    local seg = newseg()
    local v = N:view(seg, 8)
    local L, s, off = layout.of(v)
    assert.same({ N, seg, 8 }, { L, s, off })
    local f, s2, off2 = layout.of(v.pts)
    assert.same({ "pts", seg, 8 + N:offset("pts") }, { f.name, s2, off2 })
    assert.is_true(layout.isview(v))
    assert.is_true(layout.isview(v.pts))
    assert.is_false(layout.isview({}))
    assert.is_false(layout.isview(N))
    assert.has_error(function()
      layout.of({})
    end)
    assert.equal(5, layout.totable(5))
  end)
end)

-- Layout views (L:view, L:read, L:write, view and array fields) used with
-- every value of a fixed set at every argument position
-- (spec/support/sweep.lua).
require("support.sweep").describe("layout")
