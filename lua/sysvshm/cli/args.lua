-- The command line of the `sysvshm` commands: ids, keys, and parsing
-- with a usage error on a bad line.
local report = require "sysvshm.cli.report"

local usage_error, emit = report.usage_error, report.emit

local M = {}

local INT_MAX = 0x7fffffff
local KEY_MIN, KEY_MAX = -0x80000000, 0xffffffff


-- A segment id from a positional argument, or a usage error.
local function parse_id(parser, s)
  local v = s:match("^%d+$") and math.tointeger(tonumber(s))
  if not v or v > INT_MAX then
    usage_error(parser, "'%s' is not a segment id (an integer 0..%d)", s, INT_MAX)
  end
  return v
end

local function check_key(v)
  if v < KEY_MIN or v > KEY_MAX then
    return nil, "must be a 32-bit key (-0x80000000..0xffffffff)"
  end
  return true
end

local KEY_OPTION = { "key", short = "k", type = "integer", metavar = "K", check = check_key,
                     help = "the segment's key, decimal or 0x hex" }

-- Parse args with parser: the options, or a usage error; on --help print
-- the usage and return nil (the command then returns status 0).
local function parse(parser, args)
  local opts, err = parser:parse(args)
  if not opts then
    usage_error(parser, "%s", err)
  end
  if opts.help then
    emit(parser:usage())
    return nil
  end
  return opts
end

local SEM_OPTION = { "sem", type = "flag", help = "semaphore sets, not segments (ids and keys of sets)" }

M.parse_id, M.parse, M.KEY_OPTION, M.SEM_OPTION = parse_id, parse, KEY_OPTION, SEM_OPTION

return M
