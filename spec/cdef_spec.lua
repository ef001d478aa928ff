-- Specs for sysvshm.layout.cdef (layouts from C declarations), the packed
-- and aligned attributes of layout.struct, and the CLI's --cdef: offsets
-- and sizes against the C compiler on a corpus of hand-written and
-- generated declarations, the round trip through L:cdecl(), every refusal
-- with its line number.
local h = require "helpers"
local layout = require "sysvshm.layout"

-- ---- the corpus --------------------------------------------------------------------

-- Hand-written declarations covering every construct cdef reads; CHECK
-- lists how C names each struct to check (tag or typedef name).
local HAND = [[
/* a shared header, as a C program has it */
#ifndef SHARED_H
#define SHARED_H
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#define NAME_LEN 12
#define ROWS (NAME_LEN / 4)
#define LONG_MACRO \
  (2 * 3)

#ifdef __cplusplus
extern "C" {
#endif

enum color { RED, GREEN = 4 };   // skipped: no layout
union ignored_union { int a; float b; };

struct basic {            /* every scalar spelling */
  char c;
  signed char sc;
  unsigned char uc;
  short s;
  short int si;
  unsigned short us;
  int i;
  signed sg;
  unsigned u;
  unsigned int ui;
  long l;
  long int li;
  unsigned long ul;
  long long ll;
  unsigned long long ull;
  long unsigned int lui;
  float f;
  double d;
  _Bool b1;
  bool b2;
};

struct stdint {
  int8_t a; uint8_t b; int16_t c; uint16_t d; int32_t e; uint32_t f;
  int64_t g; uint64_t h; int_least8_t i; uint_least32_t j; intmax_t k;
  uintmax_t l; intptr_t m; uintptr_t n; size_t o; ssize_t p; ptrdiff_t q;
  const volatile uint16_t r;
};

typedef uint32_t id_t2;
typedef char label_t[NAME_LEN];

struct arrays {
  char name[NAME_LEN];
  char names[ROWS][5];
  char cube[2][3][4];
  uint8_t bytes[7];
  int16_t grid[2][3];
  double m[LONG_MACRO][2][2];
  id_t2 ids[3], one, two[1];
  label_t labels[2];
  label_t label;
};

typedef struct point { double x, y; } point_t;

struct nested {
  uint8_t flag;
  struct point p;
  point_t pts[3];
  struct inner { char c; int16_t s; } in;
  struct { uint8_t t; double v; } anon[2];
  struct inner again;
  struct { struct { int8_t z; int64_t w; } deep; uint8_t u; } two;
  uint8_t last;
};

typedef struct {
  uint32_t magic;
  char tag[3];
} header_t;

struct uses_typedefs { header_t h; header_t hs[2][2]; uint8_t tail; };

struct __attribute__((packed)) wire {
  uint8_t kind;
  uint32_t len;
  uint64_t stamp;
  struct point where;
  uint16_t crc;
};

struct after { uint8_t a; double b; } __attribute__((packed, aligned(4)));

struct members_aligned {
  char c;
  int x __attribute__((aligned(16)));
  __attribute__((aligned(8))) uint8_t y;
  uint64_t z __attribute__((packed));
  uint8_t tail[3] __attribute__((aligned(2)));
};

struct __attribute__((__aligned__(64))) cacheline { uint64_t counter; };

struct __attribute__((packed)) mixed_pack {
  char c;
  int32_t x __attribute__((aligned(2)));
  struct cacheline line;
  struct after inside[2];
};

typedef struct tagged { int16_t a; } tagged_t;
struct refs { tagged_t one; struct tagged two[2]; };

_Static_assert(sizeof(struct point) == 16, "a static assertion is skipped");
int shared_open(const char *path, void (*cb)(int));
static inline int twice(int x) { return x * 2; }
extern struct basic global_basic;
typedef void (*handler_t)(int);
typedef struct point *point_ptr;

#ifdef __cplusplus
}
#endif
#endif
]]

local HAND_CHECK = {
  "struct basic", "struct stdint", "struct arrays", "struct point", "point_t", "struct nested",
  "struct inner", "header_t", "struct uses_typedefs", "struct wire", "struct after",
  "struct members_aligned", "struct cacheline", "struct mixed_pack", "struct tagged",
  "tagged_t", "struct refs",
}

-- A small seeded generator (an LCG, the same on every platform).
local function generator(seed)
  local state = seed
  local function rand(n) -- 1..n
    state = (state * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
    return (state >> 33) % n + 1
  end
  return rand
end

local SCALARS = {
  "char", "signed char", "unsigned char", "short", "unsigned short", "short int", "int",
  "unsigned", "signed int", "long", "unsigned long", "long long", "unsigned long long",
  "long int", "float", "double", "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t",
  "uint32_t", "int64_t", "uint64_t", "size_t", "ssize_t", "bool", "_Bool", "intptr_t",
  "uintmax_t", "const int", "volatile uint32_t", "ptrdiff_t", "int_least16_t",
}
local ALIGNS = { 1, 2, 4, 8, 16, 32 }

-- n random structs r1..rn as C text, each using only those before it;
-- returns the text and how C names each one.
local function random_corpus(seed, n)
  local rand = generator(seed)
  local out, check, known, inner = {}, {}, {}, 0
  local function pick(t)
    return t[rand(#t)]
  end
  local function attrs()
    local a = {}
    if rand(6) == 1 then a[#a + 1] = "packed" end
    if rand(8) == 1 then a[#a + 1] = "aligned(" .. pick(ALIGNS) .. ")" end
    return #a > 0 and (" __attribute__((" .. table.concat(a, ", ") .. "))") or ""
  end
  local function dims()
    if rand(3) ~= 1 then return "" end
    local d = {}
    for _ = 1, rand(3) do d[#d + 1] = "[" .. rand(4) .. "]" end
    return table.concat(d)
  end
  local body -- forward
  local function member(depth, i)
    local r = rand(20)
    local name = "m" .. i
    if r <= 2 and depth < 2 then
      return "struct" .. attrs() .. " { " .. body(depth + 1) .. " } " .. name .. dims() .. ";"
    elseif r == 3 and depth < 2 then
      inner = inner + 1
      local tag = "in" .. inner
      check[#check + 1] = "struct " .. tag
      known[#known + 1] = "struct " .. tag
      return "struct " .. tag .. " { " .. body(depth + 1) .. " }" .. attrs() .. " " .. name .. dims() .. ";"
    elseif r <= 6 and #known > 0 then
      return pick(known) .. " " .. name .. dims() .. attrs() .. ";"
    elseif r == 7 then
      local ty = pick(SCALARS)
      return ty .. " " .. name .. dims() .. ", " .. name .. "b" .. dims() .. ";"
    end
    local lead = rand(12) == 1 and "__attribute__((aligned(" .. pick(ALIGNS) .. "))) " or ""
    local c = rand(10) == 1 and (" /* m" .. i .. " */") or ""
    return lead .. pick(SCALARS) .. " " .. name .. dims() .. attrs() .. ";" .. c
  end
  function body(depth)
    local m = {}
    for i = 1, rand(depth == 0 and 8 or 4) do m[#m + 1] = member(depth, i) end
    return table.concat(m, " ")
  end
  for k = 1, n do
    local name = "r" .. k
    local style = rand(4)
    if style == 1 then
      out[#out + 1] = "typedef struct" .. attrs() .. " {\n  " .. body(0) .. "\n}" .. attrs() .. " " .. name .. "_t;"
      check[#check + 1] = name .. "_t"
      known[#known + 1] = name .. "_t"
    elseif style == 2 then
      out[#out + 1] = "struct " .. name .. " {\n  " .. body(0) .. "\n}" .. attrs() .. ";"
      check[#check + 1] = "struct " .. name
      known[#known + 1] = "struct " .. name
    else
      out[#out + 1] = "struct" .. attrs() .. " " .. name .. " { // struct " .. k .. "\n  " .. body(0) .. "\n};"
      check[#check + 1] = "struct " .. name
      known[#known + 1] = "struct " .. name
    end
  end
  return table.concat(out, "\n") .. "\n", check
end

local RANDOM, RANDOM_CHECK = random_corpus(20240612, 40)

-- The layout of a C type name ("struct tag" or a typedef name) in all.
local function lookup(all, cname)
  return all[cname:match("^struct (.*)$") or cname]
end

-- Every path worth checking in L, as {luapath, cdesignator}: each field,
-- first and last elements of arrays (with C's dimensions), the fields of
-- nested structs.
local function paths(L, lpre, cpre, out)
  out = out or {}
  for _, f in ipairs(L.fields) do
    local lp, cp = lpre .. f.name, cpre .. f.name
    out[#out + 1] = { lp, cp }
    local elems = {}
    if f.count then
      local dims = f.cdims or { f.count }
      local first, last = {}, {}
      for i, d in ipairs(dims) do
        first[i], last[i] = "[0]", "[" .. (d - 1) .. "]"
      end
      elems = { { lp .. "[1]", cp .. table.concat(first) }, { lp .. "[" .. f.count .. "]", cp .. table.concat(last) } }
      for _, e in ipairs(elems) do out[#out + 1] = e end
    elseif f.kind == "struct" then
      elems = { { lp, cp } }
    end
    if f.kind == "struct" then
      for _, e in ipairs(elems) do paths(f.type, e[1] .. ".", e[2] .. ".", out) end
    end
  end
  return out
end

-- Compile and run a C program; returns its output, or nil and why not
-- (no compiler). Raises when it does not compile.
local function run_c(src)
  if not h.sh("command -v cc").ok then return nil, "no C compiler (cc) found" end
  local dir = h.sh("mktemp -d").stdout:gsub("\n$", "")
  local f = assert(io.open(dir .. "/corpus.c", "w"))
  f:write(src)
  f:close()
  local r = h.sh("cc -std=gnu11 -o " .. h.quote(dir .. "/corpus") .. " " .. h.quote(dir .. "/corpus.c")
                 .. " && " .. h.quote(dir .. "/corpus"))
  h.sh("rm -rf " .. h.quote(dir))
  assert(r.ok, "the corpus does not compile or run: " .. r.stderr)
  return r.stdout
end

-- The same layout, field by field (nested layouts compared the same way).
local function same_layout(a, b, where)
  where = where or (a.name or "{...}")
  assert.equal(a.size, b.size, where .. ": size")
  assert.equal(a.align, b.align, where .. ": align")
  assert.equal(a.packed, b.packed, where .. ": packed")
  assert.equal(a.aligned, b.aligned, where .. ": aligned")
  assert.equal(#a.fields, #b.fields, where .. ": number of fields")
  for i, f in ipairs(a.fields) do
    local g, w = b.fields[i], where .. "." .. f.name
    for _, k in ipairs({ "name", "count", "offset", "size", "align", "elemsize", "kind", "fmt", "ctype",
                         "packed", "aligned" }) do
      assert.equal(f[k], g[k], w .. ": " .. k)
    end
    assert.same(f.cdims, g.cdims, w .. ": cdims")
    if f.kind == "struct" then
      same_layout(f.type, g.type, w)
    else
      assert.equal(f.type, g.type, w .. ": type")
    end
  end
end

describe("layout.cdef", function()
  local HAND_ALL = select(2, layout.cdef(HAND, "basic"))
  local RANDOM_ALL = select(2, layout.cdef(RANDOM, "r1"))

  it("agrees with the C compiler's offsetof, sizeof and _Alignof on a corpus of "
     .. (#HAND_CHECK + #RANDOM_CHECK) .. " structs #env", function()
    assert.is_true(#HAND_CHECK + #RANDOM_CHECK >= 30)
    local lines, expect = {}, {}
    local function add(all, list)
      for _, cname in ipairs(list) do
        local L = assert(lookup(all, cname), "no layout for " .. cname)
        local label = cname:gsub(" ", "_")
        local function probe(what, cexpr, value)
          lines[#lines + 1] = ('  printf("%s %s %%zu\\n", (size_t)(%s));'):format(label, what, cexpr)
          expect[#expect + 1] = ("%s %s %d"):format(label, what, value)
        end
        probe("sizeof", "sizeof(" .. cname .. ")", L.size)
        probe("alignof", "_Alignof(" .. cname .. ")", L.align)
        for _, p in ipairs(paths(L, "", "")) do
          probe(p[1], ("offsetof(%s, %s)"):format(cname, p[2]), L:offset(p[1]))
          local f = L:field(p[1])
          if not p[1]:match("%]$") then
            probe("sizeof:" .. p[1], ("sizeof(((%s *)0)->%s)"):format(cname, p[2]), f.size)
          end
        end
      end
    end
    add(HAND_ALL, HAND_CHECK)
    add(RANDOM_ALL, RANDOM_CHECK)
    local src = HAND .. "\n" .. RANDOM .. "\n#include <stdio.h>\nint main(void) {\n"
      .. table.concat(lines, "\n") .. "\n  return 0;\n}\n"
    local out, why = run_c(src)
    if not out then pending(h.env(why)) return end
    local got = {}
    for l in out:gmatch("[^\n]+") do got[#got + 1] = l end
    assert.equal(#expect, #got)
    for i = 1, #expect do assert.equal(got[i], expect[i]) end
  end)

  it("maps C types to the field types of the documentation", function()
    local B = HAND_ALL.basic
    local want = {
      c = "c1", sc = "i1", uc = "I1", s = "i2", si = "i2", us = "I2", i = "i4", sg = "i4", u = "I4",
      ui = "I4", l = "i" .. string.packsize("l"), li = "i" .. string.packsize("l"),
      ul = "I" .. string.packsize("L"), ll = "i8", ull = "I8", lui = "I" .. string.packsize("L"),
      f = "f", d = "d", b1 = "I1", b2 = "I1",
    }
    for _, f in ipairs(B.fields) do assert.equal(want[f.name], f.type, f.name) end
    local A = HAND_ALL.arrays
    local function shape(name)
      local f = A:field(name)
      return { f.type, f.count, f.cdims }
    end
    assert.same({ "c12" }, shape("name"))
    assert.same({ "c5", 3 }, shape("names"))
    assert.same({ "c4", 6, { 2, 3 } }, shape("cube"))
    assert.same({ "I1", 7 }, shape("bytes"))
    assert.same({ "i2", 6, { 2, 3 } }, shape("grid"))
    assert.same({ "d", 24, { 6, 2, 2 } }, shape("m"))
    assert.same({ "I4", 3 }, shape("ids"))
    assert.same({ "I4" }, shape("one"))
    assert.same({ "I4", 1 }, shape("two"))
    assert.same({ "c12", 2 }, shape("labels"))
    assert.same({ "c12" }, shape("label"))
    -- names: tags, typedef names of tagged structs, typedef-only structs
    assert.equal("point", HAND_ALL.point_t.name)
    assert.equal(HAND_ALL.point, HAND_ALL.point_t)
    assert.equal("header_t", HAND_ALL.header_t.name)
    assert.equal(HAND_ALL.inner, HAND_ALL.nested:field("in").type)
    assert.is_nil(HAND_ALL.nested:field("anon").type.name)
    assert.is_nil(HAND_ALL.color)
    assert.is_nil(HAND_ALL.ignored_union)
  end)

  it("reads packed and aligned as GCC places them", function()
    local W = HAND_ALL.wire
    assert.same({ 1, 5, 13, 29, 31, 1, true }, { W:offset("len"), W:offset("stamp"), W:offset("where"),
                                               W:offset("crc"), W.size, W.align, W.packed })
    local M = HAND_ALL.members_aligned
    assert.same({ 16, 24, 25, 34, 48, 16 }, { M:offset("x"), M:offset("y"), M:offset("z"),
                                            M:offset("tail"), M.size, M.align })
    assert.same({ 64, 64 }, { HAND_ALL.cacheline.size, HAND_ALL.cacheline.align })
    assert.same({ 1, 12, 4 }, { HAND_ALL.after:offset("b"), HAND_ALL.after.size, HAND_ALL.after.align })
  end)

  it("gives back the same layout from L:cdecl() (round trip), for the whole corpus", function()
    local n = 0
    for _, set in ipairs({ { HAND_ALL, HAND_CHECK }, { RANDOM_ALL, RANDOM_CHECK } }) do
      for _, cname in ipairs(set[2]) do
        local L = lookup(set[1], cname)
        local src = L:cdecl(L.name or "top")
        local B = layout.cdef(src)
        same_layout(L, B)
        assert.equal(src, B:cdecl(L.name or "top"))
        n = n + 1
      end
    end
    assert.is_true(n >= 30)
  end)

  it("gives back layouts made by layout.struct, with every field type and attribute", function()
    local P = layout.struct({ { "x", "d" }, { "y", "c3", 2, aligned = 16 } }, "pt")
    local L = layout.struct({
      { "b", "b" }, { "B", "B" }, { "h", "h" }, { "H", "H" }, { "i", "i" }, { "I", "I" },
      { "l", "l" }, { "L", "L" }, { "j", "j" }, { "J", "J" }, { "T", "T" }, { "f", "f" },
      { "d", "d" }, { "n", "n" }, { "c", "c1" }, { "s", "c16", 3 }, { "a", "i2", 5, packed = true },
      { "p", P }, { "ps", P, 2 },
      { "anon", layout.struct({ { "q", "i2" }, { "r", "I8", packed = true } }, nil,
                              { packed = true, aligned = 4 }), 3 },
      { "z", "i8", packed = true, aligned = 2 },
    }, "everything", { aligned = 64 })
    same_layout(L, (layout.cdef(L:cdecl())))
  end)

  it("picks the struct by tag or typedef name, or the one no other struct uses", function()
    local text = "struct a { int x; }; typedef struct b { struct a in; } b_t; struct c { char z; };"
    assert.equal("b", layout.cdef(text, "b_t").name)
    assert.equal("a", layout.cdef(text, "a").name)
    local ok, err = pcall(layout.cdef, text)
    assert.is_false(ok)
    assert.matches("several structs, name one %(b, b_t, c%)", err)
    assert.equal("b", layout.cdef("struct a { int x; }; typedef struct b { struct a in; } b_t;").name)
    ok, err = pcall(layout.cdef, text, "nope")
    assert.is_false(ok)
    assert.matches("no struct 'nope' in the text %(it declares: a, b, b_t, c%)", err)
    ok, err = pcall(layout.cdef, "typedef int n_t; struct a { n_t x; };", "n_t")
    assert.is_false(ok)
    assert.matches("'n_t' is not a struct", err)
    ok, err = pcall(layout.cdef, "typedef struct a *ap; struct a { int x; };", "ap")
    assert.is_false(ok)
    assert.matches("'ap' cannot be shared: a pointer means nothing in another process", err)
    ok, err = pcall(layout.cdef, "int f(void);")
    assert.is_false(ok)
    assert.matches("the text declares no struct", err)
  end)

  it("refuses bad arguments", function()
    assert.error_matches(function() layout.cdef(nil) end, "cdef expects C declarations as a string, got nil")
    assert.error_matches(function() layout.cdef("struct a { int x; };", "2x") end,
                         "struct name must be a C identifier")
  end)

  -- text, line, pattern of the reason
  local REFUSED = {
    { "struct s {\n  int x;\n  struct s *next;\n};", 3,
      "a pointer means nothing in another process %(member 'next'%)" },
    { "struct s {\n  int *p;\n};", 2, "a pointer means nothing in another process %(member 'p'%)" },
    { "struct s {\n\n  void (*cb)(int);\n};", 3, "a pointer means nothing in another process %(a function pointer%)" },
    { "typedef char *str;\nstruct s {\n  str name;\n};", 3,
      "member 'name': a pointer means nothing in another process" },
    { "typedef void (*fn)(void);\nstruct s { fn f; };", 2, "member 'f': a pointer means nothing" },
    { "struct s {\n  int n;\n  double data[];\n};", 3, "'data' is a flexible array member" },
    { "struct s { int n; double data[0]; };", 1, "zero%-length arrays have no fixed size" },
    { "struct s {\n  unsigned a : 3;\n};", 2, "'a' is a bit%-field" },
    { "struct s {\n  union { int i; float f; } u;\n};", 2, "member 'u': unions are not supported" },
    { "union u { int i; };\nstruct s { union u x; };", 2, "member 'x': unions are not supported" },
    { "enum e { A };\nstruct s {\n enum e x;\n};", 3, "member 'x': enums are not supported" },
    { "typedef enum { A } e_t;\nstruct s { e_t x; };", 2, "member 'x': enums are not supported" },
    { "struct s { long double x; };", 1, "long double is not supported" },
    { "struct s {\n  double _Complex z;\n};", 2, "complex types are not supported" },
    { "struct s { _Atomic int n; };", 1, "_Atomic types are not supported" },
    { "struct s { _Alignas(8) int n; };", 1, "_Alignas is not supported" },
    { "struct s { int_fast16_t n; };", 1,
      "int_fast16_t differs between C libraries: use the exact%-width type %(int16_t%)" },
    { "struct s {\n  void v;\n};", 2, "void has no size" },
    { "struct s {\n  pid_t who;\n};", 2, "unknown type 'pid_t'" },
    { "struct s { int x __attribute__((deprecated)); };", 1, "unsupported attribute 'deprecated'" },
    { "struct s { int x __attribute__((aligned)); };", 1, "aligned needs its alignment" },
    { "struct s { int x __attribute__((aligned(3))); };", 1, "aligned%(3%): the alignment must be a power of two" },
    { "typedef struct { int x; } t __attribute__((packed));", 1, "attributes of a typedef are not supported" },
    { "struct s {\n  struct { int a; };\n};", 2, "a member without a name" },
    { "struct s { struct later x; };\nstruct later { int a; };", 1,
      "member 'x': struct later is not defined before this line" },
    { "struct s { int a; };\nstruct s { int b; };", 2, "struct s is defined twice %(first on line 1%)" },
    { "struct s {\n  int a;\n  char a;\n};", 1, "struct s: duplicate field 'a'" },
    { "struct s { };", 1, "struct s has no members" },
    { "struct s { char x[N]; };", 1, "'N' is not an integer constant" },
    { "struct s {\n  int x\n};", 3, "expected ';' after a member, got '}'" },
    { "struct s { int x; ", 1, "'{' of struct s is never closed" },
    { "/* open\n\nstruct s { int x; };", 1, "unterminated comment" },
    { "struct s { int signed unsigned x; };", 1, "both signed and unsigned" },
    { "struct s { int f(void); };", 1, "'f' is a function, not a struct member" },
    { "struct { int x; };", 1, "an unnamed struct that declares nothing" },
  }
  for _, case in ipairs(REFUSED) do
    it("refuses with line " .. case[2] .. ": " .. case[3]:gsub("%%", ""), function()
      local ok, err = pcall(layout.cdef, case[1])
      assert.is_false(ok, "accepted: " .. case[1])
      assert.matches("^line " .. case[2] .. ": .*" .. case[3], err)
    end)
  end
end)

describe("layout.struct packed and aligned", function()
  it("places packed and aligned structs and fields", function()
    local L = layout.struct({ { "c", "c1" }, { "x", "i4", aligned = 16 }, { "z", "i8", packed = true } },
                            "pa", { aligned = 32 })
    assert.same({ 16, 20, 32, 32 }, { L:offset("x"), L:offset("z"), L.size, L.align })
    local P = layout.struct({ { "c", "I1" }, { "x", "i4" }, { "y", "i2", aligned = 2 } }, nil, { packed = true })
    assert.same({ 1, 6, 8, 2, true }, { P:offset("x"), P:offset("y"), P.size, P.align, P.packed })
    assert.matches("struct __attribute__%(%(packed%)%) ", P:cdecl("p"))
    assert.matches("int16_t y __attribute__%(%(aligned%(2%)%)%);", P:cdecl("p"))
  end)

  it("reads and writes unaligned fields of a packed struct through a view", function()
    local P = layout.struct({ { "c", "I1" }, { "x", "i4" }, { "d", "d" }, { "a", "I2", 3 } }, "pk", { packed = true })
    local seg = h.new_segment(64)
    seg:fill(0xAA)
    local v = P:view(seg, 3) -- a packed struct goes anywhere
    v.c, v.x, v.d, v.a = 9, -123456, 2.5, { 1, 2, 3 }
    assert.equal(string.pack("=I1i4dI2I2I2", 9, -123456, 2.5, 1, 2, 3), seg:read(3, P.size))
    assert.same({ 9, -123456, 2.5 }, { v.c, v.x, v.d })
    assert.same({ c = 9, x = -123456, d = 2.5, a = { 1, 2, 3 } }, P:read(seg, 3))
  end)
  after_each(h.cleanup)

  it("refuses bad options", function()
    assert.error_matches(function() layout.struct({ { "x", "d" } }, nil, 5) end,
                         "struct options must be a table, got integer 5")
    assert.error_matches(function() layout.struct({ { "x", "d" } }, nil, { packed = 1 }) end,
                         "struct option packed must be a boolean")
    assert.error_matches(function() layout.struct({ { "x", "d" } }, nil, { aligned = 3 }) end,
                         "struct option aligned must be a power of two")
    assert.error_matches(function() layout.struct({ { "x", "d" } }, nil, { aligned = 1 << 29 }) end,
                         "struct option aligned must be a power of two from 1 to 268435456")
    assert.error_matches(function() layout.struct({ { "x", "d" } }, nil, { pack = true }) end,
                         "unknown struct option pack")
    assert.error_matches(function() layout.struct({ { "x", "d", aligned = 0 } }) end,
                         "field 'x': aligned must be a power of two")
    assert.error_matches(function() layout.struct({ { "x", "d", packed = "yes" } }) end,
                         "field 'x': packed must be a boolean")
    assert.error_matches(function() layout.struct({ { "x", "d", align = 8 } }) end,
                         "unexpected key align")
  end)
end)

describe("sysvshm dump and watch --cdef", function()
  after_each(h.cleanup)

  local HEADER = [[
#include <stdint.h>
#define NAME_LEN 12
typedef struct point { double x, y; } point_t;
struct record {
  uint32_t magic;
  int64_t count;
  char name[NAME_LEN];
  point_t origin;
};
int record_open(const char *path);
]]

  local function header(text)
    local name = h.tmpfile()
    local f = assert(io.open(name, "w"))
    f:write(text)
    f:close()
    return name
  end

  local function run(args)
    for i, a in ipairs(args) do args[i] = h.quote(a) end
    return h.sh(h.lua_env() .. "lua5.4 bin/sysvshm " .. table.concat(args, " "))
  end

  it("shows the fields of a struct of a C header", function()
    local file = header(HEADER)
    local R = layout.cdef(HEADER, "record")
    local seg, id = h.new_segment(4096)
    local v = R:view(seg)
    v.magic, v.count, v.name, v.origin = 7, -5, "sensor", { x = 1.5, y = -2 }
    local r = run({ "dump", tostring(id), "--cdef", file })
    assert.equal(0, r.code, h.explain(r))
    assert.matches("\n +0  uint32_t +magic +7\n", r.stdout)
    assert.matches("\n +8  int64_t +count +%-5\n", r.stdout)
    assert.matches("\n +16  char%[12%] +name +\"sensor\"\n", r.stdout)
    assert.matches("\n +" .. R:offset("origin.y") .. "  double +origin.y +%-2.0\n", r.stdout)
    r = run({ "dump", tostring(id), "--cdef", file, "--struct", "point_t", "--offset", "16" })
    assert.equal(0, r.code, h.explain(r))
    assert.matches("\n +24  double +y +0.0\n", r.stdout)
    r = run({ "watch", tostring(id), "--cdef", file, "--struct", "record", "--frames", "2", "--interval", "0" })
    assert.equal(0, r.code, h.explain(r))
    local _, frames = r.stdout:gsub("struct record at offset 0, frame", "")
    assert.equal(2, frames)
    assert.matches("\n +%d+  int64_t +count +%-5\n", r.stdout)
  end)

  it("fails with the header's line and reason, or a usage error", function()
    local file = header("struct s {\n  int x;\n  struct s *next;\n};\n")
    local _, id = h.new_segment(64)
    local r = run({ "dump", tostring(id), "--cdef", file })
    assert.equal(1, r.code, h.explain(r))
    assert.matches("header .*: line 3: a pointer means nothing in another process", r.stderr)
    r = run({ "dump", tostring(id), "--cdef", header(HEADER), "--struct", "nope" })
    assert.equal(1, r.code, h.explain(r))
    assert.matches("no struct 'nope'", r.stderr)
    r = run({ "watch", tostring(id), "--cdef", "/nonexistent/x.h" })
    assert.equal(1, r.code, h.explain(r))
    assert.matches("cannot read the header", r.stderr)
    r = run({ "dump", tostring(id), "--cdef", file, "--layout", file })
    assert.equal(2, r.code, h.explain(r))
    assert.matches("%-%-layout and %-%-cdef do not go together", r.stderr)
    r = run({ "watch", tostring(id) })
    assert.equal(2, r.code, h.explain(r))
    assert.matches("watch needs %-%-layout FILE or %-%-cdef FILE.h", r.stderr)
    r = run({ "dump", tostring(id), "--cdef", header(HEADER), "--length", "4" })
    assert.equal(2, r.code, h.explain(r))
  end)
end)
