-- sysvshm.cdef: the C declaration reader behind `sysvshm.layout.cdef` (see
-- its documentation there). Internal: require "sysvshm.layout" and call
-- layout.cdef.

local layout = require "sysvshm.layout"

local sformat, spacksize = string.format, string.packsize
local concat, sort = table.concat, table.sort
local tointeger = math.tointeger
local error, pcall, pairs, ipairs, tostring, type = error, pcall, pairs, ipairs, tostring, type

local M = {}

local POINTER = "a pointer means nothing in another process"

-- A parse error: raised as a table so that cdef can tell it from a bug.
local function refuse(line, fmt, ...)
  error({ msg = sformat("line %d: " .. fmt, line, ...) }, 0)
end

-- ---- tokens ------------------------------------------------------------------------

-- The tokens of text: {t = kind, v = text, line = n}, kind one of "id",
-- "num", "str", "punct"; comments dropped; preprocessor lines dropped,
-- except that object-like `#define NAME <integer expression>` lines are
-- kept as {t = "define", name, tokens}.
local function tokenize(text)
  local toks, defines = {}, {}
  local i, line, n = 1, 1, #text
  local bol = true -- at the beginning of a line (only blanks before)
  while i <= n do
    local c = text:sub(i, i)
    if c == "\n" then
      line, i, bol = line + 1, i + 1, true
    elseif c:match("%s") then
      i = i + 1
    elseif text:sub(i, i + 1) == "/*" then
      local e = text:find("*/", i + 2, true)
      if not e then
        refuse(line, "unterminated comment")
      end
      local _, nl = text:sub(i, e):gsub("\n", "")
      line, i = line + nl, e + 2
    elseif text:sub(i, i + 1) == "//" then
      i = (text:find("\n", i, true) or n + 1)
    elseif c == "#" and bol then
      -- a preprocessor line, with its backslash continuations
      local start, startline = i, line
      repeat
        local e = text:find("\n", i, true) or n + 1
        local cont = text:sub(e - 1, e - 1) == "\\"
        i = e
        if cont and e <= n then
          line, i = line + 1, e + 1
        end
      until not cont or e > n
      local body = text:sub(start, i - 1):gsub("\\\n", " "):gsub("/%*.-%*/", " "):gsub("//.*", "")
      local name, rest = body:match("^#%s*define%s+([%a_][%w_]*)(.*)$")
      if name and not rest:match("^%(") then
        defines[name] = { line = startline, text = rest }
      end
    else
      bol = false
      local s, e = text:find("^[%a_][%w_]*", i)
      if s then
        toks[#toks + 1] = { t = "id", v = text:sub(s, e), line = line }
      else
        s, e = text:find("^%d[%w]*", i)
        if s then
          toks[#toks + 1] = { t = "num", v = text:sub(s, e), line = line }
        elseif c == '"' or c == "'" then
          e = i + 1
          while e <= n and text:sub(e, e) ~= c do
            if text:sub(e, e) == "\\" then
              e = e + 1
            elseif text:sub(e, e) == "\n" then
              refuse(line, "unterminated string")
            end
            e = e + 1
          end
          if e > n then
            refuse(line, "unterminated string")
          end
          s = i
          toks[#toks + 1] = { t = "str", v = text:sub(s, e), line = line }
        else
          e = i
          toks[#toks + 1] = { t = "punct", v = c, line = line }
        end
      end
      i = e + 1
    end
  end
  toks[#toks + 1] = { t = "eof", v = "end of text", line = line }
  return toks, defines
end

-- ---- the parser state ----------------------------------------------------------------

local P = {}
P.__index = P

function P:peek(k)
  return self.toks[self.pos + (k or 0)]
end

function P:next()
  local t = self.toks[self.pos]
  if t.t ~= "eof" then
    self.pos = self.pos + 1
  end
  return t
end

function P:is(v, k)
  local t = self:peek(k)
  return t.t ~= "str" and t.v == v and t.t ~= "eof"
end

function P:accept(v)
  if self:is(v) then
    return self:next()
  end
end

function P:expect(v, what)
  local t = self:peek()
  if not self:is(v) then
    refuse(t.line, "expected '%s'%s, got '%s'", v, what and (" " .. what) or "", t.v)
  end
  return self:next()
end

-- ---- integer constant expressions (array sizes, aligned(N)) -----------------------------

local LIMIT = 1 << 53 -- keeps every product and sum exact

local function number(tok)
  local v = tok.v:gsub("[uUlL]+$", "")
  local x
  if v:match("^0[xX]%x+$") then
    x = tointeger(tonumber(v:sub(3), 16))
  elseif v:match("^0[0-7]*$") then
    x = tointeger(tonumber(v, 8))
  elseif v:match("^[1-9]%d*$") then
    x = tointeger(tonumber(v))
  end
  if not x or x > LIMIT then
    refuse(tok.line, "bad or too large integer constant '%s'", tok.v)
  end
  return x
end

local expr -- forward

-- The value of a macro used in an expression, parsed from its #define.
function P:macro(tok)
  local d = self.defines[tok.v]
  if not d then
    refuse(tok.line, "'%s' is not an integer constant (only object-like #define NAME <integer> "
      .. "macros are expanded)", tok.v)
  end
  if d.busy then
    refuse(tok.line, "macro '%s' refers to itself", tok.v)
  end
  if d.value == nil then
    local toks = tokenize(d.text)
    for _, t in ipairs(toks) do
      t.line = tok.line
    end
    local sub = setmetatable({ toks = toks, pos = 1, defines = self.defines }, P)
    d.busy = true
    local v = expr(sub)
    d.busy = nil
    if sub:peek().t ~= "eof" then
      refuse(tok.line, "macro '%s' is not an integer constant", tok.v)
    end
    d.value = v
  end
  return d.value
end

local function checked(tok, v)
  if v > LIMIT or v < -LIMIT then
    refuse(tok.line, "constant expression too large")
  end
  return v
end

local function primary(p)
  local t = p:next()
  if t.t == "num" then
    return number(t)
  elseif t.t == "id" then
    return p:macro(t)
  elseif t.v == "(" and t.t == "punct" then
    local v = expr(p)
    p:expect(")", "in a constant expression")
    return v
  elseif t.v == "-" and t.t == "punct" then
    return -primary(p)
  elseif t.v == "+" and t.t == "punct" then
    return primary(p)
  end
  refuse(t.line, "expected an integer constant, got '%s'", t.v)
end

local function term(p)
  local v = primary(p)
  while p:is("*") or p:is("/") or p:is("%") do
    local op = p:next()
    local w = primary(p)
    if op.v == "*" then
      v = checked(op, v * w)
    elseif w == 0 then
      refuse(op.line, "division by zero in a constant expression")
    else -- C truncates toward zero
      local q = math.abs(v) // math.abs(w)
      q = (v < 0) ~= (w < 0) and -q or q
      v = op.v == "/" and q or v - q * w
    end
  end
  return v
end

function expr(p)
  local v = term(p)
  while p:is("+") or p:is("-") do
    local op = p:next()
    local w = term(p)
    v = checked(op, op.v == "+" and v + w or v - w)
  end
  return v
end

-- ---- attributes ---------------------------------------------------------------------------

-- Parse __attribute__((...)) lists while there are any, merging them into
-- attrs ({packed = true, aligned = N}); returns attrs.
function P:attributes(attrs)
  attrs = attrs or {}
  while self:is("__attribute__") or self:is("__attribute") do
    local at = self:next()
    self:expect("(", "after __attribute__")
    self:expect("(", "after __attribute__")
    while not self:is(")") do
      local t = self:next()
      local name = t.t == "id" and t.v:gsub("^__(.-)__$", "%1")
      if name == "packed" then
        attrs.packed = true
      elseif name == "aligned" then
        if not self:accept("(") then
          refuse(t.line, "aligned needs its alignment: aligned(N) (the default is up to the compiler)")
        end
        local v = expr(self)
        self:expect(")", "after the alignment")
        if v < 1 or v & (v - 1) ~= 0 then
          refuse(t.line, "aligned(%d): the alignment must be a power of two", v)
        end
        if v > (1 << 28) then
          refuse(t.line, "aligned(%d): the alignment is too large", v)
        end
        if not attrs.aligned or v > attrs.aligned then
          attrs.aligned = v
        end
      else
        refuse(t.line, "unsupported attribute '%s' (only packed and aligned(N) are understood)", t.v)
      end
      if not self:accept(",") then
        break
      end
    end
    self:expect(")", "closing __attribute__")
    self:expect(")", "closing __attribute__")
    attrs.line = attrs.line or at.line
  end
  return attrs
end

-- ---- types -------------------------------------------------------------------------------------

-- A type is {code = "i4"} (a scalar), {char = true} (text), {layout = L},
-- {refused = reason} (a type that exists but cannot be shared), each with
-- dims (array dimensions from a typedef, outermost first).

local function sized(signed, n)
  return (signed and "i" or "I") .. n
end

local PTR = spacksize("T")

-- The <stdint.h>, <stddef.h>, <stdbool.h> and <sys/types.h> names.
local NAMED = {
  int8_t = "i1", int16_t = "i2", int32_t = "i4", int64_t = "i8",
  uint8_t = "I1", uint16_t = "I2", uint32_t = "I4", uint64_t = "I8",
  int_least8_t = "i1", int_least16_t = "i2", int_least32_t = "i4", int_least64_t = "i8",
  uint_least8_t = "I1", uint_least16_t = "I2", uint_least32_t = "I4", uint_least64_t = "I8",
  intmax_t = sized(true, spacksize("j")), uintmax_t = sized(false, spacksize("J")),
  intptr_t = sized(true, PTR), uintptr_t = sized(false, PTR),
  size_t = sized(false, PTR), ssize_t = sized(true, PTR), ptrdiff_t = sized(true, PTR),
  bool = "I1",
}
local FAST = "the size of %s differs between C libraries: use the exact-width type (%s)"

-- The words that make up a base type, in any order.
local BASEWORDS = {
  signed = true, unsigned = true, char = true, short = true, int = true, long = true,
  float = true, double = true, _Bool = true, void = true, _Complex = true,
}
local QUALIFIERS = { const = true, volatile = true, restrict = true, __restrict = true,
                     __restrict__ = true, __volatile__ = true, __const = true, __extension__ = true }
local STORAGE = { static = true, extern = true, register = true, auto = true, inline = true,
                  _Thread_local = true, __inline = true, __inline__ = true, _Noreturn = true }

-- The type named by a set of base words (counts); raises {reason = ...}.
local function basetype(w)
  local function no(reason)
    error({ reason = reason }, 0)
  end
  local function only(...)
    local allowed = {}
    for _, k in ipairs({ ... }) do
      allowed[k] = true
    end
    for k in pairs(w) do
      if not allowed[k] then
        no("invalid combination of type words")
      end
    end
  end
  if w._Complex then
    no("complex types are not supported")
  elseif w.void then
    only("void")
    no("void has no size")
  elseif w._Bool then
    only("_Bool")
    return { code = "I1" }
  elseif w.float then
    only("float")
    return { code = "f" }
  elseif w.double then
    only("double", "long")
    if w.long then
      no("long double is not supported (no layout field type has its size and format)")
    end
    return { code = "d" }
  end
  if w.signed and w.unsigned then
    no("both signed and unsigned")
  end
  local signed = not w.unsigned
  if w.char then
    only("char", "signed", "unsigned")
    if not w.signed and not w.unsigned then
      return { char = true }
    end
    return { code = sized(signed, 1) }
  elseif w.short then
    only("short", "int", "signed", "unsigned")
    return { code = sized(signed, spacksize("h")) }
  elseif w.long then
    only("long", "int", "signed", "unsigned")
    if w.long >= 3 then
      no("long long long is too long")
    end
    return { code = sized(signed, w.long == 2 and spacksize("j") or spacksize("l")) }
  end
  only("int", "signed", "unsigned")
  return { code = sized(signed, spacksize("i")) }
end

-- Copy a type, adding the dimensions of a declarator in front of its own.
local function withdims(ty, dims)
  local t = {}
  for k, v in pairs(ty) do
    t[k] = v
  end
  local d = {}
  for _, n in ipairs(dims) do
    d[#d + 1] = n
  end
  for _, n in ipairs(ty.dims or {}) do
    d[#d + 1] = n
  end
  t.dims = d
  return t
end

-- Parse declaration specifiers: the base type (with any struct, union or
-- enum it defines: those are read, and refused, at once), qualifiers and
-- attributes. Returns the spec, the attributes met, and whether `typedef`
-- was among them. A spec is {ty = type} or, when the words name no type
-- that can be shared, {err = reason, line = n}: that is only an error
-- where the type is used (a header's function prototypes and typedefs of
-- other things are no concern of a layout).
function P:specifiers()
  local words, nwords, ty, attrs, istypedef, err = {}, 0, nil, {}, false, nil
  local first = self:peek()
  while true do
    local t = self:peek()
    local v = t.v
    if t.t ~= "id" then
      break
    end
    if QUALIFIERS[v] then
      self:next()
    elseif v == "typedef" then
      self:next()
      istypedef = true
    elseif STORAGE[v] then
      self:next()
    elseif v == "_Atomic" then
      self:next()
      err = err or "_Atomic types are not supported (their size and alignment may differ from the "
        .. "plain type's): declare the plain type and use the segment's atomics"
    elseif v == "_Alignas" then
      self:next()
      self:skipparens()
      err = err or "_Alignas is not supported: use __attribute__((aligned(N)))"
    elseif v == "__attribute__" or v == "__attribute" then
      self:attributes(attrs)
    elseif BASEWORDS[v] then
      self:next()
      if ty then
        err = err or sformat("'%s' after a complete type", v)
      end
      words[v] = (words[v] or 0) + 1
      nwords = nwords + 1
      if v ~= "long" and words[v] > 1 then
        err = err or sformat("'%s' twice", v)
      end
    elseif v == "struct" or v == "union" or v == "enum" then
      if ty or nwords > 0 then
        refuse(t.line, "'%s' after a type", v)
      end
      ty = self:structspec()
    elseif not ty and nwords == 0 and (self.typedefs[v] or NAMED[v] or v:match("^u?int_fast%d+_t$")) then
      self:next()
      if v:match("^u?int_fast%d+_t$") then
        err = err or sformat(FAST, v, (v:gsub("_fast", "")))
      end
      ty = self.typedefs[v] or { code = NAMED[v] }
    else
      break -- the declarator's name
    end
  end
  if not ty and not err then
    if nwords == 0 then
      local t = self:peek()
      err = t.t == "id" and sformat("unknown type '%s'", t.v) or sformat("expected a type, got '%s'", t.v)
    else
      local ok, r = pcall(basetype, words)
      if ok then
        ty = r
      elseif type(r) == "table" and r.reason then
        err = r.reason
      else
        error(r, 0)
      end
    end
  end
  if err then
    return { err = err, line = first.line }, attrs, istypedef
  end
  return { ty = ty }, attrs, istypedef
end

-- ---- struct specifiers -----------------------------------------------------------------------

local UNION = "unions are not supported (a layout gives each field its own place): "
  .. "declare the largest member, or one struct per variant"
local ENUM = "enums are not supported (their size is up to the compiler): use a fixed-size "
  .. "integer type such as int32_t"

-- Skip a balanced opener...closer group (the cursor is on the opener).
function P:skipgroup(opener, closer)
  local open = self:next()
  local depth = 1
  while depth > 0 do
    local t = self:next()
    if t.t == "eof" then
      refuse(open.line, "unbalanced '" .. opener .. "'")
    elseif t.t == "punct" and t.v == opener then
      depth = depth + 1
    elseif t.t == "punct" and t.v == closer then
      depth = depth - 1
    end
  end
end

-- Skip a balanced (...) if the cursor is on a "(".
function P:skipparens()
  if self:is("(") then
    self:skipgroup("(", ")")
  end
end

-- Skip a balanced {...} (the cursor is on the "{").
function P:skipbraces()
  self:skipgroup("{", "}")
end

-- struct/union/enum [attrs] [tag] [{ ... }] [attrs]: the type.
function P:structspec()
  local kw = self:next()
  local attrs = self:attributes()
  local tag
  if self:peek().t == "id" and not self:is("__attribute__") then
    tag = self:next().v
  end
  if kw.v ~= "struct" then
    local reason = kw.v == "union" and UNION or ENUM
    if self:is("{") then
      self:skipbraces()
    elseif not tag then
      refuse(kw.line, "expected a tag or '{' after '%s'", kw.v)
    end
    self:attributes()
    return { refused = reason, line = kw.line }
  end
  if not self:is("{") then
    if not tag then
      refuse(kw.line, "expected a tag or '{' after 'struct'")
    end
    if self.structs[tag] then
      return { layout = self.structs[tag] }
    end
    -- a struct declared later (or never): fine for a forward declaration,
    -- refused where it is used as a member
    return { incomplete = tag, line = kw.line }
  end
  local open = self:next()
  local fields, line = {}, open.line
  while not self:accept("}") do
    if self:peek().t == "eof" then
      refuse(open.line, "'{' of struct %s is never closed", tag or "{...}")
    end
    self:member(fields)
  end
  self:attributes(attrs)
  if #fields == 0 then
    refuse(line, "struct %s has no members (C requires at least one)", tag or "{...}")
  end
  if tag and self.structs[tag] then
    refuse(line, "struct %s is defined twice (first on line %d)", tag, self.lines[tag])
  end
  local L = self:make(fields, tag, attrs, line)
  if tag then
    self.structs[tag] = L
    self.lines[tag] = line
    self.order[#self.order + 1] = tag
  end
  self.defined[#self.defined + 1] = L
  return { layout = L }
end

-- The layout of a struct's fields (layout.struct), remembering how it was
-- made, so that a typedef can name it.
function P:make(fields, name, attrs, line)
  local opts = { packed = attrs.packed or nil, aligned = attrs.aligned }
  local ok, L = pcall(layout.struct, fields, name, opts)
  if not ok then
    refuse(line, "struct %s: %s", name or "{...}", (tostring(L):gsub("^[^:]*:%d+: ", "")))
  end
  for i, f in ipairs(fields) do
    L.fields[i].cdims = self.cdims[f] -- C's dimensions, for cdecl
  end
  self.made[L] = { fields, attrs, line }
  return L
end

-- One declarator: pointers, name, array dimensions, attributes. Returns
-- name, dims, attrs, line.
function P:declarator(attrs)
  local t = self:peek()
  if self:is("*") then
    refuse(t.line, "%s (member '%s')", POINTER, self:pointername())
  end
  if self:is("(") then
    refuse(t.line, "%s (a function pointer)", POINTER)
  end
  if t.t ~= "id" then
    refuse(t.line, "expected a name, got '%s'", t.v)
  end
  self:next()
  local name, dims = t.v, {}
  if self:is("(") then
    refuse(t.line, "'%s' is a function, not a struct member", name)
  end
  while self:accept("[") do
    if self:is("]") then
      refuse(t.line, "'%s' is a flexible array member: it has no size a layout could give", name)
    end
    local n = expr(self)
    self:expect("]", "after an array size")
    if n <= 0 then
      refuse(t.line, "array '%s' of %d elements (zero-length arrays have no fixed size)", name, n)
    end
    dims[#dims + 1] = n
  end
  if self:is(":") then
    refuse(t.line, "'%s' is a bit-field: bit-field placement is up to the compiler; "
      .. "declare the whole integer and mask it", name)
  end
  self:attributes(attrs)
  return name, dims, attrs, t.line
end

-- The name after a run of '*' (for the message).
function P:pointername()
  local k = 0
  while self:is("*", k) or (self:peek(k).t == "id" and QUALIFIERS[self:peek(k).v]) do
    k = k + 1
  end
  local t = self:peek(k)
  return t.t == "id" and t.v or "?"
end

-- The layout field record {name, type, count, ...} of a declared member.
local function fieldof(name, ty, dims, attrs, line)
  if ty.refused then
    refuse(line, "member '%s': %s", name, ty.refused)
  elseif ty.incomplete then
    refuse(line, "member '%s': struct %s is not defined before this line", name, ty.incomplete)
  end
  local all = withdims(ty, dims).dims
  local f = { name }
  local count
  if ty.char then
    if #all == 0 then
      f[2] = "c1"
    else
      f[2] = "c" .. all[#all]
      all[#all] = nil
    end
  elseif ty.layout then
    f[2] = ty.layout
  else
    f[2] = ty.code
  end
  for _, n in ipairs(all) do
    count = (count or 1) * n
    if count > LIMIT then
      refuse(line, "array '%s' is too large", name)
    end
  end
  f[3] = count
  f.packed = attrs.packed or nil
  f.aligned = attrs.aligned
  return f, #all > 1 and all or nil
end

-- ty, with a struct that was incomplete where ty was named replaced by its
-- definition when that came since (typedef struct foo foo_t; struct foo {...}).
function P:complete(ty)
  if ty.incomplete and self.structs[ty.incomplete] then
    return withdims({ layout = self.structs[ty.incomplete] }, ty.dims or {})
  end
  return ty
end

-- A struct member declaration (one or more declarators), into fields.
function P:member(fields)
  local t = self:peek()
  if self:accept(";") then
    return
  end
  if self:is("_Static_assert") then
    self:staticassert()
    return
  end
  local spec, attrs = self:specifiers()
  if spec.err and not self:is("*") and not self:is("(") then
    refuse(spec.line, "%s", spec.err) -- (a pointer is refused as such below)
  end
  local ty = self:complete(spec.ty or {})
  if self:is(";") then
    refuse(t.line, "a member without a name (anonymous struct or union members are not supported: "
      .. "give it a name)")
  end
  repeat
    local a = { packed = attrs.packed, aligned = attrs.aligned }
    local name, dims, _, line = self:declarator(a)
    local f, cdims = fieldof(name, self:complete(ty), dims, a, line)
    fields[#fields + 1] = f
    self.cdims[f] = cdims
  until not self:accept(",")
  self:expect(";", "after a member")
end

function P:staticassert()
  self:next()
  if not self:is("(") then
    self:expect("(", "after _Static_assert")
  end
  self:skipparens()
  self:expect(";", "after _Static_assert")
end

-- Skip a declaration that declares no type (a function or a variable) up
-- to its ';' or, for a function definition, its body's closing '}'.
function P:skipdeclaration()
  local depth, sawparen = 0, false
  while true do
    local t = self:peek()
    if t.t == "eof" then
      return
    elseif t.t == "punct" and t.v == "(" then
      depth = depth + 1
      sawparen = true
    elseif t.t == "punct" and t.v == ")" then
      depth = depth - 1
    elseif t.t == "punct" and t.v == ";" and depth == 0 then
      self:next()
      return
    elseif t.t == "punct" and t.v == "{" and depth == 0 then
      self:skipbraces()
      if sawparen then
        return -- a function body
      end
    end
    if t.t ~= "punct" or t.v ~= "{" then
      self:next()
    end
  end
end

-- ---- top level ---------------------------------------------------------------------------------

-- One top-level declaration.
function P:declaration()
  local t = self:peek()
  if self:accept(";") then
    return
  end
  if self:is("_Static_assert") then
    return self:staticassert()
  end
  if self:is("extern") and self:peek(1).t == "str" and self:is("{", 2) then
    self:next()
    self:next()
    self:next()
    self.blocks = self.blocks + 1
    return
  end
  if self:is("}") and self.blocks > 0 then
    self:next()
    self.blocks = self.blocks - 1
    return
  end
  local start = self.pos
  local spec, attrs, istypedef = self:specifiers()
  local ty = spec.ty
  if not istypedef then
    if self:accept(";") then
      if ty and ty.layout and not ty.layout.name then
        refuse(t.line, "an unnamed struct that declares nothing")
      end
      return -- struct tag { ... }; or struct tag; (a forward declaration)
    end
    -- a function or variable: not a type, so not read
    self.pos = start
    self:skipdeclaration()
    return
  end
  if attrs.line then
    refuse(attrs.line, "attributes of a typedef are not supported: put them on the struct "
      .. "(struct __attribute__((...)) tag { ... })")
  end
  repeat
    local nt = self:peek()
    local name, dims
    if self:is("*") then
      name = self:pointername()
      self.typedefs[name] = { refused = POINTER .. sformat(" (typedef '%s' is a pointer)", name) }
      self:skippointerdecl()
    elseif self:is("(") then
      self:skippointerdecl()
      name = nil
    else
      local a = {}
      name, dims = self:declarator(a)
      if a.line then
        refuse(a.line, "attributes of a typedef are not supported: put them on the struct "
          .. "(struct __attribute__((...)) tag { ... })")
      end
      if spec.err then
        self.typedefs[name] = { refused = spec.err }
      elseif ty.layout and not ty.layout.name and #dims == 0 and self.made[ty.layout] then
        -- typedef struct { ... } name: the struct takes the typedef's name
        local m, old = self.made[ty.layout], ty.layout
        ty = { layout = self:make(m[1], name, m[2], m[3]) }
        self.made[ty.layout] = nil
        for i, L in ipairs(self.defined) do
          if L == old then
            self.defined[i] = ty.layout
          end
        end
        self.typedefs[name] = withdims(ty, dims)
      else
        self.typedefs[name] = withdims(self:complete(ty), dims)
      end
    end
    if name and NAMED[name] == nil and BASEWORDS[name] then
      refuse(nt.line, "cannot redefine '%s'", name)
    end
  until not self:accept(",")
  self:expect(";", "after a typedef")
end

-- Skip a pointer or function-pointer declarator up to ',' or ';' (for
-- typedefs, which only become an error when used).
function P:skippointerdecl()
  local depth = 0
  while true do
    local t = self:peek()
    if t.t == "eof" then
      return
    elseif t.t == "punct" and (t.v == "(" or t.v == "[") then
      depth = depth + 1
    elseif t.t == "punct" and (t.v == ")" or t.v == "]") then
      depth = depth - 1
    elseif depth == 0 and t.t == "punct" and (t.v == "," or t.v == ";") then
      return
    elseif depth == 1 and t.t == "id" and self:is("*", -1) and not self.typedefs[t.v] then
      self.typedefs[t.v] = { refused = POINTER .. sformat(" (typedef '%s' is a function pointer)", t.v) }
    end
    self:next()
  end
end

-- The layouts of text: (named, order) where named maps struct tags and
-- typedef names to layouts.
local function parse(text)
  local toks, defines = tokenize(text)
  local p = setmetatable({
    toks = toks, pos = 1, defines = defines, typedefs = {}, structs = {}, lines = {},
    order = {}, named = {}, defined = {}, blocks = 0, cdims = setmetatable({}, { __mode = "k" }),
    made = {},
  }, P)
  while p:peek().t ~= "eof" do
    p:declaration()
  end
  if p.blocks > 0 then
    refuse(p:peek().line, "extern \"C\" { is never closed")
  end
  for tag, L in pairs(p.structs) do
    p.named[tag] = L
  end
  for name, ty in pairs(p.typedefs) do
    ty = p:complete(ty)
    if ty.layout and #(ty.dims or {}) == 0 then
      p.named[name] = ty.layout
    end
  end
  return p
end

--- See `sysvshm.layout.cdef`.
function M.cdef(text, name)
  local ok, p = pcall(parse, text)
  if not ok then
    if type(p) == "table" and p.msg then
      return nil, p.msg
    end
    error(p, 0)
  end
  local named = p.named
  local names = {}
  for k in pairs(named) do
    names[#names + 1] = k
  end
  sort(names)
  if name ~= nil then
    local L = named[name]
    if L == nil then
      local td = p.typedefs[name]
      if td and td.refused then
        return nil, sformat("'%s' cannot be shared: %s", name, td.refused)
      elseif td then
        return nil, sformat("'%s' is not a struct", name)
      end
      return nil, sformat("no struct '%s' in the text (it declares: %s)", name,
                          #names > 0 and concat(names, ", ") or "none")
    end
    return L, named
  end
  if #names == 0 then
    return nil, "the text declares no struct"
  end
  -- the structs that no other struct of the text uses
  local used = {}
  local function mark(L)
    for _, f in ipairs(L.fields) do
      if layout.is(f.type) then
        used[f.type] = true
        mark(f.type)
      end
    end
  end
  for _, L in ipairs(p.defined) do
    mark(L)
  end
  local roots, rootnames, seen = {}, {}, {}
  for _, k in ipairs(names) do
    local L = named[k]
    if not used[L] then
      if not seen[L] then
        seen[L] = true
        roots[#roots + 1] = L
      end
      rootnames[#rootnames + 1] = k
    end
  end
  if #roots > 1 then
    return nil, sformat("the text declares several structs, name one (%s)", concat(rootnames, ", "))
  end
  return roots[1], named
end

return M
