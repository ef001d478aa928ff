-- `sysvshm new`: create a segment and print its id.
local shm = require "sysvshm"
local report = require "sysvshm.cli.report"
local format = require "sysvshm.cli.format"
local args = require "sysvshm.cli.args"

local M = {}

-- Permission bits: octal (0600, 600) or as ls shows them (rw-------).
local function parse_mode(parser, s)
  if s:match("^0?[0-7][0-7]?[0-7]?$") or s:match("^0[oO][0-7]+$") then
    local v = tonumber(s:gsub("^0[oO]", ""), 8)
    if v <= 0x1ff then
      return v
    end
  elseif #s == 9 and s:match("^[r-][w-][x-][r-][w-][x-][r-][w-][x-]$") then
    local v = 0
    for i = 1, 9 do
      v = v << 1 | (s:sub(i, i) ~= "-" and 1 or 0)
    end
    return v
  end
  report.usage_error(parser, "option --mode: '%s' is not a mode (octal, 0600, or rw-------)", s)
end

-- A size: bytes, or with a suffix K, M, G, T (powers of 1024; KiB, kB... too).
local function parse_size(parser, s)
  local digits, unit = s:match("^(%d+)([KMGTkmgt]?)[iI]?[bB]?$")
  local v = digits and math.tointeger(tonumber(digits))
  local shift = ({ [""] = 0, k = 10, m = 20, g = 30, t = 40 })[(unit or ""):lower()]
  if v and shift and v <= math.maxinteger >> shift then
    v = v << shift
    if v >= 1 then
      return v
    end
  end
  report.usage_error(parser, "option --size: '%s' is not a size (bytes, or with K, M, G, T: 4096, 4K, 1M)", s)
end

M.def = {
  summary = "create a segment and print its id",
  description = "Create a segment and print its id alone on a line, for scripts:\n"
    .. "    id=$(sysvshm new --size 4K)\n"
    .. "Without --key the segment is private (IPC_PRIVATE); with a key that is\n"
    .. "taken, nothing is created and the status is 1.",
  { "size", short = "s", metavar = "N", help = "size in bytes, or with K, M, G, T (required)" },
  args.KEY_OPTION,
  { "mode", short = "m", metavar = "MODE", default = "0600",
    help = "permission bits, octal or as rw-r-----" },
}

function M.run(opts, parser)
  if opts.size == nil then
    report.usage_error(parser, "option --size is required")
  end
  local size = parse_size(parser, opts.size)
  local mode = parse_mode(parser, opts.mode)
  local key = opts.key or shm.IPC_PRIVATE
  local id, msg = shm.create(key, size, { mode = mode })
  if not id then
    report.fail("cannot create a segment of %d bytes%s: %s", size,
         opts.key and " with key " .. format.key_string(key) or "", msg)
  end
  -- The id is the only way to the new segment: if it cannot be written,
  -- remove the segment again rather than leave it behind unknown.
  local wrote, err = pcall(function()
    report.emit(id, "\n")
    report.flush_out()
  end)
  if not wrote then
    local removed, rmsg = shm.remove(id)
    report.fail("%s; segment %d %s", getmetatable(err) == report.Failure and err.message or tostring(err), id,
         removed and "removed again" or ("could not be removed: " .. tostring(rmsg)))
  end
  return 0
end

return M
