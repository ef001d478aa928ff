--- Struct layouts: C-compatible records in a segment, read and written
-- field by field.
--
--     local layout = require "sysvshm.layout"
--     local Header = layout.struct({
--       {"magic", "I4"},
--       {"count", "i8"},
--       {"name", "c16"},
--       {"samples", "d", 16},
--     }, "header")
--     print(Header.size, Header:offset("samples"))  --> 160  32
--     local v = Header:view(seg)        -- at offset 0 of an attached segment
--     v.count = v.count + 1
--     v.name = "sensor-1"
--     v.samples[1] = 0.5                -- arrays are indexed 1..n
--     print(#v.samples)                 --> 16
--     io.write(Header:cdecl())          -- the same struct for a C peer
--
-- **Field types.** A field is `{name, type [, count]}`. `name` is a C
-- identifier. `type` is one of the string.pack codes of fixed-size items,
-- always in native byte order:
--
-- * `i1 i2 i4 i8` (signed) and `I1 I2 I4 I8` (unsigned) integers; `i` and
--   `I` alone are 4 bytes;
-- * the aliases `b B h H i I l L j J T` with their native sizes (on x86_64:
--   1 1 2 2 4 4 8 8 8 8 8), stored as the sized code (`h` becomes `i2`);
-- * `f` (C float), `d` (C double), `n` (lua_Number, stored as `d`);
-- * `cN`: N bytes of text (`char name[N]`): it reads back as the bytes up to
--   its first NUL (or all N) and is written NUL-padded; a longer string is
--   an error (exactly N bytes fit, leaving no terminator, as with strncpy);
-- * a layout made by `struct`: a nested struct (`struct name` in C when that
--   layout has a name, an anonymous `struct { ... }` otherwise).
--
-- With `count` the field is an array of `count` such items (`count` >= 1).
--
-- **Attributes.** A field may also have `aligned = N` (a power of two) and
-- `packed = true`, and `struct` takes `{packed = true, aligned = N}` for
-- the whole struct: GCC's `__attribute__((aligned(N)))` and
-- `__attribute__((packed))`, placed as GCC places them. A packed struct
-- packs every member: its alignment becomes 1 (a nested struct's too), so
-- members follow each other without padding; `aligned = N` raises a
-- member's alignment to N (in a packed struct, to exactly N), and raises
-- the struct's alignment (so its size) to at least N. A packed struct may
-- start at any offset; its fields may be misaligned, which views handle.
--
-- **From C.** `cdef` reads the struct from C declarations instead (a
-- header shared with the C peer).
--
-- **Placement.** Fields are placed as a C compiler places the members of
-- the same struct on this ABI: each item is aligned to its size, capped at
-- the platform's largest scalar alignment (8 on x86_64 and aarch64), `cN`
-- to 1, a nested struct to its own alignment; the struct's alignment is
-- that of its most aligned member, and its size is rounded up to it, as
-- `sizeof` is. A spec checks the offsets against the system compiler.
--
-- **Views.** `L:view(seg, off)` gives a table-like view; reading a field
-- unpacks it from the segment (one `seg:unpack` call for a scalar), writing
-- a field validates the value, then packs it. Integer fields take numbers
-- with an integer value in the field's range (8-byte fields take any Lua
-- integer; an `I8` above `math.maxinteger` reads back negative, as
-- string.unpack gives it); float fields take any number. A failed write
-- raises an error and writes nothing. Array fields and nested structs read
-- back as views too (`v.samples[2]`, `v.header.magic`, `#v.samples`,
-- `pairs(v.samples)`); assigning a table to one (`v.samples = {1, 2, 3}`,
-- `v.header = {magic = 7}`) replaces the whole field: the elements or
-- fields missing from the table become zero (as in a C initializer),
-- padding bytes become zero too. Arrays do not support `ipairs`, whose
-- final out-of-range read would be an error: use `pairs` or a numeric for.
-- Views have no methods, so that no field name is hidden: see `of`,
-- `totable`, `L:read`, `L:write`.
--
-- No write is atomic with respect to other processes: guard records with a
-- mutex, or use the segment's atomics for counters.
--
-- Layout tables expose `fields`, `size`, `align`, `name`, `packed` and
-- `aligned`; treat them as read-only.
-- @module sysvshm.layout

local core = require "sysvshm.core"

local M = {}

local sformat, spack, spacksize = string.format, string.pack, string.packsize
local srep, sfind, ssub, sgmatch = string.rep, string.find, string.sub, string.gmatch
local concat = table.concat
local mtype, tointeger = math.type, math.tointeger
local maxinteger, mininteger = math.maxinteger, math.mininteger
local type, pairs, tostring, error, setmetatable, getmetatable, rawget, rawset =
  type, pairs, tostring, error, setmetatable, getmetatable, rawget, rawset

-- Private keys of layouts and views (tables, so that no string field name
-- can collide with them).
local BYNAME = setmetatable({}, { __name = "byname" })
local VIEWMT = setmetatable({}, { __name = "viewmt" })
local SEG = setmetatable({}, { __name = "seg" })
local OFF = setmetatable({}, { __name = "off" })
local FLD = setmetatable({}, { __name = "field" })
local CACHE = setmetatable({}, { __name = "cache" })
local LAYOUT = setmetatable({}, { __name = "layout" })

-- The largest alignment C gives a scalar member on this platform: string.pack
-- computes it for '!' from the same kind of probe struct.
local MAXALIGN = spacksize("!bXd")

-- How an access is done, per field.
local SCALAR, CHAR, ARRAY, STRUCT = 1, 2, 3, 4

local Layout = {} -- methods of layouts
local LayoutMT = { __index = Layout, __name = "sysvshm.layout" }

--- Whether x is a layout made by `struct`.
-- @param x any value
-- @treturn boolean
function M.is(x)
  return getmetatable(x) == LayoutMT
end
local islayout = M.is

-- ---- scalar types -----------------------------------------------------------

local ALIAS = {
  b = "i" .. spacksize("b"),
  B = "I" .. spacksize("B"),
  h = "i" .. spacksize("h"),
  H = "I" .. spacksize("H"),
  i = "i" .. spacksize("i"),
  I = "I" .. spacksize("I"),
  l = "i" .. spacksize("l"),
  L = "I" .. spacksize("L"),
  j = "i" .. spacksize("j"),
  J = "I" .. spacksize("J"),
  T = "I" .. spacksize("T"),
  n = spacksize("n") == spacksize("d") and "d" or "f",
}

local function alignof(size)
  return size < MAXALIGN and size or MAXALIGN
end

-- A new field record for a type code, or nil and a message.
local function scalarfield(code)
  code = ALIAS[code] or code
  local sign, digits = code:match("^([iIc])(%d+)$")
  local f
  if sign == "c" then
    local n = tointeger(tonumber(digits))
    if not n or n < 1 then
      return nil, sformat("bad size in field type '%s' (c1 or more)", code)
    end
    f = { kind = "char", elemsize = n, align = 1, ctype = "char", access = CHAR }
  elseif sign then
    local n = tonumber(digits)
    if n ~= 1 and n ~= 2 and n ~= 4 and n ~= 8 then
      return nil, sformat("bad size in field type '%s' (1, 2, 4 or 8)", code)
    end
    local bits = n * 8
    f = { elemsize = n, align = alignof(n), access = SCALAR }
    if sign == "i" then
      f.kind, f.ctype = "int", "int" .. bits .. "_t"
      f.min = n == 8 and mininteger or -(1 << (bits - 1))
      f.max = n == 8 and maxinteger or (1 << (bits - 1)) - 1
    else
      f.kind, f.ctype = "uint", "uint" .. bits .. "_t"
      f.min = n == 8 and mininteger or 0
      f.max = n == 8 and maxinteger or (1 << bits) - 1
    end
  elseif code == "f" or code == "d" then
    local n = spacksize(code)
    f = {
      kind = "float",
      elemsize = n,
      align = alignof(n),
      ctype = code == "f" and "float" or "double",
      access = SCALAR,
    }
  else
    return nil, sformat("unsupported field type '%s'", code)
  end
  f.type = code
  f.fmt = "=" .. code
  return f
end

-- ---- describing values in messages ------------------------------------------

local function describe(v)
  local t = type(v)
  if t == "number" then
    return sformat("%s %s", mtype(v) == "integer" and "integer" or "number", tostring(v))
  elseif t == "string" then
    return sformat("a string of %d byte%s", #v, #v == 1 and "" or "s")
  end
  return t
end

local function typename(f)
  local t = f.kind == "struct" and ("struct " .. (f.type.name or "{...}")) or f.type
  if f.count then
    return sformat("%s[%d]", t, f.count)
  end
  return t
end

-- ---- checking and encoding values -------------------------------------------

-- The value to pack for one scalar or char item, or nil and a message.
-- what: the item's path, for messages.
local function checkitem(f, v, what)
  local kind = f.kind
  if kind == "int" or kind == "uint" then
    local n = v
    if mtype(n) ~= "integer" then
      n = type(v) == "number" and tointeger(v) or nil
      if n == nil then
        return nil, sformat("field '%s' (%s) expects an integer, got %s", what, f.type, describe(v))
      end
    end
    if n < f.min or n > f.max then
      return nil, sformat("value %d out of range for field '%s' (%s: %d..%d)", n, what, f.type, f.min, f.max)
    end
    return n
  elseif kind == "float" then
    if type(v) ~= "number" then
      return nil, sformat("field '%s' (%s) expects a number, got %s", what, f.type, describe(v))
    end
    return v
  else -- char
    if type(v) ~= "string" then
      return nil, sformat("field '%s' (%s) expects a string, got %s", what, f.type, describe(v))
    end
    if #v > f.elemsize then
      return nil, sformat("string of %d bytes too long for field '%s' (%s)", #v, what, f.type)
    end
    return v
  end
end

local totable -- forward

local encodestruct -- forward

-- The bytes of one element of field f (a scalar, a string or a struct).
local function encodeelem(f, v, what)
  if f.elem == STRUCT then
    return encodestruct(f.type, v, what)
  end
  local x, err = checkitem(f, v, what)
  if x == nil then
    return nil, err
  end
  return spack(f.fmt, x)
end

-- The bytes of a whole array field from a table indexed 1..count; missing
-- elements are zero.
local function encodearray(f, t, what)
  if M.isview(t) then
    t = totable(t)
  end
  if type(t) ~= "table" then
    return nil, sformat("field '%s' (%s) expects a table, got %s", what, typename(f), describe(t))
  end
  local count = f.count
  for k in pairs(t) do
    local i = mtype(k) == "integer" and k or nil
    if not i or i < 1 or i > count then
      return nil, sformat("bad index %s for field '%s' (%s): expected 1..%d", tostring(k), what, typename(f), count)
    end
  end
  local parts, zero = {}, nil
  for i = 1, count do
    local v = t[i]
    if v == nil then
      zero = zero or srep("\0", f.elemsize)
      parts[i] = zero
    else
      local s, err = encodeelem(f, v, sformat("%s[%d]", what, i))
      if s == nil then
        return nil, err
      end
      parts[i] = s
    end
  end
  return concat(parts)
end

-- The bytes of a whole field (array or not).
local function encodefield(f, v, what)
  if f.count then
    return encodearray(f, v, what)
  end
  return encodeelem(f, v, what)
end

-- The bytes of a whole struct from a table of field values; missing fields
-- and padding are zero.
function encodestruct(L, t, what)
  if M.isview(t) then
    t = totable(t)
  end
  local prefix = what and (what .. ".") or ""
  if type(t) ~= "table" then
    local which = what and ("field '" .. what .. "'") or "value"
    return nil, sformat("struct %s expects a table, got %s", which, describe(t))
  end
  local byname = L[BYNAME]
  for k in pairs(t) do
    if byname[k] == nil then
      return nil, sformat("unknown field '%s%s'", prefix, tostring(k))
    end
  end
  local parts, pos = {}, 0
  for _, f in ipairs(L.fields) do
    if f.offset > pos then
      parts[#parts + 1] = srep("\0", f.offset - pos)
    end
    local v = t[f.name]
    if v == nil then
      parts[#parts + 1] = srep("\0", f.size)
    else
      local s, err = encodefield(f, v, prefix .. f.name)
      if s == nil then
        return nil, err
      end
      parts[#parts + 1] = s
    end
    pos = f.offset + f.size
  end
  if L.size > pos then
    parts[#parts + 1] = srep("\0", L.size - pos)
  end
  return concat(parts)
end

-- ---- segments -----------------------------------------------------------------

-- The segment metatable and methods, learned from the first segment seen
-- (the core's type() says what is one).
local segmt, seg_unpack, seg_pack, seg_write
local segtype = core.type

local function checkseg(seg, level)
  local mt = getmetatable(seg)
  if mt ~= segmt or segmt == nil then
    if not segtype(seg) then
      error(sformat("expected a sysvshm segment, got %s", describe(seg)), level + 1)
    end
    segmt = mt
    seg_unpack, seg_pack, seg_write = mt.__index.unpack, mt.__index.pack, mt.__index.write
  end
  return seg
end

-- Check that L fits at off in seg; return off.
local function checkplace(L, seg, off, level)
  checkseg(seg, level + 1)
  if off == nil then
    off = 0
  elseif mtype(off) ~= "integer" then
    local n = type(off) == "number" and tointeger(off) or nil
    if n == nil then
      error(sformat("offset must be an integer, got %s", describe(off)), level + 1)
    end
    off = n
  end
  if off < 0 or off % L.align ~= 0 then
    error(sformat("offset %d is not a multiple of the struct's alignment (%d)", off, L.align), level + 1)
  end
  local size = #seg
  if off > size or L.size > size - off then
    error(
      sformat("struct of %d bytes at offset %d does not fit in the segment (%d bytes)", L.size, off, size),
      level + 1
    )
  end
  return off
end

-- ---- decoding to plain values ---------------------------------------------------

local function cut(s)
  local z = sfind(s, "\0", 1, true)
  if z then
    return ssub(s, 1, z - 1)
  end
  return s
end

local decodestruct -- forward

-- One element of field f at absolute position pos, as a plain value.
local function decodeelem(f, seg, pos)
  local a = f.elem
  if a == STRUCT then
    return decodestruct(f.type, seg, pos)
  elseif a == CHAR then
    return cut((seg_unpack(seg, f.fmt, pos)))
  end
  return (seg_unpack(seg, f.fmt, pos))
end

local CHUNK = 512 -- elements per unpack call when reading whole arrays

local function decodearray(f, seg, pos)
  local t, count, size = {}, f.count, f.elemsize
  if f.elem == SCALAR then
    local i = 1
    while i <= count do
      local k = count - i + 1
      if k > CHUNK then
        k = CHUNK
      end
      local vals = table.pack(seg_unpack(seg, "=" .. srep(f.type, k), pos + (i - 1) * size))
      table.move(vals, 1, k, i, t)
      i = i + k
    end
  else
    for i = 1, count do
      t[i] = decodeelem(f, seg, pos + (i - 1) * size)
    end
  end
  return t
end

local function decodefield(f, seg, pos)
  if f.count then
    return decodearray(f, seg, pos)
  end
  return decodeelem(f, seg, pos)
end

function decodestruct(L, seg, pos)
  local t = {}
  for _, f in ipairs(L.fields) do
    t[f.name] = decodefield(f, seg, pos + f.offset)
  end
  return t
end

-- ---- views ----------------------------------------------------------------------

local function newview(L, seg, off)
  return setmetatable({ [SEG] = seg, [OFF] = off }, L[VIEWMT])
end

local ArrayMT = { __name = "sysvshm.layout.array" }

-- The cached view of a nested struct or array (key: field or index).
local function subview(t, key, f, pos, asarray)
  local c = rawget(t, CACHE)
  if c == nil then
    c = {}
    rawset(t, CACHE, c)
  end
  local v = c[key]
  if v == nil then
    if asarray then
      v = setmetatable({ [SEG] = t[SEG], [OFF] = pos, [FLD] = f }, ArrayMT)
    else
      v = newview(f.type, t[SEG], pos)
    end
    c[key] = v
  end
  return v
end

-- An array index as an integer in 1..count, or an error at the caller.
local function checkindex(t, i)
  local f = t[FLD]
  local n = mtype(i) == "integer" and i or (type(i) == "number" and tointeger(i)) or nil
  if n == nil or n < 1 or n > f.count then
    local what = type(i) == "number" and ("index " .. tostring(i) .. " out of range")
      or ("bad index (" .. describe(i) .. ")")
    error(sformat("%s for field '%s' (%s): expected 1..%d", what, f.name, typename(f), f.count), 3)
  end
  return n, f
end

ArrayMT.__index = function(t, i)
  local n, f = checkindex(t, i)
  local pos = t[OFF] + (n - 1) * f.elemsize
  local a = f.elem
  if a == SCALAR then
    return (seg_unpack(t[SEG], f.fmt, pos))
  elseif a == CHAR then
    return cut((seg_unpack(t[SEG], f.fmt, pos)))
  end
  return subview(t, n, f, pos, false)
end

ArrayMT.__newindex = function(t, i, v)
  local n, f = checkindex(t, i)
  local pos = t[OFF] + (n - 1) * f.elemsize
  local what = sformat("%s[%d]", f.name, n)
  if f.elem == STRUCT then
    local s, err = encodestruct(f.type, v, what)
    if s == nil then
      error(err, 2)
    end
    seg_write(t[SEG], pos, s)
  else
    local x, err = checkitem(f, v, what)
    if x == nil then
      error(err, 2)
    end
    seg_pack(t[SEG], f.fmt, pos, x)
  end
end

ArrayMT.__len = function(t)
  return t[FLD].count
end

local function arraynext(t, i)
  i = i + 1
  if i <= t[FLD].count then
    return i, t[i]
  end
end

ArrayMT.__pairs = function(t)
  return arraynext, t, 0
end

ArrayMT.__tostring = function(t)
  local f = t[FLD]
  return sformat("sysvshm.layout array (%s, %s at offset %d)", f.name, typename(f), t[OFF])
end

-- The view metatable of a layout: closures over its field table.
local function makeviewmt(L)
  local byname, fields = L[BYNAME], L.fields
  local mt = { __name = "sysvshm.layout.view", [LAYOUT] = L }

  local function nofield(k)
    error(sformat("unknown field '%s' in struct%s", tostring(k), L.name and (" " .. L.name) or ""), 3)
  end

  mt.__index = function(t, k)
    local f = byname[k]
    if f == nil then
      nofield(k)
    end
    local a = f.access
    if a == SCALAR then
      return (seg_unpack(t[SEG], f.fmt, t[OFF] + f.offset))
    elseif a == CHAR then
      return cut((seg_unpack(t[SEG], f.fmt, t[OFF] + f.offset)))
    end
    return subview(t, f, f, t[OFF] + f.offset, a == ARRAY)
  end

  mt.__newindex = function(t, k, v)
    local f = byname[k]
    if f == nil then
      nofield(k)
    end
    local a = f.access
    if a == SCALAR or a == CHAR then
      local x, err = checkitem(f, v, k)
      if x == nil then
        error(err, 2)
      end
      seg_pack(t[SEG], f.fmt, t[OFF] + f.offset, x)
    else
      local s, err = encodefield(f, v, k)
      if s == nil then
        error(err, 2)
      end
      seg_write(t[SEG], t[OFF] + f.offset, s)
    end
  end

  local function viewnext(t, k)
    local f = fields[k == nil and 1 or byname[k].index + 1]
    if f then
      return f.name, t[f.name]
    end
  end

  mt.__pairs = function(t)
    return viewnext, t, nil
  end

  mt.__tostring = function(t)
    return sformat("sysvshm.layout view (struct %s, %d bytes at offset %d)", L.name or "{...}", L.size, t[OFF])
  end

  return mt
end

--- Whether x is a view or an array view made by this module.
-- @param x any value
-- @treturn boolean
function M.isview(x)
  local mt = getmetatable(x)
  return mt == ArrayMT or (type(mt) == "table" and rawget(mt, LAYOUT) ~= nil)
end

--- What a view shows: its layout (or, for an array view, its field record),
-- its segment and its offset.
-- @tparam view v a struct view or an array view
-- @treturn table the layout, or the field record of an array
-- @treturn segment the segment
-- @treturn integer the offset of the struct (of the first element, for an
--   array)
function M.of(v)
  local mt = getmetatable(v)
  if mt == ArrayMT then
    return v[FLD], v[SEG], v[OFF]
  elseif M.isview(v) then
    return mt[LAYOUT], v[SEG], v[OFF]
  end
  error(sformat("expected a layout view, got %s", describe(v)), 2)
end

--- A plain Lua copy of what a view shows: a table of field values for a
-- struct view (arrays as sequences, nested structs as tables, c-fields as
-- strings), a sequence for an array view. Any other value is returned as it
-- is.
-- @param v a view, an array view, or any value
-- @return a plain value
function M.totable(v)
  local mt = getmetatable(v)
  if mt == ArrayMT then
    return decodearray(v[FLD], v[SEG], v[OFF])
  elseif M.isview(v) then
    return decodestruct(mt[LAYOUT], v[SEG], v[OFF])
  end
  return v
end
totable = M.totable

-- ---- building layouts -----------------------------------------------------------

local function isident(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

-- The largest alignment an `aligned` attribute may ask for (GCC's limit
-- for a type on ELF targets).
local MAXATTRALIGN = 1 << 28

local function ispow2(v)
  return mtype(v) == "integer" and v >= 1 and v <= MAXATTRALIGN and v & (v - 1) == 0
end

--- Make a struct layout.
-- @tparam table fields a sequence of `{name, type [, count]}`: `name` a C
--   identifier, unique in the struct; `type` a type code (see above) or a
--   layout; `count`, for an array, its number of elements (>= 1); optional
--   keys `aligned` and `packed` (see Attributes above)
-- @tparam[opt] string name the struct's C tag (a C identifier), used by
--   `cdecl` and in messages; a nested layout with a name is declared as
--   `struct name` of its own
-- @tparam[opt] table opts `packed` (boolean) and `aligned` (a power of two
--   up to 2^28): the GCC attributes of the whole struct (see Attributes
--   above)
-- @treturn layout with `fields` (the field records, in order), `size`,
--   `align`, `name`, and `packed` and `aligned` as given. A field record has `name`, `type` (the sized type
--   code, e.g. `"i2"` for `"h"`, `"c16"`, or the nested layout), `count`
--   (nil unless an array), `offset`, `size` (in bytes, all elements),
--   `align`, `elemsize` (one element), `kind` (`"int"`, `"uint"`,
--   `"float"`, `"char"` or `"struct"`), `fmt` (the pack format of one
--   element, e.g. `"=i8"`; nil for structs), `ctype` (C type of one element,
--   nil for an anonymous struct), `index` (its position in `fields`),
--   `packed` and `aligned` as given (`packed` only where it changes the
--   placement: nil for a member aligned to 1 anyway) and, in layouts made
--   by `cdef`, `cdims`: C's array dimensions when there are several
--   (`{2, 3}` for `int a[2][3]`; `cdecl` writes them back); other keys are
--   private.
-- @usage local Point = layout.struct({{"x", "d"}, {"y", "d"}}, "point")
-- local Shape = layout.struct{{"n", "I4"}, {"pts", Point, 8}, {"label", "c12"}}
function M.struct(fields, name, opts)
  if type(fields) ~= "table" then
    error(sformat("struct expects a table of fields, got %s", describe(fields)), 2)
  end
  if name ~= nil and not isident(name) then
    error(sformat("struct name must be a C identifier, got %s", describe(name)), 2)
  end
  local packed, aligned
  if opts ~= nil then
    if type(opts) ~= "table" then
      error(sformat("struct options must be a table, got %s", describe(opts)), 2)
    end
    for k, v in pairs(opts) do
      if k == "packed" then
        if type(v) ~= "boolean" then
          error(sformat("struct option packed must be a boolean, got %s", describe(v)), 2)
        end
        packed = v or nil
      elseif k == "aligned" then
        if not ispow2(v) then
          error(sformat("struct option aligned must be a power of two from 1 to %d, got %s",
                        MAXATTRALIGN, describe(v)), 2)
        end
        aligned = v
      else
        error(sformat("unknown struct option %s (expected packed, aligned)", tostring(k)), 2)
      end
    end
  end
  local n = #fields
  if n == 0 then
    error("struct needs at least one field", 2)
  end
  for k in pairs(fields) do
    if mtype(k) ~= "integer" or k < 1 or k > n then
      error(sformat("bad key %s in struct fields (expected a sequence)", tostring(k)), 2)
    end
  end
  local list, byname = {}, {}
  local pos, align = 0, 1
  for i = 1, n do
    local e = fields[i]
    if type(e) ~= "table" then
      error(sformat("field #%d must be a table {name, type [, count]}, got %s", i, describe(e)), 2)
    end
    for k in pairs(e) do
      if k ~= 1 and k ~= 2 and k ~= 3 and k ~= "aligned" and k ~= "packed" then
        error(sformat("field #%d: unexpected key %s (expected {name, type [, count]}, aligned, packed)",
                      i, tostring(k)), 2)
      end
    end
    local fname, ftype, count = e[1], e[2], e[3]
    if not isident(fname) then
      error(sformat("field #%d: name must be a C identifier, got %s", i, describe(fname)), 2)
    end
    if byname[fname] then
      error(sformat("duplicate field '%s'", fname), 2)
    end
    local f
    if islayout(ftype) then
      f = {
        kind = "struct",
        type = ftype,
        elemsize = ftype.size,
        align = ftype.align,
        ctype = ftype.name and ("struct " .. ftype.name) or nil,
        access = STRUCT,
      }
    elseif type(ftype) == "string" then
      local err
      f, err = scalarfield(ftype)
      if not f then
        error(sformat("field '%s': %s", fname, err), 2)
      end
    else
      error(sformat("field '%s': type must be a type code or a layout, got %s", fname, describe(ftype)), 2)
    end
    if count ~= nil then
      if mtype(count) ~= "integer" or count < 1 then
        error(sformat("field '%s': count must be an integer >= 1, got %s", fname, describe(count)), 2)
      end
      f.count = count
    end
    -- The attributes, as GCC places them: packed lowers the member's
    -- alignment to 1, aligned(N) raises it to N.
    local fpacked, faligned = e.packed, e.aligned
    if fpacked ~= nil and type(fpacked) ~= "boolean" then
      error(sformat("field '%s': packed must be a boolean, got %s", fname, describe(fpacked)), 2)
    end
    if faligned ~= nil and not ispow2(faligned) then
      error(sformat("field '%s': aligned must be a power of two from 1 to %d, got %s",
                    fname, MAXATTRALIGN, describe(faligned)), 2)
    end
    f.packed = (fpacked and f.align > 1) or nil -- nothing to pack otherwise
    f.aligned = faligned
    if fpacked or packed then
      f.align = 1
    end
    if faligned and faligned > f.align then
      f.align = faligned
    end
    f.elem = f.access -- how one element is accessed
    if count ~= nil then
      f.access = ARRAY
    end
    f.name = fname
    f.index = i
    -- Sizes and offsets stay within math.maxinteger (PTRDIFF_MAX, the
    -- largest object C allows): every step is checked before it is done,
    -- so that no product or sum wraps around.
    if count ~= nil and f.elemsize > maxinteger // count then
      error(sformat("field '%s': %d elements of %d bytes are more than %d bytes (too large)",
                    fname, count, f.elemsize, maxinteger), 2)
    end
    f.size = f.elemsize * (count or 1)
    if pos > maxinteger - (f.align - 1) or f.size > maxinteger - (pos + f.align - 1) // f.align * f.align then
      error(sformat("field '%s' (%d bytes) would end past %d bytes from the start of the struct (too large)",
                    fname, f.size, maxinteger), 2)
    end
    pos = (pos + f.align - 1) // f.align * f.align
    f.offset = pos
    pos = pos + f.size
    if f.align > align then
      align = f.align
    end
    list[i] = f
    byname[fname] = f
  end
  if aligned and aligned > align then
    align = aligned
  end
  if pos > maxinteger - (align - 1) then
    error(sformat("struct of %d bytes cannot be padded to its alignment (%d) within %d bytes (too large)",
                  pos, align, maxinteger), 2)
  end
  local L = setmetatable({
    fields = list,
    size = (pos + align - 1) // align * align,
    align = align,
    name = name,
    packed = packed,
    aligned = aligned,
    [BYNAME] = byname,
  }, LayoutMT)
  L[VIEWMT] = makeviewmt(L)
  return L
end

-- ---- layout methods ---------------------------------------------------------------

-- The field record and absolute offset of a path like "a.b[2].c", or nil
-- and a message.
local function resolve(L, path)
  if type(path) ~= "string" then
    return nil, sformat("field name must be a string, got %s", describe(path))
  end
  local cur, off, f, seen = L, 0, nil, ""
  for part in sgmatch(path .. ".", "(.-)%.") do
    if cur == nil then
      return nil, sformat("field '%s' is not a struct", seen)
    end
    local fname, idx = part:match("^([%a_][%w_]*)%[(%d+)%]$")
    if not fname then
      fname = part
    end
    f = cur[BYNAME][fname]
    if f == nil then
      return nil, sformat("unknown field '%s'", seen == "" and fname or (seen .. "." .. fname))
    end
    seen = seen == "" and part or (seen .. "." .. part)
    off = off + f.offset
    if idx then
      local i = tointeger(tonumber(idx)) -- nil for digits past math.maxinteger
      if not f.count then
        return nil, sformat("field '%s' is not an array", fname)
      elseif not i or i < 1 or i > f.count then
        return nil, sformat("index %s out of range for field '%s' (%s): expected 1..%d",
                            idx, fname, typename(f), f.count)
      end
      off = off + (i - 1) * f.elemsize
      cur = f.kind == "struct" and f.type or nil
    else
      cur = (f.kind == "struct" and not f.count) and f.type or nil
    end
  end
  return f, off
end

--- The offset of a field from the start of the struct.
-- @tparam string name a field name, or a path into nested structs and
--   arrays: `"header.magic"`, `"samples[3]"` (1-based, like views),
--   `"pts[2].x"`
-- @treturn integer offset in bytes
-- @raise for an unknown field or a bad index
function Layout:offset(name)
  local f, off = resolve(self, name)
  if f == nil then
    error(off, 2)
  end
  return off
end

--- The field record of a field (see `struct`) and its offset.
-- @tparam string name a field name or a path, as for `offset`
-- @treturn table the field record (of the innermost field of a path)
-- @treturn integer its offset from the start of the struct (of the indexed
--   element, when the path ends with an index)
-- @raise for an unknown field or a bad index
function Layout:field(name)
  local f, off = resolve(self, name)
  if f == nil then
    error(off, 2)
  end
  return f, off
end

--- A view of the struct in a segment.
-- @tparam segment seg an attached segment (writes need a writable one)
-- @tparam[opt=0] integer off where the struct starts: a multiple of
--   `L.align`, with `L.size` bytes in the segment from there
-- @treturn view reading and writing fields in place
-- @raise when off is misaligned or the struct does not fit
-- @usage local v = L:view(seg, 64)
-- v.count = v.count + 1
function Layout:view(seg, off)
  off = checkplace(self, seg, off, 2)
  return newview(self, seg, off)
end

--- Read the struct, or one field of it, as plain Lua values (a snapshot:
-- arrays as sequences, nested structs as tables, c-fields as strings).
-- @tparam segment seg an attached segment
-- @tparam[opt=0] integer off where the struct starts (as for `view`)
-- @tparam[opt] string name a field name or path (as for `offset`); without
--   it, the whole struct
-- @return a table of all fields, or the field's value
-- @usage for _, f in ipairs(L.fields) do print(f.name, L:read(seg, 0, f.name)) end
function Layout:read(seg, off, name)
  off = checkplace(self, seg, off, 2)
  if name == nil then
    return decodestruct(self, seg, off)
  end
  local f, foff = resolve(self, name)
  if f == nil then
    error(foff, 2)
  end
  if f.count and not name:match("%]$") then
    return decodearray(f, seg, off + foff)
  end
  return decodeelem(f, seg, off + foff)
end

--- Write the whole struct from a table of field values (or a view). Fields
-- missing from the table, and padding, become zero. The table is checked
-- entirely before anything is written.
-- @tparam segment seg a writable attachment
-- @tparam integer|nil off where the struct starts (as for `view`; nil for 0)
-- @tparam table t field values, as `read` returns them
-- @raise for unknown fields or bad values (then nothing is written)
function Layout:write(seg, off, t)
  off = checkplace(self, seg, off, 2)
  local s, err = encodestruct(self, t, nil)
  if s == nil then
    error(err, 2)
  end
  seg_write(seg, off, s)
end

-- ---- C declarations -----------------------------------------------------------------

local CKEYWORDS = {}
for w in
  ([[auto break case char const continue default do double else enum extern
  float for goto if inline int long register restrict return short signed sizeof
  static struct switch typedef union unsigned void volatile while _Alignas
  _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert
  _Thread_local]]):gmatch("%S+")
do
  CKEYWORDS[w] = true
end

local function checkcname(s, what)
  if CKEYWORDS[s] then
    error(sformat("%s '%s' is a C keyword", what, s), 0)
  end
end

-- The GCC attribute list of a struct (L) or field (f) record, with a
-- leading space, or "". A packed member whose type is aligned to 1 anyway
-- says nothing (GCC warns that the attribute is ignored there).
local function attributes(r, natural)
  local a = {}
  if r.packed and natural ~= 1 then
    a[#a + 1] = "packed"
  end
  if r.aligned then
    a[#a + 1] = sformat("aligned(%d)", r.aligned)
  end
  if #a == 0 then
    return ""
  end
  return " __attribute__((" .. concat(a, ", ") .. "))"
end

-- The alignment of field f's type, before attributes.
local function naturalalign(f)
  if f.kind == "struct" then
    return f.type.align
  elseif f.kind == "char" then
    return 1
  end
  return alignof(f.elemsize)
end

-- The member declarations of L, indented, into out.
local function members(L, out, indent)
  for _, f in ipairs(L.fields) do
    checkcname(f.name, "field name")
    local dims = f.count and sformat("[%d]", f.count) or ""
    if f.cdims then -- C's dimensions, from cdef
      dims = sformat(srep("[%d]", #f.cdims), table.unpack(f.cdims))
    end
    if f.kind == "char" then
      dims = dims .. sformat("[%d]", f.elemsize)
    end
    local attrs = attributes(f, naturalalign(f))
    if f.kind == "struct" and not f.type.name then
      out[#out + 1] = indent .. "struct" .. attributes(f.type) .. " {"
      members(f.type, out, indent .. "  ")
      out[#out + 1] = sformat("%s} %s%s%s;", indent, f.name, dims, attrs)
    else
      out[#out + 1] = sformat("%s%s %s%s%s;", indent, f.ctype, f.name, dims, attrs)
    end
  end
end

-- Offset assertions for every field of L at designator prefix pre, offset
-- base, descending into anonymous nested structs.
local function asserts(L, tag, out, pre, base)
  for _, f in ipairs(L.fields) do
    local d = pre .. f.name
    local off = base + f.offset
    out[#out + 1] =
      sformat('_Static_assert(offsetof(struct %s, %s) == %d, "offset of %s.%s");', tag, d, off, tag, d)
    if f.kind == "struct" and not f.type.name then
      asserts(f.type, tag, out, d .. (f.count and "[0]." or "."), off)
    end
  end
end

-- Emit L as `struct tag`, after the named structs it uses.
local function emit(L, tag, out, done)
  local prev = done[tag]
  if prev then
    if prev ~= L then
      error(sformat("two different layouts are named '%s'", tag), 0)
    end
    return
  end
  done[tag] = L
  checkcname(tag, "struct name")
  local function deps(S)
    for _, f in ipairs(S.fields) do
      if f.kind == "struct" then
        if f.type.name then
          emit(f.type, f.type.name, out, done)
        else
          deps(f.type)
        end
      end
    end
  end
  deps(L)
  local guard = "SYSVSHM_STRUCT_" .. tag
  out[#out + 1] = "#ifndef " .. guard
  out[#out + 1] = "#define " .. guard
  out[#out + 1] = sformat("struct%s %s { /* %d bytes, aligned to %d */", attributes(L), tag, L.size, L.align)
  members(L, out, "  ")
  out[#out + 1] = "};"
  asserts(L, tag, out, "", 0)
  out[#out + 1] = sformat('_Static_assert(sizeof(struct %s) == %d, "size of struct %s");', tag, L.size, tag)
  out[#out + 1] = "#endif"
  out[#out + 1] = ""
end

--- C source declaring the same struct, for a C peer: stdint.h types
-- (`int32_t`, `uint8_t`, ...; `float`, `double`, `char name[N]`), arrays,
-- the named nested structs first, and `_Static_assert`s of every field's
-- offset and of `sizeof` (valid C11; GNU C when the layout has `packed`
-- or `aligned`, written as `__attribute__((...))`). Each struct is wrapped in an
-- `#ifndef SYSVSHM_STRUCT_<tag>` guard, so several declarations can share
-- one file or header.
-- @tparam[opt] string name the struct tag (default: the layout's name)
-- @treturn string the C source
-- @raise when there is no name, or a name is a C keyword
-- @usage io.open("header.h", "w"):write(L:cdecl("header"))
function Layout:cdecl(name)
  name = name or self.name
  if not isident(name) then
    error(sformat("cdecl needs a struct name (a C identifier), got %s", describe(name)), 2)
  end
  local out = {
    "/* Generated by sysvshm.layout. */",
    "#include <stddef.h>",
    "#include <stdint.h>",
    "",
  }
  local ok, err = pcall(emit, self, name, out, {})
  if not ok then
    error(err, 2)
  end
  return concat(out, "\n")
end

--- Layouts from C declarations: read the structs of a C header (the one
-- the C peer compiles) and make the layouts `struct` would make for them,
-- so that nothing is typed twice.
--
-- **What it reads.** `struct tag { ... };`, `typedef struct [tag] { ... }
-- name;` and `typedef` names of other types (`typedef uint32_t id_t;`,
-- `typedef char label_t[16];`); members of the `<stdint.h>` types
-- (`intN_t`, `uintN_t`, `int_leastN_t`, `intmax_t`, `intptr_t` and the
-- unsigned ones), `char`, `short`, `int`, `long`, `long long` signed and
-- unsigned (`signed`, `unsigned`, `short int`, ... in any order), `float`,
-- `double`, `size_t`, `ssize_t`, `ptrdiff_t`, `bool` and `_Bool`; fixed
-- arrays, also multi-dimensional; nested structs, defined inside a struct
-- (named or not) or before it (`struct point p;`, or its typedef name);
-- several declarators in one member (`int a, b[4];`); `const` and
-- `volatile` (ignored); `__attribute__((packed))` and
-- `__attribute__((aligned(N)))` on a struct (`struct __attribute__((...))
-- tag {` or after the closing brace) or on a member (before its type or
-- after its declarator), placed as GCC places them. Comments are skipped,
-- and so are preprocessor lines, except that an object-like `#define NAME
-- <integer expression>` may give an array size or an alignment (`char
-- name[NAME_LEN];`; sizes are integer constant expressions with `+ - * /
-- %` and parentheses). `_Static_assert`s (as `cdecl` writes them), enum
-- and union definitions, function prototypes and definitions, variable
-- declarations and `extern "C" {` blocks are skipped, as they declare no
-- layout.
--
-- **How C types map to field types.** `char x[N]` is the text field `cN`
-- (`char x` alone is `c1`); `char x[M][N]` is an array of M `cN`.
-- `signed char`, `unsigned char`, `int8_t` and `uint8_t` are the integers
-- `i1` and `I1` (and their arrays are arrays of integers); `bool` is `I1`;
-- the other integers are `iN` or `IN` of their size on this platform
-- (`long` is `i8` on x86_64), `float` is `f` and `double` `d`. A
-- multi-dimensional array that is not of `char` is flattened into one
-- array in C's (row-major) order: `int a[2][3]` is `{"a", "i4", 6}`, and
-- C's `a[i][j]` is element `i*3 + j + 1` of the view. `struct tag` types
-- keep their tag as the layout's name; a struct known only by its typedef
-- name takes that name.
--
-- **What it refuses**, raising "line N: reason": pointers (members,
-- function pointers, and typedefs of them when used: a pointer means
-- nothing in another process), flexible array members (`int x[];`) and
-- zero-length arrays, bit-fields (their placement is up to the compiler:
-- declare the whole integer and mask it), unions and enums as member types,
-- `long double`, `_Complex`, `_Atomic`, `_Alignas`, `int_fastN_t` (its size
-- differs between C libraries), other attributes, attributes on a typedef
-- name, members without a name (anonymous structs and unions), a struct
-- used before it is defined, and anything `struct` refuses (a duplicate
-- field name, for one).
--
-- The round trip is exact: `layout.cdef(L:cdecl())` has the same fields
-- (names, types, counts), offsets, size and alignment as L. A spec compiles
-- a corpus of hand-written and randomly generated declarations with the C
-- compiler and compares every offset and size.
-- @tparam string text C declarations
-- @tparam[opt] string name the struct to return: a struct tag or typedef
--   name of the text; without it, the one struct of the text that no other
--   struct uses (an error if there are several)
-- @treturn layout the struct's layout
-- @treturn table every struct of the text by tag and typedef name
-- @raise "line N: reason" for what cannot be read or shared, or when the
--   struct asked for is not in the text
-- @usage local Rec = layout.cdef([[
--   #include <stdint.h>
--   struct record { uint32_t magic; int64_t count; char name[16];
--                   double samples[8]; };
-- ]])
-- print(Rec.size, Rec:offset("samples"))  --> 96  32
-- @usage local all = select(2, layout.cdef(io.open("shared.h"):read("a"), "record"))
function M.cdef(text, name)
  if type(text) ~= "string" then
    error(sformat("cdef expects C declarations as a string, got %s", describe(text)), 2)
  end
  if name ~= nil and not isident(name) then
    error(sformat("cdef: struct name must be a C identifier, got %s", describe(name)), 2)
  end
  local L, all = require("sysvshm.cdef").cdef(text, name)
  if L == nil then
    error(all, 2)
  end
  return L, all
end

LayoutMT.__tostring = function(L)
  return sformat("sysvshm.layout (struct %s, %d bytes, aligned to %d)", L.name or "{...}", L.size, L.align)
end

return M
