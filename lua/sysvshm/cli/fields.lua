-- The field view of the `sysvshm` command (dump --layout, watch): layout
-- files and C headers loaded, and a struct read from a segment rendered
-- one line per field.
local layout = require "sysvshm.layout"
local report = require "sysvshm.cli.report"
local format = require "sysvshm.cli.format"

local fail, usage_error = report.fail, report.usage_error
local int_string, quote_bytes = format.int_string, format.quote_bytes

local M = {}

local sformat, concat = string.format, table.concat


-- The layout that a layout file gives, chosen by `struct`; fails with a
-- message saying what is wrong with the file.
local function load_layout(path, struct)
  local chunk, err = loadfile(path, "t")
  if not chunk then
    fail("cannot load the layout file: %s", err)
  end
  local ok, res = pcall(chunk)
  if not ok then
    fail("layout file %s failed: %s", path, tostring(res))
  end
  if layout.is(res) then
    if struct and struct ~= res.name then
      fail("layout file %s returns struct %s, not %s", path, res.name or "{...} (unnamed)", struct)
    end
    return res
  end
  if type(res) ~= "table" then
    fail("layout file %s must return a layout or a table of named layouts, not a %s", path, type(res))
  end
  local names = {}
  for k, v in pairs(res) do
    if type(k) == "string" and layout.is(v) then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  if #names == 0 then
    fail("layout file %s returns a table without any layout in it", path)
  end
  if struct then
    if not layout.is(res[struct]) then
      fail("layout file %s has no struct '%s' (it has: %s)", path, struct, concat(names, ", "))
    end
    return res[struct]
  end
  if #names > 1 then
    fail("layout file %s has several structs, choose one with --struct (%s)", path, concat(names, ", "))
  end
  return res[names[1]]
end

-- The layout of struct `struct` (or of the one root struct) declared in
-- the C header at path (layout.cdef); fails with the reader's message.
local function load_cdef(path, struct)
  local f, err = io.open(path, "r")
  if not f then
    fail("cannot read the header: %s", err)
  end
  local text = f:read("a")
  f:close()
  local ok, res = pcall(layout.cdef, text, struct)
  if not ok then
    fail("header %s: %s", path, tostring(res))
  end
  return res
end

-- The layout that --layout FILE or --cdef FILE.h gives (--struct NAME).
local function options_layout(parser, opts, required)
  if opts.layout ~= nil and opts.cdef ~= nil then
    usage_error(parser, "--layout and --cdef do not go together (one describes the struct)")
  end
  if opts.layout == nil and opts.cdef == nil then
    if required then
      usage_error(parser, "%s", required)
    elseif opts.struct ~= nil then
      usage_error(parser, "--struct needs --layout or --cdef")
    end
    return nil
  end
  if opts.cdef ~= nil then
    return load_cdef(opts.cdef, opts.struct)
  end
  return load_layout(opts.layout, opts.struct)
end

-- Where a struct of layout L can be read at off in seg, or fail.
local function check_place(L, seg, id, off)
  local size = #seg
  if off % L.align ~= 0 then
    fail("offset %d is not a multiple of the struct's alignment (%d)", off, L.align)
  end
  if off > size or L.size > size - off then
    fail("struct %s of %d bytes at offset %d does not fit in segment %d (%d bytes)",
         L.name or "{...}", L.size, off, id, size)
  end
end

local MAX_ITEMS = 16 -- array items shown before "..." (without --full)

-- The text of one scalar or text item of field f.
local function item_string(f, v)
  if f.kind == "char" then
    return quote_bytes(v)
  elseif f.kind == "float" then
    return tostring(v)
  end
  return int_string(v, f.kind == "uint")
end

-- An array of items on one line: runs of 3 or more equal items folded as
-- "v (xN)"; after `max` runs the rest is counted, not shown. Returns the
-- text and the full text (to compare frames, whatever was cut).
local function array_string(f, t, max)
  local runs, i = {}, 1
  while i <= #t do
    local s = item_string(f, t[i])
    local j = i
    while j < #t and item_string(f, t[j + 1]) == s do
      j = j + 1
    end
    local n = j - i + 1
    if n >= 3 then
      runs[#runs + 1] = { sformat("%s (x%d)", s, n), n }
      i = j + 1
    else
      runs[#runs + 1] = { s, 1 }
      i = i + 1
    end
  end
  local shown, hidden = {}, 0
  local all = {}
  for k, g in ipairs(runs) do
    all[k] = g[1]
    if not max or k <= max then
      shown[#shown + 1] = g[1]
    else
      hidden = hidden + g[2]
    end
  end
  local full = "[" .. concat(all, ", ") .. "]"
  if hidden > 0 then
    return "[" .. concat(shown, ", ") .. sformat(", ... %d more]", hidden), full
  end
  return full, full
end

-- The C type of one element of f, with the text field's size.
local function ctype(f)
  if f.kind == "char" then
    return sformat("char[%d]", f.elemsize)
  elseif f.kind == "struct" then
    return f.ctype or "struct {...}"
  end
  return f.ctype
end

-- The lines of the field view of L read at absolute offset `base`:
-- {offset, ctype, name, shown value, full value}, nested structs (and
-- arrays of them) member by member.
local function field_lines(L, values, base, prefix, max, out)
  out = out or {}
  for _, f in ipairs(L.fields) do
    local name, off, v = prefix .. f.name, base + f.offset, values[f.name]
    if f.kind == "struct" then
      if f.count then
        for i = 1, f.count do
          field_lines(f.type, v[i], off + (i - 1) * f.elemsize, sformat("%s[%d].", name, i), max, out)
        end
      else
        field_lines(f.type, v, off, name .. ".", max, out)
      end
    elseif f.count then
      local shown, full = array_string(f, v, max)
      local t = ctype(f)
      t = f.kind == "char" and sformat("char[%d][%d]", f.count, f.elemsize) or sformat("%s[%d]", t, f.count)
      out[#out + 1] = { off, t, name, shown, full }
    else
      local s = item_string(f, v)
      out[#out + 1] = { off, ctype(f), name, s, s }
    end
  end
  return out
end

-- The field view as text lines: offset, type, field, value. With `marks`
-- (watch) a first column flags the changed lines with "*", in reverse
-- video too when `ansi`.
local function render_fields(lines, marks, ansi)
  local rows = { { "OFFSET", "TYPE", "FIELD", "VALUE" } }
  for _, l in ipairs(lines) do
    rows[#rows + 1] = { tostring(l[1]), l[2], l[3], l[4] }
  end
  local widths = format.widths_of(rows)
  local fmt = sformat("%%%ds  %%-%ds  %%-%ds  %%s", widths[1], widths[2], widths[3])
  local out = {}
  for r, row in ipairs(rows) do
    local text = sformat(fmt, table.unpack(row)):gsub("%s+$", "")
    if marks then
      local changed = marks[r - 1]
      text = (changed and "* " or "  ") .. text
      if changed and ansi then
        text = "\27[7m" .. text .. "\27[0m"
      end
    end
    out[#out + 1] = text
  end
  return out
end

local LAYOUT_OPTIONS = {
  { "layout", short = "l", metavar = "FILE", help = "a Lua file returning a layout (or a table of them)" },
  { "cdef", metavar = "FILE.h", help = "a C header declaring the struct (layout.cdef)" },
  { "struct", short = "s", metavar = "NAME", help = "which layout of the file (or struct of the header) to use" },
  { "full", type = "flag", help = "show arrays whole (default: the first 16 items)" },
}

local LAYOUT_EPILOG = "A layout file is a Lua file that returns a layout made with\n"
  .. "sysvshm.layout.struct, or a table of named layouts (pick one with --struct):\n"
  .. "\n"
  .. "    local layout = require \"sysvshm.layout\"\n"
  .. "    return layout.struct({ {\"magic\", \"I4\"}, {\"count\", \"i8\"},\n"
  .. "                           {\"name\", \"c16\"}, {\"samples\", \"d\", 8} }, \"record\")\n"
  .. "\n"
  .. "See lua/demo/record_layout.lua. Or give the C header the writer compiles,\n"
  .. "--cdef FILE.h (with --struct NAME when it declares several structs).\n"
  .. "The segment is attached read-only."

-- The definition of a command on one segment ID that shows a layout:
-- `def` with the layout options and the epilog about layout files.
local function with_layout_options(def)
  def.args, def.min_args, def.max_args, def.epilog = "ID", 1, 1, LAYOUT_EPILOG
  for _, o in ipairs(LAYOUT_OPTIONS) do
    def[#def + 1] = o
  end
  return def
end

M.options_layout, M.check_place, M.field_lines, M.render_fields = options_layout, check_place,
  field_lines, render_fields
M.MAX_ITEMS, M.with_layout_options = MAX_ITEMS, with_layout_options

return M
