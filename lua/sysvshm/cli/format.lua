--- Formatting for the `sysvshm` command: JSON, sizes, modes, keys, times,
-- integers, quoted bytes, and aligned tables.
-- @module sysvshm.cli.format
local report = require "sysvshm.cli.report"

local emit_lines = report.emit_lines

local M = {}

local sformat, concat = string.format, table.concat


local JSON_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
                       ["\t"] = "\\t", ["\b"] = "\\b", ["\f"] = "\\f" }

--- Encode a value as JSON (one line). Non-empty tables whose keys are
-- exactly 1..#t become arrays, other tables objects with their keys
-- sorted, unless `order` lists the keys to write (in that order; missing
-- ones are left out). Integers are written exactly, floats with 17
-- significant digits, NaN and infinities as `null`; strings are escaped as
-- RFC 8259 requires (bytes >= 0x80 are copied, so pass UTF-8).
-- @param v nil, a boolean, a number, a string or a table of those
-- @tparam[opt] {string,...} order the key order of the outermost object
-- @treturn string
function M.json(v, order)
  local t = type(v)
  if v == nil then
    return "null"
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "number" then
    if math.type(v) == "integer" then
      return sformat("%d", v)
    elseif v ~= v or v == math.huge or v == -math.huge then
      return "null"
    end
    return sformat("%.17g", v)
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return JSON_ESCAPES[c] or sformat("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "table" then
    local n, count = #v, 0
    for _ in pairs(v) do
      count = count + 1
    end
    if not order and count == n and (n > 0 or next(v) == nil and getmetatable(v) == M.json_array) then
      local parts = {}
      for i = 1, n do
        parts[i] = M.json(v[i])
      end
      return "[" .. concat(parts, ",") .. "]"
    end
    local keys = order
    if not keys then
      keys = {}
      for k in pairs(v) do
        keys[#keys + 1] = tostring(k)
      end
      table.sort(keys)
    end
    local parts = {}
    for _, k in ipairs(keys) do
      local x = v[k]
      if x ~= nil then
        parts[#parts + 1] = M.json(tostring(k)) .. ":" .. M.json(x)
      end
    end
    return "{" .. concat(parts, ",") .. "}"
  end
  error(sformat("cannot encode a %s as JSON", t), 2)
end

--- A metatable marking an empty table as a JSON array (`[]` instead of `{}`).
M.json_array = {}

--- A size in bytes for people: `512B`, `4.0K`, `64K`, `1.5M`, `2.0G` (powers
-- of 1024, one decimal below 10).
-- @tparam integer n bytes
-- @treturn string
function M.human_size(n)
  if n < 1024 then
    return n .. "B"
  end
  local units = { "K", "M", "G", "T", "P", "E" }
  local v, i = n / 1024, 1
  while true do
    local text = v < 9.95 and sformat("%.1f", v) or sformat("%.0f", v)
    if tonumber(text) < 1024 or i == #units then
      return text .. units[i]
    end
    v, i = v / 1024, i + 1
  end
end

--- Permission bits as `ls -l` shows them.
-- For example 0644 gives `rw-r--r--`.
-- @tparam integer mode
-- @treturn string nine characters
function M.mode_string(mode)
  local out = {}
  for shift = 8, 0, -1 do
    out[#out + 1] = mode & (1 << shift) ~= 0 and ("rwx"):sub(3 - shift % 3, 3 - shift % 3) or "-"
  end
  return concat(out)
end

-- A key as ipcs shows it: 0x%08x of the unsigned 32-bit value.
local function key_string(key)
  return sformat("0x%08x", key & 0xffffffff)
end

local function time_string(t)
  if t == 0 then
    return "never"
  end
  return os.date("%Y-%m-%d %H:%M:%S", t)
end

-- An integer, unsigned when `unsigned` (a uint64 above math.maxinteger
-- reads back negative, as string.unpack gives it).
local function int_string(v, unsigned)
  if unsigned and v < 0 then
    local q = (v >> 1) // 5 -- v as unsigned, divided by 10
    return sformat("%d%d", q, v - q * 10)
  end
  return sformat("%d", v)
end

local QUOTE_ESCAPES = setmetatable({ ['"'] = '\\"', ["\\"] = "\\\\" }, {
  __index = function(t, c)
    local e = sformat("\\x%02x", c:byte())
    t[c] = e
    return e
  end,
})

-- Bytes shown between double quotes, non-printable ones as \xNN.
local function quote_bytes(s)
  return '"' .. s:gsub('[%c"\\\128-\255]', QUOTE_ESCAPES) .. '"'
end

local function status_string(st)
  local s = {}
  if st.removed then
    s[#s + 1] = "removed"
  end
  if st.locked then
    s[#s + 1] = "locked"
  end
  return #s > 0 and concat(s, ",") or "-"
end

-- The width of each column of rows of cells.
local function widths_of(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i] or 0, #cell)
    end
  end
  return widths
end

-- Rows of cells as a table with aligned columns (right-aligned where
-- `right[i]`), trailing blanks trimmed.
local function print_table(rows, right)
  local widths = widths_of(rows)
  local out = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      local pad = (" "):rep(widths[i] - #cell)
      cells[i] = right[i] and pad .. cell or cell .. pad
    end
    out[#out + 1] = (concat(cells, "  "):gsub("%s+$", ""))
  end
  emit_lines(out)
end

M.key_string, M.time_string, M.int_string, M.quote_bytes = key_string, time_string, int_string, quote_bytes
M.status_string, M.widths_of, M.print_table = status_string, widths_of, print_table

return M
